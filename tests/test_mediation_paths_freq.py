"""paths_rma, the frequentist twin of the path-based mediation model, against metafor 3.8-1.

Reference: tests/reference/mediation_paths/ (make_reference.R: rma.mv(yi, V, mods = ~ path - 1,
random = ~ path | study, struct = "UN"), REML and ML, on two simulated datasets; the delta-method
SE of a*b from the fitted vcov; the average indirect effect's SE from metafor's cvvc = "varcov";
rma REML of c_prime). The Monte Carlo interval is checked against the exact quantiles of the
product of two correlated normals (one-dimensional quadrature).
"""

from __future__ import annotations

import json
import math
import pathlib
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats

from bayes_se.errors import DataError, SpecError
from bayes_se.frequentist.mediation_paths import EFFECT_COLUMNS, PathsRmaResult, paths_rma

REF = pathlib.Path(__file__).parent / "reference" / "mediation_paths"
REFERENCE = json.loads((REF / "mediation_paths.json").read_text())
ITER = 1e-5  # iterative fits (metafor's optimizer vs our Newton polish)


def load(name):
    """(est (k, 3), cov (k, 3, 3), study) of a reference CSV, NaN where a path is not reported."""
    d = pd.read_csv(REF / f"{name}.csv")
    k = len(d)
    est = d[["a", "b", "c_prime"]].to_numpy(float)
    cov = np.full((k, 3, 3), np.nan)
    for j, se in enumerate(("se_a", "se_b", "se_c_prime")):
        cov[:, j, j] = d[se].to_numpy(float) ** 2
    cov[:, 0, 1] = cov[:, 1, 0] = d["cov_ab"].to_numpy(float)
    return est, cov, d["study"].tolist()


@pytest.fixture(scope="module")
def fits():
    out = {}
    for name in ("paths_k20", "paths_k25"):
        est, cov, study = load(name)
        for method in ("REML", "ML"):
            out[name, method] = paths_rma(est, cov, study, method=method, n_mc=20_000, seed=3)
    return out


CASES = [(n, m) for n in ("paths_k20", "paths_k25") for m in ("REML", "ML")]


@pytest.mark.parametrize("name,method", CASES)
def test_bivariate_fit_matches_metafor(fits, name, method):
    res, ref = fits[name, method], REFERENCE["datasets"][name][method]
    assert ref["coef_names"] == ["patha", "pathb"]
    f = res.fit
    assert f.k == ref["k"] and f.QE_df == ref["QE_df"]
    np.testing.assert_allclose(f.beta, ref["beta"], rtol=ITER)
    np.testing.assert_allclose(f.se, ref["se"], rtol=ITER)
    np.testing.assert_allclose(f.vcov, ref["vcov"], rtol=ITER)
    np.testing.assert_allclose(f.tau2, ref["tau2"], rtol=ITER)
    np.testing.assert_allclose(res.rho_ab, ref["rho"], rtol=ITER)
    np.testing.assert_allclose(res.logLik, ref["logLik"], rtol=1e-9)
    np.testing.assert_allclose([f.QE, f.QM], [ref["QE"], ref["QM"]], rtol=ITER)
    np.testing.assert_allclose([f.QE_p, f.QM_p], [ref["QE_p"], ref["QM_p"]], rtol=1e-4)
    table = res.coef_table()
    np.testing.assert_allclose(table.loc[["a", "b"], "stat"], ref["zval"], rtol=ITER)
    np.testing.assert_allclose(table.loc[["a", "b"], "pval"], ref["pval"], rtol=1e-4)
    np.testing.assert_allclose(table.loc[["a", "b"], "ci_lower"], ref["ci_lower"], rtol=ITER)
    np.testing.assert_allclose(table.loc[["a", "b"], "ci_upper"], ref["ci_upper"], rtol=ITER)
    assert res.tau_a == pytest.approx(math.sqrt(ref["tau2"][0]), rel=ITER)
    assert res.tau_b == pytest.approx(math.sqrt(ref["tau2"][1]), rel=ITER)


@pytest.mark.parametrize("name,method", CASES)
def test_indirect_delta_method(fits, name, method):
    res, ref = fits[name, method], REFERENCE["datasets"][name][method]
    a, b = res.fit.beta
    V = res.vcov
    row = res.effects.loc["indirect"]
    se = math.sqrt(b * b * V[0, 0] + a * a * V[1, 1] + 2 * a * b * V[0, 1])
    crit = stats.norm.ppf(0.975)
    # the delta method given the fit: closed form
    assert row["estimate"] == pytest.approx(a * b, rel=1e-12)
    assert row["se"] == pytest.approx(se, rel=1e-6)
    assert row["ci_lower"] == pytest.approx(a * b - crit * se, rel=1e-6)
    assert row["ci_upper"] == pytest.approx(a * b + crit * se, rel=1e-6)
    assert row["pval"] == pytest.approx(2 * stats.norm.sf(a * b / se), rel=1e-6)
    # and against R's numbers from metafor's fit
    for key in ("estimate", "se", "ci_lower", "ci_upper"):
        assert row[key] == pytest.approx(ref["indirect"][key], rel=ITER), key


@pytest.mark.parametrize("name,method", CASES)
def test_average_indirect_effect(fits, name, method):
    res, ref = fits[name, method], REFERENCE["datasets"][name][method]["indirect_avg"]
    row = res.effects.loc["indirect_avg"]
    a, b = res.fit.beta
    sigma_ab = res.rho_ab * res.tau_a * res.tau_b
    assert sigma_ab == pytest.approx(res.G[0, 1], rel=1e-12)
    assert row["estimate"] == pytest.approx(a * b + sigma_ab, rel=1e-12)
    assert row["estimate"] == pytest.approx(ref["estimate"], rel=ITER)
    # var(sigma_ab): our analytic observed information against metafor's numDeriv Hessian
    assert res.var_sigma_ab == pytest.approx(ref["var_sigma_ab"], rel=1e-5)
    vvc = np.array(REFERENCE["datasets"][name][method]["vvc"])
    assert REFERENCE["datasets"][name][method]["vvc_names"] == ["tau^2.1", "cov", "tau^2.2"]  # = vech(G)
    np.testing.assert_allclose(res.vcov_G, vvc, rtol=1e-5)
    se_ind = res.effects.loc["indirect", "se"]
    assert row["se"] == pytest.approx(math.sqrt(se_ind**2 + res.var_sigma_ab), rel=1e-12)
    assert row["se"] == pytest.approx(ref["se"], rel=1e-5)


@pytest.mark.parametrize("name", ["paths_k20", "paths_k25"])
def test_c_prime_and_total(fits, name):
    res, ref = fits[name, "REML"], REFERENCE["datasets"][name]["c_prime"]
    row = res.effects.loc["c_prime"]
    assert res.c_prime_fit.k == ref["k"] == res.n_studies["c_prime"]
    for key in ("estimate", "se", "ci_lower", "ci_upper"):
        assert row[key] == pytest.approx(ref[key], rel=1e-6), key
    assert row["stat"] == pytest.approx(ref["zval"], rel=1e-6)
    assert row["pval"] == pytest.approx(ref["pval"], rel=1e-5)
    assert res.c_prime_fit.tau2 == pytest.approx(ref["tau2"], rel=1e-6)
    total = res.effects.loc["total"]
    ind = res.effects.loc["indirect"]
    assert total["estimate"] == pytest.approx(row["estimate"] + ind["estimate"], rel=1e-12)
    assert total["se"] == pytest.approx(math.hypot(row["se"], ind["se"]), rel=1e-12)
    assert any("independent" in n for n in res.notes) and any("covariance with b" in n for n in res.notes)


def test_counts_and_layout(fits):
    res = fits["paths_k25", "REML"]
    assert res.n_studies == {"a": 23, "b": 20, "ab": 18, "c_prime": 20}
    assert res.k == 25 and res.fit.k == 43
    assert list(res.effects.columns) == list(EFFECT_COLUMNS)
    assert list(res.effects.index) == ["a", "b", "c_prime", "indirect", "indirect_avg", "total"]
    assert list(res.coef_table().index) == ["a", "b", "c_prime"]
    # prediction intervals of a and b: a +/- z sqrt(se^2 + tau^2)
    crit = stats.norm.ppf(0.975)
    a = res.effects.loc["a"]
    half = crit * math.sqrt(a["se"] ** 2 + res.tau_a**2)
    assert (a["pi_lower"], a["pi_upper"]) == pytest.approx((a["estimate"] - half, a["estimate"] + half), rel=1e-12)


def product_quantiles(mean, cov, probs):
    """Exact quantiles of x*y, (x, y) ~ N(mean, cov): P(xy <= t) by quadrature over x."""
    m0, m1 = mean
    s0 = math.sqrt(cov[0, 0])
    slope = cov[0, 1] / cov[0, 0]
    s1 = math.sqrt(cov[1, 1] - cov[0, 1] ** 2 / cov[0, 0])

    def cdf(t):
        def f(x):
            if x == 0:
                return stats.norm.pdf(x, m0, s0) * float(t >= 0)
            p = stats.norm.cdf((t / x - m1 - slope * (x - m0)) / s1)
            return stats.norm.pdf(x, m0, s0) * (p if x > 0 else 1 - p)
        lo, hi = m0 - 12 * s0, m0 + 12 * s0
        pts = [0.0] if lo < 0 < hi else None
        return integrate.quad(f, lo, hi, points=pts, limit=400, epsabs=1e-12, epsrel=1e-10)[0]

    spread = abs(m0 * m1) + 10 * (s0 * abs(m1) + math.sqrt(cov[1, 1]) * abs(m0) + s0 * math.sqrt(cov[1, 1]))
    out = []
    for p in probs:
        t = optimize.brentq(lambda t: cdf(t) - p, m0 * m1 - spread, m0 * m1 + spread, xtol=1e-12)
        h = 1e-4 * spread
        out.append((t, (cdf(t + h) - cdf(t - h)) / (2 * h)))
    return out


@pytest.fixture(scope="module")
def small_effect():
    """A weak, skewed indirect effect: k = 12 trials, a ~ 0.15, b ~ 0.10, se about 0.08."""
    rng = np.random.default_rng(2016)
    k = 12
    se = rng.uniform(0.06, 0.10, size=(k, 2))
    r = rng.uniform(-0.3, 0.3, size=k)
    cov = np.zeros((k, 2, 2))
    cov[:, 0, 0], cov[:, 1, 1] = se[:, 0] ** 2, se[:, 1] ** 2
    cov[:, 0, 1] = cov[:, 1, 0] = r * se[:, 0] * se[:, 1]
    true = np.array([0.15, 0.10]) + rng.normal(0, [0.05, 0.03], size=(k, 2))
    est = np.array([rng.multivariate_normal(true[i], cov[i]) for i in range(k)])
    return est, cov


def test_monte_carlo_interval_matches_exact_product_distribution(small_effect):
    est, cov = small_effect
    n = 100_000
    res = paths_rma(est, cov, n_mc=n, seed=11)
    row = res.effects.loc["indirect"]
    mean = np.asarray(res.fit.beta, float)
    probs = (0.025, 0.975)
    exact = product_quantiles(mean, res.vcov, probs)
    for (t, dens), p, got in zip(exact, probs, (row["mc_lower"], row["mc_upper"])):
        mc_se = math.sqrt(p * (1 - p) / n) / dens  # standard error of a sample quantile
        assert abs(got - t) < 4 * mc_se, (p, got, t, mc_se)
    # the product is skewed here: the exact interval is visibly not the symmetric delta interval
    (lo, _), (hi, _) = exact
    assert abs((hi - row["estimate"]) - (row["estimate"] - lo)) > 5 * 4 * max(
        math.sqrt(p * (1 - p) / n) / d for (_, d), p in zip(exact, probs))
    # new-trial prediction interval: the product under N((a, b), vcov + G)
    exact_pi = product_quantiles(mean, res.vcov + res.G, probs)
    for (t, dens), p, got in zip(exact_pi, probs, (row["pi_lower"], row["pi_upper"])):
        assert abs(got - t) < 4 * math.sqrt(p * (1 - p) / n) / dens


def test_monte_carlo_interval_close_to_delta_for_large_effect(fits):
    res = fits["paths_k20", "REML"]  # a/se and b/se about 13: the product is nearly normal
    row = res.effects.loc["indirect"]
    width = row["ci_upper"] - row["ci_lower"]
    assert abs(row["mc_lower"] - row["ci_lower"]) < 0.03 * width
    assert abs(row["mc_upper"] - row["ci_upper"]) < 0.03 * width
    assert row["mc_lower"] < row["estimate"] < row["mc_upper"]


def test_monte_carlo_reproducible_by_seed():
    est, cov, study = load("paths_k20")
    one = paths_rma(est, cov, study, n_mc=5000, seed=7).effects.loc["indirect"]
    two = paths_rma(est, cov, study, n_mc=5000, seed=7).effects.loc["indirect"]
    other = paths_rma(est, cov, study, n_mc=5000, seed=8).effects.loc["indirect"]
    cols = ["mc_lower", "mc_upper", "pi_lower", "pi_upper"]
    assert (one[cols] == two[cols]).all()
    assert (one[cols] != other[cols]).all()
    np.testing.assert_allclose(one[cols], other[cols], rtol=0.05)
    skipped = paths_rma(est, cov, study, n_mc=0).effects.loc["indirect"]
    assert skipped[cols].isna().all() and skipped["se"] == pytest.approx(one["se"], rel=1e-12)


def test_duck_typed_container_and_two_column_arrays():
    est, cov, study = load("paths_k25")
    obj = SimpleNamespace(study=np.array(study), est=est, cov=cov, n=None, source=None)
    a = paths_rma(obj, n_mc=1000)
    b = paths_rma(est, cov, study, n_mc=1000)
    pd.testing.assert_frame_equal(a.effects, b.effects)
    assert a.study == study
    two = paths_rma(est[:, :2], cov[:, :2, :2], study, n_mc=1000)
    assert "c_prime" not in two.effects.index and "total" not in two.effects.index
    np.testing.assert_allclose(two.effects.loc[["a", "b", "indirect", "indirect_avg"]],
                               b.effects.loc[["a", "b", "indirect", "indirect_avg"]], rtol=1e-12)
    assert two.n_studies["c_prime"] == 0 and two.c_prime_fit is None


def test_one_c_prime_is_not_pooled():
    est, cov, study = load("paths_k20")
    est = est.copy()
    est[1:, 2] = np.nan
    res = paths_rma(est, cov, study, n_mc=0)
    assert "c_prime" not in res.effects.index
    assert any("only 1 study reports c_prime" in n for n in res.notes)


def test_to_dict_and_summary(fits):
    res = fits["paths_k25", "REML"]
    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["model"] == "paths_rma"
    for key in ("model", "level", "coefficients", "vcov", "QM", "QM_df", "QM_p", "method", "k", "n_studies",
                "Q", "Q_df", "Q_p", "logLik", "tau2", "tau", "rho_ab", "G", "var_sigma_ab", "effects",
                "c_prime", "n_mc", "seed", "notes"):
        assert key in d, key
    assert set(d["coefficients"]) == {"a", "b", "c_prime"}
    assert set(d["coefficients"]["a"]) == {"estimate", "se", "stat", "pval", "ci_lower", "ci_upper"}
    assert d["effects"]["indirect"]["mc_lower"] == pytest.approx(res.effects.loc["indirect", "mc_lower"])
    assert d["effects"]["indirect_avg"]["mc_lower"] is None  # NaN becomes null
    assert d["tau"]["a"] == pytest.approx(res.tau_a)
    assert d["c_prime"]["model"] == "rma"
    s = res.summary()
    assert "k = 25 studies" in s and "indirect_avg" in s and "rho_ab" in s and "MC [" in s
    assert isinstance(res, PathsRmaResult) and repr(res) == s


def test_boundary_fit_has_no_average_se():
    # identical true paths and noise far smaller than the spread that REML would need: tau_a at 0
    rng = np.random.default_rng(5)
    k = 8
    est = np.column_stack([0.4 + rng.normal(0, 0.01, k), 0.3 + rng.normal(0, 0.2, k)])
    cov = np.zeros((k, 2, 2))
    cov[:, 0, 0], cov[:, 1, 1] = 0.1**2, 0.05**2
    res = paths_rma(est, cov, n_mc=0)
    assert np.linalg.eigvalsh(res.G)[0] < 1e-8
    assert math.isnan(res.var_sigma_ab) and math.isnan(res.effects.loc["indirect_avg", "se"])
    assert any("boundary" in n for n in res.notes)
    assert res.to_dict()["effects"]["indirect_avg"]["se"] is None
    assert np.isfinite(res.effects.loc["indirect", "se"])


# ------------------------------------------------------------------------------------------- errors
def _bad(mutate):
    est, cov, study = load("paths_k20")
    est, cov = est.copy(), cov.copy()
    mutate(est, cov)
    return est, cov, study


@pytest.mark.parametrize("mutate,row,column,text", [
    (lambda e, c: c.__setitem__((3, 0, 0), np.nan), 4, "se_a", "standard error is missing"),
    (lambda e, c: c.__setitem__((6, 1, 1), np.nan), 7, "se_b", "standard error is missing"),
    (lambda e, c: c.__setitem__((2, 1, 1), -0.01), 3, "se_b", "must be positive"),
    (lambda e, c: c.__setitem__((5, 2, 2), np.nan), 6, "se_c_prime", "standard error is missing"),
    (lambda e, c: (c.__setitem__((4, 0, 1), 1.0), c.__setitem__((4, 1, 0), 1.0)), 5, "cov_ab",
     "not positive definite"),
    (lambda e, c: c.__setitem__((4, 0, 1), 0.001), 5, "cov_ab", "not symmetric"),
    (lambda e, c: (c.__setitem__((8, 0, 1), np.nan), c.__setitem__((8, 1, 0), np.nan)), 9, "cov_ab",
     "covariance is missing"),
    (lambda e, c: e.__setitem__((1, 0), np.inf), 2, "a", "infinite"),
])
def test_bad_rows_name_row_and_column(mutate, row, column, text):
    est, cov, study = _bad(mutate)
    with pytest.raises(DataError, match=text) as info:
        paths_rma(est, cov, study)
    assert info.value.row == row and info.value.column == column
    assert study[row - 1] in str(info.value)


def test_too_few_studies_and_unidentified_models():
    est, cov, study = load("paths_k20")
    with pytest.raises(DataError, match="at least 2 studies") as info:
        paths_rma(est[:1], cov[:1], study[:1])
    assert info.value.column == "study"
    only_a = est.copy()
    only_a[1:, 1] = np.nan  # one study reports b
    with pytest.raises(DataError, match="1 studies report b") as info:
        paths_rma(only_a, cov, study)
    assert info.value.column == "b"
    split = est.copy()
    split[:10, 1] = np.nan
    split[10:, 0] = np.nan
    with pytest.raises(DataError, match="not identified"):
        paths_rma(split, cov, study)
    with pytest.raises(DataError, match="appears twice") as info:
        paths_rma(est, cov, study[:-1] + [study[0]])
    assert info.value.row == 20 and info.value.column == "study"


def test_bad_shapes_and_options():
    est, cov, study = load("paths_k20")
    with pytest.raises(DataError, match="required") as info:
        paths_rma(est)
    assert info.value.column == "cov"
    with pytest.raises(DataError, match="shape") as info:
        paths_rma(est, cov[:, :2, :2])
    assert info.value.column == "cov"
    with pytest.raises(DataError, match="shape"):
        paths_rma(est[:, 0], cov)
    with pytest.raises(DataError, match="labels"):
        paths_rma(est, cov, study[:5])
    with pytest.raises(SpecError) as info:
        paths_rma(est, cov, method="DL")
    assert info.value.key == "method"
    with pytest.raises(SpecError) as info:
        paths_rma(est, cov, level=95)
    assert info.value.key == "level"
    with pytest.raises(SpecError) as info:
        paths_rma(est, cov, n_mc=-1)
    assert info.value.key == "n_mc"


def test_top_level_name():
    import bayes_se

    assert bayes_se.paths_rma is paths_rma


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_cli_freq_paths_matches_metafor(capsys, method):
    """`bayes-se freq PATHS.csv --paths --json` reads the table and gives metafor's bivariate fit."""
    from bayes_se import cli

    assert cli.main(["freq", str(REF / "paths_k20.csv"), "--paths", "--method", method.lower(), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = REFERENCE["datasets"]["paths_k20"][method]
    assert out["model"] == "paths_rma" and out["method"] == method and out["k"] == 20
    coef = out["coefficients"]
    np.testing.assert_allclose([coef["a"]["estimate"], coef["b"]["estimate"]], ref["beta"], rtol=ITER)
    np.testing.assert_allclose([coef["a"]["se"], coef["b"]["se"]], ref["se"], rtol=ITER)
    np.testing.assert_allclose([out["tau2"]["a"], out["tau2"]["b"]], ref["tau2"], rtol=ITER)
    np.testing.assert_allclose(out["rho_ab"], ref["rho"], rtol=ITER)
    for key in ("estimate", "se", "ci_lower", "ci_upper"):
        assert out["effects"]["indirect"][key] == pytest.approx(ref["indirect"][key], rel=ITER), key


def test_cli_freq_paths_refuses_what_does_not_apply(capsys):
    from bayes_se import cli

    for extra, words in ((["--method", "DL"], "REML or ML, not DL"), (["--mods", "n"], "--mods"),
                         (["--test", "knha", "--influence"], "--influence, --test knha")):
        assert cli.main(["freq", str(REF / "paths_k20.csv"), "--paths", *extra]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1 and words in captured.err, captured.err
    assert cli.main(["freq", str(REF / "paths_k20.csv"), "--paths"]) == 0
    assert "Bivariate random-effects model of reported paths (k = 20" in capsys.readouterr().out
