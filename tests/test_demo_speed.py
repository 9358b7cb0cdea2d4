"""The demo's speed levers change nothing but speed (issue 17).

``bayes-se demo`` samples the chains of its random-effects and three-level fits in parallel when
CPUs are free (``api.fit(..., cores=)``); PyMC seeds each chain on its own, so the draws must be
bit-identical to sequential sampling. A refit after divergences reuses the first run's compiled
density (``sampling.COMPILE_ONCE``): the same draws as compiling it again.
"""

import os

import numpy as np
import pandas as pd
import pytest

from bayes_se import api
from bayes_se.demo import DEMO_SEED, _effects_from_raw, demo_cores, demo_inputs


@pytest.fixture(scope="module")
def between():
    return _effects_from_raw(demo_inputs()["data_dir"])[0]


def _pymc_nuts(name):
    """A packaged spec sampled by PyMC's NUTS, whose chains run in processes (nutpie, the default,
    runs them in turn on one thread, so ``cores`` does not apply to it)."""
    import dataclasses

    from bayes_se.resources import spec_file
    from bayes_se.spec import load_spec

    spec = load_spec(spec_file(name))
    return dataclasses.replace(spec, sampler=dataclasses.replace(spec.sampler, nuts_sampler="pymc"))


def _groups_equal(a, b):
    """Every variable of every group the same (the sampler's clock statistics aside)."""
    assert sorted(a.groups()) == sorted(b.groups())
    for group in a.groups():
        da, db = a[group], b[group]
        assert sorted(da.data_vars) == sorted(db.data_vars), group
        for name in da.data_vars:
            if group == "sample_stats" and name.startswith(("perf_counter", "process_time")):
                continue
            np.testing.assert_array_equal(np.asarray(da[name]), np.asarray(db[name]), err_msg=f"{group}/{name}")


@pytest.mark.parametrize("spec", ["guidance_moderator", "three_level"])
def test_parallel_chains_give_the_same_draws(between, spec):
    fits = [api.fit(between, _pymc_nuts(spec), seed=DEMO_SEED, draws=60, tune=60, chains=2, cores=cores)
            for cores in (1, 2)]
    _groups_equal(fits[0].idata, fits[1].idata)
    pd.testing.assert_frame_equal(fits[0].summary(), fits[1].summary())
    assert fits[0].diagnostics.passed == fits[1].diagnostics.passed


def test_demo_cores_is_bounded_and_yields_to_a_busy_machine():
    assert demo_cores(1, load=0.0) == 1
    assert 1 <= demo_cores(4) <= 4
    assert 1 <= demo_cores(4, load=0.0) <= 4
    assert demo_cores(4, load=50.0) == 1  # busy CPUs: sequential chains
    assert demo_cores(4, load=1.0) == min(4, len(os.sched_getaffinity(0)))  # only this process running


def test_refit_reuses_the_compiled_density_and_gives_the_same_draws(between, monkeypatch):
    """The refit after divergences samples with the first run's compiled logp and gradient
    (sampling.COMPILE_ONCE): the same draws as compiling it again."""
    import pymc as pm

    from bayes_se import sampling

    compiled = []
    method = pm.Model.logp_dlogp_function

    def counting(self, *args, **kwargs):
        compiled.append(1)
        return method(self, *args, **kwargs)

    monkeypatch.setattr(pm.Model, "logp_dlogp_function", counting)
    fits, compiles = [], []
    for once in (True, False):
        monkeypatch.setattr(sampling, "COMPILE_ONCE", once)
        # no tuning: divergences, so a refit
        fits.append(api.fit(between, _pymc_nuts("three_level"), seed=DEMO_SEED, draws=40, tune=0, chains=2,
                            cores=1))
        compiles.append(len(compiled))
        compiled.clear()
    assert "refit_reason" in fits[0].idata.attrs  # the case this test is about: a refit happened
    assert compiles == [1, 2]
    _groups_equal(fits[0].idata, fits[1].idata)
