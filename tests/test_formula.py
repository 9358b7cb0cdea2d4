"""The moderator formula language: grammar, coding, column names and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_se.errors import BayesSEError, DataError, SpecError
from bayes_se.formula import describe_coding, design_matrix, parse_formula


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "ablat": [44.0, 55.0, 42.0, 52.0, 13.0, 44.0],
            "weeks.c": [2, 3, 3, 0, 0, 1],
            "alloc": ["random", "random", "systematic", "alternate", "systematic", "alternate"],
            "blind": [True, False, True, False, True, True],
            "meta": [0, 1, 1, 0, 1, 0],
            "grade": pd.Categorical(["hi", "lo", "hi", "mid", "lo", "mid"], categories=["mid", "lo", "hi"]),
        }
    )


def test_parse_formula_expands_star_and_orders_by_degree():
    assert parse_formula("a*b") == (True, [("a",), ("b",), ("a", "b")])
    assert parse_formula("a:b + a") == (True, [("a",), ("a", "b")])
    assert parse_formula("~ 0 + a") == (False, [("a",)])
    assert parse_formula(None) == (True, [])
    assert parse_formula("a + a") == (True, [("a",)])
    _, terms = parse_formula("a*b*c")
    assert terms == [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "c"), ("a", "b", "c")]


def test_intercept_only_and_continuous_columns(frame):
    X, names = design_matrix(frame, None)
    assert names == ["intercept"] and X.shape == (6, 1)
    X, names = design_matrix(frame, "ablat + weeks.c + meta")
    assert names == ["intercept", "ablat", "weeks.c", "meta"]  # a 0/1 number stays continuous
    np.testing.assert_array_equal(X[:, 2], frame["weeks.c"])


def test_treatment_coding_reference_is_first_sorted_level(frame):
    X, names = design_matrix(frame, "alloc")
    assert names == ["intercept", "allocrandom", "allocsystematic"]
    np.testing.assert_array_equal(X[:, 1], [1, 1, 0, 0, 0, 0])
    assert describe_coding(frame, "alloc") == ["alloc: treatment coding, reference level 'alternate'"]


def test_bool_is_categorical_and_categorical_keeps_category_order(frame):
    _, names = design_matrix(frame, "blind + grade")
    assert names == ["intercept", "blindTRUE", "gradelo", "gradehi"]
    assert describe_coding(frame, "grade") == ["grade: treatment coding, reference level 'mid'"]


def test_interactions_and_no_intercept(frame):
    X, names = design_matrix(frame, "ablat*alloc")
    assert names == ["intercept", "ablat", "allocrandom", "allocsystematic",
                     "ablat:allocrandom", "ablat:allocsystematic"]
    np.testing.assert_array_equal(X[:, 4], frame["ablat"] * (frame["alloc"] == "random"))
    # margin 'ablat' absent: the factor gets one indicator per level, as in R
    _, names = design_matrix(frame, "ablat:alloc")
    assert names == ["intercept", "ablat:allocalternate", "ablat:allocrandom", "ablat:allocsystematic"]
    X, names = design_matrix(frame, "0 + alloc + ablat")
    assert names == ["allocalternate", "allocrandom", "allocsystematic", "ablat"]
    np.testing.assert_array_equal(X[:, :3].sum(axis=1), 1)
    assert design_matrix(frame, "ablat", intercept=False)[1] == ["ablat"]


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("ablat - alloc", "'-' at position 7"),
        ("log(ablat)", "'(' at position 4"),
        ("ablat + ", "expected a column name"),
        ("ablat alloc", "unexpected 'alloc'"),
        ("0 ablat", "'0' must be followed by '+'"),
        ("ablat ^ 2", "'^' at position 7"),
    ],
)
def test_grammar_errors_name_the_position(frame, expr, fragment):
    with pytest.raises(SpecError, match="mods") as info:
        design_matrix(frame, expr)
    assert fragment in str(info.value)


def test_data_errors_name_column_and_row(frame):
    with pytest.raises(DataError, match="not found") as info:
        design_matrix(frame, "latitude")
    assert info.value.column == "latitude"
    frame.loc[3, "ablat"] = np.nan
    with pytest.raises(DataError, match="missing") as info:
        design_matrix(frame, "ablat", na="error")
    assert (info.value.row, info.value.column) == (4, "ablat")
    frame["const"] = 1.0
    with pytest.raises(DataError, match="constant"):
        design_matrix(frame, "const")
    frame["one"] = "x"
    with pytest.raises(DataError, match="one level"):
        design_matrix(frame, "one")


def test_rank_deficient_design_names_the_collinear_columns(frame):
    frame["ablat2"] = 2 * frame["ablat"]
    with pytest.raises(DataError, match=r"'ablat2' is a linear combination of \['ablat'\]"):
        design_matrix(frame, "ablat + ablat2")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab.:+*0 ~-()_x1", max_size=20))
def test_any_text_gives_a_matrix_or_a_bayes_se_error(text):
    frame = pd.DataFrame({"a": [1.0, 2.0, 4.0, 3.0], "b": ["u", "v", "u", "v"], "a.x": [0.0, 1.0, 0.0, 2.0]})
    try:
        X, names = design_matrix(frame, text)
    except BayesSEError:
        return
    assert X.shape == (4, len(names))
