"""One entry point for a Bayesian fit: data + spec (+ overrides) -> a result object.

:func:`fit` reads the spec (a :class:`bayes_se.spec.ModelSpec`, a TOML path or text, or the default
random-effects spec), applies the caller's overrides (priors, moderators, engine, seed), builds the
design matrix once and hands the numbers to the engine the spec asks for:

* ``engine = "exact"``: :func:`bayes_se.exact.exact_posterior` (normal-normal models with normal
  priors on mu/beta; quadrature over tau, no sampling) wrapped in :class:`ExactFit`;
* ``engine = "mcmc"``: :func:`bayes_se.results.fit_random_effects` or
  :func:`bayes_se.results.fit_three_level` (PyMC), returning :class:`bayes_se.results.BayesianFit`.

This module only wires; the maths lives in the engines.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayes_se.errors import DataError, PriorScaleWarning, SpecError
from bayes_se.priors import coefficient_priors

#: Spec used when none is given: the values of ``models/random_effects.toml`` (a test keeps the
#: two equal), built in so that an installed package needs no file from the repository.
DEFAULT_SPEC_TEXT = """
[model]
type = "random_effects"
[priors]
preset = "default"
mu = "normal(0, 1)"
tau = "half_normal(0.5)"
[summary]
smallest_effect = 0.2
"""


def resolve_spec(spec=None, *, priors=None, mods=None, engine=None, seed=None):
    """The :class:`~bayes_se.spec.ModelSpec` to fit, with the caller's overrides applied.

    Parameters
    ----------
    spec : ModelSpec, path, TOML text or None
    priors : sequence of str or mapping, optional
        ``["mu=normal(0, 1)", "tau=half_normal(0.5)"]`` (brms-like strings; ``preset=NAME`` picks a
        preset) or a mapping ``{"mu": Prior or str}``.
    mods : str, optional
        Moderator formula; replaces the spec's.
    engine : {"mcmc", "exact"}, optional
    seed : int, optional
    """
    import dataclasses

    from bayes_se.priors import parse_assignment
    from bayes_se.spec import ModelSpec, load_spec

    if spec is None:
        spec = load_spec(DEFAULT_SPEC_TEXT)
    elif not isinstance(spec, ModelSpec):
        spec = load_spec(spec)
    if mods is not None:
        spec = spec.with_mods(mods)
    if priors:
        if isinstance(priors, str):
            priors = [priors]
        if not hasattr(priors, "items"):
            mapping = {}
            for text in priors:
                key, _, value = str(text).partition("=")
                if key.strip() == "preset":
                    mapping["preset"] = value.strip()
                    continue
                name, prior = parse_assignment(text)
                mapping[name] = prior
            priors = mapping
        spec = spec.with_priors(priors)
    if engine is not None or seed is not None:
        sampler = spec.sampler
        if engine is not None:
            sampler = dataclasses.replace(sampler, engine=engine)
        if seed is not None:
            sampler = dataclasses.replace(sampler, seed=int(seed))
        spec = dataclasses.replace(spec, sampler=sampler)
    return spec


def load_data(data, spec):
    """An :class:`~bayes_se.data.EffectData` from a path/DataFrame (column names from ``spec.data``)."""
    from bayes_se.data import EffectData, load_effects

    if isinstance(data, EffectData):
        return data
    cols = spec.data
    return load_effects(
        data,
        effect=cols.effect,
        variance=cols.variance or "vi",
        se=cols.se or None,
        study=cols.study,
        cluster=cols.cluster or None,
    )


@dataclass
class ExactFit:
    """A normal-normal model solved by quadrature (:mod:`bayes_se.exact`): no sampling, no MCMC
    diagnostics to fail. ``posterior`` is the :class:`~bayes_se.exact.ExactPosterior`."""

    posterior: object
    data: object
    spec: object
    coef_names: list = field(default_factory=list)

    def summary(self, theta: bool = True) -> pd.DataFrame:
        return self.posterior.summary(theta=theta)

    def prob_greater(self, x: float = 0.0) -> dict:
        names = ["mu"] if self.coef_names == ["intercept"] else [f"beta[{c}]" for c in self.coef_names]
        return {n: self.posterior.prob(n, ">", x) for n in names}

    @property
    def log_marginal_likelihood(self) -> float:
        return float(self.posterior.log_marginal_likelihood)

    def bayes_factors(self) -> dict:
        """BF01 for mu = 0 (intercept-only models) and for tau = 0 (inf or 0 where it overflows:
        :meth:`log_bayes_factors` stays finite)."""
        out = {"tau0": float(self.posterior.bayes_factor("tau0"))}
        out["mu0"] = float(self.posterior.bayes_factor("mu0")) if self.coef_names == ["intercept"] else None
        return out

    def log_bayes_factors(self) -> dict:
        """Natural logs of the Bayes factors of :meth:`bayes_factors` (NaN where undefined)."""
        out = {"tau0": float(self.posterior.log_bayes_factor("tau0"))}
        out["mu0"] = (float(self.posterior.log_bayes_factor("mu0")) if self.coef_names == ["intercept"]
                      else None)
        return out

    def improper_notes(self) -> list:
        """Why the marginal likelihood / Bayes factors are undefined (flat priors), else []."""
        flat = [k for k, v in self.spec.resolved_priors().items() if getattr(v, "improper", False)
                and (k in ("mu", "tau") or k.startswith("beta"))]
        if not flat:
            return []
        notes = [f"improper flat prior on {', '.join(flat)}: the log marginal likelihood is undefined (no "
                 "normalising constant)"]
        if "tau" in flat:
            notes.append("BF01 for tau = 0 is undefined under a flat tau prior")
        if "mu" in flat:
            notes.append("BF01 for mu = 0 is undefined under a flat mu prior")
        if any(not math.isfinite(v) for v in self.summary(theta=False)["sd"]):
            notes.append("inf: a posterior moment that does not exist (a flat tau prior leaves p(tau | y) "
                         "a power-law tail)")
        return notes

    def to_dict(self) -> dict:
        table = self.summary()
        params = {name: {col: float(row[col]) for col in table.columns} for name, row in table.iterrows()}
        return {
            "engine": "exact",
            "k": int(self.data.k),
            "parameters": params,
            "diagnostics": {"divergences": 0, "max_r_hat": None, "min_ess_bulk": None,
                            "min_ess_tail": None, "passed": True,
                            "note": "exact quadrature: no Monte Carlo error, no sampler diagnostics"},
            "log_marginal_likelihood": self.log_marginal_likelihood,
            "bayes_factors": self.bayes_factors(),
            "log_bayes_factors": self.log_bayes_factors(),
            "prob_greater": {
                "0": self.prob_greater(0.0),
                str(self.spec.summary.smallest_effect): self.prob_greater(self.spec.summary.smallest_effect),
            },
            "priors": {k: str(v) for k, v in self.spec.resolved_priors().items()},
            "notes": self.improper_notes(),
        }

    def print_summary(self) -> str:
        table = self.summary(theta=False)
        lines = [
            f"Bayesian random-effects model, exact engine (quadrature over tau; k = {self.data.k})",
            "priors: " + "; ".join(str(v) for k, v in self.spec.resolved_priors().items()
                                   if k in ("mu", "tau") or (k.startswith("beta") and len(self.coef_names) > 1)),
            "",
            table.to_string(float_format=lambda v: f"{v:.4f}"),
            "",
        ]
        smallest = self.spec.summary.smallest_effect
        for name, p in self.prob_greater(0.0).items():
            lines.append(f"P({name} > 0) = {p:.4f}" + (
                f"    P({name} > {smallest:g}) = {self.prob_greater(smallest)[name]:.4f}" if smallest else ""))
        bf, log_bf = self.bayes_factors(), self.log_bayes_factors()
        lml = self.log_marginal_likelihood
        lines.append(f"log marginal likelihood = {lml:.4f}" if math.isfinite(lml)
                     else "log marginal likelihood: undefined (improper flat prior)")
        for key, what in (("mu0", "mu = 0 vs mu free"), ("tau0", "tau = 0 vs tau free")):
            if bf[key] is None:
                continue
            lines.append(f"BF01 ({what}) = {bf[key]:.4g}    log BF01 = {log_bf[key]:.4f}"
                         if math.isfinite(log_bf[key]) else f"BF01 ({what}): undefined (improper flat prior)")
        lines += [f"note: {n}" for n in self.improper_notes()]
        return "\n".join(lines)

    def to_netcdf(self, path) -> str:
        raise SpecError("the exact engine stores no draws; use --out to write its summary CSV",
                        key="sampler.engine")


#: The effects' scale must exceed the priors' by this factor before :func:`check_prior_scale` warns.
PRIOR_SCALE_FACTOR = 10.0


def check_prior_scale(yi, vi, mu_prior, tau_prior) -> str | None:
    """Warn (:class:`~bayes_se.errors.PriorScaleWarning`) when the effects sit far outside the priors' scale.

    The effects' scale is ``max(|median(y) - m|, sd(y), median(sqrt(v)))`` (``m`` the prior
    location of mu), the priors' ``max(s, tau_99)`` (``s`` mu's prior scale, ``tau_99`` the 99th
    percentile of tau's prior); a warning when the first exceeds :data:`PRIOR_SCALE_FACTOR` times the
    second, as effects in the hundreds under the default ``mu ~ N(0, 1)``, ``tau ~ HalfNormal(0.5)``.

    Returns
    -------
    str or None
        The warning's text (None when the scales agree or a prior has no simple scale).
    """
    params = getattr(mu_prior, "params", {})
    if "mu" in params and "sigma" in params:  # normal, student_t
        m, s = float(params["mu"]), float(params["sigma"])
    elif "lower" in params:  # uniform
        m, s = 0.5 * (params["lower"] + params["upper"]), 0.5 * (params["upper"] - params["lower"])
    else:
        return None
    try:
        tau_99 = float(tau_prior.tau_quantile(0.99))
    except (AttributeError, SpecError, ValueError):
        return None
    y, v = np.asarray(yi, dtype=float), np.asarray(vi, dtype=float)
    data_scale = max(abs(float(np.median(y)) - m), float(np.std(y, ddof=1)) if y.size > 1 else 0.0,
                     float(np.median(np.sqrt(v))))
    prior_scale = max(s, tau_99)
    spread = max(float(np.std(y, ddof=1)) if y.size > 1 else 0.0, float(np.median(np.sqrt(v))))
    if not (math.isfinite(prior_scale) and data_scale > PRIOR_SCALE_FACTOR * prior_scale):
        return None
    text = (f"the effects' scale (median {np.median(y):.4g}, SD {np.std(y, ddof=1):.4g}, typical SE "
            f"{np.median(np.sqrt(v)):.4g}) is over {PRIOR_SCALE_FACTOR:g} times the priors' ({mu_prior}, "
            f"{tau_prior}: tau below {tau_99:.3g} with 99% prior probability), so the priors decide the "
            f"estimates; set priors on the effects' scale with --prior, e.g. --prior "
            f"'mu=normal(0, {10 * data_scale:.2g})' --prior 'tau=half_normal({spread:.2g})'")
    warnings.warn(text, PriorScaleWarning, stacklevel=3)
    return text


def _fit_mediation(data, spec, *, draws=None, tune=None, chains=None):
    """A ``type = "mediation"`` spec: correlation table in, :class:`bayes_se.mediation.MediationFit` out."""
    from bayes_se.correlations import CorrelationData, load_correlations
    from bayes_se.mediation import fit_mediation
    from bayes_se.spec import mediation_paths

    med = spec.mediation
    if not isinstance(data, CorrelationData):
        variables = [v.strip() for v in med.variables.split(",") if v.strip()] or None
        data = load_correlations(data, variables=variables, study=spec.data.study, n=med.n, layout=med.layout)
    priors = {"eta": med.eta, "eta_rho": med.eta_rho}
    if "tau" in spec.priors:
        priors["tau"] = spec.priors["tau"]
    return fit_mediation(data, paths=mediation_paths(med.paths) or None, x=med.x, m=med.m, y=med.y,
                         priors=priors, seed=spec.sampler.seed, draws=draws or spec.sampler.draws,
                         tune=tune or spec.sampler.tune, chains=chains or spec.sampler.chains,
                         target_accept=spec.sampler.target_accept, mc_draws=med.mc_draws)


def fit(data, spec=None, *, priors=None, mods=None, engine=None, seed=None, draws=None, tune=None,
        chains=None):
    """Fit the Bayesian meta-analysis a spec describes.

    Model (normal effects): ``y_i ~ N(theta_i, v_i)``, ``theta_i = x_i' beta + u_i``,
    ``u_i ~ N(0, tau^2)``; three-level: ``u_j + w_ij`` with two SDs.

    Parameters
    ----------
    data : EffectData, path or DataFrame
    spec : ModelSpec, path, TOML text or None (the default random-effects spec)
    priors, mods, engine, seed :
        Overrides of the spec (see :func:`resolve_spec`).
    draws, tune, chains : int, optional
        Overrides of the spec's sampler settings (MCMC only).

    Returns
    -------
    ExactFit, bayes_se.results.BayesianFit, or bayes_se.mediation.MediationFit (type = "mediation":
    ``data`` is then a correlation table, see :func:`bayes_se.correlations.load_correlations`)
    """
    spec = resolve_spec(spec, priors=priors, mods=mods, engine=engine, seed=seed)
    if spec.model.type == "mediation":
        return _fit_mediation(data, spec, draws=draws, tune=tune, chains=chains)
    data = load_data(data, spec)
    mtype = spec.model.type
    if mtype == "three_level" and data.cluster is None:
        raise DataError("a three-level model needs a cluster column (spec [data] cluster or --cluster)",
                        column="cluster")
    if spec.model.mods:
        X, coef_names = data.design(spec.model.mods)
    else:
        X, coef_names = np.ones((data.k, 1)), ["intercept"]
    resolved = spec.resolved_priors()
    coef_priors = coefficient_priors(resolved, coef_names)
    if mtype != "three_level":  # three-level models split tau in two SDs: no single tau prior
        check_prior_scale(data.yi, data.vi, coef_priors[0], resolved.get("tau"))

    if spec.sampler.engine == "exact":
        if mtype == "three_level" or spec.model.effects != "normal" or spec.model.subgroup_tau:
            raise SpecError("the exact engine solves normal random-effects models and meta-regressions "
                            "only; use engine = \"mcmc\"", key="sampler.engine")
        from bayes_se.exact import exact_posterior

        post = exact_posterior(data, X=X, coef_names=coef_names, beta_prior=coef_priors,
                               tau_prior=resolved["tau"], level=spec.summary.level)
        return ExactFit(posterior=post, data=data, spec=spec, coef_names=coef_names)

    flat = [k for k, v in resolved.items() if getattr(v, "improper", False)]
    if flat:  # before PyMC is imported: the MCMC engine samples proper priors only
        raise SpecError(f"flat() (improper) priors are for the exact engine only ({', '.join(flat)}); use "
                        "engine = \"exact\" (--engine exact) or a proper prior such as normal(0, 10)",
                        key=f"priors.{flat[0]}")
    from bayes_se import results

    sampler = dict(
        seed=spec.sampler.seed,
        draws=draws or spec.sampler.draws,
        tune=tune or spec.sampler.tune,
        chains=chains or spec.sampler.chains,
        target_accept=spec.sampler.target_accept,
    )
    Xarg = None if coef_names == ["intercept"] else X
    names = None if Xarg is None else coef_names
    if mtype == "three_level":
        model_priors = {"sigma_cluster": resolved.get("sigma_cluster"),
                        "sigma_effect": resolved.get("sigma_effect"), "tau": resolved["tau"]}
        model_priors.update({k: v for k, v in resolved.items() if k in ("mu", "beta") or k.startswith("beta[")})
        res = results.fit_three_level(data.yi, data.vi, data.cluster, X=Xarg, coef_names=names,
                                      study=data.study, priors=model_priors, **sampler)
    else:
        model_priors = {"tau": resolved["tau"]}
        model_priors.update({k: v for k, v in resolved.items() if k in ("mu", "beta") or k.startswith("beta[")})
        if "nu" in resolved:
            model_priors["nu"] = resolved["nu"]
        subgroup = None
        if spec.model.subgroup_tau:
            col = spec.model.subgroup_tau
            if col not in data.frame.columns:
                raise DataError(f"subgroup column not found; columns are {', '.join(map(str, data.frame.columns))}",
                                column=col)
            subgroup = data.frame[col].astype(str).tolist()
        res = results.fit_random_effects(data.yi, data.vi, X=Xarg, coef_names=names, study=data.study,
                                         priors=model_priors, effects=spec.model.effects,
                                         subgroup=subgroup, **sampler)
    res.settings["spec_toml"] = spec.to_toml()
    res.settings["data_sha256"] = data.checksum()
    return res
