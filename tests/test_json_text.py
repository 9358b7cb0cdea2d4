"""bayes_se.json_text.dumps writes exactly what json.dumps(indent=2) writes of the cleaned object."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bayes_se.json_text import dumps, jsonable

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=8))
objects = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=30)


def reference(obj) -> str:
    return json.dumps(jsonable(obj), indent=2, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(objects)
def test_same_text_as_the_standard_library(obj):
    assert dumps(obj) == reference(obj)


def test_numpy_values_tuples_and_non_finite_floats():
    obj = {"a": np.float64(0.1), "b": np.int64(3), "c": np.array([1.5, np.nan]), "d": (np.bool_(True), None),
           "e": [math.inf, -math.inf], "f": np.float32(0.25), "g": {}, "h": [], "é<$>": "ü\n\"q\"", 7: 1}
    assert dumps(obj) == reference(obj)
    assert json.loads(dumps(obj))["c"] == [1.5, None]
    rows = {"r": {"mean": 0.5, "sd": None, "x": np.array([1.0, np.nan])}, "s": {"mean": np.nan, "q": 1e300}}
    assert dumps(rows) == reference(rows)


def test_unknown_types_fail_as_the_standard_library_does():
    import pytest

    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_many_summary_rows_in_one_batch():
    # a dict of many rows with the same keys (bayes_se.json_text._rows_text): the same text, with
    # None, NaN and inf cells, keys needing escapes or holding %, non-str row names, and a dict that
    # only looks like a table (a row with other keys, a non-float value, an empty row)
    rng = np.random.default_rng(4)
    values = [0.1, -0.0, 1e300, 5e-324, math.nan, math.inf, -math.inf, None, 1.0, 2.5e-05]
    for keys in (("mean", "sd", "q2.5"), ("P(>0.2)", "%s", "a%b"), ("é", "\"q\"", "x\n")):
        rows = {(f"theta[s{i}]" if i % 3 else i): {k: values[rng.integers(len(values))] for k in keys}
                for i in range(40)}
        assert dumps({"parameters": rows, "k": 40}) == reference({"parameters": rows, "k": 40})
        for odd in ({"other": 1.0}, {keys[0]: 1}, {keys[0]: "x", keys[1]: 1.0, keys[2]: 1.0}, {},
                    dict(reversed(list(rows["theta[s1]"].items())))):
            changed = dict(rows, **{"theta[s2]": odd})
            assert dumps(changed) == reference(changed)
