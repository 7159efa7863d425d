"""When the simulator's long-lived objects leave the cyclic garbage collector's view (`gc.freeze`).

CPython's full (generation 2) collection walks every object the collector tracks. At 150,000 pods the store holds
millions (each revision's labels and fields, the history entries), so a full collection blocks the event loop for
seconds, and none of it is ever cyclic garbage: a stored revision is freed by reference counting once a write
replaces it and the history drops it. `gc.freeze()` moves every tracked object into a permanent generation that
collections skip; frozen objects are still freed by reference counting, only a cycle among them would never be.

So the server refreezes after every `refreeze_writes` writes to the store: first one full collection of what is not
frozen yet (garbage cycles that exist now are collected, not frozen), then the freeze. It waits for a moment with
no request in flight besides watches, so the short-lived objects of a request are not frozen with the store;
after `force_after` times the threshold it refreezes anyway. A full collection then walks what the last few
thousand writes and the requests since made, never the whole store.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class HeapSettings:
    # Writes between refreezes. A pod write leaves ~10 tracked objects behind (its revision's dicts and the history
    # entry), so 20,000 writes are ~200,000 objects: a full collection of those takes ~20 ms on one core, against
    # seconds for the whole heap of a 150,000-pod store. 0 leaves the process's garbage collector alone: no
    # refreezing and no freeze after a generated build (for a program that embeds the simulator and wants its own
    # collections as they are). `nodemeta sim serve --heap-refreeze-writes`.
    refreeze_writes: int = 20_000
    # How often the server checks; a second keeps the unfrozen part near the threshold at 1,000+ writes/s.
    interval: float = 1.0
    # A server that is never idle refreezes anyway at this multiple of `refreeze_writes`: freezing a request's
    # objects costs at most their memory if they later turn into a cycle, a full collection of everything costs
    # a pause that grows without bound.
    force_after: int = 4


class HeapKeeper:
    """Decides when to refreeze (pure) and does it (`gc`). `writes` is the store's revision counter."""

    def __init__(self, settings: HeapSettings) -> None:
        self.settings = settings
        self.frozen_at = 0
        self.freezes = 0
        self.last_pause = 0.0

    def due(self, writes: int, busy: bool) -> bool:
        threshold = self.settings.refreeze_writes
        if threshold <= 0:
            return False
        pending = writes - self.frozen_at
        return pending >= threshold * (self.settings.force_after if busy else 1)

    def refreeze(self, writes: int) -> float:
        """Collect what is not frozen, freeze the rest; returns the seconds it took."""
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
        self.last_pause = time.perf_counter() - started
        self.frozen_at = writes
        self.freezes += 1
        return self.last_pause
