"""Policy model, rollouts and beam search on tiny models whose outputs are enumerable."""
import itertools

import numpy as np
import pytest
import torch

from adagrpo_core.model.decoding import beam_search, sample_rollouts
from adagrpo_core.model.policy import PolicyConfig, SIDPolicy
from adagrpo_core.model.semantic_ids import SemanticIDs


@pytest.fixture(scope="module")
def tiny():
    # 7 items over K=3 codes, L=2 levels (+ uniqueness token): Lp = 3, V = 3, 27 possible tuples
    prefix = np.array([[0, 0], [0, 1], [1, 2], [2, 0], [2, 0], [1, 1], [0, 2]])
    sids = SemanticIDs.from_prefix_codes(prefix, codebook_size=3)
    torch.manual_seed(0)
    model = SIDPolicy(PolicyConfig(n_layer=2, n_head=2, n_embd=16, max_history=4),
                      torch.as_tensor(sids.codes), sids.vocab_size).eval()
    with torch.no_grad():  # make the distribution peaky enough that beam orders are not ties
        model.head.weight.mul_(50)
    history = torch.tensor([[-1, -1, 0, 3], [1, 2, 4, 5], [-1, -1, -1, 6]])
    return sids, model, history


def all_tuples(V, Lp):
    return torch.tensor(list(itertools.product(range(V), repeat=Lp)))


def brute_force(model, history, sids):
    tup = all_tuples(model.V, model.Lp)                                   # [V^Lp, Lp]
    B = history.shape[0]
    with torch.no_grad():
        lp = model.tuple_logprobs(history, tup[None].expand(B, -1, -1)).sum(-1)  # [B, V^Lp]
    valid = torch.as_tensor(sids.is_valid(tup.numpy()))
    return tup, lp, valid


def test_forward_shapes_and_teacher_forcing_matches_incremental(tiny):
    sids, model, history = tiny
    windows = torch.tensor([[-1, 2, 0, 3, 5], [1, 2, 4, 5, 6]])          # W = H + 1
    logits, targets, counts = model(windows)
    assert logits.shape == (2, 5 * 3 - 1, 3) and targets.shape == (2, 14)
    # the last item of each window predicted teacher-forced equals the incremental decoder
    lp_tf = logits.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)[:, -3:]  # [2, 3]
    lp_inc = model.tuple_logprobs(windows[:, :-1], torch.as_tensor(sids.codes)[windows[:, -1]][:, None])[:, 0]
    torch.testing.assert_close(lp_tf, lp_inc, atol=1e-5, rtol=1e-5)
    # counted positions: items whose previous item is real (row 0: items 3,4 of col 2.. ; 1st real item not)
    assert counts[0].sum() == 3 * 3 and counts[1].sum() == 4 * 3


def test_beam_search_exact_top_n_unconstrained(tiny):
    sids, model, history = tiny
    tup, lp, _ = brute_force(model, history, sids)
    beams = beam_search(model, history, beam_width=9, num_return=5, trie=sids.trie, constrained=False)
    best = lp.topk(5, -1)
    torch.testing.assert_close(beams.scores, best.values, atol=1e-4, rtol=1e-4)
    assert torch.equal(beams.tuples, tup[best.indices])


def test_beam_search_exact_top_n_constrained_and_always_valid(tiny):
    sids, model, history = tiny
    tup, lp, valid = brute_force(model, history, sids)
    beams = beam_search(model, history, beam_width=9, num_return=5, trie=sids.trie, constrained=True)
    best = lp.masked_fill(~valid, float("-inf")).topk(5, -1)
    torch.testing.assert_close(beams.scores, best.values, atol=1e-4, rtol=1e-4)
    assert torch.equal(beams.tuples, tup[best.indices])
    assert (beams.items >= 0).all()
    decoded = sids.decode(beams.tuples.numpy())
    assert np.array_equal(decoded, beams.items.numpy())


def test_constrained_beam_pads_when_fewer_valid_than_requested(tiny):
    sids, model, history = tiny
    beams = beam_search(model, history, beam_width=9, num_return=9, trie=sids.trie, constrained=True)
    n_valid = sids.n_items
    assert (beams.items[:, :n_valid] >= 0).all()
    assert (beams.items[:, n_valid:] == -1).all() and torch.isinf(beams.scores[:, n_valid:]).all()


def test_rollouts_shared_history_equals_reencoding(tiny):
    sids, model, history = tiny
    g1 = torch.Generator().manual_seed(3)
    g2 = torch.Generator().manual_seed(3)
    a = sample_rollouts(model, history, 8, trie=sids.trie, generator=g1)
    r = sample_rollouts(model, history.repeat_interleave(8, 0), 1, trie=sids.trie, generator=g2)  # re-encoding
    b = type(r)(*(z.reshape(3, 8, *z.shape[2:]) for z in (r.tokens, r.logp, r.logp1, r.items, r.valid)))
    assert a.tokens.shape == (3, 8, 3)
    assert torch.equal(a.tokens, b.tokens)
    torch.testing.assert_close(a.logp, b.logp, atol=1e-5, rtol=1e-5)
    # log-probs agree with re-scoring the sampled tuples
    torch.testing.assert_close(a.logp, model.tuple_logprobs(history, a.tokens), atol=1e-5, rtol=1e-5)
    assert torch.equal(a.logp1, a.logp)                 # temperature 1
    hot = sample_rollouts(model, history, 8, temperature=2.0, trie=sids.trie, generator=g1)
    torch.testing.assert_close(hot.logp, model.tuple_logprobs(history, hot.tokens, 2.0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hot.logp1, model.tuple_logprobs(history, hot.tokens), atol=1e-5, rtol=1e-5)
    assert torch.equal(a.valid, a.items >= 0)
    assert np.array_equal(sids.decode(a.tokens.numpy()), a.items.numpy())


def test_rollout_sampling_matches_model_distribution(tiny):
    sids, model, history = tiny
    g = torch.Generator().manual_seed(0)
    r = sample_rollouts(model, history[:1], 4000, temperature=1.0, trie=sids.trie, generator=g)
    tup, lp, _ = brute_force(model, history[:1], sids)
    p = lp[0].exp()
    idx = (r.tokens[0] * torch.tensor([9, 3, 1])).sum(-1)
    freq = torch.bincount(idx, minlength=27).float() / 4000
    se = (p * (1 - p) / 4000).sqrt()
    assert ((freq - p).abs() <= 5 * se + 1e-3).all()


def test_constrained_rollouts_are_valid(tiny):
    sids, model, history = tiny
    r = sample_rollouts(model, history, 64, temperature=2.0, trie=sids.trie, constrained=True,
                        generator=torch.Generator().manual_seed(1))
    assert r.valid.all()


def test_unconstrained_rollouts_can_hallucinate(tiny):
    sids, model, history = tiny
    r = sample_rollouts(model, history, 256, temperature=5.0, trie=sids.trie,
                        generator=torch.Generator().manual_seed(1))
    assert (~r.valid).any() and r.valid.any()


def test_bad_inputs(tiny):
    sids, model, history = tiny
    with pytest.raises(ValueError, match="history"):
        model.encode(torch.tensor([[-1, -1, -1, -1]]))
    with pytest.raises(ValueError, match="num_generations"):
        sample_rollouts(model, history, 0, trie=sids.trie)
    with pytest.raises(ValueError, match="temperature"):
        sample_rollouts(model, history, 2, temperature=0.0, trie=sids.trie)
    with pytest.raises(ValueError, match="num_return"):
        beam_search(model, history, 4, num_return=5, trie=sids.trie)
    with pytest.raises(ValueError, match="n_embd"):
        PolicyConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="dropout"):
        PolicyConfig(dropout=1.0)


def test_encode_last_only_equals_full_prefill(tiny):
    _, model, history = tiny
    with torch.no_grad():
        a, b = model.encode(history), model.encode(history, last_only=False)
    for x, y in zip(a.keys + a.values + [a.last, a.bias], b.keys + b.values + [b.last, b.bias]):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-6)


def test_reorder_past_picks_parents(tiny):
    _, model, history = tiny
    B, W = history.shape[0], 3
    with torch.no_grad():
        cache = model.encode(history)
        _, past = model.extend(cache, torch.tensor([[[0], [1], [2]]]).expand(B, W, 1), 0)
    parent = torch.tensor([[2, 2, 0], [1, 0, 1], [0, 0, 0]])
    out = model.reorder_past(past, parent)
    for (k, v), (k2, v2) in zip(past, out):
        for b in range(B):
            assert torch.equal(k2[b], k[b, parent[b]]) and torch.equal(v2[b], v[b, parent[b]])


def test_benchmark_references_match_beam_search(tiny):
    """The decoding benchmark's two per-beam dict references return what beam_search returns."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_decoding.py"
    spec = importlib.util.spec_from_file_location("bench_decoding", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    sids, model, history = tiny
    fn = bench.make_prefix_allowed_tokens_fn(bench.build_prefix_dict(sids.codes))
    ours = beam_search(model, history, beam_width=4, trie=sids.trie, constrained=True)
    for ref in (bench.beam_search_generate_style(model, history, 4, sids.trie, fn),
                bench.beam_search_prefix_fn(model, history, 4, sids.trie, fn)):
        assert torch.equal(ref.tuples, ours.tuples) and torch.equal(ref.items, ours.items)
        torch.testing.assert_close(ref.scores, ours.scores, atol=1e-5, rtol=1e-5)
