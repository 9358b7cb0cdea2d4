"""The fit API and the command line: spec resolution, engine dispatch, JSON keys, errors, outputs.

The exact-engine numbers are checked against the shared exact quadrature reference (an
independent R solver); MCMC through the CLI is exercised once per spec with small settings.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from bayes_se import cli
from bayes_se.api import fit, resolve_spec
from bayes_se.priors import coefficient_priors
from bayes_se.exact import exact_posterior
from bayes_se.spec import load_spec

from conftest import REFERENCE

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
BCG = REFERENCE / "data" / "dat.bcg.csv"
KONST = REFERENCE / "data" / "dat.konstantopoulos2011.csv"
METAPSY = ROOT / "data" / "metapsy_depression_selfguided.csv"

EXACT_RTOL = 1e-6  # exact engine vs the R quadrature reference (issue: 1e-6)
SAME_CODE_RTOL = 1e-12  # the API and a direct engine call run the same arithmetic

FREQ_KEYS = {"k", "method", "test", "estimate", "se", "ci_lower", "ci_upper", "tau2", "se_tau2", "tau2_ci_lower",
             "tau2_ci_upper", "I2", "H2", "Q", "Q_p", "pi_lower", "pi_upper"}


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# -- spec resolution ------------------------------------------------------------------------------

def test_default_spec_is_models_random_effects():
    assert resolve_spec(None) == load_spec(MODELS / "random_effects.toml")


def test_overrides_apply_mods_before_coefficient_priors():
    spec = resolve_spec(None, mods="ablat", priors=["beta[ablat]=normal(0, 0.1)", "tau=half_cauchy(0.3)"],
                        engine="exact", seed=7)
    assert spec.model.type == "meta_regression"
    assert spec.sampler.engine == "exact" and spec.sampler.seed == 7
    pri = coefficient_priors(spec.resolved_priors(), ["intercept", "ablat"])
    assert str(pri[0]) == str(spec.resolved_priors()["mu"])
    assert pri[1].params["sigma"] == 0.1
    assert spec.resolved_priors()["tau"].family == "half_cauchy"


def test_preset_override():
    spec = resolve_spec(None, priors=["preset=rhodes2015_general"])
    assert spec.preset == "rhodes2015_general"


# -- exact engine through the API -------------------------------------------------------------------

def test_exact_fit_matches_reference_bcg():
    ref = json.loads((REFERENCE / "exact" / "bcg.json").read_text())
    res = fit(BCG, engine="exact")
    table = res.summary()
    for par in ("mu", "tau", "tau2"):
        for stat in ("mean", "sd", "q2.5", "q50", "q97.5"):
            assert table.loc[par, stat] == pytest.approx(ref["summary"][par][stat], rel=EXACT_RTOL)
    assert res.log_marginal_likelihood == pytest.approx(ref["log_marginal_likelihood"], rel=EXACT_RTOL)


def test_exact_fit_uses_coefficient_priors():
    res = fit(BCG, engine="exact", mods="ablat", priors=["beta[ablat]=normal(0, 0.1)"])
    from bayes_se.data import load_effects

    data = load_effects(BCG)
    X, names = data.design("ablat")
    direct = exact_posterior(data, X=X, coef_names=names, beta_mean=[0, 0], beta_sd=[1, 0.1])
    want = direct.summary(theta=False)
    got = res.summary(theta=False).loc[want.index, want.columns]
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=SAME_CODE_RTOL)


def test_exact_engine_solves_three_level():
    from bayes_se.errors import SpecError
    from bayes_se.exact_three_level_fit import ThreeLevelExactFit

    res = fit(KONST, MODELS / "three_level.toml", engine="exact")
    assert isinstance(res, ThreeLevelExactFit) and res.engine == "exact"
    assert list(res.summary(theta=False).index) == ["mu", "sigma_cluster", "sigma_effect", "pred", "I2"]
    with pytest.raises(SpecError, match="sampler.engine"):  # Student-t effects: MCMC only
        fit(KONST, "[model]\ntype = 'three_level'\neffects = 'student_t'\n[data]\ncluster = 'district'\n"
            "[sampler]\nengine = 'exact'")
    with pytest.raises(SpecError, match="model.rho"):  # correlated sampling errors: exact engine only
        fit(KONST, "[model]\ntype = 'three_level'\nrho = 0.5\n[data]\ncluster = 'district'")


# -- CLI: freq ------------------------------------------------------------------------------------

def test_cli_freq_json_keys(capsys):
    code, out, err = run_cli(capsys, "freq", BCG, "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert FREQ_KEYS <= set(obj)
    assert obj["method"] == "REML" and obj["k"] == 13


METAFOR = sorted((REFERENCE / "metafor").glob("dat.*.json"))  # the datasets (not the formula cases)
CLOSED_FORM_TAU2 = {"EE", "DL", "HE", "HS", "SJ"}  # metafor's closed-form estimators: 1e-6, else 1e-5


@pytest.mark.parametrize("path", METAFOR, ids=[p.stem for p in METAFOR])
def test_cli_freq_json_se_tau2_matches_metafor(capsys, tmp_path, path):
    """``freq --json`` carries metafor's se.tau2 for every tau2 estimator (None for EE)."""
    import pandas as pd

    ref = json.loads(path.read_text())
    frame = pd.read_csv(REFERENCE / ref["univariate_csv"])
    csv = tmp_path / "effects.csv"  # one row per effect with a unique label, as metafor's rma(yi, vi)
    pd.DataFrame({"study": np.arange(1, len(frame) + 1), "yi": frame["yi"], "vi": frame["vi"]}).to_csv(csv, index=False)
    for method, tests in ref["rma"].items():
        want = tests["z"]["se.tau2"]
        code, out, err = run_cli(capsys, "freq", csv, "--method", method, "--json")
        assert code == 0, err
        got = json.loads(out)["se_tau2"]
        if want is None:
            assert method == "EE" and got is None
        else:
            rtol = 1e-6 if method in CLOSED_FORM_TAU2 else 1e-5
            assert got == pytest.approx(want, rel=rtol, abs=1e-10 if abs(want) < 1e-8 else 0), (path.stem, method)


def test_cli_freq_moderators_json(capsys):
    code, out, _ = run_cli(capsys, "freq", BCG, "--mods", "ablat + alloc", "--test", "knha", "--json")
    assert code == 0
    obj = json.loads(out)
    assert {"coefficients", "QM", "QM_p", "R2"} <= set(obj)
    assert set(obj["coefficients"]) == {"intercept", "ablat", "allocrandom", "allocsystematic"}
    assert set(obj["coefficients"]["ablat"]) == {"estimate", "se", "stat", "pval", "ci_lower", "ci_upper"}


def test_cli_freq_three_level_matches_metafor(capsys):
    ref = json.loads((REFERENCE / "metafor" / "dat.konstantopoulos2011.json").read_text())
    want = ref["rma_mv"]["multilevel_REML"]
    code, out, _ = run_cli(capsys, "freq", KONST, "--cluster", "district", "--json")
    assert code == 0
    obj = json.loads(out)
    assert obj["estimate"] == pytest.approx(want["coefficients"]["intrcpt"]["estimate"], rel=1e-5)
    assert obj["sigma2"]["values"] == pytest.approx(want["sigma2"]["values"], rel=1e-5)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["freq", "no_such_file.csv"], "no_such_file.csv"),
        (["freq", BCG, "--mods", "nope"], "nope"),
        (["freq", BCG, "--mods", "ablat; rm"], "mods"),
        (["freq", BCG, "--effect", "missing_col"], "missing_col"),
        (["freq", BCG, "--method", "XX"], "XX"),
        (["fit", "--data", BCG, "--prior", "mu=normal(0, -1)"], "mu"),
        (["fit", "--data", BCG, "--prior", "tau=wibble(1)"], "wibble"),
        (["fit", "--data", BCG, "--mods", "ablat", "--prior", "beta[foo]=normal(0, 1)"], "foo"),
        (["sensitivity", MODELS / "mediation.toml", "--data", BCG], "bayes-se fit"),
    ],
)
def test_cli_bad_input_one_line_exit_2(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bayes-se: error:")
    assert needle in lines[0]


def test_cli_bad_row_named(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("study,yi,vi\nA,0.1,0.02\nB,0.3,-0.01\nC,0.2,0.03\n")
    code, _, err = run_cli(capsys, "freq", path)
    assert code == 2
    assert "row 2" in err and "'vi'" in err


# -- CLI: fit -----------------------------------------------------------------------------------------

def test_cli_fit_exact_json(capsys):
    code, out, err = run_cli(capsys, "fit", "--data", BCG, "--engine", "exact", "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert {"mu", "tau", "tau2", "pred", "theta[Aronson 1948]"} <= set(obj["parameters"])
    # the spec's smallest effect (0.2) gives probability columns that name their threshold
    assert set(obj["parameters"]["mu"]) == {"mean", "sd", "q2.5", "q50", "q97.5", "P(>0.2)", "P(<-0.2)"}
    assert obj["parameters"]["tau"]["P(>0.2)"] is None
    assert {"divergences", "max_r_hat", "min_ess_bulk", "min_ess_tail", "passed"} <= set(obj["diagnostics"])
    assert set(obj["bayes_factors"]) == {"mu0", "tau0"}
    assert np.isfinite(obj["log_marginal_likelihood"])


def test_cli_fit_out_is_atomic_and_never_overwrites(tmp_path, capsys):
    out_dir = tmp_path / "fit1"
    code, _, err = run_cli(capsys, "fit", "--data", BCG, "--engine", "exact", "--out", out_dir)
    assert code == 0, err
    # every engine stores its draws: an exact fit's are exact iid draws
    assert sorted(p.name for p in out_dir.iterdir()) == ["idata.nc", "provenance.json", "spec.toml", "summary.csv"]
    record = json.loads((out_dir / "provenance.json").read_text())
    assert record["seed"] == 20251121 and len(record["data_sha256"]) == 64
    assert record["versions"]["numpy"]
    assert load_spec((out_dir / "spec.toml").read_text()).sampler.engine == "exact"
    before = (out_dir / "summary.csv").read_bytes()
    code, _, err = run_cli(capsys, "fit", "--data", BCG, "--engine", "exact", "--seed", "3", "--out", out_dir)
    assert code == 2 and "--force" in err
    assert (out_dir / "summary.csv").read_bytes() == before
    code, _, _ = run_cli(capsys, "fit", "--data", BCG, "--engine", "exact", "--seed", "3", "--out", out_dir,
                         "--force")
    assert code == 0
    assert json.loads((out_dir / "provenance.json").read_text())["seed"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


@pytest.fixture(scope="module")
def metapsy_guided(tmp_path_factory):
    """The bundled Metapsy table with a 0/1 ``guided`` column: 1 where the database codes human
    encouragement (the closest it has to guidance; all its trials are self-guided)."""
    import pandas as pd

    frame = pd.read_csv(METAPSY)
    frame["guided"] = (frame["support"] == "human").astype(int)
    path = tmp_path_factory.mktemp("guided") / "metapsy_guided.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.mcmc
@pytest.mark.parametrize(
    "spec, extra",
    [
        ("random_effects.toml", []),
        ("guidance_moderator.toml", []),
        ("three_level.toml", ["--cluster", "study_id"]),
    ],
)
def test_cli_fit_mcmc_each_spec_on_bundled_data(capsys, metapsy_guided, spec, extra):
    """Every shipped spec fits the bundled Metapsy data from the CLI (small sampler settings)."""
    code, out, err = run_cli(capsys, "fit", MODELS / spec, "--data", metapsy_guided, "--json", "--chains", "2",
                             "--draws", "300", "--tune", "300", *extra)
    assert code == 0, err
    obj = json.loads(out)
    params = obj["parameters"]
    assert "tau" in params or "sigma_cluster" in params
    assert {"ess_bulk", "ess_tail", "r_hat"} <= set(next(iter(params.values())))
    assert obj["diagnostics"]["divergences"] == 0


@pytest.mark.mcmc
def test_cli_fit_mediation_spec_json(capsys):
    """models/mediation.toml fits a long correlation CSV as it is; parameters carry the issue's names."""
    data = ROOT / "data" / "self_efficacy_sim" / "mediation_correlations.csv"
    code, out, err = run_cli(capsys, "fit", MODELS / "mediation.toml", "--data", data, "--json",
                             "--chains", "2", "--draws", "200", "--tune", "200")
    assert code == 0, err
    obj = json.loads(out)
    assert {"a", "b", "c_prime", "indirect", "indirect_avg", "total", "prop_mediated",
            "rho[intervention,self_efficacy]"} <= set(obj["parameters"])
    assert obj["diagnostics"]["divergences"] == 0


# -- CLI: closed pipes and Ctrl-C ------------------------------------------------------------------
QUIET_STDERR_BANNED = ("Traceback", "Exception ignored", "BrokenPipeError")
SUBPROCESS_TIMEOUT_S = 600  # a loaded 2-core machine: imports and PyTensor compilation take a while


def _cli_process(*argv, **kwargs):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "bayes_se.cli", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, **kwargs)


def test_cli_exits_quietly_when_the_reader_closes_the_pipe(tmp_path):
    """`bayes-se ... | head -1`: no traceback, no 'Exception ignored' at shutdown, exit 141."""
    import pandas as pd

    rng = np.random.default_rng(3)
    k = 3000  # --json prints every theta[...]: several hundred kB, more than a pipe buffer holds
    big = tmp_path / "big.csv"
    pd.DataFrame({"study": np.arange(k), "yi": rng.normal(0.3, 0.3, k),
                  "vi": rng.uniform(0.01, 0.1, k)}).to_csv(big, index=False)
    proc = _cli_process("fit", "--data", big, "--engine", "exact", "--json")
    assert proc.stdout.readline() == "{\n"  # read one line, then go away like `head -1`
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=SUBPROCESS_TIMEOUT_S) == cli.EXIT_BROKEN_PIPE == 141
    assert not [word for word in QUIET_STDERR_BANNED if word in err], err

    proc = _cli_process("freq", BCG, "--json")  # the reader is gone before the first write
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=SUBPROCESS_TIMEOUT_S) == 141
    assert not [word for word in QUIET_STDERR_BANNED if word in err], err


@pytest.fixture
def sigint_raises():
    """Ctrl-C raises KeyboardInterrupt in this process during the test, even when the suite was
    started with SIGINT ignored (a background job of a shell without job control), where Python
    installs no handler of its own."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _sigint_default():  # preexec_fn: the child gets Python's usual Ctrl-C, whatever this process ignores
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sampling_reraises_a_ctrl_c_that_pymc_swallowed(sigint_raises):
    """pymc.sample returns its partial draws on KeyboardInterrupt; the fit must stop instead."""
    import signal

    from bayes_se.sampling import _sample_keeping_interrupts

    def swallowing_sample(**kwargs):  # what pymc.sample does with a Ctrl-C
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        return "partial draws"

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        _sample_keeping_interrupts(swallowing_sample, {})
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored

    def failing_sample(**kwargs):  # pymc.sample interrupted during tuning
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        raise ValueError("Not enough samples to build a trace.")

    with pytest.raises(KeyboardInterrupt):
        _sample_keeping_interrupts(failing_sample, {})
    with pytest.raises(ValueError, match="no interrupt"):
        _sample_keeping_interrupts(lambda **kw: (_ for _ in ()).throw(ValueError("no interrupt")), {})
    assert _sample_keeping_interrupts(lambda **kw: kw["x"], {"x": 1}) == 1


@pytest.mark.mcmc
def test_cli_ctrl_c_during_mcmc_prints_interrupted_and_exits_130():
    """SIGINT while NUTS runs: one line 'interrupted' on stderr, exit 130, no traceback, no results."""
    proc = _cli_process("fit", "--data", BCG, "--chains", "1", "--tune", "500", "--draws", "1000000",
                        preexec_fn=_sigint_default)
    try:
        _check_ctrl_c(proc)
    finally:  # a failed check leaves no million-draw fit running
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _check_ctrl_c(proc):
    import signal
    import threading
    import time

    lines, started = [], threading.Event()

    def read_stderr():
        for line in proc.stderr:
            lines.append(line)
            if "sampling" in line.lower():  # PyMC logs "Sequential sampling (1 chains in 1 job)"
                started.set()
        started.set()  # the process ended without sampling: the assertions below say why

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert started.wait(SUBPROCESS_TIMEOUT_S), "the fit did not start sampling"
    time.sleep(1.0)
    assert proc.poll() is None, "".join(lines)  # a million draws: still sampling
    proc.send_signal(signal.SIGINT)
    out = proc.stdout.read()
    code = proc.wait(timeout=SUBPROCESS_TIMEOUT_S)
    reader.join(timeout=60)
    err = "".join(lines)
    assert code == cli.EXIT_INTERRUPTED == 130, err
    assert err.rstrip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in err and out == ""
