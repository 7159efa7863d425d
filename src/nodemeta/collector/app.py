"""The collector application: one API watch per kind, the relation index behind the broker, and the servers.

    collector = Collector(config, settings)
    loop.add_signal_handler(signal.SIGTERM, collector.stop)
    await collector.run()          # returns after a graceful stop

Wiring, in the order data flows:

* one `ApiClient` (one connection pool) and one `Informer` per kind: Pods in full; Namespaces; Services (for their
  selectors); Deployments, ReplicaSets, DaemonSets, ReplicationControllers, StatefulSets, Jobs and CronJobs as
  metadata only (names, labels and ownerReferences are all the stream needs, at about a quarter of the bytes);
  Nodes (the controllers of mirror pods);
* each informer's store calls a `_Feed` listener synchronously, after the cache holds the change; the feed adapts
  the object (`adapters`) and hands it to `Broker.apply` / `Broker.delete`, which updates the relation index and
  fans the resulting deltas out to subscribers' queues. Tombstone deletes from a relist take the same path, so
  nothing downstream infers a deletion from absence;
* readiness: the informers of the Go collector's seven kinds (Pod, Namespace, Service, Deployment, ReplicaSet,
  DaemonSet, ReplicationController) have their first full list cached. Only then are calls admitted, so no
  subscriber receives the initial sync of a half-filled cache (the Go collector serves and reports ready at once: a
  known weakness, fixed here), and `/readyz` answers 200. Until then the gRPC server accepts calls and holds each at
  its admission gate, so reconnecting agents wait on an open connection instead of overflowing the listen queue.
  The other kinds (StatefulSet, Job, CronJob, Node) only add owners to nodemeta.v1 streams, and the Go
  collector's RBAC (its Helm chart's ClusterRole) does not grant them: they join when they can be listed, and never
  hold the collector back;
* HTTP: `/healthz` and `/readyz` on one listener, `/metrics` on another, as controller-runtime serves the Go
  collector (`--health-probe-bind-address`, `--metrics-bind-address`), so existing probes, NetworkPolicies and
  ServiceMonitors keep pointing at the right ports (`nodemeta.serving`, shared with the agent and the CNI guard);
* shutdown (`stop()`, wired to SIGTERM and SIGINT by the command line): `/readyz` turns 503, the periodic heap
  freeze stops, the gRPC server stops taking calls and every open stream ends with UNAVAILABLE (never OK: the Falco
  plugin would not reconnect): each ended by its handler with the collector's details when there are few, all
  cancelled by gRPC at once when there are thousands (`server.stop`), within `shutdown_grace`; then the informers,
  the HTTP listeners and the API connections close, and `run()` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import grpc
import structlog

from nodemeta.collector.adapters import namespace_info, node_info, owner_info, pod_info, service_info
from nodemeta.collector.broker import Broker, BrokerSettings
from nodemeta.collector.heap import freeze_heap, refreeze_periodically
from nodemeta.collector.metrics import CONTENT_TYPE, CollectorMetrics, EventCounters
from nodemeta.collector.model import FALCO_KINDS, ObjectInfo
from nodemeta.collector.relations import RelationIndex
from nodemeta.collector.server import bound_port, build_server
from nodemeta.collector.server import stop as stop_server
from nodemeta.collector.settings import CollectorSettings
from nodemeta.kube import (
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTS,
    JOBS,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    SERVICES,
    STATEFULSETS,
    ApiClient,
    BaseListener,
    ClusterConfig,
    Informer,
    Resource,
)
from nodemeta.serving import Readiness, TcpServer, metrics_app, probe_app

__all__ = ["FEEDS", "REQUIRED_KINDS", "Collector"]

log = structlog.get_logger("collector")
broker_log = structlog.get_logger("broker")

Adapter = Callable[[Any], ObjectInfo]

# What the collector watches, and how each kind's objects become records. Order is start-up order only.
FEEDS: tuple[tuple[Resource[Any], Adapter], ...] = (
    (PODS, pod_info),
    (NAMESPACES, namespace_info),
    (SERVICES, service_info),
    *((r, partial(owner_info, r.kind)) for r in (
        DEPLOYMENTS, REPLICASETS, DAEMONSETS, REPLICATIONCONTROLLERS, STATEFULSETS, JOBS, CRONJOBS,
    )),
    (NODES, node_info),
)  # fmt: skip
# Readiness waits for these; a Falco subscriber's view depends on nothing else.
REQUIRED_KINDS = FALCO_KINDS


class _Feed(BaseListener[Any]):
    """An informer's listener: every cache change, adapted, into the broker, in the order the cache saw it."""

    def __init__(self, adapt: Adapter, broker: Broker, received: EventCounters) -> None:
        self._adapt = adapt
        self._broker = broker
        self._received = received

    def on_add(self, obj: Any) -> None:
        self._received.create.inc()
        self._broker.apply(self._adapt(obj))

    def on_update(self, old: Any, new: Any) -> None:
        self._received.update.inc()
        self._broker.apply(self._adapt(new))

    def on_delete(self, obj: Any, tombstone: bool) -> None:
        self._received.delete.inc()
        self._broker.delete(self._adapt(obj))


class Collector:
    """The whole collector process, minus argument parsing and signal wiring."""

    def __init__(
        self,
        config: ClusterConfig,
        settings: CollectorSettings | None = None,
        *,
        broker_settings: BrokerSettings | None = None,
        metrics: CollectorMetrics | None = None,
    ) -> None:
        self.settings = settings or CollectorSettings()
        self.metrics = metrics or CollectorMetrics()
        self.index = RelationIndex()
        self.broker = Broker(self.index, broker_settings or BrokerSettings(), observer=self.metrics)
        self.client = ApiClient(config, settings=self.settings.client)
        self.informers: dict[str, Informer[Any]] = {}
        for resource, adapt in FEEDS:
            informer: Informer[Any] = Informer(self.client, resource, settings=self.settings.reflector)
            informer.add_listener(_Feed(adapt, self.broker, self.metrics.api_server_events(resource.kind)))
            self.informers[resource.kind] = informer
        self.metrics.watch_informers(self.informers)
        self.metrics.watch_state(
            subscribers=lambda: self.broker.subscriber_count, index_objects=lambda: len(self.index)
        )
        # Bound ports, known once each listener is up (0 before; useful when the settings ask for port 0).
        self.grpc_port = 0
        self.probe_port = 0
        self.metrics_port = 0
        self._stop_requested = asyncio.Event()
        # Set once the caches synced: calls pass the server's admission gate from then on.
        self._serving = asyncio.Event()
        self._stopping = False

    # -- state --------------------------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """The required kinds are cached (optional ones may still be missing)."""
        return not self.unsynced(required=True)

    def unsynced(self, *, required: bool = False) -> list[str]:
        """Kinds whose informer has not cached a first full list yet (only the required ones if asked)."""
        return [
            kind
            for kind, informer in self.informers.items()
            if not informer.has_synced and (kind in REQUIRED_KINDS or not required)
        ]

    def readiness(self) -> Readiness:
        if self._stopping:
            return Readiness(False, "shutting down")
        waiting = self.unsynced(required=True)
        if waiting:
            return Readiness(False, f"waiting for the caches of {', '.join(waiting)} to sync")
        if not self._serving.is_set():
            return Readiness(False, "starting the gRPC server")
        return Readiness(True)

    async def wait_serving(self) -> None:
        """Return once the caches are synced and the gRPC server listens (bound it with asyncio.timeout)."""
        await self._serving.wait()

    def stop(self) -> None:
        """Ask `run()` to shut down gracefully. Safe from a signal handler, and to call more than once."""
        self._stop_requested.set()

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until `stop()`; returns once everything is closed.

        Start-up errors raise before anything connects to the API: ServerConfigError for the gRPC listener (port
        in use, unreadable TLS files), OSError for the HTTP listeners.
        """
        s = self.settings
        async with contextlib.AsyncExitStack() as stack:
            # Bound and started now, so a busy port or a bad certificate fails the start; calls are accepted at
            # once and wait at the admission gate, holding nothing, until the caches have synced.
            server = build_server(
                self.broker,
                address=s.broker_address.target,
                tls_cert=str(s.tls.cert) if s.tls is not None else None,
                tls_key=str(s.tls.key) if s.tls is not None else None,
                admit=self._serving,
            )
            stack.push_async_callback(server.stop, None)  # a no-op after a graceful stop; else cancels at once
            self.grpc_port = bound_port(server)
            await server.start()
            await stack.enter_async_context(self.client)
            probe = TcpServer("health probe", probe_app(self.readiness), s.probe_address)
            self.probe_port = (await stack.enter_async_context(probe)).port
            if s.metrics_address is not None:
                metrics = TcpServer("metrics", metrics_app(self.metrics.exposition, CONTENT_TYPE), s.metrics_address)
                self.metrics_port = (await stack.enter_async_context(metrics)).port
            async with asyncio.TaskGroup() as tasks:
                running = [
                    tasks.create_task(informer.run(), name=f"informer-{kind}")
                    for kind, informer in self.informers.items()
                ]
                try:
                    if await self._wait_synced():
                        freezer = None
                        if s.freeze_heap and s.heap_freeze_interval > 0:
                            freezer = tasks.create_task(
                                refreeze_periodically(s.heap_freeze_interval), name="heap-freeze"
                            )
                            running.append(freezer)
                        await self._serve(server, freezer)
                finally:
                    self._stopping = True
                    for task in running:
                        task.cancel()
        log.info("collector stopped")

    async def _wait_synced(self) -> bool:
        """Wait for the required informers' first lists; False when a stop came first. Reports laggards
        periodically, and the optional kinds still missing once ready."""
        started = time.monotonic()
        log.info("waiting for caches to sync", kinds=list(self.informers))
        required = [i.wait_synced() for kind, i in self.informers.items() if kind in REQUIRED_KINDS]
        synced: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*required))
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop_requested.wait())
        try:
            while True:
                done, _ = await asyncio.wait(
                    {synced, stop}, timeout=self.settings.sync_report_interval, return_when=asyncio.FIRST_COMPLETED
                )
                if synced in done:
                    # The synced caches and the index live as long as the process: out of the cyclic GC's
                    # reach (see `heap`), and whatever comes later too, every heap_freeze_interval.
                    if self.settings.freeze_heap:
                        freeze_heap()
                    log.info(
                        "caches synced",
                        seconds=round(time.monotonic() - started, 3),
                        objects={kind: len(i.store) for kind, i in self.informers.items() if i.has_synced},
                    )
                    missing = self.unsynced()
                    if missing:
                        log.warning(
                            "serving without these kinds until they can be listed (check the RBAC for list and "
                            "watch on them); nodemeta.v1 subscribers asking for them get them when they arrive",
                            waiting=missing,
                        )
                    return True
                if stop in done:
                    log.info("stopping before the caches synced", waiting=self.unsynced())
                    return False
                log.warning(
                    "caches not synced yet",
                    waiting=self.unsynced(),
                    seconds=round(time.monotonic() - started, 1),
                )
        finally:
            for future in (synced, stop):
                future.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await future

    async def _serve(self, server: grpc.aio.Server, freezer: asyncio.Task[None] | None) -> None:
        s = self.settings
        broker_log.info("starting grpc server", addr=str(s.broker_address), port=self.grpc_port, tls=s.tls is not None)
        self._serving.set()
        try:
            await self._stop_requested.wait()
        finally:
            self._stopping = True
            if freezer is not None:
                # A full collection in the middle of a shutdown only delays it (up to a second with 5,000 streams).
                freezer.cancel()
            broker_log.info(
                "shutdown signal received, waiting for grpc connections to close",
                subscribers=self.broker.subscriber_count,
            )
            # The server stops taking calls, the broker closes (every stream ends with UNAVAILABLE), and the
            # server cancels within the grace whatever is still open.
            await stop_server(server, self.broker, s.shutdown_grace)
            broker_log.info("all grpc connections closed")
