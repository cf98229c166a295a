"""The stratified analysis of a profile (the paper's Tables 1-3), of its SFT base or of any run.

:func:`run_stratified` loads the cached data, semantic IDs, ranker and policy, builds the
per-sample candidate table of :mod:`adagrpo_core.eval.strata` and its tables;
:func:`explore_stratum` shows a few samples of one (difficulty, discriminability) cell.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..common.checks import check_int
from ..eval.strata import (StrataConfig, add_strata, candidate_table, influence_regression, influence_table)
from ..model.decoding import beam_search
from ..model.policy import load_policy
from ..pipeline import get_ranker, get_sft, get_sids, get_world
from ..reward.reward_model import RewardModel
from ..common.runtime import torch_threads


def load_context(profile, cache_dir=None, checkpoint: str = "best", run_dir=None, progress: bool = True):
    """(world, sids, policy, reward) of a profile: the cached world / dataset and ranker, and the
    policy of ``run_dir`` (any run folder holding best.pt / final.pt; None = the SFT base)."""
    if checkpoint not in ("best", "final"):
        raise ValueError(f"checkpoint must be 'best' or 'final', got checkpoint={checkpoint!r}")
    if run_dir is not None and not (Path(run_dir) / f"{checkpoint}.pt").is_file():
        raise ValueError(f"run_dir={str(run_dir)!r} holds no {checkpoint}.pt (a finished run folder is needed)")
    world = get_world(profile.world, cache_dir)
    sids = get_sids(world, profile.sid, cache_dir)
    folder = run_dir or get_sft(world, sids, profile.policy, profile.sft, cache_dir, progress=progress)
    policy = load_policy(Path(folder) / f"{checkpoint}.pt", sids)
    reward = RewardModel(get_ranker(world, profile.ranker, cache_dir, progress=progress), sids, profile.reward)
    return world, sids, policy, reward


def run_stratified(profile, cfg: StrataConfig = StrataConfig(), cache_dir=None, split: str = "test",
                   checkpoint: str = "best", run_dir=None, progress: bool = True):
    """The whole analysis for a profile, of the SFT base (``run_dir=None``) or of any run folder.

    Returns (per-sample frame with strata, {table name: DataFrame}); the tables are
    ``table1_aggregate``, ``table2_difficulty``, ``table2_llm_rank``,
    ``table3_difficulty_x_discriminability`` and ``regression`` (empty when too few samples).
    Truth-order columns appear when the data has a true utility (the simulated world)."""
    world, sids, policy, reward = load_context(profile, cache_dir, checkpoint, run_dir, progress)
    examples = world.examples(split, profile.policy.max_history)
    truth = world if hasattr(world, "true_utility") else None
    with torch_threads(1):       # the same numbers whatever the caller's thread count
        df = add_strata(candidate_table(policy, reward, sids, examples, cfg, world=truth, progress=progress), cfg)
    tables = {"table1_aggregate": influence_table(df, None, cfg),
              "table2_difficulty": influence_table(df, ["difficulty_q"], cfg),
              "table2_llm_rank": influence_table(df, ["rank_stratum"], cfg),
              "table3_difficulty_x_discriminability": influence_table(df, ["difficulty_q", "discrim_q"], cfg)}
    try:
        tables["regression"] = influence_regression(df)
    except ValueError:
        tables["regression"] = pd.DataFrame()
    return df, tables


@torch.no_grad()
def explore_stratum(profile, df: pd.DataFrame, difficulty_q: int, discrim_q: int, n_examples: int = 3,
                    cfg: StrataConfig = StrataConfig(), cache_dir=None, split: str = "test",
                    checkpoint: str = "best", run_dir=None, seed: int = 0) -> list[dict]:
    """A few samples of one (difficulty, discriminability) cell, to read what the strata mean.

    ``difficulty_q`` / ``discrim_q``: 1-based quantile bins (1 = easiest / least discriminable).
    Returns one dict per sample: ``history`` (item ids with their category), ``target`` and
    ``candidates``, a DataFrame of the top-N candidates in LLM order with their policy
    log-likelihood, ranker score, RM-order rank, the true click probability (simulated world)
    and the target marked."""
    check_int("difficulty_q", difficulty_q, lo=1, hi=cfg.difficulty_bins)
    check_int("discrim_q", discrim_q, lo=1, hi=cfg.discrim_bins)
    check_int("n_examples", n_examples, lo=1)
    pick_d = df["difficulty_q"].cat.categories[difficulty_q - 1]
    cats = [c for c in df["discrim_q"].cat.categories if c != "undefined"]
    if discrim_q > len(cats):
        raise ValueError(f"discrim_q must be <= {len(cats)} (defined bins), got discrim_q={discrim_q}")
    cell = np.flatnonzero(((df["difficulty_q"] == pick_d) & (df["discrim_q"] == cats[discrim_q - 1])).to_numpy())
    if len(cell) == 0:
        return []
    chosen = np.sort(np.random.default_rng(seed).choice(cell, min(n_examples, len(cell)), replace=False))
    world, sids, policy, reward = load_context(profile, cache_dir, checkpoint, run_dir, progress=False)
    ex = world.examples(split, profile.policy.max_history).subset(chosen)
    hist = torch.as_tensor(ex.history, device=policy.device)
    cache = policy.encode(hist)
    cands = beam_search(policy, None, cfg.top_n, trie=sids.trie.to(policy.device), constrained=True,
                        cache=cache).items                                              # [n, N]
    codes = torch.as_tensor(sids.codes, device=policy.device)[cands.clamp(min=0)]       # [n, N, Lp]
    logp = policy.gather_logprobs(policy.tuple_logits(None, codes, cache), codes).sum(-1).cpu().numpy()
    score = reward.score_items(hist, cands.clamp(min=0)).float().cpu().numpy()
    cands = cands.cpu().numpy()
    truth = (world.click_probability(world.states_for(ex), np.maximum(cands, 0))
             if hasattr(world, "true_utility") else None)
    category = getattr(world, "item_category", None)
    out = []
    for i in range(len(ex)):
        ok = cands[i] >= 0
        items = cands[i][ok]
        rm_rank = np.empty(len(items), dtype=int)
        rm_rank[np.argsort(-score[i][ok], kind="stable")] = np.arange(1, len(items) + 1)
        table = pd.DataFrame({"llm_rank": np.arange(1, len(items) + 1), "rm_rank": rm_rank, "item": items,
                              "policy_logp": logp[i][ok], "ranker_score": score[i][ok]})
        if category is not None:
            table.insert(3, "category", category[items])
        if truth is not None:
            table["true_click_prob"] = truth[i][ok]
        table["is_target"] = items == ex.target[i]
        h = ex.history[i][ex.history[i] >= 0]
        out.append({"sample": int(chosen[i]), "user": int(ex.users[i]), "target": int(ex.target[i]),
                    "history": [f"{j} (c{category[j]})" if category is not None else str(j) for j in h],
                    "candidates": table})
    return out
