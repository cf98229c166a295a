"""Real datasets made ready for the models: item features, categories, semantic IDs, and the loaders.

``data/amazon.py`` and ``data/sequences.py`` fetch, parse and verify the files of a ``user item
item ...`` log; this module builds what the models need from them:

* the item features and categories (:func:`attribute_features`: TF-IDF + truncated SVD of the
  attribute matrix, k-means categories; without attributes, co-occurrence embeddings of the
  training clicks, :mod:`adagrpo_core.model.item_embeddings`);
* the whole dataset with its semi-synthetic impressions (:func:`load_sequences_dataset`, and
  :func:`load_amazon` / :func:`load_sequences` for an ``AmazonConfig`` / ``SequencesConfig``);
* its semantic IDs: LETTER's published ones (:func:`letter_semantic_ids`,
  :func:`amazon_semantic_ids`) or, for a ``SequencesConfig``, RQ-KMeans over collaborative
  embeddings (:func:`sequences_semantic_ids`).

    data = load_amazon("beauty", data_dir="../shared/data/amazon")   # or data_dir=None: download
    sids = amazon_semantic_ids(data, data_dir="../shared/data/amazon")
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..common.checks import check_int
from ..data.amazon import (DATASETS, AmazonConfig, AmazonData, attribute_matrix, fetch, letter_codes,
                           parse_sequences, semi_synthetic_impressions)
from ..data.sequences import EmbeddingConfig, SequencesConfig
from .item_embeddings import collaborative_semantic_ids, cooc_embeddings
from .semantic_ids import SemanticIDs, SIDConfig, kmeans


def attribute_features(attr_path: str | os.PathLike, n_items: int, dim: int = 32, seed: int = 0,
                       n_categories: int = 50):
    """Item features and a category from ``item2attributes.json`` (1-indexed item id -> attribute
    ids). Features: the multi-hot attribute matrix, TF-IDF weighted, reduced to ``dim`` dims by a
    truncated SVD, rows L2-normalised (items without attributes get a small random vector).
    Category: a k-means cluster (``n_categories``) of those features: the raw attributes mix a
    handful of top-level categories with brands, so no single attribute is a useful category."""
    check_int("dim", dim, lo=1)
    check_int("n_categories", n_categories, lo=1)
    m = attribute_matrix(attr_path, n_items)
    df = m.sum(0)
    idf = np.log((1 + n_items) / (1 + df)).astype(np.float32) + 1.0
    x = m * idf
    x -= x.mean(0, keepdims=True)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    k = min(dim, len(s))
    feats = u[:, :k] * s[:k]
    if k < dim:
        feats = np.pad(feats, ((0, 0), (0, dim - k)))
    rng = np.random.default_rng(seed)
    empty = m.sum(1) == 0
    feats[empty] = rng.normal(scale=1e-3, size=(int(empty.sum()), dim))
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-8)
    gen = torch.Generator().manual_seed(seed)
    _, codes = kmeans(torch.as_tensor(feats, dtype=torch.float32), min(n_categories, n_items), 50, gen)
    return feats.astype(np.float32), codes.numpy().astype(np.int64)


def load_sequences_dataset(seq_path, attr_path=None, name: str = "custom", feature_dim: int = 32,
                           num_negatives: int = 4, exposure_strength: float = 1.0, seed: int = 0,
                           min_interactions: int = 3, drop_short: bool = False,
                           n_categories: int = 50) -> AmazonData:
    """Any dataset in the ``user item item ...`` format, with optional item attributes. Without
    them, an item's features are its co-occurrence embedding (``feature_dim`` dims, from the
    training clicks only: :mod:`adagrpo_core.model.item_embeddings`) and it has no category.
    Semi-synthetic impressions are attached for the ranker."""
    user_ids, seq_items, offsets, n_items, dropped = parse_sequences(seq_path, min_interactions, drop_short)
    if n_items < 2:
        raise ValueError(f"{seq_path}: the catalogue has n_items={n_items} item(s); semi-synthetic exposure "
                         "needs at least 2 (a negative must differ from the clicked item)")
    feats, cat = (attribute_features(attr_path, n_items, feature_dim, seed, n_categories) if attr_path is not None
                  else (None, None))  # no categories: the ranker then has no category embedding
    data = AmazonData(seq_items, offsets, n_items, item_features=feats, item_category=cat,
                      user_ids=user_ids, name=name, dropped_users=dropped)
    if feats is None:
        data.item_features = cooc_embeddings(data, EmbeddingConfig(dim=feature_dim, seed=seed))
    data.impressions = semi_synthetic_impressions(data, num_negatives, exposure_strength, seed)
    return data


def load_amazon(dataset: str | AmazonConfig = "beauty", data_dir=None, cache_dir=None, **kwargs) -> AmazonData:
    """Amazon ``dataset`` from a local folder (``data_dir``) or its verified public sources.
    ``dataset`` may be an :class:`AmazonConfig`, whose fields then set everything."""
    if isinstance(dataset, AmazonConfig):
        cfg = dataset
        data_dir = cfg.resolved_data_dir() if data_dir is None else data_dir
        kwargs = dict(feature_dim=cfg.feature_dim, n_categories=cfg.n_categories, num_negatives=cfg.num_negatives,
                      exposure_strength=cfg.exposure_strength, seed=cfg.seed)
        dataset = cfg.dataset
    else:
        cfg = None
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got dataset={dataset!r}")
    seq_name, attr_name = DATASETS[dataset]
    data = load_sequences_dataset(fetch(seq_name, data_dir, cache_dir), fetch(attr_name, data_dir, cache_dir),
                                  name=dataset, **kwargs)
    data.cfg = cfg
    return data


def load_sequences(cfg: SequencesConfig) -> AmazonData:
    """The dataset of a :class:`SequencesConfig` (semi-synthetic impressions included), its ``cfg``
    set to ``cfg``."""
    data = load_sequences_dataset(cfg.path, cfg.attributes, name=cfg.name, feature_dim=cfg.feature_dim,
                                  num_negatives=cfg.num_negatives, exposure_strength=cfg.exposure_strength,
                                  seed=cfg.seed, min_interactions=cfg.min_interactions,
                                  drop_short=cfg.drop_short, n_categories=cfg.n_categories)
    data.cfg = cfg
    return data


def letter_semantic_ids(path: str | os.PathLike, n_items: int | None = None) -> SemanticIDs:
    """LETTER's semantic IDs (``{"k": ["<a_N>", "<b_N>", ...]}``, key k = item k, 0-indexed; read
    and checked by :func:`~adagrpo_core.data.amazon.letter_codes`) as :class:`SemanticIDs`, plus the
    uniqueness token that separates colliding tuples."""
    return SemanticIDs.from_prefix_codes(letter_codes(path, n_items))


def amazon_semantic_ids(data: AmazonData, data_dir=None, cache_dir=None) -> SemanticIDs:
    """The dataset's published semantic IDs (LETTER's, for Beauty)."""
    if data.name != "beauty":
        raise ValueError(f"published semantic IDs exist for 'beauty' only, got dataset={data.name!r}")
    return letter_semantic_ids(fetch("Beauty_letter_semantic_ids.json", data_dir, cache_dir), data.n_items)


def sequences_semantic_ids(data: AmazonData, cfg: SequencesConfig, sid_cfg: SIDConfig) -> SemanticIDs:
    """The dataset's semantic IDs: the given LETTER-format file, else RQ-KMeans (``sid_cfg``) over
    the features ``cfg.id_kind`` names (the attribute block is ``data.item_features``)."""
    if cfg.semantic_ids is not None:
        return letter_semantic_ids(cfg.semantic_ids, data.n_items)
    attrs = data.item_features if cfg.attributes is not None else None
    return collaborative_semantic_ids(data, sid_cfg, cfg.id_kind, attrs, cfg.embedding)
