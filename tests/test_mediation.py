"""Mediation / path models: path algebra, the average indirect effect, plots, and Bayesian MASEM fits.

The MCMC fits are marked ``slow``; the rest runs in seconds on synthetic posterior draws.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

# one BLAS thread per sampler process: on a busy 2-core machine, threaded BLAS on 6x6 to 50x50
# matrices made each gradient ~10 times slower
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from bayes_se.correlations import load_correlations  # noqa: E402
from bayes_se.errors import SpecError  # noqa: E402
from bayes_se.mediation import (  # noqa: E402
    MediationFit,
    PathModel,
    add_derived,
    average_indirect,
    fit_mediation,
    vec_to_matrix,
)

REFERENCE = Path(__file__).parent / "reference"
PLOT_DIR = Path("/tmp/bayes_se_plots")
VARS = ["intervention", "self_efficacy", "symptoms"]
#: True paths of the simulation.
A, B, C_PRIME = 0.4, 0.35, 0.1
#: Monte Carlo tolerance of E[a_i b_i] with 20,000 study draws per posterior draw (sd ~ 0.002).
MC_ATOL = 0.01
#: Posterior medians vs two-stage estimates on craft2003: both estimate the same pooled matrix, but
#: the Bayesian model keeps study 17 (its covariance at the pooled rho) and has priors on 21
#: heterogeneity parameters from 10 studies; we ask for agreement within 2 posterior SDs.
CRAFT_SDS = 2.0


def _simulate(k=15, seed=3):
    rng = np.random.default_rng(seed)
    R = vec_to_matrix(np.array([A, C_PRIME + A * B, B + A * C_PRIME]), 3)
    rows = []
    for i in range(k):
        n = int(rng.integers(80, 300))
        C = np.corrcoef(rng.multivariate_normal(np.zeros(3), R, size=n).T)
        rows.append({"study": f"s{i}", "n": n, "r_intervention_self_efficacy": C[0, 1],
                     "r_intervention_symptoms": C[0, 2],
                     "r_self_efficacy_symptoms": np.nan if i % 4 == 0 else C[1, 2]})
    return load_correlations(pd.DataFrame(rows), variables=VARS)


def test_path_algebra_mediation_identities():
    model = PathModel.single_mediator(VARS, *VARS)
    R = vec_to_matrix(np.array([0.3, 0.25, 0.4]), 3)
    eff = model.effects(R)
    b = (0.4 - 0.3 * 0.25) / (1 - 0.09)
    c = (0.25 - 0.3 * 0.4) / (1 - 0.09)
    np.testing.assert_allclose([eff["a"], eff["b"], eff["c_prime"]], [0.3, b, c], rtol=1e-14)
    np.testing.assert_allclose(eff["total"], 0.25, rtol=1e-14)  # c' + ab = r_XY
    np.testing.assert_allclose(eff["prop_mediated"], 0.3 * b / 0.25, rtol=1e-14)


def test_path_algebra_closed_form_solves_match_lapack():
    """Equations with one or two predictors are solved by Cramer's rule: the same coefficients as
    LAPACK's solve over a batch of random valid matrices, real and complex-step input."""
    rng = np.random.default_rng(8)
    R = vec_to_matrix(rng.uniform(-0.5, 0.5, (2000, 6)), 4)
    model = PathModel(["x", "m", "w", "y"], {"m": ["x"], "w": ["x", "m"], "y": ["x", "m", "w"]})
    for M in (R, R + 1e-20j * rng.standard_normal(R.shape)):
        B = model.coefficients(M)
        for y, xs in {1: [0], 2: [0, 1], 3: [0, 1, 2]}.items():
            want = np.linalg.solve(M[:, xs][:, :, xs], M[:, xs, y][..., None])[..., 0]
            np.testing.assert_allclose(B[:, y, xs], want, rtol=1e-12, atol=1e-15)
            if np.iscomplexobj(M):
                np.testing.assert_allclose(B[:, y, xs].imag, want.imag, rtol=1e-10, atol=1e-36)


def test_path_algebra_four_variables_total_is_inverse():
    model = PathModel(["perf", "acog", "asom", "conf"], {"perf": ["acog", "asom", "conf"], "conf": ["acog", "asom"]})
    ref = json.loads((REFERENCE / "metafor" / "dat.craft2003.json").read_text())["rma_mv"]
    R = np.array(ref["pooled_R"]["R"])
    eff = model.effects(R)
    for name in ("acog", "asom", "conf"):
        want = ref["matreg_perf_on_acog_asom_conf"]["coefficients"][name]["estimate"]
        np.testing.assert_allclose(eff[f"{name}->perf"], want, rtol=1e-8)
    Bm = model.coefficients(R)
    total = np.linalg.inv(np.eye(4) - Bm) - np.eye(4)
    np.testing.assert_allclose(eff["total[acog->perf]"], total[0, 1], rtol=1e-12)
    assert model.chains == [("acog", "conf", "perf"), ("asom", "conf", "perf")]
    with pytest.raises(SpecError, match="cycle"):
        PathModel(["x", "y"], {"y": ["x"], "x": ["y"]})
    with pytest.raises(SpecError, match=r"paths.y.*unknown variable 'z'"):
        PathModel(["x", "y"], {"y": ["z"]})


def test_average_indirect_adds_the_path_covariance():
    """E[a_i b_i] by Monte Carlo vs a direct large simulation; with T = 0 it equals a*b."""
    model = PathModel.single_mediator(VARS, *VARS)
    rho = np.array([[0.4, 0.24, 0.39]])
    L = np.linalg.cholesky(np.array([[0.02, 0.0, 0.015], [0.0, 0.01, 0.0], [0.015, 0.0, 0.02]]))[None]
    rng = np.random.default_rng(0)
    avg, acc = average_indirect(model, rho, L, rng, mc_draws=20000)
    draws = rho[0] + np.random.default_rng(1).standard_normal((200000, 3)) @ L[0].T
    eff = model.effects(vec_to_matrix(draws, 3))
    np.testing.assert_allclose(avg["indirect"][0], np.mean(eff["a"] * eff["b"]), atol=MC_ATOL)
    ab = model.effects(vec_to_matrix(rho, 3))["indirect"][0]
    assert avg["indirect"][0] - ab > 2 * MC_ATOL  # r_XM and r_MY covary: E[ab] > a b here
    zero, _ = average_indirect(model, rho, np.zeros((1, 3, 3)), rng, mc_draws=10)
    np.testing.assert_allclose(zero["indirect"], ab, rtol=1e-12)
    assert 0.99 < acc[0] <= 1.0  # share of valid study matrices


def _synthetic_fit(data, seed=0):
    """A MediationFit on synthetic 'posterior' draws (for the plots and the result object)."""
    import arviz as az

    rng = np.random.default_rng(seed)
    rho = np.array([A, C_PRIME + A * B, B + A * C_PRIME]) + 0.03 * rng.standard_normal((2, 300, 3))
    tau = np.abs(0.05 + 0.02 * rng.standard_normal((2, 300, 3)))
    prior_rho = rng.uniform(-0.6, 0.6, size=(1, 500, 3))
    coords = {"pair": data.pair_labels, "pair2": data.pair_labels}
    idata = az.from_dict(posterior={"rho": rho, "tau": tau, "Omega": np.broadcast_to(np.eye(3), (2, 300, 3, 3))},
                         prior={"rho": prior_rho}, coords=coords,
                         dims={"rho": ["pair"], "tau": ["pair"], "Omega": ["pair", "pair2"]})
    model = PathModel.single_mediator(data.variables, *VARS)
    add_derived(idata, data, model, seed=1, mc_draws=64)
    from bayes_se.diagnostics import check

    return MediationFit(idata=idata, data=data, paths=model, settings={"model": "synthetic"},
                        diagnostics=check(idata, var_names=["rho", "tau"]))


def test_result_object_and_plots(tmp_path):
    data = _simulate()
    fit = _synthetic_fit(data)
    table = fit.summary()
    assert list(table.index[:7]) == ["a", "b", "c_prime", "indirect", "indirect_avg", "total", "prop_mediated"]
    assert "rho[intervention,self_efficacy]" in table.index and "tau[self_efficacy,symptoms]" in table.index
    assert list(table.columns) == ["mean", "sd", "q2.5", "q50", "q97.5", "ess_bulk", "ess_tail", "r_hat"]
    np.testing.assert_allclose(table.loc["total", "q50"], table.loc["rho[intervention,symptoms]", "q50"], rtol=1e-12)
    assert fit.idata.log_likelihood["r"].shape == (2, 300, data.k)
    assert np.isnan(fit.idata.observed_data["r"].values).sum() == (~data.observed).sum()
    json.dumps(fit.to_dict(), allow_nan=False)

    from bayes_se.plots.paths import indirect_density_table, paths_table

    paths = paths_table(fit)
    assert paths[["source", "target", "label"]].values.tolist() == [
        ["intervention", "self_efficacy", "a"], ["intervention", "symptoms", "c_prime"],
        ["self_efficacy", "symptoms", "b"]]
    np.testing.assert_allclose(paths.set_index("label").loc["a", "median"], table.loc["a", "q50"], rtol=1e-12)
    dens = indirect_density_table(fit)
    assert {"x", "posterior", "prior", "posterior_avg"} <= set(dens.columns)
    assert np.all(dens[["posterior", "prior"]].to_numpy() >= 0)
    area = np.trapezoid(dens["posterior"], dens["x"])
    assert 0.95 < area < 1.01
    PLOT_DIR.mkdir(parents=True, exist_ok=True)
    for name, fig in (("paths", fit.plot_paths()), ("indirect", fit.plot_indirect())):
        for folder in (tmp_path, PLOT_DIR):
            fig.savefig(folder / f"mediation_{name}.png", dpi=100, bbox_inches="tight")
        assert (tmp_path / f"mediation_{name}.png").stat().st_size > 10_000


def _segment_box_distance(p0, p1, box):
    """Shortest distance (display units) between the segment p0-p1 and an axis-aligned box."""
    lo, hi = np.array([box.x0, box.y0]), np.array([box.x1, box.y1])
    # the segment meets the box when some point of it is inside: check a dense set of its points
    ts = np.linspace(0.0, 1.0, 2001)[:, None]
    pts = p0 + ts * (p1 - p0)
    outside = np.maximum(np.maximum(lo - pts, pts - hi), 0.0)  # per-axis distance outside the box
    return float(np.hypot(outside[:, 0], outside[:, 1]).min())


@pytest.mark.parametrize("figsize", [None, (5.0, 4.0), (9.0, 3.5)])
def test_path_labels_sit_beside_their_arrows(figsize):
    """Every path label's box keeps clear of its arrow's line, also on other figure shapes."""
    import matplotlib.pyplot as plt

    from bayes_se.plots.paths import LABEL_GAP_PT, _layout, paths_table, plot_paths

    fit = _synthetic_fit(_simulate())
    ax = None if figsize is None else plt.subplots(figsize=figsize)[1]
    fig = plot_paths(fit, ax=ax)
    ax = fig.axes[0]
    fig.draw_without_rendering()
    pos = _layout(fit)
    texts = {t.get_text().split(" = ")[0]: t for t in ax.texts if " = " in t.get_text()}
    rows = paths_table(fit)
    assert set(texts) == set(rows["label"]) == {"a", "b", "c_prime"}
    for row in rows.itertuples():
        p0, p1 = ax.transData.transform([pos[row.source], pos[row.target]])
        box = texts[row.label].get_bbox_patch().get_window_extent()
        gap_pt = _segment_box_distance(p0, p1, box) * 72.0 / fig.dpi
        assert gap_pt > 0.9 * LABEL_GAP_PT, (row.label, gap_pt)
        assert texts[row.label].get_bbox_patch().get_facecolor()[:3] == (1.0, 1.0, 1.0)
    PLOT_DIR.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT_DIR / f"mediation_paths_{'default' if figsize is None else 'x'.join(map(str, figsize))}.png",
                dpi=120)
    plt.close(fig)


def test_fit_mediation_rejects_bad_spec():
    data = _simulate(k=4)
    with pytest.raises(SpecError, match="'m'.*not one of the variables"):
        fit_mediation(data, m="mood", seed=1)
    with pytest.raises(SpecError, match="priors.lkj"):
        fit_mediation(data, priors={"lkj": 2}, seed=1)
    with pytest.raises(SpecError, match="priors.eta.*> 0"):
        fit_mediation(data, priors={"eta": -1}, seed=1)


@pytest.mark.slow
def test_simulation_recovers_paths():
    """k = 15 studies, 4 of them without r_MY: a, b, a*b inside their 95% intervals."""
    data = _simulate()
    start = time.perf_counter()
    fit = fit_mediation(data, seed=11, draws=500, tune=500, chains=2)
    elapsed = time.perf_counter() - start
    table = fit.summary()
    for name, truth in (("a", A), ("b", B), ("indirect", A * B), ("c_prime", C_PRIME)):
        assert table.loc[name, "q2.5"] < truth < table.loc[name, "q97.5"], name
    assert fit.diagnostics.divergences == 0 and fit.diagnostics.max_r_hat <= 1.01, fit.diagnostics.problems
    print(f"simulation fit: {elapsed:.0f} s")


@pytest.mark.slow
def test_craft2003_bayesian_close_to_two_stage():
    from bayes_se.frequentist.masem import two_stage

    d = pd.read_csv(REFERENCE / "data" / "dat.craft2003.csv")
    table = d.rename(columns={"yi": "r", "ni": "n"})[["study", "n", "var1", "var2", "r"]]
    data = load_correlations(table, variables=["perf", "acog", "asom", "conf"])
    paths = {"perf": ["acog", "asom", "conf"], "conf": ["acog", "asom"]}
    freq = two_stage(data, paths=paths, n_boot=0)
    start = time.perf_counter()
    fit = fit_mediation(data, paths=paths, seed=5, draws=500, tune=500, chains=4)
    elapsed = time.perf_counter() - start
    bayes = fit.summary()
    for name in ("acog->perf", "asom->perf", "conf->perf", "acog->conf", "asom->conf",
                 "indirect[acog->conf->perf]", "total[acog->perf]"):
        gap = abs(bayes.loc[name, "q50"] - freq.effects.loc[name, "estimate"])
        assert gap < CRAFT_SDS * bayes.loc[name, "sd"], (name, gap, bayes.loc[name, "sd"])
    assert fit.diagnostics.divergences == 0 and fit.diagnostics.max_r_hat <= 1.01, fit.diagnostics.problems
    print(f"craft2003 fit: {elapsed:.0f} s")


def test_lkj_cpc_construction_has_lkj_marginals():
    """Under LKJ(eta) each correlation of a p x p matrix is Beta(eta - 1 + p/2, same) on (-1, 1)
    (Lewandowski et al. 2009); the CPC construction must give that for every entry, and PD matrices."""
    import pymc as pm
    from scipy import stats

    from bayes_se.builders.masem import lkj_corr_cpc

    p, eta = 4, 2.0
    with pm.Model():
        R, _ = lkj_corr_cpc("R", p, eta)
        pm.Deterministic("R_full", R)
        prior = pm.sample_prior_predictive(4000, random_seed=7, var_names=["R_full"])
    draws = np.asarray(prior.prior["R_full"]).reshape(-1, p, p)
    assert np.all(np.linalg.eigvalsh(draws) > 0)
    np.testing.assert_allclose(np.diagonal(draws, axis1=1, axis2=2), 1.0, atol=1e-12)
    shape = eta - 1 + p / 2
    for i, j in [(1, 0), (2, 1), (3, 0), (3, 2)]:
        # alpha 0.001 per entry: a false alarm in this seeded test is essentially impossible
        assert stats.kstest((draws[:, i, j] + 1) / 2, stats.beta(shape, shape).cdf).pvalue > 0.001, (i, j)
