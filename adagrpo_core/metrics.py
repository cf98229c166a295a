"""Ranking metrics on ranked lists of item ids (-1 marks an invalid tuple, a hallucination).

All functions take ``ranked`` [B, N] (best first) and ``target`` [B]; they return the mean over
the batch unless ``reduce=False``. Only the first occurrence of the target counts.
"""
from __future__ import annotations

import numpy as np

from .semantic_ids import INVALID


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
    hit = (ranked == target[:, None]) & (target[:, None] != INVALID)
    first = hit.argmax(1)
    return np.where(hit.any(1), first, -1)


def hr_at_k(ranked, target, k: int, reduce: bool = True):
    """Hit rate: 1 when the target is among the first k entries."""
    ranked, target = _check(ranked, target, k)
    r = target_rank(ranked, target)
    hits = ((r >= 0) & (r < k)).astype(np.float64)
    return hits.mean() if reduce else hits


def ndcg_at_k(ranked, target, k: int, reduce: bool = True):
    """NDCG with one relevant item: 1 / log2(rank + 2) when rank < k, else 0."""
    ranked, target = _check(ranked, target, k)
    r = target_rank(ranked, target)
    gain = np.where((r >= 0) & (r < k), 1.0 / np.log2(np.maximum(r, 0) + 2.0), 0.0)
    return gain.mean() if reduce else gain


def hallucination_rate(ranked, k: int | None = None, reduce: bool = True):
    """Share of the (first k) returned tuples that map to no item."""
    ranked = np.asarray(ranked)
    if ranked.ndim != 2:
        raise ValueError(f"ranked must be [batch, n], got shape={ranked.shape}")
    if k is not None:
        if int(k) != k or k < 1:
            raise ValueError(f"k must be a positive int, got k={k!r}")
        ranked = ranked[:, :k]
    per = (ranked == INVALID).mean(1)
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
