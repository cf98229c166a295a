"""The generative policy: a small decoder-only transformer over semantic-ID tokens.

A user's history of items becomes a token sequence: every item contributes its ``Lp`` semantic-ID
tokens (``Lp = L + 1``, the last one the uniqueness token). Each token's embedding is the sum of

* a code embedding, separate per level (token id = ``level * V + code``),
* a level embedding (0 .. Lp-1),
* an item-position embedding: the item's column in the right-aligned window of ``max_history``
  items, so the most recent history item is always at column ``H - 1`` and the item being
  generated at column ``H``.

The model predicts the next token with one head over the ``V`` codes (shared by all levels; a
code that does not exist at a level is simply never a valid continuation there). Training is
teacher-forced over whole windows, so every prefix of a training sequence is a sample.

Decoding shares the history: :meth:`SIDPolicy.encode` runs the history once per context and
keeps its keys/values; :meth:`SIDPolicy.extend` then runs ``G`` continuations per context
(rollouts or beams) that attend to that one cached history plus their own earlier tokens, so the
history is never copied or re-encoded per sample.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common.checks import check_int, check_transformer
from ..common.runtime import resolve_device
from ..common.storage import load_checkpoint
from .semantic_ids import sids_hash


@dataclass
class PolicyConfig:
    """Transformer size. Vocabulary and SID length come from the semantic IDs."""

    n_layer: int = 2
    """Transformer blocks."""
    n_head: int = 4
    """Attention heads (must divide n_embd)."""
    n_embd: int = 64
    """Width of the residual stream."""
    dropout: float = 0.0
    """Dropout on embeddings, attention output and MLP (training only). Off by default: the
    quick world does not need it and CPU dropout masks cost more than the matmuls of this model."""
    max_history: int = 10
    """H: history items the policy reads (older items are dropped)."""

    def __post_init__(self):
        check_transformer(self)
        check_int("max_history", self.max_history, lo=1)


@dataclass
class HistoryCache:
    """Keys/values of an encoded history, shared by every continuation of the same context."""

    keys: list           # per layer: [B, h, T, hd], contiguous
    values: list         # per layer: [B, h, T, hd], contiguous
    bias: torch.Tensor   # [B, 1, T] additive attention mask: 0 on history tokens, -inf on padding
    last: torch.Tensor   # [B, C] final hidden state of the last history token (predicts level 0)

    def detach(self) -> "HistoryCache":
        return HistoryCache([k.detach() for k in self.keys], [v.detach() for v in self.values],
                            self.bias, self.last.detach())

    def select(self, rows: torch.Tensor) -> "HistoryCache":
        """The cache of the contexts ``rows`` [n] only (gradients flow back to the full cache)."""
        return HistoryCache([k[rows] for k in self.keys], [v[rows] for v in self.values],
                            self.bias[rows], self.last[rows])


class SelfAttention(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.n_head, self.hd = cfg.n_head, cfg.n_embd // cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def _split(self, x):
        # [..., t, C] -> three tensors [..., h, t, hd]
        q, k, v = self.qkv(x).split(x.shape[-1], dim=-1)
        shape = x.shape[:-1] + (self.n_head, self.hd)
        return [z.view(shape).transpose(-3, -2) for z in (q, k, v)]

    def forward(self, x, mask):
        """Full sequence. x [B, T, C]; mask [B, 1, T, T] bool (True = may attend)."""
        q, k, v = self._split(x)                                          # [B, h, T, hd]
        dp = self.drop.p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dp)
        y = y.transpose(1, 2).reshape(x.shape)                            # [B, T, C]
        return self.drop(self.proj(y)), (k, v)

    def forward_last(self, x, mask):
        """Like forward, but the output only at the last position. x [B, T, C]; mask [B, 1, T, T].
        Returns y [B, 1, C] and the keys/values of all T positions (what a history cache needs)."""
        q, k, v = self._split(x)                                          # [B, h, T, hd]
        y = F.scaled_dot_product_attention(q[:, :, -1:], k, v, attn_mask=mask[:, :, -1:])
        y = y.transpose(1, 2).reshape(x.shape[0], 1, x.shape[-1])        # [B, 1, C]
        return self.drop(self.proj(y)), (k, v)

    def extend(self, x, hk, hv, hbias, past):
        """Continuations sharing one history.

        x [B, G, t, C] new tokens; hk, hv [B, h, T, hd] history keys/values; hbias [B, 1, T]
        (0 / -inf on padding); past: None or (k, v) [B, G, h, s, hd] of earlier continuation
        tokens. Returns y [B, G, t, C] and the continuation's (k, v) [B, G, h, s + t, hd].
        The G continuations of a context are one batched matmul against its history keys.
        """
        B, G, t, C = x.shape
        h, hd, T = self.n_head, self.hd, hk.shape[-2]
        scale = 1.0 / math.sqrt(hd)
        q, k, v = self.qkv(x).view(B, G, t, 3, h, hd).permute(3, 0, 1, 4, 2, 5)  # 3 x [B, G, h, t, hd]
        if past is not None:
            k, v = torch.cat([past[0], k], -2), torch.cat([past[1], v], -2)
        s_all = k.shape[-2]
        # scores against the shared history: one [G*t, hd] x [hd, T] product per (context, head)
        s_hist = torch.baddbmm(hbias.repeat_interleave(h, 0), q.transpose(1, 2).reshape(B * h, G * t, hd),
                               hk.reshape(B * h, T, hd).transpose(1, 2), alpha=scale)  # [B*h, G*t, T]
        s_cont = (q @ k.transpose(-1, -2)) * scale                                 # [B, G, h, t, s_all]
        if t > 1:
            causal = torch.ones(t, s_all, dtype=torch.bool, device=x.device).tril(s_all - t)
            s_cont = s_cont.masked_fill(~causal, float("-inf"))
        p = torch.cat([s_hist.view(B, h, G, t, T), s_cont.transpose(1, 2)], -1).softmax(-1)  # [B, h, G, t, T+s_all]
        y = torch.bmm(p[..., :T].reshape(B * h, G * t, T), hv.reshape(B * h, T, hd))     # [B*h, G*t, hd]
        y = y.view(B, h, G, t, hd).transpose(1, 2) + p[..., T:].transpose(1, 2) @ v       # [B, G, h, t, hd]
        return self.drop(self.proj(y.transpose(2, 3).reshape(B, G, t, C))), (k, v)


class Block(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = SelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd), nn.Dropout(cfg.dropout))

    def forward(self, x, mask):
        a, kv = self.attn(self.ln1(x), mask)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv

    def forward_last(self, x, mask):
        """Output at the last position only ([B, 1, C]), keys/values of all positions."""
        a, kv = self.attn.forward_last(self.ln1(x), mask)
        x = x[:, -1:] + a
        return x + self.mlp(self.ln2(x)), kv

    def extend(self, x, hk, hv, hbias, past):
        a, kv = self.attn.extend(self.ln1(x), hk, hv, hbias, past)
        x = x + a
        return x + self.mlp(self.ln2(x)), kv


class SIDPolicy(nn.Module):
    """Decoder-only transformer that generates an item's semantic-ID tuple token by token."""

    def __init__(self, cfg: PolicyConfig, item_codes: torch.Tensor, vocab_size: int):
        super().__init__()
        item_codes = torch.as_tensor(item_codes, dtype=torch.long)
        self.cfg = cfg
        self.V = int(vocab_size)                                   # codes per step
        self.Lp = int(item_codes.shape[1])                         # tokens per item
        self.register_buffer("item_codes", item_codes, persistent=False)  # [n_items, Lp]
        self.pad_id = self.Lp * self.V
        C = cfg.n_embd
        self.tok_emb = nn.Embedding(self.Lp * self.V + 1, C)      # per-level codes + PAD
        self.lvl_emb = nn.Embedding(self.Lp, C)
        self.pos_emb = nn.Embedding(cfg.max_history + 1, C)       # item columns 0..H
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(C)
        self.head = nn.Linear(C, self.V, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    @property
    def device(self):
        return self.tok_emb.weight.device

    # ------------------------------------------------------------------ token plumbing
    def _item_tokens(self, items: torch.Tensor, first_col: int):
        """items [B, W] (-1 pad) -> ids, levels, columns, valid, each [B, W * Lp]."""
        B, W = items.shape
        codes = self.item_codes[items.clamp(min=0)]                             # [B, W, Lp]
        lvl = torch.arange(self.Lp, device=items.device)
        ids = lvl * self.V + codes                                              # [B, W, Lp]
        valid = (items >= 0)[..., None].expand(B, W, self.Lp)
        ids = torch.where(valid, ids, torch.full_like(ids, self.pad_id))
        cols = (torch.arange(W, device=items.device) + first_col)[None, :, None].expand(B, W, self.Lp)
        levels = lvl[None, None, :].expand(B, W, self.Lp)
        flat = lambda z: z.reshape(B, W * self.Lp)
        return flat(ids), flat(levels), flat(cols), flat(valid)

    def _embed(self, ids, levels, cols):
        return self.drop(self.tok_emb(ids) + self.lvl_emb(levels) + self.pos_emb(cols))

    def _run(self, items: torch.Tensor, first_col: int, last_only: bool = False):
        """Run whole item windows. items [B, W] -> hidden [B, W*Lp, C], per-layer (k, v), valid.
        ``last_only``: the final block computes its output at the last position only (hidden
        [B, 1, C]); keys/values are still those of every position. Used to encode histories."""
        ids, levels, cols, valid = self._item_tokens(items, first_col)
        T = ids.shape[1]
        causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
        eye = torch.eye(T, dtype=torch.bool, device=ids.device)
        mask = (causal[None] & valid[:, None, :]) | eye[None]                  # pads attend to themselves
        x = self._embed(ids, levels, cols)                                      # [B, T, C]
        kvs = []
        for i, blk in enumerate(self.blocks):
            if last_only and i == len(self.blocks) - 1:
                x, kv = blk.forward_last(x, mask[:, None])
            else:
                x, kv = blk(x, mask[:, None])
            kvs.append(kv)
        return self.ln_f(x), kvs, valid

    # ------------------------------------------------------------------ training
    def forward(self, windows: torch.Tensor):
        """Teacher-forced next-token logits over right-aligned item windows.

        windows [B, W] item ids (-1 = left padding), W <= H + 1. Returns logits [B, W*Lp - 1, V]
        (position p predicts token p + 1), targets [B, W*Lp - 1] codes and a bool mask of the
        positions that count: tokens of items whose previous item is real.
        """
        B, W = windows.shape
        if W > self.cfg.max_history + 1:
            raise ValueError(f"window width must be <= max_history + 1 = {self.cfg.max_history + 1}, got {W}")
        hidden, _, valid = self._run(windows, first_col=self.cfg.max_history + 1 - W)
        logits = self.head(hidden[:, :-1])                                      # [B, T-1, V]
        targets = self.item_codes[windows.clamp(min=0)].reshape(B, -1)[:, 1:]   # [B, T-1]
        prev_real = torch.cat([torch.zeros_like(windows[:, :1], dtype=torch.bool), windows[:, :-1] >= 0], 1)
        predicted = ((windows >= 0) & prev_real)[..., None].expand(B, W, self.Lp).reshape(B, -1)[:, 1:]
        return logits, targets, predicted

    # ------------------------------------------------------------------ decoding
    def prepare_history(self, history: torch.Tensor) -> torch.Tensor:
        """Validate and right-align a [B, H'] history (-1 padded on the left) to at most H columns."""
        if history.ndim != 2:
            raise ValueError(f"history must be [batch, H], got shape={tuple(history.shape)}")
        H = self.cfg.max_history
        if history.shape[1] > H:
            history = history[:, -H:]
        empty = (history >= 0).sum(1) == 0
        if bool(empty.any()):
            raise ValueError(f"history: empty history for sample {int(empty.nonzero()[0])}; "
                             "every context needs at least one item")
        if int(history.max()) >= self.item_codes.shape[0]:
            raise ValueError(f"history: item id {int(history.max())} >= n_items={self.item_codes.shape[0]}")
        return history

    def encode(self, history: torch.Tensor, last_only: bool = True) -> HistoryCache:
        """Encode each context's history once. history [B, H'] (-1 left padding).

        The last block only needs its output at the last position (``last_only``, default);
        ``last_only=False`` runs every block on every position, as a plain prefill does (same
        cache up to float rounding)."""
        history = self.prepare_history(history.to(self.device))
        hidden, kvs, valid = self._run(history, first_col=self.cfg.max_history - history.shape[1],
                                       last_only=last_only)
        bias = torch.zeros(valid.shape, device=valid.device, dtype=hidden.dtype).masked_fill(~valid, float("-inf"))
        # contiguous once here, so every continuation step views them as [B*h, T, hd] without a copy
        return HistoryCache([k.contiguous() for k, _ in kvs], [v.contiguous() for _, v in kvs], bias[:, None],
                            hidden[:, -1])

    def first_logits(self, cache: HistoryCache) -> torch.Tensor:
        """Logits of the first token of the next item: [B, V]."""
        return self.head(cache.last)

    def extend(self, cache: HistoryCache, codes: torch.Tensor, start_level: int, past=None):
        """Feed continuation tokens. codes [B, G, t] at levels start_level..start_level+t-1 of the
        item at column H. Returns logits [B, G, t, V] (each predicts the following token) and the
        new per-layer continuation state (k, v) [B, G, h, s, hd] for the next call.
        """
        B, G, t = codes.shape
        lvl = torch.arange(start_level, start_level + t, device=codes.device)
        ids = lvl * self.V + codes.clamp(0, self.V - 1)
        cols = torch.full_like(ids, self.cfg.max_history)
        x = self._embed(ids, lvl.expand_as(ids), cols)                          # [B, G, t, C]
        new_past = []
        for i, blk in enumerate(self.blocks):
            x, kv = blk.extend(x, cache.keys[i], cache.values[i], cache.bias, None if past is None else past[i])
            new_past.append(kv)
        return self.head(self.ln_f(x)), new_past

    @staticmethod
    def reorder_past(past, parent: torch.Tensor):
        """Beam search: the continuation state of the chosen parents. parent [B, W] indexes the
        G = W continuations of each context; every tensor [B, W, h, s, hd] is re-indexed along W."""
        B, W = parent.shape
        rows = (torch.arange(B, device=parent.device)[:, None] * W + parent).reshape(-1)
        return [tuple(z.flatten(0, 1).index_select(0, rows).view_as(z) for z in kv) for kv in past]

    def tuple_logits(self, history: torch.Tensor | None, tuples: torch.Tensor,
                     cache: HistoryCache | None = None) -> torch.Tensor:
        """Teacher-forced logits for given tuples, differentiable. history [B, H']; tuples
        [B, G, Lp] -> [B, G, Lp, V] (entry t scores token t). The history is encoded once and
        shared by the G tuples (or taken from ``cache``, e.g. the one the rollouts used).
        """
        cache = self.encode(history) if cache is None else cache
        B, G, Lp = tuples.shape
        first = self.first_logits(cache)[:, None, None, :].expand(B, G, 1, self.V)   # [B, G, 1, V]
        if Lp == 1:
            return first
        rest, _ = self.extend(cache, tuples[:, :, :-1], start_level=0)               # [B, G, Lp-1, V]
        return torch.cat([first, rest], 2)

    @staticmethod
    def gather_logprobs(logits: torch.Tensor, tuples: torch.Tensor, temperature: float = 1.0):
        """log softmax(logits / T) at the given codes: [..., Lp, V], [..., Lp] -> [..., Lp]."""
        logp = (logits / temperature).log_softmax(-1)
        return logp.gather(-1, tuples.clamp(0, logits.shape[-1] - 1)[..., None]).squeeze(-1)

    def tuple_logprobs(self, history: torch.Tensor | None, tuples: torch.Tensor, temperature: float = 1.0,
                       cache: HistoryCache | None = None):
        """Per-token log-probs of given tuples: [B, G, Lp] (see :meth:`tuple_logits`)."""
        return self.gather_logprobs(self.tuple_logits(history, tuples, cache), tuples, temperature)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_policy(sids, cfg: PolicyConfig, device) -> SIDPolicy:
    """A freshly initialised policy over the tuples of ``sids`` (a SemanticIDs)."""
    return SIDPolicy(cfg, torch.as_tensor(sids.codes), sids.vocab_size).to(device)


def load_policy(path, sids, device="auto") -> SIDPolicy:
    """Load a policy checkpoint (best.pt / final.pt / last.pt) for the given semantic IDs."""
    ck = load_checkpoint(path)
    if "sids_hash" in ck and ck["sids_hash"] != sids_hash(sids):
        raise ValueError(f"{path} was trained with other semantic IDs (sids_hash={ck['sids_hash']}, "
                         f"given {sids_hash(sids)})")
    model = build_policy(sids, PolicyConfig(**ck["policy_cfg"]), resolve_device(device))
    model.load_state_dict(ck["model"])
    model.eval()
    return model
