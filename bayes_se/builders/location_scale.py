"""PyMC builder of the Bayesian location-scale meta-regression.

Model (normal study effects integrated out, the marginal parameterisation of
:mod:`bayes_se.builders.random_effects`)::

    y_i ~ N(x_i' beta, v_i + tau_i^2),   log tau_i = z_i' alpha,
    beta_j ~ prior (mu / beta / beta[NAME]),   alpha_j ~ N(m_j, s_j^2) (alpha[NAME] / alpha).

Note the link: ``log tau_i`` (as brms's ``sigma`` submodel), so the frequentist
:func:`bayes_se.frequentist.location_scale.rma_ls`'s ``alpha`` (on ``log tau_i^2``) is twice this
one. The study effects ``theta_i``, a new study's effect ``pred`` at the reference scale level,
the marginal log-likelihood and the replicates are drawn after sampling by
:meth:`LocationScaleModel.postprocess` (the :class:`~bayes_se.builders.random_effects.MetaModel`
post-processing with a tau per study).

References
----------
Viechtbauer, W., & Lopez-Lopez, J. A. (2022). Location-scale models for meta-analysis. *Research
Synthesis Methods*, 13(6), 697-715.
Bürkner, P.-C. (2017). brms: An R package for Bayesian multilevel models using Stan. *JSS*, 80(1)
(distributional regression of sigma with a log link).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayes_se.builders.random_effects import (
    STUDY_DIMS,
    MetaModel,
    check_design,
    check_inputs,
    data_and_location,
    normal_conditional,
    prior_text,
    resolve_prior,
)
from bayes_se.errors import DataError, SpecError
from bayes_se.spec import scale_priors  # noqa: F401 - the one rule, re-exported

__all__ = ["LocationScaleModel", "build_location_scale", "scale_priors"]

LOG_SQRT_2PI = np.log(2 * np.pi) / 2


@dataclass
class LocationScaleModel(MetaModel):
    """A built location-scale model: a :class:`MetaModel` with the scale design.

    Attributes
    ----------
    Z : numpy.ndarray
        Scale design (k x q), with the intercept column first when it has one.
    scale_names : list of str
        Names of the columns of ``Z`` (coordinate ``scale_coef``).
    """

    Z: np.ndarray | None = None
    scale_names: list = field(default_factory=list)

    def tau_draws(self, posterior) -> np.ndarray:
        """``tau_i = exp(z_i' alpha)`` per draw, shape (chain, draw, study)."""
        return np.exp(np.einsum("cdq,kq->cdk", np.asarray(posterior["alpha"]), self.Z))

    def reference_tau(self, posterior) -> np.ndarray:
        """tau at the reference scale row (1 for a column of ones, 0 otherwise), (chain, draw)."""
        z0 = np.all(self.Z == 1.0, axis=0).astype(float)
        return np.exp(np.asarray(posterior["alpha"]) @ z0)

    def exact_draws(self, posterior, rng: np.random.Generator):
        """Study effects ``theta_i | beta, alpha, y`` (normal conditional with ``tau_i``), the marginal
        log-likelihood ``N(y_i; x_i' beta, v_i + tau_i^2)``, replicates, and ``pred`` =
        ``x0' beta + tau0 z`` at the reference location and scale rows."""
        import xarray as xr

        loc = self.location(posterior)
        shape = loc.shape
        coords = {"chain": posterior["chain"].values, "draw": posterior["draw"].values, "study": self.study}
        tau_i = self.tau_draws(posterior)
        tau2_i = tau_i**2
        theta_mean, theta_var = normal_conditional(self.yi, self.vi, loc, tau2_i)
        theta = theta_mean + np.sqrt(theta_var) * rng.standard_normal(shape)
        sd = np.sqrt(self.vi + tau2_i)
        x = (self.yi - loc) / sd
        loglik = (-(x**2) / 2.0 - LOG_SQRT_2PI) - np.log(sd)
        y_rep = loc + tau_i * rng.standard_normal(shape) + np.sqrt(self.vi) * rng.standard_normal(shape)
        mu0 = self.reference_location(posterior)
        pred = mu0 + self.reference_tau(posterior) * rng.standard_normal(mu0.shape)
        new = {"theta": xr.DataArray(theta, dims=STUDY_DIMS, coords=coords),
               "pred": xr.DataArray(pred, dims=("chain", "draw"),
                                    coords={k: coords[k] for k in ("chain", "draw")})}
        return new, xr.DataArray(loglik, dims=STUDY_DIMS, coords=coords), y_rep


def check_scale_design(Z, scale_names, k: int) -> tuple[np.ndarray, list]:
    """Validate the scale design: numeric, k rows, finite, full column rank."""
    try:
        Z = np.asarray(Z, dtype=float)
    except (TypeError, ValueError) as err:
        raise DataError(f"scale design matrix must be numeric ({err})") from None
    if Z.ndim == 1:
        Z = Z[:, None]
    if Z.shape[0] != k:
        raise DataError(f"scale design matrix has {Z.shape[0]} rows for {k} effects")
    names = [f"z{j}" for j in range(Z.shape[1])] if scale_names is None else [str(c) for c in scale_names]
    if len(names) != Z.shape[1]:
        raise SpecError(f"{len(names)} names for {Z.shape[1]} scale columns", key="scale")
    bad = np.argwhere(~np.isfinite(Z))
    if bad.size:
        raise DataError("missing or non-finite scale moderator value", row=int(bad[0, 0]) + 1,
                        column=names[bad[0, 1]])
    if np.linalg.matrix_rank(Z) < Z.shape[1]:
        raise DataError("scale design matrix is rank deficient (a scale moderator is constant or collinear)")
    return Z, names


def build_location_scale(yi, vi, *, Z, scale_names=None, X=None, coef_names=None, study=None,
                         priors: dict | None = None) -> LocationScaleModel:
    """Build the Bayesian location-scale model ``y_i ~ N(x_i' beta, v_i + exp(2 z_i' alpha))`` (not sampled).

    Parameters
    ----------
    yi, vi : array_like
    Z : array_like
        Scale design (k x q) including its intercept column (``scale_names[0] == "intercept"``).
    scale_names : list of str, optional
        Names of the columns of ``Z`` (coordinate ``scale_coef``; priors ``alpha[NAME]``).
    X, coef_names, study :
        As :func:`bayes_se.builders.random_effects.build_random_effects`.
    priors : dict, optional
        ``mu``, ``beta``, ``beta[NAME]`` (location) and ``alpha``, ``alpha[NAME]`` (scale; see
        :func:`scale_priors`): Prior objects.

    Returns
    -------
    LocationScaleModel
    """
    yi, vi, study = check_inputs(yi, vi, study)
    X, coef_names = check_design(X, coef_names, yi.size)
    Z, scale_names = check_scale_design(Z, scale_names, yi.size)
    priors = dict(priors or {})
    alpha_priors = scale_priors(priors, scale_names)
    mu_prior = resolve_prior(priors, "mu")
    coords = {"study": study, "scale_coef": scale_names}
    if X is not None:
        coords["coef"] = coef_names
    from bayes_se.priors import coefficient_vector_rv

    with pm.Model(coords=coords) as model:
        yi_data, vi_data, loc = data_and_location(yi, vi, X, coef_names, priors, mu_prior)
        alpha = coefficient_vector_rv(alpha_priors, "alpha", dims="scale_coef")
        Zd = pm.Data("Z", Z, dims=("study", "scale_coef"))
        tau = pm.Deterministic("tau", pt.exp(pt.dot(Zd, alpha)), dims="study")
        pm.Normal("y", mu=loc, sigma=pt.sqrt(vi_data + pt.square(tau)), observed=yi_data, dims="study")
    settings = {
        "model": "location_scale",
        "effects": "normal",
        "k": int(yi.size),
        "coef": coef_names,
        "scale_coef": scale_names,
        "priors": {"location": prior_text(mu_prior if X is None else resolve_prior(priors, "beta")),
                   **{f"alpha[{n}]": prior_text(p) for n, p in zip(scale_names, alpha_priors)}},
    }
    return LocationScaleModel(model=model, kind="location_scale", yi=yi, vi=vi, X=X, coef_names=coef_names,
                              study=study, settings=settings, Z=Z, scale_names=scale_names)
