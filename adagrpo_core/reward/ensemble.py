"""An ensemble of rankers for the ensemble diagnostic u (``rl.gate.ensemble_agreement``).

K members, each the project's ranker trained on a bootstrap resample of the train slates (with
replacement, a share of them) with its own seed, and for fewer epochs than the reward's ranker:
where the members disagree on how to order a sample's rollouts, the reward model's training
data does not pin the order down. The reward itself stays the single ranker (so every ranker
reward table keeps its meaning); the ensemble only describes it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np

from ..common.checks import check_int, check_range
from .ranker import RankerConfig


@dataclass
class EnsembleConfig:
    """The ranker ensemble of the ensemble diagnostic."""

    members: int = 5
    """K >= 2: rankers in the ensemble."""
    seed: int = 0
    """Member k trains with seed + k (its resample, initialisation and shuffling)."""
    sample_share: float = 0.5
    """Each member's bootstrap resample: this share of the train slates, drawn with replacement, in (0, 1]."""
    max_epochs: int = 3
    """Each member's most epochs (smaller members than the reward's ranker; early stopping still applies)."""

    def __post_init__(self):
        check_int("members", self.members, lo=2)
        check_int("seed", self.seed, lo=0)
        check_range("sample_share", self.sample_share, 0, 1, lo_open=True)
        check_int("max_epochs", self.max_epochs, lo=1)

    def member_config(self, ranker: RankerConfig, k: int) -> RankerConfig:
        """Member k's ranker config: the reward ranker's, with seed + k and ``max_epochs``."""
        check_int("k", k, lo=0, hi=self.members - 1)
        return replace(ranker, seed=self.seed + k, max_epochs=self.max_epochs)


def bootstrap_log(data, share: float, seed: int):
    """A copy of ``data`` whose train impressions are a bootstrap resample of its train slates
    (``share`` of them, with replacement; a slate = the rows of one (user, step), or of one
    (user, hist_len) where the log has no ``step``); valid and test rows kept as they are."""
    check_range("share", share, 0, 1, lo_open=True)
    check_int("seed", seed, lo=0)
    imp = data.impressions
    train = (imp["split"] == "train").to_numpy()
    rows = np.flatnonzero(train)
    keys = imp.loc[train, ["user", "step" if "step" in imp else "hist_len"]].to_numpy()
    start = np.r_[True, (keys[1:] != keys[:-1]).any(1)] if len(keys) else np.zeros(0, bool)
    first = np.flatnonzero(start)                                            # [n_slates] first row
    size = np.diff(np.r_[first, len(rows)])                                  # [n_slates] rows each
    pick = np.sort(np.random.default_rng(seed).integers(0, len(first), max(1, int(round(share * len(first))))))
    lens, starts = size[pick], first[pick]
    offsets = np.repeat(starts - np.r_[0, np.cumsum(lens)[:-1]], lens) + np.arange(lens.sum())
    out = copy.copy(data)
    out.impressions = imp.iloc[np.r_[rows[offsets], np.flatnonzero(~train)]].reset_index(drop=True)
    return out
