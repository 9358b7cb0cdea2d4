"""Funnel-asymmetry tests (Egger's regtest, Begg's ranktest) against metafor 3.8-1."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from conftest import REFERENCE

from bayes_se.errors import SpecError
from bayes_se.frequentist import rma, ranktest, regtest, trimfill

CLOSED_FORM_RTOL = 1e-6  # metafor, closed form (classic lm Egger test, Kendall's tau and its p-value)
ITERATIVE_RTOL = 1e-5  # metafor, refits with the iterative REML estimator (regtest model="rma", trimfill)
ZERO_ATOL = 1e-10  # absolute floor only where the reference is exactly 0 (tau^2 of an EE fit)

DATASETS = sorted(p.stem for p in (REFERENCE / "metafor").glob("dat.*.json"))  # formula_*.json: test_formula_metafor


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


METAFOR_DEFAULT_THRESHOLD = 1e-5  # metafor's trimfill refits with its default control, not the model's 1e-12

TRIMFILL_CASES = [
    pytest.param(name, key, id=f"{name}-{key}") for name in DATASETS for key in _load(name)[0]["trimfill"]
]


@pytest.mark.parametrize(("dataset", "key"), TRIMFILL_CASES)
def test_trimfill_matches_metafor(dataset, key):
    ref_all, frame = _load(dataset)
    ref = ref_all["trimfill"][key]
    res = rma(frame["yi"], frame["vi"], method=ref["input_method"])
    out = trimfill(res, estimator=ref["estimator"], threshold=METAFOR_DEFAULT_THRESHOLD)
    # EE refits are closed form; REML refits iterate (from the same start, with the same stopping rule)
    rtol = CLOSED_FORM_RTOL if ref["input_method"] == "EE" else ITERATIVE_RTOL
    assert (out.side, out.k0, out.fit.k) == (ref["side"], ref["k0"], ref["k_total"])
    assert out.se_k0 == pytest.approx(ref["se.k0"], rel=CLOSED_FORM_RTOL)
    if ref["p.k0"] is None:
        assert math.isnan(out.p_k0)
    else:
        assert out.p_k0 == pytest.approx(ref["p.k0"], rel=CLOSED_FORM_RTOL)
    fit = out.fit
    for field, value in (("estimate", fit.beta[0]), ("se", fit.se[0]), ("zval", fit.stat[0]), ("pval", fit.pval[0]),
                         ("ci.lb", fit.ci_lower[0]), ("ci.ub", fit.ci_upper[0]), ("tau2", fit.tau2), ("I2", fit.I2),
                         ("QE", fit.QE), ("QEp", fit.QE_p)):
        assert value == pytest.approx(ref[field], rel=rtol, abs=ZERO_ATOL if ref[field] == 0 else 0), field
    assert out.filled_yi == pytest.approx(ref["filled_yi"], rel=rtol)
    assert out.filled_vi == pytest.approx(ref["filled_vi"], rel=CLOSED_FORM_RTOL)
