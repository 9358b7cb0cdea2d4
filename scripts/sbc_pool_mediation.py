"""Pool mediation SBC rank files and redraw the rank histograms.

``bayes-se sbc --models mediation --engines mcmc --csv RUN.csv --seed S ...`` writes one CSV of
ranks per run; this script stacks those runs with the committed ranks of one study (adding them
there, with their seed), recomputes the chi-square uniformity p-value of every parameter (the test
of :func:`bayes_se.sbc.uniformity_pvalue`) and redraws that study's rank histograms in
``docs/figures`` (replacing them: that is its purpose). The studies:

* ``sample`` (``docs/sbc_mediation_ranks.csv``): data are sample correlations of raw
  multivariate-normal samples (``--mediation-data sample``, tau ~ HalfNormal(0.05));
* ``likelihood`` (``docs/sbc_mediation_likelihood_ranks.csv``): data drawn from the fitted
  model's own likelihood, untruncated, with the shipped tau ~ HalfNormal(0.2)
  (``--mediation-data likelihood --mediation-tau-prior "half_normal(0.2)"``).

A CSV to add has one row per replicate, in seed order, or already ``seed`` and ``replicate``
columns (several seeds pooled by a parallel run).

Usage: ``python scripts/sbc_pool_mediation.py [--study likelihood] [--add SEED=RUN.csv | --add RUNS.csv ...]``
"""

from __future__ import annotations

import argparse
import pathlib

import pandas as pd

from bayes_se.sbc import parameters, save_rank_histogram, uniformity_pvalue

STUDIES = {"sample": (pathlib.Path("docs/sbc_mediation_ranks.csv"), "sbc_mediation_"),
           "likelihood": (pathlib.Path("docs/sbc_mediation_likelihood_ranks.csv"), "sbc_mediation_likelihood_")}
FIGURES = pathlib.Path("docs/figures")
PARAMS = parameters("mediation")  # rho[X,M], rho[X,Y], rho[M,Y], tau[...], a, b, indirect


def figure_name(param: str, prefix: str = "sbc_mediation_") -> str:
    return prefix + param.replace("[", "_").replace("]", "").replace(",", "_") + ".png"


def read_run(item: str) -> pd.DataFrame:
    """``SEED=PATH`` (one run's rows in order) or ``PATH`` (with seed and replicate columns)."""
    seed, sep, path = item.partition("=")
    if not sep:
        run = pd.read_csv(seed)
        if not {"seed", "replicate"} <= set(run.columns):
            raise SystemExit(f"{seed}: no seed/replicate columns; add it as SEED={seed}")
        return run
    run = pd.read_csv(path)
    run.insert(0, "replicate", range(1, len(run) + 1))
    run.insert(0, "seed", int(seed))
    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", choices=tuple(STUDIES), default="sample")
    parser.add_argument("--add", action="append", default=[], metavar="SEED=CSV | CSV")
    args = parser.parse_args(argv)
    path, prefix = STUDIES[args.study]
    pooled = pd.read_csv(path) if path.exists() else None
    for item in args.add:
        run = read_run(item)
        keep = ["seed", "replicate"] + PARAMS + (["divergences"] if "divergences" in run else [])
        run = run[keep]
        if pooled is not None and set(run["seed"]) & set(pooled["seed"]):
            raise SystemExit(f"seeds {sorted(set(run['seed']) & set(pooled['seed']))} are already pooled")
        pooled = run if pooled is None else pd.concat([pooled, run], ignore_index=True)
    if pooled is None:
        raise SystemExit(f"{path} does not exist yet: --add a run")
    pooled.to_csv(path, index=False)
    print(f"{len(pooled)} replicates from seeds {sorted(set(pooled['seed']))}")
    print("| parameter | replicates | chi-square p | rank histogram |\n|---|---|---|---|")
    for param in PARAMS:
        ranks = pooled[param].to_numpy()
        name = figure_name(param, prefix)
        p = uniformity_pvalue(ranks)
        save_rank_histogram(ranks, FIGURES / name, f"mediation ({args.study} data): {param}\n"
                                                   f"N = {len(ranks)} replicates, chi-square p = {p:.2f}")
        print(f"| `{param}` | {len(ranks)} | {p:.3f} | [histogram](figures/{name}) |")


if __name__ == "__main__":
    main()
