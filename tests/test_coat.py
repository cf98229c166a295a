"""Coat: the loader with clear errors (missing or altered file, wrong shape, rating outside 0-5), the
rewards trained on self-selected ratings (naive and IPS), the per-user diagnostics against the
gate's own functions, notebook 09 end to end on small matrices built here, and the real files
when the shared folder exists."""
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from adagrpo_core.suite.coat_study import CoatStudyConfig, notebook_setup, run_study
from adagrpo_core.suite.coat_tables import all_tables
from adagrpo_core.data.coat import FILES, load_coat
from adagrpo_core.eval import coat_reliability as rel
from adagrpo_core.eval.metrics import auc
from adagrpo_core.reward.coat_training import (CoatRewardConfig, fit_ensemble, fit_reward, rating_weights,
                                               select_config, split_ratings, with_overrides)
from adagrpo_core.rl.gate import reliability_gate

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ADAGRPO_COAT_DIR") or ROOT.parent / "shared" / "data" / "coat")


def write_matrix(path: Path, m, fmt="%d"):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.asarray(m), fmt=fmt)


def make_coat(folder: Path, U=40, N=30, n_train=8, n_test=6, seed=0) -> Path:
    """A small Coat-like folder: ratings from user x item tastes, self-selected ratings drawn with
    a popularity- and taste-biased propensity (missing not at random), random ones uniformly."""
    rng = np.random.default_rng(seed)
    pop = rng.pareto(1.5, N) + 0.2
    taste = rng.normal(size=(U, 3)) @ rng.normal(size=(3, N)) + rng.normal(0, 0.5, N)
    ratings = np.clip(np.round(2.4 + taste), 1, 5).astype(int)
    logit = np.log(pop)[None] + 0.6 * ratings
    prop = np.exp(logit) / np.exp(logit).sum(1, keepdims=True)
    train, test = np.zeros((U, N), int), np.zeros((U, N), int)
    for u in range(U):
        chosen = rng.choice(N, n_train, replace=False, p=prop[u])
        train[u, chosen] = ratings[u, chosen]
        rand = rng.choice(N, n_test, replace=False)
        test[u, rand] = ratings[u, rand]
    write_matrix(folder / "train.ascii", train)
    write_matrix(folder / "test.ascii", test)
    write_matrix(folder / "propensities.ascii", np.clip(prop * n_train, 1e-3, 1), fmt="%.6e")
    write_matrix(folder / "user_item_features" / "user_features.ascii", np.eye(4, dtype=int)[rng.integers(0, 4, U)])
    write_matrix(folder / "user_item_features" / "item_features.ascii", np.eye(5, dtype=int)[rng.integers(0, 5, N)])
    return folder


@pytest.fixture(scope="module")
def coat_dir(tmp_path_factory):
    return make_coat(tmp_path_factory.mktemp("coat"))


@pytest.fixture(scope="module")
def data(coat_dir):
    return load_coat(coat_dir, verify_sha256=False)


# ------------------------------------------------------------------------------------ the loader
def test_loader_reads_small_matrices_and_the_env_var(coat_dir, monkeypatch):
    d = load_coat(coat_dir, verify_sha256=False)
    assert d.train.shape == d.test.shape == d.propensity.shape == (40, 30) and d.source == coat_dir.name
    assert ((d.train > 0).sum(1) == 8).all() and ((d.test > 0).sum(1) == 6).all()
    assert d.exposure().sum() == 320 and d.positive(np.array([3, 4, 5, 0])).tolist() == [False, True, True, False]
    assert d.user_features.shape == (40, 4) and d.item_features.shape == (30, 5)
    monkeypatch.setenv("ADAGRPO_COAT_DIR", str(coat_dir))
    assert np.array_equal(load_coat(verify_sha256=False).train, d.train)
    monkeypatch.delenv("ADAGRPO_COAT_DIR")
    with pytest.raises(FileNotFoundError, match="ADAGRPO_COAT_DIR"):
        load_coat(verify_sha256=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_coat(coat_dir / "nope")


@pytest.fixture
def copy_dir(coat_dir, tmp_path):
    for rel_path in FILES:
        (tmp_path / rel_path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel_path).write_bytes((coat_dir / rel_path).read_bytes())
    return tmp_path


def _edit(path: Path, line: int, col: int, value: str):
    rows = [r.split() for r in path.read_text().splitlines()]
    rows[line][col] = value
    path.write_text("\n".join(" ".join(r) for r in rows) + "\n")


@pytest.mark.parametrize("edit, match", [
    (lambda d: _edit(d / "train.ascii", 2, 4, "7"), r"train.ascii line 3, column 5: rating 7 is outside 0-5"),
    (lambda d: _edit(d / "test.ascii", 0, 0, "-1"), r"test.ascii line 1, column 1: rating -1 is outside 0-5"),
    (lambda d: _edit(d / "train.ascii", 1, 1, "2.5"), r"train.ascii line 2, column 2: rating 2.5 is outside 0-5"),
    (lambda d: _edit(d / "test.ascii", 4, 2, "x"), r"test.ascii line 5: value 'x' is not a number"),
    (lambda d: _edit(d / "propensities.ascii", 0, 3, "0"), r"propensities.ascii line 1, column 4: propensity 0"),
    (lambda d: _edit(d / "propensities.ascii", 0, 3, "1.5"), r"propensity 1.5 is outside \(0, 1\]"),
    (lambda d: (d / "test.ascii").write_text("\n".join(" ".join(r.split()[:-1]) for r in
                                                       (d / "test.ascii").read_text().splitlines()) + "\n"),
     r"test.ascii: shape \(40, 29\), expected \(40, 30\)"),
    (lambda d: (d / "train.ascii").write_text((d / "train.ascii").read_text() + "1 2\n"),
     r"train.ascii line 41: 2 values, line 1 has 30"),
    (lambda d: (d / "user_item_features" / "item_features.ascii").write_text("1 0\n0 1\n"),
     r"item_features.ascii: 2 rows, expected one per item \(30\)"),
])
def test_loader_names_the_file_and_the_value_of_a_bad_input(copy_dir, edit, match):
    edit(copy_dir)
    with pytest.raises(ValueError, match=match):
        load_coat(copy_dir, verify_sha256=False)


def test_loader_checks_sha256_and_shape_and_missing_files(copy_dir):
    got = hashlib.sha256((copy_dir / "train.ascii").read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=f"train.ascii: sha256 mismatch, expected {FILES['train.ascii']}, got {got}"):
        load_coat(copy_dir)                                         # the small matrices are not the published bytes
    with pytest.raises(ValueError, match=r"train.ascii: shape \(40, 30\), expected \(290, 300\)"):
        load_coat(copy_dir, verify_sha256=False, shape=(290, 300))
    with pytest.raises(ValueError, match="positive_threshold"):
        load_coat(copy_dir, verify_sha256=False, positive_threshold=6)
    (copy_dir / "propensities.ascii").unlink()
    with pytest.raises(FileNotFoundError, match="propensities.ascii: not found"):
        load_coat(copy_dir, verify_sha256=False)


@pytest.mark.skipif(not (SHARED / "train.ascii").is_file(), reason="the Coat folder is not here")
def test_the_real_files():
    d = load_coat(SHARED)                                            # sha256 checked
    assert d.train.shape == (290, 300) and ((d.train > 0).sum(1) == 24).all() and ((d.test > 0).sum(1) == 16).all()
    assert np.bincount(d.train[d.train > 0])[1:].tolist() == [1901, 1437, 1717, 1275, 630]
    assert np.bincount(d.test[d.test > 0])[1:].tolist() == [1879, 899, 1002, 641, 219]
    assert d.user_features.shape == (290, 14) and d.item_features.shape == (300, 33)
    assert d.summary()["test_also_in_train"] == 366


# ------------------------------------------------------------------------------------ the rewards
def test_split_and_weights(data):
    fit, valid = split_ratings(data.train, 0.25, 3)
    assert not (fit & valid).any() and np.array_equal(fit | valid, data.train > 0)
    assert (valid.sum(1) == 2).all() and np.array_equal(split_ratings(data.train, 0.25, 3)[1], valid)
    assert np.allclose(rating_weights(data, "ips"), 1 / data.propensity)
    assert np.allclose(rating_weights(data, "ips_pop")[0], data.n_users / np.maximum(data.exposure(), 1))
    assert (rating_weights(data, "naive") == 1).all()


@pytest.mark.parametrize("kind", ["ranker", "lmf", "mf"])
def test_every_reward_kind_fits_naive_and_ips(data, kind):
    fit, valid = split_ratings(data.train, 0.25, 0)
    for w in ("naive", "ips", "ips_pop"):
        r = fit_reward(data, CoatRewardConfig(kind=kind, weighting=w), fit, valid, 0)
        assert np.isfinite(r.history.valid_loss).all() and r.history.best.any()
        s = r.score(np.zeros((2, 3), int), np.array([[0, 1, 2], [3, 4, 5]]))
        assert s.shape == (2, 3) and np.isfinite(s).all()
    again = fit_reward(data, CoatRewardConfig(kind=kind), fit, valid, 0)
    assert np.array_equal(again.score([0, 1], [2, 3]), fit_reward(data, CoatRewardConfig(kind=kind), fit, valid, 0)
                          .score([0, 1], [2, 3]))                    # seeded: the same scores


def test_ensemble_members_differ_and_selection_keeps_the_lowest_loss(data):
    fit, valid = split_ratings(data.train, 0.25, 0)
    members = fit_ensemble(data, CoatRewardConfig(kind="lmf"), fit, valid, 2, 0)
    assert not np.allclose(members[0].score([0, 1], [2, 3]), members[1].score([0, 1], [2, 3]))
    cfg, table = select_config(data, CoatRewardConfig(kind="mf"), [{"l2": 0.01}, {"l2": 1.0, "dim": 4}], fit, valid, 0)
    assert table.chosen.sum() == 1 and cfg.mf.l2 == float(table.loc[table.valid_loss.idxmin(), "l2"])
    assert with_overrides(CoatRewardConfig(kind="ranker"), history="rated", embed_dim=8).ranker.embed_dim == 8
    with pytest.raises(ValueError, match="fields of neither"):
        with_overrides(CoatRewardConfig(kind="lmf"), embed_dim=8)


# ------------------------------------------------------------------------------------ the diagnostics
def test_agreement_buckets_and_discriminability_by_hand():
    items = np.array([[0, 1, 2, -1]])
    ratings = np.array([[5, 3, 1, 0]])
    scores = np.array([[0.9, 0.1, 0.5, 7.0]])               # orders (0,1) and (0,2) right, (1,2) wrong
    agree, pairs = rel.user_agreement(scores, ratings, items)
    assert pairs.tolist() == [3] and agree[0] == pytest.approx(2 / 3)
    K, P = rel.bucket_pairs(scores, ratings, items, np.array([0, 1, 1]), 2)
    assert P.tolist() == [[0, 1]] and K.tolist() == [[0, 0]]    # the one pair in bucket 1 is ordered wrong
    a = rel.discriminability_diagnostic(np.array([[0, -1]]), np.array([[0.9, 0.0]]), items, scores,
                                        np.array([[5, 6]]), np.array([[1.0, 0.2]]))
    assert a[0] == pytest.approx(3 / 4)                       # below 0.9: items 1, 2 and 6; not 5 (1.0)
    e = rel.exposure_diagnostic(items, np.array([1, 2, 3, 4]))
    assert e[0] == pytest.approx(np.mean([0, 1 / 3, 2 / 3]))


def test_vectorised_helpers_match_the_gate_and_metrics():
    rng = np.random.default_rng(0)
    x = rng.random((6, 21))
    x[0] = np.r_[np.full(9, 0.5), rng.uniform(0.6, 1, 6), rng.uniform(0, 0.4, 6)]   # ties at the median
    x[1] = 0.3                                                # every value tied: nobody admitted
    for row in x:
        assert np.array_equal(rel.half_gate_rows(row[None])[0], reliability_gate(torch.as_tensor(row), 0.5).numpy())
    y = rng.random((6, 21)) < 0.4
    assert np.allclose(rel.auc_rows(y, x), [auc(a, b) for a, b in zip(y, x)])
    v = rng.random(50)
    loop = rel.user_bootstrap_ci(lambda i: v[i].mean(), 50, 200, 0.1, 3)
    vec = rel.user_bootstrap_ci(lambda i: v[i].mean(1), 50, 200, 0.1, 3, vectorised=True)
    assert np.allclose(loop, vec) and loop[0] < v.mean() < loop[1]


def test_study_config_rejects_bad_values():
    with pytest.raises(ValueError, match="seeds"):
        CoatStudyConfig(seeds=(0, 0))
    with pytest.raises(ValueError, match="members"):
        CoatStudyConfig(members=1)
    with pytest.raises(ValueError, match="diagnostic_kinds"):
        CoatStudyConfig(kinds=("mf",), diagnostic_kinds=("ranker",))
    with pytest.raises(ValueError, match="weightings"):
        CoatStudyConfig(weightings=("naive", "snips"))
    assert CoatStudyConfig(weightings=("ips",)).weightings == ("naive", "ips")


def test_study_tables_on_small_matrices(data):
    st = run_study(data, CoatStudyConfig(seeds=(0, 1), members=2, n_boot=50, kinds=("lmf", "mf"),
                                         diagnostic_kinds=("lmf",), select=False))
    t = all_tables(st, data)
    assert set(t["rewards"].kind) == {"lmf", "mf"}
    assert len(t["accuracy_by_exposure"]) == 2 * 3 * 5 and len(t["ips_by_exposure"]) == 2 * 2 * 5
    auc_t = t["diagnostic_auc"]
    assert set(auc_t.diagnostic) == {"e", "u", "a", "a_self"} and auc_t.auc.between(0, 1).all()
    assert set(t["gate_audit"].gate) == {"e", "u", "a", "a_self", "random"}
    mse = t["ips_vs_naive"].query("metric == 'mse'")
    assert len(mse) == 2 and (mse.fixedseeds_boot_low <= mse.fixedseeds_boot_high).all()


def test_seeds_in_two_processes_give_the_same_study(data):
    cfg = CoatStudyConfig(seeds=(0, 1), members=2, n_boot=50, kinds=("lmf",), weightings=("naive", "ips"),
                          diagnostic_kinds=("lmf",), select=False)
    one, two = run_study(data, cfg, jobs=1), run_study(data, cfg, jobs=2)
    for key in one.scores:
        assert np.array_equal(one.scores[key], two.scores[key]) and np.array_equal(one.bconc[key], two.bconc[key])
    for k in ("u", "a", "a_self", "agree"):
        assert np.array_equal(one.diag["lmf"][k], two.diag["lmf"][k], equal_nan=True)      # NaN: no liked target
    assert one.runs.drop(columns="seconds").equals(two.runs.drop(columns="seconds"))
    assert not np.array_equal(one.scores[("lmf", "naive")][0], one.scores[("lmf", "naive")][1])   # seeds differ


# ------------------------------------------------------------------------------------ notebook 09
def test_notebook_setup_checks_parameters_before_any_work(coat_dir, tmp_path):
    with pytest.raises(ValueError, match="seeds"):
        notebook_setup(coat_dir, False, 4, [1, 1], 2, 100, str(tmp_path / "out"))
    with pytest.raises(ValueError, match="members"):
        notebook_setup(coat_dir, False, 4, [0], 1, 100, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_notebook_09_runs_on_small_matrices(coat_dir, tmp_path):
    papermill = pytest.importorskip("papermill")
    nb = ROOT / "notebooks" / "09_real_users_coat.ipynb"
    out = tmp_path / "figures"
    papermill.execute_notebook(str(nb), str(tmp_path / nb.name), kernel_name="python3", cwd=str(nb.parent),
                               progress_bar=False,
                               parameters={"data_dir": str(coat_dir), "verify_sha256": False, "seeds": [0, 1],
                                           "members": 2, "n_boot": 50, "out_dir": str(out)})
    for name in ("data", "rewards", "ips_vs_naive", "accuracy_by_exposure", "ips_by_exposure", "rare_gap",
                 "diagnostic_auc", "gate_audit", "runs", "selection"):
        for ext in ("csv", "md"):
            assert (out / f"nb09_{name}.{ext}").stat().st_size > 0, name
    for name in ("accuracy_by_exposure", "diagnostic_auc", "gate_audit"):
        for ext in ("png", "pdf"):
            assert (out / f"nb09_{name}.{ext}").stat().st_size > 0, name
    text = (tmp_path / nb.name).read_text()
    assert "(k) pairwise accuracy" in text and "(l) ranker" in text and "(m) ranker ips - naive" in text


def test_reproduce_runs_notebook_09_only_with_the_coat_folder(tmp_path):
    """reproduce.sh runs notebook 09 (without a profile parameter) when ADAGRPO_COAT_DIR is set and
    skips it with a message otherwise."""
    import shutil
    import subprocess
    shutil.copy(ROOT / "reproduce.sh", tmp_path / "reproduce.sh")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "setup_env.sh").write_text("true\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    pm = tmp_path / ".venv" / "bin" / "papermill"
    pm.write_text('#!/usr/bin/env bash\ncp "$1" "$2"\necho "$@" >> papermill_args\n')
    pm.chmod(0o755)
    py = tmp_path / ".venv" / "bin" / "python"          # the run's page and the final check: succeed
    py.write_text("#!/usr/bin/env bash\ntrue\n")
    py.chmod(0o755)
    (tmp_path / "notebooks").mkdir()
    for nb in ("01_a.ipynb", "09_real_users_coat.ipynb"):
        (tmp_path / "notebooks" / nb).write_text("{}")
    env = {k: v for k, v in os.environ.items() if k != "ADAGRPO_COAT_DIR"}
    r = subprocess.run(["bash", "reproduce.sh", "tiny"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "skipping 09_real_users_coat.ipynb" in r.stdout and "ADAGRPO_COAT_DIR" in r.stdout
    assert sorted(p.name for p in (tmp_path / "notebooks" / "executed" / "tiny").iterdir()) == ["01_a.ipynb"]
    (tmp_path / "papermill_args").unlink()
    r = subprocess.run(["bash", "reproduce.sh", "tiny"], cwd=tmp_path, env={**env, "ADAGRPO_COAT_DIR": str(tmp_path)},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    args = (tmp_path / "papermill_args").read_text().splitlines()
    assert "-p profile tiny" in args[0] and "09_real_users_coat" in args[1] and "profile" not in args[1]
