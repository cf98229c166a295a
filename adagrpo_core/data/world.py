"""Simulated e-commerce world with known ground truth, calibrated so that a reward can matter.

Generative story (all vectorised over users; one loop over time steps):

* **Items** belong to categories; each has a latent vector (category centroid + idiosyncratic
  part), a hidden **quality**, observable content features (a noisy linear view of the latent
  vector plus a noisy category signal, which do *not* reveal quality) and a Zipf-like
  popularity prior whose rank follows quality only weakly (``popularity_quality_corr``).
* **True utility** of item i for taste u: ``utility_scale * <u, v_i> / sqrt(d) + quality_weight
  * q_i + utility_offset``; an examined item is clicked with probability sigmoid(utility).
* Each user starts with a taste near one or two category centroids. At every step the
  **logging policy** scores every item with
  ``logit = (1 - exposure_bias) * utility / logging_temperature + exposure_bias * popularity_weight * log(pop)``,
  shortlists its top ``shortlist_size`` (a retrieval stage), and shows a slate of ``slate_size``
  drawn from the shortlist by Plackett-Luce (Gumbel-top-k) on the logit plus estimation noise
  (``logging_noise``). ``exposure_bias = 0`` shows what the user likes, ``1`` what is popular.
* **Clicks** follow a cascade model on the true utility: the user scans the slate top-down,
  examines position p with probability ``1 / (p + 1) ** position_bias``, clicks the first
  examined item that attracts them (probability sigmoid(utility)), and stops.
* Taste drifts toward what was clicked: ``u <- (1 - taste_drift) u + taste_drift v_item + noise``.

Why these defaults (the calibrated world; ``WorldConfig.saturated()`` is a world where 99.7% of
slates get a click and no reward, not even the truth, can move the metrics):

* a low click rate (``utility_offset = -8``): about 7% of logged slates get a click and the
  median user state's best item is clicked with probability ~0.16, so the *choice* of items
  matters;
* exposure driven by popularity (``exposure_bias = 0.85``) over a wide, noisy shortlist
  (``shortlist_size = 300``, ``logging_noise = 2``, ``popularity_weight = 0.5``): rare items are
  rarely shown, yet slates vary enough that the next click is not predictable from popularity
  (SFT HR@10 ~0.4);
* quality weakly tied to popularity (``popularity_quality_corr = 0.2``) and invisible in the
  content features: a ranker trained on impressions learns it through the id embeddings of the
  items it saw often and misses it on rare ones, and click sequences (what SFT learns from)
  hide it: the top 10 by true utility has a higher expected CTR than the SFT policy's top 10
  (headroom), which a perfect reward can close part of;
* long sessions (80-250 slates per user) so that users have enough clicks for a leave-one-out
  split.

The world returns the click sequences (leave-one-out split), the impression log, item features
and a true-utility oracle for any (user state, items) batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from ..common.checks import check_int, check_range
from ..common.runtime import progress_bar
from ..eval.metrics import gini, top_share
from .interactions import Interactions


@dataclass
class WorldConfig:
    """Simulated world (the calibrated defaults: see the module docstring). ``quick()``, ``full()``,
    ``tiny()`` and ``saturated()`` (a saturated world: nearly every slate is clicked) are the presets."""

    n_users: int = 3000
    """Users simulated (users with fewer than min_clicks clicks are dropped)."""
    n_items: int = 1500
    """Catalogue size."""
    n_categories: int = 50
    """Item categories (clusters in latent space)."""
    latent_dim: int = 16
    """Dimension of user tastes and item latent vectors."""
    feature_dim: int = 24
    """Dimension of the observable item content features."""
    feature_noise: float = 0.5
    """Noise on item features (0 = features reveal the latent vector linearly)."""
    category_spread: float = 0.3
    """Idiosyncratic spread of items around their category centroid (relative)."""
    zipf_exponent: float = 1.1
    """Zipf exponent of the popularity prior (larger = more concentrated)."""
    popularity_quality_corr: float = 0.2
    """How much popularity rank follows item quality (0 = unrelated, 1 = identical order)."""
    quality_weight: float = 1.0
    """Weight of item quality in the true utility."""
    utility_scale: float = 1.2
    """Scale of the taste-item affinity in the true utility."""
    utility_offset: float = -8.0
    """Offset of the true utility (controls the click rate)."""
    n_steps_min: int = 80
    """Fewest slate steps per user."""
    n_steps_max: int = 250
    """Most slate steps per user."""
    slate_size: int = 10
    """Items shown per step."""
    exposure_bias: float = 0.85
    """Logging-policy bias toward popular items, in [0, 1]."""
    popularity_weight: float = 0.5
    """Multiplier of log-popularity in the logging policy."""
    logging_temperature: float = 0.4
    """Temperature of the logging policy's utility term (smaller = more targeted)."""
    logging_noise: float = 2.0
    """Std of the logging policy's error on the utility it targets (applied in stage 2)."""
    shortlist_size: int = 300
    """M: the logging policy shortlists its top-M items by logit, then samples the slate from them."""
    position_bias: float = 0.7
    """Examination probability at slate position p is 1 / (p + 1) ** position_bias."""
    taste_drift: float = 0.3
    """Step of the user taste toward a clicked item's latent vector, in [0, 1)."""
    drift_noise: float = 0.3
    """Std of the random taste change at each click."""
    min_clicks: int = 5
    """Users with fewer clicks are dropped (a 5-core-like filter on users)."""
    seed: int = 0
    """Seed: the same seed gives the same world, byte for byte."""

    def __post_init__(self):
        check_int("n_users", self.n_users, lo=1)
        check_int("n_items", self.n_items, lo=2)
        check_int("n_categories", self.n_categories, lo=1, hi=self.n_items)
        check_int("latent_dim", self.latent_dim, lo=1)
        check_int("feature_dim", self.feature_dim, lo=1)
        check_range("feature_noise", self.feature_noise, lo=0)
        check_range("category_spread", self.category_spread, lo=0)
        check_range("zipf_exponent", self.zipf_exponent, lo=0)
        check_range("popularity_quality_corr", self.popularity_quality_corr, 0, 1)
        check_range("quality_weight", self.quality_weight, lo=0)
        check_range("utility_scale", self.utility_scale, lo=0)
        check_range("utility_offset", self.utility_offset)
        check_int("n_steps_min", self.n_steps_min, lo=1)
        check_int("n_steps_max", self.n_steps_max, lo=self.n_steps_min)
        check_int("slate_size", self.slate_size, lo=1, hi=self.n_items)
        check_int("shortlist_size", self.shortlist_size, lo=self.slate_size)
        check_range("exposure_bias", self.exposure_bias, 0, 1)
        check_range("popularity_weight", self.popularity_weight, lo=0)
        check_range("logging_temperature", self.logging_temperature, lo=0, lo_open=True)
        check_range("logging_noise", self.logging_noise, lo=0)
        check_range("position_bias", self.position_bias, lo=0)
        check_range("taste_drift", self.taste_drift, 0, 1, hi_open=True)
        check_range("drift_noise", self.drift_noise, lo=0)
        check_int("min_clicks", self.min_clicks, lo=3)
        check_int("seed", self.seed, lo=0)

    @classmethod
    def quick(cls, **overrides) -> "WorldConfig":
        """A few thousand users, 1,500 items: builds in seconds on 2 CPU cores."""
        return replace(cls(), **overrides)

    @classmethod
    def saturated(cls, **overrides) -> "WorldConfig":
        """The default before calibration, kept for the contrast: 99.7% of logged slates get a click,
        the median best item is clicked with probability ~0.98, and no reward can move the metrics."""
        base = cls(popularity_quality_corr=0.5, quality_weight=0.5, utility_scale=1.5, utility_offset=-3.0,
                   n_steps_min=10, n_steps_max=40, exposure_bias=0.25, popularity_weight=1.0, logging_noise=1.0,
                   shortlist_size=100, drift_noise=0.1)
        return replace(base, **overrides)

    @classmethod
    def full(cls, **overrides) -> "WorldConfig":
        """Tens of thousands of users, 4,000 items."""
        base = cls(n_users=30000, n_items=4000, n_categories=130)
        return replace(base, **overrides)

    @classmethod
    def tiny(cls, **overrides) -> "WorldConfig":
        """For tests and smoke runs: the saturated world, small (so that every user clicks enough)."""
        base = cls.saturated(n_users=300, n_items=200, n_categories=8, n_steps_min=8, n_steps_max=20)
        return replace(base, **overrides)


@dataclass
class World(Interactions):
    """A built world: click sequences (see :class:`Interactions`) plus what the logs and the truth hold."""

    cfg: WorldConfig = None
    item_features: np.ndarray = None     # [n_items, feature_dim] float32, observable
    item_category: np.ndarray = None     # [n_items] int64, observable
    item_popularity: np.ndarray = None   # [n_items] float64, popularity prior (sums to 1)
    item_vectors: np.ndarray = None      # [n_items, latent_dim] float32, hidden truth
    item_quality: np.ndarray = None      # [n_items] float32, hidden truth
    click_states: np.ndarray = None      # [total_clicks, latent_dim] taste just before each click
    impressions: pd.DataFrame = None     # user, step, item, position, clicked, hist_len, split
    build_seconds: float = float("nan")
    n_users_dropped: int = 0

    # ---------------------------------------------------------------- the oracle
    def true_utility(self, states, items) -> np.ndarray:
        """True utility of items for user states. states [B, d]; items [B, C] (or [C]) -> [B, C].

        Item ids < 0 (hallucinations) get -inf.
        """
        states = np.asarray(states, dtype=np.float32)
        items = np.asarray(items, dtype=np.int64)
        if states.ndim != 2 or states.shape[1] != self.cfg.latent_dim:
            raise ValueError(f"states must be [batch, {self.cfg.latent_dim}], got shape={states.shape}")
        if items.ndim == 1:
            items = np.broadcast_to(items, (states.shape[0], items.shape[0]))
        if items.shape[0] != states.shape[0]:
            raise ValueError(f"items batch {items.shape[0]} != states batch {states.shape[0]}")
        valid = items >= 0
        v = self.item_vectors[np.where(valid, items, 0)]                # [B, C, d]
        u = _utility(states[:, None, :], v, self.item_quality[np.where(valid, items, 0)], self.cfg)
        return np.where(valid, u, -np.inf)

    def click_probability(self, states, items) -> np.ndarray:
        """Probability that an examined item is clicked: sigmoid(true utility)."""
        return 1.0 / (1.0 + np.exp(-self.true_utility(states, items)))

    def states_for(self, examples) -> np.ndarray:
        """The true user taste at the time of each example's target click."""
        return self.click_states[examples.click_index]

    def summary(self) -> dict:
        imp = self.impressions
        return {
            "users": self.n_users, "items": self.n_items, "clicks": len(self.seq_items),
            "mean_seq_len": float(self.seq_lengths.mean()),
            "impressions": len(imp), "ctr": float(imp["clicked"].mean()),
            "users_dropped": self.n_users_dropped, "build_seconds": round(self.build_seconds, 2),
        }


def _utility(u, v, q, cfg: WorldConfig):
    """u [..., d] . v [..., d] scaled, plus quality, plus offset."""
    aff = (u * v).sum(-1) / np.sqrt(cfg.latent_dim)
    return cfg.utility_scale * aff + cfg.quality_weight * q + cfg.utility_offset


def _make_items(cfg: WorldConfig, rng: np.random.Generator):
    d = cfg.latent_dim
    centroids = rng.standard_normal((cfg.n_categories, d))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) / np.sqrt(d)
    # category sizes: mildly skewed
    cat_w = 1.0 / np.arange(1, cfg.n_categories + 1) ** 0.5
    cat = np.concatenate([np.arange(cfg.n_categories),
                          rng.choice(cfg.n_categories, cfg.n_items - cfg.n_categories, p=cat_w / cat_w.sum())])
    cat = rng.permutation(cat)
    vec = centroids[cat] + cfg.category_spread * rng.standard_normal((cfg.n_items, d))
    vec /= np.linalg.norm(vec, axis=1, keepdims=True) / np.sqrt(d)
    quality = rng.standard_normal(cfg.n_items)
    # popularity rank follows quality partially
    c = cfg.popularity_quality_corr
    key = c * quality + np.sqrt(1 - c * c) * rng.standard_normal(cfg.n_items)
    rank = np.empty(cfg.n_items, dtype=np.int64)
    rank[np.argsort(-key)] = np.arange(cfg.n_items)
    pop = 1.0 / (rank + 1.0) ** cfg.zipf_exponent
    pop /= pop.sum()
    # observable content features: noisy linear view of the latent vector + noisy category code
    proj = rng.standard_normal((d, cfg.feature_dim)) / np.sqrt(d)
    cat_code = rng.standard_normal((cfg.n_categories, cfg.feature_dim))
    feats = vec @ proj + 0.5 * cat_code[cat] + cfg.feature_noise * rng.standard_normal((cfg.n_items, cfg.feature_dim))
    return centroids, cat, vec.astype(np.float32), quality.astype(np.float32), pop, feats.astype(np.float32)


def build_world(cfg: WorldConfig | None = None, progress: bool = False) -> World:
    """Simulate the world. Deterministic for ``cfg.seed``."""
    cfg = cfg or WorldConfig()
    t0 = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    centroids, cat, vec, quality, pop, feats = _make_items(cfg, rng)
    d, n_u, n_i, S = cfg.latent_dim, cfg.n_users, cfg.n_items, cfg.slate_size

    # users: taste near one or two category centroids
    c1 = rng.choice(cfg.n_categories, n_u, p=pop_by_cat(cat, pop, cfg.n_categories))
    c2 = rng.choice(cfg.n_categories, n_u)
    mix = np.where(rng.random(n_u) < 0.5, 1.0, rng.uniform(0.5, 1.0, n_u))[:, None]
    taste = mix * centroids[c1] + (1 - mix) * centroids[c2] + 0.3 * rng.standard_normal((n_u, d))
    n_steps = rng.integers(cfg.n_steps_min, cfg.n_steps_max + 1, n_u)

    log_pop = torch.from_numpy(np.log(pop).astype(np.float32))
    examine = (1.0 / (np.arange(S) + 1.0) ** cfg.position_bias)
    vec_t = torch.from_numpy(vec.T.copy())
    quality_term = torch.from_numpy((cfg.quality_weight * quality + cfg.utility_offset).astype(np.float32))
    scale = np.float32(cfg.utility_scale / np.sqrt(d))

    imp_user, imp_step, imp_item, imp_pos, imp_click, imp_hist = [], [], [], [], [], []
    click_user, click_step, click_item, click_state = [], [], [], []
    n_clicks = np.zeros(n_u, dtype=np.int64)
    steps = range(cfg.n_steps_max)
    if progress:
        steps = progress_bar(steps, desc="simulating world")
    for t in steps:
        active = np.flatnonzero(n_steps > t)
        ua = torch.from_numpy(taste[active].astype(np.float32))                # [A, d]
        util = ua @ vec_t * scale + quality_term                               # [A, n_items] true utility
        slate = _logging_pick(util, log_pop, cfg, rng)                        # [A, S] best first
        util = util.numpy()
        u_slate = np.take_along_axis(util, slate, 1)                           # [A, S]
        clicked = cascade_clicks(u_slate, examine, rng)                       # [A, S]
        any_click = clicked.any(1)
        first = clicked.argmax(1)

        A = len(active)
        imp_user.append(np.repeat(active, S)); imp_step.append(np.full(A * S, t, dtype=np.int16))
        imp_item.append(slate.reshape(-1)); imp_pos.append(np.tile(np.arange(S, dtype=np.int8), A))
        imp_click.append(clicked.reshape(-1)); imp_hist.append(np.repeat(n_clicks[active], S))

        cu = active[any_click]
        ci = slate[any_click, first[any_click]]
        click_user.append(cu); click_step.append(np.full(len(cu), t)); click_item.append(ci)
        click_state.append(taste[cu].astype(np.float32))
        n_clicks[cu] += 1
        # taste drift toward the clicked item
        taste[cu] = ((1 - cfg.taste_drift) * taste[cu] + cfg.taste_drift * vec[ci]
                     + cfg.drift_noise * rng.standard_normal((len(cu), d)))

    click_user = np.concatenate(click_user); click_step = np.concatenate(click_step)
    click_item = np.concatenate(click_item); click_state = np.concatenate(click_state)
    order = np.lexsort((click_step, click_user))          # by user, then time
    click_user, click_step = click_user[order], click_step[order]
    click_item, click_state = click_item[order], click_state[order]

    keep_user = n_clicks >= cfg.min_clicks
    new_id = np.full(n_u, -1, dtype=np.int64)
    new_id[keep_user] = np.arange(keep_user.sum())
    m = keep_user[click_user]
    click_user, click_step, click_item, click_state = click_user[m], click_step[m], click_item[m], click_state[m]
    lens = n_clicks[keep_user]
    offsets = np.r_[0, np.cumsum(lens)]

    imp = pd.DataFrame({
        "user": np.concatenate(imp_user), "step": np.concatenate(imp_step),
        "item": np.concatenate(imp_item), "position": np.concatenate(imp_pos),
        "clicked": np.concatenate(imp_click).astype(np.int8), "hist_len": np.concatenate(imp_hist),
    })
    imp = imp[keep_user[imp["user"].to_numpy()]].copy()
    imp["user"] = new_id[imp["user"].to_numpy()]
    # split of each impression by time: before the validation click = train
    val_step = click_step[offsets[1:] - 2]
    test_step = click_step[offsets[1:] - 1]
    u = imp["user"].to_numpy(); s = imp["step"].to_numpy()
    split = np.where(s < val_step[u], 0, np.where(s < test_step[u], 1, 2))
    imp["split"] = pd.Categorical.from_codes(split, categories=["train", "valid", "test"])
    imp = imp.sort_values(["user", "step", "position"], kind="stable").reset_index(drop=True)
    for col, dt in [("user", np.int32), ("item", np.int32), ("hist_len", np.int32)]:
        imp[col] = imp[col].astype(dt)

    if not keep_user.any():
        raise ValueError(f"the world keeps no users: all {n_u} users had fewer than min_clicks={cfg.min_clicks} "
                         f"clicks (most clicks: {int(n_clicks.max())}); raise utility_offset={cfg.utility_offset} "
                         "or n_steps_max, or lower min_clicks")
    return World(
        seq_items=click_item, seq_offsets=offsets, n_items=n_i, cfg=cfg,
        item_features=feats, item_category=cat.astype(np.int64), item_popularity=pop,
        item_vectors=vec, item_quality=quality, click_states=click_state, impressions=imp,
        build_seconds=time.perf_counter() - t0, n_users_dropped=int((~keep_user).sum()),
    )


def _logging_pick(util: torch.Tensor, log_pop: torch.Tensor, cfg: WorldConfig, rng) -> np.ndarray:
    """The logging policy: util [A, n_items] true utility -> slates [A, slate_size] item ids."""
    b = np.float32(cfg.exposure_bias)
    M = min(cfg.shortlist_size, util.shape[1])
    logits = (1 - b) * util / cfg.logging_temperature + b * cfg.popularity_weight * log_pop
    # stage 1: the logging policy shortlists its top-M items by (deterministic) logit
    short_logit, short = torch.topk(logits, M, dim=1)                          # [A, M]
    # stage 2: Plackett-Luce slate from the shortlist (Gumbel-top-k), with estimation noise
    A = util.shape[0]
    noise = cfg.logging_noise * (1 - b) / cfg.logging_temperature * rng.standard_normal((A, M), dtype=np.float32)
    gumbel = -np.log(rng.standard_exponential((A, M), dtype=np.float32) + 1e-12)
    score = short_logit.numpy() + noise + gumbel
    pick = np.argsort(-score, axis=1)[:, :cfg.slate_size]                      # [A, S] best first
    return np.take_along_axis(short.numpy(), pick, 1)


def cascade_clicks(u_slate: np.ndarray, examine: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The cascade click model: u_slate [A, S] true utilities of the shown slates (best first),
    examine [S] examination probabilities -> clicked [A, S] bool, at most one click per slate
    (the first attracted item of each slate wins)."""
    p_click = examine[None, :] / (1.0 + np.exp(-u_slate))
    attracted = rng.random(p_click.shape) < p_click
    any_click = attracted.any(1)
    first = attracted.argmax(1)
    clicked = np.zeros_like(attracted)
    clicked[any_click, first[any_click]] = True
    return clicked


def logging_slates(world: "World", states, rng: np.random.Generator) -> np.ndarray:
    """Slates the world's logging policy would show to user states [U, d]: [U, slate_size]."""
    util = torch.from_numpy(world.true_utility(states, np.arange(world.n_items)).astype(np.float32))
    log_pop = torch.from_numpy(np.log(world.item_popularity).astype(np.float32))
    return _logging_pick(util, log_pop, world.cfg, rng)


def pop_by_cat(cat, pop, n_cat):
    w = np.bincount(cat, weights=pop, minlength=n_cat) + 1e-12
    return w / w.sum()


# ------------------------------------------------------------------ exposure bias
def exposure_concentration(world: World, n_states: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Concentration of impressions per item against the concentration of true demand.

    True demand of an item = its mean click probability sigmoid(true utility) over a sample of
    user states (the exposure an unbiased, utility-only logger would aim for). Rows: impressions,
    clicks, true_demand; columns: gini, top10_share (share of the mass on the top 10% of items).
    """
    imp = world.impressions
    exp_counts = np.bincount(imp["item"].to_numpy(), minlength=world.n_items)
    click_counts = np.bincount(imp["item"].to_numpy()[imp["clicked"].to_numpy() == 1], minlength=world.n_items)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(world.click_states), min(n_states, len(world.click_states)), replace=False)
    states = world.click_states[idx]
    demand = world.click_probability(states, np.arange(world.n_items)).mean(0)
    rows = {}
    for name, x in [("impressions", exp_counts), ("clicks", click_counts), ("true_demand", demand)]:
        rows[name] = {"gini": gini(x), "top10_share": top_share(x, 0.1)}
    return pd.DataFrame(rows).T.rename_axis("distribution")
