"""Curate the Metapsy self-guided depression database into bayes_se's bundled effect table.

Source: Metapsy database "Self-guided psychological interventions for depression"
(DOI 10.5281/zenodo.12705748; commit in ``raw/source_commit.txt``), licensed ODC-By 1.0. The raw
file is read from the copy in ``data/metapsy-depression-selfguided/raw/data.csv`` (``;``
separator, ``,`` decimals); ``raw/variable_description.json`` defines its columns.

Model of the output: one post-test depression effect per comparison, ``yi`` = Hedges' g as
calculated by metapsyTools (``.g``; positive = the intervention arm has fewer symptoms than the
control arm), ``vi = .g_se^2``; comparisons of one trial share ``study_id`` (multi-arm trials share
a control arm, so fit them nested: ``load_effects(..., cluster="study_id")``).

Filters, in order (counts for the stored raw file; the script prints them):

1. ``outcome_domain == "depression"`` (drops quality of life, satisfaction, well-being):
   361 -> 307 rows.
2. ``time == "post"`` (drops follow-ups FU1, FU2): 307 -> 196 rows.
3. ``primary_calc == 1``: the database's rule for one calculation type per comparison
   (priority msd > dichotomous > change): 196 -> 156 rows, 92 trials.
4. ``.g`` and ``.g_se`` present and ``.g_se > 0``: 156 -> 156 rows.
5. One row per comparison (trial ``study`` x arms ``condition_arm1/2`` x multi-arm specification
   ``multi_arm1/2``). Where a comparison reports several depression instruments, keep the
   self-reported one (the database's majority rating), and among those the first in the
   database's row order: 156 -> 118 rows, 92 trials.

Usage: ``python scripts/curate_metapsy.py [--raw RAW_CSV] [--out OUT_CSV]``. The output is
byte-for-byte deterministic (sorted rows, round-trip float text, ``\\n`` line ends, UTF-8).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "data" / "metapsy-depression-selfguided" / "raw" / "data.csv"
OUT = ROOT / "data" / "metapsy_depression_selfguided.csv"

COMPARISON = ["study", "condition_arm1", "condition_arm2", "multi_arm1", "multi_arm2"]
COLUMNS = [
    "study", "study_id", "comparison_id", "yi", "vi", "sei", "support", "format", "year", "rob",
    "condition_arm", "control", "n_total", "instrument", "rating",
]


def read_raw(path: Path) -> pd.DataFrame:
    """The raw Metapsy export: ``;``-separated, ``,`` decimals, ``NA`` for missing."""
    raw = pd.read_csv(path, sep=";", decimal=",", na_values=["NA"], keep_default_na=False,
                      encoding="utf-8")
    return raw.drop(columns=[c for c in raw.columns if c.startswith("Unnamed")])


def curate(raw: pd.DataFrame, log=print) -> pd.DataFrame:
    """Apply the filters of the module docstring and return the tidy table."""
    log(f"rows in: {len(raw)} ({raw['study'].nunique()} trials)")
    steps = [
        ("outcome_domain == depression", raw["outcome_domain"] == "depression"),
        ("time == post", raw["time"] == "post"),
        ("primary_calc == 1", raw["primary_calc"] == 1),
        (".g and .g_se present, .g_se > 0",
         raw[".g"].notna() & raw[".g_se"].notna() & (raw[".g_se"] > 0)),
    ]
    keep = pd.Series(True, index=raw.index)
    for name, mask in steps:
        keep &= mask
        log(f"after {name}: {int(keep.sum())} rows")
    rows = raw[keep].copy()
    rows["_order"] = range(len(rows))
    rows["_self"] = (rows["rating"] != "self-report").astype(int)  # 0 = self-report first
    key = rows[COMPARISON].fillna("")  # NA multi-arm fields mean 'not a multi-arm trial'
    rows["_key"] = key.apply(lambda r: "\x1f".join(r), axis=1)
    rows = rows.sort_values(["_key", "_self", "_order"], kind="stable")
    rows = rows.drop_duplicates("_key", keep="first")
    log(f"after one row per comparison: {len(rows)} rows ({rows['study'].nunique()} trials)")

    arm1 = rows["multi_arm1"].fillna(rows["condition_arm1"])
    arm2 = rows["multi_arm2"].fillna(rows["condition_arm2"])
    out = pd.DataFrame({
        "study": rows["study"] + ": " + arm1 + " vs " + arm2,
        "study_id": rows["study"],
        "yi": rows[".g"],
        "vi": rows[".g_se"] ** 2,
        "sei": rows[".g_se"],
        "support": rows["support_unguided"],
        "format": rows["format_unguided"],
        "year": rows["year"].astype("Int64"),
        "rob": rows["rob"].astype("Int64"),
        "condition_arm": rows["condition_arm1"],
        "control": rows["condition_arm2"],
        "n_total": (rows["rand_arm1"] + rows["rand_arm2"]).round().astype("Int64"),
        "instrument": rows["instrument"],
        "rating": rows["rating"],
    })
    out = out.sort_values(["study_id", "study"], kind="stable").reset_index(drop=True)
    # labels repeat when a trial compares two arms of the same description: number them
    dup = out.groupby("study").cumcount() + 1
    many = out["study"].map(out["study"].value_counts()) > 1
    out.loc[many, "study"] = out.loc[many, "study"] + " #" + dup[many].astype(str)
    out.insert(2, "comparison_id", range(1, len(out) + 1))
    log(f"rows out: {len(out)}; trials: {out['study_id'].nunique()}")
    return out[COLUMNS]


def write(table: pd.DataFrame, path: Path) -> None:
    """Deterministic CSV: round-trip float text (repr), ``\\n`` line ends, UTF-8 without BOM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = table.to_csv(index=False, lineterminator="\n")
    path.write_bytes(text.encode("utf-8"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=RAW, help="raw Metapsy data.csv")
    parser.add_argument("--out", type=Path, default=OUT, help="curated CSV to write")
    args = parser.parse_args(argv)
    write(curate(read_raw(args.raw)), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
