"""AdaGRPO: reward-gated GRPO for generative recommendation. Folders follow the pipeline, bottom
up: data -> model -> reward -> rl -> train -> eval; ``runs`` (and ``pipeline``, the cached
artefacts) executes them; ``suite`` is the analysis layer the notebooks call; ``cli`` the command
line; ``common`` the validators and plumbing every layer shares. The gate is in ``rl/gate.py``."""
