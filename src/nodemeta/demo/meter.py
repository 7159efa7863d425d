"""What a client received, and how fast: counters by event reason, bytes, messages and sliding-window rates.

Pure bookkeeping (no I/O, no event loop): the clients add to a `Meter` as data arrives, the view samples every
meter on one clock a few times a second, and rates are the growth over the last few seconds of samples.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["CREATE", "DELETE", "REASONS", "UPDATE", "Meter", "RateMeter"]

CREATE = "Create"
UPDATE = "Update"
DELETE = "Delete"
REASONS = (CREATE, UPDATE, DELETE)
# Rates are averaged over this many seconds of samples: long enough to smooth a burst (a rollout, a node drain),
# short enough that the number on screen follows what the cluster does now.
RATE_WINDOW = 5.0


class RateMeter:
    """The per-second growth of a total over the last `window` seconds, from (time, total) samples."""

    __slots__ = ("_samples", "window")

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()

    def sample(self, now: float, total: float) -> None:
        self._samples.append((now, total))
        # Keep one sample at or before the window's start, so the rate always spans the whole window.
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else 0.0


@dataclass(slots=True)
class Meter:
    """One client's receipts: events by reason (Create/Update/Delete), payload bytes and messages."""

    create: int = 0
    update: int = 0
    delete: int = 0
    bytes: int = 0
    messages: int = 0
    event_rate: RateMeter = field(default_factory=RateMeter)
    byte_rate: RateMeter = field(default_factory=RateMeter)

    def count(self, reason: str, n: int = 1) -> None:
        if reason == CREATE:
            self.create += n
        elif reason == UPDATE:
            self.update += n
        elif reason == DELETE:
            self.delete += n
        else:
            raise ValueError(f"unknown reason {reason!r}")

    @property
    def events(self) -> int:
        return self.create + self.update + self.delete

    def sample(self, now: float) -> None:
        self.event_rate.sample(now, self.events)
        self.byte_rate.sample(now, self.bytes)

    def add(self, other: Meter) -> None:
        """Add `other`'s totals (not its rates) to this one."""
        self.create += other.create
        self.update += other.update
        self.delete += other.delete
        self.bytes += other.bytes
        self.messages += other.messages
