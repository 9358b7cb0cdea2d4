"""Forest plot: observed effects, shrunken study effects, the pooled effect and its prediction.

Model: ``y_i ~ N(theta_i, v_i)``, ``theta_i ~ N(x_i' beta, tau^2)``. Each study row shows the
observed effect with its ``level`` confidence interval ``y_i +- z sqrt(v_i)`` and the posterior
of ``theta_i`` (mean and central credible interval); the pooled effect is a diamond and the
prediction interval of a new study's effect ``x' beta + tau z`` a bar.

:func:`posterior_draws` is the small adapter that the plots share: it turns a
:class:`~bayes_se.results.BayesianFit` or an :class:`~bayes_se.exact.ExactPosterior` (with its
data) into flat draws.

References
----------
Lewis, S. & Clarke, M. (2001). Forest plots: trying to see the wood and the trees. BMJ 322, 1479.
Higgins, J. P. T., Thompson, S. G. & Spiegelhalter, D. J. (2009). A re-evaluation of random-effects
meta-analysis. JRSS A 172, 137-159 (prediction intervals).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from bayes_se.errors import DataError, SpecError
from bayes_se.plots import style

#: Draws taken from an ExactPosterior (its draws are iid, so a few thousand give smooth intervals).
EXACT_DRAWS = 4000
#: Row height (mm) of a forest plot: 7 pt labels are 2.5 mm tall.
ROW_MM = 3.2
#: Room (mm) for the axis, its label and the legend.
MARGIN_MM = 24.0


@dataclass
class PosteriorDraws:
    """Flat posterior draws of a random-effects model (n draws in the first axis).

    Attributes
    ----------
    yi, vi : numpy.ndarray
        Observed effects and sampling variances (k).
    study : list of str
    coef_names : list of str
    location_name : {"mu", "beta"}
    coef : numpy.ndarray
        (n, p) draws of mu or beta.
    tau : numpy.ndarray
        (n, G) draws of tau (G > 1 with a separate tau per subgroup).
    tau_groups : list of str or None
        Subgroup labels of the columns of ``tau``.
    theta : numpy.ndarray
        (n, k) draws of the study effects.
    location : numpy.ndarray or None
        (n, k) draws of ``x_i' beta`` (None where the design is unknown).
    pred : numpy.ndarray or None
        (n,) draws of a new study's effect, when the source has them.
    X : numpy.ndarray or None
    prior : dict
        name -> (m, ...) prior draws (empty when the source stores none).
    idata : arviz.InferenceData or None
    Z, alpha, scale_names : location-scale fits only
        The scale design (k x q), the (n, q) draws of ``alpha`` and its coefficient names; ``tau``
        is then (n, k), each study's own ``tau_i = exp(z_i' alpha)``.
    """

    @property
    def location_scale(self) -> bool:
        return self.Z is not None

    yi: np.ndarray
    vi: np.ndarray
    study: list
    coef_names: list
    location_name: str
    coef: np.ndarray
    tau: np.ndarray
    tau_groups: list | None
    theta: np.ndarray
    location: np.ndarray | None
    pred: np.ndarray | None = None
    X: np.ndarray | None = None
    prior: dict = field(default_factory=dict)
    idata: object = None
    Z: np.ndarray | None = None
    alpha: np.ndarray | None = None
    scale_names: list | None = None


def _flat(values) -> np.ndarray:
    """(chain, draw, ...) -> (chain * draw, ...)."""
    arr = np.asarray(values, dtype=float)
    return arr.reshape((-1,) + arr.shape[2:])


def _data_arrays(data, k: int):
    """yi, vi from a DataFrame (columns yi, vi) or an object with ``.yi`` and ``.vi``."""
    if data is None:
        raise SpecError("an ExactPosterior carries no data: pass data= (columns yi and vi)", key="data")
    try:
        yi = np.asarray(data["yi"] if isinstance(data, pd.DataFrame) else data.yi, dtype=float)
        vi = np.asarray(data["vi"] if isinstance(data, pd.DataFrame) else data.vi, dtype=float)
    except (KeyError, AttributeError):
        raise DataError("data needs columns 'yi' and 'vi'", column="yi") from None
    if yi.size != k or vi.size != k:
        raise DataError(f"data has {yi.size} rows but the posterior has {k} studies", column="yi")
    return yi, vi


def posterior_draws(fit, data=None, *, n_draws: int = EXACT_DRAWS, seed: int = 0) -> PosteriorDraws:
    """Flat draws of a BayesianFit (random-effects models) or an ExactPosterior.

    Parameters
    ----------
    fit : BayesianFit, ExactPosterior or ExactFit
    data : pandas.DataFrame or EffectData, optional
        Needed for an ExactPosterior: its ``yi`` and ``vi`` in the posterior's study order (an
        ExactFit brings its own data).
    n_draws, seed : int
        Number of exact draws from an ExactPosterior and their seed (unused for a BayesianFit).

    Returns
    -------
    PosteriorDraws
    """
    from bayes_se.exact import ExactPosterior
    from bayes_se.fits import Fit

    if isinstance(fit, Fit):
        return idata_draws(fit.idata)
    if isinstance(fit, ExactPosterior):
        study = [str(s) for s in fit.study]
        yi, vi = _data_arrays(data, len(study))
        d = fit.draws(int(n_draws), rng=seed)
        intercept_only = "mu" in d
        X = fit.X
        return PosteriorDraws(
            yi=yi, vi=vi, study=study, coef_names=list(fit.coef_names),
            location_name="mu" if intercept_only else "beta", coef=d["beta"], tau=d["tau"][:, None],
            tau_groups=None, theta=d["theta"], location=d["beta"] @ X.T, pred=d["pred"], X=X)
    raise SpecError(f"expected a fit (bayes_se.fit, load_fit) or an ExactPosterior, got {type(fit).__name__}",
                    key="fit")


def idata_draws(idata) -> PosteriorDraws:
    """Flat draws of a random-effects fit from its InferenceData alone (any engine).

    Reads ``posterior`` (``mu`` or ``beta``, ``tau`` or ``sigma_cluster``/``sigma_effect``,
    ``theta``, ``pred``), ``observed_data.y``, ``constant_data`` (``vi``, ``X``) and ``prior``.
    """
    post = idata.posterior
    three_level = "sigma_cluster" in post and "sigma_effect" in post
    scale = "alpha" in post and "Z" in getattr(idata, "constant_data", {})
    if "theta" not in post or not ("tau" in post or three_level) or "observed_data" not in idata.groups():
        raise SpecError("the plot needs a random-effects fit (tau and theta in the posterior)", key="fit")
    name = "mu" if "mu" in post else "beta"
    coef = _flat(post[name])
    coef = coef[:, None] if coef.ndim == 1 else coef
    coef_names = ["intercept"] if name == "mu" else [str(c) for c in post["beta"].coords["coef"].values]
    X = np.asarray(idata.constant_data["X"], float) if "X" in idata.constant_data else None
    Z = alpha = scale_names = None
    if scale:  # location-scale: each study's own tau_i = exp(z_i' alpha) (both engines)
        Z = np.asarray(idata.constant_data["Z"], float)
        alpha = _flat(post["alpha"])
        scale_names = [str(c) for c in post["alpha"].coords["scale_coef"].values]
        tau = np.exp(alpha @ Z.T)
    elif three_level:
        # a new effect from a new cluster varies by both components: tau^2 = sigma_c^2 + sigma_e^2
        tau = np.sqrt(_flat(post["sigma_cluster"]) ** 2 + _flat(post["sigma_effect"]) ** 2)
    else:
        tau = _flat(post["tau"])
    tau = tau[:, None] if tau.ndim == 1 else tau
    groups = [str(g) for g in post["tau"].coords["subgroup"].values] if "subgroup" in post.dims and not scale \
        else None
    yi = np.asarray(idata.observed_data["y"], float)
    location = np.repeat(coef[:, :1], yi.size, axis=1) if X is None else coef @ X.T
    prior = {}
    if "prior" in idata.groups():
        prior = {v: _flat(idata.prior[v]) for v in idata.prior.data_vars}
    return PosteriorDraws(
        yi=yi, vi=np.asarray(idata.constant_data["vi"], float),
        study=[str(s) for s in post["theta"].coords["study"].values], coef_names=coef_names,
        location_name=name, coef=coef, tau=tau, tau_groups=groups if tau.shape[1] > 1 else None,
        theta=_flat(post["theta"]), location=location, pred=_flat(post["pred"]) if "pred" in post else None,
        X=X, prior=prior, idata=idata, Z=Z, alpha=alpha, scale_names=scale_names)


def _interval(draws, level):
    a = 0.5 * (1.0 - level)
    lo, hi = np.quantile(draws, [a, 1.0 - a], axis=0)
    return np.mean(draws, axis=0), lo, hi


def _groups(group, data, k):
    if group is None:
        return None
    if isinstance(group, str):
        frame = getattr(data, "frame", data)  # an EffectData carries its columns in .frame
        if not isinstance(frame, pd.DataFrame) or group not in frame.columns:
            raise SpecError(f"group column {group!r} is not in data", key="group")
        group = frame[group]
    labels = [str(g) for g in group]
    if len(labels) != k:
        raise DataError(f"{len(labels)} group labels for {k} studies", column="group")
    return np.array(labels, dtype=object)


def forest_table(fit, data=None, *, group=None, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """The numbers a forest plot draws, one row per study, pooled effect and prediction interval.

    Parameters
    ----------
    fit : BayesianFit or ExactPosterior
    data : pandas.DataFrame, optional
        Needed for an ExactPosterior (columns ``yi``, ``vi``) or to name a ``group`` column.
    group : str or sequence, optional
        A column of ``data`` or one label per study: studies are blocked by group, and where the
        fit's fitted location differs between groups (the group is a moderator) each block gets
        its pooled effect, the posterior of the mean of ``x_i' beta`` over its studies.
    level : float
        Level of the observed confidence and the credible intervals.
    seed : int
        Seeds the normal deviates of prediction intervals computed here (and ExactPosterior draws).

    Returns
    -------
    pandas.DataFrame
        Columns ``row`` ("study", "pooled", "prediction"), ``label``, ``group``, ``yi``, ``vi``,
        ``obs_lower``, ``obs_upper`` (``yi -+ z sqrt(vi)``), ``estimate``, ``lower``, ``upper``
        (posterior mean and quantiles of theta_i, of the pooled effect or of a new effect),
        ``weight`` (percent: metafor's random-effects weights ``1 / (v_i + tau^2)`` at the posterior
        median of tau; NaN on pooled rows), ``tau`` (location-scale fits: each study's own
        ``tau_i = exp(z_i' alpha)``, posterior median; its weight uses it).

    With a location-scale fit the prediction rows are one per distinct scale row ``z`` (at most
    :data:`MAX_SCALE_ROWS`; a continuous scale moderator gets none), each ``mean location of its
    studies + tau_z N(0, 1)``, labelled by the scale moderators' values.
    """
    if not 0.0 < level < 1.0:
        raise SpecError(f"level must be in (0, 1), got {level}", key="level")
    d = posterior_draws(fit, data, seed=seed)
    k = len(d.study)
    groups = _groups(group, getattr(fit, "data", None) if data is None else data, k)
    z = stats.norm.ppf(0.5 + 0.5 * level)
    est, lo, hi = _interval(d.theta, level)
    normal = np.random.default_rng(seed).standard_normal(d.theta.shape[0])
    # metafor's random-effects weights 1 / (v_i + tau^2), in percent, at the posterior median of tau
    # (of the total SD of a new effect in a three-level model; of each study's tau with subgroups)
    tau_med = np.median(d.tau, axis=0)
    tau_i = tau_med if d.location_scale else tau_med[0] if tau_med.size == 1 else tau_med[[d.tau_groups.index(g) for g in groups]] \
        if d.tau_groups and groups is not None and set(groups) <= set(d.tau_groups) else np.median(tau_med)
    w = 1.0 / (d.vi + np.square(tau_i))
    weight = 100.0 * w / w.sum()

    def study_rows(idx):
        return [{"row": "study", "label": d.study[i], "group": "" if groups is None else groups[i],
                 "yi": d.yi[i], "vi": d.vi[i], "obs_lower": d.yi[i] - z * np.sqrt(d.vi[i]),
                 "obs_upper": d.yi[i] + z * np.sqrt(d.vi[i]), "estimate": est[i], "lower": lo[i],
                 "upper": hi[i], "weight": weight[i],
                 "tau": tau_med[i] if d.location_scale else np.nan} for i in idx]

    def pooled_rows(mask, label, grp, tau):
        loc = d.location[:, mask].mean(axis=1)
        out = [("pooled", label, loc)]
        if tau is not None:
            new = d.pred if (mask.all() and d.pred is not None and d.location_name == "mu"
                             and d.tau.shape[1] == 1) else loc + tau * normal
            out.append(("prediction", "Prediction interval", new))
        return [{"row": r, "label": lab, "group": grp, "yi": np.nan, "vi": np.nan, "obs_lower": np.nan,
                 "obs_upper": np.nan, **dict(zip(("estimate", "lower", "upper"), _interval(x, level))),
                 "weight": np.nan, "tau": np.nan} for r, lab, x in out]

    if groups is None:
        rows = study_rows(range(k))
    else:
        levels = list(pd.unique(groups))
        # a group is a moderator when its mean fitted location differs from another's (beyond the
        # rounding of averaging identical values over groups of different sizes)
        means = np.array([d.location[:, groups == g].mean() for g in levels]) if d.location is not None else None
        by_group = means is not None and np.ptp(means) > 1e-9 * (1.0 + np.abs(means).max())
        rows = []
        for g in levels:
            rows += study_rows(np.flatnonzero(groups == g))
            if by_group:  # the group is a moderator: its own pooled effect
                tau = (d.tau[:, 0] if d.tau.shape[1] == 1 else
                       d.tau[:, d.tau_groups.index(g)] if d.tau_groups and g in d.tau_groups else None)
                rows += pooled_rows(groups == g, f"Pooled ({g})", g, tau)
    if d.location is not None:
        label = "Pooled effect (mu)" if d.location_name == "mu" else "Mean fitted effect"
        if d.location_scale:
            rows += pooled_rows(np.ones(k, bool), label, "", None)
            rows += _scale_prediction_rows(d, normal, level)
        else:
            rows += pooled_rows(np.ones(k, bool), label, "", d.tau[:, 0] if d.tau.shape[1] == 1 else None)
    return pd.DataFrame(rows)


#: A location-scale forest draws one prediction interval per distinct scale row up to this many.
MAX_SCALE_ROWS = 6


def _scale_prediction_rows(d: PosteriorDraws, normal, level) -> list:
    """Prediction rows of a location-scale fit: for each distinct scale row ``z`` (the studies that
    share it), ``mean_i(x_i' beta) + exp(z' alpha) N(0, 1)``."""
    rows_z, inverse = np.unique(d.Z, axis=0, return_inverse=True)
    if len(rows_z) > MAX_SCALE_ROWS:
        return []
    names = d.scale_names or [f"z{j}" for j in range(d.Z.shape[1])]
    out = []
    for r, z in enumerate(rows_z):
        mask = np.asarray(inverse).ravel() == r
        tau = np.exp(d.alpha @ z)
        what = ", ".join(f"{n}={v:g}" for n, v in zip(names, z) if n != "intercept") or "all"
        x = d.location[:, mask].mean(axis=1) + tau * normal
        out.append({"row": "prediction", "label": f"Prediction ({what})", "group": "", "yi": np.nan, "vi": np.nan,
                    "obs_lower": np.nan, "obs_upper": np.nan,
                    **dict(zip(("estimate", "lower", "upper"), _interval(x, level))), "weight": np.nan,
                    "tau": float(np.median(tau))})
    return out


def _diamond(ax, y, est, lo, hi, color, half_height=0.35):
    from matplotlib.patches import Polygon

    ax.add_patch(Polygon([(lo, y), (est, y + half_height), (hi, y), (est, y - half_height)],
                         closed=True, facecolor=color, edgecolor=color, zorder=3))


def _annotation(r) -> str:
    """metafor's annotation of a row: the observed effect and its CI for a study, else the estimate
    and its interval."""
    if r["row"] == "study":
        return f"{r['yi']:.2f} [{r['obs_lower']:.2f}, {r['obs_upper']:.2f}]"
    return f"{r['estimate']:.2f} [{r['lower']:.2f}, {r['upper']:.2f}]"


def plot_forest(fit, data=None, *, group=None, level: float = 0.95, ax=None, width=None,
                annotate: bool | None = None):
    """Draw the forest plot of :func:`forest_table`.

    Parameters
    ----------
    fit : BayesianFit or ExactPosterior
    data, group, level
        As in :func:`forest_table`.
    ax : matplotlib.axes.Axes, optional
        Draw into this axes; otherwise a new figure whose height grows with the number of rows.
    width : {"single", "double"} or float, optional
        Width of a new figure; default double column when labels are long or ``annotate``.
    annotate : bool, optional
        Default: True unless the figure is single-column width (too narrow for them). metafor's
        annotation columns on the right: each study's observed effect with its CI and its
        weight (percent, random-effects weights at the posterior median of tau), each pooled row's
        estimate with its interval.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D

    table = forest_table(fit, data, group=group, level=level)
    # y positions, top to bottom: [group header], studies, [group pooled, prediction], gap, overall
    ypos, headers, y = [], [], 0.0
    for g, block in table.groupby("group", sort=False):
        if g:
            headers.append((y, g))
            y += 1.0
        for _ in range(len(block)):
            ypos.append(y)
            y += 1.0
        y += 0.5 if g else 0.0
    ypos = np.array(ypos)
    # the overall rows have group "" and come last; put a gap before them
    overall = (table["group"] == "").to_numpy() & (table["row"] != "study").to_numpy()
    if overall.any() and (~overall).any():
        ypos[overall] += 0.5
    n_rows = ypos.max() + 1.0
    longest = max(len(s) for s in table["label"])
    if width is None:
        width = "double" if longest > 28 or annotate is not False else "single"
    if annotate is None:
        annotate = width != "single"
    with style.style():
        height = MARGIN_MM + ROW_MM * n_rows
        tax = None
        per_study_tau = bool(table["tau"].notna().any())  # location-scale: a tau_i column too
        text_width = 1.85 if per_study_tau else 1.3
        if ax is None and annotate:  # the annotation columns get an axes of their own, beside the plot
            fig, (ax, tax) = style.new_figure(width, height, ncols=2, sharey=True,
                                              gridspec_kw={"width_ratios": [2.0, text_width], "wspace": 0.0})
        else:
            fig, ax = style.figure_and_axes(ax, width, height_mm=height)
            if annotate:
                tax = ax.inset_axes([1.02, 0.0, text_width / 2.0, 1.0], sharey=ax)
        studies = (table["row"] == "study").to_numpy()
        ys = ypos[studies]
        s = table[studies]
        ax.hlines(ys - 0.15, s["obs_lower"], s["obs_upper"], color=style.OBSERVED, lw=0.8)
        ax.plot(s["yi"], ys - 0.15, "s", color=style.OBSERVED, ms=2.5)
        ax.hlines(ys + 0.15, s["lower"], s["upper"], color=style.POSTERIOR, lw=0.8)
        ax.plot(s["estimate"], ys + 0.15, "o", color=style.POSTERIOR, ms=2.5)
        for yy, (_, r) in zip(ypos[~studies], table[~studies].iterrows()):
            color = style.POOLED if r["group"] == "" else style.OKABE_ITO["bluish_green"]
            if r["row"] == "pooled":
                _diamond(ax, yy, r["estimate"], r["lower"], r["upper"], color)
            else:
                ax.errorbar(r["estimate"], yy, xerr=[[r["estimate"] - r["lower"]], [r["upper"] - r["estimate"]]],
                            fmt="none", ecolor=color, elinewidth=2.0, capsize=2.0)
        ax.axvline(0.0, color="0.5", lw=0.6, ls=":", zorder=0)
        pooled = table[(table["row"] == "pooled") & (table["group"] == "")]
        if len(pooled):
            ax.axvline(pooled["estimate"].iloc[0], color=style.POOLED, lw=0.6, ls="--", zorder=0)
        labels = list(table["label"])
        ticks = list(ypos)
        for yy, g in headers:
            ticks.append(yy)
            labels.append(g)
        style.literal_ticks(ax, "y", ticks, labels)
        for tick in ax.get_yticklabels()[len(ypos):]:  # the group headers
            tick.set_fontweight("bold")
        ax.tick_params(axis="y", length=0)
        ax.spines["left"].set_visible(False)
        ax.set_ylim(n_rows - 0.3, -0.8)
        ax.set_xlabel("Effect size")
        if tax is not None:
            tax.set_xlim(0.0, 1.0)
            tax.axis("off")
            pct = f"{100 * level:g}%"
            head = f"Estimate [{pct} {'CI' if per_study_tau else 'interval'}]"  # short beside tau_i
            tax.text(0.02, -0.8, head, ha="left", va="bottom", fontweight="bold")
            tax.text(0.98, -0.8, "Weight", ha="right", va="bottom", fontweight="bold")
            if per_study_tau:  # location-scale: each study's own tau_i (posterior median)
                tax.text(0.73, -0.8, "tau_i", ha="right", va="bottom", fontweight="bold")
            for yy, (_, r) in zip(ypos, table.iterrows()):
                tax.text(0.02, yy, _annotation(r), ha="left", va="center")
                if r["row"] == "study":
                    tax.text(0.98, yy, f"{r['weight']:.1f}%", ha="right", va="center")
                if per_study_tau and np.isfinite(r["tau"]):
                    tax.text(0.73, yy, f"{r['tau']:.2f}", ha="right", va="center")
        handles = [Line2D([], [], color=style.OBSERVED, marker="s", ms=3, lw=0.8,
                          label=f"Observed ({100 * level:g}% CI)"),
                   Line2D([], [], color=style.POSTERIOR, marker="o", ms=3, lw=0.8,
                          label=f"Shrunken ({100 * level:g}% CrI)"),
                   Line2D([], [], color=style.POOLED, marker="D", ls="none", ms=4, label="Pooled"),
                   Line2D([], [], color=style.POOLED, lw=2.0, label="Prediction")]
        if ((table["row"] == "pooled") & (table["group"] != "")).any():  # first column: the long labels
            handles.insert(2, Line2D([], [], color=style.OKABE_ITO["bluish_green"], marker="D", ls="none", ms=4,
                                     label="Subgroup pooled"))
        ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2,
                  borderaxespad=0.2, handlelength=1.5)
    return fig
