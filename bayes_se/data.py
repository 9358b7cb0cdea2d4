"""Effect-size tables: read, check and hold the data of a meta-analysis.

The model every engine of bayes_se fits starts from k observed effects with known sampling
variances, ``y_i ~ N(theta_i, v_i)`` (Hedges & Olkin 1985, ch. 2), so the one job of this module is
to turn a user's table into trustworthy ``yi``, ``vi`` and labels, or to say exactly which row and
column of the table is wrong.

:func:`load_effects` reads a CSV/TSV/semicolon file (delimiter and decimal mark sniffed, as European
Excel writes ``;`` with ``,`` decimals) or a pandas DataFrame and returns an :class:`EffectData`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayes_se.errors import DataError

__all__ = ["EffectData", "load_effects", "MAX_FILE_BYTES"]

MAX_FILE_BYTES = 200 * 1024**2  # larger files are refused unread: an effect table is never that big
# Magnitudes the engines compute with safely in double precision: |y| <= 1e50 and
# 1e-100 <= v <= 1e100 keep y^2, the weights 1/v, their squares and y^2/v below ~1e200, far from
# overflow (~1.8e308) for any k, and tau grids scanned to 1e16 times the data's scale in range.
MAX_ABS_EFFECT = 1e50
VARIANCE_RANGE = (1e-100, 1e100)
# Weights 1/v spanning more than 14 orders of magnitude: sums such as sum(w) - sum(w^2)/sum(w)
# (the DL denominator, the I^2 variance) cancel below double precision's 16 digits.
MIN_VARIANCE_RATIO = 1e-14
DELIMITERS = (",", ";", "\t", "|")
RESERVED = ("yi", "vi", "study", "cluster")
_SNIFF_LINES = 50
_MISSING_TEXT = {"", "na", "n/a", "nan", "null", "none", "-", ".", "#n/a"}
_COMMA_DECIMAL = re.compile(r"^[+-]?\d+,\d+([eE][+-]?\d+)?$")
_DOT_DECIMAL = re.compile(r"^[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?$")


class _DefaultName(str):
    """A column name the user did not choose (so a missing column may be filled in)."""


_DEFAULT_STUDY = _DefaultName("study")


@dataclass(frozen=True, eq=False)
class EffectData:
    """Observed effects ``yi`` with sampling variances ``vi``, labels, clusters and moderators.

    Parameters
    ----------
    yi, vi : ndarray of float
        Effects and their (known, positive) sampling variances, ``yi ~ N(theta_i, vi)``.
    study : tuple of str
        One unique label per effect.
    cluster : tuple of str or None
        The cluster (study) each effect is nested in, or None when effects are independent.
    frame : pandas.DataFrame
        Columns ``yi``, ``vi``, ``study``, ``cluster`` (if any), then the moderators under their
        user names.
    """

    yi: np.ndarray
    vi: np.ndarray
    study: tuple
    cluster: tuple | None
    frame: pd.DataFrame

    @property
    def k(self) -> int:
        """Number of effects."""
        return int(self.yi.shape[0])

    @property
    def sei(self) -> np.ndarray:
        """Standard errors ``sqrt(vi)``."""
        return np.sqrt(self.vi)

    @property
    def n_clusters(self) -> int:
        """Number of distinct clusters (``k`` when effects are not clustered)."""
        return self.k if self.cluster is None else len(set(self.cluster))

    def subset(self, mask) -> "EffectData":
        """The effects selected by a boolean mask of length ``k`` (or an index array).

        Raises :class:`~bayes_se.errors.DataError` when fewer than 2 effects remain.
        """
        mask = np.asarray(mask)
        if mask.dtype == bool and mask.shape != (self.k,):
            raise DataError(f"the subset mask has shape {mask.shape}; expected ({self.k},)")
        try:
            index = np.arange(self.k)[mask]
        except IndexError as err:
            raise DataError(f"bad subset index: {err}") from None
        frame = self.frame.iloc[index].reset_index(drop=True)
        if len(frame) < 2:
            raise DataError(f"the subset keeps {len(frame)} effect(s); at least 2 are needed")
        return EffectData(
            yi=_readonly(self.yi[index]),
            vi=_readonly(self.vi[index]),
            study=tuple(self.study[i] for i in index),
            cluster=None if self.cluster is None else tuple(self.cluster[i] for i in index),
            frame=frame,
        )

    def design(self, mods):
        """Moderator design matrix of ``mods`` (see :func:`bayes_se.formula.design_matrix`)."""
        from bayes_se.formula import design_matrix

        return design_matrix(self.frame, mods)

    def checksum(self) -> str:
        """SHA-256 (hex) of the canonical CSV of :attr:`frame`, for reproducibility records.

        Canonical: no index, ``\\n`` line ends, floats written with 17 significant digits.
        """
        text = self.frame.to_csv(index=False, lineterminator="\n", float_format="%.17g")
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @classmethod
    def from_arrays(cls, yi, vi, study=None, cluster=None, **moderators) -> "EffectData":
        """Build from arrays, with the same checks as :func:`load_effects`.

        Parameters
        ----------
        yi, vi : array_like
            Effects and sampling variances.
        study : sequence of str, optional
            Labels (default ``"1", "2", ...``).
        cluster : sequence, optional
            Cluster id of each effect (labels may then repeat).
        **moderators : array_like
            Moderator columns by name.
        """
        columns = {"yi": _as_1d(yi, "yi"), "vi": _as_1d(vi, "vi")}
        if study is not None:
            columns["study"] = _as_1d(study, "study")
        if cluster is not None:
            columns["cluster"] = _as_1d(cluster, "cluster")
        for name, values in moderators.items():
            columns[name] = _as_1d(values, name)
        lengths = {name: len(v) for name, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"arrays differ in length: {lengths}")
        return load_effects(
            pd.DataFrame(columns),
            cluster="cluster" if cluster is not None else None,
            moderators=list(moderators) if moderators else [],
        )


def load_effects(
    source,
    *,
    effect: str = "yi",
    variance: str = "vi",
    se: str | None = None,
    study: str | None = _DEFAULT_STUDY,
    cluster: str | None = None,
    moderators=None,
    sep: str | None = None,
    decimal: str | None = None,
) -> EffectData:
    """Read an effect-size table and check it.

    The table holds one effect per row: ``yi ~ N(theta_i, vi)`` with ``vi`` known (Hedges & Olkin
    1985); ``vi`` is read from ``variance`` or computed as ``se**2`` from ``se``.

    Parameters
    ----------
    source : str, os.PathLike or pandas.DataFrame
        A delimited text file (``, ; tab |``, sniffed when ``sep`` is None; decimal mark ``.`` or
        ``,`` sniffed when ``decimal`` is None; UTF-8 with or without BOM) or a DataFrame.
    effect : str
        Column of effects.
    variance : str
        Column of sampling variances (ignored when ``se`` is given).
    se : str, optional
        Column of standard errors; then ``vi = se**2``.
    study : str, optional
        Column of effect labels. When the default ``"study"`` is absent (or ``study=None``) labels
        ``"1", "2", ...`` are generated; a column named explicitly must exist.
    cluster : str, optional
        Column of cluster ids for effects nested in studies. Labels may then repeat; a repeated
        label gets ``"LABEL [j]"`` for its j-th occurrence.
    moderators : list of str, optional
        Moderator columns (each must exist and vary). None keeps every other column as a candidate.
    sep, decimal : str, optional
        Delimiter and decimal mark of a text file.

    Returns
    -------
    EffectData

    Raises
    ------
    bayes_se.errors.DataError
        Naming the 1-based data row (and study label) and the column of the first problem.

    References
    ----------
    Hedges, L. V. & Olkin, I. (1985). *Statistical Methods for Meta-Analysis*. Academic Press.
    """
    if isinstance(source, pd.DataFrame):
        table, decimal = _from_frame(source), "."
    elif isinstance(source, (str, os.PathLike)):
        table, decimal = _read_file(os.fspath(source), sep, decimal)
    else:
        raise TypeError(f"source must be a path or a pandas DataFrame, not {type(source).__name__}")
    return _build(table, decimal, effect, variance, se, study, cluster, moderators)


# --------------------------------------------------------------------------------------- reading


def _from_frame(df: pd.DataFrame) -> pd.DataFrame:
    names = [str(c).strip() for c in df.columns]
    _check_unique_names(names)
    table = df.copy()
    table.columns = names
    return table.reset_index(drop=True)


def _read_file(path: str, sep, decimal):
    if not os.path.exists(path):
        raise DataError(f"file not found: {path}")
    if not os.path.isfile(path):
        raise DataError(f"not a file: {path}")
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise DataError(
            f"file {path} is {size / 1024**2:.0f} MB; effect tables over "
            f"{MAX_FILE_BYTES // 1024**2} MB are refused (is this the right file?)"
        )
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")  # what Excel writes on Windows
    if "\x00" in text:
        raise DataError(f"file {path} is not a text table (it holds NUL bytes)")
    # universal newlines: Windows CRLF and classic-Mac CR-only files read like Unix ones
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        return _parse_text(text, path, sep, decimal)
    except csv.Error as exc:
        raise DataError(f"file {path} is not a readable delimited text table ({exc})") from None


def _parse_text(text: str, path: str, sep, decimal):
    if not text.strip():
        raise DataError(f"file {path} is empty")
    if sep is None:
        sep = _sniff_delimiter(text)
    elif sep not in DELIMITERS:
        raise DataError(f"sep must be one of {DELIMITERS!r}, got {sep!r}")
    if decimal is None:
        decimal = _sniff_decimal(text, sep)
    elif decimal not in (".", ","):
        raise DataError(f"decimal must be '.' or ',', got {decimal!r}")
    if decimal == sep:
        raise DataError(f"the decimal mark and the delimiter are both {sep!r}")
    header = next(csv.reader(io.StringIO(text), delimiter=sep), [])
    names = [h.strip() for h in header]
    if len(names) == 1:
        for other in DELIMITERS:
            if other != sep and other in names[0]:
                raise DataError(
                    f"the file has a single column {names[0][:60]!r}: it looks delimited by "
                    f"{other!r}, not {sep!r}; pass sep={other!r}"
                )
    _check_unique_names(names)
    try:
        table = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=object, keep_default_na=False, na_filter=False,
            skip_blank_lines=True, engine="python",
        )
    except (pd.errors.ParserError, csv.Error, ValueError) as err:
        raise DataError(f"cannot parse {path} with delimiter {sep!r}: {err}") from None
    table.columns = names if len(names) == table.shape[1] else [str(c).strip() for c in table.columns]
    if len(table) == 0:
        raise DataError(f"file {path} has a header but no data rows")
    return table, decimal


def _sniff_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the most, equally many, fields.

    Hand-written because csv.Sniffer guesses from character frequencies and picks ',' in
    ';'-separated files with ',' decimals.
    """
    lines = [ln for ln in text.splitlines()[:_SNIFF_LINES] if ln.strip()]
    best, best_cols = None, 1
    for delim in ("\t", ";", "|", ","):
        counts = {len(row) for row in csv.reader(lines, delimiter=delim)}
        if len(counts) == 1 and (cols := counts.pop()) > best_cols:
            best, best_cols = delim, cols
    if best is None:  # ragged: take the delimiter that splits the header most
        header = lines[0]
        best = max(("\t", ";", "|", ","), key=lambda d: len(next(csv.reader([header], delimiter=d))))
    return best


def _sniff_decimal(text: str, sep: str) -> str:
    """',' when numbers like ``1,5`` appear and none like ``1.5`` (never with sep ',')."""
    if sep == ",":
        return "."
    comma = dot = 0
    for row in csv.reader(text.splitlines()[1 : 1 + 10 * _SNIFF_LINES], delimiter=sep):
        for field in row:
            field = field.strip()
            comma += bool(_COMMA_DECIMAL.match(field))
            dot += bool(_DOT_DECIMAL.match(field))
    return "," if comma > 0 and dot == 0 else "."


def _check_unique_names(names):
    seen = set()
    for name in names:
        if name in seen:
            raise DataError("the column name appears twice in the header", column=name)
        seen.add(name)


# -------------------------------------------------------------------------------------- checking


def _build(table, decimal, effect, variance, se, study, cluster, moderators) -> EffectData:
    columns = list(table.columns)
    k = len(table)
    if k == 0:
        raise DataError("the table has no data rows")

    def need(name, what):
        if name not in table.columns:
            raise DataError(f"no {what} column '{name}'; the columns are: {_names(columns)}",
                            column=name)

    need(effect, "effect")
    if se is not None:
        need(se, "standard-error")
        vcol = se
    elif variance in table.columns:
        vcol = variance
    else:
        raise DataError(
            f"no variance column '{variance}' (name it with variance=..., or give standard errors "
            f"with se=...); the columns are: {_names(columns)}", column=variance)

    if study is None or (isinstance(study, _DefaultName) and study not in table.columns):
        labels = [str(i + 1) for i in range(k)]
        study_col = None
    else:
        need(study, "study label")
        study_col = study
        labels = [_label(v) for v in table[study]]
        for i, lab in enumerate(labels):
            if lab is None:
                raise DataError("the study label is missing", row=i + 1, column=study)

    def where(i):
        return f"{i + 1} (study '{labels[i]}')"

    yi = _numeric(table[effect], effect, decimal, where)
    v = _numeric(table[vcol], vcol, decimal, where)
    for values, name in ((yi, effect), (v, vcol)):
        for i in range(k):
            if math.isnan(values[i]):
                raise DataError("the value is missing", row=where(i), column=name)
            if math.isinf(values[i]):
                raise DataError(f"the value is infinite ({values[i]})", row=where(i), column=name)
    what = "standard error" if se is not None else "sampling variance"
    for i in range(k):
        if v[i] <= 0:
            raise DataError(f"the {what} must be > 0, got {v[i]:g}", row=where(i), column=vcol)
    vi = v**2 if se is not None else v
    bad = np.flatnonzero(~np.isfinite(vi) | (vi <= 0))
    if bad.size:  # se**2 can over- or underflow
        i = int(bad[0])
        raise DataError(f"the {what} {v[i]:g} gives no usable variance", row=where(i), column=vcol)
    check_magnitudes(yi, vi, where, effect=effect, variance=vcol, se=se is not None)
    if k < 2:
        raise DataError(f"the table holds {k} effect; a meta-analysis needs at least 2")

    cluster_ids = None
    if cluster is not None:
        need(cluster, "cluster")
        cluster_ids = []
        for i, value in enumerate(table[cluster]):
            cid = _label(value)
            if cid is None:
                raise DataError("the cluster id is missing", row=where(i), column=cluster)
            cluster_ids.append(cid)
        labels = _number_repeats(labels, study_col)
    else:
        first = {}
        for i, lab in enumerate(labels):
            if lab in first:
                raise DataError(
                    f"the study label '{lab}' appears in rows {first[lab] + 1} and {i + 1}; labels "
                    "must be unique. If several effects come from one study, pass cluster='COLUMN' "
                    "naming the column that identifies the study",
                    row=i + 1, column=study_col)
            first[lab] = i

    used = {effect, vcol, study_col, cluster}
    frame = pd.DataFrame({"yi": yi, "vi": vi, "study": labels})
    if cluster_ids is not None:
        frame["cluster"] = cluster_ids
    if moderators is None:
        names = [c for c in columns if c not in used and c not in RESERVED]
    else:
        if isinstance(moderators, str):
            moderators = [moderators]
        names = list(moderators)
        for name in names:
            need(name, "moderator")
            if name in RESERVED or name in used:
                raise DataError("a moderator cannot be the effect, variance, label or cluster "
                                "column, nor be named yi, vi, study or cluster", column=name)
    for name in names:
        values = _moderator(table[name], decimal)
        if moderators is not None:
            levels = values.dropna().unique()
            if len(levels) == 0:
                raise DataError("the moderator is missing in every row", column=name)
            if len(levels) == 1:
                raise DataError(f"the moderator has a single level ({levels[0]!r}): it cannot "
                                "explain differences between effects", column=name)
        frame[name] = values.to_numpy()
    return EffectData(
        yi=_readonly(yi), vi=_readonly(vi), study=tuple(labels),
        cluster=None if cluster_ids is None else tuple(cluster_ids), frame=frame,
    )


def _number_repeats(labels, study_col):
    counts = pd.Series(labels).value_counts()
    seen: dict = {}
    out = []
    for lab in labels:
        if counts[lab] > 1:
            seen[lab] = seen.get(lab, 0) + 1
            out.append(f"{lab} [{seen[lab]}]")
        else:
            out.append(lab)
    first = {}
    for i, lab in enumerate(out):
        if lab in first:
            raise DataError(f"the numbered label '{lab}' of rows {first[lab] + 1} and {i + 1} "
                            "clashes; rename one of them", row=i + 1, column=study_col)
        first[lab] = i
    return out


def _numeric(series: pd.Series, column: str, decimal: str, where) -> np.ndarray:
    """Floats of a column; text that is not a number is reported with its row."""
    if pd.api.types.is_bool_dtype(series.dtype):
        raise DataError("expected numbers, found true/false values", column=column)
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_complex_dtype(series.dtype):
        return np.asarray(series, dtype=float).copy()
    out = np.empty(len(series))
    for i, value in enumerate(series):
        number = _to_float(value, decimal)
        if number is None:
            raise DataError(f"expected a number, found the text {str(value)[:40]!r}",
                            row=where(i), column=column)
        out[i] = number
    return out


def _to_float(value, decimal):
    """A float, NaN for a missing value, or None for text that is not a number."""
    if value is None or value is pd.NA or value is pd.NaT:
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.lower() in _MISSING_TEXT:
        return math.nan
    if decimal == ",":
        if "." in text:
            return None
        text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        return None


def _moderator(series: pd.Series, decimal: str) -> pd.Series:
    """Numbers where every present value is a number, else text (missing stays missing)."""
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.reset_index(drop=True)
    floats = [_to_float(v, decimal) for v in series]
    if all(f is not None for f in floats) and not all(math.isnan(f) for f in floats):
        values = pd.Series(floats, dtype=float)
        finite = values.dropna()
        if len(finite) == len(values) and (finite == finite.round()).all() and (finite.abs() < 2**53).all():
            return values.astype("int64")
        return values
    texts = [_label(v) for v in series]
    return pd.Series(texts, dtype=object)


def _label(value):
    """A label as text, or None when missing; 3.0 is written as '3'."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    if text.lower() in _MISSING_TEXT:
        return None
    return text


def _names(columns) -> str:
    return ", ".join(repr(c) for c in columns) if columns else "(none)"


def _as_1d(values, name):
    array = np.asarray(values)
    if array.ndim != 1:
        raise DataError(f"expected a 1-D array, got shape {array.shape}", column=name)
    return array


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=float)
    array.setflags(write=False)
    return array


def check_arrays(yi, vi) -> tuple[np.ndarray, np.ndarray]:
    """The array form of :func:`load_effects`' checks: effects and sampling variances as float vectors.

    The engines that take plain arrays (the frequentist ``rma``, the PyMC builders) call this, so
    every entry point rejects the same inputs with the same messages.

    Returns
    -------
    (yi, vi) : numpy.ndarray

    Raises
    ------
    DataError
        Naming the column (``yi`` or ``vi``) and the 1-based row of the first bad value: not
        numeric, lengths that differ, missing or non-finite values, variances <= 0.
    """
    out = []
    for name, values in (("yi", yi), ("vi", vi)):
        try:
            out.append(np.asarray(values, dtype=float).reshape(-1))
        except (TypeError, ValueError) as exc:
            raise DataError(f"'{name}' must be numeric ({exc})", column=name) from None
    yi, vi = out
    if yi.size != vi.size:
        raise DataError(f"'yi' and 'vi' must have the same length: 'yi' has {yi.size} values, 'vi' has "
                        f"{vi.size}", column="vi")
    for name, arr in (("yi", yi), ("vi", vi)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise DataError("missing or non-finite value", row=int(bad[0]) + 1, column=name)
    bad = np.flatnonzero(vi <= 0)
    if bad.size:
        raise DataError(f"sampling variance must be positive (> 0), got {vi[bad[0]]:g}", row=int(bad[0]) + 1,
                        column="vi")
    check_magnitudes(yi, vi)
    return yi, vi


def check_magnitudes(yi, vi, where=None, *, effect="yi", variance="vi", se=False) -> None:
    """Refuse effects and variances too large or too small to compute with in double precision.

    ``|y_i| <= MAX_ABS_EFFECT`` and ``VARIANCE_RANGE[0] <= v_i <= VARIANCE_RANGE[1]``: inside these
    bounds ``y^2``, the weights ``1/v``, ``1/v^2`` and ``y^2 / v`` stay far from overflow, so
    every engine's sums are finite. ``min(v) / max(v) >= MIN_VARIANCE_RATIO``: beyond it the
    heterogeneity statistics (``sum w - sum w^2 / sum w``) cancel to noise in double precision. The model is scale-equivariant (``y / c``, ``v / c^2``), so
    data outside the bounds can be rescaled without changing the analysis.

    Parameters
    ----------
    yi, vi : ndarray
        Finite effects and positive variances.
    where : callable, optional
        Row index (0-based) -> the row as the message names it (default: 1-based number).
    effect, variance : str
        Column names for the message; ``se=True`` says the variance column holds standard errors.

    Raises
    ------
    DataError
        Naming the row and column of the first value out of range.
    """
    where = where or (lambda i: i + 1)
    big = np.flatnonzero(np.abs(yi) > MAX_ABS_EFFECT)
    if big.size:
        i = int(big[0])
        raise DataError(f"the effect {yi[i]:g} is too large to compute with (|effect| must be <= "
                        f"{MAX_ABS_EFFECT:g}: its square and weighted sums would overflow); rescale "
                        "the effects (and the variances by the square of the factor)",
                        row=where(i), column=effect)
    lo, hi = VARIANCE_RANGE
    out = np.flatnonzero((vi < lo) | (vi > hi))
    if out.size:
        i = int(out[0])
        value, low, high = (math.sqrt(vi[i]), math.sqrt(lo), math.sqrt(hi)) if se else (vi[i], lo, hi)
        what = "standard error" if se else "sampling variance"
        problem = ("so small that the weight 1/v (and its square) overflows double precision"
                   if vi[i] < lo else "so large that its square overflows double precision")
        raise DataError(f"the {what} {value:g} is {problem}; it must lie in [{low:g}, {high:g}] "
                        "(rescale the effects and variances together, or check the units)",
                        row=where(i), column=variance)
    i, j = int(np.argmin(vi)), int(np.argmax(vi))
    if vi[i] < MIN_VARIANCE_RATIO * vi[j]:
        what, value, other = (("standard error", math.sqrt(vi[i]), math.sqrt(vi[j])) if se
                              else ("sampling variance", vi[i], vi[j]))
        raise DataError(f"the {what} {value:g} is more than {1 / MIN_VARIANCE_RATIO:g} times smaller (in "
                        f"variance) than the largest, {other:g} (row {where(j)}): weights spanning that "
                        "many orders of magnitude are beyond double precision in the heterogeneity "
                        "statistics; check the units of this row", row=where(i), column=variance)
