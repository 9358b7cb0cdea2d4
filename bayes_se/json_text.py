"""Strict, indented JSON text of a result, fast enough for 200,000 study rows.

:func:`dumps` returns exactly ``json.dumps(jsonable(obj), indent=2, allow_nan=False)``. The standard
library encodes with its C accelerator only when ``indent`` is None; with an indent it falls back to
a pure-Python generator, which took longer than the fit itself for a summary of 200,000 studies. Here
one pass both cleans the object (:func:`jsonable`: NaN and inf become null, NumPy values become
Python ones) and writes the text, escaping strings with the standard library's C escaper.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from json.encoder import encode_basestring_ascii

from bayes_se.gc_pause import paused_gc

__all__ = ["dumps", "jsonable"]

INDENT = "  "


def jsonable(obj):
    """``obj`` with NaN/inf replaced by None and NumPy scalars and arrays turned into Python values."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # NumPy scalars and arrays
        obj = obj.tolist()
        if isinstance(obj, list):
            return jsonable(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _scalar(obj) -> str | None:
    """The JSON text of a scalar as ``json.dumps`` writes it, or None for anything else."""
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, str):
        return encode_basestring_ascii(obj)
    if isinstance(obj, float):
        return float.__repr__(obj) if math.isfinite(obj) else "null"
    if isinstance(obj, int):
        return int.__repr__(obj)
    return None


def _flat_dict(obj: dict, pad: str) -> str | None:
    """The body of a dict whose keys are str and values all floats or None (a summary row), or None
    for any other dict. The common case of large outputs, so written for speed: the values are
    written by one ``repr`` of their list (C code; a Python float's repr is what ``json`` writes)."""
    values = list(obj.values())
    if not set(map(type, values)) <= _FLOAT_OR_NONE:
        return None
    prefixes = _prefixes(tuple(obj), pad)
    if prefixes is None:
        return None
    texts = repr(values)[1:-1].split(", ") if values else []
    return ",".join([p + ("null" if t in _NULLS else t) for p, t in zip(prefixes, texts)])


_FLOAT_OR_NONE = {float, type(None)}
_NULLS = {"None", "nan", "inf", "-inf"}


@functools.lru_cache(maxsize=256)
def _prefixes(keys: tuple, pad: str):
    """``pad + "key": `` for each key (the same few key sets repeat for every row), None when a key is
    not a str."""
    if not all(isinstance(k, str) for k in keys):
        return None
    return tuple(f"{pad}{encode_basestring_ascii(k)}: " for k in keys)


#: A dict of at least this many rows (dicts with the same keys and float or None values) is written
#: in one batch by :func:`_rows_text`.
BATCH_ROWS = 16


def _rows_text(obj: dict, level: int) -> str | None:
    """The text of a dict whose values are all flat dicts (:func:`_flat_dict`) with the same keys in
    the same order (a summary table: 200,000 rows of the same seven statistics), or None for any
    other dict. The text is :func:`_write`'s, row for row, made in a few passes over all the rows at
    once: one ``repr`` of every value (a Python float's repr is what ``json`` writes) and one join."""
    rows = list(obj.values())
    if set(map(type, rows)) != {dict}:
        return None
    keys = tuple(rows[0])
    if not keys or not all(map(keys.__eq__, map(tuple, rows))):
        return None
    values = list(itertools.chain.from_iterable(map(dict.values, rows)))
    if not set(map(type, values)) <= _FLOAT_OR_NONE:
        return None
    prefixes = _prefixes(keys, "\n" + INDENT * (level + 2))
    if prefixes is None:
        return None
    n, m = len(rows), len(keys)
    pad = "\n" + INDENT * (level + 1)
    names = [encode_basestring_ascii(str(key)) for key in obj]
    if len(values) >= ARROW_MIN_VALUES:
        text = _arrow_rows(names, prefixes, values, pad)
        if text is not None:
            return "{" + text + "\n" + INDENT * level + "}"
    texts = _value_texts(values)
    width = 2 * m + 3  # per row: separator, name, then (": {" or ",") + key and value m times, "}"
    pieces = [None] * (n * width)
    pieces[::width] = [pad] + ["," + pad] * (n - 1)
    pieces[1::width] = names
    for j, prefix in enumerate(prefixes):
        pieces[2 + 2 * j::width] = [(": {" if j == 0 else ",") + prefix] * n
        pieces[3 + 2 * j::width] = texts[j::m]
    pieces[width - 1::width] = [pad + "}"] * n
    return "{" + "".join(pieces) + "\n" + INDENT * level + "}"


#: From this many values on, :func:`_value_texts` formats floats with Apache Arrow's compiled cast
#: (where pyarrow is installed, as it is with nutpie): 4 to 5 times faster than ``repr``.
ARROW_MIN_VALUES = 50_000
ARROW_PIECE = 1 << 16
_ARROW_OK = None  # whether Arrow's cast writes repr's digits here (checked once, on first use)


def _value_texts(values: list) -> list:
    """The JSON text of each value of a list of floats and None: a finite float's ``repr`` (what
    ``json`` writes), ``null`` for None, NaN and inf."""
    if len(values) >= ARROW_MIN_VALUES:
        texts = _arrow_texts(values)
        if texts is not None:
            return texts
    text = repr(values)[1:-1]
    if "n" in text or "N" in text:  # None, nan, inf, -inf (a finite float's repr has no letter but e)
        text = text.replace("None", "null").replace("nan", "null").replace("-inf", "null").replace("inf", "null")
    return text.split(", ")


def _arrow():
    """``(numpy, pyarrow, pyarrow.compute)`` where pyarrow is installed and its cast of float64 to text
    writes ``repr``'s digits (checked once on a fixed sample), else None.

    Both write the shortest digits that read back as the same double (Arrow: the double-conversion
    library's ``ToShortest``; Python: David Gay's ``dtoa`` mode 0), and both write them positionally
    for the non-integral values with ``1e-4 <= |x| < 1e16``; Arrow's text is kept only there (and
    where it has no exponent, :func:`_cast`); integral values (``1.0``, which Arrow writes ``1``), the
    smaller and larger magnitudes (exponent notation, written differently) and None, NaN and inf go
    to ``repr``. Arrays are made from buffers: ``pa.array()`` and ``BooleanArray.to_numpy()`` would
    import pandas.
    """
    global _ARROW_OK
    if _ARROW_OK is False:
        return None
    try:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        _ARROW_OK = False
        return None
    if _ARROW_OK is None:  # repr's digits, and Arrow's, on a sample of every magnitude kept
        rng = np.random.default_rng(20261130)
        sample = np.concatenate([
            [0.1, 0.2, 0.3, 0.1 + 0.2, 1 / 3, 2 / 3, 2.675, 1.005, 0.015, 4.35, 1e-4, 1.5e-4, 0.5, 123.456,
             3.141592653589793, 2.718281828459045, 9007199254740.993, 1e15 + 0.5, 5e-324, 1e300, -0.0],
            rng.normal(size=500) * 10.0 ** rng.uniform(-5, 17, 500), rng.random(500)])
        strings, redo = _cast(np, pa, pc, sample)
        texts = strings.to_pylist()
        keep = set(range(sample.size)) - set(redo)
        _ARROW_OK = bool(keep) and all(texts[i] == float.__repr__(float(sample[i])) for i in keep)
        if not _ARROW_OK:
            return None
    return np, pa, pc


def _cast(np, pa, pc, x):
    """Arrow's text of each float of ``x`` (a StringArray) and the indices where ``repr`` writes
    something else (:func:`_arrow`)."""
    x = np.ascontiguousarray(x, dtype=float)
    strings = pc.cast(pa.Array.from_buffers(pa.float64(), x.size, [None, pa.py_buffer(x)]), pa.string())
    exponent = pc.match_substring(strings, "e")
    bits = np.unpackbits(np.frombuffer(exponent.buffers()[1], dtype=np.uint8), bitorder="little")
    a = np.abs(x)
    with np.errstate(invalid="ignore"):
        plain = (a >= 1e-4) & (a < 1e16) & (x != np.floor(x))  # False for NaN
    plain &= bits[exponent.offset:exponent.offset + x.size] == 0
    return strings, np.flatnonzero(~plain).tolist()


def _text(value) -> str:
    return "null" if value is None or not math.isfinite(value) else float.__repr__(value)


def _string_array(np, pa, texts: list):
    """A StringArray of ASCII texts, made from one buffer."""
    offsets = np.zeros(len(texts) + 1, dtype=np.int32)
    np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), out=offsets[1:])
    data = "".join(texts).encode("ascii")
    return pa.Array.from_buffers(pa.string(), len(texts), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _arrow_texts(values: list):
    """:func:`_value_texts` by Arrow (:func:`_arrow`), None where it is not used."""
    mods = _arrow()
    if mods is None:
        return None
    np, pa, pc = mods
    x = np.array(values, dtype=float)  # None: NaN
    texts = []
    for start in range(0, x.size, ARROW_PIECE):  # Arrow's buffers a few MB at a time
        strings, redo = _cast(np, pa, pc, x[start:start + ARROW_PIECE])
        piece = strings.to_pylist()
        for i in redo:
            piece[i] = _text(values[start + i])
        texts += piece
    return texts


def _arrow_rows(names: list, prefixes: tuple, values: list, pad: str):
    """The rows of :func:`_rows_text` (``names``: the rows' JSON names; ``values``: row after row),
    each ``pad name: {`` + ``prefix value`` per key + ``pad}``, joined by ``,``: made by Arrow
    (:func:`_arrow`) column by column and joined in its buffers; None where Arrow is not used."""
    mods = _arrow()
    n, m = len(names), len(prefixes)
    if mods is None or len(values) * 40 + sum(map(len, names)) > 2**30:  # int32 offsets of the joined text
        return None
    np, pa, pc = mods
    try:
        # the constant pieces and the separator as Arrow scalars made from a buffer (pa.scalar imports pandas)
        constants = _string_array(np, pa, [("," if j else "") + prefix for j, prefix in enumerate(prefixes)]
                                  + [pad + "},", ""])
        parts = [_string_array(np, pa, [f"{pad}{name}: {{" for name in names])]
        x = np.array(values, dtype=float).reshape(n, m)  # None: NaN
        for j in range(m):
            strings, redo = _cast(np, pa, pc, x[:, j])
            if redo:
                mask = np.zeros(n, dtype=bool)
                mask[redo] = True
                packed = pa.py_buffer(np.packbits(mask, bitorder="little"))
                strings = pc.replace_with_mask(strings, pa.Array.from_buffers(pa.bool_(), n, [None, packed]),
                                               _string_array(np, pa, [_text(values[i * m + j]) for i in redo]))
            parts += [constants[j], strings]
        joined = pc.binary_join_element_wise(*parts, constants[m], constants[m + 1])
    except UnicodeEncodeError:
        return None
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)
    start, stop = int(offsets[joined.offset]), int(offsets[joined.offset + n])
    return joined.buffers()[2].to_pybytes()[start:stop - 1].decode("ascii")  # without the last ","


def _write(obj, level: int, out: list) -> None:
    if isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        if len(obj) >= BATCH_ROWS:
            text = _rows_text(obj, level)
            if text is not None:
                out.append(text)
                return
        pad = "\n" + INDENT * (level + 1)
        flat = _flat_dict(obj, pad)
        if flat is not None:
            out.append("{" + flat + "\n" + INDENT * level + "}")
            return
        sep = "{"
        for key, value in obj.items():
            out.append(f"{sep}{pad}{encode_basestring_ascii(str(key))}: ")
            sep = ","
            _write(value, level + 1, out)
        out.append("\n" + INDENT * level + "}")
    elif isinstance(obj, (list, tuple)):
        if not obj:
            out.append("[]")
            return
        pad = "\n" + INDENT * (level + 1)
        sep = "["
        for value in obj:
            out.append(sep + pad)
            sep = ","
            _write(value, level + 1, out)
        out.append("\n" + INDENT * level + "]")
    else:
        text = _scalar(obj)
        if text is None:
            if hasattr(obj, "tolist") and not isinstance(obj, bytes):  # NumPy scalars and arrays
                _write(obj.tolist(), level, out)
                return
            text = json.dumps(obj)  # anything else: the standard library's own answer (or its TypeError)
        out.append(text)


def dumps(obj) -> str:
    """``json.dumps(jsonable(obj), indent=2, allow_nan=False)``, computed in one faster pass."""
    out: list = []
    with paused_gc():  # a summary of 200,000 rows: millions of strings and lists, no cycles
        _write(obj, 0, out)
        return "".join(out)
