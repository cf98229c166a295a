"""Supervised fine-tuning (SFT) of the policy: next-item NLL over semantic-ID tokens.

Every training sequence is cut into right-aligned windows of ``max_history + 1`` items and trained
teacher-forced, so each prefix of each training sequence is a sample. The loss is the mean token
NLL over the predicted items, L = -(1/|T|) sum_{t in T} log pi(y_t | y_<t). AdamW, linear warm-up
then cosine decay to ``min_lr_ratio * lr`` over ``steps``, gradient clipping; with ``patience``, early
stopping on validation HR@10 or NDCG@10 (``select_metric``): the run ends once ``patience``
validations in a row were no better, and keeps the best. The loop, checkpoints and resume are the
shared ones of :mod:`adagrpo_core.train.loop`.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from ..common.checks import check_choice, check_int, check_range
from ..data.interactions import Interactions
from ..eval.evaluate import validation_subset
from ..model.policy import PolicyConfig, SIDPolicy, build_policy
from ..model.semantic_ids import SemanticIDs
from ..common.runtime import resolve_device, seed_everything
from ..common.storage import key_dict, key_neutral
from .loop import SELECT_METRICS, LoopConfig, lr_multiplier, run_loop


@dataclass
class SFTConfig(LoopConfig):
    """Supervised fine-tuning: AdamW, linear warm-up then cosine decay to min_lr_ratio * lr over
    ``steps``; early stopping on validation when ``patience`` > 0."""

    steps: int = 600
    """Optimiser steps in total."""
    batch_size: int = 128
    """Windows per step."""
    lr: float = 3e-3
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    ckpt_every: int = 100
    """Checkpoint + validation every this many steps."""
    warmup_steps: int = 100
    """Linear warm-up steps (at most ``steps``)."""
    min_lr_ratio: float = 0.1
    """Cosine decay floor, as a fraction of lr."""
    patience: int = key_neutral(0)
    """Early stopping: stop once this many validations (checkpoints) in a row were no better than
    the best on ``select_metric``; ``steps`` is then the maximum, and the schedule is sized to it.
    0 = no early stopping (train all ``steps``)."""
    select_metric: str = key_neutral("HR@10")
    """Validation metric of ``best.pt`` and of early stopping: 'HR@10' or 'NDCG@10'."""

    def __post_init__(self):
        super().__post_init__()
        check_int("warmup_steps", self.warmup_steps, lo=0, hi=self.steps)
        check_range("min_lr_ratio", self.min_lr_ratio, 0, 1)
        check_int("patience", self.patience, lo=0)
        check_choice("select_metric", self.select_metric, SELECT_METRICS)


def lr_lambda(cfg: SFTConfig):
    """Multiplier of the peak lr at a step: (step + 1) / warmup during warm-up, then
    min_lr_ratio + (1 - min_lr_ratio) (1 + cos(pi * progress)) / 2 (:func:`~.loop.lr_multiplier`)."""
    return lr_multiplier(cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)


def nll_loss(model: SIDPolicy, windows: torch.Tensor) -> torch.Tensor:
    """Mean token NLL over the predicted items of a batch of windows."""
    logits, targets, predicted = model(windows)
    ce = F.cross_entropy(logits.reshape(-1, model.V), targets.reshape(-1), reduction="none")
    w = predicted.reshape(-1).float()
    return (ce * w).sum() / w.sum().clamp(min=1)


@dataclass
class SFTResult:
    model: SIDPolicy           # final weights (of the last step trained)
    history: pd.DataFrame      # one row per checkpoint: step, train_loss, val_HR@10, val_NDCG@10, lr
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

    def batch_loss(step, idx):
        loss = nll_loss(model, windows[torch.as_tensor(idx)].to(device))
        return loss, {}

    configs = {"sft": key_dict(cfg), "policy": dataclasses.asdict(policy_cfg)}
    res = run_loop(model, opt, cfg, out_dir, n_examples=len(windows), batch_loss=batch_loss, val=val,
                   sids=sids, configs=configs, sched=sched,
                   checkpoint_extra=lambda: {"lr": sched.get_last_lr()[0]}, desc="SFT",
                   resume=resume, progress=progress, stop_after=stop_after, select=cfg.select_metric,
                   patience=cfg.patience)
    return SFTResult(model, res.checkpoints, out_dir, out_dir / "best.pt", out_dir / "final.pt",
                     time.perf_counter() - t0)
