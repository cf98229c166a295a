"""The reward of a RewardConfig's source: the ranker's, a SASRec model's or the simulated world's truth."""
from __future__ import annotations

from .reward_model import RewardConfig, RewardModel
from .sasrec_reward import SASRecReward
from .truth_reward import TruthReward


def build_reward(world, sids, ranker, cfg: RewardConfig, sasrec=None):
    """The reward of ``cfg.source``: the ranker's (``ranker`` a trained Ranker), SASRec's
    (``sasrec`` a trained SASRec, e.g. from ``pipeline.get_sasrec``), or the truth of ``world``
    ('truth' / 'noisy_truth')."""
    if cfg.source == "ranker":
        return RewardModel(ranker, sids, cfg)
    if cfg.source == "sasrec":
        if sasrec is None:
            raise ValueError("reward source='sasrec' needs a trained SASRec model: pass sasrec= "
                             "(pipeline.get_sasrec(data, SASRecConfig(...)) trains or loads one)")
        return SASRecReward(sasrec, sids, cfg)
    return TruthReward(world, sids, cfg)
