"""The controller contract and the manager that runs controllers over the registry.

A controller names the storages it watches, maps each change to the keys it must reconcile, and reconciles a key
by reading and writing through the registry, exactly as a real controller would through the API (same validation,
same conflicts, same watch events for every client). The store calls `ControllerManager.observe` synchronously on
every write; observers only queue keys, so a reconcile never runs inside another write.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

import structlog

from nodemeta.sim.controllers.workqueue import WorkQueue
from nodemeta.sim.errors import APIError
from nodemeta.sim.registry import Registry
from nodemeta.sim.settings import SimSettings
from nodemeta.sim.store import Bucket, Change

log = structlog.get_logger("nodemeta.sim.controllers")


@dataclass(frozen=True, slots=True, kw_only=True)
class Requeue:
    """Reconcile again after `after` seconds (a grace period running out, a schedule coming due)."""

    after: float


class Controller:
    """Base class: subclasses set `name` and `watches`, and implement `keys_for` and `reconcile`."""

    name = "controller"
    # Storage names (ResourceType.storage_name) whose changes this controller wants to hear about.
    watches: tuple[str, ...] = ()

    def __init__(self, registry: Registry, settings: SimSettings) -> None:
        self.registry = registry
        self.settings = settings
        self.queue = WorkQueue()

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        """The keys a change makes due for reconciliation (default: the changed object's own key)."""
        return (change.key,)

    def initial_keys(self) -> Iterable[Hashable]:
        """Keys to reconcile when the controller starts (default: every object of the first watched storage)."""
        if not self.watches:
            return ()
        bucket = self.registry.store.buckets[self.watches[0]]
        return list(bucket.items.keys())

    def reconcile(self, key: Hashable) -> Requeue | None:
        raise NotImplementedError


Factory = Callable[[Registry, SimSettings], Controller]

# Retry a failed reconcile after a jittered delay that doubles per failure, capped, like client-go's rate limiter.
_BASE_RETRY = 0.005
_MAX_RETRY = 5.0


class ControllerManager:
    """Runs controllers: one task each, started and stopped together."""

    def __init__(self, registry: Registry, controllers: list[Controller]) -> None:
        self.registry = registry
        self.controllers = controllers
        self._by_storage: dict[str, list[Controller]] = {}
        for controller in controllers:
            for storage in controller.watches:
                self._by_storage.setdefault(storage, []).append(controller)
        self._failures: dict[tuple[str, Hashable], int] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self.errors = 0
        # Set after every reconcile, so waiters can re-check idleness without polling.
        self.progress = asyncio.Event()

    def observe(self, bucket: Bucket, change: Change) -> None:
        storage = bucket.res.storage_name
        for controller in self._by_storage.get(storage, ()):
            for key in controller.keys_for(storage, change):
                controller.queue.add(key)

    def prime(self) -> None:
        """Start observing the store and queue every controller's start-up work. Called before `run()` is
        scheduled, so that nothing written in between is missed and `wait_idle()` sees the pending work."""
        if self.observe not in self.registry.store.observers:
            self.registry.store.observers.append(self.observe)
            for controller in self.controllers:
                for key in controller.initial_keys():
                    controller.queue.add(key)

    async def run(self) -> None:
        """Run until cancelled. Store observation starts (if `prime()` was not called) and stops with it."""
        self.prime()
        try:
            async with asyncio.TaskGroup() as group:
                for controller in self.controllers:
                    group.create_task(self._worker(controller), name=f"controller-{controller.name}")
        finally:
            self.registry.store.observers.remove(self.observe)
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()

    async def _worker(self, controller: Controller) -> None:
        loop = asyncio.get_running_loop()
        processed = 0
        while True:
            key = await controller.queue.get()
            try:
                result = controller.reconcile(key)
            except APIError as err:
                result = self._retry(controller, key, err)
            except Exception:
                log.exception("reconcile failed", controller=controller.name, key=str(key))
                self.errors += 1
                result = self._retry(controller, key, None)
            else:
                self._failures.pop((controller.name, key), None)
            finally:
                controller.queue.done(key)
                self.progress.set()
            if result is not None:
                self._later(loop, result.after, controller, key)
            processed += 1
            if processed % 64 == 0:
                # Yield so API clients and other controllers are not starved by a long queue.
                await asyncio.sleep(0)

    def _retry(self, controller: Controller, key: Hashable, err: APIError | None) -> Requeue:
        failures = self._failures.get((controller.name, key), 0) + 1
        self._failures[(controller.name, key)] = failures
        if err is not None and err.code not in (404, 409):
            log.warning("reconcile error", controller=controller.name, key=str(key), code=err.code, error=err.message)
        delay = min(_MAX_RETRY, _BASE_RETRY * 2**failures)
        return Requeue(after=delay * (0.5 + random.random()))

    def _later(self, loop: asyncio.AbstractEventLoop, after: float, controller: Controller, key: Hashable) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            controller.queue.add(key)

        handle = loop.call_later(max(0.0, after), fire)
        self._timers.add(handle)

    def idle(self) -> bool:
        """No work queued or in progress (timers may still be pending)."""
        return all(c.queue.idle() for c in self.controllers)

    async def wait_idle(self) -> None:
        """Return once no controller has work queued or in progress."""
        while not self.idle():
            self.progress.clear()
            await self.progress.wait()
