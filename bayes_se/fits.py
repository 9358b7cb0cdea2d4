"""The one interface of every Bayesian fit, whatever engine made it.

:class:`Fit` is the base of :class:`bayes_se.exact_fit.ExactFit` (quadrature over tau),
:class:`bayes_se.results.BayesianFit` (NUTS) and :class:`bayes_se.mediation.MediationFit`
(the MASEM path model). Like metafor's ``rma`` object, a fit answers the same questions whatever
produced it:

* ``fit.summary(level=None, interval="central" | "hdi")``: a DataFrame, one row per parameter
  (``mean, sd, q2.5, q50, q97.5`` at 95%; ``hdi2.5, q50, hdi97.5`` for highest-density intervals),
  then the engine's own columns (ESS and R-hat for MCMC), then ``P(>s)`` and ``P(<-s)`` for the
  smallest effect of interest ``s``;
* ``fit.print_summary()`` returns the text (``str(fit)`` is the same); ``_repr_html_`` for notebooks;
* ``fit.prob_greater(x)``: a Series, P(parameter > x) for each location parameter;
* ``fit.priors`` (resolved :class:`~bayes_se.priors.Prior` objects) and ``fit.settings`` (what ran);
* ``fit.idata``: an ArviZ InferenceData for every engine (exact fits: exact iid draws), with the
  observed data and its replicates sharing the name ``y`` so that ``az.plot_ppc(fit.idata)`` works;
* ``fit.to_netcdf(path)`` and :func:`bayes_se.api.load_fit` back (the stored data hash is checked);
* ``fit.plot_forest()``, ``plot_densities()``, ``plot_funnel()``, ``plot_ppc()``, ...: the functions of
  :mod:`bayes_se.plots`, each taking ``ax=`` where it draws one panel and returning the figure.

Highest-density intervals are the shortest intervals holding ``level`` of the posterior (Box & Tiao
1973; bayesmeta's default, Röver 2020); central intervals cut equal tails.

References
----------
Röver, C. (2020). Bayesian random-effects meta-analysis using the bayesmeta R package. JSS 93(6).
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. JSS 36(3).
"""

from __future__ import annotations

import abc
import hashlib
import html
import json

import numpy as np

from bayes_se import defaults
from bayes_se.errors import SpecError
from bayes_se.lazy import LazyModule

pd = LazyModule("pandas")  # an exact fit's JSON needs no DataFrame (issue 17)

#: Values of ``interval`` that summaries accept.
INTERVALS = ("central", "hdi")
#: ``idata.attrs`` key naming the fit's class, read by :func:`bayes_se.api.load_fit`.
KIND_ATTR = "bayes_se_fit"


def check_level(level) -> float:
    """``level`` as a float in (0, 1), or a SpecError naming the key."""
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise SpecError(f"level must be a number in (0, 1), got {level!r}", key="level") from None
    if not 0.0 < value < 1.0:
        raise SpecError(f"level must be in (0, 1), got {level!r}", key="level")
    return value


def interval_columns(level: float, interval: str = "central") -> list[str]:
    """Column names of an interval at ``level``: ``[q2.5, q50, q97.5]`` or ``[hdi2.5, q50, hdi97.5]``."""
    if interval not in INTERVALS:
        raise SpecError(f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}", key="interval")
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    prefix = "q" if interval == "central" else "hdi"
    return [f"{prefix}{lo:g}", "q50", f"{prefix}{hi:g}"]


def probability_columns(threshold: float) -> tuple[str, str]:
    """Names of the columns ``P(x > s)`` and ``P(x < -s)``: they carry their threshold."""
    return f"P(>{threshold:g})", f"P(<{-threshold:g})"


def sample_hdi(values: np.ndarray, level: float) -> np.ndarray:
    """Shortest intervals holding ``level`` of each column of ``values`` (n_draws, n_params).

    The narrowest window of ``ceil(level * n)`` sorted draws (Chen & Shao 1999), as ArviZ's
    ``hdi`` for unimodal posteriors; vectorised over parameters.
    """
    x = np.sort(np.asarray(values, float), axis=0)
    n = x.shape[0]
    m = min(n - 1, int(np.ceil(level * n)))
    widths = x[m:] - x[: n - m]
    start = np.argmin(widths, axis=0)
    cols = np.arange(x.shape[1])
    return np.column_stack([x[start, cols], x[start + m, cols]])


def draws_table(labels, values, level: float, interval: str = "central", *, mcmc: bool = True) -> pd.DataFrame:
    """Summary rows of draws: mean, sd, interval, and (``mcmc``) bulk/tail ESS and R-hat.

    Parameters
    ----------
    labels : list of str
        Row names.
    values : ndarray
        Draws, shape (chain, draw, n_params), in the order of ``labels``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``parameter``; ESS and R-hat computed by ArviZ on all parameters at once.
    """
    values = np.asarray(values, float)
    flat = values.reshape(-1, values.shape[2])
    cols = interval_columns(level, interval)
    mid = np.quantile(flat, 0.5, axis=0)
    if interval == "central":
        a = (1 - level) / 2
        lower, upper = np.quantile(flat, [a, 1 - a], axis=0)  # type 7, as posterior::quantile2
    else:
        lower, upper = sample_hdi(flat, level).T
    table = pd.DataFrame({"mean": flat.mean(axis=0), "sd": flat.std(axis=0, ddof=1),
                          cols[0]: lower, "q50": mid, cols[2]: upper},
                         index=pd.Index(list(labels), name="parameter"))
    if mcmc:
        from bayes_se.diagnostics import convergence_stats

        # ArviZ's rank-normalised R-hat and ESS, every parameter in one pass (equal bit for bit)
        stats = convergence_stats(values)
        table["ess_bulk"] = stats["ess_bulk"]
        table["ess_tail"] = stats["ess_tail"]
        table["r_hat"] = stats["r_hat"] if values.shape[0] > 1 else np.full(values.shape[2], np.nan)
    return table


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


def data_hash(*arrays) -> str:
    """SHA-256 of numeric arrays (NaN-safe), the one data hash every fit records and checks."""
    digest = hashlib.sha256()
    for arr in arrays:
        if arr is None:
            continue
        a = np.ascontiguousarray(np.asarray(arr, dtype=float))
        digest.update(str(a.shape).encode())
        digest.update(np.nan_to_num(a, nan=-9.87654321e300).tobytes())
    return digest.hexdigest()


def _num(v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _rows_dict(table: pd.DataFrame) -> dict:
    """``{row: {column: value}}`` with :func:`_num` applied to every cell, numeric columns at once
    (a summary of 200,000 study effects took seconds cell by cell)."""
    cols = [str(c) for c in table.columns]
    if all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in table.dtypes):
        values = table.to_numpy(dtype=float)
        cells = values.astype(object)
        cells[~np.isfinite(values)] = None
        return {str(name): dict(zip(cols, row)) for name, row in zip(table.index, cells.tolist())}
    return {str(row[0]): {c: _num(v) for c, v in zip(cols, row[1:])}
            for row in table.itertuples(index=True, name=None)}


class Fit(abc.ABC):
    """Base class of every Bayesian fit (see the module docstring for the interface).

    Subclasses set ``engine`` and provide ``idata``, ``settings`` (dict), ``priors`` (dict of
    resolved Prior objects) and ``diagnostics`` (a :class:`bayes_se.diagnostics.Verdict`), and
    implement the abstract hooks :meth:`_table`, :meth:`location_names`, :meth:`_prob`, :meth:`_headline`,
    :meth:`_data_arrays` and :meth:`from_idata`.
    """

    engine: str = ""

    # -- hooks -------------------------------------------------------------------------------
    @abc.abstractmethod
    def _table(self, level: float, interval: str, theta: bool) -> pd.DataFrame:
        """Columns mean, sd, the interval (:func:`interval_columns`) and the engine's own, per row."""

    @abc.abstractmethod
    def location_names(self) -> list[str]:
        """Rows whose probabilities of effects are reported (mu, beta[...], pred, theta[...])."""

    @abc.abstractmethod
    def _prob(self, name: str, op: str, x: float) -> float:
        """Posterior probability of ``name op x`` (``op`` is ``>`` or ``<``)."""

    def _probs(self, names, events) -> list:
        """For each ``(op, x)`` of ``events``, :meth:`_prob` of each of ``names`` (NaN for rows that
        are not locations), as arrays; an engine may override it to compute many rows in one pass."""
        locs = set(self.location_names())
        return [np.array([self._prob(n, op, x) if n in locs else np.nan for n in names], dtype=float)
                for op, x in events]

    @abc.abstractmethod
    def _headline(self) -> str:
        """The first line of :meth:`print_summary`: model, engine, k."""

    def _footer(self) -> list[str]:
        return []

    @abc.abstractmethod
    def _data_arrays(self) -> list:
        """The numbers the fit was made from, in the order :func:`data_hash` reads them."""

    @classmethod
    @abc.abstractmethod
    def from_idata(cls, idata) -> "Fit":
        """The fit a :meth:`to_netcdf` file holds (read by :func:`bayes_se.api.load_fit`)."""

    def posterior_density(self, name: str, x):
        """Exact posterior density of ``name`` at ``x`` where the engine knows it, else None (plots
        then smooth the draws)."""
        return None

    # -- settings ----------------------------------------------------------------------------
    @property
    def level(self) -> float:
        """The credible level of summaries and plots (the spec's ``[summary] level``)."""
        return float(self.settings.get("level", defaults.LEVEL))

    @property
    def smallest_effect(self):
        """The spec's smallest effect of interest (None when not set)."""
        value = self.settings.get("smallest_effect")
        return None if value is None else float(value)

    @property
    def k(self) -> int:
        return int(self.settings.get("k", 0))

    @property
    def omitted_rows(self) -> list[int]:
        """1-based data rows left out of the fit (a missing moderator); empty when none."""
        return [int(r) for r in self.settings.get("omitted_rows") or []]

    # -- tables ------------------------------------------------------------------------------
    def summary(self, level: float | None = None, interval: str = "central", smallest_effect=None,
                theta: bool = True) -> pd.DataFrame:
        """Posterior summary, one row per parameter.

        Parameters
        ----------
        level : float, optional
            Credible level (default: the spec's, 0.95 unless set).
        interval : {"central", "hdi"}
            Equal-tailed or highest-density (shortest) intervals.
        smallest_effect : float, optional
            Adds ``P(>s)`` and ``P(<-s)`` for the location rows (default: the spec's).
        theta : bool
            Include the study effects ``theta[STUDY]``.
        """
        level = check_level(self.level if level is None else level)
        interval_columns(level, interval)  # validates interval
        table = self._table(level, interval, theta)
        s = self.smallest_effect if smallest_effect is None else float(smallest_effect)
        if s is not None:
            above, below = probability_columns(s)
            table[above], table[below] = self._probs(list(table.index), [(">", s), ("<", -s)])
        table.attrs.update(level=level, interval=interval, engine=self.engine)
        return table

    def prob_greater(self, x: float = 0.0) -> pd.Series:
        """Posterior probability that each location parameter (mu or beta[...], and pred) exceeds ``x``."""
        return pd.Series(dict(self._prob_greater_items(x)), name=f"P(>{x:g})", dtype=float)

    def _prob_greater_items(self, x: float) -> list:
        """:meth:`prob_greater` as ``[(name, probability)]`` (no pandas)."""
        names = [n for n in self.location_names() if not n.startswith("theta[")]
        return [(n, self._prob(n, ">", float(x))) for n in names]

    def prob_positive(self) -> pd.Series:
        """``prob_greater(0)``."""
        return self.prob_greater(0.0)

    def print_summary(self, level: float | None = None, interval: str = "central", smallest_effect=None,
                      theta: bool = False) -> str:
        """The summary as text (returned, not printed), with a failed fit's banner first."""
        parts = []
        if not self.diagnostics.passed:
            parts.append(self.diagnostics.banner())
        reason = self.refit_reason()
        if reason:
            parts.append(f"note: {reason}")
        parts.append(self._headline())
        priors = "; ".join(str(p) for p in self.priors.values())
        if priors:
            parts.append(f"priors: {priors}")
        table = self.summary(level=level, interval=interval, smallest_effect=smallest_effect, theta=theta)
        kind = "highest-density" if interval == "hdi" else "central"
        parts.append(f"{100 * table.attrs['level']:g}% {kind} credible intervals")
        with pd.option_context("display.width", 140, "display.max_rows", 400, "display.max_columns", 30):
            parts.append(table.round(4).to_string())
        parts += self._footer()
        parts.append(self.diagnostics_line())
        return "\n".join(parts)

    def diagnostics_line(self) -> str:
        """One line: the convergence checks and the verdict."""
        d = self.diagnostics
        if self.engine == "exact":
            return "diagnostics: exact quadrature, no Markov chains (R-hat, ESS, divergences do not apply) -> passed"
        return (f"diagnostics: max R-hat {d.max_r_hat:.3f}, min bulk ESS {d.min_ess_bulk:.0f}, "
                f"min tail ESS {d.min_ess_tail:.0f}, divergences {d.divergences}, "
                f"min E-BFMI {d.min_bfmi:.2f} -> {'passed' if d.passed else 'FAILED'}")

    def __str__(self) -> str:
        return self.print_summary()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} engine={self.engine!r} k={self.k} passed={self.diagnostics.passed}>"

    def _repr_html_(self) -> str:
        table = self.summary(theta=False)
        banner = ""
        if not self.diagnostics.passed:
            items = "".join(f"<li>{html.escape(p)}</li>" for p in self.diagnostics.problems)
            banner = (f"<p style='color:#b00;font-weight:bold'>DIAGNOSTICS FAILED: do not trust these "
                      f"estimates</p><ul>{items}</ul>")
        return (f"<div>{banner}<p>{html.escape(self._headline())}</p>"
                f"{table.round(4).to_html(escape=True)}<p>{html.escape(self.diagnostics_line())}</p></div>")

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self, level: float | None = None, interval: str = "central") -> dict:
        """JSON-ready: ``engine``, ``k``, ``parameters`` (row -> statistics), ``diagnostics``,
        ``priors``, ``settings`` and ``prob_greater`` at 0 and at the smallest effect."""
        level, params = self._summary_dict(level, interval)
        diagnostics = self.diagnostics.to_dict()
        if self.engine == "exact":
            diagnostics["note"] = "exact quadrature: no Monte Carlo error, no sampler diagnostics"
        out = {"engine": self.engine, "k": self.k, "level": level, "interval": interval,
               "parameters": params, "diagnostics": diagnostics,
               "priors": {k: str(v) for k, v in self.priors.items()},
               "settings": self.settings}
        out["omitted_rows"] = self.omitted_rows
        thresholds = [0.0] + ([self.smallest_effect] if self.smallest_effect else [])
        probs = {f"{t:g}": {k: _num(v) for k, v in self._prob_greater_items(t)} for t in thresholds}
        if any(probs.values()):
            out["prob_greater"] = probs
        if self.refit_reason():
            out["refit_reason"] = self.refit_reason()
        return out

    def _summary_dict(self, level, interval) -> tuple[float, dict]:
        """The credible level and :meth:`summary` as ``{row: {column: value or None}}`` (an engine
        may override it to skip the DataFrame)."""
        table = self.summary(level=level, interval=interval)
        return table.attrs["level"], _rows_dict(table)

    def refit_reason(self) -> str | None:
        """Why the sampler refitted (e.g. divergences at the first target_accept), or None."""
        if self.engine == "exact":  # no sampler; and building idata would import ArviZ
            return None
        reason = self.idata.attrs.get("refit_reason")
        return str(reason) if reason else None

    def data_sha256(self) -> str:
        """The hash of the numbers this fit was made from (:func:`data_hash`)."""
        return data_hash(*self._data_arrays())

    def to_netcdf(self, path) -> str:
        """Write ``idata`` with the fit's kind, settings, priors, data hash and package versions in
        its attributes; :func:`bayes_se.api.load_fit` reads it back."""
        from bayes_se.outputs import package_versions

        idata = self.idata
        attrs = {KIND_ATTR: self.engine,
                 "settings": json.dumps(self.settings, sort_keys=True, default=str),
                 "priors": json.dumps({k: {"family": p.family, "params": dict(p.params), "target": p.target}
                                       for k, p in self.priors.items()}),
                 # the numbers fitted (load_fit checks them), and the table they came from (provenance.json's)
                 "fit_data_sha256": self.data_sha256(),
                 "data_sha256": self.settings.get("data_sha256") or self.data_sha256()}
        attrs.update({f"{name}_version": version for name, version in package_versions().items() if version})
        if "seed" in self.settings:
            attrs["seed"] = int(self.settings["seed"])
        if self.settings.get("spec_toml"):
            attrs["spec_toml"] = str(self.settings["spec_toml"])
        idata.attrs.update(attrs)
        idata.to_netcdf(str(path))
        return str(path)

    # -- plots: methods made below from PLOT_METHODS (thin wrappers over bayes_se.plots) --------


#: Fit method -> (function of bayes_se.plots it calls, what it draws).
PLOT_METHODS = {
    "plot_forest": ("plot_forest", "Forest plot"),
    "plot_densities": ("plot_densities", "Prior and posterior densities"),
    "plot_funnel": ("plot_funnel", "Contour-enhanced funnel plot"),
    "plot_ppc": ("plot_ppc_density", "Observed effects against posterior-predictive replicates"),
    "plot_ppc_stats": ("plot_ppc_stats", "Posterior-predictive test statistics"),
    "plot_loo_pit": ("plot_loo_pit", "LOO probability integral transform"),
    "plot_pareto_k": ("plot_pareto_k", "Pareto k of each study"),
    "plot_trace": ("plot_trace", "Trace plots"),
    "plot_rank": ("plot_rank", "Rank plots"),
}


def _plot_method(function: str, what: str):
    def method(self, **kwargs):
        from bayes_se import plots

        return getattr(plots, function)(self, **kwargs)

    method.__doc__ = f"{what} (:func:`bayes_se.plots.{function}`); keyword arguments pass through."
    return method


for _name, (_function, _what) in PLOT_METHODS.items():
    setattr(Fit, _name, _plot_method(_function, _what))


def stored_settings(idata) -> dict:
    """The settings a fit wrote into ``idata.attrs``."""
    return json.loads(idata.attrs.get("settings", "{}"))


def stored_priors(idata) -> dict:
    """The resolved priors a fit wrote into ``idata.attrs``, as Prior objects."""
    from bayes_se.priors import Prior

    return {key: Prior(d["family"], d["params"], d["target"])
            for key, d in json.loads(idata.attrs.get("priors", "{}")).items()}
