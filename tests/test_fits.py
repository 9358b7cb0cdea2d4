"""The one fit interface (bayes_se.fits.Fit): every engine through summary, every plot, the report,
to_netcdf and load_fit.

References: the exact engine's numbers are checked against the R quadrature solver in
tests/test_exact.py; here the interface is checked to carry them unchanged (same code, rtol 1e-12)
and the MCMC fit to agree with the exact one within Monte Carlo error.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

import bayes_se as bse
from bayes_se.api import fit, load_fit
from bayes_se.errors import DataError, SpecError
from bayes_se.fits import Fit, draws_table, sample_hdi

REF = pathlib.Path(__file__).parent / "reference"
BCG = REF / "data" / "dat.bcg.csv"
#: Every plot a random-effects fit offers, by method name.
PLOTS = ("plot_forest", "plot_densities", "plot_funnel", "plot_ppc", "plot_ppc_stats", "plot_loo_pit",
         "plot_pareto_k")
MCMC = dict(draws=400, tune=400, chains=2)


@pytest.fixture(scope="module")
def bcg():
    return bse.load_effects(BCG)


@pytest.fixture(scope="module")
def exact_fit(bcg):
    return fit(bcg, engine="exact")


@pytest.fixture(scope="module")
def mcmc_fit(bcg):
    return fit(bcg, seed=11, **MCMC)


def _through_everything(res, bcg, tmp_path):
    from matplotlib.figure import Figure

    from bayes_se.report import write_report

    assert isinstance(res, Fit)
    table = res.summary()
    assert {"mean", "sd", "q2.5", "q50", "q97.5", "P(>0.2)", "P(<-0.2)"} <= set(table.columns)
    assert {"mu", "tau", "pred"} <= set(table.index) and "theta[Aronson 1948]" in table.index
    text = res.print_summary()
    assert str(res) == text and "mu" in text and "priors: mu ~ Normal(0, 1); tau ~ HalfNormal(0.5)" in text
    assert "<table" in res._repr_html_()
    prob = res.prob_greater(0.0)
    assert isinstance(prob, pd.Series) and prob["mu"] < 0.01  # BCG vaccine lowers the risk
    assert set(res.priors) == {"mu", "tau"}  # no moderators: no beta prior listed
    for name in PLOTS:
        fig = getattr(res, name)()
        assert isinstance(fig, Figure), name
        fig.savefig(tmp_path / f"{res.engine}_{name}.png", dpi=60)
    import arviz as az

    az.plot_ppc(res.idata)  # observed data and replicates share the name y
    out = write_report(tmp_path / f"report_{res.engine}", data=bcg, fit=res)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Figure skipped" not in html
    path = res.to_netcdf(tmp_path / f"{res.engine}.nc")
    back = load_fit(path)
    assert type(back) is type(res)
    pd.testing.assert_frame_equal(back.summary(theta=False), res.summary(theta=False), rtol=1e-12)
    assert {k: str(v) for k, v in back.priors.items()} == {k: str(v) for k, v in res.priors.items()}
    for name in PLOTS:  # the loaded fit plots too
        assert isinstance(getattr(back, name)(), Figure)
    return back


def test_exact_fit_goes_through_the_whole_interface(exact_fit, bcg, tmp_path):
    back = _through_everything(exact_fit, bcg, tmp_path)
    assert back.log_marginal_likelihood == pytest.approx(exact_fit.log_marginal_likelihood, rel=1e-12)
    groups = set(exact_fit.idata.groups())
    assert {"posterior", "prior", "posterior_predictive", "log_likelihood", "observed_data",
            "constant_data"} <= groups
    assert list(exact_fit.idata.posterior["theta"].coords["study"].values)[0] == "Aronson 1948"


@pytest.mark.mcmc
def test_mcmc_fit_goes_through_the_whole_interface(mcmc_fit, exact_fit, bcg, tmp_path):
    _through_everything(mcmc_fit, bcg, tmp_path)
    m, e = mcmc_fit.summary(theta=False), exact_fit.summary(theta=False)
    for name in ("mu", "tau"):  # same model and priors: agreement within 4 Monte Carlo SEs
        mcse = m.loc[name, "sd"] / np.sqrt(m.loc[name, "ess_bulk"])
        assert abs(m.loc[name, "mean"] - e.loc[name, "mean"]) < 4 * mcse


def test_exact_summary_level_and_hdi(exact_fit):
    post = exact_fit.posterior
    t90 = exact_fit.summary(level=0.9, theta=False)
    assert list(t90.columns[:5]) == ["mean", "sd", "q5", "q50", "q95"]
    np.testing.assert_allclose(t90.loc["mu", ["q5", "q95"]], post.quantile("mu", [0.05, 0.95]), rtol=1e-12)
    hdi = exact_fit.summary(interval="hdi", theta=False)
    lo, hi = hdi.loc["tau", "hdi2.5"], hdi.loc["tau", "hdi97.5"]
    # an HDI holds the level and is the shortest such interval: the density is equal at its ends
    assert post.cdf("tau", hi) - post.cdf("tau", lo) == pytest.approx(0.95, abs=1e-7)
    assert post.pdf("tau", lo) == pytest.approx(post.pdf("tau", hi), rel=1e-4)
    central = exact_fit.summary(theta=False)
    assert hi - lo < central.loc["tau", "q97.5"] - central.loc["tau", "q2.5"]
    # symmetric posterior of mu given tau is nearly symmetric: HDI close to the central interval
    assert hdi.loc["mu", "hdi2.5"] == pytest.approx(central.loc["mu", "q2.5"], abs=0.01)


def test_level_from_spec_and_errors(bcg):
    res = fit(bcg, "[model]\ntype = \"random_effects\"\n[summary]\nlevel = 0.8\n[sampler]\nengine = \"exact\"\n")
    assert res.level == 0.8 and "q10" in res.summary().columns
    assert "q5" in fit(bcg, engine="exact", level=0.9).summary().columns
    with pytest.raises(SpecError, match="level"):
        res.summary(level=1.5)
    with pytest.raises(SpecError, match="interval"):
        res.summary(interval="shortest")


def test_sample_hdi_matches_arviz():
    import arviz as az

    rng = np.random.default_rng(3)
    x = np.column_stack([rng.gamma(2.0, size=4000), rng.normal(size=4000)])
    ours = sample_hdi(x, 0.9)
    for j in range(2):
        np.testing.assert_allclose(ours[j], az.hdi(x[:, j], hdi_prob=0.9), rtol=1e-12)


def test_draws_table_matches_arviz_per_variable():
    import arviz as az

    rng = np.random.default_rng(5)
    values = rng.normal(size=(2, 300, 3)).cumsum(axis=1) * 0.05 + rng.normal(size=(2, 300, 3))
    table = draws_table(["a", "b", "c"], values, 0.95)
    for j, name in enumerate("abc"):
        x = values[:, :, j]
        assert table.loc[name, "ess_bulk"] == pytest.approx(float(az.ess(x, method="bulk")), rel=1e-12)
        assert table.loc[name, "r_hat"] == pytest.approx(float(az.rhat(x)), rel=1e-12)
        assert table.loc[name, "q2.5"] == pytest.approx(np.quantile(x, 0.025), rel=1e-12)


def test_exact_prob_greater_is_a_series_of_exact_probabilities(exact_fit):
    prob = exact_fit.prob_greater(-0.5)
    assert isinstance(prob, pd.Series) and list(prob.index) == ["mu", "pred"]
    assert prob["mu"] == pytest.approx(exact_fit.posterior.prob("mu", ">", -0.5), rel=1e-12)


def test_meta_regression_priors_one_per_coefficient(bcg):
    res = fit(bcg, engine="exact", mods="ablat", priors=["beta[ablat]=normal(0, 0.1)"])
    assert list(res.priors) == ["beta[intercept]", "beta[ablat]", "tau"]
    assert str(res.priors["beta[ablat]"]) == "beta[ablat] ~ Normal(0, 0.1)"
    assert str(res.priors["beta[intercept]"]) == "beta[intercept] ~ Normal(0, 1)"
    assert res.print_summary().startswith("Bayesian meta-regression")


def test_load_fit_checks_the_data_hash(exact_fit, tmp_path):
    import arviz as az

    path = exact_fit.to_netcdf(tmp_path / "fit.nc")
    idata = az.from_netcdf(path)
    idata.observed_data["y"][0] = 9.0  # edited after it was written
    idata.to_netcdf(str(tmp_path / "edited.nc"))
    with pytest.raises(DataError, match="data hash"):
        load_fit(tmp_path / "edited.nc")
    with pytest.raises(DataError, match="not written by a bayes_se fit"):
        az.from_dict(posterior={"x": np.zeros((1, 5))}).to_netcdf(str(tmp_path / "plain.nc"))
        load_fit(tmp_path / "plain.nc")
    with pytest.raises(DataError, match="no fit file"):
        load_fit(tmp_path / "missing.nc")


def test_to_dict_layout_is_shared(exact_fit):
    out = json.loads(json.dumps(exact_fit.to_dict()))
    assert {"engine", "k", "level", "interval", "parameters", "diagnostics", "priors", "settings",
            "prob_greater", "omitted_rows"} <= set(out)
    assert out["engine"] == "exact" and out["diagnostics"]["passed"] is True
    assert out["prob_greater"]["0.2"]["mu"] == pytest.approx(exact_fit.prob_greater(0.2)["mu"])


def test_every_plot_draws_into_the_users_axes(exact_fit):
    """Single-panel plots take one Axes, multi-panel plots a sequence of them; each returns the figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8))
    grid = fig.subplots(3, 4)
    assert exact_fit.plot_forest(ax=grid[0, 0]) is fig
    assert exact_fit.plot_funnel(ax=grid[0, 1]) is fig
    assert exact_fit.plot_ppc(ax=grid[0, 2]) is fig
    assert exact_fit.plot_loo_pit(ax=grid[0, 3]) is fig
    assert exact_fit.plot_pareto_k(ax=grid[1, 0]) is fig
    assert exact_fit.plot_densities(ax=grid[1, 1:3]) is fig
    assert exact_fit.plot_ppc_stats(ax=grid[2, :]) is fig
    assert grid[1, 1].get_xlabel() == "mu" and grid[1, 2].get_xlabel() == "tau"
    with pytest.raises(SpecError, match="panels"):
        exact_fit.plot_densities(ax=grid[1, 3])
