"""The replicate pilot: R reward-model replicates x P policy seeds at the headline (nll, mix(0.1),
mix(0.5), mix(1), AdaGRPO, random), then the variance components of answers (b), (c) and (d)
(adagrpo_core/suite/replicates.py). Runs go to runs/<profile>/ under their own keys (each names its
replicate's ranker), so a later regeneration with replicates reuses them; tables and the figure to
figures/<profile>/replicates_*.

    python scripts/replicate_pilot.py --profile paper --rankers 10 --seeds 0 1 --plan   # what it trains
    python scripts/replicate_pilot.py --profile paper --rankers 10 --seeds 0 1          # about 35 min on 2 cores
    python scripts/replicate_pilot.py --profile paper --rankers 10 --stratified         # answer (a) per ranker
"""
from __future__ import annotations

import argparse
import os
import time

from adagrpo_core.common.paths import default_figures_dir, default_runs_dir
from adagrpo_core.configs import PROFILES, get_profile
from adagrpo_core.execution import execute
from adagrpo_core.suite.plan import run_class
from adagrpo_core.suite.replicates import crossed_plan, stratified_by_ranker, write_outputs
from adagrpo_core.suite.tables import save_table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=list(PROFILES), default="paper")
    ap.add_argument("--rankers", type=int, default=10, help="reward-model replicates 0..R-1")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="policy seeds crossed with every replicate")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs in parallel, one torch thread each")
    ap.add_argument("--steps", type=int, default=0, help="RL steps (0: the profile's)")
    ap.add_argument("--cache", default=None, help="artefact cache (default: $ADAGRPO_CACHE or .cache/)")
    ap.add_argument("--plan", action="store_true", help="print what would be trained, train nothing")
    ap.add_argument("--stratified", action="store_true",
                    help="answer (a) per replicate instead: notebook 02's analysis with each replicate's ranker")
    args = ap.parse_args()
    if args.rankers < 2 or len(args.seeds) < 2 or len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        ap.error(f"need --rankers >= 2 and at least 2 distinct non-negative --seeds, got --rankers {args.rankers} "
                 f"--seeds {' '.join(map(str, args.seeds))}")
    prof = get_profile(args.profile).with_rl_steps(args.steps)
    if args.stratified:
        table = stratified_by_ranker(prof, range(args.rankers), args.cache)
        save_table(table, default_figures_dir() / prof.figures_subdir, f"replicates_stratified_{prof.name}")
        print(table.round(4).to_markdown(index=False))
        return 0
    specs = crossed_plan(prof, range(args.rankers), args.seeds, default_runs_dir() / prof.name)
    counts = {c: sum(run_class(s) == c for s in specs) for c in ("nll", "ungated", "gated")}
    print(f"{len(specs)} runs ({counts}), {args.rankers} rankers x {len(args.seeds)} seeds, profile {prof.name}")
    if args.plan:
        return 0
    t0 = time.perf_counter()
    rows = execute(specs, prof, args.cache, jobs=args.jobs)
    print(f"runs done in {time.perf_counter() - t0:.0f} s")
    out = write_outputs(rows, default_figures_dir() / prof.figures_subdir, prof.name)
    print(out["variance"].round(6).to_markdown(index=False))
    print(out["choices"].to_markdown(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
