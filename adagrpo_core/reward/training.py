"""Training of the ranker: BCE on the impression log's train split, early stopping on valid AUC.

Impressions that share a context (same user, same number of prior clicks) share one history, so
they are scored together: the history is embedded once per context, not once per row (the loss
is still the mean BCE over impression rows).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.impressions import check_impression_log, grouped_impressions
from ..eval.metrics import auc
from ..model.early_stopping import EarlyStopping
from ..common.runtime import resolve_device, seed_everything
from .ranker import Ranker, RankerConfig, save_ranker


def _grouped_auc(model: Ranker, hist, items, labels, batch_size: int) -> float:
    """AUC of the model over grouped impressions (see :func:`grouped_impressions`)."""
    s = model.score(hist, items, batch_size=batch_size)
    valid = items >= 0
    return auc(labels[valid], s[valid])


# ---------------------------------------------------------------------------- training
def train_ranker(data, cfg: RankerConfig | None = None, checkpoint_path=None, progress: bool = True):
    """Fit a :class:`Ranker` on the ``train`` impressions; early-stop on the ``valid`` AUC.

    ``data`` is a World or any object with ``impressions`` (user, item, clicked, hist_len,
    split), ``seq_items``, ``seq_offsets``, ``n_items``, ``item_features`` and optionally
    ``item_category``. Returns (ranker in eval mode with its best state, per-epoch history).
    Without a usable ``valid`` split (no rows, or one class only) it trains ``max_epochs``
    epochs and keeps the last state. Validation raises ValueError before any work.
    """
    cfg = cfg or RankerConfig()
    check_impression_log(data)
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model = Ranker(cfg, data.item_features, getattr(data, "item_category", None)).to(device)

    hist, items, labels, _ = grouped_impressions(data, "train", cfg.max_history, cfg.group_size)
    hist_t = torch.as_tensor(hist, device=device)                                # [G, H]
    items_t = torch.as_tensor(items, device=device)                              # [G, C]
    labels_t = torch.as_tensor(labels, device=device)                            # [G, C]
    valid_t = items_t >= 0                                                       # [G, C]
    valid_groups = grouped_impressions(data, "valid", cfg.max_history, cfg.group_size)[:3]
    v_labels = valid_groups[2][valid_groups[1] >= 0]
    has_valid = 0 < v_labels.sum() < len(v_labels)     # early stopping needs both classes
    eval_batch = max(1, 4 * cfg.batch_size // cfg.group_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    groups_per_batch = max(1, cfg.batch_size // cfg.group_size)

    records, stopper = [], EarlyStopping(cfg.patience)
    epochs = tqdm(range(cfg.max_epochs), desc="ranker", disable=not progress)
    for epoch in epochs:
        model.train()
        te = time.perf_counter()
        perm = torch.randperm(len(items_t), generator=gen).to(device)
        total, count = torch.zeros((), device=device), torch.zeros((), device=device)
        for s in range(0, len(perm), groups_per_batch):
            b = perm[s:s + groups_per_batch]
            m = valid_t[b]                                                       # [b, C]
            logits = model(hist_t[b], items_t[b])                                # [b, C]
            loss_el = F.binary_cross_entropy_with_logits(logits, labels_t[b], reduction="none")
            loss = (loss_el * m).sum() / m.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * m.sum()
            count += m.sum()
        train_loss = float(total / count)
        v_auc = _grouped_auc(model, *valid_groups, eval_batch) if has_valid else float("nan")
        improved = stopper.update(model, v_auc if has_valid else None)
        records.append({"epoch": epoch + 1, "train_loss": train_loss, "valid_auc": v_auc,
                        "best": improved, "seconds": time.perf_counter() - te})
        epochs.set_postfix(loss=f"{train_loss:.4f}", valid_auc=f"{v_auc:.4f}")
        if stopper.stop:
            break
    history = stopper.finish(model, records)
    model.train_seconds = time.perf_counter() - t0
    model.history = history
    if checkpoint_path is not None:
        save_ranker(model, checkpoint_path)
    return model, history
