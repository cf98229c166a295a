"""Evaluation of a policy on held-out samples: HR@K, NDCG@K and the hallucination rate from beam
search, in two modes (trie-constrained, and unconstrained where invalid tuples can appear); the
fixed validation and test draws; the test metrics of a run's best and final checkpoints with the
per-sample hits the paired tests use; the most-popular baseline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..common.checks import check_choice, check_int
from ..common.runtime import progress_bar
from ..data.interactions import Examples, Interactions
from ..model.decoding import beam_search
from ..model.policy import SIDPolicy, load_policy
from ..model.semantic_ids import SemanticIDs
from ..model.stacked import stack_policies
from ..common.storage import atomic_save_npy, file_digest, load_checkpoint
from .ab_test import slate_click_stats
from .metrics import ranking_metrics

MODES = ("constrained", "unconstrained")


def ranked_by_mode(model: SIDPolicy, sids: SemanticIDs, examples: Examples, beam_width: int = 20,
                   num_return: int | None = None, modes=("constrained",), batch_size: int = 256,
                   progress: bool = False) -> dict:
    """Beam-search top-N item ids for every example in each decoding mode: {mode: [n, N]}, -1 =
    invalid tuple. Each batch's histories are encoded once and every mode's beam search starts
    from that one cache (the modes differ only in the trie mask), so the test set's constrained
    and unconstrained rankings cost one encoding, not two; the rankings are those of separate
    searches (the encoding is the same computation)."""
    return ranked_by_mode_runs(model, sids, [examples], beam_width, num_return, modes, batch_size, progress)[0]


def ranked_by_mode_runs(model: SIDPolicy, sids: SemanticIDs, examples: list, beam_width: int = 20,
                        num_return: int | None = None, modes=("constrained",), batch_size: int = 256,
                        progress: bool = False) -> list[dict]:
    """:func:`ranked_by_mode` for K runs at once: ``model`` their stacked policy
    (``model/stacked.py``; a plain one for K = 1) and ``examples`` their K example sets, of one
    size. Each step decodes ``batch_size`` examples of every run as one batch (run-major)."""
    check_int("batch_size", batch_size, lo=1)
    for mode in modes:
        check_choice("mode", mode, MODES)
    K, n = len(examples), len(examples[0])
    if any(len(e) != n for e in examples):
        raise ValueError(f"the runs' example sets must have one size, got {[len(e) for e in examples]}")
    trie = sids.trie.to(model.device)
    was_training = model.training
    model.eval()
    out = [{mode: [] for mode in modes} for _ in range(K)]
    rng = range(0, n, batch_size)
    if progress:
        rng = progress_bar(rng, desc="beam search", leave=False)
    with torch.no_grad():
        for s in rng:
            hist = np.concatenate([e.history[s:s + batch_size] for e in examples])              # [K*b, H]
            cache = model.encode(torch.as_tensor(hist, device=model.device))
            for mode in modes:
                beams = beam_search(model, None, beam_width, num_return, trie=trie,
                                    constrained=mode == "constrained", cache=cache)
                items = beams.items.cpu().numpy()
                for k, part in enumerate(np.split(items, K)):
                    out[k][mode].append(part)
    model.train(was_training)
    empty = np.zeros((0, num_return or beam_width), dtype=np.int64)
    return [{mode: np.concatenate(r) if r else empty for mode, r in o.items()} for o in out]


def ranked_items(model: SIDPolicy, sids: SemanticIDs, examples: Examples, beam_width: int = 20,
                 num_return: int | None = None, constrained: bool = True, batch_size: int = 256,
                 progress: bool = False) -> np.ndarray:
    """Beam-search top-N item ids for every example: [n, N], -1 = invalid tuple."""
    mode = "constrained" if constrained else "unconstrained"
    return ranked_by_mode(model, sids, examples, beam_width, num_return, (mode,), batch_size, progress)[mode]


def evaluate_policy(model: SIDPolicy, sids: SemanticIDs, examples: Examples, beam_width: int = 20,
                    ks=(5, 10, 20), modes=MODES, batch_size: int = 256, progress: bool = False,
                    ranked_out: dict | None = None) -> dict:
    """Metrics per decoding mode, flattened into one dict: e.g. ``HR@10`` (constrained) and
    ``HR@10_unc``, ``halluc_unc`` (unconstrained). Beam width must be >= max(ks).
    ``ranked_out``: a dict that receives each mode's ranked items [n, max(ks)] (for per-sample
    analyses such as paired tests, without a second beam search)."""
    return evaluate_runs(model, sids, [examples], beam_width, ks, modes, batch_size, progress,
                         None if ranked_out is None else [ranked_out])[0]


def evaluate_runs(model: SIDPolicy, sids: SemanticIDs, examples: list, beam_width: int = 20, ks=(5, 10, 20),
                  modes=MODES, batch_size: int = 256, progress: bool = False,
                  ranked_out: list | None = None) -> list[dict]:
    """:func:`evaluate_policy` for K runs at once (``model`` their stacked policy, ``examples``
    their K example sets of one size): one metrics dict per run."""
    if beam_width < max(ks):
        raise ValueError(f"beam_width must be >= max(ks)={max(ks)}, got beam_width={beam_width}")
    ranked_runs = ranked_by_mode_runs(model, sids, examples, beam_width, max(ks), tuple(modes), batch_size, progress)
    results = []
    for k, (ex, ranked_all) in enumerate(zip(examples, ranked_runs)):
        out = {}
        for mode in modes:
            ranked = ranked_all[mode]
            if ranked_out is not None:
                ranked_out[k][mode] = ranked
            suffix = "" if mode == "constrained" else "_unc"
            out.update({key + suffix: float(v) for key, v in ranking_metrics(ranked, ex.target, ks).items()})
        out["n"] = len(ex)
        results.append(out)
    return results


def most_popular(data: Interactions, examples: Examples, ks=(5, 10, 20)) -> dict:
    """Most-popular baseline: the same top items (by training clicks) for every user."""
    counts = data.train_item_counts()
    top = np.argsort(-counts, kind="stable")[:max(ks)]
    ranked = np.broadcast_to(top, (len(examples), len(top)))
    out = {k: float(v) for k, v in ranking_metrics(ranked, examples.target, ks).items()}
    out["n"] = len(examples)
    return out


def draw_subset(examples: Examples, n: int, seed: int) -> Examples:
    """A fixed subsample of n examples (all when n is 0 or at least their number), drawn with
    ``seed`` and kept in the original order."""
    if n and len(examples) > n:
        examples = examples.subset(np.sort(np.random.default_rng(seed).choice(len(examples), n, replace=False)))
    return examples


def validation_subset(data: Interactions, max_history: int, n: int, seed: int) -> Examples:
    """The validation samples of a training run's checkpoints (n = 0: all), drawn with its seed."""
    return draw_subset(data.examples("valid", max_history), n, seed)


def test_examples(data: Interactions, max_history: int, n: int, seed: int) -> Examples:
    """The test samples a run is evaluated on: all (n = 0) or n drawn with ``seed + 7``, so every
    method of a seed gets the same draw and the results pair up."""
    return draw_subset(data.examples("test", max_history), n, seed + 7)


RESULT_COLUMNS = ["method", "seed", "checkpoint", "step", "val_HR@10", "HR@5", "HR@10", "HR@20", "NDCG@10",
                  "halluc", "HR@10_constrained", "admission_rate"]
AB_COLUMNS = ["sim_ctr", "dwell", "coverage", "tail_share"]   # the simulated A/B test (simulated world)
SLATE_K = 10                                                  # the served slate: the top 10 constrained beams
HITS_K = 10   # evaluate_checkpoints stores per-sample hits@HITS_K of each checkpoint


def ctr_path(run_dir, kind: str) -> Path:
    """Where a run keeps the per-test-user expected CTR of its ``best`` or ``final`` checkpoint."""
    return Path(run_dir) / f"ctr_{kind}.npy"


def hits_path(run_dir, kind: str, k: int, constrained: bool) -> Path:
    """Where a run keeps the per-test-sample hits@k of its ``best`` or ``final`` checkpoint."""
    return Path(run_dir) / f"hits_{kind}_k{k}{'_c' if constrained else ''}.npy"


def evaluate_checkpoints(data: Interactions, sids: SemanticIDs, out_dir, method: str, seed: int,
                         cfg, admission_rate: float, device="auto") -> pd.DataFrame:
    """Test metrics of a run's best.pt and final.pt: HR/NDCG and hallucination from unconstrained
    beam search (as the paper reports them), plus constrained HR@10. On the simulated world also
    the simulated A/B test of the served slate (the top 10 trie-constrained beams): expected CTR,
    dwell proxy, coverage and tail share (``eval/ab_test.py``). ``cfg``: the RLConfig
    (test_samples, eval_beam_width). Writes the per-sample hits and CTRs next to the checkpoints."""
    return evaluate_checkpoints_runs(data, sids, [out_dir], [method], [seed], [cfg], [admission_rate], device)[0]


def evaluate_checkpoints_runs(data: Interactions, sids: SemanticIDs, out_dirs: list, methods: list, seeds: list,
                              cfgs: list, admission_rates: list, device="auto") -> list[pd.DataFrame]:
    """:func:`evaluate_checkpoints` for K runs at once: the checkpoints of each kind that still
    need a test decode (best.pt is often the final step: those weights are evaluated once) are
    stacked (``model/stacked.py``) and decoded together. One table per run."""
    out_dirs = [Path(d) for d in out_dirs]
    K = len(out_dirs)
    truth = hasattr(data, "true_utility")
    rows, tests = [[] for _ in range(K)], None
    metrics_at, ranked_at = [{} for _ in range(K)], [{} for _ in range(K)]
    for kind in ("best", "final"):
        paths = [d / f"{kind}.pt" for d in out_dirs]
        states = [load_checkpoint(p) for p in paths]
        steps = [st["step"] for st in states]
        if tests is None:
            H = states[0]["policy_cfg"]["max_history"]
            tests = [test_examples(data, H, c.test_samples, c.seed) for c in cfgs]
        todo = [k for k in range(K) if steps[k] not in metrics_at[k]]
        if todo:
            policies = [load_policy(paths[k], sids, device) for k in todo]
            model = policies[0] if len(todo) == 1 else stack_policies(policies)
            ranked = [{} for _ in todo]
            for j, m in enumerate(evaluate_runs(model, sids, [tests[k] for k in todo], cfgs[0].eval_beam_width,
                                                ranked_out=ranked)):
                metrics_at[todo[j]][steps[todo[j]]], ranked_at[todo[j]][steps[todo[j]]] = m, ranked[j]
        for k in range(K):
            m, ranked, test = metrics_at[k][steps[k]], ranked_at[k][steps[k]], tests[k]
            for mode, r in ranked.items():   # per-sample hits for the paired tests
                atomic_save_npy(hits_path(out_dirs[k], kind, HITS_K, mode == "constrained"),
                                (r[:, :HITS_K] == test.target[:, None]).any(1))
            row = {"method": methods[k], "seed": seeds[k], "checkpoint": kind, "step": steps[k],
                   "val_HR@10": states[k]["val_HR@10"], "HR@5": m["HR@5_unc"], "HR@10": m["HR@10_unc"],
                   "HR@20": m["HR@20_unc"], "NDCG@10": m["NDCG@10_unc"], "halluc": m["halluc_unc"],
                   "HR@10_constrained": m["HR@10"], "admission_rate": admission_rates[k]}
            if truth:
                ab = slate_click_stats(data, data.states_for(test), ranked["constrained"][:, :SLATE_K])
                atomic_save_npy(ctr_path(out_dirs[k], kind), ab["ctr"])
                row.update(sim_ctr=float(ab["ctr"].mean()), dwell=float(np.nanmean(ab["dwell"])),
                           coverage=ab["coverage"], tail_share=ab["tail_share"])
            rows[k].append(row)
    return [pd.DataFrame(r, columns=RESULT_COLUMNS + (AB_COLUMNS if truth else [])) for r in rows]


def run_hits(run_dir, data: Interactions, sids: SemanticIDs, cfg, kind: str = "best", k: int = 10,
             constrained: bool = False) -> np.ndarray:
    """Per-test-sample hit@k of one run's checkpoint (``best`` or ``final``), in the order of
    :func:`test_examples`. Unconstrained beam search by default, as the main table reports. Read
    from the file evaluate_checkpoints wrote (hits@10), else computed and cached next to the
    checkpoint (:func:`hits_path`)."""
    check_choice("kind", kind, ("best", "final"))
    path = hits_path(run_dir, kind, k, constrained)
    if path.exists():        # written by evaluate_checkpoints (k = 10) or by an earlier call
        return np.load(path)
    model = load_policy(Path(run_dir) / f"{kind}.pt", sids, cfg.device)
    test = test_examples(data, model.cfg.max_history, cfg.test_samples, cfg.seed)
    ranked = ranked_items(model, sids, test, max(cfg.eval_beam_width, k), k, constrained)
    hits = (ranked[:, :k] == test.target[:, None]).any(1)
    atomic_save_npy(path, hits)
    return hits


def start_ranked(data: Interactions, sids: SemanticIDs, ckpt, cfg, k: int = HITS_K,
                 constrained: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(ranked items [n, k], targets [n]) of a start checkpoint (the SFT base an RL run begins
    from) on the test draw of a run with RLConfig ``cfg`` (test_samples, seed, eval_beam_width),
    unconstrained by default as the main tables report. Cached next to the checkpoint under its
    content hash, so every method and seed from that base shares one beam search."""
    ckpt = Path(ckpt)
    who = f"s{cfg.seed}" if cfg.test_samples else "all"
    path = ckpt.with_name(f"{ckpt.stem}_test_ranked_{file_digest(ckpt)}_k{k}{'_c' if constrained else ''}"
                          f"_n{cfg.test_samples}_{who}_b{cfg.eval_beam_width}.npy")
    model = load_policy(ckpt, sids, cfg.device)
    test = test_examples(data, model.cfg.max_history, cfg.test_samples, cfg.seed)
    if path.exists():
        return np.load(path), test.target
    ranked = ranked_items(model, sids, test, max(cfg.eval_beam_width, k), k, constrained)[:, :k]
    atomic_save_npy(path, ranked)
    return ranked, test.target
