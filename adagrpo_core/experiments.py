"""Experiment drivers shared by the CLI and the notebooks.

:func:`main_results` trains every method (nll, mix(lambda), adagrpo, random, inverse, oracle and
the ablations) from one cached SFT base and one cached
ranker, for several seeds, and returns the per-run rows plus a summary with 95% confidence
intervals over seeds. Each run writes into ``out_root/seed<k>/<name>/``; a run whose
``results.csv`` exists is reused, so an interrupted sweep resumes where it stopped.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .configs import Profile
from .eval.evaluate import evaluate_policy, most_popular, run_hits, test_examples
from .eval.stats import holm, mcnemar_exact, mcnemar_p, mean_ci
from .model.policy import load_policy
from .pipeline import get_ranker, get_sft, get_sids, get_world
from .reward.reward_model import RewardModel
from .train.rl import run_method
from .utils import atomic_save_df


@dataclass
class MethodSpec:
    """One row of the comparison: a display name, a gate method and config overrides."""

    name: str
    method: str
    grpo: dict = field(default_factory=dict)   # GRPOConfig overrides (e.g. {"lam": 0.5})
    gate: dict = field(default_factory=dict)   # GateConfig overrides


def default_methods(lams=(0.1, 0.5, 1.0)) -> list[MethodSpec]:
    """nll, mix over lambdas, adagrpo, random (matched per step), inverse, oracle."""
    specs = [MethodSpec("nll", "nll")]
    specs += [MethodSpec(f"mix({lam:g})", "mix", grpo={"lam": lam}) for lam in lams]
    specs += [MethodSpec("adagrpo", "adagrpo"), MethodSpec("random", "random"),
              MethodSpec("inverse", "inverse"), MethodSpec("oracle", "oracle")]
    return specs


def summarize(rows: pd.DataFrame, metrics=("HR@5", "HR@10", "HR@20", "NDCG@10", "halluc",
                                           "HR@10_constrained", "admission_rate")) -> pd.DataFrame:
    """Mean and 95% t-interval half-width over seeds, per (method, checkpoint)."""
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


def run_dir(out_root, seed: int, name: str) -> Path:
    """The folder of one run: ``out_root/seed<k>/<name>/``."""
    return Path(out_root) / f"seed{seed}" / name


# per-step metric columns written before they took TRL's names
_OLD_STEP_COLUMNS = {"reward_mean": "reward", "zero_std_share": "frac_reward_zero_std",
                     "clip_frac": "clip_ratio/region_mean"}


def read_steps(out_root, seeds, names) -> pd.DataFrame:
    """Every run's per-step metrics (``steps.csv``) with ``method`` and ``seed`` columns; runs
    that do not exist are skipped. Columns of older runs are renamed to the current names."""
    logs = [pd.read_csv(run_dir(out_root, s, n) / "steps.csv").rename(columns=_OLD_STEP_COLUMNS).assign(method=n, seed=s)
            for s in seeds for n in names if (run_dir(out_root, s, n) / "steps.csv").exists()]
    return pd.concat(logs, ignore_index=True) if logs else pd.DataFrame(columns=["method", "seed", "step"])


def main_results(profile: Profile, methods: list[MethodSpec] | None = None, seeds=(0, 1, 2),
                 out_root="runs/main", cache_dir=None, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and evaluate every method for every seed of a profile. Returns (rows, summary)."""
    methods = methods or default_methods()
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    if any(m.method == "random" for m in methods) and "adagrpo" not in [m.method for m in methods]:
        raise ValueError("the random control is matched to an adagrpo run: include method 'adagrpo'")
    world = get_world(profile.world, cache_dir, progress)
    sids = get_sids(world, profile.sid, cache_dir)
    sft_dir = get_sft(world, sids, profile.policy, profile.sft, cache_dir, progress=progress)
    ranker = get_ranker(world, profile.ranker, cache_dir, progress=progress)
    reward = RewardModel(ranker, sids, profile.reward)

    def oracle_utility(batch, items):
        return world.true_utility(world.states_for(batch), items)

    # adagrpo before random, so the random control can copy its admission rates
    order = sorted(methods, key=lambda m: {"adagrpo": 0, "random": 2}.get(m.method, 1))
    all_rows = []
    out_root = Path(out_root)
    for seed in seeds:
        ada_rates = None
        for spec in order:
            out = run_dir(out_root, seed, spec.name)
            res_path = out / "results.csv"
            gcfg = replace(profile.gate, method=spec.method, **spec.gate)
            pcfg = replace(profile.grpo, **spec.grpo)
            tcfg = replace(profile.rl, seed=seed)
            if spec.method == "random":
                if gcfg.random_rate_mode == "mean" and gcfg.random_rate is None:
                    gcfg = replace(gcfg, random_rate=float(np.mean(ada_rates)))
            if res_path.exists():
                rows = pd.read_csv(res_path)
            else:
                rows = run_method(world, sids, sft_dir / "best.pt", reward, pcfg, gcfg, tcfg, out,
                                  reference_rates=ada_rates if spec.method == "random" else None,
                                  true_utility=oracle_utility, name=spec.name, progress=progress)
            if spec.method == "adagrpo":
                ada_rates = pd.read_csv(out / "steps.csv")["admission_rate"].to_numpy()
            all_rows.append(rows)
    rows = pd.concat(all_rows, ignore_index=True)
    rank = {n: i for i, n in enumerate(names)}
    rows = rows.sort_values(["method", "checkpoint", "seed"], key=lambda c: c.map(rank) if c.name == "method" else c,
                            kind="stable").reset_index(drop=True)
    summary = summarize(rows)
    atomic_save_df(rows, out_root / "rows.csv", index=False)
    atomic_save_df(summary, out_root / "summary.csv", index=False)
    return rows, summary


def paired_tests(profile: Profile, pairs, seeds=(0, 1, 2), out_root="runs/main",
                 kind: str = "best", k: int = 10, cache_dir=None) -> pd.DataFrame:
    """Exact McNemar tests of per-sample hits between two methods trained with the same seed
    (same SFT base, same test samples). ``pairs``: [(method, reference), ...] run names under
    ``out_root/seed<k>/``. One row per (pair, seed), plus a row per pair that pools the
    discordant pairs over seeds (a stratified McNemar; the seeds share test users, so read the
    pooled p-value as indicative)."""
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    out_root, rows = Path(out_root), []
    for method, ref in pairs:
        pooled = [0, 0]
        for seed in seeds:
            tcfg = replace(profile.rl, seed=seed)
            a = run_hits(run_dir(out_root, seed, method), world, sids, tcfg, kind, k)
            b = run_hits(run_dir(out_root, seed, ref), world, sids, tcfg, kind, k)
            n_ref_only, n_method_only, p = mcnemar_exact(b, a)
            pooled[0] += n_ref_only
            pooled[1] += n_method_only
            rows.append({"method": method, "reference": ref, "seed": str(seed), "n": len(a),
                         f"HR@{k}_method": a.mean(), f"HR@{k}_reference": b.mean(), "diff": a.mean() - b.mean(),
                         "method_only_hits": n_method_only, "reference_only_hits": n_ref_only, "mcnemar_p": p})
        p = mcnemar_p(*pooled)
        sub = [r for r in rows if r["method"] == method and r["reference"] == ref]
        rows.append({"method": method, "reference": ref, "seed": "pooled", "n": sum(r["n"] for r in sub),
                     f"HR@{k}_method": np.mean([r[f"HR@{k}_method"] for r in sub]),
                     f"HR@{k}_reference": np.mean([r[f"HR@{k}_reference"] for r in sub]),
                     "diff": np.mean([r["diff"] for r in sub]), "method_only_hits": pooled[1],
                     "reference_only_hits": pooled[0], "mcnemar_p": p})
    return pd.DataFrame(rows)


def sft_reference(profile: Profile, cache_dir=None, test_samples: int = 0, seed: int = 0,
                  beam_width: int = 20) -> pd.DataFrame:
    """Test metrics of the SFT base (best and final checkpoints) and the most-popular baseline."""
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    sft_dir = get_sft(world, sids, profile.policy, profile.sft, cache_dir)
    test = test_examples(world, profile.policy.max_history, test_samples, seed)
    rows = []
    for kind in ("best", "final"):
        m = evaluate_policy(load_policy(sft_dir / f"{kind}.pt", sids), sids, test, beam_width)
        rows.append({"method": f"sft-{kind}", **m})
    rows.append({"method": "most-popular", **most_popular(world, test)})
    return pd.DataFrame(rows)


def paired_tests_both(profile: Profile, pairs, seeds, out_root, k: int = 10,
                      cache_dir=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`paired_tests` at the best and the final checkpoint (a ``checkpoint`` column), and
    the pooled rows with Holm-adjusted p-values over all of them (``p_holm``)."""
    tests = pd.concat([paired_tests(profile, pairs, seeds=seeds, out_root=out_root, kind=kind, k=k,
                                    cache_dir=cache_dir).assign(checkpoint=kind) for kind in ("best", "final")],
                      ignore_index=True)
    pooled = tests[tests.seed == "pooled"].copy()
    pooled["p_holm"] = holm(pooled.mcnemar_p.to_numpy())
    return tests, pooled
