"""Experiment drivers: main_results on the tiny profile, per-sample hits and paired tests."""
import numpy as np
import pytest

from dataclasses import replace

from adagrpo_core.configs import get_profile
from adagrpo_core.experiments import MethodSpec, main_results, paired_tests
from adagrpo_core.eval.evaluate import run_hits
from adagrpo_core.pipeline import get_sids, get_world


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cache = tmp_path_factory.mktemp("cache")
    prof = get_profile("tiny")
    methods = [MethodSpec("nll", "nll"), MethodSpec("adagrpo", "adagrpo"), MethodSpec("random", "random")]
    rows, summary = main_results(prof, methods=methods, seeds=(0, 1), out_root=root, cache_dir=cache, progress=False)
    return prof, prof.rl, root, cache, rows, summary


def test_main_results_rows_and_summary(tiny_runs):
    _, _, root, _, rows, summary = tiny_runs
    assert len(rows) == 3 * 2 * 2 and set(rows.checkpoint) == {"best", "final"}
    assert list(dict.fromkeys(summary.method)) == ["nll", "adagrpo", "random"]
    assert (summary.seeds == 2).all()
    for seed in (0, 1):
        assert (root / f"seed{seed}" / "random" / "results.csv").exists()


def test_run_hits_reproduce_the_reported_hr(tiny_runs):
    prof, train, root, cache, rows, _ = tiny_runs
    world = get_world(prof.world, cache)
    sids = get_sids(world, prof.sid, cache)
    for (method, seed, kind), r in rows.set_index(["method", "seed", "checkpoint"]).iterrows():
        hits = run_hits(root / f"seed{seed}" / method, world, sids, replace(train, seed=seed), kind, 10)
        assert len(hits) == train.test_samples
        assert hits.mean() == pytest.approx(r["HR@10"], abs=1e-12)
    assert (root / "seed0" / "nll" / "hits_best_k10.npy").exists()   # cached


def test_paired_tests_counts_are_consistent(tiny_runs):
    prof, train, root, cache, rows, _ = tiny_runs
    t = paired_tests(prof, [("adagrpo", "random"), ("adagrpo", "nll")], seeds=(0, 1),
                     out_root=root, kind="best", cache_dir=cache)
    assert list(t.seed) == ["0", "1", "pooled"] * 2
    for _, g in t.groupby(["method", "reference"]):
        per_seed, pooled = g[g.seed != "pooled"], g[g.seed == "pooled"].iloc[0]
        assert pooled.method_only_hits == per_seed.method_only_hits.sum()
        assert pooled.reference_only_hits == per_seed.reference_only_hits.sum()
        np.testing.assert_allclose(per_seed["diff"], per_seed["HR@10_method"] - per_seed["HR@10_reference"])
        # the discordant counts explain the HR difference exactly
        np.testing.assert_allclose(per_seed["diff"] * per_seed["n"],
                                   per_seed.method_only_hits - per_seed.reference_only_hits)
        assert ((0 <= g.mcnemar_p) & (g.mcnemar_p <= 1)).all()


def test_run_hits_rejects_bad_kind(tiny_runs):
    prof, train, root, cache, _, _ = tiny_runs
    world = get_world(prof.world, cache)
    with pytest.raises(ValueError, match="kind"):
        run_hits(root / "seed0" / "nll", world, get_sids(world, prof.sid, cache), train, "last")
