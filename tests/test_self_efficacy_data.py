"""The simulated self-efficacy dataset (data/self_efficacy_sim/): determinism, loading, calibration.

The calibration tolerances are about the *simulated sample*, not about bayes_se's estimators:
the dataset is one finite draw from a generating model set to the review's published summaries
(Internet Interventions 40:100821), so its REML estimates differ from the targets by sampling
error (a pooled SE of about 0.04 between groups, 0.05 in a subgroup). The estimators themselves
are checked against metafor elsewhere (tests/test_frequentist_rma.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bayes_se import load_effects
from bayes_se.effect_sizes import DEFAULT_PRE_POST_R, smcr, smd
from bayes_se.frequentist import rma

from conftest import REFERENCE, assert_csv_close, assert_json_close

REPO = REFERENCE.parents[1]
SIM = REPO / "data" / "self_efficacy_sim"
SCRIPT = REPO / "scripts" / "simulate_self_efficacy.py"
GENERATED = ("between.csv", "within.csv", "mediation_correlations.csv", "findings.csv",
             "risk_of_bias.csv", "generating_values.json")
VARIABLES = ("intervention", "self_efficacy", "symptoms")

# Published summaries the simulation is calibrated to (Internet Interventions 40:100821, 2025).
REVIEW_TRIALS = 70
REVIEW_PARTICIPANTS = 17407
REVIEW_D_BETWEEN = 0.46
REVIEW_D_GUIDED = 0.66
REVIEW_D_WITHIN = 0.47
UNGUIDED_RANGE = (0.30, 0.35)  # "clearly lower" than guided: the brief's target range
PARTICIPANTS_RTOL = 0.01   # the brief: total participants within 1% of the review's 17,407
SAMPLE_TOL = 0.06          # one simulated sample: about 1.5 sampling SEs of a pooled/subgroup g
MIN_GUIDED_GAP = 0.2       # guided minus unguided must be well above sampling noise (~0.07)
EXACT_RTOL = 1e-9          # yi/vi are written from the same functions with 10 significant digits


@pytest.fixture(scope="module")
def between():
    return load_effects(SIM / "between.csv", study="study", cluster="study_id")


@pytest.fixture(scope="module")
def within():
    return load_effects(SIM / "within.csv", study="study", cluster="study_id")


@pytest.fixture(scope="module")
def truth():
    return json.loads((SIM / "generating_values.json").read_text(encoding="utf-8"))


def test_self_efficacy_sim_script_reproduces_committed_files(tmp_path):
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    for name in GENERATED:  # numbers, not bytes: last-bit BLAS/SIMD differences are not a failure
        if name.endswith(".json"):
            assert_json_close(json.loads((tmp_path / name).read_text(encoding="utf-8")),
                              json.loads((SIM / name).read_text(encoding="utf-8")))
        else:
            assert_csv_close(tmp_path / name, SIM / name)


def test_self_efficacy_sim_between_loads_nested(between):
    assert between.k == 88 and between.n_clusters == REVIEW_TRIALS  # counts in the README
    assert set(between.frame["guided"]) == {"guided", "unguided"}
    assert set(between.frame["disorder"]) == {"depression", "anxiety", "mixed", "stress",
                                              "insomnia", "PTSD"}
    assert between.frame["year"].dtype.kind == "i"
    assert between.frame["baseline_se"].between(0, 100).all()


def test_self_efficacy_sim_within_loads_nested(within):
    assert within.k == 44 and within.n_clusters == 40
    assert within.frame["ri"].isna().sum() == 6  # the documented rows without a pre-post r


def test_self_efficacy_sim_yi_vi_are_smd_and_smcr_of_the_raw_columns():
    b = pd.read_csv(SIM / "between.csv")
    yi, vi = smd(b.m1i, b.sd1i, b.n1i, b.m2i, b.sd2i, b.n2i)
    np.testing.assert_allclose(b.yi, yi, rtol=EXACT_RTOL, atol=0)
    np.testing.assert_allclose(b.vi, vi, rtol=EXACT_RTOL, atol=0)
    w = pd.read_csv(SIM / "within.csv")
    yi, vi = smcr(w.m_post, w.m_pre, w.sd_pre, w.ni, w.ri.fillna(DEFAULT_PRE_POST_R))
    np.testing.assert_allclose(w.yi, yi, rtol=EXACT_RTOL, atol=0)
    np.testing.assert_allclose(w.vi, vi, rtol=EXACT_RTOL, atol=0)


def test_self_efficacy_sim_within_post_means_are_the_between_intervention_arms():
    b = pd.read_csv(SIM / "between.csv")
    w = pd.read_csv(SIM / "within.csv")
    merged = w.merge(b[b.measure == "primary"], on=["study", "study_id", "arm"])
    assert len(merged) == len(w)
    np.testing.assert_array_equal(merged.m_post, merged.m1i)
    np.testing.assert_array_equal(merged.ni, merged.n1i)


def test_self_efficacy_sim_participants_and_trials(truth):
    b = pd.read_csv(SIM / "between.csv")
    arms = b.drop_duplicates(["study_id", "arm"]).n1i.sum()  # secondary measures: same people
    controls = b.drop_duplicates("study_id").n2i.sum()       # multi-arm trials share the control
    total = int(arms + controls)
    assert b.study_id.nunique() == REVIEW_TRIALS
    assert abs(total - REVIEW_PARTICIPANTS) <= PARTICIPANTS_RTOL * REVIEW_PARTICIPANTS
    assert total == truth["realised"]["participants"]
    per_arm = pd.concat([b.drop_duplicates(["study_id", "arm"]).n1i,
                         b.drop_duplicates("study_id").n2i])
    assert 50 <= per_arm.median() <= 80 and per_arm.max() >= 300


def test_self_efficacy_sim_between_calibration(between):
    overall = rma(between, method="REML")
    assert abs(overall.beta[0] - REVIEW_D_BETWEEN) < SAMPLE_TOL
    guided = between.frame["guided"].to_numpy() == "guided"
    g = rma(between.yi[guided], between.vi[guided], method="REML").beta[0]
    u = rma(between.yi[~guided], between.vi[~guided], method="REML").beta[0]
    assert abs(g - REVIEW_D_GUIDED) < SAMPLE_TOL
    assert UNGUIDED_RANGE[0] - SAMPLE_TOL < u < UNGUIDED_RANGE[1] + SAMPLE_TOL
    assert g - u > MIN_GUIDED_GAP


def test_self_efficacy_sim_baseline_slope_is_negative(between, truth):
    fit = rma(between, mods="baseline_se", method="REML")
    assert fit.beta[1] < 0  # lower baseline self-efficacy -> larger gain
    assert abs(fit.beta[1] - truth["beta_baseline"]) < 2 * fit.se[1]


def test_self_efficacy_sim_within_calibration(within):
    assert abs(rma(within, method="REML").beta[0] - REVIEW_D_WITHIN) < SAMPLE_TOL


def test_self_efficacy_sim_mediation_correlations(truth):
    med = pd.read_csv(SIM / "mediation_correlations.csv")
    assert list(med.columns) == ["study", "n", "var1", "var2", "r"]
    assert (med.r.abs() < 1).all() and (med.n >= 4).all()
    assert set(med.var1) | set(med.var2) == set(VARIABLES)
    assert med.study.nunique() == 15
    assert med.groupby("study").size().min() == 2  # some pairs are simply absent
    assert sorted(p["study"] for p in truth["true_paths"]) == sorted(med.study.unique())
    between_labels = set(pd.read_csv(SIM / "between.csv").study)
    assert set(med.study) <= between_labels
    try:
        from bayes_se.correlations import load_correlations
    except ImportError:  # the loader is optional here; the pandas checks above always run
        return
    data = load_correlations(SIM / "mediation_correlations.csv", variables=VARIABLES)
    assert data.k == 15 and data.variables == VARIABLES
    assert data.observed.sum(axis=0).tolist() == [15, 13, 12]


def test_self_efficacy_sim_mediation_signs_follow_the_paths():
    med = pd.read_csv(SIM / "mediation_correlations.csv")
    mean_r = med.groupby(["var1", "var2"]).r.mean()
    assert mean_r["intervention", "self_efficacy"] > 0   # a > 0
    assert mean_r["self_efficacy", "symptoms"] < 0       # b < 0
    assert mean_r["intervention", "symptoms"] < 0        # c' + a b < 0


def test_self_efficacy_sim_findings_box_score():
    f = pd.read_csv(SIM / "findings.csv")
    assert list(f.columns) == ["study", "construct", "role", "outcome", "direction",
                               "significant", "effect", "n"]
    assert set(f.construct) == {"self_efficacy"}
    assert set(f.role) == {"predictor", "moderator", "mediator"}
    assert set(f.direction) <= {"+", "0", "-"} and set(f.significant) <= {"yes", "no"}
    assert (f[f.direction == "0"].significant == "no").all()
    assert f[f.direction == "0"].effect.isna().all()
    med = f[f.role == "mediator"]
    assert ((med.direction == "+") & (med.significant == "yes")).mean() > 0.5  # mostly mediation
    mod = f[(f.role == "moderator") & (f.significant == "yes")]
    assert len(mod) >= 1 and (mod.direction == "-").all()  # lower baseline benefits more
    pred = f[f.role == "predictor"]
    assert pred.direction.nunique() >= 2 and set(pred.significant) == {"yes", "no"}  # mixed


def test_self_efficacy_sim_readme_documents_the_draw(truth):
    text = (SIM / "README.md").read_text(encoding="utf-8")
    assert "SIMULATED" in text and "CC0" in text and "100821" in text
    assert str(truth["seed"]) in text
    assert f"{truth['realised']['participants']:,}" in text
