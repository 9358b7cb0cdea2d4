"""Shared test setup.

All tests share one PyTensor compile directory so a model compiled by one test is reused by the
next (and by the next run of the suite on the same machine).
"""

from __future__ import annotations

import os
import pathlib
import tempfile

# one BLAS thread, as the CLI sets (small matrices; threads only contend on 2 cores)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

_COMPILEDIR = pathlib.Path(tempfile.gettempdir()) / "bayes_se_test_pytensor"
os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={_COMPILEDIR}")

TESTS = pathlib.Path(__file__).parent
REFERENCE = TESTS / "reference"

# Generated files are compared as numbers, not bytes: a float's last digit may differ between
# NumPy/BLAS builds (vectorised exp/log, LAPACK), which must not fail the suite on another machine.
GENERATED_RTOL = 1e-8  # files carry 10 significant digits: at most one unit of the 10th digit apart


def assert_csv_close(got: pathlib.Path, want: pathlib.Path, rtol: float = GENERATED_RTOL) -> None:
    """Same columns, same text cells, and numeric cells equal to ``rtol`` (NaN where NaN)."""
    import numpy as np
    import pandas as pd

    a, b = pd.read_csv(got, keep_default_na=False), pd.read_csv(want, keep_default_na=False)
    assert list(a.columns) == list(b.columns), got.name
    assert a.shape == b.shape, got.name
    for col in a.columns:
        x, y = a[col], b[col]
        if x.dtype.kind in "if" and y.dtype.kind in "if":
            np.testing.assert_allclose(x.to_numpy(float), y.to_numpy(float), rtol=rtol, atol=0,
                                       err_msg=f"{got.name}: {col}")
        else:
            xn, yn = pd.to_numeric(x, errors="coerce"), pd.to_numeric(y, errors="coerce")
            numeric = xn.notna() & yn.notna()
            assert (x[~numeric] == y[~numeric]).all(), f"{got.name}: {col}"
            np.testing.assert_allclose(xn[numeric].to_numpy(float), yn[numeric].to_numpy(float),
                                       rtol=rtol, atol=0, err_msg=f"{got.name}: {col}")


def assert_json_close(got, want, rtol: float = GENERATED_RTOL, where: str = "$") -> None:
    """Nested JSON values equal, floats to ``rtol``."""
    import math

    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), where
        for key in want:
            assert_json_close(got[key], want[key], rtol, f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_json_close(g, w, rtol, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=rtol), where
    else:
        assert got == want, where


def mcse_sd(draws) -> float:
    """MCSE of the posterior sd of ``draws`` (chain, draw): ArviZ 0.23's own ``mcse(method="sd")``
    fails under NumPy >= 2.4 (``float()`` of a 1-element array), so this repeats its formula
    (Vehtari et al. 2021)."""
    import arviz as az
    import numpy as np

    centred2 = (np.asarray(draws) - np.mean(draws)) ** 2
    ess = float(az.ess(centred2, method="mean"))
    var = centred2.mean()
    return float(np.sqrt(((centred2**2).mean() - var**2) / ess / var / 4))
