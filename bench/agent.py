"""Node agent benchmark: lookup latency in-process and over the unix socket, and CRI calls per container lifetime.

A node of 110 pods x 3 containers is built in the in-memory runtime (tests/agent/fake_runtime.py) with metadata
for every pod; the agent serves it. Run: `.venv/bin/python -m bench.agent [--lookups N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from tests.agent.fake_runtime import FakeRuntime, container, sandbox

from nodemeta.agent.app import Agent
from nodemeta.agent.settings import AgentSettings, ApiSettings


class _Idle:
    async def run(self) -> None:
        await asyncio.Event().wait()


def _percentiles(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    return samples[len(samples) // 2], samples[int(len(samples) * 0.99)]


async def main(lookups: int) -> None:
    runtime = FakeRuntime()
    ids = []
    for n in range(1, 111):
        sb = runtime.add_sandbox(sandbox(n))
        ids.extend(runtime.add_container(container(1000 * n + k, sb)).id for k in range(3))
    with tempfile.TemporaryDirectory() as tmp:
        sock = str(Path(tmp) / "agent.sock")
        settings = AgentSettings(node_name="n1", api=ApiSettings(socket=sock), metrics_address=None,
                                 probe_address=None)  # fmt: skip
        agent = Agent(settings, runtime, lambda sink: _Idle())
        for n in range(1, 111):
            sb = sandbox(n)
            meta = f'{{"labels":{{"app":"a{n}"}},"name":"{sb.name}","namespace":"default","uid":"{sb.uid}"}}'
            agent.apply("Create", "Pod", sb.uid, meta, '{"podIP":"10.0.0.1"}', {"Service": ()})
        task = asyncio.create_task(agent.run())
        await agent.wait_serving()
        while len(agent.mirror.containers) < len(ids):  # noqa: ASYNC110 - the relist loop fills it
            await asyncio.sleep(0.05)
        samples = []
        for i in range(lookups):
            key = ids[i % len(ids)][:12]
            t = time.perf_counter()
            agent.joiner.by_id(key)
            samples.append((time.perf_counter() - t) * 1e6)
        p50, p99 = _percentiles(samples)
        print(f"in-process by_id (12-char): p50 {p50:.1f} us, p99 {p99:.1f} us over {lookups}")
        samples = []
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as http:
            for i in range(min(lookups, 5000)):
                t = time.perf_counter()
                async with http.get(f"http://agent/v1/containers/{ids[i % len(ids)]}") as response:
                    await response.read()
                samples.append((time.perf_counter() - t) * 1e3)
        p50, p99 = _percentiles(samples)
        print(f"unix socket GET /v1/containers: p50 {p50:.3f} ms, p99 {p99:.3f} ms over {len(samples)}")
        agent.stop()
        await task
    per = [runtime.status_calls[i] for i in ids]
    print(
        f"status calls per container (relist path, created+started before the first relist): "
        f"max {max(per)}, mean {statistics.mean(per):.2f}; list calls {runtime.calls['ListContainers']}"
    )
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lookups", type=int, default=20000)
    asyncio.run(main(parser.parse_args().lookups))
