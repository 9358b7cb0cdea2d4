"""Labels are text everywhere (issue 13): a '$' in a study label is not mathtext in a figure, and
Markdown or HTML in a label shows literally in report.md."""

from __future__ import annotations

import io
import pathlib

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.text import Text  # noqa: E402

import bayes_se  # noqa: E402
from bayes_se import plots  # noqa: E402
from bayes_se.plots import style  # noqa: E402
from bayes_se.report.markdown import render_markdown  # noqa: E402

LABELS = ["A$x$", "$$", "<b>bold</b>", "a_b*c", r"cost $5 $\alpha$", "![x](http://e)", "`tick` | pipe"]
OUT = pathlib.Path("/tmp/bayes_se_plots")


def _texts(fig):
    return {t.get_text(): t for t in fig.findobj(Text) if t.get_text()}


@pytest.fixture(scope="module")
def exact_fit():
    k = len(LABELS)
    data = bayes_se.EffectData.from_arrays(np.linspace(0.1, 0.5, k), np.linspace(0.02, 0.05, k), study=LABELS)
    return data, bayes_se.fit(data, engine="exact")


def _png(fig, name):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)  # '$$' as mathtext would raise a ParseException here
    OUT.mkdir(exist_ok=True)
    (OUT / f"{name}.png").write_bytes(buf.getvalue())
    return buf.getvalue()


def test_forest_draws_dollar_labels_literally(exact_fit):
    data, fit = exact_fit
    fig = plots.plot_forest(fit.posterior, data)
    assert _png(fig, "labels_forest").startswith(b"\x89PNG")
    ticks = {t.get_text(): t for t in fig.axes[0].get_yticklabels()}
    for label in LABELS:
        assert label in ticks and not ticks[label].get_parse_math(), label


def test_forest_on_a_callers_axes_is_literal_too(exact_fit):
    import matplotlib.pyplot as plt

    data, fit = exact_fit
    fig, ax = plt.subplots()  # tick labels made outside bayes_se's style: math parsing on
    try:
        plots.plot_forest(fit.posterior, data, ax=ax)
        _png(fig, "labels_forest_ax")
        assert all(not t.get_parse_math() for t in ax.get_yticklabels())
    finally:
        plt.close(fig)


def test_sensitivity_boxscore_prior_and_category_names_are_literal():
    table = pd.DataFrame({
        "prior": ["mu=normal(0, $1$)", "$$", "tau_a*b"], "engine": ["exact"] * 3,
        "mu_mean": [-0.7, -0.72, -0.69], "mu_lower": [-1.1, -1.12, -1.08], "mu_upper": [-0.35, -0.33, -0.3],
        "tau_mean": [0.55, 0.5, 0.6], "tau_lower": [0.3, 0.28, 0.33], "tau_upper": [0.95, 0.88, 1.05]})
    fig = plots.plot_sensitivity(table)
    _png(fig, "labels_sensitivity")
    texts = _texts(fig)
    for name in table["prior"]:
        assert not texts[name].get_parse_math()
    rows = [dict(study=f"S{i}", construct="$x$ scale", role="a_b", outcome="o", direction=d,
                 significant="no", n=50) for i, d in enumerate(["+", "0", "-", "+"])]
    fig = plots.plot_boxscore(pd.DataFrame(rows))
    _png(fig, "labels_boxscore")
    assert not _texts(fig)["$x$ scale (a_b)"].get_parse_math()


def test_literal_helper_accepts_texts_lists_and_legends():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    try:
        t = ax.text(0, 0, "$a$")
        assert style.literal(t) is t and not t.get_parse_math()
        ax.plot([0, 1], label="$$")
        leg = style.literal(ax.legend())
        assert not leg.get_texts()[0].get_parse_math()
        style.literal_ticks(ax, "x", [0, 1], ["$1$", "$"])
        assert [x.get_text() for x in ax.get_xticklabels()] == ["$1$", "$"]
        _png(fig, "labels_helper")
    finally:
        plt.close(fig)


# -- Markdown ---------------------------------------------------------------------------------------


def _html_of_markdown(text):
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark").enable("table").enable("strikethrough").render(text)


def test_markdown_shows_labels_as_typed():
    import html as html_mod

    table = pd.DataFrame({"mean": [0.1] * len(LABELS)}, index=pd.Index(LABELS, name="study"))
    sections = [{"title": "Data a_b*c", "blocks": [
        ("p", "Study ![x](http://e) and *this* and _that_ and ~~gone~~ and `code`"),
        ("list", LABELS), ("table", table, "Labels: [link](http://e)"), ("p", "# not a heading"),
        ("p", "- not a list"), ("p", "1. not a list"), ("code", "a ``` b")]}]
    md = render_markdown("Report <script>x</script> *t*", "ok", sections)
    rendered = _html_of_markdown(md)
    for tag in ("<img", "<em>this", "<em>that", "<em>t", "<strong>", "<code>code", "<code>tick", "<a ",
                "<s>", "<del>", "<b>", "<script", "<h1>#", "<h1>not", "<ul>\n<li>not", "<ol>"):
        assert tag not in rendered.replace("<strong>ok</strong>", ""), tag
    assert "<em>Labels: [link](http://e)</em>" in rendered  # the caption's own emphasis, its text literal
    plain = html_mod.unescape(rendered)
    for label in LABELS:
        assert label in plain, label
    for literal in ("![x](http://e)", "*this*", "_that_", "~~gone~~", "`code`", "# not a heading",
                    "- not a list", "1. not a list", "Report <script>x</script> *t*", "a ``` b"):
        assert literal in plain, literal
    assert rendered.count("<tr>") == len(LABELS) + 1  # the '|' in a label does not split a cell
    assert "<pre><code>a ``` b" in rendered  # the fence outlasts the backticks in the body
