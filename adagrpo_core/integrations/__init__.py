"""Integrations with other training libraries, each an optional extra.

``adagrpo_core.integrations.trl`` (``pip install adagrpo-core[trl]``): ``AdaGRPOConfig`` and
``AdaGRPOTrainer``, the per-sample gate and the NLL anchor inside Hugging Face TRL's
``GRPOTrainer``. This package does not import it, so ``import adagrpo_core`` never needs TRL.
"""
