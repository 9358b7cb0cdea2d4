"""The exact engine at large k: chunked (grid x study) arrays give the same numbers as whole ones,
the tau scan resolves a peak narrower than its spacing, and probabilities stay in [0, 1]."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_se import exact
from bayes_se.exact import exact_posterior


def simulated(k, seed=3, tau=0.2):
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.2, k)
    x = rng.normal(size=k)
    y = 0.3 + 0.1 * x + rng.normal(0, tau, k) + rng.normal(0, np.sqrt(v))
    return y, v, x


@pytest.mark.parametrize("regression", [False, True])
def test_chunked_equals_whole(monkeypatch, regression):
    y, v, x = simulated(60)
    X = np.column_stack([np.ones_like(x), x]) if regression else None
    whole = exact_posterior(y, v, X=X)
    want = whole.summary(theta=True)
    want_p = whole.theta_probs([(">", 0.2), ("<", -0.2)])
    monkeypatch.setattr(exact, "CHUNK_ELEMENTS", 50)  # a block of a few studies, a few grid rows at a time
    chunked = exact_posterior(y, v, X=X)
    assert not chunked._theta_cached()
    np.testing.assert_array_equal(chunked.tau_grid, whole.tau_grid)
    got = chunked.summary(theta=True)
    pd.testing.assert_index_equal(got.index, want.index)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12, atol=1e-14)
    for a, b in zip(chunked.theta_probs([(">", 0.2), ("<", -0.2)]), want_p):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    # one study at a time agrees with the vectorised pass
    j = 17
    label = f"theta[{chunked.study[j]}]"
    assert chunked.prob(label, ">", 0.2) == pytest.approx(want_p[0][j], rel=1e-12, abs=1e-15)
    assert chunked.quantile(label, 0.025) == pytest.approx(want.loc[label, "q2.5"], rel=1e-10, abs=1e-13)


def brute_force_tau_mean(y, v):
    """E[tau | y] on a dense plain grid (trapezoid), mu ~ N(0, 1) integrated analytically,
    tau ~ half-N(0, 0.5) (the default prior): an independent check of the quadrature."""
    tau = np.linspace(1e-6, 1.0, 200_001)
    logp = np.empty_like(tau)
    for i in range(0, tau.size, 2000):
        t = tau[i:i + 2000][:, None]
        w = 1.0 / (v + t**2)
        a = w.sum(1) + 1.0  # prior precision of mu: 1
        b = (w * y).sum(1)
        logp[i:i + 2000] = (-0.5 * np.log(v + t**2).sum(1) - 0.5 * np.log(a)
                            - 0.5 * ((w * y**2).sum(1) - b**2 / a) - 0.5 * (t[:, 0] / 0.5) ** 2)
    p = np.exp(logp - logp.max())
    return np.trapezoid(p * tau, tau) / np.trapezoid(p, tau)


def test_narrow_peak_resolved_with_few_nodes():
    # k = 5000: tau's posterior sd is ~1% of tau, far below the first scan's spacing
    y, v, _ = simulated(5000, seed=8)
    post = exact_posterior(y, v)
    assert post.tau_grid.size <= 400
    assert post.mean("tau") == pytest.approx(brute_force_tau_mean(y, v), rel=1e-7)


def test_probabilities_stay_in_unit_interval():
    y, v, _ = simulated(5000, seed=8)
    post = exact_posterior(y, v)
    assert 0.0 <= post.prob("mu", ">", 0.2) <= 1.0
    assert abs(post.tau_weights.sum() - 1.0) < 1e-15
    p = post.theta_prob(">", -5.0)
    assert np.all((p >= 0) & (p <= 1))
