"""The exposure-bias dial of the truth rewards and the one measure that places any reward on the
reward-error axes (effective bias and effective noise)."""
from __future__ import annotations

import numpy as np
import pytest

from adagrpo_core.data.impressions import exposure_buckets, exposure_z
from adagrpo_core.eval.stats import simple_ols
from adagrpo_core.reward.reliability import effective_bias_noise, place_reward
from adagrpo_core.reward.reward_model import RewardConfig
from adagrpo_core.reward.truth_reward import TruthReward


@pytest.fixture(scope="module")
def batch_items(tiny_world):
    batch = tiny_world.examples("train", 10).subset(np.arange(6))
    items = np.tile(np.arange(tiny_world.n_items), (len(batch), 1))           # every item, every state
    return batch, items


def test_exposure_z_is_standardised_and_follows_the_train_counts(tiny_world):
    z = exposure_z(tiny_world)
    _, counts = exposure_buckets(tiny_world)
    assert z.shape == (tiny_world.n_items,)
    assert abs(z.mean()) < 1e-12 and z.std() == pytest.approx(1.0)
    order = np.argsort(counts, kind="stable")
    assert (np.diff(z[order]) >= 0).all()                                    # more impressions, higher z


def test_bias_zero_is_exactly_the_truth(tiny_world, tiny_sids, batch_items):
    batch, items = batch_items
    for out in ("prob", "logit"):
        truth = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth", output=out))
        zero = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth", output=out, bias=0.0))
        a = truth.score_items(batch.history, items, batch).numpy()
        assert np.array_equal(a, zero.score_items(batch.history, items, batch).numpy())
        u = tiny_world.true_utility(tiny_world.states_for(batch), items)
        expected = u if out == "logit" else 1.0 / (1.0 + np.exp(-u))
        np.testing.assert_allclose(a, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("bias", [2.0, -2.0])
def test_bias_credits_items_by_their_exposure(tiny_world, tiny_sids, batch_items, bias):
    batch, items = batch_items
    z = exposure_z(tiny_world)
    truth = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth", output="logit"))
    biased = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth", output="logit", bias=bias))
    shift = (biased.score_items(batch.history, items, batch) - truth.score_items(batch.history, items, batch)).numpy()
    np.testing.assert_allclose(shift, np.broadcast_to(bias * z, shift.shape), atol=1e-5)
    # two items of equal utility: the more exposed one gets the higher reward when bias > 0, the lower when < 0
    hi, lo = int(np.argmax(z)), int(np.argmin(z))
    assert np.sign(shift[0, hi] - shift[0, lo]) == np.sign(bias)
    prob = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth", bias=bias))
    p = prob.score_items(batch.history, items, batch).numpy()
    u = tiny_world.true_utility(tiny_world.states_for(batch), items)
    same_u = 1.0 / (1.0 + np.exp(-(u[0, lo] + bias * z[[hi, lo]])))            # both items at item lo's utility
    assert (same_u[0] > same_u[1]) == (bias > 0)
    np.testing.assert_allclose(p[0, lo], same_u[1], rtol=1e-5)


def test_bias_applies_to_the_truth_sources_only():
    RewardConfig(source="noisy_truth", noise=1.0, bias=-1.0)
    with pytest.raises(ValueError, match="bias=1.0 with source='ranker'"):
        RewardConfig(source="ranker", bias=1.0)
    with pytest.raises(ValueError, match="bias"):
        RewardConfig(source="truth", bias=float("nan"))


def test_effective_bias_recovers_a_planted_bias():
    rng = np.random.default_rng(0)
    S, N = 300, 500
    u = rng.normal(0.0, 1.7, (S, N))                                          # true utility
    z = rng.standard_normal(N)
    z = (z - z.mean()) / z.std()
    reward = 0.7 * (u + 2.0 * z) + rng.normal(0.0, 1.0, N)                    # per-item noise of std 1
    placed = effective_bias_noise(reward, u, z)
    assert placed["effective_bias"] == pytest.approx(1.4, abs=0.2)
    assert placed["n"] == S * N and 0 < placed["truth_corr"] < 1
    exact = effective_bias_noise(u + 3.0 * z, u, z)                           # a pure bias, no noise
    assert exact["effective_bias"] == pytest.approx(3.0) and exact["effective_noise"] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match=r"\[S, N\]"):
        effective_bias_noise(u, u[:, :10], z)


def test_effective_bias_of_the_dial_is_the_dial(tiny_world, tiny_sids, batch_items):
    batch, items = batch_items
    z = exposure_z(tiny_world)
    u = tiny_world.true_utility(tiny_world.states_for(batch), items)
    r = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth", output="logit", bias=1.5))
    placed = effective_bias_noise(r.score_items(batch.history, items, batch).numpy(), u, z)
    assert placed["effective_bias"] == pytest.approx(1.5, abs=1e-4)
    assert placed["effective_noise"] < 1e-4


def test_simple_ols_line_and_degenerate_input():
    x = np.arange(10.0)
    fit = simple_ols(2.0 + 0.5 * x, x)
    assert fit["slope"] == pytest.approx(0.5) and fit["intercept"] == pytest.approx(2.0) and fit["resid_std"] < 1e-12
    assert np.isnan(simple_ols(x, np.ones(10))["slope"])
    with pytest.raises(ValueError, match="at least 3"):
        simple_ols([1.0, 2.0], [1.0, 2.0])


def test_place_reward_measures_the_dial_on_test_states(tiny_world, tiny_sids):
    r = TruthReward(tiny_world, tiny_sids, RewardConfig(source="truth", output="logit", bias=-2.0))
    placed = place_reward(tiny_world, r, n_states=20)
    assert placed["effective_bias"] == pytest.approx(-2.0, abs=1e-4)
    assert placed["n"] == 20 * tiny_world.n_items and placed["truth_corr"] < 1
    with pytest.raises(ValueError, match="n_states"):
        place_reward(tiny_world, r, n_states=0)


def test_reward_labels_name_the_dials():
    from adagrpo_core.suite.experiments import reward_label
    assert reward_label(RewardConfig()) == "ranker"
    assert reward_label(RewardConfig(source="truth")) == "truth"
    assert reward_label(RewardConfig(source="noisy_truth", noise=3.0)) == "noisy_truth(3)"
    assert reward_label(RewardConfig(source="truth", bias=4.0)) == "truth(bias=4)"
    assert reward_label(RewardConfig(source="noisy_truth", noise=1.0, bias=-2.0)) == "noisy_truth(1, bias=-2)"
