"""Priors into PyMC: heterogeneity SDs (a prior on tau or on tau2) and coefficient vectors."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from bayes_se.errors import SpecError
from bayes_se.priors.distribution import Prior, refuse_flat_in_mcmc

# ---------------------------------------------------------------------------------------------
# PyMC bridge for heterogeneity
# ---------------------------------------------------------------------------------------------
def heterogeneity_rv(prior: Prior, name: str = "tau", **dims):
    """Create a heterogeneity SD in the current PyMC model and return the tau tensor.

    * prior on tau (half-families, exponential, uniform): free RV ``name``, and
      ``{name}2 = name**2`` as a Deterministic;
    * inverse_gamma on tau2: free RV ``{name}2``, ``name = sqrt({name}2)`` Deterministic;
    * log_normal / log_t: free RV ``log_{name}2`` (normal / t), ``{name}2 = exp(.)`` and
      ``name = exp(log_{name}2 / 2)`` Deterministics.

    Parameters
    ----------
    prior : Prior
        A positive-family or variance-family prior.
    name : str
        ``"tau"``, ``"sigma_cluster"``, ...
    **dims
        Passed to PyMC (e.g. ``dims="subgroup"`` for one tau per level).

    Returns
    -------
    pytensor.tensor.TensorVariable
        tau.
    """
    refuse_flat_in_mcmc(prior)
    import pymc as pm

    kind = prior.kind
    d = dims.get("dims")
    if kind == "real":
        raise SpecError(f"'{prior}' cannot be a heterogeneity prior: use a prior for a positive "
                        "quantity (half_normal, ...) or for the variance (inverse_gamma, ...)", key=name)
    p = prior.float64_params()
    if kind == "positive":
        tau = prior.to_pymc(name, **dims)
        pm.Deterministic(f"{name}2", tau**2, dims=d)
        return tau
    if prior.family == "inverse_gamma":
        tau2 = prior.to_pymc(f"{name}2", **dims)
        return pm.Deterministic(name, pm.math.sqrt(tau2), dims=d)
    if prior.family == "log_normal":
        log_tau2 = pm.Normal(f"log_{name}2", mu=p["mu"], sigma=p["sigma"], **dims)
    else:
        log_tau2 = pm.StudentT(f"log_{name}2", nu=p["nu"], mu=p["mu"], sigma=p["sigma"], **dims)
    pm.Deterministic(f"{name}2", pm.math.exp(log_tau2), dims=d)
    return pm.Deterministic(name, pm.math.exp(0.5 * log_tau2), dims=d)


def coefficient_vector_rv(priors: Sequence[Prior], name: str = "beta", **dims):
    """Create a vector of coefficients with one prior per element in the current PyMC model.

    All-normal (or all-Student-t) priors become one vectorised RV ``name``; a mix of families
    becomes one RV per element (``name_0``, ``name_1``, ...) stacked into the Deterministic
    ``name``, so the posterior always carries ``name`` with the given dims.
    """
    for prior in priors:
        refuse_flat_in_mcmc(prior)
    import pymc as pm
    import pytensor.tensor as pt

    families = {p.family for p in priors}
    if families <= {"normal"} or families <= {"student_t"}:
        params = {k: np.array([p.float64_params()[k] for p in priors], dtype=float) for k in priors[0].params}
        dist = pm.Normal if priors[0].family == "normal" else pm.StudentT
        return dist(name, **params, **dims)
    parts = [p.to_pymc(f"{name}_{j}") for j, p in enumerate(priors)]
    return pm.Deterministic(name, pt.stack(parts), **dims)
