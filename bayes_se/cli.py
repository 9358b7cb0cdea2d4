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
