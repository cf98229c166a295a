"""Seed-level statistics of the comparison tables (adagrpo_core.suite.comparisons, sweeps.sweep_table)
on hand-built run folders: a two-group seed distribution, methods with different seed counts
paired on their common seeds, the hierarchical bootstrap and Holm over a table's comparisons;
and main_results' answer seeds (planning only, the executor faked)."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from adagrpo_core.suite import comparisons, experiments
from adagrpo_core.configs import get_profile
from adagrpo_core.eval.stats import parse_per_seed
from adagrpo_core.runs import MethodSpec, plan_runs
from adagrpo_core.suite.sweeps import sweep_table

N = 100                 # test users per seed
PROF = get_profile("tiny")


def hits_with(diff_users: int, shift: int = 0) -> np.ndarray:
    """Users 0..49 hit, moved by ``shift`` and with ``diff_users`` hits more (or fewer)."""
    h = np.zeros(N, bool)
    h[shift:shift + 50 + diff_users] = True
    return h


def write_runs(root: Path, runs: dict) -> pd.DataFrame:
    """``runs``: {(method, seed): (hits, ctr or None, extra row values)} as run folders (the hit and
    CTR files run_hits and ctr_path read, for both checkpoints) and a main_results-like frame."""
    rows = []
    for (method, seed), (hits, ctr, extra) in runs.items():
        d = root / f"seed{seed}" / method
        d.mkdir(parents=True)
        for kind in ("best", "final"):
            np.save(d / f"hits_{kind}_k10.npy", hits)
            if ctr is not None:
                np.save(d / f"ctr_{kind}.npy", ctr)
            rows.append({"method": method, "seed": seed, "checkpoint": kind, "run_dir": str(d),
                         "HR@10": hits.mean(), "NDCG@10": hits.mean() / 2, **extra})
    return pd.DataFrame(rows)


@pytest.fixture
def no_world(monkeypatch):
    """The comparisons read hits and CTRs from the run folders: no world or semantic ids needed."""
    monkeypatch.setattr(comparisons, "get_world", lambda *a, **k: None)
    monkeypatch.setattr(comparisons, "get_sids", lambda *a, **k: None)


TWO_GROUPS = {s: (-4 if s < 8 else 0) for s in range(10)}     # 8 seeds at -0.04, 2 at 0 (in users of 100)


def two_group_runs(root):
    runs = {}
    for s, d in TWO_GROUPS.items():
        ref_ctr = np.full(N, 0.2)
        runs[("nll", s)] = (hits_with(0), ref_ctr, {})
        method_hits = hits_with(d) if d else hits_with(0, shift=1)           # 0: one hit gained, one lost
        runs[("adagrpo", s)] = (method_hits, ref_ctr + d / N + np.linspace(-0.01, 0.01, N), {})
    return write_runs(root, runs)


def test_two_group_seeds_give_a_wide_t_interval_and_share_below_0(tmp_path, no_world):
    rows = two_group_runs(tmp_path)
    t = comparisons.paired_tests(PROF, rows, [("adagrpo", "nll")], cache_dir=tmp_path)
    per_seed, pooled = t[t.seed != "pooled"], t[t.seed == "pooled"].iloc[0]
    assert len(per_seed) == 10 and (per_seed.seeds == 1).all() and pooled.seeds == 10
    x = np.array([TWO_GROUPS[s] / N for s in range(10)])
    np.testing.assert_allclose(per_seed["diff"], x)
    assert pooled["diff"] == pytest.approx(-0.032)
    half = stats.t.ppf(0.975, 9) * x.std(ddof=1) / np.sqrt(10)
    assert pooled.diff_seed_ci == pytest.approx(half) and pooled.diff_seed_ci > 0.012   # wide: over a third of the mean
    assert pooled.diff_share_below_0 == pytest.approx(0.8)
    assert pooled.diff_p_seed == pytest.approx(2 / 2 ** 8)       # the two zero seeds flip freely
    assert parse_per_seed(pooled.diff_per_seed) == pytest.approx(dict(enumerate(x)))
    assert pooled.sim_ctr_diff == pytest.approx(-0.032) and pooled.sim_ctr_diff_share_below_0 == pytest.approx(0.8)
    assert pooled.sim_ctr_seed_ci == pytest.approx(half)
    # the bootstrap over users only, pooled over seeds, holds the seeds fixed and says so in its name
    assert "sim_ctr_ci_low" not in t and pooled.sim_ctr_fixedseeds_boot_low < pooled.sim_ctr_fixedseeds_boot_high
    assert (per_seed.sim_ctr_fixedseeds_boot_low <= per_seed.sim_ctr_diff).all()
    assert pooled.method_only_hits == 2 and pooled.reference_only_hits == 8 * 4 + 2   # McNemar columns stay


def test_hierarchical_bootstrap_contains_the_t_interval_centre(tmp_path, no_world):
    rows = two_group_runs(tmp_path)
    pooled = comparisons.paired_tests(PROF, rows, [("adagrpo", "nll")], cache_dir=tmp_path).iloc[-1]
    for p in ("diff", "sim_ctr_diff"):
        lo, hi = pooled[f"{p}_hboot_low"], pooled[f"{p}_hboot_high"]
        assert lo < pooled[p] < hi, p
        assert hi - lo > 0.005, p          # it carries the seed-to-seed spread, not only the users'
    # the user-only bootstrap at fixed seeds is narrower than the one over seeds, then users
    assert (pooled.sim_ctr_fixedseeds_boot_high - pooled.sim_ctr_fixedseeds_boot_low
            < pooled.sim_ctr_diff_hboot_high - pooled.sim_ctr_diff_hboot_low)


def uneven_runs(root):
    """adagrpo and nll at ten seeds, random and mix(0.1) at three (0, 1, 2), mix(1) at ten."""
    runs = {}
    for s in range(10):
        runs[("nll", s)] = (hits_with(0), np.full(N, 0.2), {"val_HR@10": 0.5})
        runs[("adagrpo", s)] = (hits_with(-3 if s < 5 else 2), np.full(N, 0.21), {"val_HR@10": 0.5})
        runs[("mix(1)", s)] = (hits_with(-1), np.full(N, 0.2), {"val_HR@10": 0.40 + (0.2 if s >= 3 else 0)})
        if s < 3:
            runs[("random", s)] = (hits_with(-6 - s), np.full(N, 0.19), {"val_HR@10": 0.5})
            runs[("mix(0.1)", s)] = (hits_with(1), np.full(N, 0.2), {"val_HR@10": 0.45})
    return write_runs(root, runs)


def test_methods_with_different_seed_counts_pair_on_common_seeds(tmp_path, no_world):
    rows = uneven_runs(tmp_path)
    t = comparisons.paired_tests(PROF, rows, [("adagrpo", "random"), ("random", "nll"), ("adagrpo", "nll"),
                                              ("adagrpo", "absent")], cache_dir=tmp_path)
    pooled = t[t.seed == "pooled"].set_index(["method", "reference"])
    assert ("adagrpo", "absent") not in pooled.index                      # no common seed: no row
    assert pooled.loc[("adagrpo", "random"), "seeds"] == 3 and pooled.loc[("adagrpo", "nll"), "seeds"] == 10
    assert set(t[(t.method == "adagrpo") & (t.reference == "random")].seed) == {"0", "1", "2", "pooled"}
    assert pooled.loc[("adagrpo", "random"), "diff"] == pytest.approx(np.mean([(-3 + 6 + s) / N for s in range(3)]))
    assert pooled.loc[("adagrpo", "nll"), "diff"] == pytest.approx((5 * -0.03 + 5 * 0.02) / 10)
    assert pooled.loc[("random", "nll"), "diff_per_seed"].count(":") == 3


def test_gains_over_base_and_gap_pair_on_common_seeds(tmp_path, no_world, monkeypatch):
    rows = uneven_runs(tmp_path)
    target = np.arange(N)

    def start_ranked(world, sids, ckpt, cfg, k=10):        # the SFT base: users 0..44 hit, every seed
        ranked = np.full((N, k), -1)
        ranked[:45, 0] = target[:45]
        return ranked, target
    monkeypatch.setattr(comparisons, "get_sft", lambda *a, **k: tmp_path)
    monkeypatch.setattr(comparisons, "start_ranked", start_ranked)
    g = comparisons.gains_over_base(PROF, rows, tmp_path).set_index("method")
    assert g.loc["SFT base", "seeds"] == 10 and g.loc["SFT base", "HR@10"] == pytest.approx(0.45)
    assert g.loc["random", "seeds"] == 3 and g.loc["adagrpo", "seeds"] == 10
    assert g.loc["random", "gain_HR@10"] == pytest.approx(np.mean([(5 - 6 - s) / N for s in range(3)]))
    assert g.loc["random", "seeds_vs_nll"] == 3
    assert g.loc["random", "diff_HR@10_vs_nll"] == pytest.approx(np.mean([(-6 - s) / N for s in range(3)]))
    assert g.loc["adagrpo", "gain_HR@10_share_below_0"] == pytest.approx(0.0)
    assert g.loc["adagrpo", "diff_HR@10_vs_nll_share_below_0"] == pytest.approx(0.5)
    lo, hi = g.loc["adagrpo", "gain_HR@10_hboot_low"], g.loc["adagrpo", "gain_HR@10_hboot_high"]
    assert lo < g.loc["adagrpo", "gain_HR@10"] < hi
    assert np.isnan(g.loc["SFT base", "gain_HR@10_p_seed"])
    head = comparisons.gain_headline(g.reset_index(), rows)
    # the best mixture is chosen on the seeds both mixtures have (0, 1, 2), where mix(0.1) leads
    assert head.set_index("row").loc["best mixture (on validation)", "method"] == "mix(0.1)"
    gaps = comparisons.gap_to_best_mixture(rows.assign(reward="ranker", noise=0.0), metrics=("HR@10",))
    r = gaps.iloc[0]
    assert r.best_mixture == "mix(0.1)" and r.seeds == 3
    assert r.gap == pytest.approx(r.method - r.mixture) == pytest.approx(-0.04)
    assert r.gap_share_below_0 == 1.0 and r.gap_p_seed == pytest.approx(0.25)      # three seeds: p >= 0.25


def test_holm_is_applied_to_p_seed_across_a_tables_rows(tmp_path, no_world):
    rows = uneven_runs(tmp_path)
    pairs = [("adagrpo", "nll"), ("mix(1)", "nll"), ("adagrpo", "mix(1)")]
    tests, pooled = comparisons.paired_tests_both(PROF, rows, pairs, cache_dir=tmp_path)
    assert len(pooled) == 6 and set(pooled.checkpoint) == {"best", "final"}
    for p in ("diff", "sim_ctr_diff"):
        raw = pooled[f"{p}_p_seed"].to_numpy()
        np.testing.assert_allclose(pooled[f"{p}_p_seed_holm"], multipletests(raw, method="holm")[1])
        # the full table's pooled rows carry the same family (both checkpoints)
        np.testing.assert_allclose(tests.loc[tests.seed == "pooled", f"{p}_p_seed_holm"], pooled[f"{p}_p_seed_holm"])
        assert tests.loc[tests.seed != "pooled", f"{p}_p_seed_holm"].isna().all()
    assert (pooled.diff_p_seed_holm > pooled.diff_p_seed).any()
    mix = pooled[(pooled.method == "mix(1)") & (pooled.checkpoint == "best")].iloc[0]
    assert mix.diff_p_seed == pytest.approx(2 / 2 ** 10)          # every seed at -0.01: the smallest p of ten
    assert list(pooled.columns).index("diff_p_seed_holm") == list(pooled.columns).index("diff_p_seed") + 1


def test_sweep_table_seed_columns_and_holm_over_points():
    rows, seeds_of = [], {"ada": 4, "random": 4, "mixp": 2}                # the rate-matched mixture at two seeds
    for tau, gains in ((0.25, [0.10, 0.11, 0.09, 0.12]), (0.5, [-0.02, 0.01, -0.01, 0.0])):
        for s, gain in enumerate(gains):
            for tag, hr in (("ada", 0.5 + gain), ("random", 0.5), ("mixp", 0.45)):
                if s < seeds_of[tag]:
                    rows.append({"method": f"{tag}[tau={tau:g}]", "seed": s, "checkpoint": "best", "HR@10": hr,
                                 "admission_rate": 0.4})
    for s in range(4):
        rows.append({"method": "nll", "seed": s, "checkpoint": "best", "HR@10": 0.5, "admission_rate": 1.0})
    t = sweep_table(pd.DataFrame(rows), [{"sweep": "tau", "tau": 0.25}, {"sweep": "tau", "tau": 0.5}])
    a, b = t.iloc[0], t.iloc[1]
    assert a.gain_vs_random == pytest.approx(0.105) and a.gain_vs_random_share_below_0 == 0
    assert b.gain_vs_random_share_below_0 == pytest.approx(0.5)
    assert a.gain_vs_random_p_seed == pytest.approx(2 / 2 ** 4)
    np.testing.assert_allclose(t.gain_vs_random_p_seed_holm, multipletests(t.gain_vs_random_p_seed, method="holm")[1])
    assert a.gain_vs_mixp_per_seed.count(":") == 2                     # paired on the mixture's two seeds
    assert a.gain_vs_mixp == pytest.approx(np.mean([0.15, 0.16]))
    assert "gain_vs_random_hboot_low" not in t                          # no per-user values in a sweep


def test_main_results_plans_answer_seeds_with_the_same_keys(tmp_path, monkeypatch):
    prof = replace(PROF, suite=replace(PROF.suite, answer_seeds=list(range(5))))
    methods = [MethodSpec("nll", "nll"), MethodSpec("mix(0.1)", "mix", grpo={"lam": 0.1}),
               MethodSpec("mix(1)", "mix", grpo={"lam": 1.0}), MethodSpec("adagrpo", "adagrpo"),
               MethodSpec("random", "random"), MethodSpec("inverse", "inverse")]
    seen = []

    def fake_execute(specs, profile, cache_dir=None, jobs=1, scheduler=None, progress=True):
        seen.extend(specs)
        return pd.DataFrame([{"method": s.name, "seed": s.seed, "checkpoint": c, "run_dir": s.out_dir,
                              "HR@10": 0.1 * s.seed} for s in specs for c in ("best", "final")])
    monkeypatch.setattr(experiments, "execute", fake_execute)
    rows, summary = experiments.main_results(prof, methods, seeds=(0, 1, 2), out_root=tmp_path,
                                             answer="nb03_headline", progress=False)
    dirs = [s.out_dir for s in seen]
    assert len(dirs) == len(set(dirs))                                   # one run per folder
    got = {(s.name, s.seed) for s in seen}
    listed = {"nll", "mix(1)", "adagrpo", "random"}                      # nb03_headline's methods present here
    want = {(m.name, s) for m in methods for s in range(3)} | {(m, s) for m in listed for s in (3, 4)}
    assert got == want
    alone = {(s.name, s.seed): s.out_dir for s in plan_runs(prof, methods, range(5), tmp_path)}
    assert all(alone[(s.name, s.seed)] == s.out_dir for s in seen)      # the same keys and folders as ever
    seeds = summary[summary.checkpoint == "best"].set_index("method")["seeds"]
    assert seeds["adagrpo"] == 5 and seeds["inverse"] == 3 and seeds["mix(0.1)"] == 3
    plain, _ = experiments.main_results(prof, methods, seeds=(0, 1, 2), out_root=tmp_path, progress=False)
    assert set(plain.seed) == {0, 1, 2}
