"""Mediation (MASEM) fit times: ``python benchmarks/mediation.py [--k 16 70] [--samplers nutpie pymc] [--fits 2]``.

Each configuration runs in a fresh subprocess, which imports bayes_se and PyMC (``import_s``) and
then fits ``--fits`` data sets in turn with the default draws (4 chains x 1000 after 1000 tuning
steps): the first fit (``run = cold``) compiles the model, later ones (``warm``) reuse it with new
data, as a sensitivity grid or a simulation study does. ``fit_s`` is one whole ``fit_mediation``
call (build, compile, NUTS, prior draws, post-processing, diagnostics), ``cpu_s`` its CPU time,
``sampling_s`` the sampler's own time and ``us_per_grad`` the sampling time per gradient
evaluation (NUTS overhead included). k = 16 is the bundled
``data/self_efficacy_sim/mediation_correlations.csv`` (15 studies with matrices; warm fits use
simulated trials of the same size); other k are simulated trials
(:func:`bayes_se.mediation_simulation.simulate_mediation_trials`). Prints a table and appends to
``benchmarks/results/mediation_fits.csv`` (``mediation.csv`` holds the rows measured before the
nutpie sampler, with PyMC's NUTS). Not a test.
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
import logging; logging.getLogger("pymc").setLevel(logging.ERROR)
start = time.perf_counter()
k, lik, sampler, fits, bundled = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
from bayes_se.mediation import fit_mediation
from bayes_se.mediation_simulation import simulate_mediation_trials
import pymc
import_s = time.perf_counter() - start
for run in range(fits):
    if k == 16 and run == 0:
        data = bundled
    else:
        data = simulate_mediation_trials(15 if k == 16 else k, a=0.25, b=-0.35, c_prime=-0.10, tau_a=0.10,
                                         tau_b=0.08, tau_c=0.05, missing_my=0.1, seed=[k, run]).correlations
    t, c = time.perf_counter(), time.process_time()
    fit = fit_mediation(data, seed=1 + run, likelihood=lik, sampler=sampler)
    fit_s, cpu_s = time.perf_counter() - t, time.process_time() - c
    stats = fit.idata.sample_stats
    print(json.dumps({"k": k, "likelihood": lik, "sampler": sampler, "run": "cold" if run == 0 else "warm",
                      "import_s": import_s, "fit_s": fit_s, "cpu_s": cpu_s,
                      "sampling_s": float(fit.idata.posterior.attrs.get("sampling_time", float("nan"))),
                      "grad_evals": int(stats["n_steps"].sum()), "divergences": int(stats["diverging"].sum()),
                      "passed": bool(fit.diagnostics.passed)}), flush=True)
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, nargs="+", default=[16, 70])
    p.add_argument("--likelihoods", nargs="+", default=["pooled"])
    p.add_argument("--samplers", nargs="+", default=["nutpie", "pymc"])
    p.add_argument("--fits", type=int, default=2, help="fits per process: the first cold, the rest warm")
    p.add_argument("--out", default=os.path.join(HERE, "results", "mediation_fits.csv"))
    args = p.parse_args(argv)
    rows = []
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in args.k:
        for lik in args.likelihoods:
            for sampler in args.samplers:
                out = subprocess.run([sys.executable, "-c", WORKER, str(k), lik, sampler, str(args.fits), BUNDLED],
                                     capture_output=True, text=True, env=env, cwd=ROOT, check=True)
                for line in out.stdout.strip().splitlines():
                    row = json.loads(line)
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
