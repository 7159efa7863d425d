"""Cancelling an informer at any point stops its request, closes its connection and leaves no task behind.

The autouse `no_leaked_tasks` fixture fails any of these tests that leaves a task running.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from nodemeta.kube import PODS, ApiClient, ClusterConfig, Informer, Pod
from nodemeta.sim import SimServer
from tests.kube.cluster import Cluster, eventually
from tests.kube.conftest import FAST


async def run_informer(config: ClusterConfig, started: asyncio.Future[tuple[ApiClient, Informer[Pod]]]) -> None:
    """The usual shape: a client for the block, an informer running inside it."""
    async with ApiClient(config) as client:
        informer = Informer(client, PODS, settings=FAST)
        started.set_result((client, informer))
        await informer.run()


async def cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancel_mid_list(config: ClusterConfig, kube_sim: SimServer) -> None:
    in_flight = asyncio.Event()

    def seen(request: object) -> bool:
        in_flight.set()
        return True

    # The latency's request filter tells us the LIST has reached the server; the latency then holds it there
    # far longer than the test runs.
    kube_sim.faults.slow(30.0, applies=seen)
    started: asyncio.Future[tuple[ApiClient, Informer[Pod]]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_informer(config, started))
    client, informer = await started
    async with asyncio.timeout(5):
        await in_flight.wait()
    await cancel(task)
    assert client.closed
    assert not informer.has_synced
    assert informer.stats.lists == 0


async def test_cancel_mid_watch(config: ClusterConfig, kube_sim: SimServer, cluster: Cluster) -> None:
    cluster.pod("a")
    started: asyncio.Future[tuple[ApiClient, Informer[Pod]]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_informer(config, started))
    client, informer = await started
    async with asyncio.timeout(5):
        await informer.wait_synced()
    await eventually(lambda: kube_sim.open_watches != set())
    await cancel(task)
    assert client.closed
    # The server sees the watch connection go away.
    await eventually(lambda: kube_sim.open_watches == set())


async def test_cancel_during_backoff(config: ClusterConfig, kube_sim: SimServer) -> None:
    kube_sim.faults.burst(1000, 503)  # every request fails: the reflector sleeps between attempts
    async with ApiClient(config) as client:
        informer = Informer(client, PODS, settings=FAST)
        task = asyncio.create_task(informer.run())
        await eventually(lambda: informer.stats.list_failures >= 2)
        await cancel(task)
    assert client.closed


async def test_informer_in_a_task_group_stops_with_the_group(config: ClusterConfig, cluster: Cluster) -> None:
    cluster.pod("a")
    async with ApiClient(config) as client:
        informer = Informer(client, PODS, settings=FAST)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5), asyncio.TaskGroup() as group:
                group.create_task(informer.run())
                await informer.wait_synced()
                await asyncio.sleep(10)  # the timeout cancels the group, and with it the informer
        assert informer.has_synced
        assert "default/a" in informer.store
