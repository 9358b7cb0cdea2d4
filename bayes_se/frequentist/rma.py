"""Univariate fixed-/random-/mixed-effects meta-analysis: the twin of metafor's ``rma.uni``.

Model: ``y_i = x_i' beta + u_i + e_i``, ``u_i ~ N(0, tau^2)``, ``e_i ~ N(0, v_i)``; ``beta`` by
weighted least squares with weights ``1 / (v_i + tau^2)``, ``tau^2`` by one of the estimators of
:mod:`bayes_se.frequentist.tau2`; Wald-type z tests or Knapp-Hartung t/F tests.

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software*, 36(3), 1-48 (metafor 3.8-1, ``R/rma.uni.r``, ``R/predict.rma.r``,
``R/blup.rma.uni.r``).
Knapp, G., & Hartung, J. (2003). Improved tests for a random effects meta-regression with a single
covariate. *Statistics in Medicine*, 22(17), 2693-2710.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from bayes_se.errors import DataError, SpecError
from bayes_se.formula import design_matrix
from bayes_se.frequentist.common import coef_table, effect_inputs, format_coef_table, json_ready, prediction_frame
from bayes_se.frequentist.dist import stats  # scipy.stats' functions without its import cost
from bayes_se.frequentist.tau2 import (
    METHODS,
    THRESHOLD,
    estimate_tau2,
    ResidualProjection,
    profile_likelihood_ci,
    qprofile_ci,
)

__all__ = ["rma", "RMAResult"]

_ALIASES = {"FE": "EE", "CE": "EE"}


def _critical(test: str, level: float, df: int) -> float:
    alpha = 1 - level
    return stats.t.isf(alpha / 2, df) if test == "knha" else stats.norm.isf(alpha / 2)


class RMAResult:
    """A fitted univariate meta-analytic model (metafor ``rma.uni`` object).

    Attributes use metafor's names in snake case: ``k``, ``p``, ``method``, ``test``, ``beta``,
    ``se``, ``stat``, ``pval``, ``ci_lower``, ``ci_upper``, ``coef_names``, ``tau2``, ``se_tau2``,
    ``tau``, ``I2``, ``H2``, ``QE``, ``QE_df``, ``QE_p``, ``QM``, ``QM_df``, ``QM_p``, ``R2``,
    ``weights`` (percent), ``fit_stats`` (DataFrame, rows ll/dev/AIC/BIC/AICc, columns ML/REML),
    ``vcov``, ``s2w`` (Knapp-Hartung scale factor), ``df`` (t/F denominator df, None for z),
    ``yi``, ``vi``, ``X``, ``slab``, ``level``, ``threshold``, ``omitted_rows`` (1-based data rows
    left out for a missing moderator).
    """

    omitted_rows: tuple = ()  # none unless the fit left rows out
    data = None  # the fitted rows of the data frame, when the model was fitted from one

    def __init__(self, **fields):
        self.__dict__.update(fields)

    # ------------------------------------------------------------------ derived quantities
    @property
    def int_only(self) -> bool:
        """True for the model without moderators."""
        return self.p == 1 and self.intercept

    def predict(self, newmods=None) -> pd.DataFrame:
        """Predicted (average) effects with confidence and prediction intervals (metafor ``predict``).

        Parameters
        ----------
        newmods : array_like, optional
            Moderator values without the intercept column, shape (m, p-1) or (p-1,). By default the
            intercept-only model gives the pooled estimate and a meta-regression the fitted value of
            each study.

        Returns
        -------
        pandas.DataFrame
            Columns ``pred``, ``se``, ``ci_lower``, ``ci_upper``, ``pi_lower``, ``pi_upper``; the
            prediction interval is ``pred +/- crit sqrt(se^2 + tau^2)`` (NaN for an equal-effects
            model), ``crit`` from N(0,1) or t(k-p) under Knapp-Hartung.
        """
        if newmods is None:
            Xnew = self.X[:1] if self.int_only else self.X
        else:
            m = np.atleast_2d(np.asarray(newmods, float))
            n_mods = self.p - int(self.intercept)
            if m.shape[1] != n_mods and m.shape[0] == n_mods and m.shape[1] == 1:
                m = m.T
            if m.shape[1] != n_mods:
                raise DataError(f"newmods needs {n_mods} column(s) ({', '.join(self.coef_names[int(self.intercept):])})")
            Xnew = np.column_stack([np.ones(len(m)), m]) if self.intercept else m
        pred = Xnew @ self.beta
        se = np.sqrt(np.einsum("ij,jk,ik->i", Xnew, self.vcov, Xnew))
        crit = _critical(self.test, self.level, self.k - self.p)
        return prediction_frame(pred, se, crit, None if self.method == "EE" else self.tau2)

    def coef_table(self) -> pd.DataFrame:
        """Coefficients: index ``coef_names``; columns ``estimate, se, stat, pval, ci_lower, ci_upper``."""
        return coef_table(self.coef_names, self.beta, self.se, self.stat, self.pval, self.ci_lower,
                          self.ci_upper)

    def confint_tau2(self, type: str = "QP") -> pd.DataFrame:
        """Confidence intervals for ``tau^2``, ``tau``, ``I^2`` and ``H^2`` (metafor ``confint``).

        Parameters
        ----------
        type : {"QP", "PL"}
            Q-profile (metafor's default, Viechtbauer 2007) or profile likelihood (ML/REML only).

        Returns
        -------
        pandas.DataFrame
            Index ``tau2``, ``tau``, ``I2``, ``H2``; columns ``estimate``, ``ci_lower``, ``ci_upper``.
        """
        if self.method == "EE":
            raise SpecError("an equal-effects model has no tau^2 to profile", key="method")
        if type == "QP":
            lb, ub = qprofile_ci(self.yi, self.vi, self.X, self.tau2, self.level)
        elif type == "PL":
            if self.method not in ("ML", "REML"):
                raise SpecError("profile-likelihood intervals need method ML or REML", key="type")
            lb, ub = profile_likelihood_ci(self.yi, self.vi, self.X, self.tau2, self.method == "REML", self.level)
        else:
            raise SpecError(f"unknown interval type {type!r} (use 'QP' or 'PL')", key="type")
        vt = self.vt
        rows = {
            "tau2": (self.tau2, lb, ub),
            "tau": (self.tau, math.sqrt(lb), math.sqrt(ub)),
            "I2": (self.I2, 100 * lb / (vt + lb), 100 * ub / (vt + ub)),
            "H2": (self.H2, lb / vt + 1, ub / vt + 1),
        }
        return pd.DataFrame.from_dict(rows, orient="index", columns=["estimate", "ci_lower", "ci_upper"])

    def blup(self) -> pd.DataFrame:
        """Best linear unbiased predictions of the study effects ``theta_i`` (metafor ``blup``).

        ``pred_i = l_i y_i + (1 - l_i) x_i' beta`` with ``l_i = tau^2 / (tau^2 + v_i)`` and variance
        ``l_i v_i + (1 - l_i)^2 x_i' V_beta x_i`` (Raudenbush & Bryk, 1985, appendix).

        Returns
        -------
        pandas.DataFrame
            Index: study labels; columns ``pred``, ``se``, ``pi_lower``, ``pi_upper``.
        """
        li = self.tau2 / (self.tau2 + self.vi)
        fitted = self.X @ self.beta
        pred = li * self.yi + (1 - li) * fitted
        vpred = li * self.vi + (1 - li) ** 2 * np.einsum("ij,jk,ik->i", self.X, self.vcov, self.X)
        se = np.sqrt(vpred)
        crit = _critical(self.test, self.level, self.k - self.p)
        return pd.DataFrame(
            {"pred": pred, "se": se, "pi_lower": pred - crit * se, "pi_upper": pred + crit * se},
            index=pd.Index(self.slab, name="study"),
        )

    def refit(self, keep, r2: bool = True) -> "RMAResult":
        """The same model (design, method, test, level, threshold) fitted to the studies in ``keep``.

        Parameters
        ----------
        keep : array_like of bool or int
            A mask over the ``k`` studies, or their indices.
        r2 : bool, default True
            Compute the pseudo-R^2 (a second fit; influence diagnostics skip it, as metafor).
        """
        keep = np.asarray(keep)
        return rma(self.yi[keep], self.vi[keep], X=self.X[keep], coef_names=self.coef_names, intercept=False,
                   method=self.method, test=self.test, level=self.level, slab=np.asarray(self.slab)[keep],
                   threshold=self.threshold, r2=r2)

    def leave1out(self) -> pd.DataFrame:
        """Leave-one-out refits; see :func:`bayes_se.frequentist.influence.leave1out`."""
        from bayes_se.frequentist.influence import leave1out

        return leave1out(self)

    def influence(self) -> pd.DataFrame:
        """Outlier and influence diagnostics (metafor ``influence``); see
        :func:`bayes_se.frequentist.influence.influence`."""
        from bayes_se.frequentist.influence import influence

        return influence(self)

    def cumul(self, order=None) -> pd.DataFrame:
        """Cumulative meta-analysis (metafor ``cumul``); ``order`` is a column of the fitted data
        (its name) or one sort key per study; see :func:`bayes_se.frequentist.influence.cumul`."""
        from bayes_se.frequentist.influence import cumul

        if isinstance(order, str):
            frame = getattr(self, "data", None)
            if frame is None or order not in frame.columns:
                raise SpecError(f"no column {order!r} in the data this model was fitted to", key="order")
            order = frame[order].to_numpy()
        return cumul(self, order)

    # ------------------------------------------------------------------ output
    def summary(self) -> str:
        """A printable table in the spirit of metafor's ``print.rma.uni``."""
        kind = "Equal-Effects Model" if self.method == "EE" else (
            "Random-Effects Model" if self.int_only else "Mixed-Effects Model")
        lines = [f"{kind} (k = {self.k}; tau^2 estimator: {self.method})", ""]
        if self.method != "EE":
            lines.append(f"tau^2 (estimated amount of {'total' if self.int_only else 'residual'} heterogeneity): "
                         f"{self.tau2:.4f} (SE = {self.se_tau2:.4f})")
            lines.append(f"tau (square root of estimated tau^2 value):  {self.tau:.4f}")
        lines.append(f"I^2: {self.I2:.2f}%    H^2: {self.H2:.2f}")
        if self.R2 is not None:
            lines.append(f"R^2 (amount of heterogeneity accounted for): {self.R2:.2f}%")
        lines.append("")
        lines.append(f"Test for {'Heterogeneity' if self.int_only else 'Residual Heterogeneity'}: "
                     f"Q(df = {self.QE_df}) = {self.QE:.4f}, p = {self.QE_p:.4g}")
        if not self.int_only:
            if self.test == "knha":
                lines.append(f"Test of Moderators: F(df1 = {self.QM_df[0]}, df2 = {self.QM_df[1]}) = "
                             f"{self.QM:.4f}, p = {self.QM_p:.4g}")
            else:
                lines.append(f"Test of Moderators: QM(df = {self.QM_df[0]}) = {self.QM:.4f}, p = {self.QM_p:.4g}")
        lines.append("")
        lines += format_coef_table(self.coef_table(), "tval" if self.test == "knha" else "zval")
        if self.coding:
            lines.append("")
            lines.extend(self.coding)
        if self.omitted_rows:
            lines.append(f"rows left out for a missing moderator: {', '.join(map(str, self.omitted_rows))}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict:
        """JSON-ready summary (``None`` where a value is undefined, never NaN).

        The keys every frequentist result shares (``model``, ``level``, ``coefficients``, ``vcov``,
        ``QM``, ``QM_df``, ``QM_p``), those shared with ``rma_mv`` (``k``, ``p``, ``method``, ``test``,
        ``df``, ``estimate``, ``se``, ``ci_lower``, ``ci_upper`` of the first coefficient,
        ``pi_lower``, ``pi_upper`` (intercept-only models), ``Q``, ``Q_df``, ``Q_p``, ``fit_stats``),
        then ``tau2``, ``tau2_ci_lower``, ``tau2_ci_upper`` (Q-profile), ``I2``, ``H2``, ``R2``.
        """
        pr = self.predict().iloc[0]
        if self.method == "EE":
            ci = (None, None)
        else:
            ci = tuple(self.confint_tau2().loc["tau2", ["ci_lower", "ci_upper"]])
        out = {
            "model": "rma",
            "level": self.level,
            "coefficients": self.coef_table(),
            "vcov": self.vcov,
            "QM": self.QM,
            "QM_df": list(self.QM_df),
            "QM_p": self.QM_p,
            "k": int(self.k),
            "p": int(self.p),
            "method": self.method,
            "test": self.test,
            "df": self.df,
            "estimate": self.beta[0],
            "se": self.se[0],
            "ci_lower": self.ci_lower[0],
            "ci_upper": self.ci_upper[0],
            "pi_lower": pr["pi_lower"] if self.int_only else None,
            "pi_upper": pr["pi_upper"] if self.int_only else None,
            "Q": self.QE,
            "Q_df": self.QE_df,
            "Q_p": self.QE_p,
            "fit_stats": {m: self.fit_stats[m].to_dict() for m in self.fit_stats.columns},
            "tau2": self.tau2,
            "se_tau2": self.se_tau2,  # metafor's se.tau2 (None for EE)
            "tau2_ci_lower": ci[0],
            "tau2_ci_upper": ci[1],
            "I2": self.I2,
            "H2": self.H2,
            "R2": self.R2,
            "omitted_rows": [int(r) for r in self.omitted_rows],
        }
        return json_ready(out)


def _resolve_inputs(yi, vi, mods, X, data, slab, coef_names, intercept, na="omit"):
    """Turn the flexible user input into (yi, vi, X, names, slab, intercept, coding lines, omitted rows)."""
    yi, vi, frame, reserved, slab = effect_inputs(yi, vi, data, slab)
    k = len(yi)
    coding: list[str] = []
    omitted: list[int] = []
    if mods is not None and X is not None:
        raise SpecError("give either a moderator formula 'mods' or a design matrix 'X', not both", key="mods")
    if mods is not None:
        if frame is None:
            raise SpecError("a moderator formula needs a data frame ('data=' or an EffectData)", key="mods")
        frame = pd.DataFrame(frame).reset_index(drop=True)
        if len(frame) != k:
            raise DataError(f"the data frame has {len(frame)} rows but there are {k} effect sizes")
        design = design_matrix(frame, mods, intercept=intercept, na=na, reserved=reserved,
                               labels=None if slab is None else [str(s) for s in slab])
        Xm, names, coding, omitted = design.X, design.names, design.coding, design.omitted_rows
        has_int = names[0] == "intercept"
        if omitted:  # the rows with a missing moderator leave the whole model
            keep = design.rows
            yi, vi = yi[keep], vi[keep]
            slab = [str(i + 1) for i in keep] if slab is None else [str(slab[i]) for i in keep]
            k = len(yi)
    elif X is not None:
        Xm = np.asarray(X, float)
        if Xm.ndim == 1:
            Xm = Xm[:, None]
        if Xm.shape[0] != k:
            raise DataError(f"X has {Xm.shape[0]} rows but there are {k} effect sizes")
        names = list(coef_names) if coef_names is not None else [f"x{j + 1}" for j in range(Xm.shape[1])]
        if len(names) != Xm.shape[1]:
            raise SpecError(f"{len(names)} coef_names for {Xm.shape[1]} columns of X", key="coef_names")
        if intercept:
            Xm = np.column_stack([np.ones(k), Xm])
            names = ["intercept"] + names
        bad = np.argwhere(~np.isfinite(Xm))
        if bad.size:
            raise DataError("missing or non-finite moderator value", row=int(bad[0, 0]) + 1, column=names[bad[0, 1]])
        if np.linalg.matrix_rank(Xm) < Xm.shape[1]:
            raise DataError("design matrix X is not of full column rank")
        ones = np.flatnonzero(np.all(Xm == 1.0, axis=0))
        has_int = intercept or ones.size > 0
        if not intercept and ones.size and ones[0] != 0:  # as metafor: the intercept goes first
            order = [ones[0]] + [j for j in range(Xm.shape[1]) if j != ones[0]]
            Xm, names = Xm[:, order], [names[j] for j in order]
    else:
        Xm, names, has_int = np.ones((k, 1)), ["intercept"], True
    if slab is None:
        slab = [str(i + 1) for i in range(k)]
    slab = [str(s) for s in slab]
    if len(slab) != k:
        raise DataError(f"{len(slab)} study labels for {k} effect sizes", column="study")
    return yi, vi, Xm, names, slab, has_int, coding, omitted


def rma(
    yi,
    vi=None,
    *,
    mods: str | None = None,
    X=None,
    data=None,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    slab=None,
    coef_names=None,
    intercept: bool = True,
    r2: bool = True,
    threshold: float = THRESHOLD,
    na: str = "omit",
    scale=None,
) -> RMAResult:
    """Fit a fixed-, random- or mixed-effects meta-analysis exactly as metafor 3.8-1 ``rma.uni``.

    ``y_i = x_i' beta + u_i + e_i``, ``u_i ~ N(0, tau^2)``, ``e_i ~ N(0, v_i)`` (``tau^2 = 0`` for EE).

    Parameters
    ----------
    yi : array_like or EffectData-like
        Effect sizes, or an object with ``.yi``, ``.vi``, ``.study`` and ``.frame``.
    vi : array_like, optional
        Sampling variances (taken from ``yi`` when it is an EffectData).
    mods : str, optional
        Moderator formula for :func:`bayes_se.formula.design_matrix` on ``data`` or the
        EffectData's frame.
    X : array_like, optional
        Moderator matrix (without intercept when ``intercept=True``), with optional ``coef_names``.
    data : pandas.DataFrame, optional
    method : {"REML", "ML", "DL", "PM", "EB", "SJ", "HS", "HE", "EE"}, default "REML"
        ``FE`` and ``CE`` are accepted for ``EE``.
    test : {"z", "knha"}, default "z"
        Wald z tests or Knapp-Hartung t tests (df = k - p) with F omnibus test.
    level : float, default 0.95
        Confidence level.
    slab : sequence of str, optional
        Study labels.
    coef_names : sequence of str, optional
        Names of the columns of ``X``.
    intercept : bool, default True
        Add an intercept.
    r2 : bool, default True
        Compute the pseudo-R^2 (needs a second fit without moderators).
    threshold : float, default 1e-12
        Convergence threshold of Fisher scoring for ML/REML/EB (metafor's ``control$threshold``,
        whose metafor default is 1e-5).
    na : {"omit", "error"}, default "omit"
        A row with a missing moderator of ``mods``: left out with a warning (metafor's
        ``na.omit``; listed in ``omitted_rows``) or refused with a DataError naming row and column.
    scale : str or array_like, optional
        A scale formula (``"~ guided"``): fits the location-scale model ``log tau_i^2 = z_i' alpha``
        (metafor's ``rma(..., scale=)``; ML or REML) and returns a
        :class:`~bayes_se.frequentist.location_scale.LocationScaleResult`; see
        :func:`~bayes_se.frequentist.location_scale.rma_ls`.

    Returns
    -------
    RMAResult

    Raises
    ------
    DataError
        Non-positive, missing or non-finite ``vi``/``yi`` (the row is named), fewer than 2
        studies, or too few studies for the number of coefficients.
    SpecError
        Unknown ``method`` or ``test``.

    References
    ----------
    Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *JSS*, 36(3).
    """
    if scale is not None:  # the location-scale model (Viechtbauer & Lopez-Lopez 2022)
        from bayes_se.frequentist.location_scale import rma_ls

        if coef_names is not None or not intercept or not r2 or threshold != THRESHOLD:
            raise SpecError("a location-scale model (scale=) takes yi, vi, mods or X, data, method, test, level, "
                            "slab and na", key="scale")
        return rma_ls(yi, vi, mods=mods, scale=scale, X=X, data=data, method=method, test=test, level=level,
                      slab=slab, na=na)
    method_in = str(method).upper()
    method = _ALIASES.get(method_in, method_in)
    if method not in METHODS:
        raise SpecError(f"unknown method {method_in!r} (use one of {', '.join(METHODS)}, FE, CE)", key="method")
    test = str(test).lower()
    if test not in ("z", "knha"):
        raise SpecError(f"unknown test {test!r} (use 'z' or 'knha')", key="test")
    if not 0 < level < 1:
        raise SpecError(f"level must be between 0 and 1 (got {level})", key="level")
    frame = data if data is not None else getattr(yi, "frame", None)  # kept for res.cumul(order="column")
    yi, vi, Xm, names, slab, has_int, coding, omitted = _resolve_inputs(yi, vi, mods, X, data, slab, coef_names,
                                                                         intercept, na)
    k, p = Xm.shape
    if k < 2:
        raise DataError(f"need at least 2 studies (got {k})")
    n_par = p if method == "EE" else p + 1
    if n_par > k:
        raise DataError(f"{n_par} parameters to estimate from {k} studies: too few studies for this model")

    est = estimate_tau2(yi, vi, Xm, method, threshold=threshold)
    tau2 = est.tau2
    w = 1.0 / (vi + tau2)
    XtWX = Xm.T @ (Xm * w[:, None])
    vb = np.linalg.inv(XtWX)
    beta = vb @ (Xm.T @ (w * yi))
    rss_f = float(np.sum(w * (yi - Xm @ beta) ** 2))
    s2w = 1.0
    if test == "knha":
        s2w = 0.0 if rss_f <= np.finfo(float).eps else rss_f / (k - p)
    vb = s2w * vb
    int_only = p == 1 and has_int
    btt = np.arange(1, p) if (has_int and not int_only) else np.arange(p)
    m = len(btt)
    QM = _wald(beta[btt], vb[np.ix_(btt, btt)])
    se = np.sqrt(np.diag(vb))
    with np.errstate(divide="ignore", invalid="ignore"):  # se = 0 (knha, identical effects): as metafor
        stat = beta / se
    if test == "knha":
        df = k - p
        QM = QM / m
        QM_df = (m, df)
        QM_p = float(stats.f.sf(QM, m, df))
        pval = 2 * stats.t.sf(np.abs(stat), df)
    else:
        df = None
        QM_df = (m, None)
        QM_p = float(stats.chi2.sf(QM, m))
        pval = 2 * stats.norm.sf(np.abs(stat))
    crit = _critical(test, level, k - p)
    ci_lower, ci_upper = beta - crit * se, beta + crit * se

    # heterogeneity test and I^2/H^2 (always inverse-variance weights 1/v_i; metafor's i2def "1")
    ymc = yi - yi.mean()
    P_fe = ResidualProjection(1.0 / vi, Xm)  # O(k) memory: never the k x k matrix
    QE = max(0.0, P_fe.quad(ymc))
    QE_p = float(stats.chi2.sf(QE, k - p)) if k > p else 1.0  # as metafor: QE(df = 0) = 0, p = 1
    vt = (k - p) / P_fe.trace() if k > p else math.nan  # k = p (EE only): no residual df
    if k == p:
        I2, H2 = 0.0, 1.0  # what metafor reports for a saturated common-effect model
    elif method == "EE":
        I2 = max(0.0, 100 * (QE - (k - p)) / QE) if QE > 0 else 0.0  # QE = 0: identical effects
        H2 = QE / (k - p)
    else:
        I2 = 100 * tau2 / (vt + tau2)
        H2 = tau2 / vt + 1

    # fit statistics (ML and REML log likelihoods, as metafor)
    parms = p + (0 if method == "EE" else 1)
    ll_ml = -0.5 * k * np.log(2 * np.pi) - 0.5 * np.sum(np.log(vi + tau2)) - 0.5 * rss_f
    ll_reml = (-0.5 * (k - p) * np.log(2 * np.pi) + 0.5 * np.linalg.slogdet(Xm.T @ Xm)[1]
               - 0.5 * np.sum(np.log(vi + tau2)) - 0.5 * np.linalg.slogdet(XtWX)[1] - 0.5 * rss_f)
    dev_ml = -2 * (ll_ml - np.sum(stats.norm.logpdf(yi, yi, np.sqrt(vi))))
    dev_reml = -2 * ll_reml
    with np.errstate(divide="ignore", invalid="ignore"):  # k = p: log(k - p) of the REML BIC is -inf
        fit_stats = pd.DataFrame(
            {
                "ML": [ll_ml, dev_ml, -2 * ll_ml + 2 * parms, -2 * ll_ml + parms * np.log(k),
                       -2 * ll_ml + 2 * parms * max(k, parms + 2) / (max(k, parms + 2) - parms - 1)],
                "REML": [ll_reml, dev_reml, -2 * ll_reml + 2 * parms, -2 * ll_reml + parms * np.log(k - p),
                         -2 * ll_reml + 2 * parms * max(k - p, parms + 2) / (max(k - p, parms + 2) - parms - 1)],
            },
            index=["ll", "dev", "AIC", "BIC", "AICc"],
        )

    R2 = None
    if r2 and has_int and not int_only:
        R2 = _pseudo_r2(yi, vi, Xm, method, tau2, w, threshold)

    return RMAResult(
        k=k, p=p, method=method, test=test, level=level, intercept=has_int,
        beta=beta, se=se, stat=stat, pval=pval, ci_lower=ci_lower, ci_upper=ci_upper,
        coef_names=names, vcov=vb, df=df, s2w=s2w,
        tau2=tau2, se_tau2=est.se_tau2, tau=math.sqrt(tau2), I2=I2, H2=H2, vt=vt,
        QE=QE, QE_df=k - p, QE_p=QE_p, QM=QM, QM_df=QM_df, QM_p=QM_p, R2=R2,
        weights=100 * w / w.sum(), fit_stats=fit_stats,
        yi=yi, vi=vi, X=Xm, slab=slab, coding=coding, threshold=threshold, omitted_rows=omitted,
        data=_kept_rows(frame, k, omitted),
    )


def _kept_rows(frame, k, omitted):
    """The data frame's rows that were fitted (None when there is no frame of k rows)."""
    if frame is None:
        return None
    frame = pd.DataFrame(frame).reset_index(drop=True)
    if omitted:
        frame = frame.drop(index=[r - 1 for r in omitted]).reset_index(drop=True)
    return frame if len(frame) == k else None


def _wald(b, V) -> float:
    """Wald statistic ``b' V^-1 b``; NaN where ``V`` is not positive definite, as metafor's
    ``chol2inv(chol(vb))`` fails to NA (Knapp-Hartung with a residual sum of squares of 0, i.e.
    effects the model fits exactly, scales ``vb`` to 0)."""
    try:
        L = np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        return math.nan
    z = np.linalg.solve(L, b)
    return float(z @ z)


def _pseudo_r2(yi, vi, X, method, tau2, w, threshold):
    """metafor's pseudo-R^2: ``(tau2_RE - tau2_ME) / tau2_RE`` in percent, truncated at 0.

    For EE, the adjusted R^2 of the weighted least-squares regression (metafor ``lm(yi ~ X,
    weights = wi)``).
    """
    k, p = X.shape
    if method != "EE":
        tau2_re = estimate_tau2(yi, vi, np.ones((k, 1)), method, threshold=threshold).tau2
        if tau2_re == 0:
            return 0.0
        return max(0.0, 100 * (tau2_re - tau2) / tau2_re)
    if np.var(yi) == 0:
        return 0.0
    sw = np.sqrt(w)
    beta, *_ = np.linalg.lstsq(X * sw[:, None], yi * sw, rcond=None)
    fitted = X @ beta
    rss = np.sum(w * (yi - fitted) ** 2)
    mss = np.sum(w * (fitted - np.average(fitted, weights=w)) ** 2)
    r2 = mss / (mss + rss)
    if k == p:  # saturated: no residual df (metafor reports NA)
        return math.nan
    adj = 1 - (1 - r2) * (k - 1) / (k - p)
    return max(0.0, 100 * adj)
