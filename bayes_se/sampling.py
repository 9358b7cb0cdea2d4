"""The one place that runs samplers.

:func:`sample` runs NUTS on a built model, refitting once with a higher ``target_accept`` if there
were divergences, adds prior draws and the prior predictive, and hands the InferenceData to the
built model's own post-processing: ``model.postprocess(idata, seed)`` (for the builders'
:class:`~bayes_se.builders.random_effects.MetaModel`: study effects drawn exactly given each
posterior draw, a new study's effect, the marginal log-likelihood for LOO and replicates of ``y``;
see :meth:`~bayes_se.builders.random_effects.MetaModel.postprocess`). A plain :class:`pymc.Model`
gets PyMC's own log-likelihood and posterior predictive instead. Nothing model-specific lives here.

References
----------
Hoffman, M. D. & Gelman, A. (2014). The No-U-Turn sampler. JMLR 15, 1593-1623.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings

from bayes_se.diagnostics import EXACT_ATTR  # noqa: F401  (the attribute's old home)
from bayes_se.errors import SpecError

#: target_accept of the automatic refit after divergences.
REFIT_TARGET_ACCEPT = 0.99
#: Default NUTS target_accept by builder kind (``MetaModel.kind``); ``DEFAULT_TARGET_ACCEPT`` for
#: any other model. Normal effects are integrated out of the likelihood, leaving a smooth 2-3
#: parameter posterior with no funnel, where Stan's and PyMC's 0.8 suffices: against 0.9 it gave
#: 35% more tau-ESS in 15% less sampling time (random effects, k = 70; docs/performance.md).
#: Student-t effects are sampled non-centred, the three-level and mediation models have
#: hierarchical SDs whose posteriors can pile at 0: those keep 0.9.
TARGET_ACCEPT_BY_KIND = {"random_effects": 0.8}
DEFAULT_TARGET_ACCEPT = 0.9
#: Number of prior (predictive) draws stored with each fit.
PRIOR_DRAWS = 500
#: Compile a model's log density and gradient once per :func:`sample` call, so that the refit after
#: divergences reuses it (the same function, so the same draws; ``tests/test_demo_speed.py``).
COMPILE_ONCE = True
SAMPLERS = ("pymc", "nutpie")
#: PyTensor mode of the prior (predictive) sampler: its 500 calls are cheap, so skipping PyTensor's
#: graph rewrites and C code saves 1 to 1.5 s of compiling per fit. The parameters' draws are the
#: same (numpy's generators draw either way); values computed from them, such as the Student-t
#: model's theta and the replicates y around it, agree to rounding (``tests/test_nutpie_sampling.py``).
PRIOR_MODE = "FAST_COMPILE"
#: Model-specific post-processing that moved to the builders, still importable from here.
_MOVED = {"normal_conditional": "bayes_se.builders.random_effects",
          "student_t_marginal_logpdf": "bayes_se.builders.random_effects"}


def sample(
    model,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    target_accept: float | None = None,
    seed: int,
    sampler: str = "pymc",
    progressbar: bool = False,
):
    """Sample a built model with NUTS and return a complete InferenceData.

    Parameters
    ----------
    model : built model or pymc.Model
        A built model: an object with the PyMC model as ``.model``, a ``set_data()`` method (puts
        its data into that model, which builders may share between data sets), a
        ``postprocess(idata, seed)`` method (adds its exact draws, log-likelihood and ``y_rep``)
        and optionally a ``.kind``
        (picks the default target_accept), such as a bayes_se builder's ``MetaModel``; or any PyMC
        model (gets PyMC's own log-likelihood and posterior predictive).
    draws, tune, chains, cores : int
        As in :func:`pymc.sample`.
    target_accept : float, optional
        NUTS target acceptance; raised to ``REFIT_TARGET_ACCEPT`` for one refit after divergences.
        None: the model's default, ``TARGET_ACCEPT_BY_KIND`` (0.8 for normal random effects and
        meta-regressions) or ``DEFAULT_TARGET_ACCEPT`` (0.9).
    seed : int
        Seeds the sampler and every post-sampling draw: the same seed gives identical draws.
    sampler : {"pymc", "nutpie"}
        ``"nutpie"``: nutpie's Rust NUTS on the model's density compiled by PyTensor's Numba
        backend, called directly and compiled once per model and process
        (:func:`bayes_se.nutpie_sampling.sample_nutpie`; the chains run in turn on one thread, so
        ``cores`` is unused). ``"pymc"``: PyMC's NUTS (``pymc.sample``).
    progressbar : bool

    Returns
    -------
    arviz.InferenceData
        Groups posterior, sample_stats, observed_data, constant_data (the builders' shared
        data other than the observed effects: ``vi``, ``X``), prior, prior_predictive,
        posterior_predictive (``y_rep``) and log_likelihood (``y``). ``attrs["refit_reason"]``
        says why a refit happened.

    References
    ----------
    Hoffman & Gelman (2014), JMLR 15:1593-1623.
    """
    from bayes_se import blas

    blas.configure()  # link PyTensor's C code to SciPy's OpenBLAS before anything compiles
    import pymc as pm

    if sampler not in SAMPLERS:
        raise SpecError(f"sampler must be one of {SAMPLERS}, got {sampler!r}", key="sampler")
    if sampler == "nutpie" and importlib.util.find_spec("nutpie") is None:
        raise SpecError("sampler 'nutpie' needs the nutpie package, which is not installed", key="sampler")
    if sampler == "nutpie" and int(tune) < 1:  # nutpie's adaptation windows need a warm-up (it panics)
        raise SpecError("tune = 0 needs nuts_sampler = \"pymc\": nutpie adapts its step size during at least "
                        "one warm-up iteration", key="sampler.tune")
    built = None if isinstance(model, pm.Model) else model
    pm_model = model if built is None else built.model
    if target_accept is None:
        target_accept = TARGET_ACCEPT_BY_KIND.get(getattr(built, "kind", None), DEFAULT_TARGET_ACCEPT)
    if not 0.0 < target_accept < 1.0:
        raise SpecError(f"target_accept must be in (0, 1), got {target_accept}", key="target_accept")

    # a builder that keeps its Numba-compiled density (and PyMC NUTS step) between fits
    compiled_density = hasattr(built, "nuts_kwargs")
    if built is not None:  # builders may share one PyMC model between data sets: this fit's data
        built.set_data()

    def run(accept):
        kwargs = dict(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
                      progressbar=progressbar, target_accept=accept, compute_convergence_checks=False,
                      idata_kwargs={"log_likelihood": False})
        if sampler == "nutpie":  # nutpie calls the density PyTensor compiled with Numba
            from bayes_se.nutpie_sampling import sample_nutpie

            # nutpie returns the draws made so far on Ctrl-C: raised as an interrupt here too
            return _sample_keeping_interrupts(sample_nutpie, dict(
                model=pm_model, draws=draws, tune=tune, chains=chains, seed=seed, target_accept=accept))
        if compiled_density:
            kwargs.update(built.nuts_kwargs(accept, chains, seed))
            if "step" in kwargs:
                del kwargs["target_accept"]
        with pm_model, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Pp]otential.*")
            return _sample_keeping_interrupts(pm.sample, kwargs)

    reuse = COMPILE_ONCE and sampler == "pymc" and not compiled_density
    with _logp_dlogp_compiled_once(pm_model) if reuse else contextlib.nullcontext():
        idata = run(target_accept)
        n_div = int(idata.sample_stats["diverging"].sum())
        if n_div and target_accept < REFIT_TARGET_ACCEPT:
            idata = run(REFIT_TARGET_ACCEPT)
            idata.attrs["refit_reason"] = (
                f"{n_div} divergent transitions at target_accept={target_accept}; "
                f"refit once with target_accept={REFIT_TARGET_ACCEPT}"
            )
    idata.attrs["target_accept"] = REFIT_TARGET_ACCEPT if "refit_reason" in idata.attrs else target_accept
    idata.attrs["seed"] = int(seed)
    idata.attrs["sampler"] = sampler

    with pm_model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Pp]otential.*")
        prior = pm.sample_prior_predictive(draws=PRIOR_DRAWS, random_seed=seed,
                                           compile_kwargs={"mode": PRIOR_MODE})
    idata.extend(prior)
    if built is None:
        with pm_model:
            pm.compute_log_likelihood(idata, progressbar=False)
            pm.sample_posterior_predictive(idata, random_seed=seed, extend_inferencedata=True,
                                           progressbar=False)
        return idata
    return built.postprocess(idata, seed)



@contextlib.contextmanager
def _logp_dlogp_compiled_once(pm_model):
    """Within the block, ``pm_model.logp_dlogp_function`` (what ``pymc.sample`` compiles for NUTS,
    the costly part of its start: 1.5 to 3.5 s for the three-level model with a filled compile
    cache) is compiled once per set of arguments and then handed out again, so the refit at a higher
    ``target_accept`` samples with the function the first run compiled. The function is pure (the
    point and any extra values are passed in each call), so the draws are those of a fresh compile."""
    compiled = {}
    method = pm_model.logp_dlogp_function

    def once(*args, **kwargs):
        try:
            key = (args, tuple(sorted(kwargs.items())))
            hash(key)
        except TypeError:  # arguments that cannot be compared: compile as usual
            return method(*args, **kwargs)
        if key not in compiled:
            compiled[key] = method(*args, **kwargs)
        return compiled[key]

    pm_model.logp_dlogp_function = once
    try:
        yield
    finally:
        del pm_model.logp_dlogp_function  # the class's method again


def _sample_keeping_interrupts(sample, kwargs):
    """``sample(**kwargs)``, raising KeyboardInterrupt after it returns if Ctrl-C came meanwhile.

    ``pymc.sample`` and ``nutpie.sample`` catch KeyboardInterrupt and return the draws made so far
    (or fail with "not enough samples" during tuning), so without this a Ctrl-C would go on to
    post-process (or refit) a truncated chain as if it were the fit asked for.
    The SIGINT handler is wrapped only in the main thread and only when it is a Python callable
    (an ignored or default SIGINT is left alone).
    """
    import signal
    import threading

    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        return sample(**kwargs)
    received = []

    def on_sigint(signum, frame):
        received.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        idata = sample(**kwargs)
    except Exception:
        if received:  # e.g. "Not enough samples to build a trace" after a Ctrl-C during tuning
            raise KeyboardInterrupt("sampling interrupted") from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt("sampling interrupted")
    return idata


def add_exact_draws(idata, meta, seed: int):
    """``meta.postprocess(idata, seed)``: the built model's exact draws, marginal log-likelihood
    and ``y_rep`` added to ``idata`` in place (kept for callers of the old function)."""
    return meta.postprocess(idata, seed)


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
