"""Semantic IDs: residual k-means codes, a uniqueness token, and a vectorised prefix trie.

An item is a tuple of ``L + 1`` tokens: ``L`` residual k-means levels with ``K`` codes each,
then one disambiguation token that makes every tuple unique (items whose first ``L``
codes collide get 0, 1, 2, ... in a fixed order). A tuple that maps to no catalogue item is a
*hallucination*.

The :class:`Trie` stores the valid tuples as a node-by-code transition table (one integer
tensor, on any device), so the allowed next codes of a whole batch of prefixes is one
gather: ``trie.allowed(nodes)`` -> ``[B, V]`` booleans. No Python loop per beam or per token.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.interactions import NO_ITEM  # item / node id meaning "no such item / prefix"
from ..common.checks import check_int


@dataclass
class SIDConfig:
    """Residual k-means (RQ-KMeans) semantic IDs: L levels of K codes, plus a uniqueness token."""

    num_levels: int = 3
    """L: residual k-means levels (>= 1)."""
    codebook_size: int = 32
    """K: codes per level (>= 2, at most the number of items)."""
    kmeans_iters: int = 25
    """Lloyd iterations per level."""
    seed: int = 0
    """Seed of the k-means++ initialisation."""
    standardize: bool = True
    """Z-score each feature column before clustering."""

    def __post_init__(self):
        check_int("num_levels", self.num_levels, lo=1)
        check_int("codebook_size", self.codebook_size, lo=2)
        check_int("kmeans_iters", self.kmeans_iters, lo=1)
        check_int("seed", self.seed, lo=0)
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise ValueError(f"standardize must be True or False, got standardize={self.standardize!r}")


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator):
    """Plain Lloyd k-means with k-means++ initialisation. x: [N, D] -> (centroids [k, D], codes [N])."""
    n = x.shape[0]
    # k-means++ init (k steps, each vectorised over N)
    first = torch.randint(n, (1,), generator=generator)
    centroids = x[first]                                               # [1, D]
    d2 = ((x - centroids) ** 2).sum(1)                                 # [N]
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than k: pick uniformly
            idx = torch.randint(n, (1,), generator=generator)
        else:
            idx = torch.multinomial(d2 / total, 1, generator=generator)
        centroids = torch.cat([centroids, x[idx]], 0)
        d2 = torch.minimum(d2, ((x - x[idx]) ** 2).sum(1))
    codes = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        dist = torch.cdist(x, centroids)                               # [N, k]
        new_codes = dist.argmin(1)
        counts = torch.bincount(new_codes, minlength=k).to(x.dtype)   # [k]
        sums = torch.zeros_like(centroids).index_add_(0, new_codes, x)
        empty = counts == 0
        centroids = torch.where(empty[:, None], centroids, sums / counts.clamp(min=1)[:, None])
        if torch.equal(new_codes, codes):
            codes = new_codes
            break
        codes = new_codes
    return centroids, codes


def add_uniqueness_token(prefix_codes: np.ndarray) -> np.ndarray:
    """Append a token that numbers items sharing the same prefix tuple: 0, 1, 2, ... (item order)."""
    prefix_codes = np.asarray(prefix_codes, dtype=np.int64)
    _, inverse = np.unique(prefix_codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    sorted_groups = inverse[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank_in_group = np.empty(len(order), dtype=np.int64)
    rank_in_group[order] = np.arange(len(order)) - group_start
    return np.concatenate([prefix_codes, rank_in_group[:, None]], axis=1)


class Trie:
    """Prefix trie of valid tuples as a transition table tensor.

    table[node, code] = child node id, or -1. Node 0 is the root; nodes at depth ``length`` are
    leaves and ``leaf_item[node]`` gives their item id. Node id -1 is the absorbing "invalid
    prefix" state: stepping from it stays -1, and it allows no code.
    """

    def __init__(self, codes: np.ndarray | torch.Tensor, vocab_size: int, device="cpu"):
        codes = np.asarray(codes.cpu() if isinstance(codes, torch.Tensor) else codes, dtype=np.int64)
        if codes.ndim != 2 or codes.shape[0] == 0:
            raise ValueError(f"codes must be a non-empty [num_items, length] array, got shape={codes.shape}")
        if codes.min() < 0 or codes.max() >= vocab_size:
            raise ValueError(f"codes must lie in [0, vocab_size={vocab_size}), got range "
                             f"[{codes.min()}, {codes.max()}]")
        n_items, length = codes.shape
        parent = np.zeros(n_items, dtype=np.int64)   # node of each item's current prefix
        n_nodes = 1
        rows, cols, children = [], [], []
        for t in range(length):
            key = parent * vocab_size + codes[:, t]  # (parent, code) identifies the child
            uniq, inverse = np.unique(key, return_inverse=True)
            child_ids = n_nodes + np.arange(len(uniq))
            rows.append(uniq // vocab_size)
            cols.append(uniq % vocab_size)
            children.append(child_ids)
            parent = child_ids[inverse.reshape(-1)]
            n_nodes += len(uniq)
        if len(np.unique(parent)) != n_items:
            raise ValueError("codes contain duplicate tuples: every item needs a unique tuple")
        table = np.full((n_nodes, vocab_size), NO_ITEM, dtype=np.int64)
        table[np.concatenate(rows), np.concatenate(cols)] = np.concatenate(children)
        leaf_item = np.full(n_nodes, NO_ITEM, dtype=np.int64)
        leaf_item[parent] = np.arange(n_items)
        depth = np.zeros(n_nodes, dtype=np.int64)
        for t, ch in enumerate(children):
            depth[ch] = t + 1
        self.length = length
        self.vocab_size = vocab_size
        self.num_nodes = n_nodes
        self.table = torch.as_tensor(table, device=device)              # [n_nodes, V]
        self.leaf_item = torch.as_tensor(leaf_item, device=device)      # [n_nodes]
        self.depth = torch.as_tensor(depth, device=device)              # [n_nodes]

    @property
    def device(self):
        return self.table.device

    def to(self, device) -> "Trie":
        new = object.__new__(Trie)
        new.__dict__.update(self.__dict__)
        new.table = self.table.to(device)
        new.leaf_item = self.leaf_item.to(device)
        new.depth = self.depth.to(device)
        return new

    def root(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, dtype=torch.long, device=self.device)

    def allowed(self, nodes: torch.Tensor) -> torch.Tensor:
        """nodes [...] -> bool [..., V]: which next codes keep the prefix valid."""
        safe = nodes.clamp(min=0)
        return (self.table[safe] >= 0) & (nodes >= 0).unsqueeze(-1)

    def step(self, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Advance each prefix by one code. Invalid stays invalid; out-of-range codes -> invalid."""
        in_range = (codes >= 0) & (codes < self.vocab_size) & (nodes >= 0)
        nxt = self.table[nodes.clamp(min=0), codes.clamp(0, self.vocab_size - 1)]
        return torch.where(in_range, nxt, torch.full_like(nxt, NO_ITEM))

    def walk(self, prefixes: torch.Tensor) -> torch.Tensor:
        """prefixes [..., t] -> node ids [...] (-1 when the prefix is not in the trie)."""
        nodes = torch.zeros(prefixes.shape[:-1], dtype=torch.long, device=self.device)
        for t in range(prefixes.shape[-1]):  # loop over the (<= 5) levels, vectorised over the batch
            nodes = self.step(nodes, prefixes[..., t])
        return nodes

    def items_at(self, nodes: torch.Tensor) -> torch.Tensor:
        """node ids [...] -> item ids [...] (-1 for the invalid node and for nodes that are not leaves)."""
        return torch.where(nodes >= 0, self.leaf_item[nodes.clamp(min=0)], torch.full_like(nodes, NO_ITEM))

    def lookup(self, tuples: torch.Tensor) -> torch.Tensor:
        """tuples [..., length] -> item ids [...] (-1 = hallucination)."""
        if tuples.shape[-1] != self.length:
            raise ValueError(f"tuples must have length {self.length}, got shape={tuple(tuples.shape)}")
        return self.items_at(self.walk(tuples.to(self.device).long()))


@dataclass
class SemanticIDs:
    """Item <-> tuple mapping for one catalogue.

    codes[i] is item i's tuple (``length = num_levels + 1`` tokens). The policy's output space at
    every step is ``vocab_size = max(codebook_sizes)`` codes; codes beyond a level's codebook
    are simply never valid there.
    """

    codes: np.ndarray                     # [n_items, length] int64
    codebook_sizes: tuple                 # per position
    collisions_before_uniqueness: int     # items minus distinct L-level tuples
    max_collision_group: int              # largest number of items sharing an L-level tuple
    _trie: Trie | None = field(default=None, repr=False)

    @property
    def n_items(self) -> int:
        return self.codes.shape[0]

    @property
    def length(self) -> int:
        return self.codes.shape[1]

    @property
    def vocab_size(self) -> int:
        return int(max(self.codebook_sizes))

    @property
    def trie(self) -> Trie:
        if self._trie is None:
            self._trie = Trie(self.codes, self.vocab_size)
        return self._trie

    def encode(self, items) -> np.ndarray:
        """item ids [...] -> tuples [..., length]."""
        items = np.asarray(items, dtype=np.int64)
        if items.size and (items.min() < 0 or items.max() >= self.n_items):
            raise ValueError(f"item ids must be in [0, {self.n_items}), got range "
                             f"[{items.min()}, {items.max()}]")
        return self.codes[items]

    def decode(self, tuples) -> np.ndarray:
        """tuples [..., length] -> item ids [...] (-1 for tuples that are no item)."""
        t = torch.as_tensor(np.asarray(tuples), dtype=torch.long)
        return self.trie.lookup(t).cpu().numpy()

    def is_valid(self, tuples) -> np.ndarray:
        return self.decode(tuples) >= 0

    @classmethod
    def from_prefix_codes(cls, prefix_codes: np.ndarray, codebook_size: int | None = None) -> "SemanticIDs":
        """Build from given level codes (e.g. published semantic IDs), adding the uniqueness token."""
        prefix_codes = np.asarray(prefix_codes, dtype=np.int64)
        if prefix_codes.ndim != 2 or prefix_codes.shape[0] == 0:
            raise ValueError(f"prefix_codes must be [n_items, L], got shape={prefix_codes.shape}")
        if prefix_codes.min() < 0:
            raise ValueError(f"prefix_codes must be non-negative, got min={prefix_codes.min()}")
        codes = add_uniqueness_token(prefix_codes)
        n_distinct = len(np.unique(prefix_codes, axis=0))
        max_group = int(codes[:, -1].max()) + 1
        k = int(prefix_codes.max()) + 1 if codebook_size is None else codebook_size
        if k <= prefix_codes.max():
            raise ValueError(f"codebook_size must exceed the largest code ({prefix_codes.max()}), "
                             f"got codebook_size={codebook_size}")
        sizes = tuple([k] * prefix_codes.shape[1] + [max(max_group, 1)])
        return cls(codes=codes, codebook_sizes=sizes,
                   collisions_before_uniqueness=int(prefix_codes.shape[0] - n_distinct),
                   max_collision_group=max_group)


def build_semantic_ids(features: np.ndarray, cfg: SIDConfig | None = None) -> SemanticIDs:
    """Residual k-means (RQ-KMeans) over item features, then the uniqueness token."""
    cfg = cfg or SIDConfig()
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"features must be a non-empty [n_items, dim] array, got shape={features.shape}")
    if cfg.codebook_size > features.shape[0]:
        raise ValueError(f"codebook_size must be at most the number of items ({features.shape[0]}), "
                         f"got codebook_size={cfg.codebook_size}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or inf")
    x = torch.from_numpy(features.astype(np.float64))
    if cfg.standardize:
        x = (x - x.mean(0)) / x.std(0).clamp(min=1e-8)
    gen = torch.Generator().manual_seed(cfg.seed)
    residual = x.clone()
    levels = []
    for _ in range(cfg.num_levels):
        centroids, codes = kmeans(residual, cfg.codebook_size, cfg.kmeans_iters, gen)
        levels.append(codes.numpy())
        residual = residual - centroids[codes]
    prefix = np.stack(levels, axis=1)
    return SemanticIDs.from_prefix_codes(prefix, codebook_size=cfg.codebook_size)


def sids_hash(sids: SemanticIDs) -> str:
    """Fingerprint of the item -> tuple mapping a checkpoint was trained with."""
    return hashlib.sha256(np.ascontiguousarray(sids.codes, dtype=np.int64).tobytes()).hexdigest()[:16]
