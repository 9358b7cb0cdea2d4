"""Prior sensitivity plot: the posterior of mu and tau under each of several priors.

Input is a tidy table, one row per prior, with the posterior mean and interval of mu and tau
(e.g. from refitting under the presets of :mod:`bayes_se.priors`), and optionally the posterior
probability of a positive effect and the Bayes factor BF01 of ``mu = 0``. Conclusions that hold
across reasonable priors are robust; the plot shows at a glance where they do not.

References
----------
Depaoli, S. & van de Schoot, R. (2017). Improving transparency and replication in Bayesian
statistics: the WAMBS-Checklist. Psychological Methods 22, 240-261.
Röver, C., Bender, R., Dias, S. et al. (2021). On weakly informative prior distributions for the
heterogeneity parameter in Bayesian random-effects meta-analysis. Research Synthesis Methods 12,
448-474.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from bayes_se.errors import DataError
from bayes_se.plots import style

REQUIRED = ("prior", "mu_mean", "mu_lower", "mu_upper", "tau_mean", "tau_lower", "tau_upper")
OPTIONAL = ("p_positive", "bf_mu0")
#: Headers of the text columns: P(mu > 0) and the Bayes factor BF01 of mu = 0 against mu free.
HEADERS = {"p_positive": "P(mu > 0)", "bf_mu0": "BF01 (mu = 0)"}
#: The same on two lines, for a narrow figure.
HEADERS_NARROW = {"p_positive": "P\n(mu > 0)", "bf_mu0": "BF01\n(mu = 0)"}
#: Prior labels longer than this many characters are wrapped onto more lines.
LABEL_CHARS = 24
#: Largest share of the width the text columns take on one line each before their headers wrap.
ONE_LINE_SHARE = 0.4
#: Room (mm) between two text columns and at the edges of the text panel.
GAP_MM = 3.0


def sensitivity_table(table) -> pd.DataFrame:
    """Check and order a prior-sensitivity table (one row per prior, in the given order).

    Returns
    -------
    pandas.DataFrame
        The required columns :data:`REQUIRED` and those of :data:`OPTIONAL` present, as floats.

    Raises
    ------
    DataError
        Naming the missing column, or the row and column of a non-numeric value or of an interval
        that does not contain its mean.
    """
    table = pd.DataFrame(getattr(table, "table", table))  # a SensitivityResult carries its table
    for col in REQUIRED:
        if col not in table.columns:
            raise DataError(f"sensitivity table needs column {col!r}", column=col)
    cols = list(REQUIRED) + [c for c in OPTIONAL if c in table.columns]
    out = table[cols].reset_index(drop=True).copy()
    out["prior"] = out["prior"].astype(str)
    for col in cols[1:]:
        values = pd.to_numeric(out[col], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy() & (col not in OPTIONAL))
        if bad.size:
            raise DataError("value must be a number", row=int(bad[0]) + 1, column=col)
        out[col] = values.astype(float)
    for par in ("mu", "tau"):
        lo, mean, hi = (out[f"{par}_{s}"].to_numpy() for s in ("lower", "mean", "upper"))
        bad = np.flatnonzero(~((lo <= mean) & (mean <= hi)))
        if bad.size:
            raise DataError(f"{par}_mean must lie within [{par}_lower, {par}_upper]", row=int(bad[0]) + 1,
                            column=f"{par}_mean")
    return out


def plot_sensitivity(table, *, width="double"):
    """Draw posterior means and intervals of mu and tau, one row per prior.

    Columns ``p_positive`` and ``bf_mu0`` (the Bayes factor BF01 of ``mu = 0``), when present, are
    printed in columns at the right, each as wide as its widest text.

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = sensitivity_table(table)
    n = len(table)
    y = np.arange(n)
    extra = [c for c in OPTIONAL if c in table.columns]
    labels = [textwrap.fill(p, LABEL_CHARS) for p in table["prior"]]
    lines = max(lab.count("\n") + 1 for lab in labels)
    with style.style():
        ratios = [3, 3] + ([1.1 * len(extra)] if extra else [])
        fig, axes = style.new_figure(width, height_mm=22.0 + max(5.0, 3.5 * lines + 1.5) * n, nrows=1,
                                     ncols=len(ratios), sharey=True, gridspec_kw={"width_ratios": ratios})
        for ax, par, label in ((axes[0], "mu", "mu (pooled effect)"), (axes[1], "tau", "tau (heterogeneity)")):
            ax.hlines(y, table[f"{par}_lower"], table[f"{par}_upper"], color=style.POSTERIOR, lw=1.2)
            ax.plot(table[f"{par}_mean"], y, "o", color=style.POSTERIOR, ms=3.5)
            ax.set_xlabel(label)
            ax.tick_params(axis="y", length=0)
        axes[0].axvline(0.0, color="0.5", lw=0.6, ls=":")
        style.literal_ticks(axes[0], "y", y, labels)
        axes[0].set_ylim(n - 0.5, -0.5)
        axes[1].set_xlim(left=0.0)
        if extra:  # a text column: the numbers beside each prior's row
            _text_columns(fig, axes, table, extra, y)
        for ax in axes[:2]:  # an axis label wider than its panel goes onto two lines, or keeps its symbol
            label = ax.xaxis.label
            for shorter in (label.get_text().replace(" (", "\n("), label.get_text().split(" ")[0]):
                fig.draw_without_rendering()
                if label.get_window_extent().width <= ax.get_window_extent().width:
                    break
                label.set_text(shorter)
    return fig


def _cell(col, v) -> str:
    if not np.isfinite(v):
        return "-"
    if col == "p_positive":  # three decimals; the ends say how close to 0 or 1 rather than 0.000
        return "<0.001" if v < 0.0005 else ">0.999" if v > 0.9995 else f"{v:.3f}"
    return f"{v:.3g}"


def _text_columns(fig, axes, table, extra, y):
    """Write the text columns into the last axes, sized so that no two texts overlap: the panel
    gets the summed widths of its columns' widest texts plus gaps, the plot panels the rest."""
    text_ax = axes[-1]
    text_ax.axis("off")
    text_ax.set_xlim(0.0, 1.0)
    columns = []
    for col in extra:
        texts = [text_ax.text(0.5, -0.5, HEADERS[col], ha="center", va="bottom")]
        texts += [text_ax.text(0.5, yi, _cell(col, v), ha="center", va="center") for yi, v in zip(y, table[col])]
        columns.append(texts)
    gap = GAP_MM / style.MM_PER_INCH

    def needed():
        fig.draw_without_rendering()
        w = np.array([max(t.get_window_extent().width for t in texts) for texts in columns]) / fig.dpi
        return w, float(w.sum() + gap * len(w))

    widths, need = needed()
    if need > ONE_LINE_SHARE * fig.get_size_inches()[0]:  # a narrow figure: headers on two lines
        for col, texts in zip(extra, columns):
            texts[0].set_text(HEADERS_NARROW[col])
        widths, need = needed()
    for _ in range(2):  # constrained layout reflows after each change of the ratios
        fig.draw_without_rendering()
        panels = sum(ax.get_window_extent().width for ax in axes[:-1]) / fig.dpi
        have = text_ax.get_window_extent().width / fig.dpi
        total = panels + have
        share = min(need, 0.6 * total)  # the plot panels keep at least 40% of the width
        text_ax.get_gridspec().set_width_ratios([3, 3, 6.0 * share / (total - share)])
    fig.draw_without_rendering()
    have = text_ax.get_window_extent().width / fig.dpi
    edges = np.concatenate([[0.0], np.cumsum(widths + gap)])
    centres = (edges[:-1] + 0.5 * (widths + gap)) / max(need, have) + max(0.0, have - need) / (2 * have)
    for x, texts in zip(centres, columns):
        for t in texts:
            t.set_x(x)
