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
from .eval.evaluate import ctr_path, evaluate_policy, most_popular, run_hits, test_examples
from .eval.stats import holm, mcnemar_exact, mcnemar_p, mean_ci, paired_bootstrap_ci
from .model.policy import load_policy
from .pipeline import get_sft, get_sids, get_world
from .runs import MethodSpec, execute, plan_runs
from .utils import torch_threads

__all__ = ["MethodSpec", "control_methods", "default_methods", "frontier_methods", "main_results",
           "paired_tests", "paired_tests_both", "read_steps", "sft_reference", "summarize"]


def default_methods(lams=(0.1, 0.5, 1.0)) -> list[MethodSpec]:
    """nll, mix over lambdas, adagrpo, random (matched per step), inverse, oracle."""
    specs = [MethodSpec("nll", "nll")]
    specs += [MethodSpec(f"mix({lam:g})", "mix", grpo={"lam": lam}) for lam in lams]
    specs += [MethodSpec("adagrpo", "adagrpo"), MethodSpec("random", "random"),
              MethodSpec("inverse", "inverse"), MethodSpec("oracle", "oracle")]
    return specs


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


def control_methods(oracle_thresholds=(0.5, 0.8, 0.9), default_threshold: float = 0.5) -> list[MethodSpec]:
    """Notebook 04's controls: adagrpo, random per step and by mean, inverse, the two
    single-diagnostic gates, oracle at each threshold and pure GRPO."""
    specs = [MethodSpec("adagrpo", "adagrpo"), MethodSpec("random", "random"),
             MethodSpec("random(mean)", "random", gate={"random_rate_mode": "mean"}),
             MethodSpec("inverse", "inverse"), MethodSpec("difficulty-only", "difficulty"),
             MethodSpec("discriminability-only", "discriminability")]
    specs += [MethodSpec("oracle" if t == default_threshold else f"oracle({t:g})", "oracle",
                         gate={"oracle_threshold": t}) for t in oracle_thresholds]
    return specs + [MethodSpec("grpo", "grpo")]


def frontier_methods(lams=(0.1, 0.25, 0.5, 1.0, 2.0)) -> list[MethodSpec]:
    """Notebook 06's frontier: nll, the fixed mixture at each lambda, and adagrpo."""
    return ([MethodSpec("nll", "nll")] + [MethodSpec(f"mix({lam:g})", "mix", grpo={"lam": lam}) for lam in lams]
            + [MethodSpec("adagrpo", "adagrpo")])


# per-step metric columns written before they took TRL's names
_OLD_STEP_COLUMNS = {"reward_mean": "reward", "zero_std_share": "frac_reward_zero_std",
                     "clip_frac": "clip_ratio/region_mean"}


def read_steps(rows: pd.DataFrame) -> pd.DataFrame:
    """The per-step metrics (``steps.csv``) of every run in ``rows`` (a main_results frame), with
    ``method`` and ``seed`` columns. Columns of older runs are renamed to the current names."""
    runs = rows.drop_duplicates("run_dir")
    logs = [pd.read_csv(Path(r.run_dir) / "steps.csv").rename(columns=_OLD_STEP_COLUMNS).assign(method=r.method, seed=r.seed)
            for r in runs.itertuples() if (Path(r.run_dir) / "steps.csv").exists()]
    return pd.concat(logs, ignore_index=True) if logs else pd.DataFrame(columns=["method", "seed", "step"])


def main_results(profile: Profile, methods: list[MethodSpec] | None = None, seeds=(0, 1, 2),
                 out_root="runs/main", cache_dir=None, progress: bool = True, jobs: int = 1,
                 scheduler: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and evaluate every method for every seed of a profile (``jobs`` processes, or a Dask
    ``scheduler``). Returns (rows with a ``run_dir`` column, summary)."""
    methods = methods or default_methods()
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
    test users, so read the pooled p-value as indicative)."""
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
        if len(ctr_diffs) == len(seeds):
            d = np.concatenate(ctr_diffs)
            pooled_row["sim_ctr_diff"], pooled_row["sim_ctr_ci_low"], pooled_row["sim_ctr_ci_high"] = \
                paired_bootstrap_ci(d, np.zeros_like(d))
        out.append(pooled_row)
    return pd.DataFrame(out)


def sft_reference(profile: Profile, cache_dir=None, test_samples: int = 0, seed: int = 0,
                  beam_width: int = 20) -> pd.DataFrame:
    """Test metrics of the SFT base (best and final checkpoints) and the most-popular baseline."""
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    sft_dir = get_sft(world, sids, profile.policy, profile.sft, cache_dir)
    test = test_examples(world, profile.policy.max_history, test_samples, seed)
    rows = []
    with torch_threads(1):
        for kind in ("best", "final"):
            m = evaluate_policy(load_policy(sft_dir / f"{kind}.pt", sids), sids, test, beam_width)
            rows.append({"method": f"sft-{kind}", **m})
    rows.append({"method": "most-popular", **most_popular(world, test)})
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
