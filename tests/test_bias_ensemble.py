"""Bayesian selection models, bridge sampling and the RoBMA-style ensemble (issue 14, items 3-6).

References are independent computations: the selection likelihood integrates to 1 (quadrature over
y); its PyTensor twin equals the NumPy one; bridge sampling is checked on a normal target with a
known normaliser, on the fixed-effect model (closed form) and on the random-effects model against
the exact quadrature of :mod:`bayes_se.exact`; the PET/PEESE quadrature against SciPy's adaptive
``quad`` over the coefficient on its own axis.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, stats

import bayes_se as bse
from bayes_se.bayes_selection import BiasPriors, fit_selection_model, selection_log_posterior
from bayes_se.bias_averaging import (bias_ensemble, default_prior_probs, normal_family,
                                    regression_bias_family)
from bayes_se.bias_simulation import pet_peese_wls, selection_sbc, simulate_selected
from bayes_se.bridge import bridge_sampling
from bayes_se.errors import SpecError
from bayes_se.exact import exact_posterior
from bayes_se.selection_likelihood import (ROBMA_WEIGHT_FUNCTIONS, WeightFunction, log_likelihood,
                                           pt_log_likelihood, interval_index)


def _data(k=40, seed=1, mu=0.2, tau=0.1):
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.05, 0.4, k)
    return rng.normal(mu, np.sqrt(se ** 2 + tau ** 2)), se


@pytest.mark.parametrize("wf", ROBMA_WEIGHT_FUNCTIONS, ids=lambda w: w.name)
def test_selection_likelihood_is_a_density(wf):
    rng = np.random.default_rng(3)
    eta = rng.dirichlet(np.ones(wf.n_intervals))
    omega = np.flip(np.cumsum(np.flip(eta)))
    se, mu, tau = 0.2, 0.15, 0.12
    # integrate over y piecewise between the cut-offs (the density jumps there)
    cuts = np.sort(np.concatenate([se * wf.z_cuts(), -se * wf.z_cuts() if wf.side == "two" else []]))
    edges = np.concatenate([[-5.0], cuts, [5.0]])
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        total += integrate.quad(lambda t: math.exp(log_likelihood([t], [se], mu, tau, omega, wf)[0, 0]),
                                lo, hi, epsabs=1e-13, epsrel=1e-11)[0]
    assert total == pytest.approx(1.0, abs=1e-9)


def test_selection_likelihood_reduces_to_normal_with_unit_weights():
    y, se = _data()
    wf = ROBMA_WEIGHT_FUNCTIONS[5]
    ll = log_likelihood(y, se, 0.1, 0.2, np.ones(wf.n_intervals), wf)[0]
    assert np.allclose(ll, stats.norm(0.1, np.sqrt(se ** 2 + 0.04)).logpdf(y), rtol=0, atol=1e-12)


@pytest.mark.parametrize("wf", [ROBMA_WEIGHT_FUNCTIONS[1]], ids=lambda w: w.name)
def test_pytensor_twin_equals_numpy(wf):
    import pytensor
    import pytensor.tensor as pt

    y, se = _data(k=25)
    mu, tau = pt.dscalar("mu"), pt.dscalar("tau")
    omega = pt.dvector("omega")
    out = pt_log_likelihood(pt.as_tensor(y), pt.as_tensor(se), pt.as_tensor(interval_index(y, se, wf)),
                            mu, tau, omega, wf)
    f = pytensor.function([mu, tau, omega], out, mode="FAST_COMPILE")
    om = np.linspace(1.0, 0.3, wf.n_intervals)
    assert np.allclose(f(0.05, 0.3, om), log_likelihood(y, se, 0.05, 0.3, om, wf)[0], rtol=1e-12, atol=1e-12)


def test_bridge_on_a_known_normaliser():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 3))
    S = A @ A.T + np.eye(3)
    m = rng.normal(size=3)
    target = stats.multivariate_normal(m, S)
    res = bridge_sampling(lambda t: target.logpdf(t) - 7.5, rng.multivariate_normal(m, S, 4000), chains=2, rng=1)
    assert res.log_ml == pytest.approx(-7.5, abs=0.01)
    assert 0 < res.error < 0.01  # its own error estimate: a normal proposal fits a normal target


@pytest.mark.parametrize("effect,heterogeneity", [(True, True), (False, True), (True, False)])
def test_bridge_agrees_with_exact_quadrature(effect, heterogeneity):
    """Normal RE (exact engine), mu = 0 (its exact BF) and fixed effect (closed form)."""
    y, se = _data(k=40)
    priors = BiasPriors()
    fam = normal_family(y, se ** 2, priors)
    fit = fit_selection_model(y, se, None, effect=effect, heterogeneity=heterogeneity, priors=priors,
                              draws=1000, chains=4, seed=5)
    assert fit.bridge.log_ml == pytest.approx(fam[(effect, heterogeneity)]["log_ml"], abs=0.05)
    assert fit.bridge.error < 0.05
    assert fit.diagnostics["r_hat_max"] < 1.01


def test_closed_forms_agree_with_the_exact_engine():
    y, se = _data(k=30)
    priors = BiasPriors()
    fam = normal_family(y, se ** 2, priors)
    E = exact_posterior(y, se ** 2, beta_mean=0.0, beta_sd=1.0, tau_prior=priors.tau_logpdf)
    assert fam[(True, False)]["log_ml"] == pytest.approx(E.log_marginal_likelihood + E.log_bayes_factor("tau0"),
                                                        abs=1e-9)
    # mu = 0 with heterogeneity: the exact BF against a direct quadrature over tau
    f = lambda t: math.exp(np.sum(stats.norm(0, np.sqrt(se ** 2 + t * t)).logpdf(y))  # noqa: E731
                           + priors.tau_logpdf(np.array([t]))[0] + 60.0)
    direct = math.log(integrate.quad(f, 0, 5, points=[0.05, 0.1, 0.2, 0.5], limit=200)[0]) - 60.0
    assert fam[(False, True)]["log_ml"] == pytest.approx(direct, abs=1e-6)
    assert fam[(False, False)]["log_ml"] == pytest.approx(np.sum(stats.norm(0, se).logpdf(y)), abs=1e-9)


@pytest.mark.parametrize("variant", [(True, False),
                                     pytest.param((False, False), marks=pytest.mark.slow),
                                     pytest.param((True, True), marks=pytest.mark.slow)])
def test_pet_quadrature_against_scipy_quad(variant):
    y, se = _data(k=15, seed=4, mu=0.3)
    priors = BiasPriors()
    fam = regression_bias_family(y, se ** 2, se, 1.0, priors, variants=(variant,))
    half_cauchy = stats.halfcauchy(scale=1.0)

    def integrand(b):
        lml = normal_family(y - b * se, se ** 2, priors)[variant]["log_ml"]
        return math.exp(lml + half_cauchy.logpdf(b) - fam[variant]["log_ml"])

    direct = integrate.quad(integrand, 0, np.inf, epsrel=1e-8, limit=200)[0]
    assert math.log(direct) == pytest.approx(0.0, abs=1e-5)
    assert fam[variant]["quad_error"] < 1e-3


def test_selection_fit_diagnostics_and_reproducible():
    y, se = _data(k=30)
    wf = ROBMA_WEIGHT_FUNCTIONS[2]
    a = fit_selection_model(y, se, wf, draws=300, chains=4, seed=11)
    b = fit_selection_model(y, se, wf, draws=300, chains=4, seed=11)
    assert np.array_equal(a.draws("mu"), b.draws("mu"))
    assert a.bridge.log_ml == b.bridge.log_ml
    assert {"r_hat_max", "ess_bulk_min", "divergences", "acceptance"} <= set(a.diagnostics)
    tab = a.summary()
    assert list(tab.index) == ["mu", "tau", "omega[1]"]
    assert tab.loc["mu", "r_hat"] < 1.05 and set(a.idata.posterior.data_vars) == {"mu", "tau", "omega"}
    assert (a.draws("omega")[:, 0] == 1).all() and (a.draws("omega")[:, 1] <= 1).all()


def test_log_posterior_has_jacobian():
    """exp(log posterior) on (mu, log tau) integrates to the exact marginal likelihood (2-D quadrature)."""
    y, se = _data(k=10)
    post = selection_log_posterior(y, se, None)
    exact = normal_family(y, se ** 2, BiasPriors())[(True, True)]["log_ml"]
    mu = np.linspace(-1.5, 2.0, 401)
    lt = np.linspace(-8.0, 2.5, 401)
    M, L = np.meshgrid(mu, lt, indexing="ij")
    lp = post(np.column_stack([M.ravel(), L.ravel()])).reshape(M.shape)
    val = np.log(np.trapezoid(np.trapezoid(np.exp(lp - lp.max()), lt, axis=1), mu)) + lp.max()
    assert val == pytest.approx(exact, abs=1e-4)


@pytest.fixture(scope="module")
def small_ensemble():
    y, se = _data(k=20, mu=0.3)
    return bias_ensemble(y, se ** 2, weight_functions=ROBMA_WEIGHT_FUNCTIONS[2:3], draws=400, seed=3)


def test_ensemble_to_dict_and_probabilities(small_ensemble):
    ens = small_ensemble
    d = json.loads(json.dumps(ens.to_dict()))
    assert set(d) >= {"mu", "tau", "inclusion_bf", "models"}
    assert set(d["mu"]) == {"mean", "lower", "upper"} == set(d["tau"])
    assert set(d["inclusion_bf"]) == {"effect", "heterogeneity", "bias"}
    assert len(d["models"]) == 16
    row = d["models"][0]
    assert {"name", "prior_prob", "posterior_prob", "log_ml", "log_ml_error", "method"} <= set(row)
    assert {r["method"] for r in d["models"]} == {"exact", "bridge"}
    m = ens.models
    assert m["prior_prob"].sum() == pytest.approx(1.0)
    assert m["posterior_prob"].sum() == pytest.approx(1.0)
    # RoBMA's prior: no bias 1/2; here one weight function gets the selection share 1/2 of bias
    assert m.loc[m["bias"] == "none", "prior_prob"].sum() == pytest.approx(0.5)
    assert m.loc[m["bias"] == "PET", "prior_prob"].sum() == pytest.approx(0.125)
    # inclusion BF = posterior odds / prior odds
    post_eff = m.loc[m["effect"], "posterior_prob"].sum()
    assert d["inclusion_bf"]["effect"] == pytest.approx(post_eff / (1 - post_eff), rel=1e-6)
    # the averaged mean is the probability-weighted mean of the models' means (Monte Carlo)
    means = np.array([ens.model_draws[n]["mu"].mean() for n in m["name"]])
    assert d["mu"]["mean"] == pytest.approx(float(m["posterior_prob"] @ means), abs=0.02)
    assert "effect" in ens.summary().index


def test_ensemble_prior_probs_changeable_and_checked():
    y, se = _data(k=15)
    ens = bias_ensemble(y, se ** 2, prior_probs={"bias": 0.0, "heterogeneity": 1.0}, draws=200, seed=1)
    assert list(ens.models["bias"].unique()) == ["none"] and ens.models["heterogeneity"].all()
    assert math.isnan(ens.inclusion_bf["bias"]) and math.isnan(ens.inclusion_bf["heterogeneity"])
    with pytest.raises(SpecError) as e:
        bias_ensemble(y, se ** 2, prior_probs={"effekt": 0.5})
    assert e.value.key == "prior_probs"
    with pytest.raises(SpecError) as e:
        bias_ensemble(y, se ** 2, prior_probs={"bias_weights": {"PETT": 1}})
    assert e.value.key == "prior_probs.bias_weights"
    with pytest.raises(SpecError):
        bias_ensemble(y, se ** 2, prior_probs={"effect": 1.5})
    with pytest.raises(SpecError) as e:
        bias_ensemble(y, se ** 2, draws=10)
    assert e.value.key == "draws"
    w = default_prior_probs()["bias_weights"]
    assert sum(w.values()) == pytest.approx(1.0) and w["PET"] == 0.25


def test_lazy_exports():
    assert bse.bias_ensemble is bias_ensemble
    assert bse.fit_selection_model is fit_selection_model


def test_pet_peese_wls_matches_lm():
    y, se = _data(k=20, seed=2)
    res = pet_peese_wls(y, se)
    X = np.column_stack([np.ones_like(se), se if res["model"] == "PET" else se ** 2])
    W = np.diag(1 / se ** 2)
    beta = np.linalg.solve(X.T @ W @ X, X.T @ W @ y)
    assert res["estimate"] == pytest.approx(beta[0], rel=1e-10)


def test_plot_ensemble(small_ensemble):
    fig = small_ensemble.plot_ensemble()
    assert len(fig.axes) == 1
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "model-averaged" in labels and len(labels) == 9  # 8 effect models and the average


@pytest.mark.slow
def test_selection_model_recovers_known_selection():
    wf = WeightFunction("one", (0.05,))
    rng = np.random.default_rng(42)
    y, se = simulate_selected(300, 0.1, 0.1, wf, (1.0, 0.25), rng)
    fit = fit_selection_model(y, se, wf, draws=1000, chains=4, seed=1)
    om = fit.draws("omega")[:, 1]
    mu = fit.draws("mu")
    lo, hi = np.quantile(om, [0.005, 0.995])
    assert lo < 0.25 < hi and hi < 0.6  # clearly below 1: selection detected
    assert np.quantile(mu, 0.005) < 0.1 < np.quantile(mu, 0.995)
    naive = np.average(y, weights=1 / (se ** 2 + 0.01))
    assert naive > np.quantile(mu, 0.995)  # the unadjusted average is biased upwards


@pytest.mark.slow
def test_bridge_with_pymc_draws_agrees_with_exact():
    y, se = _data(k=40)
    exact = normal_family(y, se ** 2, BiasPriors())[(True, True)]["log_ml"]
    fit = fit_selection_model(y, se, None, draws=1000, tune=500, chains=2, seed=3, sampler="pymc")
    assert fit.diagnostics["divergences"] == 0
    assert fit.bridge.log_ml == pytest.approx(exact, abs=0.05)
    # the compiled model is reused for a variant (pm.Data flags): fixed effect, closed form
    fe = fit_selection_model(y, se, None, heterogeneity=False, draws=1000, tune=500, chains=2, seed=3,
                             sampler="pymc")
    assert fe.bridge.log_ml == pytest.approx(normal_family(y, se ** 2, BiasPriors())[(True, False)]["log_ml"],
                                             abs=0.05)


@pytest.mark.slow
def test_pymc_and_numpy_samplers_agree_on_a_selection_model():
    y, se = _data(k=40)
    wf = ROBMA_WEIGHT_FUNCTIONS[2]
    a = fit_selection_model(y, se, wf, draws=1000, tune=500, chains=2, seed=3, sampler="pymc")
    b = fit_selection_model(y, se, wf, draws=1000, chains=4, seed=3)
    assert a.bridge.log_ml == pytest.approx(b.bridge.log_ml, abs=0.05)
    assert a.draws("mu").mean() == pytest.approx(b.draws("mu").mean(), abs=0.02)


@pytest.mark.slow
def test_sbc_selection_model():
    from bayes_se.sbc import uniformity_pvalue

    ranks = selection_sbc(100, k=30, seed=2)
    for name in ("mu", "tau", "omega[1]"):
        assert uniformity_pvalue(ranks[name], 99) > 0.001, name


@pytest.mark.parametrize("name", ["hackshaw1998", "bangertdrowns2004"])
def test_selection_likelihood_matches_metafor_loglik(name):
    """metafor 3.8's selmodel(type = "stepfun") log-likelihood at its ML estimates
    (tests/reference/bias_ensemble/selmodel_loglik.R)."""
    import pathlib

    ref = json.loads((pathlib.Path(__file__).parent / "reference" / "bias_ensemble" / "selmodel_loglik.json")
                     .read_text())[name]
    y = np.array(ref["yi"], float)
    se = np.sqrt(np.array(ref["vi"], float))
    steps = [s for s in ref["steps"] if s < 1]
    wf = WeightFunction("one", tuple(steps))
    delta = np.atleast_1d(np.array(ref["delta"], float))
    ll = log_likelihood(y, se, float(ref["beta"]), math.sqrt(float(ref["tau2"])), delta, wf).sum()
    assert ll == pytest.approx(float(ref["logLik"]), abs=1e-6)
