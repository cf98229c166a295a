"""The converged SFT base of a real dataset (Amazon Beauty by default): train it with early
stopping on validation, plot its validation curve, and test its best and final checkpoints.

    ADAGRPO_AMAZON_DIR=/path/to/folder python scripts/sft_amazon.py          # the amazon profile, CPU
    python scripts/sft_amazon.py --sequences MyShop.txt                         # any `user item item ...` file
    python scripts/sft_amazon.py --large --dropout 0.2 --lr 1e-3 --device cuda  # 4 layers, width 256, on a GPU

The SFT run is the profile's (``get_profile('amazon').sft``: cosine over at most ``steps``,
validation on every validation user, early stopping after ``patience`` validations without a
better HR@10), trained through the package cache (``pipeline.get_sft``, one torch thread on CPU),
so the notebooks and the CLI reuse it and a rerun only re-evaluates. Writes to ``--out``
(default ``figures/<profile name>/``): ``sft_curve_<name>.{csv,md}`` (one row per validation),
``sft_validation_curve_<name>.{png,pdf}`` and ``sft_test_<name>.{csv,md}`` (best and final
checkpoints on every test user, trie-constrained and unconstrained beam search); ``--dropout`` and
``--lr`` (the larger decoder overfits without dropout: figures/amazon/gpu/sft_large_grid.md) add
their values to ``<name>``. Progress goes to
stderr as one plain line per validation when stderr is not a terminal.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")

from adagrpo_core.suite import plots# noqa: E402
from adagrpo_core.configs import get_profile  # noqa: E402
from adagrpo_core.data.amazon import AmazonConfig  # noqa: E402
from adagrpo_core.data.sequences import SequencesConfig  # noqa: E402
from adagrpo_core.eval.evaluate import evaluate_policy, test_examples, validation_subset  # noqa: E402
from adagrpo_core.model.policy import load_policy  # noqa: E402
from adagrpo_core.common.paths import default_figures_dir  # noqa: E402
from adagrpo_core.pipeline import dataset_profile, get_sft, get_sids, get_world, sft_cached  # noqa: E402
from adagrpo_core.common.runtime import torch_threads  # noqa: E402
from adagrpo_core.common.storage import load_checkpoint  # noqa: E402
from adagrpo_core.suite.tables import save_table  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="amazon", help="the named profile whose SFT settings are used")
    p.add_argument("--data-dir", default=None, help="folder with Beauty.txt (default: $ADAGRPO_AMAZON_DIR, "
                                                    "else a verified download)")
    p.add_argument("--sequences", type=Path, default=None, metavar="FILE",
                   help="a `user item item ...` file instead of the profile's data (the profile's settings)")
    p.add_argument("--steps", type=int, default=None, help="SFT steps at most (default: the profile's)")
    p.add_argument("--patience", type=int, default=None, help="validations without a better one before stopping")
    p.add_argument("--large", action="store_true", help="the larger decoder (4 layers, width 256, 8 heads): "
                                                        "the GPU path to the published TIGER numbers")
    p.add_argument("--dropout", type=float, default=None, help="decoder dropout (default: the profile's)")
    p.add_argument("--lr", type=float, default=None, help="peak SFT learning rate (default: the profile's)")
    p.add_argument("--device", default=None, help="'cpu', 'cuda' or 'auto' (default: the profile's)")
    p.add_argument("--cache-dir", default=None, help="artefact cache (default: the package cache)")
    p.add_argument("--out", type=Path, default=None, help="table and figure folder (default: figures/<name>)")
    args = p.parse_args(argv)

    prof = get_profile(args.profile)
    if args.sequences is not None:
        prof = dataset_profile(SequencesConfig(path=str(args.sequences)), args.profile, None, args.cache_dir)
    elif args.data_dir is not None and isinstance(prof.world, AmazonConfig):
        prof = replace(prof, world=replace(prof.world, data_dir=args.data_dir))
    sft = prof.sft
    if args.steps is not None:
        sft = replace(sft, steps=args.steps, ckpt_every=min(sft.ckpt_every, args.steps),
                      warmup_steps=min(sft.warmup_steps, args.steps // 10))
    if args.patience is not None:
        sft = replace(sft, patience=args.patience)
    if args.device is not None:
        sft = replace(sft, device=args.device)
    if args.lr is not None:
        sft = replace(sft, lr=args.lr)
    policy = replace(prof.policy, n_layer=4, n_embd=256, n_head=8) if args.large else prof.policy
    if args.dropout is not None:
        policy = replace(policy, dropout=args.dropout)
    name = (prof.name + ("_large" if args.large else "") + ("" if args.dropout is None else f"_dropout{args.dropout:g}")
            + ("" if args.lr is None else f"_lr{args.lr:g}"))
    out = args.out or default_figures_dir() / prof.name

    world = get_world(prof.world, args.cache_dir)
    sids = get_sids(world, prof.sid, args.cache_dir)
    cached = sft_cached(world, sids, policy, sft, args.cache_dir)
    t0 = time.perf_counter()
    sft_dir = get_sft(world, sids, policy, sft, args.cache_dir, progress=True)
    train_s = None if cached else time.perf_counter() - t0
    print(f"SFT folder {sft_dir}" + ("" if cached else f"; trained in {train_s:.0f} s"))

    curve = pd.read_csv(sft_dir / "checkpoints.csv")
    n_val = len(validation_subset(world, policy.max_history, sft.eval_samples, sft.seed))
    save_table(curve.assign(val_n=n_val), out, f"sft_curve_{name}")
    fig = plots.sft_validation_curve(curve, n_val, sft.select_metric,
                                     f"SFT on {prof.name}: {policy.n_layer} layers, width {policy.n_embd}, "
                                     f"at most {sft.steps} steps, patience {sft.patience}")
    plots.save_figure(fig, out, f"sft_validation_curve_{name}")

    test = test_examples(world, policy.max_history, 0, 0)
    rows, at_step = [], {}
    with torch_threads(1):
        for kind in ("best", "final"):
            path = sft_dir / f"{kind}.pt"
            state = load_checkpoint(path)
            if state["step"] not in at_step:
                at_step[state["step"]] = evaluate_policy(load_policy(path, sids, sft.device), sids, test,
                                                         sft.eval_beam_width)
            m = at_step[state["step"]]
            rows.append({"checkpoint": kind, "step": state["step"], "val_HR@10": state["val_HR@10"],
                         "val_NDCG@10": state.get("val_NDCG@10"), "HR@10": m["HR@10"], "NDCG@10": m["NDCG@10"],
                         "HR@5": m["HR@5"], "HR@20": m["HR@20"], "HR@10_unc": m["HR@10_unc"],
                         "NDCG@10_unc": m["NDCG@10_unc"], "halluc_unc": m["halluc_unc"], "n": m["n"],
                         "stopped_at": int(curve.step.max()), "max_steps": sft.steps,
                         "train_seconds": train_s})
    table = pd.DataFrame(rows)
    save_table(table, out, f"sft_test_{name}")
    print(curve.round(4).to_markdown(index=False))
    print(table.round(4).to_markdown(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
