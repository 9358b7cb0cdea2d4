"""Command-line interface: a thin layer over the Python API.

Every subcommand parses its arguments, calls the public API and prints either a human table or
one JSON object (``--json``). Bad input (any :class:`bayes_se.errors.BayesSEError`, a missing
file) prints one readable line to stderr and exits with status 2; nothing is written. Ctrl-C
prints ``interrupted`` and exits 130; a reader that closes the output pipe early ends the command
quietly with 141 (no traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings

from bayes_se.errors import BayesSEError

EXIT_BAD_INPUT = 2


def _add_column_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("column mapping")
    g.add_argument("--effect", default="yi", help="column of effect sizes (default: yi)")
    g.add_argument("--variance", default=None, help="column of sampling variances (default: vi)")
    g.add_argument("--se", default=None, help="column of standard errors (instead of --variance)")
    g.add_argument("--study", default="study", help="column of study labels (default: study)")
    g.add_argument("--cluster", default=None, help="column of cluster ids: effects nested in studies")


def _load(args):
    from bayes_se.data import load_effects

    return load_effects(
        args.data,
        effect=args.effect,
        variance=args.variance or "vi",
        se=args.se,
        study=args.study,
        cluster=args.cluster,
        **_reading_options(args),
    )


def _print_json(obj) -> None:
    from bayes_se.json_text import dumps

    print(dumps(obj))


def cmd_freq_paths(args) -> int:
    """``bayes-se freq PATHS.csv --paths``: reported mediation paths pooled by the bivariate
    random-effects model of (a, b) (metafor's ``rma.mv``, ``struct = "UN"``), c' by ``rma``."""
    from bayes_se.frequentist.mediation_paths import paths_rma
    from bayes_se.reported_paths import load_paths

    given = [flag for flag, value in (("--mods", args.mods), ("--scale", args.scale), ("--cluster", args.cluster),
                                      ("--robust", args.robust), ("--influence", args.influence),
                                      ("--cumul", args.cumul), ("--test knha", args.test == "knha"))
             if value]
    if given:
        raise BayesSEError(f"--paths pools reported mediation paths; {', '.join(given)} does not apply to it")
    method = args.method.upper()
    if method not in ("REML", "ML"):
        raise BayesSEError(f"--paths estimates the between-study covariance of (a, b) by REML or ML, not {args.method}")
    data = load_paths(args.data, study=args.study, **_reading_options(args))
    res = paths_rma(data, method=method, level=args.level)
    if args.json:
        _print_json(res.to_dict())
    else:
        print(res.summary())
    return 0


def cmd_freq(args) -> int:
    if args.paths:
        return cmd_freq_paths(args)
    data = _load(args)
    if args.cluster:
        # effects nested in studies: metafor's rma.mv(yi, vi, random = ~ 1 | cluster/effect)
        from bayes_se.frequentist import rma_mv

        res = rma_mv(data, mods=args.mods, method=args.method.upper(),
                     test="t" if args.test == "knha" else "z", level=args.level, na=args.na)
        out = res.to_dict()  # the keys of rma's to_dict (estimate, ci_lower, pi_lower, Q, ...) and sigma2
    else:
        from bayes_se.frequentist import rma

        res = rma(data, mods=args.mods, method=args.method, test=args.test, level=args.level, na=args.na,
                  scale=args.scale)
        out = res.to_dict()  # with --scale: also scale_coefficients, QS, LRT (location_scale.LocationScaleResult)
    rob = None
    if args.robust:  # cluster-robust table by the --cluster column (clubSandwich CR2 / metafor robust)
        from bayes_se.frequentist import robust

        rob = robust(res, cluster=data.cluster, adjust=args.adjust or "CR2")
        out["robust"] = rob.to_dict()
    tables = _influence_tables(args, res)  # --influence / --cumul
    if args.json:
        _print_json({**out, **{key: _rows(table) for key, table in tables.items()}})
    else:
        print(res.summary())
        if rob is not None:
            print("\n" + rob.summary())
        for key, table in tables.items():
            print(f"\n{'Influence diagnostics (metafor influence)' if key == 'influence' else 'Cumulative meta-analysis'}:")
            print(table.to_string(float_format=lambda x: f"{x:.4f}"))
    return 0


def _influence_tables(args, res) -> dict:
    """``{"influence": DataFrame, "cumul": DataFrame}`` for the flags given (metafor's influence, cumul)."""
    tables = {}
    if getattr(args, "influence", False):
        tables["influence"] = res.influence()
    if getattr(args, "cumul", False):
        tables["cumul"] = res.cumul(args.order)
    return tables


def _rows(table) -> list:
    """A table as a list of row dicts, each with its study label first."""
    return [{"study": str(label), **row} for label, row in zip(table.index, table.to_dict("records"))]


def _spec_columns(args):
    """Column overrides given on the command line (None where not given)."""
    cols = {k: getattr(args, k) for k in ("effect", "variance", "se", "study", "cluster")
            if getattr(args, k, None) is not None}
    if cols.get("se") and "variance" not in cols:
        cols["variance"] = ""  # --se replaces the spec's variance column
    return cols


def _spec_arg(args):
    """The SPEC argument as a path (a missing file is then 'file not found', never read as TOML);
    a packaged spec's name (``three_level``) that is not an existing file is that packaged spec."""
    import pathlib

    from bayes_se.resources import spec_names, spec_source

    if not args.spec:
        return None
    path = pathlib.Path(spec_source(args.spec))
    if not path.exists() and len(path.parts) == 1:
        raise BayesSEError(f"spec file '{path}' not found, and no packaged spec has that name "
                           f"(available: {', '.join(spec_names())})")
    return path


def _spec_from_args(args):
    """The spec named on the command line with its overrides (priors, mods, engine, seed, columns)."""
    import dataclasses

    from bayes_se import api

    scale = getattr(args, "scale", None) if args.command == "fit" else None
    spec = api.resolve_spec(_spec_arg(args), priors=args.prior if scale is None else None, mods=args.mods,
                            engine=args.engine, seed=args.seed)
    if scale is not None:  # --scale: checked as the spec's key, before the alpha[...] priors that need it
        from bayes_se.spec import load_spec

        spec = load_spec(dataclasses.replace(spec, model=dataclasses.replace(spec.model, scale=scale.strip() or None))
                         .to_toml())
        spec = api.resolve_spec(spec, priors=args.prior)
    if args.level is not None:
        from bayes_se.fits import check_level

        spec = dataclasses.replace(spec, summary=dataclasses.replace(spec.summary, level=check_level(args.level)))
    if getattr(args, "rho", None) is not None:
        spec = spec.with_rho(args.rho)
    cols = {**_spec_columns(args), **_reading_options(args)}
    if cols:
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, **cols))
    if args.cluster and spec.model.type != "three_level":
        # --cluster only names the column; the spec decides the model (its priors differ)
        raise BayesSEError(f"--cluster {args.cluster} names the cluster column of a three-level model, but "
                           f"this spec is type = '{spec.model.type}'; fit the three-level spec instead: "
                           f"bayes-se {args.command} models/three_level.toml --data {args.data} "
                           f"--cluster {args.cluster}")
    return spec


def _inputs(args) -> list:
    """The files a command reads (never to be replaced by its output)."""
    return [p for p in (getattr(args, "data", None), getattr(args, "spec", None), getattr(args, "rob", None),
                        getattr(args, "correlations", None)) if p]


def _out_lock(args):
    """The output folder's lock, held from before the fit to the end of the write (no-op without --out)."""
    import contextlib

    from bayes_se.outputs import check_out_dir, output_lock

    if not getattr(args, "out", None):
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def locked():
        with output_lock(args.out):
            check_out_dir(args.out, force=args.force, inputs=_inputs(args))  # after recovery
            yield

    return locked()


#: Flags whose values are counts, and their smallest allowed value.
COUNT_FLAGS = {"draws": 1, "chains": 1, "tune": 0, "seed": 0}


def check_args(args) -> None:
    """Refuse bad or conflicting flags before any file is read or any model is fitted.

    Counts (``--draws``/``--chains`` >= 1, ``--tune``/``--seed`` >= 0), ``--level`` in (0, 1),
    ``--variance`` with ``--se``, a moderator that is the effect/variance/SE column, the
    three-level frequentist model by a method other than REML/ML, and output paths (see
    :func:`bayes_se.outputs.check_out_location`).
    """
    if args.command not in ("freq", "fit", "sensitivity", "report", "bias"):
        return
    for name, low in COUNT_FLAGS.items():
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise BayesSEError(f"--{name} must be >= {low}, got {value}")
    level = getattr(args, "level", None)
    if level is not None and not 0.0 < level < 1.0:
        raise BayesSEError(f"--level must be strictly between 0 and 1, got {level}")
    if args.variance is not None and args.se is not None:
        raise BayesSEError(f"--variance {args.variance} and --se {args.se} conflict: give the sampling "
                           "variance column or the standard-error column, not both")
    if args.command == "freq" and args.mods:  # (the other commands: the spec's check, which knows its columns)
        from bayes_se.spec import outcome_moderator

        variance = args.variance or ("" if args.se else "vi")
        hit = outcome_moderator(args.mods, effect=args.effect, variance=variance, se=args.se or "")
        if hit:
            raise BayesSEError(f"--mods {args.mods!r}: '{hit[0]}' is the {hit[1]} column; it cannot also be "
                               "a moderator")
    if getattr(args, "robust", False) and not args.cluster:
        raise BayesSEError("--robust needs --cluster COLUMN, the clusters whose effects the robust standard "
                           "errors group")
    if getattr(args, "adjust", None) and not getattr(args, "robust", False):
        raise BayesSEError(f"--adjust {args.adjust} applies to the cluster-robust table; add --robust")
    if args.command == "freq" and getattr(args, "scale", None):
        if args.cluster:
            raise BayesSEError("--scale (a location-scale model) cannot be combined with --cluster")
        if args.method.upper() not in ("REML", "ML"):
            raise BayesSEError(f"a location-scale model (--scale) is fitted by REML or ML, not {args.method}")
    if args.command == "freq" and (args.influence or args.cumul or args.order):
        if args.order and not args.cumul:
            raise BayesSEError("--order sorts the studies of --cumul; give --cumul too")
        what = "--influence" if args.influence else "--cumul"
        if args.cluster:
            raise BayesSEError(f"{what} is for the univariate model (metafor's rma), not with --cluster")
        if getattr(args, "scale", None):
            raise BayesSEError(f"{what} is for the location model (metafor's rma without scale=); drop --scale")
        if args.cumul and args.mods:
            raise BayesSEError("--cumul is for models without moderators (as metafor's cumul); drop --mods")
    if args.command == "freq" and args.cluster and args.method.upper() not in ("REML", "ML"):
        raise BayesSEError(f"the three-level model (--cluster) is fitted by REML or ML, not {args.method}")
    if getattr(args, "out", None):
        from bayes_se.outputs import check_out_dir

        check_out_dir(args.out, force=args.force, inputs=_inputs(args))
    if getattr(args, "csv", None):
        from bayes_se.outputs import check_out_file

        check_out_file(args.csv, force=args.force, inputs=_inputs(args))


def cmd_fit(args) -> int:
    from bayes_se import api
    from bayes_se.outputs import write_fit_outputs
    from bayes_se.table import check_readable

    spec = _spec_from_args(args)
    for path in (args.data, args.correlations):  # a mistyped name is told before PyMC is imported
        if path is not None:
            check_readable(path)
    if args.correlations is not None:  # --correlations: the spec's [mediation] correlations
        import dataclasses

        if spec.model.type != "mediation_paths":
            raise BayesSEError(f"--correlations adds correlation matrices to the path-based mediation model; this "
                               f"spec is type = '{spec.model.type}' (use models/mediation_paths.toml)")
        spec = dataclasses.replace(spec, mediation=dataclasses.replace(spec.mediation, correlations=args.correlations))
    with _out_lock(args):
        res = api.fit(args.data, spec, draws=args.draws, tune=args.tune, chains=args.chains, na=args.na)
        if args.out:
            write_fit_outputs(res, spec, args.out, force=args.force, inputs=_inputs(args))
    if args.json:
        _print_json(res.to_dict(interval=args.interval))
    else:
        print(res.print_summary(interval=args.interval))
        if args.out:
            print(f"\nwrote {args.out}")
    return 0


#: Prior grid used by ``sensitivity`` and ``report`` when none is given: the default, a vague
#: prior, two Rhodes et al. (2015) empirical heterogeneity priors and Röver et al.'s (2021)
#: unit-information prior (see docs/model_spec.md).
DEFAULT_GRID = ("default", "vague", "rhodes2015_general", "rhodes2015_mental_nonpharm_vs_control_corrected",
                "rover2021_smd")


def _fit_from_args(args, spec=None):
    """Spec and effect-size data for the commands that take effect sizes (not correlations)."""
    from bayes_se import api

    spec = _spec_from_args(args) if spec is None else spec
    if spec.model.type in ("mediation", "mediation_paths"):
        raise BayesSEError(f"'bayes-se {args.command}' takes effect-size models; fit a mediation spec with "
                           "'bayes-se fit SPEC --data CORRELATIONS.csv' (PATHS.csv for type = mediation_paths)")
    return spec, api.load_data(args.data, spec)


def cmd_sensitivity(args) -> int:
    from bayes_se.prior_sensitivity import sensitivity

    spec, data = _fit_from_args(args)
    three_level = spec.model.type == "three_level"
    res = sensitivity(data, priors=args.grid or list(DEFAULT_GRID), mods=spec.model.mods or None,
                      scale=spec.model.scale,
                      engine="mcmc" if args.engine == "mcmc" else "auto", effects=spec.model.effects,
                      three_level=three_level, smallest_effect=spec.summary.smallest_effect,
                      seed=spec.sampler.seed, level=spec.summary.level, na=args.na)
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
    from bayes_se.report import write_report
    from bayes_se.prior_sensitivity import sensitivity

    spec = _spec_from_args(args)
    rob = None
    if args.rob:  # read and matched to the effects before any fitting: a bad table fails fast
        from bayes_se.risk_of_bias import effect_judgements, read_rob

        rob = read_rob(args.rob)
    with _out_lock(args):
        spec, data = _fit_from_args(args, spec)
        if rob is not None:
            effect_judgements(rob, data, args.rob_by)
        res = api.fit(data, spec, draws=args.draws, tune=args.tune, chains=args.chains, na=args.na)
        sens = None
        if spec.model.type != "three_level" and spec.model.scale is None:  # location-scale: a note instead
            sens = sensitivity(data, priors=args.grid or list(DEFAULT_GRID), mods=spec.model.mods or None,
                               effects=spec.model.effects, smallest_effect=spec.summary.smallest_effect,
                               seed=spec.sampler.seed, level=spec.summary.level, na=args.na)
        out = write_report(args.out, data=data, fit=res, spec=spec, sensitivity=sens, title=args.title,
                           force=args.force, rob=rob, rob_by=args.rob_by)
    print(f"wrote {out / 'report.html'}")
    return 0


def cmd_demo(args) -> int:
    from bayes_se.demo import run_demo

    run_demo(args.data_dir, args.out, seed=args.seed, quick=args.quick)
    return 0


MODS_HELP = ('moderator formula, e.g. "guided + year", "~ factor(dose) * year", "0 + group" '
             "(see docs/model_spec.md)")


def _add_na_arg(p) -> None:
    p.add_argument("--na", default="omit", choices=["omit", "error"],
                   help="a row with a missing moderator: leave it out with a warning (omit, default) "
                        "or stop with an error naming it (error)")


def cmd_models(args) -> int:
    from bayes_se.resources import spec_description, spec_names

    names = spec_names()
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {spec_description(name)}")
    return 0


def cmd_init(args) -> int:
    import pathlib

    from bayes_se.outputs import atomic_file
    from bayes_se.resources import spec_file

    source = spec_file(args.name)  # an unknown name: one line listing the available ones
    out = pathlib.Path(args.out) if args.out else pathlib.Path(source.name)
    if out.is_dir():
        out = out / source.name
    data = source.read_bytes()
    atomic_file(out, lambda tmp: pathlib.Path(tmp).write_bytes(data), force=args.force)
    print(f"wrote {out} (a copy of the packaged spec '{source.name}'; edit it, then: "
          f"bayes-se fit {out} --data YOUR.csv)")
    return 0


def _add_fit_args(p, *, sampler: bool = True) -> None:
    p.add_argument("spec", nargs="?", default=None,
                   help="model spec: a TOML file, or the name of a packaged spec (bayes-se models); "
                        "default: the packaged random_effects")
    p.add_argument("--data", required=True, help="CSV file of effect sizes")
    p.add_argument("--prior", action="append", default=[], metavar="PARAM=DIST",
                   help='override a prior, e.g. --prior "mu=normal(0, 1)" --prior "tau=half_normal(0.5)" '
                        '--prior "beta[guided]=normal(0, 0.5)" --prior "preset=rhodes2015_general"')
    p.add_argument("--mods", default=None, help=MODS_HELP)
    _add_na_arg(p)
    p.add_argument("--engine", default=None, choices=["mcmc", "exact"], help="override the spec's engine")
    p.add_argument("--rho", type=float, default=None,
                   help="three-level spec, exact engine: assumed within-cluster sampling correlation "
                        "(metafor's vcalc rho; overrides the spec's [model] rho)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the spec's)")
    p.add_argument("--level", type=float, default=None,
                   help="credible level of intervals, in (0, 1) (default: the spec's [summary] level, 0.95)")
    p.add_argument("--interval", default="central", choices=["central", "hdi"],
                   help="central (equal-tailed) or hdi (highest-density, shortest) intervals")
    if sampler:
        p.add_argument("--draws", type=int, default=None, help="draws per chain (default: the spec's)")
        p.add_argument("--tune", type=int, default=None, help="tuning steps per chain (default: the spec's)")
        p.add_argument("--chains", type=int, default=None, help="chains (default: the spec's)")
    p.add_argument("--force", action="store_true", help="replace existing output")
    g = p.add_argument_group("column mapping (overrides the spec's [data])")
    for name in ("effect", "variance", "se", "study"):
        g.add_argument(f"--{name}", default=None)
    g.add_argument("--cluster", default=None,
                   help="cluster column of a three-level spec (with a two-level spec: refused; use "
                        "models/three_level.toml)")
    _add_reading_args(p)


# ----------------------------------------------------------------- bias: small-study effects, publication bias


def _parse_steps(text: str) -> list[float]:
    """``--steps 0.025,0.5``: comma-separated, strictly increasing values in (0, 1]."""
    try:
        steps = [float(t) for t in text.replace(" ", "").split(",") if t != ""]
    except ValueError:
        raise BayesSEError(f"--steps {text!r}: give numbers separated by commas, e.g. 0.025,0.5") from None
    if not steps:
        raise BayesSEError("--steps is empty: give numbers separated by commas, e.g. 0.025,0.5")
    if any(not (0 < s <= 1) for s in steps):
        raise BayesSEError(f"--steps {text!r}: every step must lie in (0, 1]")
    if any(b <= a for a, b in zip(steps, steps[1:])):
        raise BayesSEError(f"--steps {text!r}: steps must be strictly increasing")
    return steps


def cmd_bias(args) -> int:
    """The frequentist bias battery, or one selection model (``--selmodel TYPE --steps ...``)."""
    from bayes_se.frequentist.selection import SELMODEL_TYPES

    steps = None if args.steps is None else _parse_steps(args.steps)
    if args.selmodel is None and steps is not None:
        raise BayesSEError("--steps needs --selmodel TYPE")
    if args.selmodel is not None and args.selmodel not in SELMODEL_TYPES:
        raise BayesSEError(f"--selmodel {args.selmodel!r}: unknown type (use one of {', '.join(SELMODEL_TYPES)})")
    if args.cluster:
        raise BayesSEError("bayes-se bias fits one effect per study; --cluster is not supported")
    if args.bayes and args.selmodel is not None:
        raise BayesSEError("--bayes averages its own ensemble of models; drop --selmodel")
    prior_probs = _prior_probs(args.prior_prob)
    if prior_probs and not args.bayes:
        raise BayesSEError("--prior-prob sets the prior model probabilities of --bayes; add --bayes")
    data = _load(args)
    if args.bayes:  # RoBMA-style model averaging (bayes_se.bias_averaging)
        from bayes_se.bias_averaging import bias_ensemble

        ens = bias_ensemble(data, prior_probs=prior_probs or None, seed=args.seed, level=args.level)
        if args.json:
            _print_json(ens.to_dict())
        else:
            print(ens.print_summary())
            diag = ens.diagnostics()
            print("\nDiagnostics: " + ("every sampled model converged" if diag["passed"] else
                                       "NOT PASSED:\n  " + "\n  ".join(diag["problems"])))
        return 0
    from bayes_se.frequentist import bias_battery, rma, selmodel

    res = rma(data, method=args.method, level=args.level)
    if args.selmodel is not None:
        fit = selmodel(res, type=args.selmodel, steps=steps, alternative=args.alternative)
        out, text = fit.to_dict(), fit.summary()
    else:
        out = bias_battery(res, as_dict=True)
        text = None
    if args.json:
        _print_json(out)
    elif text is not None:
        print(text)
    else:
        import pandas as pd

        table = pd.DataFrame(out["tests"]).set_index("method")
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(f"Small-study effects and publication bias (k = {out['k']}, {out['method']})\n")
            print(table.to_string(float_format=lambda v: f"{v:.4f}", na_rep=""))
    return 0


def _prior_probs(entries) -> dict:
    """``--prior-prob effect=0.5`` (repeatable) as ``{"effect": 0.5}``, checked."""
    out = {}
    for entry in entries or []:
        key, sep, value = entry.partition("=")
        key = key.strip()
        if not sep or key not in ("effect", "heterogeneity", "bias"):
            raise BayesSEError(f"--prior-prob {entry!r}: write effect=P, heterogeneity=P or bias=P")
        try:
            p = float(value)
        except ValueError:
            raise BayesSEError(f"--prior-prob {entry!r}: {value.strip()!r} is not a number") from None
        if not 0.0 <= p <= 1.0:
            raise BayesSEError(f"--prior-prob {entry!r}: a probability lies in [0, 1]")
        out[key] = p
    return out


def _add_bias_parser(sub) -> None:
    p = sub.add_parser("bias", help="small-study effects and publication bias: Egger, rank test, trim-and-fill, "
                                    "PET-PEESE, selection models (metafor's selmodel)")
    p.add_argument("data", help="CSV file of effect sizes")
    p.add_argument("--method", default="REML",
                   help="tau2 estimator of the unadjusted model: EE, DL, REML, ML, ... (default REML)")
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--selmodel", default=None, metavar="TYPE",
                   help="fit one selection model: stepfun, beta, halfnorm, negexp, logistic or power")
    p.add_argument("--steps", default=None, metavar="S1,S2,...",
                   help="p-value steps of the selection model, e.g. 0.025 (3PSM) or 0.025,0.5")
    p.add_argument("--alternative", default="greater", choices=["greater", "less", "two.sided"],
                   help="p-values the selection acts on (default: one-sided, greater)")
    p.add_argument("--bayes", action="store_true",
                   help="Bayesian model averaging over effect x heterogeneity x {no bias, selection models, PET, "
                        "PEESE} (RoBMA's design; JSON keys mu, tau, inclusion_bf, models)")
    p.add_argument("--prior-prob", action="append", default=[], metavar="KEY=P",
                   help="with --bayes: prior probability of effect, heterogeneity or bias (default 0.5 each)")
    p.add_argument("--seed", type=int, default=None, help="random seed of --bayes (default: the package's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _add_column_args(p)
    _add_reading_args(p)
    p.set_defaults(func=cmd_bias)


# ----------------------------------------------------------------- reading data tables: flags, check


def _add_reading_args(p: argparse.ArgumentParser) -> None:
    """--sep, --decimal, --encoding: how the data table is read (bayes_se.table; default: sniffed)."""
    g = p.add_argument_group("reading the data table (default: sniffed; see docs/bad_input.md)")
    g.add_argument("--sep", default=None, metavar="S",
                   help="delimiter: ',', ';', '|' or tab (also 'tab', 'comma', 'semicolon', 'pipe')")
    g.add_argument("--decimal", default=None, metavar="D", help="decimal mark: '.' or ','")
    g.add_argument("--encoding", default=None, metavar="E",
                   help="text encoding, e.g. utf-8, utf-16, cp1252, latin-1")


def _reading_options(args) -> dict:
    """The reader options given on the command line (``sep``, ``decimal``, ``encoding``)."""
    return {k: getattr(args, k) for k in ("sep", "decimal", "encoding") if getattr(args, k, None) is not None}


def cmd_check(args) -> int:
    from bayes_se.data_check import describe, format_description

    report = describe(args.data, study=args.study, cluster=args.cluster, effect=args.effect,
                      variance=args.variance, se=args.se, **_reading_options(args))
    if args.json:
        _print_json(report)
    else:
        print(format_description(report))
    return 0


def _add_check_parser(sub) -> None:
    p = sub.add_parser("check", help="show how a data table is read (delimiter, decimal mark, encoding, "
                                     "column types, missing cells), without fitting anything")
    p.add_argument("data", help="data table (effect sizes or correlations)")
    _add_reading_args(p)
    g = p.add_argument_group("columns")
    g.add_argument("--study", default=None, help="column of study labels (reports labels and repeats)")
    g.add_argument("--cluster", default=None, help="column of cluster ids (reports the number of clusters)")
    g.add_argument("--effect", default="yi", help="effect column for the effect-table check (default: yi)")
    g.add_argument("--variance", default="vi", help="variance column (default: vi)")
    g.add_argument("--se", default=None, help="standard-error column (instead of --variance)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_check)


@contextlib.contextmanager
def _data_warnings_as_lines():
    """Print each of bayes_se's own warnings (:class:`~bayes_se.errors.DataWarning`,
    ``PriorScaleWarning``, ``ConvergenceWarning``, ``MethodWarning``) once, as one ``bayes-se: warning:`` line on
    stderr; other warnings as Python prints them."""
    from bayes_se.errors import ConvergenceWarning, DataWarning, MethodWarning, PriorScaleWarning

    with warnings.catch_warnings():
        default, shown = warnings.showwarning, set()

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, (DataWarning, PriorScaleWarning, ConvergenceWarning, MethodWarning)):
                if str(message) in shown:  # once, however many engines read the same rows
                    return
                shown.add(str(message))
                print(f"bayes-se: warning: {message}", file=sys.stderr if file is None else file)
            else:
                default(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


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
    p.add_argument("--mods", default=None, help=MODS_HELP)
    p.add_argument("--scale", default=None, metavar="FORMULA",
                   help="scale formula: a location-scale model, log tau_i^2 = Z alpha (metafor's scale=; REML/ML)")
    _add_na_arg(p)
    p.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--robust", action="store_true",
                   help="add cluster-robust tests by --cluster (JSON key 'robust'; clubSandwich / metafor robust)")
    p.add_argument("--adjust", default=None, type=str.upper, choices=["CR2", "CR1", "CR0"],
                   help="small-sample adjustment of --robust: CR2 with Satterthwaite df (default), or metafor's "
                        "CR1/CR0 with df = clusters - p")
    p.add_argument("--influence", action="store_true",
                   help="influence diagnostics of each study (metafor's influence; JSON key 'influence')")
    p.add_argument("--cumul", action="store_true",
                   help="cumulative meta-analysis (metafor's cumul; JSON key 'cumul')")
    p.add_argument("--order", default=None, metavar="COLUMN",
                   help="with --cumul: add the studies in the order of this column (default: data order)")
    p.add_argument("--paths", action="store_true",
                   help="DATA holds reported mediation paths (study, a, se_a, b, se_b[, cov_ab, c_prime, se_c_prime]): "
                        "the bivariate random-effects model of (a, b) (metafor's rma.mv, struct UN), c' by rma, and "
                        "the indirect effect a*b with delta-method and Monte Carlo intervals (REML or ML)")
    _add_column_args(p)
    _add_reading_args(p)
    p.set_defaults(func=cmd_freq)

    p = sub.add_parser("fit", help="Bayesian random-effects model, meta-regression or three-level model")
    _add_fit_args(p)
    p.add_argument("--out", default=None, help="folder for the InferenceData, summary CSV and spec used")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--scale", default=None, metavar="FORMULA",
                   help="scale formula: a location-scale model, log tau_i = z_i' alpha (replaces the spec's "
                        "model.scale; \"\" removes it; priors alpha[NAME] via --prior)")
    p.add_argument("--correlations", default=None, metavar="CSV",
                   help="path-based mediation spec (type = mediation_paths): a correlation table of the trials "
                        "that give a matrix of x, m, y instead of paths (the spec's [mediation] correlations)")
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
    p.add_argument("--rob", default=None, metavar="FILE",
                   help="risk-of-bias table (RoB 2 or ROBINS-I; columns study, domain, judgement, Overall as a "
                        "domain or an 'overall' column): adds the 'Risk of bias' section")
    p.add_argument("--rob-by", default=None, metavar="COLUMN",
                   help="data column naming each effect's study in the --rob table (default: the study label, "
                        "else the cluster)")
    p.set_defaults(func=cmd_report)

    _add_check_parser(sub)

    from bayes_se.defaults import SEED as DEMO_SEED  # = bayes_se.demo.DEMO_SEED (that module imports pandas)

    p = sub.add_parser("demo", help="the flagship analysis on the bundled simulated self-efficacy data")
    p.add_argument("--data-dir", default=None,
                   help="dataset folder (default: the simulated data bundled with the package)")
    p.add_argument("--out", default="bayes_se_demo",
                   help="report folder (default bayes_se_demo; an existing one is kept and -2, -3, ... used)")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"random seed (default {DEMO_SEED})")
    p.add_argument("--quick", action="store_true", help="small MCMC settings, for a smoke test")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("models", help="list the packaged model specs (bayes-se init NAME copies one)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("init", help="write a copy of a packaged model spec to edit")
    p.add_argument("name", metavar="NAME", help="a packaged spec (bayes-se models lists them)")
    p.add_argument("--out", default=None, help="file or folder to write (default: ./NAME.toml)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.set_defaults(func=cmd_init)

    from bayes_se import sbc, simulation

    simulation.add_parser(sub)
    sbc.add_parser(sub)
    _add_bias_parser(sub)
    return parser


#: One BLAS thread: the models' matrices are small, and threaded BLAS on a busy machine made each
#: gradient of the mediation model about ten times slower. Set before NumPy loads; a user's own
#: setting wins.
BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


#: Exit status after a closed output pipe (128 + SIGPIPE, as a shell reports a process it killed).
EXIT_BROKEN_PIPE = 141
#: Exit status after Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


def main(argv=None) -> int:
    import os

    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        check_args(args)
        with _data_warnings_as_lines():
            code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's flush at exit
        return code
    except BrokenPipeError:
        # the reader went away (`bayes-se ... | head`): point stdout at devnull so the flush at
        # exit has nowhere to fail (the recipe of the Python docs, signal module, "Note on SIGPIPE")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
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
