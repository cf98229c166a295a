"""Three kinds of semantic IDs on Amazon Beauty, one SFT recipe: which IDs does the policy learn best from?

* ``letter``: LETTER's published text-derived IDs (4 levels of 256 codes);
* ``attributes``: RQ-KMeans over the attribute features only (category and brand ids, TF-IDF, SVD);
* ``both``: RQ-KMeans over collaborative co-occurrence embeddings of the training clicks plus the
  attribute features, each block normalised and weighted equally (``model/item_embeddings.py``).

The two RQ-KMeans kinds take LETTER's shape (the amazon profile's ``sid``: 4 levels of 256 codes,
plus the uniqueness token), so only how the codes are assigned differs. Every kind trains the
same policy with the same SFT config (the amazon profile's, with ``--sft-steps`` steps) on one
torch thread; the best checkpoint (highest validation HR@10 on the profile's fixed validation
subsample) is evaluated with trie-constrained beam search (beam 20) on every validation and every
test user. Trained policies are cached (``ADAGRPO_CACHE``), so a rerun only evaluates.

    ADAGRPO_AMAZON_DIR=/path/to/amazon python scripts/compare_semantic_ids.py --sft-steps 1500

Writes ``<out>/semantic_ids_beauty.{csv,md}`` (default ``figures/amazon``): per kind the
collisions before the uniqueness token, the largest colliding group, the validation and test
HR@10 / NDCG@10, and the exact McNemar p-value of the test hits@10 against LETTER's
(``mcnemar_p_vs_letter``). Timings are printed, not written (the tables regenerate byte for byte).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adagrpo_core.configs import get_profile  # noqa: E402
from adagrpo_core.data.amazon import AmazonConfig  # noqa: E402
from adagrpo_core.eval.evaluate import evaluate_policy, test_examples  # noqa: E402
from adagrpo_core.eval.stats import mcnemar_exact  # noqa: E402
from adagrpo_core.data.sequences import EmbeddingConfig  # noqa: E402
from adagrpo_core.model.item_embeddings import collaborative_semantic_ids  # noqa: E402
from adagrpo_core.model.policy import load_policy  # noqa: E402
from adagrpo_core.model.semantic_ids import SIDConfig  # noqa: E402
from adagrpo_core.pipeline import get_sft, get_sids, get_world  # noqa: E402
from adagrpo_core.common.storage import load_checkpoint# noqa: E402
from adagrpo_core.suite.tables import save_table# noqa: E402

KINDS = ("letter", "attributes", "both")


def build_ids(kind: str, data, sid_cfg: SIDConfig, cache_dir):
    """LETTER's IDs (the dataset's published ones, cached), or RQ-KMeans IDs of ``sid_cfg``'s shape."""
    if kind == "letter":
        return get_sids(data, sid_cfg, cache_dir)
    return collaborative_semantic_ids(data, sid_cfg, kind, data.item_features, EmbeddingConfig())


def evaluate(sft_dir: Path, sids, data, max_history: int, split: str):
    """Constrained HR@10 / NDCG@10 of best.pt on every user of a split, and the per-user hits."""
    ex = data.examples(split, max_history) if split == "valid" else test_examples(data, max_history, 0, 0)
    ranked = {}
    m = evaluate_policy(load_policy(sft_dir / "best.pt", sids), sids, ex, 20, ks=(10,), modes=("constrained",),
                        ranked_out=ranked)
    hits = (ranked["constrained"][:, :10] == ex.target[:, None]).any(1)
    return m, hits


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder with the Beauty files (default: $ADAGRPO_AMAZON_DIR)")
    p.add_argument("--sft-steps", type=int, default=1500, help="SFT steps, the same for every kind")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="which IDs")
    p.add_argument("--out", type=Path, default=Path("figures/amazon"), help="where the table goes")
    p.add_argument("--cache-dir", default=None, help="artefact cache (default: $ADAGRPO_CACHE or ./.cache)")
    args = p.parse_args(argv)
    if args.sft_steps < 1:
        p.error(f"--sft-steps must be >= 1, got --sft-steps {args.sft_steps}")
    torch.set_num_threads(1)
    prof = get_profile("amazon").with_sft_steps(args.sft_steps)
    data = get_world(AmazonConfig(data_dir=args.data_dir), args.cache_dir)
    print(f"Beauty: {data.n_users} users, {data.n_items} items; SFT {prof.sft}", flush=True)
    rows, test_hits = [], {}
    for kind in args.kinds:
        t0 = time.perf_counter()
        sids = build_ids(kind, data, prof.sid, args.cache_dir)
        t1 = time.perf_counter()
        sft_dir = get_sft(data, sids, prof.policy, prof.sft, args.cache_dir, progress=False)
        t2 = time.perf_counter()
        val, _ = evaluate(sft_dir, sids, data, prof.policy.max_history, "valid")
        test, test_hits[kind] = evaluate(sft_dir, sids, data, prof.policy.max_history, "test")
        t3 = time.perf_counter()
        rows.append({"ids": kind, "tokens": sids.length, "codebook_sizes": " ".join(map(str, sids.codebook_sizes)),
                     "collisions_before_uniqueness": sids.collisions_before_uniqueness,
                     "max_collision_group": sids.max_collision_group, "sft_steps": prof.sft.steps,
                     "best_step": int(load_checkpoint(sft_dir / "best.pt")["step"]),
                     "valid_HR@10": val["HR@10"], "valid_NDCG@10": val["NDCG@10"],
                     "test_HR@10": test["HR@10"], "test_NDCG@10": test["NDCG@10"], "users": test["n"]})
        print(f"{kind}: ids {t1 - t0:.0f} s, SFT {t2 - t1:.0f} s (0 when cached), evaluation {t3 - t2:.0f} s; "
              f"{rows[-1]}", flush=True)
    table = pd.DataFrame(rows)
    if "letter" in test_hits:
        table["mcnemar_p_vs_letter"] = [np.nan if k == "letter" else mcnemar_exact(test_hits["letter"],
                                                                                      test_hits[k])[2]
                                           for k in table.ids]
    print(table.to_markdown(index=False, floatfmt=".4f"))
    save_table(table, args.out, "semantic_ids_beauty")
    return 0


if __name__ == "__main__":
    sys.exit(main())
