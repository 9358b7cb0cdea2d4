"""Robust Bayesian model averaging over publication-bias models (RoBMA-PSMA's ensemble in Python).

The ensemble crosses effect / no effect (``mu ~ N(0, 1)`` or ``mu = 0``), heterogeneity / none
(``tau ~ InvGamma(1, 0.15)`` or ``tau = 0``) and the bias models {none, RoBMA's six step-function
selection models, PET, PEESE}: 36 models. Prior model probabilities (RoBMA's defaults): 1/2 effect,
1/2 heterogeneity, 1/2 bias, the bias half split 1/12 to each weight function and 1/4 each to PET
and PEESE (Bartoš et al. 2023). Posterior model probabilities ``P(M | y) ∝ P(M) p(y | M)``;
inclusion Bayes factors are posterior over prior inclusion odds; the model-averaged posterior of
mu (and tau) is the mixture of the models' posteriors (mu = 0 under no effect, tau = 0 under no
heterogeneity) weighted by ``P(M | y)``.

Marginal likelihoods ``p(y | M)``:

* no bias: ``y ~ N(mu, V + tau^2 I)``. Random effects by the exact engine (:mod:`bayes_se.exact`,
  quadrature over tau with mu integrated out), mu = 0 through its exact Savage-Dickey Bayes factor
  ``mu0``; fixed effect (tau = 0) and the null model in closed form (normal conjugate).
* PET and PEESE: ``y_i ~ N(mu + b x_i, v_i + tau^2)`` with ``x_i = se_i`` (PET) or ``se_i^2``
  (PEESE) and ``b ~ Cauchy+(0, s)``. With ``b = s tan(pi u / 2)`` the prior of ``u`` is uniform on
  (0, 1), so ``p(y) = int_0^1 p(y | b(u)) du``; ``p(y | b)`` is the no-bias model's exact marginal
  likelihood of ``y - b x``, and the integral over u is Gauss-Legendre (24 nodes, 48 for tau = 0)
  on the interval that holds the mass (found by a scan), its error estimated as the difference from
  a rule of half the order (so it bounds the error of the smaller rule, not of the one used).
* selection models: sampled (:mod:`bayes_se.bayes_selection`) and bridge sampling, with its error.

References
----------
Bartoš F, Maier M, Wagenmakers E-J, Doucouliagos H, Stanley TD (2023). Robust Bayesian
meta-analysis: model-averaging across complementary publication bias adjustment methods. Research
Synthesis Methods 14(1), 99-116. doi:10.1002/jrsm.1594
Maier M, Bartoš F, Wagenmakers E-J (2023). Robust Bayesian meta-analysis: addressing publication
bias with model-averaging. Psychological Methods 28(1), 107-122.
Stanley TD, Doucouliagos H (2014). Meta-regression approximations to reduce publication selection
bias. Research Synthesis Methods 5(1), 60-78.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from bayes_se.bayes_selection import BiasPriors, fit_selection_model
from bayes_se.errors import DataError, SpecError
from bayes_se.selection_likelihood import ROBMA_WEIGHT_FUNCTIONS

__all__ = ["bias_ensemble", "BiasEnsemble", "default_prior_probs", "regression_bias_family",
           "normal_family"]

LOG_2PI = math.log(2.0 * math.pi)
SCAN_POINTS = 49
GL_NODES = 24
TAIL_NATS = 30.0
DRAWS = 2000


# -- no-bias models ------------------------------------------------------------------------------
def _fixed_effect(y, v, priors):
    """``y_i ~ N(mu, v_i)``, ``mu ~ N(m, s^2)``: log p(y), posterior mean and sd of mu (closed form)."""
    m, s2 = priors.mu_mean, priors.mu_sd ** 2
    prec = 1.0 / s2 + np.sum(1.0 / v, axis=-1)
    mean = (m / s2 + np.sum(y / v, axis=-1)) / prec
    log_ml = -0.5 * (y.shape[-1] * LOG_2PI + np.sum(np.log(v)) + math.log(s2) + np.log(prec)
                     + np.sum(y * y / v, axis=-1) + m * m / s2 - prec * mean * mean)
    return log_ml, mean, 1.0 / np.sqrt(prec)


def _null(y, v):
    return -0.5 * (y.shape[-1] * LOG_2PI + np.sum(np.log(v)) + np.sum(y * y / v, axis=-1))


def _tau_grid_draws(y, v, priors, n, rng):
    """Draws of tau under ``y_i ~ N(0, v_i + tau^2)`` (no effect, heterogeneity) from the exact
    posterior density on a fine grid in log tau (inverse cdf; 4000 points)."""
    t = np.exp(np.linspace(math.log(priors.tau_scale / 200), math.log(20.0 * max(1.0, np.std(y))), 4000))
    s2 = v[None, :] + t[:, None] ** 2
    lp = -0.5 * np.sum(np.log(s2) + y * y / s2, axis=1) + priors.tau_logpdf(t) + np.log(t)
    w = np.exp(lp - lp.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]))])
    cdf /= cdf[-1]
    return np.interp(rng.random(n), cdf, t)


def _exact_re(y, v, priors):
    from bayes_se.exact import exact_posterior

    return exact_posterior(y, v, beta_mean=priors.mu_mean, beta_sd=priors.mu_sd, tau_prior=priors.tau_logpdf)


def _variant_log_ml(y, v, priors, variant, E=None):
    """log p(y | M) of one no-bias variant (effect, heterogeneity); ``E`` a cached exact posterior."""
    effect, het = variant
    if not het:
        return float(_fixed_effect(y, v, priors)[0]) if effect else float(_null(y, v))
    E = E or _exact_re(y, v, priors)
    return E.log_marginal_likelihood + (0.0 if effect else E.log_bayes_factor("mu0"))


def _grid_draws(E, n, rng):
    """Draws of (tau, mu) from an exact posterior's quadrature mixture: tau by inverting the
    piecewise-linear cdf through its nodes' weights, then ``mu | tau`` exactly (normal). Cheaper
    than :meth:`ExactPosterior.draws` (whose exact inversion of tau's cdf costs about 1 s per call)
    where it is called once per quadrature node of PET and PEESE; the tau draws are off only by the
    interpolation between neighbouring nodes."""
    t, w = E.tau_grid, E.tau_weights
    cdf = np.concatenate([[0.0], np.cumsum(w)])
    cdf /= cdf[-1]
    edges = np.concatenate([[t[0]], 0.5 * (t[1:] + t[:-1]), [t[-1]]])
    tau = np.interp(rng.random(n), cdf, edges)
    m, s = E.conditional("mu", tau)
    return m + s * rng.standard_normal(n), tau


def _variant_draws(y, v, priors, variant, n, rng, E=None, exact_draws=False):
    """n posterior draws of (mu, tau) under one no-bias variant."""
    effect, het = variant
    if het and effect:
        E = E or _exact_re(y, v, priors)
        if not exact_draws:
            return _grid_draws(E, n, rng)
        d = E.draws(n, rng)
        return d["mu"], d["tau"]
    if het:
        return np.zeros(n), _tau_grid_draws(y, v, priors, n, rng)
    if effect:
        _, mean, sd = _fixed_effect(y, v, priors)
        return mean + sd * rng.standard_normal(n), np.zeros(n)
    return np.zeros(n), np.zeros(n)


VARIANTS = ((True, True), (False, True), (True, False), (False, False))


def normal_family(y, v, priors: BiasPriors, *, draws: int = 0, rng=None) -> dict:
    """Log marginal likelihoods (and optionally draws of mu, tau) of the four no-bias models.

    Keys ``(effect, heterogeneity)``; values dicts with ``log_ml`` and, when ``draws`` > 0, ``mu``
    and ``tau`` arrays. Random effects by :func:`bayes_se.exact.exact_posterior` (mu = 0 through its
    exact Bayes factor ``mu0``), fixed effect and null in closed form.
    """
    E = _exact_re(y, v, priors)
    rng = np.random.default_rng(rng)
    out = {}
    for variant in VARIANTS:
        out[variant] = {"log_ml": _variant_log_ml(y, v, priors, variant, E)}
        if draws:
            mu, tau = _variant_draws(y, v, priors, variant, draws, rng, E, exact_draws=True)
            out[variant].update(mu=mu, tau=tau)
    return out


# -- PET and PEESE -------------------------------------------------------------------------------
def regression_bias_family(y, v, x, scale, priors: BiasPriors, *, draws: int = 0, rng=None,
                           variants=VARIANTS) -> dict:
    """The variants of ``y_i ~ N(mu + b x_i, v_i + tau^2)``, ``b ~ Cauchy+(0, scale)``.

    ``p(y) = int_0^1 p(y - b(u) x) du`` with ``b(u) = scale tan(pi u / 2)`` (module notes); per
    variant: ``log_ml``, ``quad_error`` (|difference| from a rule of half the order, on the log
    scale) and, with ``draws``, ``mu``, ``tau``, ``b`` (b drawn from its posterior on the nodes, then
    mu and tau exactly given b).
    """
    y, v, x = (np.asarray(a, float) for a in (y, v, x))
    cache = {}

    def at(u, variant):
        key = float(u)
        entry = cache.setdefault(key, {})
        if variant not in entry:
            b = scale * math.tan(0.5 * math.pi * key)
            if variant[1] and "E" not in entry:
                entry["E"] = _exact_re(y - b * x, v, priors)
            entry[variant] = _variant_log_ml(y - b * x, v, priors, variant, entry.get("E"))
        return entry[variant]

    out = {}
    scan = np.concatenate([[0.0], (np.arange(SCAN_POINTS) + 0.5) / SCAN_POINTS])
    rng = np.random.default_rng(rng)
    for variant in variants:
        g = np.array([at(u, variant) for u in scan])
        i = int(np.argmax(g))
        # refine around the best scan point (a peak narrower than the scan's spacing)
        lo_u = scan[max(i - 1, 0)]
        hi_u = scan[min(i + 1, scan.size - 1)]
        fine = np.linspace(lo_u, hi_u, 17)
        us = np.concatenate([scan, fine])
        gs = np.concatenate([g, [at(u, variant) for u in fine]])
        order = np.argsort(us)
        us, gs = us[order], gs[order]
        inside = np.flatnonzero(gs > gs.max() - TAIL_NATS)
        a = us[max(inside[0] - 1, 0)]
        b_hi = us[inside[-1] + 1] if inside[-1] + 1 < us.size else 1.0 - 1e-12
        est = []
        n_main = GL_NODES if variant[1] else 2 * GL_NODES  # tau = 0: closed form, so more nodes are cheap
        for n in (n_main, n_main // 2):
            t, w = np.polynomial.legendre.leggauss(n)
            nodes = 0.5 * (a + b_hi) + 0.5 * (b_hi - a) * t
            lg = np.array([at(u, variant) for u in nodes])
            est.append((special.logsumexp(lg + np.log(0.5 * (b_hi - a) * w)), nodes, lg, w))
        log_ml, nodes, lg, w = est[0]
        rec = {"log_ml": float(log_ml), "quad_error": float(abs(est[0][0] - est[1][0]))}
        if draws:
            pw = np.exp(lg + np.log(w) - special.logsumexp(lg + np.log(w)))
            idx = rng.choice(nodes.size, size=draws, p=pw)
            mu = np.empty(draws)
            tau = np.empty(draws)
            bdraw = np.empty(draws)
            for j in np.unique(idx):
                sel = idx == j
                bj = scale * math.tan(0.5 * math.pi * nodes[j])
                mu[sel], tau[sel] = _variant_draws(y - bj * x, v, priors, variant, int(sel.sum()), rng,
                                                   cache[float(nodes[j])].get("E"))
                bdraw[sel] = bj
            rec.update(mu=mu, tau=tau, b=bdraw)
        out[variant] = rec
    return out


# -- the ensemble --------------------------------------------------------------------------------
def _bias_names(weight_functions):
    return [wf.name for wf in weight_functions] + ["PET", "PEESE"]


def default_prior_probs(weight_functions=ROBMA_WEIGHT_FUNCTIONS) -> dict:
    """RoBMA-PSMA's prior: ``effect`` 1/2, ``heterogeneity`` 1/2, ``bias`` 1/2, and the relative
    ``bias_weights`` of the bias models (each weight function 1/12 of the bias half, PET and PEESE
    1/4 each; normalised to sum 1)."""
    nw = len(weight_functions)
    weights = {wf.name: 0.5 / nw for wf in weight_functions}
    weights.update({"PET": 0.25, "PEESE": 0.25})
    return {"effect": 0.5, "heterogeneity": 0.5, "bias": 0.5, "bias_weights": weights}


def _resolve_prior_probs(prior_probs, weight_functions):
    probs = default_prior_probs(weight_functions)
    if prior_probs is None:
        return probs
    if not isinstance(prior_probs, dict):
        raise SpecError("prior_probs must be a dict with keys effect, heterogeneity, bias, bias_weights",
                        key="prior_probs")
    for key, value in prior_probs.items():
        if key in ("effect", "heterogeneity", "bias"):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise SpecError(f"must be a probability, got {value!r}", key=f"prior_probs.{key}") from None
            if not 0.0 <= value <= 1.0:
                raise SpecError(f"must be a probability in [0, 1], got {value!r}", key=f"prior_probs.{key}")
            probs[key] = value
        elif key == "bias_weights":
            known = _bias_names(weight_functions)
            weights = {}
            for name, w in dict(value).items():
                if name not in known:
                    raise SpecError(f"unknown bias model {name!r}; known: {', '.join(known)}",
                                    key="prior_probs.bias_weights")
                if not (np.isfinite(float(w)) and float(w) >= 0):
                    raise SpecError(f"weight of {name!r} must be >= 0, got {w!r}", key="prior_probs.bias_weights")
                weights[name] = float(w)
            if sum(weights.values()) <= 0:
                raise SpecError("the bias weights sum to 0", key="prior_probs.bias_weights")
            probs["bias_weights"] = {n: weights.get(n, 0.0) for n in known}
        else:
            raise SpecError(f"unknown key {key!r}; known: effect, heterogeneity, bias, bias_weights",
                            key="prior_probs")
    return probs


@dataclass
class BiasEnsemble:
    """A fitted RoBMA-style ensemble: :func:`bias_ensemble` makes it.

    ``models``: one row per model (``name``, ``effect``, ``heterogeneity``, ``bias``, ``prior_prob``,
    ``posterior_prob``, ``log_ml``, ``log_ml_error``, ``method``, ``seconds`` spent on it); ``inclusion_bf``; the averaged
    draws ``mu`` and ``tau``; ``model_draws`` each model's draws; ``fits`` the selection fits.
    """

    models: pd.DataFrame
    inclusion_bf: dict
    mu: np.ndarray
    tau: np.ndarray
    model_draws: dict
    fits: dict
    level: float = 0.95
    k: int = 0
    seconds: float = 0.0
    priors: BiasPriors = field(default_factory=BiasPriors)

    def _interval(self, x):
        a = 0.5 * (1.0 - self.level)
        lo, hi = np.quantile(x, [a, 1.0 - a])
        return {"mean": float(np.mean(x)), "lower": float(lo), "upper": float(hi)}

    def to_dict(self) -> dict:
        """JSON-ready: ``mu`` and ``tau`` (``mean``, ``lower``, ``upper``; model-averaged, central
        interval at ``level``), ``inclusion_bf`` (``effect``, ``heterogeneity``, ``bias``), ``models``
        (one row each) and ``level``, ``k``."""
        rows = []
        for _, r in self.models.iterrows():
            rows.append({"name": r["name"], "effect": bool(r["effect"]), "heterogeneity": bool(r["heterogeneity"]),
                         "bias": r["bias"], "prior_prob": float(r["prior_prob"]),
                         "posterior_prob": float(r["posterior_prob"]), "log_ml": float(r["log_ml"]),
                         "log_ml_error": float(r["log_ml_error"]), "method": r["method"]})
        for row in rows:  # the sampled (selection) models' convergence, None for the exact ones
            d = self.fits[row["name"]].diagnostics if row["name"] in self.fits else {}
            row["r_hat_max"], row["ess_bulk_min"] = d.get("r_hat_max"), d.get("ess_bulk_min")
        return {"mu": self._interval(self.mu), "tau": self._interval(self.tau),
                "inclusion_bf": {k: float(v) for k, v in self.inclusion_bf.items()},
                "models": rows, "diagnostics": self.diagnostics(), "level": self.level, "k": self.k}

    def diagnostics(self) -> dict:
        """``passed`` (every sampled model with split R-hat <= 1.01, bulk ESS >= 100 and no divergences)
        and ``problems``: one line per sampled model that fails, naming its posterior probability, so
        a failure in a model that carries weight is not missed."""
        problems = []
        prob = dict(zip(self.models["name"], self.models["posterior_prob"]))
        for name, fit in self.fits.items():
            d = fit.diagnostics
            if d.get("r_hat_max", 1.0) > 1.01 or d.get("ess_bulk_min", math.inf) < 100 or d.get("divergences"):
                problems.append(f"{name} (posterior probability {prob.get(name, math.nan):.3g}): R-hat "
                                f"{d.get('r_hat_max', math.nan):.3f}, bulk ESS {d.get('ess_bulk_min', math.nan):.0f}, "
                                f"{d.get('divergences', 0)} divergences")
        return {"passed": not problems, "problems": problems}

    def summary(self) -> pd.DataFrame:
        """The components (effect, heterogeneity, bias): prior and posterior inclusion probability
        and inclusion BF; then the averaged mu and tau (mean and interval)."""
        m = self.models
        rows = []
        for comp, col in (("effect", "effect"), ("heterogeneity", "heterogeneity"), ("bias", None)):
            inc = (m["bias"] != "none") if col is None else m[col]
            rows.append({"component": comp, "prior_prob": float(m.loc[inc, "prior_prob"].sum()),
                         "posterior_prob": float(m.loc[inc, "posterior_prob"].sum()),
                         "inclusion_bf": self.inclusion_bf[comp]})
        return pd.DataFrame(rows).set_index("component")

    def estimates(self) -> pd.DataFrame:
        """Model-averaged mu and tau: mean, lower, upper."""
        return pd.DataFrame({"mu": self._interval(self.mu), "tau": self._interval(self.tau)}).T

    def print_summary(self) -> str:
        pd_opts = ("display.width", 120, "display.max_columns", 20)
        with pd.option_context(*pd_opts):
            text = (f"Robust Bayesian model averaging, k = {self.k}, {len(self.models)} models "
                    f"({self.seconds:.1f} s)\n\n{self.summary().round(4)}\n\n"
                    f"Model-averaged estimates ({100 * self.level:g}% central intervals):\n"
                    f"{self.estimates().round(4)}\n\nModels:\n"
                    f"{self.models.drop(columns=['effect', 'heterogeneity', 'seconds']).round(4).to_string(index=False)}")
        return text

    def __str__(self):
        return self.print_summary()

    def plot_ensemble(self, ax=None, min_prob: float = 0.0):
        """mu under each model with effect (mean and interval, marker area ~ posterior probability)
        and the model-averaged posterior; see :func:`bayes_se.plots.bias_ensemble.plot_ensemble`."""
        from bayes_se.plots.bias_ensemble import plot_ensemble

        return plot_ensemble(self, ax=ax, min_prob=min_prob)


def _model_name(effect, het, bias):
    return f"{'effect' if effect else 'no effect'} / {'RE' if het else 'FE'} / {bias}"


def bias_ensemble(data, vi=None, *, prior_probs=None, priors: BiasPriors | None = None,
                  weight_functions=ROBMA_WEIGHT_FUNCTIONS, draws: int = DRAWS, chains: int = 4,
                  tune: int = 250, seed: int | None = None, level: float = 0.95,
                  sampler: str = "numpy") -> BiasEnsemble:
    """Robust Bayesian model averaging over effect x heterogeneity x publication bias (RoBMA-PSMA).

    ``P(M | y) ∝ P(M) p(y | M)`` over 2 x 2 x (1 + weight functions + PET + PEESE) models; the
    marginal likelihoods exact by quadrature except the selection models' (bridge sampling).

    Parameters
    ----------
    data : EffectData or array_like
        An object with ``.yi`` and ``.vi`` (e.g. :func:`bayes_se.load_effects`), or the effects
        with ``vi`` the sampling variances.
    prior_probs : dict, optional
        Any of ``effect``, ``heterogeneity``, ``bias`` (prior inclusion probabilities, 0 drops the
        component's models, 1 its null) and ``bias_weights`` (relative weights of the bias models,
        by name: ``PET``, ``PEESE`` and the weight functions' names, e.g. ``"one-sided (0.05)"``).
        Default RoBMA's (:func:`default_prior_probs`).
    priors : BiasPriors, optional
        Default RoBMA's (Cohen's d scale): mu ~ N(0, 1), tau ~ InvGamma(1, 0.15), PET ~
        Cauchy+(0, 1), PEESE ~ Cauchy+(0, 5).
    weight_functions : sequence of WeightFunction
        Default RoBMA's six (:data:`bayes_se.selection_likelihood.ROBMA_WEIGHT_FUNCTIONS`).
    draws, chains, tune : int
        Draws per model (per chain for the selection models).
    seed : int, optional
        The same seed gives the same result (default ``bayes_se.defaults.SEED``).
    sampler : {"numpy", "pymc"}
        The selection models' sampler (:func:`bayes_se.bayes_selection.fit_selection_model`).

    Returns
    -------
    BiasEnsemble
    """
    t_start = time.perf_counter()
    if vi is None:
        if not (hasattr(data, "yi") and hasattr(data, "vi")):
            raise SpecError("give an EffectData or the effects and their variances", key="vi")
        y, v = np.asarray(data.yi, float), np.asarray(data.vi, float)
    else:
        y, v = np.asarray(data, float), np.asarray(vi, float)
    from bayes_se.data import check_arrays

    y, v = check_arrays(y, v)
    if y.size < 2:
        raise DataError("the ensemble needs at least 2 effects", column="yi")
    from bayes_se.fits import check_level

    level = check_level(level)
    if not (isinstance(draws, (int, np.integer)) and draws >= 100):
        raise SpecError(f"draws must be an integer >= 100, got {draws!r}", key="draws")
    if not (isinstance(chains, (int, np.integer)) and 2 <= chains <= 64):
        raise SpecError(f"chains must be an integer from 2 to 64, got {chains!r}", key="chains")
    priors = priors or BiasPriors()
    probs = _resolve_prior_probs(prior_probs, weight_functions)
    se = np.sqrt(v)
    bw = probs["bias_weights"]
    total_bw = sum(bw.values())
    from bayes_se import defaults

    ss = np.random.SeedSequence(defaults.SEED if seed is None else seed)
    seeds = iter(ss.spawn(64))

    rows, model_draws, fits = [], {}, {}

    def prior_of(effect, het, bias):
        p = (probs["effect"] if effect else 1 - probs["effect"]) * \
            (probs["heterogeneity"] if het else 1 - probs["heterogeneity"])
        if bias == "none":
            return p * (1 - probs["bias"])
        return p * probs["bias"] * bw.get(bias, 0.0) / total_bw

    variants = ((True, True), (False, True), (True, False), (False, False))

    def add(variant, bias, log_ml, err, method, mu, tau, seconds):
        name = _model_name(*variant, bias)
        rows.append({"name": name, "effect": variant[0], "heterogeneity": variant[1], "bias": bias,
                     "prior_prob": prior_of(*variant, bias), "log_ml": log_ml, "log_ml_error": err,
                     "method": method, "seconds": seconds})
        model_draws[name] = {"mu": np.asarray(mu, float), "tau": np.asarray(tau, float)}

    if any(prior_of(*vv, "none") > 0 for vv in variants):
        t0 = time.perf_counter()
        fam = normal_family(y, v, priors, draws=draws, rng=next(seeds))
        todo = [vv for vv in variants if prior_of(*vv, "none") > 0]
        sec = (time.perf_counter() - t0) / len(todo)
        for vv in todo:
            add(vv, "none", fam[vv]["log_ml"], 0.0, "exact", fam[vv]["mu"], fam[vv]["tau"], sec)
    for bias, x, scale in (("PET", se, priors.pet_scale), ("PEESE", v, priors.peese_scale)):
        if any(prior_of(*vv, bias) > 0 for vv in variants):
            t0 = time.perf_counter()
            todo = tuple(vv for vv in variants if prior_of(*vv, bias) > 0)
            fam = regression_bias_family(y, v, x, scale, priors, draws=draws, rng=next(seeds), variants=todo)
            sec = (time.perf_counter() - t0) / len(todo)
            for vv in todo:
                add(vv, bias, fam[vv]["log_ml"], fam[vv]["quad_error"], "exact", fam[vv]["mu"], fam[vv]["tau"], sec)
    per_chain = max(50, -(-draws // chains))
    for wf in weight_functions:
        for vv in variants:
            if prior_of(*vv, wf.name) <= 0:
                continue
            s = int(next(seeds).generate_state(1)[0])
            t0 = time.perf_counter()
            fit = fit_selection_model(y, se, wf, effect=vv[0], heterogeneity=vv[1], priors=priors,
                                      draws=per_chain, tune=tune, chains=chains, seed=s, sampler=sampler)
            fits[_model_name(*vv, wf.name)] = fit
            add(vv, wf.name, fit.bridge.log_ml, fit.bridge.error, "bridge",
                fit.draws("mu"), fit.draws("tau"), time.perf_counter() - t0)
    models = pd.DataFrame(rows)
    lp = np.log(models["prior_prob"].to_numpy()) + models["log_ml"].to_numpy()
    models["posterior_prob"] = np.exp(lp - special.logsumexp(lp))
    models = models[["name", "effect", "heterogeneity", "bias", "prior_prob", "posterior_prob", "log_ml",
                     "log_ml_error", "method", "seconds"]]

    def inclusion_bf(mask):
        pr, pr0 = models.loc[mask, "prior_prob"].sum(), models.loc[~mask, "prior_prob"].sum()
        if pr <= 0 or pr0 <= 0:
            return math.nan
        # from log-scale sums, so a decisive BF does not become 0 / 0
        lpm = lp - special.logsumexp(lp)
        lpo = special.logsumexp(lpm[mask.to_numpy()]) - special.logsumexp(lpm[~mask.to_numpy()])
        return float(math.exp(min(lpo - math.log(pr / pr0), 700.0)))

    inc = {"effect": inclusion_bf(models["effect"]), "heterogeneity": inclusion_bf(models["heterogeneity"]),
           "bias": inclusion_bf(models["bias"] != "none")}
    # the model-averaged posterior: a mixture of the models' draws, weighted by P(M | y)
    rng = np.random.default_rng(next(seeds))
    n_avg = 10 * draws
    counts = rng.multinomial(n_avg, models["posterior_prob"].to_numpy())
    mu_avg, tau_avg = [], []
    for name, c in zip(models["name"], counts):
        if c:
            d = model_draws[name]
            idx = rng.integers(0, d["mu"].size, c)
            mu_avg.append(d["mu"][idx])
            tau_avg.append(d["tau"][idx])
    return BiasEnsemble(models, inc, np.concatenate(mu_avg), np.concatenate(tau_avg), model_draws, fits,
                        level, int(y.size), time.perf_counter() - t_start, priors)
