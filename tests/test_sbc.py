"""Simulation-based calibration (Talts et al. 2018) of the exact and MCMC engines.

The unmarked test is SBC's continuous limit for the exact engine: for replicates drawn from the
prior of a shipped spec, the posterior cdf at the true value, ``F(truth | y)``, is uniform on
(0, 1) exactly when the posterior is right (Cook, Gelman & Rubin 2006). A Kolmogorov-Smirnov test
per parameter at ``ALPHA`` checks that. With a fixed seed the outcome is deterministic; were the
seed random, a correct engine would fail one parameter's test with probability ``ALPHA`` (at most
``len(params) * ALPHA`` for the whole test). A deliberately wrong posterior (tau prior far from the
one simulated from) must fail it: the check has power.

The slow tests run rank-based SBC of the MCMC engine through ``bayes_se.api.fit`` (a few dozen
replicates) and of the mediation MASEM through ``bayes_se.mediation.fit_mediation`` (the full
study is ``bayes-se sbc``, reported in ``docs/calibration.md``). The command itself is tested on a
small exact-engine study.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayes_se import cli
from bayes_se import sbc as sbc_module

ROOT = pathlib.Path(__file__).resolve().parent.parent

ALPHA = 0.001  # per-parameter false-alarm rate of a uniformity test on a correct engine
N_REP_EXACT = 200  # replicates per model: KS detects a PIT-distribution shift of ~0.14 at ALPHA
N_REP_NEGATIVE = 50  # replicates of the deliberately miscalibrated fit (its failure is gross)
N_REP_MCMC = 40  # slow test: replicates per model (chi-square with 20 bins of 5 ranks)
N_REP_MEDIATION = 20  # slow test: mediation replicates (~15 s each on an idle core: ~5 min)
SEED = 20180418


#: Data mode and tau prior of SBC proper of the mediation model (docs/calibration.md).
LIKELIHOOD = {"mediation_data": "likelihood", "mediation_priors": {"tau": "half_normal(0.2)"}}


@pytest.fixture(scope="module")
def sbc():
    return sbc_module


@pytest.mark.parametrize("model", ["random_effects", "guidance_moderator"])
def test_sbc_specs_are_the_shipped_models(sbc, model):
    """The built-in SBC specs have the model and priors of models/<model>.toml."""
    from bayes_se.spec import load_spec

    shipped = load_spec(ROOT / "models" / f"{model}.toml")
    built_in = sbc.model_spec(model)
    assert built_in.model == shipped.model
    assert {k: str(v) for k, v in built_in.resolved_priors().items()} == \
        {k: str(v) for k, v in shipped.resolved_priors().items()}


@pytest.mark.parametrize("model", ["random_effects", "guidance_moderator"])
def test_exact_engine_is_calibrated(sbc, model):
    rng = np.random.default_rng(SEED)
    pit = pd.DataFrame([sbc.exact_pit(model, rng) for _ in range(N_REP_EXACT)])
    assert list(pit.columns) == sbc.parameters(model)
    pvalues = {name: stats.kstest(pit[name], "uniform").pvalue for name in pit.columns}
    assert min(pvalues.values()) > ALPHA, pvalues


def test_miscalibrated_posterior_is_detected(sbc):
    """Fitting with tau ~ HalfNormal(0.02) data simulated with tau ~ HalfNormal(0.5): the tau PIT
    piles up near 1 and the check fails, as it must."""
    rng = np.random.default_rng(SEED)
    pit = pd.DataFrame([sbc.exact_pit("random_effects", rng, tau_prior="half_normal(0.02)")
                        for _ in range(N_REP_NEGATIVE)])
    assert stats.kstest(pit["tau"], "uniform").pvalue < ALPHA


def test_rank_statistics_and_chi_square(sbc):
    """Ranks of exact iid draws lie in 0..L; the chi-square helper accepts uniform ranks and
    rejects a U shape."""
    rng = np.random.default_rng(1)
    ranks, _ = sbc.replicate("random_effects", "exact", rng)
    assert set(ranks) == {"mu", "tau", "theta[1]"}
    assert all(0 <= r <= sbc.N_RANKS for r in ranks.values())
    uniform = np.repeat(np.arange(sbc.N_RANKS + 1), 2)
    assert sbc.uniformity_pvalue(uniform) == pytest.approx(1.0)
    u_shape = np.r_[np.zeros(100, int), np.full(100, sbc.N_RANKS), np.arange(sbc.N_RANKS + 1)]
    assert sbc.uniformity_pvalue(u_shape) < ALPHA


@pytest.mark.slow
@pytest.mark.mcmc
@pytest.mark.parametrize("model", ["random_effects", "guidance_moderator"])
def test_mcmc_engine_is_calibrated(sbc, model):
    ranks, infos = sbc.run(model, "mcmc", N_REP_MCMC, SEED, mcmc={"draws": 400, "tune": 400, "chains": 2})
    pvalues = {name: sbc.uniformity_pvalue(ranks[name]) for name in ranks.columns}
    assert min(pvalues.values()) > ALPHA, pvalues
    assert sum(i["divergences"] for i in infos) == 0


def test_mediation_simulation(sbc):
    """A simulated MASEM: k studies with valid correlations, r_MY missing where designed, truths
    for every checked parameter (a = rho[X,M], indirect = a b)."""
    sim = sbc.simulate_mediation(np.random.default_rng(SEED))
    frame, truth = sim.frame, sim.truth
    assert len(frame) == sbc.K_STUDIES
    assert frame["n"].between(*sbc.MEDIATION_N_RANGE).all()
    assert frame["r_M_Y"].isna().to_numpy().nonzero()[0].tolist() == list(sbc.MEDIATION_NO_MY)
    assert set(sbc.parameters("mediation")) <= set(truth)
    assert truth["a"] == truth["rho[X,M]"]
    assert truth["indirect"] == pytest.approx(truth["a"] * truth["b"])
    values = frame[["r_X_M", "r_X_Y", "r_M_Y"]].to_numpy()
    assert np.all(np.abs(values[~np.isnan(values)]) < 1)


def test_mediation_likelihood_simulation(sbc):
    """SBC proper draws from the fitted likelihood, r_i ~ N(rho, S_i(rho) + T), with nothing
    redrawn: each r is centred on its pooled rho with variance (1 - rho^2)^2 / (n - 1) + tau^2."""
    rng = np.random.default_rng(SEED)
    z = []
    for _ in range(8):
        sim = sbc.simulate_mediation(rng, priors=LIKELIHOOD["mediation_priors"], data_mode="likelihood")
        assert sim.truth["redraws"] == 0
        assert len(sim.frame) == sbc.K_STUDIES
        assert sim.frame["r_M_Y"].isna().to_numpy().nonzero()[0].tolist() == list(sbc.MEDIATION_NO_MY)
        for pair in ("X,M", "X,Y"):
            rho, tau = sim.truth[f"rho[{pair}]"], sim.truth[f"tau[{pair}]"]
            var = (1 - rho**2) ** 2 / (sim.frame["n"] - 1) + tau**2
            z.extend((sim.frame["r_" + pair.replace(",", "_")] - rho) / np.sqrt(var))
    z = np.asarray(z)  # 128 standard normal draws if the simulation is right
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    lo, hi = stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], z.size) / z.size
    assert lo < np.mean(z**2) < hi


@pytest.mark.slow
@pytest.mark.mcmc
def test_mediation_mcmc_is_calibrated(sbc):
    """SBC proper of the MASEM (data from the model, shipped tau prior); docs/calibration.md has
    the full 407-replicate study."""
    ranks, infos = sbc.run("mediation", "mcmc", N_REP_MEDIATION, SEED,
                           mcmc={"draws": 250, "tune": 250, "chains": 2}, **LIKELIHOOD)
    assert list(ranks.columns) == sbc.parameters("mediation")
    pvalues = {name: sbc.uniformity_pvalue(ranks[name]) for name in ranks.columns}
    assert min(pvalues.values()) > ALPHA, pvalues
    assert sum(i["divergences"] for i in infos) == 0


# -- the command ---------------------------------------------------------------------------------
def _cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["sbc", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--exact-reps" in out and "--force" in out and "Talts" in out


@pytest.mark.parametrize("flag", ["--exact-reps", "--mcmc-reps", "--mcmc-draws", "--mcmc-tune", "--mcmc-chains"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_cli_refuses_counts_below_one(capsys, tmp_path, flag, value):
    code, out, err = _cli(capsys, "sbc", flag, value, "--figures", tmp_path / "f")
    assert code == 2 and out == ""
    assert err.strip() == f"bayes-se: error: {flag} must be at least 1, got {value}"
    assert not (tmp_path / "f").exists()


def test_cli_refuses_mediation_with_exact_engine_only(capsys, tmp_path):
    code, _, err = _cli(capsys, "sbc", "--models", "mediation", "--engines", "exact", "--figures", tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "mcmc" in err


def test_cli_small_study_writes_histograms_and_ranks_never_over_without_force(capsys, tmp_path):
    """Five exact replicates of the random-effects model: one histogram per parameter, the ranks
    in 0..99 in the CSV, the same numbers as the API; a rerun is refused until --force."""
    figures, csv = tmp_path / "figs", tmp_path / "ranks.csv"
    argv = ["sbc", "--models", "random_effects", "--engines", "exact", "--exact-reps", 5, "--seed", 7,
            "--figures", figures, "--csv", csv, "--quiet"]
    code, out, _ = _cli(capsys, *argv)
    assert code == 0
    names = sorted(p.name for p in figures.iterdir())
    assert names == sorted(f"{sbc_module.figure_stem('random_effects', 'exact', n)}.png"
                           for n in sbc_module.parameters("random_effects"))
    ranks = pd.read_csv(csv)
    assert len(ranks) == 5 and ranks[["mu", "tau", "theta[1]"]].stack().between(0, sbc_module.N_RANKS).all()
    expected, _ = sbc_module.run("random_effects", "exact", 5, 7)
    np.testing.assert_array_equal(ranks[["mu", "tau", "theta[1]"]].to_numpy(), expected.to_numpy())
    assert "theta[1]" in out
    before = {p.name: p.read_bytes() for p in figures.iterdir()}, csv.read_bytes()
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and out == "" and "--force" in err and len(err.strip().splitlines()) == 1
    assert ({p.name: p.read_bytes() for p in figures.iterdir()}, csv.read_bytes()) == before
    code, _, _ = _cli(capsys, *argv, "--force")
    assert code == 0
    np.testing.assert_array_equal(pd.read_csv(csv)[["mu", "tau", "theta[1]"]].to_numpy(), expected.to_numpy())
