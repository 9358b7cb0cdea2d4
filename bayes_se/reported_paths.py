"""Mediation paths as trials report them, and as correlation matrices give them.

A trial that tests a mediator M of an intervention X on an outcome Y usually reports the paths of
its own mediation analysis: ``a`` (X -> M) with its standard error, ``b`` (M -> Y given X) with
its standard error, and often ``c'`` (X -> Y given M). :func:`load_paths` reads such a table into
:class:`PathEstimates`: per study the estimates ``est_i = (a, b, c')`` (NaN where not reported)
and their sampling covariance ``S_i``.

Columns (one study per row; other columns are ignored):

=================  ====================================================================
``study``          study label (unique)
``a``, ``se_a``    X -> M and its standard error (required)
``b``, ``se_b``    M -> Y given X and its standard error (empty cells: not reported)
``cov_ab``         sampling covariance of a and b (0 when absent: a and b are
                   asymptotically independent in the single-mediator model)
``c_prime``,       X -> Y given M and its standard error (optional)
``se_c_prime``
``cov_a_c_prime``  sampling covariances of c' with a and b (0 when absent; for standardised
``cov_b_c_prime``  paths from one OLS fit, ``cov(b, c') = -r_XM se_b se_c'``, which a user may
                   supply)
``n``              participants (optional; informational)
=================  ====================================================================

:func:`paths_from_correlations` turns a correlation matrix of (X, M, Y) into **standardised**
paths, ``a = r_XM``, ``b = (r_MY - r_XM r_XY) / (1 - r_XM^2)``, ``c' = (r_XY - r_XM r_MY) /
(1 - r_XM^2)``, with the delta-method covariance ``J Psi(r_i) J' / (n_i - 1)`` (``Psi`` the
Olkin-Siotani covariance at the study's own correlations, ``J`` the Jacobian of the map).
:func:`combine_paths` stacks reported paths and matrix-derived paths; mixing them needs the
reported paths to be **standardised** too (the same scale).

References
----------
MacKinnon, D. P. (2008). Introduction to Statistical Mediation Analysis. Erlbaum, ch. 3-4.
Olkin, I. & Finn, J. D. (1995). Correlations redux. Psychological Bulletin 118, 155-164.
Cheung, M. W.-L. (2015). Meta-Analysis: A Structural Equation Modeling Approach. Wiley, ch. 7.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_se.errors import DataError
from bayes_se.table import is_missing, number_column, read_table

__all__ = ["PathEstimates", "PATH_NAMES", "load_paths", "paths_from_correlations", "combine_paths"]

#: The three paths, in the order of :attr:`PathEstimates.est`'s columns.
PATH_NAMES = ("a", "b", "c_prime")
#: Standard-error column of each path.
SE_COLUMNS = ("se_a", "se_b", "se_c_prime")
#: Covariance columns: (column, i, j) into PATH_NAMES.
COV_COLUMNS = (("cov_ab", 0, 1), ("cov_a_c_prime", 0, 2), ("cov_b_c_prime", 1, 2))
#: Values of :attr:`PathEstimates.source`.
SOURCES = ("paths", "matrix")


@dataclass(frozen=True)
class PathEstimates:
    """Per-study estimates of the mediation paths (a, b, c') and their sampling covariance.

    Attributes
    ----------
    study : numpy.ndarray of str, shape (k,)
    est : numpy.ndarray, shape (k, 3)
        ``a``, ``b``, ``c_prime`` (:data:`PATH_NAMES`), NaN where not reported.
    cov : numpy.ndarray, shape (k, 3, 3)
        Sampling covariance; NaN in the rows and columns of unreported paths.
    n : numpy.ndarray, shape (k,)
        Participants (NaN where unknown).
    source : numpy.ndarray of str, shape (k,)
        ``"paths"`` (reported paths) or ``"matrix"`` (derived from a correlation matrix).
    """

    study: np.ndarray
    est: np.ndarray
    cov: np.ndarray
    n: np.ndarray
    source: np.ndarray

    @property
    def k(self) -> int:
        return len(self.study)

    @property
    def observed(self) -> np.ndarray:
        """(k, 3) bool: which paths each study gives."""
        return ~np.isnan(self.est)

    @property
    def se(self) -> np.ndarray:
        """(k, 3) standard errors, NaN where not reported."""
        return np.sqrt(np.diagonal(self.cov, axis1=1, axis2=2))

    def to_frame(self) -> pd.DataFrame:
        """One row per study: study, source, n, a, se_a, b, se_b, c_prime, se_c_prime and covariances."""
        out = {"study": self.study, "source": self.source, "n": self.n}
        se = self.se
        for j, (name, se_name) in enumerate(zip(PATH_NAMES, SE_COLUMNS)):
            out[name] = self.est[:, j]
            out[se_name] = se[:, j]
        for col, i, j in COV_COLUMNS:
            out[col] = self.cov[:, i, j]
        return pd.DataFrame(out)


def _freeze(est, cov, n, study, source) -> PathEstimates:
    data = PathEstimates(study=np.asarray(study, dtype=str), est=np.asarray(est, float),
                         cov=np.asarray(cov, float), n=np.asarray(n, float), source=np.asarray(source, dtype=str))
    for arr in (data.study, data.est, data.cov, data.n, data.source):
        arr.setflags(write=False)
    return data


def load_paths(source, *, study: str = "study", sep: str | None = None, decimal: str | None = None,
               encoding: str | None = None, partial: bool = False) -> PathEstimates:
    """Read and check a table of reported mediation paths (one study per row).

    Model it feeds: ``est_i[obs] ~ N(theta_i[obs], S_i[obs, obs])`` with ``S_i`` built from the
    standard errors and covariances (:mod:`bayes_se.builders.mediation_paths`).

    Parameters
    ----------
    source : str, os.PathLike or pandas.DataFrame
        A delimited text file (read by :func:`bayes_se.table.read_table`: encoding, delimiter and
        decimal mark sniffed, so ``;``-separated files with decimal commas work) or a DataFrame,
        with the columns of the module docstring.
    study : str
        Column of study labels (generated ``"1", "2", ...`` when absent).
    sep, decimal, encoding : str, optional
        Delimiter, decimal mark and encoding of a text file (None: sniffed).
    partial : bool
        The table is one part of a mixed input (beside trials' correlation matrices): one study
        suffices and no study need report ``b``; :func:`combine_paths` and the fit check the
        combined input.

    Returns
    -------
    PathEstimates
        ``source`` is ``"paths"`` for every study.

    Raises
    ------
    DataError
        Naming the row and column: a missing or non-positive standard error, a value without its
        standard error (or the reverse), ``b`` or ``c_prime`` without ``a``, a covariance whose
        path is not reported or that makes the study's covariance matrix not positive definite, a
        missing or repeated study label, a non-positive ``n``, fewer than 2 studies, no study
        reporting ``b``.
    """
    if not isinstance(source, (str, os.PathLike, pd.DataFrame)):
        raise DataError(f"expected a file path or a pandas DataFrame, got {type(source).__name__}")
    read = read_table(source, sep=sep, decimal=decimal, encoding=encoding)
    try:
        data = _load(read.frame, read.decimal, study, partial)
    except DataError as exc:  # rows as the file numbers them (skipped empty rows keep their numbers)
        if isinstance(exc.row, int) and read.rows != tuple(range(1, len(read.rows) + 1)):
            raise exc.renumbered(read.rows[exc.row - 1]) from None
        raise
    read.warn()
    return data


def _load(table: pd.DataFrame, decimal: str, study: str, partial: bool = False) -> PathEstimates:
    k = len(table)
    for col in ("a", "se_a"):
        if col not in table.columns:
            raise DataError(f"column '{col}' is missing (a paths table has study, a, se_a, b, se_b, "
                            "optional cov_ab, c_prime, se_c_prime, n)", column=col)

    def numbers(col):
        if col not in table.columns:
            return np.full(k, np.nan)
        return number_column(table[col], col, decimal)

    if study in table.columns:
        labels = []
        for row, value in enumerate(table[study]):
            if is_missing(value):
                raise DataError("the study label is missing", row=row + 1, column=study)
            labels.append(str(value).strip())
        seen = {}
        for row, label in enumerate(labels):
            if label in seen:
                raise DataError(f"study {label!r} appears twice (rows {seen[label]} and {row + 1}); one row "
                                "per study", row=row + 1, column=study)
            seen[label] = row + 1
    else:
        labels = [str(i + 1) for i in range(k)]
    if k < (1 if partial else 2):
        raise DataError(f"at least {1 if partial else 2} studies are needed, got {k}", column=study)

    est = np.column_stack([numbers(c) for c in PATH_NAMES])
    se = np.column_stack([numbers(c) for c in SE_COLUMNS])
    for j, (name, se_name) in enumerate(zip(PATH_NAMES, SE_COLUMNS)):
        for row in range(k):
            value, s = est[row, j], se[row, j]
            if np.isnan(value) and np.isnan(s):
                if j == 0:
                    raise DataError("a (the X -> M path) is missing; every study must report a", row=row + 1,
                                    column="a")
                continue
            if np.isnan(s):
                raise DataError(f"{name} is given without its standard error", row=row + 1, column=se_name)
            if np.isnan(value):
                raise DataError(f"{se_name} is given without {name}", row=row + 1, column=name)
            if not (np.isfinite(value)):
                raise DataError(f"{name} must be a finite number, got {value:g}", row=row + 1, column=name)
            if not (np.isfinite(s) and s > 0):
                raise DataError(f"the standard error must be a positive number, got {s:g}", row=row + 1,
                                column=se_name)
    obs = ~np.isnan(est)
    cov = np.full((k, 3, 3), np.nan)
    for row in range(k):
        o = np.flatnonzero(obs[row])
        cov[row, o[:, None], o[None, :]] = 0.0
        cov[row, o, o] = se[row, o] ** 2
    for col, i, j in COV_COLUMNS:
        values = numbers(col)
        for row in range(k):
            v = values[row]
            if np.isnan(v):
                continue
            if not np.isfinite(v):
                raise DataError(f"the covariance must be a finite number, got {v:g}", row=row + 1, column=col)
            if not (obs[row, i] and obs[row, j]):
                missing = PATH_NAMES[j] if obs[row, i] else PATH_NAMES[i]
                if v != 0:
                    raise DataError(f"{col} is given but {missing} is not reported", row=row + 1, column=col)
                continue
            cov[row, i, j] = cov[row, j, i] = v
    cov_given = {col: numbers(col) for col, _, _ in COV_COLUMNS}
    for row in range(k):
        o = np.flatnonzero(obs[row])
        block = cov[row][np.ix_(o, o)]
        if len(o) > 1 and np.linalg.eigvalsh(block)[0] <= 0:
            given = [col for col, i, j in COV_COLUMNS if not np.isnan(cov_given[col][row]) and
                     obs[row, i] and obs[row, j]]
            raise DataError(f"with the standard errors of this row, the covariance(s) {', '.join(given)} make "
                            "the sampling covariance matrix of the paths not positive definite (|correlation| "
                            ">= 1)", row=row + 1, column=given[0] if given else None)
    if not obs[:, 1].any() and not partial:
        raise DataError("no study reports b (the M -> Y path); the mediation model needs it", column="b")
    for row in range(k):
        if obs[row, 1] and not obs[row, 0]:  # pragma: no cover  (a is required above)
            raise DataError("b is given without a", row=row + 1, column="a")
    n = numbers("n")
    for row, v in enumerate(n):
        if not np.isnan(v) and not (np.isfinite(v) and v > 0):
            raise DataError(f"the sample size must be a positive number, got {v:g}", row=row + 1, column="n")
    return _freeze(est, cov, n, labels, ["paths"] * k)


def _path_jacobian(r_xm, r_xy, r_my):
    """Jacobian of (a, b, c') with respect to (r_XM, r_XY, r_MY), shape (..., 3, 3)."""
    d = 1.0 - r_xm**2
    b = (r_my - r_xm * r_xy) / d
    c = (r_xy - r_xm * r_my) / d
    J = np.zeros(np.shape(r_xm) + (3, 3))
    J[..., 0, 0] = 1.0
    J[..., 1, 0] = (-r_xy + 2 * r_xm * b) / d
    J[..., 1, 1] = -r_xm / d
    J[..., 1, 2] = 1.0 / d
    J[..., 2, 0] = (-r_my + 2 * r_xm * c) / d
    J[..., 2, 1] = 1.0 / d
    J[..., 2, 2] = -r_xm / d
    return J


def standardised_paths(r_xm, r_xy, r_my):
    """``(a, b, c')`` of the single-mediator model from the correlations of (X, M, Y)."""
    d = 1.0 - np.asarray(r_xm, float) ** 2
    return r_xm, (r_my - r_xm * r_xy) / d, (r_xy - r_xm * r_my) / d


def paths_from_correlations(data, x: str, m: str, y: str) -> PathEstimates:
    """Standardised paths and their delta-method covariance from each study's correlation matrix.

    ``a = r_XM``, ``b = (r_MY - r_XM r_XY) / (1 - r_XM^2)``, ``c' = (r_XY - r_XM r_MY) /
    (1 - r_XM^2)``; ``Cov = J Psi(r_i) J' / (n_i - 1)`` with ``Psi`` the Olkin-Siotani covariance
    of (r_XM, r_XY, r_MY) at the study's own correlations. A study with ``r_XM`` but not all three
    correlations gives ``a`` only (variance ``(1 - r_XM^2)^2 / (n - 1)``).

    Parameters
    ----------
    data : CorrelationData
    x, m, y : str
        The intervention, mediator and outcome among ``data.variables``.

    Returns
    -------
    PathEstimates
        ``source`` is ``"matrix"`` for every study.

    Raises
    ------
    DataError
        A variable that the table lacks, or a study without ``r_XM`` (nothing usable).

    References
    ----------
    Olkin & Finn (1995), Psychological Bulletin 118:155-164; MacKinnon (2008), ch. 4.
    """
    from bayes_se.correlations import olkin_siotani, pair_index

    variables = list(data.variables)
    # x and m are needed (r_XM = a); a table without y gives a alone for every study
    for role, name in (("x", x), ("m", m)) + ((("y", y),) if y in variables or len(variables) > 2 else ()):
        if name not in variables:
            raise DataError(f"the correlation table has no variable {name!r} (the mediation model's {role}); its "
                            f"variables are {', '.join(variables)}", column="var1")
    col = {frozenset((variables[i], variables[j])): c for c, (i, j) in enumerate(pair_index(len(variables)))}
    r_all = np.column_stack([np.asarray(data.r, float), np.full(data.k, np.nan)])
    cols = [col.get(frozenset(pair), -1) for pair in ((x, m), (x, y), (m, y))]  # -1: the NaN column
    r = r_all[:, cols]
    k = data.k
    est = np.full((k, 3), np.nan)
    cov = np.full((k, 3, 3), np.nan)
    for i in range(k):
        r_xm, r_xy, r_my = r[i]
        n = float(data.n[i])
        if np.isnan(r_xm):
            raise DataError(f"study {str(data.study[i])!r} reports no correlation of {x} and {m} (r_XM = a): it gives "
                            "no mediation path; leave it out", row=str(data.study[i]), column="r")
        if np.isnan(r_xy) or np.isnan(r_my):
            est[i, 0] = r_xm
            cov[i, 0, 0] = (1.0 - r_xm**2) ** 2 / (n - 1.0)
            continue
        R = np.array([[1.0, r_xm, r_xy], [r_xm, 1.0, r_my], [r_xy, r_my, 1.0]])
        psi = olkin_siotani(R, n)  # (r_XM, r_XY, r_MY), pair_index order of (x, m, y)
        J = _path_jacobian(r_xm, r_xy, r_my)
        est[i] = standardised_paths(r_xm, r_xy, r_my)
        cov[i] = J @ psi @ J.T
    return _freeze(est, cov, np.asarray(data.n, float), data.study, ["matrix"] * k)


def combine_paths(paths: PathEstimates | None, matrices: PathEstimates | None) -> PathEstimates:
    """Reported paths and matrix-derived paths stacked into one :class:`PathEstimates`.

    Both must be on the same (standardised) scale; the function cannot check that.

    Raises
    ------
    DataError
        A study label in both (named), fewer than 2 studies in all.
    """
    parts = [p for p in (paths, matrices) if p is not None]
    if not parts:
        raise DataError("no studies: give reported paths, correlation matrices or both")
    if sum(p.k for p in parts) < 2:
        raise DataError(f"at least 2 studies are needed, got {sum(p.k for p in parts)}", column="study")
    if len(parts) == 1:
        return parts[0]
    both = sorted(set(map(str, paths.study)) & set(map(str, matrices.study)))
    if both:
        raise DataError(f"study {both[0]!r} is in both the paths table and the correlation table; give each study "
                        "once", row=both[0], column="study")
    return _freeze(np.concatenate([p.est for p in parts]), np.concatenate([p.cov for p in parts]),
                   np.concatenate([p.n for p in parts]), np.concatenate([p.study for p in parts]),
                   np.concatenate([p.source for p in parts]))
