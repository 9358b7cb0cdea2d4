"""Improper flat priors in the exact engine (issue 12): ``mu=flat()``, ``tau=flat()``, ``beta[NAME]=flat()``.

The posterior is checked against an independent brute-force integration with scipy.integrate:
``p(tau | y)`` up to a constant is ``int prod_i N(y_i; mu, v_i + tau^2) p(mu) dmu`` (an inner
``quad`` over mu, not the engine's closed form), normalised by an outer ``quad`` over (0, inf).
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import integrate

import bayes_se
from bayes_se import cli
from bayes_se.errors import SpecError
from bayes_se.exact import exact_posterior
from bayes_se.priors import parse_assignment, prior_for

QUAD_RTOL = 1e-6  # the bound
EPSREL = 1e-11  # scipy.integrate.quad's target: far below QUAD_RTOL

Y = np.array([0.10, 0.40, 0.30, 0.20, 0.50, 0.80, -0.10])
V = np.array([0.02, 0.03, 0.05, 0.04, 0.03, 0.06, 0.05])
FLAT_MU, FLAT_TAU = prior_for("mu", "flat()"), prior_for("tau", "flat()")


def _brute(y, v, log_mu_prior, log_tau_prior, mu_prior_sd=math.inf):
    """Posterior moments of mu and tau and P(tau <= 0.2) by nested scipy.integrate.quad (mu's
    range: 40 sds of its likelihood or of its prior, whichever is narrower, about the data's mean)."""
    log_2pi = math.log(2 * math.pi)

    def loglik(mu, tau):
        s2 = v + tau * tau
        return -0.5 * float(np.sum(log_2pi + np.log(s2) + (y - mu) ** 2 / s2)) + log_mu_prior(mu)

    shift = loglik(float(np.average(y, weights=1 / v)), 0.1)
    centre = float(np.mean(y))

    def inner(tau, power):
        half = 40.0 * min(math.sqrt(float(np.max(v)) + tau * tau), mu_prior_sd)  # mu's mass, with room
        val = integrate.quad(lambda mu: mu**power * math.exp(loglik(mu, tau) - shift), centre - half,
                             centre + half, points=[centre], epsabs=0, epsrel=EPSREL, limit=400)[0]
        return val * math.exp(log_tau_prior(tau))

    def outer(f, a=0.0, b=np.inf):
        return integrate.quad(f, a, b, epsabs=0, epsrel=EPSREL, limit=400)[0]

    with warnings.catch_warnings():  # far out in tau the integrand underflows: its rel. error is moot
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        z = outer(lambda t: inner(t, 0))
        e_tau = outer(lambda t: t * inner(t, 0)) / z
        e_tau2 = outer(lambda t: t * t * inner(t, 0)) / z
        e_mu = outer(lambda t: inner(t, 1)) / z
        e_mu2 = outer(lambda t: inner(t, 2)) / z
        p_tau = outer(lambda t: inner(t, 0), 0.0, 0.2) / z
    return {"tau_mean": e_tau, "tau_sd": math.sqrt(max(e_tau2 - e_tau**2, 0.0)), "mu_mean": e_mu,
            "mu_sd": math.sqrt(max(e_mu2 - e_mu**2, 0.0)), "p_tau_0.2": p_tau}


def _engine(post):
    return {"tau_mean": post.mean("tau"), "tau_sd": post.sd("tau"), "mu_mean": post.mean("mu"),
            "mu_sd": post.sd("mu"), "p_tau_0.2": float(post.cdf("tau", 0.2))}


def _check(got, want):
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=QUAD_RTOL), key


def test_flat_mu_and_flat_tau_match_brute_force_integration():
    post = exact_posterior(Y, V, beta_prior=FLAT_MU, tau_prior=FLAT_TAU)
    _check(_engine(post), _brute(Y, V, lambda mu: 0.0, lambda tau: 0.0))


def test_flat_tau_with_a_normal_mu_matches_brute_force_integration():
    post = exact_posterior(Y, V, beta_prior=prior_for("mu", "normal(0, 1)"), tau_prior=FLAT_TAU)
    _check(_engine(post), _brute(Y, V, lambda mu: -0.5 * mu * mu - 0.5 * math.log(2 * math.pi), lambda tau: 0.0,
                                 mu_prior_sd=1.0))


def test_flat_mu_with_a_half_normal_tau_matches_brute_force_integration():
    post = exact_posterior(Y[:4], V[:4], beta_prior=FLAT_MU, tau_prior=prior_for("tau", "half_normal(0.5)"))
    log_half_normal = math.log(2.0) - 0.5 * math.log(2 * math.pi) - math.log(0.5)
    _check(_engine(post), _brute(Y[:4], V[:4], lambda mu: 0.0, lambda tau: log_half_normal - 2.0 * tau * tau))


def test_flat_tau_moments_that_do_not_exist_are_inf():
    """k - p_flat = 3: p(tau | y) ~ tau^-3, so E[tau] is finite, E[tau^2] (tau's sd, mu's sd) is not."""
    post = exact_posterior(Y[:4], V[:4], beta_prior=FLAT_MU, tau_prior=FLAT_TAU)
    assert math.isfinite(post.mean("tau")) and post.sd("tau") == math.inf
    assert post.mean("tau2") == math.inf and post.sd("mu") == math.inf and post.sd("pred") == math.inf
    assert math.isfinite(post.mean("mu")) and math.isfinite(post.sd("theta[1]"))
    q = post.quantile("mu", [0.025, 0.5, 0.975])
    np.testing.assert_allclose(post.cdf("mu", q), [0.025, 0.5, 0.975], rtol=1e-9)
    assert post.mean("tau") == pytest.approx(_brute_tau_mean(Y[:4], V[:4]), rel=QUAD_RTOL)


def _brute_tau_mean(y, v):
    """E[tau | y] alone (E[tau^2] diverges here, so _brute's other integrals do not apply)."""
    log_2pi = math.log(2 * math.pi)
    centre = float(np.mean(y))

    def p_tau(tau):
        def f(mu):
            s2 = v + tau * tau
            return math.exp(-0.5 * float(np.sum(log_2pi + np.log(s2) + (y - mu) ** 2 / s2)))
        half = 40.0 * math.sqrt(float(np.max(v)) + tau * tau)
        return integrate.quad(f, centre - half, centre + half, points=[centre], epsabs=0, epsrel=EPSREL,
                              limit=400)[0]

    z = integrate.quad(p_tau, 0, np.inf, epsabs=0, epsrel=EPSREL, limit=400)[0]
    return integrate.quad(lambda t: t * p_tau(t), 0, np.inf, epsabs=0, epsrel=EPSREL, limit=400)[0] / z


def test_flat_tau_improper_posterior_is_refused():
    with pytest.raises(SpecError, match="improper posterior") as info:
        exact_posterior(Y[:2], V[:2], beta_prior=FLAT_MU, tau_prior=FLAT_TAU)
    assert info.value.key == "priors.tau" and "at least 3 effects" in str(info.value)
    X = np.column_stack([np.ones(3), [0.0, 1.0, 2.0]])
    with pytest.raises(SpecError, match="improper posterior"):
        exact_posterior(Y[:3], V[:3], X=X, beta_prior=[FLAT_MU, prior_for("beta[x]", "flat()")],
                        tau_prior=FLAT_TAU)
    exact_posterior(Y[:3], V[:3], beta_prior=FLAT_MU, tau_prior=FLAT_TAU)  # k - p_flat = 2: proper


def test_flat_priors_leave_marginal_likelihood_and_bayes_factors_undefined():
    post = exact_posterior(Y, V, beta_prior=FLAT_MU, tau_prior=FLAT_TAU)
    assert math.isnan(post.log_marginal_likelihood)
    assert math.isnan(post.bayes_factor("tau0")) and math.isnan(post.bayes_factor("mu0"))
    proper_mu = exact_posterior(Y, V, tau_prior=FLAT_TAU)
    assert math.isnan(proper_mu.bayes_factor("tau0"))
    # tau's flat prior is common to both models of mu = 0: its constant cancels, BF01(mu0) is defined
    assert math.isfinite(proper_mu.log_bayes_factor("mu0"))


def test_flat_beta_in_a_meta_regression(tmp_path):
    x = np.array([1.0, 2.0, 0.0, 1.0, 3.0, 2.0, 0.0])
    data = bayes_se.EffectData.from_arrays(Y, V, x=x)
    fit = bayes_se.fit(data, engine="exact", mods="x", priors=["beta[x]=flat()", "tau=flat()"])
    vague = bayes_se.fit(data, engine="exact", mods="x", priors=["beta[x]=normal(0, 1e7)", "tau=flat()"])
    for name in ("beta[x]", "tau"):
        assert fit.posterior.mean(name) == pytest.approx(vague.posterior.mean(name), rel=1e-6)
    assert math.isnan(fit.log_marginal_likelihood)


def test_flat_prior_grammar():
    for text, param, printed in (("mu=flat()", "mu", "mu ~ Flat()"), ("tau = flat()", "tau", "tau ~ Flat()"),
                                 ("beta[x]=flat()", "beta[x]", "beta[x] ~ Flat()")):
        name, prior = parse_assignment(text)
        assert name == param and str(prior) == printed and prior.improper and prior.spec_text() == "flat()"
        assert parse_assignment(str(prior))[1] == prior
    for text in ("tau2=flat()", "sigma_cluster=flat()", "nu=flat()"):
        with pytest.raises(SpecError, match="flat"):
            parse_assignment(text)
    with pytest.raises(SpecError, match="0 argument"):
        parse_assignment("mu=flat(1)")
    with pytest.raises(SpecError, match="improper"):
        FLAT_MU.mean_sd()


def test_mcmc_refuses_flat_priors_before_sampling():
    data = bayes_se.EffectData.from_arrays(Y, V)
    for text, key in (("mu=flat()", "priors.mu"), ("tau=flat()", "priors.tau")):
        with pytest.raises(SpecError, match="exact engine only") as info:
            bayes_se.fit(data, priors=[text])  # the default engine is MCMC
        assert info.value.key == key
    with pytest.raises(SpecError, match="does not sample"):
        FLAT_TAU.to_pymc("tau")


def _csv(tmp_path, k):
    path = tmp_path / "d.csv"
    path.write_text("study,yi,vi\n" + "".join(f"S{i},{Y[i]},{V[i]}\n" for i in range(k)))
    return path


def test_flat_priors_cli_print_and_json(tmp_path, capsys):
    path = _csv(tmp_path, 7)
    code = cli.main(["fit", "--data", str(path), "--engine", "exact", "--prior", "mu=flat()", "--prior", "tau=flat()"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "log marginal likelihood: undefined" in out and "BF01 (tau = 0 vs tau free): undefined" in out
    code = cli.main(["fit", "--data", str(path), "--engine", "exact", "--prior", "mu=flat()", "--prior", "tau=flat()",
                     "--json"])
    obj = json.loads(capsys.readouterr()[0])
    assert code == 0 and obj["log_marginal_likelihood"] is None
    assert obj["bayes_factors"] == {"tau0": None, "mu0": None} and obj["notes"]
    assert obj["parameters"]["mu"]["mean"] == pytest.approx(Y @ (1 / V) / np.sum(1 / V), abs=0.05)
    code = cli.main(["fit", "--data", str(_csv(tmp_path, 2)), "--engine", "exact", "--prior", "mu=flat()",
                     "--prior", "tau=flat()"])
    err = capsys.readouterr()[1]
    assert code == 2 and "improper posterior" in err and "Traceback" not in err
    code = cli.main(["fit", "--data", str(path), "--prior", "mu=flat()"])
    err = capsys.readouterr()[1]
    assert code == 2 and "exact engine only" in err and len(err.strip().splitlines()) == 1
