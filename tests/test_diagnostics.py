"""Convergence verdicts on hand-made chains (no sampling)."""

from __future__ import annotations

import json

import arviz as az
import numpy as np
import pytest

from bayes_se.diagnostics import EXACT_ATTR, MAX_R_HAT, MIN_BFMI, MIN_ESS, Verdict, check

CHAINS, DRAWS = 4, 1000


def _idata(posterior, diverging=None, energy=None):
    rng = np.random.default_rng(0)
    stats = {
        "diverging": np.zeros((CHAINS, DRAWS), bool) if diverging is None else diverging,
        # independent energies: E-BFMI about 2
        "energy": rng.standard_normal((CHAINS, DRAWS)) if energy is None else energy,
    }
    return az.from_dict(posterior=posterior, sample_stats=stats,
                        coords={"study": ["A", "B"]}, dims={"theta": ["study"]})


def _good(rng):
    return {"mu": rng.standard_normal((CHAINS, DRAWS)), "tau": np.abs(rng.standard_normal((CHAINS, DRAWS)))}


def test_independent_draws_pass():
    verdict = check(_idata(_good(np.random.default_rng(1))))
    assert verdict.passed, verdict.problems
    assert verdict.max_r_hat <= MAX_R_HAT
    assert verdict.min_ess_bulk >= MIN_ESS and verdict.min_ess_tail >= MIN_ESS
    assert verdict.min_bfmi >= MIN_BFMI
    assert verdict.banner() == ""
    d = verdict.to_dict()
    assert set(d) == {"divergences", "max_r_hat", "min_ess_bulk", "min_ess_tail", "min_bfmi", "passed"}
    json.dumps(d)


def test_disagreeing_chains_fail_on_r_hat_and_name_the_parameter():
    rng = np.random.default_rng(2)
    post = _good(rng)
    post["tau"] = post["tau"] + np.arange(CHAINS)[:, None]  # each chain in a different place
    verdict = check(_idata(post))
    assert not verdict.passed
    assert verdict.max_r_hat > MAX_R_HAT
    assert any("R-hat of tau" in p for p in verdict.problems)
    assert verdict.banner().startswith("!! DIAGNOSTICS FAILED")


def test_sticky_chain_fails_on_ess():
    rng = np.random.default_rng(3)
    post = _good(rng)
    # a random walk with tiny steps: highly autocorrelated, low ESS
    post["mu"] = np.cumsum(rng.standard_normal((CHAINS, DRAWS)) * 0.01, axis=1)
    verdict = check(_idata(post))
    assert verdict.min_ess_bulk < MIN_ESS
    assert any("bulk ESS of mu" in p for p in verdict.problems)


def test_divergences_and_low_bfmi_are_reported():
    rng = np.random.default_rng(4)
    diverging = np.zeros((CHAINS, DRAWS), bool)
    diverging[0, :3] = True
    energy = np.cumsum(rng.standard_normal((CHAINS, DRAWS)), axis=1)  # random-walk energy: BFMI ~ 0
    verdict = check(_idata(_good(rng), diverging=diverging, energy=energy))
    assert verdict.divergences == 3
    assert verdict.min_bfmi < MIN_BFMI
    assert any("3 divergent" in p for p in verdict.problems)
    assert any("E-BFMI" in p for p in verdict.problems)
    assert verdict.to_dict()["divergences"] == 3


def test_exact_draws_are_not_checked_and_elements_are_named():
    rng = np.random.default_rng(5)
    post = _good(rng)
    post["theta"] = np.cumsum(rng.standard_normal((CHAINS, DRAWS, 2)) * 0.01, axis=1)
    idata = _idata(post)
    verdict = check(idata)
    assert any("theta[" in p for p in verdict.problems)  # element named by its study label
    idata.posterior["theta"].attrs[EXACT_ATTR] = 1
    assert check(idata).passed


def test_verdict_roundtrip_to_dict_handles_nan():
    v = Verdict(passed=False, max_r_hat=np.nan, min_ess_bulk=10.0, min_ess_tail=5.0, divergences=0,
                min_bfmi=np.nan, problems=["x"])
    assert v.to_dict()["max_r_hat"] is None and v.to_dict()["min_bfmi"] is None


def test_without_numba_restores_arviz_flag_even_after_an_error():
    from arviz.utils import Numba

    from bayes_se.diagnostics import without_numba

    before = Numba.numba_flag
    with without_numba():
        assert Numba.numba_flag is False
    assert Numba.numba_flag == before
    with pytest.raises(RuntimeError):
        with without_numba():
            raise RuntimeError("boom")
    assert Numba.numba_flag == before
