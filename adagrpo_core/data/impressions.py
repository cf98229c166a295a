"""Impression logs for the ranker: validation, the click history of each impression row, the
rows a cascade user examined, and impressions grouped by shared context.

An impression log is a DataFrame with one row per shown item: ``user``, ``item``, ``clicked``
(0/1), ``hist_len`` (the user's clicks before this impression, so the history is the first
``hist_len`` items of the user's sequence) and ``split`` (train / valid / test); the simulated
world adds ``step`` and ``position``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..common.checks import check_int
from .interactions import NO_ITEM


def check_impression_log(data) -> None:
    """Validate an impression log before any work (clear ValueErrors naming what is wrong)."""
    for attr in ("impressions", "seq_items", "seq_offsets", "n_items", "item_features"):
        if getattr(data, attr, None) is None:
            raise ValueError(f"training data must have the attribute {attr!r}, got {attr}=None")
    imp = data.impressions
    missing = {"user", "item", "clicked", "hist_len", "split"} - set(imp.columns)
    if missing:
        raise ValueError(f"impressions lack the columns {sorted(missing)}")
    n_train = int((imp["split"] == "train").sum())
    if n_train == 0:
        raise ValueError(f"impressions has no rows with split == 'train' (got {len(imp)} rows in total)")
    n_items = int(data.n_items)
    items = imp["item"].to_numpy()
    if items.min() < 0 or items.max() >= n_items:
        raise ValueError(f"impression item ids must be in [0, n_items={n_items}), got range "
                         f"[{items.min()}, {items.max()}]")
    feats = np.asarray(data.item_features)
    if feats.ndim != 2 or feats.shape[0] != n_items:
        raise ValueError(f"item_features must have n_items={n_items} rows, got shape={feats.shape}")
    cat = getattr(data, "item_category", None)
    if cat is not None and np.asarray(cat).shape != (n_items,):
        raise ValueError(f"item_category must have n_items={n_items} entries, got shape={np.asarray(cat).shape}")
    n_users = len(data.seq_offsets) - 1
    users = imp["user"].to_numpy()
    if users.min() < 0 or users.max() >= n_users:
        raise ValueError(f"impression user ids must be in [0, n_users={n_users}), got range "
                         f"[{users.min()}, {users.max()}]")
    lens = np.diff(np.asarray(data.seq_offsets))
    hl = imp["hist_len"].to_numpy()
    if (hl < 0).any() or (hl > lens[users]).any():
        raise ValueError("impression hist_len must be in [0, the user's number of clicks]")
    labels = imp["clicked"].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("impression 'clicked' must be 0 or 1")


def impression_histories(data, users, hist_len, max_history: int) -> np.ndarray:
    """The click history of impression rows: [n, H], left-padded with -1, most recent last.

    Row r's history = seq_items[off[u] : off[u] + hist_len[r]], its last H items (vectorised).
    """
    users = np.asarray(users, dtype=np.int64)
    start = np.asarray(data.seq_offsets, dtype=np.int64)[users]                  # [n]
    end = start + np.asarray(hist_len, dtype=np.int64)                           # [n]
    idx = end[:, None] + np.arange(-max_history, 0)[None, :]                     # [n, H]
    seq = np.asarray(data.seq_items, dtype=np.int64)
    return np.where(idx >= start[:, None], seq[np.clip(idx, 0, None)], NO_ITEM)


def examined_rows(impressions: pd.DataFrame) -> np.ndarray:
    """Rows a cascade user examined: at or above the first click of their slate (user, step);
    every row of a slate without a click. Rows below a click were never examined."""
    imp = impressions
    first = imp["position"].where(imp["clicked"] == 1).groupby([imp["user"], imp["step"]]).transform("min")
    return (first.isna() | (imp["position"] <= first)).to_numpy().copy()


def grouped_impressions(data, split: str, max_history: int, group_size: int):
    """Impressions of a split grouped by shared context, for scoring many candidates per history.

    Rows with the same (user, hist_len) have the same history; they are cut into groups of at
    most ``group_size`` rows. Returns history [G, H], items [G, C] (-1 pad), labels [G, C]
    (float) and rows [G, C] (row index into the impressions, -1 pad).
    """
    imp = data.impressions
    sel = np.flatnonzero((imp["split"] == split).to_numpy())
    users = imp["user"].to_numpy()[sel].astype(np.int64)
    hl = imp["hist_len"].to_numpy()[sel].astype(np.int64)
    n, C = len(sel), group_size
    order = np.lexsort((np.arange(n), hl, users))                                # stable
    u, h = users[order], hl[order]
    new_ctx = np.r_[True, (u[1:] != u[:-1]) | (h[1:] != h[:-1])][:n]             # [n]
    ctx_start = np.flatnonzero(new_ctx)
    pos = np.arange(n) - ctx_start[np.cumsum(new_ctx) - 1]                       # position in context
    new_group = pos % C == 0
    g = np.cumsum(new_group) - 1                                                 # group of each row
    col = pos % C
    G = int(new_group.sum())

    def scatter(values, fill, dtype):
        out = np.full((G, C), fill, dtype=dtype)
        out[g, col] = values[sel][order]
        return out

    items = scatter(imp["item"].to_numpy(), NO_ITEM, np.int64)
    labels = scatter(imp["clicked"].to_numpy(), 0, np.float32)
    rows = scatter(np.arange(len(imp)), -1, np.int64)
    first = order[new_group]                                                     # one row per group
    history = impression_histories(data, users[first], hl[first], max_history)   # [G, H]
    return history, items, labels, rows


def train_exposure(data) -> np.ndarray:
    """Impressions of each item in the train split: [n_items] ints."""
    imp = data.impressions
    return np.bincount(imp["item"].to_numpy()[(imp["split"] == "train").to_numpy()], minlength=data.n_items)


def exposure_buckets(data, n_buckets: int = 5):
    """Equal-sized item buckets by impression count in the train split (bucket 0 = rarest).

    Items are sorted by count (ties by item id) and cut into ``n_buckets`` nearly equal groups:
    count quantiles would collapse when many items share a count (often 0 under strong bias).
    Returns (bucket [n_items], counts [n_items]).
    """
    check_int("n_buckets", n_buckets, lo=1, hi=int(data.n_items))
    counts = train_exposure(data)
    order = np.argsort(counts, kind="stable")
    bucket = np.empty(data.n_items, dtype=np.int64)
    bucket[order] = np.arange(data.n_items) * n_buckets // data.n_items
    return bucket, counts


def exposure_z(data) -> np.ndarray:
    """z_i: each item's standardised log exposure, (x_i - mean x) / std x with x_i = log(1 + train
    impressions of item i), over every item of the catalogue. [n_items] float64; all 0 when every
    item has the same exposure."""
    x = np.log1p(train_exposure(data).astype(np.float64))
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def reward_coverage(data) -> np.ndarray:
    """Per item, how much the reward model's training data shows it (the exposure diagnostic's
    counts, [n_items] ints): train impressions on the simulated world; on real data, whose
    impressions are semi-synthetic (each click against sampled negatives), the train clicks."""
    return train_exposure(data) if hasattr(data, "true_utility") else data.train_item_counts()
