"""Contour-enhanced funnel plot (Peters et al. 2008).

Effects ``y_i`` against standard errors ``sqrt(v_i)`` (inverted axis). Shaded regions mark where
a study's two-sided test of ``theta = 0`` has ``p < 0.10``, ``0.05``, ``0.01``, i.e.
``|y| > z_{1-p/2} se``; dashed lines are the pseudo confidence region ``mu +- z se`` around the
pooled effect. Asymmetry that falls in the unshaded region points to causes other than
publication bias. With a trim-and-fill result (:func:`bayes_se.frequentist.trimfill`) the imputed
studies are drawn as open circles and the adjusted estimate as a line (metafor's
``funnel(trimfill(res))``).

References
----------
Peters, J. L., Sutton, A. J., Jones, D. R., Abrams, K. R. & Rushton, L. (2008). Contour-enhanced
meta-analysis funnel plots help distinguish publication bias from other causes of asymmetry.
Journal of Clinical Epidemiology 61, 991-996.
Sterne, J. A. C. & Egger, M. (2001). Funnel plots for detecting bias in meta-analysis. Journal of
Clinical Epidemiology 54, 1046-1055.
Duval, S. & Tweedie, R. (2000). Trim and fill: a simple funnel-plot-based method of testing and
adjusting for publication bias in meta-analysis. Biometrics 56, 455-463.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist.bias import TrimfillResult
from bayes_se.frequentist.rma import RMAResult
from bayes_se.plots import style
from bayes_se.plots.forest import posterior_draws

#: Significance contours (two-sided p) and their shades, lightest for the widest region.
CONTOURS = (0.10, 0.05, 0.01)
SHADES = ("0.93", "0.83", "0.70")


def funnel_table(fit, data=None, *, trimfill=None) -> pd.DataFrame:
    """The points of a funnel plot and the pooled effect.

    Parameters
    ----------
    fit : BayesianFit, ExactPosterior, ExactFit, RMAResult or pandas.DataFrame
        A fit (its data are used) or a table with columns ``yi``, ``vi`` (and ``study``).
    data : pandas.DataFrame, optional
        The data of an ExactPosterior.
    trimfill : TrimfillResult or True, optional
        A :func:`bayes_se.frequentist.trimfill` result for these studies, whose imputed studies
        are added as rows; ``True`` runs ``trimfill(fit)`` (``fit`` an intercept-only RMAResult).

    Returns
    -------
    pandas.DataFrame
        Columns ``study``, ``yi``, ``sei``, ``filled`` (True for a study imputed by trim-and-fill);
        ``attrs["estimate"]`` is the pooled effect (posterior mean of mu, or metafor's estimate;
        None for a meta-regression); with ``trimfill``, ``attrs["adjusted"]`` is the estimate
        refitted to observed and filled studies, ``attrs["k0"]`` and ``attrs["side"]`` its number
        and side of imputed studies.
    """
    estimate = None
    if isinstance(fit, pd.DataFrame):
        missing = [c for c in ("yi", "vi") if c not in fit.columns]
        if missing:
            raise DataError(f"data needs column {missing[0]!r}", column=missing[0])
        yi, vi = fit["yi"].to_numpy(float), fit["vi"].to_numpy(float)
        study = fit["study"].astype(str).tolist() if "study" in fit.columns else [str(i + 1) for i in range(len(fit))]
    elif isinstance(fit, RMAResult):
        yi, vi, study = np.asarray(fit.yi, float), np.asarray(fit.vi, float), [str(s) for s in fit.slab]
        estimate = float(fit.beta[0]) if fit.int_only else None
    else:
        d = posterior_draws(fit, data)
        yi, vi, study = d.yi, d.vi, d.study
        estimate = float(d.coef[:, 0].mean()) if d.location_name == "mu" else None
    bad = np.flatnonzero(~(np.isfinite(vi) & (vi > 0)))
    if bad.size:
        raise DataError("sampling variance must be finite and > 0", row=int(bad[0]) + 1, column="vi")
    table = pd.DataFrame({"study": study, "yi": yi, "sei": np.sqrt(vi), "filled": False})
    table.attrs["estimate"] = estimate
    if trimfill is None or trimfill is False:
        return table
    if trimfill is True:
        if not isinstance(fit, RMAResult):
            raise SpecError("trimfill=True needs an RMAResult; pass a TrimfillResult for other fits", key="trimfill")
        from bayes_se.frequentist import trimfill as run_trimfill

        trimfill = run_trimfill(fit)
    if not isinstance(trimfill, TrimfillResult):
        raise SpecError(f"trimfill must be a TrimfillResult or True, got {type(trimfill).__name__}", key="trimfill")
    k_obs = int(trimfill.fit.k) - int(trimfill.k0)
    if k_obs != len(table):
        raise DataError(f"the trim-and-fill result has {k_obs} observed studies but the funnel has {len(table)}",
                        column="yi")
    filled = pd.DataFrame({"study": [f"Filled {i + 1}" for i in range(int(trimfill.k0))],
                           "yi": np.asarray(trimfill.filled_yi, float),
                           "sei": np.sqrt(np.asarray(trimfill.filled_vi, float)), "filled": True})
    out = pd.concat([table, filled], ignore_index=True) if len(filled) else table
    out.attrs.update(estimate=estimate, adjusted=float(trimfill.fit.beta[0]), k0=int(trimfill.k0),
                     side=trimfill.side)
    return out


def funnel_contours(se_max: float, *, estimate: float | None = None, levels=CONTOURS,
                    level: float = 0.95) -> pd.DataFrame:
    """Lines of a contour-enhanced funnel: ``+- z_{1-p/2} se`` around 0 and ``estimate +- z se``.

    Parameters
    ----------
    se_max : float
        Largest standard error drawn.
    estimate : float, optional
        Pooled effect for the pseudo confidence lines.
    levels : sequence of float
        Two-sided p-values of the significance contours.
    level : float
        Level of the pseudo confidence lines.

    Returns
    -------
    pandas.DataFrame
        Columns ``line`` ("contour" or "pseudo_ci"), ``p``, ``z``, ``se``, ``lower``, ``upper``;
        two rows (se = 0 and se_max) per line.
    """
    if not se_max > 0:
        raise SpecError(f"se_max must be positive, got {se_max}", key="se_max")
    rows = []
    ses = np.array([0.0, float(se_max)])
    for p in levels:
        if not 0.0 < p < 1.0:
            raise SpecError(f"contour p-values must be in (0, 1), got {p}", key="levels")
        z = stats.norm.isf(p / 2.0)
        rows += [{"line": "contour", "p": p, "z": z, "se": s, "lower": -z * s, "upper": z * s} for s in ses]
    if estimate is not None:
        z = stats.norm.isf((1.0 - level) / 2.0)
        rows += [{"line": "pseudo_ci", "p": 1.0 - level, "z": z, "se": s, "lower": estimate - z * s,
                  "upper": estimate + z * s} for s in ses]
    return pd.DataFrame(rows)


def plot_funnel(fit, data=None, *, trimfill=None, ax=None, levels=CONTOURS, width="single"):
    """Draw a contour-enhanced funnel plot (see :func:`funnel_table`, :func:`funnel_contours`).

    With ``trimfill`` the imputed studies are open circles and the adjusted estimate a dotted line,
    both in the legend (when trim-and-fill imputes at least one study).

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = funnel_table(fit, data, trimfill=trimfill)
    filled = table["filled"].to_numpy(bool)
    # trim-and-fill that imputes nothing leaves the estimate as it is: nothing more to draw
    adjusted = table.attrs.get("adjusted") if table.attrs.get("k0") else None
    estimate = table.attrs["estimate"]
    se_max = 1.05 * table["sei"].max()
    lines = funnel_contours(se_max, estimate=estimate, levels=levels)
    contours = lines[lines["line"] == "contour"].sort_values(["p", "se"], ascending=[False, True])
    with style.style():
        fig, ax = style.figure_and_axes(ax, width, height_mm=70.0)
        half = max(np.abs(table["yi"]).max(), contours["upper"].max()) * 1.08
        ax.axvspan(-half, half, color="white", zorder=0)
        for shade, (p, c) in zip(SHADES, contours.groupby("p", sort=False)):
            se, up = c["se"].to_numpy(), c["upper"].to_numpy()
            # outside +-z se is significant at p: shade from the contour outwards
            ax.fill_betweenx(se, up, half, color=shade, lw=0, zorder=1, label=f"p < {p:g}")
            ax.fill_betweenx(se, -half, -up, color=shade, lw=0, zorder=1)
        ax.axvline(0.0, color="0.4", lw=0.6, zorder=2)
        if estimate is not None:
            ci = lines[lines["line"] == "pseudo_ci"]
            ax.plot(ci["lower"], ci["se"], ls="--", color=style.POOLED, lw=0.8, zorder=3)
            ax.plot(ci["upper"], ci["se"], ls="--", color=style.POOLED, lw=0.8, zorder=3,
                    label="Pseudo 95% CI")
            ax.axvline(estimate, color=style.POOLED, lw=0.9, zorder=3, label="Pooled effect")
        if adjusted is not None:
            ax.axvline(adjusted, color=style.OKABE_ITO["bluish_green"], lw=1.0, ls=":", zorder=3,
                       label="Trim-and-fill estimate")
        ax.plot(table.loc[~filled, "yi"], table.loc[~filled, "sei"], "o", ms=3.0, mfc=style.OBSERVED, mec="white",
                mew=0.4, zorder=4, label="Studies")
        if adjusted is not None:
            ax.plot(table.loc[filled, "yi"], table.loc[filled, "sei"], "o", ms=3.0, mfc="white", mec=style.OBSERVED,
                    mew=0.8, zorder=4, label=f"Filled studies ({table.attrs['k0']})")
        ax.set_xlim(-half, half)
        ax.set_ylim(se_max, 0.0)
        ax.set_xlabel("Effect size")
        ax.set_ylabel("Standard error")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3 if adjusted is None else 2,
                  borderaxespad=0.2, handlelength=1.5)
    return fig
