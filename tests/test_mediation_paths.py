"""The path-based mediation model: reported (a, b, c') of each trial, and correlation matrices mixed in.

Checks: the loader's errors (row and column named), the matrix -> paths conversion and its
delta-method covariance (numerical derivatives and a Monte Carlo of sample correlations), the
closed-form marginal density against scipy (NumPy and the PyMC model), the exact conditional draws
of the trials' own paths, recovery on trials simulated at the participant level
(scripts/simulate_mediation_paths.py), mixed input, the CLI's JSON layout, netCDF round trip.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from bayes_se import cli
from bayes_se.builders.mediation_paths import (build_mediation_paths, conditional_theta, marginal_loglik,
                                               resolve_path_priors)
from bayes_se.correlations import load_correlations
from bayes_se.errors import DataError, SpecError
from bayes_se.reported_paths import PATH_NAMES, combine_paths, load_paths, paths_from_correlations

REPO = pathlib.Path(__file__).resolve().parents[1]
SIM = REPO / "data" / "self_efficacy_sim"
PATHS_CSV = SIM / "mediation_paths.csv"
CORR_CSV = SIM / "mediation_correlations.csv"
SPEC = REPO / "models" / "mediation_paths.toml"
XMY = ("intervention", "self_efficacy", "symptoms")
#: small MCMC settings of the fits below (fixed seed)
SMALL = dict(draws=300, tune=300, chains=2, seed=11)


def _generator():
    spec = importlib.util.spec_from_file_location("simulate_mediation_paths",
                                                  REPO / "scripts" / "simulate_mediation_paths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(**overrides):
    base = {"study": ["s1", "s2", "s3"], "a": [0.2, 0.3, 0.1], "se_a": [0.1, 0.1, 0.1],
            "b": [-0.3, -0.2, -0.25], "se_b": [0.1, 0.1, 0.1]}
    base.update(overrides)
    return pd.DataFrame(base)


# -- loader -------------------------------------------------------------------------------------------
def test_load_paths_reads_bundled_table_and_marks_missing_c_prime():
    data = load_paths(PATHS_CSV)
    assert data.k == 20 and list(data.study[:2]) == ["Sim-P01", "Sim-P02"]
    assert data.est.shape == (20, 3) and data.cov.shape == (20, 3, 3)
    assert set(data.source) == {"paths"}
    missing = ~data.observed[:, 2]
    assert list(data.study[missing]) == ["Sim-P05", "Sim-P10", "Sim-P15", "Sim-P20"]
    assert np.isnan(data.cov[missing, 2, :]).all() and np.isnan(data.cov[missing, :, 2]).all()
    np.testing.assert_allclose(data.cov[0, 0, 0], 0.049**2)
    assert data.cov[0, 0, 1] == 0.0 and data.n[0] == 379


def test_load_paths_european_csv_and_unknown_columns(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("study;a;se_a;b;se_b;cov_ab;note\nA;0,25;0,08;-0,3;0,07;0,001;x\nB;0,3;0,1;-0,2;0,09;;y\n",
                    encoding="utf-8")
    data = load_paths(path)
    np.testing.assert_allclose(data.est[:, :2], [[0.25, -0.3], [0.3, -0.2]])
    assert data.cov[0, 0, 1] == data.cov[0, 1, 0] == 0.001 and data.cov[1, 0, 1] == 0.0
    assert not data.observed[:, 2].any() and np.isnan(data.n).all()


@pytest.mark.parametrize("overrides, row, column", [
    ({"se_a": [0.1, 0.0, 0.1]}, 2, "se_a"),
    ({"se_b": [0.1, -0.1, 0.1]}, 2, "se_b"),
    ({"se_b": [0.1, np.nan, 0.1]}, 2, "se_b"),
    ({"b": [-0.3, np.nan, -0.2]}, 2, "b"),
    ({"a": [0.2, np.nan, 0.1], "se_a": [0.1, np.nan, 0.1]}, 2, "a"),
    ({"a": [0.2, "abc", 0.1]}, 2, "a"),
    ({"study": ["s1", "s2", "s1"]}, 3, "study"),
    ({"study": ["s1", None, "s3"]}, 2, "study"),
    ({"cov_ab": [0.0, 0.02, 0.0]}, 2, "cov_ab"),
    ({"c_prime": [-0.1, np.nan, np.nan], "se_c_prime": [0.1, np.nan, np.nan],
      "cov_b_c_prime": [-0.011, np.nan, np.nan]}, 1, "cov_b_c_prime"),
    ({"cov_a_c_prime": [0.001, np.nan, np.nan]}, 1, "cov_a_c_prime"),
    ({"n": [100, -5, 80]}, 3 - 1, "n"),
    ({"c_prime": [-0.1, -0.1, 0.0], "se_c_prime": [0.1, 0.1, np.nan]}, 3, "se_c_prime"),
])
def test_load_paths_errors_name_row_and_column(overrides, row, column):
    with pytest.raises(DataError) as info:
        load_paths(_table(**overrides))
    assert info.value.row == row and info.value.column == column, str(info.value)
    assert f"row {row}" in str(info.value) and f"column '{column}'" in str(info.value)


def test_load_paths_table_level_errors():
    with pytest.raises(DataError, match="at least 2 studies") as info:
        load_paths(_table().iloc[:1])
    assert info.value.column == "study"
    with pytest.raises(DataError, match="no study reports b") as info:
        load_paths(_table(b=[np.nan] * 3, se_b=[np.nan] * 3))
    assert info.value.column == "b"
    with pytest.raises(DataError, match="column 'se_a'"):
        load_paths(_table().drop(columns="se_a"))


# -- correlation matrices -> paths ------------------------------------------------------------------
def _corr_frame(rows):
    out = []
    for study, n, r_xm, r_xy, r_my in rows:
        for (v1, v2), r in zip((XMY[:2], (XMY[0], XMY[2]), XMY[1:]), (r_xm, r_xy, r_my)):
            if r is not None:
                out.append({"study": study, "n": n, "var1": v1, "var2": v2, "r": r})
    return pd.DataFrame(out)


def test_paths_from_correlations_values_and_numerical_jacobian():
    from bayes_se.correlations import olkin_siotani

    data = load_correlations(_corr_frame([("S1", 150, 0.3, -0.2, -0.4), ("S2", 90, 0.25, None, -0.35)]),
                             variables=XMY)
    p = paths_from_correlations(data, *XMY)
    r_xm, r_xy, r_my = 0.3, -0.2, -0.4
    d = 1 - r_xm**2
    np.testing.assert_allclose(p.est[0], [r_xm, (r_my - r_xm * r_xy) / d, (r_xy - r_xm * r_my) / d], rtol=1e-14)
    assert list(p.source) == ["matrix", "matrix"]

    def f(r):
        dd = 1 - r[0] ** 2
        return np.array([r[0], (r[2] - r[0] * r[1]) / dd, (r[1] - r[0] * r[2]) / dd])

    r0, h = np.array([r_xm, r_xy, r_my]), 1e-6
    J = np.column_stack([(f(r0 + h * e) - f(r0 - h * e)) / (2 * h) for e in np.eye(3)])
    R = np.array([[1, r_xm, r_xy], [r_xm, 1, r_my], [r_xy, r_my, 1]])
    np.testing.assert_allclose(p.cov[0], J @ olkin_siotani(R, 150) @ J.T, rtol=1e-7, atol=1e-12)
    # a study without the full matrix gives a only, with the variance of a correlation
    assert p.observed[1].tolist() == [True, False, False]
    np.testing.assert_allclose(p.cov[1, 0, 0], (1 - 0.25**2) ** 2 / 89, rtol=1e-14)


def test_delta_method_covariance_matches_monte_carlo_of_sample_correlations():
    """Sample correlations of normal data (n = 200): the covariance of the derived paths over 20,000
    samples agrees with J Psi J' / (n - 1) at the true correlations."""
    from bayes_se.correlations import CorrelationData

    rng = np.random.default_rng(5)
    R = np.array([[1, 0.3, -0.2], [0.3, 1, -0.4], [-0.2, -0.4, 1]])
    n, reps = 200, 20000
    z = rng.standard_normal((reps, n, 3)) @ np.linalg.cholesky(R).T
    z -= z.mean(axis=1, keepdims=True)
    C = np.einsum("rni,rnj->rij", z, z)
    s = np.sqrt(np.diagonal(C, axis1=1, axis2=2))
    r = C / s[:, :, None] / s[:, None, :]
    r_xm, r_xy, r_my = r[:, 0, 1], r[:, 0, 2], r[:, 1, 2]
    d = 1 - r_xm**2
    draws = np.column_stack([r_xm, (r_my - r_xm * r_xy) / d, (r_xy - r_xm * r_my) / d])
    truth = CorrelationData(variables=XMY, study=np.array(["T"]), n=np.array([float(n)]),
                            r=np.array([[0.3, -0.2, -0.4]]), observed=np.ones((1, 3), bool))
    V = paths_from_correlations(truth, *XMY).cov[0]
    emp = np.cov(draws.T)
    sd = np.sqrt(np.diag(V))
    np.testing.assert_allclose(np.diag(emp), np.diag(V), rtol=0.05)
    assert np.all(np.abs(emp - V) < 0.05 * np.outer(sd, sd))


def test_paths_from_correlations_refuses_study_without_r_xm_and_combine_refuses_duplicates():
    data = load_correlations(_corr_frame([("S1", 150, 0.3, -0.2, -0.4), ("S2", 90, None, -0.2, -0.35)]),
                             variables=XMY)
    with pytest.raises(DataError, match="'S2' reports no correlation of intervention and self_efficacy"):
        paths_from_correlations(data, *XMY)
    with pytest.raises(DataError, match="no variable 'mood'"):
        paths_from_correlations(data, "intervention", "mood", "symptoms")
    good = paths_from_correlations(load_correlations(_corr_frame([("s2", 150, 0.3, -0.2, -0.4),
                                                                  ("S9", 90, 0.3, -0.2, -0.35)]), variables=XMY),
                                   *XMY)
    with pytest.raises(DataError, match="study 's2' is in both"):
        combine_paths(load_paths(_table()), good)
    both = combine_paths(load_paths(_table(study=["s1", "s3", "s4"])), good)
    assert both.k == 5 and list(both.source) == ["paths"] * 3 + ["matrix"] * 2


# -- density --------------------------------------------------------------------------------------------
def _mixed_patterns():
    rng = np.random.default_rng(3)
    k = 9
    table = pd.DataFrame({"study": [f"s{i}" for i in range(k)], "a": rng.normal(0.2, 0.1, k),
                          "se_a": rng.uniform(0.05, 0.1, k), "b": rng.normal(-0.3, 0.1, k),
                          "se_b": rng.uniform(0.05, 0.1, k), "c_prime": rng.normal(-0.1, 0.1, k),
                          "se_c_prime": rng.uniform(0.05, 0.1, k), "cov_ab": 0.0004, "cov_b_c_prime": -0.001,
                          "cov_a_c_prime": 0.0003})
    table.loc[[2, 5], ["c_prime", "se_c_prime", "cov_b_c_prime", "cov_a_c_prime"]] = np.nan
    table.loc[[3], ["b", "se_b", "cov_ab", "cov_b_c_prime"]] = np.nan
    table.loc[[6], ["b", "se_b", "c_prime", "se_c_prime", "cov_ab", "cov_b_c_prime", "cov_a_c_prime"]] = np.nan
    return load_paths(table)


def _scipy_loglik(data, mu, tau, rho):
    T = np.diag(np.asarray(tau) ** 2)
    T[0, 1] = T[1, 0] = rho * tau[0] * tau[1]
    out = []
    for i in range(data.k):
        o = np.flatnonzero(data.observed[i])
        out.append(multivariate_normal(np.asarray(mu)[o], (data.cov[i] + T)[np.ix_(o, o)]).logpdf(data.est[i, o]))
    return np.array(out)


def test_marginal_density_matches_scipy_at_random_parameters():
    data = _mixed_patterns()
    assert {tuple(np.flatnonzero(o)) for o in data.observed} == {(0, 1, 2), (0, 1), (0, 2), (0,)}
    rng = np.random.default_rng(8)
    for _ in range(5):
        mu, tau, rho = rng.normal(0, 0.3, 3), rng.uniform(0.01, 0.4, 3), rng.uniform(-0.95, 0.95)
        np.testing.assert_allclose(marginal_loglik(data, mu, tau, rho), _scipy_loglik(data, mu, tau, rho),
                                   rtol=0, atol=1e-10)
    # vectorised over draws
    mus, taus, rhos = rng.normal(0, 0.3, (4, 3)), rng.uniform(0.01, 0.4, (4, 3)), rng.uniform(-0.9, 0.9, 4)
    batch = marginal_loglik(data, mus, taus, rhos)
    for j in range(4):
        np.testing.assert_allclose(batch[j], _scipy_loglik(data, mus[j], taus[j], rhos[j]), atol=1e-10)


def test_pymc_model_density_matches_scipy():
    from scipy.special import logit

    data = _mixed_patterns()
    built = build_mediation_paths(data)
    model = built.model
    fn = model.compile_logp(vars=model.potentials, jacobian=False)
    rng = np.random.default_rng(9)
    for _ in range(3):
        mu, tau, rho = rng.normal(0, 0.3, 3), rng.uniform(0.01, 0.4, 3), rng.uniform(-0.95, 0.95)
        point = model.initial_point()
        point.update({"a": mu[0], "b": mu[1], "c_prime": mu[2], "tau_a_log__": np.log(tau[0]),
                      "tau_b_log__": np.log(tau[1]), "tau_c_log__": np.log(tau[2]),
                      "rho_ab_beta_logodds__": logit((rho + 1) / 2)})
        np.testing.assert_allclose(float(fn(point)), _scipy_loglik(data, mu, tau, rho).sum(), rtol=0, atol=1e-10)


def test_model_without_c_prime_leaves_it_out():
    built = build_mediation_paths(load_paths(_table()))
    names = {v.name for v in built.model.free_RVs}
    assert names == {"a", "b", "tau_a", "tau_b", "rho_ab_beta"} and not built.has_c


def test_priors_are_checked():
    with pytest.raises(SpecError, match="priors.tau_b"):
        resolve_path_priors({"tau_b": "normal(0, 1)"})
    with pytest.raises(SpecError, match="priors.mu"):
        resolve_path_priors({"mu": "normal(0, 1)"})
    with pytest.raises(SpecError, match="priors.eta"):
        resolve_path_priors({"eta": 0})
    assert str(resolve_path_priors({"a": "normal(0, 0.5)"})["a"]) == "a ~ Normal(0, 0.5)"


def test_conditional_theta_draws_have_the_exact_conditional_law():
    """Pathwise conditioning gives mean mu + T P'(S + T)_oo^-1 (est - mu)_o and the matching covariance."""
    data = _mixed_patterns()
    mu, tau, rho = np.array([0.2, -0.3, -0.1]), np.array([0.1, 0.15, 0.05]), 0.4
    T = np.diag(tau**2)
    T[0, 1] = T[1, 0] = rho * tau[0] * tau[1]
    reps = 40000
    draws = conditional_theta(data, np.tile(mu, (reps, 1)), np.tile(tau, (reps, 1)), np.full(reps, rho),
                              np.random.default_rng(1))
    for i in range(data.k):
        o = np.flatnonzero(data.observed[i])
        gain = T[:, o] @ np.linalg.inv((data.cov[i] + T)[np.ix_(o, o)])
        mean = mu + gain @ (data.est[i, o] - mu[o])
        cov = T - gain @ T[o, :]
        sd = np.sqrt(np.diag(cov))
        np.testing.assert_allclose(draws[:, i].mean(0), mean, atol=5 * sd.max() / np.sqrt(reps))
        np.testing.assert_allclose(np.cov(draws[:, i].T), cov, atol=0.05 * sd.max() ** 2)


# -- fits ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundled_fit():
    from bayes_se.mediation_paths import fit_mediation_paths

    return fit_mediation_paths(PATHS_CSV, **SMALL)


def test_fit_on_bundled_paths(bundled_fit, tmp_path):
    from bayes_se.api import load_fit
    from bayes_se.mediation_paths import PATH_MEDIATION_NAMES

    fit = bundled_fit
    table = fit.summary()
    assert list(table.index) == list(PATH_MEDIATION_NAMES)
    assert {"ess_bulk", "ess_tail", "r_hat"} <= set(table.columns)
    truth = json.loads((SIM / "mediation_paths_generating_values.json").read_text(encoding="utf-8"))
    for name in ("a", "b", "c_prime"):
        assert abs(table.loc[name, "mean"] - truth[name]) < 4 * table.loc[name, "sd"], name
    post = fit.idata.posterior
    # derived effects are the stated functions of the draws
    a, b = fit.draws("a"), fit.draws("b")
    np.testing.assert_allclose(fit.draws("indirect"), a * b)
    np.testing.assert_allclose(fit.draws("indirect_avg"), a * b + fit.draws("rho_ab") * fit.draws("tau_a")
                               * fit.draws("tau_b"))
    np.testing.assert_allclose(fit.draws("total"), fit.draws("c_prime") + a * b)
    assert post["theta"].dims == ("chain", "draw", "study", "path")
    assert list(post["theta"].coords["study"].values) == list(fit.data.study)
    assert {"effects"} <= set(fit.idata.prior.data_vars)
    for group in ("prior_predictive", "posterior_predictive", "log_likelihood", "observed_data"):
        assert group in fit.idata.groups()
    assert fit.idata.log_likelihood["est"].shape[-1] == 20
    assert fit.sources() == {"paths": list(fit.data.study), "matrix": []}
    study = fit.study_summary()
    assert len(study) == 60 and study["est"].isna().sum() == 4
    # netCDF round trip through load_fit
    path = fit.to_netcdf(tmp_path / "fit.nc")
    back = load_fit(path)
    assert type(back).__name__ == "PathMediationFit"
    pd.testing.assert_frame_equal(back.summary(), table)
    assert list(back.data.source) == ["paths"] * 20 and back.priors == fit.priors


def test_recovery_on_participant_level_trials():
    """k = 30 trials simulated at the participant level (not from the model): the pooled a and b
    lie within 3 posterior SDs of the generating values."""
    from bayes_se.mediation_paths import fit_mediation_paths

    gen = _generator()
    table, _ = gen.simulate_trials(np.random.default_rng(2024), 30)
    fit = fit_mediation_paths(table, **SMALL)
    summary = fit.summary()
    for name in ("a", "b", "c_prime"):
        assert abs(summary.loc[name, "mean"] - gen.GENERATING[name]) < 3 * summary.loc[name, "sd"], name
    truth = gen.GENERATING["a"] * gen.GENERATING["b"]
    assert abs(summary.loc["indirect", "mean"] - truth) < 3 * summary.loc["indirect", "sd"]
    assert fit.diagnostics.divergences == 0


def test_mixed_input_beats_either_alone(bundled_fit):
    from bayes_se.mediation_paths import fit_mediation_paths

    corr = load_correlations(CORR_CSV, variables=XMY)
    matrices = fit_mediation_paths(None, correlations=corr, **SMALL)
    mixed = fit_mediation_paths(PATHS_CSV, correlations=corr, **SMALL)
    assert mixed.k == 35 and mixed.sources()["matrix"] == list(corr.study)
    assert set(mixed.idata.observed_data["source"].values.tolist()) == {"paths", "matrix"}
    for name in ("a", "b", "indirect"):
        sd_mixed = mixed.summary().loc[name, "sd"]
        assert sd_mixed < bundled_fit.summary().loc[name, "sd"], name
        assert sd_mixed < matrices.summary().loc[name, "sd"], name


def test_notes_warn_when_total_covers_zero(bundled_fit):
    import copy

    fit = copy.copy(bundled_fit)
    fit.idata = copy.deepcopy(bundled_fit.idata)
    eff = fit.idata.posterior["effects"]
    total = eff.sel(effect="total")
    eff.loc[{"effect": "total"}] = total - total.mean()  # centred on 0
    notes = fit.notes()
    assert len(notes) == 1 and "prop_mediated" in notes[0] and "unstable" in notes[0]
    assert any(line.startswith("warning:") for line in fit.print_summary().splitlines())
    assert bundled_fit.notes() == []


# -- CLI -------------------------------------------------------------------------------------------------------
def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_layout_and_out_folder(capsys, tmp_path):
    from bayes_se.api import load_fit

    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "fit", SPEC, "--data", PATHS_CSV, "--json", "--draws", 100, "--tune", 100,
                             "--chains", 2, "--out", out_dir)
    assert code == 0, err
    res = json.loads(out)
    for name in ("a", "b", "c_prime", "indirect", "indirect_avg"):
        assert {"mean", "sd", "q2.5", "q50", "q97.5"} <= set(res["parameters"][name]), name
    assert isinstance(res["diagnostics"]["passed"], bool)
    assert res["engine"] == "mediation_paths" and res["k"] == 20
    assert res["sources"]["paths"][0] == "Sim-P01"
    assert load_fit(out_dir / "idata.nc").k == 20
    assert "a = \"normal(0, 1)\"" in (out_dir / "spec.toml").read_text(encoding="utf-8")


def test_cli_mixed_input_and_bad_input(capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("study,a,se_a,b,se_b\nA,0.2,0.1,-0.3,0\nB,0.3,0.1,-0.2,0.1\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "fit", SPEC, "--data", bad, "--json")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "row 1, column 'se_b'" in err
    code, out, err = run_cli(capsys, "fit", REPO / "models" / "mediation.toml", "--data", CORR_CSV,
                             "--correlations", CORR_CSV)
    assert code == 2 and err.count("\n") == 1 and "--correlations" in err
    code, out, err = run_cli(capsys, "fit", SPEC, "--data", PATHS_CSV, "--prior", "tau_a=normal(0, 1)")
    assert code == 2 and err.count("\n") == 1 and "priors.tau_a" in err


def test_cli_missing_files_are_told_first(capsys, tmp_path):
    """A mistyped --data or --correlations is one line, before any model is built."""
    for argv, words in ((("--data", tmp_path / "nothere.csv"), "file not found"),
                        (("--data", PATHS_CSV, "--correlations", tmp_path), "is a folder")):
        code, out, err = run_cli(capsys, "fit", SPEC, *argv)
        assert code == 2 and out == "" and err.count("\n") == 1 and words in err, err


def test_spec_keys_are_validated():
    from bayes_se.spec import load_spec

    base = '[model]\ntype = "mediation_paths"\n'
    for text, key in ((base + '[priors]\nmu = "normal(0, 1)"\n', "priors.mu"),
                      (base + '[priors]\ntau_c = "normal(0, 1)"\n', "priors.tau_c"),
                      (base + '[mediation]\nx = "a"\nm = "a"\n', "mediation.y"),
                      (base + '[mediation]\npaths = "y ~ x"\n', "mediation.paths"),
                      (base + '[mediation]\neta = 0.0\n', "mediation.eta"),
                      (base + '[sampler]\nengine = "exact"\n', "sampler.engine"),
                      ('[model]\ntype = "mediation"\n[mediation]\ncorrelations = "c.csv"\n',
                       "mediation.correlations")):
        with pytest.raises(SpecError) as info:
            load_spec(text)
        assert info.value.key == key, text
    spec = load_spec(SPEC)
    assert spec.model.type == "mediation_paths" and set(spec.priors) == set(PATH_NAMES) | {"tau_a", "tau_b", "tau_c"}


def test_api_fit_without_c_prime_leaves_c_prime_rows_out():
    """``bayes_se.fit(paths, "mediation_paths")``: a table with no c' gives a, b and the indirect
    effects, no c_prime, total, prop_mediated or tau_c."""
    import bayes_se as bse

    table = pd.read_csv(PATHS_CSV).drop(columns=["c_prime", "se_c_prime"])
    fit = bse.fit(table, "mediation_paths", draws=100, tune=100, chains=2, seed=3)
    assert isinstance(fit, bse.PathMediationFit)
    assert list(fit.summary().index) == ["a", "b", "indirect", "indirect_avg", "indirect_new", "tau_a", "tau_b",
                                         "rho_ab"]
    assert fit.notes() == [] and fit.settings["paths"] == ["a", "b"]
    assert np.isnan(fit.idata.posterior["theta"].sel(path="c_prime")).all()
    assert set(fit.study_summary()["path"]) == {"a", "b"}
    assert fit.to_dict()["parameters"]["indirect"]["q50"] < 0


def test_prior_scale_warning_for_unstandardised_paths():
    from bayes_se.errors import PriorScaleWarning
    from bayes_se.mediation_paths import check_path_prior_scale

    table = pd.read_csv(PATHS_CSV)
    priors = resolve_path_priors()
    assert check_path_prior_scale(load_paths(table), priors) == []
    raw = table.assign(a=table["a"] * 40, se_a=table["se_a"] * 40)  # a in scale points
    with pytest.warns(PriorScaleWarning, match="reported a .*unstandardised"):
        texts = check_path_prior_scale(load_paths(raw), priors)
    assert len(texts) == 1
    assert check_path_prior_scale(load_paths(raw), resolve_path_priors({"a": "normal(0, 50)", "tau_a": "half_normal(10)"})) == []


def test_generating_script_reproduces_committed_files(tmp_path):
    from conftest import assert_csv_close, assert_json_close

    assert _generator().main(["--out", str(tmp_path)]) == 0
    assert_csv_close(tmp_path / "mediation_paths.csv", PATHS_CSV)
    name = "mediation_paths_generating_values.json"
    assert_json_close(json.loads((tmp_path / name).read_text(encoding="utf-8")),
                      json.loads((SIM / name).read_text(encoding="utf-8")))


def test_spec_record_writes_every_path_prior():
    from bayes_se.outputs import spec_record_text
    from bayes_se.spec import load_spec

    spec = load_spec('[model]\ntype = "mediation_paths"\n[priors]\ntau_b = "half_normal(0.1)"\n')
    record = load_spec(spec_record_text(spec))
    assert {k: v.spec_text() for k, v in record.priors.items()} == {
        "a": "normal(0, 1)", "b": "normal(0, 1)", "c_prime": "normal(0, 1)", "tau_a": "half_normal(0.2)",
        "tau_b": "half_normal(0.1)", "tau_c": "half_normal(0.2)"}


# -- compiled density (Numba Op) -------------------------------------------------------------------------
def _T_of(tau, rho):
    T = np.diag(np.asarray(tau, float) ** 2)
    T[0, 1] = T[1, 0] = rho * tau[0] * tau[1]
    return T


def test_compiled_density_equals_reference_and_its_gradient_matches_finite_differences():
    from bayes_se.builders.mediation_paths_kernel import loglik_and_grad, masked_arrays

    data = _mixed_patterns()
    arrays = masked_arrays(data.est, data.cov, data.observed)
    rng = np.random.default_rng(11)
    for _ in range(5):
        mu, tau, rho = rng.normal(0, 0.3, 3), rng.uniform(0.01, 0.4, 3), rng.uniform(-0.95, 0.95)
        value, dmu, dT = loglik_and_grad(mu, _T_of(tau, rho), *arrays)
        assert abs(value - marginal_loglik(data, mu, tau, rho).sum()) < 1e-10
        h = 1e-6
        for j in range(3):  # central differences in mu
            step = np.eye(3)[j] * h
            fd = (loglik_and_grad(mu + step, _T_of(tau, rho), *arrays)[0]
                  - loglik_and_grad(mu - step, _T_of(tau, rho), *arrays)[0]) / (2 * h)
            assert abs(dmu[j] - fd) < 1e-6 * max(1.0, abs(fd)), j
        T0 = _T_of(tau, rho)
        for i, j in [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]:  # symmetric perturbations of T
            E = np.zeros((3, 3))
            E[i, j] = E[j, i] = h
            fd = (loglik_and_grad(mu, T0 + E, *arrays)[0] - loglik_and_grad(mu, T0 - E, *arrays)[0]) / (2 * h)
            analytic = dT[i, j] if i == j else dT[i, j] + dT[j, i]
            assert abs(analytic - fd) < 1e-5 * max(1.0, abs(fd)), (i, j)


def test_model_gradient_matches_finite_differences_and_cached_model_swaps_data():
    from scipy.special import logit

    data = _mixed_patterns()
    built = build_mediation_paths(data)
    model = built.model
    names = ["a", "b", "c_prime", "tau_a_log__", "tau_b_log__", "tau_c_log__", "rho_ab_beta_logodds__"]
    logp = model.compile_logp(vars=model.potentials, jacobian=False)
    dlogp = model.compile_dlogp(jacobian=False)
    point = model.initial_point()
    mu, tau, rho = np.array([0.2, -0.3, -0.05]), np.array([0.1, 0.12, 0.05]), 0.3
    point.update(dict(zip(names, [*mu, *np.log(tau), logit((rho + 1) / 2)])))
    grad = dlogp(point)
    full = model.compile_logp(jacobian=False)
    h = 1e-6
    for idx, name in enumerate(v.name for v in model.value_vars):
        up, dn = dict(point), dict(point)
        up[name] = point[name] + h
        dn[name] = point[name] - h
        fd = (float(full(up)) - float(full(dn))) / (2 * h)
        assert abs(grad[idx] - fd) < 1e-5 * max(1.0, abs(fd)), name
    # a second build with the same priors reuses the model and swaps the data in
    other = build_mediation_paths(load_paths(_table(c_prime=[-0.1, -0.2, 0.0], se_c_prime=[0.1, 0.1, 0.1])))
    assert other.model is model
    expected = _scipy_loglik(other.data, mu, tau, rho).sum()
    np.testing.assert_allclose(float(logp(point)), expected, rtol=0, atol=1e-10)
    fresh = build_mediation_paths(other.data, cache=False)
    assert fresh.model is not model


def test_pooled_a_variance_density_and_gradient():
    """a_variance='pooled': var(a_i-hat) = (1 - a^2)^2 / (n_i - 1) at the pooled a, in value and gradient."""
    import dataclasses

    from bayes_se.builders.mediation_paths_kernel import loglik_and_grad, masked_arrays

    base = _mixed_patterns()
    n = np.arange(60.0, 60.0 + 20 * base.k, 20)
    data = dataclasses.replace(base, n=n)
    arrays = masked_arrays(data.est, data.cov, data.observed)
    mu, tau, rho = np.array([0.3, -0.2, -0.1]), np.array([0.1, 0.15, 0.05]), -0.4
    value, dmu, _ = loglik_and_grad(mu, _T_of(tau, rho), *arrays, n=n, pooled=True)
    swapped = data.cov.copy()
    swapped[:, 0, 0] = (1 - mu[0] ** 2) ** 2 / (n - 1)
    expected = _scipy_loglik(dataclasses.replace(data, cov=swapped), mu, tau, rho).sum()
    assert abs(value - expected) < 1e-10
    h = 1e-6
    step = np.array([h, 0.0, 0.0])
    fd = (loglik_and_grad(mu + step, _T_of(tau, rho), *arrays, n=n, pooled=True)[0]
          - loglik_and_grad(mu - step, _T_of(tau, rho), *arrays, n=n, pooled=True)[0]) / (2 * h)
    assert abs(dmu[0] - fd) < 1e-6 * max(1.0, abs(fd))
    # the model: same density through PyMC; n is required
    built = build_mediation_paths(data, a_variance="pooled")
    assert built.model is not build_mediation_paths(data).model
    fn = built.model.compile_logp(vars=built.model.potentials, jacobian=False)
    from scipy.special import logit

    point = built.model.initial_point()
    point.update({"a": mu[0], "b": mu[1], "c_prime": mu[2], "tau_a_log__": np.log(tau[0]),
                  "tau_b_log__": np.log(tau[1]), "tau_c_log__": np.log(tau[2]),
                  "rho_ab_beta_logodds__": logit((rho + 1) / 2)})
    np.testing.assert_allclose(float(fn(point)), expected, rtol=0, atol=1e-10)
    with pytest.raises(DataError, match="needs the number of participants") as info:
        build_mediation_paths(base, a_variance="pooled")
    assert info.value.column == "n"
    with pytest.raises(SpecError, match="a_variance"):
        build_mediation_paths(data, a_variance="own")
