"""Compiled log density of reported mediation paths, with its exact gradient (a PyTensor Op on Numba).

For trial ``i`` with observed paths ``o`` among ``(a, b, c')``, ``e_i = est_i[o] - mu[o]`` and
``A_i = (S_i + T)[o, o]^-1``::

    log L = sum_i -1/2 (|o| log 2 pi + log det (S_i + T)[o, o] + e_i' A_i e_i)
    d log L / d mu = sum_i P_o' A_i e_i
    d log L / d T  = 1/2 sum_i P_o' (A_i e_i e_i' A_i - A_i) P_o

(the matrix derivatives of the Gaussian log density, Petersen & Pedersen 2012, eqs. 57 and 61;
``P_o`` selects the observed paths). The gradient in ``T`` treats its nine entries as free, so
PyTensor's chain rule through the symmetric ``T(tau_a, tau_b, tau_c, rho_ab)`` sums both
off-diagonal entries. Unreported paths are masked: the kernel works on the 3 x 3 matrix with the
identity in the rows and columns of unreported paths and zero residuals there, whose determinant
and quadratic form are those of the observed block. The 3 x 3 inverse and determinant are taken
by cofactors.

The model only builds ``mu`` and ``T`` symbolically; one call of :func:`loglik_and_grad` per
evaluation gives the density and both gradients (the per-node overhead of a graph of a few hundred
small nodes is what made the symbolic density slow).

References
----------
Petersen, K. B. & Pedersen, M. S. (2012). The Matrix Cookbook, sections 2.1-2.2 and 8.1.
"""

from __future__ import annotations

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

__all__ = ["loglik_and_grad", "paths_loglik_op", "PathsLogLik", "masked_arrays"]

_LOG_2PI = float(np.log(2.0 * np.pi))


@numba.njit(cache=True)
def _kernel(mu, T, est, cov, obs, n, pooled):
    k = est.shape[0]
    value = 0.0
    dmu = np.zeros(3)
    dT = np.zeros((3, 3))
    C = np.zeros((3, 3))
    A = np.zeros((3, 3))
    e = np.zeros(3)
    Ae = np.zeros(3)
    for i in range(k):
        nobs = 0.0
        for a in range(3):
            nobs += obs[i, a]
            e[a] = obs[i, a] * (est[i, a] - mu[a])
            for b in range(3):
                m = obs[i, a] * obs[i, b]
                C[a, b] = m * (cov[i, a, b] + T[a, b]) + ((1.0 - m) if a == b else 0.0)
        if pooled:  # var(a_i-hat) of a correlation at the pooled a (Olkin & Siotani)
            C[0, 0] += obs[i, 0] * ((1.0 - mu[0] * mu[0]) ** 2 / (n[i] - 1.0) - cov[i, 0, 0])
        c00 = C[1, 1] * C[2, 2] - C[1, 2] * C[2, 1]
        c01 = C[1, 2] * C[2, 0] - C[1, 0] * C[2, 2]
        c02 = C[1, 0] * C[2, 1] - C[1, 1] * C[2, 0]
        det = C[0, 0] * c00 + C[0, 1] * c01 + C[0, 2] * c02
        if not det > 0.0:
            return -np.inf, np.zeros(3), np.zeros((3, 3))
        A[0, 0] = c00 / det
        A[1, 0] = c01 / det
        A[2, 0] = c02 / det
        A[0, 1] = (C[0, 2] * C[2, 1] - C[0, 1] * C[2, 2]) / det
        A[1, 1] = (C[0, 0] * C[2, 2] - C[0, 2] * C[2, 0]) / det
        A[2, 1] = (C[0, 1] * C[2, 0] - C[0, 0] * C[2, 1]) / det
        A[0, 2] = (C[0, 1] * C[1, 2] - C[0, 2] * C[1, 1]) / det
        A[1, 2] = (C[0, 2] * C[1, 0] - C[0, 0] * C[1, 2]) / det
        A[2, 2] = (C[0, 0] * C[1, 1] - C[0, 1] * C[1, 0]) / det
        quad = 0.0
        for a in range(3):
            s = 0.0
            for b in range(3):
                s += A[a, b] * e[b]
            Ae[a] = s
            quad += e[a] * s
        value += -0.5 * (nobs * _LOG_2PI + np.log(det) + quad)
        if pooled:  # d var / d mu_a = -4 mu_a (1 - mu_a^2) / (n - 1)
            dmu[0] += obs[i, 0] * 0.5 * (Ae[0] * Ae[0] - A[0, 0]) * (-4.0 * mu[0] * (1.0 - mu[0] * mu[0]) / (n[i] - 1.0))
        for a in range(3):
            dmu[a] += obs[i, a] * Ae[a]
            for b in range(3):
                dT[a, b] += 0.5 * obs[i, a] * obs[i, b] * (Ae[a] * Ae[b] - A[a, b])
    return value, dmu, dT


def masked_arrays(est, cov, observed):
    """(est with 0 where unreported, cov with 0 where unreported, observed as 0/1 floats), C-contiguous."""
    obs = np.asarray(observed, bool)
    both = obs[:, :, None] & obs[:, None, :]
    return (np.ascontiguousarray(np.where(obs, est, 0.0), dtype=float),
            np.ascontiguousarray(np.where(both, np.nan_to_num(cov), 0.0), dtype=float),
            np.ascontiguousarray(obs, dtype=float))


def loglik_and_grad(mu, T, est, cov, obs, n=None, pooled: bool = False):
    """(value, d/d mu (3,), d/d T (3, 3)) of the summed log density (arrays from :func:`masked_arrays`).

    ``pooled``: the sampling variance of each reported ``a`` is that of a correlation at the pooled
    ``a``, ``(1 - mu_a^2)^2 / (n_i - 1)`` (Olkin & Siotani; needs ``n``), instead of ``cov[i, 0, 0]``.
    """
    c = np.ascontiguousarray
    n = np.full(len(est), np.nan) if n is None else n
    return _kernel(c(mu, dtype=float), c(T, dtype=float), c(est, dtype=float), c(cov, dtype=float),
                   c(obs, dtype=float), c(n, dtype=float), bool(pooled))


class PathsLogLik(Op):
    """``f(mu, T, est, cov, obs) -> (log L, d log L / d mu, d log L / d T)``; the gradient of the
    first output is given by the other two (one kernel call per evaluation)."""

    __props__ = ("pooled",)

    def __init__(self, pooled: bool = False):
        self.pooled = bool(pooled)

    def make_node(self, mu, T, est, cov, obs, n):
        inputs = [pt.as_tensor_variable(v) for v in (mu, T, est, cov, obs, n)]
        return Apply(self, inputs, [pt.dscalar(), pt.dvector(), pt.dmatrix()])

    def perform(self, node, inputs, output_storage):
        value, dmu, dT = loglik_and_grad(*inputs, pooled=self.pooled)
        output_storage[0][0] = np.asarray(value)
        output_storage[1][0] = dmu
        output_storage[2][0] = dT

    def L_op(self, inputs, outputs, output_grads):
        g = output_grads[0]
        return [g * outputs[1], g * outputs[2]] + [
            grad_undefined(self, i, inputs[i], "data input") for i in range(2, 6)]


def paths_loglik_op(pooled: bool = False) -> PathsLogLik:
    """The Op: ``paths_loglik_op()(mu, T, est, cov, obs, n)[0]`` is the summed log density."""
    return PathsLogLik(pooled)


def _register_numba():
    """Let PyTensor's Numba backend call the kernel directly (no object-mode fallback)."""
    try:
        from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key
    except ImportError:  # pragma: no cover - PyTensor without its Numba backend (or before its cache)
        return

    # keyed by the Op's props (all the generated function depends on), so that PyTensor can keep
    # the compiled density in its on-disk cache instead of compiling it in every process
    @register_funcify_default_op_cache_key(PathsLogLik)
    def _funcify_paths_loglik(op, node=None, **kwargs):
        pooled = bool(op.pooled)

        @numba.njit
        def paths_loglik(mu, T, est, cov, obs, n):
            value, dmu, dT = _kernel(mu, T, est, cov, obs, n, pooled)
            return np.asarray(value), dmu, dT

        return paths_loglik


_register_numba()
