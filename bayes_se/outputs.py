"""Writing outputs to a folder: one writer at a time, swapped in atomically, never over a user's files.

A fit's folder holds ``summary.csv``, ``spec.toml`` (the spec as it actually ran: overrides applied,
sampler settings as used, priors resolved), ``provenance.json`` (what ran, data checksum, package
versions) and, for MCMC fits, ``idata.nc`` (ArviZ InferenceData).

The protocol (:func:`atomic_dir`), for an output folder ``DIR/NAME``:

1. **Lock.** ``DIR/.NAME.bayes_se-lock`` is opened and locked with ``fcntl.flock`` (exclusive,
   non-blocking). A second writer to the same folder gets a one-line :class:`BayesSEError`. The
   kernel drops the lock when its process dies, so a killed writer never leaves a stale lock.
2. **Recover.** If a journal ``DIR/.NAME.bayes_se-swap`` is left by a writer that died, it is
   replayed: the old folder is put back if the name is missing, the journal's own temporary and
   backup folders are removed (:func:`recover`).
3. **Journal, then write.** The journal naming a fresh temporary folder ``.NAME.bayes_se-new-TOKEN``
   and backup name ``.NAME.bayes_se-old-TOKEN`` is written (``O_CREAT | O_EXCL``) before either
   exists; the temporary folder is then filled.
4. **Swap.** ``NAME -> backup``, ``temporary -> NAME`` (two ``rename(2)`` calls), then the backup
   and the journal are deleted. Killed at any moment, the next run's step 2 leaves either the old
   or the new folder under ``NAME``.

Only names listed in a journal written by this package (and matching its pattern) are ever
renamed or deleted: a user's own ``.NAME-previous`` or ``.NAME.bayes_se-new-mine`` is left alone.
A symbolic link at ``NAME`` is refused unless ``force``; with ``force`` the link itself is replaced
by the new folder and the folder it pointed to is left untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import secrets
import shutil
import tempfile
import time

from bayes_se.errors import BayesSEError

try:  # POSIX; elsewhere an O_EXCL lock file (a killed writer's lock must then be removed by hand)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

#: Packages whose versions every output records.
RECORDED_PACKAGES = ("bayes_se", "numpy", "scipy", "pandas", "xarray", "pymc", "pytensor", "arviz",
                     "matplotlib", "nutpie")
#: Tag in every name this package creates beside an output folder.
TAG = "bayes_se"
JOURNAL_FORMAT = "bayes_se-swap-1"


def package_versions() -> dict:
    """Python's version and the installed versions of the packages a result depends on (read from
    package metadata, so nothing heavy is imported)."""
    import platform
    from importlib import metadata  # here: importing it costs 30 to 70 ms, paid only by writers

    out = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ---------------------------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------------------------
def target_path(path) -> pathlib.Path:
    """``path`` made absolute with its folder resolved but its last component kept (a link at the
    last component is the output name itself, not followed)."""
    absolute = os.path.abspath(os.fspath(path))
    return pathlib.Path(os.path.realpath(os.path.dirname(absolute))) / os.path.basename(absolute)


def lock_path(path) -> pathlib.Path:
    """The lock file beside output folder ``path``."""
    path = target_path(path)
    return path.with_name(f".{path.name}.{TAG}-lock")


def journal_path(path) -> pathlib.Path:
    """The swap journal beside output folder ``path``."""
    path = target_path(path)
    return path.with_name(f".{path.name}.{TAG}-swap")


def _is_within(inner: pathlib.Path, outer: pathlib.Path) -> bool:
    return inner == outer or outer in inner.parents


def check_out_location(path, *, force: bool = False, inputs=()) -> pathlib.Path:
    """Refuse an output path that cannot or must not be written, before any work is done.

    Refused (with or without ``force``): an existing file; a path below a file; a folder whose
    nearest existing parent is not writable; a path that equals or contains the current folder
    or one of ``inputs`` (data and spec files: replacing the folder would delete them). Refused
    without ``force``: a symbolic link (``force`` replaces the link itself, not its target).
    """
    shown = os.fspath(path)
    target = target_path(path)
    if not target.name or target.name in (".", ".."):
        raise BayesSEError(f"output folder '{shown}' has no name of its own; give a new folder")
    if target.is_symlink():
        if not force:
            raise BayesSEError(f"output folder '{shown}' is a symbolic link (to '{os.readlink(target)}'); "
                               "give the real folder, or --force to replace the link by a new folder "
                               "(its target is left untouched)")
    elif target.exists() and not target.is_dir():
        raise BayesSEError(f"output path '{shown}' is a file, not a folder")
    protected = [("the current folder", pathlib.Path(os.getcwd()).resolve())]
    protected += [(f"the input file '{os.fspath(p)}'", pathlib.Path(os.path.realpath(os.fspath(p))))
                  for p in inputs if p is not None]
    for what, place in protected:
        if _is_within(place, target):
            raise BayesSEError(f"output folder '{shown}' is or contains {what}; replacing it would delete "
                               "it (even with --force): choose a new folder")
    ancestor = target.parent
    while not ancestor.exists():
        if ancestor.is_symlink():  # a dangling link on the way
            raise BayesSEError(f"cannot create output folder '{shown}': '{ancestor}' is a broken link")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BayesSEError(f"cannot create output folder '{shown}': '{ancestor}' is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise BayesSEError(f"cannot create output folder '{shown}': '{ancestor}' is not writable")
    return target


def check_out_dir(path, *, force: bool = False, inputs=()) -> pathlib.Path:
    """:func:`check_out_location`, and refuse an existing non-empty folder unless ``force``."""
    check_out_location(path, force=force, inputs=inputs)
    path = pathlib.Path(path)
    if path.is_dir() and not path.is_symlink() and any(path.iterdir()) and not force:
        raise BayesSEError(f"output folder '{path}' exists and is not empty; use --force to replace it")
    return path


# ---------------------------------------------------------------------------------------------
# one writer at a time
# ---------------------------------------------------------------------------------------------
_HELD: dict[str, list] = {}  # lock file -> [fd, depth]: re-entrant within one process


def _make_parents(folder: pathlib.Path, shown: str) -> list[pathlib.Path]:
    created = []
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            _remove_empty(created)
            raise BayesSEError(f"cannot create output folder '{shown}': {exc.strerror or exc} ('{d}')") from None
        created.append(d)
    return created


def _remove_empty(folders) -> None:
    for d in reversed(folders):
        try:
            d.rmdir()
        except OSError:
            return


def _open_lock(lock: pathlib.Path, shown: str) -> int:
    while True:
        try:
            if fcntl is None:  # pragma: no cover
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                return fd
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except FileExistsError:  # pragma: no cover (no fcntl)
            raise BayesSEError(f"output folder '{shown}' is locked by '{lock}' (delete it if no bayes-se "
                               "is running)") from None
        except OSError as exc:
            raise BayesSEError(f"cannot write output folder '{shown}': {exc.strerror or exc} "
                               f"(creating '{lock}')") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            finally:
                os.close(fd)
            raise BayesSEError(f"output folder '{shown}' is being written by another bayes-se process "
                               f"(pid {pid}); wait for it to finish or choose another folder") from None
        # the holder before us may have unlinked the file after we opened it: lock the current one
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            os.close(fd)
            continue
        mine = os.fstat(fd)
        if (mine.st_dev, mine.st_ino) != (current.st_dev, current.st_ino):
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd


@contextlib.contextmanager
def output_lock(path):
    """Hold the exclusive lock of output folder ``path`` (re-entrant within a process).

    Creates the missing parent folders (removed again, if still empty, when the lock is released),
    then replays a journal left by a writer that died (:func:`recover`).

    Raises
    ------
    BayesSEError
        Another process holds the lock, or the folder's parent cannot be created or written.
    """
    shown = os.fspath(path)
    target = target_path(path)
    lock = lock_path(target)
    key = os.fspath(lock)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield target
        finally:
            _HELD[key][1] -= 1
        return
    created = _make_parents(target.parent, shown)
    try:
        fd = _open_lock(lock, shown)
    except BaseException:
        _remove_empty(created)
        raise
    _HELD[key] = [fd, 1]
    try:
        recover(target)
        yield target
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still locked: a waiting opener sees the inode change and retries
        os.close(fd)
        _remove_empty(created)


# ---------------------------------------------------------------------------------------------
# journal and recovery
# ---------------------------------------------------------------------------------------------
def _own_name(name: str, kind: str, token_re: str = r"[0-9a-f]{12}") -> re.Pattern:
    return re.compile(rf"\.{re.escape(name)}\.{TAG}-{kind}-{token_re}")


def _remove(path: pathlib.Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _write_journal(journal: pathlib.Path, record: dict) -> None:
    data = json.dumps(record).encode("utf-8")
    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)  # one small write: complete or (killed before it) empty
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(path) -> str | None:
    """Finish or undo a swap that a dead writer left half done (call with the lock held).

    Reads the journal beside ``path``; if ``path`` is missing and the journal's backup exists, the
    backup (the old folder) is renamed back; the journal's temporary folder and any backup left
    beside a present ``path`` are deleted; then the journal. Names that the journal does not list,
    or that do not match the package's pattern, are never touched.

    Returns
    -------
    str or None
        What was done (``"restored"``, ``"cleaned"``), None when there was no journal.
    """
    target = target_path(path)
    journal = journal_path(target)
    if not journal.exists():
        return None
    try:
        record = json.loads(journal.read_text(encoding="utf-8"))
        if record.get("format") != JOURNAL_FORMAT or record.get("name") != target.name:
            raise ValueError
        new, backup = record["new"], record["backup"]
    except (ValueError, KeyError, TypeError, AttributeError):
        if journal.stat().st_size == 0:  # killed while writing it: nothing was done after it
            journal.unlink()
            return "cleaned"
        raise BayesSEError(f"'{journal}' is not a bayes_se swap journal; move it away and run again") from None
    if not (_own_name(target.name, "new").fullmatch(str(new)) and _own_name(target.name, "old").fullmatch(str(backup))):
        raise BayesSEError(f"'{journal}' names folders this package does not create; move it away and run again")
    new, backup = target.with_name(new), target.with_name(backup)
    action = "cleaned"
    if not os.path.lexists(target) and os.path.lexists(backup):
        os.rename(backup, target)  # died between the two renames: the old folder comes back
        action = "restored"
    if os.path.lexists(new):
        _remove(new)
    if os.path.lexists(backup):
        _remove(backup)  # the new folder is in place: the old one was to be deleted
    journal.unlink()
    return action


def atomic_dir(path, write, *, force: bool = False, inputs=()) -> pathlib.Path:
    """Call ``write(tmp_dir)`` to fill a temporary sibling folder, then swap it in as ``path``.

    Holds :func:`output_lock` throughout and follows the journal protocol of this module's
    docstring, so that ``path`` is always either the old folder or the complete new one.
    """
    shown = pathlib.Path(path)
    with output_lock(path) as target:
        check_out_dir(shown, force=force, inputs=inputs)
        token = secrets.token_hex(6)
        new = target.with_name(f".{target.name}.{TAG}-new-{token}")
        backup = target.with_name(f".{target.name}.{TAG}-old-{token}")
        journal = journal_path(target)
        _write_journal(journal, {"format": JOURNAL_FORMAT, "name": target.name, "new": new.name,
                                 "backup": backup.name, "pid": os.getpid(), "time": time.time()})
        try:
            new.mkdir()
            write(new)
            check_out_dir(shown, force=force)  # a folder that appeared meanwhile (made by another program)
            if os.path.lexists(target):
                os.rename(target, backup)
            os.rename(new, target)
        except BaseException:
            recover(target)  # old folder back, temporary folder and journal gone
            raise
        if os.path.lexists(backup):
            _remove(backup)
        journal.unlink()
    return shown


def check_out_file(path, *, force: bool = False, inputs=()) -> pathlib.Path:
    """Refuse to replace an existing file unless ``force``; refuse an input file at any time."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise BayesSEError(f"output path '{path}' is a folder, not a file")
    for p in inputs:
        if p is not None and os.path.realpath(path) == os.path.realpath(os.fspath(p)):
            raise BayesSEError(f"output file '{path}' is an input file; it is never overwritten (even with --force)")
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


# ---------------------------------------------------------------------------------------------
# a fit's folder
# ---------------------------------------------------------------------------------------------
def run_settings(res, spec) -> dict:
    """The sampler settings a fit actually ran with: engine, sampler, seed, draws, tune, chains and
    target_accept (None where the engine has no such setting: the exact engine draws nothing)."""
    settings = dict(res.settings)
    engine = res.engine if res.engine not in ("mediation", "mediation_paths") else "mcmc"
    if engine == "exact":
        return {"engine": "exact", "sampler": "quadrature", "seed": settings.get("seed", spec.sampler.seed),
                "draws": None, "tune": None, "chains": None, "target_accept": None,
                "note": "exact quadrature over tau: no Markov chains, so chains, draws, tune and target_accept "
                        "are not used; the seed seeds the exact iid draws stored in idata.nc"}
    return {"engine": engine, "sampler": settings.get("sampler", "pymc"),
            "seed": settings.get("seed", spec.sampler.seed),
            **{k: settings.get(k) for k in ("draws", "tune", "chains", "target_accept")}}


def _explicit_priors(spec) -> dict:
    """Every prior the model uses, written out (the preset's included), under the spec's keys."""
    if spec.model.type == "mediation_paths":  # every prior of the path model, defaults included
        from bayes_se.builders.mediation_paths import resolve_path_priors

        return {k: v for k, v in resolve_path_priors(spec.priors).items() if k != "eta"}
    if spec.model.type == "mediation":
        return dict(spec.priors)
    out = {}
    for key, prior in spec.resolved_priors().items():
        if key == "beta" and not spec.model.mods.strip():
            continue  # no moderators: no coefficient prior
        if key == "tau" and getattr(prior, "target", "tau") == "tau2":
            key = "tau2"
        out[key] = prior
    return out


def effective_spec(spec, res=None):
    """``spec`` as it ran: the sampler section set to the settings the fit used and every prior
    the model uses written in ``[priors]`` (so that the file shows them and refits the same model)."""
    settings = run_settings(res, spec) if res is not None else {}
    sampler = spec.sampler
    for key in ("seed", "draws", "tune", "chains", "target_accept"):
        value = settings.get(key)
        if value is not None:
            sampler = dataclasses.replace(sampler, **{key: float(value) if key == "target_accept" else int(value)})
    try:
        explicit = dataclasses.replace(spec, priors=_explicit_priors(spec))
    except BayesSEError:  # pragma: no cover  (keep the priors as given rather than fail to write)
        explicit = spec
    return dataclasses.replace(explicit, sampler=sampler)


def spec_record_text(spec, res=None) -> str:
    """The ``spec.toml`` of an output folder: :func:`effective_spec` with a comment header."""
    settings = run_settings(res, spec) if res is not None else {}
    header = [f"# The spec as run by bayes_se {package_versions()['bayes_se']}: priors resolved (preset included),",
              "# sampler settings as used. Refit with: bayes-se fit spec.toml --data DATA"]
    if settings.get("engine") == "exact":
        header.append("# engine = exact: quadrature, no draws; chains, draws, tune and seed are not used")
    return "\n".join(header) + "\n\n" + effective_spec(spec, res).to_toml()


def provenance_record(res, spec) -> dict:
    """What ran: model, engine and sampler settings as used, resolved priors, data checksum,
    package versions (and MCMC diagnostics)."""
    record = dict(run_settings(res, spec))
    record["model"] = spec.model.type
    record["effects"] = spec.model.effects
    record["mods"] = spec.model.mods
    record["preset"] = spec.preset
    record["priors"] = {k: v.spec_text()
                        for k, v in _explicit_priors(spec).items()}
    # the priors the model used, one per parameter, as every engine resolved them
    record["model_priors"] = {k: str(v) for k, v in res.priors.items()}
    record["level"] = res.level
    record["data_sha256"] = res.settings.get("data_sha256") or res.data_sha256()
    record["fit_data_sha256"] = res.data_sha256()  # of the numbers fitted, as idata.nc stores them
    record["versions"] = package_versions()
    record["diagnostics"] = res.diagnostics.to_dict()
    return record


def write_fit_outputs(res, spec, path, *, force: bool = False, inputs=()) -> pathlib.Path:
    """Write a Bayesian fit (any engine: exact, MCMC, mediation) and its provenance record to ``path``:
    ``summary.csv``, ``spec.toml``, ``idata.nc`` (:func:`bayes_se.load_fit` reads it back) and
    ``provenance.json``."""

    def write(tmp: pathlib.Path) -> None:
        res.summary().to_csv(tmp / "summary.csv")
        (tmp / "spec.toml").write_text(spec_record_text(spec, res), encoding="utf-8")
        record = provenance_record(res, spec)
        res.to_netcdf(tmp / "idata.nc")
        (tmp / "provenance.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")

    return atomic_dir(path, write, force=force, inputs=inputs)
