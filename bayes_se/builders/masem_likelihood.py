"""Closed-form likelihoods of the random-effects MASEM, grouped by pattern of reported pairs.

For study ``i`` with observed pairs ``o`` (``d = |o|``) the marginal density is

    y_i[o] ~ N(mu[o], C_i),   C_i = P_i[o, o] / (n_i - 1) + T[o, o],

with, by ``likelihood``:

* ``"pooled"``: ``y = r``, ``mu = rho``, ``P_i = Psi(R)`` the Olkin-Siotani covariance at the
  pooled matrix (the same for every study);
* ``"own"``: ``y = r``, ``mu = rho``, ``P_i = Psi(R_i)`` at the study's own reported matrix, an
  unreported entry of ``R_i`` replaced by the pooled one (fixed data otherwise; Hafdahl 2007);
* ``"fisher_z"``: ``y = atanh(r)``, ``mu = atanh(rho)``, ``P_i = D Psi(R) D`` with
  ``D = diag(1 / (1 - rho^2))`` (the delta method; Steiger 1980), and ``T`` the between-study
  covariance on the z scale: ``zeta_i ~ N(atanh(rho), T)``.

All studies are one vectorised batch whatever their pattern of reported pairs (unreported rows and
columns of a study's covariance are padded with the identity, which leaves the density of the
reported block exact). For ``q <= 3`` pairs (up to three variables) the log density is written
with the explicit determinant and adjugate (cofactors) of the ``q x q`` covariance, so the value
and gradient are a few dozen elementwise operations over the studies; larger ``q`` (path models
with more than three variables) use a batched Cholesky factorisation. Sample sizes, correlations
and the reported-pair masks are shared data (``pm.Data``), so one model takes any new data set
with the same variables through :func:`pymc.set_data`.

References
----------
Olkin, I. & Finn, J. D. (1995). Correlations redux. Psychological Bulletin 118, 155-164.
Steiger, J. H. (1980). Tests for comparing elements of a correlation matrix. Psychological
Bulletin 87, 245-251. Hafdahl, A. R. (2007). Combining correlation matrices: simulation analysis of
improved fixed-effects methods. J. Educational and Behavioral Statistics 32, 180-205.
"""

from __future__ import annotations

import numpy as np

from bayes_se.correlations import pair_index

__all__ = ["LIKELIHOODS", "patterns", "shared_values", "add_pattern_likelihood", "transformed"]

#: Likelihoods of the observed correlations (see the module docstring).
LIKELIHOODS = ("pooled", "own", "fisher_z")
_LOG_2PI = float(np.log(2.0 * np.pi))


def patterns(observed: np.ndarray) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Distinct patterns of reported pairs: ``[(pairs, studies), ...]`` in order of first study."""
    out: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(np.asarray(observed, bool)):
        out.setdefault(tuple(int(c) for c in np.flatnonzero(row)), []).append(i)
    return [(key, np.array(idx)) for key, idx in out.items()]


def transformed(r, likelihood: str):
    """The modelled scale of correlations: ``atanh(r)`` for ``"fisher_z"``, ``r`` otherwise."""
    return np.arctanh(r) if likelihood == "fisher_z" else r


def shared_values(data, likelihood: str) -> dict:
    """Values of the model's shared data: ``n`` (k,), ``y`` (k, q; the modelled scale, 0 where
    unreported), ``obs`` (k, q; 1.0 where reported) and, for ``"own"``, ``own`` (k, p*p: the
    study's flattened matrix, 0 where unreported and on the diagonal) and ``own_mask`` (k, p*p:
    1.0 where ``own`` holds a reported value)."""
    obs = np.asarray(data.observed, bool)
    y = np.where(obs, transformed(np.where(obs, data.r, 0.0), likelihood), 0.0)
    out = {"n": np.asarray(data.n, float), "y": y, "obs": obs.astype(float)}
    if likelihood == "own":
        p = data.p
        flat, mask = np.zeros((data.k, p * p)), np.zeros((data.k, p * p))
        for c, (a, b) in enumerate(pair_index(p)):
            for pos in (a * p + b, b * p + a):
                flat[:, pos] = np.where(obs[:, c], data.r[:, c], 0.0)
                mask[:, pos] = obs[:, c]
        out["own"], out["own_mask"] = flat, mask
    return out


def _selections(p: int) -> dict:
    """Constant matrices ``S`` with ``vec(R) @ S.T`` = the (q*q) entries of Olkin-Siotani's formula
    named st, uv, su, sv, tu, tv, as in :func:`bayes_se.correlations.olkin_siotani`."""
    pairs = np.array(pair_index(p))
    q = len(pairs)
    s, t = pairs[:, 0][:, None], pairs[:, 1][:, None]
    u, v = pairs[:, 0][None, :], pairs[:, 1][None, :]
    out = {}
    for name, (a, b) in {"st": (s, t), "uv": (u, v), "su": (s, u), "sv": (s, v), "tu": (t, u),
                         "tv": (t, v)}.items():
        sel = np.zeros((q * q, p * p))
        sel[np.arange(q * q), np.broadcast_to(a * p + b, (q, q)).ravel()] = 1.0
        out[name] = sel
    return out


def _olkin_siotani_batch(flat, p: int):
    """Olkin-Siotani numerators ``(k, q, q)`` for a batch of flattened matrices ``flat`` (k, p*p)
    (PyTensor): the formula of :func:`bayes_se.correlations.olkin_siotani`."""
    q = p * (p - 1) // 2
    g = {w: flat.dot(sel.T).reshape((flat.shape[0], q, q)) for w, sel in _selections(p).items()}
    rst, ruv, rsu, rsv, rtu, rtv = (g[w] for w in ("st", "uv", "su", "sv", "tu", "tv"))
    return (0.5 * rst * ruv * (rsu**2 + rsv**2 + rtu**2 + rtv**2) + rsu * rtv + rsv * rtu
            - (rst * rsu * rsv + rst * rtu * rtv + rsu * rtu * ruv + rsv * rtv * ruv))


def _logdens_closed(e, C):
    """``log N(e_i; 0, C_i)`` up to ``-d/2 log(2 pi)`` for a batch, ``q = 1`` or ``3``, from the
    explicit determinant and adjugate (cofactors) of each ``C_i``: ``e`` (k, q), ``C`` (k, q, q)."""
    import pytensor.tensor as pt

    if C.type.shape[-1] == 1:
        det = C[:, 0, 0]
        quad = e[:, 0] ** 2 / det
    else:
        c11, c22, c33 = C[:, 0, 0], C[:, 1, 1], C[:, 2, 2]
        c12, c13, c23 = C[:, 0, 1], C[:, 0, 2], C[:, 1, 2]
        e1, e2, e3 = e[:, 0], e[:, 1], e[:, 2]
        a11 = c22 * c33 - c23**2
        a22 = c11 * c33 - c13**2
        a33 = c11 * c22 - c12**2
        a12 = c13 * c23 - c12 * c33
        a13 = c12 * c23 - c13 * c22
        a23 = c12 * c13 - c11 * c23
        det = c11 * a11 + c12 * a12 + c13 * a13
        quad = (a11 * e1**2 + a22 * e2**2 + a33 * e3**2 + 2.0 * (a12 * e1 * e2 + a13 * e1 * e3 + a23 * e2 * e3)) / det
    # a non-positive determinant (possible only off the model's support) is -inf, not NaN
    return pt.switch(det > 0, -0.5 * (pt.log(pt.maximum(det, 1e-300)) + quad), -np.inf)


def _logdens_chol(e, C):
    """As :func:`_logdens_closed` for any ``q``, by batched Cholesky factorisation."""
    import pytensor.tensor as pt

    L = pt.linalg.cholesky(C)
    z = pt.linalg.solve_triangular(L, e[..., None], lower=True, b_ndim=2)[..., 0]
    logdet = 2.0 * pt.log(pt.diagonal(L, axis1=-2, axis2=-1)).sum(-1)
    return -0.5 * (logdet + (z**2).sum(-1))


def add_pattern_likelihood(data, R, rho, T, likelihood: str = "pooled", *, symbolic: bool = False,
                           theta=None):
    """Add the marginal log-likelihood of the module docstring to the current PyMC model as one
    :func:`pymc.Potential` ``loglik``, with the shared data of :func:`shared_values`.

    Every study is one row of a batch: its ``q x q`` covariance has the unreported rows and
    columns replaced by those of the identity and its residual by 0 there, which leaves the
    determinant and the quadratic form of the reported block unchanged, so the density of the
    reported pairs is exact for any pattern (the missing ``-1/2 log(2 pi)`` per unreported pair is
    not added). ``q = 1, 3`` use explicit determinants and adjugates; larger ``q`` a batched
    Cholesky.

    Parameters
    ----------
    data : CorrelationData
    R : pytensor (p, p) pooled correlation matrix
    rho : pytensor (q,) its lower-triangle vector (pair order)
    T : pytensor (q, q) between-study covariance (on the z scale for ``"fisher_z"``)
    likelihood : {"pooled", "own", "fisher_z"}
    symbolic : bool
        False (default): value and gradient from the compiled kernel of
        :mod:`bayes_se.builders.masem_kernel` (one Op); True: the same density as a PyTensor graph
        (about 50 times slower per gradient; kept as an independent implementation for tests).
    theta : pytensor vector, needed unless ``symbolic``
        The free coordinates ``(cpc of R, tau, cpc of Omega)`` from which the kernel rebuilds
        ``R`` and ``T`` itself (so that nothing else of the model enters the gradient graph).
    """
    import pymc as pm
    import pytensor.tensor as pt

    from bayes_se.correlations import olkin_siotani

    p = data.p
    q = p * (p - 1) // 2
    values = shared_values(data, likelihood)
    n = pm.Data("n", values["n"])
    y = pm.Data("y", values["y"])
    obs = pm.Data("obs", values["obs"])
    if not symbolic:
        from bayes_se.builders.masem_kernel import masem_loglik_op

        if theta is None:
            raise ValueError("the compiled kernel needs theta (the free coordinates)")
        if likelihood == "own":
            own, own_mask = pm.Data("own", values["own"]), pm.Data("own_mask", values["own_mask"])
        else:
            own = own_mask = pt.zeros((1, 1))
        pm.Potential("loglik", masem_loglik_op(p, likelihood)(theta, n, y, obs, own, own_mask)[0])
        return
    w = (1.0 / (n - 1.0))[:, None, None]
    if likelihood == "own":
        own = pm.Data("own", values["own"])
        own_mask = pm.Data("own_mask", values["own_mask"])
        # unreported entries (and the unit diagonal) from the pooled matrix
        flat = own + (1.0 - own_mask) * R.reshape((p * p,))[None, :]
        S = _olkin_siotani_batch(flat, p) * w
        mu = rho
    elif likelihood == "fisher_z":
        dz = 1.0 / (1.0 - rho**2)
        S = (olkin_siotani(R, p=p) * dz[:, None] * dz[None, :])[None, :, :] * w
        mu = pt.arctanh(rho)
    else:
        S = olkin_siotani(R, p=p)[None, :, :] * w
        mu = rho
    mask = obs[:, :, None] * obs[:, None, :]
    C = mask * (S + T[None, :, :]) + (1.0 - mask) * np.eye(q)[None, :, :]
    e = obs * (y - mu[None, :])
    dens = _logdens_closed(e, C) if q in (1, 3) else _logdens_chol(e, C)
    pm.Potential("loglik", dens.sum() - 0.5 * _LOG_2PI * obs.sum())
