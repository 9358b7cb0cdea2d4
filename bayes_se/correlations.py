"""Correlation tables for meta-analytic structural equation models (MASEM).

A study reports some of the ``q = p(p-1)/2`` correlations among ``p`` named variables, observed on
``n`` participants. :func:`load_correlations` reads them from

* a **long** table, one correlation per row: columns ``study``, ``n``, ``var1``, ``var2``, ``r``;
* a **wide** table, one study per row: ``n`` and one column per pair, named ``r_A_B`` or ``A.B``;
* standardized **path estimates** of the mediation model X -> M -> Y, one study per row: ``a``
  (X -> M), ``b`` (M -> Y given X), ``c_prime`` (X -> Y given M), optional ``a_se``, ``b_se``,
  ``c_prime_se``, and ``n``. They are converted to the correlation scale where that is exact:
  ``r_XM = a``, ``r_XY = c' + a b``, ``r_MY = b + a c'`` (the inverse of ``b = (r_MY - r_XM r_XY) /
  (1 - r_XM^2)``, ``c' = (r_XY - r_XM r_MY) / (1 - r_XM^2)``). A study with ``a`` only gives
  ``r_XM``; ``b`` without ``c_prime`` (or the reverse) cannot be converted exactly and is an
  error. The standard errors are checked (positive) but do not enter the model: the within-study
  covariance comes from ``n`` and the correlations by the Olkin-Siotani formula (see
  :mod:`bayes_se.frequentist.masem`).

The pairs are ordered as the **lower triangle of the correlation matrix, column by column**
(metafor's ``rcalc`` / ``matreg`` order): for variables ``(X, M, Y)`` that is ``r_XM, r_XY, r_MY``.

References
----------
Becker, B. J. (1992). Using results from replicated studies to estimate linear models. Journal of
Educational Statistics 17, 341-362.
Cheung, M. W.-L. (2015). Meta-Analysis: A Structural Equation Modeling Approach. Wiley, ch. 7.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_se.errors import DataError, SpecError
from bayes_se.table import NotANumber, Table, is_missing, parse_number, read_table

__all__ = ["CorrelationData", "load_correlations", "pair_index", "MEDIATION_VARIABLES"]

#: Default variable names of the mediation model X -> M -> Y.
MEDIATION_VARIABLES = ("intervention", "self_efficacy", "symptoms")
#: Smallest sample size accepted (the Olkin-Siotani covariance divides by n - 1).
MIN_N = 4
LAYOUTS = ("auto", "long", "wide", "paths")
_PATH_COLUMNS = ("a", "b", "c_prime")


def pair_index(p: int) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i > j``, of a ``p x p`` matrix's lower triangle, column by column."""
    return [(i, j) for j in range(p) for i in range(j + 1, p)]


@dataclass(frozen=True)
class CorrelationData:
    """Correlations reported by ``k`` studies among ``p`` variables.

    Attributes
    ----------
    variables : tuple of str
        Ordered variable names.
    study : numpy.ndarray of str, shape (k,)
    n : numpy.ndarray, shape (k,)
        Sample size per study.
    r : numpy.ndarray, shape (k, q)
        Correlations in :func:`pair_index` order, NaN where not reported.
    observed : numpy.ndarray of bool, shape (k, q)
    """

    variables: tuple
    study: np.ndarray
    n: np.ndarray
    r: np.ndarray
    observed: np.ndarray

    @property
    def k(self) -> int:
        return len(self.study)

    @property
    def p(self) -> int:
        return len(self.variables)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return pair_index(self.p)

    @property
    def pair_labels(self) -> list[str]:
        """``"A,B"`` per pair (A the earlier variable)."""
        return [f"{self.variables[j]},{self.variables[i]}" for i, j in self.pairs]

    def matrix(self, i: int) -> np.ndarray:
        """Study ``i``'s ``p x p`` correlation matrix, NaN where not reported."""
        R = np.eye(self.p)
        for col, (a, b) in enumerate(self.pairs):
            R[a, b] = R[b, a] = self.r[i, col]
        return R

    def to_long(self) -> pd.DataFrame:
        """The observed correlations as a long table (study, n, var1, var2, r)."""
        rows = []
        for i in range(self.k):
            for col, (a, b) in enumerate(self.pairs):
                if self.observed[i, col]:
                    rows.append({"study": self.study[i], "n": self.n[i], "var1": self.variables[b],
                                 "var2": self.variables[a], "r": self.r[i, col]})
        return pd.DataFrame(rows)


def _read(source, sep=None, decimal=None, encoding=None) -> Table:
    if not isinstance(source, (str, os.PathLike, pd.DataFrame)):
        raise DataError(f"expected a file path or a pandas DataFrame, got {type(source).__name__}")
    return read_table(source, sep=sep, decimal=decimal, encoding=encoding)


def _numbers(table, column, what=None) -> np.ndarray:
    """Floats of a column by the data grammar (:func:`bayes_se.table.parse_number`), NaN where missing."""
    decimal = table.attrs.get("decimal", ".")
    out = np.empty(len(table))
    for i, cell in enumerate(table[column]):
        try:
            out[i] = parse_number(cell, decimal)
        except NotANumber as exc:
            message = f"{what} {str(cell).strip()[:40]!r} is not a number" if what and not exc.numberlike \
                else str(exc)
            raise DataError(message, row=i + 1, column=column) from None
    return out


def _study_n(table, n_col, rows_of, labels):
    """n per study from its rows: the smallest, as metafor's rcalc (nfun = "min")."""
    if n_col not in table.columns:
        raise DataError(f"column '{n_col}' (sample size) is missing", column=n_col)
    n_all = _numbers(table, n_col, "the sample size")
    for row, value in enumerate(n_all):
        if np.isnan(value):
            raise DataError("the sample size is missing", row=row + 1, column=n_col)
        if value < MIN_N:
            raise DataError(f"the sample size must be >= {MIN_N}, got {value:g}", row=row + 1, column=n_col)
    return np.array([n_all[rows_of[s]].min() for s in labels])


def _study_labels(table, study):
    if study in table.columns:
        raw = table[study]
        for row, value in enumerate(raw):
            if is_missing(value):
                raise DataError("the study label is missing", row=row + 1, column=study)
        return [str(v).strip() for v in raw]
    return [str(i + 1) for i in range(len(table))]


def _check_variables(variables):
    if variables is None:
        return None
    names = [str(v) for v in variables]
    if len(names) < 2 or len(set(names)) != len(names):
        raise SpecError(f"variables must be at least two distinct names, got {names}", key="variables")
    return names


def _wide_pair(column: str, known):
    """(A, B) candidates a wide column name can be split into."""
    if column.startswith("r_"):
        body, sep = column[2:], "_"
    elif "." in column:
        body, sep = column, "."
    else:
        return []
    parts = body.split(sep)
    out = [(sep.join(parts[:s]), sep.join(parts[s:])) for s in range(1, len(parts))]
    return [(a, b) for a, b in out if known is None or (a in known and b in known)]


def _long_from_wide(table, study, n, variables):
    """Turn a wide table into long records, resolving ``r_A_B`` names."""
    skip = {study, n}
    candidates = {c: _wide_pair(str(c), variables) for c in table.columns if c not in skip}
    if variables is None:
        # a split is preferred when both of its names also occur in other columns' splits
        counts: dict[str, int] = {}
        for cands in candidates.values():
            for name in {x for pair in cands for x in pair}:
                counts[name] = counts.get(name, 0) + 1
        for col, cands in candidates.items():
            if len(cands) > 1:
                best = [c for c in cands if counts.get(c[0], 0) > 1 and counts.get(c[1], 0) > 1]
                if len(best) != 1:
                    raise DataError("cannot tell which two variables this column pairs; pass variables=[...]",
                                    column=str(col))
                candidates[col] = best
    columns = {c: v[0] for c, v in candidates.items() if v}
    if not columns:
        raise DataError("no correlation columns found (expected names like 'r_A_B' or 'A.B')")
    records = []
    for col, (a, b) in columns.items():
        values = _numbers(table, col, "the correlation")
        for row in range(len(table)):
            records.append((row, a, b, values[row], col))
    return records


def _records_from_paths(table, names):
    """Exact conversion of standardized mediation paths to correlations."""
    x, m, y = names
    vals = {c: _numbers(table, c) if c in table.columns else np.full(len(table), np.nan)
            for c in ("a", "b", "c_prime", "a_se", "b_se", "c_prime_se")}
    records = []
    for row in range(len(table)):
        a, b, c = vals["a"][row], vals["b"][row], vals["c_prime"][row]
        for col in ("a_se", "b_se", "c_prime_se"):
            se = vals[col][row]
            if not np.isnan(se) and not se > 0:
                raise DataError(f"the standard error must be > 0, got {se:g}", row=row + 1, column=col)
        if np.isnan(b) != np.isnan(c):
            col = "c_prime" if np.isnan(c) else "b"
            raise DataError("b and c_prime are converted to correlations together "
                            "(r_XY = c' + a b, r_MY = b + a c'); one without the other is not supported",
                            row=row + 1, column=col)
        if not np.isnan(b) and np.isnan(a):
            raise DataError("b and c_prime need a (r_XY = c' + a b)", row=row + 1, column="a")
        records.append((row, x, m, a, "a"))
        if not np.isnan(b):
            records.append((row, x, y, c + a * b, "c_prime"))
            records.append((row, m, y, b + a * c, "b"))
    return records


def load_correlations(source, *, variables=None, study: str = "study", n: str = "n",
                      layout: str = "auto", sep: str | None = None, decimal: str | None = None,
                      encoding: str | None = None, partial: bool = False) -> CorrelationData:
    """Read and check a table of correlations (or mediation paths) from several studies.

    Model it feeds: study ``i``'s correlations ``r_i ~ N(rho_i, S_i)`` with ``S_i`` the
    Olkin-Siotani covariance for ``n_i`` participants (see :mod:`bayes_se.builders.masem`).

    Parameters
    ----------
    source : str, os.PathLike or pandas.DataFrame
        A delimited text file (read by :func:`bayes_se.table.read_table`: encoding, delimiter and
        decimal mark sniffed, numbers by the data grammar, only empty/NA/NaN/'.' missing) or a
        DataFrame, in one of the layouts of the module docstring.
    variables : sequence of str, optional
        Variable names in the order wanted; every name in the table must be one of them. Default:
        order of first appearance (``paths`` layout: ``MEDIATION_VARIABLES``, read as X, M, Y).
    study, n : str
        Columns of study labels (generated ``"1", "2", ...`` when absent) and sample sizes. A study
        whose long rows give different ``n`` gets the smallest (metafor's ``rcalc``, ``nfun="min"``).
    layout : {"auto", "long", "wide", "paths"}
        ``auto``: long when ``var1``, ``var2`` and ``r`` are columns, paths when ``a`` is,
        else wide.
    sep, decimal, encoding : str, optional
        Delimiter, decimal mark and encoding of a text file (None: sniffed).
    partial : bool
        The table is one part of a mixed input (trials' matrices beside trials' reported paths,
        :func:`bayes_se.mediation_paths.fit_mediation_paths`): one study suffices and a pair that no
        study reports is allowed; the combined input is checked where it is combined.

    Returns
    -------
    CorrelationData

    Raises
    ------
    DataError
        Naming the row and column: |r| >= 1, a missing or too small (< 4) n, an unknown variable,
        a pair reported twice in a study, a complete study matrix that is not positive definite,
        fewer than 2 studies, a pair that no study reports.

    References
    ----------
    Olkin, I. & Siotani, M. (1976). Asymptotic distribution of functions of a correlation matrix.
    In Essays in Probability and Statistics, 235-251.
    """
    if layout not in LAYOUTS:
        raise SpecError(f"layout must be one of {LAYOUTS}, got {layout!r}", key="layout")
    names = _check_variables(variables)
    read = _read(source, sep, decimal, encoding)
    try:
        data = _load(read.frame, read.decimal, names, study, n, layout, partial)
    except DataError as exc:  # rows as the file numbers them (skipped empty rows keep their numbers)
        if isinstance(exc.row, int) and read.rows != tuple(range(1, len(read.rows) + 1)):
            raise exc.renumbered(read.rows[exc.row - 1]) from None
        raise
    read.warn()
    return data


def _load(table, decimal, names, study, n, layout, partial=False) -> CorrelationData:
    table.attrs["decimal"] = decimal
    if layout == "auto":
        if {"var1", "var2", "r"} <= set(table.columns):
            layout = "long"
        elif "a" in table.columns:
            layout = "paths"
        else:
            layout = "wide"
    labels_by_row = _study_labels(table, study)
    if layout == "long":
        for col in ("var1", "var2", "r"):
            if col not in table.columns:
                raise DataError(f"column '{col}' is missing (long layout: study, n, var1, var2, r)", column=col)
        r_all = _numbers(table, "r", "the correlation")
        records = [(row, str(table["var1"].iloc[row]).strip(), str(table["var2"].iloc[row]).strip(),
                    r_all[row], "r") for row in range(len(table))]
        for row, a, b, _, _ in records:
            for col, v in (("var1", table["var1"].iloc[row]), ("var2", table["var2"].iloc[row])):
                if is_missing(v):
                    raise DataError("the variable name is missing", row=row + 1, column=col)
    elif layout == "paths":
        if names is None:
            names = list(MEDIATION_VARIABLES)
        if len(names) != 3:
            raise SpecError("the paths layout needs exactly three variables (X, M, Y)", key="variables")
        if "a" not in table.columns:
            raise DataError("column 'a' (X -> M path) is missing", column="a")
        records = _records_from_paths(table, names)
    else:
        records = _long_from_wide(table, study, n, names)

    # variables, in the order given or of first appearance
    if names is None:
        names = list(dict.fromkeys(v for _, a, b, _, _ in records for v in (a, b)))
    position = {v: j for j, v in enumerate(names)}
    for row, a, b, _, col in records:
        for v, c in ((a, "var1"), (b, "var2")):
            if v not in position:
                raise DataError(f"unknown variable {v!r}; variables are {names}", row=row + 1,
                                column=c if layout == "long" else col)
        if a == b:
            raise DataError(f"a variable cannot be paired with itself ({a!r})", row=row + 1,
                            column="var2" if layout == "long" else col)
    labels = list(dict.fromkeys(labels_by_row))
    if len(labels) < (1 if partial else 2):
        raise DataError(f"at least {1 if partial else 2} studies are needed, got {len(labels)}", column=study)
    rows_of = {s: [] for s in labels}
    for row, s in enumerate(labels_by_row):
        rows_of[s].append(row)
    n_study = _study_n(table, n, rows_of, labels)

    p = len(names)
    col_of = {pair: c for c, pair in enumerate(pair_index(p))}
    s_index = {s: i for i, s in enumerate(labels)}
    r = np.full((len(labels), len(col_of)), np.nan)
    seen: dict[tuple[int, int], int] = {}
    for row, a, b, value, col in records:
        ia, ib = position[a], position[b]
        c = col_of[(max(ia, ib), min(ia, ib))]
        i = s_index[labels_by_row[row]]
        if np.isnan(value):
            continue
        if (i, c) in seen:
            raise DataError(f"study {labels[i]!r} reports the pair ({a}, {b}) twice "
                            f"(also on row {seen[(i, c)] + 1})", row=row + 1,
                            column="var2" if layout == "long" else col)
        if not abs(value) < 1.0:
            raise DataError(f"a correlation must lie strictly between -1 and 1, got {value:g}",
                            row=row + 1, column="r" if layout == "long" else col)
        seen[(i, c)] = row
        r[i, c] = value
    observed = ~np.isnan(r)
    data = CorrelationData(tuple(names), np.array(labels, dtype=str), n_study, r, observed)
    for c, label in enumerate(data.pair_labels):
        if not observed[:, c].any() and not partial:
            raise DataError(f"no study reports the correlation of ({label}); it cannot be estimated",
                            column="r" if layout == "long" else None)
    for i in range(data.k):
        if observed[i].all() and np.linalg.eigvalsh(data.matrix(i))[0] <= 0:
            raise DataError(f"study {labels[i]!r}: the correlation matrix is not positive definite "
                            "(the reported correlations cannot all come from one sample)",
                            row=rows_of[labels[i]][0] + 1, column=study)
    for arr in (data.n, data.r, data.observed):
        arr.setflags(write=False)
    return data


def olkin_siotani(R, n=None, *, p=None):
    """Asymptotic covariance of the correlations of a ``p x p`` correlation matrix.

    Olkin & Finn (1995), eq. 5 (Olkin & Siotani 1976), with ``(s, t)`` and ``(u, v)`` two pairs::

        n_1 Cov(r_st, r_uv) = 1/2 r_st r_uv (r_su^2 + r_sv^2 + r_tu^2 + r_tv^2) + r_su r_tv
                              + r_sv r_tu - (r_st r_su r_sv + r_ts r_tu r_tv + r_us r_ut r_uv
                              + r_vs r_vt r_vu)

    with ``n_1 = n - 1`` as metafor's ``rcalc``. Written with gathers only, so the same code runs on
    NumPy arrays (any leading batch shape) and on a PyTensor matrix inside a model.

    Parameters
    ----------
    R : array_like or pytensor matrix, shape (..., p, p)
        Correlation matrix (NaN entries give NaN covariances).
    n : float or array_like, optional
        Sample size(s); when given the result is divided by ``n - 1`` (broadcast over the batch).
    p : int, optional
        Number of variables (needed for a symbolic ``R`` whose shape is not static).

    Returns
    -------
    array, shape (..., q, q)
        In :func:`pair_index` order (``q = p(p-1)/2``); the numerator only when ``n`` is None.

    References
    ----------
    Olkin, I. & Finn, J. D. (1995). Correlations redux. Psychological Bulletin 118, 155-164.
    Olkin, I. & Siotani, M. (1976). Asymptotic distribution of functions of a correlation matrix.
    """
    symbolic = hasattr(R, "owner") and not isinstance(R, np.ndarray)
    if p is None:
        p = int(R.type.shape[-1]) if symbolic else int(np.shape(R)[-1])
    pairs = np.array(pair_index(p))
    s, t = pairs[:, 0][:, None], pairs[:, 1][:, None]
    u, v = pairs[:, 0][None, :], pairs[:, 1][None, :]
    q = len(pairs)
    if symbolic:
        flat = R.reshape((p * p,))

        def g(a, b):
            # a constant 0/1 selection matrix times vec(R): a dense product differentiates far
            # faster in PyTensor than a gather with a 2-D index
            sel = np.zeros((q * q, p * p))
            sel[np.arange(q * q), np.broadcast_to(a * p + b, (q, q)).ravel()] = 1.0
            return flat.dot(sel.T).reshape((q, q))
    else:
        R = np.asarray(R, dtype=float)
        flat = R.reshape(R.shape[:-2] + (p * p,))

        def g(a, b):
            return flat[..., np.broadcast_to(a * p + b, (q, q))]

    rst, ruv = g(s, t), g(u, v)
    rsu, rsv, rtu, rtv = g(s, u), g(s, v), g(t, u), g(t, v)
    out = (0.5 * rst * ruv * (rsu**2 + rsv**2 + rtu**2 + rtv**2) + rsu * rtv + rsv * rtu
           - (rst * rsu * rsv + rst * rtu * rtv + rsu * rtu * ruv + rsv * rtv * ruv))
    if n is None:
        return out
    n = np.asarray(n, dtype=float)
    return out / (n[..., None, None] - 1.0)
