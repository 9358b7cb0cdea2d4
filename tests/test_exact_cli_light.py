"""The exact engine's command line without pandas or SciPy (issue 17), and that nothing it prints changed.

``bayes-se fit --engine exact --json`` reads the table, checks it, hashes it, fits and writes the
JSON with NumPy alone: the table's cells stay text until a DataFrame is asked for
(:class:`bayes_se.table.TextCells`, :class:`bayes_se.data.FrameColumns`), the data hash is written
without pandas, and the normal cdf and quantile are Cephes' algorithms in NumPy
(:mod:`bayes_se.normal_dist`). These tests check each of those against what it replaces: pandas'
``to_csv`` text, ``scipy.special.ndtr``/``ndtri`` (bit for bit), and the whole JSON of a process
that has pandas and scipy.special loaded (where ``ndtr`` goes to SciPy).
"""

from __future__ import annotations

import hashlib
import json
import math
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

DATA = pathlib.Path(__file__).parent / "reference" / "data"
#: Modules the exact JSON path must not load.
HEAVY = ("pandas", "scipy", "pymc", "pytensor", "arviz", "matplotlib", "xarray")
SUBPROCESS_TIMEOUT_S = 120


def _run_cli(argv, preload: str = "") -> tuple[str, list]:
    """``bayes-se ARGV`` in a fresh interpreter: its stdout and the HEAVY top-level packages loaded."""
    code = textwrap.dedent(f"""
        import contextlib, io, json, sys
        {preload}
        from bayes_se import cli
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = cli.main({list(argv)!r})
        assert rc == 0, rc
        loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
        print(json.dumps({{"stdout": out.getvalue(), "loaded": loaded}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return res["stdout"], res["loaded"]


def _exp_matches_libm() -> bool:
    """NumPy's exp equals the C library's (``math.exp``) here: then :mod:`bayes_se.normal_dist` equals
    SciPy bit for bit (on CPUs where NumPy uses its own AVX-512 exp, to an ulp or two)."""
    x = -np.square(np.random.default_rng(3).uniform(1.0, 27.0, 20_000))
    return bool(np.array_equal(np.exp(x), [math.exp(v) for v in x.tolist()]))


@pytest.fixture()
def table(tmp_path):
    """A semicolon file with decimal commas, a Latin-1 label, quotes, a missing moderator cell, an
    integer, a text and an empty moderator column, and labels that need quoting in CSV."""
    rng = np.random.default_rng(17)
    k = 23
    yi, vi = rng.normal(0.3, 0.3, k), rng.uniform(0.01, 0.1, k)
    lines = ["study;yi;vi;year;arm;dose;blank;mixed"]
    for i in range(k):
        label = {0: '"Smith, 2001"', 1: '"Ödegaard ""A"""', 2: "Lee; 2003".replace(";", "")}.get(i, f"S{i}")
        year = "" if i == 4 else str(1990 + i)
        dose = f"{rng.uniform(0, 1e-3):.6e}".replace(".", ",") if i != 7 else "NA"
        lines.append(f"{label};{float(yi[i])!r};{float(vi[i])!r};{year};{'ab'[i % 2]};{dose};;{i if i % 3 else 'x'}"
                     .replace(".", ","))
    path = tmp_path / "effects.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_exact_json_path_loads_no_pandas_no_scipy(table):
    for argv in (["fit", "--engine", "exact", "--data", str(DATA / "dat.bcg.csv"), "--json"],
                 ["fit", "--engine", "exact", "--data", str(table), "--json"]):
        _, loaded = _run_cli(argv)
        assert loaded == [], argv


def test_exact_json_equals_that_of_a_process_with_pandas_and_scipy(table):
    """The lean path's JSON (NumPy's ndtr, the data hash without pandas) equals the JSON of a process
    where pandas and scipy.special are loaded first (ndtr by SciPy)."""
    for argv in (["fit", "--engine", "exact", "--data", str(table), "--json"],
                 ["fit", "--engine", "exact", "--data", str(DATA / "dat.bcg.csv"), "--json",
                  "--prior", "tau=half_cauchy(0.3)", "--level", "0.9"]):
        lean, _ = _run_cli(argv)
        full, loaded = _run_cli(argv, preload="import pandas, scipy.special")
        assert {"pandas", "scipy"} <= set(loaded)
        if _exp_matches_libm():
            assert lean == full
        else:  # pragma: no cover - NumPy's own exp (AVX-512): the last digit may differ
            a, b = json.loads(lean), json.loads(full)
            assert a["settings"] == b["settings"]
            for name, row in a["parameters"].items():
                for col, value in row.items():
                    assert value == pytest.approx(b["parameters"][name][col], rel=1e-12, abs=1e-300)


@pytest.mark.filterwarnings("ignore:column 'mixed' mixes")
def test_data_hash_without_pandas_equals_pandas_to_csv(table, tmp_path):
    """:meth:`FrameColumns.canonical_csv` is byte for byte pandas' canonical CSV of the same frame."""
    from bayes_se.data import FrameColumns, load_effects

    three = tmp_path / "three.csv"
    three.write_text("id,yi,vi,site,score\n" + "".join(
        f"e{i},{(-1) ** i * 10.0 ** (i - 12):.17g},{0.01 + i / 1000},\"s{i // 3}\",{'-0' if i == 2 else i * 2.5}\n"
        for i in range(12)), encoding="utf-8")
    cases = [load_effects(table), load_effects(DATA / "dat.bcg.csv"),
             load_effects(three, study="id", cluster="site")]
    for data in cases:
        assert isinstance(data.cells, FrameColumns)
        lean = data.checksum()
        text = data.frame.to_csv(index=False, lineterminator="\n", float_format="%.17g")  # now pandas
        assert lean == hashlib.sha256(text.encode("utf-8")).hexdigest()
        assert data.checksum() == lean


def test_normal_dist_equals_scipy_special():
    from scipy import special

    from bayes_se import normal_dist

    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 1, 200_000), rng.normal(0, 6, 200_000), rng.uniform(-40, 40, 100_000),
                        [0.0, -0.0, 1.0, -1.0, math.sqrt(2), -math.sqrt(2), 8 * math.sqrt(2), 37.5, -37.5,
                         38.6, -38.6, 1e300, -1e300, np.inf, -np.inf, np.nan]])
    ours = np.concatenate([normal_dist.ndtr(part) for part in np.array_split(x, 4)])
    ref = special.ndtr(x)
    if _exp_matches_libm():
        np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_max_ulp(ours[np.isfinite(ours)], ref[np.isfinite(ours)], maxulp=2)
    assert normal_dist.ndtr(0.3) == float(special.ndtr(0.3)) and isinstance(normal_dist.ndtr(0.3), float)
    grid = x.reshape(-1, 1)[:1000].reshape(40, 25).T  # a Fortran-ordered view keeps its layout
    assert normal_dist.ndtr(grid).strides == special.ndtr(grid).strides
    p = np.concatenate([rng.uniform(0, 1, 20_000), 10 ** -rng.uniform(0, 300, 5_000),
                        1 - 10 ** -rng.uniform(0, 16, 5_000),
                        [0.0, 1.0, 0.5, 0.025, 0.975, math.exp(-2), 1 - math.exp(-2), 5e-324, -0.1, 1.1]])
    for q in p.tolist():  # log and sqrt of the C library: bit for bit
        a, b = normal_dist.ndtri(q), float(special.ndtri(q))
        assert a == b or (math.isnan(a) and math.isnan(b)), q


def test_median_equals_numpy():
    from bayes_se.lazy import median

    rng = np.random.default_rng(2)
    for n in (1, 2, 3, 4, 81, 1000):
        x = rng.lognormal(size=n)
        assert median(x) == float(np.median(x))
