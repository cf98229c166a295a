"""Shared fixtures: one tiny simulated world and its semantic IDs, built once per test session.

Tests must not mutate these objects; build a fresh world when a test needs to change something.
"""
from __future__ import annotations

import pytest

from adagrpo_core.model.semantic_ids import SIDConfig, build_semantic_ids
from adagrpo_core.data.world import WorldConfig, build_world


@pytest.fixture(scope="session")
def tiny_world():
    """build_world(WorldConfig.tiny()): 300 users, 200 items, seed 0."""
    return build_world(WorldConfig.tiny())


@pytest.fixture(scope="session")
def tiny_sids(tiny_world):
    """Semantic IDs of the tiny world's items: 2 residual k-means levels of 8 codes + uniqueness token."""
    return build_semantic_ids(tiny_world.item_features, SIDConfig(num_levels=2, codebook_size=8))


@pytest.fixture(scope="session")
def dask_scheduler():
    """The address of one 2-worker Dask LocalCluster (one thread, own process each) that every test
    of the Dask path shares: a cluster takes seconds to start."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c.scheduler_address
