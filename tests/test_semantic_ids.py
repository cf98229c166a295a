"""Semantic IDs (DESIGN 6): residual k-means codes, uniqueness token, vectorised prefix trie."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from adagrpo_core.data.interactions import NO_ITEM
from adagrpo_core.model.semantic_ids import SIDConfig, SemanticIDs, Trie, add_uniqueness_token, build_semantic_ids


def _valid_set(sids):
    return {tuple(int(c) for c in row) for row in sids.codes}


def _prefixes(valid, depth):
    return {t[:depth] for t in valid}


# ---------------------------------------------------------------- structure of the codes
def test_codes_structure(tiny_sids, tiny_world):
    s = tiny_sids
    assert s.n_items == tiny_world.n_items
    assert s.length == 3                      # 2 levels + uniqueness token
    assert s.codes.dtype == np.int64
    assert s.codebook_sizes[:2] == (8, 8)
    assert s.vocab_size == max(s.codebook_sizes)
    for p, k in enumerate(s.codebook_sizes):
        assert s.codes[:, p].min() >= 0 and s.codes[:, p].max() < k
    # the uniqueness token's codebook is the largest collision group
    assert s.codebook_sizes[2] == s.max_collision_group == int(s.codes[:, 2].max()) + 1


def test_tuples_are_unique(tiny_sids):
    assert len(_valid_set(tiny_sids)) == tiny_sids.n_items


def test_collision_count_and_uniqueness_token(tiny_sids):
    s = tiny_sids
    prefix = [tuple(r) for r in s.codes[:, :2].tolist()]
    groups = {}
    for i, p in enumerate(prefix):
        groups.setdefault(p, []).append(i)
    assert s.collisions_before_uniqueness == s.n_items - len(groups)
    assert s.collisions_before_uniqueness > 0   # 64 prefixes for 200 items must collide
    assert s.max_collision_group == max(len(g) for g in groups.values())
    # token = rank of the item among items with the same prefix, in item-id order
    for members in groups.values():
        assert s.codes[members, 2].tolist() == list(range(len(members)))


def test_every_item_round_trips(tiny_sids):
    s = tiny_sids
    items = np.arange(s.n_items)
    tuples = s.encode(items)
    assert tuples.shape == (s.n_items, s.length)
    np.testing.assert_array_equal(tuples, s.codes)
    np.testing.assert_array_equal(s.decode(tuples), items)
    assert s.is_valid(tuples).all()
    # batched shapes are kept
    np.testing.assert_array_equal(s.decode(s.encode(items.reshape(20, 10))), items.reshape(20, 10))
    np.testing.assert_array_equal(s.trie.lookup(torch.as_tensor(s.codes)).numpy(), items)


def test_encode_rejects_out_of_range_items(tiny_sids):
    with pytest.raises(ValueError, match="item ids"):
        tiny_sids.encode([0, tiny_sids.n_items])
    with pytest.raises(ValueError, match="item ids"):
        tiny_sids.encode([-1])


def test_build_is_deterministic(tiny_world, tiny_sids):
    again = build_semantic_ids(tiny_world.item_features, SIDConfig(num_levels=2, codebook_size=8))
    np.testing.assert_array_equal(again.codes, tiny_sids.codes)
    other = build_semantic_ids(tiny_world.item_features, SIDConfig(num_levels=2, codebook_size=8, seed=1))
    assert other.codes.shape == tiny_sids.codes.shape
    assert len(_valid_set(other)) == other.n_items


def test_level_codes_follow_the_features(tiny_world, tiny_sids):
    """Level-1 clusters group items with similar features: within-cluster spread < overall spread."""
    x = tiny_world.item_features.astype(np.float64)
    x = (x - x.mean(0)) / x.std(0, ddof=1)
    c1 = tiny_sids.codes[:, 0]
    within = sum(((x[c1 == k] - x[c1 == k].mean(0)) ** 2).sum() for k in np.unique(c1))
    total = ((x - x.mean(0)) ** 2).sum()
    assert within < 0.8 * total
    assert len(np.unique(c1)) >= 6


# ---------------------------------------------------------------- validity of random tuples
def test_random_tuples_classified_like_a_python_set(tiny_sids):
    s = tiny_sids
    valid = _valid_set(s)
    rng = np.random.default_rng(0)
    V = s.vocab_size
    random_t = rng.integers(0, V, size=(3000, s.length))
    # mix in real tuples and tuples with one token out of range
    real = s.codes[rng.integers(0, s.n_items, 500)]
    oob = s.codes[rng.integers(0, s.n_items, 200)].copy()
    oob[np.arange(200), rng.integers(0, s.length, 200)] = rng.choice([-1, -5, V, V + 3], 200)
    tuples = np.concatenate([random_t, real, oob])
    item_of = {t: i for i, t in enumerate(map(tuple, s.codes.tolist()))}
    expected_item = np.array([item_of.get(tuple(r), -1) for r in tuples.tolist()])
    expected_valid = np.array([tuple(r) in valid for r in tuples.tolist()])
    assert 0 < expected_valid[:3000].sum() < 3000   # the random part holds both kinds
    np.testing.assert_array_equal(s.is_valid(tuples), expected_valid)
    np.testing.assert_array_equal(s.decode(tuples), expected_item)
    assert not s.is_valid(oob).any()
    assert s.is_valid(real).all()


def test_decode_rejects_wrong_length(tiny_sids):
    with pytest.raises(ValueError, match="length"):
        tiny_sids.decode(np.zeros((4, tiny_sids.length - 1), dtype=np.int64))


# ---------------------------------------------------------------- trie
def test_trie_allowed_matches_brute_force_at_every_depth(tiny_sids):
    s = tiny_sids
    trie = s.trie
    V = s.vocab_size
    valid = _valid_set(s)
    assert trie.vocab_size == V and trie.length == s.length
    n_valid_prefixes = 0
    for depth in range(s.length + 1):
        prefixes = list(itertools.product(range(V), repeat=depth))
        here = _prefixes(valid, depth)
        nxt = _prefixes(valid, depth + 1) if depth < s.length else set()
        expected = np.zeros((len(prefixes), V), dtype=bool)
        for r, p in enumerate(prefixes):
            if p in here:
                for c in range(V):
                    expected[r, c] = (p + (c,)) in nxt
        pt = torch.tensor(prefixes, dtype=torch.long).reshape(len(prefixes), depth)
        nodes = trie.walk(pt)                                  # one batched call per depth
        assert nodes.shape == (len(prefixes),)
        is_node = (nodes >= 0).numpy()
        assert is_node.tolist() == [p in here for p in prefixes]
        got = trie.allowed(nodes).numpy()                      # one batched call per depth
        np.testing.assert_array_equal(got, expected)
        # invalid prefixes allow nothing; valid non-leaf prefixes allow something
        assert not got[~is_node].any()
        if depth < s.length:
            assert got[is_node].any(1).all()
        else:
            assert not got.any()
            # leaves carry their item id
            leaf_items = trie.leaf_item[nodes[nodes >= 0]].numpy()
            assert sorted(leaf_items.tolist()) == list(range(s.n_items))
            assert (trie.depth[nodes[nodes >= 0]] == s.length).all()
        n_valid_prefixes += len(here)
    assert trie.num_nodes == n_valid_prefixes


def test_trie_step_matches_table_and_handles_out_of_range(tiny_sids):
    trie = tiny_sids.trie
    V = trie.vocab_size
    valid = _valid_set(tiny_sids)
    first = sorted({t[0] for t in valid})
    root = trie.root(4)
    assert root.tolist() == [0, 0, 0, 0]
    # out-of-range codes and the invalid node all give -1
    nodes = torch.tensor([0, 0, 0, 0, NO_ITEM, NO_ITEM])
    codes = torch.tensor([-1, V, V + 10, -7, first[0], 0])
    assert trie.step(nodes, codes).tolist() == [NO_ITEM] * 6
    # a batch of valid steps from the root
    kids = trie.step(trie.root(len(first)), torch.tensor(first))
    assert (kids > 0).all() and len(set(kids.tolist())) == len(first)
    assert (trie.depth[kids] == 1).all()
    # codes that are in range but unused at the root give -1
    unused = [c for c in range(V) if c not in first]
    if unused:
        assert (trie.step(trie.root(len(unused)), torch.tensor(unused)) == NO_ITEM).all()
    # step on a 2-D batch keeps the shape
    out = trie.step(torch.zeros(2, 3, dtype=torch.long), torch.tensor([[first[0]] * 3, [-1, V, first[-1]]]))
    assert out.shape == (2, 3)
    assert out[1, 0] == NO_ITEM and out[1, 1] == NO_ITEM and out[1, 2] >= 0
    # allowed of the invalid node is all False, of a 2-D batch is [..., V]
    assert not trie.allowed(torch.tensor([NO_ITEM])).any()
    assert trie.allowed(torch.zeros(2, 3, dtype=torch.long)).shape == (2, 3, V)


def test_trie_on_hand_made_codes():
    codes = np.array([[0, 1, 0], [0, 1, 1], [0, 2, 0], [1, 0, 0]])
    trie = Trie(codes, vocab_size=3)
    assert trie.num_nodes == 1 + 2 + 3 + 4
    assert trie.allowed(trie.root(1)).tolist() == [[True, True, False]]
    n01 = trie.walk(torch.tensor([[0, 1]]))
    assert trie.allowed(n01).tolist() == [[True, True, False]]
    n1 = trie.walk(torch.tensor([[1]]))
    assert trie.allowed(n1).tolist() == [[True, False, False]]
    assert trie.walk(torch.tensor([[2]])).tolist() == [NO_ITEM]
    assert trie.walk(torch.zeros(3, 0, dtype=torch.long)).tolist() == [0, 0, 0]
    got = trie.lookup(torch.tensor([[0, 1, 1], [1, 0, 0], [1, 0, 1], [0, 2, 0], [2, 2, 2], [0, 1, 3]]))
    assert got.tolist() == [1, 3, NO_ITEM, 2, NO_ITEM, NO_ITEM]
    with pytest.raises(ValueError, match="length"):
        trie.lookup(torch.tensor([[0, 1]]))
    moved = trie.to("cpu")
    assert moved.lookup(torch.tensor([[0, 2, 0]])).tolist() == [2]


def test_trie_rejects_duplicate_and_bad_codes():
    with pytest.raises(ValueError, match="duplicate"):
        Trie(np.array([[0, 1], [1, 0], [0, 1]]), vocab_size=2)
    with pytest.raises(ValueError, match="vocab_size"):
        Trie(np.array([[0, 1], [1, 2]]), vocab_size=2)
    with pytest.raises(ValueError, match="vocab_size"):
        Trie(np.array([[0, -1]]), vocab_size=2)
    with pytest.raises(ValueError, match="non-empty"):
        Trie(np.zeros((0, 2), dtype=np.int64), vocab_size=2)
    with pytest.raises(ValueError, match="non-empty"):
        Trie(np.array([0, 1]), vocab_size=2)


# ---------------------------------------------------------------- uniqueness token
def test_add_uniqueness_token_hand_computed():
    prefix = np.array([[0, 1], [0, 1], [2, 0], [0, 1], [2, 0], [1, 1]])
    out = add_uniqueness_token(prefix)
    np.testing.assert_array_equal(out[:, :2], prefix)
    assert out[:, 2].tolist() == [0, 1, 0, 2, 1, 0]


def test_from_prefix_codes_with_collisions():
    prefix = np.array([[0, 1], [0, 1], [2, 0], [0, 1], [2, 0], [1, 1], [3, 2]])
    s = SemanticIDs.from_prefix_codes(prefix)
    assert s.codes[:, 2].tolist() == [0, 1, 0, 2, 1, 0, 0]
    assert s.collisions_before_uniqueness == 7 - 4
    assert s.max_collision_group == 3
    assert s.codebook_sizes == (4, 4, 3)
    assert s.vocab_size == 4
    np.testing.assert_array_equal(s.decode(s.codes), np.arange(7))
    assert s.decode([[0, 1, 3], [0, 1, 2], [3, 2, 1]]).tolist() == [NO_ITEM, 3, NO_ITEM]
    # given codebook size
    s8 = SemanticIDs.from_prefix_codes(prefix, codebook_size=8)
    assert s8.codebook_sizes == (8, 8, 3)
    # no collisions: token is always 0
    s0 = SemanticIDs.from_prefix_codes(np.array([[0], [1], [2]]))
    assert s0.codes[:, 1].tolist() == [0, 0, 0]
    assert s0.collisions_before_uniqueness == 0 and s0.max_collision_group == 1


@pytest.mark.parametrize("bad", [np.zeros((0, 2), dtype=np.int64), np.array([1, 2, 3]), np.array([[0, -1]])])
def test_from_prefix_codes_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="prefix_codes"):
        SemanticIDs.from_prefix_codes(bad)


def test_from_prefix_codes_rejects_too_small_codebook():
    with pytest.raises(ValueError, match="codebook_size=3"):
        SemanticIDs.from_prefix_codes(np.array([[0, 5], [1, 2]]), codebook_size=3)


# ---------------------------------------------------------------- configuration errors
@pytest.mark.parametrize("field,value", [
    ("codebook_size", 1),
    ("codebook_size", 0),
    ("num_levels", 0),
    ("num_levels", -2),
    ("kmeans_iters", 0),
    ("seed", -1),
])
def test_sid_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        SIDConfig(**{field: value})


def test_build_rejects_bad_features():
    x = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="codebook_size=32"):
        build_semantic_ids(x, SIDConfig(num_levels=1, codebook_size=32))
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build_semantic_ids(bad, SIDConfig(num_levels=1, codebook_size=4))
    bad[3, 2] = np.inf
    with pytest.raises(ValueError, match="inf"):
        build_semantic_ids(bad, SIDConfig(num_levels=1, codebook_size=4))
    with pytest.raises(ValueError, match="features"):
        build_semantic_ids(np.zeros((0, 4)), SIDConfig(num_levels=1, codebook_size=2))
    with pytest.raises(ValueError, match="features"):
        build_semantic_ids(np.zeros(10), SIDConfig(num_levels=1, codebook_size=2))


def test_build_with_codebook_equal_to_items_and_duplicate_features():
    # as many codes as items: still one tuple per item; identical rows collide and get tokens
    x = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 1.0], [1.0, 5.0]], dtype=np.float32)
    s = build_semantic_ids(x, SIDConfig(num_levels=2, codebook_size=4))
    assert len(_valid_set(s)) == 4
    assert tuple(s.codes[0, :2]) == tuple(s.codes[1, :2])
    assert sorted(s.codes[:2, 2].tolist()) == [0, 1]
    np.testing.assert_array_equal(s.decode(s.codes), np.arange(4))
