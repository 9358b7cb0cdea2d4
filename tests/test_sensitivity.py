"""Prior sensitivity grids: each row must be the exact posterior under that row's prior."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bayes_se.data import load_effects
from bayes_se.errors import SpecError
from bayes_se.exact import exact_posterior
from bayes_se.priors import preset, prior_for
from bayes_se.prior_sensitivity import coefficient_priors, parse_grid_entry, sensitivity
from conftest import REFERENCE

SAME_COMPUTATION_RTOL = 1e-12  # the grid calls the same exact engine: only rounding may differ
LEVEL = 0.95
GRID = [
    "default",
    "vague",
    "rhodes2015_general",
    "rhodes2015_mental_nonpharm_vs_control",
    "rhodes2015_mental_pharm_vs_placebo",
    "rover2021_smd",
    ["tau=half_cauchy(0.5)"],
    "mu=normal(0, 10); tau=half_normal(1)",
    "tau=exponential(2)",
    "tau2=inverse_gamma(1, 0.1)",
    "vague; tau=uniform(0, 5)",
    "mu ~ normal(-0.5, 0.5); tau ~ half_student_t(3, 0.5)",
]


@pytest.fixture(scope="module")
def bcg():
    return load_effects(REFERENCE / "data" / "dat.bcg.csv", moderators=["ablat", "year", "alloc"])


@pytest.fixture(scope="module")
def bcg_grid(bcg):
    return sensitivity(bcg, GRID, smallest_effect=-0.2, level=LEVEL)


def _direct(bcg, label_priors, X=None, names=("intercept",)):
    coef = coefficient_priors(label_priors, names)
    return exact_posterior(bcg.yi, bcg.vi, X, coef_names=list(names) if X is not None else None, study=bcg.study,
                           beta_mean=[p.params["mu"] for p in coef], beta_sd=[p.params["sigma"] for p in coef],
                           tau_prior=label_priors["tau"], level=LEVEL)


def test_bcg_grid_rows_equal_direct_exact_posterior(bcg, bcg_grid):
    table = bcg_grid.table
    assert len(table) == len(GRID)
    assert list(table.columns[:12]) == ["prior", "engine", "mu_mean", "mu_lower", "mu_upper", "tau_mean",
                                        "tau_lower", "tau_upper", "p_positive", "p_gt_smallest", "bf_mu0",
                                        "bf_tau0"]
    assert set(table.engine) == {"exact"}
    for entry, (_, row) in zip(GRID, table.iterrows()):
        post = _direct(bcg, parse_grid_entry(entry)[1])
        lo, hi = post.quantile("mu", [0.025, 0.975])
        tlo, thi = post.quantile("tau", [0.025, 0.975])
        expected = {"mu_mean": post.mean("mu"), "mu_lower": lo, "mu_upper": hi, "tau_mean": post.mean("tau"),
                    "tau_lower": tlo, "tau_upper": thi, "p_positive": post.prob("mu", ">", 0.0),
                    "p_gt_smallest": post.prob("mu", ">", -0.2), "bf_mu0": post.bayes_factor("mu0")}
        for col, value in expected.items():
            assert row[col] == pytest.approx(value, rel=SAME_COMPUTATION_RTOL, abs=1e-300), (row.prior, col)
        # p(y | tau = 0) / p(y) is finite for every proper tau prior, log-t (rhodes2015) included
        assert math.isfinite(row.bf_tau0) and row.bf_tau0 > 0, row.prior
        assert row.bf_tau0 == pytest.approx(post.bayes_factor("tau0"), rel=SAME_COMPUTATION_RTOL, abs=1e-300)
    families = {parse_grid_entry(e)[1]["tau"].family for e in GRID}
    assert "log_t" in families  # the docs' claim is checked on a log-t prior


def test_bcg_default_row_matches_exact_reference(bcg_grid):
    """The default preset is the prior of tests/reference/exact (half-N(0, 0.5), N(0, 1))."""
    import json

    ref = json.loads((REFERENCE / "exact" / "bcg.json").read_text())
    row = bcg_grid.table.set_index("prior").loc["default"]
    summary = ref["summary"]
    mu = summary["mu"] if "mu" in summary else summary[next(k for k in summary if k.startswith("beta"))]
    assert row.mu_mean == pytest.approx(mu["mean"], rel=1e-6)  # the reference stores 10 digits


def test_bcg_meta_regression_grid_has_beta_columns(bcg):
    res = sensitivity(bcg, ["default", "tau=half_cauchy(0.5)"], mods="ablat")
    table = res.table
    assert {"beta[ablat]_mean", "beta[ablat]_lower", "beta[ablat]_upper", "beta[ablat]_p_positive"} <= set(table)
    X, names = bcg.design("ablat")
    post = _direct(bcg, parse_grid_entry("tau=half_cauchy(0.5)")[1], X=X, names=names)
    row = table.iloc[1]
    assert row["beta[ablat]_mean"] == pytest.approx(post.mean("beta[ablat]"), rel=SAME_COMPUTATION_RTOL)
    assert row["mu_mean"] == pytest.approx(post.mean("beta[intercept]"), rel=SAME_COMPUTATION_RTOL)
    assert "p_gt_smallest" not in table


def test_grid_syntax():
    label, pri = parse_grid_entry(" vague ;tau = half_normal(1) ")
    assert label == "vague; tau = half_normal(1)"
    assert pri["mu"] == preset("vague")["mu"]
    assert pri["tau"] == prior_for("tau", "half_normal(1)")
    label, pri = parse_grid_entry(["tau2=inverse_gamma(1, 0.1)", "beta[ablat]=normal(0, 0.1)"])
    assert pri["tau"].target == "tau2" and pri["mu"] == preset("default")["mu"]
    assert coefficient_priors(pri, ["intercept", "ablat", "year"]) == [
        pri["mu"], prior_for("beta[ablat]", "normal(0, 0.1)"), pri["beta"]]


@pytest.mark.parametrize("entry, fragment", [
    ("default; vague", "2 presets"),
    ("defualt", "did you mean 'default'"),
    ("tau=normal(0, 1)", "tau"),
    ("", "empty"),
    (3, "string"),
])
def test_grid_errors_name_the_entry(entry, fragment):
    with pytest.raises(SpecError, match="priors") as err:
        parse_grid_entry(entry)
    assert fragment in str(err.value)


def test_exact_engine_refuses_non_normal_location_prior(bcg):
    with pytest.raises(SpecError, match="needs MCMC"):
        sensitivity(bcg, ["mu=student_t(3, 0, 1)"], engine="exact")
    with pytest.raises(SpecError, match="given twice"):
        sensitivity(bcg, ["default", " default"])
    with pytest.raises(SpecError, match="engine"):
        sensitivity(bcg, ["default"], engine="laplace")


@pytest.mark.mcmc
def test_bcg_student_t_mu_prior_goes_to_mcmc(bcg):
    """A Student-t prior on mu has no exact engine: the row is sampled and lands near the exact
    row of a normal prior with the same scale (a t_30 is close to a normal)."""
    res = sensitivity(bcg, ["default", "mu=student_t(30, 0, 1)"], seed=7,
                      mcmc={"draws": 500, "tune": 500, "chains": 2})
    exact_row, mcmc_row = res.table.iloc[0], res.table.iloc[1]
    assert mcmc_row.engine == "mcmc" and np.isnan(mcmc_row.bf_mu0) and np.isnan(mcmc_row.bf_tau0)
    post = res.fits["default"]
    # 4 posterior SDs / sqrt(~500 effective draws) ~ 0.18 SD: a loose Monte Carlo band
    assert abs(mcmc_row.mu_mean - exact_row.mu_mean) < 0.25 * post.sd("mu")
    assert abs(mcmc_row.tau_mean - exact_row.tau_mean) < 0.25 * post.sd("tau")


# ---------------------------------------------------------------------------------------------
# MCMC grids: one fit, the other entries PSIS-reweighted (Kallioinen et al. 2023)
# ---------------------------------------------------------------------------------------------
RW_MCMC = {"draws": 1000, "tune": 500, "chains": 2}
#: Monte Carlo band: a reweighted estimate is within 4 Monte Carlo standard errors of the exact
#: value (a 4-sigma band fails about once in 16 000 comparisons). MCSE of a mean = posterior SD /
#: sqrt(ESS); of the 2.5% / 97.5% quantile of a near-normal posterior = sqrt(p(1 - p)) / phi(z_p)
#: = 2.67 posterior SDs / sqrt(ESS). ESS is the PSIS one, 1 / sum(w^2), times the relative MCMC
#: efficiency of the parameter's draws (capped at 1, autocorrelation only ever lowers it).
MC_SIGMAS = 4.0
QUANTILE_MCSE_FACTOR = 2.67  # sqrt(0.025 * 0.975) / phi(1.96), normal approximation to mu's posterior
NEAR_GRID = ["default", "tau=half_normal(0.6)", "mu=normal(0, 2)", "mu=normal(0, 2); tau=half_cauchy(0.5)"]
FAR_PRIOR = "mu=normal(3, 0.05)"  # 75 posterior SDs of mu away from the data's answer


@pytest.fixture(scope="module")
def bcg_mcmc_grid(bcg):
    return sensitivity(bcg, NEAR_GRID + [FAR_PRIOR], engine="mcmc", seed=11, mcmc=RW_MCMC)


@pytest.mark.mcmc
def test_bcg_mcmc_grid_reweights_nearby_priors_to_the_exact_answer(bcg, bcg_mcmc_grid):
    import arviz as az

    table = bcg_mcmc_grid.table.set_index("prior")
    assert table.loc["default", "method"] == "mcmc" and np.isnan(table.loc["default", "pareto_k"])
    exact = sensitivity(bcg, NEAR_GRID).table.set_index("prior")
    base = bcg_mcmc_grid.fits["default"].idata.posterior
    n = base.sizes["chain"] * base.sizes["draw"]
    for label in NEAR_GRID[1:]:
        row, ref, fit = table.loc[label], exact.loc[label], bcg_mcmc_grid.fits[label]
        assert row.method == "reweighted" and row.engine == "mcmc" and fit.base_label == "default"
        assert math.isfinite(row.pareto_k) and row.pareto_k <= 0.7, label
        assert fit.weights.sum() == pytest.approx(1.0)
        post = _direct(bcg, bcg_mcmc_grid.priors[label])
        for par, cols in (("mu", ("mu_mean", "mu_lower", "mu_upper")), ("tau", ("tau_mean",))):
            r_eff = min(1.0, float(az.ess(base[par].values)) / n)
            mcse = post.sd(par) / math.sqrt(fit.ess * r_eff)
            for col in cols:
                factor = 1.0 if col.endswith("_mean") else QUANTILE_MCSE_FACTOR
                assert abs(row[col] - ref[col]) < MC_SIGMAS * factor * mcse, (label, col, row[col], ref[col])


@pytest.mark.mcmc
def test_bcg_mcmc_grid_refits_a_far_prior(bcg_mcmc_grid):
    row = bcg_mcmc_grid.table.set_index("prior").loc[FAR_PRIOR]
    assert row.pareto_k > 0.7 and row.method == "mcmc"
    fit = bcg_mcmc_grid.fits[FAR_PRIOR]
    assert fit.idata.posterior.sizes["draw"] == RW_MCMC["draws"]  # its own fit, not the base's
    assert row.mu_mean == pytest.approx(3.0, abs=0.1)  # the prior dominates: N(3, 0.05^2)


def test_reweighting_refuses_a_wider_support_than_the_base(bcg):
    """Draws of a uniform(0, 1) tau prior say nothing about tau > 1, so a half-normal entry after
    it must be sampled (no k-hat tried: NaN)."""
    pytest.importorskip("pymc")
    res = sensitivity(bcg, ["tau=uniform(0, 1)", "tau=half_normal(0.5)", "tau=uniform(0, 0.8)"], engine="mcmc",
                      seed=3, mcmc={"draws": 200, "tune": 200, "chains": 1})
    methods = dict(zip(res.table.prior, res.table.method))
    assert methods["tau=half_normal(0.5)"] == "mcmc"
    assert np.isnan(res.table.pareto_k.iloc[1])
    assert methods["tau=uniform(0, 0.8)"] in ("reweighted", "mcmc") and not np.isnan(res.table.pareto_k.iloc[2])
