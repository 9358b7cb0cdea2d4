"""A Bayesian location-scale fit next to metafor's ``rma(yi, vi, mods=, scale=)`` (REML and ML).

Model: ``y_i ~ N(x_i' beta, v_i + tau_i^2)``. The Bayesian fits use ``log tau_i = z_i' alpha``
(brms's ``sigma`` link); metafor's ``alpha`` is on ``log tau_i^2 = z_i' alpha``, twice ours, so its
estimates and Wald intervals are halved here to sit on the Bayesian scale (an interval of
``log tau^2`` halved is exactly the interval of ``log tau``).

References
----------
Viechtbauer, W., & Lopez-Lopez, J. A. (2022). Location-scale models for meta-analysis. *Research
Synthesis Methods*, 13(6), 697-715.
"""

from __future__ import annotations

import dataclasses
import warnings

import pandas as pd

from bayes_se.errors import SpecError

__all__ = ["ScaleComparison", "compare_location_scale"]


@dataclasses.dataclass
class ScaleComparison:
    """``table``: one row per coefficient (``beta[NAME]`` or ``mu``, ``alpha[NAME]`` on the log tau
    scale), columns ``{method}_estimate``, ``{method}_lower``, ``{method}_upper`` for ``Bayes``
    (posterior median and credible interval), ``REML`` and ``ML``; ``notes``: sentences;
    ``results``: the frequentist results by method."""

    table: pd.DataFrame
    notes: list
    results: dict


def compare_location_scale(fit, data, *, mods: str | None, scale: str, level: float = 0.95) -> ScaleComparison:
    """Tabulate a Bayesian location-scale ``fit`` beside ``rma(data, mods=mods, scale=scale)`` by REML and ML.

    Parameters
    ----------
    fit : Fit
        An MCMC or exact location-scale fit (rows ``mu``/``beta[NAME]`` and ``alpha[NAME]``).
    data : EffectData
        The effects and the moderator columns.
    mods, scale : str
        The location and scale formulas of ``fit``.
    level : float
        Level of every interval.
    """
    from bayes_se.frequentist import rma

    if not scale:
        raise SpecError("a location-scale comparison needs the scale formula", key="model.scale")
    table = fit.summary(level=level, theta=False)
    lo, hi = table.columns[2], table.columns[4]
    results = {}
    for method in ("REML", "ML"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rows with a missing moderator: the fit already warned
            results[method] = rma(data, mods=mods or None, scale=scale, method=method, level=level)
    first = results["REML"]
    loc_rows = ["mu"] if list(first.coef_names) == ["intercept"] and "mu" in table.index else \
        [f"beta[{c}]" for c in first.coef_names]
    rows = {}
    for j, row in enumerate(loc_rows):
        rows[row] = {"Bayes_estimate": table.loc[row, "q50"], "Bayes_lower": table.loc[row, lo],
                     "Bayes_upper": table.loc[row, hi]}
        for m, r in results.items():
            rows[row].update({f"{m}_estimate": r.beta[j], f"{m}_lower": r.ci_lower[j], f"{m}_upper": r.ci_upper[j]})
    for j, name in enumerate(first.scale_names):
        row = f"alpha[{name}]"
        rows[row] = {"Bayes_estimate": table.loc[row, "q50"], "Bayes_lower": table.loc[row, lo],
                     "Bayes_upper": table.loc[row, hi]}
        for m, r in results.items():
            rows[row].update({f"{m}_estimate": r.alpha[j] / 2, f"{m}_lower": r.ci_lower_alpha[j] / 2,
                              f"{m}_upper": r.ci_upper_alpha[j] / 2})
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "parameter"
    lrt = getattr(first, "LRT", None)
    notes = [f"metafor's alpha is on log tau^2; it is halved here to the Bayesian log tau scale "
             f"(Wald {100 * level:g}% intervals, z tests)."]
    if lrt is not None:
        notes.append(f"REML likelihood-ratio test against a constant tau^2: "
                     f"LRT = {lrt:.3f}, df = {first.LRT_df}, p = {first.LRT_p:.3g}.")
    import numpy as np

    for m, r in results.items():
        wide = [n for n, se in zip(r.scale_names, np.asarray(r.se_alpha, float)) if not se < 100.0]
        if wide:
            notes.append(f"{m}: the standard error of alpha[{', '.join(wide)}] is huge: that scale level's tau^2 "
                         "sits at its boundary 0 (as metafor reports it), so its Wald interval says nothing.")
    return ScaleComparison(table=out, notes=notes, results=results)
