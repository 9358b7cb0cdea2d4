"""Model checks of a Bayesian fit: posterior predictive statistics, LOO-PIT and PSIS-LOO Pareto k.

These are numbers and tables; :mod:`bayes_se.plots` draws them (``plot_ppc_stats``,
``plot_ppc_density``, ``plot_loo_pit``, ``plot_pareto_k``) and :mod:`bayes_se.report` tabulates
them. Convergence of the sampler is :mod:`bayes_se.diagnostics`.

Posterior predictive checks. Replicates ``y_rep`` come from the marginal model ``y_rep,i ~
N(x_i' beta, v_i + tau^2)`` (stored by the built model's post-processing, see
:meth:`bayes_se.builders.random_effects.MetaModel.postprocess`). For a statistic T the posterior
predictive p-value is ``P(T(y_rep) >= T(y) | y)`` (Gelman, Meng & Stern 1996); values near 0 or 1
flag misfit. The statistics are Cochran's ``Q = sum w_i (y_i - x_i' b)^2`` with ``w_i = 1/v_i`` and
``b`` the weighted least-squares fit, ``I2 = 100 max(0, (Q - (k - p)) / Q)`` (Higgins & Thompson
2002), and the smallest and largest effect. LOO-PIT values ``P(y_rep,i <= y_i | y_-i)`` (ArviZ
``az.loo_pit``, Pareto-smoothed importance weights) are uniform under a well-calibrated model.

Pareto k. The shape ``k`` of the generalised Pareto fitted to each study's importance ratios
measures how much the posterior changes when the study is left out: ``k > 0.7`` makes that
study's LOO estimate unreliable (an influential study), ``k > 1`` means the importance ratios have
no finite mean. The log-likelihood used integrates the study effect out (``y_i ~ N(x_i' beta, v_i
+ tau^2)``), so each study is left out with its own effect. The numbers are ArviZ's
``az.loo(idata, pointwise=True)``.

References
----------
Gelman, A., Meng, X.-L. & Stern, H. (1996). Posterior predictive assessment of model fitness via
realized discrepancies. Statistica Sinica 6, 733-807.
Higgins, J. P. T. & Thompson, S. G. (2002). Quantifying heterogeneity in a meta-analysis.
Statistics in Medicine 21, 1539-1558.
Gabry, J. et al. (2019). Visualization in Bayesian workflow. JRSS A 182, 389-402.
Vehtari, A., Gelman, A. & Gabry, J. (2017). Practical Bayesian model evaluation using leave-one-out
cross-validation and WAIC. Statistics and Computing 27, 1413-1432.
Vehtari, A., Simpson, D., Gelman, A., Yao, Y. & Gabry, J. (2024). Pareto smoothed importance
sampling. JMLR 25(72), 1-58.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from bayes_se.errors import SpecError

#: Replicates in the density table (KDEs of thousands of replicates are slow and no clearer).
N_REPLICATES = 100
STATISTICS = ("Q", "I2", "min", "max")
#: Pareto-k thresholds: LOO unreliable above K_WARN, importance ratios without a mean above K_BAD.
K_WARN = 0.7
K_BAD = 1.0


def ppc_arrays(fit) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observed effects, variances, design matrix and replicates (draws x k) of a fit.

    Read from the fit's InferenceData, whatever the engine: ``observed_data.y``, ``constant_data``
    (``vi``, ``X``) and ``posterior_predictive.y`` (replicates share the observed data's name).

    Raises
    ------
    SpecError
        When the fit has no replicates of ``y`` (not a random-effects fit, or not a fit at all).
    """
    from bayes_se.fits import Fit

    idata = fit.idata if isinstance(fit, Fit) else None
    if (idata is None or "posterior_predictive" not in idata.groups() or "y" not in idata.posterior_predictive
            or "constant_data" not in idata.groups() or "vi" not in idata.constant_data):
        raise SpecError("posterior predictive checks need a random-effects fit with replicates of y "
                        "(posterior_predictive group)", key="fit")
    y_rep = np.asarray(idata.posterior_predictive["y"], float)
    y_rep = y_rep.reshape(-1, y_rep.shape[-1])
    y = np.asarray(idata.observed_data["y"], float)
    const = idata.constant_data
    X = np.asarray(const["X"], float) if "X" in const else np.ones((y.size, 1))
    return y, np.asarray(const["vi"], float), X, y_rep


def test_statistics(y, vi, X=None) -> pd.DataFrame:
    """Q, I2 (percent), min and max of effects ``y`` (k,) or of replicates (n, k).

    Returns
    -------
    pandas.DataFrame
        One row per effect vector, columns :data:`STATISTICS`.
    """
    y = np.atleast_2d(np.asarray(y, float))
    vi = np.asarray(vi, float)
    X = np.ones((vi.size, 1)) if X is None else np.asarray(X, float)
    w = 1.0 / vi
    # weighted least squares for every row at once: b = (X'WX)^-1 X'W y
    b = np.linalg.solve(X.T @ (X * w[:, None]), (X * w[:, None]).T @ y.T).T
    q = np.sum(w * (y - b @ X.T) ** 2, axis=1)
    df = vi.size - X.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        i2 = np.where(q > 0, 100.0 * np.maximum(0.0, (q - df) / q), 0.0)
    return pd.DataFrame({"Q": q, "I2": i2, "min": y.min(axis=1), "max": y.max(axis=1)})


test_statistics.__test__ = False  # a function of the package, not a pytest test


def ppc_stat_draws(fit) -> pd.DataFrame:
    """The test statistics of every replicate (one row per posterior draw)."""
    _, vi, X, y_rep = ppc_arrays(fit)
    return test_statistics(y_rep, vi, X)


def ppc_stat_table(fit, level: float = 0.95) -> pd.DataFrame:
    """Observed statistics, their replicated distribution and posterior predictive p-values.

    Returns
    -------
    pandas.DataFrame
        Index: statistic; columns ``observed``, ``rep_mean``, ``rep_lower``, ``rep_upper``
        (central ``level`` interval), ``p_value`` = ``P(T(y_rep) >= T(y))``.
    """
    y, vi, X, _ = ppc_arrays(fit)
    obs = test_statistics(y, vi, X).iloc[0]
    rep = ppc_stat_draws(fit)
    a = 0.5 * (1.0 - level)
    rows = {s: {"observed": obs[s], "rep_mean": rep[s].mean(), "rep_lower": rep[s].quantile(a),
                "rep_upper": rep[s].quantile(1.0 - a), "p_value": float(np.mean(rep[s] >= obs[s]))}
            for s in STATISTICS}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("statistic")


def ppc_density_table(fit, n_replicates: int = N_REPLICATES, seed: int = 0) -> pd.DataFrame:
    """Kernel densities (``az.kde``) of the observed effects and of ``n_replicates`` random replicates.

    Returns
    -------
    pandas.DataFrame
        Columns ``source`` ("observed", "replicated"), ``replicate`` (-1 for observed), ``x``,
        ``density``.
    """
    import arviz as az

    y, _, _, y_rep = ppc_arrays(fit)
    pick = np.random.default_rng(seed).choice(y_rep.shape[0], size=min(n_replicates, y_rep.shape[0]),
                                              replace=False)
    parts = []
    for r, values in [(-1, y)] + [(int(i), y_rep[i]) for i in pick]:
        x, dens = az.kde(values)
        parts.append(pd.DataFrame({"source": "observed" if r < 0 else "replicated", "replicate": r,
                                   "x": x, "density": dens}))
    return pd.concat(parts, ignore_index=True)


def loo_pit_table(fit) -> pd.DataFrame:
    """LOO-PIT value of each study (``az.loo_pit`` on the integrated log-likelihood).

    Returns
    -------
    pandas.DataFrame
        Columns ``study``, ``pit``.
    """
    import arviz as az

    ppc_arrays(fit)
    pit = np.asarray(az.loo_pit(fit.idata, y="y"), float)
    return pd.DataFrame({"study": [str(s) for s in fit.idata.observed_data["study"].values], "pit": pit})


def pareto_k_table(fit) -> pd.DataFrame:
    """Pareto k and pointwise elpd of each study (``az.loo(idata, pointwise=True)``).

    Parameters
    ----------
    fit : Fit
        Any engine's fit (its ``log_likelihood`` group).

    Returns
    -------
    pandas.DataFrame
        Columns ``study``, ``pareto_k``, ``elpd_loo``, ``influential`` (k > :data:`K_WARN`).
    """
    import arviz as az

    from bayes_se.fits import Fit

    idata = fit.idata if isinstance(fit, Fit) else None
    if idata is None or "log_likelihood" not in idata.groups():
        raise SpecError("Pareto k needs a BayesianFit with a log_likelihood group", key="fit")
    with warnings.catch_warnings():
        # ArviZ warns when some k are high: that is what this table reports
        warnings.simplefilter("ignore", UserWarning)
        loo = az.loo(idata, pointwise=True)
    k = np.asarray(loo.pareto_k, float)
    ll = idata.log_likelihood[list(idata.log_likelihood.data_vars)[0]]
    unit = [d for d in ll.dims if d not in ("chain", "draw")]  # study (cluster for three-level fits)
    study = [str(s) for s in ll.coords[unit[0]].values] if unit and unit[0] in ll.coords else \
        [str(i + 1) for i in range(k.size)]
    return pd.DataFrame({"study": study, "pareto_k": k, "elpd_loo": np.asarray(loo.loo_i, float),
                         "influential": k > K_WARN})
