"""Frequentist pooling of reported mediation paths: the bivariate random-effects model of (a, b).

Each trial reports the paths of its own single-mediator analysis: ``a`` (X -> M), ``b``
(M -> Y given X), often ``c'`` (X -> Y given M), with their sampling covariance. The paths are
stacked long (one row per study and reported path) and pooled by metafor's ``rma.mv``::

    (a_i_hat, b_i_hat) ~ N((a_i, b_i), S_i),   (a_i, b_i) ~ N((a, b), G),
    G = [[tau_a^2, rho_ab tau_a tau_b], [rho_ab tau_a tau_b, tau_b^2]]

(metafor: ``rma.mv(yi, V, mods = ~ path - 1, random = ~ path | study, struct = "UN")``; ``V``
block-diagonal from each study's 2 x 2 ``S_i``, or 1 x 1 where it reports only one of a, b), fitted
by :func:`bayes_se.frequentist.multilevel.rma_mv` (REML or ML). ``c'`` is pooled on its own by the
univariate :func:`bayes_se.frequentist.rma.rma` (REML); the sampling covariance between b and c'
is not used here (the Bayesian path model, ``bayes_se.mediation_paths``, models it).

Derived effects:

* the indirect effect at the pooled paths ``a b``: delta-method SE
  ``sqrt(b^2 var_a + a^2 var_b + 2 a b cov_ab)`` (Sobel 1982) with a Wald interval, and the Monte
  Carlo interval: percentiles of ``a* b*`` over ``(a*, b*) ~ N((a, b), vcov)`` (MacKinnon,
  Lockwood & Williams 2004), seeded;
* the new-trial indirect effect ``a_new b_new``, ``(a_new, b_new) ~ N((a, b), vcov + G)``:
  Monte Carlo prediction interval with ``G`` plugged in (as metafor's prediction intervals);
* the average indirect effect ``E[a_i b_i] = a b + rho_ab tau_a tau_b`` (Kenny, Bolger & Korchmaros
  2003; Bauer, Preacher & Gil 2006). Its delta-method SE adds ``var(sigma_ab)``, the
  ``sigma_ab = G[a, b]`` entry of the inverse observed information of ``vech(G)`` (Harville 1977),
  to the variance of ``a b``: the fixed effects and the variance components are asymptotically
  independent (block-diagonal information). On the boundary (``G`` singular: a tau at 0 or
  ``|rho_ab| = 1``) that SE does not apply and is NaN;
* the total effect ``c' + a b`` when c' is pooled; its SE treats the c' fit as independent of the
  (a, b) fit (a note says so).

References
----------
Viechtbauer, W. (2010). Conducting meta-analyses in R with the metafor package. *Journal of
Statistical Software*, 36(3), 1-48 (``rma.mv`` with ``struct = "UN"``; ``cvvc``).
MacKinnon, D. P., Lockwood, C. M., & Williams, J. (2004). Confidence limits for the indirect
effect: distribution of the product and resampling methods. *Multivariate Behavioral Research*,
39, 99-128.
Sobel, M. E. (1982). Asymptotic confidence intervals for indirect effects in structural equation
models. *Sociological Methodology*, 13, 290-312.
Kenny, D. A., Bolger, N., & Korchmaros, J. D. (2003). Lower level mediation in multilevel models.
*Psychological Methods*, 8, 115-128.
Bauer, D. J., Preacher, K. J., & Gil, K. M. (2006). Conceptualizing and testing random indirect
effects and moderated mediation in multilevel models. *Psychological Methods*, 11, 142-163.
Harville, D. A. (1977). Maximum likelihood approaches to variance component estimation. *JASA*,
72, 320-338.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import linalg

from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist.common import COEF_COLUMNS, coef_table, format_coef_table, format_p, json_ready
from bayes_se.frequentist.dist import stats
from bayes_se.frequentist.mv_likelihood import score_hessian
from bayes_se.frequentist.multilevel import RmaMvResult, rma_mv
from bayes_se.frequentist.rma import RMAResult, rma

__all__ = ["paths_rma", "PathsRmaResult", "PATH_NAMES", "EFFECT_COLUMNS"]

#: The reported paths, in the column order of ``est`` and ``cov``.
PATH_NAMES = ("a", "b", "c_prime")
#: Columns of :attr:`PathsRmaResult.effects`: the coefficient columns, then the Monte Carlo
#: interval of the indirect effect and the new-trial prediction interval (NaN where they do not
#: apply).
EFFECT_COLUMNS = COEF_COLUMNS + ("mc_lower", "mc_upper", "pi_lower", "pi_upper")

_SE_COLUMN = {0: "se_a", 1: "se_b", 2: "se_c_prime"}


# ----------------------------------------------------------------------------------------- input
def _inputs(data_or_est, cov, study):
    """``est`` (k, p), ``cov`` (k, p, p) and study labels from a PathEstimates-like object or arrays."""
    if all(hasattr(data_or_est, name) for name in ("study", "est", "cov")):
        obj = data_or_est
        est = obj.est
        cov = obj.cov if cov is None else cov
        study = obj.study if study is None else study
    else:
        est = data_or_est
    try:
        est = np.array(est, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"path estimates must be numbers ({exc})", column="est") from None
    if est.ndim != 2 or est.shape[1] not in (2, 3):
        raise DataError(f"path estimates must be a (k, 2) or (k, 3) array of (a, b[, c_prime]), got shape "
                        f"{est.shape}", column="est")
    k, p = est.shape
    if cov is None:
        raise DataError("the sampling covariances of the paths are required (cov, shape (k, p, p))",
                        column="cov")
    try:
        cov = np.array(cov, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"sampling covariances must be numbers ({exc})", column="cov") from None
    if cov.shape != (k, p, p):
        raise DataError(f"sampling covariances must have shape ({k}, {p}, {p}) to match the estimates, got "
                        f"{cov.shape}", column="cov")
    if study is None:
        study = [f"study{i + 1}" for i in range(k)]
    study = [str(s) for s in (study.tolist() if isinstance(study, np.ndarray) else list(study))]
    if len(study) != k:
        raise DataError(f"has {len(study)} labels for {k} studies", column="study")
    seen = {}
    for i, s in enumerate(study):
        if s in seen:
            raise DataError(f"study {s!r} appears twice (also row {seen[s] + 1})", row=i + 1, column="study")
        seen[s] = i
    if k < 2:
        raise DataError(f"{k} study given; pooling needs at least 2 studies", column="study")
    return est, cov, study


def _check_row(i, est, cov, study):
    """Check study ``i``'s reported paths and the sampling covariance of its (a, b) block."""
    where = f"study {study[i]!r}: "
    p = est.shape[1]
    reported = ~np.isnan(est[i])
    for j in range(p):
        if np.isinf(est[i, j]):
            raise DataError(where + f"{PATH_NAMES[j]} is infinite", row=i + 1, column=PATH_NAMES[j])
        if reported[j]:
            v = cov[i, j, j]
            if not np.isfinite(v):
                raise DataError(where + f"{PATH_NAMES[j]} is reported but its standard error is missing",
                                row=i + 1, column=_SE_COLUMN[j])
            if v <= 0:
                raise DataError(where + f"the sampling variance of {PATH_NAMES[j]} must be positive, got {v:g}",
                                row=i + 1, column=_SE_COLUMN[j])
    if reported[0] and reported[1]:
        c01, c10 = cov[i, 0, 1], cov[i, 1, 0]
        if not (np.isfinite(c01) and np.isfinite(c10)):
            raise DataError(where + "a and b are reported but their sampling covariance is missing "
                            "(give 0 when the study does not report it)", row=i + 1, column="cov_ab")
        if not math.isclose(c01, c10, rel_tol=1e-10, abs_tol=0.0):
            raise DataError(where + f"the covariance matrix is not symmetric ({c01:g} vs {c10:g})",
                            row=i + 1, column="cov_ab")
        S = cov[i, :2, :2]
        if S[0, 0] * S[1, 1] - c01 * c01 <= 0:
            raise DataError(where + f"the sampling covariance of (a, b) is not positive definite: |cov_ab| = "
                            f"{abs(c01):g} >= se_a se_b = {math.sqrt(S[0, 0] * S[1, 1]):g}",
                            row=i + 1, column="cov_ab")


def _stack(est, cov, study):
    """Long vectors of the (a, b) model: estimates, block-diagonal V, path and study labels."""
    yi, path, lab, blocks = [], [], [], []
    for i in range(est.shape[0]):
        obs = [j for j in (0, 1) if not np.isnan(est[i, j])]
        if not obs:
            continue
        yi.extend(est[i, obs])
        path.extend(PATH_NAMES[j] for j in obs)
        lab.extend([study[i]] * len(obs))
        blocks.append(cov[i][np.ix_(obs, obs)])
    return np.array(yi), linalg.block_diag(*blocks), path, lab


# ---------------------------------------------------------------------------------------- result
@dataclass(eq=False)
class PathsRmaResult:
    """A fitted :func:`paths_rma` model.

    Attributes
    ----------
    fit : RmaMvResult
        The bivariate ``rma_mv`` fit of (a, b) (coefficients ``a``, ``b``).
    c_prime_fit : RMAResult or None
        The univariate REML fit of c' (None when fewer than 2 studies report it).
    effects : pandas.DataFrame
        Rows ``a``, ``b``, [``c_prime``], ``indirect`` (a b), ``indirect_avg`` (a b + rho_ab tau_a
        tau_b), [``total``] (c' + a b); columns :data:`EFFECT_COLUMNS`: ``estimate``, ``se``,
        ``stat`` (z), ``pval``, ``ci_lower``, ``ci_upper`` (Wald / delta method), ``mc_lower``,
        ``mc_upper`` (Monte Carlo interval of ``indirect``), ``pi_lower``, ``pi_upper`` (new-trial
        prediction intervals: Wald for a, b, c', Monte Carlo for ``indirect``).
    tau_a, tau_b, rho_ab : float
        Between-study SDs of a and b and the correlation of a_i and b_i.
    var_sigma_ab : float
        Variance of the estimated covariance ``sigma_ab = rho_ab tau_a tau_b`` (inverse observed
        information of ``vech(G)``), NaN on the boundary.
    vcov_G : numpy.ndarray
        Inverse observed information of ``(tau_a^2, sigma_ab, tau_b^2)`` (NaN on the boundary).
    study : list of str
        Study labels of the input rows.
    n_studies : dict
        Studies reporting ``a``, ``b``, both (``ab``) and ``c_prime``.
    notes : list of str
        What the fit assumed or left out.
    """

    fit: RmaMvResult
    c_prime_fit: RMAResult | None
    effects: pd.DataFrame
    tau_a: float
    tau_b: float
    rho_ab: float
    var_sigma_ab: float
    vcov_G: np.ndarray
    method: str
    level: float
    n_mc: int
    seed: int | None
    study: list
    n_studies: dict
    notes: list = field(default_factory=list)

    # ---- the (a, b) fit
    @property
    def vcov(self) -> np.ndarray:
        """Covariance of the pooled (a, b)."""
        return self.fit.vcov

    @property
    def G(self) -> np.ndarray:
        """Between-study covariance matrix of (a_i, b_i)."""
        return self.fit.G

    @property
    def tau2(self) -> np.ndarray:
        """``(tau_a^2, tau_b^2)``."""
        return self.fit.tau2

    @property
    def logLik(self) -> float:
        """(Restricted) log-likelihood of the (a, b) fit, metafor's ``logLik``."""
        return self.fit.ll

    @property
    def k(self) -> int:
        """Number of studies given."""
        return len(self.study)

    def coef_table(self) -> pd.DataFrame:
        """The pooled paths ``a``, ``b`` [, ``c_prime``]: columns ``estimate, se, stat, pval, ci_lower,
        ci_upper``."""
        names = [n for n in PATH_NAMES if n in self.effects.index]
        t = self.effects.loc[names, list(COEF_COLUMNS)]
        return coef_table(names, *(t[c].to_numpy() for c in COEF_COLUMNS))

    def to_dict(self) -> dict:
        """JSON-ready summary (None where a value is NaN or does not apply).

        Keys: the common ones (``model`` = ``"paths_rma"``, ``level``, ``coefficients`` (a, b [,
        c_prime]), ``vcov`` (of a, b), ``QM``, ``QM_df``, ``QM_p``), then ``method``, ``k``,
        ``n_studies``, ``Q``, ``Q_df``, ``Q_p`` (of the (a, b) fit), ``logLik``, ``fit_stats``,
        ``tau2`` and ``tau`` (``{"a": .., "b": ..}``), ``rho_ab``, ``G``, ``var_sigma_ab``,
        ``effects`` (``{row: {column: value}}`` for the rows and columns of :attr:`effects`),
        ``c_prime`` (the c' fit's ``to_dict()`` or None), ``n_mc``, ``seed``, ``notes``.
        """
        f = self.fit
        out = {"model": "paths_rma", "level": self.level, "coefficients": self.coef_table(), "vcov": f.vcov,
               "QM": f.QM, "QM_df": list(f.QM_df), "QM_p": f.QM_p, "method": self.method, "k": self.k,
               "n_studies": dict(self.n_studies), "Q": f.QE, "Q_df": f.QE_df, "Q_p": f.QE_p,
               "logLik": self.logLik, "fit_stats": f.fit_stats,
               "tau2": {"a": f.tau2[0], "b": f.tau2[1]}, "tau": {"a": self.tau_a, "b": self.tau_b},
               "rho_ab": self.rho_ab, "G": f.G, "var_sigma_ab": self.var_sigma_ab,
               "effects": self.effects,
               "c_prime": None if self.c_prime_fit is None else self.c_prime_fit.to_dict(),
               "n_mc": self.n_mc, "seed": self.seed, "notes": list(self.notes)}
        return json_ready(out)

    def summary(self) -> str:
        """A text report: the model, heterogeneity, pooled paths and the derived effects."""
        f, ns = self.fit, self.n_studies
        lines = [f"Bivariate random-effects model of reported paths (k = {self.k} studies: {ns['a']} report a, "
                 f"{ns['b']} b, {ns['ab']} both; method: {self.method})", "",
                 f"logLik = {self.logLik:.4f}",
                 f"tau_a = {self.tau_a:.4f}, tau_b = {self.tau_b:.4f}, rho_ab = {self.rho_ab:.4f}",
                 f"QE(df = {f.QE_df}) = {f.QE:.4f}, p-val {format_p(f.QE_p)}",
                 f"QM(df = {f.QM_df[0]}) = {f.QM:.4f}, p-val {format_p(f.QM_p)}", ""]
        if self.c_prime_fit is not None:
            c = self.c_prime_fit
            lines += [f"c_prime: univariate REML fit of {c.k} studies, tau = {math.sqrt(c.tau2):.4f}, "
                      f"QE(df = {c.QE_df}) = {c.QE:.4f}, p-val {format_p(c.QE_p)}", ""]
        lines += ["Pooled paths:", ""] + format_coef_table(self.coef_table(), "zval")
        pct = f"{100 * self.level:g}%"
        lines += ["", f"Effects ({pct} intervals: delta method; Monte Carlo; new-trial prediction):", ""]
        for name in ("indirect", "indirect_avg", "total"):
            if name not in self.effects.index:
                continue
            r = self.effects.loc[name]
            text = (f"{name:<13}{r['estimate']:>9.4f}  se {r['se']:.4f}  "
                    f"[{r['ci_lower']:.4f}, {r['ci_upper']:.4f}]")
            if np.isfinite(r["mc_lower"]):
                text += f"  MC [{r['mc_lower']:.4f}, {r['mc_upper']:.4f}]"
            if np.isfinite(r["pi_lower"]):
                text += f"  PI [{r['pi_lower']:.4f}, {r['pi_upper']:.4f}]"
            lines.append(text)
        if self.notes:
            lines += [""] + [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


# ------------------------------------------------------------------------------------------- fit
def _vcov_G(fit: RmaMvResult):
    """Inverse observed information of ``vech(G) = (tau_a^2, sigma_ab, tau_b^2)`` and, where it is not
    available, why (None when it is)."""
    problem, theta = fit.problem, fit.theta
    nan = np.full((len(theta), len(theta)), np.nan)
    if not problem.interior(theta, np.ones(len(theta), bool)):
        return nan, ("G is on the boundary of its parameter space (a tau at 0 or |rho_ab| = 1): the SE of the "
                     "average indirect effect is not available")
    _, H = score_hessian(problem.evaluate(theta), problem.A, problem.reml, list(range(len(theta))))
    if not np.all(np.isfinite(H)) or np.linalg.eigvalsh(-H)[0] <= 0:
        return nan, ("the observed information of G is not positive definite: the SE of the average indirect "
                     "effect is not available")
    return np.linalg.inv(-H), None


def _row(estimate, se, crit, **extra):
    z = estimate / se if se > 0 else np.nan
    row = {"estimate": estimate, "se": se, "stat": z, "pval": float(2.0 * stats.norm.sf(abs(z))),
           "ci_lower": estimate - crit * se, "ci_upper": estimate + crit * se,
           "mc_lower": np.nan, "mc_upper": np.nan, "pi_lower": np.nan, "pi_upper": np.nan}
    row.update(extra)
    return row


def _mc_product(mean, cov, n, rng, q):
    """Percentiles ``q`` of ``x y`` over ``(x, y) ~ N(mean, cov)`` (n draws)."""
    L = np.linalg.cholesky(cov)
    draws = mean + rng.standard_normal((n, 2)) @ L.T
    return np.quantile(draws[:, 0] * draws[:, 1], q)


def paths_rma(data_or_est, cov=None, study=None, *, method: str = "REML", level: float = 0.95,
              n_mc: int = 100_000, seed: int | None = 0) -> PathsRmaResult:
    """Pool reported mediation paths by the bivariate random-effects model of (a, b).

    ``(a_i_hat, b_i_hat) ~ N((a_i, b_i), S_i)``, ``(a_i, b_i) ~ N((a, b), G)`` with ``G``
    unstructured (tau_a, tau_b, rho_ab): metafor's ``rma.mv(yi, V, mods = ~ path - 1,
    random = ~ path | study, struct = "UN")``; c' by the univariate ``rma`` (REML). The indirect
    effect ``a b`` gets a delta-method and a Monte Carlo interval (MacKinnon, Lockwood & Williams
    2004), the average indirect effect ``a b + rho_ab tau_a tau_b`` a delta-method interval.

    Parameters
    ----------
    data_or_est : PathEstimates-like or array_like
        An object with ``study`` (k,), ``est`` (k, 3) of ``(a, b, c_prime)`` (NaN where not
        reported) and ``cov`` (k, 3, 3) sampling covariances (e.g. ``bayes_se.reported_paths``'s
        ``PathEstimates``), or the ``est`` array itself, (k, 2) or (k, 3).
    cov : array_like, optional
        (k, p, p) sampling covariances matching ``est`` (required with an array; overrides the
        object's ``cov``). Only the (a, b) block and the variance of c' are used.
    study : sequence of str, optional
        Study labels (default ``study1``, ...).
    method : {"REML", "ML"}
        Estimator of the variance components of the (a, b) model (c' is always REML).
    level : float
        Confidence level of every interval.
    n_mc : int
        Monte Carlo draws for the intervals of the indirect effect (0 skips them).
    seed : int or None
        Seeds the Monte Carlo draws (same seed, same intervals; None: fresh entropy).

    Returns
    -------
    PathsRmaResult

    Raises
    ------
    DataError
        Fewer than 2 studies, fewer than 2 reporting a or b, none reporting both, a reported path
        without a (positive, finite) variance, a missing, asymmetric or not positive definite
        covariance of (a, b), duplicate study labels (the row and column are named).
    SpecError
        Bad ``method``, ``level``, ``n_mc``.

    References
    ----------
    Viechtbauer (2010), J. Stat. Softw. 36(3) (metafor ``rma.mv``); MacKinnon, Lockwood & Williams
    (2004), Multivar. Behav. Res. 39:99-128; Sobel (1982); Bauer, Preacher & Gil (2006), Psychol.
    Methods 11:142-163.
    """
    method = str(method).upper()
    if method not in {"REML", "ML"}:
        raise SpecError(f"method must be 'REML' or 'ML', got {method!r}", key="method")
    if not 0 < float(level) < 1:
        raise SpecError(f"level must lie in (0, 1), got {level!r}", key="level")
    if isinstance(n_mc, bool) or not isinstance(n_mc, (int, np.integer)) or n_mc < 0:
        raise SpecError(f"n_mc must be a whole number >= 0, got {n_mc!r}", key="n_mc")
    level, n_mc = float(level), int(n_mc)
    est, cov, study = _inputs(data_or_est, cov, study)
    for i in range(est.shape[0]):
        _check_row(i, est, cov, study)
    rep = ~np.isnan(est)
    n_studies = {"a": int(rep[:, 0].sum()), "b": int(rep[:, 1].sum()), "ab": int((rep[:, 0] & rep[:, 1]).sum()),
                 "c_prime": int(rep[:, 2].sum()) if est.shape[1] == 3 else 0}
    for j in (0, 1):
        if n_studies[PATH_NAMES[j]] < 2:
            raise DataError(f"{n_studies[PATH_NAMES[j]]} studies report {PATH_NAMES[j]}; the bivariate model "
                            "needs at least 2", column=PATH_NAMES[j])
    if n_studies["ab"] == 0:
        raise DataError("no study reports both a and b, so their between-study correlation rho_ab is not "
                        "identified", column="b")
    notes = []
    neither = [study[i] for i in range(est.shape[0]) if not (rep[i, 0] or rep[i, 1])]
    if neither:
        notes.append(f"studies reporting neither a nor b are not in the (a, b) model: {', '.join(neither)}")

    yi, V, path, lab = _stack(est, cov, study)
    X = np.column_stack([[float(p == name) for p in path] for name in PATH_NAMES[:2]])
    fit = rma_mv(yi, V, X=X, coef_names=list(PATH_NAMES[:2]), struct="UN", outcome=path, study=lab,
                 outcome_levels=list(PATH_NAMES[:2]), method=method, level=level)
    a, b = (float(v) for v in fit.beta)
    vc = np.asarray(fit.vcov, float)
    G = np.asarray(fit.G, float)
    tau_a, tau_b = (math.sqrt(max(float(t), 0.0)) for t in fit.tau2)
    rho_ab = float(fit.rho[0])
    vcov_G, why = _vcov_G(fit)
    var_sab = float(vcov_G[1, 1])
    if why:
        notes.append(why)

    crit = float(stats.norm.ppf(0.5 + level / 2))
    q = [(1 - level) / 2, (1 + level) / 2]
    rows = {}
    for j, name in enumerate(PATH_NAMES[:2]):
        half = crit * math.sqrt(vc[j, j] + G[j, j])
        rows[name] = _row(fit.beta[j], fit.se[j], crit, pi_lower=fit.beta[j] - half, pi_upper=fit.beta[j] + half)
    c_fit = None
    if n_studies["c_prime"] >= 2:
        keep = rep[:, 2]
        c_fit = rma(est[keep, 2], cov[keep, 2, 2], method="REML", level=level,
                    slab=[s for s, k_ in zip(study, keep) if k_])
        pr = c_fit.predict().iloc[0]
        rows["c_prime"] = _row(float(c_fit.beta[0]), float(c_fit.se[0]), crit, pi_lower=pr["pi_lower"],
                               pi_upper=pr["pi_upper"])
        notes.append("c_prime is pooled by its own univariate REML model; its sampling covariance with b "
                     "is not used")
    elif n_studies["c_prime"] == 1:
        notes.append("only 1 study reports c_prime: it is not pooled")

    ind = a * b
    var_ind = b * b * vc[0, 0] + a * a * vc[1, 1] + 2 * a * b * vc[0, 1]
    mc, pi = (np.nan, np.nan), (np.nan, np.nan)
    if n_mc:
        rng = np.random.default_rng(seed)
        mc = _mc_product(np.array([a, b]), vc, n_mc, rng, q)
        pi = _mc_product(np.array([a, b]), vc + G, n_mc, rng, q)
    rows["indirect"] = _row(ind, math.sqrt(var_ind), crit, mc_lower=mc[0], mc_upper=mc[1],
                            pi_lower=pi[0], pi_upper=pi[1])
    rows["indirect_avg"] = _row(ind + float(G[0, 1]), math.sqrt(var_ind + var_sab), crit)
    if c_fit is not None:
        c, var_c = float(c_fit.beta[0]), float(c_fit.vcov[0, 0])
        rows["total"] = _row(c + ind, math.sqrt(var_c + var_ind), crit)
        notes.append("the SE of total = c_prime + a b treats the c_prime fit as independent of the (a, b) fit")
    effects = pd.DataFrame.from_dict(rows, orient="index")[list(EFFECT_COLUMNS)].astype(float)
    effects.index.name = "effect"
    return PathsRmaResult(fit=fit, c_prime_fit=c_fit, effects=effects, tau_a=tau_a, tau_b=tau_b, rho_ab=rho_ab,
                          var_sigma_ab=var_sab, vcov_G=vcov_G, method=method, level=level, n_mc=n_mc,
                          seed=None if seed is None else int(seed), study=study, n_studies=n_studies,
                          notes=notes)
