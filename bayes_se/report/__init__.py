"""A self-contained report of one Bayesian meta-analysis: HTML, Markdown, figures and tables.

:func:`write_report` writes into a new directory::

    report.html     one page, CSS inline, figures embedded as base64 PNG, no JavaScript
    report.md       the same content in Markdown, figures linked from figures/
    figures/*.png   (and *.svg) every figure drawn
    tables/*.csv    every table shown

Sections, in order: the answer first (title, one-line verdict, key results: the pooled effect or
each coefficient, the heterogeneity tau and I², the prediction interval named as such, and a
summary-of-findings table of every analysis when given); the forest plot; the posterior summary;
model and priors; convergence diagnostics (first of all, and loud, when a check failed);
posterior-predictive checks; leave-one-out and influential studies; prior vs posterior; prior
sensitivity; Bayesian vs frequentist; small-study effects and publication bias (the contour-enhanced
funnel with the trim-and-fill studies, Egger's and the rank test, and any further battery rows and
model-averaged ensemble given); risk of bias (when a RoB 2 / ROBINS-I table is given); further
models, mediation and box-score (when given); a methods paragraph following
the Bayesian Analysis Reporting Guidelines (Kruschke 2021); the reproducibility record; the data
table last.

Figures come from :mod:`bayes_se.plots`; a plot that is not installed or fails for this fit is
replaced by a visible note, never by a crash.

References
----------
Kruschke JK (2021). Bayesian analysis reporting guidelines. Nat Hum Behav 5:1282-1291.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pathlib

import numpy as np
import pandas as pd

from bayes_se.errors import BayesSEError
from bayes_se.report.html import render_html
from bayes_se.report.markdown import render_markdown
from bayes_se.report.methods import methods_paragraph, package_versions

__all__ = ["write_report", "SECTION_IDS"]

#: Section ids in report order (risk-of-bias, other-models, mediation and boxscore only when given); a
#: fit that failed its convergence checks moves "diagnostics" to the front.
SECTION_IDS = ("answer", "forest", "posterior", "model", "diagnostics", "ppc", "loo", "prior-posterior",
               "sensitivity", "frequentist", "bias", "risk-of-bias", "other-models", "mediation", "boxscore",
               "methods", "reproducibility", "data")
FIGURE_FORMATS = ("png", "svg")
PLOTS_MODULE = "bayes_se.plots"  # where figures come from (a test points this at a stand-in)
BOXSCORE_NOTE = ("A box-score counts studies by the sign or significance of their results. Vote counts are "
                 "not evidence of an effect's size: a pile of small non-significant studies can hide a real "
                 "effect, and a few significant ones can come from chance (Hedges & Olkin 1980).")


class _Builder:
    """Collects sections, figure files and table files in a staging directory."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        (root / "figures").mkdir()
        (root / "tables").mkdir()
        self.sections = []

    def section(self, sid, title, blocks):
        # a table whose caption repeats its section's title is shown without it (said once)
        blocks = [(b[0], b[1], "") if b is not None and b[0] == "table" and b[2] == title else b
                  for b in blocks if b is not None]
        self.sections.append({"id": sid, "title": title, "blocks": blocks})

    def table(self, name, df, caption, index=True):
        """Write ``tables/NAME.csv`` and return the table block."""
        df.to_csv(self.root / "tables" / f"{name}.csv", index=index)
        return ("table", df, caption)

    def figure(self, name, caption, func_name, *args, width="single", **kwargs):
        """Draw ``bayes_se.plots.FUNC_NAME(*args)``, save it, return the block (or a 'missing' note)."""
        try:
            func = getattr(importlib.import_module(PLOTS_MODULE), func_name)
        except (ImportError, AttributeError):
            return ("missing", f"Figure skipped ({caption}): bayes_se.plots.{func_name} is not available in this "
                               "installation.")
        params = inspect.signature(func).parameters
        kwargs = {k: v for k, v in kwargs.items() if k in params}
        if "width" in params:  # draw at the width it is saved at (legends and panels are laid out then)
            kwargs["width"] = width
        return self.draw(name, caption, lambda: func(*args, **kwargs), width=width, label=func_name)

    def draw(self, name, caption, make, *, width="single", label=None):
        """Save the figure ``make()`` returns and return its block (or a 'missing' note when it fails)."""
        try:
            fig = make()
            try:
                from bayes_se.plots.style import save_figure

                save_figure(fig, self.root / "figures" / name, width=width, formats=FIGURE_FORMATS)
            except ImportError:
                for fmt in FIGURE_FORMATS:
                    fig.savefig(self.root / "figures" / f"{name}.{fmt}", dpi=200)
        except Exception as exc:  # a plot must never sink the report; the note says what failed
            return ("missing", f"Figure skipped ({caption}): {label or getattr(make, '__name__', 'the plot')} "
                               f"failed for this fit ({type(exc).__name__}: {exc}).")
        return ("figure", name, caption, (self.root / "figures" / f"{name}.png").read_bytes(), width)


# ---------------------------------------------------------------------------------------------
# pieces of content
# ---------------------------------------------------------------------------------------------
def _is_exact(fit) -> bool:
    return fit.engine in ("exact", "exact_scale")


def _scale_formula(fit) -> str | None:
    """The scale formula of a location-scale fit (``log tau_i = z_i' alpha``), else None."""
    return fit.settings.get("scale") if fit.settings.get("model") == "location_scale" else None


def _per_study_row(fit, name: str) -> bool:
    """A location-scale MCMC fit's per-study ``tau[STUDY]`` / ``I2[STUDY]`` rows (left to posterior_full)."""
    if _scale_formula(fit) is None or not name.startswith(("tau[", "I2[")):
        return False
    meta = getattr(fit, "meta", None)
    return meta is not None and name.split("[", 1)[1][:-1] in set(map(str, meta.study))


def _posterior_table(fit, level, smallest):
    return fit.summary(level=level, smallest_effect=smallest)


def _verdict(fit, table, level, diagnostics_failed):
    pct = f"{100 * level:g}%"
    lo, hi = table.columns[2], table.columns[4]
    locs = [n for n in table.index if n == "mu" or n.startswith("beta[")]
    parts = []
    for name in locs[:3]:
        r = table.loc[name]
        parts.append(f"{name} = {r['q50']:.3g} ({pct} CrI {r[lo]:.3g} to {r[hi]:.3g})")
    if "tau" in table.index:
        r = table.loc["tau"]
        parts.append(f"tau = {r['q50']:.3g} ({r[lo]:.3g} to {r[hi]:.3g})")
    for name in [n for n in table.index if n.startswith("alpha[") and n != "alpha[intercept]"][:2]:
        r = table.loc[name]
        parts.append(f"{name} (log tau) = {r['q50']:.3g} ({r[lo]:.3g} to {r[hi]:.3g})")
    if "mu" in table.index:
        p = float(fit.prob_greater(0.0)["mu"])
        parts.append(f"P(mu > 0) = {p:.3g}")
    text = "; ".join(parts) + "."
    return ("DIAGNOSTICS FAILED, do not trust these estimates. " + text) if diagnostics_failed else text


def _key_results(fit, table, level, smallest) -> pd.DataFrame:
    """The answer in a few rows: each location parameter, tau, I² and the prediction interval of a
    new study's effect, with their intervals, and the probabilities of an effect."""
    pct = f"{100 * level:g}%"
    lo, hi = table.columns[2], table.columns[4]
    where = "" if "mu" in table.index else " at the reference (every moderator 0)"
    names = {"mu": "pooled effect (mu)", "tau": "between-study SD (tau)",
             "I2": "I² (share of variance that is heterogeneity)",
             "pred": f"{pct} prediction interval: a new study's effect{where} (pred)"}
    rows = {}
    for name in table.index:
        label = names.get(name)
        if label is None and name.startswith("beta["):
            label = f"coefficient {name[5:-1]}"
        if label is None and name.startswith("alpha["):  # location-scale: log tau_i = z_i' alpha
            label = f"scale coefficient {name[6:-1]} (log tau)"
        if label is None and name.startswith(("tau[", "pred[", "sigma_")) and not _per_study_row(fit, name):
            label = name
        if label is not None:
            r = table.loc[name]
            rows[label] = {"median": r["q50"], f"{pct} lower": r[lo], f"{pct} upper": r[hi]}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "quantity"
    return out


def _probability_sentence(fit, smallest) -> str:
    """Posterior probabilities of an effect, each location parameter, at 0 and at the smallest effect."""
    parts = []
    for t in [0.0] + ([smallest] if smallest else []):
        probs = fit.prob_greater(t)
        parts += [f"P({name} > {t:g}) = {p:.3g}" for name, p in probs.items() if name != "pred"]
    return "Posterior probabilities: " + "; ".join(parts) + "."


def _diagnostics_blocks(fit, b):
    if _is_exact(fit):
        return [("ok", "Exact posterior by quadrature over tau: no Markov chains were run, so R-hat, effective "
                       "sample sizes and divergences do not apply.")], True
    d = fit.diagnostics
    stats = pd.DataFrame({"value": [d.max_r_hat, d.min_ess_bulk, d.min_ess_tail, float(d.divergences), d.min_bfmi],
                          "threshold": ["≤ 1.01", "≥ 400", "≥ 400", "0", "≥ 0.3"]},
                         index=pd.Index(["max R-hat", "min bulk ESS", "min tail ESS", "divergences", "min E-BFMI"],
                                        name="check"))
    blocks = []
    if d.passed:
        blocks.append(("ok", "All convergence checks passed."))
    else:
        blocks.append(("alert", "DIAGNOSTICS FAILED: do not trust these estimates. The failed checks:"))
        blocks.append(("list", list(d.problems)))
    reason = fit.refit_reason()
    if reason:
        blocks.append(("p", f"Note: {reason}"))
    blocks.append(b.table("diagnostics", stats, "Convergence checks (Vehtari et al. 2021; Betancourt 2016)"))
    blocks.append(b.figure("trace", "Trace plots of the sampled parameters", "plot_trace", fit, width="double"))
    return blocks, d.passed


def _omitted_rows(data, mods) -> list[int]:
    """1-based rows the fits leave out for a missing moderator of ``mods`` (bayes_se.formula's rule)."""
    from bayes_se.formula import formula_columns

    used = [c for c in formula_columns(mods) if c in data.frame.columns] if mods else []
    return [] if not used else [int(i) + 1 for i in np.flatnonzero(data.frame[used].isna().any(axis=1).to_numpy())]


def _data_blocks(data, b, mods):
    frame = data.frame
    mod_cols = [c for c in frame.columns if c not in ("yi", "vi", "study", "cluster")]
    se = np.sqrt(np.asarray(data.vi, float))
    rows = {"effects (k)": str(data.k),
            "clusters": str(data.n_clusters) if data.cluster is not None else "none (independent effects)",
            "effect range": f"{np.min(data.yi):.4g} to {np.max(data.yi):.4g}",
            "standard error range": f"{se.min():.4g} to {se.max():.4g}",
            "moderator columns": ", ".join(map(str, mod_cols)) if mod_cols else "none",
            "moderators in the model": mods or "none"}
    if mods:
        gone = _omitted_rows(data, mods)
        rows["rows left out (missing moderator)"] = ", ".join(
            f"{r} ({data.study[r - 1]})" for r in gone) if gone else "none"
    df = pd.DataFrame({"value": list(rows.values())}, index=pd.Index(list(rows), name="item"))
    return [b.table("data_summary", df, "Data"),
            b.table("data", frame, "The effects as read", index=False)]


def _priors(fit, priors):
    """The priors to report: the caller's, else the fit's resolved priors (one per parameter)."""
    chosen = priors or fit.priors
    return {k: str(v) for k, v in chosen.items()}


def _model_blocks(fit, mods, priors):
    kind = fit.settings.get("model", "random_effects")
    if kind == "location_scale":
        scale = fit.settings.get("scale")
        lines = ["y_i ~ N(θ_i, v_i),  θ_i ~ N(" + ("x_i′β" if mods else "μ") + ", τ_i²),  log τ_i = z_i′α"]
        blocks = [("p", "A location-scale model (Viechtbauer & López-López 2022): each study's heterogeneity SD τ_i "
                        f"depends on the scale moderators z_i of the formula '{scale}' through log τ_i = z_i′α"
                        + (f"; x_i holds the moderators of the formula '{mods}'." if mods else "."))]
        return _model_tail(fit, blocks + [("math", line) for line in lines], priors)
    if kind == "three_level":
        lines = ["y_ij ~ N(θ_ij, v_ij),  θ_ij = x_ij′β + u_j + w_ij,  u_j ~ N(0, σ_cluster²),  w_ij ~ N(0, σ_effect²)"]
    elif kind == "student_t":
        lines = ["y_i ~ N(θ_i, v_i),  θ_i = " + ("x_i′β" if mods else "μ") + " + τ·u_i,  u_i ~ t_ν(0, 1)"]
    elif mods:
        lines = ["y_i ~ N(θ_i, v_i),  θ_i ~ N(x_i′β, τ²),  i = 1, …, k"]
    else:
        lines = ["y_i ~ N(θ_i, v_i),  θ_i ~ N(μ, τ²),  i = 1, …, k"]
    blocks = [("p", "Each observed effect y_i has a known sampling variance v_i; the true effects θ_i vary "
                    "between studies with standard deviation τ (the heterogeneity)"
                    + (f"; x_i holds the moderators of the formula '{mods}'." if mods else "."))]
    blocks += [("math", line) for line in lines]
    return _model_tail(fit, blocks, priors)


def _model_tail(fit, blocks, priors):
    if priors:
        blocks.append(("p", "Priors:"))
        blocks += [("math", text) for text in priors.values()]
    else:
        blocks.append(("missing", "The priors of this fit were not recorded; pass spec= or priors= to "
                                  "write_report."))
    engine = ("exact quadrature over τ (no sampling)" if fit.engine == "exact" else
              "exact 2-D quadrature over (τ_0, τ_1) (no sampling)" if fit.engine == "exact_scale" else
              "MCMC (NUTS, nutpie)" if fit.settings.get("sampler") == "nutpie" else "MCMC (NUTS, PyMC)")
    blocks.append(("p", f"Engine: {engine}."))
    return blocks


def _object_table(obj):
    """A DataFrame from a result object: itself, ``.table``, or ``.summary()``."""
    if isinstance(obj, pd.DataFrame):
        return obj
    if isinstance(getattr(obj, "table", None), pd.DataFrame):
        return obj.table
    summary = getattr(obj, "summary", None)
    if callable(summary):
        out = summary()
        if isinstance(out, pd.DataFrame):
            return out
    return None


def _checksum(data) -> str:
    return data.checksum()


# ---------------------------------------------------------------------------------------------
def write_report(out_dir, *, data, fit, spec=None, freq=None, sensitivity=None, mediation=None, boxscore=None,
                 other_models: dict | None = None, findings=None,
                 title: str | None = None, force: bool = False, mods: str | None = None,
                 priors: dict | None = None, level: float | None = None,
                 smallest_effect: float | None = None, rob=None, rob_by: str | None = None, battery=None,
                 ensemble=None) -> pathlib.Path:
    """Write the report of a fit into a new directory and return its path.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        Created; must not exist or be empty unless ``force``.
    data : EffectData
        The effects the fit used.
    fit : Fit (any engine) or ExactPosterior
        A fit made by :func:`bayes_se.fit` brings its spec.
    spec : ModelSpec, optional
        Its priors, moderators, level and smallest effect are reported, and its TOML text is
        recorded.
    freq : ComparisonResult, optional
        From :func:`bayes_se.compare.compare_frequentist`; computed here when omitted (two-level
        models).
    sensitivity : SensitivityResult, optional
        From :func:`bayes_se.prior_sensitivity.sensitivity`.
    mediation : object, optional
        A mediation result (a DataFrame, or an object with ``.table`` or ``.summary()``).
    boxscore : object, optional
        A box-score table or result (same forms).
    other_models : dict, optional
        Further fits of the same analysis shown as tables (title -> DataFrame), e.g. a
        within-group model or a three-level model next to the main fit.
    findings : pandas.DataFrame, optional
        A summary-of-findings table of every analysis (one row each), shown first.
    title : str, optional
        Default "Bayesian meta-analysis", or "Bayesian meta-regression" for a model with moderators.
    force : bool
        Replace an existing non-empty ``out_dir``.
    mods, priors, level, smallest_effect : optional
        Override what ``spec`` says (priors: parameter -> Prior or text).
    rob : RobTable, path or DataFrame, optional
        A RoB 2 or ROBINS-I table (:func:`bayes_se.risk_of_bias.read_rob`): adds the section "Risk
        of bias" (traffic-light and summary plots, sensitivity to risk of bias).
    rob_by : str, optional
        The data column naming each effect's study in ``rob`` (default: the study label, else the
        cluster; see :func:`bayes_se.risk_of_bias.study_keys`).
    battery : pandas.DataFrame or callable, optional
        Further rows of the small-study-effects table (e.g. selection models, PET-PEESE), indexed
        by method, or a function of the REML fit returning them (see
        :func:`bayes_se.report.bias.bias_blocks`). Default: PET, PEESE, PET-PEESE and the
        three-parameter selection model for a model without moderators
        (:func:`bayes_se.report.bias.default_battery`).
    ensemble : object, callable or False, optional
        A Bayesian model-averaged ensemble with ``to_dict()``, or a function of ``data`` returning
        one (see :func:`bayes_se.report.bias.ensemble_blocks`). Default: RoBMA's ensemble
        (:func:`bayes_se.bias_ensemble`) for a random-effects model without moderators or
        clusters; ``False`` leaves it out.

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Raises
    ------
    BayesSEError
        ``out_dir`` exists and is not empty (and ``force`` is False), or is a file.

    References
    ----------
    Kruschke JK (2021). Bayesian analysis reporting guidelines. Nat Hum Behav 5:1282-1291.
    """
    from bayes_se.compare import as_fit

    fit = as_fit(fit)
    spec = fit.spec if spec is None else spec
    out = pathlib.Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BayesSEError(f"report directory '{out}' exists and is a file")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise BayesSEError(f"report directory '{out}' exists and is not empty; choose a new directory or pass "
                           "force=True (--force) to replace it")
    if spec is not None:
        mods = spec.model.mods if mods is None else mods
        level = spec.summary.level if level is None else level
        smallest_effect = spec.summary.smallest_effect if smallest_effect is None else smallest_effect
    level = fit.level if level is None else float(level)
    mods = mods or fit.settings.get("mods") or None
    if title is None:
        title = "Bayesian meta-regression" if mods else "Bayesian meta-analysis"
    if rob is not None:
        from bayes_se.risk_of_bias import read_rob

        rob = read_rob(rob)
    from bayes_se.outputs import atomic_dir

    # built in a temporary sibling folder and swapped into place under the folder's lock
    # (bayes_se.outputs.atomic_dir), which checks again: another writer may have made it meanwhile
    return atomic_dir(out, lambda stage: _build(
        stage, data=data, fit=fit, spec=spec, freq=freq, sensitivity=sensitivity, mediation=mediation,
        boxscore=boxscore, other_models=other_models, findings=findings, title=title, mods=mods, priors=priors,
        level=level, smallest=smallest_effect, rob=rob, rob_by=rob_by, battery=battery, ensemble=ensemble),
        force=force)


def _build(root, *, data, fit, spec, freq, sensitivity, mediation, boxscore, other_models, findings, title, mods,
           priors, level, smallest, rob=None, rob_by=None, battery=None, ensemble=None):
    b = _Builder(root)
    pct = f"{100 * level:g}%"
    diag_blocks, passed = _diagnostics_blocks(fit, b)
    if not passed:  # a failed fit says so before anything else
        b.section("diagnostics", "Convergence diagnostics", diag_blocks)
    prior_text = _priors(fit, priors)
    table = _posterior_table(fit, level, smallest)
    verdict = _verdict(fit, table, level, not passed)
    answer = [b.table("key_results", _key_results(fit, table, level, smallest), "Key results"),
              ("p", _probability_sentence(fit, smallest))]
    if findings is not None:
        answer += [("p", "Every analysis of this report, each with its interval, and the published figure beside "
                         "it where there is one:"),
                   b.table("findings", findings, "Summary of findings")]
    b.section("answer", "Summary of findings" if findings is not None else "Main result", answer)
    b.section("forest", "Forest plot", [
        b.figure("forest", f"Observed effects with {pct} intervals, shrunken study estimates and the pooled "
                           "effect", "plot_forest", fit, data=data, level=level, width="double")])
    shown = table.loc[[n for n in table.index if not str(n).startswith("theta[") and not _per_study_row(fit, str(n))]]
    b.table("posterior_full", table, "")
    b.section("posterior", "Posterior summary", [
        ("p", f"Posterior means, SDs, medians (q50) and central {pct} credible intervals; pred is the effect "
              f"of a new study (its interval is the {pct} prediction interval). Study effects θ_i are in "
              "tables/posterior_full.csv."),
        b.table("posterior", shown, "")])
    b.section("model", "Model and priors", _model_blocks(fit, mods, prior_text))
    if passed:
        b.section("diagnostics", "Convergence diagnostics", diag_blocks)
    b.section("ppc", "Posterior-predictive checks", [
        ("p", "Replicated data from the fitted model should look like the observed effects; LOO-PIT values "
              "should be uniform."),
        b.figure("ppc_density", "Observed effects against posterior-predictive replicates", "plot_ppc_density",
                 fit, data=data),
        b.figure("loo_pit", "LOO probability integral transform", "plot_loo_pit", fit, data=data)])
    loo_blocks = [("p", "Pareto k > 0.7 marks a study whose removal would change the posterior a lot (PSIS-LOO, "
                        "Vehtari et al. 2017)."),
                  b.figure("pareto_k", "Pareto k of each study", "plot_pareto_k", fit, data=data)]
    try:
        from bayes_se.checks import pareto_k_table

        loo_blocks.append(b.table("pareto_k", pareto_k_table(fit), "Pareto k per study"))
    except Exception as exc:  # e.g. a fit without a log-likelihood: a visible note, as _Builder.figure
        loo_blocks.append(("missing", f"Pareto-k table skipped ({type(exc).__name__}: {exc})."))
    b.section("loo", "Leave-one-out and influential studies", loo_blocks)
    b.section("prior-posterior", "Prior vs posterior", [
        b.figure("densities", "Prior and posterior densities of the main parameters", "plot_densities", fit,
                 data=data)])

    scale = _scale_formula(fit)
    if scale is not None and sensitivity is None:
        sens = [("missing", "Prior sensitivity is not run for location-scale models (model.scale); refit with "
                            "other priors on alpha and beta (--prior) to compare.")]
    elif sensitivity is not None:
        sens = [("p", f"The same model under {len(sensitivity.table)} prior settings (grid syntax: see "
                      "docs/reporting.md)."),
                b.table("sensitivity", sensitivity.table.set_index("prior"), "Prior sensitivity"),
                b.figure("sensitivity", "Posterior of mu and tau under each prior", "plot_sensitivity", sensitivity,
                         width="double")]
    else:
        sens = [("missing", "No prior sensitivity analysis was run. BARG asks for one: run "
                            "bayes_se.prior_sensitivity.sensitivity (bayes-se sensitivity) and pass it to the report.")]
    b.section("sensitivity", "Prior sensitivity", sens)

    if scale is not None:  # metafor's rma(..., scale=): its own table, no trim-and-fill
        try:
            from bayes_se.compare_scale import compare_location_scale

            cmp = compare_location_scale(fit, data, mods=mods, scale=scale, level=level)
            freq_blocks = [b.table("comparison", cmp.table, "Bayesian vs frequentist (rma with scale=) estimates"),
                           ("list", cmp.notes),
                           ("missing", "Trim-and-fill and the funnel plot are skipped: they assume one tau.")]
            freq = cmp
        except BayesSEError as exc:
            freq_blocks = [("missing", f"No frequentist comparison for this model ({exc}).")]
    elif freq is None:
        try:
            from bayes_se.compare import compare_frequentist

            freq = compare_frequentist(fit, data, mods=mods, level=level)
        except BayesSEError as exc:
            freq_blocks = [("missing", f"No frequentist comparison for this model ({exc}).")]
    if freq is not None and scale is None:
        freq_blocks = [b.table("comparison", freq.table, "Bayesian vs frequentist estimates")]
        freq_blocks.append(("list", freq.notes) if freq.notes else
                           ("p", "The methods agree within the thresholds of bayes_se.compare."))
    b.section("frequentist", "Bayesian vs frequentist", freq_blocks)
    from bayes_se.report.bias import bias_blocks, default_battery, default_ensemble, rob_blocks

    if ensemble is None and not mods and fit.settings.get("model", "random_effects") == "random_effects" \
            and data.cluster is None:
        # one effect per study, no moderators: RoBMA-style averaging (ensemble=False leaves it out)
        ensemble = default_ensemble(seed=fit.settings.get("seed"), level=level)
    b.section("bias", "Small-study effects and publication bias",
              bias_blocks(b, freq, level, battery=default_battery if battery is None else battery,
                          ensemble=ensemble or None, data=data))
    if rob is not None:
        b.section("risk-of-bias", "Risk of bias", rob_blocks(b, rob, data, spec=spec, mods=mods, level=level,
                                                                by=rob_by))

    if other_models:
        blocks = [("p", "Further models fitted in this analysis; each table is also in tables/.")]
        for i, (name, frame) in enumerate(other_models.items(), start=1):
            blocks.append(("p", str(name)))
            blocks.append(b.table(f"model_{i}", frame, str(name)))
        b.section("other-models", "Further models", blocks)
    if mediation is not None:
        from bayes_se.report.mediation import mediation_blocks

        b.section("mediation", "Mediation", mediation_blocks(b, mediation, level, _object_table(mediation)))
    if boxscore is not None:
        bt = _object_table(boxscore)
        blocks = [("p", BOXSCORE_NOTE)]
        blocks.append(b.table("boxscore", bt, "Box-score") if bt is not None else
                      ("missing", "The box-score result has no table."))
        blocks.append(b.figure("boxscore", "Box-score", "plot_boxscore", boxscore, width="double"))
        b.section("boxscore", "Box-score (vote counting)", blocks)

    from bayes_se.outputs import spec_record_text

    versions = package_versions()
    settings = dict(fit.settings)
    methods = methods_paragraph(fit=fit, k=data.k - len(_omitted_rows(data, mods)), priors=prior_text, preset=spec.preset if spec else None,
                                mods=mods, settings=settings, diagnostics=fit.diagnostics,
                                sensitivity=sensitivity, compared=freq is not None, versions=versions, level=level)
    b.section("methods", "Methods (paste into a paper)", [("p", methods)])

    seed = settings.get("seed")
    record = [("p", f"Data SHA-256: {_checksum(data)}"),
              ("p", f"Seed: {seed if seed is not None else 'none (exact engine: no randomness)'}"),
              b.table("versions", pd.DataFrame({"version": list(versions.values())},
                                               index=pd.Index(list(versions), name="package")), "Versions"),
              ("p", "Model specification (as run: sampler settings as used, priors resolved):"),
              ("code", spec_record_text(spec, fit) if spec is not None
               else "(no spec file: the fit was made in Python)")]
    if settings:
        record += [("p", "Fit settings:"), ("code", json.dumps(settings, indent=2, sort_keys=True, default=str))]
    b.section("reproducibility", "Reproducibility record", record)
    b.section("data", "Data", _data_blocks(data, b, mods))

    (root / "report.html").write_text(render_html(title, verdict, b.sections, failed=not passed), encoding="utf-8")
    (root / "report.md").write_text(render_markdown(title, verdict, b.sections), encoding="utf-8")
