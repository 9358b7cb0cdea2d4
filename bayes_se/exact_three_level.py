"""Exact posterior of the three-level (and correlated-effects) normal model, by 2-D quadrature.

Model (effects i nested in clusters j; metafor's ``rma.mv(yi, V, random = ~ 1 | cluster/effect)``)::

    y_ij = x_ij' beta + u_j + w_ij + e_ij,   u_j ~ N(0, sigma_c^2),  w_ij ~ N(0, sigma_e^2),
    e_j ~ N(0, V_j),   beta_l ~ N(m_l, s_l^2) (or flat),   sigma_c ~ p_c,  sigma_e ~ p_e.

``V_j`` is the sampling covariance of cluster j: diagonal (``v_ij``; the three-level model) or,
for correlated effects, ``V_j[i, l] = rho sqrt(v_ij v_lj)`` off the diagonal (metafor's ``vcalc``
with a constant ``rho``; brms's ``fcor``), or any positive-definite block the caller gives.

Integrating u, w and beta out, ``y ~ N(X m, Sigma + X S X')`` with ``Sigma = blockdiag(C_j)``,
``C_j = V_j + sigma_e^2 I + sigma_c^2 1 1'``. Per cluster, ``V_j = Q_j diag(lambda_j) Q_j'``
(eigendecomposition, once), so in the rotated coordinates ``Q_j' y_j`` the block is
``diag(lambda + sigma_e^2) + sigma_c^2 t t'`` with ``t = Q_j' 1``: a diagonal plus a rank-one
term, inverted by Sherman-Morrison and its determinant by the matrix determinant lemma. With
``d = lambda + sigma_e^2``, ``S_j = sum t^2/d``, ``f_j = sigma_c^2 / (1 + sigma_c^2 S_j)``::

    a' C_j^-1 b = sum a~ b~ / d - f_j (sum a~ t / d)(sum b~ t / d),   log|C_j| = sum log d + log(1 + sigma_c^2 S_j)

and beta is integrated by the Woodbury identity (``A = X' Sigma^-1 X + S^-1``; as in
:mod:`bayes_se.exact`), so one (sigma_c, sigma_e) point costs O(k p^2), no k x k matrix is formed,
and the cluster sums for a given sigma_e are shared by every sigma_c.

Quadrature. Each SD is mapped to ``x = asinh(sigma / c)`` (``c`` near the posterior's scale:
linear near 0, logarithmic in the tail) on an interval found by a coarse 2-D scan (where the
density is within ``TAIL_NATS`` of its maximum); the product Gauss-Legendre rule on that box is
doubled until the log marginal likelihood and the posterior means and sds of both SDs and of beta
agree to ``RTOL`` between n and 2n nodes per axis. The joint density's tensor Legendre interpolant
at the nodes gives the marginal cdfs and quantiles of the SDs and exact iid draws (inverse cdf of
sigma_c, then of sigma_e given sigma_c, then beta, the cluster and effect deviations given both).
beta (and every theta, and a new effect ``pred``) is a finite mixture of normals over the nodes.

Bayes factors. ``BF01`` for ``sigma_c = 0`` is the ratio of marginal likelihoods
``p(y | sigma_c = 0) / p(y)``, the null model's integral taken over sigma_e by its own 1-D
quadrature (likewise for ``sigma_e = 0``). Because the priors of the two SDs are independent, this
equals the Savage-Dickey ratio ``p(sigma_c = 0 | y) / p_c(0)`` whenever ``p_c(0)`` is finite and
positive; the ratio of marginal likelihoods is used because it is also defined when ``p_c(0)`` is 0
(inverse-gamma, log-normal priors), and it needs no density estimate at the edge of the grid.

References
----------
Konstantopoulos S (2011). Fixed effects and variance components estimation in three-level
meta-analysis. Research Synthesis Methods 2, 61-76.
Pustejovsky JE, Tipton E (2022). Meta-analysis with robust variance estimation: expanding the range
of working models. Prevention Science 23, 425-438 (the correlated-and-hierarchical-effects model).
Röver C (2020). Bayesian random-effects meta-analysis using the bayesmeta R package. JSS 93(6).
Dickey JM (1971). The weighted likelihood ratio, linear hypotheses on normal location parameters.
Annals of Mathematical Statistics 42(1), 204-223.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pandas as pd
from numpy.polynomial import legendre
from scipy import optimize, special

from bayes_se.errors import ConvergenceWarning, DataError, SpecError

__all__ = ["ClusteredNormalModel", "ThreeLevelPosterior", "exact_three_level", "within_cluster_covariance",
           "normal_mixture_cdf", "normal_mixture_quantiles"]

LOG_2PI = math.log(2.0 * math.pi)
TAIL_NATS = 40.0  # the box covers (sigma_c, sigma_e) where the density is within e^-40 of its maximum
SCAN_DECADES = (-6.0, 3.0)  # the scan: SDs from 1e-6 to 1e3 times the data's scale (and 0)
SCAN_POINTS = 37  # 4 per decade
N_START = 16  # Gauss-Legendre nodes per axis to start with
N_MAX = 384
RTOL = 1e-9  # the n and 2n rules agree: log ML (absolutely), means and sds (relative to the sd)
PRUNE_MASS = 1e-12  # mixtures over the grid leave out the lightest nodes of this total weight
CHUNK = 2_000_000  # elements of the (sigma_c, sigma_e, cluster) arrays computed at once
SD_NAMES = ("sigma_cluster", "sigma_effect")


def within_cluster_covariance(vi, cluster, rho: float = 0.0):
    """The blocks of a constant-correlation sampling covariance (metafor's ``vcalc(vi, cluster, rho=)``).

    ``V_j[i, l] = v_i`` for ``i = l`` and ``rho sqrt(v_i v_l)`` otherwise, effects of one cluster
    taken in the order they appear.

    Parameters
    ----------
    vi : array_like
        Sampling variances (> 0).
    cluster : sequence
        Cluster label of each effect.
    rho : float
        Assumed within-cluster sampling correlation, in (-1, 1) (positive definite for
        ``rho > -1 / (n_j - 1)``).

    Returns
    -------
    dict
        label -> (indices into vi, block as a 2-D array).
    """
    vi = np.asarray(vi, float)
    rho = float(rho)
    if not -1.0 < rho < 1.0:
        raise SpecError(f"rho must lie strictly between -1 and 1, got {rho}", key="rho")
    labels = [str(c) for c in cluster]
    order = {}
    for i, c in enumerate(labels):
        order.setdefault(c, []).append(i)
    out = {}
    for c, idx in order.items():
        sd = np.sqrt(vi[idx])
        block = rho * np.outer(sd, sd)
        np.fill_diagonal(block, vi[idx])
        out[c] = (np.asarray(idx), block)
    return out


def normal_mixture_cdf(x, weights, means, sds, upper=False):
    """``sum_g w_g Phi((x - m_g) / s_g)`` (or the upper tail), vectorised over ``x``."""
    z = (np.asarray(x, dtype=float)[..., None] - means) / sds
    return special.ndtr(-z if upper else z) @ weights


def normal_mixture_quantiles(weights, means, sds, q, tol=1e-13):
    """Quantile ``q`` of J normal mixtures at once (``means``, ``sds`` of shape (G, J) or (G,)).

    Newton's method inside a bisection bracket, vectorised over the mixtures; converged when a step
    is below ``tol`` times the mixture's sd.
    """
    m = np.asarray(means, float)
    s = np.asarray(sds, float)
    one = m.ndim == 1
    m, s = (m[:, None], s[:, None]) if one else (m, s)
    w = np.asarray(weights, float)
    mean = w @ m
    sd = np.sqrt(w @ (np.square(s) + np.square(m - mean)))
    lo, hi = (m - 40 * s).min(axis=0), (m + 40 * s).max(axis=0)
    x = np.clip(mean + sd * special.ndtri(q), lo, hi)
    for _ in range(300):
        z = (x - m) / s
        F = w @ special.ndtr(z) - q
        lo, hi = np.where(F < 0, x, lo), np.where(F > 0, x, hi)
        dens = w @ (np.exp(-0.5 * z * z) / s) / math.sqrt(2 * math.pi)
        with np.errstate(divide="ignore", invalid="ignore"):
            new = x - F / dens
        new = np.where((new >= lo) & (new <= hi) & np.isfinite(new), new, 0.5 * (lo + hi))
        done = np.abs(new - x) <= tol * sd
        x = new
        if done.all():
            break
    return float(x[0]) if one else x


class ClusteredNormalModel:
    """``y ~ N(X beta, blockdiag(V_j + s2e I + s2c 11'))``, ``beta ~ N(m, diag(s^2))``, given the two
    variances: the Woodbury/Sherman-Morrison algebra of the module notes, vectorised.

    Effects are kept in cluster order internally (``order``: original index of each stored effect).
    An infinite ``s_l`` is a flat prior on ``beta_l`` (prior precision 0).
    """

    def __init__(self, y, blocks, cluster_labels, X, m, s):
        # blocks: list of (indices, V block) per cluster, in cluster order
        self.labels = list(cluster_labels)
        order = np.concatenate([idx for idx, _ in blocks])
        self.order = order
        self.y = np.asarray(y, float)[order]
        self.X = np.asarray(X, float)[order]
        k, p = self.X.shape
        self.k, self.p = k, p
        sizes = np.array([len(idx) for idx, _ in blocks])
        self.sizes = sizes
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.cluster_of = np.repeat(np.arange(len(blocks)), sizes)
        lam, Qs = [], []
        for j, (idx, V) in enumerate(blocks):
            V = np.asarray(V, float)
            if V.shape[0] == 1:
                lam.append(V[0]), Qs.append(np.ones((1, 1)))
                continue
            ev, Q = np.linalg.eigh(V)
            lam.append(ev), Qs.append(Q)
        self.lam = np.concatenate(lam)
        if not np.all(self.lam > 0):
            bad = int(np.flatnonzero(np.concatenate([np.full(len(x), np.min(x)) for x in lam]) <= 0)[0])
            raise DataError("the sampling covariance of this cluster is not positive definite",
                            column="vi", row=int(order[bad]) + 1)
        from scipy import sparse

        self.Q = sparse.block_diag(Qs, format="csr")  # x = Q x~ (cluster order)
        self.QT = self.Q.T.tocsr()
        self.Q2 = self.Q.multiply(self.Q).tocsr()  # squared entries: variances back from x~ to x
        flat = ~np.isfinite(s)
        self.proper = not bool(flat.any())
        self.prec = np.where(flat, 0.0, (1.0 / np.where(flat, 1.0, s)) ** 2)
        self.m = np.where(flat, 0.0, m)
        r = self.y - self.X @ self.m
        self.rt = self.QT @ r  # rotated residual at the prior mean
        self.Xt = np.asarray(self.QT @ self.X)
        self.yt = self.QT @ self.y
        self.t = np.asarray(self.QT @ np.ones(k)).ravel()
        self.const = -0.5 * (k * LOG_2PI + float(np.sum(2.0 * np.log(s[~flat]))))
        self._XX = (self.Xt[:, :, None] * self.Xt[:, None, :]).reshape(k, p * p)
        self._Xr = self.Xt * self.rt[:, None]
        self._rr = np.square(self.rt)
        self._tX = self.Xt * self.t[:, None]
        self._tr = self.t * self.rt
        self._tt = np.square(self.t)

    def _csum(self, a):
        """Sum over each cluster along axis 1 (effects are stored cluster by cluster)."""
        return np.add.reduceat(a, self.starts, axis=1)

    def effect_sums(self, s2e):
        """The cluster sums that depend on sigma_e only (vectorised over s2e, shape (E,))."""
        d = self.lam + np.asarray(s2e, float)[:, None]
        w = 1.0 / d
        return {"logdet_d": np.sum(np.log(d), axis=1), "rr": w @ self._rr, "XX": w @ self._XX,
                "Xr": w @ self._Xr, "S": self._csum(w * self._tt), "a": self._csum(w * self._tr),
                "B": np.stack([self._csum(w * self._tX[:, l]) for l in range(self.p)], axis=-1)}

    def _combine(self, s2c, es, pairs):
        """log p(y | s2c, s2e), b and A^-1 from the effect sums ``es``: outer product over
        (s2c, s2e) when ``pairs`` is False (shapes (C, E, ...)), else one s2c per s2e (shape (E, ...)).

        The cluster sums over j of ``f_j a_j^2``, ``f_j a_j B_j`` and ``f_j B_j B_j'`` are matrix
        products of ``f`` (C x J for each s2e) with the s2e-only arrays, so BLAS does the work."""
        s2c = np.asarray(s2c, float)
        S, a, B = es["S"], es["a"], es["B"]  # (E, J), (E, J), (E, J, p)
        p = self.p
        E, J = S.shape
        if pairs:
            sc = s2c[:, None]
            f = sc / (1.0 + sc * S)  # (E, J)
            logdet = es["logdet_d"] + np.sum(np.log1p(sc * S), axis=-1)
            quad = es["rr"] - np.sum(f * a * a, axis=-1)
            corrA = np.einsum("ej,ejp,ejq->epq", f, B, B)
            corr_rhs = np.einsum("ej,ejp->ep", f * a, B)
            XX, Xr = es["XX"].reshape(E, p, p), es["Xr"]
        else:
            sc = s2c[None, :, None]
            t = 1.0 + sc * S[:, None, :]  # (E, C, J)
            f = sc / t
            logdet = (es["logdet_d"][:, None] + sum_log(t)).T
            # [f a^2, f a B, f B B'] in one product: (E, C, J) @ (E, J, 1 + p + p^2)
            BB = (B[..., :, None] * B[..., None, :]).reshape(E, J, p * p)
            right = np.concatenate([(a * a)[..., None], a[..., None] * B, BB], axis=-1)
            prod = np.matmul(f, right).transpose(1, 0, 2)  # (C, E, 1 + p + p^2)
            quad = es["rr"][None] - prod[..., 0]
            corr_rhs = prod[..., 1:1 + p]
            corrA = prod[..., 1 + p:].reshape(prod.shape[:2] + (p, p))
            XX, Xr = es["XX"].reshape(E, p, p)[None], es["Xr"][None]
        shape = logdet.shape
        if p == 0:
            return self.const - 0.5 * (logdet + quad), np.zeros(shape + (0,)), np.zeros(shape + (0, 0))
        A = XX - corrA + np.diag(self.prec)
        rhs = Xr - corr_rhs
        if p == 1:
            Ainv = 1.0 / A
            u = Ainv[..., 0] * rhs
            logdet_A = np.log(A[..., 0, 0])
        else:
            Ainv = np.linalg.inv(A)
            u = np.einsum("...pq,...q->...p", Ainv, rhs)
            logdet_A = np.linalg.slogdet(A)[1]
        quad = quad - np.sum(rhs * u, axis=-1)
        return self.const - 0.5 * (logdet + logdet_A + quad), self.m + u, Ainv

    def conditional(self, s2c, s2e, pairs=False):
        """``log p(y | s2c, s2e)`` (beta integrated out) and ``beta | s2c, s2e, y ~ N(b, A^-1)``.

        ``pairs=False``: every combination, arrays of shape (C, E), (C, E, p), (C, E, p, p);
        ``pairs=True``: ``s2c`` and ``s2e`` of equal length, one point each.
        """
        s2c = np.atleast_1d(np.asarray(s2c, float))
        s2e = np.atleast_1d(np.asarray(s2e, float))
        J = len(self.labels)
        if pairs:
            step = max(1, CHUNK // max(J * max(self.p, 1), 1))
            parts = [self._combine(s2c[i:i + step], self.effect_sums(s2e[i:i + step]), True)
                     for i in range(0, s2e.size, step)]
            return tuple(np.concatenate(z, axis=0) for z in zip(*parts))
        es = self.effect_sums(s2e)
        step = max(1, CHUNK // max(s2e.size * J * max(self.p, 1), 1))
        parts = [self._combine(s2c[i:i + step], es, False) for i in range(0, s2c.size, step)]
        return tuple(np.concatenate(z, axis=0) for z in zip(*parts))

    # -- quantities given beta as well ----------------------------------------------------------
    def cluster_loglik(self, beta, s2c, s2e):
        """``log N(y_j; X_j beta, C_j)`` per cluster, one (beta, s2c, s2e) per row: shape (n, J)."""
        beta = np.atleast_2d(beta)
        rt = self.yt[None] - beta @ self.Xt.T
        d = self.lam + np.asarray(s2e, float)[:, None]
        w = 1.0 / d
        S = self._csum(w * self._tt)
        a = self._csum(w * self.t * rt)
        q = self._csum(w * rt * rt)
        sc = np.asarray(s2c, float)[:, None]
        logdet = self._csum(np.log(d)) + np.log1p(sc * S)
        quad = q - sc * a * a / (1.0 + sc * S)
        return -0.5 * (self.sizes * LOG_2PI + logdet + quad)

    def deviation_moments(self, resid_t, s2c, s2e):
        """Posterior of the cluster and effect deviations given beta (and the SDs), one row per
        point: ``u_j | r ~ N(f_j a_j, f_j)`` and ``w~ | u, r ~ N(g (r~ - u t), s2e lambda / d)`` in the
        rotated coordinates, ``g = s2e / d``. Returns (u mean, u var, d) for ``resid_t = Q'(y - X beta)``.
        """
        d = self.lam + np.asarray(s2e, float)[:, None]
        S = self._csum(self._tt / d)
        a = self._csum(self.t * resid_t / d)
        sc = np.asarray(s2c, float)[:, None]
        f = sc / (1.0 + sc * S)
        return f * a, f, d


def sum_log(t, block=16):
    """``sum(log(t), axis=-1)`` for t >= 1, as logs of products of ``block`` factors at a time (one
    log per block instead of per element; the products stay finite while each factor is below
    1e19)."""
    J = t.shape[-1]
    full = J - J % block
    out = np.zeros(t.shape[:-1])
    if full:
        out += np.sum(np.log(np.prod(t[..., :full].reshape(t.shape[:-1] + (full // block, block)), axis=-1)),
                      axis=-1)
    if full < J:
        out += np.sum(np.log(t[..., full:]), axis=-1)
    return out


@functools.lru_cache(maxsize=16)
def _legendre_matrices(n):
    """Gauss-Legendre nodes and weights on [-1, 1], and the values-to-coefficients matrix of the
    interpolant at the nodes (exact by the rule's discrete orthogonality)."""
    x, w = legendre.leggauss(n)
    P = legendre.legvander(x, n - 1)  # (n nodes, n degrees)
    M = (P * w[:, None]).T * ((2 * np.arange(n) + 1) / 2.0)[:, None]
    for a in (x, w, M):
        a.flags.writeable = False
    return x, w, M


class ThreeLevelPosterior:
    """The posterior of the three-level / correlated-effects model (see the module notes).

    Built by :func:`exact_three_level`. Parameter names: ``mu`` (intercept-only) or ``beta[NAME]``,
    ``sigma_cluster``, ``sigma_effect`` (either may be fixed at 0: then it is not a parameter),
    ``theta[STUDY]``, ``pred`` (a new effect in a new cluster).

    Attributes
    ----------
    grid : dict
        ``sigma_cluster``, ``sigma_effect``: the nodes on each axis (ascending); ``weights``: the
        joint posterior weights (C, E), summing to 1, so ``E[g | y] = sum weights * g(grid)``.
    log_marginal_likelihood : float
        ``log p(y)`` (NaN with a flat prior on a coefficient).
    coef_names, study, cluster : tuple of str
    rho : float or None
        The constant within-cluster correlation the sampling covariance was built with.
    """

    def __init__(self, model, *, names, study, clusters, newx, priors, level, intercept_only, fixed=(),
                 rho=None, scale=1.0):
        self._model = model
        self._priors = dict(priors)
        self.coef_names = tuple(names)
        self.study = tuple(study)
        self.cluster = tuple(clusters)
        self.level = float(level)
        self.rho = rho
        self._intercept_only = intercept_only
        self._par = ["mu"] if intercept_only else [f"beta[{n}]" for n in names]
        self._newx = np.asarray(newx, float)
        self.fixed = tuple(fixed)  # names of SDs fixed at 0
        self.free = tuple(n for n in SD_NAMES if n not in self.fixed)
        self._scale = float(scale)
        self._nulls = {}
        self._cache = {}
        self._theta = None
        self._build()

    # -- densities -----------------------------------------------------------------------------
    def _log_prior(self, name, s):
        return np.asarray(self._priors[name].tau_logpdf(s), float)

    def _joint_log(self, sc, se):
        """Log prior x likelihood on the (sigma_c, sigma_e) product grid, with b and A^-1."""
        ll, b, Ainv = self._model.conditional(np.square(sc), np.square(se))
        lp = ll
        if "sigma_cluster" in self.free:
            lp = lp + self._log_prior("sigma_cluster", sc)[:, None]
        if "sigma_effect" in self.free:
            lp = lp + self._log_prior("sigma_effect", se)[None, :]
        if np.isnan(lp).any():
            raise SpecError("the prior log density returned NaN", key="priors")
        return lp, b, Ainv

    # -- axes ----------------------------------------------------------------------------------
    def _scan(self):
        """Per free axis: the asinh scale c, the sigma-interval holding the mass."""
        s = self._scale * np.concatenate([[0.0], np.logspace(*SCAN_DECADES, SCAN_POINTS)])
        sc = s if "sigma_cluster" in self.free else np.zeros(1)
        se = s if "sigma_effect" in self.free else np.zeros(1)
        g, _, _ = self._joint_log(sc, se)
        if not np.isfinite(g).any():
            raise SpecError("the priors are zero wherever the likelihood is not", key="priors")
        axes = {}
        for ax, name in enumerate(SD_NAMES):
            if name not in self.free:
                continue
            prof = g.max(axis=1 - ax)  # profile over the other axis
            pos = s > 0
            with np.errstate(divide="ignore"):
                mass = np.where(pos, prof + np.log(np.where(pos, s, 1.0)), prof)  # per unit of log sigma
            if mass[-1] > mass.max() - TAIL_NATS or mass[-2] > mass.max() - TAIL_NATS:
                raise SpecError(f"the posterior of {name} reaches beyond {s[-1]:.3g}: the data do not bound it "
                                "and the prior is too wide; use a proper, narrower prior", key=f"priors.{name}")
            inside = np.flatnonzero(mass[1:] > mass.max() - TAIL_NATS) + 1
            ipeak = 1 + int(np.argmax(mass[1:]))
            c = float(s[ipeak])
            s_lo = float(s[inside[0] - 1])
            s_hi = float(s[inside[-1] + 1])
            # a prior with bounded support (uniform) ends the box at its edge
            lp_hi = self._log_prior(name, np.array([s_hi]))[0]
            if np.isneginf(lp_hi):
                s_hi = self._support_edge(name, float(s[inside[-1]]), s_hi)
            axes[name] = (c, 0.0 if s_lo < 0.25 * c else float(np.arcsinh(s_lo / c)), float(np.arcsinh(s_hi / c)))
        return axes

    def _support_edge(self, name, inside, outside):
        for _ in range(80):
            mid = 0.5 * (inside + outside)
            if np.isfinite(self._log_prior(name, np.array([mid]))[0]):
                inside = mid
            else:
                outside = mid
        return inside

    def _nodes(self, n):
        """Per axis: sigma nodes, x nodes, weights in sigma (GL weight x Jacobian), or the fixed 0."""
        out = {}
        x0, w0, _ = _legendre_matrices(n)
        for name in SD_NAMES:
            if name not in self.free:
                out[name] = (np.zeros(1), None, np.ones(1))
                continue
            c, lo, hi = self._axes[name]
            x = 0.5 * (lo + hi) + 0.5 * (hi - lo) * x0
            sig = c * np.sinh(x)
            out[name] = (sig, x, 0.5 * (hi - lo) * w0 * c * np.cosh(x))
        return out

    def _evaluate(self, n):
        nodes = self._nodes(n)
        sc, _, wc = nodes["sigma_cluster"]
        se, _, we = nodes["sigma_effect"]
        lp, b, Ainv = self._joint_log(sc, se)
        with np.errstate(divide="ignore"):
            lw = lp + np.log(wc)[:, None] + np.log(we)[None, :]
        jac = [np.log(self._axes[nm][0] * np.cosh(nodes[nm][1])) if nm in self.free else np.zeros(1)
               for nm in SD_NAMES]
        lw_x = lp + jac[0][:, None] + jac[1][None, :]  # log density per unit (x_c, x_e)
        top = lw.max()
        W = np.exp(lw - top)
        log_z = top + math.log(W.sum())
        W = W / W.sum()
        stats = [log_z]
        for g in (sc[:, None] + 0 * se[None, :], se[None, :] + 0 * sc[:, None]):
            mean = float(np.sum(W * g))
            stats += [mean, math.sqrt(max(float(np.sum(W * (g - mean) ** 2)), 0.0))]
        for l in range(b.shape[-1]):
            mean = float(np.sum(W * b[..., l]))
            stats += [mean, math.sqrt(float(np.sum(W * (Ainv[..., l, l] + (b[..., l] - mean) ** 2))))]
        return dict(nodes=nodes, lp=lp, lw_x=lw_x, W=W, b=b, Ainv=Ainv, log_z=log_z, stats=np.array(stats))

    def _refine(self, passes=2, points=41):
        """Shrink the scan's box: on a finer product grid in x, keep where the density per unit x is
        within TAIL_NATS of its maximum, plus one step (twice)."""
        for _ in range(passes):
            xs = {}
            for name in self.free:
                c, lo, hi = self._axes[name]
                xs[name] = np.linspace(lo, hi, points)
            sc = self._axes_sigma(xs, "sigma_cluster")
            se = self._axes_sigma(xs, "sigma_effect")
            g = self._joint_log(sc, se)[0]
            for ax, name in enumerate(SD_NAMES):
                if name not in self.free:
                    continue
                c, lo, hi = self._axes[name]
                x = xs[name]
                prof = g.max(axis=1 - ax) + np.log(c * np.cosh(x))
                inside = np.flatnonzero(prof > prof.max() - TAIL_NATS)
                new_lo = x[max(inside[0] - 1, 0)]
                new_hi = x[min(inside[-1] + 1, points - 1)]
                if np.isneginf(self._log_prior(name, np.array([c * np.sinh(new_hi)]))[0]):
                    # a prior with bounded support (uniform): the box ends exactly at its edge
                    edge = self._support_edge(name, float(c * np.sinh(x[inside[-1]])), float(c * np.sinh(new_hi)))
                    new_hi = np.arcsinh(edge / c)
                self._axes[name] = (c, float(new_lo if new_lo > 0.05 * (hi - lo) else lo), float(new_hi))

    def _axes_sigma(self, xs, name):
        if name not in self.free:
            return np.zeros(1)
        return self._axes[name][0] * np.sinh(xs[name])

    @staticmethod
    def _agree(old, new):
        """The n and 2n rules agree: log ML to ``RTOL`` (absolute), the means and sds of both SDs and
        of the coefficients to ``RTOL`` of each sd."""
        a, b = old["stats"], new["stats"]
        if abs(a[0] - b[0]) > RTOL:
            return False
        scale = np.repeat(np.maximum(b[2::2], 1e-300), 2)
        return bool(np.all(np.abs(a[1:] - b[1:]) <= RTOL * scale))

    def _build(self):
        self._axes = self._scan() if self.free else {}
        if self.free:
            self._refine()
        if not self.free:  # both SDs fixed: y ~ N(X m, V + X S X'), no quadrature
            self._n = 1
            res = self._evaluate(1)
        else:
            n = N_START
            self._n = n
            res = self._evaluate(n)
            while True:
                self._n = 2 * n
                nxt = self._evaluate(2 * n)
                if self._agree(res, nxt):  # |I_n - I_2n| estimates the n-rule's error: keep n
                    self._n = n
                    break
                res, n = nxt, 2 * n
                if 2 * n > N_MAX:
                    warnings.warn(f"(sigma_cluster, sigma_effect) quadrature not converged with {n} x {n} "
                                  "nodes", ConvergenceWarning, stacklevel=3)
                    break
        self._res = res
        nodes = res["nodes"]
        self.grid = {"sigma_cluster": nodes["sigma_cluster"][0], "sigma_effect": nodes["sigma_effect"][0],
                     "weights": res["W"]}
        self._log_z = res["log_z"]
        self.log_marginal_likelihood = res["log_z"] if self._model.proper else math.nan
        self._b, self._Ainv = res["b"], res["Ainv"]
        if self.free:  # the joint density per unit (x_c, x_e) at the nodes, for the interpolants
            _, w0, M = _legendre_matrices(self._n)
            self._dens_x = np.exp(res["lw_x"] - self._log_z)
            self._M, self._w0 = M, w0

    # -- the SDs -------------------------------------------------------------------------------
    def _axis_coef(self, name):
        """Legendre coefficients (on [-1, 1]) of the marginal density of x for a free SD, scaled so
        that it integrates to 1 over [-1, 1]."""
        ax = SD_NAMES.index(name)
        c, lo, hi = self._axes[name]
        other = SD_NAMES[1 - ax]
        if other in self.free:
            oc, olo, ohi = self._axes[other]
            ow = 0.5 * (ohi - olo) * self._w0
            marg = self._dens_x @ ow if ax == 0 else ow @ self._dens_x
        else:
            marg = self._dens_x[:, 0] if ax == 0 else self._dens_x[0, :]
        return self._M @ (marg * 0.5 * (hi - lo))

    def _sd_cdf_x(self, name, s):
        """cdf on the [-1, 1] coordinate of the axis."""
        key = ("cdf", name)
        if key not in self._cache:
            coef = legendre.legint(self._axis_coef(name), lbnd=-1.0)
            self._cache[key] = coef / legendre.legval(1.0, coef)  # exactly 1 at the top (rounding)
        coef = self._cache[key]
        return legendre.legval(np.clip(s, -1.0, 1.0), coef)

    def _to_unit(self, name, sigma):
        c, lo, hi = self._axes[name]
        x = np.arcsinh(np.asarray(sigma, float) / c)
        return (2.0 * x - (lo + hi)) / (hi - lo)

    def _from_unit(self, name, t):
        c, lo, hi = self._axes[name]
        return c * np.sinh(0.5 * (lo + hi) + 0.5 * (hi - lo) * np.asarray(t, float))

    def _check_free(self, name):
        if name not in self.free:
            raise SpecError(f"{name} is fixed at 0 in this model", key="parameter")

    def sd_cdf(self, name, sigma):
        """Posterior cdf of ``sigma_cluster`` or ``sigma_effect``."""
        self._check_free(name)
        u = self._to_unit(name, sigma)
        out = np.where(u <= -1, 0.0, np.where(u >= 1, 1.0, self._sd_cdf_x(name, u)))
        return np.clip(out, 0.0, 1.0)

    def sd_quantile(self, name, q):
        self._check_free(name)
        qs = np.atleast_1d(np.asarray(q, float))
        def root(p):
            if p >= 1.0 - 1e-14:  # beyond the rounding of the cdf at the top of the box
                return 1.0
            return optimize.brentq(lambda t: float(self._sd_cdf_x(name, t)) - p, -1.0, 1.0, xtol=1e-14)

        out = np.array([root(p) for p in qs])
        out = self._from_unit(name, out)
        return out.reshape(np.shape(q)) if np.ndim(q) else float(out[0])

    def sd_pdf(self, name, sigma):
        """Posterior density of one SD at ``sigma``: the joint density integrated over the other SD by
        its quadrature rule (exact evaluation, no interpolation)."""
        self._check_free(name)
        sig = np.atleast_1d(np.asarray(sigma, float))
        out = np.zeros(sig.shape)
        ok = sig >= 0
        if ok.any():
            other = SD_NAMES[1 - SD_NAMES.index(name)]
            osig, _, ow = self._res["nodes"][other]
            if name == "sigma_cluster":
                lp = self._joint_log(sig[ok], osig)[0]
                out[ok] = np.exp(lp - self._log_z) @ ow
            else:
                lp = self._joint_log(osig, sig[ok])[0]
                out[ok] = ow @ np.exp(lp - self._log_z)
        return out.reshape(np.shape(sigma))

    def total_cdf(self, s):
        """``P(sqrt(sigma_c^2 + sigma_e^2) <= s | y)`` (the SD of a new effect in a new cluster around the
        mean): the outer axis by its Gauss rule, the inner one by the exact antiderivative of the
        joint density's Legendre interpolant."""
        s = float(s)
        if s <= 0:
            return 0.0
        if len(self.free) == 1:
            return float(self.sd_cdf(self.free[0], s))
        if not self.free:
            return 1.0
        c_lo_hi = self._axes["sigma_cluster"]
        e_c, e_lo, e_hi = self._axes["sigma_effect"]
        if "total" not in self._cache:
            integ = np.stack([legendre.legint(e, lbnd=-1.0) for e in np.eye(self._n)], axis=1)
            self._cache["total"] = (self._dens_x @ self._M.T) @ integ.T * 0.5 * (e_hi - e_lo)
        cum = self._cache["total"]
        sc = self.grid["sigma_cluster"]
        wc = 0.5 * (c_lo_hi[2] - c_lo_hi[1]) * self._w0
        inner = np.sqrt(np.maximum(s * s - sc * sc, 0.0))
        t = np.clip(self._to_unit("sigma_effect", inner), -1.0, 1.0)
        vals = np.einsum("id,id->i", legendre.legvander(t, self._n), cum)
        vals = np.where(s > sc, vals, 0.0)
        return float(min(max(wc @ vals, 0.0), 1.0))

    def total_quantile(self, q):
        """Quantile of ``sqrt(sigma_c^2 + sigma_e^2)`` (root of :meth:`total_cdf`)."""
        hi = float(np.sqrt(self.grid["sigma_cluster"].max() ** 2 + self.grid["sigma_effect"].max() ** 2))
        return optimize.brentq(lambda x: self.total_cdf(x) - q, 0.0, hi, xtol=1e-14, rtol=1e-13)

    # -- location mixtures ---------------------------------------------------------------------
    def _resolve(self, name):
        if name in SD_NAMES:
            self._check_free(name)
            return "sd", name
        if name == "pred":
            return "pred", None
        if name in self._par:
            return "coef", self._par.index(name)
        if name in self.coef_names and not self._intercept_only:
            return "coef", self.coef_names.index(name)
        if name.startswith("theta[") and name.endswith("]") and name[6:-1] in self.study:
            return "theta", self.study.index(name[6:-1])
        known = self._par + list(self.free) + ["theta[STUDY]", "pred"]
        raise SpecError(f"unknown parameter {name!r}; known: {', '.join(known)}", key="parameter")

    def _flat_mixture(self):
        """The mixture's components without the lightest ones of total weight below ``PRUNE_MASS``
        (which can move no probability by more than that)."""
        if "keep" not in self._cache:
            W = self._res["W"].ravel()
            order = np.argsort(W)
            drop = order[np.cumsum(W[order]) < PRUNE_MASS]
            keep = np.ones(W.size, bool)
            keep[drop] = False
            self._cache["keep"] = (keep, W[keep] / W[keep].sum())
        return self._cache["keep"]

    def _mixture(self, kind, j):
        keep, w = self._flat_mixture()
        p = self._model.p
        b = self._b.reshape(-1, p)[keep]
        Ainv = self._Ainv.reshape(-1, p, p)[keep]
        if kind == "coef":
            return w, b[:, j], np.sqrt(Ainv[:, j, j])
        if kind == "pred":
            sc2 = np.square(self.grid["sigma_cluster"])[:, None] + np.square(self.grid["sigma_effect"])[None, :]
            x0 = self._newx
            return w, b @ x0, np.sqrt(np.einsum("p,gpq,q->g", x0, Ainv, x0) + sc2.ravel()[keep])
        m, s = self._theta_all()
        return w, m[:, j], s[:, j]

    def _theta_all(self):
        """Means and sds (mixture component x effect) of every theta_ij given the SDs (beta integrated):
        ``theta = L y + (I - L) X b`` with ``L r = E[u + w | r]``; variance
        ``Var(u + w | r) + c' A^-1 c``, ``c = ((I - L) X)_i`` (module notes)."""
        if self._theta is None:
            md = self._model
            keep, _ = self._flat_mixture()
            C, E = self._res["W"].shape
            s2c = np.repeat(np.square(self.grid["sigma_cluster"]), E)[keep]
            s2e = np.tile(np.square(self.grid["sigma_effect"]), C)[keep]
            b = self._b.reshape(-1, md.p)[keep]
            Ainv = self._Ainv.reshape(-1, md.p, md.p)[keep]
            means, sds = [], []
            step = max(1, CHUNK // (md.k * (md.p + 2)))
            for i in range(0, s2c.size, step):
                sl = slice(i, i + step)
                mean_y, g_y, var = self._smooth(md.yt[None, :], s2c[sl], s2e[sl])
                LX = [self._smooth(md.Xt[:, l][None, :], s2c[sl], s2e[sl])[0] for l in range(md.p)]
                IminusLX = np.stack([md.X[:, l][None, :] - LX[l] for l in range(md.p)], axis=-1)  # (g, k, p)
                mean = mean_y + np.einsum("gkp,gp->gk", IminusLX, b[sl])
                extra = np.einsum("gkp,gpq,gkq->gk", IminusLX, Ainv[sl], IminusLX)
                means.append(mean)
                sds.append(np.sqrt(var + extra))
            inv = np.empty(md.k, int)
            inv[md.order] = np.arange(md.k)
            self._theta = (np.concatenate(means)[:, inv], np.concatenate(sds)[:, inv])
        return self._theta

    def _smooth(self, rt, s2c, s2e):
        """``E[u + w | r]`` (original cluster-ordered coordinates) for rotated residuals ``rt`` (1 or g
        rows) at each (s2c, s2e), and ``Var(u + w | r)``."""
        md = self._model
        um, uv, d = md.deviation_moments(np.broadcast_to(rt, (s2c.size, md.k)), s2c, s2e)
        ut = um[:, md.cluster_of]
        g = s2e[:, None] / d
        wt_mean = g * (rt - ut * md.t)
        mean = ut + np.asarray(md.Q @ wt_mean.T).T  # u_j 1 + Q w~
        h = np.asarray(md.Q @ (g * md.t).T).T  # E[w | u] moves by -u h
        noise = np.asarray(md.Q2 @ (s2e[:, None] * md.lam / d).T).T
        var = uv[:, md.cluster_of] * np.square(1.0 - h) + noise
        return mean, None, var

    # -- public --------------------------------------------------------------------------------
    def cdf(self, name, x):
        kind, j = self._resolve(name)
        if kind == "sd":
            return self.sd_cdf(j, x)
        w, m, s = self._mixture(kind, j)
        return normal_mixture_cdf(x, w, m, s)

    def pdf(self, name, x):
        kind, j = self._resolve(name)
        if kind == "sd":
            return self.sd_pdf(j, x)
        w, m, s = self._mixture(kind, j)
        z = (np.asarray(x, float)[..., None] - m) / s
        return (np.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * s)) @ w

    def quantile(self, name, q):
        kind, j = self._resolve(name)
        qs = np.atleast_1d(np.asarray(q, float))
        if np.any((qs <= 0) | (qs >= 1)):
            raise SpecError("quantile probabilities must lie strictly between 0 and 1", key="q")
        if kind == "sd":
            return self.sd_quantile(j, q)
        w, m, s = self._mixture(kind, j)
        out = np.array([normal_mixture_quantiles(w, m, s, p) for p in qs])
        return out.reshape(np.shape(q)) if np.ndim(q) else float(out[0])

    def prob(self, name, op, value):
        if op not in ("<", "<=", ">", ">="):
            raise SpecError(f"operator must be one of < <= > >=, not {op!r}", key="op")
        p = float(self.cdf(name, value))
        return 1.0 - p if op.startswith(">") else p

    def moments(self, name):
        """Posterior mean and sd of a parameter."""
        kind, j = self._resolve(name)
        if kind == "sd":
            ax = SD_NAMES.index(j)
            g = self.grid[j][:, None] if ax == 0 else self.grid[j][None, :]
            W = self.grid["weights"]
            mean = float(np.sum(W * g))
            return mean, math.sqrt(float(np.sum(W * (g - mean) ** 2)))
        w, m, s = self._mixture(kind, j)
        mean = float(w @ m)
        return mean, math.sqrt(float(w @ (np.square(s) + np.square(m - mean))))

    def mean(self, name):
        return self.moments(name)[0]

    def sd(self, name):
        return self.moments(name)[1]

    def summary(self, theta=True, pred=True):
        """Posterior mean, sd, central ``level`` interval and median: the coefficients, the free SDs,
        then ``theta[STUDY]`` and ``pred``."""
        a = 0.5 * (1.0 - self.level)
        probs = (a, 0.5, 1.0 - a)
        cols = ["mean", "sd"] + [f"q{100 * p:g}" for p in probs]
        head = list(self._par) + list(self.free)
        rows = [list(self.moments(n)) + list(np.atleast_1d(self.quantile(n, probs))) for n in head]
        names = list(head)
        blocks = [np.array(rows, float)]
        if theta:
            m, s = self._theta_all()
            _, w = self._flat_mixture()
            mean = w @ m
            sd = np.sqrt(w @ (np.square(s) + np.square(m - mean)))
            blocks.append(np.column_stack([mean, sd] + [normal_mixture_quantiles(w, m, s, p) for p in probs]))
            names += [f"theta[{st}]" for st in self.study]
        if pred:
            blocks.append(np.array([list(self.moments("pred")) + list(self.quantile("pred", probs))]))
            names.append("pred")
        return pd.DataFrame(np.vstack(blocks), index=pd.Index(names, name="parameter"), columns=cols)

    def null(self, name):
        """The same model with ``name`` (an SD) fixed at 0, solved on its own grid (cached)."""
        self._check_free(name)
        if name not in self._nulls:
            self._nulls[name] = ThreeLevelPosterior(
                self._model, names=self.coef_names, study=self.study, clusters=self.cluster, newx=self._newx,
                priors=self._priors, level=self.level, intercept_only=self._intercept_only,
                fixed=self.fixed + (name,), rho=self.rho, scale=self._scale)
        return self._nulls[name]

    def log_bayes_factor(self, hypothesis):
        """Natural log of BF01 of a point null against this model.

        ``"sigma_cluster=0"`` / ``"sigma_effect=0"``: ``log p(y | sigma = 0) - log p(y)``, the ratio of
        the marginal likelihoods of the nested model and this one (module notes: it equals the
        Savage-Dickey ratio where the prior density at 0 is finite and positive). With a flat prior on
        a coefficient both carry the same arbitrary constant, which cancels.
        ``"mu=0"`` / ``"beta[NAME]=0"``: Savage-Dickey, ``log p(beta_l = 0 | y) - log p(beta_l = 0)``
        (exact: beta_l given the SDs is normal); NaN for a flat prior.
        """
        h = hypothesis.replace(" ", "")
        h = h[:-2] if h.endswith("=0") else (h[:-1] if h.endswith("0") else h)
        if h in SD_NAMES:
            return float(self.null(h)._log_z - self._log_z)
        kind, j = self._resolve(h)
        if kind != "coef":
            raise SpecError(f"no point-null Bayes factor for {hypothesis!r}", key="hypothesis")
        if self._model.prec[j] == 0:
            return math.nan
        w, m, s = self._mixture("coef", j)
        log_post0 = special.logsumexp(-0.5 * (m / s) ** 2 - np.log(s) - 0.5 * LOG_2PI, b=w)
        m0, s0 = self._model.m[j], 1.0 / math.sqrt(self._model.prec[j])
        log_prior0 = -0.5 * (m0 / s0) ** 2 - math.log(s0) - 0.5 * LOG_2PI
        return float(log_post0 - log_prior0)

    def bayes_factor(self, hypothesis):
        with np.errstate(over="ignore"):
            return float(np.exp(self.log_bayes_factor(hypothesis)))

    def draws(self, n, rng=None):
        """``n`` exact iid draws: sigma_c by inverting its marginal cdf, sigma_e by inverting its
        conditional cdf given sigma_c (the joint density's interpolant), ``beta | SDs, y``, then the
        cluster deviations ``u``, the effect deviations ``w`` and ``theta = X beta + u + w``, and
        ``pred``. Returns a dict of arrays (effects in study order)."""
        rng = np.random.default_rng(rng)
        n = int(n)
        md = self._model
        sig = {}
        if not self.free:
            sig = {nm: np.zeros(n) for nm in SD_NAMES}
        else:
            first = self.free[0]
            u1 = rng.random(n)
            self._sd_cdf_x(first, 0.0)  # the cdf's coefficients, cached
            cdf_coef = self._cache[("cdf", first)]
            t1 = self._invert(lambda t: self._sd_cdf_x(first, t), u1,
                              lambda t: legendre.legval(t, legendre.legder(cdf_coef)))
            sig[first] = self._from_unit(first, t1)
            if len(self.free) == 2:
                # conditional of x_e given x_c: the tensor interpolant evaluated at x_c's draws
                coef2 = self._M @ self._dens_x @ self._M.T  # (deg_c, deg_e) coefficients
                rows = legendre.legvander(t1, self._n - 1) @ coef2  # (n, deg_e)
                integ = np.stack([legendre.legint(e, lbnd=-1.0) for e in np.eye(self._n)], axis=1)
                cum = rows @ integ.T  # antiderivatives from -1, (n, deg_e + 1)
                total = cum @ np.ones(self._n + 1)  # P_d(1) = 1
                u2 = rng.random(n) * total
                V = lambda t: np.einsum("nd,nd->n", legendre.legvander(t, cum.shape[1] - 1), cum)  # noqa: E731
                dV = lambda t: np.einsum("nd,nd->n", legendre.legvander(t, self._n - 1), rows)  # noqa: E731
                t2 = self._invert(V, u2, dV)
                sig["sigma_effect"] = self._from_unit("sigma_effect", t2)
            for nm in SD_NAMES:
                sig.setdefault(nm, np.zeros(n))
        s2c, s2e = np.square(sig["sigma_cluster"]), np.square(sig["sigma_effect"])
        _, b, Ainv = md.conditional(s2c, s2e, pairs=True)
        L = np.linalg.cholesky(Ainv) if md.p else Ainv
        beta = b + np.einsum("npq,nq->np", L, rng.standard_normal(b.shape))
        rt = md.yt[None] - beta @ md.Xt.T
        um, uv, d = md.deviation_moments(rt, s2c, s2e)
        u = um + np.sqrt(uv) * rng.standard_normal(um.shape)
        g = s2e[:, None] / d
        wt = g * (rt - u[:, md.cluster_of] * md.t) + np.sqrt(s2e[:, None] * md.lam / d) * rng.standard_normal(d.shape)
        w = np.asarray(md.Q @ wt.T).T
        inv = np.empty(md.k, int)
        inv[md.order] = np.arange(md.k)
        theta = (beta @ md.X.T + u[:, md.cluster_of] + w)[:, inv]
        z = rng.standard_normal((2, n))
        out = {"sigma_cluster": sig["sigma_cluster"], "sigma_effect": sig["sigma_effect"], "beta": beta,
               "u_cluster": u, "theta": theta,
               "pred": beta @ self._newx + sig["sigma_cluster"] * z[0] + sig["sigma_effect"] * z[1]}
        if self._intercept_only:
            out["mu"] = beta[:, 0]
        return out

    @staticmethod
    def _invert(F, u, dF):
        """Solve ``F(t) = u`` on [-1, 1] for each element (F increasing, ``dF`` its derivative):
        16 bisection steps, then Newton's method kept inside the bracket."""
        lo, hi = np.full(u.shape, -1.0), np.full(u.shape, 1.0)
        for _ in range(16):
            mid = 0.5 * (lo + hi)
            below = F(mid) < u
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        t = 0.5 * (lo + hi)
        for _ in range(10):  # quadratic convergence from a 2^-15 bracket
            f = F(t) - u
            lo, hi = np.where(f < 0, t, lo), np.where(f > 0, t, hi)
            d = dF(t)
            with np.errstate(divide="ignore", invalid="ignore"):
                new = t - f / d
            new = np.where((new > lo) & (new < hi) & np.isfinite(new), new, 0.5 * (lo + hi))
            done = np.abs(new - t) <= 1e-12
            t = new
            if done.all():
                break
        return t

    def cluster_loglik(self, beta, sigma_cluster, sigma_effect):
        """``log p(y_j | beta, SDs)`` per cluster (rows: draws; columns: clusters in ``cluster`` order)."""
        return self._model.cluster_loglik(beta, np.square(sigma_cluster), np.square(sigma_effect))

    def log_likelihood(self, sigma_cluster, sigma_effect, beta=None):
        """``log p(y | sigma_c, sigma_e)`` with beta integrated out against its prior (``beta=None``), or
        ``log p(y | beta, sigma_c, sigma_e)``; scalars."""
        if beta is None:
            return float(self._model.conditional(sigma_cluster ** 2, sigma_effect ** 2)[0][0, 0])
        return float(self.cluster_loglik(np.asarray(beta, float)[None], np.array([sigma_cluster]),
                                         np.array([sigma_effect])).sum())

    def beta_conditional(self, sigma_cluster, sigma_effect):
        """Mean and covariance of ``beta | sigma_c, sigma_e, y`` (normal; with flat priors on every
        coefficient the GLS estimate and its covariance ``(X' Sigma^-1 X)^-1``)."""
        _, b, Ainv = self._model.conditional(sigma_cluster ** 2, sigma_effect ** 2)
        return b[0, 0], Ainv[0, 0]

    @property
    def yi(self):
        inv = np.empty(self._model.k, int)
        inv[self._model.order] = np.arange(self._model.k)
        return self._model.y[inv].copy()

    @property
    def X(self):
        inv = np.empty(self._model.k, int)
        inv[self._model.order] = np.arange(self._model.k)
        return self._model.X[inv].copy()

    @property
    def coef_rows(self) -> list:
        """The coefficients' parameter names: ``["mu"]`` (intercept-only) or ``beta[NAME]`` each."""
        return list(self._par)

    @property
    def nodes(self) -> int:
        return self._n

    def __repr__(self):
        return (f"ThreeLevelPosterior(k={len(self.study)}, clusters={len(self.cluster)}, rho={self.rho}, "
                f"free={list(self.free)}, nodes={self._n}x{self._n}, log_ml={self.log_marginal_likelihood:.6g})")


def _normal_params(priors, p, key):
    """(means, sds) of normal or flat coefficient priors."""
    priors = list(priors)
    if len(priors) != p:
        raise SpecError(f"needs {p} coefficient priors, got {len(priors)}", key=key)
    m, s = [], []
    for pr in priors:
        family = getattr(pr, "family", None)
        if family == "flat":
            m.append(0.0), s.append(math.inf)
        elif family == "normal":
            m.append(float(pr.params["mu"])), s.append(float(pr.params["sigma"]))
        else:
            raise SpecError(f"the exact three-level engine needs normal (or flat) priors on the coefficients, "
                            f"not '{pr}'; use engine = \"mcmc\"", key=key)
    return np.array(m), np.array(s)


def check_sd_prior(prior, name):
    """Refuse SD priors the exact three-level engine cannot integrate (improper, or infinite at 0)."""
    if prior is None or not callable(getattr(prior, "tau_logpdf", None)):
        raise SpecError(f"needs a prior object for {name}", key=f"priors.{name}")
    if getattr(prior, "improper", False):
        raise SpecError(f"flat() on {name} is not integrable by the exact three-level engine; use a proper "
                        "prior such as half_normal(1)", key=f"priors.{name}")
    if np.isposinf(np.asarray(prior.tau_logpdf(np.zeros(1)), float)).any():
        raise SpecError(f"'{prior}' on {name} has a pole at 0, which the exact three-level engine does not "
                        "integrate; use engine = \"mcmc\" or a prior finite at 0 (half_normal, half_cauchy, "
                        "exponential, inverse_gamma, log_normal)", key=f"priors.{name}")


def exact_three_level(yi, vi, cluster, *, X=None, coef_names=None, study=None, priors: dict, rho=None, V=None,
                      newx=None, level=0.95, fixed=()) -> ThreeLevelPosterior:
    """Exact posterior of the three-level / correlated-effects normal model (module notes).

    ``y_ij = x_ij' beta + u_j + w_ij + e_ij``, ``u_j ~ N(0, sigma_cluster^2)``,
    ``w_ij ~ N(0, sigma_effect^2)``, ``e_j ~ N(0, V_j)``; beta integrated analytically, the two SDs
    by 2-D quadrature.

    Parameters
    ----------
    yi, vi : array_like
        Effects and sampling variances.
    cluster : sequence
        Cluster label of each effect.
    X : array_like, optional
        Full design matrix (with the intercept column); None: intercept only.
    coef_names, study : sequence, optional
    priors : dict
        Resolved priors (:meth:`bayes_se.spec.ModelSpec.model_priors`, model type ``three_level``):
        ``mu`` or ``beta[NAME]`` (normal or flat), ``sigma_cluster``, ``sigma_effect``.
    rho : float, optional
        Constant within-cluster sampling correlation (:func:`within_cluster_covariance`); None or 0:
        independent sampling errors (the three-level model).
    V : array_like, optional
        A full k x k sampling covariance instead (block-diagonal by cluster; checked).
    fixed : sequence of str
        SDs fixed at 0 (``"sigma_cluster"``, ``"sigma_effect"``): the nested models.
    level : float
        Credible level of the summaries.
    """
    from bayes_se.data import check_arrays, unique_labels

    y, v = check_arrays(yi, vi)
    k = y.size
    if k == 0:
        raise DataError("no effect sizes given", column="yi")
    if cluster is None or len(cluster) != k:
        raise DataError(f"need one cluster label per effect ({k})", column="cluster")
    labels = [str(c) for c in cluster]
    bad = [i for i, c in enumerate(labels) if c in ("", "nan", "None")]
    if bad:
        raise DataError("missing cluster label", row=bad[0] + 1, column="cluster")
    study = unique_labels(range(1, k + 1) if study is None else study)
    if X is None:
        X, names = np.ones((k, 1)), ["intercept"]
    else:
        Xa = np.asarray(X, float)
        Xa = Xa[:, None] if Xa.ndim == 1 else Xa
        names = list(coef_names) if coef_names is not None else (
            [str(c) for c in X.columns] if isinstance(X, pd.DataFrame) else [f"x{j}" for j in range(Xa.shape[1])])
        if Xa.shape[0] != k or len(names) != Xa.shape[1]:
            raise SpecError(f"the design matrix must have {k} rows and one name per column", key="X")
        if not np.isfinite(Xa).all():
            i, j = np.argwhere(~np.isfinite(Xa))[0]
            raise DataError("the moderator value is missing or not finite", row=int(i) + 1, column=names[j])
        X = Xa
    p = X.shape[1]
    intercept_only = p == 1 and bool(np.all(X == 1.0))
    coef_keys = ["mu"] if intercept_only and "mu" in priors else [f"beta[{n}]" for n in names]
    m, s = _normal_params([priors[key] for key in coef_keys], p, "priors." + coef_keys[0])
    flat = ~np.isfinite(s)
    if flat.any() and np.linalg.matrix_rank(X[:, flat]) < int(flat.sum()):
        raise SpecError("coefficients with flat priors are not identified by the design", key="priors.beta")
    fixed = tuple(fixed)
    for name in SD_NAMES:
        if name not in fixed:
            check_sd_prior(priors.get(name), name)
    if not 0.0 < float(level) < 1.0:
        raise SpecError(f"level must lie strictly between 0 and 1, got {level}", key="level")
    if V is not None:
        Vm = np.asarray(V, float)
        if Vm.shape != (k, k) or not np.allclose(Vm, Vm.T):
            raise SpecError(f"V must be a symmetric {k} x {k} matrix", key="V")
        same = np.equal.outer(np.array(labels, dtype=object), np.array(labels, dtype=object))
        if np.any(Vm[~same] != 0):
            i, j = np.argwhere((Vm != 0) & ~same)[0]
            raise DataError(f"V couples effects {i + 1} and {j + 1} of different clusters", row=int(i) + 1,
                            column="V")
        blocks_by = {}
        for i, c in enumerate(labels):
            blocks_by.setdefault(c, []).append(i)
        blocks = {c: (np.asarray(idx), Vm[np.ix_(idx, idx)]) for c, idx in blocks_by.items()}
        rho = None
    else:
        blocks = within_cluster_covariance(v, labels, 0.0 if rho is None else rho)
    clusters = list(blocks)
    model = ClusteredNormalModel(y, [blocks[c] for c in clusters], clusters, X, m, s)
    ones = np.all(X == 1.0, axis=0)
    x0 = np.where(ones, 1.0, 0.0) if newx is None else np.asarray(newx, float)
    scale = max(float(np.std(y)), math.sqrt(float(np.median(v))))
    return ThreeLevelPosterior(model, names=names, study=study, clusters=clusters, newx=x0, priors=priors,
                               level=level, intercept_only=intercept_only, fixed=fixed, rho=rho, scale=scale)
