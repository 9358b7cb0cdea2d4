"""Prior and posterior densities of the location (mu or each beta) and of tau.

Posterior densities are kernel density estimates of the draws (ArviZ ``az.kde``, with boundary
correction at tau = 0), or the exact mixture density of an :class:`~bayes_se.exact.ExactPosterior`.
Prior densities are exact when Prior objects are given (``Prior.logpdf``, ``Prior.tau_logpdf``),
otherwise a KDE of the fit's prior draws. A posterior much narrower than its prior means the data
dominate; a posterior that follows the prior means they say little about that parameter.

References
----------
Gabry, J., Simpson, D., Vehtari, A., Betancourt, M. & Gelman, A. (2019). Visualization in Bayesian
workflow. JRSS A 182, 389-402.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_se.errors import SpecError
from bayes_se.plots import style
from bayes_se.plots.forest import posterior_draws

#: Points of exact density curves.
GRID = 256
#: The x range covers the posterior's central POSTERIOR_MASS, widened by WIDEN of its span per side.
POSTERIOR_MASS = 0.998
WIDEN = 0.5


def _kde(values, bounded: bool):
    import arviz as az

    x, density = az.kde(np.asarray(values, float), bound_correction=bounded)
    return x, density


def _parameters(d):
    if d.location_name == "mu":
        return [("mu", "mu", 0)]
    return [(f"beta[{name}]", "beta", j) for j, name in enumerate(d.coef_names)]


def _fit_priors(fit) -> dict:
    """A fit's resolved priors keyed as :func:`density_table` reads them (``beta`` a dict by name)."""
    out = {}
    betas = {}
    for key, prior in fit.priors.items():
        if key.startswith("beta["):
            betas[key[5:-1]] = prior
        else:
            out[key] = prior
    if betas:
        out["beta"] = betas
    return out


def _range(draws, bounded):
    a = 0.5 * (1.0 - POSTERIOR_MASS)
    lo, hi = np.quantile(draws, [a, 1.0 - a])
    lo, hi = lo - WIDEN * (hi - lo), hi + WIDEN * (hi - lo)
    return (max(lo, 0.0) if bounded else lo), hi


def density_table(fit, priors: dict | None = None, *, data=None) -> pd.DataFrame:
    """Prior and posterior density curves of mu (or each beta) and tau.

    Parameters
    ----------
    fit : BayesianFit or ExactPosterior
    priors : dict, optional
        Prior objects by key ``mu``, ``beta`` (one Prior for every coefficient, or a dict by
        coefficient name) and ``tau``: drawn exactly. Without them the fit's ``prior`` group is
        smoothed; an ExactPosterior then gets no prior curves.
    data : pandas.DataFrame, optional
        The data of an ExactPosterior (columns ``yi``, ``vi``).

    A location-scale fit (``log tau_i = z_i' alpha``) has ``alpha[NAME]`` rows (priors keyed
    ``alpha[NAME]``) instead of ``tau``.

    Returns
    -------
    pandas.DataFrame
        Columns ``parameter`` (``mu``, ``beta[NAME]``, ``tau`` or ``alpha[NAME]``), ``source`` ("prior",
        "posterior"), ``x``, ``density``.
    """
    from bayes_se.fits import Fit

    is_fit = isinstance(fit, Fit)
    if priors is None and is_fit:
        priors = _fit_priors(fit)
    priors = dict(priors or {})
    d = posterior_draws(fit, data)
    rows = []
    if d.location_scale:  # location-scale: the scale coefficients (log tau_i = z_i' alpha) instead of tau
        params = _parameters(d) + [(f"alpha[{n}]", "alpha", j) for j, n in enumerate(d.scale_names)]
    else:
        params = _parameters(d) + [("tau", "tau", 0)]
    if d.tau.shape[1] > 1 and not d.location_scale:
        raise SpecError("prior/posterior densities need a single tau (the fit has one per subgroup)", key="fit")
    for label, key, j in params:
        bounded = key == "tau"
        draws = d.tau[:, 0] if bounded else d.alpha[:, j] if key == "alpha" else d.coef[:, j]
        lo, hi = _range(draws, bounded)
        grid = np.linspace(lo, hi, GRID)
        # a fit knows its exact density where its engine does; an ExactPosterior always does
        exact = fit.posterior_density(label, grid) if is_fit else np.asarray(fit.pdf(label, grid), float)
        if exact is not None:
            rows.append((label, "posterior", grid, np.asarray(exact, float)))
        else:
            x, dens = _kde(draws, bounded)
            rows.append((label, "posterior", x, dens))
        prior = priors.get(label if key == "alpha" else key)
        if isinstance(prior, dict):
            prior = prior.get(label[5:-1]) if key == "beta" else None
        if prior is not None:
            if not hasattr(prior, "logpdf"):
                raise SpecError(f"prior for {key!r} must be a Prior object (with logpdf)", key=key)
            logp = prior.tau_logpdf(grid) if bounded else prior.logpdf(grid)
            rows.append((label, "prior", grid, np.exp(logp)))
        elif key in d.prior:
            pdraws = d.prior[key]
            pdraws = pdraws if pdraws.ndim == 1 else pdraws[:, j]
            x, dens = _kde(pdraws, bounded)
            rows.append((label, "prior", x, dens))
    return pd.concat([pd.DataFrame({"parameter": p, "source": s, "x": x, "density": y}) for p, s, x, y in rows],
                     ignore_index=True)


def plot_densities(fit, priors: dict | None = None, *, data=None, ax=None, width="double"):
    """Draw :func:`density_table`: one panel per parameter, prior and posterior overlaid.

    ``ax``: axes to draw into, one per panel (mu or each beta, then tau); default a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = density_table(fit, priors, data=data)
    names = list(pd.unique(table["parameter"]))
    ncols = min(len(names), 3 if style.width_inches(width) * style.MM_PER_INCH > 120.0 else 2)
    nrows = int(np.ceil(len(names) / ncols))
    with style.style():
        fig, axes = style.panel_axes(ax, len(names), width, 48.0 * nrows + 8.0, nrows, ncols)
        for panel, name in zip(axes.ravel(), names):
            post = table[(table["parameter"] == name) & (table["source"] == "posterior")]
            prior = table[(table["parameter"] == name) & (table["source"] == "prior")]
            panel.plot(post["x"], post["density"], color=style.POSTERIOR, lw=1.2, label="Posterior")
            panel.fill_between(post["x"], post["density"], color=style.POSTERIOR, alpha=0.15, lw=0)
            if len(prior):
                panel.plot(prior["x"], prior["density"], color=style.PRIOR, lw=1.2, ls="--", label="Prior")
            panel.set_xlim(post["x"].min(), post["x"].max())
            panel.set_ylim(bottom=0.0)
            style.literal(panel.set_xlabel(name))
            panel.set_yticks([])
            panel.spines["left"].set_visible(False)
        for unused in axes.ravel()[len(names):]:
            unused.set_visible(False)
        if ax is not None:  # the user's figure: a legend in the first panel
            axes.ravel()[0].legend()
        else:
            fig.legend(*axes.ravel()[0].get_legend_handles_labels(), loc="outside upper center", ncol=2,
                       handlelength=1.8)
    return fig
