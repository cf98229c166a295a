"""Evaluation: metrics, statistics, beam-search evaluation of checkpoints, the stratified analysis."""
