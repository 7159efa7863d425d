"""Informers against the simulated API server over HTTP: lists, watches, and recovery from every injected fault.

The server's own store is the ground truth: after each scenario the informer cache must hold exactly the keys and
resourceVersions the server holds, and listeners must have been told exactly the changes in between.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from nodemeta.kube import (
    PODS,
    REPLICASETS,
    ApiClient,
    BackoffSettings,
    Informer,
    PartialObjectMetadata,
    Pod,
    pods_on_node,
)
from nodemeta.sim import SimServer
from tests.kube.cluster import RS_RES, Cluster, Recorder, cached, eventually, is_watch, running
from tests.kube.conftest import FAST


def pod_informer(client: ApiClient, **settings: Any) -> tuple[Informer[Pod], Recorder]:
    informer = Informer(client, PODS, settings=dataclasses.replace(FAST, **settings))
    recorder = Recorder(informer.store)
    informer.add_listener(recorder)
    return informer, recorder


async def test_initial_list_is_paginated_and_complete(client: ApiClient, cluster: Cluster) -> None:
    cluster.namespace("other")
    for i in range(13):
        cluster.pod(f"p{i:02d}")
    for i in range(10):
        cluster.pod(f"q{i:02d}", "other")
    informer, recorder = pod_informer(client, page_size=5)
    async with running(informer):
        assert cached(informer.store) == cluster.truth()
        assert informer.stats.list_pages == 5  # 23 pods in pages of 5
        assert informer.stats.lists == 1
        assert sorted(recorder.of("add")) == sorted(cluster.truth())
        assert recorder.synced == 1
        pod = informer.store.get_by_name("default", "p00")
        assert pod is not None
        assert pod.metadata.uid
        assert (pod.metadata.namespace, pod.metadata.name) == ("default", "p00")


async def test_watch_events_reach_store_and_listeners_in_order(client: ApiClient, cluster: Cluster) -> None:
    informer, recorder = pod_informer(client)
    async with running(informer):
        cluster.pod("a")
        cluster.pod("b")
        cluster.relabel("a", {"app": "web"})
        cluster.delete("b")
        cluster.pod("b")
        await eventually(lambda: len(recorder.events) == 5)
        assert recorder.events == [
            ("add", "default/a"),
            ("add", "default/b"),
            ("update", "default/a"),
            ("delete", "default/b"),
            ("add", "default/b"),
        ]
        assert recorder.tombstones == []
        assert cached(informer.store) == cluster.truth()
        pod = informer.store.get("default/a")
        assert pod is not None
        assert pod.metadata.labels == {"app": "web"}
        assert informer.stats.events["ADDED"] == 3
        assert informer.stats.events["DELETED"] == 1


async def test_bookmarks_advance_the_resource_version(client: ApiClient, cluster: Cluster, kube_sim: SimServer) -> None:
    informer, recorder = pod_informer(client)
    async with running(informer):
        before = informer.stats.last_resource_version
        cluster.namespace("elsewhere")  # bumps the global resourceVersion without any pod event
        await eventually(lambda: informer.stats.last_resource_version == str(kube_sim.store.rv))
        assert int(informer.stats.last_resource_version) > int(before)
        assert informer.stats.events["BOOKMARK"] >= 1
        assert recorder.events == []


async def test_clean_timeout_rewatches_without_relisting(client: ApiClient, cluster: Cluster) -> None:
    # timeoutSeconds is drawn from [1, 2) and rounded down: every watch lasts one second.
    informer, recorder = pod_informer(client, watch_timeout_min=1, watch_timeout_max=2)
    async with running(informer):
        cluster.pod("a")
        await eventually(lambda: informer.stats.watch_restarts["timeout"] >= 1, timeout=4)
        cluster.pod("b")
        await eventually(lambda: informer.stats.watch_restarts["timeout"] >= 2, timeout=4)
        assert informer.stats.lists == 1
        assert informer.stats.watches >= 2
        assert recorder.events == [("add", "default/a"), ("add", "default/b")]
        assert cached(informer.store) == cluster.truth()


async def test_dropped_watch_resumes_from_last_version_without_missing_events(
    client: ApiClient, cluster: Cluster, kube_sim: SimServer
) -> None:
    informer, recorder = pod_informer(client)
    async with running(informer):
        cluster.pod("a")
        await eventually(lambda: "default/a" in informer.store)
        assert kube_sim.faults.drop_watches() == 1
        # Written while the connection is down: the re-watch must replay them from history.
        cluster.pod("b")
        cluster.delete("a")
        await eventually(lambda: cached(informer.store) == cluster.truth())
        assert informer.stats.watch_restarts["dropped"] == 1
        assert informer.stats.lists == 1
        assert recorder.events == [("add", "default/a"), ("add", "default/b"), ("delete", "default/a")]
        assert recorder.tombstones == []


async def test_compaction_relists_with_tombstones_for_exactly_the_vanished_keys(
    client: ApiClient, cluster: Cluster, kube_sim: SimServer
) -> None:
    for name in ("a", "b", "c", "d"):
        cluster.pod(name)
    informer, recorder = pod_informer(client)
    async with running(informer):
        recorder.events.clear()
        # No await between these lines: the informer cannot see any of the changes through its watch.
        kube_sim.faults.drop_watches()
        cluster.delete("b")
        cluster.delete("c")
        cluster.relabel("d", {"changed": "yes"})
        cluster.pod("e")
        kube_sim.faults.compact()
        await eventually(lambda: informer.stats.relists == 1)
        assert cached(informer.store) == cluster.truth()
        assert sorted(recorder.tombstones) == ["default/b", "default/c"]
        assert sorted(recorder.events) == [
            ("add", "default/e"),
            ("delete", "default/b"),
            ("delete", "default/c"),
            ("update", "default/d"),
        ]
        assert informer.stats.watch_restarts["expired"] == 1
        assert recorder.synced == 1  # a relist is not a first sync


async def test_in_stream_410_relists_and_keeps_unchanged_objects_quiet(
    client: ApiClient, cluster: Cluster, kube_sim: SimServer
) -> None:
    cluster.pod("a")
    informer, recorder = pod_informer(client)
    async with running(informer):
        recorder.events.clear()
        await eventually(lambda: kube_sim.open_watches != set())
        kube_sim.faults.compact()  # the open watch ends with an ERROR 410 event
        await eventually(lambda: informer.stats.relists == 1)
        assert informer.stats.events["ERROR"] == 1
        assert recorder.events == []
        cluster.pod("b")
        await eventually(lambda: "default/b" in informer.store)


async def test_throttled_watch_honours_retry_after_and_converges(
    client: ApiClient, cluster: Cluster, kube_sim: SimServer
) -> None:
    # Retry-After is honoured up to the backoff maximum, so allow 2 s here.
    informer, _ = pod_informer(client, backoff=BackoffSettings(initial=0.05, maximum=2.0, reset_after=5.0))
    throttled: list[float] = []

    def watch_requests(request: Any) -> bool:
        if is_watch(request):
            throttled.append(asyncio.get_running_loop().time())
            return True
        return False

    async with running(informer):
        kube_sim.faults.throttle(1.0, retry_after=1, applies=watch_requests)
        kube_sim.faults.drop_watches()
        cluster.pod("a")
        await eventually(lambda: len(throttled) >= 2, timeout=4)
        kube_sim.faults.clear()
        await eventually(lambda: cached(informer.store) == cluster.truth(), timeout=4)
        # Retry-After (1 s) wins over the 50 ms backoff: no hammering while throttled.
        assert throttled[1] - throttled[0] >= 0.9
        assert informer.stats.watch_restarts["throttled"] >= 2
        assert informer.stats.lists == 1


async def test_burst_of_server_errors_on_watch_backs_off_and_converges(
    client: ApiClient, cluster: Cluster, kube_sim: SimServer
) -> None:
    informer, recorder = pod_informer(client)
    async with running(informer):
        kube_sim.faults.burst(3, 503, applies=is_watch)
        kube_sim.faults.drop_watches()
        cluster.pod("a")
        await eventually(lambda: cached(informer.store) == cluster.truth())
        assert informer.stats.watch_restarts["server-error"] == 3
        assert informer.stats.lists == 1
        assert recorder.events == [("add", "default/a")]


async def test_hung_watch_is_ended_by_the_inactivity_watchdog(
    client: ApiClient, cluster: Cluster, kube_sim: SimServer
) -> None:
    # Bookmarks come every 0.2 s, so 0.6 s of silence can only be a hung connection.
    informer, recorder = pod_informer(client, inactivity_timeout=0.6)
    async with running(informer):
        await eventually(lambda: kube_sim.open_watches != set())
        assert kube_sim.faults.hang_watches() == 1
        cluster.pod("a")
        await eventually(lambda: "default/a" in informer.store, timeout=3)
        assert informer.stats.watch_restarts["stalled"] == 1
        assert informer.stats.lists == 1
        assert recorder.events == [("add", "default/a")]


async def test_server_restart_keeping_its_watch_cache_needs_no_relist(
    client: ApiClient, cluster: Cluster, kube_sim: SimServer
) -> None:
    cluster.pod("a")
    informer, recorder = pod_informer(client)
    async with running(informer):
        recorder.events.clear()
        await eventually(lambda: kube_sim.open_watches != set())
        restart = asyncio.create_task(kube_sim.faults.restart(keep_watch_cache=True, downtime=0.3))
        await asyncio.sleep(0.1)
        cluster.pod("b")  # written while the server is not listening
        cluster.delete("a")
        await restart
        await eventually(lambda: cached(informer.store) == cluster.truth(), timeout=4)
        assert informer.stats.lists == 1
        assert recorder.events == [("add", "default/b"), ("delete", "default/a")]


async def test_server_restart_losing_its_watch_cache_relists(
    client: ApiClient, cluster: Cluster, kube_sim: SimServer
) -> None:
    cluster.pod("a")
    informer, recorder = pod_informer(client)
    async with running(informer):
        await eventually(lambda: kube_sim.open_watches != set())
        # Silence the watch, then change things it will never deliver: the restart loses that history.
        kube_sim.faults.hang_watches()
        cluster.delete("a")
        cluster.namespace("bump")
        restart = asyncio.create_task(kube_sim.faults.restart(keep_watch_cache=False, downtime=0.3))
        await asyncio.sleep(0.1)
        cluster.pod("b")
        await restart
        await eventually(lambda: cached(informer.store) == cluster.truth(), timeout=4)
        assert informer.stats.relists == 1
        assert recorder.tombstones == ["default/a"]


async def test_node_filtered_pod_informer_sees_its_node_only(client: ApiClient, cluster: Cluster) -> None:
    cluster.pod("mine", node="node-1")
    cluster.pod("theirs", node="node-2")
    cluster.pod("pending")
    cluster.pod("moving", node="node-1")
    informer = Informer(client, pods_on_node("node-1"), settings=FAST)
    recorder = Recorder(informer.store)
    informer.add_listener(recorder)
    async with running(informer):
        assert sorted(informer.store.keys()) == ["default/mine", "default/moving"]
        recorder.events.clear()
        cluster.bind("pending", "node-1")  # scheduled here: enters the selection
        cluster.delete("moving")  # moved away: deleted here, recreated on another node
        cluster.pod("moving", node="node-2")
        cluster.delete("theirs")
        await eventually(lambda: len(recorder.events) == 2)
        assert recorder.events == [("add", "default/pending"), ("delete", "default/moving")]

        def on_node_1(obj: dict[str, Any]) -> bool:
            return bool(obj["spec"].get("nodeName") == "node-1")

        assert cached(informer.store) == cluster.truth(keep=on_node_1)


async def test_label_selected_informer_sees_objects_leave_and_return(client: ApiClient, cluster: Cluster) -> None:
    cluster.pod("a", labels={"app": "web"})
    cluster.pod("b", labels={"app": "db"})
    informer = Informer(client, PODS.selecting(labels="app=web"), settings=FAST)
    recorder = Recorder(informer.store)
    informer.add_listener(recorder)
    async with running(informer):
        recorder.events.clear()
        cluster.relabel("a", {"app": "gone"})
        cluster.relabel("b", {"app": "web"})
        cluster.relabel("a", {"app": "web"})
        await eventually(lambda: len(recorder.events) == 3)
        assert recorder.events == [("delete", "default/a"), ("add", "default/b"), ("add", "default/a")]
        assert sorted(informer.store.keys()) == ["default/a", "default/b"]


async def test_metadata_only_replicaset_informer(client: ApiClient, cluster: Cluster) -> None:
    cluster.replicaset("web", owner_uid="d-1")
    informer = Informer(client, REPLICASETS, settings=FAST)
    recorder = Recorder(informer.store)
    informer.add_listener(recorder)
    async with running(informer):
        rs = informer.store.get("default/web")
        assert isinstance(rs, PartialObjectMetadata)
        assert rs.metadata.labels == {"app": "web"}
        ref = rs.metadata.controller_ref()
        assert ref is not None
        assert (ref.kind, ref.uid) == ("Deployment", "d-1")
        cluster.replicaset("api")
        cluster.delete("web", res=RS_RES)
        await eventually(lambda: sorted(informer.store.keys()) == ["default/api"])
        assert recorder.events == [("add", "default/web"), ("add", "default/api"), ("delete", "default/web")]
        assert cached(informer.store) == cluster.truth(RS_RES)


async def test_expired_continue_token_restarts_the_list(
    client: ApiClient, cluster: Cluster, kube_sim: SimServer
) -> None:
    for i in range(6):
        cluster.pod(f"p{i}")
    expired_once: list[str] = []

    def expire_first_continuation(request: Any) -> bool:
        # Runs as the second page's request arrives: a write plus a compaction make its continue token too old.
        if request.query.get("continue") and not expired_once:
            expired_once.append(request.query["continue"])
            cluster.pod("late")
            kube_sim.faults.compact()
        return False

    # The filter never selects a request (nothing is throttled); it only observes them to act at the right moment.
    kube_sim.faults.throttle(1.0, applies=expire_first_continuation)
    informer, recorder = pod_informer(client, page_size=2)
    async with running(informer):
        assert expired_once
        assert informer.stats.list_restarts == 1
        assert informer.stats.lists == 1
        assert informer.stats.list_pages == 1 + 4  # the lost first page, then 7 pods in pages of 2
        assert cached(informer.store) == cluster.truth()
        assert sorted(recorder.of("add")) == sorted(cluster.truth())


async def test_other_watch_errors_relist_not_older_than_the_cache(
    client: ApiClient, cluster: Cluster, kube_sim: SimServer
) -> None:
    lists: list[dict[str, str]] = []

    def forbid_watches(request: Any) -> bool:
        if is_watch(request):
            return True
        lists.append(dict(request.query))
        return False

    cluster.pod("a")
    informer, _ = pod_informer(client)
    async with running(informer):
        seen = informer.stats.last_resource_version
        kube_sim.faults.fail(1.0, code=403, applies=forbid_watches)
        kube_sim.faults.drop_watches()
        await eventually(lambda: informer.stats.relists >= 1)
        kube_sim.faults.clear()
        cluster.pod("b")
        await eventually(lambda: cached(informer.store) == cluster.truth())
        assert informer.stats.watch_restarts["error"] >= 1
        assert lists[0]["resourceVersionMatch"] == "NotOlderThan"
        assert int(lists[0]["resourceVersion"]) >= int(seen)
