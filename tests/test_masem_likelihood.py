"""The MASEM's closed-form likelihoods (kernel and symbolic) against the NumPy reference, the
likelihood option through the API and spec, and the participant-level trial simulator."""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bayes_se.builders.masem import LIKELIHOODS, build_masem, marginal_loglik  # noqa: E402
from bayes_se.correlations import CorrelationData, load_correlations  # noqa: E402
from bayes_se.errors import SpecError  # noqa: E402
from bayes_se.mediation_simulation import PATH_COLUMNS, simulate_mediation_trials  # noqa: E402

REFERENCE = Path(__file__).parent / "reference"
SIM = Path(__file__).resolve().parent.parent / "data" / "self_efficacy_sim"
SETTING = dict(a=0.25, b=-0.35, c_prime=-0.10, tau_a=0.10, tau_b=0.08, tau_c=0.05)


def _three_variable_data():
    """Simulated trials with every pattern of reported pairs: 3, 2 (each pair left out) and 1."""
    sim = simulate_mediation_trials(12, **SETTING, seed=4)
    data = load_correlations(sim.correlations, variables=["intervention", "self_efficacy", "symptoms"])
    obs = data.observed.copy()
    obs[1, 0] = obs[2, 1] = obs[3, 2] = False
    obs[4, [0, 1]] = False
    return CorrelationData(data.variables, data.study, data.n, np.where(obs, data.r, np.nan), obs)


def _craft():
    d = pd.read_csv(REFERENCE / "data" / "dat.craft2003.csv")
    table = d.rename(columns={"yi": "r", "ni": "n"})[["study", "n", "var1", "var2", "r"]]
    return load_correlations(table, variables=["perf", "acog", "asom", "conf"])


def _point_functions(data, likelihood, symbolic, grad=True):
    m = build_masem(data, likelihood=likelihood, symbolic=symbolic).model
    outs = [m["loglik"], m["rho"], m["tau"]] + ([m["Omega"]] if "Omega" in m.named_vars else [])
    values = m.compile_fn(m.replace_rvs_by_values(outs), inputs=m.value_vars, point_fn=True)
    if grad:
        grad = m.logp_dlogp_function(ravel_inputs=True)
        grad.set_extra_values({})
    return m, values, grad


@pytest.mark.parametrize("which", ["three", "craft2003"])
def test_closed_form_density_is_the_reference(which):
    """The kernel's likelihood equals marginal_loglik (one Cholesky per study) to 1e-10 at random
    parameter values, for every likelihood, every pattern of reported pairs and p = 3, 4."""
    data = _three_variable_data() if which == "three" else _craft()
    rng = np.random.default_rng(11)
    for likelihood in LIKELIHOODS:
        m, val_k, _ = _point_functions(data, likelihood, symbolic=False, grad=False)
        for _ in range(4):
            point = {k: rng.normal(scale=0.8, size=np.shape(v)) - (1.5 if "tau" in k else 0.0)
                     for k, v in m.initial_point().items()}
            ll_k, rho, tau, *omega = val_k(point)
            Omega = omega[0] if omega else np.ones((1, 1))
            ref = marginal_loglik(data, rho, tau[:, None] * Omega * tau[None, :], likelihood).sum()
            assert abs(ll_k - ref) < 1e-10, (likelihood, ll_k, ref)


@pytest.mark.parametrize("likelihood", [pytest.param("pooled", marks=pytest.mark.slow), "own",
                                        pytest.param("fisher_z", marks=pytest.mark.slow)])
def test_kernel_gradient_is_pytensor_autodiff(likelihood):
    """The kernel's gradient (analytic in T, complex step in R) equals PyTensor's autodiff of the
    symbolic closed form, which itself matches marginal_loglik."""
    data = _three_variable_data()
    rng = np.random.default_rng(5)
    m, _, grad_k = _point_functions(data, likelihood, symbolic=False)
    _, val_s, grad_s = _point_functions(data, likelihood, symbolic=True)
    x0 = np.concatenate([np.ravel(v) for v in m.initial_point().values()])
    point = {k: rng.normal(scale=0.8, size=np.shape(v)) - (1.5 if "tau" in k else 0.0)
             for k, v in m.initial_point().items()}
    ll_s, rho, tau, Omega = val_s(point)
    ref = marginal_loglik(data, rho, tau[:, None] * Omega * tau[None, :], likelihood).sum()
    assert abs(ll_s - ref) < 1e-10
    for _ in range(3):
        x = x0 + rng.normal(scale=0.8, size=x0.size)
        (vk, gk), (vs, gs) = grad_k(x), grad_s(x)
        np.testing.assert_allclose(vk, vs, rtol=0, atol=1e-9)
        np.testing.assert_allclose(gk, gs, rtol=1e-9, atol=1e-9)


def test_unknown_likelihood_is_a_spec_error():
    with pytest.raises(SpecError, match="likelihood") as err:
        build_masem(_three_variable_data(), likelihood="wishart")
    assert err.value.key == "mediation.likelihood"


def test_spec_likelihood_key_is_validated(tmp_path):
    from bayes_se.spec import load_spec

    text = Path("models/mediation.toml").read_text().replace('likelihood = "pooled"', 'likelihood = "fisherz"')
    (tmp_path / "m.toml").write_text(text)
    with pytest.raises(SpecError) as err:
        load_spec(tmp_path / "m.toml")
    assert err.value.key == "mediation.likelihood"
    assert load_spec("models/mediation.toml").mediation.likelihood == "pooled"


def test_fisher_z_fit_records_its_likelihood(tmp_path):
    """A small MCMC fit: the likelihood is recorded, survives load_fit, and the summary says that
    tau is on the z scale."""
    from bayes_se.api import load_fit
    from bayes_se.mediation import fit_mediation

    sim = simulate_mediation_trials(10, **SETTING, seed=9)
    fit = fit_mediation(sim.correlations, seed=3, draws=150, tune=150, chains=2, cores=1, mc_draws=8,
                        likelihood="fisher_z")
    assert fit.settings["likelihood"] == "fisher_z"
    s = fit.summary(level=0.9)
    assert np.all(np.isfinite(s["mean"]))
    assert abs(s.loc["a", "q50"] - 0.25) < 4 * s.loc["a", "sd"] + 0.05
    assert "Fisher z" in "\n".join(fit._footer())
    ll = fit.idata.log_likelihood["r"].values
    assert ll.shape[-1] == 10 and np.all(np.isfinite(ll))
    path = tmp_path / "fit.nc"
    fit.to_netcdf(path)
    again = load_fit(path)
    assert again.settings["likelihood"] == "fisher_z"


def test_own_likelihood_warns_that_it_is_biased():
    """'own' is kept for comparison, but the calibration study found it biased: choosing it warns
    (a MethodWarning, which the CLI prints as one line) before anything is sampled."""
    import warnings

    from bayes_se.errors import MethodWarning
    from bayes_se.mediation import fit_mediation

    sim = simulate_mediation_trials(6, **SETTING, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MethodWarning)
        with pytest.raises(MethodWarning, match="biased away from 0.*docs/calibration.md"):
            fit_mediation(sim.correlations, seed=3, likelihood="own")


def test_simulator_tables_and_truths():
    sim = simulate_mediation_trials(40, **SETTING, rho_ab=0.3, missing_my=0.5, seed=1)
    assert list(sim.paths.columns) == list(PATH_COLUMNS)
    assert list(sim.correlations.columns) == ["study", "n", "var1", "var2", "r"]
    assert sim.paths["n"].between(60, 300).all() and (sim.paths["cov_ab"] == 0).all()
    per_study = sim.correlations.groupby("study").size()
    assert set(per_study) <= {2, 3} and (per_study == 2).any() and (per_study == 3).any()
    # a = r_XM exactly; se_a = sqrt((1 - a^2) / (n - 2))
    r_xm = sim.correlations[sim.correlations["var2"] == "self_efficacy"].set_index("study")["r"]
    np.testing.assert_allclose(sim.paths.set_index("study")["a"], r_xm, rtol=1e-12)
    np.testing.assert_allclose(sim.paths["se_a"], np.sqrt((1 - sim.paths["a"] ** 2) / (sim.paths["n"] - 2)))
    t = sim.truth
    assert t["indirect_avg"] == pytest.approx(0.25 * -0.35 + 0.3 * 0.10 * 0.08)
    assert t["rho[intervention,symptoms]"] == pytest.approx(-0.10 + 0.25 * -0.35 + 0.3 * 0.10 * 0.08)
    assert t["rho[self_efficacy,symptoms]"] == pytest.approx(-0.35 + 0.25 * -0.10)
    assert t["redraws"] == 0


def test_simulator_correlations_centre_on_the_mean_matrix():
    """With huge trials the sample correlations are the trials' population correlations, whose
    average over trials is E[R_i] (up to the between-trial spread / sqrt(k))."""
    k = 400
    sim = simulate_mediation_trials(k, **SETTING, rho_ab=-0.5, n_range=(20000, 20000), seed=2)
    c = sim.correlations
    r_xm = c[c["var2"] == "self_efficacy"]["r"].to_numpy()
    r_my = c[c["var1"] == "self_efficacy"]["r"]
    np.testing.assert_allclose(r_xm, sim.study_paths["a"].to_numpy(), atol=0.03)
    se = 0.15 / np.sqrt(k)
    assert abs(r_xm.mean() - sim.truth["rho[intervention,self_efficacy]"]) < 4 * se + 0.003
    assert abs(r_my.mean() - sim.truth["rho[self_efficacy,symptoms]"]) < 4 * se + 0.003


def test_builds_share_a_cached_model_and_each_samples_its_own_data():
    """A second build with the same variables, likelihood and priors reuses the first's PyMC model
    (so what was compiled for it is reused); each build puts its own data back before sampling."""
    from bayes_se.builders.masem_likelihood import shared_values

    first = _three_variable_data()
    sim = simulate_mediation_trials(20, **SETTING, seed=9)
    second = load_correlations(sim.correlations, variables=["intervention", "self_efficacy", "symptoms"])
    b1, b2 = build_masem(first), build_masem(second)
    assert b1.model is b2.model
    for built, data in ((b1, first), (b2, second), (b1, first)):
        built.set_data()
        np.testing.assert_array_equal(built.model["y"].get_value(), shared_values(data, "pooled")["y"])
        np.testing.assert_array_equal(built.model["n"].get_value(), np.asarray(data.n, float))
    assert build_masem(first, likelihood="fisher_z").model is not b1.model
    assert build_masem(first, priors={"eta": 3.0}).model is not b1.model
    assert build_masem(first, symbolic=True).model is not build_masem(first, symbolic=True).model


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_same_draws_with_empty_and_filled_compile_caches(tmp_path, sampler):
    """The first process after installing (empty Numba and PyTensor caches, the MASEM kernel
    compiled afresh) gives the draws of every later process (caches filled). About 40 s."""
    import subprocess
    import sys

    script = ("import hashlib, numpy as np\n"
              "from bayes_se.mediation import fit_mediation\n"
              f"fit = fit_mediation({str(SIM / 'mediation_correlations.csv')!r}, seed=11, draws=200, tune=200, "
              f"chains=2, cores=1, mc_draws=4, sampler={sampler!r})\n"
              "post = fit.idata.posterior\n"
              "print(hashlib.sha256(np.asarray(post['rho']).tobytes() + np.asarray(post['tau']).tobytes())"
              ".hexdigest())\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "PYTENSOR_FLAGS": f"compiledir={tmp_path / 'pytensor'}"}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    first, second = (run.stdout.strip().splitlines()[-1] for run in runs)
    assert first == second
