"""Simulated world (DESIGN 5.1) and the leave-one-out click data it produces."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from adagrpo_core.data.interactions import Examples, Interactions, NO_ITEM
from adagrpo_core.data.world import WorldConfig, build_world, exposure_concentration
from adagrpo_core.eval.metrics import gini, top_share

IMPRESSION_COLUMNS = ["user", "step", "item", "position", "clicked", "hist_len", "split"]


# ---------------------------------------------------------------- helpers
def _assert_same_world(a, b):
    assert a.n_users == b.n_users and a.n_items == b.n_items
    assert a.seq_items.tobytes() == b.seq_items.tobytes()
    assert a.seq_offsets.tobytes() == b.seq_offsets.tobytes()
    assert a.click_states.dtype == b.click_states.dtype
    assert a.click_states.tobytes() == b.click_states.tobytes()
    for name in ["item_features", "item_category", "item_popularity", "item_vectors", "item_quality"]:
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    pd.testing.assert_frame_equal(a.impressions, b.impressions, check_exact=True)
    for col in IMPRESSION_COLUMNS[:-1]:
        assert a.impressions[col].to_numpy().tobytes() == b.impressions[col].to_numpy().tobytes(), col


def _positions(inter: Interactions):
    """(user, position-in-sequence, length) of every flat click index."""
    lens = inter.seq_lengths
    users = np.repeat(np.arange(inter.n_users), lens)
    pos = np.arange(len(inter.seq_items)) - inter.seq_offsets[users]
    return users, pos, lens[users]


def _check_impressions(world):
    """Every consistency property of the impression log against the click sequences."""
    imp = world.impressions
    S = world.cfg.slate_size
    assert list(imp.columns) == IMPRESSION_COLUMNS
    assert len(imp) % S == 0
    user = imp["user"].to_numpy().astype(np.int64)
    step = imp["step"].to_numpy().astype(np.int64)
    item = imp["item"].to_numpy().astype(np.int64)
    pos = imp["position"].to_numpy().astype(np.int64)
    clicked = imp["clicked"].to_numpy().astype(np.int64)
    hist = imp["hist_len"].to_numpy().astype(np.int64)

    # sorted by (user, step, position); users are exactly 0..n_users-1
    key = np.stack([user, step, pos], 1)
    assert (np.diff(user) >= 0).all()
    assert np.array_equal(np.unique(user), np.arange(world.n_users))
    order = np.lexsort((pos, step, user))
    assert np.array_equal(order, np.arange(len(imp)))
    # each (user, step) is a full slate: positions 0..S-1, distinct catalogue items
    slates_pos = pos.reshape(-1, S)
    assert (slates_pos == np.arange(S)).all()
    assert (key.reshape(-1, S, 3)[:, :, :2] == key.reshape(-1, S, 3)[:, :1, :2]).all()
    slates_item = np.sort(item.reshape(-1, S), axis=1)
    assert (np.diff(slates_item, axis=1) > 0).all(), "an item shown twice in one slate"
    assert item.min() >= 0 and item.max() < world.n_items
    assert set(np.unique(clicked)) <= {0, 1}
    # at most one click per slate (cascade)
    assert clicked.reshape(-1, S).sum(1).max() <= 1

    # clicked rows, in log order, are exactly the click sequences
    c = clicked == 1
    assert c.sum() == len(world.seq_items)
    assert np.array_equal(item[c], world.seq_items)
    assert np.array_equal(user[c], np.repeat(np.arange(world.n_users), world.seq_lengths))
    # hist_len of a click = its position in the user's sequence
    _, seq_pos, seq_len = _positions(world)
    assert np.array_equal(hist[c], seq_pos)
    # hist_len of every row = clicks of that user at earlier steps
    slate_clicks = clicked.reshape(-1, S).sum(1)
    slate_user = user.reshape(-1, S)[:, 0]
    cum = np.cumsum(slate_clicks)
    user_first_slate = np.r_[0, np.flatnonzero(np.diff(slate_user)) + 1]
    before_user = np.repeat(np.r_[0, cum][user_first_slate], np.diff(np.r_[user_first_slate, len(slate_user)]))
    earlier = cum - slate_clicks - before_user
    assert np.array_equal(hist, np.repeat(earlier, S))

    # split by time: before the validation click's step = train, before the test click's = valid
    click_step = step[c]
    last = world.seq_offsets[1:] - 1
    val_step, test_step = click_step[last - 1], click_step[last]
    expected = np.where(step < val_step[user], "train", np.where(step < test_step[user], "valid", "test"))
    assert np.array_equal(imp["split"].astype(str).to_numpy(), expected)
    assert list(imp["split"].cat.categories) == ["train", "valid", "test"]
    click_split = imp["split"].astype(str).to_numpy()[c]
    want = np.where(seq_pos == seq_len - 1, "test", np.where(seq_pos == seq_len - 2, "valid", "train"))
    assert np.array_equal(click_split, want)


# ---------------------------------------------------------------- determinism
def test_same_seed_gives_byte_identical_world(tiny_world):
    again = build_world(WorldConfig.tiny())
    _assert_same_world(tiny_world, again)
    assert again.summary()["clicks"] == tiny_world.summary()["clicks"]


def test_different_seed_gives_different_world(tiny_world):
    other = build_world(WorldConfig.tiny(seed=1))
    assert not np.array_equal(other.item_features, tiny_world.item_features)
    same_len = min(len(other.seq_items), len(tiny_world.seq_items))
    assert not np.array_equal(other.seq_items[:same_len], tiny_world.seq_items[:same_len])
    assert not other.impressions.equals(tiny_world.impressions)


# ---------------------------------------------------------------- basic shapes
def test_world_shapes_and_dtypes(tiny_world):
    w, cfg = tiny_world, tiny_world.cfg
    assert w.n_items == cfg.n_items == 200
    assert w.n_users + w.n_users_dropped == cfg.n_users
    assert w.item_features.shape == (cfg.n_items, cfg.feature_dim) and w.item_features.dtype == np.float32
    assert w.item_vectors.shape == (cfg.n_items, cfg.latent_dim) and w.item_vectors.dtype == np.float32
    assert w.item_quality.shape == (cfg.n_items,)
    assert w.item_category.shape == (cfg.n_items,)
    assert set(np.unique(w.item_category)) == set(range(cfg.n_categories))
    assert w.item_popularity.shape == (cfg.n_items,)
    assert w.item_popularity.sum() == pytest.approx(1.0)
    assert (w.item_popularity > 0).all()
    # item latent vectors are normalised to norm sqrt(latent_dim)
    np.testing.assert_allclose(np.linalg.norm(w.item_vectors, axis=1), math.sqrt(cfg.latent_dim), rtol=1e-5)
    assert w.click_states.shape == (len(w.seq_items), cfg.latent_dim)
    assert w.seq_items.dtype == np.int64 and w.seq_offsets.dtype == np.int64
    assert (w.seq_lengths >= cfg.min_clicks).all()
    assert (w.seq_lengths <= cfg.n_steps_max).all()
    s = w.summary()
    assert s["clicks"] == len(w.seq_items) and s["impressions"] == len(w.impressions)
    assert s["ctr"] == pytest.approx(len(w.seq_items) / len(w.impressions))


# ---------------------------------------------------------------- leave-one-out split
@pytest.mark.parametrize("H", [3, 50])
def test_leave_one_out_split(tiny_world, H):
    w = tiny_world
    lens = w.seq_lengths
    test = w.examples("test", H)
    valid = w.examples("valid", H)
    train = w.examples("train", H)
    assert len(test) == len(valid) == w.n_users
    assert len(train) == int((lens - 3).sum())
    for u in range(w.n_users):
        seq = w.sequence(u)
        assert test.users[u] == u and valid.users[u] == u
        assert test.target[u] == seq[-1]
        assert valid.target[u] == seq[-2]
        assert test.click_index[u] == w.seq_offsets[u + 1] - 1
        assert valid.click_index[u] == w.seq_offsets[u + 1] - 2
    # training targets are the 2nd .. third-to-last click, never the valid / test clicks
    users, pos, n = _positions(w)
    expected_train = np.flatnonzero((pos >= 1) & (pos <= n - 3))
    assert np.array_equal(np.sort(train.click_index), expected_train)
    assert not set(train.click_index) & (set(valid.click_index) | set(test.click_index))
    assert np.array_equal(train.target, w.seq_items[train.click_index])
    assert np.array_equal(train.users, users[train.click_index])
    # every history is the (truncated) sequence right before the target, left-padded with -1
    for ex in (train, valid, test):
        assert ex.history.shape == (len(ex), H)
        for i in range(len(ex)):
            ci = ex.click_index[i]
            start = w.seq_offsets[ex.users[i]]
            want = w.seq_items[max(start, ci - H):ci]
            row = ex.history[i]
            n_pad = H - len(want)
            assert (row[:n_pad] == NO_ITEM).all()
            assert np.array_equal(row[n_pad:], want)
        assert np.array_equal(ex.hist_len, np.minimum(pos[ex.click_index], H))
    if H == 50:  # long window: histories of the test split hold all but the last click
        assert np.array_equal(test.hist_len, lens - 1)


def test_examples_hand_computed():
    inter = Interactions(seq_items=[4, 5, 6, 7, 8, 0, 1, 2], seq_offsets=[0, 5, 8], n_items=10)
    tr = inter.examples("train", 2)
    assert tr.users.tolist() == [0, 0]
    assert tr.target.tolist() == [5, 6]
    assert tr.history.tolist() == [[-1, 4], [4, 5]]
    assert tr.click_index.tolist() == [1, 2]
    va = inter.examples("valid", 3)
    assert va.target.tolist() == [7, 1]
    assert va.history.tolist() == [[4, 5, 6], [-1, -1, 0]]
    te = inter.examples("test", 4)
    assert te.target.tolist() == [8, 2]
    assert te.history.tolist() == [[4, 5, 6, 7], [-1, -1, 0, 1]]
    assert te.hist_len.tolist() == [4, 2]
    sub = te.subset([1])
    assert isinstance(sub, Examples) and len(sub) == 1
    assert sub.target.tolist() == [2] and sub.history.tolist() == [[-1, -1, 0, 1]]
    # train part = all but the last two clicks
    assert inter.train_item_counts().tolist() == [1, 0, 0, 0, 1, 1, 1, 0, 0, 0]


def test_examples_rejects_bad_arguments():
    inter = Interactions(seq_items=[1, 2, 3], seq_offsets=[0, 3], n_items=4)
    with pytest.raises(ValueError, match="split"):
        inter.examples("dev", 5)
    with pytest.raises(ValueError, match="max_history=0"):
        inter.examples("test", 0)


@pytest.mark.parametrize("items,offsets,n_items,pattern", [
    ([1, 2], [0, 2], 5, "at least 3 clicks"),
    ([1, 2, 3, 4, 1], [0, 3, 5], 5, "user 1 has history length 2"),
    ([1, 2, 9], [0, 3], 5, r"item ids must be in \[0, 5\)"),
    ([1, -1, 2], [0, 3], 5, "item ids"),
    ([1, 2, 3], [1, 3], 5, "seq_offsets"),
    ([1, 2, 3], [0, 4], 5, "seq_offsets"),
    ([], [], 5, "seq_offsets"),
])
def test_interactions_validation(items, offsets, n_items, pattern):
    with pytest.raises(ValueError, match=pattern):
        Interactions(seq_items=items, seq_offsets=offsets, n_items=n_items)


def test_train_windows_hand_computed():
    # one user, 10 clicks: training part is the first 8 (10..17)
    inter = Interactions(seq_items=np.arange(10, 20), seq_offsets=[0, 10], n_items=20)
    w = inter.train_windows(3)
    assert w.tolist() == [[15, 16, 17], [13, 14, 15], [11, 12, 13], [-1, 10, 11]]
    w4 = inter.train_windows(8)
    assert w4.tolist() == [list(range(10, 18))]
    w2 = inter.train_windows(2)
    assert w2.tolist() == [[16, 17], [15, 16], [14, 15], [13, 14], [12, 13], [11, 12], [10, 11]]
    # a user with 3 clicks has no training target -> no window
    short = Interactions(seq_items=[1, 2, 3], seq_offsets=[0, 3], n_items=4)
    assert short.train_windows(4).shape == (0, 4)
    with pytest.raises(ValueError, match="max_len=1"):
        inter.train_windows(1)


@pytest.mark.parametrize("max_len", [2, 5, 64])
def test_train_windows_cover_each_training_target_once(tiny_world, max_len):
    w = tiny_world
    win = w.train_windows(max_len)
    assert win.shape[1] == max_len
    # padding only on the left, at least two real items per window
    real = win >= 0
    assert (np.diff(real.astype(int), axis=1) >= 0).all()
    assert (real.sum(1) >= 2).all()
    # predicted items (every real item but the first of a window) = training targets, each once
    n_real = real.sum(1)
    predicted = []
    for row, n in zip(win, n_real):
        predicted.extend(row[max_len - n + 1:].tolist())
    train = w.examples("train", 1)
    assert len(predicted) == len(train)
    assert sorted(predicted) == sorted(train.target.tolist())
    # each window is a contiguous piece of one user's training part, in order
    parts = {tuple(w.sequence(u)[:-2].tolist()) for u in range(w.n_users)}
    text = {",".join(map(str, p)) for p in parts}
    for row, n in zip(win[:200], n_real[:200]):
        piece = ",".join(map(str, row[max_len - n:].tolist()))
        assert any(piece == t or t.startswith(piece + ",") or t.endswith("," + piece) or ("," + piece + ",") in t
                   for t in text)


# ---------------------------------------------------------------- impression log
def test_impression_log_consistent_with_sequences(tiny_world):
    assert tiny_world.n_users_dropped == 0
    _check_impressions(tiny_world)


def test_impression_log_consistent_when_users_are_dropped():
    world = build_world(WorldConfig.tiny(n_users=120, min_clicks=13))
    assert world.n_users_dropped > 0 and world.n_users > 0
    assert world.n_users + world.n_users_dropped == 120
    assert (world.seq_lengths >= 13).all()
    _check_impressions(world)


# ---------------------------------------------------------------- true utility
def test_true_utility_matches_hand_computation(tiny_world):
    w, cfg = tiny_world, tiny_world.cfg
    states = w.click_states[[0, 7, 100]]
    items = np.array([[0, 5, -1, 199], [3, 3, 42, -1], [-1, -1, 10, 11]])
    got = w.true_utility(states, items)
    assert got.shape == (3, 4)
    for b in range(3):
        for c in range(4):
            i = items[b, c]
            if i < 0:
                assert got[b, c] == -np.inf
                continue
            aff = float(np.dot(states[b].astype(np.float64), w.item_vectors[i].astype(np.float64)))
            want = (cfg.utility_scale * aff / math.sqrt(cfg.latent_dim)
                    + cfg.quality_weight * float(w.item_quality[i]) + cfg.utility_offset)
            assert got[b, c] == pytest.approx(want, rel=1e-4, abs=1e-4)
    # a 1-D item list is shared by every state
    flat = w.true_utility(states, np.array([5, 42, -1]))
    assert flat.shape == (3, 3)
    np.testing.assert_allclose(flat[:, 0], w.true_utility(states, np.full((3, 1), 5))[:, 0])
    assert np.isneginf(flat[:, 2]).all() and np.isfinite(flat[:, :2]).all()
    p = w.click_probability(states, np.array([5, 42, -1]))
    np.testing.assert_allclose(p[:, :2], 1 / (1 + np.exp(-flat[:, :2])), rtol=1e-6)
    assert (p[:, 2] == 0).all()


def test_true_utility_rejects_bad_shapes(tiny_world):
    w = tiny_world
    with pytest.raises(ValueError, match="states"):
        w.true_utility(np.zeros((2, w.cfg.latent_dim + 1)), np.arange(3))
    with pytest.raises(ValueError, match="states"):
        w.true_utility(np.zeros(w.cfg.latent_dim), np.arange(3))
    with pytest.raises(ValueError, match="batch"):
        w.true_utility(np.zeros((2, w.cfg.latent_dim)), np.zeros((3, 4), dtype=int))


def test_states_for_and_clicked_items_have_high_utility(tiny_world):
    w = tiny_world
    ex = w.examples("test", 5)
    np.testing.assert_array_equal(w.states_for(ex), w.click_states[ex.click_index])
    # the logger targets utility and clicks follow it: clicked items beat the catalogue average
    u = w.true_utility(w.click_states, np.arange(w.n_items))
    clicked_u = u[np.arange(len(w.seq_items)), w.seq_items]
    assert clicked_u.mean() > u.mean() + 2.0
    # and rank in the top fifth of the catalogue for the user state most of the time
    rank = (u > clicked_u[:, None]).sum(1)
    assert np.median(rank) < w.n_items / 5


@pytest.mark.parametrize("drift_noise", [0.0, 0.1])
def test_click_states_follow_the_taste_drift(drift_noise):
    """click_states[j] is the taste just before click j; between two clicks of a user the taste
    moves only at the click: next = (1 - drift) * state + drift * v[clicked item] + noise."""
    world = build_world(WorldConfig.tiny(n_users=100, drift_noise=drift_noise))
    a = world.cfg.taste_drift
    same_user = np.ones(len(world.seq_items) - 1, dtype=bool)
    same_user[world.seq_offsets[1:-1] - 1] = False           # pairs that cross a user boundary
    j = np.flatnonzero(same_user)
    s = world.click_states.astype(np.float64)
    pred = (1 - a) * s[j] + a * world.item_vectors[world.seq_items[j]].astype(np.float64)
    resid = s[j + 1] - pred
    if drift_noise == 0.0:
        np.testing.assert_allclose(resid, 0.0, atol=1e-4)
    else:
        assert resid.std() == pytest.approx(drift_noise, rel=0.05)
        assert abs(resid.mean()) < 0.01


# ---------------------------------------------------------------- exposure bias
def test_exposure_concentration_rises_with_exposure_bias():
    low = exposure_concentration(build_world(WorldConfig.tiny(exposure_bias=0.0)))
    high = exposure_concentration(build_world(WorldConfig.tiny(exposure_bias=0.9)))
    assert list(low.index) == ["impressions", "clicks", "true_demand"]
    assert list(low.columns) == ["gini", "top10_share"]
    assert high.loc["impressions", "gini"] > low.loc["impressions", "gini"] + 0.1
    assert high.loc["impressions", "top10_share"] > low.loc["impressions", "top10_share"] + 0.05
    for df in (low, high):
        assert ((df.values >= 0) & (df.values <= 1)).all()


def test_exposure_concentration_values_match_counts(tiny_world):
    w = tiny_world
    df = exposure_concentration(w, n_states=50, seed=3)
    counts = np.bincount(w.impressions["item"].to_numpy(), minlength=w.n_items)
    assert df.loc["impressions", "gini"] == pytest.approx(gini(counts))
    assert df.loc["impressions", "top10_share"] == pytest.approx(top_share(counts, 0.1))
    clicks = np.bincount(w.seq_items, minlength=w.n_items)
    assert df.loc["clicks", "gini"] == pytest.approx(gini(clicks))


# ---------------------------------------------------------------- gini / top share
@pytest.mark.parametrize("x,want", [
    ([1, 1, 1, 1], 0.0),
    ([0, 0, 0, 1], 0.75),
    ([1, 2, 3, 4], 0.25),
    ([4, 1, 3, 2], 0.25),
    ([0, 0, 2, 2], 0.5),
    ([5], 0.0),
    ([], 0.0),
    ([0, 0, 0], 0.0),
])
def test_gini_hand_computed(x, want):
    assert gini(x) == pytest.approx(want, abs=1e-12)


def test_gini_is_scale_invariant_and_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    x = rng.exponential(size=37)
    pairwise = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert gini(x) == pytest.approx(pairwise, rel=1e-12)
    assert gini(10 * x) == pytest.approx(gini(x), rel=1e-12)


@pytest.mark.parametrize("x,frac,want", [
    ([1] * 10, 0.1, 0.1),
    ([10] + [0] * 9, 0.1, 1.0),
    (list(range(1, 11)), 0.2, 19 / 55),
    (list(range(1, 11)), 0.1, 10 / 55),
    ([3, 1, 2], 0.1, 0.5),          # at least one entry
    ([2, 5, 1, 2], 0.5, 7 / 10),
    ([0, 0, 0], 0.1, 0.0),
    (list(range(1, 20)), 0.1, 37 / 190),   # 1.9 entries round to the top 2
])
def test_top_share_hand_computed(x, frac, want):
    assert top_share(x, frac) == pytest.approx(want, abs=1e-12)


# ---------------------------------------------------------------- config validation
@pytest.mark.parametrize("field,value", [
    ("n_users", -1),
    ("n_users", 0),
    ("n_items", 1),
    ("n_items", 200.0),
    ("n_categories", 500),
    ("latent_dim", 0),
    ("exposure_bias", 1.5),
    ("exposure_bias", -0.1),
    ("taste_drift", 1.0),
    ("taste_drift", -0.2),
    ("slate_size", 201),
    ("slate_size", 0),
    ("shortlist_size", 5),
    ("n_steps_max", 3),
    ("min_clicks", 2),
    ("logging_temperature", 0.0),
    ("popularity_quality_corr", 1.2),
    ("feature_noise", float("nan")),
    ("utility_offset", float("inf")),
    ("position_bias", -1.0),
    ("seed", -3),
    ("seed", True),
])
def test_invalid_config_raises_naming_field_and_value(field, value):
    with pytest.raises(ValueError, match=re.escape(f"{field}={value!r}")):
        WorldConfig.tiny(**{field: value})


def test_profiles_are_valid_and_distinct():
    tiny, quick, full = WorldConfig.tiny(), WorldConfig.quick(), WorldConfig.full()
    assert tiny.n_users < quick.n_users < full.n_users
    assert full.n_items == 4000
    assert WorldConfig.tiny(seed=5).seed == 5 and WorldConfig.tiny(seed=5).n_items == tiny.n_items
