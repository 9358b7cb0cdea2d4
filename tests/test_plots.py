"""Publication plots: the tidy tables' numbers, and every figure rendered and exported.

Fits are small (2 chains x 300 draws): the tests check that tables reproduce the draws they are
computed from (and metafor's Q), not the posterior itself, which tests/test_mcmc.py checks.
Every figure is also written to /tmp/bayes_se_plots/ for eyeballing.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from conftest import REFERENCE

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from bayes_se import checks, plots  # noqa: E402
from bayes_se.plots.boxscore import CATEGORIES  # noqa: E402
from bayes_se.errors import DataError, SpecError  # noqa: E402

#: Tables recompute quantiles of the same draws: only floating-point rounding separates them.
SAME_DRAWS_RTOL = 1e-12
#: metafor's Q (QE) is a closed form.
CLOSED_FORM_RTOL = 1e-6
#: metafor's REML estimate is iterative.
ITERATIVE_RTOL = 1e-5
#: A Gaussian KDE with boundary correction integrates to 1 up to the trimmed tails and the grid.
KDE_MASS_ATOL = 0.03
#: Journal minimum font size (pt).
MIN_FONT_PT = 7.0
OUT = pathlib.Path("/tmp/bayes_se_plots")
BCG = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")
METAPSY = pd.read_csv(pathlib.Path(__file__).parents[1] / "data" / "metapsy_depression_selfguided.csv")
METAFOR_BCG = json.loads((REFERENCE / "metafor" / "dat.bcg.json").read_text())
DRAWS = dict(seed=20240611, draws=300, tune=300, chains=2, cores=1)
ALLOC_NAMES = ["intercept", "allocrandom", "allocsystematic"]  # R's model.matrix names


@pytest.fixture(scope="module")
def bcg_fit():
    from bayes_se.api import fit_random_effects

    return fit_random_effects(BCG.yi, BCG.vi, study=BCG.study, **DRAWS)


@pytest.fixture(scope="module")
def bcg_alloc_fit():
    from bayes_se.api import fit_random_effects

    X = np.column_stack([np.ones(len(BCG)), BCG.alloc == "random", BCG.alloc == "systematic"]).astype(float)
    return fit_random_effects(BCG.yi, BCG.vi, X=X, coef_names=ALLOC_NAMES, study=BCG.study, **DRAWS)


@pytest.fixture(scope="module")
def metapsy_exact():
    from bayes_se.exact import exact_posterior

    return exact_posterior(METAPSY.yi, METAPSY.vi, study=METAPSY.study)


def flat(idata, name):
    values = np.asarray(idata.posterior[name])
    return values.reshape((-1,) + values.shape[2:])


def small_fonts(fig):
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return [s for s in sizes if s < MIN_FONT_PT]


def check_and_save(fig, name, width="single"):
    """A Figure with fonts >= 7 pt, written as non-empty PNG, SVG and PDF."""
    assert isinstance(fig, Figure)
    assert small_fonts(fig) == []
    paths = plots.save_figure(fig, OUT / name, width=width)
    assert [p.suffix for p in paths] == [".png", ".svg", ".pdf"]
    assert all(p.stat().st_size > 1000 for p in paths)
    mm = fig.get_size_inches()[0] * 25.4
    assert mm == pytest.approx(plots.WIDTHS_MM[width])


# -- package -----------------------------------------------------------------------------------
def test_import_plots_loads_no_matplotlib():
    code = ("import sys, bayes_se.plots as p; names = dir(p); "
            "print('matplotlib' in sys.modules, 'plot_forest' in names, 'save_figure' in names)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]


def test_check_tables_still_importable_from_plots():
    """The model-check tables moved to bayes_se.checks; bayes_se.plots and its modules re-export them."""
    from bayes_se.plots import loo, ppc

    for name in ("ppc_stat_draws", "ppc_stat_table", "ppc_density_table", "loo_pit_table", "pareto_k_table"):
        assert getattr(plots, name) is getattr(checks, name)
        assert name in dir(plots)
    assert ppc.ppc_stat_table is checks.ppc_stat_table and loo.pareto_k_table is checks.pareto_k_table


def test_unknown_plots_name_is_attribute_error():
    with pytest.raises(AttributeError):
        plots.plot_nothing  # noqa: B018


def test_okabe_ito_palette_and_widths():
    assert len(plots.OKABE_ITO) == 8 and plots.OKABE_ITO["vermillion"] == "#D55E00"
    assert plots.WIDTHS_MM == {"single": 85.0, "double": 175.0}


def test_save_figure_rejects_bad_format_and_width(tmp_path):
    fig = Figure()
    with pytest.raises(SpecError, match="formats"):
        plots.save_figure(fig, tmp_path / "x", formats=("gif",))
    with pytest.raises(SpecError, match="width"):
        plots.save_figure(fig, tmp_path / "x", width="triple")


# -- forest --------------------------------------------------------------------------------------
def test_forest_table_bcg(bcg_fit):
    table = plots.forest_table(bcg_fit)
    studies = table[table["row"] == "study"]
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(studies["obs_lower"], BCG.yi - z * np.sqrt(BCG.vi), rtol=SAME_DRAWS_RTOL)
    np.testing.assert_allclose(studies["obs_upper"], BCG.yi + z * np.sqrt(BCG.vi), rtol=SAME_DRAWS_RTOL)
    theta = flat(bcg_fit.idata, "theta")
    lo, hi = np.quantile(theta, [0.025, 0.975], axis=0)
    np.testing.assert_allclose(studies["lower"], lo, rtol=SAME_DRAWS_RTOL)
    np.testing.assert_allclose(studies["upper"], hi, rtol=SAME_DRAWS_RTOL)
    np.testing.assert_allclose(studies["estimate"], theta.mean(axis=0), rtol=SAME_DRAWS_RTOL)
    assert list(studies["label"]) == list(BCG.study)
    for row, name in (("pooled", "mu"), ("prediction", "pred")):
        got = table[table["row"] == row].iloc[0]
        draws = flat(bcg_fit.idata, name)
        np.testing.assert_allclose([got["lower"], got["upper"]], np.quantile(draws, [0.025, 0.975]),
                                   rtol=SAME_DRAWS_RTOL)


def test_forest_table_bcg_alloc_groups(bcg_alloc_fit):
    table = plots.forest_table(bcg_alloc_fit, group=BCG.alloc)
    beta = flat(bcg_alloc_fit.idata, "beta")
    tau = flat(bcg_alloc_fit.idata, "tau")
    group_beta = {"alternate": beta[:, 0], "random": beta[:, 0] + beta[:, 1], "systematic": beta[:, 0] + beta[:, 2]}
    normal = np.random.default_rng(0).standard_normal(tau.size)  # forest_table's default seed
    for g, draws in group_beta.items():
        block = table[table["group"] == g]
        assert set(block.loc[block["row"] == "study", "label"]) == set(BCG.study[BCG.alloc == g])
        assert list(block["row"])[-2:] == ["pooled", "prediction"]  # each block ends with its pooled rows
        pooled = block[block["row"] == "pooled"].iloc[0]
        np.testing.assert_allclose([pooled["estimate"], pooled["lower"], pooled["upper"]],
                                   [draws.mean(), *np.quantile(draws, [0.025, 0.975])], rtol=SAME_DRAWS_RTOL)
        pred = block[block["row"] == "prediction"].iloc[0]
        np.testing.assert_allclose([pred["lower"], pred["upper"]],
                                   np.quantile(draws + tau * normal, [0.025, 0.975]), rtol=SAME_DRAWS_RTOL)
    check_and_save(plots.plot_forest(bcg_alloc_fit, group=BCG.alloc), "forest_bcg_alloc", "double")


def test_forest_plot_bcg_single_and_double(bcg_fit):
    check_and_save(plots.plot_forest(bcg_fit, width="single"), "forest_bcg", width="single")
    check_and_save(plots.plot_forest(bcg_fit, width="double"), "forest_bcg_double", width="double")


def test_forest_metapsy_exact_large_k(metapsy_exact):
    table = plots.forest_table(metapsy_exact, METAPSY, group="support")
    k = len(METAPSY)
    assert (table["row"] == "study").sum() == k > 60
    # intercept-only: no per-group pooled effect, only the overall one
    assert list(table.loc[table["row"] != "study", "label"]) == ["Pooled effect (mu)", "Prediction interval"]
    fig = plots.plot_forest(metapsy_exact, METAPSY, group="support")
    assert fig.get_size_inches()[1] * 25.4 > 3.0 * k  # grows with k: >= 3 mm per row
    check_and_save(fig, "forest_metapsy_support", width="double")


def test_forest_exact_meta_regression_draws_group_diamonds():
    """An ExactFit meta-regression grouped by its moderator: one diamond per group and one overall."""
    from matplotlib.patches import Polygon

    from bayes_se.api import fit

    res = fit(REFERENCE / "data" / "dat.bcg.csv", engine="exact", mods="alloc")
    assert res.coef_names == ALLOC_NAMES
    table = plots.forest_table(res, group="alloc")
    beta = res.idata.posterior["beta"].values.reshape(-1, 3)  # the exact iid draws every plot of the fit reads
    group_beta = {"alternate": beta[:, 0], "random": beta[:, 0] + beta[:, 1], "systematic": beta[:, 0] + beta[:, 2]}
    pooled = table[table["row"] == "pooled"].set_index("group")
    assert set(pooled.index) == {*group_beta, ""}
    for g, draws in group_beta.items():
        np.testing.assert_allclose(pooled.loc[g, ["estimate", "lower", "upper"]].to_numpy(float),
                                   [draws.mean(), *np.quantile(draws, [0.025, 0.975])], rtol=SAME_DRAWS_RTOL)
    fig = plots.plot_forest(res, group="alloc")
    diamonds = [p for p in fig.axes[0].patches if isinstance(p, Polygon)]
    assert len(diamonds) == len(pooled) == 4
    spans = sorted((p.get_xy()[:, 0].min(), p.get_xy()[:, 0].max()) for p in diamonds)
    np.testing.assert_allclose(spans, sorted(zip(pooled["lower"], pooled["upper"])), rtol=SAME_DRAWS_RTOL)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "Pooled" in legend and "Subgroup pooled" in legend
    check_and_save(fig, "forest_bcg_alloc_exact", "double")


def test_forest_errors(metapsy_exact):
    with pytest.raises(SpecError, match="data"):
        plots.forest_table(metapsy_exact)
    with pytest.raises(DataError, match="rows"):
        plots.forest_table(metapsy_exact, METAPSY.iloc[:10])
    with pytest.raises(SpecError, match="group"):
        plots.forest_table(metapsy_exact, METAPSY, group="no_such_column")
    with pytest.raises(SpecError, match="expected a fit"):
        plots.forest_table(object())


# -- funnel ----------------------------------------------------------------------------------------
def test_funnel_contours_at_normal_quantiles():
    lines = plots.funnel_contours(0.8, estimate=-0.7)
    contours = lines[lines["line"] == "contour"]
    for p, z in ((0.10, 1.6448536269514722), (0.05, 1.959963984540054), (0.01, 2.5758293035489004)):
        rows = contours[contours["p"] == p]
        np.testing.assert_allclose(rows["z"], z, rtol=1e-12)
        np.testing.assert_allclose(rows["upper"], z * rows["se"], rtol=1e-12)
        np.testing.assert_allclose(rows["lower"], -z * rows["se"], rtol=1e-12)
    ci = lines[lines["line"] == "pseudo_ci"]
    np.testing.assert_allclose(ci["upper"], -0.7 + 1.959963984540054 * ci["se"], rtol=1e-12)


def test_funnel_bcg(bcg_fit):
    table = plots.funnel_table(bcg_fit)
    np.testing.assert_allclose(table["sei"], np.sqrt(BCG.vi), rtol=SAME_DRAWS_RTOL)
    assert table.attrs["estimate"] == pytest.approx(flat(bcg_fit.idata, "mu").mean(), rel=SAME_DRAWS_RTOL)
    check_and_save(plots.plot_funnel(bcg_fit), "funnel_bcg")


def test_funnel_from_rma_and_dataframe():
    from bayes_se.frequentist.rma import rma

    res = rma(BCG.yi, BCG.vi, slab=BCG.study)
    table = plots.funnel_table(res)
    estimate = METAFOR_BCG["rma"]["REML"]["z"]["estimate"]
    assert table.attrs["estimate"] == pytest.approx(estimate, rel=ITERATIVE_RTOL)
    check_and_save(plots.plot_funnel(res), "funnel_bcg_rma")
    assert plots.funnel_table(BCG[["study", "yi", "vi"]]).attrs["estimate"] is None
    with pytest.raises(DataError, match="vi"):
        plots.funnel_table(BCG[["yi"]])


def test_funnel_marks_trimfill_studies():
    """Filled studies are open circles in the legend; the adjusted estimate is metafor's trimfill."""
    from matplotlib.lines import Line2D

    from bayes_se.frequentist import rma, trimfill

    ref = json.loads((REFERENCE / "metafor" / "dat.hackshaw1998.json").read_text())
    frame = pd.read_csv(REFERENCE / ref["univariate_csv"])
    expected = ref["trimfill"]["REML_L0"]
    res = rma(frame["yi"], frame["vi"])
    tf = trimfill(res, threshold=1e-5)  # metafor refits with its default threshold
    table = plots.funnel_table(res, trimfill=tf)
    assert table["filled"].sum() == tf.k0 == expected["k0"] == 7
    filled = table[table["filled"]]
    np.testing.assert_allclose(filled["yi"], expected["filled_yi"], rtol=ITERATIVE_RTOL)
    np.testing.assert_allclose(filled["sei"], np.sqrt(expected["filled_vi"]), rtol=CLOSED_FORM_RTOL)
    assert table.attrs["adjusted"] == pytest.approx(expected["estimate"], rel=ITERATIVE_RTOL)
    assert table.attrs["estimate"] == pytest.approx(float(res.beta[0]), rel=SAME_DRAWS_RTOL)
    assert plots.funnel_table(res, trimfill=True).attrs["k0"] == 7
    fig = plots.plot_funnel(res, trimfill=tf)
    ax = fig.axes[0]
    legend = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"Studies", "Filled studies (7)", "Trim-and-fill estimate"} <= legend
    lines = {ln.get_label(): ln for ln in ax.get_lines() if isinstance(ln, Line2D)}
    open_marks = lines["Filled studies (7)"]
    assert open_marks.get_markerfacecolor() == "white" and lines["Studies"].get_markerfacecolor() != "white"
    np.testing.assert_allclose(open_marks.get_xdata(), filled["yi"], rtol=SAME_DRAWS_RTOL)
    np.testing.assert_allclose(lines["Trim-and-fill estimate"].get_xdata(), table.attrs["adjusted"])
    check_and_save(fig, "funnel_hackshaw_trimfill")
    with pytest.raises(SpecError, match="trimfill"):
        plots.funnel_table(frame[["yi", "vi"]], trimfill=True)
    with pytest.raises(DataError, match="observed studies"):
        plots.funnel_table(frame[["yi", "vi"]].iloc[:10], trimfill=tf)


# -- densities --------------------------------------------------------------------------------------
def test_densities_bcg(bcg_fit):
    table = plots.density_table(bcg_fit)
    assert set(map(tuple, table[["parameter", "source"]].drop_duplicates().to_numpy())) == {
        ("mu", "posterior"), ("mu", "prior"), ("tau", "posterior"), ("tau", "prior")}
    for (name, source), curve in table.groupby(["parameter", "source"]):
        if source == "posterior":  # a KDE over the posterior's whole range
            assert np.trapezoid(curve["density"], curve["x"]) == pytest.approx(1.0, abs=KDE_MASS_ATOL)
        else:  # the prior's own density (the fit's resolved priors), drawn over the posterior's range
            prior = bcg_fit.priors[name]
            x = curve["x"].to_numpy()
            want = np.exp(prior.tau_logpdf(x) if name == "tau" else prior.logpdf(x))
            np.testing.assert_allclose(curve["density"], want, rtol=1e-12)
    check_and_save(plots.plot_densities(bcg_fit, width="single"), "densities_bcg")


def test_densities_bcg_alloc_with_prior_objects(bcg_alloc_fit):
    from bayes_se.priors import preset

    priors = preset("default")
    table = plots.density_table(bcg_alloc_fit, priors)
    assert list(pd.unique(table["parameter"])) == [f"beta[{n}]" for n in ALLOC_NAMES] + ["tau"]
    tau_prior = table[(table["parameter"] == "tau") & (table["source"] == "prior")]
    np.testing.assert_allclose(tau_prior["density"], np.exp(priors["tau"].tau_logpdf(tau_prior["x"])),
                               rtol=SAME_DRAWS_RTOL)
    b_prior = table[(table["parameter"] == "beta[intercept]") & (table["source"] == "prior")]
    np.testing.assert_allclose(b_prior["density"], stats.norm.pdf(b_prior["x"], 0, 1), rtol=1e-12)
    check_and_save(plots.plot_densities(bcg_alloc_fit, priors, width="double"), "densities_bcg_alloc", "double")


def test_densities_exact_posterior(metapsy_exact):
    from bayes_se.priors import preset

    priors = preset("default")
    table = plots.density_table(metapsy_exact, {"mu": priors["mu"], "tau": priors["tau"]}, data=METAPSY)
    post = table[(table["parameter"] == "mu") & (table["source"] == "posterior")]
    np.testing.assert_allclose(post["density"], metapsy_exact.pdf("mu", post["x"].to_numpy()), rtol=1e-12)
    check_and_save(plots.plot_densities(metapsy_exact, {"mu": priors["mu"], "tau": priors["tau"]}, data=METAPSY),
                   "densities_metapsy_exact")


# -- posterior predictive checks -------------------------------------------------------------------
def direct_q(y, v):
    w = 1.0 / v
    ybar = (y * w).sum(axis=-1, keepdims=True) / w.sum()
    return (w * (y - ybar) ** 2).sum(axis=-1)


def test_ppc_stats_bcg(bcg_fit):
    table = checks.ppc_stat_table(bcg_fit)
    assert table.loc["Q", "observed"] == pytest.approx(METAFOR_BCG["rma"]["REML"]["z"]["QE"], rel=CLOSED_FORM_RTOL)
    y_rep = np.asarray(bcg_fit.idata.posterior_predictive["y"]).reshape(-1, len(BCG))
    q_rep, q_obs = direct_q(y_rep, BCG.vi.to_numpy()), direct_q(BCG.yi.to_numpy(), BCG.vi.to_numpy())
    i2 = lambda q: 100 * np.maximum(0, (q - (len(BCG) - 1)) / q)  # noqa: E731
    expected = {"Q": np.mean(q_rep >= q_obs), "I2": np.mean(i2(q_rep) >= i2(q_obs)),
                "min": np.mean(y_rep.min(axis=1) >= BCG.yi.min()), "max": np.mean(y_rep.max(axis=1) >= BCG.yi.max())}
    for s, p in expected.items():
        assert 0.0 <= table.loc[s, "p_value"] <= 1.0
        assert table.loc[s, "p_value"] == pytest.approx(p, abs=1e-15)
    check_and_save(plots.plot_ppc_stats(bcg_fit, width="double"), "ppc_stats_bcg", "double")
    check_and_save(plots.plot_ppc_stats(bcg_fit, width="single"), "ppc_stats_bcg_single")


def test_ppc_q_of_meta_regression_is_metafor_qe(bcg_alloc_fit):
    table = checks.ppc_stat_table(bcg_alloc_fit)
    qe = METAFOR_BCG["metareg"]["alloc"]["REML"]["QE"]
    assert table.loc["Q", "observed"] == pytest.approx(qe, rel=CLOSED_FORM_RTOL)


def test_ppc_density_caps_replicates(bcg_fit):
    table = checks.ppc_density_table(bcg_fit, n_replicates=25)
    assert table.loc[table["source"] == "replicated", "replicate"].nunique() == 25
    assert (table["replicate"] == -1).any()
    check_and_save(plots.plot_ppc_density(bcg_fit), "ppc_density_bcg")


def test_loo_pit_bcg(bcg_fit):
    table = checks.loo_pit_table(bcg_fit)
    assert len(table) == len(BCG) and table["pit"].between(0, 1).all()
    check_and_save(plots.plot_loo_pit(bcg_fit), "loo_pit_bcg")


def test_ppc_needs_replicates(metapsy_exact):
    with pytest.raises(SpecError, match="replicates"):
        checks.ppc_stat_table(metapsy_exact)


# -- Pareto k -------------------------------------------------------------------------------------
def test_pareto_k_bcg(bcg_fit):
    import arviz as az

    table = checks.pareto_k_table(bcg_fit)
    loo = az.loo(bcg_fit.idata, pointwise=True)
    np.testing.assert_allclose(table["pareto_k"], np.asarray(loo.pareto_k), rtol=SAME_DRAWS_RTOL)
    assert list(table["study"]) == list(BCG.study)
    np.testing.assert_array_equal(table["influential"], table["pareto_k"] > 0.7)
    check_and_save(plots.plot_pareto_k(bcg_fit), "pareto_k_bcg")


def test_pareto_k_names_influential_studies(bcg_fit):
    from bayes_se.results import BayesianFit

    idata = bcg_fit.idata.copy()
    ll = np.array(idata.log_likelihood["y"])
    # heavy-tailed importance ratios for one study: its k exceeds 0.7
    ll[..., 7] *= np.exp(np.random.default_rng(0).normal(0.0, 1.5, ll.shape[:2]))
    idata.log_likelihood["y"] = (idata.log_likelihood["y"].dims, ll)
    fit = BayesianFit(idata=idata, meta=bcg_fit.meta, diagnostics=bcg_fit.diagnostics)
    table = checks.pareto_k_table(fit)
    assert table.loc[7, "influential"]
    fig = plots.plot_pareto_k(fit)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert set(table.loc[table["influential"], "study"]) <= texts
    check_and_save(fig, "pareto_k_bcg_influential")


# -- sensitivity -----------------------------------------------------------------------------------
SENSITIVITY = pd.DataFrame({
    "prior": ["default", "rover2021_smd", "half-Cauchy(0.5)"],
    "mu_mean": [-0.70, -0.69, -0.71], "mu_lower": [-1.1, -1.12, -1.16], "mu_upper": [-0.33, -0.3, -0.29],
    "tau_mean": [0.55, 0.5, 0.6], "tau_lower": [0.3, 0.28, 0.33], "tau_upper": [0.95, 0.88, 1.05],
    "p_positive": [0.0003, 0.0004, 0.001], "bf_mu0": [0.004, 0.006, 0.01]})


def test_sensitivity_table_and_plot():
    table = plots.sensitivity_table(SENSITIVITY)
    assert list(table["prior"]) == list(SENSITIVITY["prior"])
    check_and_save(plots.plot_sensitivity(SENSITIVITY), "sensitivity", "double")
    check_and_save(plots.plot_sensitivity(SENSITIVITY.drop(columns=["p_positive", "bf_mu0"]), width="single"),
                   "sensitivity_single")


@pytest.mark.parametrize("width", ["single", "double"])
def test_sensitivity_text_columns_do_not_collide(width):
    """Headers say P(mu > 0) and BF01; no two texts of the figure overlap, at either width."""
    long = SENSITIVITY.copy()
    long.loc[3] = ["a long prior label: tau ~ half_t(3, 0.5), mu ~ normal(0, 1)", -0.7, -1.2, -0.3, 0.5, 0.3, 1.0,
                   0.99999, 12345.0]
    fig = plots.plot_sensitivity(long, width=width)
    texts = [t.get_text() for t in fig.axes[-1].texts]
    assert any(t.startswith("BF01") for t in texts) and not any("BF(" in t for t in texts)
    assert texts.count("<0.001") == 2 and ">0.999" in texts and "1.23e+04" in texts
    fig.draw_without_rendering()
    shown = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    boxes = [t.get_window_extent() for t in shown]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (shown[i].get_text(), shown[j].get_text())
    check_and_save(fig, f"sensitivity_long_{width}", width)


def test_sensitivity_errors_name_row_and_column():
    with pytest.raises(DataError, match="tau_upper"):
        plots.sensitivity_table(SENSITIVITY.drop(columns="tau_upper"))
    bad = SENSITIVITY.copy()
    bad.loc[1, "mu_mean"] = 5.0
    with pytest.raises(DataError, match="row 2") as err:
        plots.sensitivity_table(bad)
    assert err.value.column == "mu_mean"


# -- trace and rank --------------------------------------------------------------------------------
def test_trace_and_rank(bcg_fit, bcg_alloc_fit):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    check_and_save(plots.plot_trace(bcg_fit), "trace_bcg", "double")
    check_and_save(plots.plot_rank(bcg_alloc_fit), "rank_bcg_alloc", "double")
    assert plt.get_fignums() == before  # ArviZ drew on our axes: no pyplot figure left open
    with pytest.raises(SpecError, match="unknown parameter"):
        plots.plot_trace(bcg_fit, var_names=["sigma"])


# -- box score -------------------------------------------------------------------------------------
def boxscore_data():
    rng = np.random.default_rng(3)
    rows = []
    for construct in ("self-efficacy", "social support", "rumination"):
        for role in ("predictor", "moderator"):
            for s in range(int(rng.integers(4, 12))):
                d = rng.choice(["+", "0", "-"], p=[0.55, 0.3, 0.15])
                for outcome in ("depression", "anxiety")[: int(rng.integers(1, 3))]:
                    rows.append(dict(study=f"Study {s + 1}", construct=construct, role=role, outcome=outcome,
                                     direction=d, significant="no" if d == "0" else rng.choice(["yes", "no"]),
                                     n=int(rng.integers(30, 300))))
    return pd.DataFrame(rows)


def test_boxscore_counts_equal_groupby():
    data = boxscore_data()
    counts = plots.boxscore_table(data)
    category = np.where(data["direction"] == "0", "0", data["direction"] + " " +
                        np.where(data["significant"] == "yes", "significant", "not significant"))
    expected = data.assign(category=category).groupby(["construct", "role", "category"])["study"].nunique()
    for (construct, role, cat), k in expected.items():
        assert counts.loc[(construct, role), cat] == k
    assert counts[list(CATEGORIES)].to_numpy().sum() == expected.sum()
    np.testing.assert_array_equal(counts["findings"], data.groupby(["construct", "role"]).size())
    studies = plots.boxscore_studies(data)
    assert studies["k"].sum() == expected.sum()
    assert (studies["k"] == studies["studies"].str.split("; ").str.len()).all()


def test_boxscore_plot_with_pooled():
    data = boxscore_data()
    fig = plots.plot_boxscore(data, pooled={"self-efficacy": (0.3, 0.1, 0.5), "rumination": (-0.2, -0.45, 0.05)})
    assert any("not evidence of an effect's size" in t.get_text() for t in fig.findobj(Text))
    check_and_save(fig, "boxscore_pooled", "double")
    check_and_save(plots.plot_boxscore(data, width="single"), "boxscore_single")


def test_boxscore_errors_name_row_and_column():
    data = boxscore_data()
    data.loc[4, "direction"] = "up"
    with pytest.raises(DataError, match="row 5") as err:
        plots.boxscore_table(data)
    assert err.value.column == "direction"
    with pytest.raises(DataError, match="significant"):
        plots.boxscore_table(boxscore_data().drop(columns="significant"))
    with pytest.raises(SpecError, match="unknown construct"):
        plots.plot_boxscore(boxscore_data(), pooled={"grit": (0.1, 0.0, 0.2)})
