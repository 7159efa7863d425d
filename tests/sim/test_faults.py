"""Each injected fault does what it says, over real HTTP, and is recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.resources import lookup
from tests.sim.wire import WatchReader, call, create, pod

PODS = "/api/v1/namespaces/default/pods"
POD_RES = lookup("", "v1", "pods")
assert POD_RES is not None


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    async with SimServer(SimSettings(controllers=(), seed=1, bookmark_interval=0.2)) as sim:
        yield sim


async def open_watch(api: aiohttp.ClientSession, rv: int, **params: str) -> tuple[aiohttp.ClientResponse, WatchReader]:
    response = await api.get(PODS, params={"watch": "1", "resourceVersion": str(rv), **params})
    assert response.status == 200
    return response, WatchReader(response)


async def test_dropped_watch_is_cut_not_closed(server: SimServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as api:
        response, reader = await open_watch(api, server.store.rv)
        async with response:
            await create(api, PODS, pod("a"))
            assert (await reader.next())["type"] == "ADDED"  # type: ignore[index]
            assert server.faults.drop_watches() == 1
            with pytest.raises(aiohttp.ClientPayloadError):
                await reader.rest()
    assert server.faults.kinds() == ["drop-watches"]
    assert server.faults.log[0].detail["count"] == 1


async def test_drop_a_fraction(server: SimServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as api:
        opened = [await open_watch(api, server.store.rv) for _ in range(20)]
        await asyncio.sleep(0.05)
        dropped = server.faults.drop_watches(fraction=0.5)
        assert 0 < dropped < 20
        await asyncio.sleep(0.05)
        assert sum(1 for s in server.open_watches if not s.interrupted) == 20 - dropped
        for response, _ in opened:
            response.close()


async def test_hung_watch_sends_nothing_but_stays_open(server: SimServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as api:
        response, reader = await open_watch(api, server.store.rv, allowWatchBookmarks="true")
        async with response:
            await reader.until(lambda e: e["type"] == "BOOKMARK")
            server.faults.hang_watches()
            await create(api, PODS, pod("a"))
            with pytest.raises(TimeoutError):
                await reader.next(timeout=0.8)
            assert not response.content.at_eof()


async def test_compaction_ends_watches_with_410_and_expires_old_versions(server: SimServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as api:
        start = server.store.rv
        response, reader = await open_watch(api, start)
        async with response:
            await create(api, PODS, pod("a"))
            added = await reader.next()
            assert added is not None
            floor = server.faults.compact()
            events = await reader.rest()
        assert [e["type"] for e in events] == ["ERROR"]
        status = events[0]["object"]
        assert status["code"] == 410 and status["reason"] == "Expired"
        assert (
            status["message"] == f"too old resource version: {added['object']['metadata']['resourceVersion']} ({floor})"
        )
        response, reader = await open_watch(api, start)
        async with response:
            assert (await reader.rest())[0]["object"]["code"] == 410


async def test_throttling_is_plain_text_429_with_retry_after(server: SimServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as api:
        server.faults.throttle(1.0, retry_after=3)
        async with api.get(PODS) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "3"
            assert await response.text() == "Too many requests, please try again later.\n"
        assert (await call(api, "GET", "/healthz"))[0] == 200
        server.faults.clear()
        assert (await call(api, "GET", PODS))[0] == 200


async def test_error_burst_then_recovery(server: SimServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as api:
        server.faults.burst(3, code=503)
        codes = [(await call(api, "GET", PODS))[0] for _ in range(4)]
        assert codes == [503, 503, 503, 200]
        server.faults.fail(1.0, code=500, applies=lambda r: r.method == "POST")
        status, body, _ = await call(api, "POST", PODS, pod("a"))
        assert status == 500 and body["reason"] == "InternalError"
        assert (await call(api, "GET", PODS))[0] == 200
        assert server.store.bucket(POD_RES).get("default/a") is None


async def test_slow_responses(server: SimServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as api:
        server.faults.slow(0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await call(api, "GET", PODS)
        assert loop.time() - started >= 0.3


async def test_restart_keeps_resource_versions_and_history(server: SimServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as api:
        before = await create(api, PODS, pod("a"))
        response, reader = await open_watch(api, server.store.rv)
        async with response:
            restart = asyncio.create_task(server.faults.restart(keep_watch_cache=True, downtime=0.2))
            await reader.rest()  # the old connection ends with the restart
            server.registry.create(POD_RES, "default", pod("during"))
            await restart
        after = await create(api, PODS, pod("b"))
        assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
        response, reader = await open_watch(api, int(before["metadata"]["resourceVersion"]), timeoutSeconds="1")
        async with response:
            names = [e["object"]["metadata"]["name"] for e in await reader.rest()]
        assert names == ["during", "b"]
    assert server.faults.log[-1].kind == "restart" and server.faults.log[-1].detail["keep_watch_cache"] is True


async def test_restart_losing_the_watch_cache_expires_old_versions(server: SimServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as api:
        before = await create(api, PODS, pod("a"))
        await create(api, PODS, pod("b"))
        await server.faults.restart(keep_watch_cache=False)
        response, reader = await open_watch(api, int(before["metadata"]["resourceVersion"]))
        async with response:
            events = await reader.rest()
        assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410
        _, listed, _ = await call(api, "GET", PODS)
        assert [p["metadata"]["name"] for p in listed["items"]] == ["a", "b"]


async def test_rate_faults_have_their_own_filters(server: SimServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as api:
        server.faults.throttle(1.0, applies=lambda r: r.method == "POST")
        server.faults.fail(1.0, code=403, applies=lambda r: r.method == "DELETE")
        assert (await call(api, "GET", PODS))[0] == 200
        assert (await call(api, "POST", PODS, pod("a")))[0] == 429
        status, body, _ = await call(api, "DELETE", f"{PODS}/a")
        assert status == 403 and body["reason"] == "Forbidden"


async def test_changes_during_downtime_are_not_replayable_after_losing_the_cache(server: SimServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as api:
        await create(api, PODS, pod("a"))
        at_stop = server.store.rv
        restart = asyncio.create_task(server.faults.restart(keep_watch_cache=False, downtime=0.3))
        await asyncio.sleep(0.1)
        server.registry.create(POD_RES, "default", pod("during"))
        await restart
        response, reader = await open_watch(api, at_stop)
        async with response:
            events = await reader.rest()
        assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410
