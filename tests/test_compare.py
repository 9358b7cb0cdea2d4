"""Bayesian vs frequentist comparison: the frequentist columns are rma's, the notes fire as designed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bayes_se.compare import (
    ESTIMATE_SD_FRACTION,
    SMALL_K,
    WIDTH_RATIO,
    bayes_label,
    compare_frequentist,
    comparison_notes,
)
from bayes_se.data import load_effects
from bayes_se.exact import exact_posterior
from bayes_se.frequentist.rma import rma
from conftest import REFERENCE

#: the Bayesian row solves the same quantile equations as a direct call, but root-finding on the
#: cdf from another starting bracket may land a few ulps away
ROOT_FINDING_RTOL = 1e-12


@pytest.fixture(scope="module")
def bcg():
    return load_effects(REFERENCE / "data" / "dat.bcg.csv", moderators=["ablat", "year", "alloc"])


@pytest.fixture(scope="module")
def bcg_comparison(bcg):
    return compare_frequentist(exact_posterior(bcg), bcg)


def test_bcg_frequentist_columns_equal_rma(bcg, bcg_comparison):
    """The table copies rma's numbers: they must be identical, not merely close."""
    table = bcg_comparison.table
    assert list(table.index) == [bayes_label(0.95), "DL", "REML", "REML + Knapp-Hartung"]
    for method, kw in (("DL", {"method": "DL"}), ("REML", {}), ("REML + Knapp-Hartung", {"test": "knha"})):
        res = rma(bcg, **kw)
        row = table.loc[method]
        ci = res.confint_tau2().loc["tau"]
        pred = res.predict().iloc[0]
        expected = {"mu_estimate": res.beta[0], "mu_lower": res.ci_lower[0], "mu_upper": res.ci_upper[0],
                    "tau_estimate": res.tau, "tau_lower": ci.ci_lower, "tau_upper": ci.ci_upper,
                    "pi_lower": pred.pi_lower, "pi_upper": pred.pi_upper}
        for col, value in expected.items():
            assert row[col] == value, (method, col)


def test_bcg_bayesian_row_is_the_exact_posterior(bcg, bcg_comparison):
    post = exact_posterior(bcg)
    row = bcg_comparison.table.iloc[0]
    assert row.mu_estimate == pytest.approx(post.quantile("mu", 0.5), rel=ROOT_FINDING_RTOL)
    assert [row.tau_lower, row.tau_upper] == pytest.approx(post.quantile("tau", [0.025, 0.975]), rel=ROOT_FINDING_RTOL)
    assert [row.pi_lower, row.pi_upper] == pytest.approx(post.quantile("pred", [0.025, 0.975]), rel=ROOT_FINDING_RTOL)
    # bcg, k = 13: the KH interval is ~12% wider than z (below the 20% threshold): no notes
    assert bcg_comparison.notes == []
    tidy = bcg_comparison.tidy()
    assert list(tidy.columns) == ["method", "parameter", "estimate", "lower", "upper"]
    assert len(tidy) == 4 * 3


def test_bcg_meta_regression_comparison(bcg):
    X, names = bcg.design("ablat")
    res = compare_frequentist(exact_posterior(bcg, X=X, coef_names=names), bcg, mods="ablat")
    reml = rma(bcg, mods="ablat")
    assert res.table.loc["REML", "ablat_estimate"] == reml.beta[1]
    assert res.table.loc["REML", "pi_lower"] == reml.predict(newmods=[0.0]).pi_lower.iloc[0]
    assert any("Knapp-Hartung interval for the coefficient 'ablat'" in n for n in res.notes)


def _table(bayes=(0.0, -1.0, 1.0), reml=(0.0, -1.0, 1.0), kh=None, tau=(0.3, 0.3, 0.3)):
    """A constructed comparison table: (estimate, lower, upper) of mu per method and tau per method."""
    kh = reml if kh is None else kh
    rows = {}
    for (name, mu), t in zip(((bayes_label(0.95), bayes), ("DL", reml), ("REML", reml),
                              ("REML + Knapp-Hartung", kh)), (tau[0], tau[1], tau[2], tau[2])):
        rows[name] = {"mu_estimate": mu[0], "mu_lower": mu[1], "mu_upper": mu[2], "tau_estimate": t,
                      "tau_lower": 0.0, "tau_upper": 1.0, "pi_lower": -2.0, "pi_upper": 2.0}
    return pd.DataFrame.from_dict(rows, orient="index")


SD = {"mu": 0.5, "tau": 0.1}


def test_notes_silent_when_methods_agree():
    assert comparison_notes(_table(), k=20, posterior_sd=SD) == []


def test_note_bayesian_interval_wider():
    notes = comparison_notes(_table(bayes=(0.0, -1.4, 1.4)), k=13, posterior_sd=SD)
    assert notes == ["The Bayesian 95% interval for mu is 40% wider than REML's z-interval, because it propagates "
                     "the uncertainty in tau (k = 13)."]
    # just below the threshold: silent
    w = WIDTH_RATIO - 1e-3
    assert comparison_notes(_table(bayes=(0.0, -w, w)), k=13, posterior_sd=SD) == []


def test_note_bayesian_interval_narrower_and_kh_wider():
    notes = comparison_notes(_table(bayes=(0.0, -0.5, 0.5), kh=(0.0, -1.5, 1.5)), k=13, posterior_sd=SD)
    assert "50% narrower than REML's z-interval" in notes[0]
    assert notes[1].startswith("The Knapp-Hartung interval for mu is 50% wider") and "k - p = 12" in notes[1]


def test_note_point_estimate_and_conclusion():
    shift = (ESTIMATE_SD_FRACTION + 0.1) * SD["mu"]
    notes = comparison_notes(_table(bayes=(shift, -1.0 + shift, 1.0 + shift)), k=20, posterior_sd=SD)
    assert len(notes) == 1 and "differs from REML's" in notes[0] and "0.35 posterior SDs" in notes[0]
    notes = comparison_notes(_table(bayes=(0.6, 0.05, 1.15), reml=(0.5, -0.05, 1.05)), k=20, posterior_sd=SD)
    assert any(n.startswith("The conclusions differ: the Bayesian 95% interval for mu excludes 0") for n in notes)


def test_note_tau_small_k_names_prior_and_boundary():
    notes = comparison_notes(_table(tau=(0.3, 0.15, 0.15)), k=SMALL_K - 1, posterior_sd=SD,
                             tau_prior="tau ~ HalfNormal(0.5)")
    assert notes == [f"With only k = {SMALL_K - 1} studies the Bayesian estimate of tau (0.3) is pulled by its prior "
                     "(tau ~ HalfNormal(0.5)); REML estimates 0.15."]
    notes = comparison_notes(_table(tau=(0.3, 0.15, 0.15)), k=SMALL_K, posterior_sd=SD)
    assert "mode of a restricted likelihood" in notes[0]
    notes = comparison_notes(_table(tau=(0.2, 0.0, 0.0)), k=5, posterior_sd=SD)
    assert notes[0].startswith("DL and REML estimate tau = 0, a boundary value")
    notes = comparison_notes(_table(tau=(0.3, 0.2, 0.3)), k=30, posterior_sd=SD)
    assert notes == ["DL and REML disagree on tau (0.2 vs 0.3): DL is a moment estimator, REML a likelihood "
                     "estimator; with few or unequal studies they can differ widely."]


def test_wrong_fit_type_is_a_spec_error(bcg):
    from bayes_se.errors import SpecError

    with pytest.raises(SpecError, match="expected a fit"):
        compare_frequentist(np.zeros(3), bcg)
    with pytest.raises(SpecError, match="same mods"):
        compare_frequentist(exact_posterior(bcg), bcg, mods="ablat")
