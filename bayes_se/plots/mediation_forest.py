"""Forest plot of a path-based mediation fit: per-trial a, b and a*b beside the pooled paths.

Three panels share the study rows. Each trial shows what it reported (black square: its estimate
with a Wald interval; for a*b the product of its a and b with the first-order delta-method
standard error ``sqrt(b^2 se_a^2 + a^2 se_b^2 + 2 a b cov_ab)``, Sobel 1982) and, in blue, the
posterior of its own path (``theta``, shrunk towards the pooled path). The bottom rows give the
pooled path (diamond) and, for a*b, the product of the pooled paths and the average of the trials'
own products ``E[a_i b_i]``.

The figure is drawn from :func:`mediation_forest_table`, so its numbers can be read without pixels.

References
----------
Sobel, M. E. (1982). Asymptotic confidence intervals for indirect effects in structural equation
models. Sociological Methodology 13, 290-312.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_se.plots import style

__all__ = ["mediation_forest_table", "plot_mediation_forest"]

#: Panel name -> title.
PANELS = {"a": "a: intervention -> mediator", "b": "b: mediator -> outcome | X", "ab": "a*b: indirect"}
#: Height (mm) of a row and of the margins of a new figure.
ROW_MM, MARGIN_MM = 4.2, 22.0


def mediation_forest_table(fit, *, level: float = 0.95) -> pd.DataFrame:
    """Rows ``(label, row, panel)`` with ``estimate``, ``lower``, ``upper`` (posterior) and, for
    study rows, ``observed``, ``obs_lower``, ``obs_upper`` (the trial's own estimate and Wald
    interval) and ``source`` (``paths`` or ``matrix``).

    ``row`` is ``study``, ``pooled`` (the pooled a, b and a*b) or ``average`` (``E[a_i b_i]``, the
    a*b panel only). Entries a trial did not report are NaN.

    Parameters
    ----------
    fit : PathMediationFit
    level : float
        Level of every interval (observed Wald and posterior central).

    Returns
    -------
    pandas.DataFrame
    """
    from bayes_se.normal_dist import ndtri

    if not 0.0 < float(level) < 1.0:
        from bayes_se.errors import SpecError

        raise SpecError(f"level must lie in (0, 1), got {level!r}", key="level")
    q = [(1.0 - level) / 2.0, 0.5, (1.0 + level) / 2.0]
    # a and b: the trial's own estimate and Wald interval, and its posterior path, as the fit reports them
    per_trial = fit.study_summary(level=level)
    data = fit.data
    z = float(ndtri((1.0 + level) / 2.0))  # the quantile study_summary uses
    # a*b: the product of the reported paths with its delta-method SE, and the product of the posterior paths
    a, b = data.est[:, 0], data.est[:, 1]
    cov_ab = np.where(np.isfinite(data.cov[:, 0, 1]), data.cov[:, 0, 1], 0.0)
    with np.errstate(invalid="ignore"):
        se_ab = np.sqrt(b**2 * data.cov[:, 0, 0] + a**2 * data.cov[:, 1, 1] + 2 * a * b * cov_ab)
    ab_q = np.quantile(fit.theta(path="a") * fit.theta(path="b"), q, axis=0)
    rows = []
    for panel in PANELS:
        if panel == "ab":
            for i, label in enumerate(data.study):
                rows.append({"label": str(label), "row": "study", "panel": panel, "source": str(data.source[i]),
                             "observed": a[i] * b[i], "obs_lower": a[i] * b[i] - z * se_ab[i],
                             "obs_upper": a[i] * b[i] + z * se_ab[i],
                             "lower": ab_q[0, i], "estimate": ab_q[1, i], "upper": ab_q[2, i]})
        else:
            for r in per_trial[per_trial["path"] == panel].itertuples():
                rows.append({"label": r.study, "row": "study", "panel": panel, "source": r.source,
                             "observed": r.est, "obs_lower": r.est_lower, "obs_upper": r.est_upper,
                             "lower": r.theta_lower, "estimate": r.theta_median, "upper": r.theta_upper})
        pooled = [("pooled", "pooled path (a*b: product)", "indirect" if panel == "ab" else panel)]
        if panel == "ab":
            pooled.append(("average", "a*b: average E[a_i b_i]", "indirect_avg"))
        for row, label, name in pooled:
            lo_p, med, hi_p = np.quantile(fit.draws(name), q)
            rows.append({"label": label, "row": row, "panel": panel, "source": "", "observed": np.nan,
                         "obs_lower": np.nan, "obs_upper": np.nan, "lower": lo_p, "estimate": med, "upper": hi_p})
    out = pd.DataFrame(rows)
    out.attrs["level"] = level
    return out


def plot_mediation_forest(fit, *, level: float = 0.95, ax=None, width="double"):
    """Draw :func:`mediation_forest_table`: panels a, b and a*b, trials as rows.

    Trials that gave a correlation matrix are marked ``[r]`` after their label. Black squares are
    the trials' own estimates with Wald intervals, blue dots their posterior paths; the pooled rows
    are diamonds (vermillion), the average indirect effect green.

    Parameters
    ----------
    fit : PathMediationFit
    level : float
    ax : sequence of three matplotlib Axes, optional
    width : {"single", "double"} or float
        Width of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Polygon

    table = mediation_forest_table(fit, level=level)
    first = table[table["panel"] == "a"]
    n_study = int((first["row"] == "study").sum())
    n_rows = n_study + 1.5 + 2  # studies, gap, pooled and average rows
    with style.style():
        fig, axes = style.panel_axes(ax, 3, width, MARGIN_MM + ROW_MM * n_rows, nrows=1, ncols=3)
        axes = axes.ravel()
        for j, (panel, title) in enumerate(PANELS.items()):
            axp = axes[j]
            block = table[table["panel"] == panel]
            s = block[block["row"] == "study"]
            ys = np.arange(n_study, dtype=float)
            axp.hlines(ys - 0.15, s["obs_lower"], s["obs_upper"], color=style.OBSERVED, lw=0.8)
            axp.plot(s["observed"], ys - 0.15, "s", color=style.OBSERVED, ms=2.5)
            axp.hlines(ys + 0.15, s["lower"], s["upper"], color=style.POSTERIOR, lw=0.8)
            axp.plot(s["estimate"], ys + 0.15, "o", color=style.POSTERIOR, ms=2.5)
            y = n_study + 0.5
            for _, r in block[block["row"] != "study"].iterrows():
                colour = style.POOLED if r["row"] == "pooled" else style.OKABE_ITO["bluish_green"]
                axp.add_patch(Polygon([(r["lower"], y), (r["estimate"], y + 0.35), (r["upper"], y),
                                       (r["estimate"], y - 0.35)], closed=True, facecolor=colour,
                                      edgecolor=colour, zorder=3))
                y += 1.0
            pooled = block[block["row"] == "pooled"]["estimate"].iloc[0]
            axp.axvline(0.0, color="0.5", lw=0.6, ls=":", zorder=0)
            axp.axvline(pooled, color=style.POOLED, lw=0.6, ls="--", zorder=0)
            axp.set_title(title)
            axp.set_ylim(n_rows - 0.5, -0.8)
            axp.update_datalim(np.c_[block[["lower", "upper", "obs_lower", "obs_upper"]].stack().dropna(),
                                     np.zeros(block[["lower", "upper", "obs_lower", "obs_upper"]].stack().dropna().size)])
            axp.autoscale_view(scaley=False)
            if j == 0:
                labels = [f"{r.label} [r]" if r.source == "matrix" else r.label for r in s.itertuples()]
                summary = table[(table["panel"] == "ab") & (table["row"] != "study")]
                ticks = list(ys) + [n_study + 0.5 + i for i in range(len(summary))]
                labels += list(summary["label"])
                style.literal_ticks(axp, "y", ticks, labels)
            else:
                axp.set_yticks([])
            axp.tick_params(axis="y", length=0)
        handles = [Line2D([], [], color=style.OBSERVED, marker="s", ms=3, lw=0.8,
                          label=f"trial's estimate, {100 * level:g}% Wald CI"),
                   Line2D([], [], color=style.POSTERIOR, marker="o", ms=3, lw=0.8,
                          label=f"trial's posterior path, {100 * level:g}% CrI"),
                   Line2D([], [], color=style.POOLED, marker="D", lw=0, label="pooled"),
                   Line2D([], [], color=style.OKABE_ITO["bluish_green"], marker="D", lw=0,
                          label="average indirect E[a_i b_i]")]
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=style.MIN_FONT_PT)
        if (table["source"] == "matrix").any():
            fig.suptitle("[r]: paths derived from the trial's correlation matrix", fontsize=style.MIN_FONT_PT,
                         x=0.01, ha="left")
    return fig
