"""Two-stage meta-analytic structural equation modelling (TSSEM with a GLS first stage).

Stage 1 pools the studies' correlation vectors by multivariate REML (metafor ``rma.mv`` with
``random = ~ pair | study, struct = "UN"``)::

    r_i = rho + u_i + e_i,   u_i ~ N(0, T),   e_i ~ N(0, V_i),

with ``V_i`` the Olkin-Siotani covariance evaluated at study i's own correlations (metafor
``rcalc``; a study missing a correlation that one of its covariances needs is dropped, as metafor
does). Stage 2 turns the pooled matrix into path coefficients (metafor ``matreg``) and effects
(:class:`bayes_se.path_algebra.PathModel`), with delta-method standard errors (derivatives by complex
step, exact to rounding) and parametric-bootstrap percentile intervals from
``rho* ~ N(rho_hat, vcov)`` (draws that are not positive definite are discarded).

References
----------
Becker, B. J. (1992). Journal of Educational Statistics 17, 341-362.
Cheung, M. W.-L. & Chan, W. (2005). Meta-analytic structural equation modeling: a two-stage
approach. Psychological Methods 10, 40-64.
Viechtbauer, W. (2010). metafor, J. Stat. Softw. 36(3) (``rcalc``, ``rma.mv``, ``matreg``).
Squire, W. & Trapp, G. (1998). Using complex variables to estimate derivatives of real functions.
SIAM Review 40, 110-112.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import linalg, stats

from bayes_se.correlations import CorrelationData, olkin_siotani
from bayes_se.errors import SpecError
from bayes_se.frequentist.multilevel import MatregResult, RmaMvResult, matreg, rma_mv
from bayes_se.path_algebra import path_model, reported_effects, vec_to_matrix

# reported_effects lives in bayes_se.path_algebra and stays importable from here
__all__ = ["two_stage", "TwoStageResult", "stage1_inputs", "reported_effects"]

#: Parametric bootstrap draws of the pooled correlation vector.
N_BOOT = 5000
_COMPLEX_STEP = 1e-20


def stage1_inputs(data: CorrelationData):
    """Long vectors for stage 1: correlations, block-diagonal V, pair label and study per row.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, list of str, list of str)
        ``yi``, ``V`` (rcalc's Olkin-Siotani blocks, NaN where a needed correlation is missing),
        ``outcome``, ``study``.
    """
    labels = data.pair_labels
    yi, outcome, study, blocks = [], [], [], []
    for i in range(data.k):
        obs = np.flatnonzero(data.observed[i])
        Vi = olkin_siotani(data.matrix(i), data.n[i])
        yi.extend(data.r[i, obs])
        outcome.extend(labels[c] for c in obs)
        study.extend([data.study[i]] * len(obs))
        blocks.append(Vi[np.ix_(obs, obs)])
    return np.array(yi), linalg.block_diag(*blocks), outcome, study


@dataclass(eq=False)
class TwoStageResult:
    """A two-stage MASEM fit.

    Attributes
    ----------
    stage1 : RmaMvResult
        The multivariate REML fit of the correlations.
    R : pandas.DataFrame
        Pooled correlation matrix.
    vcov : numpy.ndarray
        Covariance of the pooled correlations (pair order of :class:`CorrelationData`).
    matreg : dict of str to MatregResult
        One regression per equation (keyed by outcome).
    effects : pandas.DataFrame
        Rows: effects (``a``, ``b``, ``c_prime``, ``indirect``, ``total``, ``prop_mediated`` for
        the mediation model; ``x->y``, ``indirect[...]``, ``total[...]`` in general); columns
        ``estimate``, ``se``, ``ci_lower``, ``ci_upper`` (delta method), ``boot_lower``, ``boot_upper``
        (parametric bootstrap percentiles).
    notes : list of str
        Warnings of stage 1 (rows metafor's NA rule omitted).
    """

    stage1: RmaMvResult
    R: pd.DataFrame
    vcov: np.ndarray
    matreg: dict
    effects: pd.DataFrame
    level: float
    n_boot: int
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready: pooled R, stage 1 heterogeneity, matreg fits, effects."""
        def num(v):
            return None if not np.isfinite(v) else float(v)

        return {
            "model": "two_stage_masem",
            "variables": list(self.R.columns),
            "pooled_R": self.R.to_numpy().tolist(),
            "vcov": self.vcov.tolist(),
            "tau2": [float(t) for t in self.stage1.tau2],
            "matreg": {y: m.to_dict() for y, m in self.matreg.items()},
            "effects": {name: {c: num(v) for c, v in row.items()} for name, row in self.effects.iterrows()},
            "level": self.level,
            "n_boot": self.n_boot,
            "notes": list(self.notes),
        }


def _jacobian(fun, rho):
    """d fun / d rho by complex step (fun: rho vector -> dict of values)."""
    base = fun(rho.astype(complex))
    J = {name: np.zeros(rho.size) for name in base}
    for c in range(rho.size):
        step = rho.astype(complex)
        step[c] += 1j * _COMPLEX_STEP
        for name, value in fun(step).items():
            J[name][c] = np.imag(value) / _COMPLEX_STEP
    return {name: np.real(v) for name, v in base.items()}, J


def two_stage(data: CorrelationData, *, paths=None, x="intervention", m="self_efficacy", y="symptoms",
              level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> TwoStageResult:
    """Two-stage MASEM: multivariate REML pooling of correlations, then path regression.

    Model (stage 1): ``r_i ~ N(rho, V_i + T)`` over the observed pairs, ``T`` unstructured;
    (stage 2): ``B = R_xx^-1 R_xy`` per equation, effects as products along paths.

    Parameters
    ----------
    data : CorrelationData
    paths : dict, optional
        ``{outcome: [predictors]}``; default the mediation ``m ~ x``, ``y ~ x + m``.
    x, m, y : str
        The mediation model's variables when ``paths`` is None.
    level : float
        Confidence level of the delta-method and bootstrap intervals.
    n_boot : int
        Parametric bootstrap draws (0 skips the bootstrap).
    seed : int
        Seeds the bootstrap.

    Returns
    -------
    TwoStageResult

    References
    ----------
    Cheung & Chan (2005), Psychological Methods 10:40-64; Becker (1992); metafor ``matreg``.
    """
    if not 0 < float(level) < 1:
        raise SpecError(f"level must lie in (0, 1), got {level!r}", key="level")
    model = path_model(data, paths, x, m, y)
    yi, V, outcome, study = stage1_inputs(data)
    labels = data.pair_labels
    X = np.column_stack([[float(o == lab) for o in outcome] for lab in labels])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = rma_mv(yi, V, X=X, coef_names=labels, struct="UN", outcome=outcome, study=study,
                     outcome_levels=labels, level=level)
    notes = [str(w.message) for w in caught]
    for w in caught:
        if not issubclass(w.category, UserWarning) or "omitted" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    p = data.p
    rho, vcov = np.asarray(fit.beta, float), np.asarray(fit.vcov, float)
    R = vec_to_matrix(rho, p)
    Rdf = pd.DataFrame(R, index=list(data.variables), columns=list(data.variables))
    regs = {out: matreg(Rdf, vcov, out, xs, level=level) for out, xs in model.equations.items()}

    def fun(vec):
        return model.effects(vec_to_matrix(vec, p))

    est, J = _jacobian(fun, rho)
    names = reported_effects(model, est)
    crit = float(stats.norm.isf((1 - level) / 2))
    rows = []
    boot = {}
    if n_boot:
        rng = np.random.default_rng(seed)
        draws = rng.multivariate_normal(rho, vcov, size=n_boot, method="cholesky")
        Rb = vec_to_matrix(draws, p)
        ok = np.all(np.abs(draws) < 1, axis=1) & (np.linalg.eigvalsh(Rb)[:, 0] > 0)
        boot = model.effects(Rb[ok])
    for name in names:
        se = float(np.sqrt(J[name] @ vcov @ J[name]))
        row = {"parameter": name, "estimate": float(est[name]), "se": se,
               "ci_lower": float(est[name]) - crit * se, "ci_upper": float(est[name]) + crit * se}
        if boot:
            lo, hi = np.quantile(boot[name], [(1 - level) / 2, (1 + level) / 2])
            row.update(boot_lower=float(lo), boot_upper=float(hi))
        rows.append(row)
    effects = pd.DataFrame(rows).set_index("parameter")
    return TwoStageResult(stage1=fit, R=Rdf, vcov=vcov, matreg=regs, effects=effects, level=float(level),
                          n_boot=int(n_boot), notes=notes)

