"""Modules imported on first use, so that a command that never touches them does not pay for them
(and :func:`median`, NumPy's without the import it triggers).

``pd = LazyModule("pandas")`` at the top of a module stands for ``import pandas as pd``: the first
attribute read (``pd.DataFrame``) imports pandas; before that, pandas is not in ``sys.modules``.
The exact engine's command line (``bayes-se fit --engine exact --json``) builds the whole argument
parser, whose subcommands live in modules that use pandas; importing pandas costs 0.3 to 0.6 s of
a process that otherwise takes about as long (issue 17, docs/performance.md).
"""

from __future__ import annotations

import importlib

import numpy as np


class LazyModule:
    """A stand-in for the module ``name``, imported on the first attribute access."""

    __slots__ = ("_name",)

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attr):
        return getattr(importlib.import_module(object.__getattribute__(self, "_name")), attr)

    def __repr__(self) -> str:
        return f"<LazyModule {object.__getattribute__(self, '_name')!r}>"


def median(x) -> float:
    """``float(np.median(x))`` of a 1-D array without NaN, equal bit for bit (the middle value, or
    the mean of the two middle values by ``np.mean``, as NumPy computes it), without importing
    ``numpy.ma``, which every call of ``np.median`` does (30 ms of a process that has not)."""
    s = np.sort(np.asarray(x, dtype=float).ravel())
    h = s.size // 2
    return float(s[h]) if s.size % 2 else float(np.mean(s[h - 1:h + 1]))
