"""The fitted model of :func:`bayes_se.frequentist.multilevel.rma_mv` (metafor's ``rma.mv`` object).

Fixed effects ``beta = (X' M^-1 X)^-1 X' M^-1 y`` with Wald z (or t, ``df = k - p``) tests and
intervals ``beta +/- crit se``; predictions ``x' beta`` with prediction intervals
``pred +/- crit sqrt(se^2 + sum sigma2)`` (``tau2`` for CS/UN), as metafor 3.8-1 ``predict.rma``.

References
----------
Viechtbauer, W. (2010). *J. Stat. Softw.*, 36(3) (metafor ``rma.mv``, ``predict.rma``,
``confint.rma.mv``, ``print.rma.mv``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist.common import coef_table, format_coef_table, format_p, json_ready, prediction_frame
from bayes_se.frequentist.mv_likelihood import Problem
from bayes_se.frequentist.mv_profile import profile_ci

__all__ = ["RmaMvResult"]


@dataclass(eq=False)
class RmaMvResult:
    """A fitted :func:`~bayes_se.frequentist.multilevel.rma_mv` model.

    Attributes
    ----------
    beta, se, stat, pval, ci_lower, ci_upper : ndarray
        Fixed effects with z (or t, ``df = k - p``) tests and Wald intervals.
    vcov : ndarray
        ``(X' M^-1 X)^-1`` at the estimated variance components.
    sigma2, sigma2_names, sigma2_levels
        Nested variance components (``struct=None``), else None.
    tau2, rho, G, G_names
        ``struct="CS"``/``"UN"``: variances, correlations (lower triangle, column-major) and
        the between-study covariance matrix over outcomes.
    QE, QE_df, QE_p
        Cochran's ``Q = y' P_V y`` (residual heterogeneity) with its chi-square test.
    QM, QM_df, QM_p
        Wald test of the coefficients ``btt`` (all but the intercept); an F value under ``t``.
    fit_stats : dict
        ``{"ML": {...}, "REML": {...}}`` with ll, dev, AIC, BIC, AICc, both at the estimates.
    problem : bayes_se.frequentist.mv_likelihood.Problem
        The likelihood (data, structure, method), for profile intervals.
    theta : ndarray
        The estimated linear variance parameters.
    """

    method: str
    test: str
    level: float
    k: int
    p: int
    coef_names: list
    beta: np.ndarray
    se: np.ndarray
    stat: np.ndarray
    pval: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    vcov: np.ndarray
    df: int | None
    struct: str | None
    QE: float
    QE_df: int
    QE_p: float
    QM: float
    QM_df: tuple
    QM_p: float
    btt: list
    fit_stats: dict
    rows: np.ndarray
    sigma2: np.ndarray | None = None
    sigma2_names: list | None = None
    sigma2_levels: list | None = None
    tau2: np.ndarray | None = None
    rho: np.ndarray | None = None
    G: np.ndarray | None = None
    G_names: list | None = None
    n_study: int | None = None
    problem: Problem | None = field(default=None, repr=False)
    theta: np.ndarray | None = field(default=None, repr=False)
    _confint: dict = field(default_factory=dict, repr=False)
    omitted_rows: list = field(default_factory=list)  # 1-based rows left out (missing values)

    @property
    def ll(self) -> float:
        """Log-likelihood of the fitted method (restricted for REML)."""
        return self.fit_stats[self.method]["ll"]

    @property
    def dev(self) -> float:
        return self.fit_stats[self.method]["dev"]

    @property
    def AIC(self) -> float:
        return self.fit_stats[self.method]["AIC"]

    @property
    def BIC(self) -> float:
        return self.fit_stats[self.method]["BIC"]

    @property
    def AICc(self) -> float:
        return self.fit_stats[self.method]["AICc"]

    @property
    def icc(self) -> float | None:
        """Share of the cluster level in the total heterogeneity, ``sigma2_1 / (sigma2_1 + sigma2_2)``."""
        if self.sigma2 is None or len(self.sigma2) != 2:
            return None
        return float(self.sigma2[0] / np.sum(self.sigma2))

    @property
    def int_only(self) -> bool:
        """True for the model without moderators (one all-ones column)."""
        return self.p == 1 and bool(np.all(self.problem.X == 1.0))

    def _crit(self) -> float:
        dist = stats.t(self.df) if self.test == "t" else stats.norm()
        return float(dist.ppf(0.5 + self.level / 2))

    def coef_table(self) -> pd.DataFrame:
        """Coefficients: index ``coef_names``; columns ``estimate, se, stat, pval, ci_lower, ci_upper``."""
        return coef_table(self.coef_names, self.beta, self.se, self.stat, self.pval, self.ci_lower,
                          self.ci_upper)

    def predict(self, newX=None, outcome=None) -> pd.DataFrame:
        """Predicted average effects ``x' beta`` with confidence and prediction intervals.

        Parameters
        ----------
        newX : array_like, optional
            Rows of moderator values (all ``p`` columns, intercept included). Default: the
            intercept for an intercept-only model, else the rows of the design matrix.
        outcome : optional
            ``struct="UN"`` only: the outcome whose ``tau2`` enters the prediction interval.

        Returns
        -------
        pandas.DataFrame
            Columns ``pred, se, ci_lower, ci_upper, pi_lower, pi_upper`` (metafor's ``pred, se,
            ci.lb, ci.ub, pi.lb, pi.ub``); the prediction interval is
            ``pred +/- crit * sqrt(se^2 + sum(sigma2))`` (``tau2`` for CS / UN), as metafor, and NaN
            for ``struct="UN"`` without an ``outcome``.
        """
        if newX is None:
            newX = np.ones((1, 1)) if self.p == 1 else self.problem.X
        newX = np.asarray(newX, dtype=float)
        if newX.ndim < 2:  # one row of p values, or (p = 1) a vector of intercept-only rows
            newX = newX.reshape(-1, 1) if self.p == 1 else newX.reshape(1, -1)
        if newX.ndim != 2 or newX.shape[1] != self.p:
            raise DataError(f"newX needs {self.p} columns, got shape {newX.shape}", column="newX")
        pred = newX @ self.beta
        se = np.sqrt(np.einsum("ij,jk,ik->i", newX, self.vcov, newX))
        if self.sigma2 is not None:
            extra = float(np.sum(self.sigma2))
        elif self.struct == "CS":
            extra = float(self.tau2[0])
        elif outcome is not None:
            if str(outcome) not in self.G_names:
                raise SpecError(f"unknown outcome {outcome!r}; levels are {self.G_names}", key="outcome")
            extra = float(self.tau2[self.G_names.index(str(outcome))])
        else:
            extra = None
        return prediction_frame(pred, se, self._crit(), extra)

    def confint_sigma2(self, level: float | None = None) -> pd.DataFrame:
        """Profile-likelihood confidence intervals of each ``sigma2`` (metafor ``confint``).

        The bounds solve ``ll_profile(sigma2_j) = ll_max - chi2_{1, level} / 2`` where the other
        components are re-estimated at each trial value; a lower bound at 0 is reported as 0.

        Returns
        -------
        pandas.DataFrame
            Index: the ``sigma2_names``; columns ``estimate``, ``ci_lower``, ``ci_upper``.
        """
        if self.sigma2 is None:
            raise SpecError("profile intervals are available for the nested sigma2 components only",
                            key="struct")
        level = self.level if level is None else float(level)
        if level not in self._confint:
            self._confint[level] = pd.DataFrame.from_dict(
                {name: profile_ci(self.problem, self.theta, self.ll, j, level)
                 for j, name in enumerate(self.sigma2_names)},
                orient="index", columns=["estimate", "ci_lower", "ci_upper"])
        return self._confint[level].copy()

    def to_dict(self) -> dict:
        """JSON-ready summary (lists and floats; None where a value does not apply or is NaN).

        The keys every frequentist result shares (``model``, ``level``, ``coefficients``, ``vcov``,
        ``QM``, ``QM_df``, ``QM_p``), those shared with ``rma`` (``k``, ``p``, ``method``, ``test``,
        ``df``, ``estimate``, ``se``, ``ci_lower``, ``ci_upper``, ``pi_lower``, ``pi_upper``,
        ``Q``, ``Q_df``, ``Q_p``, ``fit_stats``), then the variance components: ``sigma2``
        (values, names, levels) and ``icc``, or ``tau2``, ``rho``, ``G``, ``G_names``.
        """
        pr = self.predict().iloc[0] if self.int_only else None
        out = {"model": "rma_mv", "level": self.level, "coefficients": self.coef_table(), "vcov": self.vcov,
               "QM": self.QM, "QM_df": list(self.QM_df), "QM_p": self.QM_p,
               "k": self.k, "p": self.p, "method": self.method, "test": self.test, "df": self.df,
               "estimate": self.beta[0], "se": self.se[0], "ci_lower": self.ci_lower[0],
               "ci_upper": self.ci_upper[0],
               "pi_lower": None if pr is None else pr["pi_lower"],
               "pi_upper": None if pr is None else pr["pi_upper"],
               "Q": self.QE, "Q_df": self.QE_df, "Q_p": self.QE_p, "fit_stats": self.fit_stats,
               "struct": self.struct, "omitted_rows": [int(r) for r in self.omitted_rows]}
        if self.sigma2 is not None:
            out["sigma2"] = {"values": self.sigma2, "names": self.sigma2_names,
                             "levels": self.sigma2_levels}
            out["icc"] = self.icc
        else:
            out.update(tau2=self.tau2, rho=self.rho, G=self.G, G_names=self.G_names)
        return json_ready(out)

    def summary(self) -> str:
        """A text report laid out like metafor's ``print.rma.mv``."""
        lines = [f"Multivariate Meta-Analysis Model (k = {self.k}; method: {self.method})", ""]
        fs = self.fit_stats[self.method]
        lines.append("  ".join(f"{h:>9}" for h in ("logLik", "Deviance", "AIC", "BIC", "AICc")))
        lines.append("  ".join(f"{fs[h]:>9.4f}" for h in ("ll", "dev", "AIC", "BIC", "AICc")))
        lines += ["", "Variance Components:", ""]
        if self.sigma2 is not None:
            lines.append(f"{'':<11}{'estim':>9}{'sqrt':>9}{'nlvls':>7}  factor")
            for j, (s2, name, n) in enumerate(zip(self.sigma2, self.sigma2_names, self.sigma2_levels)):
                lines.append(f"sigma^2.{j + 1:<3}{s2:>9.4f}{math.sqrt(s2):>9.4f}{n:>7}  {name}")
        else:
            lines.append(f"outer factor: study (nlvls = {self.n_study}); structure: {self.struct}")
            lines.append(f"{'':<12}{'tau^2':>9}{'tau':>9}")
            for name, t2 in zip(self.G_names if self.struct == "UN" else ["(all)"], self.tau2):
                lines.append(f"{name:<12}{t2:>9.4f}{math.sqrt(t2):>9.4f}")
            lines.append("rho: " + ", ".join(f"{r:.4f}" for r in self.rho))
        lines += ["", "Test for (Residual) Heterogeneity:",
                  f"QE(df = {self.QE_df}) = {self.QE:.4f}, p-val {format_p(self.QE_p)}", ""]
        lines.append(f"Test of Moderators (coefficient(s) {_btt(self.btt)}):")
        if self.test == "t":
            lines.append(f"F(df1 = {self.QM_df[0]}, df2 = {self.QM_df[1]}) = {self.QM:.4f}, "
                         f"p-val {format_p(self.QM_p)}")
        else:
            lines.append(f"QM(df = {self.QM_df[0]}) = {self.QM:.4f}, p-val {format_p(self.QM_p)}")
        lines += ["", "Model Results:", ""]
        lines += format_coef_table(self.coef_table(), "tval" if self.test == "t" else "zval")
        return "\n".join(lines)

def _btt(btt):
    return ":".join(str(b + 1) for b in (btt[0], btt[-1])) if len(btt) > 1 else str(btt[0] + 1)
