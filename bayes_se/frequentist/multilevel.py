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

The pieces live in modules of their own: :mod:`.mv_structures` (the random-effect structures),
:mod:`.mv_likelihood` (log-likelihood, score, Hessian and maximizer), :mod:`.mv_inputs` (input
checks and metafor's NA rule), :mod:`.mv_result` (:class:`RmaMvResult`), :mod:`.mv_profile`
(profile-likelihood intervals) and :mod:`.matrix_regression` (:func:`matreg`); this module fits the
model. ``rma_mv``, ``RmaMvResult``, ``matreg`` and ``MatregResult`` are importable from here and
from :mod:`bayes_se.frequentist`.

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

import numpy as np
from scipy import stats

from bayes_se.errors import ConvergenceWarning, SpecError
from bayes_se.frequentist.matrix_regression import MatregResult, matreg
from bayes_se.frequentist.mv_inputs import prepare_inputs, sorted_levels
from bayes_se.frequentist.mv_likelihood import LOG2PI, Problem
from bayes_se.frequentist.mv_result import RmaMvResult
from bayes_se.frequentist.mv_structures import CompoundSymmetry, Nested, Unstructured, same_group

__all__ = ["rma_mv", "RmaMvResult", "matreg", "MatregResult"]


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
    y, X, V, coef_names, cluster, outcome, study, rows = prepare_inputs(
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
            A.append(same_group(cluster))
            names.append(cluster_name)
            nlevels.append(len(set(map(str, cluster))))
        if "effect" in random:
            A.append(np.eye(k))
            names.append(f"{cluster_name}/{effect_name}" if "cluster" in random else effect_name)
            nlevels.append(k)
        structure = Nested(A)
        phi0 = np.full(len(A), math.log(spread / len(A)))
        info.update(sigma2_names=names, sigma2_levels=nlevels)
    else:
        study = study if study is not None else cluster
        if study is None or outcome is None:
            raise SpecError(f"struct = {struct!r} needs an outcome and a study (or cluster) for "
                            "every effect", key="struct")
        present = sorted_levels(outcome)
        levels = present if outcome_levels is None else list(outcome_levels)
        unknown = [v for v in present if v not in levels]
        if unknown:
            raise SpecError(f"outcome level {unknown[0]!r} is not in outcome_levels",
                            key="outcome_levels")
        levels = [v for v in levels if v in present]
        B = same_group(study)
        Z = np.array([[float(o == lev) for lev in levels] for o in outcome])
        info.update(G_names=[str(v) for v in levels], n_study=len(set(map(str, study))))
        if struct == "CS":
            same = Z @ Z.T
            structure = CompoundSymmetry([B * same, B * (1.0 - same)])
            phi0 = np.array([math.log(spread), math.atanh(0.5)])
        else:
            q = len(levels)
            pairs = [(j, m) for m in range(q) for j in range(m, q)]
            A = [B * (np.outer(Z[:, j], Z[:, m]) + (np.outer(Z[:, m], Z[:, j]) if j != m else 0.0))
                 for j, m in pairs]
            structure = Unstructured(A, q)
            tau2 = [max(float(np.mean(r_ols[Z[:, j] == 1] ** 2)) - float(np.mean(np.diag(V)[Z[:, j] == 1])),
                        0.1 * spread, 1e-8) for j in range(q)]
            phi0 = np.array([0.5 * math.log(tau2[j]) if j == m else 0.0 for j, m in pairs])

    problem = Problem(y, X, V, structure, method == "REML")
    theta, fit = problem.maximize(phi0, np.ones(len(phi0), bool))
    g = problem.score(fit)
    idx = problem.interior(theta, np.ones(len(theta), bool))
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
    saturated = -0.5 * k * LOG2PI - 0.5 * np.linalg.slogdet(V)[1]
    parms = p + len(theta)
    fit_stats = {"ML": _fit_stats(fit.ll_ml, k, parms, saturated),
                 "REML": _fit_stats(fit.ll_reml, k - p, parms, 0.0)}
    extra = {}
    s = problem.s
    if isinstance(s, Nested):
        extra = dict(sigma2=theta.copy(), sigma2_names=info["sigma2_names"],
                     sigma2_levels=info["sigma2_levels"])
    else:
        q = len(info["G_names"])
        if isinstance(s, CompoundSymmetry):
            tau2 = np.array([theta[0]])
            rho = np.array([theta[1] / theta[0]])
            G = theta[0] * ((1 - rho[0]) * np.eye(q) + rho[0] * np.ones((q, q)))
        else:
            G = s.G(theta)
            tau2 = np.diag(G).copy()
            sd = np.sqrt(tau2)
            R = G / np.outer(sd, sd)
            rho = np.array([R[j, m_] for j, m_ in s.pairs if j != m_])
        extra = dict(tau2=tau2, rho=rho, G=G, G_names=info["G_names"], n_study=info["n_study"])
    return RmaMvResult(
        method=method, test=test, level=level, k=k, p=p, coef_names=list(coef_names), beta=beta,
        se=se, stat=stat, pval=pval, ci_lower=beta - crit * se, ci_upper=beta + crit * se, vcov=vcov,
        df=df, struct=info["struct"], QE=QE, QE_df=k - p, QE_p=float(stats.chi2.sf(QE, k - p)),
        QM=QM, QM_df=QM_df, QM_p=QM_p, btt=btt, fit_stats=fit_stats, rows=rows,
        problem=problem, theta=theta, **extra)

