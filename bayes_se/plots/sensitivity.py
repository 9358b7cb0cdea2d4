"""Prior sensitivity plot: the posterior of mu and tau under each of several priors.

Input is a tidy table, one row per prior, with the posterior mean and interval of mu and tau
(e.g. from refitting under the presets of :mod:`bayes_se.priors`), and optionally the posterior
probability of a positive effect and the Bayes factor for ``mu = 0``. Conclusions that hold
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

import numpy as np
import pandas as pd

from bayes_se.errors import DataError
from bayes_se.plots import style

REQUIRED = ("prior", "mu_mean", "mu_lower", "mu_upper", "tau_mean", "tau_lower", "tau_upper")
OPTIONAL = ("p_positive", "bf_mu0")


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

    Columns ``p_positive`` and ``bf_mu0``, when present, are printed in a column at the right.

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = sensitivity_table(table)
    n = len(table)
    y = np.arange(n)
    extra = [c for c in OPTIONAL if c in table.columns]
    with style.style():
        ratios = [3, 3] + ([1.1 * len(extra)] if extra else [])
        fig, axes = style.new_figure(width, height_mm=22.0 + 5.0 * n, nrows=1, ncols=len(ratios), sharey=True,
                                     gridspec_kw={"width_ratios": ratios})
        for ax, par, label in ((axes[0], "mu", "mu (pooled effect)"), (axes[1], "tau", "tau (heterogeneity)")):
            ax.hlines(y, table[f"{par}_lower"], table[f"{par}_upper"], color=style.POSTERIOR, lw=1.2)
            ax.plot(table[f"{par}_mean"], y, "o", color=style.POSTERIOR, ms=3.5)
            ax.set_xlabel(label)
            ax.tick_params(axis="y", length=0)
        axes[0].axvline(0.0, color="0.5", lw=0.6, ls=":")
        style.literal_ticks(axes[0], "y", y, table["prior"])
        axes[0].set_ylim(n - 0.5, -0.5)
        axes[1].set_xlim(left=0.0)
        if extra:  # a text column: the numbers beside each prior's row
            text_ax = axes[-1]
            text_ax.axis("off")
            heads = {"p_positive": "P(mu>0)", "bf_mu0": "BF(mu=0)"}
            fmt = {"p_positive": "{:.3f}", "bf_mu0": "{:.3g}"}
            for j, col in enumerate(extra):
                x = (j + 0.5) / len(extra)
                text_ax.text(x, -0.5, heads[col], ha="center", va="bottom")
                for yi, v in zip(y, table[col]):
                    text_ax.text(x, yi, fmt[col].format(v) if np.isfinite(v) else "-", ha="center", va="center")
            text_ax.set_xlim(0.0, 1.0)
    return fig
