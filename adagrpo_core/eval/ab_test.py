"""The simulated A/B test: serve slates to held-out user states under the world's own click model.

Click model (the one :func:`~adagrpo_core.data.world.build_world` logs with): a cascade. The user
scans a slate of K items top-down; position p (0-based) is examined with probability
``e_p = 1 / (p + 1) ** position_bias``; an examined item with true utility ``u`` attracts with
probability ``s = sigmoid(u)``; the first attracted item is clicked and the user stops. Examination
and attraction are independent across positions, so with ``a_p = e_p s_p``:

* P(first click at p) = a_p * prod_{q < p} (1 - a_q);
* expected CTR (P(at least one click)) = 1 - prod_p (1 - a_p), computed exactly (no sampling);
* dwell proxy = E[u of the clicked item | a click] = sum_p P(first click at p) u_p / CTR, the
  true utility of what the user ends up consuming, given that they consume something (NaN for a
  slate with CTR 0). Conditioning keeps it comparable across policies with different CTRs.

An invalid item id (< 0, a hallucination) has s = 0: it is examined but never clicked.

Optimality of the ceiling (:func:`ceiling_slates`: the top-k items by true utility, best first).
CTR = 1 - prod_p (1 - e_p s_p) increases in every s_p, so replacing any slate item by a
higher-utility one never lowers it: the ceiling's *set* is optimal. For the order, swap two
positions a < b (so e_a >= e_b when position_bias >= 0) holding s_x >= s_y: the product changes by
(1 - e_a s_x)(1 - e_b s_y) - (1 - e_a s_y)(1 - e_b s_x) = -(e_a - e_b)(s_x - s_y) <= 0, so putting
the better item first never lowers CTR (rearrangement). Hence no slate of k catalogue items beats
the ceiling on any user; this needs examination non-increasing in position, which holds for every
``position_bias >= 0`` (the config enforces it). tests/test_simab.py checks it numerically.

Catalogue statistics: coverage = distinct valid items recommended / n_items; tail share = share of
recommended valid slots holding a *tail* item, the 80% of the catalogue least shown in the
``train`` impressions (items ranked by train impression count, ties by item id, as in
:func:`~adagrpo_core.data.impressions.exposure_buckets` with 5 buckets: tail = buckets 0-3).
"""
from __future__ import annotations

import numpy as np

from ..data.impressions import exposure_buckets
from ..data.world import World, logging_slates


def examination(k: int, position_bias: float) -> np.ndarray:
    """e_p = 1 / (p + 1) ** position_bias for p = 0..k-1."""
    return 1.0 / (np.arange(k) + 1.0) ** position_bias


def tail_items(world: World, n_buckets: int = 5) -> np.ndarray:
    """Boolean [n_items]: the tail, every exposure bucket but the most shown one (the 80% of the
    catalogue least shown in the train impressions with 5 buckets)."""
    bucket, _ = exposure_buckets(world, n_buckets)
    return bucket < n_buckets - 1


def slate_click_stats(world: World, states, slates) -> dict:
    """Exact cascade statistics of serving ``slates`` [U, K] (item ids, -1 invalid) to ``states`` [U, d].

    Returns per-user arrays ``ctr`` [U] and ``dwell`` [U] (NaN where ctr == 0), plus the
    catalogue statistics ``coverage`` and ``tail_share`` (floats).
    """
    slates = np.asarray(slates, dtype=np.int64)
    states = np.asarray(states, dtype=np.float32)
    if slates.ndim != 2 or len(slates) != len(states):
        raise ValueError(f"slates must be [U, K] with U = len(states), got {slates.shape} and {states.shape}")
    U, K = slates.shape
    u = world.true_utility(states, slates)                                   # [U, K], -inf invalid
    s = np.where(slates >= 0, 1.0 / (1.0 + np.exp(-np.where(slates >= 0, u, 0.0))), 0.0)
    a = examination(K, world.cfg.position_bias)[None, :] * s                 # [U, K]
    survive = np.cumprod(np.c_[np.ones(U), 1.0 - a[:, :-1]], axis=1)        # prod_{q<p}(1 - a_q)
    first = a * survive                                                      # P(first click at p)
    ctr = 1.0 - np.prod(1.0 - a, axis=1)
    num = (first * np.where(slates >= 0, u, 0.0)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dwell = np.where(ctr > 0, num / ctr, np.nan)
    valid = slates[slates >= 0]
    tail = tail_items(world)
    return {"ctr": ctr, "dwell": dwell,
            "coverage": len(np.unique(valid)) / world.n_items,
            "tail_share": float(tail[valid].mean()) if len(valid) else float("nan")}


def ceiling_slates(world: World, states, k: int = 10) -> np.ndarray:
    """Top-k items by true utility for each state, best first: [U, k] (CTR-optimal, see module doc)."""
    u = world.true_utility(states, np.arange(world.n_items))                 # [U, n_items]
    top = np.argpartition(-u, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(u, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


def most_popular_slates(world: World, n_users: int, k: int = 10) -> np.ndarray:
    """The k items with the most training clicks, the same slate for every user: [U, k]."""
    top = np.argsort(-world.train_item_counts(), kind="stable")[:k]
    return np.broadcast_to(top, (n_users, k)).copy()


def ranker_slates(ranker, history, n_items: int, k: int = 10, chunk: int = 256) -> np.ndarray:
    """The ranker's top-k over the whole catalogue for each history [U, H]: [U, k]."""
    out = []
    items = np.arange(n_items)
    for s in range(0, len(history), chunk):
        h = history[s:s + chunk]
        sc = ranker.score(h, np.tile(items, (len(h), 1)))
        out.append(np.argsort(-sc, axis=1, kind="stable")[:, :k])
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def logging_ctr_mc(world: World, states, n_samples: int = 20, seed: int = 0) -> np.ndarray:
    """Expected CTR per state of the world's logging policy: ``n_samples`` slates drawn per state
    by the logging policy (Monte Carlo over its slate randomness), each scored exactly by the
    cascade; returns the per-state mean [U]. The Monte Carlo error is over slates only."""
    rng = np.random.default_rng(seed)
    states = np.asarray(states, dtype=np.float32)
    acc = np.zeros(len(states))
    for _ in range(n_samples):
        acc += slate_click_stats(world, states, logging_slates(world, states, rng))["ctr"]
    return acc / n_samples
