"""`nodemeta.v1.NodeMetadata/Watch`: nodemeta's own batched, resumable metadata stream.

Each EventBatch is assembled from pre-encoded parts (`nodemeta.api.wire`): one `events` entry per delta (the reason
prefix plus the broker's shared body) and the trailer fields. No message object is built on the server.

Batching: a batch takes everything queued, up to `batch_max_events` and `batch_max_bytes`; a live batch that is not
full waits `batch_delay` for more first (changes come in bursts). The initial sync is sent without waiting.

Markers: the first batch carries `session_id` (and `reset` when the named session could not be resumed); the batch
that completes the initial sync (or the catch-up after a resume) carries `initial_sync_complete`, also when it
holds no event at all. Every batch has a revision, recorded by the broker so a later stream can resume from it.

Errors as for the Falco stream: never OK; UNAVAILABLE when the broker ends the subscription; FAILED_PRECONDITION for
an empty node name; INVALID_ARGUMENT for a kind nodemeta does not serve (a typo would otherwise be a silent empty
stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import grpc

from nodemeta.api import wire
from nodemeta.api.nodemeta.v1 import stream_pb2
from nodemeta.collector.broker import Broker, Subscription, SubscriptionEnded
from nodemeta.collector.grpc_falco import end_message, log, serve_subscription
from nodemeta.collector.model import EXTRA_KINDS, FALCO_KINDS, KIND_ALIASES
from nodemeta.collector.relations import Delta

__all__ = ["NODE_NAME_HINT", "V1_KINDS", "NodeMetadataWatch", "v1_kinds"]

V1_KINDS = FALCO_KINDS | EXTRA_KINDS

NODE_NAME_HINT = (
    "WatchRequest.node_name is empty: a subscriber must name the node it runs on. Set it from the Downward API: in "
    "the DaemonSet, an env var with valueFrom.fieldRef.fieldPath: spec.nodeName, passed as the node name"
)


def v1_kinds(requested: Iterable[str]) -> frozenset[str]:
    """The kinds a WatchRequest asks for (none means the Falco set); ValueError names any unknown kind."""
    names = [KIND_ALIASES.get(name, name) for name in requested]
    if not names:
        return FALCO_KINDS
    unknown = sorted(set(names) - V1_KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {', '.join(unknown)}; available: {', '.join(sorted(V1_KINDS))}")
    return frozenset(names)


class NodeMetadataWatch:
    """The `nodemeta.v1.NodeMetadata` service."""

    SERVICE = "nodemeta.v1.NodeMetadata"

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    def method_handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        # No response serializer: the handler writes serialised EventBatches.
        watch: grpc.RpcMethodHandler[stream_pb2.WatchRequest, bytes] = grpc.unary_stream_rpc_method_handler(
            self.watch, request_deserializer=stream_pb2.WatchRequest.FromString
        )
        return {"Watch": watch}

    async def watch(self, request: stream_pb2.WatchRequest, context: grpc.aio.ServicerContext[Any, bytes]) -> None:
        node = request.node_name
        log.info(
            "received watch request",
            node=node,
            peer=context.peer(),
            session=request.session_id,
            resume_revision=request.resume_revision,
        )
        if not node:
            log.warning("rejected watch request", reason="empty node_name", peer=context.peer())
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, NODE_NAME_HINT)
        try:
            kinds = v1_kinds(request.kinds)
        except ValueError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        try:
            sub = self._broker.subscribe(
                node,
                kinds,
                session_id=request.session_id,
                resume_revision=request.resume_revision,
                resumable=True,
            )
        except SubscriptionEnded as ended:
            await context.abort(grpc.StatusCode.UNAVAILABLE, end_message(ended.reason))
        try:
            await serve_subscription(sub, context, lambda: self._pump(sub, context))
        finally:
            self._broker.unsubscribe(sub)
            log.info("stream deleted", subscriber=node, reason=sub.end_reason)

    async def _pump(self, sub: Subscription, context: grpc.aio.ServicerContext[Any, bytes]) -> None:
        settings = self._broker.settings
        max_events = settings.batch_max_events
        delay = settings.batch_delay
        first = True
        synced = False
        sent = 0
        carry: list[Delta] = []
        while True:
            if carry:
                deltas, carry = carry, []
            elif not synced and sent >= sub.initial_size:
                deltas = []  # an empty initial sync: the marker goes out on its own
            else:
                deltas = await sub.next_events(max_events)
                if synced and delay > 0 and len(deltas) < max_events:
                    await asyncio.sleep(delay)
                    deltas.extend(sub.take(max_events - len(deltas)))
            entries, carry = self._entries(deltas)
            revision = sub.sending(deltas)
            sent += len(deltas)
            marker = not synced and sent >= sub.initial_size
            synced = synced or marker
            batch = wire.encode_batch(
                entries,
                revision,
                initial_sync_complete=marker,
                session_id=sub.session_id if first else "",
                reset=first and sub.reset,
            )
            # Nothing of this message stays referenced while the stream waits for the next one: an idle stream
            # would otherwise keep its last batch, entries and deltas alive (about 60 KiB after an initial sync).
            del deltas, entries
            first = False
            await context.write(batch)
            del batch

    def _entries(self, deltas: list[Delta]) -> tuple[list[bytes], list[Delta]]:
        """The encoded entries of the deltas that fit in one batch (`batch_max_bytes`, at least one event), which
        stay in `deltas`; returns them and the deltas left for the next batch."""
        max_bytes = self._broker.settings.batch_max_bytes
        body = self._broker.bodies.body
        entries: list[bytes] = []
        size = 0
        for i, delta in enumerate(deltas):
            entry = wire.batch_entry(delta.reason, body(delta))
            size += len(entry)
            if entries and size > max_bytes:
                rest = deltas[i:]
                del deltas[i:]
                return entries, rest
            entries.append(entry)
        return entries, []
