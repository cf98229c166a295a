"""K RL runs of one method that advance together in one process, on one stacked policy.

The runs share a profile, an SFT start and a step count, and differ in seed (and in what a seed
resolves: a random control's admission rates, a rate-matched mixture's lambda). Their K policies
are stacked (``model/stacked.py``): every step samples, scores and back-propagates the K batches
as one batch of K * B rows, and every validation decodes the K validation sets as one. What each
run keeps of its own, as it would alone (``train/rl.py`` + ``train/loop.py``):

* data order (seed), rollout / negative / gate generator, reference rates and gate;
* loss, non-finite guard (a bad loss stops the batch naming the run, its checkpoints kept);
* gradient clipping by the norm of its own gradient; AdamW state (the optimiser is element-wise, so
  one AdamW over the stacked weights is K of them: the same lr schedule, each its own moments);
* checkpoints in its own folder (best on its own validation HR@10, final, logs, ``last.pt``),
  written in the per-run format: a batched run's ``last.pt`` loads into a plain policy and AdamW.

Resume: when every run of the batch has a ``last.pt`` at the same step the batch resumes there;
when their steps differ (the batch was killed while writing them) each run resumes alone on the
per-run path from its own ``last.pt``.

Not supported (a clear error): ``base_competes`` (the SFT start validated as step 0; the real-data
profiles use it and run per run) and a nonzero ``beta`` with a per-run reference (the reference is the
shared SFT start, which is what ``beta`` reads anyway).
"""
from __future__ import annotations

import copy
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..eval.evaluate import evaluate_checkpoints_runs, evaluate_runs, validation_subset
from ..model.policy import load_policy
from ..model.semantic_ids import sids_hash
from ..model.stacked import stack_policies, unstack_state
from ..rl.step import compute_loss, sample_and_score_runs
from ..common.runtime import rng_state, seed_everything, set_rng_state
from ..common.storage import atomic_save_df, atomic_save_npz, load_checkpoint
from .loop import _check_finite, _plain_progress, checkpoint_state, data_order, lr_multiplier, write_checkpoint
from .rl import RL_ORDER_SALT, RLConfig, RLResult, check_method_inputs, run_configs, train_rl


def check_batch(cfgs: list[RLConfig], gates: list) -> None:
    """Runs can share a batch when only their seeds (and seed-resolved gate values) differ."""
    if not cfgs:
        raise ValueError("a batch needs at least one run, got none")
    base = replace(cfgs[0], seed=0)
    for i, c in enumerate(cfgs):
        if replace(c, seed=0) != base:
            raise ValueError(f"runs of a batch may differ only in seed: run {i} has RLConfig {c}, run 0 {cfgs[0]}")
        if gates[i].method != gates[0].method or gates[i].num_negatives != gates[0].num_negatives:
            raise ValueError(f"runs of a batch share one method: run {i} is {gates[i].method!r}, "
                             f"run 0 {gates[0].method!r}")
    if cfgs[0].base_competes:
        raise ValueError("batched runs do not validate the SFT start (base_competes=True): run them one by one "
                         "(batch=1)")
    seeds = [c.seed for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the runs of a batch need distinct seeds, got seeds={seeds}")


def run_optimizer_state(opt: torch.optim.Optimizer, k: int) -> dict:
    """Run k's slice of an optimiser over stacked weights, as a plain optimiser's state dict."""
    sd = opt.state_dict()
    take = lambda v: v[k].clone() if torch.is_tensor(v) and v.dim() > 0 else v   # noqa: E731  (step stays a scalar)
    return {"state": {i: {n: take(v) for n, v in st.items()} for i, st in sd["state"].items()},
            "param_groups": copy.deepcopy(sd["param_groups"])}


def stacked_optimizer_state(states: list[dict]) -> dict:
    """The inverse of :func:`run_optimizer_state`: K plain state dicts as one over stacked weights."""
    first = states[0]
    stack = lambda i, n, v: torch.stack([s["state"][i][n] for s in states]) \
        if torch.is_tensor(v) and v.dim() > 0 else v                              # noqa: E731
    return {"state": {i: {n: stack(i, n, v) for n, v in st.items()} for i, st in first["state"].items()},
            "param_groups": copy.deepcopy(first["param_groups"])}


def clip_per_run(params, max_norm: float, K: int) -> torch.Tensor:
    """Clip each run's gradient to ``max_norm`` by its own global norm (as clip_grad_norm_ does for
    one run); params are stacked [K, ...]. Returns the K norms before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.reshape(K, -1).norm(dim=1) for g in grads]).norm(dim=0)           # [K]
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(K, *([1] * (g.dim() - 1))))
    return norms


def train_rl_batched(data, sids, sft_ckpt, reward_model, grpo, gates: list, cfgs: list[RLConfig], out_dirs: list,
                     grpos: list | None = None, reference_rates: list | None = None, true_utility=None,
                     reliability=None, progress: bool = True, stop_after: int | None = None) -> list[RLResult]:
    """Train K runs of one method together (see the module docstring). ``gates``, ``cfgs``,
    ``out_dirs`` (and ``grpos``, ``reference_rates``): one per run; ``grpo`` is what the rollouts
    share (num_generations, temperature, scale_rewards), ``grpos[k]`` run k's loss weights. Each
    result's ``seconds`` is the batch's wall time over K (what a run cost)."""
    K = len(cfgs)
    grpos = grpos or [grpo] * K
    reference_rates = reference_rates or [None] * K
    check_batch(cfgs, gates)
    for g, c, r in zip(gates, cfgs, reference_rates):
        check_method_inputs(g, c.steps, r, true_utility, reliability)
    out_dirs = [Path(d) for d in out_dirs]
    configs = [run_configs(gp, g, c) for gp, g, c in zip(grpos, gates, cfgs)]
    lasts = [load_checkpoint(d / "last.pt") if (d / "last.pt").exists() else None for d in out_dirs]
    if len({None if ck is None else ck["step"] for ck in lasts}) > 1:   # killed mid-write: each resumes alone
        return [train_rl(data, sids, sft_ckpt, reward_model, gp, g, c, d, r, true_utility, progress=progress,
                         stop_after=stop_after, reliability=reliability)
                for gp, g, c, d, r in zip(grpos, gates, cfgs, out_dirs, reference_rates)]
    cfg = cfgs[0]
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    start = load_policy(sft_ckpt, sids, cfg.device)
    ref_model = copy.deepcopy(start).eval().requires_grad_(False) if any(gp.beta > 0 for gp in grpos) else None
    model = stack_policies([start] * K)
    device = model.device
    train = data.examples("train", start.cfg.max_history)
    vals = [validation_subset(data, start.cfg.max_history, c.eval_samples, c.seed) for c in cfgs]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier(cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)) \
        if cfg.scheduled else None
    gens = [torch.Generator(device=device).manual_seed(c.seed) for c in cfgs]
    item_codes, trie = torch.as_tensor(sids.codes, device=device), sids.trie.to(device)
    fingerprint = sids_hash(sids)
    step, logs, ckpts, best = 0, [[] for _ in range(K)], [[] for _ in range(K)], [-1.0] * K
    audits = [[] for _ in range(K)]
    for d in out_dirs:
        d.mkdir(parents=True, exist_ok=True)
    if lasts[0] is not None:
        for k, ck in enumerate(lasts):
            if ck.get("configs") != configs[k] or ck.get("sids_hash") != fingerprint:
                raise ValueError(f"{out_dirs[k] / 'last.pt'} was written with other configs or semantic IDs; "
                                 "use another out_dir or delete the folder")
        with torch.no_grad():
            for name, t in model.state_dict().items():
                t.copy_(torch.stack([ck["model"][name] for ck in lasts]))
        opt.load_state_dict(stacked_optimizer_state([ck["opt"] for ck in lasts]))
        if sched is not None:
            sched.load_state_dict(lasts[0]["sched"])
        step = lasts[0]["step"]
        logs, ckpts, best = [ck["log"] for ck in lasts], [ck["ckpts"] for ck in lasts], [ck["best"] for ck in lasts]
        set_rng_state(lasts[0]["rng"])
        for g, ck in zip(gens, lasts):
            g.set_state(ck["gen"].to(g.get_state().device))
        for k, d in enumerate(out_dirs):
            if (d / "audit.npz").exists():
                with np.load(d / "audit.npz") as z:
                    audits[k].append({n: z[n][z["step"] <= step] for n in z.files})
    n_per_epoch = max(1, len(train) // cfg.batch_size)
    since = [[] for _ in range(K)]
    desc = f"RL {gates[0].method} x{K}"
    plain = progress and _plain_progress()

    def checkpoint(step):
        ms = evaluate_runs(model, sids, vals, cfg.eval_beam_width, ks=(10,), modes=("constrained",))
        model.train()
        for k in range(K):
            m = ms[k]
            ckpts[k].append({"step": step, "train_loss": float(np.mean(since[k])) if since[k] else float("nan"),
                             "val_HR@10": m["HR@10"], "val_NDCG@10": m["NDCG@10"],
                             **({"lr": sched.get_last_lr()[0]} if sched is not None else {})})
            since[k] = []
            state = checkpoint_state(unstack_state(model, k), start.cfg, configs[k], step, m, fingerprint)
            improved = m["HR@10"] > best[k]
            best[k] = max(best[k], m["HR@10"])
            extra = {"opt": run_optimizer_state(opt, k), "log": logs[k], "ckpts": ckpts[k], "best": best[k],
                     "rng": rng_state(), "gen": gens[k].get_state()}
            if sched is not None:
                extra["sched"] = sched.state_dict()
            if audits[k]:
                atomic_save_npz(out_dirs[k] / "audit.npz",
                                {n: np.concatenate([a[n] for a in audits[k]]) for n in audits[k][0]})
            write_checkpoint(out_dirs[k], state, extra, improved, step == cfg.steps,
                             {"steps.csv": pd.DataFrame(logs[k]), "checkpoints.csv": pd.DataFrame(ckpts[k])})
        if plain:
            print(f"{desc}: step {step}/{cfg.steps}, {time.perf_counter() - t0:.0f} s, val HR@10 "
                  + " ".join(f"{m['HR@10']:.4f}" for m in ms), file=sys.stderr, flush=True)

    bar = tqdm(total=cfg.steps, initial=step, desc=desc) if progress and not plain else None
    model.train()
    while step < cfg.steps:
        epoch, pos = divmod(step, n_per_epoch)
        idxs = [data_order(c.seed, RL_ORDER_SALT, epoch, len(train))[pos * cfg.batch_size:(pos + 1) * cfg.batch_size]
                for c in cfgs]
        rates = [None if r is None else float(r[step]) for r in reference_rates]
        scored = sample_and_score_runs(model, reward_model, [train.subset(i) for i in idxs], item_codes, trie, grpo,
                                       gates[0], gens, rates, true_utility, reliability=reliability, gate_cfgs=gates)
        losses, metrics = [], []
        for k, sc in enumerate(scored):
            if sc.audit is not None:
                audits[k].append({"step": np.full(len(idxs[k]), step + 1), **sc.audit})
            loss, m = compute_loss(sc, grpos[k], gates[k], ref_model)
            try:
                _check_finite(loss, m, step, idxs[k])
            except FloatingPointError as e:
                raise FloatingPointError(f"run {out_dirs[k]}: {e}") from None
            losses.append(loss)
            metrics.append(m)
        opt.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        if cfg.grad_clip > 0:
            clip_per_run(list(model.parameters()), cfg.grad_clip, K)
        opt.step()
        if sched is not None:
            sched.step()
        step += 1
        for k in range(K):
            logs[k].append({"step": step, "loss": losses[k].item(), **metrics[k]})
            since[k].append(logs[k][-1]["loss"])
        if bar is not None:
            bar.update(1)
            bar.set_postfix({"admission_rate": f"{np.mean([m['admission_rate'] for m in metrics]):.3f}"})
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            checkpoint(step)
        if stop_after is not None and step >= stop_after:
            break
    if bar is not None:
        bar.close()
    model.eval()
    seconds = time.perf_counter() - t0
    return [RLResult(model, pd.DataFrame(logs[k]), pd.DataFrame(ckpts[k]), out_dirs[k], seconds / K)
            for k in range(K)]


def run_methods_batched(data, sids, sft_ckpt, reward_model, grpo, grpos: list, gates: list, cfgs: list,
                        out_dirs: list, names: list, reference_rates: list, true_utility=None, reliability=None,
                        progress: bool = True, provenance: list | None = None) -> list[pd.DataFrame]:
    """:func:`~adagrpo_core.train.rl.run_method` for a batch: train the K runs together, evaluate
    their checkpoints together, write each run's ``results.csv``; one table per run."""
    res = train_rl_batched(data, sids, sft_ckpt, reward_model, grpo, gates, cfgs, out_dirs, grpos, reference_rates,
                           true_utility, reliability, progress)
    adm = [float(r.steps["admission_rate"].mean()) for r in res]
    tables = evaluate_checkpoints_runs(data, sids, out_dirs, names, [c.seed for c in cfgs], cfgs, adm, cfgs[0].device)
    out = []
    for table, r, d, prov in zip(tables, res, out_dirs, provenance or [{}] * len(out_dirs)):
        table["train_seconds"] = r.seconds
        table = table.assign(**prov)
        atomic_save_df(table, Path(d) / "results.csv", index=False)
        out.append(table)
    return out
