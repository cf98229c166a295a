"""Throughput of the run executor: notebook 03's runs, serial against a process pool, in one run.

    python benchmarks/bench_jobs.py --jobs 2 --steps 20

Trains the same list of runs (notebook 03's 8 methods x the given seeds, short RL runs) twice into
two fresh folders: once in this process (``jobs=1``), once through a pool of ``--jobs`` workers,
one torch thread each. Prints both wall times, the throughput ratio, and checks that the two
result tables are identical. The world, SFT base and ranker come from the cache (built first, not
timed).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from adagrpo_core.configs import get_profile
from adagrpo_core.suite.experiments import default_methods, main_results
from adagrpo_core.execution import prepare


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="quick")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--steps", type=int, default=20, help="RL steps per run (short runs keep this quick)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    a = p.parse_args()
    prof = get_profile(a.profile).with_rl_steps(a.steps)
    prepare(prof, progress=False)
    methods = default_methods()
    times, tables = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for jobs in (1, a.jobs):
            t0 = time.perf_counter()
            rows, _ = main_results(prof, methods=methods, seeds=a.seeds, out_root=Path(tmp) / f"jobs{jobs}",
                                   progress=False, jobs=jobs)
            times[jobs] = time.perf_counter() - t0
            tables[jobs] = rows.drop(columns=["run_dir", "train_seconds"]).to_csv(index=False)
    n = len(methods) * len(a.seeds)
    print(f"{n} runs of {a.steps} RL steps ({a.profile} profile)")
    print(f"serial (jobs=1)      : {times[1]:7.1f} s")
    print(f"process pool (jobs={a.jobs}): {times[a.jobs]:7.1f} s")
    print(f"throughput ratio     : {times[1] / times[a.jobs]:.2f}x")
    print(f"identical result tables: {tables[1] == tables[a.jobs]}")


if __name__ == "__main__":
    main()
