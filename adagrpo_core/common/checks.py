"""Input validators: each raises ValueError naming the field and the value."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def check_device(name: str, value: Any) -> None:
    """'auto', 'cpu', 'cuda' or 'cuda:N' (any torch device string); 'cuda' needs CUDA here."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string such as 'auto', 'cpu' or 'cuda', got {name}={value!r}")
    if value == "auto":
        return
    try:
        dev = torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name} must be 'auto' or a torch device such as 'cpu' or 'cuda', "
                         f"got {name}={value!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}={value!r} but CUDA is not available on this machine; use 'cpu' or 'auto'")


def check_choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {name}={value!r}")


def check_range(name: str, value: float, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise ValueError naming the field and the value when value is not a real number (an int,
    a float or a numpy number; never a str or a bool) or is outside [lo, hi]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {name}={value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {name}={value!r}")
    bad = False
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in {lb}{lo}, {hi}{rb}, got {name}={value!r}")


def check_int(name: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {name}={value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if hi is None:
            raise ValueError(f"{name} must be >= {lo}, got {name}={value!r}")
        if lo is None:
            raise ValueError(f"{name} must be <= {hi}, got {name}={value!r}")
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {name}={value!r}")


def check_transformer(cfg) -> None:
    """A transformer config's size and dropout: ``n_layer``, ``n_head`` and ``n_embd`` positive ints,
    ``n_head`` dividing ``n_embd``, ``dropout`` in [0, 1)."""
    check_int("n_layer", cfg.n_layer, lo=1)
    check_int("n_head", cfg.n_head, lo=1)
    check_int("n_embd", cfg.n_embd, lo=1)
    if cfg.n_embd % cfg.n_head:
        raise ValueError(f"n_embd must be divisible by n_head={cfg.n_head}, got n_embd={cfg.n_embd}")
    check_range("dropout", cfg.dropout, 0, 1, hi_open=True)


def check_training(cfg, epochs: str = "epochs") -> None:
    """The training fields of a network's config trained in epochs with early stopping: ``lr`` > 0,
    ``weight_decay`` >= 0, ``batch_size``, the epoch count (the field named ``epochs``) and
    ``patience`` >= 1, ``seed`` >= 0, and ``device`` (see :func:`check_device`)."""
    check_range("lr", cfg.lr, lo=0, lo_open=True)
    check_range("weight_decay", cfg.weight_decay, lo=0)
    for name in ("batch_size", epochs, "patience"):
        check_int(name, getattr(cfg, name), lo=1)
    check_int("seed", cfg.seed, lo=0)
    check_device("device", cfg.device)
