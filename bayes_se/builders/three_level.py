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

The built model (:class:`ThreeLevelModel`) draws the cluster and effect-level deviations exactly
after sampling (:meth:`ThreeLevelModel.exact_draws`, called by its ``postprocess``).

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
    STUDY_DIMS,
    MetaModel,
    check_design,
    check_inputs,
    data_and_location,
    normal_conditional,
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


class ThreeLevelModel(MetaModel):
    """A built three-level model: a :class:`MetaModel` (``kind="three_level"``) whose clusters are
    ``group_index`` / ``group_labels`` and whose post-processing draws the nested effects."""

    def exact_draws(self, posterior, rng: np.random.Generator) -> tuple[dict, np.ndarray, np.ndarray]:
        """Cluster and effect-level deviations drawn exactly given each posterior draw.

        * ``u_j | y ~ N(s2c a_j / (1 + s2c S_j), s2c / (1 + s2c S_j))`` with ``d_i = v_i + s2e``,
          ``S_j = sum_i 1/d_i``, ``a_j = sum_i r_i/d_i`` (w and e integrated out);
        * ``w_ij | u_j, y``: the normal-normal conditional with prior variance s2e and data variance
          v_i; ``theta_ij = x_ij' beta + u_j + w_ij``;
        * the per-cluster marginal log-likelihood (:func:`cluster_logp`), replicates
          ``y_rep = m + u + w + e`` drawn from the marginal model, and a new effect in a new cluster
          ``pred = x0' beta + sigma_cluster z1 + sigma_effect z2``.

        Returns
        -------
        (dict, xarray.DataArray, numpy.ndarray)
            As :meth:`MetaModel.exact_draws`; the log-likelihood has dims (chain, draw, cluster).

        References
        ----------
        Konstantopoulos (2011), Res Synth Methods 2:61-76.
        """
        import xarray as xr

        post = posterior
        loc = self.location(post)
        shape = loc.shape  # (chain, draw, k)
        coords = {"chain": post["chain"].values, "draw": post["draw"].values, "study": self.study}
        cd = {k: coords[k] for k in ("chain", "draw")}
        s2c = np.asarray(post["sigma_cluster"]) ** 2
        s2e = np.asarray(post["sigma_effect"]) ** 2
        ind = (self.group_index[None, :] == np.arange(len(self.group_labels))[:, None]).astype(float)
        resid = self.yi - loc
        # u_j | y: precision 1/s2c + sum_i 1/d_i, d_i = v_i + s2e (w and e integrated out);
        # multiplying through by s2c keeps it finite as s2c -> 0.
        d = self.vi + s2e[..., None]
        s_j = (1.0 / d) @ ind.T
        a_j = (resid / d) @ ind.T
        denom = 1.0 + s2c[..., None] * s_j
        u_mean = s2c[..., None] * a_j / denom
        u_var = s2c[..., None] / denom
        u = u_mean + np.sqrt(u_var) * rng.standard_normal(u_mean.shape)
        # w_ij | u_j, y: normal-normal with prior variance s2e and data variance v_i
        w_mean, w_var = normal_conditional(resid - u[..., self.group_index], self.vi, 0.0, s2e[..., None])
        w = w_mean + np.sqrt(w_var) * rng.standard_normal(shape)
        theta = loc + u[..., self.group_index] + w
        new = {"u_cluster": xr.DataArray(u, dims=("chain", "draw", "cluster"),
                                         coords={**cd, "cluster": self.group_labels}),
               "w_effect": xr.DataArray(w, dims=STUDY_DIMS, coords=coords),
               "theta": xr.DataArray(theta, dims=STUDY_DIMS, coords=coords)}
        loglik = cluster_logp(resid, self.vi, s2c, s2e, ind)
        ll = xr.DataArray(loglik, dims=("chain", "draw", "cluster"), coords={**cd, "cluster": self.group_labels})
        y_rep = (loc + np.sqrt(s2c)[..., None] * rng.standard_normal(u.shape)[..., self.group_index]
                 + np.sqrt(s2e)[..., None] * rng.standard_normal(shape)
                 + np.sqrt(self.vi) * rng.standard_normal(shape))
        z = rng.standard_normal((2,) + shape[:2])
        new["pred"] = xr.DataArray(self.reference_location(post) + np.sqrt(s2c) * z[0] + np.sqrt(s2e) * z[1],
                                   dims=("chain", "draw"), coords=cd)
        return new, ll, y_rep


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
) -> ThreeLevelModel:
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
    ThreeLevelModel
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
        yi_data, vi_data, loc = data_and_location(yi, vi, X, coef_names, priors, loc_prior)
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
    return ThreeLevelModel(
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
