"""Participant-level simulation of mediation trials (X -> M -> Y) for calibration studies.

Per trial ``i``: ``(a_i, b_i) ~ N((a, b), [[tau_a^2, rho_ab tau_a tau_b], [., tau_b^2]])``,
``c'_i ~ N(c', tau_c^2)``; ``n_i ~ U{n_min..n_max}`` participants with ``X = +-1`` (equal
probability: a standardised binary intervention), ``M = a_i X + e_M``, ``var(e_M) = 1 - a_i^2``,
``Y = c'_i X + b_i M + e_Y``, ``var(e_Y) = 1 - (c'_i^2 + b_i^2 + 2 a_i b_i c'_i)``, so that
``var(M) = var(Y) = 1`` and the trial's population correlations are ``r_XM = a_i``,
``r_XY = c'_i + a_i b_i``, ``r_MY = b_i + a_i c'_i``. A trial whose residual variances would be
``<= 0`` is redrawn (counted in ``truth["redraws"]``).

Each trial gives (i) its sample correlation matrix of (X, M, Y) as a long table (``r_MY`` left
unreported with probability ``missing_my``) and (ii) its own mediation analysis, OLS on z-scored
variables: ``a`` (= r_XM) with its standard error, ``b`` and ``c_prime`` from the regression of Y
on X and M with theirs, ``cov_ab = 0`` (MacKinnon 2008, ch. 4).

Truths: the path-model parameters ``a, b, c_prime, indirect = a b`` and ``indirect_avg =
E[a_i b_i] = a b + rho_ab tau_a tau_b``; for the correlation-matrix MASEM the mean study matrix
``E[R_i] = (a, c' + a b + rho_ab tau_a tau_b, b + a c')`` (exact, the correlations being linear in
``a_i c'_i`` terms whose expectation is ``a c'`` as ``a_i`` and ``c'_i`` are independent) and the
paths at that mean matrix. Redraws truncate the effect distribution, so these truths hold only
where redraws are rare (check ``truth["redraw_rate"]``).

References
----------
MacKinnon, D. P. (2008). Introduction to Statistical Mediation Analysis. Erlbaum.
Bauer, D. J., Preacher, K. J. & Gil, K. M. (2006). Psychological Methods 11, 142-163.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["MediationTrials", "simulate_mediation_trials", "VARIABLES", "PATH_COLUMNS"]

#: Variable names of the simulated trials (the bundled spec's names).
VARIABLES = ("intervention", "self_efficacy", "symptoms")
#: Columns of the reported-paths table.
PATH_COLUMNS = ("study", "n", "a", "se_a", "b", "se_b", "cov_ab", "c_prime", "se_c_prime")
_MAX_REDRAWS = 10_000


@dataclass
class MediationTrials:
    """Simulated trials: ``correlations`` (long: study, n, var1, var2, r), ``paths`` (the trials'
    own standardised mediation analyses, :data:`PATH_COLUMNS`), ``truth`` (dict) and the per-trial
    population paths ``study_paths`` (a, b, c_prime per trial)."""

    correlations: pd.DataFrame
    paths: pd.DataFrame
    truth: dict
    study_paths: pd.DataFrame


def _ols_paths(x, m, y):
    """Standardised a, b, c' and their OLS standard errors from one trial's raw data."""
    n = len(x)
    z = [(v - v.mean()) / v.std(ddof=1) for v in (x, m, y)]
    zx, zm, zy = z
    a = float(np.dot(zx, zm) / (n - 1))
    se_a = float(np.sqrt((1 - a**2) / (n - 2)))
    D = np.column_stack([np.ones(n), zx, zm])
    coef, *_ = np.linalg.lstsq(D, zy, rcond=None)
    resid = zy - D @ coef
    s2 = float(resid @ resid) / (n - 3)
    cov = s2 * np.linalg.inv(D.T @ D)
    return a, se_a, float(coef[2]), float(np.sqrt(cov[2, 2])), float(coef[1]), float(np.sqrt(cov[1, 1]))


def simulate_mediation_trials(k: int, *, a: float, b: float, c_prime: float, tau_a: float, tau_b: float,
                              tau_c: float, rho_ab: float = 0.0, n_range=(60, 300), missing_my: float = 0.0,
                              seed) -> MediationTrials:
    """Simulate ``k`` trials from participant-level data (module docstring).

    Parameters
    ----------
    k : int
    a, b, c_prime : float
        Mean paths (standardised).
    tau_a, tau_b, tau_c : float
        Between-trial SDs of a_i, b_i, c'_i.
    rho_ab : float
        Correlation of a_i and b_i.
    n_range : (int, int)
        Trial sizes drawn uniformly from ``n_min..n_max`` (inclusive).
    missing_my : float
        Probability that a trial does not report ``r_MY``.
    seed : int or numpy.random.Generator

    Returns
    -------
    MediationTrials
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    cov_ab = np.array([[tau_a**2, rho_ab * tau_a * tau_b], [rho_ab * tau_a * tau_b, tau_b**2]])
    # a symmetric square root (valid when a tau is 0, where a Cholesky factor is not)
    vals, vecs = np.linalg.eigh(cov_ab)
    L = vecs * np.sqrt(np.clip(vals, 0.0, None))
    corr_rows, path_rows, truth_rows = [], [], []
    redraws = 0
    x_name, m_name, y_name = VARIABLES
    for i in range(k):
        for _ in range(_MAX_REDRAWS):
            ai, bi = np.array([a, b]) + L @ rng.standard_normal(2)
            ci = c_prime + tau_c * rng.standard_normal()
            var_m = 1.0 - ai**2
            var_y = 1.0 - (ci**2 + bi**2 + 2.0 * ai * bi * ci)
            if var_m > 0 and var_y > 0:
                break
            redraws += 1
        else:
            raise ValueError("the path distribution gives almost no valid trial (residual variance <= 0)")
        n = int(rng.integers(n_range[0], n_range[1] + 1))
        x = rng.choice([-1.0, 1.0], size=n)
        m = ai * x + np.sqrt(var_m) * rng.standard_normal(n)
        y = ci * x + bi * m + np.sqrt(var_y) * rng.standard_normal(n)
        R = np.corrcoef(np.vstack([x, m, y]))
        study = f"trial{i + 1:03d}"
        corr_rows += [(study, n, x_name, m_name, R[0, 1]), (study, n, x_name, y_name, R[0, 2])]
        if not rng.random() < missing_my:
            corr_rows.append((study, n, m_name, y_name, R[1, 2]))
        pa, se_a, pb, se_b, pc, se_c = _ols_paths(x, m, y)
        path_rows.append((study, n, pa, se_a, pb, se_b, 0.0, pc, se_c))
        truth_rows.append((study, ai, bi, ci))
    correlations = pd.DataFrame(corr_rows, columns=["study", "n", "var1", "var2", "r"])
    paths = pd.DataFrame(path_rows, columns=list(PATH_COLUMNS))
    mean_R = np.array([a, c_prime + a * b + rho_ab * tau_a * tau_b, b + a * c_prime], dtype=float)
    r_xm, r_xy, r_my = (float(v) for v in mean_R)
    b_R = (r_my - r_xm * r_xy) / (1.0 - r_xm**2)
    c_R = (r_xy - r_xm * r_my) / (1.0 - r_xm**2)
    truth = {"a": a, "b": b, "c_prime": c_prime, "indirect": a * b,
             "indirect_avg": a * b + rho_ab * tau_a * tau_b,
             f"rho[{x_name},{m_name}]": r_xm, f"rho[{x_name},{y_name}]": r_xy, f"rho[{m_name},{y_name}]": r_my,
             "masem_a": r_xm, "masem_b": b_R, "masem_c_prime": c_R, "masem_indirect": r_xm * b_R,
             "redraws": redraws, "redraw_rate": redraws / (redraws + k)}
    study_paths = pd.DataFrame(truth_rows, columns=["study", "a", "b", "c_prime"])
    return MediationTrials(correlations=correlations, paths=paths, truth=truth, study_paths=study_paths)
