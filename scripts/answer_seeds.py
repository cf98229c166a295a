"""Train the runs where an answer is decided, at the profile's ``suite.answer_seeds`` (ten on the
paper profile), before the notebooks read them back from the run cache.

    python scripts/answer_seeds.py --profile paper --jobs 2                          # every point
    python scripts/answer_seeds.py --profile paper --only nb08_bias:-4 nb08_bias_reliability:-4

The points are ``suite.answer_points``: notebook 03's headline methods, notebook 07's audit, and
notebook 08's main and reliability sets at the listed bias values. ``--only TABLE[:VALUE]`` runs
those points first, in the order given (the rest follow unless ``--only`` is given alone). The run
folders and keys are the notebooks' own (``runs/<profile>/seed<k>/<method>-<key>/``), so running
notebooks 03, 07 and 08 afterwards trains nothing more at these points. A run's wall time is in
its ``results.csv`` (``train_seconds``); this script prints each point's total.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adagrpo_core.configs import ANSWER_TABLES, PROFILES, get_profile  # noqa: E402
from adagrpo_core.common.paths import default_runs_dir  # noqa: E402
from adagrpo_core.suite.phase import answer_plans  # noqa: E402
from adagrpo_core.execution import execute_planned  # noqa: E402


def parse_only(items) -> list[tuple[str, float | None]]:
    out = []
    for item in items or []:
        table, _, value = item.partition(":")
        if table not in ANSWER_TABLES:
            raise SystemExit(f"--only: unknown table {table!r}; known: {list(ANSWER_TABLES)}")
        try:
            out.append((table, float(value) if value else None))
        except ValueError:
            raise SystemExit(f"--only: the value of {item!r} is not a number") from None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", choices=list(PROFILES), default="paper")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel, one torch thread each")
    ap.add_argument("--runs", type=Path, default=None, help="run root (default: runs/ of the checkout)")
    ap.add_argument("--cache-dir", type=Path, default=None, help="artefact cache (default: .cache/ of the checkout)")
    ap.add_argument("--only", nargs="+", metavar="TABLE[:VALUE]", help="these points only, in this order")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="instead of the profile's answer_seeds")
    ap.add_argument("--batch", type=int, default=None, metavar="K",
                    help="seeds of a method trained together on a stacked policy (default: the profile's; "
                         "K > 1 pays on a GPU, not on a CPU core; the runs' keys name their batch)")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    if args.batch is not None and args.batch < 1:
        raise SystemExit(f"--batch must be >= 1, got {args.batch}")
    prof = get_profile(args.profile)
    if args.batch:
        prof = replace(prof, batch=args.batch)
    seeds = args.seeds or prof.suite.answer_seeds
    out_root = (args.runs or default_runs_dir()) / prof.name
    plans = answer_plans(prof, seeds, out_root)               # [(table, value, profile, specs)], checked first
    only = parse_only(args.only)
    order = [p for o in only for p in plans if p[0] == o[0] and (o[1] is None or p[1] == o[1])]
    if not only:
        order = plans
    print(f"{len(order)} points, seeds {seeds}: " + ", ".join(f"{t}{'' if v is None else f':{v:g}'}"
                                                            for t, v, _, _ in order), flush=True)
    for table, value, p, specs in order:
        t0 = time.perf_counter()
        rows = execute_planned([(p, specs)], args.cache_dir, jobs=args.jobs)
        point = table if value is None else f"{table}:{value:g}"
        print(f"[answer_seeds] {point}: {rows.run_dir.nunique()} runs ready, {time.perf_counter() - t0:.0f} s "
              f"(mean train_seconds {rows.drop_duplicates('run_dir').train_seconds.mean():.1f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
