"""Posterior predictive check figures: replicated effect sizes, test statistics and LOO-PIT.

Drawing only: the numbers (Q, I2, min and max of replicates, posterior predictive p-values, KDEs
of replicates, LOO-PIT values) are :mod:`bayes_se.checks`, which documents the statistics; its
table functions stay importable from here and from :mod:`bayes_se.plots`.

References
----------
Gabry, J. et al. (2019). Visualization in Bayesian workflow. JRSS A 182, 389-402.
"""

from __future__ import annotations

import numpy as np

from bayes_se.checks import (  # noqa: F401  (the tables' old home)
    N_REPLICATES,
    STATISTICS,
    loo_pit_table,
    ppc_density_table,
    ppc_stat_draws,
    ppc_stat_table,
    test_statistics,
)
from bayes_se.plots import style

#: 95% Kolmogorov-Smirnov band half-width for an ECDF of k uniform values is KS_95 / sqrt(k).
KS_95 = 1.358


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


def plot_ppc_stats(fit, *, ax=None, width="double"):
    """Histograms of replicated Q, I2, min and max with the observed value and the p-value.

    ``ax``: four axes to draw into (Q, I2, min, max); default a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = ppc_stat_table(fit)
    draws = ppc_stat_draws(fit)
    labels = {"Q": "Q", "I2": "I² (%)", "min": "Smallest effect", "max": "Largest effect"}
    with style.style():
        wide = style.width_inches(width) * style.MM_PER_INCH > 120.0
        fig, axes = style.panel_axes(ax, len(STATISTICS), width, 45.0 if wide else 80.0, 1 if wide else 2,
                                     len(STATISTICS) if wide else 2)
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
