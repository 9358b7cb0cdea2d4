"""Funnel-plot asymmetry tests: Egger's regression test and Begg's rank correlation test.

References
----------
Egger, M., Davey Smith, G., Schneider, M., & Minder, C. (1997). Bias in meta-analysis detected by
a simple, graphical test. *BMJ*, 315(7109), 629-634.
Sterne, J. A. C., & Egger, M. (2005). Regression methods to detect publication and other bias in
meta-analysis. In *Publication Bias in Meta-Analysis* (pp. 99-110). Wiley.
Begg, C. B., & Mazumdar, M. (1994). Operating characteristics of a rank correlation test for
publication bias. *Biometrics*, 50(4), 1088-1101.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from bayes_se.errors import SpecError

__all__ = ["regtest", "RegtestResult", "ranktest", "RanktestResult"]


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
                  method=res.method, test=res.test, level=res.level, r2=False)
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
        pval = float(2 * stats.t.sf(abs(stat), df))
        stat_type = "t"
        crit = stats.t.isf((1 - res.level) / 2, df)
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
    out = stats.kendalltau(yi_star, vi, method="asymptotic" if ties else "exact")
    return RanktestResult(float(out.statistic), float(out.pvalue))
