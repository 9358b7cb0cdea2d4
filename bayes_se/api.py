"""One entry point for a Bayesian fit: data + spec (+ overrides) -> a result object.

:func:`fit` reads the spec (a :class:`bayes_se.spec.ModelSpec`, a TOML path or text, a packaged
spec's name, or the default random-effects spec), applies the caller's overrides (priors,
moderators, engine, seed), builds the design matrix once and hands the numbers to the engine the
spec asks for:

* ``engine = "exact"``: :func:`bayes_se.exact_fit.fit_exact` (normal-normal models with normal
  priors on mu/beta; quadrature over tau, no sampling), returning an ExactFit; a three-level spec
  goes to :func:`bayes_se.exact_three_level_fit.fit_exact_three_level` (2-D quadrature over the
  two SDs; ``[model] rho`` for correlated sampling errors), returning a ThreeLevelExactFit;
* ``engine = "mcmc"``: :func:`fit_random_effects` or :func:`fit_three_level` (PyMC), returning a
  :class:`bayes_se.results.BayesianFit`.

Every fit shares the interface of :class:`bayes_se.fits.Fit`; its priors are resolved once, by
:meth:`bayes_se.spec.ModelSpec.model_priors`, and read from there by every engine.

This module only wires; the maths lives in the engines.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from bayes_se import defaults
from bayes_se.errors import DataError, PriorScaleWarning, SpecError
from bayes_se.exact_fit import ExactFit

#: Spec used when none is given: the packaged ``models/random_effects.toml`` (its one home; it
#: ships inside the package, see :mod:`bayes_se.resources`).
DEFAULT_SPEC = "random_effects"


def resolve_spec(spec=None, *, priors=None, mods=None, engine=None, seed=None):
    """The :class:`~bayes_se.spec.ModelSpec` to fit, with the caller's overrides applied.

    Parameters
    ----------
    spec : ModelSpec, path, TOML text, packaged spec name or None
        A name such as ``"three_level"`` that is not an existing file is the packaged spec
        (``bayes-se models`` lists them); None is :data:`DEFAULT_SPEC`.
    priors : sequence of str or mapping, optional
        ``["mu=normal(0, 1)", "tau=half_normal(0.5)"]`` (brms-like strings; ``preset=NAME`` picks a
        preset) or a mapping ``{"mu": Prior or str}``.
    mods : str, optional
        Moderator formula; replaces the spec's.
    engine : {"mcmc", "exact"}, optional
    seed : int, optional
    """
    import dataclasses

    from bayes_se.priors import prior_overrides
    from bayes_se.resources import spec_file, spec_source
    from bayes_se.spec import ModelSpec, load_spec

    if spec is None:
        spec = load_spec(spec_file(DEFAULT_SPEC))
    elif not isinstance(spec, ModelSpec):
        spec = load_spec(spec_source(spec))
    if mods is not None:
        spec = spec.with_mods(mods)
    if priors and spec.model.type == "mediation_paths" and not isinstance(priors, dict):
        priors = _path_prior_overrides(priors)  # keys a, b, c_prime, tau_a, ... (checked by with_priors)
    if priors:
        if not isinstance(priors, dict):
            name, mapping = prior_overrides(priors)
            priors = mapping if name is None else {"preset": name, **mapping}
        spec = spec.with_priors(priors)
    if engine is not None or seed is not None:
        sampler = spec.sampler
        if engine is not None:
            sampler = dataclasses.replace(sampler, engine=engine)
        if seed is not None:
            sampler = dataclasses.replace(sampler, seed=int(seed))
        spec = dataclasses.replace(spec, sampler=sampler)
    return spec


def _path_prior_overrides(entries) -> dict:
    """``["a=normal(0, 0.5)", "tau_b ~ half_normal(0.1)"]`` as ``{"a": "normal(0, 0.5)", ...}`` (the
    path-based mediation model's keys are checked by :func:`bayes_se.spec.path_prior`)."""
    import re

    pieces = [entries] if isinstance(entries, str) else list(entries)
    out = {}
    for piece in (q.strip() for p in pieces for q in str(p).split(";")):
        if not piece:
            continue
        match = re.match(r"^\s*([A-Za-z_]\w*)\s*[=~]\s*(.+)$", piece)
        if not match:
            raise SpecError(f"cannot read '{piece}': expected 'parameter = family(arguments)'", key="priors")
        out[match.group(1)] = match.group(2).strip()
    return out


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
        sep=cols.sep or None,
        decimal=cols.decimal or None,
        encoding=cols.encoding or None,
    )


#: Smallest value of each sampler count a caller may pass (``draws=0`` is refused, not read as "unset").
SAMPLER_COUNT_MIN = {"draws": 1, "tune": 0, "chains": 1}


def sampler_counts(spec, *, draws=None, tune=None, chains=None) -> dict:
    """``draws``, ``tune`` and ``chains`` to run: the caller's where given (None = the spec's).

    Raises
    ------
    SpecError
        A value that is not a whole number or is below :data:`SAMPLER_COUNT_MIN` (key ``sampler.NAME``).
    """
    given = {"draws": draws, "tune": tune, "chains": chains}
    return {name: getattr(spec.sampler, name) if value is None else check_count(name, value)
            for name, value in given.items()}


def check_count(name: str, value) -> int:
    """A sampler count as an int, or a SpecError (key ``sampler.NAME``) when it is not a whole
    number or is below :data:`SAMPLER_COUNT_MIN`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SpecError(f"{name} must be a whole number, got {value!r}", key=f"sampler.{name}")
    if value < SAMPLER_COUNT_MIN[name]:
        raise SpecError(f"{name} must be >= {SAMPLER_COUNT_MIN[name]}, got {value}", key=f"sampler.{name}")
    return int(value)


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
    from bayes_se.lazy import median  # np.median's value, without importing numpy.ma

    y, v = np.asarray(yi, dtype=float), np.asarray(vi, dtype=float)
    data_scale = max(abs(median(y) - m), float(np.std(y, ddof=1)) if y.size > 1 else 0.0, median(np.sqrt(v)))
    prior_scale = max(s, tau_99)
    spread = max(float(np.std(y, ddof=1)) if y.size > 1 else 0.0, median(np.sqrt(v)))
    if not (math.isfinite(prior_scale) and data_scale > PRIOR_SCALE_FACTOR * prior_scale):
        return None
    text = (f"the effects' scale (median {np.median(y):.4g}, SD {np.std(y, ddof=1):.4g}, typical SE "
            f"{np.median(np.sqrt(v)):.4g}) is over {PRIOR_SCALE_FACTOR:g} times the priors' ({mu_prior}, "
            f"{tau_prior}: tau below {tau_99:.3g} with 99% prior probability), so the priors decide the "
            f"estimates; set priors on the effects' scale with --prior, e.g. --prior "
            f"'mu=normal(0, {10 * data_scale:.2g})' --prior 'tau=half_normal({spread:.2g})'")
    warnings.warn(text, PriorScaleWarning, stacklevel=3)
    return text


def _fit_mediation(data, spec, *, draws=None, tune=None, chains=None, cores=None):
    """A ``type = "mediation"`` spec: correlation table in, :class:`bayes_se.mediation.MediationFit` out."""
    from bayes_se.correlations import CorrelationData, load_correlations
    from bayes_se.mediation import fit_mediation
    from bayes_se.spec import mediation_paths

    med = spec.mediation
    if not isinstance(data, CorrelationData):
        variables = [v.strip() for v in med.variables.split(",") if v.strip()] or None
        data = load_correlations(data, variables=variables, study=spec.data.study, n=med.n, layout=med.layout,
                                 sep=spec.data.sep or None, decimal=spec.data.decimal or None,
                                 encoding=spec.data.encoding or None)
    priors = {"eta": med.eta, "eta_rho": med.eta_rho}
    if "tau" in spec.priors:
        priors["tau"] = spec.priors["tau"]
    counts = sampler_counts(spec, draws=draws, tune=tune, chains=chains)
    res = fit_mediation(data, paths=mediation_paths(med.paths) or None, x=med.x, m=med.m, y=med.y,
                        priors=priors, seed=spec.sampler.seed, **counts,
                        target_accept=spec.sampler.target_accept, mc_draws=med.mc_draws,
                        likelihood=med.likelihood, cores=cores, sampler=spec.sampler.nuts_sampler)
    res.settings.update(level=spec.summary.level, spec_toml=spec.to_toml())
    res.spec = spec
    return res


def _fit_mediation_paths(data, spec, *, draws=None, tune=None, chains=None, cores=None):
    """A ``type = "mediation_paths"`` spec: a table of reported paths (``data``; None for matrices
    only) and the spec's optional ``[mediation] correlations`` table in,
    :class:`bayes_se.mediation_paths.PathMediationFit` out."""
    from bayes_se.correlations import load_correlations
    from bayes_se.mediation_paths import fit_mediation_paths
    from bayes_se.reported_paths import PathEstimates, load_paths

    med = spec.mediation
    if data is not None and not isinstance(data, PathEstimates):
        data = load_paths(data, study=spec.data.study, sep=spec.data.sep or None,
                          decimal=spec.data.decimal or None, encoding=spec.data.encoding or None,
                          partial=bool(med.correlations))
    correlations = None
    if med.correlations:
        variables = [v.strip() for v in med.variables.split(",") if v.strip()] or None
        correlations = load_correlations(med.correlations, variables=variables, study=spec.data.study, n=med.n,
                                         layout=med.layout, partial=data is not None)
    priors = dict(spec.priors)
    priors["eta"] = med.eta
    counts = sampler_counts(spec, draws=draws, tune=tune, chains=chains)
    res = fit_mediation_paths(data, correlations=correlations, x=med.x, m=med.m, y=med.y, priors=priors,
                              seed=spec.sampler.seed, **counts, target_accept=spec.sampler.target_accept,
                              cores=cores, sampler=spec.sampler.nuts_sampler)
    res.settings.update(level=spec.summary.level, spec_toml=spec.to_toml())
    if med.correlations:
        res.settings["correlations_file"] = str(med.correlations)
    res.spec = spec
    return res


def fit(data, spec=None, *, priors=None, mods=None, engine=None, seed=None, draws=None, tune=None,
        chains=None, level=None, na="omit", rho=None, cores=None):
    """Fit the Bayesian meta-analysis a spec describes.

    Model (normal effects): ``y_i ~ N(theta_i, v_i)``, ``theta_i = x_i' beta + u_i``,
    ``u_i ~ N(0, tau^2)``; three-level: ``u_j + w_ij`` with two SDs.

    Parameters
    ----------
    data : EffectData, path or DataFrame
    spec : ModelSpec, path, TOML text, packaged spec name (``"three_level"``) or None (the
        packaged random-effects spec, :data:`DEFAULT_SPEC`)
    priors, mods, engine, seed :
        Overrides of the spec (see :func:`resolve_spec`).
    draws, tune, chains : int, optional
        Overrides of the spec's sampler settings (MCMC only; None = the spec's). ``draws`` and
        ``chains`` must be >= 1 and ``tune`` >= 0 (checked before the data are read, for every engine).
    level : float, optional
        Credible level of summaries (default: the spec's).
    cores : int, optional
        MCMC only: processes that sample the chains (None: each fitting function's default, see
        :func:`bayes_se.sampling.sample`). The draws do not depend on it: the same seed gives the
        same draws on one core or several (PyMC seeds each chain on its own).
    rho : float, optional
        Three-level specs: the assumed within-cluster sampling correlation (replaces the spec's
        ``[model] rho``; the exact engine only), as metafor's ``vcalc(vi, cluster, rho=)``.
    na : {"omit", "error"}, default "omit"
        A row with a missing moderator: left out of the whole fit (effects, variances, labels,
        clusters) with a warning naming it, and listed as ``omitted_rows`` (in ``settings`` of an
        MCMC fit, in ``to_dict()``); or refused with a DataError naming row and column.

    Returns
    -------
    bayes_se.fits.Fit
        An ExactFit, BayesianFit or MediationFit (type = "mediation": ``data`` is then a
        correlation table, see :func:`bayes_se.correlations.load_correlations`) or PathMediationFit
        (type = "mediation_paths": ``data`` is a table of reported paths, see
        :func:`bayes_se.reported_paths.load_paths`, or None with ``[mediation] correlations``); all share the
        interface of :class:`bayes_se.fits.Fit`.
    """
    import dataclasses

    spec = resolve_spec(spec, priors=priors, mods=mods, engine=engine, seed=seed)
    if rho is not None:
        spec = spec.with_rho(rho)
    if level is not None:
        from bayes_se.fits import check_level

        spec = dataclasses.replace(spec, summary=dataclasses.replace(spec.summary, level=check_level(level)))
    counts = sampler_counts(spec, draws=draws, tune=tune, chains=chains)  # refused before any work
    if spec.model.type == "mediation":
        return _fit_mediation(data, spec, draws=draws, tune=tune, chains=chains, cores=cores)
    if spec.model.type == "mediation_paths":  # data: reported paths (bayes_se.reported_paths.load_paths)
        return _fit_mediation_paths(data, spec, draws=draws, tune=tune, chains=chains, cores=cores)
    if cores is not None:  # MCMC fits below take it with the counts (the draws do not depend on it)
        counts = dict(counts, cores=cores)
    counts = dict(counts, sampler=spec.sampler.nuts_sampler)  # MCMC only; the exact engine has no sampler
    data = load_data(data, spec)
    mtype = spec.model.type
    if mtype == "three_level" and data.cluster is None:
        raise DataError("a three-level model needs a cluster column (spec [data] cluster or --cluster)",
                        column="cluster")
    checksum = data.checksum()  # of the data as given, before rows with missing moderators go
    data, design = data.model_data(spec.model.mods or None, na=na)
    X, coef_names = design.X, list(design.names)
    if coef_names == ["intercept"]:
        X = None
    model_priors = spec.model_priors(coef_names)
    if mtype != "three_level" and spec.model.scale is None:  # three-level: two SDs; location-scale: alpha
        first = model_priors["mu"] if "mu" in model_priors else model_priors[f"beta[{coef_names[0]}]"]
        check_prior_scale(data.yi, data.vi, first, model_priors["tau"])
    settings = {"level": spec.summary.level, "smallest_effect": spec.summary.smallest_effect or None,
                "seed": spec.sampler.seed, "spec_toml": spec.to_toml(), "data_sha256": checksum,
                "mods": spec.model.mods or None, "omitted_rows": [int(r) for r in design.omitted_rows]}

    if spec.model.scale is not None:  # location-scale: log tau_i = z_i' alpha
        return _fit_location_scale(data, design, spec, model_priors, settings, counts, na)

    if spec.sampler.engine == "exact":
        if spec.model.effects != "normal" or spec.model.subgroup_tau:
            raise SpecError("the exact engine solves normal random-effects, meta-regression and three-level "
                            "models only; use engine = \"mcmc\"", key="sampler.engine")
        if mtype == "three_level":  # 2-D quadrature over (sigma_cluster, sigma_effect)
            from bayes_se.exact_three_level_fit import fit_exact_three_level

            return fit_exact_three_level(data.yi, data.vi, data.cluster, X=X, coef_names=coef_names,
                                         study=data.study, priors=model_priors, rho=spec.model.rho or None,
                                         settings=settings, data=data, spec=spec)
        from bayes_se.exact_fit import fit_exact

        return fit_exact(data.yi, data.vi, X=X, coef_names=coef_names, study=data.study, priors=model_priors,
                         settings=settings, data=data, spec=spec)

    if spec.model.rho:
        raise SpecError("rho (correlated sampling errors within clusters) is solved by the exact engine only; "
                        "use engine = \"exact\" (--engine exact)", key="model.rho")
    flat = [k for k, v in model_priors.items() if v.improper]
    if flat:  # before PyMC is imported: the MCMC engine samples proper priors only
        raise SpecError(f"flat() (improper) priors are for the exact engine only ({', '.join(flat)}); use "
                        "engine = \"exact\" (--engine exact) or a proper prior such as normal(0, 10)",
                        key=f"priors.{flat[0]}")
    sampler = dict(
        seed=spec.sampler.seed,
        **counts,
        target_accept=spec.sampler.target_accept,
    )
    names = None if X is None else coef_names
    if mtype == "three_level":
        res = fit_three_level(data.yi, data.vi, data.cluster, X=X, coef_names=names, study=data.study,
                              priors=model_priors, **sampler)
    else:
        subgroup = None
        if spec.model.subgroup_tau:
            col = spec.model.subgroup_tau
            if col not in data.frame.columns:
                raise DataError(f"subgroup column not found; columns are {', '.join(map(str, data.frame.columns))}",
                                column=col)
            subgroup = data.frame[col].astype(str).tolist()
        res = fit_random_effects(data.yi, data.vi, X=X, coef_names=names, study=data.study,
                                 priors=model_priors, effects=spec.model.effects, subgroup=subgroup, **sampler)
    res.settings.update(settings)
    res.spec = spec
    return res


def _recorded_priors(priors, coef_names, model_type: str, effects: str = "normal") -> dict:
    """The resolved Prior objects of a fit made from arrays: the given ones (Prior objects, by
    ``mu``/``beta``/``beta[NAME]``/``tau``/...), the default preset's for the rest (callables are
    not recorded)."""
    from bayes_se.priors import Prior, preset
    from bayes_se.spec import model_priors

    resolved = preset("default")
    resolved.update({k: v for k, v in (priors or {}).items() if isinstance(v, Prior)})
    return model_priors(resolved, coef_names, model_type, effects)


def _sample_fit(meta, priors, *, seed, draws, tune, chains, cores, target_accept, sampler):
    from bayes_se.results import BayesianFit
    from bayes_se.sampling import sample

    draws, tune, chains = (check_count(n, v) for n, v in (("draws", draws), ("tune", tune), ("chains", chains)))
    idata = sample(meta, draws=draws, tune=tune, chains=chains, cores=cores,
                   target_accept=target_accept, seed=seed, sampler=sampler)
    settings = dict(meta.settings, engine="mcmc", seed=int(seed), draws=draws, tune=tune, chains=chains,
                    target_accept=float(idata.attrs["target_accept"]), sampler=sampler)
    return BayesianFit(idata=idata, meta=meta, settings=settings, priors=priors)


def fit_random_effects(yi, vi, *, X=None, coef_names=None, study=None, priors=None, effects="normal",
                       nu=None, subgroup=None, seed: int, draws: int = defaults.DRAWS,
                       tune: int = defaults.TUNE, chains: int = defaults.CHAINS, cores: int | None = None,
                       target_accept: float | None = None, sampler: str = "nutpie"):
    """Build and sample a Bayesian random-effects model or meta-regression (NUTS: nutpie by default).

    Model: ``y_i ~ N(x_i' beta + u_i, v_i)``, ``u_i ~ N(0, tau^2)`` (or ``tau * t_nu``), sampled in
    the marginal form; see :func:`bayes_se.builders.random_effects.build_random_effects` for the
    parameters and :func:`bayes_se.sampling.sample` for the sampler settings (``sampler="pymc"``:
    PyMC's NUTS).

    Returns
    -------
    bayes_se.results.BayesianFit

    References
    ----------
    Higgins, Thompson & Spiegelhalter (2009), JRSS A 172:137-159.
    """
    from bayes_se.builders.random_effects import build_random_effects

    meta = build_random_effects(yi, vi, X=X, coef_names=coef_names, study=study, priors=priors,
                                effects=effects, nu=nu, subgroup=subgroup)
    recorded = _recorded_priors(priors, meta.coef_names, "random_effects", effects)
    return _sample_fit(meta, recorded, seed=seed, draws=draws, tune=tune, chains=chains, cores=cores,
                       target_accept=target_accept, sampler=sampler)


def _fit_location_scale(data, design, spec, model_priors, settings, counts, na):
    """The location-scale branch of :func:`fit`: the scale design on the rows the location design
    kept (rows missing a scale moderator are left out too, or refused with ``na="error"``), then the
    exact engine (one 0/1 scale moderator) or MCMC."""
    import dataclasses

    from bayes_se.spec import scale_priors

    zdes = data.design(spec.model.scale, na=na)
    X = design.X
    if zdes.omitted_rows:
        if len(zdes.rows) < 3:
            raise DataError(f"only {len(zdes.rows)} effect(s) have every moderator of the scale formula")
        n_all = len(design.rows) + len(design.omitted_rows)
        kept = {int(design.rows[i]) for i in zdes.rows}
        settings["omitted_rows"] = [i + 1 for i in range(n_all) if i not in kept]
        data, X = data.subset(zdes.rows), X[zdes.rows]
    coef_names = list(design.names)
    alpha = scale_priors(spec.resolved_priors(), zdes.names)
    priors = {k: v for k, v in model_priors.items() if k != "tau"}
    priors.update({f"alpha[{n}]": dataclasses.replace(p, target=f"alpha[{n}]") for n, p in zip(zdes.names, alpha)})
    settings["scale"] = spec.model.scale
    if spec.sampler.engine == "exact":
        from bayes_se.exact_scale import fit_exact_scale

        res = fit_exact_scale(data.yi, data.vi, zdes.X, X=X, coef_names=coef_names, scale_names=list(zdes.names),
                              study=data.study, priors=priors, settings=settings, data=data, spec=spec)
        return res
    flat = [k for k, v in priors.items() if v.improper]
    if flat:
        raise SpecError(f"flat() (improper) priors are for the exact engine only ({', '.join(flat)})",
                        key=f"priors.{flat[0]}")
    res = fit_location_scale(data.yi, data.vi, Z=zdes.X, scale_names=list(zdes.names),
                             X=None if coef_names == ["intercept"] else X,
                             coef_names=None if coef_names == ["intercept"] else coef_names,
                             study=data.study, priors=priors, seed=spec.sampler.seed, **counts,
                             target_accept=spec.sampler.target_accept)
    res.settings.update(settings)
    res.spec = spec
    return res


def fit_location_scale(yi, vi, *, Z, scale_names=None, X=None, coef_names=None, study=None, priors=None,
                       seed: int, draws: int = defaults.DRAWS, tune: int = defaults.TUNE,
                       chains: int = defaults.CHAINS, cores: int | None = None, target_accept: float | None = None,
                       sampler: str = "nutpie"):
    """Build and sample a Bayesian location-scale model (NUTS: nutpie by default).

    Model: ``y_i ~ N(x_i' beta, v_i + tau_i^2)``, ``log tau_i = z_i' alpha`` (study effects
    integrated out; Viechtbauer & Lopez-Lopez 2022); see
    :func:`bayes_se.builders.location_scale.build_location_scale` for the parameters and priors.

    Returns
    -------
    bayes_se.results.BayesianFit
        Its posterior has ``alpha`` (dims ``scale_coef``), ``tau`` (dims ``study``), ``mu`` or
        ``beta``, and the exact ``theta`` and ``pred``.
    """
    import dataclasses

    from bayes_se.builders.location_scale import build_location_scale
    from bayes_se.spec import scale_priors

    meta = build_location_scale(yi, vi, Z=Z, scale_names=scale_names, X=X, coef_names=coef_names, study=study,
                                priors=priors)
    recorded = _recorded_priors(priors, meta.coef_names, "random_effects")
    recorded.pop("tau", None)
    recorded.update({f"alpha[{n}]": dataclasses.replace(p, target=f"alpha[{n}]")
                     for n, p in zip(meta.scale_names, scale_priors(priors, meta.scale_names))})
    return _sample_fit(meta, recorded, seed=seed, draws=draws, tune=tune, chains=chains, cores=cores,
                       target_accept=target_accept, sampler=sampler)


def fit_three_level(yi, vi, cluster, *, X=None, coef_names=None, study=None, priors=None, seed: int,
                    draws: int = defaults.DRAWS, tune: int = defaults.TUNE, chains: int = defaults.CHAINS,
                    cores: int | None = None, target_accept: float | None = None, sampler: str = "nutpie"):
    """Build and sample a Bayesian three-level model (effects within clusters; NUTS: nutpie by default).

    Model: ``y_ij = x_ij' beta + u_j + w_ij + e_ij`` with ``u_j ~ N(0, sigma_cluster^2)``,
    ``w_ij ~ N(0, sigma_effect^2)``; see :func:`bayes_se.builders.three_level.build_three_level`.

    Returns
    -------
    bayes_se.results.BayesianFit

    References
    ----------
    Konstantopoulos (2011), Research Synthesis Methods 2:61-76.
    """
    from bayes_se.builders.three_level import build_three_level

    meta = build_three_level(yi, vi, cluster, X=X, coef_names=coef_names, study=study, priors=priors)
    recorded = _recorded_priors(priors, meta.coef_names, "three_level")
    return _sample_fit(meta, recorded, seed=seed, draws=draws, tune=tune, chains=chains, cores=cores,
                       target_accept=target_accept, sampler=sampler)


def load_fit(path):
    """Read a fit written by :meth:`bayes_se.fits.Fit.to_netcdf` back into the same kind of fit.

    The stored data hash is checked against the data stored in the file; a mismatch (a file edited
    or damaged after it was written) raises a DataError.

    Raises
    ------
    DataError
        The file is not a bayes_se fit, or its data do not match its hash.
    """
    import pathlib

    import arviz as az

    p = pathlib.Path(path)
    if not p.is_file():
        raise DataError(f"no fit file at '{p}'")
    try:
        idata = az.from_netcdf(str(p))
    except Exception as exc:  # netCDF/HDF5 raise many types; one clean line for the user
        raise DataError(f"'{p}' is not a readable netCDF file ({type(exc).__name__}: {exc})") from None
    from bayes_se.fits import KIND_ATTR
    from bayes_se.mediation import MediationFit
    from bayes_se.results import BayesianFit

    kind = idata.attrs.get(KIND_ATTR)
    from bayes_se.exact_scale import ExactScaleFit

    from bayes_se.mediation_paths import PathMediationFit

    classes = {cls.engine: cls for cls in (ExactFit, BayesianFit, MediationFit, ExactScaleFit, PathMediationFit)}
    if kind == "exact" and "three_level" in idata.attrs:  # the exact three-level engine's fit
        from bayes_se.exact_three_level_fit import ThreeLevelExactFit

        classes["exact"] = ThreeLevelExactFit
    if kind not in classes:
        raise DataError(f"'{p}' was not written by a bayes_se fit (no '{KIND_ATTR}' attribute); "
                        "load it with arviz.from_netcdf")
    fit = classes[kind].from_idata(idata)
    stored = idata.attrs.get("fit_data_sha256")
    if stored and fit.data_sha256() != stored:
        raise DataError(f"the data stored in '{p}' do not match its data hash: the file was changed after "
                        "it was written")
    return fit
