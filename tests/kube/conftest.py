"""Fixtures for the Kubernetes client layer: a simulator without controllers, a loaded config and a client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nodemeta.kube import ApiClient, BackoffSettings, ClusterConfig, ReflectorSettings, load_config
from nodemeta.sim import SimServer, SimSettings
from tests.kube.cluster import Cluster

# Small numbers so every recovery path runs in well under a second.
FAST = ReflectorSettings(
    inactivity_timeout=2.0,
    min_watch_duration=0.2,
    backoff=BackoffSettings(initial=0.05, maximum=0.4, reset_after=5.0),
)


@pytest.fixture
async def kube_sim() -> AsyncIterator[SimServer]:
    """Raw API-server behaviour (no controllers), two nodes, a bookmark every 0.2 s."""
    async with SimServer(SimSettings(controllers=(), nodes=2, seed=3, bookmark_interval=0.2)) as server:
        yield server


@pytest.fixture
def cluster(kube_sim: SimServer) -> Cluster:
    return Cluster(kube_sim)


@pytest.fixture
async def config(kube_sim: SimServer, tmp_path: Path) -> ClusterConfig:
    return await load_config(str(kube_sim.write_kubeconfig(tmp_path / "kubeconfig")))


@pytest.fixture
async def client(config: ClusterConfig) -> AsyncIterator[ApiClient]:
    async with ApiClient(config) as api:
        yield api
