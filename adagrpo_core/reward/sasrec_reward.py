"""A trained SASRec as the GRPO reward: how likely the sequential model finds a rollout's item next.

``RewardConfig(source="sasrec")``. A rollout's semantic-ID tuple is mapped to its item through
the trie; a valid item is scored by SASRec from the sample's history:

* ``output="prob"`` (the default): SASRec's **softmax probability** of the item over the whole
  catalogue, p(i | history) = exp(z_i) / sum_j exp(z_j), in [0, 1]. SASRec-CE is trained as
  exactly this softmax, so it is the model's own probability that the item comes next. (A sigmoid
  of one logit, what the ranker's "prob" is, would be the probability of nothing here: SASRec's
  logits are only defined up to a shared shift.) The values are small (about 1 / n_items for an
  unremarkable item) and sum to at most 1 over a group's distinct items.
* ``output="logit"``: the raw next-item logit z_i, which is what MiniOneRec's ``sasrec`` reward
  gathers from its SASRec's output layer.

An invalid tuple (a hallucination) gets ``RewardConfig.invalid_reward``: by default -1 for
``"prob"`` (below every probability) and the row's lowest valid logit minus 1 for ``"logit"``,
the rule of every reward of this package (``reward_model.fill_invalid``). MiniOneRec instead
scores a hallucination as a random item; that would reward hallucinations by chance, so it is
not done here.

SASRec reads at most ``max_len`` history items, right-aligned: a history shorter than the one it
was trained with (the policy's ``max_history``) is read as its most recent columns. The batch
is not needed (``batch=`` is accepted for the common interface and ignored).
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.interactions import NO_ITEM
from .reward_model import RewardConfig, fill_invalid


class SASRecReward:
    """SASRec's next-item probability (or logit) of decoded rollouts. See the module docstring."""

    def __init__(self, model, sids, cfg: RewardConfig | None = None):
        cfg = cfg or RewardConfig(source="sasrec")
        if sids.n_items != model.n_items:
            raise ValueError(f"sids.n_items={sids.n_items} != sasrec.n_items={model.n_items}")
        self.cfg, self.output, self.invalid_reward = cfg, cfg.output, cfg.invalid_reward
        self.model = model.eval()
        self.sids = sids
        self.device = model.device
        self.trie = sids.trie.to(self.device)

    def _tensor(self, x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, device=self.device).long()

    @torch.no_grad()
    def score_items(self, history, items, batch=None) -> torch.Tensor:
        """history [B, H] (-1 pad), items [B, C] (-1 = invalid) -> rewards [B, C] float on the device."""
        history, items = self._tensor(history), self._tensor(items)
        if history.ndim != 2 or items.ndim != 2 or history.shape[0] != items.shape[0]:
            raise ValueError(f"history must be [B, H] and items [B, C] with the same B, got "
                             f"{tuple(history.shape)} and {tuple(items.shape)}")
        for name, x in (("history", history), ("items", items)):
            if x.numel() and (x.max() >= self.model.n_items or x.min() < NO_ITEM):
                raise ValueError(f"{name} item ids must be in [-1, {self.model.n_items}), got range "
                                 f"[{int(x.min())}, {int(x.max())}]")
        valid = items >= 0                                                           # [B, C]
        logits = self.model.score_all(history).float()                               # [B, N]
        if self.output == "prob":
            logits = torch.log_softmax(logits, dim=1).exp_()                         # [B, N] softmax
        s = logits.gather(1, items.clamp(min=0))                                     # [B, C]
        return fill_invalid(s, valid, self.output, self.invalid_reward)

    @torch.no_grad()
    def decode(self, tuples) -> torch.Tensor:
        """tuples [B, G, L] -> item ids [B, G] (-1 = hallucination), on the device."""
        return self.trie.lookup(self._tensor(tuples))

    @torch.no_grad()
    def __call__(self, history, tuples, batch=None) -> torch.Tensor:
        """history [B, H], tuples [B, G, L] -> rewards [B, G]: one SASRec pass per history."""
        tuples = self._tensor(tuples)
        if tuples.ndim != 3:
            raise ValueError(f"tuples must be [B, G, L], got shape={tuple(tuples.shape)}")
        return self.score_items(history, self.decode(tuples))
