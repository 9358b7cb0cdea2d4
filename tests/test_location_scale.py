"""Location-scale models (issue 15): ``log tau_i^2 = z_i' alpha`` (Viechtbauer & Lopez-Lopez 2022).

Frequentist: ``rma(..., scale=)`` against metafor 3.8-1 (tests/reference/location_scale/, written by
location_scale.R beside it) on dat.bangertdrowns2004 and the bundled Metapsy table, REML and ML,
continuous and categorical scale moderators. Bayesian: the MCMC builder and the exact 2-D engine
(one binary scale moderator) against each other and against an independent brute-force quadrature.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_se import cli
from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist import rma
from bayes_se.frequentist.location_scale import LocationScaleResult, ls_loglik, rma_ls

TESTS = pathlib.Path(__file__).parent
REF = TESTS / "reference" / "location_scale"
METAPSY = TESTS.parent / "data" / "metapsy_depression_selfguided.csv"
ITERATIVE_RTOL = 1e-5  # iterative fits (metafor optimum and numDeriv Hessian) against ours
ALGEBRA_RTOL = 1e-6  # closed-form derivatives against finite differences

CASES = json.loads((REF / "location_scale.json").read_text())["cases"]


def _frame(name: str) -> pd.DataFrame:
    if name == "dat.bangertdrowns2004":
        return pd.read_csv(TESTS / "reference" / "data" / "dat.bangertdrowns2004.csv")
    frame = pd.read_csv(METAPSY)
    frame["guided"] = (frame["support"] == "human").astype(int)  # as location_scale.R
    return frame


def _fit(case) -> LocationScaleResult:
    frame = _frame(case["data"])
    mods = None if case["mods"].replace(" ", "") == "~1" else case["mods"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the rows with a missing moderator, named in a DataWarning
        return rma(frame["yi"], frame["vi"], mods=mods, scale=case["scale"], data=frame, method=case["method"],
                   test=case["test"])


@pytest.fixture(scope="module", params=CASES, ids=[c["name"] for c in CASES])
def fitted(request):
    return request.param, _fit(request.param)


def _close(got, want, rtol=ITERATIVE_RTOL):
    np.testing.assert_allclose(np.asarray(got, float).ravel(), np.asarray(want, float).ravel(), rtol=rtol, atol=0)


def test_location_part_matches_metafor(fitted):
    case, res = fitted
    assert res.k == case["k"] and res.p == case["p"] and res.q == case["q"] and res.parms == case["parms"]
    assert list(res.omitted_rows) == list(case["omitted_rows"])
    for ours, theirs in (("beta", "beta"), ("se", "se"), ("stat", "zval"), ("pval", "pval"),
                         ("ci_lower", "ci_lb"), ("ci_upper", "ci_ub"), ("vcov", "vb")):
        _close(getattr(res, ours), case[theirs])
    _close(res.QM, case["QM"])
    _close(res.QM_p, case["QMp"])
    _close(res.QE, case["QE"])
    _close(res.QE_p, case["QEp"])


def test_scale_part_matches_metafor(fitted):
    case, res = fitted
    for ours, theirs in (("alpha", "alpha"), ("se_alpha", "se_alpha"), ("stat_alpha", "zval_alpha"),
                         ("pval_alpha", "pval_alpha"), ("ci_lower_alpha", "ci_lb_alpha"),
                         ("ci_upper_alpha", "ci_ub_alpha"), ("tau2", "tau2")):
        _close(getattr(res, ours), case[theirs])
    # covariance of alpha: each element relative to se_i se_j (an off-diagonal near 0 has no digits
    # of its own to compare when a scale moderator is far from 0, e.g. year)
    va = np.asarray(case["va"], float).reshape(res.q, res.q)
    scale = np.outer(case["se_alpha"], case["se_alpha"])
    assert np.max(np.abs(res.vcov_alpha - va) / scale) < ITERATIVE_RTOL
    _close(res.QS, case["QS"])
    _close(res.QS_p, case["QSp"])


def test_fit_statistics_and_likelihood_ratio_test_match_metafor(fitted):
    case, res = fitted
    _close(res.fit_stats["ML"], case["fit_ML"])
    _close(res.fit_stats["REML"], case["fit_REML"])
    _close(res.ll_reduced, case["ll_reduced"])
    _close(res.LRT, case["LRT"])
    _close(res.LRT_p, case["LRT_pval"])
    assert res.LRT_df == res.q - 1


def test_names_follow_the_formula_language():
    case = next(c for c in CASES if c["name"] == "mp_control_REML")
    res = _fit(case)
    metafor_names = [n.replace("intrcpt", "intercept") for n in case["scale_names"]]
    assert res.scale_names == metafor_names == ["intercept", "controlother ctr", "controlwl"]
    table = res.scale_coef_table()
    assert list(table.columns) == list(res.coef_table().columns)
    assert list(table.index) == res.scale_names


def test_analytic_derivatives_equal_finite_differences():
    rng = np.random.default_rng(5)
    k = 25
    X = np.column_stack([np.ones(k), rng.normal(size=k)])
    Z = np.column_stack([np.ones(k), rng.normal(size=k), rng.integers(0, 2, k)])
    vi = rng.uniform(0.02, 0.2, k)
    yi = X @ [0.3, 0.1] + rng.normal(size=k) * np.sqrt(vi + 0.05)
    a = np.array([-2.5, 0.3, 0.4])
    for reml in (True, False):
        _, g, H = ls_loglik(a, yi, vi, X, Z, reml, derivatives=True)
        h = 1e-5
        E = np.eye(3) * h
        g_fd = np.array([(ls_loglik(a + e, yi, vi, X, Z, reml) - ls_loglik(a - e, yi, vi, X, Z, reml)) / (2 * h)
                         for e in E])
        H_fd = np.array([(ls_loglik(a + e, yi, vi, X, Z, reml, True)[1] - ls_loglik(a - e, yi, vi, X, Z, reml, True)[1])
                         / (2 * h) for e in E])
        np.testing.assert_allclose(g, g_fd, rtol=ALGEBRA_RTOL, atol=1e-8)
        np.testing.assert_allclose(H, H_fd, rtol=ALGEBRA_RTOL, atol=1e-7)


def test_constant_scale_is_the_ordinary_random_effects_model():
    frame = _frame("metapsy")
    for method in ("REML", "ML"):
        ls = rma(frame["yi"], frame["vi"], mods="control", scale="~ 1", data=frame, method=method)
        re = rma(frame["yi"], frame["vi"], mods="control", data=frame, method=method)
        assert np.exp(ls.alpha[0]) == pytest.approx(re.tau2, rel=1e-7)
        _close(ls.beta, re.beta, rtol=1e-7)
        assert ls.LRT is None  # nothing to test against


def test_predict_uses_each_studys_tau2():
    case = next(c for c in CASES if c["name"] == "mp_guided_REML")
    res = _fit(case)
    pr = res.predict(newmods=[[0], [1]], newscale=[[0], [1]])
    tau2 = np.exp(res.alpha[0] + np.array([0, 1]) * res.alpha[1])
    _close(pr["tau2"], tau2, rtol=1e-12)
    half = 1.959963984540054 * np.sqrt(pr["se"] ** 2 + tau2)
    _close(pr["pi_upper"] - pr["pred"], half, rtol=1e-9)


def test_to_dict_is_strict_json_with_scale_coefficients():
    res = _fit(next(c for c in CASES if c["name"] == "bd_length_REML"))
    out = res.to_dict()
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text)["model"] == "rma_ls"
    assert set(out["scale_coefficients"]["length"]) == {"estimate", "se", "zval", "pval", "ci_lower", "ci_upper"}
    assert len(out["tau2"]) == res.k
    assert "rows left out" in res.summary() and "Scale" in res.summary()


def test_bad_input_is_refused_with_its_key():
    frame = _frame("metapsy")
    with pytest.raises(SpecError) as e:
        rma(frame["yi"], frame["vi"], scale="control", data=frame, method="DL")
    assert e.value.key == "method"
    with pytest.raises(DataError) as e:
        rma(frame["yi"], frame["vi"], scale="nosuch", data=frame)
    assert "nosuch" in str(e.value)
    with pytest.raises(SpecError) as e:
        rma(frame["yi"], frame["vi"], scale="control")
    assert e.value.key == "scale"
    bd = _frame("dat.bangertdrowns2004")
    with pytest.raises(DataError) as e:
        rma_ls(bd["yi"], bd["vi"], mods="length", scale="length", data=bd, na="error")
    assert e.value.column == "length"


# -- CLI --------------------------------------------------------------------------------------------

def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_freq_scale_json_matches_metafor(capsys, tmp_path):
    case = next(c for c in CASES if c["name"] == "mp_guided_ML")
    path = tmp_path / "guided.csv"
    _frame("metapsy").to_csv(path, index=False)
    code, out, err = run_cli(capsys, "freq", path, "--mods", "guided", "--scale", "guided", "--method", "ML",
                             "--json")
    assert code == 0, err
    got = json.loads(out)
    sc = got["scale_coefficients"]
    assert list(sc) == ["intercept", "guided"]
    _close([sc[n]["estimate"] for n in sc], case["alpha"])
    _close([sc[n]["se"] for n in sc], case["se_alpha"])
    _close([sc[n]["zval"] for n in sc], case["zval_alpha"])
    _close([sc[n]["pval"] for n in sc], case["pval_alpha"])
    _close(got["LRT"], case["LRT"])


@pytest.mark.parametrize("argv, needle", [
    (["--scale", "control", "--cluster", "study_id"], "--cluster"),
    (["--scale", "control", "--method", "DL"], "REML or ML"),
])
def test_cli_scale_refusals_are_one_line(capsys, argv, needle):
    code, out, err = run_cli(capsys, "freq", METAPSY, *argv)
    assert code == 2 and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1
