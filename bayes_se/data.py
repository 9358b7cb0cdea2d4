"""Effect-size tables: read, check and hold the data of a meta-analysis.

The model every engine of bayes_se fits starts from k observed effects with known sampling
variances, ``y_i ~ N(theta_i, v_i)`` (Hedges & Olkin 1985, ch. 2), so the one job of this module is
to turn a user's table into trustworthy ``yi``, ``vi`` and labels, or to say exactly which row and
column of the table is wrong.

:func:`load_effects` reads a CSV/TSV/semicolon file or a pandas DataFrame through the one table reader
(:func:`bayes_se.table.read_table`: encoding, delimiter and decimal mark sniffed, numbers by a data
grammar, only empty/NA/NaN/'.' missing) and returns an :class:`EffectData`.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import math
import warnings
from dataclasses import dataclass

import numpy as np

from bayes_se.errors import DataError, DataWarning
from bayes_se.gc_pause import paused_gc
from bayes_se.lazy import LazyModule
from bayes_se.table import MAX_FILE_BYTES, Table, infer_column, label, label_column, number_column, read_table

pd = LazyModule("pandas")  # a table read from a file is checked and fitted without pandas (issue 17)

__all__ = ["EffectData", "load_effects", "MAX_FILE_BYTES"]

# Magnitudes the engines compute with safely in double precision: |y| <= 1e50 and
# 1e-100 <= v <= 1e100 keep y^2, the weights 1/v, their squares and y^2/v below ~1e200, far from
# overflow (~1.8e308) for any k, and tau grids scanned to 1e16 times the data's scale in range.
MAX_ABS_EFFECT = 1e50
VARIANCE_RANGE = (1e-100, 1e100)
# Weights 1/v spanning more than 14 orders of magnitude: sums such as sum(w) - sum(w^2)/sum(w)
# (the DL denominator, the I^2 variance) cancel below double precision's 16 digits.
MIN_VARIANCE_RATIO = 1e-14
RESERVED = ("yi", "vi", "study", "cluster")


class FrameColumns:
    """The columns of :attr:`EffectData.frame` before the DataFrame is made: ``yi``, ``vi``,
    ``study``, ``cluster`` (if any), then the moderators, as NumPy arrays (float64, int64 or object)
    or lists of text.

    :meth:`to_frame` builds the DataFrame (the same steps, so the same dtypes, as building it at
    once); :meth:`canonical_csv` writes the text :meth:`EffectData.checksum` hashes without pandas,
    byte for byte what ``to_frame().to_csv(index=False, lineterminator="\\n", float_format="%.17g")``
    writes: Python's csv writer (minimal quoting), floats as ``%.17g``, NaN and None as empty cells.
    """

    def __init__(self, columns: dict):
        self.data = dict(columns)

    @property
    def columns(self) -> list:
        return list(self.data)

    @property
    def shape(self) -> tuple:
        return (len(self.data["yi"]), len(self.data))

    def __len__(self) -> int:
        return self.shape[0]

    def to_frame(self) -> pd.DataFrame:
        items = list(self.data.items())
        frame = pd.DataFrame(dict(items[:3]))
        for name, values in items[3:]:
            frame[name] = values
        return frame

    def canonical_csv(self) -> str:
        cells = []
        for values in self.data.values():
            if isinstance(values, np.ndarray) and values.dtype.kind == "f":
                cells.append(["" if v != v else "%.17g" % v for v in values.tolist()])
            elif isinstance(values, np.ndarray) and values.dtype.kind in "iu":
                cells.append([str(v) for v in values.tolist()])
            else:  # text labels (None: missing)
                cells.append(["" if v is None else str(v) for v in values])
        header = [str(name) for name in self.columns]
        texts = "".join(header) + "".join("".join(column) for values, column in zip(self.data.values(), cells)
                                          if not (isinstance(values, np.ndarray) and values.dtype.kind in "fiu"))
        if len(header) > 1 and not any(mark in texts for mark in ',"\r\n'):
            # nothing to quote (no delimiter, quote or line end in any cell, no one-cell rows): the
            # csv writer's text, joined directly
            return "\n".join([",".join(header), *map(",".join, zip(*cells))]) + "\n"
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(zip(*cells))
        return out.getvalue()


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
    cells : pandas.DataFrame or FrameColumns
        The columns of :attr:`frame` (a table read from a file keeps them as arrays until the
        DataFrame is first asked for).

    Attributes
    ----------
    frame : pandas.DataFrame
        Columns ``yi``, ``vi``, ``study``, ``cluster`` (if any), then the moderators under their
        user names.
    """

    yi: np.ndarray
    vi: np.ndarray
    study: tuple
    cluster: tuple | None
    cells: object

    @property
    def frame(self) -> pd.DataFrame:
        """Columns ``yi``, ``vi``, ``study``, ``cluster`` (if any), then the moderators."""
        if isinstance(self.cells, FrameColumns):
            object.__setattr__(self, "cells", self.cells.to_frame())
        return self.cells

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
            cells=frame,
        )

    def design(self, mods, *, na: str = "omit"):
        """Moderator design matrix of ``mods`` (see :func:`bayes_se.formula.design_matrix`).

        ``na="omit"`` leaves out rows with a missing moderator (with a warning naming them); the
        rows of ``X`` are then the data rows ``design.rows``, see :meth:`model_data`.
        ``na="error"`` raises a DataError naming the row and column instead.

        Returns
        -------
        bayes_se.formula.Design
            Unpacks as ``X, names``.
        """
        from bayes_se.formula import design_matrix, parse_formula

        # without moderators only the number of rows is read: no DataFrame is made
        no_terms = isinstance(self.cells, FrameColumns) and not parse_formula(mods)[1]
        return design_matrix(self.cells if no_terms else self.frame, mods, na=na, labels=self.study,
                             reserved=RESERVED)

    def model_data(self, mods, *, na: str = "omit"):
        """The effects a moderator model uses and its design: ``(data, design)``.

        ``data`` holds only the rows with every moderator of ``mods`` present (all rows when none
        is missing, or ``mods`` is empty), so that ``yi``, ``vi``, labels and clusters line up with
        ``design.X``; ``design.omitted_rows`` lists the 1-based rows left out.
        """
        design = self.design(mods or None, na=na)
        if not design.omitted_rows:
            return self, design
        if len(design.rows) < 2:
            raise DataError(f"only {len(design.rows)} effect(s) have every moderator of '{mods}' "
                            "(the others have missing values); at least 2 are needed")
        return self.subset(design.rows), design

    def checksum(self) -> str:
        """SHA-256 (hex) of the canonical CSV of :attr:`frame`, for reproducibility records.

        Canonical: no index, ``\\n`` line ends, floats written with 17 significant digits.
        """
        if isinstance(self.cells, FrameColumns):  # the same text, without pandas
            with paused_gc():
                text = self.cells.canonical_csv()
        else:
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
    encoding: str | None = None,
) -> EffectData:
    """Read an effect-size table and check it.

    The table holds one effect per row: ``yi ~ N(theta_i, vi)`` with ``vi`` known (Hedges & Olkin
    1985); ``vi`` is read from ``variance`` or computed as ``se**2`` from ``se``.

    Parameters
    ----------
    source : str, os.PathLike, pandas.DataFrame or bayes_se.table.Table
        A delimited text file read by :func:`bayes_se.table.read_table` (``, ; tab |``, sniffed
        when ``sep`` is None; decimal mark ``.`` or ``,`` sniffed when ``decimal`` is None;
        UTF-8/UTF-16 by byte-order mark, else UTF-8, else cp1252 with a warning) or a DataFrame.
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
    sep, decimal, encoding : str, optional
        Delimiter, decimal mark and encoding of a text file (None: sniffed). ``decimal`` also
        applies to text cells of a DataFrame (default ``.``).

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
    with paused_gc():  # a large table is millions of small lists and strings, and no cycles
        table = read_table(source, sep=sep, decimal=decimal, encoding=encoding)
        data, notes = _build(table, effect, variance, se, study, cluster, moderators)
    table.warn()
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    return data


# -------------------------------------------------------------------------------------- checking


def _build(source: Table, effect, variance, se, study, cluster, moderators):
    """The checked :class:`EffectData` of a table, and notes about its columns."""
    decimal = source.decimal
    columns = source.columns
    k = source.n_rows
    if k == 0:
        raise DataError("the table has no data rows")

    def need(name, what):
        if name not in columns:
            raise DataError(f"no {what} column '{name}'; the columns are: {_names(columns)}",
                            column=name)

    need(effect, "effect")
    if se is not None:
        need(se, "standard-error")
        vcol = se
    elif variance in columns:
        vcol = variance
    else:
        raise DataError(
            f"no variance column '{variance}' (name it with variance=..., or give standard errors "
            f"with se=...); the columns are: {_names(columns)}", column=variance)

    if study is None or (isinstance(study, _DefaultName) and study not in columns):
        labels = [str(i + 1) for i in range(k)]
        study_col = None
    else:
        need(study, "study label")
        study_col = study
        labels = label_column(source.column(study))
        for i, lab in enumerate(labels):
            if lab is None:
                raise DataError("the study label is missing", row=source.where(i), column=study)

    def where(i):
        return f"{source.where(i)} (study '{labels[i]}')"

    yi = _numeric(source.column(effect), effect, decimal, where)
    v = _numeric(source.column(vcol), vcol, decimal, where)
    for values, name in ((yi, effect), (v, vcol)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:  # the first missing or infinite cell
            i = int(bad[0])
            if math.isnan(values[i]):
                raise DataError("the value is missing", row=where(i), column=name)
            raise DataError(f"the value is infinite ({values[i]})", row=where(i), column=name)
    what = "standard error" if se is not None else "sampling variance"
    bad = np.flatnonzero(v <= 0)
    if bad.size:
        i = int(bad[0])
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
        for i, value in enumerate(source.column(cluster)):
            cid = label(value)
            if cid is None:
                raise DataError("the cluster id is missing", row=where(i), column=cluster)
            cluster_ids.append(cid)
        labels = _number_repeats(labels, study_col, source.rows)
    elif len(set(labels)) != len(labels):  # some label repeats: name the first repeat
        first = {}
        for i, lab in enumerate(labels):
            if lab in first:
                raise DataError(
                    f"the study label '{lab}' appears in rows {source.where(first[lab])} and {source.where(i)}; labels "
                    "must be unique. If several effects come from one study, pass cluster='COLUMN' "
                    "naming the column that identifies the study",
                    row=source.where(i), column=study_col)
            first[lab] = i

    used = {effect, vcol, study_col, cluster}
    frame = {"yi": yi, "vi": vi, "study": labels}  # the DataFrame's columns (FrameColumns)
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
    notes = []
    for name in names:
        values, note = _moderator(source.column(name), name, decimal, where)
        if note:
            notes.append(note)
        if moderators is not None:
            levels = (pd.Series(values, dtype=values.dtype) if isinstance(values, np.ndarray)
                      else values).dropna().unique()
            if len(levels) == 0:
                raise DataError("the moderator is missing in every row", column=name)
            if len(levels) == 1:
                raise DataError(f"the moderator has a single level ({levels[0]!r}): it cannot "
                                "explain differences between effects", column=name)
        frame[name] = values if isinstance(values, np.ndarray) else values.to_numpy()
    data = EffectData(
        yi=_readonly(yi), vi=_readonly(vi), study=tuple(labels),
        cluster=None if cluster_ids is None else tuple(cluster_ids), cells=FrameColumns(frame),
    )
    return data, notes


def unique_labels(labels, *, number_first: bool = False) -> list[str]:
    """Labels made unique by numbering repeats: the one rule for study coordinates.

    ``number_first=False`` (metadat's habit, for labels given as arrays): the first keeps its
    label, later ones become ``'A #1'``, ``'A #2'``; a made label that exists already is numbered
    on. ``number_first=True`` (the table loader's): every repeat is numbered, ``'A [1]'``,
    ``'A [2]'`` (the loader then refuses a made label that clashes with a given one).
    """
    labels = [str(lab) for lab in labels]
    if len(set(labels)) == len(labels):  # no repeats: nothing to number (the common case, at C speed)
        return labels
    if number_first:
        counts = collections.Counter(labels)
        seen: dict = {}
        out = []
        for lab in labels:
            if counts[lab] > 1:
                seen[lab] = seen.get(lab, 0) + 1
                out.append(f"{lab} [{seen[lab]}]")
            else:
                out.append(lab)
        return out
    seen, out = {}, []
    for lab in labels:
        while lab in seen:
            seen[lab] += 1
            lab = f"{lab} #{seen[lab]}"
        seen.setdefault(lab, 0)
        out.append(lab)
    return out


def _number_repeats(labels, study_col, rows):
    out = unique_labels(labels, number_first=True)
    first = {}
    for i, lab in enumerate(out):
        if lab in first:
            raise DataError(f"the numbered label '{lab}' of rows {rows[first[lab]]} and {rows[i]} "
                            "clashes; rename one of them", row=rows[i], column=study_col)
        first[lab] = i
    return out


def _numeric(series, column: str, decimal: str, where) -> np.ndarray:
    """Floats of a column (a Series, or a file's list of text cells) by the data grammar
    (:func:`bayes_se.table.parse_number`)."""
    if isinstance(series, list):
        return number_column(series, column, decimal, where)
    if pd.api.types.is_bool_dtype(series.dtype):
        raise DataError("expected numbers, found true/false values", column=column)
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_complex_dtype(series.dtype):
        return np.asarray(series, dtype=float).copy()
    return number_column(series, column, decimal, where)


def _moderator(series, name: str, decimal: str, where):
    """Numbers where every present value is a number, else text (missing stays missing); integers
    without missing values as int64. Returns the values and a note ('' if none). ``series``: a Series
    (values: a Series), or a file's list of text cells (values: an ndarray, read without pandas)."""
    if isinstance(series, list):
        info = infer_column(series, name, decimal, where, series=False)
        values = info.values
        if info.kind == "integer" and info.missing == 0:
            values = values.astype("int64")
        elif info.kind == "text":
            labels, values = values, np.empty(len(values), dtype=object)
            values[:] = labels
        return values, info.note
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return series.reset_index(drop=True), ""
    info = infer_column(series, name, decimal, where)
    values = info.values
    if info.kind == "integer" and info.missing == 0:
        values = values.astype("int64")
    return values, info.note


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
