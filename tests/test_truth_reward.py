"""The truth rewards (the simulated world's true click probability, optionally noisy) through the
common reward interface, and build_reward's choice of reward by source."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from adagrpo_core.data.impressions import exposure_buckets
from adagrpo_core.reward.ranker import Ranker, RankerConfig
from adagrpo_core.reward.reward_model import RewardConfig, RewardModel, TupleReward
from adagrpo_core.reward.sources import build_reward
from adagrpo_core.reward.truth_reward import TruthReward


@pytest.fixture(scope="module")
def sample(tiny_world, tiny_sids):
    """8 training examples, 5 candidate items each (-1 = invalid; row 3 has no valid item), and
    the tuples of those items (an invalid item gets a tuple that is no item)."""
    batch = tiny_world.examples("train", 10).subset(np.arange(8))
    items = np.random.default_rng(0).integers(0, tiny_world.n_items, (8, 5))
    items[1, 2] = items[2, [0, 4]] = -1
    items[3] = -1
    tuples = tiny_sids.codes[items.clip(min=0)].copy()
    bad = np.full(tiny_sids.length, tiny_sids.vocab_size - 1)
    assert tiny_sids.decode(bad[None])[0] == -1
    tuples[items < 0] = bad
    return batch, items, tuples


def test_truth_is_the_true_click_probability_and_penalises_invalid_tuples(tiny_world, tiny_sids, sample):
    batch, items, tuples = sample
    reward = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth"))
    assert isinstance(reward, TupleReward)
    r = reward(batch.history, tuples, batch=batch)
    assert r.shape == (8, 5) and r.dtype == torch.float32
    torch.testing.assert_close(r, reward.score_items(batch.history, items, batch))   # the two entry points agree
    valid = items >= 0
    expected = tiny_world.click_probability(tiny_world.states_for(batch), items.clip(min=0))
    np.testing.assert_allclose(r.numpy()[valid], expected[valid], rtol=1e-6)
    assert (r.numpy()[~valid] == -1.0).all()
    fixed = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth", invalid_reward=-3.5))
    assert (fixed(batch.history, tuples, batch=batch).numpy()[~valid] == -3.5).all()


def test_truth_logit_serves_the_utility_and_fills_invalid_below_the_row(tiny_world, tiny_sids, sample):
    batch, items, tuples = sample
    r = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth", output="logit"))(
        batch.history, tuples, batch=batch).numpy()
    valid = items >= 0
    u = tiny_world.true_utility(tiny_world.states_for(batch), items.clip(min=0))
    np.testing.assert_allclose(r[valid], u[valid], rtol=1e-6)
    for row in (1, 2):                                                  # the row's lowest valid utility - 1
        np.testing.assert_allclose(r[row, ~valid[row]], u[row, valid[row]].min() - 1.0, rtol=1e-6)
    assert (r[3] == -10.0).all()                                        # no valid item in the row
    fixed = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth", output="logit", invalid_reward=0.25))
    assert (fixed(batch.history, tuples, batch=batch).numpy()[~valid] == 0.25).all()


def test_noisy_truth_errs_on_rare_items_only_and_always_the_same_way(tiny_world, tiny_sids, sample):
    batch, items, _ = sample
    cfg = RewardConfig(source="noisy_truth", noise=2.0, noise_seed=3, output="logit")
    noisy = TruthReward(tiny_world, tiny_sids, cfg)
    bucket, _ = exposure_buckets(tiny_world, 5)
    assert (noisy.item_error[bucket == 4] == 0).all() and (noisy.item_error[bucket == 0] != 0).all()
    np.testing.assert_array_equal(noisy.item_error, TruthReward(tiny_world, tiny_sids, cfg).item_error)
    truth = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth", output="logit"))
    valid = items >= 0
    gap = (noisy.score_items(batch.history, items, batch) - truth.score_items(batch.history, items, batch)).numpy()
    np.testing.assert_allclose(gap[valid], noisy.item_error[items[valid]], atol=1e-5)


def test_truth_reward_rejects_bad_arguments(tiny_world, tiny_sids, sample):
    batch, _, tuples = sample
    reward = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth"))
    with pytest.raises(ValueError, match="needs the batch"):
        reward(batch.history, tuples)
    with pytest.raises(ValueError, match="items"):
        reward.score_items(batch.history, np.full((8, 2), tiny_world.n_items), batch)
    with pytest.raises(ValueError, match=r"\[B, G, L\]"):
        reward(batch.history, tuples[0], batch=batch)
    with pytest.raises(ValueError, match="true utility"):
        TruthReward(object(), tiny_sids, RewardConfig(source="truth"))


def test_build_reward_picks_the_reward_of_the_source(tiny_world, tiny_sids):
    ranker = Ranker(RankerConfig(device="cpu"), tiny_world.item_features, tiny_world.item_category)
    assert isinstance(build_reward(tiny_world, tiny_sids, ranker, RewardConfig()), RewardModel)
    for source in ("truth", "noisy_truth"):
        assert isinstance(build_reward(tiny_world, tiny_sids, None, RewardConfig(source=source)), TruthReward)
