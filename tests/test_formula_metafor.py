"""One formula language for every engine, checked against R.

References: ``tests/reference/metafor/formula_*.json``, written by ``formula.R`` beside them
(metafor 3.8-1 ``rma(yi, vi, mods = FORMULA, method = "REML")`` and ``model.matrix`` column names,
R's default ``na.omit``). The frequentist engine must reproduce metafor's coefficient names,
estimates, standard errors and tau^2; the exact Bayesian engine and the PyMC builder must name the
coefficients the same way; rows with a missing moderator leave every part of the fit.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bayes_se as bse
from bayes_se import api, cli
from bayes_se.data import load_effects
from bayes_se.errors import BayesSEError, ConvergenceWarning, DataError, DataWarning, SpecError
from bayes_se.formula import design_matrix
from bayes_se.frequentist import rma, rma_mv
from bayes_se.spec import load_spec

from conftest import REFERENCE

ITERATIVE_RTOL = 1e-5  # REML is iterative (issue: 1e-5 relative against metafor)
SAME_CODE_RTOL = 1e-12  # two calls that run the same arithmetic

REFS = {name: json.loads((REFERENCE / "metafor" / f"formula_{name}.json").read_text())
        for name in ("bcg", "bangertdrowns2004")}
CASES = [pytest.param(name, i, id=f"{name}: {case['formula']}" + (" (NA)" if case["omitted_rows"] else ""))
         for name, ref in REFS.items() for i, case in enumerate(ref["cases"])]


def _frame(name: str, case: dict) -> pd.DataFrame:
    frame = pd.read_csv(REFERENCE / REFS[name]["csv"])
    if name == "bcg" and "rows 3 and 7" in case["note"]:
        frame.loc[[2, 6], "ablat"] = np.nan  # as formula.R does (1-based rows 3 and 7)
    return frame


def _effects(name: str, case: dict):
    return load_effects(_frame(name, case))


def _metafor_names(names):
    return ["intrcpt" if n == "intercept" else n for n in names]


def _fit_quietly(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)  # default N(0, 1) priors on year:ablat (scale 1e5)
        return fn(*args, **kwargs)


@pytest.mark.parametrize(("name", "index"), CASES)
def test_rma_matches_metafor(name, index):
    case = REFS[name]["cases"][index]
    res = _fit_quietly(rma, _effects(name, case), mods=case["formula"], method="REML")
    assert _metafor_names(res.coef_names) == case["coef_names"]
    assert res.k == case["k"]
    assert res.omitted_rows == case["omitted_rows"]
    np.testing.assert_allclose(res.beta, case["estimate"], rtol=ITERATIVE_RTOL)
    np.testing.assert_allclose(res.se, case["se"], rtol=ITERATIVE_RTOL)
    np.testing.assert_allclose([res.tau2, res.se_tau2], [case["tau2"], case["se_tau2"]], rtol=ITERATIVE_RTOL)
    np.testing.assert_allclose(res.QM, case["QM"], rtol=ITERATIVE_RTOL)


@pytest.mark.parametrize(("name", "index"), CASES)
def test_design_matrix_names_are_model_matrix_names(name, index):
    case = REFS[name]["cases"][index]
    design = _fit_quietly(design_matrix, _frame(name, case), case["formula"], na="omit")
    assert ["(Intercept)" if n == "intercept" else n for n in design.names] == case["model_matrix_colnames"]
    assert design.omitted_rows == case["omitted_rows"]


@pytest.mark.parametrize(("name", "index"), CASES)
def test_exact_engine_names_the_coefficients_as_rma(name, index):
    case = REFS[name]["cases"][index]
    data = _effects(name, case)
    fit = _fit_quietly(bse.fit, data, engine="exact", mods=case["formula"])
    freq = _fit_quietly(rma, data, mods=case["formula"])
    assert fit.coef_names == freq.coef_names
    assert [f"beta[{n}]" for n in freq.coef_names] == [i for i in fit.summary(theta=False).index if i.startswith("beta[")]
    out = fit.to_dict()
    assert out["k"] == case["k"] and out["omitted_rows"] == case["omitted_rows"]


def test_mcmc_fit_gets_the_same_names_and_rows_without_sampling(monkeypatch):
    """api.fit's MCMC path hands the builder the same design as rma, on the same kept rows."""
    from bayes_se import api
    from bayes_se.builders import build_random_effects

    case = REFS["bcg"]["cases"][-1]  # ~ ablat + alloc with rows 3 and 7 missing
    data = _effects("bcg", case)
    seen = {}

    class Stop(Exception):
        pass

    def capture(yi, vi, **kwargs):
        seen.update(kwargs, yi=np.asarray(yi), vi=np.asarray(vi))
        raise Stop

    monkeypatch.setattr(api, "fit_random_effects", capture)
    with pytest.warns(DataWarning), pytest.raises(Stop):
        api.fit(data, engine="mcmc", mods=case["formula"])
    freq = _fit_quietly(rma, data, mods=case["formula"])
    assert seen["coef_names"] == freq.coef_names
    np.testing.assert_array_equal(seen["X"], freq.X)
    np.testing.assert_array_equal(seen["yi"], freq.yi)
    np.testing.assert_array_equal(seen["vi"], freq.vi)
    assert list(seen["study"]) == list(freq.slab) and len(freq.slab) == 11
    meta = build_random_effects(seen["yi"], seen["vi"], X=seen["X"], coef_names=seen["coef_names"],
                                study=seen["study"])
    assert list(meta.model.coords["coef"]) == freq.coef_names
    assert list(meta.model.coords["study"]) == list(freq.slab)


def test_missing_moderator_warning_names_rows_and_studies():
    case = REFS["bcg"]["cases"][-1]
    data = _effects("bcg", case)
    with pytest.warns(DataWarning) as record:
        res = rma(data, mods="ablat + alloc")
    message = str(record[0].message)
    assert "3 ('Rosenthal et al 1960'): ablat" in message and "7 ('Vandiviere et al 1973'): ablat" in message
    assert "Rosenthal et al 1960" not in res.slab and len(res.slab) == res.k == 11
    assert res.to_dict()["omitted_rows"] == [3, 7]
    assert "rows left out for a missing moderator: 3, 7" in res.summary()
    # the same rows leave the fit whether the moderator or the model is asked first
    sub = data.subset(np.setdiff1d(np.arange(data.k), [2, 6]))
    np.testing.assert_allclose(rma(sub, mods="ablat + alloc").beta, res.beta, rtol=SAME_CODE_RTOL)


def test_na_error_names_row_and_column_everywhere():
    case = REFS["bcg"]["cases"][-1]
    data = _effects("bcg", case)
    calls = [lambda: rma(data, mods="ablat + alloc", na="error"),
             lambda: data.design("ablat", na="error"),
             lambda: bse.fit(data, engine="exact", mods="ablat", na="error"),
             lambda: rma_mv(data, mods="ablat", na="error")]
    for call in calls:
        with pytest.raises(DataError) as info:
            call()
        assert info.value.column == "ablat"
        assert info.value.row == "3 (study 'Rosenthal et al 1960')"
    with pytest.raises(SpecError, match="na must be"):
        rma(data, mods="ablat", na="drop")


def test_bayesian_fit_drops_the_rows_from_every_array():
    case = REFS["bcg"]["cases"][-1]
    data = _effects("bcg", case)
    with pytest.warns(DataWarning):
        fit = bse.fit(data, engine="exact", mods="ablat + alloc")
    assert fit.data.k == 11 and "Vandiviere et al 1973" not in fit.data.study
    assert fit.omitted_rows == [3, 7]
    full, design = data.model_data(None)
    assert full is data and design.names == ["intercept"] and design.omitted_rows == []


def test_three_level_data_keeps_clusters_aligned():
    frame = pd.read_csv(REFERENCE / "data" / "dat.konstantopoulos2011.csv")
    frame["year_c"] = frame["year"] - 1990
    frame.loc[[0, 5], "year_c"] = np.nan
    data = load_effects(frame, cluster="district")
    with pytest.warns(DataWarning):
        kept, design = data.model_data("year_c")
    assert kept.k == data.k - 2 == design.X.shape[0]
    assert kept.cluster == tuple(c for i, c in enumerate(data.cluster) if i not in (0, 5))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        res = rma_mv(data, mods="year_c")
    assert [w.category for w in record] == [DataWarning]  # one warning, not a second generic one
    assert res.k == data.k - 2 and res.omitted_rows == [1, 6] and res.to_dict()["omitted_rows"] == [1, 6]
    ref = rma_mv(kept, mods="year_c")
    np.testing.assert_allclose(res.beta, ref.beta, rtol=SAME_CODE_RTOL)


def test_unknown_and_reserved_columns():
    data = _effects("bcg", REFS["bcg"]["cases"][0])
    with pytest.raises(DataError, match="available: .*ablat.*alloc") as info:
        data.design("latitude")
    assert info.value.column == "latitude" and "yi," not in str(info.value)
    for col in ("yi", "vi", "study"):
        with pytest.raises(DataError, match=f"uses '{col}'") as info:
            rma(data, mods=f"ablat + {col}")
        assert info.value.column == col
    frame = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")
    with pytest.raises(DataError, match="uses 'yi'"):
        rma(frame["yi"], frame["vi"], data=frame, mods="yi")
    with pytest.raises(DataError, match="not found"):
        rma(frame["yi"], frame["vi"], data=frame, mods="factor(allocation)")


@pytest.mark.parametrize(("formula", "same_as"), [
    ("ablat + alloc", "~ ablat + alloc"),
    ("~ 0 + alloc", "alloc - 1"),
    ("~ -1 + alloc", "alloc + 0"),
    ("ablat*year", "ablat + year + ablat:year"),
    ("ablat + 0", "0 + ablat"),
])
def test_equivalent_spellings(formula, same_as):
    frame = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")
    a, b = design_matrix(frame, formula), design_matrix(frame, same_as)
    assert a.names == b.names
    np.testing.assert_array_equal(a.X, b.X)


def test_factor_of_numbers_and_character_levels_sort_as_r():
    frame = pd.DataFrame({"dose": [2, 10, 1, 2, 10, 1], "grp": ["b", "B", "a", "A", "b", "a"],
                          "z": [0.1, 0.5, 0.2, 0.9, 0.3, 0.4]})
    d = design_matrix(frame, "factor(dose)")
    assert d.names == ["intercept", "factor(dose)2", "factor(dose)10"]  # numerically, not as text
    assert d.coding == ["factor(dose): treatment coding, reference level '1'"]
    assert design_matrix(frame, "0 + grp").names == ["grpa", "grpA", "grpb", "grpB"]  # R: a A b B
    d = design_matrix(frame, "factor(dose):z")
    assert d.names == ["intercept", "factor(dose)1:z", "factor(dose)2:z", "factor(dose)10:z"]
    np.testing.assert_array_equal(d.X[:, 2], frame["z"] * (frame["dose"] == 2))


def test_spec_and_priors_take_the_new_names():
    spec = load_spec('[model]\nmods = "~ factor(alloc) * ablat"\n[priors]\n'
                     '"beta[factor(alloc)random:ablat]" = "normal(0, 0.1)"\n')
    assert spec.model.mods == "~ factor(alloc) * ablat"
    data = _effects("bcg", REFS["bcg"]["cases"][0])
    fit = bse.fit(data, spec, engine="exact")
    assert fit.coef_names[-2:] == ["factor(alloc)random:ablat", "factor(alloc)systematic:ablat"]
    cli_spec = api.resolve_spec(None, mods="0 + factor(alloc)", priors=["beta[factor(alloc)random]=normal(0, 2)"])
    assert "beta[factor(alloc)random]" in cli_spec.priors
    with pytest.raises(SpecError, match="'dose' is not a moderator"):
        load_spec('[model]\nmods = "factor(alloc)"\n[priors]\n"beta[dose]" = "normal(0, 1)"\n')
    fit = bse.fit(data, engine="exact", mods="alloc", priors=["beta[allocrandom]=normal(0, 0.5)"])
    assert str(fit.spec.resolved_priors()["beta[allocrandom]"]).endswith("Normal(0, 0.5)")
    with pytest.raises(SpecError, match="no coefficient named 'allocother'; the design has intercept, allocrandom"):
        bse.fit(data, engine="exact", mods="alloc", priors=["beta[allocother]=normal(0, 1)"])


def _write_bcg_with_missing(tmp_path):
    frame = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")
    frame.loc[[2, 6], "ablat"] = np.nan
    path = tmp_path / "bcg_na.csv"
    frame.to_csv(path, index=False)
    return path


def test_cli_na_flag(tmp_path, capsys):
    path = _write_bcg_with_missing(tmp_path)
    code = cli.main(["freq", str(path), "--mods", "ablat + factor(alloc)", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    out = json.loads(captured.out)
    assert out["omitted_rows"] == [3, 7] and out["k"] == 11
    assert set(out["coefficients"]) == {"intercept", "ablat", "factor(alloc)random", "factor(alloc)systematic"}
    warning_lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(warning_lines) == 1 and warning_lines[0].startswith("bayes-se: warning: 2 row(s)")
    for argv in (["freq", str(path)], ["fit", "--data", str(path), "--engine", "exact"]):
        code = cli.main(argv + ["--mods", "ablat", "--na", "error"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert "row 3 (study 'Rosenthal et al 1960'), column 'ablat'" in err[0]
    code = cli.main(["fit", "--data", str(path), "--engine", "exact", "--mods", "ablat", "--json"])
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["omitted_rows"] == [3, 7]
    assert captured.err.startswith("bayes-se: warning:")


def test_sensitivity_leaves_out_the_same_rows(tmp_path, capsys):
    case = REFS["bcg"]["cases"][-1]
    data = _effects("bcg", case)
    with pytest.warns(DataWarning):
        grid = bse.sensitivity(data, ["default"], mods="ablat")
    kept = data.subset(np.setdiff1d(np.arange(data.k), [2, 6]))
    direct = bse.sensitivity(kept, ["default"], mods="ablat")
    pd.testing.assert_frame_equal(grid.table, direct.table)
    with pytest.raises(DataError, match="row 3"):
        bse.sensitivity(data, ["default"], mods="ablat", na="error")
    path = _write_bcg_with_missing(tmp_path)
    code = cli.main(["sensitivity", "--data", str(path), "--mods", "ablat", "--grid", "default", "--na", "error"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "column 'ablat'" in err[0]


def test_report_counts_the_effects_the_model_used(tmp_path, capsys):
    path = _write_bcg_with_missing(tmp_path)
    out = tmp_path / "report"
    code = cli.main(["report", "--data", str(path), "--engine", "exact", "--mods", "ablat", "--grid", "default",
                     "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0 and len(err) == 1 and err[0].startswith("bayes-se: warning:")  # once, not per engine
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "| rows left out (missing moderator) | 3 (Rosenthal et al 1960), 7 (Vandiviere et al 1973) |" in text
    assert "meta-regression to k = 11 effect sizes" in text


MODEL_MATRIX = json.loads((REFERENCE / "metafor" / "formula_model_matrix.json").read_text())


@pytest.mark.parametrize("case", MODEL_MATRIX["cases"], ids=lambda c: c["formula"])
def test_design_matrix_equals_r_model_matrix(case):
    """Names and values of R's model.matrix; where R's matrix is rank deficient we refuse, naming columns."""
    frame = pd.DataFrame(MODEL_MATRIX["data"])
    X_r = np.array(case["X"], dtype=float).reshape(len(frame), -1)
    if np.linalg.matrix_rank(X_r) < X_r.shape[1]:
        with pytest.raises(DataError, match="rank-deficient moderator design: column '.*' is a linear combination"):
            design_matrix(frame, case["formula"])
        return
    design = design_matrix(frame, case["formula"])
    assert ["(Intercept)" if n == "intercept" else n for n in design.names] == case["colnames"]
    np.testing.assert_array_equal(design.X, X_r)


_TOKENS = ["a", "b", "g", "factor(a)", "factor(g)", "factor(", ")", "(", "+", "-", "*", ":", "0", "1", "~", " "]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=9).map("".join))
def test_any_token_soup_gives_a_full_rank_design_or_a_bayes_se_error(text):
    frame = pd.DataFrame({"a": [1.0, 2.0, 4.0, 3.0, 0.5, 2.5], "b": [0.0, 1.0, 0.0, 2.0, 1.0, 3.0],
                          "g": ["u", "v", "w", "u", "v", "w"]})
    try:
        design = design_matrix(frame, text)
    except BayesSEError:
        return
    assert design.X.shape == (6, len(design.names)) and len(set(design.names)) == len(design.names)
    assert np.linalg.matrix_rank(design.X) == design.X.shape[1]
