"""Plumbing shared by every module: seeding, devices, atomic writes, config hashing.

Nothing here knows about recommendation; keep algorithm logic out of this file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """One seeding block (as cleanrl): random, numpy and torch from one integer."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got seed={seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % (2**32))
    torch.manual_seed(int(seed))


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_choice(name: str, value: Any, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {name}={value!r}")


def check_range(name: str, value: float, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """Raise ValueError naming the field and the value when value is outside [lo, hi]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {name}={value!r}") from None
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


def config_hash(*configs: Any, length: int = 12) -> str:
    """Stable hash of one or more dataclass configs (or JSON-able objects), for caching."""
    def to_jsonable(c):
        if dataclasses.is_dataclass(c):
            return {"__type__": type(c).__name__, **dataclasses.asdict(c)}
        return c
    blob = json.dumps([to_jsonable(c) for c in configs], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through a temporary file and os.replace."""
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_df(df, path: str | os.PathLike, **kwargs) -> None:
    """Write a DataFrame as CSV (or Markdown when the suffix is .md) atomically."""
    path = Path(path)
    if path.suffix == ".md":
        atomic_write_text(path, df.to_markdown(**kwargs) if hasattr(df, "to_markdown") else str(df))
    else:
        atomic_write_text(path, df.to_csv(**kwargs))


def atomic_save_npy(path: str | os.PathLike, array) -> None:
    """np.save, atomically."""
    import io
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    atomic_write_bytes(path, buf.getvalue())


def save_table(df, out_dir: str | os.PathLike, name: str, floatfmt: str = ".4f") -> None:
    """Write a table as ``name.csv`` and ``name.md`` in out_dir, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
    atomic_write_text(out / f"{name}.md", df.to_markdown(index=False, floatfmt=floatfmt) + "\n")


def save_figure(fig, out_dir: str | os.PathLike, name: str, dpi: int = 120) -> None:
    """Save a matplotlib figure as ``name.png`` and ``name.pdf`` in out_dir, each atomically."""
    import io
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        meta = {"CreationDate": None} if fmt == "pdf" else None   # reproducible bytes
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", metadata=meta)
        atomic_write_bytes(out / f"{name}.{fmt}", buf.getvalue())


def rng_state() -> dict:
    """Every RNG state a resumed run needs (python, numpy, torch CPU and CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def default_cache_dir() -> Path:
    """Where expensive artefacts (worlds, checkpoints, rankers) are cached by config hash.

    ADAGRPO_CACHE overrides. Otherwise, when the package runs from its source tree, the
    checkout's own ``.cache/`` (so the CLI, the notebooks, which run in ``notebooks/``, and the
    tests' subprocesses share one cache); for an installed package, ``./.cache``.
    """
    if os.environ.get("ADAGRPO_CACHE"):
        return Path(os.environ["ADAGRPO_CACHE"])
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "adagrpo_core").is_dir():
        return root / ".cache"
    return Path(".cache")


def write_checkpoint(out_dir, state: dict, resume_extra: dict, improved: bool, final: bool,
                     tables: dict) -> None:
    """One checkpoint of a training run, in commit order.

    ``best.pt`` (when ``improved``), ``final.pt`` (when ``final``) and the CSV ``tables``
    ({file name: DataFrame}) first; ``last.pt`` (``state`` plus ``resume_extra``: optimiser, RNG,
    logs) last, because resuming trusts it: a crash before it leaves the previous checkpoint intact.
    """
    out_dir = Path(out_dir)
    if improved:
        atomic_torch_save(state, out_dir / "best.pt")
    if final:
        atomic_torch_save(state, out_dir / "final.pt")
    for name, df in tables.items():
        atomic_save_df(df, out_dir / name, index=False)
    atomic_torch_save({**state, **resume_extra}, out_dir / "last.pt")
