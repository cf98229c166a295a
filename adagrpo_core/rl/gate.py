"""AdaGRPO's per-sample gate: when to trust the reward model.

The idea in plain words. GRPO with a learned ranker as reward only helps where the ranker
is right, and it only matters where the policy is still unsure. So every sample keeps its
supervised NLL loss, and the GRPO loss is added only for samples that pass two checks made
from the G rollouts the policy already sampled for GRPO:

* difficulty ``d`` (policy side): among the distinct, valid rollouts that are not the ground
  truth, the share the policy likes at least as much as the ground truth. High = the policy
  is confused here, so there is something to learn.
* discriminability ``a`` (ranker side): among those negatives plus M ground-truth items of
  other samples in the batch, the share the ranker scores strictly below the ground truth
  (an AUC of the ground truth against its negatives). High = the ranker can tell the right
  item from wrong ones here, so its reward is worth following.

The gate is ``g = (d >= tau) & (a >= rho)``. Two truth-free checks of where the reward itself
is reliable can replace or join the ranker side: the exposure share ``e`` (how well the
reward model's training data covers the sample's candidates: their mean exposure percentile) and the ensemble agreement ``u``
(how alike K reward models order the rollouts); their gates admit a batch quantile, and a soft
variant scales each sample's GRPO term by the reliability instead. Controls (random at the same rate, each check
alone, the exact complement, and an oracle that uses the true utility) share the same
interface, so a trainer swaps them with one config field. Everything is vectorised over the
batch (shapes in comments: B samples, G rollouts, M in-batch negatives). Item id -1 (any
negative id) marks an invalid rollout (a hallucinated tuple).

This file needs only torch and the validators of ``adagrpo_core/common/checks.py``: copy both into
your own GRPO code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..common.checks import check_choice, check_int, check_range


# ----------------------------------------------------------------------------------------------
# diagnostics


def distinct_negatives_mask(rollout_items: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """bool [B, G]: rollout j of sample i is a valid (id >= 0) item != target, first time seen in the row."""
    items = rollout_items                                                    # [B, G]
    G = items.shape[1]
    same = items.unsqueeze(2) == items.unsqueeze(1)                          # [B, G, G] same[i,j,k]
    earlier = torch.ones(G, G, dtype=torch.bool, device=items.device).tril(-1)  # k < j
    repeated = (same & earlier).any(dim=2)                                   # [B, G]
    return (items >= 0) & (items != target.unsqueeze(1)) & ~repeated


def difficulty(logp_target: torch.Tensor, logp_rollouts: torch.Tensor,
               rollout_items: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d [B] = #{negatives j : logp_ij >= logp_target_i} / #{negatives}; 0 with no negatives.

    ``logp_target`` [B] and ``logp_rollouts`` [B, G] are sequence log-likelihoods under the
    current policy; negatives = ``distinct_negatives_mask``.
    """
    neg = distinct_negatives_mask(rollout_items, target)                     # [B, G]
    harder = neg & (logp_rollouts >= logp_target.unsqueeze(1))               # [B, G]
    n = neg.sum(1)                                                           # [B]
    return harder.sum(1).float() / n.clamp(min=1).float()


def discriminability(score_target: torch.Tensor, score_rollouts: torch.Tensor,
                     rollout_items: torch.Tensor, target: torch.Tensor,
                     score_inbatch: torch.Tensor | None = None,
                     inbatch_mask: torch.Tensor | None = None) -> torch.Tensor:
    """a [B] = #{n in N_i : s_n < s_target_i} / |N_i|; 0 when N_i is empty.

    N_i = the distinct valid rollout negatives (``score_rollouts`` [B, G]) plus the in-batch
    negatives (``score_inbatch`` [B, M], the ranker's scores of other samples' ground-truth
    items for this sample's context; ``inbatch_mask`` [B, M] marks the real ones, default all).
    Ties count as not separated (strict <).
    """
    neg = distinct_negatives_mask(rollout_items, target)                     # [B, G]
    below = (neg & (score_rollouts < score_target.unsqueeze(1))).sum(1)      # [B]
    n = neg.sum(1)                                                           # [B]
    if score_inbatch is not None:
        if inbatch_mask is None:
            inbatch_mask = torch.ones_like(score_inbatch, dtype=torch.bool)
        ib = inbatch_mask.bool()                                             # [B, M]
        below = below + (ib & (score_inbatch < score_target.unsqueeze(1))).sum(1)
        n = n + ib.sum(1)
    elif inbatch_mask is not None:
        raise ValueError("inbatch_mask given without score_inbatch, got score_inbatch=None")
    return below.float() / n.clamp(min=1).float()


def sample_inbatch_negatives(target: torch.Tensor, M: int,
                             generator: torch.Generator | None = None,
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """For each sample, M other samples of the batch whose ground-truth item differs from its own.

    ``target`` [B] -> ``idx`` [B, M] long (row indices into the batch), ``mask`` [B, M] bool.
    Uniform without replacement: random keys, ineligible entries (same item, which includes
    the sample itself) pushed last, then the M smallest keys. ``mask`` is False where fewer
    than M eligible samples exist; ``idx`` there is a placeholder to ignore.
    """
    check_int("M", M, lo=0)
    B = target.shape[0]
    gen_device = generator.device if generator is not None else target.device
    keys = torch.rand(B, B, generator=generator, device=gen_device).to(target.device)  # [B, B]
    eligible = target.unsqueeze(1) != target.unsqueeze(0)                   # [B, B]
    keys = torch.where(eligible, keys, torch.full_like(keys, 2.0))           # ineligible last
    k = min(M, B)
    idx = keys.topk(k, dim=1, largest=False).indices                         # [B, k]
    mask = eligible.gather(1, idx)                                           # [B, k]
    if k < M:  # pad: there are only B - 1 other samples
        idx = torch.cat([idx, idx.new_zeros(B, M - k)], dim=1)
        mask = torch.cat([mask, mask.new_zeros(B, M - k)], dim=1)
    return idx, mask


def rank_agreement(ranker_scores: torch.Tensor, true_utility: torch.Tensor,
                   valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Kendall-style agreement of the ranker's order of a sample's rollouts with the truth.

    Over pairs (j, k) of valid rollouts (``valid`` [B, G]) with distinct true utilities::

        agree_i = #{concordant pairs: sign(s_j - s_k) == sign(u_j - u_k)} / #{pairs}

    A ranker tie on such a pair is not concordant. Returns ``agree`` [B] (0 where there is no
    pair) and ``n_pairs`` [B] (unordered pairs).
    """
    ds = ranker_scores.unsqueeze(2) - ranker_scores.unsqueeze(1)             # [B, G, G]
    du = true_utility.unsqueeze(2) - true_utility.unsqueeze(1)               # [B, G, G]
    v = valid.bool()
    pair = v.unsqueeze(2) & v.unsqueeze(1) & (du != 0)                       # [B, G, G], j != k
    concordant = pair & (torch.sign(ds) * torch.sign(du) > 0)
    n = pair.sum((1, 2))                                                     # ordered pairs
    agree = concordant.sum((1, 2)).float() / n.clamp(min=1).float()
    return agree, n // 2


def exposure_percentile(item_exposure: torch.Tensor) -> torch.Tensor:
    """float [n_items] in [0, 1]: each item's percentile among the catalogue's counts c_i
    (``item_exposure``: its train impressions; on real data its train clicks), ties averaged:
    0 for the least shown item, 1 for the most shown."""
    c = item_exposure.double()
    n = c.numel()
    if n < 2:
        return torch.ones(n, dtype=torch.float32, device=c.device)
    below = torch.searchsorted(c.sort().values, c, right=False).double()     # items with a smaller count
    ties = torch.searchsorted(c.sort().values, c, right=True).double() - below
    return ((below + (ties - 1) / 2) / (n - 1)).float()


def exposure_share(rollout_items: torch.Tensor, target: torch.Tensor, percentile: torch.Tensor) -> torch.Tensor:
    """e [B]: how well the reward model's training data covers this sample's candidates, the mean
    exposure percentile of the target and the distinct valid rollout negatives N_i::

        e_i = (p(y*_i) + sum_{j in N_i} p(y_ij)) / (1 + |N_i|)

    ``percentile`` [n_items] (:func:`exposure_percentile`). A truth-free proxy of where a learned
    reward is reliable: the ranker's error grows as exposure falls. (A share of candidates above a
    count threshold ties most samples at 1 on a popularity-biased log, so the percentile is used.)
    """
    neg = distinct_negatives_mask(rollout_items, target)                     # [B, G]
    p = percentile[rollout_items.clamp(min=0)]                               # [B, G]
    total = (p * neg).sum(1) + percentile[target]                            # [B]
    return total / (1 + neg.sum(1)).float()


def ensemble_agreement(scores: torch.Tensor, rollout_items: torch.Tensor) -> torch.Tensor:
    """u [B]: mean pairwise Spearman correlation of K reward models over a sample's rollouts::

        u_i = mean_{k < l} Spearman(s^k_i, s^l_i)   over the distinct valid rollouts of sample i

    ``scores`` [K, B, G] (each member's scores of the rollouts), ``rollout_items`` [B, G]
    (-1 = invalid). Ranks are taken within each row's distinct valid rollouts (ties broken by
    position); a row with fewer than 3 of them has no measurable agreement and gets 0 (not
    trusted). Identical members give 1.
    """
    K, B, G = scores.shape
    if K < 2:
        raise ValueError(f"ensemble_agreement needs K >= 2 members, got K={K}")
    items = rollout_items                                                    # [B, G]
    same = items.unsqueeze(2) == items.unsqueeze(1)                          # [B, G, G]
    earlier = torch.ones(G, G, dtype=torch.bool, device=items.device).tril(-1)
    keep = (items >= 0) & ~(same & earlier).any(2)                           # [B, G] distinct valid
    n = keep.sum(1)                                                          # [B]
    s = scores.float().masked_fill(~keep, float("inf"))                      # [K, B, G] dropped last
    ranks = torch.argsort(torch.argsort(s, dim=-1, stable=True), dim=-1, stable=True).float()   # [K, B, G]
    mean = (n.float() - 1) / 2                                               # [B]
    r = torch.where(keep, ranks - mean.unsqueeze(1), torch.zeros_like(ranks))   # centred, 0 off-row
    norm = r.pow(2).sum(-1).sqrt().clamp(min=1e-12)                          # [K, B]
    z = r / norm.unsqueeze(-1)                                               # [K, B, G]
    corr = torch.einsum("kbg,lbg->klb", z, z)                                # [K, K, B]
    pairs = torch.ones(K, K, dtype=torch.bool, device=items.device).triu(1)
    u = corr[pairs].mean(0)                                                  # [B]
    return torch.where(n >= 3, u, torch.zeros_like(u))


# ----------------------------------------------------------------------------------------------
# gates (bool [B]; the soft variant: float weights in [0, 1])


def adagrpo_gate(d: torch.Tensor, a: torch.Tensor, tau: float, rho: float) -> torch.Tensor:
    """g_i = 1[d_i >= tau] * 1[a_i >= rho]: hard for the policy AND trustworthy for the ranker."""
    return difficulty_gate(d, tau) & discriminability_gate(a, rho)


def difficulty_gate(d: torch.Tensor, tau: float) -> torch.Tensor:
    """g_i = 1[d_i >= tau] (ablation: policy side only)."""
    check_range("tau", tau, lo=0.0, hi=1.0)
    return d >= tau


def discriminability_gate(a: torch.Tensor, rho: float) -> torch.Tensor:
    """g_i = 1[a_i >= rho] (ablation: ranker side only)."""
    check_range("rho", rho, lo=0.0, hi=1.0)
    return a >= rho


def inverse_gate(d: torch.Tensor, a: torch.Tensor, tau: float, rho: float) -> torch.Tensor:
    """Exactly the samples AdaGRPO rejects (control)."""
    return ~adagrpo_gate(d, a, tau, rho)


def random_gate(B: int, p: float, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """g_i ~ Bernoulli(p) i.i.d. (control: "less RL" at AdaGRPO's admission rate p)."""
    check_int("B", B, lo=0)
    check_range("p", p, lo=0.0, hi=1.0)
    gen_device = generator.device if generator is not None else device
    return (torch.rand(B, generator=generator, device=gen_device) < p).to(device)


def reliability_gate(r: torch.Tensor, rate: float) -> torch.Tensor:
    """g_i = 1[r_i >= q], q = the batch's (1 - rate) quantile of the reliability r [B], so that
    about ``rate`` of each batch is admitted: more where r ties at q, except at the batch's
    minimum, where ties are rejected (r_i > q): the samples with the least measurable
    reliability (u = 0: too few rollouts to compare) are never admitted for being tied."""
    check_range("rate", rate, lo=0.0, hi=1.0)
    if rate == 0 or r.numel() == 0:
        return torch.zeros_like(r, dtype=torch.bool)
    q = torch.quantile(r.float(), 1.0 - rate)
    return (r > q) | ((r == q) & (q > r.min())) if rate < 1 else torch.ones_like(r, dtype=torch.bool)


def soft_weights(r: torch.Tensor) -> torch.Tensor:
    """w_i = clamp(r_i, 0, 1): the soft variant scales sample i's GRPO term by its reliability
    instead of a 0/1 gate (w = 1 everywhere is the open gate, the fixed mixture)."""
    return r.float().clamp(0.0, 1.0)


def oracle_gate(ranker_scores: torch.Tensor, true_utility: torch.Tensor, valid: torch.Tensor,
                threshold: float) -> torch.Tensor:
    """g_i = 1[rank_agreement_i >= threshold]; a sample with no comparable pair is rejected.

    Simulated world only (needs the true utility of every rollout).
    """
    check_range("threshold", threshold, lo=0.0, hi=1.0)
    agree, n_pairs = rank_agreement(ranker_scores, true_utility, valid)
    return (n_pairs > 0) & (agree >= threshold)


# ----------------------------------------------------------------------------------------------
# methods and config


@dataclass(frozen=True)
class Method:
    """A training method: the gate that picks the samples of its GRPO term, and its NLL weight."""

    gate: Callable[..., torch.Tensor]
    """``gate(cfg, d, a, extras) -> bool [B]``; ``extras`` holds what some controls need."""
    w_nll: float
    """Weight of the NLL term: 1, or 0 for pure GRPO."""
    help: str
    """The rule, in words."""


def _closed(cfg, d, a, extras):
    return torch.zeros(d.shape[0], dtype=torch.bool, device=d.device)


def _open(cfg, d, a, extras):
    return torch.ones(d.shape[0], dtype=torch.bool, device=d.device)


def _random(cfg, d, a, extras):
    p = extras.get("target_rate") if cfg.random_rate_mode == "per_step" else cfg.random_rate
    if p is None:
        name = "target_rate" if cfg.random_rate_mode == "per_step" else "random_rate"
        raise ValueError(f"{name} is required for method='random' with "
                         f"random_rate_mode={cfg.random_rate_mode!r}, got {name}=None")
    return random_gate(d.shape[0], p, extras.get("generator"), device=d.device)


def _oracle(cfg, d, a, extras):
    need = ("ranker_scores", "true_utility", "valid")
    if any(extras.get(k) is None for k in need):
        got = ", ".join(f"{k}={'set' if extras.get(k) is not None else None}" for k in need)
        raise ValueError(f"method='oracle' needs ranker_scores, true_utility and valid, got {got}")
    return oracle_gate(extras["ranker_scores"], extras["true_utility"], extras["valid"], cfg.oracle_threshold)


def _reliability(cfg, extras, which=None):
    which = which or cfg.reliability
    r = extras.get(which)
    if r is None:
        raise ValueError(f"this method needs the {which} diagnostic ({'e' if which == 'exposure' else 'u'}), "
                         f"got {which}=None: pass the item exposure counts (exposure) or an ensemble of rankers "
                         "(ensemble)")
    return r


def _rel_gate(which):
    return lambda cfg, d, a, x: reliability_gate(_reliability(cfg, x, which), cfg.reliability_rate)


def _difficulty_and_reliability(cfg, d, a, extras):
    return difficulty_gate(d, cfg.tau) & reliability_gate(_reliability(cfg, extras), cfg.reliability_rate)


# The one registry of methods: each one's gate and NLL weight. GateConfig.method names one of these.
METHODS: dict[str, Method] = {
    "nll": Method(_closed, 1.0, "continued SFT: no GRPO term"),
    "grpo": Method(_open, 0.0, "pure GRPO: every sample, no NLL term"),
    "mix": Method(_open, 1.0, "fixed NLL-GRPO mixture: every sample"),
    "adagrpo": Method(lambda cfg, d, a, x: adagrpo_gate(d, a, cfg.tau, cfg.rho), 1.0, "d >= tau and a >= rho"),
    "random": Method(_random, 1.0, "Bernoulli(p), p = AdaGRPO's admission rate"),
    "difficulty": Method(lambda cfg, d, a, x: difficulty_gate(d, cfg.tau), 1.0, "d >= tau"),
    "discriminability": Method(lambda cfg, d, a, x: discriminability_gate(a, cfg.rho), 1.0, "a >= rho"),
    "inverse": Method(lambda cfg, d, a, x: inverse_gate(d, a, cfg.tau, cfg.rho), 1.0,
                      "not (d >= tau and a >= rho)"),
    "oracle": Method(_oracle, 1.0, "rank agreement(ranker, true utility) >= oracle_threshold"),
    "exposure": Method(_rel_gate("exposure"), 1.0, "e >= the batch's (1 - reliability_rate) quantile of e"),
    "ensemble": Method(_rel_gate("ensemble"), 1.0, "u >= the batch's (1 - reliability_rate) quantile of u"),
    "difficulty_and_reliability": Method(_difficulty_and_reliability, 1.0,
                                         "d >= tau and the reliability (e or u) >= its batch quantile"),
    "soft": Method(lambda cfg, d, a, x: soft_weights(_reliability(cfg, x)), 1.0,
                   "every sample, its GRPO term scaled by the reliability (e or u) in [0, 1]"),
}

RELIABILITY_METHODS = ("exposure", "ensemble", "difficulty_and_reliability", "soft")
"""The methods that read a reliability diagnostic (e or u)."""


@dataclass
class GateConfig:
    """Which samples receive the GRPO loss."""

    method: str = "adagrpo"
    """One of METHODS: nll, grpo, mix, adagrpo, random, difficulty, discriminability, inverse, oracle,
    exposure, ensemble, difficulty_and_reliability, soft."""
    tau: float = 0.5
    """Difficulty threshold in [0, 1]: admit when d >= tau (the paper gives no value; sweep it)."""
    rho: float = 0.5
    """Discriminability threshold in [0, 1]: admit when a >= rho (0.5 = chance level of a random ranker)."""
    num_negatives: int = 5
    """M >= 0: in-batch negatives (other samples' ground truths) added to N_i (paper: 5)."""
    random_rate: float | None = None
    """Random control's admission probability in [0, 1] for random_rate_mode="mean" (AdaGRPO's overall rate)."""
    random_rate_mode: str = "per_step"
    """Random control's p: "per_step" = AdaGRPO's rate at the same step (passed as target_rate); "mean" = random_rate."""
    oracle_threshold: float = 0.5
    """Oracle control: admit when the ranker/true-utility pairwise rank agreement is >= this, in [0, 1]."""
    reliability: str = "exposure"
    """Which reliability diagnostic difficulty_and_reliability and soft read: "exposure" (e) or "ensemble" (u)."""
    reliability_rate: float = 0.5
    """Reliability gates: the share of each batch admitted (threshold = the batch's (1 - rate) quantile), in [0, 1]."""

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        check_range("tau", self.tau, lo=0.0, hi=1.0)
        check_range("rho", self.rho, lo=0.0, hi=1.0)
        check_int("num_negatives", self.num_negatives, lo=0)
        if self.random_rate is not None:
            check_range("random_rate", self.random_rate, lo=0.0, hi=1.0)
        check_choice("random_rate_mode", self.random_rate_mode, ("per_step", "mean"))
        check_range("oracle_threshold", self.oracle_threshold, lo=0.0, hi=1.0)
        check_choice("reliability", self.reliability, ("exposure", "ensemble"))
        check_range("reliability_rate", self.reliability_rate, lo=0.0, hi=1.0)

    @property
    def w_nll(self) -> float:
        """The NLL weight of this method (:data:`METHODS`: 0 for pure GRPO, else 1)."""
        return METHODS[self.method].w_nll


def compute_gate(cfg: GateConfig, d: torch.Tensor, a: torch.Tensor, *,
                 generator: torch.Generator | None = None, target_rate: float | None = None,
                 ranker_scores: torch.Tensor | None = None,
                 true_utility: torch.Tensor | None = None,
                 valid: torch.Tensor | None = None, exposure: torch.Tensor | None = None,
                 ensemble: torch.Tensor | None = None) -> torch.Tensor:
    """bool [B] gate for ``cfg.method`` (:data:`METHODS`; float weights for ``soft``), from d [B]
    and a [B] and the extras some methods need.

    random: p = ``target_rate`` (the matched run's rate at this step) when random_rate_mode is
    "per_step", else ``cfg.random_rate``; oracle: needs ``ranker_scores``, ``true_utility``
    and ``valid`` [B, G]; the reliability methods: ``exposure`` (e [B], :func:`exposure_share`)
    or ``ensemble`` (u [B], :func:`ensemble_agreement`).
    """
    check_choice("method", cfg.method, METHODS)
    extras = {"generator": generator, "target_rate": target_rate, "ranker_scores": ranker_scores,
              "true_utility": true_utility, "valid": valid, "exposure": exposure, "ensemble": ensemble}
    return METHODS[cfg.method].gate(cfg, d, a, extras)
