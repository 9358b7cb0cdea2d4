"""Convergence verdicts for MCMC fits (numbers and plain-language problems, never plots).

Thresholds follow Vehtari et al. (2021): rank-normalised split R-hat <= 1.01, bulk and tail ESS
>= 400; no divergent transitions (Betancourt 2017); E-BFMI >= 0.3 per chain (Betancourt 2016).
Quantities drawn exactly after sampling (study effects, predictions: variables carrying the
``exact_conditional_draw`` attribute) are not Markov chains of their own and are left out.

References
----------
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Buerkner, P.-C. (2021). Rank-normalization,
folding, and localization: an improved R-hat. Bayesian Analysis 16, 667-718.
Betancourt, M. (2016). Diagnosing suboptimal cotangent disintegrations in Hamiltonian Monte Carlo.
arXiv:1604.00695.
Betancourt, M. (2017). A conceptual introduction to Hamiltonian Monte Carlo. arXiv:1701.02434.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

MAX_R_HAT = 1.01
MIN_ESS = 400
MIN_BFMI = 0.3
EXACT_ATTR = "exact_conditional_draw"  # set by bayes_se.sampling on exactly drawn quantities


@dataclass
class Verdict:
    """The convergence verdict of one fit.

    Attributes
    ----------
    passed : bool
    max_r_hat, min_ess_bulk, min_ess_tail, min_bfmi : float
        Worst values over the checked parameters (``min_bfmi`` over chains; NaN when unavailable).
    divergences : int
    problems : list of str
        One plain-language sentence per failed check, naming the parameter.
    """

    passed: bool
    max_r_hat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    min_bfmi: float
    problems: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready numbers (NaN becomes None)."""

        def num(x):
            return None if x is None or not np.isfinite(x) else float(x)

        return {
            "divergences": int(self.divergences),
            "max_r_hat": num(self.max_r_hat),
            "min_ess_bulk": num(self.min_ess_bulk),
            "min_ess_tail": num(self.min_ess_tail),
            "min_bfmi": num(self.min_bfmi),
            "passed": bool(self.passed),
        }

    def banner(self) -> str:
        """A loud one-block warning for a failed fit (empty string when it passed)."""
        if self.passed:
            return ""
        lines = ["!! DIAGNOSTICS FAILED: do not trust these estimates !!"]
        lines += [f"!!   - {p}" for p in self.problems]
        return "\n".join(lines)


@contextmanager
def without_numba():
    """Run ArviZ's R-hat/ESS with NumPy's variance instead of its Numba kernel, then restore.

    With Numba installed (PyTensor requires it) ArviZ JIT-compiles a variance function on the first
    ``az.rhat`` of each process: 0.3 to 0.6 s, a tenth of a warm k = 70 fit, for a reduction over
    a few thousand draws that NumPy does in microseconds.
    """
    from arviz.utils import Numba

    flag = Numba.numba_flag
    Numba.numba_flag = False
    try:
        yield
    finally:
        Numba.numba_flag = flag


def _worst(dataset, pick):
    """(value, 'name[coord]') of the worst element of an ArviZ diagnostic Dataset."""
    best_val, best_name = np.nan, None
    for name, arr in dataset.data_vars.items():
        values = np.asarray(arr, dtype=float)
        if values.size == 0 or np.all(np.isnan(values)):
            continue
        idx = np.unravel_index(pick(values), values.shape)
        val = float(values[idx])
        if best_name is None or pick(np.array([best_val, val])) == 1:
            labels = [str(arr.coords[d].values[i]) for d, i in zip(arr.dims, idx)]
            best_val, best_name = val, name + (f"[{', '.join(labels)}]" if labels else "")
    return best_val, best_name


def diagnostic_datasets(posterior, var_names) -> tuple:
    """(R-hat, bulk ESS, tail ESS) of the named posterior variables as xarray Datasets shaped like
    ``az.rhat(posterior, var_names=...)`` and ``az.ess(...)``, each variable in one vectorised pass
    (:func:`convergence_stats`) instead of ArviZ's loop over its elements."""
    import xarray as xr

    out = ({}, {}, {})
    for name in var_names:
        arr = posterior[name].transpose("chain", "draw", ...)
        res = convergence_stats(np.asarray(arr))
        dims = arr.dims[2:]
        coords = {d: arr.coords[d] for d in dims if d in arr.coords}
        for target, key in zip(out, ("r_hat", "ess_bulk", "ess_tail")):
            target[name] = xr.DataArray(res[key], dims=dims, coords=coords)
    return tuple(xr.Dataset(d) for d in out)


def check(idata, var_names=None) -> Verdict:
    """Check an MCMC fit against the convergence thresholds.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``posterior`` and ``sample_stats`` (``diverging``, ``energy``).
    var_names : list of str, optional
        Parameters to check; default every posterior variable not drawn exactly.

    Returns
    -------
    Verdict

    References
    ----------
    Vehtari et al. (2021), Bayesian Analysis 16:667-718.
    """
    import arviz as az

    post = idata.posterior
    if var_names is None:
        var_names = [v for v in post.data_vars if not post[v].attrs.get(EXACT_ATTR)]
    problems = []
    n_chains = post.sizes["chain"]
    stats = getattr(idata, "sample_stats", None)
    rhat_ds, bulk_ds, tail_ds = diagnostic_datasets(post, var_names)
    if n_chains > 1:
        r_hat, r_name = _worst(rhat_ds, np.nanargmax)
    else:
        r_hat, r_name = np.nan, None
        problems.append("only one chain: R-hat cannot be computed; run at least 2 chains")
    ess_b, b_name = _worst(bulk_ds, np.nanargmin)
    ess_t, t_name = _worst(tail_ds, np.nanargmin)
    with without_numba():
        bfmi = float(np.min(az.bfmi(idata))) if stats is not None and "energy" in stats else np.nan
    divergences = int(stats["diverging"].sum()) if stats is not None and "diverging" in stats else 0

    if np.isfinite(r_hat) and r_hat > MAX_R_HAT:
        problems.append(f"R-hat of {r_name} is {r_hat:.3f} (should be <= {MAX_R_HAT}): chains disagree")
    if np.isfinite(ess_b) and ess_b < MIN_ESS:
        problems.append(f"bulk ESS of {b_name} is {ess_b:.0f} (should be >= {MIN_ESS}): run more draws")
    if np.isfinite(ess_t) and ess_t < MIN_ESS:
        problems.append(f"tail ESS of {t_name} is {ess_t:.0f} (should be >= {MIN_ESS}): "
                        "intervals are unreliable, run more draws")
    if divergences:
        problems.append(f"{divergences} divergent transitions: the sampler missed part of the posterior")
    if np.isfinite(bfmi) and bfmi < MIN_BFMI:
        problems.append(f"E-BFMI is {bfmi:.2f} in one chain (should be >= {MIN_BFMI}): poor exploration")
    return Verdict(
        passed=not problems,
        max_r_hat=r_hat,
        min_ess_bulk=ess_b,
        min_ess_tail=ess_t,
        divergences=divergences,
        min_bfmi=bfmi,
        problems=problems,
    )


# -- R-hat and ESS vectorised over parameters ---------------------------------------------------
# ArviZ 0.23 computes rank-normalised R-hat and bulk/tail ESS one scalar parameter at a time (a
# Python loop over every element of every variable, each with its own rankdata, FFT and Geyer
# loop): about 25 ms per parameter, so 25 s for the 1,000 study effects of a k = 1,000 fit. The
# functions below are the same algorithms, in the same floating-point order, on all parameters
# at once; tests/test_diagnostics_vectorised.py checks them bit for bit against az.rhat/az.ess.


#: Parameters per block of :func:`convergence_stats` (about 40 MB of temporaries per 1,000 draws
#: per chain and 4 chains).
STATS_BLOCK = 128


def _as_columns(values):
    """(K, chain, draw) float array of draws (chain, draw, *shape), and the shape."""
    values = np.asarray(values, dtype=float)
    if values.ndim < 2:
        raise ValueError("draws need dimensions (chain, draw, ...)")
    shape = values.shape[2:]
    cols = np.moveaxis(values.reshape(values.shape[0], values.shape[1], -1), 2, 0)
    return np.ascontiguousarray(cols), shape


def _split(cols):
    """Split every chain in two halves (ArviZ's ``_split_chains``): (K, 2 chain, draw // 2)."""
    half = cols.shape[2] // 2
    return np.concatenate([cols[:, :, :half], cols[:, :, cols.shape[2] - half:]], axis=1)


def _z_scale(cols, order=None, ordered=None):
    """Rank-normalised values per parameter: Blom's normal scores of the pooled average ranks,
    ``ndtri((r - 3/8) / (N + 1/4))`` (ArviZ's ``_z_scale``; ``order``/``ordered``: a ready argsort
    of the pooled draws and the sorted draws)."""
    from scipy import special

    flat = cols.reshape(cols.shape[0], -1)
    n_param, size = flat.shape
    if order is None:
        order = np.argsort(flat, axis=1)
        ordered = np.take_along_axis(flat, order, axis=1)
    c = 3 / 8
    denom = size - 2 * c + 1
    # without ties the i-th smallest draw has rank i + 1: one normal score per rank, for every row
    scores = np.broadcast_to(special.ndtri((np.arange(1, size + 1, dtype=float) - c) / denom), flat.shape)
    tie = ordered[:, 1:] == ordered[:, :-1]
    rows = np.flatnonzero(tie.any(axis=1))
    if rows.size:
        # average ranks of tied draws, as scipy.stats.rankdata: (start + end + 2) / 2 of each run
        scores = scores.copy()
        t = tie[rows]
        pos = np.arange(size)
        new = np.ones((rows.size, size), bool)
        new[:, 1:] = ~t
        start = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
        last = np.ones((rows.size, size), bool)
        last[:, :-1] = ~t
        end = np.minimum.accumulate(np.where(last, pos, size - 1)[:, ::-1], axis=1)[:, ::-1]
        tied = end > start
        rank = 0.5 * ((end + 1) + start + 1)
        sub = scores[rows]
        sub[tied] = special.ndtri((rank[tied] - c) / denom)
        scores[rows] = sub
    z = np.empty_like(flat)
    np.put_along_axis(z, order, scores, axis=1)
    return z.reshape(cols.shape)


def _rhat(cols):
    """Split R-hat of (K, m, n) rows (Gelman et al. 2013, eq. 11.4), as ArviZ's ``_rhat``."""
    n = cols.shape[2]
    chain_mean = np.mean(cols, axis=2)
    chain_var = np.var(cols, axis=2, ddof=1)
    between = n * np.var(chain_mean, axis=1, ddof=1)
    within = np.mean(chain_var, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # constant draws: NaN, as ArviZ
        return np.sqrt((between / within + n - 1) / n)


def _ess(cols):
    """ESS of (K, m, n) rows with Geyer's initial monotone sequence, as ArviZ's ``_ess``."""
    from scipy.fftpack import next_fast_len  # ArviZ's (5-smooth; scipy.fft's is 11-smooth)

    cols = np.asarray(cols, dtype=float)
    n_param, n_chain, n_draw = cols.shape
    out = np.full(n_param, np.nan)
    if n_param == 0:
        return out
    flat = cols.reshape(n_param, -1)
    constant = (flat.max(axis=1) - flat.min(axis=1)) < np.finfo(float).resolution
    out[constant] = n_chain * n_draw
    fft_len = next_fast_len(2 * n_draw)
    centred = cols - cols.mean(axis=2, keepdims=True)
    spec = np.fft.rfft(centred, n=fft_len, axis=2)
    spec *= np.conjugate(spec)
    acov = np.fft.irfft(spec, n=fft_len, axis=2)[:, :, :n_draw]
    acov /= n_draw
    chain_mean = cols.mean(axis=2)
    # mean over chains with the chain axis contiguous: the summation order of ArviZ's 1-D means
    acov_lag = np.ascontiguousarray(np.swapaxes(acov, 1, 2))  # (K, lag, chain)
    mean_acov = np.mean(acov_lag, axis=2)
    mean_var = mean_acov[:, 0] * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus = var_plus + np.var(chain_mean, axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var[:, None] - mean_acov) / var_plus[:, None]  # every lag
    rho[:, 0] = 1.0
    # Geyer's initial positive sequence: pairs P_j = rho[2j] + rho[2j+1], j = 1, 2, ... are read
    # while the previous pair was > 0 and 2j + 2 < n_draw; the last pair read is J
    n_pairs = max((n_draw - 3) // 2, 0)  # pairs j = 1..n_pairs fit the loop's bound t < n - 3
    pair = rho[:, 2:2 + 2 * n_pairs:2] + rho[:, 3:3 + 2 * n_pairs:2] if n_pairs else np.zeros((n_param, 0))
    first = rho[:, 0] + rho[:, 1]
    prev = np.concatenate([first[:, None], pair[:, :-1]], axis=1)  # P_{j-1} for j = 1..n_pairs
    # pair j is read iff P_0..P_{j-1} are all > 0
    reads = np.cumprod(prev > 0.0, axis=1).astype(bool) if n_pairs else np.zeros((n_param, 0), bool)
    last = reads.sum(axis=1)  # J
    rho_t = np.zeros((n_param, n_draw))
    rho_t[:, 0] = 1.0
    rho_t[:, 1] = rho[:, 1]
    keep = reads & (pair >= 0.0)
    keep_even = np.zeros((n_param, n_draw), bool)
    keep_even[:, 2:2 + 2 * n_pairs:2] = keep
    keep_odd = np.zeros((n_param, n_draw), bool)
    keep_odd[:, 3:3 + 2 * n_pairs:2] = keep
    rho_t = np.where(keep_even | keep_odd, rho, rho_t)
    rows = np.arange(n_param)
    even_last = np.where(last > 0, rho[rows, 2 * last], 1.0)
    improve = even_last > 0
    rho_t[rows[improve], 2 * last[improve]] = even_last[improve]
    # Geyer's initial monotone sequence over pairs 1..J-1, each capped by the one before it
    for j in range(1, int(last.max(initial=0))):
        active = j <= last - 1
        cur = rho_t[:, 2 * j] + rho_t[:, 2 * j + 1]
        before = rho_t[:, 2 * j - 2] + rho_t[:, 2 * j - 1]
        fix = active & (cur > before)
        if fix.any():
            half = (rho_t[fix, 2 * j - 2] + rho_t[fix, 2 * j - 1]) / 2.0
            rho_t[fix, 2 * j] = half
            rho_t[fix, 2 * j + 1] = half
    # tau = -1 + 2 sum(rho_t[:2J]) + rho_t[2J]; the sums row by row in ArviZ's order, grouped by J
    sums = np.empty(n_param)
    for J in np.unique(last):
        sel = last == J
        sums[sel] = np.sum(rho_t[sel, :2 * J], axis=1)
    ess_total = n_chain * n_draw
    tau = -1.0 + 2.0 * sums + rho_t[rows, 2 * last]
    tau = np.maximum(tau, 1 / np.log10(ess_total))
    ess = ess_total / tau
    ess[np.isnan(rho_t).any(axis=1)] = np.nan
    out[~constant] = ess[~constant]
    return out


def _valid(cols, min_chains):
    """Parameters ArviZ computes (no NaN, >= 4 draws, >= ``min_chains`` chains); others are NaN."""
    ok = ~np.isnan(cols).reshape(cols.shape[0], -1).any(axis=1)
    if cols.shape[2] < 4 or cols.shape[1] < min_chains:
        ok[:] = False
    return ok


def convergence_stats(values) -> dict:
    """Rank-normalised split R-hat, bulk ESS and tail ESS (Vehtari et al. 2021) of every parameter
    of ``values`` (chain, draw, *shape) in one vectorised pass, sharing the sorts between them.

    Equal, bit for bit, to ArviZ 0.23's ``az.rhat``, ``az.ess(method="bulk")`` and
    ``az.ess(method="tail")`` (NaN where ArviZ gives NaN: a NaN draw, fewer than 4 draws, R-hat
    with fewer than 2 chains).

    Returns
    -------
    dict
        ``r_hat``, ``ess_bulk``, ``ess_tail``: arrays of shape ``values.shape[2:]``.
    """
    cols, shape = _as_columns(values)
    out = {key: np.full(cols.shape[0], np.nan) for key in ("r_hat", "ess_bulk", "ess_tail")}
    # parameters in blocks: the temporaries (FFT, argsort) stay a few times one block's draws
    for start in range(0, cols.shape[0], STATS_BLOCK):
        block = slice(start, start + STATS_BLOCK)
        for key, val in _convergence_block(cols[block]).items():
            out[key][block] = val
    return {key: val.reshape(shape) for key, val in out.items()}


def _convergence_block(cols) -> dict:
    """:func:`convergence_stats` of (K, chain, draw) draws."""
    n_param, n_chain, n_draw = cols.shape
    out = {key: np.full(n_param, np.nan) for key in ("r_hat", "ess_bulk", "ess_tail")}
    ok = _valid(cols, 1)
    if ok.any():
        sel = cols[ok]
        split = _split(sel)
        flat = split.reshape(split.shape[0], -1)
        order = np.argsort(flat, axis=1)
        ordered = np.take_along_axis(flat, order, axis=1)
        z_bulk = _z_scale(split, order, ordered)
        out["ess_bulk"][ok] = _ess(z_bulk)
        # tail ESS: indicators of the draws at or below the 5% and 95% quantiles of all draws
        pooled = ordered if n_draw % 2 == 0 else np.sort(sel.reshape(sel.shape[0], -1), axis=1)
        low, high = (_ess(_split((sel <= _quantile_type7(pooled, p)[:, None, None]).astype(float)))
                     for p in (0.05, 0.95))
        out["ess_tail"][ok] = np.where(high < low, high, low)  # Python's min(low, high)
        if n_chain >= 2:
            bulk = _rhat(z_bulk)
            m = flat.shape[1]
            mid = slice(m // 2 - 1, m // 2 + 1) if m % 2 == 0 else slice(m // 2, m // 2 + 1)
            median = np.mean(ordered[:, mid], axis=1)  # np.median's arithmetic
            tail = _rhat(_z_scale(np.abs(split - median[:, None, None])))
            out["r_hat"][ok] = np.where(tail > bulk, tail, bulk)  # Python's max(bulk, tail)
    return out


def _quantile_type7(ordered, prob):
    """R's type-7 quantile of each row of sorted draws, in ``mquantiles``' arithmetic."""
    n = ordered.shape[1]
    p = np.atleast_1d(np.asarray(prob, dtype=float))
    aleph = n * p + (1.0 + p * (1.0 - 1.0 - 1.0))
    k = np.floor(aleph.clip(1, n - 1)).astype(int)
    gamma = (aleph - k).clip(0, 1)
    return (1.0 - gamma) * ordered[:, k[0] - 1] + gamma * ordered[:, k[0]]


def rhat_rank(values) -> np.ndarray:
    """Rank-normalised split R-hat of every parameter (:func:`convergence_stats`)."""
    return convergence_stats(values)["r_hat"]


def ess_bulk(values) -> np.ndarray:
    """Bulk ESS of every parameter (:func:`convergence_stats`)."""
    return convergence_stats(values)["ess_bulk"]


def ess_tail(values) -> np.ndarray:
    """Tail ESS of every parameter (:func:`convergence_stats`)."""
    return convergence_stats(values)["ess_tail"]
