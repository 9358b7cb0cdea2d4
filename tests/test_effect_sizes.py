"""Effect sizes from raw statistics against metafor 3.8-1 ``escalc`` and textbook numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from bayes_se.effect_sizes import (
    cor, escalc, from_ci, hedges_j, log_or, log_rr, md, smcc, smcr, smd, smd_from_t, zcor,
)
from bayes_se.errors import DataError

from conftest import REFERENCE

ESCALC_RTOL = 1e-9  # metafor escalc, closed form; the reference CSVs carry 15 significant digits
HAND_RTOL = 1e-12  # our formulas re-evaluated by hand in the test: only float rounding differs
TEXTBOOK_ATOL = 5e-5  # Borenstein et al. (2009) print 4 decimals

DATA = REFERENCE / "data"


def _read(name):
    return pd.read_csv(DATA / f"{name}.csv")


def test_normand1999_smd_matches_metafor():
    dat = _read("dat.normand1999")
    yi, vi = smd(dat.m1i, dat.sd1i, dat.n1i, dat.m2i, dat.sd2i, dat.n2i)
    np.testing.assert_allclose(yi, dat.yi, rtol=ESCALC_RTOL)
    np.testing.assert_allclose(vi, dat.vi, rtol=ESCALC_RTOL)


def test_normand1999_escalc_smd_by_column_names():
    dat = _read("dat.normand1999")
    out = escalc("SMD", data=dat.drop(columns=["yi", "vi"]), m1i="m1i", sd1i="sd1i", n1i="n1i",
                 m2i="m2i", sd2i="sd2i", n2i="n2i")
    np.testing.assert_allclose(out["yi"], dat.yi, rtol=ESCALC_RTOL)
    np.testing.assert_allclose(out["vi"], dat.vi, rtol=ESCALC_RTOL)
    assert "study" in out.columns  # the inputs are kept


def test_normand1999_md_matches_metafor():
    dat = _read("dat.normand1999")
    yi, vi = md(dat.m1i, dat.sd1i, dat.n1i, dat.m2i, dat.sd2i, dat.n2i)
    np.testing.assert_allclose(yi, dat.yi_md, rtol=ESCALC_RTOL)
    np.testing.assert_allclose(vi, dat.vi_md, rtol=ESCALC_RTOL)


def test_normand1999_smd_from_t_equals_smd_from_means():
    dat = _read("dat.normand1999")
    m = dat.n1i + dat.n2i - 2
    sp = np.sqrt(((dat.n1i - 1) * dat.sd1i**2 + (dat.n2i - 1) * dat.sd2i**2) / m)
    ti = (dat.m1i - dat.m2i) / (sp * np.sqrt(1 / dat.n1i + 1 / dat.n2i))
    yi, vi = smd_from_t(ti, dat.n1i, dat.n2i)
    np.testing.assert_allclose(yi, dat.yi, rtol=ESCALC_RTOL)
    np.testing.assert_allclose(vi, dat.vi, rtol=ESCALC_RTOL)


def test_bcg_log_rr_matches_metafor():
    meta = json.loads((REFERENCE / "metafor" / "dat.bcg.json").read_text())
    assert meta["measure"].startswith("RR")  # vaccinated (tpos, tneg) vs control (cpos, cneg)
    dat = _read("dat.bcg")
    out = escalc("RR", data=dat.drop(columns=["yi", "vi"]), ai="tpos", bi="tneg", ci="cpos",
                 di="cneg")
    np.testing.assert_allclose(out["yi"], dat.yi, rtol=ESCALC_RTOL)
    np.testing.assert_allclose(out["vi"], dat.vi, rtol=ESCALC_RTOL)


def test_craft2003_zcor_and_cor_match_metafor():
    dat = _read("dat.craft2003_univariate")
    yi, vi = zcor(dat.ri, dat.ni)
    np.testing.assert_allclose(yi, dat.zi, rtol=ESCALC_RTOL)
    np.testing.assert_allclose(vi, dat.vzi, rtol=ESCALC_RTOL)
    yi, vi = cor(dat.ri, dat.ni)
    np.testing.assert_allclose(yi, dat.ri, rtol=ESCALC_RTOL)
    np.testing.assert_allclose(vi, dat.vi_r, rtol=ESCALC_RTOL)


def test_hackshaw1998_log_or_from_ci_matches_metadat():
    dat = _read("dat.hackshaw1998")
    yi, vi = from_ci(dat["or"], dat["or.lb"], dat["or.ub"])
    np.testing.assert_allclose(yi, dat.yi, rtol=ESCALC_RTOL)
    np.testing.assert_allclose(vi, dat.vi, rtol=ESCALC_RTOL)


def test_hedges_j_exact_and_approximation():
    # Hedges (1981): J(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2)); J(2) = 1/sqrt(pi)
    assert math.isclose(float(hedges_j(2)), 1 / math.sqrt(math.pi), rel_tol=HAND_RTOL)
    # Hedges' approximation 1 - 3/(4m - 1) is off by O(1/m^2)
    m = np.array([10.0, 50.0, 200.0])
    assert np.all(np.abs(hedges_j(m) - (1 - 3 / (4 * m - 1))) < 0.05 / m**2)


def test_borenstein2009_textbook_numbers():
    # Borenstein et al. (2009), ch. 4: means 103 vs 100, SD 5.5, n = 50 + 50 -> g = 0.5413
    yi, vi = smd(103, 5.5, 50, 100, 5.5, 50)
    assert abs(yi[0] - 0.5413) < TEXTBOOK_ATOL
    # ch. 5: 5/100 events treated vs 10/100 control
    yi, vi = log_or(5, 95, 10, 90)
    assert abs(yi[0] - (-0.7472)) < TEXTBOOK_ATOL and abs(vi[0] - 0.3216) < TEXTBOOK_ATOL
    yi, vi = log_rr(5, 95, 10, 90)
    assert abs(yi[0] - (-0.6931)) < TEXTBOOK_ATOL and abs(vi[0] - 0.2800) < TEXTBOOK_ATOL
    # ch. 6: r = 0.50, n = 100 -> z = 0.5493, Vz = 0.0103, Vr = 0.0057
    yi, vi = zcor(0.5, 100)
    assert abs(yi[0] - 0.5493) < TEXTBOOK_ATOL and abs(vi[0] - 1 / 97) < 1e-15
    yi, vi = cor(0.5, 100)
    assert abs(vi[0] - 0.0057) < TEXTBOOK_ATOL


def test_smcr_hand_computed():
    # no shared reference: Becker (1988) / Morris (2008) as in metafor, evaluated by hand
    m1, m2, sd1, n, r = 24.0, 20.0, 8.0, 30.0, 0.6
    j = math.exp(math.lgamma(29 / 2) - 0.5 * math.log(29 / 2) - math.lgamma(28 / 2))
    g = j * (m1 - m2) / sd1
    yi, vi = smcr(m1, m2, sd1, n, r)
    assert math.isclose(yi[0], g, rel_tol=HAND_RTOL)
    assert math.isclose(vi[0], 2 * (1 - r) / n + g**2 / (2 * n), rel_tol=HAND_RTOL)


def test_smcc_hand_computed():
    m1, m2, sd1, sd2, n, r = 24.0, 20.0, 8.0, 10.0, 30.0, 0.6
    sdd = math.sqrt(64 + 100 - 2 * 0.6 * 80)
    j = math.exp(math.lgamma(29 / 2) - 0.5 * math.log(29 / 2) - math.lgamma(28 / 2))
    g = j * (m1 - m2) / sdd
    yi, vi = smcc(m1, m2, sd1, sd2, n, r)
    assert math.isclose(yi[0], g, rel_tol=HAND_RTOL)
    assert math.isclose(vi[0], 1 / n + g**2 / (2 * n), rel_tol=HAND_RTOL)


def test_smcr_without_r_warns_and_uses_half():
    with pytest.warns(UserWarning, match="ri = 0.5"):
        yi, vi = smcr(24.0, 20.0, 8.0, 30.0)
    assert np.allclose((yi, vi), smcr(24.0, 20.0, 8.0, 30.0, 0.5), rtol=HAND_RTOL)
    with pytest.warns(UserWarning, match="ri = 0.5"):
        smcc(24.0, 20.0, 8.0, 10.0, 30.0)


def test_log_or_zero_cell_continuity_correction_hand_computed():
    # metafor default add = 1/2 to every cell of tables with a zero cell ("only0")
    yi, vi = log_or([0, 5], [10, 95], [3, 10], [7, 90])
    a, b, c, d = 0.5, 10.5, 3.5, 7.5
    assert math.isclose(yi[0], math.log(a * d / (b * c)), rel_tol=HAND_RTOL)
    assert math.isclose(vi[0], 1 / a + 1 / b + 1 / c + 1 / d, rel_tol=HAND_RTOL)
    assert math.isclose(yi[1], math.log(5 * 90 / (95 * 10)), rel_tol=HAND_RTOL)  # untouched
    yi_all, _ = log_or([0, 5], [10, 95], [3, 10], [7, 90], to="if0all")
    assert math.isclose(yi_all[1], math.log(5.5 * 90.5 / (95.5 * 10.5)), rel_tol=HAND_RTOL)
    yi, vi = log_rr(0, 10, 3, 7)
    assert math.isclose(yi[0], math.log((0.5 / 11) / (3.5 / 11)), rel_tol=HAND_RTOL)
    assert math.isclose(vi[0], 1 / 0.5 - 1 / 11 + 1 / 3.5 - 1 / 11, rel_tol=HAND_RTOL)
    with pytest.raises(DataError, match="zero cell"):
        log_or(0, 10, 3, 7, to="none")


@pytest.mark.parametrize(
    "call, row, column",
    [
        (lambda: smd([1, 2], [1, 1], [10, 1], [0, 0], [1, 1], [10, 10]), 2, "n1i"),
        (lambda: smd([1, 2], [1, 0], [10, 10], [0, 0], [1, 1], [10, 10]), 2, "sd1i"),
        (lambda: zcor([0.2, 1.0], [30, 30]), 2, "ri"),
        (lambda: cor([0.2, -1.2], [30, 30]), 2, "ri"),
        (lambda: log_or([1, -1], [5, 5], [2, 2], [5, 5]), 2, "ai"),
        (lambda: smcr([1, 2], [0, 0], [1, 1], [10, 10], [0.5, 1.0]), 2, "ri"),
        (lambda: md([1, np.nan], [1, 1], [10, 10], [0, 0], [1, 1], [10, 10]), 2, "m1i"),
    ],
)
def test_bad_inputs_name_row_and_argument(call, row, column):
    with pytest.raises(DataError) as info:
        call()
    assert info.value.row == row and info.value.column == column


def test_escalc_errors_name_the_data_column():
    dat = pd.DataFrame({"r": [0.3, 1.5], "n": [40, 50]})
    with pytest.raises(DataError, match=r"row 2, column 'r': .*\(argument 'ri'\)"):
        escalc("ZCOR", data=dat, ri="r", ni="n")
    with pytest.raises(DataError, match="unknown measure"):
        escalc("XYZ", data=dat, ri="r", ni="n")
    with pytest.raises(DataError, match="missing ni"):
        escalc("ZCOR", data=dat, ri="r")
    with pytest.raises(DataError, match="no column 'nn'"):
        escalc("ZCOR", data=dat, ri="r", ni="nn")


def test_escalc_arrays_without_data():
    out = escalc("ZCOR", ri=[0.1, 0.5], ni=[20, 100])
    assert list(out.columns) == ["ri", "ni", "yi", "vi"]
    np.testing.assert_allclose(out["vi"], [1 / 17, 1 / 97], rtol=HAND_RTOL)
