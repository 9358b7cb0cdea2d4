"""Box-score (vote-count) plot: how many studies found a positive, null or negative association.

Input is a tidy table of findings, one row per study x construct x role (predictor, moderator,
mediator, ...) x outcome, with the direction (``+``, ``0``, ``-``) and whether it was
statistically significant. The plot stacks, per construct and role, the number of distinct
studies in each direction x significance category. Vote counts ignore sample size and effect
size and are biased towards "no effect" when studies are small (Hedges & Olkin 1980); the figure
says so in its caption and can show pooled meta-analytic estimates beside the counts.

References
----------
Light, R. J. & Smith, P. V. (1971). Accumulating evidence: procedures for resolving contradictions
among different research studies. Harvard Educational Review 41, 429-471.
Hedges, L. V. & Olkin, I. (1980). Vote-counting methods in research synthesis. Psychological
Bulletin 88, 359-369.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_se.errors import DataError, SpecError
from bayes_se.plots import style

REQUIRED = ("study", "construct", "role", "outcome", "direction", "significant")
#: Categories from positive-significant to negative-significant.
CATEGORIES = ("+ significant", "+ not significant", "0", "- not significant", "- significant")
COLORS = {"+ significant": style.OKABE_ITO["blue"], "+ not significant": style.OKABE_ITO["sky_blue"],
          "0": "#BBBBBB", "- not significant": style.OKABE_ITO["orange"],
          "- significant": style.OKABE_ITO["vermillion"]}
#: Hatching marks non-significant categories, so that the plot does not rely on colour alone.
HATCH = {"+ not significant": "////", "- not significant": "\\\\\\\\"}
CAPTION = "Vote counts are not evidence of an effect's size."
_DIRECTIONS = {"+": "+", "positive": "+", "pos": "+", "0": "0", "null": "0", "none": "0", "ns": "0",
               "-": "-", "\u2212": "-", "negative": "-", "neg": "-"}
_SIGNIFICANT = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False,
                "0": False}


def _findings(table) -> pd.DataFrame:
    """Validated findings with a ``category`` column."""
    table = pd.DataFrame(table).reset_index(drop=True)
    for col in REQUIRED:
        if col not in table.columns:
            raise DataError(f"box-score table needs column {col!r}", column=col)
    out = table.copy()
    for col in ("study", "construct", "role", "outcome"):
        bad = np.flatnonzero(out[col].isna().to_numpy())
        if bad.size:
            raise DataError("missing value", row=int(bad[0]) + 1, column=col)
        out[col] = out[col].astype(str)
    direction = []
    for i, v in enumerate(out["direction"]):
        key = str(v).strip().lower()
        if key not in _DIRECTIONS:
            raise DataError(f"direction must be +, 0 or -, got {v!r}", row=i + 1, column="direction")
        direction.append(_DIRECTIONS[key])
    significant = []
    for i, v in enumerate(out["significant"]):
        key = str(v).strip().lower()
        if key not in _SIGNIFICANT:
            raise DataError(f"significant must be yes or no, got {v!r}", row=i + 1, column="significant")
        significant.append(_SIGNIFICANT[key])
    out["direction"] = direction
    out["significant"] = significant
    bad = np.flatnonzero((out["direction"] == "0").to_numpy() & out["significant"].to_numpy())
    if bad.size:
        raise DataError("a null (0) finding cannot be significant", row=int(bad[0]) + 1, column="significant")
    out["category"] = [d if d == "0" else f"{d} {'significant' if s else 'not significant'}"
                       for d, s in zip(out["direction"], out["significant"])]
    return out


def boxscore_table(table) -> pd.DataFrame:
    """Number of distinct studies per construct x role in each direction x significance category.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``study``, ``construct``, ``role``, ``outcome``, ``direction`` (+/0/-),
        ``significant`` (yes/no); optional ``effect``, ``n``.

    Returns
    -------
    pandas.DataFrame
        Index (construct, role); one column per category of :data:`CATEGORIES`, then ``studies``
        (distinct studies with any finding) and ``findings`` (rows).
    """
    f = _findings(table)
    counts = (f.groupby(["construct", "role", "category"])["study"].nunique()
              .unstack("category").reindex(columns=list(CATEGORIES)).fillna(0).astype(int))
    counts.columns.name = None
    counts["studies"] = f.groupby(["construct", "role"])["study"].nunique()
    counts["findings"] = f.groupby(["construct", "role"]).size()
    return counts


def boxscore_studies(table) -> pd.DataFrame:
    """The studies behind each count: one row per construct x role x category.

    Returns
    -------
    pandas.DataFrame
        Columns ``construct``, ``role``, ``category``, ``k`` (distinct studies), ``studies``
        (their names, sorted, joined by "; "), and ``n`` (total sample size of those findings)
        when the table has an ``n`` column.
    """
    f = _findings(table)
    groups = f.groupby(["construct", "role", "category"])
    out = groups["study"].agg(k="nunique", studies=lambda s: "; ".join(sorted(set(s)))).reset_index()
    if "n" in f.columns:
        out["n"] = groups["n"].sum(min_count=1).to_numpy()
    out["category"] = pd.Categorical(out["category"], categories=list(CATEGORIES), ordered=True)
    return out.sort_values(["construct", "role", "category"]).reset_index(drop=True)


def plot_boxscore(table, *, pooled: dict | None = None, width="double"):
    """Stacked horizontal bars of :func:`boxscore_table`, with optional pooled estimates.

    Parameters
    ----------
    table : pandas.DataFrame
        As in :func:`boxscore_table`.
    pooled : dict, optional
        construct -> (estimate, lower, upper): drawn in a panel beside the counts, on the
        rows of that construct.
    width : {"single", "double"} or float

    Returns
    -------
    matplotlib.figure.Figure
    """
    counts = boxscore_table(table)
    pooled = dict(pooled or {})
    for key, value in pooled.items():
        if key not in counts.index.get_level_values("construct"):
            raise SpecError(f"pooled estimate for unknown construct {key!r}", key="pooled")
        if len(value) != 3 or not value[1] <= value[0] <= value[2]:
            raise SpecError(f"pooled[{key!r}] must be (estimate, lower, upper) with lower <= estimate <= upper",
                            key="pooled")
    labels = [f"{c} ({r})" for c, r in counts.index]
    y = np.arange(len(counts))
    with style.style():
        ncols = 2 if pooled else 1
        fig, axes = style.new_figure(width, height_mm=30.0 + 6.0 * len(counts), nrows=1, ncols=ncols,
                                     sharey=True, squeeze=False,
                                     gridspec_kw={"width_ratios": [3, 2][:ncols]})
        ax = axes[0, 0]
        left = np.zeros(len(counts))
        for cat in CATEGORIES:
            values = counts[cat].to_numpy()
            ax.barh(y, values, left=left, color=COLORS[cat], hatch=HATCH.get(cat), edgecolor="white",
                    linewidth=0.4, height=0.7, label="0 (null)" if cat == "0" else cat)
            dark = cat in ("+ significant", "- significant")
            box = dict(boxstyle="round,pad=0.1", fc="white", ec="none") if cat in HATCH else None
            for yi, l, v in zip(y, left, values):
                if v > 0:
                    ax.text(l + v / 2, yi, str(v), ha="center", va="center", fontsize=style.MIN_FONT_PT,
                            color="white" if dark else "black", bbox=box)
            left = left + values
        style.literal_ticks(ax, "y", y, labels)
        ax.set_ylim(len(counts) - 0.5, -0.5)
        ax.tick_params(axis="y", length=0)
        ax.set_xlabel("Number of studies")
        ax.set_xlim(0, max(left.max(), 1) * 1.02)
        wide = style.width_inches(width) * style.MM_PER_INCH > 120.0
        style.literal(fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center",
                                 ncol=5 if wide else 3, handlelength=1.5, columnspacing=1.0))
        if pooled:
            pax = axes[0, 1]
            for yi, (construct, _) in zip(y, counts.index):
                if construct in pooled:
                    est, lo, hi = pooled[construct]
                    pax.hlines(yi, lo, hi, color=style.POOLED, lw=1.2)
                    pax.plot(est, yi, "D", color=style.POOLED, ms=3.5)
            pax.axvline(0.0, color="0.5", lw=0.6, ls=":")
            pax.set_xlabel("Pooled estimate (interval)")
            pax.tick_params(axis="y", length=0)
        fig.supxlabel(CAPTION, fontsize=style.MIN_FONT_PT, fontstyle="italic", x=0.01, ha="left")
    return fig
