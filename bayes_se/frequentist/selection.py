"""Selection models for publication bias: the twin of metafor 3.8-1 ``selmodel``.

Model: ``y_i ~ N(x_i' beta, v_i + tau^2)`` observed with probability proportional to a weight
``w(p_i; delta)`` of the study's one- (or two-) sided p-value ``p_i``, so that

    f(y_i) = w(p_i) phi(y_i; x_i' beta, v_i + tau^2) / A_i,   A_i = int w(p(y)) phi(y; x_i' beta, v_i + tau^2) dy,

fitted by maximum likelihood. Six weight functions (metafor's types): ``stepfun`` (Vevea & Hedges
1995: a constant ``delta_j`` on each p-value interval, ``delta_1 = 1``), ``beta`` (Citkowicz & Vevea
2017: ``p^(delta_1 - 1) (1 - p)^(delta_2 - 1)``), ``halfnorm`` (``exp(-delta p^2)``), ``negexp``
(``exp(-delta p)``), ``logistic`` (``2 exp(-delta p) / (1 + exp(-delta p))``) and ``power``
(``(1 - p)^delta``) (Preston, Ashby & Smyth 2004); the last four are 1 up to ``steps[0]`` and scaled
to be continuous there.

Why a hand-written likelihood: no Python library implements these selection models (there is no
port of metafor's ``selmodel`` or of ``weightr``), so the likelihood above is written out here and
maximised with SciPy's BFGS, with metafor's parametrisation and start values. ``A_i`` is in closed
form for ``stepfun`` and a fixed composite Gauss-Legendre rule for the continuous types (metafor
uses R's ``integrate``; the rule here is smooth in the parameters, so the optimiser and the
Hessian see no quadrature noise). Standard errors come from the Hessian of the log likelihood in the
untransformed parameters ``(beta, tau^2, delta)`` computed as metafor does, with ``numDeriv``'s
Richardson extrapolation (``d = 0.1``, ``r = 6``), replicated step for step.

References
----------
Vevea, J. L., & Hedges, L. V. (1995). A general linear model for estimating effect size in the
presence of publication bias. *Psychometrika*, 60(3), 419-435.
Citkowicz, M., & Vevea, J. L. (2017). A parsimonious weight function for modeling publication bias.
*Psychological Methods*, 22(1), 28-41.
Preston, C., Ashby, D., & Smyth, R. (2004). Adjusting for publication bias: Modelling the selection
process. *Journal of Evaluation in Clinical Practice*, 10(2), 313-322.
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *JSS*, 36(3)
(metafor 3.8-1 ``R/selmodel.rma.uni.r``, ``R/misc.func.hidden.selmodel.r``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist.common import coef_table, format_coef_table, format_p, json_ready

__all__ = ["selmodel", "SelmodelResult", "SELMODEL_TYPES"]

#: The selection models metafor 3.8-1 documents (``type=``).
SELMODEL_TYPES = ("beta", "halfnorm", "negexp", "logistic", "power", "stepfun")
_ALTERNATIVES = ("greater", "less", "two.sided")
_EPS = np.finfo(float).eps
_BOUND_WARNING = ("One or more 'delta' estimates are (almost) equal to their lower or upper bound. "
                  "Treat results with caution (or consider adjusting 'delta.min' and/or 'delta.max').")
_FEW_PVALUES = 3  # bayes_se's own advisory (not metafor's): an interval with fewer p-values than this

# Gauss-Legendre nodes on [-1, 1] for the continuous weight functions' normalising integrals
_GL_X, _GL_W = np.polynomial.legendre.leggauss(16)
_PANELS = 2  # panels per segment between break points
_TRANSITION = (-6, -3, 3, 6)  # break points (in units of sqrt(v_i)) where p-values change fastest


# --------------------------------------------------------------------------------------------- result
@dataclass
class SelmodelResult:
    """A fitted selection model (metafor ``rma.uni.selmodel``).

    ``estimate``, ``se``, ``zval``, ``pval``, ``ci_lower``, ``ci_upper`` describe the first
    coefficient (the adjusted pooled effect in a model without moderators); ``coefficients`` holds
    all of them. ``delta`` are the selection parameters (for ``stepfun``: ``delta[0] = 1`` fixed,
    its SE NaN), ``LRT`` the likelihood-ratio test of ``H0: delta = H0 value`` (no selection)
    against the unadjusted ML model with ``LRTdf`` degrees of freedom, ``LRT_tau2`` the test of
    ``tau^2 = 0`` within the selection model. ``warnings`` lists metafor's warnings (verbatim) and
    bayes_se's advisories (prefixed ``"bayes_se: "``).
    """

    type: str
    alternative: str
    steps: tuple | None
    k: int
    level: float
    estimate: float
    se: float
    zval: float
    pval: float
    ci_lower: float
    ci_upper: float
    coefficients: pd.DataFrame
    vcov: np.ndarray
    tau2: float
    se_tau2: float
    tau2_ci_lower: float
    tau2_ci_upper: float
    tau2_fixed: bool
    delta: np.ndarray
    se_delta: np.ndarray
    zval_delta: np.ndarray
    pval_delta: np.ndarray
    delta_ci_lower: np.ndarray
    delta_ci_upper: np.ndarray
    delta_fixed: np.ndarray
    LRT: float
    LRTdf: int
    LRTp: float
    LRT_tau2: float
    LRTp_tau2: float
    ll: float
    ll0: float
    QM: float
    QM_df: int
    QM_p: float
    ptable: pd.DataFrame | None
    prec: str | None
    warnings: tuple = ()
    hessian: np.ndarray | None = field(default=None, repr=False)

    @property
    def int_only(self) -> bool:
        """True for the model without moderators."""
        return len(self.coefficients) == 1

    def summary(self) -> str:
        """A printable table in the spirit of metafor's ``print.rma.uni.selmodel``."""
        kind = "Random-Effects" if not self.tau2_fixed else "Equal-Effects"
        lines = [f"{kind} Model with {self.type} selection (k = {self.k}; alternative: {self.alternative})", ""]
        lines.append(f"log likelihood: {self.ll:.4f} (unadjusted model: {self.ll0:.4f})")
        if not self.tau2_fixed:
            lines.append(f"tau^2 (estimated amount of {'total' if self.int_only else 'residual'} heterogeneity): "
                         f"{self.tau2:.4f} (SE = {self.se_tau2:.4f})")
            lines.append(f"tau (square root of estimated tau^2 value): {math.sqrt(self.tau2):.4f}")
            if math.isfinite(self.LRT_tau2):
                lines.append(f"Test for Heterogeneity: LRT(df = 1) = {self.LRT_tau2:.4f}, p {format_p(self.LRTp_tau2)}")
        if not self.int_only:
            lines.append(f"Test of Moderators: QM(df = {self.QM_df}) = {self.QM:.4f}, p {format_p(self.QM_p)}")
        lines.append("")
        lines.append("Model Results:")
        lines += format_coef_table(self.coefficients, "zval")
        lines.append("")
        lines.append(f"Test for Selection Model Parameters: LRT(df = {self.LRTdf}) = {self.LRT:.4f}, "
                     f"p {format_p(self.LRTp)}")
        lines.append("")
        lines.append("Selection Model Results:")
        names = self.delta_names()
        head = f"{'':<{max(len(n) for n in names)}}"
        if self.ptable is not None:
            head += f"{'k':>5}"
        lines.append(head + "".join(f"{h:>10}" for h in ("estimate", "se", "zval", "pval", "ci_lower", "ci_upper")))
        for j, name in enumerate(names):
            row = f"{name:<{len(head) - (5 if self.ptable is not None else 0)}}"
            if self.ptable is not None:
                row += f"{int(self.ptable['k'].iloc[j]):>5}"
            if self.delta_fixed[j]:
                row += f"{self.delta[j]:>10.4f}" + f"{'---':>10}" * 5
            else:
                row += "".join(f"{v:>10.4f}" for v in (self.delta[j], self.se_delta[j], self.zval_delta[j]))
                row += f"{format_p(self.pval_delta[j], bare=True):>10}"
                row += "".join(f"{v:>10.4f}" for v in (self.delta_ci_lower[j], self.delta_ci_upper[j]))
            lines.append(row)
        for w in self.warnings:
            lines.append(f"warning: {w}")
        return "\n".join(lines)

    def delta_names(self) -> list[str]:
        """Row names of the selection parameters: the p-value intervals for a step function."""
        if self.ptable is not None and self.type == "stepfun":
            return list(self.ptable.index)
        if len(self.delta) == 1:
            return ["delta"]
        return [f"delta.{j + 1}" for j in range(len(self.delta))]

    def __repr__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """JSON-ready summary (``None`` where undefined): ``model``, ``type``, ``alternative``,
        ``steps``, ``k``, ``level``, ``estimate``, ``se``, ``zval``, ``pval``, ``ci_lower``,
        ``ci_upper``, ``coefficients``, ``tau2``, ``se_tau2``, ``tau2_ci_lower``, ``tau2_ci_upper``,
        ``delta``, ``se_delta``, ``zval_delta``, ``pval_delta``, ``delta_ci_lower``,
        ``delta_ci_upper``, ``LRT``, ``LRTdf``, ``LRTp``, ``LRT_tau2``, ``LRTp_tau2``, ``ll``,
        ``ll0``, ``QM``, ``QM_df``, ``QM_p``, ``ptable`` (interval -> number of p-values), ``warnings``.
        """
        out = {
            "model": "selmodel",
            "type": self.type,
            "alternative": self.alternative,
            "steps": None if self.steps is None else list(self.steps),
            "k": int(self.k),
            "level": self.level,
            "estimate": self.estimate,
            "se": self.se,
            "zval": self.zval,
            "pval": self.pval,
            "ci_lower": self.ci_lower,
            "ci_upper": self.ci_upper,
            "coefficients": self.coefficients,
            "tau2": self.tau2,
            "se_tau2": self.se_tau2,
            "tau2_ci_lower": self.tau2_ci_lower,
            "tau2_ci_upper": self.tau2_ci_upper,
            "delta": self.delta,
            "se_delta": self.se_delta,
            "zval_delta": self.zval_delta,
            "pval_delta": self.pval_delta,
            "delta_ci_lower": self.delta_ci_lower,
            "delta_ci_upper": self.delta_ci_upper,
            "LRT": self.LRT,
            "LRTdf": int(self.LRTdf),
            "LRTp": self.LRTp,
            "LRT_tau2": self.LRT_tau2,
            "LRTp_tau2": self.LRTp_tau2,
            "ll": self.ll,
            "ll0": self.ll0,
            "QM": self.QM,
            "QM_df": int(self.QM_df),
            "QM_p": self.QM_p,
            "ptable": None if self.ptable is None else {str(i): int(n) for i, n in self.ptable["k"].items()},
            "warnings": list(self.warnings),
        }
        return json_ready(out)


# --------------------------------------------------------------------------------------------- likelihood
def _pvalues(y, sd, alternative):
    """One- or two-sided p-value of ``y`` with standard error ``sd`` (metafor ``.selmodel.pval``)."""
    z = y / sd
    if alternative == "two.sided":
        return 2.0 * special.ndtr(-np.abs(z))
    if alternative == "less":
        return special.ndtr(z)
    return special.ndtr(-z)


def _y_at_p(p, sd, alternative):
    """The effect sizes whose p-value is ``p`` (two values for a two-sided test)."""
    if alternative == "two.sided":
        q = -special.ndtri(p / 2.0) * sd
        return [q, -q]
    if alternative == "less":
        return [special.ndtri(p) * sd]
    return [-special.ndtri(p) * sd]


class _Likelihood:
    """The selection model's log likelihood (metafor ``.selmodel.ll.cont`` / ``.selmodel.ll.stepfun``)."""

    def __init__(self, type, yi, vi, X, preci, pvals, pgrp, steps, alternative, pval_min):
        self.type, self.yi, self.vi, self.X = type, yi, vi, X
        self.preci, self.pvals, self.pgrp, self.steps = preci, pvals, pgrp, steps
        self.alternative, self.pval_min = alternative, pval_min
        self.sdv = np.sqrt(vi)
        if type == "stepfun":
            # the effect size at each step's p-value, per study (one or two tails)
            self._cut = [_y_at_p(s, self.sdv, alternative) for s in steps[:-1]]
        else:
            s0 = steps[0] if steps is not None else 0.0
            self.s0 = s0
            pts = [np.zeros_like(vi)] + [c * self.sdv for c in _TRANSITION]
            kinks = [p for p in ({pval_min, 1 - pval_min} if pval_min > 0 else set()) | ({s0} if 0 < s0 < 1 else set())]
            for p in sorted(kinks):
                pts += _y_at_p(p, self.sdv, alternative)
            self._breaks = np.column_stack(pts)

    # weight function ------------------------------------------------------------------------------
    def log_weight(self, p, delta, preci):
        """``log w(p)`` for the continuous types (``p`` already clamped to ``[pval_min, 1 - pval_min]``)."""
        t = self.type
        if t == "beta":
            return (delta[0] - 1) * np.log(p) + (delta[1] - 1) * np.log1p(-p)
        s0 = self.s0
        a = delta[0] * preci
        if t == "halfnorm":
            lw = -a * (p**2 - s0**2)
        elif t == "negexp":
            lw = -a * (p - s0)
        elif t == "logistic":
            lw = (math.log(2.0) - a * p - np.log1p(np.exp(-a * p))) - (math.log(2.0) - a * s0 - np.log1p(np.exp(-a * s0)))
        else:  # power
            lw = a * (np.log1p(-p) - math.log1p(-s0))
        return np.where(p <= s0, 0.0, lw)

    def _norm_const_continuous(self, yhat, tau2, delta):
        S = np.sqrt(self.vi + tau2)
        lo, hi = yhat - 12.0 * S, yhat + 12.0 * S
        pts = np.clip(self._breaks, lo[:, None], hi[:, None])
        pts = np.sort(np.column_stack([lo, pts, hi]), axis=1)
        a, b = pts[:, :-1], pts[:, 1:]
        edges = a[..., None] + (b - a)[..., None] * np.linspace(0.0, 1.0, _PANELS + 1)
        pa, pb = edges[..., :-1], edges[..., 1:]
        half = 0.5 * (pb - pa)
        y = (0.5 * (pa + pb))[..., None] + half[..., None] * _GL_X
        wts = half[..., None] * _GL_W
        shape = (-1, 1, 1, 1)
        p = np.clip(_pvalues(y, self.sdv.reshape(shape), self.alternative), self.pval_min, 1 - self.pval_min)
        lw = self.log_weight(p, delta, self.preci.reshape(shape))
        Sr, mr = S.reshape(shape), yhat.reshape(shape)
        dens = np.exp(-0.5 * ((y - mr) / Sr) ** 2 + lw) / (Sr * math.sqrt(2 * math.pi))
        return np.sum(dens * wts, axis=(1, 2, 3))

    def _norm_const_stepfun(self, yhat, tau2, delta):
        S = np.sqrt(self.vi + tau2)
        alt = self.alternative
        N = len(self.steps)

        def upper(j):  # P(p <= steps[j]) under N(yhat, S^2)
            c = self._cut[j]
            if alt == "greater":
                return special.ndtr((yhat - c[0]) / S)
            if alt == "less":
                return special.ndtr((c[0] - yhat) / S)
            return special.ndtr((yhat - c[0]) / S) + special.ndtr((c[1] - yhat) / S)

        def last(j):  # P(p > steps[j])
            c = self._cut[j]
            if alt == "greater":
                return special.ndtr((c[0] - yhat) / S)
            if alt == "less":
                return special.ndtr((yhat - c[0]) / S)
            return special.ndtr((c[0] - yhat) / S) - special.ndtr((c[1] - yhat) / S)

        A = upper(0)
        for j in range(1, N):
            mass = (upper(j) - upper(j - 1)) if j < N - 1 else last(j - 1)
            A = A + delta[j] / self.preci * mass
        return A

    def loglik(self, beta, tau2, delta) -> float:
        """Log likelihood at ``beta`` (on the columns of ``X``), ``tau2`` and ``delta``."""
        tau2 = 0.0 if tau2 < _EPS * 10 else tau2
        yhat = self.X @ beta
        S2 = self.vi + tau2
        lnorm = -0.5 * np.log(2 * np.pi * S2) - 0.5 * (self.yi - yhat) ** 2 / S2
        if self.type == "stepfun":
            A = self._norm_const_stepfun(yhat, tau2, delta)
            lw = np.log(delta[self.pgrp] / self.preci)
        else:
            A = self._norm_const_continuous(yhat, tau2, delta)
            lw = self.log_weight(self.pvals, delta, self.preci)
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.sum(lw + lnorm - np.log(A)))


# --------------------------------------------------------------------------------------------- numerics
def _hessian_numderiv(f, x, d=0.1, r=6, eps=1e-4):
    """The Hessian of ``f`` at ``x`` exactly as R's ``numDeriv::hessian`` (method "Richardson",
    ``method.args = list(d = d, r = r)``, ``v = 2``): central differences with steps
    ``|d x| + eps (|x| < zero.tol)`` halved ``r`` times, then Richardson extrapolation."""
    x = np.asarray(x, float)
    n = len(x)
    zero_tol = math.sqrt(_EPS / 7e-7)
    h0 = np.abs(d * x) + eps * (np.abs(x) < zero_tol)
    f0 = f(x)

    def extrapolate(a):
        a = list(a)
        for m in range(1, r):
            for kk in range(r - m):
                a[kk] = (a[kk + 1] * 4.0**m - a[kk]) / (4.0**m - 1)
        return a[0]

    hdiag = np.zeros(n)
    for i in range(n):
        h = h0.copy()
        approx = []
        for _ in range(r):
            e = np.zeros(n)
            e[i] = h[i]
            approx.append((f(x + e) - 2 * f0 + f(x - e)) / h[i] ** 2)
            h = h / 2
        hdiag[i] = extrapolate(approx)
    H = np.diag(hdiag)
    for i in range(n):
        for j in range(i):
            h = h0.copy()
            approx = []
            for _ in range(r):
                e = np.zeros(n)
                e[i], e[j] = h[i], h[j]
                approx.append((f(x + e) - 2 * f0 + f(x - e) - hdiag[i] * h[i] ** 2 - hdiag[j] * h[j] ** 2)
                              / (2 * h[i] * h[j]))
                h = h / 2
            H[i, j] = H[j, i] = extrapolate(approx)
    return H


def _central_gradient(f, x, rel=1e-6):
    g = np.empty_like(x)
    for j in range(len(x)):
        h = rel * max(1.0, abs(x[j]))
        e = np.zeros_like(x)
        e[j] = h
        g[j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def _maximise(nll, x0):
    """Minimise ``nll`` from ``x0``: BFGS (central-difference gradient), restarted once from its
    end point so that the curvature estimate is fresh, then Nelder-Mead to polish."""
    grad = lambda x: _central_gradient(nll, x)  # noqa: E731
    best = optimize.minimize(nll, x0, jac=grad, method="BFGS", options={"gtol": 1e-9, "maxiter": 2000})
    again = optimize.minimize(nll, best.x, jac=grad, method="BFGS", options={"gtol": 1e-9, "maxiter": 2000})
    if again.fun <= best.fun:
        best = again
    if not np.isfinite(best.fun):
        raise DataError("the selection model's likelihood is not finite at the optimum")
    return best


def _is_dummy(col, eps=1e-8):
    return bool(np.all((np.abs(col) < eps) | (np.abs(col - 1) < eps)))


# --------------------------------------------------------------------------------------------- main
def _check_steps(type, steps):
    if steps is None:
        return None
    arr = np.atleast_1d(np.asarray(steps, float))
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise SpecError("steps must be numbers in (0, 1]", key="steps")
    if np.any(arr <= 0) or np.any(arr > 1):
        raise SpecError(f"steps must lie in (0, 1] (got {', '.join(f'{s:g}' for s in arr)})", key="steps")
    if np.any(np.diff(arr) <= 0):
        raise SpecError(f"steps must be strictly increasing (got {', '.join(f'{s:g}' for s in arr)})", key="steps")
    if arr[-1] != 1:
        arr = np.append(arr, 1.0)
    if type == "stepfun" and len(arr) < 2:
        raise SpecError("a step function needs at least one step below 1", key="steps")
    return arr


def selmodel(
    res,
    type: str = "stepfun",
    steps=None,
    alternative: str = "greater",
    prec: str | None = None,
    ni=None,
    delta=None,
    delta_min=None,
    delta_max=None,
) -> SelmodelResult:
    """Fit a selection model to a fitted ``rma`` model, as metafor 3.8-1 ``selmodel``.

    ``f(y_i) = w(p_i; delta) phi(y_i; x_i' beta, v_i + tau^2) / A_i`` by maximum likelihood (the
    input model is refitted with ``method="ML"`` first unless it is ML or equal-effects, whose
    ``tau^2 = 0`` is kept); see the module docstring for the six weight functions.

    Parameters
    ----------
    res : RMAResult
        The unadjusted model (with or without moderators).
    type : {"stepfun", "beta", "halfnorm", "negexp", "logistic", "power"}, default "stepfun"
    steps : sequence of float, optional
        Strictly increasing values in (0, 1]; 1 is appended if missing. ``stepfun``: the interval
        bounds of the step function (required; e.g. ``0.025`` for the three-parameter selection
        model). ``halfnorm``/``negexp``/``logistic``/``power``: one value below which ``w = 1``
        (default 0). Ignored, with metafor's warning, for ``beta``.
    alternative : {"greater", "less", "two.sided"}, default "greater"
        The p-values the selection acts on (one-sided in the direction of ``greater`` effects).
    prec : {None, "sei", "vi", "ninv", "sqrtninv"}
        metafor's precision measure (scaled by its maximum), multiplying ``delta`` in the
        continuous types (for ``ninv``/``sqrtninv`` give the sample sizes ``ni``).
    delta : sequence of float, optional
        Fixed values for the selection parameters (NaN leaves one free).
    delta_min, delta_max : sequence of float, optional
        Bounds of ``delta`` (metafor's ``control$delta.min``/``delta.max``; defaults as metafor).

    Returns
    -------
    SelmodelResult

    Raises
    ------
    SpecError
        Unknown ``type``/``alternative``/``prec``, bad ``steps``.
    DataError
        A p-value interval without studies (as metafor), too few studies.

    References
    ----------
    Vevea & Hedges (1995); Citkowicz & Vevea (2017); Preston et al. (2004); metafor 3.8-1 ``selmodel``.
    """
    from bayes_se.frequentist.rma import rma

    if type not in SELMODEL_TYPES:
        raise SpecError(f"unknown selection model type {type!r} (use one of {', '.join(SELMODEL_TYPES)})", key="type")
    if alternative not in _ALTERNATIVES:
        raise SpecError(f"unknown alternative {alternative!r} (use one of {', '.join(_ALTERNATIVES)})",
                        key="alternative")
    from bayes_se.frequentist.rma import RMAResult

    if not isinstance(res, RMAResult):  # a location-scale fit has no single tau2 to adjust
        raise SpecError("selmodel needs a fitted rma model (bayes_se.frequentist.rma)", key="res")
    warns: list[str] = []
    steps_arr = _check_steps(type, steps)
    stepsspec = steps_arr is not None

    # refit with ML (metafor: unless the model is ML or equal-effects)
    fixed_tau2 = res.method == "EE"
    if res.method not in ("ML", "EE"):
        res = rma(res.yi, res.vi, X=res.X, coef_names=list(res.coef_names), intercept=False, method="ML",
                  level=res.level, slab=list(res.slab), r2=False, threshold=res.threshold)
    yi, vi, X = np.asarray(res.yi, float), np.asarray(res.vi, float), np.asarray(res.X, float)
    k, p = X.shape

    # precision measure
    if prec is not None:
        if prec not in ("sei", "vi", "ninv", "sqrtninv"):
            raise SpecError(f"unknown prec {prec!r} (use 'sei', 'vi', 'ninv' or 'sqrtninv')", key="prec")
        if prec in ("ninv", "sqrtninv"):
            if ni is None:
                raise SpecError(f"prec={prec!r} needs the sample sizes 'ni'", key="ni")
            ni_arr = np.asarray(ni, float)
            if ni_arr.shape != (k,) or not np.all(np.isfinite(ni_arr)) or np.any(ni_arr <= 0):
                raise DataError(f"ni must hold {k} positive sample sizes", column="ni")
            preci = 1 / ni_arr if prec == "ninv" else 1 / np.sqrt(ni_arr)
        else:
            preci = np.sqrt(vi) if prec == "sei" else vi.copy()
        preci = preci / preci.max()
    else:
        preci = np.ones(k)

    # the type's parameters (metafor's defaults)
    if type == "beta":
        if stepsspec:
            warns.append("Argument 'steps' ignored (not applicable to this type of selection model).")
        if prec is not None:
            warns.append("Argument 'prec' ignored (not applicable to this type of selection model).")
            preci = np.ones(k)
        n_delta, d_lb, d_ub, d_init = 2, (0.0, 0.0), (math.inf, math.inf), (1.0, 1.0)
        d_min, d_max, h0_delta, pval_min = [1e-5, 1e-5], [100.0, 100.0], (1.0, 1.0), 1e-5
        steps_used, stepsspec = None, False
    elif type == "stepfun":
        if not stepsspec:
            raise SpecError("a step function needs 'steps' (e.g. steps=[0.025])", key="steps")
        if prec is not None:
            warns.append("Adding a precision measure to this selection model is undocumented and experimental.")
        n_delta = len(steps_arr)
        d_lb, d_ub = (0.0,) * n_delta, (math.inf,) * n_delta
        d_init, d_min, d_max = (1.0,) * n_delta, [0.0] * n_delta, [100.0] * n_delta
        h0_delta, pval_min, steps_used = (1.0,) * n_delta, 0.0, steps_arr
    else:
        if stepsspec and len(steps_arr) != 2:
            raise SpecError("only a single value of 'steps' for this type of selection model", key="steps")
        steps_used = steps_arr if stepsspec else np.array([0.0])
        n_delta, d_lb, d_ub, d_init = 1, (0.0,), (math.inf,), (1.0,)
        d_min, d_max, h0_delta = [0.0], [100.0], (0.0,)
        pval_min = 1e-5 if type == "power" else 0.0

    # fixed / free selection parameters
    dval = np.full(n_delta, np.nan)
    if delta is not None:
        dv = np.atleast_1d(np.asarray(delta, float))
        if dv.size == 1:
            dv = np.repeat(dv, n_delta)
        if dv.size != n_delta:
            raise SpecError(f"delta needs {n_delta} value(s) for type {type!r}", key="delta")
        if np.any(dv[np.isfinite(dv)] < 0):
            raise SpecError("fixed delta values must be >= 0", key="delta")
        dval = dv
    if type == "stepfun" and np.isnan(dval[0]):
        dval[0] = 1.0
    if delta_min is not None:
        d_min = list(np.broadcast_to(np.asarray(delta_min, float), (n_delta,)))
    if delta_max is not None:
        d_max = list(np.broadcast_to(np.asarray(delta_max, float), (n_delta,)))
    d_min = np.array([dval[j] - _EPS**0.2 if np.isfinite(dval[j]) and d_min[j] > dval[j] else d_min[j]
                      for j in range(n_delta)])
    d_max = np.array([dval[j] + _EPS**0.2 if np.isfinite(dval[j]) and d_max[j] < dval[j] else d_max[j]
                      for j in range(n_delta)])
    if np.any(d_max < d_min):
        raise SpecError("delta_max must be >= delta_min", key="delta_max")
    free_d = np.isnan(dval)
    n_free_d = int(free_d.sum())
    if k < p + (0 if fixed_tau2 else 1) + n_free_d:
        raise DataError(f"Number of studies (k={k}) is too small to fit the selection model.")

    # p-values, their intervals
    pvals = np.clip(_pvalues(yi, np.sqrt(vi), alternative), pval_min, 1 - pval_min)
    ptable = None
    pgrp = None
    if stepsspec:
        pgrp = np.searchsorted(steps_used, pvals, side="left")
        counts = np.bincount(pgrp, minlength=len(steps_used))
        lefts = [0.0] + list(steps_used[:-1])
        labels = [f"{lo:g} < p <= {hi:g}" for lo, hi in zip(lefts, steps_used)]
        ptable = pd.DataFrame({"k": counts}, index=pd.Index(labels, name="interval"))
        empty = [labels[j] for j in range(len(counts)) if counts[j] == 0 and (type != "stepfun" or free_d[j])]
        if empty:
            raise DataError("One or more intervals do not contain any observed p-values: " + "; ".join(empty))
        few = [f"{labels[j]} ({counts[j]})" for j in range(len(counts)) if 0 < counts[j] < _FEW_PVALUES]
        if few and type == "stepfun":
            warns.append("bayes_se: few p-values in interval(s) " + "; ".join(few)
                         + ": their selection parameters are poorly determined.")

    # moderators rescaled as metafor does (scaleX): non-dummy columns standardised
    scale = (not res.int_only) and res.intercept
    Xs, mX = X, np.eye(p)
    if scale:
        is_d = np.array([_is_dummy(X[:, j]) for j in range(p)])
        meanX, sdX = X[:, 1:].mean(axis=0), X[:, 1:].std(axis=0, ddof=1)
        mX = np.zeros((p, p))
        mX[0, 0] = 1.0
        mX[0, 1:] = -np.where(is_d[1:], 0.0, meanX / sdX)
        mX[1:, 1:] = np.diag(np.where(is_d[1:], 1.0, 1.0 / sdX))
        Xs = X.copy()
        Xs[:, ~is_d] = (X[:, ~is_d] - X[:, ~is_d].mean(axis=0)) / X[:, ~is_d].std(axis=0, ddof=1)
    beta_init = np.linalg.solve(mX, np.asarray(res.beta, float))

    lik = _Likelihood(type, yi, vi, Xs, preci, pvals, pgrp, steps_used, alternative, pval_min)

    def to_delta(xd):
        out = dval.copy()
        out[free_d] = d_min[free_d] + (d_max[free_d] - d_min[free_d]) / (1 + np.exp(-xd))
        return out

    def unpack(theta, tau2_free):
        beta = theta[:p]
        if tau2_free:
            tau2, xd = math.exp(min(theta[p], 700.0)), theta[p + 1:]
        else:
            tau2, xd = None, theta[p:]
        return beta, tau2, to_delta(xd)

    def make_nll(tau2_value):
        tau2_free = tau2_value is None

        def nll(theta):
            beta, tau2, dl = unpack(theta, tau2_free)
            val = -lik.loglik(beta, tau2 if tau2_free else tau2_value, dl)
            return val if np.isfinite(val) else 1e300
        return nll

    d_init = np.asarray(d_init, float)
    outside = (d_init <= d_min) | (d_init >= d_max)  # metafor would fail here (NaN start); start mid-range
    d_init = np.where(outside, 0.5 * (d_min + d_max), d_init)
    xd_init = np.log((d_init[free_d] - d_min[free_d]) / (d_max[free_d] - d_init[free_d]))
    tau2_init = math.log(res.tau2 + 0.001)
    theta0 = np.concatenate([beta_init, [tau2_init] if not fixed_tau2 else [], xd_init])
    opt = _maximise(make_nll(0.0 if fixed_tau2 else None), theta0)
    beta_s, tau2, dl = unpack(opt.x, not fixed_tau2)
    tau2 = 0.0 if fixed_tau2 else (0.0 if tau2 < _EPS * 10 else tau2)
    ll = lik.loglik(beta_s, tau2, dl)
    if np.any(dl <= d_min + _EPS**0.25) or np.any(dl >= d_max - 100 * _EPS**0.25):
        warns.append(_BOUND_WARNING)

    # Hessian of -ll in (beta, tau2, delta) at the optimum (metafor: numDeriv, untransformed)
    def nll_plain(x):
        beta = x[:p]
        if fixed_tau2:
            t2, dfree = 0.0, x[p:]
        else:
            t2, dfree = x[p], x[p + 1:]
        d = dval.copy()
        d[free_d] = dfree
        return -lik.loglik(beta, t2, d)

    xhat = np.concatenate([beta_s, [] if fixed_tau2 else [tau2], dl[free_d]])
    n_par = len(xhat)
    vb_s = np.full((p, p), np.nan)
    se_tau2 = math.nan
    vd = np.full((n_delta, n_delta), np.nan)
    H = _hessian_numderiv(nll_plain, xhat)
    try:
        if not np.all(np.isfinite(H)):
            raise np.linalg.LinAlgError
        L = np.linalg.cholesky(H)
        iH = np.linalg.inv(L).T @ np.linalg.inv(L)
        if not np.all(np.isfinite(iH)):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        warns.append("Error when trying to invert Hessian.")
        iH = None
    if iH is not None:
        vb_s = iH[:p, :p]
        if not fixed_tau2:
            se_tau2 = math.sqrt(iH[p, p])
        off = p + (0 if fixed_tau2 else 1)
        idx = np.flatnonzero(free_d)
        vd[np.ix_(idx, idx)] = iH[off:n_par, off:n_par]

    beta = mX @ beta_s
    vb = mX @ vb_s @ mX.T
    se = np.sqrt(np.diag(vb))
    zval = beta / se
    pval = 2 * stats.norm.sf(np.abs(zval))
    crit = stats.norm.isf((1 - res.level) / 2)
    ci_lower, ci_upper = beta - crit * se, beta + crit * se
    btt = np.arange(1, p) if (res.intercept and not res.int_only) else np.arange(p)
    QM = math.nan
    try:
        Lq = np.linalg.cholesky(vb[np.ix_(btt, btt)])
        zq = np.linalg.solve(Lq, beta[btt])
        QM = float(zq @ zq)
    except np.linalg.LinAlgError:
        pass
    QM_p = float(stats.chi2.sf(QM, len(btt))) if math.isfinite(QM) else math.nan

    se_delta = np.sqrt(np.diag(vd))
    with np.errstate(invalid="ignore", divide="ignore"):
        zval_delta = (dl - np.asarray(h0_delta)) / se_delta
    pval_delta = 2 * stats.norm.sf(np.abs(zval_delta))
    dci_lo = np.maximum(dl - crit * se_delta, np.asarray(d_lb))
    dci_hi = np.minimum(dl + crit * se_delta, np.asarray(d_ub))
    t2_lo = max(0.0, tau2 - crit * se_tau2) if math.isfinite(se_tau2) else math.nan
    t2_hi = tau2 + crit * se_tau2

    # heterogeneity test within the selection model (tau^2 = 0)
    LRT_tau2 = LRTp_tau2 = math.nan
    if not fixed_tau2:
        theta0_h = np.concatenate([beta_init, xd_init])
        opt0 = _maximise(make_nll(0.0), theta0_h)
        b0, _, d0 = unpack(opt0.x, False)
        ll_h0 = lik.loglik(b0, 0.0, d0)
        LRT_tau2 = max(0.0, -2 * (ll_h0 - ll))
        LRTp_tau2 = float(stats.chi2.sf(LRT_tau2, 1))

    ll0 = float(res.fit_stats.loc["ll", "ML"])
    LRT = max(0.0, -2 * (ll0 - ll))
    LRTdf = n_free_d
    LRTp = float(stats.chi2.sf(LRT, LRTdf)) if LRTdf > 0 else math.nan

    table = coef_table(res.coef_names, beta, se, zval, pval, ci_lower, ci_upper)
    return SelmodelResult(
        type=type, alternative=alternative,
        steps=None if steps_used is None or not stepsspec else tuple(float(s) for s in steps_used),
        k=k, level=res.level,
        estimate=float(beta[0]), se=float(se[0]), zval=float(zval[0]), pval=float(pval[0]),
        ci_lower=float(ci_lower[0]), ci_upper=float(ci_upper[0]), coefficients=table, vcov=vb,
        tau2=float(tau2), se_tau2=float(se_tau2), tau2_ci_lower=t2_lo, tau2_ci_upper=float(t2_hi),
        tau2_fixed=fixed_tau2, delta=dl, se_delta=se_delta, zval_delta=zval_delta, pval_delta=pval_delta,
        delta_ci_lower=dci_lo, delta_ci_upper=dci_hi, delta_fixed=~free_d,
        LRT=float(LRT), LRTdf=LRTdf, LRTp=LRTp, LRT_tau2=float(LRT_tau2), LRTp_tau2=float(LRTp_tau2),
        ll=float(ll), ll0=ll0, QM=QM, QM_df=len(btt), QM_p=QM_p, ptable=ptable, prec=prec,
        warnings=tuple(warns), hessian=H,
    )
