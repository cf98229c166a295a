"""The ranker: a DIN-style click model trained on exposure-biased impressions (the GRPO reward).

AdaGRPO's reward model is a ranker trained on the logs of a biased exposure policy, so it is
unreliable on items the logs rarely show. :class:`Ranker` is a pointwise click model in the style
of DIN (Zhou et al., 2018): the candidate item attends over the user's click history (target
attention), and an MLP scores the pooled interest together with the candidate. An item is
``id embedding + linear(content features) (+ category embedding)``. The id embedding starts near
zero, so an item the logs never showed is represented by its content alone: what the ranker
cannot learn for rare items (their idiosyncratic appeal, e.g. quality, which the content features
do not reveal) is exactly what makes it unreliable there.

Training lives in :mod:`adagrpo_core.reward.training`, the reward interface RL calls in
:mod:`adagrpo_core.reward.reward_model`, the reliability report in
:mod:`adagrpo_core.reward.reliability`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common.checks import check_int, check_range, check_training
from ..common.runtime import resolve_device
from ..common.storage import atomic_torch_save, load_checkpoint


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
        check_int("group_size", self.group_size, lo=1)
        check_training(self, epochs="max_epochs")


class Ranker(nn.Module):
    """DIN-style click model: p(click | history, item) = sigmoid(forward(history, item)).

    Args:
        cfg: the config.
        item_features: [n_items, F] content features (z-scored inside, stored as a buffer).
        item_category: optional [n_items] category ids (adds a category embedding); None or
            -1 everywhere: no category embedding.
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
        if item_category is not None and (np.asarray(item_category) == -1).all():
            item_category = None        # -1 everywhere = no categories (a dataset without attributes)
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
    ck = load_checkpoint(path, weights_only=True)
    cfg = RankerConfig(**ck["config"])
    # placeholders of the right shapes; load_state_dict overwrites every buffer and weight
    feats = np.zeros((ck["n_items"], ck["n_features"]), dtype=np.float32)
    cats = np.zeros(ck["n_items"], dtype=np.int64) if ck["n_categories"] else None
    model = Ranker(cfg, feats, cats, n_categories=ck["n_categories"] or None)
    model.load_state_dict(ck["state_dict"])
    return model.to(resolve_device(device or cfg.device)).eval()
