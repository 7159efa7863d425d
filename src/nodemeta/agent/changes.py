"""The change stream's fan-out: each change encoded once as a CloudEvent (JSON format), then offered to every
reader's bounded queue.

Publishing never waits: a reader whose queue is full is too slow, so its subscription is closed and its connection
dropped (`on_overflow`); it reconnects and reads current state with lookups. Nobody else slows down.

Event types: `io.nodemeta.agent.<container|sandbox|pod>.<created|updated|deleted>`; `subject` is the container or
sandbox id, or the pod uid; `data` is the record a lookup would return (for a deletion, the last one known).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

__all__ = ["EVENT_TYPE_PREFIX", "ChangeHub", "ChangeSubscription"]

EVENT_TYPE_PREFIX = "io.nodemeta.agent."
_FORMAT = JSONFormat()


class ChangeSubscription:
    def __init__(self, size: int, on_overflow: Callable[[], None]) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(size)
        self.closed = False
        self._on_overflow = on_overflow

    def offer(self, line: bytes) -> bool:
        """Queue one line; False (and the subscription closed) when the reader has fallen too far behind."""
        if self.closed:
            return False
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            self.close()
            self._on_overflow()
            return False
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def next(self) -> bytes | None:
        """The next line, or None once closed."""
        return await self.queue.get()


class ChangeHub:
    def __init__(self, source: str, queue_size: int, on_slow_reader: Callable[[], None] = lambda: None) -> None:
        self.source = source
        self.queue_size = queue_size
        self.subscribers: set[ChangeSubscription] = set()
        self.published = 0
        self._ids = itertools.count(1)
        self._on_slow_reader = on_slow_reader

    def subscribe(self, on_overflow: Callable[[], None]) -> ChangeSubscription:
        def overflowed() -> None:
            self.subscribers.discard(sub)
            self._on_slow_reader()
            on_overflow()

        sub = ChangeSubscription(self.queue_size, overflowed)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: ChangeSubscription) -> None:
        self.subscribers.discard(sub)
        sub.close()

    def close(self) -> None:
        for sub in list(self.subscribers):
            self.unsubscribe(sub)

    @property
    def wanted(self) -> bool:
        """Somebody reads: only then are records built and encoded."""
        return bool(self.subscribers)

    def publish(self, kind: str, action: str, subject: str, data: dict[str, Any]) -> None:
        if not self.subscribers:
            return
        event = CloudEvent(
            {
                "specversion": "1.0",
                "id": f"{self.source}-{next(self._ids)}",
                "source": self.source,
                "type": f"{EVENT_TYPE_PREFIX}{kind}.{action}",
                "subject": subject,
                "time": datetime.now(UTC),
                "datacontenttype": "application/json",
            },
            data,
        )
        line = _FORMAT.write(event) + b"\n"
        self.published += 1
        for sub in list(self.subscribers):
            sub.offer(line)
