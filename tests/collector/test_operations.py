"""The collector as operators run it: `nodemeta collector run` as a real process, its logs, probes, metrics and
signals, checked the way the Go k8s-metacollector's lifecycle e2e tests check the Go binary; and the metrics
exposition in detail."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nodemeta.api.falco import metadata_pb2, metadata_pb2_grpc
from nodemeta.collector.metrics import CollectorMetrics
from nodemeta.sim import SimServer, SimSettings
from tests.collector.test_app import res

NODEMETA = [sys.executable, "-m", "nodemeta.cli"]
LOOPBACK = "127.0.0.1:0"


class CollectorProcess:
    """`nodemeta collector run` in a subprocess on free loopback ports, its stderr read line by line.

    `wait_for` looks for a substring in the lines after the previous match (as the Go e2e tests move their read
    position forward), so five connects need five log lines.
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._position = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read(), name="collector-stderr")

    @classmethod
    async def start(cls, kubeconfig: Path, *args: str) -> CollectorProcess:
        proc = await asyncio.create_subprocess_exec(
            *NODEMETA, "collector", "run", "--kubeconfig", str(kubeconfig),
            "--broker-bind-address", LOOPBACK, "--metrics-bind-address", LOOPBACK,
            "--health-probe-bind-address", LOOPBACK, *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode().rstrip("\n"))
            self._changed.set()
        self._changed.set()

    async def wait_for(self, text: str, timeout: float = 10.0) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for i in range(self._position, len(self.lines)):
                    if text in self.lines[i]:
                        self._position = i + 1
                        return self.lines[i]
                if self._reader.done():
                    raise AssertionError(f"exited before logging {text!r}:\n" + "\n".join(self.lines[-20:]))
                self._changed.clear()
                await self._changed.wait()

    def port(self, msg: str) -> int:
        for line in self.lines:
            record = json.loads(line)
            if record.get("msg") == msg:
                return int(record["port"])
        raise AssertionError(f"no {msg!r} line")

    async def signal_and_wait(self, sig: int, timeout: float = 15.0) -> int:
        self.proc.send_signal(sig)
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await self._reader
        return code

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def collector_process(kubeconfig: Path, *args: str) -> AsyncIterator[CollectorProcess]:
    process = await CollectorProcess.start(kubeconfig, *args)
    try:
        yield process
    finally:
        await process.kill()


async def ready_three_times(http: aiohttp.ClientSession, port: int, timeout: float = 10.0) -> None:
    """The Go e2e tests' readiness check: /readyz answers 200 three times in a row."""
    in_a_row = 0
    async with asyncio.timeout(timeout):
        while in_a_row < 3:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                in_a_row = in_a_row + 1 if response.status == 200 else 0
            await asyncio.sleep(0.05)


async def metrics_text(http: aiohttp.ClientSession, port: int) -> str:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await response.text()


def one_node_with_a_pod(sim: SimServer) -> str:
    sim.registry.create(res("", "namespaces"), "", {"metadata": {"name": "nginx-test"}})
    body = {
        "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "nginx", "image": "nginx:1.14.2"}]},
    }
    return str(sim.registry.create(res("", "pods"), "nginx-test", body).stored.uid)


async def test_collector_process_lifecycle_like_the_go_e2e(tmp_path: Path) -> None:
    async with SimServer(SimSettings(nodes=1, seed=2, controllers=())) as sim, aiohttp.ClientSession() as http:
        pod_uid = one_node_with_a_pod(sim)
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        async with collector_process(kubeconfig) as first, collector_process(kubeconfig) as second:
            for process in (first, second):
                line = await process.wait_for("starting grpc server", timeout=30)
                assert '"logger":"broker","msg":"starting grpc server","addr":"127.0.0.1:0"' in line
            # Two instances side by side, each ready on its own ports.
            ports = [(p.port("starting grpc server"), p.port("starting health probe server")) for p in (first, second)]
            assert len({port for pair in ports for port in pair}) == 4
            for _, probe in ports:
                await ready_three_times(http, probe)
                async with http.get(f"http://127.0.0.1:{probe}/healthz") as response:
                    assert response.status == 200
            grpc_port = ports[0][0]

            # Subscribe and kill a client five times: each connect and each abrupt disconnect is logged promptly.
            for round_ in range(5):
                client = await asyncio.create_subprocess_exec(
                    *NODEMETA, "watch", "--falco", "--node", "node-1", "--address", f"127.0.0.1:{grpc_port}",
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                try:
                    await first.wait_for('"broker.grpc-server","msg":"received watch request","node":"node-1"')
                    if round_ == 0:
                        assert client.stdout is not None
                        printed = json.loads(await asyncio.wait_for(client.stdout.readline(), 10))
                        assert (printed["reason"], printed["kind"]) == ("Create", "Namespace")
                finally:
                    client.kill()
                    await client.wait()
                await first.wait_for('"broker.grpc-server","msg":"stream deleted","subscriber":"node-1"', timeout=5)

            # The second instance serves too.
            async with grpc.aio.insecure_channel(f"127.0.0.1:{ports[1][0]}") as channel:
                call = metadata_pb2_grpc.MetadataStub(channel).Watch(
                    metadata_pb2.Selector(nodeName="node-1", resourceKinds={"Pod": ""})
                )
                event = await asyncio.wait_for(call.read(), 10)
                assert isinstance(event, metadata_pb2.Event)
                assert (event.reason, event.kind, event.uid) == ("Create", "Pod", pod_uid)
                call.cancel()

            # 100 streams on one connection, the gauge reads 100, then SIGTERM: exit 0 in time, streams UNAVAILABLE.
            metrics_port = first.port("starting metrics server")
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                stub = metadata_pb2_grpc.MetadataStub(channel)
                selector = metadata_pb2.Selector(nodeName="node-1", resourceKinds={"Pod": "", "Namespace": ""})
                calls = [stub.Watch(selector) for _ in range(100)]

                async def drain(call: Any) -> grpc.StatusCode:
                    try:
                        async for _ in call:
                            pass
                    except grpc.aio.AioRpcError as err:
                        return err.code()
                    return grpc.StatusCode.OK

                readers = [asyncio.create_task(drain(call)) for call in calls]
                try:
                    async with asyncio.timeout(10):  # the Go e2e test polls for this exact text
                        while True:
                            if "meta_collector_server_subscribers 100\n" in await metrics_text(http, metrics_port):
                                break
                            await asyncio.sleep(0.1)
                    await asyncio.sleep(0.5)
                    started = time.monotonic()
                    assert await first.signal_and_wait(signal.SIGTERM) == 0, "\n".join(first.lines[-20:])
                    assert time.monotonic() - started < 10
                    codes = await asyncio.wait_for(asyncio.gather(*readers), 10)
                finally:
                    for reader in readers:
                        reader.cancel()
                    await asyncio.gather(*readers, return_exceptions=True)
            assert set(codes) == {grpc.StatusCode.UNAVAILABLE}
            await first.wait_for('"logger":"broker","msg":"all grpc connections closed"', timeout=1)
            # SIGINT is a graceful stop too.
            assert await second.signal_and_wait(signal.SIGINT) == 0, "\n".join(second.lines[-20:])

        # Every stderr line is one JSON object starting with level, ts, logger, msg (zap's production format).
        for line in first.lines:
            record = json.loads(line)
            assert list(record)[:4] == ["level", "ts", "logger", "msg"], line
            assert isinstance(record["ts"], float)
        messages = [json.loads(line)["msg"] for line in first.lines]
        assert messages.count("received watch request") == 5 + 100
        assert "caches synced" in messages and "collector stopped" in messages


async def test_metrics_endpoint_has_the_go_names(tmp_path: Path) -> None:
    from tests.collector.test_app import FalcoSubscriber, channel_to, eventually, running_collector

    async with SimServer(SimSettings(nodes=1, seed=2, controllers=())) as sim, aiohttp.ClientSession() as http:
        one_node_with_a_pod(sim)
        async with running_collector(sim, tmp_path) as collector, channel_to(collector) as channel:
            sub = FalcoSubscriber("node-1").start(channel)
            try:
                await eventually(lambda: len(sub.objects) == 2)
                body = await metrics_text(http, collector.metrics_port)
                index_size = len(collector.index)
            finally:
                await sub.close()
    lines = body.splitlines()
    for name, kind in [
        ("meta_collector_server_subscribers", "gauge"),
        ("meta_collector_broker_queue_adds", "counter"),
        ("meta_collector_broker_queue_duration_seconds", "histogram"),
        ("meta_collector_broker_dispatched_events", "counter"),
        ("meta_collector_collector_event_api_server_received", "counter"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}" in lines, name
    assert "meta_collector_server_subscribers 1" in lines
    assert 'meta_collector_broker_dispatched_events{kind="Pod",type="Create"} 1' in lines
    assert 'meta_collector_broker_dispatched_events{kind="Namespace",type="Create"} 1' in lines
    assert 'meta_collector_broker_dispatched_events{kind="DaemonSet",type="Delete"} 0' in lines  # pre-created
    pod_events = 'meta_collector_collector_event_api_server_received{name="pod-collector",source="api-server"'
    assert f'{pod_events},type="create"}} 1' in lines
    assert any(line.startswith("meta_collector_broker_queue_adds{") for line in lines)
    # Go's names exactly: no `_total` twin of its counters, no `_created` series.
    assert not any(line.startswith("meta_collector_") and ("_total" in line or "_created" in line) for line in lines)
    # nodemeta's own series.
    assert 'nodemeta_informer_synced{kind="Pod"} 1.0' in lines
    assert any(line.startswith('nodemeta_informer_watches_total{kind="Pod"}') for line in lines)
    assert index_size > 2 and f"nodemeta_index_objects {index_size:.1f}" in lines
    families = {family.name for family in text_string_to_metric_families(body)}
    assert {"meta_collector_broker_queue_adds", "process_cpu_seconds", "nodemeta_informer_relists"} <= families


def test_observer_counts_and_exposition_format() -> None:
    metrics = CollectorMetrics(process=False)
    metrics.watch_state(subscribers=lambda: 3, index_objects=lambda: 0)
    for _ in range(5):
        metrics.queue_add("node-1", "Update", "Pod")
    metrics.dispatched("Pod", "Update", 4)
    metrics.dispatched("StatefulSet", "Create", 2)  # beyond the Falco kinds: created on first use
    metrics.subscriber_ended("node-1", "overflow")
    metrics.subscriber_ended("node-2", "overflow")
    metrics.queue_wait(0.0005)
    metrics.queue_wait(20)
    metrics.api_server_events("ReplicationController").delete.inc()
    text = metrics.exposition().decode()
    lines = text.splitlines()
    assert "meta_collector_server_subscribers 3" in lines
    assert 'meta_collector_broker_queue_adds{name="subscriber-queue",type="Update"} 5' in lines
    assert 'meta_collector_broker_queue_adds{name="subscriber-queue",type="Create"} 0' in lines
    assert 'meta_collector_broker_dispatched_events{kind="Pod",type="Update"} 4' in lines
    assert 'meta_collector_broker_dispatched_events{kind="StatefulSet",type="Create"} 2' in lines
    assert (
        'meta_collector_collector_event_api_server_received{name="replicationcontroller-collector",'
        'source="api-server",type="delete"} 1'
    ) in lines
    # The histogram as client_golang writes it: Go's ten buckets, `le` last, cumulative counts, no _created.
    buckets = [line for line in lines if line.startswith("meta_collector_broker_queue_duration_seconds_bucket")]
    assert [line.split('le="')[1].split('"')[0] for line in buckets] == [
        "1e-08", "1e-07", "1e-06", "1e-05", "0.0001", "0.001", "0.01", "0.1", "1", "10", "+Inf",
    ]  # fmt: skip
    assert buckets[5] == 'meta_collector_broker_queue_duration_seconds_bucket{name="subscriber-queue",le="0.001"} 1'
    assert buckets[-2].endswith(" 1") and buckets[-1].endswith(" 2")
    assert 'meta_collector_broker_queue_duration_seconds_sum{name="subscriber-queue"} 20.0005' in lines
    assert 'meta_collector_broker_queue_duration_seconds_count{name="subscriber-queue"} 2' in lines
    # Why subscribers ended (overflow = fell behind), without the node name.
    assert 'nodemeta_subscribers_ended_total{reason="overflow"} 2.0' in lines
    assert "process_cpu_seconds_total" not in text
    # Valid exposition for a Prometheus parser.
    parsed = {family.name: family for family in text_string_to_metric_families(text)}
    assert parsed["meta_collector_broker_queue_duration_seconds"].type == "histogram"


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (7, "7"), (0.25, "0.25"), (123456, "123456"), (1234567, "1.234567e+06"), (1e-8, "1e-08")],
)
def test_numbers_are_written_as_client_golang_writes_them(value: float, text: str) -> None:
    from nodemeta.collector.metrics import _go_float

    assert _go_float(value) == text
