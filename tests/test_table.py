"""The one table reader (bayes_se.table): an example test for every rule of docs/bad_input.md's
"Reading data tables" section, through load_effects, load_correlations and the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_se import cli, table
from bayes_se.correlations import load_correlations
from bayes_se.data import load_effects
from bayes_se.errors import DataError, DataWarning, SpecError
from bayes_se.spec import load_spec
from bayes_se.data_check import describe
from bayes_se.table import NotANumber, is_missing, parse_number, read_table

GOOD = "study,yi,vi,g\nA,0.10,0.020,x\nB,0.30,0.010,y\nC,0.20,0.030,x\nD,0.45,0.015,y\n"


def _write(tmp_path, content, name="data.csv"):
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def _load(path, **kwargs):
    """load_effects, with the DataWarnings it issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_effects(path, **kwargs)
    return data, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------------- encodings

LABELLED = "study,yi,vi\nMüller 2001,0.1,0.02\nÇelik,0.3,0.01\nØre,0.2,0.03\n"
LABELS = ("Müller 2001", "Çelik", "Øre")


@pytest.mark.parametrize("encoding, bom, name", [
    ("utf-8", b"", "utf-8"),
    ("utf-8", b"\xef\xbb\xbf", "utf-8-sig"),
    ("utf-16-le", b"\xff\xfe", "utf-16-le"),
    ("utf-16-be", b"\xfe\xff", "utf-16-be"),
    ("utf-32-le", b"\xff\xfe\x00\x00", "utf-32-le"),
])
def test_unicode_encodings_are_sniffed_silently(tmp_path, encoding, bom, name):
    path = _write(tmp_path, bom + LABELLED.encode(encoding))
    data, notes = _load(path)
    assert data.study == LABELS and notes == []
    np.testing.assert_array_equal(data.yi, [0.1, 0.3, 0.2])
    assert read_table(path).encoding == name


def test_cp1252_fallback_warns_naming_the_encoding(tmp_path):
    path = _write(tmp_path, LABELLED.replace("\n", "\r\n").encode("cp1252") + "€ sign,0.4,0.02\r\n".encode("cp1252"))
    data, notes = _load(path)
    assert data.study == LABELS + ("€ sign",)
    assert len(notes) == 1 and "not UTF-8" in notes[0] and "cp1252" in notes[0]


def test_bytes_cp1252_leaves_undefined_read_as_latin1(tmp_path):
    path = _write(tmp_path, b"study,yi,vi\nA\x81,0.1,0.02\nB,0.3,0.01\n")
    data, notes = _load(path)
    assert data.study == ("A\x81", "B") and "latin-1" in notes[0]


def test_mixed_utf8_and_cp1252_lines_decode_per_line_and_warn_naming_lines(tmp_path):
    raw = ("study,yi,vi\nMüller,0.1,0.02\n".encode("utf-8") + "Gröber,0.3,0.01\n".encode("cp1252")
           + "Åsa,0.2,0.03\n".encode("utf-8"))
    data, notes = _load(_write(tmp_path, raw))
    assert data.study == ("Müller", "Gröber", "Åsa")  # no mojibake either way
    assert len(notes) == 1 and "mixes encodings" in notes[0] and "line(s) 3 " in notes[0]


def test_explicit_encoding_is_strict_and_names_the_line(tmp_path):
    path = _write(tmp_path, LABELLED.encode("cp1252"))
    data, notes = _load(path, encoding="cp1252")
    assert data.study == LABELS and notes == []
    with pytest.raises(DataError, match=r"not valid utf-8: byte 0xfc on line 2"):
        load_effects(path, encoding="utf-8")
    with pytest.raises(DataError, match="unknown encoding"):
        load_effects(path, encoding="klingon")
    wrong = _write(tmp_path, b"\xff\xfe" + LABELLED.encode("utf-16-le"), "u16.csv")
    assert load_effects(wrong, encoding="utf-16").study == LABELS


# ---------------------------------------------------------------------------- delimiter and rows


def test_excel_sep_line_is_honoured(tmp_path):
    path = _write(tmp_path, "sep=;\nstudy;yi;vi\nA, B;0,1;0,02\nC;0,3;0,01\n")
    data, notes = _load(path)
    assert data.study == ("A, B", "C") and notes == []
    np.testing.assert_array_equal(data.yi, [0.1, 0.3])
    info = read_table(path)
    assert info.sep == ";" and info.how["sep"] == "sep= line" and info.decimal == ","


def test_rows_of_only_delimiters_are_skipped_with_a_note_and_rows_keep_their_numbers(tmp_path):
    path = _write(tmp_path, "study;yi;vi\nA;0,1;0,02\n;;\n\nB;0,3;0,01\n ; ; \nC;0,2;0\n;;\n")
    with pytest.raises(DataError, match=r"row 6 \(study 'C'\), column 'vi': the sampling variance"):
        load_effects(path)
    good = _write(tmp_path, "study;yi;vi\nA;0,1;0,02\n;;\nB;0,3;0,01\n;;;\n", "good.csv")
    data, notes = _load(good)
    assert data.k == 2 and notes == ["file good.csv: skipped 2 row(s) holding only delimiters (row 2, 4)"]


def test_too_many_fields_names_the_row_short_rows_are_padded(tmp_path):
    with pytest.raises(DataError, match=r"row 2: the row has 4 fields but the header has 3"):
        load_effects(_write(tmp_path, "study,yi,vi\nA,0.1,0.02\nB,0.3,0.01,7\n"))
    data, notes = _load(_write(tmp_path, "study,yi,vi,g\nA,0.1,0.02,x\nB,0.3,0.01\n", "short.csv"))
    assert data.frame["g"].iloc[0] == "x" and pd.isna(data.frame["g"].iloc[1]) and "fewer fields" in notes[0]
    trailing = _write(tmp_path, "study,yi,vi,\nA,0.1,0.02,\nB,0.3,0.01,\n", "trailing.csv")
    assert list(load_effects(trailing).frame.columns) == ["yi", "vi", "study"]


def test_options_override_sniffing(tmp_path):
    path = _write(tmp_path, "study|yi|vi\nA|0,1|0,02\nB|0,3|0,01\n")
    assert load_effects(path, sep="|", decimal=",").yi.tolist() == [0.1, 0.3]
    assert load_effects(path, sep="pipe").yi.tolist() == [0.1, 0.3]
    with pytest.raises(DataError, match="delimiter"):
        load_effects(path, sep=":")
    with pytest.raises(DataError, match="decimal mark"):
        load_effects(path, decimal="·")
    quoted = _write(tmp_path, 'study,yi,vi\nA,"0,1","0,02"\nB,"0,3","0,01"\n', "quoted.csv")
    assert load_effects(quoted, decimal=",").yi.tolist() == [0.1, 0.3]


# ---------------------------------------------------------------------------------- number grammar


@pytest.mark.parametrize("text, decimal, value", [
    ("0.5", ".", 0.5), ("-1.25", ".", -1.25), ("+.5", ".", 0.5), ("2.", ".", 2.0), ("1e-3", ".", 1e-3),
    ("1E+3", ".", 1000.0), (" 7 ", ".", 7.0), ("0,5", ",", 0.5), ("-1,5e2", ",", -150.0),
    ("1,234.5", ".", 1234.5), ("12,345,678", ".", 12345678.0), ("1.234,5", ",", 1234.5),
    ("1.234.567", ",", 1234567.0), ("1 234,5", ",", 1234.5), ("1'234.5", ".", 1234.5),
    ("0.123", ",", None), ("1e999", ".", None),
])
def test_number_grammar(text, decimal, value):
    if value is None:
        with pytest.raises(NotANumber):
            parse_number(text, decimal)
    else:
        assert parse_number(text, decimal) == value


@pytest.mark.parametrize("cell, needle", [
    ("0_3", "digit separators '_'"),
    ("inf", "not a finite number"),
    ("-Infinity", "not a finite number"),
    ("+nan", "not a finite number"),
    ("1e999", "beyond the floating-point range"),
    ("١٢", "only the digits 0-9"),
    ("0x1p3", "expected a number"),
    ("1,234", "ambiguous"),
    ("#N/A", "spreadsheet error"),
    ("n/a", "expected a number, found the text 'n/a'"),
    ("none", "expected a number, found the text 'none'"),
    ("-", "expected a number, found the text '-'"),
])
def test_non_numbers_refused_naming_row_and_column(tmp_path, cell, needle):
    path = _write(tmp_path, f'study,yi,vi\nA,0.1,0.02\nB,"{cell}",0.01\n')
    with pytest.raises(DataError) as info:
        load_effects(path)
    message = str(info.value)
    assert message.startswith("row 2 (study 'B'), column 'yi': ") and needle in message


def test_thousands_separators_never_make_a_categorical_moderator(tmp_path):
    ok = _write(tmp_path, 'study,yi,vi,n\nA,0.1,0.02,"1,234.0"\nB,0.3,0.01,"12,345,678"\nC,0.2,0.03,15\n')
    np.testing.assert_array_equal(load_effects(ok).frame["n"], [1234.0, 12345678.0, 15.0])
    eu = _write(tmp_path, "study;yi;vi;n\nA;0,1;0,02;1.234,5\nB;0,3;0,01;2.000,0\nC;0,2;0,03;12\n", "eu.csv")
    np.testing.assert_array_equal(load_effects(eu).frame["n"], [1234.5, 2000.0, 12.0])
    ambiguous = _write(tmp_path, 'study,yi,vi,n\nA,0.1,0.02,15\nB,0.3,0.01,"1,234"\n', "amb.csv")
    with pytest.raises(DataError, match=r"row 2 \(study 'B'\), column 'n': '1,234' is ambiguous.*--decimal ,"):
        load_effects(ambiguous)


def test_numbers_mixed_with_words_are_text_with_a_note(tmp_path):
    data, notes = _load(_write(tmp_path, "study,yi,vi,dose\nA,0.1,0.02,1\nB,0.3,0.01,none\nC,0.2,0.03,2\n"))
    assert data.frame["dose"].tolist() == ["1", "none", "2"]
    assert any("mixes numbers with text" in n and "'none' on row 2" in n for n in notes)


# --------------------------------------------------------------------------------- missing cells


@pytest.mark.parametrize("cell", ["", "  ", "NA", "na", "Na", "NaN", "nan", "NAN", ".", " . "])
def test_missing_markers(cell):
    assert is_missing(cell) and np.isnan(parse_number(cell))


@pytest.mark.parametrize("cell", ["None", "none", "-", "--", "n/a", "NULL", "#N/A", "missing", "?", "0"])
def test_other_text_is_data(cell):
    assert not is_missing(cell)


def test_none_and_dash_are_labels_and_levels(tmp_path):
    path = _write(tmp_path, "study,yi,vi,g\nNone,0.1,0.02,none\nnull,0.3,0.01,-\nC,0.2,0.03,NA\nD,0.4,0.02,.\n")
    data = load_effects(path)
    assert data.study == ("None", "null", "C", "D")
    assert data.frame["g"].tolist()[:2] == ["none", "-"] and data.frame["g"].iloc[2:].isna().all()
    frame = load_effects(pd.DataFrame({"study": ["None", "n/a"], "yi": ["0.1", "NaN"], "vi": [0.1, 0.2]})
                         .assign(yi=["0.1", "0.2"]))
    assert frame.study == ("None", "n/a")
    with pytest.raises(DataError, match=r"row 2 \(study 'B'\), column 'yi': the value is missing"):
        load_effects(_write(tmp_path, "study,yi,vi\nA,0.1,0.02\nB,nan,0.01\n", "m.csv"))


def test_european_file_missniffed_names_the_decimal_mark(tmp_path):
    # one point-decimal cell makes the sniffer pick '.': the comma cells then say what to do
    path = _write(tmp_path, "study;yi;vi\nA;0.1;0,02\nB;0,3;0,01\nC;0,2;0,03\nD;0,3;0,03\n")
    with pytest.raises(DataError) as info:
        load_effects(path)
    assert str(info.value) == ("row 2 (study 'B'), column 'yi': expected a number, found the text '0,3': "
                               "is the decimal mark a comma? try --decimal , (decimal=',' in Python)")
    code, out, err = run_cli("freq", path, "--decimal", ",")
    assert code == 2 and "row 1 (study 'A'), column 'yi'" in err and "--decimal ." in err


# ---------------------------------------------------------------------------------- unreadable files


def test_unreadable_files_give_one_clean_line(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="^file not found: "):
        load_effects(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="^not a file: .* is a folder$"):
        load_effects(tmp_path)
    with pytest.raises(DataError, match="NUL bytes"):
        load_effects(_write(tmp_path, bytes(range(256)), "nul.bin"))
    with pytest.raises(DataError, match=r"control character 0x03 on line 2"):
        load_effects(_write(tmp_path, b"study,yi,vi\nA\x03,0.1,0.02\n", "ctl.csv"))
    locked = _write(tmp_path, GOOD, "locked.csv")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(locked))

    monkeypatch.setattr(table, "open", denied, raising=False)
    with pytest.raises(DataError, match="^cannot read .*locked.csv: permission denied$"):
        load_effects(locked)


# --------------------------------------------------------------------------------- correlations


def test_correlation_tables_use_the_same_reader(tmp_path):
    text = ("sep=;\nstudy;n;var1;var2;r\n1;50;x;m;0,3\n1;50;x;y;0,2\n;;;;\n1;50;m;y;0,4\n"
            "2;80;x;m;0,25\n2;80;x;y;0,1\n2;80;m;y;0,5\n")
    with pytest.warns(DataWarning, match=r"skipped 1 row\(s\) holding only delimiters \(row 3\)"):
        data = load_correlations(_write(tmp_path, text.encode("utf-16"), "r.csv"))
    assert data.k == 2 and data.r[0].tolist() == [0.3, 0.2, 0.4]
    bad = _write(tmp_path, text.replace("2;80;m;y;0,5", "2;80;m;y;1,5"), "bad.csv")
    with pytest.raises(DataError, match=r"^row 7, column 'r': a correlation must lie"):  # the file's row
        load_correlations(bad)
    with pytest.raises(DataError, match=r"row 1, column 'r': .*'0_3'"):
        load_correlations(pd.DataFrame({"study": [1, 2], "n": [50, 80], "var1": ["x", "x"],
                                        "var2": ["m", "m"], "r": ["0_3", "0.2"]}))


# ----------------------------------------------------------------------------------- spec and CLI


def test_spec_data_section_takes_reading_options():
    spec = load_spec('[data]\nsep = ";"\ndecimal = ","\nencoding = "cp1252"\n')
    assert (spec.data.sep, spec.data.decimal, spec.data.encoding) == (";", ",", "cp1252")
    assert load_spec(spec.to_toml()) == spec
    for key, value in (("sep", ":"), ("decimal", ";"), ("encoding", "nope")):
        with pytest.raises(SpecError, match=f"spec key 'data.{key}'"):
            load_spec(f'[data]\n{key} = "{value}"\n')


@pytest.mark.parametrize("command", ["fit", "freq", "sensitivity", "report", "check"])
def test_every_data_command_has_the_reading_flags(command):
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    flags = {o for a in sub.choices[command]._actions for o in a.option_strings}
    assert {"--sep", "--decimal", "--encoding"} <= flags


def test_cli_reading_flags_reach_the_reader(tmp_path):
    path = _write(tmp_path, "study|yi|vi\nA|0,10|0,020\nB|0,30|0,010\nC|0,20|0,030\n".encode("cp1252"))
    code, out, err = run_cli("freq", path, "--sep", "|", "--decimal", ",", "--encoding", "cp1252", "--json")
    assert code == 0 and err == "" and json.loads(out)["k"] == 3
    code, out, err = run_cli("fit", "--data", path, "--engine", "exact", "--decimal", ",", "--json")
    assert code == 0 and err == "" and json.loads(out)["k"] == 3
    code, out, err = run_cli("fit", "--data", path, "--engine", "exact", "--sep", ":")
    assert code == 2 and err.count("\n") == 1 and "data.sep" in err


def test_cli_prints_data_warnings_as_one_line(tmp_path):
    path = _write(tmp_path, GOOD.replace("A,", "Müller,").encode("cp1252"))
    code, out, err = run_cli("freq", path)
    assert code == 0
    assert err == ("bayes-se: warning: file data.csv is not UTF-8; read as cp1252 (Windows Latin-1): check "
                   "accented labels, or pass --encoding with the file's encoding\n")


def test_check_prints_what_the_reader_understood(tmp_path):
    path = _write(tmp_path, "sep=;\nstudy;trial;yi;vi;g;n\nA;1;0,1;0,02;x;10\nB;1;0,3;0,01;;12\n;;;;;\n"
                            "C;2;0,2;0,03;y;NA\nD;3;0,45;0,015;x;9\n")
    code, out, err = run_cli("check", path, "--study", "study", "--cluster", "trial")
    assert code == 0 and err == ""
    for needle in ("delimiter:    ';' semicolon (sep= line)", "decimal mark: ',' (sniffed)",
                   "encoding:     utf-8 (sniffed)", "data rows:    4   k = 4", "clusters:     3 in column 'trial'",
                   "missing cells: 2 (g: 1, n: 1)", "effect table: ok, k = 4", "skipped 1 row(s)"):
        assert needle in out, needle
    code, out, err = run_cli("check", path, "--json", "--cluster", "trial")
    report = json.loads(out)
    assert code == 0 and report["sep"] == ";" and report["decimal"] == "," and report["k"] == 4
    assert report["clusters"]["n"] == 3 and report["missing"] == {"study": 0, "trial": 0, "yi": 0, "vi": 0,
                                                                 "g": 1, "n": 1}
    types = {c["name"]: c["type"] for c in report["columns"]}
    assert types == {"study": "text", "trial": "integer", "yi": "number", "vi": "number", "g": "text",
                     "n": "integer"}


def test_check_reports_column_problems_and_non_effect_tables(tmp_path):
    path = _write(tmp_path, 'study,n,var1,var2,r\n1,"1,234",x,m,0.3\n2,80,x,m,0.2\n')
    report = describe(path)
    n = next(c for c in report["columns"] if c["name"] == "n")
    assert n["type"] == "unreadable" and "row 1, column 'n'" in n["problem"]
    assert report["effect_table"]["ok"] is False and "'yi'" in report["effect_table"]["problem"]


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "nope.csv", "file not found"),
    (lambda d: d, "is a folder"),
    (lambda d: _write(d, bytes(range(256)), "bin.dat"), "NUL bytes"),
    (lambda d: _write(d, GOOD, "ok.csv"), "no cluster column 'site'"),
])
def test_check_unreadable_exit_2_one_line(tmp_path, make, needle):
    code, out, err = run_cli("check", make(tmp_path), "--cluster", "site")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("bayes-se: error:") and needle in err


def test_escalc_reads_text_cells_by_the_same_grammar():
    from bayes_se.effect_sizes import escalc

    table = pd.DataFrame({"ri": ["0.3", " 0.2 "], "ni": [20, 30]})
    np.testing.assert_allclose(escalc("ZCOR", data=table, ri="ri", ni="ni")["yi"], np.arctanh([0.3, 0.2]))
    with pytest.raises(DataError, match=r"row 2, column 'ri': .*'0_3'"):
        escalc("ZCOR", data=table.assign(ri=["0.3", "0_3"]), ri="ri", ni="ni")


class _Cell(str):
    """A text cell that is not exactly ``str``: infer_column then takes its cell-by-cell path."""


@pytest.mark.parametrize("decimal", [".", ","])
def test_text_columns_read_as_cell_by_cell(decimal):
    # infer_column's fast path for a file's text cells gives the cell-by-cell answer: kind, values,
    # missing count, note, and the same error
    import random

    from bayes_se.table import infer_column, label, label_column

    pool = ["1", "0", "2.5", " 3 ", "", "NA", "nan", ".", "d1", "1,234", "1,234,567", "1.234,5", "1 234", "inf",
            "1e999", "1_000", "0,5", "+1e-3", "-.5", "2.", "None", "-", "#N/A", "e5", "+-1", "007", "NaN"]
    rng = random.Random(7)

    def outcome(cells):
        try:
            info = infer_column(cells, "c", decimal, series=False)
        except Exception as exc:  # noqa: BLE001 - the error is part of the answer
            return type(exc).__name__, str(exc)
        values = info.values.tolist() if isinstance(info.values, np.ndarray) else list(info.values)
        return info.kind, info.missing, info.note, repr(values)

    for _ in range(1500):
        sub = rng.sample(pool, rng.randint(1, 5))
        cells = [rng.choice(sub) for _ in range(rng.randint(1, 7))]
        assert outcome(cells) == outcome([_Cell(c) for c in cells]), cells
        assert label_column(cells) == [label(c) for c in cells]


def test_rows_split_without_csv_as_csv_reads_them(tmp_path):
    # a file without quotes is split by str.split; the same file with a quoted header cell goes
    # through the csv module: the same table, notes and row numbers
    body = "yi,vi,g\n0.1,0.01,a\n\n,,\n0.2,0.02\n0.3,0.03,b,\n 0.4 ,0.04,c\n"
    for text in (body, body.rstrip("\n"), body.replace(",", ";"), body + "\n\n"):
        plain, quoted = tmp_path / "plain.csv", tmp_path / "quoted.csv"
        plain.write_text(text, encoding="utf-8")
        quoted.write_text(text.replace("yi", '"yi"', 1), encoding="utf-8")
        a, b = table.read_table(str(plain)), table.read_table(str(quoted))
        assert (a.cells.header, a.cells.records, a.rows, a.sep, a.decimal) == \
            (b.cells.header, b.cells.records, b.rows, b.sep, b.decimal)
        assert [n.replace("plain", "quoted") for n in a.notes] == list(b.notes)
