"""SASRec-CE on Amazon Beauty (CPU, one thread): settings chosen on validation, test reported once.

    ADAGRPO_AMAZON_DIR=/path/to/folder python scripts/sasrec_beauty.py
    python scripts/sasrec_beauty.py --data-dir /path/to/folder --dropouts 0.2 0.5 --epochs 18

Every candidate is the same model (64-d, 2 layers, 1 head, 50 items of history, AdamW lr 1e-3,
batch 256) with a different dropout. Each trains with early stopping on validation NDCG@10
(full ranking over all 12,101 items, nothing excluded, standard leave-one-out); the candidate with
the best validation NDCG@10 is chosen and only it is evaluated on test. The most-popular baseline
is a reference row (test is shown for it and for the chosen candidate only). ``train_seconds``
is the wall-clock time of the training epochs (validation included) with one torch thread.
Trained models are cached (``<cache>/sasrec/<key>/``), so a rerun only re-evaluates. Writes
``figures/amazon/sasrec_beauty.{csv,md}``.

Published SASRec-CE on this split: test HR@10 0.082-0.086, NDCG@10 0.040-0.050.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from adagrpo_core.data.amazon import AmazonConfig
from adagrpo_core.model.datasets import load_amazon
from adagrpo_core.model.sasrec import SASRecConfig, evaluate_popularity, evaluate_sasrec
from adagrpo_core.pipeline import data_key, get_sasrec
from adagrpo_core.common.paths import default_cache_dir, default_figures_dir
from adagrpo_core.common.storage import config_hash
from adagrpo_core.suite.tables import save_table


def candidate(dropout: float, epochs: int, patience: int) -> SASRecConfig:
    """One candidate, every field explicit (a change of the package defaults does not change it)."""
    return SASRecConfig(n_embd=64, n_layer=2, n_head=1, dropout=dropout, max_len=50, lr=1e-3, weight_decay=0.0,
                        batch_size=256, epochs=epochs, patience=patience, eval_every=1, seed=0, device="cpu")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="folder with Beauty.txt (default: $ADAGRPO_AMAZON_DIR, "
                                                    "else a verified download)")
    p.add_argument("--dropouts", type=float, nargs="+", default=[0.2, 0.5])
    p.add_argument("--epochs", type=int, default=18, help="most epochs per candidate (the CPU budget)")
    p.add_argument("--patience", type=int, default=3, help="evaluations without a better valid NDCG@10")
    p.add_argument("--cache-dir", default=None, help="where trained models are kept (default: the package cache)")
    p.add_argument("--out", default=None, help="folder of the tables (default: figures/amazon)")
    args = p.parse_args()
    torch.set_num_threads(1)

    data = load_amazon(AmazonConfig(data_dir=args.data_dir))
    cache = args.cache_dir or default_cache_dir()
    pop_val, pop_test = (evaluate_popularity(data, split, (10,)) for split in ("valid", "test"))
    rows = [{"model": "most popular", "dropout": float("nan"), "val_HR@10": pop_val["HR@10"],
             "val_NDCG@10": pop_val["NDCG@10"], "test_HR@10": pop_test["HR@10"], "test_NDCG@10": pop_test["NDCG@10"],
             "epochs": 0, "best_epoch": 0, "train_seconds": 0.0}]
    models = {}
    for d in args.dropouts:
        cfg = candidate(d, args.epochs, args.patience)
        t0 = time.process_time()
        model = get_sasrec(data, cfg, cache)
        print(f"dropout={d}: {time.process_time() - t0:.0f} CPU seconds in this run (0 when cached)", flush=True)
        folder = config_hash(data_key(data.cfg), cfg)
        hist = pd.read_csv(Path(cache) / "sasrec" / folder / "history.csv")
        best = hist.loc[hist["val_NDCG@10"].idxmax()]
        val = evaluate_sasrec(model, data, "valid", (10,))
        rows.append({"model": "SASRec-CE", "dropout": d, "val_HR@10": val["HR@10"], "val_NDCG@10": val["NDCG@10"],
                     "epochs": len(hist), "best_epoch": int(best["epoch"]),
                     "train_seconds": float(hist["seconds"].sum()), "key": folder})
        models[d] = model
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    sas = table[table["model"] == "SASRec-CE"]
    chosen = float(sas.loc[sas["val_NDCG@10"].idxmax(), "dropout"])       # validation only
    test = evaluate_sasrec(models[chosen], data, "test", (10,))
    table.insert(1, "chosen", (table["model"] == "SASRec-CE") & (table["dropout"] == chosen))
    table.loc[table["chosen"], ["test_HR@10", "test_NDCG@10"]] = [test["HR@10"], test["NDCG@10"]]
    table["key"] = table["key"].fillna("")
    out = args.out or (default_figures_dir() / "amazon")
    save_table(table, out, "sasrec_beauty")
    print(table.to_string())


if __name__ == "__main__":
    main()
