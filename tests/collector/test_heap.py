"""The heap freezer: collects, freezes what survives, and the periodic task stops cleanly when cancelled."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from nodemeta.collector.heap import freeze_heap, refreeze_periodically


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
    frozen, seconds = freeze_heap()
    assert gc.get_stats()[2]["collected"] >= collected_before + 2
    assert frozen == gc.get_freeze_count() > 0 and seconds >= 0
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
