"""Bayesian random-effects model of reported mediation paths (a, b, c') across trials.

Model, for trial ``i`` with observed paths ``o_i`` among ``(a, b, c')``::

    est_i[o_i] ~ N(theta_i[o_i], S_i[o_i, o_i])              (reported estimates, sampling covariance)
    theta_i = (a_i, b_i, c'_i) ~ N(mu, T),   mu = (a, b, c')
    T = blockdiag([[tau_a^2, rho_ab tau_a tau_b], [rho_ab tau_a tau_b, tau_b^2]], tau_c^2)
    a, b, c' ~ normal(0, 1);  tau_a, tau_b, tau_c ~ half_normal(0.2);  (rho_ab + 1) / 2 ~ Beta(eta, eta)

The trial effects are integrated out analytically, ``est_i[o_i] ~ N(mu[o_i], (S_i + T)[o_i, o_i])``,
and unreported paths are marginalised by taking the observed sub-vector. The density of all
trials is one compiled Op (:mod:`bayes_se.builders.mediation_paths_kernel`: Numba, value and
exact gradient in ``mu`` and ``T`` in one call; PyTensor only builds ``mu`` and ``T``); the model
holds no k x k matrix and no factorisation. The NumPy reference :func:`marginal_loglik` writes
the same density in closed form per pattern of observed paths. ``(rho_ab + 1) / 2 ~ Beta(eta, eta)`` is exactly
the LKJ(eta) prior of a 2 x 2 correlation matrix. When no trial reports ``c'``, ``c'`` and
``tau_c`` are left out of the model.

After sampling, :meth:`PathMediationModel.postprocess` adds the derived effects (``indirect = a b``,
``indirect_avg = E[a_i b_i] = a b + rho_ab tau_a tau_b``, a new trial's ``a_new b_new``,
``total = c' + a b``, ``prop_mediated``), each trial's ``theta_i`` drawn exactly from its Gaussian
conditional given the hyperparameters and its estimates, the per-trial log-likelihood (trial
effects integrated out), replicated estimates and the prior predictive.

References
----------
Bauer, D. J., Preacher, K. J. & Gil, K. M. (2006). Conceptualizing and testing random indirect
effects and moderated mediation in multilevel models. Psychological Methods 11, 142-163.
Lewandowski, D., Kurowicka, D. & Joe, H. (2009). Generating random correlation matrices based on
vines and extended onion method. J. Multivariate Analysis 100, 1989-2001.
Wilson, J. T. et al. (2020). Efficiently sampling functions from Gaussian process posteriors
(pathwise conditioning, "Matheron's rule"). ICML.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayes_se import defaults
from bayes_se.errors import SpecError
from bayes_se.reported_paths import PATH_NAMES, PathEstimates

__all__ = ["PathMediationModel", "build_mediation_paths", "resolve_path_priors", "pattern_logpdf", "marginal_loglik",
           "EFFECT_NAMES", "HYPER_NAMES"]

#: Derived effects, in summary order.
EFFECT_NAMES = ("a", "b", "c_prime", "indirect", "indirect_avg", "indirect_new", "total", "prop_mediated")
#: Hyperparameters after the effects, in summary order.
HYPER_NAMES = ("tau_a", "tau_b", "tau_c", "rho_ab")
_LOG_2PI = float(np.log(2.0 * np.pi))


def resolve_path_priors(priors=None) -> dict:
    """Priors of the path model: :data:`bayes_se.defaults.PATH_MEDIATION_PRIORS` overridden by
    ``priors`` (Prior objects or prior strings by ``a``, ``b``, ``c_prime``, ``tau_a``, ``tau_b``,
    ``tau_c``; ``eta`` a number > 0).

    Raises
    ------
    SpecError
        An unknown key, a prior that does not suit its parameter, a bad eta (key ``priors.KEY``).
    """
    from bayes_se.spec import path_prior

    out = dict(defaults.PATH_MEDIATION_PRIORS)
    for key, value in (priors or {}).items():
        if key not in out:
            path_prior(key, value)  # raises, naming the known keys
        if value is not None:
            out[key] = value
    try:
        eta = float(out["eta"])
    except (TypeError, ValueError):
        raise SpecError(f"must be a number, got {out['eta']!r}", key="priors.eta") from None
    if not (np.isfinite(eta) and eta > 0):
        raise SpecError(f"the LKJ shape must be > 0, got {out['eta']!r}", key="priors.eta")
    resolved = {key: path_prior(key, value) for key, value in out.items() if key != "eta"}
    resolved["eta"] = eta
    return resolved


def pattern_logpdf(resid, V, log=np.log):
    """Gaussian log density of residuals with covariance ``V`` in closed form, for d = 1, 2, 3.

    ``resid`` is a list of d arrays (one per coordinate, broadcast over trials and draws), ``V`` a
    function ``V(i, j)`` giving the covariance entries (``i <= j``). The determinant and the
    quadratic form come from cofactors, elementwise, so the same code runs on NumPy arrays and
    PyTensor tensors (pass ``log=pytensor.tensor.log``).
    """
    d = len(resid)
    if d == 1:
        v = V(0, 0)
        return -0.5 * (_LOG_2PI + log(v) + resid[0] ** 2 / v)
    if d == 2:
        v00, v01, v11 = V(0, 0), V(0, 1), V(1, 1)
        det = v00 * v11 - v01**2
        quad = (v11 * resid[0] ** 2 - 2.0 * v01 * resid[0] * resid[1] + v00 * resid[1] ** 2) / det
        return -0.5 * (2.0 * _LOG_2PI + log(det) + quad)
    if d == 3:
        v00, v01, v02, v11, v12, v22 = V(0, 0), V(0, 1), V(0, 2), V(1, 1), V(1, 2), V(2, 2)
        c00, c11, c22 = v11 * v22 - v12**2, v00 * v22 - v02**2, v00 * v11 - v01**2
        c01, c02, c12 = v02 * v12 - v01 * v22, v01 * v12 - v11 * v02, v01 * v02 - v00 * v12
        det = v00 * c00 + v01 * c01 + v02 * c02
        r0, r1, r2 = resid
        quad = (c00 * r0**2 + c11 * r1**2 + c22 * r2**2
                + 2.0 * (c01 * r0 * r1 + c02 * r0 * r2 + c12 * r1 * r2)) / det
        return -0.5 * (3.0 * _LOG_2PI + log(det) + quad)
    raise ValueError(f"patterns of 1 to 3 paths, got {d}")


def _T_entry(tau, rho):
    """``T(i, j)`` of the between-trial covariance from ``tau = (tau_a, tau_b, tau_c)`` and rho_ab."""

    def T(i, j):
        if i == j:
            return tau[i] ** 2
        if {i, j} == {0, 1}:
            return rho * tau[0] * tau[1]
        return 0.0

    return T


def patterns(observed: np.ndarray) -> dict[tuple, np.ndarray]:
    """Trials grouped by the pattern of observed paths: ``{(0, 1, 2): rows, (0, 1): rows, ...}``."""
    out: dict[tuple, list] = {}
    for i, row in enumerate(np.asarray(observed, bool)):
        out.setdefault(tuple(int(j) for j in np.flatnonzero(row)), []).append(i)
    return {key: np.array(rows) for key, rows in sorted(out.items(), key=lambda kv: (-len(kv[0]), kv[0]))}


def marginal_loglik(data: PathEstimates, mu, tau, rho) -> np.ndarray:
    """Per-trial log density of the reported paths, trial effects integrated out.

    Parameters
    ----------
    data : PathEstimates
    mu : array, shape (..., 3)
        Pooled (a, b, c') (c' may be anything when no trial reports it).
    tau : array, shape (..., 3)
        (tau_a, tau_b, tau_c).
    rho : array, shape (...)

    Returns
    -------
    numpy.ndarray, shape (..., k)
    """
    mu, tau, rho = np.asarray(mu, float), np.asarray(tau, float), np.asarray(rho, float)
    out = np.empty(rho.shape + (data.k,))
    T = _T_entry([tau[..., j, None] for j in range(3)], rho[..., None])
    for pattern, rows in patterns(data.observed).items():
        resid = [data.est[rows, j] - mu[..., j, None] for j in pattern]

        def V(i, j, pattern=pattern, rows=rows):
            return data.cov[rows, pattern[i], pattern[j]] + T(pattern[i], pattern[j])

        out[..., rows] = pattern_logpdf(resid, V)
    return out


@dataclass
class PathMediationModel:
    """A built path-based mediation model: the PyMC model plus what post-processing needs.

    Attributes
    ----------
    model : pymc.Model
    data : PathEstimates
    priors : dict
        Resolved priors (Prior objects) and ``eta``.
    has_c : bool
        Whether any trial reports c' (else c_prime and tau_c are not in the model).
    """

    model: object
    data: PathEstimates
    priors: dict
    has_c: bool
    kind: str = "mediation_paths"
    cache_key: tuple | None = None
    a_variance: str = "reported"

    def nuts_kwargs(self, target_accept: float, chains: int, seed: int) -> dict:
        """Extra ``pymc.sample`` arguments (called by :func:`bayes_se.sampling.sample`): a NUTS step
        whose density is compiled once per process by PyTensor's Numba backend (which calls the
        Numba kernel directly: about half the per-evaluation overhead of the C backend) and kept
        with the cached model, and per-chain initial values jittered as PyMC's ``jitter+adapt_diag``
        does (uniform(-1, 1) on the unconstrained scale around the initial point), seeded by ``seed``.
        """
        import pymc as pm

        key = (self.cache_key, float(target_accept))
        cached = _STEP_CACHE.get(key) if self.cache_key is not None else None
        if cached is None:
            import pytensor

            model = self.model
            with model:
                step = pm.NUTS(target_accept=float(target_accept), compile_kwargs=dict(COMPILE_KWARGS))
            values = [model.rvs_to_values[rv] for rv in model.free_RVs]
            outs = [value if model.rvs_to_transforms.get(rv) is None
                    else model.rvs_to_transforms[rv].backward(value, *rv.owner.inputs)
                    for rv, value in zip(model.free_RVs, values)]
            constrain = pytensor.function(values, outs, on_unused_input="ignore", mode="FAST_COMPILE")
            cached = (step, constrain)
            if self.cache_key is not None:
                _STEP_CACHE[key] = cached
        step, constrain = cached
        rng = np.random.default_rng([int(seed), 16017])
        start = self.model.initial_point()
        names = [rv.name for rv in self.model.free_RVs]
        keys = [self.model.rvs_to_values[rv].name for rv in self.model.free_RVs]
        initvals = []
        for _ in range(chains):
            point = [np.asarray(start[k] + rng.uniform(-1.0, 1.0)) for k in keys]
            initvals.append({name: np.asarray(v) for name, v in zip(names, constrain(*point))})
        return {"step": step, "initvals": initvals, "compile_kwargs": dict(COMPILE_KWARGS)}

    def set_data(self):
        """Put this build's data into the model, which may be shared with a later build (the
        cache): called before sampling."""
        import pymc as pm

        pm.set_data(_model_data(self.data), model=self.model)

    @property
    def paths(self) -> tuple:
        return PATH_NAMES if self.has_c else PATH_NAMES[:2]

    def postprocess(self, idata, seed: int):
        """Called by :func:`bayes_se.sampling.sample` after NUTS: :func:`add_derived`."""
        return add_derived(idata, self, seed)


#: Built PyMC models by (has c', priors): a later build with the same graph swaps the data in (pm.set_data).
_MODEL_CACHE: dict = {}
#: NUTS steps (their compiled density) by (model cache key, target_accept).
_STEP_CACHE: dict = {}
#: How the NUTS density is compiled: PyTensor's Numba backend (see :meth:`PathMediationModel.nuts_kwargs`).
COMPILE_KWARGS = {"mode": "NUMBA"}


def _model_data(data: PathEstimates) -> dict:
    """The model's ``pm.Data``: masked ``est``, ``cov``, ``obs`` and ``n`` (2 where unknown, unused then)."""
    from bayes_se.builders.mediation_paths_kernel import masked_arrays

    est, cov, obs = masked_arrays(data.est, data.cov, data.observed)
    n = np.asarray(data.n, float)
    return {"est": est, "cov": cov, "obs": obs, "n": np.where(np.isfinite(n), n, 2.0)}


#: Sampling variance of a reported ``a``: its reported ``se_a^2``, or that of a correlation at the pooled
#: ``a``, ``(1 - a^2)^2 / (n_i - 1)`` (standardised paths, ``a = r_XM``; needs ``n``).
A_VARIANCES = ("reported", "pooled")


def build_mediation_paths(data: PathEstimates, *, priors=None, cache: bool = True,
                          a_variance: str = "reported") -> PathMediationModel:
    """Build the path-based mediation model of the module docstring.

    Parameters
    ----------
    data : PathEstimates
    priors : dict, optional
        ``a``, ``b``, ``c_prime``, ``tau_a``, ``tau_b``, ``tau_c`` (prior strings or Prior objects)
        and ``eta`` (see :func:`resolve_path_priors`).
    a_variance : {"reported", "pooled"}
        ``"pooled"``: the sampling variance of each trial's ``a`` is ``(1 - a^2)^2 / (n_i - 1)`` at
        the pooled ``a`` (the variance of a correlation, Olkin & Siotani 1976, as the MASEM uses at the
        pooled correlations; for standardised paths with ``n`` known) instead of ``se_a^2``, which
        for a standardised ``a`` is ``(1 - a_i-hat^2) / (n - 2)`` and so is correlated with the
        estimate (weights grow with ``|a_i-hat|``). Covariances of ``a`` with ``b`` and ``c'`` are kept.
    cache : bool
        Reuse the PyMC model built earlier in this process for the same priors and the same
        presence of c' (its data swapped in with ``pm.set_data``); the model only depends on the
        data through its ``pm.Data``. A shared model holds the data of the latest build; sampling
        through :func:`bayes_se.sampling.sample` sets each built model's own data first.

    Returns
    -------
    PathMediationModel
        Free variables ``a``, ``b``, ``tau_a``, ``tau_b``, ``rho_ab_beta`` (and ``c_prime``,
        ``tau_c`` when some trial reports c'); ``rho_ab`` is a Deterministic. One ``pm.Potential``
        ``loglik``: the compiled density of
        :mod:`bayes_se.builders.mediation_paths_kernel` (value and exact gradient in one call) of
        ``mu`` and ``T``, its data (``est``, ``cov``, ``obs``: masked arrays) in ``pm.Data``.
    """
    import pymc as pm
    import pytensor.tensor as pt

    from bayes_se.builders.mediation_paths_kernel import paths_loglik_op

    pri = resolve_path_priors(priors)
    has_c = bool(data.observed[:, 2].any())
    if a_variance not in A_VARIANCES:
        raise SpecError(f"must be one of {A_VARIANCES}, got {a_variance!r}", key="a_variance")
    pooled = a_variance == "pooled"
    n = np.asarray(data.n, float)
    if pooled:
        from bayes_se.errors import DataError

        bad = np.flatnonzero(data.observed[:, 0] & ~(np.isfinite(n) & (n > 3)))
        if bad.size:
            raise DataError(f"a_variance='pooled' needs the number of participants n (> 3) of every trial; "
                            f"study {data.study[bad[0]]!r} has none", column="n", row=int(bad[0]))
    arrays = _model_data(data)
    est, cov, obs, n = arrays["est"], arrays["cov"], arrays["obs"], arrays["n"]
    key = (has_c, a_variance, tuple(sorted((k, str(v)) for k, v in pri.items())))
    model = _MODEL_CACHE.get(key) if cache else None
    if model is not None:
        pm.set_data(arrays, model=model)
        return PathMediationModel(model=model, data=data, priors=pri, has_c=has_c, cache_key=key, a_variance=a_variance)
    with pm.Model() as model:
        mu = [pri["a"].to_pymc("a"), pri["b"].to_pymc("b")]
        tau = [pri["tau_a"].to_pymc("tau_a"), pri["tau_b"].to_pymc("tau_b")]
        if has_c:
            mu.append(pri["c_prime"].to_pymc("c_prime"))
            tau.append(pri["tau_c"].to_pymc("tau_c"))
        else:  # no trial reports c': the kernel masks the third path everywhere
            mu.append(pt.constant(0.0))
            tau.append(pt.constant(0.0))
        eta = np.float64(pri["eta"])
        rho = pm.Deterministic("rho_ab", 2.0 * pm.Beta("rho_ab_beta", alpha=eta, beta=eta) - 1.0)
        cross = rho * tau[0] * tau[1]
        zero = pt.constant(0.0)
        T = pt.stack([pt.stack([tau[0] ** 2, cross, zero]), pt.stack([cross, tau[1] ** 2, zero]),
                      pt.stack([zero, zero, tau[2] ** 2])])
        est_d, cov_d, obs_d, n_d = pm.Data("est", est), pm.Data("cov", cov), pm.Data("obs", obs), pm.Data("n", n)
        pm.Potential("loglik", paths_loglik_op(pooled)(pt.stack(mu), T, est_d, cov_d, obs_d, n_d)[0])
    if cache:
        _MODEL_CACHE[key] = model
    return PathMediationModel(model=model, data=data, priors=pri, has_c=has_c, cache_key=key if cache else None,
                     a_variance=a_variance)


# ------------------------------------------------------------------------------------- after sampling
def _hyper(ds, has_c: bool):
    """(mu (..., 3), tau (..., 3), rho (...)) from a posterior or prior group."""
    a, b = np.asarray(ds["a"], float), np.asarray(ds["b"], float)
    c = np.asarray(ds["c_prime"], float) if has_c else np.zeros_like(a)
    ta, tb = np.asarray(ds["tau_a"], float), np.asarray(ds["tau_b"], float)
    tc = np.asarray(ds["tau_c"], float) if has_c else np.zeros_like(a)
    return np.stack([a, b, c], -1), np.stack([ta, tb, tc], -1), np.asarray(ds["rho_ab"], float)


def _T_matrix(tau, rho):
    T = np.zeros(rho.shape + (3, 3))
    T[..., 0, 0], T[..., 1, 1], T[..., 2, 2] = tau[..., 0] ** 2, tau[..., 1] ** 2, tau[..., 2] ** 2
    T[..., 0, 1] = T[..., 1, 0] = rho * tau[..., 0] * tau[..., 1]
    return T


def _draw_effects(rng, mu, tau, rho):
    """Draws of N(0, T) for the shape of ``rho`` (..., 3): exact factor of the 2x2 block and c'."""
    z = rng.standard_normal(rho.shape + (3,))
    u = np.empty_like(z)
    u[..., 0] = tau[..., 0] * z[..., 0]
    u[..., 1] = tau[..., 1] * (rho * z[..., 0] + np.sqrt(np.clip(1.0 - rho**2, 0.0, None)) * z[..., 1])
    u[..., 2] = tau[..., 2] * z[..., 2]
    return u


def effect_draws(mu, tau, rho, rng, has_c: bool = True) -> dict:
    """The derived effects of :data:`EFFECT_NAMES` per draw (c'-based ones only with ``has_c``).

    ``indirect = a b``; ``indirect_avg = E[a_i b_i] = a b + rho_ab tau_a tau_b`` (exact, Bauer,
    Preacher & Gil 2006); ``indirect_new = a_new b_new`` with ``(a_new, b_new) ~ N((a, b), T_ab)``
    drawn once per draw (the predictive of a new trial's indirect effect); ``total = c' + a b``;
    ``prop_mediated = a b / total``.
    """
    a, b, c = mu[..., 0], mu[..., 1], mu[..., 2]
    new = mu + _draw_effects(rng, mu, tau, rho)
    out = {"a": a, "b": b}
    if has_c:
        out["c_prime"] = c
    out["indirect"] = a * b
    out["indirect_avg"] = a * b + rho * tau[..., 0] * tau[..., 1]
    out["indirect_new"] = new[..., 0] * new[..., 1]
    if has_c:
        total = c + a * b
        out["total"] = total
        with np.errstate(divide="ignore", invalid="ignore"):
            out["prop_mediated"] = a * b / total
    return out


def _masked(data: PathEstimates):
    """(est with 0 where unobserved, covariance with the identity in unobserved rows/columns, mask)."""
    obs = data.observed
    est = np.where(obs, data.est, 0.0)
    both = obs[:, :, None] & obs[:, None, :]
    cov = np.where(both, np.nan_to_num(data.cov), 0.0) + np.eye(3) * (~obs)[:, None, :]
    return est, cov, obs


def conditional_theta(data: PathEstimates, mu, tau, rho, rng) -> np.ndarray:
    """Exact draws of each trial's ``theta_i = (a_i, b_i, c'_i)`` given the hyperparameters and its estimates.

    Pathwise conditioning (Matheron's rule): with ``theta* ~ N(mu, T)`` and ``e* ~ N(0, S_i)``,
    ``theta_i = theta* + T P' (P (S_i + T) P')^-1 (est_i[o] - theta*[o] - e*[o])`` has exactly
    the conditional law ``N(mu + T P' Sigma^-1 (est - mu)[o], T - T P' Sigma^-1 P T)``, and needs
    no factor of the (possibly singular, when a tau is near 0) conditional covariance. Unreported
    paths are drawn from their conditional given the reported ones.

    Returns
    -------
    numpy.ndarray, shape mu.shape[:-1] + (k, 3)
    """
    est, cov, obs = _masked(data)
    L = np.linalg.cholesky(cov)  # (k, 3, 3): S_i on the observed block, identity elsewhere
    mu, tau, rho = mu[..., None, :], tau[..., None, :], rho[..., None]
    shape = rho.shape[:-1] + (data.k,)
    mu_b, tau_b, rho_b = (np.broadcast_to(mu, shape + (3,)), np.broadcast_to(tau, shape + (3,)),
                          np.broadcast_to(rho, shape))
    theta_star = mu_b + _draw_effects(rng, mu_b, tau_b, rho_b)
    e_star = np.einsum("kij,...kj->...ki", L, rng.standard_normal(shape + (3,)))
    resid = np.where(obs, est - theta_star - e_star, 0.0)
    T = _T_matrix(tau_b, rho_b)
    Sigma = np.where(obs[:, :, None] & obs[:, None, :], T, 0.0) + cov
    gain = np.linalg.solve(Sigma, resid[..., None])[..., 0]
    return theta_star + np.einsum("...ij,...j->...i", T, np.where(obs, gain, 0.0))


def add_derived(idata, built: PathMediationModel, seed: int):
    """Add the derived effects (posterior and prior), exact ``theta``, the per-trial log-likelihood,
    replicated estimates (posterior and prior predictive) and the observed data to ``idata``.

    Returns
    -------
    arviz.InferenceData
        The same object.
    """
    import xarray as xr

    from bayes_se.diagnostics import EXACT_ATTR

    data, has_c = built.data, built.has_c
    rng = np.random.default_rng([int(seed), 16016])
    study = [str(s) for s in data.study]
    paths = list(PATH_NAMES)
    post = idata.posterior
    cd = {"chain": post["chain"].values, "draw": post["draw"].values}
    mu, tau, rho = _hyper(post, has_c)

    def effects_array(values: dict, coords):
        names = list(values)
        arr = xr.DataArray(np.stack([values[n] for n in names], -1), dims=("chain", "draw", "effect"),
                           coords={**coords, "effect": names})
        arr.attrs["indirect"] = "a * b, the product of the pooled paths"
        arr.attrs["indirect_avg"] = "E[a_i b_i] = a b + rho_ab tau_a tau_b, the average of the trials' own products"
        arr.attrs["indirect_new"] = "a_new * b_new of a new trial, (a_new, b_new) ~ N((a, b), T_ab): a predictive"
        return arr

    eff = effects_array(effect_draws(mu, tau, rho, rng, has_c), cd)
    eff.attrs[EXACT_ATTR] = 1
    idata.posterior["effects"] = eff
    theta = conditional_theta(data, mu, tau, rho, rng)
    sc = {**cd, "study": study, "path": paths}
    th = xr.DataArray(theta, dims=("chain", "draw", "study", "path"), coords=sc)
    if not has_c:
        th = th.where(th["path"] != "c_prime")
    th.attrs[EXACT_ATTR] = 1
    idata.posterior["theta"] = th
    # replicated estimates: the trial's theta plus a new sampling error, where the trial reports a path
    est, cov, obs = _masked(data)
    L = np.linalg.cholesky(cov)
    rep = theta + np.einsum("kij,...kj->...ki", L, rng.standard_normal(theta.shape))
    rep = np.where(obs, rep, np.nan)
    ll = marginal_loglik(data, mu, tau, rho)
    groups = {
        "log_likelihood": xr.Dataset({"est": xr.DataArray(ll, dims=("chain", "draw", "study"),
                                                          coords={**cd, "study": study})}),
        "posterior_predictive": xr.Dataset({"est": xr.DataArray(rep, dims=("chain", "draw", "study", "path"),
                                                                coords=sc)}),
        "observed_data": xr.Dataset({
            "est": xr.DataArray(np.asarray(data.est, float), dims=("study", "path"),
                                coords={"study": study, "path": paths}),
            "se": xr.DataArray(data.se, dims=("study", "path"), coords={"study": study, "path": paths}),
            "cov": xr.DataArray(np.asarray(data.cov, float), dims=("study", "path", "path2"),
                                coords={"study": study, "path": paths, "path2": paths}),
            "n": xr.DataArray(np.asarray(data.n, float), dims=("study",), coords={"study": study}),
            "source": xr.DataArray(np.asarray(data.source, dtype=str), dims=("study",), coords={"study": study}),
        }),
    }
    if "prior" in idata.groups() and "a" in idata.prior:
        pr = idata.prior
        pcd = {"chain": pr["chain"].values, "draw": pr["draw"].values}
        pmu, ptau, prho = _hyper(pr, has_c)
        with np.errstate(all="ignore"):
            idata.prior["effects"] = effects_array(effect_draws(pmu, ptau, prho, rng, has_c), pcd)
        kshape = prho.shape + (data.k,)
        pmu_k = np.broadcast_to(pmu[..., None, :], kshape + (3,))
        ptheta = pmu_k + _draw_effects(rng, pmu_k, np.broadcast_to(ptau[..., None, :], kshape + (3,)),
                                       np.broadcast_to(prho[..., None], kshape))
        prep = ptheta + np.einsum("kij,...kj->...ki", L, rng.standard_normal(ptheta.shape))
        groups["prior_predictive"] = xr.Dataset({"est": xr.DataArray(
            np.where(obs, prep, np.nan), dims=("chain", "draw", "study", "path"),
            coords={**pcd, "study": study, "path": paths})})
    for group, ds in groups.items():
        if group in idata.groups():
            delattr(idata, group)
        idata.add_groups({group: ds})
    return idata
