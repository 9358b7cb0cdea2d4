"""load_effects / EffectData: reading the metadat tables, sniffing formats, and every input error."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd
import pytest

from bayes_se.data import MAX_FILE_BYTES, EffectData, load_effects
from bayes_se.errors import DataError

from conftest import REFERENCE, assert_csv_close

DATA = REFERENCE / "data"
EXACT = 0.0  # values pass through unchanged (or are squared once): compare bit for bit


def _write(tmp_path, text, name="effects.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_bcg_loads_with_labels_and_moderators():
    dat = load_effects(DATA / "dat.bcg.csv")
    ref = pd.read_csv(DATA / "dat.bcg.csv")
    assert dat.k == 13 and dat.cluster is None and dat.n_clusters == 13
    np.testing.assert_array_equal(dat.yi, ref.yi)
    np.testing.assert_array_equal(dat.vi, ref.vi)
    np.testing.assert_allclose(dat.sei, ref.sei, rtol=1e-14)  # sei = sqrt(vi), rounding only
    assert dat.study[0] == "Aronson 1948"
    assert list(dat.frame.columns[:3]) == ["yi", "vi", "study"]
    assert {"ablat", "year", "alloc"} <= set(dat.frame.columns)
    assert dat.frame["ablat"].dtype.kind in "if" and dat.frame["alloc"].iloc[0] == "random"


def test_bcg_from_dataframe_equals_file():
    from_file = load_effects(DATA / "dat.bcg.csv")
    from_frame = load_effects(pd.read_csv(DATA / "dat.bcg.csv"))
    assert from_file.checksum() == from_frame.checksum()


def test_normand1999_se_column_gives_squared_variance():
    ref = pd.read_csv(DATA / "dat.normand1999.csv")
    dat = load_effects(ref.drop(columns="vi"), se="sei")
    np.testing.assert_array_equal(dat.vi, ref.sei.to_numpy() ** 2)


def test_craft2003_cluster_labels_are_numbered():
    frame = pd.DataFrame({"yi": [0.1, 0.2, 0.3, 0.4], "vi": [0.1] * 4,
                          "study": ["A", "A", "B", "C"], "trial": [1, 1, 2, 3]})
    dat = load_effects(frame, cluster="trial")
    assert dat.study == ("A [1]", "A [2]", "B", "C")
    assert dat.cluster == ("1", "1", "2", "3") and dat.n_clusters == 3
    craft = load_effects(DATA / "dat.craft2003_univariate.csv", cluster="cluster")
    assert craft.cluster is not None and craft.frame["cluster"].iloc[0] == "1"


def test_european_excel_semicolon_comma_decimal_with_bom(tmp_path):
    text = 'study;yi;vi;dose\n"Smith; 2001";0,5;0,04;1,5\nJones 2003;-1,25;0,1;2\n'
    dat = load_effects(_write(tmp_path, text, encoding="utf-8-sig"))
    np.testing.assert_array_equal(dat.yi, [0.5, -1.25])
    np.testing.assert_array_equal(dat.vi, [0.04, 0.1])
    assert dat.study == ("Smith; 2001", "Jones 2003")
    np.testing.assert_array_equal(dat.frame["dose"], [1.5, 2.0])


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_every_delimiter_is_sniffed(tmp_path, sep):
    text = sep.join(["study", "yi", "vi"]) + "\n" + "\n".join(
        sep.join([f"S{i}", str(0.1 * i), "0.05"]) for i in range(1, 5)) + "\n"
    dat = load_effects(_write(tmp_path, text))
    assert dat.k == 4 and dat.study[-1] == "S4"


def test_generated_labels_and_from_arrays():
    dat = EffectData.from_arrays([0.1, 0.3, 0.2], [0.01, 0.02, 0.03], dose=[1, 2, 3])
    assert dat.study == ("1", "2", "3") and list(dat.frame.columns) == ["yi", "vi", "study", "dose"]
    with pytest.raises(DataError, match="no study label column 'label'"):
        load_effects(pd.DataFrame({"yi": [1, 2], "vi": [1, 1]}), study="label")


def test_subset_design_and_checksum():
    dat = load_effects(DATA / "dat.bcg.csv")
    sub = dat.subset(dat.frame["alloc"].to_numpy() == "random")
    assert sub.k == 7 and sub.frame.index.tolist() == list(range(7))
    with pytest.raises(DataError, match="at least 2"):
        dat.subset(np.arange(dat.k) == 0)
    with pytest.raises(DataError, match="shape"):
        dat.subset([True, False])
    text = dat.frame.to_csv(index=False, lineterminator="\n", float_format="%.17g")
    assert dat.checksum() == hashlib.sha256(text.encode()).hexdigest()
    X, names = dat.design("ablat")  # bayes_se.formula.design_matrix on .frame
    assert names == ["intercept", "ablat"]
    np.testing.assert_array_equal(X[:, 1], dat.frame["ablat"])


def test_arrays_are_read_only():
    dat = load_effects(DATA / "dat.bcg.csv")
    with pytest.raises(ValueError):
        dat.yi[0] = 1.0


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty"),
        ("study,yi,vi\n", "no data rows"),
        ("study,yi,vi\nA,1,0.1\n", "at least 2"),
        ("study,yi,vi\nA,1,0.1\nB,,0.1\n", r"row 2 \(study 'B'\), column 'yi': the value is missing"),
        ("study,yi,vi\nA,1,0.1\nB,inf,0.1\n", r"row 2 \(study 'B'\), column 'yi': .*infinite"),
        ("study,yi,vi\nA,1,0.1\nB,big,0.1\n", r"row 2 \(study 'B'\), column 'yi': .*'big'"),
        ("study,yi,vi\nA,1,0\nB,1,0.1\n", r"row 1 \(study 'A'\), column 'vi': .*> 0"),
        ("study,yi,vi\nA,1,-2\nB,1,0.1\n", r"row 1 \(study 'A'\), column 'vi'"),
        ("study,yi,vi\nA,1,0.1\nB,2,0.1\nA,3,0.1\n", r"rows 1 and 3.*cluster="),
        ("study,g,vi\nA,1,0.1\nB,2,0.1\n", r"no effect column 'yi'.*'study', 'g', 'vi'"),
        ("study,yi,var\nA,1,0.1\nB,2,0.1\n", r"no variance column 'vi'.*se="),
    ],
)
def test_bad_files_name_row_and_column(tmp_path, text, match):
    with pytest.raises(DataError, match=match):
        load_effects(_write(tmp_path, text))


def test_wrong_delimiter_is_explained(tmp_path):
    path = _write(tmp_path, "study;yi;vi\nA;1;0.1\nB;2;0.1\n")
    with pytest.raises(DataError, match="single column.*pass sep=';'"):
        load_effects(path, sep=",")


def test_se_must_be_positive(tmp_path):
    path = _write(tmp_path, "study,yi,se\nA,1,0.1\nB,2,0\n")
    with pytest.raises(DataError, match=r"row 2 \(study 'B'\), column 'se': the standard error"):
        load_effects(path, se="se")


def test_moderator_checks():
    frame = pd.DataFrame({"yi": [1, 2, 3], "vi": [1, 1, 1], "one": ["a", "a", "a"],
                          "none": [np.nan] * 3, "x": [1.0, 2.0, 3.0]})
    assert list(load_effects(frame, moderators=["x"]).frame.columns) == ["yi", "vi", "study", "x"]
    with pytest.raises(DataError, match="column 'one': .*single level"):
        load_effects(frame, moderators=["one"])
    with pytest.raises(DataError, match="column 'none': .*every row"):
        load_effects(frame, moderators=["none"])
    with pytest.raises(DataError, match="no moderator column 'z'"):
        load_effects(frame, moderators=["z"])


def test_huge_file_refused_unread(tmp_path):
    path = tmp_path / "huge.csv"
    with open(path, "wb") as handle:  # sparse file: no disk used, never read
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(DataError, match="MB"):
        load_effects(path)
    assert os.path.getsize(path) > MAX_FILE_BYTES


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_effects(tmp_path / "nope.csv")


# ------------------------------------------------------------------ the bundled Metapsy dataset

REPO = REFERENCE.parents[1]
METAPSY = REPO / "data" / "metapsy_depression_selfguided.csv"


def test_metapsy_depression_selfguided_loads_nested():
    dat = load_effects(METAPSY, study="study", cluster="study_id")
    assert dat.k == 118 and dat.n_clusters == 92  # counts documented in data/README.md
    np.testing.assert_array_equal(dat.vi, dat.frame["sei"].to_numpy() ** 2)
    assert set(dat.frame["support"]) == {"pure", "tech", "auto", "demand", "human"}
    assert dat.frame["year"].dtype.kind == "i" and dat.frame["rob"].between(0, 4).all()


def test_metapsy_curation_script_is_deterministic(tmp_path):
    import subprocess
    import sys

    script = REPO / "scripts" / "curate_metapsy.py"
    for name in ("a.csv", "b.csv"):
        subprocess.run([sys.executable, str(script), "--out", str(tmp_path / name)], check=True,
                       capture_output=True, timeout=120)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()  # same machine
    assert_csv_close(tmp_path / "a.csv", METAPSY)  # the committed file is what the script writes
