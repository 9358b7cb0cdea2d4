"""Property tests: whatever table a user hands load_effects, it loads cleanly or says why.

Random small DataFrames and random delimited text (any delimiter, either decimal mark, NaNs, text,
zeros, negatives) either load, and then every invariant holds, or raise BayesSEError: never any
other exception.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayes_se.data import load_effects
from bayes_se.errors import BayesSEError

EXAMPLES = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

numbers = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    st.sampled_from([0.0, -0.0, -1.0, 1e-300, 1e300, math.inf, -math.inf, math.nan]),
)
bad_cells = st.one_of(
    numbers,
    st.none(),
    st.sampled_from(["", "NA", "abc", "1,5", "0.25", " 2 ", "-", "1e-3", "TRUE"]),
)
effects = st.floats(min_value=-10, max_value=10, allow_nan=False)
variances = st.floats(min_value=1e-4, max_value=10)


def mostly(good, bad, rate=0.9):
    """``good`` with probability about ``rate``, else ``bad`` (so that many tables load)."""
    return st.integers(0, 99).flatmap(lambda u: good if u < 100 * rate else bad)


@st.composite
def label_lists(draw, k):
    base = [f"S{i}" for i in range(k)]
    return [draw(mostly(st.just(b), st.sampled_from(["S0", "", None, 3, 3.0]))) for b in base]


def _check_invariants(data):
    assert data.k >= 2
    assert data.yi.shape == data.vi.shape == (data.k,)
    assert np.all(np.isfinite(data.yi)) and np.all(np.isfinite(data.vi)) and np.all(data.vi > 0)
    assert len(set(data.study)) == data.k
    assert all(isinstance(s, str) for s in data.study)
    if data.cluster is not None:
        assert len(data.cluster) == data.k and all(isinstance(c, str) for c in data.cluster)
    assert list(data.frame.columns[:3]) == ["yi", "vi", "study"] and len(data.frame) == data.k


def _load(*args, **kwargs):
    try:
        data = load_effects(*args, **kwargs)
    except BayesSEError:
        return
    _check_invariants(data)


@st.composite
def frames(draw):
    k = draw(st.integers(0, 6))
    columns = {
        "yi": draw(st.lists(mostly(effects, bad_cells), min_size=k, max_size=k)),
        "vi": draw(st.lists(mostly(variances, bad_cells), min_size=k, max_size=k)),
    }
    if draw(st.booleans()):
        columns["study"] = draw(label_lists(k))
    if draw(st.booleans()):
        columns["trial"] = draw(st.lists(st.sampled_from(["1", "2", None, 2, 2.0]),
                                         min_size=k, max_size=k))
    if draw(st.booleans()):
        columns["mod"] = draw(st.lists(mostly(st.sampled_from(["a", "b", 1.5, 2]), bad_cells, 0.7),
                                       min_size=k, max_size=k))
    frame = pd.DataFrame(columns)
    if draw(st.booleans()) and k:  # numeric dtypes as well as object columns
        frame["yi"] = pd.to_numeric(frame["yi"], errors="coerce")
    return frame


@EXAMPLES
@given(frame=frames(), use_cluster=st.booleans(), use_mods=st.booleans())
def test_random_dataframes_load_or_raise_bayes_se_error(frame, use_cluster, use_mods):
    kwargs = {}
    if use_cluster:
        kwargs["cluster"] = "trial"
    if use_mods:
        kwargs["moderators"] = ["mod"]
    _load(frame, **kwargs)


text_cells = mostly(
    st.floats(min_value=1e-3, max_value=1e3).map(lambda x: f"{x:.4g}"),
    st.sampled_from(["", "NA", "0", "-1", "abc", '"q;,|x"', "nan", "inf", "1.5", "2,5", "S1"]),
)


@st.composite
def csv_texts(draw):
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    decimal = "." if sep == "," else draw(st.sampled_from([".", ","]))
    header = draw(st.sampled_from([["study", "yi", "vi"], ["study", "yi", "vi", "x"],
                                   ["yi", "vi"], ["yi", "se"], ["study", "yi"]]))
    k = draw(st.integers(0, 6))
    rows = []
    for _ in range(k):
        row = [draw(text_cells) for _ in header]
        if header[0] == "study":
            row[0] = draw(mostly(st.just(f"S{len(rows)}"), st.sampled_from(["S0", "", '"a,b"'])))
        if decimal == ",":
            row = [c.replace(".", ",") for c in row]
        if draw(st.integers(0, 9)) == 0:  # a ragged row now and then
            row = row[:-1]
        rows.append(sep.join(row))
    text = "\n".join([sep.join(header)] + rows) + ("\n" if draw(st.booleans()) else "")
    return text, draw(st.booleans()), sep, header


@EXAMPLES
@given(case=csv_texts(), give_sep=st.booleans())
def test_random_csv_text_loads_or_raises_bayes_se_error(case, give_sep):
    text, bom, sep, header = case
    kwargs = {"sep": sep} if give_sep else {}
    if "se" in header:
        kwargs["se"] = "se"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "effects.csv"
        path.write_bytes(text.encode("utf-8-sig" if bom else "utf-8"))
        _load(path, **kwargs)
