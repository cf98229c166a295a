"""Command-line entry points.

    python -m adagrpo_core.cli reproduce --profile quick      # the main job (reproduce.sh)
    python -m adagrpo_core.cli main-results --seeds 0 1 2     # methods x seeds table (DESIGN 3)

Tables are printed and written (CSV + Markdown) under ``figures/`` atomically.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from .utils import save_table


def profile_configs(profile: str):
    """(Profile, RankerConfig, GRPOConfig, GateConfig, TrainConfig) for 'quick', 'full', 'tiny' or
    'amazon' (Amazon Beauty, the public benchmark)."""
    from .gate import GateConfig
    from .grpo import GRPOConfig
    from .pipeline import Profile
    from .policy import PolicyConfig
    from .ranker import RankerConfig
    from .semantic_ids import SIDConfig
    from .sft import SFTConfig
    from .trainer import TrainConfig
    from .worlds import WorldConfig
    if profile == "quick":
        return (Profile(), RankerConfig(), GRPOConfig(), GateConfig(), TrainConfig(test_samples=0))
    if profile == "full":
        prof = Profile(world=WorldConfig.full(), sid=SIDConfig(num_levels=3, codebook_size=64),
                       policy=PolicyConfig(n_layer=4, n_embd=128, max_history=20),
                       sft=SFTConfig(steps=4000, batch_size=256, ckpt_every=500))
        return prof, RankerConfig(), GRPOConfig(), GateConfig(), TrainConfig(steps=1000, batch_size=128, ckpt_every=100)
    if profile == "tiny":
        prof = Profile(world=WorldConfig.tiny(), sid=SIDConfig(num_levels=2, codebook_size=8),
                       policy=PolicyConfig(n_embd=32, max_history=5),
                       sft=SFTConfig(steps=30, ckpt_every=10, eval_samples=50))
        return (prof, RankerConfig(max_epochs=2), GRPOConfig(num_generations=4), GateConfig(),
                TrainConfig(steps=4, batch_size=16, ckpt_every=2, eval_samples=50, test_samples=100))
    if profile == "amazon":
        # Amazon Beauty with LETTER's semantic IDs; the files come from $ADAGRPO_AMAZON_DIR or a
        # verified download. The ranker learns from semi-synthetic exposure (see amazon.py).
        from .amazon import AmazonConfig
        prof = Profile(world=AmazonConfig(), policy=PolicyConfig(n_embd=64, max_history=20),
                       sft=SFTConfig(steps=3000, batch_size=128, ckpt_every=500, eval_samples=2000))
        return (prof, RankerConfig(), GRPOConfig(), GateConfig(),
                TrainConfig(steps=200, batch_size=64, ckpt_every=50, eval_samples=2000, test_samples=5000))
    raise ValueError(f"profile must be one of {sorted(PROFILES)}, got profile={profile!r}")


PROFILES = ("quick", "full", "tiny", "amazon")


def reproduce(profile: str, out: Path, cache_dir=None) -> int:
    """World summary and exposure bias, semantic IDs, SFT vs most-popular, ranker reliability."""
    from .experiments import sft_reference
    from .pipeline import get_ranker, get_sids, get_world
    from .ranker import reliability_report
    from .worlds import exposure_concentration

    prof, rcfg, *_ = profile_configs(profile)
    sfx = "" if profile == "quick" else f"_{profile}"    # the quick profile's tables keep their names
    t0 = time.perf_counter()
    world = get_world(prof.world, cache_dir, progress=True)
    print(json.dumps(world.summary(), indent=2))
    if hasattr(world, "true_utility"):   # the simulated world: exposure against true demand
        conc = exposure_concentration(world).reset_index()
        print(conc.round(3).to_markdown(index=False))
        save_table(conc, out, f"world_exposure_concentration{sfx}")
    sids = get_sids(world, prof.sid, cache_dir)
    print(f"semantic IDs: {sids.length} tokens, codebooks {sids.codebook_sizes}, "
          f"collisions before the uniqueness token: {sids.collisions_before_uniqueness}")
    ref = sft_reference(prof, cache_dir)
    print(ref[["method", "HR@5", "HR@10", "HR@20", "NDCG@10", "halluc"] +
              [c for c in ("HR@10_unc", "halluc_unc") if c in ref]].round(4).to_markdown(index=False))
    save_table(ref, out, f"sft_vs_most_popular{sfx}")
    ranker = get_ranker(world, rcfg, cache_dir)
    report = reliability_report(world, ranker)
    for name, df in report.items():
        df = df.reset_index() if df.index.name else df
        print(f"\nranker reliability: {name}\n" + df.round(4).to_markdown(index=False))
        save_table(df, out, f"ranker_reliability_{name}{sfx}")
    print(f"\ndone in {time.perf_counter() - t0:.0f} s; tables in {out}/")
    return 0


def main_results_cmd(profile: str, seeds, steps: int | None, out: Path, runs: Path, cache_dir=None) -> int:
    from .experiments import main_results
    prof, rcfg, grpo, gate, train = profile_configs(profile)
    if steps is not None:
        train = replace(train, steps=steps, ckpt_every=max(1, min(train.ckpt_every, steps)))
    rows, summary = main_results(prof, rcfg, grpo, gate, train, seeds=seeds, out_root=runs / profile,
                                 cache_dir=cache_dir)
    print(summary.round(4).to_markdown(index=False))
    save_table(rows, out, f"main_results_rows_{profile}")
    save_table(summary, out, f"main_results_{profile}")
    return 0


def stratified_cmd(profile: str, out: Path, cache_dir=None, split: str = "test", checkpoint: str = "best",
                   top_n: int = 20, k: int = 10) -> int:
    """Tables 1-3 of the stratified analysis for a profile (what notebook 02 shows, without plots)."""
    from .analysis import StrataConfig, run_stratified
    prof, rcfg, *_ = profile_configs(profile)
    cfg = StrataConfig(top_n=top_n, k=k)          # validated before any expensive work
    t0 = time.perf_counter()
    _, tables = run_stratified(prof, rcfg, cfg, cache_dir, split, checkpoint)
    for name, df in tables.items():
        print(f"\n{name}\n" + (df.round(4).to_markdown(index=False) if len(df) else "(too few samples)"))
        if len(df):
            save_table(df, out, f"stratified_{name}_{profile}_{split}")
    print(f"\ndone in {time.perf_counter() - t0:.0f} s; tables in {out}/")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m adagrpo_core.cli")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", type=Path, default=Path("figures"), help="where tables are written")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reproduce", help="the main job: world, SFT, ranker reliability")
    r.add_argument("--profile", choices=list(PROFILES), default="quick")
    m = sub.add_parser("main-results", help="every method x seeds, best and final checkpoints")
    m.add_argument("--profile", choices=list(PROFILES), default="quick")
    m.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    m.add_argument("--steps", type=int, default=None, help="override RL steps")
    m.add_argument("--runs", type=Path, default=Path("runs"), help="run folders (resumable)")
    st = sub.add_parser("stratified", help="the stratified analysis (paper Tables 1-3) of the SFT base")
    st.add_argument("--profile", choices=list(PROFILES), default="quick")
    st.add_argument("--split", choices=["test", "valid"], default="test")
    st.add_argument("--checkpoint", choices=["best", "final"], default="best")
    st.add_argument("--top-n", type=int, default=20, help="candidates per sample (beam width)")
    st.add_argument("--k", type=int, default=10, help="HR@k")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cmd == "reproduce":
        return reproduce(args.profile, args.out)
    if args.cmd == "main-results":
        return main_results_cmd(args.profile, args.seeds, args.steps, args.out, args.runs)
    if args.cmd == "stratified":
        return stratified_cmd(args.profile, args.out, split=args.split, checkpoint=args.checkpoint,
                              top_n=args.top_n, k=args.k)
    return 2


if __name__ == "__main__":
    sys.exit(main())
