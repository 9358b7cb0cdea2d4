"""Heterogeneity (tau^2) estimators and confidence intervals of the univariate random-effects model.

Model: ``y_i = x_i' beta + u_i + e_i``, ``u_i ~ N(0, tau^2)``, ``e_i ~ N(0, v_i)`` with known ``v_i``.

Every estimator follows metafor 3.8-1's ``rma.uni`` line by line (same formulas, same starting
values, same truncation at 0, the outcomes mean-centred before the quadratic forms as metafor
does), so results agree to the convergence tolerance.

References
----------
Viechtbauer, W. (2005). Bias and efficiency of meta-analytic variance estimators in the
random-effects model. *Journal of Educational and Behavioral Statistics*, 30(3), 261-293.
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software*, 36(3), 1-48 (``R/rma.uni.r``, ``R/confint.rma.uni.r`` of metafor 3.8-1).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from bayes_se.errors import ConvergenceWarning, DataError
from bayes_se.frequentist.dist import stats  # scipy.stats' functions without its import cost

__all__ = [
    "METHODS",
    "Tau2Estimate",
    "estimate_tau2",
    "hat_residual_matrix",
    "ResidualProjection",
    "generalized_q",
    "log_likelihood",
    "qprofile_ci",
    "profile_likelihood_ci",
]

#: metafor names of the estimators; FE and CE are aliases of EE
METHODS = ("EE", "DL", "REML", "ML", "PM", "EB", "SJ", "HS", "HE")

THRESHOLD = 1e-12  # change in tau^2 that ends Fisher scoring (metafor's control$threshold in the reference)
MAXITER = 10_000  # iterations of the root finders
DENSE_MAX_K = 1_000  # up to this many effects P is formed as a k x k matrix (see ResidualProjection)
ROOT_XTOL = 1e-15  # absolute tolerance of brentq (tighter than metafor's uniroot tol of 1e-12)
TAU2_MAX_FLOOR = 100.0  # metafor's control$tau2.max default before its adaptive enlargement


@dataclass(frozen=True)
class Tau2Estimate:
    """Result of :func:`estimate_tau2`: the estimate, its standard error and the iteration count."""

    tau2: float
    se_tau2: float
    iterations: int = 0


def hat_residual_matrix(w: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``P = W - W X (X' W X)^{-1} X' W`` for diagonal weights ``w`` (metafor's ``P``), as a k x k matrix.

    The estimators here never form it (see :class:`ResidualProjection`, O(k) memory); it stays for
    callers that want the matrix itself.
    """
    WX = X * w[:, None]
    return np.diag(w) - WX @ np.linalg.solve(X.T @ WX, WX.T)


class ResidualProjection:
    """metafor's ``P = W - W X (X'WX)^{-1} X'W`` without the k x k matrix: O(k p) memory.

    With ``Q = W^{1/2} X L^{-T}`` an orthonormal basis of ``W^{1/2} X`` (``L L' = X'WX``, the
    Cholesky factor of the p x p matrix metafor inverts) and ``M = I - Q Q'``,
    ``P = W^{1/2} M W^{1/2}``; the hat values are ``h_i = ||q_i||^2`` (row sums of ``Q * Q``), so

    * ``P y = W^{1/2} (z - Q Q'z)``, ``z = W^{1/2} y`` (the weighted residuals ``w_i e_i``);
    * ``tr(P) = sum_i w_i (1 - h_i)``;
    * ``sum_ij a_i b_j M_ij^2 = sum_i a_i b_i (1 - 2 h_i) + <Q'AQ, Q'BQ>_F`` for diagonal A, B, which
      gives ``sum(P * P)`` (a = b = w), ``sum(PV * (PV)')`` (a = b = w v) and ``sum(PV * P)``
      (a = w, b = w v) of metafor's formulas (Viechtbauer 2005, Table 1).

    The last identity subtracts terms of size ``a_i b_i h_i^2``: when one weight exceeds the others
    by ~1e8 or more (``h_i`` -> 1) it cancels to noise. Up to ``DENSE_MAX_K`` effects the k x k
    ``P`` (at most 8 MB) is therefore formed and summed elementwise, as metafor does; above that the
    O(k) forms are used (and :func:`_fisher_scoring` falls back to bracketing the root of its
    estimating equation if the information ``sum(P * P)`` is not a positive number).

    Parameters
    ----------
    w : ndarray, shape (k,)
        Positive weights (all ones: the unweighted projection ``I - X (X'X)^{-1} X'``).
    X : ndarray, shape (k, p)
        Full-column-rank design.
    dense : bool, optional
        Force (True) or forbid (False) the k x k matrix; default: ``k <= DENSE_MAX_K``.
    """

    def __init__(self, w, X, dense=None):
        self.w = np.asarray(w, float)
        self.sw = np.sqrt(self.w)
        Xs = X * self.sw[:, None]
        L = np.linalg.cholesky(Xs.T @ Xs)
        self.Q = Xs @ np.linalg.inv(L).T
        self._h = None
        dense = self.w.size <= DENSE_MAX_K if dense is None else dense
        self.P = hat_residual_matrix(self.w, X) if dense else None

    @property
    def h(self) -> np.ndarray:
        """Hat values ``h_i = ||q_i||^2`` (row sums of ``Q * Q``), computed on first use."""
        if self._h is None:
            self._h = np.einsum("ij,ij->i", self.Q, self.Q)
        return self._h

    def apply(self, y) -> np.ndarray:
        """``P y``."""
        if self.P is not None:
            return self.P @ y
        z = self.sw * y
        return self.sw * (z - self.Q @ (self.Q.T @ z))

    def quad(self, y) -> float:
        """``y' P y`` as the squared norm of the projected ``W^{1/2} y`` (no cancellation)."""
        if self.P is not None:
            return float(y @ self.P @ y)
        z = self.sw * y
        r = z - self.Q @ (self.Q.T @ z)
        return float(r @ r)

    def trace(self) -> float:
        """``tr(P)``."""
        if self.P is not None:
            return float(np.trace(self.P))
        return float(np.sum(self.w * (1.0 - self.h)))

    def sum_sq(self, a, b=None) -> float:
        """``sum_ij a_i b_j M_ij^2`` (``b = a`` by default); ``a = b = w`` gives ``sum(P * P)``."""
        b = a if b is None else b
        if self.P is not None:  # M_ij^2 = P_ij^2 / (w_i w_j)
            M2 = np.square(self.P) / np.outer(self.w, self.w)
            return float(a @ M2 @ b)
        QA = self.Q.T @ (self.Q * a[:, None])
        QB = QA if b is a else self.Q.T @ (self.Q * b[:, None])
        return float(np.sum(a * b * (1.0 - 2.0 * self.h)) + np.sum(QA * QB))


def generalized_q(tau2: float, y: np.ndarray, vi: np.ndarray, X: np.ndarray) -> float:
    """Generalised Q statistic ``y' P(tau2) y`` with weights ``1 / (v_i + tau2)`` (metafor ``.QE.func``)."""
    return ResidualProjection(1.0 / (vi + tau2), X).quad(y)


def log_likelihood(tau2: float, y: np.ndarray, vi: np.ndarray, X: np.ndarray, reml: bool) -> float:
    """Log likelihood (ML) or restricted log likelihood (REML, incl. ``+ 1/2 log|X'X|``) at ``tau2``.

    As metafor's ``ll.ML`` / ``ll.REML`` with ``REMLf = TRUE``.
    """
    k, p = X.shape
    w = 1.0 / (vi + tau2)
    XtWX = X.T @ (X * w[:, None])
    beta = np.linalg.solve(XtWX, X.T @ (w * y))
    rss = float(np.sum(w * (y - X @ beta) ** 2))
    if not reml:
        return -0.5 * k * np.log(2 * np.pi) - 0.5 * np.sum(np.log(vi + tau2)) - 0.5 * rss
    return (
        -0.5 * (k - p) * np.log(2 * np.pi)
        + 0.5 * np.linalg.slogdet(X.T @ X)[1]
        - 0.5 * np.sum(np.log(vi + tau2))
        - 0.5 * np.linalg.slogdet(XtWX)[1]
        - 0.5 * rss
    )


def default_tau2_max(yi: np.ndarray) -> float:
    """metafor's upper search bound ``max(100, 10 * mad(yi)^2)`` (R's mad constant 1.4826)."""
    mad = 1.4826 * np.median(np.abs(yi - np.median(yi)))
    return max(TAU2_MAX_FLOOR, 10 * mad**2)


FS_MAXITER = 1_000  # Fisher-scoring steps before the bracketing fallback (metafor's default maxiter: 100)


def _score(ymc, vi, X, method, tau2):
    """The estimating equation Fisher scoring solves, ``> 0`` below the root: ``y'P P y - tr(P)``
    (REML), ``y'P P y - sum w`` (ML), ``y'P y k / (k - p) - k`` (EB)."""
    k, p = X.shape
    w = 1.0 / (vi + tau2)
    P = ResidualProjection(w, X)
    Py = P.apply(ymc)
    if method == "ML":
        return float(Py @ Py - w.sum())
    if method == "REML":
        return float(Py @ Py - P.trace())
    return float(ymc @ Py * k / (k - p) - k)


def _fisher_scoring(ymc, vi, X, method, tau2, threshold):
    """Fisher scoring (ML, REML) or the EB fixed-point step, with metafor's step halving at 0.

    Converged when tau^2 changes by at most ``threshold`` (metafor's absolute rule), or by 64
    rounding units of tau^2 where that is larger (data on a large scale, tau^2 ~ 1e80, converge too). Where the
    steps oscillate without converging (rare: a very flat likelihood) the root of the same
    estimating equation is bracketed and found by ``brentq`` instead (metafor stops with an error).
    """
    k, p = X.shape
    start = tau2
    for it in range(1, FS_MAXITER + 2):
        old = tau2
        w = 1.0 / (vi + tau2)
        P = ResidualProjection(w, X)
        Py = P.apply(ymc)
        if method == "ML":
            adj = (Py @ Py - w.sum()) / np.sum(w**2)
        elif method == "REML":
            info = P.sum_sq(w)
            if not info > 0:  # cancelled to noise (weights ~1e8 apart, k > DENSE_MAX_K)
                break
            adj = (Py @ Py - P.trace()) / info
        else:  # EB
            adj = (ymc @ Py * k / (k - p) - k) / w.sum()
        if not np.isfinite(adj):
            break
        while tau2 + adj < 0:
            adj /= 2
        tau2 = tau2 + adj
        if abs(old - tau2) <= max(threshold, 64 * np.finfo(float).eps * tau2):
            return tau2, it
    return _bracketed_root(ymc, vi, X, method, start), it


def _bracketed_root(ymc, vi, X, method, start):
    """The root of :func:`_score` in tau^2 >= 0 by bracketing and ``brentq`` (0 if the score is <= 0 there)."""
    def f(t):
        return _score(ymc, vi, X, method, t)

    if f(0.0) <= 0:
        return 0.0
    hi = max(1.0, start)
    while f(hi) > 0:
        if hi > 1e300:
            warnings.warn(f"{method}: no root of the estimating equation found", ConvergenceWarning)
            return hi
        hi *= 4.0
    return float(optimize.brentq(f, 0.0, hi, xtol=ROOT_XTOL, rtol=4 * np.finfo(float).eps, maxiter=MAXITER))


def estimate_tau2(yi, vi, X, method: str = "REML", *, threshold: float = THRESHOLD) -> Tau2Estimate:
    """Estimate ``tau^2`` by ``method`` exactly as metafor 3.8-1 ``rma.uni`` does.

    Parameters
    ----------
    yi, vi : array_like, shape (k,)
        Effect sizes and their (known, positive) sampling variances.
    X : array_like, shape (k, p)
        Design matrix (full column rank).
    method : {"EE", "DL", "REML", "ML", "PM", "EB", "SJ", "HS", "HE"}
        ``EE`` returns 0.
    threshold : float, default 1e-12
        Fisher scoring (ML, REML, EB) stops when tau^2 changes by at most this much (metafor's
        ``control$threshold``; metafor's own default is 1e-5).

    Returns
    -------
    Tau2Estimate
        ``tau2`` (truncated at 0) and ``se_tau2`` (metafor's formula for each estimator; NaN for EE).

    References
    ----------
    DerSimonian & Laird (1986) DL; Hedges (1983) HE; Hunter & Schmidt (2004) HS; Sidik & Jonkman
    (2005) SJ; Paule & Mandel (1982) PM; Morris (1983) EB; Viechtbauer (2005) ML/REML.
    """
    yi = np.asarray(yi, float)
    vi = np.asarray(vi, float)
    X = np.asarray(X, float)
    k, p = X.shape
    ymc = yi - yi.mean()  # metafor centres y before the quadratic forms ("to increase stability")
    iterations = 0
    if method == "EE":
        return Tau2Estimate(0.0, float("nan"))

    if method == "HS":
        w = 1.0 / vi
        P = ResidualProjection(w, X)
        tau2 = max(0.0, (P.quad(ymc) - k) / w.sum())
        se = np.sqrt((2 * (k - p) + 4 * tau2 * P.trace() + 2 * tau2**2 * P.sum_sq(w)) / w.sum() ** 2)
        return Tau2Estimate(tau2, float(se))

    if method in ("HE", "ML", "REML", "EB"):
        P0 = ResidualProjection(np.ones(k), X)  # I - X (X'X)^-1 X'; metafor's PV = P0 V
        tr_pv = float(np.sum(vi * (1.0 - P0.h)))
        tau2 = (P0.quad(ymc) - tr_pv) / (k - p)
        if method == "HE":
            tau2 = max(0.0, tau2)
            se = np.sqrt((2 * P0.sum_sq(vi) + 4 * tau2 * tr_pv + 2 * tau2**2 * (k - p)) / (k - p) ** 2)
            return Tau2Estimate(tau2, float(se))
        tau2, iterations = _fisher_scoring(ymc, vi, X, method, max(0.0, tau2), threshold)
        if method in ("ML", "REML") and tau2 > threshold:
            reml = method == "REML"
            # metafor's ll0check: is the (RE)ML likelihood higher at tau2 = 0?
            if log_likelihood(0.0, ymc, vi, X, reml) - log_likelihood(tau2, ymc, vi, X, reml) > THRESHOLD:
                warnings.warn("Fisher scoring stuck at a local maximum; setting tau^2 = 0", ConvergenceWarning)
                tau2 = 0.0
        tau2 = max(0.0, tau2)
        w = 1.0 / (vi + tau2)
        if method == "ML":
            se = np.sqrt(2 / np.sum(w**2))
        elif method == "REML":
            se = np.sqrt(2 / ResidualProjection(w, X).sum_sq(w))
        else:
            se = np.sqrt(2 * k**2 / (k - p) / w.sum() ** 2)
        return Tau2Estimate(tau2, float(se), iterations)

    if method == "DL":
        w = 1.0 / vi
        P = ResidualProjection(w, X)
        trP = P.trace()
        tau2 = max(0.0, (P.quad(ymc) - (k - p)) / trP)
        se = np.sqrt((2 * (k - p) + 4 * tau2 * trP + 2 * tau2**2 * P.sum_sq(w)) / trP**2)
        return Tau2Estimate(tau2, float(se))

    if method == "SJ":
        tau2_0 = float(np.mean(ymc**2))  # metafor: var(ymci) * (k-1)/k
        w = 1.0 / (vi + tau2_0)
        P = ResidualProjection(w, X)  # metafor's PV = P V: sums below with a = w v (module notes)
        tau2 = max(0.0, tau2_0 * P.quad(ymc) / (k - p))
        se = np.sqrt(
            tau2_0**2 / (k - p) ** 2
            * (2 * P.sum_sq(w * vi) + 4 * tau2 * P.sum_sq(w, w * vi) + 2 * tau2**2 * P.sum_sq(w))
        )
        return Tau2Estimate(tau2, float(se))

    if method == "PM":
        target = k - p
        tau2_max = default_tau2_max(yi)

        def f(t):
            return generalized_q(t, ymc, vi, X) - target

        if f(0.0) < 0:
            tau2 = 0.0
        elif f(tau2_max) > 0:
            raise DataError(f"the PM estimate of tau^2 exceeds the search bound {tau2_max:g}; use another method")
        else:
            tau2 = optimize.brentq(f, 0.0, tau2_max, xtol=ROOT_XTOL, rtol=4 * np.finfo(float).eps, maxiter=MAXITER)
        w = 1.0 / (vi + tau2)
        se = np.sqrt(2 * k**2 / (k - p) / w.sum() ** 2)
        return Tau2Estimate(float(tau2), float(se))

    raise ValueError(f"unknown tau2 method {method!r}")


def qprofile_ci(yi, vi, X, tau2_hat: float, level: float = 0.95) -> tuple[float, float]:
    """Q-profile confidence interval for ``tau^2`` (metafor ``confint.rma.uni``, ``type="QP"``).

    The bounds solve ``Q(tau2) = chi2_{k-p; 1-alpha/2}`` (lower) and ``chi2_{k-p; alpha/2}``
    (upper); a bound that falls below 0 is set to 0, above ``max(100, 10 tau2_hat)`` to that value.

    References
    ----------
    Viechtbauer, W. (2007). Confidence intervals for the amount of heterogeneity in
    meta-analysis. *Statistics in Medicine*, 26(1), 37-52.
    """
    yi = np.asarray(yi, float)
    vi = np.asarray(vi, float)
    X = np.asarray(X, float)
    k, p = X.shape
    alpha = 1 - level
    lo, hi = min(0.0, tau2_hat), max(100.0, 10 * tau2_hat)
    crit_u = stats.chi2.isf(alpha / 2, k - p)
    crit_l = stats.chi2.ppf(alpha / 2, k - p)
    q_lo, q_hi = generalized_q(lo, yi, vi, X), generalized_q(hi, yi, vi, X)

    def root(target):
        return optimize.brentq(
            lambda t: generalized_q(t, yi, vi, X) - target, lo, hi, xtol=ROOT_XTOL, rtol=4 * np.finfo(float).eps,
            maxiter=MAXITER,
        )

    if q_lo < crit_l:
        ub = lo
    elif q_hi > crit_l:
        ub = hi
    else:
        ub = root(crit_l)
    if q_hi > crit_u:
        lb = ub = hi
    elif q_lo < crit_u:
        lb = lo
    else:
        lb = root(crit_u)
    return float(lb), float(ub)


def profile_likelihood_ci(yi, vi, X, tau2_hat: float, reml: bool, level: float = 0.95) -> tuple[float, float]:
    """Profile-likelihood confidence interval for ``tau^2`` (metafor ``confint(..., type="PL")``).

    Bounds solve ``-2 (ll(tau2) - ll(tau2_hat)) = chi2_{1; level}`` with ``ll`` the ML or REML log
    likelihood, searched in ``[0, max(100, 10 tau2_hat)]``.

    References
    ----------
    Hardy, R. J., & Thompson, S. G. (1996). A likelihood approach to meta-analysis with random
    effects. *Statistics in Medicine*, 15(6), 619-629.
    """
    yi = np.asarray(yi, float)
    vi = np.asarray(vi, float)
    X = np.asarray(X, float)
    lo, hi = min(0.0, tau2_hat), max(100.0, 10 * tau2_hat)
    objective = stats.chi2.ppf(level, 1)
    ll_hat = log_likelihood(tau2_hat, yi, vi, X, reml)

    def f(t):
        return -2 * (log_likelihood(t, yi, vi, X, reml) - ll_hat) - objective

    kw = dict(xtol=ROOT_XTOL, rtol=4 * np.finfo(float).eps, maxiter=MAXITER)
    lb = lo if f(lo) < 0 else optimize.brentq(f, lo, tau2_hat, **kw)
    ub = hi if f(hi) < 0 else optimize.brentq(f, tau2_hat, hi, **kw)
    return float(lb), float(ub)
