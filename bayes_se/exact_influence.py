"""Leave-one-out and cumulative posteriors of the normal-normal model, exactly, on one quadrature grid.

Model: ``y_i ~ N(x_i' beta + u_i, v_i)``, ``u_i ~ N(0, tau^2)``, ``beta_j ~ N(m_j, s_j^2)``,
``tau ~ p(tau)`` (:mod:`bayes_se.exact`). For a subset S of the studies (all but study i; the
first n studies in some order) the posterior is again a normal mixture over tau,

    p(tau | y_S) ∝ p(tau) p(y_S | tau),   beta | tau, y_S ~ N(b_S(tau), A_S(tau)^-1),

with ``A_S = sum_{i in S} x_i x_i' / (v_i + tau^2) + S^-1`` and the marginal likelihood in closed
form (:class:`bayes_se.exact.ExactPosterior`). All subsets are evaluated at once on the nodes of an
existing grid (the full posterior's): the sums over S are matrix products of a (nodes x k) matrix
of ``1 / (v_i + tau^2)`` with the (k x subsets) membership matrix, so k leave-one-out posteriors
cost a few (G x k) x (k x k) products. A subset's density on those nodes is accepted only when
the grid resolves it as well as its own grid would: its Chebyshev coefficients have decayed
below ``CHEB_TOL`` (as :mod:`bayes_se.exact` requires of its own grid), its density at the grid's
ends is ``TAIL_NATS`` below its peak, and, for a log-tau2 prior, the analytic mass below the grid
is within ``TAIL_RTOL``. A subset that fails (a cumulative posterior of the first few studies is
much wider than the full one) is solved on a new grid, its own (:meth:`ExactPosterior.subset`),
which then serves the other failing subsets too.

References
----------
Röver C (2020). Bayesian random-effects meta-analysis using the bayesmeta R package. JSS 93(6)
(the posterior as a mixture over tau). Viechtbauer W, Cheung MW-L (2010). Outlier and influence
diagnostics for meta-analysis. Research Synthesis Methods 1(2), 112-125 (the frequentist
leave-one-out). Lau J et al. (1992). Cumulative meta-analysis of therapeutic trials for myocardial
infarction. NEJM 327(4), 248-254.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.polynomial import chebyshev
from scipy import special

from bayes_se.errors import BayesSEError, DataError
from bayes_se.exact import CHEB_TOL, NOISE_ULPS, TAIL_NATS, TAIL_RTOL

__all__ = ["leave_one_out", "cumulative", "subset_summaries", "SUMMARY_COLUMNS"]

LOG_2PI = math.log(2.0 * math.pi)
EDGE_SLACK = 10.0  # nats of TAIL_NATS a subset's density may lose at the grid's ends before a regrid
QUANTILE_XTOL = 1e-13


def _columns(level):
    a = 100 * (1 - level) / 2
    return ["mean", "sd", f"q{a:g}", "q50", f"q{100 - a:g}"]


#: Columns of :func:`subset_summaries` at level 0.95 (``q2.5``/``q97.5`` follow the level).
SUMMARY_COLUMNS = _columns(0.95) + ["shift", "shift_sd"]


def _conditionals(rule, M):
    """``log p(y_S | tau)``, ``b_S`` and ``A_S^-1`` at every node (and tau = 0 first) for every subset.

    ``M`` is the (J, k) 0/1 membership matrix. Returns (G, J), (G, J, p), (G, J, p, p) arrays.
    """
    y, v, X = rule["yi"], rule["vi"], rule["X"]
    m, prec = rule["beta_mean"], rule["beta_prec"]
    k, p = X.shape
    tau = np.concatenate([[0.0], rule["tau"]])
    d = v + np.square(tau)[:, None]
    w = 1.0 / d
    r = y - X @ m
    Mt = M.T  # (k, J)
    logdet_d = np.log(d) @ Mt
    rr = (w * r * r) @ Mt
    XX = (X[:, :, None] * X[:, None, :]).reshape(k, p * p)
    A = np.stack([(w * XX[:, e]) @ Mt for e in range(p * p)], axis=-1).reshape(tau.size, M.shape[0], p, p)
    A += np.diag(prec)
    rhs = np.stack([(w * (X[:, a] * r)) @ Mt for a in range(p)], axis=-1)
    flat = prec == 0
    n_s = M.sum(axis=1)
    const = -0.5 * (n_s * LOG_2PI + float(np.sum(np.log(1.0 / prec[~flat]))))
    with np.errstate(divide="ignore", invalid="ignore"):
        if p == 1:
            Ainv = 1.0 / A
            u = Ainv[..., 0] * rhs
            logdet_A = np.log(A[..., 0, 0])
        else:
            sign, logdet_A = np.linalg.slogdet(A)
            logdet_A = np.where(sign > 0, logdet_A, np.nan)  # a subset that does not identify flat beta
            Ainv = np.linalg.inv(np.where((sign > 0)[..., None, None], A, np.eye(p)))
            u = np.einsum("gjpq,gjq->gjp", Ainv, rhs)
        quad = rr - np.sum(rhs * u, axis=-1)
        loglik = const - 0.5 * (logdet_d + logdet_A + quad)
    return tau, loglik, m + u, Ainv


def _evaluate(rule, M):
    """Posterior weights (G+1, J) over [tau = 0] + nodes, the Chebyshev cdf coefficients of x and
    the tail mass below the grid for every subset, with a mask of the subsets this grid resolves."""
    tau, loglik, b, Ainv = _conditionals(rule, M)
    n = rule["x"].size
    log_axis = rule["log_tau2_prior"] is not None
    lh = rule["log_prior"][:, None] + loglik[1:]  # (n, J)
    ok = np.isfinite(lh).all(axis=0)
    lh = np.where(np.isfinite(lh), lh, -np.inf)
    top = lh.max(axis=0)
    top = np.where(np.isfinite(top), top, 0.0)
    h = np.exp(lh - top)
    coef = rule["to_coef"] @ h  # (n, J)
    tail = np.abs(coef[-(n // 4):]).max(axis=0)
    noise = NOISE_ULPS * np.finfo(float).eps * np.abs(np.where(np.isfinite(lh), lh, 0.0)).max(axis=0)
    ok &= tail <= np.maximum(CHEB_TOL, noise) * np.abs(coef).max(axis=0)
    # the density at the grid's ends must be negligible (no mass beyond them)
    edge_tau = rule["tau_edges"]
    _, ll_edges, _, _ = _conditionals({**rule, "tau": edge_tau}, M)
    le = rule["log_prior_edges"][:, None] + ll_edges[1:]  # (2, J)
    limit = top - (TAIL_NATS - EDGE_SLACK)
    ok &= le[1] < limit
    if not log_axis and rule["lo"] > 0:
        ok &= le[0] < limit
    w = rule["weights"][:, None] * h
    log_inner = top + np.log(w.sum(axis=0))
    if log_axis:
        dist = rule["log_tau2_prior"]
        log_tail_cdf = float(dist.logcdf(rule["lo"]))
        log_tail = loglik[0] + log_tail_cdf
        log_z = np.logaddexp(log_inner, log_tail)
        p0 = np.exp(log_tail - log_z)
        # the tail's error relative to p(y_S): L_S(tau) - L_S(0) up to the grid's start, and the
        # tail mass times tau_lo / c, tau_lo^2 / v_min (the bound of exact._tail_cut)
        tau_lo = float(edge_tau[0])
        dev = np.abs(np.expm1(ll_edges[1] - loglik[0]))
        dev = np.maximum(dev, tau_lo ** 2 / float(np.min(rule["vi"])))
        ok &= p0 * dev <= TAIL_RTOL * 100
    else:
        log_tail_cdf, log_z, p0 = None, log_inner, np.zeros(M.shape[0])
    scale = np.exp(top - log_z)
    weights = np.vstack([p0[None, :], w * scale])  # row 0: tau = 0 (log axis), else weight 0
    cdf_coef = chebyshev.chebint(coef * scale, lbnd=-1.0, scl=0.5 * (rule["hi"] - rule["lo"]), axis=0)
    cdf_coef[0] += p0
    return {"ok": ok, "tau": tau, "weights": weights, "b": b, "Ainv": Ainv, "cdf_coef": cdf_coef,
            "p0": p0, "log_tail_cdf": log_tail_cdf, "lo": rule["lo"], "hi": rule["hi"], "x": rule["x"],
            "tau_of_x": rule["tau_of_x"], "dist": rule["log_tau2_prior"], "density_coef": coef * scale}


def _mixture_quantiles(W, m, s, q):
    """Quantile ``q`` of J normal mixtures with weights, means, sds (G, J): Newton's method inside a
    bisection bracket, vectorised over the mixtures."""
    mean = np.sum(W * m, axis=0)
    sd = np.sqrt(np.sum(W * (np.square(s) + np.square(m - mean)), axis=0))
    live = W > 0
    lo = np.where(live, m - 12 * s, np.inf).min(axis=0)
    hi = np.where(live, m + 12 * s, -np.inf).max(axis=0)
    x = np.clip(mean + sd * special.ndtri(q), lo, hi)
    for _ in range(200):
        z = (x - m) / s
        F = np.sum(W * special.ndtr(z), axis=0) - q
        lo, hi = np.where(F < 0, x, lo), np.where(F > 0, x, hi)
        f = np.sum(W * np.exp(-0.5 * z * z) / s, axis=0) / math.sqrt(2 * math.pi)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = x - F / f
        new = np.where((new >= lo) & (new <= hi), new, 0.5 * (lo + hi))
        done = (np.abs(new - x) <= QUANTILE_XTOL * sd) | (np.abs(F) <= 4 * np.finfo(float).eps)
        x = np.where(done, x, new)
        if done.all():
            break
    return x


def _tau_quantiles(ev, cols, q):
    """Quantile ``q`` of tau for the subsets ``cols`` from the integrated Chebyshev interpolant."""
    lo_x, hi_x = ev["lo"], ev["hi"]
    c = ev["cdf_coef"][:, cols]  # (n+1, J)
    dc = ev["density_coef"][:, cols]
    degrees = np.arange(c.shape[0])

    def series(x):
        """The cdf and the density of x (the integrated interpolant and the interpolant) at x."""
        s = np.clip((2.0 * x - (lo_x + hi_x)) / (hi_x - lo_x), -1.0, 1.0)
        T = np.cos(np.arccos(s)[:, None] * degrees[None, :])  # T_n(s) = cos(n arccos s)
        return np.einsum("jn,nj->j", T, c), np.einsum("jn,nj->j", T[:, : dc.shape[0]], dc)

    p0 = ev["p0"][cols]
    a, b = np.full(len(cols), lo_x), np.full(len(cols), hi_x)
    # start from the quadrature's own cdf at the nodes (cumulative weights), interpolated
    cum = np.cumsum(ev["weights"][:, cols], axis=0)
    nodes = np.concatenate([[lo_x], ev["x"]])
    first = np.argmax(cum >= q, axis=0)
    x = np.clip(nodes[first], lo_x, hi_x)
    for _ in range(200):
        F, f = series(x)
        F -= q
        a, b = np.where(F < 0, x, a), np.where(F > 0, x, b)
        f = np.maximum(f, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = x - F / f
        new = np.where((new > a) & (new < b) & np.isfinite(new), new, 0.5 * (a + b))
        done = (np.abs(new - x) <= 1e-14 * (hi_x - lo_x)) | (np.abs(F) <= 4 * np.finfo(float).eps)
        x = np.where(done, x, new)  # a converged column stays put (its bracket may be one-sided)
        if done.all():
            break
    if ev["dist"] is not None and np.any(q <= p0):  # below the grid: the log-tau2 prior's own quantile
        below = q <= p0
        x[below] = ev["dist"].ppf(np.exp(np.log(q) - np.log(p0[below]) + ev["log_tail_cdf"]))
    return ev["tau_of_x"](x)


def _summaries(ev, cols, level, par):
    """Rows (parameter x subset) of mean, sd, quantiles for the subsets ``cols`` of an evaluation."""
    a = (1 - level) / 2
    probs = (a, 0.5, 1 - a)
    W = ev["weights"][:, cols]
    out = {}
    for j, name in enumerate(par):
        m = ev["b"][:, cols, j]
        s = np.sqrt(ev["Ainv"][:, cols, j, j])
        mean = np.sum(W * m, axis=0)
        sd = np.sqrt(np.sum(W * (np.square(s) + np.square(m - mean)), axis=0))
        out[name] = np.column_stack([mean, sd] + [_mixture_quantiles(W, m, s, p) for p in probs])
    t = ev["tau"][:, None]
    mean = np.sum(W * t, axis=0)
    sd = np.sqrt(np.sum(W * np.square(t - mean), axis=0))
    out["tau"] = np.column_stack([mean, sd] + [_tau_quantiles(ev, cols, p) for p in probs])
    return out


def _refit_rows(posterior, keep, level, par):
    """Summary rows of one subset solved on its own grid (NaN where it has no proper posterior)."""
    try:
        sub = posterior.subset(keep)
    except BayesSEError:
        return None, {name: np.full((1, 5), np.nan) for name in list(par) + ["tau"]}
    saved, sub.level = sub.level, level
    try:
        table = sub.summary(theta=False, pred=False)
    finally:
        sub.level = saved
    return sub, {name: table.loc[[name]].to_numpy() for name in list(par) + ["tau"]}


def subset_summaries(posterior, masks, labels, *, level=None, refit: bool = False) -> pd.DataFrame:
    """Posterior summaries of ``mu`` (or each ``beta[NAME]``) and ``tau`` given each subset of the studies.

    Parameters
    ----------
    posterior : ExactPosterior
        The full posterior; its grid is reused wherever it resolves a subset (module notes).
    masks : array_like of bool, shape (J, k)
        Row j: the studies of subset j.
    labels : sequence of str
        One label per subset (the index of the result).
    level : float, optional
        Credible level (default the posterior's).
    refit : bool
        Solve every subset on its own grid (slow; the reference the fast path is tested against).

    Returns
    -------
    pandas.DataFrame
        Index (``study`` label, ``parameter``); columns ``mean``, ``sd``, the central interval
        ``q<lower>``, ``q50``, ``q<upper>``, ``shift`` (the mean minus the full posterior's) and
        ``shift_sd`` (the shift in units of the full posterior's sd).
    """
    level = posterior.level if level is None else float(level)
    M = np.asarray(masks, dtype=float)
    J = M.shape[0]
    names = list(posterior.coef_names)
    full = posterior.summary(theta=False, pred=False)
    par = ["mu"] if full.index[0] == "mu" else [f"beta[{n}]" for n in names]
    rows = {name: np.full((J, 5), np.nan) for name in par + ["tau"]}
    pending = np.arange(J)
    rule_from = posterior
    data = {key: value for key, value in posterior.quadrature_rule().items() if key in ("yi", "vi", "X")}
    if not refit and not posterior.quadrature_rule()["improper_tau"]:
        while pending.size:
            rule = {**rule_from.quadrature_rule(), **data}  # the nodes of this grid, the data of all k
            ev = _evaluate(rule, M[pending])
            good = np.flatnonzero(ev["ok"])
            if good.size:
                res = _summaries(ev, good, level, par)
                for name in rows:
                    rows[name][pending[good]] = res[name]
            pending = pending[~ev["ok"]]
            if not pending.size:
                break
            # solve the first unresolved subset on its own grid; that grid then serves the rest
            sub, res = _refit_rows(posterior, M[pending[0]] > 0, level, par)
            for name in rows:
                rows[name][pending[0]] = res[name][0]
            pending = pending[1:]
            if sub is None:
                continue
            rule_from = sub
    else:
        for j in pending:
            _, res = _refit_rows(posterior, M[j] > 0, level, par)
            for name in rows:
                rows[name][j] = res[name][0]
    cols = _columns(level)
    frames = []
    for name in par + ["tau"]:
        df = pd.DataFrame(rows[name], columns=cols)
        df["shift"] = df["mean"] - full.loc[name, "mean"]
        df["shift_sd"] = df["shift"] / full.loc[name, "sd"]
        df.insert(0, "parameter", name)
        df.insert(0, "study", list(labels))
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out["_order"] = np.tile(np.arange(J), len(frames))
    out = out.sort_values(["_order"], kind="stable").drop(columns="_order")
    return out.set_index(["study", "parameter"])


def leave_one_out(posterior, *, level=None) -> pd.DataFrame:
    """The posterior of ``mu`` (or each ``beta[NAME]``) and ``tau`` with each study left out in turn.

    ``p(beta, tau | y_(-i))`` exactly, for every i, on the full posterior's quadrature grid
    (module notes); see :func:`subset_summaries` for the columns. Index (left-out ``study``,
    ``parameter``).
    """
    k = len(posterior.study)
    if k < 2:
        raise DataError("leave-one-out needs at least 2 studies", column="yi")
    masks = ~np.eye(k, dtype=bool)
    return subset_summaries(posterior, masks, posterior.study, level=level)


def cumulative(posterior, order=None, *, level=None) -> pd.DataFrame:
    """Cumulative posteriors: ``mu`` (or each ``beta[NAME]``) and ``tau`` given the first 1, 2, ..., k
    studies in the given order.

    Parameters
    ----------
    posterior : ExactPosterior
    order : array_like, optional
        One sort key per study (ascending, ties in data order, as R's ``order``), e.g. the
        publication year; None keeps the data order.

    Returns
    -------
    pandas.DataFrame
        Index (``study`` added at that step, ``parameter``); column ``k`` (studies so far), then the
        columns of :func:`subset_summaries` (``shift``: against the posterior given all studies).
        A step without a proper posterior (a flat prior and too few studies) is NaN.
    """
    k = len(posterior.study)
    if order is None:
        idx = np.arange(k)
    else:
        keys = np.asarray(order)
        if keys.ndim != 1 or keys.shape[0] != k:
            raise DataError(f"'order' has {keys.size} values but there are {k} studies", column="order")
        if keys.dtype.kind in "fc" and np.isnan(keys.astype(float)).any():
            raise DataError("'order' has missing values", column="order",
                            row=int(np.flatnonzero(np.isnan(keys.astype(float)))[0]) + 1)
        idx = np.argsort(keys, kind="stable")
    masks = np.zeros((k, k), dtype=bool)
    for n in range(k):
        masks[n, idx[: n + 1]] = True
    out = subset_summaries(posterior, masks, [posterior.study[i] for i in idx], level=level)
    n_par = len(out) // k
    out.insert(0, "k", np.repeat(np.arange(1, k + 1), n_par))
    return out
