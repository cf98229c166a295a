"""RL fine-tuning of the SFT policy with GRPO and every gate of DESIGN 3, on one code path.

One step, for a batch of B training contexts (history, ground-truth item y*):

1. G = ``num_generations`` rollouts per context from the shared-history sampler (unconstrained,
   so hallucinations can be sampled), rewards from the ranker (invalid tuples get
   ``invalid_reward``);
2. diagnostics: difficulty d_i (policy log-likelihood of y* against the distinct valid rollout
   negatives) and discriminability a_i (ranker score of y* against those negatives plus M
   in-batch negatives);
3. the gate g_i of the method (``gate.compute_gate``);
4. loss L = (1/B) sum_i [ w_nll L_nll_i + lambda g_i L_grpo_i ] (``grpo.combine_losses``),
   one optimiser step.

Per-step metrics go to ``steps.csv``; checkpoints (best on validation HR@10, final, and the
``last.pt`` resume point) as in SFT. :func:`run_method` is the one entry point: it trains a method
from an SFT checkpoint and returns a results row per checkpoint kind (best, final) on test.
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

from .data import Examples, Interactions
from .decoding import sample_rollouts
from .evaluate import evaluate_policy
from .gate import GateConfig, compute_gate, difficulty, discriminability, sample_inbatch_negatives, rank_agreement
from .grpo import GRPOConfig, combine_losses, group_advantages, grpo_loss_per_sample, nll_per_sample
from .policy import SIDPolicy
from .semantic_ids import SemanticIDs
from .sft import load_policy, sids_hash, validation_subset
from .utils import (atomic_save_df, atomic_save_npy, check_int, check_range, resolve_device,
                    rng_state, seed_everything, set_rng_state, write_checkpoint)


@dataclass
class TrainConfig:
    """Optimisation, checkpointing and evaluation of the RL fine-tuning stage."""

    steps: int = 200
    """Optimiser steps."""
    batch_size: int = 64
    """B: training contexts per step (each gets num_generations rollouts)."""
    lr: float = 3e-4
    """AdamW learning rate (constant)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Max global gradient norm (0 = off)."""
    ckpt_every: int = 50
    """Checkpoint + validation HR@10 every this many steps."""
    eval_samples: int = 1000
    """Validation examples used at checkpoints (a fixed subsample; 0 = all)."""
    eval_beam_width: int = 20
    """Beam width for validation and test evaluation."""
    test_samples: int = 0
    """Test examples evaluated by run_method (0 = all)."""
    reward_output: str = "prob"
    """Ranker reward: 'prob' (click probability) or 'logit'."""
    invalid_reward: float | None = None
    """Reward of an invalid tuple; None = the ranker's default penalty below every valid score."""
    seed: int = 0
    """Seeds random, numpy, torch, the data order and the rollout sampler."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda'."""

    def __post_init__(self):
        check_int("steps", self.steps, lo=1)
        check_int("batch_size", self.batch_size, lo=2)
        check_range("lr", self.lr, lo=0, lo_open=True)
        check_range("weight_decay", self.weight_decay, lo=0)
        check_range("grad_clip", self.grad_clip, lo=0)
        check_int("ckpt_every", self.ckpt_every, lo=1)
        check_int("eval_samples", self.eval_samples, lo=0)
        check_int("eval_beam_width", self.eval_beam_width, lo=20)
        check_int("test_samples", self.test_samples, lo=0)
        if self.reward_output not in ("prob", "logit"):
            raise ValueError(f"reward_output must be 'prob' or 'logit', got reward_output={self.reward_output!r}")
        if self.invalid_reward is not None:
            check_range("invalid_reward", self.invalid_reward)
        check_int("seed", self.seed, lo=0)


def make_reward(ranker, sids: SemanticIDs, cfg: TrainConfig):
    """The reward model the trainer uses: the ranker's score (cfg.reward_output) of decoded tuples."""
    from .ranker import RewardModel
    return RewardModel(ranker, sids, output=cfg.reward_output, invalid_reward=cfg.invalid_reward)


@dataclass
class StepOutput:
    loss: torch.Tensor
    metrics: dict
    gate: torch.Tensor


def grpo_step_loss(model: SIDPolicy, ref_model: SIDPolicy | None, reward_model, batch: Examples,
                   sids: SemanticIDs, grpo: GRPOConfig, gate_cfg: GateConfig,
                   generator: torch.Generator, target_rate: float | None = None,
                   true_utility: Callable | None = None) -> StepOutput:
    """Loss of one batch for any method (DESIGN 2-3). ``true_utility(batch, items [B,G]) -> [B,G]``
    is needed only by the oracle gate."""
    dev = model.device
    hist = torch.as_tensor(batch.history, device=dev)
    target = torch.as_tensor(batch.target, device=dev)
    target_codes = torch.as_tensor(sids.codes, device=dev)[target][:, None]          # [B, 1, Lp]
    B, G = len(batch), grpo.num_generations
    w_nll = gate_cfg.w_nll

    if gate_cfg.method == "nll":  # continued SFT: no rollouts needed
        logits = model.tuple_logits(hist, target_codes)                              # [B, 1, Lp, V]
        nll = nll_per_sample(model.gather_logprobs(logits, target_codes)[:, 0])
        loss = combine_losses(nll, torch.zeros_like(nll), torch.zeros(B, dtype=torch.bool, device=dev),
                              w_nll, 0.0, grpo.normalize)
        return StepOutput(loss, {"nll": nll.mean().item(), "admission_rate": 0.0}, torch.zeros(B, dtype=torch.bool))

    # 1. rollouts (no grad) and rewards
    cache = model.encode(hist)                        # with grad; the rollouts use a detached view
    roll = sample_rollouts(model, None, G, grpo.temperature, trie=sids.trie, generator=generator, cache=cache)
    rewards = reward_model(hist, roll.tokens)                                        # [B, G]
    # 2. one differentiable pass scores rollouts and the ground truth, sharing the history
    tuples = torch.cat([roll.tokens, target_codes], 1)                               # [B, G+1, Lp]
    logits = model.tuple_logits(None, tuples, cache=cache)                           # [B, G+1, Lp, V]
    logp_T = model.gather_logprobs(logits[:, :G], roll.tokens, grpo.temperature)     # [B, G, Lp]
    logp_1 = model.gather_logprobs(logits, tuples)                                   # [B, G+1, Lp]
    nll = nll_per_sample(logp_1[:, G])                                               # [B]
    seq_ll = logp_1.detach().sum(-1)                                                 # [B, G+1]
    d = difficulty(seq_ll[:, G], seq_ll[:, :G], roll.items, target)
    # discriminability: ranker on y* and on M in-batch negatives
    M = gate_cfg.num_negatives
    idx, inmask = sample_inbatch_negatives(target, M, generator=generator) if M > 0 else (None, None)
    cand = target[:, None] if M == 0 else torch.cat([target[:, None], target[idx]], 1)  # [B, 1+M]
    cand_scores = reward_model.score_items(hist, cand)
    a = discriminability(cand_scores[:, 0], rewards, roll.items, target,
                         None if M == 0 else cand_scores[:, 1:], inmask)
    tu = None
    if gate_cfg.method == "oracle":
        if true_utility is None:
            raise ValueError("method='oracle' needs the simulated world's true utility")
        tu = torch.as_tensor(true_utility(batch, roll.items.cpu().numpy()), dtype=torch.float32, device=dev)
        tu = torch.where(roll.valid, tu, torch.zeros_like(tu))
    g = compute_gate(gate_cfg, d, a, generator=generator, target_rate=target_rate,
                     ranker_scores=rewards, true_utility=tu, valid=roll.valid)
    # 3. GRPO loss (on-policy: old log-probs are the current ones, detached)
    adv = group_advantages(rewards, grpo.scale_rewards)
    logp_ref = None
    if grpo.beta > 0 and ref_model is not None:
        with torch.no_grad():
            logp_ref = ref_model.tuple_logprobs(hist, roll.tokens, grpo.temperature)
    grpo_i, stats = grpo_loss_per_sample(logp_T, logp_T.detach(), adv, grpo.epsilon, grpo.beta, logp_ref)
    loss = combine_losses(nll, grpo_i, g, w_nll, grpo.lam, grpo.normalize)
    r = rewards.float()
    metrics = {
        "admission_rate": g.float().mean().item(), "mean_d": d.mean().item(), "mean_a": a.mean().item(),
        "reward_mean": r.mean().item(), "reward_std": r.std(1).mean().item(),
        "zero_std_share": (r.std(1) == 0).float().mean().item(),
        "rollout_halluc": (~roll.valid).float().mean().item(),
        "rollout_hit": (roll.items == target[:, None]).any(1).float().mean().item(),
        "clip_frac": float(stats["clip_frac"]), "kl": float(stats["kl"]),
        "nll": nll.mean().item(), "grpo_loss": grpo_i.mean().item(),
    }
    if gate_cfg.method == "oracle":
        agree, _ = rank_agreement(rewards, tu, roll.valid)
        metrics["rank_agreement"] = agree.mean().item()
    return StepOutput(loss, metrics, g.detach().cpu())


@dataclass
class RLResult:
    model: SIDPolicy
    steps: pd.DataFrame        # per-step metrics
    checkpoints: pd.DataFrame  # per checkpoint: step, val HR@10
    out_dir: Path
    seconds: float


def train_rl(data: Interactions, sids: SemanticIDs, sft_ckpt, reward_model, grpo: GRPOConfig,
             gate_cfg: GateConfig, cfg: TrainConfig, out_dir, reference_rates=None,
             true_utility: Callable | None = None, resume: bool = True, progress: bool = True,
             stop_after: int | None = None) -> RLResult:
    """Fine-tune the SFT policy with one method. ``reference_rates``: AdaGRPO's per-step
    admission rates, for the random control with random_rate_mode="per_step"."""
    if gate_cfg.method == "random" and gate_cfg.random_rate_mode == "per_step":
        if reference_rates is None or len(reference_rates) < cfg.steps:
            got = None if reference_rates is None else len(reference_rates)
            raise ValueError(f"method='random' per_step needs reference_rates for {cfg.steps} steps, "
                             f"got reference_rates of length {got}")
    if gate_cfg.method == "random" and gate_cfg.random_rate_mode == "mean" and gate_cfg.random_rate is None:
        raise ValueError("method='random' with random_rate_mode='mean' needs random_rate, got random_rate=None")
    if gate_cfg.method == "oracle" and true_utility is None:
        raise ValueError("method='oracle' needs true_utility (simulated world only), got true_utility=None")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    step, log, ckpts, best = 0, [], [], -1.0
    configs = {"grpo": dataclasses.asdict(grpo), "gate": dataclasses.asdict(gate_cfg),
               "train": dataclasses.asdict(cfg)}
    last = out_dir / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        if ck["configs"] != configs:
            raise ValueError(f"{last} was written with other configs; use another out_dir or resume=False")
        model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"])
        step, log, ckpts, best = ck["step"], ck["log"], ck["ckpts"], ck["best"]
        set_rng_state(ck["rng"]); gen.set_state(ck["gen"].to(gen.get_state().device))

    def order(epoch):
        return np.random.default_rng([cfg.seed, 1, epoch]).permutation(len(train))

    n_per_epoch = max(1, len(train) // cfg.batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=cfg.steps, initial=step, desc=f"RL {gate_cfg.method}")
    model.train()
    while step < cfg.steps:
        epoch, pos = divmod(step, n_per_epoch)
        batch = train.subset(order(epoch)[pos * cfg.batch_size:(pos + 1) * cfg.batch_size])
        rate = None if reference_rates is None else float(reference_rates[step])
        out = grpo_step_loss(model, ref_model, reward_model, batch, sids, grpo, gate_cfg, gen, rate, true_utility)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        log.append({"step": step, "loss": out.loss.item(), **out.metrics})
        if bar is not None:
            bar.update(1); bar.set_postfix(adm=f"{out.metrics['admission_rate']:.2f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            m = evaluate_policy(model, sids, val, cfg.eval_beam_width, ks=(10,), modes=("constrained",))
            model.train()
            ckpts.append({"step": step, "val_HR@10": m["HR@10"]})
            state = {"model": model.state_dict(), "policy_cfg": dataclasses.asdict(model.cfg),
                     "configs": configs, "step": step, "val_HR@10": m["HR@10"], "sids_hash": sids_hash(sids)}
            improved = m["HR@10"] > best
            best = max(best, m["HR@10"])
            write_checkpoint(out_dir, state, {"opt": opt.state_dict(), "log": log, "ckpts": ckpts, "best": best,
                                              "rng": rng_state(), "gen": gen.get_state()},
                             improved, step == cfg.steps,
                             {"steps.csv": pd.DataFrame(log), "checkpoints.csv": pd.DataFrame(ckpts)})
        if stop_after is not None and step >= stop_after:
            break
    if bar is not None:
        bar.close()
    model.eval()
    return RLResult(model, pd.DataFrame(log), pd.DataFrame(ckpts), out_dir, time.perf_counter() - t0)


RESULT_COLUMNS = ["method", "seed", "checkpoint", "step", "HR@5", "HR@10", "HR@20", "NDCG@10",
                  "halluc", "HR@10_constrained", "admission_rate"]


HITS_K = 10   # evaluate_checkpoints stores per-sample hits@HITS_K of each checkpoint


def hits_path(run_dir, kind: str, k: int, constrained: bool) -> Path:
    """Where a run keeps the per-test-sample hits@k of its ``best`` or ``final`` checkpoint."""
    return Path(run_dir) / f"hits_{kind}_k{k}{'_c' if constrained else ''}.npy"


def test_examples(data: Interactions, max_history: int, cfg: TrainConfig):
    """The test samples a run is evaluated on: all of them, or ``cfg.test_samples`` drawn with
    the run's seed (the same draw for every method of that seed, so results pair up)."""
    test = data.examples("test", max_history)
    if cfg.test_samples and len(test) > cfg.test_samples:
        pick = np.random.default_rng(cfg.seed + 7).choice(len(test), cfg.test_samples, replace=False)
        test = test.subset(np.sort(pick))
    return test


def evaluate_checkpoints(data: Interactions, sids: SemanticIDs, out_dir, method: str, seed: int,
                         cfg: TrainConfig, admission_rate: float, device="auto") -> pd.DataFrame:
    """Test metrics of best.pt and final.pt: HR/NDCG and hallucination from unconstrained beam
    search (as the paper reports them), plus constrained HR@10."""
    out_dir = Path(out_dir)
    rows, test, metrics_at, ranked_at = [], None, {}, {}
    for kind in ("best", "final"):
        path = out_dir / f"{kind}.pt"
        model = load_policy(path, sids, device)
        step = torch.load(path, map_location="cpu", weights_only=False)["step"]
        if test is None:
            test = test_examples(data, model.cfg.max_history, cfg)
        if step not in metrics_at:  # best.pt is often the final step: evaluate those weights once
            ranked = {}
            metrics_at[step] = evaluate_policy(model, sids, test, cfg.eval_beam_width, ranked_out=ranked)
            ranked_at[step] = ranked
        m = metrics_at[step]
        for mode, r in ranked_at[step].items():   # per-sample hits for the paired tests
            atomic_save_npy(hits_path(out_dir, kind, HITS_K, mode == "constrained"),
                            (r[:, :HITS_K] == test.target[:, None]).any(1))
        rows.append({"method": method, "seed": seed, "checkpoint": kind, "step": step,
                     "HR@5": m["HR@5_unc"], "HR@10": m["HR@10_unc"], "HR@20": m["HR@20_unc"],
                     "NDCG@10": m["NDCG@10_unc"], "halluc": m["halluc_unc"],
                     "HR@10_constrained": m["HR@10"], "admission_rate": admission_rate})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def run_method(data: Interactions, sids: SemanticIDs, sft_ckpt, reward_model, grpo: GRPOConfig,
               gate_cfg: GateConfig, cfg: TrainConfig, out_dir, reference_rates=None,
               true_utility: Callable | None = None, name: str | None = None,
               progress: bool = True) -> pd.DataFrame:
    """Train one method and return (and write ``results.csv``) a row per checkpoint kind."""
    res = train_rl(data, sids, sft_ckpt, reward_model, grpo, gate_cfg, cfg, out_dir, reference_rates,
                   true_utility, progress=progress)
    adm = float(res.steps["admission_rate"].mean())
    rows = evaluate_checkpoints(data, sids, out_dir, name or gate_cfg.method, cfg.seed, cfg, adm, cfg.device)
    rows["train_seconds"] = res.seconds
    atomic_save_df(rows, Path(out_dir) / "results.csv", index=False)
    return rows
