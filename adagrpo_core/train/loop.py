"""The one training loop of the package (SFT and RL): data order, optimiser step, clipping,
checkpoints with validation, best-on-validation, resume and the non-finite-loss guard.

A stage (SFT or RL) supplies the model, its optimiser (and scheduler), and ``batch_loss(step,
idx) -> (loss, metrics)`` for the sample indices of a step; everything else is here:

* data order depends only on (seed, salt, epoch), so a resumed run sees the same batches;
* every ``ckpt_every`` steps (and at the last one) the policy is validated (HR@10 and NDCG@10 of
  trie-constrained beam search on a fixed validation subsample, or on every validation user) and
  a checkpoint is written in commit order: ``best.pt`` (when the selected metric improved),
  ``final.pt`` (at the last step), the CSV logs, then ``last.pt``, the resume point, which also
  holds the optimiser and RNG states;
* optionally the starting weights are validated as step 0 and compete for ``best.pt`` (an RL
  stage that does not beat its SFT start returns the start), and a run stops early once
  ``patience`` validations in a row were no better (its last checkpoint is then ``final.pt``);
* progress is a tqdm bar on a terminal, one plain line per validation otherwise (a log file);
* calling the loop again on the same folder resumes from ``last.pt`` and reproduces the
  uninterrupted run on CPU (same thread count); a ``last.pt`` written with other configs is an
  error, never silently reused;
* a non-finite loss stops the run with the step, the batch and the terms that went bad; the
  checkpoints already written are kept.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..common.checks import check_choice, check_device, check_int, check_range
from ..eval.evaluate import evaluate_policy
from ..model.semantic_ids import sids_hash
from ..common.runtime import interactive, rng_state, set_rng_state
from ..common.storage import atomic_save_df, atomic_torch_save, atomic_write_text, load_checkpoint


@dataclass
class LoopConfig:
    """What every training stage shares: optimisation, checkpoint cadence and validation."""

    steps: int = 200
    """Optimiser steps in total."""
    batch_size: int = 64
    """Samples per step."""
    lr: float = 3e-4
    """AdamW (peak) learning rate."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 = no clipping)."""
    ckpt_every: int = 50
    """Checkpoint + validation HR@10 every this many steps (and at the last step)."""
    eval_samples: int = 1000
    """Validation examples used at checkpoints (a fixed subsample; 0 = all)."""
    eval_beam_width: int = 20
    """Beam width of the validation (and test) beam search."""
    seed: int = 0
    """Seeds random, numpy and torch, the data order (and the RL rollout sampler)."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda'."""

    min_batch_size = 1       # class constants, not fields: what each stage needs at least
    min_beam_width = 10

    def __post_init__(self):
        check_int("steps", self.steps, lo=1)
        check_int("batch_size", self.batch_size, lo=self.min_batch_size)
        check_range("lr", self.lr, lo=0, lo_open=True)
        check_range("weight_decay", self.weight_decay, lo=0)
        check_range("grad_clip", self.grad_clip, lo=0)
        check_int("ckpt_every", self.ckpt_every, lo=1)
        check_int("eval_samples", self.eval_samples, lo=0)
        check_int("eval_beam_width", self.eval_beam_width, lo=self.min_beam_width)
        check_int("seed", self.seed, lo=0)
        check_device("device", self.device)


@dataclass
class LoopResult:
    steps: pd.DataFrame        # one row per step: step, loss, the stage's metrics
    checkpoints: pd.DataFrame  # one row per checkpoint: step, train_loss, val_HR@10 (+ stage extras)


def write_checkpoint(out_dir, state: dict, resume_extra: dict, improved: bool, final: bool,
                     tables: dict) -> None:
    """One checkpoint of a training run, in commit order.

    ``best.pt`` (when ``improved``), ``final.pt`` (when ``final``) and the CSV ``tables``
    ({file name: DataFrame}) first; ``last.pt`` (``state`` plus ``resume_extra``: optimiser, RNG,
    logs) last, because resuming trusts it: a crash before it leaves the previous checkpoint intact.
    """
    out_dir = Path(out_dir)
    if improved:
        atomic_torch_save(state, out_dir / "best.pt")
    if final:
        atomic_torch_save(state, out_dir / "final.pt")
    for name, df in tables.items():
        atomic_save_df(df, out_dir / name, index=False)
    atomic_torch_save({**state, **resume_extra}, out_dir / "last.pt")


def _check_finite(loss: torch.Tensor, metrics: dict, step: int, idx: np.ndarray) -> None:
    if torch.isfinite(loss).all():
        return
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not np.isfinite(v)]
    raise FloatingPointError(
        f"non-finite loss {loss.item()} at step {step + 1} (batch of sample indices {idx[:8].tolist()}"
        f"{' ...' if len(idx) > 8 else ''}); non-finite terms: {bad or 'none logged'}. "
        "The checkpoints written so far are kept; lower lr or check the reward.")


SELECT_METRICS = ("HR@10", "NDCG@10")
"""Validation metrics a run can keep its best checkpoint (and stop early) on."""


def lr_multiplier(warmup_steps: int, steps: int, min_lr_ratio: float) -> Callable[[int], float]:
    """The lr schedule of every stage, as a multiplier of the peak lr at 0-based step ``step``:
    linear warm-up, (step + 1) / warmup_steps, then cosine decay over the remaining steps,
    min_lr_ratio + (1 - min_lr_ratio) (1 + cos(pi * progress)) / 2, to ``min_lr_ratio`` at the last
    step. warmup_steps=0 and min_lr_ratio=1 is a constant lr."""
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        frac = (step - warmup_steps) / max(1, steps - warmup_steps)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    return f


def since_best(ckpts: list, select: str = "HR@10") -> int:
    """Validations since the best one (0 when the last is the best; the first maximum counts)."""
    scores = [c[f"val_{select}"] for c in ckpts]
    return len(scores) - 1 - int(np.argmax(scores)) if scores else 0


def _plain_progress() -> bool:
    """Progress as a few plain lines (one per checkpoint) instead of a tqdm bar when stderr is
    not a terminal (a log file, a notebook run by papermill)."""
    return not interactive()


def data_order(seed: int, salt: tuple, epoch: int, n_examples: int) -> np.ndarray:
    """The sample order of an epoch: depends only on (seed, salt, epoch), so a resumed run, or the
    same run trained in a batch (train/batched.py), sees the same batches."""
    return np.random.default_rng([seed, *salt, epoch]).permutation(n_examples)


def checkpoint_state(model_state: dict, policy_cfg, configs: dict, step: int, metrics: dict,
                     fingerprint: str) -> dict:
    """What best.pt / final.pt hold (last.pt adds the resume state): the weights, the policy's
    config, the run's configs, the step, its validation HR@10 / NDCG@10 and the IDs' hash."""
    return {"model": model_state, "policy_cfg": dataclasses.asdict(policy_cfg), "configs": configs, "step": step,
            "val_HR@10": metrics["HR@10"], "val_NDCG@10": metrics["NDCG@10"], "sids_hash": fingerprint}


def _start_validation(path: Path | None, validate: Callable[[], dict]) -> dict:
    """The step-0 validation metrics: read from ``path`` when it exists, else computed (and
    written atomically to ``path`` when given). JSON floats round-trip exactly."""
    if path is not None and Path(path).exists():
        return json.loads(Path(path).read_text())
    m = {k: (int(v) if k == "n" else float(v)) for k, v in validate().items()}
    if path is not None:
        atomic_write_text(path, json.dumps(m))
    return m


def run_loop(model, opt, cfg, out_dir, *, n_examples: int, batch_loss: Callable, val, sids,
             configs: dict, order_salt: tuple = (), sched=None, gen: torch.Generator | None = None,
             checkpoint_extra: Callable[[], dict] | None = None, on_checkpoint: Callable[[int], None] | None = None,
             on_resume: Callable[[int], None] | None = None, postfix: str = "loss", desc: str = "train",
             resume: bool = True, progress: bool = True, stop_after: int | None = None,
             select: str = "HR@10", patience: int = 0, validate_start: bool = False,
             start_cache: Path | None = None) -> LoopResult:
    """Train ``model`` for ``cfg.steps`` steps (see the module docstring).

    ``batch_loss(step, idx)`` returns (scalar loss with grad, {metric: float}) for the sample
    indices ``idx`` of 0-based step ``step``. ``configs`` (JSON-able) is stored in every
    checkpoint and must match on resume. ``checkpoint_extra()`` adds columns to a checkpoint
    row (e.g. the learning rate). ``on_checkpoint(step)`` writes a stage's own files before
    ``last.pt`` (commit order); ``on_resume(step)`` restores them when a run resumes at ``step``.
    ``stop_after`` stops early at that step (to test resumption).

    ``select``: the validation metric of ``best.pt`` (``SELECT_METRICS``). ``patience`` > 0 stops
    early once that many validations in a row were no better than the best; the checkpoint where
    it stops is ``final.pt`` (the schedule stays the one of ``cfg.steps``). ``validate_start``:
    the starting weights are validated and checkpointed as step 0, so they compete for ``best.pt``
    (an RL run whose every checkpoint is worse than its start returns the start as best).
    ``start_cache``: a JSON file of that step-0 validation, shared by every run from the same start
    and validation set (read when it exists, else written): the start is validated once, not per run.
    """
    check_choice("select", select, SELECT_METRICS)
    check_int("patience", patience, lo=0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = sids_hash(sids)
    step, log, ckpts, best = 0, [], [], -1.0
    last = out_dir / "last.pt"
    if resume and last.exists():
        ck = load_checkpoint(last)
        if ck.get("configs") != configs or ck.get("sids_hash") != fingerprint:
            raise ValueError(f"{last} was written with other configs or semantic IDs; "
                             "use another out_dir, resume=False, or delete the folder")
        model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"])
        if sched is not None:
            sched.load_state_dict(ck["sched"])
        step, log, ckpts, best = ck["step"], ck["log"], ck["ckpts"], ck["best"]
        set_rng_state(ck["rng"])
        if gen is not None:
            gen.set_state(ck["gen"].to(gen.get_state().device))
        if on_resume is not None:
            on_resume(step)

    def order(epoch):                     # depends only on (seed, salt, epoch): resumable
        return data_order(cfg.seed, order_salt, epoch, n_examples)

    def exhausted() -> bool:
        return patience > 0 and len(ckpts) > 0 and since_best(ckpts, select) >= patience

    plain = progress and _plain_progress()
    t0 = time.perf_counter()
    since_ckpt = []

    def validate():
        return evaluate_policy(model, sids, val, cfg.eval_beam_width, ks=(10,), modes=("constrained",))

    def checkpoint(step, m=None):
        nonlocal best, since_ckpt
        m = validate() if m is None else m
        model.train()
        ckpts.append({"step": step, "train_loss": float(np.mean(since_ckpt)) if since_ckpt else float("nan"),
                      "val_HR@10": m["HR@10"], "val_NDCG@10": m["NDCG@10"],
                      **(checkpoint_extra() if checkpoint_extra else {})})
        since_ckpt = []
        state = checkpoint_state(model.state_dict(), model.cfg, configs, step, m, fingerprint)
        score = m[select]
        improved = score > best
        best = max(best, score)
        stop = exhausted()
        extra = {"opt": opt.state_dict(), "log": log, "ckpts": ckpts, "best": best, "rng": rng_state()}
        if sched is not None:
            extra["sched"] = sched.state_dict()
        if gen is not None:
            extra["gen"] = gen.get_state()
        if on_checkpoint is not None:
            on_checkpoint(step)
        write_checkpoint(out_dir, state, extra, improved, step == cfg.steps or stop,
                         {"steps.csv": pd.DataFrame(log), "checkpoints.csv": pd.DataFrame(ckpts)})
        if plain:
            print(f"{desc}: step {step}/{cfg.steps}, {time.perf_counter() - t0:.0f} s, train loss "
                  f"{ckpts[-1]['train_loss']:.4f}, val HR@10 {m['HR@10']:.4f} NDCG@10 {m['NDCG@10']:.4f} "
                  f"(n={m['n']}){' best' if improved else ''}"
                  f"{f'; stopped: {patience} validations without a better {select}' if stop else ''}",
                  file=sys.stderr, flush=True)
        return stop

    if validate_start and step == 0 and not ckpts:
        model.eval()
        checkpoint(0, _start_validation(start_cache, validate))
    bar = None
    if progress and not plain:
        bar = tqdm(total=cfg.steps, initial=step, desc=desc)
    n_per_epoch = max(1, n_examples // cfg.batch_size)
    model.train()
    stopped = exhausted()
    while step < cfg.steps and not stopped:
        epoch, pos = divmod(step, n_per_epoch)
        idx = order(epoch)[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
        loss, metrics = batch_loss(step, idx)
        _check_finite(loss, metrics, step, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if sched is not None:
            sched.step()
        step += 1
        row = {"step": step, "loss": loss.item(), **metrics}
        log.append(row)
        since_ckpt.append(row["loss"])
        if bar is not None:
            bar.update(1); bar.set_postfix({postfix: f"{row[postfix]:.3f}"})
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            stopped = checkpoint(step)
        if stop_after is not None and step >= stop_after:
            break
    if bar is not None:
        bar.close()
    model.eval()
    return LoopResult(pd.DataFrame(log), pd.DataFrame(ckpts))
