"""Where things go: the checkout, its figures/, runs/ and artefact cache."""
from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path


def repo_root() -> Path | None:
    """The checkout this package runs from (it has pyproject.toml next to adagrpo_core/), or None
    for an installed package."""
    root = Path(__file__).resolve().parents[2]
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




@functools.lru_cache(maxsize=1)
def code_commit() -> str:
    """The checkout's commit (12 hex digits, ``+dirty`` when tracked files differ from it), as
    every run row records it; 'unknown' outside a git checkout."""
    root = repo_root()
    if root is None:
        return "unknown"
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
