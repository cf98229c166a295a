"""Cached artefacts: world, semantic IDs, SFT checkpoint, ranker — keyed by a hash of their configs.

A sweep over GRPO/gate parameters therefore builds the world and trains the SFT base and the
ranker once. The cache lives in ``ADAGRPO_CACHE`` (default ``./.cache``); delete a folder to
rebuild it. Every write is atomic, so an interrupted build never leaves a half-written artefact.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

from .policy import PolicyConfig
from .semantic_ids import SemanticIDs, SIDConfig, build_semantic_ids
from .sft import SFTConfig, train_sft
from .utils import atomic_write_bytes, config_hash, default_cache_dir
from .worlds import World, WorldConfig, build_world


@dataclass
class Profile:
    """All configs of the expensive, cached stages."""

    world: WorldConfig = field(default_factory=WorldConfig.quick)
    sid: SIDConfig = field(default_factory=SIDConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)


def _cached_pickle(path: Path, build):
    if path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)
    obj = build()
    atomic_write_bytes(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return obj


def get_world(cfg: WorldConfig, cache_dir=None, progress: bool = False) -> World:
    cache = Path(cache_dir or default_cache_dir())
    return _cached_pickle(cache / "worlds" / f"{config_hash(cfg)}.pkl", lambda: build_world(cfg, progress))


def get_sids(world, cfg: SIDConfig, cache_dir=None, world_key: str | None = None) -> SemanticIDs:
    cache = Path(cache_dir or default_cache_dir())
    key = config_hash(world_key or config_hash(world.cfg), cfg)

    return _cached_pickle(cache / "sids" / f"{key}.pkl", lambda: build_semantic_ids(world.item_features, cfg))


def get_sft(world, sids: SemanticIDs, policy_cfg: PolicyConfig, sft_cfg: SFTConfig, cache_dir=None,
            world_key: str | None = None, progress: bool = True) -> Path:
    """Train (or resume, or reuse) the SFT policy; returns the folder holding best.pt / final.pt."""
    cache = Path(cache_dir or default_cache_dir())
    key = config_hash(world_key or config_hash(world.cfg), sids.codes.tobytes().hex()[:64], policy_cfg, sft_cfg)
    out = cache / "sft" / key
    if not (out / "final.pt").exists():
        train_sft(world, sids, policy_cfg, sft_cfg, out_dir=out, resume=True, progress=progress)
    return out


def get_ranker(world, ranker_cfg, cache_dir=None, world_key: str | None = None, progress: bool = True):
    """Train (or reuse) the ranker for a world; returns the loaded ranker."""
    from .ranker import load_ranker, train_ranker
    cache = Path(cache_dir or default_cache_dir())
    key = config_hash(world_key or config_hash(world.cfg), ranker_cfg)
    path = cache / "rankers" / f"{key}.pt"
    if path.exists():
        return load_ranker(path)
    ranker, _ = train_ranker(world, ranker_cfg, checkpoint_path=path, progress=progress)
    return ranker
