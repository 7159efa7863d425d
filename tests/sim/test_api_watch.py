"""Watch semantics over HTTP: initial state, history replay, bookmarks, 410, selector transitions, timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from nodemeta.sim import SimServer, SimSettings
from tests.sim.wire import WatchReader, call, create, pod

PODS = "/api/v1/namespaces/default/pods"


async def open_watch(
    api: aiohttp.ClientSession, path: str, **params: Any
) -> tuple[aiohttp.ClientResponse, WatchReader]:
    response = await api.get(path, params={"watch": "true", **{k: str(v) for k, v in params.items()}})
    assert response.status == 200, await response.text()
    return response, WatchReader(response)


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


async def test_unset_rv_replays_state_then_live_changes(api: aiohttp.ClientSession) -> None:
    await create(api, PODS, pod("a"))
    response, reader = await open_watch(api, PODS)
    async with response:
        assert response.headers["Content-Type"] == "application/json"
        first = await reader.next()
        assert first is not None and first["type"] == "ADDED" and first["object"]["kind"] == "Pod"
        await create(api, PODS, pod("b"))
        await call(
            api,
            "PATCH",
            f"{PODS}/b",
            {"metadata": {"labels": {"x": "1"}}},
            ctype="application/merge-patch+json",
        )
        await call(api, "DELETE", f"{PODS}/b")
        events = [await reader.next() for _ in range(3)]
        assert kinds(events) == [("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "b")]  # type: ignore[arg-type]
        deleted = events[2]
        assert deleted is not None and deleted["object"]["metadata"]["labels"] == {"x": "1"}
        assert int(deleted["object"]["metadata"]["resourceVersion"]) > int(
            events[1]["object"]["metadata"]["resourceVersion"]
        )  # type: ignore[index]


async def test_exact_rv_replays_history_without_synthetic_events(api: aiohttp.ClientSession) -> None:
    created = await create(api, PODS, pod("a"))
    rv = created["metadata"]["resourceVersion"]
    await create(api, PODS, pod("b"))
    await call(api, "DELETE", f"{PODS}/a")
    response, reader = await open_watch(api, PODS, resourceVersion=rv, timeoutSeconds=1)
    async with response:
        events = await reader.rest()
    assert kinds(events) == [("ADDED", "b"), ("DELETED", "a")]


async def test_compacted_rv_gives_in_stream_410(sim: SimServer, api: aiohttp.ClientSession) -> None:
    created = await create(api, PODS, pod("a"))
    await create(api, PODS, pod("b"))
    floor = sim.store.compact()
    response, reader = await open_watch(api, PODS, resourceVersion=created["metadata"]["resourceVersion"])
    async with response:
        events = await reader.rest()
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert status["code"] == 410 and status["reason"] == "Expired" and status["kind"] == "Status"
    assert status["message"] == f"too old resource version: {created['metadata']['resourceVersion']} ({floor})"


async def test_selector_transitions_become_added_and_deleted(api: aiohttp.ClientSession) -> None:
    await create(api, PODS, pod("a", labels={"app": "web"}))
    response, reader = await open_watch(
        api, "/api/v1/pods", labelSelector="app=web", fieldSelector="spec.nodeName=node-1"
    )
    async with response:
        await call(
            api,
            "POST",
            f"{PODS}/a/binding",
            {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": "a"},
                "target": {"kind": "Node", "name": "node-1"},
            },
        )
        added = await reader.next()
        assert added is not None and added["type"] == "ADDED" and added["object"]["spec"]["nodeName"] == "node-1"
        await call(
            api,
            "PATCH",
            f"{PODS}/a",
            {"metadata": {"labels": {"app": "db"}}},
            ctype="application/merge-patch+json",
        )
        left = await reader.next()
        assert left is not None and left["type"] == "DELETED"
        # The DELETED event carries the previous content at the new revision.
        assert left["object"]["metadata"]["labels"] == {"app": "web"}
        assert int(left["object"]["metadata"]["resourceVersion"]) > int(added["object"]["metadata"]["resourceVersion"])


async def test_no_op_write_makes_no_event(api: aiohttp.ClientSession) -> None:
    created = await create(api, PODS, pod("a", labels={"k": "v"}))
    response, reader = await open_watch(
        api, PODS, resourceVersion=created["metadata"]["resourceVersion"], timeoutSeconds=1
    )
    async with response:
        status, body, _ = await call(
            api,
            "PATCH",
            f"{PODS}/a",
            {"metadata": {"labels": {"k": "v"}}},
            ctype="application/merge-patch+json",
        )
        assert status == 200 and body["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
        assert await reader.rest() == []


async def test_bookmarks_periodic_and_resumable(sim: SimServer, api: aiohttp.ClientSession) -> None:
    created = await create(api, PODS, pod("a"))
    response, reader = await open_watch(
        api,
        PODS,
        resourceVersion=created["metadata"]["resourceVersion"],
        allowWatchBookmarks="true",
        timeoutSeconds=3,
    )
    async with response:
        await create(api, PODS, pod("b"))
        events = await reader.until(lambda e: e["type"] == "BOOKMARK")
    assert kinds(events)[0] == ("ADDED", "b")
    bookmark = events[-1]["object"]
    assert bookmark["kind"] == "Pod" and bookmark["apiVersion"] == "v1"
    assert int(bookmark["metadata"]["resourceVersion"]) >= int(events[0]["object"]["metadata"]["resourceVersion"])
    # Resuming from the bookmark's revision misses nothing and repeats nothing.
    await create(api, PODS, pod("c"))
    response, reader = await open_watch(
        api, PODS, resourceVersion=bookmark["metadata"]["resourceVersion"], timeoutSeconds=1
    )
    async with response:
        assert kinds(await reader.rest()) == [("ADDED", "c")]


async def test_no_bookmarks_unless_asked(api: aiohttp.ClientSession) -> None:
    response, reader = await open_watch(api, PODS, resourceVersion="1", timeoutSeconds=2)
    async with response:
        assert all(e["type"] != "BOOKMARK" for e in await reader.rest())


async def test_timeout_seconds_ends_the_stream_cleanly(api: aiohttp.ClientSession) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    response, reader = await open_watch(api, PODS, timeoutSeconds=1)
    async with response:
        assert await reader.rest() == []
    assert 0.9 <= loop.time() - started < 3


async def test_send_initial_events_ends_with_annotated_bookmark(api: aiohttp.ClientSession) -> None:
    await create(api, PODS, pod("a"))
    await create(api, PODS, pod("b"))
    response, reader = await open_watch(
        api, PODS, sendInitialEvents="true", resourceVersionMatch="NotOlderThan", allowWatchBookmarks="true"
    )
    async with response:
        events = await reader.until(lambda e: e["type"] == "BOOKMARK")
    assert kinds(events[:2]) == [("ADDED", "a"), ("ADDED", "b")]
    assert events[2]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_send_initial_events_requires_not_older_than(api: aiohttp.ClientSession) -> None:
    status, body, _ = await call(api, "GET", PODS, watch="true", sendInitialEvents="true")
    assert status == 422
    assert "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan" in body["message"]


async def test_named_watch_and_conflicting_name_selector(api: aiohttp.ClientSession) -> None:
    await create(api, PODS, pod("a"))
    await create(api, PODS, pod("b"))
    response, reader = await open_watch(api, f"{PODS}/a", timeoutSeconds=1)
    async with response:
        assert kinds(await reader.rest()) == [("ADDED", "a")]
    status, body, _ = await call(api, "GET", f"{PODS}/a", watch="1", fieldSelector="metadata.name=b")
    assert status == 400 and body["message"] == "fieldSelector metadata.name doesn't match requested name"


async def test_legacy_watch_path(api: aiohttp.ClientSession) -> None:
    await create(api, PODS, pod("a"))
    async with api.get("/api/v1/watch/namespaces/default/pods", params={"timeoutSeconds": "1"}) as response:
        assert kinds(await WatchReader(response).rest()) == [("ADDED", "a")]


async def test_metadata_only_watch(api: aiohttp.ClientSession) -> None:
    await create(api, PODS, pod("a"))
    accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
    async with api.get(PODS, params={"watch": "1", "timeoutSeconds": "1"}, headers={"Accept": accept}) as response:
        events = await WatchReader(response).rest()
    assert events[0]["object"]["kind"] == "PartialObjectMetadata"
    assert "spec" not in events[0]["object"]


async def test_slow_watcher_is_ended_and_others_continue() -> None:
    async with (
        SimServer(SimSettings(watch_queue_limit=5, controllers=())) as sim,
        aiohttp.ClientSession(base_url=sim.url) as api,
    ):
        response, reader = await open_watch(api, PODS, resourceVersion=str(sim.store.rv))
        async with response:
            # Fill the queue synchronously, faster than any writer can drain it.
            from nodemeta.sim.resources import lookup

            res = lookup("", "v1", "pods")
            assert res is not None
            for i in range(20):
                sim.registry.create(res, "default", pod(f"burst{i}"))
            events = await reader.rest()
        assert len(events) <= 5
        assert sim.store.bucket(res).watcher_count() == 0


async def test_many_watchers_share_encoded_events(sim: SimServer, api: aiohttp.ClientSession) -> None:
    rv = str(sim.store.rv)
    opened = [await open_watch(api, PODS, resourceVersion=rv) for _ in range(20)]
    await create(api, PODS, pod("shared"))
    lines = []
    for response, reader in opened:
        event = await reader.next()
        assert event is not None and event["object"]["metadata"]["name"] == "shared"
        lines.append(event)
        response.close()
    assert all(line == lines[0] for line in lines)
