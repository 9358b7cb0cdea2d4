"""Simulation studies: coverage and bias of Bayesian vs frequentist random-effects intervals.

Each replicate of each grid cell generates one meta-analysis from the normal-normal model::

    v_i ~ V,   theta_i = mu + tau z_i,   y_i = theta_i + sqrt(v_i) e_i,   z_i, e_i ~ N(0, 1),

with ``V`` the within-study variance distribution of the cell, and fits every method to it:

* ``bayes_exact``: the exact posterior (:func:`bayes_se.exact.exact_posterior`; default priors
  ``mu ~ N(0, 1)``, ``tau ~ half-N(0, 0.5)``), posterior mean and equal-tailed credible interval;
* ``bayes_mcmc``: the same model by NUTS (:func:`bayes_se.api.fit_random_effects`), optional
  because each fit compiles and samples (seconds per replicate);
* ``DL``, ``REML``: :func:`bayes_se.frequentist.rma` with Wald-type (z) intervals;
* ``REML_KH``: REML with the Knapp-Hartung (t) interval.

Seeding. The data of cell ``c``, replicate ``r`` come from the :class:`numpy.random.SeedSequence`
child with ``spawn_key = (crc32(c), r)`` under the root ``seed``: exactly the ``r``-th child of
the ``crc32(c)``-th child of ``SeedSequence(seed)`` in its spawn tree. A replicate's numbers depend
only on ``(seed, cell, rep)``, not on the worker that ran it, the order of completion or the other
cells of the grid, so runs with any number of workers (or a Dask cluster) give identical tables.

Checkpointing. Rows are appended to ``out`` (tidy CSV, one row per cell x rep x method) as each
batch finishes; a rerun with the same ``out`` skips the (cell, rep) keys already there, so an
interrupted run loses at most the batches in flight.

References
----------
Morris TP, White IR, Crowther MJ (2019). Using simulation studies to evaluate statistical
methods. Statistics in Medicine 38, 2074-2102 (performance measures and Monte Carlo SEs).
IntHout J, Ioannidis JPA, Borm GF (2014). The Hartung-Knapp-Sidik-Jonkman method for random
effects meta-analysis is straightforward and considerably outperforms the standard
DerSimonian-Laird method. BMC Medical Research Methodology 14, 25.
Röver C (2020). Bayesian random-effects meta-analysis using the bayesmeta R package. Journal of
Statistical Software 93(6).
"""

from __future__ import annotations

import concurrent.futures
import io
import itertools
import math
import os
import re
import sys
import warnings
import zlib

import numpy as np

from bayes_se import defaults
from bayes_se.errors import BayesSEError, SpecError
from bayes_se.lazy import LazyModule

pd = LazyModule("pandas")  # building the CLI's parser imports this module

__all__ = ["simulate", "summarise", "expand_grid", "generate", "fit_methods", "add_parser",
           "cmd_simulate", "METHODS", "DEFAULT_METHODS"]

METHODS = ("bayes_exact", "bayes_mcmc", "DL", "REML", "REML_KH")
DEFAULT_METHODS = ("bayes_exact", "DL", "REML", "REML_KH")
#: Grid axes and their defaults (a cell takes the default of an axis the grid leaves out).
GRID_DEFAULTS = {"k": [10], "tau": [0.2], "mu": [0.0], "v": ["uniform(0.01, 0.1)"]}
CELL_COLUMNS = ("k", "tau", "mu", "v")
RESULT_COLUMNS = ("k", "tau", "mu", "v", "rep", "method", "estimate", "ci_lower", "ci_upper",
                  "covered", "width", "tau_estimate", "error", "seed")
#: Default priors of ``bayes_exact`` / ``bayes_mcmc``: the package's default random-effects spec.
#: The Bayesian methods' priors unless overridden (bayes_se.defaults.PRIORS, the default preset).
DEFAULT_PRIORS = tuple(f"{name}={defaults.PRIORS[name]}" for name in ("mu", "tau"))
#: Sampler settings of ``bayes_mcmc`` (per replicate), as bayes_se.prior_sensitivity's refits: 4 x 1000
#: draws; 2 x 500 left the 2.5% bound 0.1 (0.75 posterior SD) off the exact one in a k = 5 check.
MCMC_SETTINGS = {"draws": 1000, "tune": 1000, "chains": 4}
LEVEL = 0.95
#: Batches per worker: enough to balance load, few enough that a batch is not dominated by
#: pickling and CSV writes.
BATCHES_PER_WORKER = 8
MAX_BATCH = 50
_V_PATTERN = re.compile(r"^\s*(uniform|fixed|lognormal)\s*\(([^)]*)\)\s*$")


# ---------------------------------------------------------------------------------------------
# grid and data generation
# ---------------------------------------------------------------------------------------------
def _parse_v(text: str) -> tuple[str, tuple[float, ...]]:
    """``uniform(a, b)`` (v_i ~ U(a, b)), ``fixed(v)`` or ``lognormal(meanlog, sdlog)``."""
    match = _V_PATTERN.match(str(text))
    if not match:
        raise SpecError(f"cannot read within-study variance distribution '{text}'; use "
                        "'uniform(a, b)', 'fixed(v)' or 'lognormal(meanlog, sdlog)'", key="grid.v")
    family = match.group(1)
    try:
        args = tuple(float(a) for a in match.group(2).split(","))
    except ValueError:
        raise SpecError(f"arguments of '{text}' must be numbers", key="grid.v") from None
    n_args = {"uniform": 2, "fixed": 1, "lognormal": 2}[family]
    if len(args) != n_args:
        raise SpecError(f"'{family}' takes {n_args} argument(s), got {len(args)} in '{text}'", key="grid.v")
    if family == "uniform" and not 0 < args[0] <= args[1]:
        raise SpecError(f"'{text}' needs 0 < a <= b", key="grid.v")
    if family == "fixed" and not args[0] > 0:
        raise SpecError(f"'{text}' needs v > 0", key="grid.v")
    if family == "lognormal" and not args[1] >= 0:
        raise SpecError(f"'{text}' needs sdlog >= 0", key="grid.v")
    return family, args


def expand_grid(grid) -> pd.DataFrame:
    """All cells of a grid: the product of the axes ``k``, ``tau``, ``mu`` and ``v``.

    Parameters
    ----------
    grid : mapping or pandas.DataFrame
        ``{"k": [5, 10], "tau": [0, 0.2]}`` (axes left out take :data:`GRID_DEFAULTS`), or a
        DataFrame with one row per cell.

    Returns
    -------
    pandas.DataFrame
        Columns ``k``, ``tau``, ``mu``, ``v``; one row per distinct cell.
    """
    if isinstance(grid, pd.DataFrame):
        unknown = set(grid.columns) - set(CELL_COLUMNS)
        if unknown:
            raise SpecError(f"unknown grid column(s) {sorted(unknown)}; use {list(CELL_COLUMNS)}", key="grid")
        cells = grid.copy()
        for name, default in GRID_DEFAULTS.items():
            if name not in cells:
                cells[name] = default[0]
    else:
        unknown = set(grid) - set(CELL_COLUMNS)
        if unknown:
            raise SpecError(f"unknown grid axis {sorted(unknown)}; use {list(CELL_COLUMNS)}", key="grid")
        axes = {name: list(np.atleast_1d(grid.get(name, default))) for name, default in GRID_DEFAULTS.items()}
        cells = pd.DataFrame(list(itertools.product(*axes.values())), columns=list(axes))
    cells = cells[list(CELL_COLUMNS)].drop_duplicates().reset_index(drop=True)
    for i, row in cells.iterrows():
        if not (float(row.k) == int(row.k) and int(row.k) >= 2):
            raise SpecError(f"k must be an integer >= 2, got {row.k}", key=f"grid.k (cell {i + 1})")
        if not (math.isfinite(float(row.tau)) and float(row.tau) >= 0):
            raise SpecError(f"tau must be >= 0, got {row.tau}", key=f"grid.tau (cell {i + 1})")
        if not math.isfinite(float(row.mu)):
            raise SpecError(f"mu must be finite, got {row.mu}", key=f"grid.mu (cell {i + 1})")
        _parse_v(row.v)
    return cells.astype({"k": int, "tau": float, "mu": float, "v": str})


def _cell_label(k, tau, mu, v) -> str:
    return f"k={int(k)}|tau={float(tau)!r}|mu={float(mu)!r}|v={v}"


def _seed_sequence(seed: int, cell: tuple, rep: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(_cell_label(*cell).encode()), int(rep)))


def generate(k: int, tau: float, mu: float, v: str, rng) -> tuple[np.ndarray, np.ndarray]:
    """One meta-analysis: ``(y, v)`` with ``v_i ~ V``, ``y_i ~ N(mu, tau^2 + v_i)`` (via theta_i).

    Parameters
    ----------
    k : int
    tau, mu : float
    v : str
        Within-study variance distribution (``uniform(a, b)``, ``fixed(v)``, ``lognormal(m, s)``).
    rng : numpy.random.Generator

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
    """
    family, args = _parse_v(v)
    if family == "uniform":
        vi = rng.uniform(args[0], args[1], size=k)
    elif family == "fixed":
        vi = np.full(k, args[0])
    else:
        vi = rng.lognormal(args[0], args[1], size=k)
    theta = mu + tau * rng.standard_normal(k)
    y = theta + np.sqrt(vi) * rng.standard_normal(k)
    return y, vi


# ---------------------------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------------------------
def _priors(priors):
    from bayes_se.priors import prior_for, prior_overrides

    out = {name: prior_for(name, defaults.PRIORS[name]) for name in ("mu", "tau")}
    if priors:
        out.update(prior_overrides(priors)[1])
    unknown = set(out) - {"mu", "tau"}
    if unknown:
        raise SpecError(f"the simulation's model has priors on mu and tau only, not {sorted(unknown)}",
                        key="priors")
    tau = out["tau"]
    if tau.family == "half_normal" and tau.target == "tau":
        # closed form: Prior.tau_logpdf builds a SciPy distribution on every call, which costs
        # ~25 ms per exact fit against ~1 ms for the fit itself (benchmarks/run.py, section exact)
        from bayes_se.exact import half_normal_logpdf

        out["tau_logpdf"] = half_normal_logpdf(tau.params["sigma"])
    else:
        out["tau_logpdf"] = tau.tau_logpdf
    return out


def _fit_one(method, y, v, priors, seed):
    """(estimate, lower, upper, tau estimate) of mu by one method."""
    if method == "bayes_exact":
        from bayes_se.exact import exact_posterior

        post = exact_posterior(y, v, beta_prior=priors["mu"], tau_prior=priors["tau_logpdf"], level=LEVEL)
        lo, hi = post.quantile("mu", [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        return post.mean("mu"), lo, hi, float(post.quantile("tau", 0.5))
    if method == "bayes_mcmc":
        from bayes_se.api import fit_random_effects

        res = fit_random_effects(y, v, priors={"mu": priors["mu"], "tau": priors["tau"]}, seed=seed,
                                 **MCMC_SETTINGS)
        mu = np.asarray(res.idata.posterior["mu"]).ravel()
        lo, hi = np.quantile(mu, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
        return float(mu.mean()), lo, hi, float(np.median(np.asarray(res.idata.posterior["tau"])))
    from bayes_se.frequentist import rma

    est, test = {"DL": ("DL", "z"), "REML": ("REML", "z"), "REML_KH": ("REML", "knha")}[method]
    res = rma(y, v, method=est, test=test, level=LEVEL)
    return float(res.beta[0]), float(res.ci_lower[0]), float(res.ci_upper[0]), float(res.tau)


def fit_methods(cell: tuple, rep: int, seed: int, methods, priors=None) -> list[dict]:
    """Generate replicate ``rep`` of ``cell = (k, tau, mu, v)`` and fit each method to it.

    A method that fails (e.g. REML not converging) gives a row with NaN numbers and the
    message in ``error``; the other methods still run.

    Returns
    -------
    list of dict
        One row per method, keys :data:`RESULT_COLUMNS`.
    """
    k, tau, mu, v = cell
    seq = _seed_sequence(seed, cell, rep)
    data_seq, fit_seq = seq.spawn(2)
    y, vi = generate(k, tau, mu, v, np.random.default_rng(data_seq))
    fit_seed = int(fit_seq.generate_state(1)[0])
    prior_objs = _priors(priors)
    rows = []
    for method in methods:
        row = dict(zip(CELL_COLUMNS, cell), rep=int(rep), method=method, error="", seed=int(seed))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est, lo, hi, tau_hat = _fit_one(method, y, vi, prior_objs, fit_seed)
            row.update(estimate=float(est), ci_lower=float(lo), ci_upper=float(hi),
                       covered=bool(lo <= mu <= hi), width=float(hi - lo), tau_estimate=float(tau_hat))
        except (BayesSEError, ArithmeticError, np.linalg.LinAlgError) as exc:
            row.update(estimate=np.nan, ci_lower=np.nan, ci_upper=np.nan, covered=np.nan,
                       width=np.nan, tau_estimate=np.nan, error=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    return rows


def run_batch(tasks, seed, methods, priors=None) -> list[dict]:
    """Rows of a batch of ``(cell, rep)`` tasks (the unit of work a worker runs)."""
    rows = []
    for cell, rep in tasks:
        rows.extend(fit_methods(tuple(cell), rep, seed, methods, priors))
    return rows


# ---------------------------------------------------------------------------------------------
# checkpoint file
# ---------------------------------------------------------------------------------------------
def _read_results(path) -> pd.DataFrame:
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""],
                        dtype={"v": str, "method": str, "error": str})
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise SpecError(f"{path} is not a simulation results file (missing columns {missing})", key="out")
    frame["error"] = frame["error"].fillna("")
    # a torn last line can shift fields: coerce, and let _finished drop what does not parse
    for col in ("k", "tau", "mu", "rep", "estimate", "ci_lower", "ci_upper", "width", "tau_estimate", "seed"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame["covered"] = frame["covered"].map({True: True, False: False, "True": True, "False": False})
    return frame[list(RESULT_COLUMNS)]


def _finished(path, seed, methods) -> tuple[set, pd.DataFrame | None]:
    """Keys ``(k, tau, mu, v, rep)`` done for every method; rewrites ``path`` without partial keys."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return set(), None
    frame = _read_results(path)
    complete = frame.dropna(subset=["k", "tau", "mu", "v", "rep", "method", "seed"])
    complete = complete[complete["method"].isin(METHODS)].astype({"k": int, "rep": int, "seed": int})
    seeds = set(complete["seed"].astype(int))
    if seeds - {int(seed)}:
        raise SpecError(f"{path} holds results of seed(s) {sorted(seeds)}, not {seed}; "
                        "use another --out or the same seed to resume", key="seed")
    key_cols = ["k", "tau", "mu", "v", "rep"]
    have = complete.groupby(key_cols)["method"].agg(lambda m: set(m) >= set(methods))
    done = {tuple(key) for key, ok in have.items() if ok}
    keep = complete[[tuple(key) in done for key in complete[key_cols].itertuples(index=False)]]
    if len(keep) != len(frame):  # torn last write or a different method set: keep whole keys only
        tmp = f"{path}.tmp"
        keep.to_csv(tmp, index=False)
        os.replace(tmp, path)
    return done, keep


def _append(path, rows) -> None:
    buf = io.StringIO()
    header = not os.path.exists(path) or os.path.getsize(path) == 0
    pd.DataFrame(rows, columns=list(RESULT_COLUMNS)).to_csv(buf, index=False, header=header)
    with open(path, "a", encoding="utf-8") as fh:  # one write per batch
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())


class _Progress:
    """tqdm if installed, else a counter on stderr."""

    def __init__(self, total, enabled):
        self.total, self.n, self.bar = total, 0, None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="rep", desc="simulate")

    def update(self, n):
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled:
            print(f"\rsimulate: {self.n}/{self.total} replicates", end="", file=sys.stderr, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def _batches(tasks, workers):
    size = max(1, min(MAX_BATCH, math.ceil(len(tasks) / max(1, workers * BATCHES_PER_WORKER))))
    return [tasks[i:i + size] for i in range(0, len(tasks), size)]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(METHODS)}
    frame = frame.assign(_m=frame["method"].map(order))
    frame = frame.sort_values(["k", "tau", "mu", "v", "rep", "_m"], kind="mergesort")
    return frame.drop(columns="_m").reset_index(drop=True)


def simulate(grid, *, reps: int, methods=DEFAULT_METHODS, out="results.csv", seed: int,
             workers: int | None = None, scheduler=None, progress: bool = True, priors=None) -> pd.DataFrame:
    """Run a simulation study over a grid of cells and return the tidy results.

    Model of each replicate: ``y_i ~ N(mu + tau z_i, v_i)``, ``v_i ~ V`` (see the module docstring);
    every method estimates ``mu`` with a 95% interval.

    Parameters
    ----------
    grid : mapping or pandas.DataFrame
        Axes ``k``, ``tau``, ``mu``, ``v`` (see :func:`expand_grid`).
    reps : int
        Replicates per cell.
    methods : sequence of str
        From :data:`METHODS`.
    out : path
        Results CSV: appended to as batches finish; existing (cell, rep) keys are skipped.
    seed : int
        Root seed (see the module docstring for the per-replicate streams).
    workers : int, optional
        Local processes (default: all CPUs available to this process); 1 runs in this process.
    scheduler : str or distributed.Client, optional
        ``"tcp://HOST:PORT"`` of a Dask distributed scheduler (needs ``dask[distributed]``); the
        batches are submitted to that cluster instead of local processes.
    progress : bool
        Show a progress bar (tqdm when installed, else a counter on stderr).
    priors : sequence of str, optional
        Overrides of :data:`DEFAULT_PRIORS` for the Bayesian methods, e.g. ``["tau=half_cauchy(0.5)"]``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`RESULT_COLUMNS`, one row per cell x rep x method, sorted by cell, rep and
        method (the whole of ``out``, including rows of earlier runs).

    References
    ----------
    Morris, White & Crowther (2019), Statistics in Medicine 38:2074-2102.
    """
    methods = tuple(methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise SpecError(f"unknown method(s) {bad}; choose from {list(METHODS)}", key="methods")
    if int(reps) != reps or reps < 1:
        raise SpecError(f"reps must be a positive integer, got {reps}", key="reps")
    if workers is not None and (int(workers) != workers or workers < 1):
        raise SpecError(f"workers must be a positive integer, got {workers}", key="workers")
    _priors(priors)  # fail early on a bad prior
    cells = expand_grid(grid)
    out = os.fspath(out)
    done, _ = _finished(out, seed, methods)
    tasks = [(cell, rep) for cell in cells.itertuples(index=False, name=None) for rep in range(int(reps))
             if (*cell, rep) not in done]
    bar = _Progress(len(tasks), progress and bool(tasks))
    try:
        if tasks and scheduler is not None:
            _run_dask(tasks, scheduler, seed, methods, priors, out, bar)
        elif tasks:
            n = workers or _cpu_count()
            if n == 1:
                for batch in _batches(tasks, 1):
                    _append(out, run_batch(batch, seed, methods, priors))
                    bar.update(len(batch))
            else:
                _run_local(tasks, n, seed, methods, priors, out, bar)
    finally:
        bar.close()
    if not os.path.exists(out):
        return pd.DataFrame(columns=list(RESULT_COLUMNS))
    return _sorted(_read_results(out))


def _cpu_count() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _preload(methods, priors) -> None:
    """Fit one small replicate with the light methods before forking: each worker then inherits
    their (lazily imported) modules and caches instead of spending a second or more importing
    SciPy submodules itself. PyMC is left to the workers."""
    light = [m for m in methods if m != "bayes_mcmc"]
    if light:
        fit_methods((5, 0.1, 0.0, GRID_DEFAULTS["v"][0]), 0, 0, light, priors)


def _run_local(tasks, workers, seed, methods, priors, out, bar):
    _preload(methods, priors)
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_batch, batch, seed, methods, priors): len(batch)
                   for batch in _batches(tasks, workers)}
        try:
            for fut in concurrent.futures.as_completed(futures):
                _append(out, fut.result())
                bar.update(futures[fut])
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _run_dask(tasks, scheduler, seed, methods, priors, out, bar):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SpecError("a Dask scheduler needs dask.distributed: pip install 'bayes_se[dask]'",
                        key="scheduler") from None
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        n = max(1, sum(client.nthreads().values()))
        batches = _batches(tasks, n)
        futures = [client.submit(run_batch, batch, seed, methods, priors, pure=False) for batch in batches]
        sizes = {f.key: len(b) for f, b in zip(futures, batches)}
        try:
            for fut in as_completed(futures):
                _append(out, fut.result())
                bar.update(sizes[fut.key])
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        if client is not scheduler:
            client.close()


# ---------------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------------
def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Performance per method and cell, with Monte Carlo standard errors (Morris et al. 2019).

    With ``d_r = estimate_r - mu`` over the ``n`` successful replicates: ``coverage`` = share of
    intervals containing mu (MCSE ``sqrt(p (1 - p) / n)``), ``bias`` = mean d (MCSE ``sd(d) /
    sqrt(n)``), ``rmse`` = ``sqrt(mean d^2)`` (MCSE ``sd(d^2) / (2 rmse sqrt(n))``, delta method),
    ``width`` = mean interval width (MCSE ``sd / sqrt(n)``), ``n_failed`` = replicates with an error.

    Parameters
    ----------
    results : pandas.DataFrame
        From :func:`simulate` (or the CSV it wrote).

    Returns
    -------
    pandas.DataFrame
        One row per (k, tau, mu, v, method).

    References
    ----------
    Morris TP, White IR, Crowther MJ (2019). Statistics in Medicine 38, 2074-2102, table 6.
    """
    rows = []
    keys = ["k", "tau", "mu", "v", "method"]
    for key, g in results.groupby(keys, sort=False):
        ok = g[g["error"].fillna("") == ""]
        n = len(ok)
        d = ok["estimate"].to_numpy(float) - ok["mu"].to_numpy(float)
        cov = ok["covered"].astype(float).to_numpy()
        width = ok["width"].to_numpy(float)
        p = cov.mean() if n else np.nan
        mse = np.mean(d**2) if n else np.nan
        rmse = math.sqrt(mse) if n else np.nan
        sd = (lambda a: a.std(ddof=1) if n > 1 else np.nan)
        rows.append(dict(zip(keys, key), n=n, n_failed=len(g) - n,
                         coverage=p, coverage_mcse=math.sqrt(p * (1 - p) / n) if n else np.nan,
                         bias=d.mean() if n else np.nan, bias_mcse=sd(d) / math.sqrt(n) if n else np.nan,
                         rmse=rmse, rmse_mcse=sd(d**2) / (2 * rmse * math.sqrt(n)) if n and rmse > 0 else np.nan,
                         width=width.mean() if n else np.nan,
                         width_mcse=sd(width) / math.sqrt(n) if n else np.nan))
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    order = {m: i for i, m in enumerate(METHODS)}
    table = table.assign(_m=table["method"].map(order)).sort_values(keys[:4] + ["_m"], kind="mergesort")
    return table.drop(columns="_m").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def _floats(text, key):
    try:
        return [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise SpecError(f"expected comma-separated numbers, got '{text}'", key=key) from None


def add_parser(subparsers):
    """Add the ``simulate`` subcommand to an ``argparse`` subparsers object; returns the parser."""
    p = subparsers.add_parser("simulate", help="simulation study: coverage/bias of Bayesian vs DL/REML/KH intervals")
    p.add_argument("--k", default="5,10,20", help="numbers of studies, comma-separated (default 5,10,20)")
    p.add_argument("--tau", default="0,0.2,0.5", help="heterogeneity SDs, comma-separated (default 0,0.2,0.5)")
    p.add_argument("--mu", default="0", help="true mean effects, comma-separated (default 0)")
    p.add_argument("--v", action="append", default=None, metavar="DIST",
                   help="within-study variances: 'uniform(a, b)', 'fixed(v)' or 'lognormal(m, s)'; "
                        "repeat for several (default uniform(0.01, 0.1))")
    p.add_argument("--reps", type=int, default=200, help="replicates per cell (default 200)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated, from {','.join(METHODS)} (default {','.join(DEFAULT_METHODS)})")
    p.add_argument("--prior", action="append", default=[], metavar="PARAM=DIST",
                   help='prior of the Bayesian methods, e.g. --prior "tau=half_cauchy(0.5)"')
    p.add_argument("--seed", type=int, default=defaults.SEED, help=f"root seed (default {defaults.SEED})")
    p.add_argument("--out", default="results.csv", help="results CSV; a rerun resumes it (default results.csv)")
    p.add_argument("--summary", default=None, help="also write the summary table to this CSV")
    p.add_argument("--workers", type=int, default=None, help="local processes (default: all cores)")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://host:8786")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_simulate)
    return p


def cmd_simulate(args) -> int:
    """Handler of ``bayes-se simulate``: run, print the summary table, optionally write it."""
    k = _floats(args.k, "k")
    if any(x != int(x) for x in k):
        raise SpecError(f"k must be integers, got '{args.k}'", key="k")
    grid = {"k": [int(x) for x in k], "tau": _floats(args.tau, "tau"), "mu": _floats(args.mu, "mu"),
            "v": args.v or GRID_DEFAULTS["v"]}
    results = simulate(grid, reps=args.reps, methods=[m.strip() for m in args.methods.split(",") if m.strip()],
                       out=args.out, seed=args.seed, workers=args.workers, scheduler=args.scheduler,
                       progress=not args.no_progress, priors=args.prior)
    table = summarise(results)
    if args.summary:
        table.to_csv(args.summary, index=False)
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(table.round(4).to_string(index=False))
    print(f"\n{len(results)} rows in {args.out}")
    return 0
