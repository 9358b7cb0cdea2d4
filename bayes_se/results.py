"""The result object of a Bayesian fit, and the one-call fits that produce it.

:class:`BayesianFit` plays the part of metafor's ``rma`` object: the draws (``idata``), the
settings, the convergence verdict, a summary table, posterior probabilities of effects and an
I^2-like share of heterogeneity ``tau^2 / (tau^2 + s^2)`` per draw, with ``s^2`` metafor's
"typical" within-study variance ``(k - p) / tr(P)``, ``P = W - W X (X'WX)^-1 X'W``, ``W = diag(1/v)``.

References
----------
Higgins, J. P. T. & Thompson, S. G. (2002). Quantifying heterogeneity in a meta-analysis.
Statistics in Medicine 21, 1539-1558.
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. JSS 36(3).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayes_se.diagnostics import Verdict, check, without_numba

#: Posterior variables left out of the summary table: raw non-centred draws and effect-level
#: deviations (theta carries the same information on the effect scale).
HIDDEN = ("u", "w_effect")
#: Location parameters (for probabilities of effects).
LOCATION = ("mu", "beta", "pred", "theta")


def typical_within_variance(vi, X=None) -> float:
    """metafor's typical within-study variance ``s^2 = (k - p) / tr(P)`` (Higgins & Thompson 2002).

    Parameters
    ----------
    vi : array_like
        Sampling variances.
    X : array_like, optional
        Design matrix (None: intercept only).

    Returns
    -------
    float
    """
    vi = np.asarray(vi, dtype=float)
    X = np.ones((vi.size, 1)) if X is None else np.asarray(X, dtype=float)
    w = 1.0 / vi
    wx = X * w[:, None]
    # tr(P) = sum w - tr((X'WX)^-1 X'W^2 X)
    trace = w.sum() - np.trace(np.linalg.solve(X.T @ wx, wx.T @ wx))
    return float((vi.size - X.shape[1]) / trace)


def _row_names(name, arr):
    extra = [d for d in arr.dims if d not in ("chain", "draw")]
    if not extra:
        return [name]
    stacked = arr.stack(_elem=extra)
    return [f"{name}[{', '.join(map(str, np.atleast_1d(v)))}]" for v in stacked["_elem"].values]


def _flat(arr):
    """(chain, draw, n) view of a posterior variable."""
    values = np.asarray(arr)
    return values.reshape(values.shape[0], values.shape[1], -1)


@dataclass
class BayesianFit:
    """A sampled Bayesian meta-analysis.

    Attributes
    ----------
    idata : arviz.InferenceData
    meta : MetaModel or None
        The built model (data, design, study labels).
    settings : dict
        Model, priors and sampler settings.
    diagnostics : Verdict
    """

    idata: object
    meta: object = None
    settings: dict = field(default_factory=dict)
    diagnostics: Verdict | None = None

    def __post_init__(self):
        if self.diagnostics is None:
            self.diagnostics = check(self.idata)

    # -- draws -------------------------------------------------------------------------------
    def draws(self) -> dict:
        """Posterior draws, name -> array (chain, draw, n), with row names; includes ``I2``."""
        post = self.idata.posterior
        out = {}
        for name in post.data_vars:
            if name in HIDDEN or name.startswith("log_"):
                continue
            out[name] = (_row_names(name, post[name]), _flat(post[name]))
        i2 = self.heterogeneity_draws()
        if i2 is not None:
            out["I2"] = i2
        return out

    def heterogeneity_draws(self):
        """(row names, draws) of ``tau^2 / (tau^2 + s^2)`` (three-level: total of both variances)."""
        if self.meta is None:
            return None
        post = self.idata.posterior
        s2 = typical_within_variance(self.meta.vi, self.meta.X)
        if "tau" in post:
            tau2 = _flat(post["tau"]) ** 2
            names = _row_names("I2", post["tau"])
        elif "sigma_cluster" in post:
            tau2 = _flat(post["sigma_cluster"]) ** 2 + _flat(post["sigma_effect"]) ** 2
            names = ["I2"]
        else:
            return None
        return names, tau2 / (tau2 + s2)

    # -- tables --------------------------------------------------------------------------------
    def summary(self, smallest_effect: float | None = None, level: float = 0.95) -> pd.DataFrame:
        """Posterior summary: one row per parameter.

        Parameters
        ----------
        smallest_effect : float, optional
            Smallest effect of interest ``s``: adds ``prob_above`` = P(x > s) and ``prob_below``
            = P(x < -s) for location rows (mu, beta, pred, theta).
        level : float
            Central interval; columns ``q{(1-level)/2}``, ``q50``, ``q{(1+level)/2}`` in percent.

        Returns
        -------
        pandas.DataFrame
            Columns ``mean``, ``sd``, the three quantiles, ``ess_bulk``, ``ess_tail``, ``r_hat``.
        """
        import arviz as az

        if not 0.0 < level < 1.0:
            from bayes_se.errors import SpecError

            raise SpecError(f"level must be in (0, 1), got {level}", key="level")
        lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
        qcols = [f"q{lo:g}", "q50", f"q{hi:g}"]
        rows = []
        with without_numba():  # ArviZ's Numba kernel costs a JIT compile per process
            for name, (labels, values) in self.draws().items():
                for j, label in enumerate(labels):
                    x = values[:, :, j]
                    q = np.quantile(x, [lo / 100, 0.5, hi / 100])  # type 7, as posterior::quantile2
                    row = {"parameter": label, "mean": x.mean(), "sd": x.std(ddof=1),
                           qcols[0]: q[0], "q50": q[1], qcols[2]: q[2],
                           "ess_bulk": float(az.ess(x, method="bulk")),
                           "ess_tail": float(az.ess(x, method="tail")),
                           "r_hat": float(az.rhat(x)) if x.shape[0] > 1 else np.nan}
                    if smallest_effect is not None:
                        is_loc = name in LOCATION
                        row["prob_above"] = float(np.mean(x > smallest_effect)) if is_loc else np.nan
                        row["prob_below"] = float(np.mean(x < -smallest_effect)) if is_loc else np.nan
                    rows.append(row)
        return pd.DataFrame(rows).set_index("parameter")

    def prob_greater(self, x: float = 0.0) -> pd.Series:
        """Posterior probability that mu (or each beta) exceeds ``x``."""
        post = self.idata.posterior
        out = {}
        for name in ("mu", "beta"):
            if name in post:
                for label, j in zip(_row_names(name, post[name]), range(_flat(post[name]).shape[2])):
                    out[label] = float(np.mean(_flat(post[name])[:, :, j] > x))
        return pd.Series(out, name=f"P(> {x:g})")

    def prob_positive(self) -> pd.Series:
        """Posterior probability that mu (or each beta) is positive."""
        return self.prob_greater(0.0)

    def print_summary(self, smallest_effect: float | None = None, level: float = 0.95) -> str:
        """Print (and return) the summary text, with the diagnostics banner first when failed."""
        parts = []
        if not self.diagnostics.passed:
            parts.append(self.diagnostics.banner())
        reason = self.idata.attrs.get("refit_reason")
        if reason:
            parts.append(f"note: {reason}")
        title = self.settings.get("model", "Bayesian model")
        parts.append(f"{title} (k = {self.settings.get('k', '?')}), "
                     f"{self.idata.posterior.sizes['chain']} chains x {self.idata.posterior.sizes['draw']} draws")
        table = self.summary(smallest_effect=smallest_effect, level=level)
        with pd.option_context("display.width", 120, "display.max_rows", 200):
            parts.append(table.round(4).to_string())
        d = self.diagnostics
        parts.append(f"diagnostics: max R-hat {d.max_r_hat:.3f}, min bulk ESS {d.min_ess_bulk:.0f}, "
                     f"min tail ESS {d.min_ess_tail:.0f}, divergences {d.divergences}, "
                     f"min E-BFMI {d.min_bfmi:.2f} -> {'passed' if d.passed else 'FAILED'}")
        text = "\n".join(parts)
        print(text)
        return text

    def to_dict(self) -> dict:
        """JSON-ready: ``parameters`` (name -> statistics), ``diagnostics``, ``settings``."""
        table = self.summary()

        def num(v):
            return None if not np.isfinite(v) else float(v)

        params = {name: {col: num(val) for col, val in row.items()} for name, row in table.iterrows()}
        out = {"parameters": params, "diagnostics": self.diagnostics.to_dict(), "settings": self.settings}
        if "refit_reason" in self.idata.attrs:
            out["refit_reason"] = str(self.idata.attrs["refit_reason"])
        return out

    def to_netcdf(self, path) -> str:
        """Write the InferenceData with spec text, seed, data checksum and package versions in attrs."""
        self.idata.attrs.update(provenance_attrs(self.settings, self.meta))
        self.idata.to_netcdf(str(path))
        return str(path)


def provenance_attrs(settings: dict, meta=None) -> dict:
    """netCDF-safe attributes: spec text, data checksum and package versions.

    The data checksum is the one :func:`bayes_se.api.fit` recorded from the EffectData (the same
    as ``provenance.json``'s); a fit built from arrays gets a hash of its numbers instead.
    """
    from bayes_se.outputs import package_versions

    attrs = {"spec": json.dumps(settings, sort_keys=True, default=str)}
    attrs.update({f"{name}_version": version for name, version in package_versions().items() if version})
    if "seed" in settings:
        attrs["seed"] = int(settings["seed"])
    if settings.get("data_sha256"):
        attrs["data_sha256"] = str(settings["data_sha256"])
    elif meta is not None:
        digest = hashlib.sha256()
        for arr in (meta.yi, meta.vi) + ((meta.X,) if meta.X is not None else ()):
            digest.update(np.ascontiguousarray(arr, dtype=float).tobytes())
        attrs["data_sha256"] = digest.hexdigest()
    if settings.get("spec_toml"):
        attrs["spec_toml"] = str(settings["spec_toml"])
    return attrs


def _fit(meta, *, seed, draws, tune, chains, cores, target_accept, sampler) -> BayesianFit:
    from bayes_se.sampling import sample

    idata = sample(meta, draws=draws, tune=tune, chains=chains, cores=cores,
                   target_accept=target_accept, seed=seed, sampler=sampler)
    settings = dict(meta.settings, seed=int(seed), draws=draws, tune=tune, chains=chains,
                    target_accept=float(idata.attrs["target_accept"]), sampler=sampler)
    return BayesianFit(idata=idata, meta=meta, settings=settings)


def fit_random_effects(yi, vi, *, X=None, coef_names=None, study=None, priors=None, effects="normal",
                       nu=None, subgroup=None, seed: int, draws: int = 1000, tune: int = 1000,
                       chains: int = 4, cores: int | None = None, target_accept: float | None = None,
                       sampler: str = "pymc") -> BayesianFit:
    """Build, sample and summarise a Bayesian random-effects model or meta-regression.

    Model: ``y_i ~ N(x_i' beta + u_i, v_i)``, ``u_i ~ N(0, tau^2)`` (or ``tau * t_nu``), sampled in
    the marginal form; see :func:`bayes_se.builders.random_effects.build_random_effects` for the
    parameters and :func:`bayes_se.sampling.sample` for the sampler settings.

    Returns
    -------
    BayesianFit

    References
    ----------
    Higgins, Thompson & Spiegelhalter (2009), JRSS A 172:137-159.
    """
    from bayes_se.builders.random_effects import build_random_effects

    meta = build_random_effects(yi, vi, X=X, coef_names=coef_names, study=study, priors=priors,
                                effects=effects, nu=nu, subgroup=subgroup)
    return _fit(meta, seed=seed, draws=draws, tune=tune, chains=chains, cores=cores,
                target_accept=target_accept, sampler=sampler)


def fit_three_level(yi, vi, cluster, *, X=None, coef_names=None, study=None, priors=None, seed: int,
                    draws: int = 1000, tune: int = 1000, chains: int = 4, cores: int | None = None,
                    target_accept: float | None = None, sampler: str = "pymc") -> BayesianFit:
    """Build, sample and summarise a Bayesian three-level model (effects within clusters).

    Model: ``y_ij = x_ij' beta + u_j + w_ij + e_ij`` with ``u_j ~ N(0, sigma_cluster^2)``,
    ``w_ij ~ N(0, sigma_effect^2)``; see :func:`bayes_se.builders.three_level.build_three_level`.

    Returns
    -------
    BayesianFit

    References
    ----------
    Konstantopoulos (2011), Research Synthesis Methods 2:61-76.
    """
    from bayes_se.builders.three_level import build_three_level

    meta = build_three_level(yi, vi, cluster, X=X, coef_names=coef_names, study=study, priors=priors)
    return _fit(meta, seed=seed, draws=draws, tune=tune, chains=chains, cores=cores,
                target_accept=target_accept, sampler=sampler)
