"""`bayes-se bias`: the frequentist battery (--json) and one selection model (--selmodel)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import REFERENCE

from bayes_se import cli
from bayes_se.frequentist import bias_battery, rma, selmodel

HACK = REFERENCE / "data" / "dat.hackshaw1998.csv"
PRECISE = json.loads((REFERENCE / "selmodel" / "selmodel_precise.json").read_text())["cases"]


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _hack():
    d = pd.read_csv(HACK)
    return rma(d.yi.to_numpy(), d.vi.to_numpy())


def test_bias_json_prints_the_battery(capsys):
    code, out, err = run_cli(capsys, "bias", HACK, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got == json.loads(json.dumps(bias_battery(_hack(), as_dict=True)))
    methods = [row["method"] for row in got["tests"]]
    assert methods[1:] == ["Egger regression test", "Rank correlation test", "Trim-and-fill", "PET", "PEESE",
                           "PET-PEESE", "Selection model (3PSM)"]
    for row in got["tests"]:
        assert {"estimate", "ci_lower", "ci_upper", "pval", "bias_pval"} <= set(row)


def test_bias_table_without_json(capsys):
    code, out, _ = run_cli(capsys, "bias", HACK)
    assert code == 0
    assert "Selection model (3PSM)" in out and "PET-PEESE" in out


def test_bias_selmodel_json_matches_metafor(capsys):
    code, out, err = run_cli(capsys, "bias", HACK, "--selmodel", "stepfun", "--steps", "0.05,0.10,0.50", "--json")
    assert code == 0, err
    got = json.loads(out)
    for key in ("estimate", "se", "tau2", "delta", "se_delta", "LRT"):
        assert key in got
    ref = PRECISE["hack_step4"]["result"]
    assert got["estimate"] == pytest.approx(ref["beta"], rel=1e-5)
    assert got["se"] == pytest.approx(ref["se"], rel=1e-5)
    assert got["tau2"] == pytest.approx(ref["tau2"], rel=1e-5)
    np.testing.assert_allclose(got["delta"], ref["delta"], rtol=1e-5)
    assert got["se_delta"][0] is None
    np.testing.assert_allclose(got["se_delta"][1:], ref["se_delta"][1:], rtol=1e-5)
    assert got["LRT"] == pytest.approx(ref["LRT"], rel=1e-5)


def test_bias_selmodel_two_sided_and_text(capsys):
    code, out, err = run_cli(capsys, "bias", HACK, "--selmodel", "stepfun", "--steps", "0.05,0.5",
                             "--alternative", "two.sided")
    assert code == 0, err
    assert "Test for Selection Model Parameters" in out
    want = selmodel(_hack(), type="stepfun", steps=[0.05, 0.5], alternative="two.sided")
    assert f"{want.LRT:.4f}" in out


@pytest.mark.parametrize("argv, needle", [
    (["--selmodel", "cauchy"], "cauchy"),
    (["--selmodel", "stepfun", "--steps", "0.5,0.1"], "increasing"),
    (["--selmodel", "stepfun", "--steps", "0,0.5"], "(0, 1]"),
    (["--selmodel", "stepfun", "--steps", "1.5"], "(0, 1]"),
    (["--selmodel", "stepfun", "--steps", "a,b"], "--steps"),
    (["--selmodel", "stepfun"], "steps"),
    (["--steps", "0.025"], "--selmodel"),
    (["--selmodel", "halfnorm", "--steps", "0.05,0.5"], "steps"),
    (["--selmodel", "stepfun", "--steps", "0.0001,0.001"], "p-values"),
    (["--level", "1.5"], "--level"),
    (["--method", "XX"], "XX"),
    (["--cluster", "study"], "cluster"),
])
def test_bias_bad_input_one_line_exit_2(capsys, argv, needle):
    code, out, err = run_cli(capsys, "bias", HACK, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bayes-se: error:")
    assert needle in lines[0]


def test_bias_missing_file_exit_2(capsys):
    code, _, err = run_cli(capsys, "bias", "no_such_file.csv", "--json")
    assert code == 2 and "no_such_file.csv" in err


def test_bias_bayes_json_is_the_ensemble(capsys):
    """--bayes prints bias_ensemble(...).to_dict(): the averaged mu and tau, inclusion BFs, one row per
    model with its method, and the sampled models' diagnostics; same seed, same numbers."""
    from bayes_se import bias_ensemble, load_effects

    code, out, err = run_cli(capsys, "bias", HACK, "--bayes", "--json", "--seed", 5,
                             "--prior-prob", "bias=0.3")
    assert code == 0, err
    got = json.loads(out)
    assert {"mu", "tau", "inclusion_bf", "models", "diagnostics"} <= set(got)
    assert set(got["inclusion_bf"]) == {"effect", "heterogeneity", "bias"}
    assert {"mean", "lower", "upper"} == set(got["mu"]) == set(got["tau"])
    assert {row["method"] for row in got["models"]} == {"exact", "bridge"}
    assert sum(row["prior_prob"] for row in got["models"] if row["bias"] != "none") == pytest.approx(0.3)
    assert sum(row["posterior_prob"] for row in got["models"]) == pytest.approx(1.0)
    want = bias_ensemble(load_effects(HACK), prior_probs={"bias": 0.3}, seed=5).to_dict()
    assert got["mu"] == pytest.approx(want["mu"], rel=1e-12)
    assert got["diagnostics"]["passed"] == (not got["diagnostics"]["problems"])


@pytest.mark.parametrize("argv, message", [
    (["--prior-prob", "effect=0.5"], "add --bayes"),
    (["--bayes", "--prior-prob", "effect=1.5"], "lies in [0, 1]"),
    (["--bayes", "--prior-prob", "size=0.5"], "effect=P, heterogeneity=P or bias=P"),
    (["--bayes", "--selmodel", "stepfun"], "drop --selmodel"),
])
def test_bias_bayes_flags_are_checked(capsys, argv, message):
    code, out, err = run_cli(capsys, "bias", HACK, *argv)
    assert code == 2 and message in err and err.count("\n") == 1, err
