"""K policies stacked into one (model/stacked.py): each run's outputs and gradients equal those of
its own policy, its rollouts come from its own generator, and the weights round-trip exactly."""
import numpy as np
import pytest
import torch

from adagrpo_core.model.decoding import beam_search, sample_rollouts
from adagrpo_core.model.policy import PolicyConfig, SIDPolicy
from adagrpo_core.model.semantic_ids import SemanticIDs
from adagrpo_core.model.stacked import stack_policies, unstack_policies, unstack_state

K = 3


@pytest.fixture(scope="module")
def runs():
    prefix = np.array([[0, 0], [0, 1], [1, 2], [2, 0], [2, 0], [1, 1], [0, 2]])
    sids = SemanticIDs.from_prefix_codes(prefix, codebook_size=3)
    policies = []
    for seed in range(K):                       # K runs: other initial weights, as other seeds give
        torch.manual_seed(seed)
        p = SIDPolicy(PolicyConfig(n_layer=2, n_head=2, n_embd=16, max_history=4),
                      torch.as_tensor(sids.codes), sids.vocab_size)
        with torch.no_grad():                   # peaky enough that beam orders are not near ties
            p.head.weight.mul_(50)
            for m in p.modules():
                if isinstance(m, torch.nn.LayerNorm):
                    m.weight.add_(torch.randn_like(m.weight) * 0.1)
                    m.bias.add_(torch.randn_like(m.bias) * 0.1)
        policies.append(p.eval())
    history = torch.tensor([[-1, -1, 0, 3], [1, 2, 4, 5], [-1, -1, -1, 6], [2, 2, 1, 0]])
    return sids, policies, history


def run_rows(x, k, B):
    return x[k * B:(k + 1) * B]


def test_each_run_gets_its_own_policys_logits_and_gradients(runs):
    sids, policies, history = runs
    B = history.shape[0]
    stacked = stack_policies(policies)
    tuples = torch.as_tensor(sids.codes)[torch.arange(B * 2) % len(sids.codes)].view(B, 2, -1)
    logits = stacked.tuple_logits(history.repeat(K, 1), tuples.repeat(K, 1, 1))      # [K*B, 2, Lp, V]
    # a loss that differs per run, summed: run k's gradient is its slice of the stacked gradient
    weights = torch.arange(1, K + 1, dtype=torch.float32).repeat_interleave(B)[:, None, None, None]
    (logits.log_softmax(-1) * weights).sum().backward()
    for k, p in enumerate(policies):
        p.zero_grad()
        own = p.tuple_logits(history, tuples)
        torch.testing.assert_close(run_rows(logits, k, B), own, rtol=1e-5, atol=1e-5)
        (own.log_softmax(-1) * (k + 1)).sum().backward()
        for (name, sp), (_, pp) in zip(stacked.named_parameters(), p.named_parameters()):
            # float rounding, relative to the gradient's scale (batched and plain matmuls sum in other orders)
            scale = pp.grad.abs().max().item()
            torch.testing.assert_close(sp.grad[k], pp.grad, rtol=1e-4, atol=1e-5 * scale, msg=f"gradient of {name}")


def test_a_stack_of_one_is_the_policy(runs):
    sids, policies, history = runs
    stacked = stack_policies(policies[:1])
    a, b = stacked.encode(history), policies[0].encode(history)
    torch.testing.assert_close(a.last, b.last, rtol=1e-6, atol=1e-6)
    codes = torch.zeros(history.shape[0], 3, 2, dtype=torch.long)
    torch.testing.assert_close(stacked.extend(a, codes, 0)[0], policies[0].extend(b, codes, 0)[0],
                               rtol=1e-5, atol=1e-5)


def test_beam_search_of_a_stack_equals_each_runs_own(runs):
    sids, policies, history = runs
    B = history.shape[0]
    stacked = stack_policies(policies)
    for constrained in (True, False):
        beams = beam_search(stacked, history.repeat(K, 1), 5, trie=sids.trie, constrained=constrained)
        for k, p in enumerate(policies):
            own = beam_search(p, history, 5, trie=sids.trie, constrained=constrained)
            assert torch.equal(run_rows(beams.items, k, B), own.items)
            torch.testing.assert_close(run_rows(beams.scores, k, B), own.scores, rtol=1e-5, atol=1e-5)


def test_rollouts_of_a_stack_draw_from_each_runs_generator(runs):
    sids, policies, history = runs
    B, G = history.shape[0], 6
    stacked = stack_policies(policies)
    gens = [torch.Generator().manual_seed(10 + k) for k in range(K)]
    roll = sample_rollouts(stacked, history.repeat(K, 1), G, 1.0, trie=sids.trie, generator=gens)
    agree = []
    for k, p in enumerate(policies):
        own = sample_rollouts(p, history, G, 1.0, trie=sids.trie, generator=torch.Generator().manual_seed(10 + k))
        agree.append((run_rows(roll.tokens, k, B) == own.tokens).float().mean().item())
        same = (run_rows(roll.tokens, k, B) == own.tokens).all(-1)
        torch.testing.assert_close(run_rows(roll.logp, k, B)[same], own.logp[same], rtol=1e-5, atol=1e-5)
    assert min(agree) > 0.99        # the same draws; a float-rounding tie could flip a rare token
    # one generator in a list is the plain generator
    one = sample_rollouts(policies[0], history, G, trie=sids.trie, generator=[torch.Generator().manual_seed(3)])
    plain = sample_rollouts(policies[0], history, G, trie=sids.trie, generator=torch.Generator().manual_seed(3))
    assert torch.equal(one.tokens, plain.tokens)


def test_unstack_round_trips_exactly(runs):
    sids, policies, history = runs
    stacked = stack_policies(policies)
    back = unstack_policies(stacked, policies[0])
    for p, q in zip(policies, back):
        for (n, a), (_, b) in zip(p.state_dict().items(), q.state_dict().items()):
            assert torch.equal(a, b), n
    assert set(unstack_state(stacked, 1)) == set(policies[1].state_dict())


def test_bad_stacks_and_batches_raise(runs):
    sids, policies, history = runs
    with pytest.raises(ValueError, match="at least one policy"):
        stack_policies([])
    other = SIDPolicy(PolicyConfig(n_layer=1, n_head=2, n_embd=16, max_history=4),
                      torch.as_tensor(sids.codes), sids.vocab_size)
    with pytest.raises(ValueError, match=r"policies\[1\] has another config"):
        stack_policies([policies[0], other])
    stacked = stack_policies(policies)
    with pytest.raises(ValueError, match="K \\* B rows"):
        stacked.encode(history[:2])                 # 2 rows are not K=3 runs' worth
    with pytest.raises(ValueError, match="k must be in"):
        unstack_state(stacked, K)
    with pytest.raises(ValueError, match="3 generators need a batch"):
        sample_rollouts(policies[0], history[:2], 2, trie=sids.trie,
                        generator=[torch.Generator() for _ in range(K)])
