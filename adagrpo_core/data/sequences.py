"""Any ``user item item ...`` dataset as a cached pipeline stage (SequencesConfig) and its EmbeddingConfig.

:class:`SequencesConfig` plays for your own file the role :class:`~adagrpo_core.data.amazon.AmazonConfig`
plays for Amazon Beauty: ``pipeline.get_world`` loads it (and caches the result), and
``pipeline.get_sids`` builds its semantic IDs. The IDs come from a file in LETTER's JSON format
when one is given (``semantic_ids``), otherwise from RQ-KMeans over collaborative co-occurrence
embeddings, plus the item attributes when an attributes file is given. :class:`EmbeddingConfig`
sets those embeddings; they are computed in :mod:`adagrpo_core.model.item_embeddings`, and the
dataset and its IDs are built in :mod:`adagrpo_core.model.datasets`. The cache key holds the
files' sha256, not their paths: editing a file rebuilds everything built from it, and moving it
rebuilds nothing.

    cfg = SequencesConfig("data/MyShop.txt", attributes="data/MyShop_item2attributes.json")
    data = pipeline.get_world(cfg)        # name defaults to the file stem, here 'MyShop'
"""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from ..common.checks import check_choice, check_int, check_range
from .amazon import check_log_fields
from .files import sha256_of

KINDS = ("cooc", "attributes", "both")
"""What RQ-KMeans IDs can be built from: co-occurrence embeddings, attribute features, or both."""


@dataclass
class EmbeddingConfig:
    """Co-occurrence embeddings (window counts -> PPMI -> truncated SVD) and the block weights."""

    dim: int = 32
    """Embedding size (capped at n_items - 1; padded with zeros beyond the catalogue's rank)."""
    window: int = 5
    """Items at most this many positions apart in a user's training clicks co-occur."""
    context_alpha: float = 0.75
    """Exponent of the smoothed item marginal in the PMI (1 = plain PMI)."""
    power_iters: int = 6
    """Power iterations of the randomized SVD (more = closer to the exact SVD)."""
    attribute_weight: float = 1.0
    """Weight of the attribute block next to the co-occurrence block (weight 1) in kind 'both'."""
    seed: int = 0
    """Seed of the randomized SVD and of the vectors of items without co-occurrences."""

    def __post_init__(self):
        check_int("dim", self.dim, lo=1)
        check_int("window", self.window, lo=1)
        check_range("context_alpha", self.context_alpha, 0, 1, lo_open=True)
        check_int("power_iters", self.power_iters, lo=0)
        check_range("attribute_weight", self.attribute_weight, lo=0, lo_open=True)
        check_int("seed", self.seed, lo=0)


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass
class SequencesConfig:
    """A ``user item item ...`` file (1-indexed item ids, chronological), optional item attributes
    and optional published semantic IDs, loaded as a dataset of the pipeline."""

    path: str
    """The sequences file: one line per user, ``user item item ...``."""
    attributes: str | None = None
    """Optional ``{item id: [attribute ids]}`` JSON file (1-indexed item ids), as Amazon's
    ``*_item2attributes.json``: item features and categories for the ranker and the IDs."""
    semantic_ids: str | None = None
    """Optional semantic IDs in LETTER's JSON format (``{"0": ["<a_1>", "<b_7>", ...]}``, key k is
    item k + 1 of the sequences file). None: RQ-KMeans IDs built from ``sid_features``."""
    name: str | None = None
    """Dataset name (tables go to ``<out>/<name>/``); None = the sequences file's stem. Letters,
    digits, '.', '_' and '-', starting with a letter or digit."""
    sid_features: str = "auto"
    """What RQ-KMeans IDs are built from: 'cooc' (co-occurrence embeddings of the training clicks),
    'attributes', 'both', or 'auto' ('both' with an attributes file, else 'cooc'). Unused when
    ``semantic_ids`` is given."""
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    """The co-occurrence embeddings the IDs are built from, and the attribute block's weight."""
    feature_dim: int = 32
    """Item feature size for the ranker (attribute SVD, or co-occurrence embedding without attributes)."""
    n_categories: int = 50
    """Item categories (k-means clusters of the attribute features); none without attributes."""
    num_negatives: int = 4
    """Semi-synthetic exposure: negatives shown with every observed click."""
    exposure_strength: float = 1.0
    """Semi-synthetic exposure: popularity exponent of the negative distribution (0 = uniform)."""
    min_interactions: int = 3
    """Fewest clicks a user needs (the leave-one-out split needs 3)."""
    drop_short: bool = False
    """Drop users with fewer than ``min_interactions`` clicks instead of raising an error."""
    seed: int = 0
    """Seed of the features, the categories and the exposure draws."""

    def __post_init__(self):
        self.path = _existing_file("path", self.path)
        if self.attributes is not None:
            self.attributes = _existing_file("attributes", self.attributes)
        if self.semantic_ids is not None:
            self.semantic_ids = _existing_file("semantic_ids", self.semantic_ids)
        if self.name is None:
            self.name = Path(self.path).stem
            if not NAME_PATTERN.fullmatch(self.name):
                raise ValueError(f"name: the file stem {self.name!r} is not a usable folder name "
                                 "(letters, digits, '.', '_', '-'); pass a name")
        elif not isinstance(self.name, str) or not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(f"name must be letters, digits, '.', '_' or '-' (starting with a letter or "
                             f"digit), got name={self.name!r}")
        check_choice("sid_features", self.sid_features, ("auto",) + KINDS)
        if self.sid_features in ("attributes", "both") and self.attributes is None:
            raise ValueError(f"sid_features={self.sid_features!r} needs an attributes file, got attributes=None")
        if isinstance(self.embedding, dict):
            self.embedding = EmbeddingConfig(**self.embedding)
        if not isinstance(self.embedding, EmbeddingConfig):
            raise ValueError(f"embedding must be an EmbeddingConfig, got embedding={self.embedding!r}")
        check_log_fields(self)
        check_int("min_interactions", self.min_interactions, lo=3)
        if not isinstance(self.drop_short, bool):
            raise ValueError(f"drop_short must be True or False, got drop_short={self.drop_short!r}")
        check_int("seed", self.seed, lo=0)

    @property
    def id_kind(self) -> str:
        """The features RQ-KMeans IDs are built from, with 'auto' resolved."""
        if self.sid_features != "auto":
            return self.sid_features
        return "both" if self.attributes is not None else "cooc"

    def fingerprint(self) -> dict:
        """The cache key's content: every field, with each file replaced by its sha256."""
        out = asdict(self)
        for name in ("path", "attributes", "semantic_ids"):
            if out[name] is not None:
                out[name] = _sha256(out[name], *_stat(out[name]))
        return {"__type__": type(self).__name__, **out}


def _existing_file(name: str, value) -> str:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ValueError(f"{name} must be a file path, got {name}={value!r}")
    if not Path(value).is_file():
        raise FileNotFoundError(f"{name}: no such file: {str(value)!r}")
    return str(value)


def _stat(path: str) -> tuple:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file; memoised on (path, size, mtime), so an edited file is hashed again."""
    return sha256_of(path)
