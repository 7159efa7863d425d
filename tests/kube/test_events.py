"""The Event recorder against the simulator over HTTP: what ends up stored is read back from the API (and once with
kubectl as an independent client), and compared with counts worked out by hand from client-go's rules."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from nodemeta.kube import (
    AGGREGATE_PREFIX,
    NORMAL,
    WARNING,
    ApiClient,
    CorrelatorSettings,
    ObjectReference,
    Recorder,
    RecorderSettings,
    Writer,
)
from nodemeta.sim import SimServer
from nodemeta.sim.registry import DeleteOptions
from tests.kube.cluster import Cluster, resource

EVENT_RES = resource("", "events")
FAST = RecorderSettings(retry_interval=0.01)
NODE = ObjectReference.node("node-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def running(recorder: Recorder) -> AsyncIterator[Recorder]:
    task = asyncio.create_task(recorder.run())
    try:
        yield recorder
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def make(client: ApiClient, settings: RecorderSettings = FAST, clock: Clock | None = None) -> Recorder:
    return Recorder(Writer(client), host="node-1", settings=settings, **({"clock": clock} if clock else {}))


async def events(client: ApiClient, namespace: str = "default") -> list[dict[str, Any]]:
    body = orjson.loads(await client.send("GET", f"/api/v1/namespaces/{namespace}/events"))
    return [e for e in body["items"] if (e.get("source") or {}).get("component") == "nodemeta-agent"]


async def test_repeats_become_one_event_with_their_count(client: ApiClient) -> None:
    clock = Clock()
    async with running(make(client, clock=clock)) as recorder:
        for _ in range(7):
            assert recorder.record(NODE, WARNING, "CNIPluginMissing", "linkerd-cni is not in 10-calico.conflist")
            clock.now += 2
        await recorder.flush()
    (event,) = await events(client)
    assert event["count"] == 7
    assert event["involvedObject"] == {"kind": "Node", "name": "node-1", "uid": "node-1", "apiVersion": "v1"}
    assert event["source"] == {"component": "nodemeta-agent", "host": "node-1"}
    assert event["reportingComponent"] == "nodemeta-agent" and event["reportingInstance"] == "node-1"
    assert event["type"] == "Warning" and event["reason"] == "CNIPluginMissing"
    assert event["firstTimestamp"] == "2023-11-14T22:13:20Z"
    assert event["lastTimestamp"] == "2023-11-14T22:13:32Z"  # the 7th occurrence, 12 s later
    assert (recorder.stats.created, recorder.stats.patched) == (1, 6)


async def test_pod_events_live_in_the_pods_namespace(client: ApiClient, cluster: Cluster) -> None:
    cluster.namespace("shop")
    cluster.pod("web", "shop")
    pod = ObjectReference.pod("shop", "web", "uid-1")
    async with running(make(client)) as recorder:
        recorder.record(pod, WARNING, "PodNotCaptured", "no capture rules")
        await recorder.flush()
    (event,) = await events(client, "shop")
    assert event["metadata"]["namespace"] == "shop"
    assert event["metadata"]["name"].startswith("web.")
    assert event["involvedObject"]["uid"] == "uid-1"
    assert await events(client) == []


async def test_similar_messages_are_combined_after_the_threshold(client: ApiClient) -> None:
    async with running(make(client)) as recorder:
        for i in range(12):
            recorder.record(NODE, WARNING, "CNIConfigInvalid", f"file {i:02d}.conflist does not parse")
        await recorder.flush()
    stored = await events(client)
    # Distinct messages 1-9 each make an Event; from the 10th on they are one combined Event (10th, 11th, 12th).
    assert len(stored) == 10
    combined = [e for e in stored if e["message"].startswith(AGGREGATE_PREFIX)]
    assert len(combined) == 1
    assert combined[0]["count"] == 3
    assert combined[0]["message"] == AGGREGATE_PREFIX + "file 11.conflist does not parse"
    assert sorted(e["count"] for e in stored) == [1] * 9 + [3]


async def test_spam_filter_caps_writes_per_object_and_keeps_the_true_count(client: ApiClient) -> None:
    clock = Clock()
    settings = RecorderSettings(retry_interval=0.01, correlator=CorrelatorSettings(spam_burst=3, spam_interval=100))
    async with running(make(client, settings, clock)) as recorder:
        for _ in range(5):
            recorder.record(NODE, WARNING, "CNIConfigFlapping", "two writers alternate on 10-calico.conflist")
        await recorder.flush()
        (event,) = await events(client)
        assert event["count"] == 3  # 3 writes got a token, 2 occurrences were held back
        assert recorder.stats.filtered == 2
        # A different object has its own bucket.
        other = ObjectReference.node("node-2")
        recorder.record(other, WARNING, "CNIConfigFlapping", "two writers alternate on 10-calico.conflist")
        await recorder.flush()
        assert recorder.stats.filtered == 2
        # One refill interval later one more write goes through, carrying every occurrence so far.
        clock.now += 100
        recorder.record(NODE, WARNING, "CNIConfigFlapping", "two writers alternate on 10-calico.conflist")
        await recorder.flush()
    node1 = [e for e in await events(client) if e["involvedObject"]["name"] == "node-1"]
    assert [e["count"] for e in node1] == [6]


async def test_full_queue_drops_the_newest_and_never_blocks(client: ApiClient) -> None:
    recorder = make(client, RecorderSettings(queue_size=2, retry_interval=0.01))
    assert recorder.record(NODE, NORMAL, "A", "one")
    assert recorder.record(NODE, NORMAL, "B", "two")
    assert not recorder.record(NODE, NORMAL, "C", "three")
    assert recorder.stats.dropped == 1 and recorder.pending == 2
    async with running(recorder):
        await recorder.flush()
    assert sorted(e["reason"] for e in await events(client)) == ["A", "B"]


async def test_server_errors_are_retried(client: ApiClient, kube_sim: SimServer) -> None:
    kube_sim.faults.burst(2, 503)
    async with running(make(client)) as recorder:
        recorder.record(NODE, WARNING, "CNIPluginMissing", "missing")
        await recorder.flush()
    assert recorder.stats.retries == 2 and recorder.stats.created == 1
    assert len(await events(client)) == 1


async def test_a_rejected_write_is_not_retried(client: ApiClient) -> None:
    async with running(make(client)) as recorder:
        recorder.record(ObjectReference.pod("nowhere", "p"), WARNING, "PodNotCaptured", "x")
        await recorder.flush()
    assert (recorder.stats.failed, recorder.stats.retries, recorder.stats.created) == (1, 0, 0)


async def test_an_expired_event_is_created_again_with_its_count(client: ApiClient, kube_sim: SimServer) -> None:
    async with running(make(client)) as recorder:
        recorder.record(NODE, WARNING, "CNIPluginMissing", "missing")
        await recorder.flush()
        (first,) = await events(client)
        kube_sim.registry.delete(EVENT_RES, "default", first["metadata"]["name"], DeleteOptions())  # the TTL
        recorder.record(NODE, WARNING, "CNIPluginMissing", "missing")
        await recorder.flush()
    (again,) = await events(client)
    assert again["metadata"]["name"] == first["metadata"]["name"]
    assert again["count"] == 2
    assert (recorder.stats.created, recorder.stats.patched) == (2, 0)


def test_bad_input_is_refused(client: ApiClient) -> None:
    recorder = make(client)
    with pytest.raises(ValueError, match="Normal or Warning"):
        recorder.record(NODE, "Error", "X", "y")
    with pytest.raises(ValueError, match="reason"):
        recorder.record(NODE, NORMAL, "", "y")
    with pytest.raises(ValueError, match="kind and a name"):
        recorder.record(ObjectReference(kind="Node", name=""), NORMAL, "X", "y")
    assert recorder.pending == 0


@pytest.mark.kubectl
async def test_kubectl_sees_the_aggregated_event(client: ApiClient, kube_sim: SimServer, tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed")
    async with running(make(client)) as recorder:
        for _ in range(4):
            recorder.record(NODE, WARNING, "CNIPluginMissing", "linkerd-cni missing from 05-cilium.conflist")
        await recorder.flush()
    env = {**os.environ, "KUBECONFIG": str(kube_sim.write_kubeconfig(tmp_path / "kc")), "HOME": str(tmp_path)}

    async def run(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            kubectl, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    listed = json.loads(await run("get", "events", "-n", "default", "-o", "json"))
    ours = [e for e in listed["items"] if e["reason"] == "CNIPluginMissing"]
    assert [e["count"] for e in ours] == [4]
    described = await run("describe", "node", "node-1")
    line = next(ln for ln in described.splitlines() if "CNIPluginMissing" in ln)
    assert "Warning" in line and "nodemeta-agent" in line and "x4" in line
