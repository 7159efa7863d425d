"""The node agent process: runtime mirror + metadata source -> store -> join, served over a unix socket.

    agent = Agent(settings, runtime, lambda sink: CollectorSource(target, node, sink))
    loop.add_signal_handler(signal.SIGTERM, agent.stop)
    await agent.run()          # returns after a graceful stop

Data flow: `RuntimeSync` keeps the `RuntimeMirror` current; the metadata source (collector stream or direct API
watches) delivers events to the agent (its `MetadataSink`), which applies them to the `MetadataStore`. Both
notify the agent synchronously, which publishes CloudEvents to the change stream's readers (only when there are
any). Lookups read both through the `Joiner`.

Ready once the runtime has been listed once and the metadata source completed its initial sync; while the runtime
is unreachable the agent stays up (health 200), serves what it has, and says what it waits for on /readyz.
Once ready, the heap is frozen (`AgentSettings.freeze_heap`), so full garbage collections stay short.
With a CNI chain guard (`nodemeta.cni.guard.Guard`, built by the command on the agent's runtime client and metrics
registry), the guard runs as one more loop of the task group; its state is served on `/v1/cni`. It does not take
part in readiness: the agent's lookups work whatever the chain's state.
Stopping: /readyz turns 503, change streams end, the listeners close, the loops are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from nodemeta.agent.changes import ChangeHub
from nodemeta.agent.cni_guard import add_cni_route
from nodemeta.agent.http_api import ApiServer, Readiness, TcpServer, api_app, metrics_app, probe_app
from nodemeta.agent.join import Joiner, Record, container_view, sandbox_view
from nodemeta.agent.metastore import ControllerRef, MetadataError, MetadataSink, MetadataStore, Refs
from nodemeta.agent.metrics import CONTENT_TYPE, AgentMetrics
from nodemeta.agent.mirror import MirrorChange, RuntimeMirror
from nodemeta.agent.procfs import ProcReader
from nodemeta.agent.runtime_sync import RuntimeSync
from nodemeta.agent.settings import AgentSettings
from nodemeta.cni.guard import Guard
from nodemeta.cri.model import Container, Runtime

__all__ = ["Agent", "MetadataSource"]

log = structlog.get_logger("agent")


class MetadataSource(Protocol):
    async def run(self) -> None: ...


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        runtime: Runtime,
        source: Callable[[MetadataSink], MetadataSource],
        *,
        metrics: AgentMetrics | None = None,
        cni_guard: Guard | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or AgentMetrics()
        self.mirror = RuntimeMirror(settings.mirror.truncate)
        self.store = MetadataStore()
        self.proc = ProcReader(settings.host_root)
        self.joiner = Joiner(self.mirror, self.store, self.proc.cgroup)
        self.hub = ChangeHub(
            f"nodemeta-agent/{settings.node_name}", settings.api.change_queue, self.metrics.change_disconnects.inc
        )
        self.runtime_sync = RuntimeSync(
            runtime, self.mirror, self._runtime_changed, settings=settings.mirror, metrics=self.metrics
        )
        self.source = source(self)
        # The CNI chain guard, when enabled: built by the caller on this runtime and this metrics registry, run in
        # the agent's task group, its state served on /v1/cni.
        self.cni_guard = cni_guard
        self.metadata_synced = False
        self.metrics.watch_state(
            containers=lambda: len(self.mirror.containers),
            sandboxes=lambda: len(self.mirror.sandboxes),
            metadata_objects=lambda: len(self.store),
            ready=lambda: self.readiness().ready,
            runtime_available=lambda: self.runtime_sync.available,
            change_subscribers=lambda: len(self.hub.subscribers),
        )
        self.probe_port = 0
        self.metrics_port = 0
        self._stop_requested = asyncio.Event()
        self._metadata_synced = asyncio.Event()
        self.heap_frozen = 0
        self._serving = asyncio.Event()
        self._stopping = False

    # -- state --------------------------------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        if self._stopping:
            return Readiness(False, "shutting down")
        waiting = []
        if not self.runtime_sync.synced:
            waiting.append(f"the container runtime ({self.runtime_sync.last_error})")
        if not self.metadata_synced:
            waiting.append("the metadata initial sync")
        if waiting:
            return Readiness(False, "waiting for " + " and ".join(waiting))
        return Readiness(True)

    def _cni_status(self) -> dict[str, Any] | None:
        return self.cni_guard.status() if self.cni_guard is not None else None

    async def wait_serving(self) -> None:
        await self._serving.wait()

    def stop(self) -> None:
        """Ask `run()` to stop. Safe from a signal handler, and to call more than once."""
        self._stop_requested.set()

    # -- the metadata sink --------------------------------------------------------------------------------------

    def apply(
        self,
        reason: str,
        kind: str,
        uid: str,
        meta: str | None = None,
        status: str | None = None,
        refs: Refs | None = None,
        controller: ControllerRef | None = None,
    ) -> None:
        try:
            change = self.store.apply(reason, kind, uid, meta, status, refs, controller)
        except MetadataError:
            self.metrics.metadata_errors.inc()
            raise
        self.metrics.metadata_events.labels(reason).inc()
        if change is None or not self.hub.wanted:
            return
        action = "deleted" if change.new is None else "created" if change.old is None else "updated"
        if kind == "Pod":
            record = self.joiner.by_pod(uid) if change.new is not None else None
            gone = change.old
            data: Record = record if record is not None else {
                "kind": "pod", "pod": {"uid": uid, "name": gone.name if gone else "",
                                        "namespace": gone.namespace if gone else ""},
            }  # fmt: skip
            self.hub.publish("pod", action, uid, data)
        else:
            obj = change.new or change.old
            assert obj is not None
            self.hub.publish("metadata", action, uid, {
                "kind": kind, "uid": uid, "name": obj.name, "namespace": obj.namespace, "labels": dict(obj.labels),
            })  # fmt: skip

    def reset(self) -> None:
        gone = self.store.reset()
        log.info("metadata reset: a full snapshot follows", dropped=len(gone))

    def synced(self) -> None:
        if not self.metadata_synced:
            log.info("metadata initial sync complete", objects=len(self.store))
        self.metadata_synced = True
        self._metadata_synced.set()
        if self.heap_frozen:
            self._freeze_heap()  # a resync replaced the store: freeze what it built

    def _freeze_heap(self) -> None:
        if not self.settings.freeze_heap:
            return
        gc.collect()
        gc.freeze()
        self.heap_frozen += 1
        log.debug("heap frozen", times=self.heap_frozen)  # not gc.get_freeze_count(): it walks every object

    async def _freeze_when_synced(self) -> None:
        await self.runtime_sync.wait_synced()
        await self._metadata_synced.wait()
        self._freeze_heap()

    def reconnected(self) -> None:
        self.metrics.stream_reconnects.inc()

    # -- runtime changes ----------------------------------------------------------------------------------------

    def _runtime_changed(self, changes: list[MirrorChange]) -> None:
        if not self.hub.wanted:
            return
        for change in changes:
            obj = change.obj
            kind = "sandbox" if change.is_sandbox else "container"
            record = self.joiner.by_id(obj.id) if change.action != "deleted" else None
            if record is None:
                view = container_view(obj) if isinstance(obj, Container) else sandbox_view(obj)
                record = {"kind": kind, kind: view}
            self.hub.publish(kind, change.action.value, obj.id, record)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until `stop()`. Start-up errors (socket or port unusable) raise OSError before anything runs."""
        s = self.settings
        async with contextlib.AsyncExitStack() as stack:
            app = api_app(self.joiner, self.hub, self.metrics, self.readiness)
            add_cni_route(app, self._cni_status)
            api = ApiServer(app, s.api.socket, s.api.socket_mode, s.shutdown_grace)
            await api.start()
            stack.push_async_callback(api.stop)
            stack.callback(self.hub.close)  # runs first: open change streams end, then the listener closes
            if s.probe_address is not None:
                probe = TcpServer("health probe", probe_app(self.readiness), s.probe_address)
                self.probe_port = (await stack.enter_async_context(probe)).port
            if s.metrics_address is not None:
                metrics = TcpServer("metrics", metrics_app(self.metrics.exposition, CONTENT_TYPE), s.metrics_address)
                self.metrics_port = (await stack.enter_async_context(metrics)).port
            log.info("agent started", node=s.node_name, socket=s.api.socket)
            self._serving.set()
            async with asyncio.TaskGroup() as tasks:
                loops = [
                    tasks.create_task(self.runtime_sync.run(), name="agent-runtime"),
                    tasks.create_task(self.source.run(), name="agent-metadata"),
                    tasks.create_task(self._freeze_when_synced(), name="agent-freeze"),
                ]
                if self.cni_guard is not None:
                    loops.append(tasks.create_task(self.cni_guard.run(), name="agent-cni-guard"))
                try:
                    await self._stop_requested.wait()
                finally:
                    self._stopping = True
                    for task in loops:
                        task.cancel()
        log.info("agent stopped")
