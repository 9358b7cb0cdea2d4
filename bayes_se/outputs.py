"""Writing a fit's outputs to a folder: atomically, never over a user's files without ``force``.

The folder holds ``summary.csv``, ``spec.toml`` (the spec actually used, overrides applied),
``provenance.json`` (data checksum, seed, package versions) and, for MCMC fits, ``idata.nc``
(ArviZ InferenceData). It is built in a temporary sibling folder and renamed into place, so an
interrupted run leaves no half-written output.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from importlib import metadata

from bayes_se.errors import BayesSEError

#: Packages whose versions every output records.
RECORDED_PACKAGES = ("bayes_se", "numpy", "scipy", "pandas", "xarray", "pymc", "pytensor", "arviz",
                     "matplotlib")


def package_versions() -> dict:
    """Python's version and the installed versions of the packages a result depends on (read from
    package metadata, so nothing heavy is imported)."""
    import platform

    out = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def check_out_dir(path, *, force: bool = False) -> pathlib.Path:
    """Refuse an existing non-empty folder unless ``force``; refuse a path that is a file."""
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise BayesSEError(f"output path '{path}' is a file, not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise BayesSEError(f"output folder '{path}' exists and is not empty; use --force to replace it")
    return path


def atomic_dir(path, write, *, force: bool = False) -> pathlib.Path:
    """Call ``write(tmp_dir)`` to fill a temporary sibling folder, then move it to ``path``."""
    path = check_out_dir(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    old = None
    try:
        write(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}-previous")  # distinct from the tmp prefix
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
        tmp.rename(path)
        os.chmod(path, 0o755)  # mkdtemp made the folder private (0700)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not path.exists():
            old.rename(path)  # put the user's folder back where it was
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def check_out_file(path, *, force: bool = False) -> pathlib.Path:
    """Refuse to replace an existing file unless ``force``."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise BayesSEError(f"output path '{path}' is a folder, not a file")
    if path.exists() and not force:
        raise BayesSEError(f"output file '{path}' exists; use --force to replace it")
    return path


def atomic_file(path, write, *, force: bool = False) -> pathlib.Path:
    """Call ``write(tmp_path)`` on a temporary sibling file, then rename it to ``path``."""
    path = check_out_file(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_fit_outputs(res, spec, path, *, force: bool = False) -> pathlib.Path:
    """Write a Bayesian fit (exact or MCMC) and its provenance record to ``path``."""

    def write(tmp: pathlib.Path) -> None:
        res.summary().to_csv(tmp / "summary.csv")
        (tmp / "spec.toml").write_text(spec.to_toml(), encoding="utf-8")
        record = {
            "engine": spec.sampler.engine,
            "seed": spec.sampler.seed,
            "data_sha256": (res.data.checksum() if hasattr(getattr(res, "data", None), "checksum")
                            else res.settings.get("data_sha256")),
            "versions": package_versions(),
        }
        if hasattr(res, "idata"):
            res.to_netcdf(tmp / "idata.nc")
            record["diagnostics"] = res.diagnostics.to_dict()
        (tmp / "provenance.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")

    return atomic_dir(path, write, force=force)
