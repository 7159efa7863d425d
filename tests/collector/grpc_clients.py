"""Test helpers for the metadata streams: a cluster of model records, a served broker, and stream readers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from nodemeta.api.falco import metadata_pb2
from nodemeta.api.nodemeta.v1 import stream_pb2
from nodemeta.collector.broker import Broker, BrokerSettings
from nodemeta.collector.model import NamespaceInfo, ObjectInfo, ObjectRef, OwnerInfo, PodInfo, ServiceInfo
from nodemeta.collector.relations import RelationIndex
from nodemeta.collector.render import Payload
from nodemeta.collector.server import ServerSettings, bound_port, build_server, stop

NODE = "n1"

# The Go collector's e2e scenario (shared spec section 6): namespace nginx-test with a DaemonSet, a Deployment
# with two replicas, two Services selecting app=nginx, a bare Pod, a bare ReplicaSet and a ReplicationController,
# all on n1; plus a pod on n2 and an unrelated Service.
NS = NamespaceInfo("ns-uid", "nginx-test", labels={"e2e": "true"})
DS = OwnerInfo("DaemonSet", "ds-uid", "agent", "nginx-test")
DEP = OwnerInfo("Deployment", "dep-uid", "web", "nginx-test", labels={"app": "nginx"})
RS = OwnerInfo("ReplicaSet", "rs-uid", "web-6f7", "nginx-test", controller_owner=ObjectRef("Deployment", "dep-uid"))
BARE_RS = OwnerInfo("ReplicaSet", "bare-rs-uid", "bare", "nginx-test")
RC = OwnerInfo("ReplicationController", "rc-uid", "legacy", "nginx-test")
SVC_A = ServiceInfo("svc-a-uid", "nginx", "nginx-test", selector={"app": "nginx"})
SVC_B = ServiceInfo("svc-b-uid", "nginx-2", "nginx-test", selector={"app": "nginx"})
SVC_OTHER = ServiceInfo("svc-o-uid", "db", "nginx-test", selector={"app": "db"})


def pod(
    uid: str,
    node: str = NODE,
    owner: ObjectRef | None = None,
    *,
    ip: str = "",
    labels: dict[str, str] | None = None,
    namespace: str = "nginx-test",
) -> PodInfo:
    return PodInfo(
        uid,
        f"pod-{uid}",
        namespace,
        labels={"app": "nginx"} if labels is None else labels,
        node_name=node,
        pod_ip=ip,
        controller_owner=owner,
    )


def scenario() -> list[ObjectInfo]:
    return [
        NS,
        DS,
        DEP,
        RS,
        BARE_RS,
        RC,
        SVC_A,
        SVC_B,
        SVC_OTHER,
        pod("ds-pod", owner=DS.ref, ip="10.0.0.1"),
        pod("web-1", owner=RS.ref, ip="10.0.0.2"),
        pod("web-2", owner=RS.ref, ip="10.0.0.3"),
        pod("bare-pod"),
        pod("bare-rs-pod", owner=BARE_RS.ref),
        pod("rc-pod", owner=RC.ref, ip="10.0.0.4"),
        pod("elsewhere", node="n2", owner=RS.ref),
    ]


def new_broker(infos: Iterable[ObjectInfo] = (), **settings: Any) -> Broker:
    broker = Broker(RelationIndex(), BrokerSettings(**settings))
    for info in infos:
        broker.apply(info)
    return broker


async def quiesce(before: set[asyncio.Task[Any]], timeout: float = 5.0) -> None:
    """Wait until the tasks started since `before` are done: grpc's own call and handler tasks can take a few loop
    turns after a channel closes or a server stops, and the leaked-task guard gives them only one."""
    current = asyncio.current_task()
    async with asyncio.timeout(timeout):
        while pending := {task for task in asyncio.all_tasks() - before if task is not current and not task.done()}:
            await asyncio.wait(pending)


@contextlib.asynccontextmanager
async def serving(broker: Broker, *, settings: ServerSettings | None = None, grace: float = 1.0) -> AsyncIterator[str]:
    """The broker served on a free loopback port; yields the target. Stops gracefully on exit, and waits for
    every task started meanwhile (close the channels first)."""
    before = asyncio.all_tasks()
    server = build_server(broker, address="127.0.0.1:0", settings=settings or ServerSettings())
    await server.start()
    try:
        yield f"127.0.0.1:{bound_port(server)}"
    finally:
        await stop(server, broker, grace)
        await quiesce(before)


def falco_event(reason: str, payload: Payload | None, kind: str = "", uid: str = "") -> bytes:
    """What the generated class serialises for an event (the reference the servers' bytes must equal)."""
    if payload is None:
        return metadata_pb2.Event(reason=reason, uid=uid, kind=kind).SerializeToString(deterministic=True)
    event = metadata_pb2.Event(reason=reason, uid=payload.uid, kind=payload.kind, meta=payload.meta)
    if payload.status is not None:
        event.status = payload.status
    if payload.refs is not None:
        event.refs.SetInParent()
        for ref_kind, uids in payload.refs:
            event.refs.resources[ref_kind].list.extend(uids)
    return event.SerializeToString(deterministic=True)


class Watcher:
    """Reads one server stream in the background: messages into a queue, then the final status."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self.error: grpc.aio.AioRpcError | None = None
        self.ended_ok = False
        self.done = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for message in self.call:
                self.items.put_nowait(message)
            self.ended_ok = True
        except grpc.aio.AioRpcError as error:
            self.error = error
        except asyncio.CancelledError:
            if not self.call.cancelled():
                raise
        finally:
            self.done.set()

    async def take(self, count: int, timeout: float = 5.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            return [await self.items.get() for _ in range(count)]

    def drain(self) -> list[Any]:
        out = []
        while not self.items.empty():
            out.append(self.items.get_nowait())
        return out

    async def status(self, timeout: float = 5.0) -> grpc.aio.AioRpcError:
        """Wait for the stream's end; it must end with an error status, never OK."""
        async with asyncio.timeout(timeout):
            await self.done.wait()
        assert not self.ended_ok, "the stream ended with OK"
        assert self.error is not None
        return self.error

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def falco_call(channel: grpc.aio.Channel, node: str, kinds: Iterable[str] = ()) -> Any:
    """A raw Watch call: the test sees the bytes the server wrote."""
    method = channel.unary_stream(
        "/metadata.Metadata/Watch", request_serializer=metadata_pb2.Selector.SerializeToString
    )
    return method(metadata_pb2.Selector(nodeName=node, resourceKinds=dict.fromkeys(kinds, "true")))


def falco_watch(channel: grpc.aio.Channel, node: str, kinds: Iterable[str] = ()) -> Watcher:
    return Watcher(falco_call(channel, node, kinds))


def v1_watch(
    channel: grpc.aio.Channel,
    node: str,
    kinds: Iterable[str] = (),
    *,
    session_id: str = "",
    resume_revision: int = 0,
) -> Watcher:
    method = channel.unary_stream(
        "/nodemeta.v1.NodeMetadata/Watch",
        request_serializer=stream_pb2.WatchRequest.SerializeToString,
        response_deserializer=stream_pb2.EventBatch.FromString,
    )
    request = stream_pb2.WatchRequest(
        node_name=node, kinds=list(kinds), session_id=session_id, resume_revision=resume_revision
    )
    return Watcher(method(request))


@dataclass
class V1Holder:
    """A nodemeta.v1 client's state: applies batches strictly (Create only for what it lacks, ...)."""

    objects: dict[tuple[str, str], stream_pb2.Event]
    session_id: str = ""
    revision: int = 0
    synced: int = 0  # batches seen with initial_sync_complete

    @classmethod
    def empty(cls) -> V1Holder:
        return cls({})

    def apply(self, batch: stream_pb2.EventBatch) -> None:
        if batch.reset:
            self.objects.clear()
        if batch.session_id:
            self.session_id = batch.session_id
        assert batch.revision > self.revision or batch.reset, (batch.revision, self.revision)
        for event in batch.events:
            key = (event.kind, event.uid)
            if event.reason == stream_pb2.REASON_DELETE:
                assert key in self.objects, f"Delete for {key} not held"
                del self.objects[key]
            elif event.reason == stream_pb2.REASON_CREATE:
                assert key not in self.objects, f"Create for {key} already held"
                self.objects[key] = event
            else:
                assert event.reason == stream_pb2.REASON_UPDATE
                assert key in self.objects, f"Update for {key} not held"
                self.objects[key] = event
        self.revision = batch.revision
        self.synced += batch.initial_sync_complete

    def metas(self) -> dict[tuple[str, str], str]:
        return {key: event.meta for key, event in self.objects.items()}


def view_metas(broker: Broker, node: str, kinds: Iterable[str] | None = None) -> dict[tuple[str, str], str]:
    wanted = None if kinds is None else set(kinds)
    return {
        (ref.kind, ref.uid): payload.meta
        for ref, payload in broker.index.view(node).items()
        if wanted is None or ref.kind in wanted
    }
