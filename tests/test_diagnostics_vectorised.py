"""The vectorised R-hat and ESS (diagnostics.convergence_stats) against ArviZ's own, bit for bit.

ArviZ 0.23 loops over parameters in Python; bayes_se computes the same statistics for all of them
at once. The verdict, the summary table and the JSON must not change by a single bit: every test
compares with ``az.rhat`` / ``az.ess`` called the way bayes_se called them before (issue 17).
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pytest

from bayes_se.diagnostics import (Verdict, check, convergence_stats, ess_bulk, ess_tail, rhat_rank,
                                  without_numba)
from bayes_se.results import BayesianFit


def _arviz(values):
    """R-hat, bulk ESS, tail ESS of (chain, draw, n) draws by ArviZ, one parameter at a time."""
    ds = az.convert_to_dataset(values)
    with without_numba(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (az.rhat(ds)["x"].values, az.ess(ds, method="bulk")["x"].values,
                az.ess(ds, method="tail")["x"].values)


def _chains(rng, chains, draws, kind, k=6):
    x = rng.standard_normal((chains, draws, k))
    if kind == "ar":  # autocorrelated, chains offset: low ESS, R-hat above 1
        for t in range(1, draws):
            x[:, t] = 0.95 * x[:, t - 1] + 0.3 * x[:, t]
        x += rng.standard_normal((chains, 1, k))
    elif kind == "ties":  # many ties: average ranks
        x = np.round(x * 2) / 2
    elif kind == "stuck":  # a constant parameter and a stuck chain
        x[:, :, 0] = 1.0
        x[0, :, 1] = x[0, 0, 1]
    return x


@pytest.mark.parametrize("chains", [1, 2, 4])
@pytest.mark.parametrize("draws", [4, 7, 28, 100, 501])
@pytest.mark.parametrize("kind", ["iid", "ar", "ties", "stuck"])
def test_equal_to_arviz_bit_for_bit(chains, draws, kind):
    x = _chains(np.random.default_rng([chains, draws, len(kind)]), chains, draws, kind)
    got = convergence_stats(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = _arviz(x)
    for key, ref in zip(("r_hat", "ess_bulk", "ess_tail"), want):
        np.testing.assert_array_equal(got[key], ref, err_msg=key)
    np.testing.assert_array_equal(rhat_rank(x), got["r_hat"])
    np.testing.assert_array_equal(ess_bulk(x), got["ess_bulk"])
    np.testing.assert_array_equal(ess_tail(x), got["ess_tail"])


def test_nan_draws_and_shapes():
    x = _chains(np.random.default_rng(5), 4, 50, "iid")
    x[2, 10, 3] = np.nan
    got = convergence_stats(x)
    assert np.isnan(got["r_hat"][3]) and np.isnan(got["ess_bulk"][3]) and np.isnan(got["ess_tail"][3])
    assert np.isfinite(got["ess_bulk"][[0, 1, 2, 4, 5]]).all()
    assert convergence_stats(np.zeros((2, 10, 3, 4)))["ess_bulk"].shape == (3, 4)
    assert convergence_stats(np.random.default_rng(1).standard_normal((2, 10)))["r_hat"].shape == ()


def _fit_with_many_thetas(k=120, seed=11):
    """A BayesianFit on hand-made chains: mu, tau and k study effects, some badly mixed."""
    rng = np.random.default_rng(seed)
    chains, draws = 4, 300
    mu = rng.standard_normal((chains, draws))
    tau = np.abs(rng.standard_normal((chains, draws)))
    theta = _chains(rng, chains, draws, "ar", k=k) * 0.1 + mu[:, :, None]
    theta[:, :, : k // 2] = rng.standard_normal((chains, draws, k // 2))
    idata = az.from_dict(posterior={"mu": mu, "tau": tau, "theta": theta},
                         sample_stats={"diverging": np.zeros((chains, draws), bool),
                                       "energy": rng.standard_normal((chains, draws))},
                         coords={"study": [f"s{i}" for i in range(k)]}, dims={"theta": ["study"]})
    return BayesianFit(idata=idata, settings={"k": k, "level": 0.95, "smallest_effect": 0.1})


def test_fit_summary_and_verdict_equal_to_the_arviz_path(monkeypatch):
    from bayes_se import diagnostics

    monkeypatch.setattr(diagnostics, "STATS_BLOCK", 50)  # 122 parameters: three blocks, the last short
    fit = _fit_with_many_thetas()
    table = fit.summary()
    post = fit.idata.posterior
    values = np.concatenate([np.asarray(post["mu"])[:, :, None], np.asarray(post["tau"])[:, :, None],
                             np.asarray(post["theta"])], axis=2)
    r_hat, bulk, tail = _arviz(values)
    np.testing.assert_array_equal(table["ess_bulk"].to_numpy(), bulk)
    np.testing.assert_array_equal(table["ess_tail"].to_numpy(), tail)
    np.testing.assert_array_equal(table["r_hat"].to_numpy(), r_hat)
    # the verdict as the ArviZ path made it: worst R-hat, smallest ESS, each naming its parameter
    verdict = fit.diagnostics
    assert isinstance(verdict, Verdict)
    assert verdict.max_r_hat == np.nanmax(r_hat) and verdict.min_ess_bulk == np.nanmin(bulk)
    assert verdict.min_ess_tail == np.nanmin(tail)
    worst = f"theta[s{int(np.nanargmax(r_hat)) - 2}]"
    assert not verdict.passed and any(f"R-hat of {worst} is" in p for p in verdict.problems)
    # and check() on the same draws against az.rhat/az.ess on the posterior Dataset
    with without_numba(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_rhat = az.rhat(post)
        ref_bulk = az.ess(post, method="bulk")
    for name in ("mu", "tau", "theta"):
        assert float(ref_rhat[name].max()) <= verdict.max_r_hat
        assert float(ref_bulk[name].min()) >= verdict.min_ess_bulk
    again = check(fit.idata)
    assert again.to_dict() == verdict.to_dict() and again.problems == verdict.problems
    # printed text and JSON are made from these numbers
    assert "theta[s0]" in fit.print_summary(theta=True)
    assert fit.to_dict()["parameters"]["theta[s0]"]["ess_bulk"] == float(bulk[2])
