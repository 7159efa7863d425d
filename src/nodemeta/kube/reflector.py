"""The Reflector: keeps a sink equal to the API server's view of one resource, by LIST then WATCH, forever.

It is the only part of the informer that does I/O, and it owns exactly three things: the list -> watch loop, the
resourceVersion bookkeeping, and the backoff. It writes into a `Sink` and knows nothing about who reads it.

The loop, with client-go's semantics:

1. LIST in pages (`limit`, then `continue`). A continue token that expired (410) restarts the whole list. The
   resourceVersion to list at comes from `relist_resource_version`.
2. `sink.replace(objects, rv)`: the sink emits tombstone deletes for keys that vanished.
3. WATCH from the last resourceVersion with `allowWatchBookmarks=true` and a randomised `timeoutSeconds`; every
   event, bookmarks included, moves the resourceVersion forward.
4. How a watch ends decides what comes next (`after_watch_error`):
   * a clean end (the server's timeout): watch again at once from the last resourceVersion, no relist;
   * a dropped connection, a stall (no bytes for `inactivity_timeout`), a 5xx or a 429: watch again from the last
     resourceVersion after a backoff (a 429 waits at least its Retry-After). The cache is kept: a relist would only
     add load to a server that is already struggling or unreachable;
   * 410 Expired/Gone, in the stream or as the HTTP status: our resourceVersion is gone, so relist from the latest
     state (after a jittered backoff, which spreads the relist storm that a compaction causes);
   * any other API error (401, 403, 404, ...): back off, then relist.

Per-event decoding problems are logged and counted, and the stream goes on: one bad object never stops a watch.
Counters for metrics live in `ReflectorStats`, as plain attributes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import structlog

from nodemeta.kube.backoff import Backoff
from nodemeta.kube.codec import ADDED, BOOKMARK, DELETED, ERROR, MODIFIED, Bookmark, Change, Codec, status_error
from nodemeta.kube.errors import (
    ApiError,
    DecodeError,
    Expired,
    KubeError,
    ServerError,
    Throttled,
    TransportError,
    WatchStalled,
)
from nodemeta.kube.models import KubeObject
from nodemeta.kube.resources import Resource
from nodemeta.kube.settings import ReflectorSettings

__all__ = [
    "NOT_OLDER_THAN",
    "Reflector",
    "ReflectorStats",
    "Retry",
    "Sink",
    "Transport",
    "after_watch_error",
    "relist_resource_version",
]

T = TypeVar("T", bound=KubeObject)
T_contra = TypeVar("T_contra", bound=KubeObject, contravariant=True)
P = TypeVar("P")

NOT_OLDER_THAN = "NotOlderThan"

# Why a watch ended; the keys of `ReflectorStats.watch_restarts`.
TIMEOUT = "timeout"  # clean end, normally the server's timeoutSeconds
SHORT = "short"  # clean end almost at once with nothing received
EXPIRED = "expired"
THROTTLED = "throttled"
SERVER_ERROR = "server-error"
STALLED = "stalled"
DROPPED = "dropped"
FAILED = "error"


class Sink(Protocol[T_contra]):
    """Where the reflector writes. `Store` is the usual implementation."""

    @property
    def has_synced(self) -> bool: ...

    def replace(self, objects: Iterable[T_contra], resource_version: str) -> None: ...

    def add(self, obj: T_contra) -> None: ...

    def update(self, obj: T_contra) -> None: ...

    def delete(self, obj: T_contra) -> None: ...


class Transport(Protocol):
    """The API I/O the reflector needs; `ApiClient` implements it."""

    async def list_page(
        self, path: str, params: Mapping[str, str], decode: Callable[[bytes], P], *, accept: str = ...
    ) -> P: ...

    def watch(
        self, path: str, params: Mapping[str, str], *, accept: str = ..., inactivity_timeout: float
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]: ...


@dataclass(slots=True)
class ReflectorStats:
    """Counters for metrics and tests. Plain attributes: the metrics layer reads them, nothing here imports it."""

    # Complete LISTs stored into the sink, and how many of them were relists (every one after the first).
    lists: int = 0
    relists: int = 0
    list_pages: int = 0
    list_failures: int = 0
    # LISTs started over because their continue token expired midway.
    list_restarts: int = 0
    # Watch streams opened (HTTP 200), and why each one ended.
    watches: int = 0
    watch_restarts: Counter[str] = field(default_factory=Counter)
    # Watch events by type (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR).
    events: Counter[str] = field(default_factory=Counter)
    decode_errors: int = 0
    # The newest resourceVersion seen, from a list or any watch event; the next watch starts here.
    last_resource_version: str = ""


def relist_resource_version(last_seen: str, unavailable: bool) -> tuple[str, str]:
    """The (resourceVersion, resourceVersionMatch) for the next LIST.

    * Nothing seen yet, or the server told us our version is unavailable (410 Expired/Gone, or 504 "too large
      resource version" after a server's storage went back in time): ("", ""), a consistent read of the latest
      state. Paginated lists with an unset resourceVersion are served from etcd at one revision.
    * Otherwise (a relist after some other failure): (last_seen, "NotOlderThan"): any state at least as new as the
      cache already holds. The server can answer it from its watch cache, and the cache never goes back in time.
    """
    if not last_seen or unavailable:
        return "", ""
    return last_seen, NOT_OLDER_THAN


@dataclass(frozen=True, slots=True)
class Retry:
    """What to do after a watch failed: why (for the counters), whether to relist, and from which version."""

    reason: str
    relist: bool
    # Relist from the latest state rather than from the last seen version (which the server no longer has).
    unavailable: bool = False


def after_watch_error(err: KubeError) -> Retry:
    """Classify a watch failure. Every outcome is retried after a backoff; only the relist decision differs."""
    if isinstance(err, Expired) or (isinstance(err, ApiError) and err.resource_version_too_large):
        return Retry(EXPIRED, relist=True, unavailable=True)
    if isinstance(err, Throttled):
        return Retry(THROTTLED, relist=False)
    if isinstance(err, ServerError):
        return Retry(SERVER_ERROR, relist=False)
    if isinstance(err, WatchStalled):
        return Retry(STALLED, relist=False)
    if isinstance(err, TransportError):
        return Retry(DROPPED, relist=False)
    return Retry(FAILED, relist=True)


class Reflector(Generic[T]):
    """Mirrors one `Resource` into a `Sink`. `run()` never returns; cancel it to stop."""

    def __init__(
        self,
        transport: Transport,
        resource: Resource[T],
        sink: Sink[T],
        *,
        settings: ReflectorSettings | None = None,
    ) -> None:
        self.resource = resource
        self.settings = settings or ReflectorSettings()
        self.stats = ReflectorStats()
        self._transport = transport
        self._sink = sink
        self._codec = Codec(resource.model)
        self._backoff = Backoff(self.settings.backoff)
        self._rng = random.Random()
        # The server said our resourceVersion is gone: the next LIST must read the latest state.
        self._unavailable = False
        # Watch events handled, to tell a very short empty watch from a normal one.
        self._received = 0
        self._log = structlog.get_logger("nodemeta.kube.reflector").bind(resource=resource.describe())

    async def run(self) -> None:
        """List and watch until cancelled. API and connection errors are retried; only bugs propagate."""
        while True:
            if await self._list_and_replace():
                await self._watch_until_relist()

    # -- list -------------------------------------------------------------------------------------------------------

    async def _list_and_replace(self) -> bool:
        rv, match = relist_resource_version(self.stats.last_resource_version, self._unavailable)
        try:
            objects, list_rv = await self._list(rv, match)
        except KubeError as err:
            self.stats.list_failures += 1
            if isinstance(err, Expired) or (isinstance(err, ApiError) and err.resource_version_too_large):
                self._unavailable = True
            delay = self._delay(err)
            self._log.warning("list failed", error=str(err), retry_in=round(delay, 3))
            await asyncio.sleep(delay)
            return False
        relist = self._sink.has_synced
        self._sink.replace(objects, list_rv)
        self._unavailable = False
        self.stats.lists += 1
        self.stats.relists += relist
        self.stats.last_resource_version = list_rv
        self._log.info("listed", objects=len(objects), resource_version=list_rv, relist=relist)
        return True

    async def _list(self, rv: str, match: str) -> tuple[list[T], str]:
        """All pages of one LIST; a continue token that expires midway restarts the list from the first page."""
        resource = self.resource
        paging = {**resource.selector_params(), "limit": str(self.settings.page_size)}
        first = dict(paging)
        if rv:
            first["resourceVersion"] = rv
        if match:
            first["resourceVersionMatch"] = match
        items: list[T] = []
        token = ""
        restarts = 0
        while True:
            # Continue pages carry neither resourceVersion nor its match: the token pins the snapshot.
            params = {**paging, "continue": token} if token else first
            try:
                page = await self._transport.list_page(
                    resource.path, params, self._codec.decode_list, accept=resource.list_accept
                )
            except Expired:
                if not token or restarts >= self.settings.list_restarts:
                    raise
                restarts += 1
                self.stats.list_restarts += 1
                self._log.info("continue token expired, restarting the list", discarded=len(items))
                items.clear()
                token = ""
                continue
            self.stats.list_pages += 1
            items.extend(page.items)
            token = page.metadata.continue_
            if not token:
                return items, page.metadata.resource_version

    # -- watch ------------------------------------------------------------------------------------------------------

    async def _watch_until_relist(self) -> None:
        while True:
            started = time.monotonic()
            received = self._received
            try:
                await self._watch()
            except KubeError as err:
                retry = after_watch_error(err)
                self.stats.watch_restarts[retry.reason] += 1
                self._unavailable = self._unavailable or retry.unavailable
                delay = self._delay(err)
                self._log.info(
                    "watch ended",
                    reason=retry.reason,
                    error=str(err),
                    relist=retry.relist,
                    retry_in=round(delay, 3),
                    resource_version=self.stats.last_resource_version,
                )
                await asyncio.sleep(delay)
                if retry.relist:
                    return
                continue
            if self._received == received and time.monotonic() - started < self.settings.min_watch_duration:
                self.stats.watch_restarts[SHORT] += 1
                delay = self._backoff.next_delay()
                self._log.warning("watch closed at once with nothing sent", retry_in=round(delay, 3))
                await asyncio.sleep(delay)
            else:
                self.stats.watch_restarts[TIMEOUT] += 1
                self._log.debug("watch ended cleanly", resource_version=self.stats.last_resource_version)

    async def _watch(self) -> None:
        """One watch request, applying its events to the sink until the stream ends."""
        s = self.settings
        resource = self.resource
        # Integer seconds, at least 1: the server ignores fractions and treats 0 as "no timeout".
        timeout = max(1, int(self._rng.uniform(s.watch_timeout_min, s.watch_timeout_max)))
        params = {
            **resource.selector_params(),
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": self.stats.last_resource_version,
            "timeoutSeconds": str(timeout),
        }
        async with self._transport.watch(
            resource.path, params, accept=resource.watch_accept, inactivity_timeout=s.inactivity_timeout
        ) as lines:
            self.stats.watches += 1
            async for line in lines:
                self._apply(line)

    def _apply(self, line: bytes) -> None:
        try:
            event = self._codec.decode_event(line)
        except DecodeError as err:
            self.stats.decode_errors += 1
            self._log.warning("undecodable watch event skipped", error=str(err), line=line[:200])
            return
        self._received += 1
        if isinstance(event, Change):
            self.stats.events[event.type] += 1
            if event.type == ADDED:
                self._sink.add(event.object)
            elif event.type == MODIFIED:
                self._sink.update(event.object)
            elif event.type == DELETED:
                self._sink.delete(event.object)
            rv = event.resource_version
        elif isinstance(event, Bookmark):
            self.stats.events[BOOKMARK] += 1
            rv = event.resource_version
        else:
            self.stats.events[ERROR] += 1
            raise status_error(event.status)
        if rv:
            self.stats.last_resource_version = rv

    # -- backoff ----------------------------------------------------------------------------------------------------

    def _delay(self, err: KubeError) -> float:
        """The backoff delay; a 429 waits at least its Retry-After (capped at the backoff maximum)."""
        delay = self._backoff.next_delay()
        if isinstance(err, Throttled) and err.retry_after:
            delay = max(delay, min(err.retry_after, self.settings.backoff.maximum))
        return delay
