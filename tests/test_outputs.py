"""Flags checked before any work, output folders that cannot be lost, provenance, spec encodings.

Every refusal is run through ``bayes_se.cli.main`` as a user would meet it: exit status 2, one line
on stderr starting ``bayes-se: error:``, nothing on stdout, no output folder, and no data read and
no model fitted (the loader and the fit are replaced by tripwires). Output folders: one writer at
a time (a lock beside the folder), an atomic swap that a writer killed at any moment leaves as the
old or the new folder (a fault test kills a slowed-down writer with SIGKILL at random moments),
and names the package did not create are never touched. Only the exact engine and ``freq`` run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from bayes_se import cli, outputs
from bayes_se.api import fit, resolve_spec
from bayes_se.errors import BayesSEError, SpecError
from bayes_se.spec import load_spec

from conftest import REFERENCE

ROOT = pathlib.Path(__file__).resolve().parent.parent
BCG = REFERENCE / "data" / "dat.bcg.csv"
DOC = ROOT / "docs" / "bad_input.md"
GOOD = "study,yi,vi,sei,g\nA,0.10,0.020,0.14,x\nB,0.30,0.010,0.1,y\nC,0.20,0.030,0.17,x\nD,0.45,0.015,0.12,y\n"
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def tripwires(monkeypatch):
    """Reading data or fitting fails the test: a refusal must come before any work."""
    import bayes_se.api
    import bayes_se.data

    def boom(*args, **kwargs):
        raise AssertionError("work started before the flags were checked")

    monkeypatch.setattr(bayes_se.data, "load_effects", boom)
    monkeypatch.setattr(bayes_se.api, "fit", boom)


def _names(folder: pathlib.Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# -- flags refused before any work --------------------------------------------------------------------

#: (id, argv with {dir} for the case's folder, needle of the one error line). The doc's flag table
#: lists every id (test_doc_lists_every_flag_case).
FLAG_CASES = [
    ("draws-zero", ["fit", "--data", "{dir}/data.csv", "--draws", "0"], "--draws must be >= 1, got 0"),
    ("chains-zero", ["fit", "--data", "{dir}/data.csv", "--chains", "0"], "--chains must be >= 1, got 0"),
    ("draws-negative", ["report", "--data", "{dir}/data.csv", "--draws", "-5", "--out", "{dir}/rep"],
     "--draws must be >= 1, got -5"),
    ("tune-negative", ["fit", "--data", "{dir}/data.csv", "--tune", "-1"], "--tune must be >= 0, got -1"),
    ("chains-negative", ["fit", "--data", "{dir}/data.csv", "--chains", "-2"], "--chains must be >= 1, got -2"),
    ("seed-negative", ["fit", "--data", "{dir}/data.csv", "--seed", "-1"], "--seed must be >= 0"),
    ("level-out-of-range", ["freq", "{dir}/data.csv", "--level", "95"], "--level"),
    ("variance-and-se-freq", ["freq", "{dir}/data.csv", "--variance", "vi", "--se", "sei"],
     "--variance vi and --se sei conflict"),
    ("variance-and-se-fit", ["fit", "--data", "{dir}/data.csv", "--variance", "vi", "--se", "sei"],
     "--variance vi and --se sei conflict"),
    ("cluster-two-level-spec", ["fit", "--data", "{dir}/data.csv", "--cluster", "g"], "models/three_level.toml"),
    ("cluster-freq-method", ["freq", "{dir}/data.csv", "--cluster", "g", "--method", "DL"], "REML or ML"),
    ("robust-without-cluster", ["freq", "{dir}/data.csv", "--robust"], "--robust needs --cluster"),
    ("adjust-without-robust", ["freq", "{dir}/data.csv", "--cluster", "g", "--adjust", "CR1"], "add --robust"),
    ("mods-is-effect", ["fit", "--data", "{dir}/data.csv", "--mods", "yi"], "'yi' is the effect size column"),
    ("mods-is-variance", ["freq", "{dir}/data.csv", "--mods", "g + vi"], "'vi' is the sampling variance column"),
    ("mods-is-se", ["fit", "--data", "{dir}/data.csv", "--se", "sei", "--mods", "g:sei"],
     "'sei' is the standard error column"),
    ("mods-is-renamed-effect", ["freq", "{dir}/data.csv", "--effect", "g", "--mods", "g"],
     "'g' is the effect size column"),
    ("out-below-file", ["fit", "--data", "{dir}/data.csv", "--out", "{dir}/data.csv/results"],
     "is a file, not a folder"),
    ("out-is-current-folder", ["fit", "--data", "{dir}/data.csv", "--out", "."], "the current folder"),
    ("out-is-current-folder-force", ["fit", "--data", "{dir}/data.csv", "--out", ".", "--force"],
     "the current folder"),
    ("out-contains-current-folder", ["fit", "--data", "{dir}/data.csv", "--out", "{dir}/..", "--force"],
     "the current folder"),
    ("out-contains-data", ["fit", "--data", "{dir}/in/data.csv", "--out", "{dir}/in", "--force"],
     "the input file"),
    ("out-contains-spec", ["report", "{dir}/specs/spec.toml", "--data", "{dir}/data.csv", "--out", "{dir}/specs",
                           "--force"], "the input file"),
    ("csv-is-data", ["sensitivity", "--data", "{dir}/data.csv", "--csv", "{dir}/data.csv", "--force"],
     "is an input file"),
    ("out-symlink", ["fit", "--data", "{dir}/data.csv", "--out", "{dir}/link"], "symbolic link"),
]


def _materialise(folder: pathlib.Path, argv) -> list[str]:
    (folder / "data.csv").write_text(GOOD)
    (folder / "in").mkdir()
    (folder / "in" / "data.csv").write_text(GOOD)
    (folder / "specs").mkdir()
    (folder / "specs" / "spec.toml").write_text("[sampler]\nengine = \"exact\"\n")
    (folder / "real").mkdir()
    (folder / "real" / "mine.txt").write_text("keep")
    (folder / "link").symlink_to(folder / "real")
    return [a.replace("{dir}", str(folder)) for a in argv]


@pytest.mark.parametrize("argv, needle", [c[1:] for c in FLAG_CASES], ids=[c[0] for c in FLAG_CASES])
def test_bad_flag_one_line_exit_2_before_any_work(argv, needle, tmp_path, monkeypatch, capsys, tripwires):
    work = tmp_path / "work"
    work.mkdir()
    argv = _materialise(work, argv)
    monkeypatch.chdir(work)
    before = {p: p.stat().st_mtime_ns for p in work.rglob("*")}
    code, out, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert out == ""
    assert len(lines) == 1 and lines[0].startswith("bayes-se: error:"), err
    assert needle in lines[0]
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*")} == before  # nothing created or changed
    assert (work / "link").is_symlink() and (work / "real" / "mine.txt").read_text() == "keep"


def test_doc_lists_every_flag_case():
    text = DOC.read_text(encoding="utf-8")
    for cid, *_ in FLAG_CASES:
        assert f"| `{cid}` |" in text, f"docs/bad_input.md lacks flag case {cid}"


def test_out_in_read_only_folder_refused_before_the_fit(tmp_path, capsys, tripwires):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        if _can_mkdir(parent / "probe"):  # root ignores permissions: a folder nobody may write into
            parent = pathlib.Path("/sys")
            if not parent.is_dir() or _can_mkdir(parent / "bayes_se_probe"):
                pytest.skip("no read-only folder available to this user")
        code, out, err = run_cli(capsys, "fit", "--data", BCG, "--engine", "exact", "--out", parent / "res")
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and "cannot" in err and "res" in err
        assert not (parent / "res").exists()
    finally:
        (tmp_path / "ro").chmod(0o755)


def _can_mkdir(path: pathlib.Path) -> bool:
    try:
        path.mkdir()
    except OSError:
        return False
    path.rmdir()
    return True


def test_missing_parent_folders_made_and_removed_again_on_failure(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("study,yi,vi\nA,0.1,-1\nB,0.2,0.1\n")
    code, _, err = run_cli(capsys, "fit", "--data", bad, "--engine", "exact", "--out", tmp_path / "a" / "b" / "out")
    assert code == 2 and "row 1" in err
    assert _names(tmp_path) == {"bad.csv"}  # no parents, lock or journal left
    code, _, err = run_cli(capsys, "fit", "--data", BCG, "--engine", "exact", "--out", tmp_path / "a" / "b" / "out")
    assert code == 0, err
    assert _names(tmp_path / "a" / "b") == {"out"}


# -- counts in the Python API ---------------------------------------------------------------------------

def test_api_counts_zero_refused_none_means_spec(monkeypatch):
    """``draws or spec.draws`` read draws=0 and tune=0 as "unset"; now 0 tune runs, 0 draws is refused."""
    from bayes_se import api

    seen = {}

    class Fake:
        settings: dict = {}
        spec = None

    def fake_fit(*args, **kwargs):
        seen.update(kwargs)
        return Fake()

    monkeypatch.setattr(api, "fit_random_effects", fake_fit)
    spec = resolve_spec(None)
    for kwargs, key in (({"draws": 0}, "sampler.draws"), ({"chains": 0}, "sampler.chains"),
                        ({"tune": -1}, "sampler.tune"), ({"draws": 2.5}, "sampler.draws")):
        with pytest.raises(SpecError) as info:
            fit(BCG, spec, **kwargs)
        assert info.value.key == key
    assert not seen  # refused before the model was built
    fit(BCG, spec, tune=0, draws=7)
    assert (seen["tune"], seen["draws"], seen["chains"]) == (0, 7, spec.sampler.chains)


# -- provenance: what actually ran ---------------------------------------------------------------------

def test_exact_fit_provenance_and_spec_record_resolved_priors(tmp_path, capsys):
    out_dir = tmp_path / "fit"
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('[priors]\npreset = "rhodes2015_general"\n')  # the preset gives every prior
    code, _, err = run_cli(capsys, "fit", spec_file, "--data", BCG, "--engine", "exact", "--seed", "11",
                           "--out", out_dir)
    assert code == 0, err
    record = json.loads((out_dir / "provenance.json").read_text())
    assert record["engine"] == "exact" and record["sampler"] == "quadrature"
    assert record["draws"] is None and record["tune"] is None and record["chains"] is None
    assert record["target_accept"] is None and record["seed"] == 11
    assert record["preset"] == "rhodes2015_general"
    assert record["priors"] == {"mu": "normal(0, 1)", "tau2": "log_t(5, -3.44, 2.59)"}  # the preset's, resolved
    written = load_spec((out_dir / "spec.toml").read_text())
    wanted = resolve_spec(spec_file, engine="exact", seed=11)
    assert written.resolved_priors() == wanted.resolved_priors()
    assert dict(written.priors).keys() == {"mu", "tau2"}  # written out, not only the preset's name
    assert written.sampler.seed == 11 and written.sampler.engine == "exact"


@dataclasses.dataclass
class FakeMCMCFit:
    """What write_fit_outputs reads of an MCMC fit (the Fit interface), with the settings the
    sampler reported."""

    settings: dict
    engine = "mcmc"
    level = 0.95

    def __post_init__(self):
        from bayes_se.diagnostics import Verdict
        from bayes_se.priors import parse_assignment

        self.priors = dict(parse_assignment(t) for t in ("beta[intercept]=normal(0, 1)",
                                                         "beta[ablat]=normal(0, 1)", "tau=half_cauchy(0.3)"))
        self.diagnostics = Verdict(True, 1.0, 1000.0, 1000.0, 0, 1.0)

    def summary(self):
        import pandas as pd

        return pd.DataFrame({"mean": [0.1]}, index=["mu"])

    def data_sha256(self):
        return "cd"

    def to_netcdf(self, path):
        pathlib.Path(path).write_text("")


def test_mcmc_provenance_records_settings_as_run_not_the_spec(tmp_path):
    spec = resolve_spec(None, mods="ablat", priors=["tau=half_cauchy(0.3)"])
    ran = {"seed": 5, "draws": 7, "tune": 0, "chains": 1, "target_accept": 0.9, "sampler": "nutpie",
           "priors": {"location": "beta ~ Normal(0, 1)", "tau": "tau ~ HalfCauchy(0.3)"}, "data_sha256": "ab"}
    outputs.write_fit_outputs(FakeMCMCFit(ran), spec, tmp_path / "out")
    record = json.loads((tmp_path / "out" / "provenance.json").read_text())
    for key in ("seed", "draws", "tune", "chains", "target_accept", "sampler"):
        assert record[key] == ran[key], key
    assert record["engine"] == "mcmc"
    assert record["model_priors"] == {"beta[intercept]": "beta[intercept] ~ Normal(0, 1)",
                                      "beta[ablat]": "beta[ablat] ~ Normal(0, 1)", "tau": "tau ~ HalfCauchy(0.3)"}
    assert record["data_sha256"] == "ab" and record["fit_data_sha256"] == "cd"
    assert record["priors"] == {"mu": "normal(0, 1)", "beta": "normal(0, 1)", "tau": "half_cauchy(0.3)"}
    written = load_spec((tmp_path / "out" / "spec.toml").read_text())
    s = written.sampler
    assert (s.seed, s.draws, s.tune, s.chains, s.target_accept) == (5, 7, 0, 1, 0.9)
    assert written.resolved_priors() == spec.resolved_priors() and written.model == spec.model


# -- spec file encodings ---------------------------------------------------------------------------------

SPEC_TEXT = '# spec\n[model]\ntype = "random_effects"\n[priors]\nmu = "normal(0, 1)"  # Müller\n[sampler]\nengine = "exact"\n'


def test_spec_with_utf8_bom_loads(tmp_path, capsys):
    path = tmp_path / "spec.toml"
    path.write_bytes(b"\xef\xbb\xbf" + SPEC_TEXT.encode("utf-8"))
    assert load_spec(path).sampler.engine == "exact"
    assert load_spec("\ufeff" + SPEC_TEXT).sampler.engine == "exact"
    code, _, err = run_cli(capsys, "fit", path, "--data", BCG, "--json")
    assert code == 0, err


@pytest.mark.parametrize("encoding, needle", [("latin-1", "not UTF-8 text (byte 0xFC at line 5, column 25"),
                                              ("utf-16", "UTF-16")])
def test_spec_not_utf8_one_line_naming_file(encoding, needle, tmp_path, capsys, tripwires):
    path = tmp_path / "spec.toml"
    path.write_bytes(SPEC_TEXT.encode(encoding))
    with pytest.raises(SpecError, match="spec.toml"):
        load_spec(path)
    code, out, err = run_cli(capsys, "fit", path, "--data", BCG)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert str(path) in err and needle in err and "save it as UTF-8" in err


# -- one writer at a time --------------------------------------------------------------------------------

HOLD = """
import sys, time
from bayes_se.outputs import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def _hold_lock(path):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, env=ENV, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


@pytest.mark.parametrize("command", ["fit", "report"])
def test_second_writer_refused_before_the_fit(command, tmp_path, capsys, tripwires):
    out_dir = tmp_path / "out"
    child = _hold_lock(out_dir)
    try:
        code, out, err = run_cli(capsys, command, "--data", BCG, "--engine", "exact", "--out", out_dir)
        assert code == 2 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "being written by another bayes-se process" in lines[0]
        assert f"pid {child.pid}" in lines[0]
        assert not out_dir.exists()
    finally:
        child.kill()
        child.wait()


def test_lock_left_by_a_killed_writer_does_not_block(tmp_path, capsys):
    out_dir = tmp_path / "out"
    child = _hold_lock(out_dir)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert outputs.lock_path(out_dir).exists()  # the file stays; its flock died with the process
    code, _, err = run_cli(capsys, "fit", "--data", BCG, "--engine", "exact", "--out", out_dir)
    assert code == 0, err
    assert _names(tmp_path) == {"out"}


def test_two_writers_started_at_once_one_succeeds(tmp_path):
    out_dir = tmp_path / "out"
    argv = [sys.executable, "-m", "bayes_se.cli", "fit", "--data", str(BCG), "--engine", "exact", "--out",
            str(out_dir)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    assert len(loser[2].strip().splitlines()) == 1
    assert "being written by another" in loser[2] or "exists and is not empty" in loser[2]
    assert _names(out_dir) == {"idata.nc", "provenance.json", "spec.toml", "summary.csv"}
    assert _names(tmp_path) == {"out"}


# -- the swap --------------------------------------------------------------------------------------------

#: Names beside an output folder "out" that a user made; some look like the package's own.
USER_NAMES = {".out-previous": "mine", ".out.bayes_se-new-mine": "mine", ".out.bayes_se-old-0123456789ab": "mine",
              "notes.txt": "mine"}


def _user_files(parent: pathlib.Path) -> None:
    for name, text in USER_NAMES.items():
        if name.endswith(".txt"):
            (parent / name).write_text(text)
        else:
            (parent / name).mkdir()
            (parent / name / "keep").write_text(text)


def _assert_user_files(parent: pathlib.Path) -> None:
    for name, text in USER_NAMES.items():
        path = parent / name if name.endswith(".txt") else parent / name / "keep"
        assert path.read_text() == text, name


def _folder(path: pathlib.Path, n: int, text: str) -> None:
    path.mkdir()
    for i in range(n):
        (path / f"f{i}.txt").write_text(text)


def _content(path: pathlib.Path) -> dict:
    return {p.name: p.read_text() for p in path.iterdir()}


OLD = {f"f{i}.txt": "old" for i in range(10)}
NEW = {f"f{i}.txt": "new" for i in range(12)}


def test_force_replaces_the_folder_and_nothing_else(tmp_path):
    _user_files(tmp_path)
    _folder(tmp_path / "out", 10, "old")
    with pytest.raises(BayesSEError, match="--force"):
        outputs.atomic_dir(tmp_path / "out", lambda d: _folder_files(d, 12, "new"))
    outputs.atomic_dir(tmp_path / "out", lambda d: _folder_files(d, 12, "new"), force=True)
    assert _content(tmp_path / "out") == NEW
    _assert_user_files(tmp_path)
    assert _names(tmp_path) == set(USER_NAMES) | {"out"}


def _folder_files(path: pathlib.Path, n: int, text: str) -> None:
    for i in range(n):
        (path / f"f{i}.txt").write_text(text)


def test_failed_write_keeps_the_old_folder(tmp_path):
    _user_files(tmp_path)
    _folder(tmp_path / "out", 10, "old")

    def half(d):
        _folder_files(d, 3, "new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        outputs.atomic_dir(tmp_path / "out", half, force=True)
    assert _content(tmp_path / "out") == OLD
    _assert_user_files(tmp_path)
    assert _names(tmp_path) == set(USER_NAMES) | {"out"}


def test_folder_made_by_someone_else_during_the_write_is_kept(tmp_path):
    _user_files(tmp_path)

    def write(d):
        _folder_files(d, 12, "new")
        _folder(tmp_path / "out", 2, "theirs")  # another program makes the folder meanwhile

    with pytest.raises(BayesSEError, match="not empty"):
        outputs.atomic_dir(tmp_path / "out", write)
    assert _content(tmp_path / "out") == {"f0.txt": "theirs", "f1.txt": "theirs"}
    _assert_user_files(tmp_path)
    assert _names(tmp_path) == set(USER_NAMES) | {"out"}


@pytest.mark.parametrize("state, want", [
    ("between-renames", OLD),       # out -> backup done, new -> out not yet: the old folder comes back
    ("after-renames", NEW),         # both renames done, backup not yet deleted
    ("while-writing", OLD),         # the new folder half written
])
def test_recovery_of_each_crash_state(state, want, tmp_path):
    _user_files(tmp_path)
    token = "a1b2c3d4e5f6"
    new, backup = tmp_path / f".out.bayes_se-new-{token}", tmp_path / f".out.bayes_se-old-{token}"
    if state == "between-renames":
        _folder(backup, 10, "old")
        _folder(new, 12, "new")
    elif state == "after-renames":
        _folder(backup, 10, "old")
        _folder(tmp_path / "out", 12, "new")
    else:
        _folder(tmp_path / "out", 10, "old")
        _folder(new, 4, "new")
    outputs.journal_path(tmp_path / "out").write_text(json.dumps(
        {"format": outputs.JOURNAL_FORMAT, "name": "out", "new": new.name, "backup": backup.name}))
    with outputs.output_lock(tmp_path / "out"):  # recovery runs when the lock is taken
        pass
    assert _content(tmp_path / "out") == want
    _assert_user_files(tmp_path)
    assert _names(tmp_path) == set(USER_NAMES) | {"out"}


@pytest.mark.parametrize("victim", [".out-previous", ".out.bayes_se-old-0123456789ab", "../elsewhere"])
def test_journal_naming_other_folders_is_refused(victim, tmp_path):
    _user_files(tmp_path)
    outputs.journal_path(tmp_path / "out").write_text(json.dumps(
        {"format": outputs.JOURNAL_FORMAT, "name": "out", "new": victim, "backup": ".out.bayes_se-old-x"}))
    with pytest.raises(BayesSEError, match="does not create"):
        outputs.recover(tmp_path / "out")
    _assert_user_files(tmp_path)


def test_symlink_with_force_replaces_the_link_not_its_target(tmp_path, capsys):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "mine.txt").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    code, _, err = run_cli(capsys, "fit", "--data", BCG, "--engine", "exact", "--out", tmp_path / "link", "--force")
    assert code == 0, err
    assert not (tmp_path / "link").is_symlink()
    assert _names(tmp_path / "link") == {"idata.nc", "provenance.json", "spec.toml", "summary.csv"}
    assert _content(tmp_path / "real") == {"mine.txt": "keep"}
    assert _names(tmp_path) == {"link", "real"}


WRITER = textwrap.dedent("""
    import os, pathlib, shutil, sys, time
    from bayes_se import outputs

    real_rename, real_rmtree = os.rename, shutil.rmtree

    def event(name):  # the parent counts these lines to choose where to kill
        print(name, flush=True)

    def slow_rename(a, b):  # widen the moments around each step of the swap
        event("rename"); time.sleep(0.02); real_rename(a, b); event("renamed"); time.sleep(0.02)

    def slow_rmtree(path, *args, **kwargs):
        event("rmtree"); time.sleep(0.02); real_rmtree(path, *args, **kwargs)

    os.rename, shutil.rmtree = slow_rename, slow_rmtree

    def write(folder):
        for i in range(12):
            (folder / f"f{i}.txt").write_text("new")
            event(f"wrote {i}")
            time.sleep(0.004)

    event("ready")
    outputs.atomic_dir(pathlib.Path(sys.argv[1]), write, force=True)
    event("done")
""")
#: The writer's events with an old folder: ready, 12 writes, rename/renamed twice, rmtree, done.
WRITER_EVENTS = 19
FAULT_SEEDS = 10
OLD_SEEDS = 8  # seeds 0-7 replace an old folder (kills spread over all events), 8-9 make a new one


def test_writer_killed_at_random_moments_leaves_old_or_new(tmp_path):
    """SIGKILL a slowed writer at random moments (10 seeds): after the k-th event it reports
    (k stratified over the whole run) plus a random 0-30 ms. After the next lock (which replays
    the journal) the folder is the old one or the complete new one, and every name the package
    did not create is still there."""
    seen = set()
    for seed in range(FAULT_SEEDS):
        rng = random.Random(seed)
        parent = tmp_path / f"s{seed}"
        parent.mkdir()
        _user_files(parent)
        had_old = seed < OLD_SEEDS
        if had_old:
            _folder(parent / "out", 10, "old")
            k = int((seed + rng.random()) / OLD_SEEDS * WRITER_EVENTS)
        else:
            k = rng.randrange(WRITER_EVENTS - 2)
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(parent / "out")], stdout=subprocess.PIPE,
                                 env=ENV, text=True)
        for _ in range(k + 1):
            if not child.stdout.readline():
                break
        time.sleep(rng.uniform(0.0, 0.03))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        with outputs.output_lock(parent / "out"):
            pass
        if (parent / "out").exists():
            content = _content(parent / "out")
            assert content in (OLD, NEW) if had_old else content == NEW, (seed, sorted(content.items()))
            seen.add("new" if content == NEW else "old")
        else:
            assert not had_old, seed
            seen.add("old")
        _assert_user_files(parent)
        assert _names(parent) == set(USER_NAMES) | ({"out"} if (parent / "out").exists() else set()), seed
    assert seen == {"old", "new"}  # the kills did land on both sides of the swap


# -- documentation ---------------------------------------------------------------------------------------

def flag_table() -> str:
    """The flag table of docs/bad_input.md (``python tests/test_outputs.py``): each case's message,
    its temporary folder shown as ``.``."""
    import contextlib
    import io
    import tempfile

    rows = ["| case | flags | message users see |", "|---|---|---|"]
    for cid, argv, _ in FLAG_CASES:
        with tempfile.TemporaryDirectory() as tmp:
            work = pathlib.Path(tmp)
            here = os.getcwd()
            os.chdir(work)
            try:
                err = io.StringIO()
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    cli.main(_materialise(work, argv))
            finally:
                os.chdir(here)
            line = err.getvalue().strip().replace(str(work) + os.sep, "").replace(str(work), ".")
        shown = " ".join(argv).replace("{dir}/", "").replace("{dir}", ".")
        rows.append(f"| `{cid}` | `{shown}` | {line.replace('|', chr(92) + '|')} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(flag_table())
