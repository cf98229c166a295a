"""Notebook plumbing: the defaults of a notebook's parameters cell and where its outputs go."""
from __future__ import annotations

import ast
import json
import math
import os
from pathlib import Path

import numpy as np

from .configs import PROFILES
from .paths import default_figures_dir, repo_root


_PLUMBING = {"profile", "sequences", "out_dir", "cache_dir", "runs_dir", "threads", "jobs", "scheduler"}


def notebook_defaults(notebook: str | os.PathLike) -> dict:
    """The literal values of a notebook's ``parameters`` cell, parsed from the .ipynb file."""
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


def check_notebook_params(*, allowed_profiles=PROFILES, **params) -> None:
    """Validate a notebook's papermill parameters before any expensive work.

    Checks the parameters the notebooks share, where given: ``profile`` (one of
    ``allowed_profiles``), ``seeds`` (a non-empty list of distinct non-negative ints; None: the
    profile's), ``steps`` and ``threads`` (ints >= 0; 0 keeps the default), ``hr_k`` (5, 10 or 20), ``lams``
    (non-negative numbers), ``oracle_thresholds`` (numbers in [0, 1]; None: the profile's),
    ``noise_levels`` and ``mix_lams`` (non-negative numbers; None: the profile's), ``jobs`` (int
    >= 0), ``sequences`` (an existing file or None), ``run_dir`` (an existing
    folder or None), ``out_dir`` / ``cache_dir`` / ``runs_dir`` (a path or None), ``checkpoint``
    ('best' or 'final') and ``split`` ('test' or 'valid'). Other parameters are left to the code
    that uses them. A bad value raises ValueError naming the parameter and the value.
    """
    def bad(name, why):
        raise ValueError(f"notebook parameter {name} {why}, got {name}={params[name]!r}")

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    def is_number(v):
        return (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                and math.isfinite(float(v)))

    def number_list(name, lo, hi=None):
        v = params[name]
        if not isinstance(v, (list, tuple)) or not v:
            bad(name, "must be a non-empty list of numbers")
        where = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        if not all(is_number(x) and lo <= x and (hi is None or x <= hi) for x in v):
            bad(name, f"must hold finite numbers {where}")

    if "profile" in params and params["profile"] not in allowed_profiles:
        bad("profile", f"must be one of {list(allowed_profiles)}")
    if params.get("seeds") is not None:       # None: the profile's default (notebook 03)
        v = params["seeds"]
        if not isinstance(v, (list, tuple)) or not v:
            bad("seeds", "must be a non-empty list of ints")
        if not all(is_int(s) and s >= 0 for s in v):
            bad("seeds", "must hold non-negative ints")
        if len(set(int(s) for s in v)) != len(v):
            bad("seeds", "must be distinct (a repeated seed fakes precision)")
    for name in ("steps", "threads"):
        if name in params and not (is_int(params[name]) and params[name] >= 0):
            bad(name, "must be an int >= 0 (0 keeps the default)")
    if "hr_k" in params and not (is_int(params["hr_k"]) and params["hr_k"] in (5, 10, 20)):
        bad("hr_k", "must be 5, 10 or 20")
    if params.get("lams") is not None:
        number_list("lams", 0)
    if params.get("oracle_thresholds") is not None:     # None: the profile's list
        number_list("oracle_thresholds", 0, 1)
    if params.get("noise_levels") is not None:
        number_list("noise_levels", 0)
    if params.get("mix_lams") is not None:
        number_list("mix_lams", 0)
    if params.get("sequences") is not None and not (isinstance(params["sequences"], (str, os.PathLike))
                                                     and Path(params["sequences"]).is_file()):
        bad("sequences", "must be the path of an existing user item item ... file (or None)")
    if "jobs" in params and not (is_int(params["jobs"]) and params["jobs"] >= 0):
        bad("jobs", "must be an int >= 0 (0 means one per CPU core)")
    for name in ("run_dir", "out_dir", "cache_dir", "runs_dir"):
        if name in params and params[name] is not None and not isinstance(params[name], (str, os.PathLike)):
            bad(name, "must be a path or None")
    if params.get("run_dir") is not None and (not str(params["run_dir"]).strip()
                                              or not Path(params["run_dir"]).is_dir()):
        bad("run_dir", "must be an existing folder (or None for the SFT base)")
    if "checkpoint" in params and params["checkpoint"] not in ("best", "final"):
        bad("checkpoint", "must be 'best' or 'final'")
    if "split" in params and params["split"] not in ("test", "valid"):
        bad("split", "must be 'test' or 'valid'")
