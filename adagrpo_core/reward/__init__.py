"""The reward: the ranker (a click model on impressions), its training, the reward RL calls, its reliability."""
