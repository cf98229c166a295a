"""One AdaGRPO step (G rollouts, ranker rewards, diagnostics, gate, loss, backward) against one
NLL step on the same batch and model. Prints the time of each and their ratio.

    python benchmarks/bench_step.py --world quick --batch 64 --G 8

The shared history (encoded once, used by the G rollouts and by the differentiable pass) is what
keeps the ratio small. Weights are untrained: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree, installed or not
from adagrpo_core.rl.gate import GateConfig
from adagrpo_core.rl.grpo import GRPOConfig
from adagrpo_core.model.policy import PolicyConfig
from adagrpo_core.reward.ranker import Ranker, RankerConfig
from adagrpo_core.reward.reward_model import RewardConfig, RewardModel
from adagrpo_core.model.semantic_ids import SIDConfig, build_semantic_ids
from adagrpo_core.model.policy import build_policy
from adagrpo_core.rl.step import compute_loss, sample_and_score
from adagrpo_core.data.world import WorldConfig, build_world


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", choices=["tiny", "quick"], default="quick")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--G", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    world = build_world(getattr(WorldConfig, a.world)())
    sids = build_semantic_ids(world.item_features, SIDConfig())
    model = build_policy(sids, PolicyConfig(), a.device).train()
    ranker = Ranker(RankerConfig(device=a.device), world.item_features, world.item_category).to(a.device).eval()
    reward = RewardModel(ranker, sids, RewardConfig(output="prob"))
    batch = world.examples("train", model.cfg.max_history).subset(range(a.batch))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    grpo = GRPOConfig(num_generations=a.G)
    gen = torch.Generator(device=a.device).manual_seed(0)
    codes, trie = torch.as_tensor(sids.codes, device=a.device), sids.trie.to(a.device)

    def step(method):
        gate = GateConfig(method=method)
        loss, _ = compute_loss(sample_and_score(model, reward, batch, codes, trie, grpo, gate, gen), grpo, gate)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times = {}
    for method in ("nll", "adagrpo"):
        step(method)  # warm-up
        ts = []
        for _ in range(a.repeats):
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step(method)
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()
            ts.append(time.perf_counter() - t0)
        times[method] = statistics.median(ts)
        print(f"{method:8s} step: {1000 * times[method]:8.1f} ms (median of {a.repeats})")
    print(f"world={a.world} batch={a.batch} G={a.G} threads={a.threads} device={a.device}")
    print(f"AdaGRPO / NLL step-cost ratio: {times['adagrpo'] / times['nll']:.2f}")


if __name__ == "__main__":
    main()
