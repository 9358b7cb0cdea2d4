"""Mediation from the paths trials report (and correlation matrices), behind the common fit interface.

:func:`fit_mediation_paths` pools each trial's reported ``a`` (X -> M), ``b`` (M -> Y given X)
and, where given, ``c'`` (X -> Y given M) with the random-effects model of
:mod:`bayes_se.builders.mediation_paths`; trials that give a correlation matrix of (X, M, Y)
instead enter through their standardised paths and delta-method covariance
(:func:`bayes_se.reported_paths.paths_from_correlations`). It returns a :class:`PathMediationFit`,
a sibling of :class:`bayes_se.mediation.MediationFit` with the same summary rows for the paths and
the same JSON layout.

References
----------
Bauer, D. J., Preacher, K. J. & Gil, K. M. (2006). Psychological Methods 11, 142-163.
MacKinnon, D. P. (2008). Introduction to Statistical Mediation Analysis. Erlbaum.
Cheung, M. W.-L. (2015). Meta-Analysis: A Structural Equation Modeling Approach. Wiley, ch. 7.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayes_se.builders.mediation_paths import EFFECT_NAMES, HYPER_NAMES
from bayes_se.fits import Fit, draws_table, interval_columns, stored_priors, stored_settings
from bayes_se.reported_paths import PATH_NAMES, PathEstimates

__all__ = ["PathMediationFit", "fit_mediation_paths", "PATH_MEDIATION_NAMES"]

#: Summary rows of the path-based model, in order.
PATH_MEDIATION_NAMES = EFFECT_NAMES + HYPER_NAMES


@dataclass(repr=False)
class PathMediationFit(Fit):
    """A Bayesian fit of reported mediation paths (and matrix-derived paths).

    Attributes
    ----------
    idata : arviz.InferenceData
        ``posterior``: ``a``, ``b``, ``c_prime``, ``tau_a``, ``tau_b``, ``tau_c``, ``rho_ab``,
        ``effects`` (dims chain, draw, effect: ``a, b, c_prime, indirect, indirect_avg,
        indirect_new, total, prop_mediated``) and ``theta`` (chain, draw, study, path: each trial's
        own paths, drawn exactly from their conditional); ``prior`` with the same effects;
        ``prior_predictive`` and ``posterior_predictive`` ``est`` (replicated estimates);
        ``log_likelihood`` ``est`` per study (trial effects integrated out); ``observed_data``
        ``est``, ``se``, ``cov``, ``n``, ``source`` ("paths" or "matrix") by study.
    data : PathEstimates
    settings : dict
        ``sources`` lists which studies gave paths and which gave matrices.
    diagnostics : Verdict
    priors : dict
        Resolved Prior of each of ``a``, ``b``, ``c_prime``, ``tau_a``, ``tau_b``, ``tau_c``
        (``eta`` is in ``settings``).
    """

    idata: object
    data: PathEstimates
    settings: dict = field(default_factory=dict)
    diagnostics: object = None
    priors: dict = field(default_factory=dict)
    spec: object = None

    engine = "mediation_paths"

    # -- names and draws ----------------------------------------------------------------------
    def effect_names(self) -> list[str]:
        """Effect rows present, in summary order."""
        names = set(self.idata.posterior["effects"].coords["effect"].values.tolist())
        return [n for n in EFFECT_NAMES if n in names]

    def parameter_names(self) -> list[str]:
        """Every summary row: the effects, then ``tau_a, tau_b, tau_c, rho_ab`` (those in the model)."""
        return self.effect_names() + [n for n in HYPER_NAMES if n in self.idata.posterior]

    def draws(self, name: str, group: str = "posterior") -> np.ndarray:
        """Flattened draws of one effect (``"indirect"``, ``"a"``, ...) or hyperparameter (``"tau_a"``,
        ``"rho_ab"``) from ``group`` (``"posterior"`` or ``"prior"``)."""
        ds = getattr(self.idata, group)
        if name in ds["effects"].coords["effect"].values:
            return np.asarray(ds["effects"].sel(effect=name)).ravel()
        if name in HYPER_NAMES and name in ds:
            return np.asarray(ds[name]).ravel()
        raise KeyError(f"no parameter {name!r}; the fit has {', '.join(self.parameter_names())}")

    def theta(self, study=None, path=None) -> np.ndarray:
        """Posterior draws of the trials' own paths ``theta`` (draw, study, path), or of one study/path."""
        th = self.idata.posterior["theta"]
        if study is not None:
            th = th.sel(study=str(study))
        if path is not None:
            th = th.sel(path=path)
        return np.asarray(th.stack(sample=("chain", "draw")).transpose("sample", ...))

    def _rows(self) -> dict:
        post = self.idata.posterior
        rows = {name: np.asarray(post["effects"].sel(effect=name)) for name in self.effect_names()}
        for name in HYPER_NAMES:
            if name in post:
                rows[name] = np.asarray(post[name])
        return rows

    # -- Fit hooks ----------------------------------------------------------------------------
    def _table(self, level, interval, theta):
        """``a, b, c_prime, indirect, indirect_avg, indirect_new, total, prop_mediated``, then
        ``tau_a, tau_b, tau_c, rho_ab`` (trial-level paths: :meth:`study_summary`)."""
        rows = self._rows()
        return draws_table(list(rows), np.stack(list(rows.values()), axis=-1), level, interval, mcmc=True)

    def location_names(self) -> list[str]:
        return self.effect_names()

    def _prob(self, name, op, x):
        values = self.draws(name)
        return float(np.mean(values > x) if op.startswith(">") else np.mean(values < x))

    def _headline(self) -> str:
        post = self.idata.posterior
        src = np.asarray(self.data.source)
        return (f"Bayesian mediation from reported paths (k = {self.data.k} trials: {int(np.sum(src == 'paths'))} "
                f"reported paths, {int(np.sum(src == 'matrix'))} correlation matrices; "
                f"{self.settings.get('x', 'X')} -> {self.settings.get('m', 'M')} -> {self.settings.get('y', 'Y')}), "
                f"MCMC: {post.sizes['chain']} chains x {post.sizes['draw']} draws")

    def notes(self, level: float = 0.95) -> list[str]:
        """Warnings about the estimates: ``prop_mediated`` when the total effect's interval covers 0."""
        out = []
        if "total" in self.effect_names():
            lo, hi = np.quantile(self.draws("total"), [(1 - level) / 2, (1 + level) / 2])
            if lo <= 0 <= hi:
                out.append(f"the total effect's central {100 * level:g}% interval [{lo:.3g}, {hi:.3g}] covers 0: "
                           "prop_mediated = a b / total divides by a number near 0 and is unstable; do not "
                           "report it")
        return out

    def _footer(self) -> list[str]:
        lines = ["indirect = a*b at the pooled paths; indirect_avg = E[a_i b_i] = a*b + rho_ab tau_a tau_b, the "
                 "average of the trials' own products (Bauer, Preacher & Gil 2006); indirect_new = a new trial's "
                 "a_new*b_new (a predictive)"]
        return lines + [f"warning: {n}" for n in self.notes()]

    def to_dict(self, level: float | None = None, interval: str = "central") -> dict:
        """:meth:`bayes_se.fits.Fit.to_dict` (``parameters`` with ``a``, ``b``, ``c_prime``,
        ``indirect``, ``indirect_avg``, ...; ``diagnostics``), plus ``sources`` (which studies gave
        paths and which matrices) and ``notes``."""
        out = super().to_dict(level=level, interval=interval)
        out["sources"] = self.sources()
        out["notes"] = self.notes()
        return out

    def sources(self) -> dict:
        """``{"paths": [labels], "matrix": [labels]}``."""
        src = np.asarray(self.data.source)
        return {kind: [str(s) for s, k in zip(self.data.study, src) if k == kind] for kind in ("paths", "matrix")}

    def study_summary(self, level: float | None = None) -> pd.DataFrame:
        """One row per study and path: the reported estimate with its interval (``est +- z se``), the
        source, and the posterior mean and central interval of the trial's own path ``theta``.

        Columns: ``study, path, source, est, se, est_lower, est_upper, theta_mean, theta_lower,
        theta_median, theta_upper`` (rows of unreported paths have NaN estimates; their theta is the
        conditional predictive of that path).
        """
        from bayes_se.normal_dist import ndtri

        level = self.level if level is None else float(level)
        cols = interval_columns(level)
        z = float(ndtri((1 + level) / 2))
        th = np.asarray(self.idata.posterior["theta"].stack(sample=("chain", "draw")).transpose("sample", ...))
        q = np.quantile(th, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)
        se = self.data.se
        rows = []
        paths = list(PATH_NAMES) if "c_prime" in self.effect_names() else list(PATH_NAMES[:2])
        for i, study in enumerate(self.data.study):
            for j, path in enumerate(paths):
                e, s = self.data.est[i, j], se[i, j]
                rows.append({"study": str(study), "path": path, "source": str(self.data.source[i]), "est": e, "se": s,
                             "est_lower": e - z * s, "est_upper": e + z * s, "theta_mean": th[:, i, j].mean(),
                             "theta_lower": q[0, i, j], "theta_median": q[1, i, j], "theta_upper": q[2, i, j]})
        table = pd.DataFrame(rows)
        table.attrs.update(level=level, interval_columns=cols)
        return table

    @property
    def paths(self):
        """The single-mediator :class:`~bayes_se.path_algebra.PathModel` ``m ~ x``, ``y ~ x + m``
        (``y ~ m`` when no trial reports c'), for the path diagram."""
        from bayes_se.path_algebra import PathModel

        x, m, y = (self.settings.get(key, default) for key, default in
                   (("x", "intervention"), ("m", "self_efficacy"), ("y", "symptoms")))
        if "c_prime" in self.effect_names():
            return PathModel.single_mediator((x, m, y), x, m, y)
        return PathModel((x, m, y), {m: [x], y: [m]}, mediation=(x, m, y))

    def plot_paths(self, ax=None, level: float = 0.95):
        """Path diagram: pooled a, b (and c') with intervals, the indirect, average indirect and total
        effects (:func:`bayes_se.plots.paths.plot_paths`)."""
        from bayes_se.plots.paths import plot_paths

        return plot_paths(self, ax=ax, level=level)

    def plot_indirect(self, ax=None, name: str | None = None):
        """Posterior vs prior density of the indirect effect, with the average indirect effect
        (:func:`bayes_se.plots.paths.plot_indirect`)."""
        from bayes_se.plots.paths import plot_indirect

        return plot_indirect(self, ax=ax, name=name or "indirect")

    def plot_forest(self, level: float = 0.95, ax=None, width="double"):
        """Per-trial a, b and a*b (reported and posterior) beside the pooled paths
        (:func:`bayes_se.plots.mediation_forest.plot_mediation_forest`)."""
        from bayes_se.plots.mediation_forest import plot_mediation_forest

        return plot_mediation_forest(self, level=level, ax=ax, width=width)

    def _data_arrays(self) -> list:
        return [self.data.est, self.data.cov, self.data.n]

    @property
    def k(self) -> int:
        return int(self.data.k)

    @classmethod
    def from_idata(cls, idata) -> "PathMediationFit":
        from bayes_se.diagnostics import check
        from bayes_se.reported_paths import PathEstimates

        settings = stored_settings(idata)
        obs = idata.observed_data
        data = PathEstimates(study=np.asarray([str(s) for s in obs["study"].values]),
                             est=np.asarray(obs["est"], float), cov=np.asarray(obs["cov"], float),
                             n=np.asarray(obs["n"], float), source=np.asarray([str(s) for s in obs["source"].values]))
        return cls(idata=idata, data=data, settings=settings, diagnostics=check(idata, var_names=_checked(idata)),
                   priors=stored_priors(idata))


#: The paths' scale must exceed their priors' by this factor before :func:`check_path_prior_scale` warns
#: (the factor of :func:`bayes_se.api.check_prior_scale`).
PRIOR_SCALE_FACTOR = 10.0


def check_path_prior_scale(data: PathEstimates, priors: dict) -> list[str]:
    """Warn (:class:`~bayes_se.errors.PriorScaleWarning`) for each path whose reported values sit far
    outside its priors' scale, as unstandardised paths in scale points under the default
    ``normal(0, 1)`` / ``half_normal(0.2)``.

    A path's scale is ``max(|median est|, SD of est, median se)``, its priors' ``max(sigma,
    tau_99)`` (the pooled path's prior scale and the 99th percentile of its tau prior); a warning
    when the first exceeds :data:`PRIOR_SCALE_FACTOR` times the second.

    Returns
    -------
    list of str
        The warnings' texts.
    """
    import warnings

    from bayes_se.errors import PriorScaleWarning

    out = []
    se = data.se
    for j, (name, tau_name) in enumerate(zip(PATH_NAMES, ("tau_a", "tau_b", "tau_c"))):
        obs = data.observed[:, j]
        if name not in priors or not obs.any():
            continue
        est = data.est[obs, j]
        spread = float(np.std(est, ddof=1)) if est.size > 1 else 0.0
        scale = max(abs(float(np.median(est))), spread, float(np.median(se[obs, j])))
        params = priors[name].params
        sigma = float(params["sigma"]) if "sigma" in params else 0.5 * (params["upper"] - params["lower"])
        tau_99 = float(priors[tau_name].tau_quantile(0.99))
        if scale > PRIOR_SCALE_FACTOR * max(sigma, tau_99):
            text = (f"the reported {name} (median {np.median(est):.4g}, SD {spread:.4g}) are over "
                    f"{PRIOR_SCALE_FACTOR:g} times the scale of their priors ({priors[name]}, {priors[tau_name]}): "
                    f"the priors decide the estimates; are the paths unstandardised? Set priors on their scale, "
                    f"e.g. --prior '{name}=normal(0, {10 * scale:.2g})' --prior '{tau_name}=half_normal({scale:.2g})'")
            warnings.warn(text, PriorScaleWarning, stacklevel=3)
            out.append(text)
    return out


def _checked(idata) -> list[str]:
    return [v for v in ("a", "b", "c_prime", "tau_a", "tau_b", "tau_c", "rho_ab") if v in idata.posterior]


def _load_correlations(correlations, x, m, y, partial: bool):
    from bayes_se.correlations import CorrelationData, load_correlations

    if correlations is None or isinstance(correlations, CorrelationData):
        return correlations
    return load_correlations(correlations, partial=partial)


def fit_mediation_paths(data, *, correlations=None, x: str = "intervention", m: str = "self_efficacy",
                        y: str = "symptoms", priors=None, seed: int, draws: int = 1000, tune: int = 1000,
                        chains: int = 4, cores: int | None = None, target_accept: float | None = None,
                        sampler: str = "nutpie", a_variance: str = "reported") -> PathMediationFit:
    """Fit the random-effects model of reported mediation paths (and correlation matrices).

    Model: ``est_i[o] ~ N(mu[o], (S_i + T)[o, o])`` with ``mu = (a, b, c')`` and ``T`` the
    between-trial covariance of ``(a_i, b_i)`` (SDs ``tau_a``, ``tau_b``, correlation ``rho_ab``)
    and ``c'_i`` (SD ``tau_c``); see :mod:`bayes_se.builders.mediation_paths`.

    Parameters
    ----------
    data : PathEstimates, source for :func:`bayes_se.reported_paths.load_paths`, or None
        The reported paths (None: correlation matrices only).
    correlations : CorrelationData or source for :func:`bayes_se.correlations.load_correlations`, optional
        Trials that give a correlation matrix of (x, m, y) instead; they enter through their
        standardised paths, so the reported paths must be standardised too.
    x, m, y : str
        Intervention, mediator and outcome (the names in the correlation table; labels otherwise).
    priors : dict, optional
        ``a``, ``b``, ``c_prime``, ``tau_a``, ``tau_b``, ``tau_c`` (prior strings or Prior objects),
        ``eta`` (LKJ shape of rho_ab); defaults :data:`bayes_se.defaults.PATH_MEDIATION_PRIORS`.
    seed, draws, tune, chains, cores, target_accept, sampler
        As in :func:`bayes_se.sampling.sample`. ``sampler="nutpie"`` (default): nutpie's NUTS on
        the Numba-compiled density (:mod:`bayes_se.nutpie_sampling`; chains in turn on one thread,
        ``cores`` unused), 5-10 times faster than ``"pymc"`` (``benchmarks/mediation_paths.md``).
        With ``"pymc"``, ``cores=None`` is PyMC's choice (on a 2-core machine 1: sequential chains).
    a_variance : {"reported", "pooled"}
        Sampling variance of each trial's ``a``: ``se_a^2`` as reported, or ``(1 - a^2)^2 / (n_i - 1)``
        at the pooled ``a`` (standardised paths with ``n`` known; see
        :func:`bayes_se.builders.mediation_paths.build_mediation_paths`). The per-trial
        log-likelihood and ``theta`` draws of the fit use the reported variances either way.

    Returns
    -------
    PathMediationFit

    References
    ----------
    Bauer, Preacher & Gil (2006); Cheung (2015), ch. 7.
    """
    from bayes_se.builders.mediation_paths import build_mediation_paths
    from bayes_se.diagnostics import check
    from bayes_se.errors import DataError
    from bayes_se.reported_paths import combine_paths, load_paths, paths_from_correlations
    from bayes_se.sampling import sample

    # each table may be one part of a mixed input: one trial in it suffices, the union is checked
    paths = data if (data is None or isinstance(data, PathEstimates)) else \
        load_paths(data, partial=correlations is not None)
    corr = _load_correlations(correlations, x, m, y, partial=data is not None)
    matrices = None if corr is None else paths_from_correlations(corr, x, m, y)
    combined = combine_paths(paths, matrices)  # refuses fewer than 2 trials in all
    if not combined.observed[:, 1].any():
        raise DataError("no study gives b (the M -> Y path); the mediation model needs it", column="b")
    built = build_mediation_paths(combined, priors=priors, a_variance=a_variance)
    check_path_prior_scale(combined, built.priors)
    idata = sample(built, draws=draws, tune=tune, chains=chains, cores=cores, target_accept=target_accept,
                   seed=seed, sampler=sampler)
    recorded = {k: v for k, v in built.priors.items() if k != "eta" and (built.has_c or k not in ("c_prime", "tau_c"))}
    src = np.asarray(combined.source)
    settings = {"model": "mediation_paths", "engine": "mcmc", "x": x, "m": m, "y": y,
                "paths": list(built.paths), "k": combined.k,
                "sources": {kind: [str(s) for s, k in zip(combined.study, src) if k == kind]
                            for kind in ("paths", "matrix")},
                "priors": {k: str(v) for k, v in built.priors.items()}, "eta": float(built.priors["eta"]),
                "seed": int(seed), "draws": draws, "tune": tune, "chains": chains,
                "target_accept": float(idata.attrs["target_accept"]), "sampler": sampler,
                "a_variance": a_variance}
    return PathMediationFit(idata=idata, data=combined, settings=settings,
                            diagnostics=check(idata, var_names=_checked(idata)), priors=recorded)
