"""Random-effect structures of :func:`bayes_se.frequentist.multilevel.rma_mv`.

The random effects have covariance ``sum_j theta_j A_j`` with fixed 0/1 "same-group" matrices
``A_j``. Each structure maps unconstrained parameters ``phi`` (what the optimizer moves) to the
linear parameters ``theta``, with the Jacobian ``d theta / d phi`` and the inverse map:

* :class:`Nested` variance components: ``theta_j = sigma2_j = exp(phi_j)``;
* :class:`CompoundSymmetry`: ``theta = (tau2, tau2 rho)``, ``phi = (log tau2, atanh rho)``;
* :class:`Unstructured`: ``theta = vech(G)``, ``G = L L'``, ``phi = vech(L)`` with a log diagonal.

References
----------
Pinheiro, J. C. & Bates, D. M. (1996). Unconstrained parametrizations for variance-covariance
matrices. *Statistics and Computing*, 6, 289-296 (log-Cholesky).
Viechtbauer, W. (2010). *J. Stat. Softw.*, 36(3) (metafor ``rma.mv`` ``struct = "CS"``/``"UN"``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Nested", "CompoundSymmetry", "Unstructured", "same_group"]


class Nested:
    """Variance components ``theta_j = sigma2_j = exp(phi_j)``."""

    def __init__(self, A):
        self.A = A

    def theta(self, phi):
        with np.errstate(under="ignore"):
            return np.exp(phi)

    def jac(self, phi):
        return np.diag(self.theta(phi))

    def phi(self, theta):
        with np.errstate(divide="ignore"):
            return np.log(np.asarray(theta, float))


class CompoundSymmetry:
    """Compound symmetry: ``theta = (tau2, tau2 * rho)``, ``phi = (log tau2, atanh rho)``."""

    def __init__(self, A):
        self.A = A

    def theta(self, phi):
        tau2, rho = math.exp(phi[0]), math.tanh(phi[1])
        return np.array([tau2, tau2 * rho])

    def jac(self, phi):
        tau2, rho = math.exp(phi[0]), math.tanh(phi[1])
        return np.array([[tau2, 0.0], [tau2 * rho, tau2 * (1.0 - rho**2)]])

    def phi(self, theta):
        return np.array([math.log(theta[0]), math.atanh(theta[1] / theta[0])])


class Unstructured:
    """Unstructured ``G``: ``theta = vech(G)``, ``phi = vech(L)`` with ``G = L L'``, log diagonal."""

    def __init__(self, A, q):
        self.A = A
        self.q = q
        self.pairs = [(j, m) for m in range(q) for j in range(m, q)]  # column-major lower triangle

    def _L(self, phi):
        L = np.zeros((self.q, self.q))
        for value, (j, m) in zip(phi, self.pairs):
            L[j, m] = math.exp(value) if j == m else value
        return L

    def theta(self, phi):
        G = self._L(phi) @ self._L(phi).T
        return np.array([G[j, m] for j, m in self.pairs])

    def jac(self, phi):
        L = self._L(phi)
        J = np.zeros((len(self.pairs), len(self.pairs)))
        for c, (a, b) in enumerate(self.pairs):
            scale = L[a, b] if a == b else 1.0  # d L_aa / d phi = L_aa on the log scale
            for r, (j, m) in enumerate(self.pairs):
                # d (L L')_jm / d L_ab = delta_ja L_mb + delta_ma L_jb
                J[r, c] = scale * ((L[m, b] if j == a else 0.0) + (L[j, b] if m == a else 0.0))
        return J

    def G(self, theta) -> np.ndarray:
        """The symmetric ``q x q`` matrix whose lower triangle is ``theta``."""
        G = np.zeros((self.q, self.q))
        for value, (j, m) in zip(theta, self.pairs):
            G[j, m] = G[m, j] = value
        return G

    def phi(self, theta):
        L = np.linalg.cholesky(self.G(theta))
        return np.array([math.log(L[j, m]) if j == m else L[j, m] for j, m in self.pairs])


def same_group(labels) -> np.ndarray:
    """``A[i, j] = 1`` where effects ``i`` and ``j`` share a label, else 0."""
    codes = np.unique(np.array([str(v) for v in labels]), return_inverse=True)[1]
    return (codes[:, None] == codes[None, :]).astype(float)
