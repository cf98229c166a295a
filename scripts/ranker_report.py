"""Ranker reliability by item exposure, at several exposure-bias strengths (quick worlds).

    python scripts/ranker_report.py                      # biases 0.25 0.5 0.75, quick worlds
    python scripts/ranker_report.py --biases 0.5 --threads 1 --out figures/quick/ranker_reliability.csv

Prints the three report tables (auc, truth, pairwise) with one block of rows per bias, the
training summary, and a gap summary (most exposed bucket minus the rarest ones).
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from adagrpo_core.reward.ranker import RankerConfig
from adagrpo_core.reward.reliability import reliability_by_bias
from adagrpo_core.common.storage import atomic_save_df
from adagrpo_core.data.world import WorldConfig


def wide(long: pd.DataFrame, table: str) -> pd.DataFrame:
    """One report table back in wide form: rows (exposure_bias, bucket), columns = metrics."""
    df = long[long["table"] == table].copy()
    df["order"] = df["bucket"].map(lambda b: 10**6 if b == "all" else int(b))
    out = df.pivot_table(index=["exposure_bias", "order", "bucket"], columns="metric", values="value",
                         aggfunc="first", sort=False)
    out = out.sort_index().droplevel("order")
    metrics = list(dict.fromkeys(df["metric"]))      # first-seen order
    return out[metrics]


def gap_summary(long: pd.DataFrame) -> pd.DataFrame:
    """Per bias: the most exposed bucket minus the mean of the two rarest buckets."""
    rows = []
    for bias, df in long.groupby("exposure_bias"):
        def by_bucket(table, metric):
            s = df[(df["table"] == table) & (df["metric"] == metric) & (df["bucket"] != "all")]
            return pd.Series(s["value"].to_numpy(dtype=float), index=s["bucket"].astype(int).to_numpy())
        rho = by_bucket("truth", "spearman")
        pw = by_bucket("pairwise", "acc_random") - by_bucket("pairwise", "truth_acc_random")
        a = by_bucket("auc", "auc")
        top = rho.index.max()
        rows.append({"exposure_bias": bias,
                     "spearman_top": rho[top], "spearman_rare2": rho[[0, 1]].mean(),
                     "spearman_gap": rho[top] - rho[[0, 1]].mean(),
                     "pairwise_shortfall_top": pw[top], "pairwise_shortfall_rare2": pw[[0, 1]].mean(),
                     "auc_top": a[top], "auc_rare2": a[[0, 1]].mean()})
    return pd.DataFrame(rows).set_index("exposure_bias")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--biases", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--profile", choices=["quick", "tiny"], default="quick", help="world size")
    p.add_argument("--world-seed", type=int, default=0)
    p.add_argument("--ranker-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", default=None, help="also write the long table as CSV (atomically)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    long = reliability_by_bias(args.biases, getattr(WorldConfig, args.profile)(seed=args.world_seed),
                               RankerConfig(seed=args.ranker_seed), progress=False)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    print(f"torch threads: {torch.get_num_threads()}; total {time.perf_counter() - t0:.0f} s\n")
    for table in ["train", "auc", "truth", "pairwise"]:
        print(f"== {table}")
        print(wide(long, table).round(4).to_string(), "\n")
    print("== gap summary (top bucket vs mean of buckets 0-1; pairwise shortfall = ranker - truth)")
    print(gap_summary(long).round(4).to_string())
    if args.out:
        atomic_save_df(long, args.out, index=False)


if __name__ == "__main__":
    main()
