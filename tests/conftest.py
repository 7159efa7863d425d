"""Fixtures shared by every test: a leaked-task guard and an in-process simulated API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings

# The containerd lab's fixtures and the `lab` marker's gating, for every test directory (see tests/lab/plugin.py).
pytest_plugins = ["tests.lab.plugin"]


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail any async test that leaves a task running behind it."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    if leftover:
        # Give tasks finishing their cancellation one loop turn before calling them leaked.
        await asyncio.sleep(0)
        leftover = [t for t in leftover if not t.done()]
    for task in leftover:
        task.cancel()
    assert not leftover, f"test leaked tasks: {leftover}"


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    """A simulated API server on a free loopback port, with two Ready nodes."""
    async with SimServer(SimSettings(nodes=2, seed=7, bookmark_interval=0.5, controllers=())) as server:
        yield server


@pytest.fixture
async def api(sim: SimServer) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session against the `sim` fixture's server."""
    async with aiohttp.ClientSession(base_url=sim.url) as session:
        yield session
