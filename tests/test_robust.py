"""Cluster-robust inference (``robust``) and robust variance estimation (``robu``) against R.

References (tests/reference/robust/robust.R, run with R 4.2.2): clubSandwich 0.5.8 ``coef_test`` /
``conf_int`` / ``Wald_test(test = "HTZ")`` with ``vcov = "CR2"``, metafor 3.8-1 ``robust()`` (CR1 with
``adjust = TRUE``, CR0 with ``adjust = FALSE``, and ``clubSandwich = TRUE``), robumeta 2.0 ``robu()``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bayes_se import cli
from bayes_se.data import load_effects
from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist import rma, rma_mv, robu, robust

from conftest import REFERENCE

HERE = REFERENCE / "robust"
REF = json.loads((HERE / "robust.json").read_text())
CLOSED_RTOL = 1e-6  # rma.uni (Fisher scoring to 1e-12 on both sides) and robu (closed form)
ITER_RTOL = 1e-5  # rma.mv: variance components by numerical optimisation
COLUMNS = ("estimate", "se", "tval", "df", "pval", "ci_lower", "ci_upper")


def _close(actual, expected, rtol, what, atol=0.0):
    np.testing.assert_allclose(np.asarray(actual, float), np.asarray(expected, float), rtol=rtol, atol=atol,
                               err_msg=what)


@pytest.fixture(scope="module")
def data():
    k11 = pd.read_csv(REFERENCE / "data" / "dat.konstantopoulos2011.csv")
    bcg = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")
    bcg["pair"] = np.ceil(bcg["trial"] / 2).astype(int)
    se = pd.read_csv(HERE / "self_efficacy_between.csv")
    mp = pd.read_csv(REFERENCE.parent.parent / "data" / "metapsy_depression_selfguided.csv")
    return {"k11": k11, "bcg": bcg, "se": se, "mp": mp}


_FITS: dict = {}


def _fit(case, d):
    """(fit, cluster labels, rtol) of each reference case (the R models of robust.R), fitted once."""
    if case not in _FITS:
        _FITS[case] = _fit_case(case, d)
    return _FITS[case]


def _fit_case(case, d):
    k11, bcg, se = d["k11"], d["bcg"], d["se"]
    if case == "konstantopoulos2011":
        return rma_mv(k11.yi, k11.vi, cluster=k11.district), k11.district, ITER_RTOL
    if case == "konstantopoulos2011_year":
        X = np.column_stack([np.ones(len(k11)), k11.year - 1990])
        return rma_mv(k11.yi, k11.vi, X=X, cluster=k11.district), k11.district, ITER_RTOL
    if case == "bcg_ablat_trial":
        return rma(bcg.yi, bcg.vi, mods="ablat", data=bcg), bcg.trial, CLOSED_RTOL
    if case == "bcg_ablat_pair":
        return rma(bcg.yi, bcg.vi, mods="ablat", data=bcg), bcg.pair, CLOSED_RTOL
    if case == "bcg_ablat_year_pair":
        return rma(bcg.yi, bcg.vi, mods="ablat + year", data=bcg), bcg.pair, CLOSED_RTOL
    if case == "bcg_pair":
        return rma(bcg.yi, bcg.vi), bcg.pair, CLOSED_RTOL
    if case == "bcg_DL_pair":
        return rma(bcg.yi, bcg.vi, method="DL"), bcg.pair, CLOSED_RTOL
    if case == "self_efficacy_mv":
        return rma_mv(se.yi, se.vi, mods="guided + disorder", data=se, cluster=se.study_id), se.study_id, ITER_RTOL
    if case == "self_efficacy_uni":
        return rma(se.yi, se.vi, mods="guided", data=se), se.study_id, CLOSED_RTOL
    if case == "metapsy_format_mv":  # formats in one or two trials: singular I - H_jj in CR2
        mp = d["mp"]
        return rma_mv(mp.yi, mp.vi, mods="format", data=mp, cluster=mp.study_id), mp.study_id, ITER_RTOL
    if case == "berkey1998_UN":  # full sampling covariance V, unstructured G, no intercept
        bk = pd.read_csv(REFERENCE / "data" / "dat.berkey1998.csv")
        V = pd.read_csv(REFERENCE / "data" / "dat.berkey1998_V.csv").to_numpy()
        X = np.column_stack([(bk.outcome == "AL") * 1.0, (bk.outcome == "PD") * 1.0])
        res = rma_mv(bk.yi, V, X=X, coef_names=["outcomeAL", "outcomePD"], struct="UN", outcome=bk.outcome,
                     study=bk.trial)
        return res, bk.trial, ITER_RTOL
    raise KeyError(case)


CASES = ["konstantopoulos2011", "konstantopoulos2011_year", "bcg_ablat_trial", "bcg_ablat_pair",
         "bcg_ablat_year_pair", "bcg_pair", "bcg_DL_pair", "self_efficacy_mv", "self_efficacy_uni",
         "metapsy_format_mv", "berkey1998_UN"]


@pytest.mark.parametrize("case", CASES)
def test_model_matches_metafor(case, data):
    res, _, rtol = _fit(case, data)
    ref = REF[case]["model"]
    _close(res.beta, ref["estimate"], rtol, "estimate")
    _close(res.se, ref["se"], rtol, "model-based se")


@pytest.mark.parametrize("adjust", ["CR2", "CR1", "CR0"])
@pytest.mark.parametrize("case", CASES)
def test_coef_table_matches_clubsandwich_and_metafor(case, adjust, data):
    """CR2 = clubSandwich coef_test/conf_int (Satterthwaite); CR1/CR0 = metafor robust(adjust=TRUE/FALSE)."""
    res, cluster, rtol = _fit(case, data)
    rob = robust(res, cluster=cluster, adjust=adjust)
    ref = REF[case][adjust]
    table = rob.coef_table()
    assert list(table.columns) == list(COLUMNS)
    assert list(table.index) == list(res.coef_names)
    for col in COLUMNS:
        want = ref[col] if not (col == "df" and adjust != "CR2") else [ref["df"]] * res.p
        _close(table[col], want, rtol, f"{case} {adjust} {col}")
    if adjust == "CR2":
        _close(rob.vcov, ref["vcov"], rtol, "CR2 vcov")
    else:
        assert ref["vbest"] == adjust
        assert rob.n_clusters == ref["n_clusters"]
        _close(rob.QM, ref["QM"], rtol, "QM")
        assert rob.QM_df == (ref["QMdf"][0], ref["QMdf"][1])
        _close(rob.QM_p, ref["QMp"], rtol, "QMp")


@pytest.mark.parametrize("case", CASES)
def test_cr2_omnibus_matches_metafor_clubsandwich(case, data):
    """metafor robust(clubSandwich = TRUE): t tests of coef_test, QM = Wald_test HTZ (t^2 when intercept only)."""
    res, cluster, rtol = _fit(case, data)
    rob = robust(res, cluster=cluster)
    ref = REF[case]["metafor_clubSandwich"]
    for ours, key in ((rob.se, "se"), (rob.tval, "tval"), (rob.df, "df"), (rob.pval, "pval"),
                      (rob.ci_lower, "ci_lower"), (rob.ci_upper, "ci_upper"), (rob.QM, "QM"), (rob.QM_p, "QMp")):
        _close(ours, ref[key], rtol, key)
    _close(rob.QM_df, ref["QMdf"], rtol, "QMdf")
    if "wald_HTZ" in REF[case]["CR2"]:
        w, want = rob.wald_test(rob.btt), REF[case]["CR2"]["wald_HTZ"]
        assert [b + 1 for b in rob.btt] == list(np.atleast_1d(want["coefs"]))
        for key in ("Fstat", "delta", "df_denom", "pval"):
            _close(w[key], want[key], rtol, f"HTZ {key}")
        assert w["df_num"] == want["df_num"] and rob.QM_test == "HTZ"


def test_wald_test_by_name_and_of_several_coefficients(data):
    res, cluster, rtol = _fit("self_efficacy_mv", data)
    rob = robust(res, cluster=cluster)
    want = REF["self_efficacy_mv"]["CR2"]["wald_HTZ"]
    assert want["df_num"] >= 2  # a real multi-coefficient HTZ test
    w = rob.wald_test(res.coef_names[1:])
    _close(w["Fstat"], want["Fstat"], rtol, "F")
    _close(w["df_denom"], want["df_denom"], rtol, "df2")
    with pytest.raises(SpecError, match="no coefficient 'age'"):
        rob.wald_test(["age"])


@pytest.mark.parametrize("case", ["bcg_ablat_pair", "self_efficacy_mv", "konstantopoulos2011_year"])
def test_cr2_is_unbiased_under_the_working_model(case, data):
    """Bell & McCaffrey's defining property: E[V_CR2] = (X' W X)^-1 when the working model is true,
    i.e. sum_j G_j (M_j - X_j Q X_j') G_j' = Q with G_j = Q X_j' W_j A_j (independent of R)."""
    res, cluster, _ = _fit(case, data)
    sw = robust(res, cluster=cluster).sandwich
    expected = sum(g @ (m - x @ sw.Q @ x.T) @ g.T
                   for g, m, x in zip(sw.estimating_matrices("CR2"), sw.M, sw.Xj))
    _close(expected, sw.Q, 1e-9, "E[V_CR2]")
    biased = sum(g @ (m - x @ sw.Q @ x.T) @ g.T for g, m, x in zip(sw.estimating_matrices("CR0"), sw.M, sw.Xj))
    assert np.all(np.diag(biased) < np.diag(sw.Q))  # CR0 is biased downward


@pytest.mark.parametrize("case", ["bcg_ablat_pair", "self_efficacy_mv"])
def test_satterthwaite_df_from_the_full_covariance_of_the_residuals(case, data):
    """df = (tr Omega)^2 / ||Omega||_F^2 with Omega = A' (I - H) M (I - H)' A built from k x k matrices
    (A: each cluster's estimating vector in its own column), against the O(J) formulas of robust()."""
    res, cluster, _ = _fit(case, data)
    rob = robust(res, cluster=cluster)
    sw = rob.sandwich
    k = sw.k
    M = np.zeros((k, k))
    W = np.zeros((k, k))
    for ix, m, w in zip(sw.index, sw.M, sw.W):
        M[np.ix_(ix, ix)], W[np.ix_(ix, ix)] = m, w
    IH = np.eye(k) - sw.X @ sw.Q @ sw.X.T @ W
    cov = IH @ M @ IH.T
    for i in range(sw.p):
        A = np.zeros((k, sw.J))
        for j, (ix, g) in enumerate(zip(sw.index, sw.estimating_matrices("CR2"))):
            A[ix, j] = g[i]
        omega = A.T @ cov @ A
        _close(rob.df[i], np.trace(omega) ** 2 / np.sum(omega**2), 1e-10, f"df {i}")
        _close(rob.vcov[i, i], np.sum((A.T @ (sw.resid)) ** 2), 1e-10, f"vcov {i}")


def test_knapp_hartung_fit_keeps_the_sandwich_of_the_z_fit(data):
    """clubSandwich ignores test="knha" (its bread is (X'WX)^-1), as we do; metafor's robust() without
    clubSandwich reuses the fit's vb, so its CR0/CR1 standard errors are s2w times ours."""
    bcg = data["bcg"]
    res = rma(bcg.yi, bcg.vi, mods="ablat", data=bcg, test="knha")
    ref = REF["bcg_ablat_pair_knha"]
    _close(res.s2w, ref["s2w"], CLOSED_RTOL, "s2w")
    cr2 = robust(res, cluster=bcg.pair)
    for col in COLUMNS:
        _close(cr2.coef_table()[col], ref["CR2"][col], CLOSED_RTOL, f"CR2 {col}")
    for adjust in ("CR1", "CR0"):
        ours = robust(res, cluster=bcg.pair, adjust=adjust)
        _close(ours.se, REF["bcg_ablat_pair"][adjust]["se"], CLOSED_RTOL, f"{adjust} se of the z fit")
        _close(ours.se * res.s2w, ref[adjust]["se"], CLOSED_RTOL, f"metafor's {adjust} se")


def test_rma_mv_default_cluster_is_the_highest_nesting_level(data):
    res, cluster, _ = _fit("konstantopoulos2011", data)
    a, b = robust(res), robust(res, cluster=cluster)
    assert a.n_clusters == 11
    _close(a.se, b.se, 1e-12, "se")
    _close(a.df, b.df, 1e-12, "df")


def test_cluster_for_every_data_row_drops_the_rows_the_fit_left_out(data):
    bcg = data["bcg"].copy()
    bcg.loc[4, "ablat"] = np.nan
    with pytest.warns(Warning):
        res = rma(bcg.yi, bcg.vi, mods="ablat", data=bcg)
    kept = bcg.drop(index=4)
    direct = robust(rma(kept.yi, kept.vi, mods="ablat", data=kept), cluster=kept.pair)
    via_rows = robust(res, cluster=bcg.pair)
    _close(via_rows.se, direct.se, 1e-12, "se")
    _close(via_rows.df, direct.df, 1e-12, "df")
    with pytest.raises(DataError, match="12 effects of 13"):
        robust(res, cluster=bcg.pair[:5])


def test_rma_mv_rows_left_out_are_dropped_from_the_cluster(data):
    k11 = data["k11"].copy()
    k11.loc[7, "year"] = np.nan
    with pytest.warns(Warning):
        res = rma_mv(k11.yi, k11.vi, mods="year", data=k11, cluster=k11.district)
    kept = k11.drop(index=7)
    direct = robust(rma_mv(kept.yi, kept.vi, mods="year", data=kept, cluster=kept.district), cluster=kept.district)
    _close(robust(res, cluster=k11.district).se, direct.se, 1e-8, "se")


def test_errors(data):
    res, cluster, _ = _fit("bcg_ablat_pair", data)
    with pytest.raises(SpecError) as e:
        robust(res, cluster=cluster, adjust="CR3")
    assert e.value.key == "adjust"
    with pytest.raises(SpecError) as e:
        robust(res)
    assert e.value.key == "cluster"
    with pytest.raises(DataError, match="2 clusters for 2 coefficients"):
        robust(res, cluster=[1] * 6 + [2] * 7)
    with pytest.raises(SpecError, match="not a column name"):
        robust(res, cluster="pair")
    labels = list(cluster)
    labels[3] = None
    with pytest.raises(DataError) as e:
        robust(res, cluster=labels)
    assert e.value.row == 4 and e.value.column == "cluster"
    mv, _, _ = _fit("konstantopoulos2011", data)
    with pytest.raises(SpecError, match="not nested"):  # schools within a district share its random effect
        robust(mv, cluster=data["k11"].es_id)


def test_result_output(data):
    res, cluster, _ = _fit("self_efficacy_mv", data)
    rob = robust(res, cluster=cluster)
    out = rob.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["adjust"] == "CR2" and out["n_clusters"] == 70 and out["k"] == 88
    assert set(out["coefficients"]) == set(res.coef_names)
    assert set(out["coefficients"]["intercept"]) == set(COLUMNS)
    text = rob.summary()
    assert "Satterthwaite" in text and "Number of clusters:    70" in text and "HTZ" in text


# ---------------------------------------------------------------- robumeta ----------------------

ROBU_CASES = {
    "robu_corr": ("corrdat", "males + college + binge", dict(modelweights="CORR", rho=0.8, small=True)),
    "robu_corr_rho05": ("corrdat", "males + college + binge", dict(modelweights="CORR", rho=0.5, small=True)),
    "robu_corr_large": ("corrdat", "males + college + binge", dict(modelweights="CORR", rho=0.8, small=False)),
    "robu_corr_int": ("corrdat", None, dict(modelweights="CORR", rho=0.8, small=True)),
    "robu_hier": ("hierdat", "binge + followup + sreport + age", dict(modelweights="HIER", small=True)),
    "robu_hier_large": ("hierdat", "binge + followup + sreport + age", dict(modelweights="HIER", small=False)),
    "robu_hier_int": ("hierdat", None, dict(modelweights="HIER", small=True)),
}


def _check_robu(fit, ref):
    table = fit.coef_table()
    for col in COLUMNS:
        # robumeta's p = 2 (1 - pt(|t|, df)) keeps about 1e-16 absolute precision, not relative
        _close(table[col], ref[col], CLOSED_RTOL, col, atol=1e-14 if col == "pval" else 0.0)
    _close(fit.tau2, ref["tau2"], CLOSED_RTOL, "tau2", atol=1e-14)
    if "omega2" in ref:
        _close(fit.omega2, ref["omega2"], CLOSED_RTOL, "omega2", atol=1e-14)
    if "I2" in ref:
        _close(fit.I2, ref["I2"], CLOSED_RTOL, "I2")
    assert fit.n_clusters == ref["n_clusters"] and fit.k == ref["k"]


@pytest.mark.parametrize("case", list(ROBU_CASES))
def test_robu_matches_robumeta(case):
    name, mods, kw = ROBU_CASES[case]
    d = pd.read_csv(HERE / f"robumeta_{name}.csv")
    fit = robu(d, mods, studynum="studyid", effect="effectsize", variance="var", **kw)
    ref = REF[case]
    _check_robu(fit, ref)
    if kw["small"]:
        _close(fit.vcov, ref["vcov"], CLOSED_RTOL, "vcov")
    else:  # robumeta's VR.r is the unscaled CR0 matrix; its SEs carry sqrt(J / (J - p))
        _close(fit.vcov * (fit.n_clusters - fit.p) / fit.n_clusters, ref["vcov"], CLOSED_RTOL, "vcov")


@pytest.mark.parametrize("weights", ["CORR", "HIER"])
def test_robu_on_effect_data_uses_its_clusters(weights):
    eff = load_effects(HERE / "self_efficacy_between.csv", study="study", cluster="study_id")
    fit = robu(eff, "guided", modelweights=weights)
    _check_robu(fit, REF[f"robu_self_efficacy_{weights.lower()}"])
    assert fit.coef_names == ["intercept", "guidedunguided"]


def test_robu_output_and_errors():
    d = pd.read_csv(HERE / "robumeta_hierdat.csv")
    fit = robu(d, "binge", studynum="studyid", effect="effectsize", variance="var", modelweights="HIER")
    out = fit.to_dict()
    json.dumps(out, allow_nan=False)
    assert out["model"] == "robu" and out["modelweights"] == "HIER" and out["omega2"] is not None
    assert "Hierarchical Effects Model with Small-Sample Corrections" in fit.summary()
    with pytest.raises(SpecError) as e:
        robu(d, studynum="studyid", effect="effectsize", variance="var", rho=1.5)
    assert e.value.key == "rho"
    with pytest.raises(SpecError) as e:
        robu(d, studynum="studyid", effect="effectsize", variance="var", modelweights="corr2")
    assert e.value.key == "modelweights"
    with pytest.raises(SpecError):
        robu(d, effect="effectsize", variance="var")
    with pytest.raises(DataError, match="no column 'lab'"):
        robu(d, studynum="lab", effect="effectsize", variance="var")
    small = d[d.studyid <= 2]
    with pytest.raises(DataError, match="2 studies for 2 coefficients"):
        robu(small, "binge", studynum="studyid", effect="effectsize", variance="var")


# ---------------------------------------------------------------- CLI ---------------------------

def _cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("adjust", [None, "CR1"])
def test_cli_freq_robust_json(capsys, adjust):
    path = HERE / "self_efficacy_between.csv"
    argv = ["freq", path, "--cluster", "study_id", "--mods", "guided + disorder", "--robust", "--json"]
    code, out, err = _cli(capsys, *argv, *(["--adjust", adjust] if adjust else []))
    assert code == 0, err
    rob = json.loads(out)["robust"]
    assert rob["adjust"] == (adjust or "CR2")
    ref = REF["self_efficacy_mv"][adjust or "CR2"]
    names = list(rob["coefficients"])
    for col in COLUMNS:
        got = [rob["coefficients"][n][col] for n in names]
        want = ref[col] if not (col == "df" and adjust) else [ref["df"]] * len(names)
        _close(got, want, ITER_RTOL, col)


def test_cli_robust_needs_cluster(capsys):
    code, out, err = _cli(capsys, "freq", REFERENCE / "data" / "dat.bcg.csv", "--robust", "--json")
    assert code == 2 and out == ""
    assert "--robust needs --cluster" in err and len(err.strip().splitlines()) == 1
    code, out, err = _cli(capsys, "freq", REFERENCE / "data" / "dat.bcg.csv", "--adjust", "CR1")
    assert code == 2 and "add --robust" in err


def test_cli_robust_text(capsys):
    code, out, err = _cli(capsys, "freq", REFERENCE / "data" / "dat.konstantopoulos2011.csv",
                          "--cluster", "district", "--robust")
    assert code == 0, err
    assert "Cluster-robust inference (CR2" in out and "Number of clusters:    11" in out
