"""Mediation and path models from a pooled correlation matrix: path algebra, Bayesian fit, result.

The model X -> M -> Y on the pooled correlation matrix: ``a = r_XM``, ``b`` and ``c'`` the
coefficients of M and X on Y, ``indirect = a b``, ``total = c' + a b`` (the algebra for any path
model is in :mod:`bayes_se.path_algebra`).

:func:`fit_mediation` fits the Bayesian MASEM of :mod:`bayes_se.builders.masem` and returns a
:class:`MediationFit`. The path algebra (:class:`PathModel`, :func:`vec_to_matrix`) lives in
:mod:`bayes_se.path_algebra`, below this module and the MASEM builders.

References
----------
Becker, B. J. (1992). Using results from replicated studies to estimate linear models. Journal of
Educational Statistics 17, 341-362.
Bauer, D. J., Preacher, K. J. & Gil, K. M. (2006). Conceptualizing and testing random indirect
effects and moderated mediation in multilevel models. Psychological Methods 11, 142-163.
MacKinnon, D. P. (2008). Introduction to Statistical Mediation Analysis. Erlbaum, ch. 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bayes_se.fits import Fit, draws_table, stored_priors, stored_settings
from bayes_se.path_algebra import PathModel, path_model, reported_effects, vec_to_matrix

# PathModel, vec_to_matrix and path_model live in bayes_se.path_algebra and stay importable from here
__all__ = ["PathModel", "MediationFit", "fit_mediation", "MEDIATION_NAMES"]

#: Row names of the mediation model's effects.
MEDIATION_NAMES = ("a", "b", "c_prime", "indirect", "indirect_avg", "total", "prop_mediated")


#: Monte Carlo draws of study-level matrices per posterior draw for ``indirect_avg``.
MC_DRAWS = 256
#: What the raw-sample calibration study found of ``likelihood="own"`` (docs/calibration.md): weights
#: that depend on each study's own r pull the pooled correlations away from 0.
OWN_LIKELIHOOD_NOTE = ("likelihood 'own' is biased away from 0 on raw-sample data (k = 70 trials: a "
                       "+0.009, about 0.6 posterior SD; 81-85% coverage of nominal 90% intervals; "
                       "docs/calibration.md); use 'pooled' (the default) for inference")


def average_indirect(model: PathModel, rho, T_chol, rng, mc_draws: int = MC_DRAWS, scale: str = "r"):
    """Average of the studies' own indirect effects, ``E[a_i b_i]`` over ``rho_i ~ N(rho, T)``.

    Where paths vary across studies the mean of the products is not the product of the means:
    ``E[a_i b_i] = E[a_i] E[b_i] + cov(a_i, b_i)`` (Bauer, Preacher & Gil 2006). Per posterior draw,
    ``mc_draws`` study matrices are drawn from ``N(rho, T)`` truncated to valid correlation matrices
    (draws that are not positive definite are rejected) and the products averaged. Monte Carlo
    rather than the delta-method covariance because the products are far from linear when ``T`` is
    large. With ``scale="z"`` (the Fisher-z likelihood) the study deviations live on the z scale:
    ``atanh(rho_i) ~ N(atanh(rho), T)`` and ``rho_i = tanh(.)`` is always in (-1, 1).

    Parameters
    ----------
    model : PathModel
    rho : numpy.ndarray, shape (..., q)
    T_chol : numpy.ndarray, shape (..., q, q)
        Cholesky factor of the between-study covariance.
    rng : numpy.random.Generator
    mc_draws : int
    scale : {"r", "z"}
        Scale of ``T``: the correlations, or their Fisher z transforms.

    Returns
    -------
    (dict of str to numpy.ndarray, numpy.ndarray)
        Name -> average (shape ``rho.shape[:-1]``) for :meth:`PathModel.indirect_names`, and the
        share of accepted (valid) study draws per posterior draw.

    References
    ----------
    Bauer, Preacher & Gil (2006), Psychological Methods 11:142-163.
    """
    p = len(model.variables)
    names = model.indirect_names()
    flat_rho = rho.reshape(-1, rho.shape[-1])
    flat_L = T_chol.reshape(-1, *T_chol.shape[-2:])
    out = {name: np.empty(len(flat_rho)) for name in names}
    accepted = np.empty(len(flat_rho))
    chunk = max(1, 200_000 // mc_draws)
    for start in range(0, len(flat_rho), chunk):
        r0, L = flat_rho[start:start + chunk], flat_L[start:start + chunk]
        z = rng.standard_normal((len(r0), mc_draws, r0.shape[-1]))
        if scale == "z":
            ri = np.tanh(np.arctanh(r0)[:, None, :] + np.einsum("dij,dmj->dmi", L, z))
        else:
            ri = r0[:, None, :] + np.einsum("dij,dmj->dmi", L, z)
        R = vec_to_matrix(ri, p)
        ok = np.all(np.abs(ri) < 1, axis=-1)
        ok[ok] = positive_definite(R[ok])
        R[~ok] = np.eye(p)  # placeholders, masked out below
        eff = model.effects(R)
        count = ok.sum(axis=1)
        accepted[start:start + chunk] = count / mc_draws
        for name in names:
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name][start:start + chunk] = np.where(ok, eff[name], 0.0).sum(axis=1) / count
    shape = rho.shape[:-1]
    return {n: v.reshape(shape) for n, v in out.items()}, accepted.reshape(shape)


def positive_definite(R: np.ndarray) -> np.ndarray:
    """Whether each correlation matrix of ``R`` (..., p, p), off-diagonal entries in (-1, 1), is
    positive definite. For p <= 3 by Sylvester's criterion in closed form (the leading minors are
    1, ``1 - r_10^2 > 0`` and ``det R``), 50 times faster than eigenvalues over a million
    matrices; for larger p the smallest eigenvalue."""
    p = R.shape[-1]
    if p <= 2:
        return np.ones(R.shape[:-2], bool)
    if p == 3:
        r01, r02, r12 = R[..., 1, 0], R[..., 2, 0], R[..., 2, 1]
        return 1.0 + 2.0 * r01 * r02 * r12 - r01 ** 2 - r02 ** 2 - r12 ** 2 > 0
    return np.linalg.eigvalsh(R)[..., 0] > 0


def _avg_name(name: str) -> str:
    return "indirect_avg" if name == "indirect" else name.replace("indirect[", "indirect_avg[", 1)


@dataclass(repr=False)
class MediationFit(Fit):
    """A Bayesian MASEM path model fit, behind the common fit interface.

    Attributes
    ----------
    idata : arviz.InferenceData
        ``posterior``: ``rho``, ``tau``, ``Omega``, ``effects`` (dims chain, draw, effect: path
        coefficients, indirect and total effects, ``indirect_avg``); ``prior`` with the same
        (``indirect_avg`` excepted); ``observed_data`` ``r`` (study, pair; NaN where
        unreported) and ``n``; ``log_likelihood`` ``r`` per study (study effects integrated out).
    data : CorrelationData
    paths : PathModel
    settings : dict
    diagnostics : Verdict
    priors : dict
        The resolved Prior of ``tau`` (the LKJ shapes eta and eta_rho are in ``settings``).
    """

    idata: object
    data: object
    paths: PathModel
    settings: dict = field(default_factory=dict)
    diagnostics: object = None
    priors: dict = field(default_factory=dict)
    spec: object = None

    engine = "mediation"

    def effect_names(self) -> list[str]:
        """Effect rows in summary order."""
        names = list(self.idata.posterior["effects"].coords["effect"].values)
        if self.paths.mediation is not None:
            return [n for n in MEDIATION_NAMES if n in names]
        return names

    def _rows(self) -> dict:
        post = self.idata.posterior
        rows = {name: np.asarray(post["effects"].sel(effect=name)) for name in self.effect_names()}
        for var in ("rho", "tau"):
            for label in self.data.pair_labels:
                rows[f"{var}[{label}]"] = np.asarray(post[var].sel(pair=label))
        return rows

    def _table(self, level, interval, theta):
        """Effects (``indirect`` = a*b at the pooled matrix; ``indirect_avg`` = E[a_i b_i]), then
        ``rho[A,B]``, then ``tau[A,B]``."""
        rows = self._rows()
        return draws_table(list(rows), np.stack(list(rows.values()), axis=-1), level, interval, mcmc=True)

    def location_names(self) -> list[str]:
        return self.effect_names()

    def _prob(self, name, op, x):
        values = self.draws(name)
        return float(np.mean(values > x) if op.startswith(">") else np.mean(values < x))

    def draws(self, name: str, group: str = "posterior") -> np.ndarray:
        """Flattened draws of one effect (``"indirect"``, ``"a"``, ...) from a group."""
        return np.asarray(getattr(self.idata, group)["effects"].sel(effect=name)).ravel()

    def _headline(self) -> str:
        post = self.idata.posterior
        return (f"Bayesian MASEM (k = {self.data.k} studies; variables {', '.join(self.data.variables)}), "
                f"MCMC: {post.sizes['chain']} chains x {post.sizes['draw']} draws")

    def _footer(self) -> list[str]:
        lines = ["indirect = a*b at the pooled matrix; indirect_avg = E[a_i b_i], the average of the "
                 "studies' own products (it adds cov(a_i, b_i); Bauer, Preacher & Gil 2006)"]
        if self.settings.get("likelihood") == "fisher_z":
            lines.append("likelihood fisher_z: tau[A,B] is the between-study SD of atanh(r), on the Fisher z "
                         "scale, not on the correlation scale")
        elif self.settings.get("likelihood") == "own":
            lines.append("likelihood own: sampling covariances at each study's own correlations; "
                         + OWN_LIKELIHOOD_NOTE)
        return lines

    def _data_arrays(self) -> list:
        return [self.data.r, self.data.n]

    @property
    def k(self) -> int:
        return int(self.data.k)

    @classmethod
    def from_idata(cls, idata) -> "MediationFit":
        from bayes_se.correlations import CorrelationData
        from bayes_se.diagnostics import check

        settings = stored_settings(idata)
        obs = idata.observed_data
        variables = tuple(settings["variables"])
        r = np.asarray(obs["r"], float)
        data = CorrelationData(variables=variables, study=np.asarray([str(s) for s in obs["study"].values]),
                               n=np.asarray(obs["n"], float), r=r, observed=~np.isnan(r))
        model = PathModel(variables, settings["paths"], mediation=settings.get("mediation"))
        checked = [v for v in ("rho", "tau", "Omega") if v in idata.posterior]
        return cls(idata=idata, data=data, paths=model, settings=settings,
                   diagnostics=check(idata, var_names=checked), priors=stored_priors(idata))

    def plot_paths(self, ax=None, level: float = 0.95):
        """Path diagram with posterior medians and intervals (:func:`bayes_se.plots.paths.plot_paths`)."""
        from bayes_se.plots.paths import plot_paths

        return plot_paths(self, ax=ax, level=level)

    def plot_indirect(self, ax=None, name: str | None = None):
        """Posterior vs prior density of an indirect effect (:func:`bayes_se.plots.paths.plot_indirect`)."""
        from bayes_se.plots.paths import plot_indirect

        return plot_indirect(self, ax=ax, name=name)


def _effects_dataarray(model: PathModel, rho, chain_draw_coords, names):
    import xarray as xr

    from bayes_se.correlations import pair_index

    p = len(model.variables)
    eff = model.effects(vec_to_matrix(np.asarray(rho, float), p))
    stacked = np.stack([eff[n] for n in names], axis=-1)
    dims = tuple(chain_draw_coords) + ("effect",)
    assert len(pair_index(p)) == np.shape(rho)[-1]
    return xr.DataArray(stacked, dims=dims, coords={**chain_draw_coords, "effect": names})


def add_derived(idata, data, model: PathModel, seed: int, mc_draws: int = MC_DRAWS,
                likelihood: str = "pooled"):
    """Add effects, ``indirect_avg``, per-study log-likelihood and observed data to ``idata`` (the
    last two only where the built model's ``postprocess`` has not, as after sampling).

    Parameters
    ----------
    idata : arviz.InferenceData
        From :func:`bayes_se.sampling.sample` on :func:`bayes_se.builders.masem.build_masem`.
    data : CorrelationData
    model : PathModel
    seed : int
        Seeds the Monte Carlo of ``indirect_avg``.
    mc_draws : int
    likelihood : str
        The MASEM's likelihood (``"fisher_z"``: ``T`` on the z scale).

    Returns
    -------
    arviz.InferenceData
    """
    import xarray as xr

    from bayes_se.builders.masem import add_likelihood

    post = idata.posterior
    rho = np.asarray(post["rho"])
    tau = np.asarray(post["tau"])
    q = rho.shape[-1]
    Omega = np.asarray(post["Omega"]) if "Omega" in post else np.ones(rho.shape[:-1] + (1, 1))
    T = tau[..., :, None] * Omega * tau[..., None, :]
    names = reported_effects(model, model.effects(np.eye(len(model.variables))))
    cd = {"chain": post["chain"].values, "draw": post["draw"].values}
    eff = _effects_dataarray(model, rho, cd, names)
    rng = np.random.default_rng([int(seed), 4])
    # Cholesky with a tiny ridge: T is positive semi-definite (tau can be ~0)
    T_chol = np.linalg.cholesky(T + 1e-12 * np.eye(q))
    avg, accepted = average_indirect(model, rho, T_chol, rng, mc_draws,
                                     scale="z" if likelihood == "fisher_z" else "r")
    extra = xr.DataArray(np.stack([avg[n] for n in avg], axis=-1), dims=("chain", "draw", "effect"),
                         coords={**cd, "effect": [_avg_name(n) for n in avg]})
    effect = xr.concat([eff, extra], dim="effect")
    effect.attrs["indirect"] = "product of the pooled paths (a * b at the pooled correlation matrix)"
    effect.attrs["indirect_avg"] = ("average of the studies' own products E[a_i b_i], "
                                    + ("atanh(rho_i) ~ N(atanh(rho), T)" if likelihood == "fisher_z"
                                       else "rho_i ~ N(rho, T)") + " "
                                    f"truncated to valid matrices, {mc_draws} Monte Carlo draws per draw")
    idata.posterior["effects"] = effect
    idata.posterior["mc_accepted"] = xr.DataArray(accepted, dims=("chain", "draw"), coords=cd)
    idata.posterior["mc_accepted"].attrs["exact_conditional_draw"] = 1
    if "prior" in idata.groups() and "rho" in idata.prior:
        pr = idata.prior
        pcd = {"chain": pr["chain"].values, "draw": pr["draw"].values}
        with np.errstate(all="ignore"):
            idata.prior["effects"] = _effects_dataarray(model, np.asarray(pr["rho"]), pcd, names)
    if "log_likelihood" not in idata.groups() or "r" not in idata.log_likelihood:
        add_likelihood(idata, data, likelihood)  # the built model's postprocess adds it after sampling
    return idata


def fit_mediation(data, *, paths=None, x: str = "intervention", m: str = "self_efficacy",
                  y: str = "symptoms", priors=None, seed: int, draws: int = 1000, tune: int = 1000,
                  chains: int = 4, cores: int | None = None, target_accept: float | None = None,
                  sampler: str = "nutpie", mc_draws: int = MC_DRAWS, likelihood: str = "pooled") -> MediationFit:
    """Fit a Bayesian random-effects MASEM and derive path, indirect and total effects.

    Model: ``r_i[obs] ~ N(rho[obs], (S_i(rho) + T)[obs, obs])`` (see
    :mod:`bayes_se.builders.masem`), then per posterior draw ``B = R_xx^-1 R_xy`` per equation,
    ``indirect = a b`` (product of pooled paths), ``indirect_avg = E[a_i b_i]`` (average of the
    studies' own products), ``total = c' + a b``, ``prop_mediated = a b / total``.

    Parameters
    ----------
    data : CorrelationData or source accepted by :func:`bayes_se.correlations.load_correlations`
    paths : dict or PathModel, optional
        ``{outcome: [predictors]}``; default the single-mediator model ``m ~ x``, ``y ~ x + m``.
    x, m, y : str
        Variables of the default mediation model.
    priors : dict, optional
        ``tau``, ``eta``, ``eta_rho`` (see :func:`bayes_se.builders.masem.build_masem`).
    seed, draws, tune, chains, cores, target_accept, sampler
        As in :func:`bayes_se.sampling.sample`. ``sampler="nutpie"`` (default): nutpie's NUTS on
        the Numba-compiled density (:mod:`bayes_se.nutpie_sampling`; chains in turn on one thread,
        ``cores`` unused), 3 times faster than ``"pymc"`` (``benchmarks/mediation.py``). With
        ``"pymc"``, ``cores=None`` runs one chain per available CPU (up to ``chains``), where PyMC
        would count only half the CPUs.
    mc_draws : int
        Monte Carlo draws per posterior draw for ``indirect_avg``.
    likelihood : {"pooled", "own", "fisher_z"}
        Likelihood of the observed correlations (:mod:`bayes_se.builders.masem_likelihood`):
        Olkin-Siotani covariance at the pooled matrix, at each study's own matrix, or Fisher z
        (then ``tau`` and ``Omega`` describe the study deviations on the z scale).

    Returns
    -------
    MediationFit

    References
    ----------
    Cheung (2015), Meta-Analysis: A SEM Approach, ch. 7; Bauer, Preacher & Gil (2006).
    """
    from bayes_se.builders.masem import build_masem
    from bayes_se.correlations import CorrelationData, load_correlations
    from bayes_se.diagnostics import check
    from bayes_se.sampling import sample

    if not isinstance(data, CorrelationData):
        data = load_correlations(data)
    if cores is None:
        # PyMC's default assumes half the CPUs are hyper-threads (cpu_count() // 2: one job on a
        # 2-core machine); use every CPU this process may run on, at most one per chain
        import os

        cores = max(1, min(chains, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                           else (os.cpu_count() or 1)))
    model = path_model(data, paths, x, m, y)
    if likelihood == "own":
        import warnings

        from bayes_se.errors import MethodWarning

        warnings.warn(OWN_LIKELIHOOD_NOTE, MethodWarning, stacklevel=2)
    built = build_masem(data, priors=priors, likelihood=likelihood)
    idata = sample(built, draws=draws, tune=tune, chains=chains, cores=cores,
                   target_accept=target_accept, seed=seed, sampler=sampler)
    add_derived(idata, data, model, seed, mc_draws, likelihood)
    checked = [v for v in ("rho", "tau", "Omega") if v in idata.posterior]
    from bayes_se.priors import Prior, prior_for

    tau_prior = built.priors.get("tau")
    recorded = {"tau": tau_prior if isinstance(tau_prior, Prior) else prior_for("tau", str(tau_prior))}
    settings = {"model": "bayesian_masem", "engine": "mcmc", "variables": list(data.variables),
                "paths": {k: list(v) for k, v in model.equations.items()},
                "mediation": list(model.mediation) if model.mediation else None,
                "priors": {k: str(v) for k, v in built.priors.items()}, "k": data.k, "seed": int(seed),
                "draws": draws, "tune": tune, "chains": chains,
                "target_accept": float(idata.attrs["target_accept"]), "sampler": sampler,
                "mc_draws": mc_draws, "likelihood": likelihood}
    return MediationFit(idata=idata, data=data, paths=model, settings=settings,
                        diagnostics=check(idata, var_names=checked), priors=recorded)

