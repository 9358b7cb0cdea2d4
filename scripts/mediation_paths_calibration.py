"""Coverage study of the path-based mediation model on trials simulated at the participant level.

Design (Morris, White & Crowther 2019): each replicate draws ``k`` trials with
:func:`simulate_mediation_paths.simulate_trials` (``n ~ U{60..300}``, X = +-1 randomised 1:1,
``M = a_i X + e``, ``Y = c'_i X + b_i M + e`` with every variable of variance 1, so a trial's
standardised paths are its generating ``(a_i, b_i, c'_i)``; ``(a_i, b_i) ~ N((a, b), T_ab)``,
``c'_i ~ N(c', tau_c^2)``; each trial reports OLS on z-scores rounded to 3 decimals, every fifth
trial without c'). The truth of each estimand is the mean of the generating distribution:
``a``, ``b``, ``c'``, ``indirect = a b``, ``indirect_avg = a b + rho_ab tau_a tau_b``, ``tau_a``,
``tau_b``. The model is fitted with NUTS (2 chains x 500 draws after 500 tuning steps; PyMC's, or
with ``--sampler nutpie`` nutpie's as the package now fits it by default), the
compiled model and NUTS step reused across replicates (data swapped with ``pm.set_data``,
:meth:`bayes_se.builders.mediation_paths.PathModel.nuts_kwargs`), and
the central 90% interval of each estimand is checked against its truth. One row per replicate
and estimand is appended to the CSV as the study goes (restartable: replicates already in the
file are skipped).

Usage::

    nice -n 10 python scripts/mediation_paths_calibration.py --out benchmarks/mediation_paths_coverage.csv \
        --reps 100 --k 15 70 [--se-model reported|pooled] [--sampler pymc|nutpie]
    python scripts/mediation_paths_calibration.py --out benchmarks/mediation_paths_coverage.csv --summary

``--se-model pooled`` fits with the sampling variance of a standardised ``a`` (a correlation) at
the pooled ``a`` (``(1 - a^2)^2 / (n - 1)``) instead of the reported ``se_a^2``.

References
----------
Morris, T. P., White, I. R. & Crowther, M. J. (2019). Using simulation studies to evaluate
statistical methods. Statistics in Medicine 38, 2074-2102.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRUTH = {"a": 0.25, "b": -0.35, "c_prime": -0.10, "tau_a": 0.10, "tau_b": 0.08, "tau_c": 0.05, "rho_ab": 0.0}
ESTIMANDS = ("a", "b", "c_prime", "indirect", "indirect_avg", "tau_a", "tau_b")
LEVEL = 0.90
FIELDS = ["k", "rep", "se_model", "estimand", "truth", "mean", "sd", "lower", "upper", "covered",
          "mean_reported", "ess_min", "rhat_max", "divergences", "seconds"]


def _simulator():
    spec = importlib.util.spec_from_file_location("simulate_mediation_paths", ROOT / "scripts" / "simulate_mediation_paths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def truths() -> dict:
    t = dict(TRUTH)
    t["indirect"] = t["a"] * t["b"]
    t["indirect_avg"] = t["a"] * t["b"] + t["rho_ab"] * t["tau_a"] * t["tau_b"]
    return t


def replicate_data(k: int, rep: int, seed: int = 20261130):
    """The reported paths of one replicate (deterministic in ``(seed, k, rep)``)."""
    from bayes_se.reported_paths import load_paths

    sim = _simulator()
    rng = np.random.default_rng([seed, k, rep])
    table, _ = sim.simulate_trials(rng, k, a=TRUTH["a"], b=TRUTH["b"], c_prime=TRUTH["c_prime"],
                                   tau_a=TRUTH["tau_a"], tau_b=TRUTH["tau_b"], tau_c=TRUTH["tau_c"],
                                   rho_ab=TRUTH["rho_ab"], n_min=60, n_max=300)
    return load_paths(table)



def fit_once(data, seed: int, se_model: str = "reported", sampler: str = "pymc"):
    """Posterior draws (dict of flat arrays) and sampler diagnostics of one replicate."""
    import arviz as az
    import pymc as pm

    from bayes_se.builders.mediation_paths import build_mediation_paths

    built = build_mediation_paths(data, a_variance=se_model)
    if sampler == "nutpie":  # the package's default: nutpie on the density compiled once per process
        from bayes_se.nutpie_sampling import sample_nutpie

        built.set_data()
        idata = sample_nutpie(built.model, draws=500, tune=500, chains=2, seed=seed, target_accept=0.9)
    else:
        nuts = built.nuts_kwargs(0.9, 2, seed)  # the compiled NUTS step kept with the cached model
        with built.model:
            idata = pm.sample(draws=500, tune=500, chains=2, cores=1, random_seed=seed, progressbar=False,
                              compute_convergence_checks=False, **nuts)
    post = idata.posterior
    a, b = post["a"].values, post["b"].values
    ta, tb, rho = post["tau_a"].values, post["tau_b"].values, post["rho_ab"].values
    draws = {"a": a, "b": b, "c_prime": post["c_prime"].values, "indirect": a * b,
             "indirect_avg": a * b + rho * ta * tb, "tau_a": ta, "tau_b": tb}
    ess = az.ess(post[["a", "b", "c_prime", "tau_a", "tau_b"]])
    rhat = az.rhat(post[["a", "b", "c_prime", "tau_a", "tau_b"]])
    diag = {"ess_min": float(min(ess[v].values for v in ess.data_vars)),
            "rhat_max": float(max(rhat[v].values for v in rhat.data_vars)),
            "divergences": int(idata.sample_stats["diverging"].sum())}
    return draws, diag


def done(out: Path) -> set:
    if not out.exists():
        return set()
    with out.open(encoding="utf-8") as fh:
        return {(int(r["k"]), int(r["rep"]), r["se_model"]) for r in csv.DictReader(fh)}


def summary(out: Path) -> str:
    """Markdown table of the study in ``out``: coverage with its Monte Carlo SE, bias of the
    posterior mean, the SD of the posterior means across replicates against the mean posterior SD."""
    import pandas as pd

    d = pd.read_csv(out)
    d["error"] = d["mean"] - d["truth"]
    rows = ["| se model | k | estimand | replicates | coverage of 90% | MCSE | bias | SD of means | mean posterior SD |",
            "|---|---|---|---|---|---|---|---|---|"]
    for (se_model, k), part in d.groupby(["se_model", "k"], sort=True):
        for name in ESTIMANDS:
            x = part[part["estimand"] == name]
            cov = x["covered"].mean()
            mcse = np.sqrt(cov * (1 - cov) / len(x))
            rows.append(f"| {se_model} | {k} | {name} | {len(x)} | {100 * cov:.1f}% | {100 * mcse:.1f} | "
                        f"{x['error'].mean():+.4f} | {x['mean'].std():.4f} | {x['sd'].mean():.4f} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--k", type=int, nargs="+", default=[15, 70])
    parser.add_argument("--se-model", default="reported", choices=["reported", "pooled"])
    parser.add_argument("--sampler", default="pymc", choices=["pymc", "nutpie"],
                        help="PyMC's NUTS (the study in benchmarks/mediation_paths_coverage.csv) or nutpie")
    parser.add_argument("--summary", action="store_true", help="print the table of the results in --out and stop")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(Path(args.out)))
        return 0
    import logging

    logging.getLogger("pymc").setLevel(logging.ERROR)
    out = Path(args.out)
    have = done(out)
    new = not out.exists()
    truth = truths()
    lo_q, hi_q = (1 - LEVEL) / 2, (1 + LEVEL) / 2
    with out.open("a", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, lineterminator="\n")
        if new:
            writer.writeheader()
        for rep in range(args.reps):
            for k in args.k:
                if (k, rep, args.se_model) in have:
                    continue
                data = replicate_data(k, rep)
                start = time.perf_counter()
                draws, diag = fit_once(data, seed=1000 * k + rep, se_model=args.se_model, sampler=args.sampler)
                seconds = time.perf_counter() - start
                reported = {"a": np.nanmean(data.est[:, 0]), "b": np.nanmean(data.est[:, 1]),
                            "c_prime": np.nanmean(data.est[:, 2])}
                for name in ESTIMANDS:
                    x = np.asarray(draws[name]).ravel()
                    lo, hi = np.quantile(x, [lo_q, hi_q])
                    writer.writerow({"k": k, "rep": rep, "se_model": args.se_model, "estimand": name,
                                     "truth": truth[name], "mean": f"{x.mean():.6g}", "sd": f"{x.std():.6g}",
                                     "lower": f"{lo:.6g}", "upper": f"{hi:.6g}", "covered": int(lo <= truth[name] <= hi),
                                     "mean_reported": f"{reported.get(name, np.nan):.6g}", **diag,
                                     "seconds": f"{seconds:.2f}"})
                fh.flush()
                print(f"k={k} rep={rep} {seconds:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
