"""Batched runs (train/batched.py, execution.execute_batch): a batch of one is the per-run step, each run
of a batch gets its own run's loss and gradients, plans are deterministic and keyed by their batch,
resume works, the executor batches through a process pool and Dask, and over ten seeds the batched
path's per-seed gains agree with the per-run path's."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from adagrpo_core.configs import get_profile
from adagrpo_core.eval.stats import mean_ci
from adagrpo_core.suite.experiments import MethodSpec, main_results
from adagrpo_core.model.policy import load_policy
from adagrpo_core.model.stacked import stack_policies
from adagrpo_core.rl.step import compute_loss, sample_and_score, sample_and_score_runs
from adagrpo_core.runs import batch_of, plan_runs, plan_units, run_key
from adagrpo_core.execution import _run_inputs, prepare
from adagrpo_core.train.batched import (
    check_batch,
    clip_per_run,
    run_optimizer_state,
    stacked_optimizer_state,
    train_rl_batched,
)

METHODS = [MethodSpec("nll", "nll"), MethodSpec("mix(1)", "mix", grpo={"lam": 1.0}),
           MethodSpec("adagrpo", "adagrpo"), MethodSpec("random", "random")]


def tiny(batch=1, steps=4):
    return replace(get_profile("tiny").with_rl_steps(steps), batch=batch)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    c = tmp_path_factory.mktemp("cache")
    prepare(tiny(), c, progress=False)
    return c


def first_step(prof, cache, method, seeds, tmp_path):
    """(plain policy, stacked policy, the K runs' first batches, inputs) for a first RL step."""
    specs = [s for s in plan_runs(prof, [m for m in METHODS if m.name in (method, "adagrpo")], seeds, tmp_path)
             if s.name == method]
    x = _run_inputs(specs[0], prof, cache)
    world, sids = x["world"], x["sids"]
    plain = load_policy(x["sft"], sids, "cpu").train()
    train = world.examples("train", plain.cfg.max_history)
    batches = [train.subset(np.random.default_rng([s.seed, 1, 0]).permutation(len(train))[:prof.rl.batch_size])
               for s in specs]
    return plain, specs, batches, x


@pytest.mark.parametrize("method", ["mix(1)", "adagrpo", "nll"])
def test_each_run_of_a_batch_gets_its_own_first_step_loss_and_gradients(cache, tmp_path, method):
    prof = tiny()
    plain, specs, batches, x = first_step(prof, cache, method, [0, 1, 2], tmp_path)
    sids, grpo, gate = x["sids"], x["grpo"], x["gate"]
    codes = torch.as_tensor(sids.codes)
    for K in (1, 3):            # a batch of one, and a batch of three seeds
        stacked = stack_policies([plain] * K)
        gens = [torch.Generator().manual_seed(s.seed) for s in specs[:K]]
        scored = sample_and_score_runs(stacked, x["reward"], batches[:K], codes, sids.trie, grpo, gate, gens,
                                       [None] * K, x["truth"], reliability=x["reliability"])
        losses = [compute_loss(sc, grpo, gate)[0] for sc in scored]
        torch.stack(losses).sum().backward()
        for k, spec in enumerate(specs[:K]):
            plain.zero_grad()
            alone = sample_and_score(plain, x["reward"], batches[k], codes, sids.trie, grpo, gate,
                                     torch.Generator().manual_seed(spec.seed), None, x["truth"],
                                     reliability=x["reliability"])
            loss, _ = compute_loss(alone, grpo, gate)
            loss.backward()
            assert losses[k].item() == pytest.approx(loss.item(), rel=1e-5, abs=1e-6), (K, k)
            assert torch.equal(scored[k].gate, alone.gate)
            for (name, sp), (_, pp) in zip(stacked.named_parameters(), plain.named_parameters()):
                scale = max(pp.grad.abs().max().item(), 1e-8)
                torch.testing.assert_close(sp.grad[k], pp.grad, rtol=1e-4, atol=1e-5 * scale,
                                           msg=f"K={K}, run {k}: gradient of {name}")


def test_clipping_is_per_run_and_adamw_state_round_trips():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(3, 4, 5))
    q = torch.nn.Parameter(torch.randn(3, 5))
    p.grad, q.grad = torch.randn(3, 4, 5) * torch.tensor([0.01, 1.0, 10.0])[:, None, None], torch.randn(3, 5)
    want = []
    for k in range(3):
        a, b = p.grad[k].clone(), q.grad[k].clone()
        pa, pb = torch.nn.Parameter(torch.zeros_like(a)), torch.nn.Parameter(torch.zeros_like(b))
        pa.grad, pb.grad = a, b
        torch.nn.utils.clip_grad_norm_([pa, pb], 1.0)
        want.append((pa.grad, pb.grad))
    clip_per_run([p, q], 1.0, 3)
    for k, (a, b) in enumerate(want):
        torch.testing.assert_close(p.grad[k], a)
        torch.testing.assert_close(q.grad[k], b)
    opt = torch.optim.AdamW([p, q], lr=1e-2)
    opt.step()
    per_run = [run_optimizer_state(opt, k) for k in range(3)]
    assert per_run[1]["state"][0]["exp_avg"].shape == (4, 5)
    back = stacked_optimizer_state(per_run)
    for i in (0, 1):
        for n in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(back["state"][i][n], opt.state_dict()["state"][i][n])


def test_batches_are_planned_by_seed_and_keyed_by_their_batch(tmp_path):
    assert batch_of(5, range(10), 4) == (4, 5, 6, 7)
    assert batch_of(9, range(10), 4) == (8, 9)
    assert batch_of(3, [0, 3, 4], 4) == (0, 3) and batch_of(4, [0, 3, 4], 4) == ()
    assert batch_of(2, range(10), 1) == ()
    alone = {(s.name, s.seed): s for s in plan_runs(tiny(1), METHODS, range(5), tmp_path)}
    batched = {(s.name, s.seed): s for s in plan_runs(tiny(2), METHODS, range(5), tmp_path)}
    more = {(s.name, s.seed): s for s in plan_runs(tiny(2), METHODS, range(7), tmp_path)}
    assert batched[("adagrpo", 0)].batch == (0, 1) and batched[("adagrpo", 4)].batch == ()
    assert batched[("adagrpo", 0)].key != alone[("adagrpo", 0)].key          # the batch is in the key
    assert batched[("adagrpo", 4)].key == alone[("adagrpo", 4)].key          # a seed alone keeps its key
    assert batched[("random", 1)].reference == batched[("adagrpo", 1)].out_dir
    assert all(more[k].key == batched[k].key for k in batched if k[1] < 4)   # more seeds: full batches keep keys
    assert more[("adagrpo", 4)].batch == (4, 5)
    units = plan_units(list(batched.values()))
    assert sorted(len(u) for u in units) == [1] * 4 + [2] * 8
    assert all(len({s.name for s in u}) == 1 for u in units)
    prof = tiny(2)
    spec = batched[("adagrpo", 0)]
    assert run_key(prof, spec.grpo, spec.gate, spec.rl, None, (0, 1)) == spec.key
    with pytest.raises(ValueError, match="batch must be >= 1"):
        tiny(0)


def test_bad_batches_raise():
    rl, gate = tiny().rl, tiny().gate
    with pytest.raises(ValueError, match="differ only in seed"):
        check_batch([rl, replace(rl, seed=1, lr=1.0)], [gate, gate])
    with pytest.raises(ValueError, match="share one method"):
        check_batch([rl, replace(rl, seed=1)], [gate, replace(gate, method="nll")])
    with pytest.raises(ValueError, match="distinct seeds"):
        check_batch([rl, rl], [gate, gate])
    with pytest.raises(ValueError, match="base_competes"):
        check_batch([replace(rl, base_competes=True)], [gate])


def results(rows):
    return rows.drop(columns=["run_dir", "train_seconds"]).reset_index(drop=True)


def test_batched_plans_are_deterministic_and_resume(cache, tmp_path):
    prof = tiny(3)
    a, _ = main_results(prof, methods=METHODS[:3], seeds=(0, 1, 2), out_root=tmp_path / "a", cache_dir=cache,
                        progress=False)
    b, _ = main_results(prof, methods=METHODS[:3], seeds=(0, 1, 2), out_root=tmp_path / "b", cache_dir=cache,
                        progress=False)
    pd.testing.assert_frame_equal(results(a), results(b))
    assert set(a.run_dir.map(lambda d: d.split("seed")[1].split("/")[0])) == {"0", "1", "2"}
    # stopped after 2 of 4 steps, then run again: the batch resumes and gives the same checkpoints
    specs = [s for s in plan_runs(prof, METHODS[:3], (0, 1, 2), tmp_path / "c") if s.name == "adagrpo"]
    x = _run_inputs(specs[0], prof, cache)
    args = (x["world"], x["sids"], x["sft"], x["reward"], x["grpo"], [s.gate for s in specs], [s.rl for s in specs],
            [s.out_dir for s in specs])
    kw = {"true_utility": x["truth"], "reliability": x["reliability"], "progress": False}
    train_rl_batched(*args, stop_after=2, **kw)
    resumed = train_rl_batched(*args, **kw)
    whole = pd.concat([pd.read_csv(f"{d}/steps.csv") for d in a[a.method == "adagrpo"].run_dir.unique()])
    got = pd.concat([r.steps for r in resumed])
    np.testing.assert_allclose(got["loss"].to_numpy(), whole["loss"].to_numpy(), rtol=1e-6)


def test_batch_through_a_process_pool_and_dask_matches_in_process(cache, tmp_path, dask_scheduler):
    prof = tiny(2)
    here, _ = main_results(prof, methods=METHODS[:3], seeds=(0, 1), out_root=tmp_path / "here", cache_dir=cache,
                           progress=False)
    pool, _ = main_results(prof, methods=METHODS[:3], seeds=(0, 1), out_root=tmp_path / "pool", cache_dir=cache,
                           progress=False, jobs=2)
    pd.testing.assert_frame_equal(results(here), results(pool))
    dask_rows, _ = main_results(prof, methods=METHODS[:3], seeds=(0, 1), out_root=tmp_path / "dask",
                                cache_dir=cache, progress=False, scheduler=dask_scheduler)
    pd.testing.assert_frame_equal(results(here), results(dask_rows))


def test_ten_seeds_batched_agree_with_per_run(cache, tmp_path):
    """Per-seed gains of mix(1) and adagrpo over continued NLL (sim CTR, HR@10, final checkpoint):
    the batched path's mean lies inside the per-run path's t-interval over the ten seeds."""
    gains = {}
    for K in (1, 5):
        rows, _ = main_results(tiny(K), methods=METHODS[:3], seeds=range(10), out_root=tmp_path / f"k{K}",
                               cache_dir=cache, progress=False)
        fin = rows[rows.checkpoint == "final"].set_index(["method", "seed"])
        gains[K] = {(m, c): (fin.loc[m][c] - fin.loc["nll"][c]).to_numpy()
                    for m in ("mix(1)", "adagrpo") for c in ("sim_ctr", "HR@10")}
    for key, per_run in gains[1].items():
        mean, half = mean_ci(per_run)
        assert abs(gains[5][key].mean() - mean) <= max(half, 1e-9), (key, gains[5][key], per_run)


def test_cli_and_notebook_parameter_set_the_batch(cache, tmp_path, monkeypatch):
    from adagrpo_core import cli
    from adagrpo_core.suite.notebook import setup
    monkeypatch.setenv("ADAGRPO_CACHE", str(cache))
    assert cli.main(["--out", str(tmp_path / "out"), "main-results", "--profile", "tiny", "--seeds", "0", "1",
                     "--steps", "2", "--batch", "2", "--jobs", "1", "--runs", str(tmp_path / "runs")]) == 0
    dirs = sorted(p.name for p in (tmp_path / "runs" / "tiny").glob("seed*/*"))
    key = run_key(tiny(2, 2), *(lambda s: (s.grpo, s.gate, s.rl, None, (0, 1)))(
        plan_runs(tiny(2, 2), METHODS[:1], [0, 1], tmp_path)[0]))
    assert f"nll-{key}" in dirs                                   # the batched run's folder names its batch
    nb = setup("03_main_results", {"profile": "tiny", "batch": 3, "out_dir": str(tmp_path / "nb")})
    assert nb.prof.batch == 3
    with pytest.raises(ValueError, match="batch"):
        setup("03_main_results", {"profile": "tiny", "batch": -1, "out_dir": str(tmp_path / "nb")})
