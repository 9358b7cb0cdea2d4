"""Funnel-plot asymmetry tests: Egger's regression test and Begg's rank correlation test.

References
----------
Egger, M., Davey Smith, G., Schneider, M., & Minder, C. (1997). Bias in meta-analysis detected by
a simple, graphical test. *BMJ*, 315(7109), 629-634.
Sterne, J. A. C., & Egger, M. (2005). Regression methods to detect publication and other bias in
meta-analysis. In *Publication Bias in Meta-Analysis* (pp. 99-110). Wiley.
Begg, C. B., & Mazumdar, M. (1994). Operating characteristics of a rank correlation test for
publication bias. *Biometrics*, 50(4), 1088-1101.
Duval, S., & Tweedie, R. (2000). Trim and fill: A simple funnel-plot-based method of testing and
adjusting for publication bias in meta-analysis. *Biometrics*, 56(2), 455-463.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special

from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist.dist import stats as dist  # scipy.stats' t without its import cost

__all__ = ["regtest", "RegtestResult", "ranktest", "RanktestResult", "trimfill", "TrimfillResult"]


@dataclass(frozen=True)
class RegtestResult:
    """Egger-type regression test: statistic and p-value of the ``sei`` slope, and the limit estimate
    (the intercept: the effect expected for a study with ``sei -> 0``) with its confidence interval."""

    model: str
    predictor: str
    method: str
    stat: float
    stat_type: str
    df: int | None
    pval: float
    limit_estimate: float
    limit_ci_lower: float
    limit_ci_upper: float


@dataclass(frozen=True)
class RanktestResult:
    """Begg's test: Kendall's tau between standardized effects and sampling variances."""

    tau: float
    pval: float


def regtest(res, model: str = "rma") -> RegtestResult:
    """Egger's regression test for funnel-plot asymmetry (metafor ``regtest``, predictor ``sei``).

    ``model="rma"`` (metafor's default): ``y_i = b0 + b1 sqrt(v_i) + u_i + e_i`` fitted with the
    same tau^2 estimator and test as ``res``; ``model="lm"``: the classic Egger test, weighted least
    squares of ``y_i`` on ``sqrt(v_i)`` with weights ``1/v_i`` and a multiplicative dispersion
    (t test with k - 2 df). H0: ``b1 = 0``.

    Parameters
    ----------
    res : RMAResult
        A fitted model; its moderators (if any) are kept and ``sei`` is appended.
    model : {"rma", "lm"}

    Returns
    -------
    RegtestResult
        The limit estimate is reported for models without moderators (NaN otherwise).

    References
    ----------
    Egger et al. (1997); Sterne & Egger (2005); metafor 3.8-1 ``R/regtest.r``.
    """
    from bayes_se.frequentist.rma import rma

    sei = np.sqrt(res.vi)
    X = np.column_stack([res.X, sei])
    p = res.p
    if model == "rma":
        fit = rma(res.yi, res.vi, X=X, coef_names=list(res.coef_names) + ["sei"], intercept=False,
                  method=res.method, test=res.test, level=res.level, r2=False, threshold=res.threshold)
        stat, pval, df = float(fit.stat[p]), float(fit.pval[p]), fit.df
        stat_type = "t" if res.test == "knha" else "z"
        est, lo, hi = fit.beta[0], fit.ci_lower[0], fit.ci_upper[0]
        method = res.method
    elif model == "lm":
        w = 1.0 / res.vi
        sw = np.sqrt(w)
        Xw = X * sw[:, None]
        beta, *_ = np.linalg.lstsq(Xw, res.yi * sw, rcond=None)
        df = res.k - X.shape[1]
        sigma2 = np.sum(w * (res.yi - X @ beta) ** 2) / df
        cov = sigma2 * np.linalg.inv(Xw.T @ Xw)
        se = np.sqrt(np.diag(cov))
        stat = float(beta[p] / se[p])
        pval = float(2 * dist.t.sf(abs(stat), df))
        stat_type = "t"
        crit = dist.t.isf((1 - res.level) / 2, df)
        est, lo, hi = beta[0], beta[0] - crit * se[0], beta[0] + crit * se[0]
        method = "lm (multiplicative dispersion)"
    else:
        raise SpecError(f"unknown regtest model {model!r} (use 'rma' or 'lm')", key="model")
    if not res.int_only:
        est = lo = hi = float("nan")
    return RegtestResult(model, "sei", method, stat, stat_type, df, pval, float(est), float(lo), float(hi))


def ranktest(res) -> RanktestResult:
    """Begg & Mazumdar's rank correlation test (metafor ``ranktest``).

    Kendall's tau between ``(y_i - theta_EE) / sqrt(v_i - 1/sum(w))`` and ``v_i``, with
    ``theta_EE`` the inverse-variance weighted mean; the exact null distribution when there are no
    ties (as R's ``cor.test(..., exact=TRUE)``), otherwise the normal approximation with the tie
    correction (tau-b).

    Parameters
    ----------
    res : RMAResult or object with ``yi`` and ``vi``

    Returns
    -------
    RanktestResult

    References
    ----------
    Begg & Mazumdar (1994); metafor 3.8-1 ``R/ranktest.r``.
    """
    yi = np.asarray(res.yi, float)
    vi = np.asarray(res.vi, float)
    wi = 1.0 / vi
    theta = np.sum(wi * yi) / wi.sum()
    vi_star = vi - 1.0 / wi.sum()
    yi_star = (yi - theta) / np.sqrt(vi_star)
    ties = len(np.unique(yi_star)) < len(yi_star) or len(np.unique(vi)) < len(vi)
    from scipy import stats  # deferred: scipy.stats costs ~0.5 s to import

    out = stats.kendalltau(yi_star, vi, method="asymptotic" if ties else "exact")
    return RanktestResult(float(out.statistic), float(out.pvalue))


@dataclass(frozen=True)
class TrimfillResult:
    """Trim-and-fill: the estimated number of missing studies ``k0`` (with its SE and, for R0, a
    p-value), the side on which they were imputed, the imputed effects and variances, and ``fit``,
    the model refitted to observed plus imputed studies (the original model when ``k0 = 0``)."""

    estimator: str
    side: str
    k0: int
    se_k0: float
    p_k0: float
    filled_yi: Any
    filled_vi: Any
    fit: Any


def trimfill(
    res, estimator: str = "L0", side: str | None = None, maxiter: int = 100, threshold: float | None = None
) -> TrimfillResult:
    """Duval & Tweedie's trim-and-fill method (metafor ``trimfill``).

    Iteratively trims the ``k0`` most extreme studies on one side of the funnel, re-estimates the
    centre from the rest, then imputes the ``k0`` mirror images ``2 theta - y_i`` and refits.
    ``k0`` by the L0 estimator ``(4 S_r - k(k+1)) / (2k - 1)`` or the R0 estimator
    ``gamma* - 1`` (the length of the rightmost run of positive signed ranks).

    Parameters
    ----------
    res : RMAResult
        A model without moderators.
    estimator : {"L0", "R0"}
    side : {"left", "right"}, optional
        Where studies are missing; by default the side opposite to the sign of the Egger slope
        (metafor's rule: ``"right"`` when the slope of ``sei`` is negative).
    maxiter : int
    threshold : float, optional
        Fisher-scoring threshold of the refits (default: that of ``res``). metafor's ``trimfill``
        refits with metafor's default control (1e-5) whatever ``res`` used.

    Returns
    -------
    TrimfillResult

    References
    ----------
    Duval & Tweedie (2000); metafor 3.8-1 ``R/trimfill.rma.uni.r``.
    """
    from bayes_se.frequentist.rma import rma

    threshold = res.threshold if threshold is None else threshold
    if not res.int_only:
        raise SpecError("trim-and-fill is available for models without moderators", key="mods")
    if estimator not in ("L0", "R0"):
        raise SpecError(f"unknown trim-and-fill estimator {estimator!r} (use 'L0' or 'R0')", key="estimator")
    if side is None:
        slope = rma(res.yi, res.vi, X=np.sqrt(res.vi)[:, None], method=res.method, r2=False,
                    threshold=threshold).beta[1]
        side = "right" if slope < 0 else "left"
    elif side not in ("left", "right"):
        raise SpecError(f"side must be 'left' or 'right' (got {side!r})", key="side")
    sign = -1.0 if side == "right" else 1.0
    flipped = sign * res.yi
    order = np.argsort(flipped, kind="stable")
    yi, vi = flipped[order], res.vi[order]
    k = len(yi)
    k0, k0_prev, se_k0 = 0, -1, 0.0
    for _ in range(maxiter):
        if k0 == k0_prev:
            break
        k0_prev = k0
        beta = rma(yi[: k - k0], vi[: k - k0], method=res.method, r2=False, threshold=threshold).beta[0]
        centred = yi - beta
        from scipy.stats import rankdata  # deferred: scipy.stats costs ~0.5 s to import

        signed_ranks = np.sign(centred) * rankdata(np.abs(centred), method="ordinal")
        if estimator == "R0":
            negative = signed_ranks[signed_ranks < 0]
            k0 = (k - np.max(-negative)) - 1
            se_k0 = np.sqrt(2 * max(0, k0) + 2)
        else:
            s_r = np.sum(signed_ranks[signed_ranks > 0])
            k0 = (4 * s_r - k * (k + 1)) / (2 * k - 1)
            var_sr = (k * (k + 1) * (2 * k + 1) + 10 * k0**3 + 27 * k0**2 + 17 * k0
                      - 18 * k * k0**2 - 18 * k * k0 + 6 * k**2 * k0) / 24
            se_k0 = 4 * np.sqrt(var_sr) / (2 * k - 1)
        # R's round() halves to even, as numpy's
        k0 = int(max(0, np.round(k0)))
        se_k0 = max(0.0, float(se_k0))
    else:
        raise DataError(f"trim-and-fill did not converge in {maxiter} iterations")
    if estimator == "R0":
        m = np.arange(-1, k0)
        p_k0 = float(1 - np.sum(special.comb(m + 1, m + 1) * 0.5 ** (m + 2)))
    else:
        p_k0 = float("nan")
    if k0 == 0:
        return TrimfillResult(estimator, side, 0, se_k0, p_k0, np.array([]), np.array([]), res)
    filled_yi = sign * (2 * beta - yi[k - k0:])
    filled_vi = vi[k - k0:]
    fit = rma(np.concatenate([res.yi, filled_yi]), np.concatenate([res.vi, filled_vi]), method=res.method,
              level=res.level, slab=list(res.slab) + [f"Filled {i + 1}" for i in range(k0)], threshold=threshold)
    return TrimfillResult(estimator, side, k0, se_k0, p_k0, filled_yi, filled_vi, fit)
