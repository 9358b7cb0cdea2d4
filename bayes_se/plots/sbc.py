"""Rank histogram of simulation-based calibration (Talts et al. 2018, Fig. 1).

Drawing only: the ranks and their chi-square uniformity test are :mod:`bayes_se.sbc`.

References
----------
Talts, S., Betancourt, M., Simpson, D., Vehtari, A. & Gelman, A. (2018). Validating Bayesian
inference algorithms with simulation-based calibration. arXiv:1804.06788.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from bayes_se.plots import style


def plot_sbc_ranks(ranks, *, n_draws: int = 99, n_bins: int = 20, title: str | None = None, ax=None,
                   width="single"):
    """Histogram of SBC ranks in ``n_bins`` equal bins of ``0..n_draws``, with the central 99% band
    of a bin count under uniformity, ``Binomial(N, 1 / n_bins)`` quantiles 0.005 and 0.995.

    ``title`` may have a line break; at the single width a line holds about 45 characters.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ranks = np.asarray(ranks)
    n = ranks.size
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1.0 / n_bins)
    with style.style():
        fig, ax = style.figure_and_axes(ax, width, height_mm=60.0)
        ax.axhspan(lo, hi, color="0.85", lw=0, label="99% band if uniform")
        ax.axhline(n / n_bins, color="0.5", lw=0.8)
        counts, _, _ = ax.hist(ranks, bins=np.linspace(0, n_draws + 1, n_bins + 1), color=style.POSTERIOR,
                               edgecolor="white")
        # headroom above the band and the bars: the legend sits on white there
        ax.set_ylim(0, 1.3 * max(hi, counts.max()))
        ax.set_xlim(0, n_draws + 1)
        ax.set_xlabel(f"Rank of the prior draw among {n_draws} posterior draws")
        ax.set_ylabel("Replicates")
        if title:
            ax.set_title(title, loc="left")
        ax.legend(loc="upper right", frameon=False)
    return fig
