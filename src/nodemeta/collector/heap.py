"""Short garbage-collector pauses for a process whose heap is large and long-lived.

The collector's heap is mostly its caches: 150,000 pods and their relations, and per subscriber the rendered pods,
views and sessions. CPython's cyclic GC walks every tracked object of the oldest generation in a full collection,
and such collections free next to nothing here (what dies is freed by reference counting): measured at 150,000
pods, full collections paused the event loop for up to 3.5 s, and with 1,000 subscribers one pause of 0.5 s during
churn put the p99 event latency at 363 ms (bench/collector.py, docs/benchmarks.md).

So the long-lived objects are moved out of the collector's reach with `gc.freeze()`: once the caches have synced,
and then every `interval` seconds (sooner after a burst of allocations), after a full collection of what was
allocated since the last freeze. A full collection then walks only the objects of the last interval (the subscribers
that arrived, the objects that changed), and its pause stays short. The automatic full collections are switched off
at the same time (the young generations are still collected as usual): right after a freeze CPython would otherwise
run one every ten second-generation collections, each walking everything allocated since, dozens of times while
thousands of subscribers join. The cost: a reference cycle that was alive when frozen and becomes garbage later is
not collected. The collector's long-lived structures break their cycles when they are done (a session and its
stream, a subscription and its task), so what this keeps is bounded by what the process's libraries do.

After the first freeze, and then with at most one freeze a minute, the C allocator is asked to hand its free pages
back to the system (glibc's `malloc_trim`; skipped where the C library has none). Bursts leave many free pages
behind: thousands of initial syncs encoded and buffered at once after a restart, list pages decoded and dropped.
Without it they count in the RSS that memory limits see, though Python would reuse them.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import time
from collections.abc import Callable
from typing import NamedTuple

import structlog

__all__ = [
    "PROMOTIONS_BEFORE_FREEZE",
    "RELEASE_INTERVAL",
    "Freeze",
    "freeze_heap",
    "refreeze_periodically",
    "release_free_pages",
]

log = structlog.get_logger("collector")


# Second-generation collections before an automatic full one: never, in practice (the periodic freeze does them).
_NO_AUTOMATIC_FULL_COLLECTION = 1 << 30


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # no C library found, or one without malloc_trim (musl)
        return None
    return trim


_MALLOC_TRIM = _malloc_trim()


def release_free_pages() -> bool:
    """Return the C allocator's whole free pages to the system; False where the C library cannot."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class Freeze(NamedTuple):
    # How long the full collection took, and the release of free pages (0 when not asked). The number of frozen
    # objects is not reported: `gc.get_freeze_count()` walks every one of them (50 ms for 700,000).
    collection_seconds: float
    release_seconds: float


def freeze_heap(*, release: bool = True) -> Freeze:
    """Collect what is garbage now, then freeze every surviving object, leave full collections to the next call
    and (if `release`) release free pages."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, _NO_AUTOMATIC_FULL_COLLECTION)
    collected = time.perf_counter()
    if not release:
        return Freeze(collected - started, 0.0)
    release_free_pages()
    return Freeze(collected - started, time.perf_counter() - collected)


# Middle-generation collections since the last full one after which the heap is frozen early. Each promotes at
# most about 8,400 objects to the oldest generation (measured, CPython 3.11's default thresholds), so a freeze walks
# at most about 34,000 objects: measured 25-40 ms with 5,000 subscribers under churn, against 70-115 ms for 16.
PROMOTIONS_BEFORE_FREEZE = 4
# Free pages are released at most this often: `malloc_trim` walks all of the allocator's free lists whether or not
# there is much to return (about 10 ms on a 600,000-object test heap), and most is returned by the first release
# after a burst.
RELEASE_INTERVAL = 60.0


async def refreeze_periodically(
    interval: float,
    *,
    promotions: int = PROMOTIONS_BEFORE_FREEZE,
    check_every: float = 0.5,
    release_interval: float = RELEASE_INTERVAL,
) -> None:
    """Freeze the heap every `interval` seconds, and sooner whenever `promotions` middle-generation collections
    have moved objects to the oldest generation since the last full collection, until cancelled.

    The early freezes keep each pause short during a burst (thousands of subscribers resyncing after a restart
    allocate hundreds of thousands of long-lived objects in seconds): one freeze at the end of the interval walked
    them all at once, 0.3-1 s, long enough to show in the event latency of the live changes that followed. The
    count is CPython's own (`gc.get_count()[2]`), so checking it costs nothing."""
    last = released = time.monotonic()
    while True:
        await asyncio.sleep(check_every)
        now = time.monotonic()
        if gc.get_count()[2] < promotions and now - last < interval:
            continue
        release = now - released >= release_interval
        done = freeze_heap(release=release)
        last = time.monotonic()
        if release:
            released = last
        log.debug(
            "heap frozen",
            collection_seconds=round(done.collection_seconds, 3),
            release_seconds=round(done.release_seconds, 3),
        )
