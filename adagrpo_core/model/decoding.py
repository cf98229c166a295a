"""Batched decoding: G sampled rollouts per context, and beam search.

Both encode each context's history once (:meth:`SIDPolicy.encode`) and run all rollouts / beams
of that context against the shared cache, one token level at a time (``Lp`` <= 5 steps). The
trie constraint is one gather into the transition table per step; there is no Python loop over
beams, samples or tokens of the vocabulary.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..common.checks import check_int, check_range
from ..data.interactions import NO_ITEM
from .policy import SIDPolicy
from .semantic_ids import Trie

NEG_INF = float("-inf")


def _trie_on(model: SIDPolicy, trie: Trie | None) -> Trie:
    """The trie on the model's device; a missing trie raises (tuples could not be decoded)."""
    if trie is None:
        raise ValueError("trie is required (to decode tuples into items)")
    return trie if trie.device == model.device else trie.to(model.device)


@dataclass
class Rollouts:
    tokens: torch.Tensor   # [B, G, Lp] sampled codes
    logp: torch.Tensor     # [B, G, Lp] log-prob of each sampled token under the sampling distribution
    logp1: torch.Tensor    # [B, G, Lp] the same at temperature 1 (the policy's own log-probs)
    items: torch.Tensor    # [B, G] decoded item id, -1 = hallucination
    valid: torch.Tensor    # [B, G] bool


def _uniform(shape, generator, device) -> torch.Tensor:
    """U(0, 1) draws of ``shape``; ``generator`` is one generator, or a list of K (one per run of a
    stacked policy): then the leading dim splits into K equal run-major parts and run k's part
    comes from generator k, the same draws that run would make alone."""
    if not isinstance(generator, (list, tuple)):
        return torch.rand(shape, generator=generator, device=device)
    K = len(generator)
    if shape[0] % K:
        raise ValueError(f"{K} generators need a batch of K * B rows, got {shape[0]} rows")
    part = (shape[0] // K, *shape[1:])
    return torch.cat([torch.rand(part, generator=g, device=device) for g in generator])


def _gumbel_argmax(logits: torch.Tensor, generator) -> torch.Tensor:
    """Sample from softmax(logits) along the last dim (one draw per row), reproducibly."""
    u = _uniform(logits.shape, generator, logits.device).clamp_(1e-10, 1.0)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


@torch.no_grad()
def sample_rollouts(model: SIDPolicy, history: torch.Tensor, num_generations: int,
                    temperature: float = 1.0, trie: Trie | None = None, constrained: bool = False,
                    generator: torch.Generator | None = None, cache=None) -> Rollouts:
    """Sample ``num_generations`` (G) tuples per context.

    history [B, H'] item ids (-1 left padding). Unconstrained by default, so invalid tuples
    (hallucinations) can appear; ``constrained=True`` masks codes that leave the trie.
    The history is encoded once per context and the G samples attend to that one cache.
    ``cache``: an already encoded history
    (:meth:`SIDPolicy.encode`), reused instead of encoding ``history`` again. ``generator``: one
    generator, or one per run of a stacked policy (``model/stacked.py``), each run drawing its own.
    """
    check_int("num_generations", num_generations, lo=1)
    check_range("temperature", temperature, lo=0, lo_open=True)
    trie = _trie_on(model, trie)
    B, G = (history.shape[0] if cache is None else cache.last.shape[0]), num_generations
    cache = model.encode(history.to(model.device)) if cache is None else cache.detach()
    nodes = trie.root(B * G).view(B, G)                                     # [B, G]
    logits = model.first_logits(cache)[:, None, :].expand(B, G, model.V)    # [B, G, V]
    tokens, logps, logps1, past = [], [], [], None
    for level in range(model.Lp):
        if level > 0:
            out, past = model.extend(cache, tokens[-1][..., None], level - 1, past)
            logits = out[:, :, -1]                                          # [B, G, V]
        raw = logits
        logits = logits / temperature
        if constrained:
            logits = logits.masked_fill(~trie.allowed(nodes), NEG_INF)
        logp = logits.log_softmax(-1)
        tok = _gumbel_argmax(logits, generator)                             # [B, G]
        tokens.append(tok)
        logps.append(logp.gather(-1, tok[..., None]).squeeze(-1))
        logps1.append(logps[-1] if temperature == 1.0 and not constrained else
                      raw.log_softmax(-1).gather(-1, tok[..., None]).squeeze(-1))
        nodes = trie.step(nodes, tok)
    items = trie.items_at(nodes)
    return Rollouts(torch.stack(tokens, -1), torch.stack(logps, -1), torch.stack(logps1, -1), items, items >= 0)


@dataclass
class Beams:
    tuples: torch.Tensor  # [B, N, Lp] best first
    scores: torch.Tensor  # [B, N] sum of token log-probs (-inf where fewer than N valid beams exist)
    items: torch.Tensor   # [B, N] item ids, -1 = invalid tuple (or missing beam)


@torch.no_grad()
def beam_search(model: SIDPolicy, history: torch.Tensor | None, beam_width: int, num_return: int | None = None,
                trie: Trie | None = None, constrained: bool = True, cache=None) -> Beams:
    """Batched beam search over the Lp token levels.

    Returns the ``num_return`` (<= beam_width) highest-scoring tuples per context. Constrained
    mode only ever extends prefixes in the trie, so every returned tuple is a catalogue item
    (rows with fewer valid tuples than requested are padded with score -inf, item -1).
    ``cache``: an already encoded history (:meth:`SIDPolicy.encode`), used instead of ``history``.
    """
    check_int("beam_width", beam_width, lo=1)
    num_return = beam_width if num_return is None else num_return
    check_int("num_return", num_return, lo=1, hi=beam_width)
    trie = _trie_on(model, trie)
    cache = model.encode(history.to(model.device)) if cache is None else cache
    B, W, V = cache.last.shape[0], beam_width, model.V
    # level 0: one "beam" per context expands to the top W first codes
    logp0 = model.first_logits(cache).log_softmax(-1)                       # [B, V]
    root = trie.root(B)
    if constrained:
        logp0 = logp0.masked_fill(~trie.allowed(root), NEG_INF)
    k0 = min(W, V)
    scores, tok = logp0.topk(k0, -1)                                        # [B, k0]
    if k0 < W:  # pad with dead beams
        scores = torch.cat([scores, scores.new_full((B, W - k0), NEG_INF)], 1)
        tok = torch.cat([tok, tok.new_zeros((B, W - k0))], 1)
    seqs = tok[..., None]                                                   # [B, W, 1]
    nodes = trie.step(root[:, None].expand(B, W), tok)                      # [B, W]
    past = None
    for level in range(1, model.Lp):
        out, past = model.extend(cache, seqs[..., -1:], level - 1, past)    # out [B, W, 1, V]
        logp = out[:, :, -1].log_softmax(-1)                                # [B, W, V]
        if constrained:
            logp = logp.masked_fill(~trie.allowed(nodes), NEG_INF)
        total = (scores[..., None] + logp).reshape(B, W * V)                # [B, W*V]
        scores, flat = total.topk(W, -1)                                    # [B, W]
        parent, code = flat // V, flat % V
        seqs = torch.cat([seqs.gather(1, parent[..., None].expand(B, W, seqs.shape[-1])), code[..., None]], -1)
        nodes = trie.step(nodes.gather(1, parent), code)
        if level < model.Lp - 1:  # reorder the beams' key/value cache (not needed after the last level)
            past = model.reorder_past(past, parent)
    items = torch.where(torch.isfinite(scores), trie.items_at(nodes), torch.full_like(nodes, NO_ITEM))
    return Beams(seqs[:, :num_return], scores[:, :num_return], items[:, :num_return])
