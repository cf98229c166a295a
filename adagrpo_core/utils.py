"""Plumbing shared by every module: seeding, threads, devices, validators, atomic writes, tables,
figures and output folders, config hashing, checkpoint loading.

Nothing here knows about recommendation; keep algorithm logic out of this file.
"""
from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with ``n`` torch CPU threads, then restore the previous count. Training and
    evaluation use one thread: torch's results depend on the thread count, and one thread per
    process is also what a pool of workers wants."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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


def atomic_save_npz(path: str | os.PathLike, arrays: dict) -> None:
    """np.savez_compressed of {name: array}, atomically."""
    import io
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


_COUNT_COLUMNS = {"n", "seed", "seeds", "step", "steps", "users", "items", "impressions", "clicks", "examples",
                  "interactions", "count", "impressions_examined", "clicks_examined", "bucket_items",
                  "min_train_exposure", "max_train_exposure", "dropped_users"}


def is_count_column(name) -> bool:
    """A column that holds counts (n, seeds, users, ``*_hits``, ``n_*`` ...): printed as integers."""
    name = str(name)
    return name in _COUNT_COLUMNS or name.endswith("_hits") or name.startswith("n_")


def is_p_value_column(name) -> bool:
    """A column of p-values (``p``, ``*mcnemar_p*``, ``*p_holm*``)."""
    name = str(name)
    return name == "p" or "mcnemar_p" in name or "p_holm" in name


def format_p_value(p) -> str:
    """'<1e-4' below 1e-4, else 4 significant digits ('nan' for a missing value)."""
    if p is None or not np.isfinite(p):
        return "nan"
    return "<1e-4" if p < 1e-4 else f"{p:#.4g}"


def markdown_table(df, floatfmt: str = ".4f") -> str:
    """A DataFrame as a Markdown table (no index): integer columns and integral-valued count
    columns as integers, p-value columns as :func:`format_p_value`, other numbers with
    ``floatfmt``, text left-aligned and numbers right-aligned."""
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_float_dtype, is_integer_dtype

    if len(df) == 0 or len(df.columns) == 0:
        return df.to_markdown(index=False)
    cols, align = {}, []
    for i, name in enumerate(df.columns):
        col = df.iloc[:, i]
        if is_bool_dtype(col.dtype) or not (is_integer_dtype(col.dtype) or is_float_dtype(col.dtype)):
            cols[i] = ["" if v is None else str(v) for v in col]
            align.append("left")
            continue
        v = col.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = v[np.isfinite(v)]
        if is_integer_dtype(col.dtype):
            cols[i] = [str(x) for x in col]
        elif is_p_value_column(name):
            cols[i] = [format_p_value(x) for x in v]
        elif is_count_column(name) and np.array_equal(finite, np.round(finite)):
            cols[i] = [str(int(x)) if np.isfinite(x) else "nan" for x in v]
        else:
            cols[i] = [format(x, floatfmt) for x in v]
        align.append("right")
    table = pd.DataFrame(cols, index=range(len(df)))
    table.columns = [str(c) for c in df.columns]
    return table.to_markdown(index=False, disable_numparse=True, colalign=align)


def save_table(df, out_dir: str | os.PathLike, name: str, floatfmt: str = ".4f") -> None:
    """Write a table as ``name.csv`` (full precision) and ``name.md`` (:func:`markdown_table`:
    counts as integers, p-values as '<1e-4' or 4 significant digits) in out_dir, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
    atomic_write_text(out / f"{name}.md", markdown_table(df, floatfmt) + "\n")


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


def repo_root() -> Path | None:
    """The checkout this package runs from (it has pyproject.toml next to adagrpo_core/), or None
    for an installed package."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "adagrpo_core").is_dir() else None


def default_figures_dir() -> Path:
    """Where tables and figures go: the checkout's ``figures/`` whatever the working directory
    (notebooks run in ``notebooks/``), else ``./figures``."""
    root = repo_root()
    return root / "figures" if root else Path("figures")


def default_runs_dir() -> Path:
    """Where run folders go: the checkout's ``runs/``, else ``./runs``."""
    root = repo_root()
    return root / "runs" if root else Path("runs")


def default_cache_dir() -> Path:
    """Where expensive artefacts (worlds, checkpoints, rankers) are cached by config hash.

    ADAGRPO_CACHE overrides. Otherwise, when the package runs from its source tree, the
    checkout's own ``.cache/`` (so the CLI, the notebooks, which run in ``notebooks/``, and the
    tests' subprocesses share one cache); for an installed package, ``./.cache``.
    """
    if os.environ.get("ADAGRPO_CACHE"):
        return Path(os.environ["ADAGRPO_CACHE"])
    root = repo_root()
    return root / ".cache" if root else Path(".cache")


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
_PLUMBING = {"profile", "sequences", "out_dir", "cache_dir", "runs_dir", "threads", "jobs", "scheduler"}


def notebook_defaults(notebook: str | os.PathLike) -> dict:
    """The literal values of a notebook's ``parameters`` cell, parsed from the .ipynb file."""
    import ast
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            src = "".join(cell["source"])
            return {t.id: ast.literal_eval(node.value) for node in ast.parse(src).body
                    if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    raise ValueError(f"{notebook} has no cell tagged 'parameters'")


def output_dir(notebook: str, out_dir, profile: str, values: dict) -> Path:
    """Where a notebook writes its tables and figures, so that no run overwrites another's.

    An explicit ``out_dir`` wins. Otherwise, under the checkout's ``figures/``: the tiny profile
    (a smoke test) writes to ``figures/smoke/`` (git-ignored), a real dataset under
    ``figures/<amazon or the file's name>/``; a run whose parameters differ from
    the notebook's defaults writes to ``figures/sweeps/<notebook>/<param>=<value>,.../``; only a
    run with the default parameters writes to ``figures/`` itself.
    """
    if out_dir:
        return Path(out_dir)
    base = default_figures_dir()
    if profile == "tiny":
        return base / "smoke"
    if profile not in ("quick", "paper", "full"):   # a real dataset (amazon, or a file's name): its own folder
        base = base / profile
    root = repo_root()
    path = (root / "notebooks" / f"{notebook}.ipynb") if root else None
    defaults = notebook_defaults(path) if path and path.is_file() else {}
    changed = {k: v for k, v in values.items() if k not in _PLUMBING and k in defaults and defaults[k] != v}
    if not changed:
        return base
    name = ",".join(f"{k}={v}" for k, v in sorted(changed.items()))
    safe = "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in name)[:120]
    return base / "sweeps" / notebook / safe
