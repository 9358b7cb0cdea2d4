"""One naming across the frequentist results: ``rma`` (RMAResult), ``rma_mv`` (RmaMvResult), ``matreg``.

Each result has ``beta, se, stat, pval, ci_lower, ci_upper, vcov, coef_names``; ``coef_table()``
has the columns ``estimate, se, stat, pval, ci_lower, ci_upper``; ``predict()`` returns a DataFrame
with metafor's ``pred, se, ci.lb, ci.ub, pi.lb, pi.ub`` as ``pred, se, ci_lower, ci_upper, pi_lower,
pi_upper``; ``to_dict()`` shares its keys; ``summary()`` heads its coefficient table the same way.
Values are checked against metafor 3.8-1 (tests/reference/metafor) on dat.konstantopoulos2011
(rma and rma.mv) and dat.craft2003 (matreg).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import REFERENCE

from bayes_se.frequentist import matreg, rma, rma_mv
from bayes_se.frequentist.common import COEF_COLUMNS, COMMON_KEYS, PREDICT_COLUMNS

ITER_RTOL = 1e-5  # metafor, iterative estimators (REML) and all that follows from them
CLOSED_FORM_RTOL = 1e-6  # metafor, closed forms (matreg)
#: metafor's names of the prediction columns -> ours
METAFOR_PREDICT = {"pred": "pred", "se": "se", "ci.lb": "ci_lower", "ci.ub": "ci_upper", "pi.lb": "pi_lower",
                   "pi.ub": "pi_upper"}
#: keys rma and rma_mv share beyond COMMON_KEYS
META_KEYS = ("k", "p", "method", "test", "df", "estimate", "se", "ci_lower", "ci_upper", "pi_lower", "pi_upper",
             "Q", "Q_df", "Q_p", "fit_stats")


def _ref():
    return json.loads((REFERENCE / "metafor" / "dat.konstantopoulos2011.json").read_text())


@pytest.fixture(scope="module")
def fits():
    d = pd.read_csv(REFERENCE / "data" / "dat.konstantopoulos2011.csv")
    craft = json.loads((REFERENCE / "metafor" / "dat.craft2003.json").read_text())["rma_mv"]
    R = pd.DataFrame(craft["pooled_R"]["R"], columns=craft["pooled_R"]["names"])
    return {
        "rma": rma(d.yi, d.vi, method="REML"),
        "rma_mv": rma_mv(d.yi, d.vi, cluster=d.district, cluster_name="district", effect_name="school"),
        "matreg": matreg(R, craft["multivariate_UN_REML"]["vcov"], "perf", ["acog", "asom", "conf"]),
    }


def _predict(name, res):
    return res.predict([[1.0, 0.0, 0.0]]) if name == "matreg" else res.predict()


@pytest.mark.parametrize("name", ["rma", "rma_mv", "matreg"])
def test_same_attributes_and_coef_table(fits, name):
    res = fits[name]
    for old in ("ci_lb", "ci_ub", "zval"):
        assert not hasattr(res, old), f"{name}.{old}"
    table = res.coef_table()
    assert tuple(table.columns) == COEF_COLUMNS
    assert list(table.index) == list(res.coef_names)
    for col, attr in zip(COEF_COLUMNS, ("beta", "se", "stat", "pval", "ci_lower", "ci_upper")):
        np.testing.assert_array_equal(table[col].to_numpy(), np.asarray(getattr(res, attr), float))


def test_predict_has_the_same_columns_for_all_three(fits):
    for name, res in fits.items():
        pred = _predict(name, res)
        assert isinstance(pred, pd.DataFrame), name
        assert tuple(pred.columns) == PREDICT_COLUMNS, name


@pytest.mark.parametrize("name, key", [("rma", ("rma", "REML", "z")), ("rma_mv", ("rma_mv", "multilevel_REML"))])
def test_predict_matches_metafor(fits, name, key):
    ref = _ref()
    for part in key:
        ref = ref[part]
    pred = fits[name].predict()
    assert len(pred) == 1
    for theirs, ours in METAFOR_PREDICT.items():
        np.testing.assert_allclose(pred[ours].iloc[0], ref["prediction"][theirs], rtol=ITER_RTOL, err_msg=ours)
    out = fits[name].to_dict()  # the intercept-only to_dict carries the same prediction interval
    np.testing.assert_allclose([out["pi_lower"], out["pi_upper"]], [ref["prediction"]["pi.lb"],
                               ref["prediction"]["pi.ub"]], rtol=ITER_RTOL)


def test_matreg_predict_of_a_unit_vector_is_the_coefficient(fits):
    res = fits["matreg"]
    pred = res.predict(np.eye(len(res.coef_names)))
    for ours, col in (("pred", "estimate"), ("se", "se"), ("ci_lower", "ci_lower"), ("ci_upper", "ci_upper")):
        np.testing.assert_allclose(pred[ours].to_numpy(), res.coef_table()[col].to_numpy(), rtol=1e-12)
    assert pred["pi_lower"].isna().all() and pred["pi_upper"].isna().all()
    ref = json.loads((REFERENCE / "metafor" / "dat.craft2003.json").read_text())["rma_mv"]
    want = ref["matreg_perf_on_acog_asom_conf"]["coefficients"]["asom"]
    np.testing.assert_allclose(pred["ci_lower"].iloc[1], want["ci.lb"], rtol=CLOSED_FORM_RTOL)


def test_predict_without_a_prediction_interval_gives_nan_columns():
    d = pd.read_csv(REFERENCE / "data" / "dat.konstantopoulos2011.csv")
    ee = rma(d.yi, d.vi, method="EE").predict()
    assert tuple(ee.columns) == PREDICT_COLUMNS and ee[["pi_lower", "pi_upper"]].isna().all(axis=None)


def test_to_dict_shares_its_keys(fits):
    dicts = {name: res.to_dict() for name, res in fits.items()}
    for name, out in dicts.items():
        json.dumps(out, allow_nan=False)
        assert set(COMMON_KEYS) <= set(out), name
        assert out["model"] == name
        for coef in out["coefficients"].values():
            assert tuple(coef) == COEF_COLUMNS, name
    for name in ("rma", "rma_mv"):
        assert set(META_KEYS) <= set(dicts[name]), name
        assert set(dicts[name]["fit_stats"]) == {"ML", "REML"}
        assert set(dicts[name]["fit_stats"]["REML"]) == {"ll", "dev", "AIC", "BIC", "AICc"}
    ref = _ref()["rma_mv"]["multilevel_REML"]
    assert dicts["rma_mv"]["Q"] == pytest.approx(ref["QE"], rel=CLOSED_FORM_RTOL)
    assert dicts["rma_mv"]["Q_df"] == ref["QEdf"]


def test_summary_heads_the_coefficient_table_alike(fits):
    heads = {}
    for name, res in fits.items():
        text = res.summary()
        line = next(ln for ln in text.splitlines() if "estimate" in ln and "ci_upper" in ln)
        heads[name] = line.split()
    assert heads["rma"] == heads["rma_mv"] == heads["matreg"] == ["estimate", "se", "zval", "pval", "ci_lower",
                                                                   "ci_upper"]


def test_confint_tables_share_columns(fits):
    tau2 = fits["rma"].confint_tau2()
    sigma2 = fits["rma_mv"].confint_sigma2()
    assert list(tau2.columns) == list(sigma2.columns) == ["estimate", "ci_lower", "ci_upper"]
    assert list(sigma2.index) == ["district", "district/school"]
