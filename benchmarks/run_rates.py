"""Measure this machine kind's run rates for the planner (``python -m adagrpo_core.cli plan``) and
store them in benchmarks/results/run_rates.json under the kind's digest (common/machine.py).

From empty caches in a temporary folder, on the profile's own configs, ``jobs`` at a time (one torch
thread each, as the notebooks run):

* the world, the SFT base and the ranker side by side (``execution.prepare``): notebook 01's training;
* for each run class of the planner (nll, ungated: mix(1), gated: adagrpo), ``jobs`` x ``rounds``
  runs of seeds 0.. through one pool of ``jobs``: wall time / runs is the class's seconds per run;
* one re-logged ranker (notebook 08's placement) alone, and ``jobs`` ensemble members at once.

    python benchmarks/run_rates.py --profile paper        # about 6 minutes on 2 cores
    python benchmarks/run_rates.py --profile quick        # about 3 minutes
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from adagrpo_core.common.machine import kind_digest, kind_name, machine_kind
from adagrpo_core.common.paths import repo_root
from adagrpo_core.configs import get_profile
from adagrpo_core.pipeline import get_ensemble, get_ranker, get_world
from adagrpo_core.runs import MethodSpec, plan_runs
from adagrpo_core.execution import execute, prepare
from adagrpo_core.common.runtime import torch_threads
from adagrpo_core.suite.plan import RATES_FILE, load_rates

CLASSES = {"nll": MethodSpec("nll", "nll"), "ungated": MethodSpec("mix(1)", "mix", grpo={"lam": 1.0}),
           "gated": MethodSpec("adagrpo", "adagrpo")}


def measure(profile: str, jobs: int, rounds: int) -> dict:
    prof = get_profile(profile)
    out = {"steps": prof.rl.steps, "G": prof.grpo.num_generations, "jobs": jobs, "rounds": rounds, "run_seconds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        prepare(prof, tmp, progress=False, jobs=jobs)
        out["notebook_seconds"] = {"01_world_and_ranker": round(time.perf_counter() - t, 1)}
        for cls, m in CLASSES.items():
            specs = plan_runs(prof, [m], list(range(jobs * rounds)), Path(tmp) / "runs")
            t = time.perf_counter()
            execute(specs, prof, tmp, jobs=jobs, progress=False)
            out["run_seconds"][cls] = round((time.perf_counter() - t) / len(specs), 2)
            print(f"[rates] {cls}: {out['run_seconds'][cls]} s per run, {jobs} at a time", flush=True)
        world = get_world(prof.world, tmp)
        t = time.perf_counter()
        with torch_threads(1):
            get_ranker(world, prof.ranker, tmp, progress=False, logging_bias=0.95, log_share=0.5)
        out["ranker_seconds"] = round(time.perf_counter() - t, 1)
        ens = replace(prof.ensemble, members=jobs)
        t = time.perf_counter()
        get_ensemble(world, prof.ranker, ens, tmp, jobs=jobs)
        out["member_seconds"] = round((time.perf_counter() - t) / jobs, 1)
        print(f"[rates] ranker {out['ranker_seconds']} s; ensemble member {out['member_seconds']} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs at once (default: one per core)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="runs per job and class: the pool's start-up is paid once per call, as in a notebook")
    args = ap.parse_args()
    kind = machine_kind(threads=1)
    rates = measure(args.profile, args.jobs, args.rounds)
    root = repo_root() or Path(".")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    rates["measured"] = f"{time.strftime('%Y-%m-%d')}, commit {commit}, {args.jobs} jobs on {os.cpu_count()} cores"
    path = root / RATES_FILE
    data = load_rates(path) or {"kinds": {}}
    entry = data["kinds"].setdefault(kind_digest(kind), {"name": kind_name(kind), "kind": kind, "profiles": {}})
    kept = entry["profiles"].get(args.profile, {})       # a notebook pass's fixed time comes from a notebook run
    rates.update({k: v for k, v in kept.items() if k.startswith("pass_seconds")})
    entry["profiles"][args.profile] = rates
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(json.dumps(rates, indent=2))


if __name__ == "__main__":
    main()
