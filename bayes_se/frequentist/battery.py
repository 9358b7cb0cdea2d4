"""The frequentist battery of small-study-effect and publication-bias analyses, one row per method.

Rows: the unadjusted model; Egger's regression test (metafor ``regtest``, limit estimate and the
test of the ``sei`` slope); Begg's rank correlation test (``ranktest``); trim-and-fill
(``trimfill``, L0); PET, PEESE and PET-PEESE (:mod:`.petpeese`); the three-parameter selection model
(:func:`.selection.selmodel`, ``type="stepfun"``, ``steps=0.025``, one-sided). ``estimate`` is the
effect each method reports (corrected where it corrects), ``pval`` its test of no effect, and
``bias_stat``/``bias_pval`` the method's test of small-study effects or selection.

References
----------
Egger et al. (1997); Begg & Mazumdar (1994); Duval & Tweedie (2000); Stanley & Doucouliagos (2014);
Vevea & Hedges (1995) (see the modules of each method).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bayes_se.errors import BayesSEError, SpecError
from bayes_se.frequentist.common import json_ready

__all__ = ["bias_battery", "BATTERY_COLUMNS"]

#: Columns of :func:`bias_battery`'s table.
BATTERY_COLUMNS = ("method", "estimate", "se", "ci_lower", "ci_upper", "pval", "bias_test", "bias_stat",
                   "bias_pval", "note")


def _row(method, estimate=math.nan, se=math.nan, lo=math.nan, hi=math.nan, pval=math.nan, bias_test="",
         bias_stat=math.nan, bias_pval=math.nan, note=""):
    return dict(zip(BATTERY_COLUMNS, (method, estimate, se, lo, hi, pval, bias_test, bias_stat, bias_pval, note)))


def bias_battery(res, steps=(0.025,), alpha: float = 0.10, as_dict: bool = False):
    """Run every frequentist small-study-effect / publication-bias method on one model.

    Parameters
    ----------
    res : RMAResult
        The unadjusted model without moderators.
    steps : sequence of float, default (0.025,)
        Steps of the selection model (one-sided p-values; ``0.025`` = the three-parameter model).
    alpha : float, default 0.10
        Level of PET's two-sided test in PET-PEESE.
    as_dict : bool, default False
        Return the JSON-ready form ``{"k", "method", "level", "tests": [row, ...]}`` instead.

    Returns
    -------
    pandas.DataFrame or dict
        One row per method, columns :data:`BATTERY_COLUMNS`. A method that cannot be fitted (e.g.
        a selection-model interval without p-values) has NaN numbers and the reason in ``note``.

    References
    ----------
    See the module docstring.
    """
    from bayes_se.frequentist.bias import ranktest, regtest, trimfill
    from bayes_se.frequentist.petpeese import peese, pet, pet_peese
    from bayes_se.frequentist.selection import selmodel

    if not getattr(res, "int_only", False):
        raise SpecError("the bias battery needs a model without moderators", key="mods")
    rows = [_row("Unadjusted model", res.beta[0], res.se[0], res.ci_lower[0], res.ci_upper[0], res.pval[0],
                 note=f"{res.method}, k = {res.k}")]
    stat_name = "t" if res.test == "knha" else "z"

    eg = regtest(res)
    rows.append(_row("Egger regression test", eg.limit_estimate, math.nan, eg.limit_ci_lower, eg.limit_ci_upper,
                     math.nan, f"sei slope ({eg.stat_type})", eg.stat, eg.pval, "estimate: limit estimate (sei -> 0)"))
    rk = ranktest(res)
    rows.append(_row("Rank correlation test", bias_test="Kendall's tau", bias_stat=rk.tau, bias_pval=rk.pval))
    tf = trimfill(res)
    f = tf.fit
    rows.append(_row("Trim-and-fill", f.beta[0], f.se[0], f.ci_lower[0], f.ci_upper[0], f.pval[0],
                     "k0 (L0)", float(tf.k0), math.nan, f"{tf.k0} studies filled on the {tf.side}"))
    fits = {}
    for kind, fn in (("PET", pet), ("PEESE", peese)):
        r = fits[kind] = fn(res)
        rows.append(_row(kind, r.estimate, r.se, r.ci_lower, r.ci_upper, r.pval,
                         f"{'sei' if kind == 'PET' else 'vi'} slope ({stat_name})", r.slope_stat, r.slope_pval))
    pp = pet_peese(res, alpha=alpha)
    rows.append(_row("PET-PEESE", pp.estimate, pp.se, pp.ci_lower, pp.ci_upper, pp.pval,
                     f"PET intercept ({stat_name})", fits["PET"].stat,
                     pp.pet_pval, f"{pp.chosen} chosen (PET intercept p {'<' if pp.chosen == 'PEESE' else '>='} {alpha})"))
    steps = tuple(np.atleast_1d(np.asarray(steps, float)))
    label = "Selection model (3PSM)" if steps == (0.025,) else "Selection model (step function)"
    try:
        sm = selmodel(res, type="stepfun", steps=list(steps), alternative="greater")
        rows.append(_row(label, sm.estimate, sm.se, sm.ci_lower, sm.ci_upper, sm.pval, f"LRT (df = {sm.LRTdf})",
                         sm.LRT, sm.LRTp, "; ".join([f"steps {', '.join(f'{s:g}' for s in sm.steps)}"]
                                                    + list(sm.warnings))))
    except BayesSEError as exc:
        rows.append(_row(label, note=f"not fitted: {exc}"))
    table = pd.DataFrame(rows, columns=list(BATTERY_COLUMNS))
    if as_dict:
        return json_ready({"k": int(res.k), "method": res.method, "level": res.level,
                           "tests": [json_ready(r) for r in table.to_dict(orient="records")]})
    return table
