"""Pareto-k diagnostic of PSIS-LOO per study, with influential studies named.

Drawing only: the table (ArviZ's ``az.loo(idata, pointwise=True)``, thresholds ``K_WARN`` = 0.7
and ``K_BAD`` = 1) is :func:`bayes_se.checks.pareto_k_table`, still importable from here.

References
----------
Vehtari, A., Simpson, D., Gelman, A., Yao, Y. & Gabry, J. (2024). Pareto smoothed importance
sampling. JMLR 25(72), 1-58.
"""

from __future__ import annotations

import numpy as np

from bayes_se.checks import K_BAD, K_WARN, pareto_k_table  # noqa: F401  (the table's old home)
from bayes_se.plots import style


def plot_pareto_k(fit, *, ax=None, width="single"):
    """Pareto k per study (x: study index) with the 0.7 and 1 thresholds; studies above 0.7 named.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.ticker import MaxNLocator

    table = pareto_k_table(fit)
    x = np.arange(1, len(table) + 1)
    k = table["pareto_k"].to_numpy()
    with style.style():
        fig, ax = style.figure_and_axes(ax, width, height_mm=60.0)
        colors = np.where(k > K_BAD, style.OKABE_ITO["vermillion"],
                          np.where(k > K_WARN, style.OKABE_ITO["orange"], style.POSTERIOR))
        ax.scatter(x, k, s=10, c=colors, zorder=3)
        for level, ls in ((K_WARN, "--"), (K_BAD, "-")):
            ax.axhline(level, color="0.4", lw=0.6, ls=ls, zorder=1, label=f"k = {level:g}")
        n = len(table)
        for xi, ki, name in zip(x[k > K_WARN], k[k > K_WARN], table["study"][k > K_WARN]):
            right = xi > n / 2  # label towards the middle so it stays inside the axes
            style.literal(ax.annotate(str(name), (xi, ki), xytext=(-4 if right else 4, 2),
                                      textcoords="offset points", ha="right" if right else "left",
                                      va="bottom", fontsize=style.MIN_FONT_PT))
        top = max(K_BAD + 0.15, k.max())
        ax.set_ylim(min(0.0, k.min() - 0.05), top + 0.12 * (top - min(0.0, k.min())))
        ax.set_xlim(0.3, n + 0.7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # above the axes, right of the title: clear of the study names
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, handlelength=1.2, columnspacing=0.8,
                  borderaxespad=0.1)
        ax.set_xlabel("Study (data order)")
        ax.set_ylabel("Pareto k")
        n_bad = int((k > K_WARN).sum())
        ax.set_title(f"{n_bad} of {len(k)} studies with k > {K_WARN:g}", loc="left")
    return fig
