"""Plots and report section of the path-based mediation fit (trials' reported paths mixed with
trials' correlation matrices): forest of per-trial a, b, a*b, path diagram, report blocks."""

import pathlib

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtri

REPO = pathlib.Path(__file__).resolve().parents[1]
SIM = REPO / "data" / "self_efficacy_sim"


@pytest.fixture(scope="module")
def mixed_fit():
    from bayes_se.mediation_paths import fit_mediation_paths

    return fit_mediation_paths(SIM / "mediation_paths.csv", correlations=SIM / "mediation_correlations.csv",
                               draws=200, tune=300, chains=2, seed=5)


def test_forest_table_rows_follow_the_data_and_the_draws(mixed_fit):
    from bayes_se.plots.mediation_forest import mediation_forest_table

    table = mediation_forest_table(mixed_fit, level=0.9)
    data = mixed_fit.data
    z = ndtri(0.95)
    study = table[(table["row"] == "study")]
    assert list(study[study["panel"] == "a"]["label"]) == [str(s) for s in data.study]
    for panel, j in (("a", 0), ("b", 1)):
        rows = study[study["panel"] == panel]
        se = np.sqrt(data.cov[:, j, j])
        np.testing.assert_allclose(rows["observed"], data.est[:, j], equal_nan=True)
        np.testing.assert_allclose(rows["obs_lower"], data.est[:, j] - z * se, equal_nan=True)
        np.testing.assert_allclose(rows["obs_upper"], data.est[:, j] + z * se, equal_nan=True)
        theta = mixed_fit.theta(path=panel)
        np.testing.assert_allclose(rows["estimate"], np.median(theta, axis=0))
    # a*b: the product of the reported paths with the first-order delta-method SE (Sobel 1982)
    ab = study[study["panel"] == "ab"]
    a, b = data.est[:, 0], data.est[:, 1]
    cov_ab = np.nan_to_num(data.cov[:, 0, 1])
    se = np.sqrt(b**2 * data.cov[:, 0, 0] + a**2 * data.cov[:, 1, 1] + 2 * a * b * cov_ab)
    np.testing.assert_allclose(ab["observed"], a * b, equal_nan=True)
    np.testing.assert_allclose(ab["obs_upper"] - ab["observed"], z * se, equal_nan=True)
    only_a = ~data.observed[:, 1]
    assert only_a.any() and np.all(np.isnan(ab["observed"].to_numpy()[only_a]))
    np.testing.assert_allclose(ab["estimate"], np.median(mixed_fit.theta(path="a") * mixed_fit.theta(path="b"), axis=0))
    # pooled rows: medians and central intervals of the pooled draws; the average only for a*b
    summary = table[table["row"] != "study"]
    pooled = summary[summary["row"] == "pooled"].set_index("panel")
    for panel, name in (("a", "a"), ("b", "b"), ("ab", "indirect")):
        np.testing.assert_allclose(pooled.loc[panel, ["lower", "estimate", "upper"]].to_numpy(float),
                                   np.quantile(mixed_fit.draws(name), [0.05, 0.5, 0.95]))
    average = summary[summary["row"] == "average"]
    assert list(average["panel"]) == ["ab"]
    np.testing.assert_allclose(average["estimate"], np.median(mixed_fit.draws("indirect_avg")))
    assert set(study["source"]) == {"paths", "matrix"}


def test_forest_and_path_diagram_draw(mixed_fit, tmp_path):
    fig = mixed_fit.plot_forest(level=0.9)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 3
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert sum(label.endswith("[r]") for label in labels) == int(np.sum(mixed_fit.data.source == "matrix"))
    fig.savefig(tmp_path / "forest.png")
    fig = mixed_fit.plot_paths()
    title = fig.axes[0].get_title()
    n_paths = int(np.sum(mixed_fit.data.source == "paths"))
    assert f"{n_paths} reported paths" in title
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "c_prime = " in texts and "average indirect E[a_i b_i]" in texts
    fig.savefig(tmp_path / "paths.png")


def test_path_diagram_without_c_prime_leaves_that_arrow_out(tmp_path):
    import pandas as pd

    from bayes_se.mediation_paths import fit_mediation_paths
    from bayes_se.plots.paths import paths_table

    frame = pd.read_csv(SIM / "mediation_paths.csv")
    frame = frame.drop(columns=[c for c in frame.columns if "c_prime" in c])
    path = tmp_path / "no_c.csv"
    frame.to_csv(path, index=False)
    fit = fit_mediation_paths(path, draws=100, tune=200, chains=2, seed=3)
    assert list(paths_table(fit)["label"]) == ["a", "b"]
    fig = fit.plot_paths()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "c_prime" not in texts and "total" not in texts


def test_report_section_says_who_gave_what(mixed_fit, tmp_path):
    from bayes_se.api import fit as fit_spec
    from bayes_se.data import load_effects
    from bayes_se.report import write_report

    data = load_effects(SIM / "between.csv")
    fit = fit_spec(data, engine="exact", seed=1)
    out = write_report(tmp_path / "rep", data=data, fit=fit, mediation=mixed_fit, ensemble=False)
    html = (out / "report.html").read_text()
    section = html[html.index('id="mediation"'):]
    n_paths = int(np.sum(mixed_fit.data.source == "paths"))
    n_matrix = int(np.sum(mixed_fit.data.source == "matrix"))
    assert f"{n_paths} reported the paths of their own mediation analysis" in section
    assert f"{n_matrix} gave a correlation matrix" in section
    assert "diagnostics:" in section
    for name in ("paths", "indirect", "mediation_forest"):
        assert (out / "figures" / f"{name}.png").exists()
    assert (out / "tables" / "mediation.csv").exists()
    # the frequentist twin beside it, the same table as compare_paths
    assert "frequentist bivariate random-effects model of (a, b)" in section
    twin = pd.read_csv(out / "tables" / "mediation_frequentist.csv", index_col=0)
    from bayes_se.compare_paths import compare_paths

    pd.testing.assert_frame_equal(twin, compare_paths(mixed_fit, level=0.95).table, check_names=False, rtol=1e-12)


def test_compare_paths_is_the_posterior_beside_paths_rma(mixed_fit):
    """compare_paths: Bayesian columns are the draws' quantiles, REML columns paths_rma's numbers
    on the same (mixed) trials; a posterior moved away from REML is named in the notes."""
    from bayes_se.compare_paths import compare_paths
    from bayes_se.frequentist.mediation_paths import paths_rma

    cmp = compare_paths(mixed_fit, level=0.9, seed=4)
    freq = paths_rma(mixed_fit.data, method="REML", level=0.9, seed=4)
    t = cmp.table
    assert list(t.index) == ["a", "b", "c_prime", "indirect", "indirect_avg", "total", "tau_a", "tau_b", "rho_ab"]
    for name in ("a", "indirect", "tau_b", "rho_ab"):
        np.testing.assert_allclose(t.loc[name, ["bayes_lower", "bayes_estimate", "bayes_upper"]],
                                   np.quantile(mixed_fit.draws(name), [0.05, 0.5, 0.95]), rtol=1e-12)
    for name in ("a", "b", "c_prime", "indirect", "indirect_avg", "total"):
        e = freq.effects.loc[name]
        np.testing.assert_allclose(t.loc[name, ["reml_estimate", "reml_lower", "reml_upper"]],
                                   [e["estimate"], e["ci_lower"], e["ci_upper"]], rtol=1e-12)
    np.testing.assert_allclose(t.loc["indirect", ["reml_mc_lower", "reml_mc_upper"]],
                               freq.effects.loc["indirect", ["mc_lower", "mc_upper"]].to_numpy(float), rtol=1e-12)
    np.testing.assert_allclose(t.loc[["tau_a", "tau_b", "rho_ab"], "reml_estimate"],
                               [freq.tau_a, freq.tau_b, freq.rho_ab], rtol=1e-12)
    assert t.loc["tau_a", ["reml_lower", "reml_upper"]].isna().all()
    assert not any(n.startswith(("a:", "b:", "indirect:")) for n in cmp.notes), cmp.notes
    # shift the posterior of a by one posterior SD: the note names the gap
    import dataclasses

    moved = dataclasses.replace(mixed_fit, idata=mixed_fit.idata.copy())
    eff = moved.idata.posterior["effects"]
    sd = float(eff.sel(effect="a").std())
    eff.loc[{"effect": "a"}] = eff.sel(effect="a") + sd
    notes = compare_paths(moved, level=0.9).notes
    assert any(n.startswith("a: the posterior median") and "differ by 1.0" in n for n in notes), notes
    assert np.median(mixed_fit.draws("a")) == t.loc["a", "bayes_estimate"]  # the fixture is untouched
