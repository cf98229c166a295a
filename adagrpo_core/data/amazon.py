"""Amazon Beauty (5-core) and any log in its `user item item ...` format: fetching, parsing, exposure.

Files (never committed): ``Beauty.txt`` (one line per user, ``user item item ...``, 1-indexed,
chronological), ``Beauty_item2attributes.json`` (item id -> category/brand attribute ids) and
``Beauty_letter_semantic_ids.json`` (LETTER's text-derived 4-token semantic IDs; key k is item
k + 1 of Beauty.txt). :func:`fetch` takes a file from a local folder or downloads it from its
public source into the cache, and in both cases checks its sha256 before anything is parsed;
:func:`parse_sequences`, :func:`attribute_matrix` and :func:`letter_codes` read and check the
three formats. The item features, categories and semantic IDs built from them, and the loaders
that return a whole dataset, are in :mod:`adagrpo_core.model.datasets`.

Real logs have no impressions, so the ranker is trained on **semi-synthetic exposure**
(:func:`semi_synthetic_impressions`): every observed click becomes a slate of the clicked item
plus negatives drawn from a popularity-biased exposure distribution ``q(i) ~ (clicks_i + 1) **
strength``. Results on this data rest on that assumption; the notebooks say so.

    users, items, offsets, n_items, _ = parse_sequences(fetch("Beauty.txt", "../shared/data/amazon"))
    codes = letter_codes(fetch("Beauty_letter_semantic_ids.json", None), n_items)   # None: download
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..common.checks import check_int, check_range
from ..common.paths import default_cache_dir
from .files import download, read_json, read_text, verify
from .interactions import Interactions

# name -> (sha256, public sources tried in order). Published facts of this split:
# 22,363 users, 12,101 items, 198,502 interactions; LETTER IDs: 12,088 distinct tuples.
FILES = {
    "Beauty.txt": ("226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8", (
        "https://raw.githubusercontent.com/aHuiWang/CIKM2020-S3Rec/master/data/Beauty.txt",
        "https://raw.githubusercontent.com/salesforce/ICLRec/master/data/Beauty.txt")),
    "Beauty_item2attributes.json": ("129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4", (
        "https://raw.githubusercontent.com/aHuiWang/CIKM2020-S3Rec/e6c774da92dba847b00ac89e8bfc5c55cc44d378/"
        "data/Beauty_item2attributes.json",)),
    "Beauty_letter_semantic_ids.json": ("be3fb890e59b5443824cdebc560ef349191b97f20d3aecad4727de2d6b212c82", (
        "https://raw.githubusercontent.com/HonghuiBao2000/LETTER/0d4a1153e450d5b79313c0a242c7e764f74b9d58/"
        "data/Beauty/Beauty.index.json",)),
}
DATASETS = {"beauty": ("Beauty.txt", "Beauty_item2attributes.json")}


def fetch(name: str, data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
          urls: tuple | None = None, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Path of a verified copy of ``name``.

    ``data_dir``: a local folder holding the file (checked, used in place). Otherwise the cached
    copy under ``<cache>/amazon/`` or, when absent, a download from ``urls`` (default: the
    public sources in :data:`FILES`), written atomically and checked. ``sha256`` defaults to the
    known sum for the file; a file unknown to :data:`FILES` needs ``sha256`` (or ``sha256=""``
    to skip the check, e.g. for your own dataset).
    """
    known = FILES.get(name)
    expected = sha256 if sha256 is not None else (known[0] if known else None)
    if expected is None:
        raise ValueError(f"name: unknown file {name!r} (known: {sorted(FILES)}); pass sha256=... "
                         "or sha256='' to skip the check")
    expected = expected or None
    if data_dir is not None:
        path = Path(data_dir) / name
        if not path.is_file():
            raise FileNotFoundError(f"data_dir: {name} not found in {data_dir}")
        return verify(path, expected)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / "amazon" / name
    if path.is_file():
        return verify(path, expected)
    urls = urls or (known[1] if known else ())
    if not urls:
        raise ValueError(f"urls: no source known for {name!r}; pass urls=... or data_dir=...")
    return download(url_list=urls, path=path, expected=expected, timeout=timeout)


def _is_int(token: str) -> bool:
    try:
        int(token)
        return True
    except ValueError:
        return False


def parse_sequences(path: str | os.PathLike, min_interactions: int = 3, drop_short: bool = False):
    """Read ``user item item ...`` lines (1-indexed item ids, chronological).

    Returns (user_ids [n_users], seq_items [total] 0-indexed, seq_offsets [n_users + 1],
    n_items, dropped) where n_items = the largest item id. Every malformed line raises a
    ValueError naming the line number and the offending value. Users with fewer than
    ``min_interactions`` clicks raise too, unless ``drop_short`` (then ``dropped`` counts them).
    """
    check_int("min_interactions", min_interactions, lo=1)
    users, items, offsets, seen, dropped = [], [], [0], set(), 0
    with io.StringIO(read_text(path), newline=None) as f:
        for ln, line in enumerate(f, 1):
            tok = line.split()
            if not tok:
                raise ValueError(f"{Path(path).name} line {ln}: empty line (expected 'user item item ...')")
            try:
                vals = [int(t) for t in tok]
            except ValueError:
                bad = next(t for t in tok if not _is_int(t))
                raise ValueError(f"{Path(path).name} line {ln}: id {bad!r} is not an integer") from None
            user, seq = vals[0], vals[1:]
            if user in seen:
                raise ValueError(f"{Path(path).name} line {ln}: user {user} appears twice")
            seen.add(user)
            if not seq:
                raise ValueError(f"{Path(path).name} line {ln}: user {user} has an empty history (no items)")
            if min(seq) < 1:
                raise ValueError(f"{Path(path).name} line {ln}: item id {min(seq)} is out of range "
                                 "(item ids are 1-indexed)")
            if len(seq) < min_interactions:
                if drop_short:
                    dropped += 1
                    continue
                raise ValueError(f"{Path(path).name} line {ln}: user {user} has {len(seq)} interactions; the "
                                 f"leave-one-out split needs at least min_interactions={min_interactions}")
            users.append(user)
            items.extend(seq)
            offsets.append(offsets[-1] + len(seq))
    if not users:
        raise ValueError(f"{Path(path).name}: no usable user lines")
    seq_items = np.asarray(items, dtype=np.int64) - 1
    return np.asarray(users), seq_items, np.asarray(offsets, dtype=np.int64), int(seq_items.max()) + 1, dropped


def attribute_matrix(attr_path: str | os.PathLike, n_items: int) -> np.ndarray:
    """The multi-hot [n_items, n_attributes] float32 matrix of ``item2attributes.json`` (1-indexed
    item id -> attribute ids; items beyond ``n_items`` are ignored, items without an entry have an
    empty row). Every malformed entry raises a ValueError naming the file and the entry."""
    raw = read_json(attr_path, "an object {item id: [attribute ids]}")
    if not isinstance(raw, dict):
        raise ValueError(f"{attr_path}: expected a JSON object {{item id: [attribute ids]}}, "
                         f"got a {type(raw).__name__}")
    rows, cols = [], []
    for key, attrs in raw.items():
        try:
            i = int(key) - 1
        except ValueError:
            raise ValueError(f"{attr_path}: item key {key!r} is not an integer") from None
        if i < 0:
            raise ValueError(f"{attr_path}: item id {key!r} is out of range (item ids are 1-indexed)")
        if not isinstance(attrs, list) or not all(
                isinstance(a, (int, str)) and not isinstance(a, bool) and _is_int(a) and int(a) >= 0
                for a in attrs):
            raise ValueError(f"{attr_path}: item {key}: attributes must be a list of non-negative integer "
                             f"ids, got {attrs!r}"[:300])
        if i < n_items:
            for a in attrs:
                rows.append(i)
                cols.append(int(a))
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    n_attr = int(cols.max()) + 1 if len(cols) else 1
    m = np.zeros((n_items, n_attr), dtype=np.float32)
    m[rows, cols] = 1.0
    return m


def letter_codes(path: str | os.PathLike, n_items: int | None = None) -> np.ndarray:
    """LETTER's semantic-ID tokens (``{"k": ["<a_N>", "<b_N>", ...]}``, key k = item k, 0-indexed)
    as codes [n_items, L] int64 (``N`` of each token); ``n_items`` defaults to the number of keys.
    Every malformed entry raises a ValueError naming the file and the item."""
    raw = read_json(path, 'an object {"item": ["<a_N>", "<b_N>", ...]}')
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object {{item: [tokens]}}, got a {type(raw).__name__}")
    try:
        by_id = {int(k): v for k, v in raw.items()}
    except ValueError:
        raise ValueError(f"{path}: item keys must be integers, got e.g. "
                         f"{next(k for k in raw if not _is_int(k))!r}") from None
    keys = sorted(by_id)
    n = len(keys) if n_items is None else n_items
    if keys != list(range(len(keys))) or len(keys) < n:
        missing = sorted(set(range(n)) - set(keys))[:5]
        raise ValueError(f"{Path(path).name}: keys must be 0..n_items-1; missing e.g. {missing}")
    codes = []
    for k in range(n):
        toks = by_id[k]
        if not isinstance(toks, list):
            raise ValueError(f"{Path(path).name}: item {k}: expected a list of tokens, got {toks!r}"[:300])
        row = []
        for t in toks:
            try:
                row.append(int(t.strip("<>").split("_")[1]))
            except (AttributeError, IndexError, ValueError):
                raise ValueError(f"{Path(path).name}: item {k}: token {t!r} is not of the form <x_N>") from None
        codes.append(row)
    lens = {len(r) for r in codes}
    if len(lens) != 1:
        raise ValueError(f"{Path(path).name}: items have different numbers of tokens: {sorted(lens)}")
    return np.asarray(codes, dtype=np.int64)


def check_log_fields(cfg) -> None:
    """The fields every real-log config has (:class:`AmazonConfig`, ``SequencesConfig``): the item
    features' size, the number of categories and the semi-synthetic exposure."""
    check_int("feature_dim", cfg.feature_dim, lo=1)
    check_int("n_categories", cfg.n_categories, lo=1)
    check_int("num_negatives", cfg.num_negatives, lo=1)
    check_range("exposure_strength", cfg.exposure_strength, lo=0)


@dataclass
class AmazonConfig:
    """A real dataset in the ``user item item ...`` format, as a cached pipeline stage."""

    dataset: str = "beauty"
    """Which Amazon dataset (the files in :data:`DATASETS`)."""
    data_dir: str | None = None
    """Local folder holding the files; None = $ADAGRPO_AMAZON_DIR, else download into the cache.
    Not part of the cache key: the files are verified by sha256 whatever their source."""
    feature_dim: int = 32
    """Item feature size (truncated SVD of the TF-IDF attribute matrix)."""
    n_categories: int = 50
    """Item categories (k-means clusters of the features) for the ranker's category embedding."""
    num_negatives: int = 4
    """Semi-synthetic exposure: negatives shown with every observed click."""
    exposure_strength: float = 1.0
    """Semi-synthetic exposure: popularity exponent of the negative distribution (0 = uniform)."""
    semantic_ids: str = "letter"
    """'letter' (the published text-derived IDs), 'rqkmeans' (residual k-means on the attribute
    features) or 'collaborative' (residual k-means on co-occurrence embeddings of the training
    clicks plus the attribute features: ``model/item_embeddings.py``)."""
    seed: int = 0
    """Seed of the features' tie-breaks, the categories and the exposure draws."""

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got dataset={self.dataset!r}")
        check_log_fields(self)
        if self.semantic_ids not in ("letter", "rqkmeans", "collaborative"):
            raise ValueError("semantic_ids must be 'letter', 'rqkmeans' or 'collaborative', "
                             f"got semantic_ids={self.semantic_ids!r}")

    def resolved_data_dir(self):
        return self.data_dir if self.data_dir is not None else os.environ.get("ADAGRPO_AMAZON_DIR") or None


@dataclass
class AmazonData(Interactions):
    """A real click log with the attributes the policy, the ranker and the notebooks need."""

    item_features: np.ndarray = None   # [n_items, d] float32
    item_category: np.ndarray = None   # [n_items] int64, or None without an attributes file
    impressions: pd.DataFrame = None   # semi-synthetic: user, step, item, position, clicked, hist_len, split
    user_ids: np.ndarray = None        # [n_users] the ids of the source file
    name: str = "custom"
    dropped_users: int = 0
    cfg: object = None                 # how it was built (AmazonConfig / SequencesConfig: the pipeline's cache key)

    def summary(self) -> dict:
        return {"dataset": self.name, "users": self.n_users, "items": int(self.n_items),
                "interactions": int(len(self.seq_items)), "dropped_users": int(self.dropped_users),
                "mean_seq_len": float(self.seq_lengths.mean()),
                "impressions": 0 if self.impressions is None else len(self.impressions)}


def draw_excluding(q: np.ndarray, exclude: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per entry of ``exclude`` from the distribution ``q`` [n] renormalised without
    that entry's item (inverse CDF over the other items, vectorised). Where the other items have
    no mass left (q all on the excluded item, e.g. after underflow), the draw is uniform over them.
    Needs n >= 2."""
    n = len(q)
    cdf = np.cumsum(q)
    before = cdf[exclude] - q[exclude]                     # mass of the items below the excluded one
    rest = cdf[-1] - q[exclude]                            # mass of every other item
    u = rng.random(len(exclude)) * rest
    u = np.where(u < before, u, u + q[exclude])            # skip the excluded item's interval
    out = np.minimum(np.searchsorted(cdf, u, side="right"), n - 1)
    # rounding can still land on the excluded item (or the rest has no mass): uniform over the others
    bad = (out == exclude) | ~(rest > 0)
    if bad.any():
        k = rng.integers(0, n - 1, int(bad.sum()))
        out[bad] = k + (k >= exclude[bad])
    return out


def semi_synthetic_impressions(data: Interactions, num_negatives: int = 4, strength: float = 1.0,
                               seed: int = 0) -> pd.DataFrame:
    """Impressions for a log that has none: every click becomes a slate of ``num_negatives``
    items drawn from ``q(i) ~ (train clicks_i + 1) ** strength`` (never the clicked item), shown
    at positions 0..M-1, and the clicked item at position M. Under the cascade reading the
    user examined and skipped the negatives, so every row is a usable label. ``strength`` = 0
    is uniform exposure; larger values concentrate exposure on popular items. Columns and splits
    match the simulated world's log: a click at sequence position p has ``hist_len = p``;
    positions of the validation / test targets get split 'valid' / 'test'."""
    check_int("num_negatives", num_negatives, lo=1)
    check_range("strength", strength, lo=0)
    if data.n_items < 2:
        raise ValueError(f"n_items={data.n_items}: semi-synthetic exposure needs at least 2 items "
                         "(a negative must differ from the clicked item)")
    rng = np.random.default_rng(seed)
    lens = data.seq_lengths
    n_clicks = len(data.seq_items)
    users = np.repeat(np.arange(data.n_users), lens)
    pos = np.arange(n_clicks) - np.repeat(data.seq_offsets[:-1], lens)
    keep = pos >= 1                                             # a click needs a history to be scored
    users, pos, clicked = users[keep], pos[keep], data.seq_items[keep]
    split = np.where(pos == lens[users] - 1, "test", np.where(pos == lens[users] - 2, "valid", "train"))
    base = data.train_item_counts().astype(np.float64) + 1.0
    with np.errstate(over="ignore"):
        q = base ** strength
    if not np.isfinite(q.sum()):          # a large strength overflows: the same q, in log space
        logq = strength * np.log(base)
        q = np.exp(logq - logq.max())
    q /= q.sum()
    neg = rng.choice(data.n_items, size=(len(clicked), num_negatives), p=q)
    clash = neg == clicked[:, None]
    for _ in range(8):   # redraw negatives equal to the click from q ...
        if not clash.any():
            break
        neg[clash] = rng.choice(data.n_items, size=int(clash.sum()), p=q)
        clash = neg == clicked[:, None]
    if clash.any():      # ... at most 8 times; then from q without the clicked item: no loop waits on luck
        neg[clash] = draw_excluding(q, np.broadcast_to(clicked[:, None], neg.shape)[clash], rng)
    M = num_negatives
    items = np.concatenate([neg, clicked[:, None]], 1).reshape(-1)
    rep = lambda x: np.repeat(x, M + 1)
    return pd.DataFrame({
        "user": rep(users), "step": rep(pos), "item": items,
        "position": np.tile(np.arange(M + 1), len(clicked)),
        "clicked": np.tile(np.r_[np.zeros(M, dtype=np.int64), 1], len(clicked)),
        "hist_len": rep(pos), "split": rep(split)})
