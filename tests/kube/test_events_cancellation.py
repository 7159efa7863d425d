"""Cancelling the recorder's sender: while it waits for work, while it sleeps between retries, and mid-request. It
must end at once, leave no task behind (the autouse guard checks), and `record()` must keep working afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from nodemeta.kube import WARNING, ApiClient, ObjectReference, Recorder, Writer
from nodemeta.sim import SimServer

NODE = ObjectReference.node("node-1")


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert task.cancelled()


async def test_cancel_while_idle(client: ApiClient) -> None:
    recorder = Recorder(Writer(client), host="node-1")
    task = asyncio.create_task(recorder.run())
    await asyncio.sleep(0)
    await stop(task)
    assert recorder.record(NODE, WARNING, "X", "after stop")
    assert recorder.pending == 1


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_cancel_during_the_retry_pause(client: ApiClient, kube_sim: SimServer) -> None:
    # Every request is throttled with Retry-After: 3600, which the recorder honours: only cancellation ends the pause.
    kube_sim.faults.throttle(1.0, retry_after=3600)
    recorder = Recorder(Writer(client), host="node-1")
    recorder.record(NODE, WARNING, "X", "y")
    task = asyncio.create_task(recorder.run())
    await eventually(lambda: recorder.stats.retries == 1)
    await stop(task)
    kube_sim.faults.clear()
    assert recorder.stats.created == 0 and recorder.stats.retries == 1


async def test_cancel_mid_request(client: ApiClient, kube_sim: SimServer) -> None:
    kube_sim.faults.slow(30)
    recorder = Recorder(Writer(client), host="node-1")
    recorder.record(NODE, WARNING, "X", "y")
    task = asyncio.create_task(recorder.run())
    await asyncio.sleep(0.2)  # the POST is in flight, held by the server
    await stop(task)
    kube_sim.faults.slow(0)
    assert recorder.stats.created == 0 and recorder.stats.failed == 0
