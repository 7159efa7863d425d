"""The heap freezer: collects, freezes what survives, and the periodic task stops cleanly when cancelled."""

from __future__ import annotations

import asyncio
import gc
import os
import platform
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodemeta.collector.heap import freeze_heap, refreeze_periodically, release_free_pages


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_garbage_is_collected_and_survivors_are_frozen() -> None:
    gc.unfreeze()
    garbage = Node()
    garbage.other = Node()
    garbage.other.other = garbage  # a cycle only the cyclic GC frees
    alive = Node()
    thresholds = gc.get_threshold()
    collected_before = gc.get_stats()[2]["collected"]
    del garbage
    collecting, releasing = freeze_heap()
    assert gc.get_stats()[2]["collected"] >= collected_before + 2
    assert gc.get_freeze_count() > 0 and collecting >= 0 and releasing >= 0
    assert freeze_heap(release=False).release_seconds == 0
    assert gc.get_threshold()[:2] == thresholds[:2] and gc.get_threshold()[2] > 1_000_000  # full ones: ours only
    assert not gc.is_tracked(alive) or all(alive not in gc.get_objects(generation) for generation in range(3))


async def frozen_soon() -> bool:
    for _ in range(1000):
        if gc.get_freeze_count():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_refreezes_until_cancelled() -> None:
    gc.unfreeze()
    task = asyncio.create_task(refreeze_periodically(0.01))
    assert await frozen_soon()
    gc.unfreeze()
    assert await frozen_soon()  # it keeps freezing
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def resident_mib() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20


def test_free_pages_go_back_to_the_system() -> None:
    """Memory Python freed stays resident until the allocator is asked to return it (not at the heap's top)."""
    assert platform.libc_ver()[0] == "glibc", "this test's machine runs glibc; elsewhere the release is skipped"
    blocks = [bytearray(4000) for _ in range(50_000)]  # ~200 MB of malloc'd blocks, below the mmap threshold
    keep = bytearray(4000)  # allocated after them: the heap cannot shrink from its top
    del blocks
    freed = resident_mib()
    assert release_free_pages()
    assert resident_mib() < freed - 100
    assert len(keep) == 4000


async def test_a_burst_of_long_lived_objects_is_frozen_before_the_interval() -> None:
    gc.unfreeze()
    freeze_heap()  # a full collection: the promotion count starts at zero
    task = asyncio.create_task(refreeze_periodically(3600.0, promotions=4, check_every=0.01))
    try:
        frozen = gc.get_freeze_count()
        burst = [[i] for i in range(100_000)]  # tracked containers that survive: promoted generation by generation
        assert gc.get_count()[2] >= 4
        for _ in range(500):
            if gc.get_freeze_count() >= frozen + len(burst):
                break
            await asyncio.sleep(0.01)
        assert gc.get_freeze_count() >= frozen + len(burst)
        assert gc.get_count()[2] < 4
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
