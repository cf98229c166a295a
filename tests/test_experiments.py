"""Experiment drivers: main_results on the tiny profile, run keys, the run executor (serial,
process pool, Dask), interruption, per-sample hits and paired tests."""
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adagrpo_core.configs import get_profile
from adagrpo_core.eval.evaluate import run_hits
from adagrpo_core.common.machine import kind_digest, machine_kind
from adagrpo_core.common.storage import file_digest
from adagrpo_core.suite.experiments import MethodSpec, gains_over_base, main_results, paired_tests
from adagrpo_core.pipeline import get_sids, get_world, ranker_file
from adagrpo_core.runs import plan_runs, run_key

METHODS = [MethodSpec("nll", "nll"), MethodSpec("adagrpo", "adagrpo"), MethodSpec("random", "random")]
ROOT = Path(__file__).resolve().parent.parent


def tiny(steps=4):
    return get_profile("tiny").with_rl_steps(steps)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory, cache):
    root = tmp_path_factory.mktemp("runs")
    prof = tiny()
    rows, summary = main_results(prof, methods=METHODS, seeds=(0, 1), out_root=root, cache_dir=cache, progress=False)
    return prof, prof.rl, root, cache, rows, summary


def test_main_results_rows_and_summary(tiny_runs):
    _, _, root, _, rows, summary = tiny_runs
    assert len(rows) == 3 * 2 * 2 and set(rows.checkpoint) == {"best", "final"}
    assert list(dict.fromkeys(summary.method)) == ["nll", "adagrpo", "random"]
    assert (summary.seeds == 2).all()
    for d in rows.run_dir.unique():
        assert (Path(d) / "results.csv").exists() and (Path(d) / "config.json").exists()
        assert Path(d).parent.name in ("seed0", "seed1")


def test_changing_any_config_field_gives_a_new_run_key():
    prof = tiny()
    base = run_key(prof, prof.grpo, prof.gate, prof.rl, None)
    variants = [replace(prof, world=replace(prof.world, exposure_bias=0.3)),
                replace(prof, sid=replace(prof.sid, codebook_size=9)),
                replace(prof, policy=replace(prof.policy, n_layer=3)),
                replace(prof, sft=replace(prof.sft, lr=1e-3)),
                replace(prof, ranker=replace(prof.ranker, embed_dim=8)),
                replace(prof, reward=replace(prof.reward, output="logit"))]
    keys = [run_key(p, p.grpo, p.gate, p.rl, None) for p in variants]
    keys += [run_key(prof, replace(prof.grpo, lam=0.3), prof.gate, prof.rl, None),
             run_key(prof, prof.grpo, replace(prof.gate, tau=0.3), prof.rl, None),
             run_key(prof, prof.grpo, prof.gate, replace(prof.rl, steps=8), None),
             run_key(prof, prof.grpo, prof.gate, prof.rl, "another-reference")]
    assert base not in keys and len(set(keys)) == len(keys)


def test_a_finished_run_is_not_reused_for_other_steps(tiny_runs):
    prof, _, root, cache, rows, _ = tiny_runs
    other = plan_runs(tiny(steps=6), METHODS[:1], [0], root)[0]
    assert other.out_dir not in set(rows.run_dir)
    again = plan_runs(prof, METHODS[:1], [0], root)[0]
    assert again.out_dir in set(rows.run_dir)                       # same config: the same folder


def test_plan_rejects_bad_seeds_and_lone_random():
    with pytest.raises(ValueError, match="seeds"):
        plan_runs(tiny(), METHODS, [0, 0], "runs")
    with pytest.raises(ValueError, match="seeds"):
        plan_runs(tiny(), METHODS, [-1], "runs")
    with pytest.raises(ValueError, match="adagrpo"):
        plan_runs(tiny(), [MethodSpec("random", "random")], [0], "runs")


def _tables(rows):
    return rows.drop(columns=["run_dir", "train_seconds"]).to_csv(index=False)


def test_process_pool_and_dask_match_serial(tiny_runs, tmp_path, dask_scheduler):
    """A 2-process pool and a 2-worker Dask LocalCluster give byte-identical result tables."""
    prof, _, _, cache, rows, _ = tiny_runs
    serial = _tables(rows[rows.seed == 0])
    pool, _ = main_results(prof, methods=METHODS, seeds=(0,), out_root=tmp_path / "pool", cache_dir=cache,
                           progress=False, jobs=2)
    assert _tables(pool) == serial
    dask_rows, _ = main_results(prof, methods=METHODS, seeds=(0,), out_root=tmp_path / "dask", cache_dir=cache,
                                progress=False, scheduler=dask_scheduler)
    assert _tables(dask_rows) == serial


def test_killed_sweep_leaves_no_half_written_run_and_resumes(tiny_runs, tmp_path):
    """SIGKILL a whole main-results sweep in the middle; re-running completes it with the same tables."""
    prof, _, _, cache, rows, _ = tiny_runs
    root = tmp_path / "killed"
    code = ("import sys; from adagrpo_core.configs import get_profile; from adagrpo_core.suite.experiments import "
            "MethodSpec, main_results; p = get_profile('tiny').with_rl_steps(4); "
            "ms = [MethodSpec('nll','nll'), MethodSpec('adagrpo','adagrpo'), MethodSpec('random','random')]; "
            f"main_results(p, methods=ms, seeds=(0, 1), out_root=r'{root}', cache_dir=r'{cache}', progress=False)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(root.glob("seed*/*/last.pt")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for d in root.glob("seed*/*"):   # a folder is either finished or resumable; never a results.csv alone
        if (d / "results.csv").exists():
            assert (d / "final.pt").exists() and (d / "best.pt").exists()
    again, _ = main_results(prof, methods=METHODS, seeds=(0, 1), out_root=root, cache_dir=cache, progress=False)
    assert _tables(again) == _tables(rows)
    assert not list(root.glob("seed*/*/.*.tmp"))   # temporary files of a killed write are cleaned up


def test_run_hits_reproduce_the_reported_hr(tiny_runs):
    prof, train, root, cache, rows, _ = tiny_runs
    world = get_world(prof.world, cache)
    sids = get_sids(world, prof.sid, cache)
    for r in rows.itertuples():
        hits = run_hits(r.run_dir, world, sids, replace(train, seed=int(r.seed)), r.checkpoint, 10)
        assert len(hits) == train.test_samples
        assert hits.mean() == pytest.approx(rows.loc[r.Index, "HR@10"], abs=1e-12)
    nll0 = rows[(rows.method == "nll") & (rows.seed == 0)].run_dir.iloc[0]
    assert (Path(nll0) / "hits_best_k10.npy").exists()   # cached


def test_paired_tests_counts_are_consistent(tiny_runs):
    prof, train, root, cache, rows, _ = tiny_runs
    t = paired_tests(prof, rows, [("adagrpo", "random"), ("adagrpo", "nll")], kind="best", cache_dir=cache)
    assert list(t.seed) == ["0", "1", "pooled"] * 2
    for _, g in t.groupby(["method", "reference"]):
        per_seed, pooled = g[g.seed != "pooled"], g[g.seed == "pooled"].iloc[0]
        assert pooled.method_only_hits == per_seed.method_only_hits.sum()
        assert pooled.reference_only_hits == per_seed.reference_only_hits.sum()
        np.testing.assert_allclose(per_seed["diff"], per_seed["HR@10_method"] - per_seed["HR@10_reference"])
        # the discordant counts explain the HR difference exactly
        np.testing.assert_allclose(per_seed["diff"] * per_seed["n"],
                                   per_seed.method_only_hits - per_seed.reference_only_hits)
        assert ((0 <= g.mcnemar_p) & (g.mcnemar_p <= 1)).all()


def test_run_hits_rejects_bad_kind(tiny_runs):
    prof, train, root, cache, rows, _ = tiny_runs
    world = get_world(prof.world, cache)
    with pytest.raises(ValueError, match="kind"):
        run_hits(rows.run_dir.iloc[0], world, get_sids(world, prof.sid, cache), train, "last")


def test_results_do_not_depend_on_the_callers_thread_count(tiny_runs, tmp_path):
    import torch
    prof, _, _, cache, rows, _ = tiny_runs
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        again, _ = main_results(prof, methods=METHODS[:2], seeds=(0,), out_root=tmp_path, cache_dir=cache,
                                progress=False)
    finally:
        torch.set_num_threads(before)
    ref = rows[(rows.seed == 0) & rows.method.isin(["nll", "adagrpo"])]
    assert _tables(again) == _tables(ref.reset_index(drop=True))


KILL_CODE = """
import os, signal, sys
from adagrpo_core.common import storage
from adagrpo_core.configs import get_profile
from adagrpo_core.runs import MethodSpec, plan_runs
from adagrpo_core.execution import execute
mode, root, cache = sys.argv[1], sys.argv[2], sys.argv[3]
calls = [0]
write = storage.atomic_write_bytes
def dying_write(path, data):      # SIGKILL after the temporary file is written, before it replaces the target
    if str(path).endswith("last.pt") and mode == "mid-write":
        calls[0] += 1
        if calls[0] == 2:
            import tempfile
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path) + ".", suffix=".tmp")
            os.write(fd, data[: len(data) // 2]); os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    return write(path, data)
storage.atomic_write_bytes = dying_write
p = get_profile("tiny").with_rl_steps(4)
p = p.__class__(**{**p.__dict__, "rl": p.rl.__class__(**{**p.rl.__dict__, "ckpt_every": 1})})
specs = plan_runs(p, [MethodSpec("adagrpo", "adagrpo")], [0], root)
if mode == "mid-step":
    from adagrpo_core.rl import step as st
    orig, n = st.compute_loss, [0]
    def dying_loss(*a, **k):
        n[0] += 1
        if n[0] == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return orig(*a, **k)
    st.compute_loss = dying_loss
    import adagrpo_core.train.rl as trl
    trl.compute_loss = dying_loss
execute(specs, p, cache, progress=False)
"""


@pytest.fixture(scope="module")
def uninterrupted_run(tiny_runs, tmp_path_factory):
    """The uninterrupted run both kill modes compare with (the same code path, trained once)."""
    _, _, _, cache, _, _ = tiny_runs
    root = tmp_path_factory.mktemp("uninterrupted")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    clean = subprocess.run([sys.executable, "-c", KILL_CODE, "none", str(root), str(cache)], env=env)
    return clean.returncode, next(root.glob("seed0/*"))


@pytest.mark.parametrize("mode", ["mid-step", "mid-write"])
def test_killed_rl_run_resumes_to_identical_outputs(tiny_runs, uninterrupted_run, tmp_path, mode):
    """SIGKILL an RL run in the middle of a step, or in the middle of writing last.pt; the resumed
    run's logs, checkpoints' weights and results equal an uninterrupted run's."""
    import torch
    prof, _, _, cache, _, _ = tiny_runs
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run([sys.executable, "-c", KILL_CODE, mode, str(tmp_path / "a"), str(cache)], env=env)
    assert killed.returncode == -signal.SIGKILL
    run = next((tmp_path / "a").glob("seed0/*"))
    assert (run / "last.pt").exists() and not (run / "results.csv").exists()
    done = subprocess.run([sys.executable, "-c", KILL_CODE, "none", str(tmp_path / "a"), str(cache)], env=env)
    assert done.returncode == 0
    returncode, other = uninterrupted_run
    assert returncode == 0
    for name in ("steps.csv", "checkpoints.csv"):
        assert (run / name).read_text() == (other / name).read_text(), name
    cols = lambda f: pd.read_csv(f).drop(columns=["train_seconds"])   # noqa: E731
    assert cols(run / "results.csv").equals(cols(other / "results.csv"))
    a = torch.load(run / "final.pt", weights_only=False)["model"]
    b = torch.load(other / "final.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(run.glob(".*.tmp"))


def test_parallel_prepare_builds_the_same_sft_and_ranker(tiny_runs, tmp_path):
    """jobs=2 trains the SFT base and the ranker in two processes: the artefacts equal the serial ones."""
    import torch
    from adagrpo_core.pipeline import get_ranker, get_sft, ranker_cached, sft_cached
    from adagrpo_core.execution import prepare
    prof, _, _, serial_cache, _, _ = tiny_runs
    prepare(prof, tmp_path, progress=False, jobs=2)
    world = get_world(prof.world, tmp_path)
    sids = get_sids(world, prof.sid, tmp_path)
    assert sft_cached(world, sids, prof.policy, prof.sft, tmp_path) and ranker_cached(world, prof.ranker, tmp_path)
    for kind in ("best.pt", "final.pt"):
        a = torch.load(get_sft(world, sids, prof.policy, prof.sft, serial_cache) / kind, weights_only=False)["model"]
        b = torch.load(get_sft(world, sids, prof.policy, prof.sft, tmp_path) / kind, weights_only=False)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra = get_ranker(world, prof.ranker, serial_cache).state_dict()
    rb = get_ranker(world, prof.ranker, tmp_path).state_dict()
    assert all(torch.equal(ra[k], rb[k]) for k in ra)


def test_gains_over_base_pair_each_run_with_the_sft_base(tiny_runs):
    from adagrpo_core.eval.evaluate import start_ranked, test_examples
    from adagrpo_core.suite.experiments import gain_headline, gains_over_base
    from adagrpo_core.pipeline import get_sft
    prof, tcfg, _, cache, rows, _ = tiny_runs
    gains = gains_over_base(prof, rows, cache)
    assert gains.method.tolist() == ["SFT base", "nll", "adagrpo", "random"]
    world = get_world(prof.world, cache)
    sids = get_sids(world, prof.sid, cache)
    ckpt = get_sft(world, sids, prof.policy, prof.sft, cache, progress=False) / "best.pt"
    base = {}
    for s in (0, 1):
        ranked, target = start_ranked(world, sids, ckpt, replace(tcfg, seed=s))
        assert len(target) == len(test_examples(world, prof.policy.max_history, tcfg.test_samples, s).target)
        base[s] = (ranked[:, :10] == target[:, None]).any(1)
    assert list(ckpt.parent.glob("best_test_ranked_*_n100_s0_b20.npy"))        # cached next to the base
    assert gains.set_index("method").loc["SFT base", "HR@10"] == pytest.approx(np.mean([b.mean() for b in base.values()]))
    for m in ("nll", "adagrpo", "random"):
        r = gains.set_index("method").loc[m]
        hits = {s: run_hits(rows[(rows.method == m) & (rows.seed == s)].run_dir.iloc[0], world, sids,
                            replace(tcfg, seed=s)) for s in (0, 1)}
        d = [hits[s].mean() - base[s].mean() for s in (0, 1)]
        assert r["gain_HR@10"] == pytest.approx(np.mean(d))
        n = len(base[0])
        assert (r["method_only_hits"] - r["base_only_hits"]) / n == pytest.approx(sum(d))   # the discordant pairs
        assert 0 <= r["p_vs_base"] <= r["holm_vs_base"] <= 1
    assert gains.set_index("method").loc["nll"].isna()["p_vs_nll"]             # no test of NLL against itself
    head = gain_headline(gains, rows)
    assert head.row.tolist() == ["SFT base (step 0)", "continued NLL", "AdaGRPO", "random at AdaGRPO's rate"]


def test_ab_reference_users_follow_the_runs_and_calibration_takes_all(tiny_runs):
    from adagrpo_core.suite.experiments import ab_reference
    from adagrpo_core.eval.evaluate import test_examples
    prof, _, _, cache, _, _ = tiny_runs
    n_all = len(test_examples(get_world(prof.world, cache), prof.policy.max_history, 0, 0))
    assert 0 < prof.rl.test_samples < n_all          # tiny evaluates runs on a draw of the test users
    runs_like, _ = ab_reference(prof, cache, logging_samples=2)
    every, ctr = ab_reference(prof, cache, logging_samples=2, test_samples=0)
    assert set(runs_like["users"]) == {prof.rl.test_samples}
    assert set(every["users"]) == {n_all} and len(ctr["sft"]) == n_all


def test_comparisons_pair_methods_on_their_common_seeds(tiny_runs):
    """A method with fewer seeds (the answer points run more) is paired on the seeds both have; the
    pooled rows carry the seed-level columns and the user bootstrap says it holds the seeds fixed."""
    from adagrpo_core.suite.experiments import gains_over_base
    prof, _, _, cache, rows, _ = tiny_runs
    fewer = rows[~((rows.method == "random") & (rows.seed == 1))]
    t = paired_tests(prof, fewer, [("adagrpo", "random"), ("adagrpo", "nll")], kind="best", cache_dir=cache)
    assert list(t.seed) == ["0", "pooled", "0", "1", "pooled"]
    pooled = t[t.seed == "pooled"].set_index("reference")
    assert pooled.loc["random", "seeds"] == 1 and pooled.loc["nll", "seeds"] == 2
    full = paired_tests(prof, rows, [("adagrpo", "random")], kind="best", cache_dir=cache)
    assert pooled.loc["random", "diff"] == pytest.approx(full[full.seed == "0"]["diff"].iloc[0])
    nll = pooled.loc["nll"]
    assert nll.diff_hboot_low <= nll["diff"] <= nll.diff_hboot_high
    assert nll.sim_ctr_fixedseeds_boot_low <= nll.sim_ctr_diff <= nll.sim_ctr_fixedseeds_boot_high
    assert "sim_ctr_ci_low" not in t and len(nll.diff_per_seed.split(";")) == 2
    gains = gains_over_base(prof, fewer, cache).set_index("method")
    assert gains.loc["random", "seeds"] == 1 and gains.loc["adagrpo", "seeds"] == 2
    assert gains.loc["random", "seeds_vs_nll"] == 1
    assert 0 <= gains.loc["adagrpo", "gain_HR@10_p_seed"] <= gains.loc["adagrpo", "gain_HR@10_p_seed_holm"] <= 1


def test_every_run_row_records_where_it_comes_from(tiny_runs):
    """Key, commit, SFT base and reward model digests, machine kind: in every row of results.csv."""
    prof, _, _, cache, rows, _ = tiny_runs
    assert {"run_key", "commit", "sft_hash", "reward_hash", "machine_kind"} <= set(rows.columns)
    assert (rows.machine_kind == kind_digest(machine_kind(threads=1))).all() and rows.commit.str.len().min() >= 7
    assert set(rows[rows.method == "nll"].reward_hash) == {"none"}         # continued NLL reads no reward
    ranker = ranker_file(prof.world, prof.ranker, cache)
    assert set(rows[rows.method != "nll"].reward_hash) == {file_digest(ranker)}
    assert rows.sft_hash.nunique() == 1
    assert all(Path(r.run_dir).name.endswith(r.run_key) for r in rows.itertuples())


def test_pairing_runs_of_two_machine_kinds_is_refused(tiny_runs):
    prof, _, _, cache, rows, _ = tiny_runs
    mixed = rows.copy()
    mixed.loc[mixed.method == "random", "machine_kind"] = "0123456789ab"
    with pytest.raises(ValueError, match="one machine kind"):
        paired_tests(prof, mixed, [("adagrpo", "random")], cache_dir=cache)
    with pytest.raises(ValueError, match="0123456789ab"):
        gains_over_base(prof, mixed, cache)
    assert len(paired_tests(prof, rows, [("adagrpo", "random")], cache_dir=cache))     # one kind: paired as before


def test_tables_built_from_runs_carry_their_provenance(tiny_runs):
    """The summary, the paired tests and the gains over the base say which machine kind, commit and
    SFT base their runs came from, and how many reward models they read."""
    prof, _, _, cache, rows, summary = tiny_runs
    kind = kind_digest(machine_kind(threads=1))
    tests = paired_tests(prof, rows, [("adagrpo", "random")], cache_dir=cache)
    for table in (summary, tests, gains_over_base(prof, rows, cache)):
        assert (table.machine_kind == kind).all() and (table.reward_models == 1).all()
        assert table.commit.iloc[0] == rows.commit.iloc[0] and table.sft_hash.iloc[0] == rows.sft_hash.iloc[0]
