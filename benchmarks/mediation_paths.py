"""Wall time of ``fit_mediation_paths`` (the whole call: build, compile, NUTS, prior predictive,
post-processing, diagnostics) on simulated reported paths, k = 15 and 70, by sampler (nutpie, the default, or PyMC's NUTS) and ``cores``.

Each configuration runs in a fresh process (``cold``: nothing compiled in the process; Numba's and
PyTensor's on-disk caches as they are) and then again in the same process on another dataset
(``warm``: the cached model, its data swapped in). Default sampling: 4 chains x 1000 draws after
1000 tuning steps. ``tau ESS/s`` is the smallest bulk ESS of tau_a and tau_b per second of the call.

Usage: ``python benchmarks/mediation_paths.py [--k 15 70] [--samplers nutpie pymc] [--cores 1 2]`` (prints a table; not a test).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import importlib.util, json, sys, time, warnings
import numpy as np
warnings.filterwarnings("ignore")
import logging
logging.getLogger("pymc").setLevel(logging.ERROR)
sys.path.insert(0, {root!r})
spec = importlib.util.spec_from_file_location("sim", {root!r} + "/scripts/simulate_mediation_paths.py")
sim = importlib.util.module_from_spec(spec); spec.loader.exec_module(sim)
from bayes_se.reported_paths import load_paths
from bayes_se.mediation_paths import fit_mediation_paths
import arviz as az
k, cores, sampler = {k}, {cores}, {sampler!r}
out = []
for run, label in enumerate(("cold", "warm")):
    table, _ = sim.simulate_trials(np.random.default_rng([7, k, run]), k, n_min=60, n_max=300)
    data = load_paths(table)
    start = time.perf_counter()
    t_cpu = time.process_time()
    fit = fit_mediation_paths(data, seed=run + 1, cores=cores, sampler=sampler)
    cpu_s = time.process_time() - t_cpu
    seconds = time.perf_counter() - start
    ess = az.ess(fit.idata.posterior[["tau_a", "tau_b"]])
    ess_min = float(min(ess["tau_a"].values, ess["tau_b"].values))
    out.append({{"k": k, "sampler": sampler, "cores": cores, "run": label, "seconds": seconds, "cpu_s": cpu_s, "tau_ess_per_s": ess_min / seconds,
                "passed": bool(fit.diagnostics.passed)}})
print("RESULT" + json.dumps(out))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[15, 70])
    parser.add_argument("--cores", type=int, nargs="+", default=[1],
                        help="PyMC's sampler only (nutpie runs its chains on one thread)")
    parser.add_argument("--samplers", nargs="+", default=["nutpie", "pymc"])
    args = parser.parse_args(argv)
    rows = []
    for k in args.k:
        for sampler in args.samplers:
            for cores in args.cores if sampler == "pymc" else [1]:
                proc = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), k=k, cores=cores,
                                                                          sampler=sampler)],
                                      capture_output=True, text=True, cwd=ROOT)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")]
                if not line:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    return 1
                rows += json.loads(line[0][len("RESULT"):])
                print(rows[-2:], file=sys.stderr, flush=True)
    print(f"{'k':>4} {'sampler':>7} {'cores':>5} {'run':>5} {'seconds':>8} {'CPU s':>6} {'tau ESS/s':>10} {'passed':>7}")
    for r in rows:
        print(f"{r['k']:>4} {r['sampler']:>7} {r['cores']:>5} {r['run']:>5} {r['seconds']:>8.1f} {r['cpu_s']:>6.1f} "
              f"{r['tau_ess_per_s']:>10.1f} {str(r['passed']):>7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
