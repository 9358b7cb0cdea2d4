"""Numerical guards: data and priors at the edge of double precision give a clear error or a number,
never a traceback (issue 13). Each case through the API and through the CLI (exit 2, one line)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import integrate, stats

import bayes_se
from bayes_se import cli
from bayes_se.data import MAX_ABS_EFFECT, MIN_VARIANCE_RATIO, VARIANCE_RANGE, load_effects
from bayes_se.errors import DataError, PriorScaleWarning
from bayes_se.exact import exact_posterior
from bayes_se.frequentist import rma
from bayes_se.priors import parse_prior

from conftest import REFERENCE

KNHA = json.loads((REFERENCE / "guards" / "knha_identical.json").read_text())
QUAD_RTOL = 1e-6  # exact engine vs scipy.integrate.quad (the bound)


def _csv(tmp_path, yi, vi, name="d.csv"):
    path = tmp_path / name
    rows = "\n".join(f"S{i + 1},{y!r},{v!r}" for i, (y, v) in enumerate(zip(yi, vi)))
    path.write_text("study,yi,vi\n" + rows + "\n")
    return path


def _cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


BAD = {  # name: (yi, vi, row, column, words in the message)
    "effect 1e300": ([1e300, 0.2, 0.3], [0.1, 0.1, 0.2], 1, "yi", "too large"),
    "square overflows": ([0.1, -1e160, 0.3], [0.1, 0.1, 0.2], 2, "yi", "too large"),
    "weights overflow": ([0.1, 0.2, 0.3], [0.1, 0.1, 1e-300], 3, "vi", "overflows"),
    "all tiny": ([0.1, 0.2, 0.3], [1e-300, 1e-300, 1e-300], 1, "vi", "overflows"),
    "variance overflows": ([0.1, 0.2, 0.3], [0.1, 1e200, 0.2], 2, "vi", "large"),
    "weights beyond precision": ([0.1, 5.0, -5.0, 3.0], [1e-20, 1.0, 1.0, 1.0], 1, "vi", "orders of magnitude"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_extreme_values_are_a_data_error_in_every_engine(case):
    yi, vi, row, column, words = BAD[case]
    for call in (lambda: rma(yi, vi), lambda: rma(yi, vi, method="DL", test="knha"),
                 lambda: exact_posterior(yi, vi), lambda: bayes_se.fit(load_effects_arrays(yi, vi), engine="exact")):
        with pytest.raises(DataError, match=words) as info:
            call()
        assert info.value.column == column
        assert info.value.row in (row, f"{row} (study 'S{row}')")


def load_effects_arrays(yi, vi):
    return bayes_se.EffectData.from_arrays(yi, vi, study=[f"S{i + 1}" for i in range(len(yi))])


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_extreme_values_cli_exit_2_one_line(tmp_path, capsys, case):
    yi, vi, row, column, words = BAD[case]
    path = _csv(tmp_path, yi, vi)
    for argv in (("freq", path), ("freq", path, "--method", "DL"), ("fit", "--data", path, "--engine", "exact")):
        code, out, err = _cli(capsys, *argv)
        assert code == 2, (argv, err)
        line = err.strip()
        assert "\n" not in line and "Traceback" not in line
        assert f"row {row} (study 'S{row}'), column '{column}'" in line and words in line


def test_standard_errors_out_of_range_are_named_as_standard_errors(tmp_path):
    path = tmp_path / "se.csv"
    path.write_text("study,yi,sei\nA,0.1,0.3\nB,0.2,1e-60\nC,0.3,0.2\n")
    with pytest.raises(DataError, match="standard error 1e-60") as info:
        load_effects(path, se="sei")
    assert info.value.column == "sei" and info.value.row == "2 (study 'B')"


def test_guards_leave_the_documented_edge_cases_alone():
    """Inside the bounds: v from 1e-8 to 1e4 (ratio 1e-12), effects of 1e40 with matching variances."""
    assert MIN_VARIANCE_RATIO < 1e-12 and VARIANCE_RANGE[0] <= 1e-100 and MAX_ABS_EFFECT >= 1e50
    res = rma([0.25, 3.0, -2.0, 1.0], [1e-8, 1e4, 1e4, 1e4], method="DL")
    assert np.isfinite([res.beta[0], res.se[0], res.tau2, res.I2]).all()
    big = rma(np.array([1.0, 3.0, 2.5, 4.0]) * 1e40, np.array([0.1, 0.2, 0.1, 0.3]) * 1e80, method="DL")
    ref = rma([1.0, 3.0, 2.5, 4.0], [0.1, 0.2, 0.1, 0.3], method="DL")
    assert big.beta[0] == pytest.approx(1e40 * ref.beta[0], rel=1e-6)
    assert big.tau2 == pytest.approx(1e80 * ref.tau2, rel=1e-6)


# -- Knapp-Hartung on effects fitted exactly: metafor's answer -----------------------------------------


@pytest.mark.parametrize("case", ["intercept_only", "meta_regression"])
def test_knha_identical_effects_match_metafor(case):
    ref = KNHA[case]
    want = ref["fit"]
    X = np.array(ref["x"], float) if "x" in ref else None
    res = rma(ref["yi"], ref["vi"], X=X, test="knha")
    np.testing.assert_allclose(res.beta, want["beta"], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(res.se, want["se"])
    np.testing.assert_allclose(res.ci_lower, want["ci_lb"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.ci_upper, want["ci_ub"], rtol=1e-9, atol=1e-12)
    assert res.stat[0] == math.inf and res.pval[0] == 0.0  # metafor: tval Inf, p 0
    assert res.tau2 == want["tau2"] and res.s2w == want["s2w"] and res.QE == pytest.approx(want["QE"], abs=1e-12)
    assert res.se_tau2 == pytest.approx(want["se_tau2"], rel=1e-6)
    assert res.I2 == want["I2"] and res.H2 == want["H2"]
    if want["QM"] is None and not res.int_only:
        assert math.isnan(res.QM) and math.isnan(res.QM_p)
    pred = res.predict()
    np.testing.assert_allclose(pred["pi_lower"], want["pi_lb"], rtol=1e-9)
    np.testing.assert_allclose(pred["pi_upper"], want["pi_ub"], rtol=1e-9)
    json.dumps(res.to_dict(), allow_nan=False)  # strict JSON: undefined values are None


def test_knha_identical_effects_cli(tmp_path, capsys):
    path = _csv(tmp_path, [0.5, 0.5, 0.5], [0.1, 0.1, 0.1])
    code, out, err = _cli(capsys, "freq", path, "--test", "knha", "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert obj["estimate"] == 0.5 and obj["se"] == 0.0 and obj["ci_lower"] == obj["ci_upper"] == 0.5
    code, out, err = _cli(capsys, "freq", path, "--test", "knha")
    assert code == 0 and "inf" in out and "Traceback" not in err


# -- Bayes factors under a tight prior far from 0: log densities ---------------------------------------


def _brute_log_bf_mu0(y, v, m, s, tau_scale):
    """log p(y | mu = 0) - log p(y) by scipy.integrate.quad over tau; p(y | tau) as the multivariate
    normal ``N(m 1, V + tau^2 I + s^2 1 1')`` (mu integrated out in the covariance), in log-shifted form."""
    k = y.size

    def log_ptau(tau):
        return float(stats.halfnorm.logpdf(tau, scale=tau_scale))

    def log_num(tau):
        return float(np.sum(stats.norm.logpdf(y, 0.0, np.sqrt(v + tau * tau)))) + log_ptau(tau)

    def log_den(tau):
        cov = np.diag(v + tau * tau) + s * s * np.ones((k, k))
        return float(stats.multivariate_normal.logpdf(y, np.full(k, m), cov)) + log_ptau(tau)

    out = []
    for f in (log_num, log_den):
        shift = max(f(t) for t in np.append(0.0, np.geomspace(1e-4, 1e2, 200)))
        val = integrate.quad(lambda t: math.exp(f(t) - shift), 0, np.inf, epsabs=0, epsrel=1e-12, limit=400)[0]
        out.append(math.log(val) + shift)
    return out[0] - out[1]


def test_tight_prior_far_from_zero_gives_a_finite_log_bayes_factor():
    y, v = np.array([0.5, 0.5, 0.5]), np.array([0.1, 0.1, 0.1])
    post = exact_posterior(y, v, beta_prior=parse_prior("normal(5, 0.1)"))
    log_bf = post.log_bayes_factor("mu0")
    assert math.isfinite(log_bf)
    assert log_bf == pytest.approx(_brute_log_bf_mu0(y, v, 5.0, 0.1, 0.5), rel=QUAD_RTOL)
    assert post.bayes_factor("mu0") == pytest.approx(math.exp(log_bf), rel=1e-12)
    # tighter still: the BF itself overflows, its log stays a number
    tight = exact_posterior(y, v, beta_prior=parse_prior("normal(50, 0.01)"))
    assert math.isfinite(tight.log_bayes_factor("mu0")) and math.isfinite(tight.log_bayes_factor("tau0"))
    assert tight.log_bayes_factor("tau0") < -700 and tight.bayes_factor("tau0") == 0.0


def test_tight_prior_bayes_factors_in_print_and_json(tmp_path, capsys):
    path = _csv(tmp_path, [0.5, 0.5, 0.5], [0.1, 0.1, 0.1])
    code, out, err = _cli(capsys, "fit", "--data", path, "--engine", "exact", "--prior", "mu=normal(5, 0.1)")
    assert code == 0, err
    assert "log BF01" in out and "BF01 (mu = 0 vs mu free)" in out
    code, out, err = _cli(capsys, "fit", "--data", path, "--engine", "exact", "--prior", "mu=normal(50, 0.01)",
                          "--json")
    assert code == 0, err
    obj = json.loads(out)
    assert obj["bayes_factors"]["tau0"] == 0.0 and math.isfinite(obj["log_bayes_factors"]["tau0"])
    assert math.isfinite(obj["log_bayes_factors"]["mu0"])
    fit = bayes_se.fit(bayes_se.EffectData.from_arrays([0.5, 0.5, 0.5], [0.1] * 3), engine="exact",
                       priors=["mu=normal(5, 0.1)"])
    assert fit.log_bayes_factors()["mu0"] == pytest.approx(math.log(fit.bayes_factors()["mu0"]), rel=1e-12)


# -- data far outside the prior's scale: one warning line ---------------------------------------------

HUNDREDS = ([150.0, 210.0, 180.0, 300.0], [10.0, 12.0, 9.0, 20.0])


def test_effects_in_the_hundreds_warn_about_the_prior_scale():
    data = bayes_se.EffectData.from_arrays(*HUNDREDS)
    with pytest.warns(PriorScaleWarning, match="--prior"):
        bayes_se.fit(data, engine="exact")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PriorScaleWarning)
        bayes_se.fit(data, engine="exact", priors=["mu=normal(0, 1000)", "tau=half_normal(100)"])
        bayes_se.fit(bayes_se.EffectData.from_arrays([0.1, 0.4, 0.3], [0.02, 0.03, 0.05]), engine="exact")


def test_effects_in_the_hundreds_warning_is_one_cli_line(tmp_path, capsys):
    path = _csv(tmp_path, *HUNDREDS)
    code, out, err = _cli(capsys, "fit", "--data", path, "--engine", "exact")
    assert code == 0
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("bayes-se: warning: the effects' scale")
    assert "--prior" in lines[0] and "Normal(0, 1)" in lines[0]


# -- REML where Fisher scoring oscillates, and on a large scale ----------------------------------------


def test_reml_when_fisher_scoring_oscillates_is_the_likelihood_maximum():
    """A draw on which Fisher scoring's steps oscillate forever (found by the property test in
    test_frequentist_rma.py): the estimate is the maximiser of the restricted likelihood, found
    independently by scipy's bounded scalar minimiser, whatever the study order."""
    from scipy import optimize

    from bayes_se.frequentist.tau2 import log_likelihood

    rng = np.random.default_rng(528)
    vi = rng.uniform(0.01, 0.5, 10)
    yi = rng.normal(0.3, np.sqrt(vi + 0.1))
    perm = rng.permutation(10)
    best = optimize.minimize_scalar(lambda t: -log_likelihood(t, yi, vi, np.ones((10, 1)), True),
                                    bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-13}).x
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning: the root was found
        for y, v in ((yi, vi), (yi[perm], vi[perm])):
            assert rma(y, v).tau2 == pytest.approx(best, rel=1e-6)


def test_reml_converges_on_a_large_scale():
    y, v = np.array([1.0, 3.0, 2.5, 4.0]), np.array([0.1, 0.2, 0.1, 0.3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big = rma(y * 1e40, v * 1e80)
    assert big.tau2 == pytest.approx(1e80 * rma(y, v).tau2, rel=1e-9)
