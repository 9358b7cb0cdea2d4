"""A Bayesian path-based mediation fit next to its frequentist twin, the bivariate REML model.

Model of both: ``(a_i_hat, b_i_hat) ~ N((a_i, b_i), S_i)``, ``(a_i, b_i) ~ N((a, b), G)`` with
``G`` unstructured (``tau_a``, ``tau_b``, ``rho_ab``); ``c'`` on its own. The frequentist side is
:func:`bayes_se.frequentist.mediation_paths.paths_rma` (metafor's ``rma.mv(..., struct = "UN")``
for (a, b), ``rma`` for c'; the indirect effect ``a b`` with its delta-method interval and,
beside it, the Monte Carlo interval of MacKinnon, Lockwood & Williams 2004). Rows: ``a, b,
c_prime, indirect, indirect_avg, total, tau_a, tau_b, rho_ab`` (those both fits have); columns
``bayes_estimate`` (posterior median), ``bayes_lower``, ``bayes_upper`` (central credible
interval), ``reml_estimate``, ``reml_lower``, ``reml_upper`` (Wald / delta-method interval; none
for the between-study parameters, which REML gives as points), ``reml_mc_lower``,
``reml_mc_upper`` (the indirect effect's Monte Carlo interval).

The notes use the thresholds of :mod:`bayes_se.compare`: a point estimate more than a quarter of
a posterior SD from REML's, an interval more than 20% wider or narrower, one interval excluding
0 where the other does not, a tau differing by more than 20% of the larger one, and ``rho_ab``
differing by more than 0.2.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from bayes_se.compare import ESTIMATE_SD_FRACTION, TAU_RELATIVE, WIDTH_RATIO
from bayes_se.errors import SpecError

__all__ = ["PathsComparison", "compare_paths"]

#: Rows of the comparison that carry an interval on both sides.
LOCATION_ROWS = ("a", "b", "c_prime", "indirect", "indirect_avg", "total")
#: Between-study rows (REML gives points).
SCALE_ROWS = ("tau_a", "tau_b", "rho_ab")
#: rho_ab estimates differ materially beyond this (correlations are poorly determined at small k).
RHO_GAP = 0.2
COLUMNS = ("bayes_estimate", "bayes_lower", "bayes_upper", "reml_estimate", "reml_lower", "reml_upper",
           "reml_mc_lower", "reml_mc_upper")


@dataclasses.dataclass
class PathsComparison:
    """``table`` (rows and columns of the module docstring), ``notes`` (sentences; empty when the
    two agree within the thresholds), ``freq`` (the :class:`PathsRmaResult`) and ``level``."""

    table: pd.DataFrame
    notes: list
    freq: object
    level: float


def compare_paths(fit, *, level: float = 0.95, seed: int = 0) -> PathsComparison:
    """Tabulate a :class:`~bayes_se.mediation_paths.PathMediationFit` beside ``paths_rma`` (REML)
    of the same trials (its ``data``: reported paths, and matrix-derived paths for mixed input).

    Parameters
    ----------
    fit : PathMediationFit
    level : float
        Level of every interval.
    seed : int
        Seed of the Monte Carlo interval of the indirect effect.

    Returns
    -------
    PathsComparison
    """
    from bayes_se.frequentist.mediation_paths import paths_rma

    if not 0.0 < float(level) < 1.0:
        raise SpecError(f"level must lie strictly between 0 and 1, got {level}", key="level")
    freq = paths_rma(fit.data, method="REML", level=level, seed=seed)
    q = [(1 - level) / 2, 0.5, (1 + level) / 2]
    names = fit.parameter_names()
    rows, sd = {}, {}
    for name in LOCATION_ROWS + SCALE_ROWS:
        if name not in names:
            continue
        draws = fit.draws(name)
        lo, med, hi = np.quantile(draws, q)
        sd[name] = float(np.std(draws))
        row = dict.fromkeys(COLUMNS, np.nan)
        row.update(bayes_estimate=med, bayes_lower=lo, bayes_upper=hi)
        if name in freq.effects.index:
            e = freq.effects.loc[name]
            row.update(reml_estimate=e["estimate"], reml_lower=e["ci_lower"], reml_upper=e["ci_upper"],
                       reml_mc_lower=e["mc_lower"], reml_mc_upper=e["mc_upper"])
        elif name in SCALE_ROWS:
            row["reml_estimate"] = {"tau_a": freq.tau_a, "tau_b": freq.tau_b, "rho_ab": freq.rho_ab}[name]
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(COLUMNS)).astype(float)
    table.index.name = "parameter"
    return PathsComparison(table=table, notes=_notes(table, sd, level, freq.k), freq=freq, level=float(level))


def _notes(table: pd.DataFrame, sd: dict, level: float, k: int) -> list[str]:
    pct = f"{100 * level:g}%"
    notes = []
    for name in (n for n in LOCATION_ROWS if n in table.index):
        r = table.loc[name]
        if not np.isfinite(r["reml_estimate"]):
            continue
        gap = abs(r["bayes_estimate"] - r["reml_estimate"])
        if gap > ESTIMATE_SD_FRACTION * sd[name]:
            notes.append(f"{name}: the posterior median ({r['bayes_estimate']:.3g}) and REML's estimate "
                         f"({r['reml_estimate']:.3g}) differ by {gap / sd[name]:.2f} posterior SDs.")
        wb, wr = r["bayes_upper"] - r["bayes_lower"], r["reml_upper"] - r["reml_lower"]
        if wb > WIDTH_RATIO * wr:
            notes.append(f"{name}: the Bayesian {pct} interval is {100 * (wb / wr - 1):.0f}% wider than REML's "
                         f"(it propagates the uncertainty in the between-study covariance; k = {k}).")
        elif wb * WIDTH_RATIO < wr:
            notes.append(f"{name}: the Bayesian {pct} interval is {100 * (1 - wb / wr):.0f}% narrower than "
                         f"REML's (the priors carry information; k = {k}).")
        bayes_zero = r["bayes_lower"] <= 0 <= r["bayes_upper"]
        reml_zero = r["reml_lower"] <= 0 <= r["reml_upper"]
        if bayes_zero != reml_zero:
            which = "Bayesian" if not bayes_zero else "REML"
            notes.append(f"{name}: the conclusions differ: only the {which} {pct} interval excludes 0.")
    for name in ("tau_a", "tau_b"):
        if name not in table.index:
            continue
        b, f = table.loc[name, "bayes_estimate"], table.loc[name, "reml_estimate"]
        if f == 0:
            notes.append(f"{name}: REML puts it at the boundary 0; the posterior median is {b:.3g}.")
        elif abs(b - f) > TAU_RELATIVE * max(b, f):
            notes.append(f"{name}: the posterior median ({b:.3g}) and REML's estimate ({f:.3g}) differ by more "
                         f"than {100 * TAU_RELATIVE:.0f}% (with k = {k} the prior on it carries weight).")
    if "rho_ab" in table.index:
        b, f = table.loc["rho_ab", "bayes_estimate"], table.loc["rho_ab", "reml_estimate"]
        if abs(b - f) > RHO_GAP:
            notes.append(f"rho_ab: the posterior median ({b:.2f}) and REML's estimate ({f:.2f}) differ by more "
                         f"than {RHO_GAP:g} (the LKJ prior on it pulls towards 0; REML's lies on the boundary "
                         "when it is +-1).")
    return notes
