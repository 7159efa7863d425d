"""Metadata from a collector: the batched, resumable `nodemeta.v1.NodeMetadata/Watch` stream for this node.

The client asks for every kind the stream serves (the Falco set plus StatefulSet, Job, CronJob and Node), applies
each batch's events in order, and remembers the session id and the revision of the last batch applied completely.
When the stream ends (the collector restarts or drains with UNAVAILABLE, the connection drops) it reconnects after
a jittered exponential backoff and asks to resume from that revision; the collector then sends only what changed
meanwhile, or, when it could not resume, a batch marked `reset` that starts a full snapshot (the store is emptied
first). `initial_sync_complete` marks the end of the snapshot or catch-up: the metadata side is ready from the
first one on.

A configuration error (empty node name: FAILED_PRECONDITION; unknown kind: INVALID_ARGUMENT) is logged with the
server's message and retried at the backoff's cap: restarting cannot fix it, but a collector upgrade may.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import structlog

from nodemeta.agent.metastore import MetadataError, MetadataSink
from nodemeta.agent.settings import StreamSettings
from nodemeta.api.nodemeta.v1 import stream_pb2, stream_pb2_grpc
from nodemeta.kube.backoff import Backoff

__all__ = ["STREAM_KINDS", "CollectorSource"]

log = structlog.get_logger("agent.metadata")

STREAM_KINDS = (
    "CronJob", "DaemonSet", "Deployment", "Job", "Namespace", "Node", "Pod", "ReplicaSet", "ReplicationController",
    "Service", "StatefulSet",
)  # fmt: skip
_REASONS = {stream_pb2.REASON_CREATE: "Create", stream_pb2.REASON_UPDATE: "Update", stream_pb2.REASON_DELETE: "Delete"}
_CONFIG_ERRORS = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)


class CollectorSource:
    def __init__(
        self,
        target: str,
        node: str,
        sink: MetadataSink,
        *,
        settings: StreamSettings | None = None,
        on_error: Callable[[MetadataError], None] | None = None,
    ) -> None:
        self.target = target
        self.node = node
        self.settings = settings or StreamSettings()
        self._sink = sink
        self._on_error = on_error
        self.session_id = ""
        self.revision = 0
        self.connected = False
        self.streams = 0

    async def run(self) -> None:
        """Follow the stream until cancelled."""
        s = self.settings
        backoff = Backoff(s.backoff)
        options = [
            ("grpc.keepalive_time_ms", int(s.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(s.keepalive_timeout * 1000)),
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.enable_http_proxy", 0),
            # The channel's own reconnect backoff grows to 120 s by default: a collector down for a minute would
            # then be retried long after it is back. Keep it within this source's own backoff.
            ("grpc.initial_reconnect_backoff_ms", int(s.backoff.initial * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(s.backoff.maximum * 1000)),
        ]
        async with grpc.aio.insecure_channel(self.target, options=options) as channel:
            stub = stream_pb2_grpc.NodeMetadataStub(channel)
            while True:
                delay: float | None = None
                try:
                    await self._follow(stub)
                    log.warning("metadata stream ended with OK (a correct collector never does that)")
                except grpc.aio.AioRpcError as err:
                    code = err.code()
                    if code in _CONFIG_ERRORS:
                        log.error("the collector refused the watch", code=code.name, detail=err.details())
                        delay = s.backoff.maximum
                    else:
                        log.warning("metadata stream ended", code=code.name, detail=err.details(),
                                    collector=self.target)  # fmt: skip
                self.connected = False
                self._sink.reconnected()
                await asyncio.sleep(delay if delay is not None else backoff.next_delay())

    async def _follow(self, stub: Any) -> None:
        request = stream_pb2.WatchRequest(
            node_name=self.node, kinds=STREAM_KINDS, resume_revision=self.revision, session_id=self.session_id
        )
        call: Any = stub.Watch(request)
        self.streams += 1
        try:
            async for batch in call:
                if not self.connected:
                    self.connected = True
                    log.info("metadata stream open", collector=self.target, session=batch.session_id or
                             self.session_id, resumed=bool(self.session_id) and not batch.reset)  # fmt: skip
                self._apply(batch)
        finally:
            call.cancel()

    def _apply(self, batch: stream_pb2.EventBatch) -> None:
        if batch.session_id:
            if batch.reset or batch.session_id != self.session_id:
                self._sink.reset()
            self.session_id = batch.session_id
        elif batch.reset:
            self._sink.reset()
        for event in batch.events:
            reason = _REASONS.get(event.reason)
            try:
                if reason is None:
                    raise MetadataError(f"unknown reason {event.reason} for {event.kind} {event.uid}")
                refs = None
                if event.HasField("refs"):
                    refs = {kind: tuple(uids.uids) for kind, uids in event.refs.resources.items()}
                self._sink.apply(
                    reason,
                    event.kind,
                    event.uid,
                    event.meta if event.HasField("meta") else None,
                    event.status if event.HasField("status") else None,
                    refs,
                )
            except MetadataError as err:
                log.warning("metadata event refused", error=str(err))
                if self._on_error is not None:
                    self._on_error(err)
        self.revision = batch.revision
        if batch.initial_sync_complete:
            self._sink.synced()
