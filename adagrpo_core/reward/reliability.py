"""Where the ranker can be trusted: its reliability by item-exposure bucket.

By bucket of train-log exposure (bucket 0 = the rarest items): the ranker's AUC on held-out
impressions, its rank agreement (Spearman) with the true utility over random candidates, and its
pairwise accuracy (ground truth against random / popular negatives) next to the true utility's
own; :func:`reliability_by_bias` repeats the report over exposure-bias strengths.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from ..common.checks import check_int
from ..data.impressions import examined_rows, exposure_buckets, exposure_z, grouped_impressions
from ..data.world import build_world
from ..eval.metrics import auc, rowwise_spearman
from ..eval.stats import simple_ols
from ..common.runtime import torch_threads
from .ranker import Ranker, RankerConfig
from .training import train_ranker


def _has_truth(world) -> bool:
    return hasattr(world, "true_utility") and getattr(world, "click_states", None) is not None


def _auc_table(data, ranker, bucket, counts, n_buckets) -> pd.DataFrame:
    """AUC of the ranker on the test impressions, by the impressed item's bucket.

    Reference columns: ``truth_auc``, the true utility's AUC on the rows whose user state is
    known (every row before the user's last click: the state then is the one before the next
    click); and, when the log has slates (step, position), the same two AUCs on the rows a
    cascade user examined (``*_examined``), where the position effect no longer dominates.
    """
    cfg = ranker.cfg
    hist, items, labels, rows = grouped_impressions(data, "test", cfg.max_history, cfg.group_size)
    s = ranker.score(hist, items)
    valid = items >= 0
    it, y, sc, row = items[valid], labels[valid], s[valid], rows[valid]
    imp = data.impressions
    cols = {"": np.ones(len(it), bool)}
    if {"step", "position"} <= set(imp.columns):
        cols["_examined"] = examined_rows(imp)[row]
    util = known = None
    if _has_truth(data):
        u = imp["user"].to_numpy()[row].astype(np.int64)
        hl = imp["hist_len"].to_numpy()[row].astype(np.int64)
        known = hl < data.seq_lengths[u]
        state = data.click_states[data.seq_offsets[u] + np.minimum(hl, data.seq_lengths[u] - 1)]
        util = data.true_utility(state, it[:, None])[:, 0]
    out = []
    for b in [*range(n_buckets), "all"]:
        m = np.ones(len(it), bool) if b == "all" else bucket[it] == b
        members = np.arange(data.n_items) if b == "all" else np.flatnonzero(bucket == b)
        r = {"bucket": b}
        for suffix, sub in cols.items():
            mm = m & sub
            r[f"auc{suffix}"] = auc(y[mm], sc[mm])
            if util is not None:
                r[f"truth_auc{suffix}"] = auc(y[mm & known], util[mm & known])
            r[f"impressions{suffix}"] = int(mm.sum())
            r[f"clicks{suffix}"] = int(y[mm].sum())
        r.update({"items": int(len(np.unique(it[m]))), "bucket_items": len(members),
                  "min_train_exposure": int(counts[members].min()),
                  "max_train_exposure": int(counts[members].max())})
        out.append(r)
    return pd.DataFrame(out)


def _truth_table(world, ranker, examples, states, bucket, n_buckets, n_candidates, rng) -> pd.DataFrame:
    """Per user: k = n_candidates // n_buckets random items from each bucket (buckets are equal
    sized, so this is uniform sampling made exactly balanced); Spearman(ranker, true utility)."""
    k = max(2, n_candidates // n_buckets)
    U = len(examples)
    cands = []
    for b in range(n_buckets):                                   # loop over buckets, vectorised over users
        members = np.flatnonzero(bucket == b)
        kk = min(k, len(members))
        pick = np.argsort(rng.random((U, len(members))), axis=1)[:, :kk]        # [U, kk]
        cands.append(members[pick])
    kk = min(c.shape[1] for c in cands)
    cands = np.stack([c[:, :kk] for c in cands], axis=1)                         # [U, nb, kk]
    flat = cands.reshape(U, -1)                                                  # [U, nb*kk]
    s = ranker.score(examples.history, flat).reshape(U, n_buckets, kk)
    u = world.true_utility(states, flat).reshape(U, n_buckets, kk)
    rho = rowwise_spearman(s, u)                                                # [U, nb]
    rho_all = rowwise_spearman(s.reshape(U, -1), u.reshape(U, -1))              # [U]
    rows = []
    for b in [*range(n_buckets), "all"]:
        r = rho_all if b == "all" else rho[:, b]
        r = r[np.isfinite(r)]
        rows.append({"bucket": b, "spearman": r.mean(), "se": r.std(ddof=1) / np.sqrt(max(len(r), 1)),
                     "users": len(r), "candidates_per_user": kk * (n_buckets if b == "all" else 1)})
    return pd.DataFrame(rows)


def _pairwise_table(world, ranker, examples, states, bucket, counts, n_buckets, n_negatives, rng):
    """Ground-truth next item vs random (uniform) and popular (by train impression count)
    negatives, by the ground-truth item's bucket; the true utility's accuracy is the ceiling."""
    U, N = len(examples), world.n_items
    tgt = examples.target                                                        # [U]
    neg_r = rng.integers(0, N, (U, n_negatives))                                 # [U, n]
    p = counts / counts.sum()
    neg_p = rng.choice(N, (U, n_negatives), p=p)                                 # [U, n]
    cands = np.concatenate([tgt[:, None], neg_r, neg_p], axis=1)                 # [U, 1 + 2n]
    s = ranker.score(examples.history, cands)
    truth = _has_truth(world)
    u = world.true_utility(states, cands) if truth else None

    def acc(x, negs, sl):
        neg_ok = negs != tgt[:, None]                                            # [U, n]
        win = (x[:, :1] > x[:, sl]) + 0.5 * (x[:, :1] == x[:, sl])               # [U, n]
        return (win * neg_ok).sum(1) / np.maximum(neg_ok.sum(1), 1)              # [U] per example

    sl_r, sl_p = slice(1, 1 + n_negatives), slice(1 + n_negatives, None)
    cols = {"acc_random": acc(s, neg_r, sl_r), "acc_popular": acc(s, neg_p, sl_p)}
    if truth:
        cols["truth_acc_random"] = acc(u, neg_r, sl_r)
        cols["truth_acc_popular"] = acc(u, neg_p, sl_p)
    tb = bucket[tgt]
    rows = []
    for b in [*range(n_buckets), "all"]:
        m = np.ones(U, bool) if b == "all" else tb == b
        rows.append({"bucket": b, "examples": int(m.sum()),
                     **{c: (v[m].mean() if m.any() else np.nan) for c, v in cols.items()}})
    return pd.DataFrame(rows)


def reliability_report(world, ranker: Ranker, n_buckets: int = 5, n_candidates: int = 100,
                       seed: int = 0, n_negatives: int = 20) -> dict:
    """How reliable the ranker is, by item-exposure bucket (bucket 0 = rarest in the train log).

    Returns a dict of DataFrames (one row per bucket plus an "all" row):

    * "auc": AUC on the held-out (``test`` split) impressions, with impressions, clicks and
      distinct items per bucket and the bucket's range of train exposure.
    * "truth": mean Spearman correlation, per user and bucket, between the ranker's scores and
      the true utility over random candidates (test states: the taste before each user's last
      click). Needs ``world.true_utility`` and ``world.click_states``; omitted otherwise.
    * "pairwise": share of negatives the ranker scores below the ground-truth next item
      (random and popular negatives), by the ground-truth item's bucket, next to the same
      accuracy under the true utility (the reference ceiling).
    """
    with torch_threads(1):       # the same numbers whatever the caller's thread count
        return _report(world, ranker, n_buckets, n_candidates, seed, n_negatives)


def _report(world, ranker, n_buckets, n_candidates, seed, n_negatives) -> dict:
    check_int("n_candidates", n_candidates, lo=2 * n_buckets)
    check_int("n_negatives", n_negatives, lo=1)
    check_int("seed", seed, lo=0)
    ranker.eval()
    rng = np.random.default_rng(seed)
    bucket, counts = exposure_buckets(world, n_buckets)
    examples = world.examples("test", ranker.cfg.max_history)
    has_truth = _has_truth(world)
    states = world.click_states[examples.click_index] if has_truth else None
    out = {"auc": _auc_table(world, ranker, bucket, counts, n_buckets)}
    if has_truth:
        out["truth"] = _truth_table(world, ranker, examples, states, bucket, n_buckets, n_candidates, rng)
    out["pairwise"] = _pairwise_table(world, ranker, examples, states, bucket, counts, n_buckets,
                                      n_negatives, rng)
    return out


def reliability_by_bias(biases, world_cfg, ranker_cfg: RankerConfig | None = None,
                        progress: bool = False, **report_kwargs) -> pd.DataFrame:
    """The reliability report for worlds built at several exposure-bias strengths.

    One long DataFrame: exposure_bias, table ("auc" / "truth" / "pairwise"), bucket, metric, value;
    pivot it for display. The ranker's training summary is under table "train".
    """
    ranker_cfg = ranker_cfg or RankerConfig()
    parts = []
    for b in biases:
        world = build_world(replace(world_cfg, exposure_bias=float(b)))
        ranker, hist = train_ranker(world, ranker_cfg, progress=progress)
        report = reliability_report(world, ranker, **report_kwargs)
        report["train"] = pd.DataFrame([{"bucket": "all", "seconds": ranker.train_seconds,
                                         "epochs": len(hist), "best_valid_auc": hist["valid_auc"].max()}])
        for name, df in report.items():
            long = df.melt(id_vars="bucket", var_name="metric", value_name="value")
            long.insert(0, "table", name)
            long.insert(0, "exposure_bias", float(b))
            parts.append(long)
    return pd.concat(parts, ignore_index=True)


def effective_bias_noise(reward_logit, true_utility, z) -> dict:
    """Where a reward sits on the reward-error axes, by one formula for every reward: regress
    (reward logit - true utility) on the items' standardised log exposure z with an intercept,
    over user states x items. ``reward_logit`` and ``true_utility`` are [S, N] (S user states, N
    items), ``z`` [N]. The slope is the reward's **effective bias** (> 0: it over-credits often
    shown items), the residual std its **effective noise**; also the intercept, the correlation of
    the reward with the truth over all pairs and n."""
    r = np.asarray(reward_logit, dtype=np.float64)
    u = np.asarray(true_utility, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    if r.ndim != 2 or r.shape != u.shape or z.shape != (r.shape[1],):
        raise ValueError(f"reward_logit and true_utility must be [S, N] and z [N], got {r.shape}, {u.shape}, {z.shape}")
    fit = simple_ols(r - u, np.broadcast_to(z, r.shape))
    corr = float(np.corrcoef(r.reshape(-1), u.reshape(-1))[0, 1])
    return {"effective_bias": fit["slope"], "effective_noise": fit["resid_std"], "intercept": fit["intercept"],
            "truth_corr": corr, "n": fit["n"]}


def place_reward(world, reward, n_states: int = 500, seed: int = 0, max_history: int = 20,
                 batch_size: int = 50) -> dict:
    """:func:`effective_bias_noise` of a reward (anything with ``score_items(history, items, batch)``
    serving logits: ``RewardConfig(output="logit")``) over ``n_states`` test user states drawn with
    ``seed`` and every item of the catalogue, against the simulated world's true utility."""
    if not _has_truth(world):
        raise ValueError("placing a reward needs the simulated world's true utility; this dataset has none")
    check_int("n_states", n_states, lo=1)
    test = world.examples("test", max_history)
    pick = np.sort(np.random.default_rng(seed).choice(len(test), min(n_states, len(test)), replace=False))
    ex = test.subset(pick)
    items = np.arange(world.n_items)
    logits, truth = [], []
    for s in range(0, len(ex), batch_size):
        b = ex.subset(np.arange(s, min(s + batch_size, len(ex))))
        grid = np.tile(items, (len(b), 1))                                        # [b, N]
        logits.append(reward.score_items(b.history, grid, batch=b).double().cpu().numpy())
        truth.append(world.true_utility(world.states_for(b), grid))
    return effective_bias_noise(np.concatenate(logits), np.concatenate(truth), exposure_z(world))
