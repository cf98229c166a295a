"""How large a batch of runs fits, and what one step costs per run as K grows.

    python benchmarks/batch_capacity.py --profile paper --device cuda --ks 1 8 32 128 512

For each K, K copies of the profile's SFT policy are stacked (``model/stacked.py``) and take three
AdaGRPO steps (rollouts, reward, diagnostics, gate, loss, backward, per-run clipping, AdamW) on K
batches, then decode K validation batches of 256 users with beam search. Prints the seconds per
step per run, the seconds per decoded user, and on CUDA the peak memory; stops at the first K that
runs out of memory (the largest K that fits is the one before). The SFT base comes from the cache.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree, installed or not
from adagrpo_core.configs import get_profile  # noqa: E402
from adagrpo_core.eval.evaluate import ranked_by_mode_runs  # noqa: E402
from adagrpo_core.model.policy import load_policy  # noqa: E402
from adagrpo_core.model.stacked import stack_policies  # noqa: E402
from adagrpo_core.reward.sources import build_reward  # noqa: E402
from adagrpo_core.rl.step import compute_loss, sample_and_score_runs  # noqa: E402
from adagrpo_core.execution import _artefacts, prepare  # noqa: E402
from adagrpo_core.train.batched import clip_per_run  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="paper")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    prof = get_profile(a.profile)
    prepare(prof, progress=False)
    world, sids, sft_dir, ranker, sasrec, coverage = _artefacts(prof, None)
    device = torch.device(a.device)
    reward = build_reward(world, sids, ranker.to(device), prof.reward, sasrec=sasrec)
    plain = load_policy(sft_dir / "best.pt", sids, device)
    train = world.examples("train", plain.cfg.max_history)
    val = world.examples("valid", plain.cfg.max_history)
    codes, trie = torch.as_tensor(sids.codes, device=device), sids.trie.to(device)
    B = prof.rl.batch_size
    print(f"{a.profile} profile, B={B}, G={prof.grpo.num_generations}, device {device}"
          f"{' ' + torch.cuda.get_device_name() if device.type == 'cuda' else f', {a.threads} thread(s)'}")
    print("| K | s per step per run | s per decoded user | peak memory (GiB) |\n| ---: | ---: | ---: | ---: |")
    for K in a.ks:
        try:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            model = stack_policies([plain] * K).train()
            opt = torch.optim.AdamW(model.parameters(), lr=prof.rl.lr)
            gens = [torch.Generator(device=device).manual_seed(k) for k in range(K)]
            rng = np.random.default_rng(0)
            times = []
            for _ in range(a.steps + 1):                       # the first step warms up
                batches = [train.subset(rng.choice(len(train), B, replace=False)) for _ in range(K)]
                sync(device)
                t0 = time.perf_counter()
                scored = sample_and_score_runs(model, reward, batches, codes, trie, prof.grpo, prof.gate, gens,
                                               [None] * K)
                loss = torch.stack([compute_loss(s, prof.grpo, prof.gate)[0] for s in scored]).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                clip_per_run(list(model.parameters()), prof.rl.grad_clip, K)
                opt.step()
                sync(device)
                times.append(time.perf_counter() - t0)
            users = [val.subset(np.arange(256)) for _ in range(K)]
            sync(device)
            t0 = time.perf_counter()
            ranked_by_mode_runs(model, sids, users, prof.rl.eval_beam_width, 10, ("constrained",))
            sync(device)
            decode = (time.perf_counter() - t0) / (256 * K)
            mem = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else float("nan")
            print(f"| {K} | {np.mean(times[1:]) / K:.4f} | {decode:.6f} | {mem:.2f} |", flush=True)
            del model, opt, scored, loss
        except torch.OutOfMemoryError:
            print(f"| {K} | out of memory | | |", flush=True)
            break


if __name__ == "__main__":
    main()
