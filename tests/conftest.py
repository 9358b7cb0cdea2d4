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
