"""One benchmark measurement in a fresh process: ``python benchmarks/_worker.py JOB_JSON``.

Prints one JSON object on its last stdout line. ``benchmarks/run.py`` starts this script once per
measurement (so every number includes nothing a previous measurement left in memory) and sets
``PYTENSOR_FLAGS=base_compiledir=...`` to choose a cold (empty) or warm compile cache.

Jobs (``JOB_JSON["job"]``):

* ``mcmc``: a bayes_se MCMC fit (``impl="bayes_se"``) or the hand-written PyMC baseline
  (``impl="baseline"``) of one model at one k;
* ``exact``: in-process time of ``bayes_se.fit(engine="exact")`` and of ``exact_posterior``;
* ``sensitivity``: a 12-prior grid, exact or MCMC;
* ``posthoc``: one k = 70 fit, then ``az.loo`` and ``az.plot_ppc`` (all vs capped draws);
* ``simulate``: a fixed simulation grid with ``workers`` processes;
* ``proc``: one command (the ``bayes-se`` CLI or a floor script) as a child process, with its
  wall time and peak memory (the ratio table of ``run.py --sections ratios``).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

T_START = time.perf_counter()
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

from datasets import make_data  # noqa: E402

SEED = 20251121
SENSITIVITY_GRID = [
    "default", "vague", "tau=half_normal(0.25)", "tau=half_normal(1)", "tau=half_cauchy(0.5)",
    "tau=half_cauchy(1)", "mu=normal(0, 0.5)", "mu=normal(0, 10)", "mu=normal(0, 0.5); tau=half_normal(1)",
    "mu=normal(0, 10); tau=half_cauchy(0.5)", "tau=half_normal(0.1)", "mu=normal(0.2, 0.5)",
]
SIM_GRID = {"k": [5, 10, 20], "tau": [0.0, 0.2, 0.5]}
SIM_REPS = 40


def maxrss_mb() -> float:
    """Peak resident memory of this process and of its (waited-for) children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024.0


def ess(idata, name):
    import arviz as az

    if name == "mu" and name not in idata.posterior and "beta" in idata.posterior:
        name = "beta"  # meta-regression: the coefficients (intercept first)
    if name not in idata.posterior:
        return float("nan")
    return float(az.ess(idata, var_names=[name], method="bulk")[name].values.min())


def spec_for(model):
    from bayes_se.api import resolve_spec

    root = os.path.dirname(HERE)
    path = {"re": None, "mod": "guidance_moderator.toml", "3l": "three_level.toml"}[model]
    return resolve_spec(None if path is None else os.path.join(root, "models", path))


def baseline(model, frame, draws, tune, chains):
    """The plain PyMC script: non-centred random effects, pm.sample defaults."""
    import pymc as pm

    y, v = frame["yi"].to_numpy(), frame["vi"].to_numpy()
    with pm.Model():
        mu = pm.Normal("mu", 0, 1)
        if model == "3l":
            codes = np.unique(frame["district"].to_numpy(), return_inverse=True)[1]
            n_c = int(codes.max()) + 1
            s_c = pm.HalfNormal("tau", 0.5)  # sigma_cluster, reported as tau
            s_e = pm.HalfNormal("sigma_effect", 0.5)
            u = pm.Normal("u", 0, 1, shape=n_c)
            w = pm.Normal("w", 0, 1, shape=len(y))
            theta = mu + s_c * u[codes] + s_e * w
        else:
            tau = pm.HalfNormal("tau", 0.5)
            z = pm.Normal("z", 0, 1, shape=len(y))
            theta = mu + tau * z
            if model == "mod":
                beta = pm.Normal("beta", 0, 0.5)
                theta = theta + beta * frame["guided"].to_numpy()
        pm.Normal("y", theta, sigma=np.sqrt(v), observed=y)
        return pm.sample(draws=draws, tune=tune, chains=chains, random_seed=SEED, progressbar=False,
                         compute_convergence_checks=False)


def job_mcmc(job):
    out = {}
    if job.get("blas"):
        from bayes_se import blas

        out["blas_configured"] = blas.configure()
    t = time.perf_counter()
    import pymc  # noqa: F401

    import bayes_se.api  # noqa: F401
    out["import_s"] = time.perf_counter() - t
    frame = make_data(job["model"], job["k"])
    draws, tune, chains = job.get("draws", 1000), job.get("tune", 1000), job.get("chains", 4)
    t = time.perf_counter()
    if job["impl"] == "baseline":
        idata = baseline(job["model"], frame, draws, tune, chains)
    else:
        from bayes_se.api import fit

        res = fit(frame, spec_for(job["model"]), draws=draws, tune=tune, chains=chains, seed=SEED)
        idata = res.idata
    out["fit_s"] = time.perf_counter() - t
    out["sampling_s"] = float(idata.posterior.attrs.get("sampling_time", float("nan")))
    tau_name = "sigma_cluster" if job["model"] == "3l" and job["impl"] != "baseline" else "tau"
    out["ess_mu"] = ess(idata, "mu")
    out["ess_tau"] = ess(idata, tau_name)
    out["divergences"] = int(idata.sample_stats["diverging"].sum())
    return out


def job_nutpie(job):
    """bayes_se's model sampled by nutpie (numba backend), timed like job_mcmc."""
    out = {}
    t = time.perf_counter()
    import pymc  # noqa: F401

    import bayes_se.api  # noqa: F401
    out["import_s"] = time.perf_counter() - t
    frame = make_data(job["model"], job["k"])
    from bayes_se.api import fit_random_effects

    t = time.perf_counter()
    res = fit_random_effects(frame["yi"].to_numpy(), frame["vi"].to_numpy(), seed=SEED, sampler="nutpie",
                             draws=job.get("draws", 1000), tune=job.get("tune", 1000),
                             chains=job.get("chains", 4))
    out["fit_s"] = time.perf_counter() - t
    out["sampling_s"] = float(res.idata.posterior.attrs.get("sampling_time", float("nan")))
    out["ess_mu"], out["ess_tau"] = ess(res.idata, "mu"), ess(res.idata, "tau")
    out["divergences"] = int(res.idata.sample_stats["diverging"].sum())
    return out


def job_exact(job):
    t = time.perf_counter()
    from bayes_se.api import fit
    from bayes_se.exact import exact_posterior

    out = {"import_s": time.perf_counter() - t}
    frame = make_data(job["model"], job["k"])
    mods = "guided" if job["model"] == "mod" else None
    y, v = frame["yi"].to_numpy(), frame["vi"].to_numpy()
    fit(frame, engine="exact", mods=mods).summary()  # first call: caches, lazy imports
    n = job.get("inner", 50)
    times_fit, times_post = [], []
    for _ in range(n):
        t = time.perf_counter()
        fit(frame, engine="exact", mods=mods)
        times_fit.append(time.perf_counter() - t)
    X = np.column_stack([np.ones(len(y)), frame["guided"].to_numpy()]) if mods else None
    for _ in range(n):
        t = time.perf_counter()
        exact_posterior(y, v, X=X)
        times_post.append(time.perf_counter() - t)
    t = time.perf_counter()
    fit(frame, engine="exact", mods=mods).summary()
    out["fit_summary_ms"] = 1e3 * (time.perf_counter() - t)
    out["fit_ms"] = 1e3 * float(np.median(times_fit))
    out["exact_posterior_ms"] = 1e3 * float(np.median(times_post))
    return out


def job_sensitivity(job):
    t = time.perf_counter()
    from bayes_se.prior_sensitivity import sensitivity

    out = {"import_s": time.perf_counter() - t}
    frame = make_data("re", job["k"])
    t = time.perf_counter()
    sensitivity(frame, priors=SENSITIVITY_GRID, engine=job["engine"], seed=SEED)
    out["grid_s"] = time.perf_counter() - t
    out["n_priors"] = len(SENSITIVITY_GRID)
    return out


def job_posthoc(job):
    import matplotlib

    matplotlib.use("Agg")
    import arviz as az
    import matplotlib.pyplot as plt

    from bayes_se.api import fit

    frame = make_data("re", job["k"])
    res = fit(frame, seed=SEED)
    out = {}
    t = time.perf_counter()
    az.loo(res.idata)
    out["loo_s"] = time.perf_counter() - t
    for label, n in (("ppc_all_s", None), ("ppc_100_s", 100)):
        t = time.perf_counter()
        az.plot_ppc(res.idata, data_pairs={"y": "y_rep"}, num_pp_samples=n, random_seed=SEED)
        plt.gcf().canvas.draw()
        plt.close("all")
        out[label] = time.perf_counter() - t
    out["n_draws"] = int(res.idata.posterior.sizes["chain"] * res.idata.posterior.sizes["draw"])
    return out


def job_simulate(job):
    import tempfile

    from bayes_se.simulation import simulate

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        res = simulate(SIM_GRID, reps=job.get("reps", SIM_REPS), out=os.path.join(tmp, "sim.csv"), seed=SEED,
                       workers=job["workers"], progress=False)
        return {"simulate_s": time.perf_counter() - t, "rows": len(res)}


def _burn(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def job_burn(job):
    """Control for the simulate speed-up: the same pure-Python work on 1 or 2 processes, so the
    speed-up the machine itself allows (other load, CPU quota) is measured beside ours."""
    import concurrent.futures

    n, parts = 10_000_000, 4
    t = time.perf_counter()
    if job["workers"] == 1:
        [_burn(n) for _ in range(parts)]
    else:
        with concurrent.futures.ProcessPoolExecutor(job["workers"]) as pool:
            list(pool.map(_burn, [n] * parts))
    return {"simulate_s": time.perf_counter() - t, "rows": 0}


def job_proc(job):
    """Run one command (``argv``) as a child process: its wall time, exit status, peak resident
    memory (``resource.getrusage(RUSAGE_CHILDREN)``, this worker having no other child) and the
    JSON object on its last stdout line, if any. ``mem_gb`` caps the child's address space
    (``RLIMIT_AS``), so a run that would need tens of GiB fails with a MemoryError instead of
    swapping a shared machine; ``timeout_s`` stops it (exit status 124)."""
    import subprocess

    limit = job.get("mem_gb")

    def cap():
        if limit:
            size = int(float(limit) * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    t = time.perf_counter()
    try:
        proc = subprocess.run(job["argv"], capture_output=True, text=True, timeout=job.get("timeout_s"),
                              preexec_fn=cap, cwd=job.get("cwd"))
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = 124, exc.stdout or "", exc.stderr or ""
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
        stderr = stderr.decode() if isinstance(stderr, bytes) else stderr
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = {"proc_s": time.perf_counter() - t, "rc": rc, "child_cpu_s": kids.ru_utime + kids.ru_stime,
           "child_maxrss_mb": kids.ru_maxrss / 1024.0,
           "stderr_tail": " | ".join(stderr.strip().splitlines()[-2:])[-300:] if rc else ""}
    try:  # one JSON object, pretty-printed (bayes-se --json) or on the last line (floor scripts)
        out["output"] = json.loads(stdout)
    except ValueError:
        lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
        try:
            out["output"] = json.loads(lines[-1]) if lines else None
        except ValueError:
            pass
    return out


JOBS = {"proc": job_proc, "burn": job_burn, "mcmc": job_mcmc, "nutpie": job_nutpie, "exact": job_exact, "sensitivity": job_sensitivity,
        "posthoc": job_posthoc, "simulate": job_simulate}


def main():
    job = json.loads(sys.argv[1])
    import warnings

    warnings.simplefilter("ignore")
    result = JOBS[job["job"]](job)
    result["process_s"] = time.perf_counter() - T_START
    result["maxrss_mb"] = maxrss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
