"""One RL step, split as TRL's GRPO trainer splits it: sample-and-score, then the loss.

:func:`sample_and_score`, for a batch of B contexts (history x_i, ground truth y*_i):

1. G = ``num_generations`` rollouts per context from the shared-history sampler (unconstrained,
   so hallucinations can be sampled) and their rewards r_ij (invalid tuples get the reward's
   ``invalid_reward``);
2. the policy's log-likelihood of y*_i (teacher-forced, with grad) and of the rollouts (from
   the sampler), sharing one history encoding;
3. the diagnostics: difficulty d_i (the policy's log-likelihood of y*_i against the distinct
   valid rollout negatives) and discriminability a_i (the reward's score of y*_i against those
   negatives plus M in-batch negatives);
4. the method's gate g_i (``gate.compute_gate``);
5. the differentiable pass over the rollouts of the samples whose GRPO term has a gradient
   (admitted, non-zero advantage): rejected samples cost no backward pass.

:func:`compute_loss` turns that into L = (1/B) sum_i [ w_nll L_nll_i + lambda g_i L_grpo_i ]
(``grpo.combine_losses``) and the per-step metrics, named as TRL names them where TRL has a
name (``reward``, ``reward_std``, ``frac_reward_zero_std``, ``clip_ratio/region_mean``, ``kl``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..data.interactions import Examples
from ..model.decoding import sample_rollouts
from .gate import (
    GateConfig,
    compute_gate,
    difficulty,
    discriminability,
    ensemble_agreement,
    exposure_percentile,
    exposure_share,
    rank_agreement,
    sample_inbatch_negatives,
)
from .grpo import (
    GRPOConfig,
    combine_losses,
    group_advantages,
    grpo_loss_per_sample,
    nll_per_sample,
)


@dataclass
class ReliabilityInputs:
    """What the reliability diagnostics read, besides the rollouts: the reward model's training
    coverage and an ensemble of reward models."""

    item_exposure: torch.Tensor | None = None   # [n_items] train impressions (real data: train clicks) per item
    ensemble: list | None = None                # K >= 2 rewards (score_items(history, items, batch) -> [B, C])


@dataclass
class ScoredBatch:
    """What sample-and-score hands to the loss. Shapes: B contexts, G rollouts, Lp tokens."""

    nll: torch.Tensor                         # [B] NLL of y*, with grad
    gate: torch.Tensor                        # [B] bool
    logp: torch.Tensor | None = None          # [B, G, Lp] rollout log-probs at the temperature, with grad
    rewards: torch.Tensor | None = None       # [B, G]
    history: torch.Tensor | None = None       # [B, H] (the reference policy's KL needs it)
    tokens: torch.Tensor | None = None        # [B, G, Lp] rollout tuples
    metrics: dict = field(default_factory=dict)
    audit: dict | None = None                 # per-sample diagnostics against the truth (simulated world)
    advantages: torch.Tensor | None = None    # [B, G] group advantages of the rewards (grpo.scale_rewards)


def sample_and_score(model, reward_model, batch, item_codes: torch.Tensor, trie, grpo: GRPOConfig,
                     gate_cfg: GateConfig, generator: torch.Generator, target_rate: float | None = None,
                     true_utility: Callable | None = None, all_rows: bool = False,
                     reliability: ReliabilityInputs | None = None) -> ScoredBatch:
    """Rollouts, rewards, diagnostics, the gate and the differentiable passes of one batch.

    ``item_codes`` [n_items, Lp] maps items to tuples (on the model's device); ``true_utility(batch,
    items [B, G]) -> [B, G]`` is needed only by the oracle gate. ``all_rows=True`` gives every
    sample's rollouts the differentiable pass, gated or not: the same loss and gradients up to
    float rounding, at more cost (the reference of the benchmark and the tests). ``reliability``:
    the inputs of the exposure diagnostic e and the ensemble diagnostic u (each computed when
    given; the reliability gates need theirs)."""
    return sample_and_score_runs(model, reward_model, [batch], item_codes, trie, grpo, gate_cfg, [generator],
                                 [target_rate], true_utility, all_rows, reliability)[0]


def sample_and_score_runs(model, reward_model, batches: list, item_codes: torch.Tensor, trie, grpo: GRPOConfig,
                          gate_cfg: GateConfig, generators: list, target_rates: list,
                          true_utility: Callable | None = None, all_rows: bool = False,
                          reliability: ReliabilityInputs | None = None,
                          gate_cfgs: list | None = None) -> list[ScoredBatch]:
    """:func:`sample_and_score` for K runs of one method at once: ``model`` is their stacked policy
    (``model/stacked.py``; a plain policy for K = 1), ``batches`` their K batches of B samples each,
    ``generators`` and ``target_rates`` theirs. The model passes and the reward run on the K * B
    rows together (run-major); the in-batch negatives and the gate are drawn per run, each from its
    own generator, so a run's random draws are those it makes alone. With K > 1 every rollout gets
    the differentiable pass (``all_rows``): the gated rows of the runs differ, and a stacked
    policy needs the same number of rows per run. ``gate_cfgs``: run k's gate config where the runs'
    differ in a seed-resolved value (a random control's rate); they share ``gate_cfg``'s method
    and negatives. Returns one ScoredBatch per run."""
    K = len(batches)
    if len(generators) != K or len(target_rates) != K:
        raise ValueError(f"one generator and one target rate per run: got {len(batches)} batches, "
                         f"{len(generators)} generators and {len(target_rates)} target rates")
    B = len(batches[0])
    if any(len(b) != B for b in batches):
        raise ValueError(f"the runs of a batch need batches of one size, got sizes {[len(b) for b in batches]}")
    batch = batches[0] if K == 1 else Examples.concat(batches)
    dev = model.device
    hist = torch.as_tensor(batch.history, device=dev)
    target = torch.as_tensor(batch.target, device=dev)
    target_codes = item_codes[target][:, None]                                      # [K*B, 1, Lp]
    G = grpo.num_generations
    runs = [slice(k * B, (k + 1) * B) for k in range(K)]

    if gate_cfg.method == "nll":  # continued SFT: no rollouts needed
        logits = model.tuple_logits(hist, target_codes)                              # [K*B, 1, Lp, V]
        nll = nll_per_sample(model.gather_logprobs(logits, target_codes)[:, 0])
        return [ScoredBatch(nll[r], torch.zeros(B, dtype=torch.bool, device=dev)) for r in runs]

    cache = model.encode(hist)                        # with grad; the rollouts use a detached view
    roll = sample_rollouts(model, None, G, grpo.temperature, trie=trie, generator=generators[0] if K == 1
                           else list(generators), cache=cache)
    rewards = reward_model(hist, roll.tokens, batch=batch)                           # [K*B, G]
    logp_y = model.tuple_logprobs(None, target_codes, cache=cache)[:, 0]             # [K*B, Lp], with grad
    nll = nll_per_sample(logp_y)                                                     # [K*B]
    seq_ll = torch.cat([roll.logp1, logp_y.detach()[:, None]], 1).sum(-1)           # [K*B, G+1] sequence log-lik.
    d = difficulty(seq_ll[:, G], seq_ll[:, :G], roll.items, target)
    M = gate_cfg.num_negatives
    idx = inmask = None
    if M > 0:                       # each run's negatives come from its own batch and generator
        drawn = [sample_inbatch_negatives(target[r], M, generator=g) for r, g in zip(runs, generators)]
        idx = torch.cat([i + r.start for (i, _), r in zip(drawn, runs)])
        inmask = torch.cat([m for _, m in drawn])
    cand = target[:, None] if M == 0 else torch.cat([target[:, None], target[idx]], 1)  # [K*B, 1+M]
    cand_scores = reward_model.score_items(hist, cand, batch=batch)
    a = discriminability(cand_scores[:, 0], rewards, roll.items, target,
                         None if M == 0 else cand_scores[:, 1:], inmask)
    tu = None
    if gate_cfg.method == "oracle" and true_utility is None:
        raise ValueError("method='oracle' needs the simulated world's true utility")
    if true_utility is not None:
        tu = torch.as_tensor(true_utility(batch, roll.items.cpu().numpy()), dtype=torch.float32, device=dev)
        tu = torch.where(roll.valid, tu, torch.zeros_like(tu))
    rel = reliability or ReliabilityInputs()
    e = u = None
    if rel.item_exposure is not None:
        e = exposure_share(roll.items, target, exposure_percentile(rel.item_exposure.to(dev)))
    if rel.ensemble:
        u = ensemble_agreement(torch.stack([m.score_items(hist, roll.items, batch=batch) for m in rel.ensemble]),
                               roll.items)
    pick = lambda x, r: None if x is None else x[r]   # noqa: E731
    g = torch.cat([compute_gate(gc, d[r], a[r], generator=gen, target_rate=rate, ranker_scores=rewards[r],
                                true_utility=pick(tu, r), valid=roll.valid[r], exposure=pick(e, r),
                                ensemble=pick(u, r))
                   for r, gen, rate, gc in zip(runs, generators, target_rates, gate_cfgs or [gate_cfg] * K)])
    adv = group_advantages(rewards, grpo.scale_rewards)                              # [K*B, G]
    logp_T = _rollout_logprobs(model, cache, roll, adv, g, grpo, all_rows or K > 1)  # [K*B, G, Lp]
    r_all = rewards.float()
    out = []
    for r in runs:
        rw, sl = r_all[r], seq_ll[r]
        metrics = {"mean_d": d[r].mean().item(), "mean_a": a[r].mean().item(),
                   **{f"mean_{k}": v[r].mean().item() for k, v in (("e", e), ("u", u)) if v is not None},
                   "reward": rw.mean().item(), "reward_std": rw.std(1).mean().item(),
                   "frac_reward_zero_std": (rw.std(1) == 0).float().mean().item(),
                   "nonfinite_scores": int((~torch.isfinite(sl)).sum() + (~torch.isfinite(cand_scores[r])).sum()
                                           + (~torch.isfinite(rw)).sum()),
                   "rollout_halluc": (~roll.valid[r]).float().mean().item(),
                   "rollout_hit": (roll.items[r] == target[r, None]).any(1).float().mean().item()}
        audit = None
        if tu is not None:
            agree, n_pairs = rank_agreement(rewards[r], tu[r], roll.valid[r])
            metrics["rank_agreement"] = agree[n_pairs > 0].mean().item() if bool((n_pairs > 0).any()) \
                else float("nan")
            audit = {"d": d[r], "a": a[r], "gate": g[r], "agreement": agree, "pairs": n_pairs,
                     "reward_truth_corr": _rowwise_corr(rw, tu[r], roll.valid[r]), "target": target[r]}
            audit.update({k: v[r] for k, v in (("e", e), ("u", u)) if v is not None})
            audit = {k: v.detach().cpu().numpy() for k, v in audit.items()}
        out.append(ScoredBatch(nll[r], g[r], logp_T[r], rewards[r], hist[r], roll.tokens[r], metrics, audit, adv[r]))
    return out


def _rollout_logprobs(model, cache, roll, adv: torch.Tensor, g: torch.Tensor, grpo: GRPOConfig,
                      all_rows: bool = False) -> torch.Tensor:
    """The rollouts' log-probs at the sampling temperature, [B, G, Lp], with grad where the GRPO
    term has one: the admitted samples (g != 0) whose group has a non-zero advantage (or a KL
    term). Only those rows get the teacher-forced pass; the others keep the sampler's detached
    log-probs, which give the same loss value (on-policy the ratio is 1) and no gradient, exactly
    as their zero weight in the combined loss does. So a gate that admits 40% of a batch pays for
    40% of the differentiable rollout pass."""
    logp = roll.logp                                                                 # [B, G, Lp] detached
    if all_rows:
        return model.tuple_logprobs(None, roll.tokens, grpo.temperature, cache=cache)
    if grpo.lam == 0:
        return logp
    need = g != 0
    if grpo.beta == 0:
        need &= (adv != 0).any(1)
    rows = need.nonzero().squeeze(1)                                                 # [n]
    if len(rows) == 0:
        return logp
    tokens = roll.tokens[rows]                                                       # [n, G, Lp]
    logits = model.tuple_logits(None, tokens, cache=cache.select(rows))              # [n, G, Lp, V]
    return logp.index_put((rows,), model.gather_logprobs(logits, tokens, grpo.temperature))


def _rowwise_corr(x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of x and y over each row's valid entries: [B, G] -> [B] (NaN with fewer
    than two valid entries or no variance)."""
    w = valid.float()
    n = w.sum(1, keepdim=True)
    xm = (x * w).sum(1, keepdim=True) / n.clamp(min=1)
    ym = (y * w).sum(1, keepdim=True) / n.clamp(min=1)
    xc, yc = (x - xm) * w, (y - ym) * w
    den = ((xc * xc).sum(1) * (yc * yc).sum(1)).sqrt()
    return torch.where(den > 0, (xc * yc).sum(1) / den.clamp(min=1e-12), torch.full_like(den, float("nan")))


def compute_loss(scored: ScoredBatch, grpo: GRPOConfig, gate_cfg: GateConfig,
                 ref_model=None) -> tuple[torch.Tensor, dict]:
    """The combined loss of a scored batch and its metrics (on-policy: the "old" log-probs are the
    current ones, detached, so the ratio is 1 and the clip never activates; its share is logged)."""
    nll, g = scored.nll, scored.gate
    if scored.logp is None:                                                          # method "nll"
        loss = combine_losses(nll, torch.zeros_like(nll), g, gate_cfg.w_nll, 0.0, grpo.normalize)
        return loss, {"nll": nll.mean().item(), "admission_rate": 0.0}
    adv = scored.advantages
    logp_ref = None
    if grpo.beta > 0 and ref_model is not None:
        with torch.no_grad():
            logp_ref = ref_model.tuple_logprobs(scored.history, scored.tokens, grpo.temperature)
    grpo_i, stats = grpo_loss_per_sample(scored.logp, scored.logp.detach(), adv, grpo.epsilon, grpo.beta, logp_ref)
    loss = combine_losses(nll, grpo_i, g, gate_cfg.w_nll, grpo.lam, grpo.normalize)
    metrics = {"admission_rate": g.float().mean().item(), **scored.metrics,
               "clip_ratio/region_mean": float(stats["clip_frac"]), "kl": float(stats["kl"]),
               "nll": nll.mean().item(), "grpo_loss": grpo_i.mean().item()}
    return loss, metrics
