"""Pool mediation SBC rank files and redraw the rank histograms.

``python scripts/sbc.py --models mediation --csv RUN.csv --seed S ...`` writes one CSV of ranks
per run; this script stacks those runs with the committed ranks in ``docs/sbc_mediation_ranks.csv``
(adding them there, with their seed), recomputes the chi-square uniformity p-value of every
parameter (the test of ``scripts/sbc.py``) and redraws ``docs/figures/sbc_mediation_<param>.png``.

Usage: ``python scripts/sbc_pool_mediation.py [--add SEED=RUN.csv ...]``
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import pandas as pd

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from sbc import plot_ranks, uniformity_pvalue  # noqa: E402

POOLED = pathlib.Path("docs/sbc_mediation_ranks.csv")
FIGURES = pathlib.Path("docs/figures")
PARAMS = ["rho[X,M]", "rho[X,Y]", "rho[M,Y]", "tau[X,M]", "tau[X,Y]", "tau[M,Y]", "a", "b", "indirect"]


def figure_name(param: str) -> str:
    return "sbc_mediation_" + param.replace("[", "_").replace("]", "").replace(",", "_") + ".png"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--add", action="append", default=[], metavar="SEED=CSV")
    args = parser.parse_args(argv)
    pooled = pd.read_csv(POOLED)
    for item in args.add:
        seed, _, path = item.partition("=")
        run = pd.read_csv(path)[PARAMS]
        if int(seed) in set(pooled["seed"]):
            raise SystemExit(f"seed {seed} is already pooled")
        run.insert(0, "replicate", range(1, len(run) + 1))
        run.insert(0, "seed", int(seed))
        pooled = pd.concat([pooled, run], ignore_index=True)
    pooled.to_csv(POOLED, index=False)
    print(f"{len(pooled)} replicates from seeds {sorted(set(pooled['seed']))}")
    print("| parameter | replicates | chi-square p | rank histogram |\n|---|---|---|---|")
    for param in PARAMS:
        ranks = pooled[param].to_numpy()
        name = figure_name(param)
        plot_ranks(ranks, FIGURES / name, f"mediation: {param} ({len(ranks)} replicates)")
        print(f"| `{param}` | {len(ranks)} | {uniformity_pvalue(ranks):.3f} | [histogram](figures/{name}) |")


if __name__ == "__main__":
    main()
