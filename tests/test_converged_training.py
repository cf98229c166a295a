"""The real-data training rules: SFT early stopping on validation, the RL stage's lr schedule, the
SFT base competing for the best RL checkpoint, and the cache keys of the simulated profiles
(unchanged by the fields these rules added).

Tiny world, a one-layer 16-wide policy, a handful of steps: seconds on one CPU thread.
"""
import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from adagrpo_core.suite import plots
from adagrpo_core.configs import RLConfig, SFTConfig, get_profile
from adagrpo_core.model.policy import PolicyConfig
from adagrpo_core.pipeline import data_key
from adagrpo_core.reward.ranker import Ranker, RankerConfig
from adagrpo_core.reward.reward_model import RewardConfig, RewardModel
from adagrpo_core.rl.gate import GateConfig
from adagrpo_core.rl.grpo import GRPOConfig
from adagrpo_core.runs import run_key
from adagrpo_core.common.storage import config_hash, key_dict, load_checkpoint
from adagrpo_core.train.loop import lr_multiplier, since_best
from adagrpo_core.train.rl import run_method, start_validation_path, train_rl
from adagrpo_core.train.sft import lr_lambda, train_sft

PCFG = PolicyConfig(n_layer=1, n_head=2, n_embd=16, max_history=5)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sft(world, sids, out, **kw):
    base = dict(steps=6, ckpt_every=3, batch_size=32, eval_samples=50, eval_beam_width=10, warmup_steps=2,
                device="cpu")
    return train_sft(world, sids, PCFG, SFTConfig(**{**base, **kw}), out, progress=False)


# ---------------------------------------------------------------- cache keys
def test_simulated_profiles_keep_their_cache_keys():
    # pinned before patience / select_metric (SFT) and the RL schedule / base_competes existed:
    # at their defaults these fields leave every key, hence every cached run and table, as it was
    keys = {"quick": ("0b7721284cf8", "4cee06ce3e2c", "0acf21970cc7"),   # RL: one checkpoint, 1,000 test users
            "paper": ("0b7721284cf8", "b643ccc60b09", "0acf21970cc7"),
            "full": ("0b77d3743f03", "492d66a494f4", "df92162351ca"),
            "tiny": ("d9dbcea33d34", "41ae57fb391f", "64e0a012116c")}
    for name, (sft_key, rl_key, sft_dir_key) in keys.items():
        p = get_profile(name)
        assert config_hash(p.sft) == sft_key, name
        assert config_hash(p.rl) == rl_key, name
        assert config_hash(data_key(p.world), p.sid, p.policy, p.sft) == sft_dir_key, name
        assert not p.rl.scheduled and not p.rl.base_competes and p.sft.patience == 0
    p = get_profile("quick")
    assert run_key(p, p.grpo, replace(p.gate, method="nll"), p.rl, None) == "b6b79f0bfbe9"
    assert run_key(p, p.grpo, replace(p.gate, method="adagrpo"), p.rl, None) == "a6e7ff22d980"
    old_rl = RLConfig(steps=50, ckpt_every=25, eval_samples=500)    # the quick RL config of those pins
    assert config_hash(old_rl) == "3d3def43bdab"
    assert run_key(p, p.grpo, replace(p.gate, method="nll"), old_rl, None) == "a85c3de07293"
    assert run_key(p, p.grpo, replace(p.gate, method="adagrpo"), old_rl, None) == "0afc54f18755"


def test_key_neutral_fields_enter_the_key_when_set():
    cfg = SFTConfig()
    assert "patience" not in key_dict(cfg) and "select_metric" not in key_dict(cfg)
    assert config_hash(replace(cfg, patience=3)) != config_hash(cfg)
    assert config_hash(replace(cfg, select_metric="NDCG@10")) != config_hash(cfg)
    rl = RLConfig()
    for changed in (replace(rl, warmup_steps=5), replace(rl, min_lr_ratio=0.1), replace(rl, base_competes=True)):
        assert config_hash(changed) != config_hash(rl)


def test_amazon_profile_uses_the_real_data_rules():
    p = get_profile("amazon")
    assert p.sft.patience > 0 and p.sft.eval_samples == 0          # early stopping on every validation user
    assert p.rl.base_competes and p.rl.scheduled and p.rl.steps >= 200
    assert p.rl.lr < p.sft.lr * p.sft.min_lr_ratio                  # below the SFT schedule's floor
    short = p.with_rl_steps(20)
    assert short.rl.warmup_steps <= 2 and short.rl.steps == 20


def test_config_validation():
    with pytest.raises(ValueError, match="patience"):
        SFTConfig(patience=-1)
    with pytest.raises(ValueError, match="select_metric"):
        SFTConfig(select_metric="MRR@10")
    with pytest.raises(ValueError, match="warmup_steps"):
        RLConfig(steps=10, warmup_steps=11)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        RLConfig(min_lr_ratio=1.5)
    with pytest.raises(ValueError, match="base_competes"):
        RLConfig(base_competes=1)


# ---------------------------------------------------------------- SFT early stopping
def test_since_best_counts_validations_after_the_first_maximum():
    ck = lambda *v: [{"val_HR@10": x, "val_NDCG@10": x / 2} for x in v]   # noqa: E731
    assert since_best([]) == 0
    assert since_best(ck(0.1, 0.2, 0.3)) == 0
    assert since_best(ck(0.1, 0.3, 0.3, 0.2)) == 2                       # a tie is no improvement
    assert since_best(ck(0.3, 0.1), "NDCG@10") == 1


def test_sft_stops_when_patience_is_exhausted_and_keeps_the_best(tiny_world, tiny_sids, tmp_path):
    # an lr too small to move the beams: every validation ties the first, so patience 1 stops at
    # the second validation; best.pt is the first, final.pt the one where it stopped
    res = sft(tiny_world, tiny_sids, tmp_path, steps=30, lr=1e-12, warmup_steps=0, patience=1)
    assert list(res.history["step"]) == [3, 6]
    assert res.history["val_HR@10"].nunique() == 1
    assert load_checkpoint(res.best_path)["step"] == 3 and load_checkpoint(res.final_path)["step"] == 6
    assert len(pd.read_csv(tmp_path / "steps.csv")) == 6
    again = sft(tiny_world, tiny_sids, tmp_path, steps=30, lr=1e-12, warmup_steps=0, patience=1)   # resumes: done
    pd.testing.assert_frame_equal(res.history, again.history, check_exact=True)
    assert len(pd.read_csv(tmp_path / "steps.csv")) == 6


def test_unused_patience_changes_nothing_and_select_metric_picks_best(tiny_world, tiny_sids, tmp_path):
    a = sft(tiny_world, tiny_sids, tmp_path / "a", steps=9)
    b = sft(tiny_world, tiny_sids, tmp_path / "b", steps=9, patience=5, select_metric="NDCG@10")
    cols = ["step", "train_loss", "val_HR@10", "val_NDCG@10", "lr"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols], check_exact=True)
    best = b.history.loc[b.history["val_NDCG@10"].idxmax()]
    ck = load_checkpoint(b.best_path)
    assert ck["step"] == best["step"] and ck["val_NDCG@10"] == best["val_NDCG@10"]


def test_plain_progress_lines_and_the_curve_figure(tiny_world, tiny_sids, tmp_path, capsys):
    res = train_sft(tiny_world, tiny_sids, PCFG, SFTConfig(steps=4, ckpt_every=2, batch_size=32, eval_samples=30,
                                                           warmup_steps=1, device="cpu"), tmp_path, progress=True)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("SFT: step")]
    assert len(lines) == 2 and "step 4/4" in lines[1] and "val HR@10" in lines[1]
    assert "it/s" not in err                                           # no tqdm bar in a log file
    fig = plots.sft_validation_curve(res.history, 30)
    plots.save_figure(fig, tmp_path / "fig", "curve")
    assert (tmp_path / "fig" / "curve.png").stat().st_size > 0


# ---------------------------------------------------------------- RL schedule and the base
def test_lr_schedule_warms_up_then_decays():
    f = lr_multiplier(warmup_steps=4, steps=20, min_lr_ratio=0.1)
    assert f(0) == pytest.approx(0.25) and f(3) == pytest.approx(1.0) and f(4) == pytest.approx(1.0)
    after = [f(s) for s in range(4, 21)]
    assert all(x >= y for x, y in zip(after, after[1:]))
    assert f(20) == pytest.approx(0.1) and f(12) == pytest.approx(0.1 + 0.9 * 0.5)   # halfway: the mean
    assert [lr_multiplier(0, 20, 1.0)(s) for s in range(21)] == [1.0] * 21          # the constant default
    sft_f = lr_lambda(SFTConfig(steps=20, warmup_steps=4, min_lr_ratio=0.1))
    assert [sft_f(s) for s in range(21)] == [f(s) for s in range(21)]


@pytest.fixture(scope="module")
def base(tiny_world, tiny_sids, tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    sft(tiny_world, tiny_sids, out, steps=30, ckpt_every=30, lr=3e-3)
    torch.manual_seed(0)
    ranker = Ranker(RankerConfig(device="cpu"), tiny_world.item_features, tiny_world.item_category).eval()
    return out / "final.pt", RewardModel(ranker, tiny_sids, RewardConfig(output="prob"))


def test_rl_lr_at_the_first_and_last_step(tiny_world, tiny_sids, base, tmp_path):
    ckpt, reward = base
    cfg = RLConfig(steps=10, batch_size=16, ckpt_every=5, eval_samples=20, lr=1e-3, warmup_steps=2,
                   min_lr_ratio=0.1, base_competes=True, device="cpu")
    res = train_rl(tiny_world, tiny_sids, ckpt, reward, GRPOConfig(num_generations=2), GateConfig(method="nll"),
                   cfg, tmp_path, progress=False)
    lr = dict(zip(res.checkpoints["step"], res.checkpoints["lr"]))
    assert lr[0] == pytest.approx(1e-3 / 2)                  # the lr of step 1: warm-up from lr / warmup_steps
    assert lr[5] == pytest.approx(1e-3 * lr_multiplier(2, 10, 0.1)(5))
    assert lr[10] == pytest.approx(1e-4)                     # decayed to min_lr_ratio * lr
    plain = train_rl(tiny_world, tiny_sids, ckpt, reward, GRPOConfig(num_generations=2), GateConfig(method="nll"),
                     RLConfig(steps=4, batch_size=16, ckpt_every=2, eval_samples=20, lr=1e-3, device="cpu"),
                     tmp_path / "plain", progress=False)
    assert "lr" not in plain.checkpoints and list(plain.checkpoints["step"]) == [2, 4]   # as before: no step 0


def test_base_competes_and_wins_when_every_rl_checkpoint_is_worse(tiny_world, tiny_sids, base, tmp_path):
    ckpt, reward = base
    # an lr that wrecks the policy: every RL checkpoint validates below the SFT start
    cfg = RLConfig(steps=4, batch_size=16, ckpt_every=2, eval_samples=50, test_samples=60, lr=5.0,
                   base_competes=True, device="cpu")
    rows = run_method(tiny_world, tiny_sids, ckpt, reward, GRPOConfig(num_generations=2), GateConfig(method="nll"),
                      cfg, tmp_path, progress=False)
    curve = pd.read_csv(tmp_path / "checkpoints.csv")
    assert list(curve["step"]) == [0, 2, 4]
    assert math.isnan(curve["train_loss"][0])
    assert (curve["val_HR@10"][1:] < curve["val_HR@10"][0]).all()
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 0
    best = rows.set_index("checkpoint").loc["best"]
    assert best["step"] == 0 and best["val_HR@10"] == curve["val_HR@10"][0]
    # the base's weights are the SFT checkpoint's
    sd_best, sd_sft = load_checkpoint(tmp_path / "best.pt")["model"], load_checkpoint(ckpt)["model"]
    assert all(torch.equal(sd_best[k], sd_sft[k]) for k in sd_sft)
    # without base_competes the best is an RL checkpoint
    off = run_method(tiny_world, tiny_sids, ckpt, reward, GRPOConfig(num_generations=2), GateConfig(method="nll"),
                     replace(cfg, base_competes=False), tmp_path / "off", progress=False)
    assert off.set_index("checkpoint").loc["best", "step"] > 0
    assert np.isfinite(rows["HR@10"]).all()


def test_the_start_is_validated_once_and_shared_by_every_run_from_it(tiny_world, tiny_sids, base, tmp_path):
    ckpt, reward = base
    cfg = RLConfig(steps=2, batch_size=16, ckpt_every=2, eval_samples=30, lr=1e-3, base_competes=True, device="cpu")
    path = start_validation_path(ckpt, cfg)
    assert path.parent == ckpt.parent and path != start_validation_path(ckpt, replace(cfg, eval_samples=40))
    assert path != start_validation_path(ckpt, replace(cfg, seed=1))          # a subsample is the seed's draw
    assert start_validation_path(ckpt, replace(cfg, eval_samples=0)) == \
        start_validation_path(ckpt, replace(cfg, eval_samples=0, seed=1))     # all users: one file
    assert start_validation_path(ckpt, replace(cfg, base_competes=False)) is None
    path.unlink(missing_ok=True)

    def run(out, gate="nll"):
        train_rl(tiny_world, tiny_sids, ckpt, reward, GRPOConfig(num_generations=2), GateConfig(method=gate),
                 cfg, out, progress=False)
        return pd.read_csv(out / "checkpoints.csv").set_index("step").loc[0, "val_HR@10"]

    first = run(tmp_path / "a")
    assert json.loads(path.read_text())["HR@10"] == first                 # written, and exact
    path.write_text(json.dumps({**json.loads(path.read_text()), "HR@10": 0.987654}))
    assert run(tmp_path / "b", "mix") == 0.987654                          # read, not recomputed
    path.unlink()
    assert run(tmp_path / "c", "mix") == first                             # recomputed: the same value


def test_sft_script_dropout_and_lr_flags_reach_the_run_and_its_file_names(tmp_path):
    """scripts/sft_amazon.py --dropout/--lr: the trained checkpoint carries the dropout, the curve
    its peak lr, and the tables are named after both (so a grid never overwrites its rows)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "sft_amazon.py"
    spec = importlib.util.spec_from_file_location("sft_amazon", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "fig"
    assert script.main(["--profile", "tiny", "--steps", "10", "--dropout", "0.1", "--lr", "1e-3",
                        "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]) == 0
    test = pd.read_csv(out / "sft_test_tiny_dropout0.1_lr0.001.csv")
    assert list(test.checkpoint) == ["best", "final"] and (test.max_steps == 10).all()
    curve = pd.read_csv(out / "sft_curve_tiny_dropout0.1_lr0.001.csv")
    assert curve.lr.max() <= 1e-3 + 1e-12 and curve.step.max() == 10
    ck = torch.load(next((tmp_path / "cache" / "sft").glob("*/final.pt")), weights_only=False)
    assert ck["policy_cfg"]["dropout"] == 0.1
