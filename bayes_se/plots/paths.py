"""Plots of a path model fit: the path diagram, and the indirect effect's posterior against its prior.

Each plot is drawn from a tidy table that the matching ``*_table`` function returns, so the numbers
on a figure can be checked (and reused) without reading pixels. Colours are Okabe & Ito's
colour-blind-safe palette.

References
----------
Okabe, M. & Ito, K. (2008). Color universal design (CUD): how to make figures and presentations
that are friendly to colorblind people. https://jfly.uni-koeln.de/color/
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_se.plots.style import literal

__all__ = ["paths_table", "indirect_density_table", "plot_paths", "plot_indirect", "OKABE_ITO"]

OKABE_ITO = {"orange": "#E69F00", "sky_blue": "#56B4E9", "green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermillion": "#D55E00", "purple": "#CC79A7", "black": "#000000"}
#: Points of the density grid.
GRID_POINTS = 400


def _interval(x, level):
    lo, hi = (1 - level) / 2, (1 + level) / 2
    return np.quantile(x, [lo, 0.5, hi])


def paths_table(fit, level: float = 0.95) -> pd.DataFrame:
    """One row per path: ``source``, ``target``, ``label`` (``a``/``b``/``c_prime`` for mediation),
    posterior ``median``, ``lower``, ``upper`` (central ``level`` interval), ``prob_positive``."""
    rows = []
    mediation = fit.paths.mediation
    alias = {}
    if mediation is not None:
        x, m, y = mediation
        alias = {(x, m): "a", (m, y): "b", (x, y): "c_prime"}
    available = set(fit.location_names())
    for source, target in fit.paths.edges:
        label = alias.get((source, target), f"{source}->{target}")
        if label not in available:  # e.g. c_prime when no trial reported it
            continue
        draws = fit.draws(label)
        lo, med, hi = _interval(draws, level)
        rows.append({"source": source, "target": target, "label": label,
                     "median": med, "lower": lo, "upper": hi, "prob_positive": float(np.mean(draws > 0))})
    return pd.DataFrame(rows)


def indirect_density_table(fit, name: str | None = None) -> pd.DataFrame:
    """Densities on a common grid: ``x``, ``posterior``, ``prior`` (NaN when no prior draws) and,
    for the mediation model, ``posterior_avg`` (of ``indirect_avg``). Gaussian KDEs (SciPy, Scott's
    bandwidth); the grid spans the posterior's 0.1%-99.9% range widened by half its width."""
    from scipy import stats

    name = name or fit.paths.indirect_names()[0]
    post = fit.draws(name)
    post = post[np.isfinite(post)]
    lo, hi = np.quantile(post, [0.001, 0.999])
    pad = 0.5 * (hi - lo) + 1e-9
    grid = np.linspace(lo - pad, hi + pad, GRID_POINTS)
    table = {"x": grid, "posterior": stats.gaussian_kde(post)(grid)}
    prior = None
    if "prior" in fit.idata.groups() and "effects" in fit.idata.prior:
        prior = fit.draws(name, group="prior")
        prior = prior[np.isfinite(prior)]
    table["prior"] = stats.gaussian_kde(prior)(grid) if prior is not None and prior.size > 1 else np.nan
    avg_name = "indirect_avg" if name == "indirect" else name.replace("indirect[", "indirect_avg[", 1)
    if avg_name in list(fit.idata.posterior["effects"].coords["effect"].values):
        avg = fit.draws(avg_name)
        avg = avg[np.isfinite(avg)]
        table["posterior_avg"] = stats.gaussian_kde(avg)(grid)
    out = pd.DataFrame(table)
    out.attrs["effect"] = name
    return out


def _layout(fit):
    """Node positions: mediation as a triangle (M on top), else layered by path depth."""
    variables = fit.paths.variables
    if fit.paths.mediation is not None:
        x, m, y = fit.paths.mediation
        pos = {x: (0.0, 0.0), m: (0.5, 0.62), y: (1.0, 0.0)}
        return {v: pos[v] for v in pos}
    depth = {}
    for v in fit.paths.order:
        preds = fit.paths.equations.get(v, [])
        depth[v] = 0 if not preds else 1 + max(depth[u] for u in preds)
    levels = max(depth.values()) or 1
    pos = {}
    for d in range(levels + 1):
        members = [v for v in variables if depth[v] == d]
        for j, v in enumerate(members):
            pos[v] = (d / levels, 0.5 if len(members) == 1 else 1.0 - j / (len(members) - 1))
    return pos


def plot_paths(fit, ax=None, level: float = 0.95):
    """Path diagram: variables as boxes, arrows labelled with posterior median and interval.

    Each label sits beside its arrow (moved perpendicular to it, clear of the line by
    :data:`LABEL_GAP_PT`, on a white box), on the side away from the diagram's centre.

    Arrows whose interval excludes 0 are solid blue (positive) or vermillion (negative); the rest
    are grey and dashed. For the mediation model the indirect and total effects are written below.

    Parameters
    ----------
    fit : MediationFit or PathMediationFit
    ax : matplotlib.axes.Axes, optional
    level : float

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    table = paths_table(fit, level)
    available = set(fit.location_names())
    pos = _layout(fit)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
    else:
        fig = ax.figure
    box = dict(boxstyle="round,pad=0.45", facecolor="white", edgecolor=OKABE_ITO["black"], linewidth=1.2)
    for v, (px, py) in pos.items():
        literal(ax.text(px, py, v.replace("_", " "), ha="center", va="center", fontsize=11, bbox=box, zorder=3))
    pct = f"{100 * level:g}%"
    ax.set_xlim(-0.25, 1.25)
    ax.set_ylim(-0.62 if fit.paths.mediation is not None else -0.4, 0.85 if fit.paths.mediation else 1.2)
    labels = []
    for row in table.itertuples():
        (x0, y0), (x1, y1) = pos[row.source], pos[row.target]
        sig = row.lower > 0 or row.upper < 0
        colour = (OKABE_ITO["blue"] if row.median > 0 else OKABE_ITO["vermillion"]) if sig else "#7f7f7f"
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color=colour, lw=2.0, linestyle="-" if sig else "--",
                                    shrinkA=38, shrinkB=38, mutation_scale=16), zorder=2)
        label = literal(ax.annotate(f"{row.label} = {row.median:.2f}\n[{row.lower:.2f}, {row.upper:.2f}]",
                            xy=((x0 + x1) / 2, (y0 + y1) / 2), xytext=(0.0, 0.0), textcoords="offset points",
                            ha="center", va="center", fontsize=9.5, color=colour, zorder=4,
                            bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor="none")))
        labels.append((label, (x0, y0), (x1, y1)))
    _place_beside(fig, ax, labels, pos)
    lines = [f"posterior medians, {pct} credible intervals"]
    if fit.paths.mediation is not None:
        for name, text in (("indirect", "indirect a*b (pooled paths)"),
                           ("indirect_avg", "average indirect E[a_i b_i]"), ("total", "total c' + a*b")):
            if name not in available:
                continue
            lo, med, hi = _interval(fit.draws(name), level)
            lines.append(f"{text}: {med:.3f} [{lo:.3f}, {hi:.3f}]")
    ax.text(0.5, -0.28, "\n".join(lines), ha="center", va="top", fontsize=9.5, transform=ax.transData)
    ax.set_axis_off()
    if fit.engine == "mediation_paths":  # a PathMediationFit: say which trials gave what
        sources = fit.sources()
        ax.set_title(f"Mediation across trials (k = {fit.k}: {len(sources['paths'])} reported paths, "
                     f"{len(sources['matrix'])} correlation matrices)")
    else:
        ax.set_title(f"Path model (k = {fit.data.k} studies)")
    return fig


#: Gap (points) between an arrow and the nearest edge of its label's box.
LABEL_GAP_PT = 4.0


def _place_beside(fig, ax, labels, pos):
    """Move each label (an annotation centred on its arrow's midpoint) perpendicular to the arrow,
    on the side away from the diagram's centre, just far enough that its box clears the arrow line.

    On screen the arrow has unit direction t and normal n; a box of half-width w and half-height h
    centred at distance d along n is clear of the line when ``d - (w |n_x| + h |n_y|) >= gap``.
    """
    fig.draw_without_rendering()  # sizes the label boxes
    to_pt = 72.0 / fig.dpi
    centre = ax.transData.transform(np.mean(list(pos.values()), axis=0))
    for label, start, end in labels:
        p0, p1 = ax.transData.transform([start, end])
        t = (p1 - p0) / (np.hypot(*(p1 - p0)) or 1.0)
        n = np.array([-t[1], t[0]])
        if np.dot((p0 + p1) / 2 - centre, n) < 0:
            n = -n
        box = label.get_bbox_patch().get_window_extent()
        w, h = box.width / 2, box.height / 2
        d = (w * abs(n[0]) + h * abs(n[1])) * to_pt + LABEL_GAP_PT
        label.xyann = (d * n[0], d * n[1])


def plot_indirect(fit, ax=None, name: str | None = None):
    """Posterior density of an indirect effect against its prior density (and, for mediation, the
    average indirect effect ``E[a_i b_i]``).

    Parameters
    ----------
    fit : MediationFit
    ax : matplotlib.axes.Axes, optional
    name : str, optional
        Effect (default ``indirect`` / the first chain).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    table = indirect_density_table(fit, name)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 4.0))
    else:
        fig = ax.figure
    effect = table.attrs["effect"]
    ax.plot(table["x"], table["posterior"], color=OKABE_ITO["blue"], lw=2,
            label=f"posterior: {effect} (product of pooled paths)" if effect == "indirect" else f"posterior: {effect}")
    ax.fill_between(table["x"], table["posterior"], color=OKABE_ITO["blue"], alpha=0.15)
    if "posterior_avg" in table:
        ax.plot(table["x"], table["posterior_avg"], color=OKABE_ITO["green"], lw=1.8, linestyle="-.",
                label="posterior: average of study products E[a_i b_i]")
    if np.all(np.isfinite(table["prior"])):
        ax.plot(table["x"], table["prior"], color=OKABE_ITO["orange"], lw=1.8, linestyle="--", label="prior")
    ax.axvline(0.0, color="#7f7f7f", lw=0.8)
    ax.set_xlabel(f"{effect} (standardized)")
    ax.set_ylabel("density")
    ax.set_ylim(0, 1.35 * float(np.nanmax(table[[c for c in table.columns if c != "x"]].to_numpy())))
    ax.legend(frameon=False, fontsize=8.5, loc="upper left")
    ax.set_title("Indirect effect: posterior vs prior")
    fig.tight_layout()
    return fig
