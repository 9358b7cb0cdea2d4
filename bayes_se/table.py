"""The one reader of users' tables: encoding, delimiter, decimal mark, numbers and missing cells.

Every table bayes_se takes from a user (effect sizes for :func:`bayes_se.data.load_effects`,
correlations for :func:`bayes_se.correlations.load_correlations`, ``bayes-se check``) is read here,
so one set of rules decides what a file means; docs/bad_input.md lists them. In short:

* **Encoding**: a byte-order mark decides (UTF-8, UTF-16 LE/BE, UTF-32 LE/BE); else UTF-8; a file
  that is not UTF-8 is read as cp1252 (Windows Latin-1; Latin-1 where cp1252 leaves a byte
  undefined) with a warning naming the encoding; a file mixing UTF-8 and cp1252 lines is decoded
  line by line with a warning naming the lines read as cp1252. ``encoding=`` overrides (decoded
  strictly: a bad byte is an error naming the line).
* **Delimiter**: ``, ; tab |``; Excel's first line ``sep=;`` is honoured; else the delimiter that
  splits the first 50 lines into the most, equally many, fields (``sep=`` overrides).
* **Decimal mark**: ``,`` when the numbers look like ``0,5`` and none like ``0.5`` (never sniffed
  for ``,``-delimited files); else ``.`` (``decimal=`` overrides).
* **Numbers** follow a data grammar, not Python's ``float()``: optional sign, ASCII digits, at most
  one decimal mark, optional exponent (``-1.5``, ``.5``, ``2.``, ``1e-3``). Thousands separators
  are read only when unambiguous (see :func:`parse_number`); ``1_000``, ``inf``, ``1e999`` and
  non-ASCII digits are refused.
* **Missing cells** are exactly: an empty cell (or only spaces), ``NA``, ``NaN`` (any letter case:
  ``na``, ``nan``, ``NAN``) and ``.``. Everything else is data: a study called ``None``, a
  moderator level ``none`` or ``-``.
* Rows of only delimiters (Excel's empty rows) and blank lines are skipped, with a note; a short
  row is padded with missing cells, with a note; a row with more (non-empty) fields than the
  header is an error.

Row numbers in messages count data rows: the first row under the header is row 1, and skipped
rows keep their numbers, so row N is the N-th record under the header in a spreadsheet.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import os
import re
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

from bayes_se.errors import DataError, DataWarning
from bayes_se.lazy import LazyModule

pd = LazyModule("pandas")  # only where a DataFrame is built: reading a file needs none (issue 17)

__all__ = ["Table", "TextCells", "ColumnInfo", "read_table", "check_readable", "parse_number", "is_missing", "label",
           "label_column", "number_column",
           "infer_column", "NotANumber", "check_options", "MISSING_MARKERS", "DELIMITERS", "DECIMALS",
           "MAX_FILE_BYTES"]

MAX_FILE_BYTES = 200 * 1024**2  # larger files are refused unread: an effect table is never that big
DELIMITERS = (",", ";", "\t", "|")
DECIMALS = (".", ",")
#: The cells read as missing (after stripping spaces); NA and NaN in any letter case.
MISSING_MARKERS = ("", "NA", "NaN", ".")
_MISSING_FOLDED = {m.casefold() for m in MISSING_MARKERS}
_SNIFF_LINES = 50
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_SEP_ALIASES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
_EXCEL_SEP = re.compile(r'^\s*"?sep=(.)"?\s*$', re.IGNORECASE)
_EXP_BODY = r"[eE][+-]?[0-9]+"
_EXP = rf"(?:{_EXP_BODY})?"
_NUMBER = {d: re.compile(rf"^[+-]?(?:[0-9]+(?:{re.escape(d)}[0-9]*)?|{re.escape(d)}[0-9]+){_EXP}$")
           for d in DECIMALS}
_NON_FINITE = {"inf", "infinity", "nan"}
_MISSING_LOOKALIKES = {"-", "--", "n/a", "n.a.", "null", "none", "missing", "?", "na.", "#na", "nil", "—", "–"}
_EXCEL_ERRORS = {"#n/a", "#div/0!", "#value!", "#ref!", "#name?", "#num!", "#null!", "#n/a!"}
_GROUP_MARKS = {".": (",", " ", "\u00a0", "\u202f", "'"), ",": (".", " ", "\u00a0", "\u202f", "'")}
_PLAIN_DELETE = str.maketrans("", "", "0123456789+-.eE")  # the characters of plain numbers (decimal '.')
_MAY_GROUP = re.compile(r"[+-]?[1-9]").match  # how every number with thousands separators starts (_grouped)
# ... and whether any cell of a column joined by NUL (a file holds none) starts so, or as a plain number does
# (searched in "\x00" + the joined cells: a literal first character, which the regex engine finds fast)
_ANY_MAY_GROUP = re.compile(r"\x00[+-]?[1-9]").search
_ANY_MAY_BE_PLAIN = {d: re.compile(rf"\x00[+-]?[0-9{re.escape(d)}]").search for d in DECIMALS}


class NotANumber(ValueError):
    """A cell that is not a number by the data grammar; ``str()`` says why (and how to fix it).

    ``numberlike`` is True when the text looks meant as a number (``1,234``, ``inf``, ``1_0``,
    ``0,5`` under decimal ``.``): a column of such cells is refused rather than read as labels.
    """

    def __init__(self, message: str, numberlike: bool = False):
        super().__init__(message)
        self.numberlike = numberlike


def _hint_decimal(decimal: str) -> str:
    other = "," if decimal == "." else "."
    name = "a comma" if other == "," else "a point"
    return f"is the decimal mark {name}? try --decimal {other} (decimal='{other}' in Python)"


def _pandas_na(cell) -> bool:
    """True for pandas' NA and NaT (looked up only when pandas is loaded: no cell can be one before)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and (cell is pandas.NA or cell is pandas.NaT)


def is_missing(cell) -> bool:
    """True for None, NaN, pandas' NA/NaT and the text markers of :data:`MISSING_MARKERS`."""
    if cell is None or _pandas_na(cell):
        return True
    if isinstance(cell, (float, np.floating)):
        return math.isnan(cell)
    if isinstance(cell, str):
        return cell.strip().casefold() in _MISSING_FOLDED
    return False


def parse_number(cell, decimal: str = ".") -> float:
    """A cell as a float by the data grammar; NaN when the cell is missing (:func:`is_missing`).

    Grammar: ``[+-]? (DIGITS [D DIGITS?] | D DIGITS) ([eE] [+-]? DIGITS)?`` with ``D`` the decimal
    mark and DIGITS the ASCII digits 0-9; spaces around the number are ignored. Thousands
    separators (the other mark of ``. ,``, a space, a no-break space or ``'``) are read when the
    grouping is unambiguous: groups of three digits after a first group of 1-3 digits not starting
    with 0, and either two or more separators (``1,234,567``) or a decimal part (``1,234.5``;
    ``1.234,5`` under decimal ``,``) or a separator that cannot be a decimal mark (space, ``'``).
    ``1,234`` under decimal ``.`` (or ``1.234`` under ``,``) is ambiguous and refused.

    Numbers from a DataFrame (int, float) pass through as floats.

    Raises
    ------
    NotANumber
        Text that is not a number, ``inf``/``nan`` words other than the missing markers, digit
        separators ``_``, non-ASCII digits, numbers beyond the float range, True/False.
    """
    if isinstance(cell, (bool, np.bool_)):
        raise NotANumber(f"expected a number, found the logical value {cell}")
    if isinstance(cell, (int, np.integer)):
        return float(cell)
    if isinstance(cell, (float, np.floating)):
        return float(cell)
    if cell is None or _pandas_na(cell):
        return math.nan
    if not isinstance(cell, str):
        raise NotANumber(f"expected a number, found {type(cell).__name__} {str(cell)[:40]!r}")
    text = cell.strip()
    if text.casefold() in _MISSING_FOLDED:
        return math.nan
    if _NUMBER[decimal].match(text):
        value = float(text.replace(decimal, ".") if decimal != "." else text)
        if not math.isfinite(value):
            raise NotANumber(f"the number {text[:40]!r} is beyond the floating-point range", True)
        return value
    grouped = _grouped(text, decimal)
    if grouped is not None:
        return grouped
    raise _why_not(text, decimal)


def _grouped(text: str, decimal: str):
    """The value of a number with unambiguous thousands separators, None when ``text`` has none;
    raises :class:`NotANumber` when the grouping is ambiguous."""
    d = re.escape(decimal)
    for mark in _GROUP_MARKS[decimal]:
        g = re.escape(mark)
        match = re.match(rf"^([+-]?)([1-9][0-9]{{0,2}})((?:{g}[0-9]{{3}})+)({d}[0-9]*)?({_EXP_BODY})?$",
                         text)
        if not match:
            continue
        groups = match.group(3).count(mark)
        if mark in ".," and groups == 1 and not match.group(4):
            plain = text.replace(mark, "")
            as_decimal = text.replace(mark, ".")
            point = "a decimal comma" if mark == "," else "a decimal point"
            raise NotANumber(
                f"{text!r} is ambiguous: {plain} with a thousands separator, or {as_decimal} with {point}? "
                f"The decimal mark is {decimal!r}; write numbers without thousands separators, or, if "
                f"{mark!r} is the decimal mark, try --decimal {mark} (decimal='{mark}' in Python)", True)
        digits = match.group(1) + match.group(2) + match.group(3).replace(mark, "")
        digits += (match.group(4) or "").replace(decimal, ".") + (match.group(5) or "")
        value = float(digits)
        if not math.isfinite(value):
            raise NotANumber(f"the number {text[:40]!r} is beyond the floating-point range", True)
        return value
    return None


def _why_not(text: str, decimal: str) -> NotANumber:
    shown = repr(text[:40])
    folded = text.casefold().lstrip("+-")
    if folded in _NON_FINITE:
        return NotANumber(f"the value {shown} is not a finite number (missing cells are written empty, "
                          "NA, NaN or '.'; infinite values are not accepted)", True)
    if text.casefold() in _EXCEL_ERRORS:
        return NotANumber(f"expected a number, found the spreadsheet error {shown} (missing cells are "
                          "written empty, NA, NaN or '.')")
    other = "," if decimal == "." else "."
    if _NUMBER[other].match(text) and other in text:
        return NotANumber(f"expected a number, found the text {shown}: {_hint_decimal(decimal)}", True)
    try:
        float(text)
    except ValueError:
        pass
    else:  # Python would read it, the data grammar does not
        if "_" in text:
            return NotANumber(f"expected a number, found {shown}: digit separators '_' are not accepted", True)
        if not text.isascii():
            return NotANumber(f"expected a number, found {shown}: only the digits 0-9 are read", True)
        return NotANumber(f"expected a number, found {shown}", True)
    if re.fullmatch(r"[+-]?[0-9]{1,3}(?:[.,' \u00a0\u202f][0-9]{3})+(?:[.,][0-9]+)?", text):
        return NotANumber(f"expected a number, found {shown}: thousands separators are read only in "
                          "unambiguous groups of three digits; write the number without them", True)
    if text.casefold() in _MISSING_LOOKALIKES:
        return NotANumber(f"expected a number, found the text {shown} (missing cells are written empty, NA, "
                          "NaN or '.')")
    return NotANumber(f"expected a number, found the text {shown}")


def number_column(values, column: str, decimal: str, where=None) -> np.ndarray:
    """Floats of a column (NaN where missing); ``where(i)`` names row ``i`` in errors.

    Raises :class:`DataError` naming the row and column of the first cell that is not a number.
    """
    where = where or (lambda i: i + 1)
    values = list(values)
    out = _plain_numbers(values, decimal)
    # the cells that are not plain numbers (missing, grouped, numbers from a DataFrame, errors) one by one
    for i in np.flatnonzero(~np.isfinite(out)):
        try:
            out[i] = parse_number(values[i], decimal)
        except NotANumber as exc:
            raise DataError(str(exc), row=where(int(i)), column=column) from None
    return out


def _plain_numbers(values: list, decimal: str) -> np.ndarray:
    """Floats of the text cells that are plain numbers of the grammar (``[+-]digits[D digits][e..]``),
    NaN elsewhere: the common case at C speed (NumPy parses the text with Python's own
    correctly rounded reader), so 200,000 rows do not go through :func:`parse_number` one by one."""
    if set(map(type, values)) == {str}:  # a file's text cells: stripped at C speed
        texts = list(map(str.strip, values))
    else:
        texts = [cell.strip() if type(cell) is str else "" for cell in values]
    if decimal == "." and texts and not "".join(texts).translate(_PLAIN_DELETE):
        # only digits, signs, points and exponent letters: there Python's float() reads exactly the
        # strings of the grammar (it refuses the rest: "", ".", "1e", "+-1"), so one pass of float()
        # decides the whole column; a cell it refuses sends the column down the path below
        try:
            return np.fromiter(map(float, texts), dtype=float, count=len(texts))
        except ValueError:
            pass
    out = np.full(len(values), np.nan)
    if _ANY_MAY_BE_PLAIN[decimal]("\x00" + "\x00".join(texts)) is None:  # no cell starts as a number (text labels)
        return out
    match = _NUMBER[decimal].match
    plain = np.array([match(t) is not None for t in texts], dtype=bool)
    if plain.any():
        chosen = [t for t, ok in zip(texts, plain) if ok]
        if decimal != ".":
            chosen = [t.replace(decimal, ".") for t in chosen]
        with np.errstate(over="ignore"):
            out[plain] = np.array(chosen, dtype=float)
    return out


@dataclass(frozen=True)
class ColumnInfo:
    """What :func:`infer_column` understood of a column.

    ``kind``: ``"integer"``, ``"number"``, ``"text"`` or ``"empty"`` (every cell missing);
    ``values``: a float Series (numbers, NaN where missing) or an object Series of stripped text
    labels (None where missing); ``note``: a remark worth showing the user, or ''.
    """

    name: str
    kind: str
    values: pd.Series
    missing: int
    note: str = ""

    @property
    def levels(self) -> list:
        """Distinct present values, in order of first appearance."""
        return list(dict.fromkeys(self.values.dropna()))


def label(cell):
    """A cell as a text label (stripped), None when missing; a float 3.0 is written '3'."""
    if is_missing(cell):
        return None
    if isinstance(cell, (float, np.floating)) and float(cell).is_integer():
        return str(int(cell))
    return str(cell).strip()


def label_column(values) -> list:
    """``[label(cell) for cell in values]``: a column's cells as text labels (None where missing)."""
    cells = list(values)
    if cells and set(map(type, cells)) == {str}:  # a file's text cells, at C speed
        stripped = list(map(str.strip, cells))
        return [None if text.casefold() in _MISSING_FOLDED else text for text in stripped]
    return [label(cell) for cell in cells]


def infer_column(values, name: str, decimal: str, where=None, *, series: bool = True) -> ColumnInfo:
    """Numbers when every present cell is a number, else text labels.

    A column whose cells all look meant as numbers but some break the grammar (``1,234``,
    ``inf``, ``0,5`` under decimal ``.``) is refused (a :class:`DataError` naming the row), so it
    never silently becomes a categorical moderator. A column mixing numbers with other text is read
    as text, with a note naming the first text cell.

    ``series=False`` gives ``values`` without pandas: a float ndarray (numbers, NaN where missing)
    or a list of labels (None where missing), the values of the Series ``series=True`` gives.
    """
    where = where or (lambda i: i + 1)
    cells = list(values)
    if cells and set(map(type, cells)) == {str}:  # a file's text cells: the same answer, faster
        return _infer_text_column(cells, name, decimal, where, series)
    present = [i for i, v in enumerate(cells) if not is_missing(v)]
    missing = len(cells) - len(present)
    if not present:
        empty = np.full(len(cells), np.nan)
        return ColumnInfo(name, "empty", pd.Series(empty, dtype=float) if series else empty, missing)
    numbers = np.full(len(cells), np.nan)
    first_numberlike = first_text = None
    for i in present:
        try:
            numbers[i] = parse_number(cells[i], decimal)
        except NotANumber as exc:
            if exc.numberlike:
                first_numberlike = first_numberlike or (i, exc)
            elif first_text is None:
                first_text = i
    return _decided(name, numbers, present, missing, first_text, first_numberlike,
                    lambda: [label(v) for v in cells], bool(np.isfinite(numbers).any()), where, series)


def _decided(name, numbers, present, missing, first_text, first_numberlike, texts, found_number, where,
             series) -> ColumnInfo:
    """The ColumnInfo of a scanned column: numbers (integer or not) when no cell was text, the
    first number-like cell's error when one was malformed, else text labels (``texts()``), with a
    note when some cells were numbers."""
    if first_text is None and first_numberlike is None:
        finite = numbers[present]
        kind = "integer" if np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 2**53) else "number"
        return ColumnInfo(name, kind, pd.Series(numbers) if series else numbers, missing)
    if first_text is None:
        i, exc = first_numberlike
        raise DataError(str(exc), row=where(i), column=name)
    labels = texts()
    note = ""
    if found_number:
        note = (f"column '{name}' mixes numbers with text (first text {labels[first_text]!r} on row "
                f"{where(first_text)}): read as text labels; missing cells are written empty, NA, NaN or '.'")
    return ColumnInfo(name, "text", pd.Series(labels, dtype=object) if series else labels, missing, note)


def _infer_text_column(cells: list, name: str, decimal: str, where, series: bool) -> ColumnInfo:
    """:func:`infer_column` of a column of text cells (a file's): the same result, the same errors
    and notes, for 200,000 rows in a fraction of the time. The plain numbers of the grammar are read
    in one pass (:func:`_plain_numbers`); only the other present cells go through
    :func:`parse_number`, in row order (so the first text and the first number-like cell are the
    same ones), and once a text cell has decided that the column is text, the remaining cells are
    parsed only until one number is found (which the note needs), skipping those that cannot be
    numbers (a number with thousands separators starts ``[+-]?[1-9]``)."""
    stripped = list(map(str.strip, cells))
    # is_missing of a str, decided once per distinct cell (a moderator has few)
    gone = {text for text in set(stripped) if text.casefold() in _MISSING_FOLDED}
    missing_at = [text in gone for text in stripped] if gone else [False] * len(stripped)
    missing = sum(missing_at)
    if missing == len(cells):
        empty = np.full(len(cells), np.nan)
        return ColumnInfo(name, "empty", pd.Series(empty, dtype=float) if series else empty, missing)
    numbers = _plain_numbers(stripped, decimal)
    present = ~np.array(missing_at, dtype=bool)
    found_number = bool(np.isfinite(numbers).any())  # missing cells read as NaN: only present ones count
    first_numberlike = first_text = None
    may_group = None  # whether any cell starts as a number with thousands separators does
    for i in np.flatnonzero(present & ~np.isfinite(numbers)).tolist():
        if first_text is not None:  # the column is text: does any other cell hold a number (for the note)?
            if found_number:
                break
            if may_group is None:
                may_group = _ANY_MAY_GROUP("\x00" + "\x00".join(stripped)) is not None
            if not may_group:  # no cell left can be a number
                break
            if not _MAY_GROUP(stripped[i]):
                continue
        try:
            numbers[i] = parse_number(cells[i], decimal)
            found_number = True
        except NotANumber as exc:
            if exc.numberlike:
                first_numberlike = first_numberlike or (i, exc)
            elif first_text is None:
                first_text = i
    return _decided(name, numbers, present, missing, first_text, first_numberlike,
                    lambda: [None if gone else text for text, gone in zip(stripped, missing_at)],  # label() of a str
                    found_number, where, series)


# --------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Table:
    """A table as read: cells, where they came from, and how the file was understood.

    Attributes
    ----------
    cells : pandas.DataFrame or TextCells
        The user's DataFrame (index reset), or a file's header and rows of text cells.
    frame : pandas.DataFrame
        The cells: text for a file (stripped column names; empty rows dropped; built on first use,
        as :meth:`column` reads a file's cells without pandas), the user's values for a DataFrame.
    rows : tuple of int
        The 1-based data row number of each row of ``frame`` (skipped rows keep their numbers).
    source : str
        The path, or ``"<DataFrame>"``.
    sep, decimal, encoding : str or None
        Delimiter, decimal mark and encoding used (None: not a file).
    how : dict
        For ``sep``, ``decimal`` and ``encoding``: ``"sniffed"``, ``"given"`` or (``sep``)
        ``"sep= line"`` (Excel's first line).
    notes : tuple of str
        What the reader did that a user should know (skipped rows, fallback encodings).
    """

    cells: object
    rows: tuple
    source: str
    sep: str | None
    decimal: str
    encoding: str | None
    how: dict = field(default_factory=dict)
    notes: tuple = ()

    @property
    def frame(self) -> pd.DataFrame:
        """The cells as a DataFrame (a file's: object columns of text, made on first use)."""
        if isinstance(self.cells, TextCells):
            object.__setattr__(self, "cells", self.cells.to_frame())
        return self.cells

    @property
    def columns(self) -> list:
        """The column names."""
        return list(self.cells.header if isinstance(self.cells, TextCells) else self.cells.columns)

    @property
    def n_rows(self) -> int:
        """The number of data rows."""
        return len(self.rows)

    def column(self, name):
        """The cells of column ``name``: a list of text cells for a file (no pandas), a Series for a
        DataFrame."""
        if isinstance(self.cells, TextCells):
            return self.cells.column(name)
        return self.cells[name]

    def where(self, i: int) -> int:
        """The data row number of ``frame`` row ``i``."""
        return self.rows[i]

    def warn(self, stacklevel: int = 3) -> None:
        """Issue each note as a :class:`bayes_se.errors.DataWarning`."""
        for note in self.notes:
            warnings.warn(note, DataWarning, stacklevel=stacklevel)


class TextCells:
    """A file's cells as read: the header and one list of text cells per kept row.

    :meth:`to_frame` is the DataFrame of object (text) columns :attr:`Table.frame` holds.
    """

    def __init__(self, header: list, records: list):
        self.header = list(header)
        self.records = records
        self._columns = None  # the records transposed, on the first column asked for

    def column(self, name) -> list:
        j = self.header.index(name)
        if self._columns is None:
            width = len(self.header)
            if not all(len(record) == width for record in self.records):  # as read: padded to the header
                return [record[j] for record in self.records]
            self._columns = list(zip(*self.records)) if self.records else [()] * width
        return list(self._columns[j])

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records, columns=self.header, dtype=object)


def check_options(sep=None, decimal=None, encoding=None):
    """Validated ``(sep, decimal, encoding)``; '' or None means 'sniff'. ``sep`` may be spelt
    ``tab``, ``\\t``, ``comma``, ``semicolon`` or ``pipe``. Raises :class:`DataError`."""
    sep = sep or None
    if sep is not None:
        sep = _SEP_ALIASES.get(sep.lower(), sep)
        if sep not in DELIMITERS:
            raise DataError(f"the delimiter (--sep) must be one of , ; tab |, got {sep!r}")
    decimal = decimal or None
    if decimal is not None and decimal not in DECIMALS:
        raise DataError(f"the decimal mark (--decimal) must be '.' or ',', got {decimal!r}")
    encoding = encoding or None
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise DataError(f"unknown encoding (--encoding) {encoding!r}; e.g. utf-8, utf-16, cp1252, "
                            "latin-1") from None
    return sep, decimal, encoding


def read_table(source, *, sep=None, decimal=None, encoding=None) -> Table:
    """Read a delimited text file (or take a DataFrame) by the rules of this module.

    Parameters
    ----------
    source : str, os.PathLike, pandas.DataFrame or Table
        A Table is returned as it is (the other arguments are then ignored).
    sep : {',', ';', '\\t', '|'}, optional
        Delimiter; sniffed when None (Excel's ``sep=X`` first line is honoured).
    decimal : {'.', ','}, optional
        Decimal mark; sniffed when None (a DataFrame's text cells use '.').
    encoding : str, optional
        A Python codec name; sniffed when None.

    Returns
    -------
    Table

    Raises
    ------
    DataError
        One line naming the file (missing, a folder, unreadable, binary, empty, too big) or the row
        and column of the problem.
    """
    if isinstance(source, Table):
        return source
    sep, decimal, encoding = check_options(sep, decimal, encoding)
    if "pandas" in sys.modules and isinstance(source, sys.modules["pandas"].DataFrame):
        names = [str(c).strip() for c in source.columns]
        _check_unique_names(names)
        frame = source.copy().reset_index(drop=True)
        frame.columns = names
        return Table(frame, tuple(range(1, len(frame) + 1)), "<DataFrame>", None, decimal or ".", None,
                     {"decimal": "given" if decimal else "default"})
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path or a pandas DataFrame, not {type(source).__name__}")
    path = os.fspath(source)
    raw = _read_bytes(path)
    notes: list[str] = []
    text, used_encoding = _decode(raw, path, encoding, notes)
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # Windows and classic-Mac line ends
    return _parse(text, path, sep, decimal, used_encoding, encoding is None, notes)


def check_readable(path: str) -> None:
    """Refuse, with one :class:`DataError` line, a path that is missing, a folder, not a regular
    file, or larger than :data:`MAX_FILE_BYTES` (the checks made before a table is read; the CLI
    calls it early so that a mistyped name is told before the model stack is imported)."""
    if not os.path.exists(path):
        raise DataError(f"file not found: {path}")
    if os.path.isdir(path):
        raise DataError(f"not a file: {path} is a folder")
    if not os.path.isfile(path):
        raise DataError(f"not a file: {path} is not a regular file")
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise DataError(
            f"file {path} is {size / 1024**2:.0f} MB; data tables over "
            f"{MAX_FILE_BYTES // 1024**2} MB are refused (is this the right file?)"
        )


def _read_bytes(path: str) -> bytes:
    check_readable(path)
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except PermissionError:
        raise DataError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _strict(raw: bytes, codec: str, path: str, label: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1 if "16" not in codec and "32" not in codec else \
            raw[: exc.start].decode(codec, errors="replace").count("\n") + 1
        raise DataError(f"file {path} is not valid {label}: byte 0x{raw[exc.start]:02x} on line {line} "
                        "cannot be decoded (pass --encoding with the file's encoding, e.g. cp1252)") from None


def _decode(raw: bytes, path: str, encoding, notes: list) -> tuple[str, str]:
    """Text and the name of the encoding used (see the module docstring)."""
    bom = next(((mark, codec) for mark, codec in _BOMS if raw.startswith(mark)), None)
    if encoding is not None:
        name = codecs.lookup(encoding).name
        if bom is not None and bom[1].replace("-le", "").replace("-be", "") == name.replace("-le", "").replace("-be", ""):
            raw = raw[len(bom[0]):]
            name = bom[1]
        text = _strict(raw, name, path, encoding)
        _refuse_binary(text, path)
        return text.lstrip("\ufeff"), name
    if bom is not None and bom[1] != "utf-8":
        text = _strict(raw[len(bom[0]):], bom[1], path, bom[1].upper() + " (it starts with that byte-order mark)")
        _refuse_binary(text, path)
        return text, bom[1]
    if bom is not None:
        raw = raw[len(bom[0]):]
    if b"\x00" in raw:
        raise DataError(f"file {path} is not a text table (it holds NUL bytes; if it is UTF-16 text without "
                        "a byte-order mark, pass --encoding utf-16-le)")
    try:
        text = raw.decode("utf-8")
        name = "utf-8-sig" if bom else "utf-8"
    except UnicodeDecodeError:
        text, name = _decode_lines(raw, path, notes)
    _refuse_binary(text, path)
    return text, name


def _decode_lines(raw: bytes, path: str, notes: list) -> tuple[str, str]:
    """Line by line: UTF-8 where a line is valid UTF-8, else cp1252 (Latin-1 for the five bytes
    cp1252 leaves undefined)."""
    out, utf8_lines, latin_lines, undefined = [], [], [], False
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
            if not line.isascii():
                utf8_lines.append(number)
        except UnicodeDecodeError:
            try:
                text = line.decode("cp1252")
            except UnicodeDecodeError:
                text, undefined = line.decode("latin-1"), True
            latin_lines.append(number)
        out.append(text)
    fallback = "latin-1" if undefined else "cp1252"
    if utf8_lines:
        shown = ", ".join(map(str, latin_lines[:10])) + (" ..." if len(latin_lines) > 10 else "")
        notes.append(f"file {os.path.basename(path)} mixes encodings: line(s) {shown} (the header is line 1) "
                     f"are not UTF-8 and were read as {fallback}, the others as UTF-8; check the labels "
                     "on those lines, and save the file as UTF-8")
        return "\n".join(out), f"utf-8 + {fallback} (mixed)"
    notes.append(f"file {os.path.basename(path)} is not UTF-8; read as {fallback} (Windows Latin-1): check "
                 "accented labels, or pass --encoding with the file's encoding")
    return "\n".join(out), fallback


def _refuse_binary(text: str, path: str) -> None:
    if "\x00" in text:
        raise DataError(f"file {path} is not a text table (it holds NUL bytes)")
    match = re.search(r"[\x01-\x08\x0b\x0e-\x19\x1b-\x1f\x7f]", text)
    if match:
        line = text[: match.start()].count("\n") + 1
        raise DataError(f"file {path} is not a text table (it holds the control character "
                        f"0x{ord(match.group()):02x} on line {line}: is it a binary file?)")


def _parse(text: str, path: str, sep, decimal, encoding: str, encoding_sniffed: bool, notes: list) -> Table:
    name = os.path.basename(path)
    if not text.strip():
        raise DataError(f"file {path} is empty")
    lines = text.split("\n")
    how = {key: "sniffed" if value is None else "given" for key, value in (("sep", sep), ("decimal", decimal))}
    how["encoding"] = "sniffed" if encoding_sniffed else "given"
    first = next((i for i, ln in enumerate(lines) if ln.strip()), 0)
    excel = _EXCEL_SEP.match(lines[first])
    if excel:
        if excel.group(1) not in DELIMITERS:
            raise DataError(f"file {path}: the first line {lines[first].strip()!r} names the delimiter "
                            f"{excel.group(1)!r}; delimiters are , ; tab |")
        if sep is None:
            sep = excel.group(1)
            how["sep"] = "sep= line"
        text = "\n".join(lines[first + 1:])
        if not text.strip():
            raise DataError(f"file {path} holds only the line {lines[first].strip()!r}")
    if sep is None:
        sep = _sniff_delimiter(text)
    records = _split_records(text, sep)
    if records is None:
        try:
            records = list(csv.reader(io.StringIO(text, newline=""), delimiter=sep, quotechar='"',
                                      doublequote=True, strict=False))
        except csv.Error as exc:
            raise DataError(f"file {path} is not a readable delimited text table ({exc})") from None
    start = next((i for i, r in enumerate(records) if any(c.strip() for c in r)), None)
    if start is None:
        raise DataError(f"file {path} is empty")
    header = [h.strip() for h in records[start]]
    body = records[start + 1:]
    if len(header) == 1:
        for other in DELIMITERS:
            if other != sep and other in header[0]:
                raise DataError(
                    f"the file has a single column {header[0][:60]!r}: it looks delimited by "
                    f"{other!r}, not {sep!r}; pass sep={other!r} (--sep {DELIMITER_NAMES[other]})"
                )
    # trailing empty header cells (Excel's trailing delimiters) are dropped when their columns are
    width = len(header)
    while width > 1 and header[width - 1] == "" and all(
            len(r) < width or not r[width - 1].strip() for r in body):
        width -= 1
    header = header[:width]
    header = [h if h else f"Unnamed: {j}" for j, h in enumerate(header)]
    _check_unique_names(header)
    kept, rows, blank, delimiters_only, short = [], [], [], [], []
    if all(len(record) == width for record in body) and all(record[0].strip() for record in body):
        # the common case (every row as wide as the header, none blank): what the loop below keeps
        kept, rows, body = body, list(range(1, len(body) + 1)), []
    for number, record in enumerate(body, start=1):
        if not any(c.strip() for c in record):
            (delimiters_only if len(record) > 1 else blank).append(number)
            continue
        if len(record) > width:
            extra = record[width:]
            if any(c.strip() for c in extra):
                raise DataError(
                    f"the row has {len(record)} fields but the header has {width} (read as "
                    f"{DELIMITER_NAMES[sep]}-delimited: is a value holding {sep!r} not quoted, or is "
                    "the delimiter another? try --sep)", row=number)
            record = record[:width]
        if len(record) < width:
            short.append(number)
            record = record + [""] * (width - len(record))
        kept.append(record)
        rows.append(number)
    if not kept:
        raise DataError(f"file {path} has a header but no data rows")
    if delimiters_only:
        notes.append(f"file {name}: skipped {len(delimiters_only)} row(s) holding only delimiters "
                     f"(row {_list(delimiters_only)})")
    if short:
        notes.append(f"file {name}: row {_list(short)} had fewer fields than the header; the missing "
                     "trailing cells are read as missing")
    if decimal is None:
        decimal = "." if sep == "," else _sniff_decimal(kept)
    return Table(TextCells(header, kept), tuple(rows), path, sep, decimal, encoding, how, tuple(notes))


def _split_records(text: str, sep: str):
    """The records ``csv.reader`` reads from ``text`` (line ends ``\\n``), by ``str.split`` where that
    is the same: no quote character, no line beyond the csv module's field limit (which it refuses);
    None otherwise. An empty line is an empty record, and the end of the text ends the last record,
    as in ``csv.reader``."""
    if '"' in text:
        return None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if max(map(len, lines), default=0) > csv.field_size_limit():
        return None
    return [line.split(sep) if line else [] for line in lines]


def _list(numbers) -> str:
    shown = ", ".join(map(str, numbers[:10]))
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


def _sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the most, equally many, fields.

    Hand-written because csv.Sniffer guesses from character frequencies and picks ',' in
    ';'-separated files with ',' decimals.
    """
    lines = _nonblank_lines(text, _SNIFF_LINES)
    best, best_cols = None, 1
    for delim in ("\t", ";", "|", ","):
        try:
            rows = [r for r in csv.reader(lines, delimiter=delim) if any(c.strip() for c in r)]
        except csv.Error:
            continue
        counts = {len(row) for row in rows}
        if len(counts) == 1 and (cols := counts.pop()) > best_cols:
            best, best_cols = delim, cols
    if best is None:  # ragged: take the delimiter that splits the header most
        header = lines[0] if lines else ""

        def width(d):
            try:
                return len(next(csv.reader([header], delimiter=d)))
            except (csv.Error, StopIteration):
                return 0
        best = max(("\t", ";", "|", ","), key=width)
    return best


def _nonblank_lines(text: str, n: int) -> list:
    """``[ln for ln in text.split("\\n") if ln.strip()][:n]``, without splitting the whole text."""
    out, pos, end = [], 0, len(text)
    while len(out) < n and pos <= end:
        stop = text.find("\n", pos)
        stop = end if stop < 0 else stop
        line = text[pos:stop]
        if line.strip():
            out.append(line)
        pos = stop + 1
    return out


_COMMA_VOTE = re.compile(rf"^[+-]?(?:[0-9]*,[0-9]+){_EXP}$")
_DOT_VOTE = re.compile(rf"^[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+){_EXP}$")
_AMBIGUOUS = re.compile(r"^[+-]?[1-9][0-9]{0,2}[.,][0-9]{3}$")


def _sniff_decimal(records) -> str:
    """',' when cells like ``0,5`` appear and none like ``0.5``; ``1,234`` / ``1.234`` (a thousands
    separator or a decimal mark) do not vote."""
    comma = dot = 0
    for record in records[: 10 * _SNIFF_LINES]:
        for cell in record:
            cell = cell.strip()
            if _AMBIGUOUS.match(cell):
                continue
            comma += bool(_COMMA_VOTE.match(cell))
            dot += bool(_DOT_VOTE.match(cell))
    return "," if comma > 0 and dot == 0 else "."


def _check_unique_names(names):
    seen = set()
    for name in names:
        if name in seen:
            raise DataError("the column name appears twice in the header", column=name)
        seen.add(name)


# ------------------------------------------------------------------------------ describing a table
