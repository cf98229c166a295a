"""AdaGRPO: reward-gated GRPO for generative recommendation. Folders follow the pipeline:
data -> model -> reward -> rl -> train -> eval; ``experiments`` drives them, ``cli`` and the
notebooks call it. The gate is in ``rl/gate.py``."""
