"""Simulation-based calibration (SBC) of bayes_se's engines (Talts et al. 2018).

For each replicate: draw the parameters from the prior, simulate a meta-analysis from the model,
fit it, and record the rank of the prior draw among ``L`` posterior draws. If the engine computes
the posterior correctly, every rank is uniform on ``0..L`` (Talts et al. 2018, Theorem 1); a
chi-square test per parameter checks that, and a rank histogram
(:func:`bayes_se.plots.plot_sbc_ranks`) shows how it fails when it does (a U shape: posteriors too
narrow; a hump: too wide; a slope: biased).

Models (the shipped specs' priors, :data:`SPECS`, fitted through :func:`bayes_se.api.fit`):

* ``random_effects``: ``y_i ~ N(theta_i, v_i)``, ``theta_i ~ N(mu, tau^2)``, mu ~ N(0, 1),
  tau ~ HalfNormal(0.5);
* ``guidance_moderator``: ``theta_i ~ N(mu + beta * guided_i, tau^2)`` with a binary ``guided``
  (half the studies), mu ~ N(0, 1), beta ~ N(0, 0.5), tau ~ HalfNormal(0.5);
* ``mediation``: the Bayesian MASEM of :mod:`bayes_se.builders.masem` (pooled R ~ LKJ(1),
  Omega ~ LKJ(2), tau per pair from ``mediation_priors``), fitted through
  :func:`bayes_se.mediation.fit_mediation` (MCMC only); two studies do not report r_MY.
  Parameters are drawn from the built model's own prior (``pm.draw``). The data, by
  ``mediation_data``: ``"likelihood"`` draws each study's correlations from the fitted likelihood
  ``N(rho, S_i(rho) + T)`` with nothing redrawn (SBC proper); ``"sample"`` (the default) draws a
  study matrix ``rho_i ~ N(rho, T)``, redrawn until it is a valid correlation matrix (a
  truncation the model does not have: the rejection rate is reported), and takes the sample
  correlations of ``n_i ~ U{80..300}`` multivariate-normal draws (a model-adequacy check: the
  model uses the large-sample Olkin-Siotani normal approximation).

Engines: ``exact`` (quadrature, exact iid draws from ``ExactPosterior.draws``) and ``mcmc``
(PyMC NUTS with small settings, thinned to ``L`` draws).

:func:`run` runs one model and engine; :func:`run_study` runs several, writes the rank
histograms and a CSV of ranks and returns the table of p-values; ``bayes-se sbc`` (:func:`add_parser`)
is a thin layer over it. ``docs/calibration.md`` reports the studies.

References
----------
Talts, S., Betancourt, M., Simpson, D., Vehtari, A. & Gelman, A. (2018). Validating Bayesian
inference algorithms with simulation-based calibration. arXiv:1804.06788.
Cook, S. R., Gelman, A. & Rubin, D. B. (2006). Validation of software for Bayesian models using
posterior quantiles. JCGS 15(3), 675-692.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
import sys
import time
import warnings

import numpy as np

from bayes_se.errors import BayesSEError
from bayes_se.lazy import LazyModule

pd = LazyModule("pandas")  # building the CLI's parser imports this module

K_STUDIES = 8  # studies per simulated meta-analysis: small, where priors matter and tau is hard
VI_RANGE = (0.01, 0.2)  # sampling variances ~ U(0.01, 0.2): SMDs of trials with ~20-400 participants
N_RANKS = 99  # L posterior draws per replicate: ranks 0..99
N_BINS = 20  # histogram bins of 5 ranks each
MODEL_NAMES = ("random_effects", "guidance_moderator")
MEDIATION = "mediation"  # not in the default run: MCMC only, about 10x slower per replicate
ENGINES = ("exact", "mcmc")
#: NUTS settings of the MCMC replicates (normal models; the mediation model uses 250/250).
MCMC_SETTINGS = {"draws": 500, "tune": 500, "chains": 2}
MEDIATION_MCMC_SETTINGS = {"draws": 250, "tune": 250, "chains": 2}
MEDIATION_VARIABLES = ("X", "M", "Y")  # in pair order r_XM, r_XY, r_MY
MEDIATION_N_RANGE = (80, 300)  # participants per simulated study, inclusive
MEDIATION_NO_MY = (6, 7)  # 0-based studies that do not report r_MY (a fixed design)
MEDIATION_MC_DRAWS = 16  # indirect_avg's Monte Carlo size; it is not checked here, so keep it cheap
#: Priors of the mediation SBC. Under the shipped tau ~ HalfNormal(0.2), 24% of the study-matrix
#: draws were invalid (200 simulated meta-analyses; 15% under HalfNormal(0.1)), so the truncated
#: simulation would be far from the model; under HalfNormal(0.05), 6.5%. Used in simulation and fit.
MEDIATION_PRIORS = {"tau": "half_normal(0.05)"}
#: How mediation data are simulated: "sample" (study matrices, then sample correlations of raw
#: data) or "likelihood" (the fitted model's own likelihood: r_i ~ N(rho, S_i(rho) + T) with the
#: Olkin-Siotani S_i at the pooled rho, never redrawn: SBC in its exact sense).
MEDIATION_DATA_MODES = ("sample", "likelihood")
MAX_REDRAWS = 10_000  # redraws of rho_i before giving up on a replicate's (rho, T)

#: The specs of the SBC models: the priors and model of the shipped ``models/random_effects.toml``
#: and ``models/guidance_moderator.toml`` (tests/test_sbc.py keeps them equal), built in so that
#: an installed package needs no file from the repository.
SPECS = {
    "random_effects": """
[model]
type = "random_effects"
[priors]
preset = "default"
mu = "normal(0, 1)"
tau = "half_normal(0.5)"
""",
    "guidance_moderator": """
[model]
type = "meta_regression"
mods = "guided"
[priors]
preset = "default"
mu = "normal(0, 1)"
"beta[guided]" = "normal(0, 0.5)"
tau = "half_normal(0.5)"
""",
}


@dataclasses.dataclass
class Simulation:
    """One simulated meta-analysis and the parameter values that generated it."""

    frame: pd.DataFrame
    truth: dict


@functools.lru_cache(maxsize=None)
def model_spec(model: str):
    """The :class:`~bayes_se.spec.ModelSpec` of ``model`` (one of :data:`MODEL_NAMES`)."""
    from bayes_se.spec import load_spec

    return load_spec(SPECS[model])


def parameters(model: str) -> list[str]:
    """Parameters whose calibration is checked: the coefficients, tau and one study effect
    (mediation: the pooled correlations, the taus and the derived a, b and indirect = a b)."""
    if model == MEDIATION:
        labels = mediation_labels()
        return [f"rho[{x}]" for x in labels] + [f"tau[{x}]" for x in labels] + ["a", "b", "indirect"]
    coefs = ["mu"] if model == "random_effects" else ["beta[intercept]", "beta[guided]"]
    return coefs + ["tau", "theta[1]"]


def thin(values: np.ndarray, n: int) -> np.ndarray:
    """``n`` evenly spaced elements of ``values`` (thinning a chain to ``L`` draws)."""
    keep = np.linspace(0, values.size - 1, n).round().astype(int)
    return values[keep]


def ranks_of(draws: dict, truth: dict, names) -> dict:
    """Rank of each true value among its posterior draws: ``#{draws < truth}``, in ``0..L``."""
    return {name: int(np.sum(draws[name] < truth[name])) for name in names}


# -- random-effects model and meta-regression --------------------------------------------------
def simulate(model: str, rng: np.random.Generator, k: int = K_STUDIES) -> Simulation:
    """Draw (mu, beta, tau) from the spec's priors, then ``theta_i ~ N(mu + beta x_i, tau^2)`` and
    ``y_i ~ N(theta_i, v_i)`` with ``v_i ~ U(VI_RANGE)``."""
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
    flat = {"tau": post["tau"].values.reshape(-1),
            "theta[1]": post["theta"].values.reshape(-1, post["theta"].shape[-1])[:, 0]}
    if model == "random_effects":
        flat["mu"] = post["mu"].values.reshape(-1)
    else:
        beta = post["beta"].values.reshape(-1, post["beta"].shape[-1])
        flat["beta[intercept]"], flat["beta[guided]"] = beta[:, 0], beta[:, 1]
    return {name: thin(values, n) for name, values in flat.items()}


def replicate(model: str, engine: str, rng: np.random.Generator, n_draws: int = N_RANKS,
              mcmc: dict | None = None, *, mediation_data: str = "sample",
              mediation_priors: dict | None = None) -> tuple[dict, dict]:
    """One SBC replicate: (ranks by parameter, extra info such as divergences).

    ``mcmc`` updates :data:`MCMC_SETTINGS`; ``mediation_data`` and ``mediation_priors`` are used by
    the mediation model only (see :func:`replicate_mediation`).
    """
    from bayes_se.api import fit

    if model == MEDIATION:
        if engine != "mcmc":
            raise BayesSEError("the mediation model has only the mcmc engine")
        return replicate_mediation(rng, n_draws, mcmc, priors=mediation_priors, data_mode=mediation_data)

    sim = simulate(model, rng)
    spec = model_spec(model)
    info = {}
    if engine == "exact":
        res = fit(sim.frame, spec, engine="exact")
        draws = _exact_draws(res.posterior, n_draws, rng, model)
    else:
        settings = MCMC_SETTINGS | (mcmc or {})
        seed = int(rng.integers(2**31))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fit(sim.frame, spec, engine="mcmc", seed=seed, **settings)
        draws = _mcmc_draws(res, n_draws, model)
        info = {"divergences": res.diagnostics.divergences, "passed": res.diagnostics.passed}
    return ranks_of(draws, sim.truth, parameters(model)), info


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


# -- mediation (MASEM) --------------------------------------------------------------------------
def mediation_labels() -> list[str]:
    """Pair labels ``"X,M"``, ``"X,Y"``, ``"M,Y"`` of :data:`MEDIATION_VARIABLES`."""
    from bayes_se.correlations import pair_index

    v = MEDIATION_VARIABLES
    return [f"{v[j]},{v[i]}" for i, j in pair_index(len(v))]


@functools.lru_cache(maxsize=None)
def _mediation_prior_model(tau_prior: str):
    """The MASEM built on a placeholder data set: only its prior (rho, tau, Omega) is used."""
    from bayes_se.builders.masem import build_masem
    from bayes_se.correlations import CorrelationData

    q = len(mediation_labels())
    data = CorrelationData(MEDIATION_VARIABLES, np.array(["1", "2"]), np.array([100.0, 100.0]),
                           np.zeros((2, q)), np.ones((2, q), bool))
    return build_masem(data, priors={"tau": tau_prior}).model


def mediation_prior_draw(rng: np.random.Generator, priors: dict | None = None) -> dict:
    """One draw of ``rho`` (q,), ``tau`` (q,), ``Omega`` (q, q) from the built model's prior."""
    import pymc as pm

    model = _mediation_prior_model(str((priors or MEDIATION_PRIORS)["tau"]))
    rho, tau, omega = pm.draw([model["rho"], model["tau"], model["Omega"]],
                              random_seed=int(rng.integers(2**31)))
    return {"rho": np.asarray(rho), "tau": np.asarray(tau), "Omega": np.asarray(omega)}


def _check_data_mode(data_mode: str) -> None:
    if data_mode not in MEDIATION_DATA_MODES:
        raise BayesSEError(f"mediation data must be one of {MEDIATION_DATA_MODES}, got {data_mode!r}")


def simulate_mediation(rng: np.random.Generator, k: int = K_STUDIES, priors: dict | None = None,
                       data_mode: str = "sample") -> Simulation:
    """Draw (rho, tau, Omega) from the prior, then k studies' correlations.

    ``data_mode="sample"``: ``rho_i ~ N(rho, T)`` with ``T = diag(tau) Omega diag(tau)``,
    redrawn until ``R(rho_i)`` is positive definite (``truth["redraws"]`` counts the rejections),
    then the sample correlations of ``n_i`` multivariate-normal draws with correlation ``R(rho_i)``.
    ``"likelihood"``: ``r_i ~ N(rho, S_i(rho) + T)``, the model's own likelihood, never redrawn:
    a draw may have ``|r| >= 1`` or a study matrix that is not positive definite, which the
    likelihood allows and :func:`replicate_mediation` passes to the fit without the loader (whose
    checks refuse such files from users).
    """
    from bayes_se.correlations import olkin_siotani, pair_index
    from bayes_se.mediation import PathModel, vec_to_matrix

    _check_data_mode(data_mode)
    p, pairs, labels = len(MEDIATION_VARIABLES), pair_index(len(MEDIATION_VARIABLES)), mediation_labels()
    while True:  # a (rho, T) whose study matrices are almost never valid is redrawn (never seen so far)
        prior = mediation_prior_draw(rng, priors)
        T = prior["tau"][:, None] * prior["Omega"] * prior["tau"][None, :]
        T_chol = np.linalg.cholesky(T + 1e-12 * np.eye(len(pairs)))
        rows, redraws = [], 0
        for _ in range(k):
            n_i = int(rng.integers(MEDIATION_N_RANGE[0], MEDIATION_N_RANGE[1] + 1))
            if data_mode == "likelihood":
                cov = olkin_siotani(vec_to_matrix(prior["rho"], p), n_i) + T
                L_i = np.linalg.cholesky(cov)
                rows.append([n_i] + list(prior["rho"] + L_i @ rng.standard_normal(len(pairs))))
                continue
            for _ in range(MAX_REDRAWS):
                rho_i = prior["rho"] + T_chol @ rng.standard_normal(len(pairs))
                R_i = vec_to_matrix(rho_i, p)
                if np.all(np.abs(rho_i) < 1) and np.linalg.eigvalsh(R_i)[0] > 0:
                    break
                redraws += 1
            else:
                break
            z = rng.standard_normal((n_i, p)) @ np.linalg.cholesky(R_i).T
            sample_r = np.corrcoef(z, rowvar=False)
            rows.append([n_i] + [sample_r[i, j] for i, j in pairs])
        if len(rows) == k:
            break
    columns = ["r_" + label.replace(",", "_") for label in labels]
    frame = pd.DataFrame(rows, columns=["n"] + columns)
    frame.insert(0, "study", [str(i + 1) for i in range(k)])
    frame.loc[list(MEDIATION_NO_MY), columns[-1]] = np.nan
    x, m, y = MEDIATION_VARIABLES
    effects = PathModel.single_mediator(MEDIATION_VARIABLES, x, m, y).effects(vec_to_matrix(prior["rho"], p))
    truth = {f"rho[{lab}]": float(v) for lab, v in zip(labels, prior["rho"])}
    truth |= {f"tau[{lab}]": float(v) for lab, v in zip(labels, prior["tau"])}
    truth |= {name: float(effects[name]) for name in ("a", "b", "indirect")}
    truth["redraws"] = redraws
    return Simulation(frame=frame, truth=truth)


def _mediation_draws(res, n) -> dict:
    post = res.idata.posterior
    flat = {}
    for var in ("rho", "tau"):
        for label in res.data.pair_labels:
            flat[f"{var}[{label}]"] = post[var].sel(pair=label).values.reshape(-1)
    for name in ("a", "b", "indirect"):
        flat[name] = post["effects"].sel(effect=name).values.reshape(-1)
    return {name: thin(values, n) for name, values in flat.items()}


def replicate_mediation(rng: np.random.Generator, n_draws: int = N_RANKS, mcmc: dict | None = None,
                        priors: dict | None = None, data_mode: str = "sample") -> tuple[dict, dict]:
    """One SBC replicate of the mediation model: (ranks by parameter, info).

    ``info``: divergences and diagnostics verdict of the final fit, whether NUTS refitted at a
    higher target_accept, and the study-matrix redraws of the simulation.
    """
    from bayes_se.correlations import CorrelationData, load_correlations
    from bayes_se.mediation import fit_mediation

    priors = priors or MEDIATION_PRIORS
    sim = simulate_mediation(rng, priors=priors, data_mode=data_mode)
    if data_mode == "likelihood":  # the loader would refuse |r| >= 1 or an indefinite study matrix
        r = sim.frame.filter(like="r_").to_numpy(float)
        data = CorrelationData(MEDIATION_VARIABLES, sim.frame["study"].to_numpy(str),
                               sim.frame["n"].to_numpy(float), r, ~np.isnan(r))
    else:
        data = load_correlations(sim.frame, variables=MEDIATION_VARIABLES, layout="wide")
    settings = MEDIATION_MCMC_SETTINGS | (mcmc or {})
    seed = int(rng.integers(2**31))
    x, m, y = MEDIATION_VARIABLES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_mediation(data, x=x, m=m, y=y, priors=priors, seed=seed, cores=1,
                            mc_draws=MEDIATION_MC_DRAWS, **settings)
    ranks = ranks_of(_mediation_draws(res, n_draws), sim.truth, parameters(MEDIATION))
    info = {"divergences": res.diagnostics.divergences, "passed": res.diagnostics.passed,
            "refit": "refit_reason" in res.idata.attrs, "redraws": sim.truth["redraws"],
            "studies": len(sim.frame)}
    return ranks, info


# -- running and testing -------------------------------------------------------------------------
def run(model: str, engine: str, n_rep: int, seed: int, n_draws: int = N_RANKS, mcmc=None,
        progress=False, on_replicate=None, *, mediation_data: str = "sample",
        mediation_priors: dict | None = None) -> tuple[pd.DataFrame, list]:
    """``n_rep`` replicates from ``numpy.random.default_rng(seed)``; a DataFrame of ranks (one
    column per parameter) and the infos.

    ``on_replicate(ranks_so_far)``, when given, is called after every replicate (to save a
    long run as it goes: an interrupted run keeps every finished replicate). ``progress`` logs
    to stderr.
    """
    rng = np.random.default_rng(seed)
    rows, infos = [], []
    start = time.time()
    for i in range(n_rep):
        ranks, info = replicate(model, engine, rng, n_draws, mcmc, mediation_data=mediation_data,
                                mediation_priors=mediation_priors)
        rows.append(ranks | {"divergences": info.get("divergences", 0)})
        infos.append(info)
        if on_replicate is not None:
            on_replicate(pd.DataFrame(rows))
        if progress and model == MEDIATION:  # slow: log each replicate so a cut-off run is not lost
            print(f"  replicate {i + 1}: ranks {ranks} info {info}", file=sys.stderr)
        if progress and ((i + 1) % 10 == 0 or model == MEDIATION):
            print(f"  {model}/{engine}: {i + 1}/{n_rep} ({time.time() - start:.0f} s)", file=sys.stderr)
    return pd.DataFrame(rows).drop(columns="divergences"), infos


def uniformity_pvalue(ranks, n_draws: int = N_RANKS, n_bins: int = N_BINS) -> float:
    """Chi-square test that ranks are uniform on ``0..n_draws`` (``n_bins`` equal bins)."""
    if (n_draws + 1) % n_bins:
        raise ValueError(f"{n_draws + 1} ranks do not split into {n_bins} equal bins")
    counts = np.bincount(np.asarray(ranks, dtype=int) * n_bins // (n_draws + 1), minlength=n_bins)
    from scipy import stats  # deferred: building the CLI's parser imports this module

    return float(stats.chisquare(counts).pvalue)


def figure_stem(model: str, engine: str, parameter: str) -> str:
    """File stem of a rank histogram: ``sbc_<model>_<engine>_<parameter>`` (mediation:
    ``sbc_mediation_<parameter>``), brackets and commas replaced by underscores."""
    safe = parameter.replace("[", "_").replace("]", "").replace(",", "_")
    return f"sbc_{model}_{safe}" if model == MEDIATION else f"sbc_{model}_{engine}_{safe}"


def study_runs(models, engines) -> list[tuple[str, str]]:
    """The (model, engine) pairs a study runs: every pair but mediation with the exact engine."""
    return [(m, e) for m in models for e in engines if not (m == MEDIATION and e == "exact")]


def study_outputs(models, engines, figures) -> list[pathlib.Path]:
    """The rank-histogram files a study writes (one PNG per model, engine and parameter)."""
    return [pathlib.Path(figures) / f"{figure_stem(m, e, name)}.png"
            for m, e in study_runs(models, engines) for name in parameters(m)]


def run_study(models=MODEL_NAMES, engines=ENGINES, *, exact_reps: int = 1000, mcmc_reps: int = 100,
              seed: int = 2018, mcmc: dict | None = None, figures=None, csv=None,
              mediation_data: str = "sample", mediation_priors: dict | None = None, force: bool = False,
              progress: bool = False) -> pd.DataFrame:
    """SBC of several models and engines: ranks, chi-square p-values, histograms and a CSV.

    Parameters
    ----------
    models : sequence of str
        From :data:`MODEL_NAMES` and :data:`MEDIATION`.
    engines : sequence of {"exact", "mcmc"}
        The mediation model runs with ``mcmc`` only.
    exact_reps, mcmc_reps : int
        Replicates per model with each engine (at least 1).
    seed : int
        Every (model, engine) run starts from ``default_rng(seed)``: the engines see the same
        simulated data sets.
    mcmc : dict, optional
        NUTS settings (draws, tune, chains) replacing :data:`MCMC_SETTINGS` /
        :data:`MEDIATION_MCMC_SETTINGS`.
    figures : path, optional
        Folder for the rank histograms (:func:`figure_stem` ``.png``); none written when None.
    csv : path, optional
        All ranks (with ``model``, ``engine`` and each replicate's ``divergences``), rewritten
        atomically after every replicate.
    mediation_data, mediation_priors
        See :func:`simulate_mediation`; default ``"sample"`` and :data:`MEDIATION_PRIORS`.
    force : bool
        Replace existing figures and CSV; without it an existing output file is refused before
        anything runs.
    progress : bool
        Log progress to stderr.

    Returns
    -------
    pandas.DataFrame
        One row per model, engine and parameter: ``replicates``, ``chi2_p``, ``divergences``
        (MCMC), ``seconds``.

    Raises
    ------
    BayesSEError
        A count below 1, an unknown model, engine or data mode, nothing to run, or an existing
        output without ``force``.
    """
    from bayes_se.outputs import atomic_file, check_out_file

    for name, value in (("exact_reps", exact_reps), ("mcmc_reps", mcmc_reps),
                        *(((f"mcmc {k}", v) for k, v in (mcmc or {}).items()))):
        if int(value) < 1:
            raise BayesSEError(f"{name} must be at least 1, got {value}")
    unknown = [m for m in models if m not in MODEL_NAMES + (MEDIATION,)]
    if unknown:
        raise BayesSEError(f"unknown SBC model {unknown[0]!r}; choose from {MODEL_NAMES + (MEDIATION,)}")
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        raise BayesSEError(f"unknown engine {bad[0]!r}; choose from {ENGINES}")
    _check_data_mode(mediation_data)
    runs = study_runs(models, engines)
    if not runs:
        raise BayesSEError("nothing to run: the mediation model has only the mcmc engine")
    if MEDIATION in models:  # a bad tau prior fails here, not after hours of other runs
        _mediation_prior_model(str((mediation_priors or MEDIATION_PRIORS)["tau"]))
    paths = study_outputs(models, engines, figures) if figures is not None else []
    for path in paths + ([pathlib.Path(csv)] if csv is not None else []):
        check_out_file(path, force=force)
    if figures is not None:
        pathlib.Path(figures).mkdir(parents=True, exist_ok=True)

    logging.getLogger("pymc").setLevel(logging.ERROR)  # one sampler banner per replicate is noise
    table, all_ranks = [], []
    for model, engine in runs:
        n_rep = exact_reps if engine == "exact" else mcmc_reps
        start = time.time()

        def save(so_far, model=model, engine=engine):
            if csv is not None:
                frame = pd.concat(all_ranks + [so_far.assign(model=model, engine=engine)])
                atomic_file(csv, lambda tmp: frame.to_csv(tmp, index=False), force=True)

        ranks, infos = run(model, engine, n_rep, seed, mcmc=mcmc, progress=progress, on_replicate=save,
                           mediation_data=mediation_data, mediation_priors=mediation_priors)
        seconds = time.time() - start
        div = sum(i.get("divergences", 0) for i in infos)
        if progress and model == MEDIATION:
            redraws = sum(i["redraws"] for i in infos)
            share = redraws / (redraws + sum(i["studies"] for i in infos))
            print(f"  {model}: {redraws} study-matrix redraws ({share:.1%} of draws), "
                  f"{sum(i['refit'] for i in infos)} refits at a higher target_accept, "
                  f"{sum(not i['passed'] for i in infos)} fits failing the default diagnostics, "
                  f"{div} divergences, {seconds:.0f} s", file=sys.stderr)
        for name in ranks.columns:
            p = uniformity_pvalue(ranks[name])
            if figures is not None:
                save_rank_histogram(ranks[name], pathlib.Path(figures) / f"{figure_stem(model, engine, name)}.png",
                                    f"{model}, {engine} engine: {name}\nN = {n_rep} replicates, chi-square p = {p:.2f}")
            table.append({"model": model, "engine": engine, "parameter": name, "replicates": n_rep,
                          "chi2_p": p, "divergences": div if engine == "mcmc" else None, "seconds": seconds})
        all_ranks.append(ranks.assign(model=model, engine=engine))
    return pd.DataFrame(table)


def save_rank_histogram(ranks, path, title: str) -> None:
    """Draw the rank histogram of ``ranks`` (:func:`bayes_se.plots.plot_sbc_ranks`) and write it to
    the PNG ``path`` atomically (an existing file is replaced: :func:`run_study` checks first)."""
    from bayes_se.outputs import atomic_file
    from bayes_se.plots import plot_sbc_ranks

    fig = plot_sbc_ranks(ranks, n_draws=N_RANKS, n_bins=N_BINS, title=title)
    atomic_file(path, lambda tmp: fig.savefig(tmp, format="png", dpi=200), force=True)


# -- command line --------------------------------------------------------------------------------
def add_parser(subparsers):
    """Add the ``sbc`` subcommand to an ``argparse`` subparsers object; returns the parser."""
    p = subparsers.add_parser(
        "sbc", help="simulation-based calibration of the exact and MCMC engines (rank histograms)",
        description="Simulation-based calibration (Talts et al. 2018): draw parameters from the prior, "
                    "simulate a meta-analysis, fit it, and test that the ranks of the true values among "
                    f"{N_RANKS} posterior draws are uniform. Prints the table of chi-square p-values.")
    p.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES + (MEDIATION,),
                   help=f"default: {' '.join(MODEL_NAMES)} ({MEDIATION} is MCMC only and slow)")
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES,
                   help="engines to check (default: exact mcmc)")
    p.add_argument("--exact-reps", type=int, default=1000, help="replicates per model, exact engine (default 1000)")
    p.add_argument("--mcmc-reps", type=int, default=100, help="replicates per model, MCMC (default 100)")
    p.add_argument("--mcmc-draws", type=int, default=None,
                   help="draws per chain (default 500; mediation 250)")
    p.add_argument("--mcmc-tune", type=int, default=None, help="tuning steps per chain (default 500; mediation 250)")
    p.add_argument("--mcmc-chains", type=int, default=None, help="chains (default 2)")
    p.add_argument("--seed", type=int, default=2018, help="root seed (default 2018)")
    p.add_argument("--figures", default="sbc_figures",
                   help="folder for the rank histograms (default sbc_figures)")
    p.add_argument("--csv", default=None,
                   help="also write all ranks here (with each replicate's divergences), after every replicate")
    p.add_argument("--mediation-data", choices=MEDIATION_DATA_MODES, default="sample",
                   help="simulate mediation data from raw samples (default) or from the model's own likelihood")
    p.add_argument("--mediation-tau-prior", default=MEDIATION_PRIORS["tau"],
                   help="tau prior of the mediation simulation and fit (default: %(default)s; shipped: half_normal(0.2))")
    p.add_argument("--force", action="store_true", help="replace existing histograms and CSV")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_sbc)
    return p


def cmd_sbc(args) -> int:
    """Handler of ``bayes-se sbc``: :func:`run_study`, then the table as Markdown."""
    for flag in ("exact_reps", "mcmc_reps", "mcmc_draws", "mcmc_tune", "mcmc_chains"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise BayesSEError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    mcmc = {k: v for k, v in (("draws", args.mcmc_draws), ("tune", args.mcmc_tune), ("chains", args.mcmc_chains))
            if v is not None}
    table = run_study(args.models, args.engines, exact_reps=args.exact_reps, mcmc_reps=args.mcmc_reps,
                      seed=args.seed, mcmc=mcmc, figures=args.figures, csv=args.csv,
                      mediation_data=args.mediation_data, mediation_priors={"tau": args.mediation_tau_prior},
                      force=args.force, progress=not args.quiet)
    try:
        print(table.to_markdown(index=False, floatfmt=".3f"))
    except ImportError:  # to_markdown needs the optional tabulate package
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0
