"""Trace and rank plots of the sampled parameters, drawn by ArviZ on a bayes_se figure.

Trace plots show each chain's draws over iterations and their densities; rank plots show the
histogram of each chain's ranks among all draws, which is uniform when the chains mix (Vehtari et
al. 2021). The numbers behind the verdict (R-hat, ESS) are in :mod:`bayes_se.diagnostics`; these
plots only draw.

References
----------
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021). Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of MCMC. Bayesian Analysis
16, 667-718.
"""

from __future__ import annotations

import numpy as np

from bayes_se.errors import SpecError
from bayes_se.plots import style

#: Sampled parameters shown by default (the study effects are exact draws, not MCMC).
DEFAULT_VARS = ("mu", "beta", "tau", "sigma_cluster", "sigma_effect", "nu")
#: Height (mm) of one row of panels.
ROW_MM = 32.0


def _var_names(fit, var_names):
    from bayes_se.fits import Fit

    if not isinstance(fit, Fit):
        raise SpecError(f"trace and rank plots need a fit (bayes_se.fit), got {type(fit).__name__}", key="fit")
    idata = fit.idata
    post = idata.posterior
    defaults = DEFAULT_VARS
    if "alpha" in post:  # location-scale: the sampled alpha, not the per-study tau_i it determines
        defaults = tuple("alpha" if v == "tau" else v for v in DEFAULT_VARS)
    names = [v for v in defaults if v in post] if var_names is None else list(var_names)
    missing = [v for v in names if v not in post]
    if missing or not names:
        raise SpecError(f"unknown parameter {missing[0] if missing else None!r}; known: {', '.join(post.data_vars)}",
                        key="var_names")
    return idata, names


def _restyle(fig):
    """Give ArviZ's text the bayes_se sizes (ArviZ scales its fonts with the figure size)."""
    for ax in fig.axes:
        ax.title.set_fontsize(style.RC["axes.titlesize"])
        ax.xaxis.label.set_fontsize(style.RC["axes.labelsize"])
        ax.yaxis.label.set_fontsize(style.RC["axes.labelsize"])
        ax.tick_params(labelsize=style.MIN_FONT_PT)


def plot_trace(fit, var_names=None, *, ax=None, width="double"):
    """Trace plot (density and draws per chain) of the sampled parameters via ``az.plot_trace``.

    ``ax``: a (parameters x 2) array of axes to draw into; default a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import arviz as az

    idata, names = _var_names(fit, var_names)
    with style.style():
        fig, axes = style.panel_axes(ax, 2 * len(names), width, ROW_MM * len(names), len(names), 2)
        axes = axes.reshape(len(names), 2)
        az.plot_trace(idata, var_names=names, axes=axes, compact=True, show=False)
        _restyle(fig)
    return fig


def plot_rank(fit, var_names=None, *, ax=None, width="double"):
    """Rank plot (rank histogram per chain) of each sampled parameter via ``az.plot_rank``.

    ``ax``: axes to draw into, one per parameter element; default a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import arviz as az

    idata, names = _var_names(fit, var_names)
    n = int(sum(np.prod([idata.posterior[v].sizes[d] for d in idata.posterior[v].dims
                         if d not in ("chain", "draw")], dtype=int) for v in names))
    ncols = min(n, 3)
    nrows = int(np.ceil(n / ncols))
    with style.style():
        fig, axes = style.panel_axes(ax, n, width, ROW_MM * nrows + 6.0, nrows, ncols)
        az.plot_rank(idata, var_names=names, ax=axes.ravel()[:n], show=False)
        for ax in axes.ravel()[n:]:
            ax.set_visible(False)
        _restyle(fig)
    return fig
