"""Re-logged impressions: the simulated world's user states shown slates by another logging policy.

The learned-ranker dial of the reward phase diagram changes only what the ranker learns from.
The users, their click sequences (so the SFT base) and the truth stay as the world made them;
the impression log the ranker trains on is replaced by slates that a logging policy with another
``exposure_bias`` would have shown the same user states, at the same moments, with clicks drawn
from the world's own cascade model. ``share`` < 1 keeps a random share of the slates (fewer
impressions).

Each train or valid slate (user u, step t) of the world's log was shown when u had made
``hist_len`` clicks, so the user's taste then is ``click_states[offset(u) + hist_len]`` (taste
moves only at a click). Test-split slates follow the last click, whose after-state the world does
not keep; the ranker never trains on them, so they are dropped.

Building a whole new world at a stronger exposure bias would change the users instead (at 0.95
only about a third of them click often enough to be kept), which is why the dial is built this way.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from ..common.checks import check_int, check_range
from .world import World, _logging_pick, cascade_clicks


def relog_impressions(world: World, exposure_bias: float | None = None, share: float = 1.0, seed: int = 0,
                      chunk: int = 4096) -> pd.DataFrame:
    """The train and valid slates of ``world``'s log, re-shown by the logging policy at
    ``exposure_bias`` (None: the world's own) and re-clicked under the cascade model; ``share`` of
    the slates (drawn with ``seed``; 1 keeps all). Same columns as ``world.impressions``; rows
    sorted by user, step and position. Deterministic for (world, exposure_bias, share, seed)."""
    if not isinstance(world, World):
        raise ValueError(f"re-logging needs the simulated world (its user states), got {type(world).__name__}")
    bias = world.cfg.exposure_bias if exposure_bias is None else exposure_bias
    check_range("exposure_bias", bias, 0, 1)
    check_range("share", share, 0, 1, lo_open=True)
    check_int("seed", seed, lo=0)
    check_int("chunk", chunk, lo=1)
    imp = world.impressions
    S = world.cfg.slate_size
    keep = (imp["split"] != "test").to_numpy()
    first = imp[keep & (imp["position"] == 0).to_numpy()]                 # one row per slate
    rng = np.random.default_rng(seed)
    n = len(first)
    pick = np.sort(rng.choice(n, max(1, int(round(share * n))), replace=False)) if share < 1 else np.arange(n)
    slates = first.iloc[pick]
    users = slates["user"].to_numpy().astype(np.int64)
    hist_len = slates["hist_len"].to_numpy().astype(np.int64)
    states = world.click_states[np.asarray(world.seq_offsets, dtype=np.int64)[users] + hist_len]   # [n, d]
    cfg = replace(world.cfg, exposure_bias=float(bias))
    log_pop = torch.from_numpy(np.log(world.item_popularity).astype(np.float32))
    examine = 1.0 / (np.arange(S) + 1.0) ** cfg.position_bias
    all_items = np.arange(world.n_items)
    shown, clicks = [], []
    for s in range(0, len(slates), chunk):
        util = world.true_utility(states[s:s + chunk], all_items).astype(np.float32)       # [c, n_items]
        slate = _logging_pick(torch.from_numpy(util), log_pop, cfg, rng)                   # [c, S]
        clicks.append(cascade_clicks(np.take_along_axis(util, slate, 1), examine, rng))    # [c, S]
        shown.append(slate)
    shown, clicks = np.concatenate(shown), np.concatenate(clicks)
    out = pd.DataFrame({
        "user": np.repeat(users, S).astype(np.int32), "step": np.repeat(slates["step"].to_numpy(), S),
        "item": shown.reshape(-1).astype(np.int32), "position": np.tile(np.arange(S, dtype=np.int8), len(slates)),
        "clicked": clicks.reshape(-1).astype(np.int8), "hist_len": np.repeat(hist_len, S).astype(np.int32),
        "split": pd.Categorical(np.repeat(slates["split"].astype(str).to_numpy(), S),
                                categories=imp["split"].cat.categories)})
    return out


def relogged_world(world: World, exposure_bias: float | None = None, share: float = 1.0, seed: int = 0) -> World:
    """A copy of ``world`` whose impression log is :func:`relog_impressions`'s; everything else
    (users, click sequences, items, truth) is the same object."""
    return replace(world, impressions=relog_impressions(world, exposure_bias, share, seed))
