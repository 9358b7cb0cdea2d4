"""PyMC model builders for the random-effects model and meta-regression.

Normal random effects are integrated out (the *marginal* parameterisation),

    y_i ~ N(x_i' beta, v_i + tau^2),

so the sampler only sees beta (or mu) and tau; the study effects theta_i are drawn exactly from
their conditional normals after sampling (:meth:`MetaModel.postprocess`, which
:func:`bayes_se.sampling.sample` calls). Student-t random effects
do not integrate out and are written non-centred,

    theta_i = x_i' beta + tau * u_i,  u_i ~ t_nu(0, 1),  y_i ~ N(theta_i, v_i).

The builders only build a :class:`pymc.Model` (wrapped in :class:`MetaModel` with the data its
post-processing needs); they never sample. Each built model owns its post-processing
(:meth:`MetaModel.postprocess`: exact conditional draws, marginal log-likelihood, replicates).

References
----------
Higgins, J. P. T., Thompson, S. G. & Spiegelhalter, D. J. (2009). A re-evaluation of random-effects
meta-analysis. JRSS A 172, 137-159.
Baker, R. & Jackson, D. (2008). A new approach to outliers in meta-analysis. Health Care Manag Sci
11, 121-131 (t-distributed random effects).
Gelman, A. et al. (2013). Bayesian Data Analysis, 3rd ed., sec. 5.4 (conditional normal of the
study effects in the normal-normal model).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from scipy import special

from bayes_se.diagnostics import EXACT_ATTR
from bayes_se.errors import DataError, SpecError

#: Degrees of freedom of Student-t random effects when no prior is given for nu.
DEFAULT_NU = 4.0
#: Built random-effects models kept per process, by everything that shapes the graph (k, study
#: labels, moderator names, effects, subgroups, priors): a new data set of the same shape (a
#: simulation study, SBC) reuses the model, and with it the density nutpie compiled for it, with its
#: data put in by ``pm.set_data``. The least recently used goes beyond this many.
MODEL_CACHE_SIZE = 8
_MODELS: "collections.OrderedDict" = collections.OrderedDict()

EFFECTS = ("normal", "student_t")

#: Dimensions of per-study draws.
STUDY_DIMS = ("chain", "draw", "study")
#: Trapezoidal grid in log(lambda) for the Student-t marginal likelihood (see
#: student_t_marginal_logpdf): about 1e-13 accurate for 0.5 <= nu <= 200.
LOG_LAMBDA_RANGE = (-50.0, 5.0)
LOG_LAMBDA_STEP = 0.1
CHUNK = 8192
#: log(2 pi) / 2, as scipy.stats.norm's normalising constant.
LOG_SQRT_2PI = np.log(2 * np.pi) / 2


@dataclass
class MetaModel:
    """A built (unsampled) meta-analytic PyMC model and the data its post-processing needs.

    Attributes
    ----------
    model : pymc.Model
        The model; the observed effects are named ``y``.
    kind : str
        ``"random_effects"``, ``"student_t"`` or ``"three_level"``.
    yi, vi : numpy.ndarray
        Observed effects and their sampling variances.
    X : numpy.ndarray or None
        Design matrix (k x p); ``None`` for an intercept-only model, whose location is ``mu``.
    coef_names : list of str
        Column names of ``X`` (``["intercept"]`` when ``X`` is None).
    study : list of str
        Study labels (coordinate ``study``).
    group_index : numpy.ndarray or None
        Integer subgroup (random effects) or cluster (three-level) of each study.
    group_labels : list of str or None
        Labels of the subgroups or clusters.
    nu : float or None
        Fixed Student-t degrees of freedom (None when nu has a prior or effects are normal).
    settings : dict
        Plain description of the model and priors, stored with the fit.
    """

    model: pm.Model
    kind: str
    yi: np.ndarray
    vi: np.ndarray
    X: np.ndarray | None
    coef_names: list
    study: list
    group_index: np.ndarray | None = None
    group_labels: list | None = None
    nu: float | None = None
    settings: dict = field(default_factory=dict)

    def set_data(self):
        """Put this model's data (``yi``, ``vi``, ``X``) into the PyMC model, which
        :func:`build_random_effects` may share between data sets (called by
        :func:`bayes_se.sampling.sample` before sampling)."""
        data = {"yi": self.yi, "vi": self.vi}
        if self.X is not None:
            data["X"] = self.X
        pm.set_data(data, model=self.model)

    def location(self, posterior) -> np.ndarray:
        """Fixed-effects part ``x_i' beta`` per draw, shape (chain, draw, study)."""
        if self.X is None:
            return np.asarray(posterior["mu"])[..., None] * np.ones(len(self.yi))
        beta = np.asarray(posterior["beta"])
        return np.einsum("cdp,kp->cdk", beta, self.X)

    def subgroup_newx(self) -> np.ndarray:
        """Design rows (G, p) of a new study in each subgroup (``group_index`` / ``group_labels``).

        A column of ``X`` that is constant within every subgroup is a function of the subgroup (the
        intercept, the subgroup's own dummy columns when it is also a moderator, or a coarser
        grouping) and takes its value in subgroup g; any other column stays at the reference, 0, as
        in :meth:`reference_location`. So with ``subgroup`` also a moderator,
        subgroup g's row gives ``intercept + beta[g]``.
        """
        if self.group_index is None or self.X is None:
            raise SpecError("subgroup_newx needs subgroups and a design matrix", key="subgroup")
        G = len(self.group_labels)
        lo = np.full((G, self.X.shape[1]), np.inf)
        hi = np.full((G, self.X.shape[1]), -np.inf)
        np.minimum.at(lo, self.group_index, self.X)
        np.maximum.at(hi, self.group_index, self.X)
        of_group = np.all(lo == hi, axis=0)  # columns constant within every subgroup
        return np.where(of_group, lo, 0.0)

    def subgroup_location(self, posterior) -> np.ndarray:
        """Mean effect of a new study in each subgroup, draws (chain, draw, subgroup): ``mu``, or
        ``x_g' beta`` with ``x_g`` from :meth:`subgroup_newx`."""
        if self.group_index is None:
            raise SpecError("the model has no subgroups", key="subgroup")
        if self.X is None:
            mu = np.asarray(posterior["mu"])
            return np.repeat(mu[..., None], len(self.group_labels), axis=-1)
        return np.einsum("cdp,gp->cdg", np.asarray(posterior["beta"]), self.subgroup_newx())

    def reference_location(self, posterior) -> np.ndarray:
        """Draws (chain, draw) of the mean effect of a new study at the reference: ``mu``, or with
        moderators ``x0' beta`` with ``x0`` = 1 for a column of ones (the intercept) and 0 for every
        other column (a reference level / a covariate at 0), as the exact engine's default ``newx``."""
        if self.X is None:
            return np.asarray(posterior["mu"])
        x0 = np.all(self.X == 1.0, axis=0).astype(float)
        return np.asarray(posterior["beta"]) @ x0

    def exact_draws(self, posterior, rng: np.random.Generator) -> tuple[dict, np.ndarray, np.ndarray]:
        """The model's quantities drawn exactly given each posterior draw (normal or Student-t effects).

        * study effects (normal effects) ``theta_i | beta, tau, y ~ N((y_i/v_i + m_i/tau^2)/(1/v_i +
          1/tau^2), 1/(1/v_i + 1/tau^2))`` (:func:`normal_conditional`; Gelman et al. 2013, sec. 5.4);
        * the pointwise log-likelihood with the study effect integrated out, ``N(y_i; m_i, v_i +
          tau^2)`` or the Student-t marginal (:func:`student_t_marginal_logpdf`);
        * replicates ``y_rep,i = m_i + tau u_i + sqrt(v_i) e_i`` (u normal or t_nu, e normal);
        * a new study's effect ``pred = x0' beta + tau z`` at the reference; with subgroup taus one
          per subgroup g, ``x_g' beta + tau_g z`` at that subgroup's location (:meth:`subgroup_newx`).

        Parameters
        ----------
        posterior : xarray.Dataset
            The posterior group, with this model's free parameters.
        rng : numpy.random.Generator

        Returns
        -------
        (dict, numpy.ndarray, numpy.ndarray)
            New posterior variables (name -> xarray.DataArray), the log-likelihood (chain, draw,
            study) and ``y_rep`` (chain, draw, study).
        """
        import xarray as xr

        post = posterior
        loc = self.location(post)
        shape = loc.shape  # (chain, draw, k)
        coords = {"chain": post["chain"].values, "draw": post["draw"].values, "study": self.study}
        new = {}
        tau = np.asarray(post["tau"])
        tau_i = tau[..., self.group_index] if self.group_index is not None else tau[..., None]
        tau2_i = tau_i**2
        if self.kind == "random_effects":
            theta_mean, theta_var = normal_conditional(self.yi, self.vi, loc, tau2_i)
            theta = theta_mean + np.sqrt(theta_var) * rng.standard_normal(shape)
            new["theta"] = xr.DataArray(theta, dims=STUDY_DIMS, coords=coords)
            # scipy.stats.norm.logpdf's own expression, written out: its argument checks and
            # masking cost 0.25 s on the (chain, draw, k) array at k = 1000; same numbers
            sd = np.sqrt(self.vi + tau2_i)
            x = (self.yi - loc) / sd
            loglik = (-(x**2) / 2.0 - LOG_SQRT_2PI) - np.log(sd)
            effects = tau_i * rng.standard_normal(shape)
        else:
            nu = self.nu if self.nu is not None else np.asarray(post["nu"])
            loglik = student_t_marginal_logpdf(self.yi, loc, self.vi, tau_i, nu)
            nu_b = nu if np.ndim(nu) == 0 else np.asarray(nu)[..., None]
            effects = tau_i * rng.standard_t(np.broadcast_to(nu_b, shape))
        y_rep = loc + effects + np.sqrt(self.vi) * rng.standard_normal(shape)
        # one new-study effect per subgroup: that subgroup's location and tau
        mu = self.reference_location(post) if self.group_index is None else self.subgroup_location(post)
        if self.kind == "random_effects":
            z = rng.standard_normal(tau.shape)
        else:
            nu = self.nu if self.nu is not None else np.asarray(post["nu"])
            nu = nu[..., None] if np.ndim(nu) and self.group_index is not None else nu
            z = rng.standard_t(nu, size=tau.shape)  # independent across subgroups, as the normal z
        pred = mu + tau * z
        pdims = ("chain", "draw", "subgroup") if self.group_index is not None else ("chain", "draw")
        pcoords = {k: coords[k] for k in ("chain", "draw")}
        if self.group_index is not None:
            pcoords["subgroup"] = self.group_labels
        new["pred"] = xr.DataArray(pred, dims=pdims, coords=pcoords)
        return new, xr.DataArray(loglik, dims=STUDY_DIMS, coords=coords), y_rep

    def postprocess(self, idata, seed: int):
        """Add the exact conditional draws, the marginal log-likelihood and ``y_rep`` to ``idata``.

        Called by :func:`bayes_se.sampling.sample` after NUTS: the variables of
        :meth:`exact_draws` go into the posterior (marked with ``EXACT_ATTR``, which the
        convergence checks skip; a variable the sampler already has is kept), the log-likelihood
        into ``log_likelihood["y"]``, the replicates into ``posterior_predictive["y"]`` and
        the observed effects into ``observed_data["y"]`` when the sampler did not store them.

        Parameters
        ----------
        idata : arviz.InferenceData
            With a posterior of this model's free parameters.
        seed : int
            Seeds a NumPy Generator (independent of the sampler's streams): the same seed gives
            identical draws.

        Returns
        -------
        arviz.InferenceData
            The same object.
        """
        import xarray as xr

        rng = np.random.default_rng([int(seed), 20240601])
        post = idata.posterior
        new, ll, y_rep = self.exact_draws(post, rng)
        coords = {"chain": post["chain"].values, "draw": post["draw"].values, "study": self.study}
        for name, arr in new.items():
            if name in post:  # Student-t theta is sampled (deterministic of u), keep it
                continue
            arr.attrs[EXACT_ATTR] = 1
            idata.posterior[name] = arr
        log_lik = xr.Dataset({"y": ll})
        # replicates share the observed data's name, so az.plot_ppc(idata) needs no arguments
        y_rep_ds = xr.Dataset({"y": xr.DataArray(y_rep, dims=STUDY_DIMS, coords=coords)})
        for group, ds in (("log_likelihood", log_lik), ("posterior_predictive", y_rep_ds)):
            if group in idata.groups():
                delattr(idata, group)
            idata.add_groups({group: ds})
        if "observed_data" not in idata.groups():
            idata.add_groups({"observed_data": xr.Dataset(
                {"y": xr.DataArray(self.yi, dims=("study",), coords={"study": self.study})})})
        return idata


def check_inputs(yi, vi, study=None) -> tuple[np.ndarray, np.ndarray, list]:
    """Validate effects and variances; return them as float arrays with study labels.

    Raises
    ------
    DataError
        Naming the 1-based row and the column (``yi`` or ``vi``) of the first bad value.
    """
    from bayes_se.data import check_arrays, unique_labels

    yi, vi = check_arrays(yi, vi)
    if yi.size < 2:
        raise DataError("need at least two studies", column="yi")
    if study is None:
        study = [str(i + 1) for i in range(yi.size)]
    study = [str(s) for s in study]
    if len(study) != yi.size:
        raise DataError(f"{len(study)} study labels for {yi.size} effects", column="study")
    # coordinates must be unique: number repeated labels (e.g. several effects per study)
    return yi, vi, unique_labels(study)


def check_design(X, coef_names, k: int) -> tuple[np.ndarray | None, list]:
    """Validate a design matrix; ``None`` (or a single all-ones column) means intercept only."""
    if X is None:
        return None, ["intercept"]
    try:
        X = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as err:
        raise DataError(f"design matrix must be numeric ({err})") from None
    if X.ndim == 1:
        X = X[:, None]
    if X.shape[0] != k:
        raise DataError(f"design matrix has {X.shape[0]} rows for {k} effects")
    names = [f"x{j}" for j in range(X.shape[1])] if coef_names is None else [str(c) for c in coef_names]
    if len(names) != X.shape[1]:
        raise SpecError(f"{len(names)} names for {X.shape[1]} columns", key="coef_names")
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        raise DataError("missing or non-finite moderator value", row=int(bad[0, 0]) + 1, column=names[bad[0, 1]])
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise DataError("design matrix is rank deficient (a moderator is constant or collinear)")
    if X.shape[1] == 1 and np.allclose(X, 1.0):
        return None, ["intercept"]
    return X, names


def resolve_prior(priors: dict | None, key: str):
    """The prior for ``key``: from ``priors``, else the default preset's (:data:`bayes_se.defaults.PRIORS`);
    None for a key the preset does not set (``nu``: fixed degrees of freedom)."""
    if priors and priors.get(key) is not None:
        return priors[key]
    from bayes_se.priors import preset

    return preset("default").get(key)


def make_rv(prior, name: str, **dims):
    """Create the random variable ``name`` from a Prior-like object (``to_pymc``) or a callable."""
    if hasattr(prior, "to_pymc"):
        return prior.to_pymc(name, **dims)
    if callable(prior):
        return prior(name, **dims)
    raise SpecError(f"prior for '{name}' must have a to_pymc method or be callable, got {prior!r}", key=name)


def coefficient_rv(priors: dict, coef_names, name: str = "beta"):
    """The coefficient vector ``beta`` (dims ``coef``).

    A callable ``priors["beta"]`` creates it as it likes; Prior objects follow the one rule of
    :func:`bayes_se.priors.coefficient_priors`: ``mu`` for the intercept, ``beta[NAME]`` or else
    ``beta`` for the others.
    """
    given = priors.get("beta")
    if given is not None and not hasattr(given, "to_pymc"):
        return make_rv(given, name, dims="coef")
    from bayes_se.priors import coefficient_priors, coefficient_vector_rv

    resolved = {key: value for key, value in priors.items() if key.startswith("beta[") and value is not None}
    resolved["mu"] = resolve_prior(priors, "mu")
    resolved["beta"] = resolve_prior(priors, "beta")
    return coefficient_vector_rv(coefficient_priors(resolved, coef_names), name, dims="coef")


def scale_rv(prior, name: str, dims: str | None = None):
    """A standard-deviation parameter ``name`` and its square ``name2`` (e.g. tau and tau2).

    A Prior object goes through ``bayes_se.priors.heterogeneity_rv`` (which may put the prior on
    the variance); a callable creates the standard deviation itself.
    """
    kw = {"dims": dims} if dims else {}
    if hasattr(prior, "to_pymc"):
        from bayes_se.priors import heterogeneity_rv

        return heterogeneity_rv(prior, name=name, **kw)
    sd = make_rv(prior, name, **kw)
    pm.Deterministic(name + "2", pt.square(sd), **kw)
    return sd


def data_and_location(yi, vi, X, coef_names, priors: dict, location_prior):
    """Inside a ``pm.Model``: the shared data ``yi``, ``vi`` and the location ``x_i' beta`` (or ``mu``).

    The skeleton every effect-size builder shares. The data enter as shared variables, not
    constants: PyTensor keys its compiled C modules by the graph's constants, so constant data
    make every data set a new key, and its in-process cache lookup grows with each fit (fits 1-10
    took 0.7 s, fits 140-150 1.5 s in one process). Shared data keep one key per model shape.

    Returns
    -------
    (yi_data, vi_data, location) tensors; ``location`` is ``mu`` (a scalar) without a design.
    """
    yi_data = pm.Data("yi", yi, dims="study")
    vi_data = pm.Data("vi", vi, dims="study")
    if X is None:
        return yi_data, vi_data, make_rv(location_prior, "mu")
    beta = coefficient_rv(priors, coef_names)
    return yi_data, vi_data, pt.dot(pm.Data("X", X, dims=("study", "coef")), beta)


def prior_text(prior) -> str:
    """A one-line description of a prior for the stored settings."""
    if prior is None:
        return "none"
    text = str(prior)
    return "callable" if text.startswith("<function") else text


def build_random_effects(
    yi,
    vi,
    *,
    X=None,
    coef_names=None,
    study=None,
    priors: dict | None = None,
    effects: str = "normal",
    nu: float | None = None,
    subgroup=None,
) -> MetaModel:
    """Build the Bayesian random-effects model or meta-regression (not sampled).

    Model (normal effects, marginal): ``y_i ~ N(x_i' beta, v_i + tau_{g(i)}^2)``.

    Parameters
    ----------
    yi, vi : array_like
        Observed effects and their sampling variances (k each).
    X : array_like, optional
        Design matrix (k x p) including the intercept column; omitted: intercept only (``mu``).
    coef_names : list of str, optional
        Names of the columns of ``X`` (coordinate ``coef``), e.g. ``intercept``, ``guided[yes]``.
    study : sequence, optional
        Study labels (coordinate ``study``).
    priors : dict, optional
        Keys ``mu``, ``beta``, ``tau`` (and ``nu`` for Student-t effects): Prior objects with a
        ``to_pymc(name, **dims)`` method or callables ``f(name, **dims)`` creating the variable.
    effects : {"normal", "student_t"}
        Distribution of the random effects.
    nu : float, optional
        Fixed degrees of freedom of Student-t effects (default 4) unless ``priors["nu"]`` is given.
    subgroup : sequence, optional
        One label per study: a separate tau per subgroup (``tau`` with dims ``subgroup``).

    Returns
    -------
    MetaModel
        Its PyMC model is reused from an earlier build of the same shape (:data:`MODEL_CACHE_SIZE`),
        with this data set put in; so add no variables to it (set ``MODEL_CACHE_SIZE = 0`` for a
        model of one's own).

    References
    ----------
    Higgins, Thompson & Spiegelhalter (2009), JRSS A 172:137-159; Baker & Jackson (2008), Health
    Care Manag Sci 11:121-131.
    """
    if effects not in EFFECTS:
        raise SpecError(f"effects must be one of {EFFECTS}, got {effects!r}", key="effects")
    yi, vi, study = check_inputs(yi, vi, study)
    X, coef_names = check_design(X, coef_names, yi.size)

    coords = {"study": study}
    if X is not None:
        coords["coef"] = coef_names
    group_index = group_labels = None
    if subgroup is not None:
        groups = [str(g) for g in subgroup]
        if len(groups) != yi.size:
            raise DataError(f"{len(groups)} subgroup labels for {yi.size} effects", column="subgroup")
        group_labels = sorted(set(groups))
        if len(group_labels) < 2:
            raise DataError("subgroup column has a single level", column="subgroup")
        group_index = np.array([group_labels.index(g) for g in groups])
        coords["subgroup"] = group_labels

    priors = dict(priors or {})
    chosen = {key: resolve_prior(priors, key) for key in ("mu", "beta", "tau", "nu")}
    nu_fixed = None  # Student-t effects without a prior on nu: fixed degrees of freedom
    if effects == "student_t" and priors.get("nu") is None:
        nu_fixed = float(DEFAULT_NU if nu is None else nu)
        if nu_fixed <= 0:
            raise SpecError(f"nu must be > 0, got {nu_fixed}", key="nu")
    key = _model_key(study, coef_names if X is not None else None, effects, nu_fixed, priors, chosen,
                     None if group_index is None else (tuple(group_index.tolist()), tuple(group_labels)))
    model = _MODELS.get(key) if key is not None and MODEL_CACHE_SIZE > 0 else None
    if model is not None:
        _MODELS.move_to_end(key)
    else:
        model = _new_model(yi, vi, X, coef_names, coords, priors, chosen, effects, nu_fixed, group_index)
        if key is not None:
            _MODELS[key] = model
            while len(_MODELS) > MODEL_CACHE_SIZE:
                _MODELS.popitem(last=False)

    settings = {
        "model": "random_effects" if effects == "normal" else "student_t",
        "effects": effects,
        "k": int(yi.size),
        "coef": coef_names,
        "subgroup_tau": group_labels is not None,
        "priors": {"location": prior_text(chosen["mu"] if X is None else chosen["beta"]),
                   "tau": prior_text(chosen["tau"])},
    }
    if effects == "student_t":
        settings["nu"] = nu_fixed if nu_fixed is not None else prior_text(priors.get("nu"))
    meta = MetaModel(
        model=model,
        kind="random_effects" if effects == "normal" else "student_t",
        yi=yi,
        vi=vi,
        X=X,
        coef_names=coef_names,
        study=study,
        group_index=group_index,
        group_labels=group_labels,
        nu=nu_fixed,
        settings=settings,
    )
    meta.set_data()  # a reused model holds the previous data set's until now
    return meta


def _model_key(study, coef_names, effects, nu_fixed, priors, chosen, groups):
    """What shapes the graph of :func:`build_random_effects`, or None when a prior cannot be
    compared (then the model is built anew). The data are not in it: they are shared variables."""
    key = (tuple(study), None if coef_names is None else tuple(coef_names), effects, nu_fixed,
           tuple(sorted(priors.items(), key=lambda item: item[0])), tuple(chosen.items()), groups)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _new_model(yi, vi, X, coef_names, coords, priors, chosen, effects, nu_fixed, group_index):
    """The PyMC model of :func:`build_random_effects` (marginal normal, or non-centred Student-t)."""
    with pm.Model(coords=coords) as model:
        yi_data, vi_data, loc = data_and_location(yi, vi, X, coef_names, priors, chosen["mu"])
        if group_index is None:
            tau = scale_rv(chosen["tau"], "tau")
        else:
            tau = scale_rv(chosen["tau"], "tau", dims="subgroup")[group_index]
        if effects == "normal":
            pm.Normal("y", mu=loc, sigma=pt.sqrt(vi_data + pt.square(tau)), observed=yi_data, dims="study")
        else:
            nu_rv = make_rv(priors["nu"], "nu") if nu_fixed is None else nu_fixed
            u = pm.StudentT("u", nu=nu_rv, mu=0.0, sigma=1.0, dims="study")
            theta = pm.Deterministic("theta", loc + tau * u, dims="study")
            pm.Normal("y", mu=theta, sigma=pt.sqrt(vi_data), observed=yi_data, dims="study")
    return model


def normal_conditional(y, v, m, s2):
    """Mean and variance of ``theta | y`` for ``y ~ N(theta, v)``, ``theta ~ N(m, s2)``.

    ``mean = (y/v + m/s2) / (1/v + 1/s2)``, ``var = 1 / (1/v + 1/s2)``, written as
    ``(y s2 + m v) / (v + s2)`` and ``v s2 / (v + s2)`` so that s2 = 0 gives theta = m exactly.

    Parameters
    ----------
    y, v, m, s2 : array_like
        Broadcastable arrays.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)

    References
    ----------
    Gelman et al. (2013), Bayesian Data Analysis, 3rd ed., eq. 2.12.
    """
    y, v, m, s2 = (np.asarray(a, dtype=float) for a in (y, v, m, s2))
    total = v + s2
    return (y * s2 + m * v) / total, v * s2 / total


def student_t_marginal_logpdf(y, loc, v, tau, nu):
    """log of ``int N(y; loc + tau u, v) t_nu(u) du``, the Student-t random-effects marginal.

    Uses the normal scale mixture ``t_nu = int N(0, 1/lambda) Gamma(lambda; nu/2, nu/2) dlambda``,
    so the marginal is ``E_lambda[N(y; loc, v + tau^2/lambda)]``, a one-dimensional integral whose
    integrand is analytic and decays (doubly) exponentially in ``s = log lambda``; the trapezoidal
    rule on a fixed grid in s is then accurate to about 1e-13 (hand-written because SciPy has no
    quadrature vectorised over arrays of parameters).

    Parameters
    ----------
    y, loc, v, tau : array_like
        Broadcastable arrays.
    nu : float or array_like
        Degrees of freedom (scalar, or broadcastable to ``tau[..., 0]`` per draw).

    Returns
    -------
    numpy.ndarray

    References
    ----------
    Trefethen, L. N. & Weideman, J. A. C. (2014). The exponentially convergent trapezoidal rule.
    SIAM Review 56, 385-458.
    """
    y, loc, v, tau = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (y, loc, v, tau)))
    if np.ndim(nu) == 0:
        nu = np.full(y.shape, float(nu))
    else:
        nu = np.broadcast_to(np.asarray(nu, dtype=float)[..., None], y.shape)
    s = np.arange(LOG_LAMBDA_RANGE[0], LOG_LAMBDA_RANGE[1] + LOG_LAMBDA_STEP / 2, LOG_LAMBDA_STEP)
    lam = np.exp(s)
    flat = [np.ravel(a) for a in (y, loc, v, tau, nu)]
    out = np.empty(flat[0].size)
    for start in range(0, out.size, CHUNK):  # chunks bound memory to CHUNK x len(s) doubles
        yc, lc, vc, tc, nc = (a[start:start + CHUNK, None] for a in flat)
        half = nc / 2.0
        log_gamma = half * np.log(half) - special.gammaln(half) + half * s - half * lam  # + log jacobian
        var = vc + tc**2 / lam
        log_norm = -0.5 * (np.log(2.0 * np.pi * var) + (yc - lc) ** 2 / var)
        out[start:start + CHUNK] = special.logsumexp(log_norm + log_gamma, axis=-1)
    return out.reshape(y.shape) + np.log(LOG_LAMBDA_STEP)
