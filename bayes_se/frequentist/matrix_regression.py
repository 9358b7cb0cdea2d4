"""Regression from a (pooled) correlation matrix, metafor's ``matreg``.

Model: standardized coefficients ``b = R_xx^-1 r_xy`` with ``Var(b) = A V A'``, ``A = d b / d vech(R)``
(multivariate delta method), where ``V`` is the covariance of the lower-triangle correlations of
``R`` in column-major order (e.g. the ``vcov`` of an ``rma_mv`` fit of those correlations); Wald z
tests and intervals.

References
----------
Becker, B. J. (1992). Using results from replicated studies to estimate linear models. *Journal of
Educational Statistics*, 17, 341-362.
Viechtbauer, W. (2010). *J. Stat. Softw.*, 36(3) (metafor 3.8-1 ``matreg``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import linalg, stats

from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist.common import coef_table, format_coef_table, format_p, json_ready, prediction_frame

__all__ = ["matreg", "MatregResult"]


@dataclass(eq=False)
class MatregResult:
    """Standardized regression coefficients from a correlation matrix, with delta-method errors.

    Attributes
    ----------
    coef_names : list of str
        The predictors ``x``.
    beta, se, stat, pval, ci_lower, ci_upper : ndarray
        Coefficients with Wald z tests and intervals.
    vcov : ndarray
        ``A V A'``.
    QM, QM_p : float
        Wald test of all coefficients (chi-square, ``len(x)`` df).
    R2 : float
        ``b' r_xy``, the share of the outcome's variance explained.
    level : float
    outcome : str
        The outcome ``y``.
    """

    coef_names: list
    beta: np.ndarray
    se: np.ndarray
    stat: np.ndarray
    pval: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    vcov: np.ndarray
    QM: float
    QM_p: float
    R2: float
    level: float
    outcome: str | None = None

    @property
    def QM_df(self) -> tuple:
        """Degrees of freedom of the omnibus test, ``(len(x), None)`` (chi-square)."""
        return (len(self.coef_names), None)

    def coef_table(self) -> pd.DataFrame:
        """Coefficients: index ``coef_names``; columns ``estimate, se, stat, pval, ci_lower, ci_upper``."""
        return coef_table(self.coef_names, self.beta, self.se, self.stat, self.pval, self.ci_lower,
                          self.ci_upper)

    def predict(self, newx) -> pd.DataFrame:
        """Predicted standardized outcome ``x' b`` with its delta-method Wald interval.

        Parameters
        ----------
        newx : array_like, shape (m, len(coef_names)) or (len(coef_names),)
            Values of the predictors (standardized units).

        Returns
        -------
        pandas.DataFrame
            Columns ``pred, se, ci_lower, ci_upper, pi_lower, pi_upper``, ``se = sqrt(x' Var(b) x)``;
            ``pi_lower``/``pi_upper`` are NaN (the model has no between-study variance of ``b``).
        """
        x = np.atleast_2d(np.asarray(newx, dtype=float))
        if x.shape[1] != len(self.coef_names):
            raise DataError(f"newx needs {len(self.coef_names)} columns ({', '.join(self.coef_names)}), "
                            f"got shape {x.shape}", column="newx")
        pred = x @ self.beta
        se = np.sqrt(np.einsum("ij,jk,ik->i", x, self.vcov, x))
        return prediction_frame(pred, se, float(stats.norm.isf((1 - self.level) / 2)), None)

    def to_dict(self) -> dict:
        """JSON-ready summary: the keys every frequentist result shares (``model``, ``level``,
        ``coefficients``, ``vcov``, ``QM``, ``QM_df``, ``QM_p``), then ``outcome`` and ``R2``."""
        return json_ready({"model": "matreg", "level": self.level, "coefficients": self.coef_table(),
                           "vcov": self.vcov, "QM": self.QM, "QM_df": list(self.QM_df), "QM_p": self.QM_p,
                           "outcome": self.outcome, "R2": self.R2})

    def summary(self) -> str:
        """A text report: the omnibus test and the coefficient table (as metafor prints ``matreg``)."""
        lines = [f"Regression from a correlation matrix (outcome: {self.outcome}; R^2 = {self.R2:.4f})", "",
                 f"Test of Moderators: QM(df = {self.QM_df[0]}) = {self.QM:.4f}, p-val {format_p(self.QM_p)}",
                 ""]
        lines += format_coef_table(self.coef_table(), "zval")
        return "\n".join(lines)


def _index(which, names, p, key):
    if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
        if not 0 <= which < p:
            raise SpecError(f"index {which} is outside 0..{p - 1}", key=key)
        return int(which)
    if names is None or which not in names:
        raise SpecError(f"unknown variable {which!r}; variables are {names}", key=key)
    return names.index(which)


def matreg(R, vcov, y, x=None, *, names=None, level=0.95) -> MatregResult:
    """Regression of ``y`` on ``x`` from a (pooled) correlation matrix, as metafor's ``matreg``.

    Model: ``b = R_xx^-1 r_xy`` with ``Var(b) = A V A'``, ``A = d b / d vech(R)`` (multivariate
    delta method), where ``V`` is the covariance of the lower-triangle correlations of ``R`` in
    column-major order (e.g. the ``vcov`` of an :func:`rma_mv` fit of those correlations).

    Parameters
    ----------
    R : array_like or pandas.DataFrame, shape (p, p)
        Correlation matrix (lower triangle used; diagonal set to 1). A DataFrame names its
        variables by its columns.
    vcov : array_like, shape (p(p-1)/2, p(p-1)/2)
        Covariance matrix of the lower-triangle elements, column-major.
    y : str or int
        Outcome variable (name, or 0-based index).
    x : sequence of str or int, optional
        Predictors (default: all other variables).
    names : sequence of str, optional
        Variable names when ``R`` is a plain array.
    level : float
        Confidence level of the Wald intervals.

    Returns
    -------
    MatregResult

    References
    ----------
    Becker, B. J. (1992). *J. Educ. Stat.*, 17, 341-362; Viechtbauer, W. (2010). metafor's
    ``matreg``.
    """
    if names is None and hasattr(R, "columns"):
        names = [str(c) for c in R.columns]
    names = None if names is None else [str(n) for n in names]
    R = np.array(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise DataError(f"R must be a square matrix, got shape {R.shape}", column="R")
    p = R.shape[0]
    if names is not None and len(names) != p:
        raise SpecError(f"{len(names)} names for a {p} x {p} matrix", key="names")
    if not 0 < float(level) < 1:
        raise SpecError(f"level must lie in (0, 1), got {level!r}", key="level")
    lower = np.tril(R, -1)
    R = lower + lower.T + np.eye(p)
    iy = _index(y, names, p, "y")
    ix = [j for j in range(p) if j != iy] if x is None else [_index(v, names, p, "x") for v in x]
    if iy in ix or len(set(ix)) != len(ix) or not ix:
        raise SpecError("x must be distinct variables other than y", key="x")
    s = p * (p - 1) // 2
    V = np.asarray(vcov, dtype=float)
    if V.shape != (s, s):
        raise DataError(f"vcov must be {s} x {s} for a {p} x {p} matrix, got {V.shape}", column="vcov")
    Rxx, rxy = R[np.ix_(ix, ix)], R[ix, iy]
    try:
        inv = linalg.cho_solve(linalg.cho_factor(Rxx), np.eye(len(ix)))
    except linalg.LinAlgError:
        raise DataError("R[x, x] is not positive definite", column="R") from None
    b = inv @ rxy
    # Jacobian of b over the lower-triangle elements (column-major), perturbing R symmetrically
    A = np.zeros((len(ix), s))
    pairs = [(i, j) for j in range(p) for i in range(j + 1, p)]
    pos = {v: a for a, v in enumerate(ix)}
    for col, (i, j) in enumerate(pairs):
        if i in pos and j in pos:
            D = np.zeros((len(ix), len(ix)))
            D[pos[i], pos[j]] = D[pos[j], pos[i]] = 1.0
            A[:, col] = -inv @ D @ b
        elif iy in (i, j) and (i in pos or j in pos):
            A[:, col] = inv[:, pos[j if i == iy else i]]
    vb = A @ V @ A.T
    se = np.sqrt(np.diag(vb))
    zval = b / se
    crit = float(stats.norm.isf((1 - float(level)) / 2))
    QM = float(b @ np.linalg.solve(vb, b))
    labels = [names[j] if names else str(j) for j in ix]
    return MatregResult(coef_names=labels, beta=b, se=se, stat=zval, pval=2 * stats.norm.sf(np.abs(zval)),
                        ci_lower=b - crit * se, ci_upper=b + crit * se, vcov=vb, QM=QM,
                        QM_p=float(stats.chi2.sf(QM, len(ix))), R2=float(b @ rxy), level=float(level),
                        outcome=names[iy] if names else str(iy))
