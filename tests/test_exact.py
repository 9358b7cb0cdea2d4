"""The exact (quadrature) engine against an independent quadrature solver, bayesmeta's published
eight-schools analysis, direct marginal likelihoods and its own iid draws."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, special, stats

from bayes_se.errors import BayesSEError, DataError, SpecError
from bayes_se.exact import exact_posterior
from conftest import REFERENCE

EXACT_RTOL = 1e-6  # the task's bound; the reference solver (Simpson, 24,001 nodes) is ~1e-9 accurate
NEAR_ZERO_ATOL = 1e-9  # absolute floor, only for reference values within 1e-9 of 0
PUBLISHED_ATOL = 0.5e-6  # bayesmeta's vignette prints 6 decimals: half a unit in the last place
ML_RTOL = 1e-6  # Bayes factors against marginal likelihoods by scipy.integrate.quad (epsrel 1e-12)
MC_SIGMAS = 4.5  # draws' means within 4.5 Monte Carlo standard errors (false alarm ~1e-5 per check)
STATS = ("mean", "sd", "q2.5", "q50", "q97.5")

EXACT_FILES = sorted((REFERENCE / "exact").glob("*.json"))

# Rubin (1981) eight schools as in bayesmeta's data("Rubin1981") (Gelman et al. BDA rounds them)
SCHOOLS_Y = np.array([28.39, 7.94, -2.75, 6.82, -0.64, 0.63, 18.01, 12.16])
SCHOOLS_SE = np.array([14.9, 10.2, 16.3, 11.0, 9.4, 11.4, 10.4, 17.6])
# bayesmeta vignette (bayesmeta 3.4, inst/doc/bayesmeta.html), print(schools.example.1$summary)
# and print(schools.example.2$summary); column "theta" is the predictive distribution. The 95%
# upper bound of tau is the shortest interval [0, q95] because the tau posterior's mode is 0.
SCHOOLS_PUBLISHED = {
    "example1": {  # tau ~ half-Cauchy(scale 25), mu ~ N(0, 50^2)
        "tau": {"median": 4.758539, "mean": 5.884511, "sd": 4.869904, "q95": 15.165894},
        "mu": {"median": 7.962961, "mean": 7.985729, "sd": 4.995762},
        "pred": {"median": 7.926819, "mean": 7.985729, "sd": 9.126767},
    },
    "example2": {  # tau uniform (improper), mu uniform (improper): bayesmeta's defaults
        "tau": {"median": 5.227732, "mean": 6.585992, "sd": 5.685974, "q95": 17.265797},
        "mu": {"median": 8.055861, "mean": 8.092138, "sd": 5.246683},
        "pred": {"median": 8.008111, "mean": 8.092138, "sd": 10.148132},
    },
}


def _load(path):
    ref = json.loads(path.read_text())
    data = pd.read_csv(REFERENCE / ref["data_csv"])
    mod = ref["moderator"]
    if mod is None:
        return ref, exact_posterior(data.yi.to_numpy(), data.vi.to_numpy(), study=data.study), {"mu": "mu"}
    data = data[data[mod].notna()]
    X = np.column_stack([np.ones(len(data)), data[mod].to_numpy(dtype=float)])
    post = exact_posterior(data.yi.to_numpy(), data.vi.to_numpy(), X, coef_names=["intercept", mod],
                           study=data.study)
    return ref, post, {"mu": "beta[intercept]", "beta": f"beta[{mod}]"}


def _close(got, want, what):
    tol = NEAR_ZERO_ATOL if abs(want) < NEAR_ZERO_ATOL else EXACT_RTOL * abs(want)
    assert abs(got - want) <= tol, f"{what}: {got!r} vs reference {want!r}"


@pytest.mark.parametrize("path", EXACT_FILES, ids=[p.stem for p in EXACT_FILES])
def test_exact_reference(path):
    ref, post, names = _load(path)
    summary = post.summary()
    for par, row in ref["summary"].items():
        for stat in STATS:
            _close(summary.loc[names.get(par, par), stat], row[stat], f"{par} {stat}")
    theta = ref["theta"]
    for i, study in enumerate(theta["study"]):
        for stat in STATS:
            _close(summary.loc[f"theta[{study}]", stat], theta[stat][i], f"theta[{study}] {stat}")
    _close(post.log_marginal_likelihood, ref["log_marginal_likelihood"], "log marginal likelihood")
    _close(post.posterior_tau_density_at_0, ref["posterior_tau_density_at_0"], "p(tau = 0 | y)")


def _direct_support(post, delta=0.01, epsilon=1e-4):
    """bayesmeta's DIRECT discretisation of tau (Röver 2020, sec. 3.3), rebuilt from our tau cdf and
    conditionals: bins whose neighbouring conditionals (mu, pred, each theta_i) differ by symmetrised
    KL divergence ``delta``, up to the ``1 - epsilon`` quantile of tau; weights are the bins' tau
    posterior probabilities. bayesmeta reports mu's and pred's summaries from this mixture."""
    names = ["mu", "pred"] + [f"theta[{s}]" for s in post.study]
    tol = 2.0**16 * np.finfo(float).eps  # bayesmeta's tol.uniroot default

    def divergence(t1, t2):
        out = 0.0
        for name in names:
            m, s = post.conditional(name, [t1, t2])
            out = max(out, (m[0] - m[1]) ** 2 * 0.5 * (1 / s[0] ** 2 + 1 / s[1] ** 2)
                      + (s[0] ** 2 - s[1] ** 2) ** 2 / (2 * s[0] ** 2 * s[1] ** 2))
        return out

    def step(t):
        upper = max(1.0, 2.0 * t)
        while divergence(t, upper) <= delta:
            upper *= 2.0
        return optimize.brentq(lambda u: divergence(t, u) - delta, t, upper, xtol=tol)

    maxtau = post.quantile("tau", 1.0 - epsilon)
    taus, edge = [0.0], step(0.0)
    weights = [float(post.cdf("tau", edge))]
    while edge <= maxtau or len(taus) < 2:
        t = step(edge)
        edge, before = step(t), float(post.cdf("tau", edge))
        taus.append(t)
        weights.append(max(0.0, float(post.cdf("tau", edge)) - before))
    return np.array(taus), np.array(weights) / sum(weights)


def _mixture_summary(post, name, taus, weights):
    m, s = post.conditional(name, taus)
    mean = weights @ m
    sd = math.sqrt(weights @ ((m - mean) ** 2 + s**2))
    median = optimize.brentq(lambda x: weights @ special.ndtr((x - m) / s) - 0.5, mean - 10 * sd, mean + 10 * sd,
                             xtol=1e-12)
    return {"mean": mean, "sd": sd, "median": median}


def _schools(example):
    if example == "example1":
        return exact_posterior(SCHOOLS_Y, SCHOOLS_SE**2, study=list("ABCDEFGH"), beta_mean=0.0, beta_sd=50.0,
                               tau_prior=stats.halfcauchy(scale=25).logpdf)
    return exact_posterior(SCHOOLS_Y, SCHOOLS_SE**2, study=list("ABCDEFGH"), beta_sd=np.inf,
                           tau_prior=lambda tau: np.zeros(np.shape(tau)))


@pytest.mark.parametrize("example", sorted(SCHOOLS_PUBLISHED))
def test_rubin1981_eight_schools_bayesmeta(example):
    """tau's summaries are exact in bayesmeta (numerical integration): ours must give every
    published digit. mu's and pred's are bayesmeta's DIRECT approximation, whose mixture we rebuild
    from our conditionals and tau cdf; our exact values differ from it at ~1e-4 (its epsilon)."""
    post = _schools(example)
    published = SCHOOLS_PUBLISHED[example]
    tau = published["tau"]
    assert post.quantile("tau", 0.5) == pytest.approx(tau["median"], abs=PUBLISHED_ATOL)
    assert post.mean("tau") == pytest.approx(tau["mean"], abs=PUBLISHED_ATOL)
    assert post.sd("tau") == pytest.approx(tau["sd"], abs=PUBLISHED_ATOL)
    assert post.quantile("tau", 0.95) == pytest.approx(tau["q95"], abs=PUBLISHED_ATOL)
    taus, weights = _direct_support(post)
    for name in ("mu", "pred"):
        got = _mixture_summary(post, name, taus, weights)
        for stat, want in published[name].items():
            assert got[stat] == pytest.approx(want, abs=PUBLISHED_ATOL), f"{name} {stat}"


def test_rubin1981_flat_mu_prior_has_no_marginal_likelihood():
    post = _schools("example2")
    assert math.isnan(post.log_marginal_likelihood)
    assert math.isnan(post.bayes_factor("mu0"))
    assert np.isfinite(post.summary().to_numpy()).all()


def _log_mvn(y, cov):
    return stats.multivariate_normal(mean=np.zeros(y.size), cov=cov).logpdf(y)


def test_bcg_bayes_factors_match_marginal_likelihoods():
    data = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")
    y, v = data.yi.to_numpy(), data.vi.to_numpy()
    post = exact_posterior(y, v)
    prior = stats.halfnorm(scale=0.5)
    ones = np.ones((y.size, y.size))

    def marginal(with_mu):
        def log_f(tau):
            return prior.logpdf(tau) + _log_mvn(y, np.diag(v + tau**2) + (ones if with_mu else 0.0))
        shift = max(log_f(t) for t in np.linspace(0, 3, 301))
        value, _ = integrate.quad(lambda t: math.exp(log_f(t) - shift), 0, np.inf, epsabs=0, epsrel=1e-12,
                                  limit=200)
        return shift + math.log(value)

    log_full, log_mu0 = marginal(True), marginal(False)
    log_tau0 = _log_mvn(y, np.diag(v) + ones)
    assert post.log_marginal_likelihood == pytest.approx(log_full, rel=ML_RTOL)
    assert post.bayes_factor("mu0") == pytest.approx(math.exp(log_mu0 - log_full), rel=ML_RTOL)
    assert post.bayes_factor("mu=0") == post.bayes_factor("mu0")
    assert post.bayes_factor("tau0") == pytest.approx(math.exp(log_tau0 - log_full), rel=ML_RTOL)


def test_raudenbush1985_weeksc_regression_bayes_factor_for_slope():
    data = pd.read_csv(REFERENCE / "data" / "dat.raudenbush1985.csv")
    X = pd.DataFrame({"intercept": 1.0, "weeks.c": data["weeks.c"].astype(float)})
    post = exact_posterior(data.yi, data.vi, X)
    y, v = data.yi.to_numpy(), data.vi.to_numpy()
    prior = stats.halfnorm(scale=0.5)
    Xa = X.to_numpy()

    def log_f(tau, cols):
        return prior.logpdf(tau) + _log_mvn(y, np.diag(v + tau**2) + Xa[:, cols] @ Xa[:, cols].T)

    def log_ml(cols):
        value, _ = integrate.quad(lambda t: math.exp(log_f(t, cols)), 0, np.inf, epsabs=0, epsrel=1e-12, limit=200)
        return math.log(value)

    assert post.log_marginal_likelihood == pytest.approx(log_ml([0, 1]), rel=ML_RTOL)
    assert post.bayes_factor("beta[weeks.c]=0") == pytest.approx(math.exp(log_ml([0]) - log_ml([0, 1])),
                                                                 rel=ML_RTOL)


def test_bcg_uniform_tau_prior_with_bounded_support():
    """A U(0, 0.6) prior cuts the posterior off inside its bulk: the grid must end at the edge."""
    data = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")
    y, v = data.yi.to_numpy(), data.vi.to_numpy()
    upper = 0.6
    post = exact_posterior(y, v, tau_prior=lambda tau: np.where((tau >= 0) & (tau <= upper), -math.log(upper), -np.inf))
    ones = np.ones((y.size, y.size))

    def f(tau):
        return math.exp(_log_mvn(y, np.diag(v + tau**2) + ones) + 15.0) / upper

    z = integrate.quad(f, 0, upper, epsabs=0, epsrel=1e-12)[0]
    mean = integrate.quad(lambda t: t * f(t), 0, upper, epsabs=0, epsrel=1e-12)[0] / z
    assert post.mean("tau") == pytest.approx(mean, rel=ML_RTOL)
    assert post.log_marginal_likelihood == pytest.approx(math.log(z) - 15.0, rel=ML_RTOL)
    assert post.cdf("tau", upper) == pytest.approx(1.0, abs=1e-12)


def test_bcg_draws_match_summary():
    data = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")
    post = exact_posterior(data.yi, data.vi, study=data.study)
    n = 20_000
    draws = post.draws(n, rng=20240501)
    summary = post.summary()
    assert draws["theta"].shape == (n, 13) and draws["beta"].shape == (n, 1)
    columns = {"mu": draws["mu"], "tau": draws["tau"], "tau2": draws["tau2"], "pred": draws["pred"]}
    columns.update({f"theta[{s}]": draws["theta"][:, i] for i, s in enumerate(post.study)})
    for name, x in columns.items():
        mean, sd = summary.loc[name, "mean"], summary.loc[name, "sd"]
        assert abs(x.mean() - mean) <= MC_SIGMAS * sd / math.sqrt(n), name
        assert abs(x.std() / sd - 1) <= MC_SIGMAS * math.sqrt(0.5 / n) * 2, name  # kurtosis slack x2
    ks = stats.kstest(draws["tau"], lambda t: post.cdf("tau", t))
    assert ks.pvalue > 1e-4


def test_normand1999_cdf_quantile_pdf_prob_agree():
    data = pd.read_csv(REFERENCE / "data" / "dat.normand1999.csv")
    post = exact_posterior(data.yi, data.vi, study=data.study)
    for name in ("mu", "tau", "tau2", "pred", "theta[Edinburgh]"):
        q = post.quantile(name, [0.1, 0.5, 0.9])
        assert post.cdf(name, q) == pytest.approx([0.1, 0.5, 0.9], abs=1e-12)
        lo, hi = post.quantile(name, [1e-9, 1 - 1e-9])
        mass, _ = integrate.quad(lambda x: float(post.pdf(name, x)), lo, hi, epsabs=0, epsrel=1e-10, limit=200)
        assert mass == pytest.approx(1 - 2e-9, abs=1e-8), name
    assert post.prob("mu", ">", 0.0) == pytest.approx(1 - post.cdf("mu", 0.0), abs=1e-15)
    assert post.prob("tau", "<=", 0.5) == pytest.approx(post.cdf("tau", 0.5), abs=1e-15)
    assert post.tau_weights.sum() == pytest.approx(1.0, abs=1e-14)
    assert post.mean("tau") == pytest.approx(post.tau_weights @ post.tau_grid, rel=1e-14)


def test_prior_object_and_effectdata_like_inputs():
    class HalfNormalPrior:  # duck-types bayes_se.priors' tau priors
        def tau_logpdf(self, tau):
            return stats.halfnorm(scale=0.5).logpdf(tau)

    class Effects:
        yi = np.array([0.1, 0.3, -0.2, 0.5])
        vi = np.array([0.04, 0.02, 0.05, 0.03])
        study = ("a", "b", "b", "c")

    default = exact_posterior(Effects.yi, Effects.vi)
    post = exact_posterior(Effects(), tau_prior=HalfNormalPrior(), level=0.9)
    assert post.study == ("a", "b", "b #1", "c")
    assert list(post.summary().columns) == ["mean", "sd", "q5", "q50", "q95"]
    assert post.log_marginal_likelihood == pytest.approx(default.log_marginal_likelihood, rel=1e-12)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"yi": [0.1, 0.2], "vi": [0.01, -0.02]}, DataError, "row 2, column 'vi'"),
        ({"yi": [0.1, np.nan], "vi": [0.01, 0.02]}, DataError, "row 2, column 'yi'"),
        ({"yi": [0.1, 0.2], "vi": [0.01]}, DataError, "same"),
        ({"yi": [0.1, 0.2], "vi": [0.01, 0.02], "level": 1.5}, SpecError, "level"),
        ({"yi": [0.1, 0.2], "vi": [0.01, 0.02], "beta_sd": 0.0}, SpecError, "beta_sd"),
        ({"yi": [0.1, 0.2], "vi": [0.01, 0.02], "X": [[1, 0], [1, np.nan]]}, DataError, "row 2"),
        ({"yi": [0.1, 0.2], "vi": [0.01, 0.02], "tau_prior": "half-normal"}, SpecError, "tau_prior"),
        ({"yi": [0.1, 0.2], "vi": [0.01, 0.02], "tau_prior": lambda t: np.where(t == 0, np.inf, -t)},
         SpecError, "infinite at tau = 0"),
        # k = 2 with flat priors on mu and tau: p(tau | y) ~ 1/tau, not integrable
        ({"yi": [0.1, 0.2], "vi": [0.01, 0.02], "beta_sd": np.inf, "tau_prior": lambda t: 0.0 * t},
         SpecError, "improper"),
    ],
)
def test_bad_input_is_named(kwargs, error, words):
    with pytest.raises(error) as info:
        exact_posterior(**kwargs)
    assert isinstance(info.value, BayesSEError) and words in str(info.value)


def test_unknown_parameter_is_named():
    post = exact_posterior([0.1, 0.3, 0.2], [0.01, 0.02, 0.03])
    with pytest.raises(SpecError, match="theta\\[9\\]"):
        post.cdf("theta[9]", 0.0)


def test_import_does_not_load_heavy_libraries():
    code = ("import sys, bayes_se.exact; heavy = {'pymc', 'arviz', 'matplotlib', 'pytensor'} & set(sys.modules);"
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_bcg_effectdata_input():
    from bayes_se.data import load_effects

    effects = load_effects(REFERENCE / "data" / "dat.bcg.csv")
    data = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")
    post = exact_posterior(effects)
    assert post.study == tuple(data.study)
    assert post.log_marginal_likelihood == exact_posterior(data.yi, data.vi).log_marginal_likelihood


# -- priors on log tau2 (pole or spike at tau = 0) against brute-force quadrature over u = log tau2 ------
POLE_RTOL = 1e-6  # the task's bound; engine error O(tau0^2 / v_min) ~ 1e-12, scipy quad epsrel 1e-11
QUAD_EPSREL = 1e-11
# Turner et al. (2012, Int J Epidemiol 41:818-827): log tau2 ~ N(-2.56, 1.74^2), general log-OR setting
TURNER2012_GENERAL = "log_normal(-2.56, 1.74)"
POLE_PRIORS = ("rhodes2015_general", "rhodes2015_mental_nonpharm_vs_control",
               "rhodes2015_mental_nonpharm_vs_control_corrected", "turner2012_log_normal")
POLE_PROBS = (0.025, 0.5, 0.975)


def _pole_prior(name):
    from bayes_se.priors import preset, prior_for

    return prior_for("tau", TURNER2012_GENERAL) if name == "turner2012_log_normal" else preset(name)["tau"]


def _log_u_density(prior):
    """Log density of u = log tau2 written from the prior's parameters (not the package's code)."""
    p = prior.params
    if prior.family == "log_t":
        return stats.t(p["nu"], p["mu"], p["sigma"]).logpdf
    return stats.norm(p["mu"], p["sigma"]).logpdf


class _BruteForce:
    """``p(u | y) ∝ p(u) N(y; X m, diag(v + e^u) + X S X')`` by ``scipy.integrate.quad`` over
    ``u = log tau2`` on (-inf, inf): the substitution turns the tau pole into the prior's t tail.
    ``beta | u, y`` from the textbook conjugate formulas (Gelman et al. BDA3, sec. 14.2)."""

    def __init__(self, y, v, X, prior, m=0.0, s=1.0):
        self.y, self.v, self.X = y, v, X
        self.m = np.full(X.shape[1], m)
        self.S = np.diag(np.full(X.shape[1], s**2))
        self.log_prior = _log_u_density(prior)
        self.cache = {}
        grid = np.linspace(-40.0, 10.0, 501)
        logf = np.array([self._eval(u)[0] for u in grid])
        self.mode, self.shift = float(grid[np.argmax(logf)]), float(logf.max())
        self.breaks = [self.mode - 12.0, self.mode - 4.0, self.mode, self.mode + 4.0, self.mode + 12.0]
        # the right tail decays like e^{-(k - p) u / 2}: end it where the integrand (even times
        # e^{2u}, for E tau^4) is negligible, since e^u overflows where quad's map to infinity samples
        self.top = self.mode + 60.0
        assert self._eval(self.top)[0] + 2.0 * self.top < self.shift - 60.0
        self.z = self.integrate(lambda u: 1.0)

    def log_ml(self, tau2):
        cov = np.diag(self.v + tau2) + self.X @ self.S @ self.X.T
        return stats.multivariate_normal(mean=self.X @ self.m, cov=cov).logpdf(self.y)

    def _eval(self, u):
        if u not in self.cache:
            w = 1.0 / (self.v + math.exp(u))
            A = self.X.T @ (w[:, None] * self.X) + np.linalg.inv(self.S)
            Ainv = np.linalg.inv(A)
            b = Ainv @ (self.X.T @ (w * self.y) + np.linalg.solve(self.S, self.m))
            self.cache[u] = (self.log_prior(u) + self.log_ml(math.exp(u)), b, np.sqrt(np.diag(Ainv)))
        return self.cache[u]

    def weight(self, u):
        return math.exp(self._eval(u)[0] - self.shift)

    def integrate(self, g, upper=np.inf):
        """``∫_{-inf}^{upper} p(u) L(u) g(u) du`` (times e^-shift), split around the mode; the left
        end stays at -inf, where the pole's mass is."""
        upper = min(upper, self.top)
        cuts = [-np.inf] + [c for c in self.breaks if c < upper] + [upper]
        total = 0.0
        for a, b in zip(cuts[:-1], cuts[1:]):
            total += integrate.quad(lambda u: self.weight(u) * g(u), a, b, epsabs=0, epsrel=QUAD_EPSREL,
                                    limit=200)[0]
        return total

    def expect(self, g):
        return self.integrate(g) / self.z

    def coef_cdf(self, j, x):
        return self.expect(lambda u: special.ndtr((x - self._eval(u)[1][j]) / self._eval(u)[2][j]))

    def coef_pdf(self, j, x):
        return self.expect(lambda u: stats.norm.pdf(x, self._eval(u)[1][j], self._eval(u)[2][j]))

    def tau_cdf(self, t):
        return self.integrate(lambda u: 1.0, upper=2.0 * math.log(t)) / self.z

    def tau_pdf(self, t):
        return self.weight(2.0 * math.log(t)) / self.z * 2.0 / t

    def root(self, cdf, pdf, start, q):
        """Newton's method from the engine's quantile: quadratically convergent, so the result is
        the root of the reference cdf, not the starting value."""
        x = start
        for _ in range(5):
            step = (cdf(x) - q) / pdf(x)
            x -= step
            if abs(step) <= 1e-12 * abs(x):
                break
        return x


def _pole_case(dataset, prior_name):
    data = pd.read_csv(REFERENCE / "data" / f"dat.{dataset.removesuffix('_ablat')}.csv")
    if dataset == "bcg_ablat":
        X = np.column_stack([np.ones(len(data)), data["ablat"].to_numpy(float)])
    elif dataset == "raudenbush1985":
        X = np.column_stack([np.ones(len(data)), data["weeks.c"].to_numpy(float)])
    else:
        X = np.ones((len(data), 1))
    y, v = data.yi.to_numpy(float), data.vi.to_numpy(float)
    prior = _pole_prior(prior_name)
    return exact_posterior(y, v, X if X.shape[1] > 1 else None, tau_prior=prior), _BruteForce(y, v, X, prior)


POLE_CASES = ([(d, p) for d in ("bcg", "normand1999") for p in POLE_PRIORS]
              + [("bcg_ablat", "rhodes2015_general"), ("bcg_ablat", "turner2012_log_normal"),
                 ("raudenbush1985", "rhodes2015_general")])


@pytest.mark.parametrize("dataset, prior_name", POLE_CASES, ids=[f"{d}-{p}" for d, p in POLE_CASES])
def test_log_tau2_priors_match_brute_force_quadrature(dataset, prior_name):
    post, ref = _pole_case(dataset, prior_name)
    par = ["mu"] if len(post.coef_names) == 1 else [f"beta[{n}]" for n in post.coef_names]
    _pole_close(post.log_marginal_likelihood, ref.shift + math.log(ref.z), "log marginal likelihood")
    for j, name in enumerate(par):
        mean = ref.expect(lambda u: ref._eval(u)[1][j])
        second = ref.expect(lambda u: ref._eval(u)[1][j] ** 2 + ref._eval(u)[2][j] ** 2)
        _pole_close(post.mean(name), mean, f"{name} mean")
        _pole_close(post.sd(name), math.sqrt(second - mean**2), f"{name} sd")
        for q, got in zip(POLE_PROBS, post.quantile(name, POLE_PROBS)):
            want = ref.root(lambda x: ref.coef_cdf(j, x), lambda x: ref.coef_pdf(j, x), got, q)
            _pole_close(got, want, f"{name} q{q}")
    _pole_close(post.prob(par[0], ">", 0.0), 1.0 - ref.coef_cdf(0, 0.0), f"P({par[0]} > 0)")
    moments = [ref.expect(lambda u, r=r: math.exp(r * u)) for r in (0.5, 1.0, 2.0)]  # E tau, E tau2, E tau4
    _pole_close(post.mean("tau"), moments[0], "tau mean")
    _pole_close(post.sd("tau"), math.sqrt(moments[1] - moments[0] ** 2), "tau sd")
    _pole_close(post.mean("tau2"), moments[1], "tau2 mean")
    _pole_close(post.sd("tau2"), math.sqrt(moments[2] - moments[1] ** 2), "tau2 sd")
    probs = POLE_PROBS + ((post._p0 / 2,) if post._p0 > 1e-6 else ())  # a quantile inside the prior tail
    for q, got in zip(probs, post.quantile("tau", probs)):
        want = ref.root(ref.tau_cdf, ref.tau_pdf, got, q)
        _pole_close(got, want, f"tau q{q}")
        _pole_close(post.quantile("tau2", q), want**2, f"tau2 q{q}")
        _pole_close(float(post.pdf("tau", got)), ref.tau_pdf(want), f"tau density at q{q}")
    log_common = ref.log_ml(0.0)  # p(y | tau = 0): the common-effect model's marginal likelihood
    _pole_close(post.bayes_factor("tau0"), math.exp(log_common - ref.shift) / ref.z, "BF01 tau = 0")
    at0 = post.posterior_tau_density_at_0
    assert at0 == (math.inf if prior_name.startswith("rhodes") else 0.0)


def _pole_close(got, want, what):
    assert abs(got - want) <= POLE_RTOL * abs(want), f"{what}: {got!r} vs brute force {want!r}"


def test_raudenbush1985_rhodes_draws_cdf_and_pdf_across_the_pole():
    """Draws, cdf, quantile and pdf of tau agree, also below the grid (the prior tail at L(0))."""
    post, _ = _pole_case("raudenbush1985", "rhodes2015_general")
    p0 = post._p0
    assert 1e-6 < p0 < 1e-2  # the analytic tail carries real mass here
    t0 = post.quantile("tau", p0)  # the grid's start
    below, above = post.cdf("tau", [t0 * (1 - 1e-9), t0 * (1 + 1e-9)])
    assert below == pytest.approx(p0, rel=1e-6) and above == pytest.approx(p0, rel=1e-6)  # continuous
    for q in (p0 / 10, 0.1, 0.9):
        assert post.cdf("tau", post.quantile("tau", q)) == pytest.approx(q, rel=1e-10)
    lo, hi = post.quantile("tau", [p0, 0.999])
    mass = integrate.quad(lambda t: float(post.pdf("tau", t)), lo, hi, epsabs=0, epsrel=1e-10, limit=200)[0]
    assert mass == pytest.approx(0.999 - p0, rel=1e-8)
    assert post.posterior_tau_density_at_0 == math.inf and post.pdf("tau2", 0.0) == math.inf
    n = 20_000
    draws = post.draws(n, rng=7)
    assert stats.kstest(draws["tau"], lambda t: post.cdf("tau", t)).pvalue > 1e-4
    for name in ("beta", "tau2"):
        x = draws[name][:, 1] if name == "beta" else draws[name]
        par = "beta[x1]" if name == "beta" else name
        assert abs(x.mean() - post.mean(par)) <= MC_SIGMAS * post.sd(par) / math.sqrt(n), name


def test_bcg_tau0_bayes_factor_when_the_prior_density_at_0_is_zero():
    """inverse-gamma on tau2: p(tau = 0) = 0, yet BF01 = p(y | tau = 0) / p(y) is finite."""
    from bayes_se.priors import prior_for

    data = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")
    y, v = data.yi.to_numpy(), data.vi.to_numpy()
    prior = prior_for("tau", "inverse_gamma(1, 0.15)")
    post = exact_posterior(y, v, tau_prior=prior)
    ones = np.ones((y.size, y.size))
    tau2_prior = stats.invgamma(1, scale=0.15)
    z = integrate.quad(lambda t2: tau2_prior.pdf(t2) * math.exp(_log_mvn(y, np.diag(v + t2) + ones) + 15.0),
                       0, np.inf, points=None, epsabs=0, epsrel=1e-12, limit=200)[0]
    log_ml = math.log(z) - 15.0
    assert post.log_marginal_likelihood == pytest.approx(log_ml, rel=ML_RTOL)
    assert post.bayes_factor("tau0") == pytest.approx(math.exp(_log_mvn(y, np.diag(v) + ones) - log_ml), rel=ML_RTOL)
    assert post.posterior_tau_density_at_0 == 0.0


def test_bcg_sensitivity_grid_with_rhodes_presets_runs_exact():
    from bayes_se.data import load_effects
    from bayes_se.prior_sensitivity import sensitivity

    names = ["default", "rhodes2015_general", "rhodes2015_mental_nonpharm_vs_control_corrected"]
    result = sensitivity(load_effects(REFERENCE / "data" / "dat.bcg.csv"), names)
    table = result.table.set_index("prior")
    assert list(table.index) == names and (table["engine"] == "exact").all()
    assert np.isfinite(table[["mu_mean", "mu_lower", "mu_upper", "tau_mean"]].to_numpy()).all()
