"""Report sections on bias: small-study effects and publication bias, and risk of bias of the studies.

:func:`bias_blocks` builds the section "Small-study effects and publication bias": the
contour-enhanced funnel (Peters et al. 2008) with the trim-and-fill studies marked, and a table of
the frequentist battery (:func:`small_study_table`: the unadjusted random-effects estimate,
Egger's regression test with its limit estimate, the rank correlation test, trim-and-fill), to
which further rows (a selection model, PET-PEESE: any DataFrame indexed by method) and a Bayesian
model-averaged ensemble (any object with ``to_dict()``) can be added. :func:`rob_blocks` builds
the section "Risk of bias": the judgements, robvis's traffic-light and weighted summary plots and
the sensitivity of the pooled effect to risk of bias (:func:`bayes_se.risk_of_bias.rob_sensitivity`).

Blocks are those of :mod:`bayes_se.report.html`; ``b`` is the report's builder (``b.table``,
``b.figure``, ``b.draw``).

References
----------
Peters, J. L. et al. (2008). Contour-enhanced meta-analysis funnel plots help distinguish
publication bias from other causes of asymmetry. J Clin Epidemiol 61, 991-996.
Sterne, J. A. C. et al. (2011). Recommendations for examining and interpreting funnel plot asymmetry
in meta-analyses of randomised controlled trials. BMJ 343, d4002.
McGuinness, L. A. & Higgins, J. P. T. (2021). robvis. Res Synth Methods 12, 55-61.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_se.errors import BayesSEError

__all__ = ["small_study_table", "add_battery_rows", "default_battery", "default_ensemble", "bias_blocks", "ensemble_blocks", "rob_blocks",
           "BATTERY_COLUMNS"]

#: Columns of the battery table (a row leaves blank what does not apply to its method).
BATTERY_COLUMNS = ("estimate", "ci_lower", "ci_upper", "statistic", "pval", "note")
FEW_STUDIES = 10  # Sterne et al. (2011): tests for funnel asymmetry only with at least 10 studies
SHOW_ROB_TABLE = 15  # the judgements are shown as a table up to this many studies (always in tables/)


def small_study_table(res, trimfill=None) -> pd.DataFrame:
    """The frequentist battery on a fitted random-effects model (``RMAResult``).

    Rows (index ``method``): the unadjusted estimate; Egger's regression test (metafor
    ``regtest``: ``y_i = b0 + b1 sqrt(v_i) + u_i + e_i``, z test of ``b1``; the limit estimate
    ``b0`` for models without moderators); Begg & Mazumdar's rank correlation (Kendall's tau);
    and, for models without moderators, trim-and-fill (``trimfill``, or L0 run here). Columns
    :data:`BATTERY_COLUMNS`.
    """
    from bayes_se.frequentist import ranktest, regtest

    rows = {}
    j = 0
    rows[f"Random effects ({res.method}), unadjusted"] = dict(
        estimate=float(res.beta[j]), ci_lower=float(res.ci_lower[j]), ci_upper=float(res.ci_upper[j]),
        statistic=float(res.stat[j]),
        pval=float(res.pval[j]), note="" if res.int_only else f"coefficient {res.coef_names[0]}")
    eg = regtest(res)
    rows["Egger's regression test"] = dict(
        estimate=eg.limit_estimate, ci_lower=eg.limit_ci_lower, ci_upper=eg.limit_ci_upper, statistic=eg.stat,
        pval=eg.pval, note=f"{eg.stat_type} test of the sei slope; estimate: the limit as se → 0"
        if res.int_only else f"{eg.stat_type} test of the sei slope (moderators kept)")
    rk = ranktest(res)
    rows["Rank correlation (Begg & Mazumdar)"] = dict(
        estimate=np.nan, ci_lower=np.nan, ci_upper=np.nan, statistic=rk.tau, pval=rk.pval,
        note="Kendall's tau of standardized effects and variances")
    if res.int_only:
        if trimfill is None:
            from bayes_se.frequentist import trimfill as run_trimfill

            trimfill = run_trimfill(res)
        adj = trimfill.fit
        rows[f"Trim-and-fill ({trimfill.estimator})"] = dict(
            estimate=float(adj.beta[0]), ci_lower=float(adj.ci_lower[0]), ci_upper=float(adj.ci_upper[0]),
            statistic=np.nan, pval=np.nan,
            note=f"{trimfill.k0} {'study' if trimfill.k0 == 1 else 'studies'} imputed on the {trimfill.side}")
    out = pd.DataFrame.from_dict(rows, orient="index")[list(BATTERY_COLUMNS)]
    out.index.name = "method"
    return out


def add_battery_rows(table: pd.DataFrame, extra) -> pd.DataFrame:
    """``table`` with the rows of ``extra`` (a DataFrame indexed by method, or with a ``method``
    column) appended; rows of a method already in ``table`` are left out, columns are united."""
    if extra is None:
        return table
    extra = pd.DataFrame(extra)
    if "method" in extra.columns:
        extra = extra.set_index("method")
    extra.index = extra.index.map(str)
    extra.index.name = "method"
    seen = {str(m).strip().lower() for m in table.index}
    extra = extra.loc[[str(m).strip().lower() not in seen for m in extra.index]]
    if table.empty:
        return extra
    return pd.concat([table, extra], axis=0, sort=False)


def _funnel_blocks(b, res, tf, pct) -> list:
    """Trim-and-fill text and the contour-enhanced funnel with the filled studies."""
    adj = tf.fit
    text = f"Trim-and-fill (Duval & Tweedie 2000; {tf.estimator} estimator on the {res.method} model) "
    text += (f"imputes {tf.k0} {'study' if tf.k0 == 1 else 'studies'} on the {tf.side} of the funnel (open "
             "circles). " if tf.k0 else f"finds no missing studies (side examined: {tf.side}). ")
    if tf.k0:
        text += (f"The adjusted estimate is {adj.beta[0]:.3g} ({pct} CI {adj.ci_lower[0]:.3g} to "
                 f"{adj.ci_upper[0]:.3g}), against {res.beta[0]:.3g} from the observed studies. ")
    text += ("Trim-and-fill reads all funnel asymmetry as publication bias: treat it as a sensitivity check, "
             "not a corrected estimate.")
    return [("p", "Contour-enhanced funnel plot (Peters et al. 2008): shaded regions are where a study's own "
                  "two-sided test of no effect has p < 0.10, 0.05 and 0.01. Studies missing from the unshaded "
                  "(non-significant) region point to publication bias; asymmetry elsewhere points to other "
                  "small-study effects (heterogeneity, lower quality of small trials) or chance."),
            ("p", text),
            b.figure("funnel", "Contour-enhanced funnel plot with the trim-and-fill studies", "plot_funnel", res,
                     trimfill=tf)]


def default_battery(res):
    """The report's battery rows beyond Egger, rank test and trim-and-fill: PET, PEESE, PET-PEESE and
    the three-parameter selection model (:func:`bayes_se.frequentist.bias_battery`), for models
    without moderators (those methods adjust one pooled effect); None otherwise."""
    if not res.int_only:
        return None
    from bayes_se.frequentist import bias_battery

    table = bias_battery(res)
    # the report's own rows already hold the unadjusted model, Egger, the rank test and trim-and-fill
    return table[table["method"].isin(EXTRA_BATTERY_METHODS)]


#: Rows of :func:`bayes_se.frequentist.bias_battery` that the report adds to its own table.
EXTRA_BATTERY_METHODS = ("PET", "PEESE", "PET-PEESE", "Selection model (3PSM)")


def default_ensemble(seed=None, level: float = 0.95):
    """The report's Bayesian model-averaged ensemble (:func:`bayes_se.bias_ensemble`, RoBMA's
    default models and prior probabilities) as a function of the data."""
    def ensemble(data):
        from bayes_se.bias_averaging import bias_ensemble

        return bias_ensemble(data, seed=seed, level=level)

    return ensemble


def bias_blocks(b, freq, level: float, *, battery=None, ensemble=None, data=None) -> list:
    """Blocks of "Small-study effects and publication bias".

    Parameters
    ----------
    b : the report builder
    freq : ComparisonResult or None
        Its REML fit (``freq.freq["REML"]``) is tested; None (e.g. a three-level model) gives a note.
    level : float
    battery : pandas.DataFrame or callable, optional
        Further rows of the battery (a selection model, PET, PEESE, PET-PEESE, ...), indexed by
        method or with a ``method`` column, columns as :data:`BATTERY_COLUMNS` where they apply;
        or a function of the REML fit returning them (e.g. ``bias_battery``).
    ensemble : object or callable, optional
        A Bayesian model-averaged ensemble (see :func:`ensemble_blocks`), or a function of
        ``data`` returning one (e.g. ``bias_ensemble``).
    data : EffectData, optional
        The effects, for a callable ``ensemble``.
    """
    pct = f"{100 * level:g}%"
    res = getattr(freq, "freq", {}).get("REML") if freq is not None else None
    blocks = []
    table = pd.DataFrame(columns=list(BATTERY_COLUMNS))
    if res is None:
        blocks.append(("missing", "No frequentist random-effects fit of this model, so no funnel plot or funnel "
                                  "asymmetry tests (they need a two-level model)."))
    else:
        tf = None
        if res.int_only:
            from bayes_se.frequentist import trimfill

            try:
                tf = trimfill(res)
            except BayesSEError as exc:
                blocks.append(("missing", f"Trim-and-fill skipped ({exc})."))
            if tf is not None:
                blocks += _funnel_blocks(b, res, tf, pct)
        else:
            blocks.append(("missing", "The funnel plot and trim-and-fill are for models without moderators; "
                                      "Egger's test below keeps the moderators."))
        try:
            table = small_study_table(res, tf) if (tf is not None or not res.int_only) else table
        except BayesSEError as exc:
            blocks.append(("missing", f"Funnel asymmetry tests skipped ({exc})."))
        if res.k < FEW_STUDIES:
            blocks.append(("alert", f"Only {res.k} studies: tests for funnel asymmetry have too little power to "
                                    f"tell bias from chance with fewer than {FEW_STUDIES} (Sterne et al. 2011)."))
    if callable(battery):
        try:
            battery = battery(res) if res is not None else None
        except Exception as exc:  # a failing extra method is a visible note, not a failed report
            blocks.append(("missing", f"Further bias methods skipped ({type(exc).__name__}: {exc})."))
            battery = None
    table = add_battery_rows(table, battery)
    if len(table):
        blocks.append(("p", f"Tests for small-study effects and bias-adjusted estimates ({pct} confidence "
                            "intervals; pval of the test in each row: Egger's slope, the rank correlation). A "
                            "significant test says the small studies differ from the large ones, not why."))
        blocks.append(b.table("bias_battery", table, "Small-study effects: tests and adjusted estimates"))
    if callable(ensemble) and not hasattr(ensemble, "to_dict"):
        try:
            ensemble = ensemble(data)
        except Exception as exc:
            blocks.append(("missing", f"Model-averaged ensemble skipped ({type(exc).__name__}: {exc})."))
            ensemble = None
    if ensemble is not None:
        blocks += ensemble_blocks(b, ensemble)
    return blocks


def _frame(value, index_name) -> pd.DataFrame | None:
    if value is None:
        return None
    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, dict):
        if all(isinstance(v, dict) for v in value.values()):
            out = pd.DataFrame.from_dict(value, orient="index")
        else:
            out = pd.DataFrame({"value": list(value.values())}, index=list(value))
    else:
        out = pd.DataFrame(list(value))
        if "model" in out.columns:
            out = out.set_index("model")
    out.index.name = out.index.name or index_name
    return out


def ensemble_blocks(b, ensemble) -> list:
    """Blocks of a Bayesian model-averaged ensemble (RoBMA's design).

    ``ensemble.to_dict()`` gives ``mu`` and ``tau`` (``mean``, ``lower``, ``upper``),
    ``inclusion_bf`` (``effect``, ``heterogeneity``, ``bias``) and ``models`` (one row or entry
    per model: prior and posterior probability, log marginal likelihood, method). The figure of
    mu under each model is ``ensemble.plot_ensemble()`` when the object has that method, else
    ``bayes_se.plots.plot_ensemble(ensemble)``.
    """
    try:
        d = ensemble.to_dict()
    except Exception as exc:  # a broken ensemble is a visible note, not a failed report
        return [("missing", f"Model-averaged ensemble skipped ({type(exc).__name__}: {exc}).")]
    blocks = [("p", "Bayesian model averaging over effect / no effect, heterogeneity / none and the bias models "
                    "(RoBMA's design, Bartoš et al. 2023): the model-averaged posterior and inclusion Bayes "
                    "factors (posterior over prior odds of the models with the component).")]
    diag = d.get("diagnostics")
    if isinstance(diag, dict) and not diag.get("passed", True):
        blocks.append(("alert", "Some sampled models of the ensemble did not converge; their marginal "
                                "likelihoods and draws are less certain: " + "; ".join(diag.get("problems", []))))
    est = {k: d[k] for k in ("mu", "tau") if isinstance(d.get(k), dict)}
    if est:
        blocks.append(b.table("ensemble_estimates", _frame(est, "parameter"), "Model-averaged estimates"))
    bf = d.get("inclusion_bf")
    if isinstance(bf, dict):
        blocks.append(b.table("ensemble_inclusion_bf", pd.DataFrame({"inclusion BF": list(bf.values())},
                                                                    index=pd.Index(list(bf), name="component")),
                              "Inclusion Bayes factors"))
    models = _frame(d.get("models"), "model")
    if models is not None:
        blocks.append(b.table("ensemble_models", models, "Models of the ensemble"))
    method = getattr(ensemble, "plot_ensemble", None)
    caption = "mu under each model and model-averaged"
    if callable(method):
        blocks.append(b.draw("ensemble", caption, method, width="double"))
    else:
        blocks.append(b.figure("ensemble", caption, "plot_ensemble", ensemble, width="double"))
    return blocks


def rob_blocks(b, rob, data, *, spec=None, mods=None, level: float = 0.95, by=None) -> list:
    """Blocks of "Risk of bias": the judgements, the traffic-light and summary plots, and the
    sensitivity analysis (all studies, low risk only, risk of bias as moderator; frequentist and
    exact Bayesian) for a model without moderators."""
    from bayes_se.risk_of_bias import effect_judgements, rob_sensitivity, study_weights

    overall = rob.overall.value_counts().reindex(rob.levels, fill_value=0)
    counts = ", ".join(f"{n} {lv.lower()}" for lv, n in overall.items() if n)
    blocks = [("p", f"Risk of bias of {len(rob.studies)} studies assessed with {rob.tool} over {len(rob.domains)} "
                    f"domains; overall: {counts}.")]
    try:
        effect_judgements(rob, data, by)
        matched = True
    except BayesSEError as exc:
        matched = False
        blocks.append(("missing", f"The risk-of-bias table does not match the effects ({exc}); the summary plot is "
                                  "unweighted and no sensitivity analysis was run."))
    blocks.append(b.figure("rob_traffic_light", "Risk of bias per study and domain (traffic-light plot)",
                           "plot_rob_traffic_light", rob))
    weights = None
    if matched:
        try:
            weights = study_weights(rob, data, by=by)
        except BayesSEError:
            weights = None
    blocks.append(b.figure("rob_summary", "Proportion of information at each risk of bias, per domain"
                           + (" (weighted by 1/(v + tau²), REML tau²)" if weights is not None else " (unweighted)"),
                           "plot_rob_summary", rob, weights=weights, weighted=weights is not None, width="double"))
    judgements = b.table("risk_of_bias", rob.table, f"{rob.tool} judgements")
    blocks.append(judgements if len(rob.studies) <= SHOW_ROB_TABLE else
                  ("p", "Each judgement is in tables/risk_of_bias.csv (one row per study)."))
    if not matched:
        return blocks
    if mods:
        blocks.append(("missing", "The risk-of-bias sensitivity analysis is run for models without moderators."))
        return blocks
    try:
        sens = rob_sensitivity(data, rob, spec=spec, level=level, by=by)
    except BayesSEError as exc:
        try:  # e.g. a spec the exact engine cannot solve: the frequentist rows alone
            sens = rob_sensitivity(data, rob, engines=("frequentist",), level=level, by=by)
            blocks.append(("missing", f"Bayesian rows skipped ({exc})."))
        except BayesSEError as exc2:
            blocks.append(("missing", f"Risk-of-bias sensitivity analysis skipped ({exc2})."))
            return blocks
    pct = f"{100 * level:g}%"
    blocks.append(("p", f"The pooled effect from all studies, from the {sens.attrs['k_low']} effects at low risk of "
                        "bias only, and the meta-regression on risk of bias (intercept: low-risk studies; "
                        "rob_not_low: how much larger the effect is in the others), by REML (frequentist, "
                        f"{pct} CI) and the exact Bayesian engine (posterior median, {pct} CrI) (Cochrane "
                        "Handbook 7.7)."))
    blocks.append(b.table("rob_sensitivity", sens, "Sensitivity of the pooled effect to risk of bias", index=False))
    return blocks
