"""Profile-likelihood confidence intervals of the nested variance components of ``rma_mv``.

The bounds of ``sigma2_j`` solve ``ll_profile(sigma2_j) = ll_max - chi2_{1, level} / 2``, where
``ll_profile`` re-maximizes over the other components at each trial value (metafor 3.8-1
``confint.rma.mv``); a lower bound at the boundary 0 is reported as 0.

References
----------
Viechtbauer, W. (2010). *J. Stat. Softw.*, 36(3) (metafor ``confint.rma.mv``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

__all__ = ["profile_ci"]


def profile_ci(problem, theta_hat, ll_max: float, j: int, level: float) -> dict:
    """Profile-likelihood bounds of ``sigma2_j`` (other components re-estimated at each trial).

    Parameters
    ----------
    problem : bayes_se.frequentist.mv_likelihood.Problem
        The likelihood of a fit with nested variance components.
    theta_hat : numpy.ndarray
        The estimates.
    ll_max : float
        The maximized log-likelihood.
    j : int
        Which component.
    level : float
        Confidence level.

    Returns
    -------
    dict
        ``estimate``, ``ci_lower``, ``ci_upper`` (``inf`` when the profile never drops to the target).
    """
    target = ll_max - stats.chi2.ppf(level, 1) / 2.0
    free = np.ones(len(theta_hat), bool)
    free[j] = False
    start = np.log(np.maximum(theta_hat, 1e-4 * problem.scale))

    def gap(value):
        phi = start.copy()
        with np.errstate(divide="ignore"):
            phi[j] = math.log(value) if value > 0 else -np.inf
        _, fit = problem.maximize(phi, free)
        return problem.ll(fit) - target

    est = float(theta_hat[j])
    if est <= 0 or gap(0.0) >= 0:
        lower = 0.0
    else:
        lower = optimize.brentq(gap, 0.0, est, xtol=1e-15, rtol=1e-13, maxiter=500)
    upper_bracket = max(est, problem.scale * 1e-3)
    for _ in range(200):
        upper_bracket *= 2.0
        if gap(upper_bracket) < 0:
            break
    else:
        return {"estimate": est, "ci_lower": lower, "ci_upper": math.inf}
    upper = optimize.brentq(gap, est, upper_bracket, xtol=1e-15, rtol=1e-13, maxiter=500)
    return {"estimate": est, "ci_lower": lower, "ci_upper": upper}
