"""Bayesian step-function selection models (RoBMA's weight functions), sampled, with bridge sampling.

Model (Vevea & Hedges 1995; RoBMA, Bartoš et al. 2023), the study effects integrated out::

    p(y_i | mu, tau, omega) = w(p_i) N(y_i; mu, v_i + tau^2) / A_i        (selection_likelihood)
    mu ~ N(m, s^2),  tau ~ InvGamma(a, b),  omega_j = eta_j + ... + eta_J,  eta ~ Dirichlet(alpha)

with RoBMA's defaults ``mu ~ N(0, 1)``, ``tau ~ InvGamma(1, 0.15)`` (on tau; Cohen's d scale) and
alpha all 1. Variants drop the effect (``mu = 0``) or the heterogeneity (``tau = 0``).

Two samplers of the same posterior:

* ``"pymc"``: PyMC's NUTS on the model of :func:`build_pymc_model`; the effect and heterogeneity are
  switched off by ``pm.Data`` flags (``mu_eff = on_mu * mu``), so one compiled NUTS step per weight
  function serves all four variants and every data set of the same size (the compiled step is
  cached and handed back to ``pm.sample``). A switched-off parameter keeps its prior as posterior and
  is left out of the draws.
* ``"numpy"`` (default): an independence Metropolis-Hastings sampler whose proposal is a
  multivariate t (5 df) at the posterior mode with 1.2 times the Laplace scale, run as 4 chains
  with the whole likelihood vectorised over draws; a random-walk Metropolis run replaces it when
  its acceptance rate falls below 0.2. The posterior has 2 to 5 dimensions, so this costs tens of
  milliseconds where compiling a PyMC model costs seconds to minutes on a loaded machine.

Both give the draws (``mu``, ``tau``, ``omega``; ``fit.idata`` an ArviZ InferenceData of them) with
split R-hat, ESS and (NUTS) divergences in :attr:`SelectionFit.diagnostics`, and the log marginal likelihood by bridge sampling
(:mod:`bayes_se.bridge`) on the unconstrained scale ``(mu, log tau, log(eta_j / eta_J))`` with its
Jacobian, from the draws of either sampler.

References
----------
Vevea JL, Hedges LV (1995). Psychometrika 60(3), 419-435.
Bartoš F, Maier M, Wagenmakers E-J, Doucouliagos H, Stanley TD (2023). Robust Bayesian
meta-analysis: model-averaging across complementary publication bias adjustment methods. Research
Synthesis Methods 14(1), 99-116. doi:10.1002/jrsm.1594
Gronau QF et al. (2017). A tutorial on bridge sampling. J Math Psychol 81, 80-97.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, special

from bayes_se.bridge import BridgeResult, bridge_sampling
from bayes_se.errors import ConvergenceWarning, DataError, SpecError
from bayes_se.selection_likelihood import WeightFunction, interval_index, log_likelihood

__all__ = ["BiasPriors", "SelectionFit", "fit_selection_model", "build_pymc_model", "selection_log_posterior"]

T_DF = 5.0
T_SCALE = 1.2
MIN_ACCEPT = 0.2


@dataclass(frozen=True)
class BiasPriors:
    """Priors of the ensemble (RoBMA's defaults, Cohen's d scale): ``mu ~ N(mu_mean, mu_sd^2)``,
    ``tau ~ InvGamma(tau_shape, tau_scale)``, PET coefficient ``~ Cauchy+(0, pet_scale)``, PEESE
    coefficient ``~ Cauchy+(0, peese_scale)`` (both truncated to [0, inf))."""

    mu_mean: float = 0.0
    mu_sd: float = 1.0
    tau_shape: float = 1.0
    tau_scale: float = 0.15
    pet_scale: float = 1.0
    peese_scale: float = 5.0

    def __post_init__(self):
        for key in ("mu_sd", "tau_shape", "tau_scale", "pet_scale", "peese_scale"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value > 0):
                raise SpecError(f"must be a positive number, got {value!r}", key=key)
        if not np.isfinite(self.mu_mean):
            raise SpecError(f"must be finite, got {self.mu_mean!r}", key="mu_mean")

    def tau_logpdf(self, tau):
        """``log InvGamma(tau; a, b)`` (``-inf`` at tau <= 0), vectorised."""
        tau = np.asarray(tau, float)
        a, b = self.tau_shape, self.tau_scale
        out = np.full(tau.shape, -np.inf)
        pos = tau > 0
        t = tau[pos]
        out[pos] = a * math.log(b) - special.gammaln(a) - (a + 1.0) * np.log(t) - b / t
        return out

    def mu_logpdf(self, mu):
        z = (np.asarray(mu, float) - self.mu_mean) / self.mu_sd
        return -0.5 * (math.log(2 * math.pi) + z * z) - math.log(self.mu_sd)


def _check_data(y, se):
    y = np.asarray(y, float)
    se = np.asarray(se, float)
    if y.ndim != 1 or y.shape != se.shape or y.size == 0:
        raise DataError(f"yi and se must be matching non-empty vectors, got {y.shape} and {se.shape}", column="yi")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise DataError("the effect is missing or not finite", row=int(bad[0]) + 1, column="yi")
    bad = np.flatnonzero(~(np.isfinite(se) & (se > 0)))
    if bad.size:
        raise DataError("the standard error must be a positive number", row=int(bad[0]) + 1, column="vi")
    return y, se


class _Posterior:
    """Unnormalised log posterior of one selection model on ``(mu, log tau, alr(eta))``."""

    def __init__(self, y, se, wf, effect, heterogeneity, priors):
        self.y, self.se, self.wf, self.priors = y, se, wf, priors
        self.effect, self.heterogeneity = bool(effect), bool(heterogeneity)
        self.J = wf.n_intervals if wf is not None else 1
        self.alpha = np.asarray(wf.alpha if wf is not None else (1.0,))
        self.d = int(self.effect) + int(self.heterogeneity) + (self.J - 1)
        self.names = (["mu"] if self.effect else []) + (["log_tau"] if self.heterogeneity else []) + \
            [f"alr[{j}]" for j in range(self.J - 1)]
        self._dir_const = special.gammaln(self.alpha.sum()) - special.gammaln(self.alpha).sum()

    def unpack(self, theta):
        theta = np.atleast_2d(np.asarray(theta, float))
        n = theta.shape[0]
        c = 0
        mu = theta[:, c] if self.effect else np.zeros(n)
        c += int(self.effect)
        tau = np.exp(theta[:, c]) if self.heterogeneity else np.zeros(n)
        c += int(self.heterogeneity)
        z = np.concatenate([theta[:, c:], np.zeros((n, 1))], axis=1)
        eta = np.exp(z - special.logsumexp(z, axis=1, keepdims=True))
        return mu, tau, eta

    def pack(self, mu, tau, eta):
        cols = []
        if self.effect:
            cols.append(np.asarray(mu, float))
        if self.heterogeneity:
            cols.append(np.log(np.asarray(tau, float)))
        eta = np.atleast_2d(np.asarray(eta, float))
        for j in range(self.J - 1):
            cols.append(np.log(eta[:, j]) - np.log(eta[:, -1]))
        return np.column_stack(cols) if cols else np.zeros((len(np.atleast_1d(mu)), 0))

    def __call__(self, theta):
        theta = np.atleast_2d(np.asarray(theta, float))
        mu, tau, eta = self.unpack(theta)
        lp = np.zeros(theta.shape[0])
        if self.effect:
            lp += self.priors.mu_logpdf(mu)
        if self.heterogeneity:
            with np.errstate(divide="ignore", over="ignore"):
                lp += self.priors.tau_logpdf(tau) + np.log(tau)  # + log Jacobian of tau = e^x
        if self.J > 1:
            with np.errstate(divide="ignore"):
                log_eta = np.log(eta)
            # Dirichlet density and the additive-log-ratio Jacobian prod_j eta_j
            lp += self._dir_const + ((self.alpha - 1.0) * log_eta).sum(axis=1) + log_eta.sum(axis=1)
            omega = np.flip(np.cumsum(np.flip(eta, 1), 1), 1)
            ll = log_likelihood(self.y, self.se, mu, tau, omega, self.wf).sum(axis=1)
        else:
            s2 = self.se ** 2 + tau[:, None] ** 2
            ll = (-0.5 * (math.log(2 * math.pi) + np.log(s2) + (self.y - mu[:, None]) ** 2 / s2)).sum(axis=1)
        out = lp + ll
        return np.where(np.isnan(out), -np.inf, out)


def selection_log_posterior(y, se, wf, *, effect=True, heterogeneity=True, priors=None):
    """The unnormalised log posterior ``log p(theta) + log p(y | theta) + log |J|`` of a selection
    model (``wf=None``: the normal random-effects model) on ``theta = (mu, log tau, log(eta_j /
    eta_J))``, vectorised over rows of theta; ``.names`` lists the coordinates."""
    y, se = _check_data(y, se)
    return _Posterior(y, se, wf, effect, heterogeneity, priors or BiasPriors())


def split_rhat_ess(x) -> tuple[float, float]:
    """Split R-hat (Gelman et al. 2013, BDA3 sec. 11.4) and the effective sample size from Geyer's
    initial positive sequence of the chain-averaged autocorrelations, for draws (chains, draws).
    NumPy only, so a fit needs no ArviZ import; :meth:`SelectionFit.summary` reports ArviZ's
    rank-normalised versions."""
    from bayes_se.bridge import integrated_autocorrelation_time

    x = np.asarray(x, float)
    c, n = x.shape
    half = n // 2
    parts = np.concatenate([x[:, :half], x[:, half: 2 * half]], axis=0)
    m, length = parts.shape
    w = parts.var(axis=1, ddof=1).mean()
    b = length * parts.mean(axis=1).var(ddof=1)
    if w <= 0:
        return 1.0, float(c * n)
    rhat = math.sqrt(((length - 1) / length * w + b / length) / w)
    ess = c * n / integrated_autocorrelation_time(x.ravel(), chains=c)
    return rhat, ess


@dataclass
class SelectionFit:
    """One fitted selection model: draws, diagnostics and the bridge-sampling log marginal likelihood.

    ``posterior`` holds arrays (chain, draw[, interval]) ``mu``, ``tau`` and ``omega`` (zeros for a
    switched-off parameter), ``idata`` the same as an ArviZ InferenceData (built on first use);
    ``diagnostics`` split R-hat and ESS (max / min over the sampled coordinates), divergences (NUTS)
    or the acceptance rate (Metropolis); ``bridge`` the :class:`~bayes_se.bridge.BridgeResult`.
    """

    name: str
    weight_function: WeightFunction | None
    effect: bool
    heterogeneity: bool
    posterior: dict
    bridge: BridgeResult
    diagnostics: dict = field(default_factory=dict)
    sampler: str = "numpy"

    @property
    def log_marginal_likelihood(self) -> float:
        return self.bridge.log_ml

    @property
    def idata(self):
        if not hasattr(self, "_idata"):
            import arviz as az

            self._idata = az.from_dict(posterior=self.posterior)
        return self._idata

    def draws(self, name: str) -> np.ndarray:
        a = np.asarray(self.posterior[name])
        return a.reshape(-1, *a.shape[2:])

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """Mean, sd, central interval, bulk/tail ESS and R-hat of mu, tau and omega[j]."""
        from bayes_se.fits import draws_table

        post = self.posterior
        labels, cols = [], []
        for name in ("mu", "tau"):
            if (name == "mu" and self.effect) or (name == "tau" and self.heterogeneity):
                labels.append(name)
                cols.append(np.asarray(post[name]))
        if "omega" in post:
            om = np.asarray(post["omega"])
            for j in range(1, om.shape[2]):
                labels.append(f"omega[{j}]")
                cols.append(om[:, :, j])
        return draws_table(labels, np.stack(cols, axis=2), level)


def _laplace(post, x0):
    """Posterior mode and covariance (inverse of the central-difference Hessian)."""
    def fun(t):  # value and central-difference gradient in one vectorised call
        h = 1e-6 * np.maximum(1.0, np.abs(t))
        pts = np.vstack([t, t + np.diag(h), t - np.diag(h)])
        v = -post(pts)
        return v[0], (v[1: 1 + t.size] - v[1 + t.size:]) / (2 * h)

    res = optimize.minimize(fun, x0, jac=True, method="BFGS")
    mode = res.x
    d = mode.size
    h = 1e-4 * np.maximum(1.0, np.abs(mode))
    pts = [mode]
    for i in range(d):
        for j in range(d):
            for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
                p = mode.copy()
                p[i] += si * h[i]
                p[j] += sj * h[j]
                pts.append(p)
    vals = post(np.array(pts))
    H = np.empty((d, d))
    c = 1
    for i in range(d):
        for j in range(d):
            fpp, fpm, fmp, fmm = vals[c: c + 4]
            H[i, j] = (fpp - fpm - fmp + fmm) / (4 * h[i] * h[j])
            c += 4
    H = 0.5 * (H + H.T)
    try:
        cov = np.linalg.inv(-H)
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        cov = np.atleast_2d(res.hess_inv)
    return mode, cov


def _mvt(rng, mean, chol, df, size):
    z = rng.standard_normal((size, mean.size)) @ chol.T
    w = np.sqrt(df / rng.chisquare(df, size))[:, None]
    return mean + z * w


def _mvt_logpdf(x, mean, chol, df):
    d = mean.size
    sol = np.linalg.solve(chol, (x - mean).T).T
    m = np.sum(sol * sol, axis=1)
    return (special.gammaln((df + d) / 2) - special.gammaln(df / 2) - 0.5 * d * math.log(df * math.pi)
            - np.sum(np.log(np.diag(chol))) - 0.5 * (df + d) * np.log1p(m / df))


def _independence_mh(post, rng, mean, chol, n, chains, start=None):
    """Independence Metropolis-Hastings with a multivariate t proposal, all proposals evaluated at
    once. Returns the states (chains, n, d), the acceptance rate and the last state."""
    d = mean.size
    prop = _mvt(rng, mean, chol, T_DF, chains * n).reshape(chains, n, d)
    lw = (post(prop.reshape(-1, d)) - _mvt_logpdf(prop.reshape(-1, d), mean, chol, T_DF)).reshape(chains, n)
    u = np.log(rng.random((chains, n)))
    out = np.empty((chains, n, d))
    if start is None:
        cur, cur_w = prop[:, 0].copy(), lw[:, 0].copy()
    else:
        cur = start
        cur_w = post(cur) - _mvt_logpdf(cur, mean, chol, T_DF)
    accepted = 0
    for t in range(n):
        acc = u[:, t] < lw[:, t] - cur_w
        cur = np.where(acc[:, None], prop[:, t], cur)
        cur_w = np.where(acc, lw[:, t], cur_w)
        out[:, t] = cur
        accepted += int(acc.sum())
    return out, accepted / (chains * n), cur


def _sample_numpy(post, draws, tune, chains, rng):
    """Adaptive independence MH: a multivariate t proposal at the Laplace approximation for the
    ``tune`` iterations, then one refitted to their draws' mean and covariance (which catches the
    skew of weights near their bound) for the ``draws``; random-walk Metropolis when its acceptance
    is too low. Returns (chains, draws, d) and the acceptance rate."""
    d = post.d
    x0 = np.zeros(d)
    if post.effect:
        w = 1.0 / post.se ** 2
        x0[0] = float(np.sum(w * post.y) / np.sum(w))
    if post.heterogeneity:
        x0[int(post.effect)] = math.log(0.1)
    mode, cov = _laplace(post, x0)
    chol = np.linalg.cholesky(T_SCALE ** 2 * cov)
    warm, _, cur = _independence_mh(post, rng, mode, chol, max(tune, 50), chains)
    flat = warm.reshape(-1, d)
    try:
        cov2 = np.atleast_2d(np.cov(flat, rowvar=False)) + 1e-9 * np.eye(d)
        chol2 = np.linalg.cholesky(T_SCALE ** 2 * cov2)
        mean2 = flat.mean(axis=0)
    except np.linalg.LinAlgError:
        mean2, chol2, cov2 = mode, chol, cov
    out, rate, cur = _independence_mh(post, rng, mean2, chol2, draws, chains, start=cur)
    cov = cov2
    if rate >= MIN_ACCEPT:
        return out, rate
    # random-walk Metropolis from the independence chains' states, Laplace covariance x 2.38^2 / d
    thin = 5
    step = np.linalg.cholesky((2.38 ** 2 / d) * cov)
    cur_lp = post(cur)
    m = (tune + draws) * thin
    res = np.empty((chains, draws, d))
    acc_n = 0
    for t in range(m):
        prop1 = cur + rng.standard_normal((chains, d)) @ step.T
        lp1 = post(prop1)
        acc = np.log(rng.random(chains)) < lp1 - cur_lp
        cur = np.where(acc[:, None], prop1, cur)
        cur_lp = np.where(acc, lp1, cur_lp)
        if t >= tune * thin:
            acc_n += int(acc.sum())
            if (t - tune * thin) % thin == thin - 1:
                res[:, (t - tune * thin) // thin] = cur
    return res, acc_n / (chains * draws * thin)


_PYMC_CACHE: dict = {}


def build_pymc_model(y, se, wf, priors=None):
    """The PyMC model of a selection model (``wf=None``: normal random effects) with ``pm.Data``
    ``y``, ``se``, ``j`` (each study's p-value interval) and the flags ``on_mu``, ``on_tau``."""
    import pymc as pm
    import pytensor.tensor as pt

    from bayes_se import blas
    from bayes_se.selection_likelihood import pt_log_likelihood

    blas.configure()
    priors = priors or BiasPriors()
    y, se = _check_data(y, se)
    with pm.Model() as model:
        yd = pm.Data("y", y)
        sed = pm.Data("se", se)
        on_mu = pm.Data("on_mu", 1.0)
        on_tau = pm.Data("on_tau", 1.0)
        mu = pm.Normal("mu", priors.mu_mean, priors.mu_sd)
        tau = pm.InverseGamma("tau", priors.tau_shape, priors.tau_scale)
        m_eff, t_eff = on_mu * mu, on_tau * tau
        if wf is None:
            s2 = sed ** 2 + t_eff ** 2
            ll = -0.5 * (math.log(2 * math.pi) + pt.log(s2) + (yd - m_eff) ** 2 / s2)
        else:
            jd = pm.Data("j", interval_index(y, se, wf).astype("int64"))
            eta = pm.Dirichlet("eta", a=np.asarray(wf.alpha))
            omega = pt.cumsum(eta[::-1])[::-1]
            pm.Deterministic("omega", omega)
            ll = pt_log_likelihood(yd, sed, jd, m_eff, t_eff, omega, wf)
        pm.Potential("loglik", ll.sum())
    return model


def _sample_pymc(y, se, wf, effect, heterogeneity, priors, draws, tune, chains, seed):
    import pymc as pm

    key = (wf, priors, y.size)
    if key not in _PYMC_CACHE:
        model = build_pymc_model(y, se, wf, priors)
        with model:
            step = pm.NUTS(target_accept=0.9)
        _PYMC_CACHE[key] = (model, step)
    model, step = _PYMC_CACHE[key]
    data = {"y": y, "se": se, "on_mu": float(effect), "on_tau": float(heterogeneity)}
    if wf is not None:
        data["j"] = interval_index(y, se, wf).astype("int64")
    with model:
        pm.set_data(data)
        idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=1, step=step, random_seed=seed,
                          progressbar=False, compute_convergence_checks=False)
    post = idata.posterior
    n = chains * draws
    mu = np.asarray(post["mu"]).reshape(chains, draws) if effect else np.zeros((chains, draws))
    tau = np.asarray(post["tau"]).reshape(chains, draws) if heterogeneity else np.zeros((chains, draws))
    eta = (np.asarray(post["eta"]).reshape(chains, draws, -1) if wf is not None
           else np.ones((chains, draws, 1)))
    divergences = int(np.asarray(idata.sample_stats["diverging"]).sum())
    del n
    return mu, tau, eta, divergences


def fit_selection_model(y, se, wf: WeightFunction | None, *, effect: bool = True, heterogeneity: bool = True,
                        priors: BiasPriors | None = None, draws: int = 1000, tune: int = 500, chains: int = 4,
                        seed: int | None = None, sampler: str = "numpy") -> SelectionFit:
    """Fit one Bayesian selection model and its bridge-sampling log marginal likelihood.

    ``p(y_i | mu, tau, omega) = w(p_i) N(y_i; mu, v_i + tau^2) / A_i`` (module notes); ``wf=None``
    is the normal random-effects model (its exact marginal likelihood is in :mod:`bayes_se.exact`,
    which makes it the check of the bridge). ``sampler`` is ``"numpy"`` or ``"pymc"``; the same seed
    gives the same draws.
    """
    if sampler not in ("numpy", "pymc"):
        raise SpecError(f"sampler must be 'numpy' or 'pymc', got {sampler!r}", key="sampler")
    priors = priors or BiasPriors()
    y, se = _check_data(y, se)
    post = _Posterior(y, se, wf, effect, heterogeneity, priors)
    from bayes_se import defaults

    seed = defaults.SEED if seed is None else seed
    ss = np.random.SeedSequence(seed)
    rng_s, rng_b = (np.random.default_rng(s) for s in ss.spawn(2))
    diag = {}
    if sampler == "numpy" or post.d == 0:
        theta, rate = (_sample_numpy(post, draws, tune, chains, rng_s) if post.d
                       else (np.zeros((chains, draws, 0)), 1.0))
        mu, tau, eta = post.unpack(theta.reshape(chains * draws, post.d))
        mu, tau = mu.reshape(chains, draws), tau.reshape(chains, draws)
        eta = eta.reshape(chains, draws, -1)
        diag["acceptance"] = rate
        diag["divergences"] = 0
    else:
        mu, tau, eta, div = _sample_pymc(y, se, wf, effect, heterogeneity, priors, draws, tune, chains, seed)
        theta = post.pack(mu.ravel(), np.where(tau.ravel() > 0, tau.ravel(), 1.0), eta.reshape(chains * draws, -1))
        theta = theta.reshape(chains, draws, post.d)
        diag["divergences"] = div
    omega = np.flip(np.cumsum(np.flip(eta, -1), -1), -1)
    omega[..., 0] = 1.0  # the sum of the simplex, exactly (not 1 +- rounding)
    posterior = {"mu": mu, "tau": tau}
    if wf is not None:
        posterior["omega"] = omega
    if post.d:
        stats_ = [split_rhat_ess(theta[:, :, i]) for i in range(post.d)]
        diag["r_hat_max"] = float(max(r for r, _ in stats_))
        diag["ess_bulk_min"] = float(min(e for _, e in stats_))
        if diag["r_hat_max"] > 1.01 or diag["ess_bulk_min"] < 100 or diag["divergences"]:
            warnings.warn(f"selection model {wf.name if wf else 'none'}: R-hat {diag['r_hat_max']:.3f}, "
                          f"ESS {diag['ess_bulk_min']:.0f}, {diag['divergences']} divergences",
                          ConvergenceWarning, stacklevel=2)
        bridge = bridge_sampling(post, theta.reshape(-1, post.d), chains=chains, rng=rng_b)
    else:  # no free parameter: the likelihood is the marginal likelihood
        bridge = BridgeResult(float(post(np.zeros((1, 0)))[0]), 0.0, 0)
    name = wf.name if wf is not None else "none"
    return SelectionFit(name, wf, bool(effect), bool(heterogeneity), posterior, bridge, diag, sampler)
