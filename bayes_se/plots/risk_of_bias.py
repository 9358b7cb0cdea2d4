"""robvis-style risk-of-bias figures: the traffic-light plot and the weighted summary bar plot.

The traffic-light plot shows one row per study and one column per domain (then Overall), each
judgement a coloured circle with its symbol (+ low, - some concerns / moderate, x high / serious,
! critical, ? no information). The summary plot shows, per domain, the proportion of information
(the share of the studies' meta-analytic weights ``w_j = sum_i 1/(v_i + tau^2)``, or of the
studies, unweighted) at each judgement. Colours and symbols are robvis's ("cochrane" scheme).

References
----------
McGuinness, L. A. & Higgins, J. P. T. (2021). Risk-of-bias VISualization (robvis): an R package
and Shiny web app for visualizing risk-of-bias assessments. Research Synthesis Methods 12, 55-61.
Sterne, J. A. C. et al. (2019). RoB 2: a revised tool for assessing risk of bias in randomised
trials. BMJ 366, l4898.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_se.errors import SpecError
from bayes_se.plots import style
from bayes_se.risk_of_bias import COLOURS, OVERALL, SYMBOLS, RobTable, read_rob, study_weights

#: Height of one study row / one domain bar in millimetres.
ROW_MM = 5.0
BAR_MM = 6.0


def _ink(colour: str) -> str:
    """Black or white, whichever reads better on ``colour`` (WCAG relative luminance)."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(colour))
    lin = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    lum = float(lin @ [0.2126, 0.7152, 0.0722])
    return "black" if (lum + 0.05) / 0.05 > 1.05 / (lum + 0.05) else "white"


def _select(rob: RobTable, studies) -> pd.DataFrame:
    if studies is None:
        return rob.table
    studies = [str(s) for s in studies]
    unknown = [s for s in studies if s not in rob.table.index]
    if unknown:
        raise SpecError(f"study {unknown[0]!r} is not in the risk-of-bias table", key="studies")
    return rob.table.loc[studies]


def plot_rob_traffic_light(rob, *, studies=None, ax=None, width="single"):
    """The traffic-light plot of a risk-of-bias table (robvis ``rob_traffic_light``).

    Parameters
    ----------
    rob : RobTable, path or DataFrame
        Read by :func:`bayes_se.risk_of_bias.read_rob` when not a RobTable.
    studies : sequence of str, optional
        The studies to show, in this order (default: all, in the table's order).
    ax : matplotlib Axes, optional
    width : "single", "double" or millimetres

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    rob = read_rob(rob)
    table = _select(rob, studies)
    cols = list(table.columns)
    n, m = table.shape
    # the Overall column stands a little apart from the domains
    xs = np.array([j + (0.6 if c == OVERALL else 0.0) for j, c in enumerate(cols)])
    levels = [lv for lv in rob.levels if (rob.table == lv).to_numpy().any() or lv != rob.levels[-1]]
    domain_key = [(d, rob.domain_label(d)) for d in rob.domains if rob.domain_label(d) != d]
    legend_mm = 6.0 + 3.4 * (len(domain_key) + (len(levels) + 2) // 3)
    own = ax is None
    with style.style():
        fig, ax = style.figure_and_axes(ax, width, height_mm=n * ROW_MM + 12.0 + legend_mm)
        for i, (study, row) in enumerate(table.iterrows()):
            for j, c in enumerate(cols):
                ax.add_patch(Rectangle((xs[j] - 0.5, i - 0.5), 1.0, 1.0, facecolor="#F0F0F0", edgecolor="white",
                                       lw=1.2, zorder=0))
                v = row[c]
                ax.scatter([xs[j]], [i], s=88, color=COLOURS[v], edgecolors="0.25", linewidths=0.4, zorder=2)
                ax.text(xs[j], i, SYMBOLS[v], ha="center", va="center_baseline", fontsize=7.5,
                        fontweight="bold", color=_ink(COLOURS[v]), zorder=3, parse_math=False)
        ax.set_xlim(xs[0] - 0.55, xs[-1] + 0.55)
        ax.set_ylim(n - 0.5, -0.5)
        ax.xaxis.tick_top()
        style.literal_ticks(ax, "x", xs, cols)
        style.literal_ticks(ax, "y", np.arange(n), list(table.index))
        ax.tick_params(length=0, pad=2)
        for lab in ax.get_xticklabels():
            if lab.get_text() == OVERALL:
                lab.set_fontweight("bold")
        for side in ("left", "bottom", "top", "right"):
            ax.spines[side].set_visible(False)
        ax.set_aspect("equal", adjustable="box")
        handles = [Line2D([], [], ls="", marker="o", ms=6.5, mfc=COLOURS[lv], mec="0.25", mew=0.4,
                          label=f"{lv} ({SYMBOLS[lv]})") for lv in levels]
        key = "\n".join(f"{d}: {label}" for d, label in domain_key)
        common = dict(ncol=min(len(levels), 3), handletextpad=0.2, columnspacing=0.8, borderpad=0.2)
        if own:  # a figure of its own: the judgements above the grid, the domain key under it, both
            # laid out by the figure (constrained layout) so long study labels cannot push them off
            style.literal(fig.legend(handles=handles, loc="outside upper center", **common))
            if domain_key:
                blank = [Line2D([], [], ls="", marker="") for _ in domain_key]
                style.literal(fig.legend(blank, key.split("\n"), loc="outside lower left", handlelength=0,
                                         handletextpad=0, borderpad=0.2, labelspacing=0.25))
        else:  # the caller's axes: both under the grid, the key hanging from the legend
            judged = style.literal(ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, 0.0),
                                             borderaxespad=0.3, **common))
            if domain_key:
                ax.annotate(key, xy=(0.0, 0.0), xycoords=judged, xytext=(4.0, -3.0), textcoords="offset points",
                            ha="left", va="top", fontsize=style.MIN_FONT_PT, linespacing=1.35,
                            annotation_clip=False, parse_math=False)
    return fig


def rob_summary_table(rob, *, data=None, weights=None, weighted: bool = True, tau2=None, by=None) -> pd.DataFrame:
    """The numbers of the summary plot: per domain (rows, Overall last), the proportion at each judgement.

    Weighted (the default when ``data`` or ``weights`` is given) by each study's meta-analytic
    weight ``sum_i 1/(v_i + tau^2)`` over its effects in ``data`` (``tau2``: REML when omitted;
    see :func:`bayes_se.risk_of_bias.study_weights`), by ``weights`` (a Series or dict by study),
    or by the table's own ``Weight`` column (``by``: the data column naming each effect's study);
    unweighted (each study counts once) with
    ``weighted=False`` or when there is no weight. ``attrs["weighted"]`` says which.
    """
    rob = read_rob(rob)
    w = None
    if weighted:
        if weights is not None:
            w = pd.Series(weights, dtype=float)
        elif data is not None:
            w = study_weights(rob, data, tau2, by)
        elif rob.weights is not None:
            w = rob.weights
    out = rob.counts(w)
    out.attrs["weighted"] = w is not None
    return out


def plot_rob_summary(rob, *, data=None, weights=None, weighted: bool = True, tau2=None, by=None, ax=None,
                     width="double"):
    """The summary bar plot of a risk-of-bias table (robvis ``rob_summary``).

    One horizontal bar per domain (Overall last, in bold), split by the proportion of information
    at each judgement (see :func:`rob_summary_table` for the weights); shares of at least 8% are
    printed in their segment.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Patch

    rob = read_rob(rob)
    table = rob_summary_table(rob, data=data, weights=weights, weighted=weighted, tau2=tau2, by=by)
    shown = [lv for lv in table.columns if table[lv].sum() > 0 or lv != rob.levels[-1]]
    labels = [OVERALL if d == OVERALL else (f"{rob.domain_label(d)} ({d})" if rob.domain_label(d) != d else d)
              for d in table.index]
    n = len(table)
    with style.style():
        fig, ax = style.figure_and_axes(ax, width, height_mm=n * BAR_MM + 20.0)
        y = np.arange(n)
        left = np.zeros(n)
        for lv in shown:
            share = table[lv].to_numpy(float)
            ax.barh(y, share, left=left, height=0.7, color=COLOURS[lv], edgecolor="white", lw=0.6, label=lv)
            for yi, (l0, s) in enumerate(zip(left, share)):
                if s >= 0.08:
                    ax.text(l0 + s / 2, yi, f"{100 * s:.0f}%", ha="center", va="center", fontsize=style.MIN_FONT_PT,
                            color=_ink(COLOURS[lv]), parse_math=False)
            left += share
        ax.set_xlim(0, 1)
        ax.set_ylim(n - 0.5, -0.5)
        style.literal_ticks(ax, "y", y, labels)
        for lab in ax.get_yticklabels():
            if lab.get_text() == OVERALL:
                lab.set_fontweight("bold")
        ax.set_xticks(np.linspace(0, 1, 5), [f"{p}%" for p in (0, 25, 50, 75, 100)])
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        ax.set_xlabel(f"Proportion of information ({rob.tool}; weighted by 1/(v + τ²))" if table.attrs["weighted"]
                      else f"Proportion of studies ({rob.tool})")
        leg = ax.legend(handles=[Patch(facecolor=COLOURS[lv], edgecolor="0.4", lw=0.4, label=lv) for lv in shown],
                        loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(shown), borderaxespad=0.3,
                        handlelength=1.2, columnspacing=1.2)
        style.literal(leg)
    return fig
