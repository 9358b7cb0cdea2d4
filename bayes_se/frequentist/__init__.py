"""Frequentist meta-analysis engine: a metafor 3.8-1 twin.

``rma`` (univariate, metafor ``rma.uni``), ``regtest`` / ``ranktest`` / ``trimfill`` (funnel asymmetry),
``leave1out``; ``rma_mv`` (multilevel/multivariate) lives in :mod:`.multilevel` and is imported
on first access.
"""

from __future__ import annotations

import importlib

from bayes_se.frequentist.bias import (
    RanktestResult,
    RegtestResult,
    TrimfillResult,
    ranktest,
    regtest,
    trimfill,
)
from bayes_se.frequentist.influence import leave1out
from bayes_se.frequentist.rma import RMAResult, rma

__all__ = ["rma", "RMAResult", "regtest", "RegtestResult", "ranktest", "RanktestResult", "trimfill", "TrimfillResult",
           "leave1out", "rma_mv", "RmaMvResult", "matreg", "MatregResult"]


_MULTILEVEL = ("rma_mv", "RmaMvResult", "matreg", "MatregResult")


def __getattr__(name: str):
    if name in _MULTILEVEL:
        return getattr(importlib.import_module("bayes_se.frequentist.multilevel"), name)
    raise AttributeError(f"module 'bayes_se.frequentist' has no attribute {name!r}")
