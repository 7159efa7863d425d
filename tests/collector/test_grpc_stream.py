"""`nodemeta.v1.NodeMetadata/Watch` over real grpc.aio servers and clients: batching, markers, sessions, resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from nodemeta.api.nodemeta.v1 import stream_pb2
from nodemeta.collector.broker import Broker
from nodemeta.collector.grpc_stream import NODE_NAME_HINT, V1_KINDS, v1_kinds
from nodemeta.collector.model import FALCO_KINDS, OwnerInfo, ServiceInfo
from tests.collector.grpc_clients import (
    NODE,
    RS,
    SVC_A,
    V1Holder,
    Watcher,
    new_broker,
    pod,
    scenario,
    serving,
    v1_watch,
    view_metas,
)


@pytest.fixture
async def broker() -> Broker:
    return new_broker(scenario(), batch_delay=0.02)


@pytest.fixture
async def channel(broker: Broker) -> AsyncIterator[grpc.aio.Channel]:
    async with serving(broker) as target, grpc.aio.insecure_channel(target) as chan:
        yield chan


async def until_synced(watcher: Watcher, holder: V1Holder, timeout: float = 5.0) -> list[stream_pb2.EventBatch]:
    """Apply batches until the one carrying initial_sync_complete; returns them."""
    batches = []
    async with asyncio.timeout(timeout):
        while not holder.synced:
            (batch,) = await watcher.take(1)
            holder.apply(batch)
            batches.append(batch)
    return batches


def names(batch: stream_pb2.EventBatch) -> list[tuple[str, str, str]]:
    return [(stream_pb2.Reason.Name(e.reason), e.kind, e.uid) for e in batch.events]


async def test_the_snapshot_arrives_in_batches_with_one_sync_marker(broker: Broker) -> None:
    for i in range(600):
        broker.apply(pod(f"many-{i:03}", node="big", labels={}))
    async with serving(broker) as target, grpc.aio.insecure_channel(target) as channel:
        watcher = v1_watch(channel, "big")
        holder = V1Holder.empty()
        batches = await until_synced(watcher, holder)
        # 601 objects (the namespace and 600 pods) in batches of at most 256.
        assert [len(b.events) for b in batches] == [256, 256, 89]
        assert [b.initial_sync_complete for b in batches] == [False, False, True]
        assert batches[0].session_id and not batches[1].session_id and not batches[0].reset
        assert [b.revision for b in batches] == [1, 2, 3]
        assert holder.metas() == view_metas(broker, "big")
        # Live: 300 changes queued at once go out as two batches, none with the marker.
        for i in range(300):
            broker.apply(pod(f"many-{i:03}", node="big", labels={}, ip=f"10.2.{i // 250}.{i % 250}"))
        live = await watcher.take(2)
        assert [len(b.events) for b in live] == [256, 44]
        for batch in live:
            holder.apply(batch)
        assert holder.synced == 1 and holder.metas() == view_metas(broker, "big")
        await asyncio.sleep(0.05)
        assert watcher.items.empty()
        await watcher.close()


async def test_changes_close_together_share_a_batch(broker: Broker, channel: grpc.aio.Channel) -> None:
    watcher = v1_watch(channel, NODE)
    holder = V1Holder.empty()
    await until_synced(watcher, holder)
    for i in range(20):
        broker.apply(pod(f"burst-{i}", owner=RS.ref))
        await asyncio.sleep(0)  # separate informer events, a loop turn apart
    batches = [await watcher.take(1)]
    while sum(len(b[0].events) for b in batches) < 20:
        batches.append(await watcher.take(1))
    assert len(batches) <= 2
    for (batch,) in batches:
        holder.apply(batch)
    await watcher.close()


async def test_batches_are_cut_at_the_byte_limit() -> None:
    broker = new_broker(scenario(), batch_max_bytes=1000)
    async with serving(broker) as target, grpc.aio.insecure_channel(target) as channel:
        for i in range(10):
            broker.apply(pod(f"fat-{i}", node="n5", labels={"pad": "p" * 200}))
        broker.apply(pod("huge", node="n5", labels={"pad": "h" * 3000}))
        watcher = v1_watch(channel, "n5")
        holder = V1Holder.empty()
        batches = await until_synced(watcher, holder)
        sizes = [b.ByteSize() for b in batches]
        assert all(size <= 1000 for size in sizes[:-1]) and len(batches) >= 4
        assert any(len(b.events) == 1 and b.ByteSize() > 3000 for b in batches)  # a lone event over the limit
        assert holder.metas() == view_metas(broker, "n5") and len(holder.objects) == 12
        await watcher.close()


async def test_an_empty_node_gets_an_empty_marker_batch(broker: Broker, channel: grpc.aio.Channel) -> None:
    watcher = v1_watch(channel, "no-pods-here")
    (first,) = await watcher.take(1)
    assert first.initial_sync_complete and first.session_id and not first.events and first.revision == 1
    broker.apply(pod("arrives", node="no-pods-here", labels={}))
    (second,) = await watcher.take(1)
    assert not second.initial_sync_complete and not second.session_id and second.revision == 2
    assert sorted(names(second)) == [("REASON_CREATE", "Namespace", "ns-uid"), ("REASON_CREATE", "Pod", "arrives")]
    await watcher.close()


async def test_resume_sends_only_the_difference(broker: Broker, channel: grpc.aio.Channel) -> None:
    first = v1_watch(channel, NODE)
    holder = V1Holder.empty()
    await until_synced(first, holder)
    broker.apply(pod("web-3", owner=RS.ref))
    (batch,) = await first.take(1)
    holder.apply(batch)
    await first.close()
    await asyncio.sleep(0.05)
    assert broker.subscriber_count == 0 and broker.session_count == 1
    # While away: one pod goes, one arrives, one changes, a Service is edited, an unrelated node changes.
    broker.delete(pod("bare-pod"))
    broker.apply(pod("web-4", owner=RS.ref))
    broker.apply(pod("web-1", owner=RS.ref, ip="10.9.9.9"))
    broker.apply(ServiceInfo(SVC_A.uid, SVC_A.name, SVC_A.namespace, labels={"v": "2"}, selector=SVC_A.selector))
    broker.apply(pod("elsewhere", node="n2", ip="10.8.8.8"))
    second = v1_watch(channel, NODE, session_id=holder.session_id, resume_revision=holder.revision)
    before = holder.revision
    (catch_up,) = await second.take(1)
    assert catch_up.session_id == holder.session_id and not catch_up.reset
    assert catch_up.initial_sync_complete and catch_up.revision > before
    assert sorted(names(catch_up)) == [
        ("REASON_CREATE", "Pod", "web-4"),
        ("REASON_DELETE", "Pod", "bare-pod"),
        ("REASON_UPDATE", "Pod", "web-1"),
        ("REASON_UPDATE", "Service", SVC_A.uid),
    ]
    holder.apply(catch_up)
    assert holder.metas() == view_metas(broker, NODE)
    await second.close()


async def test_an_unknown_session_resets_to_a_full_snapshot(broker: Broker, channel: grpc.aio.Channel) -> None:
    watcher = v1_watch(channel, NODE, session_id="expired-or-from-another-collector", resume_revision=41)
    holder = V1Holder({("Pod", "stale"): stream_pb2.Event(kind="Pod", uid="stale")}, revision=41)
    batches = await until_synced(watcher, holder)
    assert batches[0].reset and batches[0].session_id != "expired-or-from-another-collector"
    assert sum(b.reset for b in batches) == 1
    assert holder.metas() == view_metas(broker, NODE)  # the stale object is gone with the reset
    await watcher.close()


async def test_kinds_on_request(broker: Broker, channel: grpc.aio.Channel) -> None:
    assert v1_kinds([]) == FALCO_KINDS
    assert v1_kinds(["ReplicaController", "StatefulSet"]) == {"ReplicationController", "StatefulSet"}
    with pytest.raises(ValueError, match="unknown kinds Podz"):
        v1_kinds(["Podz"])
    broker.apply(OwnerInfo("StatefulSet", "sts-uid", "db", "nginx-test"))
    broker.apply(pod("db-0", owner=OwnerInfo("StatefulSet", "sts-uid", "db").ref))
    watcher = v1_watch(channel, NODE, ["StatefulSet", "Pod"])
    holder = V1Holder.empty()
    await until_synced(watcher, holder)
    assert {kind for kind, _ in holder.objects} == {"Pod", "StatefulSet"} <= V1_KINDS
    error = await v1_watch(channel, NODE, ["Pod", "Podz"]).status()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "Podz" in (error.details() or "")
    await watcher.close()


async def test_an_empty_node_name_is_a_failed_precondition(channel: grpc.aio.Channel) -> None:
    error = await v1_watch(channel, "").status()
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and error.details() == NODE_NAME_HINT


async def test_shutdown_and_overflow_end_the_stream_with_unavailable() -> None:
    broker = new_broker(scenario(), queue_limit=3, batch_delay=0.5)
    async with serving(broker) as target, grpc.aio.insecure_channel(target) as channel:
        watcher = v1_watch(channel, NODE)
        holder = V1Holder.empty()
        await until_synced(watcher, holder)
        broker.apply(pod("a1", owner=RS.ref))  # the stream now waits 0.5 s to fill a batch
        await asyncio.sleep(0.05)
        for i in range(4):
            broker.apply(pod(f"b{i}", owner=RS.ref))
        error = await watcher.status()
        assert error.code() == grpc.StatusCode.UNAVAILABLE and "too far behind" in (error.details() or "")
        # The session survives the overflow: the client resumes where it was.
        again = v1_watch(channel, NODE, session_id=holder.session_id, resume_revision=holder.revision)
        (catch_up,) = await again.take(1)
        assert not catch_up.reset and len(catch_up.events) == 5
        holder.apply(catch_up)
        assert holder.metas() == view_metas(broker, NODE)
        broker.close()  # what the server's graceful stop does first
        error = await again.status()
        assert error.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in (error.details() or "")
