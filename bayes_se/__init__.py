"""bayes_se: Bayesian meta-analysis with a metafor-exact frequentist twin.

Module names never equal a public function's name (``sensitivity`` lives in
:mod:`bayes_se.prior_sensitivity`, ``simulate`` in :mod:`bayes_se.simulation`): importing a
submodule sets the package attribute of its name, which would hide a function of that name.

Importing the package is cheap: NumPy/SciPy/pandas only. PyMC, ArviZ and matplotlib are imported
when a sampler, a diagnostic or a plot is first needed.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access, PEP 562)
_LAZY = {
    "load_effects": "bayes_se.data",
    "EffectData": "bayes_se.data",
    "escalc": "bayes_se.effect_sizes",
    "rma": "bayes_se.frequentist",
    "rma_mv": "bayes_se.frequentist",
    "matreg": "bayes_se.frequentist",
    "regtest": "bayes_se.frequentist",
    "ranktest": "bayes_se.frequentist",
    "trimfill": "bayes_se.frequentist",
    "robust": "bayes_se.frequentist",
    "robu": "bayes_se.frequentist",
    "Prior": "bayes_se.priors",
    "parse_prior": "bayes_se.priors",
    "preset": "bayes_se.priors",
    "load_spec": "bayes_se.spec",
    "ModelSpec": "bayes_se.spec",
    "fit": "bayes_se.api",
    "ExactFit": "bayes_se.exact_fit",
    "Fit": "bayes_se.fits",
    "load_fit": "bayes_se.api",
    "exact_posterior": "bayes_se.exact",
    "fit_random_effects": "bayes_se.api",
    "fit_three_level": "bayes_se.api",
    "BayesianFit": "bayes_se.results",
    "sensitivity": "bayes_se.prior_sensitivity",
    "compare_frequentist": "bayes_se.compare",
    "compare_paths": "bayes_se.compare_paths",
    "load_correlations": "bayes_se.correlations",
    "CorrelationData": "bayes_se.correlations",
    "fit_mediation": "bayes_se.mediation",
    "MediationFit": "bayes_se.mediation",
    "simulate": "bayes_se.simulation",
    "summarise": "bayes_se.simulation",
    "BayesSEError": "bayes_se.errors",
    "DataError": "bayes_se.errors",
    "SpecError": "bayes_se.errors",
    "read_rob": "bayes_se.risk_of_bias",
    "rob_sensitivity": "bayes_se.risk_of_bias",
    # publication bias, frequentist (issue 14)
    "selmodel": "bayes_se.frequentist",
    "pet": "bayes_se.frequentist",
    "peese": "bayes_se.frequentist",
    "pet_peese": "bayes_se.frequentist",
    "bias_battery": "bayes_se.frequentist",
    "exact_three_level": "bayes_se.exact_three_level",
    "ThreeLevelExactFit": "bayes_se.exact_three_level_fit",
    "fit_exact_three_level": "bayes_se.exact_three_level_fit",
    "rho_sensitivity": "bayes_se.exact_three_level_fit",
    "compare_dependence": "bayes_se.exact_three_level_fit",
    "bias_ensemble": "bayes_se.bias_averaging",
    "BiasEnsemble": "bayes_se.bias_averaging",
    "fit_selection_model": "bayes_se.bayes_selection",
    "SelectionFit": "bayes_se.bayes_selection",
    "BiasPriors": "bayes_se.bayes_selection",
    # reported mediation paths, frequentist (issue 16)
    "paths_rma": "bayes_se.frequentist.mediation_paths",
    # mediation from reported paths (issue 16)
    "load_paths": "bayes_se.reported_paths",
    "PathEstimates": "bayes_se.reported_paths",
    "fit_mediation_paths": "bayes_se.mediation_paths",
    "PathMediationFit": "bayes_se.mediation_paths",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in {"frequentist", "effect_sizes", "data", "errors", "priors", "spec", "exact", "api",
                "formula", "diagnostics", "results", "sampling", "plots", "report", "mediation",
                "correlations", "prior_sensitivity", "simulation", "compare", "outputs", "demo", "blas",
                "fits", "exact_fit", "defaults", "datasets", "resources"}:
        return importlib.import_module(f"bayes_se.{name}")
    raise AttributeError(f"module 'bayes_se' has no attribute {name!r}")


def __dir__():
    return __all__
