"""Does a table regenerated elsewhere (another kind of CPU, other seeds) agree with a committed one,
in distribution rather than in bits? For each row the two tables share (matched on the key
columns) and each value column with a t half-width ``<column>_ci`` in the committed table, it
says whether the other table's mean lies inside the committed mean ± half-width.

    python scripts/compare_tables.py figures/paper/nb08_phase_bias_reliability_paper.csv \\
        figures/paper/nb08_5seeds/nb08_phase_bias_reliability_paper.csv --keys value method --columns sim_ctr_gain

Prints one line per (row, column) and the share inside; exits 0 (it reports, it does not judge).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def compare(committed: pd.DataFrame, other: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """One row per shared (keys, column): the committed mean, its half-width and seeds, the other
    table's mean and seeds, and ``inside`` (other mean within committed mean ± half-width)."""
    for name, t in (("committed", committed), ("other", other)):
        missing = [c for c in keys + columns if c not in t]
        if missing:
            raise ValueError(f"the {name} table lacks the columns {missing}")
    if any(f"{c}_ci" not in committed for c in columns):
        raise ValueError(f"the committed table needs a half-width column <column>_ci for each of {columns}")
    both = committed.merge(other, on=keys, suffixes=("", "_other"))
    out = []
    for _, r in both.iterrows():
        for c in columns:
            lo, hi = r[c] - r[f"{c}_ci"], r[c] + r[f"{c}_ci"]
            out.append({**{k: r[k] for k in keys}, "column": c, "committed": r[c], "committed_ci": r[f"{c}_ci"],
                        "committed_seeds": r.get("seeds"), "other": r[f"{c}_other"],
                        "other_seeds": r.get("seeds_other"), "inside": bool(lo <= r[f"{c}_other"] <= hi)})
    return pd.DataFrame(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("committed", type=Path, help="the committed table (CSV) with <column>_ci half-widths")
    ap.add_argument("other", type=Path, help="the table regenerated elsewhere (CSV)")
    ap.add_argument("--keys", nargs="+", default=["value", "method"], help="columns that identify a row")
    ap.add_argument("--columns", nargs="+", default=["sim_ctr_gain", "HR@10_gain"], help="mean columns to compare")
    args = ap.parse_args(argv)
    for p in (args.committed, args.other):
        if not p.exists():
            raise SystemExit(f"no such table: {p}")
    t = compare(pd.read_csv(args.committed), pd.read_csv(args.other), args.keys, args.columns)
    if t.empty:
        raise SystemExit("the two tables share no row on the key columns")
    print(t.round(4).to_markdown(index=False))
    print(f"{int(t.inside.sum())} of {len(t)} regenerated means lie inside the committed interval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
