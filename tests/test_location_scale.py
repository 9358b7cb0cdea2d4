"""Location-scale models (issue 15): ``log tau_i^2 = z_i' alpha`` (Viechtbauer & Lopez-Lopez 2022).

Frequentist: ``rma(..., scale=)`` against metafor 3.8-1 (tests/reference/location_scale/, written by
location_scale.R beside it) on dat.bangertdrowns2004 and the bundled Metapsy table, REML and ML,
continuous and categorical scale moderators. Bayesian: the MCMC builder and the exact 2-D engine
(one binary scale moderator) against each other and against an independent brute-force quadrature.
"""

from __future__ import annotations

import json
import math
import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest

from bayes_se import cli
from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist import rma
from bayes_se.frequentist.location_scale import LocationScaleResult, ls_loglik, rma_ls

TESTS = pathlib.Path(__file__).parent
REF = TESTS / "reference" / "location_scale"
METAPSY = TESTS.parent / "data" / "metapsy_depression_selfguided.csv"
ITERATIVE_RTOL = 1e-5  # iterative fits (metafor optimum and numDeriv Hessian) against ours
ALGEBRA_RTOL = 1e-6  # closed-form derivatives against finite differences

CASES = json.loads((REF / "location_scale.json").read_text())["cases"]


def _frame(name: str) -> pd.DataFrame:
    if name == "dat.bangertdrowns2004":
        return pd.read_csv(TESTS / "reference" / "data" / "dat.bangertdrowns2004.csv")
    frame = pd.read_csv(METAPSY)
    frame["guided"] = (frame["support"] == "human").astype(int)  # as location_scale.R
    return frame


def _fit(case) -> LocationScaleResult:
    frame = _frame(case["data"])
    mods = None if case["mods"].replace(" ", "") == "~1" else case["mods"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the rows with a missing moderator, named in a DataWarning
        return rma(frame["yi"], frame["vi"], mods=mods, scale=case["scale"], data=frame, method=case["method"],
                   test=case["test"])


@pytest.fixture(scope="module", params=CASES, ids=[c["name"] for c in CASES])
def fitted(request):
    return request.param, _fit(request.param)


def _close(got, want, rtol=ITERATIVE_RTOL):
    np.testing.assert_allclose(np.asarray(got, float).ravel(), np.asarray(want, float).ravel(), rtol=rtol, atol=0)


def test_location_part_matches_metafor(fitted):
    case, res = fitted
    assert res.k == case["k"] and res.p == case["p"] and res.q == case["q"] and res.parms == case["parms"]
    assert list(res.omitted_rows) == list(case["omitted_rows"])
    for ours, theirs in (("beta", "beta"), ("se", "se"), ("stat", "zval"), ("pval", "pval"),
                         ("ci_lower", "ci_lb"), ("ci_upper", "ci_ub"), ("vcov", "vb")):
        _close(getattr(res, ours), case[theirs])
    _close(res.QM, case["QM"])
    _close(res.QM_p, case["QMp"])
    _close(res.QE, case["QE"])
    _close(res.QE_p, case["QEp"])


def test_scale_part_matches_metafor(fitted):
    case, res = fitted
    for ours, theirs in (("alpha", "alpha"), ("se_alpha", "se_alpha"), ("stat_alpha", "zval_alpha"),
                         ("pval_alpha", "pval_alpha"), ("ci_lower_alpha", "ci_lb_alpha"),
                         ("ci_upper_alpha", "ci_ub_alpha"), ("tau2", "tau2")):
        _close(getattr(res, ours), case[theirs])
    # covariance of alpha: each element relative to se_i se_j (an off-diagonal near 0 has no digits
    # of its own to compare when a scale moderator is far from 0, e.g. year)
    va = np.asarray(case["va"], float).reshape(res.q, res.q)
    scale = np.outer(case["se_alpha"], case["se_alpha"])
    assert np.max(np.abs(res.vcov_alpha - va) / scale) < ITERATIVE_RTOL
    _close(res.QS, case["QS"])
    _close(res.QS_p, case["QSp"])


def test_fit_statistics_and_likelihood_ratio_test_match_metafor(fitted):
    case, res = fitted
    _close(res.fit_stats["ML"], case["fit_ML"])
    _close(res.fit_stats["REML"], case["fit_REML"])
    _close(res.ll_reduced, case["ll_reduced"])
    _close(res.LRT, case["LRT"])
    _close(res.LRT_p, case["LRT_pval"])
    assert res.LRT_df == res.q - 1


def test_names_follow_the_formula_language():
    case = next(c for c in CASES if c["name"] == "mp_control_REML")
    res = _fit(case)
    metafor_names = [n.replace("intrcpt", "intercept") for n in case["scale_names"]]
    assert res.scale_names == metafor_names == ["intercept", "controlother ctr", "controlwl"]
    table = res.scale_coef_table()
    assert list(table.columns) == list(res.coef_table().columns)
    assert list(table.index) == res.scale_names


def test_analytic_derivatives_equal_finite_differences():
    rng = np.random.default_rng(5)
    k = 25
    X = np.column_stack([np.ones(k), rng.normal(size=k)])
    Z = np.column_stack([np.ones(k), rng.normal(size=k), rng.integers(0, 2, k)])
    vi = rng.uniform(0.02, 0.2, k)
    yi = X @ [0.3, 0.1] + rng.normal(size=k) * np.sqrt(vi + 0.05)
    a = np.array([-2.5, 0.3, 0.4])
    for reml in (True, False):
        _, g, H = ls_loglik(a, yi, vi, X, Z, reml, derivatives=True)
        h = 1e-5
        E = np.eye(3) * h
        g_fd = np.array([(ls_loglik(a + e, yi, vi, X, Z, reml) - ls_loglik(a - e, yi, vi, X, Z, reml)) / (2 * h)
                         for e in E])
        H_fd = np.array([(ls_loglik(a + e, yi, vi, X, Z, reml, True)[1] - ls_loglik(a - e, yi, vi, X, Z, reml, True)[1])
                         / (2 * h) for e in E])
        np.testing.assert_allclose(g, g_fd, rtol=ALGEBRA_RTOL, atol=1e-8)
        np.testing.assert_allclose(H, H_fd, rtol=ALGEBRA_RTOL, atol=1e-7)


def test_constant_scale_is_the_ordinary_random_effects_model():
    frame = _frame("metapsy")
    for method in ("REML", "ML"):
        ls = rma(frame["yi"], frame["vi"], mods="control", scale="~ 1", data=frame, method=method)
        re = rma(frame["yi"], frame["vi"], mods="control", data=frame, method=method)
        assert np.exp(ls.alpha[0]) == pytest.approx(re.tau2, rel=1e-7)
        _close(ls.beta, re.beta, rtol=1e-7)
        assert ls.LRT is None  # nothing to test against


def test_predict_uses_each_studys_tau2():
    case = next(c for c in CASES if c["name"] == "mp_guided_REML")
    res = _fit(case)
    pr = res.predict(newmods=[[0], [1]], newscale=[[0], [1]])
    tau2 = np.exp(res.alpha[0] + np.array([0, 1]) * res.alpha[1])
    _close(pr["tau2"], tau2, rtol=1e-12)
    half = 1.959963984540054 * np.sqrt(pr["se"] ** 2 + tau2)
    _close(pr["pi_upper"] - pr["pred"], half, rtol=1e-9)


def test_to_dict_is_strict_json_with_scale_coefficients():
    res = _fit(next(c for c in CASES if c["name"] == "bd_length_REML"))
    out = res.to_dict()
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text)["model"] == "rma_ls"
    assert set(out["scale_coefficients"]["length"]) == {"estimate", "se", "zval", "pval", "ci_lower", "ci_upper"}
    assert len(out["tau2"]) == res.k
    assert "rows left out" in res.summary() and "Scale" in res.summary()


def test_bad_input_is_refused_with_its_key():
    frame = _frame("metapsy")
    with pytest.raises(SpecError) as e:
        rma(frame["yi"], frame["vi"], scale="control", data=frame, method="DL")
    assert e.value.key == "method"
    with pytest.raises(DataError) as e:
        rma(frame["yi"], frame["vi"], scale="nosuch", data=frame)
    assert "nosuch" in str(e.value)
    with pytest.raises(SpecError) as e:
        rma(frame["yi"], frame["vi"], scale="control")
    assert e.value.key == "scale"
    bd = _frame("dat.bangertdrowns2004")
    with pytest.raises(DataError) as e:
        rma_ls(bd["yi"], bd["vi"], mods="length", scale="length", data=bd, na="error")
    assert e.value.column == "length"


# -- CLI --------------------------------------------------------------------------------------------

def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_freq_scale_json_matches_metafor(capsys, tmp_path):
    case = next(c for c in CASES if c["name"] == "mp_guided_ML")
    path = tmp_path / "guided.csv"
    _frame("metapsy").to_csv(path, index=False)
    code, out, err = run_cli(capsys, "freq", path, "--mods", "guided", "--scale", "guided", "--method", "ML",
                             "--json")
    assert code == 0, err
    got = json.loads(out)
    sc = got["scale_coefficients"]
    assert list(sc) == ["intercept", "guided"]
    _close([sc[n]["estimate"] for n in sc], case["alpha"])
    _close([sc[n]["se"] for n in sc], case["se_alpha"])
    _close([sc[n]["zval"] for n in sc], case["zval_alpha"])
    _close([sc[n]["pval"] for n in sc], case["pval_alpha"])
    _close(got["LRT"], case["LRT"])


@pytest.mark.parametrize("argv, needle", [
    (["--scale", "control", "--cluster", "study_id"], "--cluster"),
    (["--scale", "control", "--method", "DL"], "REML or ML"),
])
def test_cli_scale_refusals_are_one_line(capsys, argv, needle):
    code, out, err = run_cli(capsys, "freq", METAPSY, *argv)
    assert code == 2 and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1


# -- Bayesian: exact engine (2-D quadrature) ------------------------------------------------------

from bayes_se.exact_scale import (  # noqa: E402
    HeteroscedasticNormalModel,
    binary_scale_column,
    exact_scale_posterior,
)

EXACT_RTOL = 1e-5  # the exact engine against an independent brute-force quadrature
PRIORS = dict(beta_mean=0.0, beta_sd=1.0, alpha_mean=(-1.5, 0.0), alpha_sd=(1.0, 0.5))


def _small_guided(k=16):
    frame = _frame("metapsy").iloc[:k]
    d = frame["guided"].to_numpy()
    assert 0 < d.sum() < k
    X = np.column_stack([np.ones(k), d])
    return frame["yi"].to_numpy(), frame["vi"].to_numpy(), d, X


def _brute_force(yi, vi, d, X, n=150):
    """Independent check: Gauss-Legendre in (alpha_0, alpha_1) (not the engine's (log tau_0,
    log tau_1) lattice), the likelihood from the dense k x k covariance V + T + X S X' (not the
    Woodbury form), E[beta | tau, y] from the same dense matrix."""
    from scipy import special as sp, stats as st

    k, p = X.shape
    m, s2 = np.zeros(p), np.ones(p) * PRIORS["beta_sd"] ** 2
    (am0, am1), (as0, as1) = PRIORS["alpha_mean"], PRIORS["alpha_sd"]
    r = yi - X @ m

    def evaluate(a0, a1):
        tau2 = np.exp(2 * (a0[:, None] + a1[:, None] * d[None, :]))
        S = np.diag(vi)[None] + tau2[:, :, None] * np.eye(k)[None] + (X * s2) @ X.T
        L = np.linalg.cholesky(S)
        z = np.linalg.solve(L, np.broadcast_to(r, (len(a0), k))[..., None])[..., 0]
        ll = -0.5 * (k * np.log(2 * np.pi) + 2 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(1) + (z**2).sum(1))
        lp = st.norm.logpdf(a0, am0, as0) + st.norm.logpdf(a1, am1, as1)
        Sinv_r = np.linalg.solve(S, np.broadcast_to(r, (len(a0), k))[..., None])[..., 0]
        Eb = m + (Sinv_r @ X) * s2
        return ll + lp, Eb

    # where the mass is: a coarse scan of the prior's +-9 sd box
    g0, g1 = np.linspace(am0 - 9 * as0, am0 + 9 * as0, 121), np.linspace(am1 - 9 * as1, am1 + 9 * as1, 121)
    A0, A1 = np.meshgrid(g0, g1, indexing="ij")
    lp, _ = evaluate(A0.ravel(), A1.ravel())
    keep = (lp > lp.max() - 42).reshape(A0.shape)
    i0, i1 = np.flatnonzero(keep.any(1)), np.flatnonzero(keep.any(0))
    box = (g0[max(i0[0] - 1, 0)], g0[min(i0[-1] + 1, 120)], g1[max(i1[0] - 1, 0)], g1[min(i1[-1] + 1, 120)])
    x, w = sp.roots_legendre(n)
    a0 = (box[0] + box[1]) / 2 + (box[1] - box[0]) / 2 * x
    a1 = (box[2] + box[3]) / 2 + (box[3] - box[2]) / 2 * x
    W = np.outer(w * (box[1] - box[0]) / 2, w * (box[3] - box[2]) / 2).ravel()
    A0, A1 = np.meshgrid(a0, a1, indexing="ij")
    lp, Eb = evaluate(A0.ravel(), A1.ravel())
    log_z = sp.logsumexp(lp, b=W)
    post = W * np.exp(lp - log_z)
    out = {"log_z": log_z}
    for name, values in (("alpha[intercept]", A0.ravel()), ("alpha[guided]", A1.ravel()),
                         ("tau[guided=0]", np.exp(A0.ravel())), ("tau[guided=1]", np.exp(A0.ravel() + A1.ravel()))):
        mean = post @ values
        out[name] = (mean, np.sqrt(post @ (values - mean) ** 2))
    for j, name in enumerate(["beta[intercept]", "beta[guided]"]):
        out[name] = (post @ Eb[:, j], None)
    # BF01 of alpha_1 = 0 (Savage-Dickey): the posterior density of alpha_1 at 0, by 1-D quadrature
    lp0, _ = evaluate(a0, np.zeros(n))
    dens0 = np.sum(w * (box[1] - box[0]) / 2 * np.exp(lp0 - log_z))
    out["bf01"] = dens0 / st.norm.pdf(0.0, am1, as1)
    return out


def test_exact_scale_matches_an_independent_brute_force_quadrature():
    yi, vi, d, X = _small_guided()
    post = exact_scale_posterior(yi, vi, d, X=X, coef_names=["intercept", "guided"], scale_name="guided", **PRIORS)
    ref = _brute_force(yi, vi, d, X)
    assert post.log_marginal_likelihood == pytest.approx(ref["log_z"], rel=EXACT_RTOL)
    for name in ("alpha[intercept]", "alpha[guided]", "tau[guided=0]", "tau[guided=1]"):
        mean, sd = ref[name]
        assert post.mean(name) == pytest.approx(mean, rel=EXACT_RTOL, abs=1e-8), name
        assert post.sd(name) == pytest.approx(sd, rel=EXACT_RTOL), name
    for name in ("beta[intercept]", "beta[guided]"):
        assert post.mean(name) == pytest.approx(ref[name][0], rel=EXACT_RTOL, abs=1e-8), name
    assert post.bayes_factor_equal_tau() == pytest.approx(ref["bf01"], rel=EXACT_RTOL)


def test_exact_scale_quantiles_invert_the_cdf_and_match_the_draws():
    yi, vi, d, X = _small_guided()
    post = exact_scale_posterior(yi, vi, d, X=X, coef_names=["intercept", "guided"], scale_name="guided", **PRIORS)
    for name in post.names():
        for q in (0.025, 0.5, 0.975):
            assert post.cdf(name, post.quantile(name, q)) == pytest.approx(q, abs=1e-9), name
    draws = post.draws(40_000, np.random.default_rng(1))
    # draws from the quadrature's piecewise-constant density: means within 5 Monte Carlo SEs
    for j, name in enumerate(["alpha[intercept]", "alpha[guided]"]):
        x = draws["alpha"][:, j]
        assert abs(x.mean() - post.mean(name)) < 5 * x.std() / np.sqrt(x.size), name
    b = draws["beta"][:, 1]
    assert abs(b.mean() - post.mean("beta[guided]")) < 5 * b.std() / np.sqrt(b.size)


def test_heteroscedastic_model_with_equal_variances_is_the_one_tau_model():
    """The conjugate step with t_i = tau^2 for all i equals bayes_se.exact's one-tau posterior."""
    from bayes_se.exact import exact_posterior

    yi, vi, d, X = _small_guided()
    model = HeteroscedasticNormalModel(yi, vi, X, np.zeros(2), np.ones(2))
    t = np.full((1, len(yi)), 0.09)
    ll, b, Ainv = model.conditional(t)
    S = np.diag(vi + 0.09) + X @ X.T
    from scipy import stats as st

    assert ll[0] == pytest.approx(st.multivariate_normal(np.zeros(len(yi)), S).logpdf(yi), rel=1e-12)
    ex = exact_posterior(yi, vi, X=X, coef_names=["intercept", "guided"], beta_mean=0.0, beta_sd=1.0)
    b_ex = ex.conditional("beta[guided]", np.array([0.3]))
    assert b[0, 1] == pytest.approx(float(np.ravel(b_ex[0])[0]), rel=1e-10)
    assert np.sqrt(Ainv[0, 1, 1]) == pytest.approx(float(np.ravel(b_ex[1])[0]), rel=1e-10)


def test_exact_engine_needs_one_binary_scale_moderator():
    Z = np.column_stack([np.ones(4), [0.5, 1, 2, 3]])
    with pytest.raises(SpecError) as e:
        binary_scale_column(Z, ["intercept", "year"])
    assert e.value.key == "sampler.engine"
    with pytest.raises(SpecError):
        binary_scale_column(np.column_stack([np.ones(4), [0, 1, 0, 1], [1, 0, 0, 1]]), ["intercept", "a", "b"])


# -- Bayesian: spec, priors, MCMC -----------------------------------------------------------------

from bayes_se.spec import load_spec  # noqa: E402

GUIDED_SPEC = """
[model]
type = "meta_regression"
mods = "guided"
scale = "guided"
[priors]
"alpha[guided]" = "normal(0, 0.5)"
"""


def test_spec_scale_key_round_trips_and_is_checked():
    spec = load_spec(GUIDED_SPEC)
    assert spec.model.scale == "guided"
    assert load_spec(spec.to_toml()) == spec
    assert "scale" not in load_spec("[model]\n").to_toml()  # left out: one tau
    bad = {
        '[model]\nscale = "a $ b"\n': "model.scale",
        '[model]\nscale = "yi"\n': "model.scale",
        '[model]\nscale = "g"\nsubgroup_tau = "g"\n': "model.scale",
        '[model]\nscale = "g"\neffects = "student_t"\n': "model.scale",
        '[model]\nscale = "g"\n[priors]\n"alpha[h]" = "normal(0, 1)"\n': "priors.alpha[h]",
        '[priors]\nalpha = "normal(0, 1)"\n': "priors.alpha",
        '[model]\nscale = "g"\n[priors]\nalpha = "half_normal(1)"\n': "priors.alpha",
        '[model]\nscale = "g"\n[priors]\nalpha = "student_t(3, 0, 1)"\n[sampler]\nengine = "exact"\n': "priors.alpha",
    }
    for text, key in bad.items():
        with pytest.raises(SpecError) as e:
            load_spec(text)
        assert e.value.key == key, text


def test_scale_priors_defaults_and_overrides():
    from bayes_se import defaults
    from bayes_se.spec import scale_priors
    from bayes_se.priors import prior_for

    got = scale_priors({}, ["intercept", "guided", "year"])
    want = [prior_for("alpha[intercept]", defaults.SCALE_PRIORS["alpha[intercept]"])] + \
        [prior_for("alpha", defaults.SCALE_PRIORS["alpha"])] * 2
    assert [(p.family, p.params) for p in got] == [(p.family, p.params) for p in want]
    given = {"alpha": prior_for("alpha", "normal(0, 2)"), "alpha[year]": prior_for("alpha[year]", "normal(0, 0.1)")}
    got = scale_priors(given, ["intercept", "guided", "year"])
    assert got[1].params["sigma"] == 2 and got[2].params["sigma"] == 0.1 and got[0].params["mu"] == -1.5
    with pytest.raises(SpecError) as e:
        scale_priors({"alpha[nope]": given["alpha"]}, ["intercept", "guided"])
    assert e.value.key == "priors.alpha[nope]"


def test_api_exact_engine_fits_the_binary_scale_model(tmp_path):
    from bayes_se.api import fit

    frame = _frame("metapsy").iloc[:30]
    path = tmp_path / "g.csv"
    frame.to_csv(path, index=False)
    res = fit(path, GUIDED_SPEC + "[sampler]\nengine = \"exact\"\n")
    table = res.summary()
    assert list(table.index) == ["beta[intercept]", "beta[guided]", "alpha[intercept]", "alpha[guided]",
                                 "tau[guided=0]", "tau[guided=1]", "pred"] + [f"theta[{s}]" for s in frame["study"]]
    d = frame["guided"].to_numpy()
    post = exact_scale_posterior(frame["yi"], frame["vi"], d, X=np.column_stack([np.ones(30), d]),
                                 coef_names=["intercept", "guided"], scale_name="guided", **PRIORS)
    assert table.loc["alpha[guided]", "mean"] == pytest.approx(post.mean("alpha[guided]"), rel=1e-12)
    out = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert out["bayes_factors"]["equal_tau"] > 0 and math.isfinite(out["log_marginal_likelihood"])
    from bayes_se.api import load_fit

    back = load_fit(res.to_netcdf(tmp_path / "fit.nc"))  # re-solved from the stored data and priors
    pd.testing.assert_frame_equal(back.summary(), table)
    with pytest.raises(SpecError) as e:  # a continuous scale moderator: MCMC only
        fit(path, GUIDED_SPEC.replace('scale = "guided"', 'scale = "year"').replace('"alpha[guided]"', "alpha")
            + "[sampler]\nengine = \"exact\"\n")
    assert e.value.key == "sampler.engine"


def test_builder_postprocess_names_studies_and_uses_each_tau():
    """The built model's post-processing on a hand-made posterior (no sampling): tau_i = exp(z_i' alpha),
    the marginal log-likelihood N(y_i; x_i' beta, v_i + tau_i^2), coordinates by study label."""
    import xarray as xr
    from scipy import stats as st

    from bayes_se.builders.location_scale import build_location_scale

    yi, vi, d, X = _small_guided(8)
    Z = X.copy()
    meta = build_location_scale(yi, vi, Z=Z, scale_names=["intercept", "guided"], X=X,
                                coef_names=["intercept", "guided"], study=[f"s{i}" for i in range(8)])
    assert meta.model["alpha"].owner is not None and set(meta.model.coords["scale_coef"]) == {"intercept", "guided"}
    rng = np.random.default_rng(0)
    beta = rng.normal(size=(2, 5, 2)) * 0.1
    alpha = np.stack([rng.normal(-1, 0.1, (2, 5)), rng.normal(0, 0.3, (2, 5))], axis=-1)
    post = xr.Dataset({"beta": (("chain", "draw", "coef"), beta), "alpha": (("chain", "draw", "scale_coef"), alpha)},
                      coords={"chain": [0, 1], "draw": np.arange(5), "coef": ["intercept", "guided"],
                              "scale_coef": ["intercept", "guided"]})
    new, ll, y_rep = meta.exact_draws(post, np.random.default_rng(1))
    tau = np.exp(alpha @ Z.T)
    want = st.norm.logpdf(yi, beta @ X.T, np.sqrt(vi + tau**2))
    np.testing.assert_allclose(ll.values, want, rtol=1e-12)
    assert list(ll["study"].values) == [f"s{i}" for i in range(8)]
    assert new["theta"].shape == (2, 5, 8) and new["pred"].shape == (2, 5) and y_rep.shape == (2, 5, 8)


@pytest.mark.slow
@pytest.mark.mcmc
def test_mcmc_matches_the_exact_engine_within_monte_carlo_error(tmp_path):
    import arviz as az

    from bayes_se.api import fit

    frame = _frame("metapsy").iloc[:30]
    path = tmp_path / "g.csv"
    frame.to_csv(path, index=False)
    res = fit(path, GUIDED_SPEC + "[sampler]\nchains = 2\ndraws = 1000\ntune = 500\nseed = 3\n")
    idata = res.idata
    assert {"posterior", "prior", "posterior_predictive", "log_likelihood", "observed_data"} <= set(idata.groups())
    assert list(idata.posterior["tau"]["study"].values) == [str(s) for s in frame["study"]]
    d = frame["guided"].to_numpy()
    post = exact_scale_posterior(frame["yi"], frame["vi"], d, X=np.column_stack([np.ones(30), d]),
                                 coef_names=["intercept", "guided"], scale_name="guided", **PRIORS)
    mcse = az.mcse(idata, var_names=["alpha", "beta"])
    for j, name in enumerate(["intercept", "guided"]):
        a = float(idata.posterior["alpha"].sel(scale_coef=name).mean())
        assert abs(a - post.mean(f"alpha[{name}]")) < 4 * float(mcse["alpha"].sel(scale_coef=name)), name
        b = float(idata.posterior["beta"].sel(coef=name).mean())
        assert abs(b - post.mean(f"beta[{name}]")) < 4 * float(mcse["beta"].sel(coef=name)), name


def test_sensitivity_refuses_location_scale_in_python_and_cli(capsys, tmp_path):
    """Sensitivity does not refit location-scale models: the Python function refuses (it never drops
    the scale part) and the CLI prints the same one line."""
    from bayes_se.prior_sensitivity import SCALE_REFUSAL, sensitivity

    with pytest.raises(SpecError) as e:
        sensitivity(_frame("metapsy"), mods="guided", scale="guided")
    assert e.value.key == "model.scale" and SCALE_REFUSAL in str(e.value)
    spec = tmp_path / "ls.toml"
    spec.write_text(GUIDED_SPEC)
    code, out, err = run_cli(capsys, "sensitivity", spec, "--data", METAPSY)
    assert code == 2 and SCALE_REFUSAL in err and len(err.strip().splitlines()) == 1


# -- the exact engine's study effects, draws and plots (fits like any other) ----------------------

@pytest.fixture(scope="module")
def exact_guided_fit(tmp_path_factory):
    from bayes_se.api import fit

    frame = _frame("metapsy").iloc[:16]
    path = tmp_path_factory.mktemp("ls") / "g.csv"
    frame.to_csv(path, index=False)
    return fit(path, GUIDED_SPEC + "[sampler]\nengine = \"exact\"\n")


def test_exact_scale_study_effects_match_a_brute_force_mixture(exact_guided_fit):
    """theta_i and pred: normal mixtures over the nodes, against an independent Gauss-Legendre
    quadrature in (alpha_0, alpha_1) with theta_i's conditional moments from the dense covariance."""
    from scipy import special as sp, stats as st

    res = exact_guided_fit
    post = res.posterior
    yi, vi, d, X = post.y, post.v, post.d, post.X
    table = res.summary(theta=True)
    assert "pred" in table.index and f"theta[{post.study[0]}]" in table.index
    k = yi.size
    (am0, as0), (am1, as1) = post.alpha_prior
    n = 120
    x, w = sp.roots_legendre(n)
    lo0, hi0, lo1, hi1 = am0 - 8 * as0, am0 + 8 * as0, am1 - 8 * as1, am1 + 8 * as1
    a0, a1 = (lo0 + hi0) / 2 + (hi0 - lo0) / 2 * x, (lo1 + hi1) / 2 + (hi1 - lo1) / 2 * x
    W = np.outer(w * (hi0 - lo0) / 2, w * (hi1 - lo1) / 2).ravel()
    A0, A1 = (g.ravel() for g in np.meshgrid(a0, a1, indexing="ij"))
    tau2 = np.exp(2 * (A0[:, None] + A1[:, None] * d[None, :]))
    S = np.diag(vi)[None] + tau2[:, :, None] * np.eye(k)[None] + X @ X.T  # beta ~ N(0, I)
    L = np.linalg.cholesky(S)
    z = np.linalg.solve(L, np.broadcast_to(yi, (len(A0), k))[..., None])[..., 0]
    lp = (-0.5 * (2 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(1) + (z**2).sum(1))
          + st.norm.logpdf(A0, am0, as0) + st.norm.logpdf(A1, am1, as1))
    pw = W * np.exp(lp - lp.max())
    pw /= pw.sum()
    # theta = T (T + V)^-1 ... : Cov(theta, y) = T + X X', so E[theta | y, tau] = (T + XX') S^-1 y,
    # Var = T + XX' - (T + XX') S^-1 (T + XX')
    C = tau2[:, :, None] * np.eye(k)[None] + (X @ X.T)[None]
    Sinv_y = np.linalg.solve(S, np.broadcast_to(yi, (len(A0), k))[..., None])[..., 0]
    m = np.einsum("gij,gj->gi", C, Sinv_y)
    var = np.diagonal(C - C @ np.linalg.solve(S, C), axis1=1, axis2=2)
    for i in (0, 3, k - 1):
        mean = pw @ m[:, i]
        sd = math.sqrt(pw @ (var[:, i] + m[:, i] ** 2) - mean**2)
        row = table.loc[f"theta[{post.study[i]}]"]
        assert row["mean"] == pytest.approx(mean, rel=EXACT_RTOL) and row["sd"] == pytest.approx(sd, rel=EXACT_RTOL)
        q = [sp.ndtr((row[c] - m[:, i]) / np.sqrt(var[:, i])) @ pw for c in ("q2.5", "q50", "q97.5")]
        np.testing.assert_allclose(q, [0.025, 0.5, 0.975], atol=1e-6)
    # pred: x0' beta + tau_0 z with x0 = (1, 0): mean E[beta_0], var Var(beta_0) + E[tau_0^2]
    b0 = table.loc["beta[intercept]"]
    assert table.loc["pred", "mean"] == pytest.approx(b0["mean"], rel=1e-9)
    e_tau2 = pw @ np.exp(2 * A0)
    assert table.loc["pred", "sd"] == pytest.approx(math.sqrt(b0["sd"] ** 2 + e_tau2), rel=EXACT_RTOL)
    p = res.prob_greater(0.0)
    assert "pred" in p.index and 0 < p["pred"] < 1


def test_exact_scale_draws_follow_the_exact_marginals(exact_guided_fit):
    """The iid draws against the exact cdfs (Kolmogorov-Smirnov) and means within 5 Monte Carlo SEs."""
    from scipy import stats as st

    post = exact_guided_fit.posterior
    assert post.interpolation_error() < 1e-3  # nats, at the cell centres
    dr = post.draws(20_000, np.random.default_rng(11))
    for j, name in enumerate(["alpha[intercept]", "alpha[guided]"]):
        x = dr["alpha"][:, j]
        assert st.kstest(x, lambda t: post.cdf(name, t)).pvalue > 1e-3, name
        assert abs(x.mean() - post.mean(name)) < 5 * x.std() / math.sqrt(x.size), name
    for i in (0, 7):
        name = f"theta[{post.study[i]}]"
        assert st.kstest(dr["theta"][:4000, i], lambda t: post.effect_cdf(name, t)).pvalue > 1e-3, name
    assert st.kstest(dr["pred"][:4000], lambda t: post.effect_cdf("pred", t)).pvalue > 1e-3
    assert "interpolant" in exact_guided_fit.print_summary()


def test_exact_scale_fit_has_every_group_and_plots(exact_guided_fit, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from bayes_se.plots import density_table, forest_table

    res = exact_guided_fit
    assert {"posterior", "prior", "posterior_predictive", "log_likelihood", "observed_data"} <= set(res.idata.groups())
    ft = forest_table(res)
    studies = ft[ft["row"] == "study"]
    d = res.posterior.d
    tau = res.idata.posterior["tau"].median(("chain", "draw")).values  # by scale level
    np.testing.assert_allclose(studies["tau"], tau[d], rtol=0.02)
    assert list(ft.loc[ft["row"] == "prediction", "label"]) == ["Prediction (guided=0)", "Prediction (guided=1)"]
    dt = density_table(res)
    assert set(dt["parameter"]) == {"beta[intercept]", "beta[guided]", "alpha[intercept]", "alpha[guided]"}
    assert set(dt.loc[dt["parameter"] == "alpha[guided]", "source"]) == {"prior", "posterior"}
    post = dt[(dt["parameter"] == "alpha[guided]") & (dt["source"] == "posterior")]
    assert np.trapezoid(post["density"], post["x"]) == pytest.approx(1.0, abs=1e-3)
    for method in ("plot_forest", "plot_densities", "plot_ppc", "plot_loo_pit", "plot_pareto_k"):
        getattr(res, method)().savefig(tmp_path / f"{method}.png")
    back = __import__("bayes_se.api", fromlist=["load_fit"]).load_fit(res.to_netcdf(tmp_path / "fit.nc"))
    pd.testing.assert_frame_equal(back.summary(theta=True), res.summary(theta=True))


def test_report_covers_an_exact_location_scale_fit(capsys, tmp_path):
    frame = _frame("metapsy").iloc[:16]
    data = tmp_path / "g.csv"
    frame.to_csv(data, index=False)
    spec = tmp_path / "ls.toml"
    spec.write_text(GUIDED_SPEC + "[sampler]\nengine = \"exact\"\n")
    code, out, err = run_cli(capsys, "report", spec, "--data", data, "--out", tmp_path / "rep")
    assert code == 0, err
    html = (tmp_path / "rep" / "report.html").read_text()
    md = (tmp_path / "rep" / "report.md").read_text()
    key = pd.read_csv(tmp_path / "rep" / "tables" / "key_results.csv", index_col=0)
    assert {"scale coefficient intercept (log tau)", "scale coefficient guided (log tau)"} <= set(key.index)
    for text in ("location-scale model (Viechtbauer", "Prior sensitivity is not run for location-scale models",
                 "rma with scale=", "location-scale meta-analysis", "2-D quadrature"):
        assert text in html and text in md, text
    cmp = pd.read_csv(tmp_path / "rep" / "tables" / "comparison.csv", index_col=0)
    freq = rma(frame["yi"], frame["vi"], mods="guided", scale="guided", data=frame, method="REML")
    assert cmp.loc["alpha[guided]", "REML_estimate"] == pytest.approx(freq.alpha[1] / 2, rel=1e-12)
    assert cmp.loc["beta[guided]", "REML_estimate"] == pytest.approx(freq.beta[1], rel=1e-12)
    assert "Figure skipped" not in html


@pytest.mark.mcmc
def test_mcmc_location_scale_round_trips_through_netcdf_and_plots(tmp_path):
    """to_netcdf -> load_fit rebuilds the scale design (same summary, same forest), and the forest and
    densities draw each study's own tau_i and the alpha rows."""
    import matplotlib

    matplotlib.use("Agg")
    from bayes_se.api import fit_location_scale, load_fit
    from bayes_se.builders.location_scale import LocationScaleModel
    from bayes_se.plots import density_table, forest_table
    from bayes_se.priors import prior_for

    yi, vi, d, X = _small_guided(12)
    res = fit_location_scale(yi, vi, Z=X, scale_names=["intercept", "guided"], X=X, coef_names=["intercept", "guided"],
                             study=[f"s{i}" for i in range(12)], seed=7, draws=150, tune=150, chains=2,
                             priors={"beta": prior_for("beta", "normal(0, 1)")})
    back = load_fit(res.to_netcdf(tmp_path / "ls.nc"))
    assert isinstance(back.meta, LocationScaleModel)
    np.testing.assert_array_equal(back.meta.Z, X)
    assert back.meta.scale_names == ["intercept", "guided"]
    pd.testing.assert_frame_equal(back.summary(), res.summary())
    ft = forest_table(back)
    pd.testing.assert_frame_equal(ft, forest_table(res))
    tau = np.exp(np.asarray(res.idata.posterior["alpha"]).reshape(-1, 2) @ X.T)
    np.testing.assert_allclose(ft.loc[ft["row"] == "study", "tau"], np.median(tau, axis=0), rtol=1e-12)
    weights = 1 / (vi + np.median(tau, axis=0) ** 2)
    np.testing.assert_allclose(ft.loc[ft["row"] == "study", "weight"], 100 * weights / weights.sum(), rtol=1e-12)
    assert list(ft.loc[ft["row"] == "prediction", "label"]) == ["Prediction (guided=0)", "Prediction (guided=1)"]
    assert set(density_table(back)["parameter"]) == {"beta[intercept]", "beta[guided]", "alpha[intercept]",
                                                     "alpha[guided]"}
    back.plot_forest().savefig(tmp_path / "forest.png")
    back.plot_densities().savefig(tmp_path / "densities.png")


def test_packaged_spec_and_cli_scale_flag_fit_the_exact_engine(capsys, tmp_path):
    """models/location_scale.toml fits the bundled data (with a 0/1 guided column) by the exact
    engine; `bayes-se fit --scale` turns the guidance_moderator spec into the same model."""
    frame = _frame("metapsy").iloc[:16]
    data = tmp_path / "g.csv"
    frame.to_csv(data, index=False)
    code, out, err = run_cli(capsys, "fit", "location_scale", "--data", data, "--json")
    assert code == 0, err
    packaged = json.loads(out)
    assert packaged["engine"] == "exact_scale" and "alpha[guided]" in packaged["parameters"]
    code, out, err = run_cli(capsys, "fit", "guidance_moderator", "--data", data, "--json", "--scale", "guided",
                             "--engine", "exact", "--prior", "alpha[guided]=normal(0, 0.5)")
    assert code == 0, err
    flagged = json.loads(out)
    for name in ("beta[guided]", "alpha[intercept]", "alpha[guided]", "pred"):
        assert flagged["parameters"][name]["mean"] == pytest.approx(packaged["parameters"][name]["mean"], rel=1e-9)
    code, out, err = run_cli(capsys, "fit", "guidance_moderator", "--data", data, "--scale", "a $ b")
    assert code == 2 and "model.scale" in err and len(err.strip().splitlines()) == 1
