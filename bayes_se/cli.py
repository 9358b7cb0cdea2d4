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
import warnings

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
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # NumPy scalars and arrays
        obj = obj.tolist()
        if isinstance(obj, list):
            return _jsonable(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _print_json(obj) -> None:
    print(json.dumps(_jsonable(obj), indent=2, allow_nan=False))


def cmd_freq(args) -> int:
    data = _load(args)
    if args.cluster:
        # effects nested in studies: metafor's rma.mv(yi, vi, random = ~ 1 | cluster/effect)
        from bayes_se.frequentist import rma_mv

        if args.method.upper() not in ("REML", "ML"):
            raise BayesSEError(f"the three-level model (--cluster) is fitted by REML or ML, not {args.method}")
        res = rma_mv(data, mods=args.mods, method=args.method.upper(),
                     test="t" if args.test == "knha" else "z", level=args.level)
        out = res.to_dict()
        pred = out.get("prediction", {})
        first = next(iter(out["coefficients"].values()))
        out.update({"estimate": first["estimate"], "se": first["se"], "ci_lower": first["ci_lb"],
                    "ci_upper": first["ci_ub"], "pi_lower": pred.get("pi_lb"), "pi_upper": pred.get("pi_ub"),
                    "Q": out["QE"], "Q_p": out["QE_p"]})
    else:
        from bayes_se.frequentist import rma

        res = rma(data, mods=args.mods, method=args.method, test=args.test, level=args.level)
        out = res.to_dict()
    if args.json:
        _print_json(out)
    else:
        print(res.summary())
    return 0


def _spec_columns(args):
    """Column overrides given on the command line (None where not given)."""
    cols = {k: getattr(args, k) for k in ("effect", "variance", "se", "study", "cluster")
            if getattr(args, k, None) is not None}
    if cols.get("se") and "variance" not in cols:
        cols["variance"] = ""  # --se replaces the spec's variance column
    return cols


def _spec_arg(args):
    """The SPEC argument as a path (a missing file is then 'file not found', never read as TOML)."""
    import pathlib

    return pathlib.Path(args.spec) if args.spec else None


def _spec_from_args(args):
    """The spec named on the command line with its overrides (priors, mods, engine, seed, columns)."""
    import dataclasses

    from bayes_se import api

    spec = api.resolve_spec(_spec_arg(args), priors=args.prior, mods=args.mods, engine=args.engine,
                            seed=args.seed)
    cols = _spec_columns(args)
    if cols:
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, **cols))
    return spec


def cmd_fit(args) -> int:
    from bayes_se import api
    from bayes_se.outputs import write_fit_outputs

    spec = _spec_from_args(args)
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


#: Prior grid used by ``sensitivity`` and ``report`` when none is given: the default, a vague
#: prior, two Rhodes et al. (2015) empirical heterogeneity priors and Röver et al.'s (2021)
#: unit-information prior (see docs/model_spec.md).
DEFAULT_GRID = ("default", "vague", "rhodes2015_general", "rhodes2015_mental_nonpharm_vs_control_corrected",
                "rover2021_smd")


def _fit_from_args(args):
    """Spec and effect-size data for the commands that take effect sizes (not correlations)."""
    from bayes_se import api

    spec = _spec_from_args(args)
    if spec.model.type == "mediation":
        raise BayesSEError(f"'bayes-se {args.command}' takes effect-size models; fit a mediation spec with "
                           "'bayes-se fit SPEC --data CORRELATIONS.csv'")
    return spec, api.load_data(args.data, spec)


def cmd_sensitivity(args) -> int:
    from bayes_se.prior_sensitivity import sensitivity

    spec, data = _fit_from_args(args)
    if args.csv:
        from bayes_se.outputs import check_out_file

        check_out_file(args.csv, force=args.force)
    three_level = spec.model.type == "three_level"
    res = sensitivity(data, priors=args.grid or list(DEFAULT_GRID), mods=spec.model.mods or None,
                      engine="mcmc" if args.engine == "mcmc" else "auto", effects=spec.model.effects,
                      three_level=three_level, smallest_effect=spec.summary.smallest_effect,
                      seed=spec.sampler.seed, level=spec.summary.level)
    if args.csv:
        from bayes_se.outputs import atomic_file

        atomic_file(args.csv, lambda tmp: res.table.to_csv(tmp, index=False), force=args.force)
    if args.json:
        _print_json({"engine_by_prior": dict(zip(res.table["prior"], res.table["engine"])),
                     "table": res.table.to_dict(orient="records")})
    else:
        import pandas as pd

        with pd.option_context("display.width", 160, "display.max_columns", 30):
            print(res.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def cmd_report(args) -> int:
    from bayes_se import api
    from bayes_se.outputs import check_out_dir
    from bayes_se.report import write_report
    from bayes_se.prior_sensitivity import sensitivity

    spec, data = _fit_from_args(args)
    check_out_dir(args.out, force=args.force)
    res = api.fit(data, spec, draws=args.draws, tune=args.tune, chains=args.chains)
    sens = None
    if spec.model.type != "three_level":
        sens = sensitivity(data, priors=args.grid or list(DEFAULT_GRID), mods=spec.model.mods or None,
                           effects=spec.model.effects, smallest_effect=spec.summary.smallest_effect,
                           seed=spec.sampler.seed, level=spec.summary.level)
    out = write_report(args.out, data=data, fit=res, spec=spec, sensitivity=sens, title=args.title,
                       force=args.force)
    print(f"wrote {out / 'report.html'}")
    return 0


def cmd_demo(args) -> int:
    from bayes_se.demo import run_demo

    run_demo(args.data_dir, args.out, seed=args.seed, quick=args.quick)
    return 0


def _add_fit_args(p, *, sampler: bool = True) -> None:
    p.add_argument("spec", nargs="?", default=None,
                   help="model spec (TOML; default: the random-effects model of models/random_effects.toml)")
    p.add_argument("--data", required=True, help="CSV file of effect sizes")
    p.add_argument("--prior", action="append", default=[], metavar="PARAM=DIST",
                   help='override a prior, e.g. --prior "mu=normal(0, 1)" --prior "tau=half_normal(0.5)" '
                        '--prior "beta[guided]=normal(0, 0.5)" --prior "preset=rhodes2015_general"')
    p.add_argument("--mods", default=None, help='moderators, e.g. "guided + year"')
    p.add_argument("--engine", default=None, choices=["mcmc", "exact"], help="override the spec's engine")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the spec's)")
    if sampler:
        p.add_argument("--draws", type=int, default=None, help="draws per chain (default: the spec's)")
        p.add_argument("--tune", type=int, default=None, help="tuning steps per chain (default: the spec's)")
        p.add_argument("--chains", type=int, default=None, help="chains (default: the spec's)")
    p.add_argument("--force", action="store_true", help="replace existing output")
    g = p.add_argument_group("column mapping (overrides the spec's [data])")
    for name in ("effect", "variance", "se", "study", "cluster"):
        g.add_argument(f"--{name}", default=None)


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
    _add_fit_args(p)
    p.add_argument("--out", default=None, help="folder for the InferenceData, summary CSV and spec used")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_fit)

    grid_help = ('a prior-grid entry: a preset name or assignments "mu=normal(0, 1); tau=half_cauchy(0.5)"; '
                 f"repeat for several (default: {', '.join(DEFAULT_GRID)})")
    p = sub.add_parser("sensitivity", help="one model under a grid of priors (exact engine where possible)")
    _add_fit_args(p, sampler=False)
    p.add_argument("--grid", action="append", default=[], metavar="ENTRY", help=grid_help)
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_sensitivity)

    p = sub.add_parser("report", help="fit, check and write a self-contained HTML/Markdown report")
    _add_fit_args(p)
    p.add_argument("--out", required=True, help="report folder (never replaced without --force)")
    p.add_argument("--grid", action="append", default=[], metavar="ENTRY", help=grid_help)
    p.add_argument("--title", default="Bayesian meta-analysis", help="report title")
    p.set_defaults(func=cmd_report)

    from bayes_se.demo import DEFAULT_DATA_DIR, DEMO_SEED

    p = sub.add_parser("demo", help="the flagship analysis on the bundled simulated self-efficacy data")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help=f"dataset folder (default {DEFAULT_DATA_DIR})")
    p.add_argument("--out", default="bayes_se_demo",
                   help="report folder (default bayes_se_demo; an existing one is kept and -2, -3, ... used)")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"random seed (default {DEMO_SEED})")
    p.add_argument("--quick", action="store_true", help="small MCMC settings, for a smoke test")
    p.set_defaults(func=cmd_demo)

    from bayes_se import simulation

    simulation.add_parser(sub)
    return parser


#: One BLAS thread: the models' matrices are small, and threaded BLAS on a busy machine made each
#: gradient of the mediation model about ten times slower. Set before NumPy loads; a user's own
#: setting wins.
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """bayes_se's own warnings as one line on stderr; others in Python's usual form."""
    from bayes_se.errors import ConvergenceWarning, PriorScaleWarning

    if issubclass(category, (PriorScaleWarning, ConvergenceWarning)):
        print(f"bayes-se: warning: {message}", file=sys.stderr if file is None else file)
    else:
        _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)


_PYTHON_SHOWWARNING = warnings.showwarning


def main(argv=None) -> int:
    import os

    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
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
