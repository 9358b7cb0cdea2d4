"""Prior sensitivity: refit one meta-analysis under a grid of priors and tabulate what changes.

Model (each grid entry supplies the priors)::

    y_i ~ N(x_i' beta + u_i, v_i),  u_i ~ N(0, tau^2),  beta_j ~ p_j(beta_j),  tau ~ p(tau).

With normal random effects and normal priors on every coefficient the posterior is computed by the
exact quadrature engine (:func:`bayes_se.exact.exact_posterior`, milliseconds per prior); any other
combination (a Student-t or uniform prior on mu, Student-t random effects, a three-level model,
``engine="mcmc"``) goes to MCMC, where one fit serves the whole grid: the first MCMC entry is
sampled (the *base*), and every other MCMC entry is the base's draws importance-reweighted by the
prior ratio ``w_s = p_new(theta_s) / p_base(theta_s)`` over the parameters whose prior changed,
Pareto-smoothed (PSIS). An entry is refitted by MCMC (one compiled model per prior) when the
Pareto k-hat of its weights exceeds :data:`PARETO_K_MAX` (the new prior is too far from the
base), when its prior has support the base's lacks, or when it changes the likelihood (a ``nu``
prior for Student-t effects).

Grid syntax
-----------
Each entry of ``priors`` is a string or a list of strings. A string is split at ``;`` into pieces
(a list gives the pieces directly); every piece is either

* a preset name (:data:`bayes_se.priors.PRESETS`, e.g. ``default``, ``vague``,
  ``rhodes2015_mental_nonpharm_vs_control``) -- at most one per entry, or
* an assignment ``PARAM = family(args)`` (or ``PARAM ~ ...``) as read by
  :func:`bayes_se.priors.parse_assignment`, with ``PARAM`` one of ``mu``, ``beta`` (every
  coefficient but the intercept), ``beta[NAME]``, ``tau`` or ``tau2``.

The priors of an entry are its preset's (``default`` when none is named) overridden by its
assignments, in order. ``"vague; tau=half_normal(1)"`` is the vague preset with a half-normal
tau prior; ``"mu=normal(0, 10); tau=half_normal(1)"`` changes two priors of the default preset.
The entry's label in the table is its pieces joined by ``"; "``.

In a meta-regression the intercept takes the ``mu`` prior and the other coefficients the ``beta``
prior, unless ``beta[NAME]`` names them (the convention of :func:`bayes_se.priors.parse_assignment`).

References
----------
Depaoli S, Winter SD, Visser M (2020). The importance of prior sensitivity analysis in Bayesian
statistics: demonstrations using an interactive Shiny app. Front Psychol 11:608045.
Kruschke JK (2021). Bayesian analysis reporting guidelines. Nat Hum Behav 5:1282-1291 (step 5,
sensitivity analysis).
Kallioinen N, Paananen T, Bürkner P-C, Vehtari A (2023). Detecting and diagnosing prior and
likelihood sensitivity with power-scaling. Stat Comput 34:57 (prior reweighting of one fit).
Vehtari A, Simpson D, Gelman A, Yao Y, Gabry J (2024). Pareto smoothed importance sampling. JMLR
25(72):1-58 (the smoothing and the k-hat < 0.7 threshold).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import numpy as np
import pandas as pd

from bayes_se import defaults
from bayes_se.errors import DataError, SpecError
from bayes_se.exact import exact_posterior
from bayes_se.priors import PRESETS, Prior, coefficient_priors, preset, prior_overrides

__all__ = ["ReweightedFit", "SensitivityResult", "sensitivity", "parse_grid_entry"]

DEFAULT_PRESET = "default"
ENGINES = ("auto", "exact", "mcmc")
#: MCMC settings of a sensitivity refit: each grid entry is one fit, so fewer draws than a main
#: analysis; 4 x 1000 draws keep the Monte Carlo error of a 95% bound near 2% of the posterior SD.
MCMC_DEFAULTS = {"draws": 1000, "tune": 1000, "chains": 4}
DEFAULT_SEED = defaults.SEED  # the default [sampler] seed of bayes_se.spec
#: Largest Pareto k-hat at which a reweighted entry is reported; above it the entry is refitted.
#: 0.7 is the PSIS reliability threshold of Vehtari et al. (2024) for the draw counts used here.
PARETO_K_MAX = 0.7


# ---------------------------------------------------------------------------------------------
# grid entries
# ---------------------------------------------------------------------------------------------
def parse_grid_entry(entry: str | Sequence[str]) -> tuple[str, dict[str, Prior]]:
    """Read one grid entry into ``(label, priors)``; see the module docstring for the syntax.

    Parameters
    ----------
    entry : str or sequence of str
        ``"default"``, ``"tau=half_cauchy(0.5)"``, ``"vague; tau=half_normal(1)"``,
        ``["rhodes2015_general", "mu=normal(0, 0.5)"]``.

    Returns
    -------
    label : str
        The pieces joined by ``"; "``.
    priors : dict of str to Prior
        Keys ``mu``, ``beta``, ``tau`` (a ``tau2`` assignment is stored under ``tau``; its target
        says ``tau2``) and any ``beta[NAME]``.

    Raises
    ------
    SpecError
        Key ``priors``: an empty entry, two presets in one entry, an unknown preset or parameter,
        a malformed prior.
    """
    try:
        name, given = prior_overrides(entry, bare_preset=True)
        priors = preset(name or DEFAULT_PRESET)
    except SpecError as exc:
        raise SpecError(f"grid entry {entry!r}: {exc}", key="priors") from None
    for param, prior in given.items():
        priors["tau" if param == "tau2" else param] = prior
    pieces = [p.strip() for p in (entry.split(";") if isinstance(entry, str) else entry) if p.strip()]
    return "; ".join(pieces), priors


def _exact_ok(coef: list[Prior], effects: str, three_level: bool) -> bool:
    return effects == "normal" and not three_level and all(p.family == "normal" for p in coef)


# ---------------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SensitivityResult:
    """The fits of one model under a grid of priors.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per grid entry: ``prior``, ``engine``, ``mu_mean``, ``mu_lower``, ``mu_upper``,
        ``tau_mean``, ``tau_lower``, ``tau_upper``, ``p_positive``, ``p_gt_smallest`` (when a
        smallest effect was given), ``bf_mu0``, ``bf_tau0`` (BF01 of the point nulls, exact engine
        only, NaN otherwise), ``method`` (``exact``, ``mcmc``: sampled, or ``reweighted``: the
        first MCMC entry's draws reweighted to this prior), ``pareto_k`` (k-hat of the
        reweighting tried: at most :data:`PARETO_K_MAX` for a reweighted row, above it for a
        row refitted for that reason, NaN where none was tried), then for a meta-regression ``beta[NAME]_mean``, ``_lower``,
        ``_upper``, ``_p_positive`` of each non-intercept coefficient. In a meta-regression the
        ``mu`` columns describe the intercept.
    fits : dict
        Label -> :class:`~bayes_se.exact.ExactPosterior`, :class:`~bayes_se.results.BayesianFit`
        or :class:`ReweightedFit`.
    priors : dict
        Label -> the entry's priors (``mu``, ``beta``, ``tau``, ...).
    level : float
    smallest_effect : float or None
    seconds : float
        Wall time of all the fits.
    """

    table: pd.DataFrame
    fits: dict
    priors: dict
    level: float = 0.95
    smallest_effect: float | None = None
    seconds: float = math.nan

    def plot(self, **kwargs):
        """The sensitivity plot of :mod:`bayes_se.plots.sensitivity` (a matplotlib Figure)."""
        try:
            from bayes_se.plots.sensitivity import plot_sensitivity
        except ImportError as exc:  # the plots package is optional for this module
            raise ImportError(f"bayes_se.plots.sensitivity is not available ({exc})") from None
        return plot_sensitivity(self, **kwargs)


# ---------------------------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------------------------
def _as_effects(data):
    if hasattr(data, "yi") and hasattr(data, "vi"):
        return data
    if isinstance(data, pd.DataFrame):
        from bayes_se.data import load_effects

        return load_effects(data)
    raise DataError(f"data must be an EffectData or a pandas DataFrame, not {type(data).__name__}")


def _design(data, mods, na="omit"):
    """(data, X, names): the rows with every moderator present, and their design (None: intercept only)."""
    data, design = data.model_data(mods or None, na=na)
    if not mods:
        return data, None, ["intercept"]
    return data, design.X, list(design.names)


def _exact_row(data, X, names, coef, tau_prior, level, smallest):
    post = exact_posterior(data.yi, data.vi, X, coef_names=names, study=data.study,
                           beta_mean=[p.params["mu"] for p in coef],
                           beta_sd=[p.params["sigma"] for p in coef],
                           tau_prior=tau_prior, level=level)
    a = 0.5 * (1.0 - level)
    par = ["mu"] if X is None else [f"beta[{n}]" for n in names]

    def stats(name):
        lo, hi = post.quantile(name, [a, 1.0 - a])
        return post.mean(name), float(lo), float(hi), post.prob(name, ">", 0.0)

    row = {}
    if "intercept" in names:
        mu = par[names.index("intercept")]
        row["mu_mean"], row["mu_lower"], row["mu_upper"], row["p_positive"] = stats(mu)
        if smallest is not None:
            row["p_gt_smallest"] = post.prob(mu, ">", smallest)
        with np.errstate(all="ignore"):
            row["bf_mu0"] = post.bayes_factor(f"{mu}=0")
    row["tau_mean"] = post.mean("tau")
    row["tau_lower"], row["tau_upper"] = (float(t) for t in post.quantile("tau", [a, 1.0 - a]))
    # p(y | tau = 0) / p(y): defined for every proper tau prior (log-t and inverse-gamma included)
    bf = post.bayes_factor("tau0")
    row["bf_tau0"] = bf if math.isfinite(bf) else math.nan
    for name, p in zip(names, par):
        if name != "intercept":
            m, lo, hi, pp = stats(p)
            row.update({f"beta[{name}]_mean": m, f"beta[{name}]_lower": lo, f"beta[{name}]_upper": hi,
                        f"beta[{name}]_p_positive": pp})
    return post, row


def _sd_priors(priors, three_level):
    """The heterogeneity SD priors of the model: ``tau``, or ``sigma_cluster`` / ``sigma_effect``
    (each defaulting to the ``tau`` prior) in a three-level model."""
    if three_level:
        return {key: priors.get(key, priors["tau"]) for key in ("sigma_cluster", "sigma_effect")}
    return {"tau": priors["tau"]}


def _mcmc_fit(data, X, names, priors, effects, three_level, seed, mcmc):
    from bayes_se.api import fit_random_effects, fit_three_level

    opts = dict(MCMC_DEFAULTS, **(mcmc or {}))
    # the builders apply the same coefficient rule (mu / beta[NAME] / beta) to these priors
    pri = {k: v for k, v in priors.items() if k in ("mu", "beta") or k.startswith("beta[")}
    pri.update(_sd_priors(priors, three_level))
    if three_level:
        if data.cluster is None:
            raise DataError("a three-level model needs a cluster column", column="cluster")
        return fit_three_level(data.yi, data.vi, data.cluster, X=X, coef_names=names if X is not None else None,
                               study=data.study, priors=pri, seed=seed, **opts)
    if effects == "student_t" and priors.get("nu") is not None:
        pri["nu"] = priors["nu"]
    return fit_random_effects(data.yi, data.vi, X=X, coef_names=names if X is not None else None,
                              study=data.study, priors=pri, effects=effects, seed=seed, **opts)


def _posterior_draws(fit, X, names):
    """Flat draws (chain-major) of each coefficient, of each heterogeneity SD and of the total SD."""
    post = fit.idata.posterior
    coef = [post["mu"] if X is None else post["beta"].isel(coef=j) for j in range(len(names))]
    sds = {key: np.asarray(post[key], dtype=float).ravel()
           for key in ("tau", "sigma_cluster", "sigma_effect") if key in post}
    if "tau" in sds:
        total = sds["tau"]
    else:  # three-level: the total heterogeneity SD
        total = np.sqrt(sds["sigma_cluster"] ** 2 + sds["sigma_effect"] ** 2)
    return [np.asarray(c, dtype=float).ravel() for c in coef], sds, total


def _draws_row(coef, total, names, weights, level, smallest):
    """Table columns from posterior draws, optionally importance-weighted (normalised weights)."""
    a = 0.5 * (1.0 - level)

    def stats(x):
        if weights is None:
            lo, hi = np.quantile(x, [a, 1.0 - a])
            return float(x.mean()), float(lo), float(hi), float(np.mean(x > 0))
        # NumPy's weighted quantile (the inverse of the weighted empirical CDF)
        lo, hi = np.quantile(x, [a, 1.0 - a], weights=weights, method="inverted_cdf")
        return float(weights @ x), float(lo), float(hi), float(weights @ (x > 0))

    row = {}
    if "intercept" in names:
        x = coef[names.index("intercept")]
        row["mu_mean"], row["mu_lower"], row["mu_upper"], row["p_positive"] = stats(x)
        if smallest is not None:
            row["p_gt_smallest"] = float(np.mean(x > smallest) if weights is None else weights @ (x > smallest))
    row["bf_mu0"] = math.nan
    row["tau_mean"], row["tau_lower"], row["tau_upper"], _ = stats(total)
    row["bf_tau0"] = math.nan
    for j, name in enumerate(names):
        if name != "intercept":
            m, lo, hi, pp = stats(coef[j])
            row.update({f"beta[{name}]_mean": m, f"beta[{name}]_lower": lo, f"beta[{name}]_upper": hi,
                        f"beta[{name}]_p_positive": pp})
    return row


def _mcmc_row(data, X, names, priors, effects, three_level, level, smallest, seed, mcmc):
    fit = _mcmc_fit(data, X, names, priors, effects, three_level, seed, mcmc)
    coef, _, total = _posterior_draws(fit, X, names)
    return fit, _draws_row(coef, total, names, None, level, smallest)


@dataclasses.dataclass
class ReweightedFit:
    """One grid entry computed from another entry's MCMC draws by Pareto-smoothed importance
    sampling: draw ``s`` of the base fit gets weight ``w_s`` proportional to
    ``p_new(theta_s) / p_base(theta_s)``.

    Attributes
    ----------
    base_label : str
        The grid entry whose fit was sampled.
    base : BayesianFit
        That fit.
    log_weights : numpy.ndarray
        PSIS-smoothed, normalised log weights, shape ``(chain, draw)`` of the base posterior.
    pareto_k : float
        Pareto k-hat of the raw weights (reliable at or below :data:`PARETO_K_MAX`).
    ess : float
        PSIS effective sample size ``r_eff / sum(w_s^2)`` (Vehtari et al. 2024, eq. 6 with the
        relative efficiency of the weights over the chains).
    """

    base_label: str
    base: object
    log_weights: np.ndarray
    pareto_k: float
    ess: float

    @property
    def weights(self) -> np.ndarray:
        """Normalised weights, flattened chain-major like the draws."""
        return np.exp(self.log_weights.ravel())


def _support(prior):
    """Interval outside which the prior's density is zero (on the SD for tau-type priors)."""
    if prior.family == "uniform":
        return float(prior.params["lower"]), float(prior.params["upper"])
    return (-math.inf, math.inf) if prior.kind == "real" else (0.0, math.inf)


def _reweight(base, coef, sds, nu, draws, names, coef_new, sds_new, nu_new):
    """PSIS-reweight the base fit's draws to new priors; None when importance sampling cannot
    represent the new posterior (the caller refits)."""
    import arviz as az

    # nu (Student-t effects) enters p(y | theta) through the effects' distribution, and a fixed nu
    # versus a nu prior are different parameter spaces: a change there is not a prior ratio on the
    # base's draws, so such an entry is refitted.
    if nu_new != nu:
        return None
    pairs = [(p_new, p_base, x) for p_new, p_base, x in zip(coef_new, coef, draws[0])]
    pairs += [(sds_new[k], sds[k], draws[1][k]) for k in sds]
    changed = [(pn, pb, x) for pn, pb, x in pairs if pn != pb]
    if not all(isinstance(pn, Prior) and isinstance(pb, Prior) for pn, pb, _ in changed):
        return None
    for pn, pb, _ in changed:  # the base must have drawn wherever the new prior has mass
        (lo_n, hi_n), (lo_b, hi_b) = _support(pn), _support(pb)
        if lo_n < lo_b or hi_n > hi_b:
            return None
    shape = base.idata.posterior.sizes["chain"], base.idata.posterior.sizes["draw"]
    n = shape[0] * shape[1]
    if not changed:  # the same priors written differently: every weight is 1
        return np.full(shape, -math.log(n)), 0.0, float(n)
    lw = np.zeros(n)
    for pn, pb, x in changed:
        if pn.kind == "real":
            lw += pn.logpdf(x) - pb.logpdf(x)
        else:  # densities of the SD itself on both sides, so the sampler's parametrisation cancels
            lw += pn.tau_logpdf(x) - pb.tau_logpdf(x)
    finite = np.isfinite(lw)
    if not finite.any():
        return None
    # relative efficiency of the weights over the chains (the r_eff of PSIS-LOO)
    raw = np.where(finite, np.exp(lw - lw[finite].max()), 0.0).reshape(shape)
    r_eff = float(az.ess(raw, method="mean")) / n
    if not math.isfinite(r_eff) or r_eff <= 0:
        r_eff = 1.0
    smoothed, k = az.psislw(lw, reff=r_eff)
    w = np.exp(smoothed)
    return smoothed.reshape(shape), float(k), r_eff / float(np.sum(w**2))


#: Why :func:`sensitivity` refuses a location-scale model (``bayes-se sensitivity`` prints it).
SCALE_REFUSAL = ("prior sensitivity does not refit location-scale models (model.scale); fit each prior with "
                 "bayes-se fit --prior (e.g. 'alpha[NAME]=normal(0, 1)') instead")


def sensitivity(data, priors: Sequence[str | Sequence[str]] = ("default", "vague"), *, mods: str | None = None,
                engine: str = "auto", effects: str = "normal", three_level: bool = False,
                smallest_effect: float | None = None, seed: int = DEFAULT_SEED, level: float = 0.95,
                mcmc: dict | None = None, na: str = "omit", scale: str | None = None) -> SensitivityResult:
    """Fit the same model under each prior of a grid and tabulate the posteriors side by side.

    ``y_i ~ N(x_i' beta + u_i, v_i)``, ``u_i ~ N(0, tau^2)``, with the priors on beta and tau
    taken in turn from each grid entry (syntax in the module docstring).

    Parameters
    ----------
    data : EffectData or pandas.DataFrame
        The effects (a DataFrame is read by :func:`bayes_se.data.load_effects`).
    priors : sequence
        Grid entries: preset names, assignment strings or lists of them.
    mods : str, optional
        Moderator formula (meta-regression).
    engine : {"auto", "exact", "mcmc"}
        ``auto``: the exact engine where the model allows it (normal effects, normal coefficient
        priors, two levels), MCMC for the other entries. ``exact`` raises for an entry it cannot
        fit; ``mcmc`` uses MCMC for every entry. Of the MCMC entries the first is sampled and the
        others are PSIS-reweighted from it where the Pareto k-hat allows (module docstring).
    effects : {"normal", "student_t"}
        Random-effects distribution (Student-t needs MCMC).
    three_level : bool
        Fit the three-level model on ``data.cluster`` (MCMC); its ``tau`` columns are the total
        heterogeneity SD ``sqrt(sigma_cluster^2 + sigma_effect^2)``.
    smallest_effect : float, optional
        Adds ``p_gt_smallest`` = P(mu > smallest_effect | y).
    seed : int
        Seed of every MCMC fit (the same for each entry, so differences are the prior's).
    level : float
        Credible level of the intervals.
    mcmc : dict, optional
        Sampler settings for MCMC entries (``draws``, ``tune``, ``chains``, ...), default
        :data:`MCMC_DEFAULTS`.
    na : {"omit", "error"}
        A row with a missing moderator: left out of every fit (with a warning), or refused.
    scale : str, optional
        A location-scale model's scale formula: refused (:data:`SCALE_REFUSAL`), never dropped.

    Returns
    -------
    SensitivityResult

    References
    ----------
    Kruschke JK (2021). Bayesian analysis reporting guidelines. Nat Hum Behav 5:1282-1291.
    Kallioinen N, Paananen T, Bürkner P-C, Vehtari A (2023). Stat Comput 34:57.
    Vehtari A, Simpson D, Gelman A, Yao Y, Gabry J (2024). Pareto smoothed importance sampling.
    JMLR 25(72):1-58.
    """
    if scale:
        raise SpecError(SCALE_REFUSAL, key="model.scale")
    if engine not in ENGINES:
        raise SpecError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}", key="engine")
    if not 0.0 < float(level) < 1.0:
        raise SpecError(f"level must lie strictly between 0 and 1, got {level}", key="level")
    if isinstance(priors, str):
        priors = [priors]
    if not priors:
        raise SpecError("the prior grid is empty", key="priors")
    data = _as_effects(data)
    data, X, names = _design(data, mods, na)
    entries = [parse_grid_entry(e) for e in priors]
    labels = [lab for lab, _ in entries]
    if len(set(labels)) != len(labels):
        dup = next(lab for lab in labels if labels.count(lab) > 1)
        raise SpecError(f"grid entry '{dup}' is given twice", key="priors")
    rows, fits, used = [], {}, {}
    base = None  # (label, fit, coefficient priors, SD priors, nu prior, draws) of the first MCMC entry
    start = time.perf_counter()
    for label, pri in entries:
        coef = coefficient_priors(pri, names)
        exact = engine != "mcmc" and _exact_ok(coef, effects, three_level)
        if engine == "exact" and not exact:
            raise SpecError(f"grid entry '{label}' needs MCMC (the exact engine takes normal effects, normal "
                            "coefficient priors and two levels); use engine='auto'", key="engine")
        pareto_k = math.nan
        if exact:
            fit, row = _exact_row(data, X, names, coef, pri["tau"], level, smallest_effect)
            method = "exact"
        else:
            sds, nu = _sd_priors(pri, three_level), pri.get("nu") if effects == "student_t" else None
            rw = None
            if base is not None:
                b_label, b_fit, b_coef, b_sds, b_nu, draws = base
                rw = _reweight(b_fit, b_coef, b_sds, b_nu, draws, names, coef, sds, nu)
            if rw is not None:
                pareto_k = rw[1]
            if rw is not None and rw[1] <= PARETO_K_MAX:
                fit = ReweightedFit(b_label, b_fit, rw[0], rw[1], rw[2])
                row = _draws_row(draws[0], draws[2], names, fit.weights, level, smallest_effect)
                method = "reweighted"
            else:
                fit, row = _mcmc_row(data, X, names, pri, effects, three_level, level, smallest_effect,
                                     seed, mcmc)
                method = "mcmc"
                if base is None:
                    base = (label, fit, coef, sds, nu, _posterior_draws(fit, X, names))
        rows.append({"prior": label, "engine": "exact" if exact else "mcmc", **row, "method": method,
                     "pareto_k": pareto_k})
        fits[label], used[label] = fit, pri
    seconds = time.perf_counter() - start
    base = ["prior", "engine", "mu_mean", "mu_lower", "mu_upper", "tau_mean", "tau_lower", "tau_upper",
            "p_positive"] + (["p_gt_smallest"] if smallest_effect is not None else []) + ["bf_mu0", "bf_tau0",
                                                                                "method", "pareto_k"]
    table = pd.DataFrame(rows)
    extra = [c for c in table.columns if c not in base]
    table = table.reindex(columns=base + extra)
    return SensitivityResult(table=table, fits=fits, priors=used, level=float(level),
                             smallest_effect=smallest_effect, seconds=seconds)


def known_presets() -> list[str]:
    """Names usable as grid entries on their own."""
    return list(PRESETS)
