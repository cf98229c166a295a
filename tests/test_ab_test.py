"""The simulated A/B test: exact cascade CTR, the ceiling, invalid items, reference slates."""
import numpy as np
import pytest

from adagrpo_core.eval.ab_test import (ceiling_slates, examination, logging_ctr_mc, most_popular_slates,
                                       slate_click_stats, tail_items)


@pytest.fixture(scope="module")
def states(tiny_world):
    idx = np.random.default_rng(0).choice(len(tiny_world.click_states), 64, replace=False)
    return tiny_world.click_states[idx]


def simulate_clicks(world, states, slates, n, rng):
    """Monte Carlo of the cascade the world logs with: examine p w.p. e_p, click w.p. sigmoid(u)."""
    u = world.true_utility(states, np.maximum(slates, 0))
    s = np.where(slates >= 0, 1 / (1 + np.exp(-u)), 0.0)
    e = examination(slates.shape[1], world.cfg.position_bias)
    attracted = rng.random((n,) + slates.shape) < (e * s)[None]                  # [n, U, K]
    return attracted.any(-1)                                                      # a click somewhere


def test_exact_ctr_equals_monte_carlo_within_its_error(tiny_world, states):
    rng = np.random.default_rng(1)
    slates = rng.integers(0, tiny_world.n_items, (len(states), 10))
    exact = slate_click_stats(tiny_world, states, slates)["ctr"]
    n = 4000
    mc = simulate_clicks(tiny_world, states, slates, n, rng).mean(0)             # [U]
    se = np.sqrt(exact * (1 - exact) / n)
    assert (np.abs(mc - exact) <= 4 * se + 1e-9).all()
    overall_se = np.sqrt((exact * (1 - exact)).sum() / n) / len(exact)
    assert abs(mc.mean() - exact.mean()) <= 4 * overall_se


def test_ceiling_is_never_beaten_on_any_user(tiny_world, states):
    rng = np.random.default_rng(2)
    ceiling = slate_click_stats(tiny_world, states, ceiling_slates(tiny_world, states, 10))["ctr"]
    candidates = [rng.integers(0, tiny_world.n_items, (len(states), 10)) for _ in range(20)]
    candidates.append(most_popular_slates(tiny_world, len(states), 10))
    top = ceiling_slates(tiny_world, states, 20)
    candidates += [top[:, 10:], top[:, ::-1][:, :10], top[:, :10][:, ::-1]]   # worse sets, and the best set reversed
    for s in candidates:
        ctr = slate_click_stats(tiny_world, states, s)["ctr"]
        assert (ctr <= ceiling + 1e-12).all()


def test_an_invalid_item_contributes_no_click(tiny_world, states):
    rng = np.random.default_rng(3)
    slates = rng.integers(0, tiny_world.n_items, (len(states), 10))
    with_invalid = slates.copy()
    with_invalid[:, 3] = -1
    got = slate_click_stats(tiny_world, states, with_invalid)["ctr"]
    e = examination(10, tiny_world.cfg.position_bias)
    s_ = 1 / (1 + np.exp(-tiny_world.true_utility(states, slates)))
    s_[:, 3] = 0.0                                          # examined, never clicked
    np.testing.assert_allclose(got, 1 - np.prod(1 - e * s_, axis=1), rtol=1e-6)
    assert (got <= slate_click_stats(tiny_world, states, slates)["ctr"] + 1e-12).all()
    all_invalid = slate_click_stats(tiny_world, states, np.full_like(slates, -1))
    assert (all_invalid["ctr"] == 0).all() and np.isnan(all_invalid["dwell"]).all()
    assert all_invalid["coverage"] == 0


def test_dwell_is_the_expected_utility_of_the_click(tiny_world, states):
    slates = ceiling_slates(tiny_world, states, 10)
    st = slate_click_stats(tiny_world, states, slates)
    u = tiny_world.true_utility(states, slates)
    assert (st["dwell"] <= u.max(1) + 1e-9).all() and (st["dwell"] >= u.min(1) - 1e-9).all()
    assert 0 < st["coverage"] <= 1 and 0 <= st["tail_share"] <= 1


def test_tail_and_logging_reference(tiny_world, states):
    tail = tail_items(tiny_world)
    assert tail.mean() == pytest.approx(0.8, abs=0.01)
    a = logging_ctr_mc(tiny_world, states, n_samples=5, seed=0)
    b = logging_ctr_mc(tiny_world, states, n_samples=5, seed=0)
    assert np.array_equal(a, b) and ((a >= 0) & (a <= 1)).all()
