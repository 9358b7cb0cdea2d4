"""Mediation and path models from a pooled correlation matrix: path algebra, Bayesian fit, result.

A path model over ``p`` named variables is a set of equations ``outcome ~ predictors`` forming a
directed acyclic graph. With all variables standardized, each equation's coefficients come from
the correlation matrix ``R``::

    B[y, x] = (R_xx^-1 R_xy)    for the predictors x of outcome y

(Becker 1992). The effect of ``x`` on ``y`` along a chain ``x -> m_1 -> ... -> y`` is the product of
the coefficients on it; the **indirect** effect through given mediators is the sum over the chains
through them, and the **total** effect is the direct coefficient plus every indirect chain
(``(I - B)^-1 - I``). For the mediation model X -> M -> Y::

    a = r_XM,   b = (r_MY - r_XM r_XY) / (1 - r_XM^2),   c' = (r_XY - r_XM r_MY) / (1 - r_XM^2),
    indirect = a b,   total = c' + a b = r_XY,   prop_mediated = a b / (c' + a b).

:func:`fit_mediation` fits the Bayesian MASEM of :mod:`bayes_se.builders.masem` and returns a
:class:`MediationFit`.

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
import pandas as pd

from bayes_se.errors import SpecError

__all__ = ["PathModel", "MediationFit", "fit_mediation", "MEDIATION_NAMES"]

#: Row names of the mediation model's effects.
MEDIATION_NAMES = ("a", "b", "c_prime", "indirect", "indirect_avg", "total", "prop_mediated")


class PathModel:
    """A recursive path model: equations ``outcome -> predictors`` over named variables.

    Parameters
    ----------
    variables : sequence of str
        All variables (the order of the correlation matrix).
    equations : dict of str to sequence of str
        ``{outcome: [predictor, ...]}``; must form a directed acyclic graph.
    mediation : tuple of str, optional
        ``(x, m, y)`` when this is the single-mediator model (adds the ``a``/``b``/``c_prime``
        names).
    """

    def __init__(self, variables, equations, mediation=None):
        self.variables = [str(v) for v in variables]
        if not isinstance(equations, dict) or not equations:
            raise SpecError("paths must be a non-empty mapping outcome -> [predictors]", key="paths")
        self.equations = {}
        for y, xs in equations.items():
            xs = [xs] if isinstance(xs, str) else list(xs)
            for v in [y, *xs]:
                if v not in self.variables:
                    raise SpecError(f"unknown variable {v!r}; variables are {self.variables}", key=f"paths.{y}")
            if not xs or y in xs or len(set(xs)) != len(xs):
                raise SpecError("an equation needs distinct predictors other than its outcome", key=f"paths.{y}")
            self.equations[str(y)] = [str(x) for x in xs]
        self._order = self._topological()
        self.mediation = tuple(mediation) if mediation is not None else None
        self.edges = [(x, y) for y, xs in self.equations.items() for x in xs]
        self.chains = self._chains()

    @classmethod
    def single_mediator(cls, variables, x, m, y) -> "PathModel":
        """``M ~ X``, ``Y ~ X + M``."""
        return cls(variables, {m: [x], y: [x, m]}, mediation=(x, m, y))

    def _topological(self):
        order, state = [], {}

        def visit(v):
            if state.get(v) == 1:
                raise SpecError(f"the paths form a cycle through {v!r}; only recursive models are supported",
                                key="paths")
            if state.get(v) == 2:
                return
            state[v] = 1
            for x in self.equations.get(v, []):
                visit(x)
            state[v] = 2
            order.append(v)

        for v in self.variables:
            visit(v)
        return order

    def _chains(self):
        """Every directed chain of length >= 2 (an indirect path), as tuples of names."""
        children = {v: [y for x, y in self.edges if x == v] for v in self.variables}
        out = []

        def walk(path):
            for nxt in children[path[-1]]:
                new = path + (nxt,)
                if len(new) >= 3:
                    out.append(new)
                walk(new)

        for v in self.variables:
            walk((v,))
        return out

    # -- algebra --------------------------------------------------------------------------------
    def coefficients(self, R) -> np.ndarray:
        """``B[..., y, x]``: standardized coefficients of every equation, from ``R (..., p, p)``.

        Real or complex input (complex steps give exact derivatives for the delta method).
        """
        R = np.asarray(R)
        p = len(self.variables)
        idx = {v: j for j, v in enumerate(self.variables)}
        B = np.zeros(R.shape[:-2] + (p, p), dtype=R.dtype)
        for y, xs in self.equations.items():
            ix, iy = [idx[x] for x in xs], idx[y]
            Rxx = R[..., ix, :][..., :, ix]
            rxy = R[..., ix, iy]
            B[..., iy, ix] = np.linalg.solve(Rxx, rxy[..., None])[..., 0]
        return B

    def effects(self, R) -> dict:
        """Named effects from correlation matrices ``R (..., p, p)``.

        Returns ``"x->y"`` (direct coefficients), ``"indirect[x->m->y]"`` (one chain),
        ``"indirect[x->y]"`` (sum of chains from x to y), ``"total[x->y]"`` and, for the
        single-mediator model, ``a``, ``b``, ``c_prime``, ``indirect``, ``total``,
        ``prop_mediated``.
        """
        B = self.coefficients(R)
        idx = {v: j for j, v in enumerate(self.variables)}
        out = {f"{x}->{y}": B[..., idx[y], idx[x]] for x, y in self.edges}
        sums: dict[tuple[str, str], np.ndarray] = {}
        for chain in self.chains:
            value = np.prod([B[..., idx[chain[s + 1]], idx[chain[s]]] for s in range(len(chain) - 1)], axis=0)
            out["indirect[" + "->".join(chain) + "]"] = value
            key = (chain[0], chain[-1])
            sums[key] = sums.get(key, 0) + value
        for (x, y), value in sums.items():
            if any(c[0] == x and c[-1] == y for c in self.chains):
                out[f"indirect[{x}->{y}]"] = value
                out[f"total[{x}->{y}]"] = value + (out.get(f"{x}->{y}", 0))
        if self.mediation is not None:
            x, m, y = self.mediation
            out["a"], out["b"], out["c_prime"] = out[f"{x}->{m}"], out[f"{m}->{y}"], out[f"{x}->{y}"]
            out["indirect"] = out["a"] * out["b"]
            out["total"] = out["c_prime"] + out["indirect"]
            with np.errstate(divide="ignore", invalid="ignore"):  # NaN/inf where total = 0
                out["prop_mediated"] = out["indirect"] / out["total"]
        return out

    def indirect_names(self) -> list[str]:
        """Names of the effects that are products of paths (what ``indirect_avg`` is computed for)."""
        if self.mediation is not None:
            return ["indirect"]
        return ["indirect[" + "->".join(c) + "]" for c in self.chains]


def vec_to_matrix(rho, p: int) -> np.ndarray:
    """Correlation matrices ``(..., p, p)`` from vectors ``(..., q)`` in lower-triangle column order."""
    from bayes_se.correlations import pair_index

    rho = np.asarray(rho)
    R = np.broadcast_to(np.eye(p, dtype=rho.dtype), rho.shape[:-1] + (p, p)).copy()
    for c, (i, j) in enumerate(pair_index(p)):
        R[..., i, j] = R[..., j, i] = rho[..., c]
    return R


#: Monte Carlo draws of study-level matrices per posterior draw for ``indirect_avg``.
MC_DRAWS = 256


def average_indirect(model: PathModel, rho, T_chol, rng, mc_draws: int = MC_DRAWS):
    """Average of the studies' own indirect effects, ``E[a_i b_i]`` over ``rho_i ~ N(rho, T)``.

    Where paths vary across studies the mean of the products is not the product of the means:
    ``E[a_i b_i] = E[a_i] E[b_i] + cov(a_i, b_i)`` (Bauer, Preacher & Gil 2006). Per posterior draw,
    ``mc_draws`` study matrices are drawn from ``N(rho, T)`` truncated to valid correlation matrices
    (draws that are not positive definite are rejected) and the products averaged. Monte Carlo
    rather than the delta-method covariance because the products are far from linear when ``T`` is
    large.

    Parameters
    ----------
    model : PathModel
    rho : numpy.ndarray, shape (..., q)
    T_chol : numpy.ndarray, shape (..., q, q)
        Cholesky factor of the between-study covariance.
    rng : numpy.random.Generator
    mc_draws : int

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
        ri = r0[:, None, :] + np.einsum("dij,dmj->dmi", L, z)
        R = vec_to_matrix(ri, p)
        ok = np.all(np.abs(ri) < 1, axis=-1)
        ok[ok] = np.linalg.eigvalsh(R[ok])[:, 0] > 0
        R[~ok] = np.eye(p)  # placeholders, masked out below
        eff = model.effects(R)
        count = ok.sum(axis=1)
        accepted[start:start + chunk] = count / mc_draws
        for name in names:
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name][start:start + chunk] = np.where(ok, eff[name], 0.0).sum(axis=1) / count
    shape = rho.shape[:-1]
    return {n: v.reshape(shape) for n, v in out.items()}, accepted.reshape(shape)


def _avg_name(name: str) -> str:
    return "indirect_avg" if name == "indirect" else name.replace("indirect[", "indirect_avg[", 1)


@dataclass
class MediationFit:
    """A Bayesian MASEM path model fit.

    Attributes
    ----------
    idata : arviz.InferenceData
        ``posterior``: ``rho``, ``tau``, ``Omega``, ``effects`` (dims chain, draw, effect: path
        coefficients, indirect and total effects, ``indirect_avg``); ``prior`` with the same
        (``indirect_avg`` excepted); ``observed_data`` ``r`` (study, pair; NaN where
        unreported); ``log_likelihood`` ``r`` per study (study effects integrated out).
    data : CorrelationData
    paths : PathModel
    settings : dict
    diagnostics : Verdict
    """

    idata: object
    data: object
    paths: PathModel
    settings: dict = field(default_factory=dict)
    diagnostics: object = None

    def effect_names(self) -> list[str]:
        """Effect rows in summary order."""
        names = list(self.idata.posterior["effects"].coords["effect"].values)
        if self.paths.mediation is not None:
            return [n for n in MEDIATION_NAMES if n in names]
        return names

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        """Posterior summary: effects, then ``rho[A,B]``, then ``tau[A,B]``.

        ``indirect`` is the product of the pooled paths (``a * b`` at the pooled matrix);
        ``indirect_avg`` the average of the studies' own products ``E[a_i b_i]``.

        Returns
        -------
        pandas.DataFrame
            Columns mean, sd, q2.5, q50, q97.5, ess_bulk, ess_tail, r_hat.
        """
        import arviz as az

        if not 0.0 < level < 1.0:
            raise SpecError(f"level must be in (0, 1), got {level}", key="level")
        lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
        post = self.idata.posterior
        rows = []

        def add(label, x):
            q = np.quantile(x, [lo / 100, 0.5, hi / 100])
            rows.append({"parameter": label, "mean": x.mean(), "sd": x.std(ddof=1), f"q{lo:g}": q[0],
                         "q50": q[1], f"q{hi:g}": q[2], "ess_bulk": float(az.ess(x, method="bulk")),
                         "ess_tail": float(az.ess(x, method="tail")),
                         "r_hat": float(az.rhat(x)) if x.shape[0] > 1 else np.nan})

        for name in self.effect_names():
            add(name, np.asarray(post["effects"].sel(effect=name)))
        for var in ("rho", "tau"):
            for label in self.data.pair_labels:
                add(f"{var}[{label}]", np.asarray(post[var].sel(pair=label)))
        return pd.DataFrame(rows).set_index("parameter")

    def draws(self, name: str, group: str = "posterior") -> np.ndarray:
        """Flattened draws of one effect (``"indirect"``, ``"a"``, ...) from a group."""
        return np.asarray(getattr(self.idata, group)["effects"].sel(effect=name)).ravel()

    def print_summary(self, level: float = 0.95) -> str:
        """The summary as text, with the diagnostics banner first when a check failed."""
        parts = [] if self.diagnostics is None or self.diagnostics.passed else [self.diagnostics.banner()]
        parts.append(f"Bayesian MASEM (k = {self.data.k} studies; variables {', '.join(self.data.variables)}), "
                     f"{self.settings.get('chains')} chains x {self.settings.get('draws')} draws")
        with pd.option_context("display.width", 140, "display.max_columns", 20):
            parts.append(self.summary(level=level).round(4).to_string())
        parts.append("indirect = a*b at the pooled matrix; indirect_avg = E[a_i b_i], the average of the "
                     "studies' own products (it adds cov(a_i, b_i); Bauer, Preacher & Gil 2006)")
        if self.diagnostics is not None:
            d = self.diagnostics.to_dict()
            parts.append(f"diagnostics: max R-hat {d['max_r_hat']:.3f}, min bulk ESS {d['min_ess_bulk']:.0f}, "
                         f"min tail ESS {d['min_ess_tail']:.0f}, divergences {d['divergences']} -> "
                         f"{'passed' if d['passed'] else 'FAILED'}")
        return "\n".join(parts)

    def to_dict(self) -> dict:
        """JSON-ready: ``parameters`` (row -> statistics), ``diagnostics``, ``settings``."""
        def num(v):
            return None if not np.isfinite(v) else float(v)

        table = self.summary()
        params = {n: {c: num(v) for c, v in row.items()} for n, row in table.iterrows()}
        out = {"parameters": params, "diagnostics": self.diagnostics.to_dict(), "settings": self.settings}
        if "refit_reason" in self.idata.attrs:
            out["refit_reason"] = str(self.idata.attrs["refit_reason"])
        return out

    def to_netcdf(self, path) -> str:
        """Write the InferenceData with settings, seed and package versions in its attributes."""
        import hashlib

        from bayes_se.results import provenance_attrs

        self.idata.attrs.update(provenance_attrs(self.settings))
        digest = hashlib.sha256()
        for arr in (self.data.r, self.data.n):
            digest.update(np.ascontiguousarray(np.nan_to_num(arr, nan=9.0), dtype=float).tobytes())
        self.idata.attrs["data_sha256"] = digest.hexdigest()
        self.idata.to_netcdf(str(path))
        return str(path)

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


def add_derived(idata, data, model: PathModel, seed: int, mc_draws: int = MC_DRAWS):
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

    Returns
    -------
    arviz.InferenceData
    """
    import xarray as xr

    from bayes_se.builders.masem import add_likelihood
    from bayes_se.frequentist.masem import reported_effects

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
    avg, accepted = average_indirect(model, rho, T_chol, rng, mc_draws)
    extra = xr.DataArray(np.stack([avg[n] for n in avg], axis=-1), dims=("chain", "draw", "effect"),
                         coords={**cd, "effect": [_avg_name(n) for n in avg]})
    effect = xr.concat([eff, extra], dim="effect")
    effect.attrs["indirect"] = "product of the pooled paths (a * b at the pooled correlation matrix)"
    effect.attrs["indirect_avg"] = ("average of the studies' own products E[a_i b_i], rho_i ~ N(rho, T) "
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
        add_likelihood(idata, data)  # the built model's postprocess adds it after sampling
    return idata


def fit_mediation(data, *, paths=None, x: str = "intervention", m: str = "self_efficacy",
                  y: str = "symptoms", priors=None, seed: int, draws: int = 1000, tune: int = 1000,
                  chains: int = 4, cores: int | None = None, target_accept: float | None = None,
                  sampler: str = "pymc", mc_draws: int = MC_DRAWS) -> MediationFit:
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
        As in :func:`bayes_se.sampling.sample`.
    mc_draws : int
        Monte Carlo draws per posterior draw for ``indirect_avg``.

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
    model = path_model(data, paths, x, m, y)
    built = build_masem(data, priors=priors)
    idata = sample(built, draws=draws, tune=tune, chains=chains, cores=cores,
                   target_accept=target_accept, seed=seed, sampler=sampler)
    add_derived(idata, data, model, seed, mc_draws)
    checked = [v for v in ("rho", "tau", "Omega") if v in idata.posterior]
    settings = {"model": "bayesian_masem", "variables": list(data.variables),
                "paths": {k: list(v) for k, v in model.equations.items()},
                "mediation": list(model.mediation) if model.mediation else None,
                "priors": {k: str(v) for k, v in built.priors.items()}, "k": data.k, "seed": int(seed),
                "draws": draws, "tune": tune, "chains": chains,
                "target_accept": float(idata.attrs["target_accept"]), "sampler": sampler,
                "mc_draws": mc_draws}
    return MediationFit(idata=idata, data=data, paths=model, settings=settings,
                        diagnostics=check(idata, var_names=checked))


def path_model(data, paths=None, x="intervention", m="self_efficacy", y="symptoms") -> PathModel:
    """The :class:`PathModel` over ``data.variables``: ``paths`` or the default mediation."""
    if isinstance(paths, PathModel):
        return paths
    if paths is None:
        for key, v in (("x", x), ("m", m), ("y", y)):
            if v not in data.variables:
                raise SpecError(f"{v!r} is not one of the variables {list(data.variables)}", key=key)
        if len({x, m, y}) != 3:
            raise SpecError("x, m and y must be three different variables", key="m")
        return PathModel.single_mediator(data.variables, x, m, y)
    return PathModel(data.variables, paths)
