"""Rewards from the simulated world's ground truth, with the interface of the ranker's reward.

* ``source="truth"``: the TRUE click probability sigmoid(u(state, item)) of each decoded rollout
  for the user state of its sample: the noise-free ceiling of any learned reward.
* ``source="noisy_truth"``: the truth corrupted by a known, fixed per-item error concentrated on
  rarely exposed items, ``sigmoid(u + noise * f(b_i) * z_i)``, with z_i ~ N(0, 1) drawn once per
  item (seeded: the same item is always wrong the same way, as a ranker's mis-estimated item is)
  and ``f(b) = (n_buckets - 1 - b) / (n_buckets - 1)`` for the item's train-exposure bucket b
  (f = 1 on the rarest fifth, 0 on the most shown). The gate can then be tested against noise
  whose location is known.
* ``bias`` (either source): a systematic error tied to exposure, ``sigmoid(u + bias * z_e(i))``
  with z_e(i) the item's standardised log(1 + train impressions): a reward that, like a ranker
  fit to exposure-biased logs, credits items by how often the logging policy showed them
  (``bias > 0`` over-credits often shown items, ``bias < 0`` rarely shown ones).

The reward needs each sample's user state, which the history alone does not give: the RL step
passes the batch (``batch=``), and the reward looks up ``world.states_for(batch)``. Decoding,
the input checks and the reward of invalid tuples (hallucinations) are :class:`TupleReward`'s:
``invalid_reward``, by default -1 (below every probability; with ``output="logit"`` the utility
is served and the default is the row's lowest valid one minus 1).
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.impressions import exposure_buckets, exposure_z
from .reward_model import RewardConfig, TupleReward


class TruthReward(TupleReward):
    """True (optionally noisy) click probability as a reward. See the module docstring."""

    def __init__(self, world, sids, cfg: RewardConfig, n_buckets: int = 5, device="cpu"):
        if not hasattr(world, "true_utility"):
            raise ValueError(f"reward source={cfg.source!r} needs the simulated world's true utility; "
                             "this dataset has none (use source='ranker')")
        if sids.n_items != world.n_items:
            raise ValueError(f"sids.n_items={sids.n_items} != world.n_items={world.n_items}")
        self.world, self.cfg, self.output, self.invalid_reward = world, cfg, cfg.output, cfg.invalid_reward
        self.n_items = world.n_items
        self.device = torch.device(device)
        self.trie = sids.trie.to(self.device)
        noise = cfg.noise if cfg.source == "noisy_truth" else 0.0
        bucket, _ = exposure_buckets(world, n_buckets)
        weight = (n_buckets - 1 - bucket) / max(n_buckets - 1, 1)                 # 1 rarest .. 0 most shown
        z = np.random.default_rng([cfg.noise_seed, 12345]).standard_normal(world.n_items)
        shift = cfg.bias * exposure_z(world)                                      # [n_items] systematic error
        self.item_error = (noise * weight * z + shift).astype(np.float32)         # [n_items] utility error

    def _score(self, history, items, batch=None) -> torch.Tensor:
        """The true utility (plus the item's error) of the items for the user states of ``batch``,
        or its sigmoid; float64, as the world computes it (invalid items are scored as item 0)."""
        if batch is None:
            raise ValueError("a truth reward needs the batch (its user states): pass batch=")
        safe = items.clamp(min=0).cpu().numpy()
        u = self.world.true_utility(self.world.states_for(batch), safe) + self.item_error[safe]
        r = 1.0 / (1.0 + np.exp(-u)) if self.output == "prob" else u
        return torch.as_tensor(r, dtype=torch.float64, device=self.device)
