"""Bayesian model builders (PyMC) and the one-call fits built on them.

Builders only build a model (:class:`MetaModel`); :func:`bayes_se.sampling.sample` samples it and
:class:`bayes_se.results.BayesianFit` wraps the result.
"""

from __future__ import annotations

from bayes_se import blas

# link PyTensor's C code to SciPy's OpenBLAS before PyMC (and so PyTensor) is first imported
blas.configure()

from bayes_se.builders.random_effects import MetaModel, build_random_effects  # noqa: E402
from bayes_se.builders.three_level import build_three_level  # noqa: E402

__all__ = ["MetaModel", "build_random_effects", "build_three_level"]
