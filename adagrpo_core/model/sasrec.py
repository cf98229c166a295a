"""SASRec, the reference sequential recommender: item ids in, a full softmax over the catalogue out.

SASRec (Kang & McAuley, 2018) reads a user's recent items as a sequence of item-id embeddings plus
learned position embeddings and runs a small causal transformer over them, so that the hidden
state at position t summarises items 1..t. The score of every catalogue item for "what comes
next" is the dot product of that hidden state with the item's own embedding (the input table is
reused as the output table: tied weights), so one matrix product ranks the whole catalogue.

This file trains it the way recent papers call "SASRec-CE": at every position of every training
window the model predicts the next item with a cross-entropy over ALL items (a full softmax, no
sampled negatives). Histories are right-aligned windows of at most ``max_len`` items, -1 on the
left for padding (``data.interactions.NO_ITEM``): the most recent item always sits at position
``max_len - 1``, and a shorter input is read as the rightmost columns. Padding has its own row in
the embedding table (row ``n_items``) which is never scored; padded positions attend only to
themselves and no real position ever attends to them.

Evaluation is the standard leave-one-out protocol: the validation (second-to-last) or test (last)
click of each user is ranked against the whole catalogue, nothing excluded, and HR@K / NDCG@K are
computed from the target's rank (equal scores: the lower item id first, as ``metrics.topk_from_scores``).
Early stopping keeps the state with the best validation NDCG@10; test is only ever evaluated.
"""
from __future__ import annotations

import hashlib
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from ..common.checks import check_int, check_training, check_transformer
from ..common.runtime import resolve_device, seed_everything
from ..common.storage import DamagedFileError, atomic_save_df, atomic_torch_save, load_checkpoint
from .early_stopping import EarlyStopping


@dataclass
class SASRecConfig:
    """Model size and training of SASRec-CE. The defaults are the setting chosen on Amazon Beauty's
    validation split under a CPU budget (scripts/sasrec_beauty.py: dropout 0.5 beat 0.2)."""

    n_embd: int = 64            # D: width of item embeddings and of the residual stream
    n_layer: int = 2            # transformer blocks
    n_head: int = 1             # attention heads (must divide n_embd)
    dropout: float = 0.5        # dropout on embeddings, attention weights and block outputs, in [0, 1)
    max_len: int = 50           # history length: the model reads a user's last max_len items
    lr: float = 1e-3            # AdamW learning rate
    weight_decay: float = 0.0   # AdamW decoupled weight decay, on weight matrices only (not LayerNorm, biases, positions)
    batch_size: int = 256       # training windows per optimisation step
    epochs: int = 18            # most passes over the training windows (Beauty's CPU budget; its best epoch was 17)
    patience: int = 3           # early stopping: stop after this many evaluations without a better valid NDCG@10
    eval_every: int = 1         # evaluate on the validation split every this many epochs
    seed: int = 0               # seed of the initialisation, the window order and dropout
    device: str = "cpu"         # 'cpu', 'cuda', 'auto' (CUDA when available) or any torch device

    def __post_init__(self):
        check_transformer(self)
        check_int("max_len", self.max_len, lo=1)
        check_training(self, epochs="epochs")
        check_int("eval_every", self.eval_every, lo=1)


class SelfAttention(nn.Module):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x, mask):
        """x [B, T, D], mask [B, 1, T, T] bool (True = may attend) -> [B, T, D]."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, D // self.n_head).permute(2, 0, 3, 1, 4)  # 3 x [B, h, T, hd]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))                                 # [B, T, D]


class RealDropout(nn.Dropout):
    """Dropout on the real (non-padding) positions only: padding never reaches a real position,
    so drawing masks for it would be wasted work (most of a batch is padding on real data)."""

    def forward(self, x, real):
        """x [B, T, D], real [B, T] bool -> x with dropout applied to x[real] (training only)."""
        if not self.training or self.p == 0:
            return x
        out = x.clone()
        out[real] = F.dropout(x[real], self.p, True)
        return out


class Block(nn.Module):
    """Pre-LN transformer block; the feed-forward part is SASRec's point-wise D -> D -> D ReLU MLP."""

    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        D = cfg.n_embd
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attn = SelfAttention(cfg)
        self.fc1, self.fc2 = nn.Linear(D, D), nn.Linear(D, D)
        self.drop = RealDropout(cfg.dropout)

    def forward(self, x, mask, real):
        """x [B, T, D], mask [B, 1, T, T], real [B, T] -> [B, T, D]."""
        x = x + self.drop(self.attn(self.ln1(x), mask), real)
        return x + self.drop(self.fc2(self.drop(torch.relu(self.fc1(self.ln2(x))), real)), real)


class SASRec(nn.Module):
    """Causal transformer over item ids; logits over all items through the tied item embeddings."""

    def __init__(self, cfg: SASRecConfig, n_items: int):
        super().__init__()
        check_int("n_items", n_items, lo=1)
        self.cfg, self.n_items = cfg, int(n_items)
        D = cfg.n_embd
        self.item_emb = nn.Embedding(self.n_items + 1, D, padding_idx=self.n_items)   # row n_items = padding
        self.pos_emb = nn.Embedding(cfg.max_len, D)                                   # column 0 .. max_len-1
        self.drop = RealDropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(D)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.item_emb.weight[self.n_items])                            # the padding row

    @property
    def device(self) -> torch.device:
        return self.item_emb.weight.device

    def forward(self, hist: torch.Tensor) -> torch.Tensor:
        """hist [B, H] item ids (-1 = left padding, most recent last) -> hidden states [B, H', D],
        H' = min(H, max_len): the last max_len columns, right-aligned on the learned positions."""
        hist = torch.as_tensor(hist, device=self.device).long()[:, -self.cfg.max_len:]
        B, T = hist.shape
        valid = hist >= 0                                                                  # [B, T]
        tok = torch.where(valid, hist, torch.full_like(hist, self.n_items))
        pos = torch.arange(self.cfg.max_len - T, self.cfg.max_len, device=hist.device)      # [T]
        x = self.item_emb(tok) * math.sqrt(self.cfg.n_embd) + self.pos_emb(pos)           # [B, T, D]
        x = self.drop(x, valid) * valid[..., None]                                       # padding = 0
        causal = torch.ones(T, T, dtype=torch.bool, device=hist.device).tril()
        eye = torch.eye(T, dtype=torch.bool, device=hist.device)
        mask = ((causal[None] & valid[:, None, :]) | eye[None])[:, None]                   # [B, 1, T, T]
        for blk in self.blocks:
            x = blk(x, mask, valid)
        return self.ln_f(x)                                                                # [B, T, D]

    def last_hidden(self, hist) -> torch.Tensor:
        """The state after the most recent item: [B, D]."""
        return self(hist)[:, -1]

    def item_table(self) -> torch.Tensor:
        """Output embeddings of the real items (the tied input table without its padding row): [N, D]."""
        return self.item_emb.weight[:self.n_items]

    def score_all(self, hist) -> torch.Tensor:
        """Next-item logits over the whole catalogue at the last position: [B, n_items]."""
        return self.last_hidden(hist) @ self.item_table().T

    def score_items(self, hist, items) -> torch.Tensor:
        """Next-item logits of chosen items: items [B, C] (ids in [0, n_items)) -> [B, C]."""
        items = torch.as_tensor(items, device=self.device).long()
        h = self.last_hidden(hist)                                                         # [B, D]
        return torch.einsum("bd,bcd->bc", h, self.item_emb(items))                         # [B, C]


# ---------------------------------------------------------------------------- evaluation
def _trim(hist: torch.Tensor) -> torch.Tensor:
    """Drop the leading columns that are padding in every row (the right alignment is kept)."""
    real = (hist >= 0).any(0)
    return hist[:, int(real.float().argmax()):] if bool(real.any()) else hist[:, -1:]


def target_ranks(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0-based rank of each target among all items: scores [b, N], target [b] -> [b]. An item
    ranks above the target when it scores higher, or equal with a lower id (the tie rule of
    ``metrics.topk_from_scores``), so no sort of the catalogue is needed."""
    st = scores.gather(1, target[:, None])                                                 # [b, 1]
    lower = torch.arange(scores.shape[1], device=scores.device)[None] < target[:, None]    # [b, N]
    return ((scores > st) | ((scores == st) & lower)).sum(1)


@torch.no_grad()
def _ranks(score_fn, history: np.ndarray, target: np.ndarray, device, batch_size: int) -> np.ndarray:
    """Target ranks under score_fn(hist [b, H]) -> [b, N], in batches; rows are scored shortest
    history first (compact batches), the ranks returned in the original order."""
    order = np.argsort((history >= 0).sum(1), kind="stable")
    ranks = np.empty(len(target), dtype=np.int64)
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        h = _trim(torch.as_tensor(history[idx], device=device))
        t = torch.as_tensor(target[idx], device=device)
        ranks[idx] = target_ranks(score_fn(h).float(), t).cpu().numpy()
    return ranks


def rank_metrics(ranks: np.ndarray, ks=(5, 10)) -> dict:
    """HR@K = mean 1[rank < K]; NDCG@K = mean 1[rank < K] / log2(rank + 2) (one relevant item),
    the definitions of ``eval.metrics.hr_at_k`` / ``ndcg_at_k``, from 0-based ranks."""
    out = {}
    for k in ks:
        hit = ranks < k
        out[f"HR@{k}"] = float(hit.mean())
        out[f"NDCG@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    return out


def evaluate_sasrec(model: SASRec, data, split: str = "test", ks=(5, 10), batch_size: int = 1024) -> dict:
    """HR@K and NDCG@K of ``split`` ('valid' or 'test') by full ranking over the whole catalogue."""
    ex = data.examples(split, model.cfg.max_len)
    was_training = model.training
    model.eval()
    ranks = _ranks(model.score_all, ex.history, ex.target, model.device, batch_size)
    model.train(was_training)
    return {"split": split, "n": len(ranks), **rank_metrics(ranks, ks)}


def evaluate_popularity(data, split: str = "test", ks=(5, 10)) -> dict:
    """The most-popular baseline: every user gets the items clicked most in the training part."""
    ex = data.examples(split, 1)
    counts = torch.as_tensor(data.train_item_counts(), dtype=torch.float32)
    ranks = _ranks(lambda h: counts.expand(len(h), -1), ex.history, ex.target, "cpu", 4096)
    return {"split": split, "n": len(ranks), **rank_metrics(ranks, ks)}


# ---------------------------------------------------------------------------- training
def data_fingerprint(data) -> str:
    """sha256 of the click sequences and the catalogue size: a saved model belongs to one dataset."""
    h = hashlib.sha256(np.ascontiguousarray(data.seq_items, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(data.seq_offsets, dtype=np.int64).tobytes())
    h.update(str(int(data.n_items)).encode())
    return h.hexdigest()[:16]


def save_sasrec(model: SASRec, path, **extra) -> None:
    """Atomic checkpoint: config, catalogue size, state, and ``extra`` (e.g. the data fingerprint)."""
    atomic_torch_save({"config": asdict(model.cfg), "n_items": model.n_items,
                       "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **extra}, path)


def load_sasrec(path, device: str | None = None) -> SASRec:
    """A model written by :func:`save_sasrec` (eval mode)."""
    ck = load_checkpoint(path, weights_only=True)
    model = SASRec(SASRecConfig(**ck["config"]), ck["n_items"])
    model.load_state_dict(ck["state_dict"])
    return model.to(resolve_device(device or model.cfg.device)).eval()


def _finished(out: Path, cfg: SASRecConfig, fingerprint: str):
    """(model, history) of a finished run in ``out`` with this config and data, else None."""
    if not (out / "best.pt").exists():
        return None
    try:
        ck = load_checkpoint(out / "best.pt", weights_only=True)
    except DamagedFileError as e:
        warnings.warn(f"{e}; retraining SASRec")
        return None
    if ck.get("config") != asdict(cfg) or ck.get("data") != fingerprint:
        warnings.warn(f"{out / 'best.pt'} holds a model of another config or dataset; retraining over it")
        return None
    history = pd.read_csv(out / "history.csv") if (out / "history.csv").exists() else pd.DataFrame()
    return load_sasrec(out / "best.pt", cfg.device), history


def train_sasrec(data, cfg: SASRecConfig | None = None, out_dir=None, progress: bool = True):
    """Train SASRec-CE on ``data`` (an Interactions): every position of every training window
    predicts its next item with a full-softmax cross-entropy; AdamW; the state with the best
    validation NDCG@10 is kept (early stopping after ``patience`` evaluations without a better one).

    ``out_dir``: write ``best.pt`` (at the end) and ``history.csv`` (after every epoch), each
    atomically; a folder that already holds a finished model of the same config and data is
    loaded instead of retrained. Returns (model in eval mode with its best state, history:
    epoch, train_loss, val_HR@10, val_NDCG@10, seconds). Deterministic for one seed on CPU.
    """
    cfg = cfg or SASRecConfig()
    fingerprint = data_fingerprint(data)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and (done := _finished(out, cfg, fingerprint)) is not None:
        return done
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model = SASRec(cfg, data.n_items).to(device)
    decays = {n: p.ndim >= 2 and not n.startswith("pos_emb") for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in model.named_parameters() if decays[n]], "weight_decay": cfg.weight_decay},
         {"params": [p for n, p in model.named_parameters() if not decays[n]], "weight_decay": 0.0}], lr=cfg.lr)
    windows = torch.as_tensor(data.train_windows(cfg.max_len + 1), device=device)   # [n, L+1], -1 left pad
    if len(windows) == 0:
        raise ValueError("data has no training windows (every user needs at least 4 clicks for one)")
    gen = torch.Generator().manual_seed(cfg.seed)

    records, stopper = [], EarlyStopping(cfg.patience)
    bar = tqdm(range(1, cfg.epochs + 1), desc="sasrec", disable=not progress)
    for epoch in bar:
        model.train()
        t0 = time.perf_counter()
        total, count = 0.0, 0
        for idx in torch.randperm(len(windows), generator=gen).to(device).split(cfg.batch_size):
            w = _trim(windows[idx])                                                    # [b, T+1]
            inp, tgt = w[:, :-1], w[:, 1:]                                             # [b, T] each
            keep = inp >= 0            # left padding: a real input always has a real next item
            h = model(inp)[keep]                                                       # [n, D]
            loss = F.cross_entropy(h @ model.item_table().T, tgt[keep])               # full softmax over N
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + loss.item() * int(keep.sum()), count + int(keep.sum())
        rec = {"epoch": epoch, "train_loss": total / count, "val_HR@10": float("nan"), "val_NDCG@10": float("nan")}
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            m = evaluate_sasrec(model, data, "valid", ks=(10,))
            rec.update({"val_HR@10": m["HR@10"], "val_NDCG@10": m["NDCG@10"]})
            stopper.update(model, m["NDCG@10"])
        rec["seconds"] = time.perf_counter() - t0
        records.append(rec)
        bar.set_postfix(loss=f"{rec['train_loss']:.3f}", val_ndcg10=f"{rec['val_NDCG@10']:.4f}")
        if out is not None:
            atomic_save_df(pd.DataFrame(records), out / "history.csv", index=False)
        if stopper.stop:
            break
    history = stopper.finish(model, records)
    if out is not None:
        save_sasrec(model, out / "best.pt", data=fingerprint, best_val_ndcg10=float(stopper.best))
    return model, history
