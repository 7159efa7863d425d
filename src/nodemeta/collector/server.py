"""The collector's gRPC server: both metadata services on one port, plaintext or TLS, with server keepalive.

`build_server` binds the port at once (`bound_port` tells which), so a busy port or a bad certificate is a start-up
error; the caller starts the server. `stop` is the graceful shutdown: the server stops taking calls, the broker
closes, so every open Watch ends with UNAVAILABLE (a Falco plugin stops for good on OK), whatever is still open
after the grace period is cancelled, and the connections close as soon as no handler runs.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import structlog

from nodemeta.collector.broker import Broker
from nodemeta.collector.grpc_falco import FalcoWatch
from nodemeta.collector.grpc_stream import NodeMetadataWatch

__all__ = [
    "ABORT_EACH_LIMIT",
    "ServerConfigError",
    "ServerSettings",
    "bound_port",
    "build_server",
    "server_options",
    "stop",
]

log = structlog.get_logger("broker")


class ServerConfigError(RuntimeError):
    """The server cannot start as configured (unreadable certificate or key, port not available).

    A RuntimeError, as grpc's own bind failures are."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """Transport settings of the gRPC server."""

    # Server pings on an idle connection every 30 s, and drops it when a ping is not answered within 10 s: the
    # Falco plugin sets no keepalive, so this is what finds half-open connections (a node that vanished) and frees
    # their subscriptions. Pings go out with no call open too.
    keepalive_time: float = 30.0
    keepalive_timeout: float = 10.0
    # Clients may ping every 10 s without a GOAWAY (gRPC's default enforcement wants 5 minutes).
    min_client_ping_interval: float = 10.0
    # The Falco plugin receives at most 4 MiB per message; events are far smaller and batches are cut at
    # BrokerSettings.batch_max_bytes (1 MiB), so this is only a backstop against a runaway object.
    max_send_message_bytes: int = 4 << 20
    # Requests are a node name and a few kinds.
    max_receive_message_bytes: int = 64 << 10
    # Streams live for as long as the node agent runs; an idle or old connection is not a reason to close it.
    # (gRPC's max_connection_idle / max_connection_age are therefore left unset.)


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", round(settings.keepalive_time * 1000)),
        ("grpc.keepalive_timeout_ms", round(settings.keepalive_timeout * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", round(settings.min_client_ping_interval * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", round(settings.min_client_ping_interval * 1000)),
        ("grpc.max_send_message_length", settings.max_send_message_bytes),
        ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
        # Another process on the same port is an error, not a silent share of the connections.
        ("grpc.so_reuseport", 0),
    ]


class _OpenCalls:
    """The calls whose handler is still running, so a shutdown knows when every stream has been ended; and the
    admission gate: until `admit` is set, calls are accepted and wait (see `build_server`)."""

    def __init__(self, admit: asyncio.Event | None = None) -> None:
        self.open = 0
        self._idle: asyncio.Event | None = None
        self._admit = admit

    def track(self, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        """The same server-streaming handler, counted while it runs."""
        assert handler.unary_stream is not None, "the metadata services only have server-streaming methods"
        # grpc's stubs type handlers for the synchronous server; these are grpc.aio coroutines.
        behavior = cast(Callable[[Any, "grpc.aio.ServicerContext[Any, Any]"], Awaitable[None]], handler.unary_stream)

        async def counted(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            self.open += 1
            try:
                if self._admit is not None and not self._admit.is_set():
                    await self._admit.wait()
                await behavior(request, context)
            finally:
                self.open -= 1
                if not self.open and self._idle is not None:
                    self._idle.set()

        return grpc.unary_stream_rpc_method_handler(
            counted,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def wait_idle(self) -> None:
        """Return once no handler runs."""
        while self.open:
            self._idle = asyncio.Event()
            await self._idle.wait()


# The port each server was bound to (grpc.aio.Server does not tell), and its open calls.
_ports: weakref.WeakKeyDictionary[grpc.aio.Server, int] = weakref.WeakKeyDictionary()
_calls: weakref.WeakKeyDictionary[grpc.aio.Server, _OpenCalls] = weakref.WeakKeyDictionary()


def build_server(
    broker: Broker,
    *,
    address: str,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    settings: ServerSettings = ServerSettings(),
    admit: asyncio.Event | None = None,
) -> grpc.aio.Server:
    """A grpc.aio server serving `metadata.Metadata` and `nodemeta.v1.NodeMetadata` from `broker`, bound to
    `address` (a gRPC target such as "0.0.0.0:45000" or "[::]:0"; port 0 picks a free port, see `bound_port`).

    TLS when `tls_cert` and `tls_key` name PEM files (certificate chain, private key); plaintext when neither is
    given. Raises ServerConfigError when a file cannot be read or the port cannot be bound. Call it with the event
    loop running; start the server with `await server.start()`.

    With `admit`, the server may be started before it can answer: calls are accepted and each waits, holding no
    subscription, until `admit` is set. Thousands of agents reconnecting to a restarted collector then connect once
    and wait, instead of overflowing the listen queue of a bound but unstarted port (205k dropped connections in
    one 5,000-node restart) and retrying after 1 to 15 s of SYN backoff each."""
    tls = _read_tls(tls_cert, tls_key)
    server = grpc.aio.server(options=server_options(settings))
    calls = _OpenCalls(admit)
    for service in (FalcoWatch(broker), NodeMetadataWatch(broker)):
        handlers = {name: calls.track(handler) for name, handler in service.method_handlers().items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.SERVICE, handlers),))
        server.add_registered_method_handlers(service.SERVICE, handlers)
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            cert_chain, private_key = tls
            port = server.add_secure_port(address, grpc.ssl_server_credentials([(private_key, cert_chain)]))
    except RuntimeError as error:
        raise ServerConfigError(f"cannot listen on {address}: {error}") from error
    if port == 0:
        raise ServerConfigError(f"cannot listen on {address}")
    _ports[server] = port
    _calls[server] = calls
    return server


def bound_port(server: grpc.aio.Server) -> int:
    """The port `build_server` bound `server` to."""
    return _ports[server]


# Open streams up to which a shutdown ends each one itself, with the collector's own UNAVAILABLE details; beyond,
# gRPC cancels them all at once (UNAVAILABLE as well, with gRPC's details). Each handler's own abort waits on gRPC's
# core while it shuts thousands of connections down: measured with 5,000 streams on a busy machine, 138 streams
# ended in 3.5 s that way. A hundred or so end in well under a second.
ABORT_EACH_LIMIT = 256


async def stop(
    server: grpc.aio.Server, broker: Broker, grace: float | None, *, abort_each_limit: int = ABORT_EACH_LIMIT
) -> None:
    """Graceful shutdown: stop taking calls, end every stream with UNAVAILABLE (never OK), and be done within
    `grace` seconds (None: at once).

    The server stops taking calls first: clients whose stream just ended reconnect at once, and with thousands of
    them, serving (and refusing) their new calls took most of a shutdown (14 s with 5,000 streams).

    With at most `abort_each_limit` open streams, the broker closes and each handler ends its stream with the
    collector's details ("the collector is shutting down; reconnect"); what is still open after half the grace (a
    stream stuck writing to a client that stopped reading) is cancelled. With more, the broker forgets its
    subscriptions without waking them and gRPC cancels every call at once. Either way the connections are closed as
    soon as no handler runs: a graceful grpc stop also waits for every client to close its connection after the
    GOAWAY, which with 5,000 connections to busy clients took the whole grace."""
    stopping = asyncio.ensure_future(server.stop(grace))
    await asyncio.sleep(0)  # the server has begun its shutdown: no new call from here on
    calls = _calls.get(server)
    started = time.monotonic()
    if calls is not None and calls.open > abort_each_limit:
        log.info("cancelling every stream", open_streams=calls.open)
        broker.close(end_streams=False)
        await server.stop(None)
        await stopping
        log.info("every stream ended", seconds=round(time.monotonic() - started, 3))
        return
    broker.close()
    if calls is not None:
        try:
            async with asyncio.timeout(None if grace is None else grace / 2):
                await calls.wait_idle()
        except TimeoutError:
            log.warning(
                "streams still open at the shutdown deadline; cancelling them",
                open_streams=calls.open,
                seconds=round(time.monotonic() - started, 3),
            )
        else:
            log.info("every stream ended", seconds=round(time.monotonic() - started, 3))
        await server.stop(None)
    await stopping


def _read_tls(cert: str | None, key: str | None) -> tuple[bytes, bytes] | None:
    if not cert and not key:
        return None
    if not cert or not key:
        raise ServerConfigError("TLS needs both a server certificate and its key (--broker-server-cert/-key)")
    return _read_pem(cert, "certificate"), _read_pem(key, "key")


def _read_pem(path: str, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ServerConfigError(f"cannot read the TLS {what} {path}: {error.strerror or error}") from error
    if b"-----BEGIN" not in data:
        raise ServerConfigError(f"the TLS {what} {path} is not PEM")
    return data
