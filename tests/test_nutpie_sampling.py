"""nutpie's NUTS on a Numba-compiled PyMC density (bayes_se.nutpie_sampling), checked against a
posterior known in closed form: mu ~ N(0, 1), y_i ~ N(mu, 1) gives mu | y ~ N(sum y / (n + 1),
1 / (n + 1)); sigma ~ HalfNormal(1) does not enter the likelihood, so its posterior is its prior."""

import pathlib
import warnings

import numpy as np
import pytest

pm = pytest.importorskip("pymc")
pytest.importorskip("nutpie")
az = pytest.importorskip("arviz")

from bayes_se.mediation import positive_definite  # noqa: E402
from bayes_se.nutpie_sampling import compiled, sample_nutpie  # noqa: E402
from bayes_se.path_algebra import vec_to_matrix  # noqa: E402
from conftest import mcse_sd  # noqa: E402


@pytest.fixture(scope="module")
def model():
    y = np.array([0.3, 1.1, -0.2, 0.8, 0.5])
    with pm.Model(coords={"pair": ["x", "y"]}) as m:
        yd = pm.Data("y", y)
        mu = pm.Normal("mu", 0.0, 1.0)
        pm.HalfNormal("sigma", 1.0)
        pm.Normal("nu", 0.0, 1.0, dims="pair")
        pm.Deterministic("mu_twice", 2.0 * mu)
        pm.Potential("lik", pm.logp(pm.Normal.dist(mu, 1.0), yd).sum())
    return m


def exact_mu(y):
    return y.sum() / (y.size + 1), np.sqrt(1.0 / (y.size + 1))


def within_mcse(idata, var, mean, sd):
    """Posterior mean and sd of ``var`` within 4 Monte Carlo standard errors of the exact ones."""
    post = idata.posterior[[var]]
    m_err = float(az.mcse(post, method="mean")[var])
    assert abs(float(post[var].mean()) - mean) < 4 * m_err
    s_err = mcse_sd(post[var].values)
    assert abs(float(post[var].std()) - sd) < 4 * s_err


def test_matches_closed_form_posterior(model):
    pm.set_data({"y": np.array([0.3, 1.1, -0.2, 0.8, 0.5])}, model=model)
    idata = sample_nutpie(model, draws=1000, tune=500, chains=2, seed=11, target_accept=0.9)
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 1000
    mean, sd = exact_mu(np.array([0.3, 1.1, -0.2, 0.8, 0.5]))
    within_mcse(idata, "mu", mean, sd)
    within_mcse(idata, "sigma", np.sqrt(2 / np.pi), np.sqrt(1 - 2 / np.pi))  # the HalfNormal(1) prior
    assert float(idata.posterior["sigma"].min()) > 0  # its own scale, not the log
    np.testing.assert_allclose(idata.posterior["mu_twice"], 2 * idata.posterior["mu"], rtol=1e-12)
    assert idata.posterior["nu"].dims == ("chain", "draw", "pair")
    assert list(idata.posterior["pair"].values) == ["x", "y"]
    stats = idata.sample_stats
    for name in ("diverging", "energy", "tree_depth", "lp", "acceptance_rate", "step_size", "n_steps"):
        assert name in stats
    assert stats["diverging"].dtype == bool and int(stats["diverging"].sum()) == 0
    assert np.isfinite(az.bfmi(idata)).all()
    assert "y" in idata.constant_data


def test_same_seed_same_draws_and_new_data_reuse_the_compiled_density(model):
    pm.set_data({"y": np.array([0.3, 1.1, -0.2, 0.8, 0.5])}, model=model)
    first = compiled(model)
    a = sample_nutpie(model, draws=200, tune=200, chains=2, seed=5, target_accept=0.9)
    b = sample_nutpie(model, draws=200, tune=200, chains=2, seed=5, target_accept=0.9)
    c = sample_nutpie(model, draws=200, tune=200, chains=2, seed=6, target_accept=0.9)
    np.testing.assert_array_equal(a.posterior["mu"], b.posterior["mu"])
    assert not np.array_equal(a.posterior["mu"], c.posterior["mu"])
    # new data through pm.set_data: nothing is compiled again, and the posterior follows the data
    y = np.full(40, 3.0)
    pm.set_data({"y": y}, model=model)
    idata = sample_nutpie(model, draws=1000, tune=500, chains=2, seed=7, target_accept=0.9)
    assert compiled(model) is first
    within_mcse(idata, "mu", *exact_mu(y))


def test_positive_definite_closed_form_matches_eigenvalues():
    rng = np.random.default_rng(3)
    for p in (2, 3, 4):
        r = rng.uniform(-0.999, 0.999, (20000, p * (p - 1) // 2))
        R = vec_to_matrix(r, p)
        np.testing.assert_array_equal(positive_definite(R), np.linalg.eigvalsh(R)[:, 0] > 0)


def test_path_model_samplers_agree():
    """The path model's default sampler (nutpie on the compiled density) and PyMC's NUTS give the
    same posterior of a and b within Monte Carlo error, and the fit records which one ran."""
    from bayes_se.mediation_paths import fit_mediation_paths
    from bayes_se.report.mediation import sampler_text
    from bayes_se.reported_paths import load_paths

    data = load_paths(pathlib.Path(__file__).resolve().parents[1] / "data" / "self_efficacy_sim" / "mediation_paths.csv")
    fits = {s: fit_mediation_paths(data, seed=4, draws=400, tune=400, chains=2, sampler=s) for s in ("nutpie", "pymc")}
    for sampler, fit in fits.items():
        assert fit.settings["sampler"] == sampler and fit.idata.attrs["sampler"] == sampler
        assert fit.diagnostics.divergences == 0
        text = sampler_text(fit)  # what the report's mediation section says of the sampler
        assert ("nutpie 0." in text) if sampler == "nutpie" else ("sampler of PyMC 5." in text)
        assert "2 chains of 400 warm-up and 400 sampling iterations" in text and "seed 4." in text
    for var in ("a", "b", "tau_a"):
        means, errs = [], []
        for fit in fits.values():
            post = fit.idata.posterior[[var]]
            means.append(float(post[var].mean()))
            errs.append(float(az.mcse(post, method="mean")[var]))
        assert abs(means[0] - means[1]) < 4 * np.hypot(*errs), var


def _bcg():
    from bayes_se.data import load_effects

    return load_effects(pathlib.Path(__file__).resolve().parent / "reference" / "data" / "dat.bcg.csv")


def test_prior_draws_do_not_depend_on_the_prior_sampler_mode():
    """The prior (predictive) sampler is compiled without PyTensor's rewrites (sampling.PRIOR_MODE)
    for speed: numpy's generators draw the same values either way."""
    from bayes_se import sampling
    from bayes_se.builders.random_effects import build_random_effects
    from bayes_se.builders.three_level import build_three_level

    data = _bcg()
    cluster = [str(i // 3) for i in range(len(data.yi))]
    for built in (build_random_effects(data.yi, data.vi, study=data.study, effects="student_t"),
                  build_three_level(data.yi, data.vi, cluster, study=data.study)):
        draws = []
        for mode in ("FAST_RUN", sampling.PRIOR_MODE):
            with built.model, warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Potentials.*")
                prior = pm.sample_prior_predictive(draws=50, random_seed=9, compile_kwargs={"mode": mode})
            draws.append(prior)
        assert sampling.PRIOR_MODE != "FAST_RUN"
        free = {rv.name for rv in built.model.free_RVs}  # the parameters: the very same draws
        for group in draws[0].groups():  # the three-level model (a Potential) has no prior predictive
            for name in draws[0][group].data_vars:
                a, b = np.asarray(draws[0][group][name]), np.asarray(draws[1][group][name])
                if name in free:
                    np.testing.assert_array_equal(a, b, err_msg=name)
                else:  # computed from them (theta = mu + tau u; y around theta): equal to rounding
                    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15, err_msg=name)


def test_random_effects_samplers_agree_and_say_which_ran():
    """The default NUTS of the random-effects model (nutpie) and PyMC's give the same posterior
    within Monte Carlo error; the fit, its JSON record and the report's methods paragraph say which."""
    from bayes_se import api
    from bayes_se.report.methods import methods_paragraph

    data = _bcg()
    fits = {s: api.fit_random_effects(data.yi, data.vi, study=data.study, seed=3, draws=500, tune=500,
                                      chains=2, sampler=s) for s in ("nutpie", "pymc")}
    for sampler, fit in fits.items():
        assert fit.settings["sampler"] == sampler and fit.idata.attrs["sampler"] == sampler
        assert list(fit.idata.posterior["study"].values) == list(data.study)  # study effects, by label
        text = methods_paragraph(fit=fit, k=len(data.yi), settings=fit.settings)
        assert ("sampler of nutpie 0." in text) if sampler == "nutpie" else ("sampler of PyMC 5." in text)
    for var in ("mu", "tau"):
        means = [float(f.idata.posterior[var].mean()) for f in fits.values()]
        errs = [float(az.mcse(f.idata.posterior[[var]], method="mean")[var]) for f in fits.values()]
        assert abs(means[0] - means[1]) < 4 * np.hypot(*errs), var


def test_spec_chooses_the_nuts_sampler_and_tune_0_needs_pymc():
    import dataclasses

    from bayes_se import api
    from bayes_se.errors import SpecError
    from bayes_se.resources import spec_file
    from bayes_se.spec import load_spec

    spec = load_spec(spec_file("random_effects"))
    assert spec.sampler.nuts_sampler == "nutpie"
    assert load_spec(spec.to_toml()) == spec and 'nuts_sampler = "nutpie"' in spec.to_toml()
    with pytest.raises(SpecError, match="not one of nutpie, pymc") as err:
        load_spec(spec.to_toml().replace('nuts_sampler = "nutpie"', 'nuts_sampler = "stan"'))
    assert err.value.key == "sampler.nuts_sampler"
    data = _bcg()
    with pytest.raises(SpecError, match="tune = 0 needs nuts_sampler") as err:
        api.fit(data, spec, draws=20, tune=0, chains=1)
    assert err.value.key == "sampler.tune"
    pymc_spec = dataclasses.replace(spec, sampler=dataclasses.replace(spec.sampler, nuts_sampler="pymc"))
    fit = api.fit(data, pymc_spec, draws=20, tune=0, chains=1)
    assert fit.settings["sampler"] == "pymc"


def test_compiled_functions_do_not_keep_a_model_alive():
    """A model built for one fit (random effects, three-level) goes, with its compiled functions,
    when nothing else holds it: simulation studies fit thousands of them in one process."""
    import gc
    import weakref

    with pm.Model() as m:
        pm.Normal("x", 0.0, 1.0)
    first = compiled(m)
    assert compiled(m) is first  # cached while the model lives
    ref = weakref.ref(m)
    del m, first
    gc.collect()
    assert ref() is None


def test_random_effects_model_is_reused_for_new_data_with_the_draws_of_a_fresh_build(monkeypatch):
    """A second data set of the same shape reuses the built model (and nutpie's compiled density);
    its draws are those of a model built afresh, and a model built earlier still samples its own
    data after another data set was put in."""
    from bayes_se import sampling
    from bayes_se.builders import random_effects as builder

    data = _bcg()
    y2 = np.asarray(data.yi) + 0.3
    first = builder.build_random_effects(data.yi, data.vi, study=data.study)
    second = builder.build_random_effects(y2, data.vi, study=data.study)
    assert second.model is first.model
    assert builder.build_random_effects(data.yi, data.vi, study=list(data.study)[::-1]).model is not first.model
    kw = dict(draws=200, tune=200, chains=2, seed=8)
    reused = {"first": sampling.sample(first, **kw), "second": sampling.sample(second, **kw)}
    monkeypatch.setattr(builder, "MODEL_CACHE_SIZE", 0)  # build every model afresh
    for name, y in (("first", data.yi), ("second", y2)):
        fresh = builder.build_random_effects(y, data.vi, study=data.study)
        assert fresh.model is not first.model
        again = sampling.sample(fresh, **kw)
        for var in ("mu", "tau"):
            np.testing.assert_array_equal(reused[name].posterior[var], again.posterior[var], err_msg=name)
        np.testing.assert_array_equal(reused[name].posterior["theta"], again.posterior["theta"])
