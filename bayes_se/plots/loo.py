"""Pareto-k diagnostic of PSIS-LOO per study, with influential studies named.

The shape ``k`` of the generalised Pareto fitted to each study's importance ratios measures how
much the posterior changes when the study is left out: ``k > 0.7`` makes that study's LOO
estimate unreliable (an influential study), ``k > 1`` means the importance ratios have no finite
mean. The log-likelihood used integrates the study effect out (``y_i ~ N(x_i' beta, v_i +
tau^2)``), so each study is left out with its own effect. The numbers are ArviZ's
``az.loo(idata, pointwise=True)``; this module only tabulates and draws them.

References
----------
Vehtari, A., Gelman, A. & Gabry, J. (2017). Practical Bayesian model evaluation using leave-one-out
cross-validation and WAIC. Statistics and Computing 27, 1413-1432.
Vehtari, A., Simpson, D., Gelman, A., Yao, Y. & Gabry, J. (2024). Pareto smoothed importance
sampling. JMLR 25(72), 1-58.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from bayes_se.errors import SpecError
from bayes_se.plots import style

#: Pareto-k thresholds: LOO unreliable above K_WARN, importance ratios without a mean above K_BAD.
K_WARN = 0.7
K_BAD = 1.0


def pareto_k_table(fit) -> pd.DataFrame:
    """Pareto k and pointwise elpd of each study.

    Parameters
    ----------
    fit : BayesianFit
        With a ``log_likelihood`` group.

    Returns
    -------
    pandas.DataFrame
        Columns ``study``, ``pareto_k``, ``elpd_loo``, ``influential`` (k > :data:`K_WARN`).
    """
    import arviz as az

    idata = getattr(fit, "idata", None)
    if idata is None or not hasattr(idata, "log_likelihood"):
        raise SpecError("Pareto k needs a BayesianFit with a log_likelihood group", key="fit")
    with warnings.catch_warnings():
        # ArviZ warns when some k are high: that is what this table reports
        warnings.simplefilter("ignore", UserWarning)
        loo = az.loo(idata, pointwise=True)
    k = np.asarray(loo.pareto_k, float)
    study = [str(s) for s in fit.meta.study] if fit.meta is not None else [str(i + 1) for i in range(k.size)]
    return pd.DataFrame({"study": study, "pareto_k": k, "elpd_loo": np.asarray(loo.loo_i, float),
                         "influential": k > K_WARN})


def plot_pareto_k(fit, *, ax=None, width="single"):
    """Pareto k per study (x: study index) with the 0.7 and 1 thresholds; studies above 0.7 named.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.ticker import MaxNLocator

    table = pareto_k_table(fit)
    x = np.arange(1, len(table) + 1)
    k = table["pareto_k"].to_numpy()
    with style.style():
        fig, ax = style.figure_and_axes(ax, width, height_mm=60.0)
        colors = np.where(k > K_BAD, style.OKABE_ITO["vermillion"],
                          np.where(k > K_WARN, style.OKABE_ITO["orange"], style.POSTERIOR))
        ax.scatter(x, k, s=10, c=colors, zorder=3)
        for level, ls in ((K_WARN, "--"), (K_BAD, "-")):
            ax.axhline(level, color="0.4", lw=0.6, ls=ls, zorder=1, label=f"k = {level:g}")
        n = len(table)
        for xi, ki, name in zip(x[k > K_WARN], k[k > K_WARN], table["study"][k > K_WARN]):
            right = xi > n / 2  # label towards the middle so it stays inside the axes
            style.literal(ax.annotate(str(name), (xi, ki), xytext=(-4 if right else 4, 2),
                                      textcoords="offset points", ha="right" if right else "left",
                                      va="bottom", fontsize=style.MIN_FONT_PT))
        top = max(K_BAD + 0.15, k.max())
        ax.set_ylim(min(0.0, k.min() - 0.05), top + 0.12 * (top - min(0.0, k.min())))
        ax.set_xlim(0.3, n + 0.7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # above the axes, right of the title: clear of the study names
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, handlelength=1.2, columnspacing=0.8,
                  borderaxespad=0.1)
        ax.set_xlabel("Study (data order)")
        ax.set_ylabel("Pareto k")
        n_bad = int((k > K_WARN).sum())
        ax.set_title(f"{n_bad} of {len(k)} studies with k > {K_WARN:g}", loc="left")
    return fig
