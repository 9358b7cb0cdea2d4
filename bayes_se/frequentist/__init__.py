"""Frequentist meta-analysis engine: a metafor 3.8-1 twin.

``rma`` (univariate, metafor ``rma.uni``), ``regtest`` / ``ranktest`` / ``trimfill`` (funnel asymmetry),
``leave1out``, ``robust`` (cluster-robust CR0/CR1/CR2, :mod:`.robust`) and ``robu`` (robumeta,
:mod:`.robumeta`); ``rma_mv`` (multilevel/multivariate) lives in :mod:`.multilevel` and ``matreg`` in
:mod:`.matrix_regression`, imported on first access. The results share one naming
(:mod:`.common`): ``ci_lower``/``ci_upper``, ``coef_table()``, ``predict()`` as a DataFrame with
columns ``pred, se, ci_lower, ci_upper, pi_lower, pi_upper`` and the keys of ``to_dict()``.
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
from bayes_se.frequentist.robust import RobustResult, robust
from bayes_se.frequentist.robumeta import RobuResult, robu

__all__ = ["rma", "RMAResult", "regtest", "RegtestResult", "ranktest", "RanktestResult", "trimfill", "TrimfillResult",
           "leave1out", "rma_mv", "RmaMvResult", "matreg", "MatregResult", "robust", "RobustResult", "robu",
           "RobuResult", "selmodel", "SelmodelResult", "pet", "peese", "pet_peese", "PetPeeseResult", "bias_battery"]


_MULTILEVEL = ("rma_mv", "RmaMvResult", "matreg", "MatregResult")
# publication bias (issue 14): selection models, PET/PEESE, the battery; imported on first access
_PUBBIAS = {"selmodel": "selection", "SelmodelResult": "selection", "pet": "petpeese", "peese": "petpeese",
            "pet_peese": "petpeese", "PetPeeseResult": "petpeese", "bias_battery": "battery"}


def __getattr__(name: str):
    if name in _MULTILEVEL:
        return getattr(importlib.import_module("bayes_se.frequentist.multilevel"), name)
    if name in _PUBBIAS:
        return getattr(importlib.import_module(f"bayes_se.frequentist.{_PUBBIAS[name]}"), name)
    raise AttributeError(f"module 'bayes_se.frequentist' has no attribute {name!r}")
