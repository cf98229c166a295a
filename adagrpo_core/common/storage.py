"""Files that are never half-written: atomic writes, config hashes for cache keys, checkpoint loading."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


KEY_NEUTRAL = "key_neutral"
"""Field metadata: the field is left out of :func:`key_dict` (so of :func:`config_hash`) while it
holds its default."""


def key_neutral(default: Any) -> Any:
    """A dataclass field added after caches were keyed on its config: left out of the config's
    cache key while it holds ``default``, so configs that leave it alone keep their keys (and the
    runs and caches made before it existed)."""
    return dataclasses.field(default=default, metadata={KEY_NEUTRAL: True})


def key_dict(cfg) -> dict:
    """``dataclasses.asdict(cfg)`` without the :func:`key_neutral` fields that hold their default:
    what identifies a config in cache keys and in a checkpoint's resume check."""
    d = dataclasses.asdict(cfg)
    for f in dataclasses.fields(cfg):
        if f.metadata.get(KEY_NEUTRAL) and getattr(cfg, f.name) == f.default:
            del d[f.name]
    return d


def config_hash(*configs: Any, length: int = 12) -> str:
    """Stable hash of one or more dataclass configs (or JSON-able objects), for caching
    (:func:`key_dict` of a dataclass, with its type's name)."""
    def to_jsonable(c):
        if dataclasses.is_dataclass(c):
            return {"__type__": type(c).__name__, **key_dict(c)}
        return c
    blob = json.dumps([to_jsonable(c) for c in configs], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_digest(path: str | os.PathLike, length: int = 12) -> str:
    """sha256 of a file's bytes (hex, first ``length`` characters): names results derived from a
    checkpoint, so a retrained checkpoint never reads another one's cached results."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:length]


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
    buf = io.BytesIO()
    np.save(buf, np.asarray(array))
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npz(path: str | os.PathLike, arrays: dict) -> None:
    """np.savez_compressed of {name: array}, atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


class DamagedFileError(ValueError):
    """A cached or checkpoint file that cannot be read (truncated, empty, not what it claims)."""


def load_checkpoint(path, weights_only: bool = False) -> dict:
    """torch.load on CPU that names the file when it is damaged, and says what to do."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except FileNotFoundError:
        raise
    except Exception as e:  # truncated zip, empty file, unpickling errors: all mean "damaged"
        raise DamagedFileError(f"{path} is damaged or truncated ({type(e).__name__}: {e}); "
                               "delete it to rebuild it") from e


# keys that say where things go or how fast, not what is computed: never part of a sweep folder name
