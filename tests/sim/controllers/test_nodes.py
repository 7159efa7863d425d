"""Node lifecycle: condition taints, taint-based eviction honouring tolerationSeconds, and pods of vanished nodes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.controllers import nodes
from nodemeta.sim.controllers.nodes import desired_taints, eviction_time, set_node_ready, toleration_matches
from tests.sim.wire import WatchReader, call, create, pod

T = TypeVar("T")
PODS = "/api/v1/namespaces/default/pods"
CONTROLLERS = ("scheduler", "kubelet", "nodelifecycle")


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    async with SimServer(SimSettings(nodes=2, seed=11, kubelet_stop_seconds=0.2, controllers=CONTROLLERS)) as sim:
        yield sim


@pytest.fixture
async def api(server: SimServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


async def settled(server: SimServer) -> None:
    async with asyncio.timeout(5):
        await server.settle()


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 5.0) -> T:
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.02)


async def get(api: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    status, body, _ = await call(api, "GET", path)
    return status, body


def toleration(key: str, seconds: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"key": key, "operator": "Exists", "effect": "NoExecute"}
    if seconds is not None:
        found["tolerationSeconds"] = seconds
    return found


def on_node(name: str, node: str, *tolerations: dict[str, Any]) -> dict[str, Any]:
    return pod(name, nodeSelector={"kubernetes.io/hostname": node}, tolerations=list(tolerations))


def taints_of(node: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in node["spec"].get("taints", [])}


def ready(obj: dict[str, Any]) -> str:
    return next(c["status"] for c in obj["status"]["conditions"] if c["type"] == "Ready")


async def test_not_ready_node_is_tainted_and_pods_leave_after_their_toleration(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, PODS, on_node("short", "node-1", toleration(nodes.NOT_READY, 1)))
    await create(api, PODS, on_node("patient", "node-1"))  # the default 300 s tolerations
    await create(api, PODS, on_node("forever", "node-1", toleration(nodes.NOT_READY)))
    await create(api, PODS, on_node("elsewhere", "node-2"))
    await settled(server)

    tainted_at = time.monotonic()
    set_node_ready(server.registry, "node-1", "False")
    await settled(server)
    _, node = await get(api, "/api/v1/nodes/node-1")
    assert taints_of(node) == {(nodes.NOT_READY, "NoSchedule"), (nodes.NOT_READY, "NoExecute")}
    assert "timeAdded" in next(t for t in node["spec"]["taints"] if t["effect"] == "NoExecute")

    async def short_gone() -> bool:
        return (await get(api, f"{PODS}/short"))[0] == 404

    await eventually(short_gone, timeout=4)
    assert time.monotonic() - tainted_at >= 0.9  # tolerationSeconds 1 was honoured
    for name in ("patient", "forever", "elsewhere"):
        status, body = await get(api, f"{PODS}/{name}")
        assert status == 200 and "deletionTimestamp" not in body["metadata"], name
    _, events = await get(api, "/api/v1/namespaces/default/events?fieldSelector=reason=TaintManagerEviction")
    assert [e["message"] for e in events["items"]] == ["Marking for deletion Pod default/short"]

    set_node_ready(server.registry, "node-1", "True")
    await settled(server)
    _, node = await get(api, "/api/v1/nodes/node-1")
    assert taints_of(node) == set()


async def test_untolerated_taint_evicts_at_once_with_a_disruption_condition(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, PODS, on_node("victim", "node-2"))
    await settled(server)
    rv = (await get(api, f"{PODS}/victim"))[1]["metadata"]["resourceVersion"]
    async with api.get(PODS, params={"watch": "1", "resourceVersion": rv}) as response:
        watch = WatchReader(response)
        taint = {"spec": {"taints": [{"key": "maintenance", "effect": "NoExecute"}]}}
        await call(api, "PATCH", "/api/v1/nodes/node-2", taint, ctype="application/merge-patch+json")
        seen = await watch.until(lambda e: e["type"] == "DELETED")
    marked = seen[0]["object"]
    disruption = next(c for c in marked["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert (disruption["status"], disruption["reason"]) == ("True", "DeletionByTaintManager")
    assert "deletionTimestamp" in seen[1]["object"]["metadata"]


async def test_unreachable_node_marks_pods_not_ready_and_finishes_evictions_when_back(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, PODS, on_node("stays", "node-1", toleration(nodes.UNREACHABLE)))
    await create(api, PODS, on_node("goes", "node-1", toleration(nodes.UNREACHABLE, 0)))
    await settled(server)
    set_node_ready(server.registry, "node-1", "Unknown")
    await settled(server)
    _, node = await get(api, "/api/v1/nodes/node-1")
    assert taints_of(node) == {(nodes.UNREACHABLE, "NoSchedule"), (nodes.UNREACHABLE, "NoExecute")}
    assert {c["status"] for c in node["status"]["conditions"]} == {"Unknown"}
    _, stays = await get(api, f"{PODS}/stays")
    assert ready(stays) == "False"
    # Evicted, but its kubelet is unreachable: the pod stays Terminating, as on a real cluster.
    await asyncio.sleep(0.4)
    status, goes = await get(api, f"{PODS}/goes")
    assert status == 200 and "deletionTimestamp" in goes["metadata"]

    set_node_ready(server.registry, "node-1", "True")

    async def recovered() -> bool:
        gone = (await get(api, f"{PODS}/goes"))[0] == 404
        return gone and ready((await get(api, f"{PODS}/stays"))[1]) == "True"

    await eventually(recovered, timeout=3)


async def test_pods_of_a_deleted_node_are_collected_after_the_quarantine() -> None:
    settings = SimSettings(
        nodes=2, seed=11, kubelet_stop_seconds=0.2, controllers=CONTROLLERS, pod_gc_quarantine_seconds=0.3
    )
    async with SimServer(settings) as server, aiohttp.ClientSession(base_url=server.url) as api:
        await create(api, PODS, on_node("doomed", "node-1"))
        await create(api, PODS, on_node("safe", "node-2"))
        await create(api, PODS, pod("lost", nodeName="ghost"))
        await settled(server)
        assert (await get(api, f"{PODS}/lost"))[1]["status"]["phase"] == "Pending"
        rv = (await get(api, PODS))[1]["metadata"]["resourceVersion"]
        async with api.get(PODS, params={"watch": "1", "resourceVersion": rv}) as response:
            watch = WatchReader(response)
            await call(api, "DELETE", "/api/v1/nodes/node-1")
            seen = await watch.until(lambda e: e["type"] == "DELETED" and e["object"]["metadata"]["name"] == "doomed")
            collected = [e["object"] for e in seen if e["object"]["metadata"]["name"] == "doomed"]
        assert collected[0]["status"]["phase"] == "Failed"
        reasons = {c.get("reason") for c in collected[0]["status"]["conditions"]}
        assert "DeletionByPodGC" in reasons

        async def lost_gone() -> bool:
            return (await get(api, f"{PODS}/lost"))[0] == 404

        await eventually(lost_gone, timeout=3)
        assert (await get(api, f"{PODS}/safe"))[0] == 200


@pytest.mark.kubectl
async def test_kubectl_cordon_taints_the_node_and_uncordon_clears_it(tmp_path: Path) -> None:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail("kubectl is not installed: the kubectl tests need it on PATH")
    settings = SimSettings(nodes=2, seed=11, controllers=CONTROLLERS)
    async with SimServer(settings) as server:
        env = {**os.environ, "KUBECONFIG": str(server.write_kubeconfig(tmp_path / "kc")), "HOME": str(tmp_path)}

        async def kubectl(*args: str) -> str:
            proc = await asyncio.create_subprocess_exec(
                binary, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await asyncio.wait_for(proc.communicate(), 20)
            assert proc.returncode == 0, err.decode()
            return out.decode()

        assert "node/node-1 cordoned" in await kubectl("cordon", "node-1")
        await settled(server)
        node = json.loads(await kubectl("get", "node", "node-1", "-o", "json"))
        assert taints_of(node) == {(nodes.UNSCHEDULABLE, "NoSchedule")}
        await kubectl("run", "app", "--image=nginx:1.27", "--restart=Never")
        await settled(server)
        assert json.loads(await kubectl("get", "pod", "app", "-o", "json"))["spec"]["nodeName"] == "node-2"
        await kubectl("uncordon", "node-1")
        await settled(server)
        assert taints_of(json.loads(await kubectl("get", "node", "node-1", "-o", "json"))) == set()


def test_toleration_matching_rules() -> None:
    taint = {"key": "dedicated", "value": "infra", "effect": "NoSchedule"}
    assert toleration_matches({"key": "dedicated", "operator": "Equal", "value": "infra"}, taint)
    assert toleration_matches({"key": "dedicated", "value": "infra", "effect": "NoSchedule"}, taint)
    assert toleration_matches({"key": "dedicated", "operator": "Exists"}, taint)
    assert toleration_matches({"operator": "Exists"}, taint)
    assert not toleration_matches({"key": "dedicated", "value": "db"}, taint)
    assert not toleration_matches({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, taint)
    assert not toleration_matches({"key": "other", "operator": "Exists"}, taint)


def test_eviction_time_uses_the_shortest_toleration_and_untolerated_means_now() -> None:
    not_ready = {"key": nodes.NOT_READY, "effect": "NoExecute"}
    other = {"key": "maintenance", "effect": "NoExecute"}
    assert eviction_time([toleration(nodes.NOT_READY, 300)], [not_ready], 100.0) == 400.0
    assert eviction_time([toleration(nodes.NOT_READY)], [not_ready], 100.0) is None
    assert eviction_time([toleration(nodes.NOT_READY, 300)], [not_ready, other], 100.0) == 100.0
    both = [toleration(nodes.NOT_READY, 300), {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]
    assert eviction_time(both, [not_ready, other], 100.0) == 130.0


def test_condition_taints_keep_their_time_and_leave_other_taints_alone() -> None:
    node: dict[str, Any] = {
        "spec": {"taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}], "unschedulable": True},
        "status": {"conditions": [{"type": "Ready", "status": "False"}]},
    }
    first = desired_taints(node, 1000.0)
    assert [(t["key"], t["effect"]) for t in first] == [
        ("dedicated", "NoSchedule"), (nodes.NOT_READY, "NoSchedule"), (nodes.NOT_READY, "NoExecute"),
        (nodes.UNSCHEDULABLE, "NoSchedule"),
    ]  # fmt: skip
    node["spec"]["taints"] = first
    assert desired_taints(node, 2000.0) == first
    node["status"]["conditions"][0]["status"] = "True"
    node["spec"]["unschedulable"] = False
    assert desired_taints(node, 3000.0) == [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]
