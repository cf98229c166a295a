"""GRPO pure functions (DESIGN 2): advantages, clipped loss, NLL and the gated combination."""
from __future__ import annotations

import math

import pytest
import torch

from adagrpo_core.rl.grpo import GRPOConfig, combine_losses, group_advantages, grpo_loss_per_sample, nll_per_sample

D = torch.float64


# ---------------------------------------------------------------------------------------------
# group_advantages


def test_group_advantages_by_hand_unbiased_std():
    r = torch.tensor([[1.0, 2.0, 3.0], [0.0, 4.0, 2.0]], dtype=D)
    A = group_advantages(r)
    # row 0: mean 2, unbiased std sqrt((1 + 0 + 1) / 2) = 1
    # row 1: mean 2, unbiased std sqrt((4 + 4 + 0) / 2) = 2   (biased would be sqrt(8/3))
    expected = torch.tensor([[-1.0, 0.0, 1.0], [-2.0 / 2.0001, 2.0 / 2.0001, 0.0]], dtype=D)
    expected[0] /= 1.0001
    torch.testing.assert_close(A, expected, rtol=0, atol=1e-12)


def test_group_advantages_two_rollouts_uses_bessel_correction():
    A = group_advantages(torch.tensor([[0.0, 4.0]], dtype=D))
    s = math.sqrt(8.0)  # unbiased: sqrt(((-2)^2 + 2^2) / (2 - 1))
    torch.testing.assert_close(A, torch.tensor([[-2 / (s + 1e-4), 2 / (s + 1e-4)]], dtype=D))


def test_group_advantages_none_mode_only_centres():
    A = group_advantages(torch.tensor([[1.0, 2.0, 6.0]], dtype=D), scale_rewards="none")
    torch.testing.assert_close(A, torch.tensor([[-2.0, -1.0, 3.0]], dtype=D))


@pytest.mark.parametrize("mode", ["group", "none"])
def test_zero_variance_group_gives_exactly_zero(mode):
    # In float32 the mean of seven copies of 0.1 is not exactly 0.1: without the explicit
    # zeroing the residue (divided by its own tiny std + 1e-4) would be a non-zero advantage.
    r = torch.tensor([[0.1] * 7, [-5.0] * 7, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]])
    A = group_advantages(r, scale_rewards=mode)
    assert torch.equal(A[:2], torch.zeros(2, 7))
    assert A[2].abs().sum() > 0


def test_group_advantages_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        group_advantages(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="finite"):
        group_advantages(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(ValueError, match="num_generations=1"):
        group_advantages(torch.tensor([[1.0], [2.0]]))
    with pytest.raises(ValueError, match="scale_rewards='batchy'"):
        group_advantages(torch.ones(2, 3), scale_rewards="batchy")


# ---------------------------------------------------------------------------------------------
# grpo_loss_per_sample

# One sample, G = 2 rollouts of L = 2 tokens, eps = 0.2, logp_old = 0 so rho = exp(logp_new):
#   rollout 0, A = +1, rho = [1.5, 0.9]: min(1.5, 1.2) = 1.2 (clipped), 0.9   -> mean 1.05
#   rollout 1, A = -1, rho = [0.5, 1.1]: min(-0.5, -0.8) = -0.8 (clipped), -1.1 -> mean -0.95
#   loss = -(1.05 - 0.95) / 2 = -0.05; clip active on 2 of 4 tokens; mean rho = 1.0
RHO = torch.tensor([[[1.5, 0.9], [0.5, 1.1]]], dtype=D)
ADV = torch.tensor([[1.0, -1.0]], dtype=D)


def test_grpo_loss_by_hand_with_clipping():
    new = RHO.log()
    loss, stats = grpo_loss_per_sample(new, torch.zeros_like(new), ADV, epsilon=0.2)
    torch.testing.assert_close(loss, torch.tensor([-0.05], dtype=D))
    assert stats["clip_frac"].item() == pytest.approx(0.5)
    assert stats["ratio_mean"].item() == pytest.approx(1.0)
    assert stats["kl"].item() == 0.0


def test_ratio_outside_range_on_the_pessimistic_side_is_not_clipped():
    # A = +1 with rho = 0.5: min(0.5, 0.8) = 0.5; A = -1 with rho = 1.5: min(-1.5, -1.2) = -1.5.
    # The min keeps the unclipped term, so the clip is not active and the gradient flows.
    new = torch.tensor([[[0.5], [1.5]]], dtype=D).log().requires_grad_(True)
    loss, stats = grpo_loss_per_sample(new, torch.zeros(1, 2, 1, dtype=D), ADV)
    torch.testing.assert_close(loss, torch.tensor([0.5], dtype=D))
    assert stats["clip_frac"].item() == 0.0
    loss.sum().backward()
    # d/dlogp of -(1/2) rho A = -(1/2) rho A
    torch.testing.assert_close(new.grad, torch.tensor([[[-0.25], [0.75]]], dtype=D))


def test_grpo_loss_by_hand_with_kl():
    # ref - new = [[0, ln 2], [-ln 2, 0]]: k3 = e^d - d - 1 = [[0, 1 - ln 2], [ln 2 - 1/2, 0]],
    # which sum to 0.5, so the mean KL is 0.125 and loss = -0.05 + beta * 0.125.
    new = RHO.log()
    delta = torch.tensor([[[0.0, math.log(2)], [-math.log(2), 0.0]]], dtype=D)
    loss, stats = grpo_loss_per_sample(new, torch.zeros_like(new), ADV, epsilon=0.2, beta=0.1,
                                       logp_ref=new + delta)
    torch.testing.assert_close(loss, torch.tensor([-0.05 + 0.1 * 0.125], dtype=D))
    assert stats["kl"].item() == pytest.approx(0.125)
    # the KL is logged even when beta = 0, without entering the loss
    loss0, stats0 = grpo_loss_per_sample(new, torch.zeros_like(new), ADV, logp_ref=new + delta)
    torch.testing.assert_close(loss0, torch.tensor([-0.05], dtype=D))
    assert stats0["kl"].item() == pytest.approx(0.125)


def test_grpo_loss_token_mask_by_hand():
    new = RHO.log().clone()
    new[0, 0, 1] = float("-inf")          # garbage on a masked token must not matter
    old = torch.zeros_like(new)
    mask = torch.tensor([[[True, False], [True, True]]])
    loss, stats = grpo_loss_per_sample(new, old, ADV, token_mask=mask)
    # rollout 0: only the clipped token 1.2; rollout 1: -0.95 -> -(1.2 - 0.95) / 2
    torch.testing.assert_close(loss, torch.tensor([-0.125], dtype=D))
    assert stats["clip_frac"].item() == pytest.approx(2 / 3)
    # a rollout with no valid token contributes 0 but still counts in the 1/G
    mask2 = torch.tensor([[[True, True], [False, False]]])
    loss2, _ = grpo_loss_per_sample(RHO.log(), old, ADV, token_mask=mask2)
    torch.testing.assert_close(loss2, torch.tensor([-1.05 / 2], dtype=D))


def test_on_policy_loss_is_minus_mean_advantage_and_gradient_is_policy_gradient():
    g = torch.Generator().manual_seed(0)
    B, G, L = 4, 5, 3
    logits = torch.randn(B, G, L, generator=g, dtype=D)
    mask = torch.rand(B, G, L, generator=g) > 0.3
    mask[:, :, 0] = True
    rewards = torch.randn(B, G, generator=g, dtype=D)
    for mode in ("group", "none"):
        A = group_advantages(rewards, scale_rewards=mode)
        new = logits.clone().requires_grad_(True)
        loss, stats = grpo_loss_per_sample(new, new.detach(), A, token_mask=mask)
        torch.testing.assert_close(loss, -A.mean(1))
        if mode == "group":
            torch.testing.assert_close(loss, torch.zeros(B, dtype=D), atol=1e-12, rtol=0)
        assert stats["clip_frac"].item() == 0.0 and stats["ratio_mean"].item() == pytest.approx(1.0)
        loss.sum().backward()
        # d loss_i / d logp_new_ijt = -A_ij / (G * L_ij) on valid tokens, 0 elsewhere
        n_tok = mask.sum(-1, keepdim=True).to(D)
        expected = torch.where(mask, -A.unsqueeze(-1) / (G * n_tok), torch.zeros((), dtype=D))
        torch.testing.assert_close(new.grad, expected)
        # and equals the gradient of the REINFORCE surrogate -(1/G) sum_j A_ij mean_t logp_ijt
        ref = logits.clone().requires_grad_(True)
        surrogate = -(A * (torch.where(mask, ref, 0.0).sum(-1) / n_tok.squeeze(-1))).mean(1)
        surrogate.sum().backward()
        torch.testing.assert_close(new.grad, ref.grad)


def test_finite_for_all_invalid_and_zero_advantage():
    B, G, L = 3, 4, 2
    new = torch.full((B, G, L), float("-inf"), requires_grad=True)
    old = torch.full((B, G, L), float("nan"))
    ref = torch.full((B, G, L), float("nan"))
    A = torch.full((B, G), float("nan"))
    mask = torch.zeros(B, G, L, dtype=torch.bool)
    loss, stats = grpo_loss_per_sample(new, old, A, beta=0.5, logp_ref=ref, token_mask=mask)
    assert torch.equal(loss, torch.zeros(B))
    assert all(torch.isfinite(v) for v in stats.values())
    loss.sum().backward()
    assert torch.equal(new.grad, torch.zeros(B, G, L))

    # zero-variance groups: advantage 0, so the loss is 0 whatever the ratios
    A0 = group_advantages(torch.full((B, G), -3.0))
    new2 = torch.randn(B, G, L, requires_grad=True)
    loss2, stats2 = grpo_loss_per_sample(new2, torch.randn(B, G, L), A0)
    assert torch.equal(loss2, torch.zeros(B))
    assert all(torch.isfinite(v) for v in stats2.values())
    loss2.sum().backward()
    assert torch.equal(new2.grad, torch.zeros(B, G, L))


def test_grpo_loss_rejects_bad_parameters():
    x = torch.zeros(1, 2, 2)
    A = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="epsilon=0"):
        grpo_loss_per_sample(x, x, A, epsilon=0)
    with pytest.raises(ValueError, match="beta=-0.1"):
        grpo_loss_per_sample(x, x, A, beta=-0.1)
    with pytest.raises(ValueError, match="logp_ref"):
        grpo_loss_per_sample(x, x, A, beta=0.1)
    with pytest.raises(ValueError, match="advantages.shape"):
        grpo_loss_per_sample(x, x, torch.zeros(1, 3))


# ---------------------------------------------------------------------------------------------
# nll and combine_losses


def test_nll_per_sample():
    lp = torch.tensor([[-1.0, -2.0, -3.0], [0.0, -0.5, -1.0]])
    torch.testing.assert_close(nll_per_sample(lp), torch.tensor([2.0, 0.5]))


NLL = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=D)
GRPO = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=D)


def test_combine_gate_open_is_the_mixture():
    gate = torch.ones(4, dtype=torch.bool)
    out = combine_losses(NLL, GRPO, gate, w_nll=1.0, lam=0.3)
    # 2.5 + 0.3 * 1.5 / 4
    assert out.item() == pytest.approx(2.6125)
    torch.testing.assert_close(out, (NLL + 0.3 * GRPO).mean())
    # "admitted" with every sample admitted divides by 4 = B as well
    torch.testing.assert_close(combine_losses(NLL, GRPO, gate, 1.0, 0.3, "admitted"), out)
    # pure GRPO
    assert combine_losses(NLL, GRPO, gate, w_nll=0.0, lam=1.0).item() == pytest.approx(0.375)


def test_combine_partial_admission_by_hand():
    gate = torch.tensor([True, False, True, False])
    assert combine_losses(NLL, GRPO, gate, 1.0, 0.3, "batch").item() == pytest.approx(2.5 + 0.3 * 2.5 / 4)
    assert combine_losses(NLL, GRPO, gate, 1.0, 0.3, "admitted").item() == pytest.approx(2.5 + 0.3 * 2.5 / 2)
    # float gate: weights
    wgate = torch.tensor([0.5, 0.0, 1.0, 0.0], dtype=D)
    assert combine_losses(NLL, GRPO, wgate, 1.0, 1.0, "batch").item() == pytest.approx(2.5 + 2.25 / 4)
    assert combine_losses(NLL, GRPO, wgate, 1.0, 1.0, "admitted").item() == pytest.approx(2.5 + 2.25 / 1.5)


def test_combine_lambda_zero_and_empty_admission_equal_nll():
    nll_only = (2.0 * NLL).mean()
    out = combine_losses(NLL, GRPO, torch.ones(4, dtype=torch.bool), w_nll=2.0, lam=0.0)
    assert torch.equal(out, nll_only)
    bad = torch.tensor([float("nan"), float("inf"), 1.0, 2.0], dtype=D)  # rejected: must not leak
    for normalize in ("batch", "admitted"):
        out = combine_losses(NLL, bad, torch.zeros(4, dtype=torch.bool), 2.0, 0.7, normalize)
        assert torch.equal(out, nll_only)


def test_combine_gradient_only_through_admitted():
    grpo = GRPO.clone().requires_grad_(True)
    gate = torch.tensor([True, False, True, False])
    combine_losses(NLL, grpo, gate, 1.0, 0.3).backward()
    torch.testing.assert_close(grpo.grad, torch.tensor([0.075, 0.0, 0.075, 0.0], dtype=D))


def test_combine_rejects_bad_parameters():
    g = torch.ones(4, dtype=torch.bool)
    with pytest.raises(ValueError, match="lam=-1"):
        combine_losses(NLL, GRPO, g, 1.0, -1)
    with pytest.raises(ValueError, match="w_nll=-0.5"):
        combine_losses(NLL, GRPO, g, -0.5, 1.0)
    with pytest.raises(ValueError, match="normalize='sum'"):
        combine_losses(NLL, GRPO, g, 1.0, 1.0, "sum")


# ---------------------------------------------------------------------------------------------
# config


def test_grpo_config_defaults_and_validation():
    cfg = GRPOConfig()
    assert cfg.num_generations >= 2 and 0 < cfg.epsilon < 1
    cases = [
        (dict(num_generations=1), "num_generations must be >= 2, got num_generations=1"),
        (dict(num_generations=2.5), "num_generations=2.5"),
        (dict(temperature=0.0), "temperature=0.0"),
        (dict(epsilon=0), "epsilon=0"),
        (dict(epsilon=1.0), "epsilon=1.0"),
        (dict(beta=-0.01), "beta=-0.01"),
        (dict(scale_rewards="batch"), "scale_rewards='batch'"),
        (dict(lam=-1.0), "lam=-1.0"),
        (dict(normalize="mean"), "normalize='mean'"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError) as e:
            GRPOConfig(**kwargs)
        assert msg in str(e.value), (kwargs, str(e.value))


def test_nll_weight_has_one_owner_the_method_registry():
    """GRPOConfig has no NLL weight; compute_loss takes it from the method (gate.METHODS)."""
    from adagrpo_core.rl.gate import GateConfig
    from adagrpo_core.rl.step import ScoredBatch, compute_loss
    with pytest.raises(TypeError):
        GRPOConfig(w_nll=0.0)
    torch.manual_seed(0)
    B, G, L = 4, 3, 2
    nll = torch.tensor([1.0, 2.0, 3.0, 4.0])
    logp = torch.randn(B, G, L)
    adv = torch.randn(B, G)
    gate = torch.ones(B, dtype=torch.bool)
    scored = ScoredBatch(nll, gate, logp, torch.randn(B, G), advantages=adv)
    cfg = GRPOConfig(lam=0.5)
    pure, _ = compute_loss(scored, cfg, GateConfig(method="grpo"))
    mix, _ = compute_loss(scored, cfg, GateConfig(method="mix"))
    assert mix.item() == pytest.approx(pure.item() + nll.mean().item(), abs=1e-6)
    grpo_i, _ = grpo_loss_per_sample(logp, logp.detach(), adv, cfg.epsilon, 0.0, None)
    assert pure.item() == pytest.approx(0.5 * grpo_i.mean().item(), abs=1e-6)
