"""Command-line interface: a thin layer over the Python API.

Every subcommand parses its arguments, calls the public API and prints either a human table or
one JSON object (``--json``). Bad input (any :class:`bayes_se.errors.BayesSEError`, a missing
file) prints one readable line to stderr and exits with status 2; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from bayes_se.errors import BayesSEError

EXIT_BAD_INPUT = 2


def _add_column_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("column mapping")
    g.add_argument("--effect", default="yi", help="column of effect sizes (default: yi)")
    g.add_argument("--variance", default="vi", help="column of sampling variances (default: vi)")
    g.add_argument("--se", default=None, help="column of standard errors (instead of --variance)")
    g.add_argument("--study", default="study", help="column of study labels (default: study)")
    g.add_argument("--cluster", default=None, help="column of cluster ids: effects nested in studies")


def _load(args):
    from bayes_se.data import load_effects

    return load_effects(
        args.data,
        effect=args.effect,
        variance=args.variance,
        se=args.se,
        study=args.study,
        cluster=args.cluster,
    )


def _jsonable(obj):
    """Replace NaN/inf by None so the output is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _print_json(obj) -> None:
    print(json.dumps(_jsonable(obj), indent=2, allow_nan=False))


def cmd_freq(args) -> int:
    from bayes_se.frequentist import rma

    data = _load(args)
    res = rma(data, mods=args.mods, method=args.method, test=args.test, level=args.level)
    if args.json:
        _print_json(res.to_dict())
    else:
        print(res.summary())
    return 0


def _spec_columns(args):
    """Column overrides given on the command line (None where not given)."""
    return {k: getattr(args, k) for k in ("effect", "variance", "se", "study", "cluster")
            if getattr(args, k, None) is not None}


def cmd_fit(args) -> int:
    import dataclasses

    from bayes_se import api
    from bayes_se.outputs import write_fit_outputs

    spec = api.resolve_spec(args.spec, priors=args.prior, mods=args.mods, engine=args.engine,
                            seed=args.seed)
    cols = _spec_columns(args)
    if cols:
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, **cols))
    if args.out:
        from bayes_se.outputs import check_out_dir

        check_out_dir(args.out, force=args.force)
    res = api.fit(args.data, spec, draws=args.draws, tune=args.tune, chains=args.chains)
    if args.out:
        write_fit_outputs(res, spec, args.out, force=args.force)
    if args.json:
        _print_json(res.to_dict())
    else:
        print(res.print_summary())
        if args.out:
            print(f"\nwrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayes-se",
        description="Bayesian meta-analysis with a metafor-exact frequentist twin.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("freq", help="frequentist random-effects model / meta-regression (metafor's rma)")
    p.add_argument("data", help="CSV file of effect sizes")
    p.add_argument("--method", default="REML",
                   help="tau2 estimator: EE, DL, REML, ML, PM, EB, SJ, HS, HE (default REML)")
    p.add_argument("--test", default="z", choices=["z", "knha"], help="z or Knapp-Hartung (knha)")
    p.add_argument("--mods", default=None, help='moderators, e.g. "guided + year"')
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_column_args(p)
    p.set_defaults(func=cmd_freq)

    p = sub.add_parser("fit", help="Bayesian random-effects model, meta-regression or three-level model")
    p.add_argument("spec", nargs="?", default=None,
                   help="model spec (TOML; default: the random-effects model of models/random_effects.toml)")
    p.add_argument("--data", required=True, help="CSV file of effect sizes")
    p.add_argument("--prior", action="append", default=[], metavar="PARAM=DIST",
                   help='override a prior, e.g. --prior "mu=normal(0, 1)" --prior "tau=half_normal(0.5)" '
                        '--prior "beta[guided]=normal(0, 0.5)" --prior "preset=rhodes2015_general"')
    p.add_argument("--mods", default=None, help='moderators, e.g. "guided + year"')
    p.add_argument("--engine", default=None, choices=["mcmc", "exact"], help="override the spec's engine")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the spec's)")
    p.add_argument("--draws", type=int, default=None, help="draws per chain (default: the spec's)")
    p.add_argument("--tune", type=int, default=None, help="tuning steps per chain (default: the spec's)")
    p.add_argument("--chains", type=int, default=None, help="chains (default: the spec's)")
    p.add_argument("--out", default=None, help="folder for the InferenceData, summary CSV and spec used")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    g = p.add_argument_group("column mapping (overrides the spec's [data])")
    for name in ("effect", "variance", "se", "study", "cluster"):
        g.add_argument(f"--{name}", default=None)
    p.set_defaults(func=cmd_fit)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BayesSEError as exc:
        print(f"bayes-se: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FileNotFoundError as exc:
        print(f"bayes-se: error: file not found: {exc.filename}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except IsADirectoryError as exc:
        print(f"bayes-se: error: is a directory, not a file: {exc.filename}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
