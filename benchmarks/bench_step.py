"""One AdaGRPO step (G rollouts, ranker rewards, diagnostics, gate, loss, backward) against one
NLL step on the same batch and model. Prints the time of each and their ratio.

    python benchmarks/bench_step.py --world quick --batch 64 --G 8 --threads 1 --repeats 20

The shared history (encoded once, used by the G rollouts and by the differentiable passes) and a
differentiable rollout pass over only the samples whose GRPO term has a gradient (admitted, with a
non-zero advantage) are what keep the ratio small. The all-rows step, with that pass over every
rollout (``all_rows=True``), is timed in the same run for comparison. Rounds interleave the
variants, and each ratio is the median of the per-round ratios. Weights are untrained: speed does
not depend on them.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree, installed or not
from adagrpo_core.rl.gate import GateConfig
from adagrpo_core.rl.grpo import GRPOConfig
from adagrpo_core.model.policy import PolicyConfig
from adagrpo_core.reward.ranker import Ranker, RankerConfig
from adagrpo_core.reward.reward_model import RewardConfig, RewardModel
from adagrpo_core.model.semantic_ids import SIDConfig, build_semantic_ids
from adagrpo_core.model.policy import build_policy, load_policy
from adagrpo_core.rl.step import compute_loss, sample_and_score
from adagrpo_core.data.world import WorldConfig, build_world


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", choices=["tiny", "quick"], default="quick")
    p.add_argument("--weights", choices=["trained", "random"], default="trained",
                   help="trained: the profile's cached SFT policy and ranker (built on first use), so the "
                        "gate admits what it admits in a real run; random: untrained weights")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--G", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.weights == "trained":
        from adagrpo_core.configs import get_profile
        from adagrpo_core.execution import _artefacts
        prof = get_profile(a.world)
        world, sids, sft_dir, ranker, _ = _artefacts(prof, None)
        model = load_policy(sft_dir / "best.pt", sids, a.device).train()
        reward = RewardModel(ranker.to(a.device), sids, prof.reward)
        grpo_cfg, gate_cfg = replace(prof.grpo, num_generations=a.G), prof.gate
    else:
        world = build_world(getattr(WorldConfig, a.world)())
        sids = build_semantic_ids(world.item_features, SIDConfig())
        model = build_policy(sids, PolicyConfig(), a.device).train()
        ranker = Ranker(RankerConfig(device=a.device), world.item_features, world.item_category).to(a.device).eval()
        reward = RewardModel(ranker, sids, RewardConfig(output="prob"))
        grpo_cfg, gate_cfg = GRPOConfig(num_generations=a.G), GateConfig()
    train = world.examples("train", model.cfg.max_history)
    batch = train.subset(np.random.default_rng(0).choice(len(train), a.batch, replace=False))  # as a run draws
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    grpo = grpo_cfg
    gen = torch.Generator(device=a.device).manual_seed(0)
    codes, trie = torch.as_tensor(sids.codes, device=a.device), sids.trie.to(a.device)

    def step(method, all_rows=False):
        gate = replace(gate_cfg, method=method)
        scored = sample_and_score(model, reward, batch, codes, trie, grpo, gate, gen, all_rows=all_rows)
        loss, m = compute_loss(scored, grpo, gate)
        admitted.setdefault(method, []).append(m["admission_rate"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn):
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    admitted = {}
    variants = {"nll": lambda: step("nll"), "adagrpo": lambda: step("adagrpo"), "mix": lambda: step("mix"),
                "adagrpo, all rows": lambda: step("adagrpo", all_rows=True)}
    for fn in variants.values():
        fn()  # warm-up
    times = {k: [] for k in variants}
    for _ in range(a.repeats):     # interleaved round by round, so load drift hits every variant alike
        for k, fn in variants.items():
            times[k].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:22s} step: {1000 * v:8.1f} ms (median of {a.repeats})")
    ratio = [x / y for x, y in zip(times["adagrpo"], times["nll"])]
    old = [x / y for x, y in zip(times["adagrpo, all rows"], times["nll"])]
    gain = [x / y for x, y in zip(times["adagrpo, all rows"], times["adagrpo"])]
    print(f"world={a.world} batch={a.batch} G={a.G} threads={a.threads} device={a.device}; "
          f"AdaGRPO admitted {statistics.mean(admitted['adagrpo']):.2f} of the batch")
    mix = [x / y for x, y in zip(times["mix"], times["nll"])]
    print(f"mix (every sample admitted) / NLL step-cost ratio: {statistics.median(mix):.2f}")
    print(f"AdaGRPO / NLL step-cost ratio: {statistics.median(ratio):.2f} (median of per-round ratios, "
          f"range {min(ratio):.2f}-{max(ratio):.2f})")
    print(f"  with the differentiable pass over every rollout: {statistics.median(old):.2f}; "
          f"the gated pass makes the step {statistics.median(gain):.2f}x faster")

if __name__ == "__main__":
    main()
