"""Leave-one-out and cumulative posteriors of the exact engine (bayes_se.exact_influence) against
the exact engine refitted on the reduced data (``exact_posterior`` on the remaining studies), to
1e-8 relative."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REFERENCE

import bayes_se
from bayes_se.errors import DataError, SpecError
from bayes_se.exact import exact_posterior
from bayes_se.exact_influence import cumulative, leave_one_out, subset_summaries
from bayes_se.priors import preset, prior_for

RTOL = 1e-8
BCG = pd.read_csv(REFERENCE / "data" / "dat.bcg.csv")
HACK = pd.read_csv(REFERENCE / "data" / "dat.hackshaw1998.csv")
STATS = ["mean", "sd", "q2.5", "q50", "q97.5"]


def _direct(fr, keep, X=None, names=None, tau_prior=None):
    """The exact engine on the reduced data, from scratch."""
    keep = np.asarray(keep)
    post = exact_posterior(fr["yi"].to_numpy()[keep], fr["vi"].to_numpy()[keep],
                           X=None if X is None else X[keep], coef_names=names,
                           study=fr["study"].to_numpy()[keep], tau_prior=tau_prior)
    return post.summary(theta=False, pred=False)


def _assert_rows(table, label, direct, pars):
    for par in pars:
        got = table.loc[(label, par), STATS].to_numpy(float)
        want = direct.loc[par, STATS].to_numpy(float)
        np.testing.assert_allclose(got, want, rtol=RTOL, err_msg=f"{label} {par}")


@pytest.mark.parametrize("prior", ["default", "rhodes"])
def test_leave_one_out_equals_refits(prior):
    tau_prior = preset("rhodes2015_general")["tau"] if prior == "rhodes" else None
    post = exact_posterior(BCG["yi"], BCG["vi"], study=BCG["study"], tau_prior=tau_prior)
    loo = leave_one_out(post)
    full = post.summary(theta=False, pred=False)
    k = len(BCG)
    assert list(loo.index.get_level_values("study")[::2]) == list(BCG["study"])
    for i in range(k):
        direct = _direct(BCG, np.arange(k) != i, tau_prior=tau_prior)
        _assert_rows(loo, BCG["study"][i], direct, ["mu", "tau"])
        shift = loo.loc[(BCG["study"][i], "mu"), "shift"]
        assert shift == pytest.approx(direct.loc["mu", "mean"] - full.loc["mu", "mean"], rel=1e-7, abs=1e-12)


def test_leave_one_out_meta_regression_equals_refits():
    X = np.column_stack([np.ones(len(BCG)), BCG["ablat"]])
    post = exact_posterior(BCG["yi"], BCG["vi"], X=X, coef_names=["intercept", "ablat"], study=BCG["study"])
    loo = leave_one_out(post)
    assert set(loo.index.get_level_values("parameter")) == {"beta[intercept]", "beta[ablat]", "tau"}
    for i in (0, 3, 12):
        direct = _direct(BCG, np.arange(len(BCG)) != i, X=X, names=["intercept", "ablat"])
        _assert_rows(loo, BCG["study"][i], direct, ["beta[intercept]", "beta[ablat]", "tau"])


@pytest.mark.parametrize(("frame", "order"), [(BCG, "year"), (HACK, "year"), (HACK, None)])
def test_cumulative_equals_refits(frame, order):
    post = exact_posterior(frame["yi"], frame["vi"], study=frame["study"])
    keys = None if order is None else frame[order].to_numpy()
    cum = cumulative(post, keys)
    idx = np.arange(len(frame)) if keys is None else np.argsort(keys, kind="stable")
    for n in range(1, len(frame) + 1):
        keep = np.zeros(len(frame), bool)
        keep[idx[:n]] = True
        label = frame["study"][idx[n - 1]]
        assert cum.loc[(label, "mu"), "k"] == n
        _assert_rows(cum, label, _direct(frame, keep), ["mu", "tau"])


def test_whole_set_reproduces_the_posterior_and_fast_path_equals_refit_path():
    post = exact_posterior(HACK["yi"], HACK["vi"], study=HACK["study"])
    k = len(HACK)
    whole = subset_summaries(post, np.ones((1, k), bool), ["all"])
    full = post.summary(theta=False, pred=False)
    np.testing.assert_allclose(whole.loc["all"].loc[["mu", "tau"], STATS], full.loc[["mu", "tau"], STATS], rtol=1e-10)
    assert np.abs(whole["shift"]).max() < 1e-12
    masks = ~np.eye(k, dtype=bool)
    fast = subset_summaries(post, masks, post.study)
    slow = subset_summaries(post, masks, post.study, refit=True)
    np.testing.assert_allclose(fast[STATS].to_numpy(), slow[STATS].to_numpy(), rtol=RTOL)


def test_loo_reuses_the_grid(monkeypatch):
    """k = 118: no subset of the leave-one-out needs a grid of its own; the cumulative one few."""
    from bayes_se.exact import ExactPosterior

    mp = pd.read_csv(REFERENCE.parent.parent / "data" / "metapsy_depression_selfguided.csv")
    post = exact_posterior(mp["yi"], mp["vi"], study=mp["study"])
    calls = []
    original = ExactPosterior.subset
    monkeypatch.setattr(ExactPosterior, "subset", lambda self, keep: calls.append(1) or original(self, keep))
    loo = leave_one_out(post)
    assert calls == [] and loo.shape == (2 * len(mp), 7) and np.isfinite(loo.to_numpy()).all()
    cum = cumulative(post, mp["year"].to_numpy())
    assert 0 < len(calls) <= 10 and np.isfinite(cum.to_numpy()).all()


def test_flat_tau_prior_cumulative_is_nan_until_proper():
    post = exact_posterior(HACK["yi"], HACK["vi"], study=HACK["study"], tau_prior=prior_for("tau", "flat()"))
    cum = cumulative(post)
    assert np.isnan(cum.loc[HACK["study"][0]].to_numpy(float)[:, 1:]).all()  # k = 1: improper
    label = HACK["study"][2]  # k = 3: proper
    keep = np.arange(len(HACK)) < 3
    direct = _direct(HACK, keep, tau_prior=prior_for("tau", "flat()"))
    np.testing.assert_allclose(cum.loc[(label, "mu"), STATS].to_numpy(float), direct.loc["mu", STATS], rtol=RTOL)


def test_exact_fit_methods_and_errors():
    data = bayes_se.load_effects(REFERENCE / "data" / "dat.bcg.csv")
    fit = bayes_se.fit(data, engine="exact")
    by_name = fit.cumulative("year")
    by_keys = fit.cumulative(BCG["year"].to_numpy())
    pd.testing.assert_frame_equal(by_name, by_keys)
    loo = fit.leave_one_out(level=0.9)
    assert list(loo.columns) == ["mean", "sd", "q5", "q50", "q95", "shift", "shift_sd"]
    with pytest.raises(SpecError, match="no column"):
        fit.cumulative("nope")
    with pytest.raises(DataError, match="2 values"):
        fit.cumulative([1, 2])
