"""Multilevel and multivariate meta-analysis by (restricted) maximum likelihood, metafor's ``rma.mv``.

Every model here is a linear mixed model with known sampling covariance ``V``::

    y = X beta + e_random + e,   e ~ N(0, V),   e_random ~ N(0, sum_j theta_j A_j)

with ``A_j`` fixed 0/1 "same-group" matrices. Three random-effect structures are offered:

* nested variance components (``struct=None``): ``y_ij = x_ij' beta + u_i + w_ij + e_ij``,
  ``u_i ~ N(0, sigma2_1)`` per cluster, ``w_ij ~ N(0, sigma2_2)`` per effect (metafor
  ``random = ~ 1 | cluster/effect``), or either level alone;
* compound symmetry (``struct="CS"``, metafor ``random = ~ outcome | study``): effects of one study
  correlate with ``rho``, all with variance ``tau2``;
* unstructured (``struct="UN"``): an outcome-by-outcome between-study covariance matrix ``G``.

``beta`` is profiled out (generalized least squares); the variance parameters maximize the full (ML)
or restricted (REML) log-likelihood with SciPy's BFGS on an unconstrained scale (log variances,
Fisher-z correlations, log-Cholesky factor), followed by exact Newton steps on the linear
parameters so that the estimates meet metafor's convergence tolerance of 1e-12.

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software*, 36(3), 1-48. (``rma.mv``, ``confint.rma.mv``, ``matreg`` of metafor 3.8-1.)
Konstantopoulos, S. (2011). Fixed effects and variance components estimation in three-level
meta-analysis. *Research Synthesis Methods*, 2, 61-76.
Berkey, C. S., Hoaglin, D. C., Antczak-Bouckoms, A., Mosteller, F., & Colditz, G. A. (1998).
Meta-analysis of multiple outcomes by regression with random effects. *Statistics in Medicine*,
17, 2537-2550.
Harville, D. A. (1977). Maximum likelihood approaches to variance component estimation.
*JASA*, 72, 320-338. (Score and Hessian of the (restricted) log-likelihood.)
Becker, B. J. (1992). Using results from replicated studies to estimate linear models. *Journal of
Educational Statistics*, 17, 341-362. (``matreg``: regression from a pooled correlation matrix.)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, optimize, stats

from bayes_se.errors import ConvergenceWarning, DataError, SpecError

__all__ = ["rma_mv", "RmaMvResult", "matreg", "MatregResult"]

_LOG2PI = math.log(2.0 * math.pi)
_NEWTON_TOL = 1e-13  # relative step size at which the Newton polish stops
_BOUNDARY = 1e-9  # a variance below this fraction of var(y) is treated as sitting on the bound 0


# ----------------------------------------------------------------------------------------------
# random-effect structures: theta (linear parameters) as a function of phi (unconstrained)
# ----------------------------------------------------------------------------------------------


class _Nested:
    """Variance components ``theta_j = sigma2_j = exp(phi_j)``."""

    def __init__(self, A):
        self.A = A

    def theta(self, phi):
        with np.errstate(under="ignore"):
            return np.exp(phi)

    def jac(self, phi):
        return np.diag(self.theta(phi))

    def phi(self, theta):
        with np.errstate(divide="ignore"):
            return np.log(np.asarray(theta, float))


class _CS:
    """Compound symmetry: ``theta = (tau2, tau2 * rho)``, ``phi = (log tau2, atanh rho)``."""

    def __init__(self, A):
        self.A = A

    def theta(self, phi):
        tau2, rho = math.exp(phi[0]), math.tanh(phi[1])
        return np.array([tau2, tau2 * rho])

    def jac(self, phi):
        tau2, rho = math.exp(phi[0]), math.tanh(phi[1])
        return np.array([[tau2, 0.0], [tau2 * rho, tau2 * (1.0 - rho**2)]])

    def phi(self, theta):
        return np.array([math.log(theta[0]), math.atanh(theta[1] / theta[0])])


class _UN:
    """Unstructured ``G``: ``theta = vech(G)``, ``phi = vech(L)`` with ``G = L L'``, log diagonal."""

    def __init__(self, A, q):
        self.A = A
        self.q = q
        self.pairs = [(j, m) for m in range(q) for j in range(m, q)]  # column-major lower triangle

    def _L(self, phi):
        L = np.zeros((self.q, self.q))
        for value, (j, m) in zip(phi, self.pairs):
            L[j, m] = math.exp(value) if j == m else value
        return L

    def theta(self, phi):
        G = self._L(phi) @ self._L(phi).T
        return np.array([G[j, m] for j, m in self.pairs])

    def jac(self, phi):
        L = self._L(phi)
        J = np.zeros((len(self.pairs), len(self.pairs)))
        for c, (a, b) in enumerate(self.pairs):
            scale = L[a, b] if a == b else 1.0  # d L_aa / d phi = L_aa on the log scale
            for r, (j, m) in enumerate(self.pairs):
                # d (L L')_jm / d L_ab = delta_ja L_mb + delta_ma L_jb
                J[r, c] = scale * ((L[m, b] if j == a else 0.0) + (L[j, b] if m == a else 0.0))
        return J

    def phi(self, theta):
        G = np.zeros((self.q, self.q))
        for value, (j, m) in zip(theta, self.pairs):
            G[j, m] = G[m, j] = value
        L = np.linalg.cholesky(G)
        return np.array([math.log(L[j, m]) if j == m else L[j, m] for j, m in self.pairs])


# ----------------------------------------------------------------------------------------------
# the (restricted) log-likelihood with its score and Hessian in the linear parameters theta
# ----------------------------------------------------------------------------------------------


@dataclass
class _Fit:
    ll_ml: float
    ll_reml: float
    beta: np.ndarray
    vcov: np.ndarray
    W: np.ndarray
    P: np.ndarray
    Py: np.ndarray


def _evaluate(theta, y, X, V, A, logdet_XtX):
    """GLS fit and both log-likelihoods at ``theta``; None where ``M`` is not positive definite."""
    M = V + sum(t * a for t, a in zip(theta, A))
    try:
        cM = linalg.cho_factor(M, lower=True)
    except linalg.LinAlgError:
        return None
    W = linalg.cho_solve(cM, np.eye(len(y)))
    XtW = X.T @ W
    try:
        cX = linalg.cho_factor(XtW @ X, lower=True)
    except linalg.LinAlgError:
        return None
    vcov = linalg.cho_solve(cX, np.eye(X.shape[1]))
    beta = vcov @ (XtW @ y)
    P = W - XtW.T @ vcov @ XtW
    Py = P @ y
    rss = float(y @ Py)
    logdet_M = 2.0 * np.sum(np.log(np.diag(cM[0])))
    logdet_XtWX = 2.0 * np.sum(np.log(np.diag(cX[0])))
    k, p = X.shape
    ll_ml = -0.5 * k * _LOG2PI - 0.5 * logdet_M - 0.5 * rss
    # metafor's REML log-likelihood keeps the constant +1/2 log|X'X| (its REMLf = TRUE)
    ll_reml = -0.5 * (k - p) * _LOG2PI + 0.5 * logdet_XtX - 0.5 * logdet_M - 0.5 * logdet_XtWX - 0.5 * rss
    return _Fit(ll_ml, ll_reml, beta, vcov, W, P, Py)


def _score_hessian(fit, A, reml, idx):
    """Score and observed Hessian of the log-likelihood in ``theta[idx]`` (Harville 1977)."""
    Q = fit.P if reml else fit.W
    QA = [Q @ A[i] for i in idx]
    APy = [A[i] @ fit.Py for i in idx]
    g = np.array([-0.5 * np.trace(qa) + 0.5 * fit.Py @ apy for qa, apy in zip(QA, APy)])
    n = len(idx)
    H = np.empty((n, n))
    for a in range(n):
        PAPy = fit.P @ APy[a]
        for b in range(a, n):
            H[a, b] = H[b, a] = 0.5 * np.sum(QA[a] * QA[b].T) - APy[b] @ PAPy
    return g, H


class _Problem:
    """One model: data, structure, method; maximizes over the free parameters."""

    def __init__(self, y, X, V, structure, reml):
        self.y, self.X, self.V, self.s, self.reml = y, X, V, structure, reml
        self.A = structure.A
        self.logdet_XtX = np.linalg.slogdet(X.T @ X)[1]
        self.scale = max(float(np.var(y)), float(np.mean(np.diag(V))), 1e-12)

    def ll(self, fit):
        return fit.ll_reml if self.reml else fit.ll_ml

    def evaluate(self, theta):
        return _evaluate(theta, self.y, self.X, self.V, self.A, self.logdet_XtX)

    def maximize(self, phi0, free):
        """Maximize over ``phi[free]`` (others held), then polish in theta; returns theta, fit."""
        phi = np.array(phi0, float)
        free = np.asarray(free, bool)

        def objective(x):
            phi[free] = x
            theta = self.s.theta(phi)
            fit = self.evaluate(theta)
            if fit is None:
                return np.inf, np.zeros(x.size)
            g = self._score(fit)
            return -self.ll(fit), -(self.s.jac(phi).T @ g)[free]

        if free.any():
            res = optimize.minimize(objective, phi[free], jac=True, method="BFGS",
                                    options={"gtol": 1e-10, "maxiter": 2000})
            phi[free] = res.x
        theta = self.s.theta(phi)
        theta, fit = self._polish(theta, phi, free)
        return theta, fit

    def _score(self, fit):
        Q = fit.P if self.reml else fit.W
        return np.array([-0.5 * np.sum(Q * a) + 0.5 * fit.Py @ a @ fit.Py for a in self.A])

    def _polish(self, theta, phi, free):
        """Exact Newton steps on the free, interior linear parameters.

        Hand-written because BFGS stops on a gradient tolerance, which leaves poorly determined
        variance components about 1e-6 off; Newton converges quadratically to machine precision.
        """
        fit = self.evaluate(theta)
        idx = self._interior(theta, free)
        if not idx:
            return theta, fit
        for _ in range(100):
            g, H = _score_hessian(fit, self.A, self.reml, idx)
            try:
                step = -np.linalg.solve(H, g)
            except np.linalg.LinAlgError:
                break
            if g @ step <= 0:  # not an ascent direction: Hessian not negative definite here
                break
            ll0, t = self.ll(fit), 1.0
            while t > 1e-8:
                cand = theta.copy()
                cand[idx] += t * step
                new = self._admissible(cand, idx)
                if new is not None and self.ll(new) >= ll0 - 1e-12 * abs(ll0):
                    break
                t /= 2
            else:
                break
            theta, fit = cand, new
            if np.max(np.abs(t * step) / (np.abs(theta[idx]) + self.scale * 1e-6)) < _NEWTON_TOL:
                break
        return theta, fit

    def _interior(self, theta, free):
        if isinstance(self.s, _Nested):
            return [i for i in range(len(theta)) if free[i] and theta[i] > _BOUNDARY * self.scale]
        if not free.all():
            return []
        if isinstance(self.s, _UN):
            G = np.zeros((self.s.q, self.s.q))
            for value, (j, m) in zip(theta, self.s.pairs):
                G[j, m] = G[m, j] = value
            if np.linalg.eigvalsh(G)[0] <= _BOUNDARY * self.scale:
                return []
        elif theta[0] <= _BOUNDARY * self.scale or abs(theta[1] / theta[0]) >= 1 - 1e-9:
            return []
        return list(range(len(theta)))

    def _admissible(self, theta, idx):
        if isinstance(self.s, _Nested) and np.any(theta[idx] <= 0):
            return None
        if isinstance(self.s, _UN):
            try:
                self.s.phi(theta)
            except np.linalg.LinAlgError:
                return None
        return self.evaluate(theta)


# ----------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------


def _labels(values, name, k):
    if values is None:
        return None
    values = list(values.tolist() if isinstance(values, np.ndarray) else values)
    if len(values) != k:
        raise DataError(f"has {len(values)} entries for {k} effects", column=name)
    return values


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def _sorted_levels(values):
    levels = list(dict.fromkeys(values))
    try:
        return sorted(levels)
    except TypeError:
        return sorted(levels, key=str)


def _as_V(V, k):
    V = np.asarray(V, dtype=float)
    if V.ndim == 1:
        if V.shape[0] != k:
            raise DataError(f"has {V.shape[0]} sampling variances for {k} effects", column="vi")
        return np.diag(V)
    if V.ndim != 2 or V.shape != (k, k):
        raise DataError(f"the sampling covariance matrix V must be {k} x {k}, got shape {V.shape}",
                        column="V")
    return V


def _prepare(yi, V, X, coef_names, mods, data, cluster, outcome, study, na="omit"):
    """Arrays of the model after metafor's missing-value rule, with row-naming errors."""
    frame = data
    study_labels = None
    if hasattr(yi, "yi"):  # an EffectData-like object
        effects = yi
        yi = effects.yi
        if V is None:
            V = getattr(effects, "V", None)
            V = effects.vi if V is None else V
        cluster = getattr(effects, "cluster", None) if cluster is None else cluster
        frame = getattr(effects, "frame", None) if frame is None else frame
        study_labels = getattr(effects, "study", None) if data is None else None
    try:
        y = np.asarray(yi, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"effects must be numbers ({exc})", column="yi") from None
    if y.ndim != 1 or y.size < 2:
        raise DataError("effects must be a 1-D sequence of at least 2 numbers", column="yi")
    k = y.size
    if V is None:
        raise SpecError("the sampling variances or covariance matrix V are required", key="V")
    try:
        V = _as_V(V, k)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"V must be numbers ({exc})", column="V") from None
    if mods is not None:
        if X is not None:
            raise SpecError("give either X or mods, not both", key="mods")
        if frame is None:
            raise SpecError("mods needs a data frame (data=) or an EffectData", key="mods")
        from bayes_se.formula import design_matrix

        design = design_matrix(frame, mods, na=na, labels=study_labels,
                               reserved=("yi", "vi", "study", "cluster") if data is None else ("yi", "vi"))
        # rows with a missing moderator (already reported) get NaN: metafor's rule below drops them
        X = np.full((len(design.rows) + len(design.omitted_rows), design.X.shape[1]), np.nan)
        X[design.rows] = design.X
        coef_names, reported = design.names, np.isnan(X[:, 0])
    if X is None:
        X, coef_names = np.ones((k, 1)), ["intercept"] if coef_names is None else coef_names
    X = np.asarray(X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    if X.ndim != 2 or X.shape[0] != k:
        raise DataError(f"the design matrix X must have {k} rows, got shape {X.shape}", column="X")
    p = X.shape[1]
    coef_names = [f"X{j + 1}" for j in range(p)] if coef_names is None else list(coef_names)
    if len(coef_names) != p:
        raise SpecError(f"{len(coef_names)} coef_names for {p} columns of X", key="coef_names")
    cluster, outcome, study = (_labels(v, n, k) for v, n in
                               ((cluster, "cluster"), (outcome, "outcome"), (study, "study")))
    # metafor's na.omit rule: a row goes when y, a moderator or a label is missing, when its
    # variance is missing, or when its covariance with any row of non-missing variance is missing
    drop = np.isnan(y) | np.isnan(X).any(axis=1)
    has_var = ~np.isnan(np.diag(V))
    drop |= ~has_var | np.isnan(V[:, has_var]).any(axis=1)
    for labels in (cluster, outcome, study):
        if labels is not None:
            drop |= np.array([_missing(v) for v in labels])
    keep = np.flatnonzero(~drop)
    rows = keep + 1  # 1-based data rows, as a user sees them
    if (drop & ~reported).any() if mods is not None else drop.any():
        warnings.warn(f"rows {', '.join(map(str, np.flatnonzero(drop) + 1))} have missing values "
                      "and were omitted from model fitting", UserWarning, stacklevel=3)
    y, X, V = y[keep], X[keep], V[np.ix_(keep, keep)]
    cluster, outcome, study = ([labels[i] for i in keep] if labels is not None else None
                               for labels in (cluster, outcome, study))
    if np.isnan(V).any():
        i, j = np.argwhere(np.isnan(V))[0]
        raise DataError(f"V is missing the covariance with row {rows[j]}", row=int(rows[i]), column="V")
    for name, arr in (("yi", y), ("V", V), ("X", X)):
        if not np.isfinite(arr).all():
            raise DataError("infinite value", row=int(rows[np.argwhere(~np.isfinite(arr))[0][0]]),
                            column=name)
    bad = np.flatnonzero(np.diag(V) <= 0)
    if bad.size:
        raise DataError("sampling variance must be positive", row=int(rows[bad[0]]), column="vi")
    if not np.allclose(V, V.T, rtol=1e-10, atol=0):
        i, j = np.argwhere(~np.isclose(V, V.T, rtol=1e-10, atol=0))[0]
        raise DataError(f"V is not symmetric (differs from its entry at row {rows[j]})",
                        row=int(rows[i]), column="V")
    if np.linalg.eigvalsh(V)[0] <= 0:
        raise DataError("the sampling covariance matrix V is not positive definite", column="V")
    if y.size <= p:
        raise DataError(f"{y.size} effects left for {p} coefficients; need more effects than "
                        "coefficients")
    if np.linalg.matrix_rank(X) < p:
        raise DataError("the design matrix X is rank deficient", column="X")
    return y, X, V, coef_names, cluster, outcome, study, rows


def _same(labels):
    codes = np.unique(np.array([str(v) for v in labels]), return_inverse=True)[1]
    return (codes[:, None] == codes[None, :]).astype(float)


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------


def rma_mv(yi, V=None, *, X=None, coef_names=None, mods=None, data=None, cluster=None,
           random=None, struct=None, outcome=None, study=None, outcome_levels=None,
           method="REML", test="z", level=0.95, cluster_name="cluster", effect_name="effect", na="omit"):
    """Multilevel / multivariate random-effects meta-analysis (metafor's ``rma.mv``).

    Three-level model (``struct=None``): ``y_ij = x_ij' beta + u_i + w_ij + e_ij`` with
    ``u_i ~ N(0, sigma2_1)``, ``w_ij ~ N(0, sigma2_2)``, ``e ~ N(0, V)``.
    Multivariate model (``struct="UN"``): ``y_s = X_s beta + Z_s g_s + e_s``, ``g_s ~ N(0, G)``
    with ``G`` unstructured over outcomes; ``struct="CS"``: ``G = tau2 (rho J + (1 - rho) I)``.

    Parameters
    ----------
    yi : array_like or EffectData
        Effects (NaN allowed: the row is omitted as by metafor), or an object with ``.yi``,
        ``.vi``, ``.cluster`` (and optionally ``.V`` and ``.frame``) supplying the defaults.
    V : array_like
        Sampling variances (vector, taken as a diagonal matrix) or full covariance matrix.
    X : array_like, optional
        Design matrix (default: intercept only). ``coef_names`` names its columns.
    mods : str, optional
        Moderator formula for :func:`bayes_se.formula.design_matrix` on ``data`` (a DataFrame)
        or on the EffectData's frame; instead of ``X``.
    na : {"omit", "error"}
        A row with a missing moderator of ``mods``: left out with a warning, or refused.
    cluster : sequence, optional
        Cluster of each effect (level 2 of the nested model; the grouping of ``struct`` models
        when ``study`` is not given).
    random : {"cluster/effect", "cluster", "effect"}, optional
        Nested components: default ``"cluster/effect"`` with a cluster, ``"effect"`` without.
    struct : {None, "CS", "UN"}
        ``"CS"``/``"UN"`` fit ``random = ~ outcome | study`` with that covariance structure.
    outcome, study : sequence, optional
        Inner and outer grouping of the ``struct`` models; ``outcome_levels`` orders ``G``
        (default: sorted, as R's ``factor``).
    method : {"REML", "ML"}
    test : {"z", "t"}
        ``"t"`` uses t and F distributions with ``k - p`` denominator degrees of freedom.
    level : float
        Confidence level in (0, 1).
    cluster_name, effect_name : str
        Labels of the variance components (``sigma2`` names are ``cluster_name`` and
        ``cluster_name/effect_name``, as metafor names ``~ 1 | district/school``).

    Returns
    -------
    RmaMvResult

    References
    ----------
    Viechtbauer, W. (2010). *J. Stat. Softw.*, 36(3) (metafor ``rma.mv``); Konstantopoulos, S.
    (2011). *Res. Synth. Methods*, 2, 61-76; Berkey, C. S. et al. (1998). *Stat. Med.*, 17,
    2537-2550.
    """
    method = str(method).upper()
    if method not in {"REML", "ML"}:
        raise SpecError(f"method must be 'REML' or 'ML', got {method!r}", key="method")
    if test not in {"z", "t"}:
        raise SpecError(f"test must be 'z' or 't', got {test!r}", key="test")
    if not 0 < float(level) < 1:
        raise SpecError(f"level must lie in (0, 1), got {level!r}", key="level")
    if struct not in {None, "CS", "UN"}:
        raise SpecError(f"struct must be None, 'CS' or 'UN', got {struct!r}", key="struct")
    y, X, V, coef_names, cluster, outcome, study, rows = _prepare(
        yi, V, X, coef_names, mods, data, cluster, outcome, study, na)
    k, p = X.shape

    r_ols = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    spread = max(float(r_ols @ r_ols) / (k - p) - float(np.mean(np.diag(V))),
                 0.1 * float(r_ols @ r_ols) / (k - p), 1e-8)
    info = {"struct": struct}
    if struct is None:
        random = random or ("cluster/effect" if cluster is not None else "effect")
        if random not in {"cluster/effect", "cluster", "effect"}:
            raise SpecError(f"random must be 'cluster/effect', 'cluster' or 'effect', got {random!r}",
                            key="random")
        if "cluster" in random and cluster is None:
            raise SpecError(f"random = {random!r} needs a cluster for every effect", key="cluster")
        A, names, nlevels = [], [], []
        if "cluster" in random:
            A.append(_same(cluster))
            names.append(cluster_name)
            nlevels.append(len(set(map(str, cluster))))
        if "effect" in random:
            A.append(np.eye(k))
            names.append(f"{cluster_name}/{effect_name}" if "cluster" in random else effect_name)
            nlevels.append(k)
        structure = _Nested(A)
        phi0 = np.full(len(A), math.log(spread / len(A)))
        info.update(sigma2_names=names, sigma2_levels=nlevels)
    else:
        study = study if study is not None else cluster
        if study is None or outcome is None:
            raise SpecError(f"struct = {struct!r} needs an outcome and a study (or cluster) for "
                            "every effect", key="struct")
        present = _sorted_levels(outcome)
        levels = present if outcome_levels is None else list(outcome_levels)
        unknown = [v for v in present if v not in levels]
        if unknown:
            raise SpecError(f"outcome level {unknown[0]!r} is not in outcome_levels",
                            key="outcome_levels")
        levels = [v for v in levels if v in present]
        B = _same(study)
        Z = np.array([[float(o == lev) for lev in levels] for o in outcome])
        info.update(G_names=[str(v) for v in levels], n_study=len(set(map(str, study))))
        if struct == "CS":
            same = Z @ Z.T
            structure = _CS([B * same, B * (1.0 - same)])
            phi0 = np.array([math.log(spread), math.atanh(0.5)])
        else:
            q = len(levels)
            pairs = [(j, m) for m in range(q) for j in range(m, q)]
            A = [B * (np.outer(Z[:, j], Z[:, m]) + (np.outer(Z[:, m], Z[:, j]) if j != m else 0.0))
                 for j, m in pairs]
            structure = _UN(A, q)
            tau2 = [max(float(np.mean(r_ols[Z[:, j] == 1] ** 2)) - float(np.mean(np.diag(V)[Z[:, j] == 1])),
                        0.1 * spread, 1e-8) for j in range(q)]
            phi0 = np.array([0.5 * math.log(tau2[j]) if j == m else 0.0 for j, m in pairs])

    problem = _Problem(y, X, V, structure, method == "REML")
    theta, fit = problem.maximize(phi0, np.ones(len(phi0), bool))
    g = problem._score(fit)
    idx = problem._interior(theta, np.ones(len(theta), bool))
    if idx and np.max(np.abs(g[idx]) * (np.abs(theta[idx]) + problem.scale)) > 1e-6:
        warnings.warn("rma_mv: the variance components may not have converged",
                      ConvergenceWarning, stacklevel=2)
    fit0 = problem.evaluate(np.zeros(len(theta)))  # fixed-effects fit: Cochran's Q with V
    res = _result(problem, theta, fit, fit0, coef_names, info, method, test, float(level), rows)
    n_rows = len(getattr(yi, "yi", yi))  # rows given, before metafor's missing-value rule
    res.omitted_rows = sorted(set(range(1, n_rows + 1)) - {int(r) for r in rows})
    return res


def _fit_stats(ll, n, parms, saturated):
    """metafor's (ll, dev, AIC, BIC, AICc) with ``n = k`` (ML) or ``k - p`` (REML)."""
    m = max(n, parms + 2)
    return {"ll": ll, "dev": -2.0 * (ll - saturated), "AIC": -2.0 * ll + 2.0 * parms,
            "BIC": -2.0 * ll + parms * math.log(n), "AICc": -2.0 * ll + 2.0 * parms * m / (m - parms - 1)}


def _result(problem, theta, fit, fit0, coef_names, info, method, test, level, rows):
    X, V, y = problem.X, problem.V, problem.y
    k, p = X.shape
    df = k - p if test == "t" else None
    dist = stats.t(df) if test == "t" else stats.norm()
    crit = float(dist.ppf(0.5 + level / 2))
    beta, vcov = fit.beta, fit.vcov
    se = np.sqrt(np.diag(vcov))
    stat = beta / se
    pval = 2.0 * dist.sf(np.abs(stat))
    has_intercept = bool(np.all(X[:, 0] == 1.0))
    btt = list(range(1, p)) if (has_intercept and p > 1) else list(range(p))
    b = beta[btt]
    QM = float(b @ np.linalg.solve(vcov[np.ix_(btt, btt)], b))
    m = len(btt)
    if test == "t":
        QM /= m
        QM_p, QM_df = float(stats.f.sf(QM, m, df)), (m, df)
    else:
        QM_p, QM_df = float(stats.chi2.sf(QM, m)), (m, None)
    QE = float(y @ fit0.Py)
    saturated = -0.5 * k * _LOG2PI - 0.5 * np.linalg.slogdet(V)[1]
    parms = p + len(theta)
    fit_stats = {"ML": _fit_stats(fit.ll_ml, k, parms, saturated),
                 "REML": _fit_stats(fit.ll_reml, k - p, parms, 0.0)}
    extra = {}
    s = problem.s
    if isinstance(s, _Nested):
        extra = dict(sigma2=theta.copy(), sigma2_names=info["sigma2_names"],
                     sigma2_levels=info["sigma2_levels"])
    else:
        q = len(info["G_names"])
        if isinstance(s, _CS):
            tau2 = np.array([theta[0]])
            rho = np.array([theta[1] / theta[0]])
            G = theta[0] * ((1 - rho[0]) * np.eye(q) + rho[0] * np.ones((q, q)))
        else:
            G = np.zeros((q, q))
            for value, (j, m_) in zip(theta, s.pairs):
                G[j, m_] = G[m_, j] = value
            tau2 = np.diag(G).copy()
            sd = np.sqrt(tau2)
            R = G / np.outer(sd, sd)
            rho = np.array([R[j, m_] for j, m_ in s.pairs if j != m_])
        extra = dict(tau2=tau2, rho=rho, G=G, G_names=info["G_names"], n_study=info["n_study"])
    return RmaMvResult(
        method=method, test=test, level=level, k=k, p=p, coef_names=list(coef_names), beta=beta,
        se=se, stat=stat, pval=pval, ci_lb=beta - crit * se, ci_ub=beta + crit * se, vcov=vcov,
        df=df, struct=info["struct"], QE=QE, QE_df=k - p, QE_p=float(stats.chi2.sf(QE, k - p)),
        QM=QM, QM_df=QM_df, QM_p=QM_p, btt=btt, fit_stats=fit_stats, rows=rows,
        _problem=problem, _theta=theta, **extra)


def _json(value):
    """JSON-ready copy: arrays to lists, NaN to None, numpy scalars to Python."""
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


@dataclass(eq=False)
class RmaMvResult:
    """A fitted :func:`rma_mv` model.

    Attributes
    ----------
    beta, se, stat, pval, ci_lb, ci_ub : ndarray
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
    ci_lb: np.ndarray
    ci_ub: np.ndarray
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
    _problem: _Problem | None = field(default=None, repr=False)
    _theta: np.ndarray | None = field(default=None, repr=False)
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

    def _crit(self) -> float:
        dist = stats.t(self.df) if self.test == "t" else stats.norm()
        return float(dist.ppf(0.5 + self.level / 2))

    def predict(self, newX=None, outcome=None) -> dict:
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
        dict of ndarray
            ``pred, se, ci_lb, ci_ub, pi_lb, pi_ub``; the prediction interval is
            ``pred +/- crit * sqrt(se^2 + sum(sigma2))`` (``tau2`` for CS / UN), as metafor.
        """
        if newX is None:
            newX = np.ones((1, 1)) if self.p == 1 else self._problem.X
        newX = np.asarray(newX, dtype=float)
        if newX.ndim < 2:  # one row of p values, or (p = 1) a vector of intercept-only rows
            newX = newX.reshape(-1, 1) if self.p == 1 else newX.reshape(1, -1)
        if newX.ndim != 2 or newX.shape[1] != self.p:
            raise DataError(f"newX needs {self.p} columns, got shape {newX.shape}", column="newX")
        pred = newX @ self.beta
        se = np.sqrt(np.einsum("ij,jk,ik->i", newX, self.vcov, newX))
        crit = self._crit()
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
        out = {"pred": pred, "se": se, "ci_lb": pred - crit * se, "ci_ub": pred + crit * se}
        if extra is not None:
            half = crit * np.sqrt(se**2 + extra)
            out.update(pi_lb=pred - half, pi_ub=pred + half)
        return out

    def confint_sigma2(self, level: float | None = None) -> dict:
        """Profile-likelihood confidence intervals of each ``sigma2`` (metafor ``confint``).

        The bounds solve ``ll_profile(sigma2_j) = ll_max - chi2_{1, level} / 2`` where the other
        components are re-estimated at each trial value; a lower bound at 0 is reported as 0.

        Returns
        -------
        dict
            ``{name: {"estimate", "ci_lb", "ci_ub"}}``.
        """
        if self.sigma2 is None:
            raise SpecError("profile intervals are available for the nested sigma2 components only",
                            key="struct")
        level = self.level if level is None else float(level)
        if level not in self._confint:
            self._confint[level] = {name: _profile_ci(self, j, level)
                                    for j, name in enumerate(self.sigma2_names)}
        return self._confint[level]

    def to_dict(self) -> dict:
        """JSON-ready summary (lists and floats; None where a value does not apply or is NaN)."""
        coefs = {name: {"estimate": self.beta[j], "se": self.se[j], "stat": self.stat[j],
                        "pval": self.pval[j], "ci_lb": self.ci_lb[j], "ci_ub": self.ci_ub[j]}
                 for j, name in enumerate(self.coef_names)}
        out = {"model": "rma_mv", "method": self.method, "test": self.test, "level": self.level,
               "k": self.k, "p": self.p, "struct": self.struct, "coefficients": coefs,
               "vcov": self.vcov, "df": self.df, "QE": self.QE, "QE_df": self.QE_df,
               "QE_p": self.QE_p, "QM": self.QM, "QM_df": list(self.QM_df), "QM_p": self.QM_p,
               "fit_stats": self.fit_stats, "omitted_rows": [int(r) for r in self.omitted_rows]}
        if self.sigma2 is not None:
            out["sigma2"] = {"values": self.sigma2, "names": self.sigma2_names,
                             "levels": self.sigma2_levels}
            out["icc"] = self.icc
        else:
            out.update(tau2=self.tau2, rho=self.rho, G=self.G, G_names=self.G_names)
        if self.p == 1 and np.all(self._problem.X == 1.0):
            out["prediction"] = {key: float(v[0]) for key, v in self.predict().items()}
        return _json(out)

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
                  f"QE(df = {self.QE_df}) = {self.QE:.4f}, p-val {_fmt_p(self.QE_p)}", ""]
        if self.test == "t":
            lines.append(f"Test of Moderators (coefficient(s) {_btt(self.btt)}):")
            lines.append(f"F(df1 = {self.QM_df[0]}, df2 = {self.QM_df[1]}) = {self.QM:.4f}, "
                         f"p-val {_fmt_p(self.QM_p)}")
        else:
            lines.append(f"Test of Moderators (coefficient(s) {_btt(self.btt)}):")
            lines.append(f"QM(df = {self.QM_df[0]}) = {self.QM:.4f}, p-val {_fmt_p(self.QM_p)}")
        stat = "tval" if self.test == "t" else "zval"
        lines += ["", "Model Results:", ""]
        width = max(len(n) for n in self.coef_names)
        lines.append(" " * width + "".join(f"{h:>10}" for h in ("estimate", "se", stat, "pval", "ci.lb", "ci.ub")))
        for j, name in enumerate(self.coef_names):
            vals = (self.beta[j], self.se[j], self.stat[j])
            lines.append(f"{name:<{width}}" + "".join(f"{v:>10.4f}" for v in vals)
                         + f"{_fmt_p(self.pval[j], bare=True):>10}"
                         + "".join(f"{v:>10.4f}" for v in (self.ci_lb[j], self.ci_ub[j])))
        return "\n".join(lines)


def _btt(btt):
    return ":".join(str(b + 1) for b in (btt[0], btt[-1])) if len(btt) > 1 else str(btt[0] + 1)


def _fmt_p(p, bare=False):
    if p < 1e-4:
        return "<.0001"
    return f"{p:.4f}" if bare else f"= {p:.4f}"


def _profile_ci(result, j, level):
    """Profile-likelihood bounds of sigma2_j (other components re-estimated at each trial)."""
    problem, theta_hat = result._problem, result._theta
    target = result.ll - stats.chi2.ppf(level, 1) / 2.0
    free = np.ones(len(theta_hat), bool)
    free[j] = False
    start = np.log(np.maximum(theta_hat, 1e-4 * problem.scale))

    def gap(value):
        phi = start.copy()
        with np.errstate(divide="ignore"):
            phi[j] = math.log(value) if value > 0 else -np.inf
        _, fit = problem.maximize(phi, free)
        return problem.ll(fit) - target

    est = float(theta_hat[j])
    if est <= 0 or gap(0.0) >= 0:
        lower = 0.0
    else:
        lower = optimize.brentq(gap, 0.0, est, xtol=1e-15, rtol=1e-13, maxiter=500)
    upper_bracket = max(est, problem.scale * 1e-3)
    for _ in range(200):
        upper_bracket *= 2.0
        if gap(upper_bracket) < 0:
            break
    else:
        return {"estimate": est, "ci_lb": lower, "ci_ub": math.inf}
    upper = optimize.brentq(gap, est, upper_bracket, xtol=1e-15, rtol=1e-13, maxiter=500)
    return {"estimate": est, "ci_lb": lower, "ci_ub": upper}


# ----------------------------------------------------------------------------------------------
# regression from a pooled correlation matrix (two-stage path models)
# ----------------------------------------------------------------------------------------------


@dataclass(eq=False)
class MatregResult:
    """Standardized regression coefficients from a correlation matrix, with delta-method errors."""

    coef_names: list
    beta: np.ndarray
    se: np.ndarray
    zval: np.ndarray
    pval: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    vcov: np.ndarray
    QM: float
    QM_p: float
    R2: float
    level: float

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        coefs = {n: {"estimate": self.beta[j], "se": self.se[j], "zval": self.zval[j],
                     "pval": self.pval[j], "ci_lb": self.ci_lb[j], "ci_ub": self.ci_ub[j]}
                 for j, n in enumerate(self.coef_names)}
        return _json({"model": "matreg", "coefficients": coefs, "vcov": self.vcov, "QM": self.QM,
                      "QM_p": self.QM_p, "R2": self.R2, "level": self.level})


def _index(which, names, p, key):
    if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
        if not 0 <= which < p:
            raise SpecError(f"index {which} is outside 0..{p - 1}", key=key)
        return int(which)
    if names is None or which not in names:
        raise SpecError(f"unknown variable {which!r}; variables are {names}", key=key)
    return names.index(which)


def matreg(R, vcov, y, x=None, *, names=None, level=0.95) -> MatregResult:
    """Regression of ``y`` on ``x`` from a (pooled) correlation matrix, as metafor's ``matreg``.

    Model: ``b = R_xx^-1 r_xy`` with ``Var(b) = A V A'``, ``A = d b / d vech(R)`` (multivariate
    delta method), where ``V`` is the covariance of the lower-triangle correlations of ``R`` in
    column-major order (e.g. the ``vcov`` of an :func:`rma_mv` fit of those correlations).

    Parameters
    ----------
    R : array_like or pandas.DataFrame, shape (p, p)
        Correlation matrix (lower triangle used; diagonal set to 1). A DataFrame names its
        variables by its columns.
    vcov : array_like, shape (p(p-1)/2, p(p-1)/2)
        Covariance matrix of the lower-triangle elements, column-major.
    y : str or int
        Outcome variable (name, or 0-based index).
    x : sequence of str or int, optional
        Predictors (default: all other variables).
    names : sequence of str, optional
        Variable names when ``R`` is a plain array.
    level : float
        Confidence level of the Wald intervals.

    Returns
    -------
    MatregResult

    References
    ----------
    Becker, B. J. (1992). *J. Educ. Stat.*, 17, 341-362; Viechtbauer, W. (2010). metafor's
    ``matreg``.
    """
    if names is None and hasattr(R, "columns"):
        names = [str(c) for c in R.columns]
    names = None if names is None else [str(n) for n in names]
    R = np.array(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise DataError(f"R must be a square matrix, got shape {R.shape}", column="R")
    p = R.shape[0]
    if names is not None and len(names) != p:
        raise SpecError(f"{len(names)} names for a {p} x {p} matrix", key="names")
    if not 0 < float(level) < 1:
        raise SpecError(f"level must lie in (0, 1), got {level!r}", key="level")
    lower = np.tril(R, -1)
    R = lower + lower.T + np.eye(p)
    iy = _index(y, names, p, "y")
    ix = [j for j in range(p) if j != iy] if x is None else [_index(v, names, p, "x") for v in x]
    if iy in ix or len(set(ix)) != len(ix) or not ix:
        raise SpecError("x must be distinct variables other than y", key="x")
    s = p * (p - 1) // 2
    V = np.asarray(vcov, dtype=float)
    if V.shape != (s, s):
        raise DataError(f"vcov must be {s} x {s} for a {p} x {p} matrix, got {V.shape}", column="vcov")
    Rxx, rxy = R[np.ix_(ix, ix)], R[ix, iy]
    try:
        inv = linalg.cho_solve(linalg.cho_factor(Rxx), np.eye(len(ix)))
    except linalg.LinAlgError:
        raise DataError("R[x, x] is not positive definite", column="R") from None
    b = inv @ rxy
    # Jacobian of b over the lower-triangle elements (column-major), perturbing R symmetrically
    A = np.zeros((len(ix), s))
    pairs = [(i, j) for j in range(p) for i in range(j + 1, p)]
    pos = {v: a for a, v in enumerate(ix)}
    for col, (i, j) in enumerate(pairs):
        if i in pos and j in pos:
            D = np.zeros((len(ix), len(ix)))
            D[pos[i], pos[j]] = D[pos[j], pos[i]] = 1.0
            A[:, col] = -inv @ D @ b
        elif iy in (i, j) and (i in pos or j in pos):
            A[:, col] = inv[:, pos[j if i == iy else i]]
    vb = A @ V @ A.T
    se = np.sqrt(np.diag(vb))
    zval = b / se
    crit = float(stats.norm.isf((1 - float(level)) / 2))
    QM = float(b @ np.linalg.solve(vb, b))
    labels = [names[j] if names else str(j) for j in ix]
    return MatregResult(labels, b, se, zval, 2 * stats.norm.sf(np.abs(zval)), b - crit * se,
                        b + crit * se, vb, QM, float(stats.chi2.sf(QM, len(ix))), float(b @ rxy),
                        float(level))
