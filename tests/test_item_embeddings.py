"""Collaborative item embeddings (co-occurrence -> PPMI -> randomized SVD) and the RQ-KMeans IDs
built from them: planted clusters are recovered, runs repeat exactly, and validation / test
clicks never leak into the embeddings."""
import numpy as np
import pytest

from adagrpo_core.data.interactions import Interactions
from adagrpo_core.data.sequences import EmbeddingConfig
from adagrpo_core.model.item_embeddings import (collaborative_semantic_ids, combine_features, cooc_embeddings,
                                                cooccurrence_counts, id_features, randomized_svd)
from adagrpo_core.model.semantic_ids import SIDConfig

N_CLUSTERS, PER_CLUSTER = 8, 12


def planted(n_users=400, stay=0.9, seed=0):
    """Users who click within one cluster of items (item // PER_CLUSTER), straying with 1 - stay."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        home = rng.integers(N_CLUSTERS)
        clusters = np.where(rng.random(rng.integers(5, 12)) < stay, home, rng.integers(N_CLUSTERS, size=1))
        seqs.append(clusters * PER_CLUSTER + rng.integers(PER_CLUSTER, size=len(clusters)))
    off = np.r_[0, np.cumsum([len(s) for s in seqs])]
    return Interactions(np.concatenate(seqs), off, N_CLUSTERS * PER_CLUSTER)


def same_cluster_first_code_share(sids) -> float:
    """Share of same-cluster item pairs whose first codes are equal."""
    first = sids.codes[:, 0]
    cluster = np.arange(sids.n_items) // PER_CLUSTER
    same = cluster[:, None] == cluster[None, :]
    off_diag = ~np.eye(sids.n_items, dtype=bool)
    return float((first[:, None] == first[None, :])[same & off_diag].mean())


def test_cooccurrence_embeddings_put_cluster_mates_closest():
    data = planted()
    emb = cooc_embeddings(data, EmbeddingConfig(dim=16))
    assert emb.shape == (data.n_items, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    cos = emb @ emb.T
    cluster = np.arange(data.n_items) // PER_CLUSTER
    same = (cluster[:, None] == cluster[None, :]) & ~np.eye(data.n_items, dtype=bool)
    other = cluster[:, None] != cluster[None, :]
    assert cos[same].mean() > cos[other].mean() + 0.5, (cos[same].mean(), cos[other].mean())
    np.fill_diagonal(cos, -np.inf)
    assert (cluster[cos.argmax(1)] == cluster).mean() >= 0.95      # nearest neighbour: a cluster mate


def test_collaborative_ids_share_first_codes_within_clusters():
    data = planted()
    cfg = SIDConfig(num_levels=2, codebook_size=N_CLUSTERS)
    cooc = collaborative_semantic_ids(data, cfg, "cooc", emb_cfg=EmbeddingConfig(dim=16))
    random_attrs = np.random.default_rng(1).normal(size=(data.n_items, 16))
    attr = collaborative_semantic_ids(data, cfg, "attributes", attributes=random_attrs)
    both = collaborative_semantic_ids(data, cfg, "both", attributes=random_attrs,
                                      emb_cfg=EmbeddingConfig(dim=16, attribute_weight=0.25))
    s_cooc, s_attr, s_both = map(same_cluster_first_code_share, (cooc, attr, both))
    assert s_cooc >= 0.8 and s_attr <= 0.3 and s_cooc > 3 * s_attr, (s_cooc, s_attr)
    assert s_both > 2 * s_attr, (s_both, s_attr)        # a light attribute block keeps the clusters
    assert cooc.n_items == data.n_items and len(np.unique(cooc.codes, axis=0)) == data.n_items


def test_embeddings_and_ids_are_deterministic():
    data = planted()
    a, b = cooc_embeddings(data), cooc_embeddings(data)
    assert np.array_equal(a, b)
    cfg = SIDConfig(num_levels=2, codebook_size=8, seed=3)
    assert np.array_equal(collaborative_semantic_ids(data, cfg).codes, collaborative_semantic_ids(data, cfg).codes)


def test_validation_and_test_clicks_do_not_leak():
    data = planted()
    before = cooc_embeddings(data, EmbeddingConfig(dim=16))
    last = data.seq_offsets[1:] - 1                  # every user's test click; last - 1: validation
    changed = data.seq_items.copy()
    changed[last] = (changed[last] + 37) % data.n_items
    changed[last - 1] = (changed[last - 1] + 11) % data.n_items
    after = cooc_embeddings(Interactions(changed, data.seq_offsets, data.n_items), EmbeddingConfig(dim=16))
    assert np.array_equal(before, after)
    # the check can fail: changing a training click does change the embeddings
    train = changed.copy()
    train[data.seq_offsets[:-1]] = (train[data.seq_offsets[:-1]] + 5) % data.n_items
    assert not np.array_equal(before, cooc_embeddings(Interactions(train, data.seq_offsets, data.n_items),
                                                      EmbeddingConfig(dim=16)))


def test_counts_are_symmetric_windowed_and_skip_repeats():
    # one user: train part 0 1 0 2 (then valid 3, test 4)
    data = Interactions(np.array([0, 1, 0, 2, 3, 4]), np.array([0, 6]), 5)
    c = cooccurrence_counts(data, window=2).toarray()
    assert np.allclose(c, c.T) and np.all(np.diag(c) == 0)
    assert c[0, 1] == pytest.approx(2.0)          # (0,1) and (1,0) at distance 1
    assert c[1, 2] == pytest.approx(0.5)          # distance 2
    assert c[0, 2] == pytest.approx(1.0) and c[:, 3:].sum() == 0   # 3 and 4 are valid / test only


def test_items_without_training_cooccurrence_get_unit_vectors():
    data = Interactions(np.array([0, 1, 0, 5, 6, 2, 3, 2, 5, 6]), np.array([0, 5, 10]), 7)
    emb = cooc_embeddings(data, EmbeddingConfig(dim=4))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)   # items 4, 5, 6: no co-occurrence
    two = Interactions(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 3, 6]), 2)    # no pair at all
    assert np.isfinite(cooc_embeddings(two)).all()


def test_randomized_svd_matches_the_exact_one():
    a = np.random.default_rng(0).normal(size=(60, 40))
    u, s, vt = randomized_svd(a, 5, power_iters=8)
    s_exact = np.linalg.svd(a, compute_uv=False)[:5]
    np.testing.assert_allclose(s, s_exact, rtol=1e-6)
    np.testing.assert_allclose(u.T @ u, np.eye(5), atol=1e-8)
    with pytest.raises(ValueError, match="k must be"):
        randomized_svd(a, 41)


def test_combine_features_weights_blocks_not_columns():
    rng = np.random.default_rng(0)
    wide, narrow = rng.normal(size=(50, 100)) * 7, rng.normal(size=(50, 2))
    x = combine_features([wide, narrow], [1.0, 3.0])
    sq = (x ** 2).sum(0)
    assert sq[:100].sum() / sq[100:].sum() == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="weights"):
        combine_features([wide, narrow], [1.0])
    with pytest.raises(ValueError, match=r"block 1 must be \[n_items=50"):
        combine_features([wide, narrow[:10]])


def test_bad_kinds_and_missing_attributes_are_named():
    data = planted(n_users=30)
    with pytest.raises(ValueError, match="kind must be one of"):
        id_features(data, "text")
    with pytest.raises(ValueError, match="kind='both' needs attribute features, got attributes=None"):
        id_features(data, "both")
    with pytest.raises(ValueError, match=r"attributes must be \[n_items=96"):
        id_features(data, "attributes", np.zeros((5, 3)))
    with pytest.raises(ValueError, match="window"):
        EmbeddingConfig(window=0)
