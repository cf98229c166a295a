"""Stratified analysis (DESIGN 4): candidate table, strata, influence tables, tests and regression."""
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from adagrpo_core.eval.strata import StrataConfig, _hit_after_resort, add_strata, candidate_table, influence_regression, influence_table
from adagrpo_core.eval.metrics import target_auc
from adagrpo_core.eval.stats import bootstrap_ci, mcnemar_exact
from adagrpo_core.model.decoding import beam_search
from adagrpo_core.model.policy import PolicyConfig
from adagrpo_core.model.policy import build_policy


def test_auc_of_target_counts_strictly_below_and_half_ties():
    t = np.array([0.5, 0.5, 0.5])
    other = np.array([[0.1, 0.9, 0.5], [0.1, 0.2, 0.3], [0.7, 0.8, 0.9]])
    valid = np.array([[True, True, True], [True, True, False], [False, False, False]])
    auc = target_auc(t, other, valid)
    assert auc[0] == pytest.approx((1 + 0 + 0.5) / 3) and auc[1] == 1.0 and np.isnan(auc[2])


def test_hit_after_resort_uses_scores_and_ignores_missing():
    cands = np.array([[5, 3, 7, -1], [5, 3, 7, -1]])
    scores = np.array([[0.1, 0.2, 0.9, 5.0], [0.9, 0.2, 0.1, 5.0]])   # the -1 slot's score must not count
    hit = _hit_after_resort(cands, scores, np.array([7, 7]), k=1)
    assert hit.tolist() == [True, False]


def test_mcnemar_exact_matches_binomial_test():
    rng = np.random.default_rng(0)
    a, b = rng.random(300) < 0.5, rng.random(300) < 0.6
    n01, n10, p = mcnemar_exact(a, b)
    assert n01 == int((a & ~b).sum()) and n10 == int((~a & b).sum())
    assert p == pytest.approx(stats.binomtest(n10, n01 + n10, 0.5).pvalue, rel=1e-9)
    assert mcnemar_exact(a, a)[2] == 1.0


def test_bootstrap_ci_covers_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.integers(-1, 2, 100), rng.integers(-1, 2, 10_000)
    lo, hi = bootstrap_ci(small, 2000, 0.05, np.random.default_rng(0))
    assert lo <= small.mean() <= hi
    lo2, hi2 = bootstrap_ci(large, 2000, 0.05, np.random.default_rng(0))
    assert (hi2 - lo2) < (hi - lo) / 5


def test_strata_and_influence_table_partition_the_samples():
    rng = np.random.default_rng(2)
    n = 400
    rank = rng.integers(-1, 20, n)
    hit_llm = (rank >= 0) & (rank < 10)
    hit_rm = np.where(rng.random(n) < 0.2, ~hit_llm & (rank >= 0), hit_llm)
    df = pd.DataFrame({"llm_rank": rank, "target_logp": rng.normal(size=n),
                       "discriminability": np.where(rank >= 0, rng.random(n), np.nan),
                       "hit_llm": hit_llm, "hit_rm": hit_rm})
    df["delta"] = df.hit_rm.astype(int) - df.hit_llm.astype(int)
    cfg = StrataConfig(n_boot=200)
    s = add_strata(df, cfg)
    assert s.difficulty_q.value_counts().tolist() == [100] * 4
    expect = {-1: "absent from top-20", 0: "1", 4: "2-5", 5: "6-10", 9: "6-10", 10: "11-20", 19: "11-20"}
    for r, name in expect.items():
        if (s.llm_rank == r).any():
            assert set(s.rank_stratum[s.llm_rank == r].astype(str)) == {name}
    assert (s.discrim_q[s.discriminability.isna()] == "undefined").all()
    for by in (None, ["difficulty_q"], ["rank_stratum"], ["difficulty_q", "discrim_q"]):
        t = influence_table(s, by, cfg)
        assert t.n.sum() == n
        np.testing.assert_allclose(t.rm_influence, t["HR@10_rm"] - t["HR@10_llm"], atol=1e-12)
        assert ((t.ci_low <= t.rm_influence + 1e-12) & (t.rm_influence <= t.ci_high + 1e-12)).all()


def test_regression_recovers_a_planted_interaction():
    rng = np.random.default_rng(3)
    n = 4000
    d, a = rng.normal(size=n), rng.normal(size=n)
    p = np.clip(0.1 + 0.15 * d * a, -0.9, 0.9)
    delta = np.where(rng.random(n) < np.abs(p), np.sign(p), 0)
    df = pd.DataFrame({"delta": delta, "target_logp": -d, "discriminability": a, "llm_rank": 0})
    reg = influence_regression(df).set_index("term")
    assert reg.loc["difficulty:discriminability", "coef"] > 0.05
    assert reg.loc["difficulty:discriminability", "p"] < 1e-6


class ScoreByItemId:
    """A stand-in reward: higher item id scores higher (any monotone score works)."""

    def score_items(self, history, items):
        return torch.as_tensor(items).float()


def test_candidate_table_is_consistent_with_beam_search(tiny_world, tiny_sids):
    torch.manual_seed(0)
    model = build_policy(tiny_sids, PolicyConfig(n_layer=1, n_embd=32, max_history=5), "cpu").eval()
    ex = tiny_world.examples("test", 5).subset(np.arange(60))
    cfg = StrataConfig(top_n=8, k=4, batch_size=25, n_boot=100)
    df = candidate_table(model, ScoreByItemId(), tiny_sids, ex, cfg, world=tiny_world)
    beams = beam_search(model, torch.as_tensor(ex.history), 8, trie=tiny_sids.trie, constrained=True)
    cands = beams.items.numpy()
    for i in range(len(ex)):
        row = df.iloc[i]
        where = np.flatnonzero(cands[i] == ex.target[i])
        assert row.llm_rank == (where[0] if len(where) else -1)
        assert row.hit_llm == (0 <= row.llm_rank < 4)
        top = sorted(c for c in cands[i] if c >= 0)[::-1][:4]      # re-sorted by item id
        assert row.hit_rm == (ex.target[i] in top)
    with torch.no_grad():
        lp = model.tuple_logprobs(torch.as_tensor(ex.history),
                                  torch.as_tensor(tiny_sids.codes)[ex.target][:, None]).sum(-1)[:, 0]
    np.testing.assert_allclose(df.target_logp, lp.numpy(), rtol=1e-5, atol=1e-5)
    assert {"hit_truth", "truth_discriminability"} <= set(df.columns)
    assert set(df.delta.unique()) <= {-1, 0, 1}


@pytest.mark.parametrize("field, kwargs", [("k", {"k": 30}), ("top_n", {"top_n": 0}),
                                           ("alpha", {"alpha": 1.5}), ("n_boot", {"n_boot": 1})])
def test_strata_config_rejects_bad_values(field, kwargs):
    with pytest.raises(ValueError, match=field):
        StrataConfig(**kwargs)


def test_candidate_table_rejects_empty_examples(tiny_world, tiny_sids):
    model = build_policy(tiny_sids, PolicyConfig(n_layer=1, n_embd=16, max_history=5), "cpu")
    empty = tiny_world.examples("test", 5).subset(np.arange(0))
    with pytest.raises(ValueError, match="examples"):
        candidate_table(model, ScoreByItemId(), tiny_sids, empty)


def test_strata_with_fewer_samples_than_bins():
    df = pd.DataFrame({"llm_rank": [0, -1, 3], "target_logp": [-1.0, -5.0, -2.0],
                       "discriminability": [0.5, np.nan, np.nan], "hit_llm": [True, False, True],
                       "hit_rm": [True, False, False]})
    df["delta"] = df.hit_rm.astype(int) - df.hit_llm.astype(int)
    s = add_strata(df, StrataConfig(difficulty_bins=4, discrim_bins=2, n_boot=50))
    assert s.difficulty_q.nunique() == 3 and list(s.discrim_q.astype(str)) == ["all", "undefined", "undefined"]
    assert influence_table(s, ["difficulty_q", "discrim_q"], StrataConfig(n_boot=50)).n.sum() == 3
