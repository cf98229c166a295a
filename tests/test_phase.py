"""The reward phase diagram's parts: the re-logged impressions a retrained ranker learns from, its
cache key, the dials, the method names, the plan's checks, crossovers, the HR@10 / CTR
disagreement and the verdict's harmful regime, on small real or hand-built inputs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adagrpo_core.configs import get_profile
from adagrpo_core.data.relog import relog_impressions, relogged_world
from adagrpo_core.eval.metrics import gini
from adagrpo_core.suite.phase import (
    crossovers,
    dial_origin,
    dial_reward,
    gate_set_methods,
    metric_disagreement,
    phase_methods,
    phase_plan,
)
from adagrpo_core.pipeline import _ranker_path
from adagrpo_core.reward.reward_model import RewardConfig
from adagrpo_core.runs import MethodSpec, plan_runs
from adagrpo_core.suite.verdicts import harmful_values, phase_verdict, reliability_verdict


# ------------------------------------------------------------------ re-logged impressions
def test_relog_keeps_the_user_states_and_is_deterministic(tiny_world):
    a = relog_impressions(tiny_world, 0.9, 1.0, seed=3)
    b = relog_impressions(tiny_world, 0.9, 1.0, seed=3)
    pd.testing.assert_frame_equal(a, b)
    own = tiny_world.impressions[tiny_world.impressions.split != "test"]
    assert list(a.columns) == list(tiny_world.impressions.columns) and len(a) == len(own)
    # the same slates (user, step, click count, split), other items and clicks
    key = ["user", "step", "position", "hist_len"]
    pd.testing.assert_frame_equal(a[key].reset_index(drop=True), own[key].reset_index(drop=True), check_dtype=False)
    assert (a.split.astype(str).to_numpy() == own.split.astype(str).to_numpy()).all()
    assert not (a.item.to_numpy() == own.item.to_numpy()).all()
    per_slate = a.groupby(["user", "step"]).clicked.sum()
    assert per_slate.max() <= 1                                              # the cascade: one click at most
    assert not relog_impressions(tiny_world, 0.9, 1.0, seed=4).equals(a)


def test_relog_bias_concentrates_exposure_and_share_cuts_slates(tiny_world):
    S = tiny_world.cfg.slate_size
    counts = lambda imp: np.bincount(imp.item, minlength=tiny_world.n_items)   # noqa: E731
    low, high = relog_impressions(tiny_world, 0.0), relog_impressions(tiny_world, 1.0)
    assert gini(counts(high)) > gini(counts(low)) + 0.1
    half = relog_impressions(tiny_world, None, 0.5)
    assert len(half) == S * round(0.5 * len(low) / S)
    world = relogged_world(tiny_world, 1.0, 0.5)
    assert world.seq_items is tiny_world.seq_items and world.click_states is tiny_world.click_states
    with pytest.raises(ValueError, match="share"):
        relog_impressions(tiny_world, 0.5, 0.0)
    with pytest.raises(ValueError, match="exposure_bias"):
        relog_impressions(tiny_world, 1.5)


def test_relog_needs_the_simulated_world():
    class NotAWorld:
        pass
    with pytest.raises(ValueError, match="simulated world"):
        relog_impressions(NotAWorld(), 0.5)


def test_a_retrained_ranker_has_its_own_cache_key(tiny_world, tmp_path):
    cfg = get_profile("tiny").ranker
    own = _ranker_path(tiny_world, cfg, tmp_path)
    assert _ranker_path(tiny_world, cfg, tmp_path, **RewardConfig().ranker_log) == own
    other = _ranker_path(tiny_world, cfg, tmp_path, **RewardConfig(ranker_logging_bias=0.95).ranker_log)
    fewer = _ranker_path(tiny_world, cfg, tmp_path, **RewardConfig(ranker_log_share=0.5).ranker_log)
    assert len({own, other, fewer}) == 3


def test_the_ranker_log_dials_are_checked():
    with pytest.raises(ValueError, match="source='ranker' only"):
        RewardConfig(source="truth", ranker_logging_bias=0.9)
    with pytest.raises(ValueError, match="ranker_logging_bias"):
        RewardConfig(ranker_logging_bias=1.2)
    with pytest.raises(ValueError, match="ranker_log_share"):
        RewardConfig(ranker_log_share=0.0)
    assert not RewardConfig().relogs and RewardConfig(ranker_log_share=0.5).relogs


# ------------------------------------------------------------------ dials, methods and the plan
def test_dials_build_their_rewards():
    assert dial_reward("bias", 0) == RewardConfig(source="truth")           # shared with notebook 07's truth runs
    assert dial_reward("noise", 0) == RewardConfig(source="truth")
    assert dial_reward("noise", 3) == RewardConfig(source="noisy_truth", noise=3.0)
    assert dial_reward("bias", -2).bias == -2.0
    r = dial_reward("ranker_log", 0.95, 0.5)
    assert (r.source, r.ranker_logging_bias, r.ranker_log_share) == ("ranker", 0.95, 0.5)
    assert dial_origin("ranker_log", get_profile("quick")) == get_profile("quick").world.exposure_bias
    with pytest.raises(ValueError, match="dial='tilt'"):
        dial_reward("tilt", 1)


def test_phase_methods_parse_names_and_expand_the_oracle():
    specs = phase_methods(["nll", "mix(0.5)", "adagrpo", "random", "discriminability-only", "oracle"], (0.5, 0.9))
    assert [s.name for s in specs] == ["nll", "mix(0.5)", "adagrpo", "random", "discriminability-only", "oracle",
                                       "oracle(0.9)"]
    assert dict(specs[1].grpo) == {"lam": 0.5} and dict(specs[-1].gate) == {"oracle_threshold": 0.9}
    with pytest.raises(ValueError, match="unknown phase-diagram method 'magic'"):
        phase_methods(["nll", "magic"])
    with pytest.raises(ValueError, match="include 'nll'"):
        phase_methods(["adagrpo"])


def test_phase_plan_checks_before_any_work():
    quick, paper = get_profile("quick"), get_profile("paper")
    assert phase_plan(quick) == {"bias": [0.0, 4.0]}
    assert set(phase_plan(paper)) == {"bias", "noise", "ranker_log"}
    assert all(len(v) >= 5 for v in phase_plan(paper).values())
    bias = phase_plan(paper)["bias"]
    assert min(bias) < 0 < max(bias)                                          # both sides of the two-sided dial
    assert phase_plan(quick, "noise", [0, 2]) == {"noise": [0.0, 2.0]}
    with pytest.raises(ValueError, match="set dial too"):
        phase_plan(quick, None, [1, 2])
    with pytest.raises(ValueError, match="noise"):
        phase_plan(quick, "noise", [-1])
    with pytest.raises(ValueError, match="ranker_logging_bias"):
        phase_plan(quick, "ranker_log", [0.5, 1.5])
    with pytest.raises(ValueError, match="distinct"):
        phase_plan(quick, "bias", [1, 1])
    with pytest.raises(ValueError, match="ranker_log_share"):
        phase_plan(quick, log_share=0)


def test_nll_runs_are_shared_by_every_dial_value(tmp_path):
    quick = get_profile("quick")
    methods = phase_methods(["nll", "mix(1)"])
    a = plan_runs(quick.__class__(**{**quick.__dict__, "reward": dial_reward("bias", 0)}), methods, [0], tmp_path)
    b = plan_runs(quick.__class__(**{**quick.__dict__, "reward": dial_reward("bias", 4)}), methods, [0], tmp_path)
    assert a[0].out_dir == b[0].out_dir and a[1].out_dir != b[1].out_dir


# ------------------------------------------------------------------ tables read off the runs
def _gains(rows):
    return pd.DataFrame(rows, columns=["value", "method", "sim_ctr_gain", "sim_ctr_gain_ci", "HR@10_gain",
                                       "HR@10_gain_ci"])


def test_crossovers_are_the_nearest_value_with_the_interval_below_zero():
    g = _gains([(-4, "mix(1)", -0.02, 0.01, -0.01, 0.005), (-2, "mix(1)", 0.01, 0.01, -0.02, 0.01),
                (2, "mix(1)", 0.01, 0.005, 0.01, 0.005), (4, "mix(1)", -0.005, 0.01, 0.02, 0.01),
                (8, "mix(1)", -0.02, 0.01, -0.001, 0.01), (8, "adagrpo", -0.05, 0.01, -0.05, 0.01)])
    c = crossovers(g).set_index(["metric", "side"])
    assert c.loc[("sim_ctr", "above"), "crossover"] == 8          # 4's interval reaches above 0
    assert c.loc[("sim_ctr", "below"), "crossover"] == -4
    assert np.isnan(c.loc[("HR@10", "above"), "crossover"]) and c.loc[("HR@10", "above"), "largest_run"] == 8
    assert c.loc[("HR@10", "below"), "crossover"] == -2
    assert harmful_values(g) == [-4, 8]


def test_metric_disagreement_ranks_methods_by_both_metrics():
    rows = pd.DataFrame({"value": [4] * 3 + [0] * 3, "checkpoint": "best", "seed": 0,
                         "method": ["nll", "mix(1)", "adagrpo"] * 2,
                         "sim_ctr": [0.30, 0.28, 0.31, 0.30, 0.32, 0.31],
                         "HR@10": [0.40, 0.43, 0.41, 0.40, 0.42, 0.41]})
    d = metric_disagreement(rows).set_index("value")
    assert d.loc[0, "kendall_tau"] == pytest.approx(1.0)
    assert d.loc[4, "kendall_tau"] == pytest.approx(-1 / 3)
    assert (d.loc[4, "best_by_sim_ctr"], d.loc[4, "best_by_HR@10"]) == ("adagrpo", "mix(1)")


def test_phase_verdict_reports_the_harmful_regime():
    phase = _gains([(0, "mix(1)", 0.02, 0.01, 0.005, 0.004), (4, "mix(1)", -0.015, 0.005, 0.007, 0.003),
                    (4, "adagrpo", -0.002, 0.004, 0.001, 0.003)])
    phase = phase.assign(reward=["truth", "truth(bias=4)", "truth(bias=4)"], effective_bias=[0, 4, 4],
                         effective_noise=0.0, admission_rate=[1, 1, 0.2])
    tables = {"phase": phase, "crossovers": crossovers(phase), "vs_random": pd.DataFrame(),
              "mixture_gap": pd.DataFrame(), "disagreement": pd.DataFrame(columns=["value"])}
    text = "\n".join(phase_verdict("bias", tables))
    assert "crossover of sim_ctr above the origin: at 4" in text
    assert "(f) at 4, where mix(1) hurts" in text and "adagrpo vs NLL: sim CTR -0.0020 ± 0.0040 (contains 0)" in text
    assert "at 4 mix(1) moves them apart" in text


def test_a_retrained_ranker_learns_from_the_relogged_slates(tiny_world, tmp_path):
    from adagrpo_core.suite.experiments import reward_label
    from adagrpo_core.pipeline import get_ranker, ranker_cached
    cfg = get_profile("tiny").ranker
    rc = RewardConfig(ranker_logging_bias=1.0, ranker_log_share=0.5)
    own = get_ranker(tiny_world, cfg, tmp_path, progress=False)
    other = get_ranker(tiny_world, cfg, tmp_path, progress=False, **rc.ranker_log)
    assert ranker_cached(tiny_world, cfg, tmp_path, **rc.ranker_log) and ranker_cached(tiny_world, cfg, tmp_path)
    w_own, w_other = own.state_dict(), other.state_dict()
    assert any(not np.allclose(w_own[k].numpy(), w_other[k].numpy()) for k in w_own)
    again = get_ranker(tiny_world, cfg, tmp_path, progress=False, **rc.ranker_log).state_dict()  # from the cache
    assert all(np.array_equal(w_other[k].numpy(), again[k].numpy()) for k in w_other)
    assert reward_label(rc) == "ranker(log bias=1, share=0.5)"


def test_a_control_matched_to_a_reliability_gate_copies_that_run(tmp_path):
    quick = get_profile("quick")
    specs = {s.name: s for s in plan_runs(quick, phase_methods(["nll", "adagrpo", "random", "exposure", "random[exposure]",
                                                                 "soft", "mix[soft]"]), [0], tmp_path)}
    assert specs["random[exposure]"].reference == specs["exposure"].out_dir
    assert specs["random"].reference == specs["adagrpo"].out_dir
    assert specs["mix[soft]"].reference == specs["soft"].out_dir and specs["mix[soft]"].gate.method == "mix"
    with pytest.raises(ValueError, match="not a gated method"):
        plan_runs(quick, [*phase_methods(["nll", "mix(1)"]), MethodSpec("r", "random", match="mix(1)")], [0], tmp_path)


def test_difficulty_and_ensemble_is_the_combined_gate_with_the_ensemble_check(tmp_path):
    from adagrpo_core.suite.phase import _pairs
    from adagrpo_core.runs import reads_ensemble
    quick = get_profile("quick")
    names = ["nll", "ensemble", "difficulty_and_reliability", "difficulty_and_ensemble", "random[difficulty_and_ensemble]"]
    specs = {s.name: s for s in plan_runs(quick, phase_methods(names), [0], tmp_path)}
    both = specs["difficulty_and_ensemble"]
    assert both.gate.method == "difficulty_and_reliability" and both.gate.reliability == "ensemble"
    assert reads_ensemble(both.gate) and not reads_ensemble(specs["difficulty_and_reliability"].gate)
    assert both.key != specs["difficulty_and_reliability"].key
    assert specs["random[difficulty_and_ensemble]"].reference == both.out_dir
    pairs = _pairs(set(names), quick)
    assert ("difficulty_and_ensemble", "ensemble") in pairs and ("difficulty_and_ensemble", "random[difficulty_and_ensemble]") in pairs


def test_a_reliability_gate_needs_its_inputs_before_any_work():
    from adagrpo_core.rl.gate import GateConfig
    from adagrpo_core.rl.step import ReliabilityInputs
    from adagrpo_core.train.rl import check_method_inputs
    with pytest.raises(ValueError, match="exposure diagnostic"):
        check_method_inputs(GateConfig(method="exposure"), 10)
    with pytest.raises(ValueError, match="ensemble diagnostic"):
        check_method_inputs(GateConfig(method="soft", reliability="ensemble"), 10, reliability=ReliabilityInputs())
    check_method_inputs(GateConfig(method="exposure"), 10, reliability=ReliabilityInputs(item_exposure=np.ones(3)))


def test_the_ranker_ensemble_is_cached_under_k_and_its_seed(tiny_world, tmp_path):
    from adagrpo_core.pipeline import _ensemble_paths, get_ensemble
    from adagrpo_core.reward.ensemble import EnsembleConfig, bootstrap_log
    cfg = get_profile("tiny").ranker
    ens = EnsembleConfig(members=2, max_epochs=1)
    members = get_ensemble(tiny_world, cfg, ens, tmp_path)
    assert len(members) == 2 and all(p.exists() for p in _ensemble_paths(tiny_world, cfg, ens, tmp_path))
    a, b = (m.state_dict() for m in members)
    assert any(not np.allclose(a[k].numpy(), b[k].numpy()) for k in a)              # other resample, other seed
    again = get_ensemble(tiny_world, cfg, ens, tmp_path)[1].state_dict()              # from the cache
    assert all(np.array_equal(b[k].numpy(), again[k].numpy()) for k in b)
    keys = {_ensemble_paths(tiny_world, cfg, e, tmp_path)[0].parent for e in
            (ens, EnsembleConfig(members=3, max_epochs=1), EnsembleConfig(members=2, max_epochs=1, seed=7))}
    assert len(keys) == 3
    boot = bootstrap_log(tiny_world, 0.5, 0).impressions
    n_train = (tiny_world.impressions.split == "train").sum()
    assert (boot.split == "train").sum() == pytest.approx(n_train / 2, rel=0.1)
    assert boot[boot.split != "train"].reset_index(drop=True).equals(
        tiny_world.impressions[tiny_world.impressions.split != "train"].reset_index(drop=True))
    with pytest.raises(ValueError, match="members"):
        EnsembleConfig(members=1)


def test_the_reliability_gate_set_has_its_own_methods_and_values():
    quick, paper = get_profile("quick"), get_profile("paper")
    assert phase_plan(paper, gates="reliability")["bias"] == [-8.0, -4.0, -2.0, 0.0, 4.0]
    assert phase_plan(quick, gates="reliability") == {"bias": [0.0, 4.0]}
    names = gate_set_methods(paper, "reliability", "bias")
    assert "exposure" in names and "random[exposure]" in names and "ensemble" not in names
    assert names[:3] == ["nll", "mix(0.5)", "mix(1)"]                     # NLL and the mixtures it is compared with
    assert gate_set_methods(paper, "reliability", "ranker_log")[-2:] == ["ensemble", "random[ensemble]"]
    assert gate_set_methods(paper, "main", "bias") == paper.suite.phase_methods
    assert gate_set_methods(paper, "reliability", "bias", ["nll", "soft"]) == ["nll", "soft"]
    with pytest.raises(ValueError, match="gates"):
        gate_set_methods(paper, "everything", "bias")
    with pytest.raises(ValueError, match="gates"):
        phase_plan(paper, gates="everything")


def test_reliability_verdict_answers_h_i_j():
    phase = _gains([(-4, "mix(1)", -0.04, 0.005, -0.01, 0.003), (-4, "exposure", 0.002, 0.004, 0.0, 0.003),
                    (-4, "difficulty_and_reliability", 0.001, 0.003, 0.0, 0.002)])
    phase = phase.assign(reward="truth(bias=-4)", admission_rate=[1, 0.5, 0.2])
    vs = _gains([(-4, "exposure", 0.003, 0.002, 0.0, 0.002), (-4, "difficulty_and_reliability", -0.001, 0.002, 0.0, 0.002)])
    vs = vs.assign(reference=["random[exposure]", "exposure"])
    gap = pd.DataFrame({"value": [-4.0], "metric": ["sim_ctr"], "gate": ["exposure"], "best_mixture": ["mix(0.5)"],
                        "gap": [-0.003], "gap_ci": [0.002]})
    auc = pd.DataFrame({"value": [-4.0], "method": ["exposure"], "samples": [900], "share_agreeing": [0.7],
                        "auc_d": [0.4], "auc_a": [0.5], "auc_e": [0.66]})
    text = "\n".join(reliability_verdict("bias", {"phase": phase, "vs_random": vs, "mixture_gap": gap,
                                                  "diagnostic_auc": auc}))
    assert "-4, exposure (70% of 900 samples agree): e 0.660, d 0.400, a 0.500" in text
    assert "(i) at -4, where mix(1) hurts (-0.0400 ± 0.0050 sim CTR)" in text
    assert "exposure vs NLL: sim CTR +0.0020 ± 0.0040 (contains 0)" in text
    assert "- random[exposure]: sim CTR +0.0030 ± 0.0020 (above 0)" in text
    assert "- best mixture on validation (mix(0.5)): sim CTR -0.0030 ± 0.0020" in text
    assert "-4 (- exposure): -0.0010 ± 0.0020 (contains 0)" in text
    assert reliability_verdict("bias", {"phase": phase[phase.method == "mix(1)"], "vs_random": vs,
                                        "mixture_gap": gap, "diagnostic_auc": auc}) == []
