"""The bad-input catalogue: what a user sees for every kind of wrong input, at the command line.

Each case of :data:`CASES` is run through ``bayes_se.cli.main`` in-process; a few also through a
real ``python -m bayes_se.cli`` subprocess to prove that no traceback escapes. For every case the
contract is: exit status 2, exactly one line on stderr starting ``bayes-se: error:``, the line
names the place (row / column / key / file: the case's ``needle``), nothing on stdout, and no
partial output (``--out DIR`` is not created). Cases marked ``ok`` must instead load and fit.

``docs/bad_input.md`` is generated from the same list::

    python tests/test_bad_input_catalogue.py > docs/bad_input.md

and :func:`test_doc_lists_every_case` keeps the two in step. The correlation-table cases (for
MASEM / mediation) run through the Python API, as the CLI has no command reading such tables.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pathlib
import random
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayes_se import cli
from bayes_se.data import MAX_FILE_BYTES
from bayes_se.errors import BayesSEError

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "bad_input.md"

GOOD = "study,yi,vi,g\nA,0.10,0.020,x\nB,0.30,0.010,y\nC,0.20,0.030,x\nD,0.45,0.015,y\n"
RANDOM_BYTES = random.Random(5).randbytes(4000).replace(b"\x00", b"\x01")  # no NUL; a CR in line 1

def _sparse(path: pathlib.Path) -> None:
    with open(path, "wb") as handle:  # sparse: takes no disk space, must never be read
        handle.write(b"study,yi,vi\n")
        handle.truncate(MAX_FILE_BYTES + 1)


@dataclasses.dataclass(frozen=True)
class Case:
    """One kind of bad input.

    ``argv`` holds ``{dir}`` for the case's temporary folder; ``files`` maps names in that folder
    to text, bytes or a callable writing the file. ``needle`` must appear in the error line.
    ``example`` is what the documentation shows as the input.
    """

    id: str
    what: str
    example: str
    argv: tuple
    needle: str = ""
    files: dict = dataclasses.field(default_factory=dict)
    ok: bool = False  # True: the input must load and fit (exit 0)
    bug: str = ""  # non-empty: a known bug (xfail strict) with the fix we propose


def _fit(data="{dir}/data.csv", *extra):
    return ("fit", "--data", data, "--engine", "exact", *extra)


def _data(text):
    return {"data.csv": text}


CASES = [
    Case("empty-file", "empty file", "(0 bytes)", _fit(), "empty", _data("")),
    Case("header-only", "header but no rows", "study,yi,vi", _fit(), "no data rows", _data("study,yi,vi\n")),
    Case("wrong-delimiter", "delimiter we cannot split on (spaces)", "study yi vi / A 0.1 0.02", _fit(),
         "column 'yi'", _data("study yi vi\nA 0.1 0.02\nB 0.3 0.01\n")),
    Case("missing-effect-column", "effect column absent", "study,d,vi", _fit(), "column 'yi'",
         _data("study,d,vi\nA,0.1,0.02\nB,0.3,0.01\n")),
    Case("missing-variance-column", "variance column absent", "study,yi", _fit(), "column 'vi'",
         _data("study,yi\nA,0.1\nB,0.3\n")),
    Case("missing-named-column", "--variance names a column that is absent", "--variance var", _fit(
        "{dir}/data.csv", "--variance", "var"), "column 'var'", _data(GOOD)),
    Case("nan-effect", "missing effect", "B,NaN,0.01", _fit(), "row 2 (study 'B'), column 'yi'",
         _data("study,yi,vi\nA,0.1,0.02\nB,NaN,0.01\nC,0.2,0.03\n")),
    Case("empty-cell", "empty cell", "B,,0.01", _fit(), "row 2 (study 'B'), column 'yi'",
         _data("study,yi,vi\nA,0.1,0.02\nB,,0.01\nC,0.2,0.03\n")),
    Case("inf-variance", "infinite variance", "B,0.3,inf", _fit(), "row 2 (study 'B'), column 'vi'",
         _data("study,yi,vi\nA,0.1,0.02\nB,0.3,inf\nC,0.2,0.03\n")),
    Case("zero-variance", "variance = 0", "C,0.2,0", _fit(), "row 3 (study 'C'), column 'vi'",
         _data("study,yi,vi\nA,0.1,0.02\nB,0.3,0.01\nC,0.2,0\n")),
    Case("negative-variance", "variance < 0", "A,0.1,-0.02", _fit(), "row 1 (study 'A'), column 'vi'",
         _data("study,yi,vi\nA,0.1,-0.02\nB,0.3,0.01\n")),
    Case("negative-se", "standard error <= 0 (--se)", "B,0.3,-0.1", _fit("{dir}/data.csv", "--se", "sei"),
         "row 2 (study 'B'), column 'sei'", _data("study,yi,sei\nA,0.1,0.1\nB,0.3,-0.1\n")),
    Case("one-study", "k = 1", "one data row", _fit(), "at least 2", _data("study,yi,vi\nA,0.1,0.02\n")),
    Case("duplicate-labels", "a study label twice", "A twice", _fit(), "column 'study'",
         _data("study,yi,vi\nA,0.1,0.02\nA,0.3,0.01\nC,0.2,0.03\n")),
    Case("duplicate-column", "a column name twice in the header", "study,yi,yi,vi", _fit(), "column 'yi'",
         _data("study,yi,yi,vi\nA,0.1,0.1,0.02\nB,0.3,0.3,0.01\n")),
    Case("text-in-numbers", "text in a numeric column", "B,abc,0.01", _fit(), "row 2 (study 'B'), column 'yi'",
         _data("study,yi,vi\nA,0.1,0.02\nB,abc,0.01\nC,0.2,0.03\n")),
    Case("moderator-one-level", "moderator with one level", "--mods g (g = x everywhere)",
         _fit("{dir}/data.csv", "--mods", "g"), "column 'g'",
         _data("study,yi,vi,g\nA,0.1,0.02,x\nB,0.3,0.01,x\nC,0.2,0.03,x\n")),
    Case("moderator-all-missing", "moderator missing in every row", "--mods g (g empty)",
         _fit("{dir}/data.csv", "--mods", "g"), "column 'g'",
         _data("study,yi,vi,g\nA,0.1,0.02,\nB,0.3,0.01,\nC,0.2,0.03,\n")),
    Case("moderator-missing-na-error", "missing moderator with --na error (default: the row is left out with a "
         "warning)", "--mods g --na error, B,0.3,0.01,", _fit("{dir}/data.csv", "--mods", "g", "--na", "error"),
         "row 2 (study 'B'), column 'g'", _data("study,yi,vi,g\nA,0.1,0.02,x\nB,0.3,0.01,\nC,0.2,0.03,y\n"
                                                "D,0.4,0.02,x\n")),
    Case("moderator-effect-column", "moderator formula using the effect column", "--mods 'g + yi'",
         _fit("{dir}/data.csv", "--mods", "g + yi"), "'yi' is the effect size column", _data(GOOD)),
    Case("moderator-unknown", "moderator that is not a column", "--mods dose", _fit(
        "{dir}/data.csv", "--mods", "dose"), "column 'dose'", _data(GOOD)),
    Case("moderator-expression", "moderator formula with an operator we do not have", "--mods 'g - yi'",
         _fit("{dir}/data.csv", "--mods", "g - yi"), "model.mods", _data(GOOD)),
    Case("unknown-prior-family", "unknown prior name", "--prior 'tau=wibble(1)'", _fit(
        "{dir}/data.csv", "--prior", "tau=wibble(1)"), "wibble", _data(GOOD)),
    Case("unknown-prior-parameter", "prior for a parameter the model lacks", "--prior 'sigma=normal(0, 1)'",
         _fit("{dir}/data.csv", "--prior", "sigma=normal(0, 1)"), "sigma", _data(GOOD)),
    Case("malformed-prior", "malformed prior string", "--prior 'mu=normal(0,'", _fit(
        "{dir}/data.csv", "--prior", "mu=normal(0,"), "mu=normal(0,", _data(GOOD)),
    Case("negative-scale", "negative prior scale", "--prior 'tau=half_normal(-1)'", _fit(
        "{dir}/data.csv", "--prior", "tau=half_normal(-1)"), "tau=half_normal(-1)", _data(GOOD)),
    Case("unknown-coefficient", "prior for a coefficient the design lacks", "--prior 'beta[z]=normal(0, 1)'",
         _fit("{dir}/data.csv", "--mods", "g", "--prior", "beta[z]=normal(0, 1)"), "'z'", _data(GOOD)),
    Case("unknown-spec-key", "misspelt spec key", "[model] typ = ...",
         ("fit", "{dir}/spec.toml", "--data", "{dir}/data.csv"), "model.typ",
         {"data.csv": GOOD, "spec.toml": "[model]\ntyp = 'random_effects'\n"}),
    Case("unknown-spec-section", "unknown spec section", "[modle]",
         ("fit", "{dir}/spec.toml", "--data", "{dir}/data.csv"), "modle",
         {"data.csv": GOOD, "spec.toml": "[modle]\ntype = 'random_effects'\n"}),
    Case("spec-bad-value", "spec value of the wrong type", "[sampler] draws = 'many'",
         ("fit", "{dir}/spec.toml", "--data", "{dir}/data.csv"), "sampler.draws",
         {"data.csv": GOOD, "spec.toml": "[sampler]\ndraws = 'many'\n"}),
    Case("spec-not-toml", "spec that is not valid TOML", "[model",
         ("fit", "{dir}/spec.toml", "--data", "{dir}/data.csv"), "line 1",
         {"data.csv": GOOD, "spec.toml": "[model\ntype = \n"}),
    Case("spec-missing", "spec file that does not exist", "nope.toml",
         ("fit", "{dir}/nope.toml", "--data", "{dir}/data.csv"), "nope.toml", _data(GOOD)),
    Case("spec-missing-no-suffix", "spec file that does not exist, no .toml suffix", "myspec.txt",
         ("fit", "{dir}/myspec.txt", "--data", "{dir}/data.csv"), "myspec.txt", _data(GOOD)),
    Case("spec-is-directory", "a folder given as the spec", "models/",
         ("fit", "{dir}/sub", "--data", "{dir}/data.csv"), "sub", {"data.csv": GOOD, "sub/keep": ""}),
    Case("data-missing", "data file that does not exist", "nope.csv", _fit("{dir}/nope.csv"), "nope.csv"),
    Case("data-is-directory", "a folder given as data", "data/", _fit("{dir}/sub"), "sub", {"sub/keep": ""}),
    Case("huge-file", f"file over {MAX_FILE_BYTES // 1024**2} MB (refused unread)", "201 MB sparse file",
         _fit(), "MB", {"data.csv": _sparse}),
    Case("binary-nul", "binary file (holds NUL bytes)", "bytes 0..255", _fit(), "NUL",
         _data(bytes(range(256)) * 8)),
    Case("binary-no-nul", "binary garbage without NUL bytes", "random bytes 1..255", _fit(), "data.csv",
         _data(RANDOM_BYTES)),
    Case("out-is-file", "--out names an existing file", "--out results.txt",
         _fit("{dir}/data.csv", "--out", "{dir}/results.txt"), "results.txt",
         {"data.csv": GOOD, "results.txt": "keep me\n"}),
    Case("bom", "UTF-8 byte-order mark (loads fine)", "\\ufeffstudy,yi,vi", _fit(), ok=True,
         files=_data("\ufeff" + GOOD)),
    Case("excel-semicolon-comma", "Excel ';' delimiter with ',' decimals (loads fine)", "A;0,10;0,020",
         _fit(), ok=True, files=_data(GOOD.replace(",", ";").replace(".", ","))),
    Case("mac-cr-line-ends", "classic Mac line ends, CR only (should load)", "study,yi,vi\\rA,...", _fit(),
         ok=True, files=_data(GOOD.replace("\n", "\r"))),
    Case("excel-windows", "Windows line ends and cp1252 text (loads fine)", "Müller\\r\\n", _fit(), ok=True,
         files=_data(GOOD.replace("A,", "Müller,").replace("\n", "\r\n").encode("cp1252"))),
]

# Reading data tables (bayes_se.table): one case per rule of the "Reading data tables" section.
EU = GOOD.replace(",", ";").replace(".", ",")
READER_CASES = [
    Case("utf-16", "UTF-16 LE with byte-order mark (loads fine)", "FF FE s\\0t\\0...", _fit(), ok=True,
         files=_data(b"\xff\xfe" + GOOD.replace("A,", "Müller,").encode("utf-16-le"))),
    Case("utf-16-be", "UTF-16 BE with byte-order mark (loads fine)", "FE FF \\0s\\0t...", _fit(), ok=True,
         files=_data(b"\xfe\xff" + GOOD.encode("utf-16-be"))),
    Case("mixed-encodings", "UTF-8 file with one cp1252 line (loads, warns naming the line)",
         "Müller (UTF-8) / Gröber (cp1252)", _fit(), ok=True,
         files=_data(GOOD.replace("A,", "Müller,").encode() + "Gröber,0.2,0.02,x\n".encode("cp1252"))),
    Case("wrong-encoding", "--encoding that does not fit the bytes", "--encoding utf-8 on cp1252",
         _fit("{dir}/data.csv", "--encoding", "utf-8"), "line 2",
         _data(GOOD.replace("A,", "Müller,").encode("cp1252"))),
    Case("unknown-encoding", "--encoding that Python does not know", "--encoding klingon",
         _fit("{dir}/data.csv", "--encoding", "klingon"), "data.encoding", _data(GOOD)),
    Case("excel-sep-line", "Excel's `sep=;` first line (honoured)", "sep=; / study;yi;vi", _fit(), ok=True,
         files=_data("sep=;\n" + EU)),
    Case("delimiter-only-rows", "rows of only delimiters (skipped with a note)", ";;; between rows", _fit(),
         ok=True, files=_data(EU.replace("\nC;", "\n;;;\nC;"))),
    Case("skipped-rows-keep-numbers", "an error after a skipped row names the file's row", "C;0,2;0",
         _fit(), "row 4 (study 'C'), column 'vi'", _data(EU.replace("\nC;0,20;0,030", "\n;;;\nC;0,20;0"))),
    Case("too-many-fields", "a row with more fields than the header", "B,0.3,0.01,y,7", _fit(), "row 2",
         _data(GOOD.replace("y\nC", "y,7\nC"))),
    Case("european-missniffed", "';' file with ',' decimals and one '.' decimal", "A;0.10;0,020 / B;0,30",
         _fit(), "--decimal ,", _data(EU.replace("A;0,10", "A;0.10"))),
    Case("decimal-flag", "--decimal , for quoted comma decimals (loads fine)", '--decimal , / A,"0,10"',
         _fit("{dir}/data.csv", "--decimal", ","), ok=True,
         files=_data('study,yi,vi\nA,"0,10","0,020"\nB,"0,30","0,010"\nC,"0,20","0,030"\n')),
    Case("bad-sep-flag", "--sep that is not a delimiter", "--sep :", _fit("{dir}/data.csv", "--sep", ":"),
         "data.sep", _data(GOOD)),
    Case("underscore-number", "digit separator '_' (Python's float reads it)", "B,0_3,0.01", _fit(),
         "row 2 (study 'B'), column 'yi'", _data(GOOD.replace("0.30", "0_3"))),
    Case("nan-word", "non-finite word other than the missing markers", "B,-nan,0.01", _fit(),
         "row 2 (study 'B'), column 'yi'", _data(GOOD.replace("0.30", "-nan"))),
    Case("overflow", "a number beyond the float range", "B,1e999,0.01", _fit(),
         "row 2 (study 'B'), column 'yi'", _data(GOOD.replace("0.30", "1e999"))),
    Case("unicode-digits", "digits other than 0-9", "B,٣,0.01", _fit(), "row 2 (study 'B'), column 'yi'",
         _data(GOOD.replace("0.30", "٣"))),
    Case("thousands-ambiguous", "a thousands separator that could be a decimal comma", 'n = "1,234"',
         _fit(), "row 2 (study 'B'), column 'n'",
         _data(GOOD.replace(",g\n", ",g,n\n").replace("x\n", "x,12\n").replace("y\nC", 'y,"1,234"\nC')
               .replace("y\n", "y,15\n"))),
    Case("thousands-unambiguous", "thousands separators that cannot be decimals (loads fine)",
         'n = "1,234.0", "12,345,678"', _fit(), ok=True,
         files=_data(GOOD.replace(",g\n", ",g,n\n").replace("x\n", 'x,"1,234.0"\n')
                     .replace("y\n", 'y,"12,345,678"\n'))),
    Case("spreadsheet-error", "a spreadsheet error value", "B,#N/A,0.01", _fit(),
         "row 2 (study 'B'), column 'yi'", _data(GOOD.replace("0.30", "#N/A"))),
    Case("dash-in-numbers", "'-' is text, not a missing marker", "B,-,0.01", _fit(),
         "row 2 (study 'B'), column 'yi'", _data(GOOD.replace("0.30", "-"))),
    Case("none-is-data", "a study called None, moderator levels none and - (loads fine)", "None,...,none",
         _fit("{dir}/data.csv", "--mods", "g"), ok=True,
         files=_data("study,yi,vi,g\nNone,0.1,0.02,none\nB,0.3,0.01,-\nC,0.2,0.03,none\nD,0.45,0.015,-\n")),
    Case("binary-control", "binary file with control bytes", "A\\x03", _fit(), "control character",
         _data(GOOD.replace("A,", "A\x03,"))),
]
ALL_CASES = CASES + READER_CASES

# Correlation tables (MASEM / mediation input): the loader's errors, through the Python API.
CORRELATION_GOOD = ("study,n,var1,var2,r\n1,50,x,m,0.3\n1,50,x,y,0.2\n1,50,m,y,0.4\n"
                    "2,80,x,m,0.25\n2,80,x,y,0.1\n2,80,m,y,0.5\n")
CORRELATION_CASES = [
    # (id, what, example, table text, kwargs, needle)
    ("r-out-of-range", "|r| >= 1", "2,80,m,y,1.2", CORRELATION_GOOD.replace("m,y,0.5", "m,y,1.2"), {},
     "row 6, column 'r'"),
    ("r-equals-one", "r = 1", "1,50,x,m,1", CORRELATION_GOOD.replace("x,m,0.3", "x,m,1"), {}, "row 1, column 'r'"),
    ("not-positive-definite", "correlations no sample can give", "r = 0.9, 0.9, -0.9",
     CORRELATION_GOOD.replace("x,m,0.3", "x,m,0.9").replace("x,y,0.2", "x,y,0.9").replace("m,y,0.4", "m,y,-0.9"),
     {}, "not positive definite"),
    ("unknown-variable", "variable not in variables=[...]", "var2 = 'mood'",
     CORRELATION_GOOD.replace("2,80,m,y", "2,80,m,mood"), {"variables": ["x", "m", "y"]}, "'mood'"),
    ("small-n", "sample size below 4", "1,3,x,m,0.3", CORRELATION_GOOD.replace("1,50,x,m", "1,3,x,m"), {},
     "row 1, column 'n'"),
    ("r-text", "text in the r column", "1,50,x,m,high", CORRELATION_GOOD.replace("x,m,0.3", "x,m,high"), {},
     "row 1, column 'r'"),
    ("pair-twice", "a study reports a pair twice", "1,50,m,x,0.3", CORRELATION_GOOD.replace("1,50,x,y", "1,50,m,x"),
     {}, "twice"),
]


# ---------------------------------------------------------------------------------------- running


def _materialise(case: Case, folder: pathlib.Path) -> list[str]:
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return [str(a).replace("{dir}", str(folder)) for a in case.argv]


def _with_out(argv: list[str], folder: pathlib.Path) -> tuple[list[str], pathlib.Path]:
    """Add ``--out`` (unless the case sets one) so that partial output would show."""
    if "--out" in argv:
        return argv, pathlib.Path(argv[argv.index("--out") + 1])
    out = folder / "results"
    return argv + ["--out", str(out)], out


def run_inprocess(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def _params(cases):
    return [pytest.param(c, id=c.id, marks=pytest.mark.xfail(strict=True, reason="BUG: " + c.bug))
            if c.bug else pytest.param(c, id=c.id) for c in cases]


@pytest.mark.parametrize("case", _params([c for c in ALL_CASES if not c.ok]))
def test_bad_input_one_line_exit_2_no_output(case, tmp_path):
    argv, out_dir = _with_out(_materialise(case, tmp_path), tmp_path)
    existed = out_dir.exists()
    code, out, err = run_inprocess(argv)
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert out == ""
    assert len(lines) == 1, err
    assert lines[0].startswith("bayes-se: error:")
    assert case.needle in lines[0]
    assert out_dir.exists() == existed  # no partial output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.parametrize("case", _params([c for c in ALL_CASES if c.ok]))
def test_unusual_but_valid_files_load(case, tmp_path):
    code, out, err = run_inprocess(_materialise(case, tmp_path))
    assert code == 0, err
    assert "tau" in out  # a summary was printed (mu, or beta[...] with moderators, and tau)


def test_excel_decimals_give_the_same_fit(tmp_path):
    """';' with ',' decimals reads to the same numbers as the plain CSV: same summary, bit for bit."""
    plain, excel = tmp_path / "plain.csv", tmp_path / "excel.csv"
    plain.write_text(GOOD)
    excel.write_text("\ufeff" + GOOD.replace(",", ";").replace(".", ","), encoding="utf-8")
    a = run_inprocess(list(_fit(str(plain), "--json")))
    b = run_inprocess(list(_fit(str(excel), "--json")))
    assert a[0] == b[0] == 0 and a[1] == b[1]


DATA_ONLY = [c for c in ALL_CASES if not c.ok and not c.bug and c.argv == _fit() and "{dir}/spec" not in str(c.argv)]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in DATA_ONLY])
def test_freq_command_reports_the_same_data_errors(case, tmp_path):
    argv = _materialise(case, tmp_path)
    code, out, err = run_inprocess(["freq", argv[2]])
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1
    assert lines[0].startswith("bayes-se: error:") and case.needle in lines[0]


SUBPROCESS_CASES = ["text-in-numbers", "malformed-prior", "spec-not-toml"]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_no_traceback_in_a_real_process(case_id, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    argv, out_dir = _with_out(_materialise(case, tmp_path), tmp_path)
    proc = subprocess.run([sys.executable, "-m", "bayes_se.cli", *argv], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bayes-se: error:") and case.needle in lines[0]
    assert not out_dir.exists()


# ------------------------------------------------------------------------------ correlation tables


@pytest.mark.parametrize("cid, what, example, text, kwargs, needle", CORRELATION_CASES,
                         ids=[c[0] for c in CORRELATION_CASES])
def test_correlation_table_errors_name_the_place(cid, what, example, text, kwargs, needle, tmp_path):
    correlations = pytest.importorskip("bayes_se.correlations")
    path = tmp_path / "r.csv"
    path.write_text(text)
    with pytest.raises(BayesSEError) as info:
        correlations.load_correlations(path, **kwargs)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_correlation_good_table_loads(tmp_path):
    correlations = pytest.importorskip("bayes_se.correlations")
    path = tmp_path / "r.csv"
    path.write_text(CORRELATION_GOOD)
    data = correlations.load_correlations(path)
    assert data.k == 2 and data.variables == ("x", "m", "y")


_TEXT = st.sampled_from(["x", "m", "y", "x ", "", "nan", "abc", "1", "-1", "1,5", "m;y"])
_CELL = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 500), _TEXT)
_COLUMNS = ("study", "n", "var1", "var2", "r")


@st.composite
def long_tables(draw):
    """Random long correlation tables: plausible values mixed with every kind of junk, and now and
    then a column dropped or renamed."""
    rows = draw(st.integers(0, 9))
    table = {
        "study": draw(st.lists(st.one_of(st.sampled_from(["1", "2", "3"]), _CELL), min_size=rows, max_size=rows)),
        "n": draw(st.lists(st.one_of(st.integers(-2, 300), _CELL), min_size=rows, max_size=rows)),
        "var1": draw(st.lists(st.one_of(st.sampled_from(["x", "m", "y"]), _CELL), min_size=rows, max_size=rows)),
        "var2": draw(st.lists(st.one_of(st.sampled_from(["x", "m", "y"]), _CELL), min_size=rows, max_size=rows)),
        "r": draw(st.lists(st.one_of(st.floats(-1.5, 1.5), _CELL), min_size=rows, max_size=rows)),
    }
    drop = draw(st.sampled_from((None,) * 5 + _COLUMNS))
    if drop:
        table.pop(drop)
    return pd.DataFrame(table, dtype=object)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=long_tables(), variables=st.sampled_from([None, ["x", "m", "y"], ["x", "m"], ["x", "x"]]),
       as_file=st.booleans())
def test_load_correlations_loads_or_raises_our_error(table, variables, as_file):
    """Whatever the table, load_correlations returns data or raises BayesSEError; nothing else."""
    correlations = pytest.importorskip("bayes_se.correlations")
    with tempfile.TemporaryDirectory() as tmp:
        source = table
        if as_file:
            source = pathlib.Path(tmp) / "r.csv"
            table.to_csv(source, index=False)
        try:
            data = correlations.load_correlations(source, variables=variables)
        except BayesSEError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
    assert data.k >= 2
    assert np.all(np.abs(data.r[data.observed]) < 1)
    assert np.all(data.n >= correlations.MIN_N)


# ----------------------------------------------------------------------------------- documentation


def _message(case: Case) -> str:
    """The line a user sees for ``case``, with the temporary folder removed."""
    if case.ok:
        return "(loads and fits)"
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        argv, _ = _with_out(_materialise(case, folder), folder)
        try:
            code, _, err = run_inprocess(argv)
            line = err.strip().splitlines()[0] if err.strip() else f"(exit {code}, no message)"
        except Exception as exc:  # a known bug: the doc shows what escapes
            line = f"traceback: {type(exc).__name__}: {exc}"
    return line.replace(str(folder) + os.sep, "").replace(str(folder), ".")


def _correlation_message(case) -> str:
    from bayes_se.correlations import load_correlations

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "r.csv"
        path.write_text(case[3])
        try:
            load_correlations(path, **case[4])
        except BayesSEError as exc:
            return str(exc)
    return "(loads)"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_doc() -> str:
    """The text of docs/bad_input.md."""
    lines = [
        "# Bad input: what users see",
        "",
        "Generated by `python tests/test_bad_input_catalogue.py > docs/bad_input.md` from the case list",
        "that `tests/test_bad_input_catalogue.py` runs. Every error below ends the command with exit",
        "status 2 and exactly one line on stderr; nothing is printed on stdout and no `--out` folder is",
        "created. Paths are shown relative to the folder the files were in.",
        "",
        "## Command line (`bayes-se fit` / `bayes-se freq`)",
        "",
        "| case | input | example | message users see |",
        "|---|---|---|---|",
    ]
    for case in CASES:
        message = _message(case)
        if case.bug:
            message += f" **(known bug: {case.bug})**"
        lines.append(f"| `{case.id}` | {_cell(case.what)} | `{_cell(case.example)}` | {_cell(message)} |")
    lines += [
        "",
        "## Correlation tables (`bayes_se.correlations.load_correlations`, MASEM / mediation input)",
        "",
        "Raised as `bayes_se.errors.DataError` (a `BayesSEError`, so the CLI prints it as one line).",
        "",
        "| case | input | example | message users see |",
        "|---|---|---|---|",
    ]
    for case in CORRELATION_CASES:
        lines.append(f"| `{case[0]}` | {_cell(case[1])} | `{_cell(case[2])}` | {_cell(_correlation_message(case))} |")
    lines += reader_section()
    text = "\n".join(lines) + "\n"
    old = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    if HAND_WRITTEN in old:  # the flag and output-folder sections (tests/test_outputs.py) are kept
        text += "\n" + old[old.index(HAND_WRITTEN):]
    return text


HAND_WRITTEN = "<!-- hand-written sections below"


READING_RULES = """\
## Reading data tables: the rules

Every data table (effect sizes for `fit`, `freq`, `sensitivity`, `report`; correlation tables for a
mediation spec; `bayes_se.load_effects` and `bayes_se.load_correlations` in Python) is read by one
reader, `bayes_se.table.read_table`. `bayes-se check DATA [--sep S --decimal D --encoding E --study COL
--cluster COL] [--json]` prints what it understood (delimiter, decimal mark, encoding, columns with
their types, k, clusters, missing cells by column, notes) without fitting anything: exit status 0, or
2 with one line when the file cannot be read. Warnings (a fallback encoding, skipped rows) are printed
as `bayes-se: warning: ...` lines and the command goes on.

**Encoding.** A byte-order mark decides: UTF-8, UTF-16 LE/BE, UTF-32 LE/BE. Without one the file is
read as UTF-8; a file that is not valid UTF-8 is read as cp1252 (Windows Latin-1; Latin-1 for the
five bytes cp1252 leaves undefined) with a warning naming the encoding. A file mixing UTF-8 and
cp1252 lines is decoded line by line (each line as UTF-8 when it is valid UTF-8, else as cp1252),
so no label becomes mojibake, with a warning naming the lines read as cp1252. `--encoding E`
(`encoding=` in Python, `[data] encoding` in a spec) takes any Python codec name and decodes
strictly: a byte that does not fit is an error naming the line. Binary files (NUL bytes or other
control characters) and files over 200 MB are refused.

**Delimiter.** One of `,` `;` tab `|`. Excel's first line `sep=;` is honoured. Otherwise the
delimiter that splits the first 50 lines into the most, equally many, fields. `--sep S` overrides
(`,`, `;`, `|`, `tab`, also `comma`, `semicolon`, `pipe`). Fields are quoted with `"` (a quote in
a quoted field is doubled), so labels may hold delimiters and quotes.

**Rows.** Row numbers in messages count data rows: the first row under the header is row 1. Blank
lines are skipped, rows of only delimiters (Excel's empty rows) too, with a note; both keep their
numbers, so row N is always the N-th row under the header. A row with fewer fields than the header
is padded with missing cells (with a note); a row with more non-empty fields is an error naming
the row. Trailing empty columns (a delimiter at the end of every line) are dropped. Column names
must be unique.

**Decimal mark.** `.` or `,`. Sniffed as `,` when number cells look like `0,5` and none like `0.5`
(cells such as `1,234` that could be either do not count); always `.` in a `,`-delimited file. `--decimal D`
overrides. When the sniffer gets a European file wrong the message says so: `expected a number,
found the text '0,3': is the decimal mark a comma? try --decimal ,`.

**Numbers** follow a data grammar, not Python's `float()`: spaces, an optional sign, ASCII digits
with at most one decimal mark, an optional exponent (`-1.5`, `.5`, `2.`, `1e-3`, `1E+3`; `0,5`
under `--decimal ,`). Refused, with the row and column: `0_3` (Python reads digit separators),
`inf`, `-Infinity`, `+nan` (non-finite words), `1e999` (beyond the float range), digits other than
0-9, `0x1A`, `TRUE`, spreadsheet errors such as `#N/A`. Thousands separators (the other mark of
`. ,`, a space, a no-break space, `'`) are read only when unambiguous: a first group of 1-3 digits not
starting with 0, then groups of exactly three digits, and either two or more separators
(`12,345,678`), a decimal part (`1,234.5`; `1.234,5` under `--decimal ,`) or a separator that
cannot be a decimal mark (`1 234`, `1'234`). `1,234` under `.` (or `1.234` under `,`) could be
1234 or 1.234: refused, naming the row and column. A column of cells that look meant as numbers but
break these rules is refused, so it never silently becomes a categorical moderator; a column that
mixes numbers with words (`1`, `2`, `none`) is read as text labels, with a note.

**Missing cells** are exactly: an empty cell (or only spaces), `NA`, `NaN` and `.`; `NA` and `NaN`
in any letter case (`na`, `nan`, `NAN`). Nothing else: `None`, `none`, `null`, `n/a`, `-`, `#N/A`
are data (a study called `None` keeps its name, a moderator level `-` is a level) or, in a number
column, an error. A missing effect, variance or study label is an error naming the row; a missing
moderator cell is handled by the moderator formula.

**Unreadable files** give one line: `file not found: PATH`, `not a file: PATH is a folder`,
`cannot read PATH: permission denied`, `file PATH is not a text table (...)`, `file PATH is empty`.
"""


def reader_section() -> list[str]:
    """The "Reading data tables" part of docs/bad_input.md: the rules and their cases."""
    lines = ["", *READING_RULES.rstrip("\n").split("\n"), "",
             "| case | input | example | what users see |", "|---|---|---|---|"]
    for case in READER_CASES:
        message = _message(case)
        if case.ok:
            with tempfile.TemporaryDirectory() as tmp:
                folder = pathlib.Path(tmp)
                code, _, err = run_inprocess(_materialise(case, folder))
            warning = err.strip().replace(str(folder) + os.sep, "")
            message = "(loads and fits)" + (f"; {warning}" if warning else "")
        lines.append(f"| `{case.id}` | {_cell(case.what)} | `{_cell(case.example)}` | {_cell(message)} |")
    return lines


def test_doc_lists_every_case():
    text = DOC.read_text(encoding="utf-8")
    for cid in [c.id for c in ALL_CASES] + [c[0] for c in CORRELATION_CASES]:
        assert f"| `{cid}` |" in text, f"docs/bad_input.md lacks case {cid}: regenerate it"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(render_doc())
