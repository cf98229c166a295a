"""Ranker: AUC helper, training on the tiny world, reward API, reliability report, validation."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from adagrpo_core.reward.ranker import RankerConfig, load_ranker
from adagrpo_core.reward.reward_model import RewardConfig, RewardModel
from adagrpo_core.eval.metrics import auc
from adagrpo_core.data.impressions import grouped_impressions, impression_histories
from adagrpo_core.reward.reliability import reliability_report
from adagrpo_core.reward.training import train_ranker

FAST = dict(embed_dim=16, attention_hidden=16, mlp_hidden=(32,), max_epochs=4, patience=2,
            batch_size=1024, device="cpu")


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    """One ranker trained on the tiny world (with a checkpoint), shared by the tests below."""
    path = tmp_path_factory.mktemp("ranker") / "ranker.pt"
    ranker, history = train_ranker(tiny_world, RankerConfig(**FAST), checkpoint_path=path, progress=False)
    return ranker, history, path


def log_like(world, **changes):
    """A duck-typed training source: the world's attributes, some replaced."""
    attrs = {k: getattr(world, k) for k in
             ("impressions", "seq_items", "seq_offsets", "n_items", "item_features", "item_category")}
    attrs.update(changes)
    return SimpleNamespace(**attrs)


# ------------------------------------------------------------------------------ auc
def test_auc_hand_computed_values():
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # ties between a positive and a negative count one half: (0.5 + 1 + 1 + 1) / 4
    assert auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)
    assert auc([1, 0, 1, 0], [3.0, 3.0, 3.0, 3.0]) == pytest.approx(0.5)
    assert auc([1, 1, 0], [0.0, 0.1, 0.2]) == pytest.approx(0.0)
    assert np.isnan(auc([1, 1], [0.3, 0.2]))


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = rng.integers(0, 10, 300).astype(float)          # many ties
    pos, neg = s[y][:, None], s[~y][None, :]
    brute = ((pos > neg) + 0.5 * (pos == neg)).mean()
    assert auc(y, s) == pytest.approx(brute)
    assert auc(torch.as_tensor(y), torch.as_tensor(s)) == pytest.approx(brute)


# ------------------------------------------------------------------------------ data
def test_impression_histories_match_python_reference(tiny_world):
    imp = tiny_world.impressions.sample(200, random_state=0)
    H = 5
    hist = impression_histories(tiny_world, imp["user"], imp["hist_len"], H)
    for row, (u, k) in enumerate(zip(imp["user"], imp["hist_len"])):
        clicks = tiny_world.sequence(u)[:k][-H:]
        expected = np.r_[np.full(H - len(clicks), -1), clicks]
        np.testing.assert_array_equal(hist[row], expected)


def test_grouped_impressions_cover_every_row_once(tiny_world):
    hist, items, labels, rows = grouped_impressions(tiny_world, "train", 20, 10)
    imp = tiny_world.impressions
    train_rows = np.flatnonzero((imp["split"] == "train").to_numpy())
    got = np.sort(rows[rows >= 0])
    np.testing.assert_array_equal(got, train_rows)
    np.testing.assert_array_equal(items[rows >= 0], imp["item"].to_numpy()[rows[rows >= 0]])
    np.testing.assert_array_equal(labels[rows >= 0], imp["clicked"].to_numpy()[rows[rows >= 0]])
    assert hist.shape == (len(items), 20) and (items[rows < 0] == -1).all()


# ------------------------------------------------------------------------------ training
def test_ranker_beats_random_on_held_out_impressions(tiny_world, trained):
    ranker, history, _ = trained
    assert list(history.columns[:3]) == ["epoch", "train_loss", "valid_auc"]
    assert history["train_loss"].notna().all()
    table = reliability_report(tiny_world, ranker, n_buckets=3, n_candidates=30)["auc"]
    overall = table.set_index("bucket").loc["all"]
    assert overall["auc"] > 0.55, table
    assert table["impressions"].iloc[:-1].sum() == overall["impressions"]


def test_checkpoint_round_trip(tiny_world, trained):
    ranker, _, path = trained
    loaded = load_ranker(path, device="cpu")
    ex = tiny_world.examples("test", ranker.cfg.max_history)
    items = np.tile(np.arange(7), (len(ex), 1))
    np.testing.assert_allclose(loaded.score(ex.history, items), ranker.score(ex.history, items), rtol=1e-6)
    assert loaded.cfg == ranker.cfg


def test_training_is_deterministic_on_cpu(tiny_world):
    cfg = RankerConfig(**{**FAST, "max_epochs": 1})
    a, ha = train_ranker(tiny_world, cfg, progress=False)
    b, hb = train_ranker(log_like(tiny_world), cfg, progress=False)      # duck-typed source
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert ha["valid_auc"].tolist() == hb["valid_auc"].tolist()


def test_training_without_valid_split_keeps_last_epoch(tiny_world):
    imp = tiny_world.impressions
    cfg = RankerConfig(**{**FAST, "max_epochs": 2})
    _, history = train_ranker(log_like(tiny_world, impressions=imp[imp["split"] != "valid"]), cfg,
                              progress=False)
    assert len(history) == 2 and history["valid_auc"].isna().all() and history["best"].all()


def test_reliability_report_tables(tiny_world, trained):
    ranker, _, _ = trained
    rep = reliability_report(tiny_world, ranker, n_buckets=2, n_candidates=20, n_negatives=5)
    assert set(rep) == {"auc", "truth", "pairwise"}
    for df in rep.values():
        assert df["bucket"].tolist() == [0, 1, "all"]
    assert rep["truth"]["spearman"].between(-1, 1).all()
    assert (rep["truth"]["users"] == tiny_world.n_users).all()
    pw = rep["pairwise"].set_index("bucket")
    assert pw.loc["all", "examples"] == tiny_world.n_users == pw.loc[[0, 1], "examples"].sum()
    assert pw[["acc_random", "acc_popular", "truth_acc_random", "truth_acc_popular"]].stack().between(0, 1).all()


# ------------------------------------------------------------------------------ reward
def invalid_tuple(sids):
    for code in range(sids.vocab_size - 1, -1, -1):
        t = np.full(sids.length, code)
        if not sids.is_valid(t[None])[0]:
            return t
    raise AssertionError("no invalid tuple found")


@pytest.fixture(scope="module")
def rollouts(tiny_world, tiny_sids):
    """history [4, 20] and tuples [4, 5, L]: row 0 all valid, rows 1-2 mixed, row 3 all invalid."""
    ex = tiny_world.examples("test", 20)
    rng = np.random.default_rng(0)
    items = rng.integers(0, tiny_world.n_items, (4, 5))
    tuples = tiny_sids.encode(items)
    bad = invalid_tuple(tiny_sids)
    tuples[1, 2] = bad
    tuples[2, [0, 4]] = bad
    tuples[3] = bad
    items[1, 2] = items[2, [0, 4]] = -1
    items[3] = -1
    return ex.history[:4], tuples, items


@pytest.mark.parametrize("output", ["logit", "prob"])
def test_reward_shapes_and_valid_scores(trained, tiny_sids, rollouts, output):
    ranker, _, _ = trained
    history, tuples, items = rollouts
    reward = RewardModel(ranker, tiny_sids, RewardConfig(output=output))
    r = reward(history, torch.as_tensor(tuples))
    assert r.shape == (4, 5) and r.dtype == torch.float32 and not r.requires_grad
    np.testing.assert_array_equal(reward.decode(tuples).numpy(), items)
    direct = reward.score_items(history, items)
    valid = torch.as_tensor(items >= 0)
    torch.testing.assert_close(r[valid], direct[valid])
    # a valid reward is the ranker's score of the decoded item (sigmoid for "prob")
    logits = ranker(torch.as_tensor(history), torch.as_tensor(items).clamp(min=0)).detach()
    expected = torch.sigmoid(logits) if output == "prob" else logits
    torch.testing.assert_close(r[valid], expected[valid], rtol=1e-5, atol=1e-6)


def test_reward_invalid_handling(trained, tiny_sids, rollouts):
    ranker, _, _ = trained
    history, tuples, items = rollouts
    valid = torch.as_tensor(items >= 0)
    fixed = RewardModel(ranker, tiny_sids, RewardConfig(output="logit", invalid_reward=-5.0))(history, tuples)
    assert (fixed[~valid] == -5.0).all()
    prob = RewardModel(ranker, tiny_sids, RewardConfig(output="prob"))(history, tuples)
    assert (prob[~valid] == -1.0).all() and (prob[valid] >= 0).all()
    logit = RewardModel(ranker, tiny_sids, RewardConfig(output="logit"))(history, tuples)
    for row in range(3):                        # penalty = the row's lowest valid score - 1
        v = valid[row]
        assert (logit[row, ~v] == logit[row, v].min() - 1).all()
        assert (logit[row, ~v] < logit[row, v].min()).all()
    assert (logit[3] == -10.0).all()            # no valid item in the row
    assert RewardModel(ranker, tiny_sids).output == RewardConfig().output == "prob"   # one owner, one default


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("field, value", [
    ("dropout", 1.5), ("output", "foo"), ("embed_dim", 0), ("lr", -1.0), ("patience", 0),
    ("mlp_hidden", (32, 0)), ("invalid_reward", float("nan")), ("max_history", 2.5),
])
def test_invalid_config_names_field_and_value(field, value):
    cls = RewardConfig if field in ("output", "invalid_reward") else RankerConfig
    with pytest.raises(ValueError, match=field) as info:
        cls(**{field: value})
    assert repr(value) in str(info.value) or str(value) in str(info.value)


def test_bad_training_data_raises_before_work(tiny_world):
    imp = tiny_world.impressions
    empty = log_like(tiny_world, impressions=imp[imp["split"] != "train"])
    with pytest.raises(ValueError, match="split == 'train'"):
        train_ranker(empty, RankerConfig(**FAST), progress=False)
    with pytest.raises(ValueError, match="split == 'train'"):
        train_ranker(log_like(tiny_world, impressions=imp.iloc[:0]), RankerConfig(**FAST), progress=False)
    shifted = imp.copy()
    shifted.loc[shifted.index[0], "item"] = tiny_world.n_items
    with pytest.raises(ValueError, match=f"n_items={tiny_world.n_items}"):
        train_ranker(log_like(tiny_world, impressions=shifted), RankerConfig(**FAST), progress=False)
    with pytest.raises(ValueError, match="item_features"):
        train_ranker(log_like(tiny_world, item_features=tiny_world.item_features[:-1]),
                     RankerConfig(**FAST), progress=False)


def test_reward_rejects_bad_arguments(trained, tiny_sids):
    ranker, _, _ = trained
    with pytest.raises(ValueError, match="output='foo'"):
        RewardConfig(output="foo")
    reward = RewardModel(ranker, tiny_sids)
    with pytest.raises(ValueError, match="items"):
        reward.score_items(np.full((2, 3), -1), np.full((2, 4), ranker.n_items))
    with pytest.raises(ValueError, match="tuples"):
        reward(np.full((2, 3), -1), np.zeros((2, tiny_sids.length), dtype=np.int64))
