"""Runs per hour: the same planned runs through the per-run path and the batched path, in one run.

    python benchmarks/bench_runs.py --profile paper --seeds 8 --batch 4 --jobs 2

Plans ``--seeds`` seeds x nll, mix(1) and adagrpo (the profile's RL steps unless ``--steps``),
then trains and evaluates them twice into two fresh folders through the executor: once with every
run alone (``batch=1``), once with the seeds of each method in batches of ``--batch``
(``train/batched.py``), both through ``--jobs`` processes with one torch thread each. Whole runs
are timed (training, validation, test decoding, the simulated A/B test). Prints both wall times,
runs per hour, their ratio, and how far apart the two paths' per-seed results are (float rounding
of the stacked matmuls moves them a little). The world, SFT base and ranker come from the cache
(built first, not timed). ``--order`` picks which path runs first (a warm page cache favours the
second a little).
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree, installed or not
from adagrpo_core.configs import get_profile  # noqa: E402
from adagrpo_core.suite.experiments import MethodSpec, main_results  # noqa: E402
from adagrpo_core.execution import prepare  # noqa: E402

METHODS = [MethodSpec("nll", "nll"), MethodSpec("mix(1)", "mix", grpo={"lam": 1.0}), MethodSpec("adagrpo", "adagrpo")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="paper")
    p.add_argument("--seeds", type=int, default=8, help="seeds 0 .. N-1")
    p.add_argument("--batch", type=int, default=4, help="K of the batched path")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--steps", type=int, default=0, help="RL steps (0 = the profile's)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the profile's, auto)")
    p.add_argument("--order", choices=["per-run-first", "batched-first"], default="per-run-first")
    p.add_argument("--cache-dir", default=None)
    a = p.parse_args()
    prof = get_profile(a.profile).with_rl_steps(a.steps)
    if a.device:
        prof = replace(prof, rl=replace(prof.rl, device=a.device))
    prepare(prof, a.cache_dir, progress=False, jobs=a.jobs)
    seeds = list(range(a.seeds))
    paths = [("per-run", 1), (f"batched (K={a.batch})", a.batch)]
    if a.order == "batched-first":
        paths.reverse()
    times, tables = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, K in paths:
            t0 = time.perf_counter()
            rows, _ = main_results(replace(prof, batch=K), methods=METHODS, seeds=seeds, out_root=Path(tmp) / f"b{K}",
                                   cache_dir=a.cache_dir, progress=False, jobs=a.jobs)
            times[K] = time.perf_counter() - t0
            tables[K] = rows.drop(columns=["run_dir", "train_seconds"]).set_index(["method", "seed", "checkpoint"])
    n = len(METHODS) * len(seeds)
    print(f"{n} runs ({', '.join(m.name for m in METHODS)} x seeds 0-{a.seeds - 1}) of {prof.rl.steps} RL steps, "
          f"{a.profile} profile, jobs={a.jobs}, one torch thread per process; {platform.machine()}, torch "
          f"{torch.__version__}, device {prof.rl.device}")
    for name, K in paths:
        print(f"{name:18s}: {times[K]:7.1f} s, {3600 * n / times[K]:7.1f} runs per hour")
    print(f"ratio (batched / per-run runs per hour): {times[1] / times[a.batch]:.2f}x")
    diff = (tables[1] - tables[a.batch].loc[tables[1].index]).abs()
    for c in ("sim_ctr", "HR@10", "val_HR@10"):
        if c in diff:
            print(f"largest per-run difference between the paths, {c}: {diff[c].max():.4f}")


if __name__ == "__main__":
    main()
