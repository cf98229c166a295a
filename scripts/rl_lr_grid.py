"""The RL stage's learning rate on a real dataset, chosen on validation with continued NLL.

    ADAGRPO_AMAZON_DIR=/path/to/folder python scripts/rl_lr_grid.py                 # 1e-5, 3e-5, 1e-4; seed 0
    python scripts/rl_lr_grid.py --lrs 1e-5 3e-5 1e-4 --seeds 0 1 2 --method nll

Every run is the profile's RL stage (``get_profile(...).rl``: its steps, warm-up, cosine decay and
the SFT base competing as step 0) at one lr, trained from the cached SFT base through the run
executor (``runs.plan_runs`` / ``execution.execute``), so notebook 03 reuses the run of the chosen lr.
The lr is chosen on validation HR@10 of the runs' RL checkpoints (step > 0; mean over seeds; a tie
goes to the smaller lr); test is reported for every lr, with the exact McNemar test of each run's
best and final checkpoints against the SFT base on the same test users (``eval.stats``; pooled
over seeds, Holm over the table's rows), and the t-interval of test HR@10 over seeds. Writes ``rl_lr_grid_<name>.{csv,md}`` (one row per lr, seed and checkpoint),
``rl_lr_grid_curves_<name>.{csv,md}`` (validation per checkpoint) and
``rl_lr_grid_vs_base_<name>.{csv,md}`` under ``--out`` (default ``figures/<name>/``).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from adagrpo_core.configs import get_profile
from adagrpo_core.eval.evaluate import run_hits, start_ranked
from adagrpo_core.eval.stats import holm, mcnemar_exact, mcnemar_p, mean_ci
from adagrpo_core.suite.experiments import MethodSpec
from adagrpo_core.common.paths import default_figures_dir, default_runs_dir
from adagrpo_core.pipeline import get_sft, get_sids, get_world
from adagrpo_core.runs import plan_runs
from adagrpo_core.execution import execute
from adagrpo_core.common.runtime import torch_threads
from adagrpo_core.common.storage import load_checkpoint
from adagrpo_core.suite.tables import save_table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="amazon")
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--method", default="nll", help="the gate method whose lr is chosen (continued NLL first)")
    p.add_argument("--steps", type=int, default=None, help="RL steps (default: the profile's)")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (one torch thread each)")
    p.add_argument("--runs", type=Path, default=None, help="run folders (default: runs/<profile>/lr_grid)")
    p.add_argument("--out", type=Path, default=None, help="table folder (default: figures/<profile>/)")
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args(argv)

    prof = get_profile(args.profile).with_rl_steps(args.steps or 0)
    out = args.out or default_figures_dir() / prof.name
    runs = args.runs or default_runs_dir() / prof.name / "lr_grid"
    world = get_world(prof.world, args.cache_dir)
    sids = get_sids(world, prof.sid, args.cache_dir)
    sft_dir = get_sft(world, sids, prof.policy, prof.sft, args.cache_dir, progress=False)
    base = {}
    with torch_threads(1):              # the SFT base on each seed's test draw (cached next to it)
        for s in args.seeds:
            ranked, target = start_ranked(world, sids, sft_dir / "best.pt", replace(prof.rl, seed=s))
            base[s] = (ranked[:, :10] == target[:, None]).any(1)
    base_state = load_checkpoint(sft_dir / "best.pt")
    print(f"SFT base: step {base_state['step']}, valid HR@10 {base_state['val_HR@10']:.4f}, test HR@10 "
          f"(unconstrained) {np.mean([b.mean() for b in base.values()]):.4f} on {len(base[args.seeds[0]])} users",
          flush=True)

    rows, curves = [], []
    for lr in args.lrs:
        p_lr = replace(prof, rl=replace(prof.rl, lr=lr))
        specs = plan_runs(p_lr, [MethodSpec(args.method, args.method)], args.seeds, runs / f"lr{lr:g}")
        t0 = time.perf_counter()
        res = execute(specs, p_lr, args.cache_dir, jobs=args.jobs, progress=False)
        print(f"lr {lr:g}: {len(specs)} run(s) in {time.perf_counter() - t0:.0f} s", flush=True)
        for spec in specs:
            c = pd.read_csv(Path(spec.out_dir) / "checkpoints.csv").assign(lr=lr, seed=spec.seed)
            curves.append(c)
            for r in res[res.seed == spec.seed].to_dict("records"):
                hits = run_hits(spec.out_dir, world, sids, spec.rl, r["checkpoint"])
                b = base[spec.seed]
                base_only, run_only, pv = mcnemar_exact(b, hits)
                rows.append({"lr": lr, "seed": spec.seed, "checkpoint": r["checkpoint"], "step": r["step"],
                             "val_HR@10": r["val_HR@10"], "best_rl_val_HR@10": c.loc[c.step > 0, "val_HR@10"].max(),
                             "HR@10": r["HR@10"], "NDCG@10": r["NDCG@10"], "HR@10_constrained": r["HR@10_constrained"],
                             "base_HR@10": b.mean(), "diff_vs_base": hits.mean() - b.mean(),
                             "run_only_hits": run_only, "base_only_hits": base_only, "mcnemar_p": pv,
                             "train_seconds": r["train_seconds"]})
    table = pd.DataFrame(rows)
    curves = pd.concat(curves, ignore_index=True)
    lr_str = lambda df: df.assign(lr=df.lr.map("{:g}".format))   # noqa: E731  (1e-05, not 0.0000)
    save_table(lr_str(table), out, f"rl_lr_grid_{prof.name}")
    save_table(lr_str(curves), out, f"rl_lr_grid_curves_{prof.name}")

    pooled = []
    for (lr, kind), g in table.groupby(["lr", "checkpoint"], sort=True):
        a, b = int(g.run_only_hits.sum()), int(g.base_only_hits.sum())
        pooled.append({"lr": lr, "checkpoint": kind, "seeds": len(g), "mean_best_rl_val_HR@10": g["best_rl_val_HR@10"].mean(),
                       "HR@10": g["HR@10"].mean(), "HR@10_seed_ci": mean_ci(g["HR@10"].to_numpy())[1],
                       "NDCG@10": g["NDCG@10"].mean(), "base_HR@10": g["base_HR@10"].mean(),
                       "diff_vs_base": g.diff_vs_base.mean(), "run_only_hits": a, "base_only_hits": b,
                       "mcnemar_p": mcnemar_p(b, a)})
    pooled = pd.DataFrame(pooled)
    pooled["p_holm"] = holm(pooled.mcnemar_p.to_numpy())
    save_table(lr_str(pooled), out, f"rl_lr_grid_vs_base_{prof.name}")
    val = pooled[pooled.checkpoint == "best"].sort_values(["mean_best_rl_val_HR@10", "lr"], ascending=[False, True])
    for df in (curves, table, pooled):
        print(lr_str(df).round(5).to_markdown(index=False))
    print(f"chosen on validation: lr {val.lr.iloc[0]:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
