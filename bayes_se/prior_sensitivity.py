"""Prior sensitivity: refit one meta-analysis under a grid of priors and tabulate what changes.

Model (each grid entry supplies the priors)::

    y_i ~ N(x_i' beta + u_i, v_i),  u_i ~ N(0, tau^2),  beta_j ~ p_j(beta_j),  tau ~ p(tau).

With normal random effects and normal priors on every coefficient the posterior is computed by the
exact quadrature engine (:func:`bayes_se.exact.exact_posterior`, milliseconds per prior); any other
combination (a Student-t or uniform prior on mu, Student-t random effects) is refitted by MCMC,
one compiled model per prior (the prior enters the graph as constants, so each prior recompiles).

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
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import numpy as np
import pandas as pd

from bayes_se.errors import DataError, SpecError
from bayes_se.exact import exact_posterior
from bayes_se.priors import PRESETS, Prior, coefficient_priors, parse_assignment, preset

__all__ = ["SensitivityResult", "sensitivity", "parse_grid_entry"]

DEFAULT_PRESET = "default"
ENGINES = ("auto", "exact", "mcmc")
#: MCMC settings of a sensitivity refit: each grid entry is one fit, so fewer draws than a main
#: analysis; 4 x 1000 draws keep the Monte Carlo error of a 95% bound near 2% of the posterior SD.
MCMC_DEFAULTS = {"draws": 1000, "tune": 1000, "chains": 4}
DEFAULT_SEED = 20251121  # the default [sampler] seed of bayes_se.spec


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
    if isinstance(entry, str):
        pieces = [p.strip() for p in entry.split(";")]
    elif isinstance(entry, (list, tuple)) and all(isinstance(p, str) for p in entry):
        pieces = [p.strip() for p in entry]
    else:
        raise SpecError(f"a grid entry must be a string or a list of strings, got {entry!r}", key="priors")
    pieces = [p for p in pieces if p]
    if not pieces:
        raise SpecError(f"empty grid entry {entry!r}", key="priors")
    names = [p for p in pieces if "=" not in p and "~" not in p]
    if len(names) > 1:
        raise SpecError(f"grid entry '{'; '.join(pieces)}' names {len(names)} presets ({', '.join(names)}); "
                        "give at most one", key="priors")
    try:
        priors = preset(names[0] if names else DEFAULT_PRESET)
    except SpecError as exc:
        raise SpecError(f"grid entry '{'; '.join(pieces)}': {exc}", key="priors") from None
    for piece in pieces:
        if piece in names:
            continue
        try:
            param, prior = parse_assignment(piece)
        except SpecError as exc:
            raise SpecError(f"grid entry '{'; '.join(pieces)}': {exc}", key="priors") from None
        priors["tau" if param == "tau2" else param] = prior
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
        only, NaN otherwise), then for a meta-regression ``beta[NAME]_mean``, ``_lower``,
        ``_upper``, ``_p_positive`` of each non-intercept coefficient. In a meta-regression the
        ``mu`` columns describe the intercept.
    fits : dict
        Label -> :class:`~bayes_se.exact.ExactPosterior` or :class:`~bayes_se.results.BayesianFit`.
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


def _design(data, mods):
    if not mods:
        return None, ["intercept"]
    X, names = data.design(mods)
    return X, list(names)


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


def _mcmc_row(data, X, names, coef, priors, effects, three_level, level, smallest, seed, mcmc):
    from bayes_se.results import fit_random_effects, fit_three_level

    opts = dict(MCMC_DEFAULTS, **(mcmc or {}))
    # the builders apply the same coefficient rule (mu / beta[NAME] / beta) to these priors
    pri = {k: v for k, v in priors.items() if k in ("mu", "beta", "tau") or k.startswith("beta[")}
    if three_level:
        if data.cluster is None:
            raise DataError("a three-level model needs a cluster column", column="cluster")
        for key in ("sigma_cluster", "sigma_effect"):
            pri[key] = priors.get(key, priors["tau"])
        pri.pop("tau")
        fit = fit_three_level(data.yi, data.vi, data.cluster, X=X, coef_names=names if X is not None else None,
                              study=data.study, priors=pri, seed=seed, **opts)
    else:
        fit = fit_random_effects(data.yi, data.vi, X=X, coef_names=names if X is not None else None,
                                 study=data.study, priors=pri, effects=effects, seed=seed, **opts)
    post = fit.idata.posterior
    a = 0.5 * (1.0 - level)

    def stats(x):
        x = np.asarray(x, dtype=float).ravel()
        lo, hi = np.quantile(x, [a, 1.0 - a])
        return float(x.mean()), float(lo), float(hi), float(np.mean(x > 0))

    def coef_draws(j):
        return post["mu"] if X is None else post["beta"].isel(coef=j)

    row = {}
    if "intercept" in names:
        x = coef_draws(names.index("intercept"))
        row["mu_mean"], row["mu_lower"], row["mu_upper"], row["p_positive"] = stats(x)
        if smallest is not None:
            row["p_gt_smallest"] = float(np.mean(np.asarray(x) > smallest))
    row["bf_mu0"] = math.nan
    if "tau" in post:
        sd = post["tau"]
    else:  # three-level: the total heterogeneity SD
        sd = np.sqrt(post["sigma_cluster"] ** 2 + post["sigma_effect"] ** 2)
    row["tau_mean"], row["tau_lower"], row["tau_upper"], _ = stats(sd)
    row["bf_tau0"] = math.nan
    for j, name in enumerate(names):
        if name != "intercept":
            m, lo, hi, pp = stats(coef_draws(j))
            row.update({f"beta[{name}]_mean": m, f"beta[{name}]_lower": lo, f"beta[{name}]_upper": hi,
                        f"beta[{name}]_p_positive": pp})
    return fit, row


def sensitivity(data, priors: Sequence[str | Sequence[str]] = ("default", "vague"), *, mods: str | None = None,
                engine: str = "auto", effects: str = "normal", three_level: bool = False,
                smallest_effect: float | None = None, seed: int = DEFAULT_SEED, level: float = 0.95,
                mcmc: dict | None = None) -> SensitivityResult:
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
        fit; ``mcmc`` samples every entry.
    effects : {"normal", "student_t"}
        Random-effects distribution (Student-t needs MCMC).
    three_level : bool
        Fit the three-level model on ``data.cluster`` (MCMC); its ``tau`` columns are the total
        heterogeneity SD ``sqrt(sigma_cluster^2 + sigma_effect^2)``.
    smallest_effect : float, optional
        Adds ``p_gt_smallest`` = P(mu > smallest_effect | y).
    seed : int
        Seed of every MCMC refit (the same for each entry, so differences are the prior's).
    level : float
        Credible level of the intervals.
    mcmc : dict, optional
        Sampler settings for MCMC entries (``draws``, ``tune``, ``chains``, ...), default
        :data:`MCMC_DEFAULTS`.

    Returns
    -------
    SensitivityResult

    References
    ----------
    Kruschke JK (2021). Bayesian analysis reporting guidelines. Nat Hum Behav 5:1282-1291.
    """
    if engine not in ENGINES:
        raise SpecError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}", key="engine")
    if not 0.0 < float(level) < 1.0:
        raise SpecError(f"level must lie strictly between 0 and 1, got {level}", key="level")
    if isinstance(priors, str):
        priors = [priors]
    if not priors:
        raise SpecError("the prior grid is empty", key="priors")
    data = _as_effects(data)
    X, names = _design(data, mods)
    entries = [parse_grid_entry(e) for e in priors]
    labels = [lab for lab, _ in entries]
    if len(set(labels)) != len(labels):
        dup = next(lab for lab in labels if labels.count(lab) > 1)
        raise SpecError(f"grid entry '{dup}' is given twice", key="priors")
    rows, fits, used = [], {}, {}
    start = time.perf_counter()
    for label, pri in entries:
        coef = coefficient_priors(pri, names)
        exact = engine != "mcmc" and _exact_ok(coef, effects, three_level)
        if engine == "exact" and not exact:
            raise SpecError(f"grid entry '{label}' needs MCMC (the exact engine takes normal effects, normal "
                            "coefficient priors and two levels); use engine='auto'", key="engine")
        if exact:
            fit, row = _exact_row(data, X, names, coef, pri["tau"], level, smallest_effect)
        else:
            fit, row = _mcmc_row(data, X, names, coef, pri, effects, three_level, level, smallest_effect,
                                 seed, mcmc)
        rows.append({"prior": label, "engine": "exact" if exact else "mcmc", **row})
        fits[label], used[label] = fit, pri
    seconds = time.perf_counter() - start
    base = ["prior", "engine", "mu_mean", "mu_lower", "mu_upper", "tau_mean", "tau_lower", "tau_upper",
            "p_positive"] + (["p_gt_smallest"] if smallest_effect is not None else []) + ["bf_mu0", "bf_tau0"]
    table = pd.DataFrame(rows)
    extra = [c for c in table.columns if c not in base]
    table = table.reindex(columns=base + extra)
    return SensitivityResult(table=table, fits=fits, priors=used, level=float(level),
                             smallest_effect=smallest_effect, seconds=seconds)


def known_presets() -> list[str]:
    """Names usable as grid entries on their own."""
    return list(PRESETS)
