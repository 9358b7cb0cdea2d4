"""The exact engine's large-k path (issue 17): the study effects' quantiles start from a Gauss rule of
tau's posterior and take one Newton pass over the whole mixture, blocks of studies run two at a time
in threads; the numbers are the small-k path's (quantiles within the root finding's 1e-13 sd)."""

from __future__ import annotations

import numpy as np
import pytest

from bayes_se import exact
from bayes_se.exact import exact_posterior


def simulated(k, seed=11, tau=0.2):
    rng = np.random.default_rng(seed)
    v = rng.uniform(0.01, 0.1, k)
    y = 0.3 + rng.normal(0, tau, k) + rng.normal(0, np.sqrt(v))
    return y, v


def test_gauss_rule_matches_the_grid_moments():
    post = exact_posterior(*simulated(400))
    tau, w, b, Ainv = post._gauss_mixture(8)
    keep = post.tau_weights > exact.PRUNE_WEIGHT
    grid, weights = post.tau_grid[keep], post.tau_weights[keep] / post.tau_weights[keep].sum()
    centre = weights @ grid
    scale = np.sqrt(weights @ (grid - centre) ** 2)
    for r in range(16):  # an n-point Gauss rule integrates polynomials of degree 2n - 1 exactly
        want = weights @ ((grid - centre) / scale) ** r
        assert w @ ((tau - centre) / scale) ** r == pytest.approx(want, rel=1e-9, abs=1e-12)
    _, b_want, A_want = post._model.conditional(tau)
    np.testing.assert_array_equal(b, b_want)
    np.testing.assert_array_equal(Ainv, A_want)


@pytest.mark.parametrize("threads", [1, 2])
def test_large_k_path_equals_small_k_path(monkeypatch, threads):
    y, v = simulated(700)
    events = [(">", 0.2), ("<", -0.2)]
    whole = exact_posterior(y, v)
    assert whole._theta_cached()
    names, _, want = whole.summary_values()
    want_p = whole.theta_probs(events)
    monkeypatch.setattr(exact, "CHUNK_ELEMENTS", 500)  # the large-k path ...
    monkeypatch.setattr(exact, "BLOCK_ELEMENTS", 64 * 40)  # ... in blocks of 64 studies
    monkeypatch.setattr(exact, "THETA_THREADS", threads)
    big = exact_posterior(y, v)
    assert not big._theta_cached()
    np.testing.assert_array_equal(big.tau_grid, whole.tau_grid)
    got_names, _, got = big.summary_values(theta_events=events)
    assert got_names == names
    sd = want[:, 1]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)  # as test_exact_large's chunked fit
    # the study effects' quantiles: within the root finding's tolerance, 1e-13 sd (plus what the
    # chunked quadrature's last bits move: test_exact_large)
    theta = slice(3, 3 + len(y))
    assert np.max(np.abs(got[theta, 2:] - want[theta, 2:]) / sd[theta, None]) < 1e-13
    for a, b in zip(big.theta_probs(events), want_p):  # the first from summary_values' pass
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    for a, b in zip(big.theta_probs(events), want_p):  # then computed again
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    # an independent root: bisection on the whole mixture of one study
    j = 123
    label = f"theta[{big.study[j]}]"
    assert abs(big.quantile(label, 0.975) - got[3 + j, 4]) < 1e-12 * sd[3 + j]


def test_threads_give_the_same_numbers(monkeypatch):
    y, v = simulated(700, seed=5)
    monkeypatch.setattr(exact, "CHUNK_ELEMENTS", 500)
    monkeypatch.setattr(exact, "BLOCK_ELEMENTS", 64 * 40)
    out = {}
    for threads in (1, 2):
        monkeypatch.setattr(exact, "THETA_THREADS", threads)
        post = exact_posterior(y, v)
        out[threads] = post.summary_values(theta_events=[(">", 0.1)])[2], post.theta_probs([(">", 0.1)])[0]
    np.testing.assert_array_equal(out[1][0], out[2][0])
    np.testing.assert_array_equal(out[1][1], out[2][1])


def test_prefetched_bayes_factor_is_the_same_number():
    y, v = simulated(300, seed=3)
    want = exact_posterior(y, v).log_bayes_factor("mu0")
    post = exact_posterior(y, v)
    post.prefetch_bayes_factor("mu0")
    post.prefetch_bayes_factor("mu0")  # started once
    post.prefetch_bayes_factor("tau0")  # nothing to start
    assert post.log_bayes_factor("mu0") == want
    assert post.bayes_factor("mu = 0") == np.exp(want)
    X = np.column_stack([np.ones(300), np.linspace(-1, 1, 300)])
    reg = exact_posterior(y, v, X=X, coef_names=["intercept", "x"])
    want_x = exact_posterior(y, v, X=X, coef_names=["intercept", "x"]).log_bayes_factor("beta[x]=0")
    reg.prefetch_bayes_factor("beta[x]=0")
    assert reg.log_bayes_factor("beta[x]=0") == want_x
