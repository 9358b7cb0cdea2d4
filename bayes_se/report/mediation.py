"""The report's "Mediation" section: what each trial contributed, the pooled paths and their checks.

A mediation result is either a correlation-matrix MASEM (:class:`bayes_se.mediation.MediationFit`)
or a path-based fit (:class:`bayes_se.mediation_paths.PathMediationFit`, trials' reported paths
and, possibly, correlation matrices converted to standardised paths). The section says which
trials gave what, the diagnostics verdict (loudly when it fails), the summary table, the path
diagram, the indirect effect's posterior against its prior and, for a path-based fit, the forest
of per-trial a, b and a*b. Any other object with a table is shown as a table.
"""

from __future__ import annotations

import numpy as np

__all__ = ["mediation_blocks", "sources_text"]

#: Labels listed by name in the sources paragraph before "and N more".
MAX_LISTED = 12


def _listed(labels) -> str:
    labels = [str(s) for s in labels]
    if len(labels) <= MAX_LISTED:
        return ", ".join(labels)
    return ", ".join(labels[:MAX_LISTED]) + f" and {len(labels) - MAX_LISTED} more"


def sampler_text(fit) -> str:
    """One sentence: which NUTS implementation sampled the fit, with its settings and seed."""
    st = fit.settings
    if st.get("sampler") == "nutpie":
        which = fit.idata.attrs.get("sampler_version", "nutpie") + " (Rust NUTS on the compiled density)"
    else:
        from bayes_se.outputs import package_versions  # the version record of every output

        which = f"the No-U-Turn sampler of PyMC {package_versions()['pymc']}"
    return (f"Sampled with {which}: {st.get('chains')} chains of {st.get('tune')} warm-up and {st.get('draws')} "
            f"sampling iterations, target acceptance {st.get('target_accept')}, random seed {st.get('seed')}.")


def sources_text(fit) -> str:
    """One paragraph: which trials gave reported paths, which gave correlation matrices, and what
    each kind contributes to the model."""
    from bayes_se.mediation import MediationFit
    from bayes_se.mediation_paths import PathMediationFit

    if isinstance(fit, PathMediationFit):
        src = fit.sources()
        observed = np.asarray(fit.data.observed)
        study = [str(s) for s in fit.data.study]
        only_a = [s for s, o in zip(study, observed) if o[0] and not o[1]]
        no_c = [s for s, o in zip(study, observed) if o[1] and not o[2]]
        parts = [f"{fit.k} trials inform the pooled paths."]
        if src["paths"]:
            parts.append(f"{len(src['paths'])} reported the paths of their own mediation analysis (a, b with "
                         f"their standard errors; c' where given): {_listed(src['paths'])}.")
        if src["matrix"]:
            parts.append(f"{len(src['matrix'])} gave a correlation matrix of intervention, mediator and outcome, "
                         f"converted to standardised paths with their delta-method covariance (Olkin-Siotani at "
                         f"the trial's own correlations): {_listed(src['matrix'])}.")
        if only_a:
            parts.append(f"{len(only_a)} contribute a only (no b reported or derivable): {_listed(only_a)}.")
        if no_c:
            parts.append(f"{len(no_c)} give no c' (the direct effect is marginalised out of their "
                         f"likelihood): {_listed(no_c)}.")
        parts.append("Study effects are integrated out analytically; mixing the two kinds assumes the reported "
                     "paths are standardised (the same scale as the matrix-derived ones).")
        return " ".join(parts)
    if isinstance(fit, MediationFit):
        observed = np.asarray(fit.data.observed)
        full = int(observed.all(axis=1).sum())
        partial = [str(s) for s, o in zip(fit.data.study, observed) if not o.all()]
        text = (f"All {fit.k} studies gave correlation matrices ({full} complete); the pooled correlation matrix "
                f"is modelled directly (Bayesian MASEM) and the paths derived from it.")
        if partial:
            text += (f" {len(partial)} left out at least one correlation, which is marginalised out of their "
                     f"likelihood (never imputed): {_listed(partial)}.")
        return text
    return ""


def frequentist_blocks(b, fit, level: float) -> list:
    """The path fit beside its frequentist twin (bivariate REML, :mod:`bayes_se.compare_paths`)."""
    from bayes_se.compare_paths import compare_paths
    from bayes_se.errors import BayesSEError

    try:
        cmp = compare_paths(fit, level=level)
    except BayesSEError as exc:
        return [("missing", f"No frequentist comparison of the paths ({exc}).")]
    pct = f"{100 * level:g}%"
    blocks = [("p", f"The same trials pooled by the frequentist bivariate random-effects model of (a, b) "
                    f"(REML; metafor's rma.mv with struct = \"UN\"; c' by rma): Wald {pct} intervals, the "
                    f"indirect effect's by the delta method with its Monte Carlo interval beside it "
                    f"(MacKinnon, Lockwood & Williams 2004); REML gives the between-study SDs and rho_ab as "
                    f"points."),
              b.table("mediation_frequentist", cmp.table, f"Bayesian (posterior median, {pct} CrI) vs REML")]
    blocks.append(("list", cmp.notes) if cmp.notes else
                  ("p", "The two agree within the thresholds of bayes_se.compare (estimates within a quarter "
                        "posterior SD, intervals within 20%, the same conclusion about 0)."))
    return blocks


def mediation_blocks(b, mediation, level: float, table) -> list:
    """Blocks of the "Mediation" section.

    Parameters
    ----------
    b : the report builder
    mediation : MediationFit, PathMediationFit or an object with a table
    level : float
        Level of the plots' intervals.
    table : pandas.DataFrame or None
        The result's table (its ``summary()``), written to ``tables/mediation.csv``.

    Returns
    -------
    list of blocks
    """
    from bayes_se.mediation import MediationFit
    from bayes_se.mediation_paths import PathMediationFit

    fits = (MediationFit, PathMediationFit)
    blocks = []
    if isinstance(mediation, fits):
        blocks.append(("p", sources_text(mediation) + " " + sampler_text(mediation)))
        verdict = mediation.diagnostics
        if verdict is not None and not verdict.passed:
            blocks.append(("alert", "The mediation fit FAILED its convergence checks: "
                                    + mediation.diagnostics_line() + ". Do not report these estimates."))
        elif verdict is not None:
            blocks.append(("ok", mediation.diagnostics_line()))
        if isinstance(mediation, PathMediationFit):
            for note in mediation.notes(level):
                blocks.append(("alert", note))
    blocks.append(b.table("mediation", table, "Mediation") if table is not None else
                  ("missing", "The mediation result has no table."))
    blocks.append(b.figure("paths", "Path diagram", "plot_paths", mediation, width="double"))
    if isinstance(mediation, fits):
        blocks.append(b.figure("indirect", "Indirect effect: posterior against prior", "plot_indirect", mediation,
                               width="double"))
    if isinstance(mediation, PathMediationFit):
        blocks += frequentist_blocks(b, mediation, level)
        blocks.append(b.figure("mediation_forest", "Per-trial paths a, b and a*b", "plot_mediation_forest",
                               mediation, width="double"))
    return blocks
