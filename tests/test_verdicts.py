"""The "What the numbers say" text of notebooks 02-07 and the two table fixes, on small tables
built by hand: each verdict (dominated or not, Holm-significant or not, an interval that
excludes 0 or not) is checked on both sides; the frozen analysis plan, the one-sided wording of
its questions and `cli check --answers`."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from adagrpo_core import cli
from adagrpo_core.eval.stats import detectable_effect, equivalent, one_sided_bounds
from adagrpo_core.suite.analysis_plan import PLAN, PLAN_DIGEST, plan_digest, planned
from adagrpo_core.suite.glance import ANSWERS, answer_changes
from adagrpo_core.suite.verdicts import (
    ab_audit_verdict,
    add_mixture_lam,
    controls_verdict,
    dominating_mixtures,
    frontier_verdict,
    holm_significant,
    interval_excludes_zero,
    main_results_verdict,
    planned_words,
    sensitivity_verdict,
    stratified_verdict,
    zero_truth_noise,
)

NAN = np.nan


# ------------------------------------------------------------------ table fixes
def test_mixture_lam_is_read_off_the_method_name():
    summary = pd.DataFrame({"method": ["nll", "mix(0.1)", "mix(1)", "mix(2.5)", "adagrpo", "mixp[lam=1]"],
                            "checkpoint": "best", "HR@10": [0.1, 0.2, 0.3, 0.35, 0.4, 0.5]})
    out = add_mixture_lam(summary)
    assert list(out.columns) == ["method", "checkpoint", "HR@10", "lam"] and "lam" not in summary
    assert out.lam.tolist()[1:4] == [0.1, 1.0, 2.5]
    assert out.lam.isna().tolist() == [True, False, False, False, True, True]
    # the same column as mapping the notebook's lambdas onto their names
    lams = [0.1, 1.0, 2.5]
    mapped = summary.assign(lam=summary.method.map({f"mix({lam:g})": lam for lam in lams}))
    assert out.to_csv(index=False) == mapped.to_csv(index=False)


def test_truth_reward_gets_noise_zero_and_the_others_keep_theirs():
    gaps = pd.DataFrame({"reward": ["ranker", "truth", "noisy_truth(3)"], "noise": [0.0, 2.0, 3.0],
                         "metric": "sim_ctr", "gap": [0.01, 0.02, 0.03]})
    out = zero_truth_noise(gaps)
    assert out.noise.tolist() == [0.0, 0.0, 3.0] and gaps.noise.tolist() == [0.0, 2.0, 3.0]
    assert list(out.columns) == list(gaps.columns) and out.noise.dtype == np.float64


# ------------------------------------------------------------------ 06: the frontier
def frontier_summary(ada_hr_best=0.30, ada_halluc_best=0.10, ctr=False):
    rows = []
    for ckpt, shift in (("best", 0.0), ("final", -0.05)):
        for method, hr, halluc in (("nll", 0.20, 0.02), ("mix(0.5)", 0.32, 0.05), ("mix(1)", 0.28, 0.12),
                                   ("adagrpo", ada_hr_best if ckpt == "best" else 0.40, ada_halluc_best)):
            r = {"method": method, "checkpoint": ckpt, "seeds": 3, "HR@10": hr + shift, "HR@10_ci": 0.01,
                 "halluc": halluc, "halluc_ci": 0.01}
            if ctr:
                r["sim_ctr"], r["sim_ctr_ci"] = hr / 2, 0.005
            rows.append(r)
    return add_mixture_lam(pd.DataFrame(rows))


def test_a_mixture_that_is_better_on_both_axes_dominates():
    s = frontier_summary()
    assert dominating_mixtures(s, "HR@10", "best") == ["mix(0.5)"]      # 0.32 > 0.30 and 0.05 < 0.10
    assert dominating_mixtures(s, "HR@10", "final") == []               # adagrpo has the best HR@10 there
    lines = frontier_verdict(s, 10)
    assert len(lines) == 2
    assert lines[0] == ("HR@10, best: AdaGRPO HR@10 0.3000 ± 0.0100, hallucination 0.1000; mixtures span HR@10 "
                        "0.2800-0.3200 and hallucination 0.0500-0.1200. AdaGRPO is dominated by mix(0.5)")
    assert lines[1].startswith("HR@10, final: AdaGRPO HR@10 0.3500") and lines[1].endswith(
        "No mixture beats AdaGRPO on both axes (point estimates; the intervals overlap).")


def test_no_mixture_dominates_when_adagrpo_wins_one_axis():
    s = frontier_summary(ada_hr_best=0.33, ctr=True)      # the best HR@10: nothing beats it on both axes
    assert dominating_mixtures(s, "HR@10", "best") == []
    # nll is not a mixture, even though it has a lower hallucination rate
    assert dominating_mixtures(frontier_summary(ada_hr_best=0.10, ada_halluc_best=0.01), "HR@10", "best") == []
    lines = frontier_verdict(s, 10)
    assert [line.split(":")[0] for line in lines] == ["HR@10, best", "HR@10, final", "sim_ctr, best", "sim_ctr, final"]
    assert all("No mixture beats AdaGRPO" in line for line in lines)


# ------------------------------------------------------------------ 03 and 04: Holm
def pooled_tests(p_seed_holm):
    """Pooled paired tests; the McNemar p (per-user evidence) deliberately disagrees with the seed-level
    p, which is the one the verdicts read."""
    n = len(p_seed_holm)
    return pd.DataFrame({"method": "adagrpo", "reference": ["random", "nll", "inverse", "grpo"][:n],
                         "checkpoint": ["best", "best", "final", "final"][:n], "seeds": 10,
                         "diff": [0.01, -0.02, 0.005, 0.0][:n], "diff_seed_ci": [0.004, 0.01, 0.02, 0.01][:n],
                         "diff_share_below_0": [0.0, 0.9, 0.4, 0.5][:n],
                         "method_only_hits": [30, 10, 12, 5][:n], "reference_only_hits": [10, 30, 11, 5][:n],
                         "mcnemar_p": [0.9, 0.9, 0.001, 0.001][:n], "p_holm": [0.9, 0.9, 0.004, 0.004][:n],
                         "diff_p_seed_holm": p_seed_holm})


def test_holm_significant_counts_only_adjusted_seed_level_p_below_alpha():
    pooled = pooled_tests([0.01, 0.049, 0.05, 0.9])
    assert holm_significant(pooled).reference.tolist() == ["random", "nll"]          # 0.05 itself is not below
    assert holm_significant(pooled, alpha=0.01).empty


def controls_summary():
    return pd.DataFrame({"method": ["adagrpo", "random", "inverse", "adagrpo"], "checkpoint": ["best"] * 3 + ["final"],
                         "HR@10": [0.3, 0.25, 0.2, 0.9], "HR@10_ci": [0.01, 0.02, 0.03, 0.0],
                         "admission_rate": [0.4, 0.41, 0.6, 0.4]})


def test_controls_verdict_lists_the_controls_and_the_significant_tests():
    lines = controls_verdict(controls_summary(), pooled_tests([0.01, 0.3, 0.5, 0.9]), ["adagrpo", "random", "inverse",
                                                                                       "oracle"], 10)
    assert lines == [
        "AdaGRPO best-checkpoint HR@10 0.3000 ± 0.0100 at admission rate 0.400.",
        "  random                 HR@10 0.2500 ± 0.0200, admission 0.410",
        "  inverse                HR@10 0.2000 ± 0.0300, admission 0.600",       # oracle was not trained: no line
        ("1 of 4 paired comparisons are significant over seeds (sign-flip test, Holm): adagrpo vs random (best, diff "
         "+0.0100 ± 0.0040 (10 seeds, 0 below 0, Holm p 0.01))")]
    none = controls_verdict(controls_summary(), pooled_tests([0.2, 0.3]), ["adagrpo", "random"], 10)
    assert none[-1] == "0 of 2 paired comparisons are significant over seeds (sign-flip test, Holm)."


def test_main_results_verdict_names_the_best_method_and_each_test():
    summary = controls_summary()
    lines = main_results_verdict(summary, pooled_tests([0.04, 0.06]), 10, 3)
    assert lines[0] == ("Best-checkpoint HR@10: highest adagrpo 0.3000 ± 0.0100; range over methods 0.2000 to "
                        "0.3000 (3 seeds).")                                     # the final checkpoint's 0.9 is ignored
    assert lines[1] == ("adagrpo vs random (best): HR@10 diff +0.0100 ± 0.0040 (10 seeds, 0 below 0, Holm p 0.04): "
                        "significant over seeds at 0.05 after Holm over 2 tests (per-user evidence: discordant hits "
                        "30/10, pooled McNemar p = 0.9)")
    assert "(10 seeds, 9 below 0, Holm p 0.06): not significant over seeds" in lines[2]


# ------------------------------------------------------------------ 05: intervals that exclude 0
def sweep_points():
    return pd.DataFrame({
        "grid": "reduced grid", "sweep": ["tau_rho", "tau_rho", "lam", "num_negatives", "tau_rho"],
        "tau": [0.25, 0.75, NAN, NAN, 0.5], "rho": [0.25, 0.75, NAN, NAN, 0.5],
        "gain_vs_random": [0.05, -0.04, 0.01, 0.02, NAN], "gain_vs_random_ci": [0.01, 0.01, 0.02, NAN, 0.01],
        "gain_vs_mixp": [0.03, NAN, -0.05, 0.0, 0.1], "gain_vs_mixp_ci": [0.01, NAN, 0.01, 0.01, 0.01]})


def test_interval_excludes_zero_on_either_side_and_never_without_a_width():
    t = sweep_points()
    above, below = interval_excludes_zero(t, "gain_vs_random")
    assert above.tolist() == [True, False, False, False, False]      # 0.02 with no interval (one seed) excludes nothing
    assert below.tolist() == [False, True, False, False, False]
    assert interval_excludes_zero(t.assign(gain_vs_random_ci=0.05), "gain_vs_random")[0].sum() == 0


def test_sensitivity_verdict_counts_wins_and_losses():
    t = sweep_points()
    lines = sensitivity_verdict(t, 3, "reduced grid")
    assert lines == [
        "4 points with a matched random control (3 seeds, reduced grid).",
        ("AdaGRPO beats random gating at the same rate (95% CI above 0) at 1 points: tau_rho 0.25 0.25 gain +0.0500; "
         "loses at 1; the rest are within noise."),
        "Against the rate-matched mixture: above at 1 of 3 points, below at 1."]
    ctr = t.assign(ctr_gain_vs_random=[0.01, 0.01, -0.02, 0.0, 0.0], ctr_gain_vs_random_ci=[0.001, 0.02, 0.001, 0.1, 0.1])
    assert sensitivity_verdict(ctr, 3, "full grid")[-1] == (
        "Simulated CTR: AdaGRPO above random gating at the same rate at 1 of 4 points, below at 1.")
    nothing = sensitivity_verdict(t.assign(gain_vs_random_ci=1.0), 2, "smoke grid")
    assert nothing[1] == ("AdaGRPO beats random gating at the same rate (95% CI above 0) at 0 points; loses at 0; "
                          "the rest are within noise.")


# ------------------------------------------------------------------ 02: the stratified analysis
def test_stratified_verdict_reports_the_aggregate_and_the_extreme_cells():
    t1 = pd.DataFrame([{"n": 500, "HR@10_llm": 0.3, "HR@10_rm": 0.31, "rm_influence": 0.01, "ci_low": -0.005,
                        "ci_high": 0.025, "mcnemar_p": 0.21, "llm_only_hits": 10, "rm_only_hits": 15,
                        "truth_influence": 0.08}])
    t3 = pd.DataFrame({"difficulty_q": ["Q1 (easiest)", "Q1 (easiest)", "Q2", "Q2"],
                       "discrim_q": ["Q1", "Q2", "Q1", "Q2"], "n": [100, 19, 120, 90],
                       "rm_influence": [-0.02, 0.5, 0.01, 0.06], "ci_low": [-0.05, 0.1, -0.01, 0.02],
                       "ci_high": [0.01, 0.9, 0.03, 0.1], "mcnemar_p": [0.3, 0.001, 0.7, 0.004]})
    lines = stratified_verdict(t1, t3, 10)
    assert lines == [
        ("Aggregate: HR@10 0.3000 in LLM order vs 0.3100 after the ranker's re-sort; influence +0.0100 "
         "[-0.0050, +0.0250], McNemar p = 0.21 (10 hits lost, 15 gained)."),
        "A perfect ranker (true utility) would change HR@10 by +0.0800.",
        "largest gain: difficulty Q2, discriminability Q2: +0.0600 [+0.0200, +0.1000], n = 90, McNemar p = 0.004",
        ("largest loss: difficulty Q1 (easiest), discriminability Q1: -0.0200 [-0.0500, +0.0100], n = 100, "
         "McNemar p = 0.3")]
    real = stratified_verdict(t1.drop(columns=["truth_influence"]), t3[t3.n < 20], 10)   # no truth, no cell of 20
    assert len(real) == 1 and real[0].startswith("Aggregate:")


# ------------------------------------------------------------------ 07: the A/B test and the audit
def test_ab_audit_verdict():
    ref = pd.DataFrame({"policy": ["logging", "most-popular", "sft", "ranker top-10", "ceiling (true utility)"],
                        "sim_ctr": [0.1, 0.12, 0.2, 0.25, 0.3]})
    pooled = pd.DataFrame({"method": ["adagrpo", "random", "adagrpo"], "reference": ["nll", "nll", "random"],
                           "checkpoint": ["best", "best", "best"], "sim_ctr_diff": [0.01, NAN, 0.002],
                           "sim_ctr_fixedseeds_boot_low": [0.005, NAN, 0.0], "sim_ctr_fixedseeds_boot_high": [0.015, NAN, 0.004],
                           "sim_ctr_seed_ci": [0.003, NAN, 0.001], "seeds": [10, 10, 10],
                           "sim_ctr_diff_share_below_0": [0.1, NAN, 0.3], "sim_ctr_diff_p_seed_holm": [0.004, NAN, 0.5]})
    gaps = pd.DataFrame({"reward": ["ranker"], "metric": ["sim_ctr"], "best_mixture": ["mix(1)"], "gap": [-0.001],
                         "gap_ci": [0.002], "seeds": [3]})
    acc = pd.DataFrame({"method": ["adagrpo"], "admitted": [0.4], "agree_adm": [0.7], "agree_rej": [0.6],
                        "agree_diff": [0.1], "agree_diff_ci": [0.05]})
    assert ab_audit_verdict(ref, pooled, gaps, acc) == [
        "Simulated CTR: logging 0.1000, most popular 0.1200, SFT 0.2000, ranker top-10 0.2500, ceiling 0.3000.",
        ("  adagrpo                sim CTR vs nll +0.0100 ± 0.0030 (10 seeds, 1 below 0, Holm p 0.004) "
         "(a gain worth 10.0% of the SFT-to-ceiling gap)"),                 # random has no CTR difference: no line
        "reward ranker: sim_ctr AdaGRPO - mix(1) = -0.0010 ± 0.0020 (3 seeds)",
        ("adagrpo                admits 0.400; rank agreement admitted 0.700 vs rejected 0.600 (difference +0.100 "
         "± 0.050)")]


@pytest.mark.parametrize("fn, args", [
    (frontier_verdict, (frontier_summary(), 10)),
    (sensitivity_verdict, (sweep_points(), 3, "reduced grid")),
    (controls_verdict, (controls_summary(), pooled_tests([0.01]), ["adagrpo", "random"], 10)),
])
def test_verdicts_are_lists_of_lines(fn, args):
    lines = fn(*args)
    assert isinstance(lines, list) and lines and all(isinstance(s, str) and "\n" not in s for s in lines)


# ---------------------------------------------------------------------------------- the frozen plan
def test_the_analysis_plan_is_frozen_and_complete():
    """Changing a line of the plan changes its digest: an edit is a deliberate commit of its own."""
    assert plan_digest() == PLAN_DIGEST, "the analysis plan changed: update PLAN_DIGEST in the same commit, and say why"
    assert sorted(PLAN) == [f"({c})" for c in "abcdefghijklm"]
    assert {a.answer for a in ANSWERS} == set(PLAN)                  # every answer of the table has a plan
    changed = {**PLAN, "(b)": replace(PLAN["(b)"], delta=0.01)}
    assert plan_digest(changed) != PLAN_DIGEST
    with pytest.raises(ValueError, match="direction='up'"):
        replace(PLAN["(b)"], direction="up")
    with pytest.raises(ValueError, match=r"no planned answer '\(z\)'"):
        planned("(z)")


def test_one_sided_bounds_from_a_t_interval():
    lo, hi = one_sided_bounds(0.0, 1.0, 10)
    t975, t95 = stats.t.ppf(0.975, 9), stats.t.ppf(0.95, 9)
    assert hi == pytest.approx(t95 / t975) and lo == pytest.approx(-hi)       # narrower than the two-sided 1.0
    assert equivalent(0.0, 0.001, 10, 0.005) and not equivalent(0.004, 0.004, 10, 0.005)
    assert detectable_effect(1.0, 10) == pytest.approx((t95 + stats.t.ppf(0.8, 9)) / t975)
    assert np.isnan(one_sided_bounds(0.1, 0.2, 1)[0]) and np.isnan(detectable_effect(np.nan, 10))


def test_a_borderline_interval_is_worded_by_its_one_sided_bound():
    """Two-sided, +0.0030 ± 0.0031 over 10 replicates covers 0 (a tie); the one-sided question "is
    it above?" is answered yes, its 95% lower bound (+0.0030 - 0.0031 x t.95/t.975) lies above 0."""
    words, bound = planned_words("greater", 0.0030, 0.0031, 10, 0.005, "above it", "not above it")
    assert words == "above it" and bound.startswith("at least +0.000")
    assert planned_words("two-sided", 0.0030, 0.0031, 10, None, "differs", "a tie")[0] == "a tie"
    # a little less and the bound reaches 0: no, with the most it could be and what could be seen
    words, bound = planned_words("greater", 0.0020, 0.0031, 10, None, "above it", "not above it")
    assert words == "not above it" and bound.startswith("at most +0.00") and "detectable 0.00" in bound
    # narrow around 0 with a smallest effect of interest: equivalent within it
    words, _ = planned_words("greater", -0.0017, 0.0019, 10, 0.005, "above it", "not above it")
    assert words == "not above it: equivalent within ±0.005"
    assert planned_words("less", -0.03, 0.013, 10, 0.005, "yes", "not shown") == ("yes", "at most -0.0195")
    assert planned_words("greater", 0.6, 0.02, 10, 0.05, "yes", "no", ref=0.5)[0] == "yes"
    assert planned_words("greater", 0.01, np.nan, 1)[0].startswith("not decided")
    with pytest.raises(ValueError, match="direction"):
        planned_words("up", 0.0, 1.0, 10)


def test_check_answers_lists_the_answers_whose_words_change(tmp_path, capsys):
    """`cli check --answers` on hand-built tables: (c)'s table moves from a tie to a win."""
    a = next(x for x in ANSWERS if x.answer == "(c)")
    old, new = tmp_path / "old", tmp_path / "new"
    for root, diff in ((old, 0.0019), (new, 0.0080)):
        (root / a.table).parent.mkdir(parents=True)
        pd.DataFrame({"method": ["adagrpo"], "reference": ["random"], "checkpoint": ["best"], "seed": ["pooled"],
                      "sim_ctr_diff": [diff], "sim_ctr_seed_ci": [0.0027], "seeds": [10],
                      "sim_ctr_diff_share_below_0": [0.2]}).to_csv(root / a.table, index=False)
    changes = answer_changes(new, old).set_index("answer")
    assert changes.loc["(c)", "changed"] and changes.loc["(c)", "after"] == "yes"
    assert changes.loc["(c)", "before"] == "no: equivalent within ±0.005"
    assert changes.loc["(b)", "before"] == changes.loc["(b)", "after"] == "no row"          # same table, no (b) row
    assert changes.loc["(e)", "before"] == changes.loc["(e)", "after"] == "no table"
    assert cli.main(["check", "--answers", "--folder", str(new), "--against", str(old)]) == 0
    out = capsys.readouterr().out
    assert "1 change their words: (c)" in out
