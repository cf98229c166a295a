"""Experiment drivers shared by the CLI, the notebooks and the benchmarks.

:func:`main_results` trains every method of DESIGN 3 from one cached SFT base and one cached
ranker, for several seeds, and returns the per-run rows plus a summary with 95% confidence
intervals over seeds. Each run writes into ``out_root/seed<k>/<name>/``; a run whose
``results.csv`` exists is reused, so an interrupted sweep resumes where it stopped.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .gate import GateConfig
from .grpo import GRPOConfig
from .pipeline import Profile, get_ranker, get_sft, get_sids, get_world
from .trainer import TrainConfig, hits_path, make_reward, run_method, test_examples
from .utils import atomic_save_df, atomic_save_npy


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


def _mean_ci(x: np.ndarray, level: float = 0.95):
    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return m, float(half)


def summarize(rows: pd.DataFrame, metrics=("HR@5", "HR@10", "HR@20", "NDCG@10", "halluc",
                                           "HR@10_constrained", "admission_rate")) -> pd.DataFrame:
    """Mean and 95% t-interval half-width over seeds, per (method, checkpoint)."""
    out = []
    for (name, ckpt), g in rows.groupby(["method", "checkpoint"], sort=False):
        r = {"method": name, "checkpoint": ckpt, "seeds": len(g)}
        for m in metrics:
            r[m], r[m + "_ci"] = _mean_ci(g[m].to_numpy())
        out.append(r)
    return pd.DataFrame(out)


def main_results(profile: Profile, ranker_cfg, grpo: GRPOConfig, gate: GateConfig, train: TrainConfig,
                 methods: list[MethodSpec] | None = None, seeds=(0, 1, 2), out_root="runs/main",
                 cache_dir=None, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and evaluate every method for every seed. Returns (rows, summary)."""
    methods = methods or default_methods()
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    if any(m.method == "random" for m in methods) and "adagrpo" not in [m.method for m in methods]:
        raise ValueError("the random control is matched to an adagrpo run: include method 'adagrpo'")
    world = get_world(profile.world, cache_dir, progress)
    sids = get_sids(world, profile.sid, cache_dir)
    sft_dir = get_sft(world, sids, profile.policy, profile.sft, cache_dir, progress=progress)
    ranker = get_ranker(world, ranker_cfg, cache_dir, progress=progress)
    reward = make_reward(ranker, sids, train)

    def oracle_utility(batch, items):
        return world.true_utility(world.states_for(batch), items)

    # adagrpo before random, so the random control can copy its admission rates
    order = sorted(methods, key=lambda m: {"adagrpo": 0, "random": 2}.get(m.method, 1))
    all_rows = []
    out_root = Path(out_root)
    for seed in seeds:
        ada_rates = None
        for spec in order:
            out = out_root / f"seed{seed}" / spec.name
            res_path = out / "results.csv"
            gcfg = replace(gate, method=spec.method, **spec.gate)
            pcfg = replace(grpo, **spec.grpo)
            tcfg = replace(train, seed=seed)
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


def run_hits(run_dir, data, sids, cfg: TrainConfig, kind: str = "best", k: int = 10,
             constrained: bool = False) -> np.ndarray:
    """Per-test-sample hit@k of one run's checkpoint (``best`` or ``final``), in the order of
    :func:`~adagrpo_core.trainer.test_examples`. Unconstrained beam search by default, as the
    main table reports. Read from the file evaluate_checkpoints wrote (hits@10), else computed
    and cached next to the checkpoint (:func:`~adagrpo_core.trainer.hits_path`)."""
    from .evaluate import ranked_items
    from .sft import load_policy
    if kind not in ("best", "final"):
        raise ValueError(f"kind must be 'best' or 'final', got kind={kind!r}")
    path = hits_path(run_dir, kind, k, constrained)
    if path.exists():        # written by evaluate_checkpoints (k = 10) or by an earlier call
        return np.load(path)
    model = load_policy(Path(run_dir) / f"{kind}.pt", sids, cfg.device)
    test = test_examples(data, model.cfg.max_history, cfg)
    ranked = ranked_items(model, sids, test, max(cfg.eval_beam_width, k), k, constrained)
    hits = (ranked[:, :k] == test.target[:, None]).any(1)
    atomic_save_npy(path, hits)
    return hits


def paired_tests(profile: Profile, train: TrainConfig, pairs, seeds=(0, 1, 2), out_root="runs/main",
                 kind: str = "best", k: int = 10, cache_dir=None) -> pd.DataFrame:
    """Exact McNemar tests of per-sample hits between two methods trained with the same seed
    (same SFT base, same test samples). ``pairs``: [(method, reference), ...] run names under
    ``out_root/seed<k>/``. One row per (pair, seed), plus a row per pair that pools the
    discordant pairs over seeds (a stratified McNemar; the seeds share test users, so read the
    pooled p-value as indicative)."""
    from .analysis import mcnemar_exact, mcnemar_p
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    out_root, rows = Path(out_root), []
    for method, ref in pairs:
        pooled = [0, 0]
        for seed in seeds:
            tcfg = replace(train, seed=seed)
            a = run_hits(out_root / f"seed{seed}" / method, world, sids, tcfg, kind, k)
            b = run_hits(out_root / f"seed{seed}" / ref, world, sids, tcfg, kind, k)
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
    from .evaluate import evaluate_policy, most_popular
    from .sft import load_policy
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    sft_dir = get_sft(world, sids, profile.policy, profile.sft, cache_dir)
    test = world.examples("test", profile.policy.max_history)
    if test_samples and len(test) > test_samples:
        test = test.subset(np.sort(np.random.default_rng(seed + 7).choice(len(test), test_samples, replace=False)))
    rows = []
    for kind in ("best", "final"):
        m = evaluate_policy(load_policy(sft_dir / f"{kind}.pt", sids), sids, test, beam_width)
        rows.append({"method": f"sft-{kind}", **m})
    rows.append({"method": "most-popular", **most_popular(world, test)})
    return pd.DataFrame(rows)
