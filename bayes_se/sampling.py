"""The one place that runs samplers, and the exact post-sampling draws.

:func:`sample` runs NUTS on a built model (refitting once with a higher ``target_accept`` if there
were divergences), adds prior draws and the prior predictive, and, for a
:class:`~bayes_se.builders.random_effects.MetaModel`, the quantities that are drawn exactly given
each posterior draw rather than sampled:

* study effects ``theta_i | beta, tau, y ~ N((y_i/v_i + m_i/tau^2)/(1/v_i + 1/tau^2),
  1/(1/v_i + 1/tau^2))`` (written in the equivalent form that stays finite at tau = 0);
* a new study's effect ``pred = x0' beta + tau * z`` at the reference (``mu + tau * z`` without moderators);
  with a tau per subgroup, one per subgroup g: ``x_g' beta + tau_g * z`` (``MetaModel.subgroup_newx``);
* for the three-level model, cluster effects ``u_j | y`` and effect-level ``w_ij | u_j, y``;
* the pointwise log-likelihood with the study (cluster) effects integrated out, for LOO;
* replicate effects ``y_rep`` from the marginal model (posterior predictive).

References
----------
Hoffman, M. D. & Gelman, A. (2014). The No-U-Turn sampler. JMLR 15, 1593-1623.
Gelman, A. et al. (2013). Bayesian Data Analysis, 3rd ed., sec. 5.4 (conditional normal of the
study effects in the normal-normal model).
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
from scipy import special

from bayes_se.errors import SpecError

#: target_accept of the automatic refit after divergences.
REFIT_TARGET_ACCEPT = 0.99
#: Default NUTS target_accept by builder kind (``MetaModel.kind``); ``DEFAULT_TARGET_ACCEPT`` for
#: any other model. Normal effects are integrated out of the likelihood, leaving a smooth 2-3
#: parameter posterior with no funnel, where Stan's and PyMC's 0.8 suffices: against 0.9 it gave
#: 35% more tau-ESS in 15% less sampling time (random effects, k = 70; docs/performance.md).
#: Student-t effects are sampled non-centred, the three-level and mediation models have
#: hierarchical SDs whose posteriors can pile at 0: those keep 0.9.
TARGET_ACCEPT_BY_KIND = {"random_effects": 0.8}
DEFAULT_TARGET_ACCEPT = 0.9
#: Number of prior (predictive) draws stored with each fit.
PRIOR_DRAWS = 500
#: Trapezoidal grid in log(lambda) for the Student-t marginal likelihood (see
#: student_t_marginal_logpdf): about 1e-13 accurate for 0.5 <= nu <= 200.
LOG_LAMBDA_RANGE = (-50.0, 5.0)
LOG_LAMBDA_STEP = 0.1
CHUNK = 8192
#: log(2 pi) / 2, as scipy.stats.norm's normalising constant.
LOG_SQRT_2PI = np.log(2 * np.pi) / 2
#: Attribute marking posterior variables drawn exactly (not by MCMC): diagnostics skip them.
EXACT_ATTR = "exact_conditional_draw"
SAMPLERS = ("pymc", "nutpie")


def sample(
    model,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    target_accept: float | None = None,
    seed: int,
    sampler: str = "pymc",
    progressbar: bool = False,
):
    """Sample a built model with NUTS and return a complete InferenceData.

    Parameters
    ----------
    model : MetaModel or pymc.Model
        From a bayes_se builder (gets exact study effects, marginal log-likelihood and ``y_rep``)
        or any PyMC model (gets PyMC's own log-likelihood and posterior predictive).
    draws, tune, chains, cores : int
        As in :func:`pymc.sample`.
    target_accept : float, optional
        NUTS target acceptance; raised to ``REFIT_TARGET_ACCEPT`` for one refit after divergences.
        None: the model's default, ``TARGET_ACCEPT_BY_KIND`` (0.8 for normal random effects and
        meta-regressions) or ``DEFAULT_TARGET_ACCEPT`` (0.9).
    seed : int
        Seeds the sampler and every post-sampling draw: the same seed gives identical draws.
    sampler : {"pymc", "nutpie"}
        ``"nutpie"`` only when nutpie is installed.
    progressbar : bool

    Returns
    -------
    arviz.InferenceData
        Groups posterior, sample_stats, observed_data, constant_data (the builders' shared
        data other than the observed effects: ``vi``, ``X``), prior, prior_predictive,
        posterior_predictive and log_likelihood (both ``y``, as observed_data). ``attrs["refit_reason"]``
        says why a refit happened.

    References
    ----------
    Hoffman & Gelman (2014), JMLR 15:1593-1623.
    """
    from bayes_se import blas

    blas.configure()  # link PyTensor's C code to SciPy's OpenBLAS before anything compiles
    import pymc as pm

    from bayes_se.builders.random_effects import MetaModel

    if sampler not in SAMPLERS:
        raise SpecError(f"sampler must be one of {SAMPLERS}, got {sampler!r}", key="sampler")
    if sampler == "nutpie" and importlib.util.find_spec("nutpie") is None:
        raise SpecError("sampler 'nutpie' needs the nutpie package, which is not installed", key="sampler")
    meta = model if isinstance(model, MetaModel) else None
    pm_model = meta.model if meta is not None else model
    if target_accept is None:
        target_accept = TARGET_ACCEPT_BY_KIND.get(getattr(meta, "kind", None), DEFAULT_TARGET_ACCEPT)
    if not 0.0 < target_accept < 1.0:
        raise SpecError(f"target_accept must be in (0, 1), got {target_accept}", key="target_accept")

    def run(accept):
        kwargs = dict(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
                      progressbar=progressbar, target_accept=accept, compute_convergence_checks=False,
                      idata_kwargs={"log_likelihood": False})
        if sampler == "nutpie":
            kwargs["nuts_sampler"] = "nutpie"
        with pm_model, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Pp]otential.*")
            return _sample_keeping_interrupts(pm.sample, kwargs)

    idata = run(target_accept)
    n_div = int(idata.sample_stats["diverging"].sum())
    if n_div and target_accept < REFIT_TARGET_ACCEPT:
        idata = run(REFIT_TARGET_ACCEPT)
        idata.attrs["refit_reason"] = (
            f"{n_div} divergent transitions at target_accept={target_accept}; "
            f"refit once with target_accept={REFIT_TARGET_ACCEPT}"
        )
    idata.attrs["target_accept"] = REFIT_TARGET_ACCEPT if "refit_reason" in idata.attrs else target_accept
    idata.attrs["seed"] = int(seed)
    idata.attrs["sampler"] = sampler

    with pm_model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Pp]otential.*")
        prior = pm.sample_prior_predictive(draws=PRIOR_DRAWS, random_seed=seed)
    idata.extend(prior)
    if meta is None:
        with pm_model:
            pm.compute_log_likelihood(idata, progressbar=False)
            pm.sample_posterior_predictive(idata, random_seed=seed, extend_inferencedata=True,
                                           progressbar=False)
        return idata
    add_exact_draws(idata, meta, seed)
    return idata


def _sample_keeping_interrupts(sample, kwargs):
    """``sample(**kwargs)``, raising KeyboardInterrupt after it returns if Ctrl-C came meanwhile.

    ``pymc.sample`` catches KeyboardInterrupt and returns the draws made so far (or fails with "not
    enough samples" during tuning), so without this a Ctrl-C would go on to post-process (or refit)
    a truncated chain as if it were the fit asked for.
    The SIGINT handler is wrapped only in the main thread and only when it is a Python callable
    (an ignored or default SIGINT is left alone).
    """
    import signal
    import threading

    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        return sample(**kwargs)
    received = []

    def on_sigint(signum, frame):
        received.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        idata = sample(**kwargs)
    except Exception:
        if received:  # e.g. "Not enough samples to build a trace" after a Ctrl-C during tuning
            raise KeyboardInterrupt("sampling interrupted") from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt("sampling interrupted")
    return idata


def reference_location(posterior, meta) -> np.ndarray:
    """Draws (chain, draw) of the mean effect of a new study at the reference: ``mu``, or with
    moderators ``x0' beta`` with ``x0`` = 1 for a column of ones (the intercept) and 0 for every
    other column (a reference level / a covariate at 0), as the exact engine's default ``newx``."""
    if meta.X is None:
        return np.asarray(posterior["mu"])
    x0 = np.all(meta.X == 1.0, axis=0).astype(float)
    return np.asarray(posterior["beta"]) @ x0


def add_exact_draws(idata, meta, seed: int):
    """Add exact conditional draws, marginal log-likelihood and ``y_rep`` to ``idata`` in place.

    Parameters
    ----------
    idata : arviz.InferenceData
        With a posterior of ``meta``'s free parameters.
    meta : MetaModel
    seed : int
        Seeds a NumPy Generator (independent of the sampler's streams).

    Returns
    -------
    arviz.InferenceData
        The same object.
    """
    import xarray as xr

    from bayes_se.builders.three_level import cluster_logp

    rng = np.random.default_rng([int(seed), 20240601])
    post = idata.posterior
    loc = meta.location(post)
    shape = loc.shape  # (chain, draw, k)
    dims3 = ("chain", "draw", "study")
    coords = {"chain": post["chain"].values, "draw": post["draw"].values, "study": meta.study}
    new = {}
    if meta.kind == "three_level":
        s2c = np.asarray(post["sigma_cluster"]) ** 2
        s2e = np.asarray(post["sigma_effect"]) ** 2
        ind = (meta.group_index[None, :] == np.arange(len(meta.group_labels))[:, None]).astype(float)
        resid = meta.yi - loc
        # u_j | y: precision 1/s2c + sum_i 1/d_i, d_i = v_i + s2e (w and e integrated out);
        # multiplying through by s2c keeps it finite as s2c -> 0.
        d = meta.vi + s2e[..., None]
        s_j = (1.0 / d) @ ind.T
        a_j = (resid / d) @ ind.T
        denom = 1.0 + s2c[..., None] * s_j
        u_mean = s2c[..., None] * a_j / denom
        u_var = s2c[..., None] / denom
        u = u_mean + np.sqrt(u_var) * rng.standard_normal(u_mean.shape)
        # w_ij | u_j, y: normal-normal with prior variance s2e and data variance v_i
        w_mean, w_var = normal_conditional(resid - u[..., meta.group_index], meta.vi, 0.0, s2e[..., None])
        w = w_mean + np.sqrt(w_var) * rng.standard_normal(shape)
        theta = loc + u[..., meta.group_index] + w
        new["u_cluster"] = xr.DataArray(u, dims=("chain", "draw", "cluster"),
                                        coords={**{k: coords[k] for k in ("chain", "draw")},
                                                "cluster": meta.group_labels})
        new["w_effect"] = xr.DataArray(w, dims=dims3, coords=coords)
        new["theta"] = xr.DataArray(theta, dims=dims3, coords=coords)
        loglik = cluster_logp(resid, meta.vi, s2c, s2e, ind)
        ll = xr.DataArray(loglik, dims=("chain", "draw", "cluster"),
                          coords={"chain": coords["chain"], "draw": coords["draw"], "cluster": meta.group_labels})
        y_rep = (loc + np.sqrt(s2c)[..., None] * rng.standard_normal(u.shape)[..., meta.group_index]
                 + np.sqrt(s2e)[..., None] * rng.standard_normal(shape)
                 + np.sqrt(meta.vi) * rng.standard_normal(shape))
        z = rng.standard_normal((2,) + shape[:2])
        new["pred"] = xr.DataArray(reference_location(post, meta) + np.sqrt(s2c) * z[0] + np.sqrt(s2e) * z[1],
                                   dims=("chain", "draw"), coords={k: coords[k] for k in ("chain", "draw")})
    else:
        tau = np.asarray(post["tau"])
        tau_i = tau[..., meta.group_index] if meta.group_index is not None else tau[..., None]
        tau2_i = tau_i**2
        if meta.kind == "random_effects":
            theta_mean, theta_var = normal_conditional(meta.yi, meta.vi, loc, tau2_i)
            theta = theta_mean + np.sqrt(theta_var) * rng.standard_normal(shape)
            new["theta"] = xr.DataArray(theta, dims=dims3, coords=coords)
            # scipy.stats.norm.logpdf's own expression, written out: its argument checks and
            # masking cost 0.25 s on the (chain, draw, k) array at k = 1000; same numbers
            sd = np.sqrt(meta.vi + tau2_i)
            x = (meta.yi - loc) / sd
            loglik = (-(x**2) / 2.0 - LOG_SQRT_2PI) - np.log(sd)
            effects = tau_i * rng.standard_normal(shape)
        else:
            nu = meta.nu if meta.nu is not None else np.asarray(post["nu"])
            loglik = student_t_marginal_logpdf(meta.yi, loc, meta.vi, tau_i, nu)
            nu_b = nu if np.ndim(nu) == 0 else np.asarray(nu)[..., None]
            effects = tau_i * rng.standard_t(np.broadcast_to(nu_b, shape))
        ll = xr.DataArray(loglik, dims=dims3, coords=coords)
        y_rep = loc + effects + np.sqrt(meta.vi) * rng.standard_normal(shape)
        # one new-study effect per subgroup: that subgroup's location and tau
        mu = reference_location(post, meta) if meta.group_index is None else meta.subgroup_location(post)
        if meta.kind == "random_effects":
            z = rng.standard_normal(tau.shape)
        else:
            nu = meta.nu if meta.nu is not None else np.asarray(post["nu"])
            nu = nu[..., None] if np.ndim(nu) and meta.group_index is not None else nu
            z = rng.standard_t(nu, size=tau.shape)  # independent across subgroups, as the normal z
        pred = mu + tau * z
        pdims = ("chain", "draw", "subgroup") if meta.group_index is not None else ("chain", "draw")
        pcoords = {k: coords[k] for k in ("chain", "draw")}
        if meta.group_index is not None:
            pcoords["subgroup"] = meta.group_labels
        new["pred"] = xr.DataArray(pred, dims=pdims, coords=pcoords)

    for name, arr in new.items():
        if name in post:  # Student-t theta is sampled (deterministic of u), keep it
            continue
        arr.attrs[EXACT_ATTR] = 1
        idata.posterior[name] = arr
    log_lik = xr.Dataset({"y": ll})
    # replicates share the observed data's name, so az.plot_ppc(idata) needs no arguments
    y_rep_ds = xr.Dataset({"y": xr.DataArray(y_rep, dims=dims3, coords=coords)})
    for group, ds in (("log_likelihood", log_lik), ("posterior_predictive", y_rep_ds)):
        if group in idata.groups():
            delattr(idata, group)
        idata.add_groups({group: ds})
    if "observed_data" not in idata.groups():
        idata.add_groups({"observed_data": xr.Dataset(
            {"y": xr.DataArray(meta.yi, dims=("study",), coords={"study": meta.study})})})
    return idata


def normal_conditional(y, v, m, s2):
    """Mean and variance of ``theta | y`` for ``y ~ N(theta, v)``, ``theta ~ N(m, s2)``.

    ``mean = (y/v + m/s2) / (1/v + 1/s2)``, ``var = 1 / (1/v + 1/s2)``, written as
    ``(y s2 + m v) / (v + s2)`` and ``v s2 / (v + s2)`` so that s2 = 0 gives theta = m exactly.

    Parameters
    ----------
    y, v, m, s2 : array_like
        Broadcastable arrays.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)

    References
    ----------
    Gelman et al. (2013), Bayesian Data Analysis, 3rd ed., eq. 2.12.
    """
    y, v, m, s2 = (np.asarray(a, dtype=float) for a in (y, v, m, s2))
    total = v + s2
    return (y * s2 + m * v) / total, v * s2 / total


def student_t_marginal_logpdf(y, loc, v, tau, nu):
    """log of ``int N(y; loc + tau u, v) t_nu(u) du``, the Student-t random-effects marginal.

    Uses the normal scale mixture ``t_nu = int N(0, 1/lambda) Gamma(lambda; nu/2, nu/2) dlambda``,
    so the marginal is ``E_lambda[N(y; loc, v + tau^2/lambda)]``, a one-dimensional integral whose
    integrand is analytic and decays (doubly) exponentially in ``s = log lambda``; the trapezoidal
    rule on a fixed grid in s is then accurate to about 1e-13 (hand-written because SciPy has no
    quadrature vectorised over arrays of parameters).

    Parameters
    ----------
    y, loc, v, tau : array_like
        Broadcastable arrays.
    nu : float or array_like
        Degrees of freedom (scalar, or broadcastable to ``tau[..., 0]`` per draw).

    Returns
    -------
    numpy.ndarray

    References
    ----------
    Trefethen, L. N. & Weideman, J. A. C. (2014). The exponentially convergent trapezoidal rule.
    SIAM Review 56, 385-458.
    """
    y, loc, v, tau = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (y, loc, v, tau)))
    if np.ndim(nu) == 0:
        nu = np.full(y.shape, float(nu))
    else:
        nu = np.broadcast_to(np.asarray(nu, dtype=float)[..., None], y.shape)
    s = np.arange(LOG_LAMBDA_RANGE[0], LOG_LAMBDA_RANGE[1] + LOG_LAMBDA_STEP / 2, LOG_LAMBDA_STEP)
    lam = np.exp(s)
    flat = [np.ravel(a) for a in (y, loc, v, tau, nu)]
    out = np.empty(flat[0].size)
    for start in range(0, out.size, CHUNK):  # chunks bound memory to CHUNK x len(s) doubles
        yc, lc, vc, tc, nc = (a[start:start + CHUNK, None] for a in flat)
        half = nc / 2.0
        log_gamma = half * np.log(half) - special.gammaln(half) + half * s - half * lam  # + log jacobian
        var = vc + tc**2 / lam
        log_norm = -0.5 * (np.log(2.0 * np.pi * var) + (yc - lc) ** 2 / var)
        out[start:start + CHUNK] = special.logsumexp(log_norm + log_gamma, axis=-1)
    return out.reshape(y.shape) + np.log(LOG_LAMBDA_STEP)
