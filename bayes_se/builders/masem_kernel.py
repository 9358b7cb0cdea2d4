"""The MASEM marginal log-likelihood and its gradient as one compiled (Numba) PyTensor Op.

Same density as :mod:`bayes_se.builders.masem_likelihood` (and its NumPy reference
:func:`bayes_se.builders.masem.marginal_loglik`): for study ``i`` with reported pairs ``o``,
``y_i[o] ~ N(mu[o], P_i[o, o] / (n_i - 1) + T[o, o])``. Written as a single Op because the
symbolic graph of this small model has ~200 nodes whose per-node overhead (about 1 microsecond
each in PyTensor's C virtual machine) made one gradient cost ~250 microseconds and its compilation
5-15 s; the kernel below evaluates value and gradient in a few microseconds and compiles once
(Numba's on-disk cache) for all data sets.

Gradient: with ``A_i = C_i^{-1}`` and ``e_i = y_i - mu``, ``d/dT = sum_i mask_i * (A_i e_i e_i' A_i
- A_i) / 2`` (the unreported rows and columns masked out), exact. The derivative in ``rho`` (which
enters ``mu`` and the Olkin-Siotani ``P_i``) is the complex-step derivative
``Im f(rho + i h e_j) / h`` with ``h = 1e-30``: the log density is analytic in ``rho`` (no
absolute values or conjugates; determinant and inverse by Gauss-Jordan elimination without
pivoting), so the derivative is exact to rounding, with no cancellation (Squire & Trapp 1998).

References
----------
Squire, W. & Trapp, G. (1998). Using complex variables to estimate derivatives of real functions.
SIAM Review 40, 110-112. Olkin, I. & Finn, J. D. (1995). Psychological Bulletin 118, 155-164.
"""

from __future__ import annotations

import numba
import numpy as np

from bayes_se.correlations import pair_index

__all__ = ["masem_loglik_op", "MasemLogLik", "loglik_and_grad", "MODES"]

#: Likelihood codes of the kernel.
MODES = {"pooled": 0, "own": 1, "fisher_z": 2}
_H = 1e-30
_LOG_2PI = float(np.log(2.0 * np.pi))


@numba.njit(cache=True, error_model="numpy")
def psi(flat, p, ps, pt_, out):
    """Olkin-Siotani numerators of the pairs (ps, pt_) of a flattened p x p matrix."""
    q = ps.shape[0]
    for a in range(q):
        s, t = ps[a], pt_[a]
        for b in range(q):
            u, v = ps[b], pt_[b]
            rst, ruv = flat[s * p + t], flat[u * p + v]
            rsu, rsv, rtu, rtv = flat[s * p + u], flat[s * p + v], flat[t * p + u], flat[t * p + v]
            out[a, b] = (0.5 * rst * ruv * (rsu * rsu + rsv * rsv + rtu * rtu + rtv * rtv)
                         + rsu * rtv + rsv * rtu
                         - (rst * rsu * rsv + rst * rtu * rtv + rsu * rtu * ruv + rsv * rtv * ruv))

@numba.njit(cache=True, error_model="numpy")
def inv_det(C, A, M):
    """Inverse (into A) and determinant of C by Gauss-Jordan elimination without pivoting
    (analytic in the entries; C symmetric positive definite on the model's support); M is
    workspace."""
    q = C.shape[0]
    for a in range(q):
        for b in range(q):
            M[a, b] = C[a, b]
    for a in range(q):
        for b in range(q):
            A[a, b] = 1.0 if a == b else 0.0
    det = M[0, 0] * 0.0 + 1.0
    for c in range(q):
        piv = M[c, c]
        det = det * piv
        if piv.real <= 0.0:
            return det * 0.0
        for b in range(q):
            M[c, b] = M[c, b] / piv
            A[c, b] = A[c, b] / piv
        for a in range(q):
            if a != c:
                f = M[a, c]
                for b in range(q):
                    M[a, b] = M[a, b] - f * M[c, b]
                    A[a, b] = A[a, b] - f * A[c, b]
    return det

@numba.njit(cache=True, error_model="numpy")
def cpc_corr(z, d, L, R):
    """Correlation matrix R (d x d) from canonical partial correlations z in the order of
    :func:`bayes_se.builders.masem.lkj_corr_cpc` (rows i = 1..d-1, columns j < i)."""
    for i in range(d):
        for j in range(d):
            L[i, j] = 0.0
    L[0, 0] = 1.0
    m = 0
    for i in range(1, d):
        acc = L[0, 0] * 0.0
        for j in range(i):
            val = z[m] * np.sqrt(1.0 - acc) if j > 0 else z[m] + 0.0j
            m += 1
            L[i, j] = val
            acc = acc + val * val
        L[i, i] = np.sqrt(1.0 - acc)
    for i in range(d):
        for j in range(d):
            s = L[0, 0] * 0.0
            for m2 in range(min(i, j) + 1):
                s += L[i, m2] * L[j, m2]
            R[i, j] = s

@numba.njit(cache=True, error_model="numpy")
def kernel(theta, q, n, y, obs, own, own_mask, p, mode, ps, pt_):
    """Value and gradient in theta = (cpc of R (q), tau (q), cpc of Omega (q(q-1)/2)).

    Pass 0 evaluates the density and ``G = d/dT`` analytically; passes 1..q are complex steps in
    the cpc of R (which move ``mu`` and ``P``); the tau and Omega coordinates get
    ``sum_ab G_ab dT_ab/dtheta`` with ``dT/dtheta`` by complex steps of ``T`` alone."""
    k = n.shape[0]
    nt = theta.shape[0]
    grad = np.zeros(nt)
    value = 0.0
    th = np.zeros(nt, dtype=np.complex128)
    Lp = np.zeros((p, p), dtype=np.complex128)
    Rp = np.zeros((p, p), dtype=np.complex128)
    Lq = np.zeros((q, q), dtype=np.complex128)
    Om = np.zeros((q, q), dtype=np.complex128)
    T = np.zeros((q, q), dtype=np.complex128)
    G = np.zeros((q, q))
    flat = np.zeros(p * p, dtype=np.complex128)
    flat_i = np.zeros(p * p, dtype=np.complex128)
    P = np.zeros((q, q), dtype=np.complex128)
    C = np.zeros((q, q), dtype=np.complex128)
    A = np.zeros((q, q), dtype=np.complex128)
    M = np.zeros((q, q), dtype=np.complex128)
    rc = np.zeros(q, dtype=np.complex128)
    mu = np.zeros(q, dtype=np.complex128)
    e = np.zeros(q, dtype=np.complex128)
    Ae = np.zeros(q, dtype=np.complex128)
    for a in range(nt):
        th[a] = theta[a]
    _make_T(th, q, Lq, Om, T)
    for j in range(q + 1):  # j = 0: the value and G; j >= 1: complex step in theta[j - 1]
        for a in range(q):
            th[a] = theta[a]
        if j > 0:
            th[j - 1] = th[j - 1] + 1j * _H
        cpc_corr(th[:q], p, Lp, Rp)
        for a in range(p):
            for b in range(p):
                flat[a * p + b] = Rp[a, b]
            flat[a * p + a] = 1.0
        for a in range(q):
            rc[a] = Rp[ps[a], pt_[a]]
            if not abs(rc[a].real) < 1.0:  # a canonical partial correlation at +-1 (boundary)
                return -np.inf, np.zeros(nt)
            mu[a] = np.arctanh(rc[a]) if mode == 2 else rc[a]
        if mode != 1:
            psi(flat, p, ps, pt_, P)
            if mode == 2:
                for a in range(q):
                    for b in range(q):
                        P[a, b] = P[a, b] / ((1.0 - rc[a] * rc[a]) * (1.0 - rc[b] * rc[b]))
        total = 0.0j
        for i in range(k):
            if mode == 1:
                for m in range(p * p):
                    flat_i[m] = own[i, m] + (1.0 - own_mask[i, m]) * flat[m]
                psi(flat_i, p, ps, pt_, P)
            w = 1.0 / (n[i] - 1.0)
            nobs = 0.0
            for a in range(q):
                nobs += obs[i, a]
                e[a] = obs[i, a] * (y[i, a] - mu[a])
                for b in range(q):
                    mab = obs[i, a] * obs[i, b]
                    C[a, b] = mab * (P[a, b] * w + T[a, b]) + (1.0 - mab) * (1.0 if a == b else 0.0)
            det = inv_det(C, A, M)
            if not det.real > 0.0:
                return -np.inf, np.zeros(nt)
            quad = 0.0j
            for a in range(q):
                s = 0.0j
                for b in range(q):
                    s += A[a, b] * e[b]
                Ae[a] = s
                quad += e[a] * s
            total += -0.5 * (np.log(det) + quad + nobs * _LOG_2PI)
            if j == 0:
                for a in range(q):
                    for b in range(q):
                        G[a, b] += 0.5 * obs[i, a] * obs[i, b] * (Ae[a].real * Ae[b].real - A[a, b].real)
        if j == 0:
            value = total.real
        else:
            grad[j - 1] = total.imag / _H
    for a in range(nt):
        th[a] = theta[a]
    for t in range(q, nt):
        th[t] = theta[t] + 1j * _H
        _make_T(th, q, Lq, Om, T)
        s = 0.0
        for a in range(q):
            for b in range(q):
                s += G[a, b] * T[a, b].imag / _H
        grad[t] = s
        th[t] = theta[t]
    return value, grad


@numba.njit(cache=True, error_model="numpy")
def _make_T(th, q, Lq, Om, T):
    """T = diag(tau) Omega diag(tau) from theta's tau and Omega coordinates."""
    if q > 1:
        cpc_corr(th[2 * q:], q, Lq, Om)
    else:
        Om[0, 0] = 1.0
    for a in range(q):
        for b in range(q):
            T[a, b] = th[q + a] * th[q + b] * Om[a, b]




def _kernel():
    return kernel


_PAIRS: dict = {}


def _pairs(p: int):
    if p in _PAIRS:
        return _PAIRS[p]
    pairs = np.array(pair_index(p), dtype=np.int64).reshape(-1, 2)
    _PAIRS[p] = np.ascontiguousarray(pairs[:, 0]), np.ascontiguousarray(pairs[:, 1])
    return _PAIRS[p]


def loglik_and_grad(theta, n, y, obs, own, own_mask, p: int, likelihood: str):
    """(value, gradient) of the summed log density in ``theta`` = (canonical partial correlations
    of R, tau, canonical partial correlations of Omega) (NumPy arrays in)."""
    ps, pt_ = _pairs(p)
    c = np.ascontiguousarray
    return _kernel()(c(theta, float), len(ps), c(n, float), c(y, float), c(obs, float), c(own, float),
                     c(own_mask, float), int(p), MODES[likelihood], ps, pt_)


def masem_loglik_op(p: int, likelihood: str):
    """A PyTensor Op ``f(theta, n, y, obs, own, own_mask) -> (loglik, d loglik / d theta)`` whose
    first output's gradient is the second (one kernel call per evaluation)."""
    return MasemLogLik(p, likelihood)


from pytensor.graph.op import Op  # noqa: E402


class MasemLogLik(Op):
    """The kernel as an Op (module level, so that PyMC can send it to the processes of parallel chains)."""

    __props__ = ("p", "likelihood")

    def __init__(self, p, likelihood):
        self.p, self.likelihood = int(p), str(likelihood)

    def make_node(self, theta, n, y, obs, own, own_mask):
        import pytensor.tensor as pt
        from pytensor.graph.basic import Apply

        inputs = [pt.as_tensor_variable(v) for v in (theta, n, y, obs, own, own_mask)]
        return Apply(self, inputs, [pt.dscalar(), pt.dvector()])

    def perform(self, node, inputs, output_storage):
        value, grad = loglik_and_grad(*inputs, p=self.p, likelihood=self.likelihood)
        output_storage[0][0] = np.asarray(value)
        output_storage[1][0] = grad

    def L_op(self, inputs, outputs, output_grads):
        from pytensor.gradient import grad_undefined

        return [output_grads[0] * outputs[1]] + [
            grad_undefined(self, i, inputs[i], "data input") for i in range(1, 6)]


def _register_numba():
    """Let PyTensor's Numba backend call the kernel directly, so that NUTS can compile the whole
    density with ``mode="NUMBA"`` (no per-node overhead of the C virtual machine)."""
    try:
        from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key
    except ImportError:  # pragma: no cover - PyTensor without its Numba backend (or before its cache)
        return

    # keyed by the Op's props (all the generated function depends on), so that PyTensor can keep
    # the compiled density in its on-disk cache instead of compiling it in every process
    @register_funcify_default_op_cache_key(MasemLogLik)
    def _funcify_masem_loglik(op, node=None, **kwargs):
        p, mode = op.p, MODES[op.likelihood]
        ps, pt_ = _pairs(p)
        q = len(ps)

        @numba.njit
        def masem_loglik(theta, n, y, obs, own, own_mask):
            value, grad = kernel(theta, q, n, y, obs, own, own_mask, p, mode, ps, pt_)
            return np.asarray(value), grad

        return masem_loglik


_register_numba()
