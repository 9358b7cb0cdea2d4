"""influence() and cumul() of ``rma`` against metafor 3.8-1 (``tests/reference/influence/``,
written by ``influence.R`` there): ``influence.rma.uni`` (rstudent, dffits, cook.d, cov.r,
tau2.del, QE.del, hat, weight, DFBETAS and the influential flag) with and without moderators for
several tau^2 estimators, and ``cumul.rma.uni`` in data order and sorted by a column."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import REFERENCE

from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist import rma
from bayes_se.frequentist.influence import CUMUL_COLUMNS, INFLUENCE_COLUMNS

CLOSED_FORM_RTOL = 1e-6  # EE, DL, HE, SJ: closed forms
ITERATIVE_RTOL = 1e-5  # REML, ML, PM: iterative
ZERO_SCALE, ZERO_ATOL = 1e-8, 1e-10  # an absolute floor only where metafor's value is ~0 (tau2 at 0)
DATASETS = ("bcg", "hackshaw1998", "metapsy")


def _load(name):
    ref = json.loads((REFERENCE / "influence" / f"influence_{name}.json").read_text())
    frame = pd.read_csv(REFERENCE / ref["csv"])
    return ref, frame


_CACHE = {name: _load(name) for name in DATASETS}


def close(actual, expected, rtol, what):
    actual = np.asarray(actual, float)
    expected = np.asarray([np.nan if e is None else e for e in expected], float)
    assert actual.shape == expected.shape, what
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), f"{what}: NaN pattern"
    ok = ~np.isnan(expected)
    atol = np.where(np.abs(expected) < ZERO_SCALE, ZERO_ATOL, 0.0)
    bad = ok & (np.abs(actual - expected) > rtol * np.abs(expected) + atol)
    assert not bad.any(), f"{what}: got {actual[bad]}, metafor {expected[bad]}"


def _fit(frame, case, **kw):
    mods = case.get("mods") or None  # R's NULL arrives as {}
    return rma(frame["yi"], frame["vi"], mods=mods, data=frame, method=case["method"], test=case["test"],
               slab=frame["study"], **kw)


def _rtol(method):
    return CLOSED_FORM_RTOL if method in ("EE", "DL", "HE", "SJ") else ITERATIVE_RTOL


def _marks(name, i):
    """k = 118 (metapsy): its first case runs always, the others with ``-m slow`` (k refits each)."""
    return [pytest.mark.slow] if name == "metapsy" and i > 0 else []


INFL = [pytest.param(name, i, id=f"{name}-{c['method']}-{c['test']}-{c.get('mods') or 'int'}", marks=_marks(name, i))
        for name in DATASETS for i, c in enumerate(_CACHE[name][0]["influence"])]
CUMUL = [pytest.param(name, i, id=f"{name}-{c['method']}-{c['test']}-{c.get('order') or 'data order'}",
                      marks=_marks(name, i))
         for name in DATASETS for i, c in enumerate(_CACHE[name][0]["cumul"])]


@pytest.mark.parametrize(("dataset", "index"), INFL)
def test_influence_matches_metafor(dataset, index):
    ref_all, frame = _CACHE[dataset]
    case = ref_all["influence"][index]
    res = _fit(frame, case)
    inf = res.influence()
    assert list(inf.index) == case["slab"]
    rtol = _rtol(case["method"])
    for col in INFLUENCE_COLUMNS:
        close(inf[col], case[col], rtol, f"{dataset} {case['method']} {col}")
    names = list(case["dfbetas"])
    assert len(names) == res.p
    for name, mine in zip(names, res.coef_names):
        close(inf[f"dfbetas[{mine}]"], case["dfbetas"][name], rtol, f"{dataset} dfbetas {name}")
    assert inf["inf"].dtype == bool
    np.testing.assert_array_equal(inf["inf"].to_numpy(), np.asarray(case["inf"], bool))


@pytest.mark.parametrize(("dataset", "index"), CUMUL)
def test_cumul_matches_metafor(dataset, index):
    ref_all, frame = _CACHE[dataset]
    case = ref_all["cumul"][index]
    res = _fit(frame, case)
    cu = res.cumul(case.get("order") or None)
    assert list(cu.index) == case["slab"]
    np.testing.assert_array_equal(cu["k"], np.arange(1, res.k + 1))
    rtol = _rtol(case["method"])
    for col in CUMUL_COLUMNS:
        key = {"Q_p": "Qp"}.get(col, col)
        if case.get(key) in (None, {}):  # metafor gives no tau2 for EE (R's NULL: {}); ours is 0
            assert col == "tau2" and case["method"] == "EE" and (cu[col] == 0).all()
            continue
        close(cu[col], case[key], rtol, f"{dataset} cumul {case['method']} {col}")


def test_cumul_order_as_array_equals_column():
    ref_all, frame = _CACHE["bcg"]
    res = rma(frame["yi"], frame["vi"], data=frame, slab=frame["study"])
    pd.testing.assert_frame_equal(res.cumul("year"), res.cumul(frame["year"].to_numpy()))
    # ties keep data order (R's order() is stable): 1949 and 1950 ... as metafor
    last = res.cumul(frame["year"].to_numpy()).iloc[-1]
    full = res.coef_table().iloc[0]
    assert last["estimate"] == pytest.approx(full["estimate"], rel=1e-12)


def test_cumul_refuses_moderators_and_bad_order():
    _, frame = _CACHE["bcg"]
    res = rma(frame["yi"], frame["vi"], mods="~ ablat", data=frame)
    with pytest.raises(SpecError, match="without moderators"):
        res.cumul()
    res = rma(frame["yi"], frame["vi"], data=frame)
    with pytest.raises(SpecError, match="no column 'nope'"):
        res.cumul("nope")
    with pytest.raises(DataError, match="3 values"):
        res.cumul([1, 2, 3])
    with pytest.raises(SpecError, match="no column"):  # no data frame behind the fit
        rma(frame["yi"].to_numpy(), frame["vi"].to_numpy()).cumul("year")


def test_influence_failed_refit_is_nan_and_unflagged():
    # a factor level held by one study: leaving it out leaves a column of zeros (metafor: coef.na)
    frame = pd.DataFrame({"yi": [0.1, 0.3, 0.2, 0.5, 0.4, 0.9], "vi": [0.05, 0.04, 0.06, 0.05, 0.03, 0.05],
                          "g": ["a", "a", "b", "b", "b", "c"]})
    res = rma(frame["yi"], frame["vi"], mods="~ g", data=frame)
    inf = res.influence()
    assert np.isnan(inf.loc["6", "rstudent"]) and not inf.loc["6", "inf"]
    assert np.isfinite(inf.drop(index="6")[list(INFLUENCE_COLUMNS)].to_numpy()).all()


# ---------------------------------------------------------------------------------- the CLI
def _cli(capsys, *argv):
    from bayes_se import cli

    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


BCG_CSV = REFERENCE / "data" / "dat.bcg.csv"


def test_cli_influence_and_cumul_json(capsys):
    code, out, _ = _cli(capsys, "freq", BCG_CSV, "--influence", "--cumul", "--order", "year", "--json")
    assert code == 0
    got = json.loads(out)
    ref_all, frame = _CACHE["bcg"]
    ref = next(c for c in ref_all["influence"] if c["method"] == "REML" and c["test"] == "z" and not c["mods"])
    assert [row["study"] for row in got["influence"]] == ref["slab"]
    close([row["cook_d"] for row in got["influence"]], ref["cook_d"], ITERATIVE_RTOL, "CLI cook_d")
    assert [row["inf"] for row in got["influence"]] == ref["inf"]
    ref = next(c for c in ref_all["cumul"] if c["method"] == "REML" and c.get("order") == "year")
    assert [row["study"] for row in got["cumul"]] == ref["slab"]
    close([row["I2"] for row in got["cumul"]], ref["I2"], ITERATIVE_RTOL, "CLI cumul I2")
    assert got["estimate"] == pytest.approx(got["cumul"][-1]["estimate"], rel=1e-12)


def test_cli_influence_table(capsys):
    code, out, _ = _cli(capsys, "freq", BCG_CSV, "--mods", "ablat", "--influence")
    assert code == 0 and "Influence diagnostics" in out and "dfbetas[ablat]" in out and "Aronson 1948" in out


@pytest.mark.parametrize(("flags", "message"), [
    (["--cumul", "--mods", "ablat"], "--cumul is for models without moderators"),
    (["--cumul", "--cluster", "trial"], "--cumul is for the univariate model"),
    (["--influence", "--cluster", "trial"], "--influence is for the univariate model"),
    (["--order", "year"], "give --cumul too"),
    (["--cumul", "--order", "nope"], "no column 'nope'"),
])
def test_cli_refuses(capsys, flags, message):
    code, out, err = _cli(capsys, "freq", BCG_CSV, *flags)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------- the plots
def test_plots_render_with_literal_labels_and_given_axes():
    pytest.importorskip("matplotlib")
    import io

    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from bayes_se import plots

    frame = pd.DataFrame({"yi": [0.1, 0.3, 0.2, 0.9, 0.25], "vi": [0.05, 0.04, 0.06, 0.01, 0.05]})
    labels = ["A$x$", "$$", "<b>b</b>", "cost $5", "e"]
    res = rma(frame["yi"], frame["vi"], slab=labels)
    for fig in (plots.plot_influence(res, labels="study"), plots.plot_cumulative(res), plots.plot_influence(res)):
        fig.savefig(io.BytesIO(), format="png", dpi=60)  # '$$' as mathtext would raise here
    texts = {t.get_text() for t in plots.plot_cumulative(res).findobj(Text)}
    assert "+ $$" in texts and "+ A$x$" in texts
    own = Figure()
    axes = own.subplots(2, 4).ravel()
    assert plots.plot_influence(res, ax=axes) is own
    assert [a.get_title() for a in axes] == ["rstudent", "dffits", "cook.d", "cov.r", "tau2.del", "QE.del", "hat",
                                             "weight"]
    fig, ax = Figure(), None
    ax = fig.subplots()
    assert plots.plot_cumulative(res.cumul(), ax=ax) is fig
    with pytest.raises(SpecError, match="8 panels"):
        plots.plot_influence(res, ax=axes[:3])


def test_influential_study_is_highlighted():
    pytest.importorskip("matplotlib")
    from bayes_se import plots

    ref_all, frame = _CACHE["metapsy"]
    case = ref_all["influence"][0]
    res = _fit(frame, case)
    table = res.influence()
    fig = plots.plot_influence(res, table=table)
    flagged = [s for s, f in zip(case["slab"], case["inf"]) if f]
    assert flagged and all(s in fig.texts[0].get_text() for s in flagged)
    # each panel: the flagged studies drawn once more, in colour
    panel = fig.axes[0]
    marked = [line for line in panel.get_lines() if line.get_marker() == "o" and len(line.get_xdata()) == len(flagged)]
    assert marked and sorted(marked[-1].get_xdata()) == sorted(np.flatnonzero(case["inf"]) + 1)


def test_plot_cumulative_bayesian():
    pytest.importorskip("matplotlib")
    import bayes_se
    from bayes_se import plots

    data = bayes_se.load_effects(BCG_CSV)
    fit = bayes_se.fit(data, engine="exact")
    fig = plots.plot_cumulative(fit, order="year")
    ax = fig.axes[0]
    assert "posterior of mu" in ax.get_title(loc="left")
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "+ Aronson 1948"
    with pytest.raises(SpecError, match="no parameter"):
        plots.plot_cumulative(fit.cumulative(), parameter="nope")
