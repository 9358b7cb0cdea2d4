"""Leave-one-out diagnostics of a univariate meta-analysis (metafor ``leave1out.rma.uni``).

For each study ``i`` the model ``y_j = x_j' beta + u_j + e_j`` is refitted on the other ``k - 1``
studies with the same estimator and test (:meth:`RMAResult.refit`; this module imports nothing of
:mod:`bayes_se.frequentist.rma`, which imports it for ``RMAResult.leave1out``).

References
----------
Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and influence diagnostics for meta-analysis.
*Research Synthesis Methods*, 1(2), 112-125.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_se.errors import SpecError

__all__ = ["leave1out", "influence", "cumul", "INFLUENCE_COLUMNS", "CUMUL_COLUMNS"]


def leave1out(res) -> pd.DataFrame:
    """Refit ``res`` leaving out each study in turn.

    Parameters
    ----------
    res : RMAResult
        A model without moderators (as metafor, which refits the intercept-only model).

    Returns
    -------
    pandas.DataFrame
        Index: the left-out study; columns ``estimate``, ``se``, ``stat``, ``pval``, ``ci_lower``,
        ``ci_upper``, ``Q``, ``Q_p``, ``tau2``, ``I2``, ``H2``.

    References
    ----------
    Viechtbauer & Cheung (2010); metafor 3.8-1 ``R/leave1out.rma.uni.r``.
    """
    if not res.int_only:
        raise SpecError("leave-one-out is available for models without moderators", key="mods")
    rows = []
    for i in range(res.k):
        fit = res.refit(np.arange(res.k) != i)
        rows.append({
            "estimate": fit.beta[0], "se": fit.se[0], "stat": fit.stat[0], "pval": fit.pval[0],
            "ci_lower": fit.ci_lower[0], "ci_upper": fit.ci_upper[0], "Q": fit.QE, "Q_p": fit.QE_p,
            "tau2": fit.tau2, "I2": fit.I2, "H2": fit.H2,
        })
    return pd.DataFrame(rows, index=pd.Index(res.slab, name="study"))


#: The columns of :func:`influence` (metafor's ``inf`` element, with ``.`` written ``_``).
INFLUENCE_COLUMNS = ("rstudent", "dffits", "cook_d", "cov_r", "tau2_del", "QE_del", "hat", "weight")
#: The columns of :func:`cumul` (metafor's ``cumul.rma.uni`` list, ``zval``/``tval`` as ``stat``).
CUMUL_COLUMNS = ("estimate", "se", "stat", "pval", "ci_lower", "ci_upper", "Q", "Q_p", "tau2", "I2", "H2")


def _hat(res) -> np.ndarray:
    """Diagonal of ``H = X (X'WX)^-1 X'W``, ``W = diag(1 / (v_i + tau^2))``, capped at 1 as metafor."""
    w = 1.0 / (res.vi + res.tau2)
    XtWX_inv = np.linalg.inv(res.X.T @ (res.X * w[:, None]))
    h = w * np.einsum("ij,jk,ik->i", res.X, XtWX_inv, res.X)
    return np.where(h > 1 - 10 * np.finfo(float).eps, 1.0, h)


def influence(res) -> pd.DataFrame:
    """Outlier and influence diagnostics of each study (metafor 3.8-1 ``influence.rma.uni``).

    For study ``i``, the model refitted without it (same estimator, test and design) gives
    ``beta_(-i)``, ``tau2_(-i)``, ``QE_(-i)`` and ``s2w_(-i)`` (the Knapp-Hartung factor, 1 for z):

    * ``rstudent``: ``(y_i - x_i' beta_(-i)) / sqrt(s2w_(-i) (v_i + tau2_(-i)) + x_i' V_(-i) x_i)``;
    * ``dffits``: ``x_i' (beta - beta_(-i)) / sqrt(s2w_(-i) h_i (tau2_(-i) + v_i))``;
    * ``cook_d``: ``(beta - beta_(-i))' V^-1 (beta - beta_(-i))`` (all ``p`` coefficients);
    * ``cov_r``: ``det V_(-i) / det V``;
    * ``tau2_del``, ``QE_del``: tau^2 and the Q statistic without study i;
    * ``hat``: ``h_i``, the diagonal of ``X (X'WX)^-1 X'W``; ``weight``: the weight in percent;
    * ``dfbetas[NAME]``: ``(beta_j - beta_(-i),j) / sqrt(s2w_(-i) [(X'W_(-i)X)^-1]_jj)`` with
      ``W_(-i) = diag(1 / (v + tau2_(-i)))`` over all k studies;
    * ``inf``: metafor's flag, ``|dffits| > 3 sqrt(p / (k - p))`` or ``P(chi2_p <= cook_d) > 0.5``
      or ``hat > 3 p / k`` or any ``|dfbetas| > 1``.

    A refit that fails (too few studies left, a design without full rank) leaves its row NaN and
    the study unflagged, as metafor's.

    Parameters
    ----------
    res : RMAResult

    Returns
    -------
    pandas.DataFrame
        Index: study label; columns :data:`INFLUENCE_COLUMNS`, ``inf`` (bool) and one
        ``dfbetas[NAME]`` per coefficient.

    References
    ----------
    Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and influence diagnostics for
    meta-analysis. *Research Synthesis Methods*, 1(2), 112-125; metafor 3.8-1
    ``R/influence.rma.uni.r``.
    """
    from scipy import stats

    from bayes_se.errors import BayesSEError

    k, p = res.k, res.p
    if k < 2:
        raise SpecError("influence diagnostics need at least 2 studies", key="k")
    X, yi, vi, beta = res.X, res.yi, res.vi, res.beta
    hat = _hat(res)
    nan = np.full(k, np.nan)
    tau2_del, QE_del, delpred, vdelpred, s2w_del = nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy()
    dffits, cook_d, cov_r = nan.copy(), nan.copy(), nan.copy()
    dfbs = np.full((k, p), np.nan)
    vb_inv = np.linalg.inv(res.vcov)
    det_vb = np.linalg.det(res.vcov)
    for i in range(k):
        try:
            fit = res.refit(np.arange(k) != i, r2=False)
        except BayesSEError:  # metafor: try-error, or coefficients that cannot be estimated
            continue
        tau2_del[i], QE_del[i], s2w_del[i] = fit.tau2, fit.QE, fit.s2w
        delpred[i] = X[i] @ fit.beta
        vdelpred[i] = X[i] @ fit.vcov @ X[i]
        dffits[i] = (X[i] @ beta - delpred[i]) / np.sqrt(fit.s2w * hat[i] * (fit.tau2 + vi[i]))
        w_del = 1.0 / (vi + fit.tau2)
        vb_del = np.linalg.inv(X.T @ (X * w_del[:, None]))
        dfb = beta - fit.beta
        dfbs[i] = dfb / np.sqrt(fit.s2w * np.diag(vb_del))
        cook_d[i] = dfb @ vb_inv @ dfb
        cov_r[i] = np.linalg.det(fit.vcov) / det_vb
    resid = yi - delpred
    resid[np.abs(resid) < 100 * np.finfo(float).eps] = 0.0
    rstudent = resid / np.sqrt(vi * s2w_del + vdelpred + tau2_del * s2w_del)
    with np.errstate(invalid="ignore"):
        cut = 3 * np.sqrt(p / (k - p)) if k > p else np.inf
        infl = ((np.abs(dffits) > cut) | (stats.chi2.cdf(cook_d, p) > 0.5)
                | (hat > 3 * p / k) | np.any(np.abs(dfbs) > 1, axis=1))
    out = pd.DataFrame({"rstudent": rstudent, "dffits": dffits, "cook_d": cook_d, "cov_r": cov_r,
                        "tau2_del": tau2_del, "QE_del": QE_del, "hat": hat, "weight": np.asarray(res.weights, float),
                        "inf": infl}, index=pd.Index(res.slab, name="study"))
    for j, name in enumerate(res.coef_names):
        out[f"dfbetas[{name}]"] = dfbs[:, j]
    return out


def cumul(res, order=None) -> pd.DataFrame:
    """Cumulative meta-analysis (metafor 3.8-1 ``cumul.rma.uni``): the model refitted to the first
    1, 2, ..., k studies in the given order, with the same estimator, test and level.

    With one study the fit is ``y_1`` itself: se ``sqrt(v_1)``, z test, ``tau^2 = 0``, ``Q = 0``,
    ``I^2 = 0``, ``H^2 = 1`` (as metafor).

    Parameters
    ----------
    res : RMAResult
        A model without moderators (metafor refuses cumul for meta-regressions).
    order : array_like or None
        Values to sort the studies by (ascending, ties kept in data order, as R's ``order``), one
        per study, e.g. the publication year; None keeps the data order. (As in metafor, these are
        the sort keys, not a permutation.)

    Returns
    -------
    pandas.DataFrame
        Index: the study added at each step; columns ``k`` (studies so far) and
        :data:`CUMUL_COLUMNS`.

    References
    ----------
    Lau, J., et al. (1992). Cumulative meta-analysis of therapeutic trials for myocardial
    infarction. *NEJM*, 327(4), 248-254; metafor 3.8-1 ``R/cumul.rma.uni.r``.
    """
    from scipy import stats

    from bayes_se.errors import BayesSEError, DataError

    if not res.int_only:
        raise SpecError("cumulative meta-analysis is available only for models without moderators "
                        "(as metafor's cumul)", key="mods")
    k = res.k
    if order is None:
        idx = np.arange(k)
    else:
        keys = np.asarray(order)
        if keys.ndim != 1 or keys.shape[0] != k:
            raise DataError(f"'order' has {keys.size} values but the model has {k} studies", column="order")
        if keys.dtype.kind in "fc" and np.isnan(keys.astype(float)).any():
            raise DataError("'order' has missing values", column="order",
                            row=int(np.flatnonzero(np.isnan(keys.astype(float)))[0]) + 1)
        idx = np.argsort(keys, kind="stable")
    rows = []
    for n in range(1, k + 1):
        sub = idx[:n]
        if n == 1:
            i = sub[0]
            se = float(np.sqrt(res.vi[i]))
            z = res.yi[i] / se
            crit = stats.norm.isf((1 - res.level) / 2)
            rows.append({"estimate": res.yi[i], "se": se, "stat": z, "pval": 2 * stats.norm.sf(abs(z)),
                         "ci_lower": res.yi[i] - crit * se, "ci_upper": res.yi[i] + crit * se,
                         "Q": 0.0, "Q_p": 1.0, "tau2": 0.0, "I2": 0.0, "H2": 1.0})
            continue
        try:
            fit = res.refit(sub, r2=False)
        except BayesSEError:
            rows.append(dict.fromkeys(CUMUL_COLUMNS, np.nan))
            continue
        rows.append({"estimate": fit.beta[0], "se": fit.se[0], "stat": fit.stat[0], "pval": fit.pval[0],
                     "ci_lower": fit.ci_lower[0], "ci_upper": fit.ci_upper[0], "Q": fit.QE, "Q_p": fit.QE_p,
                     "tau2": fit.tau2, "I2": fit.I2, "H2": fit.H2})
    out = pd.DataFrame(rows, columns=list(CUMUL_COLUMNS), index=pd.Index(np.asarray(res.slab)[idx], name="study"))
    out.insert(0, "k", np.arange(1, k + 1))
    return out
