"""Plumbing: validators, config hashing, atomic writes, seeding."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re

import numpy as np
import pandas as pd
from pathlib import Path

import pytest
import torch

from adagrpo_core.common import storage
from adagrpo_core.common.checks import check_choice, check_int, check_range
from adagrpo_core.common.paths import default_cache_dir
from adagrpo_core.common.runtime import resolve_device, rng_state, seed_everything, set_rng_state
from adagrpo_core.common.storage import atomic_save_df, atomic_torch_save, atomic_write_bytes, atomic_write_text, config_hash
from adagrpo_core.data.world import WorldConfig


@dataclasses.dataclass
class Cfg:
    a: int = 1
    b: float = 0.5
    name: str = "x"


@dataclasses.dataclass
class OtherCfg:  # same fields, different type
    a: int = 1
    b: float = 0.5
    name: str = "x"


def _raises_naming(fn, name, value):
    with pytest.raises(ValueError, match=re.escape(f"{name}={value!r}")) as info:
        fn()
    return str(info.value)


# ---------------------------------------------------------------- validators
@pytest.mark.parametrize("value,lo,hi,lo_open,hi_open", [
    (-0.1, 0, 1, False, False),
    (1.1, 0, 1, False, False),
    (0.0, 0, 1, True, False),
    (1.0, 0, 1, False, True),
    (-5, 0, None, False, False),
    (7, None, 3, False, False),
    (float("nan"), 0, 1, False, False),
    (float("inf"), None, None, False, False),
    ("abc", 0, 1, False, False),
    (None, 0, 1, False, False),
])
def test_check_range_rejects(value, lo, hi, lo_open, hi_open):
    _raises_naming(lambda: check_range("alpha", value, lo, hi, lo_open=lo_open, hi_open=hi_open), "alpha", value)


def test_check_range_message_shows_interval():
    msg = _raises_naming(lambda: check_range("beta", 2.0, 0, 1, lo_open=True, hi_open=True), "beta", 2.0)
    assert "(0, 1)" in msg
    msg = _raises_naming(lambda: check_range("beta", 2.0, 0, 1), "beta", 2.0)
    assert "[0, 1]" in msg


@pytest.mark.parametrize("value,lo,hi,lo_open,hi_open", [
    (0.0, 0, 1, False, False),
    (1.0, 0, 1, False, False),
    (0.5, 0, 1, True, True),
    (1e9, 0, None, False, False),
    (-1e9, None, None, False, False),
    (np.float32(0.25), 0, 1, False, False),
    (3, 0, 5, False, False),
])
def test_check_range_accepts(value, lo, hi, lo_open, hi_open):
    assert check_range("alpha", value, lo, hi, lo_open=lo_open, hi_open=hi_open) is None


@pytest.mark.parametrize("value,lo,hi", [
    (0, 1, None),
    (11, 1, 10),
    (-1, 0, None),
    (2.0, 0, None),
    (True, 0, None),
    ("3", 0, None),
    (None, 0, None),
])
def test_check_int_rejects(value, lo, hi):
    _raises_naming(lambda: check_int("count", value, lo=lo, hi=hi), "count", value)


@pytest.mark.parametrize("value,lo,hi", [(1, 1, None), (10, 1, 10), (np.int64(4), 0, 5), (-3, None, None)])
def test_check_int_accepts(value, lo, hi):
    assert check_int("count", value, lo=lo, hi=hi) is None


def test_check_choice():
    assert check_choice("split", "test", ("train", "valid", "test")) is None
    msg = _raises_naming(lambda: check_choice("split", "dev", ("train", "valid", "test")), "split", "dev")
    assert "test" in msg and "train" in msg and "valid" in msg


def test_seed_everything_is_reproducible_and_validated():
    seed_everything(3)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b
    seed_everything(4)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) != a
    for bad in (-1, 1.5, "3"):
        _raises_naming(lambda: seed_everything(bad), "seed", bad)


def test_rng_state_round_trip():
    seed_everything(11)
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(2).tolist())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(2).tolist()) == a


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    assert resolve_device(None).type == want


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAGRPO_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ADAGRPO_CACHE")
    # from the source tree: the checkout's .cache, whatever the working directory (notebooks run
    # in notebooks/ and must share the CLI's cache)
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    assert default_cache_dir() == root / ".cache"


# ---------------------------------------------------------------- config hash
def test_config_hash_is_stable():
    # pinned: the hash is a cache key on disk, so it must not change between runs or processes
    assert config_hash(Cfg()) == "bf5f2b7edae8"
    assert config_hash(Cfg(), {"k": [1, 2]}) == "70545def1193"
    blob = json.dumps([{"__type__": "Cfg", "a": 1, "b": 0.5, "name": "x"}], sort_keys=True)
    assert config_hash(Cfg(), length=64) == hashlib.sha256(blob.encode()).hexdigest()
    assert config_hash(WorldConfig.tiny()) == config_hash(WorldConfig.tiny())


def test_config_hash_is_sensitive():
    base = config_hash(Cfg())
    assert config_hash(Cfg(a=2)) != base
    assert config_hash(Cfg(b=0.5000001)) != base
    assert config_hash(Cfg(name="y")) != base
    assert config_hash(OtherCfg()) != base            # the type is part of the key
    assert config_hash(Cfg(), Cfg(a=2)) != config_hash(Cfg(a=2), Cfg())   # order matters
    assert config_hash(Cfg(), Cfg()) != base
    assert config_hash(WorldConfig.tiny(seed=1)) != config_hash(WorldConfig.tiny())
    assert config_hash(WorldConfig.tiny(exposure_bias=0.9)) != config_hash(WorldConfig.tiny())
    # dict key order does not matter, values do
    assert config_hash({"x": 1, "y": 2}) == config_hash({"y": 2, "x": 1})
    assert config_hash({"x": 1, "y": 2}) != config_hash({"x": 1, "y": 3})


def test_config_hash_length():
    assert len(config_hash(Cfg())) == 12
    assert len(config_hash(Cfg(), length=20)) == 20
    assert config_hash(Cfg(), length=20).startswith(config_hash(Cfg()))


# ---------------------------------------------------------------- atomic writes
def test_atomic_write_text_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "dir" / "out.txt"
    atomic_write_text(path, "first ü")
    assert path.read_text(encoding="utf-8") == "first ü"
    atomic_write_text(path, "second")
    assert path.read_text(encoding="utf-8") == "second"
    assert sorted(os.listdir(path.parent)) == ["out.txt"]
    atomic_write_text(str(path), "")
    assert path.read_text() == ""
    assert sorted(os.listdir(path.parent)) == ["out.txt"]


def test_atomic_write_keeps_old_content_when_replace_fails(tmp_path, monkeypatch):
    path = tmp_path / "out.bin"
    atomic_write_bytes(path, b"old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(storage.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_torch_save_and_df(tmp_path):
    obj = {"w": torch.arange(5), "step": 3}
    atomic_torch_save(obj, tmp_path / "ckpt.pt")
    back = torch.load(tmp_path / "ckpt.pt")
    assert back["step"] == 3 and torch.equal(back["w"], torch.arange(5))
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]})
    atomic_save_df(df, tmp_path / "t.csv", index=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "t.csv"), df)
    atomic_save_df(df, tmp_path / "t.md")
    text = (tmp_path / "t.md").read_text()
    assert "|" in text and "1.5" in text
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pt", "t.csv", "t.md"]
