"""Mediation (MASEM) fit times: ``python benchmarks/mediation.py [--k 15 70] [--likelihoods ...] [--cores 1 2]``.

Each row is one whole ``fit_mediation`` call with the default draws (4 chains x 1000 after 1000
tuning steps) in a fresh subprocess, so it includes importing PyMC, compiling the model and the
post-processing; ``sampling_s`` is PyMC's own sampling time and ``us_per_grad`` the sampling
time per gradient evaluation (NUTS overhead included). k = 16 is the bundled
``data/self_efficacy_sim/mediation_correlations.csv``; other k are simulated trials
(:func:`bayes_se.mediation_simulation.simulate_mediation_trials`). Prints a table and appends to
``benchmarks/results/mediation.csv``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUNDLED = os.path.join(ROOT, "data", "self_efficacy_sim", "mediation_correlations.csv")

WORKER = r"""
import json, os, sys, time
for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")
import warnings; warnings.simplefilter("ignore")
start = time.perf_counter()
k, lik, cores, bundled = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
from bayes_se.mediation import fit_mediation
if k == 16:
    data = bundled
else:
    from bayes_se.mediation_simulation import simulate_mediation_trials
    data = simulate_mediation_trials(k, a=0.25, b=-0.35, c_prime=-0.10, tau_a=0.10, tau_b=0.08, tau_c=0.05,
                                     missing_my=0.1, seed=k).correlations
fit = fit_mediation(data, seed=1, cores=cores, likelihood=lik)
total = time.perf_counter() - start
stats = fit.idata.sample_stats
print(json.dumps({"k": k, "likelihood": lik, "cores": cores, "total_s": total,
                  "sampling_s": float(fit.idata.posterior.attrs.get("sampling_time", float("nan"))),
                  "grad_evals": int(stats["n_steps"].sum()), "mean_tree_depth": float(stats["tree_depth"].mean()),
                  "divergences": int(stats["diverging"].sum()), "passed": bool(fit.diagnostics.passed)}))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, nargs="+", default=[16, 70])
    p.add_argument("--likelihoods", nargs="+", default=["pooled"])
    p.add_argument("--cores", type=int, nargs="+", default=[1])
    p.add_argument("--out", default=os.path.join(HERE, "results", "mediation.csv"))
    args = p.parse_args(argv)
    rows = []
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in args.k:
        for lik in args.likelihoods:
            for cores in args.cores:
                out = subprocess.run([sys.executable, "-c", WORKER, str(k), lik, str(cores), BUNDLED],
                                     capture_output=True, text=True, env=env, cwd=ROOT, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row["us_per_grad"] = 1e6 * row["sampling_s"] / row["grad_evals"]
                row["load_avg"] = os.getloadavg()[0]
                rows.append(row)
                print(row, file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out, mode="a", header=not os.path.exists(args.out), index=False)
    with pd.option_context("display.width", 160):
        print(table.round(2).to_string(index=False))


if __name__ == "__main__":
    main()
