"""Robust variance estimation meta-regression, the twin of robumeta 2.0's ``robu()``.

Model: ``y_ij = x_ij' beta + e_ij`` for effect ``i`` of study (cluster) ``j``, fitted by weighted least
squares with approximately inverse-variance working weights, and inference by the cluster-robust
sandwich (Hedges, Tipton & Johnson 2010):

* correlated effects (``"CORR"``): ``w_ij = 1 / (k_j (vbar_j + tau^2))``, ``vbar_j`` the mean sampling
  variance of study ``j`` with ``k_j`` effects; ``tau^2`` by the method of moments of Hedges et al.
  (2010, eq. 11) for an assumed within-study correlation ``rho``;
* hierarchical effects (``"HIER"``): ``w_ij = 1 / (v_ij + tau^2 + omega^2)`` with between-study
  ``tau^2`` and within-study ``omega^2`` moment estimators (Hedges et al. 2010, appendix);
* ``small=True``: the CR2 adjustment with the working model as target and Satterthwaite degrees of
  freedom (Tipton 2015); ``small=False``: ``V_R`` times ``J / (J - p)`` on ``J - p`` df.

The small-sample machinery is :class:`bayes_se.frequentist.robust.ClusterSandwich` (clubSandwich's
CR2 with ``Theta_j = W_j^-1``, which is what robumeta computes).

References
----------
Hedges, L. V., Tipton, E., & Johnson, M. C. (2010). Robust variance estimation in meta-regression
with dependent effect size estimates. *Research Synthesis Methods*, 1(1), 39-65.
Tipton, E. (2015). Small sample adjustments for robust variance estimation with meta-regression.
*Psychological Methods*, 20(3), 375-393.
Fisher, Z., Tipton, E., & Zhipeng, H. (2017). robumeta: Robust variance meta-regression (R package
2.0), ``R/robu.R``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from bayes_se.data import check_arrays
from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist.dist import stats  # scipy.stats' functions without its import cost
from bayes_se.frequentist.robust import ClusterSandwich, RobustResult, cluster_codes

__all__ = ["robu", "RobuResult"]


class RobuResult(RobustResult):
    """A robumeta-style fit: the robust coefficient table of :class:`RobustResult` plus ``modelweights``,
    ``small``, ``rho`` (CORR), ``tau2``, ``omega2`` (HIER), ``I2`` (CORR), ``weights`` (the final
    working weights, in data order)."""

    def summary(self) -> str:
        """A table in the spirit of robumeta's ``print.robu``."""
        kind = {"CORR": "Correlated Effects", "HIER": "Hierarchical Effects"}[self.modelweights]
        sizes = np.asarray(self.cluster_sizes)
        lines = [f"RVE: {kind} Model" + (" with Small-Sample Corrections" if self.small else ""), "",
                 f"Number of {'studies' if self.modelweights == 'CORR' else 'clusters'} = {self.n_clusters}",
                 f"Number of outcomes = {self.k} (min = {sizes.min()}, mean = {sizes.mean():.3g}, "
                 f"median = {np.median(sizes):g}, max = {sizes.max()})"]
        if self.modelweights == "CORR":
            lines += [f"Rho = {self.rho:g}", f"I.sq = {self.I2:.6g}", f"Tau.sq = {self.tau2:.6g}"]
        else:
            lines += [f"Omega.sq = {self.omega2:.6g}", f"Tau.sq = {self.tau2:.6g}"]
        body = RobustResult.summary(self).split("\n")
        start = next(i for i, line in enumerate(body) if line.strip().startswith("estimate"))
        lines += [""] + body[start:]
        if self.small:
            lines += ["", "Note: if df < 4, do not trust the results"]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The keys of :meth:`RobustResult.to_dict` with ``model = "robu"``, ``modelweights``, ``small``,
        ``rho``, ``tau2``, ``omega2``, ``I2``."""
        out = RobustResult.to_dict(self)
        out.update(modelweights=self.modelweights, small=self.small, rho=self.rho, tau2=self.tau2,
                   omega2=self.omega2, I2=self.I2)
        return out


def _inputs(data, mods, studynum, effect, variance, na):
    """y, v, X, names, study labels of the rows used."""
    from bayes_se.formula import design_matrix

    if not isinstance(data, pd.DataFrame) and hasattr(data, "yi") and hasattr(data, "vi"):  # an EffectData
        frame = pd.DataFrame(data.frame).reset_index(drop=True)
        y, v = data.yi, data.vi
        if studynum is None:
            studynum = data.cluster if getattr(data, "cluster", None) is not None else data.study
        reserved = ("yi", "vi", "study", "cluster")
    else:
        frame = pd.DataFrame(data).reset_index(drop=True)
        for col in (effect, variance):
            if col not in frame.columns:
                raise DataError(f"no column {col!r} (columns: {', '.join(map(str, frame.columns))})", column=col)
        y, v = frame[effect].to_numpy(), frame[variance].to_numpy()
        reserved = (effect, variance)
    if studynum is None:
        raise SpecError("robu() needs the study (cluster) of each effect: studynum=", key="studynum")
    if isinstance(studynum, str):
        if studynum not in frame.columns:
            raise DataError(f"no column {studynum!r} for studynum (columns: {', '.join(map(str, frame.columns))})",
                            column=studynum)
        studies = frame[studynum].tolist()
        name = studynum
    else:
        studies = list(studynum.tolist() if isinstance(studynum, np.ndarray) else studynum)
        name = "studynum"
    y, v = check_arrays(y, v)
    k = len(y)
    codes, _ = cluster_codes(studies, k, name)  # names a missing label's row
    design = design_matrix(frame, mods, intercept=True, na=na, reserved=reserved)
    rows = np.asarray(design.rows)
    return y[rows], v[rows], design.X, list(design.names), codes[rows]


def robu(data, mods: str | None = None, *, studynum=None, effect: str = "yi", variance: str = "vi",
         modelweights: str = "CORR", rho: float = 0.8, small: bool = True, level: float = 0.95,
         na: str = "omit") -> RobuResult:
    """Robust variance estimation meta-regression as robumeta 2.0 ``robu()``.

    ``y_ij = x_ij' beta + e_ij``; ``beta`` by WLS with correlated-effects weights
    ``1 / (k_j (vbar_j + tau^2))`` or hierarchical-effects weights ``1 / (v_ij + tau^2 + omega^2)``;
    cluster-robust standard errors with Tipton's (2015) CR2 small-sample correction and
    Satterthwaite degrees of freedom (``small=True``) or ``J / (J - p)`` and ``J - p`` df.

    Parameters
    ----------
    data : pandas.DataFrame or EffectData
        One row per effect.
    mods : str, optional
        Moderator formula (:func:`bayes_se.formula.design_matrix`); default intercept only.
    studynum : str or sequence
        Column name or labels of the study (cluster) of each effect; for an EffectData the default
        is its cluster (else its study labels).
    effect, variance : str
        Columns of effects and sampling variances of a DataFrame.
    modelweights : {"CORR", "HIER"}
    rho : float, default 0.8
        Assumed within-study correlation of the CORR model (in [0, 1]).
    small : bool, default True
        Small-sample corrections (CR2 and Satterthwaite df).
    level : float, default 0.95
        Confidence level (robumeta prints 95% intervals).
    na : {"omit", "error"}
        A row with a missing moderator: left out with a warning (R's ``na.omit``) or refused.

    Returns
    -------
    RobuResult

    References
    ----------
    Hedges, L. V., Tipton, E., & Johnson, M. C. (2010). *Res. Synth. Methods*, 1(1), 39-65;
    Tipton, E. (2015). *Psychol. Methods*, 20(3), 375-393.
    """
    modelweights = str(modelweights).upper()
    if modelweights not in ("CORR", "HIER"):
        raise SpecError(f"unknown modelweights {modelweights!r} (use 'CORR' or 'HIER')", key="modelweights")
    if modelweights == "CORR" and not 0 <= float(rho) <= 1:
        raise SpecError(f"rho must lie in [0, 1], got {rho}", key="rho")
    if not 0 < level < 1:
        raise SpecError(f"level must be between 0 and 1 (got {level})", key="level")
    y, v, X, names, codes = _inputs(data, mods, studynum, effect, variance, na)
    codes, _ = cluster_codes(codes, len(y))  # renumber after omitted rows
    k, p = X.shape
    J = int(codes.max()) + 1
    if J <= p:
        raise DataError(f"{J} studies for {p} coefficients: robust variance estimation needs more studies "
                        "than coefficients", column="studynum")
    counts = np.bincount(codes)
    kj = counts.astype(float)[codes]  # k_j of each row
    vbar = (np.bincount(codes, weights=v) / counts)[codes]

    def by_study(values):  # sums over the rows of each study (J x ...)
        out = np.zeros((J,) + values.shape[1:])
        np.add.at(out, codes, values)
        return out

    w = 1.0 / v if modelweights == "HIER" else 1.0 / (kj * vbar)
    Q = np.linalg.inv(X.T @ (w[:, None] * X))
    b = Q @ (X.T @ (w * y))
    e = y - X @ b
    Qe = float(np.sum(w * e * e))
    s = by_study(w[:, None] * X)  # X_j' W_j 1 (J x p)
    t = by_study(X)  # X_j' 1
    sumXWJWX = s.T @ s
    sumW = float(w.sum())
    tau2 = omega2 = I2 = None
    if modelweights == "CORR":
        wk = by_study(w / kj) / counts  # w_j / k_j (the weight is constant within a study)
        WKXX = X.T @ ((w / kj)[:, None] * X)
        XJX_XX = (wk[:, None] * t).T @ t - WKXX  # sum_j (w_j / k_j) (X_j' J X_j - X_j' X_j)
        denom = sumW - np.trace(Q @ sumXWJWX)
        termA = np.trace(Q @ WKXX)
        termB = np.trace(Q @ XJX_XX)
        tau2 = max(0.0, (Qe - J + termA) / denom + rho * termB / denom)
        df_q = J - termA - rho * termB
        I2 = max(0.0, (Qe - df_q) / Qe * 100)
        r = 1.0 / (kj * (vbar + tau2))
    else:
        ks = counts.astype(float)
        sumXJX = t.T @ t
        sumXWJJX = (ks[:, None] * s).T @ t
        sumXJJWX = sumXWJJX.T
        sumXWWX = X.T @ ((w * w)[:, None] * X)
        sumXJWX = t.T @ s
        sumXWJX = s.T @ t
        Qa = float(np.sum(np.bincount(codes, weights=e) ** 2))
        A1 = (np.sum(ks ** 2) - np.trace(Q @ sumXJJWX) - np.trace(Q @ sumXWJJX)
              + np.trace(Q @ sumXJX @ Q @ sumXWJWX))
        B1 = k - np.trace(Q @ sumXWJX) - np.trace(Q @ sumXJWX) + np.trace(Q @ sumXJX @ Q @ sumXWWX)
        C1 = float(v.sum()) - np.trace(Q @ sumXJX)
        A2 = sumW - np.trace(Q @ sumXWJWX)
        B2 = sumW - np.trace(Q @ sumXWWX)
        C2 = k - p
        omega2 = max(0.0, ((Qa - C1) * A2 - (Qe - C2) * A1) / (B1 * A2 - B2 * A1))
        tau2 = max(0.0, (Qe - C2) / A2 - omega2 * B2 / A2)
        r = 1.0 / (v + tau2 + omega2)

    Qr = np.linalg.inv(X.T @ (r[:, None] * X))
    beta = Qr @ (X.T @ (r * y))
    sw = ClusterSandwich(X, y - X @ beta, codes, 1.0 / r)  # target: the working model, W^-1
    if small:
        adjust = "CR2"
        V = sw.vcov("CR2")
        df = sw.satterthwaite_df("CR2")
    else:
        adjust = "CR1"
        V = sw.vcov("CR1")  # robumeta: SE = sqrt(diag(V_CR0)) sqrt(J / (J - p))
        df = np.full(p, float(J - p))
    se = np.sqrt(np.diag(V))
    tval = beta / se
    pval = 2 * stats.t.sf(np.abs(tval), df)
    crit = stats.t.isf((1 - level) / 2, df)
    out = RobuResult(adjust=adjust, model="robu", coef_names=names, beta=beta, se=se, tval=tval, df=df,
                     pval=pval, ci_lower=beta - crit * se, ci_upper=beta + crit * se, vcov=V, n_clusters=J,
                     cluster_sizes=counts.tolist(), k=k, p=p, level=level,
                     btt=list(range(1, p)) if p > 1 else [0], sandwich=sw, modelweights=modelweights,
                     small=bool(small), rho=float(rho) if modelweights == "CORR" else None, tau2=float(tau2),
                     omega2=None if omega2 is None else float(omega2), I2=None if I2 is None else float(I2),
                     weights=r)
    if p == 1:
        out.QM, out.QM_df, out.QM_p, out.QM_test = float(tval[0] ** 2), (1, float(df[0])), float(pval[0]), "t"
    else:
        wt = out.wald_test(out.btt)
        out.QM, out.QM_df, out.QM_p, out.QM_test = wt["Fstat"], (wt["df_num"], wt["df_denom"]), wt["pval"], wt["test"]
    return out
