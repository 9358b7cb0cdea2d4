"""Does nutpie's NUTS sample the tails of the random-effects posterior as PyMC's does? (issue 17)

BCG vaccine data (13 trials), the reference priors of ``tests/test_mcmc.py`` (mu ~ N(0, 1),
tau ~ HalfNormal(0.5)), default settings (4 chains x (1000 + 1000), target_accept 0.8) for many
seeds: for each fit, the z-score (estimate - exact) / MCSE of the mean and the 2.5% and 97.5%
quantiles of mu and tau, against the exact quadrature posterior
(``tests/reference/exact/bcg.json``), and the number of divergences of the first run. Unbiased
sampling with honest MCSEs gives z-scores with mean 0 and SD about 1.

    python benchmarks/nutpie_tails.py --samplers nutpie pymc --seeds 40 --out benchmarks/results/nutpie_tails.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import pathlib
import warnings

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samplers", nargs="+", default=["nutpie", "pymc"])
    p.add_argument("--seeds", type=int, default=40)
    p.add_argument("--first-seed", type=int, default=20240601)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "nutpie_tails.csv"))
    opts = p.parse_args(argv)

    import arviz as az
    import pymc as pm

    from bayes_se.api import fit_random_effects
    from bayes_se.data import load_effects

    logging.getLogger("pymc").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    exact = json.loads((ROOT / "tests" / "reference" / "exact" / "bcg.json").read_text())["summary"]
    data = load_effects(ROOT / "tests" / "reference" / "data" / "dat.bcg.csv")
    priors = {"mu": lambda name, **kw: pm.Normal(name, 0.0, 1.0, **kw),
              "tau": lambda name, **kw: pm.HalfNormal(name, 0.5, **kw)}
    rows = []
    for sampler in opts.samplers:
        for i in range(opts.seeds):
            seed = opts.first_seed + i
            fit = fit_random_effects(data.yi, data.vi, study=data.study, priors=priors, seed=seed, draws=1000,
                                     tune=1000, chains=4, cores=1, sampler=sampler)
            reason = fit.idata.attrs.get("refit_reason", "")
            row = {"sampler": sampler, "seed": seed,
                   "divergences_first_run": int(reason.split()[0]) if reason else 0}
            for var in ("mu", "tau"):
                draws = fit.idata.posterior[var]
                ds = draws.to_dataset(name="x")
                row[f"{var}_mean_z"] = (float(draws.mean()) - exact[var]["mean"]) / float(
                    az.mcse(ds, method="mean")["x"])
                for key, prob in (("q2.5", 0.025), ("q97.5", 0.975)):
                    q = float(np.quantile(draws.values.ravel(), prob))
                    mcse = float(az.mcse(ds, method="quantile", prob=prob)["x"])
                    row[f"{var}_{key}_z"] = (q - exact[var][key]) / mcse
            rows.append(row)
            print(", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    with open(opts.out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    zs = [k for k in rows[0] if k.endswith("_z")]
    print("\n| sampler | fits | fits with divergences | " + " | ".join(zs) + " |")
    for sampler in opts.samplers:
        sub = [r for r in rows if r["sampler"] == sampler]
        cells = [f"{np.mean([r[k] for r in sub]):+.2f} ({np.std([r[k] for r in sub], ddof=1):.2f})" for k in zs]
        diverged = sum(r["divergences_first_run"] > 0 for r in sub)
        print(f"| {sampler} | {len(sub)} | {diverged} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
