"""Leave-one-out diagnostics of a univariate meta-analysis (metafor ``leave1out.rma.uni``).

For each study ``i`` the model ``y_j = x_j' beta + u_j + e_j`` is refitted on the other ``k - 1``
studies with the same estimator and test (:meth:`RMAResult.refit`; this module imports nothing of
:mod:`bayes_se.frequentist.rma`, which imports it for ``RMAResult.leave1out``).

References
----------
Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and influence diagnostics for meta-analysis.
*Research Synthesis Methods*, 1(2), 112-125.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bayes_se.errors import SpecError

__all__ = ["leave1out"]


def leave1out(res) -> pd.DataFrame:
    """Refit ``res`` leaving out each study in turn.

    Parameters
    ----------
    res : RMAResult
        A model without moderators (as metafor, which refits the intercept-only model).

    Returns
    -------
    pandas.DataFrame
        Index: the left-out study; columns ``estimate``, ``se``, ``stat``, ``pval``, ``ci_lower``,
        ``ci_upper``, ``Q``, ``Q_p``, ``tau2``, ``I2``, ``H2``.

    References
    ----------
    Viechtbauer & Cheung (2010); metafor 3.8-1 ``R/leave1out.rma.uni.r``.
    """
    if not res.int_only:
        raise SpecError("leave-one-out is available for models without moderators", key="mods")
    rows = []
    for i in range(res.k):
        fit = res.refit(np.arange(res.k) != i)
        rows.append({
            "estimate": fit.beta[0], "se": fit.se[0], "stat": fit.stat[0], "pval": fit.pval[0],
            "ci_lower": fit.ci_lower[0], "ci_upper": fit.ci_upper[0], "Q": fit.QE, "Q_p": fit.QE_p,
            "tau2": fit.tau2, "I2": fit.I2, "H2": fit.H2,
        })
    return pd.DataFrame(rows, index=pd.Index(res.slab, name="study"))
