"""Decoding benchmark: trie-constrained beam search and shared-history rollouts.

Two comparisons on the same model and the same inputs, in one run:

(a) Constrained beam search. ``adagrpo_core.decoding.beam_search`` encodes each history once,
    runs the W beams of a context against that shared cache, and applies the trie as one gather
    into a node-by-code transition table per level. Two references, written here, build the
    constraint the way many open-source generative recommenders do, through a HuggingFace-style
    ``prefix_allowed_tokens_fn``: a Python dict ``{prefix tuple: [allowed codes]}`` built from
    the catalogue and, at every level, a Python loop over every (context, beam) that turns the
    beam's prefix into a tuple (``.tolist()``), looks it up and writes the allowed codes into a
    mask row by row (as ``transformers.PrefixConstrainedLogitsProcessor`` does).

    1. generate-style: the whole of what ``model.generate(num_beams=W,
       prefix_allowed_tokens_fn=fn)`` does for a decoder-only model: the history is expanded W
       times before a full prefill, every beam keeps its own key/value cache (history included)
       that is re-indexed after every step, and the dict constraint runs on every beam at every
       step. This is the reference the issue's end-to-end target is measured against.
    2. constraint swap only: ``beam_search`` line by line with only the trie gather replaced by
       the dict loop (shared history, same forward). It isolates the constraint's share.

    All three must return identical tuples and items (scores allclose). The constraint alone is
    also timed on the very prefixes reference 2 looked up.

(b) Rollouts. ``sample_rollouts`` (history encoded once per context, the G
    samples attend to that cache) against ``sample_rollouts_reencoding`` (the history is re-encoded
    for each of the G samples), same generator seed; tokens must be identical.

The policy has random (untrained) weights: decoding cost does not depend on what the weights
are. Times are medians over ``--repeats`` interleaved rounds after one warm-up call each; speed-ups
are medians of the per-round ratios.

    python benchmarks/bench_decoding.py                      # batch 256, beam 20, G 8, 2 threads
    python benchmarks/bench_decoding.py --profile            # + torch.profiler breakdown of beam_search
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source tree, installed or not
from adagrpo_core.model.decoding import Beams, Rollouts, beam_search, sample_rollouts
from adagrpo_core.model.policy import HistoryCache, PolicyConfig
from adagrpo_core.data.interactions import NO_ITEM
from adagrpo_core.model.semantic_ids import SIDConfig, build_semantic_ids
from adagrpo_core.model.policy import build_policy
from adagrpo_core.data.world import WorldConfig, build_world

NEG_INF = float("-inf")


# ---------------------------------------------------------------------- reference constraint
def build_prefix_dict(codes: np.ndarray) -> dict:
    """{prefix tuple: sorted list of allowed next codes} for every proper prefix of every item tuple."""
    allowed = defaultdict(set)
    for row in codes.tolist():
        for t in range(len(row)):
            allowed[tuple(row[:t])].add(row[t])
    return {k: sorted(v) for k, v in allowed.items()}


def make_prefix_allowed_tokens_fn(prefix_dict: dict):
    """HuggingFace-style callback: (batch_id, prefix tensor) -> list of allowed codes."""
    def prefix_allowed_tokens_fn(batch_id: int, sent: torch.Tensor) -> list:
        # a prefix outside the catalogue (only reachable by a dead, -inf beam) allows nothing,
        # the same as the trie's absorbing invalid node
        return prefix_dict.get(tuple(sent.tolist()), [])
    return prefix_allowed_tokens_fn


def prefix_constraint_mask(prefixes: torch.Tensor, num_beams: int, fn, vocab_size: int) -> torch.Tensor:
    """The loop of ``PrefixConstrainedLogitsProcessor``: prefixes [B * num_beams, t] -> additive
    mask [B * num_beams, V] (0 where allowed, -inf elsewhere), one Python iteration per beam."""
    mask = torch.full((prefixes.shape[0], vocab_size), NEG_INF, device=prefixes.device)
    for batch_id, beam_sent in enumerate(prefixes.view(prefixes.shape[0] // num_beams, num_beams, prefixes.shape[-1])):
        for beam_id, sent in enumerate(beam_sent):
            allowed = fn(batch_id, sent)
            if allowed:
                mask[batch_id * num_beams + beam_id, allowed] = 0
    return mask


class SectionTimer:
    """Accumulates the wall time spent inside a `with` block (a constraint, a prefill, ...)."""

    def __init__(self, device):
        self.device, self.seconds = device, 0.0

    def __enter__(self):
        _sync(self.device)
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        _sync(self.device)
        self.seconds += time.perf_counter() - self.t0


@torch.no_grad()
def beam_search_prefix_fn(model, history, beam_width, trie, prefix_fn, timer=None, record=None) -> Beams:
    """``beam_search(constrained=True)`` with the trie gather replaced by a prefix_allowed_tokens_fn.

    The trie is used only to turn the final tuples into item ids, exactly as in beam_search.
    ``record`` (a list) receives the [B * W, t] prefixes that were looked up at every level.
    """
    timer = timer or SectionTimer(model.device)
    history = history.to(model.device)
    B, W, V = history.shape[0], beam_width, model.V
    cache = model.encode(history)
    logp0 = model.first_logits(cache).log_softmax(-1)                       # [B, V]
    with timer:   # level 0: one (empty) prefix per context
        empty = torch.zeros(B, 0, dtype=torch.long, device=model.device)
        logp0 = logp0 + prefix_constraint_mask(empty, 1, prefix_fn, V)
    if record is not None:
        record.append(empty)
    k0 = min(W, V)
    scores, tok = logp0.topk(k0, -1)                                        # [B, k0]
    if k0 < W:
        scores = torch.cat([scores, scores.new_full((B, W - k0), NEG_INF)], 1)
        tok = torch.cat([tok, tok.new_zeros((B, W - k0))], 1)
    seqs = tok[..., None]                                                   # [B, W, 1]
    past = None
    for level in range(1, model.Lp):
        out, past = model.extend(cache, seqs[..., -1:], level - 1, past)    # [B, W, 1, V]
        logp = out[:, :, -1].log_softmax(-1)                                # [B, W, V]
        with timer:
            prefixes = seqs.reshape(B * W, level)
            logp = logp + prefix_constraint_mask(prefixes, W, prefix_fn, V).view(B, W, V)
        if record is not None:
            record.append(prefixes)
        total = (scores[..., None] + logp).reshape(B, W * V)
        scores, flat = total.topk(W, -1)
        parent, code = flat // V, flat % V
        seqs = torch.cat([seqs.gather(1, parent[..., None].expand(B, W, seqs.shape[-1])), code[..., None]], -1)
        past = model.reorder_past(past, parent)
    nodes = trie.walk(seqs)
    items = torch.where(nodes >= 0, trie.leaf_item[nodes.clamp(min=0)], torch.full_like(nodes, NO_ITEM))
    items = torch.where(torch.isfinite(scores), items, torch.full_like(items, NO_ITEM))
    return Beams(seqs, scores, items)


@torch.no_grad()
def beam_search_generate_style(model, history, beam_width, trie, prefix_fn, timers=None) -> Beams:
    """Constrained beam search the way ``model.generate(num_beams=W, prefix_allowed_tokens_fn=fn)``
    runs it for a decoder-only model (re-implemented here on the same policy, without the library):

    1. the prompt is expanded ``num_beams`` times *before* the prefill
       (``_expand_inputs_for_generation``), so every beam encodes its own copy of the history,
       every block on every position;
    2. every beam carries its own key/value cache, history part included, and the whole cache is
       re-indexed with ``index_select`` after every step (``_reorder_cache``);
    3. scores start at 0 for beam 0 and -1e9 for the other (identical) beams, so the first step
       expands beam 0 only;
    4. the constraint is the per-beam dict ``prefix_allowed_tokens_fn`` loop, on every beam at
       every step (the first included).

    The top-k bookkeeping is the same tensor code as ``beam_search`` (transformers' own Python
    ``BeamSearchScorer`` loop is not reproduced), so the returned beams must be identical.
    ``timers``: optional dict of SectionTimer for "prefill", "constraint" and "reorder".
    """
    timers = timers if timers is not None else defaultdict(lambda: SectionTimer(model.device))
    history = history.to(model.device)
    B, W, V = history.shape[0], beam_width, model.V
    rows_per_beam = torch.arange(B * W, device=model.device)
    with timers["prefill"]:
        cache = model.encode(history.repeat_interleave(W, 0), last_only=False)  # B * W rows, full prefill
        logp = model.first_logits(cache).log_softmax(-1)                    # [B * W, V]
    scores = torch.zeros(B, W, device=model.device)
    scores[:, 1:] = -1e9
    seqs = torch.zeros(B, W, 0, dtype=torch.long, device=model.device)
    past = None
    for level in range(model.Lp):
        if level > 0:
            out, past = model.extend(cache, seqs[..., -1:].reshape(B * W, 1, 1), level - 1, past)
            logp = out[:, 0, -1].log_softmax(-1)                            # [B * W, V]
        with timers["constraint"]:
            logp = logp + prefix_constraint_mask(seqs.reshape(B * W, level), W, prefix_fn, V)
        total = (scores[..., None] + logp.view(B, W, V)).reshape(B, W * V)
        scores, flat = total.topk(W, -1)                                    # [B, W]
        parent, code = flat // V, flat % V
        seqs = torch.cat([seqs.gather(1, parent[..., None].expand(B, W, seqs.shape[-1])), code[..., None]], -1)
        if level < model.Lp - 1:
            with timers["reorder"]:   # every beam's cache, the history copy included
                rows = (rows_per_beam.view(B, W)[:, :1] + parent).reshape(-1)
                cache = HistoryCache([k.index_select(0, rows) for k in cache.keys],
                                     [v.index_select(0, rows) for v in cache.values],
                                     cache.bias.index_select(0, rows), cache.last)
                if past is not None:
                    past = [tuple(z.index_select(0, rows) for z in kv) for kv in past]
    scores = torch.where(scores > -1e8, scores, torch.full_like(scores, NEG_INF))
    nodes = trie.walk(seqs)
    items = torch.where(nodes >= 0, trie.leaf_item[nodes.clamp(min=0)], torch.full_like(nodes, NO_ITEM))
    items = torch.where(torch.isfinite(scores), items, torch.full_like(items, NO_ITEM))
    return Beams(seqs, scores, items)


def sample_rollouts_reencoding(model, history, G, trie, generator) -> Rollouts:
    """The reference for (b): every sample encodes its own copy of the history (G copies per
    context), then samples one tuple; same draws as the shared-history sampler."""
    r = sample_rollouts(model, history.repeat_interleave(G, 0), 1, trie=trie, generator=generator)
    B = history.shape[0]
    return Rollouts(*(z.reshape(B, G, *z.shape[2:]) for z in (r.tokens, r.logp, r.items, r.valid)))


def same_beams(a: Beams, b: Beams, name: str, tol: float = 1e-5) -> str:
    """Assert two beam searches agree: scores allclose at every rank, and the tuples (and items)
    equal wherever the score at that rank is not tied with a neighbouring rank within ``tol``
    (an untrained model's near-uniform log-probs leave float-rounding ties, which two correct
    implementations may order differently). Returns a one-line account."""
    torch.testing.assert_close(a.scores, b.scores, rtol=tol, atol=tol)
    same = (a.tuples == b.tuples).all(-1)                                   # [B, N]
    gap = a.scores.diff(dim=-1).abs()                                       # [B, N-1]
    tied = torch.zeros_like(same)
    tied[:, 1:] |= gap <= tol
    tied[:, :-1] |= gap <= tol
    assert bool((same | tied).all()), f"beam tuples differ beyond score ties ({name})"
    assert bool((a.items == b.items)[same].all()), f"beam items differ ({name})"
    return (f"scores allclose; {int(same.sum())}/{same.numel()} tuples identical, "
            f"the other {int((~same).sum())} swapped within score ties <= {tol:g}")


# ---------------------------------------------------------------------- timing helpers
def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fns, repeats, device):
    """Time several implementations interleaved: one warm-up call each, then ``repeats`` rounds
    that call every function once in turn, so all of them see the same machine state (this VM's
    speed drifts by tens of percent over minutes). Returns, per function, (median seconds, all
    times, last result)."""
    outs = [fn() for fn in fns]
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            _sync(device)
            t0 = time.perf_counter()
            outs[i] = fn()
            _sync(device)
            times[i].append(time.perf_counter() - t0)
    return [(statistics.median(t), t, o) for t, o in zip(times, outs)]


def ratio(slow, fast):
    """Median over rounds of the per-round ratio slow / fast, and its range."""
    r = [a / b for a, b in zip(slow[1], fast[1])]
    return statistics.median(r), min(r), max(r)


def fmt(times):
    return "[" + ", ".join(f"{t * 1e3:.1f}" for t in times) + "] ms"


def load_string(when: str) -> str:
    try:
        load = os.getloadavg()
    except OSError:
        return f"load average ({when}): n/a"
    out = f"load average ({when}; 1/5/15 min): " + " / ".join(f"{x:.2f}" for x in load)
    if when == "at start" and load[0] > max(1.0, (os.cpu_count() or 1) - torch.get_num_threads() + 0.5):
        out += ("  WARNING: other processes compete for the cores; multi-threaded timings are then "
                "unreliable (OpenMP workers wait for descheduled peers)")
    return out


# ---------------------------------------------------------------------- profiling
class _Labelled(torch.nn.Module):
    """Runs a module inside a profiler label."""

    def __init__(self, inner, tag):
        super().__init__()
        self.inner, self.tag = inner, tag

    def forward(self, x):
        with torch.profiler.record_function(self.tag):
            return self.inner(x)


def _label_method(obj, name, tag):
    """Shadow obj.name with an instance attribute that runs it inside a profiler label."""
    fn = getattr(obj, name)

    def wrapped(*a, **k):
        with torch.profiler.record_function(tag):
            return fn(*a, **k)
    setattr(obj, name, wrapped)


def profile_beam_search(model, history, beam_width, trie, device, rows=25):
    """torch.profiler over one constrained beam_search call. The policy's entry points, each
    block's attention / MLP and the trie lookup are labelled through instance-level wrappers
    (removed afterwards; nothing in the library is modified)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    methods = [(model, "encode", "policy.encode"), (model, "first_logits", "policy.first_logits"),
               (model, "extend", "policy.extend"), (trie, "allowed", "trie.allowed"),
               (trie, "step", "trie.step")]
    methods += [(blk.attn, "extend", f"block{i}.attn.extend") for i, blk in enumerate(model.blocks)]
    for obj, name, tag in methods:
        _label_method(obj, name, tag)
    mlps = [blk.mlp for blk in model.blocks]
    for i, blk in enumerate(model.blocks):
        blk.mlp = _Labelled(blk.mlp, f"block{i}.mlp")
    try:
        beam_search(model, history, beam_width, trie=trie, constrained=True)          # warm-up
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
        with profile(activities=acts) as prof:
            with record_function("beam_search"):
                beam_search(model, history, beam_width, trie=trie, constrained=True)
    finally:
        for obj, name, _ in methods:
            delattr(obj, name)
        for blk, mlp in zip(model.blocks, mlps):
            blk.mlp = mlp
    ka = prof.key_averages()
    total = next(e for e in ka if e.key == "beam_search").cpu_time_total
    print("\n--- torch.profiler: one constrained beam_search call (profiler overhead included) ---")
    print(f"{'region (inclusive CPU time)':<30}{'calls':>6}{'ms':>10}{'% of beam_search':>18}")
    tags = ["beam_search"] + [tag for _, _, tag in methods[:3]]
    tags += [f"block{i}.{part}" for i in range(len(model.blocks)) for part in ("attn.extend", "mlp")]
    tags += ["trie.allowed", "trie.step"]
    for tag in tags:
        e = next((e for e in ka if e.key == tag), None)
        if e is not None:
            print(f"{tag:<30}{e.count:>6}{e.cpu_time_total / 1e3:>10.2f}{100 * e.cpu_time_total / total:>17.1f}%")
    print(f"\ntop {rows} operators by self CPU time:")
    print(ka.table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40))


# ---------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--batch", type=int, default=256, help="contexts per call")
    ap.add_argument("--beam", type=int, default=20, help="beam width")
    ap.add_argument("--G", type=int, default=8, help="rollouts per context")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs (median reported) after one warm-up")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--world", choices=["quick", "tiny"], default="quick")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0, help="model init and rollout generator seed")
    ap.add_argument("--profile", action="store_true", help="also print a torch.profiler breakdown of beam_search")
    args = ap.parse_args(argv)
    if min(args.batch, args.beam, args.G, args.repeats, args.threads) < 1:
        ap.error("--batch, --beam, --G, --repeats and --threads must be >= 1")

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__} | {platform.python_implementation()} {platform.python_version()} | "
          f"device {device} | torch threads {torch.get_num_threads()} | os cpus {os.cpu_count()}")
    print(load_string("at start"))

    t0 = time.perf_counter()
    world = build_world(WorldConfig.quick() if args.world == "quick" else WorldConfig.tiny())
    sids = build_semantic_ids(world.item_features, SIDConfig())
    cfg = PolicyConfig()
    torch.manual_seed(args.seed)
    model = build_policy(sids, cfg, device).eval()
    with torch.no_grad():   # untrained logits are near-uniform; sharpen them so that beam orders
        model.head.weight.mul_(20)   # are not decided by float-rounding ties (cost is unchanged)
    trie = sids.trie.to(device)
    ex = world.examples("valid", cfg.max_history)
    history = torch.as_tensor(ex.history[:args.batch], device=device)
    B = history.shape[0]
    print(f"world {args.world}: {world.n_items} items, {world.n_users} users; semantic IDs "
          f"Lp={sids.length} tokens, V={sids.vocab_size} codes, trie {trie.num_nodes} nodes "
          f"(setup {time.perf_counter() - t0:.1f} s)")
    print(f"policy: PolicyConfig() defaults (n_layer={cfg.n_layer}, n_head={cfg.n_head}, n_embd={cfg.n_embd}, "
          f"max_history={cfg.max_history}), {model.num_params():,} parameters, RANDOM untrained weights, "
          f"output head x20 (decoding cost does not depend on the weights)")
    print(f"inputs: {B} validation histories; beam width {args.beam}; G={args.G}; "
          f"median of {args.repeats} timed runs after 1 warm-up")

    # ------------------------------------------------------------ (a) constrained beam search
    prefix_dict = build_prefix_dict(sids.codes)
    prefix_fn = make_prefix_allowed_tokens_fn(prefix_dict)
    print(f"\n=== (a) trie-constrained beam search (batch {B}, beam {args.beam}) ===")
    print(f"reference prefix dict: {len(prefix_dict)} prefixes")
    gen_timers = defaultdict(lambda: SectionTimer(device))
    timer = SectionTimer(device)
    vec_r, gen_r, ref_r = timed([
        lambda: beam_search(model, history, args.beam, trie=trie, constrained=True),
        lambda: beam_search_generate_style(model, history, args.beam, trie, prefix_fn, gen_timers),
        lambda: beam_search_prefix_fn(model, history, args.beam, trie, prefix_fn, timer)], args.repeats, device)
    (t_vec, all_vec, bv), (t_gen, all_gen, bg), (t_ref, all_ref, br) = vec_r, gen_r, ref_r
    ref_constraint = timer.seconds / (args.repeats + 1)
    for name, other in (("generate-style", bg), ("constraint-swap", br)):
        print(f"reference {name}: " + same_beams(bv, other, name))
    assert (bv.items >= 0).all(), "constrained beams returned an invalid tuple"
    print(f"all {bv.items.numel()} vectorised beams are valid items")
    print(f"vectorised beam_search (shared history, trie gather) : {t_vec * 1e3:9.1f} ms  {fmt(all_vec)}")
    print(f"reference 1, generate-style (history per beam, dict) : {t_gen * 1e3:9.1f} ms  {fmt(all_gen)}")
    for part in ("prefill", "reorder", "constraint"):
        print(f"    of which {part:<10} (mean per call)              : "
              f"{gen_timers[part].seconds / (args.repeats + 1) * 1e3:9.1f} ms")
    print(f"reference 2, constraint swap only (our forward, dict) : {t_ref * 1e3:9.1f} ms  {fmt(all_ref)}")
    print(f"    of which constraint (mean per call)               : {ref_constraint * 1e3:9.1f} ms")
    r_gen, r_ref = ratio(gen_r, vec_r), ratio(ref_r, vec_r)
    print(f"SPEED-UP end to end vs reference 1 (generate-style)   : {r_gen[0]:.1f}x "
          f"(median of per-round ratios; range {r_gen[1]:.1f}-{r_gen[2]:.1f})")
    print(f"SPEED-UP end to end vs reference 2 (constraint swap)  : {r_ref[0]:.1f}x "
          f"(range {r_ref[1]:.1f}-{r_ref[2]:.1f})")

    # the constraint alone, on the very prefixes the reference looked up
    record = []
    beam_search_prefix_fn(model, history, args.beam, trie, prefix_fn, record=record)
    levels = [(p, args.beam if p.shape[1] > 0 else 1) for p in record]
    logits = [torch.randn(p.shape[0], model.V, device=device) for p, _ in levels]
    nodes = [trie.walk(p) for p, _ in levels]

    def vec_constraint():
        return [lg.masked_fill(~trie.allowed(n), NEG_INF) for lg, n in zip(logits, nodes)]

    def ref_constraint_fn():
        return [lg + prefix_constraint_mask(p, nb, prefix_fn, model.V) for lg, (p, nb) in zip(logits, levels)]

    cv_r, cr_r = timed([vec_constraint, ref_constraint_fn], args.repeats, device)
    (c_vec, call_vec, mv), (c_ref, call_ref, mr) = cv_r, cr_r
    r_con = ratio(cr_r, cv_r)
    assert all(torch.equal(a, b) for a, b in zip(mv, mr)), "constraint masks differ"
    n_rows = sum(p.shape[0] for p, _ in levels)
    print(f"constraint only ({len(levels)} levels, {n_rows} prefix rows, identical masks):")
    print(f"  trie.allowed gather + masked_fill        : {c_vec * 1e3:9.3f} ms  {fmt(call_vec)}")
    print(f"  dict prefix_allowed_tokens_fn loop       : {c_ref * 1e3:9.3f} ms  {fmt(call_ref)}")
    print(f"  SPEED-UP constraint only                 : {r_con[0]:.0f}x (range {r_con[1]:.0f}-{r_con[2]:.0f})")
    print(f"  share of the vectorised beam search left for everything but the constraint: "
          f"{100 * (1 - c_vec / t_vec):.1f}%")

    # ------------------------------------------------------------ (b) rollouts
    print(f"\n=== (b) rollouts (batch {B}, G={args.G}, unconstrained sampling, temperature 1) ===")

    def rollouts(share):
        g = torch.Generator(device=device).manual_seed(args.seed)
        if share:
            return sample_rollouts(model, history, args.G, trie=trie, generator=g)
        return sample_rollouts_reencoding(model, history, args.G, trie, g)

    sh_r, re_r = timed([lambda: rollouts(True), lambda: rollouts(False)], args.repeats, device)
    (t_sh, all_sh, rs), (t_re, all_re, rr) = sh_r, re_r
    r_roll = ratio(re_r, sh_r)
    assert torch.equal(rs.tokens, rr.tokens), "rollout tokens differ"
    assert torch.equal(rs.items, rr.items), "rollout items differ"
    torch.testing.assert_close(rs.logp, rr.logp, rtol=1e-5, atol=1e-5)
    print(f"identical results: tokens and items equal, log-probs allclose "
          f"({rs.tokens.numel()} tokens, {int(rs.valid.sum())}/{rs.valid.numel()} valid tuples)")
    print(f"share_history=True  (encode once, G share) : {t_sh * 1e3:9.1f} ms  {fmt(all_sh)}")
    print(f"share_history=False (re-encode per sample) : {t_re * 1e3:9.1f} ms  {fmt(all_re)}")
    print(f"SPEED-UP (re-encode / shared)              : {r_roll[0]:.2f}x (range {r_roll[1]:.2f}-{r_roll[2]:.2f})")

    print("\nsummary ({}): beam search end to end {:.1f}x vs generate-style reference (>= 20x: {}), "
          "{:.1f}x vs constraint-swap reference; constraint alone {:.0f}x (>= 20x: {}); "
          "rollouts shared history {:.2f}x (> 1: {})".format(
              device, r_gen[0], "met" if r_gen[0] >= 20 else "NOT met", r_ref[0],
              r_con[0], "met" if r_con[0] >= 20 else "NOT met", r_roll[0],
              "met" if r_roll[0] > 1 else "NOT met"))
    print(load_string("at end"))

    if args.profile:
        profile_beam_search(model, history, args.beam, trie, device)


if __name__ == "__main__":
    main()
