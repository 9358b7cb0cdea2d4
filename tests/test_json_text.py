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


def test_large_tables_formatted_by_arrow_as_repr_does(monkeypatch):
    # from ARROW_MIN_VALUES values on, floats are formatted by Arrow's cast (where pyarrow is
    # installed) and the magnitudes, integral values and non-finite cells it writes otherwise by repr
    import pytest

    from bayes_se import json_text

    pytest.importorskip("pyarrow")
    monkeypatch.setattr(json_text, "ARROW_MIN_VALUES", 1000)
    monkeypatch.setattr(json_text, "ARROW_PIECE", 700)  # several pieces, the last one short
    rng = np.random.default_rng(17)
    special = [0.1, 0.1 + 0.2, -0.0, 0.0, 1.0, -3.0, 2.0**53, 1e16, 9999999999999998.0, 1e16 + 2.0, 1e-4,
               9.99999999999999e-05, 1.0000000000000002e-4, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
               123456789012.34567, 0.30000000000000004, 2.675, math.nan, math.inf, -math.inf, None]
    values = list(rng.normal(size=2000) * 10.0 ** rng.uniform(-8, 20, 2000)) + list(rng.random(2000)) + special * 10
    values = [v if v is None else float(v) for v in values]
    rng.shuffle(values)
    keys = ("mean", "sd", "q2.5", "q50", "q97.5", "P(>0.2)", "P(<-0.2)")
    rows = {f"theta[s{i}]": dict(zip(keys, values[i * 7:i * 7 + 7])) for i in range(len(values) // 7)}
    json_text._ARROW_OK = None
    assert dumps({"parameters": rows}) == reference({"parameters": rows})
    assert json_text._ARROW_OK is True  # the Arrow path ran
    texts = json_text._value_texts(values)
    assert texts == ["null" if v is None or not math.isfinite(v) else repr(v) for v in values]


def test_the_arrow_path_imports_no_pandas():
    import subprocess
    import sys

    import pytest

    pytest.importorskip("pyarrow")
    code = ("import sys; from bayes_se import json_text; "
            "rows = {f's{i}': {'a': i / 7, 'b': None} for i in range(30000)}; "
            "json_text.dumps(rows); assert json_text._ARROW_OK is True; print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
