"""Bayesian versus frequentist: one table of the same model fitted both ways, and what differs.

Model: ``y_i ~ N(x_i' beta + u_i, v_i)``, ``u_i ~ N(0, tau^2)``. Rows of the table: the Bayesian
posterior (median and central credible interval), and :func:`bayes_se.frequentist.rma` fits with
the DerSimonian-Laird and REML estimators of tau^2 (Wald z intervals), and REML with the
Knapp-Hartung t intervals. Frequentist tau intervals are the Q-profile intervals
(:meth:`RMAResult.confint_tau2`, Viechtbauer 2007); prediction intervals are metafor's
``predict`` (``estimate +/- crit * sqrt(se^2 + tau^2)``).

When do the two "differ materially"? (the thresholds of :func:`comparison_notes`)

* an interval for a coefficient is more than ``WIDTH_RATIO`` (20%) wider or narrower than REML's
  z-interval (Bayesian vs REML; Knapp-Hartung vs REML);
* a point estimate of a coefficient differs from REML's by more than ``ESTIMATE_SD_FRACTION``
  (a quarter) of its posterior SD -- a quarter SD moves a 95% interval by about 1/8 of its width;
* the Bayesian and REML estimates of tau differ by more than ``TAU_RELATIVE`` (20%) of the larger
  one (with fewer than ``SMALL_K`` studies the prior is named as the likely cause);
* DL or REML put tau at the boundary 0;
* DL and REML estimates of tau differ by more than ``TAU_RELATIVE``;
* one interval for a coefficient excludes 0 and the other does not (the conclusions differ).

References
----------
DerSimonian R, Laird N (1986). Meta-analysis in clinical trials. Control Clin Trials 7:177-188.
Knapp G, Hartung J (2003). Improved tests for a random effects meta-regression with a single
covariate. Stat Med 22:2693-2710.
Viechtbauer W (2007). Confidence intervals for the amount of heterogeneity in meta-analysis. Stat
Med 26:37-52.
Higgins JPT, Thompson SG, Spiegelhalter DJ (2009). A re-evaluation of random-effects
meta-analysis. J R Stat Soc A 172:137-159 (prediction intervals; Bayesian propagation of tau).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from bayes_se.errors import SpecError
from bayes_se.fits import interval_columns
from bayes_se.frequentist.rma import rma

__all__ = ["ComparisonResult", "compare_frequentist", "comparison_notes", "bayes_label"]

WIDTH_RATIO = 1.2  # intervals differ materially when one is >20% wider than the other
ESTIMATE_SD_FRACTION = 0.25  # point estimates differ materially beyond 1/4 posterior SD
TAU_RELATIVE = 0.2  # tau estimates differ materially beyond 20% of the larger one
SMALL_K = 10  # below this many studies the tau prior carries much of the weight (Chung et al. 2013)
FREQ_METHODS = ("DL", "REML", "REML + Knapp-Hartung")


def bayes_label(level: float) -> str:
    """The Bayesian row's name, e.g. ``Bayesian (posterior median, 95% CrI)``."""
    return f"Bayesian (posterior median, {_pct(level)} CrI)"


def _pct(level: float) -> str:
    return f"{100 * level:g}%"


@dataclasses.dataclass
class ComparisonResult:
    """The same model fitted the Bayesian way and three frequentist ways.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per method (index ``method``: the Bayesian row, ``DL``, ``REML``,
        ``REML + Knapp-Hartung``); columns ``{par}_estimate``, ``{par}_lower``, ``{par}_upper``
        for ``par`` = ``mu`` (intercept-only) or each coefficient name, then ``tau_estimate``,
        ``tau_lower``, ``tau_upper``, ``pi_lower``, ``pi_upper`` (prediction interval of a new
        study's effect; for a meta-regression at moderators 0).
    notes : list of str
        Plain-language sentences where the methods differ materially.
    freq : dict
        Method name -> :class:`~bayes_se.frequentist.rma.RMAResult`.
    posterior_sd : dict
        Parameter -> posterior SD (for the thresholds).
    level : float
    k : int
    """

    table: pd.DataFrame
    notes: list
    freq: dict
    posterior_sd: dict
    level: float = 0.95
    k: int = 0

    def tidy(self) -> pd.DataFrame:
        """Long form: columns ``method``, ``parameter``, ``estimate``, ``lower``, ``upper``."""
        rows = []
        for method, row in self.table.iterrows():
            for col in row.index:
                par, stat = col.rsplit("_", 1)
                rows.append((method, par, stat, row[col]))
        long = pd.DataFrame(rows, columns=["method", "parameter", "stat", "value"])
        out = long.pivot_table(index=["method", "parameter"], columns="stat", values="value", sort=False, dropna=False)
        return out.reindex(columns=["estimate", "lower", "upper"]).reset_index()


# ---------------------------------------------------------------------------------------------
def as_fit(fit):
    """A :class:`bayes_se.fits.Fit` from a fit or an :class:`~bayes_se.exact.ExactPosterior`."""
    from bayes_se.exact import ExactPosterior
    from bayes_se.exact_fit import ExactFit
    from bayes_se.fits import Fit

    if isinstance(fit, Fit):
        return fit
    if isinstance(fit, ExactPosterior):
        return ExactFit.from_posterior(fit)
    raise SpecError(f"expected a fit (bayes_se.fit) or an ExactPosterior, got {type(fit).__name__}", key="fit")


def _bayes_row(fit, level):
    """(row dict, posterior SDs, coefficient names) of a two-level fit of any engine: posterior
    medians and central ``level`` intervals of mu (or each beta) and tau, and the prediction
    interval of a new study's effect (``pred``)."""
    table = fit.summary(level=level, theta=False, smallest_effect=None)
    lo_col, _, hi_col = interval_columns(level, "central")
    if "tau" not in table.index:
        raise SpecError("the comparison needs a two-level model with one tau", key="fit")
    pars = [p for p in table.index if p == "mu" or p.startswith("beta[")]
    row, sd = {}, {}
    for par in pars + ["tau"]:
        name = _coef_name(par)
        r = table.loc[par]
        row[f"{name}_estimate"], row[f"{name}_lower"], row[f"{name}_upper"] = (
            float(r["q50"]), float(r[lo_col]), float(r[hi_col]))
        sd[name] = float(r["sd"])
    if "pred" in table.index:
        row["pi_lower"], row["pi_upper"] = float(table.loc["pred", lo_col]), float(table.loc["pred", hi_col])
    else:
        row["pi_lower"] = row["pi_upper"] = math.nan
    names = [_coef_name(p) for p in pars]
    return row, sd, names


def _coef_name(par: str) -> str:
    return par[5:-1] if par.startswith("beta[") else par


def _freq_row(res, names):
    row = {}
    if res.int_only:
        labels = ["mu"]
    else:
        labels = list(res.coef_names)
    if labels != names:
        raise SpecError(f"the Bayesian fit has coefficients {names} but the frequentist model {labels}; "
                        "pass the same mods", key="mods")
    for j, name in enumerate(labels):
        row[f"{name}_estimate"] = float(res.beta[j])
        row[f"{name}_lower"] = float(res.ci_lower[j])
        row[f"{name}_upper"] = float(res.ci_upper[j])
    ci = res.confint_tau2("QP").loc["tau"]
    row["tau_estimate"], row["tau_lower"], row["tau_upper"] = float(res.tau), float(ci.ci_lower), float(ci.ci_upper)
    if res.int_only:
        pr = res.predict().iloc[0]
    else:
        pr = res.predict(newmods=np.zeros(res.p - int(res.intercept))).iloc[0]
    row["pi_lower"], row["pi_upper"] = float(pr.pi_lower), float(pr.pi_upper)
    return row


def compare_frequentist(fit, data, *, mods: str | None = None, level: float = 0.95,
                        tau_prior: str | None = None) -> ComparisonResult:
    """Tabulate a Bayesian fit next to DL, REML and REML + Knapp-Hartung fits of the same model.

    ``y_i ~ N(x_i' beta + u_i, v_i)``, ``u_i ~ N(0, tau^2)``; frequentist fits by
    :func:`bayes_se.frequentist.rma` (metafor 3.8-1 ``rma.uni``).

    Parameters
    ----------
    fit : Fit (any engine) or ExactPosterior
        The Bayesian fit of the same data and moderators (an ExactFit brings its spec's moderators
        and tau prior).
    data : EffectData
        The effects (with the moderator columns when ``mods`` is given).
    mods : str, optional
        The moderator formula of ``fit``.
    level : float
        Level of every interval.
    tau_prior : str, optional
        Text of the tau prior for the notes (default: the fit's settings, when it has them).

    Returns
    -------
    ComparisonResult

    References
    ----------
    Higgins JPT, Thompson SG, Spiegelhalter DJ (2009). J R Stat Soc A 172:137-159.
    """
    if not 0.0 < float(level) < 1.0:
        raise SpecError(f"level must lie strictly between 0 and 1, got {level}", key="level")
    fit = as_fit(fit)
    mods = fit.settings.get("mods") if mods is None else mods
    if tau_prior is None and "tau" in fit.priors:
        tau_prior = str(fit.priors["tau"])
    brow, sd, names = _bayes_row(fit, level)
    freq = {
        "DL": rma(data, mods=mods, method="DL", level=level),
        "REML": rma(data, mods=mods, method="REML", level=level),
        "REML + Knapp-Hartung": rma(data, mods=mods, method="REML", test="knha", level=level),
    }
    rows = {bayes_label(level): brow}
    rows.update({m: _freq_row(r, names) for m, r in freq.items()})
    cols = [f"{n}_{s}" for n in names for s in ("estimate", "lower", "upper")]
    cols += ["tau_estimate", "tau_lower", "tau_upper", "pi_lower", "pi_upper"]
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=cols).astype(float)
    table.index.name = "method"
    k = int(freq["REML"].k)
    notes = comparison_notes(table, k=k, p=int(freq["REML"].p), posterior_sd=sd, level=level, tau_prior=tau_prior)
    return ComparisonResult(table=table, notes=notes, freq=freq, posterior_sd=sd, level=float(level), k=k)


# ---------------------------------------------------------------------------------------------
def _f(x: float) -> str:
    return f"{x:.3g}"


def comparison_notes(table: pd.DataFrame, *, k: int, p: int = 1, posterior_sd: dict, level: float = 0.95,
                     tau_prior: str | None = None) -> list[str]:
    """Plain-language sentences on where the methods of a comparison table differ materially.

    Parameters
    ----------
    table : pandas.DataFrame
        As :attr:`ComparisonResult.table` (first row Bayesian, then ``DL``, ``REML``,
        ``REML + Knapp-Hartung``).
    k, p : int
        Number of studies and of coefficients.
    posterior_sd : dict
        Posterior SD of each coefficient (by column prefix) and of ``tau``.
    level : float
    tau_prior : str, optional
        Named in the small-k note.

    Returns
    -------
    list of str
        Empty when nothing differs beyond the thresholds in the module docstring.
    """
    bayes, reml, kh, dl = table.iloc[0], table.loc["REML"], table.loc["REML + Knapp-Hartung"], table.loc["DL"]
    pct = _pct(level)
    coefs = [c[:-len("_estimate")] for c in table.columns if c.endswith("_estimate") and c != "tau_estimate"]
    notes = []
    for c in coefs:
        label = "mu" if c == "mu" else f"the coefficient '{c}'"
        width = {m: table.loc[m, f"{c}_upper"] - table.loc[m, f"{c}_lower"] for m in table.index}
        wb, wr, wk = width[table.index[0]], width["REML"], width["REML + Knapp-Hartung"]
        if wb > WIDTH_RATIO * wr:
            notes.append(f"The Bayesian {pct} interval for {label} is {100 * (wb / wr - 1):.0f}% wider than REML's "
                         f"z-interval, because it propagates the uncertainty in tau (k = {k}).")
        elif wb * WIDTH_RATIO < wr:
            notes.append(f"The Bayesian {pct} interval for {label} is {100 * (1 - wb / wr):.0f}% narrower than "
                         f"REML's z-interval: the priors add information the {k} studies lack.")
        if wk > WIDTH_RATIO * wr:
            notes.append(f"The Knapp-Hartung interval for {label} is {100 * (wk / wr - 1):.0f}% wider than the "
                         f"z-interval: it uses a t distribution with k - p = {k - p} degrees of freedom and "
                         "rescales the variance by the observed scatter of the studies.")
        elif wk * WIDTH_RATIO < wr:
            notes.append(f"The Knapp-Hartung interval for {label} is {100 * (1 - wk / wr):.0f}% narrower than the "
                         "z-interval: the studies scatter less than their variances and tau^2 imply.")
        sd = posterior_sd.get(c, math.nan)
        diff = bayes[f"{c}_estimate"] - reml[f"{c}_estimate"]
        if math.isfinite(sd) and abs(diff) > ESTIMATE_SD_FRACTION * sd:
            notes.append(f"The Bayesian estimate of {label} ({_f(bayes[f'{c}_estimate'])}) differs from REML's "
                         f"({_f(reml[f'{c}_estimate'])}) by {abs(diff) / sd:.2f} posterior SDs: the prior pulls it, "
                         "and the posterior averages over tau instead of plugging in one estimate.")
        b0 = bayes[f"{c}_lower"] > 0 or bayes[f"{c}_upper"] < 0
        r0 = reml[f"{c}_lower"] > 0 or reml[f"{c}_upper"] < 0
        if b0 != r0:
            which, other = ("Bayesian", "REML") if b0 else ("REML", "Bayesian")
            notes.append(f"The conclusions differ: the {which} {pct} interval for {label} excludes 0, the {other} "
                         "interval does not.")
    tb, tr, td = bayes["tau_estimate"], reml["tau_estimate"], dl["tau_estimate"]
    zero = [m for m, t in (("DL", td), ("REML", tr)) if t == 0.0]
    if zero:
        notes.append(f"{' and '.join(zero)} estimate{'s' if len(zero) == 1 else ''} tau = 0, a boundary value; the "
                     f"posterior median of tau is {_f(tb)}, so the Bayesian intervals keep some between-study "
                     "heterogeneity that the frequentist z-intervals ignore.")
    elif abs(tb - tr) > TAU_RELATIVE * max(tb, tr):
        if k < SMALL_K:
            prior = f" ({tau_prior})" if tau_prior else ""
            notes.append(f"With only k = {k} studies the Bayesian estimate of tau ({_f(tb)}) is pulled by its "
                         f"prior{prior}; REML estimates {_f(tr)}.")
        else:
            notes.append(f"The posterior median of tau ({_f(tb)}) differs from REML's estimate ({_f(tr)}) by more "
                         f"than {100 * TAU_RELATIVE:.0f}%: REML reports the mode of a restricted likelihood, the "
                         "posterior of tau is skewed, and the prior shapes it.")
    if not zero and abs(td - tr) > TAU_RELATIVE * max(td, tr):
        notes.append(f"DL and REML disagree on tau ({_f(td)} vs {_f(tr)}): DL is a moment estimator, REML a "
                     "likelihood estimator; with few or unequal studies they can differ widely.")
    return notes
