"""The reward: the ranker (a click model on impressions), its training, the rewards RL calls (ranker, SASRec,
truth), the ranker's reliability."""
