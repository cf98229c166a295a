"""Replicates are (reward model, policy) pairs: replicate r trains its own ranker and ensemble from
seeds spawned from r, every run of it records r and its reward model's digest, and the variance
of a crossed (reward model x policy seed) design splits into known components."""

import numpy as np
import pytest

from adagrpo_core.configs import get_profile
from adagrpo_core.eval.stats import mixed_model_row_variance, replicates_needed, variance_components
from adagrpo_core.pipeline import get_ranker, get_world
from adagrpo_core.runs import MethodSpec, plan_runs, spec_profile
from adagrpo_core.execution import execute
from adagrpo_core.suite.phase import phase_methods
from adagrpo_core.suite.replicates import cell_values, crossed_plan, stratified_by_ranker, write_outputs

METHODS = [MethodSpec("nll", "nll"), MethodSpec("adagrpo", "adagrpo")]


def test_each_replicate_spawns_its_own_reward_seeds():
    p = get_profile("tiny")
    reps = [p.for_reward_seed(r) for r in range(10)]
    rankers = {q.ranker.seed for q in reps}
    members = [q.ensemble.seed + k for q in reps for k in range(q.ensemble.members)]
    assert len(rankers) == 10 and len(set(members)) == len(members)          # no two replicates share a model
    assert p.for_reward_seed(3) == p.for_reward_seed(3) and p.for_reward_seed(3).rl == p.rl
    with pytest.raises(ValueError, match="replicate"):
        p.for_reward_seed(-1)


def test_a_replicates_runs_read_its_reward_and_continued_nll_reads_none(tmp_path):
    p = get_profile("tiny")
    a, b = (plan_runs(p, METHODS, [0], tmp_path, reward_seed=r) for r in (0, 1))
    key = lambda specs, name: next(s.key for s in specs if s.name == name)   # noqa: E731
    assert key(a, "adagrpo") != key(b, "adagrpo") and key(a, "nll") == key(b, "nll")
    assert key(plan_runs(p, METHODS, [0], tmp_path), "adagrpo") not in (key(a, "adagrpo"), key(b, "adagrpo"))
    spec = next(s for s in b if s.name == "adagrpo")
    assert spec.reward_seed == 1 and spec_profile(p, spec).ranker == p.for_reward_seed(1).ranker


def test_two_replicates_rankers_score_the_same_batch_differently(tmp_path):
    p = get_profile("tiny")
    world = get_world(p.world, tmp_path)
    ex = world.examples("test", p.ranker.max_history)
    items = np.tile(np.arange(20), (len(ex), 1))
    scores = [get_ranker(world, p.for_reward_seed(r).ranker, tmp_path, progress=False).score(ex.history, items)
              for r in (0, 1, 0)]
    assert not np.allclose(scores[0], scores[1], atol=1e-3)
    np.testing.assert_array_equal(scores[0], scores[2])                     # one replicate, one model


def test_replicate_runs_train_their_rankers_and_record_them(tmp_path):
    p = get_profile("tiny").with_rl_steps(2)
    specs = [s for r in (0, 1) for s in plan_runs(p, METHODS, [0], tmp_path / "runs", reward_seed=r)]
    specs = list({s.out_dir: s for s in specs}.values())                   # continued NLL once
    rows = execute(specs, p, tmp_path / "cache", progress=False)
    ada = rows[rows.method == "adagrpo"].drop_duplicates("run_dir")
    assert sorted(ada.reward_seed) == [0, 1] and ada.reward_hash.nunique() == 2
    assert set(rows[rows.method == "nll"].reward_seed) == {-1}               # continued NLL reads no reward
    assert len(list((tmp_path / "cache" / "rankers").glob("*.pt"))) == 3     # the profile's and two replicates'


def test_variance_components_recover_known_components():
    """A crossed design with known components (rows 0.04, columns 0.01, residual 0.0025)."""
    rng = np.random.default_rng(0)
    R, C = 300, 40
    y = 1.0 + rng.normal(0, 0.2, (R, 1)) + rng.normal(0, 0.1, (1, C)) + rng.normal(0, 0.05, (R, C))
    vc = variance_components(y, n_boot=200)
    assert vc["row"][0] == pytest.approx(0.04, rel=0.2) and vc["row"][1] < 0.04 < vc["row"][2]
    assert vc["col"][0] == pytest.approx(0.01, rel=0.5) and vc["resid"][0] == pytest.approx(0.0025, rel=0.1)
    assert vc["share_row"][0] == pytest.approx(0.04 / 0.0525, abs=0.08)
    ranker_var, resid, _ = mixed_model_row_variance(y[:40, :5])
    assert ranker_var == pytest.approx(variance_components(y[:40, :5], n_boot=10)["row"][0], rel=0.3)
    flat = variance_components(rng.normal(0, 1, (10, 2)), n_boot=50)        # no row effect: the boundary
    assert flat["row"][0] >= 0 and flat["resid"][0] > 0
    with pytest.raises(ValueError, match="at least 2"):
        variance_components(np.ones((5, 1)))


def test_replicates_needed_grows_as_the_effect_shrinks():
    n1, n2 = replicates_needed(1e-4, 0.005), replicates_needed(1e-4, 0.0025)
    assert 2 <= n1 < n2 and n2 >= 3 * n1
    with pytest.raises(ValueError, match="delta"):
        replicates_needed(1e-4, 0)


def test_a_crossed_design_gives_its_cells_and_components(tmp_path):
    """Two replicates x two policy seeds on the tiny profile: one cell per (ranker, seed) and
    comparison, continued NLL shared by the rankers, the best mixture chosen per cell, and the
    tables, figure and answer (a) per ranker written."""
    p = get_profile("tiny").with_rl_steps(2)
    methods = phase_methods(["nll", "mix(0.5)", "adagrpo", "random"])
    specs = crossed_plan(p, [0, 1], [0, 1], tmp_path / "runs", methods)
    assert len(specs) == 2 * 2 * 3 + 2
    rows = execute(specs, p, tmp_path / "cache", progress=False)
    cells = cell_values(rows)
    assert set(zip(cells.ranker, cells.seed)) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert (cells.groupby("comparison").size() == 4).all() and set(cells.best_mixture) == {"mix(0.5)"}
    users = cells[cells.metric == "sim_ctr"].users_var
    assert (users >= 0).all() and (users > 0).any()
    out = write_outputs(rows, tmp_path / "fig", "tiny", n_boot=50)
    var = out["variance"].set_index("comparison")
    assert var.loc["(c)", "rankers"] == 2 and var.loc["(c)", "var_total"] >= 0
    for name in ("replicates_cells_tiny.csv", "replicates_variance_tiny.csv", "replicates_cells_tiny.png"):
        assert (tmp_path / "fig" / name).stat().st_size > 0
    strat = stratified_by_ranker(p, [0, 1], tmp_path / "cache")
    assert list(strat.ranker) == [0, 1, "mean"]
    assert strat.rm_influence.iloc[2] == pytest.approx(strat.rm_influence.iloc[:2].mean())
