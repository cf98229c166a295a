"""RL fine-tuning of the SFT policy with GRPO, for every method (gate) on one code path.

Each step samples and scores a batch and takes one optimiser step on the combined loss
(:mod:`adagrpo_core.rl.step`); the loop, checkpoints (best on validation HR@10, final, and the
``last.pt`` resume point) and resume are the shared ones of :mod:`adagrpo_core.train.loop`. The lr is
constant by default; ``warmup_steps`` and ``min_lr_ratio`` give it a linear warm-up and a cosine
decay (the SFT schedule's shape), and ``base_competes`` validates the SFT start as step 0 so that it
competes for the best checkpoint (the real-data profiles use both; the simulated ones neither).
:func:`run_method` is the one entry point: it trains a method from an SFT checkpoint and returns
a results row per checkpoint kind (best, final) on test.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..common.checks import check_int, check_range
from ..data.interactions import Interactions
from ..eval.evaluate import evaluate_checkpoints, validation_subset
from ..model.policy import SIDPolicy, load_policy
from ..model.semantic_ids import SemanticIDs
from ..rl.gate import RELIABILITY_METHODS, GateConfig
from ..rl.grpo import GRPOConfig
from ..rl.step import ReliabilityInputs, compute_loss, sample_and_score
from ..common.runtime import resolve_device, seed_everything
from ..common.storage import atomic_save_df, atomic_save_npz, file_digest, key_dict, key_neutral
from .loop import LoopConfig, lr_multiplier, run_loop


RL_ORDER_SALT = (1,)
"""Salt of the RL stage's data order (SFT uses none): RL epochs see another order than SFT's."""


@dataclass
class RLConfig(LoopConfig):
    """RL fine-tuning from the SFT checkpoint (one update per batch, TRL's num_iterations=1)."""

    batch_size: int = 64
    """B: training contexts per step (each gets num_generations rollouts); >= 2 for in-batch negatives."""
    test_samples: int = 0
    """Test examples a run is evaluated on (0 = all), drawn with the run's seed."""
    warmup_steps: int = key_neutral(0)
    """Linear warm-up of the lr over this many steps, from lr / warmup_steps (0 = none; at most ``steps``)."""
    min_lr_ratio: float = key_neutral(1.0)
    """Cosine decay of the lr after the warm-up, to min_lr_ratio * lr at the last step (1 = no decay;
    with warmup_steps=0, a constant lr, as before these fields existed)."""
    base_competes: bool = key_neutral(False)
    """Validate the SFT start as a step-0 checkpoint, so it competes for best.pt: a run whose every
    RL checkpoint is worse on validation returns the SFT base as its best."""

    min_batch_size = 2
    min_beam_width = 20      # test evaluation reports HR@20

    def __post_init__(self):
        super().__post_init__()
        check_int("test_samples", self.test_samples, lo=0)
        check_int("warmup_steps", self.warmup_steps, lo=0, hi=self.steps)
        check_range("min_lr_ratio", self.min_lr_ratio, 0, 1)
        if not isinstance(self.base_competes, bool):
            raise ValueError(f"base_competes must be True or False, got base_competes={self.base_competes!r}")

    @property
    def scheduled(self) -> bool:
        """Whether the lr moves (a warm-up or a decay); False is a constant lr and no scheduler."""
        return self.warmup_steps > 0 or self.min_lr_ratio < 1


@dataclass
class RLResult:
    model: SIDPolicy
    steps: pd.DataFrame        # per-step metrics
    checkpoints: pd.DataFrame  # per checkpoint: step, train_loss, val HR@10
    out_dir: Path
    seconds: float


def check_method_inputs(gate_cfg: GateConfig, steps: int, reference_rates=None,
                        true_utility: Callable | None = None, reliability: ReliabilityInputs | None = None) -> None:
    """What a method needs beyond its config, checked before any work."""
    if gate_cfg.method in RELIABILITY_METHODS:
        which = gate_cfg.method if gate_cfg.method in ("exposure", "ensemble") else gate_cfg.reliability
        have = reliability is not None and (reliability.item_exposure is not None if which == "exposure"
                                            else bool(reliability.ensemble))
        if not have:
            raise ValueError(f"method={gate_cfg.method!r} reads the {which} diagnostic: pass reliability="
                             f"ReliabilityInputs({'item_exposure=...' if which == 'exposure' else 'ensemble=[...]'})")
    if gate_cfg.method == "random" and gate_cfg.random_rate_mode == "per_step":
        if reference_rates is None or len(reference_rates) < steps:
            got = None if reference_rates is None else len(reference_rates)
            raise ValueError(f"method='random' per_step needs reference_rates for {steps} steps, "
                             f"got reference_rates of length {got}")
    if gate_cfg.method == "random" and gate_cfg.random_rate_mode == "mean" and gate_cfg.random_rate is None:
        raise ValueError("method='random' with random_rate_mode='mean' needs random_rate, got random_rate=None")
    if gate_cfg.method == "oracle" and true_utility is None:
        raise ValueError("method='oracle' needs true_utility (simulated world only), got true_utility=None")


def run_configs(grpo: GRPOConfig, gate_cfg: GateConfig, cfg: RLConfig) -> dict:
    """The configs an RL run's checkpoints hold and a resume must match (JSON-able)."""
    return {"grpo": dataclasses.asdict(grpo), "gate": dataclasses.asdict(gate_cfg), "train": key_dict(cfg)}


def start_validation_path(sft_ckpt, cfg: RLConfig) -> Path | None:
    """Where the step-0 validation of a run with ``base_competes`` is cached: next to the SFT
    checkpoint, named by its content hash and the validation set (size, the seed when it is a
    subsample, beam width), so every method and seed from that start shares one validation.
    None when the start is not a checkpoint file."""
    if not cfg.base_competes or not isinstance(sft_ckpt, (str, Path)) or not Path(sft_ckpt).is_file():
        return None
    path = Path(sft_ckpt)
    digest = file_digest(path)
    who = f"s{cfg.seed}" if cfg.eval_samples else "all"
    return path.with_name(f"{path.stem}_start_val_{digest}_n{cfg.eval_samples}_{who}_b{cfg.eval_beam_width}.json")


def train_rl(data: Interactions, sids: SemanticIDs, sft_ckpt, reward_model, grpo: GRPOConfig,
             gate_cfg: GateConfig, cfg: RLConfig, out_dir, reference_rates=None,
             true_utility: Callable | None = None, resume: bool = True, progress: bool = True,
             stop_after: int | None = None, reliability: ReliabilityInputs | None = None) -> RLResult:
    """Fine-tune the SFT policy with one method. ``reference_rates``: AdaGRPO's per-step
    admission rates, for the random control with random_rate_mode="per_step"."""
    check_method_inputs(gate_cfg, cfg.steps, reference_rates, true_utility, reliability)
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    model = load_policy(sft_ckpt, sids, device)
    ref_model = copy.deepcopy(model).eval() if grpo.beta > 0 else None
    if ref_model is not None:
        ref_model.requires_grad_(False)
    train = data.examples("train", model.cfg.max_history)
    val = validation_subset(data, model.cfg.max_history, cfg.eval_samples, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier(cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)) \
        if cfg.scheduled else None
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    item_codes = torch.as_tensor(sids.codes, device=device)
    trie = sids.trie.to(device)

    audit, audit_path = [], out_dir / "audit.npz"

    def batch_loss(step, idx):
        rate = None if reference_rates is None else float(reference_rates[step])
        scored = sample_and_score(model, reward_model, train.subset(idx), item_codes, trie, grpo, gate_cfg,
                                  gen, rate, true_utility, reliability=reliability)
        if scored.audit is not None:
            audit.append({"step": np.full(len(idx), step + 1), **scored.audit})
        return compute_loss(scored, grpo, gate_cfg, ref_model)

    def save_audit(step):      # per sample and step: d, a, gate, agreement with the truth ...
        if audit:
            atomic_save_npz(audit_path, {k: np.concatenate([a[k] for a in audit]) for k in audit[0]})

    def load_audit(step):
        if audit_path.exists():
            with np.load(audit_path) as z:
                keep = z["step"] <= step
                audit.append({k: z[k][keep] for k in z.files})

    configs = run_configs(grpo, gate_cfg, cfg)
    res = run_loop(model, opt, cfg, out_dir, n_examples=len(train), batch_loss=batch_loss, val=val, sids=sids,
                   configs=configs, order_salt=RL_ORDER_SALT, sched=sched, gen=gen, postfix="admission_rate",
                   checkpoint_extra=(lambda: {"lr": sched.get_last_lr()[0]}) if sched is not None else None,
                   on_checkpoint=save_audit, on_resume=load_audit, desc=f"RL {gate_cfg.method}", resume=resume,
                   progress=progress, stop_after=stop_after, validate_start=cfg.base_competes,
                   start_cache=start_validation_path(sft_ckpt, cfg))
    return RLResult(model, res.steps, res.checkpoints, out_dir, time.perf_counter() - t0)


def run_method(data: Interactions, sids: SemanticIDs, sft_ckpt, reward_model, grpo: GRPOConfig,
               gate_cfg: GateConfig, cfg: RLConfig, out_dir, reference_rates=None,
               true_utility: Callable | None = None, name: str | None = None,
               progress: bool = True, reliability: ReliabilityInputs | None = None,
               provenance: dict | None = None) -> pd.DataFrame:
    """Train one method and return (and write ``results.csv``) a row per checkpoint kind, with the
    ``provenance`` columns (``execution.provenance``: key, commit, model hashes, machine kind)."""
    res = train_rl(data, sids, sft_ckpt, reward_model, grpo, gate_cfg, cfg, out_dir, reference_rates,
                   true_utility, progress=progress, reliability=reliability)
    adm = float(res.steps["admission_rate"].mean())
    rows = evaluate_checkpoints(data, sids, out_dir, name or gate_cfg.method, cfg.seed, cfg, adm, cfg.device)
    rows["train_seconds"] = res.seconds
    rows = rows.assign(**(provenance or {}))
    atomic_save_df(rows, Path(out_dir) / "results.csv", index=False)
    return rows
