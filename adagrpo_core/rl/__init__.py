"""GRPO and the gate: pure loss functions, the per-sample gate and its controls, one RL step."""
