"""Link PyTensor's C BLAS ops to the OpenBLAS that SciPy's wheel already ships.

A pip-installed PyTensor finds no system BLAS (it warns "could not link to a BLAS installation")
and then replaces ``Gemv``/``Gemm``/``Dot22`` nodes by Python-level NumPy calls, which costs a
few tens of microseconds per gradient evaluation in a meta-regression (``X @ beta``). SciPy's
manylinux wheels bundle an LP64 OpenBLAS (``scipy.libs/libscipy_openblas*.so``, 32-bit integers,
the interface PyTensor's C code is written for) whose Fortran symbols carry a ``scipy_`` prefix
(``scipy_dgemm_``). :func:`configure` links PyTensor to that library and renames the symbols
PyTensor's headers call with ``-D dgemm_=scipy_dgemm_`` compiler macros: no new package, no
system library, nothing outside the virtual environment. (NumPy's bundled OpenBLAS is ILP64,
64-bit integers, and does not match PyTensor's ``int`` prototypes, so it is not used.)

It does nothing when the user (or a pytensorrc) has chosen ``blas__ldflags`` (before PyTensor is
imported: ``blas__ldflags`` or ``gcc__cxxflags`` in ``PYTENSOR_FLAGS``), when SciPy's wheel carries no such library (conda or distribution builds, which link a system
BLAS that PyTensor finds itself), or when ``BAYES_SE_NO_BLAS=1``.

References
----------
PyTensor documentation, "How do I configure/test my BLAS library"
(https://pytensor.readthedocs.io/en/latest/troubleshooting.html).
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import sys

__all__ = ["scipy_openblas", "pytensor_flags", "configure", "BLAS_SYMBOLS"]

#: The Fortran BLAS routines PyTensor's C headers declare (pytensor/tensor/blas_headers.py).
BLAS_SYMBOLS = ("caxpy ccopy cgemm cgemv cscal cswap daxpy dcopy ddot dgemm dgemv dger dscal dswap "
                "saxpy scopy sdot sgemm sgemv sger sscal sswap zaxpy zcopy zgemm zgemv zscal zswap").split()
PREFIX = "scipy_"
_MISSING_DYN = "We did not find a dynamic library"


def scipy_openblas() -> str | None:
    """Path of SciPy's bundled LP64 OpenBLAS with ``scipy_``-prefixed symbols, or None."""
    import importlib.util

    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = os.path.join(os.path.dirname(list(spec.submodule_search_locations)[0]), "scipy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas*.so"))):
        if "64_" in os.path.basename(path):  # ILP64 build: 64-bit integers, wrong interface
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if all(hasattr(lib, f"{PREFIX}{name}_") for name in BLAS_SYMBOLS):
            return path
    return None


def pytensor_flags(path: str) -> dict:
    """``blas__ldflags`` and ``gcc__cxxflags`` values that link PyTensor to ``path``."""
    folder, name = os.path.split(path)
    return {
        "blas__ldflags": f"-L{folder} -l:{name} -Wl,-rpath,{folder}",
        "gcc__cxxflags": " ".join(f"-D{s}_={PREFIX}{s}_" for s in BLAS_SYMBOLS),
    }


class _DropMissingDynWarning(logging.Filter):
    # PyTensor looks for a file named like "-l<name>" in the -L folder; "-l:<file>" names the
    # file exactly, so its warning that none was found is wrong here.
    def filter(self, record):
        return _MISSING_DYN not in record.getMessage()


def _blas_chosen(config) -> bool:
    """Whether ``pytensor.config.blas__ldflags`` has a non-empty value already (from the
    environment, a pytensorrc, code, or PyTensor's own search having run), without running that
    search: reading the option first runs it (0.3 s per process, and a warning that it found
    none). PyTensor offers no public "was this set?", so this reads its parameter registry
    (``_config_var_dict``) and falls back to reading the value where that is not there.
    """
    param = getattr(config, "_config_var_dict", {}).get("blas__ldflags")
    if param is None or not hasattr(config, "fetch_val_for_key"):
        return bool(config.blas__ldflags)
    if hasattr(param, "val"):  # set, or its default already computed
        return bool(param.val)
    try:
        return bool(config.fetch_val_for_key("blas__ldflags"))  # PYTENSOR_FLAGS or a pytensorrc
    except KeyError:
        return False


def configure() -> bool:
    """Point PyTensor at SciPy's OpenBLAS unless a BLAS was chosen already; True if it did.

    Call before PyTensor compiles anything. Before ``import pytensor`` it sets the flags in
    ``PYTENSOR_FLAGS`` (so PyTensor skips its own search for a BLAS, and sampler subprocesses
    inherit them); afterwards it sets ``pytensor.config`` directly.

    Returns
    -------
    bool
    """
    if os.environ.get("BAYES_SE_NO_BLAS") == "1":
        return False
    env = os.environ.get("PYTENSOR_FLAGS", "")
    if "blas__ldflags" in env or "gcc__cxxflags" in env:
        return False
    if "pytensor" in sys.modules:
        import pytensor

        if _blas_chosen(pytensor.config):
            return False
    path = scipy_openblas()
    if path is None:
        return False
    flags = pytensor_flags(path)
    logging.getLogger("pytensor.tensor.blas").addFilter(_DropMissingDynWarning())
    if "pytensor" in sys.modules:
        import pytensor

        # keep the compiler flags already there (``import pymc`` adds its own) and add the macros
        current = pytensor.config.gcc__cxxflags
        pytensor.config.blas__ldflags = flags["blas__ldflags"]
        if flags["gcc__cxxflags"] not in current:
            pytensor.config.gcc__cxxflags = f"{current} {flags['gcc__cxxflags']}".strip()
    else:
        # PYTENSOR_FLAGS is comma-separated: escape the commas of -Wl,-rpath,DIR
        extra = ",".join(f"{k}={v.replace(',', chr(92) + ',')}" for k, v in flags.items())
        os.environ["PYTENSOR_FLAGS"] = f"{env},{extra}" if env else extra
    return True
