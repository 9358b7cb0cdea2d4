"""Posterior predictive checks: replicated effect sizes, test statistics and LOO-PIT.

Replicates ``y_rep`` come from the marginal model ``y_rep,i ~ N(x_i' beta, v_i + tau^2)`` (stored
by :func:`bayes_se.sampling.sample`). For a statistic T the posterior predictive p-value is
``P(T(y_rep) >= T(y) | y)`` (Gelman, Meng & Stern 1996); values near 0 or 1 flag misfit. The
statistics are Cochran's ``Q = sum w_i (y_i - x_i' b)^2`` with ``w_i = 1/v_i`` and ``b`` the
weighted least-squares fit, ``I2 = 100 max(0, (Q - (k - p)) / Q)`` (Higgins & Thompson 2002),
and the smallest and largest effect. LOO-PIT values ``P(y_rep,i <= y_i | y_-i)`` (ArviZ
``az.loo_pit``, Pareto-smoothed importance weights) are uniform under a well-calibrated model.

References
----------
Gelman, A., Meng, X.-L. & Stern, H. (1996). Posterior predictive assessment of model fitness via
realized discrepancies. Statistica Sinica 6, 733-807.
Higgins, J. P. T. & Thompson, S. G. (2002). Quantifying heterogeneity in a meta-analysis.
Statistics in Medicine 21, 1539-1558.
Gabry, J. et al. (2019). Visualization in Bayesian workflow. JRSS A 182, 389-402.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_se.errors import SpecError
from bayes_se.plots import style

#: Replicates drawn in the density overlay (KDEs of thousands of replicates are slow and no clearer).
N_REPLICATES = 100
STATISTICS = ("Q", "I2", "min", "max")
#: 95% Kolmogorov-Smirnov band half-width for an ECDF of k uniform values is KS_95 / sqrt(k).
KS_95 = 1.358


def _arrays(fit):
    idata = getattr(fit, "idata", None)
    if idata is None or not hasattr(idata, "posterior_predictive") or "y_rep" not in idata.posterior_predictive:
        raise SpecError("posterior predictive checks need a BayesianFit with replicates y_rep", key="fit")
    y_rep = np.asarray(idata.posterior_predictive["y_rep"], float)
    y_rep = y_rep.reshape(-1, y_rep.shape[-1])
    meta = fit.meta
    X = np.ones((meta.yi.size, 1)) if meta.X is None else np.asarray(meta.X, float)
    return np.asarray(meta.yi, float), np.asarray(meta.vi, float), X, y_rep


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


def ppc_stat_draws(fit) -> pd.DataFrame:
    """The test statistics of every replicate (one row per posterior draw)."""
    _, vi, X, y_rep = _arrays(fit)
    return test_statistics(y_rep, vi, X)


def ppc_stat_table(fit, level: float = 0.95) -> pd.DataFrame:
    """Observed statistics, their replicated distribution and posterior predictive p-values.

    Returns
    -------
    pandas.DataFrame
        Index: statistic; columns ``observed``, ``rep_mean``, ``rep_lower``, ``rep_upper``
        (central ``level`` interval), ``p_value`` = ``P(T(y_rep) >= T(y))``.
    """
    y, vi, X, _ = _arrays(fit)
    obs = test_statistics(y, vi, X).iloc[0]
    rep = ppc_stat_draws(fit)
    a = 0.5 * (1.0 - level)
    rows = {s: {"observed": obs[s], "rep_mean": rep[s].mean(), "rep_lower": rep[s].quantile(a),
                "rep_upper": rep[s].quantile(1.0 - a), "p_value": float(np.mean(rep[s] >= obs[s]))}
            for s in STATISTICS}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("statistic")


def ppc_density_table(fit, n_replicates: int = N_REPLICATES, seed: int = 0) -> pd.DataFrame:
    """Kernel densities of the observed effects and of ``n_replicates`` random replicates.

    Returns
    -------
    pandas.DataFrame
        Columns ``source`` ("observed", "replicated"), ``replicate`` (-1 for observed), ``x``,
        ``density``.
    """
    import arviz as az

    y, _, _, y_rep = _arrays(fit)
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

    _arrays(fit)
    pit = np.asarray(az.loo_pit(fit.idata, y="y", y_hat="y_rep"), float)
    return pd.DataFrame({"study": [str(s) for s in fit.meta.study], "pit": pit})


def plot_ppc_density(fit, *, n_replicates: int = N_REPLICATES, ax=None, width="single"):
    """Overlay the density of the observed effects on those of replicated data sets.

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = ppc_density_table(fit, n_replicates)
    with style.style():
        fig, ax = style.figure_and_axes(ax, width, height_mm=60.0)
        rep = table[table["source"] == "replicated"]
        for i, (_, r) in enumerate(rep.groupby("replicate")):
            ax.plot(r["x"], r["density"], color=style.REPLICATED, lw=0.4, alpha=0.4,
                    label="Replicated" if i == 0 else None)
        obs = table[table["source"] == "observed"]
        ax.plot(obs["x"], obs["density"], color=style.OBSERVED, lw=1.4, label="Observed")
        ax.set_ylim(bottom=0.0)
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.set_xlabel("Effect size")
        ax.legend(loc="upper right", handlelength=1.5)
    return fig


def plot_ppc_stats(fit, *, width="double"):
    """Histograms of replicated Q, I2, min and max with the observed value and the p-value.

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = ppc_stat_table(fit)
    draws = ppc_stat_draws(fit)
    labels = {"Q": "Q", "I2": "I² (%)", "min": "Smallest effect", "max": "Largest effect"}
    with style.style():
        wide = style.width_inches(width) * style.MM_PER_INCH > 120.0
        fig, axes = style.new_figure(width, height_mm=45.0 if wide else 80.0, nrows=1 if wide else 2,
                                     ncols=len(STATISTICS) if wide else 2)
        for ax, s in zip(axes.ravel(), STATISTICS):
            ax.hist(draws[s], bins=30, color=style.REPLICATED, edgecolor="white", linewidth=0.3)
            ax.axvline(table.loc[s, "observed"], color=style.OBSERVED, lw=1.2)
            ax.set_title(f"p = {table.loc[s, 'p_value']:.2f}", loc="left")
            style.literal(ax.set_xlabel(labels[s]))
            ax.set_yticks([])
            ax.spines["left"].set_visible(False)
    return fig


def plot_loo_pit(fit, *, ax=None, width="single"):
    """ECDF of the LOO-PIT values against the uniform, with a 95% Kolmogorov-Smirnov band.

    Returns
    -------
    matplotlib.figure.Figure
    """
    pit = np.sort(loo_pit_table(fit)["pit"].to_numpy())
    k = pit.size
    u = np.linspace(0.0, 1.0, 201)
    band = KS_95 / np.sqrt(k)
    with style.style():
        fig, ax = style.figure_and_axes(ax, width, height_mm=65.0)
        ax.fill_between(u, np.clip(u - band, 0, 1), np.clip(u + band, 0, 1), color=style.REPLICATED,
                        alpha=0.3, lw=0, label="95% band (uniform)")
        ax.plot(u, u, color="0.4", lw=0.6, ls=":")
        ax.step(np.concatenate([[0.0], pit, [1.0]]), np.concatenate([[0.0], np.arange(1, k + 1) / k, [1.0]]),
                where="post", color=style.OBSERVED, lw=1.0, label="LOO-PIT ECDF")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("LOO-PIT value")
        ax.set_ylabel("ECDF")
        ax.legend(loc="upper left", handlelength=1.5)
    return fig
