"""Training: the one loop (resume, checkpoints, validation), SFT and RL on top of it."""
