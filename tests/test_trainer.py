"""RL trainer: method identities on real batches, resumption, controls and bad input."""
import numpy as np
import pandas as pd
import pytest
import torch

from adagrpo_core.rl.gate import GateConfig
from adagrpo_core.rl.grpo import GRPOConfig
from adagrpo_core.model.policy import PolicyConfig
from adagrpo_core.reward.ranker import Ranker, RankerConfig
from adagrpo_core.reward.reward_model import RewardModel
from adagrpo_core.configs import SFTConfig
from adagrpo_core.model.policy import load_policy
from adagrpo_core.train.sft import train_sft
from adagrpo_core.configs import RLConfig
from adagrpo_core.reward.reward_model import RewardConfig
from adagrpo_core.rl.step import compute_loss, sample_and_score
from adagrpo_core.train.rl import run_method, train_rl

PCFG = PolicyConfig(n_layer=1, n_head=2, n_embd=16, max_history=5)


@pytest.fixture(scope="module")
def setup(tiny_world, tiny_sids, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    train_sft(tiny_world, tiny_sids, PCFG, SFTConfig(steps=4, ckpt_every=2, batch_size=32, eval_samples=40, warmup_steps=2,
                                                       device="cpu"), out_dir=out, progress=False)
    torch.manual_seed(0)
    ranker = Ranker(RankerConfig(device="cpu"), tiny_world.item_features, tiny_world.item_category).eval()
    reward = RewardModel(ranker, tiny_sids, RewardConfig(output="prob"))
    batch = tiny_world.examples("train", PCFG.max_history).subset(range(24))
    return tiny_world, tiny_sids, out / "best.pt", reward, batch


class StepOut:
    def __init__(self, loss, metrics, gate):
        self.loss, self.metrics, self.gate = loss, metrics, gate


def grpo_step_loss(model, ref_model, reward, batch, sids, grpo, gate_cfg, gen, target_rate=None, true_utility=None):
    """One step's loss through the trainer's two stages (sample-and-score, then the loss)."""
    scored = sample_and_score(model, reward, batch, torch.as_tensor(sids.codes), sids.trie, grpo, gate_cfg, gen,
                              target_rate, true_utility)
    loss, metrics = compute_loss(scored, grpo, gate_cfg, ref_model)
    return StepOut(loss, metrics, scored.gate)


def step_loss(setup, method, seed=0, grpo=None, **gate_kw):
    world, sids, ckpt, reward, batch = setup
    model = load_policy(ckpt, sids, "cpu").train()
    gen = torch.Generator().manual_seed(seed)
    out = grpo_step_loss(model, None, reward, batch, sids, grpo or GRPOConfig(num_generations=4, lam=0.7),
                         GateConfig(method=method, **gate_kw), gen, target_rate=0.5,
                         true_utility=lambda b, items: world.true_utility(world.states_for(b), items))
    return out, model


def test_gate_always_open_equals_mix(setup):
    mix, _ = step_loss(setup, "mix")
    ada, _ = step_loss(setup, "adagrpo", tau=0.0, rho=0.0)   # d >= 0 and a >= 0 always hold
    assert ada.gate.all()
    assert torch.equal(mix.loss, ada.loss)


def test_lambda_zero_equals_nll(setup):
    mix0, _ = step_loss(setup, "mix", grpo=GRPOConfig(num_generations=4, lam=0.0))
    nll, _ = step_loss(setup, "nll")
    torch.testing.assert_close(mix0.loss, nll.loss, atol=1e-6, rtol=1e-6)


def test_empty_admission_equals_nll(setup):
    closed, _ = step_loss(setup, "inverse", tau=0.0, rho=0.0)   # rejects everything adagrpo admits = all
    assert not closed.gate.any()
    nll, _ = step_loss(setup, "nll")
    torch.testing.assert_close(closed.loss, nll.loss, atol=1e-6, rtol=1e-6)
    assert closed.metrics["admission_rate"] == 0.0


def test_grpo_term_changes_the_loss_and_metrics_are_finite(setup):
    mix, _ = step_loss(setup, "mix", grpo=GRPOConfig(num_generations=4, lam=5.0))
    nll, _ = step_loss(setup, "nll")
    assert torch.isfinite(mix.loss)
    for k in ("mean_d", "mean_a", "reward", "reward_std", "frac_reward_zero_std", "clip_ratio/region_mean", "kl"):
        assert np.isfinite(mix.metrics[k]), k
    assert 0 <= mix.metrics["mean_d"] <= 1 and 0 <= mix.metrics["mean_a"] <= 1
    # on-policy: group-normalised advantages have zero mean, so the GRPO loss value is ~0 ...
    assert abs(mix.metrics["grpo_loss"]) < 1e-3


def test_grpo_gradient_differs_from_nll_gradient(setup):
    world, sids, ckpt, reward, batch = setup
    grads = {}
    for method in ("nll", "mix"):
        out, model = step_loss(setup, method, grpo=GRPOConfig(num_generations=4, lam=5.0))
        out.loss.backward()
        grads[method] = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert not torch.allclose(grads["nll"], grads["mix"])


def test_oracle_gate_runs_on_true_utility(setup):
    out, _ = step_loss(setup, "oracle", oracle_threshold=0.5)
    assert 0.0 <= out.metrics["admission_rate"] <= 1.0
    assert "rank_agreement" in out.metrics


class ConstantReward:
    """A reward that cannot tell rollouts apart: every group has zero variance."""
    def __init__(self, inner):
        self.inner = inner

    def __call__(self, history, tuples, batch=None):
        return torch.zeros(tuples.shape[:2])

    def score_items(self, history, items, batch=None):
        return torch.zeros(items.shape, dtype=torch.float32)


def test_zero_variance_rewards_give_finite_nll_only_gradient(setup):
    world, sids, ckpt, reward, batch = setup
    losses = {}
    for method in ("mix", "nll"):
        model = load_policy(ckpt, sids, "cpu").train()
        out = grpo_step_loss(model, None, ConstantReward(reward), batch, sids, GRPOConfig(num_generations=4, lam=3.0),
                             GateConfig(method=method), torch.Generator().manual_seed(0))
        assert torch.isfinite(out.loss)
        losses[method] = out
    assert losses["mix"].metrics["frac_reward_zero_std"] == 1.0
    torch.testing.assert_close(losses["mix"].loss, losses["nll"].loss, atol=1e-6, rtol=1e-6)


def test_train_rl_changes_parameters_logs_and_resumes(setup, tmp_path):
    world, sids, ckpt, reward, batch = setup
    grpo, gate = GRPOConfig(num_generations=4), GateConfig(method="adagrpo", tau=0.2, rho=0.3)
    cfg = RLConfig(steps=4, batch_size=16, ckpt_every=2, eval_samples=30, device="cpu")
    a = train_rl(world, sids, ckpt, reward, grpo, gate, cfg, tmp_path / "a", progress=False)
    before = load_policy(ckpt, sids, "cpu").state_dict()
    assert any(not torch.equal(before[k], v) for k, v in a.model.state_dict().items())
    cols = {"admission_rate", "mean_d", "mean_a", "reward", "reward_std", "frac_reward_zero_std",
            "clip_ratio/region_mean", "kl", "nll", "grpo_loss", "nonfinite_scores"}
    assert cols <= set(a.steps.columns) and len(a.steps) == 4
    assert (tmp_path / "a" / "steps.csv").exists() and (tmp_path / "a" / "final.pt").exists()
    # interrupted at step 2, resumed: identical to the uninterrupted run
    train_rl(world, sids, ckpt, reward, grpo, gate, cfg, tmp_path / "b", progress=False, stop_after=2)
    b = train_rl(world, sids, ckpt, reward, grpo, gate, cfg, tmp_path / "b", progress=False)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert a.steps.equals(b.steps)
    with pytest.raises(ValueError, match="other configs"):
        train_rl(world, sids, ckpt, reward, grpo, GateConfig(method="mix"), cfg, tmp_path / "b", progress=False)


def test_random_control_matches_reference_rate(setup, tmp_path):
    world, sids, ckpt, reward, batch = setup
    cfg = RLConfig(steps=6, batch_size=64, ckpt_every=6, eval_samples=20, device="cpu")
    rates = [0.25] * 6
    res = train_rl(world, sids, ckpt, reward, GRPOConfig(num_generations=2), GateConfig(method="random"),
                   cfg, tmp_path, reference_rates=rates, progress=False)
    realised = res.steps["admission_rate"].mean()
    se = np.sqrt(0.25 * 0.75 / (6 * 64))
    assert abs(realised - 0.25) < 4 * se


def test_run_method_returns_rows_per_checkpoint(setup, tmp_path):
    world, sids, ckpt, reward, batch = setup
    cfg = RLConfig(steps=2, batch_size=16, ckpt_every=1, eval_samples=20, test_samples=40, device="cpu")
    rows = run_method(world, sids, ckpt, reward, GRPOConfig(num_generations=2), GateConfig(method="adagrpo"),
                      cfg, tmp_path, progress=False)
    assert list(rows["checkpoint"]) == ["best", "final"]
    for col in ("HR@5", "HR@10", "HR@20", "NDCG@10", "halluc", "HR@10_constrained", "admission_rate"):
        assert rows[col].between(0, 1).all(), col
    assert (rows["HR@5"] <= rows["HR@10"]).all() and (rows["HR@10"] <= rows["HR@20"]).all()
    assert (tmp_path / "results.csv").exists()


def test_bad_input(setup, tmp_path):
    world, sids, ckpt, reward, batch = setup
    cfg = RLConfig(steps=2, batch_size=16, device="cpu")
    with pytest.raises(ValueError, match="reference_rates"):
        train_rl(world, sids, ckpt, reward, GRPOConfig(), GateConfig(method="random"), cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match="true_utility"):
        train_rl(world, sids, ckpt, reward, GRPOConfig(), GateConfig(method="oracle"), cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match="method"):
        GateConfig(method="sometimes")
    with pytest.raises(ValueError, match="tau"):
        GateConfig(tau=1.5)
    with pytest.raises(ValueError, match="rho"):
        GateConfig(rho=-0.1)
    with pytest.raises(ValueError, match="num_negatives"):
        GateConfig(num_negatives=-1)
    with pytest.raises(ValueError, match="num_generations"):
        GRPOConfig(num_generations=1)
    with pytest.raises(ValueError, match="batch_size"):
        RLConfig(batch_size=1)
    with pytest.raises(ValueError, match="output"):
        RewardConfig(output="rank")


def test_audit_is_logged_per_sample_and_survives_resume(setup, tmp_path):
    world, sids, ckpt, reward, batch = setup
    truth = lambda b, items: world.true_utility(world.states_for(b), items)   # noqa: E731
    grpo, gate = GRPOConfig(num_generations=4), GateConfig(method="adagrpo", tau=0.2, rho=0.3)
    cfg = RLConfig(steps=4, batch_size=16, ckpt_every=2, eval_samples=30, device="cpu")
    train_rl(world, sids, ckpt, reward, grpo, gate, cfg, tmp_path / "a", true_utility=truth, progress=False)
    train_rl(world, sids, ckpt, reward, grpo, gate, cfg, tmp_path / "b", true_utility=truth, progress=False,
             stop_after=2)
    train_rl(world, sids, ckpt, reward, grpo, gate, cfg, tmp_path / "b", true_utility=truth, progress=False)
    a, b = np.load(tmp_path / "a" / "audit.npz"), np.load(tmp_path / "b" / "audit.npz")
    assert set(a.files) == {"step", "d", "a", "gate", "agreement", "pairs", "reward_truth_corr", "target"}
    assert len(a["step"]) == 4 * 16 and list(np.unique(a["step"])) == [1, 2, 3, 4]
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    assert ((a["agreement"] >= 0) & (a["agreement"] <= 1)).all()
    steps = pd.read_csv(tmp_path / "a" / "steps.csv")
    np.testing.assert_allclose(steps["admission_rate"], [a["gate"][a["step"] == s].mean() for s in range(1, 5)])


@pytest.mark.parametrize("method,beta,temperature", [("adagrpo", 0.0, 1.0), ("random", 0.0, 1.3), ("mix", 0.1, 1.0)])
def test_gated_rollout_pass_gives_the_all_rows_loss_and_gradient(setup, method, beta, temperature):
    """Only admitted samples with a non-zero advantage get the differentiable rollout pass; the
    loss, the metrics and every parameter gradient equal those of the pass over every rollout."""
    world, sids, ckpt, _, batch = setup

    class SeededReward:   # varied rewards, so that most groups have a non-zero advantage
        def __init__(self):
            self.g = torch.Generator().manual_seed(5)

        def __call__(self, hist, tokens, batch=None):
            return torch.rand(tokens.shape[:2], generator=self.g)

        def score_items(self, hist, items, batch=None):
            return torch.rand(items.shape, generator=self.g)

    grpo = GRPOConfig(num_generations=4, lam=0.7, beta=beta, temperature=temperature)
    gate_cfg = GateConfig(method=method, tau=0.0, rho=0.5)
    out = {}
    for all_rows in (False, True):
        model = load_policy(ckpt, sids, "cpu").train()
        ref = load_policy(ckpt, sids, "cpu").eval() if beta > 0 else None
        gen = torch.Generator().manual_seed(3)
        scored = sample_and_score(model, SeededReward(), batch, torch.as_tensor(sids.codes), sids.trie, grpo,
                                  gate_cfg, gen, target_rate=0.5, all_rows=all_rows)
        loss, metrics = compute_loss(scored, grpo, gate_cfg, ref)
        loss.backward()
        out[all_rows] = (loss.item(), metrics, scored.gate, {n: p.grad.clone() for n, p in model.named_parameters()})
    (l0, m0, g0, grads0), (l1, m1, g1, grads1) = out[False], out[True]
    assert torch.equal(g0, g1)
    assert bool(g0.all()) if method == "mix" else 0 < int(g0.sum()) < len(g0)   # a partial gate
    assert l0 == pytest.approx(l1, rel=1e-5, abs=1e-6)
    for k in ("admission_rate", "reward", "mean_d", "grpo_loss"):
        assert m0[k] == pytest.approx(m1[k], rel=1e-5, abs=1e-6)
    for n in grads0:
        torch.testing.assert_close(grads0[n], grads1[n], rtol=1e-4, atol=1e-6, msg=n)
    assert any(float(g.abs().sum()) > 0 for g in grads0.values())
