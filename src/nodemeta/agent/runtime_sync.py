"""Keeps the runtime mirror current: relists, container events, status fetches with bounded retries, and backoff
while the runtime is away. The only module that calls the runtime.

Two loops run side by side:

* the relist loop: ListPodSandbox + ListContainers, diffed by the mirror, then the status calls it asks for. Every
  `relist_period` without an event stream, every `relist_period_with_events` with one (a safety net against lost
  events), and at once when the event stream breaks (its gap may hide changes);
* the event loop: GetContainerEvents. `CriUnsupported` (containerd 1.6) ends it for good: relisting alone keeps
  the mirror current. Other failures retry it with backoff.

`CriNotFound` right after a container or sandbox appears is retried a bounded number of times (it can be briefly
unknown); after that the id is left for the next relist, which asks again if it is still listed. `CriUnavailable`
(runtime restarting, socket missing) keeps the cache as it is, marks the runtime unavailable and retries with
jittered backoff; the first relist after it returns brings the mirror up to date, deletions included.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import TypeVar

import structlog

from nodemeta.agent.metrics import AgentMetrics
from nodemeta.agent.mirror import Fetches, MirrorChange, RuntimeMirror
from nodemeta.agent.settings import MirrorSettings
from nodemeta.cri.model import (
    Container,
    ContainerEvent,
    CriError,
    CriNotFound,
    CriUnavailable,
    CriUnsupported,
    Listed,
    Runtime,
    RuntimeStatus,
    RuntimeVersion,
    Sandbox,
)
from nodemeta.kube.backoff import Backoff

__all__ = ["CountingRuntime", "RuntimeSync"]

log = structlog.get_logger("agent.runtime")

T = TypeVar("T")


class CountingRuntime:
    """A Runtime that counts every call in the agent's metrics, by method and outcome."""

    def __init__(self, inner: Runtime, metrics: AgentMetrics) -> None:
        self._inner = inner
        self._calls = metrics.cri_calls

    def _count(self, method: str, error: BaseException | None) -> None:
        outcome = "ok" if error is None else type(error).__name__
        self._calls.labels(method, outcome).inc()

    @contextlib.contextmanager
    def _counting(self, method: str) -> Iterator[None]:
        try:
            yield
        except CriError as err:
            self._count(method, err)
            raise
        else:
            self._count(method, None)

    async def version(self) -> RuntimeVersion:
        with self._counting("Version"):
            return await self._inner.version()

    async def status(self) -> RuntimeStatus:
        with self._counting("Status"):
            return await self._inner.status()

    async def list_sandboxes(self) -> Sequence[Listed]:
        with self._counting("ListPodSandbox"):
            return await self._inner.list_sandboxes()

    async def list_containers(self) -> Sequence[Listed]:
        with self._counting("ListContainers"):
            return await self._inner.list_containers()

    async def sandbox(self, sandbox_id: str) -> Sandbox:
        with self._counting("PodSandboxStatus"):
            return await self._inner.sandbox(sandbox_id)

    async def container(self, container_id: str) -> Container:
        with self._counting("ContainerStatus"):
            return await self._inner.container(container_id)

    async def events(self) -> AsyncIterator[ContainerEvent]:
        with self._counting("GetContainerEvents"):
            async for event in self._inner.events():
                yield event


class RuntimeSync:
    def __init__(
        self,
        runtime: Runtime,
        mirror: RuntimeMirror,
        on_changes: Callable[[list[MirrorChange]], None],
        *,
        settings: MirrorSettings | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.settings = settings or MirrorSettings()
        self.metrics = metrics or AgentMetrics()
        self.runtime: Runtime = CountingRuntime(runtime, self.metrics)
        self.mirror = mirror
        self._on_changes = on_changes
        self.available = False
        self.events_active = False
        self.last_error = "not connected yet"
        self._wake = asyncio.Event()
        self._relisted = asyncio.Event()

    @property
    def synced(self) -> bool:
        return self.mirror.relisted

    async def wait_synced(self) -> None:
        await self._relisted.wait()

    async def run(self) -> None:
        """Both loops until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._relist_loop(), name="runtime-relist")
            tasks.create_task(self._event_loop(), name="runtime-events")

    # -- relist -------------------------------------------------------------------------------------------------

    async def relist(self) -> None:
        """One listing and the status calls it needs. Raises CriError when the runtime fails."""
        mark = self.mirror.mark()
        sandboxes = await self.runtime.list_sandboxes()
        containers = await self.runtime.list_containers()
        changes, fetches = self.mirror.relist(sandboxes, containers, mark)
        self._emit(changes)
        await self._fetch(fetches)
        self.metrics.runtime_relists.inc()
        self._relisted.set()

    async def _relist_loop(self) -> None:
        backoff = Backoff(self.settings.backoff)
        while True:
            self._wake.clear()
            try:
                await self.relist()
            except CriError as err:
                if self.available or self.last_error != str(err):
                    log.warning("runtime unavailable, keeping the cache", error=str(err))
                self.available = False
                self.last_error = str(err)
                await self._sleep(backoff.next_delay())
                continue
            if not self.available:
                log.info("runtime mirrored", containers=len(self.mirror.containers),
                         sandboxes=len(self.mirror.sandboxes))  # fmt: skip
            self.available = True
            self.last_error = ""
            backoff.reset()
            s = self.settings
            await self._sleep(s.relist_period_with_events if self.events_active else s.relist_period)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, or return early when woken (the event stream broke or came back)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    # -- events -------------------------------------------------------------------------------------------------

    async def _event_loop(self) -> None:
        backoff = Backoff(self.settings.backoff)
        while True:
            # Optimistic: a stream that is open but quiet cannot be told from one about to fail, and a failure
            # wakes the relist loop at once, so the slow safety-net period is only used while the stream holds.
            self.events_active = True
            try:
                async for event in self.runtime.events():
                    backoff.reset()
                    self.metrics.runtime_events.inc()
                    changes, fetches = self.mirror.on_event(event)
                    self._emit(changes)
                    await self._fetch(fetches, strict=False)
            except CriUnsupported as err:
                log.info("the runtime has no container events; relisting only", detail=str(err),
                         period=self.settings.relist_period)  # fmt: skip
                self.events_active = False
                self._wake.set()
                return
            except CriError as err:
                if self.events_active:
                    log.warning("container event stream broke", error=str(err))
            else:
                if self.events_active:
                    log.warning("container event stream ended")
            if self.events_active:
                self.events_active = False
                self._wake.set()  # relist now: the gap may hide changes
            await asyncio.sleep(backoff.next_delay())

    # -- statuses -----------------------------------------------------------------------------------------------

    async def _fetch(self, fetches: Fetches, *, strict: bool = True) -> None:
        """Fetch the statuses asked for. `strict`: CriUnavailable propagates (the relist failed); else it is left
        for the relist loop to notice."""
        for sandbox_id in fetches.sandboxes:
            try:
                sandbox = await self._retry(self.runtime.sandbox, sandbox_id)
            except CriNotFound:
                self._emit(self.mirror.remove(sandbox_id))
                continue
            except CriError as err:
                if strict and isinstance(err, CriUnavailable):
                    raise
                log.warning("sandbox status failed", sandbox=sandbox_id, error=str(err))
                continue
            self._emit(self.mirror.put_sandbox(sandbox))
        for container_id in fetches.containers:
            try:
                container = await self._retry(self.runtime.container, container_id)
            except CriNotFound:
                self._emit(self.mirror.remove(container_id))
                continue
            except CriError as err:
                if strict and isinstance(err, CriUnavailable):
                    raise
                log.warning("container status failed", container=container_id, error=str(err))
                continue
            self._emit(self.mirror.put_container(container))

    async def _retry(self, call: Callable[[str], Awaitable[T]], object_id: str) -> T:
        """`call(object_id)`, retried while the runtime says it does not know the id (it may be brand new)."""
        delay = self.settings.not_found_delay
        for _ in range(self.settings.not_found_retries):
            try:
                return await call(object_id)
            except CriNotFound:
                await asyncio.sleep(delay)
                delay *= 2
        return await call(object_id)

    def _emit(self, changes: list[MirrorChange]) -> None:
        if changes:
            self._on_changes(changes)
