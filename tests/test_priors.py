"""Priors: grammar round trips and errors, densities against SciPy, Jacobians by integration,
the PyMC bridge against the same densities, and the presets' published numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from conftest import REFERENCE

from bayes_se.errors import SpecError
from bayes_se.exact import exact_posterior
from bayes_se.priors import (
    FAMILIES,
    PRESETS,
    Prior,
    assign_prior,
    heterogeneity_rv,
    parse_assignment,
    parse_prior,
    preset,
    prior_for,
)

SCIPY_RTOL = 1e-12  # same SciPy formula evaluated two ways: only rounding differs
QUAD_ATOL = 1e-7  # scipy.integrate.quad of a smooth density on the log-tau line
PYMC_RTOL = 1e-9  # PyMC and SciPy implement the same closed-form log densities in float64 ...
PYMC_ATOL = 1e-8  # ... except PyMC folds constants such as log(2) (HalfCauchy, HalfStudentT) from
# Python ints as float32: an observed constant offset of 1.9e-9 in the log density

TAU_GRID = np.array([1e-3, 0.05, 0.2, 0.5, 1.0, 2.5, 7.0])

POSITIVE_PRIORS = [
    "half_normal(0.5)",
    "half_cauchy(1)",
    "half_student_t(3, 0.5)",
    "exponential(2)",
    "uniform(0, 3)",
]
VARIANCE_PRIORS = ["inverse_gamma(1, 0.15)", "log_normal(-2.56, 1.74)", "log_t(5, -3.44, 2.59)"]
REAL_PRIORS = ["normal(0, 1)", "student_t(3, 0.2, 0.5)", "uniform(-1, 2)"]


# ---------------------------------------------------------------------------------------------
# grammar
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", POSITIVE_PRIORS + VARIANCE_PRIORS + REAL_PRIORS)
def test_str_round_trips(text):
    prior = parse_prior(text)
    assert parse_prior(str(prior)) == prior
    assert parse_prior(str(prior)) == prior
    assert parse_prior(prior.spec_text()).params == prior.params


@pytest.mark.parametrize(
    "text, expected",
    [
        ("half_normal(0.5)", "tau ~ HalfNormal(0.5)"),
        ("log_t(5, -2.56, 1.74)", "log(tau2) ~ t_5(-2.56, 1.74)"),
        ("log_normal(-2.56, 1.74)", "log(tau2) ~ Normal(-2.56, 1.74)"),
        ("inverse_gamma(1, 0.15)", "tau2 ~ InvGamma(1, 0.15)"),
        ("normal(mu=0, sigma=1)", "mu ~ Normal(0, 1)"),
        ("student_t(3, 0, 2.5)", "mu ~ t_3(0, 2.5)"),
        ("half_student_t(nu=3, sigma=1e-1)", "tau ~ HalfT_3(0.1)"),
    ],
)
def test_str_prints_the_maths(text, expected):
    assert str(parse_prior(text)) == expected


def test_keyword_and_positional_forms_agree():
    assert parse_prior("normal(mu=0, sigma=1)") == parse_prior("normal(0, 1)")
    assert parse_prior("normal(sigma=1, mu=0)") == parse_prior("normal(0, sigma=1)")
    assert parse_prior("log_t(5, mu=-3.44, sigma=2.59)") == parse_prior("log(tau2) ~ t_5(-3.44, 2.59)")


@pytest.mark.parametrize("number", ["1e-2", "1E-2", "+0.01", ".01", "0.010", "1.0e-2"])
def test_numbers_with_exponents_and_signs(number):
    assert parse_prior(f"half_normal({number})").params["sigma"] == 0.01


def test_negative_location():
    assert parse_prior("normal(-1.5e0, 2)").params["mu"] == -1.5


@settings(max_examples=60, deadline=None)
@given(
    mu=st.floats(-1e6, 1e6, allow_nan=False),
    sigma=st.floats(1e-6, 1e6, allow_nan=False),
    nu=st.floats(0.5, 100, allow_nan=False),
)
def test_round_trip_any_numbers(mu, sigma, nu):
    for prior in (Prior("normal", {"mu": mu, "sigma": sigma}),
                  Prior("log_t", {"nu": nu, "mu": mu, "sigma": sigma}),
                  Prior("half_student_t", {"nu": nu, "sigma": sigma})):
        assert parse_prior(str(prior)) == prior
        assert parse_prior(prior.spec_text()) == prior


@pytest.mark.parametrize(
    "text, param, target",
    [
        ("mu=normal(0, 1)", "mu", "mu"),
        ("mu ~ normal(0, 1)", "mu", "mu"),
        ("tau = half_normal(0.5)", "tau", "tau"),
        ("tau2 = inverse_gamma(1, 0.15)", "tau2", "tau2"),
        ("beta = normal(0, 1)", "beta", "beta"),
        ("beta[guided] = normal(0, 0.5)", "beta[guided]", "beta[guided]"),
        ("sigma_cluster = half_normal(0.3)", "sigma_cluster", "sigma_cluster"),
        ("sigma_effect = half_cauchy(0.3)", "sigma_effect", "sigma_effect"),
        ("nu = exponential(0.0345)", "nu", "nu"),
        ("log(tau2) ~ t_5(-3.44, 2.59)", "tau2", "tau2"),
    ],
)
def test_parse_assignment(text, param, target):
    name, prior = parse_assignment(text)
    assert name == param
    assert prior.target == target


def test_tau2_family_given_for_tau_means_prior_on_tau2():
    name, prior = parse_assignment("tau = log_t(5, -3.44, 2.59)")
    assert name == "tau"
    assert prior.target == "tau2" and prior.on_variance
    assert str(prior) == "log(tau2) ~ t_5(-3.44, 2.59)"
    _, cluster = parse_assignment("sigma_cluster = inverse_gamma(1, 0.15)")
    assert cluster.target == "sigma_cluster2"
    assert parse_prior(str(cluster)) == cluster


def test_prior_is_immutable_and_hashable():
    prior = parse_prior("half_normal(0.5)")
    with pytest.raises(Exception):
        prior.family = "normal"
    with pytest.raises(TypeError):
        prior.params["sigma"] = 2.0
    assert len({prior, parse_prior("tau ~ HalfNormal(0.5)")}) == 1


# ---------------------------------------------------------------------------------------------
# grammar errors: each names what is wrong
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, fragments",
    [
        ("normall(0, 1)", ["unknown prior family 'normall'", "did you mean 'normal'", "half_cauchy"]),
        ("gamma(2, 0.1)", ["unknown prior family 'gamma'", "known families: normal"]),
        ("normal(0)", ["normal takes 2 argument(s) (mu, sigma)", "missing sigma"]),
        ("normal(0, 1, 2)", ["normal takes 2 argument(s)", "got 3"]),
        ("normal(mu=0, s=1)", ["normal has no argument 's'", "(mu, sigma)"]),
        ("normal(0, mu=1)", ["argument mu given twice"]),
        ("normal(mu=0, mu=1)", ["argument mu given twice"]),
        ("normal(0, -1)", ["sigma must be > 0", "got -1"]),
        ("half_normal(0)", ["sigma must be > 0"]),
        ("exponential(lam=-2)", ["lam must be > 0"]),
        ("inverse_gamma(0, 1)", ["alpha must be > 0"]),
        ("log_t(0, 1, 1)", ["nu must be > 0"]),
        ("uniform(2, 1)", ["lower must be < upper", "lower=2, upper=1"]),
        ("uniform(1, 1)", ["lower must be < upper"]),
        ("normal(0, 1", ["position 12", "end of text"]),
        ("normal(0; 1)", ["unexpected character ';' at position 9"]),
        ("normal 0, 1)", ["expected '('", "position 8"]),
        ("normal(0, 1) extra", ["expected end of text", "position 14"]),
        ("normal(mu=0, 1)", ["positional argument after a keyword argument"]),
        ("normal(a, 1)", ["expected a number", "position 8"]),
        ("log(tau2) ~ half_normal(1)", ["log(tau2) takes a normal or t prior"]),
        ("", ["expected a prior family name", "position 1"]),
    ],
)
def test_parse_errors(text, fragments):
    with pytest.raises(SpecError) as exc:
        parse_prior(text)
    for fragment in fragments:
        assert fragment in str(exc.value)


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("mu = half_normal(1)", ["spec key 'mu'", "half_normal is a prior for a positive quantity"]),
        ("beta[x] = exponential(1)", ["spec key 'beta[x]'", "real parameter"]),
        ("mu = inverse_gamma(1, 1)", ["spec key 'mu'"]),
        ("tau = normal(0, 1)", ["spec key 'tau'", "puts mass below 0"]),
        ("tau = uniform(-1, 1)", ["uniform lower bound must be >= 0"]),
        ("tau2 = half_normal(1)", ["tau2 takes inverse_gamma, log_normal or log_t"]),
        ("nu = log_t(5, 0, 1)", ["'nu' takes a positive-family prior"]),
        ("tua = half_normal(1)", ["unknown parameter 'tua'", "did you mean 'tau'"]),
        ("normal(0, 1)", ["expected 'parameter = family(arguments)'"]),
    ],
)
def test_assignment_errors(text, fragments):
    with pytest.raises(SpecError) as exc:
        parse_assignment(text)
    for fragment in fragments:
        assert fragment in str(exc.value)


def test_prior_for_names_the_key():
    with pytest.raises(SpecError) as exc:
        prior_for("tau", "half_normal(-1)")
    assert exc.value.key == "tau"
    assert "spec key 'tau'" in str(exc.value)
    with pytest.raises(SpecError, match="written for 'mu' but given for 'tau'"):
        prior_for("tau", "mu = normal(0, 1)")


def test_constructor_checks_arguments():
    with pytest.raises(SpecError, match="unknown prior family"):
        Prior("cauchy", {"beta": 1})
    with pytest.raises(SpecError, match=r"half_normal takes arguments \(sigma\)"):
        Prior("half_normal", {"scale": 1})
    with pytest.raises(SpecError, match="must be a number"):
        Prior("half_normal", {"sigma": "1"})
    with pytest.raises(SpecError, match="must be finite"):
        Prior("normal", {"mu": math.inf, "sigma": 1})


# ---------------------------------------------------------------------------------------------
# densities
# ---------------------------------------------------------------------------------------------
SCIPY_EQUIVALENTS = [
    ("normal(0.3, 2)", lambda x: stats.norm(0.3, 2).logpdf(x)),
    ("student_t(3, 0.2, 0.5)", lambda x: stats.t(3, 0.2, 0.5).logpdf(x)),
    ("half_normal(0.5)", lambda x: stats.halfnorm(scale=0.5).logpdf(x)),
    ("half_cauchy(1)", lambda x: stats.halfcauchy(scale=1).logpdf(x)),
    ("half_student_t(3, 0.5)", lambda x: np.log(2) + stats.t(3, 0, 0.5).logpdf(x)),
    ("exponential(2)", lambda x: stats.expon(scale=0.5).logpdf(x)),
    ("uniform(0, 3)", lambda x: stats.uniform(0, 3).logpdf(x)),
    ("inverse_gamma(1, 0.15)", lambda x: stats.invgamma(1, scale=0.15).logpdf(x)),
    ("log_normal(-2.56, 1.74)", lambda x: stats.lognorm(1.74, scale=math.exp(-2.56)).logpdf(x)),
    ("log_t(5, -3.44, 2.59)", lambda x: stats.t(5, -3.44, 2.59).logpdf(np.log(x)) - np.log(x)),
]


@pytest.mark.parametrize("text, reference", SCIPY_EQUIVALENTS)
def test_logpdf_matches_scipy(text, reference):
    np.testing.assert_allclose(parse_prior(text).logpdf(TAU_GRID), reference(TAU_GRID), rtol=SCIPY_RTOL)


@pytest.mark.parametrize("text", POSITIVE_PRIORS)
def test_tau_logpdf_is_logpdf_for_priors_on_tau(text):
    prior = parse_prior(text)
    np.testing.assert_allclose(prior.tau_logpdf(TAU_GRID), prior.logpdf(TAU_GRID), rtol=SCIPY_RTOL)


@pytest.mark.parametrize("text", VARIANCE_PRIORS)
def test_tau_logpdf_adds_the_jacobian(text):
    prior = parse_prior(text)
    expected = prior.logpdf(TAU_GRID**2) + np.log(2 * TAU_GRID)  # p(tau) = p(tau2) |d tau2 / d tau|
    np.testing.assert_allclose(prior.tau_logpdf(TAU_GRID), expected, rtol=SCIPY_RTOL)


@pytest.mark.parametrize("text", POSITIVE_PRIORS + VARIANCE_PRIORS)
def test_tau_density_integrates_to_one(text):
    prior = parse_prior(text)
    # on u = log tau: int p(tau) dtau = int p(e^u) e^u du, smooth and free of the log-t pole at 0
    upper = math.log(3.0) if prior.family == "uniform" else 60.0

    def integrand(u):
        return math.exp(prior.tau_logpdf(math.exp(u)) + u)

    total, _ = integrate.quad(integrand, -200.0, upper, limit=500, points=[-5.0, 0.0])
    assert total == pytest.approx(1.0, abs=QUAD_ATOL)


def test_tau_logpdf_outside_support_and_at_zero():
    assert parse_prior("half_normal(0.5)").tau_logpdf(-0.1) == -math.inf
    assert parse_prior("half_normal(0.5)").tau_logpdf(0.0) == pytest.approx(
        math.log(2 / (math.sqrt(2 * math.pi) * 0.5)), rel=SCIPY_RTOL)
    assert parse_prior("exponential(2)").tau_logpdf(0.0) == pytest.approx(math.log(2), rel=SCIPY_RTOL)
    assert parse_prior("uniform(0, 3)").tau_logpdf(3.5) == -math.inf
    assert parse_prior("inverse_gamma(1, 0.15)").tau_logpdf(0.0) == -math.inf
    assert parse_prior("log_normal(-2.56, 1.74)").tau_logpdf(0.0) == -math.inf
    # log-t: t tails in log tau2 decay only polynomially, so the tau density has a pole at 0
    assert parse_prior("log_t(5, -3.44, 2.59)").tau_logpdf(0.0) == math.inf
    out = parse_prior("inverse_gamma(1, 0.15)").tau_logpdf(np.array([-1.0, 0.0, 0.5]))
    assert out[0] == -math.inf and out[1] == -math.inf and np.isfinite(out[2])


def test_tau_logpdf_refuses_real_priors():
    with pytest.raises(SpecError, match="real-valued parameter"):
        parse_prior("normal(0, 1)").tau_logpdf(0.5)


@pytest.mark.parametrize("text", POSITIVE_PRIORS + VARIANCE_PRIORS + REAL_PRIORS)
def test_rvs_lie_in_support_and_follow_the_density(text):
    prior = parse_prior(text)
    draws = prior.rvs(4000, rng=20251121)
    assert draws.shape == (4000,)
    lp = prior.logpdf(draws)
    assert np.all(np.isfinite(lp))
    # Kolmogorov-Smirnov against the CDF obtained by integrating the density on the log scale
    if prior.family in ("normal", "student_t", "uniform"):
        return
    ecdf_at = np.quantile(draws, [0.25, 0.5, 0.75])
    for q, x in zip([0.25, 0.5, 0.75], ecdf_at):
        if prior.on_variance:
            mass, _ = integrate.quad(lambda u: math.exp(prior.tau_logpdf(math.exp(u)) + u), -200, 0.5 * math.log(x), limit=300)
        else:
            mass, _ = integrate.quad(lambda t: math.exp(prior.logpdf(t)), 0, x, limit=300)
        assert mass == pytest.approx(q, abs=0.03)  # 4000 draws: quantile SE ~ 0.007


def test_mean_sd():
    assert parse_prior("normal(0.2, 0.5)").mean_sd() == (0.2, 0.5)
    mean, sd = parse_prior("half_normal(0.5)").mean_sd()
    assert mean == pytest.approx(0.5 * math.sqrt(2 / math.pi), rel=SCIPY_RTOL)
    assert sd == pytest.approx(0.5 * math.sqrt(1 - 2 / math.pi), rel=SCIPY_RTOL)
    mean, sd = parse_prior("half_student_t(5, 1)").mean_sd()
    draws = parse_prior("half_student_t(5, 1)").rvs(200_000, rng=1)
    assert mean == pytest.approx(draws.mean(), rel=0.01)
    assert sd == pytest.approx(draws.std(), rel=0.03)
    for text in ("half_cauchy(1)", "log_t(5, -3.44, 2.59)", "student_t(2, 0, 1)"):
        with pytest.raises(SpecError, match="no finite mean"):
            parse_prior(text).mean_sd()


# ---------------------------------------------------------------------------------------------
# PyMC bridge (no sampling: log densities only)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", POSITIVE_PRIORS + VARIANCE_PRIORS + REAL_PRIORS)
def test_pymc_logp_equals_logpdf(text):
    pm = pytest.importorskip("pymc")
    prior = parse_prior(text)
    values = TAU_GRID.copy()
    if prior.family in ("log_normal", "log_t"):
        # PyMC samples log tau2: its density there is the tau2 density times tau2
        got = pm.logp(prior.pymc_dist(), np.log(values)).eval() - np.log(values)
    else:
        got = pm.logp(prior.pymc_dist(), values).eval()
    expected = prior.logpdf(values)
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=PYMC_RTOL, atol=PYMC_ATOL)
    assert np.all(~np.isfinite(got[~finite]))


@pytest.mark.parametrize(
    "text, free, deterministic",
    [
        ("half_normal(0.5)", ["tau"], ["tau2"]),
        ("inverse_gamma(1, 0.15)", ["tau2"], ["tau"]),
        ("log_normal(-2.56, 1.74)", ["log_tau2"], ["tau2", "tau"]),
        ("log_t(5, -3.44, 2.59)", ["log_tau2"], ["tau2", "tau"]),
    ],
)
def test_heterogeneity_rv_variables_and_model_logp(text, free, deterministic):
    pm = pytest.importorskip("pymc")
    prior = parse_prior(text)
    with pm.Model() as model:
        tau = heterogeneity_rv(prior, "tau")
    assert [v.name for v in model.free_RVs] == free
    assert sorted(v.name for v in model.deterministics) == sorted(deterministic)
    assert tau.name == "tau"
    # the model's log density (with its transform's Jacobian) equals ours on the sampled scale
    tau_value = 0.3
    point = model.initial_point()
    name = model.rvs_to_values[model.free_RVs[0]].name
    sampled = {"tau": tau_value, "tau2": tau_value**2, "log_tau2": math.log(tau_value**2)}[free[0]]
    if name.endswith("_log__"):
        point[name] = np.array(math.log(sampled))
        expected = prior.logpdf(sampled) + math.log(sampled)  # log-transform Jacobian
    elif prior.family in ("log_normal", "log_t"):
        point[name] = np.array(sampled)
        expected = prior.logpdf(tau_value**2) + 2 * math.log(tau_value)  # density of log tau2
    else:
        raise AssertionError(name)
    assert float(model.compile_logp()(point)) == pytest.approx(expected, rel=PYMC_RTOL, abs=PYMC_ATOL)
    tau_of_values = model.replace_rvs_by_values([tau])[0]
    fn = model.compile_fn(tau_of_values, inputs=model.value_vars, on_unused_input="ignore")
    assert float(fn(point)) == pytest.approx(tau_value, rel=1e-12)


def test_heterogeneity_rv_with_dims_and_other_names():
    pm = pytest.importorskip("pymc")
    with pm.Model(coords={"subgroup": ["a", "b", "c"]}) as model:
        heterogeneity_rv(parse_prior("half_normal(0.5)"), "tau", dims="subgroup")
        heterogeneity_rv(parse_prior("inverse_gamma(1, 0.15)"), "sigma_cluster")
    assert model.named_vars_to_dims["tau2"] == ("subgroup",)
    assert {"sigma_cluster", "sigma_cluster2"} <= set(model.named_vars)
    with pytest.raises(SpecError, match="cannot be a heterogeneity prior"):
        with pm.Model():
            heterogeneity_rv(parse_prior("normal(0, 1)"))


def test_to_pymc_creates_named_rv():
    pm = pytest.importorskip("pymc")
    with pm.Model(coords={"coef": ["x1", "x2"]}) as model:
        parse_prior("normal(0, 1)").to_pymc("beta", dims="coef")
        parse_prior("log_t(5, -3.44, 2.59)").to_pymc("tau2")
    assert model.named_vars_to_dims["beta"] == ("coef",)
    assert {"log_tau2", "tau2"} <= set(model.named_vars)


def test_import_does_not_load_pymc():
    import subprocess
    import sys

    code = "import sys, bayes_se.priors; print('pymc' in sys.modules, 'arviz' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


# ---------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------
def test_default_preset_is_the_exact_reference_prior():
    p = preset("default")
    assert p["mu"] == Prior("normal", {"mu": 0, "sigma": 1}, "mu")
    assert p["beta"] == Prior("normal", {"mu": 0, "sigma": 1}, "beta")
    assert str(p["tau"]) == "tau ~ HalfNormal(0.5)"


def test_vague_preset():
    p = preset("vague")
    assert str(p["mu"]) == "mu ~ Normal(0, 10)"
    assert str(p["tau"]) == "tau ~ HalfCauchy(1)"


@pytest.mark.parametrize(
    "name, location, scale",
    [  # Rhodes, Turner & Higgins (2015), Table 3
        ("rhodes2015_general", -3.44, 2.59),
        ("rhodes2015_mental_pharm_vs_placebo", -2.99, 2.16),
        ("rhodes2015_mental_pharm_vs_pharm", -3.27, 2.14),
        ("rhodes2015_mental_nonpharm_vs_control", -3.85, 1.93),
        ("rhodes2015_mental_nonpharm_vs_control_corrected", -2.85, 1.93),
    ],
)
def test_rhodes_presets(name, location, scale):
    tau = preset(name)["tau"]
    assert tau.family == "log_t" and tau.target == "tau2"
    assert dict(tau.params) == {"nu": 5.0, "mu": location, "sigma": scale}
    # the prior median of tau is exp(location / 2)
    assert float(np.median(np.sqrt(tau.rvs(20001, rng=3)))) == pytest.approx(math.exp(location / 2), rel=0.05)


def test_rover_presets():
    smd = preset("rover2021_smd")
    assert smd["mu"].params["sigma"] == pytest.approx(math.sqrt(2) / 2, rel=1e-15)
    assert smd["tau"].params["sigma"] == pytest.approx(math.sqrt(2) / 4, rel=1e-15)
    assert smd["beta"].params["sigma"] == pytest.approx(math.sqrt(2) / 4, rel=1e-15)
    total = preset("rover2021_smd_total_n")
    assert str(total["tau"]) == "tau ~ HalfNormal(0.5)"
    assert str(total["mu"]) == "mu ~ Normal(0, 1)"


def test_every_preset_has_mu_beta_tau_and_fits_them():
    for name, priors in PRESETS.items():
        assert set(priors) == {"mu", "beta", "tau"}, name
        for param, prior in priors.items():
            assign_prior(param, prior)


def test_unknown_preset():
    with pytest.raises(SpecError) as exc:
        preset("rhodes2015_generl")
    assert "did you mean 'rhodes2015_general'" in str(exc.value)
    assert "known presets: default" in str(exc.value)
    assert exc.value.key == "preset"


def test_families_table_is_complete():
    assert set(FAMILIES) == {"normal", "student_t", "half_normal", "half_cauchy", "half_student_t",
                             "exponential", "uniform", "inverse_gamma", "log_normal", "log_t", "flat"}


EXACT_RTOL = 1e-7  # reference: quadrature ~1e-9 accurate, rounded to 10 significant digits


def test_default_tau_prior_reproduces_the_exact_reference_normand1999():
    """The default preset's tau prior, handed to the exact engine through tau_logpdf, gives the
    independent R quadrature reference (tests/reference/exact, tau ~ half-N(0, 0.5))."""
    data = pd.read_csv(REFERENCE / "data" / "dat.normand1999.csv")
    ref = json.loads((REFERENCE / "exact" / "normand1999.json").read_text())
    post = exact_posterior(data["yi"].to_numpy(), data["vi"].to_numpy(), tau_prior=preset("default")["tau"])
    assert post.log_marginal_likelihood == pytest.approx(ref["log_marginal_likelihood"], rel=EXACT_RTOL)
    assert post.mean("tau") == pytest.approx(ref["summary"]["tau"]["mean"], rel=EXACT_RTOL)


def test_round_trip_when_nu_needs_an_exponent():
    for prior in (Prior("log_t", {"nu": 1e-5, "mu": -1, "sigma": 2}),
                  Prior("half_student_t", {"nu": 3e-7, "sigma": 2})):
        assert "StudentT(" in str(prior)
        assert parse_prior(str(prior)) == prior
