"""Bad inputs, each met by a clear error that names the field, parameter or file, before any
expensive work: configs, the CLI, notebook parameters, dataset files, damaged cache and checkpoint
files, reproduce.sh's arguments; plus the fixes they came with (no hang on a one-item catalogue,
a ranker without categories, Markdown tables with integer counts and readable p-values).

Everything runs on tiny data in a few seconds."""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adagrpo_core import cli
from adagrpo_core.configs import (AmazonConfig, GateConfig, GRPOConfig, PolicyConfig, RankerConfig, RewardConfig,
                                  RLConfig, SFTConfig, SIDConfig, WorldConfig)
from adagrpo_core.eval.strata import StrataConfig
from adagrpo_core.suite.notebook import check_notebook_params
from adagrpo_core.data.amazon import draw_excluding, parse_sequences, semi_synthetic_impressions
from adagrpo_core.model.datasets import attribute_features, letter_semantic_ids, load_sequences_dataset
from adagrpo_core.data.interactions import Interactions
from adagrpo_core.data.world import build_world
from adagrpo_core.model.policy import build_policy, load_policy
from adagrpo_core.model.semantic_ids import sids_hash
from adagrpo_core.pipeline import get_ranker, get_sft, get_world
from adagrpo_core.reward.ranker import Ranker
from adagrpo_core.reward.reward_model import RewardModel
from adagrpo_core.reward.training import train_ranker
from adagrpo_core.train.rl import train_rl
from adagrpo_core.train.sft import train_sft
from adagrpo_core.common.checks import check_range
from adagrpo_core.common.storage import DamagedFileError, atomic_torch_save
from adagrpo_core.suite.tables import save_table

ROOT = Path(__file__).resolve().parents[1]
PCFG = PolicyConfig(n_layer=1, n_head=2, n_embd=16, max_history=5)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (TimeoutError) instead of hanging when the block runs longer than ``seconds``."""
    def boom(*_):
        raise TimeoutError(f"still running after {seconds} s: a loop that waits on luck?")
    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def write(tmp_path, name, data):
    p = tmp_path / name
    (p.write_bytes if isinstance(data, bytes) else p.write_text)(data)
    return p


# ---------------------------------------------------------------------------------------- configs
CONFIG_CASES = [
    (WorldConfig, dict(exposure_bias="0.3"), "exposure_bias"),
    (WorldConfig, dict(exposure_bias=True), "exposure_bias"),
    (WorldConfig, dict(utility_offset="-3"), "utility_offset"),
    (WorldConfig, dict(n_items=1), "n_items"),
    (WorldConfig, dict(n_items=20, n_categories=5, slate_size=30), "slate_size"),
    (WorldConfig, dict(taste_drift=1.0), "taste_drift"),
    (WorldConfig, dict(min_clicks=2), "min_clicks"),
    (WorldConfig, dict(logging_temperature=0.0), "logging_temperature"),
    (WorldConfig, dict(popularity_quality_corr=1.5), "popularity_quality_corr"),
    (WorldConfig, dict(n_users=0), "n_users"),
    (SIDConfig, dict(codebook_size=1), "codebook_size"),
    (SIDConfig, dict(num_levels=0), "num_levels"),
    (SIDConfig, dict(standardize="no"), "standardize"),
    (PolicyConfig, dict(n_embd=30, n_head=4), "n_embd"),
    (PolicyConfig, dict(dropout=1.0), "dropout"),
    (PolicyConfig, dict(max_history=0), "max_history"),
    (SFTConfig, dict(steps=50, warmup_steps=100), "warmup_steps"),
    (SFTConfig, dict(min_lr_ratio=2.0), "min_lr_ratio"),
    (SFTConfig, dict(lr=0.0), "lr"),
    (SFTConfig, dict(seed=-1), "seed"),
    (RLConfig, dict(device="gpu"), "device"),
    (RLConfig, dict(batch_size=1), "batch_size"),
    (RLConfig, dict(eval_beam_width=10), "eval_beam_width"),
    (RLConfig, dict(test_samples=-1), "test_samples"),
    (RLConfig, dict(steps=0), "steps"),
    (RankerConfig, dict(mlp_hidden=(0,)), "mlp_hidden"),
    (RankerConfig, dict(dropout=1.0), "dropout"),
    (RankerConfig, dict(lr="0.01"), "lr"),
    (RankerConfig, dict(device="tpu:x"), "device"),
    (RewardConfig, dict(output="rank"), "output"),
    (RewardConfig, dict(invalid_reward=float("nan")), "invalid_reward"),
    (GateConfig, dict(method="sometimes"), "method"),
    (GateConfig, dict(tau=1.5), "tau"),
    (GateConfig, dict(random_rate_mode="often"), "random_rate_mode"),
    (GateConfig, dict(oracle_threshold=-0.1), "oracle_threshold"),
    (GRPOConfig, dict(num_generations=1), "num_generations"),
    (GRPOConfig, dict(epsilon=1.0), "epsilon"),
    (GRPOConfig, dict(scale_rewards="none?"), "scale_rewards"),
    (GRPOConfig, dict(lam=-1.0), "lam"),
    (StrataConfig, dict(top_n=20, k=30), "k"),
    (StrataConfig, dict(n_boot=5), "n_boot"),
    (StrataConfig, dict(alpha=1.0), "alpha"),
    (AmazonConfig, dict(dataset="books"), "dataset"),
    (AmazonConfig, dict(num_negatives=0), "num_negatives"),
    (AmazonConfig, dict(semantic_ids="bert"), "semantic_ids"),
    (AmazonConfig, dict(exposure_strength=-1.0), "exposure_strength"),
]


@pytest.mark.parametrize("cls, kwargs, field", CONFIG_CASES,
                         ids=[f"{c.__name__}-{f}-{i}" for i, (c, _, f) in enumerate(CONFIG_CASES)])
def test_bad_config_names_the_field(cls, kwargs, field):
    with pytest.raises(ValueError, match=re.escape(f"{field}=")):
        cls(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="'cuda' is valid on a CUDA machine")
@pytest.mark.parametrize("cls", [RLConfig, SFTConfig, RankerConfig])
def test_cuda_device_without_cuda_is_rejected(cls):
    with pytest.raises(ValueError, match=r"device='cuda'.*CUDA is not available"):
        cls(device="cuda")


@pytest.mark.parametrize("value", ["0.3", True, np.bool_(True), None, [0.3], "nan"])
def test_check_range_rejects_non_numbers(value):
    with pytest.raises(ValueError, match=r"alpha must be a number, got alpha="):
        check_range("alpha", value, 0, 1)


@pytest.mark.parametrize("value", [0.3, 1, np.float32(0.3), np.float64(0.3), np.int64(1)])
def test_check_range_accepts_numpy_numbers(value):
    check_range("alpha", value, 0, 1)


def test_world_that_keeps_no_users_says_why():
    with pytest.raises(ValueError, match=r"keeps no users: all 300 users had fewer than min_clicks=5"):
        build_world(WorldConfig.tiny(utility_offset=-30))


# ------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("argv, names", [
    (["frobnicate"], "frobnicate"),
    (["main-results", "--profile", "foo"], "foo"),
    (["--profile", "foo", "reproduce"], "foo"),
    (["main-results", "--seeds", "-1"], "--seeds"),
    (["main-results", "--seeds", "0", "0"], "--seeds"),
    (["main-results", "--seeds", "x"], "--seeds"),
    (["--threads", "0", "reproduce"], "--threads"),
    (["reproduce", "--threads", "-2"], "--threads"),
    (["main-results", "--steps", "0"], "--steps"),
    (["main-results", "--batch", "0"], "--batch"),
    (["stratified", "--top-n", "5", "--k", "10"], "k="),
    (["stratified", "--split", "train"], "--split"),
])
def test_cli_rejects_bad_arguments_in_one_line(argv, names, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ADAGRPO_CACHE", str(tmp_path / "cache"))
    with deadline(30), pytest.raises(SystemExit) as info:
        cli.main(argv + ["--out", str(tmp_path / "out")] if argv[0] != "frobnicate" else argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert names in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()   # no work was done


# ---------------------------------------------------------------------------- notebook parameters
NOTEBOOK_CASES = [
    (dict(profile="foo"), "profile"),
    (dict(seeds=[]), "seeds"),
    (dict(seeds=3), "seeds"),
    (dict(seeds=[0, 0]), "seeds"),
    (dict(seeds=[-1, 2]), "seeds"),
    (dict(seeds=[0, 1.5]), "seeds"),
    (dict(seeds=[True]), "seeds"),
    (dict(steps=-1), "steps"),
    (dict(steps=2.5), "steps"),
    (dict(threads=-1), "threads"),
    (dict(threads="2"), "threads"),
    (dict(hr_k=15), "hr_k"),
    (dict(hr_k="10"), "hr_k"),
    (dict(lams=[0.5, -0.1]), "lams"),
    (dict(lams=["a"]), "lams"),
    (dict(lams=[]), "lams"),
    (dict(lams=[float("inf")]), "lams"),
    (dict(oracle_thresholds=[0.5, 1.5]), "oracle_thresholds"),
    (dict(oracle_thresholds=0.5), "oracle_thresholds"),
    (dict(run_dir="/no/such/run/folder"), "run_dir"),
    (dict(run_dir=""), "run_dir"),
    (dict(out_dir=3), "out_dir"),
    (dict(checkpoint="last"), "checkpoint"),
    (dict(split="train"), "split"),
]


@pytest.mark.parametrize("params, name", NOTEBOOK_CASES,
                         ids=[f"{n}-{i}" for i, (_, n) in enumerate(NOTEBOOK_CASES)])
def test_bad_notebook_parameter_names_it(params, name):
    with pytest.raises(ValueError, match=re.escape(f"{name}={params[name]!r}")):
        check_notebook_params(**params)


def test_good_notebook_parameters_pass(tmp_path):
    check_notebook_params(profile="quick", seeds=[0, 1, 2], steps=0, threads=0, hr_k=10, lams=[0.1, 2],
                          oracle_thresholds=[0.0, 0.5, 1.0], run_dir=str(tmp_path), out_dir=None, cache_dir=None,
                          runs_dir=None, checkpoint="final", split="valid", difficulty_bins=4)
    check_notebook_params(seeds=(np.int64(3),), run_dir=None, profile="amazon")
    with pytest.raises(ValueError, match="profile='amazon'"):
        check_notebook_params(profile="amazon", allowed_profiles=("quick", "full", "tiny"))


# ---------------------------------------------------------------------------------- dataset files
@pytest.mark.parametrize("name, data, match", [
    ("bad.txt", "1 2 3 4\n2 7 x 9\n", r"bad\.txt line 2: id 'x' is not an integer"),
    ("bad.txt", "1 2 3 4\n2 7 \u00b2 9\n", r"bad\.txt line 2: id '\u00b2' is not an integer"),
    ("bad.txt", "1 2 3 4\n\n", r"bad\.txt line 2: empty line"),
    ("bad.txt", "1 2 -3 4\n", r"bad\.txt line 1: item id -3 is out of range"),
    ("short.txt", "1 2 3 4\n2 1 2\n", r"short\.txt line 2: user 2 has 2 interactions"),
    ("empty.txt", "", r"empty\.txt: no usable user lines"),
    ("gz.txt", gzip.compress(b"1 2 3 4\n2 3 4 5\n", mtime=0), r"gz\.txt: not UTF-8 text \(it is gzip-compressed"),
    ("latin1.txt", "1 2 3 4\n2 3 4 5 caf\u00e9\n".encode("latin-1"), r"latin1\.txt: not UTF-8 text"),
])
def test_bad_sequences_file_names_the_file(tmp_path, name, data, match):
    with pytest.raises(ValueError, match=match):
        parse_sequences(write(tmp_path, name, data))


@pytest.mark.parametrize("data, match", [
    ('"x"', r"attrs\.json: expected a JSON object"),
    ("[1, 2]", r"attrs\.json: expected a JSON object"),
    ('{"1": [1, 2', r"attrs\.json: not valid JSON"),
    ("", r"attrs\.json: not valid JSON"),
    ('{"-1": [1]}', r"attrs\.json: item id '-1' is out of range"),
    ('{"0": [1]}', r"attrs\.json: item id '0' is out of range"),
    ('{"1": [-1]}', r"attrs\.json: item 1: attributes must be a list of non-negative integer ids, got \[-1\]"),
    ('{"1": 5}', r"attrs\.json: item 1: attributes must be a list"),
    ('{"1": [1.5]}', r"attrs\.json: item 1: attributes must be a list"),
    ('{"a": [1]}', r"attrs\.json: item key 'a' is not an integer"),
    (gzip.compress(b'{"1": [1]}', mtime=0), r"attrs\.json: not UTF-8 text \(it is gzip-compressed"),
    ('{"1": ["caf\u00e9"]}'.encode("latin-1"), r"attrs\.json: not UTF-8 text"),
])
def test_bad_attributes_file_names_the_file(tmp_path, data, match):
    p = write(tmp_path, "attrs.json", data)
    with pytest.raises(ValueError, match=match):
        attribute_features(p, n_items=3, dim=4, n_categories=2)


def test_negative_attribute_id_never_wraps_around(tmp_path):
    """A negative attribute id is an error, not a silent index of the last column (numpy wrap-around)."""
    seq = write(tmp_path, "s.txt", "1 1 2 3\n2 2 3 1\n")
    attrs = write(tmp_path, "a.json", json.dumps({"1": [0, 1], "2": [2, -1], "3": [1]}))
    with pytest.raises(ValueError, match=r"a\.json: item 2: .* got \[2, -1\]"):
        load_sequences_dataset(seq, attrs, feature_dim=4, n_categories=2)


@pytest.mark.parametrize("data, match", [
    ('"x"', r"ids\.json: expected a JSON object"),
    ('{"0": ["<a_1>"', r"ids\.json: not valid JSON"),
    ('{"0": 7}', r"ids\.json: item 0: expected a list of tokens"),
    ('{"0": [7]}', r"ids\.json: item 0: token 7 is not of the form"),
    ('{"zero": ["<a_1>"]}', r"ids\.json: item keys must be integers, got e\.g\. 'zero'"),
])
def test_bad_semantic_id_file_names_the_file(tmp_path, data, match):
    with pytest.raises(ValueError, match=match):
        letter_semantic_ids(write(tmp_path, "ids.json", data))


def test_one_item_catalogue_fails_fast_instead_of_hanging(tmp_path):
    """The reported hang: every negative redraw equals the only item; now a clear error at once."""
    one = write(tmp_path, "one.txt", "1 1 1 1\n2 1 1 1\n")
    code = f"from adagrpo_core.model.datasets import load_sequences_dataset as l; l({str(one)!r})"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("load_sequences_dataset hangs on a one-item catalogue")
    assert r.returncode != 0
    assert re.search(r"ValueError: .*one\.txt: the catalogue has n_items=1", r.stderr), r.stderr[-2000:]


def test_negatives_never_equal_the_click_even_when_all_mass_is_on_it(tmp_path):
    """Item 0 gets almost every click; with a huge exposure strength q puts (numerically) all its
    mass on it, so a redraw loop would never end. Every negative still differs from the click."""
    data = load_sequences_dataset(write(tmp_path, "two.txt", "1 1 1 1 1 2\n2 1 1 1 1 1\n"), exposure_strength=1.0)
    for strength in (0.0, 1.0, 500.0, 1e6):
        with deadline(20):
            imp = semi_synthetic_impressions(data, num_negatives=8, strength=strength, seed=1)
        slate = imp["item"].to_numpy().reshape(-1, 9)
        assert (slate[:, :8] != slate[:, 8:]).all(), strength
    with pytest.raises(ValueError, match="n_items=1"):
        semi_synthetic_impressions(Interactions(np.zeros(3, dtype=np.int64), np.array([0, 3]), 1))


def test_draw_excluding_is_q_renormalised_without_the_excluded_item():
    q = np.array([0.5, 0.3, 0.15, 0.05])
    rng = np.random.default_rng(0)
    for ex in range(4):
        out = draw_excluding(q, np.full(40000, ex), rng)
        assert (out != ex).all()
        want = np.delete(q, ex) / np.delete(q, ex).sum()
        got = np.bincount(out, minlength=4)[np.arange(4) != ex] / len(out)
        np.testing.assert_allclose(got, want, atol=0.01)
    # no mass outside the excluded item: uniform over the others, never the excluded one
    out = draw_excluding(np.array([1.0, 0.0, 0.0]), np.zeros(3000, dtype=np.int64), rng)
    assert set(out.tolist()) == {1, 2}


def test_ranker_trains_on_a_sequences_only_file(tmp_path):
    """Without an attributes file there are no categories (all -1); the ranker still trains."""
    rng = np.random.default_rng(0)
    lines = [f"{u + 1} " + " ".join(map(str, rng.integers(1, 21, 6))) for u in range(30)]
    data = load_sequences_dataset(write(tmp_path, "seq.txt", "\n".join(lines) + "\n"), feature_dim=8)
    assert data.item_category is None
    ranker, hist = train_ranker(data, RankerConfig(max_epochs=1, device="cpu", embed_dim=8), progress=False)
    assert ranker.cat_emb is None and np.isfinite(hist["train_loss"]).all()
    # a dataset pickled before the fix carries -1 everywhere: also no category embedding
    old = Ranker(RankerConfig(device="cpu"), data.item_features, np.full(data.n_items, -1))
    assert old.cat_emb is None
    with pytest.raises(ValueError, match="item_category"):
        Ranker(RankerConfig(device="cpu"), data.item_features, np.r_[-1, np.zeros(data.n_items - 1, dtype=int)])


# ------------------------------------------------------------------------ damaged cache / checkpoints
def damage(path: Path, how: str) -> None:
    """'truncated': the first half of the file; 'empty': zero bytes; 'garbage': not the format."""
    data = path.read_bytes() if path.exists() else b""
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"not a checkpoint"}[how])


def a_checkpoint(path: Path) -> Path:
    atomic_torch_save({"model": {"w": torch.zeros(2000)}, "step": 1}, path)
    return path


def sft_cfg(**kw):
    return SFTConfig(**{**dict(steps=4, ckpt_every=2, batch_size=32, eval_samples=30, eval_beam_width=10,
                               warmup_steps=1, device="cpu"), **kw})


@pytest.mark.parametrize("how", ["truncated", "empty"])
def test_train_sft_resume_from_damaged_last_pt_names_it(tiny_world, tiny_sids, tmp_path, how):
    last = a_checkpoint(tmp_path / "last.pt")
    damage(last, how)
    with pytest.raises(DamagedFileError, match=re.escape(str(last)) + r".*delete it"):
        train_sft(tiny_world, tiny_sids, PCFG, sft_cfg(), tmp_path, progress=False)


@pytest.fixture(scope="module")
def policy_ckpt(tiny_sids, tmp_path_factory):
    """An untrained policy checkpoint in the training loop's format (no training needed here)."""
    torch.manual_seed(0)
    model = build_policy(tiny_sids, PCFG, torch.device("cpu"))
    path = tmp_path_factory.mktemp("policy") / "best.pt"
    atomic_torch_save({"model": model.state_dict(), "policy_cfg": dataclasses.asdict(PCFG),
                       "sids_hash": sids_hash(tiny_sids)}, path)
    return path


@pytest.mark.parametrize("how", ["truncated", "empty"])
def test_train_rl_resume_from_damaged_last_pt_names_it(tiny_world, tiny_sids, policy_ckpt, tmp_path, how):
    ranker = Ranker(RankerConfig(device="cpu"), tiny_world.item_features, tiny_world.item_category).eval()
    last = a_checkpoint(tmp_path / "last.pt")
    damage(last, how)
    with pytest.raises(DamagedFileError, match=re.escape(str(last)) + r".*delete it"):
        train_rl(tiny_world, tiny_sids, policy_ckpt, RewardModel(ranker, tiny_sids), GRPOConfig(num_generations=2),
                 GateConfig(), RLConfig(steps=2, batch_size=8, eval_samples=10, device="cpu"), tmp_path,
                 progress=False)


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
def test_load_policy_on_a_damaged_file_names_it(tiny_sids, policy_ckpt, tmp_path, how):
    path = tmp_path / "best.pt"
    shutil.copy(policy_ckpt, path)
    damage(path, how)
    with pytest.raises(DamagedFileError, match=re.escape(str(path)) + r" is damaged.*delete it"):
        load_policy(path, tiny_sids, "cpu")


@pytest.mark.parametrize("how", ["truncated", "empty"])
def test_damaged_world_pickle_is_rebuilt_with_a_warning(tmp_path, how):
    cfg = WorldConfig.tiny(n_users=60, n_items=40, n_categories=4)
    clean = get_world(cfg, tmp_path)
    (entry,) = (tmp_path / "worlds").glob("*.pkl")
    damage(entry, how)
    with pytest.warns(UserWarning, match=re.escape(str(entry)) + " is damaged"):
        rebuilt = get_world(cfg, tmp_path)
    assert np.array_equal(rebuilt.seq_items, clean.seq_items)
    pd.testing.assert_frame_equal(rebuilt.impressions, clean.impressions)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # the rewritten entry is sound again
        assert np.array_equal(get_world(cfg, tmp_path).seq_offsets, clean.seq_offsets)


@pytest.mark.parametrize("how", ["truncated", "empty"])
def test_damaged_cached_ranker_is_retrained_with_a_warning(tiny_world, tmp_path, how):
    cfg = RankerConfig(max_epochs=1, embed_dim=8, attention_hidden=8, mlp_hidden=(16,), device="cpu")
    clean = get_ranker(tiny_world, cfg, tmp_path, progress=False)
    (entry,) = (tmp_path / "rankers").glob("*.pt")
    damage(entry, how)
    with pytest.warns(UserWarning, match=re.escape(str(entry)) + r".*retraining the ranker"):
        rebuilt = get_ranker(tiny_world, cfg, tmp_path, progress=False)
    for k, v in clean.state_dict().items():
        assert torch.equal(v, rebuilt.state_dict()[k]), k


@pytest.fixture(scope="module")
def sft_cache(tiny_world, tiny_sids, tmp_path_factory):
    cache = tmp_path_factory.mktemp("sft_cache")
    out = get_sft(tiny_world, tiny_sids, PCFG, sft_cfg(), cache, progress=False)
    return cache, out, torch.load(out / "final.pt", weights_only=False)["model"]


@pytest.mark.parametrize("how", ["truncated", "empty"])
def test_get_sft_retrains_after_a_damaged_last_pt(tiny_world, tiny_sids, sft_cache, how):
    """An interrupted SFT build whose resume point is damaged: retrained from scratch, not an error."""
    cache, out, weights = sft_cache
    for f in ("final.pt", "best.pt"):
        (out / f).unlink()
    damage(out / "last.pt", how)
    with pytest.warns(UserWarning, match=re.escape(str(out / "last.pt")) + r".*retraining the SFT policy"):
        assert get_sft(tiny_world, tiny_sids, PCFG, sft_cfg(), cache, progress=False) == out
    again = torch.load(out / "final.pt", weights_only=False)["model"]
    for k, v in weights.items():
        assert torch.equal(v, again[k]), k


def test_get_sft_retrains_a_damaged_final_pt(tiny_world, tiny_sids, sft_cache):
    cache, out, weights = sft_cache
    damage(out / "final.pt", "truncated")
    with pytest.warns(UserWarning, match="is damaged"):
        get_sft(tiny_world, tiny_sids, PCFG, sft_cfg(), cache, progress=False)
    again = torch.load(out / "final.pt", weights_only=False)["model"]
    assert all(torch.equal(v, again[k]) for k, v in weights.items())


# ------------------------------------------------------------------------------------ reports
def test_save_table_markdown_prints_counts_as_ints_and_p_values_readably(tmp_path):
    df = pd.DataFrame({
        "method": ["adagrpo", "nll"],
        "n": [3000.0, 2999.0],                 # a count stored as float (e.g. a one-row summary)
        "seeds": [3, 3],
        "method_only_hits": [146.0, 137.0],
        "HR@10": [0.56071234, 0.5],
        "mcnemar_p": [0.0123456, 3e-7],
        "p_holm": [1.0, 0.04],
        "p": [5e-5, 0.98765],
        "coef": [12.0, 0.5],                   # integral, but not a count: stays a float
    })
    save_table(df, tmp_path, "t")
    md = (tmp_path / "t.md").read_text().splitlines()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md]
    assert rows[0] == list(df.columns)
    assert rows[2] == ["adagrpo", "3000", "3", "146", "0.5607", "0.01235", "1.000", "<1e-4", "12.0000"]
    assert rows[3] == ["nll", "2999", "3", "137", "0.5000", "<1e-4", "0.04000", "0.9877", "0.5000"]
    assert rows[1][1].endswith(":") and rows[1][0].startswith(":")     # numbers right, text left
    back = pd.read_csv(tmp_path / "t.csv")                              # the CSV keeps full precision
    assert back["mcnemar_p"].tolist() == [0.0123456, 3e-7] and back["HR@10"][0] == 0.56071234


# ------------------------------------------------------------------------------- reproduce.sh
@pytest.fixture
def sandbox(tmp_path):
    """reproduce.sh in a throw-away checkout whose set-up only leaves a marker, and whose
    papermill copies the notebook and fails on notebook 02."""
    shutil.copy(ROOT / "reproduce.sh", tmp_path / "reproduce.sh")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "setup_env.sh").write_text("touch setup_ran\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    pm = tmp_path / ".venv" / "bin" / "papermill"
    pm.write_text('#!/usr/bin/env bash\ncp "$1" "$2"\ncase "$1" in *02_*) exit 1;; esac\n')
    pm.chmod(0o755)
    py = tmp_path / ".venv" / "bin" / "python"     # the package's commands (the final check): log, succeed
    py.write_text('#!/usr/bin/env bash\necho "$@" >> cli_args\n')
    py.chmod(0o755)
    (tmp_path / "notebooks").mkdir()
    for nb in ("01_a.ipynb", "02_b.ipynb", "03_c.ipynb"):
        (tmp_path / "notebooks" / nb).write_text("{}")
    return tmp_path


def run_reproduce(root, *args):
    t0 = time.perf_counter()
    r = subprocess.run(["bash", str(root / "reproduce.sh"), *args], capture_output=True, text=True, timeout=30,
                       cwd=root)
    return r, time.perf_counter() - t0


@pytest.mark.parametrize("args, match", [
    (["foo"], r"unknown profile 'foo'; valid profiles: quick, paper, full, tiny, amazon"),
    (["quick", "extra"], r"takes one argument"),
])
def test_reproduce_rejects_a_bad_profile_before_any_setup(sandbox, args, match):
    before = sorted(p.relative_to(sandbox) for p in sandbox.rglob("*"))
    r, seconds = run_reproduce(sandbox, *args)
    assert r.returncode == 2 and seconds < 10
    assert r.stdout == "" and r.stderr.count("\n") == 1 and re.search(match, r.stderr), r.stderr
    assert sorted(p.relative_to(sandbox) for p in sandbox.rglob("*")) == before      # created nothing


def test_reproduce_writes_a_fresh_run_folder_and_keeps_the_failed_notebook(sandbox):
    stale = sandbox / "notebooks" / "executed" / "tiny" / "03_c.ipynb"
    stale.parent.mkdir(parents=True)
    stale.write_text("old run")
    r, _ = run_reproduce(sandbox, "tiny")
    assert r.returncode == 1 and (sandbox / "setup_ran").exists()
    assert "FAILED: notebooks/02_b.ipynb" in r.stderr
    assert sorted(p.name for p in stale.parent.iterdir()) == ["01_a.ipynb", "02_b.ipynb"]   # no old copy left
    (sandbox / "notebooks" / "02_b.ipynb").rename(sandbox / "notebooks" / "02_ok.ipynb")
    (sandbox / ".venv" / "bin" / "papermill").write_text('#!/usr/bin/env bash\ncp "$1" "$2"\n')
    r, _ = run_reproduce(sandbox, "tiny")
    assert r.returncode == 0, r.stderr
    assert re.search(r"01_a\.ipynb: \d+ s\n  02_ok\.ipynb: \d+ s\n  03_c\.ipynb: \d+ s", r.stdout)
    assert re.search(r"done in \d+ s in total", r.stdout)
    assert sorted(p.name for p in stale.parent.iterdir()) == ["01_a.ipynb", "02_ok.ipynb", "03_c.ipynb"]
    # last, the reproduction check against the committed tables; its failure fails the run
    assert (sandbox / "cli_args").read_text().splitlines() == ["-m adagrpo_core.suite.report notebooks/executed/tiny tiny",
                                                                "-m adagrpo_core.cli check --profile tiny",
                                                                "-m adagrpo_core.cli check --answers"]
    assert r.stdout.rstrip().splitlines()[-1].startswith("[reproduce] the run's page:")
    (sandbox / ".venv" / "bin" / "python").write_text('#!/usr/bin/env bash\ncase "$*" in *check*) exit 1;; esac\n')
    r, _ = run_reproduce(sandbox, "tiny")
    assert r.returncode == 1 and "FAILED: more values fall outside" in r.stderr


def test_reproduce_amazon_runs_the_reference_models_then_skips_what_needs_the_truth(sandbox):
    py = sandbox / ".venv" / "bin" / "python"
    (sandbox / ".venv" / "bin" / "papermill").write_text('#!/usr/bin/env bash\ncp "$1" "$2"\n')
    for nb in ("05_e.ipynb", "07_g.ipynb"):
        (sandbox / "notebooks" / nb).write_text("{}")
    r, _ = run_reproduce(sandbox, "amazon")
    assert r.returncode == 0, r.stderr
    assert (sandbox / "cli_args").read_text().splitlines() == ["-m adagrpo_core.cli reproduce --profile amazon",
                                                                "-m adagrpo_core.suite.report notebooks/executed/amazon amazon",
                                                                "-m adagrpo_core.cli check --profile amazon",
                                                                "-m adagrpo_core.cli check --answers"]
    assert sorted(p.name for p in (sandbox / "notebooks" / "executed" / "amazon").iterdir()) == ["02_b.ipynb", "03_c.ipynb"]
    assert "skipping 01_a.ipynb" in r.stdout and "skipping 07_g.ipynb" in r.stdout and "skipping 05_e.ipynb" in r.stdout
    assert re.search(r"reference models: \d+ s", r.stdout)
    py.write_text("#!/usr/bin/env bash\nexit 3\n")
    r, _ = run_reproduce(sandbox, "amazon")
    assert r.returncode == 1 and "FAILED: python -m adagrpo_core.cli reproduce --profile amazon" in r.stderr


# ------------------------------------------------------------------ outputs never overwrite each other
def test_sweep_and_smoke_outputs_go_to_their_own_folders(tmp_path):
    from adagrpo_core.configs import get_profile
    from adagrpo_core.suite.notebook import notebook_defaults, output_dir
    from adagrpo_core.common.paths import default_figures_dir
    defaults = notebook_defaults(Path(__file__).resolve().parent.parent / "notebooks" / "03_main_results.ipynb")
    quick, tiny = get_profile("quick"), get_profile("tiny")
    base = default_figures_dir()
    assert base == Path(__file__).resolve().parent.parent / "figures"     # the checkout's, whatever the cwd
    assert output_dir("03_main_results", None, quick, dict(defaults)) == base / "quick"     # figures/<profile>/
    one_seed = output_dir("03_main_results", None, quick, {**defaults, "seeds": [0]})
    assert one_seed.parent == base / "quick" / "sweeps" / "03_main_results" and one_seed != base / "quick"
    assert output_dir("03_main_results", None, quick, {**defaults, "threads": 4, "jobs": 3}) == base / "quick"  # plumbing
    assert output_dir("03_main_results", None, tiny, dict(defaults)) == base / "smoke"
    assert output_dir("03_main_results", str(tmp_path), quick, {**defaults, "seeds": [0]}) == tmp_path


# ------------------------------------------------------------------ a non-finite loss stops the run
def test_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoints(tmp_path):
    import torch
    from adagrpo_core.data.world import WorldConfig, build_world
    from adagrpo_core.model.policy import PolicyConfig, build_policy
    from adagrpo_core.model.semantic_ids import SIDConfig, build_semantic_ids
    from adagrpo_core.configs import SFTConfig
    from adagrpo_core.eval.evaluate import validation_subset
    from adagrpo_core.train.loop import run_loop
    world = build_world(WorldConfig.tiny(n_users=60))
    sids = build_semantic_ids(world.item_features, SIDConfig(num_levels=2, codebook_size=8))
    model = build_policy(sids, PolicyConfig(n_layer=1, n_head=2, n_embd=16, max_history=5), "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cfg = SFTConfig(steps=6, ckpt_every=2, batch_size=4, warmup_steps=1, eval_samples=10, eval_beam_width=10, device="cpu")
    w = torch.nn.Parameter(torch.ones(()))

    def batch_loss(step, idx):
        loss = (model.head.weight.sum() * 0 + w) * (float("nan") if step == 3 else 1.0)
        return loss, {"nll": float(loss.detach()), "grpo_loss": 0.0}

    val = validation_subset(world, 5, 10, 0)
    with pytest.raises(FloatingPointError, match=r"step 4 .*non-finite terms: \['nll'\]"):
        run_loop(model, opt, cfg, tmp_path, n_examples=40, batch_loss=batch_loss, val=val, sids=sids,
                 configs={"test": 1}, progress=False)
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()     # step 2's checkpoint kept
