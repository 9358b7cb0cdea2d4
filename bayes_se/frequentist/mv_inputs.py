"""Input checks of :func:`bayes_se.frequentist.multilevel.rma_mv`: arrays, labels, metafor's NA rule.

A row is omitted (with a warning naming it) when its effect, a moderator or a grouping label is
missing, when its sampling variance is missing, or when its covariance with any row of known
variance is missing (metafor 3.8-1 ``rma.mv`` with ``na.action = "na.omit"``); every other defect
raises a :class:`~bayes_se.errors.DataError` naming the 1-based data row and the column.

References
----------
Viechtbauer, W. (2010). *J. Stat. Softw.*, 36(3) (metafor ``rma.mv``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from bayes_se.errors import DataError, SpecError

__all__ = ["prepare_inputs", "sorted_levels"]


def _labels(values, name, k):
    if values is None:
        return None
    values = list(values.tolist() if isinstance(values, np.ndarray) else values)
    if len(values) != k:
        raise DataError(f"has {len(values)} entries for {k} effects", column=name)
    return values


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def sorted_levels(values) -> list:
    """The distinct values in sorted order (as R's ``factor``; by their text when not comparable)."""
    levels = list(dict.fromkeys(values))
    try:
        return sorted(levels)
    except TypeError:
        return sorted(levels, key=str)


def _as_V(V, k):
    V = np.asarray(V, dtype=float)
    if V.ndim == 1:
        if V.shape[0] != k:
            raise DataError(f"has {V.shape[0]} sampling variances for {k} effects", column="vi")
        return np.diag(V)
    if V.ndim != 2 or V.shape != (k, k):
        raise DataError(f"the sampling covariance matrix V must be {k} x {k}, got shape {V.shape}",
                        column="V")
    return V


def prepare_inputs(yi, V, X, coef_names, mods, data, cluster, outcome, study, na="omit"):
    """Arrays of the model after metafor's missing-value rule, with row-naming errors.

    Returns
    -------
    tuple
        ``y, X, V, coef_names, cluster, outcome, study, rows`` (``rows``: the 1-based data rows kept).
    """
    frame = data
    study_labels = None
    if hasattr(yi, "yi"):  # an EffectData-like object
        effects = yi
        yi = effects.yi
        if V is None:
            V = getattr(effects, "V", None)
            V = effects.vi if V is None else V
        cluster = getattr(effects, "cluster", None) if cluster is None else cluster
        frame = getattr(effects, "frame", None) if frame is None else frame
        study_labels = getattr(effects, "study", None) if data is None else None
    try:
        y = np.asarray(yi, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"effects must be numbers ({exc})", column="yi") from None
    if y.ndim != 1 or y.size < 2:
        raise DataError("effects must be a 1-D sequence of at least 2 numbers", column="yi")
    k = y.size
    if V is None:
        raise SpecError("the sampling variances or covariance matrix V are required", key="V")
    try:
        V = _as_V(V, k)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"V must be numbers ({exc})", column="V") from None
    if mods is not None:
        if X is not None:
            raise SpecError("give either X or mods, not both", key="mods")
        if frame is None:
            raise SpecError("mods needs a data frame (data=) or an EffectData", key="mods")
        from bayes_se.formula import design_matrix

        design = design_matrix(frame, mods, na=na, labels=study_labels,
                               reserved=("yi", "vi", "study", "cluster") if data is None else ("yi", "vi"))
        # rows with a missing moderator (already reported) get NaN: metafor's rule below drops them
        X = np.full((len(design.rows) + len(design.omitted_rows), design.X.shape[1]), np.nan)
        X[design.rows] = design.X
        coef_names, reported = design.names, np.isnan(X[:, 0])
    if X is None:
        X, coef_names = np.ones((k, 1)), ["intercept"] if coef_names is None else coef_names
    X = np.asarray(X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    if X.ndim != 2 or X.shape[0] != k:
        raise DataError(f"the design matrix X must have {k} rows, got shape {X.shape}", column="X")
    p = X.shape[1]
    coef_names = [f"X{j + 1}" for j in range(p)] if coef_names is None else list(coef_names)
    if len(coef_names) != p:
        raise SpecError(f"{len(coef_names)} coef_names for {p} columns of X", key="coef_names")
    cluster, outcome, study = (_labels(v, n, k) for v, n in
                               ((cluster, "cluster"), (outcome, "outcome"), (study, "study")))
    # metafor's na.omit rule: a row goes when y, a moderator or a label is missing, when its
    # variance is missing, or when its covariance with any row of non-missing variance is missing
    drop = np.isnan(y) | np.isnan(X).any(axis=1)
    has_var = ~np.isnan(np.diag(V))
    drop |= ~has_var | np.isnan(V[:, has_var]).any(axis=1)
    for labels in (cluster, outcome, study):
        if labels is not None:
            drop |= np.array([_missing(v) for v in labels])
    keep = np.flatnonzero(~drop)
    rows = keep + 1  # 1-based data rows, as a user sees them
    if (drop & ~reported).any() if mods is not None else drop.any():
        warnings.warn(f"rows {', '.join(map(str, np.flatnonzero(drop) + 1))} have missing values "
                      "and were omitted from model fitting", UserWarning, stacklevel=3)
    y, X, V = y[keep], X[keep], V[np.ix_(keep, keep)]
    cluster, outcome, study = ([labels[i] for i in keep] if labels is not None else None
                               for labels in (cluster, outcome, study))
    if np.isnan(V).any():
        i, j = np.argwhere(np.isnan(V))[0]
        raise DataError(f"V is missing the covariance with row {rows[j]}", row=int(rows[i]), column="V")
    for name, arr in (("yi", y), ("V", V), ("X", X)):
        if not np.isfinite(arr).all():
            raise DataError("infinite value", row=int(rows[np.argwhere(~np.isfinite(arr))[0][0]]),
                            column=name)
    bad = np.flatnonzero(np.diag(V) <= 0)
    if bad.size:
        raise DataError("sampling variance must be positive", row=int(rows[bad[0]]), column="vi")
    if not np.allclose(V, V.T, rtol=1e-10, atol=0):
        i, j = np.argwhere(~np.isclose(V, V.T, rtol=1e-10, atol=0))[0]
        raise DataError(f"V is not symmetric (differs from its entry at row {rows[j]})",
                        row=int(rows[i]), column="V")
    if np.linalg.eigvalsh(V)[0] <= 0:
        raise DataError("the sampling covariance matrix V is not positive definite", column="V")
    if y.size <= p:
        raise DataError(f"{y.size} effects left for {p} coefficients; need more effects than "
                        "coefficients")
    if np.linalg.matrix_rank(X) < p:
        raise DataError("the design matrix X is rank deficient", column="X")
    return y, X, V, coef_names, cluster, outcome, study, rows

