"""Correlation input: layouts, pair order, exact path conversion, and each DataError's message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayes_se.correlations import (
    CorrelationData,
    load_correlations,
    olkin_siotani,
    pair_index,
)
from bayes_se.errors import DataError, SpecError

DATA = Path(__file__).parent / "reference" / "data"
#: rcalc's V is a closed form of the correlations: agreement to rounding.
CLOSED_FORM_RTOL = 1e-12
CRAFT_VARIABLES = ["perf", "acog", "asom", "conf"]


def _craft_long():
    d = pd.read_csv(DATA / "dat.craft2003.csv")
    return d.rename(columns={"yi": "r", "ni": "n"})[["study", "n", "var1", "var2", "r"]]


def _long(rows):
    return pd.DataFrame(rows, columns=["study", "n", "var1", "var2", "r"])


GOOD = [("s1", 50, "x", "m", 0.3), ("s1", 50, "x", "y", 0.2), ("s1", 50, "m", "y", 0.4),
        ("s2", 80, "x", "m", 0.25), ("s2", 80, "x", "y", 0.1), ("s2", 80, "m", "y", 0.5)]


def test_craft2003_long_layout_and_rcalc_covariance():
    data = load_correlations(_craft_long(), variables=CRAFT_VARIABLES)
    assert isinstance(data, CorrelationData)
    assert data.k == 10 and data.pair_labels == ["perf,acog", "perf,asom", "perf,conf", "acog,asom",
                                                 "acog,conf", "asom,conf"]
    assert data.observed.sum(axis=1).tolist() == [6, 6, 3, 6, 3, 6, 6, 6, 6, 6]
    V = pd.read_csv(DATA / "dat.craft2003_V.csv").to_numpy()
    for i in range(data.k):
        block = V[6 * i:6 * i + 6, 6 * i:6 * i + 6]
        ours = olkin_siotani(data.matrix(i), data.n[i])
        assert np.array_equal(np.isnan(ours), np.isnan(block))
        ok = ~np.isnan(block)
        np.testing.assert_allclose(ours[ok], block[ok], rtol=CLOSED_FORM_RTOL)


def test_pair_order_is_lower_triangle_by_column():
    assert pair_index(3) == [(1, 0), (2, 0), (2, 1)]
    data = load_correlations(_long(GOOD))
    assert data.variables == ("x", "m", "y")
    np.testing.assert_array_equal(data.r[0], [0.3, 0.2, 0.4])
    R = data.matrix(1)
    assert R[0, 1] == R[1, 0] == 0.25 and R[2, 1] == 0.5
    assert set(data.to_long()["r"]) == {0.3, 0.2, 0.4, 0.25, 0.1, 0.5}


def test_wide_layouts_and_missing_pairs():
    wide = pd.DataFrame({"study": ["a", "b", "c"], "n": [40, 60, 90],
                         "r_intervention_self_efficacy": [0.3, 0.2, 0.35],
                         "r_intervention_symptoms": [-0.2, -0.1, np.nan],
                         "r_self_efficacy_symptoms": [-0.4, -0.3, -0.5]})
    data = load_correlations(wide)
    assert data.variables == ("intervention", "self_efficacy", "symptoms")
    assert data.observed.tolist() == [[True] * 3, [True] * 3, [True, False, True]]
    dotted = wide.rename(columns=lambda c: c[2:].replace("_s", ".s", 1) if c.startswith("r_") else c)
    dotted.columns = ["study", "n", "intervention.self_efficacy", "intervention.symptoms", "self_efficacy.symptoms"]
    again = load_correlations(dotted)
    np.testing.assert_array_equal(np.nan_to_num(again.r), np.nan_to_num(data.r))


def test_path_estimates_convert_exactly():
    x, m, y = 0.3, 0.2, 0.45
    rxm, rxy, rmy = 0.3, 0.25, 0.4
    b = (rmy - rxm * rxy) / (1 - rxm**2)
    c = (rxy - rxm * rmy) / (1 - rxm**2)
    table = pd.DataFrame({"study": ["a", "b"], "n": [50, 70], "a": [rxm, x], "a_se": [0.1, 0.1],
                          "b": [b, np.nan], "c_prime": [c, np.nan]})
    data = load_correlations(table)
    np.testing.assert_allclose(data.r[0], [rxm, rxy, rmy], rtol=1e-14)
    assert data.observed[1].tolist() == [True, False, False]
    with pytest.raises(DataError, match=r"row 2, column 'c_prime'.*together"):
        load_correlations(table.assign(b=[b, 0.3]))
    with pytest.raises(DataError, match=r"row 1, column 'a_se': the standard error must be > 0"):
        load_correlations(table.assign(a_se=[-1.0, 0.1]))


@pytest.mark.parametrize("change, pattern", [
    (lambda t: t.assign(r=[1.0] + list(t.r[1:])), r"row 1, column 'r': a correlation must lie strictly between"),
    (lambda t: t.assign(n=[np.nan] + list(t.n[1:])), r"row 1, column 'n': the sample size is missing"),
    (lambda t: t.assign(n=[3] + list(t.n[1:])), r"row 1, column 'n': the sample size must be >= 4"),
    (lambda t: pd.concat([t, t.iloc[[0]]]).reset_index(drop=True),
     r"row 7, column 'var2': study 's1' reports the pair \(x, m\) twice \(also on row 1\)"),
    (lambda t: t.assign(var1=["m"] + list(t.var1[1:]), var2=["x"] + list(t.var2[1:])).pipe(
        lambda u: pd.concat([u, u.iloc[[0]].assign(var1="x", var2="m")]).reset_index(drop=True)),
     r"row 7.*reports the pair \(x, m\) twice"),
    (lambda t: t[t.study == "s1"], r"column 'study': at least 2 studies are needed, got 1"),
    (lambda t: t[~((t.var1 == "m") & (t.var2 == "y"))],
     r"column 'r': no study reports the correlation of \(m,y\)"),
    (lambda t: t.assign(r=[0.9, -0.9, 0.9, 0.25, 0.1, 0.5]),
     r"row 1, column 'study': study 's1': the correlation matrix is not positive definite"),
    (lambda t: t.assign(var2=["x"] + list(t.var2[1:])), r"row 1.*cannot be paired with itself"),
    (lambda t: t.assign(r=["high"] + list(t.r[1:])), r"row 1, column 'r': the correlation 'high' is not a number"),
])
def test_bad_input_messages(change, pattern):
    with pytest.raises(DataError, match=pattern):
        load_correlations(change(_long(GOOD)))


def test_unknown_variable_and_bad_options():
    with pytest.raises(DataError, match=r"row 1, column 'var1': unknown variable 'x'; variables are"):
        load_correlations(_long(GOOD), variables=["intervention", "m", "y"])
    with pytest.raises(SpecError, match="layout"):
        load_correlations(_long(GOOD), layout="tall")
    with pytest.raises(DataError, match="column 'var2' is missing"):
        load_correlations(_long(GOOD).drop(columns="var2"), layout="long")
    with pytest.raises(DataError, match="file not found"):
        load_correlations("/nonexistent/file.csv")


def test_reads_a_file(tmp_path):
    path = tmp_path / "r.csv"
    _long(GOOD).to_csv(path, index=False)
    data = load_correlations(path)
    assert data.k == 2 and data.n.tolist() == [50.0, 80.0]
