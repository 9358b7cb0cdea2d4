"""Simulation-based calibration (SBC) of bayes_se's engines (Talts et al. 2018).

For each replicate: draw the parameters from the prior, simulate a meta-analysis from the model,
fit it, and record the rank of the prior draw among ``L`` posterior draws. If the engine computes
the posterior correctly, every rank is uniform on ``0..L`` (Talts et al. 2018, Theorem 1); a
chi-square test per parameter checks that, and a rank histogram shows how it fails when it does
(a U shape: posteriors too narrow; a hump: too wide; a slope: biased).

Models (the shipped specs' priors, via :func:`bayes_se.api.fit`):

* ``random_effects``: ``y_i ~ N(theta_i, v_i)``, ``theta_i ~ N(mu, tau^2)``, mu ~ N(0, 1),
  tau ~ HalfNormal(0.5);
* ``guidance_moderator``: ``theta_i ~ N(mu + beta * guided_i, tau^2)`` with a binary ``guided``
  (half the studies), mu ~ N(0, 1), beta ~ N(0, 0.5), tau ~ HalfNormal(0.5).

Engines: ``exact`` (quadrature, exact iid draws from ``ExactPosterior.draws``) and ``mcmc``
(PyMC NUTS with small settings, thinned to ``L`` draws).

Run ``python scripts/sbc.py --help``; the defaults write ``docs/figures/sbc_*.png`` and print the
Markdown table of ``docs/calibration.md``.

References
----------
Talts, S., Betancourt, M., Simpson, D., Vehtari, A. & Gelman, A. (2018). Validating Bayesian
inference algorithms with simulation-based calibration. arXiv:1804.06788.
Cook, S. R., Gelman, A. & Rubin, D. B. (2006). Validation of software for Bayesian models using
posterior quantiles. JCGS 15(3), 675-692.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import pathlib
import sys
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
FIGURES = ROOT / "docs" / "figures"

K_STUDIES = 8  # studies per simulated meta-analysis: small, where priors matter and tau is hard
VI_RANGE = (0.01, 0.2)  # sampling variances ~ U(0.01, 0.2): SMDs of trials with ~20-400 participants
N_RANKS = 99  # L posterior draws per replicate: ranks 0..99
N_BINS = 20  # histogram bins of 5 ranks each
MODEL_NAMES = ("random_effects", "guidance_moderator")


@dataclasses.dataclass
class Simulation:
    """One simulated meta-analysis and the parameter values that generated it."""

    frame: pd.DataFrame
    truth: dict


@functools.lru_cache(maxsize=None)
def model_spec(model: str):
    """The shipped spec of ``model`` (``models/<model>.toml``)."""
    from bayes_se.spec import load_spec

    return load_spec(MODELS / f"{model}.toml")


def parameters(model: str) -> list[str]:
    """Parameters whose calibration is checked: the coefficients, tau and one study effect."""
    coefs = ["mu"] if model == "random_effects" else ["beta[intercept]", "beta[guided]"]
    return coefs + ["tau", "theta[1]"]


def simulate(model: str, rng: np.random.Generator, k: int = K_STUDIES) -> Simulation:
    """Draw (mu, beta, tau) from the spec's priors, then theta_i and y_i from the model."""
    priors = model_spec(model).resolved_priors()
    vi = rng.uniform(*VI_RANGE, size=k)
    mu = float(priors["mu"].rvs(rng=rng))
    tau = float(priors["tau"].rvs(rng=rng))
    frame = pd.DataFrame({"study": [str(i + 1) for i in range(k)], "vi": vi})
    truth = {"tau": tau}
    if model == "random_effects":
        mean = np.full(k, mu)
        truth["mu"] = mu
    else:
        guided = np.arange(k) % 2  # a fixed, balanced design
        beta = float(priors["beta[guided]"].rvs(rng=rng))
        mean = mu + beta * guided
        frame["guided"] = guided
        truth.update({"beta[intercept]": mu, "beta[guided]": beta})
    theta = mean + tau * rng.standard_normal(k)
    frame["yi"] = theta + np.sqrt(vi) * rng.standard_normal(k)
    truth["theta[1]"] = float(theta[0])
    return Simulation(frame=frame, truth=truth)


def _exact_draws(post, n, rng, model) -> dict:
    d = post.draws(n, rng)
    out = {"tau": d["tau"], "theta[1]": d["theta"][:, 0]}
    if model == "random_effects":
        out["mu"] = d["mu"]
    else:
        out["beta[intercept]"], out["beta[guided]"] = d["beta"][:, 0], d["beta"][:, 1]
    return out


def _mcmc_draws(res, n, model) -> dict:
    post = res.idata.posterior
    flat = {}
    flat["tau"] = post["tau"].values.reshape(-1)
    flat["theta[1]"] = post["theta"].values.reshape(-1, post["theta"].shape[-1])[:, 0]
    if model == "random_effects":
        flat["mu"] = post["mu"].values.reshape(-1)
    else:
        beta = post["beta"].values.reshape(-1, post["beta"].shape[-1])
        flat["beta[intercept]"], flat["beta[guided]"] = beta[:, 0], beta[:, 1]
    total = flat["tau"].size
    keep = np.linspace(0, total - 1, n).round().astype(int)  # thinning: evenly spaced draws
    return {name: values[keep] for name, values in flat.items()}


def replicate(model: str, engine: str, rng: np.random.Generator, n_draws: int = N_RANKS,
              mcmc: dict | None = None) -> tuple[dict, dict]:
    """One SBC replicate: (ranks by parameter, extra info such as divergences)."""
    from bayes_se.api import fit

    sim = simulate(model, rng)
    spec = model_spec(model)
    info = {}
    if engine == "exact":
        res = fit(sim.frame, spec, engine="exact")
        draws = _exact_draws(res.posterior, n_draws, rng, model)
    else:
        settings = dict(draws=500, tune=500, chains=2) | (mcmc or {})
        seed = int(rng.integers(2**31))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fit(sim.frame, spec, engine="mcmc", seed=seed, **settings)
        draws = _mcmc_draws(res, n_draws, model)
        info = {"divergences": res.diagnostics.divergences, "passed": res.diagnostics.passed}
    ranks = {name: int(np.sum(draws[name] < sim.truth[name])) for name in parameters(model)}
    return ranks, info


def exact_pit(model: str, rng: np.random.Generator, tau_prior=None) -> dict:
    """Posterior cdf at the prior draw, ``F(truth | y)``, for each parameter (exact engine).

    SBC's continuous limit (L -> infinity): uniform on (0, 1) when the posterior is right (Cook,
    Gelman & Rubin 2006). ``tau_prior`` replaces the spec's tau prior in the fit only (a
    deliberately wrong posterior, to show the check has power).
    """
    from bayes_se.api import fit

    sim = simulate(model, rng)
    priors = [f"tau={tau_prior}"] if tau_prior else None
    post = fit(sim.frame, model_spec(model), engine="exact", priors=priors).posterior
    return {name: float(post.cdf(name, sim.truth[name])) for name in parameters(model)}


def run(model: str, engine: str, n_rep: int, seed: int, n_draws: int = N_RANKS, mcmc=None,
        progress=False) -> tuple[pd.DataFrame, list]:
    """``n_rep`` replicates; a DataFrame of ranks (one column per parameter) and the infos."""
    rng = np.random.default_rng(seed)
    rows, infos = [], []
    start = time.time()
    for i in range(n_rep):
        ranks, info = replicate(model, engine, rng, n_draws, mcmc)
        rows.append(ranks)
        infos.append(info)
        if progress and (i + 1) % 10 == 0:
            print(f"  {model}/{engine}: {i + 1}/{n_rep} ({time.time() - start:.0f} s)", file=sys.stderr)
    return pd.DataFrame(rows), infos


def uniformity_pvalue(ranks, n_draws: int = N_RANKS, n_bins: int = N_BINS) -> float:
    """Chi-square test that ranks are uniform on ``0..n_draws`` (``n_bins`` equal bins)."""
    if (n_draws + 1) % n_bins:
        raise ValueError(f"{n_draws + 1} ranks do not split into {n_bins} equal bins")
    counts = np.bincount(np.asarray(ranks, dtype=int) * n_bins // (n_draws + 1), minlength=n_bins)
    return float(stats.chisquare(counts).pvalue)


def plot_ranks(ranks, path, title, n_draws: int = N_RANKS, n_bins: int = N_BINS) -> None:
    """Rank histogram with the central 99% band of a bin count under uniformity (Talts et al. Fig. 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = np.asarray(ranks)
    n = ranks.size
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1.0 / n_bins)
    fig, ax = plt.subplots(figsize=(4.5, 3.0), dpi=110)
    ax.axhspan(lo, hi, color="0.85", lw=0, label="99% band if uniform")
    ax.axhline(n / n_bins, color="0.5", lw=0.8)
    ax.hist(ranks, bins=np.linspace(0, n_draws + 1, n_bins + 1), color="#0072B2", edgecolor="white")
    ax.set_xlabel(f"rank of the prior draw among {n_draws} posterior draws")
    ax.set_ylabel("replicates")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper right", frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exact-reps", type=int, default=1000)
    parser.add_argument("--mcmc-reps", type=int, default=100)
    parser.add_argument("--mcmc-draws", type=int, default=500, help="draws per chain (2 chains)")
    parser.add_argument("--mcmc-tune", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--figures", type=pathlib.Path, default=FIGURES)
    parser.add_argument("--csv", type=pathlib.Path, default=None, help="also write all ranks here")
    args = parser.parse_args(argv)
    logging.getLogger("pymc").setLevel(logging.ERROR)  # one sampler banner per replicate is noise
    args.figures.mkdir(parents=True, exist_ok=True)
    table, all_ranks = [], []
    mcmc = {"draws": args.mcmc_draws, "tune": args.mcmc_tune, "chains": 2}
    for model in args.models:
        for engine, n_rep in (("exact", args.exact_reps), ("mcmc", args.mcmc_reps)):
            if n_rep <= 0:
                continue
            start = time.time()
            ranks, infos = run(model, engine, n_rep, args.seed, mcmc=mcmc, progress=True)
            seconds = time.time() - start
            div = sum(i.get("divergences", 0) for i in infos)
            for name in ranks.columns:
                p = uniformity_pvalue(ranks[name])
                safe = name.replace("[", "_").replace("]", "")
                plot_ranks(ranks[name], args.figures / f"sbc_{model}_{engine}_{safe}.png",
                           f"{model}, {engine} engine: {name} (N = {n_rep}, p = {p:.2f})")
                table.append({"model": model, "engine": engine, "parameter": name, "replicates": n_rep,
                              "chi2_p": p, "divergences": div if engine == "mcmc" else None,
                              "seconds": seconds})
            all_ranks.append(ranks.assign(model=model, engine=engine))
    result = pd.DataFrame(table)
    if args.csv:
        pd.concat(all_ranks).to_csv(args.csv, index=False)
    print(result.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else result.to_string(index=False))
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
