"""Two-stage MASEM on dat.craft2003 against metafor 3.8-1 (rcalc + rma.mv struct="UN" + matreg)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_se.correlations import load_correlations
from bayes_se.frequentist.masem import stage1_inputs, two_stage

REFERENCE = Path(__file__).parent / "reference"
#: metafor, iterative estimator (log-likelihood).
ITER_RTOL = 1e-5
#: metafor's UN fit of craft2003 stopped about 1e-9 below our maximum of the REML log-likelihood
#: (see tests/test_frequentist_multilevel.py): its vcov carries errors of up to 7e-5 relative, so
#: the quantities that depend on it are compared at 1e-4; the pooled correlations themselves agree
#: at ITER_RTOL.
UN_RTOL = 1e-4
#: Bootstrap vs delta-method interval ends of a = r_XM, which is linear in the pooled vector: only
#: the Monte Carlo error of a 2.5% quantile of 2000 normal draws differs, sd = sqrt(.025 .975 / 2000)
#: / phi(1.96) = 0.06 standard errors; 3 of those.
BOOT_VS_DELTA_SE = 0.18
PATHS = {"perf": ["acog", "asom", "conf"], "conf": ["acog", "asom"]}


@pytest.fixture(scope="module")
def craft():
    d = pd.read_csv(REFERENCE / "data" / "dat.craft2003.csv")
    table = d.rename(columns={"yi": "r", "ni": "n"})[["study", "n", "var1", "var2", "r"]]
    data = load_correlations(table, variables=["perf", "acog", "asom", "conf"])
    ref = json.loads((REFERENCE / "metafor" / "dat.craft2003.json").read_text())["rma_mv"]
    return data, two_stage(data, paths=PATHS, seed=1), ref


def test_craft2003_stage1_inputs_are_rcalc():
    d = pd.read_csv(REFERENCE / "data" / "dat.craft2003.csv")
    table = d.rename(columns={"yi": "r", "ni": "n"})[["study", "n", "var1", "var2", "r"]]
    data = load_correlations(table, variables=["perf", "acog", "asom", "conf"])
    yi, V, outcome, study = stage1_inputs(data)
    keep = d.yi.notna().to_numpy()
    np.testing.assert_allclose(yi, d.yi[keep], rtol=0)
    full = pd.read_csv(REFERENCE / "data" / "dat.craft2003_V.csv").to_numpy()[np.ix_(keep, keep)]
    assert np.array_equal(np.isnan(V), np.isnan(full))
    np.testing.assert_allclose(V[~np.isnan(V)], full[~np.isnan(full)], rtol=1e-12, atol=0)
    assert outcome[:3] == ["perf,acog", "perf,asom", "perf,conf"]


def test_craft2003_multivariate_UN_REML(craft):
    _, res, ref = craft
    un = ref["multivariate_UN_REML"]
    assert res.stage1.k == un["k"]  # study 17 dropped by metafor's NA rule, as rcalc's V is NA there
    assert any("omitted" in n for n in res.notes)
    np.testing.assert_allclose(res.stage1.fit_stats["REML"]["ll"], un["fit.stats"]["REML"]["ll"], rtol=ITER_RTOL)
    np.testing.assert_allclose(res.R.to_numpy(), ref["pooled_R"]["R"], rtol=ITER_RTOL)
    assert list(res.R.columns) == ref["pooled_R"]["names"]
    np.testing.assert_allclose(res.vcov, un["vcov"], rtol=UN_RTOL)
    np.testing.assert_allclose(res.stage1.tau2, un["tau2"], rtol=UN_RTOL)


@pytest.mark.parametrize("key, outcome", [("matreg_perf_on_acog_asom_conf", "perf"),
                                          ("matreg_conf_on_acog_asom", "conf")])
def test_craft2003_matreg(craft, key, outcome):
    _, res, ref = craft
    reg, want = res.matreg[outcome], ref[key]
    for j, name in enumerate(reg.coef_names):
        c = want["coefficients"][name]
        np.testing.assert_allclose(reg.beta[j], c["estimate"], rtol=ITER_RTOL, err_msg=name)
        np.testing.assert_allclose(reg.se[j], c["se"], rtol=UN_RTOL, err_msg=name)
    np.testing.assert_allclose(reg.vcov, want["vcov"], rtol=UN_RTOL)
    # the effects table carries the same coefficients and delta-method standard errors
    for j, name in enumerate(reg.coef_names):
        row = res.effects.loc[f"{name}->{outcome}"]
        np.testing.assert_allclose([row.estimate, row.se], [reg.beta[j], reg.se[j]], rtol=1e-9)


def test_craft2003_indirect_and_total(craft):
    _, res, ref = craft
    b_perf = {n: ref["matreg_perf_on_acog_asom_conf"]["coefficients"][n]["estimate"] for n in ("acog", "asom", "conf")}
    b_conf = {n: ref["matreg_conf_on_acog_asom"]["coefficients"][n]["estimate"] for n in ("acog", "asom")}
    for x in ("acog", "asom"):
        ind = res.effects.loc[f"indirect[{x}->conf->perf]"]
        np.testing.assert_allclose(ind.estimate, b_conf[x] * b_perf["conf"], rtol=ITER_RTOL)
        tot = res.effects.loc[f"total[{x}->perf]"]
        np.testing.assert_allclose(tot.estimate, b_perf[x] + b_conf[x] * b_perf["conf"], rtol=ITER_RTOL)
        assert ind.boot_lower < ind.estimate < ind.boot_upper and ind.ci_lower < ind.estimate < ind.ci_upper
    json.dumps(res.to_dict(), allow_nan=False)


def test_mediation_delta_method_matches_sobel():
    """X -> M -> Y: indirect = a b, total = r_XY, a Sobel-type delta-method SE, bootstrap CIs."""
    rows = []
    rng = np.random.default_rng(5)
    for i in range(6):
        R = np.array([[1, .4, .3], [.4, 1, .45], [.3, .45, 1]])
        z = rng.multivariate_normal(np.zeros(3), R, size=120)
        C = np.corrcoef(z.T)
        rows += [(i, 120, "intervention", "self_efficacy", C[0, 1]), (i, 120, "intervention", "symptoms", C[0, 2]),
                 (i, 120, "self_efficacy", "symptoms", C[1, 2])]
    data = load_correlations(pd.DataFrame(rows, columns=["study", "n", "var1", "var2", "r"]))
    res = two_stage(data, n_boot=2000, seed=3)
    e = res.effects
    a, b = e.loc["a", "estimate"], e.loc["b", "estimate"]
    np.testing.assert_allclose(e.loc["indirect", "estimate"], a * b, rtol=1e-12)
    np.testing.assert_allclose(e.loc["total", "estimate"], res.R.iloc[0, 2], rtol=1e-12)
    va, vb = e.loc["a", "se"] ** 2, e.loc["b", "se"] ** 2
    # a = r_XM and b covary through the pooled vcov, so the delta-method SE lies within Sobel's
    # sqrt(b^2 va + a^2 vb) widened or narrowed by the largest possible covariance term 2ab sqrt(va vb)
    sobel = b**2 * va + a**2 * vb
    assert sobel - 2 * abs(a * b) * np.sqrt(va * vb) <= e.loc["indirect", "se"] ** 2 <= sobel + 2 * abs(a * b) * np.sqrt(va * vb)
    row = e.loc["a"]  # linear in the pooled vector: bootstrap and delta method agree
    assert abs(row.boot_lower - row.ci_lower) < BOOT_VS_DELTA_SE * row.se
    assert abs(row.boot_upper - row.ci_upper) < BOOT_VS_DELTA_SE * row.se
    assert e.loc["indirect", "boot_lower"] < a * b < e.loc["indirect", "boot_upper"]
