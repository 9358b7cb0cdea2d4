"""Coverage of the MASEM's central 90% intervals on trials simulated from participant-level data.

Each replicate simulates k trials with :func:`bayes_se.mediation_simulation.simulate_mediation_trials`
(n ~ U{60..300}) and fits the correlation-matrix MASEM once per likelihood option (2 chains x 500
draws after 500 tuning steps); one row per (replicate, k, likelihood, parameter) is appended to
the CSV as it comes, so an interrupted run keeps every finished fit. Cells are visited in turn
(k x likelihood inside each replicate), so partial results are balanced.

    nice python scripts/mediation_calibration.py --out benchmarks/results/mediation_calibration.csv --reps 100 [--sampler nutpie|pymc]
    python scripts/mediation_calibration.py --summarise benchmarks/results/mediation_calibration.csv
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

#: Simulation settings (standardised paths; realistic for self-efficacy as mediator).
SETTINGS = {
    "base": dict(a=0.25, b=-0.35, c_prime=-0.10, tau_a=0.10, tau_b=0.08, tau_c=0.05, rho_ab=0.0),
    "corr_ab": dict(a=0.25, b=-0.35, c_prime=-0.10, tau_a=0.15, tau_b=0.12, tau_c=0.05, rho_ab=-0.5),
}
LEVEL = 0.90
#: parameter -> truth key of the simulation
PARAMS = {"a": "masem_a", "b": "masem_b", "indirect": "masem_indirect",
          "rho[intervention,self_efficacy]": "rho[intervention,self_efficacy]",
          "rho[intervention,symptoms]": "rho[intervention,symptoms]",
          "rho[self_efficacy,symptoms]": "rho[self_efficacy,symptoms]"}


def one_fit(corr, truth, likelihood, seed, sampler="nutpie"):
    from bayes_se.correlations import load_correlations
    from bayes_se.mediation import fit_mediation

    data = load_correlations(corr, variables=["intervention", "self_efficacy", "symptoms"])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_mediation(data, seed=seed, draws=500, tune=500, chains=2, cores=1, mc_draws=8,
                            likelihood=likelihood, sampler=sampler)
    elapsed = time.perf_counter() - start
    post = fit.idata.posterior
    rows = []
    for name, key in PARAMS.items():
        if name.startswith("rho["):
            draws = np.asarray(post["rho"].sel(pair=name[4:-1])).ravel()
        else:
            draws = np.asarray(post["effects"].sel(effect=name)).ravel()
        lo, hi = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        t = truth[key]
        rows.append({"parameter": name, "truth": t, "mean": draws.mean(), "median": np.median(draws),
                     "sd": draws.std(), "lower": lo, "upper": hi, "covered": int(lo <= t <= hi),
                     "divergences": fit.diagnostics.divergences, "passed": int(fit.diagnostics.passed),
                     "seconds": elapsed})
    return rows


def run(out, reps, ks, likelihoods, setting, seed, missing_my, sampler="nutpie"):
    rng = np.random.default_rng(seed)
    from bayes_se.mediation_simulation import simulate_mediation_trials

    for rep in range(reps):
        for k in ks:
            sim = simulate_mediation_trials(k, **SETTINGS[setting], n_range=(60, 300), missing_my=missing_my,
                                            seed=rng)
            fit_seed = int(rng.integers(2**31))
            for lik in likelihoods:
                rows = one_fit(sim.correlations, sim.truth, lik, fit_seed, sampler)
                frame = pd.DataFrame(rows)
                frame.insert(0, "likelihood", lik)
                frame.insert(0, "k", k)
                frame.insert(0, "replicate", rep)
                frame.insert(0, "setting", setting)
                frame["redraws"] = sim.truth["redraws"]
                frame.to_csv(out, mode="a", header=not os.path.exists(out), index=False)
                print(f"rep {rep} k {k} {lik}: {rows[0]['seconds']:.1f}s", file=sys.stderr, flush=True)


def summarise(path):
    d = pd.read_csv(path)
    d["error"] = d["median"] - d["truth"]
    d["width"] = d["upper"] - d["lower"]
    g = d.groupby(["setting", "k", "likelihood", "parameter"])
    table = g.agg(reps=("covered", "size"), coverage=("covered", "mean"), bias=("error", "mean"),
                  rmse=("error", lambda e: float(np.sqrt(np.mean(e**2)))), width=("width", "mean"),
                  post_sd=("sd", "mean"), seconds=("seconds", "mean"), failed=("passed", lambda p: int((p == 0).sum())))
    table["mc_se"] = np.sqrt(table["coverage"] * (1 - table["coverage"]) / table["reps"])
    table["bias_se"] = g["error"].std() / np.sqrt(table["reps"])
    return table


def figure(table, path):
    """Coverage (with +-2 Monte Carlo SE) per parameter, one panel per k, one marker per likelihood."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table.reset_index()
    ks = sorted(t["k"].unique())
    liks = list(dict.fromkeys(t["likelihood"]))
    params = list(PARAMS)
    fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks), 3.6), sharey=True, squeeze=False)
    for ax, k in zip(axes[0], ks):
        ax.axhspan(0.88, 0.92, color="0.9", zorder=0)
        ax.axhline(LEVEL, color="0.5", lw=0.8)
        for j, lik in enumerate(liks):
            sub = t[(t["k"] == k) & (t["likelihood"] == lik)].set_index("parameter").reindex(params)
            x = np.arange(len(params)) + (j - (len(liks) - 1) / 2) * 0.22
            ax.errorbar(x, sub["coverage"], yerr=2 * sub["mc_se"], fmt="o", ms=4, capsize=2,
                        label=f"{lik} (n = {int(sub['reps'].min())}-{int(sub['reps'].max())})")
        ax.set_xticks(np.arange(len(params)))
        ax.set_xticklabels([p.replace("rho[intervention,self_efficacy]", "rho XM").replace(
            "rho[intervention,symptoms]", "rho XY").replace("rho[self_efficacy,symptoms]", "rho MY") for p in params],
            rotation=30, ha="right", fontsize=8)
        ax.set_title(f"k = {k} trials", fontsize=10)
        ax.legend(fontsize=7, loc="lower left")
    axes[0][0].set_ylabel("coverage of central 90% intervals")
    axes[0][0].set_ylim(0.5, 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/mediation_calibration.csv")
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--k", type=int, nargs="+", default=[15, 70])
    p.add_argument("--likelihoods", nargs="+", default=["pooled", "own", "fisher_z"])
    p.add_argument("--setting", default="base", choices=sorted(SETTINGS))
    p.add_argument("--missing-my", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=20261130)
    p.add_argument("--sampler", default="nutpie", choices=["nutpie", "pymc"],
                   help="nutpie (the package's default since the mediation_calibration_nutpie.csv rows) or "
                        "PyMC's NUTS (the rows of mediation_calibration.csv)")
    p.add_argument("--summarise", metavar="CSV")
    p.add_argument("--figure", metavar="PNG", help="with --summarise: draw the coverage figure")
    args = p.parse_args(argv)
    if args.summarise:
        table = summarise(args.summarise)
        with pd.option_context("display.width", 200, "display.max_rows", 500):
            print(table.round(4))
        if args.figure:
            figure(table, args.figure)
        return
    run(args.out, args.reps, args.k, args.likelihoods, args.setting, args.seed, args.missing_my, args.sampler)


if __name__ == "__main__":
    main()
