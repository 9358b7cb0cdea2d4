"""The univariate rma path in O(k) memory (issue 13): no k x k matrix, 100,000 effects in seconds.

The numbers themselves are checked against metafor in tests/test_frequentist_rma.py and
tests/test_frequentist_bias.py; here the O(k) sums are checked against the explicit k x k
matrices they replace, and the memory of a large fit is measured.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from bayes_se.frequentist import rma
from bayes_se.frequentist.tau2 import ResidualProjection, generalized_q, hat_residual_matrix

ALGEBRA_RTOL = 1e-10  # the same quantities by two exact formulas: rounding only
BIG_K = 100_000
PEAK_MB = 200.0  # a k x k float matrix at k = 100,000 would take 80,000 MB
TIME_NOTE_S = 5.0  # reported, not asserted (shared CI machines)


@pytest.mark.parametrize("p", [1, 3])
def test_residual_projection_equals_the_explicit_matrix(p):
    rng = np.random.default_rng(p)
    k = 40
    X = np.column_stack([np.ones(k)] + [rng.normal(size=k) for _ in range(p - 1)])
    vi = rng.uniform(0.01, 0.5, k)
    w = 1.0 / (vi + 0.1)
    y = rng.normal(size=k)
    P = hat_residual_matrix(w, X)
    R = ResidualProjection(w, X, dense=False)  # the O(k) forms, not the matrix they replace
    np.testing.assert_allclose(R.apply(y), P @ y, rtol=ALGEBRA_RTOL, atol=1e-13)
    assert R.quad(y) == pytest.approx(y @ P @ y, rel=ALGEBRA_RTOL)
    assert R.trace() == pytest.approx(np.trace(P), rel=ALGEBRA_RTOL)
    assert R.sum_sq(w) == pytest.approx(np.sum(P * P), rel=ALGEBRA_RTOL)
    PV = P * vi[None, :]
    assert R.sum_sq(w * vi) == pytest.approx(np.sum(PV * PV.T), rel=ALGEBRA_RTOL)
    assert R.sum_sq(w, w * vi) == pytest.approx(np.sum(PV * P), rel=ALGEBRA_RTOL)
    WX = X * w[:, None]
    np.testing.assert_allclose(R.h, np.einsum("ij,jk,ik->i", WX, np.linalg.inv(X.T @ WX), X), rtol=ALGEBRA_RTOL)
    P0 = np.eye(k) - X @ np.linalg.solve(X.T @ X, X.T)
    R0 = ResidualProjection(np.ones(k), X, dense=False)
    assert R0.sum_sq(vi) == pytest.approx(np.sum((P0 * vi) * (P0 * vi).T), rel=ALGEBRA_RTOL)
    assert generalized_q(0.1, y, vi, X) == pytest.approx(y @ P @ y, rel=ALGEBRA_RTOL)


@pytest.mark.parametrize("moderator", [False, True], ids=["intercept", "moderator"])
def test_reml_with_100k_effects_stays_in_o_k_memory(moderator):
    rng = np.random.default_rng(13)
    vi = rng.uniform(0.01, 0.1, BIG_K)
    x = rng.normal(size=BIG_K)
    yi = 0.3 + 0.1 * x + rng.normal(0.0, np.sqrt(vi + 0.04))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        res = rma(yi, vi, X=x[:, None] if moderator else None, method="REML")
        out = res.to_dict()  # also the Q-profile CI of tau2
        blup = res.blup()
    finally:
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
    assert peak < PEAK_MB, f"peak {peak:.0f} MB"
    assert len(blup) == BIG_K and np.isfinite(out["tau2"]) and out["tau2_ci_lower"] < out["tau2"] < out["tau2_ci_upper"]
    # the generating value, k = 100,000; without the moderator its variance 0.1^2 joins tau^2
    assert res.tau2 == pytest.approx(0.04 if moderator else 0.05, rel=0.05)
    print(f"k = {BIG_K}: {elapsed:.2f} s (aim: under {TIME_NOTE_S:g} s), peak {peak:.0f} MB")
