"""Funnel-asymmetry tests (Egger's regtest, Begg's ranktest) against metafor 3.8-1."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import REFERENCE

from bayes_se.errors import SpecError
from bayes_se.frequentist import rma, ranktest, regtest

CLOSED_FORM_RTOL = 1e-6  # metafor, closed form (classic lm Egger test, Kendall's tau and its p-value)
ITERATIVE_RTOL = 1e-5  # metafor, regtest model="rma" refits with the iterative REML estimator

DATASETS = sorted(p.stem for p in (REFERENCE / "metafor").glob("*.json"))


def _load(name):
    ref = json.loads((REFERENCE / "metafor" / f"{name}.json").read_text())
    return ref, pd.read_csv(REFERENCE / ref["univariate_csv"])


REGTEST_CASES = [
    pytest.param(name, key, model, id=f"{name}-{key}")
    for name in DATASETS
    for key, model in (("rma_sei", "rma"), ("lm_sei_classic_egger", "lm"))
]


@pytest.mark.parametrize(("dataset", "key", "model"), REGTEST_CASES)
def test_regtest_matches_metafor(dataset, key, model):
    ref_all, frame = _load(dataset)
    ref = ref_all["regtest"][key]
    res = rma(frame["yi"], frame["vi"], method="REML")
    out = regtest(res, model=model)
    rtol = ITERATIVE_RTOL if model == "rma" else CLOSED_FORM_RTOL
    assert out.stat_type == ref["stat_type"]
    assert out.df == ref["df"]
    for field, attr in (("stat", "stat"), ("pval", "pval"), ("limit_estimate", "limit_estimate"),
                        ("limit_ci.lb", "limit_ci_lower"), ("limit_ci.ub", "limit_ci_upper")):
        assert getattr(out, attr) == pytest.approx(ref[field], rel=rtol), f"{dataset} {key} {field}"


@pytest.mark.parametrize("dataset", DATASETS)
def test_ranktest_matches_metafor(dataset):
    ref_all, frame = _load(dataset)
    out = ranktest(rma(frame["yi"], frame["vi"], method="REML"))
    assert out.tau == pytest.approx(ref_all["ranktest"]["tau"], rel=CLOSED_FORM_RTOL), dataset
    assert out.pval == pytest.approx(ref_all["ranktest"]["pval"], rel=CLOSED_FORM_RTOL), dataset


def test_bcg_regtest_knha_uses_t_and_unknown_model_is_a_spec_error():
    _, frame = _load("dat.bcg")
    res = rma(frame["yi"], frame["vi"], method="DL", test="knha")
    out = regtest(res)
    assert out.stat_type == "t" and out.df == 11
    with pytest.raises(SpecError, match="model"):
        regtest(res, model="glm")
