"""AdaGRPO gate (DESIGN 2 and 3): diagnostics, in-batch negatives, gates and controls."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adagrpo_core.rl.gate import GateConfig, METHODS, adagrpo_gate, compute_gate, difficulty, difficulty_gate, discriminability, discriminability_gate, distinct_negatives_mask, inverse_gate, oracle_gate, random_gate, rank_agreement, sample_inbatch_negatives

# Three samples, G = 5 rollouts each (-1 = invalid tuple).
#   row 0: target 7; rollouts 7 (the target), 3, 3 (duplicate), -1 (invalid), 5
#          distinct valid negatives: item 3 (first copy, j=1) and item 5 (j=4)
#   row 1: target 4; every rollout is the target or invalid: no negatives
#   row 2: target 9; five distinct negatives
TARGET = torch.tensor([7, 4, 9])
ITEMS = torch.tensor([[7, 3, 3, -1, 5],
                      [4, 4, -1, 4, -1],
                      [1, 2, 3, 4, 5]])


def test_distinct_negatives_mask_by_hand():
    expected = torch.tensor([[False, True, False, False, True],
                             [False, False, False, False, False],
                             [True, True, True, True, True]])
    assert torch.equal(distinct_negatives_mask(ITEMS, TARGET), expected)


def test_difficulty_by_hand():
    logp_target = torch.tensor([-2.0, -1.0, -1.5])
    logp_roll = torch.tensor([[-2.0, -1.0, -1.0, 0.0, -3.0],   # 3: -1 >= -2 yes; 5: -3 no
                              [-1.0, -1.0, 0.0, -1.0, 5.0],    # no negatives -> 0
                              [-1.5, -1.6, -1.0, -5.0, -1.4]])  # tie counts: -1.5, -1.0, -1.4
    d = difficulty(logp_target, logp_roll, ITEMS, TARGET)
    # row 0 would be 2/3 counting the duplicate, 3/4 counting the invalid one as well,
    # and 4/5 counting the target itself.
    torch.testing.assert_close(d, torch.tensor([1 / 2, 0.0, 3 / 5]))


def test_discriminability_by_hand():
    s_target = torch.tensor([0.5, 1.0, 0.0])
    s_roll = torch.tensor([[0.5, 0.2, 0.2, 9.0, 0.7],    # negatives: 0.2 below, 0.7 not
                           [0.0, 0.0, 0.0, 0.0, 0.0],    # no rollout negatives
                           [-1.0, 1.0, -2.0, 0.0, 2.0]])  # below: -1, -2 (0.0 tie is not)
    a = discriminability(s_target, s_roll, ITEMS, TARGET)
    torch.testing.assert_close(a, torch.tensor([1 / 2, 0.0, 2 / 5]))

    s_ib = torch.tensor([[0.1, 0.5, 0.3],     # mask [T, F, T]: 0.1 and 0.3 below
                         [2.0, 0.0, 0.0],     # mask all False: no negatives (unmasked: 2 of 3 below)
                         [-1.0, -1.0, 5.0]])  # all real: 2 below
    ib_mask = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    a = discriminability(s_target, s_roll, ITEMS, TARGET, s_ib, ib_mask)
    torch.testing.assert_close(a, torch.tensor([(1 + 2) / (2 + 2), 0.0, (2 + 2) / (5 + 3)]))
    # no mask = every in-batch negative is real
    a = discriminability(s_target, s_roll, ITEMS, TARGET, s_ib)
    torch.testing.assert_close(a, torch.tensor([(1 + 2) / (2 + 3), 2 / 3, (2 + 2) / (5 + 3)]))


def test_sample_inbatch_negatives_excludes_self_and_same_item():
    target = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 5])
    B, M = target.shape[0], 5
    gen = torch.Generator().manual_seed(0)
    seen = torch.zeros(B, B, dtype=torch.bool)
    for _ in range(50):
        idx, mask = sample_inbatch_negatives(target, M, generator=gen)
        assert idx.shape == (B, M) and idx.dtype == torch.long and mask.dtype == torch.bool
        assert mask.all()  # every row has >= 8 eligible samples
        rows = torch.arange(B).unsqueeze(1).expand(B, M)
        assert not (idx == rows).any()
        assert not (target[idx] == target.unsqueeze(1)).any()
        assert all(len(set(r.tolist())) == M for r in idx)  # without replacement
        seen[rows, idx] = True
    eligible = target.unsqueeze(1) != target.unsqueeze(0)
    assert torch.equal(seen, eligible)  # every eligible sample gets drawn at some point


def test_sample_inbatch_negatives_with_too_few_candidates():
    target = torch.tensor([3, 3, 3, 8])
    idx, mask = sample_inbatch_negatives(target, 5, generator=torch.Generator().manual_seed(1))
    assert idx.shape == (4, 5)
    # rows 0-2 have one eligible sample (row 3); row 3 has three (rows 0, 1, 2)
    assert mask.sum(1).tolist() == [1, 1, 1, 3]
    for i in range(4):
        for j in idx[i][mask[i]].tolist():
            assert j != i and target[j] != target[i]
    idx0, mask0 = sample_inbatch_negatives(target, 0)
    assert idx0.shape == (4, 0) and mask0.shape == (4, 0)
    _, mask_same = sample_inbatch_negatives(torch.zeros(6, dtype=torch.long), 3)
    assert not mask_same.any()


def test_gates_by_hand():
    d = torch.tensor([0.0, 0.3, 0.5, 0.9, 1.0])
    a = torch.tensor([1.0, 0.9, 0.2, 0.6, 0.5])
    assert difficulty_gate(d, 0.5).tolist() == [False, False, True, True, True]
    assert discriminability_gate(a, 0.6).tolist() == [True, True, False, True, False]
    assert adagrpo_gate(d, a, 0.5, 0.6).tolist() == [False, False, False, True, False]
    assert inverse_gate(d, a, 0.5, 0.6).tolist() == [True, True, True, False, True]
    assert adagrpo_gate(d, a, 0.0, 0.0).all()


def test_random_gate_rate():
    B, p = 20000, 0.3
    g = random_gate(B, p, torch.Generator().manual_seed(0))
    assert g.dtype == torch.bool and g.shape == (B,)
    se = math.sqrt(p * (1 - p) / B)
    assert abs(g.float().mean().item() - p) < 4 * se
    assert not random_gate(100, 0.0).any()
    assert random_gate(100, 1.0).all()
    g1 = random_gate(50, 0.5, torch.Generator().manual_seed(3))
    g2 = random_gate(50, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(g1, g2)


# rows: perfect order; reversed; 2 of 3 pairs; only a pair with equal utilities (and an
# invalid rollout); a ranker tie on one pair (not concordant) plus 2 concordant pairs.
SCORES = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [1.0, 3.0, 2.0],
                       [1.0, 2.0, 5.0], [1.0, 1.0, 0.0]])
UTIL = torch.tensor([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1], [0.1, 0.5, 0.9],
                     [0.3, 0.3, 0.9], [0.2, 0.8, 0.1]])
VALID = torch.tensor([[True] * 3, [True] * 3, [True] * 3, [True, True, False], [True] * 3])


def test_rank_agreement_and_oracle_gate_by_hand():
    agree, n_pairs = rank_agreement(SCORES, UTIL, VALID)
    torch.testing.assert_close(agree, torch.tensor([1.0, 0.0, 2 / 3, 0.0, 2 / 3]))
    assert n_pairs.tolist() == [3, 3, 3, 0, 3]
    assert oracle_gate(SCORES, UTIL, VALID, 0.6).tolist() == [True, False, True, False, True]
    assert oracle_gate(SCORES, UTIL, VALID, 0.7).tolist() == [True, False, False, False, False]
    # no comparable pair -> rejected even at threshold 0
    assert oracle_gate(SCORES, UTIL, VALID, 0.0).tolist() == [True, True, True, False, True]


def test_methods_table_matches_design():
    assert set(METHODS) == {"nll", "grpo", "mix", "adagrpo", "random", "difficulty",
                            "discriminability", "inverse", "oracle", "exposure", "ensemble",
                            "difficulty_and_reliability", "soft"}
    assert METHODS["grpo"].w_nll == 0.0
    assert all(m.w_nll == 1.0 for k, m in METHODS.items() if k != "grpo")
    assert all(m.help for m in METHODS.values())
    assert GateConfig(method="grpo").w_nll == 0.0


def test_compute_gate_dispatch():
    d = torch.tensor([0.0, 0.3, 0.5, 0.9, 1.0])
    a = torch.tensor([1.0, 0.9, 0.2, 0.6, 0.5])
    cg = lambda **kw: compute_gate(GateConfig(**kw, tau=0.5, rho=0.6), d, a)  # noqa: E731
    assert not cg(method="nll").any()
    assert cg(method="grpo").all() and cg(method="mix").all()
    assert cg(method="adagrpo").tolist() == [False, False, False, True, False]
    assert cg(method="difficulty").tolist() == [False, False, True, True, True]
    assert cg(method="discriminability").tolist() == [True, True, False, True, False]
    assert cg(method="inverse").tolist() == [True, True, True, False, True]

    per_step = GateConfig(method="random", random_rate_mode="per_step")
    assert compute_gate(per_step, d, a, target_rate=1.0).all()
    assert not compute_gate(per_step, d, a, target_rate=0.0).any()
    with pytest.raises(ValueError, match="target_rate=None"):
        compute_gate(per_step, d, a)
    mean = GateConfig(method="random", random_rate_mode="mean", random_rate=1.0)
    assert compute_gate(mean, d, a, target_rate=0.0).all()  # "mean" ignores the per-step rate
    with pytest.raises(ValueError, match="random_rate=None"):
        compute_gate(GateConfig(method="random", random_rate_mode="mean"), d, a)

    oracle = GateConfig(method="oracle", oracle_threshold=0.6)
    out = compute_gate(oracle, d, a, ranker_scores=SCORES, true_utility=UTIL, valid=VALID)
    assert out.tolist() == [True, False, True, False, True]
    with pytest.raises(ValueError, match="oracle"):
        compute_gate(oracle, d, a)


def test_bad_parameters_raise_naming_field_and_value():
    cases = [
        (dict(method="ppo"), "method='ppo'"),
        (dict(tau=1.5), "tau=1.5"),
        (dict(tau=-0.1), "tau=-0.1"),
        (dict(rho=-0.1), "rho=-0.1"),
        (dict(rho=2), "rho=2"),
        (dict(num_negatives=-1), "num_negatives=-1"),
        (dict(num_negatives=2.0), "num_negatives=2.0"),
        (dict(random_rate=1.2), "random_rate=1.2"),
        (dict(random_rate_mode="global"), "random_rate_mode='global'"),
        (dict(oracle_threshold=1.1), "oracle_threshold=1.1"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError) as e:
            GateConfig(**kwargs)
        assert msg in str(e.value), (kwargs, str(e.value))
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="tau=1.5"):
        adagrpo_gate(x, x, 1.5, 0.5)
    with pytest.raises(ValueError, match="rho=-0.2"):
        inverse_gate(x, x, 0.5, -0.2)
    with pytest.raises(ValueError, match="M=-1"):
        sample_inbatch_negatives(torch.arange(4), -1)
    with pytest.raises(ValueError, match="p=1.5"):
        random_gate(4, 1.5)
    with pytest.raises(ValueError, match="threshold=-1"):
        oracle_gate(SCORES, UTIL, VALID, -1)


# ------------------------------------------------------------------ reliability diagnostics and gates
def test_exposure_share_on_a_hand_built_batch():
    from adagrpo_core.rl.gate import exposure_percentile, exposure_share
    counts = torch.tensor([0, 5, 20, 20, 100])                               # item -> train impressions
    p = exposure_percentile(counts)
    torch.testing.assert_close(p, torch.tensor([0.0, 0.25, 0.625, 0.625, 1.0]))   # ties averaged
    items = torch.tensor([[1, 2, 2, -1], [3, 4, 0, 3], [0, 0, -1, -1]])      # [B=3, G=4]
    target = torch.tensor([4, 3, 0])
    # sample 0: target 4 (1.0) + distinct negatives {1 (0.25), 2 (0.625)}
    # sample 1: target 3 (0.625) + negatives {4 (1.0), 0 (0.0)} (3 is the target)
    # sample 2: target 0 (0.0), no negatives
    torch.testing.assert_close(exposure_share(items, target, p),
                               torch.tensor([1.875 / 3, 1.625 / 3, 0.0]))
    assert exposure_percentile(torch.tensor([7])).tolist() == [1.0]


def test_ensemble_agreement_is_one_for_identical_members_and_lower_for_shuffled():
    from adagrpo_core.rl.gate import ensemble_agreement
    g = torch.Generator().manual_seed(0)
    items = torch.arange(24).reshape(3, 8)                                   # [B=3, G=8], all distinct and valid
    base = torch.randn(3, 8, generator=g)
    same = torch.stack([base, base * 2 + 1, base.exp()])                     # monotone transforms: same order
    torch.testing.assert_close(ensemble_agreement(same, items), torch.ones(3))
    shuffled = torch.stack([base, base[:, torch.randperm(8, generator=g)], -base])
    u = ensemble_agreement(shuffled, items)
    assert (u < 0.5).all()
    assert ensemble_agreement(torch.stack([base, -base]), items).tolist() == pytest.approx([-1.0] * 3)
    # invalid and repeated rollouts are dropped; fewer than 3 distinct valid ones -> 0
    few = torch.tensor([[1, 1, -1, 2, 2, 2, -1, -1]] + [list(range(8))] * 2)
    u = ensemble_agreement(same, few)
    assert u[0] == 0 and u[1:].tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="K >= 2"):
        ensemble_agreement(base[None], items)


def test_reliability_gates_and_the_soft_variant():
    from adagrpo_core.rl.gate import reliability_gate, soft_weights
    d = torch.tensor([0.0, 0.3, 0.5, 0.9, 1.0, 0.7])
    a = torch.full((6,), 0.5)
    e = torch.tensor([0.1, 0.9, 0.5, 0.3, 1.0, 0.7])
    assert reliability_gate(e, 0.5).tolist() == [False, True, False, False, True, True]
    assert not reliability_gate(e, 0.0).any() and reliability_gate(e, 1.0).all()
    cg = lambda **kw: compute_gate(GateConfig(tau=0.5, reliability_rate=0.5, **kw), d, a, exposure=e,  # noqa: E731
                                   ensemble=1 - e)
    assert cg(method="exposure").tolist() == [False, True, False, False, True, True]
    assert cg(method="ensemble").tolist() == [True, False, True, True, False, False]
    assert cg(method="difficulty_and_reliability").tolist() == [False, False, False, False, True, True]
    assert cg(method="difficulty_and_reliability", reliability="ensemble").tolist() == [False] * 2 + [True] * 2 + [False] * 2
    torch.testing.assert_close(cg(method="soft"), e)
    # the soft variant at reliability 1 is the open gate: the same combined loss as the fixed mixture
    from adagrpo_core.rl.grpo import combine_losses
    nll, grpo = torch.rand(6), torch.randn(6)
    ones = compute_gate(GateConfig(method="soft"), d, a, exposure=torch.ones(6))
    torch.testing.assert_close(ones, soft_weights(torch.ones(6)))
    for norm in ("batch", "admitted"):
        torch.testing.assert_close(combine_losses(nll, grpo, ones, 1.0, 0.7, norm),
                                   combine_losses(nll, grpo, compute_gate(GateConfig(method="mix"), d, a), 1.0, 0.7, norm))
    with pytest.raises(ValueError, match="exposure diagnostic"):
        compute_gate(GateConfig(method="exposure"), d, a)
    with pytest.raises(ValueError, match="reliability"):
        GateConfig(reliability="vibes")
    with pytest.raises(ValueError, match="reliability_rate"):
        GateConfig(reliability_rate=1.5)


def test_reliability_gate_rejects_ties_at_the_bottom():
    from adagrpo_core.rl.gate import reliability_gate
    u = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.4, 0.9])       # most samples with no measurable agreement
    assert reliability_gate(u, 0.5).tolist() == [False] * 4 + [True, True]
    e = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.5, 0.2])       # ties at the top are admitted
    assert reliability_gate(e, 0.5).tolist() == [True] * 4 + [False, False]
    assert reliability_gate(u, 1.0).all()


def test_the_readme_gate_block_is_the_runnable_example():
    """README's gate section shows examples/gate_minimal.py byte for byte, and the example runs:
    two of its four toy samples pass the gate, and only their rollouts get a gradient."""
    root = Path(__file__).resolve().parent.parent
    example = (root / "examples" / "gate_minimal.py").read_text()
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Using the gate in your own GRPO code"):]
    block = section[section.index("```python\n") + len("```python\n"):]
    assert block[:block.index("```\n")] == example, "README's gate block differs from examples/gate_minimal.py"
    out = subprocess.run([sys.executable, str(root / "examples" / "gate_minimal.py")], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "admitted 2 of 4" in out.stdout and "admitted samples only: True" in out.stdout
