"""NUTS by nutpie (Rust) on a PyMC model whose density PyTensor compiles with its Numba backend.

PyMC's own NUTS runs its tree building in Python: about 60-100 us of interpreter work per
leapfrog step, which is most of a fit when one density-and-gradient evaluation costs a few to
tens of microseconds (the random-effects model: 7 us at k = 81; docs/performance.md). nutpie
runs the same algorithm (multinomial NUTS with a diagonal mass matrix; Hoffman & Gelman 2014,
Betancourt 2017) in Rust, with its own step-size and mass-matrix adaptation (Seyboldt et al.,
nutpie). Its PyMC route (``pm.sample(nuts_sampler=
"nutpie")``) wraps the density in a Numba C callback, which Numba compiles anew in every process
and for every fit (15-30 s for the mediation models); this module hands nutpie the density as a
Python callable instead, nutpie's route for JAX-compiled models (``nutpie.compiled_pyfunc.
from_pyfunc``). The callable calls the Numba function PyTensor compiled (``Function.vm.jit_fn``,
what nutpie's own Numba route calls), which Numba caches on disk, and this module caches per
process with the model: a later fit of the same model on new data (``pm.set_data``) compiles
nothing. The GIL serialises the callbacks, so the chains run on one thread. Every MCMC fit of
the package samples here by default (``[sampler] nuts_sampler``).

Public: :func:`sample_nutpie`.
"""

from __future__ import annotations

import logging
import time
import weakref

import numpy as np

#: nutpie's sampler statistics under the names PyMC's NUTS gives them (what ArviZ and
#: :mod:`bayes_se.diagnostics` read); the others are dropped.
STAT_NAMES = {"diverging": "diverging", "energy": "energy", "energy_error": "energy_error",
              "depth": "tree_depth", "maxdepth_reached": "reached_max_treedepth", "logp": "lp",
              "mean_tree_accept": "acceptance_rate", "step_size": "step_size",
              "step_size_bar": "step_size_bar", "n_steps": "n_steps"}

#: nutpie's settings besides its defaults: the mass matrix adapted from the draws' variances (as
#: Stan and PyMC do) rather than nutpie's default gradient-based estimate. On the path model with a
#: heterogeneity SD piling at 0 (k = 70, tau_c's 95% interval 0.003-0.08), four seeds gave tau_c a
#: tail ESS of 357-831 with nutpie's default (one seed failing the check of 400), 620-1311 with
#: this, 891-1389 with PyMC's NUTS.
SETTINGS = {"use_grad_based_mass_matrix": False}
#: Compiled functions by PyMC model, held only as long as the model lives: the mediation builders
#: keep their models for the process (so a later fit compiles nothing); a model built for one fit
#: (random effects, three-level) goes with its compiled functions when the fit drops it.
_COMPILED = weakref.WeakKeyDictionary()


class _Compiled:
    """The density, its gradient and the constrained values of one PyMC model as functions of the
    joined unconstrained vector, compiled once by PyTensor's Numba backend."""

    def __init__(self, model):
        import pytensor
        import pytensor.tensor as pt
        from pymc.pytensorf import join_nonshared_inputs
        from pytensor.graph.replace import vectorize_graph

        free = list(model.free_RVs)
        values = [model.rvs_to_values[rv] for rv in free]
        point = model.initial_point()
        self.value_names = [v.name for v in values]
        self.sizes = [int(np.size(point[name])) for name in self.value_names]
        self.ndim = int(sum(self.sizes))
        logp = model.logp(jacobian=True)
        grads = pytensor.grad(logp, values)
        grad = pt.concatenate([pt.as_tensor(g).ravel() for g in grads])
        (logp_j, grad_j), joined = join_nonshared_inputs(point, [logp, grad], values)
        self.density = pytensor.function([joined], [logp_j, grad_j], mode="NUMBA")
        # the constrained free variables and the deterministics, as pm.sample stores them
        outs, names = [], []
        for rv, value in zip(free, values):
            transform = model.rvs_to_transforms.get(rv)
            outs.append(value if transform is None else transform.backward(value, *rv.owner.inputs))
            names.append(rv.name)
        outs += model.replace_rvs_by_values(model.deterministics)
        names += [d.name for d in model.deterministics]
        joined_outs, joined2 = join_nonshared_inputs(point, outs, values)
        # all draws in one call: the graph of one point, vectorised over a leading draw axis
        draws = pt.dmatrix("draws")
        batched = vectorize_graph(joined_outs, replace={joined2: draws})
        self.expand = pytensor.function([draws], batched, on_unused_input="ignore", mode="FAST_COMPILE")
        self.names = names
        self.start = np.concatenate([np.ravel(point[name]) for name in self.value_names])

    def logp_callable(self):
        """``x -> (logp, grad)``: the Numba function PyTensor compiled, called directly (its shared
        data, e.g. the trials' estimates, passed as they are now), or the PyTensor function."""
        fn = self.density
        jit_fn = getattr(getattr(fn, "vm", None), "jit_fn", None)
        if jit_fn is None:  # another linker: PyTensor's own call (slower, same numbers)
            def logp(x, **_):
                value, grad = fn(x)
                return float(value), np.array(grad, dtype=float)
            return logp
        shared = [v.get_value(borrow=True) for v in fn.get_shared()]

        def logp(x, **_):
            value, grad = jit_fn(x, *shared)
            return float(value), np.array(grad, dtype=float)
        return logp


def compiled(model) -> _Compiled:
    """The model's compiled functions, made on first use in a process."""
    entry = _COMPILED.get(model)
    if entry is None:
        entry = _COMPILED[model] = _Compiled(model)
    return entry


def sample_nutpie(model, *, draws: int, tune: int, chains: int, seed: int, target_accept: float):
    """Sample a PyMC model with nutpie and return an InferenceData shaped as :func:`pymc.sample`'s.

    Initial values: each chain starts at the model's initial point plus uniform(-1, 1) jitter on
    the unconstrained scale (PyMC's ``jitter+adapt_diag``), drawn from the seed nutpie gives the
    chain. The same ``seed`` gives the same draws.

    Returns
    -------
    arviz.InferenceData
        ``posterior`` (free variables on their own scale and the deterministics, dims and coords
        from the model), ``sample_stats`` (PyMC's names: ``diverging``, ``energy``,
        ``tree_depth``, ``lp``, ...) and ``constant_data``; ``attrs`` ``sampling_time`` and
        ``sampler_version``.
    """
    import arviz as az
    import nutpie
    from nutpie.compiled_pyfunc import from_pyfunc
    from pymc.backends.arviz import coords_and_dims_for_inferencedata, find_constants, find_observations

    comp = compiled(model)
    start = comp.start

    def make_expand(seed1, seed2, chain):
        def expand(x, **_):
            return {"__x": np.array(x, dtype=float)}
        return expand

    def initial_point(chain_seed):
        rng = np.random.default_rng(chain_seed)
        return start + rng.uniform(-1.0, 1.0, start.size)

    nmodel = from_pyfunc(comp.ndim, comp.logp_callable, make_expand, [np.dtype("float64")], [(comp.ndim,)],
                         ["__x"], make_initial_point_fn=initial_point)
    # announced on PyMC's logger, where pm.sample announces its own NUTS: one setting shows or hides both
    logging.getLogger("pymc").info("Sampling %d chains for %d tune and %d draw iterations with nutpie %s "
                                   "(one thread): [%s]", chains, tune, draws, nutpie.__version__,
                                   ", ".join(rv.name for rv in model.free_RVs))
    began = time.perf_counter()
    raw = nutpie.sample(nmodel, draws=int(draws), tune=int(tune), chains=int(chains), cores=1,
                        seed=int(seed), save_warmup=False, progress_bar=False, return_raw_trace=True,
                        target_accept=float(target_accept), **SETTINGS)
    elapsed = time.perf_counter() - began
    x, stats = _draws_and_stats(raw, comp.ndim, int(draws))
    flat = x.reshape(-1, comp.ndim)
    posterior = {}
    for name, values in zip(comp.names, comp.expand(flat)):
        values = np.asarray(values, dtype=float)
        if values.ndim == 0 or values.shape[0] != flat.shape[0]:  # a value that does not vary by draw
            values = np.broadcast_to(values, (flat.shape[0],) + np.shape(values))
        posterior[name] = values.reshape(x.shape[:2] + values.shape[1:])
    coords, dims = coords_and_dims_for_inferencedata(model)
    idata = az.from_dict(posterior=posterior, sample_stats=stats, observed_data=find_observations(model) or None,
                         constant_data=find_constants(model) or None, coords=coords, dims=dims)
    idata.posterior.attrs["sampling_time"] = elapsed
    idata.attrs["sampler_version"] = f"nutpie {nutpie.__version__}"
    return idata


def _draws_and_stats(raw, ndim: int, draws: int):
    """The post-warmup draws ``(chain, draw, ndim)`` and statistics (PyMC's names) of nutpie's raw
    trace: one Arrow record batch of draws and one of statistics per chain. Read here rather than
    by nutpie's own conversion, which builds an InferenceData of the warmup too (0.5 s a fit)."""
    import pyarrow as pa

    draw_batches, stat_batches = raw.get_arrow_trace()
    x, stats = [], {name: [] for name in STAT_NAMES.values()}
    for draw_batch, stat_batch in zip(draw_batches, stat_batches):
        keep = ~pa.array(stat_batch.column("tuning")).to_numpy(zero_copy_only=False)
        if int(keep.sum()) != draws:  # nutpie stopped early: interrupted (bayes_se.sampling raises that)
            raise RuntimeError(f"nutpie returned {int(keep.sum())} draws of a chain, not {draws}")
        values = pa.array(draw_batch.column("__x")).flatten().to_numpy(zero_copy_only=False)
        x.append(values.reshape(-1, ndim)[keep])
        for name, ours in STAT_NAMES.items():
            stats[ours].append(pa.array(stat_batch.column(name)).to_numpy(zero_copy_only=False)[keep])
    return np.stack(x), {name: np.stack(v) for name, v in stats.items()}
