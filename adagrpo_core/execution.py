"""Running planned RL runs (``runs.py`` plans them): the cached artefacts a run reads, its inputs
and provenance, and one executor interface for every path.

:func:`execute` runs a list of specs through any ``concurrent.futures.Executor``:

* ``jobs=1``: in this process, one after the other;
* ``jobs=N``: a process pool of N workers;
* ``scheduler="tcp://host:port"``: a Dask ``distributed`` cluster (``Client(...).get_executor()``),
  whose workers must see the same cache and run folders (a shared file system).

Every run trains with one torch thread, whatever the caller's setting, so results are the same on
every path. The costliest runs start first; a random control waits for the AdaGRPO run whose
admission rates it copies and starts as soon as that run is done. A run that is interrupted, even
by SIGKILL, leaves its last checkpoint; running the list again resumes it and skips every run that
has ``results.csv``. The world, the SFT base and each ranker are built once, before any worker
needs them (:func:`prepare`, :func:`build_rankers`).
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .common.machine import kind_digest, machine_kind
from .common.paths import code_commit
from .common.runtime import progress_bar, torch_threads
from .common.storage import atomic_write_text, config_hash, file_digest
from .configs import Profile
from .data.impressions import reward_coverage
from .pipeline import (
    ensemble_files,
    get_ensemble,
    get_ranker,
    get_sasrec,
    get_sft,
    get_sids,
    get_world,
    ranker_cached,
    ranker_file,
    ranker_log_data,
    sft_cached,
)
from .reward.reward_model import RewardConfig, RewardModel
from .reward.sources import build_reward
from .rl.step import ReliabilityInputs
from .runs import RESULT_VERSION, RunSpec, _unit_cost, plan_units, reads_ensemble, spec_profile
from .train.batched import run_methods_batched
from .train.rl import run_method


def _config_json(profile: Profile, spec: RunSpec) -> str:
    cfgs = {k: dataclasses.asdict(v) for k, v in profile.configs().items() if k not in ("grpo", "gate", "rl")}
    cfgs.update(name=spec.name, seed=spec.seed, key=spec.key, result_version=RESULT_VERSION, profile=profile.name,
                grpo=dataclasses.asdict(spec.grpo), gate=dataclasses.asdict(spec.gate),
                rl=dataclasses.asdict(spec.rl), reference=spec.reference)
    return json.dumps(cfgs, indent=2, sort_keys=True, default=str)


_LOADED: dict = {}   # per process: the cached artefacts of the last profiles, so a worker loads them once


def _artefacts(profile: Profile, cache_dir):
    """(world, sids, SFT folder, ranker, SASRec or None, coverage) of a profile from the cache,
    loaded once per process: the data, IDs and SFT base once, and each ranker (a replicate's own,
    a re-logged one) once; SASRec only when it is the reward (``reward.source == 'sasrec'``)."""
    sasrec_cfg = profile.sasrec if profile.reward.source == "sasrec" else None
    base_key = (config_hash(profile.world, profile.sid, profile.policy, profile.sft), str(cache_dir))
    if base_key not in _LOADED:
        _LOADED.clear()                      # keep one base's artefacts at a time
        world = get_world(profile.world, cache_dir)
        sids = get_sids(world, profile.sid, cache_dir)
        _LOADED[base_key] = (world, sids, get_sft(world, sids, profile.policy, profile.sft, cache_dir, progress=False))
    world, sids, sft_dir = _LOADED[base_key]
    key = (base_key, config_hash(profile.ranker, sasrec_cfg, profile.reward.ranker_log))
    if key not in _LOADED:
        ranker = get_ranker(world, profile.ranker, cache_dir, progress=False, **profile.reward.ranker_log)
        sasrec = None if sasrec_cfg is None else get_sasrec(world, sasrec_cfg, cache_dir, progress=False)
        log = ranker_log_data(world, profile.ranker, **profile.reward.ranker_log) \
            if profile.reward.source == "ranker" else world
        _LOADED[key] = (ranker, sasrec, torch.as_tensor(reward_coverage(log)))    # what the ranker learned from
    return (world, sids, sft_dir, *_LOADED[key])


def _run_inputs(spec: RunSpec, profile: Profile, cache_dir) -> dict:
    """What training one run needs besides its spec: the artefacts, the reward, the gate and GRPO
    configs resolved against its reference run (a random control's rates, a rate-matched
    mixture's lambda), the truth and the reliability inputs. Writes its folder's ``config.json``."""
    world, sids, sft_dir, ranker, sasrec, coverage = _artefacts(profile, cache_dir)
    reward = build_reward(world, sids, ranker if profile.reward.source == "ranker" else None, profile.reward,
                          sasrec=sasrec)
    gate, grpo, rates = spec.gate, spec.grpo, None
    if spec.reference is not None:
        rates = pd.read_csv(Path(spec.reference) / "steps.csv")["admission_rate"].to_numpy()
        if gate.method == "random" and gate.random_rate_mode == "mean" and gate.random_rate is None:
            gate = replace(gate, random_rate=float(np.mean(rates)))
        if gate.method == "mix":             # rate-matched mixture: the GRPO weight AdaGRPO put on the batch
            grpo = replace(grpo, lam=grpo.lam * float(np.mean(rates)))
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for tmp in out.glob(".*.tmp"):          # left by a write that was killed: never read, safe to drop
        tmp.unlink()
    atomic_write_text(out / "config.json", _config_json(profile, spec))
    truth = _TrueUtility(world) if hasattr(world, "true_utility") else None
    members = None
    if reads_ensemble(gate):
        members = [RewardModel(r, sids, RewardConfig(output="logit"))
                   for r in get_ensemble(world, profile.ranker, profile.ensemble, cache_dir,
                                         **(profile.reward.ranker_log if profile.reward.source == "ranker" else {}))]
    return {"world": world, "sids": sids, "sft": sft_dir / "best.pt", "reward": reward, "gate": gate, "grpo": grpo,
            "rates": rates if gate.method == "random" else None, "truth": truth,
            "reliability": ReliabilityInputs(item_exposure=coverage, ensemble=members),
            "provenance": provenance(spec, profile, cache_dir, sft_dir / "best.pt")}


def provenance(spec: RunSpec, profile: Profile, cache_dir, sft_file) -> dict:
    """What every run row records of where it comes from: its key (the hash of every config), the
    code's commit, the SFT base's and the reward model's file digests (a truth reward: its
    config's hash; continued NLL: 'none'), the replicate of its reward models (``reward_seed``,
    -1: the profile's one ranker), the ensemble's digest when a gate reads one, and the machine
    kind's digest (``common/machine.py``; one torch thread, as runs train)."""
    rc = profile.reward
    if spec.gate.method == "nll":
        reward = "none"
    elif rc.source == "ranker":
        reward = file_digest(ranker_file(profile.world, profile.ranker, cache_dir, **rc.ranker_log))
    else:
        reward = f"{rc.source}:{config_hash(rc, profile.sasrec if rc.source == 'sasrec' else None)}"
    out = {"run_key": spec.key, "commit": code_commit(), "sft_hash": file_digest(sft_file), "reward_hash": reward,
           "reward_seed": -1 if spec.reward_seed is None else spec.reward_seed,
           "machine_kind": kind_digest(machine_kind(threads=1))}
    if reads_ensemble(spec.gate):
        log = rc.ranker_log if rc.source == "ranker" else {}
        files = ensemble_files(profile.world, profile.ranker, profile.ensemble, cache_dir, **log)
        out["ensemble_hash"] = config_hash(*[file_digest(f) for f in files])
    return out


def execute_run(spec: RunSpec, profile: Profile, cache_dir=None, progress: bool = False) -> pd.DataFrame:
    """Train and evaluate one run (or read its finished results); one torch thread."""
    res = Path(spec.out_dir) / "results.csv"
    if res.exists():
        return pd.read_csv(res)
    with torch_threads(1):
        x = _run_inputs(spec, profile, cache_dir)
        return run_method(x["world"], x["sids"], x["sft"], x["reward"], x["grpo"], x["gate"], spec.rl,
                          spec.out_dir, reference_rates=x["rates"], true_utility=x["truth"], name=spec.name,
                          progress=progress, reliability=x["reliability"], provenance=x["provenance"])


def execute_batch(specs: list[RunSpec], profile: Profile, cache_dir=None, progress: bool = False) -> list:
    """Train and evaluate the runs of one batch together (``train/batched.py``); one torch thread.
    The whole batch runs even when some of its runs have results (their numbers depend on the
    batch, so a smaller one would not reproduce them); a finished batch is read back."""
    if all((Path(s.out_dir) / "results.csv").exists() for s in specs):
        return [pd.read_csv(Path(s.out_dir) / "results.csv") for s in specs]
    with torch_threads(1):
        xs = [_run_inputs(s, profile, cache_dir) for s in specs]
        x = xs[0]
        return run_methods_batched(x["world"], x["sids"], x["sft"], x["reward"], x["grpo"],
                                   [y["grpo"] for y in xs], [y["gate"] for y in xs], [s.rl for s in specs],
                                   [s.out_dir for s in specs], [s.name for s in specs],
                                   [y["rates"] for y in xs], x["truth"], x["reliability"], progress,
                                   [y["provenance"] for y in xs])


class _TrueUtility:
    """true_utility(batch, items) of the simulated world: the oracle gate and the audit use it."""

    def __init__(self, world):
        self.world = world

    def __call__(self, batch, items):
        return self.world.true_utility(self.world.states_for(batch), items)


class InProcessExecutor(Executor):
    """``concurrent.futures.Executor`` that runs each call at submit, in this process."""

    def submit(self, fn, /, *args, **kwargs):
        f = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:  # handed to the caller through the future, as a pool would
            f.set_exception(e)
        return f


def make_executor(jobs: int = 1, scheduler: str | None = None) -> tuple[Executor, object]:
    """(executor, what to close after it): in this process (jobs=1), a process pool (jobs>1), or
    a Dask cluster (scheduler address; the client is closed with the executor)."""
    if scheduler:
        from distributed import Client
        client = Client(scheduler)
        return client.get_executor(), client
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got jobs={jobs}")
    if jobs == 1:
        return InProcessExecutor(), None
    return ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")), None


def _build(what: str, profile: Profile, cache_dir) -> None:
    """Build one cached artefact ("sft" or "ranker") in this process, with one torch thread."""
    with torch_threads(1):
        world = get_world(profile.world, cache_dir)
        if what == "sft":
            get_sft(world, get_sids(world, profile.sid, cache_dir), profile.policy, profile.sft, cache_dir,
                    progress=False)
        else:
            get_ranker(world, profile.ranker, cache_dir, progress=False, **profile.reward.ranker_log)


def prepare(profile: Profile, cache_dir=None, progress: bool = True, jobs: int = 1) -> None:
    """Build the cached world, IDs, SFT base and ranker once, before any worker needs them. With
    ``jobs`` >= 2 the SFT base and the ranker train at the same time in two processes (one torch
    thread each, so the artefacts are the same as built one after the other)."""
    with torch_threads(1):
        world = get_world(profile.world, cache_dir, progress)
        sids = get_sids(world, profile.sid, cache_dir)
        missing = [w for w, ok in (("sft", sft_cached(world, sids, profile.policy, profile.sft, cache_dir)),
                                   ("ranker", ranker_cached(world, profile.ranker, cache_dir,
                                                            **profile.reward.ranker_log))) if not ok]
        if jobs >= 2 and len(missing) == 2:
            if progress:
                print("[prepare] training the SFT base and the ranker in two processes", file=sys.__stderr__,
                      flush=True)
            with ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("spawn")) as ex:
                for f in [ex.submit(_build, w, profile, cache_dir) for w in missing]:
                    f.result()
        get_sft(world, sids, profile.policy, profile.sft, cache_dir, progress=progress)
        get_ranker(world, profile.ranker, cache_dir, progress=progress, **profile.reward.ranker_log)
        if profile.reward.source == "sasrec":
            get_sasrec(world, profile.sasrec, cache_dir, progress=progress)


def build_rankers(profiles: list[Profile], cache_dir, jobs: int) -> None:
    """Train the rankers the profiles' rewards need and the cache lacks (retrained rankers of the
    phase diagram, replicates' own rankers), ``jobs`` at a time, each in its own process with one
    torch thread."""
    missing = {}
    for p in profiles:
        if p.reward.source == "ranker":
            world = get_world(p.world, cache_dir)
            if not ranker_cached(world, p.ranker, cache_dir, **p.reward.ranker_log):
                missing[config_hash(p.ranker, p.reward.ranker_log)] = p
    if jobs < 2 or len(missing) < 2:
        return                          # prepare() builds a single one in this process
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
        for f in [ex.submit(_build, "ranker", p, cache_dir) for p in missing.values()]:
            f.result()


def execute(specs: list[RunSpec], profile: Profile, cache_dir=None, jobs: int = 1, scheduler: str | None = None,
            executor: Executor | None = None, progress: bool = True) -> pd.DataFrame:
    """Run every spec (finished ones are read back) and return their result rows in the order of
    ``specs``, with a ``run_dir`` column. The costliest runs start first, and a matched control
    starts as soon as the AdaGRPO run it copies is done, so no worker waits for a whole wave."""
    return execute_planned([(profile, specs)], cache_dir, jobs, scheduler, executor, progress).drop(columns="plan")


RUN_LOG_ENV = "ADAGRPO_RUN_LOG"
"""When set, the file every executed plan appends its run folders to (one line each): how the
tests check that the planner (``suite/plan.py``) lists exactly the runs the notebooks train."""


def _log_planned(plans) -> None:
    path = os.environ.get(RUN_LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(f"{s.out_dir}\n" for _, ps in plans for s in ps)


def execute_planned(plans: list[tuple[Profile, list[RunSpec]]], cache_dir=None, jobs: int = 1,
                    scheduler: str | None = None, executor: Executor | None = None,
                    progress: bool = True) -> pd.DataFrame:
    """:func:`execute` for runs of several profiles (say, one per reward) through one executor, so
    that the workers stay busy across them: ``plans`` is [(profile, its specs), ...]. Rows in the
    order of the plans' specs, with a ``plan`` column (the index of the plan of each row)."""
    _log_planned(plans)
    local_jobs = 1 if scheduler or executor is not None else jobs
    effective: dict = {}                 # (plan, replicate) -> the profile its runs train with (spec_profile)
    for i, (p, ps) in enumerate(plans):
        for s in ps:
            effective.setdefault((i, s.reward_seed), spec_profile(p, s))
    profile_of = {s.out_dir: effective[(i, s.reward_seed)] for i, (_, ps) in enumerate(plans) for s in ps}
    profiles = list(effective.values())
    prepare(profiles[0], cache_dir, progress, local_jobs)
    build_rankers(profiles[1:], cache_dir, local_jobs)     # re-logged rankers, replicates' rankers
    for profile in profiles[1:]:
        prepare(profile, cache_dir, progress, local_jobs)
    specs = [s for _, ps in plans for s in ps]
    for profile in profiles:             # the ranker ensemble, before a worker needs it (members in parallel)
        if any(reads_ensemble(s.gate) for s in specs if profile_of[s.out_dir] is profile):
            get_ensemble(get_world(profile.world, cache_dir), profile.ranker, profile.ensemble, cache_dir, local_jobs,
                         **(profile.reward.ranker_log if profile.reward.source == "ranker" else {}))
    own, client = executor is None, None
    ex = executor
    if own:
        ex, client = make_executor(jobs, scheduler)
    inline = isinstance(ex, InProcessExecutor)
    unique = list({s.out_dir: s for s in specs}.values())    # a run shared by two plans (continued NLL) runs once
    units = plan_units(unique, profile_of)
    todo = [u for u in units if not all((Path(s.out_dir) / "results.csv").exists() for s in u)]
    n_todo = sum(len(u) for u in todo)
    bar = None
    if progress:
        bar = progress_bar(total=len(unique), initial=len(unique) - n_todo, desc="runs", unit="run")
    t0, done = time.perf_counter(), 0
    todo_dirs = {s.out_dir for u in todo for s in u}
    pending = lambda u: {s.reference for s in u if s.reference in todo_dirs}   # noqa: E731  (references not done)
    waiting = [u for u in todo if pending(u)]                   # a control waits for its AdaGRPO runs
    ready = sorted((u for u in todo if not pending(u)), key=_unit_cost, reverse=True)
    futures: dict[Future, list] = {}

    def submit(batch):
        for u in batch:
            fn = execute_run if len(u) == 1 else execute_batch
            arg = u[0] if len(u) == 1 else u
            futures[ex.submit(fn, arg, profile_of[u[0].out_dir], cache_dir, progress and inline)] = u

    try:
        submit(ready)          # costliest first; a control starts as soon as its AdaGRPO runs are done
        while futures:
            f = next(as_completed(futures))
            u = futures.pop(f)
            f.result()                           # re-raise a failed run here
            done += len(u)
            todo_dirs -= {s.out_dir for s in u}
            now_ready = [w for w in waiting if not pending(w)]
            waiting = [w for w in waiting if pending(w)]
            submit(sorted(now_ready, key=_unit_cost, reverse=True))
            if bar is not None:
                left = (time.perf_counter() - t0) / done * (n_todo - done)
                bar.update(len(u))
                who = f"seed {u[0].seed}" if len(u) == 1 else f"seeds {[s.seed for s in u]} (one batch)"
                print(f"[run] {u[0].name} {who} done ({done}/{n_todo} new, about {left:.0f} s left)",
                      file=sys.__stderr__, flush=True)
    finally:
        if bar is not None:
            bar.close()
        if own:
            ex.shutdown()
            if client is not None:
                client.close()
    rows = [pd.read_csv(Path(s.out_dir) / "results.csv").assign(run_dir=s.out_dir, plan=i)
            for i, (_, ps) in enumerate(plans) for s in ps]
    return pd.concat(rows, ignore_index=True)
