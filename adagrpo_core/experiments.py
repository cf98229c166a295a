"""Experiment drivers shared by the CLI and the notebooks.

:func:`main_results` trains every method (nll, mix(lambda), adagrpo, random, inverse, oracle and
the ablations) from one cached SFT base and one cached ranker, for several seeds, through the run
executor of :mod:`adagrpo_core.runs` (serial, a process pool or a Dask cluster), and returns the
per-run rows plus a summary with 95% t-intervals over seeds. Finished runs are reused when their
full config matches, so an interrupted sweep resumes where it stopped.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .configs import Profile
from .eval.ab_test import (
    ceiling_slates,
    logging_ctr_mc,
    most_popular_slates,
    ranker_slates,
    slate_click_stats,
)
from .eval.evaluate import (
    SLATE_K,
    ctr_path,
    evaluate_policy,
    most_popular,
    ranked_items,
    run_hits,
    start_ranked,
    test_examples,
)
from .eval.metrics import ranking_metrics
from .eval.stats import holm, mcnemar_exact, mcnemar_p, mean_ci, paired_bootstrap_ci
from .model.policy import load_policy
from .model.sasrec import evaluate_sasrec
from .pipeline import get_ranker, get_sasrec, get_sft, get_sids, get_world
from .reward.reliability import reliability_report
from .runs import MethodSpec, execute, plan_runs
from .runtime import torch_threads
from .storage import load_checkpoint

__all__ = ["BASELINES", "MethodSpec", "control_methods", "default_methods", "frontier_methods", "gain_headline",
           "gains_over_base", "main_results", "paired_tests", "paired_tests_both", "read_steps", "sft_reference", "summarize"]


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
    """Mean and 95% t-interval half-width over seeds, per (method, checkpoint), of the metrics present."""
    metrics = [m for m in metrics if m in rows]
    out = []
    for (name, ckpt), g in rows.groupby(["method", "checkpoint"], sort=False):
        r = {"method": name, "checkpoint": ckpt, "seeds": len(g)}
        for m in metrics:
            r[m], r[m + "_ci"] = mean_ci(g[m].to_numpy())
        out.append(r)
    return pd.DataFrame(out)


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


def main_results(profile: Profile, methods: list[MethodSpec] | None = None, seeds=(0, 1, 2),
                 out_root="runs/main", cache_dir=None, progress: bool = True, jobs: int = 1,
                 scheduler: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and evaluate every method for every seed of a profile (``jobs`` processes, or a Dask
    ``scheduler``). Returns (rows with a ``run_dir`` column, summary)."""
    methods = methods or default_methods(simulated=profile.is_simulated)
    specs = plan_runs(profile, methods, seeds, out_root)       # validates before any work
    rows = execute(specs, profile, cache_dir, jobs=jobs, scheduler=scheduler, progress=progress)
    rank = {m.name: i for i, m in enumerate(methods)}
    rows = rows.sort_values(["method", "checkpoint", "seed"], key=lambda c: c.map(rank) if c.name == "method" else c,
                            kind="stable").reset_index(drop=True)
    return rows, summarize(rows)


def paired_tests(profile: Profile, rows: pd.DataFrame, pairs, kind: str = "best", k: int = 10,
                 cache_dir=None) -> pd.DataFrame:
    """Exact McNemar tests of per-sample hits between two methods trained with the same seed
    (same SFT base, same test samples). ``rows``: a main_results frame (its ``run_dir`` column
    finds the runs); ``pairs``: [(method, reference), ...]. One row per (pair, seed), plus a row
    per pair that pools the discordant pairs over seeds (a stratified McNemar; the seeds share
    test users, so read the pooled p-value as indicative). On the simulated world also the
    simulated-CTR difference with a paired bootstrap CI over users (per seed, and pooled over
    seeds); ``diff_seed_ci`` and ``sim_ctr_seed_ci`` are the t-interval half-widths over seeds,
    which also carry the variation between training seeds."""
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    where = rows.drop_duplicates(["method", "seed"]).set_index(["method", "seed"])["run_dir"]
    seeds = sorted(rows.seed.unique())
    out = []
    for method, ref in pairs:
        pooled, sub, ctr_diffs = [0, 0], [], []
        for seed in seeds:
            tcfg = replace(profile.rl, seed=int(seed))
            a = run_hits(where[(method, seed)], world, sids, tcfg, kind, k)
            b = run_hits(where[(ref, seed)], world, sids, tcfg, kind, k)
            n_ref_only, n_method_only, p = mcnemar_exact(b, a)
            pooled[0] += n_ref_only
            pooled[1] += n_method_only
            row = {"method": method, "reference": ref, "seed": str(seed), "n": len(a),
                   f"HR@{k}_method": a.mean(), f"HR@{k}_reference": b.mean(), "diff": a.mean() - b.mean(),
                   "method_only_hits": n_method_only, "reference_only_hits": n_ref_only, "mcnemar_p": p}
            ca, cb = ctr_path(where[(method, seed)], kind), ctr_path(where[(ref, seed)], kind)
            if ca.exists() and cb.exists():        # the simulated A/B test: paired bootstrap over users
                d = np.load(ca) - np.load(cb)
                ctr_diffs.append(d)
                row["sim_ctr_diff"], row["sim_ctr_ci_low"], row["sim_ctr_ci_high"] = \
                    paired_bootstrap_ci(d, np.zeros_like(d), seed=int(seed))
            sub.append(row)
        out += sub
        pooled_row = {"method": method, "reference": ref, "seed": "pooled", "n": sum(r["n"] for r in sub),
                      f"HR@{k}_method": np.mean([r[f"HR@{k}_method"] for r in sub]),
                      f"HR@{k}_reference": np.mean([r[f"HR@{k}_reference"] for r in sub]),
                      "diff": np.mean([r["diff"] for r in sub]), "method_only_hits": pooled[1],
                      "reference_only_hits": pooled[0], "mcnemar_p": mcnemar_p(*pooled)}
        pooled_row["diff_seed_ci"] = mean_ci([r["diff"] for r in sub])[1]      # t-interval over seeds
        if len(ctr_diffs) == len(seeds):
            d = np.concatenate(ctr_diffs)
            pooled_row["sim_ctr_diff"], pooled_row["sim_ctr_ci_low"], pooled_row["sim_ctr_ci_high"] = \
                paired_bootstrap_ci(d, np.zeros_like(d))
            pooled_row["sim_ctr_seed_ci"] = mean_ci([x.mean() for x in ctr_diffs])[1]
        out.append(pooled_row)
    return pd.DataFrame(out)


def gains_over_base(profile: Profile, rows: pd.DataFrame, cache_dir=None, kind: str = "best", k: int = 10,
                    reference: str = "nll") -> pd.DataFrame:
    """Each method's test HR@k and NDCG@10 minus the SFT base every run starts from (its step 0;
    the same test users), paired per seed: mean and 95% t-interval over seeds, and the exact
    McNemar test of per-user hits against the base, pooled over seeds (Holm over the methods).
    The same against ``reference`` (continued NLL) in the ``*_vs_<reference>`` columns. The first
    row is the base itself. Unconstrained beam search, as the main table reports."""
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    sft = get_sft(world, sids, profile.policy, profile.sft, cache_dir, progress=False) / "best.pt"
    sub = rows[rows.checkpoint == kind]
    where = sub.set_index(["method", "seed"])["run_dir"]
    seeds = sorted(int(s) for s in sub.seed.unique())
    base, base_ndcg = {}, {}
    with torch_threads(1):
        for s in seeds:
            ranked, target = start_ranked(world, sids, sft, replace(profile.rl, seed=s), k)
            base[s] = (ranked[:, :k] == target[:, None]).any(1)
            base_ndcg[s] = ranking_metrics(ranked, target, (10,))["NDCG@10"] if k >= 10 else float("nan")
    hits = {(m, s): run_hits(where[(m, s)], world, sids, replace(profile.rl, seed=s), kind, k)
            for m in dict.fromkeys(sub.method) for s in seeds}
    ndcg = sub.set_index(["method", "seed"])["NDCG@10"]

    def versus(m, ref_hits, ref_ndcg):
        d = [hits[(m, s)].mean() - ref_hits[s].mean() for s in seeds]
        dn = [ndcg[(m, s)] - ref_ndcg[s] for s in seeds]
        ref_only = sum(int((ref_hits[s] & ~hits[(m, s)]).sum()) for s in seeds)
        m_only = sum(int((hits[(m, s)] & ~ref_hits[s]).sum()) for s in seeds)
        return (*mean_ci(d), *mean_ci(dn), m_only, ref_only, mcnemar_p(ref_only, m_only))

    out = [{"method": "SFT base", "seeds": len(seeds), f"HR@{k}": np.mean([b.mean() for b in base.values()]),
            "NDCG@10": np.mean(list(base_ndcg.values()))}]
    ref_hits = {s: hits[(reference, s)] for s in seeds} if reference in set(sub.method) else None
    for m in dict.fromkeys(sub.method):
        r = {"method": m, "seeds": len(seeds), f"HR@{k}": np.mean([hits[(m, s)].mean() for s in seeds]),
             "NDCG@10": np.mean([ndcg[(m, s)] for s in seeds])}
        cols = (f"gain_HR@{k}", f"gain_HR@{k}_ci", "gain_NDCG@10", "gain_NDCG@10_ci", "method_only_hits",
                "base_only_hits", "p_vs_base")
        r.update(zip(cols, versus(m, base, base_ndcg)))
        if ref_hits is not None and m != reference:
            ref_n = {s: ndcg[(reference, s)] for s in seeds}
            vals = versus(m, ref_hits, ref_n)
            r.update({f"diff_HR@{k}_vs_{reference}": vals[0], f"diff_HR@{k}_vs_{reference}_ci": vals[1],
                      f"p_vs_{reference}": vals[6]})
        out.append(r)
    table = pd.DataFrame(out)
    for col in ("p_vs_base", f"p_vs_{reference}"):
        if col in table:
            ok = table[col].notna()
            table.loc[ok, col.replace("p_", "holm_", 1)] = holm(table.loc[ok, col].to_numpy())
    return table


def gain_headline(gains: pd.DataFrame, rows: pd.DataFrame, kind: str = "best") -> pd.DataFrame:
    """The headline rows of :func:`gains_over_base`: the SFT base, continued NLL, the best fixed
    mixture (highest mean validation HR@10 of the ``mix(...)`` runs; never chosen on test),
    AdaGRPO and random gating at AdaGRPO's rate, each with a ``row`` label."""
    sub = rows[rows.checkpoint == kind]
    mixes = sub[sub.method.str.startswith("mix(")]
    best_mix = mixes.groupby("method")["val_HR@10"].mean().idxmax() if not mixes.empty else None
    labels = {"SFT base": "SFT base (step 0)", "nll": "continued NLL",
              best_mix: "best mixture (on validation)", "adagrpo": "AdaGRPO", "random": "random at AdaGRPO's rate"}
    head = gains[gains.method.isin([m for m in labels if m is not None])].copy()
    head.insert(0, "row", head.method.map(labels))
    return head.reset_index(drop=True)


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


def paired_tests_both(profile: Profile, rows: pd.DataFrame, pairs, k: int = 10,
                      cache_dir=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`paired_tests` at the best and the final checkpoint (a ``checkpoint`` column), and
    the pooled rows with Holm-adjusted p-values over all of them (``p_holm``)."""
    tests = pd.concat([paired_tests(profile, rows, pairs, kind=kind, k=k, cache_dir=cache_dir).assign(checkpoint=kind)
                       for kind in ("best", "final")],
                      ignore_index=True)
    pooled = tests[tests.seed == "pooled"].copy()
    pooled["p_holm"] = holm(pooled.mcnemar_p.to_numpy())
    return tests, pooled


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


def gap_to_best_mixture(rows: pd.DataFrame, metrics=("sim_ctr", "HR@10"), checkpoint: str = "best",
                        method: str = "adagrpo") -> pd.DataFrame:
    """Per reward: ``method`` minus the best fixed mixture, paired per seed (mean, 95% t-interval).
    The best mixture is the lambda with the highest mean validation HR@10 (never chosen on test)."""
    out = []
    sub = rows[rows.checkpoint == checkpoint]
    for (reward, noise), g in sub.groupby(["reward", "noise"], sort=False):
        mixes = g[g.method.str.startswith("mix(")]
        if mixes.empty or method not in set(g.method):
            continue
        best = mixes.groupby("method")["val_HR@10"].mean().idxmax()
        for m in metrics:
            if m not in g:
                continue
            piv = g.pivot_table(index="seed", columns="method", values=m)
            d = (piv[method] - piv[best]).dropna()
            gap, ci = mean_ci(d.to_numpy())
            out.append({"reward": reward, "noise": noise, "metric": m, "best_mixture": best,
                        "method": piv[method].mean(), "mixture": piv[best].mean(), "gap": gap, "gap_ci": ci,
                        "seeds": len(d)})
    return pd.DataFrame(out)
