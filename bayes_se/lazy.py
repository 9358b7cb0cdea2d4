"""Modules imported on first use, so that a command that never touches them does not pay for them.

``pd = LazyModule("pandas")`` at the top of a module stands for ``import pandas as pd``: the first
attribute read (``pd.DataFrame``) imports pandas; before that, pandas is not in ``sys.modules``.
The exact engine's command line (``bayes-se fit --engine exact --json``) builds the whole argument
parser, whose subcommands live in modules that use pandas; importing pandas costs 0.3 to 0.6 s of
a process that otherwise takes about as long (issue 17, docs/performance.md).
"""

from __future__ import annotations

import importlib


class LazyModule:
    """A stand-in for the module ``name``, imported on the first attribute access."""

    __slots__ = ("_name",)

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def __getattr__(self, attr):
        return getattr(importlib.import_module(object.__getattribute__(self, "_name")), attr)

    def __repr__(self) -> str:
        return f"<LazyModule {object.__getattribute__(self, '_name')!r}>"
