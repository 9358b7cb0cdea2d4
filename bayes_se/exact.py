"""Exact posterior of the normal-normal random-effects model, by one-dimensional quadrature in tau.

Model (meta-regression; ``X`` = a column of ones gives the plain random-effects model)::

    y_i ~ N(x_i' beta + u_i, v_i),  u_i ~ N(0, tau^2),  beta_j ~ N(m_j, s_j^2),  tau ~ p(tau).

Integrating out ``u`` gives ``y ~ N(X beta, V + tau^2 I)``; given tau the model is conjugate, so
``beta | tau, y`` is multivariate normal and ``p(tau | y)`` is known up to a constant in closed form.
The joint posterior is therefore a continuous mixture over tau of normals, which we evaluate on a
quadrature grid in tau: every marginal (beta_j, theta_i, a new study's effect) is a finite normal
mixture, its cdf a weighted sum of ``Phi``. This is the approach of R's bayesmeta (Röver 2020), with
a fixed, adaptively sized interpolatory rule in place of bayesmeta's DIRECT support points.

Quadrature. ``x = asinh(tau / c)`` with ``c`` the mode of ``tau * p(tau | y)`` (linear near 0, so the
density at tau = 0 stays in range; logarithmic in the tail, so heavy tails cost few nodes). A
two-pass scan finds where the posterior mass lies; on that interval the x-density is interpolated
at Chebyshev points of the first kind, doubling the number of points until the Chebyshev
coefficients have decayed below ``CHEB_TOL`` (Trefethen 2013). The interpolant's integral is
Fejér's first rule; its antiderivative is the cdf of tau, exact to the same accuracy.

Priors on log tau2 (``log_t``, e.g. Rhodes et al. 2015, and ``log_normal``). A t prior on
``u = log tau^2`` has a tau density ``f_t((2 log tau - m)/s) / s * 2 / tau``, infinite at 0 (an
integrable pole); a normal one vanishes at 0 but rises from there in a spike too narrow for the
asinh axis. Both are smooth on ``u`` itself: there the density of prior x likelihood is
``f_u(u) L(e^{u/2})``, the prior's own t or normal density times a likelihood that is flat to the
left (``L(tau) = L(0) (1 + O(tau^2 / v_min))``). So for these priors the grid is on ``u``, from
``u0 = log tau0^2`` with ``tau0 = TAU0_REL sqrt(min v_i)``, and the prior mass below ``u0``
is integrated analytically, ``L(0) F_u(u0)`` (``F_u`` the prior's t or normal cdf), and carried as a
node at tau = 0 (every conditional there is taken at tau = 0). Relative to that mass the error is
``O(tau0^2 / v_min)`` times ``k (1 + max_i z_i^2)`` (z_i the standardised residuals): about 1e-12 x k x
(1 + z^2) with ``TAU0_REL = 1e-6``; the same bound holds for the conditionals, and tau's own
moments are off by at most ``tau0`` times that mass. Where that mass is small (heterogeneous data,
``L(0) << p(y)``) the grid starts higher, at the largest scan point where the tail's error
``F_u(u) max |L(tau) - L(0)|`` is still below ``TAIL_RTOL = 1e-14`` x p(y) (and the tail's mass
times ``tau / c`` and ``tau^2 / v_min``, its effect on tau's moments and the conditionals), so that a narrow peak
need not be resolved across the whole way down to tau0. This beats a substitution on the tau axis: the
t tail in u decays only polynomially, so no finite grid in tau or asinh(tau) reaches the mass near
0, while the analytic tail leaves the grid only the smooth part.

Flat priors (``flat()``, :mod:`bayes_se.priors`). A flat coefficient has prior precision 0 and is
integrated analytically by the conditional normal above. A flat tau prior is uniform on (0, inf):
``p(y | tau)`` falls like ``tau^-(k - p_flat)`` (``p_flat`` flat coefficients), so the posterior is
proper iff ``k - p_flat >= 2`` (checked before any work) and ``E[tau^r | y]`` is finite iff
``r < k - p_flat - 1`` (a moment that does not exist is reported as inf). The grid then follows the
tail until ``tau^r p(tau | y)`` has decayed by ``TAIL_NATS`` too (``r`` up to ``MAX_TAIL_MOMENT``),
so the moments that exist are resolved; the log marginal likelihood is NaN (no normalising
constant), as is BF01 of tau = 0.

References
----------
Röver C (2020). Bayesian random-effects meta-analysis using the bayesmeta R package. Journal of
Statistical Software 93(6), 1-51. doi:10.18637/jss.v093.i06
Trefethen LN (2013). Approximation Theory and Approximation Practice. SIAM, ch. 19.
Gelman A et al. (2013). Bayesian Data Analysis, 3rd ed., sec. 5.4 (the conditional posteriors).
Dickey JM (1971). The weighted likelihood ratio, linear hypotheses on normal location parameters.
Annals of Mathematical Statistics 42(1), 204-223 (the Savage-Dickey density ratio).
"""

from __future__ import annotations

import functools
import math
import sys
import warnings

import numpy as np
from numpy.polynomial import chebyshev

from bayes_se.errors import ConvergenceWarning, DataError, SpecError
from bayes_se.lazy import LazyModule, median
from bayes_se.normal_dist import ndtr, ndtri

pd = LazyModule("pandas")  # the fit and its JSON need neither pandas nor scipy.special (issue 17)

__all__ = ["ExactPosterior", "exact_posterior", "half_normal_logpdf"]

TAIL_NATS = 50.0  # the grid covers tau where the density is within e^-50 of its maximum
SCAN_DECADES = (-8.0, 4.0)  # first scan: tau from 1e-8 to 1e4 times the data's scale
SCAN_POINTS = 49  # 4 per decade; then REFINE_POINTS between the neighbours of the best one
SCAN_MAX_DECADE = 24.0  # heavy tails (flat priors, small k) are followed this far before giving up
MAX_TAIL_MOMENT = 4  # a flat tau prior: the grid reaches far enough for E[tau^4] (tau2's sd)
REFINE_POINTS = 33
ZOOM_CORE = 3  # a peak is resolved when this many scan points lie within 2 nats of its top ...
ZOOM_MAX = 8  # ... after at most this many zooms (each ~16x finer)
CHEB_START = 24
CHEB_MAX = 1536
CHEB_TOL = 1e-13  # relative size of the last quarter of Chebyshev coefficients at convergence
NOISE_ULPS = 64  # ... or that many rounding errors of the log density, whichever is larger
QUANTILE_RTOL = 1e-14
TAU0_REL = 1e-6  # log-tau2 priors: the grid starts at tau0 = 1e-6 sqrt(min v); below it L(tau) = L(0)
TAIL_RTOL = 1e-14  # ... or higher, where the analytic tail's error stays below 1e-14 x p(y)
LOG_TAU2_FAMILIES = ("log_t", "log_normal")
CHUNK_ELEMENTS = 1 << 21  # (grid x study) arrays are built this many elements at a time (16 MiB)
THETA_THREADS = 2  # large k: pieces of a block of study effects worked on at a time (threads; 1: none)
BLOCK_ELEMENTS = 120_000  # large k: the quantiles' (grid x study) pieces, small enough for a core's cache
PRUNE_WEIGHT = 1e-18  # large k: grid nodes lighter than this are left out of the study effects' mixtures
START_NODES = 8  # large k: Newton's method for the study effects' quantiles starts from a rule of this many nodes
LOG_2PI = math.log(2.0 * math.pi)


def half_normal_logpdf(scale: float):
    """Log density of tau ~ half-N(0, scale^2) on tau >= 0, vectorised.

    Hand-written rather than ``scipy.stats.halfnorm(scale=...).logpdf`` because the fit calls it a
    few times per fit and the frozen-distribution overhead would dominate the 5 ms budget.
    """
    scale = float(scale)
    const = math.log(2.0) - 0.5 * LOG_2PI - math.log(scale)

    def logpdf(tau):
        tau = np.asarray(tau, dtype=float)
        return np.where(tau >= 0, const - 0.5 * (tau / scale) ** 2, -np.inf)

    return logpdf


@functools.lru_cache(maxsize=16)
def _fejer(n: int):
    """Chebyshev points of the first kind on [-1, 1] (ascending), the values-to-coefficients
    matrix and Fejér's first-rule weights (the exact integrals of the interpolant)."""
    theta = np.pi * (np.arange(n)[::-1] + 0.5) / n
    s = np.cos(theta)
    coef = (2.0 / n) * np.cos(np.outer(np.arange(n), theta))
    coef[0] *= 0.5
    m = np.arange(n)
    q = np.zeros(n)
    q[::2] = 2.0 / (1.0 - m[::2].astype(float) ** 2)
    return s, coef, coef.T @ q


class _NormalModel:
    """``y ~ N(X beta, V + tau^2 I)``, ``beta ~ N(m, diag(s^2))``, conditional on tau.

    An infinite ``s_j`` is a flat prior on ``beta_j`` (its prior precision is 0).
    """

    def __init__(self, y, v, X, m, s):
        self.y, self.v, self.X, self.s = y, v, X, s
        flat = ~np.isfinite(s)
        self.proper = not bool(flat.any())
        self.prec = np.where(flat, 0.0, (1.0 / np.where(flat, 1.0, s)) ** 2)  # (1/s)^2: no overflow at s ~ 1e200
        self.m = np.where(flat, 0.0, m)
        self.r = y - X @ self.m
        k, p = X.shape
        self.const = -0.5 * (k * LOG_2PI + float(np.sum(2.0 * np.log(s[~flat]))))
        # per-study outer products and cross-products, so each tau costs three (G x k) matmuls
        self._XX = (X[:, :, None] * X[:, None, :]).reshape(k, p * p)
        self._Xr = X * self.r[:, None]
        self._rr = np.square(self.r)

    def conditional(self, tau):
        """Log marginal likelihood ``log p(y | tau)`` and ``beta | tau, y ~ N(b, A^-1)``.

        ``log p(y|tau) = -1/2 [log|D| + log|S| + log|A| + r'D^-1 r - r'D^-1 X A^-1 X'D^-1 r] + const``
        with ``D = V + tau^2 I``, ``A = X'D^-1 X + S^-1``, ``r = y - X m`` (Woodbury identity), so no
        k x k matrix is ever formed. Vectorised over tau: returns shapes (G,), (G, p), (G, p, p).
        The (G, k) intermediates are formed ``CHUNK_ELEMENTS`` at a time, so memory stays linear in k.
        """
        tau = np.asarray(tau, dtype=float)
        rows = max(1, CHUNK_ELEMENTS // max(1, self.y.size))
        if tau.size <= rows:
            return self._conditional(tau)
        chunks = [tau[i:i + rows] for i in range(0, tau.size, rows)]
        if THETA_THREADS < 2:
            parts = [self._conditional(chunk) for chunk in chunks]
        else:  # the same chunks, THETA_THREADS at a time in threads (NumPy and BLAS release the GIL)
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(min(THETA_THREADS, len(chunks))) as pool:
                parts = list(pool.map(self._conditional, chunks))
        return tuple(np.concatenate(blocks) for blocks in zip(*parts))

    def _conditional(self, tau):
        p = self.X.shape[1]
        d = self.v + np.square(tau)[:, None]
        w = 1.0 / d
        logdet_d = np.sum(np.log(d), axis=1)
        if p == 0:  # no coefficients (the null model of a Bayes factor): y ~ N(0, D)
            G = d.shape[0]
            return self.const - 0.5 * (logdet_d + w @ self._rr), np.zeros((G, 0)), np.zeros((G, 0, 0))
        A = (w @ self._XX).reshape(-1, p, p)
        A += np.diag(self.prec)
        rhs = w @ self._Xr
        if p == 1:  # scalar case written out: np.linalg on (G, 1, 1) stacks costs more than it does
            Ainv = 1.0 / A
            u = Ainv[:, :, 0] * rhs
            logdet_A = np.log(A[:, 0, 0])
        else:
            Ainv = np.linalg.inv(A)
            u = np.einsum("gpq,gq->gp", Ainv, rhs)
            logdet_A = np.linalg.slogdet(A)[1]
        quad = w @ self._rr - np.sum(rhs * u, axis=1)
        loglik = self.const - 0.5 * (logdet_d + logdet_A + quad)
        return loglik, self.m + u, Ainv


class ExactPosterior:
    """The posterior of a normal-normal meta-(regression) model as a normal mixture over tau.

    Built by :func:`exact_posterior`. Parameter names: ``mu`` (intercept-only model) or
    ``beta[NAME]``; ``tau``; ``tau2``; ``theta[STUDY]``; ``pred`` (a new study's effect).

    Attributes
    ----------
    tau_grid, tau_weights : ndarray
        The quadrature nodes in tau (ascending) and the posterior mixture weights (sum 1): for any
        smooth g, ``E[g(tau) | y] = sum(tau_weights * g(tau_grid))``.
    log_marginal_likelihood : float
        ``log p(y)``; NaN when a coefficient has a flat prior (the marginal likelihood is then
        undefined). It assumes the tau prior density is normalised.
    coef_names, study : tuple of str
    level : float

    Marginals: ``summary()``, ``mean``, ``sd``, ``cdf``, ``pdf``, ``quantile``, ``prob``; given tau:
    ``conditional``; tests: ``bayes_factor``; iid draws: ``draws``. theta summaries are computed on
    first use, so a fit that never asks for them stays fast.
    """

    def __init__(self, model, names, study, newx, logprior, scale, level, intercept_only, log_tau2_prior=None,
                 tail_power=None):
        self._model = model
        self._logprior = logprior
        # a flat (improper) tau prior: p(tau | y) falls like tau^-tail_power (module notes, "Flat
        # priors"); no normalising constant, so no marginal likelihood; E[tau^r] finite iff
        # r < tail_power - 1
        self._tail_power = tail_power
        self._tau_improper = tail_power is not None
        self._tail_moment = 0 if tail_power is None else max(0, min(MAX_TAIL_MOMENT, tail_power - 2))
        # a frozen scipy distribution of u = log tau^2: the grid is then on u (see the module notes)
        self._log_tau2_prior = log_tau2_prior
        self._log_axis = log_tau2_prior is not None
        self.coef_names = tuple(names)
        self.study = tuple(study)
        self._study_index_map = None  # {label: i}, built on the first lookup by label (O(1) at large k)
        self.level = level
        self._intercept_only = intercept_only
        self._newx = newx
        self._par = ["mu"] if intercept_only else [f"beta[{n}]" for n in names]
        self._scale = scale
        self._build(scale)
        self._mixtures = {}

    # -- quadrature ------------------------------------------------------------------------
    def _logpost(self, tau):
        loglik, b, Ainv = self._model.conditional(tau)
        lp = np.asarray(self._logprior(tau), dtype=float) + loglik
        if np.isnan(lp).any():
            raise SpecError("the tau prior log density returned NaN", key="tau_prior")
        return lp, b, Ainv

    def _scan(self, scale):
        """Find ``c`` (the mode of tau * p(tau|y)), a tau-interval holding all the mass (its lower end
        0 when the mass reaches the scan's first point) and the tau-interval of the peak."""
        tau1 = scale * np.logspace(*SCAN_DECADES, SCAN_POINTS)
        g1 = self._logpost(tau1)[0] + np.log(tau1)
        if not np.isfinite(g1).any():
            raise SpecError("the tau prior is zero wherever the likelihood is not", key="tau_prior")
        i = int(np.argmax(g1))
        tau2 = np.geomspace(tau1[max(i - 1, 0)], tau1[min(i + 1, SCAN_POINTS - 1)], REFINE_POINTS)
        g2 = self._logpost(tau2)[0] + np.log(tau2)
        taus = np.concatenate([tau1, tau2])
        order = np.argsort(taus)
        taus, g = taus[order], np.concatenate([g1, g2])[order]
        top = SCAN_DECADES[1]
        r = self._tail_moment  # a flat tau prior: the tail of tau^r p(tau | y) must decay too

        def tail_open():
            gt = g + r * np.log(taus)
            return gt[-1] > gt.max() - TAIL_NATS

        while tail_open():  # the tail has not decayed yet: follow it further
            if top >= SCAN_MAX_DECADE:
                raise SpecError(
                    "the posterior of tau is improper or too heavy-tailed to integrate; "
                    "use a proper tau prior",
                    key="tau_prior",
                )
            more = scale * np.logspace(top + 0.25, top + 4.0, 16)
            taus, g = np.append(taus, more), np.append(g, self._logpost(more)[0] + np.log(more))
            top += 4.0
        for _ in range(ZOOM_MAX):
            # a peak narrower than the scan's spacing (large k: tau's posterior sd shrinks like
            # 1/sqrt(k)) is resolved by zooming in: REFINE_POINTS more between the neighbours of the
            # region within TAIL_NATS of the top, until the top 2 nats hold ZOOM_CORE points
            if np.count_nonzero(g > g.max() - 2.0) >= ZOOM_CORE:
                break
            inside = np.flatnonzero(g > g.max() - TAIL_NATS)
            if inside[0] == 0 or inside[-1] == taus.size - 1:
                break
            more = np.geomspace(taus[inside[0] - 1], taus[inside[-1] + 1], REFINE_POINTS)[1:-1]
            taus = np.append(taus, more)
            g = np.append(g, self._logpost(more)[0] + np.log(more))
            order = np.argsort(taus)
            taus, g = taus[order], g[order]
        c = float(taus[np.argmax(g)])
        core = taus[g > g.max() - 2.0]  # about +-2 sd of a normal-shaped peak
        inside = np.flatnonzero(g > g.max() - TAIL_NATS)
        if r:  # ... up to where tau^r p(tau | y) has decayed (the moments of a flat tau prior)
            gt = g + r * np.log(taus)
            inside = np.arange(inside[0], max(inside[-1], int(np.flatnonzero(gt > gt.max() - TAIL_NATS)[-1])) + 1)
        tau_lo = taus[inside[0] - 1] if inside[0] > 0 else 0.0
        tau_hi = taus[inside[-1] + 1]
        # a prior with bounded support (e.g. uniform) ends the grid exactly at its edge, so the
        # interpolated density stays smooth
        if inside[0] > 0 and np.isneginf(g[inside[0] - 1]):
            tau_lo = self._support_edge(taus[inside[0]], tau_lo)
        if np.isneginf(g[inside[-1] + 1]):
            tau_hi = self._support_edge(taus[inside[-1]], tau_hi)
        self._scan_taus, self._scan_g = taus, g
        return c, float(tau_lo), float(tau_hi), np.array([core[0], core[-1]])

    def _support_edge(self, inside, outside):
        """Where the tau prior's support ends, between a point inside and one outside it (bisection)."""
        for _ in range(80):
            mid = 0.5 * (inside + outside)
            if np.isfinite(np.asarray(self._logprior(np.array([mid])), dtype=float)).all():
                inside = mid
            else:
                outside = mid
            if abs(outside - inside) <= 4 * np.finfo(float).eps * outside:
                break
        return inside

    # the integration axis: x = asinh(tau / c), or x = log tau^2 for priors on log tau2
    def _tau_of_x(self, x):
        return np.exp(0.5 * x) if self._log_axis else self._c * np.sinh(x)

    def _x_of_tau(self, tau):
        tau = np.asarray(tau, dtype=float)
        if self._log_axis:
            with np.errstate(divide="ignore", invalid="ignore"):
                return 2.0 * np.log(tau)
        return np.arcsinh(tau / self._c)

    def _log_density_x(self, x):
        """Log density of prior x likelihood on the x axis (unnormalised), with the conditionals."""
        tau = self._tau_of_x(x)
        if self._log_axis:  # the prior's own density of log tau^2: no Jacobian, no pole
            loglik, b, Ainv = self._model.conditional(tau)
            lh = np.asarray(self._log_tau2_prior.logpdf(x), dtype=float) + loglik
        else:
            lp, b, Ainv = self._logpost(tau)
            lh = lp + np.log(self._c * np.cosh(x))
        return lh, b, Ainv, tau

    def _interval(self, scale):
        """The x-interval of the grid and its starting number of nodes."""
        c, tau_lo, tau_hi, core = self._scan(scale)
        self._c = c
        if self._log_axis:
            tau0 = TAU0_REL * math.sqrt(float(np.min(self._model.v)))
            hi = 2.0 * math.log(tau_hi)
            lo = min(max(2.0 * math.log(max(tau_lo, tau0)), self._tail_cut(c)), hi - 2.0)
        else:
            lo = 0.0 if tau_lo < 0.25 * c else float(np.arcsinh(tau_lo / c))
            hi = float(np.arcsinh(tau_hi / c))
        # nodes needed grow with the interval's width in units of the peak's width
        xc = self._x_of_tau(core)
        width = (xc[1] - xc[0]) / 4.0
        ratio = (hi - lo) / max(width, 1e-300)
        return lo, hi, CHEB_START * 2 ** max(0, min(6, int(np.ceil(np.log2(ratio / 6.0)))))

    def _tail_cut(self, c):
        """The largest u = log tau_c^2 below the peak at which the analytic tail ``L(0) F_u(u)`` is off
        by at most ``TAIL_RTOL`` x p(y): its error is at most ``F_u(u) max_{tau <= tau_c} |L(tau) - L(0)|``,
        the max taken over the scan's points (4 a decade), p(y) estimated from the scan; the tail's
        mass times ``tau_c / c`` (tau's moments) and ``tau_c^2 / v_min`` (the conditionals) must stay
        below it too. When the
        tail's mass is small (heterogeneous data) the grid can then start near the peak instead of
        at tau0, saving nodes; -inf when no scan point qualifies."""
        taus, g = self._scan_taus, self._scan_g
        keep = (taus > 0) & (taus < c)
        if not keep.any():
            return -math.inf
        cand = taus[keep]
        top = g.max()
        log_z = top + math.log(np.trapezoid(np.exp(g - top), np.log(taus)))  # ~ log p(y), enough here
        loglik0 = float(self._model.conditional(np.zeros(1))[0][0])
        with np.errstate(divide="ignore"):
            # relative errors of putting the tail's mass at tau = 0: in L, in tau's moments (tau / c),
            # and in the conditionals (the shrinkage factor tau^2 / (v_i + tau^2) <= tau^2 / v_min)
            dev = np.maximum.accumulate(np.abs(np.expm1(self._model.conditional(cand)[0] - loglik0)))
            dev = np.log(np.maximum(dev, np.maximum(cand / c, np.square(cand) / np.min(self._model.v))))
            err = loglik0 + self._log_tau2_prior.logcdf(2.0 * np.log(cand)) + dev - log_z
        ok = np.flatnonzero(err <= math.log(TAIL_RTOL))
        return 2.0 * math.log(cand[ok[-1]]) if ok.size else -math.inf

    def _build(self, scale):
        lo, hi, n = self._interval(scale)
        while True:
            s, to_coef, fejer = _fejer(n)
            x = 0.5 * (lo + hi) + 0.5 * (hi - lo) * s
            lh, b, Ainv, tau = self._log_density_x(x)
            if np.isnan(lh).any():
                raise SpecError("the tau prior log density returned NaN", key="tau_prior")
            top = lh.max()
            h = np.exp(lh - top)
            coef = to_coef @ h
            tail = np.abs(coef[-(n // 4):]).max()
            noise = NOISE_ULPS * np.finfo(float).eps * np.abs(lh).max()
            if tail <= max(CHEB_TOL, noise) * np.abs(coef).max():
                break
            if 2 * n > CHEB_MAX:
                warnings.warn(
                    f"tau quadrature not converged with {n} nodes (tail {tail:.1e})",
                    ConvergenceWarning,
                    stacklevel=3,
                )
                break
            n *= 2
        w = 0.5 * (hi - lo) * fejer * h
        log_inner = top + math.log(w.sum())
        loglik0, b0, Ainv0 = self._model.conditional(np.zeros(1))
        self._loglik0 = float(loglik0[0])  # log p(y | tau = 0)
        if self._log_axis:
            # prior mass below the grid, at L(0): a node at tau = 0 (error O(tau0^2 / v_min), see above)
            self._log_tail_cdf = float(self._log_tau2_prior.logcdf(lo))
            log_tail = self._loglik0 + self._log_tail_cdf
            self._log_z = float(np.logaddexp(log_inner, log_tail))
            self._p0 = math.exp(log_tail - self._log_z)
            tau = np.concatenate([[0.0], tau])
            w = np.concatenate([[math.exp(log_tail - top)], w])
            b, Ainv = np.concatenate([b0, b]), np.concatenate([Ainv0, Ainv])
        else:
            self._log_z, self._p0 = log_inner, 0.0
        # self._log_z: log of the integral of prior x likelihood over tau
        self._lo, self._hi = lo, hi
        self.tau_grid = tau
        # w / sum(w): exp(top - log_z) would leave the sum off 1 by ~|log_z| ulps (1e-13 at k = 200,000),
        # and a probability of 1.0000000000009
        self.tau_weights = w / w.sum()
        self._b, self._Ainv = b, Ainv
        self._cdf_coef = chebyshev.chebint(coef * math.exp(top - self._log_z), lbnd=-1.0, scl=0.5 * (hi - lo))
        self._cdf_coef[0] += self._p0  # the cdf of x, P(tau <= tau(x)), is p0 at the grid's start
        self._degrees = np.arange(self._cdf_coef.size, dtype=float)
        self._tau_q = {}
        self.log_marginal_likelihood = (self._log_z if self._model.proper and not self._tau_improper
                                        else math.nan)

    # -- normal mixtures -------------------------------------------------------------------
    def _resolve(self, name):
        """('coef', j) | ('tau', None) | ('tau2', None) | ('theta', i) | ('pred', None)."""
        if name in ("tau", "tau2", "pred"):
            return name, None
        if name in self._par:
            return "coef", self._par.index(name)
        if name in self.coef_names and not self._intercept_only:
            return "coef", self.coef_names.index(name)
        if name.startswith("theta[") and name.endswith("]") and name[6:-1] in self._study_index():
            return "theta", self._study_index()[name[6:-1]]
        known = self._par + ["tau", "tau2", "pred", "theta[STUDY]"]
        raise SpecError(f"unknown parameter {name!r}; known: {', '.join(known)}", key="parameter")

    def _study_index(self) -> dict:
        if self._study_index_map is None:
            self._study_index_map = {label: i for i, label in enumerate(self.study)}
        return self._study_index_map

    def _normal_moments(self, kind, j, tau, b, Ainv):
        """Mean and sd of a parameter given tau (vectorised over tau; j=None: all studies).

        ``theta_i | beta, tau, y ~ N(B y_i + (1 - B) x_i'beta, B v_i)`` with
        ``B = tau^2 / (v_i + tau^2)``; beta is then integrated out against ``N(b, A^-1)``.
        """
        if kind == "coef":
            return b[:, j], np.sqrt(Ainv[:, j, j])
        if kind == "pred":
            x0 = self._newx
            return b @ x0, np.sqrt(np.einsum("p,gpq,q->g", x0, Ainv, x0) + np.square(tau))
        X, v, y = self._model.X, self._model.v, self._model.y
        single = isinstance(j, (int, np.integer))
        if j is not None:  # one study (an int) or a block of them (a slice)
            rows = slice(j, j + 1) if single else j
            X, v, y = X[rows], v[rows], y[rows]
        t2 = np.square(tau)[:, None]
        B = t2 / (v + t2)
        if X.shape[1] == 1:  # one coefficient: x_i' A^-1 x_i = A^-1 x_i^2, no einsum over (G, k, p, p)
            spread = Ainv[:, 0, 0][:, None] * np.square(X[:, 0])
        else:
            spread = np.einsum("kp,gpq,kq->gk", X, Ainv, X)
        mean = B * y + (1.0 - B) * (b @ X.T)
        sd = np.sqrt(B * v + np.square(1.0 - B) * spread)
        return (mean[:, 0], sd[:, 0]) if single else (mean, sd)

    def _theta_cached(self) -> bool:
        """Whether the (grid x study) moments of every theta are small enough to keep in memory."""
        return self.tau_grid.size * len(self.study) <= CHUNK_ELEMENTS

    def _theta_all(self):
        """Means and sds (grid x study) of every theta_i given tau, computed on first use (only
        where :meth:`_theta_cached`; larger fits work through :meth:`_theta_blocks`)."""
        if "theta" not in self._mixtures:
            self._mixtures["theta"] = self._normal_moments("theta", None, self.tau_grid, self._b, self._Ainv)
        return self._mixtures["theta"]

    def _theta_blocks(self):
        """``(rows, weights, mean, sd)`` for blocks of studies, each ``(grid x block)`` at most about
        ``CHUNK_ELEMENTS`` numbers, so memory stays linear in k however many studies there are.
        Beyond the cached size, grid nodes of weight below ``PRUNE_WEIGHT`` are left out (they can
        move no moment, probability or quantile by more than G x 1e-18 of its scale)."""
        k = len(self.study)
        if self._theta_cached():
            mean, sd = self._theta_all()
            yield slice(0, k), self.tau_weights, mean, sd
            return
        w, tau, b, Ainv, size = self._theta_pruned()
        for start in range(0, k, size):
            rows = slice(start, min(k, start + size))
            yield (rows, w) + self._normal_moments("theta", rows, tau, b, Ainv)

    def _theta_pruned(self):
        """Beyond the cached size: the grid's weights, nodes and conditionals without the nodes lighter
        than ``PRUNE_WEIGHT``, and the number of studies in a block."""
        # the normal cdf of these blocks is SciPy's (normal_dist.SCIPY_MIN_SIZE: a block is a million
        # elements and more); imported here, so that the pieces of a block use it too
        import scipy.special  # noqa: F401

        keep = self.tau_weights > PRUNE_WEIGHT
        w, tau, b, Ainv = self.tau_weights[keep], self.tau_grid[keep], self._b[keep], self._Ainv[keep]
        return w, tau, b, Ainv, max(1, CHUNK_ELEMENTS // tau.size)

    @staticmethod
    def _pieces(func, n: int, size: int) -> None:
        """``func(slice)`` for pieces of ``range(n)`` of ``size`` each, ``THETA_THREADS`` at a time in
        threads (NumPy, SciPy's ndtr and BLAS release the GIL); ``func`` writes only its own rows."""
        pieces = [slice(i, min(n, i + size)) for i in range(0, n, size)]
        if THETA_THREADS < 2 or len(pieces) < 2:
            for cols in pieces:
                func(cols)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(THETA_THREADS) as pool:
            list(pool.map(func, pieces))

    def _gauss_mixture(self, n):
        """The ``n``-point Gauss rule of tau's posterior (the discrete measure ``tau_weights`` on
        ``tau_grid``, nodes lighter than ``PRUNE_WEIGHT`` left out) and the conditionals ``beta | tau, y``
        at its nodes: ``(tau, weights, b, A^-1)``. Its theta mixtures match the full ones in every
        moment up to order ``2n - 1`` in tau, which makes their quantiles good starts for Newton's
        method on the full mixtures (Golub & Welsch 1969; Gautschi 2004, sec. 2.2: the Stieltjes
        procedure for the recurrence, the eigenvalues of its Jacobi matrix for the rule)."""
        keep = self.tau_weights > PRUNE_WEIGHT
        tau, w = self.tau_grid[keep], self.tau_weights[keep]
        w = w / w.sum()
        n = min(n, tau.size)
        centre = float(w @ tau)
        spread = math.sqrt(float(w @ np.square(tau - centre)))
        if n < 2 or spread == 0.0:
            nodes, weights = np.array([centre]), np.ones(1)
        else:
            t = (tau - centre) / spread
            a, off = np.zeros(n), np.zeros(n - 1)
            q_prev, q = np.zeros_like(t), np.ones_like(t)
            for j in range(n):  # the orthonormal polynomials of the measure, by their three-term recurrence
                a[j] = float(w @ (t * np.square(q)))
                if j == n - 1:
                    break
                r = (t - a[j]) * q - (off[j - 1] if j else 0.0) * q_prev
                off[j] = math.sqrt(float(w @ np.square(r)))
                q_prev, q = q, r / off[j]
            nodes, vectors = np.linalg.eigh(np.diag(a) + np.diag(off, 1) + np.diag(off, -1))
            weights = np.square(vectors[0])
            nodes = np.clip(centre + spread * nodes, tau.min(), tau.max())
        _, b_r, Ainv_r = self._model.conditional(nodes)
        return nodes, weights / weights.sum(), b_r, Ainv_r

    def _mixture(self, kind, j):
        if kind != "theta" or not self._theta_cached():
            return self._normal_moments(kind, j, self.tau_grid, self._b, self._Ainv)
        mean, sd = self._theta_all()
        return mean[:, j], sd[:, j]

    def theta_prob(self, op: str, value: float) -> np.ndarray:
        """``P(theta_i op value | y)`` for every study at once (``op`` one of < <= > >=), in study order."""
        return self.theta_probs([(op, value)])[0]

    def theta_probs(self, events) -> list:
        """:meth:`theta_prob` of several ``(op, value)`` events, in one pass over the studies."""
        events = self._events(events)
        done = self._mixtures.pop(("theta_probs", tuple(events)), None)  # from summary_values' pass
        if done is not None:
            return done
        out = [np.empty(len(self.study)) for _ in events]
        for rows, w, m, s in self._theta_blocks():
            self._event_probs(events, out, rows, w, m, s)
        return [np.clip(p, 0.0, 1.0) for p in out]

    @staticmethod
    def _events(events) -> list:
        events = [(op, float(value)) for op, value in events]
        for op, _ in events:
            if op not in ("<", "<=", ">", ">="):
                raise SpecError(f"operator must be one of < <= > >=, not {op!r}", key="op")
        return events

    @staticmethod
    def _event_probs(events, out, rows, w, m, s) -> None:
        """``out[e][rows] = P(theta op value)`` of each event for one block of studies (unclipped)."""
        for (op, value), target in zip(events, out):
            z = (value - m) / s
            target[rows] = w @ ndtr(-z if op.startswith(">") else z)

    def conditional(self, name: str, tau):
        """Mean and sd of the normal ``name | tau, y`` (mu/beta, theta, pred), vectorised over tau."""
        kind, j = self._resolve(name)
        if kind in ("tau", "tau2"):
            raise SpecError(f"{name!r} is not conditionally normal given tau", key="parameter")
        tau = np.atleast_1d(np.asarray(tau, dtype=float))
        if np.any(tau < 0):
            raise SpecError("tau must be >= 0", key="tau")
        _, b, Ainv = self._model.conditional(tau)
        return self._normal_moments(kind, j, tau, b, Ainv)

    def _mix_moments(self, kind, j):
        m, s = self._mixture(kind, j)
        w = self.tau_weights
        mean = float(w @ m)
        return mean, math.sqrt(float(w @ (np.square(s) + np.square(m - mean))))

    def _mix_cdf(self, kind, j, x, upper=False):
        m, s = self._mixture(kind, j)
        z = (np.asarray(x, dtype=float)[..., None] - m) / s
        return np.clip(ndtr(-z if upper else z) @ self.tau_weights, 0.0, 1.0)

    def _mix_quantile(self, kind, j, q):
        m, s = self._mixture(kind, j)
        # components of negligible weight (the far tail of a flat tau prior, tau ~ 1e21) can move no
        # quantile in (1e-15, 1 - 1e-15): the bracket and tolerance come from the others
        keep = self.tau_weights > 1e-15 * min(q, 1.0 - q)
        w, m, s = self.tau_weights[keep], m[keep], s[keep]
        lo, hi = float(np.min(m - 12 * s)), float(np.max(m + 12 * s))
        order = np.argsort(s)  # tolerance: 1e-13 of the weighted median component sd
        xtol = 1e-13 * float(s[order][min(np.searchsorted(np.cumsum(w[order]), 0.5 * w.sum()), s.size - 1)])
        return _bisect(lambda x: self._mix_cdf(kind, j, x) - q, lo, hi, xtol=xtol, rtol=QUANTILE_RTOL)

    def _quantiles_all(self, m, s, q, w=None, start=None, moments=None):
        """Quantile ``q`` of J mixtures at once, ``m``, ``s`` of shape (G, J): Newton's method kept
        inside a bisection bracket, vectorised over mixtures (the theta summaries of a large k would
        otherwise cost J Python-level brentq searches). Mixtures leave the iteration once converged,
        and components of negligible weight are left out, as in :meth:`_mix_quantile`. ``w``: the
        weights of the rows of ``m`` and ``s`` (default the grid's). ``start``: where Newton's method
        starts (default the Cornish-Fisher expansion); ``moments``: the mixtures' means and sds, when
        the caller has them (the same numbers computed here otherwise)."""
        w = self.tau_weights if w is None else w
        z = ndtri(q)
        if moments is not None and start is not None:
            mean, sd = moments
        else:
            mean = w @ m
            d = m - mean
            s2 = np.square(s)
            mu2 = w @ (s2 + np.square(d))
            sd = np.sqrt(mu2)
        if start is None:
            # start at the Cornish-Fisher expansion (skewness and kurtosis of the mixture): one Newton step
            # fewer than from the normal quantile, every step a pass of ndtr over (grid x studies)
            g1 = (w @ (d * (np.square(d) + 3 * s2))) / mu2**1.5
            g2 = (w @ (d**4 + 6 * np.square(d) * s2 + 3 * np.square(s2))) / np.square(mu2) - 3.0
            start = mean + sd * (z + (z * z - 1) * g1 / 6 + (z**3 - 3 * z) * g2 / 24
                                 - (2 * z**3 - 5 * z) * g1 * g1 / 36)
        keep = np.flatnonzero(w > 1e-15 * min(q, 1.0 - q))
        if keep.size < w.size:  # a run of nodes (the weights rise and fall): a view, else a copy
            keep = slice(keep[0], keep[-1] + 1) if keep[-1] - keep[0] + 1 == keep.size else keep
            w, m, s = w[keep], m[keep], s[keep]
        # the same operations as (m - 12 * s).min(axis=0), (m + 12 * s).max(axis=0), in one buffer
        t = np.multiply(s, 12)
        lo = np.subtract(m, t).min(axis=0)
        hi = np.add(m, t, out=t).max(axis=0)
        x = np.clip(np.where(np.isfinite(start), start, mean + sd * z), lo, hi)
        active = slice(None)  # all mixtures, then the indices of those not yet converged
        for _ in range(200):
            ma, sa, xa = (m, s, x) if isinstance(active, slice) else (m[:, active], s[:, active], x[active])
            z = np.subtract(xa, ma)
            z /= sa
            F = w @ ndtr(z) - q
            la, ha = np.where(F < 0, xa, lo[active]), np.where(F > 0, xa, hi[active])
            t = np.multiply(-0.5, z)  # exp(-z^2 / 2) / s, as np.exp(-0.5 * z * z) / sa, in one buffer
            t *= z
            np.exp(t, out=t)
            t /= sa
            new = xa - F / (w @ t) * math.sqrt(2 * math.pi)
            new = np.where((new >= la) & (new <= ha), new, 0.5 * (la + ha))
            done = np.abs(new - xa) <= 1e-13 * sd[active]
            x[active], lo[active], hi[active] = new, la, ha
            if done.all():
                break
            active = np.flatnonzero(~done) if isinstance(active, slice) else active[~done]
        return x

    # -- tau -------------------------------------------------------------------------------
    def _tau_pdf(self, tau):
        tau = np.atleast_1d(np.asarray(tau, dtype=float))
        out = np.zeros(tau.shape)
        ok = tau >= 0
        if ok.any():
            out[ok] = np.exp(self._logpost(tau[ok])[0] - self._log_z)
        return out

    def _cdf_x(self, x):
        """Cdf of the axis variable x on the grid's interval (the integrated interpolant)."""
        s = (2.0 * np.asarray(x, dtype=float) - (self._lo + self._hi)) / (self._hi - self._lo)
        if s.ndim == 0:  # T_n(s) = cos(n arccos s): one vector product, not chebval's loop over n
            theta = math.acos(min(1.0, max(-1.0, float(s))))
            return float(np.cos(theta * self._degrees) @ self._cdf_coef)
        return chebyshev.chebval(np.clip(s, -1.0, 1.0), self._cdf_coef)

    def _tail_cdf(self, x):
        """Cdf of x below the grid: 0, or for a log-tau2 prior ``p0 F_u(x) / F_u(lo)``."""
        if not self._log_axis:
            return np.zeros(np.shape(x))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.isnan(x), 0.0,
                            self._p0 * np.exp(self._log_tau2_prior.logcdf(x) - self._log_tail_cdf))

    def _tail_quantile(self, q):
        """x with ``_tail_cdf(x) = q`` for ``q <= p0`` (a log-tau2 prior's quantile), vectorised."""
        return self._log_tau2_prior.ppf(np.exp(np.log(q) - math.log(self._p0) + self._log_tail_cdf))

    def _tau_cdf(self, tau):
        tau = np.asarray(tau, dtype=float)
        x = self._x_of_tau(tau)
        inside = np.clip(x, self._lo, self._hi)
        out = np.where(x <= self._lo, self._tail_cdf(x), np.where(x >= self._hi, 1.0, self._cdf_x(inside)))
        return np.where(tau > 0, out, 0.0)

    def _tau_quantile(self, q):
        if q not in self._tau_q:  # memoised: tau2's quantiles are tau's squared
            if q <= self._p0:
                x = float(self._tail_quantile(q))
            else:
                x = _bisect(lambda x: self._cdf_x(x) - q, self._lo, self._hi, xtol=1e-15, rtol=QUANTILE_RTOL)
            self._tau_q[q] = float(self._tau_of_x(x))
        return self._tau_q[q]

    # -- public ----------------------------------------------------------------------------
    def cdf(self, name: str, x):
        """Posterior cdf ``P(name <= x | y)`` of a parameter, vectorised over ``x``."""
        kind, j = self._resolve(name)
        if kind == "tau":
            return self._tau_cdf(x)
        if kind == "tau2":
            return self._tau_cdf(np.sqrt(np.maximum(x, 0.0)))
        return self._mix_cdf(kind, j, x)

    def pdf(self, name: str, x):
        """Posterior density of a parameter at ``x`` (vectorised); tau's is computed exactly."""
        kind, j = self._resolve(name)
        xa = np.asarray(x, dtype=float)
        if kind == "tau":
            return self._tau_pdf(xa).reshape(xa.shape)
        if kind == "tau2":
            t = np.sqrt(np.maximum(np.atleast_1d(xa), 0.0))
            with np.errstate(divide="ignore"):
                d = np.where(np.atleast_1d(xa) >= 0, self._tau_pdf(t) / (2.0 * t), 0.0)
            return d.reshape(xa.shape)
        m, s = self._mixture(kind, j)
        z = (xa[..., None] - m) / s
        return (np.exp(-0.5 * z * z) / (math.sqrt(2 * math.pi) * s)) @ self.tau_weights

    def quantile(self, name: str, q):
        """Posterior quantile(s) of a parameter (root of the mixture cdf, by bisection)."""
        kind, j = self._resolve(name)
        qs = np.atleast_1d(np.asarray(q, dtype=float))
        if np.any((qs <= 0) | (qs >= 1)):
            raise SpecError("quantile probabilities must lie strictly between 0 and 1", key="q")
        if kind in ("tau", "tau2"):
            out = np.array([self._tau_quantile(p) for p in qs])
            out = out**2 if kind == "tau2" else out
        else:
            out = np.array([self._mix_quantile(kind, j, p) for p in qs])
        return out.reshape(np.shape(q)) if np.ndim(q) else float(out[0])

    def prob(self, name: str, op: str, value: float) -> float:
        """Posterior probability of ``name op value`` with ``op`` one of ``<``, ``<=``, ``>``, ``>=``."""
        if op not in ("<", "<=", ">", ">="):
            raise SpecError(f"operator must be one of < <= > >=, not {op!r}", key="op")
        kind, j = self._resolve(name)
        if kind in ("coef", "theta", "pred"):
            return float(self._mix_cdf(kind, j, value, upper=op.startswith(">")))
        p = float(self.cdf(name, value))
        return 1.0 - p if op.startswith(">") else p

    def mean(self, name: str) -> float:
        """Posterior mean."""
        return self._moments(name)[0]

    def sd(self, name: str) -> float:
        """Posterior standard deviation."""
        return self._moments(name)[1]

    def _moments(self, name):
        kind, j = self._resolve(name)
        if kind in ("tau", "tau2"):
            t = self.tau_grid if kind == "tau" else np.square(self.tau_grid)
            mean = float(self.tau_weights @ t)
            out = mean, math.sqrt(float(self.tau_weights @ np.square(t - mean)))
            order = 1 if kind == "tau" else 2  # E[tau^order] for the mean, E[tau^(2 order)] for the sd
            return tuple(v if self.moment_exists(order * (i + 1)) else math.inf for i, v in enumerate(out))
        mean, sd = self._mix_moments(kind, j)
        # a flat coefficient's and pred's conditional variance grow like tau^2 under a flat tau prior
        if kind == "pred" or (kind == "coef" and self._model.prec[j] == 0):
            sd = sd if self.moment_exists(2) else math.inf
        return mean, sd

    def moment_exists(self, r: int) -> bool:
        """Whether ``E[tau^r | y]`` is finite: always for a proper tau prior (the likelihood falls
        like tau^-(k - p_flat)... times a proper density); for a flat one iff ``r < k - p_flat - 1``."""
        return self._tail_power is None or r < self._tail_power - 1

    @property
    def X(self) -> np.ndarray:
        """The (k, p) design matrix, rows in study order (a copy): ``x_i' beta`` is study i's location."""
        return self._model.X.copy()

    @property
    def posterior_tau_density_at_0(self) -> float:
        """``p(tau = 0 | y)``: ``inf`` for a prior with a pole at 0 (log_t on tau2), whose posterior
        keeps the pole because the likelihood is positive at tau = 0; 0 for log_normal, inverse_gamma."""
        return float(self._tau_pdf(0.0)[0])

    def bayes_factor(self, hypothesis: str) -> float:
        """Bayes factor BF01 of a point null against the full model: ``exp(log_bayes_factor)``.

        It may overflow to ``inf`` or underflow to 0 under a tight prior far from the data (the
        log stays finite: use :meth:`log_bayes_factor`). NaN where undefined (a flat prior).
        """
        log_bf = self.log_bayes_factor(hypothesis)
        with np.errstate(over="ignore"):
            return float(np.exp(log_bf))

    def log_bayes_factor(self, hypothesis: str) -> float:
        """Natural log of the Bayes factor BF01 of a point null against the full model.

        ``"tau0"`` (or ``"tau=0"``): ``log p(y | tau = 0) - log p(y)``, the ratio of the marginal
        likelihoods of the common-effect and the random-effects model. It is defined for every proper
        tau prior, whatever its density at 0 (infinite for log_t, zero for log_normal or
        inverse_gamma), and equals the Savage-Dickey ratio ``p(tau=0 | y) / p(tau=0)`` where that is
        finite and positive. With a flat prior on beta both marginal likelihoods carry the same
        arbitrary constant, which cancels, so the ratio stays the Savage-Dickey value; NaN for a flat
        (improper) prior on tau, whose marginal likelihood has no normalising constant.
        ``"mu0"`` (or ``"mu=0"``, ``"beta[NAME]=0"``): ``log p(beta_j = 0 | y) - log p(beta_j = 0)``,
        exact here because beta_j given tau is normal (Dickey 1971); NaN for a flat prior on beta_j.
        Both are computed from log densities (``logsumexp`` over the tau mixture), so a tight prior
        far from the data gives a finite number, however large.
        """
        h = hypothesis.replace(" ", "")
        h = h[:-2] + "0" if h.endswith("=0") else h
        if h == "tau0":
            return math.nan if self._tau_improper else float(self._loglik0 - self._log_z)
        name = h[:-1]
        if not h.endswith("0"):
            raise SpecError(f"hypothesis must be 'tau0', 'mu0' or 'beta[NAME]=0', not {hypothesis!r}",
                            key="hypothesis")
        kind, j = self._resolve(name)
        if kind != "coef":
            raise SpecError(f"no point-null Bayes factor for {name!r}", key="hypothesis")
        if self._model.prec[j] == 0:
            return math.nan
        return float(self._log_z_without(j) - self._log_z)

    def _log_z_without(self, j):
        """``log p(y | beta_j = 0)``: the same model without column j, integrated over tau on its own
        grid (the Savage-Dickey ratio read off this posterior's mixture would need the far tail
        of beta_j's posterior, which a tight prior far from 0 puts beyond the grid)."""
        key = ("log_z_without", j)  # memoised: the Bayes factor and its log ask for the same quadrature
        if key not in self._mixtures:
            self._mixtures[key] = self._null_log_z(j)
        value = self._mixtures[key]
        if hasattr(value, "result"):  # started by prefetch_bayes_factor: wait for it (its error is raised here)
            value = self._mixtures[key] = value.result()
        return value

    def _null_log_z(self, j):
        md = self._model
        keep = np.arange(md.X.shape[1]) != j
        model = _NormalModel(md.y, md.v, md.X[:, keep], md.m[keep], md.s[keep])
        null = ExactPosterior(model, [n for n, k in zip(self.coef_names, keep) if k], self.study,
                              self._newx[keep], self._logprior, self._scale, self.level, False,
                              self._log_tau2_prior,
                              self._tail_power)  # coefficient j is proper: the tail is unchanged
        return null._log_z

    def prefetch_bayes_factor(self, hypothesis: str) -> None:
        """Start the quadrature of the null model that a point-null Bayes factor (``"mu0"``,
        ``"beta[NAME]=0"``) needs in a thread, so that it runs beside other work (a large k's study
        effects); :meth:`log_bayes_factor` then waits for it: the same numbers. Nothing is started for
        ``"tau0"`` (no quadrature), a flat coefficient (NaN) or a null already computed or started."""
        h = hypothesis.replace(" ", "")
        h = h[:-2] + "0" if h.endswith("=0") else h
        if h == "tau0" or not h.endswith("0"):
            return
        kind, j = self._resolve(h[:-1])
        key = ("log_z_without", j)
        if kind != "coef" or self._model.prec[j] == 0 or key in self._mixtures:
            return
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1)
        self._mixtures[key] = pool.submit(self._null_log_z, j)
        pool.shutdown(wait=False)

    def subset(self, keep) -> "ExactPosterior":
        """The posterior of the same model and priors given only the studies in ``keep`` (a mask
        over the k studies, or their indices), solved on its own quadrature grid."""
        keep = np.asarray(keep)
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep.astype(int)
        md = self._model
        tail_power = None
        if self._tau_improper:  # a flat tau prior: proper iff k_S - p_flat >= 2 (see exact_posterior)
            tail_power = idx.size - int(np.sum(md.prec == 0))
            if tail_power < 2:
                raise SpecError(f"tau = flat() gives an improper posterior for these {idx.size} effects",
                                key="priors.tau")
        if idx.size == 0:
            raise DataError("no effect sizes given", column="yi")
        m = np.where(md.prec == 0, 0.0, md.m)
        model = _NormalModel(md.y[idx], md.v[idx], md.X[idx], m, md.s)
        scale = max(float(np.std(md.y[idx])), math.sqrt(float(np.median(md.v[idx]))))
        return ExactPosterior(model, self.coef_names, [self.study[i] for i in idx], self._newx, self._logprior,
                              scale, self.level, self._intercept_only, self._log_tau2_prior, tail_power)

    def quadrature_rule(self) -> dict:
        """The quadrature behind this posterior, for computing related posteriors (the same model on a
        subset of the studies) on the same nodes without a new grid.

        Returns a dict: ``x`` (the Chebyshev nodes on the integration axis, ascending), ``tau``
        (tau at them), ``log_prior`` (the log prior density on the x axis there, Jacobian
        included), ``weights`` (Fejér's first-rule weights on [lo, hi]), ``to_coef`` (values to
        Chebyshev coefficients), ``lo``, ``hi``, ``tau_edges`` and ``log_prior_edges`` (at lo and
        hi), ``tau_of_x`` (the axis map), ``log_tau2_prior`` (the frozen distribution of
        log tau^2 of a log_t / log_normal prior, whose mass below ``lo`` is a node at tau = 0;
        else None), ``improper_tau`` (a flat tau prior), ``beta_mean``, ``beta_prec`` (prior
        precisions; 0 for flat), ``study`` and ``yi``, ``vi``, ``X``.
        """
        md = self._model
        n = self.tau_grid.size - (1 if self._log_axis else 0)
        s, to_coef, fejer = _fejer(n)
        x = 0.5 * (self._lo + self._hi) + 0.5 * (self._hi - self._lo) * s
        edges = np.array([self._lo, self._hi])

        def log_prior_x(xs):
            tau = self._tau_of_x(xs)
            if self._log_axis:
                return np.asarray(self._log_tau2_prior.logpdf(xs), dtype=float)
            return np.asarray(self._logprior(tau), dtype=float) + np.log(self._c * np.cosh(xs))

        return {"x": x, "tau": self._tau_of_x(x), "log_prior": log_prior_x(x),
                "weights": 0.5 * (self._hi - self._lo) * fejer, "to_coef": to_coef, "lo": self._lo,
                "hi": self._hi, "tau_edges": self._tau_of_x(edges), "log_prior_edges": log_prior_x(edges),
                "tau_of_x": self._tau_of_x, "log_tau2_prior": self._log_tau2_prior,
                "improper_tau": self._tau_improper, "beta_mean": md.m.copy(), "beta_prec": md.prec.copy(),
                "study": self.study, "yi": md.y.copy(), "vi": md.v.copy(), "X": md.X.copy()}

    def summary(self, theta: bool = True, pred: bool = True) -> pd.DataFrame:
        """Posterior mean, sd, central ``level`` interval and median of each parameter.

        Rows: ``mu`` / ``beta[NAME]``, ``tau``, ``tau2``, then (optionally) ``theta[STUDY]`` and
        ``pred``. Columns ``mean, sd, q<lower>, q50, q<upper>`` (``q2.5, q50, q97.5`` at 0.95).
        """
        names, cols, values = self.summary_values(theta=theta, pred=pred)
        return pd.DataFrame(values, index=pd.Index(names, name="parameter"), columns=cols)

    def summary_values(self, theta: bool = True, pred: bool = True,
                       theta_events=()) -> tuple[list, list, np.ndarray]:
        """:meth:`summary` without pandas: ``(row names, column names, values)``. ``theta_events``:
        ``(op, value)`` events whose :meth:`theta_probs` are computed in the same pass over the studies
        (and kept for that call)."""
        a = 0.5 * (1.0 - self.level)
        probs = (a, 0.5, 1.0 - a)
        cols = ["mean", "sd"] + [f"q{100 * p:g}" for p in probs]
        head = list(self._par) + ["tau", "tau2"]
        blocks = [np.array([list(self._moments(n)) + list(self.quantile(n, probs)) for n in head])]
        names = list(head)
        if theta:
            rows_out = np.empty((len(self.study), 2 + len(probs)))
            events = self._events(theta_events)
            events_out = [np.empty(len(self.study)) for _ in events]
            if self._theta_cached():
                for rows, w, m, s in self._theta_blocks():
                    mean = w @ m
                    rows_out[rows, 0] = mean
                    rows_out[rows, 1] = np.sqrt(w @ (np.square(s) + np.square(m - mean)))
                    self._event_probs(events, events_out, rows, w, m, s)
                    rows_out[rows, 2:] = np.column_stack([self._quantiles_all(m, s, p, w) for p in probs])
            else:
                self._theta_summary_large(probs, events, rows_out, events_out)
            if events:
                self._mixtures[("theta_probs", tuple(events))] = [np.clip(p, 0.0, 1.0) for p in events_out]
            blocks.append(rows_out)
            names += [f"theta[{st}]" for st in self.study]
        if pred:
            blocks.append(np.array([list(self._moments("pred")) + list(self.quantile("pred", probs))]))
            names.append("pred")
        return names, cols, np.vstack(blocks)

    def _theta_summary_large(self, probs, events, rows_out, events_out) -> None:
        """:meth:`summary_values`' study effects beyond the cached size: the rows of ``rows_out`` (mean,
        sd, the quantiles ``probs``) and ``events_out`` (the events' probabilities, unclipped).

        Block by block (:meth:`_theta_blocks`' blocks and pruned grid), every elementwise pass over
        (grid x block) in cache-sized pieces of the block, ``THETA_THREADS`` at a time in threads: the
        conditional moments of each study, the normal cdf of the events, the terms of the variance and
        the quantiles. Every product over the grid (``w @ ...``) is still taken over the whole block, so
        the numbers are those of computing each block whole. Each quantile starts from the same
        quantile of a ``START_NODES``-point Gauss rule for tau's posterior, so one Newton pass over the
        whole mixture is enough (:meth:`_gauss_mixture`)."""
        tau_r, w_r, b_r, Ainv_r = self._gauss_mixture(START_NODES)
        w, tau, b, Ainv, size = self._theta_pruned()
        k, G = len(self.study), w.size
        step = max(64, BLOCK_ELEMENTS // G)
        for start in range(0, k, size):
            rows = slice(start, min(k, start + size))
            n = rows.stop - rows.start
            m, s, t = np.empty((G, n)), np.empty((G, n)), np.empty((G, n))
            cdfs = [np.empty((G, n)) for _ in events]

            def moments(cols, start=start, m=m, s=s, cdfs=cdfs):
                mc, sc = self._normal_moments("theta", slice(start + cols.start, start + cols.stop), tau, b, Ainv)
                m[:, cols], s[:, cols] = mc, sc
                for (op, value), cdf in zip(events, cdfs):
                    z = (value - mc) / sc
                    cdf[:, cols] = ndtr(-z if op.startswith(">") else z)

            self._pieces(moments, n, step)
            mean = w @ m
            for cdf, target in zip(cdfs, events_out):
                target[rows] = w @ cdf
            del cdfs

            def spread(cols, m=m, s=s, t=t, mean=mean):
                t[:, cols] = np.square(s[:, cols]) + np.square(m[:, cols] - mean[cols])

            self._pieces(spread, n, step)
            sd = np.sqrt(w @ t)
            del t
            rows_out[rows, 0], rows_out[rows, 1] = mean, sd

            def quantiles(cols, start=start, m=m, s=s, mean=mean, sd=sd):
                part = slice(start + cols.start, start + cols.stop)
                m_r, s_r = self._normal_moments("theta", part, tau_r, b_r, Ainv_r)
                mc, sc = m[:, cols], s[:, cols]
                rows_out[part, 2:] = np.column_stack([
                    self._quantiles_all(mc, sc, p, w, start=self._quantiles_all(m_r, s_r, p, w_r),
                                        moments=(mean[cols], sd[cols])) for p in probs])

            self._pieces(quantiles, n, step)

    def draws(self, n: int, rng=None) -> dict:
        """``n`` exact iid posterior draws: tau by inverting its cdf, then ``beta | tau, y``, then
        ``theta_i | beta, tau, y``, and ``pred`` = a new study's effect at ``newx``.

        Returns a dict of arrays: ``tau``, ``tau2`` (n,), ``beta`` (n, p), ``mu`` (n,) for the
        intercept-only model, ``theta`` (n, k) in study order, ``pred`` (n,).
        """
        rng = np.random.default_rng(rng)
        u = rng.random(int(n))
        lo, hi = np.full(u.shape, self._lo), np.full(u.shape, self._hi)
        for _ in range(60):  # vectorised bisection on the cdf of the axis variable x
            mid = 0.5 * (lo + hi)
            below = self._cdf_x(mid) < u
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        x = 0.5 * (lo + hi)
        tail = u < self._p0  # below the grid (log-tau2 priors): invert the prior's cdf there
        if tail.any():
            x[tail] = self._tail_quantile(u[tail])
        tau = self._tau_of_x(x)
        _, b, Ainv = self._model.conditional(tau)
        L = np.linalg.cholesky(Ainv)
        beta = b + np.einsum("npq,nq->np", L, rng.standard_normal(b.shape))
        X, v, y = self._model.X, self._model.v, self._model.y
        t2 = np.square(tau)[:, None]
        B = t2 / (v + t2)
        theta = B * y + (1.0 - B) * (beta @ X.T) + np.sqrt(B * v) * rng.standard_normal((tau.size, y.size))
        out = {"tau": tau, "tau2": np.square(tau), "beta": beta, "theta": theta,
               "pred": beta @ self._newx + tau * rng.standard_normal(tau.size)}
        if self._intercept_only:
            out["mu"] = beta[:, 0]
        return out

    @property
    def yi(self) -> np.ndarray:
        """The observed effects the posterior was computed from."""
        return self._model.y.copy()

    @property
    def vi(self) -> np.ndarray:
        """Their sampling variances."""
        return self._model.v.copy()

    def __repr__(self):
        return (f"ExactPosterior(k={len(self.study)}, coefs={list(self._par)}, "
                f"nodes={self.tau_grid.size}, log_ml={self.log_marginal_likelihood:.6g})")


def _bisect(f, lo: float, hi: float, *, xtol: float, rtol: float) -> float:
    """The root of an increasing ``f`` on ``[lo, hi]`` to ``xtol + rtol |x|``, by bisection.

    Hand-written instead of ``scipy.optimize.brentq``: importing scipy.optimize (it pulls in
    scipy.linalg and scipy.spatial) costs more than a whole exact fit, and the functions here are
    monotone cdfs that cost microseconds, so bisection's ~50 halvings are cheaper than the import.
    """
    lo, hi = float(lo), float(hi)
    flo = f(lo)
    if flo == 0:
        return lo
    for _ in range(2000):
        mid = 0.5 * (lo + hi)
        if hi - lo <= xtol + rtol * abs(mid) or mid in (lo, hi):
            return mid
        fm = f(mid)
        if fm == 0:
            return mid
        if (fm < 0) == (flo < 0):
            lo, flo = mid, fm
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _vector(value, p, key):
    arr = np.asarray(value, dtype=float)
    arr = np.full(p, float(arr)) if arr.ndim == 0 else arr
    if arr.shape != (p,):
        raise SpecError(f"needs one value or {p} values (one per coefficient), got {np.shape(value)}",
                        key=key)
    return np.array(arr)


def _design(X, k, coef_names):
    if X is None:
        return np.ones((k, 1)), ["intercept"]
    frame = "pandas" in sys.modules and isinstance(X, sys.modules["pandas"].DataFrame)
    names = [str(c) for c in X.columns] if frame else None
    try:
        X = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"the design matrix must be numeric ({exc})", key="X") from None
    X = X[:, None] if X.ndim == 1 else X
    if X.ndim != 2 or X.shape[0] != k or X.shape[1] == 0:
        raise SpecError(f"the design matrix must have {k} rows and at least one column, got shape {X.shape}",
                        key="X")
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        i, j = bad[0]
        raise DataError("the moderator value is missing or not finite", row=int(i) + 1,
                        column=(names[j] if names else f"X[:, {j}]"))
    names = list(coef_names) if coef_names is not None else names
    if names is None:
        names = ["intercept" if np.all(X[:, j] == 1) else f"x{j}" for j in range(X.shape[1])]
    if len(names) != X.shape[1] or len(set(names)) != len(names):
        raise SpecError(f"needs {X.shape[1]} distinct coefficient names, got {names}", key="coef_names")
    return X, [str(n) for n in names]


def exact_posterior(yi, vi=None, X=None, *, coef_names=None, study=None, beta_mean=0.0, beta_sd=1.0,
                    beta_prior=None, tau_prior=None, newx=None, level=0.95) -> ExactPosterior:
    """Exact posterior of the normal-normal random-effects meta-(regression) model.

    ``y_i ~ N(x_i' beta + u_i, v_i)``, ``u_i ~ N(0, tau^2)``, ``beta_j ~ N(m_j, s_j^2)``,
    ``tau ~ p(tau)``; solved by quadrature over tau (Röver 2020), no sampling.

    Parameters
    ----------
    yi : array_like or EffectData
        Observed effects, or an object with ``.yi``, ``.vi`` (and ``.study``), e.g.
        :class:`bayes_se.data.EffectData`.
    vi : array_like
        Known sampling variances (> 0). Omit when ``yi`` is an EffectData.
    X : array_like or pandas.DataFrame, optional
        The full k x p design matrix (include the column of ones yourself); default intercept only.
    coef_names : sequence of str, optional
        Coefficient names (default: the DataFrame's columns, ``intercept`` for a column of ones,
        else ``x0, x1, ...``). Summaries name them ``beta[NAME]``, or ``mu`` for the intercept-only
        model.
    study : sequence, optional
        Study labels (default the EffectData's, else 1..k); repeats get ' #1', ' #2', ...
    beta_mean, beta_sd : float or sequence
        Means and sds of the independent normal priors on beta (default N(0, 1));
        ``beta_sd=numpy.inf`` is a flat prior, which leaves the marginal likelihood undefined (NaN).
    beta_prior : object or sequence, optional
        Normal prior object(s) with ``.params["mu"]`` and ``.params["sigma"]``; overrides
        ``beta_mean``/``beta_sd``.
    tau_prior : object or callable, optional
        Prior on tau: an object with ``tau_logpdf(tau)`` or a callable returning the log density
        of tau (vectorised, tau >= 0). Default half-N(0, 0.5). A :class:`bayes_se.priors.Prior` of
        family ``log_t`` or ``log_normal`` (on log tau2; e.g. the Rhodes et al. 2015 presets) is
        integrated on the log tau2 axis, its pole or spike at 0 handled analytically (module notes);
        any other prior must have a finite density at tau = 0.
    newx : sequence, optional
        Covariates of the new study whose effect ``pred`` predicts; default 1 for columns of ones
        and 0 otherwise (the reference level).
    level : float
        Credible level of the summary intervals.

    Returns
    -------
    ExactPosterior

    References
    ----------
    Röver C (2020). Bayesian random-effects meta-analysis using the bayesmeta R package. Journal
    of Statistical Software 93(6). doi:10.18637/jss.v093.i06
    """
    if vi is None and hasattr(yi, "yi") and hasattr(yi, "vi"):
        data = yi
        yi, vi = data.yi, data.vi
        study = getattr(data, "study", None) if study is None else study
    if vi is None:
        raise SpecError("sampling variances are missing", key="vi")
    from bayes_se.data import check_arrays, unique_labels

    y, v = check_arrays(yi, vi)
    k = y.size
    if k == 0:
        raise DataError("no effect sizes given", column="yi")
    labels = unique_labels(range(1, k + 1) if study is None else study)
    if len(labels) != k:
        raise DataError(f"{len(labels)} study labels for {k} effects", column="study")
    X, names = _design(X, k, coef_names)
    p = X.shape[1]
    if beta_prior is not None:
        priors = [beta_prior] * p if hasattr(beta_prior, "params") else list(beta_prior)
        try:  # flat(): mean 0 (unused), sd inf (prior precision 0)
            flat_prior = [getattr(pr, "family", None) == "flat" for pr in priors]
            beta_mean = [0.0 if f else float(pr.params["mu"]) for f, pr in zip(flat_prior, priors)]
            beta_sd = [math.inf if f else float(pr.params["sigma"]) for f, pr in zip(flat_prior, priors)]
        except (AttributeError, KeyError, TypeError):
            raise SpecError("each beta prior must be normal (params 'mu' and 'sigma') or flat()",
                            key="beta_prior") from None
    m = _vector(beta_mean, p, "beta_mean")
    s = _vector(beta_sd, p, "beta_sd")
    if not np.all(np.isfinite(m)):
        raise SpecError("prior means must be finite", key="beta_mean")
    if not np.all(s > 0):  # also rejects NaN
        raise SpecError("prior sds must be > 0 (numpy.inf for a flat prior)", key="beta_sd")
    flat = ~np.isfinite(s)
    if flat.any() and np.linalg.matrix_rank(X[:, flat]) < int(flat.sum()):
        raise SpecError("coefficients with flat priors are not identified by the design", key="beta_sd")
    if not 0.0 < float(level) < 1.0:
        raise SpecError(f"level must lie strictly between 0 and 1, got {level}", key="level")
    if tau_prior is None:  # the default preset's tau prior (bayes_se.defaults.PRIORS)
        from bayes_se.priors import preset

        tau_prior = preset("default")["tau"]
    if callable(getattr(tau_prior, "tau_logpdf", None)):
        logprior = tau_prior.tau_logpdf
    elif callable(tau_prior):
        logprior = tau_prior
    else:
        raise SpecError("must be a prior with tau_logpdf() or a callable log density", key="tau_prior")
    log_tau2_prior = _log_tau2_distribution(tau_prior)
    tail_power = None
    if getattr(tau_prior, "family", None) == "flat":
        # p(y | tau) ~ tau^-(k - p_flat) as tau -> inf (each flat coefficient integrated out gives
        # back one power): the posterior under a flat tau prior is proper iff k - p_flat >= 2
        tail_power = k - int(flat.sum())
        if tail_power < 2:
            raise SpecError(f"tau = flat() gives an improper posterior for these data: p(y | tau) falls only "
                            f"like tau^-{tail_power} as tau grows (k = {k} effects, {int(flat.sum())} "
                            f"coefficient(s) with flat priors), which does not integrate; it needs at least "
                            f"{int(flat.sum()) + 2} effects, or use a proper tau prior", key="priors.tau")
    if log_tau2_prior is None and np.any(np.asarray(logprior(np.zeros(1)), dtype=float) == np.inf):
        # a pole of unknown shape cannot be integrated analytically; log_t / log_normal priors can
        raise SpecError("the tau prior density is infinite at tau = 0; the exact engine handles a pole "
                        "only for a log_t or log_normal prior on tau2 (bayes_se.priors)", key="tau_prior")
    ones = np.all(X == 1.0, axis=0)
    x0 = _vector(np.where(ones, 1.0, 0.0) if newx is None else newx, p, "newx")
    intercept_only = p == 1 and bool(ones[0])
    scale = max(float(np.std(y)), math.sqrt(median(v)))
    model = _NormalModel(y, v, X, m, s)
    return ExactPosterior(model, names, labels, x0, logprior, scale, float(level), intercept_only,
                          log_tau2_prior, tail_power)


def _log_tau2_distribution(prior):
    """The frozen SciPy distribution of ``log tau^2`` of a ``log_t`` / ``log_normal`` prior, else None."""
    family = getattr(prior, "family", None)
    if family not in LOG_TAU2_FAMILIES:
        return None
    from scipy import stats  # deferred: only these two prior families need it (~0.5 s to import)

    try:
        p = {key: float(value) for key, value in prior.params.items()}
        dist = (stats.t(p["nu"], p["mu"], p["sigma"]) if family == "log_t"
                else stats.norm(p["mu"], p["sigma"]))
    except (AttributeError, KeyError, TypeError, ValueError):
        raise SpecError(f"a {family} prior needs numeric parameters "
                        f"{'nu, mu, sigma' if family == 'log_t' else 'mu, sigma'}", key="tau_prior") from None
    if not (p["sigma"] > 0 and np.isfinite(list(p.values())).all() and p.get("nu", 1.0) > 0):
        raise SpecError(f"invalid {family} prior parameters {p}", key="tau_prior")
    return dist
