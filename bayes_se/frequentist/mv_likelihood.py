"""The (restricted) log-likelihood of :func:`bayes_se.frequentist.multilevel.rma_mv` and its maximizer.

Model: ``y ~ N(X beta, M)``, ``M = V + sum_j theta_j A_j``. With ``beta`` profiled out by
generalized least squares, ``W = M^-1`` and ``P = W - W X (X' W X)^-1 X' W``::

    ll_ML   = -k/2 log(2 pi) - 1/2 log|M| - 1/2 y' P y
    ll_REML = -(k-p)/2 log(2 pi) + 1/2 log|X'X| - 1/2 log|M| - 1/2 log|X' W X| - 1/2 y' P y

(metafor keeps the constant ``1/2 log|X'X|``), with score ``-1/2 tr(Q A_j) + 1/2 y'P A_j P y``
(``Q = P`` for REML, ``W`` for ML) and the observed Hessian of Harville (1977). The maximizer runs
SciPy's BFGS on the unconstrained ``phi`` of a structure (:mod:`.mv_structures`), then exact
Newton steps on the interior linear parameters so that the estimates meet metafor's 1e-12.

References
----------
Harville, D. A. (1977). Maximum likelihood approaches to variance component estimation.
*JASA*, 72, 320-338.
Viechtbauer, W. (2010). *J. Stat. Softw.*, 36(3) (metafor ``rma.mv``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize

from bayes_se.frequentist.mv_structures import Nested, Unstructured

__all__ = ["GLSFit", "Problem", "evaluate", "score_hessian", "LOG2PI", "NEWTON_TOL", "BOUNDARY"]

LOG2PI = math.log(2.0 * math.pi)
NEWTON_TOL = 1e-13  # relative step size at which the Newton polish stops
BOUNDARY = 1e-9  # a variance below this fraction of var(y) is treated as sitting on the bound 0


@dataclass
class GLSFit:
    """GLS fit at given variance parameters: both log-likelihoods, ``beta``, its ``vcov``, ``W``,
    ``P`` and ``P y``."""

    ll_ml: float
    ll_reml: float
    beta: np.ndarray
    vcov: np.ndarray
    W: np.ndarray
    P: np.ndarray
    Py: np.ndarray


def evaluate(theta, y, X, V, A, logdet_XtX) -> GLSFit | None:
    """GLS fit and both log-likelihoods at ``theta``; None where ``M`` is not positive definite."""
    M = V + sum(t * a for t, a in zip(theta, A))
    try:
        cM = linalg.cho_factor(M, lower=True)
    except linalg.LinAlgError:
        return None
    W = linalg.cho_solve(cM, np.eye(len(y)))
    XtW = X.T @ W
    try:
        cX = linalg.cho_factor(XtW @ X, lower=True)
    except linalg.LinAlgError:
        return None
    vcov = linalg.cho_solve(cX, np.eye(X.shape[1]))
    beta = vcov @ (XtW @ y)
    P = W - XtW.T @ vcov @ XtW
    Py = P @ y
    rss = float(y @ Py)
    logdet_M = 2.0 * np.sum(np.log(np.diag(cM[0])))
    logdet_XtWX = 2.0 * np.sum(np.log(np.diag(cX[0])))
    k, p = X.shape
    ll_ml = -0.5 * k * LOG2PI - 0.5 * logdet_M - 0.5 * rss
    # metafor's REML log-likelihood keeps the constant +1/2 log|X'X| (its REMLf = TRUE)
    ll_reml = -0.5 * (k - p) * LOG2PI + 0.5 * logdet_XtX - 0.5 * logdet_M - 0.5 * logdet_XtWX - 0.5 * rss
    return GLSFit(ll_ml, ll_reml, beta, vcov, W, P, Py)


def score_hessian(fit: GLSFit, A, reml: bool, idx):
    """Score and observed Hessian of the log-likelihood in ``theta[idx]`` (Harville 1977)."""
    Q = fit.P if reml else fit.W
    QA = [Q @ A[i] for i in idx]
    APy = [A[i] @ fit.Py for i in idx]
    g = np.array([-0.5 * np.trace(qa) + 0.5 * fit.Py @ apy for qa, apy in zip(QA, APy)])
    n = len(idx)
    H = np.empty((n, n))
    for a in range(n):
        PAPy = fit.P @ APy[a]
        for b in range(a, n):
            H[a, b] = H[b, a] = 0.5 * np.sum(QA[a] * QA[b].T) - APy[b] @ PAPy
    return g, H


class Problem:
    """One model: data, structure, method; maximizes over the free parameters."""

    def __init__(self, y, X, V, structure, reml):
        self.y, self.X, self.V, self.s, self.reml = y, X, V, structure, reml
        self.A = structure.A
        self.logdet_XtX = np.linalg.slogdet(X.T @ X)[1]
        self.scale = max(float(np.var(y)), float(np.mean(np.diag(V))), 1e-12)

    def ll(self, fit: GLSFit) -> float:
        """The log-likelihood of the fitted method (restricted for REML)."""
        return fit.ll_reml if self.reml else fit.ll_ml

    def evaluate(self, theta) -> GLSFit | None:
        return evaluate(theta, self.y, self.X, self.V, self.A, self.logdet_XtX)

    def maximize(self, phi0, free):
        """Maximize over ``phi[free]`` (others held), then polish in theta; returns theta, fit."""
        phi = np.array(phi0, float)
        free = np.asarray(free, bool)

        def objective(x):
            phi[free] = x
            theta = self.s.theta(phi)
            fit = self.evaluate(theta)
            if fit is None:
                return np.inf, np.zeros(x.size)
            g = self.score(fit)
            return -self.ll(fit), -(self.s.jac(phi).T @ g)[free]

        if free.any():
            res = optimize.minimize(objective, phi[free], jac=True, method="BFGS",
                                    options={"gtol": 1e-10, "maxiter": 2000})
            phi[free] = res.x
        theta = self.s.theta(phi)
        theta, fit = self._polish(theta, phi, free)
        return theta, fit

    def score(self, fit: GLSFit) -> np.ndarray:
        """Score of the log-likelihood in every linear parameter ``theta_j``."""
        Q = fit.P if self.reml else fit.W
        return np.array([-0.5 * np.sum(Q * a) + 0.5 * fit.Py @ a @ fit.Py for a in self.A])

    def _polish(self, theta, phi, free):
        """Exact Newton steps on the free, interior linear parameters.

        Hand-written because BFGS stops on a gradient tolerance, which leaves poorly determined
        variance components about 1e-6 off; Newton converges quadratically to machine precision.
        """
        fit = self.evaluate(theta)
        idx = self.interior(theta, free)
        if not idx:
            return theta, fit
        for _ in range(100):
            g, H = score_hessian(fit, self.A, self.reml, idx)
            try:
                step = -np.linalg.solve(H, g)
            except np.linalg.LinAlgError:
                break
            if g @ step <= 0:  # not an ascent direction: Hessian not negative definite here
                break
            ll0, t = self.ll(fit), 1.0
            while t > 1e-8:
                cand = theta.copy()
                cand[idx] += t * step
                new = self._admissible(cand, idx)
                if new is not None and self.ll(new) >= ll0 - 1e-12 * abs(ll0):
                    break
                t /= 2
            else:
                break
            theta, fit = cand, new
            if np.max(np.abs(t * step) / (np.abs(theta[idx]) + self.scale * 1e-6)) < NEWTON_TOL:
                break
        return theta, fit

    def interior(self, theta, free) -> list[int]:
        """Indices of the free parameters away from the boundary of the parameter space."""
        if isinstance(self.s, Nested):
            return [i for i in range(len(theta)) if free[i] and theta[i] > BOUNDARY * self.scale]
        if not free.all():
            return []
        if isinstance(self.s, Unstructured):
            if np.linalg.eigvalsh(self.s.G(theta))[0] <= BOUNDARY * self.scale:
                return []
        elif theta[0] <= BOUNDARY * self.scale or abs(theta[1] / theta[0]) >= 1 - 1e-9:
            return []
        return list(range(len(theta)))

    def _admissible(self, theta, idx):
        if isinstance(self.s, Nested) and np.any(theta[idx] <= 0):
            return None
        if isinstance(self.s, Unstructured):
            try:
                self.s.phi(theta)
            except np.linalg.LinAlgError:
                return None
        return self.evaluate(theta)
