"""Notebook plumbing: one set-up call per notebook, the defaults of a notebook's parameters cell and
where its outputs go.

Every notebook of ``notebooks/`` starts with a ``parameters`` cell of literals (papermill overrides
them), then calls :func:`setup`::

    nb = setup("04_controls", globals())
    nb.prof, nb.profile, nb.out, nb.runs, nb.jobs     # profile, its name, output folder, run root, jobs
    nb.seeds, nb.oracle_thresholds                    # parameters, a None list resolved from the profile

A parameter left at None stands for the profile's own value: a list of the notebook suite
(``Profile.suite``, see :data:`SUITE_PARAMETERS`) or an operating-point knob of its gate or GRPO
config (``tau``, ``rho``, ``lam``, ``num_negatives``, ``num_generations``).
"""
from __future__ import annotations

import ast
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..configs import PROFILES, Profile
from ..common.paths import default_figures_dir, default_runs_dir, repo_root
from ..pipeline import notebook_profile
from .sweeps import SWEEPABLE

__all__ = ["SUITE_PARAMETERS", "NotebookSetup", "check_notebook_params", "notebook_defaults", "notebook_file",
           "output_dir", "parameters_table", "resolve_params", "resolve_setup", "setup"]


_PLUMBING = {"profile", "sequences", "out_dir", "cache_dir", "runs_dir", "threads", "jobs", "scheduler",
             "batch"}   # batch moves numbers by float rounding only (its runs' keys name it), as threads would
"""Parameters that change where or how fast a notebook runs, never its numbers."""

_SELECTORS = {"dial", "gates"}
"""Parameters that pick which of a notebook's default tables a run writes (each table is named
after its value, e.g. notebook 08's ``nb08_phase_<dial>_<profile>`` and, with gates="reliability",
``nb08_phase_<dial>_reliability_<profile>``), so they never move them."""

SUITE_PARAMETERS = {"seeds": "seeds", "oracle_thresholds": "oracle_thresholds", "lams": "frontier_lams",
                    "noise_levels": "noise_levels", "mix_lams": "mix_lams", "grids": "sweep_grids",
                    "methods": "phase_methods", "placement_logging_biases": "placement_logging_biases",
                    "reliability_methods": "reliability_methods"}
"""Notebook parameter -> the field of ``Profile.suite`` that its None value stands for."""

SEEDS_FIELD = {"03_main_results": "main_seeds"}
"""Notebooks whose ``seeds`` come from another suite field than ``seeds``."""

_PARAMETERS_HEADER = re.compile(r"^# %%.*\btags\s*=\s*\[[^\]]*[\"']parameters[\"']")


def notebook_file(notebook: str) -> Path | None:
    """The checkout's ``notebooks/<notebook>.ipynb``, else its paired ``.py``; None when neither
    exists (an installed package, or an unknown name)."""
    root = repo_root()
    if root is None:
        return None
    for ext in (".ipynb", ".py"):
        path = root / "notebooks" / f"{notebook}{ext}"
        if path.is_file():
            return path
    return None


def _parameters_source(path: Path) -> str:
    """The source of the cell tagged ``parameters`` of a .ipynb file or a percent-format .py file."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        lines, inside = [], False
        for line in text.splitlines():
            if line.startswith("# %%"):
                if inside:
                    break
                inside = bool(_PARAMETERS_HEADER.match(line))
            elif inside:
                lines.append(line)
        if inside or lines:
            return "\n".join(lines)
    else:
        for cell in json.loads(text)["cells"]:
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                src = cell["source"]
                return src if isinstance(src, str) else "".join(src)
    raise ValueError(f"{path} has no cell tagged 'parameters'")


PARAMETERS_START, PARAMETERS_END = "<!-- parameters:start -->", "<!-- parameters:end -->"


def parameters_table(notebooks_dir) -> str:
    """README's table of every notebook's parameters, read from their parameters cells: one row
    per parameter (notebooks sharing it listed together), its type, default and the comment that
    says what it means. ``cli answers`` writes it between README's parameters markers."""
    rows: dict = {}
    for path in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.py")):
        src = _parameters_source(path)
        for line in src.splitlines():
            m = re.match(r"^(\w+)\s*=\s*(.*?)\s*(?:#\s*(.*))?$", line)
            if not m:
                continue
            name, value, meaning = m.group(1), ast.literal_eval(m.group(2)), (m.group(3) or "").strip()
            kind = type(value).__name__ if value is not None else \
                "number or None" if name in SWEEPABLE else \
                "path or None" if name.endswith("_dir") or name == "sequences" else \
                "list or None" if name in SUITE_PARAMETERS or name in ("values", "grids") else "str or None"
            key = (name, repr(value), meaning)
            rows.setdefault(key, {"kind": kind, "notebooks": []})["notebooks"].append(path.stem[:2])
    lines = ["| parameter | notebooks | type | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for (name, value, meaning), r in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[1]["notebooks"])):
        nbs = ", ".join(r["notebooks"]) if len(r["notebooks"]) < 9 else "all"
        lines.append(f"| `{name}` | {nbs} | {r['kind']} | `{value}` | {meaning.replace('|', '/')} |")
    return "\n".join(lines)


def notebook_defaults(notebook: str | os.PathLike) -> dict:
    """The literal values of a notebook's ``parameters`` cell, parsed from its .ipynb file or its
    paired percent-format .py file."""
    src = _parameters_source(Path(notebook))
    return {t.id: ast.literal_eval(node.value) for node in ast.parse(src).body
            if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


def resolve_params(notebook: str, prof: Profile, params: Mapping) -> dict:
    """``params`` with every None that stands for a profile value replaced by that value: the
    suite's lists (:data:`SUITE_PARAMETERS`; ``seeds`` of notebook 03 are the suite's
    ``main_seeds``) and the operating point (``tau``, ``rho``, ``num_negatives`` from
    ``prof.gate``, ``lam``, ``num_generations`` from ``prof.grpo``). Other values are kept."""
    out = dict(params)
    for name, value in params.items():
        if value is not None:
            continue
        if name in SUITE_PARAMETERS:
            knob = SEEDS_FIELD.get(notebook, "seeds") if name == "seeds" else SUITE_PARAMETERS[name]
            v = prof.suite.default(knob)
            out[name] = {k: list(x) for k, x in v.items()} if isinstance(v, dict) else v
        elif name in SWEEPABLE:
            out[name] = getattr(getattr(prof, SWEEPABLE[name]), name)
    return out


def output_dir(notebook: str, out_dir, prof: Profile, values: Mapping) -> Path:
    """Where a notebook writes its tables and figures, so that no run overwrites another's.

    An explicit ``out_dir`` wins. Otherwise, under the checkout's ``figures/``, in the profile's
    ``figures_subdir`` (``smoke/`` for a smoke run, git-ignored, where nothing else applies; else
    the profile's name: ``quick/``, ``paper/``, ``amazon/``); a run whose parameters
    ``values`` differ from the defaults of the notebook's parameters cell writes to
    ``sweeps/<notebook>/<param>=<value>,.../`` below that. Both sides are compared after
    :func:`resolve_params`, so passing the profile's own value is the default run. Parameters
    that only change where or how fast a notebook runs (``jobs``, ``threads`` ...) do not count,
    nor does one that picks which of the default tables a run writes (notebook 08's ``dial``).
    """
    if out_dir:
        return Path(out_dir)
    base = default_figures_dir() / prof.figures_subdir
    if prof.suite.smoke:
        return base
    path = notebook_file(notebook)
    defaults = resolve_params(notebook, prof, notebook_defaults(path)) if path else {}
    values = resolve_params(notebook, prof, {k: v for k, v in values.items() if k in defaults})
    changed = {k: v for k, v in values.items() if k not in _PLUMBING | _SELECTORS and defaults[k] != v}
    if not changed:
        return base
    name = ",".join(f"{k}={v}" for k, v in sorted(changed.items()))
    safe = "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in name)[:120]
    return base / "sweeps" / notebook / safe


@dataclass
class NotebookSetup:
    """What :func:`setup` returns. The notebook's parameters, resolved, are attributes too:
    ``nb.seeds`` is ``nb.params["seeds"]``."""

    name: str
    """The notebook's name (its file name without extension), e.g. ``04_controls``."""
    prof: Profile
    """The profile the notebook runs (named, or a dataset's; RL steps applied)."""
    out: Path
    """Where tables and figures go (:func:`output_dir`), created."""
    runs: Path
    """The run root ``<runs_dir or the checkout's runs/>/<profile name>``."""
    jobs: int
    """Runs in parallel: the ``jobs`` parameter, 0 or absent meaning one per CPU core."""
    params: dict = field(default_factory=dict)
    """The notebook's parameters, with every None list resolved (:func:`resolve_params`)."""

    @property
    def profile(self) -> str:
        """The profile's name, as table and figure file names carry it."""
        return self.prof.name

    @property
    def table_note(self) -> str | None:
        """What every table of a real dataset says under it (None on the simulated world)."""
        if self.prof.is_simulated:
            return None
        return ("Offline HR@K / NDCG@K of the next item is the only outcome on a real dataset (no truth, no online "
                "test). On the simulated world the two can disagree: a reward can raise offline HR@10 and lower "
                "simulated CTR (notebook 08, RESULTS.md section 4f).")

    @property
    def run_args(self) -> dict:
        """Keyword arguments of ``experiments.main_results`` and ``experiments.reward_sources``
        that the notebook's parameters set: seeds, out_root, cache_dir, jobs and scheduler."""
        return {"seeds": self.params["seeds"], "out_root": self.runs, "cache_dir": self.params.get("cache_dir"),
                "jobs": self.jobs, "scheduler": self.params.get("scheduler")}

    def __getattr__(self, name: str):
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"notebook {self.__dict__.get('name')!r} has no parameter or attribute {name!r}; "
                             f"its parameters: {sorted(params)}")


_PLAIN = (type(None), bool, int, float, str, list, tuple, dict, np.integer, np.floating)


def _parameters(notebook: str, namespace: Mapping) -> dict:
    """The notebook's parameters in ``namespace``: the names of its parameters cell when the file
    is found, else every public plain value (None, numbers, strings, lists, dicts)."""
    path = notebook_file(notebook)
    if path is not None:
        return {k: namespace[k] for k in notebook_defaults(path) if k in namespace}
    return {k: v for k, v in namespace.items()
            if not k.startswith("_") and k not in ("In", "Out") and isinstance(v, _PLAIN)}


def setup(notebook: str, namespace: Mapping, *, allowed_profiles=PROFILES) -> NotebookSetup:
    """Everything a notebook does before its own work, in one call.

    ``notebook``: its name (``"03_main_results"``); ``namespace``: where its parameters live (the
    notebook's ``globals()``, after papermill's injected cell). In order: checks the parameters
    (:func:`check_notebook_params`; a bad one raises ValueError before any work), sets the torch
    threads (``threads``, 0 keeps the default), builds the profile (``profile``, or ``sequences``'
    dataset; ``cache_dir``) with ``steps`` RL steps (0 keeps the profile's), creates the output
    folder (:func:`output_dir`, from ``out_dir``) and resolves the run root (``runs_dir``), the
    number of jobs (``jobs``), the batch size (``batch``, 0 keeps the profile's) and every None
    list parameter (:func:`resolve_params`).
    """
    params = _parameters(notebook, namespace)
    nb = resolve_setup(notebook, params, allowed_profiles=allowed_profiles)
    if params.get("threads"):
        torch.set_num_threads(params["threads"])
    nb.out.mkdir(parents=True, exist_ok=True)
    return nb


def resolve_setup(notebook: str, params: Mapping, *, allowed_profiles=PROFILES) -> NotebookSetup:
    """What :func:`setup` returns, with no side effect (no thread count set, no folder made): the
    checked parameters (:func:`check_notebook_params`), the profile with ``steps`` RL steps and
    ``batch``, the output folder, the run root, ``jobs`` and the resolved lists. The planner
    (``suite/plan.py``) calls it with a notebook's defaults and a run's overrides."""
    params = dict(params)
    check_notebook_params(allowed_profiles=allowed_profiles, **params)
    prof = notebook_profile(params.get("profile", "quick"), params.get("sequences"), params.get("cache_dir"))
    prof = prof.with_rl_steps(params.get("steps", 0))
    if params.get("batch"):
        prof = replace(prof, batch=params["batch"])
    out = output_dir(notebook, params.get("out_dir"), prof, params)
    runs = (Path(params["runs_dir"]) if params.get("runs_dir") else default_runs_dir()) / prof.name
    jobs = params.get("jobs") or os.cpu_count() or 1
    return NotebookSetup(notebook, prof, out, runs, jobs, resolve_params(notebook, prof, params))


def check_notebook_params(*, allowed_profiles=PROFILES, **params) -> None:
    """Validate a notebook's papermill parameters before any expensive work.

    Checks the parameters the notebooks share, where given: ``profile`` (one of
    ``allowed_profiles``), ``seeds`` (a non-empty list of distinct non-negative ints; None: the
    profile's), ``steps`` and ``threads`` (ints >= 0; 0 keeps the default), ``hr_k`` (5, 10 or 20), ``lams``
    (non-negative numbers), ``oracle_thresholds`` (numbers in [0, 1]; None: the profile's),
    ``noise_levels`` and ``mix_lams`` (non-negative numbers; None: the profile's), ``jobs`` (int
    >= 0), ``sequences`` (an existing file or None), ``run_dir`` (an existing
    folder or None), ``out_dir`` / ``cache_dir`` / ``runs_dir`` (a path or None), ``checkpoint``
    ('best' or 'final'), ``split`` ('test' or 'valid') and ``gates`` ('main' or 'reliability').
    Other parameters are left to the code that uses them. A bad value raises ValueError naming the parameter and the value.
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
    if params.get("seeds") is not None:       # None: the profile's seeds
        v = params["seeds"]
        if not isinstance(v, (list, tuple)) or not v:
            bad("seeds", "must be a non-empty list of ints")
        if not all(is_int(s) and s >= 0 for s in v):
            bad("seeds", "must hold non-negative ints")
        if len({int(s) for s in v}) != len(v):
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
    if "batch" in params and not (is_int(params["batch"]) and params["batch"] >= 0):
        bad("batch", "must be an int >= 0 (0 means the profile's)")
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
    if "gates" in params and params["gates"] not in ("main", "reliability"):
        bad("gates", "must be 'main' or 'reliability'")
