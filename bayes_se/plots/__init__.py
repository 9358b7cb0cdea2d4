"""Publication plots for bayes_se fits.

Each plot is a pure function computing a tidy table (``forest_table``, ``funnel_table``, ...) and
a thin ``plot_*`` function drawing it on a pyplot-free :class:`matplotlib.figure.Figure`.
Names load lazily (PEP 562): ``import bayes_se.plots`` imports no matplotlib.
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
    "ppc_stat_draws": "ppc", "ppc_stat_table": "ppc", "ppc_density_table": "ppc", "loo_pit_table": "ppc",
    "plot_ppc_density": "ppc", "plot_ppc_stats": "ppc", "plot_loo_pit": "ppc",
    "pareto_k_table": "loo", "plot_pareto_k": "loo",
    "sensitivity_table": "sensitivity", "plot_sensitivity": "sensitivity",
    "plot_trace": "diagnostic", "plot_rank": "diagnostic",
    "boxscore_table": "boxscore", "boxscore_studies": "boxscore", "plot_boxscore": "boxscore",
}
# the mediation path diagram lives in its own module when it is installed
if importlib.util.find_spec(f"{__name__}.paths") is not None:
    _NAMES.update({"plot_paths": "paths", "plot_indirect": "paths"})

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
