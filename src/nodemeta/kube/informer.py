"""The informer: a Reflector feeding a Store for one resource, with a way to wait for the first full list.

    async with ApiClient(config) as client, asyncio.TaskGroup() as tasks:
        pods = Informer(client, PODS)
        pods.add_listener(my_listener)
        tasks.create_task(pods.run())
        await pods.wait_synced()
        ...

`run()` never returns on its own and is meant to run in a TaskGroup; cancelling it cancels the HTTP request in
flight and closes its connection. The client is borrowed, not owned, so several informers share one connection
pool; closing it (leaving its `async with`) is the caller's job.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from nodemeta.kube.models import KubeObject
from nodemeta.kube.reflector import Reflector, ReflectorStats, Transport
from nodemeta.kube.resources import Resource
from nodemeta.kube.settings import ReflectorSettings
from nodemeta.kube.store import BaseListener, Listener, Store

__all__ = ["Informer"]

T = TypeVar("T", bound=KubeObject)


class _SyncedSignal(BaseListener[KubeObject]):
    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    def on_synced(self) -> None:
        self._event.set()


class Informer(Generic[T]):
    """Reflector + Store for one resource."""

    def __init__(self, client: Transport, resource: Resource[T], *, settings: ReflectorSettings | None = None) -> None:
        self.resource = resource
        self.store: Store[T] = Store(resource.describe())
        self.reflector: Reflector[T] = Reflector(client, resource, self.store, settings=settings)
        self._synced = asyncio.Event()
        self.store.add_listener(_SyncedSignal(self._synced))

    @property
    def stats(self) -> ReflectorStats:
        return self.reflector.stats

    @property
    def has_synced(self) -> bool:
        return self.store.has_synced

    def add_listener(self, listener: Listener[T]) -> None:
        """Hear about changes; register before `run()` to see the initial list as adds."""
        self.store.add_listener(listener)

    async def wait_synced(self) -> None:
        """Return once the first full list is in the store (bound it with asyncio.timeout)."""
        await self._synced.wait()

    async def run(self) -> None:
        """Keep the store in sync until cancelled."""
        await self.reflector.run()
