"""The flagship analysis in one call: ``bayes-se demo``.

On the bundled **simulated** self-efficacy dataset (``data/self_efficacy_sim/``, calibrated to the
published summaries of a 2025 review of self-efficacy in internet-based interventions; see its
README), :func:`run_demo` does what that review did, the Bayesian way:

1. effect sizes from raw statistics (Hedges' g between groups, standardized mean change within);
2. random-effects models of the between- and within-group effects (exact engine);
3. the guidance moderator model (MCMC: the report's main fit, with diagnostics, posterior-
   predictive checks and LOO), and a meta-regression on baseline self-efficacy;
4. the three-level model (effects nested in trials, MCMC);
5. the mediation model intervention -> self-efficacy -> symptoms, MCMC: the trials' reported paths
   and the trials' correlation matrices pooled in one path-based model (the report's mediation
   section), and the correlation-matrix MASEM of the matrices alone;
6. the box-score of reported findings; the frequentist comparison; a prior-sensitivity table;
7. one report (HTML + Markdown + figures + tables) holding all of it.

Each model is a call of the public API; this module only sequences them.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
import pandas as pd

from bayes_se import defaults
from bayes_se.errors import BayesSEError

#: The bundled dataset the demo reads by default (``data/self_efficacy_sim/``, shipped in the package).
DEFAULT_DATASET = "self_efficacy_sim"
#: The files the demo reads from its data folder.
DEMO_DATA_FILES = ("between.csv", "within.csv", "mediation_correlations.csv", "mediation_paths.csv", "findings.csv")
#: Sampler settings of the demo's MCMC fits (4 chains: R-hat needs several).
DEMO_SAMPLER = {"draws": 1000, "tune": 1000, "chains": 4}
DEMO_SEED = defaults.SEED
#: The prior grid of the demo's sensitivity table.
DEMO_GRID = ("default", "vague", "rover2021_smd", "tau=half_cauchy(0.3)", "mu=normal(0, 0.3); tau=half_normal(0.3)")

#: The packaged specs the demo fits (``bayes-se init NAME`` writes a copy to edit).
DEMO_SPECS = ("guidance_moderator", "three_level")


def demo_inputs(data_dir=None) -> dict:
    """Every file the demo reads, resolved and checked before any fit: the data files (from
    ``data_dir``, default the bundled simulated data), their README and the packaged specs.

    Returns ``{"data_dir": Path, "between.csv": Path, ..., "README.md": Path or None,
    "guidance_moderator": Path, "three_level": Path}``; works from any current folder.
    """
    from bayes_se.resources import data_file, spec_file

    data_dir = data_file(DEFAULT_DATASET) if data_dir is None else pathlib.Path(data_dir)
    missing = [name for name in DEMO_DATA_FILES if not (data_dir / name).is_file()]
    if missing:
        raise BayesSEError(f"demo data not found in '{data_dir}': no {', '.join(missing)} (leave out "
                           "--data-dir to use the bundled data)")
    paths = {"data_dir": data_dir}
    paths.update({name: data_dir / name for name in DEMO_DATA_FILES})
    paths["README.md"] = data_dir / "README.md" if (data_dir / "README.md").is_file() else None
    paths.update({name: spec_file(name) for name in DEMO_SPECS})
    return paths


def demo_cores(chains: int, load: float | None = None) -> int:
    """Processes for the chains of the demo's random-effects and three-level fits: one per chain,
    up to the CPUs that are free (the CPUs this process may use, less the 1-minute load average
    beyond this process), and one process when fewer than two are free.

    PyMC's parallel sampler passes every draw between processes, so when other work keeps the CPUs
    busy each draw waits for the scheduler and the chains run faster in one process (the demo's
    three-level fit and its refit on 2 shared CPUs: 99 s in 2 processes at load 3 to 4, 40 s in one
    at load 2; 11 s against 21 s for 4 x (300 + 300) draws when one CPU was free). PyMC seeds each chain
    on its own, so the draws are the same either way (``tests/test_demo_speed.py``); only the wall
    time changes.
    """
    import math
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this platform: assume idle
            load = 0.0
    free = math.floor(cpus - max(load - 1.0, 0.0))
    return max(1, min(int(chains), free)) if free >= 2 else 1


def _free_dir(path: pathlib.Path) -> pathlib.Path:
    """``path`` if it is new or empty, else ``path-2``, ``path-3``, ...: the demo never replaces
    a folder (it may hold a user's edits)."""
    candidate, n = path, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _effects_from_raw(data_dir: pathlib.Path):
    """Between- and within-group effect tables, with yi/vi recomputed from the raw statistics."""
    from bayes_se.data import load_effects
    from bayes_se.effect_sizes import smcr, smd

    between = pd.read_csv(data_dir / "between.csv")
    between["yi"], between["vi"] = smd(between.m1i, between.sd1i, between.n1i,
                                       between.m2i, between.sd2i, between.n2i)
    between["baseline_c"] = between["baseline_se"] - 50.0  # centred: the intercept is at baseline 50
    between["guided"] = (between["guided"] == "guided").astype(int)  # 1 = guided, 0 = unguided (reference)
    within = pd.read_csv(data_dir / "within.csv")
    within["yi"], within["vi"] = smcr(within.m_post, within.m_pre, within.sd_pre, within.ni, within.ri.fillna(0.5))
    return (load_effects(between, study="study", cluster="study_id"),
            load_effects(within, study="study", cluster="study_id"))


def summary_of_findings(rows) -> pd.DataFrame:
    """One row per analysis: what is estimated, by which engine, its posterior median and 95%
    credible interval, the review's published figure where there is one (Internet Interventions
    40:100821: d = 0.46 between-group, 0.47 within-group, 0.66 for guided programmes) and whether
    the engine's checks passed.

    ``rows``: (analysis, estimand, fit, summary table or [median, lower, upper], row name, review).
    """
    out = {}
    for analysis, estimand, fit, table, name, review in rows:
        if name is None:
            median, lower, upper = (float(v) for v in table)
        else:
            r = table.loc[name]
            median, lower, upper = float(r["q50"]), float(r["q2.5"]), float(r["q97.5"])
        exact = fit.engine == "exact"
        out[analysis] = {"estimand": estimand, "engine": "exact" if exact else "MCMC", "median": median,
                         "lower": lower, "upper": upper, "review": np.nan if review is None else review,
                         "checks": "exact (none needed)" if exact else
                         ("passed" if fit.diagnostics.passed else "FAILED")}
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame.index.name = "analysis"
    return frame


def run_demo(data_dir=None, out_dir="bayes_se_demo", *, seed: int = DEMO_SEED, quick: bool = False,
             echo=print) -> pathlib.Path:
    """Run the flagship analysis and write its report; return the report folder.

    Parameters
    ----------
    data_dir : path, optional
        Folder of the dataset (``between.csv``, ``within.csv``, ``mediation_correlations.csv``,
        ``mediation_paths.csv``, ``findings.csv``); default: the simulated data bundled with the package.
    out_dir : path
        Report folder; if it exists and is not empty, ``out_dir-2`` (-3, ...) is used instead.
    seed : int
    quick : bool
        Smaller MCMC settings (2 chains x 300 draws) for a smoke test; the report says so through
        its diagnostics.
    echo : callable
        Where progress lines go.
    """
    inputs = demo_inputs(data_dir)  # every input checked before the heavy imports and the fits
    data_dir = inputs["data_dir"]
    from bayes_se import api
    from bayes_se.compare import compare_frequentist
    from bayes_se.correlations import load_correlations
    from bayes_se.frequentist import rma, rma_mv
    from bayes_se.mediation import fit_mediation
    from bayes_se.mediation_paths import fit_mediation_paths
    from bayes_se.report import write_report
    from bayes_se.prior_sensitivity import sensitivity

    sampler = {"draws": 300, "tune": 300, "chains": 2} if quick else dict(DEMO_SAMPLER)
    start = time.perf_counter()
    between, within = _effects_from_raw(data_dir)
    echo(f"data: {between.k} between-group effects from {between.n_clusters} trials, "
         f"{within.k} within-group effects (SIMULATED, see {inputs['README.md'] or data_dir})")

    # 2. random-effects models, exact engine
    re_between = api.fit(between, engine="exact")
    re_within = api.fit(within, engine="exact")
    # 3. guidance moderator (MCMC, main fit) and baseline meta-regression (exact)
    spec = api.resolve_spec(inputs["guidance_moderator"], seed=seed)
    cores = demo_cores(sampler["chains"])  # the same draws as one core, in less wall time
    guidance = api.fit(between, spec, cores=cores, **sampler)
    baseline = api.fit(between, engine="exact", mods="baseline_c")
    # 4. three-level model
    # the three-level spec's own draws (2,000 a chain): its SDs' tails need them (docs/performance.md)
    three_sampler = sampler if quick else {k: v for k, v in sampler.items() if k != "draws"}
    three = api.fit(between, inputs["three_level"], seed=seed, cores=cores, **three_sampler)
    # 5. mediation
    corr = load_correlations(inputs["mediation_correlations.csv"],
                             variables=("intervention", "self_efficacy", "symptoms"))
    masem = fit_mediation(corr, seed=seed, **sampler)
    mediation = fit_mediation_paths(inputs["mediation_paths.csv"], correlations=corr, seed=seed, **sampler)
    # 6. box-score, frequentist comparison, sensitivity
    boxscore = pd.read_csv(inputs["findings.csv"])
    freq_between = rma(between, method="REML", test="knha")
    freq_three = rma_mv(between, method="REML")
    sens = sensitivity(between, priors=list(DEMO_GRID), smallest_effect=0.2, seed=seed)
    comparison = compare_frequentist(guidance, between, mods="guided")

    t_between = re_between.summary(theta=False)
    t_within = re_within.summary(theta=False)
    t_guid = guidance.summary()
    t_base = baseline.summary(theta=False)
    t_three = three.summary()
    t_med = mediation.summary()
    t_masem = masem.summary()
    other = {
        "Between-group random-effects model (exact engine)": t_between,
        "Within-group (pre-post) random-effects model (exact engine)": t_within,
        "Meta-regression on baseline self-efficacy, centred at 50 (exact engine)": t_base,
        "Three-level model: effects nested in trials (MCMC)":
            t_three.loc[[n for n in t_three.index if not n.startswith(("theta[", "u_cluster", "w_effect"))]],
        "Frequentist REML + Knapp-Hartung, between-group": pd.DataFrame(
            {"estimate": [freq_between.beta[0]], "ci_lower": [freq_between.ci_lower[0]],
             "ci_upper": [freq_between.ci_upper[0]], "tau2": [freq_between.tau2], "I2": [freq_between.I2]},
            index=["mu"]),
        "Frequentist three-level REML (rma.mv)": pd.DataFrame(
            {"estimate": [freq_three.beta[0]], "ci_lower": [freq_three.ci_lower[0]], "ci_upper": [freq_three.ci_upper[0]],
             "sigma2_trial": [freq_three.sigma2[0]], "sigma2_effect": [freq_three.sigma2[1]]}, index=["mu"]),
        f"Mediation from the {masem.k} correlation matrices alone (Bayesian MASEM, MCMC; diagnostics "
        f"{'passed' if masem.diagnostics.passed else 'FAILED'})": t_masem,
    }
    beta = guidance.idata.posterior["beta"]
    guided_d = (beta.sel(coef="intercept") + beta.sel(coef="guided")).values.ravel()
    sof = summary_of_findings([
        ("Between-group effect (random effects)", "mu", re_between, t_between, "mu", 0.46),
        ("Within-group effect, pre-post (random effects)", "mu", re_within, t_within, "mu", 0.47),
        ("Unguided programmes", "intercept", guidance, t_guid, "beta[intercept]", None),
        ("Guided programmes", "intercept + guided", guidance, np.quantile(guided_d, [0.5, 0.025, 0.975]), None,
         0.66),
        ("Guided minus unguided", "beta[guided]", guidance, t_guid, "beta[guided]", None),
        ("Baseline self-efficacy (per point above 50)", "beta[baseline_c]", baseline, t_base, "beta[baseline_c]",
         None),
        ("Three-level model: effects nested in trials", "mu", three, t_three, "mu", None),
        ("Mediation, a: intervention -> self-efficacy", "a (paths and matrices)", mediation, t_med, "a", None),
        ("Mediation, b: self-efficacy -> symptoms", "b (paths and matrices)", mediation, t_med, "b", None),
        ("Mediation, indirect effect", "a * b (paths and matrices)", mediation, t_med, "indirect", None),
        ("Mediation, average indirect effect", "E[a_i b_i] (paths and matrices)", mediation, t_med, "indirect_avg",
         None),
        ("Mediation, indirect (matrices alone: MASEM)", "a * b (MASEM)", masem, t_masem, "indirect", None),
    ])
    out = write_report(_free_dir(pathlib.Path(out_dir)), data=between, fit=guidance, spec=spec, freq=comparison,
                       sensitivity=sens, mediation=mediation, boxscore=boxscore, other_models=other, findings=sof,
                       title="Self-efficacy in internet-based interventions (SIMULATED data): Bayesian re-analysis")
    seconds = time.perf_counter() - start

    echo("")
    echo("summary of findings: posterior medians [95% credible intervals]")
    for label, r in sof.iterrows():
        review = "" if pd.isna(r["review"]) else f"   (review: {r['review']:g})"
        echo(f"  {label + ':':<50} {r['median']:.3f} [{r['lower']:.3f}, {r['upper']:.3f}]{review}")
    failed = [label for label, fit in (("guidance", guidance), ("three-level", three), ("mediation", mediation),
                                       ("MASEM", masem))
              if not fit.diagnostics.passed]
    echo("")
    echo("diagnostics: " + ("all MCMC fits passed R-hat, ESS, divergence and E-BFMI checks" if not failed else
                            "FAILED for " + ", ".join(failed) + " (see the report)"))
    echo(f"report: {out / 'report.html'}  ({seconds:.0f} s)")
    return out
