"""Every metric of the package, each with its formula: ranking (HR@K, NDCG@K, hallucination),
scoring (AUC, per-row AUC of a target, row-wise Spearman) and concentration (Gini, top share).

Ranking functions take ``ranked`` [B, N] (item ids, best first; -1 marks an invalid tuple, a
hallucination) and ``target`` [B]; they return the mean over the batch unless ``reduce=False``.
Only the first occurrence of the target counts.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from ..data.interactions import NO_ITEM


def _check(ranked, target, k):
    ranked = np.asarray(ranked)
    target = np.asarray(target)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be [batch, n], got shape={ranked.shape}")
    if target.shape != (ranked.shape[0],):
        raise ValueError(f"target must be [batch]={ranked.shape[0]}, got shape={target.shape}")
    if k is not None and (int(k) != k or k < 1):
        raise ValueError(f"k must be a positive int, got k={k!r}")
    return ranked, target


def target_rank(ranked, target) -> np.ndarray:
    """0-based rank of the target in each list, or -1 when absent."""
    ranked, target = _check(ranked, target, None)
    hit = (ranked == target[:, None]) & (target[:, None] != NO_ITEM)
    first = hit.argmax(1)
    return np.where(hit.any(1), first, -1)


def hr_at_k(ranked, target, k: int, reduce: bool = True):
    """Hit rate: HR@k_i = 1[rank_i < k], rank_i the 0-based position of the target (absent = miss)."""
    ranked, target = _check(ranked, target, k)
    r = target_rank(ranked, target)
    hits = ((r >= 0) & (r < k)).astype(np.float64)
    return hits.mean() if reduce else hits


def ndcg_at_k(ranked, target, k: int, reduce: bool = True):
    """NDCG with one relevant item: NDCG@k_i = 1 / log2(rank_i + 2) when rank_i < k, else 0
    (the ideal DCG is 1)."""
    ranked, target = _check(ranked, target, k)
    r = target_rank(ranked, target)
    gain = np.where((r >= 0) & (r < k), 1.0 / np.log2(np.maximum(r, 0) + 2.0), 0.0)
    return gain.mean() if reduce else gain


def hallucination_rate(ranked, k: int | None = None, reduce: bool = True):
    """Hallucination rate: the share of the (first k) returned tuples that map to no item,
    halluc_i = (1/k) sum_{j<k} 1[ranked_ij = -1]."""
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be [batch, n], got shape={ranked.shape}")
    if k is not None:
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive int, got k={k!r}")
        ranked = ranked[:, :k]
    per = (ranked == NO_ITEM).mean(1)
    return per.mean() if reduce else per


def topk_from_scores(scores, k: int) -> np.ndarray:
    """Top-k item ids from a [B, n_items] score matrix; ties broken by the lower item id."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [batch, n_items], got shape={scores.shape}")
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive int, got k={k!r}")
    if scores.dtype.kind in "bu":  # negating bool / unsigned scores fails or wraps around
        scores = scores.astype(np.float64)
    k = min(int(k), scores.shape[1])
    # stable sort of -scores keeps the lower id first among equal scores
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def ranking_metrics(ranked, target, ks=(5, 10, 20)) -> dict:
    """HR@K and NDCG@K for every K, plus hallucination rate over the first max(ks) entries."""
    out = {}
    for k in ks:
        out[f"HR@{k}"] = hr_at_k(ranked, target, k)
        out[f"NDCG@{k}"] = ndcg_at_k(ranked, target, k)
    out["halluc"] = hallucination_rate(ranked, max(ks))
    return out


def auc(labels, scores) -> float:
    """ROC AUC by the rank (Mann-Whitney) formula, ties averaged. NaN when a class is empty.

    AUC = (sum of the positives' ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg), ranks 1-based.
    """
    labels = np.asarray(labels).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores must have the same size, got {labels.shape} and {scores.shape}")
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)                 # average ranks for ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation along the last axis (ties averaged): the Pearson correlation of the
    ranks, sum(rx ry) / sqrt(sum rx^2 sum ry^2) with centred ranks. [..., k] x [..., k] -> [...]."""
    rx = rankdata(x, axis=-1)
    ry = rankdata(y, axis=-1)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1), np.nan)


def target_auc(target_score: np.ndarray, other: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-row AUC of a target against other candidates, ties counted half:
    auc_i = sum_j valid_ij (1[s_ij < t_i] + 0.5 * 1[s_ij = t_i]) / sum_j valid_ij.
    target_score [n], other [n, C], valid [n, C] -> [n] (NaN where no valid other candidate)."""
    below = ((other < target_score[:, None]) + 0.5 * (other == target_score[:, None])) * valid
    cnt = valid.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, below.sum(1) / np.maximum(cnt, 1), np.nan)


def gini(x) -> float:
    """Gini coefficient of a non-negative vector (0 = equal, -> 1 = concentrated):
    G = (n + 1 - 2 sum_i C_i / C_n) / n with C the cumulative sums of x sorted ascending."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


def top_share(x, frac: float = 0.1) -> float:
    """Share of the total held by the top ``frac`` of entries: sum(top round(frac n)) / sum(x)."""
    x = np.sort(np.asarray(x, dtype=np.float64))[::-1]
    k = max(1, int(round(frac * len(x))))
    return float(x[:k].sum() / max(x.sum(), 1e-12))
