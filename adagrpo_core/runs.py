"""RL runs as an explicit list, keyed by their full config (``execution.py`` runs them).

A :class:`RunSpec` is one (method, seed) of a profile with every config that affects it; its
``key`` hashes all of them (world or dataset, IDs, policy, SFT, ranker, reward, GRPO, gate, RL,
the run it copies admission rates from, and :data:`RESULT_VERSION`), so a finished run is reused
only when nothing that made it has changed. Its folder ``<out_root>/seed<k>/<name>-<key>/`` holds
a human-readable ``config.json``, the checkpoints, the logs and ``results.csv``. A run of a
replicate (``reward_seed``) reads that replicate's own reward models (:func:`spec_profile`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .configs import Profile
from .pipeline import data_key
from .rl.gate import GateConfig
from .rl.grpo import GRPOConfig
from .train.rl import RLConfig
from .common.storage import config_hash

RESULT_VERSION = 3   # bump when what a run computes or writes changes meaning (3: gated differentiable rollout pass)


@dataclass(frozen=True)
class MethodSpec:
    """One row of a comparison: a display name, a gate method and config overrides."""

    name: str
    method: str
    grpo: tuple = ()   # GRPOConfig overrides as (field, value) pairs, e.g. (("lam", 0.5),)
    gate: tuple = ()   # GateConfig overrides
    match: str | None = None
    """Name of the gated method this one is matched to: a random control copies its admission
    rates; a mixture with ``match`` (rate-matched) uses lambda x its mean admission rate (for the
    soft variant, its mean weight). None for a random control = the first adagrpo method."""

    def __post_init__(self):   # accept dicts for convenience; store hashable tuples
        for f in ("grpo", "gate"):
            v = getattr(self, f)
            object.__setattr__(self, f, tuple(sorted(v.items())) if isinstance(v, dict) else tuple(v))


@dataclass(frozen=True)
class RunSpec:
    """One RL run: its name, seed, configs, key and folder."""

    name: str
    seed: int
    grpo: GRPOConfig
    gate: GateConfig
    rl: RLConfig
    reference: str | None           # folder of the AdaGRPO run a matched method copies rates from
    key: str                        # run_key of the configs above
    out_dir: str                    # <out_root>/seed<k>/<name>-<key>
    batch: tuple = ()               # seeds of the batch it trains in (train/batched.py); () = alone
    reward_seed: int | None = None  # the replicate whose reward models it uses (Profile.for_reward_seed); None = the profile's


def spec_profile(profile: Profile, spec: RunSpec) -> Profile:
    """The profile a run trains with: its replicate's reward models where it has one."""
    return profile if spec.reward_seed is None else profile.for_reward_seed(spec.reward_seed)


def run_key(profile: Profile, grpo: GRPOConfig, gate: GateConfig, rl, reference_key: str | None,
            batch: tuple = ()) -> str:
    """Hash of every config that affects a run (the dataset's local folder excepted). Continued NLL
    never calls the reward, so its key leaves the ranker and the reward out. A run trained in a
    batch (``batch``: the batch's seeds) has numbers that can depend on the batch (float rounding
    of the stacked matmuls), so its key names the batch; a run alone keeps the key it always had."""
    reward = ("no reward",) if gate.method == "nll" else (profile.ranker, profile.reward)
    if gate.method != "nll" and profile.reward.source == "sasrec":
        reward += (profile.sasrec,)
    if reads_ensemble(gate):
        reward += (profile.ensemble,)
    extra = (("batch", *batch),) if batch else ()
    return config_hash(data_key(profile.world), profile.sid, profile.policy, profile.sft, *reward,
                       grpo, gate, rl, reference_key or "", f"v{RESULT_VERSION}", *extra)


def reads_ensemble(gate: GateConfig) -> bool:
    """Whether a gate reads the ensemble diagnostic u (so its runs need the ranker ensemble)."""
    return gate.method == "ensemble" or (gate.method in ("difficulty_and_reliability", "soft")
                                         and gate.reliability == "ensemble")


def batch_of(seed: int, seeds, K: int) -> tuple:
    """The seeds that train together with ``seed`` at batch size K: the planned seeds s with
    s // K == seed // K, so adding seeds never regroups a full batch; () when that is ``seed`` alone."""
    group = tuple(sorted(int(s) for s in seeds if int(s) // K == int(seed) // K)) if K > 1 else ()
    return group if len(group) > 1 else ()


def plan_runs(profile: Profile, methods: list[MethodSpec], seeds, out_root,
              reward_seed: int | None = None) -> list[RunSpec]:
    """The runs of ``methods`` x ``seeds``: matched methods point at their seed's AdaGRPO run.
    With ``profile.batch`` K > 1 the seeds of each method train in batches (:func:`batch_of`).
    With ``reward_seed`` every run reads replicate ``reward_seed``'s own ranker and ensemble
    (:meth:`Profile.for_reward_seed`; the key follows), so a (reward_seed, seed) pair is a replicate;
    continued NLL reads no reward and belongs to no replicate (one run per seed)."""
    if reward_seed is not None:
        profile = profile.for_reward_seed(reward_seed)
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    ada_names = [m.name for m in methods if m.method == "adagrpo"]
    gated = [m.name for m in methods if m.method not in ("nll", "mix", "grpo", "random")]
    for m in methods:
        if m.method == "random" and m.match is None and not ada_names:
            raise ValueError(f"the random control {m.name!r} is matched to an adagrpo run by default: include "
                             "method 'adagrpo', or name the gated run it copies (match=...)")
        if m.match is not None and m.match not in gated:
            raise ValueError(f"method {m.name!r} is matched to {m.match!r}, which is not a gated method here "
                             f"(gated: {gated})")
        if m.match is not None and m.method not in ("random", "mix"):
            raise ValueError(f"only random and mix methods can be matched, got {m.name!r} (method={m.method!r})")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or any(int(s) != s or s < 0 for s in seeds):
        raise ValueError(f"seeds must be distinct non-negative ints, got seeds={seeds}")
    out_root = Path(out_root)
    specs = []
    for seed in seeds:
        rl = replace(profile.rl, seed=int(seed))
        planned = {}
        matched = lambda m: m.match is not None or m.method == "random"   # noqa: E731
        for m in sorted(methods, key=matched):                            # adagrpo before what it matches
            grpo = replace(profile.grpo, **dict(m.grpo))
            gate = replace(profile.gate, method=m.method, **dict(m.gate))
            ref = planned[m.match or ada_names[0]] if matched(m) else None
            batch = batch_of(seed, seeds, profile.batch)
            key = run_key(profile, grpo, gate, rl, None if ref is None else ref.key, batch)
            spec = RunSpec(m.name, int(seed), grpo, gate, rl, None if ref is None else ref.out_dir, key,
                           str(out_root / f"seed{seed}" / f"{_safe(m.name)}-{key}"), batch,
                           None if reward_seed is None or gate.method == "nll" else int(reward_seed))
            planned[m.name] = spec
            specs.append(spec)
    order = {n: i for i, n in enumerate(names)}
    return sorted(specs, key=lambda s: (s.reference is not None, s.seed, order[s.name]))


def _safe(name: str) -> str:
    """A method name as a folder name (letters, digits and =,.()-_ kept)."""
    return "".join(c if c.isalnum() or c in "=,.()-_" else "_" for c in name)


def _cost(spec: RunSpec) -> float:
    """Rough relative cost of a run, to start the longest first: continued NLL samples no
    rollouts; the others scale with num_generations."""
    return spec.rl.steps * (1.0 if spec.gate.method == "nll" else 1.0 + spec.grpo.num_generations / 4)


def plan_units(specs: list[RunSpec], profile_of: dict | None = None) -> list[list[RunSpec]]:
    """What the executor submits: a batch's runs as one unit (same profile, folder root, method
    name and batch; by seed), every other run alone. ``profile_of``: {out_dir: Profile} when the
    specs come from several profiles. Deterministic: units follow the specs' order."""
    units: dict = {}
    for s in specs:
        prof = id(profile_of[s.out_dir]) if profile_of else None
        key = (prof, str(Path(s.out_dir).parent.parent), s.name, s.batch) if s.batch else s.out_dir
        units.setdefault(key, []).append(s)
    return [sorted(u, key=lambda s: s.seed) for u in units.values()]


def _unit_cost(unit: list[RunSpec]) -> float:
    return sum(_cost(s) for s in unit)


