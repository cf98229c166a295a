"""Notebook 09's study on Coat: rewards learned from self-selected ratings, scored on random ones.

For every training seed: split the self-selected ratings into fit and validation rows
(``reward.coat_training.split_ratings``), fit every reward kind with every weighting (naive, IPS
with the dataset's propensities, IPS with item popularity as the propensity) and, for the
diagnostic kinds, a K-member bootstrap ensemble of the naive reward. Each reward then scores every
user's random candidates (``eval.coat_reliability``); :func:`run_study` keeps per-user sufficient
statistics and :mod:`adagrpo_core.suite.coat_tables` turns them into the notebook's tables. Model
selection (:data:`GRIDS`) and early stopping read the validation split of the self-selected
ratings; the random ratings are never used to fit or select anything.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..common.checks import check_choice, check_int, check_range
from ..data.coat import load_coat
from ..eval import coat_reliability as rel
from ..common.paths import default_figures_dir
from ..reward.coat_training import (KINDS, WEIGHTINGS, CoatRewardConfig, fit_ensemble, fit_reward, select_config,
                                   split_ratings)

DIAGNOSTICS = ("e", "u", "a", "a_self")
"""e, u, a as AdaGRPO computes them; a_self: a with the user's liked self-selected items as targets."""

GRIDS = {"ranker": [{"history": "liked"}, {"history": "rated"}],
         "lmf": [{"l2": l2, "dim": d} for l2 in (0.01, 0.1, 1.0) for d in (4, 8)],
         "mf": [{"l2": l2, "dim": d} for l2 in (0.01, 0.1, 1.0) for d in (4, 8)]}
"""The model-selection candidates of each kind (``reward.coat_training.with_overrides``)."""


@dataclass
class CoatStudyConfig:
    """What notebook 09 trains and measures."""

    seeds: tuple = (0, 1, 2, 3, 4)
    """Training seeds: each seed has its own validation split, initialisations and ensemble."""
    members: int = 5
    """K >= 2: bootstrap members of the naive reward's ensemble (the diagnostic u)."""
    sample_share: float = 1.0
    """Each member's bootstrap resample: this share of the fit rows, with replacement, in (0, 1]."""
    valid_share: float = 0.15
    """Share of each user's self-selected ratings held out for early stopping, in [0, 1)."""
    kinds: tuple = KINDS
    """Reward kinds to fit: 'ranker', 'lmf', 'mf' (``reward.coat_training``)."""
    weightings: tuple = WEIGHTINGS
    """Weightings to fit; 'naive' is always included (the reference of every IPS comparison)."""
    diagnostic_kinds: tuple = ("ranker", "lmf")
    """Kinds whose naive reward gets an ensemble and the diagnostics e, u, a (a subset of kinds)."""
    select: bool = True
    """Model selection: per kind, the :data:`GRIDS` entry with the lowest validation loss of the naive
    reward on the first seed's split, then used for every weighting and seed (so that IPS minus
    naive isolates the weighting)."""
    num_negatives: int = 5
    """M >= 0: in-batch negatives of the diagnostic a (liked test items of other users)."""
    n_buckets: int = 5
    """Exposure buckets of the catalogue (5 = quintiles of the self-selected rating count)."""
    exclude_seen: bool = True
    """Drop from a user's candidates the random items the user also self-selected (seen ratings)."""
    n_boot: int = 1000
    """Draws of every user bootstrap."""
    stat_seed: int = 0
    """Seed of the bootstraps, the in-batch negatives and the random gate."""
    reward: CoatRewardConfig = field(default_factory=CoatRewardConfig)
    """Template of every reward's config: its ranker and factorisation configs, history and
    max_weight (the kind and weighting are set per fit, the selected fields by :data:`GRIDS`)."""

    def __post_init__(self):
        self.seeds = tuple(self.seeds)
        if not self.seeds or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0
                                     for s in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct non-negative ints, at least one, got seeds={self.seeds!r}")
        check_int("members", self.members, lo=2)
        check_range("sample_share", self.sample_share, 0, 1, lo_open=True)
        check_range("valid_share", self.valid_share, 0, 1, hi_open=True)
        self.kinds, self.diagnostic_kinds = tuple(self.kinds), tuple(self.diagnostic_kinds)
        self.weightings = ("naive",) + tuple(w for w in self.weightings if w != "naive")
        for name, values, choices in (("kinds", self.kinds, KINDS), ("weightings", self.weightings, WEIGHTINGS),
                                      ("diagnostic_kinds", self.diagnostic_kinds, self.kinds)):
            if not values and name == "kinds":
                raise ValueError("kinds must name at least one reward kind, got kinds=()")
            for v in values:
                check_choice(name, v, choices)
        if not isinstance(self.select, bool):
            raise ValueError(f"select must be True or False, got select={self.select!r}")
        check_int("num_negatives", self.num_negatives, lo=0)
        check_int("n_buckets", self.n_buckets, lo=1)
        if not isinstance(self.exclude_seen, bool):
            raise ValueError(f"exclude_seen must be True or False, got exclude_seen={self.exclude_seen!r}")
        check_int("n_boot", self.n_boot, lo=10)
        check_int("stat_seed", self.stat_seed, lo=0)


@dataclass
class CoatStudy:
    """What :func:`run_study` measured. S seeds, U users, C candidates, B buckets, per reward
    (kind, weighting): ``scores`` [S, U, C], ``conc`` [S, U] concordant pairs, ``sq`` / ``ab`` [S, U]
    summed squared / absolute rating errors (kind 'mf'), ``bconc`` [S, U, B] concordant pairs within
    buckets; ``runs`` one row per fit. ``diag[kind]``: e [U], u [S, U], a [S, U], agree [S, U]."""

    cfg: CoatStudyConfig
    items: np.ndarray
    ratings: np.ndarray
    pairs: np.ndarray
    bpairs: np.ndarray
    bucket: np.ndarray
    exposure: np.ndarray
    threshold: int
    runs: pd.DataFrame = None
    scores: dict = field(default_factory=dict)
    conc: dict = field(default_factory=dict)
    sq: dict = field(default_factory=dict)
    ab: dict = field(default_factory=dict)
    bconc: dict = field(default_factory=dict)
    diag: dict = field(default_factory=dict)
    selection: pd.DataFrame = None

    @property
    def n_users(self) -> int:
        return len(self.items)


def _configs(data, cfg: CoatStudyConfig, progress: bool) -> tuple[dict, pd.DataFrame]:
    """{kind: the reward config every weighting and seed of the kind uses} and the selection table."""
    out, tables = {}, []
    fit, val = split_ratings(data.train, cfg.valid_share, cfg.seeds[0])
    for kind in cfg.kinds:
        base = CoatRewardConfig(kind=kind, ranker=cfg.reward.ranker, mf=cfg.reward.mf, history=cfg.reward.history,
                                max_weight=cfg.reward.max_weight)
        if cfg.select:
            base, table = select_config(data, base, GRIDS[kind], fit, val, cfg.seeds[0])
            tables.append(table)
            if progress:
                print(f"selection {kind}: {table[table.chosen].drop(columns=['chosen']).to_dict('records')}", flush=True)
        out[kind] = base
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    fields = [c for c in table.columns if c not in ("kind", "weighting", "valid_loss", "epochs", "chosen")]
    return out, table.fillna({c: "" for c in fields})          # each kind's own grid fields


def _one_seed(data, cfg: CoatStudyConfig, configs: dict, seed: int, items, ratings, pairs, bucket, exposure, neg,
              targets, self_items) -> dict:
    """Every reward of one training seed fitted and scored (what :func:`run_study` stores at that
    seed's index); a function of its arguments alone, so seeds can run in separate processes."""
    grid = lambda m: np.broadcast_to(np.arange(data.n_users)[:, None], m.shape)     # the row's user
    score = lambda r, m: np.where(m >= 0, r.score(grid(m), np.maximum(m, 0)), 0.0)
    valid = items >= 0
    out = {"scores": {}, "conc": {}, "bconc": {}, "sq": {}, "ab": {}, "diag": {}, "runs": []}
    fit, val = split_ratings(data.train, cfg.valid_share, seed)
    for kind in cfg.kinds:
        for w in cfg.weightings:
            r = fit_reward(data, replace(configs[kind], weighting=w), fit, val, seed)
            s = score(r, items)                                                       # [U, C]
            agree, _ = rel.user_agreement(s, ratings, items)
            key = (kind, w)
            out["scores"][key], out["conc"][key] = s, agree * pairs
            out["bconc"][key] = rel.bucket_pairs(s, ratings, items, bucket, cfg.n_buckets)[0]
            if kind == "mf":
                err = (s - ratings) * valid
                out["sq"][key], out["ab"][key] = (err ** 2).sum(1), np.abs(err).sum(1)
            out["runs"].append({"seed": seed, "kind": kind, "weighting": w, "epochs": int(r.history.epoch.max()),
                                "valid_loss": float(r.history.valid_loss.min()), "seconds": r.seconds})
            if w != "naive" or kind not in cfg.diagnostic_kinds:
                continue
            ns = score(r, neg)
            members = fit_ensemble(data, configs[kind], fit, val, cfg.members, seed, cfg.sample_share)
            out["diag"][kind] = {
                "u": rel.ensemble_diagnostic(np.stack([score(m, items) for m in members]), items),
                "a": rel.discriminability_diagnostic(targets, score(r, targets), items, s, neg, ns),
                "a_self": rel.discriminability_diagnostic(self_items, score(r, self_items), items, s, neg, ns),
                "agree": agree}
    return out


def run_study(data, cfg: CoatStudyConfig | None = None, progress: bool = False, jobs: int = 1) -> CoatStudy:
    """Fit every reward of ``cfg`` on ``data``'s self-selected ratings for every seed and measure it
    on the random candidates (module docstring). One torch thread per fit; ``jobs`` processes take
    the seeds (0: one per CPU core), with the same numbers as one process."""
    cfg = cfg or CoatStudyConfig()
    check_int("n_buckets", cfg.n_buckets, lo=1, hi=data.n_items)
    check_int("jobs", jobs, lo=0)
    items, ratings = rel.candidate_items(data, cfg.exclude_seen)
    exposure = data.exposure()
    bucket = rel.exposure_buckets_of(exposure, cfg.n_buckets)
    neg = rel.inbatch_negatives(data, items, ratings, cfg.num_negatives, cfg.stat_seed)
    self_items = rel.liked_targets(data.train, np.broadcast_to(np.arange(data.n_items), data.train.shape),
                                   data.positive_threshold)                       # [U, T] liked self-selected
    targets = rel.liked_targets(ratings, items, data.positive_threshold)          # [U, T'] liked candidates
    _, pairs = rel.user_agreement(np.zeros(items.shape), ratings, items)
    _, bpairs = rel.bucket_pairs(np.zeros(items.shape), ratings, items, bucket, cfg.n_buckets)
    st = CoatStudy(cfg, items, ratings, pairs, bpairs, bucket, exposure, data.positive_threshold)
    configs, st.selection = _configs(data, cfg, progress)
    args = (items, ratings, pairs, bucket, exposure, neg, targets, self_items)
    jobs = min(jobs or os.cpu_count() or 1, len(cfg.seeds))
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
            futures = [ex.submit(_one_seed, data, cfg, configs, seed, *args) for seed in cfg.seeds]
            per_seed = [f.result() for f in futures]
    else:
        per_seed = [_one_seed(data, cfg, configs, seed, *args) for seed in cfg.seeds]
    S, runs = len(cfg.seeds), []
    for si, res in enumerate(per_seed):
        for name in ("scores", "conc", "bconc", "sq", "ab"):
            for key, v in res[name].items():
                getattr(st, name).setdefault(key, np.zeros((S,) + v.shape))[si] = v
        for kind, d in res["diag"].items():
            store = st.diag.setdefault(kind, {"e": rel.exposure_diagnostic(items, exposure),
                                              **{k: np.zeros((S, data.n_users)) for k in ("u", "a", "a_self", "agree")}})
            for k, v in d.items():
                store[k][si] = v
        runs += res["runs"]
        if progress:
            print(f"seed {cfg.seeds[si]}: {sum(r['seconds'] for r in res['runs']):.1f} s of fits", flush=True)
    st.runs = pd.DataFrame(runs)
    return st


def notebook_setup(data_dir=None, verify_sha256: bool = True, positive_threshold: int = 4, seeds=(0, 1, 2, 3, 4),
                   members: int = 5, n_boot: int = 1000, out_dir=None):
    """Notebook 09's parameters, checked before any work: (data, study config, output folder).
    ``data_dir`` None = ``$ADAGRPO_COAT_DIR``; ``out_dir`` None = the checkout's ``figures/coat/``.
    A bad value raises ValueError naming the parameter and the value; a missing or altered file
    the loader's error (:func:`~adagrpo_core.data.coat.load_coat`)."""
    if not isinstance(seeds, (list, tuple)):
        raise ValueError(f"notebook parameter seeds must be a list of ints, got seeds={seeds!r}")
    for name, value in (("data_dir", data_dir), ("out_dir", out_dir)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"notebook parameter {name} must be a path or None, got {name}={value!r}")
    cfg = CoatStudyConfig(seeds=tuple(seeds), members=members, n_boot=n_boot)
    data = load_coat(data_dir, positive_threshold=positive_threshold, verify_sha256=verify_sha256)
    out = Path(out_dir) if out_dir else default_figures_dir() / "coat"
    out.mkdir(parents=True, exist_ok=True)
    return data, cfg, out
