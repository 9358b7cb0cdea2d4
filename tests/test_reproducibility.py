"""Reproducibility: the same seed gives the same draws, bit for bit; every output records what made it.

MCMC through ``bayes_se.fit`` and the CLI, exact draws through ``ExactPosterior.draws``; the
``--out`` folder's spec, data checksum, seed and versions, and the netCDF attributes; atomic
writes under a failure in the middle; no overwriting without ``--force``.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest

from bayes_se import cli, outputs
from bayes_se.api import fit
from bayes_se.data import load_effects
from bayes_se.exact import exact_posterior
from bayes_se.spec import load_spec

from conftest import REFERENCE

BCG = REFERENCE / "data" / "dat.bcg.csv"
SMALL = dict(draws=100, tune=100, chains=2)  # bit-identity needs no convergence: keep it quick
SEED = 7
TIMING_STATS = {"process_time_diff", "perf_counter_diff", "perf_counter_start"}  # wall clocks differ


def _cli(*argv):
    return cli.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def mcmc_runs(tmp_path_factory):
    """Seed 7 through the API, seed 7 through the CLI with --out, seed 8 through the API."""
    out = tmp_path_factory.mktemp("repro") / "fit"
    a = fit(BCG, seed=SEED, **SMALL)
    code = _cli("fit", "--data", BCG, "--seed", SEED, "--draws", SMALL["draws"], "--tune", SMALL["tune"],
                "--chains", SMALL["chains"], "--out", out)
    assert code == 0
    c = fit(BCG, seed=SEED + 1, **SMALL)
    return a, out, c


@pytest.mark.mcmc
def test_same_seed_same_draws_api_and_cli(mcmc_runs):
    import arviz as az

    a, out, _ = mcmc_runs
    b = az.from_netcdf(out / "idata.nc")
    for group in ("posterior", "posterior_predictive", "prior", "sample_stats"):
        for var in set(getattr(a.idata, group).data_vars) - TIMING_STATS:
            np.testing.assert_array_equal(getattr(a.idata, group)[var].values, getattr(b, group)[var].values,
                                          err_msg=f"{group}.{var}")


@pytest.mark.mcmc
def test_different_seed_different_draws(mcmc_runs):
    a, _, c = mcmc_runs
    for var in ("mu", "tau", "theta", "pred"):
        assert not np.array_equal(a.idata.posterior[var].values, c.idata.posterior[var].values), var


@pytest.mark.mcmc
def test_out_folder_records_spec_checksum_seed_versions(mcmc_runs):
    a, out, _ = mcmc_runs
    assert sorted(p.name for p in out.iterdir()) == ["idata.nc", "provenance.json", "spec.toml", "summary.csv"]
    spec = load_spec((out / "spec.toml").read_text(encoding="utf-8"))
    assert spec.sampler.seed == SEED and spec.sampler.engine == "mcmc"
    record = json.loads((out / "provenance.json").read_text())
    assert record["seed"] == SEED
    assert record["data_sha256"] == load_effects(BCG).checksum()
    assert set(outputs.RECORDED_PACKAGES) <= set(record["versions"])
    assert all(record["versions"][name] for name in ("bayes_se", "numpy", "scipy", "pymc", "arviz"))
    assert {"divergences", "passed"} <= set(record["diagnostics"])


@pytest.mark.mcmc
def test_netcdf_attrs_carry_spec_seed_checksum_versions(mcmc_runs):
    import arviz as az

    _, out, _ = mcmc_runs
    attrs = az.from_netcdf(out / "idata.nc").attrs
    assert int(attrs["seed"]) == SEED
    settings = json.loads(attrs["settings"])
    assert load_spec(settings["spec_toml"]).sampler.seed == SEED
    assert load_spec(attrs["spec_toml"]).sampler.seed == SEED
    assert len(attrs["data_sha256"]) == 64
    for name in ("bayes_se", "numpy", "pymc", "pytensor", "arviz"):
        assert attrs[f"{name}_version"], name


@pytest.mark.mcmc
def test_netcdf_and_provenance_checksums_agree(mcmc_runs):
    import arviz as az

    _, out, _ = mcmc_runs
    attrs = az.from_netcdf(out / "idata.nc").attrs
    record = json.loads((out / "provenance.json").read_text())
    assert attrs["data_sha256"] == record["data_sha256"]


@pytest.mark.mcmc
def test_netcdf_attrs_record_every_dependency(mcmc_runs):
    import arviz as az

    _, out, _ = mcmc_runs
    attrs = az.from_netcdf(out / "idata.nc").attrs
    for name in outputs.RECORDED_PACKAGES:
        assert f"{name}_version" in attrs, name


# -- exact draws --------------------------------------------------------------------------------


def test_exact_draws_same_seed_identical_different_seed_different():
    post = exact_posterior(load_effects(BCG))
    a, b, c = post.draws(500, 11), post.draws(500, np.random.default_rng(11)), post.draws(500, 12)
    for name in ("tau", "mu", "theta", "pred"):
        np.testing.assert_array_equal(a[name], b[name])
        assert not np.array_equal(a[name], c[name])


def test_exact_fit_twice_is_bit_identical():
    a, b = fit(BCG, engine="exact").summary(), fit(BCG, engine="exact").summary()
    assert a.equals(b)


# -- atomic writes -------------------------------------------------------------------------------


class Boom(RuntimeError):
    pass


def _exact_out(out, *extra):
    return _cli("fit", "--data", BCG, "--engine", "exact", "--out", out, *extra)


def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    """A writer raising after summary.csv and spec.toml were written: no folder, no temp folder."""
    def boom():
        raise Boom("disk full")

    monkeypatch.setattr(outputs, "package_versions", boom)
    with pytest.raises(Boom):
        _exact_out(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_failure_while_replacing_keeps_the_old_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _exact_out(out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom():
        raise Boom("disk full")

    monkeypatch.setattr(outputs, "package_versions", boom)
    with pytest.raises(Boom):
        _exact_out(out, "--seed", "3", "--force")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failure_during_the_swap_keeps_the_old_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _exact_out(out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_rename = os.rename

    def rename(source, target):  # the swap's second rename (new folder -> out) fails
        if pathlib.Path(target) == out and "-new-" in pathlib.Path(source).name:
            raise Boom("rename failed")
        return real_rename(source, target)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(Boom):
        _exact_out(out, "--force")
    monkeypatch.undo()
    assert out.is_dir() and {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_existing_folder_never_overwritten_without_force(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("my notes")
    assert _exact_out(out) == 2
    err = capsys.readouterr().err
    assert "--force" in err and str(out) in err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert _exact_out(out, "--force") == 0
    assert "mine.txt" not in {p.name for p in out.iterdir()}  # --force replaces the folder as a whole
