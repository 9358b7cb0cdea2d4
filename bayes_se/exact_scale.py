"""Exact posterior of a location-scale model with one binary scale moderator, by 2-D quadrature.

Model::

    y_i ~ N(x_i' beta, v_i + tau_{d_i}^2),   log tau_i = alpha_0 + alpha_1 d_i  (d_i in {0, 1}),
    beta_j ~ N(m_j, s_j^2),   alpha_0 ~ N(a_0, b_0^2),   alpha_1 ~ N(a_1, b_1^2).

Given ``(tau_0, tau_1)`` the model is conjugate in ``beta`` (the normal study effects are already
integrated out), so ``p(y | tau_0, tau_1)`` and ``beta | tau, y ~ N(b, A^-1)`` are closed forms
(:class:`HeteroscedasticNormalModel`: the maths of :mod:`bayes_se.exact`'s one-tau model, with a
variance per study). What is left is a 2-D integral over ``u_0 = log tau_0 = alpha_0`` and
``u_1 = log tau_1 = alpha_0 + alpha_1`` (unit Jacobian), computed by the trapezoidal rule on a
square lattice of spacing ``h``: the integrand is smooth and decays like the normal prior (the
likelihood is bounded as tau -> 0), so the rule converges geometrically; the box covers the region
within ``TAIL_NATS`` of the maximum and ``h`` is halved until the log marginal likelihood and the
moments agree to ``RTOL``. Because both axes share ``h`` and the lattice is anchored at multiples
of ``h``, ``alpha_1 = u_1 - u_0`` lives on the same lattice, so the marginal densities of
``alpha_0`` (sums over ``u_1``), ``tau_1`` (sums over ``u_0``) and ``alpha_1`` (sums along
diagonals) are lattice values; their cdfs come from cubic splines through them. ``beta``'s
marginals are normal mixtures over the nodes. ``BF01`` of ``alpha_1 = 0`` (one tau for both
levels) is the Savage-Dickey ratio ``p(alpha_1 = 0 | y) / p(alpha_1 = 0)``.

References
----------
Viechtbauer, W., & Lopez-Lopez, J. A. (2022). Location-scale models for meta-analysis. *Research
Synthesis Methods*, 13(6), 697-715.
Trefethen, L. N., & Weideman, J. A. C. (2014). The exponentially convergent trapezoidal rule.
*SIAM Review*, 56(3), 385-458.
Dickey, J. M. (1971). The weighted likelihood ratio, linear hypotheses on normal location
parameters. *Annals of Mathematical Statistics*, 42(1), 204-223.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import interpolate, optimize, special, stats

from bayes_se import defaults
from bayes_se.errors import SpecError
from bayes_se.fits import Fit, interval_columns, sample_hdi

__all__ = ["HeteroscedasticNormalModel", "ExactScalePosterior", "exact_scale_posterior", "ExactScaleFit",
           "fit_exact_scale", "binary_scale_column"]

LOG_2PI = math.log(2 * math.pi)
TAIL_NATS = 46.0  # the box covers the lattice where log density > max - 46 (e^-46 ~ 1e-20)
PRIOR_SDS = 9.5  # the first scan spans the prior's +-9.5 sd (log density 45 below its peak)
SCAN_POINTS = 61
START_POINTS = 48  # nodes across the wider side of the box at the first pass; doubled to converge
MAX_POINTS = 1600
RTOL = 1e-10
CHUNK = 4096


class HeteroscedasticNormalModel:
    """``y ~ N(X beta, diag(v + t))``, ``beta ~ N(m, diag(s^2))``: the conjugate step given the
    per-study heterogeneity variances ``t`` (the Woodbury form of :mod:`bayes_se.exact`).

    ``log p(y | t) = -1/2 [k log 2 pi + log|D| + log|S| + log|A| + r'D^-1 r - c'A^-1 c]`` with
    ``D = diag(v + t)``, ``A = X'D^-1 X + S^-1``, ``r = y - X m``, ``c = X'D^-1 r``; and
    ``beta | t, y ~ N(m + A^-1 c, A^-1)``.
    """

    def __init__(self, y, v, X, m, s):
        self.y, self.v, self.X = (np.asarray(a, float) for a in (y, v, X))
        self.m, self.s = np.asarray(m, float), np.asarray(s, float)
        if np.any(~np.isfinite(self.s)) or np.any(self.s <= 0):
            raise SpecError("the exact location-scale engine needs proper normal priors on the coefficients",
                            key="priors.beta")
        k, p = self.X.shape
        self.r = self.y - self.X @ self.m
        self.prec = 1.0 / self.s**2
        self.const = -0.5 * (k * LOG_2PI + float(np.sum(2.0 * np.log(self.s))))
        self._XX = (self.X[:, :, None] * self.X[:, None, :]).reshape(k, p * p)
        self._Xr = self.X * self.r[:, None]
        self._rr = self.r**2

    def conditional(self, t):
        """For variances ``t`` of shape (G, k): ``log p(y | t)`` (G,), ``b`` (G, p), ``A^-1`` (G, p, p)."""
        p = self.X.shape[1]
        d = self.v + t
        w = 1.0 / d
        A = (w @ self._XX).reshape(-1, p, p) + np.diag(self.prec)
        rhs = w @ self._Xr
        Ainv = np.linalg.inv(A)
        u = np.einsum("gpq,gq->gp", Ainv, rhs)
        quad = w @ self._rr - np.sum(rhs * u, axis=1)
        loglik = self.const - 0.5 * (np.sum(np.log(d), axis=1) + np.linalg.slogdet(A)[1] + quad)
        return loglik, self.m + u, Ainv


def binary_scale_column(Z, scale_names) -> tuple[np.ndarray, str]:
    """The 0/1 column ``d`` and its name when ``Z`` is ``[1, d]`` (an intercept and one binary
    moderator with both levels present); else a SpecError (the exact engine's condition)."""
    Z = np.asarray(Z, float)
    names = list(scale_names)
    if Z.ndim != 2 or Z.shape[1] != 2 or names[0] != "intercept" or not np.all(Z[:, 0] == 1.0):
        raise SpecError("the exact engine solves a location-scale model whose scale part is one binary "
                        f"moderator (scale = \"NAME\" with a 0/1 or two-level column); this scale design has "
                        f"{', '.join(names)}: use engine = \"mcmc\"", key="sampler.engine")
    d = Z[:, 1]
    if not np.all((d == 0.0) | (d == 1.0)) or d.min() == d.max():
        raise SpecError(f"the exact engine needs the scale moderator '{names[1]}' to be 0/1 with both levels "
                        "present; use engine = \"mcmc\"", key="sampler.engine")
    return d.astype(int), names[1]


class ExactScalePosterior:
    """The posterior of :func:`exact_scale_posterior` on its quadrature lattice.

    Attributes
    ----------
    log_marginal_likelihood : float
    u0, u1 : ndarray
        Lattice axes (``log tau_0``, ``log tau_1``); ``h`` their common spacing.
    weights : ndarray (n0, n1)
        Posterior probabilities of the nodes (trapezoid weights included; sum 1).
    b, Ainv : ndarray
        ``beta | tau, y`` per node: means (n0 * n1, p) and covariances (n0 * n1, p, p).
    coef_names, scale_name, study : names
    """

    def __init__(self, u0, u1, h, logpost, b, Ainv, coef_names, scale_name, study, alpha_prior, log_z,
                 data=None, logpost_function=None):
        self.u0, self.u1, self.h = u0, u1, h
        lw = logpost - logpost.max()
        self.log_density = lw  # log posterior on the lattice, 0 at its maximum (n0, n1)
        #: (y, v, X, d): the data, for the study effects; and the log posterior as a function of
        #: (u0, u1) (same additive constant as the lattice's before normalising), for error checks
        self.y, self.v, self.X, self.d = data if data is not None else (None, None, None, None)
        self._logpost_function = logpost_function
        self._log_max = float(logpost.max())
        w = np.exp(lw)
        self.weights = w / w.sum()
        self.b, self.Ainv = b, Ainv
        self.coef_names, self.scale_name, self.study = list(coef_names), scale_name, list(study)
        self.alpha_prior = alpha_prior  # ((mean0, sd0), (mean1, sd1))
        self.log_marginal_likelihood = float(log_z)
        self._marginals = {}

    # -- lattice marginals -------------------------------------------------------------------
    def names(self) -> list[str]:
        """Parameter names: ``mu`` or ``beta[NAME]``, ``alpha[intercept]``, ``alpha[NAME]``,
        ``tau[NAME=0]``, ``tau[NAME=1]``."""
        loc = ["mu"] if self.coef_names == ["intercept"] else [f"beta[{c}]" for c in self.coef_names]
        s = self.scale_name
        return loc + ["alpha[intercept]", f"alpha[{s}]", f"tau[{s}=0]", f"tau[{s}=1]"]

    def _lattice(self, name):
        """(values, probabilities) of a scale parameter on its lattice (marginal)."""
        if name not in self._marginals:
            s = self.scale_name
            W = self.weights
            if name in ("alpha[intercept]", f"tau[{s}=0]"):
                x, p = self.u0, W.sum(axis=1)
            elif name == f"tau[{s}=1]":
                x, p = self.u1, W.sum(axis=0)
            elif name == f"alpha[{s}]":
                n0, n1 = W.shape
                off = int(round((self.u1[0] - self.u0[0]) / self.h))
                diag = np.arange(-(n0 - 1), n1)  # offsets j1 - j0
                p = np.array([np.trace(W, offset=int(o)) for o in diag])
                x = (diag + off) * self.h
            else:
                raise KeyError(name)
            self._marginals[name] = (x, p)
        return self._marginals[name]

    @staticmethod
    def _is_tau(name: str) -> bool:
        return name.startswith("tau[")

    def density_spline(self, name):
        """The marginal density of a scale parameter on its log scale (``alpha[...]``, ``log tau``): the
        cubic spline through the lattice values, zero outside the lattice (its antiderivative is the cdf)."""
        x, p = self._lattice(name)
        dens = np.concatenate([[0.0], p / self.h, [0.0]])
        xs = np.concatenate([[x[0] - self.h], x, [x[-1] + self.h]])
        spline = interpolate.CubicSpline(xs, dens, extrapolate=False)
        return lambda t: np.nan_to_num(spline(t), nan=0.0)

    def _scale_cdf(self, name):
        key = ("cdf", name)
        if key not in self._marginals:
            x, p = self._lattice(name)
            dens = np.concatenate([[0.0], p / self.h, [0.0]])
            xs = np.concatenate([[x[0] - self.h], x, [x[-1] + self.h]])
            spline = interpolate.CubicSpline(xs, dens)
            self._marginals[key] = (spline.antiderivative(), xs)
        return self._marginals[key]

    def _loc_index(self, name):
        loc = ["mu"] if self.coef_names == ["intercept"] else [f"beta[{c}]" for c in self.coef_names]
        return loc.index(name)

    def mean(self, name: str) -> float:
        if name in self.names()[:len(self.coef_names)]:
            j = self._loc_index(name)
            return float(self.weights.ravel() @ self.b[:, j])
        x, p = self._lattice(name)
        x = np.exp(x) if self._is_tau(name) else x
        return float(p @ x)

    def sd(self, name: str) -> float:
        w = self.weights.ravel()
        if name in self.names()[:len(self.coef_names)]:
            j = self._loc_index(name)
            m = w @ self.b[:, j]
            return float(math.sqrt(max(w @ (self.Ainv[:, j, j] + self.b[:, j] ** 2) - m**2, 0.0)))
        x, p = self._lattice(name)
        x = np.exp(x) if self._is_tau(name) else x
        m = p @ x
        return float(math.sqrt(max(p @ (x - m) ** 2, 0.0)))

    def _mixture(self, j):
        """(weights, means, sds) of beta_j's normal mixture over the nodes that carry mass (a node
        below 1e-18 of the total is dropped: at most ~1e-13 of the mass in all)."""
        key = ("mixture", j)
        if key not in self._marginals:
            w = self.weights.ravel()
            keep = w > 1e-18
            self._marginals[key] = (w[keep], self.b[keep, j], np.sqrt(self.Ainv[keep, j, j]))
        return self._marginals[key]

    def cdf(self, name: str, x):
        """``P(name <= x)``: a float for a scalar ``x``, an array for an array."""
        scalar = np.ndim(x) == 0
        x = np.atleast_1d(np.asarray(x, float))
        if name in self.names()[:len(self.coef_names)]:
            w, m, sd = self._mixture(self._loc_index(name))
            out = w @ special.ndtr((x[None, :] - m[:, None]) / sd[:, None])
        else:
            if self._is_tau(name):
                with np.errstate(divide="ignore"):
                    x = np.where(x > 0, np.log(np.maximum(x, 1e-300)), -np.inf)
            F, xs = self._scale_cdf(name)
            out = np.clip(F(np.clip(x, xs[0], xs[-1])), 0.0, 1.0)
        return float(out[0]) if scalar else out

    def quantile(self, name: str, q: float) -> float:
        if name in self.names()[:len(self.coef_names)]:
            m, s = self.mean(name), self.sd(name)
            lo, hi = m - 12 * s, m + 12 * s  # a normal mixture: its quantiles lie within a few sds
            return float(optimize.brentq(lambda t: self.cdf(name, t) - q, lo, hi, xtol=1e-14, rtol=1e-14))
        F, xs = self._scale_cdf(name)
        t = optimize.brentq(lambda t: float(F(t)) - q, xs[0], xs[-1], xtol=1e-14, rtol=1e-14)
        return float(math.exp(t) if self._is_tau(name) else t)

    def bayes_factor_equal_tau(self) -> float:
        """BF01 of ``alpha_1 = 0`` (``tau_0 = tau_1``) by the Savage-Dickey density ratio."""
        x, p = self._lattice(f"alpha[{self.scale_name}]")
        i = int(np.argmin(np.abs(x)))
        post = p[i] / self.h if abs(x[i]) < 1e-9 * self.h else 0.0
        m1, s1 = self.alpha_prior[1]
        return float(post / stats.norm.pdf(0.0, m1, s1))

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        rows = {n: (self.mean(n), self.sd(n), self.quantile(n, lo), self.quantile(n, 0.5), self.quantile(n, hi))
                for n in self.names()}
        return pd.DataFrame.from_dict(rows, orient="index", columns=["mean", "sd", "lower", "median", "upper"])

    # -- study effects and a new study's effect: normal mixtures over the nodes -------------------
    def effect_names(self) -> list[str]:
        """``pred`` (a new study at the reference rows: location ``x0`` = 1 for the intercept, 0
        otherwise; scale level ``NAME = 0``) and ``theta[STUDY]``."""
        return ["pred"] + [f"theta[{s}]" for s in self.study]

    def _nodes(self):
        """Nodes carrying mass: weights, tau_0^2, tau_1^2, b, A^-1 (the lightest nodes holding 1e-14
        of the mass in all are left out)."""
        if "nodes" not in self._marginals:
            w = self.weights.ravel()
            order = np.argsort(w)
            light = order[np.cumsum(w[order]) <= 1e-14]
            keep = np.ones(w.size, bool)
            keep[light] = False
            U0, U1 = np.meshgrid(self.u0, self.u1, indexing="ij")
            self._marginals["nodes"] = (w[keep], np.exp(2 * U0.ravel()[keep]), np.exp(2 * U1.ravel()[keep]),
                                        self.b[keep], self.Ainv[keep])
        return self._marginals["nodes"]

    @property
    def newx(self) -> np.ndarray:
        """The reference location row: 1 for a column of ones (the intercept), 0 otherwise."""
        return np.all(self.X == 1.0, axis=0).astype(float)

    def effect_components(self, idx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Node weights (G,) and the conditional means and sds (G, m) of the effects ``idx`` (a list
        of study positions, ``-1`` for ``pred``) given each node: ``theta_i | tau, y ~ N(s_i y_i +
        (1 - s_i) x_i' b, s_i v_i + (1 - s_i)^2 x_i' A^-1 x_i)`` with ``s_i = tau_i^2 / (v_i + tau_i^2)``
        (Gelman et al. 2013, sec. 5.4), and ``pred | tau, y ~ N(x0' b, x0' A^-1 x0 + tau_0^2)``."""
        if self.y is None:
            raise SpecError("this posterior was made without its data: no study effects", key="data")
        w, t0, t1, b, Ai = self._nodes()
        idx = np.asarray(idx, int)
        rows = np.where(idx[:, None] < 0, self.newx[None, :], self.X[np.maximum(idx, 0)])  # (m, p)
        xb = b @ rows.T  # (G, m)
        xAx = np.einsum("mp,gpq,mq->gm", rows, Ai, rows)
        study = idx >= 0
        j = np.maximum(idx, 0)
        t = np.where(self.d[j][None, :] == 1, t1[:, None], t0[:, None])
        s = t / (self.v[j][None, :] + t)
        mean = np.where(study, s * self.y[j] + (1 - s) * xb, xb)
        var = np.where(study, s * self.v[j] + (1 - s) ** 2 * xAx, xAx + t0[:, None])
        return w, mean, np.sqrt(var)

    def _effect_index(self, name: str) -> int:
        return -1 if name == "pred" else self.study.index(name[6:-1])

    def effect_table(self, level: float = 0.95) -> pd.DataFrame:
        """Exact ``mean, sd, lower, median, upper`` of ``pred`` and every ``theta[STUDY]`` (central
        intervals: the mixtures' quantiles by vectorised bisection to 1e-12 of their sds)."""
        names = self.effect_names()
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        out = np.empty((len(names), 5))
        G = self._nodes()[0].size
        step = max(1, 2_000_000 // max(G, 1))
        for a in range(0, len(names), step):
            idx = [self._effect_index(n) for n in names[a:a + step]]
            w, M, S = self.effect_components(idx)
            mean = w @ M
            sd = np.sqrt(np.maximum(w @ (S**2 + M**2) - mean**2, 0.0))
            qs = [_mixture_quantile(w, M, S, q, mean, sd) for q in (lo, 0.5, hi)]
            out[a:a + step] = np.column_stack([mean, sd, qs[0], qs[1], qs[2]])
        return pd.DataFrame(out, index=names, columns=["mean", "sd", "lower", "median", "upper"])

    def effect_cdf(self, name: str, x) -> np.ndarray:
        """``P(effect <= x)`` of ``pred`` or ``theta[STUDY]`` (x scalar or array)."""
        w, M, S = self.effect_components([self._effect_index(name)])
        x = np.atleast_1d(np.asarray(x, float))
        return w @ special.ndtr((x[None, :] - M) / S)

    # -- draws --------------------------------------------------------------------------------
    def _log_density_spline(self):
        if "spline" not in self._marginals:
            self._marginals["spline"] = interpolate.RectBivariateSpline(self.u0, self.u1, self.log_density,
                                                                        kx=3, ky=3)
        return self._marginals["spline"]

    def interpolation_error(self) -> float:
        """Largest error of the bicubic interpolant of the log posterior density (what :meth:`draws`
        inverts) at the centres of the lattice cells that carry mass (corner weight > 1e-12 of the
        largest), in nats: the draws' density is within a factor ``exp(+-error)`` of the exact one
        there. NaN when the posterior was made without its log-density function."""
        if self._logpost_function is None:
            return math.nan
        if "interp_error" not in self._marginals:
            W = self.weights
            heavy = W > 1e-12 * W.max()
            cells = heavy[:-1, :-1] | heavy[1:, :-1] | heavy[:-1, 1:] | heavy[1:, 1:]
            i0, i1 = np.nonzero(cells)
            c0, c1 = self.u0[i0] + self.h / 2, self.u1[i1] + self.h / 2
            exact = self._logpost_function(c0, c1)[0] - self._log_max
            approx = self._log_density_spline().ev(c0, c1)
            self._marginals["interp_error"] = float(np.max(np.abs(exact - approx))) if exact.size else 0.0
        return self._marginals["interp_error"]

    def draws(self, n: int, rng) -> dict:
        """``n`` iid draws by inversion, given which everything else is exact.

        ``u_0 = log tau_0`` by inverting the cdf of its marginal (the cubic spline that
        :meth:`quantile` inverts; vectorised bisection); ``u_1 | u_0`` by inverting the conditional
        cdf of the bicubic interpolant of the log posterior density on the quadrature lattice
        (evaluated on a grid of spacing ``h / 4``, the density linear between grid points, inverted
        in closed form); then ``beta | tau, y`` (normal), ``theta_i | beta, tau, y`` (normal) and
        ``pred = x0' beta + tau_0 z`` exactly. The only approximation is the interpolated density of
        ``(u_0, u_1)``: :meth:`interpolation_error` bounds its log error at the cell centres.

        Returns a dict: ``beta`` (n, p), ``alpha`` (n, 2), ``tau`` (n, 2), ``theta`` (n, k) (when the
        posterior has its data), ``pred`` (n,).
        """
        n = int(n)
        # u0: invert the marginal cdf
        F, xs = self._scale_cdf("alpha[intercept]")
        target = rng.random(n)
        lo, hi = np.full(n, xs[0]), np.full(n, xs[-1])
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = F(mid) < target
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        u0 = 0.5 * (lo + hi)
        # u1 | u0: the conditional of the interpolated log density, on a fine grid
        spline = self._log_density_spline()
        fine = np.linspace(self.u1[0], self.u1[-1], 4 * (len(self.u1) - 1) + 1)
        dx = fine[1] - fine[0]
        u1 = np.empty(n)
        order = np.argsort(u0)
        step = max(1, 4_000_000 // fine.size)
        for a in range(0, n, step):
            rows = order[a:a + step]
            L = spline(u0[rows], fine, grid=True)
            f = np.exp(L - L.max(axis=1, keepdims=True))
            C = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(0.5 * dx * (f[:, 1:] + f[:, :-1]), axis=1)],
                               axis=1)
            c = rng.random(len(rows)) * C[:, -1]
            j = np.clip(np.sum(C < c[:, None], axis=1) - 1, 0, fine.size - 2)
            r = np.arange(len(rows))
            f0, f1 = f[r, j], f[r, j + 1]
            need = (c - C[r, j]) / dx  # solve f0 t + (f1 - f0) t^2 / 2 = need, t in [0, 1]
            slope = f1 - f0
            disc = np.sqrt(np.maximum(f0**2 + 2 * slope * need, 0.0))
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.where(np.abs(slope) > 1e-12 * np.maximum(f0, 1e-300), (disc - f0) / slope,
                             need / np.maximum(f0, 1e-300))
            u1[rows] = fine[j] + dx * np.clip(t, 0.0, 1.0)
        # everything else given (u0, u1), exactly
        p = self.b.shape[1]
        beta = np.empty((n, p))
        t0, t1 = np.exp(2 * u0), np.exp(2 * u1)
        d1 = None if self.d is None else (self.d == 1)
        for a in range(0, n, CHUNK):
            sl = slice(a, a + CHUNK)
            if self._logpost_function is not None:
                _, b, Ai = self._logpost_function(u0[sl], u1[sl])
            else:  # nearest node (a posterior made without its function)
                i0 = np.clip(np.round((u0[sl] - self.u0[0]) / self.h).astype(int), 0, len(self.u0) - 1)
                i1 = np.clip(np.round((u1[sl] - self.u1[0]) / self.h).astype(int), 0, len(self.u1) - 1)
                g = i0 * len(self.u1) + i1
                b, Ai = self.b[g], self.Ainv[g]
            L = np.linalg.cholesky(Ai)
            beta[sl] = b + np.einsum("npq,nq->np", L, rng.standard_normal((b.shape[0], p)))
        out = {"beta": beta, "alpha": np.column_stack([u0, u1 - u0]), "tau": np.column_stack([np.exp(u0), np.exp(u1)])}
        if self.y is not None:
            t = np.where(d1[None, :], t1[:, None], t0[:, None])
            B = t / (self.v + t)
            out["theta"] = (B * self.y + (1.0 - B) * (beta @ self.X.T)
                            + np.sqrt(B * self.v) * rng.standard_normal((n, self.y.size)))
            out["pred"] = beta @ self.newx + np.exp(u0) * rng.standard_normal(n)
        return out


def _mixture_quantile(w, M, S, q, mean, sd):
    """Quantile ``q`` of each column's normal mixture (weights w (G,), means M and sds S (G, m)):
    Newton's method on the cdf from the normal approximation, safeguarded by a bisection bracket
    ``mean +- 12 sd``, until the cdf is within 1e-13 of ``q``."""
    lo, hi = mean - 12 * sd, mean + 12 * sd
    x = mean + sd * special.ndtri(q)
    for _ in range(100):
        z = (x[None, :] - M) / S
        F = w @ special.ndtr(z) - q
        f = w @ (np.exp(-0.5 * z**2) / (S * math.sqrt(2 * math.pi)))
        lo, hi = np.where(F < 0, x, lo), np.where(F < 0, hi, x)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = x - F / f
        hit = np.abs(F) < 1e-13  # converged columns stay where they are
        new = np.where(hit, x, np.where((step > lo) & (step < hi), step, 0.5 * (lo + hi)))
        done = np.all(hit | (np.abs(new - x) < 1e-12 * sd))
        x = new
        if done:
            break
    return x


def _axis(center_lo, center_hi, h):
    """Lattice points k h covering [lo, hi]."""
    a, b = math.floor(center_lo / h), math.ceil(center_hi / h)
    return np.arange(a, b + 1) * h


def exact_scale_posterior(yi, vi, d, *, X=None, coef_names=None, study=None, beta_mean=0.0, beta_sd=1.0,
                          alpha_mean=(-1.5, 0.0), alpha_sd=(1.0, 0.5), scale_name: str = "d") -> ExactScalePosterior:
    """Exact posterior of ``y_i ~ N(x_i' beta, v_i + exp(2 (alpha_0 + alpha_1 d_i)))`` by 2-D quadrature.

    Parameters
    ----------
    yi, vi : array_like
    d : array_like of {0, 1}
        The binary scale moderator.
    X : array_like, optional
        Location design with its intercept column (None: intercept only, coefficient ``mu``).
    beta_mean, beta_sd : float or array_like
        Normal priors of the location coefficients.
    alpha_mean, alpha_sd : pairs
        Normal priors of ``alpha_0`` (log tau at d = 0) and ``alpha_1`` (log tau_1 - log tau_0).

    Returns
    -------
    ExactScalePosterior
    """
    yi, vi = np.asarray(yi, float), np.asarray(vi, float)
    k = yi.size
    d = np.asarray(d, int)
    X = np.ones((k, 1)) if X is None else np.asarray(X, float)
    p = X.shape[1]
    names = ["intercept"] if coef_names is None and p == 1 else list(coef_names or [f"x{j}" for j in range(p)])
    study = [str(i + 1) for i in range(k)] if study is None else [str(s) for s in study]
    m = np.broadcast_to(np.asarray(beta_mean, float), (p,))
    s = np.broadcast_to(np.asarray(beta_sd, float), (p,))
    model = HeteroscedasticNormalModel(yi, vi, X, m, s)
    (am0, am1), (as0, as1) = alpha_mean, alpha_sd
    if as0 <= 0 or as1 <= 0:
        raise SpecError("the alpha priors' standard deviations must be > 0", key="priors.alpha")
    d1 = d == 1

    def logpost(U0, U1):
        """Log prior x likelihood at lattice points (flattened), chunked."""
        U0, U1 = U0.ravel(), U1.ravel()
        out = np.empty(U0.size)
        bs, As = np.empty((U0.size, p)), np.empty((U0.size, p, p))
        for a in range(0, U0.size, CHUNK):
            u0, u1 = U0[a:a + CHUNK], U1[a:a + CHUNK]
            t = np.where(d1[None, :], np.exp(2 * u1)[:, None], np.exp(2 * u0)[:, None])
            ll, b, Ai = model.conditional(t)
            lp = stats.norm.logpdf(u0, am0, as0) + stats.norm.logpdf(u1 - u0, am1, as1)
            out[a:a + CHUNK], bs[a:a + CHUNK], As[a:a + CHUNK] = ll + lp, b, Ai
        return out, bs, As

    # scan the prior's range, then zoom on where the posterior is within TAIL_NATS of its maximum
    lo0, hi0 = am0 - PRIOR_SDS * as0, am0 + PRIOR_SDS * as0
    s1 = math.hypot(as0, as1)
    lo1, hi1 = am0 + am1 - PRIOR_SDS * s1, am0 + am1 + PRIOR_SDS * s1
    for _ in range(8):
        g0, g1 = np.linspace(lo0, hi0, SCAN_POINTS), np.linspace(lo1, hi1, SCAN_POINTS)
        U0, U1 = np.meshgrid(g0, g1, indexing="ij")
        lp = logpost(U0, U1)[0].reshape(U0.shape)
        inside = lp > lp.max() - TAIL_NATS
        i0, i1 = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        step0, step1 = g0[1] - g0[0], g1[1] - g1[0]
        new = (g0[i0[0]] - step0, g0[i0[-1]] + step0, g1[i1[0]] - step1, g1[i1[-1]] + step1)
        shrink = (new[1] - new[0]) < 0.5 * (hi0 - lo0) or (new[3] - new[2]) < 0.5 * (hi1 - lo1)
        lo0, hi0, lo1, hi1 = new
        if not shrink:
            break
    width = max(hi0 - lo0, hi1 - lo1)
    n = START_POINTS
    previous = None
    while True:
        h = width / n
        u0, u1 = _axis(lo0, hi0, h), _axis(lo1, hi1, h)
        U0, U1 = np.meshgrid(u0, u1, indexing="ij")
        lp, b, Ai = logpost(U0, U1)
        lp = lp.reshape(U0.shape)
        log_z = special.logsumexp(lp) + 2 * math.log(h)
        post = ExactScalePosterior(u0, u1, h, lp, b, Ai, names, scale_name, study, ((am0, as0), (am1, as1)), log_z,
                                   data=(yi, vi, X, d), logpost_function=logpost)
        summary = np.array([log_z] + [post.mean(nm) for nm in post.names()] + [post.sd(nm) for nm in post.names()])
        if previous is not None and np.all(np.abs(summary - previous) <= RTOL * np.maximum(np.abs(summary), 1.0)):
            return post
        if n * 2 > MAX_POINTS:
            from bayes_se.errors import ConvergenceWarning
            import warnings

            warnings.warn("the 2-D quadrature did not reach its tolerance", ConvergenceWarning, stacklevel=2)
            return post
        previous = summary
        n *= 2


# ------------------------------------------------------------------------------------------------
class ExactScaleFit(Fit):
    """A location-scale model with one binary scale moderator solved by 2-D quadrature, behind the
    fit interface. Rows: ``mu`` or ``beta[NAME]``, ``alpha[intercept]``, ``alpha[NAME]`` (log tau
    scale), ``tau[NAME=0]``, ``tau[NAME=1]``, ``pred`` (a new study at the reference rows, scale
    level ``NAME = 0``), and with ``theta=True`` every ``theta[STUDY]``: all exact (lattice marginals
    and normal mixtures over the nodes). ``idata`` holds iid draws (:meth:`ExactScalePosterior.draws`:
    exact given ``(tau_0, tau_1)``, which come from the interpolated lattice density)."""

    engine = "exact_scale"

    def __init__(self, posterior, *, yi, vi, X, Z, priors, settings, data=None, spec=None):
        self.posterior = posterior
        self.yi, self.vi = np.asarray(yi, float), np.asarray(vi, float)
        self.X, self.Z = X, np.asarray(Z, float)
        self.priors, self.settings, self.data, self.spec = dict(priors), dict(settings), data, spec
        from bayes_se.exact_fit import exact_verdict

        self.diagnostics = exact_verdict()
        self._idata = None

    @property
    def idata(self):
        """Draws (``settings['seed']``) as an InferenceData: posterior ``beta`` or ``mu``, ``alpha``
        (dims ``scale_coef``), ``tau`` by scale level, ``theta`` (dims ``study``), ``pred``; prior
        draws of ``alpha`` and the location coefficients; the observed ``y`` and ``vi``, ``Z``, ``X``."""
        if self._idata is None:
            import arviz as az

            seed = int(self.settings.get("seed", defaults.SEED))
            rng = np.random.default_rng(seed)
            chains, n = defaults.EXACT_CHAINS, defaults.EXACT_DRAWS
            dr = self.posterior.draws(chains * n, rng)
            scale = self.posterior.scale_name
            post = {"alpha": dr["alpha"].reshape(chains, n, 2), "tau": dr["tau"].reshape(chains, n, 2),
                    "theta": dr["theta"].reshape(chains, n, -1), "pred": dr["pred"].reshape(chains, n)}
            study = [str(s) for s in self.posterior.study]
            coords = {"scale_coef": ["intercept", scale], "scale_level": [f"{scale}=0", f"{scale}=1"],
                      "study": study}
            dims = {"alpha": ["scale_coef"], "tau": ["scale_level"], "theta": ["study"], "y": ["study"],
                    "vi": ["study"]}
            intercept_only = self.posterior.coef_names == ["intercept"]
            if intercept_only:
                post["mu"] = dr["beta"][:, 0].reshape(chains, n)
            else:
                post["beta"] = dr["beta"].reshape(chains, n, -1)
                coords["coef"] = self.posterior.coef_names
                dims["beta"] = ["coef"]
            prior = self._prior_draws(chains * n, rng)
            prior = {k: v.reshape((1, chains * n) + v.shape[1:]) for k, v in prior.items()}
            const = {"vi": self.vi, "Z": self.Z}
            if self.X is not None:
                const["X"] = np.asarray(self.X, float)
            # replicates y_rep = theta + sqrt(v) z, and the marginal log-likelihood
            # N(y_i; x_i' beta, v_i + tau_i^2) with tau_i = exp(z_i' alpha), for the model checks
            theta = dr["theta"]
            y_rep = theta + np.sqrt(self.vi) * rng.standard_normal(theta.shape)
            Xf = self.posterior.X
            tau_i = np.exp(dr["alpha"] @ self.Z.T)
            loglik = stats.norm.logpdf(self.yi, dr["beta"] @ Xf.T, np.sqrt(self.vi + tau_i**2))
            shape = (chains, n, -1)
            self._idata = az.from_dict(posterior=post, prior=prior or None, coords=coords, dims=dims,
                                       posterior_predictive={"y": y_rep.reshape(shape)},
                                       log_likelihood={"y": loglik.reshape(shape)},
                                       observed_data={"y": self.yi}, constant_data=const)
            self._idata.attrs["draws_note"] = self.draws_note()
        return self._idata

    def _prior_draws(self, n, rng) -> dict:
        """Prior draws of ``alpha`` and ``mu``/``beta`` (normal priors: ``mean + sd z``)."""
        (m0, s0), (m1, s1) = self.posterior.alpha_prior
        out = {"alpha": np.column_stack([m0 + s0 * rng.standard_normal(n), m1 + s1 * rng.standard_normal(n)])}
        names = self.posterior.coef_names
        keys = ["mu"] if names == ["intercept"] and "mu" in self.priors else [f"beta[{c}]" for c in names]
        if all(k in self.priors and self.priors[k].family == "normal" for k in keys):
            coef = np.column_stack([self.priors[k].params["mu"] + self.priors[k].params["sigma"]
                                    * rng.standard_normal(n) for k in keys])
            if keys == ["mu"]:
                out["mu"] = coef[:, 0]
            else:
                out["beta"] = coef
        return out

    def draws_note(self) -> str:
        """What the draws are, in one line (printed under the summary)."""
        err = self.posterior.interpolation_error()
        bound = f"{err:.1e} nats" if math.isfinite(err) else "not measured"
        return ("draws: iid by inversion; (tau_0, tau_1) from the bicubic interpolant of the lattice log density "
                f"(largest log-density error at the cell centres {bound}; linear between points h/4 apart along "
                "tau_1), everything else exactly given them")

    def _effect_table(self, level) -> pd.DataFrame:
        key = ("effects", level)
        cache = self.__dict__.setdefault("_effect_cache", {})
        if key not in cache:
            cache[key] = self.posterior.effect_table(level)
        return cache[key]

    def _draw_rows(self) -> dict:
        """Row name -> flat draws (for HDIs)."""
        post = self.idata.posterior
        scale = self.posterior.scale_name
        rows = {}
        if "mu" in post:
            rows["mu"] = np.asarray(post["mu"]).ravel()
        else:
            beta = np.asarray(post["beta"]).reshape(-1, len(self.posterior.coef_names))
            rows.update({f"beta[{c}]": beta[:, j] for j, c in enumerate(self.posterior.coef_names)})
        alpha, tau = np.asarray(post["alpha"]).reshape(-1, 2), np.asarray(post["tau"]).reshape(-1, 2)
        rows.update({"alpha[intercept]": alpha[:, 0], f"alpha[{scale}]": alpha[:, 1],
                     f"tau[{scale}=0]": tau[:, 0], f"tau[{scale}=1]": tau[:, 1],
                     "pred": np.asarray(post["pred"]).ravel()})
        theta = np.asarray(post["theta"]).reshape(-1, len(self.posterior.study))
        rows.update({f"theta[{s}]": theta[:, i] for i, s in enumerate(self.posterior.study)})
        return rows

    def _table(self, level, interval, theta):
        cols = interval_columns(level, interval)
        names = self.posterior.names()
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        rows = {n: {"mean": self.posterior.mean(n), "sd": self.posterior.sd(n),
                    cols[0]: self.posterior.quantile(n, lo), "q50": self.posterior.quantile(n, 0.5),
                    cols[2]: self.posterior.quantile(n, hi)} for n in names}
        table = pd.DataFrame.from_dict(rows, orient="index")
        effects = self._effect_table(level)
        if not theta:
            effects = effects.loc[["pred"]]
        effects = effects.rename(columns={"lower": cols[0], "median": "q50", "upper": cols[2]})
        table = pd.concat([table, effects[table.columns]])
        table.index.name = "parameter"
        if interval == "hdi":  # the lattice marginals give central intervals; HDIs from the draws
            draws = self._draw_rows()
            values = np.column_stack([draws[n] for n in table.index])
            table[[cols[0], cols[2]]] = sample_hdi(values, level)
        return table

    def location_names(self) -> list[str]:
        return self.posterior.names()[:len(self.posterior.coef_names)] + self.posterior.effect_names()

    def posterior_density(self, name, x):
        """Exact posterior density of a location coefficient, ``pred`` or ``theta[STUDY]`` (normal
        mixtures), or of ``alpha[...]`` (the cubic spline through its lattice marginal, as the cdf)."""
        x = np.asarray(x, float)
        post = self.posterior
        loc = post.names()[:len(post.coef_names)]
        if name in loc:
            w, m, sd = post._mixture(post._loc_index(name))
            return w @ (stats.norm.pdf((x[None, :] - m[:, None]) / sd[:, None]) / sd[:, None])
        if name == "pred" or name.startswith("theta["):
            w, M, S = post.effect_components([post._effect_index(name)])
            return w @ (stats.norm.pdf((x[None, :] - M) / S) / S)
        if name.startswith("alpha["):
            return np.maximum(post.density_spline(name)(x), 0.0)
        return None

    def _prob(self, name, op, x):
        if name == "pred" or name.startswith("theta["):
            c = float(self.posterior.effect_cdf(name, x)[0])
        else:
            c = self.posterior.cdf(name, x)
        return float(1 - c if op.startswith(">") else c)

    def diagnostics_line(self) -> str:
        return "diagnostics: exact quadrature, no Markov chains (R-hat, ESS, divergences do not apply) -> passed"

    def _headline(self) -> str:
        return (f"Location-scale model (k = {len(self.yi)}), exact engine: 2-D quadrature over "
                f"tau[{self.posterior.scale_name}=0], tau[{self.posterior.scale_name}=1]")

    def _footer(self) -> list[str]:
        return [f"log marginal likelihood {self.posterior.log_marginal_likelihood:.4f}; BF01 for equal taus "
                f"(alpha[{self.posterior.scale_name}] = 0): {self.posterior.bayes_factor_equal_tau():.4g}",
                "summary: exact (quadrature and normal mixtures); " + self.draws_note()]

    def _data_arrays(self) -> list:
        return [self.yi, self.vi, self.X, self.Z]

    @classmethod
    def from_idata(cls, idata) -> "ExactScaleFit":
        """Re-solve the quadrature from the data, priors and settings the file holds (deterministic:
        the same numbers), keeping the file's draws."""
        from bayes_se.fits import stored_priors, stored_settings

        settings = stored_settings(idata)
        const = idata.constant_data
        X = np.asarray(const["X"], float) if "X" in const else None
        obs = idata.observed_data
        study = [str(s) for s in obs["study"].values] if "study" in obs.coords else None
        fit = fit_exact_scale(np.asarray(obs["y"], float), np.asarray(const["vi"], float),
                              np.asarray(const["Z"], float), X=X, coef_names=settings.get("coef"), study=study,
                              scale_names=settings["scale_coef"], priors=stored_priors(idata), settings=settings)
        fit._idata = idata
        return fit

    @property
    def log_marginal_likelihood(self) -> float:
        return self.posterior.log_marginal_likelihood

    def to_dict(self, level=None, interval="central") -> dict:
        out = super().to_dict(level=level, interval=interval)
        out["log_marginal_likelihood"] = self.log_marginal_likelihood
        out["bayes_factors"] = {"equal_tau": self.posterior.bayes_factor_equal_tau()}
        out["diagnostics"]["note"] = "exact quadrature: no Monte Carlo error, no sampler diagnostics"
        out["draws_note"] = self.draws_note()
        return out


def fit_exact_scale(yi, vi, Z, *, X=None, coef_names=None, scale_names, study=None, priors: dict,
                    settings: dict | None = None, data=None, spec=None) -> ExactScaleFit:
    """Solve the location-scale model with one binary scale moderator exactly (:func:`exact_scale_posterior`).

    ``priors``: ``mu`` or ``beta[NAME]`` and ``alpha[intercept]``, ``alpha[NAME]``, all normal.
    """
    d, name = binary_scale_column(Z, scale_names)
    names = list(coef_names) if coef_names is not None else ["intercept"]
    loc = [priors["mu"]] if names == ["intercept"] and "mu" in priors else [priors[f"beta[{c}]"] for c in names]
    alpha = [priors["alpha[intercept]"], priors[f"alpha[{name}]"]]
    for key, pr in zip([f"beta[{c}]" for c in names] + ["alpha[intercept]", f"alpha[{name}]"], loc + alpha):
        if pr.family != "normal":
            raise SpecError(f"the exact location-scale engine needs normal priors; {key} has '{pr}'", key=f"priors.{key}")
    post = exact_scale_posterior(
        yi, vi, d, X=None if names == ["intercept"] else X, coef_names=names, study=study,
        beta_mean=[p.params["mu"] for p in loc], beta_sd=[p.params["sigma"] for p in loc],
        alpha_mean=[p.params["mu"] for p in alpha], alpha_sd=[p.params["sigma"] for p in alpha], scale_name=name)
    settings = dict(settings or {})
    settings.setdefault("level", defaults.LEVEL)
    settings.setdefault("seed", defaults.SEED)
    settings.update(engine="exact_scale", k=len(post.study), coef=names, model="location_scale",
                    scale_coef=list(scale_names))
    return ExactScaleFit(post, yi=yi, vi=vi, X=X, Z=Z, priors=priors, settings=settings, data=data, spec=spec)
