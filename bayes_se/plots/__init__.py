"""Publication plots for bayes_se fits.

Each plot is a pure function computing a tidy table (``forest_table``, ``funnel_table``, ...) and
a thin ``plot_*`` function drawing it on a pyplot-free :class:`matplotlib.figure.Figure`. Model
checks (posterior predictive statistics, LOO-PIT, Pareto k) are computed in
:mod:`bayes_se.checks`; their tables are re-exported here. Names load lazily (PEP 562):
``import bayes_se.plots`` imports no matplotlib.
"""

from __future__ import annotations

import importlib
import importlib.util

#: Public name -> submodule that defines it.
_NAMES = {
    "OKABE_ITO": "style", "WIDTHS_MM": "style", "save_figure": "style",
    "PosteriorDraws": "forest", "posterior_draws": "forest", "forest_table": "forest", "plot_forest": "forest",
    "funnel_table": "funnel", "funnel_contours": "funnel", "plot_funnel": "funnel",
    "density_table": "densities", "plot_densities": "densities",
    "plot_ppc_density": "ppc", "plot_ppc_stats": "ppc", "plot_loo_pit": "ppc",
    "plot_pareto_k": "loo",
    "sensitivity_table": "sensitivity", "plot_sensitivity": "sensitivity",
    "plot_trace": "diagnostic", "plot_rank": "diagnostic",
    "boxscore_table": "boxscore", "boxscore_studies": "boxscore", "plot_boxscore": "boxscore",
    "plot_sbc_ranks": "sbc",
    "plot_rob_traffic_light": "risk_of_bias", "plot_rob_summary": "risk_of_bias", "rob_summary_table": "risk_of_bias",
    "plot_influence": "influence", "plot_cumulative": "influence",
}
#: Model-check tables computed in bayes_se.checks, importable from here as before.
_CHECKS = ("ppc_stat_draws", "ppc_stat_table", "ppc_density_table", "loo_pit_table", "pareto_k_table")
_NAMES.update({name: "bayes_se.checks" for name in _CHECKS})
# the mediation path diagram lives in its own module when it is installed
if importlib.util.find_spec(f"{__name__}.paths") is not None:
    _NAMES.update({"plot_paths": "paths", "plot_indirect": "paths"})
_NAMES.update({"mediation_forest_table": "mediation_forest", "plot_mediation_forest": "mediation_forest"})

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        where = _NAMES[name]
        module = importlib.import_module(where if "." in where else f"{__name__}.{where}")
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
