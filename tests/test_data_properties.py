"""Property tests: whatever table a user hands load_effects, it loads cleanly or says why.

Random small DataFrames and random delimited text (any delimiter, either decimal mark, NaNs, text,
zeros, negatives) either load, and then every invariant holds, or raise BayesSEError: never any
other exception. Generated files in UTF-8/UTF-16/cp1252, with any delimiter and decimal mark, labels
full of delimiters, quotes and unicode, and missing cells, read back exactly (bayes_se.table).
"""

from __future__ import annotations

import csv
import io
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from bayes_se.data import load_effects
from bayes_se.errors import BayesSEError, DataError
from bayes_se.table import MISSING_MARKERS, NotANumber, is_missing, parse_number

pytestmark = pytest.mark.filterwarnings("ignore::bayes_se.errors.DataWarning")

EXAMPLES = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

numbers = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([0.0, -0.0, -1.0, 1e-300, 1e300, math.inf, -math.inf, math.nan]),
)
bad_cells = st.one_of(
    numbers,
    st.none(),
    st.sampled_from(["", "NA", "abc", "1,5", "0.25", " 2 ", "-", "1e-3", "TRUE"]),
)
effects = st.floats(min_value=-10, max_value=10, allow_nan=False)
variances = st.floats(min_value=1e-4, max_value=10)


def mostly(good, bad, rate=0.9):
    """``good`` with probability about ``rate``, else ``bad`` (so that many tables load)."""
    return st.integers(0, 99).flatmap(lambda u: good if u < 100 * rate else bad)


@st.composite
def label_lists(draw, k):
    base = [f"S{i}" for i in range(k)]
    return [draw(mostly(st.just(b), st.sampled_from(["S0", "", None, 3, 3.0]))) for b in base]


def _check_invariants(data):
    assert data.k >= 2
    assert data.yi.shape == data.vi.shape == (data.k,)
    assert np.all(np.isfinite(data.yi)) and np.all(np.isfinite(data.vi)) and np.all(data.vi > 0)
    assert len(set(data.study)) == data.k
    assert all(isinstance(s, str) for s in data.study)
    if data.cluster is not None:
        assert len(data.cluster) == data.k and all(isinstance(c, str) for c in data.cluster)
    assert list(data.frame.columns[:3]) == ["yi", "vi", "study"] and len(data.frame) == data.k


def _load(*args, **kwargs):
    try:
        data = load_effects(*args, **kwargs)
    except BayesSEError:
        return
    _check_invariants(data)


@st.composite
def frames(draw):
    k = draw(st.integers(0, 6))
    columns = {
        "yi": draw(st.lists(mostly(effects, bad_cells), min_size=k, max_size=k)),
        "vi": draw(st.lists(mostly(variances, bad_cells), min_size=k, max_size=k)),
    }
    if draw(st.booleans()):
        columns["study"] = draw(label_lists(k))
    if draw(st.booleans()):
        columns["trial"] = draw(st.lists(st.sampled_from(["1", "2", None, 2, 2.0]),
                                         min_size=k, max_size=k))
    if draw(st.booleans()):
        columns["mod"] = draw(st.lists(mostly(st.sampled_from(["a", "b", 1.5, 2]), bad_cells, 0.7),
                                       min_size=k, max_size=k))
    frame = pd.DataFrame(columns)
    if draw(st.booleans()) and k:  # numeric dtypes as well as object columns
        frame["yi"] = pd.to_numeric(frame["yi"], errors="coerce")
    return frame


@EXAMPLES
@given(frame=frames(), use_cluster=st.booleans(), use_mods=st.booleans())
def test_random_dataframes_load_or_raise_bayes_se_error(frame, use_cluster, use_mods):
    kwargs = {}
    if use_cluster:
        kwargs["cluster"] = "trial"
    if use_mods:
        kwargs["moderators"] = ["mod"]
    _load(frame, **kwargs)


text_cells = mostly(
    st.floats(min_value=1e-3, max_value=1e3).map(lambda x: f"{x:.4g}"),
    st.sampled_from(["", "NA", "0", "-1", "abc", '"q;,|x"', "nan", "inf", "1.5", "2,5", "S1"]),
)


@st.composite
def csv_texts(draw):
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    decimal = "." if sep == "," else draw(st.sampled_from([".", ","]))
    header = draw(st.sampled_from([["study", "yi", "vi"], ["study", "yi", "vi", "x"],
                                   ["yi", "vi"], ["yi", "se"], ["study", "yi"]]))
    k = draw(st.integers(0, 6))
    rows = []
    for _ in range(k):
        row = [draw(text_cells) for _ in header]
        if header[0] == "study":
            row[0] = draw(mostly(st.just(f"S{len(rows)}"), st.sampled_from(["S0", "", '"a,b"'])))
        if decimal == ",":
            row = [c.replace(".", ",") for c in row]
        if draw(st.integers(0, 9)) == 0:  # a ragged row now and then
            row = row[:-1]
        rows.append(sep.join(row))
    text = "\n".join([sep.join(header)] + rows) + ("\n" if draw(st.booleans()) else "")
    return text, draw(st.booleans()), sep, header


@EXAMPLES
@given(case=csv_texts(), give_sep=st.booleans())
def test_random_csv_text_loads_or_raises_bayes_se_error(case, give_sep):
    text, bom, sep, header = case
    kwargs = {"sep": sep} if give_sep else {}
    if "se" in header:
        kwargs["se"] = "se"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "effects.csv"
        path.write_bytes(text.encode("utf-8-sig" if bom else "utf-8"))
        _load(path, **kwargs)


# ------------------------------------------------------------------------------------------------
# The table reader (bayes_se.table): generated files in odd encodings, delimiters and decimal marks,
# with labels full of delimiters, quotes and unicode, and missing cells. Given the format the file
# must read back exactly; sniffed, it reads back exactly or says what to pass (never a silent
# misreading); a bad number names its row and column.
# ------------------------------------------------------------------------------------------------

READER = settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example,
                                         HealthCheck.filter_too_much])
SPECIALS = "$<>\"';,|\t &%#=()[]{}\\/"
_label_chars = st.one_of(
    st.sampled_from(SPECIALS),
    st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Zl", "Zp", "Co", "Cn")),
)
labels = st.tuples(
    st.characters(whitelist_categories=("Lu", "Ll", "Lo")),
    st.text(_label_chars, max_size=6),
).map("".join).map(str.strip).filter(lambda s: s and not is_missing(s) and not s.lower().startswith("sep="))
missing_cells = st.sampled_from(["", "NA", "na", "NaN", "nan", "NAN", ".", " NA ", "  "])
_styles = st.sampled_from(["repr", "e", "E+", "fixed", "plus", "int", "lead"])
_any_x = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
_positive_x = st.floats(min_value=1e-6, max_value=1e6)
_formats = st.tuples(st.sampled_from([",", ";", "\t", "|"]), st.sampled_from([".", ","]),
                     st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "cp1252"]))
_empty_rows = st.lists(st.sampled_from(["", "x3", "x4"]), max_size=2)


@st.composite
def number_texts(draw, positive=False):
    """A number as text with '.' (any of several formats) and the float it means."""
    x = draw(_positive_x if positive else _any_x)
    style = draw(_styles)
    if style == "int":
        x = float(round(x)) or 1.0
    text = {"repr": repr(x), "e": f"{x:.5e}", "E+": f"{x:.3E}", "fixed": f"{x:.4f}", "plus": f"{x:+.6g}",
            "int": str(int(x)), "lead": f"{x:.3f}".replace("0.", ".", 1) if abs(x) < 1 else repr(x)}[style]
    value = float(text)
    assume(not positive or value > 0)
    return text, value


_numbers, _variances = number_texts(), number_texts(positive=True)
_cell_kind = st.integers(0, 3)


@st.composite
def effect_files(draw):
    """(bytes, options, expected) for a random effect-size file."""
    sep, decimal, encoding = draw(_formats)
    k = draw(st.integers(2, 6))
    studies = draw(st.lists(labels, min_size=k, max_size=k, unique=True))
    levels = draw(st.lists(labels, min_size=1, max_size=3))
    if encoding == "cp1252":  # only what cp1252 can write
        studies = [s.encode("cp1252", "replace").decode("cp1252") for s in studies]
        levels = [s.encode("cp1252", "replace").decode("cp1252") for s in levels]
        assume(len(set(studies)) == k)
    yi = [draw(_numbers) for _ in range(k)]
    vi = [draw(_variances) for _ in range(k)]
    numeric_mod = draw(st.booleans())
    mod_cells, mod_expected = [], []
    for _ in range(k):
        if draw(_cell_kind) == 0:
            mod_cells.append(draw(missing_cells))
            mod_expected.append(None)
        elif numeric_mod:
            text, value = draw(_numbers)
            mod_cells.append(text.replace(".", decimal))
            mod_expected.append(value)
        else:
            level = levels[draw(st.integers(0, len(levels) - 1))]
            mod_cells.append(level)
            mod_expected.append(level)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=sep, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    excel_line = draw(st.booleans())
    if excel_line:
        out.write(f"sep={sep}\n")
    writer.writerow(["study", "yi", "vi", "mod"])
    rows, row = [], 0
    for i in range(k):
        for empty in draw(_empty_rows):  # now and then a row of only delimiters or a blank line
            out.write({"": "", "x3": sep * 3, "x4": sep * 4}[empty] + "\n")
            row += 1
        writer.writerow([studies[i], yi[i][0].replace(".", decimal), vi[i][0].replace(".", decimal), mod_cells[i]])
        row += 1
        rows.append(row)
    text = out.getvalue()
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    raw = text.encode(encoding) if encoding != "utf-16-be" else b"\xfe\xff" + text.encode("utf-16-be")
    expected = {"study": tuple(studies), "yi": [v for _, v in yi], "vi": [v for _, v in vi],
                "mod": mod_expected, "numeric_mod": numeric_mod, "rows": rows, "sep": sep,
                "decimal": decimal, "encoding": encoding, "excel_line": excel_line}
    return raw, {"sep": sep, "decimal": decimal, "encoding": encoding}, expected


def _encodable(text, encoding):
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read(raw, **kwargs):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "effects.csv"
        path.write_bytes(raw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_effects(path, **kwargs)


def _assert_read_back(data, expected):
    assert data.study == expected["study"]
    np.testing.assert_array_equal(data.yi, expected["yi"])  # bit for bit: the text is parsed once
    np.testing.assert_array_equal(data.vi, expected["vi"])
    mod = data.frame["mod"].tolist()
    for got, want in zip(mod, expected["mod"]):
        if want is None:
            assert got is None or (isinstance(got, float) and np.isnan(got))
        else:
            assert got == want and type(got) is not str or got == want


@READER
@given(case=effect_files())
def test_generated_files_read_back_exactly_given_the_format(case):
    raw, options, expected = case
    options = dict(options)
    if options["encoding"] == "utf-16-be":
        options["encoding"] = "utf-16"  # the byte-order mark says which
    _assert_read_back(_read(raw, **options), expected)


@READER
@given(case=effect_files())
def test_generated_files_read_back_exactly_or_name_the_decimal_mark_when_sniffed(case):
    raw, _, expected = case
    if expected["encoding"] == "cp1252" and not raw.isascii():
        # cp1252 bytes that happen to be valid UTF-8 cannot be told apart; the reader decodes a file
        # that mixes encodings line by line (with a warning), so one such line is ambiguous too
        assume(not any(not line.isascii() and _is_utf8(line) for line in raw.split(b"\n")))
    try:
        data = _read(raw)
    except DataError as exc:
        # the one thing a sniffer cannot see: ',' decimals in a ','-delimited file, or numbers
        # that are all ambiguous ('1,234'); the message then names the decimal mark to pass
        assert "--decimal" in str(exc), str(exc)
        assert expected["decimal"] == "," and (expected["sep"] == "," or "ambiguous" in str(exc)), str(exc)
        event("sniffing failed and named the decimal mark")
        return
    event("read back exactly")
    _assert_read_back(data, expected)


BAD_NUMBERS = {".": ["0_3", "inf", "-Infinity", "+nan", "1,234", "1e999", "١٢", "abc", "#N/A", "n/a", "none",
                     "-", "0,5", "1.2.3", "0x1A", "True"],
               ",": ["0_3", "inf", "-Infinity", "1.234", "1e999", "١٢", "abc", "#N/A", "none", "-", "0.5",
                     "1,2,3"]}


@READER
@given(case=effect_files(), data=st.data())
def test_a_bad_number_names_its_row_and_column(case, data):
    raw, options, expected = case
    decimal, encoding = expected["decimal"], options["encoding"]
    text = raw.decode("utf-16" if encoding == "utf-16-be" else encoding)
    i = data.draw(st.integers(0, len(expected["study"]) - 1))
    bad = data.draw(st.sampled_from(BAD_NUMBERS[decimal]))
    assume(_encodable(bad, "cp1252") or encoding != "cp1252")
    column = data.draw(st.sampled_from(["yi", "vi"]))
    records = list(csv.reader(io.StringIO(text.replace("\r\n", "\n"), newline=""), delimiter=expected["sep"]))
    start = 1 + int(expected["excel_line"])
    target = start + expected["rows"][i] - 1
    records[target][1 if column == "yi" else 2] = bad
    out = io.StringIO()
    csv.writer(out, delimiter=expected["sep"], lineterminator="\n").writerows(records)
    new = out.getvalue().encode("utf-16" if encoding == "utf-16-be" else encoding)
    with pytest.raises(DataError) as info:
        _read(new, sep=expected["sep"], decimal=decimal, encoding="utf-16" if encoding == "utf-16-be" else encoding)
    err = info.value
    assert err.column == column
    assert str(err.row).split()[0] == str(expected["rows"][i])
    assert repr(bad) in str(err) or "missing" in str(err)


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.text(max_size=12), st.from_regex(r"\A[ +-]?[0-9_.,' eE+-]{1,12}\Z")),
       decimal=st.sampled_from([".", ","]))
def test_parse_number_accepts_only_the_grammar(text, decimal):
    try:
        value = parse_number(text, decimal)
    except NotANumber:
        return
    if is_missing(text):
        assert np.isnan(value)
        return
    assert np.isfinite(value)
    core = text.strip()
    assert "_" not in core and core.isascii() and not any(w in core.lower() for w in ("inf", "nan"))
    other = "," if decimal == "." else "."
    plain = core
    for mark in (other, " ", "'", "\u00a0", "\u202f"):
        plain = plain.replace(mark, "")
    assert float(plain.replace(decimal, ".")) == value


@settings(max_examples=100, deadline=None)
@given(pair=number_texts(), decimal=st.sampled_from([".", ","]))
def test_formatted_floats_parse_exactly(pair, decimal):
    text, value = pair
    assert parse_number(text.replace(".", decimal), decimal) == value
    assert parse_number(f"  {text.replace('.', decimal)} ", decimal) == value


def test_missing_markers_are_exactly_the_documented_list():
    assert MISSING_MARKERS == ("", "NA", "NaN", ".")
