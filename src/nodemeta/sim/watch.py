"""Watch streams: filtering store changes for one watcher and writing them as newline-delimited JSON.

A `WatchStream` is subscribed to a bucket; the store hands it every change synchronously and it keeps the ones its
filter selects in a bounded queue. If the client cannot keep up and the queue fills, the stream is ended, as
kube-apiserver's cacher terminates a blocked watcher; the client re-watches from the last resourceVersion it saw,
and nobody else is slowed down. Bookmarks go out only when the queue is empty, so a bookmark's resourceVersion
never runs ahead of an event this watcher has not been sent yet.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nodemeta.sim import errors
from nodemeta.sim.selectors import FieldSelector, LabelSelector
from nodemeta.sim.store import ADDED, DELETED, MODIFIED, Bucket, Change, Stored
from nodemeta.sim.views import View, error_line

INITIAL_EVENTS_END = "k8s.io/initial-events-end"


@dataclass(frozen=True, slots=True)
class WatchFilter:
    namespace: str = ""
    name: str = ""
    labels: LabelSelector | None = None
    fields: FieldSelector | None = None

    def matches(self, stored: Stored) -> bool:
        if self.namespace and stored.namespace != self.namespace:
            return False
        if self.name and stored.name != self.name:
            return False
        if self.labels is not None and not self.labels.matches(stored.labels):
            return False
        return self.fields is None or self.fields.matches(stored.field_map())

    def event_type(self, change: Change) -> str | None:
        """How this watcher sees `change`: objects entering or leaving the selection become ADDED/DELETED."""
        was = change.prev is not None and self.matches(change.prev)
        if change.type == DELETED:
            return DELETED if was else None
        now = self.matches(change.obj)
        if now:
            return MODIFIED if was else ADDED
        return DELETED if was else None

    def index_value(self, bucket: Bucket) -> str | None:
        if self.fields is None or not bucket.index_field:
            return None
        return self.fields.equality_value(bucket.index_field)


@dataclass(frozen=True, slots=True)
class WatchOptions:
    bookmarks: bool
    timeout: float
    bookmark_interval: float
    queue_limit: int
    initial_events_end: bool = False


Writer = Callable[[bytes], Awaitable[None]]


class WatchStream:
    """One open watch. `run()` writes until the deadline, an overflow, `close()` or a client disconnect."""

    def __init__(
        self,
        bucket: Bucket,
        view: View,
        flt: WatchFilter,
        options: WatchOptions,
        current_rv: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bucket = bucket
        self.view = view
        self.filter = flt
        self.options = options
        self._current_rv = current_rv
        self._clock = clock
        self._queue: deque[tuple[Change, str]] = deque()
        self._initial: list[Stored] = []
        self._wake = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self._initial_rv = 0
        # Fault injection: end without a clean close, go silent, or end with an in-stream 410.
        self.aborted = False
        self.hung = False
        self.expired_floor: int | None = None
        self.last_rv = 0

    # -- called synchronously by the store -----------------------------------------------------------------

    def offer(self, change: Change) -> None:
        if self.closed or self.overflowed:
            return
        event_type = self.filter.event_type(change)
        if event_type is None:
            return
        if len(self._queue) >= self.options.queue_limit:
            self.overflowed = True
        else:
            self._queue.append((change, event_type))
        self._wake.set()

    # -- set-up, before any await, so nothing can slip between the snapshot and the subscription -------------

    def start_from_state(self, objects: list[Stored], rv: int) -> None:
        """Synthetic ADDED events for `objects` (the state at `rv`), then live changes."""
        self._initial = [o for o in objects if self.filter.matches(o)]
        self._initial_rv = rv
        self.bucket.subscribe(self, self.filter.index_value(self.bucket))

    def start_from_history(self, changes: list[Change]) -> None:
        """Replay `changes` (everything after the requested resourceVersion), then live changes."""
        for change in changes:
            self.offer(change)
        self.bucket.subscribe(self, self.filter.index_value(self.bucket))

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def abort(self) -> None:
        """Drop the connection mid-stream, as a broken network or a crashing server would."""
        self.aborted = True
        self._wake.set()

    def hang(self) -> None:
        """Stop sending anything (events, bookmarks) while keeping the connection open."""
        self.hung = True
        self._wake.set()

    def expire(self, floor: int) -> None:
        """End with an in-stream 410, as when the history this watcher needs was compacted away."""
        self.expired_floor = floor
        self._wake.set()

    @property
    def interrupted(self) -> bool:
        return self.closed or self.overflowed or self.aborted or self.hung or self.expired_floor is not None

    # -- the writer -----------------------------------------------------------------------------------------

    async def run(self, write: Writer) -> None:
        start = self._clock()
        deadline = start + self.options.timeout
        next_bookmark = self._next_bookmark(start, deadline)
        loop = asyncio.get_running_loop()
        # One timer per stream, re-armed only when the time to wake at changes: waiting with asyncio.wait_for
        # would allocate a task and a timer on every sleep, which at a thousand watchers dominated the CPU.
        timer: asyncio.TimerHandle | None = None
        timer_at = 0.0
        try:
            first = True
            if self._initial:
                batch: list[bytes] = []
                for stored in self._initial:
                    batch.append(self.view.snapshot_line(stored, first))
                    first = False
                    if len(batch) >= 256:
                        await write(b"".join(batch))
                        batch = []
                if batch:
                    await write(b"".join(batch))
                self._initial = []
            self.last_rv = self._initial_rv
            if self.options.initial_events_end and self.options.bookmarks:
                await write(self.view.bookmark_line(self._initial_rv, {INITIAL_EVENTS_END: "true"}))
            while not self.interrupted:
                if self._queue:
                    lines: list[bytes] = []
                    while self._queue and len(lines) < 512:
                        change, event_type = self._queue.popleft()
                        lines.append(self.view.line(change, event_type, first))
                        self.last_rv = change.rv
                        first = False
                    await write(b"".join(lines))
                    continue
                now = self._clock()
                if now >= deadline:
                    return
                if self.options.bookmarks and now >= next_bookmark:
                    self.last_rv = self._current_rv()
                    await write(self.view.bookmark_line(self.last_rv))
                    next_bookmark = self._next_bookmark(now, deadline)
                    continue
                wait_until = min(deadline, next_bookmark) if self.options.bookmarks else deadline
                if timer is None or timer_at != wait_until:
                    if timer is not None:
                        timer.cancel()
                    timer, timer_at = loop.call_later(max(0.0, wait_until - now), self._wake.set), wait_until
                self._wake.clear()
                await self._wake.wait()
            if self.expired_floor is not None and not self.closed:
                status = errors.expired(f"too old resource version: {self.last_rv} ({self.expired_floor})").status()
                await write(error_line(status))
            while self.hung and not (self.closed or self.aborted):
                self._wake.clear()
                await self._wake.wait()
        finally:
            if timer is not None:
                timer.cancel()
            self.closed = True
            self.bucket.unsubscribe(self)

    def _next_bookmark(self, now: float, deadline: float) -> float:
        # Like the cacher: every interval, and once shortly before the deadline so the client can resume from it.
        before_end = deadline - min(2.0, self.options.timeout / 4)
        nxt = now + self.options.bookmark_interval
        return before_end if now < before_end < nxt else nxt
