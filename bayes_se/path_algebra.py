"""Path-model algebra on correlation matrices, shared by the Bayesian and two-stage MASEM.

A path model over ``p`` named variables is a set of equations ``outcome ~ predictors`` forming a
directed acyclic graph. With all variables standardized, each equation's coefficients come from
the correlation matrix ``R``::

    B[y, x] = (R_xx^-1 R_xy)    for the predictors x of outcome y

(Becker 1992). The effect of ``x`` on ``y`` along a chain ``x -> m_1 -> ... -> y`` is the product of
the coefficients on it; the **indirect** effect through given mediators is the sum over the chains
through them, and the **total** effect is the direct coefficient plus every indirect chain
(``(I - B)^-1 - I``). For the mediation model X -> M -> Y::

    a = r_XM,   b = (r_MY - r_XM r_XY) / (1 - r_XM^2),   c' = (r_XY - r_XM r_MY) / (1 - r_XM^2),
    indirect = a b,   total = c' + a b = r_XY,   prop_mediated = a b / (c' + a b).

This module sits below :mod:`bayes_se.mediation` (Bayesian fit), :mod:`bayes_se.builders.masem`
(the PyMC model) and :mod:`bayes_se.frequentist.masem` (two-stage fit), which all import it; it
imports none of them. Its public names stay importable from their former homes
(``bayes_se.mediation.PathModel``, ``vec_to_matrix``, ``path_model``;
``bayes_se.frequentist.masem.reported_effects``).

References
----------
Becker, B. J. (1992). Using results from replicated studies to estimate linear models. Journal of
Educational Statistics 17, 341-362.
MacKinnon, D. P. (2008). Introduction to Statistical Mediation Analysis. Erlbaum, ch. 3.
"""

from __future__ import annotations

import numpy as np

from bayes_se.correlations import pair_index
from bayes_se.errors import SpecError

__all__ = ["PathModel", "vec_to_matrix", "path_model", "reported_effects"]


class PathModel:
    """A recursive path model: equations ``outcome -> predictors`` over named variables.

    Parameters
    ----------
    variables : sequence of str
        All variables (the order of the correlation matrix).
    equations : dict of str to sequence of str
        ``{outcome: [predictor, ...]}``; must form a directed acyclic graph.
    mediation : tuple of str, optional
        ``(x, m, y)`` when this is the single-mediator model (adds the ``a``/``b``/``c_prime``
        names).

    Attributes
    ----------
    order : list of str
        The variables in topological order (each after its predictors).
    edges : list of (str, str)
        ``(predictor, outcome)`` pairs.
    chains : list of tuple of str
        Every directed chain of length >= 2 (an indirect path).
    """

    def __init__(self, variables, equations, mediation=None):
        self.variables = [str(v) for v in variables]
        if not isinstance(equations, dict) or not equations:
            raise SpecError("paths must be a non-empty mapping outcome -> [predictors]", key="paths")
        self.equations = {}
        for y, xs in equations.items():
            xs = [xs] if isinstance(xs, str) else list(xs)
            for v in [y, *xs]:
                if v not in self.variables:
                    raise SpecError(f"unknown variable {v!r}; variables are {self.variables}", key=f"paths.{y}")
            if not xs or y in xs or len(set(xs)) != len(xs):
                raise SpecError("an equation needs distinct predictors other than its outcome", key=f"paths.{y}")
            self.equations[str(y)] = [str(x) for x in xs]
        self.order = self._topological()  # every variable after its predictors
        self.mediation = tuple(mediation) if mediation is not None else None
        self.edges = [(x, y) for y, xs in self.equations.items() for x in xs]
        self.chains = self._chains()

    @classmethod
    def single_mediator(cls, variables, x, m, y) -> "PathModel":
        """``M ~ X``, ``Y ~ X + M``."""
        return cls(variables, {m: [x], y: [x, m]}, mediation=(x, m, y))

    def _topological(self):
        order, state = [], {}

        def visit(v):
            if state.get(v) == 1:
                raise SpecError(f"the paths form a cycle through {v!r}; only recursive models are supported",
                                key="paths")
            if state.get(v) == 2:
                return
            state[v] = 1
            for x in self.equations.get(v, []):
                visit(x)
            state[v] = 2
            order.append(v)

        for v in self.variables:
            visit(v)
        return order

    def _chains(self):
        """Every directed chain of length >= 2 (an indirect path), as tuples of names."""
        children = {v: [y for x, y in self.edges if x == v] for v in self.variables}
        out = []

        def walk(path):
            for nxt in children[path[-1]]:
                new = path + (nxt,)
                if len(new) >= 3:
                    out.append(new)
                walk(new)

        for v in self.variables:
            walk((v,))
        return out

    # -- algebra --------------------------------------------------------------------------------
    def coefficients(self, R) -> np.ndarray:
        """``B[..., y, x]``: standardized coefficients of every equation, from ``R (..., p, p)``.

        Real or complex input (complex steps give exact derivatives for the delta method).
        """
        R = np.asarray(R)
        p = len(self.variables)
        idx = {v: j for j, v in enumerate(self.variables)}
        B = np.zeros(R.shape[:-2] + (p, p), dtype=R.dtype)
        for y, xs in self.equations.items():
            ix, iy = [idx[x] for x in xs], idx[y]
            Rxx = R[..., ix, :][..., :, ix]
            rxy = R[..., ix, iy]
            B[..., iy, ix] = _solve(Rxx, rxy)
        return B

    def effects(self, R) -> dict:
        """Named effects from correlation matrices ``R (..., p, p)``.

        Returns ``"x->y"`` (direct coefficients), ``"indirect[x->m->y]"`` (one chain),
        ``"indirect[x->y]"`` (sum of chains from x to y), ``"total[x->y]"`` and, for the
        single-mediator model, ``a``, ``b``, ``c_prime``, ``indirect``, ``total``,
        ``prop_mediated``.
        """
        B = self.coefficients(R)
        idx = {v: j for j, v in enumerate(self.variables)}
        out = {f"{x}->{y}": B[..., idx[y], idx[x]] for x, y in self.edges}
        sums: dict[tuple[str, str], np.ndarray] = {}
        for chain in self.chains:
            value = np.prod([B[..., idx[chain[s + 1]], idx[chain[s]]] for s in range(len(chain) - 1)], axis=0)
            out["indirect[" + "->".join(chain) + "]"] = value
            key = (chain[0], chain[-1])
            sums[key] = sums.get(key, 0) + value
        for (x, y), value in sums.items():
            if any(c[0] == x and c[-1] == y for c in self.chains):
                out[f"indirect[{x}->{y}]"] = value
                out[f"total[{x}->{y}]"] = value + (out.get(f"{x}->{y}", 0))
        if self.mediation is not None:
            x, m, y = self.mediation
            out["a"], out["b"], out["c_prime"] = out[f"{x}->{m}"], out[f"{m}->{y}"], out[f"{x}->{y}"]
            out["indirect"] = out["a"] * out["b"]
            out["total"] = out["c_prime"] + out["indirect"]
            with np.errstate(divide="ignore", invalid="ignore"):  # NaN/inf where total = 0
                out["prop_mediated"] = out["indirect"] / out["total"]
        return out

    def indirect_names(self) -> list[str]:
        """Names of the effects that are products of paths (what ``indirect_avg`` is computed for)."""
        if self.mediation is not None:
            return ["indirect"]
        return ["indirect[" + "->".join(c) + "]" for c in self.chains]


def _solve(A, y):
    """``A^-1 y`` over the leading axes: Cramer's rule for one and two predictors (the
    single-mediator model's equations; a million systems in milliseconds, where the batched LAPACK
    call takes most of a second), LAPACK beyond."""
    if A.shape[-1] == 1:
        return y / A[..., 0, :]
    if A.shape[-1] == 2:
        det = A[..., 0, 0] * A[..., 1, 1] - A[..., 0, 1] * A[..., 1, 0]
        return np.stack([(A[..., 1, 1] * y[..., 0] - A[..., 0, 1] * y[..., 1]) / det,
                         (A[..., 0, 0] * y[..., 1] - A[..., 1, 0] * y[..., 0]) / det], axis=-1)
    return np.linalg.solve(A, y[..., None])[..., 0]


def vec_to_matrix(rho, p: int) -> np.ndarray:
    """Correlation matrices ``(..., p, p)`` from vectors ``(..., q)`` in lower-triangle column order."""
    rho = np.asarray(rho)
    R = np.broadcast_to(np.eye(p, dtype=rho.dtype), rho.shape[:-1] + (p, p)).copy()
    for c, (i, j) in enumerate(pair_index(p)):
        R[..., i, j] = R[..., j, i] = rho[..., c]
    return R


def path_model(data, paths=None, x="intervention", m="self_efficacy", y="symptoms") -> PathModel:
    """The :class:`PathModel` over ``data.variables``: ``paths`` or the default mediation."""
    if isinstance(paths, PathModel):
        return paths
    if paths is None:
        for key, v in (("x", x), ("m", m), ("y", y)):
            if v not in data.variables:
                raise SpecError(f"{v!r} is not one of the variables {list(data.variables)}", key=key)
        if len({x, m, y}) != 3:
            raise SpecError("x, m and y must be three different variables", key="m")
        return PathModel.single_mediator(data.variables, x, m, y)
    return PathModel(data.variables, paths)


def reported_effects(model: PathModel, effects: dict) -> list[str]:
    """The effect names a summary shows, in a fixed order."""
    if model.mediation is not None:
        return ["a", "b", "c_prime", "indirect", "total", "prop_mediated"]
    direct = [f"{a}->{b}" for a, b in model.edges]
    chains = ["indirect[" + "->".join(c) + "]" for c in model.chains]
    n_chains = {}
    for c in model.chains:
        n_chains[f"{c[0]}->{c[-1]}"] = n_chains.get(f"{c[0]}->{c[-1]}", 0) + 1
    # a summed indirect effect is shown only when more than one chain adds up to it
    summed = [f"indirect[{key}]" for key, count in n_chains.items() if count > 1]
    totals = [n for n in effects if n.startswith("total[")]
    return direct + chains + summed + totals
