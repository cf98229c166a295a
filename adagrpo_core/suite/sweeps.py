"""Sensitivity sweeps of AdaGRPO around an operating point, each point against its matched controls.

For every swept value of tau, rho, lambda, M (``num_negatives``), G (``num_generations``) or the
``normalize`` mode, and every cell of a tau x rho grid, a point trains:

* ``ada[...]``: AdaGRPO at that value;
* ``random[...]``: the random gate at the same per-step admission rates (the "less RL" control);
* ``mixp[...]``: the fixed mixture with lambda x p, p = that AdaGRPO run's mean admission rate.
  With ``normalize="batch"`` AdaGRPO at lambda puts about lambda x p of GRPO weight on a batch,
  so "the gate wins" must beat this, not only mix(lambda), or it may only mean "less GRPO wins".

Every point shares the cached SFT base and ranker, and a run that exists (same full config) is
reused, so a notebook that sweeps one value at a time aggregates whatever runs exist.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .comparisons import add_seed_holm, one_kind, seed_columns, with_provenance
from ..configs import Profile
from ..eval.stats import mean_ci
from ..runs import MethodSpec

SWEEPABLE = {"tau": "gate", "rho": "gate", "num_negatives": "gate", "lam": "grpo", "num_generations": "grpo",
             "normalize": "grpo"}


def _label(values: dict) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def point_label(values: dict, operating: dict | None = None) -> str:
    """A point's name in its methods' names: its knob values, leaving out those at the operating
    point (``operating``: {knob: value}), so that one configuration has one name and trains once
    whichever sweeps it lies on ("op" for the operating point itself)."""
    kept = {k: v for k, v in values.items() if not (operating and k in operating and operating[k] == v)}
    return _label(kept) if kept else "op"


def point_methods(values: dict, operating: dict | None = None) -> list[MethodSpec]:
    """AdaGRPO at the knob ``values`` ({knob: value}), its matched random gate and rate-matched
    mixture, named by :func:`point_label`."""
    for k in values:
        if k not in SWEEPABLE:
            raise ValueError(f"cannot sweep {k!r}; sweepable knobs: {sorted(SWEEPABLE)}")
    label = point_label(values, operating)
    gate = {k: v for k, v in values.items() if SWEEPABLE[k] == "gate"}
    grpo = {k: v for k, v in values.items() if SWEEPABLE[k] == "grpo"}
    ada = f"ada[{label}]"
    return [MethodSpec(ada, "adagrpo", grpo=grpo, gate=gate),
            MethodSpec(f"random[{label}]", "random", grpo=grpo, gate=gate, match=ada),
            MethodSpec(f"mixp[{label}]", "mix", grpo=grpo, match=ada)]


def sweep_methods(grids: dict, tau_rho_grid: tuple | None = None, lam_normalize: tuple = (),
                  operating: dict | None = None) -> tuple[list[MethodSpec], list[dict]]:
    """Methods for one-at-a-time sweeps ``{knob: [values]}``, an optional tau x rho grid
    ``(taus, rhos)``, and lambda swept again under each ``normalize`` mode in ``lam_normalize``;
    plus nll and mix(lambda) for each swept lambda. Returns (methods, points), a point being
    {"sweep": name, knob: value, ..., "label": its methods' label}; a configuration that several
    sweeps share (the operating point lies on every one-knob sweep; with ``operating``, the
    knobs' values there) trains once."""
    points = [{"sweep": k, k: v} for k, vals in grids.items() for v in vals]
    if tau_rho_grid is not None:
        points += [{"sweep": "tau_rho", "tau": t, "rho": r} for t in tau_rho_grid[0] for r in tau_rho_grid[1]]
    points += [{"sweep": "lam_normalize", "lam": lam, "normalize": mode}
               for mode in lam_normalize for lam in grids.get("lam", [])]
    methods, seen = [MethodSpec("nll", "nll")], {"nll"}
    for p in points:
        values = {k: v for k, v in p.items() if k != "sweep"}
        p["label"] = point_label(values, operating)
        for m in point_methods(values, operating):
            if m.name not in seen:
                seen.add(m.name)
                methods.append(m)
    for lam in grids.get("lam", []):
        name = f"mix({lam:g})"
        if name not in seen:
            seen.add(name)
            methods.append(MethodSpec(name, "mix", grpo={"lam": lam}))
    return methods, points


def _paired(rows: pd.DataFrame, a: str, b: str, metric: str, checkpoint: str) -> dict:
    """{seed: a - b} of ``metric`` on the seeds both methods have ({} when either is missing)."""
    s = rows[rows.checkpoint == checkpoint].pivot_table(index="seed", columns="method", values=metric)
    if a not in s or b not in s:
        return {}
    return (s[a] - s[b]).dropna().to_dict()


def sweep_table(rows: pd.DataFrame, points: list[dict], metric: str = "HR@10",
                checkpoint: str = "best") -> pd.DataFrame:
    """One row per point: admission rate, then for ``metric`` and (on the simulated world) the
    simulated CTR: AdaGRPO and each control (mean and 95% t-interval over seeds) and AdaGRPO's
    gains over the matched random gate, the rate-matched mixture and continued NLL, paired per seed
    on the seeds both have. Each gain G (``gain_vs_random``, ``ctr_gain_vs_mixp``, ...) has the
    seed-level columns of :func:`~adagrpo_core.suite.comparisons.seed_columns`: G (mean over seeds),
    ``G_ci`` (t half-width), ``G_share_below_0``, ``G_p_seed`` (sign-flip test over seeds),
    ``G_p_seed_holm`` (Holm over the points of the table) and ``G_per_seed``; no bootstrap (no
    per-user values here)."""
    one_kind(rows, "sweep_table")
    metrics = [(metric, "")] + ([("sim_ctr", "ctr_")] if "sim_ctr" in rows else [])
    out, gains = [], []
    sub = rows[rows.checkpoint == checkpoint]
    for p in points:
        label = p.get("label") or _label({k: v for k, v in p.items() if k != "sweep"})
        names = {"ada": f"ada[{label}]", "random": f"random[{label}]", "mixp": f"mixp[{label}]"}
        ada = sub[sub.method == names["ada"]]
        r = dict({k: v for k, v in p.items() if k != "label"}, seeds=len(ada))
        r["admission_rate"], r["admission_rate_ci"] = mean_ci(ada["admission_rate"]) if len(ada) else (np.nan,) * 2
        for m, prefix in metrics:
            for tag, name in names.items():
                g = sub[sub.method == name]
                r[f"{m}_{tag}"], r[f"{m}_{tag}_ci"] = mean_ci(g[m]) if len(g) else (np.nan, np.nan)
            for tag, ref in (("random", names["random"]), ("mixp", names["mixp"]), ("nll", "nll")):
                gain = f"{prefix}gain_vs_{tag}"
                gains.append(gain)
                r.update(seed_columns(gain, _paired(rows, names["ada"], ref, m, checkpoint)))
        out.append(r)
    return with_provenance(add_seed_holm(pd.DataFrame(out), dict.fromkeys(gains)), rows)


def default_grids(profile: Profile) -> tuple[dict, tuple, tuple]:
    """(one-at-a-time grids, tau x rho grid, normalize modes of the lambda sweep) of a profile: its
    suite's (``Profile.suite``: smoke-sized for tiny, reduced for quick, full for paper and full)."""
    s = profile.suite
    return {k: list(v) for k, v in s.sweep_grids.items()}, tuple(s.tau_rho_grid), tuple(s.lam_normalize)


def sensitivity_design(profile: Profile, grids: dict, **point) -> tuple[Profile, list[MethodSpec], list[dict], tuple, tuple]:
    """Notebook 05's design: (the profile at the operating point ``point``, the methods, the points,
    the tau x rho grid, the normalize modes of the lambda sweep) for one-at-a-time ``grids``."""
    prof = operating_point(profile, **point)
    _, tau_rho, modes = default_grids(prof)
    operating = {k: getattr(getattr(prof, cfg), k) for k, cfg in SWEEPABLE.items()}
    methods, points = sweep_methods(grids, tau_rho, modes, operating)
    return prof, methods, points, tau_rho, modes


def knob_table(table: pd.DataFrame, knob: str) -> pd.DataFrame:
    """The rows of ``sweep_table`` for one knob: its one-at-a-time points, or, for tau or rho
    without any, the points of the tau x rho grid (the other threshold then varies too)."""
    t = table[table.sweep == knob]
    if t.empty and knob in ("tau", "rho"):
        t = table[table.sweep == "tau_rho"].sort_values([knob, "rho" if knob == "tau" else "tau"])
    return t.drop(columns=["sweep"]).dropna(axis=1, how="all")


def operating_point(profile: Profile, **values) -> Profile:
    """The profile with its GRPO / gate knobs moved to ``values`` (the point sweeps go around); a
    value of None keeps the profile's own."""
    values = {k: v for k, v in values.items() if v is not None}
    gate = {k: v for k, v in values.items() if SWEEPABLE.get(k) == "gate"}
    grpo = {k: v for k, v in values.items() if SWEEPABLE.get(k) == "grpo"}
    unknown = set(values) - set(SWEEPABLE)
    if unknown:
        raise ValueError(f"unknown knobs {sorted(unknown)}; known: {sorted(SWEEPABLE)}")
    return replace(profile, gate=replace(profile.gate, **gate), grpo=replace(profile.grpo, **grpo))
