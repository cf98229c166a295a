"""Experiment drivers shared by the CLI and the notebooks.

:func:`main_results` trains every method (nll, mix(lambda), adagrpo, random, inverse, oracle and
the ablations) from one cached SFT base and one cached ranker, for several seeds, through the run
executor of :mod:`adagrpo_core.runs` (serial, a process pool or a Dask cluster), and returns the
per-run rows plus a summary with 95% t-intervals over seeds. Finished runs are reused when their
full config matches, so an interrupted sweep resumes where it stopped. With ``answer`` (a
``suite.answer_points`` table) the methods listed there also run at the suite's ``answer_seeds``,
so a frame can hold more seeds for some methods than for others; the comparison tables
(:mod:`adagrpo_core.suite.comparisons`, re-exported here) pair each method with its reference on the
seeds both have and report seed-level statistics.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .answers import with_answer_seeds
from .comparisons import (gain_headline, gains_over_base, gap_to_best_mixture, paired_tests, paired_tests_both,
                          with_provenance)
from ..configs import Profile
from ..eval.ab_test import (
    ceiling_slates,
    logging_ctr_mc,
    most_popular_slates,
    ranker_slates,
    slate_click_stats,
)
from ..eval.evaluate import SLATE_K, evaluate_policy, most_popular, ranked_items, test_examples
from ..eval.stats import mean_ci
from ..model.policy import load_policy
from ..model.sasrec import evaluate_sasrec
from ..pipeline import get_ranker, get_sasrec, get_sft, get_sids, get_world
from ..reward.reliability import reliability_report
from ..runs import MethodSpec, RunSpec, plan_runs
from ..execution import execute
from ..common.runtime import torch_threads
from ..common.storage import load_checkpoint

__all__ = ["BASELINES", "MethodSpec", "control_methods", "default_methods", "frontier_methods", "gain_headline",
           "gains_over_base", "gap_to_best_mixture", "main_results", "paired_tests", "paired_tests_both", "read_steps",
           "sft_reference", "summarize"]


def default_methods(lams=(0.1, 0.5, 1.0), simulated: bool = True) -> list[MethodSpec]:
    """nll, mix over lambdas, adagrpo, random (matched per step), inverse, then oracle on the
    simulated world. On real data (no truth, so no oracle; notebook 04 and 07 are not run there,
    so notebook 03 carries their controls): random at AdaGRPO's mean rate, the two
    single-diagnostic gates, pure GRPO, and the exposure gate (rl/gate.py; train clicks as the
    exposure) beside random at its rate."""
    specs = [MethodSpec("nll", "nll")]
    specs += [MethodSpec(f"mix({lam:g})", "mix", grpo={"lam": lam}) for lam in lams]
    specs += [MethodSpec("adagrpo", "adagrpo"), MethodSpec("random", "random")]
    if simulated:
        return specs + [MethodSpec("inverse", "inverse"), MethodSpec("oracle", "oracle")]
    return specs + [MethodSpec("random(mean)", "random", gate={"random_rate_mode": "mean"}),
                    MethodSpec("inverse", "inverse"), MethodSpec("difficulty-only", "difficulty"),
                    MethodSpec("discriminability-only", "discriminability"), MethodSpec("grpo", "grpo"),
                    MethodSpec("exposure", "exposure"), MethodSpec("random[exposure]", "random", match="exposure")]


def summarize(rows: pd.DataFrame, metrics=("HR@5", "HR@10", "HR@20", "NDCG@10", "halluc", "HR@10_constrained",
                                           "admission_rate", "sim_ctr", "dwell", "coverage", "tail_share")) -> pd.DataFrame:
    """Mean and 95% t-interval half-width over seeds, per (method, checkpoint), of the metrics present,
    with the rows' provenance (``comparisons.with_provenance``)."""
    metrics = [m for m in metrics if m in rows]
    out = []
    for (name, ckpt), g in rows.groupby(["method", "checkpoint"], sort=False):
        r = {"method": name, "checkpoint": ckpt, "seeds": len(g)}
        for m in metrics:
            r[m], r[m + "_ci"] = mean_ci(g[m].to_numpy())
        out.append(r)
    return with_provenance(pd.DataFrame(out), rows)


def control_methods(oracle_thresholds=(0.5, 0.8, 0.9), default_threshold: float = 0.5,
                    simulated: bool = True) -> list[MethodSpec]:
    """Notebook 04's controls: adagrpo, random per step and by mean, inverse, the two
    single-diagnostic gates, oracle at each threshold and pure GRPO."""
    specs = [MethodSpec("adagrpo", "adagrpo"), MethodSpec("random", "random"),
             MethodSpec("random(mean)", "random", gate={"random_rate_mode": "mean"}),
             MethodSpec("inverse", "inverse"), MethodSpec("difficulty-only", "difficulty"),
             MethodSpec("discriminability-only", "discriminability")]
    specs += [MethodSpec("oracle" if t == default_threshold else f"oracle({t:g})", "oracle",
                         gate={"oracle_threshold": t}) for t in (oracle_thresholds if simulated else ())]
    return specs + [MethodSpec("grpo", "grpo")]


def frontier_methods(lams=(0.1, 0.25, 0.5, 1.0, 2.0)) -> list[MethodSpec]:
    """Notebook 06's frontier: nll, the fixed mixture at each lambda, and adagrpo."""
    return ([MethodSpec("nll", "nll")] + [MethodSpec(f"mix({lam:g})", "mix", grpo={"lam": lam}) for lam in lams]
            + [MethodSpec("adagrpo", "adagrpo")])


def read_steps(rows: pd.DataFrame) -> pd.DataFrame:
    """The per-step metrics (``steps.csv``) of every run in ``rows`` (a main_results frame), with
    ``method`` and ``seed`` columns."""
    runs = rows.drop_duplicates("run_dir")
    logs = [pd.read_csv(Path(r.run_dir) / "steps.csv").assign(method=r.method, seed=r.seed)
            for r in runs.itertuples() if (Path(r.run_dir) / "steps.csv").exists()]
    return pd.concat(logs, ignore_index=True) if logs else pd.DataFrame(columns=["method", "seed", "step"])


def plan_main_results(profile: Profile, methods: list[MethodSpec] | None = None, seeds=(0, 1, 2),
                      out_root="runs/main", answer: str | None = None) -> list[RunSpec]:
    """The runs :func:`main_results` trains, planned and checked, none trained: every method at
    ``seeds``, and with ``answer`` the answer point's methods also at the suite's ``answer_seeds``;
    a run planned twice appears once."""
    methods = methods or default_methods(simulated=profile.is_simulated)
    groups = with_answer_seeds(profile, methods, seeds, answer) if answer else [(methods, seeds)]
    planned = [s for ms, ss in groups for s in plan_replicates(profile, ms, ss, out_root)]
    return list({s.out_dir: s for s in planned}.values())


def plan_replicates(profile: Profile, methods: list[MethodSpec], seeds, out_root) -> list[RunSpec]:
    """``runs.plan_runs``, with seed s reading replicate s's own reward models where the profile
    asks for it (``suite.reward_replicates``) and the reward is a learned ranker."""
    if not (profile.suite.reward_replicates and profile.reward.source == "ranker"):
        return plan_runs(profile, methods, seeds, out_root)
    return [s for seed in seeds for s in plan_runs(profile, methods, [seed], out_root, reward_seed=seed)]


def main_results(profile: Profile, methods: list[MethodSpec] | None = None, seeds=(0, 1, 2),
                 out_root="runs/main", cache_dir=None, progress: bool = True, jobs: int = 1,
                 scheduler: str | None = None, answer: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and evaluate every method for every seed of a profile (``jobs`` processes, or a Dask
    ``scheduler``). With ``answer`` (a table of ``suite.answer_points``: ``"nb03_headline"``,
    ``"nb07_audit"``) the methods listed there also run at the suite's ``answer_seeds``
    (:func:`~adagrpo_core.suite.answers.with_answer_seeds`), with the same keys and folders as any
    other run of theirs. Returns (rows with a ``run_dir`` column, summary; its ``seeds`` column
    says how many seeds each method has)."""
    methods = methods or default_methods(simulated=profile.is_simulated)
    specs = plan_main_results(profile, methods, seeds, out_root, answer)   # validates before any work
    rows = execute(specs, profile, cache_dir, jobs=jobs, scheduler=scheduler, progress=progress)
    rank = {m.name: i for i, m in enumerate(methods)}
    rows = rows.sort_values(["method", "checkpoint", "seed"], key=lambda c: c.map(rank) if c.name == "method" else c,
                            kind="stable").reset_index(drop=True)
    return rows, summarize(rows)


def most_popular_baseline(profile: Profile, world, test, cache_dir=None) -> dict:
    """The items with the most training clicks, the same list for every user."""
    return most_popular(world, test)


def sasrec_baseline(profile: Profile, world, test, cache_dir=None) -> dict | None:
    """SASRec (item ids, full-softmax cross-entropy; ``profile.sasrec``), full ranking over the
    catalogue, on real datasets only (None on the simulated world, where it is not reported). It
    reads up to ``sasrec.max_len`` history items, so it is scored on the whole test split; ``n``
    says how many users that is."""
    if profile.is_simulated:
        return None
    m = evaluate_sasrec(get_sasrec(world, profile.sasrec, cache_dir, progress=False), world, "test", ks=(5, 10, 20))
    return {k: v for k, v in m.items() if k != "split"}


BASELINES = {"most-popular": most_popular_baseline, "sasrec": sasrec_baseline}
"""The reference recommenders :func:`sft_reference` lists below the SFT policy, in order, by name.
Each is called as ``fn(profile, world, test, cache_dir)`` with the test examples and returns
their ranking metrics (``HR@K`` and ``NDCG@K`` for K in 5, 10, 20, and ``n``), as
:func:`~adagrpo_core.eval.evaluate.most_popular` does, or None where it does not apply."""


def sft_reference(profile: Profile, cache_dir=None, test_samples: int = 0, seed: int = 0,
                  beam_width: int = 20) -> pd.DataFrame:
    """Test metrics of the SFT base (best and final checkpoints) and of every reference in
    :data:`BASELINES` (most popular; SASRec on real datasets)."""
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    sft_dir = get_sft(world, sids, profile.policy, profile.sft, cache_dir)
    test = test_examples(world, profile.policy.max_history, test_samples, seed)
    rows, at_step = [], {}
    with torch_threads(1):
        for kind in ("best", "final"):
            path = sft_dir / f"{kind}.pt"
            step = load_checkpoint(path)["step"]
            if step not in at_step:    # best.pt is often the final step: evaluate those weights once
                at_step[step] = evaluate_policy(load_policy(path, sids), sids, test, beam_width)
            rows.append({"method": f"sft-{kind}", **at_step[step]})
        for name, baseline in BASELINES.items():
            m = baseline(profile, world, test, cache_dir)
            if m is not None:      # None: the baseline does not apply to this data
                rows.append({"method": name, **m})
    return pd.DataFrame(rows)


def ab_reference(profile: Profile, cache_dir=None, logging_samples: int = 20,
                 test_samples: int | None = None) -> tuple[pd.DataFrame, dict]:
    """The simulated A/B test's reference rows on the test users: the logging policy (expected CTR
    by Monte Carlo over ``logging_samples`` slates per user), most popular, the SFT policy (best
    checkpoint, top 10 constrained beams), the ranker's top 10 over the catalogue and the top 10
    by true utility (the ceiling). ``test_samples``: the users (0 = all; None = the profile's RL
    runs' count, drawn as seed 0's). Returns (table, {row name: per-user CTR array})."""
    world = get_world(profile.world, cache_dir)
    if not hasattr(world, "true_utility"):
        raise ValueError("the simulated A/B test needs the simulated world's true utility")
    sids = get_sids(world, profile.sid, cache_dir)
    sft_dir = get_sft(world, sids, profile.policy, profile.sft, cache_dir)
    n = profile.rl.test_samples if test_samples is None else test_samples
    test = test_examples(world, profile.policy.max_history, n, 0)
    states = world.states_for(test)
    with torch_threads(1):
        policy = load_policy(sft_dir / "best.pt", sids)
        slates = {"most-popular": most_popular_slates(world, len(test), SLATE_K),
                  "sft": ranked_items(policy, sids, test, max(profile.rl.eval_beam_width, SLATE_K), SLATE_K, True),
                  "ranker top-10": ranker_slates(get_ranker(world, profile.ranker, cache_dir), test.history,
                                                 world.n_items, SLATE_K),
                  "ceiling (true utility)": ceiling_slates(world, states, SLATE_K)}
    rows, ctr = [], {}
    log_ctr = logging_ctr_mc(world, states, logging_samples, seed=0)
    rows.append({"policy": "logging", "sim_ctr": log_ctr.mean(), "dwell": np.nan, "coverage": np.nan,
                 "tail_share": np.nan, "note": f"Monte Carlo, {logging_samples} slates per user"})
    ctr["logging"] = log_ctr
    for name, s in slates.items():
        ab = slate_click_stats(world, states, s)
        ctr[name] = ab["ctr"]
        rows.append({"policy": name, "sim_ctr": ab["ctr"].mean(), "dwell": float(np.nanmean(ab["dwell"])),
                     "coverage": ab["coverage"], "tail_share": ab["tail_share"], "note": "exact"})
    return pd.DataFrame(rows).assign(users=len(test)), ctr


def world_calibration(profile: Profile, cache_dir=None) -> pd.DataFrame:
    """The world's calibration targets, measured: logged slate CTR, the median test state's best
    item click probability, SFT test HR@10, the ceiling / SFT simulated-CTR ratio and the ranker's
    AUC gap between the most and the least exposed items; one row each, with its target."""
    world = get_world(profile.world, cache_dir)
    imp = world.impressions
    slate_ctr = float(imp.groupby(["user", "step"])["clicked"].max().mean())
    test = test_examples(world, profile.policy.max_history, 0, 0)
    best = world.click_probability(world.states_for(test), np.arange(world.n_items)).max(1)
    sft = sft_reference(profile, cache_dir).set_index("method").loc["sft-best"]
    table, _ = ab_reference(profile, cache_dir, test_samples=0)     # a property of the world: every test user
    t = table.set_index("policy")["sim_ctr"]
    report = reliability_report(world, get_ranker(world, profile.ranker, cache_dir))
    rho = report["truth"].set_index(report["truth"].bucket.astype(str))["spearman"]
    auc = report["auc"]
    auc = auc[(auc.bucket.astype(str) != "all") & auc["auc"].notna()]     # rarest buckets may have no test rows
    gap = float(auc["auc"].iloc[-1] - auc["auc"].iloc[0]) if len(auc) > 1 else float("nan")
    tail = f"bucket {auc.bucket.iloc[0]}" if len(auc) else "none"
    rows = [("logged slate CTR", slate_ctr, "in [0.05, 0.5]", 0.05 <= slate_ctr <= 0.5),
            ("median best-item click probability", float(np.median(best)), "<= 0.6", np.median(best) <= 0.6),
            ("SFT test HR@10 (constrained)", float(sft["HR@10"]), "<= 0.6", sft["HR@10"] <= 0.6),
            ("ceiling / SFT simulated CTR", float(t["ceiling (true utility)"] / t["sft"]), ">= 1.15",
             t["ceiling (true utility)"] / t["sft"] >= 1.15),
            (f"ranker AUC, most exposed - least exposed with data ({tail})", gap, "> 0", gap > 0),
            ("ranker-truth Spearman, most - least exposed bucket", float(rho["4"] - rho["0"]) if {"0", "4"} <= set(rho.index)
             else float("nan"), "> 0", bool(rho.get("4", np.nan) > rho.get("0", np.nan))),
            ("world build seconds", float(world.build_seconds), "< 30", world.build_seconds < 30)]
    return pd.DataFrame(rows, columns=["quantity", "value", "target", "met"])


def reward_label(rc) -> str:
    """A reward's name in tables: its source, with the noise of noisy_truth, a non-zero exposure
    bias and a re-logged ranker's log: ``ranker``, ``truth``, ``noisy_truth(3)``, ``truth(bias=4)``,
    ``ranker(log bias=0.95, share=0.5)``."""
    dials = ([f"{rc.noise:g}"] if rc.source == "noisy_truth" else []) + ([f"bias={rc.bias:g}"] if rc.bias else [])
    dials += [f"log bias={rc.ranker_logging_bias:g}"] if rc.ranker_logging_bias is not None else []
    dials += [f"share={rc.ranker_log_share:g}"] if rc.ranker_log_share < 1 else []
    return f"{rc.source}({', '.join(dials)})" if dials else rc.source


def plan_reward_sources(profile: Profile, rewards: list, methods: list[MethodSpec], seeds,
                        out_root) -> list[tuple[Profile, list[RunSpec]]]:
    """The runs :func:`reward_sources` trains: [(the profile with each reward, its run specs)]."""
    return [(p, plan_main_results(p, methods, seeds, out_root)) for p in (replace(profile, reward=rc) for rc in rewards)]


def reward_sources(profile: Profile, rewards: list, methods: list[MethodSpec], seeds, out_root, cache_dir=None,
                   jobs: int = 1, scheduler: str | None = None) -> pd.DataFrame:
    """The same methods trained with each reward (RewardConfig) in ``rewards``; result rows with
    ``reward`` (source, and noise for noisy_truth) and ``noise`` columns."""
    parts = []
    for rc in rewards:
        rows, _ = main_results(replace(profile, reward=rc), methods=methods, seeds=seeds, out_root=out_root,
                               cache_dir=cache_dir, jobs=jobs, scheduler=scheduler)
        parts.append(rows.assign(reward=reward_label(rc), noise=rc.noise if rc.source == "noisy_truth" else 0.0))
    return pd.concat(parts, ignore_index=True)
