"""Bayesian random-effects MASEM: pooled correlation matrix with between-study covariance.

Model, for study ``i`` with observed pairs ``o_i``::

    r_i[o_i] ~ N(rho[o_i], (S_i(rho) + T)[o_i, o_i]),   S_i(rho) = Psi(rho) / (n_i - 1),
    T = diag(tau) Omega diag(tau),   Omega ~ LKJ(eta),   tau_j ~ prior (half-normal by default),
    R(rho) ~ LKJ(eta_rho)  (uniform over correlation matrices when eta_rho = 1).

This is the normal-normal model ``r_i = rho_i + e_i``, ``rho_i = rho + u_i``, ``u_i ~ N(0, T)`` with
the study deviations ``u_i`` integrated out, and the unreported correlations of each study
marginalised by selecting the observed sub-vector (never imputed).

Choices:

* ``Psi`` is the Olkin-Siotani covariance evaluated **at the pooled rho, inside the model**. A study's
  own correlations are noisy and correlated with their own weights (Becker & Fahrbach 1994), and a
  study missing a correlation has no own value for the covariances that need it; at the pooled rho
  every study contributes all the pairs it reports (metafor's ``rcalc`` instead drops such studies).
* The pooled matrix and the heterogeneity correlation matrix ``Omega`` are kept valid (positive
  definite) by construction: each is built from independent canonical partial correlations with
  the Beta priors that make it exactly LKJ(eta) (:func:`lkj_corr_cpc`), so NUTS never leaves the
  set of valid matrices, and ``tau`` is a separate coordinate (no funnel as tau approaches 0).
* Nothing else is latent, so there is nothing to put in non-centred form.

References
----------
Becker, B. J. & Fahrbach, K. (1994). A comparison of approaches to the synthesis of correlation
matrices. AERA annual meeting. Cheung, M. W.-L. (2015). Meta-Analysis: A Structural Equation
Modeling Approach, ch. 7 (random-effects TSSEM).
Lewandowski, D., Kurowicka, D. & Joe, H. (2009). Generating random correlation matrices based on
vines and extended onion method. J. Multivariate Analysis 100, 1989-2001.
Olkin, I. & Siotani, M. (1976); Olkin, I. & Finn, J. D. (1995). Psychological Bulletin 118, 155-164.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayes_se import defaults
from bayes_se.builders.masem_likelihood import LIKELIHOODS, add_pattern_likelihood, shared_values, transformed
from bayes_se.correlations import CorrelationData, olkin_siotani
from bayes_se.errors import SpecError
from bayes_se.path_algebra import vec_to_matrix
from bayes_se.priors import Prior, parse_prior

__all__ = ["MasemModel", "build_masem", "DEFAULT_PRIORS", "marginal_loglik", "add_likelihood", "LIKELIHOODS",
           "check_likelihood"]

#: Default priors: tau of each pair's heterogeneity on the correlation scale (a between-study SD of
#: 0.2 in a correlation is large), LKJ shapes of the heterogeneity correlations (eta = 2 mildly
#: favours weak correlation) and of the pooled matrix (eta_rho = 1: uniform).
DEFAULT_PRIORS = dict(defaults.MEDIATION_PRIORS)  # tau of the study deviations, LKJ shapes eta and eta_rho
PRIOR_KEYS = tuple(DEFAULT_PRIORS)


#: How NUTS compiles the MASEM density: PyTensor's Numba backend (:meth:`MasemModel.nuts_kwargs`).
COMPILE_KWARGS = {"mode": "NUMBA"}


@dataclass
class MasemModel:
    """A built MASEM (PyMC model plus what post-processing needs)."""

    model: object
    data: CorrelationData
    priors: dict
    likelihood: str = "pooled"

    def postprocess(self, idata, seed: int):
        """Called by :func:`bayes_se.sampling.sample` after NUTS: the per-study marginal
        log-likelihood and the observed correlations (:func:`add_likelihood`). Nothing is drawn,
        so ``seed`` is unused; the path effects are :func:`bayes_se.mediation.add_derived`'s."""
        return add_likelihood(idata, self.data, self.likelihood)

    def set_data(self):
        """Put this build's data into the model, which may be shared with a later build (the
        cache): called before sampling."""
        import pymc as pm

        pm.set_data(shared_values(self.data, self.likelihood), model=self.model)

    def nuts_kwargs(self, target_accept: float, chains: int, seed: int) -> dict:
        """Extra ``pymc.sample`` arguments (called by :func:`bayes_se.sampling.sample`): compile the
        density with PyTensor's Numba backend (the likelihood kernel is registered with it)."""
        return {"compile_kwargs": dict(COMPILE_KWARGS)}


def _priors(priors) -> dict:
    out = dict(DEFAULT_PRIORS)
    for key, value in (priors or {}).items():
        if key not in PRIOR_KEYS:
            raise SpecError(f"unknown prior {key!r}; MASEM priors are {list(PRIOR_KEYS)}", key=f"priors.{key}")
        out[key] = value
    tau = out["tau"] if isinstance(out["tau"], Prior) else parse_prior(str(out["tau"]))
    if tau.kind != "positive":
        raise SpecError(f"'{tau}' must be a prior for a positive quantity (half_normal, ...)", key="priors.tau")
    out["tau"] = tau
    for key in ("eta", "eta_rho"):
        try:
            value = float(out[key])
        except (TypeError, ValueError):
            raise SpecError(f"must be a number, got {out[key]!r}", key=f"priors.{key}") from None
        if not value > 0:
            raise SpecError(f"the LKJ shape must be > 0, got {value}", key=f"priors.{key}")
        out[key] = value
    return out


#: Built PyMC models by (variables, likelihood, priors): a later build of the same graph swaps its
#: data in (``pm.set_data``), so that what was compiled for it is reused.
_MODEL_CACHE: dict = {}


def build_masem(data: CorrelationData, *, priors=None, likelihood: str = "pooled",
                symbolic: bool = False) -> MasemModel:
    """Build the Bayesian random-effects MASEM of the module docstring.

    Parameters
    ----------
    data : CorrelationData
    priors : dict, optional
        ``tau`` (a positive-family prior text or :class:`Prior`, shared by every pair), ``eta``
        (LKJ shape of Omega), ``eta_rho`` (LKJ shape of the pooled matrix).
    likelihood : {"pooled", "own", "fisher_z"}
        Sampling covariance at the pooled matrix (default), at each study's own matrix, or the
        Fisher-z likelihood with ``tau`` on the z scale (:mod:`bayes_se.builders.masem_likelihood`).
    symbolic : bool
        The likelihood as a PyTensor graph instead of the compiled kernel (tests only).

    Returns
    -------
    MasemModel
        Posterior variables ``rho`` (pair), ``tau`` (pair), ``Omega`` (pair, pair2) and the
        auxiliaries ``rho_chol``/``T_chol``.

    References
    ----------
    Cheung (2015), ch. 7; Lewandowski, Kurowicka & Joe (2009).
    """
    import pymc as pm
    import pytensor.tensor as pt

    pri = _priors(priors)
    check_likelihood(likelihood)
    p, q = data.p, len(data.pairs)
    labels = data.pair_labels
    coords = {"pair": labels, "pair2": labels}
    lower = np.array([i * p + j for i, j in data.pairs])
    key = None if symbolic else (tuple(labels), likelihood, tuple(sorted((k, str(v)) for k, v in pri.items())))
    model = _MODEL_CACHE.get(key)
    if model is not None:
        built = MasemModel(model=model, data=data, priors=pri, likelihood=likelihood)
        built.set_data()
        return built
    with pm.Model(coords=coords) as model:
        R, _ = lkj_corr_cpc("rho", p, pri["eta_rho"])
        rho = pm.Deterministic("rho", R.reshape((p * p,)).dot(np.eye(p * p)[lower].T), dims="pair")
        tau = pri["tau"].to_pymc("tau", dims="pair")
        if q == 1:
            T = pt.diag(tau**2)
        else:
            Omega, _ = lkj_corr_cpc("Omega", q, pri["eta"])
            pm.Deterministic("Omega", Omega, dims=("pair", "pair2"))
            T = tau[:, None] * Omega * tau[None, :]
        # the kernel rebuilds R and T from the free coordinates: (cpc of R, tau, cpc of Omega)
        parts = [2.0 * model["rho_cpc"] - 1.0, tau] + ([2.0 * model["Omega_cpc"] - 1.0] if q > 1 else [])
        add_pattern_likelihood(data, R, rho, T, likelihood, symbolic=symbolic, theta=pt.concatenate(parts))
    if key is not None:
        _MODEL_CACHE[key] = model
    return MasemModel(model=model, data=data, priors=pri, likelihood=likelihood)


def check_likelihood(likelihood: str) -> str:
    """``likelihood`` if it is one of :data:`LIKELIHOODS`, else a SpecError (key ``mediation.likelihood``)."""
    if likelihood not in LIKELIHOODS:
        raise SpecError(f"likelihood must be one of {list(LIKELIHOODS)}, got {likelihood!r}",
                        key="mediation.likelihood")
    return likelihood


def lkj_corr_cpc(name: str, p: int, eta: float):
    """A p x p correlation matrix with an LKJ(eta) prior, built from canonical partial correlations.

    The C-vine partial correlation of variables ``(j, i)`` given ``0..j-1`` is drawn as
    ``z = 2 B - 1``, ``B ~ Beta(b_j, b_j)``, ``b_j = eta + (p - 2 - j) / 2``; these are independent
    under LKJ(eta) (Lewandowski, Kurowicka & Joe 2009, section 3.2), so the prior on the matrix is
    exactly LKJ(eta). The Cholesky factor follows from them (the map Stan uses):
    ``L[i, j] = z[i, j] sqrt(1 - sum_{m<j} L[i, m]^2)``, ``L[i, i] = sqrt(1 - sum_{m<i} L[i, m]^2)``.

    Hand-written because PyMC's ``LKJCholeskyCov`` parametrises the *covariance* Cholesky factor:
    as a pooled correlation matrix (with auxiliary scales the likelihood never sees) or as the
    between-study covariance (whose scales can approach 0) it bends the posterior into ridges and
    funnels that NUTS crosses only with tiny steps. Here every coordinate is a free partial
    correlation, independent of any scale.

    Parameters
    ----------
    name : str
        The free variable is ``{name}_cpc`` (the Beta draws, one per pair).
    p : int
    eta : float

    Returns
    -------
    (R, L) : pytensor tensors, the correlation matrix and its Cholesky factor.
    """
    import pymc as pm
    import pytensor.tensor as pt

    pairs = [(i, j) for i in range(1, p) for j in range(i)]
    shape = np.array([eta + (p - 2 - j) / 2.0 for _, j in pairs])
    z = 2.0 * pm.Beta(f"{name}_cpc", alpha=shape, beta=shape, shape=len(pairs)) - 1.0
    index = {pair: n for n, pair in enumerate(pairs)}
    rows = [[pt.constant(1.0)] + [pt.constant(0.0)] * (p - 1)]
    for i in range(1, p):
        row, acc = [], pt.constant(0.0)
        for j in range(i):
            value = z[index[(i, j)]] * pt.sqrt(1.0 - acc) if j else z[index[(i, j)]]
            row.append(value)
            acc = acc + value**2
        row.append(pt.sqrt(1.0 - acc))
        rows.append(row + [pt.constant(0.0)] * (p - 1 - i))
    L = pt.stack([pt.stack(r) for r in rows])
    return L @ L.T, L


def marginal_loglik(data: CorrelationData, rho, T, likelihood: str = "pooled") -> np.ndarray:
    """Per-study log density of the observed correlations with the study effects integrated out.

    The reference (NumPy, one Cholesky per study) of the model's closed-form likelihood
    (:mod:`bayes_se.builders.masem_likelihood`): ``y_i[o] ~ N(mu[o], P_i[o, o] / (n_i - 1) + T[o, o])``
    with ``(y, mu, P_i)`` = ``(r, rho, Psi(R))`` ("pooled"), ``(r, rho, Psi(R_i))`` with the study's
    own matrix, unreported entries pooled ("own"), or ``(atanh r, atanh rho, D Psi(R) D)``,
    ``D = diag(1 / (1 - rho^2))`` ("fisher_z").

    Parameters
    ----------
    data : CorrelationData
    rho : array, shape (..., q)
    T : array, shape (..., q, q)
    likelihood : {"pooled", "own", "fisher_z"}

    Returns
    -------
    numpy.ndarray, shape (..., k)
    """
    check_likelihood(likelihood)
    rho, T = np.asarray(rho, float), np.asarray(T, float)
    R = vec_to_matrix(rho, data.p)
    Psi = olkin_siotani(R)
    if likelihood == "fisher_z":
        dz = 1.0 / (1.0 - rho**2)
        Psi = Psi * dz[..., :, None] * dz[..., None, :]
    mu = transformed(rho, likelihood)
    out = np.empty(rho.shape[:-1] + (data.k,))
    for i in range(data.k):
        obs = np.flatnonzero(data.observed[i])
        P = Psi
        if likelihood == "own":
            own = np.where(data.observed[i], data.r[i], np.nan)
            filled = np.where(np.isnan(own), rho, own)
            P = olkin_siotani(vec_to_matrix(filled, data.p))
        cov = P[..., obs[:, None], obs[None, :]] / (data.n[i] - 1.0) + T[..., obs[:, None], obs[None, :]]
        L = np.linalg.cholesky(cov)
        resid = transformed(data.r[i, obs], likelihood) - mu[..., obs]
        z = np.linalg.solve(L, resid[..., None])[..., 0]
        logdet = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)
        out[..., i] = -0.5 * (len(obs) * np.log(2 * np.pi) + logdet + (z**2).sum(-1))
    return out


def add_likelihood(idata, data: CorrelationData, likelihood: str = "pooled"):
    """Add ``log_likelihood["r"]`` (chain, draw, study; :func:`marginal_loglik` at each draw's rho
    and ``T = diag(tau) Omega diag(tau)``) and ``observed_data`` ``r`` (study, pair; NaN where
    unreported) and ``n`` to ``idata`` in place, replacing PyMC's groups of the stacked vector.

    Returns
    -------
    arviz.InferenceData
        The same object.
    """
    import xarray as xr

    post = idata.posterior
    rho = np.asarray(post["rho"])
    tau = np.asarray(post["tau"])
    Omega = np.asarray(post["Omega"]) if "Omega" in post else np.ones(rho.shape[:-1] + (1, 1))
    T = tau[..., :, None] * Omega * tau[..., None, :]
    cd = {"chain": post["chain"].values, "draw": post["draw"].values}
    ll = marginal_loglik(data, rho, T, likelihood)
    study = list(data.study)
    log_lik = xr.Dataset({"r": xr.DataArray(ll, dims=("chain", "draw", "study"), coords={**cd, "study": study})})
    obs = xr.Dataset({"r": xr.DataArray(data.r, dims=("study", "pair"),
                                        coords={"study": study, "pair": data.pair_labels}),
                      "n": xr.DataArray(data.n, dims=("study",), coords={"study": study})})
    if "constant_data" in idata.groups():  # the per-pattern containers of the built model
        delattr(idata, "constant_data")
    for group, ds in (("log_likelihood", log_lik), ("observed_data", obs)):
        if group in idata.groups():
            delattr(idata, group)
        idata.add_groups({group: ds})
    return idata
