"""Model builders without sampling: graph shapes, log densities against SciPy, exact conditionals."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import integrate, stats

from bayes_se.builders import build_random_effects, build_three_level
from bayes_se.builders.three_level import cluster_logp
from bayes_se.errors import DataError, SpecError
from bayes_se.builders.random_effects import normal_conditional, student_t_marginal_logpdf
from conftest import REFERENCE

LOGP_RTOL = 1e-10  # same closed form evaluated two ways: rounding only
QUADRATURE_RTOL = 1e-9  # trapezoid in log(lambda) (~1e-13) against adaptive quad (epsrel 1e-12)
MOMENT_RTOL = 1e-9  # numerical integration of a normal-normal product on a fine grid


def normal(name, **kw):
    return pm.Normal(name, 0.0, 1.0, **kw)


def half_normal(name, **kw):
    return pm.HalfNormal(name, 0.5, **kw)


PRIORS = {"mu": normal, "beta": normal, "tau": half_normal}


@pytest.fixture(scope="module")
def bcg():
    return pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")


@pytest.fixture(scope="module")
def konstantopoulos():
    return pd.read_csv(REFERENCE / "data" / "dat.konstantopoulos2011.csv")


def _logp_at(model, point, var="y"):
    """log density of ``var`` at a point given on the natural scale of the free variables."""
    ip = model.initial_point()
    for rv in model.free_RVs:
        value_name = model.rvs_to_values[rv].name
        raw = np.asarray(point[rv.name], dtype=float)
        ip[value_name] = np.log(raw) if value_name.endswith("_log__") else raw
    fn = model.compile_logp(vars=[model[var]], jacobian=False)
    return float(fn(ip))


def test_bcg_random_effects_graph(bcg):
    meta = build_random_effects(bcg.yi, bcg.vi, study=bcg.study, priors=PRIORS)
    model = meta.model
    assert sorted(rv.name for rv in model.free_RVs) == ["mu", "tau"]
    assert len(model.coords["study"]) == 13
    assert "tau2" in model.named_vars and "beta" not in model.named_vars
    assert [rv.name for rv in model.observed_RVs] == ["y"]
    assert model.named_vars_to_dims["y"] == ("study",)


def test_bcg_marginal_logp_equals_scipy(bcg):
    meta = build_random_effects(bcg.yi, bcg.vi, study=bcg.study, priors=PRIORS)
    mu, tau = -0.7, 0.55
    expected = stats.norm.logpdf(bcg.yi, mu, np.sqrt(bcg.vi + tau**2)).sum()
    assert _logp_at(meta.model, {"mu": mu, "tau": tau}) == pytest.approx(expected, rel=LOGP_RTOL)


def test_bangertdrowns2004_metaregression_logp_equals_scipy():
    dat = pd.read_csv(REFERENCE / "data" / "dat.bangertdrowns2004.csv").dropna(subset=["meta"])
    X = np.column_stack([np.ones(len(dat)), dat.meta])
    meta = build_random_effects(dat.yi, dat.vi, X=X, coef_names=["intercept", "meta"], study=dat.study,
                                priors=PRIORS)
    assert meta.model.coords["coef"] == ("intercept", "meta")
    assert "mu" not in meta.model.named_vars
    beta, tau = np.array([0.12, 0.23]), 0.2
    expected = stats.norm.logpdf(dat.yi, X @ beta, np.sqrt(dat.vi + tau**2)).sum()
    assert _logp_at(meta.model, {"beta": beta, "tau": tau}) == pytest.approx(expected, rel=LOGP_RTOL)


def test_subgroup_tau_uses_each_groups_tau(bcg):
    meta = build_random_effects(bcg.yi, bcg.vi, study=bcg.study, priors=PRIORS, subgroup=bcg.alloc)
    assert meta.model.coords["subgroup"] == tuple(sorted(set(bcg.alloc)))
    taus = np.array([0.3, 0.6, 0.9])
    tau_i = taus[meta.group_index]
    expected = stats.norm.logpdf(bcg.yi, -0.7, np.sqrt(bcg.vi + tau_i**2)).sum()
    assert _logp_at(meta.model, {"mu": -0.7, "tau": taus}) == pytest.approx(expected, rel=LOGP_RTOL)


def test_student_t_effects_are_non_centred(bcg):
    meta = build_random_effects(bcg.yi, bcg.vi, study=bcg.study, priors=PRIORS, effects="student_t")
    assert sorted(rv.name for rv in meta.model.free_RVs) == ["mu", "tau", "u"]
    assert meta.nu == 4.0
    u = np.linspace(-1, 1, 13)
    expected = stats.norm.logpdf(bcg.yi, -0.7 + 0.5 * u, np.sqrt(bcg.vi)).sum()
    got = _logp_at(meta.model, {"mu": -0.7, "tau": 0.5, "u": u})
    assert got == pytest.approx(expected, rel=LOGP_RTOL)


def test_real_prior_objects_are_accepted(bcg):
    priors_mod = pytest.importorskip("bayes_se.priors")
    priors = {"mu": priors_mod.parse_prior("normal(0, 1)"), "tau": priors_mod.parse_prior("half_normal(0.5)")}
    meta = build_random_effects(bcg.yi, bcg.vi, priors=priors)
    assert sorted(rv.name for rv in meta.model.free_RVs) == ["mu", "tau"]
    assert "tau2" in meta.model.named_vars


def test_konstantopoulos2011_cluster_logp_equals_scipy_mvn(konstantopoulos):
    dat = konstantopoulos
    meta = build_three_level(dat.yi, dat.vi, dat.district, study=dat.es_id, priors=PRIORS)
    mu, s_c, s_e = 0.18, 0.25, 0.18
    expected = []
    for label in meta.group_labels:
        rows = dat[dat.district.astype(str) == label]
        cov = np.diag(rows.vi + s_e**2) + s_c**2
        expected.append(stats.multivariate_normal(np.full(len(rows), mu), cov).logpdf(rows.yi))
    ind = (meta.group_index[None, :] == np.arange(len(meta.group_labels))[:, None]).astype(float)
    got = cluster_logp(dat.yi.to_numpy() - mu, dat.vi.to_numpy(), s_c**2, s_e**2, ind)
    np.testing.assert_allclose(got, expected, rtol=LOGP_RTOL)
    total = _logp_at(meta.model, {"mu": mu, "sigma_cluster": s_c, "sigma_effect": s_e}, var="y")
    assert total == pytest.approx(sum(expected), rel=LOGP_RTOL)


def test_theta_conditional_matches_brute_force_product():
    y, v, m, s2 = 0.4, 0.09, -0.1, 0.25
    grid = np.linspace(-4, 4, 200_001)
    dens = stats.norm.pdf(y, grid, np.sqrt(v)) * stats.norm.pdf(grid, m, np.sqrt(s2))
    z = integrate.simpson(dens, x=grid)
    mean = integrate.simpson(grid * dens, x=grid) / z
    var = integrate.simpson((grid - mean) ** 2 * dens, x=grid) / z
    got_mean, got_var = normal_conditional(y, v, m, s2)
    assert got_mean == pytest.approx(mean, rel=MOMENT_RTOL)
    assert got_var == pytest.approx(var, rel=MOMENT_RTOL)
    # tau = 0: the study effect is the location exactly
    assert normal_conditional(y, v, m, 0.0) == (pytest.approx(m), 0.0)


@pytest.mark.parametrize("nu", [1.5, 4.0, 30.0])
@pytest.mark.parametrize("tau", [0.02, 0.5, 3.0])
def test_student_t_marginal_matches_quad(nu, tau):
    y, loc, v = 0.7, -0.2, 0.05

    def integrand(u):
        return stats.norm.pdf(y, loc + tau * u, np.sqrt(v)) * stats.t.pdf(u, nu)

    expected = np.log(integrate.quad(integrand, -np.inf, np.inf, epsabs=0, epsrel=1e-12, limit=500)[0])
    got = student_t_marginal_logpdf(y, loc, v, tau, nu)
    assert got == pytest.approx(expected, rel=QUADRATURE_RTOL)


def _fake_posterior(meta, draws, values):
    return az.from_dict(posterior={k: np.broadcast_to(v, (2, draws) + np.shape(v)).copy()
                                   for k, v in values.items()},
                        coords={"study": meta.study}, dims={"u": ["study"]})


def test_exact_draws_follow_the_conditional_normal(bcg):
    meta = build_random_effects(bcg.yi, bcg.vi, study=bcg.study, priors=PRIORS)
    draws = 20_000
    idata = _fake_posterior(meta, draws, {"mu": -0.7, "tau": 0.55})
    meta.postprocess(idata, seed=1)
    theta = idata.posterior["theta"]
    assert theta.dims == ("chain", "draw", "study")
    mean, var = normal_conditional(bcg.yi, bcg.vi, -0.7, 0.55**2)
    se = np.sqrt(var / (2 * draws))
    assert np.all(np.abs(theta.mean(("chain", "draw")).values - mean) < 5 * se)  # 5 SE: 13 z-tests
    np.testing.assert_allclose(theta.var(("chain", "draw")).values, var, rtol=0.05)  # sd of a variance ~1%
    ll = idata.log_likelihood["y"]
    assert ll.dims == ("chain", "draw", "study")
    np.testing.assert_allclose(ll.values[0, 0], stats.norm.logpdf(bcg.yi, -0.7, np.sqrt(bcg.vi + 0.55**2)))
    assert idata.posterior_predictive["y"].shape == (2, draws, 13)
    assert idata.posterior["pred"].dims == ("chain", "draw")
    again = _fake_posterior(meta, draws, {"mu": -0.7, "tau": 0.55})
    meta.postprocess(again, seed=1)
    np.testing.assert_array_equal(again.posterior["theta"].values, theta.values)


def test_three_level_exact_draws_and_cluster_loglik(konstantopoulos):
    dat = konstantopoulos
    meta = build_three_level(dat.yi, dat.vi, dat.district, study=dat.es_id, priors=PRIORS)
    idata = _fake_posterior(meta, 4000, {"mu": 0.18, "sigma_cluster": 0.25, "sigma_effect": 0.18})
    meta.postprocess(idata, seed=2)
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "cluster")
    assert idata.posterior["u_cluster"].shape == (2, 4000, 11)
    assert idata.posterior["theta"].shape == (2, 4000, 56)
    # E[theta | y] = mu + Cov(theta, y) V^-1 (y - mu), cluster by cluster (brute force)
    rows = dat[dat.district.astype(str) == meta.group_labels[0]]
    cov_y = np.diag(rows.vi + 0.18**2) + 0.25**2
    cov_ty = np.diag(np.full(len(rows), 0.18**2)) + 0.25**2
    expected = 0.18 + cov_ty @ np.linalg.solve(cov_y, rows.yi - 0.18)
    post_var = np.diag(cov_ty + 0 - cov_ty @ np.linalg.solve(cov_y, cov_ty.T))
    got = idata.posterior["theta"].values[..., rows.index.to_numpy()].reshape(-1, len(rows))
    se = np.sqrt(post_var / got.shape[0])
    assert np.all(np.abs(got.mean(axis=0) - expected) < 5 * se)


def test_bad_input_names_row_and_column(bcg):
    vi = bcg.vi.to_numpy().copy()
    vi[3] = -1.0
    with pytest.raises(DataError, match="row 4.*'vi'"):
        build_random_effects(bcg.yi, vi, priors=PRIORS)
    yi = bcg.yi.to_numpy().copy()
    yi[0] = np.nan
    with pytest.raises(DataError, match="row 1.*'yi'"):
        build_random_effects(yi, bcg.vi, priors=PRIORS)
    with pytest.raises(SpecError, match="effects"):
        build_random_effects(bcg.yi, bcg.vi, effects="cauchy", priors=PRIORS)
    with pytest.raises(DataError, match="rank deficient"):
        build_random_effects(bcg.yi, bcg.vi, X=np.ones((13, 2)), priors=PRIORS)
    with pytest.raises(SpecError, match="prior for 'mu'"):
        build_random_effects(bcg.yi, bcg.vi, priors={"mu": 3.0})


def test_student_t_with_nu_prior_and_subgroup_post_processing(bcg):
    gamma = {"nu": lambda name, **kw: pm.Gamma(name, 2.0, 0.1, **kw)}
    meta = build_random_effects(bcg.yi, bcg.vi, study=bcg.study, priors={**PRIORS, **gamma},
                                effects="student_t")
    assert "nu" in [rv.name for rv in meta.model.free_RVs] and meta.nu is None
    nu = np.random.default_rng(0).uniform(2, 10, (2, 5))
    idata = az.from_dict(posterior={"mu": np.full((2, 5), -0.7), "tau": np.full((2, 5), 0.5), "nu": nu})
    meta.postprocess(idata, seed=1)
    np.testing.assert_allclose(idata.log_likelihood["y"].values[1, 3],
                               student_t_marginal_logpdf(bcg.yi, -0.7, bcg.vi, 0.5, nu[1, 3]), rtol=LOGP_RTOL)

    meta = build_random_effects(bcg.yi, bcg.vi, study=bcg.study, priors=PRIORS, subgroup=bcg.alloc)
    idata = az.from_dict(posterior={"mu": np.full((2, 5), -0.7), "tau": np.full((2, 5, 3), 0.5)},
                         coords={"subgroup": meta.group_labels}, dims={"tau": ["subgroup"]})
    meta.postprocess(idata, seed=1)
    assert idata.posterior["pred"].dims == ("chain", "draw", "subgroup")
    assert idata.posterior["theta"].shape == (2, 5, 13)


def _subgroup_idata(meta, beta, tau, n=(2, 2000)):
    """Constant synthetic posterior draws: beta (p,) and tau (G,) repeated over (chain, draw)."""
    return az.from_dict(posterior={"beta": np.broadcast_to(beta, n + beta.shape).copy(),
                                   "tau": np.broadcast_to(tau, n + tau.shape).copy()},
                        coords={"subgroup": meta.group_labels, "coef": meta.coef_names},
                        dims={"tau": ["subgroup"], "beta": ["coef"]})


def test_subgroup_pred_uses_each_subgroups_location_and_tau(bcg):
    """pred[g] = x_g' beta + tau_g z: the subgroup's own coefficient when it is also a moderator."""
    levels = sorted(set(bcg.alloc))  # alternate (reference), random, systematic
    X = np.column_stack([np.ones(len(bcg))] + [bcg.alloc == g for g in levels[1:]]).astype(float)
    meta = build_random_effects(bcg.yi, bcg.vi, X=X, coef_names=["intercept", "random", "systematic"],
                                study=bcg.study, priors=PRIORS, subgroup=bcg.alloc)
    assert meta.group_labels == levels
    np.testing.assert_array_equal(meta.subgroup_newx(), [[1, 0, 0], [1, 1, 0], [1, 0, 1]])
    beta = np.array([-0.5, -0.4, 0.1])
    expected = {"alternate": -0.5, "random": -0.9, "systematic": -0.4}
    # tau = 0: pred is exactly the subgroup's location
    idata = meta.postprocess(_subgroup_idata(meta, beta, np.zeros(3)), seed=1)
    pred = idata.posterior["pred"]
    assert pred.dims == ("chain", "draw", "subgroup")
    for g, loc in expected.items():
        np.testing.assert_allclose(pred.sel(subgroup=g).values, loc, rtol=LOGP_RTOL)
    # tau_g > 0: pred[g] - loc_g is N(0, tau_g^2), independently across subgroups
    tau = np.array([0.1, 0.4, 1.6])
    idata = meta.postprocess(_subgroup_idata(meta, beta, tau), seed=1)
    pred = idata.posterior["pred"]
    z = np.stack([(pred.sel(subgroup=g).values.ravel() - expected[g]) / t for g, t in zip(levels, tau)])
    n = z.shape[1]
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=5 / np.sqrt(n))  # 5 standard errors
    np.testing.assert_allclose(z.std(axis=1), 1.0, atol=5 / np.sqrt(2 * n))
    assert np.abs(np.corrcoef(z)[np.triu_indices(3, 1)]).max() < 5 / np.sqrt(n)


def test_subgroup_pred_with_a_covariate_varying_within_subgroups(bcg):
    """A moderator that is not a function of the subgroup stays at its reference 0 in pred."""
    X = np.column_stack([np.ones(len(bcg)), bcg.ablat, bcg.alloc == "random"]).astype(float)
    meta = build_random_effects(bcg.yi, bcg.vi, X=X, coef_names=["intercept", "ablat", "random"],
                                study=bcg.study, priors=PRIORS, subgroup=bcg.alloc)
    np.testing.assert_array_equal(meta.subgroup_newx(), [[1, 0, 0], [1, 0, 1], [1, 0, 0]])
    beta = np.array([0.3, -0.03, -0.2])
    idata = meta.postprocess(_subgroup_idata(meta, beta, np.zeros(3)), seed=1)
    np.testing.assert_allclose(idata.posterior["pred"].values[0, 0], [0.3, 0.1, 0.3], rtol=LOGP_RTOL)


def test_coefficient_priors_follow_one_rule():
    """Prior objects: mu for the intercept, beta[NAME] where given, else beta (as bayes_se.priors says)."""
    import pymc as pm
    from scipy import stats

    from bayes_se.builders.random_effects import build_random_effects
    from bayes_se.priors import parse_prior

    X = np.column_stack([np.ones(4), [0, 1, 0, 1], [1.0, 2.0, 3.0, 4.0]])
    priors = {"mu": parse_prior("normal(0.3, 1)"), "beta": parse_prior("normal(0, 0.5)"),
              "beta[x2]": parse_prior("normal(0, 0.1)"), "tau": parse_prior("half_normal(0.5)")}
    meta = build_random_effects([0.1, 0.4, 0.2, 0.5], [0.02] * 4, X=X, coef_names=["intercept", "x1", "x2"],
                                priors=priors)
    value = np.array([0.2, -0.4, 0.05])
    got = pm.logp(meta.model["beta"], value).eval()
    want = [stats.norm(0.3, 1).logpdf(0.2), stats.norm(0, 0.5).logpdf(-0.4), stats.norm(0, 0.1).logpdf(0.05)]
    np.testing.assert_allclose(got, want, rtol=LOGP_RTOL)


@pytest.mark.parametrize("effects, with_x", [("normal", False), ("normal", True), ("student_t", False)])
def test_random_effects_data_enter_as_shared_variables(effects, with_x):
    """yi, vi (and X) are shared data, not graph constants: PyTensor keys its compiled modules by
    the constants, so constant data would make every data set a new key (a cache lookup that
    grows with every fit in one process)."""
    from pytensor.graph.basic import Constant, ancestors

    rng = np.random.default_rng(3)
    k = 9
    X = np.column_stack([np.ones(k), rng.integers(0, 2, k)]) if with_x else None
    names = ["intercept", "guided"] if with_x else None
    meta = build_random_effects(rng.normal(size=k), rng.uniform(0.01, 0.1, k), X=X, coef_names=names,
                                effects=effects)
    constants = [v for v in ancestors([meta.model.logp()]) if isinstance(v, Constant)]
    assert not [c for c in constants if np.size(c.data) >= k], "data embedded as constants"
    data_names = {"yi", "vi"} | ({"X"} if with_x else set())
    assert data_names <= set(meta.model.named_vars)
    assert np.array_equal(meta.model["vi"].get_value(), meta.vi)


def test_three_level_and_masem_data_enter_as_shared_variables():
    """As for random effects: the data of the three-level model (yi, vi) and of the MASEM (n, r)
    are shared variables; what stays constant is the design (cluster membership, missing pairs)."""
    from pytensor.graph.basic import Constant, ancestors

    from bayes_se.builders.masem import build_masem
    from bayes_se.correlations import CorrelationData

    rng = np.random.default_rng(4)
    k = 9
    yi, vi = rng.normal(size=k), rng.uniform(0.01, 0.1, k)
    three = build_three_level(yi, vi, list("aaabbbccc"))
    n, r = rng.integers(50, 300, k).astype(float), rng.uniform(-0.3, 0.3, (k, 3))
    masem = build_masem(CorrelationData(("X", "M", "Y"), np.array([str(i) for i in range(k)]), n, r,
                                        np.ones((k, 3), bool)))
    for model, values in ((three.model, {"yi": yi, "vi": vi}), (masem.model, {"n": n, "y": r.ravel()})):
        constants = [np.ravel(v.data) for v in ancestors([model.logp()]) if isinstance(v, Constant)]
        for name, data in values.items():
            assert name in model.named_vars
            assert not any(np.isin(data, c).all() for c in constants), f"{name} embedded as a constant"
