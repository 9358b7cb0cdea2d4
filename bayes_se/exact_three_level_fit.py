"""The exact three-level fit: :mod:`bayes_se.exact_three_level` behind the common fit interface.

Model: ``y_ij = x_ij' beta + u_j + w_ij + e_ij``, ``u_j ~ N(0, sigma_cluster^2)``,
``w_ij ~ N(0, sigma_effect^2)``, ``e_j ~ N(0, V_j)`` (``V_j`` diagonal, or with a constant
within-cluster correlation ``rho``); beta integrated analytically, the two SDs by 2-D quadrature.

:class:`ThreeLevelExactFit` is a :class:`bayes_se.fits.Fit`: ``summary``, ``print_summary``,
``prob_greater``, ``idata`` (exact iid draws, with the per-cluster log-likelihood for LOO, as the MCMC
three-level builder stores it), ``to_netcdf`` / :func:`bayes_se.api.load_fit` and the plots, plus the
log marginal likelihood, the Bayes factors for ``sigma_cluster = 0`` and ``sigma_effect = 0``, and
:func:`rho_sensitivity` (the correlated-effects model over a grid of assumed correlations).

References
----------
Konstantopoulos S (2011). Research Synthesis Methods 2, 61-76.
Pustejovsky JE, Tipton E (2022). Prevention Science 23, 425-438.
Vehtari A, Gelman A, Gabry J (2017). Practical Bayesian model evaluation using leave-one-out
cross-validation and WAIC. Statistics and Computing 27, 1413-1432.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from bayes_se import defaults
from bayes_se.errors import SpecError
from bayes_se.exact_fit import exact_hdi, exact_verdict
from bayes_se.fits import Fit, interval_columns, stored_priors, stored_settings, typical_within_variance

__all__ = ["ThreeLevelExactFit", "fit_exact_three_level", "rho_sensitivity", "compare_dependence"]


class ThreeLevelExactFit(Fit):
    """A three-level (or correlated-effects) normal model solved by 2-D quadrature.

    Attributes
    ----------
    posterior : bayes_se.exact_three_level.ThreeLevelPosterior
    yi, vi : ndarray
    cluster : list of str
        The cluster label of each effect.
    X : ndarray or None
    priors, settings : dict
        Resolved priors (``mu``/``beta[NAME]``, ``sigma_cluster``, ``sigma_effect``); what ran
        (``rho`` among it).
    """

    engine = "exact"  # no sampler: the exact paths of reports and outputs apply (load_fit tells it by attrs)

    def __init__(self, posterior, *, yi, vi, cluster, X=None, V=None, priors: dict, settings: dict, data=None,
                 spec=None, idata=None):
        self.posterior = posterior
        self.yi = np.asarray(yi, float)
        self.vi = np.asarray(vi, float)
        self.cluster = [str(c) for c in cluster]
        self.X = None if X is None else np.asarray(X, float)
        self.V = None if V is None else np.asarray(V, float)
        self.priors = dict(priors)
        self.settings = dict(settings)
        self.data = data
        self.spec = spec
        self._idata = idata
        self.diagnostics = exact_verdict()

    @property
    def coef_names(self) -> list[str]:
        return list(self.posterior.coef_names)

    @property
    def rho(self):
        return self.posterior.rho

    def _coef_rows(self) -> list[str]:
        return self.posterior.coef_rows

    # -- hooks -------------------------------------------------------------------------------
    def location_names(self) -> list[str]:
        return self._coef_rows() + ["pred"] + [f"theta[{s}]" for s in self.posterior.study]

    def _prob(self, name, op, x):
        return float(self.posterior.prob(name, op, x))

    def _i2(self):
        s2 = typical_within_variance(self.vi, self.X)
        return s2, (lambda t: np.square(t) / (np.square(t) + s2))

    def _table(self, level, interval, theta):
        post = self.posterior
        saved = post.level
        post.level = level
        try:
            table = post.summary(theta=theta, pred=True)
        finally:
            post.level = saved
        cols = interval_columns(level, "central")
        # I2 = (sc^2 + se^2) / (sc^2 + se^2 + s^2), increasing in the total SD: its quantiles are the
        # total SD's (exact, ThreeLevelPosterior.total_quantile) mapped
        _, i2 = self._i2()
        W = post.grid["weights"]
        tot = np.sqrt(np.square(post.grid["sigma_cluster"])[:, None] + np.square(post.grid["sigma_effect"])[None, :])
        g = i2(tot)
        mean = float(np.sum(W * g))
        a = (1 - level) / 2
        q = [post.total_quantile(p) for p in (a, 0.5, 1 - a)] if post.free else [0.0, 0.0, 0.0]
        table.loc["I2", ["mean", "sd"]] = mean, math.sqrt(float(np.sum(W * (g - mean) ** 2)))
        table.loc["I2", [cols[0], "q50", cols[2]]] = i2(np.asarray(q))
        if interval == "hdi":
            hcols = interval_columns(level, "hdi")
            bounds = []
            for name in table.index:
                if name == "I2":  # the total SD has no closed-form quantile function for an HDI search
                    bounds.append((np.nan, np.nan))
                else:
                    bounds.append(exact_hdi(post, name, level))
            bounds = np.array(bounds)
            table = table.rename(columns={cols[0]: hcols[0], cols[2]: hcols[2]})
            table[hcols[0]], table[hcols[2]] = bounds[:, 0], bounds[:, 1]
            cols = hcols
        return table[["mean", "sd", cols[0], "q50", cols[2]]]

    def _headline(self) -> str:
        kind = "three-level model" if not self.rho else f"correlated-effects model (rho = {self.rho:g})"
        what = "meta-regression, " if self.X is not None else ""
        return (f"Bayesian {what}{kind}, exact engine (2-D quadrature over sigma_cluster, sigma_effect; "
                f"k = {self.k} effects in {len(self.posterior.cluster)} clusters)")

    def _footer(self) -> list[str]:
        lml = self.log_marginal_likelihood
        lines = [f"log marginal likelihood = {lml:.4f}" if math.isfinite(lml)
                 else "log marginal likelihood: undefined (improper flat prior)"]
        log_bf = self.log_bayes_factors()
        for key, what in (("sigma_cluster0", "sigma_cluster = 0"), ("sigma_effect0", "sigma_effect = 0")):
            if log_bf.get(key) is not None:
                lines.append(f"BF01 ({what} vs free) = {math.exp(min(log_bf[key], 700)):.4g}    "
                             f"log BF01 = {log_bf[key]:.4f}")
        return lines

    def _data_arrays(self) -> list:
        labels = pd.factorize(pd.Series(self.cluster))[0].astype(float)
        return [self.yi, self.vi, self.X, labels, self.V]

    def posterior_density(self, name, x):
        if name in ("mu", "pred", "sigma_cluster", "sigma_effect") or name.startswith(("beta[", "theta[")):
            return np.asarray(self.posterior.pdf(name, x), float)
        return None

    @property
    def idata(self):
        """Exact iid draws as an InferenceData (built on first use, seeded by ``settings['seed']``)."""
        if self._idata is None:
            self._idata = three_level_idata(self, seed=int(self.settings.get("seed", defaults.SEED)))
        return self._idata

    def to_netcdf(self, path) -> str:
        self.idata.attrs["three_level"] = json.dumps({"cluster": self.cluster, "study": list(self.posterior.study),
                                                      "rho": self.rho})
        return super().to_netcdf(path)

    @classmethod
    def from_idata(cls, idata) -> "ThreeLevelExactFit":
        from bayes_se.exact_three_level import exact_three_level

        settings = stored_settings(idata)
        priors = stored_priors(idata)
        info = json.loads(idata.attrs["three_level"])
        yi = np.asarray(idata.observed_data["y"], float)
        vi = np.asarray(idata.constant_data["vi"], float)
        X = np.asarray(idata.constant_data["X"], float) if "X" in idata.constant_data else None
        V = np.asarray(idata.constant_data["V"], float) if "V" in idata.constant_data else None
        post = exact_three_level(yi, vi, info["cluster"], X=X, coef_names=settings.get("coef"), study=info["study"],
                                 priors=priors, rho=info["rho"], V=V, level=settings.get("level", defaults.LEVEL))
        return cls(post, yi=yi, vi=vi, cluster=info["cluster"], X=X, V=V, priors=priors, settings=settings,
                   idata=idata)

    # -- exact extras ------------------------------------------------------------------------
    @property
    def log_marginal_likelihood(self) -> float:
        return float(self.posterior.log_marginal_likelihood)

    def log_bayes_factors(self) -> dict:
        """``log BF01`` of ``sigma_cluster = 0`` and ``sigma_effect = 0`` against this model (ratios of
        marginal likelihoods, :meth:`ThreeLevelPosterior.log_bayes_factor`), and of ``mu = 0`` for an
        intercept-only model (Savage-Dickey; None otherwise)."""
        out = {f"{n}0": float(self.posterior.log_bayes_factor(f"{n}=0")) for n in self.posterior.free}
        out["mu0"] = float(self.posterior.log_bayes_factor("mu=0")) if self._coef_rows() == ["mu"] else None
        return out

    def bayes_factors(self) -> dict:
        """BF01 of :meth:`log_bayes_factors` (inf or 0 where it overflows)."""
        with np.errstate(over="ignore"):
            return {k: (None if v is None else float(np.exp(v))) for k, v in self.log_bayes_factors().items()}

    def loo(self, **kwargs):
        """PSIS-LOO (``arviz.loo``) over clusters: the log-likelihood in ``idata`` is per cluster
        (leave one cluster out), the right unit when effects within a cluster are dependent."""
        import arviz as az

        return az.loo(self.idata, **kwargs)

    def to_dict(self, level=None, interval="central") -> dict:
        out = super().to_dict(level=level, interval=interval)
        out["log_marginal_likelihood"] = self.log_marginal_likelihood
        out["log_bayes_factors"] = self.log_bayes_factors()
        out["bayes_factors"] = self.bayes_factors()
        out["rho"] = self.rho
        out["clusters"] = len(self.posterior.cluster)
        return out


def three_level_idata(fit: ThreeLevelExactFit, *, seed: int, chains: int = defaults.EXACT_CHAINS,
                      draws: int = defaults.EXACT_DRAWS):
    """InferenceData of exact iid draws: ``posterior`` (``mu`` or ``beta``, ``sigma_cluster``,
    ``sigma_effect``, ``u_cluster``, ``theta``, ``pred``), ``log_likelihood`` (``y`` per cluster:
    ``log N(y_j; X_j beta, C_j)``), ``posterior_predictive`` and ``observed_data`` (``y``), ``prior``
    and ``constant_data`` (``vi``, ``X``, ``V`` when given)."""
    import arviz as az
    import xarray as xr

    post = fit.posterior
    rng = np.random.default_rng(seed)
    n = chains * draws
    d = post.draws(n, rng=rng)
    study = list(post.study)
    clusters = list(post.cluster)
    coefs = list(post.coef_names)

    def cd(a):
        return np.asarray(a).reshape((chains, draws) + np.shape(a)[1:])

    base = ("chain", "draw")
    pv = {"sigma_cluster": (base, cd(d["sigma_cluster"])), "sigma_effect": (base, cd(d["sigma_effect"])),
          "u_cluster": (base + ("cluster",), cd(d["u_cluster"])), "theta": (base + ("study",), cd(d["theta"])),
          "pred": (base, cd(d["pred"]))}
    intercept_only = fit.posterior.coef_rows == ["mu"]
    if intercept_only:
        pv["mu"] = (base, cd(d["mu"]))
    else:
        pv["beta"] = (base + ("coef",), cd(d["beta"]))
    for name in post.fixed:
        pv.pop(name)
    coords = {"chain": np.arange(chains), "draw": np.arange(draws), "study": study, "cluster": clusters,
              "coef": coefs}

    def ds(variables):
        used = {dim for dims, _ in variables.values() for dim in dims}
        return xr.Dataset(variables, coords={k: v for k, v in coords.items() if k in used})

    loglik = post.cluster_loglik(d["beta"], d["sigma_cluster"], d["sigma_effect"])
    # replicates: y = X beta + u + w + e, e ~ N(0, V_j)
    Xm = np.ones((len(study), 1)) if fit.X is None else fit.X
    loc = d["beta"] @ Xm.T
    idx = {c: i for i, c in enumerate(clusters)}
    ci = np.array([idx[c] for c in fit.cluster])
    noise = sampling_noise(fit, n, rng)
    y_rep = (loc + d["sigma_cluster"][:, None] * rng.standard_normal((n, len(clusters)))[:, ci]
             + d["sigma_effect"][:, None] * rng.standard_normal(loc.shape) + noise)
    prior_vars = {}
    location = [fit.priors[r] if r in fit.priors else fit.priors.get("mu") for r in fit.posterior.coef_rows]
    if not any(p.improper for p in location):
        cols = np.stack([np.asarray(p.rvs(n, rng=rng), float) for p in location], axis=-1)
        if intercept_only:
            prior_vars["mu"] = (base, cd(cols[:, 0]))
        else:
            prior_vars["beta"] = (base + ("coef",), cd(cols))
    for name in post.free:
        pr = fit.priors[name]
        t = np.asarray(pr.rvs(n, rng=rng), float)
        prior_vars[name] = (base, cd(np.sqrt(t) if pr.on_variance else t))
    groups = {
        "posterior": ds(pv),
        "posterior_predictive": ds({"y": (base + ("study",), cd(y_rep))}),
        "log_likelihood": ds({"y": (base + ("cluster",), cd(loglik))}),
        "observed_data": xr.Dataset({"y": (("study",), fit.yi)}, coords={"study": study}),
        "prior": ds(prior_vars),
    }
    const = {"vi": (("study",), fit.vi)}
    if fit.X is not None:
        const["X"] = (("study", "coef"), fit.X)
    if fit.V is not None:
        const["V"] = (("study", "study2"), fit.V)
    const_coords = {"study": study}
    if fit.X is not None:
        const_coords["coef"] = coefs
    if fit.V is not None:
        const_coords["study2"] = study
    groups["constant_data"] = xr.Dataset(const, coords=const_coords)
    for name in ("theta", "pred", "u_cluster"):
        groups["posterior"][name].attrs["exact_conditional_draw"] = 1
    idata = az.InferenceData(**groups)
    idata.attrs.update(seed=int(seed), engine="exact")
    return idata


def sampling_noise(fit, n, rng):
    """``n`` draws of the sampling errors ``e ~ N(0, blockdiag(V_j))`` (rows: draws; effects in order)."""
    from bayes_se.exact_three_level import within_cluster_covariance

    k = fit.yi.size
    out = np.empty((n, k))
    if fit.V is not None:
        blocks = {}
        for i, c in enumerate(fit.cluster):
            blocks.setdefault(c, []).append(i)
        blocks = {c: (np.asarray(ix), fit.V[np.ix_(ix, ix)]) for c, ix in blocks.items()}
    else:
        blocks = within_cluster_covariance(fit.vi, fit.cluster, fit.rho or 0.0)
    for idx, block in blocks.values():
        L = np.linalg.cholesky(block)
        out[:, idx] = rng.standard_normal((n, idx.size)) @ L.T
    return out


def fit_exact_three_level(yi, vi, cluster, *, X=None, coef_names=None, study=None, priors: dict, rho=None,
                          V=None, settings: dict | None = None, data=None, spec=None) -> ThreeLevelExactFit:
    """Solve the three-level (``rho`` None or 0) or correlated-effects model exactly and wrap it as a
    :class:`ThreeLevelExactFit`.

    Parameters
    ----------
    yi, vi : array_like
    cluster : sequence
        Cluster label of each effect.
    X : array_like, optional
        Design matrix with the intercept column (None: intercept only).
    priors : dict
        Resolved priors (``ModelSpec.model_priors`` of a ``three_level`` spec): ``mu`` or
        ``beta[NAME]`` (normal or flat), ``sigma_cluster``, ``sigma_effect``.
    rho : float, optional
        Constant within-cluster sampling correlation (metafor's ``vcalc(..., rho=)``).
    V : array_like, optional
        A full block-diagonal sampling covariance instead of ``rho``.
    """
    from bayes_se.exact_three_level import exact_three_level

    settings = dict(settings or {})
    level = float(settings.get("level", defaults.LEVEL))
    names = list(coef_names) if coef_names is not None else (["intercept"] if X is None else None)
    post = exact_three_level(yi, vi, cluster, X=X, coef_names=names, study=study, priors=priors, rho=rho, V=V,
                             level=level)
    settings.setdefault("level", level)
    settings.setdefault("seed", defaults.SEED)
    settings.update(engine="exact", k=len(post.study), clusters=len(post.cluster),
                    coef=list(post.coef_names), rho=post.rho, nodes=post.nodes,
                    model="three_level" if not post.rho else "correlated_effects")
    return ThreeLevelExactFit(post, yi=yi, vi=vi, cluster=cluster, X=X, V=V, priors=priors, settings=settings,
                              data=data, spec=spec)


def rho_sensitivity(yi, vi, cluster, *, priors: dict, rhos=(0.0, 0.3, 0.5, 0.7, 0.9), X=None, coef_names=None,
                    study=None, loo: bool = False, seed: int = defaults.SEED) -> pd.DataFrame:
    """The correlated-effects model refitted exactly for each assumed within-cluster correlation.

    One row per ``rho``: the posterior mean and central 95% interval of the first coefficient (``mu``
    for an intercept-only model), of ``sigma_cluster`` and ``sigma_effect``, the log marginal
    likelihood, ``log_bf_vs_rho0`` (``log p(y | rho) - log p(y | rho = 0)``: the exact Bayes factor of
    each assumption against independent sampling errors, i.e. the three-level model), and with
    ``loo=True`` the PSIS-LOO ``elpd_loo`` over clusters and its standard error.
    """
    rows = []
    base = None
    for rho in rhos:
        fit = fit_exact_three_level(yi, vi, cluster, X=X, coef_names=coef_names, study=study, priors=priors,
                                    rho=float(rho), settings={"seed": seed})
        post = fit.posterior
        first = fit._coef_rows()[0]
        row = {"rho": float(rho)}
        for name in (first, "sigma_cluster", "sigma_effect"):
            q = post.quantile(name, [0.025, 0.975])
            row.update({f"{name}_mean": post.mean(name), f"{name}_q2.5": q[0], f"{name}_q97.5": q[1]})
        row["log_ml"] = fit.log_marginal_likelihood
        base = row["log_ml"] if base is None and rho == 0 else base
        if loo:
            res = fit.loo()
            row["elpd_loo"], row["elpd_loo_se"] = float(res.elpd_loo), float(res.se)
        rows.append(row)
    table = pd.DataFrame(rows).set_index("rho")
    if base is not None:
        table.insert(list(table.columns).index("log_ml") + 1, "log_bf_vs_rho0", table["log_ml"] - base)
    return table


def compare_dependence(fits: dict) -> pd.DataFrame:
    """Exact log marginal likelihoods, Bayes factors against the first fit, and PSIS-LOO (per
    cluster) of several exact three-level / correlated-effects fits of the same data, with the
    elpd difference to the first fit and its standard error ``sqrt(J var(d_j))`` over the J
    clusters' pointwise differences (Vehtari et al. 2017, as ``arviz.compare``).

    Parameters
    ----------
    fits : dict
        name -> :class:`ThreeLevelExactFit`.
    """
    import arviz as az

    names = list(fits)
    first = fits[names[0]].log_marginal_likelihood
    rows = []
    base = None
    for name in names:
        f = fits[name]
        res = az.loo(f.idata, pointwise=True)
        point = np.asarray(res.loo_i, float)  # one value per cluster
        base = point if base is None else base
        if point.shape != base.shape:
            raise SpecError("the fits compared must share their clusters", key="fits")
        diff = point - base
        rows.append({"model": name, "log_ml": f.log_marginal_likelihood,
                     "log_bf_vs_first": f.log_marginal_likelihood - first, "elpd_loo": float(res.elpd_loo),
                     "elpd_loo_se": float(res.se), "elpd_diff_vs_first": float(diff.sum()),
                     "elpd_diff_se": float(np.sqrt(diff.size * np.var(diff))), "p_loo": float(res.p_loo),
                     "max_pareto_k": float(np.max(res.pareto_k))})
    return pd.DataFrame(rows).set_index("model")
