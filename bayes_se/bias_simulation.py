"""Simulations under publication selection: data, SBC of the Bayesian selection model, and a study of
bias and coverage of naive random effects, PET-PEESE, a Bayesian selection model and the ensemble.

Data (:func:`simulate_selected`): candidate studies ``y ~ N(mu, se^2 + tau^2)`` with
``se ~ U(se_range)`` are published with probability ``omega_j`` of their p-value's interval
(a step function, :class:`bayes_se.selection_likelihood.WeightFunction`) until ``k`` are
published: exactly the selection model's likelihood, so an SBC replicate is SBC proper.

References
----------
Talts S, Betancourt M, Simpson D, Vehtari A, Gelman A (2018). Validating Bayesian inference
algorithms with simulation-based calibration. arXiv:1804.06788.
Stanley TD, Doucouliagos H (2014). Meta-regression approximations to reduce publication selection
bias. Research Synthesis Methods 5(1), 60-78 (PET-PEESE).
Carter EC, Schönbrodt FD, Gervais WM, Hilgard J (2019). Correcting for bias in psychology: a
comparison of meta-analytic methods. AMPPS 2(2), 115-144 (the design of such simulations).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
from scipy import stats

from bayes_se.selection_likelihood import WeightFunction, interval_index

__all__ = ["simulate_selected", "pet_peese_wls", "selection_sbc", "bias_study"]

SE_RANGE = (0.08, 0.35)  # standardised mean differences of trials with about 30 to 600 participants


def simulate_selected(k, mu, tau, wf: WeightFunction | None, omega, rng, se_range=SE_RANGE):
    """k published studies: ``y ~ N(mu, se^2 + tau^2)`` kept with probability ``omega[j(p)]``.

    Returns (y, se)."""
    rng = np.random.default_rng(rng)
    ys, ses = [], []
    n = 0
    while n < k:
        m = max(4 * (k - n), 64)
        se = rng.uniform(*se_range, m)
        y = rng.normal(mu, np.sqrt(se ** 2 + tau ** 2))
        if wf is not None:
            keep = rng.random(m) < np.asarray(omega)[interval_index(y, se, wf)]
            y, se = y[keep], se[keep]
        ys.append(y)
        ses.append(se)
        n += y.size
    return np.concatenate(ys)[:k], np.concatenate(ses)[:k]


def pet_peese_wls(y, se, alpha: float = 0.10, level: float = 0.95) -> dict:
    """Conditional PET-PEESE (Stanley & Doucouliagos 2014) by weighted least squares with a
    multiplicative error (as R's ``lm(y ~ se, weights = 1/se^2)``): PET ``y = b0 + b1 se``; when its
    intercept differs from 0 at two-sided ``alpha``, PEESE ``y = b0 + b1 se^2``. Returns the chosen
    ``estimate`` (b0), its ``ci_lower``, ``ci_upper`` (t with k - 2 df) and ``model``."""
    y = np.asarray(y, float)
    se = np.asarray(se, float)

    def wls(x):
        X = np.column_stack([np.ones_like(y), x])
        w = 1.0 / se ** 2
        XtW = X.T * w
        cov = np.linalg.inv(XtW @ X)
        beta = cov @ XtW @ y
        resid = y - X @ beta
        df = y.size - 2
        sigma2 = float(np.sum(w * resid ** 2) / df)
        s = math.sqrt(cov[0, 0] * sigma2)
        return beta[0], s, df

    b, s, df = wls(se)
    p = 2 * stats.t.sf(abs(b / s), df)
    model = "PET"
    if p < alpha:
        b, s, df = wls(se ** 2)
        model = "PEESE"
    q = stats.t.ppf(0.5 + level / 2, df)
    return {"estimate": float(b), "ci_lower": float(b - q * s), "ci_upper": float(b + q * s), "model": model}


def selection_sbc(n_rep: int = 100, *, k: int = 30, seed: int = 1, n_draws: int = 99,
                  wf: WeightFunction = WeightFunction("one", (0.05,)), priors=None) -> pd.DataFrame:
    """SBC of the Bayesian selection model: prior draws of (mu, tau, omega), data by
    :func:`simulate_selected`, a fit by :func:`bayes_se.bayes_selection.fit_selection_model`, and
    the rank of the truth among ``n_draws`` thinned posterior draws (0..n_draws). One row per
    replicate: ``mu``, ``tau``, ``omega[1]``, ... ranks."""
    from bayes_se.bayes_selection import BiasPriors, fit_selection_model

    priors = priors or BiasPriors()
    ss = np.random.SeedSequence(seed)
    rows = []
    for child in ss.spawn(n_rep):
        rng = np.random.default_rng(child)
        mu = rng.normal(priors.mu_mean, priors.mu_sd)
        tau = stats.invgamma(priors.tau_shape, scale=priors.tau_scale).rvs(random_state=rng)
        eta = rng.dirichlet(wf.alpha)
        omega = np.flip(np.cumsum(np.flip(eta)))
        y, se = simulate_selected(k, mu, tau, wf, omega, rng)
        fit = fit_selection_model(y, se, wf, priors=priors, draws=250, tune=300, chains=4,
                                  seed=int(rng.integers(2 ** 31)))
        idx = np.linspace(0, 999, n_draws).astype(int)
        row = {"mu": int(np.sum(fit.draws("mu")[idx] < mu)), "tau": int(np.sum(fit.draws("tau")[idx] < tau))}
        om = fit.draws("omega")
        for j in range(1, om.shape[1]):
            row[f"omega[{j}]"] = int(np.sum(om[idx, j] < omega[j]))
        row["r_hat_max"] = fit.diagnostics.get("r_hat_max", math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def bias_study(*, mus=(0.0, 0.3), omegas=(1.0, 0.2), k: int = 30, tau: float = 0.1, reps: int = 20,
               seed: int = 7, level: float = 0.95, ensemble_kwargs=None, progress=None) -> pd.DataFrame:
    """Bias and coverage of four estimators of mu under one-sided selection at p = .025.

    Cells: true ``mu`` x ``omega`` (the publication probability of a study with one-sided
    p > .025; 1 = no selection); ``reps`` meta-analyses of ``k`` studies each, ``tau`` fixed.
    Estimators: naive random effects (REML, Wald CI: :func:`bayes_se.frequentist.rma`), conditional
    PET-PEESE (:func:`pet_peese_wls`), the Bayesian selection model with one step at one-sided .025
    (posterior mean, central credible interval) and the RoBMA-style ensemble
    (:func:`bayes_se.bias_averaging.bias_ensemble`, model-averaged mu). Returns one row per replicate
    and estimator: ``mu``, ``omega``, ``rep``, ``method``, ``estimate``, ``lower``, ``upper``.
    """
    from bayes_se.bayes_selection import fit_selection_model
    from bayes_se.bias_averaging import bias_ensemble
    from bayes_se.frequentist import rma

    wf = WeightFunction("one", (0.025,))
    ens_kw = {"draws": 1000, **(ensemble_kwargs or {})}
    rows = []
    a = 0.5 * (1 - level)
    for mu in mus:
        for om in omegas:
            ss = np.random.SeedSequence([seed, int(round(1000 * mu)), int(round(1000 * om))])
            for rep, child in enumerate(ss.spawn(reps)):
                t0 = time.perf_counter()
                rng = np.random.default_rng(child)
                y, se = simulate_selected(k, mu, tau, wf, (1.0, om), rng)
                base = {"mu": mu, "omega": om, "rep": rep}
                r = rma(y, se ** 2, method="REML")
                rows.append({**base, "method": "naive RE", "estimate": float(r.beta[0]),
                             "lower": float(r.ci_lower[0]), "upper": float(r.ci_upper[0])})
                pp = pet_peese_wls(y, se, level=level)
                rows.append({**base, "method": "PET-PEESE", "estimate": pp["estimate"],
                             "lower": pp["ci_lower"], "upper": pp["ci_upper"]})
                s = int(rng.integers(2 ** 31))
                fit = fit_selection_model(y, se, wf, draws=500, chains=4, seed=s)
                m = fit.draws("mu")
                rows.append({**base, "method": "Bayesian selection (.025)", "estimate": float(m.mean()),
                             "lower": float(np.quantile(m, a)), "upper": float(np.quantile(m, 1 - a))})
                ens = bias_ensemble(y, se ** 2, seed=s, level=level, **ens_kw)
                d = ens.to_dict()["mu"]
                rows.append({**base, "method": "RoBMA-style ensemble", "estimate": d["mean"],
                             "lower": d["lower"], "upper": d["upper"]})
                if progress:
                    progress(f"mu={mu} omega={om} rep={rep} ({time.perf_counter() - t0:.1f} s)")
    return pd.DataFrame(rows)


def summarise_study(results: pd.DataFrame) -> pd.DataFrame:
    """Per cell and method: mean bias, RMSE, coverage and mean interval width, with the Monte Carlo
    standard error of the coverage."""
    g = results.assign(err=results["estimate"] - results["mu"],
                       cover=(results["lower"] <= results["mu"]) & (results["mu"] <= results["upper"]),
                       width=results["upper"] - results["lower"])
    out = g.groupby(["mu", "omega", "method"], sort=False).agg(
        reps=("err", "size"), bias=("err", "mean"), rmse=("err", lambda e: float(np.sqrt(np.mean(e ** 2)))),
        coverage=("cover", "mean"), width=("width", "mean"))
    out["coverage_mcse"] = np.sqrt(out["coverage"] * (1 - out["coverage"]) / out["reps"])
    return out.reset_index()
