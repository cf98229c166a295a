"""Evaluation of a policy: HR@K, NDCG@K and hallucination rate from beam search (DESIGN 7)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .data import Examples, Interactions
from .decoding import beam_search
from .metrics import ranking_metrics
from .policy import SIDPolicy
from .semantic_ids import SemanticIDs
from .utils import check_choice, check_int

MODES = ("constrained", "unconstrained")


def ranked_items(model: SIDPolicy, sids: SemanticIDs, examples: Examples, beam_width: int = 20,
                 num_return: int | None = None, constrained: bool = True, batch_size: int = 256,
                 progress: bool = False) -> np.ndarray:
    """Beam-search top-N item ids for every example: [n, N], -1 = invalid tuple."""
    check_int("batch_size", batch_size, lo=1)
    trie = sids.trie.to(model.device)
    was_training = model.training
    model.eval()
    out = []
    rng = range(0, len(examples), batch_size)
    if progress:
        from tqdm.auto import tqdm
        rng = tqdm(rng, desc="beam search", leave=False)
    for s in rng:
        h = torch.as_tensor(examples.history[s:s + batch_size], device=model.device)
        beams = beam_search(model, h, beam_width, num_return, trie=trie, constrained=constrained)
        out.append(beams.items.cpu().numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, num_return or beam_width), dtype=np.int64)


def evaluate_policy(model: SIDPolicy, sids: SemanticIDs, examples: Examples, beam_width: int = 20,
                    ks=(5, 10, 20), modes=MODES, batch_size: int = 256, progress: bool = False,
                    ranked_out: dict | None = None) -> dict:
    """Metrics per decoding mode, flattened into one dict: e.g. ``HR@10`` (constrained) and
    ``HR@10_unc``, ``halluc_unc`` (unconstrained). Beam width must be >= max(ks).
    ``ranked_out``: a dict that receives each mode's ranked items [n, max(ks)] (for per-sample
    analyses such as paired tests, without a second beam search)."""
    if beam_width < max(ks):
        raise ValueError(f"beam_width must be >= max(ks)={max(ks)}, got beam_width={beam_width}")
    out = {}
    for mode in modes:
        check_choice("mode", mode, MODES)
        ranked = ranked_items(model, sids, examples, beam_width, max(ks), mode == "constrained",
                              batch_size, progress)
        if ranked_out is not None:
            ranked_out[mode] = ranked
        suffix = "" if mode == "constrained" else "_unc"
        out.update({k + suffix: float(v) for k, v in ranking_metrics(ranked, examples.target, ks).items()})
    out["n"] = len(examples)
    return out


def most_popular(data: Interactions, examples: Examples, ks=(5, 10, 20)) -> dict:
    """Most-popular baseline: the same top items (by training clicks) for every user."""
    counts = data.train_item_counts()
    top = np.argsort(-counts, kind="stable")[:max(ks)]
    ranked = np.broadcast_to(top, (len(examples), len(top)))
    out = {k: float(v) for k, v in ranking_metrics(ranked, examples.target, ks).items()}
    out["n"] = len(examples)
    return out


def results_frame(rows: dict) -> pd.DataFrame:
    """{name: metrics dict} -> a DataFrame with one row per name."""
    return pd.DataFrame(rows).T
