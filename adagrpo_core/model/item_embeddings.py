"""Collaborative item embeddings from the training clicks, and the features semantic IDs are built from.

Semantic IDs built from item attributes alone group items by what they are (category, brand),
not by who clicks them together. On a real log without published IDs that puts items users
never co-click under one prefix. This module adds the collaborative signal:

1. **Co-occurrence.** Within each user's *training* clicks (all but the last two, see
   :meth:`Interactions.train_positions`; validation and test clicks are never read), every pair
   of items at most ``window`` positions apart adds ``1 / distance`` to their count, in both
   directions. Repeats of the same item are not counted.
2. **PPMI.** ``max(0, log(P(i, j) / (P(i) P_alpha(j))))`` where ``P_alpha`` is the item marginal
   raised to ``context_alpha`` and renormalised (this damps the inflated PMI of rare items),
   made symmetric by averaging with its transpose.
3. **Truncated SVD** of that sparse matrix by a seeded randomized SVD (numpy only: a random
   projection, a few power iterations, an exact SVD of the small projected matrix), so the result
   is the same for the same seed. An item's embedding is its row of ``U * sqrt(S)``,
   L2-normalised. Items with no training co-occurrence at all have no collaborative signal and
   get a random unit vector (seeded), so their IDs spread instead of piling into one prefix.

:func:`combine_features` concatenates blocks (e.g. these embeddings and attribute features):
each block is centred and scaled to a mean squared row norm of 1, then multiplied by the square
root of its weight, so a block's share of the k-means distance is its weight whatever its width.
:func:`collaborative_semantic_ids` builds RQ-KMeans IDs from ``"cooc"``, ``"attributes"`` or
``"both"``. Their settings, :class:`~adagrpo_core.data.sequences.EmbeddingConfig`, are part of a
dataset's config (``SequencesConfig.embedding``), so they live with it in ``data/sequences.py``.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from ..common.checks import check_choice, check_int, check_range
from ..data.interactions import Interactions
from ..data.sequences import KINDS, EmbeddingConfig
from .semantic_ids import SemanticIDs, SIDConfig, build_semantic_ids


def cooccurrence_counts(data: Interactions, window: int = 5) -> sp.csr_matrix:
    """Symmetric [n_items, n_items] weighted counts of items at most ``window`` positions apart
    in the same user's training clicks (weight 1 / distance; the diagonal stays 0)."""
    check_int("window", window, lo=1)
    mask = data.train_positions()
    items = data.seq_items[mask]
    users = np.repeat(np.arange(data.n_users), data.seq_lengths)[mask]
    # each user's training clicks are one contiguous run of ``items``, in order
    rows, cols, vals = [], [], []
    for d in range(1, window + 1):
        same = users[d:] == users[:-d]
        a, b = items[:-d][same], items[d:][same]
        keep = a != b
        a, b = a[keep], b[keep]
        rows += [a, b]
        cols += [b, a]
        vals.append(np.full(2 * len(a), 1.0 / d))
    n = data.n_items
    if not vals or not sum(len(v) for v in vals):
        return sp.csr_matrix((n, n))
    m = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return m.tocsr()   # duplicates are summed


def ppmi(counts: sp.csr_matrix, context_alpha: float = 0.75) -> sp.csr_matrix:
    """Positive PMI of a symmetric count matrix, with the context marginal smoothed by
    ``context_alpha``, made symmetric again by averaging with the transpose."""
    c = sp.coo_matrix(counts)
    keep = c.data > 0
    r, k, v = c.row[keep], c.col[keep], c.data[keep]
    total = float(v.sum())
    if total <= 0:
        return sp.csr_matrix(counts.shape)
    marg = np.asarray(counts.sum(1)).ravel()
    ctx = marg ** context_alpha
    # log(P(i,j) / (P(i) * P_alpha(j))) = log(c_ij) - log(m_i) - alpha log(m_j) + log(sum m^alpha)
    pmi = np.log(v) - np.log(marg[r]) - context_alpha * np.log(marg[k]) + np.log(ctx.sum())
    pos = pmi > 0
    m = sp.coo_matrix((pmi[pos], (r[pos], k[pos])), shape=counts.shape).tocsr()
    return ((m + m.T) * 0.5).tocsr()


def randomized_svd(a, k: int, power_iters: int = 6, oversample: int = 10, seed: int = 0):
    """Top-``k`` singular triplets of ``a`` (sparse or dense, [n, m]) by a seeded randomized SVD:
    Q spans a @ Omega after ``power_iters`` power iterations (re-orthonormalised each time),
    then the exact SVD of the small Q.T @ a. Returns (U [n, k], S [k], Vt [k, m])."""
    n, m = a.shape
    check_int("k", k, lo=1, hi=min(n, m))
    rng = np.random.default_rng(seed)
    p = min(k + oversample, min(n, m))
    q, _ = np.linalg.qr(np.asarray(a @ rng.standard_normal((m, p))))
    for _ in range(power_iters):
        z, _ = np.linalg.qr(np.asarray(a.T @ q))
        q, _ = np.linalg.qr(np.asarray(a @ z))
    b = np.asarray((a.T @ q).T)                                        # [p, m] = Q.T @ a
    ub, s, vt = np.linalg.svd(b, full_matrices=False)
    return (q @ ub)[:, :k], s[:k], vt[:k]


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def cooc_embeddings(data: Interactions, cfg: EmbeddingConfig | None = None) -> np.ndarray:
    """[n_items, dim] float32 L2-normalised co-occurrence embeddings from the training clicks only
    (see the module docstring); deterministic for a given ``cfg.seed``."""
    cfg = cfg or EmbeddingConfig()
    n = data.n_items
    m = ppmi(cooccurrence_counts(data, cfg.window), cfg.context_alpha)
    k = min(cfg.dim, max(n - 1, 1))
    emb = np.zeros((n, cfg.dim))
    if m.nnz:
        u, s, _ = randomized_svd(m, k, cfg.power_iters, seed=cfg.seed)
        emb[:, :k] = u * np.sqrt(s)
    emb = unit_rows(emb)
    cold = np.linalg.norm(emb, axis=1) == 0                            # no training co-occurrence
    if cold.any():
        emb[cold] = unit_rows(np.random.default_rng(cfg.seed + 1).standard_normal((int(cold.sum()), cfg.dim)))
    return emb.astype(np.float32)


def combine_features(blocks, weights=None) -> np.ndarray:
    """Concatenate feature blocks ([n_items, d_b] each) into one matrix. Each block is centred and
    scaled to a mean squared row norm of 1, then multiplied by sqrt(weight), so under squared
    Euclidean distance (k-means) a block counts by its weight, not by its number of columns."""
    blocks = [np.asarray(b, dtype=np.float64) for b in blocks]
    weights = [1.0] * len(blocks) if weights is None else list(weights)
    if not blocks:
        raise ValueError("blocks must hold at least one [n_items, dim] array, got none")
    if len(weights) != len(blocks):
        raise ValueError(f"weights must have one entry per block ({len(blocks)}), got weights={weights!r}")
    n = blocks[0].shape[0]
    out = []
    for i, (b, w) in enumerate(zip(blocks, weights)):
        if b.ndim != 2 or b.shape[0] != n:
            raise ValueError(f"block {i} must be [n_items={n}, dim], got shape={b.shape}")
        if not np.isfinite(b).all():
            raise ValueError(f"block {i} contains NaN or inf")
        check_range(f"weights[{i}]", w, lo=0, lo_open=True)
        b = b - b.mean(0, keepdims=True)
        scale = np.sqrt((b ** 2).sum(1).mean())
        out.append(b / (scale if scale > 0 else 1.0) * np.sqrt(w))
    return np.concatenate(out, axis=1).astype(np.float32)


def id_features(data: Interactions, kind: str = "cooc", attributes=None,
                cfg: EmbeddingConfig | None = None) -> np.ndarray:
    """The matrix semantic IDs are clustered from: the co-occurrence embeddings (``"cooc"``), the
    attribute features (``"attributes"``) or both, weighted (``"both"``), each block normalised
    by :func:`combine_features`."""
    check_choice("kind", kind, KINDS)
    cfg = cfg or EmbeddingConfig()
    if kind != "cooc":
        if attributes is None:
            raise ValueError(f"kind={kind!r} needs attribute features, got attributes=None "
                             "(a dataset without an attributes file has only kind='cooc')")
        attributes = np.asarray(attributes)
        if attributes.ndim != 2 or attributes.shape[0] != data.n_items:
            raise ValueError(f"attributes must be [n_items={data.n_items}, dim], got shape={attributes.shape}")
    if kind == "attributes":
        return combine_features([attributes])
    emb = cooc_embeddings(data, cfg)
    if kind == "cooc":
        return combine_features([emb])
    return combine_features([emb, attributes], [1.0, cfg.attribute_weight])


def collaborative_semantic_ids(data: Interactions, cfg: SIDConfig | None = None, kind: str = "cooc",
                               attributes=None, emb_cfg: EmbeddingConfig | None = None) -> SemanticIDs:
    """RQ-KMeans semantic IDs (:func:`build_semantic_ids`) of :func:`id_features`. The blocks are
    already scaled, so the per-column z-scoring of ``cfg.standardize`` is not applied (it would
    undo the block weights)."""
    cfg = cfg or SIDConfig()
    feats = id_features(data, kind, attributes, emb_cfg)
    return build_semantic_ids(feats, replace(cfg, standardize=False))
