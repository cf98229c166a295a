"""Supervised fine-tuning (SFT) of the policy: next-item NLL over semantic-ID tokens.

Every training sequence is cut into right-aligned windows of ``max_history + 1`` items and trained
teacher-forced, so each prefix of each training sequence is a sample (loss = mean token NLL over
the predicted items). AdamW, linear warm-up then cosine decay, gradient clipping.

Checkpoints every ``ckpt_every`` steps hold model, optimiser, scheduler, RNG states, the step and
the configs; validation HR@10 is computed at each one; ``best.pt`` (best validation HR@10) and
``final.pt`` are kept, ``last.pt`` is the resume point. Calling :func:`train_sft` again on the
same folder resumes from ``last.pt`` and reproduces the uninterrupted run on CPU.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .data import Interactions
from .evaluate import evaluate_policy
from .policy import PolicyConfig, SIDPolicy
from .semantic_ids import SemanticIDs
from .utils import (check_int, check_range, resolve_device, rng_state,
                    seed_everything, set_rng_state, write_checkpoint)


@dataclass
class SFTConfig:
    """SFT optimisation and checkpointing."""

    steps: int = 600
    """Optimiser steps in total."""
    batch_size: int = 128
    """Windows per step."""
    lr: float = 3e-3
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    min_lr_ratio: float = 0.1
    """Cosine decay floor, as a fraction of lr."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 = no clipping)."""
    ckpt_every: int = 100
    """Checkpoint + validation every this many steps."""
    eval_samples: int = 1000
    """Validation examples used at checkpoints (a fixed subsample; 0 = all)."""
    eval_beam_width: int = 20
    """Beam width of the validation beam search."""
    seed: int = 0
    """Seeds random, numpy and torch, and the data order."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda'."""

    def __post_init__(self):
        check_int("steps", self.steps, lo=1)
        check_int("batch_size", self.batch_size, lo=1)
        check_range("lr", self.lr, lo=0, lo_open=True)
        check_range("weight_decay", self.weight_decay, lo=0)
        check_int("warmup_steps", self.warmup_steps, lo=0)
        check_range("min_lr_ratio", self.min_lr_ratio, 0, 1)
        check_range("grad_clip", self.grad_clip, lo=0)
        check_int("ckpt_every", self.ckpt_every, lo=1)
        check_int("eval_samples", self.eval_samples, lo=0)
        check_int("eval_beam_width", self.eval_beam_width, lo=10)
        check_int("seed", self.seed, lo=0)


def lr_lambda(cfg: SFTConfig):
    def f(step):
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    return f


def nll_loss(model: SIDPolicy, windows: torch.Tensor) -> torch.Tensor:
    """Mean token NLL over the predicted items of a batch of windows."""
    logits, targets, counts = model(windows)
    ce = F.cross_entropy(logits.reshape(-1, model.V), targets.reshape(-1), reduction="none")
    w = counts.reshape(-1).float()
    return (ce * w).sum() / w.sum().clamp(min=1)


def validation_subset(data: Interactions, max_history: int, n: int, seed: int):
    ex = data.examples("valid", max_history)
    if n and len(ex) > n:
        ex = ex.subset(np.sort(np.random.default_rng(seed).choice(len(ex), n, replace=False)))
    return ex


def build_policy(sids: SemanticIDs, cfg: PolicyConfig, device) -> SIDPolicy:
    return SIDPolicy(cfg, torch.as_tensor(sids.codes), sids.vocab_size).to(device)


def sids_hash(sids: SemanticIDs) -> str:
    """Fingerprint of the item -> tuple mapping a checkpoint was trained with."""
    import hashlib
    return hashlib.sha256(np.ascontiguousarray(sids.codes, dtype=np.int64).tobytes()).hexdigest()[:16]


def load_policy(path, sids: SemanticIDs, device="auto") -> SIDPolicy:
    """Load a policy checkpoint (best.pt / final.pt / last.pt) for the given semantic IDs."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if "sids_hash" in ck and ck["sids_hash"] != sids_hash(sids):
        raise ValueError(f"{path} was trained with other semantic IDs (sids_hash={ck['sids_hash']}, "
                         f"given {sids_hash(sids)})")
    model = build_policy(sids, PolicyConfig(**ck["policy_cfg"]), resolve_device(device))
    model.load_state_dict(ck["model"])
    model.eval()
    return model


@dataclass
class SFTResult:
    model: SIDPolicy           # final weights
    history: pd.DataFrame      # one row per checkpoint: step, loss, val HR@10 ...
    out_dir: Path
    best_path: Path
    final_path: Path
    seconds: float


def train_sft(data: Interactions, sids: SemanticIDs, policy_cfg: PolicyConfig | None = None,
              cfg: SFTConfig | None = None, out_dir="runs/sft", resume: bool = True,
              progress: bool = True, stop_after: int | None = None) -> SFTResult:
    """Train (or resume) SFT. ``stop_after`` stops early at that step (to test resumption)."""
    policy_cfg, cfg = policy_cfg or PolicyConfig(), cfg or SFTConfig()
    if sids.n_items != data.n_items:
        raise ValueError(f"sids cover {sids.n_items} items but the data has n_items={data.n_items}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    windows = torch.as_tensor(data.train_windows(policy_cfg.max_history + 1))
    if len(windows) == 0:
        raise ValueError("no training windows: every sequence is too short")
    val = validation_subset(data, policy_cfg.max_history, cfg.eval_samples, cfg.seed)

    model = build_policy(sids, policy_cfg, device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    step, log, best = 0, [], -1.0
    last = out_dir / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        if ck.get("sids_hash") != sids_hash(sids):
            raise ValueError(f"{last} was written for other semantic IDs; use another out_dir or resume=False")
        if ck["sft_cfg"] != dataclasses.asdict(cfg) or ck["policy_cfg"] != dataclasses.asdict(policy_cfg):
            raise ValueError(f"{last} was written with other configs; use another out_dir or resume=False")
        model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"]); sched.load_state_dict(ck["sched"])
        step, log, best = ck["step"], ck["log"], ck["best"]
        set_rng_state(ck["rng"])

    def batch_order(epoch):  # data order depends only on (seed, epoch): resumable
        return torch.as_tensor(np.random.default_rng([cfg.seed, epoch]).permutation(len(windows)))

    n_per_epoch = max(1, len(windows) // cfg.batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=step, desc="SFT")
    running = []
    model.train()
    while step < cfg.steps:
        epoch, pos = divmod(step, n_per_epoch)
        idx = batch_order(epoch)[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
        loss = nll_loss(model, windows[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step(); sched.step()
        step += 1
        running.append(loss.item())
        if bar is not None:
            bar.update(1); bar.set_postfix(loss=f"{running[-1]:.3f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            m = evaluate_policy(model, sids, val, cfg.eval_beam_width, ks=(10,), modes=("constrained",))
            model.train()
            row = {"step": step, "train_loss": float(np.mean(running)), "val_HR@10": m["HR@10"],
                   "lr": sched.get_last_lr()[0]}
            running = []
            log.append(row)
            state = {"model": model.state_dict(), "policy_cfg": dataclasses.asdict(policy_cfg),
                     "sft_cfg": dataclasses.asdict(cfg), "step": step, "val_HR@10": m["HR@10"],
                     "sids_hash": sids_hash(sids)}
            improved = m["HR@10"] > best
            best = max(best, m["HR@10"])
            write_checkpoint(out_dir, state, {"opt": opt.state_dict(), "sched": sched.state_dict(), "log": log,
                                              "best": best, "rng": rng_state()},
                             improved, step == cfg.steps, {"log.csv": pd.DataFrame(log)})
        if stop_after is not None and step >= stop_after:
            break
    if bar is not None:
        bar.close()
    model.eval()
    return SFTResult(model, pd.DataFrame(log), out_dir, out_dir / "best.pt", out_dir / "final.pt",
                     time.perf_counter() - t0)
