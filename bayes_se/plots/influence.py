"""Influence and cumulative plots: metafor's influence panel and a cumulative forest plot.

:func:`plot_influence` draws the eight panels of metafor's ``plot.infl.rma.uni`` (rstudent, dffits,
cook.d, cov.r, tau2.del, QE.del, hat, weight against the study's position, the influential studies
highlighted, with metafor's reference lines); :func:`plot_cumulative` draws the estimate and its
interval after each study is added, from ``RMAResult.cumul()`` or ``ExactFit.cumulative()``. The
numbers come from :mod:`bayes_se.frequentist.influence` and :mod:`bayes_se.exact_influence`.

References
----------
Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and influence diagnostics for meta-analysis.
*Research Synthesis Methods*, 1(2), 112-125 (metafor 3.8-1 ``plot.infl.rma.uni``).
Lau, J., et al. (1992). Cumulative meta-analysis of therapeutic trials for myocardial infarction.
*NEJM*, 327(4), 248-254.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_se.errors import SpecError
from bayes_se.plots import style

__all__ = ["plot_influence", "plot_cumulative"]

ROW_MM = 3.6
MARGIN_MM = 22.0
MAX_TICKS = 14  # more studies than this: every n-th position is labelled


def _reference_lines(name, res, p, k):
    """metafor's (dashed, dotted) horizontal lines of each panel."""
    from scipy import stats

    if name == "rstudent":
        return [0.0], [stats.norm.ppf(0.025), stats.norm.ppf(0.975)]
    if name == "dffits":
        cut = 3 * np.sqrt(p / (k - p)) if k > p else np.nan
        return [0.0], [-cut, cut] if np.isfinite(cut) else []
    if name == "cook_d":
        return [], [stats.chi2.ppf(0.5, p)]
    if name == "cov_r":
        return [1.0], []
    if name == "tau2_del":
        return [res.tau2], []
    if name == "QE_del":
        return [res.QE], []
    if name == "hat":
        return [p / k], [3 * p / k]
    return [100.0 / k], []  # weight


def _short(label: str, n: int = 24) -> str:
    return label if len(label) <= n else label[: n - 1] + "\u2026"


def plot_influence(res, *, table=None, labels: str = "number", ax=None, width="double",
                   height_mm: float | None = None):
    """metafor's influence panel (``plot(influence(res))``): eight measures against the study's
    position, influential studies (``inf``) in colour.

    Parameters
    ----------
    res : RMAResult
        The fitted model (its ``p``, ``k``, ``tau2`` and ``QE`` give the reference lines).
    table : pandas.DataFrame, optional
        ``res.influence()`` when already computed.
    labels : {"number", "study"}
        Tick labels: the study's position 1..k (metafor's default) or its label (up to 24
        characters, under the bottom panels).
    ax : sequence of 8 matplotlib Axes, optional
        Draw into these (in the order rstudent, dffits, cook_d, cov_r, tau2_del, QE_del, hat,
        weight); otherwise a new 4 x 2 figure.
    width : {"single", "double"} or float
    height_mm : float, optional
        Default 150 mm, more for study labels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from bayes_se.frequentist.influence import INFLUENCE_COLUMNS

    if labels not in ("number", "study"):
        raise SpecError(f"labels must be 'number' or 'study', got {labels!r}", key="labels")
    inf = res.influence() if table is None else table
    k, p = len(inf), res.p
    pos = np.arange(1, k + 1)
    flagged = inf["inf"].to_numpy(bool)
    tick_labels = [str(i) for i in pos] if labels == "number" else [_short(str(s)) for s in inf.index]
    if height_mm is None:
        height_mm = 150.0 + (1.6 * max(len(t) for t in tick_labels) if labels == "study" else 0.0)
    step = max(1, int(np.ceil(k / MAX_TICKS)))
    if step > 1:  # a round step: 2, 5, 10, 20, 50, ...
        step = min(m * 10 ** e for e in range(8) for m in (1, 2, 5) if m * 10 ** e >= step)
    with style.style():
        fig, axes = style.panel_axes(ax, 8, width, height_mm, nrows=4, ncols=2)
        axes = axes.ravel()
        for i, name in enumerate(INFLUENCE_COLUMNS):
            a = axes[i]
            z = inf[name].to_numpy(float)
            ok = np.isfinite(z)
            a.set_title(name.replace("_", "."), loc="center")
            if not ok.any():
                a.set_xticks([])
                a.set_yticks([])
                continue
            dashed, dotted = _reference_lines(name, res, p, k)
            for h in dashed:
                a.axhline(h, color="0.4", lw=0.6, ls="--", zorder=0)
            for h in dotted:
                a.axhline(h, color="0.4", lw=0.6, ls=":", zorder=0)
            a.plot(pos[ok], z[ok], color=style.OBSERVED, lw=0.6, zorder=1)
            a.plot(pos[ok & ~flagged], z[ok & ~flagged], "o", ms=2.8, color=style.OBSERVED, zorder=2)
            a.plot(pos[ok & flagged], z[ok & flagged], "o", ms=3.5, color=style.OKABE_ITO["vermillion"],
                   markeredgecolor=style.OBSERVED, markeredgewidth=0.4, zorder=3)
            if name == "cov_r" and np.all(z[ok] > 0):  # metafor's logcov = TRUE, plain numbers on the axis
                from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, ScalarFormatter

                a.set_yscale("log")
                narrow = np.nanmax(z) / np.nanmin(z) < 10  # within a decade: evenly spaced ticks read better
                a.yaxis.set_major_locator(MaxNLocator(4) if narrow else LogLocator(subs=(1.0, 2.0, 5.0)))
                a.yaxis.set_major_formatter(ScalarFormatter())
                a.yaxis.set_minor_formatter(NullFormatter())
            if name == "rstudent":
                a.set_ylim(min(np.nanmin(z), -2) - 0.2, max(np.nanmax(z), 2) + 0.2)
            if name in ("hat", "weight"):
                a.set_ylim(0, None)
            shown = pos[::step] if step == 1 else np.concatenate([[1], np.arange(step, k + 1, step)])
            style.literal_ticks(a, "x", shown, [tick_labels[j - 1] for j in shown])
            if labels == "study":  # long labels: only under the bottom panels, upright
                if i < 6:
                    a.tick_params(labelbottom=False)
                for t in a.get_xticklabels():
                    t.set_rotation(90)
            a.set_xlim(0.5, k + 0.5)
        for a in axes[8:]:
            a.set_visible(False)
        if flagged.any():
            fig.suptitle(f"influential (metafor's rule): {', '.join(str(s) for s in inf.index[flagged])}",
                         fontsize=style.MIN_FONT_PT)
            style.literal(fig.texts)
    return fig


def _cumulative_rows(obj, parameter, order):
    """(labels, k, estimate, lower, upper, what) from a cumul table, a cumulative table or a fit."""
    if not isinstance(obj, pd.DataFrame):
        from bayes_se.exact_fit import ExactFit
        from bayes_se.frequentist.rma import RMAResult

        if isinstance(obj, ExactFit):
            obj = obj.cumulative(order)
        elif isinstance(obj, RMAResult):
            obj = obj.cumul(order)
        else:
            raise SpecError("plot_cumulative needs a cumulative table, an RMAResult or an ExactFit", key="fit")
    if isinstance(obj.index, pd.MultiIndex):  # ExactFit.cumulative(): (study, parameter)
        params = list(dict.fromkeys(obj.index.get_level_values("parameter")))
        parameter = parameter or params[0]
        if parameter not in params:
            raise SpecError(f"no parameter {parameter!r}; the table has {', '.join(params)}", key="parameter")
        t = obj.xs(parameter, level="parameter")
        qcols = [c for c in t.columns if c.startswith("q") and c != "q50"]
        return ([str(s) for s in t.index], t["k"].to_numpy(), t["mean"].to_numpy(float),
                t[qcols[0]].to_numpy(float), t[qcols[1]].to_numpy(float), f"posterior of {parameter}", "mean, credible interval")
    return ([str(s) for s in obj.index], obj["k"].to_numpy(), obj["estimate"].to_numpy(float),
            obj["ci_lower"].to_numpy(float), obj["ci_upper"].to_numpy(float), "estimate", "confidence interval")


def plot_cumulative(obj, *, parameter: str | None = None, order=None, ax=None, width="double",
                    annotate: bool = True, xlabel: str = "Effect size"):
    """A cumulative forest plot: the pooled estimate and its interval after each study is added.

    Parameters
    ----------
    obj : pandas.DataFrame, RMAResult or ExactFit
        ``RMAResult.cumul()`` (estimate, ci_lower, ci_upper) or ``ExactFit.cumulative()`` (mean and
        the central credible interval of ``parameter``); a result or fit is asked for it with
        ``order``.
    parameter : str, optional
        For a Bayesian table: ``mu`` (default: the first) or ``beta[NAME]`` or ``tau``.
    order : str or array_like, optional
        Passed to ``cumul`` / ``cumulative`` when ``obj`` is a result or fit.
    ax : matplotlib.axes.Axes, optional
    width : {"single", "double"} or float
    annotate : bool
        Write each step's estimate and interval at the right.
    xlabel : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels, ks, est, lo, hi, what, kind = _cumulative_rows(obj, parameter, order)
    n = len(labels)
    y = np.arange(n, dtype=float)
    with style.style():
        fig, ax = style.figure_and_axes(ax, width, MARGIN_MM + ROW_MM * n)
        ok = np.isfinite(est)
        ax.hlines(y[ok], lo[ok], hi[ok], color=style.POSTERIOR, lw=0.9)
        ax.plot(est[ok], y[ok], "o", color=style.POSTERIOR, ms=3.0)
        ax.axvline(0.0, color="0.5", lw=0.6, ls=":", zorder=0)
        if ok.any():
            ax.axvline(est[ok][-1], color=style.POOLED, lw=0.6, ls="--", zorder=0)
        tax = ax.inset_axes([1.01, 0.0, 0.42, 1.0], sharey=ax) if annotate else None  # before the ticks
        style.literal_ticks(ax, "y", y, [f"+ {s}" for s in labels])
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        ax.set_ylim(n - 0.4, -0.8)
        ax.set_xlabel(xlabel)
        ax.set_title(f"Cumulative {what} ({kind})", loc="left")
        if tax is not None:
            tax.set_xlim(0.0, 1.0)
            tax.axis("off")
            tax.text(0.0, -0.8, "k   estimate [interval]", ha="left", va="bottom", fontweight="bold", family="monospace")
            for yy, kk, e, l, h in zip(y, ks, est, lo, hi):
                text = f"{int(kk):<3d} {e:.2f} [{l:.2f}, {h:.2f}]" if np.isfinite(e) else f"{int(kk):<3d} (none)"
                tax.text(0.0, yy, text, ha="left", va="center", family="monospace")
    return fig
