"""Risk of bias: the RoB 2 / ROBINS-I reader, the robvis-style plots, the sensitivity analysis
(against metafor 3.8-1 on the Metapsy data) and the report's bias sections."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayes_se as bse
from bayes_se import cli
from bayes_se.errors import DataError, DataWarning, SpecError
from bayes_se.risk_of_bias import (COLOURS, OVERALL, SYMBOLS, TOOLS, effect_judgements, read_rob, rob_sensitivity,
                                   study_keys, study_weights)
from conftest import REFERENCE

ROOT = REFERENCE.parents[1]
SIM = ROOT / "data" / "self_efficacy_sim"
METAPSY = ROOT / "data" / "metapsy_depression_selfguided.csv"
RTOL_ITERATIVE = 1e-5  # metafor REML fits (iterative)
OUT = pathlib.Path("/tmp/bayes_se_plots")


def _tidy(rows):
    return pd.DataFrame(rows, columns=["study", "domain", "judgement"])


def _small():
    return _tidy([("A", "D1", "Low"), ("A", "D2", "Some concerns"), ("A", "Overall", "Some concerns"),
                  ("B", "D1", "High"), ("B", "D2", "Low"), ("B", "Overall", "High"),
                  ("C", "D1", "Low"), ("C", "D2", "Low"), ("C", "Overall", "Low")])


# -- reader ---------------------------------------------------------------------------------------
def test_read_bundled_rob2_table():
    rob = read_rob(SIM / "risk_of_bias.csv")
    assert rob.tool == "RoB 2" and rob.domains == ["D1", "D2", "D3", "D4", "D5"]
    assert rob.table.shape == (70, 6) and rob.studies[0] == "Sim-001"
    truth = bse.datasets.load("self_efficacy_generating_values")
    assert rob.overall.value_counts().to_dict() == truth["realised"]["rob_overall"]
    assert rob.domain_label("D1") == "Bias arising from the randomization process"
    # the simulation's overall rule: High if any High or 3+ Some concerns, Low if all Low
    t = rob.table
    high = (t[rob.domains] == "High").any(axis=1) | ((t[rob.domains] == "Some concerns").sum(axis=1) >= 3)
    low = (t[rob.domains] == "Low").all(axis=1)
    assert (t.loc[high, OVERALL] == "High").all() and (t.loc[low, OVERALL] == "Low").all()
    pd.testing.assert_frame_equal(rob.to_long(), pd.read_csv(SIM / "risk_of_bias.csv"))


def test_overall_as_column_equals_overall_as_domain():
    long = _small()
    col = long[long.domain != OVERALL].copy()
    col["overall"] = col["study"].map(dict(zip(long.study[long.domain == OVERALL], long.judgement[long.domain == OVERALL])))
    a, b = read_rob(long), read_rob(col)
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.tool == b.tool == "RoB 2"


def test_wide_robvis_layout_and_weights():
    wide = pd.DataFrame({"Study": ["A", "B"], "D1": ["low", "Moderate"], "D2": ["Serious", "Low"],
                         "Overall": ["Serious", "Moderate"], "Weight": ["2", "3.5"]})
    rob = read_rob(wide)
    assert rob.tool == "ROBINS-I" and rob.domains == ["D1", "D2"]
    assert rob.table.loc["A", "D1"] == "Low" and rob.weights.to_dict() == {"A": 2.0, "B": 3.5}
    assert rob.domain_label("D1") == "Bias due to confounding"


def test_judgement_spelling_is_forgiving():
    t = _tidy([("A", "D1", " low risk "), ("A", "D2", "SOME CONCERNS"), ("A", "overall", "some concern"),
               ("B", "D1", "NI"), ("B", "D2", "High risk"), ("B", "Overall", "high")])
    rob = read_rob(t)
    assert rob.table.loc["A"].tolist() == ["Low", "Some concerns", "Some concerns"]
    assert rob.table.loc["B"].tolist() == ["No information", "High", "High"]


@pytest.mark.parametrize("edit, row, column, match", [
    (lambda t: t.assign(judgement=t.judgement.replace("High", "Unclear")), 4, "judgement", "unknown judgement 'Unclear'"),
    (lambda t: pd.concat([t, t.iloc[[1]]], ignore_index=True), 10, "domain", "domain 'D2' twice \\(rows 2 and 10\\)"),
    (lambda t: t.drop(index=5).reset_index(drop=True), 4, "domain", "study 'B' has no overall judgement"),
    (lambda t: t.drop(index=3).reset_index(drop=True), 4, "domain", "no judgement for domain 'D1'"),
    (lambda t: t.assign(judgement=t.judgement.where(t.index != 6, None)), 7, "judgement", "missing judgement"),
    (lambda t: t.assign(study=t.study.where(t.index != 2, "")), 3, "study", "missing study label"),
    (lambda t: t.assign(judgement=t.judgement.replace("High", "Serious")), 2, "judgement", "mixes tools"),
])
def test_bad_rob_tables_name_row_and_column(edit, row, column, match):
    with pytest.raises(DataError, match=match) as err:
        read_rob(edit(_small()))
    assert (err.value.row, err.value.column) == (row, column)


def test_missing_column_and_tool_mismatch_and_conflicting_overall():
    with pytest.raises(DataError, match="needs a judgement column") as err:
        read_rob(_small().rename(columns={"judgement": "rating"}))
    assert err.value.column == "judgement"
    with pytest.raises(DataError, match="for ROBINS-I") as err:
        read_rob(_small(), tool="ROBINS-I")
    assert err.value.row == 2  # 'Some concerns' is RoB 2's
    with pytest.raises(SpecError, match="unknown risk-of-bias tool"):
        read_rob(_small(), tool="RoB 1")
    col = _small().query("domain != 'Overall'").assign(overall=["Low", "High", "High", "High", "Low", "Low"])
    with pytest.raises(DataError, match="one overall judgement per study") as err:
        read_rob(col)
    assert (err.value.row, err.value.column) == (2, "overall")


def test_overall_milder_than_a_domain_warns():
    t = _small()
    t.loc[5, "judgement"] = "Low"  # B: High in D1 but Low overall
    with pytest.warns(DataWarning, match="study 'B' is judged 'Low' overall but 'High' in a domain"):
        read_rob(t)


def test_read_rob_file_names_file_rows(tmp_path):
    path = tmp_path / "rob.csv"
    path.write_text("study;domain;judgement\nA;D1;Low\nA;Overall;Low\n\nB;D1;Lowish\nB;Overall;Low\n", encoding="utf-8")
    with pytest.raises(DataError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        read_rob(path)
    assert err.value.row == 4 and "Lowish" in str(err.value)  # the blank line keeps its number


ROB2 = TOOLS["RoB 2"]


@st.composite
def rob_tables(draw):
    tool = draw(st.sampled_from(["RoB 2", "ROBINS-I"]))
    levels = TOOLS[tool]
    n_studies = draw(st.integers(1, 6))
    n_domains = draw(st.integers(1, 7))
    studies = draw(st.lists(st.text(st.characters(codec="utf-8", exclude_categories=("C", "Z")), min_size=1,
                                     max_size=8), min_size=n_studies, max_size=n_studies, unique=True))
    studies = [s for s in studies if s.lower() not in ("na", "nan", ".")]
    rows = []
    for s in studies:
        for d in range(n_domains):
            rows.append((s, f"D{d + 1}", draw(st.sampled_from(levels))))
        rows.append((s, "Overall", draw(st.sampled_from(levels))))
    return tool, draw(st.permutations(rows)) if rows else rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rob_tables(), st.data())
def test_property_reader_round_trip_and_bad_judgement(drawn, data):
    """Any complete table in any row order reads back to the same judgements; one unknown judgement
    is refused, naming its row and column."""
    tool, rows = drawn
    if not rows:
        return
    frame = _tidy(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        rob = read_rob(frame, tool=tool)
    for s, d, j in rows:
        assert rob.table.loc[s.strip(), d] == j
    i = data.draw(st.integers(0, len(rows) - 1))
    bad = frame.copy()
    bad.loc[i, "judgement"] = "Unclear"
    with pytest.raises(DataError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        read_rob(bad, tool=tool)
    assert (err.value.row, err.value.column) == (i + 1, "judgement")


# -- matching and weights ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def between():
    return bse.load_effects(SIM / "between.csv", study="study")


@pytest.fixture(scope="module")
def sim_rob():
    return read_rob(SIM / "risk_of_bias.csv")


def test_matching_by_column_cluster_and_the_hint(between, sim_rob):
    with pytest.raises(DataError, match="column 'study_id' of the data matches every study") as err:
        effect_judgements(sim_rob, between)
    assert err.value.column == "study"
    keys = study_keys(sim_rob, between, by="study_id")
    assert keys == list(between.frame["study_id"])
    clustered = bse.load_effects(SIM / "between.csv", study="study", cluster="study_id")
    pd.testing.assert_series_equal(effect_judgements(sim_rob, clustered), effect_judgements(sim_rob, between, "study_id"))
    few = read_rob(sim_rob.to_long().iloc[:-6])  # Sim-070 gone
    with pytest.raises(DataError, match="effect 'Sim-070' has no risk-of-bias judgement") as err:
        effect_judgements(few, between, "study_id")
    assert err.value.row == between.k
    extra = pd.concat([sim_rob.to_long(), _tidy([("Sim-999", d, "Low") for d in sim_rob.table.columns])])
    with pytest.raises(DataError, match="'Sim-999' of the risk-of-bias table matches no effect") as err:
        effect_judgements(read_rob(extra), between, "study_id")
    assert err.value.row == 421


def test_study_weights_are_summed_inverse_variances(between, sim_rob):
    from bayes_se.frequentist import rma

    tau2 = float(rma(between.yi, between.vi).tau2)
    w = study_weights(sim_rob, between, by="study_id")
    manual = (1 / (between.frame["vi"] + tau2)).groupby(between.frame["study_id"]).sum()
    np.testing.assert_allclose(w.to_numpy(), manual.reindex(w.index).to_numpy(), rtol=1e-12)
    counts = sim_rob.counts(w)
    np.testing.assert_allclose(counts.sum(axis=1), 1.0, rtol=1e-12)
    low = w[sim_rob.overall == "Low"].sum() / w.sum()
    assert counts.loc[OVERALL, "Low"] == pytest.approx(low, rel=1e-12)
    unweighted = sim_rob.counts()
    assert unweighted.loc[OVERALL, "High"] == pytest.approx((sim_rob.overall == "High").mean(), rel=1e-12)


# -- sensitivity analysis ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def metapsy():
    return bse.load_effects(METAPSY, study="study", cluster="study_id")


@pytest.fixture(scope="module")
def metafor_ref():
    return pd.read_csv(REFERENCE / "risk_of_bias" / "metapsy_rob_metafor.csv")


def _ref(ref, analysis):
    return ref[ref.analysis == analysis].reset_index(drop=True)


@pytest.mark.parametrize("moderator, analysis", [("low", "moderator low"), ("score", "moderator score"),
                                                 ("levels", "moderator levels")])
def test_rob_sensitivity_frequentist_matches_metafor(metapsy, metafor_ref, moderator, analysis):
    out = rob_sensitivity(metapsy, "rob", low=4, moderator=moderator, engines=("frequentist",))
    assert out.attrs["k_low"] == 57 and set(out.engine) == {"frequentist"}
    for name, ref in (("all studies", _ref(metafor_ref, "all studies")),
                      ("low risk only", _ref(metafor_ref, "low risk only")),
                      ("risk of bias as moderator", _ref(metafor_ref, analysis))):
        got = out[out.analysis == name].reset_index(drop=True)
        assert list(got.k) == list(ref.k)
        for col, rcol in (("estimate", "estimate"), ("lower", "ci_lower"), ("upper", "ci_upper")):
            np.testing.assert_allclose(got[col], ref[rcol], rtol=RTOL_ITERATIVE, atol=1e-9)
        np.testing.assert_allclose(got.tau ** 2, ref.tau2, rtol=RTOL_ITERATIVE)
    mod = out[out.analysis == "risk of bias as moderator"]
    expected = {"low": ["intercept", "rob_not_low"], "score": ["intercept", "rob_score"],
                "levels": ["intercept", "factor(rob)2", "factor(rob)3", "factor(rob)4"]}[moderator]
    assert list(mod.parameter) == expected


def test_rob_sensitivity_exact_rows_are_the_exact_fits(metapsy):
    out = rob_sensitivity(metapsy, "rob", low=4, engines=("exact",), level=0.9)
    mask = metapsy.frame["rob"].to_numpy() >= 4
    low = bse.EffectData.from_arrays(metapsy.yi[mask], metapsy.vi[mask], study=np.array(metapsy.study)[mask])
    fit = bse.fit(low, engine="exact", level=0.9)
    table = fit.summary(level=0.9, theta=False)
    row = out[(out.analysis == "low risk only")].iloc[0]
    assert row.k == 57 and row.parameter == "mu"
    assert row.estimate == pytest.approx(table.loc["mu", "q50"], rel=1e-12)
    assert (row.lower, row.upper) == pytest.approx((table.loc["mu", table.columns[2]],
                                                    table.loc["mu", table.columns[4]]), rel=1e-12)
    mod = out[out.analysis == "risk of bias as moderator"].set_index("parameter")
    freq = rob_sensitivity(metapsy, "rob", low=4, engines=("frequentist",), level=0.9).query(
        "analysis == 'risk of bias as moderator'").set_index("parameter")
    # 118 effects: the posterior under the default priors sits close to the REML fit
    assert abs(mod.loc["rob_not_low", "estimate"] - freq.loc["rob_not_low", "estimate"]) < 0.02
    assert mod.loc["rob_not_low", "lower"] < 0 < mod.loc["rob_not_low", "upper"]


def test_rob_sensitivity_with_a_rob_table(between, sim_rob):
    out = rob_sensitivity(between, sim_rob, by="study_id", engines=("frequentist",))
    low = effect_judgements(sim_rob, between, "study_id") == "Low"
    assert out.attrs["k_low"] == int(low.sum())
    from bayes_se.frequentist import rma

    res = rma(between.yi[low.to_numpy()], between.vi[low.to_numpy()])
    got = out[out.analysis == "low risk only"].iloc[0]
    assert got.estimate == pytest.approx(float(res.beta[0]), rel=1e-10)


def test_rob_sensitivity_bad_input(metapsy):
    with pytest.raises(SpecError, match="needs low="):
        rob_sensitivity(metapsy, "rob")
    with pytest.raises(DataError, match="no risk-of-bias column 'quality'") as err:
        rob_sensitivity(metapsy, "quality", low=4)
    assert err.value.column == "quality"
    with pytest.raises(DataError, match="only 0 effect"):
        rob_sensitivity(metapsy, "rob", low=5)
    with pytest.raises(SpecError, match="engines"):
        rob_sensitivity(metapsy, "rob", low=4, engines=("mcmc",))
    with pytest.raises(SpecError, match="moderator"):
        rob_sensitivity(metapsy, "rob", low=4, moderator="quadratic")


# -- plots -----------------------------------------------------------------------------------------
def _save(fig, name):
    OUT.mkdir(exist_ok=True)
    fig.savefig(OUT / f"{name}.png", dpi=100)


def test_traffic_light_draws_each_judgement(sim_rob):
    from matplotlib.collections import PathCollection
    from matplotlib.colors import to_hex

    fig = bse.plots.plot_rob_traffic_light(sim_rob, studies=sim_rob.studies[:8])
    _save(fig, "rob_traffic_light")
    ax = fig.axes[0]
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(dots) == 8 * 6
    want = [COLOURS[v] for _, row in sim_rob.table.iloc[:8].iterrows() for v in row]
    assert [to_hex(d.get_facecolor()[0]).upper() for d in dots] == [w.upper() for w in want]
    symbols = [t.get_text() for t in ax.texts if t.get_text() in SYMBOLS.values()]
    assert symbols == [SYMBOLS[v] for _, row in sim_rob.table.iloc[:8].iterrows() for v in row]
    assert [t.get_text() for t in ax.get_yticklabels()] == sim_rob.studies[:8]
    with pytest.raises(SpecError, match="'Sim-999' is not in"):
        bse.plots.plot_rob_traffic_light(sim_rob, studies=["Sim-999"])


def test_summary_plot_bars_are_the_weighted_shares(between, sim_rob):
    fig = bse.plots.plot_rob_summary(sim_rob, data=between, by="study_id")
    _save(fig, "rob_summary")
    table = bse.plots.rob_summary_table(sim_rob, data=between, by="study_id")
    assert table.attrs["weighted"]
    bars = fig.axes[0].patches
    widths = np.array([p.get_width() for p in bars]).reshape(3, 6)  # judgement x domain
    np.testing.assert_allclose(widths, table[list(ROB2[:3])].to_numpy().T, rtol=1e-12)
    assert "weighted by 1/(v + τ²)" in fig.axes[0].get_xlabel()
    assert not bse.plots.rob_summary_table(sim_rob, data=between, by="study_id", weighted=False).attrs["weighted"]


def test_rob_plots_labels_are_text_and_take_ax():
    import matplotlib.pyplot as plt

    labels = ["A$x$", "$$", "<b>b</b>"]
    rob = read_rob(_tidy([(s, d, j) for s in labels for d, j in (("D1", "Low"), ("$D2$", "High"),
                                                                  ("Overall", "High"))]))
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    try:
        assert bse.plots.plot_rob_traffic_light(rob, ax=axes[0]) is fig
        assert bse.plots.plot_rob_summary(rob, ax=axes[1]) is fig
        _save(fig, "rob_labels")  # '$$' as mathtext would raise here
        ticks = [t for t in axes[0].get_yticklabels() + axes[0].get_xticklabels() + axes[1].get_yticklabels()]
        assert {"A$x$", "$$", "<b>b</b>", "$D2$"} <= {t.get_text() for t in ticks}
        assert all(not t.get_parse_math() for t in ticks)
    finally:
        plt.close(fig)


# -- report sections ------------------------------------------------------------------------------
class _Builder:
    """Records blocks as the report's builder returns them (no files)."""

    def __init__(self):
        self.tables, self.figures = {}, []

    def table(self, name, df, caption, index=True):
        self.tables[name] = df
        return ("table", df, caption)

    def figure(self, name, caption, func_name, *args, width="single", **kwargs):
        self.figures.append((name, func_name))
        return ("figure", name, caption, b"", width)

    def draw(self, name, caption, make, *, width="single", label=None):
        self.figures.append((name, make()))
        return ("figure", name, caption, b"", width)


class _Ensemble:
    def to_dict(self):
        return {"mu": {"mean": 0.3, "lower": 0.1, "upper": 0.5}, "tau": {"mean": 0.2, "lower": 0.1, "upper": 0.3},
                "inclusion_bf": {"effect": 12.0, "heterogeneity": 40.0, "bias": 0.8},
                "models": [{"model": "RE, no bias", "prior": 0.5, "posterior": 0.7, "log_ml": -3.1, "method": "exact"},
                           {"model": "RE, PET", "prior": 0.5, "posterior": 0.3, "log_ml": -4.0, "method": "exact"}]}

    def plot_ensemble(self):
        return "ensemble figure"


def test_bias_section_battery_and_hooks():
    from bayes_se.compare import compare_frequentist
    from bayes_se.frequentist import ranktest, regtest, rma, trimfill
    from bayes_se.report.bias import bias_blocks

    frame = pd.read_csv(REFERENCE / "data" / "dat.hackshaw1998.csv")
    data = bse.load_effects(frame[["study", "yi", "vi"]])
    fit = bse.fit(data, engine="exact")
    freq = compare_frequentist(fit, data)
    extra = pd.DataFrame({"method": ["Egger's regression test", "PET-PEESE"], "estimate": [9.0, 0.1],
                          "ci_lower": [0.0, 0.0], "ci_upper": [1.0, 0.2], "pval": [0.5, 0.01], "note": ["dup", "new"]})
    b = _Builder()
    blocks = bias_blocks(b, freq, 0.95, battery=extra, ensemble=_Ensemble())
    table = b.tables["bias_battery"]
    res = rma(data.yi, data.vi)
    eg, rk, tf = regtest(res), ranktest(res), trimfill(res)
    assert list(table.index) == ["Random effects (REML), unadjusted", "Egger's regression test",
                                 "Rank correlation (Begg & Mazumdar)", "Trim-and-fill (L0)", "PET-PEESE"]
    assert table.loc["Egger's regression test", "pval"] == pytest.approx(eg.pval, rel=1e-10)
    assert table.loc["Egger's regression test", "estimate"] == pytest.approx(eg.limit_estimate, rel=1e-10)
    assert table.loc["Rank correlation (Begg & Mazumdar)", "statistic"] == pytest.approx(rk.tau, rel=1e-10)
    assert table.loc["Trim-and-fill (L0)", "estimate"] == pytest.approx(float(tf.fit.beta[0]), rel=1e-10)
    assert table.loc["Trim-and-fill (L0)", "note"] == f"{tf.k0} studies imputed on the {tf.side}"
    assert table.loc["PET-PEESE", "note"] == "new"
    assert ("funnel", "plot_funnel") in b.figures and ("ensemble", "ensemble figure") in b.figures
    assert b.tables["ensemble_inclusion_bf"].loc["bias", "inclusion BF"] == 0.8
    assert list(b.tables["ensemble_models"].index) == ["RE, no bias", "RE, PET"]
    assert list(b.tables["ensemble_estimates"].index) == ["mu", "tau"]
    assert any(k == "p" and "imputes" in t for k, t, *_ in blocks)


def test_bias_section_without_frequentist_fit_or_with_moderators():
    from bayes_se.compare import compare_frequentist
    from bayes_se.report.bias import bias_blocks

    b = _Builder()
    blocks = bias_blocks(b, None, 0.95)
    assert blocks[0][0] == "missing" and "bias_battery" not in b.tables
    frame = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")
    data = bse.load_effects(frame[["study", "yi", "vi", "ablat"]], moderators=["ablat"])
    fit = bse.fit(data, engine="exact", mods="ablat")
    b = _Builder()
    blocks = bias_blocks(b, compare_frequentist(fit, data, mods="ablat"), 0.95)
    assert any(k == "missing" and "models without moderators" in t for k, t, *_ in blocks)
    assert list(b.tables["bias_battery"].index) == ["Random effects (REML), unadjusted", "Egger's regression test",
                                                    "Rank correlation (Begg & Mazumdar)"]
    assert not any(k == "alert" for k, *_ in blocks)  # 13 studies: enough for the tests (Sterne et al. 2011)


def test_cli_report_refuses_a_bad_rob_table_before_fitting(capsys, tmp_path):
    bad = tmp_path / "rob.csv"
    bad.write_text("study,domain,judgement\nSim-001,D1,Low\nSim-001,Overall,Dubious\n", encoding="utf-8")
    code = cli.main(["report", "--data", str(SIM / "between.csv"), "--engine", "exact", "--out",
                     str(tmp_path / "rep"), "--rob", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "row 2, column 'judgement': unknown judgement 'Dubious'" in err
    code = cli.main(["report", "--data", str(SIM / "between.csv"), "--engine", "exact", "--out",
                     str(tmp_path / "rep"), "--rob", str(SIM / "risk_of_bias.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "--rob-by study_id" in err
    assert not (tmp_path / "rep").exists()


def test_bias_section_takes_functions_for_battery_and_ensemble():
    from bayes_se.compare import compare_frequentist
    from bayes_se.report.bias import bias_blocks

    frame = pd.read_csv(REFERENCE / "data" / "dat.hackshaw1998.csv")
    data = bse.load_effects(frame[["study", "yi", "vi"]])
    freq = compare_frequentist(bse.fit(data, engine="exact"), data)
    seen = {}

    def battery(res):
        seen["k"] = res.k
        return pd.DataFrame({"estimate": [0.1]}, index=pd.Index(["3PSM"], name="method"))

    def ensemble(d):
        seen["data"] = d
        return _Ensemble()

    def broken(res):
        raise RuntimeError("no selection model today")

    b = _Builder()
    bias_blocks(b, freq, 0.95, battery=battery, ensemble=ensemble, data=data)
    assert seen == {"k": data.k, "data": data} and "3PSM" in b.tables["bias_battery"].index
    assert "ensemble_models" in b.tables
    blocks = bias_blocks(_Builder(), freq, 0.95, battery=broken)
    assert ("missing", "Further bias methods skipped (RuntimeError: no selection model today).") in blocks


def test_funnel_draws_no_trimfill_marks_when_nothing_is_imputed(between):
    from bayes_se.frequentist import rma, trimfill

    res = rma(between.yi, between.vi)
    tf = trimfill(res)
    assert tf.k0 == 0
    fig = bse.plots.plot_funnel(res, trimfill=tf)
    _save(fig, "funnel_trimfill_k0")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "Studies" in labels and not any(lab.startswith(("Filled", "Trim-and-fill")) for lab in labels)
