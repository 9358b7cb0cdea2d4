"""Benchmark of the default RoBMA-style ensemble: ``python benchmarks/bias_ensemble.py [--k 100] [--repeats 1]``.

Fits :func:`bayes_se.bias_ensemble` (36 models: no bias, six weight functions, PET, PEESE, each
with and without effect and heterogeneity) to a simulated meta-analysis of ``k`` studies (one-sided
selection at p = .025, mu = 0.2, tau = 0.1), each repeat in a fresh process so imports count, and
prints a table: wall time of the whole call, the time spent on each kind of model, the machine's
load average at the start (the target, under 60 s at k = 100 on 2 cores, is measured on a shared
machine). Writes ``benchmarks/results/bias_ensemble.csv``.
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
TARGET_S = 60.0

CHILD = r"""
import json, os, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import numpy as np
import bayes_se as bse
from bayes_se.bias_simulation import simulate_selected
from bayes_se.selection_likelihood import WeightFunction
k = int(sys.argv[1])
y, se = simulate_selected(k, 0.2, 0.1, WeightFunction("one", (0.025,)), (1.0, 0.3), np.random.default_rng(k))
t1 = time.perf_counter()
ens = bse.bias_ensemble(y, se ** 2, seed=1)
t2 = time.perf_counter()
m = ens.models
kind = np.where(m["method"] == "bridge", "selection", np.where(m["bias"] == "none", "no bias", m["bias"]))
by = m.groupby(kind)["seconds"].sum().to_dict()
d = ens.to_dict()
print(json.dumps({"k": k, "total_s": t2 - t0, "ensemble_s": t2 - t1, "load_1min": os.getloadavg()[0],
                  "mu_mean": d["mu"]["mean"], "bf_bias": d["inclusion_bf"]["bias"],
                  "max_bridge_error": float(m.loc[m["method"] == "bridge", "log_ml_error"].max()),
                  **{f"{key}_s": val for key, val in by.items()}}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="+", default=[100])
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    rows = []
    for k in args.k:
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", CHILD, str(k)], capture_output=True, text=True, env=env,
                                 check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = pd.DataFrame(rows)
    table["target_s"] = TARGET_S
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    table.to_csv(os.path.join(HERE, "results", "bias_ensemble.csv"), index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
