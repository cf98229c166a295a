"""GRPO as pure functions: group advantages, the clipped per-sample loss, the NLL
term and the gated combination of the two.

Shapes: B samples, G rollouts (generations) per sample, L tokens per rollout (the semantic-ID
length). Everything is batched; nothing loops over samples. Knob names follow TRL's
``GRPOConfig`` (num_generations, temperature, epsilon, beta, scale_rewards) so they read the
same as in TRL's ``GRPOTrainer``.

Total loss of a batch (``combine_losses``)::

    L = (1/B) sum_i [ w_nll * L_nll_i + lam * g_i * L_grpo_i ]

with ``g_i`` the per-sample gate (see ``gate.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..common.checks import check_choice, check_int, check_range

SCALE_REWARDS = ("group", "none")
NORMALIZE = ("batch", "admitted")


def _check_shape(name: str, t: torch.Tensor, shape: tuple) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {name}.shape={tuple(t.shape)}")


# ----------------------------------------------------------------------------------------------
# advantages


def group_advantages(rewards: torch.Tensor, scale_rewards: str = "group",
                     eps: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages, TRL's convention.

    ``rewards`` [B, G] -> ``A`` [B, G]::

        "group": A_ij = (r_ij - mean_j r_ij) / (std_j r_ij + eps)
        "none":  A_ij =  r_ij - mean_j r_ij

    ``std_j`` is the *unbiased* (Bessel-corrected, divide by G - 1) standard deviation over the
    G rollouts of the sample, as in TRL's ``GRPOTrainer``, which calls ``torch.Tensor.std``
    with its default ``correction=1`` on the rewards viewed as [B, G] and adds 1e-4.

    A group whose rewards are all equal (zero variance, e.g. every rollout invalid and
    penalised alike) carries no learning signal: its advantages are set to exactly 0 (the
    floating-point ``r - mean`` can otherwise leave a tiny residue that the division by
    ``eps`` would amplify). Non-finite rewards raise ValueError.
    """
    check_choice("scale_rewards", scale_rewards, SCALE_REWARDS)
    check_range("eps", eps, lo=0.0, hi=math.inf, lo_open=True)
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be [B, G], got rewards.shape={tuple(rewards.shape)}")
    if rewards.shape[1] < 2:
        raise ValueError(f"num_generations must be >= 2, got num_generations={rewards.shape[1]}")
    if not rewards.is_floating_point():
        rewards = rewards.float()
    if not bool(torch.isfinite(rewards).all()):
        bad = rewards[~torch.isfinite(rewards)][0].item()
        raise ValueError(f"rewards must be finite, got rewards containing {bad}")
    mean = rewards.mean(dim=1, keepdim=True)                       # [B, 1]
    adv = rewards - mean                                           # [B, G]
    if scale_rewards == "group":
        std = rewards.std(dim=1, keepdim=True)                     # [B, 1], unbiased
        adv = adv / (std + eps)
    constant = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)  # [B, 1] zero-variance
    return torch.where(constant, torch.zeros_like(adv), adv)


# ----------------------------------------------------------------------------------------------
# losses


def grpo_loss_per_sample(logp_new: torch.Tensor, logp_old: torch.Tensor,
                         advantages: torch.Tensor, epsilon: float = 0.2, beta: float = 0.0,
                         logp_ref: torch.Tensor | None = None,
                         token_mask: torch.Tensor | None = None,
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped GRPO loss of each sample (TRL's ``loss_type="grpo"``: token mean per sequence).

    Inputs: ``logp_new`` [B, G, L] per-token log-probabilities of the rollouts under the
    policy being trained (carries the gradient); ``logp_old`` [B, G, L] the same under the
    policy that sampled them; ``advantages`` [B, G]; ``logp_ref`` [B, G, L] under the
    reference policy (the SFT checkpoint), needed when ``beta > 0``; ``token_mask`` [B, G, L]
    bool, True for tokens that count (default: all).

    ::

        rho_ijt  = exp(logp_new_ijt - logp_old_ijt)
        KL_ijt   = exp(ref_ijt - new_ijt) - (ref_ijt - new_ijt) - 1        (k3 estimator, >= 0)
        L_grpo_i = -(1/G) sum_j (1/L_ij) sum_t [ min(rho A_ij, clip(rho, 1-eps, 1+eps) A_ij)
                                                 - beta * KL_ijt ]

    with ``L_ij`` the number of valid tokens of rollout j; a rollout without valid tokens
    contributes 0 (the sum over j is still divided by G, as TRL's mean over sequences).
    ``logp_old`` and ``logp_ref`` are treated as constants (detached). Masked-out tokens may
    hold anything (even -inf / nan): they are replaced before any arithmetic, so the loss and
    its gradient stay finite.

    Returns ``loss`` [B] and ``stats``, a dict of detached scalar tensors over valid tokens:
    ``clip_frac`` (share of tokens where the clip is active, i.e. the min picks the clipped
    term and its gradient is 0: rho < 1-eps with A < 0, or rho > 1+eps with A > 0; TRL's
    "clip_ratio/region_mean"), ``kl`` (mean KL_ijt; 0 without ``logp_ref``) and
    ``ratio_mean`` (mean rho).
    """
    check_range("epsilon", epsilon, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    check_range("beta", beta, lo=0.0, hi=math.inf)
    if logp_new.ndim != 3:
        raise ValueError(f"logp_new must be [B, G, L], got logp_new.shape={tuple(logp_new.shape)}")
    B, G, L = logp_new.shape
    _check_shape("logp_old", logp_old, (B, G, L))
    _check_shape("advantages", advantages, (B, G))
    if beta > 0 and logp_ref is None:
        raise ValueError(f"logp_ref is required when beta > 0, got beta={beta!r}, logp_ref=None")
    if logp_ref is not None:
        _check_shape("logp_ref", logp_ref, (B, G, L))
    if token_mask is None:
        mask = torch.ones(B, G, L, dtype=torch.bool, device=logp_new.device)
    else:
        _check_shape("token_mask", token_mask, (B, G, L))
        mask = token_mask.bool()

    zero = torch.zeros((), dtype=logp_new.dtype, device=logp_new.device)
    new = torch.where(mask, logp_new, zero)                                   # [B, G, L]
    old = torch.where(mask, logp_old.detach(), zero)                          # [B, G, L]
    adv = advantages.detach().to(new.dtype).unsqueeze(-1)                     # [B, G, 1]

    ratio = torch.exp(new - old)                                              # [B, G, L]
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon)
    per_token = torch.min(ratio * adv, clipped * adv)                         # [B, G, L]
    if logp_ref is not None:
        ref = torch.where(mask, logp_ref.detach(), zero)
        delta = ref - new
        kl = torch.exp(delta) - delta - 1.0                                   # [B, G, L]
    else:
        kl = torch.zeros_like(new)
    if beta > 0:
        per_token = per_token - beta * kl
    per_token = torch.where(mask, per_token, zero)

    n_tok = mask.sum(-1)                                                      # [B, G]
    per_seq = per_token.sum(-1) / n_tok.clamp(min=1).to(new.dtype)            # [B, G]
    loss = -per_seq.mean(dim=1)                                               # [B]

    with torch.no_grad():
        n_all = mask.sum().clamp(min=1).to(new.dtype)
        clip_active = ((ratio < 1.0 - epsilon) & (adv < 0)) | ((ratio > 1.0 + epsilon) & (adv > 0))
        stats = {
            "clip_frac": (clip_active & mask).sum().to(new.dtype) / n_all,
            "kl": torch.where(mask, kl, zero).sum() / n_all,
            "ratio_mean": torch.where(mask, ratio, zero).sum() / n_all,
        }
    return loss, stats


def nll_per_sample(logp_target: torch.Tensor) -> torch.Tensor:
    """Supervised loss of each sample: ``L_nll_i = -(1/L) sum_t log pi(y*_it | x_i, y*_<t)``.

    ``logp_target`` [B, L] per-token log-probabilities of the ground-truth tuple -> [B].
    """
    if logp_target.ndim != 2:
        raise ValueError(f"logp_target must be [B, L], got logp_target.shape={tuple(logp_target.shape)}")
    return -logp_target.mean(dim=-1)


def combine_losses(nll: torch.Tensor, grpo: torch.Tensor, gate: torch.Tensor, w_nll: float,
                   lam: float, normalize: str = "batch") -> torch.Tensor:
    """Gated NLL + GRPO objective, a scalar.

    ``nll`` [B], ``grpo`` [B], ``gate`` [B] (bool, or float weights in [0, 1])::

        "batch":    L = (1/B) sum_i w_nll nll_i + (lam / B)               sum_i g_i grpo_i
        "admitted": L = (1/B) sum_i w_nll nll_i + (lam / max(1, sum_i g_i)) sum_i g_i grpo_i

    "batch" (the default) makes an always-open gate identical to the fixed mixture with the
    same lambda; "admitted" keeps the GRPO term's scale independent of the admission rate.
    Rejected samples are excluded with ``torch.where`` (not multiplied by 0), so a non-finite
    GRPO loss on a rejected sample cannot leak into the result; with nothing admitted the
    result is exactly ``mean(w_nll * nll)`` in both modes.
    """
    check_range("w_nll", w_nll, lo=0.0, hi=math.inf)
    check_range("lam", lam, lo=0.0, hi=math.inf)
    check_choice("normalize", normalize, NORMALIZE)
    if nll.ndim != 1:
        raise ValueError(f"nll must be [B], got nll.shape={tuple(nll.shape)}")
    B = nll.shape[0]
    _check_shape("grpo", grpo, (B,))
    _check_shape("gate", gate, (B,))
    g = gate.to(grpo.dtype)                                                   # [B]
    gated = torch.where(g != 0, g * grpo, torch.zeros_like(grpo))             # [B]
    denom = float(B) if normalize == "batch" else g.sum().clamp(min=1.0)
    return (w_nll * nll).mean() + lam * gated.sum() / denom


# ----------------------------------------------------------------------------------------------
# config


@dataclass
class GRPOConfig:
    """GRPO knobs (TRL names where TRL has one) and the weight of the GRPO term. The NLL term's
    weight belongs to the method (``gate.METHODS``), not to this config."""

    num_generations: int = 8
    """G: rollouts sampled per sample (TRL ``num_generations``); >= 2 for a group std."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts (> 0); decoding is unconstrained, so invalid tuples can appear."""
    epsilon: float = 0.2
    """PPO clip range: rho is clipped to [1 - epsilon, 1 + epsilon]; in (0, 1)."""
    beta: float = 0.0
    """Weight of the k3 KL to the reference (SFT) policy (>= 0; TRL's default is 0)."""
    scale_rewards: str = "group"
    """How rewards become advantages: "group" divides the centred rewards by the group std (+1e-4); "none" only centres."""
    lam: float = 1.0
    """lambda: weight of the GRPO term in the combined loss (>= 0)."""
    normalize: str = "batch"
    """Divisor of the GRPO term: "batch" = B (gate always open == fixed mixture); "admitted" = max(1, number admitted)."""

    def __post_init__(self):
        check_int("num_generations", self.num_generations)
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2, got num_generations={self.num_generations!r}")
        check_range("temperature", self.temperature, lo=0.0, hi=math.inf, lo_open=True)
        check_range("epsilon", self.epsilon, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        check_range("beta", self.beta, lo=0.0, hi=math.inf)
        check_choice("scale_rewards", self.scale_rewards, SCALE_REWARDS)
        check_range("lam", self.lam, lo=0.0, hi=math.inf)
        check_choice("normalize", self.normalize, NORMALIZE)
