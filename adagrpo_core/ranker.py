"""The ranker: a click model trained on exposure-biased impressions, used as the GRPO reward.

DESIGN 1 and 5.1: the reward model of AdaGRPO is a ranker trained on the logs of a biased
exposure policy, and it is unreliable on items the logs rarely show. This module trains that
ranker, serves it as a reward for semantic-ID rollouts, and measures where it can be trusted.

* :class:`Ranker` is a pointwise click model in the style of DIN (Zhou et al., 2018): the
  candidate item attends over the user's click history (target attention), and an MLP scores
  the pooled interest together with the candidate. An item is represented by
  ``id embedding + linear(content features) (+ category embedding)``. The id embedding starts
  near zero, so an item the logs never showed is represented by its content alone: what the
  ranker cannot learn for rare items (their idiosyncratic appeal, e.g. quality, which the
  content features do not reveal) is exactly what makes it unreliable there.
* :func:`train_ranker` fits it with BCE on the impression log's ``train`` split (clicked vs
  exposed-but-not-clicked), early-stops on the AUC of the ``valid`` split and keeps the best
  state. Impressions that share a context (same user, same number of prior clicks) share one
  history, so they are scored together: the history is embedded once per context, not once
  per row (the loss is still the mean BCE over impression rows).
* :class:`RewardModel` turns the ranker into ``R(history, semantic-ID tuple)``: tuples are
  decoded with the trie on the ranker's device, and invalid tuples (hallucinations) get
  ``invalid_reward``.
* :func:`reliability_report` measures, by item-exposure bucket, the ranker's AUC on held-out
  impressions, its rank agreement with the true utility, and its pairwise accuracy (ground
  truth vs random / popular negatives) next to the true utility's own pairwise accuracy;
  :func:`reliability_by_bias` repeats it over exposure-bias strengths.

Design notes. The ranker sees no position feature: in the simulated logs most clicks land on
the first slot (the logging policy's top pick), so on raw impressions the ranker partly learns
the logger, popularity included, and its AUC there can match or beat the true utility's;
on the rows a cascade user examined the true utility is ahead. A position-aware (cascade
likelihood) variant was tried and did not improve agreement with the true utility, so the loss
stays the plain pointwise BCE. Initialising id embeddings at the usual N(0, 1) instead of near
zero made every bucket worse (cold items become noise).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .utils import (atomic_torch_save, check_choice, check_int, check_range, resolve_device,
                    seed_everything)

PAD = -1  # history padding / invalid item id


# ---------------------------------------------------------------------------- config
@dataclass
class RankerConfig:
    """DIN-style pointwise click model and its training (see the module docstring)."""

    embed_dim: int = 32
    """E: size of the item representation (id embedding + projected content features)."""
    id_init_std: float = 0.01
    """Std of the item-id embedding at initialisation. An item the log never shows keeps its
    initial id embedding: near 0 it is represented by its content and category alone."""
    attention_hidden: int = 16
    """Hidden units of the target-attention MLP (one hidden layer, as in DIN)."""
    mlp_hidden: tuple = (64, 32)
    """Hidden layer sizes of the scoring MLP over [interest, candidate, interest * candidate]."""
    dropout: float = 0.1
    """Dropout after each hidden layer of the scoring MLP, in [0, 1)."""
    max_history: int = 20
    """H: only the last H clicks of a user's history are attended over."""
    lr: float = 3e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    batch_size: int = 2048
    """Impression rows per optimisation step (rounded to whole groups of group_size)."""
    group_size: int = 10
    """Impressions sharing a context are scored in groups of at most this many (speed only)."""
    max_epochs: int = 10
    """Most passes over the training impressions."""
    patience: int = 2
    """Early stopping: stop after this many epochs without a better validation AUC."""
    seed: int = 0
    """Seed of the initialisation, the shuffling and dropout."""
    device: str = "auto"
    """'auto' = CUDA when available, else CPU; or any torch device string."""
    output: str = "logit"
    """What the reward serves: the click 'logit' or the click 'prob' (sigmoid of the logit)."""
    invalid_reward: float | None = None
    """Reward of an invalid tuple; None = a penalty below every valid score (see RewardModel)."""

    def __post_init__(self):
        check_int("embed_dim", self.embed_dim, lo=1)
        check_range("id_init_std", self.id_init_std, lo=0)
        check_int("attention_hidden", self.attention_hidden, lo=1)
        if isinstance(self.mlp_hidden, list):
            self.mlp_hidden = tuple(self.mlp_hidden)
        if not isinstance(self.mlp_hidden, tuple) or not all(
                isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1 for h in self.mlp_hidden):
            raise ValueError(f"mlp_hidden must be a tuple of positive ints, got mlp_hidden={self.mlp_hidden!r}")
        check_range("dropout", self.dropout, 0, 1, hi_open=True)
        check_int("max_history", self.max_history, lo=1)
        check_range("lr", self.lr, lo=0, lo_open=True)
        check_range("weight_decay", self.weight_decay, lo=0)
        check_int("batch_size", self.batch_size, lo=1)
        check_int("group_size", self.group_size, lo=1)
        check_int("max_epochs", self.max_epochs, lo=1)
        check_int("patience", self.patience, lo=1)
        check_int("seed", self.seed, lo=0)
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string, got device={self.device!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ValueError(f"device must be 'auto' or a torch device, got device={self.device!r}") from None
        check_choice("output", self.output, ("logit", "prob"))
        if self.invalid_reward is not None:
            check_range("invalid_reward", self.invalid_reward)


# ---------------------------------------------------------------------------- model
class Ranker(nn.Module):
    """DIN-style click model: p(click | history, item) = sigmoid(forward(history, item)).

    Args:
        cfg: the config.
        item_features: [n_items, F] content features (z-scored inside, stored as a buffer).
        item_category: optional [n_items] category ids (adds a category embedding).
        n_categories: size of the category table (default: max id + 1).
    """

    def __init__(self, cfg: RankerConfig, item_features, item_category=None, n_categories=None):
        super().__init__()
        self.cfg = cfg
        feats = torch.as_tensor(np.asarray(item_features, dtype=np.float32))
        if feats.ndim != 2 or feats.shape[0] < 1:
            raise ValueError(f"item_features must be [n_items, dim], got shape={tuple(feats.shape)}")
        self.n_items, n_feat = feats.shape
        feats = (feats - feats.mean(0)) / feats.std(0).clamp(min=1e-6)
        self.register_buffer("features", feats)                              # [N, F]
        E = cfg.embed_dim
        self.id_emb = nn.Embedding(self.n_items, E)
        nn.init.normal_(self.id_emb.weight, std=cfg.id_init_std)
        self.feat_proj = nn.Linear(n_feat, E)
        if item_category is not None:
            cat = torch.as_tensor(np.asarray(item_category, dtype=np.int64))
            if cat.shape != (self.n_items,) or (cat < 0).any():
                raise ValueError(f"item_category must be [n_items={self.n_items}] non-negative ids, "
                                 f"got shape={tuple(cat.shape)}")
            self.register_buffer("category", cat)                            # [N]
            n_cat = int(cat.max()) + 1 if n_categories is None else int(n_categories)
            if n_cat <= int(cat.max()):
                raise ValueError(f"n_categories must exceed the largest category id, got n_categories={n_cat}")
            self.cat_emb = nn.Embedding(n_cat, E)
            nn.init.normal_(self.cat_emb.weight, std=0.01)
        else:
            self.category = None
            self.cat_emb = None
        # target attention: MLP([h, t, h - t, h * t]) -> scalar weight per (candidate, history item)
        self.att1 = nn.Linear(4 * E, cfg.attention_hidden)
        self.att2 = nn.Linear(cfg.attention_hidden, 1)
        layers, d = [], 3 * E
        for h in cfg.mlp_hidden:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(cfg.dropout)]
            d = h
        layers.append(nn.Linear(d, 1))
        self.mlp = nn.Sequential(*layers)

    @property
    def n_categories(self) -> int:
        return 0 if self.cat_emb is None else self.cat_emb.num_embeddings

    def item_table(self) -> torch.Tensor:
        """Representation of every item: [N, E]."""
        table = self.id_emb.weight + self.feat_proj(self.features)
        if self.cat_emb is not None:
            table = table + self.cat_emb(self.category)
        return table

    def forward(self, history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """history [B, H] (-1 = padding), items [B, C] -> click logits [B, C].

        Item ids -1 among ``items`` are allowed (scored as item 0; callers mask them).
        """
        table = self.item_table()                                            # [N, E]
        mask = history >= 0                                                  # [B, H]
        # F.embedding rather than table[idx]: its CPU backward is deterministic across threads
        h = F.embedding(history.clamp(min=0), table)                         # [B, H, E]
        t = F.embedding(items.clamp(min=0), table)                           # [B, C, E]
        E = h.shape[-1]
        # First attention layer on concat([h, t, h - t, h * t]) split by blocks of its weight:
        # W_h h + W_t t + W_d (h - t) + W_p (h * t). The h and t parts are computed once per
        # history item / candidate; only the product part is per (candidate, history item).
        W = self.att1.weight                                                 # [A, 4E]
        Wh, Wt, Wd, Wp = W[:, :E], W[:, E:2 * E], W[:, 2 * E:3 * E], W[:, 3 * E:]
        ah = h @ (Wh + Wd).T                                                 # [B, H, A]
        at = t @ (Wt - Wd).T + self.att1.bias                                # [B, C, A]
        ap = torch.einsum("bhe,bce,ae->bcha", h, t, Wp)                      # [B, C, H, A]
        a = torch.relu(ap + ah[:, None] + at[:, :, None])                    # [B, C, H, A]
        w = self.att2(a).squeeze(-1)                                         # [B, C, H]
        # Softmax over the valid history items (DIN leaves the weights unnormalised; normalising
        # keeps the pooled vector's scale independent of the history length). Finite fill and
        # the final mask keep gradients finite; an empty history pools to the zero vector.
        m = mask[:, None, :]                                                 # [B, 1, H]
        w = torch.softmax(w.masked_fill(~m, -1e4), dim=-1) * m               # [B, C, H]
        interest = torch.einsum("bch,bhe->bce", w, h)                        # [B, C, E]
        x = torch.cat([interest, t, interest * t], dim=-1)                   # [B, C, 3E]
        return self.mlp(x).squeeze(-1)                                       # [B, C]

    @torch.no_grad()
    def score(self, history, items, batch_size: int = 1024) -> np.ndarray:
        """Numpy convenience: logits [N, C] for history [N, H] and items [N, C], in batches (eval mode).

        Only the last ``max_history`` history items are used, as in training.
        """
        was_training = self.training
        self.eval()
        dev = next(self.parameters()).device
        history = np.asarray(history, dtype=np.int64)[:, -self.cfg.max_history:]
        items = np.asarray(items, dtype=np.int64)
        out = []
        for s in range(0, len(items), batch_size):
            hb = torch.as_tensor(history[s:s + batch_size], device=dev)
            ib = torch.as_tensor(items[s:s + batch_size], device=dev)
            out.append(self(hb, ib).float().cpu().numpy())
        self.train(was_training)
        return np.concatenate(out) if out else np.zeros(items.shape, dtype=np.float32)


# ---------------------------------------------------------------------------- metrics
def auc(labels, scores) -> float:
    """ROC AUC by the rank (Mann-Whitney) formula, ties averaged. NaN when a class is empty.

    AUC = (sum of the positives' ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg), ranks 1-based.
    """
    from scipy.stats import rankdata
    labels = np.asarray(labels).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores must have the same size, got {labels.shape} and {scores.shape}")
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)                 # average ranks for ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation along the last axis (ties averaged): [..., k] x [..., k] -> [...]."""
    from scipy.stats import rankdata
    rx = rankdata(x, axis=-1)
    ry = rankdata(y, axis=-1)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1), np.nan)


# ---------------------------------------------------------------------------- data
def _check_log(data) -> None:
    """Validate an impression log before any work (clear ValueErrors naming what is wrong)."""
    for attr in ("impressions", "seq_items", "seq_offsets", "n_items", "item_features"):
        if getattr(data, attr, None) is None:
            raise ValueError(f"training data must have the attribute {attr!r}, got {attr}=None")
    imp = data.impressions
    missing = {"user", "item", "clicked", "hist_len", "split"} - set(imp.columns)
    if missing:
        raise ValueError(f"impressions lack the columns {sorted(missing)}")
    n_train = int((imp["split"] == "train").sum())
    if n_train == 0:
        raise ValueError(f"impressions has no rows with split == 'train' (got {len(imp)} rows in total)")
    n_items = int(data.n_items)
    items = imp["item"].to_numpy()
    if items.min() < 0 or items.max() >= n_items:
        raise ValueError(f"impression item ids must be in [0, n_items={n_items}), got range "
                         f"[{items.min()}, {items.max()}]")
    feats = np.asarray(data.item_features)
    if feats.ndim != 2 or feats.shape[0] != n_items:
        raise ValueError(f"item_features must have n_items={n_items} rows, got shape={feats.shape}")
    cat = getattr(data, "item_category", None)
    if cat is not None and np.asarray(cat).shape != (n_items,):
        raise ValueError(f"item_category must have n_items={n_items} entries, got shape={np.asarray(cat).shape}")
    n_users = len(data.seq_offsets) - 1
    users = imp["user"].to_numpy()
    if users.min() < 0 or users.max() >= n_users:
        raise ValueError(f"impression user ids must be in [0, n_users={n_users}), got range "
                         f"[{users.min()}, {users.max()}]")
    lens = np.diff(np.asarray(data.seq_offsets))
    hl = imp["hist_len"].to_numpy()
    if (hl < 0).any() or (hl > lens[users]).any():
        raise ValueError("impression hist_len must be in [0, the user's number of clicks]")
    labels = imp["clicked"].to_numpy()
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("impression 'clicked' must be 0 or 1")


def impression_histories(data, users, hist_len, max_history: int) -> np.ndarray:
    """The click history of impression rows: [n, H], left-padded with -1, most recent last.

    Row r's history = seq_items[off[u] : off[u] + hist_len[r]], its last H items (vectorised).
    """
    users = np.asarray(users, dtype=np.int64)
    start = np.asarray(data.seq_offsets, dtype=np.int64)[users]                  # [n]
    end = start + np.asarray(hist_len, dtype=np.int64)                           # [n]
    idx = end[:, None] + np.arange(-max_history, 0)[None, :]                     # [n, H]
    seq = np.asarray(data.seq_items, dtype=np.int64)
    return np.where(idx >= start[:, None], seq[np.clip(idx, 0, None)], PAD)


def examined_rows(impressions: pd.DataFrame) -> np.ndarray:
    """Rows a cascade user examined: at or above the first click of their slate (user, step);
    every row of a slate without a click. Rows below a click were never examined."""
    imp = impressions
    first = imp["position"].where(imp["clicked"] == 1).groupby([imp["user"], imp["step"]]).transform("min")
    return (first.isna() | (imp["position"] <= first)).to_numpy().copy()


def grouped_impressions(data, split: str, max_history: int, group_size: int):
    """Impressions of a split grouped by shared context, for scoring many candidates per history.

    Rows with the same (user, hist_len) have the same history; they are cut into groups of at
    most ``group_size`` rows. Returns history [G, H], items [G, C] (-1 pad), labels [G, C]
    (float) and rows [G, C] (row index into the impressions, -1 pad).
    """
    imp = data.impressions
    sel = np.flatnonzero((imp["split"] == split).to_numpy())
    users = imp["user"].to_numpy()[sel].astype(np.int64)
    hl = imp["hist_len"].to_numpy()[sel].astype(np.int64)
    n, C = len(sel), group_size
    order = np.lexsort((np.arange(n), hl, users))                                # stable
    u, h = users[order], hl[order]
    new_ctx = np.r_[True, (u[1:] != u[:-1]) | (h[1:] != h[:-1])][:n]             # [n]
    ctx_start = np.flatnonzero(new_ctx)
    pos = np.arange(n) - ctx_start[np.cumsum(new_ctx) - 1]                       # position in context
    new_group = pos % C == 0
    g = np.cumsum(new_group) - 1                                                 # group of each row
    col = pos % C
    G = int(new_group.sum())

    def scatter(values, fill, dtype):
        out = np.full((G, C), fill, dtype=dtype)
        out[g, col] = values[sel][order]
        return out

    items = scatter(imp["item"].to_numpy(), PAD, np.int64)
    labels = scatter(imp["clicked"].to_numpy(), 0, np.float32)
    rows = scatter(np.arange(len(imp)), -1, np.int64)
    first = order[new_group]                                                     # one row per group
    history = impression_histories(data, users[first], hl[first], max_history)   # [G, H]
    return history, items, labels, rows


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
    _check_log(data)
    from tqdm.auto import tqdm
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

    records, best_auc, best_state, bad = [], -np.inf, None, 0
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
        improved = (not has_valid) or v_auc > best_auc
        if improved:
            best_auc = v_auc if has_valid else best_auc
            best_state = copy.deepcopy(model.state_dict())
            bad = 0
        else:
            bad += 1
        records.append({"epoch": epoch + 1, "train_loss": train_loss, "valid_auc": v_auc,
                        "best": improved, "seconds": time.perf_counter() - te})
        epochs.set_postfix(loss=f"{train_loss:.4f}", valid_auc=f"{v_auc:.4f}")
        if bad >= cfg.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    history = pd.DataFrame(records)
    model.train_seconds = time.perf_counter() - t0
    model.history = history
    if checkpoint_path is not None:
        save_ranker(model, checkpoint_path)
    return model, history


def save_ranker(model: Ranker, path) -> None:
    """Atomic checkpoint: config, shapes and state (buffers included)."""
    atomic_torch_save({
        "config": asdict(model.cfg),
        "n_items": model.n_items,
        "n_features": model.features.shape[1],
        "n_categories": model.n_categories,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }, path)


def load_ranker(path, device: str | None = None) -> Ranker:
    """Load a checkpoint written by :func:`train_ranker` / :func:`save_ranker` (eval mode)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    cfg = RankerConfig(**ck["config"])
    # placeholders of the right shapes; load_state_dict overwrites every buffer and weight
    feats = np.zeros((ck["n_items"], ck["n_features"]), dtype=np.float32)
    cats = np.zeros(ck["n_items"], dtype=np.int64) if ck["n_categories"] else None
    model = Ranker(cfg, feats, cats, n_categories=ck["n_categories"] or None)
    model.load_state_dict(ck["state_dict"])
    return model.to(resolve_device(device or cfg.device)).eval()


# ---------------------------------------------------------------------------- reward
class RewardModel:
    """The ranker as the GRPO reward of semantic-ID rollouts (DESIGN 2).

    ``invalid_reward=None`` means a penalty below every valid score: -1.0 for ``output="prob"``
    (probabilities lie in [0, 1]); for ``output="logit"`` the minimum valid score of the same
    sample's row minus 1, or -10 when the row has no valid item. The logit default is per row
    because logits are unbounded: a fixed constant could sit above some valid scores.
    """

    def __init__(self, ranker: Ranker, sids, output: str = "logit", invalid_reward: float | None = None):
        check_choice("output", output, ("logit", "prob"))
        if invalid_reward is not None:
            check_range("invalid_reward", invalid_reward)
        self.ranker = ranker.eval()
        self.sids = sids
        self.output = output
        self.invalid_reward = invalid_reward
        self.device = next(ranker.parameters()).device
        self.trie = sids.trie.to(self.device)
        if sids.n_items != ranker.n_items:
            raise ValueError(f"sids.n_items={sids.n_items} != ranker.n_items={ranker.n_items}")

    @classmethod
    def from_ranker(cls, ranker: Ranker, sids) -> "RewardModel":
        """Use the ranker config's ``output`` and ``invalid_reward``."""
        return cls(ranker, sids, ranker.cfg.output, ranker.cfg.invalid_reward)

    def _tensor(self, x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, device=self.device).long()

    @torch.no_grad()
    def score_items(self, history, items) -> torch.Tensor:
        """history [B, H] (-1 pad), items [B, C] (-1 = invalid) -> rewards [B, C] float on the device.

        Only the last ``max_history`` history items are used, as in training.
        """
        history, items = self._tensor(history), self._tensor(items)
        if history.ndim != 2 or items.ndim != 2 or history.shape[0] != items.shape[0]:
            raise ValueError(f"history must be [B, H] and items [B, C] with the same B, got "
                             f"{tuple(history.shape)} and {tuple(items.shape)}")
        for name, x in (("history", history), ("items", items)):
            if x.numel() and (x.max() >= self.ranker.n_items or x.min() < PAD):
                raise ValueError(f"{name} item ids must be in [-1, {self.ranker.n_items}), got range "
                                 f"[{int(x.min())}, {int(x.max())}]")
        history = history[:, -self.ranker.cfg.max_history:]                      # [B, <=H]
        valid = items >= 0                                                       # [B, C]
        s = self.ranker(history, items).float()                                  # [B, C]
        if self.output == "prob":
            s = torch.sigmoid(s)
        if self.invalid_reward is not None:
            fill = torch.full_like(s, float(self.invalid_reward))
        elif self.output == "prob":
            fill = torch.full_like(s, -1.0)
        else:
            row_min = s.masked_fill(~valid, float("inf")).min(1, keepdim=True).values  # [B, 1]
            fill = torch.where(torch.isinf(row_min), torch.full_like(row_min, -10.0), row_min - 1.0)
            fill = fill.expand_as(s)
        return torch.where(valid, s, fill)

    @torch.no_grad()
    def decode(self, tuples) -> torch.Tensor:
        """tuples [B, G, L] -> item ids [B, G] (-1 = hallucination), on the device."""
        return self.trie.lookup(self._tensor(tuples))

    @torch.no_grad()
    def __call__(self, history, tuples) -> torch.Tensor:
        """history [B, H], tuples [B, G, L] -> rewards [B, G]: one batched forward over all B * G pairs."""
        tuples = self._tensor(tuples)
        if tuples.ndim != 3:
            raise ValueError(f"tuples must be [B, G, L], got shape={tuple(tuples.shape)}")
        return self.score_items(history, self.decode(tuples))


# ---------------------------------------------------------------------------- reliability
def exposure_buckets(data, n_buckets: int = 5):
    """Equal-sized item buckets by impression count in the train split (bucket 0 = rarest).

    Items are sorted by count (ties by item id) and cut into ``n_buckets`` nearly equal groups:
    count quantiles would collapse when many items share a count (often 0 under strong bias).
    Returns (bucket [n_items], counts [n_items]).
    """
    check_int("n_buckets", n_buckets, lo=1, hi=int(data.n_items))
    imp = data.impressions
    counts = np.bincount(imp["item"].to_numpy()[(imp["split"] == "train").to_numpy()],
                         minlength=data.n_items)
    order = np.argsort(counts, kind="stable")
    bucket = np.empty(data.n_items, dtype=np.int64)
    bucket[order] = np.arange(data.n_items) * n_buckets // data.n_items
    return bucket, counts


def _has_truth(world) -> bool:
    return hasattr(world, "true_utility") and getattr(world, "click_states", None) is not None


def _auc_table(data, ranker, bucket, counts, n_buckets) -> pd.DataFrame:
    """AUC of the ranker on the test impressions, by the impressed item's bucket.

    Reference columns: ``truth_auc``, the true utility's AUC on the rows whose user state is
    known (every row before the user's last click: the state then is the one before the next
    click); and, when the log has slates (step, position), the same two AUCs on the rows a
    cascade user examined (``*_examined``), where the position effect no longer dominates.
    """
    cfg = ranker.cfg
    hist, items, labels, rows = grouped_impressions(data, "test", cfg.max_history, cfg.group_size)
    s = ranker.score(hist, items)
    valid = items >= 0
    it, y, sc, row = items[valid], labels[valid], s[valid], rows[valid]
    imp = data.impressions
    cols = {"": np.ones(len(it), bool)}
    if {"step", "position"} <= set(imp.columns):
        cols["_examined"] = examined_rows(imp)[row]
    util = known = None
    if _has_truth(data):
        u = imp["user"].to_numpy()[row].astype(np.int64)
        hl = imp["hist_len"].to_numpy()[row].astype(np.int64)
        known = hl < data.seq_lengths[u]
        state = data.click_states[data.seq_offsets[u] + np.minimum(hl, data.seq_lengths[u] - 1)]
        util = data.true_utility(state, it[:, None])[:, 0]
    out = []
    for b in [*range(n_buckets), "all"]:
        m = np.ones(len(it), bool) if b == "all" else bucket[it] == b
        members = np.arange(data.n_items) if b == "all" else np.flatnonzero(bucket == b)
        r = {"bucket": b}
        for suffix, sub in cols.items():
            mm = m & sub
            r[f"auc{suffix}"] = auc(y[mm], sc[mm])
            if util is not None:
                r[f"truth_auc{suffix}"] = auc(y[mm & known], util[mm & known])
            r[f"impressions{suffix}"] = int(mm.sum())
            r[f"clicks{suffix}"] = int(y[mm].sum())
        r.update({"items": int(len(np.unique(it[m]))), "bucket_items": len(members),
                  "min_train_exposure": int(counts[members].min()),
                  "max_train_exposure": int(counts[members].max())})
        out.append(r)
    return pd.DataFrame(out)


def _truth_table(world, ranker, examples, states, bucket, n_buckets, n_candidates, rng) -> pd.DataFrame:
    """Per user: k = n_candidates // n_buckets random items from each bucket (buckets are equal
    sized, so this is uniform sampling made exactly balanced); Spearman(ranker, true utility)."""
    k = max(2, n_candidates // n_buckets)
    U = len(examples)
    cands = []
    for b in range(n_buckets):                                   # loop over buckets, vectorised over users
        members = np.flatnonzero(bucket == b)
        kk = min(k, len(members))
        pick = np.argsort(rng.random((U, len(members))), axis=1)[:, :kk]        # [U, kk]
        cands.append(members[pick])
    kk = min(c.shape[1] for c in cands)
    cands = np.stack([c[:, :kk] for c in cands], axis=1)                         # [U, nb, kk]
    flat = cands.reshape(U, -1)                                                  # [U, nb*kk]
    s = ranker.score(examples.history, flat).reshape(U, n_buckets, kk)
    u = world.true_utility(states, flat).reshape(U, n_buckets, kk)
    rho = _rowwise_spearman(s, u)                                                # [U, nb]
    rho_all = _rowwise_spearman(s.reshape(U, -1), u.reshape(U, -1))              # [U]
    rows = []
    for b in [*range(n_buckets), "all"]:
        r = rho_all if b == "all" else rho[:, b]
        r = r[np.isfinite(r)]
        rows.append({"bucket": b, "spearman": r.mean(), "se": r.std(ddof=1) / np.sqrt(max(len(r), 1)),
                     "users": len(r), "candidates_per_user": kk * (n_buckets if b == "all" else 1)})
    return pd.DataFrame(rows)


def _pairwise_table(world, ranker, examples, states, bucket, counts, n_buckets, n_negatives, rng):
    """Ground-truth next item vs random (uniform) and popular (by train impression count)
    negatives, by the ground-truth item's bucket; the true utility's accuracy is the ceiling."""
    U, N = len(examples), world.n_items
    tgt = examples.target                                                        # [U]
    neg_r = rng.integers(0, N, (U, n_negatives))                                 # [U, n]
    p = counts / counts.sum()
    neg_p = rng.choice(N, (U, n_negatives), p=p)                                 # [U, n]
    cands = np.concatenate([tgt[:, None], neg_r, neg_p], axis=1)                 # [U, 1 + 2n]
    s = ranker.score(examples.history, cands)
    truth = _has_truth(world)
    u = world.true_utility(states, cands) if truth else None

    def acc(x, negs, sl):
        neg_ok = negs != tgt[:, None]                                            # [U, n]
        win = (x[:, :1] > x[:, sl]) + 0.5 * (x[:, :1] == x[:, sl])               # [U, n]
        return (win * neg_ok).sum(1) / np.maximum(neg_ok.sum(1), 1)              # [U] per example

    sl_r, sl_p = slice(1, 1 + n_negatives), slice(1 + n_negatives, None)
    cols = {"acc_random": acc(s, neg_r, sl_r), "acc_popular": acc(s, neg_p, sl_p)}
    if truth:
        cols["truth_acc_random"] = acc(u, neg_r, sl_r)
        cols["truth_acc_popular"] = acc(u, neg_p, sl_p)
    tb = bucket[tgt]
    rows = []
    for b in [*range(n_buckets), "all"]:
        m = np.ones(U, bool) if b == "all" else tb == b
        rows.append({"bucket": b, "examples": int(m.sum()),
                     **{c: (v[m].mean() if m.any() else np.nan) for c, v in cols.items()}})
    return pd.DataFrame(rows)


def reliability_report(world, ranker: Ranker, n_buckets: int = 5, n_candidates: int = 100,
                       seed: int = 0, n_negatives: int = 20) -> dict:
    """How reliable the ranker is, by item-exposure bucket (bucket 0 = rarest in the train log).

    Returns a dict of DataFrames (one row per bucket plus an "all" row):

    * "auc": AUC on the held-out (``test`` split) impressions, with impressions, clicks and
      distinct items per bucket and the bucket's range of train exposure.
    * "truth": mean Spearman correlation, per user and bucket, between the ranker's scores and
      the true utility over random candidates (test states: the taste before each user's last
      click). Needs ``world.true_utility`` and ``world.click_states``; omitted otherwise.
    * "pairwise": share of negatives the ranker scores below the ground-truth next item
      (random and popular negatives), by the ground-truth item's bucket, next to the same
      accuracy under the true utility (the reference ceiling).
    """
    check_int("n_candidates", n_candidates, lo=2 * n_buckets)
    check_int("n_negatives", n_negatives, lo=1)
    check_int("seed", seed, lo=0)
    ranker.eval()
    rng = np.random.default_rng(seed)
    bucket, counts = exposure_buckets(world, n_buckets)
    examples = world.examples("test", ranker.cfg.max_history)
    has_truth = _has_truth(world)
    states = world.click_states[examples.click_index] if has_truth else None
    out = {"auc": _auc_table(world, ranker, bucket, counts, n_buckets)}
    if has_truth:
        out["truth"] = _truth_table(world, ranker, examples, states, bucket, n_buckets, n_candidates, rng)
    out["pairwise"] = _pairwise_table(world, ranker, examples, states, bucket, counts, n_buckets,
                                      n_negatives, rng)
    return out


def reliability_by_bias(biases, world_cfg, ranker_cfg: RankerConfig | None = None,
                        progress: bool = False, **report_kwargs) -> pd.DataFrame:
    """The reliability report for worlds built at several exposure-bias strengths.

    One long DataFrame: exposure_bias, table ("auc" / "truth" / "pairwise"), bucket, metric, value;
    pivot it for display. The ranker's training summary is under table "train".
    """
    from .worlds import build_world
    ranker_cfg = ranker_cfg or RankerConfig()
    parts = []
    for b in biases:
        world = build_world(replace(world_cfg, exposure_bias=float(b)))
        ranker, hist = train_ranker(world, ranker_cfg, progress=progress)
        report = reliability_report(world, ranker, **report_kwargs)
        report["train"] = pd.DataFrame([{"bucket": "all", "seconds": ranker.train_seconds,
                                         "epochs": len(hist), "best_valid_auc": hist["valid_auc"].max()}])
        for name, df in report.items():
            long = df.melt(id_vars="bucket", var_name="metric", value_name="value")
            long.insert(0, "table", name)
            long.insert(0, "exposure_bias", float(b))
            parts.append(long)
    return pd.concat(parts, ignore_index=True)
