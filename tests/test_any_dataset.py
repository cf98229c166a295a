"""Any `user item item ...` file end to end: SequencesConfig through the cached pipeline, the ranker
without an attributes file, and `cli reproduce --sequences` with its tables and its input errors."""
import json

import numpy as np
import pandas as pd
import pytest

from adagrpo_core import cli
from adagrpo_core.configs import get_profile
from adagrpo_core.data.sequences import EmbeddingConfig, SequencesConfig
from adagrpo_core.model.datasets import load_sequences_dataset
from adagrpo_core.model.item_embeddings import cooc_embeddings
from adagrpo_core.pipeline import data_key, get_sids, get_world
from adagrpo_core.model.semantic_ids import SIDConfig
from adagrpo_core.reward.ranker import RankerConfig
from adagrpo_core.reward.training import train_ranker
from adagrpo_core.common.storage import load_checkpoint

N_CLUSTERS, PER_CLUSTER = 10, 10


def write_shop(folder, name="shop.txt", n_users=300, seed=0):
    """A `user item item ...` file: each user clicks within one of 10 clusters of 10 items (85%)."""
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(n_users):
        home = rng.integers(N_CLUSTERS)
        clusters = [home if rng.random() < 0.85 else rng.integers(N_CLUSTERS) for _ in range(rng.integers(5, 12))]
        items = [c * PER_CLUSTER + rng.integers(PER_CLUSTER) + 1 for c in clusters]
        lines.append(f"{u + 1} " + " ".join(map(str, items)))
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def write_attributes(folder, n_items=N_CLUSTERS * PER_CLUSTER, seed=0):
    rng = np.random.default_rng(seed)
    path = folder / "shop_item2attributes.json"
    path.write_text(json.dumps({str(i): sorted(set(rng.integers(0, 15, 3).tolist())) for i in range(1, n_items + 1)}))
    return path


def run_cli(argv, tmp_path, monkeypatch):
    monkeypatch.setenv("ADAGRPO_CACHE", str(tmp_path / "cache"))
    return cli.main(["--out", str(tmp_path / "figures"), "reproduce", *argv])


# ------------------------------------------------------------------ the ranker without attributes
def test_without_attributes_items_get_cooccurrence_features_and_the_ranker_learns_more(tmp_path):
    data = load_sequences_dataset(write_shop(tmp_path), feature_dim=8)
    assert data.item_category is None
    np.testing.assert_array_equal(data.item_features, cooc_embeddings(data, EmbeddingConfig(dim=8)))
    cfg = RankerConfig(max_epochs=3, device="cpu", embed_dim=16)
    _, hist = train_ranker(data, cfg, progress=False)
    data.item_features = np.random.default_rng(0).normal(size=data.item_features.shape).astype(np.float32)
    _, hist_random = train_ranker(data, cfg, progress=False)
    assert np.isfinite(hist.train_loss).all()
    best, best_random = hist.valid_auc.max(), hist_random.valid_auc.max()
    assert best > best_random + 0.15, (best, best_random)


# ------------------------------------------------------------------ SequencesConfig in the pipeline
def test_sequences_config_is_cached_by_content_not_path(tmp_path):
    a = write_shop(tmp_path)
    (tmp_path / "moved").mkdir()
    b = tmp_path / "moved" / "shop.txt"
    b.write_bytes(a.read_bytes())
    assert data_key(SequencesConfig(str(a))) == data_key(SequencesConfig(str(b)))
    assert SequencesConfig(str(a)).name == "shop"
    data = get_world(SequencesConfig(str(b)), tmp_path / "cache")
    assert data.cfg.path == str(b) and data.name == "shop" and data.n_items == 100
    b.write_text(b.read_text() + "999 1 2 3\n")                                  # new content, same path
    assert data_key(SequencesConfig(str(a))) != data_key(SequencesConfig(str(b)))


def test_sequences_ids_come_from_cooccurrence_attributes_or_a_file(tmp_path):
    seq, attr = write_shop(tmp_path), write_attributes(tmp_path)
    cache = tmp_path / "cache"
    sid_cfg = SIDConfig(num_levels=2, codebook_size=10)
    cooc = get_sids(get_world(SequencesConfig(str(seq)), cache), sid_cfg, cache)
    first = cooc.codes[:, 0]
    cluster = np.arange(100) // PER_CLUSTER
    mates = (cluster[:, None] == cluster[None, :]) & ~np.eye(100, dtype=bool)
    assert (first[:, None] == first[None, :])[mates].mean() > 0.6
    cfg = SequencesConfig(str(seq), attributes=str(attr))
    assert cfg.id_kind == "both"
    both = get_sids(get_world(cfg, cache), sid_cfg, cache)
    assert both.n_items == 100 and not np.array_equal(both.codes, cooc.codes)
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps({str(k): [f"<a_{k % 7}>", f"<b_{k // 7}>"] for k in range(100)}))
    given = get_sids(get_world(SequencesConfig(str(seq), semantic_ids=str(ids)), cache), sid_cfg, cache)
    assert given.codes[:, :2].tolist() == [[k % 7, k // 7] for k in range(100)]


@pytest.mark.parametrize("kwargs, match", [
    (dict(path="nowhere.txt"), "path: no such file"),
    (dict(attributes="nowhere.json"), "attributes: no such file"),
    (dict(name="my shop"), "name must be"),
    (dict(sid_features="both"), "sid_features='both' needs an attributes file"),
    (dict(sid_features="text"), "sid_features must be one of"),
    (dict(num_negatives=0), "num_negatives"),
    (dict(min_interactions=2), "min_interactions"),
])
def test_sequences_config_rejects_bad_fields(tmp_path, kwargs, match):
    kwargs = {"path": str(write_shop(tmp_path)), **kwargs}
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        SequencesConfig(**kwargs)


# ------------------------------------------------------------------ the CLI end to end
def test_cli_reproduces_any_dataset_end_to_end(tmp_path, monkeypatch, capsys):
    seq = write_shop(tmp_path)
    assert run_cli(["--sequences", str(seq), "--sft-steps", "20", "--profile", "tiny"], tmp_path, monkeypatch) == 0
    out = tmp_path / "figures" / "shop"
    names = {p.name for p in out.iterdir()}
    for table in ("sft_vs_most_popular", "ranker_reliability_auc", "ranker_reliability_pairwise", "semantic_ids"):
        assert {f"{table}_shop.csv", f"{table}_shop.md"} <= names, names
    ref = pd.read_csv(out / "sft_vs_most_popular_shop.csv")
    assert ref.method.tolist() == ["sft-best", "sft-final", "most-popular", "sasrec"] and (ref.n == 300).all()
    by = ref.set_index("method")["HR@10"]
    assert by["sft-best"] > by["most-popular"] and by["sasrec"] > by["most-popular"]   # SASRec: a real reference
    ids = pd.read_csv(out / "semantic_ids_shop.csv")
    assert ids.source.tolist() == ["rqkmeans(cooc)"] and ids["items"].tolist() == [100]
    # with attributes and a name: IDs from both, tables under the name; the sequences are cached
    attr = write_attributes(tmp_path)
    argv = ["--sequences", str(seq), "--attributes", str(attr), "--name", "shop-attr", "--sft-steps", "20",
            "--profile", "tiny"]
    assert run_cli(argv, tmp_path, monkeypatch) == 0
    assert pd.read_csv(tmp_path / "figures" / "shop-attr" / "semantic_ids_shop-attr.csv").source.tolist() == \
        ["rqkmeans(both)"]
    finals = list((tmp_path / "cache" / "sft").glob("*/final.pt"))
    assert len(finals) == 2 and all(load_checkpoint(f)["step"] == 20 for f in finals)   # --sft-steps 20


def test_cli_sequences_run_takes_the_amazon_settings_by_default(tmp_path, monkeypatch):
    """Without --profile the amazon profile's model and SFT serve, with --sft-steps steps, a warm-up
    of at most a tenth of them, and at most n_items // 8 codes per level."""
    seen = {}
    monkeypatch.setattr(cli, "reproduce", lambda prof, out, cache_dir=None: seen.update(prof=prof, out=out) or 0)
    assert run_cli(["--sequences", str(write_shop(tmp_path)), "--sft-steps", "50"], tmp_path, monkeypatch) == 0
    prof, amazon = seen["prof"], get_profile("amazon")
    assert cli.tables_dir(seen["out"], prof) == tmp_path / "figures" / "shop"       # where reproduce writes
    assert prof.name == "shop" and not prof.is_simulated
    assert prof.policy == amazon.policy and prof.ranker == amazon.ranker
    assert (prof.sft.steps, prof.sft.warmup_steps, prof.sft.ckpt_every, prof.sft.batch_size) == (50, 5, 50, 128)
    assert prof.sid.codebook_size == 100 // 8 and prof.sid.num_levels == amazon.sid.num_levels


@pytest.mark.parametrize("argv, names", [
    (["--sequences", "{tmp}/missing.txt"], "--sequences: no such file"),
    (["--sequences", "{seq}", "--attributes", "{tmp}/missing.json"], "--attributes: no such file"),
    (["--sequences", "{seq}", "--sft-steps", "0"], "--sft-steps must be >= 1, got --sft-steps 0"),
    (["--sequences", "{seq}", "--name", "../up"], "--name must be"),
    (["--attributes", "{seq}"], "--attributes needs --sequences"),
    (["--sft-steps", "5"], "--sft-steps needs --sequences"),
    (["--sequences", "{bad}"], "bad.txt line 3: id 'x7' is not an integer"),
    (["--sequences", "{short}"], "short.txt line 2: user 2 has 2 interactions"),
    (["--sequences", "{seq}", "--semantic-ids", "{ids}"], "ids.json: keys must be 0..n_items-1; missing e.g. [50,"),
])
def test_cli_rejects_bad_sequences_input_in_one_line(argv, names, tmp_path, monkeypatch, capsys):
    seq = write_shop(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("1 1 2 3\n2 2 3 4\n3 4 x7 5\n")
    short = tmp_path / "short.txt"
    short.write_text("1 1 2 3\n2 2 3\n")
    ids = tmp_path / "ids.json"                                   # IDs for 50 of the 100 items
    ids.write_text(json.dumps({str(k): [f"<a_{k % 7}>", f"<b_{k // 7}>"] for k in range(50)}))
    argv = [a.format(tmp=tmp_path, seq=seq, bad=bad, short=short, ids=ids) for a in argv]
    with pytest.raises(SystemExit) as info:
        run_cli(argv, tmp_path, monkeypatch)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert names in err, err
    assert not (tmp_path / "figures").exists()                 # no table was written
