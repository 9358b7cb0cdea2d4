"""Packaged specs and datasets: one copy (models/, data/) mapped into the package, read from any folder.

``pyproject.toml`` maps the root folders ``models/`` and ``data/`` into the package
(``bayes_se.model_specs``, ``bayes_se.bundled_data``). The tests check the build configuration, build
the package with setuptools' ``build_py`` (the step that copies files into a wheel) and read the
result from a foreign folder, and check ``bayes-se models``, ``bayes-se init``, ``bse.datasets``,
packaged spec names and the demo's inputs from a temporary current folder.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import tomllib

import pandas as pd
import pytest

import bayes_se as bse
from bayes_se import cli, datasets, resources
from bayes_se.api import resolve_spec
from bayes_se.demo import DEMO_DATA_FILES, DEMO_SPECS, demo_inputs
from bayes_se.errors import BayesSEError
from bayes_se.spec import load_spec

from conftest import REFERENCE

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
DATA = ROOT / "data"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SPEC_NAMES = ("guidance_moderator", "location_scale", "mediation", "mediation_paths", "random_effects", "three_level")
#: files of data/ that ship: every dataset, the READMEs and the licence/attribution records
SHIPPED_DATA = {
    "README.md", "metapsy_depression_selfguided.csv",
    "metapsy-depression-selfguided/raw/LICENSE.txt", "metapsy-depression-selfguided/raw/source_commit.txt",
    "self_efficacy_sim/README.md", "self_efficacy_sim/between.csv", "self_efficacy_sim/within.csv",
    "self_efficacy_sim/mediation_correlations.csv", "self_efficacy_sim/findings.csv",
    "self_efficacy_sim/generating_values.json", "self_efficacy_sim/risk_of_bias.csv",
    "self_efficacy_sim/mediation_paths.csv", "self_efficacy_sim/mediation_paths_generating_values.json",
}
#: a build step in a fresh interpreter (setuptools import + copying ~40 files); generous for a busy machine
BUILD_TIMEOUT_S = 120


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty current folder outside the repository."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


# -- build configuration ---------------------------------------------------------------------------

def test_pyproject_lists_every_subpackage_and_maps_models_and_data():
    setuptools_cfg = PYPROJECT["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "bayes_se").rglob("__init__.py")}
    mapped = {"bayes_se.model_specs", "bayes_se.bundled_data", "bayes_se.bundled_data.self_efficacy_sim"}
    assert set(setuptools_cfg["packages"]) == found | mapped
    assert setuptools_cfg["package-dir"] == {"bayes_se.model_specs": "models", "bayes_se.bundled_data": "data"}
    assert resources.SPECS_PACKAGE == "bayes_se.model_specs" and resources.SPECS_FOLDER == "models"
    assert resources.DATA_PACKAGE == "bayes_se.bundled_data" and resources.DATA_FOLDER == "data"


def _package_folder(package: str, package_dir: dict) -> pathlib.Path:
    """The repository folder a package is built from (the longest mapped prefix, then its children)."""
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in package_dir:
            return pathlib.Path(package_dir[prefix], *parts[n:])
    return pathlib.Path(*parts)


def _shipped_by_config() -> set[str]:
    """Files the package-data globs select (paths relative to the repository root)."""
    cfg = PYPROJECT["tool"]["setuptools"]
    out = set()
    for package, globs in cfg["package-data"].items():
        base = ROOT / _package_folder(package, cfg["package-dir"])
        for glob in globs:  # setuptools globs are relative to the package folder
            out |= {p.relative_to(ROOT).as_posix() for p in base.glob(glob) if p.is_file()}
    return out


def test_package_data_globs_select_the_specs_datasets_and_licences():
    expected = {f"models/{n}.toml" for n in SPEC_NAMES} | {f"data/{f}" for f in SHIPPED_DATA}
    assert _shipped_by_config() == expected
    assert {p.name for p in MODELS.glob("*.toml")} == {f"{n}.toml" for n in SPEC_NAMES}


def test_built_package_holds_identical_files_and_works_from_another_folder(tmp_path):
    """setuptools' build_py (what a wheel is made of) copies models/ and data/ into the package; the
    built package, alone on the path, lists the specs, loads a dataset and finds the demo's inputs."""
    pytest.importorskip("setuptools")
    src, lib, cwd = tmp_path / "src", tmp_path / "lib", tmp_path / "cwd"
    src.mkdir(), cwd.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("bayes_se", "models", "data"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    build = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
                            "--build-lib", str(lib)], cwd=src, capture_output=True, text=True,
                           timeout=BUILD_TIMEOUT_S)
    assert build.returncode == 0, build.stderr
    built = {p.relative_to(lib / "bayes_se").as_posix() for p in (lib / "bayes_se").rglob("*")
             if p.is_file() and p.suffix not in (".py", ".pyc")}
    assert built == ({f"model_specs/{n}.toml" for n in SPEC_NAMES} | {f"bundled_data/{f}" for f in SHIPPED_DATA})
    for rel in built:
        top, _, rest = rel.partition("/")
        origin = (MODELS if top == "model_specs" else DATA) / rest
        assert (lib / "bayes_se" / rel).read_bytes() == origin.read_bytes(), rel

    script = """
import json, bayes_se as bse
from bayes_se import cli, resources
from bayes_se.demo import demo_inputs
assert cli.main(["models"]) == 0
inputs = demo_inputs()
print(json.dumps({"file": bse.__file__, "specs": resources.spec_names(),
                  "metapsy": len(bse.datasets.load("metapsy_depression_selfguided")),
                  "demo": {k: str(v) for k, v in inputs.items()},
                  "default_type": bse.api.resolve_spec(None).model.type}))
"""
    run = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True,
                         timeout=BUILD_TIMEOUT_S, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(lib)})
    assert run.returncode == 0, run.stderr
    *listing, last = run.stdout.splitlines()
    got = json.loads(last)
    assert [line.split()[0] for line in listing] == list(SPEC_NAMES)  # bayes-se models
    assert pathlib.Path(got["file"]).is_relative_to(lib)
    assert tuple(got["specs"]) == SPEC_NAMES
    assert got["metapsy"] == 118
    assert got["default_type"] == "random_effects"
    assert all(pathlib.Path(v).is_relative_to(lib / "bayes_se") for v in got["demo"].values())


# -- packaged specs --------------------------------------------------------------------------------

def test_spec_names_and_one_line_descriptions(elsewhere):
    assert resources.spec_names() == SPEC_NAMES
    for name in SPEC_NAMES:
        first = (MODELS / f"{name}.toml").read_text(encoding="utf-8").splitlines()[0]
        desc = resources.spec_description(name)
        assert first == f"# {desc}" and 20 <= len(desc) <= 100 and desc.endswith((".", "?")), name
        assert resources.spec_text(name) == (MODELS / f"{name}.toml").read_text(encoding="utf-8")


def test_unknown_spec_name_lists_the_available_ones():
    with pytest.raises(BayesSEError, match="no packaged model spec 'nope'; available: "
                                           "guidance_moderator, location_scale, mediation, mediation_paths, random_effects, three_level"):
        resources.spec_file("nope")


def test_packaged_spec_name_resolves_from_any_folder(elsewhere):
    for name in SPEC_NAMES:
        expected = load_spec(MODELS / f"{name}.toml")
        assert resolve_spec(name) == expected
        assert resolve_spec(f"{name}.toml") == expected
        assert bse.api.resolve_spec(pathlib.Path(name)) == expected


def test_existing_file_wins_over_packaged_name(elsewhere):
    (elsewhere / "three_level.toml").write_text('[model]\ntype = "random_effects"\n', encoding="utf-8")
    assert resolve_spec("three_level.toml").model.type == "random_effects"
    assert resolve_spec("three_level").model.type == "three_level"  # the bare name is the packaged one
    assert resources.spec_source("sub/three_level.toml") == "sub/three_level.toml"  # a path stays a path
    text = '[model]\ntype = "three_level"\n[data]\ncluster = "c"\n'
    assert resources.spec_source(text) == text


def test_default_spec_is_the_packaged_random_effects_file(elsewhere):
    assert resolve_spec(None) == load_spec(MODELS / "random_effects.toml")
    assert not hasattr(bse.api, "DEFAULT_SPEC_TEXT")  # one home: models/random_effects.toml
    assert resources.spec_file(bse.api.DEFAULT_SPEC).read_bytes() == (MODELS / "random_effects.toml").read_bytes()


# -- CLI: models, init, spec names -------------------------------------------------------------------

def test_cli_models_lists_names_and_descriptions(capsys, elsewhere):
    code, out, err = run_cli(capsys, "models")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == list(SPEC_NAMES)
    for line, name in zip(lines, SPEC_NAMES):
        assert line.split(None, 1)[1] == resources.spec_description(name)


def test_cli_init_writes_a_copy_and_refuses_to_overwrite(capsys, elsewhere):
    code, out, err = run_cli(capsys, "init", "random_effects")
    assert code == 0, err
    written = elsewhere / "random_effects.toml"
    assert written.read_bytes() == (MODELS / "random_effects.toml").read_bytes()
    assert "wrote random_effects.toml" in out

    written.write_text("# my edits\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "init", "random_effects")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "exists; use --force" in err
    assert written.read_text(encoding="utf-8") == "# my edits\n"  # untouched

    code, out, err = run_cli(capsys, "init", "random_effects", "--force")
    assert code == 0, err
    assert written.read_bytes() == (MODELS / "random_effects.toml").read_bytes()


def test_cli_init_out_file_and_folder(capsys, elsewhere):
    code, _, err = run_cli(capsys, "init", "three_level", "--out", "specs/mine.toml")
    assert code == 0, err
    assert (elsewhere / "specs" / "mine.toml").read_bytes() == (MODELS / "three_level.toml").read_bytes()
    code, _, err = run_cli(capsys, "init", "mediation.toml", "--out", "specs")
    assert code == 0, err
    assert (elsewhere / "specs" / "mediation.toml").read_bytes() == (MODELS / "mediation.toml").read_bytes()
    assert load_spec(elsewhere / "specs" / "mediation.toml") == load_spec(MODELS / "mediation.toml")


def test_cli_init_unknown_name(capsys, elsewhere):
    code, out, err = run_cli(capsys, "init", "nope")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "no packaged model spec 'nope'; available: guidance_moderator, location_scale, mediation, mediation_paths, " \
           "random_effects, three_level" in err
    assert list(elsewhere.iterdir()) == []


@pytest.fixture
def guided_csv(elsewhere):
    frame = datasets.load("self_efficacy_between")
    frame["guided"] = (frame["guided"] == "guided").astype(int)
    path = elsewhere / "between_guided.csv"
    frame.to_csv(path, index=False)
    return path


def test_cli_fit_packaged_spec_by_name(capsys, guided_csv):
    """``bayes-se fit guidance_moderator`` from a foreign folder fits the packaged spec (exact engine)."""
    code, out, err = run_cli(capsys, "fit", "guidance_moderator", "--data", guided_csv.name, "--engine", "exact",
                             "--json")
    assert code == 0, err
    by_name = json.loads(out)
    code, out, err = run_cli(capsys, "fit", MODELS / "guidance_moderator.toml", "--data", guided_csv.name,
                             "--engine", "exact", "--json")
    assert code == 0, err
    assert json.loads(out)["parameters"] == by_name["parameters"]
    assert "beta[guided]" in by_name["parameters"]


def test_cli_three_level_by_name_reaches_the_model(capsys, elsewhere):
    """``bayes-se fit three_level`` loads the packaged three-level spec: the exact engine solves it
    by quadrature (no sampling in this test)."""
    code, out, err = run_cli(capsys, "fit", "three_level", "--data", REFERENCE / "data" / "dat.konstantopoulos2011.csv",
                             "--engine", "exact")
    assert code == 0, err
    assert "three-level model, exact engine" in out and "sigma_cluster" in out


def test_cli_unknown_bare_spec_name(capsys, elsewhere):
    code, out, err = run_cli(capsys, "fit", "three_levels", "--data", "x.csv")
    assert code == 2 and err.count("\n") == 1
    assert "spec file 'three_levels' not found, and no packaged spec has that name (available: " in err


# -- datasets ----------------------------------------------------------------------------------------

def test_dataset_names_and_loads(elsewhere):
    assert bse.datasets.names() == ("metapsy_depression_selfguided", "self_efficacy_between",
                                    "self_efficacy_findings", "self_efficacy_generating_values",
                                    "self_efficacy_mediation", "self_efficacy_risk_of_bias",
                                    "self_efficacy_within")
    shapes = {"metapsy_depression_selfguided": (118, 15), "self_efficacy_between": (88, 16),
              "self_efficacy_within": (44, 14), "self_efficacy_mediation": (40, 5),
              "self_efficacy_findings": (32, 8), "self_efficacy_risk_of_bias": (420, 3)}
    for name, shape in shapes.items():
        frame = bse.datasets.load(name)
        assert isinstance(frame, pd.DataFrame) and frame.shape == shape, name
        pd.testing.assert_frame_equal(frame, pd.read_csv(bse.datasets.path(name)))
        assert bse.datasets.describe(name)
    truth = bse.datasets.load("self_efficacy_generating_values")
    assert isinstance(truth, dict)
    assert truth == json.loads((DATA / "self_efficacy_sim" / "generating_values.json").read_text())
    for name in bse.datasets.names():
        assert bse.datasets.path(name).read_bytes() == (DATA / bse.datasets.path(name).relative_to(
            resources.data_root())).read_bytes()


def test_dataset_counts_match_the_readme():
    """The described counts are the files' (trials = distinct study_id)."""
    between, within = bse.datasets.load("self_efficacy_between"), bse.datasets.load("self_efficacy_within")
    med = bse.datasets.load("self_efficacy_mediation")
    metapsy = bse.datasets.load("metapsy_depression_selfguided")
    assert (len(between), between.study_id.nunique()) == (88, 70)
    assert (len(within), within.study_id.nunique()) == (44, 40)
    assert (len(med), med.study.nunique()) == (40, 15)
    assert (len(metapsy), metapsy.study_id.nunique()) == (118, 92)


def test_dataset_feeds_load_effects(elsewhere):
    dat = bse.load_effects(bse.datasets.load("metapsy_depression_selfguided"), study="study", cluster="study_id")
    assert dat.k == 118 and dat.n_clusters == 92


def test_unknown_dataset_lists_names():
    with pytest.raises(BayesSEError, match="no bundled dataset 'nope'; available: metapsy_depression_selfguided"):
        bse.datasets.load("nope")


def test_licence_and_readmes_ship_beside_the_data():
    root = resources.data_root()
    assert "ODC-By" in (root / "README.md").read_text(encoding="utf-8")
    assert (root / "metapsy-depression-selfguided" / "raw" / "LICENSE.txt").is_file()
    assert "SIMULATED" in (bse.datasets.path("self_efficacy_between").parent / "README.md").read_text(
        encoding="utf-8")


# -- the demo from any folder -------------------------------------------------------------------------

def test_demo_inputs_resolve_from_a_foreign_folder(elsewhere):
    """Every file the demo reads resolves without the repository as current folder (no fits run)."""
    inputs = demo_inputs()
    for name in DEMO_DATA_FILES:
        assert inputs[name].is_file()
        assert inputs[name].read_bytes() == (DATA / "self_efficacy_sim" / name).read_bytes()
    assert inputs["README.md"].is_file()
    for name in DEMO_SPECS:
        assert load_spec(inputs[name]) == load_spec(MODELS / f"{name}.toml")
    between = bse.load_effects(inputs["between.csv"], study="study", cluster="study_id")
    assert between.k == 88
    corr = bse.load_correlations(inputs["mediation_correlations.csv"],
                                 variables=("intervention", "self_efficacy", "symptoms"))
    assert corr is not None


def test_demo_bad_data_dir_is_one_line(capsys, elsewhere):
    code, out, err = run_cli(capsys, "demo", "--data-dir", "nowhere", "--out", "demo_out")
    assert code == 2 and err.count("\n") == 1
    assert "demo data not found in 'nowhere'" in err
    assert not (elsewhere / "demo_out").exists()
