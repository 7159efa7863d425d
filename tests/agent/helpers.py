"""Shared helpers: an agent running in-process with the in-memory runtime and a metadata source of choice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from nodemeta.agent.app import Agent, MetadataSource
from nodemeta.agent.direct_source import DirectMode
from nodemeta.agent.metastore import MetadataSink
from nodemeta.agent.settings import AgentSettings, ApiSettings, BindAddress, MirrorSettings, StreamSettings
from nodemeta.agent.stream_source import CollectorSource
from nodemeta.cri.model import Runtime
from nodemeta.kube import BackoffSettings, load_config
from nodemeta.sim import SimServer
from nodemeta.sim.truth import node_view
from tests.collector.test_app import FAST as FAST_REFLECTOR

FAST_MIRROR = MirrorSettings(
    relist_period=0.05, not_found_delay=0.01, backoff=BackoffSettings(initial=0.02, maximum=0.1)
)
FAST_STREAM = StreamSettings(backoff=BackoffSettings(initial=0.05, maximum=0.3, reset_after=5.0))
LOCAL = BindAddress.parse("127.0.0.1:0")


def agent_settings(tmp_path: Path, node: str, **overrides: Any) -> AgentSettings:
    values: dict[str, Any] = {
        "node_name": node,
        "api": ApiSettings(socket=str(tmp_path / "agent.sock"), change_queue=16),
        "mirror": FAST_MIRROR,
        "stream": FAST_STREAM,
        "metrics_address": LOCAL,
        "probe_address": LOCAL,
        # gc.freeze() is process-wide: in-process agents leave the test process's collector alone (one test checks it).
        "freeze_heap": False,
        **overrides,
    }
    return AgentSettings(**values)


async def direct(sim: SimServer, tmp_path: Path, node: str) -> Callable[[MetadataSink], MetadataSource]:
    config = await load_config(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
    return lambda sink: DirectMode(config, node, sink, reflector=FAST_REFLECTOR)


def collector(port: int, node: str) -> Callable[[MetadataSink], MetadataSource]:
    return lambda sink: CollectorSource(f"127.0.0.1:{port}", node, sink, settings=FAST_STREAM)


@contextlib.asynccontextmanager
async def running_agent(
    settings: AgentSettings,
    runtime: Runtime,
    source: Callable[[MetadataSink], MetadataSource],
    *,
    timeout: float = 10.0,
    **agent_options: Any,
) -> AsyncIterator[Agent]:
    """An Agent running in this event loop until the block ends, serving its socket; stopped and awaited after."""
    agent = Agent(settings, runtime, source, **agent_options)
    task = asyncio.create_task(agent.run(), name=f"agent-{settings.node_name}")
    try:
        async with asyncio.timeout(timeout):
            serving = asyncio.ensure_future(agent.wait_serving())
            await asyncio.wait({task, serving}, return_when=asyncio.FIRST_COMPLETED)
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        if task.done():
            task.result()
        yield agent
    finally:
        agent.stop()
        async with asyncio.timeout(timeout):
            await task


def truth_payloads(sim: SimServer, node: str) -> dict[tuple[str, str], tuple[str, str | None, Any]]:
    """The node's ground truth (nodemeta.sim.truth) in the store's payload form."""
    return {
        key: (p.meta, p.status, dict(p.refs) if p.refs is not None else None)
        for key, p in node_view(sim.store, node).items()
    }


async def eventually(check: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - polling state another task or process changes
            await asyncio.sleep(0.05)
