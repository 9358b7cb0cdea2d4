"""Cluster-robust (sandwich) inference for ``rma`` and ``rma_mv`` fits: clubSandwich's CR2 and metafor's ``robust``.

For a working model fitted by weighted least squares, ``beta = Q X' W y`` with ``Q = (X' W X)^-1``
and working weights ``W = M^-1`` (``M``: the model's marginal covariance, block diagonal by cluster),
the cluster-robust covariance is ``V_R = Q (sum_j X_j' W_j A_j e_j e_j' A_j' W_j X_j) Q`` with
residuals ``e = y - X beta`` and, per cluster ``j``:

* ``CR0``: ``A_j = I``; ``CR1``: ``V_R`` times ``J / (J - p)`` (metafor's ``robust(adjust = TRUE)``);
  both with t tests on ``J - p`` degrees of freedom (``J`` clusters, ``p`` coefficients), as metafor;
* ``CR2`` (bias-reduced linearization, Bell & McCaffrey 2002): ``A_j = R_j' (R_j (M_j - X_j Q X_j')
  R_j')^(-1/2) R_j`` with ``R_j' R_j = M_j`` (the working model's target, ``Theta_j = M_j``), and
  Satterthwaite degrees of freedom per coefficient ``nu = (tr Omega)^2 / ||Omega||_F^2``, where
  ``Omega_jk = delta_jk g_j' M_j g_j - (X_j' g_j)' Q (X_k' g_k)`` is the covariance of the
  cluster contributions ``g_j' e_j`` (``g_j``: the coefficient's row of ``Q X_j' W_j A_j``) under the
  working model (Tipton 2015; Pustejovsky & Tipton 2018). Tests of several coefficients use the
  Hotelling T^2 approximation ``HTZ`` (Pustejovsky & Tipton 2018, section 3.2).

This is clubSandwich 0.5.8's ``coef_test(res, vcov = "CR2", cluster = ...)``, ``conf_int`` and
``Wald_test(..., test = "HTZ")`` with the model's inverse-variance working weights (its default for
``rma.uni`` and ``rma.mv``), which metafor 3.8-1's ``robust(res, cluster, clubSandwich = TRUE)`` calls.

No maintained Python library we found (PyPI and documentation search, 2026-11) computes CR2 with
Satterthwaite degrees of freedom for a weighted working model with a non-diagonal working
covariance: statsmodels' ``cov_type="cluster"`` gives CR0/CR1-type sandwiches with ``J - 1`` df,
pyfixest CRV1/CRV3 for (weighted) least squares with fixed effects. The CR2 adjustment matrices,
the Satterthwaite degrees of freedom and the HTZ test are therefore written here, with NumPy/SciPy,
from the formulas of the papers below (checked against clubSandwich in tests/test_robust.py).

References
----------
Bell, R. M., & McCaffrey, D. F. (2002). Bias reduction in standard errors for linear regression
with multi-stage samples. *Survey Methodology*, 28(2), 169-181.
Tipton, E. (2015). Small sample adjustments for robust variance estimation with meta-regression.
*Psychological Methods*, 20(3), 375-393.
Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods for cluster-robust variance
estimation and hypothesis testing in fixed effects models. *Journal of Business & Economic
Statistics*, 36(4), 672-683.
Hedges, L. V., Tipton, E., & Johnson, M. C. (2010). Robust variance estimation in meta-regression
with dependent effect size estimates. *Research Synthesis Methods*, 1(1), 39-65.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import linalg

from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist.common import format_p, json_ready
from bayes_se.frequentist.dist import stats  # scipy.stats' functions without its import cost

__all__ = ["robust", "RobustResult", "ClusterSandwich", "ADJUSTMENTS", "cluster_codes", "matrix_power"]

#: The small-sample adjustments offered.
ADJUSTMENTS = ("CR2", "CR1", "CR0")
#: Columns of :meth:`RobustResult.coef_table`.
ROBUST_COLUMNS = ("estimate", "se", "tval", "df", "pval", "ci_lower", "ci_upper")


def matrix_power(A, power: float, tol: float = 1e-12) -> np.ndarray:
    """``A^power`` of a symmetric matrix (or a stack of them, shape ``(..., n, n)``) by its
    eigendecomposition; eigenvalues <= ``tol`` give 0 (clubSandwich's ``matrix_power``, a generalized
    inverse square root for ``power = -1/2``)."""
    A = np.asarray(A, float)
    vals, vecs = np.linalg.eigh(0.5 * (A + np.swapaxes(A, -1, -2)))
    keep = vals > tol
    scaled = np.where(keep, np.where(keep, vals, 1.0) ** power, 0.0)
    return (vecs * scaled[..., None, :]) @ np.swapaxes(vecs, -1, -2)


def cluster_codes(cluster, k: int, name: str = "cluster") -> tuple[np.ndarray, list]:
    """Integer codes ``0..J-1`` of ``k`` cluster labels (in order of first appearance) and the labels.

    Raises
    ------
    DataError
        A missing label (the 1-based row is named) or a length other than ``k``.
    """
    values = list(cluster.tolist() if isinstance(cluster, np.ndarray) else cluster)
    if len(values) != k:
        raise DataError(f"has {len(values)} entries for {k} effects", column=name)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()):
            raise DataError("missing cluster label", row=i + 1, column=name)
    codes, labels = pd.factorize(pd.Series([str(v) for v in values], dtype=object))
    return np.asarray(codes), list(labels)


class ClusterSandwich:
    """Cluster-robust covariance of WLS coefficients with working covariance ``M`` (block diagonal).

    ``beta = Q X' W y``, ``Q = (X' W X)^-1``, ``W_j = M_j^-1``; the working model is taken as the
    target (``Theta_j = M_j``), i.e. inverse-variance weights (clubSandwich's ``inverse_var``).
    Clusters of equal size are processed together as stacks of matrices.

    Parameters
    ----------
    X : ndarray (k, p)
    resid : ndarray (k,)
        ``y - X beta``.
    codes : ndarray of int (k,)
        Cluster of each row, ``0..J-1``.
    M_blocks : list of ndarray, or ndarray (k,)
        ``M_j``, the working covariance of the rows of cluster ``j`` (in row order); or, for a
        diagonal ``M``, the vector of its diagonal.
    """

    def __init__(self, X, resid, codes, M_blocks):
        self.X = np.asarray(X, float)
        self.resid = np.asarray(resid, float)
        self.codes = np.asarray(codes)
        self.k, self.p = self.X.shape
        counts = np.bincount(self.codes)
        self.J = len(counts)
        order = np.argsort(self.codes, kind="stable")
        self.index = np.split(order, np.cumsum(counts)[:-1])  # rows of each cluster, in row order
        self.groups = []  # (clusters, M, R, W, X, e) stacked over the clusters of one size
        for n in np.unique(counts):
            cl = np.flatnonzero(counts == n)
            rows = np.stack([self.index[j] for j in cl])
            if isinstance(M_blocks, np.ndarray) and M_blocks.ndim == 1:
                M = np.zeros((len(cl), n, n))
                M[:, np.arange(n), np.arange(n)] = M_blocks[rows]
            else:
                M = np.stack([np.asarray(M_blocks[j], float).reshape(n, n) for j in cl])
            try:
                R = np.swapaxes(np.linalg.cholesky(M), -1, -2)  # R' R = M_j
            except np.linalg.LinAlgError:
                raise DataError("a cluster's working covariance is not positive definite",
                                column="cluster") from None
            self.groups.append((cl, M, R, np.linalg.inv(M), self.X[rows], self.resid[rows]))
        XWX = sum(np.einsum("gnp,gnm,gmq->pq", x, w, x) for _, _, _, w, x, _ in self.groups)
        self.Q = linalg.cho_solve(linalg.cho_factor(XWX, lower=True), np.eye(self.p))
        self.Q = 0.5 * (self.Q + self.Q.T)
        self._est = {}

    def _per_cluster(self, stacks) -> list:
        """A list over clusters ``0..J-1`` from one stack per size group."""
        out = [None] * self.J
        for (cl, *_), stack in zip(self.groups, stacks):
            for i, j in enumerate(cl):
                out[j] = stack[i]
        return out

    @property
    def M(self) -> list:
        """``M_j`` of each cluster."""
        return self._per_cluster([g[1] for g in self.groups])

    @property
    def W(self) -> list:
        """``W_j = M_j^-1`` of each cluster."""
        return self._per_cluster([g[3] for g in self.groups])

    @property
    def Xj(self) -> list:
        """The rows of ``X`` of each cluster."""
        return self._per_cluster([g[4] for g in self.groups])

    # ------------------------------------------------------------------ adjustment matrices
    def _adjustment_stacks(self, adjust: str) -> list:
        out = []
        for _, M, R, _, x, _ in self.groups:
            if adjust == "CR2":
                G = R @ (M - x @ self.Q @ np.swapaxes(x, -1, -2)) @ np.swapaxes(R, -1, -2)
                out.append(np.swapaxes(R, -1, -2) @ matrix_power(G, -0.5) @ R)
            else:
                out.append(np.broadcast_to(np.eye(M.shape[-1]), M.shape))
        return out

    def adjustments(self, adjust: str) -> list:
        """``A_j`` of each cluster (identity for CR0/CR1; Bell-McCaffrey for CR2)."""
        return self._per_cluster(self._adjustment_stacks(adjust))

    def _estimating_stacks(self, adjust: str) -> list:
        if adjust not in self._est:
            self._est[adjust] = [self.Q @ np.swapaxes(x, -1, -2) @ w @ a for (_, _, _, w, x, _), a
                                 in zip(self.groups, self._adjustment_stacks(adjust))]
        return self._est[adjust]

    def estimating_matrices(self, adjust: str) -> list:
        """``Q X_j' W_j A_j`` (p x n_j): the cluster contributions are these times ``e_j``."""
        return self._per_cluster(self._estimating_stacks(adjust))

    def vcov(self, adjust: str) -> np.ndarray:
        """The cluster-robust covariance ``CR0``, ``CR1`` (times ``J / (J - p)``) or ``CR2``."""
        comps = np.concatenate([np.einsum("gpn,gn->gp", E, g[5])
                                for E, g in zip(self._estimating_stacks(adjust), self.groups)])
        V = comps.T @ comps
        if adjust == "CR1":
            V = V * self.J / (self.J - self.p)
        return 0.5 * (V + V.T)

    # ------------------------------------------------------------------ Satterthwaite and HTZ
    # Omega^(s,t)_jk = delta_jk D[s,t,j] - h_sj . h_tk is the working-model covariance of the cluster
    # contributions to (C V_R C')_st, with D[s,t,j] = g_sj' M_j g_tj and h_sj = L' X_j' g_sj (L L' = Q).
    # Its J x J matrices are never formed: traces and Frobenius products reduce to sums over clusters
    # and p x p Gram matrices, so the cost is O(J) per coefficient (sum_jk (h_aj.h_bk)(h_cj.h_dk) =
    # tr(S_bd S_ca) with S_xy = sum_j h_xj h_yj').
    def _structure(self, C, adjust):
        """``D`` (q, q, J) and ``H`` (q, p, J) of the contrasts ``C`` (q x p), clusters in group order."""
        L = linalg.cholesky(self.Q, lower=True)
        Hs, Ds = [], []
        for E, (_, M, _, _, x, _) in zip(self._estimating_stacks(adjust), self.groups):
            G = C @ E  # g x q x n
            Hs.append(G @ x @ L)
            Ds.append(G @ M @ np.swapaxes(G, -1, -2))
        return np.moveaxis(np.concatenate(Ds), 0, -1), np.moveaxis(np.concatenate(Hs), 0, -1)

    @staticmethod
    def _products(D, H):
        """``T[a,b,c,d] = sum_jk Omega^(a,b)_jk Omega^(c,d)_jk`` and ``tr Omega^(a,b)``."""
        K = np.einsum("apj,bpj->abj", H, H)
        S = np.einsum("xpj,yqj->xypq", H, H)
        DK = np.einsum("abj,cdj->abcd", D, K)
        T = (np.einsum("abj,cdj->abcd", D, D) - DK - DK.transpose(2, 3, 0, 1)
             + np.einsum("bdpq,caqp->abcd", S, S))
        return T, D.sum(axis=-1) - K.sum(axis=-1)

    def satterthwaite_df(self, adjust: str = "CR2") -> np.ndarray:
        """Satterthwaite degrees of freedom of each coefficient, ``(tr Omega)^2 / ||Omega||_F^2``
        (clubSandwich ``coef_test``)."""
        D, H = self._structure(np.eye(self.p), adjust)
        K = np.einsum("apj,apj->aj", H, H)  # ||h_ij||^2
        Dii = np.einsum("iij->ij", D)
        S = np.einsum("ipj,iqj->ipq", H, H)
        frob = np.sum(Dii**2, axis=1) - 2 * np.sum(Dii * K, axis=1) + np.einsum("ipq,iqp->i", S, S)
        return (Dii.sum(axis=1) - K.sum(axis=1)) ** 2 / frob

    def wald_htz(self, C, beta, V, adjust: str = "CR2") -> dict:
        """Wald test of ``C beta = 0`` with the HTZ approximation (clubSandwich ``Wald_test``).

        ``Q = (C b)' (C V_R C')^-1 (C b)``; ``F = delta Q / q`` on ``(q, nu - q + 1)`` df with
        ``delta = (nu - q + 1) / nu`` and ``nu = q (q + 1) / sum_st Var_st``, the total variance of
        the standardized ``C V_R C'`` under the working model (Pustejovsky & Tipton 2018, eq. 12).
        """
        C = np.atleast_2d(np.asarray(C, float))
        q = C.shape[0]
        Cb = C @ beta
        Qstat = float(Cb @ np.linalg.solve(C @ V @ C.T, Cb))
        D, H = self._structure(C, adjust)
        _, Omega = self._products(D, H)
        On = matrix_power(Omega, -0.5)
        Dt = np.einsum("as,stj,tb->abj", On, D, On)
        Ht = np.einsum("as,spj->apj", On, H)
        T, _ = self._products(Dt, Ht)
        var = np.einsum("stts->st", T) + np.einsum("sstt->st", T)
        nu = q * (q + 1) / np.sum(var)
        delta = max((nu - q + 1) / nu, 0.0)
        df2 = nu - q + 1
        F = delta * Qstat / q
        pval = float(stats.f.sf(F, q, df2)) if df2 > 0 else math.nan
        return {"test": "HTZ", "Fstat": F, "delta": delta, "df_num": q, "df_denom": df2, "pval": pval,
                "Q": Qstat}


class RobustResult:
    """Cluster-robust tests and confidence intervals of a fitted model's coefficients.

    Attributes: ``adjust`` ("CR0", "CR1", "CR2"), ``coef_names``, ``beta``, ``se``, ``tval``,
    ``df`` (per coefficient), ``pval``, ``ci_lower``, ``ci_upper``, ``vcov``, ``n_clusters``,
    ``cluster_sizes``, ``k``, ``p``, ``level``, ``btt`` (0-based coefficients of the omnibus test),
    ``QM``, ``QM_df`` (``(df1, df2)``), ``QM_p``, ``QM_test`` ("HTZ" for CR2, "F" for CR0/CR1, "t" for
    the intercept-only model, whose ``QM`` is ``t^2``),
    ``model`` ("rma" or "rma_mv"), ``sandwich`` (:class:`ClusterSandwich`).
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def coef_table(self) -> pd.DataFrame:
        """Index ``coef_names``; columns ``estimate, se, tval, df, pval, ci_lower, ci_upper``."""
        values = (self.beta, self.se, self.tval, self.df, self.pval, self.ci_lower, self.ci_upper)
        return pd.DataFrame({c: np.asarray(v, float) for c, v in zip(ROBUST_COLUMNS, values)},
                            index=pd.Index([str(n) for n in self.coef_names], name="coefficient"))

    def wald_test(self, coefs) -> dict:
        """Cluster-robust Wald test that the coefficients ``coefs`` (names or 0-based indices) are 0.

        CR2: clubSandwich's HTZ test (``Fstat, delta, df_num, df_denom, pval``); CR0/CR1: metafor's
        ``F = b' V_R^-1 b / q`` on ``(q, J - p)`` df.
        """
        idx = []
        for c in np.atleast_1d(coefs):
            if isinstance(c, str) and c in self.coef_names:
                idx.append(self.coef_names.index(c))
            elif not isinstance(c, str) and 0 <= int(c) < self.p:
                idx.append(int(c))
            else:
                raise SpecError(f"no coefficient '{c}' (coefficients: {', '.join(self.coef_names)})", key="coefs")
        C = np.zeros((len(idx), self.p))
        C[np.arange(len(idx)), idx] = 1.0
        if self.adjust == "CR2":
            return self.sandwich.wald_htz(C, self.beta, self.vcov, "CR2")
        q = len(idx)
        b = self.beta[idx]
        F = float(b @ np.linalg.solve(self.vcov[np.ix_(idx, idx)], b)) / q
        df2 = self.n_clusters - self.p
        return {"test": "F", "Fstat": F, "delta": 1.0, "df_num": q, "df_denom": df2,
                "pval": float(stats.f.sf(F, q, df2)), "Q": F * q}

    def summary(self) -> str:
        """A table in the spirit of metafor's ``print.robust.rma``."""
        sizes = np.asarray(self.cluster_sizes)
        how = ("CR2, Satterthwaite df (clubSandwich)" if self.adjust == "CR2"
               else f"{self.adjust}, df = {self.n_clusters} - {self.p}")
        lines = [f"Cluster-robust inference ({how}) for {'an' if self.model[0] in 'aeiour' else 'a'} "
                 f"{self.model} fit",
                 f"Number of estimates:   {self.k}",
                 f"Number of clusters:    {self.n_clusters}",
                 f"Estimates per cluster: {sizes.min()}-{sizes.max()} (mean: {sizes.mean():.2f}, "
                 f"median: {np.median(sizes):g})", ""]
        if self.QM is not None and self.QM_test != "t":
            lines.append(f"Test of Moderators (coefficient(s) {', '.join(str(b + 1) for b in self.btt)}): "
                         f"F(df1 = {self.QM_df[0]}, df2 = {self.QM_df[1]:.4g}) = {self.QM:.4f}, "
                         f"p-val {format_p(self.QM_p)}" + (" (HTZ)" if self.QM_test == "HTZ" else ""))
            lines.append("")
        table = self.coef_table()
        width = max(len(n) for n in table.index)
        lines.append(" " * width + "".join(f"{h:>10}" for h in ROBUST_COLUMNS))
        for name, row in table.iterrows():
            lines.append(f"{name:<{width}}" + "".join(f"{row[c]:>10.4f}" for c in ("estimate", "se", "tval"))
                         + f"{row['df']:>10.2f}" + f"{format_p(row['pval'], bare=True):>10}"
                         + "".join(f"{row[c]:>10.4f}" for c in ("ci_lower", "ci_upper")))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready: ``adjust``, ``level``, ``n_clusters``, ``k``, ``coefficients`` ({name: {estimate,
        se, tval, df, pval, ci_lower, ci_upper}}), ``vcov``, ``QM``, ``QM_df``, ``QM_p``, ``QM_test``."""
        return json_ready({
            "model": self.model, "adjust": self.adjust, "level": self.level, "n_clusters": self.n_clusters,
            "k": self.k, "coefficients": self.coef_table(), "vcov": self.vcov, "QM": self.QM,
            "QM_df": None if self.QM_df is None else list(self.QM_df), "QM_p": self.QM_p,
            "QM_test": self.QM_test,
        })


def _align(cluster, res, k):
    """The cluster labels of the ``k`` effects the model used (given for them or for every data row)."""
    if cluster is None:
        return None
    if isinstance(cluster, str):
        raise SpecError(f"cluster={cluster!r}: give the cluster label of each effect (e.g. data[{cluster!r}]), "
                        "not a column name", key="cluster")
    values = list(cluster.tolist() if isinstance(cluster, np.ndarray) else cluster)
    if len(values) == k:
        return values
    rows = getattr(res, "rows", None)
    omitted = [int(r) for r in getattr(res, "omitted_rows", ())]
    if rows is not None:
        kept = [int(r) - 1 for r in rows]
    else:
        gone = set(omitted)
        kept = [i for i in range(k + len(omitted)) if i + 1 not in gone]
    if omitted and len(values) == k + len(omitted):
        return [values[i] for i in kept]
    raise DataError(f"has {len(values)} entries, but the model used {k} effects"
                    + (f" of {k + len(omitted)} data rows" if omitted else ""), column="cluster")


def _working_model(res):
    """(y, X, beta, model, M) of an ``rma`` or ``rma_mv`` fit: ``M`` its marginal covariance, a k x k
    matrix for ``rma_mv`` and the vector of its diagonal ``v_i + tau^2`` for ``rma``."""
    from bayes_se.frequentist.location_scale import LocationScaleResult
    from bayes_se.frequentist.mv_result import RmaMvResult  # deferred: rma_mv's modules import scipy.stats
    from bayes_se.frequentist.rma import RMAResult

    if isinstance(res, RmaMvResult) and res.problem is not None:
        pr = res.problem
        M = pr.V + sum(t * a for t, a in zip(res.theta, pr.A))
        return pr.y, pr.X, np.asarray(res.beta, float), "rma_mv", M
    if isinstance(res, (RMAResult, LocationScaleResult)):  # tau2: one value, or one per study (scale=)
        return res.yi, res.X, np.asarray(res.beta, float), "rma", res.vi + res.tau2
    raise SpecError(f"robust() needs an rma or rma_mv fit, got {type(res).__name__}", key="res")


def _default_cluster(M):
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(np.abs(M) > 0, directed=False)
    return labels


def robust(res, cluster=None, adjust: str = "CR2", level: float | None = None) -> RobustResult:
    """Cluster-robust tests and intervals for an ``rma`` or ``rma_mv`` fit (metafor's ``robust``).

    ``V_R = Q (sum_j X_j' W_j A_j e_j e_j' A_j' W_j X_j) Q`` with the fit's working weights
    ``W = M^-1``; CR2 with Satterthwaite df = clubSandwich 0.5.8 ``coef_test``/``conf_int``/
    ``Wald_test(HTZ)`` and metafor 3.8-1 ``robust(res, cluster, clubSandwich = TRUE)``; CR1 and CR0 =
    metafor's ``robust(res, cluster, adjust = TRUE / FALSE)`` (t on ``J - p`` df). The bread is
    ``(X' W X)^-1`` whatever the fit's test: for ``rma(..., test="knha")`` metafor's CR0/CR1 carry the
    Knapp-Hartung factor (it reuses the fit's ``vb``), clubSandwich and bayes_se do not.

    Parameters
    ----------
    res : RMAResult or RmaMvResult
    cluster : sequence, optional
        Cluster of each effect the model used, or of every data row (rows the fit left out for
        missing values are then dropped). Default for ``rma_mv``: the largest groups within which
        the model's random effects (and sampling covariances) are nested, as clubSandwich;
        ``rma`` needs it.
    adjust : {"CR2", "CR1", "CR0"}
    level : float, optional
        Confidence level (default: the fit's).

    Returns
    -------
    RobustResult

    Raises
    ------
    SpecError
        Unknown ``adjust``, no ``cluster`` for an ``rma`` fit, or random effects that are not nested
        within the clusters (the working covariance must be block diagonal by cluster).
    DataError
        A missing cluster label, a length that fits neither the model's effects nor the data rows,
        or no more clusters than coefficients.

    References
    ----------
    Pustejovsky, J. E., & Tipton, E. (2018). *J. Bus. Econ. Stat.*, 36(4), 672-683; Tipton, E.
    (2015). *Psychol. Methods*, 20(3), 375-393; Viechtbauer, W. (2010). *J. Stat. Softw.*, 36(3).
    """
    adjust = str(adjust).upper()
    if adjust not in ADJUSTMENTS:
        raise SpecError(f"unknown adjust {adjust!r} (use one of {', '.join(ADJUSTMENTS)})", key="adjust")
    y, X, beta, model, M = _working_model(res)
    k, p = X.shape
    level = res.level if level is None else float(level)
    if not 0 < level < 1:
        raise SpecError(f"level must be between 0 and 1 (got {level})", key="level")
    labels = _align(cluster, res, k)
    if labels is None:
        if model == "rma":
            raise SpecError("robust() of an rma fit needs the cluster of each effect", key="cluster")
        labels = _default_cluster(M)
    codes, _ = cluster_codes(labels, k)
    J = int(codes.max()) + 1
    if J <= p:
        raise DataError(f"{J} clusters for {p} coefficients: cluster-robust inference needs more clusters "
                        "than coefficients", column="cluster")
    counts = np.bincount(codes)
    index = np.split(np.argsort(codes, kind="stable"), np.cumsum(counts)[:-1])
    if M.ndim == 2:
        if np.any(M[codes[:, None] != codes[None, :]] != 0):
            raise SpecError("the model's random effects (or sampling covariances) are not nested within the "
                            "clusters; cluster by the model's highest grouping level", key="cluster")
        blocks = [M[np.ix_(ix, ix)] for ix in index]
    else:
        blocks = np.asarray(M, float)  # the diagonal
    sw = ClusterSandwich(X, y - X @ beta, codes, blocks)
    V = sw.vcov(adjust)
    se = np.sqrt(np.diag(V))
    tval = beta / se
    if adjust == "CR2":
        df = sw.satterthwaite_df("CR2")
    else:
        df = np.full(p, float(J - p))
    pval = 2 * stats.t.sf(np.abs(tval), df)
    crit = stats.t.isf((1 - level) / 2, df)
    has_int = bool(np.all(X[:, 0] == 1.0))
    btt = list(range(1, p)) if (has_int and p > 1) else list(range(p))
    out = RobustResult(adjust=adjust, model=model, coef_names=list(res.coef_names), beta=beta, se=se,
                       tval=tval, df=df, pval=pval, ci_lower=beta - crit * se, ci_upper=beta + crit * se,
                       vcov=V, n_clusters=J, cluster_sizes=counts.tolist(), k=k, p=p,
                       level=level, btt=btt, sandwich=sw)
    if has_int and p == 1:  # metafor: QM = t^2 on (1, df)
        out.QM, out.QM_df, out.QM_p, out.QM_test = float(tval[0] ** 2), (1, float(df[0])), float(pval[0]), "t"
    else:
        w = out.wald_test(btt)
        out.QM, out.QM_df, out.QM_p, out.QM_test = w["Fstat"], (w["df_num"], w["df_denom"]), w["pval"], w["test"]
    return out
