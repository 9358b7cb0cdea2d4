"""mu under each model of a publication-bias ensemble and model-averaged (RoBMA's plot of models).

One row per model with an effect: the posterior mean of mu and its central interval, the marker's
area proportional to the model's posterior probability (its label carries P(M | y)); the bottom row
is the model-averaged posterior (a mixture over all models, mu = 0 under the null models), drawn
as a diamond. Numbers from :class:`bayes_se.bias_averaging.BiasEnsemble`.

References
----------
Bartoš F et al. (2023). Robust Bayesian meta-analysis: model-averaging across complementary
publication bias adjustment methods. Research Synthesis Methods 14(1), 99-116.
"""

from __future__ import annotations

import numpy as np

from bayes_se.plots import style

__all__ = ["plot_ensemble", "ensemble_table"]


def ensemble_table(ensemble, min_prob: float = 0.0):
    """Rows of the plot: model name, posterior probability, mean and interval of mu (effect models
    with posterior probability >= ``min_prob``), then ``model-averaged``."""
    import pandas as pd

    a = 0.5 * (1.0 - ensemble.level)
    rows = []
    for _, r in ensemble.models.iterrows():
        if not r["effect"] or r["posterior_prob"] < min_prob:
            continue
        mu = ensemble.model_draws[r["name"]]["mu"]
        lo, hi = np.quantile(mu, [a, 1 - a])
        rows.append({"model": r["name"].replace("effect / ", ""), "posterior_prob": r["posterior_prob"],
                     "mean": float(mu.mean()), "lower": float(lo), "upper": float(hi)})
    lo, hi = np.quantile(ensemble.mu, [a, 1 - a])
    rows.append({"model": "model-averaged", "posterior_prob": 1.0, "mean": float(ensemble.mu.mean()),
                 "lower": float(lo), "upper": float(hi)})
    return pd.DataFrame(rows)


def plot_ensemble(ensemble, ax=None, min_prob: float = 0.0, width="double"):
    """Forest-style plot of mu under each model with an effect and model-averaged.

    Parameters
    ----------
    ensemble : BiasEnsemble
    ax : matplotlib Axes, optional
    min_prob : float
        Leave out models whose posterior probability is below this.

    Returns
    -------
    matplotlib.figure.Figure
    """
    tab = ensemble_table(ensemble, min_prob)
    n = len(tab)
    with style.style():
        fig, ax = style.figure_and_axes(ax, width, height_mm=max(60.0, 4.2 * n + 20))
        ypos = np.arange(n)[::-1].astype(float)
        body = tab.iloc[:-1]
        sizes = 10 + 140 * np.sqrt(body["posterior_prob"].to_numpy() / max(body["posterior_prob"].max(), 1e-300))
        ax.hlines(ypos[:-1], body["lower"], body["upper"], color="0.35", lw=0.8)
        ax.scatter(body["mean"], ypos[:-1], s=sizes, marker="s", color="0.2", zorder=3)
        avg = tab.iloc[-1]
        y0 = ypos[-1]
        ax.fill([avg["lower"], avg["mean"], avg["upper"], avg["mean"]], [y0, y0 + 0.35, y0, y0 - 0.35],
                color="C0", zorder=3)
        ax.axvline(0.0, color="0.6", lw=0.6, ls=":")
        ax.axvline(avg["mean"], color="C0", lw=0.6, ls="--")
        labels = [f"{m}  (P = {p:.3f})" for m, p in zip(body["model"], body["posterior_prob"])]
        labels.append("model-averaged")
        style.literal_ticks(ax, "y", ypos, labels)
        ax.set_ylim(-1, n)
        ax.set_xlabel(f"mu (posterior mean, {100 * ensemble.level:g}% interval)")
        ax.set_title("Effect under each model and model-averaged")
    return fig
