"""The exact engine's fit: a normal-normal model solved by quadrature, behind the common interface.

:class:`ExactFit` wraps an :class:`bayes_se.exact.ExactPosterior` (summaries, probabilities and
Bayes factors computed exactly, no Monte Carlo error) and gives it what every fit has
(:class:`bayes_se.fits.Fit`): an ArviZ InferenceData built from exact iid draws, so that the same
plots, posterior-predictive checks, LOO and reports work for it as for an MCMC fit.

Model: ``y_i ~ N(x_i' beta + u_i, v_i)``, ``u_i ~ N(0, tau^2)``, ``beta_j ~ N(m_j, s_j^2)`` (or
flat), ``tau ~ p(tau)``; integrated over tau by quadrature (Röver 2020).

References
----------
Röver, C. (2020). Bayesian random-effects meta-analysis using the bayesmeta R package. JSS 93(6).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from bayes_se import defaults
from bayes_se.fits import (Fit, check_level, interval_columns, probability_columns, stored_priors, stored_settings,
                           typical_within_variance)
from bayes_se.gc_pause import paused_gc

LOG_2PI = math.log(2.0 * math.pi)
PREFETCH_MIN_K = 50_000  # from this many studies on, to_dict starts BF01's null quadrature in a thread


def exact_verdict():
    """The verdict of an exact fit: no chains, nothing to fail."""
    from bayes_se.diagnostics import Verdict

    return Verdict(passed=True, max_r_hat=np.nan, min_ess_bulk=np.nan, min_ess_tail=np.nan, divergences=0,
                   min_bfmi=np.nan, problems=[])


def exact_hdi(posterior, name: str, level: float, transform=None) -> tuple[float, float]:
    """Shortest interval holding ``level`` of the exact marginal of ``name``.

    Minimises ``Q(p + level) - Q(p)`` over the lower tail mass ``p`` in ``[0, 1 - level]`` (Brent's
    bounded method in SciPy); the boundary ``p = 0`` (an interval starting at tau = 0) is compared
    explicitly, as a bounded search never evaluates its end points. ``transform`` (increasing)
    gives the HDI of ``transform(name)`` instead.
    """
    from scipy.optimize import minimize_scalar

    f = transform or (lambda x: x)

    def width(p):
        lo, hi = f(np.asarray(posterior.quantile(name, [p, p + level])))
        return hi - lo

    top = 1.0 - level
    res = minimize_scalar(width, bounds=(1e-12, top - 1e-12), method="bounded", options={"xatol": 1e-9})
    best = float(res.x)
    for edge in (1e-15, top - 1e-15):
        if width(edge) < width(best):
            best = edge
    lo, hi = f(np.asarray(posterior.quantile(name, [best, best + level])))
    return float(lo), float(hi)


def exact_idata(posterior, yi, vi, X, priors: dict, *, seed: int, chains: int = defaults.EXACT_CHAINS,
                draws: int = defaults.EXACT_DRAWS):
    """An InferenceData of exact iid posterior draws (``chains x draws``) of an ExactPosterior.

    Groups: ``posterior`` (``mu`` or ``beta``, ``tau``, ``tau2``, ``theta``, ``pred``), ``prior``
    (draws from the priors), ``posterior_predictive`` and ``observed_data`` (both ``y``, so
    ``az.plot_ppc`` needs no arguments), ``log_likelihood`` (``y``: the marginal density
    ``N(y_i | x_i' beta, v_i + tau^2)`` with the study effect integrated out, as the MCMC engine
    stores it) and ``constant_data`` (``vi``, and ``X`` for a meta-regression).
    """
    import arviz as az
    import xarray as xr

    rng = np.random.default_rng(seed)
    n = chains * draws
    d = posterior.draws(n, rng=rng)
    study = list(posterior.study)
    coefs = list(posterior.coef_names)
    k = len(study)
    y = np.asarray(yi, float)
    v = np.asarray(vi, float)
    Xm = np.ones((k, 1)) if X is None else np.asarray(X, float)
    intercept_only = "mu" in d

    def cd(a):
        return np.asarray(a).reshape((chains, draws) + np.shape(a)[1:])

    base = {"chain": np.arange(chains), "draw": np.arange(draws)}
    post = {"tau": (("chain", "draw"), cd(d["tau"])), "tau2": (("chain", "draw"), cd(d["tau2"])),
            "theta": (("chain", "draw", "study"), cd(d["theta"])), "pred": (("chain", "draw"), cd(d["pred"]))}
    if intercept_only:
        post["mu"] = (("chain", "draw"), cd(d["mu"]))
    else:
        post["beta"] = (("chain", "draw", "coef"), cd(d["beta"]))
    coords = {**base, "study": study, "coef": coefs}
    loc = d["beta"] @ Xm.T
    total = v + np.square(d["tau"])[:, None]
    y_rep = loc + np.sqrt(total) * rng.standard_normal(loc.shape)
    loglik = -0.5 * (LOG_2PI + np.log(total) + np.square(y - loc) / total)

    prior_vars = {}
    pn = n
    # draws from the priors (an improper flat prior has none: its variable is left out of the group)
    location = [priors["mu"]] if priors and intercept_only else [priors[f"beta[{c}]"] for c in coefs] if priors else []
    if location and not any(p.improper for p in location):
        if intercept_only:
            prior_vars["mu"] = (("chain", "draw"), np.asarray(location[0].rvs(pn, rng=rng), float).reshape(chains, draws))
        else:
            cols = [np.asarray(p.rvs(pn, rng=rng), float) for p in location]
            prior_vars["beta"] = (("chain", "draw", "coef"),
                                  np.stack(cols, axis=-1).reshape(chains, draws, len(coefs)))
    if priors and not priors["tau"].improper:
        tau_prior = priors["tau"]
        t = np.asarray(tau_prior.rvs(pn, rng=rng), float)
        tau_draws = np.sqrt(t) if tau_prior.on_variance else t
        prior_vars["tau"] = (("chain", "draw"), tau_draws.reshape(chains, draws))

    def ds(variables, extra=None):
        return xr.Dataset(variables, coords={key: val for key, val in coords.items()
                                             if any(key in dims for dims, _ in variables.values())})

    groups = {
        "posterior": ds(post),
        "posterior_predictive": ds({"y": (("chain", "draw", "study"), cd(y_rep))}),
        "log_likelihood": ds({"y": (("chain", "draw", "study"), cd(loglik))}),
        "observed_data": xr.Dataset({"y": (("study",), y)}, coords={"study": study}),
    }
    if prior_vars:
        groups["prior"] = ds(prior_vars)
    const = {"vi": (("study",), v)}
    if X is not None:
        const["X"] = (("study", "coef"), Xm)
    groups["constant_data"] = xr.Dataset(const, coords={"study": study, **({"coef": coefs} if X is not None else {})})
    for name in ("theta", "pred"):
        groups["posterior"][name].attrs["exact_conditional_draw"] = 1
    idata = az.InferenceData(**groups)
    idata.attrs.update(seed=int(seed), engine="exact")
    return idata


class ExactFit(Fit):
    """A normal-normal model solved by quadrature (:mod:`bayes_se.exact`): no sampling, no MCMC
    diagnostics to fail; summaries, probabilities and Bayes factors are exact, ``idata`` holds
    exact iid draws for plots and checks.

    Attributes
    ----------
    posterior : ExactPosterior
    yi, vi : ndarray
    X : ndarray or None
        Design matrix (None: intercept only).
    priors : dict
        Resolved priors: ``mu`` or ``beta[NAME]`` per coefficient, and ``tau``.
    settings : dict
        What ran (model, k, coefficients, level, smallest effect, seed of the draws, spec text).
    data : EffectData or None
        The table the effects came from, when the fit was made from one.
    spec : ModelSpec or None
    """

    engine = "exact"

    def __init__(self, posterior, *, yi, vi, X=None, priors: dict, settings: dict, data=None, spec=None,
                 idata=None):
        self.posterior = posterior
        self.yi = np.asarray(yi, float)
        self.vi = np.asarray(vi, float)
        self.X = None if X is None else np.asarray(X, float)
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
    def idata(self):
        """Exact iid draws as an InferenceData (built on first use, seeded by ``settings['seed']``)."""
        if self._idata is None:
            self._idata = exact_idata(self.posterior, self.yi, self.vi, self.X, self.priors,
                                      seed=int(self.settings.get("seed", defaults.SEED)))
        return self._idata

    # -- hooks -------------------------------------------------------------------------------
    def _coef_rows(self) -> list[str]:
        return ["mu"] if self.coef_names == ["intercept"] and self.X is None else \
            [f"beta[{c}]" for c in self.coef_names]

    def location_names(self) -> list[str]:
        return self._coef_rows() + ["pred"] + [f"theta[{s}]" for s in self.posterior.study]

    def _prob(self, name, op, x):
        return float(self.posterior.prob(name, op, x))

    def _probs(self, names, events):
        # the study effects in one vectorised pass (at k = 200,000 one call per study took minutes)
        names = list(names)
        labels = [f"theta[{s}]" for s in self.posterior.study]
        block = next((i for i, n in enumerate(names) if n.startswith("theta[")), len(names))
        rest = names[:block] + names[block + len(labels):]
        # the studies in order in one block (the summary's rows), no study effect outside it
        in_order = names[block:block + len(labels)] == labels and not any(n.startswith("theta[") for n in rest)
        if in_order:
            at = list(range(block)) + list(range(block + len(labels), len(names)))
        else:
            at = [i for i, n in enumerate(names) if not n.startswith("theta[")]
        others = [names[i] for i in at]
        locs = set(self._coef_rows() + ["pred"])  # location_names() without the study effects
        heads = [[self._prob(n, op, x) if n in locs else np.nan for n in others] for op, x in events]
        result = []
        for head, theta in zip(heads, self.posterior.theta_probs(events)):
            if in_order:  # the studies in order in one block (the summary's rows): placed by slices
                out = np.empty(len(names))
                out[block:block + len(labels)] = theta
                out[at] = head
            else:
                value = dict(zip(labels, theta))
                value.update(zip(others, head))
                out = np.array([value[n] for n in names], dtype=float)
            result.append(out)
        return result

    def _prob_greater_items(self, x: float) -> list:
        # the location rows without the study effects: no list of k theta names to filter
        return [(n, self._prob(n, ">", float(x))) for n in self._coef_rows() + ["pred"]]

    def _central_values(self, level, theta, theta_events=()) -> tuple[list, np.ndarray]:
        """Row names and the columns mean, sd and the central interval (``interval_columns(level)``)
        of :meth:`_table`, without pandas: the posterior's rows, then ``I2``. ``theta_events``: the
        study effects' probabilities :meth:`_probs` will ask for, computed in the same pass."""
        post = self.posterior
        saved = post.level
        post.level = level
        try:
            names, _, values = post.summary_values(theta=theta, pred=True, theta_events=theta_events)
        finally:
            post.level = saved
        # I2 = tau^2 / (tau^2 + s^2), an increasing function of tau: its quantiles are tau's mapped
        s2 = typical_within_variance(self.vi, self.X)
        i2 = lambda t: np.square(t) / (np.square(t) + s2)  # noqa: E731
        a = (1 - level) / 2
        g = i2(post.tau_grid)
        mean = float(post.tau_weights @ g)
        row = [mean, float(np.sqrt(post.tau_weights @ np.square(g - mean)))]
        row += list(i2(np.asarray(post.quantile("tau", [a, 0.5, 1 - a]))))
        return names + ["I2"], np.vstack([values, row])

    def _table(self, level, interval, theta):
        import pandas as pd

        cols = interval_columns(level, "central")
        names, values = self._central_values(level, theta)
        table = pd.DataFrame(values, index=pd.Index(names, name="parameter"),
                             columns=["mean", "sd", cols[0], "q50", cols[2]])
        post = self.posterior
        s2 = typical_within_variance(self.vi, self.X)
        i2 = lambda t: np.square(t) / (np.square(t) + s2)  # noqa: E731
        if interval == "hdi":
            hcols = interval_columns(level, "hdi")
            bounds = np.array([exact_hdi(post, "tau" if name == "I2" else name, level,
                                         transform=i2 if name == "I2" else None) for name in table.index])
            table = table.rename(columns={cols[0]: hcols[0], cols[2]: hcols[2]})
            table[hcols[0]], table[hcols[2]] = bounds[:, 0], bounds[:, 1]
            cols = hcols
        return table[["mean", "sd", cols[0], "q50", cols[2]]]

    def _summary_dict(self, level, interval):
        if interval != "central":
            return super()._summary_dict(level, interval)
        # Fit.summary's rows and columns, as _rows_dict writes them, without a DataFrame
        level = check_level(self.level if level is None else level)
        s = self.smallest_effect
        events = [(">", s), ("<", -s)] if s is not None else []
        names, values = self._central_values(level, theta=True, theta_events=events)
        cols = interval_columns(level, "central")
        cols = ["mean", "sd", cols[0], "q50", cols[2]]
        if s is not None:
            cols += list(probability_columns(s))
            values = np.column_stack([values, *self._probs(names, events)])
        with paused_gc():  # k rows: k lists and dicts, no cycles
            rows = values.tolist()
            for i in np.flatnonzero(~np.isfinite(values).all(axis=1)).tolist():  # NaN and inf become None
                rows[i] = [v if math.isfinite(v) else None for v in rows[i]]
            return level, dict(zip(map(str, names), map(dict, map(zip, itertools.repeat(cols), rows))))

    def _headline(self) -> str:
        kind = "meta-regression" if self.X is not None else "random-effects model"
        return f"Bayesian {kind}, exact engine (quadrature over tau; k = {self.k})"

    def _footer(self) -> list[str]:
        lml = self.log_marginal_likelihood
        lines = [f"log marginal likelihood = {lml:.4f}" if math.isfinite(lml)
                 else "log marginal likelihood: undefined (improper flat prior)"]
        bf, log_bf = self.bayes_factors(), self.log_bayes_factors()
        for key, what in (("mu0", "mu = 0 vs mu free"), ("tau0", "tau = 0 vs tau free")):
            if bf[key] is None:
                continue
            lines.append(f"BF01 ({what}) = {bf[key]:.4g}    log BF01 = {log_bf[key]:.4f}"
                         if math.isfinite(log_bf[key]) else f"BF01 ({what}): undefined (improper flat prior)")
        return lines + [f"note: {n}" for n in self.improper_notes()]

    def _data_arrays(self) -> list:
        return [self.yi, self.vi, self.X]

    def posterior_density(self, name, x):
        return np.asarray(self.posterior.pdf(name, x), float)

    @classmethod
    def from_idata(cls, idata) -> "ExactFit":
        from bayes_se.exact import exact_posterior

        settings = stored_settings(idata)
        priors = stored_priors(idata)
        yi = np.asarray(idata.observed_data["y"], float)
        vi = np.asarray(idata.constant_data["vi"], float)
        X = np.asarray(idata.constant_data["X"], float) if "X" in idata.constant_data else None
        study = [str(s) for s in idata.observed_data["study"].values]
        post = exact_posterior(yi, vi, X=X, coef_names=settings.get("coef"), study=study,
                               beta_prior=coefficient_prior_list(priors, settings.get("coef", ["intercept"])),
                               tau_prior=priors["tau"], level=settings.get("level", defaults.LEVEL))
        return cls(post, yi=yi, vi=vi, X=X, priors=priors, settings=settings, idata=idata)

    @classmethod
    def from_posterior(cls, posterior, *, priors: dict | None = None, settings: dict | None = None,
                       data=None) -> "ExactFit":
        """Wrap an :class:`~bayes_se.exact.ExactPosterior` made by :func:`bayes_se.exact.exact_posterior`.

        ``priors`` (the Prior objects it was computed under) are recorded when given; without
        them the fit has no prior group and plots draw no prior curves.
        """
        X = posterior.X
        intercept_only = X.shape[1] == 1 and np.all(X == 1.0)
        settings = dict(settings or {})
        settings.setdefault("level", posterior.level)
        settings.setdefault("seed", defaults.SEED)
        settings.update(engine="exact", k=len(posterior.study), coef=list(posterior.coef_names),
                        model="random_effects" if intercept_only else "meta_regression")
        return cls(posterior, yi=posterior.yi, vi=posterior.vi, X=None if intercept_only else X,
                   priors=dict(priors or {}), settings=settings, data=data)

    # -- exact extras ------------------------------------------------------------------------
    @property
    def log_marginal_likelihood(self) -> float:
        return float(self.posterior.log_marginal_likelihood)

    def bayes_factors(self) -> dict:
        """BF01 for mu = 0 (intercept-only models) and for tau = 0 (inf or 0 where it overflows:
        :meth:`log_bayes_factors` stays finite)."""
        out = {"tau0": float(self.posterior.bayes_factor("tau0"))}
        out["mu0"] = float(self.posterior.bayes_factor("mu0")) if self._coef_rows() == ["mu"] else None
        return out

    def log_bayes_factors(self) -> dict:
        """Natural logs of the Bayes factors of :meth:`bayes_factors` (NaN where undefined)."""
        out = {"tau0": float(self.posterior.log_bayes_factor("tau0"))}
        out["mu0"] = float(self.posterior.log_bayes_factor("mu0")) if self._coef_rows() == ["mu"] else None
        return out

    def improper_notes(self) -> list:
        """Why the marginal likelihood / Bayes factors are undefined (flat priors), else []."""
        flat = [k for k, v in self.priors.items() if v.improper]
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

    def leave_one_out(self, level=None):
        """The posterior of ``mu`` (or each ``beta[NAME]``) and ``tau`` with each study left out, exactly
        (:func:`bayes_se.exact_influence.leave_one_out`): mean, sd, central interval and the shift
        from the full posterior; index (left-out ``study``, ``parameter``)."""
        from bayes_se.exact_influence import leave_one_out

        return leave_one_out(self.posterior, level=level)

    def cumulative(self, order=None, level=None):
        """Cumulative posteriors after each study (:func:`bayes_se.exact_influence.cumulative`), in
        data order or sorted by ``order``: a column of the fit's data (its name) or one key per study."""
        from bayes_se.exact_influence import cumulative

        if isinstance(order, str):
            from bayes_se.errors import SpecError

            frame = getattr(self.data, "frame", None)
            if frame is None or order not in frame.columns or len(frame) != self.k:
                raise SpecError(f"no column {order!r} in the data this model was fitted to", key="order")
            order = frame[order].to_numpy()
        return cumulative(self.posterior, order, level=level)

    def to_dict(self, level=None, interval="central") -> dict:
        if self.k >= PREFETCH_MIN_K and self._coef_rows() == ["mu"]:
            # the null model's quadrature of BF01 (mu = 0) beside the study effects' summary (threads)
            self.posterior.prefetch_bayes_factor("mu0")
        out = super().to_dict(level=level, interval=interval)
        out["log_marginal_likelihood"] = self.log_marginal_likelihood
        out["bayes_factors"] = self.bayes_factors()
        out["log_bayes_factors"] = self.log_bayes_factors()
        out["notes"] = self.improper_notes()
        return out


def coefficient_prior_list(priors: dict, coef_names) -> list:
    """The resolved prior of each coefficient (``mu`` for an intercept-only model)."""
    names = list(coef_names)
    if names == ["intercept"] and "mu" in priors:
        return [priors["mu"]]
    return [priors[f"beta[{c}]"] for c in names]


def fit_exact(yi, vi, *, X=None, coef_names=None, study=None, priors: dict, settings: dict | None = None,
              data=None, spec=None) -> ExactFit:
    """Solve the normal-normal model exactly and wrap it as an :class:`ExactFit`.

    Parameters
    ----------
    yi, vi : array_like
    X : array_like, optional
        Design matrix with the intercept column (None: intercept only).
    coef_names : list of str, optional
    study : sequence, optional
    priors : dict
        Resolved priors (:func:`bayes_se.priors.model_priors`): ``mu`` or ``beta[NAME]``, and ``tau``.
    settings : dict, optional
        Recorded with the fit (``level``, ``smallest_effect``, ``seed`` of the stored draws, ...).
    """
    from bayes_se.exact import exact_posterior

    settings = dict(settings or {})
    names = list(coef_names) if coef_names is not None else (["intercept"] if X is None else None)
    level = float(settings.get("level", defaults.LEVEL))
    post = exact_posterior(yi, vi, X=X, coef_names=names, study=study,
                           beta_prior=coefficient_prior_list(priors, names or []) if names else None,
                           tau_prior=priors["tau"], level=level)
    settings.setdefault("level", level)
    settings.setdefault("seed", defaults.SEED)
    settings.update(engine="exact", k=len(post.study), coef=list(post.coef_names),
                    model="meta_regression" if X is not None else "random_effects")
    yv = np.asarray(yi, float)
    return ExactFit(post, yi=yv, vi=np.asarray(vi, float), X=X, priors=priors, settings=settings, data=data,
                    spec=spec)
