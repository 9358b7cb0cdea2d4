"""PyMC builder for the three-level model: effects nested in clusters.

    y_ij = x_ij' beta + u_j + w_ij + e_ij,  u_j ~ N(0, sigma_cluster^2),
    w_ij ~ N(0, sigma_effect^2),  e_ij ~ N(0, v_ij),

with u and w integrated out: y_j ~ MVN(X_j beta, V_j), V_j = D_j + sigma_cluster^2 11',
D_j = diag(v_ij + sigma_effect^2). ``V_j`` is a rank-one update of a diagonal matrix, so its inverse
(Sherman-Morrison) and log-determinant (matrix determinant lemma) are closed forms in cluster sums:

    log|V_j| = sum_i log d_i + log(1 + sigma_cluster^2 S_j),   S_j = sum_i 1/d_i,
    r' V_j^-1 r = sum_i r_i^2/d_i - sigma_cluster^2 (sum_i r_i/d_i)^2 / (1 + sigma_cluster^2 S_j).

The sums are taken with a constant cluster-indicator matrix, vectorised over all clusters at once,
and enter the model as a ``pm.Potential`` (no per-cluster loop, any cluster sizes).

References
----------
Konstantopoulos, S. (2011). Fixed effects and variance components estimation in three-level
meta-analysis. Research Synthesis Methods 2, 61-76.
Cheung, M. W.-L. (2014). Modeling dependent effect sizes with three-level meta-analyses.
Psychological Methods 19, 211-229.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayes_se.builders.random_effects import (
    MetaModel,
    coefficient_rv,
    check_design,
    check_inputs,
    make_rv,
    prior_text,
    resolve_prior,
    scale_rv,
)
from bayes_se.errors import DataError

LOG_2PI = np.log(2.0 * np.pi)


def cluster_logp(resid, vi, sigma2_cluster, sigma2_effect, indicator):
    """Marginal log density of each cluster's effects (NumPy; broadcasts over leading axes).

    Parameters
    ----------
    resid : numpy.ndarray
        ``y - X beta``, shape (..., n).
    vi : numpy.ndarray
        Sampling variances, shape (n,).
    sigma2_cluster, sigma2_effect : numpy.ndarray
        Variance components, shape (...) (scalars broadcast).
    indicator : numpy.ndarray
        Cluster-indicator matrix, shape (J, n).

    Returns
    -------
    numpy.ndarray
        Shape (..., J): ``log MVN(resid_j; 0, V_j)`` per cluster.
    """
    s2c = np.asarray(sigma2_cluster, dtype=float)[..., None]
    d = vi + np.asarray(sigma2_effect, dtype=float)[..., None]
    n_j = indicator.sum(axis=1)
    s_j = (1.0 / d) @ indicator.T
    a_j = (resid / d) @ indicator.T
    q_j = (resid**2 / d) @ indicator.T
    logdet = np.log(d) @ indicator.T + np.log1p(s2c * s_j)
    quad = q_j - s2c * a_j**2 / (1.0 + s2c * s_j)
    return -0.5 * (n_j * LOG_2PI + logdet + quad)


def _cluster_logp_tensor(resid, vi, sigma2_cluster, sigma2_effect, indicator):
    """The same closed form as :func:`cluster_logp` for PyTensor tensors (scalar variances)."""
    d = vi + sigma2_effect
    ind_t = indicator.T
    n_j = indicator.sum(axis=1)
    s_j = pt.dot(1.0 / d, ind_t)
    a_j = pt.dot(resid / d, ind_t)
    q_j = pt.dot(pt.square(resid) / d, ind_t)
    logdet = pt.dot(pt.log(d), ind_t) + pt.log1p(sigma2_cluster * s_j)
    quad = q_j - sigma2_cluster * pt.square(a_j) / (1.0 + sigma2_cluster * s_j)
    return -0.5 * (n_j * LOG_2PI + logdet + quad)


def build_three_level(
    yi,
    vi,
    cluster,
    *,
    X=None,
    coef_names=None,
    study=None,
    priors: dict | None = None,
) -> MetaModel:
    """Build the Bayesian three-level model (effects within clusters), not sampled.

    Model: ``y_j ~ MVN(X_j beta, diag(v_ij + sigma_effect^2) + sigma_cluster^2 11')`` per cluster j.

    Parameters
    ----------
    yi, vi : array_like
        Observed effects and their sampling variances.
    cluster : sequence
        Cluster label of each effect (e.g. district).
    X, coef_names, study
        As in :func:`bayes_se.builders.random_effects.build_random_effects`.
    priors : dict, optional
        Keys ``mu``/``beta`` (location) and ``sigma_cluster``, ``sigma_effect`` (each falls back to
        the ``tau`` prior): Prior objects with ``to_pymc`` or callables ``f(name, **dims)``.

    Returns
    -------
    MetaModel
        ``kind="three_level"``; its log-likelihood is per cluster.

    References
    ----------
    Konstantopoulos (2011), Res Synth Methods 2:61-76; Cheung (2014), Psychol Methods 19:211-229.
    """
    yi, vi, study = check_inputs(yi, vi, study)
    X, coef_names = check_design(X, coef_names, yi.size)
    if cluster is None or len(cluster) != yi.size:
        raise DataError(f"need one cluster label per effect ({yi.size})", column="cluster")
    labels = [str(c) for c in cluster]
    if any(c in ("", "nan", "None") for c in labels):
        row = next(i for i, c in enumerate(labels) if c in ("", "nan", "None")) + 1
        raise DataError("missing cluster label", row=row, column="cluster")
    group_labels = list(dict.fromkeys(labels))  # order of first appearance
    group_index = np.array([group_labels.index(c) for c in labels])
    indicator = (group_index[None, :] == np.arange(len(group_labels))[:, None]).astype(float)

    priors = dict(priors or {})
    tau_prior = resolve_prior(priors, "tau")
    sc_prior = priors.get("sigma_cluster") or tau_prior
    se_prior = priors.get("sigma_effect") or tau_prior
    loc_prior = resolve_prior(priors, "mu" if X is None else "beta")
    coords = {"study": study, "cluster": group_labels}
    if X is not None:
        coords["coef"] = coef_names
    with pm.Model(coords=coords) as model:
        # shared data, not constants: see bayes_se.builders.random_effects (PyTensor's module keys)
        yi_data = pm.Data("yi", yi, dims="study")
        vi_data = pm.Data("vi", vi, dims="study")
        if X is None:
            loc = make_rv(loc_prior, "mu")
        else:
            loc = pt.dot(pm.Data("X", X, dims=("study", "coef")), coefficient_rv(priors, coef_names))
        sigma_cluster = scale_rv(sc_prior, "sigma_cluster")
        sigma_effect = scale_rv(se_prior, "sigma_effect")
        logp = _cluster_logp_tensor(
            yi_data - loc, vi_data, pt.square(sigma_cluster), pt.square(sigma_effect), indicator
        )
        pm.Potential("y", logp.sum())

    settings = {
        "model": "three_level",
        "k": int(yi.size),
        "clusters": len(group_labels),
        "coef": coef_names,
        "priors": {"location": prior_text(loc_prior), "sigma_cluster": prior_text(sc_prior),
                   "sigma_effect": prior_text(se_prior)},
    }
    return MetaModel(
        model=model,
        kind="three_level",
        yi=yi,
        vi=vi,
        X=X,
        coef_names=coef_names,
        study=study,
        group_index=group_index,
        group_labels=group_labels,
        settings=settings,
    )
