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

import torch

from .reward_model import RewardConfig, TupleReward


class SASRecReward(TupleReward):
    """SASRec's next-item probability (or logit) of decoded rollouts. See the module docstring."""

    def __init__(self, model, sids, cfg: RewardConfig | None = None):
        cfg = cfg or RewardConfig(source="sasrec")
        if sids.n_items != model.n_items:
            raise ValueError(f"sids.n_items={sids.n_items} != sasrec.n_items={model.n_items}")
        self.cfg, self.output, self.invalid_reward = cfg, cfg.output, cfg.invalid_reward
        self.model = model.eval()
        self.sids = sids
        self.n_items = model.n_items
        self.device = model.device
        self.trie = sids.trie.to(self.device)

    def _score(self, history, items, batch=None) -> torch.Tensor:
        """One SASRec pass per history, then the items' logits (or softmax probabilities)."""
        logits = self.model.score_all(history).float()                               # [B, N]
        if self.output == "prob":
            logits = torch.log_softmax(logits, dim=1).exp_()                         # [B, N] softmax
        return logits.gather(1, items.clamp(min=0))                                  # [B, C]
