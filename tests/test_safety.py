"""Safety: user text is parsed by our own grammars, never evaluated; the HTML report escapes it.

Prior strings, specs and moderator formulas come from files and command lines that a user may
have been handed by someone else. Nothing in them may run code: hostile strings are rejected with
our own error (``BayesSEError``), and a marker file that the string would create never appears.
"""

from __future__ import annotations

import pathlib
import re
import sys
import types

import pandas as pd
import pytest

from bayes_se import cli
from bayes_se.data import load_effects
from bayes_se.errors import BayesSEError, SpecError
from bayes_se.formula import parse_formula
from bayes_se.priors import parse_assignment, parse_prior
from bayes_se.spec import check_mods, load_spec

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "bayes_se"
LONG = 100_000  # characters of a "very long" input: must be refused quickly, not parsed for ever

HOSTILE_PRIORS = [
    "__import__('os').system('touch {marker}')",
    "normal(0, 1); import os; os.system('touch {marker}')",
    "normal(0, __import__('os').system('touch {marker}'))",
    "exec('open(\"{marker}\", \"w\")')",
    "eval('1')",
    "normal(0, 1).__class__.__bases__",
    "normal(0, 1)[0]",
    "normal(0, 1) or open('{marker}', 'w')",
    "lambda: 0",
    "normal(0x10, 1)",
    "normal(1e309, 1)",
    "normal(0, 1e999)",
    "normal(nan, 1)",
    "half_normal(inf)",
    "normal(0, 1)\n[model]",
    "normal(" + "1, " * (LONG // 3) + "1)",
    "normal(0, 1" + ")" * LONG,
    "(" * LONG,
    "n" * LONG,
]


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "X"
    yield path
    assert not path.exists(), "a hostile string was executed"


@pytest.mark.parametrize("text", HOSTILE_PRIORS, ids=lambda t: t[:30])
def test_hostile_prior_strings_are_rejected_not_run(text, marker):
    text = text.replace("{marker}", str(marker))
    with pytest.raises(SpecError):
        parse_prior(text)
    with pytest.raises(SpecError):
        parse_assignment("mu=" + text)


@pytest.mark.parametrize("text", HOSTILE_PRIORS[:9], ids=lambda t: t[:30])
def test_hostile_spec_values_are_rejected_not_run(text, marker):
    value = text.replace("{marker}", str(marker)).replace("\\", "\\\\").replace('"', '\\"')
    toml = f'[priors]\nmu = "{value}"\n'
    with pytest.raises(SpecError) as info:
        load_spec(toml)
    assert info.value.key == "priors.mu"


def test_hostile_cli_prior_gives_one_line(tmp_path, marker, capsys):
    data = tmp_path / "d.csv"
    data.write_text("study,yi,vi\nA,0.1,0.02\nB,0.3,0.01\n")
    code = cli.main(["fit", "--data", str(data), "--engine", "exact", "--prior",
                     f"mu=__import__('os').system('touch {marker}')", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("bayes-se: error:")
    assert not (tmp_path / "o").exists()


def test_toml_spec_cannot_include_or_run_anything(tmp_path, marker):
    """TOML has no include or code; keys we do not know are refused, whatever they hold."""
    for toml in (f'[model]\ntype = "random_effects"\n[hooks]\npre = "touch {marker}"\n',
                 f'[model]\ntype = "random_effects"\nrun = "touch {marker}"\n',
                 f'[sampler]\nseed = "__import__(\'os\').system(\'touch {marker}\')"\n',
                 '[model]\ntype = "random_effects"\n' + "x = 1\n" * 1000):
        with pytest.raises(SpecError):
            load_spec(toml)


HOSTILE_FORMULAS = ["a - b", "a**2", "a ** 2", "exp(a)", "a[0]", "a.b()", "a; import os", "__import__('os')",
                    "a / b", "a | b", "I(a^2)", "a + `b`", "a + 'b'", "a + b # c", "a\nb", "a + -b", "a @ b",
                    "a + 1", "{a}", "$a"]


@pytest.mark.parametrize("expr", HOSTILE_FORMULAS)
def test_moderator_formula_accepts_only_names_and_plus_colon_star(expr):
    with pytest.raises(SpecError):
        parse_formula(expr)
    with pytest.raises(SpecError) as info:
        check_mods(expr)
    assert info.value.key == "model.mods"


@pytest.mark.parametrize("expr, terms", [
    ("weeks.c", [("weeks.c",)]),  # a dot belongs to the name (R's make.names)
    ("a + b", [("a",), ("b",)]),
    ("a:b", [("a", "b")]),
    ("a*b", [("a",), ("b",), ("a", "b")]),
    ("0 + a", [("a",)]),
])
def test_moderator_formula_grammar_still_accepts_the_language(expr, terms):
    assert parse_formula(expr)[1] == terms


def test_long_formula_is_refused_quickly():
    with pytest.raises(BayesSEError):
        check_mods("a - " * LONG)
    frame = pd.DataFrame({"yi": [0.1, 0.2, 0.3], "vi": [0.1, 0.1, 0.1], "a": [1.0, 2.0, 4.0]})
    with pytest.raises(BayesSEError):
        load_effects(frame).design("a + " * 1000 + "zz")


def test_package_never_evaluates_or_unpickles():
    """No eval/exec/pickle/marshal/shelve/yaml.load anywhere in the package source."""
    pattern = re.compile(r"(?<![\w.])(eval|exec|compile)\s*\(|\bpickle\b|\bmarshal\b|\bshelve\b|"
                         r"yaml\.load|__import__|importlib\.import_module\(\s*[a-z_]+\s*\+")
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                hits.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)


HOSTILE_LEVEL = "&<>\"' onload=alert(1)"
XSS = "<script>alert(1)</script>"


def test_html_report_escapes_labels_and_moderator_levels(tmp_path, monkeypatch):
    report = pytest.importorskip("bayes_se.report")
    from bayes_se.exact import exact_posterior

    fake = types.ModuleType("no_plots")  # no figures: this test is about text, and stays fast
    monkeypatch.setitem(sys.modules, "no_plots", fake)
    monkeypatch.setattr(report, "PLOTS_MODULE", "no_plots")
    frame = pd.DataFrame({
        "study": [XSS, "B & C", "D", "E", "F", "G"],
        "yi": [0.1, 0.3, 0.2, 0.5, 0.4, 0.0],
        "vi": [0.02, 0.01, 0.03, 0.02, 0.04, 0.02],
        "group": [HOSTILE_LEVEL, "plain", HOSTILE_LEVEL, "plain", HOSTILE_LEVEL, "plain"],
    })
    data = load_effects(frame, moderators=["group"])
    fit = exact_posterior(data)
    out = report.write_report(tmp_path / "r", data=data, fit=fit, title=f"T {XSS}", mods="group")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert HOSTILE_LEVEL not in html
    assert "&amp;&lt;&gt;" in html  # the level is shown, escaped
    assert "B &amp; C" in html
