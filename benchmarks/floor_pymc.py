"""The floor for MCMC: a plain PyMC script of the random-effects model, as a user would write it.

``python benchmarks/floor_pymc.py TABLE.csv [DRAWS TUNE]``: reads ``yi``, ``vi`` with pandas, the
non-centred model ``theta = mu + tau z``, ``z ~ N(0, 1)``, ``y ~ N(theta, sqrt(v))``, ``mu ~ N(0, 1)``,
``tau ~ HalfNormal(0.5)``, ``pm.sample`` with 4 chains on 2 cores, then ArviZ's bulk ESS of mu and
tau; prints them as JSON. Every figure of the ratio table divides by this script's, measured in
the same run.
"""

import json
import sys
import time

import arviz as az
import pandas as pd
import pymc as pm


def main(path, draws=1000, tune=1000):
    frame = pd.read_csv(path)
    y, v = frame["yi"].to_numpy(), frame["vi"].to_numpy()
    with pm.Model():
        mu = pm.Normal("mu", 0, 1)
        tau = pm.HalfNormal("tau", 0.5)
        z = pm.Normal("z", 0, 1, shape=len(y))
        pm.Normal("y", mu + tau * z, sigma=v ** 0.5, observed=y)
        t = time.perf_counter()
        idata = pm.sample(draws=draws, tune=tune, chains=4, cores=2, random_seed=20251121, progressbar=False)
        fit_s = time.perf_counter() - t
    ess = az.ess(idata, var_names=["mu", "tau"], method="bulk")
    print(json.dumps({"ess_mu": float(ess["mu"]), "ess_tau": float(ess["tau"]), "fit_s": fit_s,
                      "divergences": int(idata.sample_stats["diverging"].sum())}))


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]))
