"""Probes of the MASEM's coverage of rho[X,Y] (docs/calibration.md, "What limits rho[X,Y]").

Three probes on the data of ``scripts/mediation_calibration.py`` (the ``base`` setting, k trials of
60-300 participants, r_MY unreported with probability 0.1):

* ``variants``: refit the calibration run's own data sets (same ``--seed``, so the same trials and
  fit seeds as that run's rows) with another prior or likelihood: ``eta1`` (LKJ(1) on Omega),
  ``tau05`` (tau ~ HalfNormal(0.5)), ``own`` (Olkin-Siotani at each trial's own r), ``plugin``
  (Olkin-Siotani at the n-weighted mean r, fixed data: a probe-only patch of the ``own`` data);
  ``--normal-x`` instead draws the participants' intervention from N(0, 1) rather than +-1
  (new data, same truths). One row per (replicate, k, parameter), as the calibration CSV, plus the
  posterior medians of tau and Omega.
* ``gls``: the generalised least squares estimate of the pooled correlations with the *true*
  between-trial covariance T (Monte Carlo over the trial paths) and the Olkin-Siotani sampling
  covariance at the true pooled matrix: the coverage of its 90% Wald interval separates the
  within-trial model from the estimation of T.
* ``fixed-t``: the Bayesian fit with T fixed at its REML estimate (only the pooled matrix
  sampled) beside REML's Wald interval, on the calibration run's own data sets (paired).
* ``reml``: the same with T estimated by REML (unstructured, Cholesky-parametrised, BFGS), the
  sampling covariance at the current pooled estimate (three passes), Wald intervals from the
  GLS information at the estimate: the frequentist counterpart of the Bayesian fit.

    nice python scripts/mediation_calibration_probes.py variants --variants eta1 own --k 70 --reps 150 --seed 20261201 --out RUN.csv
    nice python scripts/mediation_calibration_probes.py variants --normal-x --variants default --k 70 --reps 150 --out RUN.csv
    nice python scripts/mediation_calibration_probes.py gls --reps 2000 --k 70 --seed 5
    nice python scripts/mediation_calibration_probes.py reml --reps 200 --k 70 --seed 7 --out RUN.csv
    nice python scripts/mediation_calibration_probes.py fixed-t --reps 150 --k 70 --seed 20261201 --out RUN.csv
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mediation_calibration as calibration  # noqa: E402

VARIABLES = ["intervention", "self_efficacy", "symptoms"]
VARIANTS = {"default": {}, "eta1": {"priors": {"eta": 1.0}}, "tau05": {"priors": {"tau": "half_normal(0.5)"}},
            "own": {"likelihood": "own"}, "fisher_z": {"likelihood": "fisher_z"},
            "plugin": {"likelihood": "own"}}  # with the 'own' data replaced: see _use_plugin_covariance
SIM = dict(n_range=(60, 300), missing_my=0.1)
Z90 = 1.6448536269514722


class NormalIntervention(np.random.Generator):
    """A generator whose ``choice`` (the simulator's +-1 intervention) draws N(0, 1) instead."""

    def choice(self, values, size=None, **kwargs):
        return self.standard_normal(size)


def _matrix(r):
    R = np.eye(3)
    R[1, 0] = R[0, 1] = r[0]
    R[2, 0] = R[0, 2] = r[1]
    R[2, 1] = R[1, 2] = r[2]
    return R


def _truth():
    s = calibration.SETTINGS["base"]
    return np.array([s["a"], s["c_prime"] + s["a"] * s["b"], s["b"] + s["a"] * s["c_prime"]])


def _use_plugin_covariance():
    """Probe only: make the ``own`` likelihood take, for every trial, the Olkin-Siotani covariance at
    the n-weighted mean of the observed correlations (fixed data, as REML's plug-in), so that the
    sampling covariance no longer depends on the pooled matrix being sampled."""
    import bayes_se.builders.masem as masem
    import bayes_se.builders.masem_likelihood as likelihoods
    from bayes_se.correlations import pair_index

    own_values = likelihoods.shared_values

    def plugin_values(data, likelihood):
        out = own_values(data, likelihood)
        if likelihood == "own":
            obs, p = np.asarray(data.observed, bool), data.p
            w = np.asarray(data.n, float)[:, None] * obs
            rbar = (np.where(obs, data.r, 0.0) * w).sum(0) / w.sum(0)
            flat, mask = np.zeros(p * p), np.ones(p * p)
            mask[::p + 1] = 0.0  # the unit diagonal comes from the pooled matrix
            for c, (i, j) in enumerate(pair_index(p)):
                flat[i * p + j] = flat[j * p + i] = rbar[c]
            out["own"], out["own_mask"] = np.tile(flat, (data.k, 1)), np.tile(mask, (data.k, 1))
        return out

    likelihoods.shared_values = masem.shared_values = plugin_values


def variants(args):
    from bayes_se.correlations import load_correlations
    from bayes_se.mediation import fit_mediation
    from bayes_se.mediation_simulation import simulate_mediation_trials

    if "plugin" in args.variants:
        if len(args.variants) > 1:
            raise SystemExit("--variants plugin replaces the 'own' likelihood's data: run it on its own")
        _use_plugin_covariance()
    rng = NormalIntervention(np.random.PCG64(args.seed)) if args.normal_x else np.random.default_rng(args.seed)
    for rep in range(args.reps):
        for k in (15, 70):  # the calibration script's order, so that the data sets are its own
            sim = simulate_mediation_trials(k, **calibration.SETTINGS["base"], **SIM, seed=rng)
            fit_seed = int(rng.integers(2**31))
            if k not in args.k:
                continue
            data = load_correlations(sim.correlations, variables=VARIABLES)
            for name in args.variants:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit = fit_mediation(data, seed=fit_seed, draws=500, tune=500, chains=2, cores=1, mc_draws=8,
                                        **VARIANTS[name])
                seconds = time.perf_counter() - start
                post, rows = fit.idata.posterior, []
                for param, key in calibration.PARAMS.items():
                    draws = np.asarray(post["rho"].sel(pair=param[4:-1]) if param.startswith("rho[")
                                       else post["effects"].sel(effect=param)).ravel()
                    lo, hi = np.quantile(draws, [0.05, 0.95])
                    t = sim.truth[key]
                    rows.append(dict(parameter=param, truth=t, median=np.median(draws), sd=draws.std(),
                                     covered=int(lo <= t <= hi)))
                for pair in post["tau"].pair.values:
                    rows.append(dict(parameter=f"tau[{pair}]", median=float(post["tau"].sel(pair=pair).median())))
                pairs = list(post["Omega"].pair.values)
                for i in range(3):
                    for j in range(i):
                        rows.append(dict(parameter=f"Omega[{pairs[i]}|{pairs[j]}]",
                                         median=float(post["Omega"].isel(pair=i, pair2=j).median())))
                frame = pd.DataFrame(rows)
                frame.insert(0, "replicate", rep)
                frame.insert(0, "k", k)
                frame.insert(0, "variant", name + ("+normal_x" if args.normal_x else ""))
                frame["seconds"] = seconds
                frame.to_csv(args.out, mode="a", header=not os.path.exists(args.out), index=False)
                print(f"rep {rep} k {k} {name}: {seconds:.1f}s", file=sys.stderr, flush=True)


def _studies(correlations):
    ys, idx, ns = [], [], []
    for _, g in correlations.groupby("study", sort=False):
        ns.append(float(g["n"].iloc[0]))
        ys.append(g["r"].to_numpy(float))
        idx.append([0, 1] + ([2] if len(g) == 3 else []))
    return ys, idx, ns


def _gls(ys, idx, ns, P, T):
    """GLS estimate, its information matrix and the REML terms, for sampling covariances P/(n-1)."""
    A, b, logdet, blocks = np.zeros((3, 3)), np.zeros(3), 0.0, []
    for y, ii, n in zip(ys, idx, ns):
        V = (P / (n - 1.0) + T)[np.ix_(ii, ii)]
        W = np.linalg.inv(V)
        X = np.eye(3)[ii]
        A += X.T @ W @ X
        b += X.T @ W @ y
        logdet += np.linalg.slogdet(V)[1]
        blocks.append((W, X, y))
    mu = np.linalg.solve(A, b)
    quad = sum((y - X @ mu) @ W @ (y - X @ mu) for W, X, y in blocks)
    return mu, A, 0.5 * (logdet + quad + np.linalg.slogdet(A)[1])


def _true_T(rng, draws=10**6):
    s = calibration.SETTINGS["base"]
    a = s["a"] + s["tau_a"] * rng.standard_normal(draws)
    b = s["b"] + s["tau_b"] * rng.standard_normal(draws)
    c = s["c_prime"] + s["tau_c"] * rng.standard_normal(draws)
    return np.cov(np.column_stack([a, c + a * b, b + a * c]).T)


def gls_or_reml(args, reml: bool):
    from bayes_se.correlations import olkin_siotani
    from bayes_se.mediation_simulation import simulate_mediation_trials

    rng = np.random.default_rng(args.seed)
    truth = _truth()
    T_true = _true_T(rng)
    z, taus = [], []
    for _ in range(args.reps):
        sim = simulate_mediation_trials(args.k[0], **calibration.SETTINGS["base"], **SIM, seed=rng)
        ys, idx, ns = _studies(sim.correlations)
        if not reml:
            mu, A, _ = _gls(ys, idx, ns, olkin_siotani(_matrix(truth)), T_true)
            tau = np.sqrt(np.diag(T_true))
        else:
            mu, T, A = _reml(ys, idx, ns)
            tau = np.sqrt(np.diag(T))
        z.append((mu - truth) / np.sqrt(np.diag(np.linalg.inv(A))))
        taus.append(tau)
        if args.out:  # one row per replicate: z of each pair and the tau used
            row = pd.DataFrame([dict(probe="reml" if reml else "gls", k=args.k[0], seed=args.seed, replicate=len(z) - 1,
                                     **{f"z{j}": z[-1][j] for j in range(3)}, **{f"tau{j}": tau[j] for j in range(3)})])
            row.to_csv(args.out, mode="a", header=not os.path.exists(args.out), index=False)
        if len(z) % 50 == 0 or len(z) == args.reps:  # a summary every 50 replicates, so a cut run keeps its result
            _report(np.array(z), taus, T_true, args.k[0], "REML (T estimated)" if reml else "GLS (true T)")


def _report(z, taus, T_true, k, label):
    print(f"{label}, k = {k}, {len(z)} replicates; pairs (X,M), (X,Y), (M,Y)")
    print("  90% Wald coverage:", np.round(np.mean(np.abs(z) < Z90, axis=0), 4))
    print("  SD of z:", np.round(z.std(axis=0), 3), " mean z:", np.round(z.mean(axis=0), 3))
    print("  mean tau:", np.round(np.mean(taus, axis=0), 4), " true tau:", np.round(np.sqrt(np.diag(T_true)), 4),
          flush=True)


def _reml(ys, idx, ns):
    """REML estimate (pooled matrix, T, GLS information A) with the sampling covariance at the
    current pooled matrix, held fixed while T is estimated (three passes)."""
    from scipy import optimize

    from bayes_se.correlations import olkin_siotani

    rho = np.array([np.mean([y[j] for y, ii in zip(ys, idx) if j in ii]) for j in range(3)])
    theta = np.array([0.08, 0.0, 0.06, 0.0, 0.0, 0.07])  # lower triangle of chol(T)

    def cov(th):
        L = np.zeros((3, 3))
        L[np.tril_indices(3)] = th
        return L @ L.T

    for _ in range(3):
        P = olkin_siotani(_matrix(rho))
        theta = optimize.minimize(lambda th: _gls(ys, idx, ns, P, cov(th))[2], theta, method="BFGS").x
        rho, A, _ = _gls(ys, idx, ns, P, cov(theta))
    return rho, cov(theta), A


def fixed_t(args):
    """The Bayesian MASEM with T fixed at its REML estimate (``pymc.do`` on tau and Omega's partial
    correlations), only the pooled matrix sampled, beside REML's Wald interval, on the calibration
    run's own k = 70 data sets: one row per replicate."""
    import pymc as pm

    from bayes_se.builders.masem import build_masem
    from bayes_se.correlations import load_correlations
    from bayes_se.mediation_simulation import simulate_mediation_trials
    from bayes_se.nutpie_sampling import sample_nutpie

    rng = np.random.default_rng(args.seed)
    truth = _truth()
    for rep in range(args.reps):
        for k in (15, 70):
            sim = simulate_mediation_trials(k, **calibration.SETTINGS["base"], **SIM, seed=rng)
            fit_seed = int(rng.integers(2**31))
            if k not in args.k:
                continue
            rho, T, A = _reml(*_studies(sim.correlations))
            tau = np.sqrt(np.diag(T))
            L = np.linalg.cholesky(T / np.outer(tau, tau))
            cpc = np.array([L[1, 0], L[2, 0], L[2, 1] / np.sqrt(1.0 - L[2, 0] ** 2)])  # lkj_corr_cpc's order
            built = build_masem(load_correlations(sim.correlations, variables=VARIABLES))
            built.set_data()
            fixed = pm.do(built.model, {"tau": tau, "Omega_cpc": (cpc + 1.0) / 2.0})
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                idata = sample_nutpie(fixed, draws=500, tune=500, chains=2, seed=fit_seed, target_accept=0.9)
            draws = np.asarray(idata.posterior["rho"]).reshape(-1, 3)
            lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
            se = np.sqrt(np.diag(np.linalg.inv(A)))
            row = dict(k=k, replicate=rep, **{f"cov{j}": int(lo[j] <= truth[j] <= hi[j]) for j in range(3)},
                       **{f"sd{j}": draws[:, j].std() for j in range(3)},
                       **{f"med{j}": np.median(draws[:, j]) for j in range(3)},
                       **{f"reml_se{j}": se[j] for j in range(3)},
                       **{f"reml_z{j}": (rho[j] - truth[j]) / se[j] for j in range(3)},
                       **{f"tau{j}": tau[j] for j in range(3)}, seconds=time.perf_counter() - start)
            pd.DataFrame([row]).to_csv(args.out, mode="a", header=not os.path.exists(args.out), index=False)
            print(f"rep {rep} k {k}: {row['seconds']:.1f}s", file=sys.stderr, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("probe", choices=["variants", "gls", "reml", "fixed-t"])
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--k", type=int, nargs="+", default=[70])
    p.add_argument("--seed", type=int, default=20261201)
    p.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS))
    p.add_argument("--normal-x", action="store_true")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.probe in ("variants", "fixed-t") and not args.out:
        p.error(f"{args.probe} needs --out")
    if args.probe == "variants":
        variants(args)
    elif args.probe == "fixed-t":
        fixed_t(args)
    else:
        gls_or_reml(args, reml=args.probe == "reml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
