"""The reward RL calls: its config, the interface every reward shares, and the ranker's reward.

:class:`RewardConfig` is the single owner of what the reward serves (the click probability or
logit) and what an invalid tuple (a hallucination) gets; the RL trainer and the stratified
analysis both read it. :class:`TupleReward` is what every reward shares (decoding, input checks,
the invalid-tuple reward); its subclasses are the ranker's (:class:`RewardModel`, here), the
world's truth (``truth_reward.py``) and a SASRec model's (``sasrec_reward.py``);
``sources.build_reward`` picks the one of a config's ``source``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..common.checks import check_choice, check_int, check_range
from ..data.interactions import NO_ITEM
from .ranker import Ranker


@dataclass
class RewardConfig:
    """What the reward model serves to GRPO and to the stratified analysis."""

    source: str = "ranker"
    """'ranker' (the click model trained on impressions), 'truth' (the simulated world's true click
    probability, the noise-free ceiling), 'noisy_truth' (the truth with known noise on rare items)
    or 'sasrec' (a SASRec next-item model's softmax probability, as MiniOneRec's 'sasrec' reward;
    see reward/sasrec_reward.py)."""
    noise: float = 0.0
    """noisy_truth: std of the per-item utility error on the rarest items (scaled down to 0 on the most shown)."""
    noise_seed: int = 0
    """noisy_truth: seed of the per-item errors."""
    bias: float = 0.0
    """truth / noisy_truth: systematic exposure bias, the utility shifted by ``bias * z_i`` (z_i: the
    item's standardised log train exposure); > 0 over-credits often shown items, < 0 rarely shown
    ones; 0 is the truth."""
    ranker_logging_bias: float | None = None
    """ranker: the learned-ranker dial. None trains the ranker on the world's own impression log; a
    value in [0, 1] on the same user states' train and valid slates re-shown by a logging policy
    with this exposure bias (``data.relog``): users, clicks, SFT base and truth stay as they are."""
    ranker_log_share: float = 1.0
    """ranker: share of the logged train and valid slates the ranker learns from, in (0, 1] (< 1
    re-logs them, at ``ranker_logging_bias`` or the world's own bias)."""
    output: str = "prob"
    """'prob' (a probability, in [0, 1]) or 'logit' (the click logit / true utility / SASRec's next-item logit)."""
    invalid_reward: float | None = None
    """Reward of an invalid tuple; None = a penalty below every valid score (see RewardModel)."""

    def __post_init__(self):
        check_choice("source", self.source, ("ranker", "truth", "noisy_truth", "sasrec"))
        check_range("noise", self.noise, lo=0)
        if self.noise > 0 and self.source != "noisy_truth":
            raise ValueError(f"noise applies to source='noisy_truth' only, got noise={self.noise!r} "
                             f"with source={self.source!r}")
        check_int("noise_seed", self.noise_seed, lo=0)
        check_range("bias", self.bias)
        if self.bias != 0 and self.source not in ("truth", "noisy_truth"):
            raise ValueError(f"bias applies to source='truth' or 'noisy_truth' only, got bias={self.bias!r} "
                             f"with source={self.source!r}")
        if self.ranker_logging_bias is not None:
            check_range("ranker_logging_bias", self.ranker_logging_bias, 0, 1)
        check_range("ranker_log_share", self.ranker_log_share, 0, 1, lo_open=True)
        if self.relogs and self.source != "ranker":
            raise ValueError(f"ranker_logging_bias and ranker_log_share apply to source='ranker' only, got "
                             f"ranker_logging_bias={self.ranker_logging_bias!r}, ranker_log_share="
                             f"{self.ranker_log_share!r} with source={self.source!r}")
        check_choice("output", self.output, ("logit", "prob"))
        if self.invalid_reward is not None:
            check_range("invalid_reward", self.invalid_reward)


    @property
    def relogs(self) -> bool:
        """Whether the ranker of this reward learns from a re-logged impression log."""
        return self.ranker_logging_bias is not None or self.ranker_log_share < 1

    @property
    def ranker_log(self) -> dict:
        """The keyword arguments of ``pipeline.get_ranker`` that pick this reward's ranker."""
        return {"logging_bias": self.ranker_logging_bias, "log_share": self.ranker_log_share}


class TupleReward:
    """What GRPO calls: rewards of semantic-ID rollouts, r_ij = R(x_i, y_ij), from something that
    scores items. Subclasses set ``self.device``, ``self.trie``, ``self.n_items``, ``self.output``
    and ``self.invalid_reward``, and implement ``_score(history, items, batch) -> [B, C]`` for
    checked inputs (invalid items come as -1; their scores are replaced); decoding, input checks
    and the invalid-tuple reward are here, once."""

    def _tensor(self, x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, device=self.device).long()

    @torch.no_grad()
    def score_items(self, history, items, batch=None) -> torch.Tensor:
        """history [B, H] (-1 pad), items [B, C] (-1 = invalid) -> rewards [B, C] float on the device.
        ``batch``: the samples (an Examples); only the truth rewards read it, for the user states."""
        history, items = self._tensor(history), self._tensor(items)
        if history.ndim != 2 or items.ndim != 2 or history.shape[0] != items.shape[0]:
            raise ValueError(f"history must be [B, H] and items [B, C] with the same B, got "
                             f"{tuple(history.shape)} and {tuple(items.shape)}")
        for name, x in (("history", history), ("items", items)):
            if x.numel() and (x.max() >= self.n_items or x.min() < NO_ITEM):
                raise ValueError(f"{name} item ids must be in [-1, {self.n_items}), got range "
                                 f"[{int(x.min())}, {int(x.max())}]")
        scores = self._score(history, items, batch)   # filled at its own precision (the truth's float64), then float32
        return fill_invalid(scores, items >= 0, self.output, self.invalid_reward).float()

    @torch.no_grad()
    def decode(self, tuples) -> torch.Tensor:
        """tuples [B, G, L] -> item ids [B, G] (-1 = hallucination), on the device."""
        return self.trie.lookup(self._tensor(tuples))

    @torch.no_grad()
    def __call__(self, history, tuples, batch=None) -> torch.Tensor:
        """history [B, H], tuples [B, G, L] -> rewards [B, G]: one batched pass over all B * G pairs."""
        tuples = self._tensor(tuples)
        if tuples.ndim != 3:
            raise ValueError(f"tuples must be [B, G, L], got shape={tuple(tuples.shape)}")
        return self.score_items(history, self.decode(tuples), batch)


class RewardModel(TupleReward):
    """The ranker as the GRPO reward of semantic-ID rollouts: r_ij = R(x_i, y_ij).

    ``invalid_reward=None`` means a penalty below every valid score: -1.0 for ``output="prob"``
    (probabilities lie in [0, 1]); for ``output="logit"`` the minimum valid score of the same
    sample's row minus 1, or -10 when the row has no valid item. The logit default is per row
    because logits are unbounded: a fixed constant could sit above some valid scores.
    """

    def __init__(self, ranker: Ranker, sids, cfg: RewardConfig | None = None):
        cfg = cfg or RewardConfig()
        self.cfg = cfg
        self.ranker = ranker.eval()
        self.sids = sids
        self.output, self.invalid_reward = cfg.output, cfg.invalid_reward
        self.device = next(ranker.parameters()).device
        self.trie = sids.trie.to(self.device)
        self.n_items = ranker.n_items
        if sids.n_items != ranker.n_items:
            raise ValueError(f"sids.n_items={sids.n_items} != ranker.n_items={ranker.n_items}")

    def _score(self, history, items, batch=None) -> torch.Tensor:
        """The ranker's click logit (or probability); only the last ``max_history`` history items
        are used, as in training."""
        s = self.ranker(history[:, -self.ranker.cfg.max_history:], items)        # [B, C]
        return torch.sigmoid(s) if self.output == "prob" else s


def fill_invalid(s: torch.Tensor, valid: torch.Tensor, output: str, invalid_reward: float | None) -> torch.Tensor:
    """Scores s [B, C] with the invalid entries (~valid) replaced by the invalid-tuple reward:
    ``invalid_reward`` when set; else -1 for ``output="prob"``, and for ``output="logit"`` the
    row's lowest valid score minus 1 (-10 for a row without a valid item). See RewardModel."""
    if invalid_reward is not None:
        fill = torch.full_like(s, float(invalid_reward))
    elif output == "prob":
        fill = torch.full_like(s, -1.0)
    else:
        row_min = s.masked_fill(~valid, float("inf")).min(1, keepdim=True).values      # [B, 1]
        fill = torch.where(torch.isinf(row_min), torch.full_like(row_min, -10.0), row_min - 1.0)
        fill = fill.expand_as(s)
    return torch.where(valid, s, fill)

