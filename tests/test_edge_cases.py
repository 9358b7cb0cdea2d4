"""Numerical edge cases: tau at 0 and very large, k = 2, tiny and huge variances, extreme effects.

Each engine (exact quadrature, every frequentist tau^2 estimator, the MCMC sampler with small
settings) must give the right answer, checked against an analytic limit or an independent
computation, or refuse with our error. Divergences must be reported, never hidden.

Analytic checks used:

* tau -> 0: the posterior of mu is the common-effect normal-normal posterior,
  ``mu | y ~ N((m/s^2 + sum y_i/v_i) / P, 1/P)``, ``P = 1/s^2 + sum 1/v_i``;
* tau -> infinity: no shrinkage, ``E[theta_i | y] -> y_i``;
* k = 2: the exact engine equals brute-force 2-D quadrature over (mu, tau) with ``scipy.integrate``;
* scale equivariance: multiplying y and every prior scale by c and v by c^2 multiplies every
  location/scale summary by c (c = 1e-4 gives v ~ 1e-8, c = 100 gives v ~ 1e4);
* shift equivariance: y + 50 with the prior mean moved by 50 shifts mu's posterior by exactly 50;
* DerSimonian-Laird's closed form at k = 2.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from bayes_se.errors import BayesSEError
from bayes_se.exact import exact_posterior
from bayes_se.frequentist import rma
from bayes_se.priors import parse_prior

FREQ_METHODS = ("EE", "DL", "REML", "ML", "PM", "EB", "SJ", "HS", "HE")
TRUNCATED_AT_ZERO = ("DL", "REML", "ML", "PM", "EB", "HS", "HE")  # estimators that can return tau2 = 0
EXACT_RTOL = 1e-6  # exact engine vs an analytic limit or independent quadrature (issue: 1e-6)
ITERATIVE_RTOL = 1e-5  # iterative tau2 estimators (REML/ML/PM/EB) after rescaling (issue: 1e-5)
CLOSED_FORM_RTOL = 1e-10  # closed forms computed two ways in double precision
TAU_AT_ZERO = 1e-9  # prior scale of tau that pins it at 0: tau^2/v ~ 1e-16, below double precision
SUMMARY_COLS = ["mean", "sd", "q2.5", "q50", "q97.5"]

Y5 = np.array([0.10, 0.35, -0.05, 0.42, 0.20])
V5 = np.array([0.040, 0.025, 0.060, 0.030, 0.050])


def _normal(mu, sigma):
    return parse_prior(f"normal({mu!r}, {sigma!r})")


def _half_normal(sigma):
    return parse_prior(f"half_normal({sigma!r})")


# -- tau at the boundary 0 ----------------------------------------------------------------------


def test_exact_tau_to_zero_is_the_common_effect_posterior():
    post = exact_posterior(Y5, V5, beta_prior=_normal(0.0, 1.0), tau_prior=_half_normal(TAU_AT_ZERO))
    precision = 1.0 + np.sum(1.0 / V5)
    mean = np.sum(Y5 / V5) / precision
    assert post.mean("mu") == pytest.approx(mean, rel=EXACT_RTOL)
    assert post.sd("mu") == pytest.approx(1.0 / math.sqrt(precision), rel=EXACT_RTOL)
    q = post.quantile("mu", [0.025, 0.975])
    np.testing.assert_allclose(q, stats.norm.ppf([0.025, 0.975], mean, 1.0 / math.sqrt(precision)),
                               rtol=EXACT_RTOL)


def test_homogeneous_data_every_estimator():
    """Identical effects: Q = 0, every tau2 estimator gives 0 exactly (SJ too: its start value is
    the sample variance, 0) and the common-effect estimate and standard error."""
    y = np.full(6, 0.3)
    v = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    w = 1.0 / v
    for method in FREQ_METHODS[1:]:
        res = rma(y, v, method=method)
        assert res.tau2 == 0.0, (method, res.tau2)
        assert float(res.beta[0]) == pytest.approx(0.3, rel=CLOSED_FORM_RTOL), method
        assert float(res.se[0]) == pytest.approx(1 / math.sqrt(w.sum()), rel=CLOSED_FORM_RTOL), method
        assert res.I2 == 0.0 and res.H2 == 1.0, method
    post = exact_posterior(y, v)
    assert post.quantile("tau", 0.5) < 0.5 * math.sqrt(np.median(v))  # the posterior piles up near 0
    assert np.isfinite(post.summary().to_numpy()).all()


def test_homogeneous_data_equal_effects_model():
    y = np.full(6, 0.3)
    v = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    res = rma(y, v, method="EE")
    assert float(res.beta[0]) == pytest.approx(0.3, rel=CLOSED_FORM_RTOL)
    assert res.I2 == 0.0


@pytest.mark.mcmc
def test_mcmc_at_tau_zero_matches_exact_or_reports():
    """Homogeneous data put tau at its boundary: NUTS on the marginal model samples it and agrees
    with the exact posterior within Monte Carlo error, or its diagnostics say it failed."""
    from bayes_se.api import fit_random_effects

    y = np.array([0.30, 0.31, 0.29, 0.30, 0.30])
    v = np.array([0.02, 0.03, 0.02, 0.04, 0.03])
    mu_prior, tau_prior = _normal(0.0, 1.0), _half_normal(0.5)
    res = fit_random_effects(y, v, priors={"mu": mu_prior, "tau": tau_prior}, seed=3, draws=500, tune=500,
                             chains=2, cores=1)
    exact = exact_posterior(y, v, beta_prior=mu_prior, tau_prior=tau_prior)
    table = res.summary()
    if not res.diagnostics.passed:
        assert res.diagnostics.problems and "DIAGNOSTICS FAILED" in res.diagnostics.banner()
        return
    for name in ("mu", "tau"):
        draws = res.idata.posterior[name].values.ravel()
        mcse = np.std(draws) / math.sqrt(table.loc[name, "ess_bulk"])
        assert abs(draws.mean() - exact.mean(name)) < 4 * mcse, name  # 4 MCSE: false alarm ~6e-5


# -- very large tau -------------------------------------------------------------------------------


def test_large_tau_no_shrinkage_and_finite():
    y = np.array([-50.0, 48.0, -20.0, 35.0, 5.0, -44.0])
    v = np.full(6, 0.01)
    post = exact_posterior(y, v, beta_prior=_normal(0.0, 100.0), tau_prior=parse_prior("half_cauchy(10)"))
    table = post.summary()
    assert np.isfinite(table.to_numpy()).all()
    assert 15 < post.quantile("tau", 0.5) < 80  # of the order of sd(y) = 40
    for i, yi in enumerate(y):
        # E[theta_i | tau] = y_i - v/(v + tau^2) (y_i - mu): shrinkage below 1e-4 here
        assert table.loc[f"theta[{i + 1}]", "mean"] == pytest.approx(yi, abs=1e-3)
    for method in FREQ_METHODS:
        res = rma(y, v, method=method)
        assert np.isfinite([res.beta[0], res.se[0], res.tau2]).all(), method
        if method != "EE":
            assert res.tau2 == pytest.approx(np.var(y, ddof=1), rel=0.5), method


# -- k = 2 ------------------------------------------------------------------------------------------


def _brute_force_k2(y, v, mu_sd, tau_sd):
    """log p(y), E[mu | y], E[tau | y] by adaptive 2-D quadrature (scipy.integrate.dblquad) of
    N(mu | 0, mu_sd) HalfN(tau | tau_sd) prod_i N(y_i | mu, v_i + tau^2), written with math.*
    (scipy.stats per point would make this test take a minute)."""
    (y1, y2), (v1, v2) = y, v
    c = math.log(2.0) - 2.0 * math.log(2.0 * math.pi) - math.log(mu_sd * tau_sd)  # 1/sqrt(2 pi)^4

    def joint(mu, tau):
        t2 = tau * tau
        s1, s2 = v1 + t2, v2 + t2
        return math.exp(c - 0.5 * (mu / mu_sd) ** 2 - 0.5 * (tau / tau_sd) ** 2
                        - 0.5 * (math.log(s1) + math.log(s2)) - 0.5 * ((y1 - mu) ** 2 / s1 + (y2 - mu) ** 2 / s2))

    opts = dict(epsabs=0.0, epsrel=1e-10)
    box = (0.0, 12.0 * tau_sd, -12.0 * mu_sd, 12.0 * mu_sd)  # prior mass outside: < e^-70
    z = integrate.dblquad(lambda mu, tau: joint(mu, tau), *box, **opts)[0]
    e_mu = integrate.dblquad(lambda mu, tau: mu * joint(mu, tau), *box, **opts)[0] / z
    e_tau = integrate.dblquad(lambda mu, tau: tau * joint(mu, tau), *box, **opts)[0] / z
    return math.log(z), e_mu, e_tau


def test_k2_exact_equals_brute_force_quadrature():
    y, v = np.array([0.55, -0.10]), np.array([0.05, 0.08])
    post = exact_posterior(y, v, beta_prior=_normal(0.0, 1.0), tau_prior=_half_normal(0.5))
    log_z, e_mu, e_tau = _brute_force_k2(y, v, 1.0, 0.5)
    assert post.log_marginal_likelihood == pytest.approx(log_z, rel=EXACT_RTOL)
    assert post.mean("mu") == pytest.approx(e_mu, rel=EXACT_RTOL)
    assert post.mean("tau") == pytest.approx(e_tau, rel=EXACT_RTOL)


def test_k2_frequentist_dl_closed_form_and_all_methods_finite():
    y, v = np.array([0.55, -0.10]), np.array([0.05, 0.08])
    w = 1.0 / v
    ybar = np.sum(w * y) / w.sum()
    q = np.sum(w * (y - ybar) ** 2)
    tau2_dl = max(0.0, (q - 1.0) / (w.sum() - np.sum(w**2) / w.sum()))
    assert rma(y, v, method="DL").tau2 == pytest.approx(tau2_dl, rel=CLOSED_FORM_RTOL)
    for method in FREQ_METHODS:
        for test in ("z", "knha"):
            res = rma(y, v, method=method, test=test)
            assert np.isfinite([res.beta[0], res.se[0], res.ci_lower[0], res.ci_upper[0]]).all(), (method, test)
            assert res.tau2 >= 0.0
    assert rma(y, v, method="REML", test="knha").df == 1  # t with k - 1 = 1 df: a very wide interval


# -- tiny and huge variances: scale equivariance -----------------------------------------------------


@pytest.mark.parametrize("c", [1e-4, 1e2], ids=["vi~1e-8", "vi~1e4"])
def test_exact_scale_equivariance(c):
    base = exact_posterior(Y5, V5, beta_prior=_normal(0.0, 1.0), tau_prior=_half_normal(0.5))
    scaled = exact_posterior(c * Y5, c * c * V5, beta_prior=_normal(0.0, c), tau_prior=_half_normal(0.5 * c))
    a, b = base.summary(), scaled.summary()
    for name in ["mu", "tau", "pred"] + [f"theta[{i}]" for i in range(1, 6)]:
        np.testing.assert_allclose(b.loc[name, SUMMARY_COLS].to_numpy(dtype=float),
                                   c * a.loc[name, SUMMARY_COLS].to_numpy(dtype=float), rtol=EXACT_RTOL,
                                   err_msg=name)
    # log p(c y) = log p(y) - k log c (a density in y scales by 1/c per study)
    assert scaled.log_marginal_likelihood == pytest.approx(base.log_marginal_likelihood - 5 * math.log(c),
                                                           rel=EXACT_RTOL)


@pytest.mark.parametrize("c", [1e-4, 1e2], ids=["vi~1e-8", "vi~1e4"])
@pytest.mark.parametrize("method", FREQ_METHODS)
def test_frequentist_scale_equivariance(method, c):
    a, b = rma(Y5, V5, method=method), rma(c * Y5, c * c * V5, method=method)
    rtol = CLOSED_FORM_RTOL if method in ("EE", "DL", "HS", "HE", "SJ") else ITERATIVE_RTOL
    assert float(b.beta[0]) == pytest.approx(c * float(a.beta[0]), rel=rtol)
    assert float(b.se[0]) == pytest.approx(c * float(a.se[0]), rel=rtol)
    assert b.tau2 == pytest.approx(c * c * a.tau2, rel=rtol, abs=1e-12 * c * c)
    assert b.I2 == pytest.approx(a.I2, rel=rtol, abs=1e-9)


def test_mixed_tiny_and_huge_variances():
    """One study with v = 1e-8 among studies with v = 1e4: finite answers; the common-effect
    estimate is that study's effect, and the exact posterior of its theta is pinned to it."""
    y = np.array([0.25, 3.0, -2.0, 1.0])
    v = np.array([1e-8, 1e4, 1e4, 1e4])
    ee = rma(y, v, method="EE")
    assert float(ee.beta[0]) == pytest.approx(np.sum(y / v) / np.sum(1 / v), rel=CLOSED_FORM_RTOL)
    for method in FREQ_METHODS:
        res = rma(y, v, method=method)
        assert np.isfinite([res.beta[0], res.se[0], res.tau2]).all(), method
    post = exact_posterior(y, v)
    assert np.isfinite(post.summary().to_numpy()).all()
    assert post.mean("theta[1]") == pytest.approx(0.25, abs=1e-3)
    assert post.sd("theta[1]") == pytest.approx(1e-4, rel=1e-3)


# -- extreme effects ----------------------------------------------------------------------------------


def test_exact_shift_equivariance_at_y_50():
    base = exact_posterior(Y5, V5, beta_prior=_normal(0.0, 1.0), tau_prior=_half_normal(0.5))
    far = exact_posterior(Y5 + 50.0, V5, beta_prior=_normal(50.0, 1.0), tau_prior=_half_normal(0.5))
    for q in (0.025, 0.5, 0.975):
        assert far.quantile("mu", q) - 50.0 == pytest.approx(base.quantile("mu", q), abs=1e-9)
    assert far.mean("tau") == pytest.approx(base.mean("tau"), rel=EXACT_RTOL)
    assert far.log_marginal_likelihood == pytest.approx(base.log_marginal_likelihood, rel=EXACT_RTOL)


def test_prior_data_conflict_at_y_50_is_finite():
    """Effects near 50 under the default N(0, 1) prior on mu: a strong conflict, but the posterior
    is a proper, finite compromise (mu between the prior and the data; tau large)."""
    y = np.array([49.0, 51.0, 50.5, 48.5])
    v = np.full(4, 0.05)
    post = exact_posterior(y, v)
    assert np.isfinite(post.summary().to_numpy()).all()
    assert 0.0 < post.mean("mu") < 50.0
    for method in FREQ_METHODS:
        res = rma(y, v, method=method)
        assert float(res.beta[0]) == pytest.approx(np.mean(y), rel=0.01), method


# -- vague and degenerate priors ------------------------------------------------------------------------


def test_exact_very_vague_prior_approaches_flat():
    flat = exact_posterior(Y5, V5, beta_sd=np.inf)
    vague = exact_posterior(Y5, V5, beta_prior=_normal(0.0, 1e200))
    assert vague.mean("mu") == pytest.approx(flat.mean("mu"), rel=EXACT_RTOL)


def test_subnormal_prior_scale_is_refused_by_name():
    with pytest.raises(BayesSEError, match="sigma"):
        exact_posterior(Y5, V5, beta_prior=_normal(0.0, 1e-320))


# -- divergences are reported ---------------------------------------------------------------------------


@pytest.mark.mcmc
def test_divergences_are_reported_not_hidden():
    """A log density with a cliff (a drop of 2000 nats at x[0] = 0.5) makes NUTS diverge at any
    target_accept; the fit's diagnostics count the divergences, to_dict() carries them and the
    printed summary starts with the failure banner."""
    import pymc as pm
    import pytensor.tensor as pt

    from bayes_se.results import BayesianFit
    from bayes_se.sampling import REFIT_TARGET_ACCEPT, sample

    with pm.Model() as cliff:
        x = pm.Normal("x", 0.0, 1.0, shape=2)
        pm.Potential("cliff", pt.switch(x[0] > 0.5, -2000.0, 0.0))
    idata = sample(cliff, draws=100, tune=100, chains=2, cores=1, target_accept=REFIT_TARGET_ACCEPT, seed=2)
    res = BayesianFit(idata=idata, settings={"model": "cliff"})
    n_div = int(idata.sample_stats["diverging"].sum())
    assert n_div > 0
    assert res.diagnostics.to_dict()["divergences"] == n_div
    assert not res.diagnostics.passed
    assert any("diverg" in p for p in res.diagnostics.problems)
    text = res.print_summary()
    assert text.startswith("!! DIAGNOSTICS FAILED")
    assert f"divergences {n_div}" in text
