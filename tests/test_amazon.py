"""Amazon Beauty loader: parsing with clear errors, verified fetch (local folder and HTTP download),
LETTER semantic IDs, semi-synthetic exposure, and the real files when the shared folder exists."""
import functools
import hashlib
import http.server
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from adagrpo_core.data.amazon import FILES, fetch, parse_sequences, semi_synthetic_impressions
from adagrpo_core.model.datasets import attribute_features, letter_semantic_ids, load_amazon, load_sequences_dataset
from adagrpo_core.reward.ranker import RankerConfig
from adagrpo_core.reward.training import train_ranker

# the real files: $ADAGRPO_AMAZON_DIR, else a shared data folder beside the checkout
SHARED = Path(os.environ.get("ADAGRPO_AMAZON_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def sha(p):
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def small_dataset(tmp_path, n_users=40, n_items=30, seed=0):
    rng = np.random.default_rng(seed)
    lines = [f"{u + 1} " + " ".join(str(i) for i in rng.integers(1, n_items + 1, rng.integers(3, 9)))
             for u in range(n_users)]
    seq = write(tmp_path, "Small.txt", "\n".join(lines) + "\n")
    attrs = {str(i): sorted(set(rng.integers(1, 12, 3).tolist())) for i in range(1, n_items + 1)}
    attr = write(tmp_path, "Small_item2attributes.json", json.dumps(attrs))
    return seq, attr


def test_parse_sequences_zero_indexes_items_and_keeps_order(tmp_path):
    p = write(tmp_path, "d.txt", "1 3 1 2\n2 2 2 5 4\n")
    users, items, off, n_items, dropped = parse_sequences(p)
    assert users.tolist() == [1, 2] and off.tolist() == [0, 3, 7] and n_items == 5 and dropped == 0
    assert items.tolist() == [2, 0, 1, 1, 1, 4, 3]


@pytest.mark.parametrize("text, match", [
    ("1 2 3 4\n2 7 x 9\n", "line 2: id 'x' is not an integer"),
    ("1 2 3 4\n\n", "line 2: empty line"),
    ("1 2 3 4\n5\n", "line 2: user 5 has an empty history"),
    ("1 2 0 4\n", "line 1: item id 0 is out of range"),
    ("1 2 3 4\n1 5 6 7\n", "line 2: user 1 appears twice"),
    ("1 2 3\n", "line 1: user 1 has 2 interactions"),
])
def test_parse_sequences_rejects_malformed_lines(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        parse_sequences(write(tmp_path, "bad.txt", text))


def test_parse_sequences_can_drop_short_users(tmp_path):
    users, _, _, _, dropped = parse_sequences(write(tmp_path, "d.txt", "1 2 3\n2 1 2 3\n"), drop_short=True)
    assert users.tolist() == [2] and dropped == 1


def test_fetch_local_folder_checks_sha256(tmp_path):
    p = write(tmp_path, "f.txt", "hello\n")
    assert fetch("f.txt", tmp_path, sha256=sha(p)) == p
    with pytest.raises(ValueError, match="sha256 mismatch"):
        fetch("f.txt", tmp_path, sha256="0" * 64)
    with pytest.raises(FileNotFoundError, match="data_dir"):
        fetch("missing.txt", tmp_path, sha256="")
    with pytest.raises(ValueError, match="unknown file"):
        fetch("f.txt", tmp_path)


@pytest.fixture
def http_folder(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_downloads_verifies_caches_and_tries_mirrors(tmp_path, http_folder):
    served, base = http_folder
    p = write(served, "data.txt", "1 2 3 4\n")
    cache = tmp_path / "cache"
    urls = (f"{base}/missing.txt", f"{base}/data.txt")          # first mirror is a 404
    got = fetch("data.txt", cache_dir=cache, urls=urls, sha256=sha(p))
    assert got == cache / "amazon" / "data.txt" and got.read_text() == "1 2 3 4\n"
    p.write_text("changed\n")                                   # cached copy is used, not re-downloaded
    assert fetch("data.txt", cache_dir=cache, urls=urls, sha256=sha(got)).read_text() == "1 2 3 4\n"
    with pytest.raises(RuntimeError, match="sha256 mismatch"):  # a corrupted download is refused
        fetch("other.txt", cache_dir=cache, urls=(f"{base}/data.txt",), sha256="0" * 64)
    assert not (cache / "amazon" / "other.txt").exists()
    assert not [f for f in (cache / "amazon").iterdir() if f.name.startswith(".")]   # no temp files left


def test_letter_semantic_ids_parse_and_disambiguate(tmp_path):
    raw = {"0": ["<a_1>", "<b_2>"], "1": ["<a_1>", "<b_2>"], "2": ["<a_0>", "<b_3>"]}
    sids = letter_semantic_ids(write(tmp_path, "ids.json", json.dumps(raw)))
    assert sids.codes.tolist() == [[1, 2, 0], [1, 2, 1], [0, 3, 0]]
    assert sids.collisions_before_uniqueness == 1
    with pytest.raises(ValueError, match="not of the form"):
        letter_semantic_ids(write(tmp_path, "bad.json", json.dumps({"0": ["a1", "b2"]})))
    with pytest.raises(ValueError, match="missing"):
        letter_semantic_ids(write(tmp_path, "gap.json", json.dumps({"0": ["<a_1>"], "2": ["<a_2>"]})))


def test_semi_synthetic_impressions_follow_the_log(tmp_path):
    seq, attr = small_dataset(tmp_path)
    data = load_sequences_dataset(seq, attr, feature_dim=8, num_negatives=3, seed=0)
    imp = data.impressions
    clicks = imp[imp.clicked == 1]
    assert len(clicks) == len(data.seq_items) - data.n_users          # every click after the first
    assert (imp.groupby(["user", "step"]).size() == 4).all()
    # the clicked row is the sequence item at hist_len, placed last in its slate
    seq_at = data.seq_items[data.seq_offsets[clicks.user.to_numpy()] + clicks.hist_len.to_numpy()]
    assert (clicks.item.to_numpy() == seq_at).all() and (clicks.position == 3).all()
    neg = imp[imp.clicked == 0].merge(clicks[["user", "step", "item"]], on=["user", "step"], suffixes=("", "_c"))
    assert (neg.item != neg.item_c).all()
    lens = data.seq_lengths[clicks.user.to_numpy()]
    assert ((clicks.split == "test") == (clicks.hist_len.to_numpy() == lens - 1)).all()
    assert ((clicks.split == "valid") == (clicks.hist_len.to_numpy() == lens - 2)).all()


def test_exposure_strength_concentrates_negatives():
    from adagrpo_core.data.interactions import Interactions
    rng = np.random.default_rng(0)
    seqs = [rng.zipf(1.5, 6).clip(1, 200) - 1 for _ in range(400)]
    data = Interactions(np.concatenate(seqs), np.r_[0, np.cumsum([len(s) for s in seqs])], 200)

    def top_share(strength):
        imp = semi_synthetic_impressions(data, 4, strength, seed=1)
        c = np.sort(np.bincount(imp.item[imp.clicked == 0], minlength=200))[::-1]
        return c[:20].sum() / c.sum()
    assert top_share(0.0) < 0.2 < top_share(1.0) < top_share(2.0)


def test_attribute_features_shape_and_categories(tmp_path):
    _, attr = small_dataset(tmp_path)
    feats, cat = attribute_features(attr, 30, dim=8, n_categories=5)
    assert feats.shape == (30, 8) and np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
    assert cat.shape == (30,) and set(cat.tolist()) <= set(range(5))


def test_ranker_trains_on_semi_synthetic_exposure(tmp_path):
    seq, attr = small_dataset(tmp_path, n_users=120, n_items=40)
    data = load_sequences_dataset(seq, attr, feature_dim=8, num_negatives=3)
    ranker, history = train_ranker(data, RankerConfig(max_epochs=1, device="cpu"), progress=False)
    assert ranker.n_items == data.n_items and len(history) == 1


def test_unknown_dataset_is_rejected():
    with pytest.raises(ValueError, match="dataset"):
        load_amazon("toys")


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared Amazon folder not present on this machine")
def test_real_beauty_files_match_the_published_facts():
    for name, (digest, _) in FILES.items():
        assert fetch(name, SHARED) == SHARED / name
    users, items, _, n_items, dropped = parse_sequences(SHARED / "Beauty.txt")
    assert (len(users), n_items, len(items), dropped) == (22363, 12101, 198502, 0)
    sids = letter_semantic_ids(SHARED / "Beauty_letter_semantic_ids.json", n_items)
    assert sids.n_items == 12101 and sids.collisions_before_uniqueness == 13
    assert len(np.unique(sids.codes, axis=0)) == 12101


def test_pipeline_runs_on_a_real_format_dataset_without_truth(tmp_path, monkeypatch):
    """AmazonConfig through the cached pipeline: dataset, LETTER-style IDs, SFT, ranker, and the
    stratified analysis (no truth columns: a real log has no true utility)."""
    from dataclasses import replace

    from adagrpo_core.data import amazon
    from adagrpo_core.data.amazon import AmazonConfig
    from adagrpo_core.eval.strata import StrataConfig
    from adagrpo_core.suite.stratified import run_stratified
    from adagrpo_core.configs import get_profile
    from adagrpo_core.pipeline import get_sids, get_world
    from adagrpo_core.model.policy import PolicyConfig
    from adagrpo_core.configs import SFTConfig
    folder = tmp_path / "beauty"
    folder.mkdir()
    seq, attr = small_dataset(tmp_path, n_users=80, n_items=30)
    (folder / "Beauty.txt").write_bytes(seq.read_bytes())
    (folder / "Beauty_item2attributes.json").write_bytes(attr.read_bytes())
    rng = np.random.default_rng(0)
    ids = {str(k): [f"<a_{rng.integers(4)}>", f"<b_{rng.integers(4)}>"] for k in range(30)}
    (folder / "Beauty_letter_semantic_ids.json").write_text(json.dumps(ids))
    files = {n: (sha(folder / n), ()) for n in amazon.FILES}
    monkeypatch.setattr(amazon, "FILES", files)
    monkeypatch.setenv("ADAGRPO_AMAZON_DIR", str(folder))
    prof = get_profile("amazon")
    prof = replace(prof, world=AmazonConfig(feature_dim=8, n_categories=4),
                   policy=PolicyConfig(n_embd=16, max_history=5),
                   sft=SFTConfig(steps=6, ckpt_every=3, eval_samples=20, warmup_steps=2),
                   ranker=replace(prof.ranker, max_epochs=1))
    cache = tmp_path / "cache"
    data = get_world(prof.world, cache)
    assert data.summary()["users"] == 80 and get_world(prof.world, cache).n_items == data.n_items   # cached
    sids = get_sids(data, prof.sid, cache)
    assert sids.length == 3 and sids.n_items == 30
    df, tables = run_stratified(prof, StrataConfig(top_n=10, k=5, n_boot=50), cache, progress=False)
    assert len(df) == 80 and "hit_truth" not in df
    assert tables["table1_aggregate"].n.iloc[0] == 80
    assert tables["table3_difficulty_x_discriminability"].n.sum() == 80
    # the CLI commands the GPU machine runs (no Jupyter there), on the same small profile
    from adagrpo_core import cli
    monkeypatch.setattr(cli, "get_profile", lambda name: prof)
    out = tmp_path / "figures"
    assert cli.reproduce("amazon", out, cache) == 0
    assert cli.stratified_cmd("amazon", out, cache, top_n=10, k=5) == 0
    written = {p.name for p in (out / "amazon").iterdir()}   # a real dataset's tables: <out>/<its name>/
    assert {"sft_vs_most_popular_amazon.csv", "stratified_table1_aggregate_amazon_test.md"} <= written
    assert not any(n.startswith("world_exposure_concentration") for n in written)   # needs a true utility
