"""Node agents of the demo: gRPC clients of the collector that hold what their stream tells them.

Two protocols, each client on a connection of its own, as separate nodes would be:

* `V1Subscriber`: `nodemeta.v1.NodeMetadata/Watch`, batched. It waits for `initial_sync_complete`, and after a
  broken stream resumes its session from the last revision it applied (a `reset` batch means start again).
* `FalcoSubscriber`: `metadata.Metadata/Watch`, one message per event, exactly as the Falco k8smeta plugin asks
  (its `ReplicaController` spelling included). Like the plugin, it keeps its table across a reconnect: the
  collector then sends the snapshot again as Creates, plus Deletes for what went away meanwhile.

Both apply events the way a correct client must (Create stores, Update replaces, Delete forgets) and note anything a
correct stream never sends: a Delete or Update of an object not held, a Create of one already held, a kind not asked
for. Bytes are the serialised messages as received (gRPC framing and HTTP/2 headers not included).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from typing import Any, TypeAlias

import grpc

from nodemeta.api.falco import metadata_pb2
from nodemeta.api.nodemeta.v1 import stream_pb2
from nodemeta.collector.model import FALCO_KINDS, KIND_ALIASES
from nodemeta.demo.meter import CREATE, DELETE, UPDATE, Meter

__all__ = ["PLUGIN_KINDS", "FalcoSubscriber", "Held", "Subscriber", "V1Subscriber", "Value"]

# What the Falco k8smeta plugin puts in Selector.resourceKinds (it spells ReplicationController its own way).
PLUGIN_KINDS = ("Pod", "Namespace", "Deployment", "ReplicaSet", "DaemonSet", "ReplicaController", "Service")
# An object as a subscriber holds it: (meta, status, refs by kind). Comparable with the simulator's ground truth.
Value: TypeAlias = tuple[str, str | None, dict[str, tuple[str, ...]] | None]
Held: TypeAlias = dict[tuple[str, str], Value]

# Problems kept per subscriber (the count goes on).
_PROBLEMS_KEPT = 20
# Wait before reconnecting after a stream broke.
_RECONNECT_DELAY = 0.5
_V1_REASONS = {stream_pb2.REASON_CREATE: CREATE, stream_pb2.REASON_UPDATE: UPDATE, stream_pb2.REASON_DELETE: DELETE}
_CHANNEL_OPTIONS = [
    # A connection of its own, as a separate node has, rather than one shared with the other subscribers.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.keepalive_time_ms", 30_000),
]


def _raw(data: bytes) -> bytes:
    return data


class Subscriber:
    """A node agent's view of its stream. `run()` streams (and reconnects) until cancelled."""

    protocol = ""

    def __init__(self, node: str, target: str, kinds: Iterable[str]) -> None:
        self.node = node
        self.target = target
        self.kinds = frozenset(KIND_ALIASES.get(k, k) for k in kinds)
        self.held: Held = {}
        self.meter = Meter()
        self.synced = asyncio.Event()
        self.connected = False
        self.reconnects = 0
        self.last_error = ""
        self.problem_count = 0
        self.problems: list[str] = []
        # Set while a stream after a reconnect re-sends the snapshot (Creates of held objects are then expected).
        self._resending = False

    @property
    def label(self) -> str:
        return f"{self.node} {self.protocol}"

    def held_by_kind(self) -> Counter[str]:
        return Counter(kind for kind, _uid in self.held)

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < _PROBLEMS_KEPT:
            self.problems.append(text)

    def apply(self, reason: str, kind: str, uid: str, value: Value | None) -> None:
        key = (kind, uid)
        self.meter.count(reason)
        if kind not in self.kinds:
            self.problem(f"{reason} of a {kind}, which was not asked for")
        if reason == DELETE:
            if self.held.pop(key, None) is None:
                self.problem(f"Delete of {kind} {uid}, not held")
            return
        assert value is not None
        if reason == CREATE and key in self.held and not self._resending:
            self.problem(f"Create of {kind} {uid}, already held")
        elif reason == UPDATE:
            if key not in self.held:
                self.problem(f"Update of {kind} {uid}, not held")
            elif self.held[key] == value:
                self.problem(f"Update of {kind} {uid} with an unchanged payload")
        self.held[key] = value

    async def run(self) -> None:
        while True:
            try:
                async with grpc.aio.insecure_channel(self.target, options=_CHANNEL_OPTIONS) as channel:
                    call = self.call(channel)
                    try:
                        async for raw in call:
                            self.connected = True
                            self.meter.bytes += len(raw)
                            self.meter.messages += 1
                            self.receive(raw)
                    finally:
                        call.cancel()
                self.problem("the stream ended with OK (a correct server never does)")
            except grpc.aio.AioRpcError as err:
                self.last_error = f"{err.code().name}: {err.details()}"
            self.connected = False
            self.reconnects += 1
            await asyncio.sleep(_RECONNECT_DELAY)

    def call(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryStreamCall[Any, bytes]:
        """Open the stream (a new call after each reconnect)."""
        raise NotImplementedError

    def receive(self, raw: bytes) -> None:
        raise NotImplementedError


class V1Subscriber(Subscriber):
    """A `nodemeta.v1.NodeMetadata/Watch` client asking for the default kinds (the seven Falco kinds)."""

    protocol = "v1"

    def __init__(self, node: str, target: str) -> None:
        super().__init__(node, target, FALCO_KINDS)
        self.session_id = ""
        self.revision = 0
        self.batches = 0
        self.resets = 0

    def call(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryStreamCall[Any, bytes]:
        watch = channel.unary_stream(
            "/nodemeta.v1.NodeMetadata/Watch",
            request_serializer=stream_pb2.WatchRequest.SerializeToString,
            response_deserializer=_raw,
        )
        request = stream_pb2.WatchRequest(
            node_name=self.node, session_id=self.session_id, resume_revision=self.revision
        )
        return watch(request)

    def receive(self, raw: bytes) -> None:
        batch = stream_pb2.EventBatch.FromString(raw)
        self.batches += 1
        if batch.reset:
            self.resets += 1
            self.held.clear()
        if batch.session_id:
            self.session_id = batch.session_id
        if batch.revision <= self.revision and not batch.reset and not batch.session_id:
            self.problem(f"revision went from {self.revision} to {batch.revision}")
        for event in batch.events:
            reason = _V1_REASONS.get(event.reason)
            if reason is None:
                self.problem(f"an event with reason {event.reason}")
                continue
            if reason == DELETE:
                self.apply(reason, event.kind, event.uid, None)
                continue
            refs = None
            if event.HasField("refs"):
                refs = {kind: tuple(uids.uids) for kind, uids in event.refs.resources.items()}
            status = event.status if event.HasField("status") else None
            self.apply(reason, event.kind, event.uid, (event.meta, status, refs))
        self.revision = batch.revision
        if batch.initial_sync_complete:
            self.synced.set()


class FalcoSubscriber(Subscriber):
    """A `metadata.Metadata/Watch` client, subscribing as the Falco k8smeta plugin does."""

    protocol = "falco"

    def __init__(self, node: str, target: str) -> None:
        super().__init__(node, target, PLUGIN_KINDS)

    def call(self, channel: grpc.aio.Channel) -> grpc.aio.UnaryStreamCall[Any, bytes]:
        watch = channel.unary_stream(
            "/metadata.Metadata/Watch",
            request_serializer=metadata_pb2.Selector.SerializeToString,
            response_deserializer=_raw,
        )
        self._resending = self.reconnects > 0
        return watch(metadata_pb2.Selector(nodeName=self.node, resourceKinds=dict.fromkeys(PLUGIN_KINDS, "")))

    def receive(self, raw: bytes) -> None:
        event = metadata_pb2.Event.FromString(raw)
        # The contract has no end-of-snapshot marker: the first event is as close as a Falco client gets.
        self.synced.set()
        if event.reason == DELETE:
            if event.HasField("meta") or event.HasField("status") or event.HasField("refs"):
                self.problem(f"Delete of {event.kind} {event.uid} with a payload")
            self.apply(DELETE, event.kind, event.uid, None)
            return
        if event.reason not in (CREATE, UPDATE):
            self.problem(f"an event with reason {event.reason!r}")
            return
        if event.HasField("spec"):
            self.problem(f"{event.kind} {event.uid} with a spec (never sent)")
        refs = None
        if event.HasField("refs"):
            refs = {kind: tuple(uids.list) for kind, uids in event.refs.resources.items()}
        status = event.status if event.HasField("status") else None
        self.apply(event.reason, event.kind, event.uid, (event.meta, status, refs))
