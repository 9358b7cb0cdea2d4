"""PET, PEESE and the conditional PET-PEESE estimator of the effect corrected for small-study effects.

PET (precision-effect test): ``y_i = b0 + b1 se_i + u_i + e_i``; PEESE (precision-effect estimate
with standard error): ``y_i = b0 + b1 v_i + u_i + e_i``; in both the intercept ``b0`` is the effect
of a study with ``se_i -> 0``. PET-PEESE reports PEESE's intercept when PET's intercept differs from 0
(the test below), otherwise PET's.

Both regressions are fitted with :func:`bayes_se.frequentist.rma` on the studies of the input model,
by default with its tau^2 estimator and test (metafor: ``rma(yi, vi, mods = ~ sqrt(vi))`` and
``rma(yi, vi, mods = ~ vi)``, the meta-regression form of Egger's test that ``regtest`` uses);
``method="EE"`` gives inverse-variance (fixed-effect) weights, whose point estimates are those of
Stanley & Doucouliagos's weighted least squares (their standard errors carry a multiplicative
dispersion instead, as ``test="knha"`` would).

Conditional rule (default): PEESE when PET's intercept has a two-sided p-value below
``alpha = 0.10``, i.e. the one-sided 5% test of ``H0: b0 <= 0`` in the direction of the effect
(Stanley & Doucouliagos 2014; Stanley 2017); ``alternative="greater"`` (or ``"less"``) uses
the one-sided p-value at ``alpha`` instead.

References
----------
Stanley, T. D., & Doucouliagos, H. (2014). Meta-regression approximations to reduce publication
selection bias. *Research Synthesis Methods*, 5(1), 60-78.
Stanley, T. D. (2017). Limitations of PET-PEESE and other meta-analysis methods. *Social
Psychological and Personality Science*, 8(5), 581-591.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from bayes_se.errors import SpecError
from bayes_se.frequentist.common import json_ready

__all__ = ["pet", "peese", "pet_peese", "PetPeeseResult"]


@dataclass(frozen=True)
class PetPeeseResult:
    """A PET, PEESE or PET-PEESE estimate: the intercept (``estimate``, ``se``, ``stat``, ``pval``,
    ``ci_lower``, ``ci_upper``), the slope on ``se_i`` (PET) or ``v_i`` (PEESE) with its test, tau^2
    of the regression, and ``fit`` (the :class:`~bayes_se.frequentist.rma.RMAResult`). For
    PET-PEESE, ``chosen`` names the regression reported and ``pet_pval`` is the p-value of the
    conditional test."""

    kind: str
    estimate: float
    se: float
    stat: float
    pval: float
    ci_lower: float
    ci_upper: float
    slope: float
    slope_se: float
    slope_stat: float
    slope_pval: float
    tau2: float
    method: str
    test: str
    level: float
    fit: Any
    chosen: str | None = None
    alpha: float | None = None
    alternative: str | None = None
    pet_pval: float | None = None

    def summary(self) -> str:
        """One-paragraph description."""
        name = self.kind if self.chosen is None else f"{self.kind} (chose {self.chosen}: PET p = {self.pet_pval:.4g}, alpha = {self.alpha})"
        pct = round(100 * self.level)
        return (f"{name}, {self.method} weights, {self.test} test: estimate {self.estimate:.4f} "
                f"(SE {self.se:.4f}, {pct}% CI {self.ci_lower:.4f} to {self.ci_upper:.4f}, p = {self.pval:.4g}); "
                f"slope {self.slope:.4f} (SE {self.slope_se:.4f}, p = {self.slope_pval:.4g}); tau^2 = {self.tau2:.4f}")

    def __repr__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """JSON-ready: every field but ``fit``."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "fit"}
        return json_ready(out)


def _regression(res, predictor: str, method: str | None, kind: str) -> PetPeeseResult:
    from bayes_se.frequentist.rma import rma

    if not getattr(res, "int_only", False):
        raise SpecError(f"{kind} needs a model without moderators (the intercept is the corrected effect)",
                        key="mods")
    method = res.method if method is None else str(method).upper()
    x = np.sqrt(res.vi) if predictor == "sei" else np.asarray(res.vi, float)
    fit = rma(res.yi, res.vi, X=x[:, None], coef_names=[predictor], method=method, test=res.test,
              level=res.level, slab=list(res.slab), r2=False, threshold=res.threshold)
    return PetPeeseResult(
        kind=kind, estimate=float(fit.beta[0]), se=float(fit.se[0]), stat=float(fit.stat[0]),
        pval=float(fit.pval[0]), ci_lower=float(fit.ci_lower[0]), ci_upper=float(fit.ci_upper[0]),
        slope=float(fit.beta[1]), slope_se=float(fit.se[1]), slope_stat=float(fit.stat[1]),
        slope_pval=float(fit.pval[1]), tau2=float(fit.tau2), method=fit.method, test=fit.test,
        level=fit.level, fit=fit,
    )


def pet(res, method: str | None = None) -> PetPeeseResult:
    """PET: the meta-regression ``y_i = b0 + b1 sqrt(v_i) + u_i + e_i``; ``b0`` is the corrected effect.

    Parameters
    ----------
    res : RMAResult
        The unadjusted model without moderators (its studies, level and test are used).
    method : str, optional
        tau^2 estimator of the regression (default: that of ``res``; ``"EE"``: fixed-effect weights).

    Returns
    -------
    PetPeeseResult

    References
    ----------
    Stanley & Doucouliagos (2014); metafor ``rma(yi, vi, mods = ~ sqrt(vi))``.
    """
    return _regression(res, "sei", method, "PET")


def peese(res, method: str | None = None) -> PetPeeseResult:
    """PEESE: the meta-regression ``y_i = b0 + b1 v_i + u_i + e_i``; ``b0`` is the corrected effect.

    Parameters and return as :func:`pet` (metafor ``rma(yi, vi, mods = ~ vi)``).

    References
    ----------
    Stanley & Doucouliagos (2014).
    """
    return _regression(res, "vi", method, "PEESE")


def pet_peese(res, alpha: float = 0.10, alternative: str = "two.sided", method: str | None = None) -> PetPeeseResult:
    """The conditional PET-PEESE estimator: PEESE if PET's intercept differs from 0, else PET.

    ``b0_PET`` tested with its Wald (or Knapp-Hartung t) p-value: two-sided below ``alpha``
    (default 0.10, the one-sided 5% test in either direction; Stanley & Doucouliagos 2014, Stanley
    2017), or one-sided (``alternative="greater"``/``"less"``) below ``alpha``.

    Parameters
    ----------
    res : RMAResult
    alpha : float, default 0.10
    alternative : {"two.sided", "greater", "less"}
    method : str, optional
        As :func:`pet`.

    Returns
    -------
    PetPeeseResult
        ``kind="PET-PEESE"``, ``chosen`` ``"PET"`` or ``"PEESE"``, ``pet_pval`` the p-value used.

    References
    ----------
    Stanley, T. D., & Doucouliagos, H. (2014). *Research Synthesis Methods*, 5(1), 60-78.
    """
    if not 0 < alpha < 1:
        raise SpecError(f"alpha must be between 0 and 1 (got {alpha})", key="alpha")
    if alternative not in ("two.sided", "greater", "less"):
        raise SpecError(f"unknown alternative {alternative!r} (use 'two.sided', 'greater' or 'less')",
                        key="alternative")
    p = pet(res, method)
    if alternative == "two.sided":
        p_test = p.pval
    else:
        dist = stats.t(p.fit.df) if p.test == "knha" else stats.norm()
        p_test = float(dist.sf(p.stat) if alternative == "greater" else dist.cdf(p.stat))
    chosen = peese(res, method) if (math.isfinite(p_test) and p_test < alpha) else p
    fields = {f: getattr(chosen, f) for f in chosen.__dataclass_fields__}
    fields.update(kind="PET-PEESE", chosen=chosen.kind, alpha=alpha, alternative=alternative, pet_pval=p_test)
    return PetPeeseResult(**fields)
