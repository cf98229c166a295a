"""Seed-level statistics (eval/stats.py) on small hand-built numbers, and where the suite runs its
answer seeds (answers.py): the two-group seed distribution of the harmful regime must come out
with a wide interval and the right share of seeds below 0; the sign-flip p is exact; Holm runs
over a table's rows; the hierarchical bootstrap carries the seeds' spread, which the bootstrap
over users alone does not."""
import itertools

import numpy as np
import pandas as pd
import pytest

from adagrpo_core.suite.answers import answer_methods, extra_seeds, with_answer_seeds
from adagrpo_core.configs import get_profile
from adagrpo_core.eval.stats import (
    crossed_bootstrap_ci,
    hierarchical_bootstrap_ci,
    holm,
    holm_columns,
    mean_ci,
    paired_bootstrap_ci,
    parse_per_seed,
    seed_comparison,
    sign_flip_p,
)
from adagrpo_core.suite.phase import answer_plans, answer_table, phase_methods
from adagrpo_core.runs import plan_runs

# the ten seeds of uniform RL minus continued NLL at exposure bias -4 (sim CTR): two groups
TWO_GROUPS = [-0.0425, -0.0393, -0.0395, 0.0040, -0.0088, -0.0425, -0.0387, -0.0079, -0.0364, -0.0471]


def _users(values, n=800, sd=0.25, seed=0):
    rng = np.random.default_rng(seed)
    return {i: v + rng.normal(0, sd, n) for i, v in enumerate(values)}


def test_two_group_seeds_give_a_wide_interval_and_the_right_share():
    c = seed_comparison(dict(enumerate(TWO_GROUPS)), _users(TWO_GROUPS))
    assert c["n_seeds"] == 10
    assert c["share_below_0"] == pytest.approx(0.9)
    assert c["mean"] == pytest.approx(np.mean(TWO_GROUPS))
    assert c["ci"] == pytest.approx(0.0130, abs=2e-4)               # the issue's -0.0299 +- 0.0131
    # the bootstrap over users alone, pooled over the seeds, is several times narrower
    pooled = np.concatenate(list(_users(TWO_GROUPS).values()))
    _, lo, hi = paired_bootstrap_ci(pooled, np.zeros_like(pooled))
    assert (hi - lo) < 0.5 * (c["hboot_high"] - c["hboot_low"])
    assert parse_per_seed(c["per_seed"]) == pytest.approx(dict(enumerate(TWO_GROUPS)))


def test_three_seeds_of_one_group_look_precise_and_ten_do_not():
    three = seed_comparison(dict(enumerate(TWO_GROUPS[:3])))
    ten = seed_comparison(dict(enumerate(TWO_GROUPS)))
    assert three["ci"] < 0.006 < ten["ci"] / 2
    assert three["share_below_0"] == 1.0
    assert three["p_seed"] == pytest.approx(0.25)                  # 2 / 2^3: three seeds cannot do better


def test_sign_flip_p_is_exact():
    x = np.array([0.3, -0.1, 0.2, 0.5])
    stats = [abs(np.mean(np.array(s) * x)) for s in itertools.product([-1, 1], repeat=4)]
    assert sign_flip_p(x) == pytest.approx(np.mean(np.array(stats) >= abs(x.mean()) - 1e-12))
    assert sign_flip_p(np.full(10, 0.01)) == pytest.approx(2 / 1024)
    assert sign_flip_p([0.0]) == 1.0
    assert np.isnan(sign_flip_p([]))
    big = np.r_[np.full(17, 1.0), np.full(3, -1.0)]                # Monte Carlo past 16 seeds
    assert 0.0 < sign_flip_p(big) < 0.01


def test_hierarchical_bootstrap_contains_the_centre_and_carries_seed_spread():
    users = _users(TWO_GROUPS, n=300, sd=0.05)
    lo, hi = hierarchical_bootstrap_ci(list(users.values()), n_boot=1000, seed=1)
    m, half = mean_ci(TWO_GROUPS)
    assert lo < m < hi
    assert hi - lo > half                    # at least as wide as half the t interval: the seeds' spread
    same = {i: users[0] for i in range(10)}  # one seed copied ten times: only the users vary
    lo1, hi1 = hierarchical_bootstrap_ci(list(same.values()), n_boot=1000, seed=1)
    assert hi1 - lo1 < (hi - lo) / 3
    assert hierarchical_bootstrap_ci(list(users.values()), n_boot=500, seed=3) == \
        hierarchical_bootstrap_ci(list(users.values()), n_boot=500, seed=3)
    assert np.isnan(hierarchical_bootstrap_ci([])[0])


def test_holm_on_seed_level_p_over_a_table():
    t = pd.DataFrame({"method": ["a", "b", "c"], "x_p_seed": [0.002, 0.04, np.nan]})
    out = holm_columns(t, ["x_p_seed", "absent_p"])
    assert out["x_p_seed_holm"].iloc[0] == pytest.approx(0.004)
    assert out["x_p_seed_holm"].iloc[1] == pytest.approx(0.04)
    assert np.isnan(out["x_p_seed_holm"].iloc[2])
    assert "absent_p_holm" not in out
    assert np.isnan(holm([np.nan])).all()


def test_empty_comparison_is_nan_not_an_error():
    c = seed_comparison({})
    assert c["n_seeds"] == 0 and np.isnan(c["mean"]) and c["per_seed"] == ""
    assert parse_per_seed(np.nan) == {}


def test_paper_profile_runs_ten_seeds_at_the_answer_points_only(tmp_path):
    prof = get_profile("paper")
    assert prof.suite.answer_seeds == list(range(10))
    assert extra_seeds(prof, [0, 1, 2]) == list(range(3, 10))
    assert answer_methods(prof, "nb08_bias", -4.0) == ["nll", "mix(0.5)", "mix(1)", "adagrpo", "random", "oracle"]
    assert answer_methods(prof, "nb08_bias", -8.0) == []          # -8 is not an answer point
    assert answer_table("bias", "reliability") == "nb08_bias_reliability" and answer_table("noise") is None
    methods = phase_methods(["nll", "mix(0.5)", "mix(1)", "adagrpo", "random", "inverse", "oracle"], [0.5, 0.8])
    groups = with_answer_seeds(prof, methods, [0, 1, 2], "nb08_bias", -4.0)
    assert [m.name for m in groups[1][0]] == ["nll", "mix(0.5)", "mix(1)", "adagrpo", "random", "oracle"]
    assert groups[1][1] == list(range(3, 10))
    assert len(with_answer_seeds(prof, methods, [0, 1, 2], "nb08_bias", 2.0)) == 1
    # a matched control brings the gate it copies into its group
    audit = phase_methods(["nll", "exposure", "random[exposure]"])
    small = type(prof.suite)(answer_seeds=[0, 1, 2, 3], answer_points={"nb07_audit": {"methods": ["random[exposure]"]}})
    p2 = type(prof)(name="paper", suite=small)
    g = with_answer_seeds(p2, audit, [0], "nb07_audit")
    assert sorted(m.name for m in g[1][0]) == ["exposure", "random[exposure]"]
    # the extra seeds' runs have the same keys as the notebooks' own plan at those seeds
    plans = answer_plans(prof, [3], tmp_path)
    p, specs = next((p, s) for t, v, p, s in plans if t == "nb08_bias" and v == -4.0)
    same = plan_runs(p, phase_methods(["nll", "mix(0.5)", "mix(1)", "adagrpo", "random", "oracle"], [0.5]), [3], tmp_path)
    assert sorted(s.out_dir for s in specs) == sorted(s.out_dir for s in same)


def test_quick_profile_runs_no_extra_seeds():
    prof = get_profile("quick")
    assert extra_seeds(prof, prof.suite.seeds) == []


def test_bad_answer_points_are_named():
    cfg = type(get_profile("paper").suite)
    with pytest.raises(ValueError, match="answer_points"):
        cfg(answer_points={"nb99_nothing": {"methods": ["nll"]}})
    with pytest.raises(ValueError, match="answer_seeds"):
        cfg(answer_seeds=[1, 1])
    with pytest.raises(ValueError, match="table"):
        answer_methods(get_profile("paper"), "nb99")


def test_compare_tables_checks_means_against_the_committed_interval():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "scripts" / "compare_tables.py"
    spec = importlib.util.spec_from_file_location("compare_tables", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    committed = pd.DataFrame({"value": [-4.0, -4.0, 0.0], "method": ["mix(1)", "exposure", "mix(1)"], "seeds": 10,
                              "g": [-0.0299, 0.0082, 0.01], "g_ci": [0.0131, 0.0068, 0.004]})
    other = pd.DataFrame({"value": [-4.0, -4.0, 2.0], "method": ["mix(1)", "exposure", "mix(1)"], "seeds": 5,
                          "g": [-0.0163, 0.0069, 0.0]})
    t = mod.compare(committed, other, ["value", "method"], ["g"])
    assert t.set_index("method").inside.to_dict() == {"mix(1)": False, "exposure": True}   # -0.0163 > -0.0168
    with pytest.raises(ValueError, match="lacks"):
        mod.compare(committed, other.drop(columns="g"), ["value", "method"], ["g"])


def test_crossed_bootstrap_keeps_the_users_shared_by_every_seed():
    """Every seed tested on the same users, whose own effect every seed shares: the mean over seeds
    keeps the users' variance whole (var_user / n), which the nested bootstrap (users drawn anew
    per seed) divides by the seeds. The crossed interval matches the analytic width; the nested
    one is too narrow."""
    rng = np.random.default_rng(0)
    S, n, sd_seed, sd_user = 10, 400, 0.01, 0.2
    X = rng.normal(0, sd_seed, (S, 1)) + rng.normal(0, sd_user, (1, n)) + rng.normal(0, 0.01, (S, n))
    lo, hi = crossed_bootstrap_ci(list(X), n_boot=2000, seed=1)
    want = 2 * 1.96 * np.sqrt(sd_seed ** 2 / S + sd_user ** 2 / n)
    assert lo < X.mean() < hi and hi - lo == pytest.approx(want, rel=0.3)
    nlo, nhi = hierarchical_bootstrap_ci(list(X), n_boot=500, seed=1)
    assert nhi - nlo < 0.75 * (hi - lo)
    assert seed_comparison(dict(enumerate(X.mean(1))), dict(enumerate(X)), crossed=True)["hboot_low"] == \
        pytest.approx(crossed_bootstrap_ci(list(X), seed=0)[0])
    with pytest.raises(ValueError, match="equal-length"):
        crossed_bootstrap_ci([np.ones(3), np.ones(4)])
