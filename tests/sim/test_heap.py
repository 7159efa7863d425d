"""The server keeps its store out of full GC passes: refreezing after enough writes, at quiet moments."""

from __future__ import annotations

import gc

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.generator import build_cluster, plan_cluster
from nodemeta.sim.heap import HeapKeeper, HeapSettings
from tests.collector.test_app import eventually


def test_refreeze_waits_for_enough_writes_and_a_quiet_moment() -> None:
    keeper = HeapKeeper(HeapSettings(refreeze_writes=100, force_after=3))
    assert not keeper.due(99, busy=False)
    assert keeper.due(100, busy=False)
    assert not keeper.due(299, busy=True)
    assert keeper.due(300, busy=True)
    keeper.frozen_at = 250
    assert not keeper.due(300, busy=False)
    assert keeper.due(350, busy=False)
    assert not HeapKeeper(HeapSettings(refreeze_writes=0)).due(10**9, busy=False)


async def test_server_freezes_its_store_after_writes() -> None:
    heap = HeapSettings(refreeze_writes=30, interval=0.02)
    try:
        async with SimServer(SimSettings(controllers=()), heap=heap) as server:
            assert server.heap.freezes == 0
            async with aiohttp.ClientSession(base_url=server.url) as session:
                for i in range(40):
                    async with session.post("/api/v1/namespaces", json={"metadata": {"name": f"ns-{i}"}}) as resp:
                        assert resp.status == 201
            await eventually(lambda: server.heap.freezes > 0, timeout=30, what="a refreeze")
            assert server.heap.frozen_at >= 30
            stored = server.registry.find("namespaces", "", "ns-0")
            assert stored is not None and gc.is_tracked(stored)
            assert gc.get_freeze_count() > 0
            # Frozen: no generation holds it any more, so no collection walks it.
            assert all(obj is not stored for obj in gc.get_objects())
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("refreeze_writes", [0, 20_000])
async def test_a_generated_build_freezes_only_when_the_server_may(refreeze_writes: int) -> None:
    """0 leaves the embedding process's garbage collector alone, the post-build freeze included."""
    gc.unfreeze()
    try:
        heap = HeapSettings(refreeze_writes=refreeze_writes, interval=0.02)
        async with SimServer(SimSettings(nodes=0), heap=heap) as server:
            await build_cluster(server, plan_cluster(2, 3, seed=1))
            assert server.store.rv > 50
            assert (gc.get_freeze_count() > 0) == (refreeze_writes > 0)
            assert server.heap.freezes == 0  # the periodic refreeze had nothing due (20,000) or is off (0)
    finally:
        gc.unfreeze()
