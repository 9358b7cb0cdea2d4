"""The methods paragraph of a report: text a user can paste into a paper.

It follows the Bayesian Analysis Reporting Guidelines (BARG; Kruschke 2021): the model, the
priors and why they were chosen, the software and its versions, the sampler settings, the
convergence diagnostics and their thresholds, and the sensitivity analysis.

References
----------
Kruschke JK (2021). Bayesian analysis reporting guidelines. Nat Hum Behav 5:1282-1291.
doi:10.1038/s41562-021-01177-7
Röver C (2020). Bayesian random-effects meta-analysis using the bayesmeta R package. J Stat Softw
93(6). doi:10.18637/jss.v093.i06
"""

from __future__ import annotations

from bayes_se.outputs import package_versions  # one version record for every output


__all__ = ["methods_paragraph", "package_versions", "PRESET_REASONS"]

#: Why a preset's priors are reasonable, one clause each (sources in bayes_se.priors.PRESETS_DOC).
PRESET_REASONS = {
    "default": "weakly informative priors on the standardised-mean-difference scale, on which effects beyond "
               "+-2 and heterogeneity SDs above 1 are implausible",
    "vague": "vague priors (a normal prior with SD 10 on the average effect and a half-Cauchy(1) prior on tau, "
             "Gelman 2006)",
    "rhodes2015_general": "the empirical predictive distribution of heterogeneity in Cochrane meta-analyses of "
                          "continuous outcomes (Rhodes, Turner & Higgins 2015, Table 3, general)",
    "rhodes2015_mental_pharm_vs_placebo": "the empirical predictive distribution of heterogeneity for "
                                          "mental-health outcomes, pharmacological vs placebo (Rhodes et al. 2015)",
    "rhodes2015_mental_pharm_vs_pharm": "the empirical predictive distribution of heterogeneity for mental-health "
                                        "outcomes, pharmacological vs pharmacological (Rhodes et al. 2015)",
    "rhodes2015_mental_nonpharm_vs_control": "the empirical predictive distribution of heterogeneity for "
                                             "mental-health outcomes, non-pharmacological interventions (Rhodes et "
                                             "al. 2015, location as printed)",
    "rhodes2015_mental_nonpharm_vs_control_corrected": "the empirical predictive distribution of heterogeneity "
                                                       "for mental-health outcomes, non-pharmacological "
                                                       "interventions (Rhodes et al. 2015, location corrected to "
                                                       "the table's additive pattern)",
    "rover2021_smd": "unit-information priors for standardised mean differences (Röver et al. 2021)",
    "rover2021_smd_total_n": "unit-information priors for standardised mean differences, unit = one participant "
                             "of the total sample (Röver et al. 2021)",
}


def _join(items):
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def methods_paragraph(*, fit, k: int, priors: dict | None = None, preset: str | None = None,
                      mods: str | None = None, settings: dict | None = None, diagnostics=None,
                      sensitivity=None, compared: bool = False, versions: dict | None = None,
                      level: float = 0.95) -> str:
    """A paragraph describing the analysis in the order BARG asks for (Kruschke 2021).

    Parameters
    ----------
    fit : ExactPosterior or BayesianFit
    k : int
        Number of effects.
    priors : dict, optional
        Parameter -> prior text (``tau ~ HalfNormal(0.5)``).
    preset : str, optional
        Name of the prior preset, to say why the priors were chosen.
    mods : str, optional
        Moderator formula.
    settings : dict, optional
        Sampler settings (``chains``, ``draws``, ``tune``, ``target_accept``, ``seed``).
    diagnostics : Verdict, optional
    sensitivity : SensitivityResult, optional
    compared : bool
        Whether a frequentist comparison is reported.
    versions : dict, optional
        Default :func:`package_versions`.
    level : float

    Returns
    -------
    str
    """
    v = versions or package_versions()
    exact = fit.engine == "exact"
    pct = f"{100 * level:g}%"
    s = []
    st = settings or {}
    scale = st.get("scale") if st.get("model") == "location_scale" else None
    if scale:
        s.append(f"We fitted a Bayesian location-scale meta-analysis (Viechtbauer & López-López 2022) to k = {k} "
                 f"effect sizes: y_i ~ N(θ_i, v_i), θ_i ~ N({'x_i′β' if mods else 'μ'}, τ_i²), log τ_i = z_i′α, "
                 f"with {'location moderators ' + mods + ' and ' if mods else ''}scale moderators {scale}, where "
                 "v_i is the known sampling variance of effect i.")
    elif mods:
        s.append(f"We fitted a Bayesian random-effects meta-regression to k = {k} effect sizes, with moderators "
                 f"{mods}: y_i ~ N(x_i'β + u_i, v_i), u_i ~ N(0, τ²), where v_i is the known sampling variance of "
                 "effect i.")
    else:
        s.append(f"We fitted a Bayesian random-effects meta-analysis to k = {k} effect sizes: y_i ~ N(θ_i, v_i), "
                 "θ_i ~ N(μ, τ²), where v_i is the known sampling variance of effect i.")
    fit_model = (getattr(fit, "settings", None) or {}).get("model")
    if fit_model in ("three_level", "correlated_effects"):  # effects nested in clusters
        rho = (getattr(fit, "settings", None) or {}).get("rho")
        s[-1] = (f"We fitted a Bayesian three-level meta-analysis to k = {k} effect sizes nested in clusters"
                 + (f", with moderators {mods}" if mods else "") + ": "
                 "y_ij = x_ij'β + u_j + w_ij + e_ij, u_j ~ N(0, σ_cluster²), w_ij ~ N(0, σ_effect²), where e_ij "
                 "has the known sampling variance v_ij" + (f" and effects of one cluster have sampling errors "
                                                            f"correlated at an assumed ρ = {rho:g}." if rho else "."))
    if priors:
        text = _join([str(p) for p in priors.values()])
        why = f", {PRESET_REASONS[preset]}" if preset in PRESET_REASONS else ""
        s.append(f"Priors were {text}{why}.")
    if exact and fit_model in ("three_level", "correlated_effects"):
        s.append(f"The posterior was computed without sampling, the coefficients integrated analytically and "
                 f"(σ_cluster, σ_effect) by two-dimensional Gauss-Legendre quadrature, with bayes_se "
                 f"{v['bayes_se']} (Python {v['python']}, NumPy {v['numpy']}, SciPy {v['scipy']}); the rule was "
                 "refined until doubling its nodes changed the log marginal likelihood and the posterior means and "
                 "SDs by less than 1e-9, so no Monte Carlo error or convergence diagnostics apply.")
    elif fit.engine == "exact_scale":
        s.append(f"The posterior was computed without sampling with bayes_se {v['bayes_se']} (Python {v['python']}, "
                 f"NumPy {v['numpy']}, SciPy {v['scipy']}): the coefficients conditionally on (τ_0, τ_1) in closed "
                 "form, (log τ_0, log τ_1) by a 2-D trapezoidal rule refined until the log marginal likelihood and "
                 "the moments agreed to 1e-10, so no Monte Carlo error or convergence diagnostics apply.")
    elif exact:
        s.append(f"The posterior was computed without sampling, by numerical integration over τ (the "
                 f"normal-normal model is conjugate given τ; Röver 2020), with bayes_se {v['bayes_se']} (Python "
                 f"{v['python']}, NumPy {v['numpy']}, SciPy {v['scipy']}); the quadrature was refined until its "
                 "Chebyshev coefficients decayed below 1e-13, so no Monte Carlo error or convergence diagnostics "
                 "apply.")
    else:
        if st.get("sampler") == "nutpie":
            nuts = (f"the No-U-Turn sampler of nutpie {v.get('nutpie') or '?'} on the model of PyMC {v['pymc']} "
                    f"(log density compiled by PyTensor {v['pytensor']}; Python {v['python']})")
        else:
            nuts = f"the No-U-Turn sampler of PyMC {v['pymc']} (PyTensor {v['pytensor']}; Python {v['python']})"
        s.append(f"The model was fitted with bayes_se {v['bayes_se']} using {nuts}, {st.get('chains', '?')} chains of "
                 f"{st.get('tune', '?')} warm-up and {st.get('draws', '?')} sampling iterations, target acceptance "
                 f"{st.get('target_accept', '?')}, random seed {st.get('seed', '?')}.")
        if diagnostics is not None:
            d = diagnostics
            s.append(f"Convergence was checked with ArviZ {v['arviz']} against the thresholds rank-normalised "
                     f"split R-hat ≤ 1.01, bulk and tail effective sample sizes ≥ 400 (Vehtari et al. 2021), no "
                     f"divergent transitions and E-BFMI ≥ 0.3: the maximum R-hat was {d.max_r_hat:.3f}, the minimum "
                     f"bulk and tail ESS {d.min_ess_bulk:.0f} and {d.min_ess_tail:.0f}, there were {d.divergences} "
                     f"divergent transitions, and the diagnostics "
                     f"{'passed' if d.passed else 'FAILED (see the diagnostics section)'}.")
    s.append(f"We report posterior medians with central {pct} credible intervals and posterior probabilities of "
             "effects.")
    if sensitivity is not None:
        t = sensitivity.table
        labels = _join([str(x) for x in t["prior"]])
        span = ""
        if "mu_mean" in t and t["mu_mean"].notna().any():
            span = (f"; across them the posterior mean of μ ranged from {t['mu_mean'].min():.3g} to "
                    f"{t['mu_mean'].max():.3g} and that of τ from {t['tau_mean'].min():.3g} to "
                    f"{t['tau_mean'].max():.3g}")
        s.append(f"In a prior sensitivity analysis the model was refitted under {len(t)} prior settings ({labels})"
                 f"{span}.")
    if compared and scale:
        s.append("For comparison we report frequentist location-scale fits (REML and ML, Wald-type intervals) "
                 "computed to match metafor 3.8-1's rma(..., scale=).")
    elif compared:
        s.append("For comparison we report frequentist estimates (DerSimonian-Laird, REML with Wald-type and "
                 "Knapp-Hartung intervals, Q-profile intervals for τ) computed to match metafor 3.8-1.")
    s.append("Reporting follows the Bayesian Analysis Reporting Guidelines (Kruschke 2021).")
    return " ".join(s)
