"""Moderator formulas: one small, safe formula language turned into a design matrix.

Every engine reads moderators through this module (the Bayesian engines via :func:`bayes_se.api.fit`
and the spec's ``[model] mods``, the frequentist :func:`bayes_se.frequentist.rma` and
:func:`~bayes_se.frequentist.rma_mv`, the prior-sensitivity grid and the CLI's ``--mods``), so one
formula gives the same columns, in the same order and under the same names, everywhere: the names
R's ``model.matrix`` (and so metafor) gives, except that the intercept is called ``intercept``.

Grammar (our own tokenizer; nothing is ever evaluated)::

    formula := ['~'] ['-'] item (('+' | '-') item)*
    item    := '0' | '1' | term ('*' term)*       only '0' added ('0 +', '+ 0') or '1' subtracted
                                                  ('- 1'): no intercept
    term    := var (':' var)*                     a:b  == interaction (product of codings)
    var     := NAME | 'factor' '(' NAME ')'       factor(x): the numeric code x as categorical
    NAME    := [A-Za-z_][A-Za-z0-9_.]*            so ``weeks.c`` is one column name

``a*b`` is ``a + b + a:b``. Terms are ordered as R orders them: by degree (main effects, then
two-way interactions, ...), in order of appearance within a degree, and the variables of an
interaction in the order they first appear in the formula.

Coding (R's rules):

* numeric columns (int/float, 0/1 too) enter as they are, under their name (``ablat``);
* ``factor(x)``, text columns, booleans and pandas Categoricals are categorical, coded with
  treatment contrasts: one indicator per level but the first, named ``NAME`` + level (``allocrandom``,
  ``factor(x)2``, ``blindTRUE``). Levels are sorted as R's ``factor`` sorts them (numbers
  numerically; text alphabetically, ignoring case, lower case first on a tie), a Categorical keeps
  its category order; the reference is the first level;
* a factor gets one indicator for *every* level where its margin (the term without it) is not in
  the model: a main effect in a model without intercept (the first such factor only), a factor in
  ``x:f`` without ``x``;
* an interaction's columns are the products of its variables' columns, the first variable varying
  fastest, named ``A:B`` (``factor(alloc)random:ablat``).

Missing values: a row with a missing value in any column the formula uses is left out (``na="omit"``,
with a :class:`~bayes_se.errors.DataWarning` naming the rows and study labels, as metafor's and
brms's ``na.omit``) or refused (``na="error"``, a :class:`~bayes_se.errors.DataError` naming row and
column).

References
----------
Chambers, J. M., & Hastie, T. J. (1992). *Statistical Models in S*, ch. 2 (formula semantics
mirrored here, including ``*`` expansion, term ordering and treatment contrasts); R Core Team,
``model.matrix`` and ``terms.formula`` (R 4.2).
"""

from __future__ import annotations

import itertools
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from bayes_se.errors import DataError, DataWarning, SpecError
from bayes_se.lazy import LazyModule

pd = LazyModule("pandas")  # a formula without moderators reads no column (issue 17)

__all__ = ["Design", "design_matrix", "describe_coding", "formula_columns", "parse_formula", "NA_ACTIONS"]

NA_ACTIONS = ("omit", "error")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?")
_SYMBOLS = {"+", ":", "*", "~", "-", "(", ")"}
_GRAMMAR = ("a moderator formula holds only column names, '+', ':', '*', a leading '~', "
            "'0 +' or '- 1' (no intercept) and factor(COLUMN)")
_FUNCTIONS = ("factor",)
_RESERVED_ROLE = {"yi": "the effect sizes", "vi": "the sampling variances", "study": "the study labels",
                  "cluster": "the cluster ids"}


def _error(expr: str, message: str) -> SpecError:
    return SpecError(f"{message} in moderator formula {expr!r}", key="mods")


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
        n = _NUMBER.match(expr, i)
        if m:
            tokens.append(("name", m.group(), i))
            i = m.end()
        elif n:
            tokens.append(("number", n.group(), i))
            i = n.end()
        elif ch in _SYMBOLS:
            tokens.append(("op", ch, i))
            i += 1
        else:
            raise SpecError(f"character {ch!r} at position {i + 1} of {expr!r} is not allowed; {_GRAMMAR}",
                            key="mods")
    return tokens


class _Parser:
    def __init__(self, expr: str):
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.pos = 0
        self.order: dict[str, None] = {}  # variables in order of first appearance

    def peek(self, offset: int = 0):
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def where(self) -> int:
        tok = self.peek()
        return tok[2] + 1 if tok else len(self.expr) + 1

    def var(self) -> str:
        tok = self.peek()
        if tok is None or tok[0] != "name":
            got = repr(tok[1]) if tok else "end of formula"
            raise _error(self.expr, f"expected a column name at position {self.where()}, got {got}")
        self.pos += 1
        nxt = self.peek()
        if nxt is None or nxt[1] != "(":
            label = tok[1]
        else:
            if tok[1] not in _FUNCTIONS:
                raise SpecError(
                    f"character '(' at position {nxt[2] + 1} of {self.expr!r} is not allowed after "
                    f"'{tok[1]}': the only function is factor(COLUMN); {_GRAMMAR}", key="mods")
            self.pos += 1
            inner = self.peek()
            if inner is None or inner[0] != "name":
                raise _error(self.expr, f"factor( must hold one column name (position {self.where()})")
            self.pos += 1
            close = self.peek()
            if close is None or close[1] != ")":
                raise _error(self.expr, f"expected ')' at position {self.where()} to close factor(")
            self.pos += 1
            label = f"{tok[1]}({inner[1]})"
        self.order.setdefault(label, None)
        return label

    def term(self) -> tuple[str, ...]:
        names = [self.var()]
        while (tok := self.peek()) is not None and tok[1] == ":":
            self.pos += 1
            names.append(self.var())
        return tuple(dict.fromkeys(names))

    def parse(self):
        intercept = True
        terms: list[tuple[str, ...]] = []
        tok = self.peek()
        if tok is not None and tok[1] == "~":
            self.pos += 1
        if self.peek() is None:
            return True, []
        sign, sign_at = "+", 0
        if self.peek()[1] == "-":
            sign, sign_at = "-", self.peek()[2]
            self.pos += 1
        while True:
            tok = self.peek()
            if tok is not None and tok[0] == "number":
                self.pos += 1
                if tok[1] not in ("0", "1"):
                    raise _error(self.expr, f"the number {tok[1]} at position {tok[2] + 1} is not a term "
                                            "(only '0 +' or '- 1', for no intercept)")
                if sign == "-" and tok[1] == "0":
                    raise _error(self.expr, f"'- 0' at position {tok[2] + 1} is not supported")
                if sign == "+" and tok[1] == "1":
                    raise _error(self.expr, f"'1' at position {tok[2] + 1}: the intercept is in the model "
                                            "unless '0 +' or '- 1' drops it; leave the '1' out")
                intercept = False
                nxt = self.peek()
                if nxt is not None and nxt[0] == "name" and tok[1] == "0":
                    raise _error(self.expr, "'0' must be followed by '+'")
            elif sign == "-":
                raise SpecError(f"character '-' at position {sign_at + 1} of {self.expr!r} "
                                f"is not allowed here: only '- 1' (no intercept) can be subtracted; {_GRAMMAR}",
                                key="mods")
            else:
                factors = [self.term()]
                while (t := self.peek()) is not None and t[1] == "*":
                    self.pos += 1
                    factors.append(self.term())
                # a*b*c: every non-empty combination of the factors, each merged into one interaction
                for r in range(1, len(factors) + 1):
                    for combo in itertools.combinations(factors, r):
                        terms.append(tuple(dict.fromkeys(n for f in combo for n in f)))
            tok = self.peek()
            if tok is None:
                break
            if tok[1] not in ("+", "-"):
                raise _error(self.expr, f"unexpected {tok[1]!r} at position {tok[2] + 1}")
            sign, sign_at = tok[1], tok[2]
            self.pos += 1
            if self.peek() is None:
                raise _error(self.expr, f"expected a column name at position {self.where()}, got end of formula")
        rank = {name: i for i, name in enumerate(self.order)}
        by_set: dict[frozenset, tuple[str, ...]] = {}
        for t in terms:  # R: variables of a term in order of first appearance in the formula
            by_set.setdefault(frozenset(t), tuple(sorted(t, key=rank.__getitem__)))
        ordered = sorted(by_set.values(), key=len)  # stable: R orders terms by degree
        return intercept, ordered


def parse_formula(expr: str | None) -> tuple[bool, list[tuple[str, ...]]]:
    """Parse a moderator formula.

    Parameters
    ----------
    expr : str or None
        The formula, e.g. ``"ablat + alloc"``, ``"~ factor(alloc) * ablat"``, ``"0 + grade"``,
        ``"grade - 1"``. ``None``, ``""`` or ``"~"`` is the intercept-only model.

    Returns
    -------
    intercept : bool
        False for ``0 +`` / ``+ 0`` / ``- 1`` (the only numbers a formula takes).
    terms : list of tuple of str
        Each term is a tuple of variables (``"x"`` or ``"factor(x)"``; one for a main effect,
        several for an interaction), in R's order: main effects first, then two-way interactions,
        and so on.

    Raises
    ------
    SpecError
        The formula does not follow the grammar (the position is named).
    """
    if expr is None or not str(expr).strip():
        return True, []
    return _Parser(str(expr)).parse()


def _column_of(var: str) -> tuple[str, bool]:
    """(column name, forced categorical) of a variable label ``x`` or ``factor(x)``."""
    if var.endswith(")") and "(" in var:
        return var[var.index("(") + 1 : -1], True
    return var, False


def formula_columns(expr: str | None) -> list[str]:
    """The data columns a formula uses, in order of first appearance (``factor(x)`` -> ``x``)."""
    _, terms = parse_formula(expr)
    cols: dict[str, None] = {}
    for term in terms:
        for var in term:
            cols.setdefault(_column_of(var)[0], None)
    return list(cols)


def _is_categorical(series: pd.Series) -> bool:
    if isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(series):
        return True
    return not pd.api.types.is_numeric_dtype(series)


def level_text(value) -> str:
    """A level as R prints it in a coefficient name: ``TRUE``, ``2`` (not ``2.0``), ``0.5``."""
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else format(v, ".15g")
    return str(value)


def _text_key(text: str):
    # R's sort() in an English locale: letters compared ignoring case, lower case first on a tie
    return (text.casefold(), text.swapcase())


def _levels(series: pd.Series) -> list:
    """Levels present in ``series`` (no missing values), in R's order."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        present = set(series.dropna().tolist())
        return [c for c in series.cat.categories if c in present]
    values = pd.unique(series.dropna())
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return sorted(values)
    numbers = [v for v in values if isinstance(v, (int, float, np.integer, np.floating))
               and not isinstance(v, (bool, np.bool_))]
    if len(numbers) == len(values):
        return sorted(values)
    return sorted(values, key=lambda v: _text_key(level_text(v)))


def _missing_mask(series: pd.Series) -> np.ndarray:
    return series.isna().to_numpy(dtype=bool)


@dataclass(frozen=True, eq=False)
class Design:
    """A moderator design matrix and where its rows came from.

    Unpacks and indexes as the pair ``(X, names)`` (so it can stand where that pair did).

    Attributes
    ----------
    X : ndarray, shape (n_kept, p)
        One row per kept row of the data, in data order.
    names : list of str
        Column names (``intercept``, ``ablat``, ``allocrandom``, ``factor(alloc)random:ablat``).
    rows : ndarray of int
        0-based positions, in the data, of the rows of ``X``.
    omitted_rows : list of int
        1-based data rows left out for a missing moderator (empty under ``na="error"``).
    omitted_labels : list of str
        Their study labels (or row numbers when no labels were given).
    coding : list of str
        How each categorical variable was coded (see :func:`describe_coding`).
    formula : str or None
        The formula as given.
    """

    X: np.ndarray
    names: list
    rows: np.ndarray
    omitted_rows: list = field(default_factory=list)
    omitted_labels: list = field(default_factory=list)
    coding: list = field(default_factory=list)
    formula: str | None = None

    def __iter__(self):
        return iter((self.X, self.names))

    def __getitem__(self, index):
        return (self.X, self.names)[index]

    def __len__(self) -> int:
        return 2

    @property
    def intercept(self) -> bool:
        """True when the first column is the intercept."""
        return bool(self.names) and self.names[0] == "intercept"


def _collinear_message(X: np.ndarray, names: list[str]) -> str:
    for j in range(1, X.shape[1]):
        A = X[:, :j]
        coef, *_ = np.linalg.lstsq(A, X[:, j], rcond=None)
        resid = X[:, j] - A @ coef
        if np.linalg.norm(resid) <= 1e-9 * max(1.0, np.linalg.norm(X[:, j])):
            involved = [names[i] for i in range(j) if abs(coef[i]) > 1e-9]
            return f"column '{names[j]}' is a linear combination of {involved}"
    return "columns are collinear"


def _resolve_columns(frame: pd.DataFrame, terms, reserved) -> dict[str, tuple[str, bool]]:
    """Variable label -> (column, categorical?), checking every column exists and may be used."""
    available = [str(c) for c in frame.columns if c not in reserved]
    out = {}
    for term in terms:
        for var in term:
            if var in out:
                continue
            col, forced = _column_of(var)
            if col in reserved:
                what = _RESERVED_ROLE.get(col, "the effects or their variances")
                raise DataError(
                    f"the moderator formula uses '{col}', which holds {what}, not a moderator; the "
                    f"moderator columns are: {', '.join(available) or '(none)'}", column=col)
            if col not in frame.columns:
                raise DataError(
                    f"moderator column not found (available: {', '.join(available) or '(none)'})", column=col)
            out[var] = (col, forced or _is_categorical(frame[col]))
    return out


def _row_text(i: int, labels) -> str | int:
    if labels is None:
        return i + 1
    return f"{i + 1} (study '{labels[i]}')"


def _factor_values(series: pd.Series) -> tuple[np.ndarray, list]:
    """(values, levels) of a categorical variable; ``factor()`` of a numeric column uses its numbers."""
    values = series.to_numpy()
    if isinstance(series.dtype, pd.CategoricalDtype):
        values = np.asarray(series.astype(object))
    return values, _levels(series)


def design_matrix(
    frame: pd.DataFrame,
    expr: str | None,
    *,
    intercept: bool = True,
    na: str = "error",
    labels=None,
    reserved=("yi", "vi"),
) -> Design:
    """Build the moderator design matrix ``X`` of a meta-regression ``y_i = x_i' beta + u_i + e_i``.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per effect, holding the moderator columns.
    expr : str or None
        Moderator formula (module docstring). ``None`` gives the intercept-only model.
    intercept : bool, default True
        Include an intercept column (``0 +`` or ``- 1`` in ``expr`` overrides this to False).
    na : {"error", "omit"}, default "error"
        A missing value in a column the formula uses: raise, or leave the row out (with a
        :class:`~bayes_se.errors.DataWarning`). The high-level entry points (``fit``, ``rma``,
        ``EffectData.design``) default to ``"omit"``, as metafor and brms do.
    labels : sequence of str, optional
        Study labels, named with the row numbers in messages.
    reserved : sequence of str
        Columns a formula may not use (the effects and variances).

    Returns
    -------
    Design
        ``X`` (kept rows only), ``names``, ``rows`` (their 0-based positions), ``omitted_rows``
        (1-based); unpacks as ``X, names``.

    Raises
    ------
    SpecError
        The formula does not follow the grammar, or ``na`` is unknown.
    DataError
        Unknown or reserved column (the available ones are listed), a missing value under
        ``na="error"`` (row and column named), no row left, a constant moderator or one with a
        single level, infinite values, or a rank-deficient design (the collinear columns are named).

    References
    ----------
    Chambers, J. M., & Hastie, T. J. (1992). *Statistical Models in S*, ch. 2.
    """
    if na not in NA_ACTIONS:
        raise SpecError(f"na must be 'omit' or 'error', got {na!r}", key="na")
    has_intercept, terms = parse_formula(expr)
    has_intercept = has_intercept and intercept
    if terms or not (hasattr(frame, "columns") and isinstance(getattr(frame, "shape", None), tuple)):
        frame = pd.DataFrame(frame).reset_index(drop=True)
    n_all = frame.shape[0]  # (without moderators any table with a shape and columns will do)
    if labels is not None:
        labels = [str(v) for v in labels]
        if len(labels) != n_all:
            raise DataError(f"{len(labels)} study labels for {n_all} rows of moderators", column="study")
    variables = _resolve_columns(frame, terms, set(reserved))
    columns = list(dict.fromkeys(col for col, _ in variables.values()))

    # missing values: refuse, or leave the row out (R's na.omit)
    missing = np.zeros(n_all, dtype=bool)
    missing_in: dict[int, list[str]] = {}
    for col in columns:
        mask = _missing_mask(frame[col])
        if mask.all():
            raise DataError("the moderator is missing in every row", column=col)
        if mask.any() and na == "error":
            i = int(np.flatnonzero(mask)[0])
            raise DataError("missing value in a moderator (na='omit', CLI --na omit, leaves such rows out)",
                            row=_row_text(i, labels), column=col)
        for i in np.flatnonzero(mask):
            missing_in.setdefault(int(i), []).append(col)
        missing |= mask
    rows = np.flatnonzero(~missing)
    omitted = [int(i) + 1 for i in np.flatnonzero(missing)]
    omitted_labels = [labels[i - 1] if labels is not None else str(i) for i in omitted]
    if omitted:
        if rows.size == 0:
            raise DataError(f"every row has a missing value in one of the moderator columns {', '.join(columns)}")
        shown = [f"{r}" + (f" ('{lab}')" if labels is not None else "") + f": {', '.join(missing_in[r - 1])}"
                 for r, lab in zip(omitted, omitted_labels)]
        warnings.warn(
            f"{len(omitted)} row(s) with a missing moderator left out of the model (row: column): "
            f"{'; '.join(shown)}. Pass na='error' (CLI: --na error) to refuse them instead",
            DataWarning, stacklevel=2)
    data = frame.iloc[rows].reset_index(drop=True) if variables else None
    n = len(rows)

    # per-variable columns, checked
    codings: dict[str, tuple] = {}
    for var, (col, categorical) in variables.items():
        series = data[col]
        if categorical:
            values, levels = _factor_values(series)
            if len(levels) < 2:
                raise DataError(f"categorical moderator has only one level ({level_text(levels[0])!r})"
                                if levels else "categorical moderator has no level", column=col)
            codings[var] = ("factor", values, levels)
        else:
            x = series.to_numpy(dtype=float)
            bad = np.flatnonzero(~np.isfinite(x))
            if bad.size:
                raise DataError("infinite moderator value", row=_row_text(int(rows[bad[0]]), labels), column=col)
            if np.ptp(x) == 0:
                raise DataError("moderator is constant", column=col)
            codings[var] = ("numeric", x, None)

    # R's rule (model.c TermCode): a factor is coded by contrasts where its margin (the term
    # without it) is in the model, else by one indicator per level; the empty margin is the
    # intercept, and without one the first factor needing it takes its place
    spanned = has_intercept
    term_sets = set()
    blocks = [np.ones((n, 1))] if has_intercept else []
    names = ["intercept"] if has_intercept else []
    full_main: list[str] = []
    for term in terms:
        cols, cnames = [np.ones(n)], [""]
        for var in term:
            kind, values, levels = codings[var]
            if kind == "numeric":
                vcols, vnames = [values], [var]
            else:
                margin = frozenset(term) - {var}
                if margin:
                    full = margin not in term_sets
                elif spanned:
                    full = False
                else:
                    full, spanned = True, True
                    full_main.append(var)
                used = levels if full else levels[1:]
                vcols = [(values == lev).astype(float) for lev in used]
                vnames = [f"{var}{level_text(lev)}" for lev in used]
            # the first variable varies fastest, as in R
            cols = [c * v for v in vcols for c in cols]
            cnames = [f"{a}:{b}" if a else b for b in vnames for a in cnames]
        term_sets.add(frozenset(term))
        blocks.append(np.column_stack(cols))
        names.extend(cnames)
    if not blocks:
        raise SpecError("the moderator formula leaves no columns (drop '0 +' / '- 1')", key="mods")
    X = np.column_stack(blocks)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise DataError("rank-deficient moderator design: " + _collinear_message(X, names))
    coding = []
    for var, (kind, _, levels) in codings.items():
        if kind == "factor":
            if var in full_main:
                coding.append(f"{var}: one indicator per level ({', '.join(repr(level_text(v)) for v in levels)})")
            else:
                coding.append(f"{var}: treatment coding, reference level {level_text(levels[0])!r}")
    return Design(X=X, names=names, rows=rows, omitted_rows=omitted, omitted_labels=omitted_labels,
                  coding=coding, formula=expr)


def describe_coding(frame: pd.DataFrame, expr: str | None) -> list[str]:
    """Human-readable lines describing how each categorical moderator was coded.

    Parameters
    ----------
    frame : pandas.DataFrame
    expr : str or None

    Returns
    -------
    list of str
        e.g. ``["alloc: treatment coding, reference level 'alternate'"]`` (rows with a missing
        moderator left out silently).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return design_matrix(frame, expr, na="omit", reserved=()).coding
