"""Moderator formulas: a tiny, safe formula language turned into a design matrix.

Grammar (our own tokenizer; nothing is ever evaluated)::

    formula := ['~'] ['0' '+'] term ('+' term)*
    term    := inter ('*' inter)*          a*b  ==  a + b + a:b
    inter   := NAME (':' NAME)*            a:b  == interaction (product of codings)
    NAME    := [A-Za-z_][A-Za-z0-9_.]*     so ``weeks.c`` is one column name

A leading ``0 +`` drops the intercept. Numeric columns (int/float, also 0/1) enter as they are;
strings, booleans and pandas Categoricals are coded with treatment (reference) contrasts, the
reference being the first level in sorted order (as R's ``factor``) or, for a pandas Categorical,
the first category. As in R, a factor inside an interaction whose margin (the interaction without
that factor) is not in the model gets one indicator per level, and without an intercept the first
categorical main effect does too. Column names follow the pattern ``intercept``, ``NAME``, ``NAME[LEVEL]`` and
``A:B`` for interactions.

References
----------
Chambers, J. M., & Hastie, T. J. (1992). *Statistical Models in S*, ch. 2 (formula semantics
mirrored here, including ``*`` expansion and treatment contrasts).
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd

from bayes_se.errors import DataError, SpecError

__all__ = ["design_matrix", "describe_coding", "parse_formula"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_SYMBOLS = {"+", ":", "*", "~"}


def _tokenize(expr: str) -> list[tuple[str, str, int]]:
    """Split ``expr`` into (kind, text, position) tokens; reject anything outside the grammar."""
    tokens = []
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch.isspace():
            i += 1
            continue
        m = _NAME.match(expr, i)
        if m:
            tokens.append(("name", m.group(), i))
            i = m.end()
        elif ch in _SYMBOLS:
            tokens.append(("op", ch, i))
            i += 1
        elif ch == "0" and not expr[i + 1 : i + 2].isalnum():
            tokens.append(("zero", ch, i))
            i += 1
        else:
            raise SpecError(
                f"unexpected character {ch!r} at position {i + 1} in moderator formula {expr!r} "
                "(allowed: column names, '+', ':', '*', and a leading '0 +')",
                key="mods",
            )
    return tokens


def parse_formula(expr: str | None) -> tuple[bool, list[tuple[str, ...]]]:
    """Parse a moderator formula.

    Parameters
    ----------
    expr : str or None
        The formula, e.g. ``"ablat + alloc"``, ``"a*b"``, ``"0 + grade"``. ``None`` or an empty
        string is the intercept-only model.

    Returns
    -------
    intercept : bool
        False when the formula starts with ``0 +``.
    terms : list of tuple of str
        Each term is a tuple of column names (one name for a main effect, several for an
        interaction), in R's order: main effects first, then two-way interactions, and so on.
    """
    if expr is None or not expr.strip() or expr.strip() == "~":
        return True, []
    tokens = _tokenize(expr)
    pos = 0
    if tokens and tokens[0][1] == "~":
        pos = 1
    intercept = True
    if pos < len(tokens) and tokens[pos][0] == "zero":
        if pos + 1 >= len(tokens) or tokens[pos + 1][1] != "+":
            raise SpecError(f"'0' must be followed by '+' in moderator formula {expr!r}", key="mods")
        intercept = False
        pos += 2

    def expect_name():
        nonlocal pos
        if pos >= len(tokens) or tokens[pos][0] != "name":
            where = tokens[pos][2] + 1 if pos < len(tokens) else len(expr) + 1
            got = repr(tokens[pos][1]) if pos < len(tokens) else "end of formula"
            raise SpecError(
                f"expected a column name at position {where} in moderator formula {expr!r}, got {got}",
                key="mods",
            )
        pos += 1
        return tokens[pos - 1][1]

    def inter():
        nonlocal pos
        names = [expect_name()]
        while pos < len(tokens) and tokens[pos][1] == ":":
            pos += 1
            names.append(expect_name())
        return tuple(dict.fromkeys(names))

    terms: list[tuple[str, ...]] = []
    while True:
        factors = [inter()]
        while pos < len(tokens) and tokens[pos][1] == "*":
            pos += 1
            factors.append(inter())
        # a*b*c: every non-empty combination of the factors, each merged into one interaction
        for r in range(1, len(factors) + 1):
            for combo in itertools.combinations(factors, r):
                merged = tuple(dict.fromkeys(n for f in combo for n in f))
                terms.append(merged)
        if pos >= len(tokens):
            break
        if tokens[pos][1] != "+":
            raise SpecError(
                f"unexpected {tokens[pos][1]!r} at position {tokens[pos][2] + 1} in moderator "
                f"formula {expr!r}",
                key="mods",
            )
        pos += 1
    unique = list(dict.fromkeys(frozenset(t) for t in terms))
    by_set = {}
    for t in terms:
        by_set.setdefault(frozenset(t), t)
    ordered = sorted((by_set[u] for u in unique), key=len)  # stable: R orders terms by degree
    return intercept, ordered


def _is_categorical(series: pd.Series) -> bool:
    if isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(series):
        return True
    return not pd.api.types.is_numeric_dtype(series)


def _levels(series: pd.Series) -> list:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return [c for c in series.cat.categories if (series == c).any()]
    return sorted(pd.unique(series.dropna()), key=lambda v: (str(type(v)), v))


def _check_column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name not in frame.columns:
        raise DataError(
            f"moderator column not found (available: {', '.join(map(str, frame.columns))})",
            column=name,
        )
    series = frame[name]
    missing = np.flatnonzero(series.isna().to_numpy())
    if missing.size:
        raise DataError("missing value in a moderator", row=int(missing[0]) + 1, column=name)
    if _is_categorical(series):
        if len(_levels(series)) < 2:
            raise DataError("categorical moderator has only one level", column=name)
    elif np.ptp(series.to_numpy(dtype=float)) == 0:
        raise DataError("moderator is constant", column=name)
    return series


def _coding(series: pd.Series, name: str, full: bool) -> tuple[np.ndarray, list[str]]:
    """Columns for one variable: the value itself, or treatment (full if ``full``) dummies."""
    if not _is_categorical(series):
        return series.to_numpy(dtype=float)[:, None], [name]
    levels = _levels(series)
    used = levels if full else levels[1:]
    values = series.to_numpy()
    cols = np.column_stack([(values == lev).astype(float) for lev in used])
    return cols, [f"{name}[{lev}]" for lev in used]


def _full_coded(frame: pd.DataFrame, terms) -> str | None:
    """Without an intercept, R codes the first categorical main effect with one dummy per level."""
    for term in terms:
        if len(term) == 1 and term[0] in frame.columns and _is_categorical(frame[term[0]]):
            return term[0]
    return None


def _collinear_message(X: np.ndarray, names: list[str]) -> str:
    for j in range(1, X.shape[1]):
        A = X[:, :j]
        coef, *_ = np.linalg.lstsq(A, X[:, j], rcond=None)
        resid = X[:, j] - A @ coef
        if np.linalg.norm(resid) <= 1e-9 * max(1.0, np.linalg.norm(X[:, j])):
            involved = [names[i] for i in range(j) if abs(coef[i]) > 1e-9]
            return f"column '{names[j]}' is a linear combination of {involved}"
    return "columns are collinear"


def design_matrix(
    frame: pd.DataFrame, expr: str | None, *, intercept: bool = True
) -> tuple[np.ndarray, list[str]]:
    """Build the moderator design matrix ``X`` of a meta-regression ``y_i = x_i' beta + u_i + e_i``.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per study, holding the moderator columns.
    expr : str or None
        Moderator formula (see module docstring). ``None`` gives the intercept-only model.
    intercept : bool, default True
        Include an intercept column (a leading ``0 +`` in ``expr`` overrides this to False).

    Returns
    -------
    X : numpy.ndarray, shape (n, p)
    names : list of str
        Column names: ``intercept``, ``NAME``, ``NAME[LEVEL]``, ``A:B``.

    Raises
    ------
    SpecError
        The formula does not follow the grammar.
    DataError
        Unknown column, missing value (first row named, 1-based), a constant moderator or one
        with a single level, or a rank-deficient design (the collinear columns are named).

    References
    ----------
    Chambers, J. M., & Hastie, T. J. (1992). *Statistical Models in S*, ch. 2.
    """
    has_intercept, terms = parse_formula(expr)
    has_intercept = has_intercept and intercept
    n = len(frame)
    blocks = [np.ones((n, 1))] if has_intercept else []
    names = ["intercept"] if has_intercept else []
    for term in terms:
        for var in term:
            _check_column(frame, var)
    full_var = None if has_intercept else _full_coded(frame, terms)
    term_sets = {frozenset(t) for t in terms}
    for term in terms:
        cols, cnames = np.ones((n, 1)), [""]
        for var in term:
            if len(term) == 1:
                full = var == full_var
            else:  # R's rule: a factor is fully coded when its margin (the term without it) is absent
                full = frozenset(term) - {var} not in term_sets
            vcols, vnames = _coding(frame[var].reset_index(drop=True), var, full)
            cols = np.column_stack([cols[:, a] * vcols[:, b] for a in range(cols.shape[1]) for b in range(vcols.shape[1])])
            cnames = [f"{a}:{b}" if a else b for a in cnames for b in vnames]
        blocks.append(cols)
        names.extend(cnames)
    if not blocks:
        raise SpecError("the moderator formula leaves no columns (drop '0 +')", key="mods")
    X = np.column_stack(blocks)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise DataError("rank-deficient moderator design: " + _collinear_message(X, names))
    return X, names


def describe_coding(frame: pd.DataFrame, expr: str | None) -> list[str]:
    """Human-readable lines describing how each categorical moderator was coded.

    Parameters
    ----------
    frame : pandas.DataFrame
    expr : str or None

    Returns
    -------
    list of str
        e.g. ``["alloc: treatment coding, reference level 'alternate'"]``.
    """
    has_intercept, terms = parse_formula(expr)
    lines = []
    seen = set()
    for term in terms:
        for var in term:
            if var in seen or var not in frame.columns:
                continue
            seen.add(var)
            series = frame[var]
            if _is_categorical(series):
                levels = _levels(series)
                if not has_intercept and var == _full_coded(frame, terms):
                    lines.append(f"{var}: one indicator per level ({', '.join(map(repr, map(str, levels)))})")
                else:
                    lines.append(f"{var}: treatment coding, reference level {str(levels[0])!r}")
    return lines
