"""Benchmark harness: ``python benchmarks/run.py [--quick] [--repeats N] [--sections ...]``.

Every measurement runs in a fresh subprocess (``benchmarks/_worker.py``, or the ``bayes-se`` CLI
itself); the table reports medians over ``--repeats`` runs. MCMC configurations each get their own
PyTensor compile directory: the first run in it is the *cold* measurement (empty cache, every C
module compiled), the following runs are *warm* (cache filled). Results go to
``benchmarks/results/<section>.csv`` (one row per run) and ``benchmarks/results/summary.md`` (the
Markdown tables printed at the end, with the targets).

Sections: ratios, demo, import, cli, exact, mcmc, blas, nutpie, sensitivity, posthoc, simulate.

``ratios`` and ``demo`` (issue 17) make the table printed first: each whole-process figure beside
its floor measured in the same run (``floor_exact.py``: a bare NumPy script for the exact fit;
``floor_pymc.py``: a plain PyMC script for MCMC), with the ratio and the issue's target. Keep this
harness out of the test suite.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
PY = sys.executable
CLI = os.path.join(os.path.dirname(PY), "bayes-se")
SECTIONS = ("ratios", "demo", "import", "cli", "exact", "mcmc", "sensitivity", "simulate", "posthoc", "blas",
            "nutpie")
RUN_TIMEOUT_S = 1800
HEAVY = ("pymc", "arviz", "matplotlib", "pytensor")
TARGETS = {
    "import_light": "import bayes_se imports none of pymc/arviz/matplotlib",
    "cli_exact_k70_s": 1.0,
    "exact_fit_k70_ms": 5.0,
    "exact_fit_k1000_ms": 20.0,
    "ess_tau_ratio_k70_warm": 4.0,
    "sensitivity_mcmc_vs_fit": 2.0,
    "sensitivity_exact_s": 0.5,
    "mcmc_re_k1000_warm_s": 10.0,
}


def worker(job: dict, compiledir: str | None = None, extra_env: dict | None = None) -> dict:
    """Run one job in a fresh process; its JSON plus the process wall time seen from here."""
    env = dict(os.environ)
    if compiledir is not None:
        env["PYTENSOR_FLAGS"] = f"base_compiledir={compiledir}"
    env.update(extra_env or {})
    t = time.perf_counter()
    try:
        proc = subprocess.run([PY, os.path.join(HERE, "_worker.py"), json.dumps(job)], capture_output=True,
                              text=True, env=env, timeout=RUN_TIMEOUT_S, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {**job, "wall_s": time.perf_counter() - t, "rc": 124, "error": f"timeout {RUN_TIMEOUT_S} s"}
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        return {**job, "wall_s": wall, "error": proc.stderr.strip().splitlines()[-1][:300]}
    return {**job, **json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": wall, "error": ""}


def timed(cmd, env=None) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env, cwd=ROOT)
    return time.perf_counter() - t, proc


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
def sec_import(opts):
    rows = []
    code = ("import time, sys; t = time.perf_counter(); import {mods}; "
            "print(time.perf_counter() - t, sorted(m for m in {heavy!r} if m in sys.modules))")
    for label, mods in (("bayes_se", "bayes_se"), ("bayes_se.api+exact", "bayes_se.api, bayes_se.exact"),
                        ("bayes_se.frequentist", "bayes_se.frequentist"), ("pymc", "pymc"),
                        ("arviz", "arviz")):
        for r in range(opts.repeats):
            wall, proc = timed([PY, "-c", code.format(mods=mods, heavy=HEAVY)])
            secs, heavy = proc.stdout.split(" ", 1)
            rows.append({"module": label, "repeat": r, "import_s": float(secs), "wall_s": wall,
                         "heavy_loaded": heavy.strip()})
    return pd.DataFrame(rows)


def sec_cli(opts):
    from datasets import make_data

    rows = []
    tmp = tempfile.mkdtemp(prefix="bench_cli_")
    for k in (10, 70, 1000):
        path = os.path.join(tmp, f"re_{k}.csv")
        make_data("re", k).to_csv(path, index=False)
        for argv, label in (([CLI, "fit", "--engine", "exact", "--data", path, "--json"], "fit --engine exact"),
                            ([CLI, "freq", path, "--json"], "freq (REML)")):
            for r in range(opts.repeats):
                wall, proc = timed(argv)
                rows.append({"command": label, "k": k, "repeat": r, "wall_s": wall, "rc": proc.returncode})
    shutil.rmtree(tmp, ignore_errors=True)
    return pd.DataFrame(rows)


def sec_exact(opts):
    rows = []
    for model in ("re", "mod"):
        for k in (10, 70, 1000):
            for r in range(opts.repeats):
                rows.append({**worker({"job": "exact", "model": model, "k": k,
                                       "inner": 10 if opts.quick else 50}), "repeat": r})
    return pd.DataFrame(rows)


def _mcmc_runs(opts, configs, extra_job=None, extra_env=None, tag=""):
    """Run each config ``1 + repeats`` times in its own compile dir: run 0 cold, the rest warm."""
    rows = []
    sampler = {"draws": 200, "tune": 200} if opts.quick else {}
    for model, k, impl in configs:
        cdir = tempfile.mkdtemp(prefix="bench_pytensor_")
        try:
            for r in range(1 + opts.repeats):
                job = {"job": "mcmc", "model": model, "k": k, "impl": impl, **sampler, **(extra_job or {})}
                log(f"  mcmc{tag} {model} k={k} {impl} run {r}")
                row = worker(job, compiledir=cdir, extra_env=extra_env)
                rows.append({**row, "cache": "cold" if r == 0 else "warm", "repeat": r, "variant": tag or "default"})
        finally:
            shutil.rmtree(cdir, ignore_errors=True)
    return rows


def sec_mcmc(opts):
    configs = [(m, k, impl) for k in opts.ks for m in opts.models for impl in ("bayes_se", "baseline")]
    # k = 1000 is a target for the random-effects model only; the others stop at k = 70 unless
    # asked for by --mcmc-k1000-all (each k = 1000 run of the non-centred baseline takes minutes)
    if not opts.mcmc_k1000_all:
        configs = [c for c in configs if not (c[1] == 1000 and c[0] != "re")]
    return pd.DataFrame(_mcmc_runs(opts, configs))


def sec_blas(opts):
    ks = (70,) if opts.quick else (1000,)  # a BLAS can only matter where the matrices are large
    # the random-effects model has no matrix product (elementwise graph): only mod and 3l
    configs = [(m, k, "bayes_se") for m in ("mod", "3l") for k in ks]
    rows = _mcmc_runs(opts, configs, extra_env={"BAYES_SE_NO_BLAS": "1"}, tag="no_blas")
    rows += _mcmc_runs(opts, configs, extra_job={"blas": True}, tag="scipy_openblas")
    return pd.DataFrame(rows)


def sec_nutpie(opts):
    import importlib.util

    if importlib.util.find_spec("nutpie") is None:
        return pd.DataFrame([{"error": "nutpie not installed"}])
    rows = []
    sampler = {"draws": 200, "tune": 200} if opts.quick else {}
    for k in ((70,) if opts.quick else (70, 1000)):
        cdir = tempfile.mkdtemp(prefix="bench_pytensor_")
        for r in range(1 + opts.repeats):
            log(f"  nutpie re k={k} run {r}")
            row = worker({"job": "nutpie", "model": "re", "k": k, **sampler}, compiledir=cdir)
            rows.append({**row, "cache": "cold" if r == 0 else "warm", "repeat": r})
        shutil.rmtree(cdir, ignore_errors=True)
    return pd.DataFrame(rows)


def sec_sensitivity(opts):
    rows = []
    for r in range(opts.repeats):
        rows.append({**worker({"job": "sensitivity", "engine": "exact", "k": 70}), "repeat": r})
    if not opts.quick:
        cdir = tempfile.mkdtemp(prefix="bench_pytensor_")
        worker({"job": "mcmc", "model": "re", "k": 70, "impl": "bayes_se"}, compiledir=cdir)  # warm up
        log("  sensitivity mcmc k=70 (12 priors)")
        rows.append({**worker({"job": "sensitivity", "engine": "mcmc", "k": 70}, compiledir=cdir), "repeat": 0})
        shutil.rmtree(cdir, ignore_errors=True)
    return pd.DataFrame(rows)


def sec_posthoc(opts):
    cdir = tempfile.mkdtemp(prefix="bench_pytensor_")
    rows = [{**worker({"job": "posthoc", "k": 70}, compiledir=cdir), "repeat": r} for r in range(opts.repeats)]
    shutil.rmtree(cdir, ignore_errors=True)
    return pd.DataFrame(rows)


def sec_simulate(opts):
    rows = []
    for workers in (1, 2):
        for r in range(opts.repeats):
            rows.append({**worker({"job": "simulate", "workers": workers, "reps": 10 if opts.quick else 40}),
                         "repeat": r})
            rows.append({**worker({"job": "burn", "workers": workers}), "repeat": r})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# issue 17: whole processes against their same-run floors
BIG_EXACT_K, BIG_FREQ_K = 200_000, 100_000
BIG_TIMEOUT_S = 300
BIG_MEM_GB = 8  # address-space cap of the k = 100,000 / 200,000 runs (a k x k matrix would need 74 GiB)


def _cli(*args):
    return [PY, "-m", "bayes_se.cli", *args]


def _proc(argv, *, compiledir=None, timeout_s=None, mem_gb=None, env=None, **labels):
    job = {"job": "proc", "argv": argv, "timeout_s": timeout_s, "mem_gb": mem_gb, "cwd": ROOT}
    env = {"PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    row = worker(job, compiledir=compiledir, extra_env=env)
    row.pop("argv", None)
    out = row.pop("output", None) or {}
    if "parameters" in out:  # bayes-se fit --json
        row["ess_tau"] = (out["parameters"].get("tau") or {}).get("ess_bulk")
    elif "ess_tau" in out:  # floor_pymc.py
        row["ess_tau"] = out["ess_tau"]
    return {**labels, **{k: v for k, v in row.items() if k not in ("job", "timeout_s", "mem_gb", "cwd")}}


def sec_ratios(opts):
    """bayes_se's whole processes and their floors, alternated run by run (medians in the table)."""
    from datasets import make_data

    tmp = tempfile.mkdtemp(prefix="bench_ratios_")
    paths = {}
    big_exact = 20_000 if opts.quick else BIG_EXACT_K
    big_freq = 10_000 if opts.quick else BIG_FREQ_K
    for k in (81, 1000, big_exact, big_freq):
        paths[k] = os.path.join(tmp, f"re_{k}.csv")
        make_data("re", k).to_csv(paths[k], index=False)
    draws = ["200", "200"] if opts.quick else ["1000", "1000"]
    # bytecode, as `pip install` writes it: with PYTHONDONTWRITEBYTECODE set (as on this project's
    # machines) every process would otherwise compile bayes_se's sources again (0.2 to 0.4 s)
    subprocess.run([PY, "-m", "compileall", "-q", os.path.join(ROOT, "bayes_se")], capture_output=True)
    rows = []
    try:
        for r in range(opts.repeats):
            log(f"  ratios exact k=81 run {r}")
            rows.append(_proc([PY, os.path.join(HERE, "floor_exact.py"), paths[81]],
                              row="exact_k81", impl="floor", cache="-", repeat=r))
            rows.append(_proc(_cli("fit", "--engine", "exact", "--data", paths[81], "--json"),
                              row="exact_k81", impl="bayes_se", cache="-", repeat=r))
        # MCMC: one compile directory per implementation; the first run in it is cold
        dirs = {impl: tempfile.mkdtemp(prefix=f"bench_pytensor_{impl}_") for impl in ("bayes_se", "floor")}
        for k in (81, 1000):
            for r in range(1 + opts.repeats if k == 81 else opts.repeats):
                cache = "cold" if (k == 81 and r == 0) else "warm"
                log(f"  ratios mcmc k={k} run {r} ({cache})")
                rows.append(_proc([PY, os.path.join(HERE, "floor_pymc.py"), paths[k], *draws],
                                  compiledir=dirs["floor"], row=f"mcmc_k{k}", impl="floor", cache=cache,
                                  repeat=r))
                rows.append(_proc(_cli("fit", "--data", paths[k], "--json", "--draws", draws[0],
                                       "--tune", draws[1]),
                                  compiledir=dirs["bayes_se"], row=f"mcmc_k{k}", impl="bayes_se",
                                  cache=cache, repeat=r))
        for d in dirs.values():
            shutil.rmtree(d, ignore_errors=True)
        # linear in k: one run each, capped in time and memory
        log(f"  ratios exact k={big_exact}")
        rows.append(_proc(_cli("fit", "--engine", "exact", "--data", paths[big_exact], "--json"),
                          timeout_s=BIG_TIMEOUT_S, mem_gb=BIG_MEM_GB, row=f"big_exact_k{big_exact}",
                          impl="bayes_se", cache="-", repeat=0))
        log(f"  ratios freq REML k={big_freq}")
        rows.append(_proc(_cli("freq", paths[big_freq], "--method", "REML", "--json"),
                          timeout_s=BIG_TIMEOUT_S, mem_gb=BIG_MEM_GB, row=f"big_freq_reml_k{big_freq}",
                          impl="bayes_se", cache="-", repeat=0))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return pd.DataFrame(rows)


def sec_demo(opts):
    """``bayes-se demo`` in a fresh PyTensor compile directory and a fresh Numba cache (cold: the
    first run after ``pip install``), then warm (both filled by the runs before); ``--quick`` runs
    ``demo --quick``. Each row records the load average when its run started: on a shared machine
    the demo samples its chains in one process when the CPUs are busy (``bayes_se.demo.demo_cores``)."""
    cdir = tempfile.mkdtemp(prefix="bench_pytensor_demo_")
    ncache = tempfile.mkdtemp(prefix="bench_numba_demo_")
    tmp = tempfile.mkdtemp(prefix="bench_demo_")
    rows = []
    # bytecode, as `pip install` writes it (as in sec_ratios)
    subprocess.run([PY, "-m", "compileall", "-q", os.path.join(ROOT, "bayes_se")], capture_output=True)
    try:
        for r in range(1 + opts.repeats):
            cache = "cold" if r == 0 else "warm"
            log(f"  demo run {r} ({cache})")
            argv = _cli("demo", "--out", os.path.join(tmp, f"demo{r}"), *(["--quick"] if opts.quick else []))
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            rows.append(_proc(argv, compiledir=cdir, timeout_s=RUN_TIMEOUT_S - 60, env={"NUMBA_CACHE_DIR": ncache},
                              row="demo", impl="bayes_se", cache=cache, repeat=r, load_1min=round(load, 2)))
    finally:
        shutil.rmtree(cdir, ignore_errors=True)
        shutil.rmtree(ncache, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return pd.DataFrame(rows)


def ratio_table(res, quick=False) -> pd.DataFrame:
    """The issue-17 table: each figure, its same-run floor, the ratio, the target, met or not."""
    out = []

    def add(what, ours, floor, ratio, goal, met, note=""):
        out.append({"measurement": what, "bayes_se": ours, "floor": floor, "ratio": ratio, "target": goal,
                    "met": met, "note": note})

    def cell(frame, col, **where):
        sel = frame
        for key, value in where.items():
            sel = sel[sel[key] == value]
        sel = sel[sel["rc"] == 0] if "rc" in sel else sel
        return float(pd.to_numeric(sel[col], errors="coerce").median()) if len(sel) else float("nan")

    if "ratios" in res:
        f = res["ratios"]
        def cpu_ratio(row, cache=None, per_ess=False):
            """The same ratio in CPU seconds of the process (steadier than wall time on a shared machine)."""
            where = {} if cache is None else {"cache": cache}
            cpu = {i: cell(f, "child_cpu_s", row=row, impl=i, **where) for i in ("bayes_se", "floor")}
            if per_ess:
                ess = {i: cell(f, "ess_tau", row=row, impl=i, **where) for i in cpu}
                return f"per CPU s: {(ess['bayes_se'] / cpu['bayes_se']) / (ess['floor'] / cpu['floor']):.2f}x"
            return f"CPU s {cpu['bayes_se']:.2f} vs {cpu['floor']:.2f}: {cpu['bayes_se'] / cpu['floor']:.2f}x"

        ours, floor = cell(f, "proc_s", row="exact_k81", impl="bayes_se"), cell(f, "proc_s", row="exact_k81", impl="floor")
        add("`bayes-se fit --engine exact`, k = 81: process s (floor: bare NumPy script)", round(ours, 3),
            round(floor, 3), round(ours / floor, 2), "<= 1.5x", ours / floor <= 1.5, cpu_ratio("exact_k81"))
        for cache in ("warm", "cold"):
            ess = {i: cell(f, "ess_tau", row="mcmc_k81", impl=i, cache=cache) for i in ("bayes_se", "floor")}
            sec = {i: cell(f, "proc_s", row="mcmc_k81", impl=i, cache=cache) for i in ("bayes_se", "floor")}
            rate = {i: ess[i] / sec[i] for i in ess}
            ratio = rate["bayes_se"] / rate["floor"]
            add(f"MCMC k = 81, {cache} compile cache: tau bulk-ESS per process s (floor: plain PyMC)",
                round(rate["bayes_se"], 1), round(rate["floor"], 1), round(ratio, 2),
                ">= 4x (stretch 8x)" if cache == "warm" else "(first fit after install)",
                ratio >= 4 if cache == "warm" else "",
                f"process {sec['bayes_se']:.1f} s vs {sec['floor']:.1f} s; tau-ESS {ess['bayes_se']:.0f} vs "
                f"{ess['floor']:.0f}; {cpu_ratio('mcmc_k81', cache, per_ess=True)}")
        ours, floor = cell(f, "proc_s", row="mcmc_k1000", impl="bayes_se"), cell(f, "proc_s", row="mcmc_k1000", impl="floor")
        add("MCMC k = 1,000 `bayes-se fit --json`: process s (floor: plain PyMC)", round(ours, 2), round(floor, 2),
            round(ours / floor, 2), "<= 0.5x", ours / floor <= 0.5,
            f"tau-ESS {cell(f, 'ess_tau', row='mcmc_k1000', impl='bayes_se'):.0f} vs "
            f"{cell(f, 'ess_tau', row='mcmc_k1000', impl='floor'):.0f}; {cpu_ratio('mcmc_k1000')}")
        for prefix, what, secs in (("big_exact_k", "exact engine (`fit --engine exact`)", 10.0),
                                   ("big_freq_reml_k", "`bayes-se freq --method REML`", 30.0)):
            sel = f[f["row"].astype(str).str.startswith(prefix)]
            if not len(sel):
                continue
            row = sel.iloc[0]
            k = int(str(row["row"])[len(prefix):])
            rss = float(row["child_maxrss_mb"])
            ok = int(row["rc"]) == 0
            secs_ok = ok and float(row["proc_s"]) < secs
            mem_ok = prefix != "big_exact_k" or rss < 1024
            note = "" if ok else (f"exit {int(row['rc'])}"
                                  + (f" (timeout {BIG_TIMEOUT_S} s)" if int(row["rc"]) == 124 else "")
                                  + f": {row.get('stderr_tail', '')}")
            add(f"{what}, k = {k:,}: process s / peak MiB", f"{float(row['proc_s']):.1f} / {rss:.0f}", "", "",
                f"< {secs:g} s" + (", < 1024 MiB" if prefix == "big_exact_k" else "")
                + (f" at k = {BIG_EXACT_K if prefix == 'big_exact_k' else BIG_FREQ_K:,}" if quick else ""),
                bool(secs_ok and mem_ok), note)
    if "demo" in res:
        f = res["demo"]
        for cache in ("cold", "warm"):
            v = cell(f, "proc_s", cache=cache)
            add(f"`bayes-se demo{' --quick' if quick else ''}`, {cache} compile cache: process s", round(v, 1), "",
                "", "< 60 s" if cache == "warm" else "(first run after install)",
                (v < 60) if cache == "warm" else "")
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------
def markdown(frame: pd.DataFrame) -> str:
    """A pipe table (hand-written: pandas' to_markdown needs the optional tabulate package)."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def med(frame, col, **where):
    sel = frame
    for key, value in where.items():
        sel = sel[sel[key] == value]
    sel = sel[sel.get("error", "") == ""] if "error" in sel else sel
    return float(sel[col].median()) if len(sel) else float("nan")


def mcmc_table(frame):
    frame = frame[frame["error"] == ""].copy()
    frame["ess_tau_per_fit_s"] = frame["ess_tau"] / frame["fit_s"]
    frame["ess_mu_per_fit_s"] = frame["ess_mu"] / frame["fit_s"]
    frame["ess_tau_per_wall_s"] = frame["ess_tau"] / frame["wall_s"]
    keys = [c for c in ("variant", "model", "k", "impl", "cache") if c in frame]
    cols = ["wall_s", "import_s", "fit_s", "sampling_s", "ess_mu", "ess_tau", "ess_mu_per_fit_s",
            "ess_tau_per_fit_s", "ess_tau_per_wall_s", "divergences", "maxrss_mb"]
    return frame.groupby(keys)[cols].median().reset_index()


def targets(res):
    out = []

    def add(name, value, target, ok, note=""):
        out.append({"target": name, "measured": value, "goal": target, "met": ok, "note": note})

    if "import" in res:
        heavy = res["import"].loc[res["import"]["module"] == "bayes_se", "heavy_loaded"].iloc[0]
        add("import bayes_se loads no pymc/arviz/matplotlib", heavy, "[]", heavy == "[]")
    if "cli" in res:
        v = med(res["cli"], "wall_s", command="fit --engine exact", k=70)
        add("bayes-se fit --engine exact, k=70, fresh process (s)", round(v, 3), "< 1.0", v < 1.0)
    if "exact" in res:
        for k, goal in ((70, 5.0), (1000, 20.0)):
            v = med(res["exact"], "fit_ms", model="re", k=k)
            p = med(res["exact"], "exact_posterior_ms", model="re", k=k)
            add(f"exact fit in-process, k={k} (ms; bayes_se.fit / exact_posterior)", f"{v:.2f} / {p:.2f}",
                f"< {goal}", v < goal, "" if v < goal else f"exact_posterior alone: {p:.2f} ms")
    if "mcmc" in res:
        t = mcmc_table(res["mcmc"])
        sel = t[(t.model == "re") & (t.k == 70) & (t.cache == "warm")].set_index("impl")
        if {"bayes_se", "baseline"} <= set(sel.index):
            ratio = sel.loc["bayes_se", "ess_tau_per_fit_s"] / sel.loc["baseline", "ess_tau_per_fit_s"]
            add("tau-ESS per fit second vs plain PyMC, re k=70 warm (x)", round(ratio, 2), ">= 4", ratio >= 4)
        sel = t[(t.model == "re") & (t.k == 1000) & (t.cache == "warm") & (t.impl == "bayes_se")]
        if len(sel):
            v = float(sel["wall_s"].iloc[0])
            f = float(sel["fit_s"].iloc[0])
            add("MCMC re k=1000 warm, end to end (s; process / fit)", f"{v:.1f} / {f:.1f}", "< 10", v < 10)
    if "sensitivity" in res:
        s = res["sensitivity"]
        v = med(s, "grid_s", engine="exact")
        add("12-prior sensitivity grid, exact (s)", round(v, 3), "< 0.5", v < 0.5)
        if "mcmc" in set(s["engine"]) and "mcmc" in res:
            one = mcmc_table(res["mcmc"])
            one = one[(one.model == "re") & (one.k == 70) & (one.cache == "warm") & (one.impl == "bayes_se")]
            if len(one):
                ratio = med(s, "grid_s", engine="mcmc") / float(one["fit_s"].iloc[0])
                add("12-prior sensitivity grid by MCMC / one MCMC fit (x)", round(ratio, 2), "< 2", ratio < 2)
    return pd.DataFrame(out)


@functools.lru_cache(maxsize=1)
def machine() -> str:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    vers = subprocess.run([PY, "-c", "import numpy, scipy, pymc, pytensor, arviz; print(numpy.__version__, "
                           "scipy.__version__, pymc.__version__, pytensor.__version__, arviz.__version__)"],
                          capture_output=True, text=True).stdout.split()
    names = ("numpy", "scipy", "pymc", "pytensor", "arviz")
    return (f"{len(os.sched_getaffinity(0))} CPUs ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}, "
            + ", ".join(f"{n} {v}" for n, v in zip(names, vers)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small k, 200+200 draws, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (default 3; quick 1)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated from {','.join(SECTIONS)}")
    parser.add_argument("--out", default=RESULTS, help="folder for the CSVs and summary.md")
    parser.add_argument("--ks", default=None, help="MCMC k values (default 70,10,1000; quick 70,10)")
    parser.add_argument("--models", default="re,mod,3l", help="MCMC models (default re,mod,3l)")
    parser.add_argument("--mcmc-k1000-all", action="store_true",
                        help="MCMC at k = 1000 for every model, not only random effects")
    parser.add_argument("--merge", action="store_true",
                        help="put the sections not run now into the summary from their existing CSVs")
    opts = parser.parse_args(argv)
    opts.ks = [int(k) for k in (opts.ks or ("70,10" if opts.quick else "70,10,1000")).split(",")]
    opts.models = [m.strip() for m in opts.models.split(",")]
    opts.repeats = opts.repeats or (1 if opts.quick else 3)
    sys.path.insert(0, HERE)
    os.makedirs(opts.out, exist_ok=True)
    res = {}
    suffix = "_quick" if opts.quick else ""
    wanted = [n.strip() for n in opts.sections.split(",")]
    if opts.merge:
        for name in SECTIONS:
            path = os.path.join(opts.out, f"{name}{suffix}.csv")
            if name not in wanted and os.path.exists(path):
                res[name] = pd.read_csv(path, keep_default_na=False, na_values=["nan", "NaN"])
    for name in opts.sections.split(","):
        name = name.strip()
        if name not in SECTIONS:
            parser.error(f"unknown section {name!r}")
        log(f"section {name} ...")
        t = time.perf_counter()
        res[name] = globals()[f"sec_{name}"](opts)
        res[name].to_csv(os.path.join(opts.out, f"{name}{suffix}.csv"), index=False)
        log(f"section {name}: {time.perf_counter() - t:.0f} s")
        write_summary(res, opts, suffix)


def write_summary(res, opts, suffix):
    md = [f"# bayes_se benchmarks{' (quick)' if opts.quick else ''}", "", f"Machine: {machine()}", "",
          f"Medians of {opts.repeats} run(s) per cell.", ""]
    if "ratios" in res or "demo" in res:
        md += ["## whole process against its floor, same run (issue 17)", "",
               markdown(ratio_table(res, opts.quick)), "",
               "Floors: `benchmarks/floor_exact.py` (NumPy only: reads the CSV, integrates tau on a "
               "1,001-point grid), `benchmarks/floor_pymc.py` (plain PyMC, non-centred, 4 chains on 2 "
               "cores). Warm: PyTensor's compile cache filled by an earlier run; cold: an empty one"
               + (" (quick: 200 + 200 draws, big k reduced)" if opts.quick else "") + ".", ""]
    for name, frame in res.items():
        if name in ("ratios", "demo"):
            cols = [c for c in ("row", "impl", "cache", "repeat", "load_1min", "proc_s", "child_cpu_s", "rc",
                                "child_maxrss_mb",
                                "ess_tau",
                                "stderr_tail") if c in frame]
            md += [f"## {name} (every run)", "", markdown(frame[cols]), ""]
            continue
        if name in ("mcmc", "blas"):
            frame = mcmc_table(frame)
        elif name in ("import", "cli", "exact", "sensitivity", "posthoc", "simulate"):
            keys = {"import": ["module"], "cli": ["command", "k"], "exact": ["model", "k"],
                    "sensitivity": ["engine"], "posthoc": [], "simulate": ["job", "workers"]}[name]
            num = [c for c in frame.select_dtypes("number").columns if c not in keys + ["repeat", "k", "rc", "inner"]]
            frame = frame.groupby(keys)[num].median().reset_index() if keys else frame[num].median().to_frame().T
        elif name == "nutpie" and "cache" in frame:
            frame = frame[frame["error"] == ""].groupby(["k", "cache"])[
                ["wall_s", "fit_s", "sampling_s", "ess_mu", "ess_tau", "maxrss_mb"]].median().reset_index()
        md += [f"## {name}", "", markdown(frame), ""]
    tt = targets(res)
    if len(tt):
        md += ["## targets", "", markdown(tt), ""]
    text = "\n".join(md)
    with open(os.path.join(opts.out, f"summary{suffix}.md"), "w") as fh:
        fh.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
