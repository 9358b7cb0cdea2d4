"""Light imports: the exact and frequentist paths never load PyMC, PyTensor, ArviZ or matplotlib.

Each check runs in a fresh interpreter (``sys.modules`` of the test process already holds
whatever other tests imported) and prints the heavy modules found in ``sys.modules`` afterwards.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

DATA = pathlib.Path(__file__).parent / "reference" / "data"
HEAVY = ("pymc", "arviz", "matplotlib", "pytensor")
#: A fresh interpreter importing numpy/scipy/pandas and fitting a small table takes about 2 s
#: here; generous so that a loaded 2-core machine does not fail the test.
SUBPROCESS_TIMEOUT_S = 120

#: A 50 x 3 matrix-vector product by OpenBLAS vs NumPy's own BLAS: summation order may differ.
GEMV_RTOL = 1e-12

REPORT = f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"


def _heavy_modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; return the heavy modules it left in sys.modules."""
    script = "import json, sys\n" + textwrap.dedent(code) + "\n" + REPORT + "\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_package_is_light():
    assert _heavy_modules_after("import bayes_se") == []


def test_exact_fit_through_api_is_light():
    code = """
        import bayes_se, bayes_se.exact, bayes_se.frequentist, bayes_se.data, bayes_se.api
        import bayes_se.spec, bayes_se.priors
        import pandas as pd
        table = pd.DataFrame({"study": list("abcde"), "yi": [0.1, 0.3, 0.2, 0.5, -0.1],
                              "vi": [0.01, 0.02, 0.03, 0.04, 0.05]})
        res = bayes_se.fit(table, engine="exact")
        assert abs(res.summary().loc["mu", "mean"]) < 1
    """
    assert _heavy_modules_after(code) == []


@pytest.mark.parametrize("argv", [
    ["fit", "--engine", "exact", "--data", str(DATA / "dat.bcg.csv"), "--json"],
    ["freq", str(DATA / "dat.bcg.csv"), "--json"],
    ["freq", str(DATA / "dat.bcg.csv"), "--method", "DL", "--test", "knha"],
], ids=["fit-exact-bcg", "freq-reml-bcg", "freq-dl-knha-bcg"])
def test_cli_exact_and_freq_paths_are_light(argv):
    code = f"""
        import contextlib, io
        from bayes_se import cli
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main({argv!r})
        assert rc == 0, rc
    """
    assert _heavy_modules_after(code) == []


def test_simulate_module_is_light():
    """The simulation study's default methods (exact + DL/REML/KH) stay on the light path."""
    code = """
        import os, tempfile
        from bayes_se.simulation import simulate
        out = os.path.join(tempfile.mkdtemp(), "sim.csv")
        simulate({"k": [5], "tau": [0.2]}, reps=2, out=out, seed=1, workers=1, progress=False)
    """
    assert _heavy_modules_after(code) == []


def _run_blas_script(setup: str, tmp_path) -> None:
    """Run ``setup`` (which must set ``found``: SciPy's OpenBLAS exists) in a fresh interpreter
    with its own compile directory, then check that ``X @ b`` compiles to a C BLAS Gemv when
    ``found`` and gives NumPy's result."""
    head = f"""
        import os
        os.environ["PYTENSOR_FLAGS"] = "base_compiledir={tmp_path}"
        import numpy as np
    """
    gemv_check = f"""
        import pytensor, pytensor.tensor as pt
        X, b = pt.matrix("X"), pt.vector("b")
        f = pytensor.function([X, b], X @ b)
        ops = [type(node.op).__name__ for node in f.maker.fgraph.toposort()]
        assert (not found) or any(name.startswith("CGemv") for name in ops), ops
        rng = np.random.default_rng(0)
        Xv, bv = rng.normal(size=(50, 3)), rng.normal(size=3)
        assert np.allclose(f(Xv, bv), Xv @ bv, rtol={GEMV_RTOL}, atol=0)
        print("ok")
    """
    code = "".join(textwrap.dedent(part) for part in (head, setup, gemv_check))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_blas_configure_links_scipy_openblas_and_computes_gemv(tmp_path):
    """bayes_se.blas.configure (before PyTensor is imported) gives PyTensor a C BLAS Gemv whose
    result equals NumPy's; without SciPy's bundled OpenBLAS it declines and changes nothing."""
    _run_blas_script("""
        from bayes_se import blas
        found = blas.scipy_openblas() is not None
        assert blas.configure() == found
    """, tmp_path)


def test_blas_configure_after_pymc_import_links_without_pytensors_blas_search(tmp_path):
    """With PyMC imported first (as in a notebook), configure() still links SciPy's OpenBLAS,
    keeping the compiler flags PyMC set, and without running PyTensor's own search for a system
    BLAS (0.3 s and a warning); the linked Gemv gives NumPy's result."""
    _run_blas_script("""
        import pymc, pytensor
        calls = []
        param = pytensor.config._config_var_dict["blas__ldflags"]  # PyTensor's lazy default
        original = param._default
        param._default = lambda: calls.append(1) or original()
        pymc_flags = pytensor.config.gcc__cxxflags
        from bayes_se import blas
        found = blas.scipy_openblas() is not None
        assert blas.configure() == found
        assert calls == [], "PyTensor searched for a BLAS"
        assert pymc_flags.strip() in pytensor.config.gcc__cxxflags
        assert blas.configure() is False  # chosen now: a second call changes nothing
    """, tmp_path)
