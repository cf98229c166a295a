"""Cached artefacts: world, semantic IDs, SFT checkpoint, ranker, SASRec — keyed by a hash of their configs.

A sweep over GRPO/gate parameters therefore builds the world and trains the SFT base and the
ranker once. Every artefact is built with one torch thread, so it is the same whatever thread
count the caller runs with. The cache lives in ``ADAGRPO_CACHE`` (default ``./.cache``); delete a folder to
rebuild it. Every write is atomic, so an interrupted build never leaves a half-written artefact.
"""
from __future__ import annotations

import multiprocessing as mp
import pickle
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from .configs import SuiteConfig, get_profile
from .data.amazon import AmazonConfig
from .data.relog import relogged_world
from .data.sequences import EmbeddingConfig, SequencesConfig
from .data.world import WorldConfig, build_world
from .model.datasets import amazon_semantic_ids, load_amazon, load_sequences, sequences_semantic_ids
from .model.item_embeddings import collaborative_semantic_ids
from .model.policy import PolicyConfig
from .model.sasrec import train_sasrec
from .model.semantic_ids import SemanticIDs, SIDConfig, build_semantic_ids, sids_hash
from .common.paths import default_cache_dir
from .reward.ensemble import bootstrap_log
from .reward.ranker import load_ranker
from .reward.training import train_ranker
from .common.runtime import torch_threads
from .common.storage import DamagedFileError, atomic_write_bytes, config_hash, load_checkpoint
from .train.sft import SFTConfig, train_sft


def _cached_pickle(path: Path, build):
    """The object pickled at ``path``, else build it and write it there atomically. A damaged
    entry (truncated, empty, not a pickle) is a cache miss: it is rebuilt, with a warning."""
    if path.exists():
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except Exception as e:  # a cache entry is never trusted blindly: rebuild it
            warnings.warn(f"cache entry {path} is damaged ({type(e).__name__}: {e}); rebuilding it")
    with torch_threads(1):        # a cached artefact must not depend on the caller's thread count
        obj = build()
    atomic_write_bytes(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return obj


def data_key(cfg) -> str:
    """Cache key of a world / dataset config (a real dataset's local folder and its choice of
    semantic IDs are not part of it:
    its files are verified by sha256 whatever their source; a SequencesConfig's files enter by
    their sha256, not their paths)."""
    if isinstance(cfg, AmazonConfig):   # the IDs are not the data: they enter keys through get_sids / sids_hash
        cfg = replace(cfg, data_dir=None, semantic_ids="letter")
    if isinstance(cfg, SequencesConfig):
        return config_hash(cfg.fingerprint())
    return config_hash(cfg)


def get_world(cfg: WorldConfig | AmazonConfig | SequencesConfig, cache_dir=None, progress: bool = False):
    """The simulated world for a WorldConfig, the real dataset for an AmazonConfig or a
    SequencesConfig (cached)."""
    cache = Path(cache_dir or default_cache_dir())
    if isinstance(cfg, AmazonConfig):
        data = _cached_pickle(cache / "datasets" / f"{data_key(cfg)}.pkl", lambda: load_amazon(cfg, cache_dir=cache))
        data.cfg = cfg     # same data; the caller's choice of IDs and folder
        return data
    if isinstance(cfg, SequencesConfig):
        data = _cached_pickle(cache / "datasets" / f"{data_key(cfg)}.pkl", lambda: load_sequences(cfg))
        data.cfg = cfg     # same contents, maybe at other paths now: keep the paths the caller gave
        return data
    return _cached_pickle(cache / "worlds" / f"{config_hash(cfg)}.pkl", lambda: build_world(cfg, progress))


def get_sids(world, cfg: SIDConfig, cache_dir=None, world_key: str | None = None) -> SemanticIDs:
    """Residual k-means IDs of the items' features, or a real dataset's published IDs when its
    config asks for them (``AmazonConfig.semantic_ids == 'letter'``; ``cfg`` is then unused), or
    co-occurrence + attribute RQ-KMeans IDs (``'collaborative'``). For a
    SequencesConfig: its semantic-IDs file when given, else RQ-KMeans (``cfg``) over collaborative
    co-occurrence embeddings (plus attributes when it has them)."""
    cache = Path(cache_dir or default_cache_dir())
    wcfg = getattr(world, "cfg", None)
    if isinstance(wcfg, SequencesConfig):
        key = config_hash(world_key or data_key(wcfg), "letter" if wcfg.semantic_ids else cfg)
        return _cached_pickle(cache / "sids" / f"{key}.pkl", lambda: sequences_semantic_ids(world, wcfg, cfg))
    if isinstance(wcfg, AmazonConfig) and wcfg.semantic_ids == "letter":
        key = config_hash(world_key or data_key(wcfg), "letter")
        return _cached_pickle(cache / "sids" / f"{key}.pkl",
                              lambda: amazon_semantic_ids(world, wcfg.resolved_data_dir(), cache))
    if isinstance(wcfg, AmazonConfig) and wcfg.semantic_ids == "collaborative":
        key = config_hash(world_key or data_key(wcfg), cfg, EmbeddingConfig(), "collaborative")
        return _cached_pickle(cache / "sids" / f"{key}.pkl", lambda: collaborative_semantic_ids(
            world, cfg, "both", world.item_features, EmbeddingConfig()))
    key = config_hash(world_key or data_key(wcfg), cfg)
    return _cached_pickle(cache / "sids" / f"{key}.pkl", lambda: build_semantic_ids(world.item_features, cfg))


def _sft_dir(world, sids: SemanticIDs, policy_cfg: PolicyConfig, sft_cfg: SFTConfig, cache_dir=None,
             world_key: str | None = None) -> Path:
    """The cache folder of an SFT run (its key: data, IDs, policy and SFT configs)."""
    key = config_hash(world_key or data_key(world.cfg), sids_hash(sids), policy_cfg, sft_cfg)
    return Path(cache_dir or default_cache_dir()) / "sft" / key


def _relogs(logging_bias, log_share) -> bool:
    return logging_bias is not None or log_share < 1


def _ranker_path(world, ranker_cfg, cache_dir=None, world_key: str | None = None, logging_bias=None,
                 log_share: float = 1.0) -> Path:
    """The cache file of a trained ranker (its key: data, ranker config and, for a re-logged
    impression log, its logging bias and share)."""
    relog = ({"logging_bias": logging_bias, "log_share": log_share},) if _relogs(logging_bias, log_share) else ()
    key = config_hash(world_key or data_key(world.cfg), ranker_cfg, *relog)
    return Path(cache_dir or default_cache_dir()) / "rankers" / f"{key}.pt"


def sft_cached(world, sids: SemanticIDs, policy_cfg: PolicyConfig, sft_cfg: SFTConfig, cache_dir=None,
               world_key: str | None = None) -> bool:
    """Whether :func:`get_sft` would find a finished SFT run in the cache (without loading it)."""
    return (_sft_dir(world, sids, policy_cfg, sft_cfg, cache_dir, world_key) / "final.pt").exists()


def ranker_cached(world, ranker_cfg, cache_dir=None, world_key: str | None = None, logging_bias=None,
                  log_share: float = 1.0) -> bool:
    """Whether :func:`get_ranker` would find a trained ranker in the cache (without loading it)."""
    return _ranker_path(world, ranker_cfg, cache_dir, world_key, logging_bias, log_share).exists()


def ranker_file(world_cfg, ranker_cfg, cache_dir=None, logging_bias=None, log_share: float = 1.0) -> Path:
    """Where :func:`get_ranker` keeps the ranker of a world's (or dataset's) config, built or not."""
    return _ranker_path(None, ranker_cfg, cache_dir, data_key(world_cfg), logging_bias, log_share)


def ensemble_files(world_cfg, ranker_cfg, ens_cfg, cache_dir=None, logging_bias=None, log_share: float = 1.0) -> list:
    """Where :func:`get_ensemble` keeps an ensemble's members, built or not."""
    return _ensemble_paths(SimpleNamespace(cfg=world_cfg), ranker_cfg, ens_cfg, cache_dir, logging_bias, log_share)


def get_sft(world, sids: SemanticIDs, policy_cfg: PolicyConfig, sft_cfg: SFTConfig, cache_dir=None,
            world_key: str | None = None, progress: bool = True) -> Path:
    """Train (or resume, or reuse) the SFT policy; returns the folder holding best.pt / final.pt."""
    out = _sft_dir(world, sids, policy_cfg, sft_cfg, cache_dir, world_key)
    if (out / "final.pt").exists():
        try:
            load_checkpoint(out / "final.pt")
            load_checkpoint(out / "best.pt")
        except (DamagedFileError, FileNotFoundError) as e:
            warnings.warn(f"SFT cache {out} is damaged ({e}); retraining it")
            for f in out.glob("*.pt"):
                f.unlink()
    if not (out / "final.pt").exists() and (out / "last.pt").exists():
        try:                    # a damaged resume point in the cache: start the SFT run again
            load_checkpoint(out / "last.pt")
        except DamagedFileError as e:
            warnings.warn(f"{e}; retraining the SFT policy from scratch")
            for f in out.glob("*.pt"):
                f.unlink()
    if not (out / "final.pt").exists():
        with torch_threads(1):
            train_sft(world, sids, policy_cfg, sft_cfg, out_dir=out, resume=True, progress=progress)
    return out


def get_ranker(world, ranker_cfg, cache_dir=None, world_key: str | None = None, progress: bool = True,
               logging_bias: float | None = None, log_share: float = 1.0):
    """Train (or reuse) the ranker for a world; returns the loaded ranker. ``logging_bias`` /
    ``log_share`` (a RewardConfig's ``ranker_log``): train it instead on the world's slates
    re-logged at that exposure bias, a share of them (:func:`~adagrpo_core.data.relog.relogged_world`,
    seeded by the ranker's seed)."""
    path = _ranker_path(world, ranker_cfg, cache_dir, world_key, logging_bias, log_share)
    if path.exists():
        try:
            return load_ranker(path)
        except DamagedFileError as e:
            warnings.warn(f"{e}; retraining the ranker")
    with torch_threads(1):
        ranker, _ = train_ranker(ranker_log_data(world, ranker_cfg, logging_bias, log_share), ranker_cfg,
                                 checkpoint_path=path, progress=progress)
    return ranker


def ranker_log_data(world, ranker_cfg, logging_bias: float | None = None, log_share: float = 1.0):
    """The data a ranker learns from: ``world`` itself, or a copy whose slates are re-logged at
    ``logging_bias``, a ``log_share`` of them (seeded by the ranker's seed)."""
    if not _relogs(logging_bias, log_share):
        return world
    return relogged_world(world, logging_bias, log_share, ranker_cfg.seed)


def get_sasrec(data, cfg, cache_dir=None, world_key: str | None = None, progress: bool = True):
    """Train (or reuse) the SASRec reference model of a dataset (``cfg`` a SASRecConfig); returns
    the loaded model. Its folder ``<cache>/sasrec/<key>/`` holds best.pt and history.csv; a
    damaged or foreign best.pt there is retrained (see :func:`~adagrpo_core.model.sasrec.train_sasrec`)."""
    cache = Path(cache_dir or default_cache_dir())
    key = config_hash(world_key or data_key(getattr(data, "cfg", None)), cfg)
    with torch_threads(1):
        model, _ = train_sasrec(data, cfg, out_dir=cache / "sasrec" / key, progress=progress)
    return model


def dataset_profile(cfg: SequencesConfig, base: str = "amazon", sft_steps: int | None = None,
                    cache_dir=None):
    """The profile of a ``user item item ...`` file: ``base``'s model, SFT and ranker settings on
    the dataset ``cfg`` (named after it) with a real dataset's notebook lists
    (``SuiteConfig.real()``: no truth, so no oracle), ``sft_steps`` SFT steps when given, and at most
    ``n_items // 8`` codes per level (at least 2), so that a first-level code groups about 8
    items or more on average instead of giving every item of a small catalogue its own code."""
    prof = replace(get_profile(base), name=cfg.name, world=cfg, suite=SuiteConfig.real()).with_sft_steps(sft_steps or 0)
    n_items = get_world(cfg, cache_dir).n_items          # cached: the run loads the same object
    k = max(2, n_items // 8)
    if prof.sid.codebook_size > k and cfg.semantic_ids is None:
        print(f"{n_items} items: {k} codes per level instead of the profile's {prof.sid.codebook_size}")
        prof = replace(prof, sid=replace(prof.sid, codebook_size=k))
    return prof


def notebook_profile(profile: str, sequences=None, cache_dir=None):
    """A notebook's profile: the named one, or, with ``sequences`` (a file's path), that dataset
    with the amazon profile's settings (:func:`dataset_profile`; its name is the file's stem)."""
    if not sequences:
        return get_profile(profile)
    return dataset_profile(SequencesConfig(path=str(sequences)), "amazon", None, cache_dir)


def _ensemble_paths(world, ranker_cfg, ens_cfg, cache_dir=None, logging_bias=None, log_share: float = 1.0) -> list:
    """The cache files of an ensemble's members (key: data, ranker config, ensemble config with K
    and its seed, and the ranker's log)."""
    key = config_hash(data_key(world.cfg), ranker_cfg, ens_cfg, {"logging_bias": logging_bias, "log_share": log_share})
    return [Path(cache_dir or default_cache_dir()) / "ensembles" / key / f"member{k}.pt" for k in range(ens_cfg.members)]


def _train_member(world, ranker_cfg, ens_cfg, k: int, path, logging_bias=None, log_share: float = 1.0) -> None:
    with torch_threads(1):
        data = bootstrap_log(ranker_log_data(world, ranker_cfg, logging_bias, log_share), ens_cfg.sample_share,
                             ens_cfg.seed + k)
        train_ranker(data, ens_cfg.member_config(ranker_cfg, k), checkpoint_path=path, progress=False)


def get_ensemble(world, ranker_cfg, ens_cfg, cache_dir=None, jobs: int = 1, logging_bias=None,
                 log_share: float = 1.0) -> list:
    """Train (or reuse) the ranker ensemble of the ensemble diagnostic (``reward.ensemble``): K
    members on bootstrap resamples of the ranker's training log (re-logged where ``logging_bias``
    / ``log_share`` say so), ``jobs`` at a time, one torch thread each; returns the loaded members."""
    paths = _ensemble_paths(world, ranker_cfg, ens_cfg, cache_dir, logging_bias, log_share)
    missing = [k for k, p in enumerate(paths) if not p.exists()]
    if jobs >= 2 and len(missing) >= 2:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
            for f in [ex.submit(_train_member, world, ranker_cfg, ens_cfg, k, paths[k], logging_bias, log_share)
                      for k in missing]:
                f.result()
    for k in missing:
        if not paths[k].exists():
            _train_member(world, ranker_cfg, ens_cfg, k, paths[k], logging_bias, log_share)
    return [load_ranker(p) for p in paths]
