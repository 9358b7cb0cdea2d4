"""A prior as a value object: its families, parameters, target, densities and draws.

A :class:`Prior` is data: a family name, its parameters and the quantity (``target``) its density
is on; ``str(prior)`` prints the maths it means. :func:`assign_prior` checks that a prior suits a
parameter, :func:`coefficient_priors` gives each regression coefficient its prior by one rule.
The families are listed in :mod:`bayes_se.priors`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
from typing import Mapping, Sequence

import numpy as np

from bayes_se.errors import SpecError
from bayes_se.lazy import LazyModule
from bayes_se.normal_dist import ndtri

special = LazyModule("scipy.special")  # the default priors' quantiles need none (issue 17)

# family -> (argument names in positional order, kind of quantity the density is on)
#   "real": any real number (mu, beta); "positive": an SD or other positive quantity (tau, nu);
#   "variance": tau2 (the prior is stated on the variance; tau_logpdf adds the Jacobian).
FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "normal": (("mu", "sigma"), "real"),
    "student_t": (("nu", "mu", "sigma"), "real"),
    "half_normal": (("sigma",), "positive"),
    "half_cauchy": (("beta",), "positive"),
    "half_student_t": (("nu", "sigma"), "positive"),
    "exponential": (("lam",), "positive"),
    "uniform": (("lower", "upper"), "positive"),
    "inverse_gamma": (("alpha", "beta"), "variance"),
    "log_normal": (("mu", "sigma"), "variance"),
    "log_t": (("nu", "mu", "sigma"), "variance"),
    "flat": ((), "real"),  # improper; a flat tau prior is "positive" (see Prior.kind)
}
#: Parameters a flat (improper) prior may be given for.
FLAT_PARAMS = ("mu", "beta", "tau")
# arguments that must be > 0
_POSITIVE_ARGS = {"sigma", "beta", "nu", "lam", "alpha"}
# the maths names str() prints; parse also accepts these (case-insensitive, '_' ignored)
_DISPLAY = {
    "normal": "Normal",
    "half_normal": "HalfNormal",
    "half_cauchy": "HalfCauchy",
    "exponential": "Exponential",
    "uniform": "Uniform",
    "inverse_gamma": "InvGamma",
    "flat": "Flat",
}
FAMILY_ALIASES = {
    "normal": "normal", "n": "normal", "gaussian": "normal",
    "studentt": "student_t", "t": "student_t",
    "halfnormal": "half_normal", "halfcauchy": "half_cauchy",
    "halfstudentt": "half_student_t", "halft": "half_student_t",
    "exponential": "exponential", "exp": "exponential",
    "uniform": "uniform", "u": "uniform",
    "inversegamma": "inverse_gamma", "invgamma": "inverse_gamma",
    "lognormal": "log_normal", "logt": "log_t",
    "flat": "flat", "improper": "flat",
}
# parameter names a prior can be assigned to (beta[NAME] too)
PARAM_NAMES = ("mu", "beta", "tau", "tau2", "sigma_cluster", "sigma_effect", "nu")
SD_PARAMS = ("tau", "sigma_cluster", "sigma_effect")
_BETA_RE = re.compile(r"^beta\[[A-Za-z_][^\[\]]*\]$")  # ablat, allocrandom, factor(x)2:z, subjectEarth Science
#: Scale coefficients of a location-scale model (log tau_i = z_i' alpha): alpha, alpha[NAME].
_ALPHA_RE = re.compile(r"^alpha(\[[A-Za-z_][^\[\]]*\])?$")


def _kind(family: str) -> str:
    return FAMILIES[family][1]


def _default_target(family: str) -> str:
    return {"real": "mu", "positive": "tau", "variance": "tau2"}[_kind(family)]


def format_number(x: float) -> str:
    """Shortest text that reads back as the same float (repr), with integral values as ints."""
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


@dataclasses.dataclass(frozen=True)
class Prior:
    """A prior distribution as data.

    Parameters
    ----------
    family : str
        One of :data:`FAMILIES`.
    params : dict of str to float
        The family's arguments by name (see the module docstring).
    target : str, optional
        The quantity the density is on, as ``str`` prints it: ``"mu"``, ``"beta[x]"``, ``"tau"``,
        ``"sigma_cluster"``, ``"nu"`` for real/positive families, ``"tau2"`` (or ``"sigma_cluster2"``)
        for the variance families. Defaults to ``mu`` / ``tau`` / ``tau2`` by family.
    """

    family: str
    params: Mapping[str, float]
    target: str = ""

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise SpecError(unknown_family_message(self.family))
        params = _check_args(self.family, dict(self.params))
        object.__setattr__(self, "params", types.MappingProxyType(params))
        if not self.target:
            target = "mu" if self.kind == "real" else _default_target(self.family)
            object.__setattr__(self, "target", target)

    def __hash__(self):
        return hash((self.family, tuple(sorted(self.params.items())), self.target))

    def __repr__(self):
        args = ", ".join(f"{k}={format_number(v)}" for k, v in self.params.items())
        return f"Prior({self.family}({args}), target={self.target!r})"

    def __str__(self):
        p = dict(self.params)
        target = self.target or _default_target(self.family)
        f = self.family
        names = FAMILIES[f][0]
        if "nu" in p and "e" not in format_number(p["nu"]):  # t_5(mu, sigma); an exponent cannot sit in a name
            names = tuple(n for n in names if n != "nu")
            display = ("HalfT_" if f == "half_student_t" else "t_") + format_number(p["nu"])
        else:
            display = {"student_t": "StudentT", "log_t": "StudentT", "half_student_t": "HalfStudentT",
                       "log_normal": "Normal"}.get(f) or _DISPLAY[f]
        lhs = f"log({target})" if f in ("log_normal", "log_t") else target
        return f"{lhs} ~ {display}({', '.join(format_number(p[n]) for n in names)})"

    # -- text (read back by bayes_se.priors.grammar.parse_prior) ------------------------------
    def spec_text(self) -> str:
        """The short keyword-free form a spec file uses, e.g. ``half_normal(0.5)``."""
        return f"{self.family}({', '.join(format_number(v) for v in self.params.values())})"

    @property
    def kind(self) -> str:
        """``"real"``, ``"positive"`` or ``"variance"``: what the density is on (a uniform with a
        negative lower bound is real)."""
        if self.family == "uniform" and self.params["lower"] < 0:
            return "real"
        if self.family == "flat":
            return "positive" if self.target in SD_PARAMS else "real"
        return _kind(self.family)

    @property
    def improper(self) -> bool:
        """True for ``flat()``: a density with no normalising constant."""
        return self.family == "flat"

    @property
    def on_variance(self) -> bool:
        """True when the density is stated on the variance tau2 (or on log tau2)."""
        return _kind(self.family) == "variance"

    # -- densities -------------------------------------------------------------------------------
    def _scipy(self):
        """The SciPy frozen distribution of the target (of log tau2 for log_normal / log_t), for
        draws and moments; densities use :func:`_log_density` (closed forms, no scipy.stats)."""
        from scipy import stats  # deferred: importing scipy.stats costs ~0.5 s per process

        p = self.params
        f = self.family
        if f == "flat":
            raise SpecError(f"'{self}' is improper: it has no draws, moments or quantiles", key=self.target)
        if f == "normal" or f == "log_normal":
            return stats.norm(p["mu"], p["sigma"])
        if f == "student_t" or f == "log_t":
            return stats.t(p["nu"], p["mu"], p["sigma"])
        if f == "half_normal":
            return stats.halfnorm(scale=p["sigma"])
        if f == "half_cauchy":
            return stats.halfcauchy(scale=p["beta"])
        if f == "half_student_t":
            return _HalfT(p["nu"], p["sigma"])
        if f == "exponential":
            return stats.expon(scale=1.0 / p["lam"])
        if f == "uniform":
            return stats.uniform(p["lower"], p["upper"] - p["lower"])
        return stats.invgamma(p["alpha"], scale=p["beta"])

    def logpdf(self, x):
        """Log density of the prior on its own target (of tau2 itself for the variance families).

        Parameters
        ----------
        x : float or array_like
            Values of the target.

        Returns
        -------
        numpy.ndarray or float
            ``log p(x)``; -inf outside the support.
        """
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.family in ("log_normal", "log_t"):
                # density of tau2 = density of log(tau2) / tau2
                safe = np.where(x > 0, x, 1.0)
                out = np.where(x > 0, _log_density(self.family, self.params, np.log(safe)) - np.log(safe), -np.inf)
            else:
                out = _log_density(self.family, self.params, x)
        return out if out.ndim else float(out)

    def tau_logpdf(self, tau):
        """Log density of the standard deviation tau, whatever quantity the prior is stated on.

        For a variance prior ``log p(tau) = log p_tau2(tau^2) + log(2 tau)``; for a prior on
        ``log tau2`` it is ``log p(log tau2) + log(2 / tau)``.

        Parameters
        ----------
        tau : float or array_like
            Values of tau (>= 0).

        Returns
        -------
        numpy.ndarray or float
            -inf for tau < 0; at tau = 0 the limit of the density: finite for the half-families,
            exponential and uniform(0, .), -inf for inverse_gamma and log_normal, and +inf for
            log_t (its tau density has an integrable pole at 0: a t tail in log tau2 decays only
            polynomially in log tau, slower than 1/tau grows).
        """
        tau = np.asarray(tau, dtype=float)
        if self.kind == "real":
            raise SpecError(f"'{self}' is a prior on a real-valued parameter, not on a standard deviation",
                            key=self.target)
        pos = tau > 0
        safe = np.where(pos, tau, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.family == "inverse_gamma":
                body = _log_density(self.family, self.params, safe**2) + np.log(2.0 * safe)
                at0 = -np.inf
            elif self.family in ("log_normal", "log_t"):
                body = _log_density(self.family, self.params, 2.0 * np.log(safe)) + np.log(2.0 / safe)
                at0 = -np.inf if self.family == "log_normal" else np.inf
            else:
                body = _log_density(self.family, self.params, safe)
                at0 = float(_log_density(self.family, self.params, 0.0))
        out = np.where(pos, body, np.where(tau == 0, at0, -np.inf))
        out = np.where(np.isnan(tau), np.nan, out)
        return out if out.ndim else float(out)

    def tau_quantile(self, q: float) -> float:
        """Quantile ``q`` of the standard deviation tau, whatever quantity the prior is stated on
        (``sqrt`` of tau2's quantile for the variance families; quantiles commute with monotone maps)."""
        if self.kind == "real":
            raise SpecError(f"'{self}' is a prior on a real-valued parameter, not on a standard deviation",
                            key=self.target)
        x = self._closed_form_ppf(q)
        if x is None:
            x = float(self._scipy().ppf(q))
        if self.family in ("log_normal", "log_t"):
            return math.exp(0.5 * x)
        return math.sqrt(x) if self.family == "inverse_gamma" else x

    def _closed_form_ppf(self, q: float):
        """The target's quantile by the same special function SciPy's ``ppf`` calls, for the common
        families (None for the others): the exact engine and the prior-scale check then never import
        scipy.stats (about 0.5 s of every process); the normal families not even scipy.special
        (:func:`bayes_se.normal_dist.ndtri` equals its ``ndtri`` bit for bit)."""
        p, f = self.params, self.family
        if f == "half_normal":
            return float(p["sigma"] * ndtri((1.0 + q) / 2.0))
        if f == "half_cauchy":
            return float(p["beta"] * math.tan(math.pi / 2.0 * q))
        if f == "half_student_t":
            return float(p["sigma"] * special.stdtrit(p["nu"], (1.0 + q) / 2.0))
        if f in ("normal", "log_normal"):
            return float(p["mu"] + p["sigma"] * ndtri(q))
        if f in ("student_t", "log_t"):
            return float(p["mu"] + p["sigma"] * special.stdtrit(p["nu"], q))
        return None

    def rvs(self, size=None, rng=None):
        """Random draws on the prior's target (tau2 itself for the variance families).

        Parameters
        ----------
        size : int or tuple, optional
        rng : numpy.random.Generator or int, optional
        """
        rng = np.random.default_rng(rng)
        draws = self._scipy().rvs(size=size, random_state=rng)
        if self.family in ("log_normal", "log_t"):
            draws = np.exp(draws)
        return draws

    def mean_sd(self) -> tuple[float, float]:
        """Mean and standard deviation of the target (``(mu, sigma)`` for a normal prior).

        Raises
        ------
        SpecError
            When the distribution has no finite mean and SD (half-Cauchy, log-t, t with nu <= 2).
        """
        if self.family == "normal":
            return float(self.params["mu"]), float(self.params["sigma"])
        if self.family == "flat":
            raise SpecError(f"'{self}' is improper: it has no mean and standard deviation", key=self.target)
        if self.family == "log_t":
            mean = sd = math.inf  # E[exp(T)] diverges for every t
        elif self.family == "log_normal":
            from scipy import stats

            d = stats.lognorm(self.params["sigma"], scale=math.exp(self.params["mu"]))
            mean, sd = float(d.mean()), float(d.std())
        else:
            d = self._scipy()
            mean, sd = float(d.mean()), float(d.std())
        if not (math.isfinite(mean) and math.isfinite(sd)):
            raise SpecError(f"'{self}' has no finite mean and standard deviation", key=self.target)
        return mean, sd

    # -- PyMC --------------------------------------------------------------------------------------
    def float64_params(self) -> dict:
        # numpy float64, not Python floats: PyTensor stores a Python float that float32 holds exactly
        # (0.5, 1.0) as a float32 constant, which costs ~1e-9 in the log density's constants.
        return {k: np.float64(v) for k, v in self.params.items()}

    def pymc_dist(self):
        """An unnamed PyMC distribution (``pm.X.dist``) of the target, for log densities.

        For log_normal / log_t it is the distribution of ``log tau2`` (what :meth:`to_pymc`
        samples).
        """
        refuse_flat_in_mcmc(self)
        import pymc as pm

        p = self.float64_params()
        f = self.family
        if f in ("normal", "log_normal"):
            return pm.Normal.dist(mu=p["mu"], sigma=p["sigma"])
        if f in ("student_t", "log_t"):
            return pm.StudentT.dist(nu=p["nu"], mu=p["mu"], sigma=p["sigma"])
        if f == "half_normal":
            return pm.HalfNormal.dist(sigma=p["sigma"])
        if f == "half_cauchy":
            return pm.HalfCauchy.dist(beta=p["beta"])
        if f == "half_student_t":
            return pm.HalfStudentT.dist(nu=p["nu"], sigma=p["sigma"])
        if f == "exponential":
            return pm.Exponential.dist(lam=p["lam"])
        if f == "uniform":
            return pm.Uniform.dist(lower=p["lower"], upper=p["upper"])
        return pm.InverseGamma.dist(alpha=p["alpha"], beta=p["beta"])

    def to_pymc(self, name: str, **dims):
        """Create the random variable ``name`` in the current PyMC model context.

        For log_normal / log_t the free variable is ``log_{name}`` (normal or t on the log scale,
        better geometry for NUTS) and ``name = exp(log_{name})`` is a Deterministic.

        Parameters
        ----------
        name : str
            Variable name.
        **dims
            Passed to the PyMC constructor (``dims=``, ``shape=``).

        Returns
        -------
        pytensor.tensor.TensorVariable
        """
        refuse_flat_in_mcmc(self)
        import pymc as pm

        p = self.float64_params()
        f = self.family
        ctor = {
            "normal": lambda n: pm.Normal(n, mu=p["mu"], sigma=p["sigma"], **dims),
            "student_t": lambda n: pm.StudentT(n, nu=p["nu"], mu=p["mu"], sigma=p["sigma"], **dims),
            "half_normal": lambda n: pm.HalfNormal(n, sigma=p["sigma"], **dims),
            "half_cauchy": lambda n: pm.HalfCauchy(n, beta=p["beta"], **dims),
            "half_student_t": lambda n: pm.HalfStudentT(n, nu=p["nu"], sigma=p["sigma"], **dims),
            "exponential": lambda n: pm.Exponential(n, lam=p["lam"], **dims),
            "uniform": lambda n: pm.Uniform(n, lower=p["lower"], upper=p["upper"], **dims),
            "inverse_gamma": lambda n: pm.InverseGamma(n, alpha=p["alpha"], beta=p["beta"], **dims),
            "log_normal": lambda n: pm.Normal(n, mu=p["mu"], sigma=p["sigma"], **dims),
            "log_t": lambda n: pm.StudentT(n, nu=p["nu"], mu=p["mu"], sigma=p["sigma"], **dims),
        }[f]
        if f in ("log_normal", "log_t"):
            log_x = ctor(f"log_{name}")
            return pm.Deterministic(name, pm.math.exp(log_x), dims=dims.get("dims"))
        return ctor(name)


def refuse_flat_in_mcmc(prior) -> None:
    """The MCMC engine samples proper priors only (docs/model_spec.md, "Flat priors")."""
    if prior.family == "flat":
        raise SpecError(f"'{prior}' is an improper flat prior, which the MCMC engine does not sample (an "
                        "improper posterior would go unnoticed); use engine = \"exact\" (--engine exact) "
                        "or a proper prior such as normal(0, 10)", key=f"priors.{prior.target}")


def _t_logpdf(z, nu):
    """log t_nu(z) of the standard t, SciPy's formula (``poch`` keeps the gamma ratio accurate for
    large nu)."""
    return np.log(special.poch(0.5 * nu, 0.5)) - 0.5 * (np.log(nu) + np.log(np.pi)) - (nu + 1) / 2 * np.log1p(z * z / nu)


def _log_density(family, params, x):
    """Log density of a family at x, on its own target (on log tau2 for log_normal / log_t).

    Closed forms, the same expressions as ``scipy.stats`` (``norm``, ``t``, ``halfnorm``,
    ``halfcauchy``, ``expon``, ``uniform``, ``invgamma``; agreement to 1e-12 is tested), written out
    because building a frozen SciPy distribution costs ~1 ms per call and importing scipy.stats
    ~0.5 s per process, and the exact engine evaluates the prior several times per fit. Outside the
    support -inf (support closed as in SciPy), NaN stays NaN.
    """
    p = params
    x = np.asarray(x, dtype=float)
    if family == "flat":  # improper: log density 0 (on tau: 0 for tau >= 0, see Prior.tau_logpdf)
        return np.where(np.isnan(x), np.nan, 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if family in ("normal", "log_normal"):
            z = (x - p["mu"]) / p["sigma"]
            out = -z * z / 2.0 - _LOG_SQRT_2PI - np.log(p["sigma"])
        elif family in ("student_t", "log_t"):
            out = _t_logpdf((x - p["mu"]) / p["sigma"], p["nu"]) - np.log(p["sigma"])
        else:
            if family == "half_normal":
                z = x / p["sigma"]
                body = 0.5 * np.log(2.0 / np.pi) - z * z / 2.0 - np.log(p["sigma"])
            elif family == "half_cauchy":
                z = x / p["beta"]
                body = np.log(2.0 / np.pi) - special.log1p(z * z) - np.log(p["beta"])
            elif family == "half_student_t":
                body = math.log(2.0) + _t_logpdf(x / p["sigma"], p["nu"]) - np.log(p["sigma"])
            elif family == "exponential":
                scale = 1.0 / p["lam"]
                body = -(x / scale) - np.log(scale)
            elif family == "uniform":
                width = p["upper"] - p["lower"]
                body = np.full_like(x, -np.log(width))
            else:  # inverse_gamma(alpha, beta): scipy's invgamma(alpha, scale=beta)
                z = x / p["beta"]
                body = -(p["alpha"] + 1) * np.log(z) - special.gammaln(p["alpha"]) - 1.0 / z - np.log(p["beta"])
            lower, upper = (p["lower"], p["upper"]) if family == "uniform" else (0.0, np.inf)
            inside = (x >= lower) & (x <= upper) & np.isfinite(x)
            out = np.where(inside, body, -np.inf)
            if family == "inverse_gamma":
                out = np.where(z == 0, -np.inf, out)  # the limit at 0 (SciPy's value too)
        out = np.where(np.isnan(x), np.nan, out)
    return out


_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class _HalfT:
    """Half Student-t on [0, inf): density 2 t_nu(x; 0, sigma). Hand-written because SciPy has no
    half-t distribution; everything is derived from ``scipy.stats.t``."""

    def __init__(self, nu, sigma):
        from scipy import stats

        self._t = stats.t(nu, 0.0, sigma)
        self.nu = nu
        self.sigma = sigma

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        return np.where(x >= 0, math.log(2.0) + self._t.logpdf(x), -np.inf)

    def rvs(self, size=None, random_state=None):
        return np.abs(self._t.rvs(size=size, random_state=random_state))

    def mean(self):
        if self.nu <= 1:
            return math.inf
        nu = self.nu  # E|T| for a t_nu with scale sigma
        return float(2 * self.sigma * math.sqrt(nu / math.pi) * math.exp(
            math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2)) / (nu - 1))

    def std(self):
        if self.nu <= 2:
            return math.inf
        second = self.sigma**2 * self.nu / (self.nu - 2)
        return math.sqrt(max(second - self.mean() ** 2, 0.0))


# ---------------------------------------------------------------------------------------------
# checking arguments
# ---------------------------------------------------------------------------------------------
def unknown_family_message(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), list(FAMILIES), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown prior family '{name}'{hint}; known families: {', '.join(FAMILIES)}"


def _check_args(family: str, params: dict) -> dict:
    names = FAMILIES[family][0]
    if set(params) != set(names):
        raise SpecError(f"{family} takes arguments ({', '.join(names)}), got ({', '.join(params)})")
    out = {}
    for n in names:
        v = params[n]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise SpecError(f"{family}: argument {n} must be a number, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise SpecError(f"{family}: argument {n} must be finite, got {v}")
        if n in _POSITIVE_ARGS and v <= 0:
            raise SpecError(f"{family}: argument {n} must be > 0, got {format_number(v)}")
        if n in _POSITIVE_ARGS and v * v == 0.0:
            raise SpecError(f"{family}: argument {n} = {v!r} is too small to compute with (its square "
                            "underflows to 0)")
        out[n] = v
    if family == "uniform" and not out["lower"] < out["upper"]:
        raise SpecError(f"uniform: lower must be < upper, got lower={format_number(out['lower'])}, "
                        f"upper={format_number(out['upper'])}")
    return out


def _check_param_name(name: str) -> str:
    if name in PARAM_NAMES or _BETA_RE.match(name) or _ALPHA_RE.match(name):
        return name
    close = difflib.get_close_matches(name, PARAM_NAMES, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise SpecError(f"unknown parameter '{name}'{hint}; priors can be given for "
                    f"{', '.join(PARAM_NAMES)} and beta[NAME]", key=name)


def assign_prior(param: str, prior: Prior) -> Prior:
    """Check that ``prior`` suits parameter ``param`` and return it with its target set.

    A variance prior (inverse_gamma, log_normal, log_t) given for ``tau`` is accepted and means the
    prior on ``tau2``; likewise for ``sigma_cluster`` / ``sigma_effect``.

    Raises
    ------
    SpecError
        Naming ``param`` when the family does not fit it (a half-family for ``mu``, a normal for
        ``tau``, a lower bound < 0 for a standard deviation, ...).
    """
    _check_param_name(param)
    is_location = param in ("mu", "beta") or param.startswith("beta[") or bool(_ALPHA_RE.match(param))
    if prior.family == "flat":
        if not (is_location or param == "tau"):
            raise SpecError(f"flat() is allowed for {', '.join(FLAT_PARAMS)} and beta[NAME] only, not "
                            f"'{param}'", key=param)
        return dataclasses.replace(prior, target=param)
    kind = prior.kind
    if is_location:
        if kind == "variance" or (kind == "positive" and prior.family != "uniform"):
            raise SpecError(f"{prior.family} is a prior for a positive quantity; '{param}' is a real "
                            "parameter: use normal, student_t or uniform", key=param)
        target = param
    elif param == "tau2":
        if kind != "variance":
            raise SpecError(f"tau2 takes inverse_gamma, log_normal or log_t; state {prior.family} on "
                            "the standard deviation as tau = ...", key=param)
        target = "tau2"
    else:  # tau, sigma_cluster, sigma_effect, nu
        if prior.family == "uniform" and prior.params["lower"] < 0:
            raise SpecError(f"'{param}' is positive: uniform lower bound must be >= 0, got "
                            f"{format_number(prior.params['lower'])}", key=param)
        if kind == "real":
            raise SpecError(f"'{param}' is positive: {prior.family} puts mass below 0; use half_normal, "
                            "half_cauchy, half_student_t, exponential or uniform", key=param)
        if kind == "variance":
            if param == "nu":
                raise SpecError(f"{prior.family} is a variance prior; 'nu' takes a positive-family prior",
                                key=param)
            target = param + "2"
        else:
            target = param
    return dataclasses.replace(prior, target=target)




def coefficient_priors(priors: Mapping[str, Prior], coef_names: Sequence[str]) -> list[Prior]:
    """The prior of each regression coefficient, by one rule used everywhere.

    The intercept takes ``mu`` (the mean effect at the reference level), a coefficient ``NAME``
    takes ``beta[NAME]`` if given, else ``beta``.

    Parameters
    ----------
    priors : mapping
        Resolved priors (e.g. :meth:`bayes_se.spec.ModelSpec.resolved_priors`): ``mu``, ``beta``
        and any ``beta[NAME]``.
    coef_names : sequence of str
        Names of the design's columns (``intercept``, ``guided[yes]``, ...).

    Returns
    -------
    list of Prior

    Raises
    ------
    SpecError
        A ``beta[NAME]`` names no coefficient of the design.
    """
    names = list(coef_names)
    for key in priors:
        if key.startswith("beta[") and key[5:-1] not in names:
            raise SpecError(f"no coefficient named '{key[5:-1]}'; the design has {', '.join(names)}",
                            key=f"priors.{key}")
    return [priors[f"beta[{n}]"] if f"beta[{n}]" in priors
            else (priors["mu"] if n == "intercept" else priors["beta"]) for n in names]


