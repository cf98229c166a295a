"""SASRec-CE: shapes and padding, training on the tiny world (loss, beats most popular,
determinism, resume), full-ranking evaluation against the metrics module, the reward wrapper,
and config validation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from adagrpo_core.eval.metrics import ranking_metrics, topk_from_scores
from adagrpo_core.model.sasrec import (SASRec, SASRecConfig, evaluate_popularity, evaluate_sasrec, load_sasrec,
                                       rank_metrics, target_ranks, train_sasrec)
from adagrpo_core.pipeline import get_sasrec
from adagrpo_core.reward.reward_model import RewardConfig
from adagrpo_core.reward.sources import build_reward
from adagrpo_core.reward.sasrec_reward import SASRecReward

FAST = dict(n_embd=32, n_layer=2, n_head=2, dropout=0.2, max_len=20, batch_size=64, epochs=25, patience=5,
            seed=0, device="cpu")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tiny_world, tmp_path_factory):
    """One SASRec trained on the tiny world with an output folder, shared by the tests below."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sasrec")
    model, history = train_sasrec(tiny_world, SASRecConfig(**FAST), out_dir=out, progress=False)
    return model, history, out


# ------------------------------------------------------------------------------ model
def test_shapes_and_scores_agree(tiny_world):
    model = SASRec(SASRecConfig(**FAST), tiny_world.n_items).eval()
    hist = tiny_world.examples("test", 30).history[:6]                      # wider than max_len=20
    D, N = FAST["n_embd"], tiny_world.n_items
    assert model(hist).shape == (6, 20, D)
    assert model.last_hidden(hist).shape == (6, D)
    scores = model.score_all(hist)
    assert scores.shape == (6, N)
    items = torch.randint(0, N, (6, 7), generator=torch.Generator().manual_seed(0))
    sel = model.score_items(hist, items)
    assert sel.shape == (6, 7)
    torch.testing.assert_close(sel, scores.gather(1, items))
    # only the last max_len items are read
    torch.testing.assert_close(scores, model.score_all(hist[:, -20:]))


def test_padding_and_batch_neighbours_do_not_change_a_row(tiny_world):
    model = SASRec(SASRecConfig(**FAST), tiny_world.n_items).eval()
    hist = tiny_world.examples("valid", 20).history[:8]
    short = np.full((1, 20), -1)
    short[0, -3:] = hist[0, -3:]                                          # a 3-item history
    alone = model.score_all(short)
    in_batch = model.score_all(np.concatenate([short, hist[1:]]))[:1]
    trimmed = model.score_all(short[:, -3:])                              # no padding columns at all
    torch.testing.assert_close(alone, in_batch, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone, trimmed, rtol=1e-5, atol=1e-5)
    # causal: a position never sees a later item, and the last one sees every earlier item
    full = hist[:1].copy()
    changed = full.copy()
    changed[0, -1] = (full[0, -1] + 1) % tiny_world.n_items
    with torch.no_grad():
        a, b = model(full), model(changed)
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    earlier = full.copy()
    earlier[0, -2] = (full[0, -2] + 1) % tiny_world.n_items
    with torch.no_grad():
        assert not torch.allclose(model(earlier)[:, -1], a[:, -1])
    # the padding row is never a candidate and stays zero
    assert model.item_table().shape == (tiny_world.n_items, FAST["n_embd"])
    assert float(model.item_emb.weight[tiny_world.n_items].detach().abs().sum()) == 0.0


# ------------------------------------------------------------------------------ training
def test_loss_decreases_and_history_is_written(trained):
    _, history, out = trained
    assert list(history.columns) == ["epoch", "train_loss", "val_HR@10", "val_NDCG@10", "seconds"]
    loss = history["train_loss"].to_numpy()
    assert loss[-1] < loss[0] - 0.5, loss
    assert (out / "best.pt").exists()
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv"), history)


def test_beats_most_popular_and_keeps_the_best_state(trained, tiny_world):
    model, history, _ = trained
    pop = evaluate_popularity(tiny_world, "test")
    sas = evaluate_sasrec(model, tiny_world, "test")
    assert sas["HR@10"] > pop["HR@10"] + 0.1, (sas, pop)
    assert sas["NDCG@10"] > pop["NDCG@10"]
    # the returned state is the best validation NDCG@10 of the run
    val = evaluate_sasrec(model, tiny_world, "valid", ks=(10,))
    assert val["NDCG@10"] == pytest.approx(history["val_NDCG@10"].max(), abs=1e-9)


def test_full_ranking_metrics_match_the_metrics_module(trained, tiny_world):
    """Ranks without sorting == metrics.ranking_metrics over topk_from_scores, ties included."""
    model, _, _ = trained
    ex = tiny_world.examples("test", model.cfg.max_len)
    with torch.no_grad():
        scores = model.score_all(ex.history)
    ref = ranking_metrics(topk_from_scores(scores.numpy(), 10), ex.target, ks=(5, 10))
    ours = evaluate_sasrec(model, tiny_world, "test", ks=(5, 10), batch_size=64)
    tied = torch.round(scores * 2) / 2                  # many ties: the lower id must come first in both
    ref_tied = ranking_metrics(topk_from_scores(tied.numpy(), 10), ex.target, ks=(5, 10))
    ours_tied = rank_metrics(target_ranks(tied, torch.as_tensor(ex.target)).numpy(), ks=(5, 10))
    assert ref_tied != ref                              # the ties matter
    for k in ("HR@5", "NDCG@5", "HR@10", "NDCG@10"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-6), k
        assert ours_tied[k] == pytest.approx(ref_tied[k], abs=1e-12), k
    assert ours["n"] == len(ex)


def test_same_seed_same_weights_other_seed_differs(tiny_world):
    cfg = SASRecConfig(**{**FAST, "epochs": 3})
    a, ha = train_sasrec(tiny_world, cfg, progress=False)
    b, hb = train_sasrec(tiny_world, cfg, progress=False)
    c, _ = train_sasrec(tiny_world, SASRecConfig(**{**FAST, "epochs": 3, "seed": 1}), progress=False)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert ha["train_loss"].tolist() == hb["train_loss"].tolist()
    assert not torch.equal(a.item_emb.weight, c.item_emb.weight)


def test_resume_loads_instead_of_retraining(trained, tiny_world, monkeypatch):
    model, history, out = trained
    stamp = (out / "best.pt").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("retrained instead of loading")
    monkeypatch.setattr(torch.optim, "AdamW", no_training)
    again, h2 = train_sasrec(tiny_world, SASRecConfig(**FAST), out_dir=out, progress=False)
    for x, y in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(x, y)
    pd.testing.assert_frame_equal(h2, history)
    assert (out / "best.pt").stat().st_mtime_ns == stamp
    assert not again.training
    # another config in the same folder is not loaded: it trains (and says so)
    with pytest.warns(UserWarning, match="another config"), pytest.raises(AssertionError, match="retrained"):
        train_sasrec(tiny_world, SASRecConfig(**{**FAST, "lr": 2e-3}), out_dir=out, progress=False)


def test_get_sasrec_caches_by_config(tiny_world, tmp_path, monkeypatch):
    cfg = SASRecConfig(**{**FAST, "epochs": 2})
    first = get_sasrec(tiny_world, cfg, tmp_path, progress=False)
    assert len(list((tmp_path / "sasrec").glob("*/best.pt"))) == 1
    monkeypatch.setattr(torch.optim, "AdamW", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    second = get_sasrec(tiny_world, cfg, tmp_path, progress=False)
    for x, y in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(x, y)
    path = next((tmp_path / "sasrec").glob("*/best.pt"))
    torch.testing.assert_close(load_sasrec(path).score_all(np.array([[0, 1, 2]])),
                               first.score_all(np.array([[0, 1, 2]])))


# ------------------------------------------------------------------------------ reward
def invalid_tuple(sids):
    for code in range(sids.vocab_size - 1, -1, -1):
        t = np.full(sids.length, code)
        if not sids.is_valid(t[None])[0]:
            return t
    raise AssertionError("no invalid tuple found")


@pytest.fixture(scope="module")
def rollouts(tiny_world, tiny_sids):
    """history [4, 20] and tuples [4, 5, L]: row 0 all valid, rows 1-2 mixed, row 3 all invalid."""
    ex = tiny_world.examples("test", 20)
    items = np.random.default_rng(0).integers(0, tiny_world.n_items, (4, 5))
    tuples = tiny_sids.encode(items)
    bad = invalid_tuple(tiny_sids)
    tuples[1, 2] = bad
    tuples[2, [0, 4]] = bad
    tuples[3] = bad
    items[1, 2] = items[2, [0, 4]] = -1
    items[3] = -1
    return ex.history[:4], tuples, items


@pytest.mark.parametrize("output", ["prob", "logit"])
def test_reward_matches_the_model_and_penalises_invalid_tuples(trained, tiny_sids, rollouts, output):
    model, _, _ = trained
    history, tuples, items = rollouts
    reward = build_reward(None, tiny_sids, None, RewardConfig(source="sasrec", output=output), sasrec=model)
    assert isinstance(reward, SASRecReward)
    r = reward(history, torch.as_tensor(tuples), batch=None)
    assert r.shape == (4, 5) and r.dtype == torch.float32 and not r.requires_grad
    valid = torch.as_tensor(items >= 0)
    np.testing.assert_array_equal(reward.decode(tuples).numpy(), items)
    direct = reward.score_items(history, items)
    torch.testing.assert_close(r, direct)                                  # the two entry points agree
    with torch.no_grad():
        logits = model.score_all(history)
    expected = torch.softmax(logits, 1) if output == "prob" else logits
    expected = expected.gather(1, torch.as_tensor(items).clamp(min=0))
    torch.testing.assert_close(r[valid], expected[valid], rtol=1e-5, atol=1e-7)
    if output == "prob":
        assert (r[~valid] == -1.0).all() and (r[valid] > 0).all() and (r[valid] <= 1).all()
    else:
        for row in range(3):                                               # the row's lowest valid score - 1
            assert (r[row, ~valid[row]] == r[row, valid[row]].min() - 1).all()
        assert (r[3] == -10.0).all()
    fixed = SASRecReward(model, tiny_sids, RewardConfig(source="sasrec", output=output, invalid_reward=-5.0))
    assert (fixed(history, tuples)[~valid] == -5.0).all()


def test_reward_rejects_bad_arguments(trained, tiny_sids, tiny_world):
    model, _, _ = trained
    with pytest.raises(ValueError, match="needs a trained SASRec"):
        build_reward(None, tiny_sids, None, RewardConfig(source="sasrec"))
    reward = SASRecReward(model, tiny_sids)
    with pytest.raises(ValueError, match="items"):
        reward.score_items(np.full((2, 3), -1), np.full((2, 4), tiny_world.n_items))
    with pytest.raises(ValueError, match="tuples"):
        reward(np.full((2, 3), -1), np.zeros((2, tiny_sids.length), dtype=np.int64))
    with pytest.raises(ValueError, match="n_items"):
        SASRecReward(SASRec(SASRecConfig(**FAST), tiny_world.n_items + 1), tiny_sids)


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("field, value", [
    ("n_embd", 0), ("n_layer", 1.5), ("n_head", 0), ("dropout", 1.0), ("max_len", 0), ("lr", 0.0),
    ("weight_decay", -0.1), ("batch_size", "64"), ("epochs", 0), ("patience", 0), ("eval_every", 0),
    ("seed", -1), ("device", "gpu0"),
])
def test_invalid_config_names_field_and_value(field, value):
    with pytest.raises(ValueError, match=field) as info:
        SASRecConfig(**{field: value})
    assert repr(value) in str(info.value)


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match=r"n_embd.*n_head=3.*n_embd=64"):
        SASRecConfig(n_embd=64, n_head=3)
