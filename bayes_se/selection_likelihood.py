"""Step-function selection models with normal random effects, the study effects integrated out.

Model (Vevea & Hedges 1995; the Bayesian form of RoBMA, Bartoš et al. 2023)::

    p(y_i | mu, tau, omega) = w(p_i) N(y_i; mu, v_i + tau^2) / A_i,
    A_i = sum_j omega_j P(p_i in interval j | mu, tau, v_i),

where ``p_i`` is the p-value of study i, one-sided (``1 - Phi(y_i / se_i)``, small for large positive
effects) or two-sided (``2 (1 - Phi(|y_i| / se_i))``), the cut-offs ``c_1 < ... < c_{J-1}`` split
(0, 1) into J intervals and ``w(p) = omega_j`` on interval j. With the interval of the smallest
p-values first, ``omega_1 = 1`` and the weights fall (RoBMA's cumulative Dirichlet prior):
``eta ~ Dirichlet(alpha)``, ``omega_j = eta_j + ... + eta_J``.

Writing ``S(q) = P(z_i > q)`` (one-sided) or ``P(|z_i| > q)`` (two-sided) for ``z_i = y_i / se_i ~
N(mu / se_i, (v_i + tau^2) / v_i)`` and ``q_j`` the z-value of cut-off ``c_j``, the normaliser is
``A_i = omega_J + sum_{j < J} (omega_j - omega_{j+1}) S(q_j)``: a sum of non-negative terms (the
weights fall), so it loses no digits to cancellation.

Two twins of the log-likelihood: :func:`log_likelihood` in NumPy/SciPy (vectorised over draws),
and :func:`pt_log_likelihood` in PyTensor for the PyMC model of :mod:`bayes_se.bias_averaging`.

References
----------
Vevea JL, Hedges LV (1995). A general linear model for estimating effect size in the presence of
publication bias. Psychometrika 60(3), 419-435.
Bartoš F, Maier M, Wagenmakers E-J, Doucouliagos H, Stanley TD (2023). Robust Bayesian
meta-analysis: model-averaging across complementary publication bias adjustment methods.
Research Synthesis Methods 14(1), 99-116. doi:10.1002/jrsm.1594
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from bayes_se.errors import SpecError

__all__ = ["WeightFunction", "ROBMA_WEIGHT_FUNCTIONS", "log_likelihood", "pt_log_likelihood",
           "p_values", "interval_index"]

LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class WeightFunction:
    """A step function of the p-value: ``side`` "one" or "two", ``steps`` the cut-offs in (0, 1)
    ascending, ``alpha`` the cumulative Dirichlet parameters (one per interval, smallest p first;
    default all 1)."""

    side: str
    steps: tuple
    alpha: tuple | None = None

    def __post_init__(self):
        if self.side not in ("one", "two"):
            raise SpecError(f"side must be 'one' or 'two', got {self.side!r}", key="side")
        steps = tuple(float(s) for s in self.steps)
        if not steps or any(not 0.0 < s < 1.0 for s in steps) or list(steps) != sorted(set(steps)):
            raise SpecError(f"steps must be distinct, ascending and inside (0, 1), got {self.steps}",
                            key="steps")
        object.__setattr__(self, "steps", steps)
        alpha = (1.0,) * (len(steps) + 1) if self.alpha is None else tuple(float(a) for a in self.alpha)
        if len(alpha) != len(steps) + 1 or not all(a > 0 for a in alpha):
            raise SpecError(f"alpha needs {len(steps) + 1} positive values, got {self.alpha}", key="alpha")
        object.__setattr__(self, "alpha", alpha)

    @property
    def n_intervals(self) -> int:
        return len(self.steps) + 1

    @property
    def name(self) -> str:
        return f"{self.side}-sided ({', '.join(f'{s:g}' for s in self.steps)})"

    def z_cuts(self) -> np.ndarray:
        """z-values of the cut-offs, descending: ``p < c_j`` iff ``z > q_j`` (or ``|z| > q_j``)."""
        c = np.asarray(self.steps)
        return special.ndtri(1.0 - (c if self.side == "one" else c / 2.0))


#: RoBMA-PSMA's six weight functions (Bartoš et al. 2023), in RoBMA's order.
ROBMA_WEIGHT_FUNCTIONS = (
    WeightFunction("two", (0.05,)),
    WeightFunction("two", (0.05, 0.10)),
    WeightFunction("one", (0.05,)),
    WeightFunction("one", (0.025, 0.05)),
    WeightFunction("one", (0.05, 0.5)),
    WeightFunction("one", (0.025, 0.05, 0.5)),
)


def p_values(y, se, side: str) -> np.ndarray:
    """One-sided ``1 - Phi(y / se)`` or two-sided ``2 (1 - Phi(|y| / se))`` p-values."""
    z = np.asarray(y, float) / np.asarray(se, float)
    return special.ndtr(-z) if side == "one" else 2.0 * special.ndtr(-np.abs(z))


def interval_index(y, se, wf: WeightFunction) -> np.ndarray:
    """Index j (0 = smallest p-values) of the interval each study's p-value falls in."""
    p = p_values(y, se, wf.side)
    return np.searchsorted(np.asarray(wf.steps), p, side="right")


def omega_from_eta(eta) -> np.ndarray:
    """``omega_j = eta_j + ... + eta_J`` (reverse cumulative sum along the last axis)."""
    eta = np.asarray(eta, float)
    return np.flip(np.cumsum(np.flip(eta, -1), -1), -1)


def log_likelihood(y, se, mu, tau, omega, wf: WeightFunction) -> np.ndarray:
    """Per-study log-likelihood ``log p(y_i | mu, tau, omega)`` of the step-function selection model.

    ``mu``, ``tau`` of shape (n,) (or scalars) and ``omega`` (n, J) (or (J,)); returns (n, k).
    ``omega = 1`` everywhere gives the normal random-effects likelihood.
    """
    y = np.asarray(y, float)
    se = np.asarray(se, float)
    mu = np.atleast_1d(np.asarray(mu, float))[:, None]
    tau = np.atleast_1d(np.asarray(tau, float))[:, None]
    omega = np.atleast_2d(np.asarray(omega, float))
    s = np.sqrt(se**2 + tau**2)
    j = interval_index(y, se, wf)
    q = wf.z_cuts()
    logdens = -0.5 * (LOG_2PI + ((y - mu) / s) ** 2) - np.log(s)
    A = omega[:, -1][:, None] * np.ones_like(s)
    for jj in range(len(q)):
        edge = se * q[jj]
        surv = special.ndtr((mu - edge) / s)
        if wf.side == "two":
            surv = surv + special.ndtr((-mu - edge) / s)
        A = A + (omega[:, jj] - omega[:, jj + 1])[:, None] * surv
    return np.log(omega[:, j]) + logdens - np.log(A)


def pt_log_likelihood(y, se, j, mu, tau, omega, wf: WeightFunction):
    """The PyTensor twin of :func:`log_likelihood` for scalars ``mu``, ``tau`` and a vector ``omega``:
    returns the (k,) vector of per-study log-likelihoods. ``j`` holds each study's interval index."""
    import pytensor.tensor as pt

    s2 = se**2 + tau**2
    s = pt.sqrt(s2)
    q = wf.z_cuts()

    def ncdf(x):
        return 0.5 * pt.erfc(-x / math.sqrt(2.0))

    logdens = -0.5 * (LOG_2PI + (y - mu) ** 2 / s2) - 0.5 * pt.log(s2)
    A = omega[-1]
    for jj in range(len(q)):
        edge = se * float(q[jj])
        surv = ncdf((mu - edge) / s)
        if wf.side == "two":
            surv = surv + ncdf((-mu - edge) / s)
        A = A + (omega[jj] - omega[jj + 1]) * surv
    return pt.log(omega[j]) + logdens - pt.log(A)
