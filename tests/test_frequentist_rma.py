"""bayes_se.frequentist.rma against metafor 3.8-1 (``tests/reference/metafor/*.json``).

Every dataset x tau^2 estimator x test is compared field by field: the pooled estimate and its
inference, tau^2 and its SE, I^2, H^2, Q, prediction interval, weights, fit statistics, the
Q-profile and profile-likelihood intervals, meta-regressions, BLUPs and leave-one-out refits.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import REFERENCE
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist import rma

CLOSED_FORM_RTOL = 1e-6  # metafor, closed-form estimators (EE, DL, HE, HS, SJ) and all that follows from them
ITERATIVE_RTOL = 1e-5  # metafor, iterative estimators (REML, ML, PM, EB) and root-found interval bounds
ZERO_ATOL = 1e-10  # absolute floor, used only where the reference value is ~0 (|ref| < ZERO_SCALE)
ZERO_SCALE = 1e-8  # below this a reference value counts as ~0 (e.g. tau^2 truncated at 0)

CLOSED_FORM = {"EE", "DL", "HE", "HS", "SJ"}

DATASETS = sorted(p.stem for p in (REFERENCE / "metafor").glob("dat.*.json"))  # formula_*.json: test_formula_metafor


def _load(name):
    ref = json.loads((REFERENCE / "metafor" / f"{name}.json").read_text())
    frame = pd.read_csv(REFERENCE / ref["univariate_csv"])
    return ref, frame


_CACHE = {name: _load(name) for name in DATASETS}


def rtol_for(method: str) -> float:
    return CLOSED_FORM_RTOL if method in CLOSED_FORM else ITERATIVE_RTOL


def close(actual, expected, rtol, what=""):
    """Relative comparison with an absolute floor only for reference values that are ~0."""
    actual = np.asarray(actual, float)
    expected = np.asarray(expected, float)
    atol = np.where(np.abs(expected) < ZERO_SCALE, ZERO_ATOL, 0.0)
    bad = np.abs(actual - expected) > rtol * np.abs(expected) + atol
    assert not bad.any(), f"{what}: got {actual[bad]}, metafor {expected[bad]} (rtol {rtol})"


RMA_CASES = [
    pytest.param(name, method, test, id=f"{name}-{method}-{test}")
    for name in DATASETS
    for method in _CACHE[name][0]["rma"]
    for test in _CACHE[name][0]["rma"][method]
]


@pytest.mark.parametrize(("dataset", "method", "test"), RMA_CASES)
def test_rma_matches_metafor(dataset, method, test):
    ref_all, frame = _CACHE[dataset]
    ref = ref_all["rma"][method][test]
    res = rma(frame["yi"], frame["vi"], method=method, test=test)
    rtol = rtol_for(method)
    fields = {
        "estimate": res.beta[0], "se": res.se[0], "stat": res.stat[0], "pval": res.pval[0],
        "ci.lb": res.ci_lower[0], "ci.ub": res.ci_upper[0], "tau2": res.tau2, "se.tau2": res.se_tau2,
        "tau": res.tau, "I2": res.I2, "H2": res.H2, "QE": res.QE, "QEp": res.QE_p,
    }
    assert res.k == ref["k"] and res.p == ref["p"] and res.QE_df == ref["QEdf"]
    assert res.df == ref["df"]
    for key, value in fields.items():
        if ref[key] is None:  # se.tau2 of EE
            assert method == "EE" and math.isnan(value)
            continue
        close(value, ref[key], rtol, f"{dataset} {method} {test} {key}")
    if ref["s2w_knha"] is not None:
        close(res.s2w, ref["s2w_knha"], rtol, f"{dataset} {method} {test} s2w")
    pred = res.predict().iloc[0]
    pr = ref["prediction"]
    for key, col in (("pred", "pred"), ("se", "se"), ("ci.lb", "ci_lower"), ("ci.ub", "ci_upper")):
        close(pred[col], pr[key], rtol, f"{dataset} {method} {test} prediction {key}")
    if pr["pi.lb"] == []:  # metafor gives no prediction interval for an equal-effects model
        assert method == "EE" and math.isnan(pred["pi_lower"])
    else:
        close(pred["pi_lower"], pr["pi.lb"], rtol, f"{dataset} {method} {test} pi.lb")
        close(pred["pi_upper"], pr["pi.ub"], rtol, f"{dataset} {method} {test} pi.ub")
    close(res.weights, ref["weights_percent"], rtol, f"{dataset} {method} {test} weights")
    for kind in ("ML", "REML"):
        for stat, value in ref["fit.stats"][kind].items():
            close(res.fit_stats.loc[stat, kind], value, rtol, f"{dataset} {method} {test} fit.stats {kind} {stat}")


CI_CASES = [
    pytest.param(name, method, kind, id=f"{name}-{method}-{kind}")
    for name in DATASETS
    for method, tests in _CACHE[name][0]["rma"].items()
    for kind in ("confint_random", "confint_random_PL")
    if kind in tests["z"]
]


@pytest.mark.parametrize(("dataset", "method", "kind"), CI_CASES)
def test_confint_tau2_matches_metafor(dataset, method, kind):
    ref_all, frame = _CACHE[dataset]
    ref = ref_all["rma"][method]["z"][kind]
    res = rma(frame["yi"], frame["vi"], method=method)
    ci = res.confint_tau2("PL" if kind.endswith("PL") else "QP")
    for row in ("tau2", "tau", "I2", "H2"):
        close(ci.loc[row, "estimate"], ref[row]["estimate"], rtol_for(method), f"{dataset} {method} {row}")
        for key, col in (("ci.lb", "ci_lower"), ("ci.ub", "ci_upper")):
            # interval bounds are roots found iteratively, whatever the estimator
            close(ci.loc[row, col], ref[row][key], ITERATIVE_RTOL, f"{dataset} {method} {kind} {row} {key}")


# metafor formula -> (our formula, frame preparation, {our coefficient name: metafor's})
def _prep_metareg(dataset, label, frame):
    frame = frame.copy()
    if dataset == "dat.bangertdrowns2004" and label == "meta":
        return frame[frame["meta"].notna()].reset_index(drop=True), "meta", {"meta": "meta"}
    if dataset == "dat.bangertdrowns2004" and label == "grade":
        return frame, "factor(grade)", {f"factor(grade){g}": f"factor(grade){g}" for g in "234"}
    if dataset == "dat.bcg" and label == "alloc":
        return frame, "factor(alloc)", {f"factor(alloc){a}": f"factor(alloc){a}" for a in ("random", "systematic")}
    if dataset == "dat.bcg" and label == "ablat_year":
        return frame, "ablat + year", {"ablat": "ablat", "year": "year"}
    if dataset in ("dat.berkey1998", "dat.konstantopoulos2011") and label == "year":
        centre = 1983 if dataset == "dat.berkey1998" else 1990
        frame["year_c"] = frame["year"] - centre
        return frame, "year_c", {"year_c": f"I(year - {centre})"}
    if label in ("sport", "design", "tester"):
        level = {"sport": "T", "design": "cohort", "tester": "blind"}[label]
        return frame, label, {f"{label}{level}": f"{label}{level}"}
    return frame, label, {label: label}  # continuous: ablat, weeks.c


METAREG_CASES = [
    pytest.param(name, label, fit, id=f"{name}-{label}-{fit}")
    for name in DATASETS
    for label, spec in _CACHE[name][0]["metareg"].items()
    for fit in spec
    if fit != "formula"
]


@pytest.mark.parametrize(("dataset", "label", "fit"), METAREG_CASES)
def test_metareg_matches_metafor(dataset, label, fit):
    ref_all, frame = _CACHE[dataset]
    ref = ref_all["metareg"][label][fit]
    data, formula, names = _prep_metareg(dataset, label, frame)
    names = {"intercept": "intrcpt", **names}
    res = rma(data["yi"], data["vi"], mods=formula, data=data, method=ref["method"], test=ref["test"])
    rtol = rtol_for(ref["method"])
    tag = f"{dataset} {label} {fit}"
    assert res.k == ref["k"] and res.p == ref["p"]
    assert [names[n] for n in res.coef_names] == list(ref["coefficients"])
    for j, name in enumerate(res.coef_names):
        coef = ref["coefficients"][names[name]]
        for key, value in (("estimate", res.beta[j]), ("se", res.se[j]), ("stat", res.stat[j]),
                           ("pval", res.pval[j]), ("ci.lb", res.ci_lower[j]), ("ci.ub", res.ci_upper[j])):
            close(value, coef[key], rtol, f"{tag} {names[name]} {key}")
    for key, value in (("QM", res.QM), ("QMp", res.QM_p), ("tau2", res.tau2), ("se.tau2", res.se_tau2),
                       ("I2", res.I2), ("H2", res.H2), ("R2", res.R2), ("QE", res.QE), ("QEp", res.QE_p)):
        close(value, ref[key], rtol, f"{tag} {key}")
    close(res.vcov, np.array(ref["vcov"]), rtol, f"{tag} vcov")
    for kind in ("ML", "REML"):
        for stat, value in ref["fit.stats"][kind].items():
            close(res.fit_stats.loc[stat, kind], value, rtol, f"{tag} fit.stats {kind} {stat}")
    if "confint_random" in ref:
        ci = res.confint_tau2()
        for row in ("tau2", "tau", "I2", "H2"):
            for key, col in (("ci.lb", "ci_lower"), ("ci.ub", "ci_upper")):
                close(ci.loc[row, col], ref["confint_random"][row][key], ITERATIVE_RTOL, f"{tag} QP {row} {key}")


BLUP_CASES = [
    pytest.param(name, method, id=f"{name}-{method}") for name in DATASETS for method in _CACHE[name][0]["blup"]
]


@pytest.mark.parametrize(("dataset", "method"), BLUP_CASES)
def test_blup_matches_metafor(dataset, method):
    ref_all, frame = _CACHE[dataset]
    ref = ref_all["blup"][method]
    res = rma(frame["yi"], frame["vi"], method=method, slab=frame["study"])
    blup = res.blup()
    assert len(blup) == len(ref["pred"])
    for key, col in (("pred", "pred"), ("se", "se"), ("pi.lb", "pi_lower"), ("pi.ub", "pi_upper")):
        close(blup[col].to_numpy(), ref[key], rtol_for(method), f"{dataset} blup {method} {key}")


@pytest.mark.parametrize("dataset", DATASETS)
def test_leave1out_REML_matches_metafor(dataset):
    ref_all, frame = _CACHE[dataset]
    ref = ref_all["leave1out_REML"]
    res = rma(frame["yi"], frame["vi"], method="REML", slab=frame["study"])
    l1o = res.leave1out()
    pairs = (("estimate", "estimate"), ("se", "se"), ("zval", "stat"), ("pval", "pval"), ("ci.lb", "ci_lower"),
             ("ci.ub", "ci_upper"), ("Q", "Q"), ("Qp", "Q_p"), ("tau2", "tau2"), ("I2", "I2"), ("H2", "H2"))
    for key, col in pairs:
        close(l1o[col].to_numpy(), ref[key], ITERATIVE_RTOL, f"{dataset} leave1out {key}")


# --------------------------------------------------------------------------- API and errors
def _bcg():
    return _CACHE["dat.bcg"][1]


def test_bcg_method_aliases_and_effectdata_duck_typing():
    frame = _bcg()

    effects = SimpleNamespace(  # the duck-typed EffectData interface
        yi=frame["yi"].to_numpy(), vi=frame["vi"].to_numpy(), study=frame["study"].tolist(), frame=frame
    )

    for alias in ("FE", "CE", "ee"):
        assert rma(frame["yi"], frame["vi"], method=alias).method == "EE"
    res = rma(effects, mods="ablat + alloc")
    assert res.coef_names == ["intercept", "ablat", "allocrandom", "allocsystematic"]
    assert res.slab[0] == "Aronson 1948"
    assert "alloc: treatment coding, reference level 'alternate'" in res.summary()
    direct = rma(frame["yi"], frame["vi"], X=frame[["ablat"]].to_numpy(), coef_names=["ablat"])
    assert direct.coef_names == ["intercept", "ablat"]
    via_formula = rma(frame["yi"], frame["vi"], mods="ablat", data=frame)
    np.testing.assert_allclose(direct.beta, via_formula.beta, rtol=1e-12)


def test_bcg_to_dict_is_json_ready():
    frame = _bcg()
    for kwargs in ({"method": "REML"}, {"method": "EE"}, {"method": "DL", "mods": "ablat", "data": frame}):
        out = rma(frame["yi"], frame["vi"], **kwargs).to_dict()
        text = json.dumps(out, allow_nan=False)  # raises on NaN/inf
        assert json.loads(text)["k"] == 13
        for key in ("k", "method", "test", "estimate", "se", "ci_lower", "ci_upper", "tau2", "tau2_ci_lower",
                    "tau2_ci_upper", "I2", "H2", "Q", "Q_p", "pi_lower", "pi_upper"):
            assert key in out
    assert out["coefficients"]["ablat"]["estimate"] == pytest.approx(-0.02922873876, rel=CLOSED_FORM_RTOL)
    assert set(out) >= {"QM", "QM_p", "R2"}
    ee = rma(frame["yi"], frame["vi"], method="EE").to_dict()
    assert ee["pi_lower"] is None and ee["tau2_ci_lower"] is None


def test_bcg_predict_newmods_matches_fitted_values():
    frame = _bcg()
    res = rma(frame["yi"], frame["vi"], mods="ablat", data=frame, method="REML")
    fitted = res.predict()
    new = res.predict(frame["ablat"].to_numpy()[:, None])
    np.testing.assert_allclose(new["pred"], fitted["pred"], rtol=1e-12)
    assert len(fitted) == res.k
    one = res.predict([20.0])
    assert one["pred"].iloc[0] == pytest.approx(res.beta[0] + 20 * res.beta[1], rel=1e-12)
    assert (one["pi_lower"] < one["ci_lower"]).all()


@pytest.mark.parametrize(
    ("yi", "vi", "message", "row"),
    [
        ([0.1, 0.2, 0.3], [0.1, 0.0, 0.2], "positive", 2),
        ([0.1, 0.2, 0.3], [0.1, -1.0, 0.2], "positive", 2),
        ([0.1, float("nan"), 0.3], [0.1, 0.1, 0.2], "non-finite", 2),
        ([0.1, 0.2, 0.3], [0.1, 0.2, float("nan")], "non-finite", 3),
        ([0.1], [0.1], "at least 2", None),
    ],
)
def test_bad_input_raises_data_error_naming_row(yi, vi, message, row):
    with pytest.raises(DataError, match=message) as info:
        rma(yi, vi)
    assert info.value.row == row


def test_bcg_too_many_coefficients_and_bad_spec():
    frame = _bcg().iloc[:3].reset_index(drop=True)
    with pytest.raises(DataError, match="too few studies"):
        rma(frame["yi"], frame["vi"], mods="ablat + year", data=frame)
    with pytest.raises(SpecError, match="method"):
        rma(frame["yi"], frame["vi"], method="XYZ")
    with pytest.raises(SpecError, match="test"):
        rma(frame["yi"], frame["vi"], test="t")
    with pytest.raises(SpecError, match="mods"):
        rma(frame["yi"], frame["vi"], mods="ablat")  # a formula needs a data frame


METAFOR_DEFAULT_THRESHOLD = 1e-5  # metafor's default control$threshold for Fisher scoring
# Same start, same steps, same stopping rule: the very same iterate, so agreement is limited only by
# the 10 significant digits of the JSON (tight- and default-control tau^2 differ by ~1e-7 relative,
# so ITERATIVE_RTOL could not tell them apart).
SAME_ITERATE_RTOL = 1e-8

DEFAULT_CONTROL_CASES = [
    pytest.param(name, method, id=f"{name}-{method}") for name in DATASETS for method in ("REML", "ML", "EB")
]


@pytest.mark.parametrize(("dataset", "method"), DEFAULT_CONTROL_CASES)
def test_fisher_scoring_reproduces_metafor_default_control(dataset, method):
    """With metafor's default threshold our Fisher scoring stops at the same iterate as metafor's."""
    ref_all, frame = _CACHE[dataset]
    ref = ref_all["rma"][method]["z"]
    res = rma(frame["yi"], frame["vi"], method=method, threshold=METAFOR_DEFAULT_THRESHOLD)
    close(res.beta[0], ref["estimate_default_control"], SAME_ITERATE_RTOL, f"{dataset} {method} estimate")
    close(res.tau2, ref["tau2_default_control"], SAME_ITERATE_RTOL, f"{dataset} {method} tau2")


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(3, 12),
    method=st.sampled_from(["REML", "ML", "DL", "PM", "EB", "SJ", "HS", "HE", "EE"]),
    shift=st.floats(-5, 5),
)
def test_rma_is_invariant_to_study_order_and_shifts_with_location(seed, k, method, shift):
    rng = np.random.default_rng(seed)
    vi = rng.uniform(0.01, 0.5, k)
    yi = rng.normal(0.3, np.sqrt(vi + 0.1))
    res = rma(yi, vi, method=method)
    perm = rng.permutation(k)
    res_perm = rma(yi[perm], vi[perm], method=method)
    res_shift = rma(yi + shift, vi, method=method)
    rtol = rtol_for(method)
    assert res_perm.beta[0] == pytest.approx(res.beta[0], rel=rtol, abs=ZERO_ATOL)
    assert res_perm.tau2 == pytest.approx(res.tau2, rel=rtol, abs=ZERO_ATOL)
    assert res_shift.beta[0] == pytest.approx(res.beta[0] + shift, rel=rtol, abs=1e-9)
    assert res_shift.tau2 == pytest.approx(res.tau2, rel=rtol, abs=ZERO_ATOL)
    assert res.tau2 >= 0 and 0 <= res.I2 < 100


def test_frequentist_import_stays_light():
    code = (
        "import sys, bayes_se.frequentist, bayes_se.formula; "
        "print(sorted(m for m in ('pymc', 'arviz', 'matplotlib', 'pytensor') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_saturated_common_effect_model_matches_metafor():
    """k = p under EE: metafor fits it (QE(df = 0) = 0, p = 1, I2 = 0, H2 = 1); we used to divide by 0.
    Reference: tests/reference/metafor/saturated_ee.R (metafor 3.8-1)."""
    ref = json.loads((REFERENCE / "metafor" / "saturated_ee.json").read_text())
    data = pd.DataFrame({"yi": [0.1, 0.3], "vi": [0.01, 0.02], "x": [1.0, 2.0]})
    res = rma(data["yi"], data["vi"], mods="~ x", data=data, method="EE")
    np.testing.assert_allclose(res.beta, ref["beta"], rtol=1e-6, atol=1e-15)
    np.testing.assert_allclose(res.se, ref["se"], rtol=1e-6)
    assert res.QE == pytest.approx(ref["QE"], abs=1e-12) and res.QE_p == ref["QEp"]
    assert res.QM == pytest.approx(ref["QM"], rel=1e-6) and res.QM_p == pytest.approx(ref["QMp"], rel=1e-6)
    assert (res.I2, res.H2) == (ref["I2"], ref["H2"])
    ml = res.fit_stats["ML"]
    for key in ("ll", "AIC", "BIC", "AICc"):
        assert ml[key] == pytest.approx(ref[key], rel=1e-6), key
