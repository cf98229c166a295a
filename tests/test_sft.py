"""SFT training, checkpoints and resumption; policy evaluation and the most-popular baseline.

Everything runs on the tiny world with a one-layer, 16-wide policy and 6 optimiser steps, so the
whole module takes seconds on a laptop CPU.
"""
import copy
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from adagrpo_core.data.interactions import Interactions
from adagrpo_core.eval.evaluate import evaluate_policy, most_popular, ranked_items
from adagrpo_core.model.policy import PolicyConfig
from adagrpo_core.configs import SFTConfig
from adagrpo_core.model.policy import build_policy, load_policy
from adagrpo_core.train.sft import nll_loss, train_sft
from adagrpo_core.eval.evaluate import validation_subset

PCFG = PolicyConfig(n_layer=1, n_head=2, n_embd=16, max_history=5)


def scfg(**overrides) -> SFTConfig:
    base = dict(steps=6, ckpt_every=3, batch_size=32, eval_samples=50, eval_beam_width=10, warmup_steps=2,
                device="cpu")
    return SFTConfig(**{**base, **overrides})


def train(world, sids, out_dir, **kw):
    cfg = kw.pop("cfg", None) or scfg()
    return train_sft(world, sids, kw.pop("policy_cfg", PCFG), cfg, out_dir, progress=False, **kw)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"tensor {k} differs"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """These models are tiny: one intra-op thread is as fast as two on an idle machine and does not
    stall when other processes share the cores (OpenMP workers then wait on each other). Restored
    afterwards so that other test modules are unaffected."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def run_a(tiny_world, tiny_sids, tmp_path_factory):
    """The uninterrupted reference run: 6 steps, checkpoints at steps 3 and 6."""
    return train(tiny_world, tiny_sids, tmp_path_factory.mktemp("sft_a"))


@pytest.fixture(scope="module")
def test_examples(tiny_world):
    return tiny_world.examples("test", PCFG.max_history)


# ------------------------------------------------------------------ resumption
def test_resume_after_interruption_reproduces_uninterrupted_run(run_a, tiny_world, tiny_sids, test_examples,
                                                                tmp_path):
    out_b = tmp_path / "b"
    part = train(tiny_world, tiny_sids, out_b, stop_after=3)
    assert list(part.history["step"]) == [3]
    assert (out_b / "last.pt").exists() and not (out_b / "final.pt").exists()
    assert torch.load(out_b / "last.pt", map_location="cpu", weights_only=False)["step"] == 3

    b = train(tiny_world, tiny_sids, out_b, resume=True)           # finishes steps 4..6
    assert list(b.history["step"]) == [3, 6]
    assert_same_weights(run_a.model, b.model)
    pd.testing.assert_frame_equal(run_a.history, b.history, check_exact=True)
    assert (run_a.out_dir / "checkpoints.csv").read_text() == (out_b / "checkpoints.csv").read_text()
    for name in ("best.pt", "final.pt", "last.pt"):
        ca = torch.load(run_a.out_dir / name, map_location="cpu", weights_only=False)
        cb = torch.load(out_b / name, map_location="cpu", weights_only=False)
        assert ca["step"] == cb["step"] and ca["val_HR@10"] == cb["val_HR@10"]
        assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    ma = evaluate_policy(run_a.model, tiny_sids, test_examples, beam_width=20)
    mb = evaluate_policy(b.model, tiny_sids, test_examples, beam_width=20)
    assert ma == mb


def test_resuming_a_finished_run_changes_nothing(run_a, tiny_world, tiny_sids, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run_a.out_dir, out)
    again = train(tiny_world, tiny_sids, out)
    assert_same_weights(run_a.model, again.model)
    pd.testing.assert_frame_equal(run_a.history, again.history, check_exact=True)
    assert (out / "checkpoints.csv").read_text() == (run_a.out_dir / "checkpoints.csv").read_text()


def test_resume_with_other_config_raises(run_a, tiny_world, tiny_sids, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(run_a.out_dir, out)
    before = (out / "last.pt").read_bytes()
    with pytest.raises(ValueError, match="other configs"):
        train(tiny_world, tiny_sids, out, cfg=scfg(lr=1e-3))
    with pytest.raises(ValueError, match="other configs"):
        train(tiny_world, tiny_sids, out, policy_cfg=PolicyConfig(n_layer=1, n_head=2, n_embd=16, max_history=4))
    assert (out / "last.pt").read_bytes() == before                 # nothing was overwritten


@pytest.mark.parametrize("field, value", [("steps", 0), ("lr", -1), ("lr", 0.0), ("batch_size", 0),
                                          ("ckpt_every", 0), ("eval_beam_width", 5), ("min_lr_ratio", 1.5)])
def test_bad_sft_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        SFTConfig(**{field: value})


# ------------------------------------------------------------------ checkpoints
def test_checkpoint_files_and_best_checkpoint_matches_log(run_a, tiny_world, tiny_sids):
    out = run_a.out_dir
    for name in ("best.pt", "final.pt", "last.pt", "checkpoints.csv"):
        assert (out / name).exists(), name
    assert run_a.best_path == out / "best.pt" and run_a.final_path == out / "final.pt"
    log = pd.read_csv(out / "checkpoints.csv")
    assert list(log["step"]) == [3, 6]
    assert list(log.columns) == ["step", "train_loss", "val_HR@10", "val_NDCG@10", "lr"]
    np.testing.assert_allclose(log["val_HR@10"], run_a.history["val_HR@10"])
    assert ((log["val_HR@10"] >= 0) & (log["val_HR@10"] <= 1)).all()
    assert np.isfinite(log["train_loss"]).all()

    best_hr = run_a.history["val_HR@10"].max()
    best_step = int(run_a.history["step"][run_a.history["val_HR@10"].idxmax()])   # first maximum
    ck = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    assert ck["step"] == best_step and ck["val_HR@10"] == best_hr
    model = load_policy(out / "best.pt", tiny_sids, device="cpu")
    assert not model.training
    val = validation_subset(tiny_world, PCFG.max_history, 50, 0)
    assert len(val) == 50
    m = evaluate_policy(model, tiny_sids, val, beam_width=10, ks=(10,), modes=("constrained",))
    assert m["HR@10"] == best_hr

    final = load_policy(out / "final.pt", tiny_sids, device="cpu")
    assert_same_weights(final, run_a.model)
    last = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    assert last["step"] == 6 and last["ckpts"] == run_a.history.to_dict("records")


# ------------------------------------------------------------------ determinism and learning
def test_same_seed_same_weights_other_seed_differs(run_a, tiny_world, tiny_sids, tmp_path):
    again = train(tiny_world, tiny_sids, tmp_path / "same")
    assert_same_weights(run_a.model, again.model)
    pd.testing.assert_frame_equal(run_a.history, again.history, check_exact=True)
    other = train(tiny_world, tiny_sids, tmp_path / "other", cfg=scfg(seed=1))
    sa, so = run_a.model.state_dict(), other.model.state_dict()
    assert not all(torch.equal(sa[k], so[k]) for k in sa)


def test_training_changes_every_parameter(run_a, tiny_sids):
    torch.manual_seed(0)                      # the initial weights of a seed-0 run
    init = build_policy(tiny_sids, PCFG, "cpu")
    for (name, p0), p1 in zip(init.named_parameters(), run_a.model.parameters()):
        assert p0.shape == p1.shape
        assert not torch.equal(p0, p1), f"{name} did not change"


def test_loss_decreases_on_a_fixed_batch(run_a, tiny_world, tiny_sids):
    windows = torch.as_tensor(tiny_world.train_windows(PCFG.max_history + 1))[:64]
    # untrained: near-uniform predictions, loss close to log V
    torch.manual_seed(0)
    fresh = build_policy(tiny_sids, PCFG, "cpu")
    with torch.no_grad():
        assert abs(nll_loss(fresh, windows).item() - math.log(fresh.V)) < 0.1
    # a few more steps from the SFT weights on one fixed batch: the loss goes down
    model = copy.deepcopy(run_a.model).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = nll_loss(model, windows)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.05, losses
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= len(losses) - 2, losses


# ------------------------------------------------------------------ evaluation
def test_evaluate_policy_keys_ranges_and_monotone_hr(run_a, tiny_sids, test_examples):
    m = evaluate_policy(run_a.model, tiny_sids, test_examples, beam_width=20)
    expected = {f"{name}@{k}" for name in ("HR", "NDCG") for k in (5, 10, 20)} | {"halluc"}
    assert set(m) == expected | {k + "_unc" for k in expected} | {"n"}
    assert m["n"] == len(test_examples)
    for key in expected | {k + "_unc" for k in expected}:
        assert 0.0 <= m[key] <= 1.0, (key, m[key])
    for suffix in ("", "_unc"):
        assert m[f"HR@5{suffix}"] <= m[f"HR@10{suffix}"] <= m[f"HR@20{suffix}"]
        assert m[f"NDCG@5{suffix}"] <= m[f"NDCG@10{suffix}"] <= m[f"NDCG@20{suffix}"]
        for k in (5, 10, 20):
            assert m[f"NDCG@{k}{suffix}"] <= m[f"HR@{k}{suffix}"]
    assert m["halluc"] == 0.0                                    # constrained beams are always items
    # HR@10 recomputed by hand from the ranked lists
    ranked = ranked_items(run_a.model, tiny_sids, test_examples, beam_width=20, num_return=20)
    assert ranked.shape == (len(test_examples), 20) and (ranked >= 0).all()
    hand = np.mean([t in r[:10] for r, t in zip(ranked, test_examples.target)])
    assert m["HR@10"] == pytest.approx(hand, abs=1e-12)
    assert run_a.model.training is False                         # evaluation leaves the mode alone


def test_evaluate_policy_beam_narrower_than_k_raises(run_a, tiny_sids, test_examples):
    with pytest.raises(ValueError, match="beam_width"):
        evaluate_policy(run_a.model, tiny_sids, test_examples, beam_width=10, ks=(5, 10, 20))


def test_most_popular_matches_hand_computed_hr():
    # train parts (all but the last two clicks): [0, 1, 2], [1, 1], [2]
    # -> counts item0=1, item1=3, item2=2, items 3, 4 = 0 -> ranking 1, 2, 0, 3, 4
    seqs = [[0, 1, 2, 3, 4], [1, 1, 2, 0], [2, 1, 0]]
    data = Interactions(seq_items=np.concatenate(seqs), seq_offsets=np.r_[0, np.cumsum([len(s) for s in seqs])],
                        n_items=5)
    assert data.train_item_counts().tolist() == [1, 3, 2, 0, 0]
    val = data.examples("valid", 3)     # targets 3, 2, 1 -> ranks 3, 1, 0
    m = most_popular(data, val, ks=(1, 2, 3))
    assert val.target.tolist() == [3, 2, 1]
    assert m["HR@1"] == pytest.approx(1 / 3) and m["HR@2"] == pytest.approx(2 / 3)
    assert m["HR@3"] == pytest.approx(2 / 3)
    assert m["NDCG@2"] == pytest.approx((1.0 + 1 / math.log2(3)) / 3)
    assert m["halluc"] == 0.0 and m["n"] == 3
    test = data.examples("test", 3)     # targets 4, 0, 0 -> ranks 4, 2, 2
    m = most_popular(data, test, ks=(1, 2, 3, 5))
    assert m["HR@1"] == 0.0 and m["HR@2"] == 0.0
    assert m["HR@3"] == pytest.approx(2 / 3) and m["HR@5"] == pytest.approx(1.0)
    assert m["NDCG@3"] == pytest.approx(2 / 3 * 0.5)
