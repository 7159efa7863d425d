"""The DaemonSet and StatefulSet controllers, seen the way clients see them: over HTTP, through watches and kubectl."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.controllers import hashing
from tests.sim.wire import WatchReader, call, create

T = TypeVar("T")
NS = "default"
PODS = f"/api/v1/namespaces/{NS}/pods"
DAEMONSETS = f"/apis/apps/v1/namespaces/{NS}/daemonsets"
STATEFULSETS = f"/apis/apps/v1/namespaces/{NS}/statefulsets"
REVISIONS = f"/apis/apps/v1/namespaces/{NS}/controllerrevisions"
NODES = "/api/v1/nodes"
RUNNING = ("daemonset", "statefulset", "scheduler", "kubelet", "garbagecollector")


def settings(nodes: int = 3, controllers: tuple[str, ...] = RUNNING) -> SimSettings:
    return SimSettings(nodes=nodes, controllers=controllers, seed=11, kubelet_stop_seconds=0.05)


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    async with SimServer(settings()) as sim:
        yield sim
        assert sim.manager is not None and sim.manager.errors == 0


@pytest.fixture
async def api(server: SimServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


async def settled(server: SimServer) -> None:
    async with asyncio.timeout(10):
        await server.settle()


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 10.0) -> T:
    """Poll `check` until it returns something truthy (grace periods and readiness run on timers)."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.02)


async def get(api: aiohttp.ClientSession, path: str, **params: Any) -> Any:
    status, body, _ = await call(api, "GET", path, **params)
    assert status == 200, body
    return body


async def patch(api: aiohttp.ClientSession, path: str, body: Any) -> Any:
    status, result, _ = await call(api, "PATCH", path, body, ctype="application/merge-patch+json")
    assert status == 200, result
    return result


async def pods(api: aiohttp.ClientSession, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await get(api, PODS, labelSelector=selector))["items"]
    return items


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def template(app: str, image: str = "nginx:1.27", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": app, "image": image}], **spec},
    }


def daemonset(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": template(name, **spec)},
    }


def statefulset(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": template(name),
            **spec,
        },
    }


# -- DaemonSet ----------------------------------------------------------------------------------------------------


async def test_daemonset_runs_one_pod_per_eligible_node(server: SimServer, api: aiohttp.ClientSession) -> None:
    await patch(api, f"{NODES}/node-1", {"metadata": {"labels": {"pool": "agents"}}})
    await patch(api, f"{NODES}/node-2", {"metadata": {"labels": {"pool": "batch"}}})
    await patch(
        api, f"{NODES}/node-3",
        {"metadata": {"labels": {"pool": "agents"}},
         "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}},
    )  # fmt: skip
    ds = await create(api, DAEMONSETS, daemonset("agent", nodeSelector={"pool": "agents"}))

    async def running() -> list[dict[str, Any]] | None:
        found = await pods(api, "app=agent")
        return found if found and all(ready(p) for p in found) else None

    [pod] = await eventually(running)
    await settled(server)
    assert pod["spec"]["nodeName"] == "node-1"
    assert pod["metadata"]["generateName"] == "agent-"
    assert pod["metadata"]["name"].startswith("agent-")
    stored = await get(api, f"{DAEMONSETS}/agent")
    hash_ = hashing.compute_hash(stored["spec"]["template"])
    assert pod["metadata"]["labels"] == {
        "app": "agent",
        "controller-revision-hash": hash_,
        "pod-template-generation": "1",
    }
    [owner] = pod["metadata"]["ownerReferences"]
    assert owner == {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": ds["metadata"]["uid"],
                     "controller": True, "blockOwnerDeletion": True}  # fmt: skip
    affinity = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert affinity == {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]
    }
    tolerations = {(t["key"], t["effect"]): t for t in pod["spec"]["tolerations"]}
    assert set(tolerations) == {
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    }
    assert "tolerationSeconds" not in tolerations[("node.kubernetes.io/not-ready", "NoExecute")]

    revision = await get(api, f"{REVISIONS}/agent-{hash_}")
    assert revision["revision"] == 1
    assert revision["data"] == hashing.revision_patch(stored["spec"]["template"])
    assert revision["metadata"]["labels"]["controller-revision-hash"] == hash_
    assert revision["metadata"]["ownerReferences"][0]["uid"] == ds["metadata"]["uid"]
    status = stored["status"]
    assert (status["desiredNumberScheduled"], status["currentNumberScheduled"], status["numberReady"]) == (1, 1, 1)
    assert (status["numberAvailable"], status["updatedNumberScheduled"], status["numberMisscheduled"]) == (1, 1, 0)
    assert status["observedGeneration"] == 1


async def test_daemonset_follows_nodes_as_they_come_change_and_go(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    # A cordoned node still runs daemons: their pods tolerate node.kubernetes.io/unschedulable.
    await patch(api, f"{NODES}/node-1", {"spec": {"unschedulable": True}})
    await create(api, DAEMONSETS, daemonset("agent", hostNetwork=True))

    def placed(count: int) -> Callable[[], Awaitable[dict[str, str] | None]]:
        async def check() -> dict[str, str] | None:
            found = await pods(api, "app=agent")
            live = [p for p in found if not p["metadata"].get("deletionTimestamp") and ready(p)]
            if len(found) != count or len(live) != count:
                return None
            return {p["spec"]["nodeName"]: p["metadata"]["name"] for p in live}

        return check

    first = await eventually(placed(3))
    assert sorted(first) == ["node-1", "node-2", "node-3"]
    one = (await pods(api, "app=agent"))[0]
    assert ("node.kubernetes.io/network-unavailable", "NoSchedule") in {
        (t["key"], t["effect"]) for t in one["spec"]["tolerations"]
    }

    server.add_nodes(1, start=4)
    grown = await eventually(placed(4))
    assert grown["node-4"] not in first.values()

    # A NoExecute taint the pods do not tolerate takes the pod off its node.
    taint = {"spec": {"taints": [{"key": "maintenance", "effect": "NoExecute"}]}}
    await patch(api, f"{NODES}/node-2", taint)
    shrunk = await eventually(placed(3))
    assert "node-2" not in shrunk

    status, body, _ = await call(api, "DELETE", f"{NODES}/node-4")
    assert status == 200, body
    left = await eventually(placed(2))
    assert sorted(left) == ["node-1", "node-3"]
    await settled(server)
    status_ = (await get(api, f"{DAEMONSETS}/agent"))["status"]
    assert status_["desiredNumberScheduled"] == 2 and status_["numberAvailable"] == 2


async def test_daemonset_template_change_rolls_pods_to_the_new_hash(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, DAEMONSETS, daemonset("agent"))

    async def rolled_to(image: str) -> list[dict[str, Any]] | None:
        found = await pods(api, "app=agent")
        stored = await get(api, f"{DAEMONSETS}/agent")
        status = stored.get("status") or {}
        done = (
            len(found) == 3
            and all(ready(p) and p["spec"]["containers"][0]["image"] == image for p in found)
            and status.get("observedGeneration") == stored["metadata"]["generation"]
            and status.get("updatedNumberScheduled") == status.get("numberAvailable") == 3
        )
        return found if done else None

    before = await eventually(lambda: rolled_to("nginx:1.27"))
    old_hash = before[0]["metadata"]["labels"]["controller-revision-hash"]
    await settled(server)
    rv = (await get(api, PODS))["metadata"]["resourceVersion"]
    async with api.get(PODS, params={"watch": "1", "labelSelector": "app=agent", "resourceVersion": rv}) as response:
        watch = WatchReader(response)
        await patch(api, f"{DAEMONSETS}/agent", {"spec": {"template": {"spec": {"containers": [
            {"name": "agent", "image": "nginx:1.28"}]}}}})  # fmt: skip
        after = await eventually(lambda: rolled_to("nginx:1.28"))
        await settled(server)
        final = {p["metadata"]["uid"] for p in after}
        ready_final: set[str] = set()

        def all_final_ready(event: dict[str, Any]) -> bool:
            if event["object"]["metadata"]["uid"] in final and ready(event["object"]):
                ready_final.add(event["object"]["metadata"]["uid"])
            return ready_final == final

        seen = await watch.until(all_final_ready)
    # maxUnavailable 1: at every point of the rollout at least two of the three nodes had a Ready pod.
    serving = {p["metadata"]["uid"] for p in before}
    lowest = len(serving)
    for event in seen:
        obj = event["object"]
        if event["type"] != "DELETED" and ready(obj) and not obj["metadata"].get("deletionTimestamp"):
            serving.add(obj["metadata"]["uid"])
        else:
            serving.discard(obj["metadata"]["uid"])
        lowest = min(lowest, len(serving))
    assert lowest == 2

    new_hash = after[0]["metadata"]["labels"]["controller-revision-hash"]
    assert new_hash != old_hash
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in after} == {new_hash}
    assert {p["metadata"]["labels"]["pod-template-generation"] for p in after} == {"2"}
    assert sorted(p["spec"]["nodeName"] for p in after) == ["node-1", "node-2", "node-3"]
    assert not {p["metadata"]["uid"] for p in after} & {p["metadata"]["uid"] for p in before}
    revisions = {r["metadata"]["name"]: r["revision"] for r in (await get(api, REVISIONS))["items"]}
    assert revisions == {f"agent-{old_hash}": 1, f"agent-{new_hash}": 2}


async def test_daemonset_replaces_a_deleted_pod_and_leaves_deletion_to_the_gc(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, DAEMONSETS, daemonset("agent"))

    async def three() -> list[dict[str, Any]] | None:
        found = await pods(api, "app=agent")
        return found if len(found) == 3 and all(ready(p) for p in found) else None

    before = await eventually(three)
    victim = before[0]
    status, _, _ = await call(api, "DELETE", f"{PODS}/{victim['metadata']['name']}")
    assert status == 200

    async def replaced() -> list[dict[str, Any]] | None:
        found = await three()
        if found and victim["metadata"]["uid"] not in {p["metadata"]["uid"] for p in found}:
            return found
        return None

    after = await eventually(replaced)
    assert sorted(p["spec"]["nodeName"] for p in after) == ["node-1", "node-2", "node-3"]

    status, _, _ = await call(api, "DELETE", f"{DAEMONSETS}/agent")
    assert status == 200
    await eventually(lambda: _none_left(api))


async def _none_left(api: aiohttp.ClientSession) -> bool:
    return not await pods(api, "app=agent") and not (await get(api, REVISIONS))["items"]


async def test_restarted_controllers_rebuild_their_indexes_from_the_store(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, DAEMONSETS, daemonset("agent"))
    await create(api, STATEFULSETS, statefulset("web", 2))

    async def running(selector: str, count: int) -> list[dict[str, Any]] | None:
        found = await pods(api, selector)
        return found if len(found) == count and all(ready(p) for p in found) else None

    agents = await eventually(lambda: running("app=agent", 3))
    webs = await eventually(lambda: running("app=web", 2))
    await settled(server)
    assert server.manager is not None and server.manager.errors == 0
    await server.stop_controllers()
    # While nothing runs: a node joins, a daemon pod and web-1 disappear, the StatefulSet grows.
    server.add_nodes(1, start=4)
    for name in (agents[0]["metadata"]["name"], "web-1"):
        status, _, _ = await call(api, "DELETE", f"{PODS}/{name}", gracePeriodSeconds=0)
        assert status == 200
    await patch(api, f"{STATEFULSETS}/web", {"spec": {"replicas": 3}})
    server.start_controllers()

    agents_after = await eventually(lambda: running("app=agent", 4))
    webs_after = await eventually(lambda: running("app=web", 3))
    await settled(server)
    assert sorted(p["spec"]["nodeName"] for p in agents_after) == ["node-1", "node-2", "node-3", "node-4"]
    kept = {p["metadata"]["uid"] for p in agents[1:]}
    assert kept <= {p["metadata"]["uid"] for p in agents_after}
    assert sorted(p["metadata"]["name"] for p in webs_after) == ["web-0", "web-1", "web-2"]
    assert webs[0]["metadata"]["uid"] in {p["metadata"]["uid"] for p in webs_after}
    assert len((await get(api, REVISIONS))["items"]) == 2


# -- StatefulSet --------------------------------------------------------------------------------------------------


async def test_statefulset_creates_ordinals_in_order(server: SimServer, api: aiohttp.ClientSession) -> None:
    async with api.get(PODS, params={"watch": "1", "labelSelector": "app=web"}) as response:
        watch = WatchReader(response)
        sts = await create(api, STATEFULSETS, statefulset("web", 3))
        seen = await watch.until(lambda e: e["object"]["metadata"]["name"] == "web-2" and ready(e["object"]))
    order = [(e["type"], e["object"]["metadata"]["name"], ready(e["object"])) for e in seen]
    added = [name for kind, name, _ in order if kind == "ADDED"]
    assert added == ["web-0", "web-1", "web-2"]
    for previous, name in (("web-0", "web-1"), ("web-1", "web-2")):
        became_ready = order.index(next(o for o in order if o[1] == previous and o[2]))
        assert became_ready < order.index(("ADDED", name, False))

    await settled(server)
    web1 = await get(api, f"{PODS}/web-1")
    stored = await get(api, f"{STATEFULSETS}/web")
    data = hashing.revision_patch(stored["spec"]["template"])
    hash_ = hashing.hash_controller_revision(hashing.canonical_json(data), 0)
    revision_name = f"web-{hash_}"
    assert web1["metadata"]["labels"] == {
        "app": "web",
        "controller-revision-hash": revision_name,
        "statefulset.kubernetes.io/pod-name": "web-1",
        "apps.kubernetes.io/pod-index": "1",
    }
    assert (web1["spec"]["hostname"], web1["spec"]["subdomain"]) == ("web-1", "web")
    assert "generateName" not in web1["metadata"]
    assert web1["metadata"]["ownerReferences"][0]["uid"] == sts["metadata"]["uid"]
    revision = await get(api, f"{REVISIONS}/{revision_name}")
    assert revision["metadata"]["labels"]["controller.kubernetes.io/hash"] == hash_
    assert revision["revision"] == 1 and revision["data"] == data
    assert stored["status"] == {
        "observedGeneration": 1,
        "replicas": 3,
        "readyReplicas": 3,
        "currentReplicas": 3,
        "updatedReplicas": 3,
        "currentRevision": revision_name,
        "updateRevision": revision_name,
        "collisionCount": 0,
        "availableReplicas": 3,
    }


async def test_statefulset_scales_down_from_the_top_and_recreates_deleted_pods(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, STATEFULSETS, statefulset("web", 3))

    async def names(expected: list[str]) -> list[dict[str, Any]] | None:
        found = await pods(api, "app=web")
        ok = sorted(p["metadata"]["name"] for p in found) == expected and all(ready(p) for p in found)
        return found if ok else None

    before = await eventually(lambda: names(["web-0", "web-1", "web-2"]))
    await settled(server)
    rv = (await get(api, PODS))["metadata"]["resourceVersion"]
    async with api.get(PODS, params={"watch": "1", "labelSelector": "app=web", "resourceVersion": rv}) as response:
        watch = WatchReader(response)
        await patch(api, f"{STATEFULSETS}/web", {"spec": {"replicas": 1}})
        seen = await watch.until(lambda e: e["type"] == "DELETED" and e["object"]["metadata"]["name"] == "web-1")
    deleted = [e["object"]["metadata"]["name"] for e in seen if e["type"] == "DELETED"]
    assert deleted == ["web-2", "web-1"]
    terminating = [e["object"]["metadata"]["name"] for e in seen if e["object"]["metadata"].get("deletionTimestamp")]
    assert terminating.index("web-1") > terminating.index("web-2")
    assert not any(e["type"] == "MODIFIED" and e["object"]["metadata"]["name"] == "web-0" for e in seen)

    await patch(api, f"{STATEFULSETS}/web", {"spec": {"replicas": 2}})
    [_, old_web1] = await eventually(lambda: names(["web-0", "web-1"]))
    status, _, _ = await call(api, "DELETE", f"{PODS}/web-1")
    assert status == 200

    async def recreated() -> dict[str, Any] | None:
        found = await names(["web-0", "web-1"])
        web1 = next((p for p in found or () if p["metadata"]["name"] == "web-1"), None)
        return web1 if web1 is not None and web1["metadata"]["uid"] != old_web1["metadata"]["uid"] else None

    web1 = await eventually(recreated)
    assert web1["metadata"]["uid"] not in {p["metadata"]["uid"] for p in before}
    await settled(server)
    status_ = (await get(api, f"{STATEFULSETS}/web"))["status"]
    assert (status_["replicas"], status_["readyReplicas"], status_["availableReplicas"]) == (2, 2, 2)
    assert status_["observedGeneration"] == 3


async def test_statefulset_pod_management_policy_without_a_kubelet() -> None:
    """Nothing becomes Ready without a kubelet: OrderedReady stops at web-0, Parallel creates every ordinal."""
    async with SimServer(settings(2, ("statefulset", "scheduler"))) as server:
        async with aiohttp.ClientSession(base_url=server.url) as api:
            await create(api, STATEFULSETS, statefulset("ordered", 3))
            await create(api, STATEFULSETS, statefulset("parallel", 3, podManagementPolicy="Parallel"))
            await settled(server)
            ordered = [p["metadata"]["name"] for p in await pods(api, "app=ordered")]
            parallel = sorted(p["metadata"]["name"] for p in await pods(api, "app=parallel"))
            status = (await get(api, f"{STATEFULSETS}/parallel"))["status"]
        assert server.manager is not None and server.manager.errors == 0
    assert ordered == ["ordered-0"]
    assert parallel == ["parallel-0", "parallel-1", "parallel-2"]
    assert status["replicas"] == 3 and status["availableReplicas"] == 0 and "readyReplicas" not in status


async def test_statefulset_rolling_update_replaces_from_the_highest_ordinal(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, STATEFULSETS, statefulset("web", 3))

    async def converged() -> dict[str, Any] | None:
        stored = await get(api, f"{STATEFULSETS}/web")
        status = stored.get("status") or {}
        done = (
            status.get("observedGeneration") == stored["metadata"]["generation"]
            and status.get("readyReplicas") == 3
            and status.get("currentRevision") == status.get("updateRevision")
            and status.get("updatedReplicas") == 3
        )
        return stored if done else None

    first = await eventually(converged)
    await settled(server)
    rv = (await get(api, PODS))["metadata"]["resourceVersion"]
    async with api.get(PODS, params={"watch": "1", "labelSelector": "app=web", "resourceVersion": rv}) as response:
        watch = WatchReader(response)
        await patch(api, f"{STATEFULSETS}/web", {"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1.28"}]}}}})  # fmt: skip
        seen = await watch.until(
            lambda e: e["object"]["metadata"]["name"] == "web-0" and e["type"] == "MODIFIED"
            and e["object"]["spec"]["containers"][0]["image"] == "nginx:1.28" and ready(e["object"])
        )  # fmt: skip
    deleted = [e["object"]["metadata"]["name"] for e in seen if e["type"] == "DELETED"]
    assert deleted == ["web-2", "web-1", "web-0"]
    second = await eventually(converged)
    assert second["status"]["updateRevision"] != first["status"]["updateRevision"]
    for pod in await pods(api, "app=web"):
        assert pod["metadata"]["labels"]["controller-revision-hash"] == second["status"]["updateRevision"]
    revisions = {r["metadata"]["name"]: r["revision"] for r in (await get(api, REVISIONS))["items"]}
    assert revisions == {first["status"]["updateRevision"]: 1, second["status"]["updateRevision"]: 2}


# -- kubectl ------------------------------------------------------------------------------------------------------


class Kubectl:
    """The real kubectl binary against a server, with its own kubeconfig and HOME."""

    def __init__(self, server: SimServer, home: Path) -> None:
        binary = shutil.which("kubectl")
        if binary is None:
            pytest.fail("kubectl is not installed: the kubectl tests need it on PATH")
        self.binary = binary
        self.env = {**os.environ, "KUBECONFIG": str(server.write_kubeconfig(home / "kc")), "HOME": str(home)}

    async def run(self, *args: str, stdin: str = "", timeout: float = 30) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.binary, *args, env=self.env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
        assert proc.returncode == 0, f"kubectl {' '.join(args)} exited {proc.returncode}: {err.decode()}"
        return out.decode()


MANIFEST = """
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-exporter
spec:
  selector:
    matchLabels: {app: node-exporter}
  template:
    metadata:
      labels: {app: node-exporter}
    spec:
      hostNetwork: true
      containers:
      - name: node-exporter
        image: quay.io/prometheus/node-exporter:v1.8.2
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  replicas: 2
  serviceName: db
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: redis:7.4.1
"""


@pytest.mark.kubectl
async def test_kubectl_apply_and_rollout_status(server: SimServer, tmp_path: Path) -> None:
    kubectl = Kubectl(server, tmp_path)
    await kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    out = await kubectl.run("rollout", "status", "daemonset/node-exporter", "--timeout=20s")
    assert 'daemon set "node-exporter" successfully rolled out' in out
    out = await kubectl.run("rollout", "status", "statefulset/db", "--timeout=20s")
    assert "partitioned roll out complete" in out or "statefulset rolling update complete 2 pods" in out

    await kubectl.run(
        "set", "image", "daemonset/node-exporter", "node-exporter=quay.io/prometheus/node-exporter:v1.9.0"
    )
    out = await kubectl.run("rollout", "status", "daemonset/node-exporter", "--timeout=20s")
    assert 'daemon set "node-exporter" successfully rolled out' in out
    listed = json.loads(await kubectl.run("get", "pods", "-l", "app=node-exporter", "-o", "json"))
    images = sorted(p["spec"]["containers"][0]["image"] for p in listed["items"])
    assert images == ["quay.io/prometheus/node-exporter:v1.9.0"] * 3
    history = await kubectl.run("rollout", "history", "daemonset/node-exporter")
    assert "REVISION" in history and "2" in history
    table = await kubectl.run("get", "daemonset", "node-exporter")
    assert table.split("\n")[1].split()[:6] == ["node-exporter", "3", "3", "3", "3", "3"]
