"""Simulation studies: seeding independent of scheduling, checkpoint/resume, Dask, summaries."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pandas as pd
import pytest

from bayes_se.errors import SpecError
from bayes_se.simulation import (RESULT_COLUMNS, add_parser, expand_grid, fit_methods, generate,
                               simulate, summarise)

GRID = {"k": [4, 8], "tau": [0.0, 0.3]}
REPS = 6
SEED = 12345
#: Generation itself is exact arithmetic on seeded streams; the moments of 20000 draws of
#: y_i ~ N(mu, tau^2 + v_i) match their targets within 5 standard errors.
MOMENT_Z = 5.0


def _run(tmp_path, name, **kw):
    kw.setdefault("workers", 1)
    return simulate(GRID, reps=REPS, out=tmp_path / name, seed=SEED, progress=False, **kw)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("serial"), "serial.csv")


def test_tiny_grid_runs_locally(serial):
    assert list(serial.columns) == list(RESULT_COLUMNS)
    assert len(serial) == 4 * REPS * 4  # cells x reps x methods
    assert not serial.duplicated(["k", "tau", "mu", "v", "rep", "method"]).any()
    ok = serial[serial["error"] == ""]
    assert len(ok) == len(serial)
    assert (ok["ci_lower"] < ok["ci_upper"]).all()
    assert np.allclose(ok["width"], ok["ci_upper"] - ok["ci_lower"])
    assert (ok["covered"] == ((ok["ci_lower"] <= ok["mu"]) & (ok["mu"] <= ok["ci_upper"]))).all()


def test_same_table_with_one_and_two_workers(serial, tmp_path):
    parallel = _run(tmp_path, "two.csv", workers=2)
    pd.testing.assert_frame_equal(serial, parallel)


def test_interrupted_run_resumes_without_duplicates(serial, tmp_path):
    out = tmp_path / "resume.csv"
    # an "interrupted" run: the first half of the grid's replicates, then a torn last line
    simulate(GRID, reps=REPS // 2, out=out, seed=SEED, workers=1, progress=False)
    with open(out, "a", encoding="utf-8") as fh:
        fh.write('8,0.3,0.0,"uniform(0.01, 0.1)",5,DL,0.1')  # a batch cut off mid-write
    resumed = simulate(GRID, reps=REPS, out=out, seed=SEED, workers=2, progress=False)
    pd.testing.assert_frame_equal(serial, resumed)
    on_disk = pd.read_csv(out)
    assert len(on_disk) == len(serial)
    # a rerun has nothing left to do and changes nothing
    again = simulate(GRID, reps=REPS, out=out, seed=SEED, workers=1, progress=False)
    pd.testing.assert_frame_equal(serial, again)


def test_resume_refuses_another_seed(serial, tmp_path):
    out = tmp_path / "seed.csv"
    simulate({"k": [4]}, reps=1, out=out, seed=1, workers=1, progress=False)
    with pytest.raises(SpecError, match="seed"):
        simulate({"k": [4]}, reps=1, out=out, seed=2, workers=1, progress=False)


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason="dask.distributed is not installed (pip install 'dask[distributed]')")
def test_dask_local_cluster_gives_the_same_table(serial, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        table = _run(tmp_path, "dask.csv", scheduler=cluster.scheduler_address)
    pd.testing.assert_frame_equal(serial, table)


def test_replicate_depends_only_on_seed_cell_and_rep():
    cell = (5, 0.2, 0.1, "uniform(0.01, 0.1)")
    a = fit_methods(cell, 3, SEED, ["DL"])
    b = fit_methods(cell, 3, SEED, ["REML", "DL"])
    assert a[0] == b[1]
    assert fit_methods(cell, 4, SEED, ["DL"])[0]["estimate"] != a[0]["estimate"]


def test_generated_data_have_the_model_moments():
    rng = np.random.default_rng(0)
    k, tau, mu = 20000, 0.3, 0.5
    y, v = generate(k, tau, mu, "uniform(0.01, 0.1)", rng)
    assert v.min() >= 0.01 and v.max() <= 0.1
    z = (y - mu) / np.sqrt(tau**2 + v)
    assert abs(z.mean()) < MOMENT_Z / math.sqrt(k)
    assert abs(z.var() - 1) < MOMENT_Z * math.sqrt(2 / k)
    y, v = generate(3, 0.0, 1.0, "fixed(0.04)", rng)
    assert np.all(v == 0.04)


def test_summarise_coverage_bias_and_mcse():
    res = pd.DataFrame({"k": 5, "tau": 0.0, "mu": 1.0, "v": "fixed(1)", "rep": range(4), "method": "DL",
                        "estimate": [1.0, 2.0, 0.0, 1.0], "ci_lower": [0.0, 1.5, -1.0, 0.5],
                        "ci_upper": [2.0, 2.5, 0.5, 1.5], "covered": [True, False, False, True],
                        "width": [2.0, 1.0, 1.5, 1.0], "tau_estimate": 0.0, "error": "", "seed": 1})
    row = summarise(res).iloc[0]
    assert row["coverage"] == 0.5 and row["coverage_mcse"] == pytest.approx(math.sqrt(0.25 / 4))
    assert row["bias"] == 0.0 and row["bias_mcse"] == pytest.approx(np.std([0, 1, -1, 0], ddof=1) / 2)
    assert row["rmse"] == pytest.approx(math.sqrt(0.5))
    assert row["width"] == pytest.approx(1.375)
    assert row["n"] == 4 and row["n_failed"] == 0


def test_bad_grid_and_methods_name_the_key(tmp_path):
    with pytest.raises(SpecError, match="grid.v"):
        expand_grid({"v": ["beta(1, 2)"]})
    with pytest.raises(SpecError, match="grid.k"):
        expand_grid({"k": [1]})
    with pytest.raises(SpecError, match="grid"):
        expand_grid({"n": [10]})
    with pytest.raises(SpecError, match="methods"):
        simulate({"k": [5]}, reps=1, methods=["HKSJ"], out=tmp_path / "x.csv", seed=1, progress=False)


def test_cli_subcommand_prints_summary(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="bayes-se")
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli.csv"
    args = parser.parse_args(["simulate", "--k", "4", "--tau", "0,0.2", "--reps", "3", "--out", str(out),
                              "--workers", "1", "--no-progress", "--methods", "bayes_exact,REML_KH"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "bayes_exact" in text and "REML_KH" in text and "coverage" in text
    assert len(pd.read_csv(out)) == 2 * 3 * 2


#: The closed-form half-normal log density and Prior.tau_logpdf agree to rounding; the quadrature
#: then agrees to its own tolerance (exact.CHEB_TOL, relative 1e-13), so 1e-10 is ample.
SHORTCUT_RTOL = 1e-10


def test_bayes_exact_matches_exact_posterior_with_the_prior_object():
    from bayes_se.exact import exact_posterior
    from bayes_se.priors import parse_assignment

    cell = (8, 0.3, 0.2, "uniform(0.01, 0.1)")
    row = fit_methods(cell, 0, SEED, ["bayes_exact"])[0]
    data_seq, _ = np.random.SeedSequence(SEED, spawn_key=row_spawn_key(cell, 0)).spawn(2)
    y, v = generate(*cell, np.random.default_rng(data_seq))
    post = exact_posterior(y, v, beta_prior=parse_assignment("mu=normal(0, 1)")[1],
                           tau_prior=parse_assignment("tau=half_normal(0.5)")[1])
    assert row["estimate"] == pytest.approx(post.mean("mu"), rel=SHORTCUT_RTOL)
    lo, hi = post.quantile("mu", [0.025, 0.975])
    assert (row["ci_lower"], row["ci_upper"]) == pytest.approx((lo, hi), rel=SHORTCUT_RTOL)


def row_spawn_key(cell, rep):
    import zlib

    k, tau, mu, v = cell
    return (zlib.crc32(f"k={int(k)}|tau={float(tau)!r}|mu={float(mu)!r}|v={v}".encode()), rep)
