"""Location-scale meta-regression: the twin of metafor 3.8-1's ``rma(yi, vi, mods=, scale=)``.

Model: ``y_i ~ N(x_i' beta, v_i + tau_i^2)`` with ``log tau_i^2 = z_i' alpha`` (log link). ``alpha``
maximises the ML or REML log likelihood with ``beta`` profiled out (``beta(alpha)`` by weighted
least squares with weights ``1 / (v_i + tau_i^2)``); the covariance of ``alpha`` is the inverse
Hessian of the negative log likelihood in ``alpha`` (metafor: ``numDeriv::hessian`` of
``.ll.rma.ls``; here its closed form); ``beta`` has the Wald covariance ``(X' W X)^-1``.

The likelihood, its gradient and its Hessian are written out here (no maintained Python library
fits location-scale meta-regressions); SciPy's ``trust-exact`` optimiser maximises it. With
``r = P y`` and ``P = W - W X (X' W X)^-1 X' W``, the derivatives of ``-2 ll`` in ``s_i = tau_i^2``
are ``g_i = P_ii - r_i^2`` (REML; ``w_i - r_i^2`` for ML) and
``H_ij = -P_ij^2 + 2 r_i P_ij r_j`` (REML; ``-w_i^2 delta_ij + 2 r_i P_ij r_j`` for ML); the chain
rule through ``s = exp(Z alpha)`` gives those in ``alpha``.

References
----------
Viechtbauer, W., & Lopez-Lopez, J. A. (2022). Location-scale models for meta-analysis. *Research
Synthesis Methods*, 13(6), 697-715. https://doi.org/10.1002/jrsm.1562
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *JSS*, 36(3)
(metafor 3.8-1, ``R/rma.uni.r`` location-scale branch, ``.ll.rma.ls``, ``anova.rma``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import optimize

from bayes_se.errors import ConvergenceWarning, DataError, DataWarning, SpecError
from bayes_se.formula import design_matrix, formula_columns
from bayes_se.frequentist.common import (coef_table, effect_inputs, format_coef_table, format_p, json_ready,
                                         prediction_frame)
from bayes_se.frequentist.dist import stats  # scipy.stats' functions without its import cost
from bayes_se.frequentist.tau2 import ResidualProjection

__all__ = ["rma_ls", "LocationScaleResult", "ls_loglik"]

_METHODS = ("REML", "ML")


# ---------------------------------------------------------------------- the likelihood
def ls_loglik(alpha, yi, vi, X, Z, reml: bool = True, derivatives: bool = False):
    """The (restricted) log likelihood of a location-scale model with ``beta`` profiled out.

    ``ll = -1/2 [ (k - p_reml) log 2 pi + sum log(v_i + tau_i^2) + y'Py ] (+ REML terms
    1/2 log|X'X| - 1/2 log|X'WX|)``, ``tau_i^2 = exp(z_i' alpha)`` (metafor's ``.ll.rma.ls`` with
    ``REMLf = TRUE``).

    Parameters
    ----------
    alpha : array_like, shape (q,)
    yi, vi : ndarray, shape (k,)
    X : ndarray, shape (k, p)
    Z : ndarray, shape (k, q)
    reml : bool
        REML (True) or ML.
    derivatives : bool
        Also return the gradient and Hessian of ``ll`` in ``alpha``.

    Returns
    -------
    float, or (float, ndarray (q,), ndarray (q, q))
    """
    alpha = np.asarray(alpha, float)
    k, p = X.shape
    with np.errstate(over="ignore"):
        s = np.exp(Z @ alpha)
    if not np.all(np.isfinite(s)):
        return (-math.inf, None, None) if derivatives else -math.inf
    w = 1.0 / (vi + s)
    XtWX = X.T @ (X * w[:, None])
    try:
        L = np.linalg.cholesky(XtWX)
    except np.linalg.LinAlgError:
        return (-math.inf, None, None) if derivatives else -math.inf
    beta = np.linalg.solve(XtWX, X.T @ (w * yi))
    resid = yi - X @ beta
    rss = float(np.sum(w * resid**2))
    if reml:
        ll = (-0.5 * (k - p) * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(X.T @ X)[1]
              - 0.5 * np.sum(np.log(vi + s)) - np.sum(np.log(np.diag(L))) - 0.5 * rss)
    else:
        ll = -0.5 * k * math.log(2 * math.pi) - 0.5 * np.sum(np.log(vi + s)) - 0.5 * rss
    if not derivatives:
        return float(ll)
    WX = X * w[:, None]
    P = np.diag(w) - WX @ np.linalg.solve(XtWX, WX.T)
    r = w * resid  # = P y
    if reml:
        g_s = np.diag(P) - r**2
        H_s = -P**2 + 2 * np.outer(r, r) * P
    else:
        g_s = w - r**2
        H_s = -np.diag(w**2) + 2 * np.outer(r, r) * P
    # -2 ll in alpha: gradient Z'(g s), Hessian Z'[(s s') o H_s + diag(g s)]Z; ll = -1/2 of it
    grad = -0.5 * Z.T @ (g_s * s)
    hess = -0.5 * (Z.T @ ((np.outer(s, s) * H_s) @ Z) + Z.T @ (Z * (g_s * s)[:, None]))
    return float(ll), grad, hess


def _standardising(Z: np.ndarray):
    """metafor's ``scaleZ``: with an intercept, non-0/1 columns centred and scaled for the optimiser.

    Returns ``(Zs, M)`` with ``Zs @ a_s = Z @ (M @ a_s)``, i.e. ``alpha = M a_s``.
    """
    q = Z.shape[1]
    M = np.eye(q)
    if q == 1 or not np.all(Z[:, 0] == 1.0):
        return Z, M
    Zs = Z.copy()
    for j in range(1, q):
        col = Z[:, j]
        if np.all((np.abs(col) < 1e-8) | (np.abs(col - 1) < 1e-8)):
            continue
        mean, sd = col.mean(), col.std(ddof=1)
        Zs[:, j] = (col - mean) / sd
        M[0, j] = -mean / sd
        M[j, j] = 1.0 / sd
    return Zs, M


def _maximise(yi, vi, X, Z, reml: bool):
    """Maximise :func:`ls_loglik` in ``alpha``; returns (alpha, ll, hessian of ll, converged)."""
    Zs, M = _standardising(Z)
    k = len(yi)
    # start: a constant tau^2 from the method-of-moments residual spread, spread over Zs
    w0 = 1.0 / vi
    beta0 = np.linalg.lstsq(X * np.sqrt(w0)[:, None], yi * np.sqrt(w0), rcond=None)[0]
    resid0 = yi - X @ beta0
    tau2_0 = max(float(np.mean(resid0**2 - vi)), 0.1 * float(np.mean(vi)))
    a0 = np.linalg.lstsq(Zs, np.full(k, math.log(tau2_0)), rcond=None)[0]

    def fun(a):
        ll, g, h = ls_loglik(a, yi, vi, X, Zs, reml, derivatives=True)
        if not math.isfinite(ll):
            return math.inf, np.zeros_like(a), np.eye(len(a))
        return -ll, -g, -h

    cache = {}

    def f(a):
        key = a.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = fun(a)
        return cache[key][0], cache[key][1]

    def h(a):
        key = a.tobytes()
        if key not in cache:
            cache.clear()
            cache[key] = fun(a)
        return cache[key][2]

    res = optimize.minimize(f, a0, jac=True, hess=h, method="trust-exact", options={"gtol": 1e-10, "maxiter": 1000})
    if not res.success:  # the trust region can stall in a flat likelihood: polish with BFGS from there
        res2 = optimize.minimize(f, res.x, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 5000})
        if res2.fun <= res.fun:
            res = res2
    alpha = M @ res.x
    ll, grad, hess = ls_loglik(alpha, yi, vi, X, Z, reml, derivatives=True)
    gnorm = float(np.max(np.abs(M.T @ grad))) if grad is not None else math.inf
    return alpha, ll, hess, bool(res.success) or gnorm < 1e-6


# ---------------------------------------------------------------------- the result
class LocationScaleResult:
    """A fitted location-scale model (metafor ``rma.ls`` object).

    Location part as :class:`~bayes_se.frequentist.rma.RMAResult`: ``beta``, ``se``, ``stat``,
    ``pval``, ``ci_lower``, ``ci_upper``, ``coef_names``, ``vcov``, ``QM``, ``QM_df``, ``QM_p``.
    Scale part (``log tau_i^2 = z_i' alpha``): ``alpha``, ``se_alpha``, ``stat_alpha``,
    ``pval_alpha``, ``ci_lower_alpha``, ``ci_upper_alpha``, ``scale_names``, ``vcov_alpha``,
    ``QS``, ``QS_df``, ``QS_p`` (metafor's Wald test of the scale coefficients), ``LRT``,
    ``LRT_df``, ``LRT_p`` (likelihood-ratio test against the same location model with a constant
    tau^2, metafor's ``anova(full, reduced)``), ``ll_reduced``. Also ``tau2`` (one per study),
    ``QE``, ``QE_df``, ``QE_p``, ``fit_stats``, ``k``, ``p``, ``q``, ``parms``, ``method``,
    ``test``, ``df``, ``yi``, ``vi``, ``X``, ``Z``, ``slab``, ``level``, ``omitted_rows``.
    """

    omitted_rows: tuple = ()

    def __init__(self, **fields):
        self.__dict__.update(fields)

    @property
    def tau(self) -> np.ndarray:
        """``tau_i``, one per study."""
        return np.sqrt(self.tau2)

    def coef_table(self) -> pd.DataFrame:
        """Location coefficients: columns ``estimate, se, stat, pval, ci_lower, ci_upper``."""
        return coef_table(self.coef_names, self.beta, self.se, self.stat, self.pval, self.ci_lower, self.ci_upper)

    def scale_coef_table(self) -> pd.DataFrame:
        """Scale coefficients ``alpha`` (log tau^2 scale): the columns of :meth:`coef_table`."""
        return coef_table(self.scale_names, self.alpha, self.se_alpha, self.stat_alpha, self.pval_alpha,
                          self.ci_lower_alpha, self.ci_upper_alpha)

    def predict(self, newmods=None, newscale=None) -> pd.DataFrame:
        """Fitted values with confidence and prediction intervals (metafor ``predict.rma.ls``).

        ``pred = x' beta`` and ``pred +/- crit sqrt(se^2 + exp(z' alpha))``.

        Parameters
        ----------
        newmods, newscale : array_like, optional
            Location and scale moderator values without intercept columns, one row each. By
            default each study's own ``x_i`` and ``z_i``.

        Returns
        -------
        pandas.DataFrame
            Columns ``pred, se, ci_lower, ci_upper, pi_lower, pi_upper``, plus ``tau2``.
        """
        Xn = self.X if newmods is None else self._new_rows(newmods, self.X, self.intercept, "newmods")
        Zn = self.Z if newscale is None else self._new_rows(newscale, self.Z, self.scale_intercept, "newscale")
        if len(Xn) != len(Zn):
            raise DataError(f"newmods has {len(Xn)} row(s) but newscale {len(Zn)}")
        pred = Xn @ self.beta
        se = np.sqrt(np.einsum("ij,jk,ik->i", Xn, self.vcov, Xn))
        tau2 = np.exp(Zn @ self.alpha)
        crit = stats.t.isf((1 - self.level) / 2, self.k - self.p) if self.test == "knha" else \
            stats.norm.isf((1 - self.level) / 2)
        out = prediction_frame(pred, se, crit, tau2, index=self.slab if newmods is None and newscale is None else None)
        out["tau2"] = tau2
        return out

    @staticmethod
    def _new_rows(values, M, has_int, what):
        m = np.atleast_2d(np.asarray(values, float))
        n = M.shape[1] - int(has_int)
        if m.shape[1] != n and m.shape[0] == n:
            m = m.T
        if m.shape[1] != n:
            raise DataError(f"{what} needs {n} column(s)")
        return np.column_stack([np.ones(len(m)), m]) if has_int else m

    def summary(self) -> str:
        """A printable table in the spirit of metafor's ``print.rma.ls``."""
        stat = "tval" if self.test == "knha" else "zval"
        lines = [f"Location-Scale Model (k = {self.k}; tau^2 estimator: {self.method})", "",
                 f"Test for Residual Heterogeneity: QE(df = {self.QE_df}) = {self.QE:.4f}, p {format_p(self.QE_p)}"]
        if self.p > int(self.intercept):
            if self.test == "knha":
                lines.append(f"Test of Location Coefficients: F(df1 = {self.QM_df[0]}, df2 = {self.QM_df[1]}) = "
                             f"{self.QM:.4f}, p {format_p(self.QM_p)}")
            else:
                lines.append(f"Test of Location Coefficients: QM(df = {self.QM_df[0]}) = {self.QM:.4f}, "
                             f"p {format_p(self.QM_p)}")
        lines += ["", "Model Results (Location):", ""] + format_coef_table(self.coef_table(), stat)
        lines.append("")
        if self.test == "knha":
            lines.append(f"Test of Scale Coefficients: F(df1 = {self.QS_df[0]}, df2 = {self.QS_df[1]}) = "
                         f"{self.QS:.4f}, p {format_p(self.QS_p)}")
        else:
            lines.append(f"Test of Scale Coefficients: QS(df = {self.QS_df[0]}) = {self.QS:.4f}, p {format_p(self.QS_p)}")
        if self.LRT is not None:
            lines.append(f"Likelihood-ratio test against a constant tau^2: LRT(df = {self.LRT_df}) = {self.LRT:.4f}, "
                         f"p {format_p(self.LRT_p)}")
        lines += ["", "Model Results (Scale, log tau^2):", ""] + format_coef_table(self.scale_coef_table(), stat)
        if self.coding:
            lines += [""] + list(self.coding)
        if self.omitted_rows:
            lines.append(f"rows left out for a missing moderator: {', '.join(map(str, self.omitted_rows))}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """JSON-ready summary: the keys shared by every frequentist result (``model`` is ``"rma_ls"``),
        ``k``, ``p``, ``q``, ``method``, ``test``, ``df``, ``estimate``/``se``/``ci_lower``/``ci_upper``
        of the first coefficient, ``Q``, ``Q_df``, ``Q_p``, ``fit_stats``, ``tau2`` (a list, one per
        study), ``scale_coefficients`` (``{name: {estimate, se, zval, pval, ci_lower, ci_upper}}``,
        metafor's ``zval.alpha`` naming), ``vcov_alpha``, ``QS``, ``QS_df``, ``QS_p``, ``LRT``,
        ``LRT_df``, ``LRT_p``, ``ll_reduced``, ``omitted_rows``."""
        sc = self.scale_coef_table().rename(columns={"stat": "zval"})
        out = {
            "model": "rma_ls",
            "level": self.level,
            "coefficients": self.coef_table(),
            "vcov": self.vcov,
            "QM": self.QM if self.p > int(self.intercept) else None,
            "QM_df": list(self.QM_df),
            "QM_p": self.QM_p if self.p > int(self.intercept) else None,
            "k": int(self.k), "p": int(self.p), "q": int(self.q),
            "method": self.method, "test": self.test, "df": self.df,
            "estimate": self.beta[0], "se": self.se[0], "ci_lower": self.ci_lower[0], "ci_upper": self.ci_upper[0],
            "Q": self.QE, "Q_df": self.QE_df, "Q_p": self.QE_p,
            "fit_stats": {m: self.fit_stats[m].to_dict() for m in self.fit_stats.columns},
            "tau2": self.tau2,
            "scale_coefficients": sc,
            "vcov_alpha": self.vcov_alpha,
            "QS": self.QS, "QS_df": list(self.QS_df), "QS_p": self.QS_p,
            "LRT": self.LRT, "LRT_df": self.LRT_df, "LRT_p": self.LRT_p, "ll_reduced": self.ll_reduced,
            "omitted_rows": [int(r) for r in self.omitted_rows],
        }
        return json_ready(out)


# ---------------------------------------------------------------------- inputs
def _matrix(M, k, names, what):
    M = np.asarray(M, float)
    if M.ndim == 1:
        M = M[:, None]
    if M.shape[0] != k:
        raise DataError(f"{what} has {M.shape[0]} rows but there are {k} effect sizes")
    bad = np.argwhere(~np.isfinite(M))
    if bad.size:
        raise DataError(f"missing or non-finite value in {what}", row=int(bad[0, 0]) + 1, column=f"{what}[{bad[0, 1] + 1}]")
    names = list(names) if names is not None else [f"{what.lower()}{j + 1}" for j in range(M.shape[1])]
    return np.column_stack([np.ones(k), M]) if M.size else np.ones((k, 1)), ["intercept"] + names


def _resolve(yi, vi, mods, scale, X, data, slab, na):
    yi, vi, frame, reserved, slab = effect_inputs(yi, vi, data, slab)
    k = len(yi)
    slab = [str(i + 1) for i in range(k)] if slab is None else [str(s) for s in slab]
    if len(slab) != k:
        raise DataError(f"{len(slab)} study labels for {k} effect sizes", column="study")
    if mods is not None and X is not None:
        raise SpecError("give either a moderator formula 'mods' or a design matrix 'X', not both", key="mods")
    if isinstance(mods, str) and _intercept_only(mods):
        mods = None
    if isinstance(scale, str) and _intercept_only(scale):
        scale = np.empty((k, 0))  # the intercept alone: a constant tau^2
    formulas = [f for f in (mods, scale if isinstance(scale, str) else None) if f is not None]
    omitted: list[int] = []
    keep = np.arange(k)
    if formulas:
        if frame is None:
            raise SpecError("a moderator formula needs a data frame ('data=' or an EffectData)",
                            key="mods" if mods is not None else "scale")
        frame = pd.DataFrame(frame).reset_index(drop=True)
        if len(frame) != k:
            raise DataError(f"the data frame has {len(frame)} rows but there are {k} effect sizes")
        if na not in ("omit", "error"):
            raise SpecError(f"na must be 'omit' or 'error', got {na!r}", key="na")
        cols = [c for f in formulas for c in formula_columns(f) if c in frame.columns]
        missing = frame[list(dict.fromkeys(cols))].isna().to_numpy().any(axis=1) if cols else np.zeros(k, bool)
        if missing.any():
            if na == "error":
                i = int(np.flatnonzero(missing)[0])
                col = next(c for c in cols if pd.isna(frame.at[i, c]))
                raise DataError("missing value in a moderator (na='omit', CLI --na omit, leaves such rows out)",
                                row=f"{i + 1} ('{slab[i]}')", column=col)
            keep = np.flatnonzero(~missing)
            if keep.size == 0:
                raise DataError("every row has a missing value in a moderator of 'mods' or 'scale'")
            omitted = [int(i) + 1 for i in np.flatnonzero(missing)]
            warnings.warn(f"{len(omitted)} row(s) with a missing moderator (of 'mods' or 'scale') left out of the "
                          f"model: {', '.join(f'{r} ({slab[r - 1]!r})' for r in omitted)}. Pass na='error' "
                          "(CLI: --na error) to refuse them instead", DataWarning, stacklevel=3)
            frame = frame.iloc[keep].reset_index(drop=True)
            yi, vi = yi[keep], vi[keep]
            slab = [slab[i] for i in keep]
    k = len(yi)
    coding: list[str] = []
    if mods is not None:
        d = design_matrix(frame, mods, na="error", labels=slab, reserved=reserved)
        Xm, xnames = d.X, list(d.names)
        coding += [f"location {c}" for c in d.coding]
    elif X is not None:
        Xm, xnames = _matrix(np.asarray(X, float)[keep], k, None, "X")
    else:
        Xm, xnames = np.ones((k, 1)), ["intercept"]
    if isinstance(scale, str):
        try:
            d = design_matrix(frame, scale, na="error", labels=slab, reserved=reserved)
        except SpecError as exc:
            raise SpecError(f"scale formula: {exc}", key="scale") from None
        Zm, znames = d.X, list(d.names)
        coding += [f"scale {c}" for c in d.coding]
    else:
        Zm, znames = _matrix(np.asarray(scale, float)[keep], k, None, "Z")
    if np.linalg.matrix_rank(Xm) < Xm.shape[1]:
        raise DataError("the location design matrix is not of full column rank")
    if np.linalg.matrix_rank(Zm) < Zm.shape[1]:
        raise DataError("the scale design matrix is not of full column rank")
    return yi, vi, Xm, xnames, Zm, znames, slab, coding, omitted


def _intercept_only(expr: str) -> bool:
    """``~ 1``, ``1`` or ``~``: the intercept alone (R's way of writing it)."""
    return expr.replace(" ", "") in ("~1", "1", "~", "")


def _has_const(M: np.ndarray) -> bool:
    """True when the constant vector lies in the column space of ``M``."""
    ones = np.ones(M.shape[0])
    coef = np.linalg.lstsq(M, ones, rcond=None)[0]
    return bool(np.allclose(M @ coef, ones, atol=1e-8))


# ---------------------------------------------------------------------- the fit
def rma_ls(
    yi,
    vi=None,
    *,
    mods: str | None = None,
    scale=None,
    X=None,
    data=None,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    slab=None,
    na: str = "omit",
) -> LocationScaleResult:
    """Fit a location-scale model exactly as metafor 3.8-1 ``rma(yi, vi, mods=, scale=)``.

    ``y_i ~ N(x_i' beta, v_i + tau_i^2)``, ``log tau_i^2 = z_i' alpha`` (Viechtbauer & Lopez-Lopez
    2022), by ML or REML. Also reached as ``rma(..., scale=...)``.

    Parameters
    ----------
    yi, vi : array_like or EffectData-like
        As :func:`bayes_se.frequentist.rma`.
    mods : str, optional
        Location formula (:func:`bayes_se.formula.design_matrix`).
    scale : str or array_like
        Scale formula (``"~ guided"``, ``"~ year"``) or a matrix of scale moderators (an intercept
        is added).
    X : array_like, optional
        Location moderators as a matrix (an intercept is added).
    data : pandas.DataFrame, optional
    method : {"REML", "ML"}
    test : {"z", "knha"}
        Wald z tests, or t/F tests (location df ``k - p``, scale df ``k - q``) with the
        Knapp-Hartung factor on the location covariance, as metafor's ``test="knha"``.
    level : float
    slab : sequence of str, optional
    na : {"omit", "error"}
        A row missing a variable of either formula: left out with a warning, or refused.

    Returns
    -------
    LocationScaleResult

    References
    ----------
    Viechtbauer, W., & Lopez-Lopez, J. A. (2022). Location-scale models for meta-analysis.
    *Research Synthesis Methods*, 13(6), 697-715.
    """
    method = str(method).upper()
    if method not in _METHODS:
        raise SpecError(f"location-scale models are fitted by ML or REML only (got {method!r})", key="method")
    test = str(test).lower()
    if test not in ("z", "knha"):
        raise SpecError(f"unknown test {test!r} (use 'z' or 'knha')", key="test")
    if not 0 < level < 1:
        raise SpecError(f"level must be between 0 and 1 (got {level})", key="level")
    if scale is None:
        raise SpecError("a location-scale model needs a 'scale' formula (e.g. '~ guided')", key="scale")
    yi, vi, Xm, xnames, Zm, znames, slab, coding, omitted = _resolve(yi, vi, mods, scale, X, data, slab, na)
    k, p = Xm.shape
    q = Zm.shape[1]
    if p + q > k:
        raise DataError(f"{p + q} parameters to estimate from {k} studies: too few studies for this model")
    reml = method == "REML"

    alpha, ll, hess, converged = _maximise(yi, vi, Xm, Zm, reml)
    if not converged:
        warnings.warn("the location-scale likelihood did not converge; treat the scale estimates with caution",
                      ConvergenceWarning, stacklevel=2)
    tau2 = np.exp(Zm @ alpha)
    if np.any(tau2 < 1e-8 * np.min(vi)):
        warnings.warn("some tau_i^2 are (almost) 0: a scale coefficient is drifting towards minus infinity; "
                      "its standard error is not trustworthy", ConvergenceWarning, stacklevel=2)
    try:
        va = np.linalg.inv(-hess)
        np.linalg.cholesky(-hess)
    except np.linalg.LinAlgError:
        warnings.warn("the Hessian of the scale coefficients is not invertible: no standard errors",
                      ConvergenceWarning, stacklevel=2)
        va = np.full((q, q), np.nan)
    se_alpha = np.sqrt(np.diag(va))

    # location part given tau_i^2
    w = 1.0 / (vi + tau2)
    XtWX = Xm.T @ (Xm * w[:, None])
    vb = np.linalg.inv(XtWX)
    beta = vb @ (Xm.T @ (w * yi))
    rss = float(np.sum(w * (yi - Xm @ beta) ** 2))
    s2w = 1.0
    if test == "knha":
        s2w = 0.0 if rss <= np.finfo(float).eps else rss / (k - p)
    vb = s2w * vb
    se = np.sqrt(np.diag(vb))
    int_x = xnames[0] == "intercept"
    int_z = znames[0] == "intercept"
    btt = np.arange(1, p) if (int_x and p > 1) else np.arange(p)
    att = np.arange(1, q) if (int_z and q > 1) else np.arange(q)
    QM = _wald(beta[btt], vb[np.ix_(btt, btt)])
    QS = _wald(alpha[att], va[np.ix_(att, att)])
    with np.errstate(divide="ignore", invalid="ignore"):
        stat, stat_alpha = beta / se, alpha / se_alpha
    if test == "knha":
        df = k - p
        QM, QS = QM / len(btt), QS / len(att)
        QM_df, QS_df = (len(btt), k - p), (len(att), k - q)
        QM_p = float(stats.f.sf(QM, *QM_df))
        QS_p = float(stats.f.sf(QS, *QS_df)) if k > q else math.nan
        pval = 2 * stats.t.sf(np.abs(stat), k - p)
        pval_alpha = 2 * stats.t.sf(np.abs(stat_alpha), k - q) if k > q else np.full(q, np.nan)
        crit = stats.t.isf((1 - level) / 2, k - p)
        crit_a = stats.t.isf((1 - level) / 2, k - q) if k > q else math.nan
    else:
        df = None
        QM_df, QS_df = (len(btt), None), (len(att), None)
        QM_p = float(stats.chi2.sf(QM, len(btt)))
        QS_p = float(stats.chi2.sf(QS, len(att)))
        pval = 2 * stats.norm.sf(np.abs(stat))
        pval_alpha = 2 * stats.norm.sf(np.abs(stat_alpha))
        crit = crit_a = stats.norm.isf((1 - level) / 2)

    # residual heterogeneity test (inverse-variance weights), as metafor
    ymc = yi - yi.mean()
    P_fe = ResidualProjection(1.0 / vi, Xm)
    QE = max(0.0, P_fe.quad(ymc))
    QE_p = float(stats.chi2.sf(QE, k - p))

    # fit statistics (metafor: parms = p + q)
    parms = p + q
    ll_ml = -0.5 * k * math.log(2 * math.pi) - 0.5 * np.sum(np.log(vi + tau2)) - 0.5 * rss
    ll_reml = (-0.5 * (k - p) * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(Xm.T @ Xm)[1]
               - 0.5 * np.sum(np.log(vi + tau2)) - 0.5 * np.linalg.slogdet(XtWX)[1] - 0.5 * rss)
    dev_ml = -2 * (ll_ml - np.sum(stats.norm.logpdf(yi, yi, np.sqrt(vi))))
    fit_stats = pd.DataFrame(
        {
            "ML": [ll_ml, dev_ml, -2 * ll_ml + 2 * parms, -2 * ll_ml + parms * math.log(k),
                   -2 * ll_ml + 2 * parms * max(k, parms + 2) / (max(k, parms + 2) - parms - 1)],
            "REML": [ll_reml, -2 * ll_reml, -2 * ll_reml + 2 * parms, -2 * ll_reml + parms * math.log(k - p),
                     -2 * ll_reml + 2 * parms * max(k - p, parms + 2) / (max(k - p, parms + 2) - parms - 1)],
        },
        index=["ll", "dev", "AIC", "BIC", "AICc"],
    )

    # likelihood-ratio test against the constant-tau^2 model (metafor anova(full, reduced))
    LRT = LRT_df = LRT_p = ll_reduced = None
    if q > 1 and _has_const(Zm):
        _, ll_reduced, _, _ = _maximise(yi, vi, Xm, np.ones((k, 1)), reml)
        LRT = max(0.0, 2 * (ll - ll_reduced))
        LRT_df = q - 1
        LRT_p = float(stats.chi2.sf(LRT, LRT_df))

    return LocationScaleResult(
        k=k, p=p, q=q, parms=parms, method=method, test=test, level=level, intercept=int_x, scale_intercept=int_z,
        beta=beta, se=se, stat=stat, pval=pval, ci_lower=beta - crit * se, ci_upper=beta + crit * se,
        coef_names=xnames, vcov=vb, df=df, s2w=s2w, QM=QM, QM_df=QM_df, QM_p=QM_p,
        alpha=alpha, se_alpha=se_alpha, stat_alpha=stat_alpha, pval_alpha=pval_alpha,
        ci_lower_alpha=alpha - crit_a * se_alpha, ci_upper_alpha=alpha + crit_a * se_alpha,
        scale_names=znames, vcov_alpha=va, QS=QS, QS_df=QS_df, QS_p=QS_p,
        LRT=LRT, LRT_df=LRT_df, LRT_p=LRT_p, ll_reduced=ll_reduced, loglik=ll, converged=converged,
        tau2=tau2, QE=QE, QE_df=k - p, QE_p=QE_p, fit_stats=fit_stats,
        yi=yi, vi=vi, X=Xm, Z=Zm, slab=slab, coding=coding, omitted_rows=tuple(omitted),
    )


def _wald(b, V) -> float:
    """``b' V^-1 b``; NaN where ``V`` is not positive definite (metafor's ``chol2inv(chol())`` fails)."""
    if not np.all(np.isfinite(V)):
        return math.nan
    try:
        L = np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        return math.nan
    z = np.linalg.solve(L, b)
    return float(z @ z)
