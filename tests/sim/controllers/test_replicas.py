"""The ReplicaSet, ReplicationController and Deployment controllers over real HTTP, and through kubectl."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.controllers.replicas import controller_ref, pod_info, read_pod
from nodemeta.sim.resources import lookup
from nodemeta.sim.store import DELETED, Bucket, Change, Stored
from tests.sim.wire import call, create, pod

NS = "default"
PODS = f"/api/v1/namespaces/{NS}/pods"
RCS = f"/api/v1/namespaces/{NS}/replicationcontrollers"
RSS = f"/apis/apps/v1/namespaces/{NS}/replicasets"
DEPLOYS = f"/apis/apps/v1/namespaces/{NS}/deployments"
WORKLOADS = ("deployment", "replicaset", "replicationcontroller", "scheduler", "kubelet")
HASH = re.compile(r"^[4-9bcdf]{1,10}$")
MERGE = "application/merge-patch+json"


def settings(*controllers: str) -> SimSettings:
    return SimSettings(seed=11, nodes=3, kubelet_stop_seconds=0.05, controllers=controllers)


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    async with SimServer(settings(*WORKLOADS)) as sim:
        yield sim


@pytest.fixture
async def api(server: SimServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


async def settle(server: SimServer) -> None:
    async with asyncio.timeout(10):
        await server.settle()
    assert server.manager is not None and server.manager.errors == 0, "a reconcile raised"


async def eventually(server: SimServer, check: Callable[[], Awaitable[bool]], timeout: float = 10) -> None:
    """Let the controllers work until `check()` holds (grace periods and timers run between settles)."""
    async with asyncio.timeout(timeout):
        while True:
            await server.settle()
            if await check():
                break
            await asyncio.sleep(0.05)
    assert server.manager is not None and server.manager.errors == 0, "a reconcile raised"


async def get(api: aiohttp.ClientSession, path: str) -> dict[str, Any] | None:
    status, body, _ = await call(api, "GET", path)
    if status == 404:
        return None
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def items(api: aiohttp.ClientSession, path: str, **params: Any) -> list[dict[str, Any]]:
    status, body, _ = await call(api, "GET", path, **params)
    assert status == 200, body
    return body["items"]  # type: ignore[no-any-return]


async def merge_patch(api: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, result, _ = await call(api, "PATCH", path, body, ctype=MERGE)
    assert status == 200, result
    return result  # type: ignore[no-any-return]


def template(labels: dict[str, str], image: str = "nginx:1.27") -> dict[str, Any]:
    return {
        "metadata": {"labels": labels, "annotations": {"team": "shop"}},
        "spec": {"containers": [{"name": "web", "image": image}]},
    }


def deployment(name: str, replicas: int, **spec: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": {"owner": "team-a"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template(labels), **spec},
    }


def running(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]


def controller_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


async def replica_sets(api: aiohttp.ClientSession, app: str) -> list[dict[str, Any]]:
    found = await items(api, RSS, labelSelector=f"app={app}")
    return sorted(found, key=lambda rs: int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]))


async def wait_rolled_out(server: SimServer, api: aiohttp.ClientSession, name: str, replicas: int) -> None:
    """Until the Deployment reports every replica updated and available, and exactly that many pods run."""

    async def done() -> bool:
        d = await get(api, f"{DEPLOYS}/{name}")
        assert d is not None
        status = d.get("status") or {}
        pods = running(await items(api, PODS, labelSelector=f"app={name}"))
        all_pods = await items(api, PODS, labelSelector=f"app={name}")
        return (
            status.get("observedGeneration") == d["metadata"]["generation"]
            and status.get("updatedReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas
            and status.get("availableReplicas", 0) == replicas
            and len(pods) == replicas
            and len(all_pods) == replicas
        )

    await eventually(server, done)


async def test_deployment_creates_a_hashed_replicaset_and_running_pods(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    d = await create(api, DEPLOYS, deployment("web", 3))
    await wait_rolled_out(server, api, "web", 3)

    [rs] = await replica_sets(api, "web")
    name = rs["metadata"]["name"]
    assert name.startswith("web-")
    template_hash = name.removeprefix("web-")
    assert HASH.match(template_hash), name
    assert rs["metadata"]["labels"] == {"app": "web", "pod-template-hash": template_hash}
    assert rs["metadata"]["annotations"] == {
        "owner": "team-a",
        "deployment.kubernetes.io/revision": "1",
        "deployment.kubernetes.io/desired-replicas": "3",
        "deployment.kubernetes.io/max-replicas": "4",
    }
    assert rs["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": d["metadata"]["uid"],
         "controller": True, "blockOwnerDeletion": True}
    ]  # fmt: skip
    assert rs["spec"]["selector"] == {"matchLabels": {"app": "web", "pod-template-hash": template_hash}}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", "pod-template-hash": template_hash}
    assert rs["status"] == {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
                            "observedGeneration": 1}  # fmt: skip

    pods = await items(api, PODS, labelSelector="app=web")
    assert len(running(pods)) == 3
    for p in pods:
        meta = p["metadata"]
        assert meta["generateName"] == f"{name}-"
        assert re.fullmatch(rf"{name}-[bcdfghjklmnpqrstvwxz2456789]{{5}}", meta["name"])
        assert meta["labels"] == {"app": "web", "pod-template-hash": template_hash}
        assert meta["annotations"] == {"team": "shop"}
        assert meta["ownerReferences"] == [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": rs["metadata"]["uid"],
             "controller": True, "blockOwnerDeletion": True}
        ]  # fmt: skip
        assert p["spec"]["nodeName"]

    current = await get(api, f"{DEPLOYS}/web")
    assert current is not None
    assert current["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    status = current["status"]
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
    }  # fmt: skip
    conditions = {c["type"]: c for c in status["conditions"]}
    assert [c["type"] for c in status["conditions"]] == ["Available", "Progressing"]
    assert conditions["Available"]["status"] == "True"
    assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conditions["Available"]["message"] == "Deployment has minimum availability."
    assert conditions["Progressing"]["status"] == "True"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conditions["Progressing"]["message"] == f'ReplicaSet "{name}" has successfully progressed.'
    assert set(conditions["Progressing"]) == {
        "type", "status", "lastUpdateTime", "lastTransitionTime", "reason", "message",
    }  # fmt: skip


async def test_scaling_reaches_the_current_replicaset(server: SimServer, api: aiohttp.ClientSession) -> None:
    await create(api, DEPLOYS, deployment("api", 2))
    await wait_rolled_out(server, api, "api", 2)
    await merge_patch(api, f"{DEPLOYS}/api", {"spec": {"replicas": 5}})
    await wait_rolled_out(server, api, "api", 5)
    [rs] = await replica_sets(api, "api")
    assert rs["spec"]["replicas"] == 5
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "5"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "7"

    await merge_patch(api, f"{DEPLOYS}/api", {"spec": {"replicas": 1}})
    await wait_rolled_out(server, api, "api", 1)
    [rs] = await replica_sets(api, "api")
    assert rs["spec"]["replicas"] == 1
    assert rs["status"]["replicas"] == 1


def record_rollout(server: SimServer) -> tuple[list[int], list[str]]:
    """Follow the store during a rollout: the total of the ReplicaSets' spec.replicas after each ReplicaSet write,
    and each Progressing reason the Deployment reports."""
    totals: list[int] = []
    reasons: list[str] = []
    rs_res = lookup("apps", "v1", "replicasets")
    assert rs_res is not None

    def observe(bucket: Bucket, change: Change) -> None:
        if bucket.res.plural == "replicasets":
            totals.append(sum(rs.decode()["spec"]["replicas"] for rs in server.registry.iter_objects(rs_res)))
        elif bucket.res.plural == "deployments" and change.type != DELETED:
            for condition in (change.obj.decode().get("status") or {}).get("conditions") or []:
                if condition["type"] == "Progressing" and (not reasons or reasons[-1] != condition["reason"]):
                    reasons.append(condition["reason"])

    server.registry.store.observers.append(observe)
    return totals, reasons


async def test_rollout_replaces_pods_through_a_new_revision(server: SimServer, api: aiohttp.ClientSession) -> None:
    await create(api, DEPLOYS, deployment("shop", 4))
    await wait_rolled_out(server, api, "shop", 4)
    [first] = await replica_sets(api, "shop")
    before = {p["metadata"]["name"] for p in await items(api, PODS, labelSelector="app=shop")}

    totals, reasons = record_rollout(server)
    new_template = template({"app": "shop"}, image="nginx:1.28")
    await merge_patch(api, f"{DEPLOYS}/shop", {"spec": {"template": new_template}})
    await wait_rolled_out(server, api, "shop", 4)
    # maxSurge 25% of 4 rounds up to 1: never more than 5 pods wanted at once.
    assert max(totals) == 5 and totals[-1] == 4
    # The first is what the Deployment reported when its template changed.
    assert reasons == ["NewReplicaSetAvailable", "NewReplicaSetCreated", "ReplicaSetUpdated", "NewReplicaSetAvailable"]

    old, new = await replica_sets(api, "shop")
    assert old["metadata"]["name"] == first["metadata"]["name"]
    assert old["spec"]["replicas"] == 0 and old["status"]["replicas"] == 0
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert new["spec"]["replicas"] == 4
    new_hash = new["metadata"]["labels"]["pod-template-hash"]
    assert new["metadata"]["name"] == f"shop-{new_hash}" != first["metadata"]["name"]
    pods = await items(api, PODS, labelSelector="app=shop")
    assert len(pods) == 4 and not before & {p["metadata"]["name"] for p in pods}
    for p in pods:
        assert p["spec"]["containers"][0]["image"] == "nginx:1.28"
        assert p["metadata"]["labels"]["pod-template-hash"] == new_hash
    d = await get(api, f"{DEPLOYS}/shop")
    assert d is not None
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    progressing = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "NewReplicaSetAvailable"
    assert progressing["message"] == f'ReplicaSet "{new["metadata"]["name"]}" has successfully progressed.'


async def test_recreate_and_revision_history_limit(server: SimServer, api: aiohttp.ClientSession) -> None:
    body = deployment("batch", 2, revisionHistoryLimit=1, strategy={"type": "Recreate"})
    await create(api, DEPLOYS, body)
    await wait_rolled_out(server, api, "batch", 2)
    for image in ("nginx:1.28", "nginx:1.29"):
        await merge_patch(api, f"{DEPLOYS}/batch", {"spec": {"template": template({"app": "batch"}, image)}})
        await wait_rolled_out(server, api, "batch", 2)

    async def pruned() -> bool:
        return len(await replica_sets(api, "batch")) == 2

    await eventually(server, pruned)
    old, new = await replica_sets(api, "batch")
    assert old["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert old["spec"]["replicas"] == 0
    assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert new["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.29"


async def test_a_paused_deployment_waits_for_resume(server: SimServer, api: aiohttp.ClientSession) -> None:
    await create(api, DEPLOYS, deployment("held", 2))
    await wait_rolled_out(server, api, "held", 2)
    await merge_patch(api, f"{DEPLOYS}/held", {"spec": {"paused": True}})
    await merge_patch(api, f"{DEPLOYS}/held", {"spec": {"template": template({"app": "held"}, "nginx:1.28")}})
    await settle(server)
    assert len(await replica_sets(api, "held")) == 1
    d = await get(api, f"{DEPLOYS}/held")
    assert d is not None
    progressing = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("Unknown", "DeploymentPaused")
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]

    await merge_patch(api, f"{DEPLOYS}/held", {"spec": {"paused": False}})
    await wait_rolled_out(server, api, "held", 2)
    old, new = await replica_sets(api, "held")
    assert old["spec"]["replicas"] == 0 and new["spec"]["replicas"] == 2
    d = await get(api, f"{DEPLOYS}/held")
    assert d is not None
    progressing = next(c for c in d["status"]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "NewReplicaSetAvailable")


async def test_replication_controller_keeps_its_replicas(server: SimServer, api: aiohttp.ClientSession) -> None:
    labels = {"app": "legacy"}
    spec = {"replicas": 2, "selector": labels, "template": template(labels)}
    rc = await create(api, RCS, {"metadata": {"name": "legacy"}, "spec": spec})

    async def two_running() -> bool:
        return len(running(await items(api, PODS, labelSelector="app=legacy"))) == 2

    await eventually(server, two_running)
    pods = await items(api, PODS, labelSelector="app=legacy")
    for p in pods:
        assert p["metadata"]["generateName"] == "legacy-"
        assert p["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "ReplicationController", "name": "legacy", "uid": rc["metadata"]["uid"],
             "controller": True, "blockOwnerDeletion": True}
        ]  # fmt: skip
        assert p["metadata"]["labels"] == labels
    victim = pods[0]["metadata"]["name"]
    status, body, _ = await call(api, "DELETE", f"{PODS}/{victim}")
    assert status == 200, body

    async def replaced() -> bool:
        names = {p["metadata"]["name"] for p in running(await items(api, PODS, labelSelector="app=legacy"))}
        return len(names) == 2 and victim not in names

    await eventually(server, replaced)
    current = await get(api, f"{RCS}/legacy")
    assert current is not None
    assert current["status"] == {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 2,
                                 "availableReplicas": 2, "observedGeneration": 1}  # fmt: skip


async def test_replicaset_adopts_an_orphan_and_releases_it_when_labels_change() -> None:
    async with SimServer(settings("replicaset")) as server, aiohttp.ClientSession(base_url=server.url) as api:
        await create(api, PODS, pod("stray", NS, labels={"app": "cache", "tier": "x"}))
        await create(api, PODS, pod("bystander", NS, labels={"app": "other"}))
        labels = {"app": "cache"}
        rs = await create(api, RSS, {"metadata": {"name": "cache"},
                                     "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                                              "template": template(labels)}})  # fmt: skip
        await settle(server)
        pods = {p["metadata"]["name"]: p for p in await items(api, PODS)}
        assert len(pods) == 3
        stray = pods["stray"]
        ref = controller_of(stray)
        assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "cache", "uid": rs["metadata"]["uid"],
                       "controller": True, "blockOwnerDeletion": True}  # fmt: skip
        assert controller_of(pods["bystander"]) is None

        await merge_patch(api, f"{PODS}/stray", {"metadata": {"labels": {"app": "retired"}}})
        await settle(server)
        released = await get(api, f"{PODS}/stray")
        assert released is not None and not released["metadata"].get("ownerReferences")
        owned = [p for p in await items(api, PODS, labelSelector="app=cache") if controller_of(p)]
        assert len(owned) == 2
        current = await get(api, f"{RSS}/cache")
        assert current is not None
        assert current["status"] == {"replicas": 2, "fullyLabeledReplicas": 2, "observedGeneration": 1}


async def test_min_ready_seconds_delays_availability(server: SimServer, api: aiohttp.ClientSession) -> None:
    labels = {"app": "slow"}
    spec = {"replicas": 2, "minReadySeconds": 3, "selector": {"matchLabels": labels}, "template": template(labels)}
    await create(api, RSS, {"metadata": {"name": "slow"}, "spec": spec})

    async def status() -> dict[str, Any]:
        rs = await get(api, f"{RSS}/slow")
        assert rs is not None
        return rs.get("status") or {}

    async def ready() -> bool:
        return (await status()).get("readyReplicas") == 2

    await eventually(server, ready)
    assert "availableReplicas" not in await status()

    async def available() -> bool:
        return (await status()).get("availableReplicas") == 2

    await eventually(server, available)


async def test_scale_down_prefers_unscheduled_pods() -> None:
    async with SimServer(settings("replicaset")) as server, aiohttp.ClientSession(base_url=server.url) as api:
        labels = {"app": "mix"}
        await create(api, RSS, {"metadata": {"name": "mix"},
                                "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                                         "template": template(labels)}})  # fmt: skip
        await settle(server)
        pods = await items(api, PODS)
        assert len(pods) == 3
        bound = sorted(p["metadata"]["name"] for p in pods)[:2]
        for name in bound:
            status, body, _ = await call(api, "POST", f"{PODS}/{name}/binding",
                                         {"target": {"kind": "Node", "name": "node-1"}})  # fmt: skip
            assert status == 201, body
        await merge_patch(api, f"{RSS}/mix", {"spec": {"replicas": 2}})
        await settle(server)
        assert sorted(p["metadata"]["name"] for p in await items(api, PODS)) == bound


def stored_pod(**parts: Any) -> Stored:
    res = lookup("", "v1", "pods")
    assert res is not None
    meta = {
        "name": "p",
        "namespace": NS,
        "uid": "u",
        "creationTimestamp": "2025-01-10T09:00:00Z",
        "labels": {"app": "x"},
    }
    obj: dict[str, Any] = {"metadata": meta, "spec": {"containers": []}}
    for name, value in parts.items():
        if name in ("ownerReferences", "deletionTimestamp"):
            obj["metadata"][name] = value
        else:
            obj[name] = value
    return Stored(f"{NS}/p", obj, 1, res.extract_fields)


RS_REF = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "r1", "controller": True}
OTHER_REF = {"kind": "ConfigMap", "apiVersion": "v1", "name": "c", "uid": "c1"}


@pytest.mark.parametrize(
    "pod_parts",
    [
        {},
        {"ownerReferences": [OTHER_REF, RS_REF]},
        {"ownerReferences": [OTHER_REF], "deletionTimestamp": "2025-01-10T09:01:00Z"},
        {"spec": {"nodeName": "node-1"}, "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-10T09:00:03Z"}]}},
        # Another key order, and braces inside a message: read in full rather than guessed.
        {"status": {"phase": "Running", "conditions": [
            {"message": "x}{", "status": "True", "type": "Ready", "lastTransitionTime": "2025-01-10T09:00:04Z"}]}},
        {"status": {"phase": "Pending", "conditions": [
            {"type": "Ready", "status": "False", "message": "waiting {for} it"}]}},
        {"status": {"phase": "Succeeded"}, "ownerReferences": [RS_REF]},
    ],
)  # fmt: skip
def test_reading_a_pod_from_its_encoded_body_agrees_with_a_full_decode(pod_parts: dict[str, Any]) -> None:
    stored = stored_pod(**pod_parts)
    obj = stored.decode()
    assert read_pod(stored) == (controller_ref(obj["metadata"]), pod_info(obj))


async def test_controllers_pick_up_what_was_stored_before_they_started() -> None:
    """Like the cluster generator: a Deployment written with an old ReplicaSet of its own, an orphan ReplicaSet it
    selects, and an orphan pod an RC selects, all before any controller runs."""
    server = SimServer(settings("deployment", "replicaset", "replicationcontroller"))
    registry = server.registry
    deploys, rss, rcs, pods = (lookup(g, "v1", p) for g, p in
                               (("apps", "deployments"), ("apps", "replicasets"), ("", "replicationcontrollers"),
                                ("", "pods")))  # fmt: skip
    assert deploys is not None and rss is not None and rcs is not None and pods is not None
    d = registry.create(deploys, NS, deployment("app", 2)).stored
    old_template = template({"app": "app", "pod-template-hash": "old"}, image="nginx:1.20")
    owned = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app", "uid": d.uid, "controller": True}
    for name, refs in (("app-old", [owned]), ("app-stray", [])):
        registry.create(rss, NS, {"metadata": {"name": name, "labels": {"app": "app"}, "ownerReferences": refs,
                                               "annotations": {"deployment.kubernetes.io/revision": "4"}},
                                  "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "app"}},
                                           "template": old_template}})  # fmt: skip
    registry.create(pods, NS, pod("loose", NS, labels={"app": "rc"}))
    rc_template = template({"app": "rc"})
    registry.create(rcs, NS, {"metadata": {"name": "rc"}, "spec": {"replicas": 1, "template": rc_template}})
    async with server, aiohttp.ClientSession(base_url=server.url) as api:
        await settle(server)
        sets = {rs["metadata"]["name"]: rs for rs in await items(api, RSS)}
        assert len(sets) == 3
        for rs in sets.values():
            assert controller_of(rs) is not None and controller_of(rs)["uid"] == d.uid  # type: ignore[index]
        [new] = [rs for name, rs in sets.items() if name not in ("app-old", "app-stray")]
        assert new["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "5"
        assert new["spec"]["replicas"] == 2
        loose = await get(api, f"{PODS}/loose")
        assert loose is not None and controller_of(loose) is not None
        assert controller_of(loose)["kind"] == "ReplicationController"  # type: ignore[index]
        assert len(await items(api, PODS, labelSelector="app=rc")) == 1


class Kubectl:
    """The real kubectl binary against `server`, with its own kubeconfig and HOME."""

    def __init__(self, server: SimServer, home: Path) -> None:
        binary = shutil.which("kubectl")
        if binary is None:
            pytest.fail("kubectl is not installed: the kubectl tests need it on PATH")
        self.binary = binary
        kubeconfig = server.write_kubeconfig(home / "kc")
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}

    async def run(self, *args: str, stdin: str | None = None, timeout: float = 30) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.binary, *args, env=self.env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), timeout)
        assert proc.returncode == 0, f"kubectl {' '.join(args)} exited {proc.returncode}: {err.decode()}"
        return out.decode()


MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
  namespace: default
spec:
  replicas: 3
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      containers:
      - name: x
        image: nginx:1.27
"""


@pytest.mark.kubectl
async def test_kubectl_apply_rollout_status_and_cascading_delete(tmp_path: Path) -> None:
    async with SimServer(settings(*WORKLOADS, "garbagecollector")) as server:
        kubectl = Kubectl(server, tmp_path)
        out = await kubectl.run("apply", "-f", "-", stdin=MANIFEST)
        assert "deployment.apps/x created" in out
        out = await kubectl.run("rollout", "status", "deployment/x", "--timeout=20s")
        assert 'deployment "x" successfully rolled out' in out
        assert server.manager is not None and server.manager.errors == 0

        out = await kubectl.run("apply", "-f", "-", stdin=MANIFEST.replace("nginx:1.27", "nginx:1.28"))
        assert "deployment.apps/x configured" in out
        out = await kubectl.run("rollout", "status", "deployment/x", "--timeout=20s")
        assert 'deployment "x" successfully rolled out' in out
        out = await kubectl.run("get", "replicasets", "-l", "app=x", "-o", "name")
        assert len(out.split()) == 2

        await kubectl.run("rollout", "undo", "deployment/x")
        out = await kubectl.run("rollout", "status", "deployment/x", "--timeout=20s")
        assert 'deployment "x" successfully rolled out' in out
        async with aiohttp.ClientSession(base_url=server.url) as api:
            # kubectl sends the old template back (with creationTimestamp: null): the first ReplicaSet is current
            # again, under the next revision number, and no third one is made.
            undone, current = await replica_sets(api, "x")
            assert undone["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
            assert undone["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
            assert current["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
            assert current["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
            assert current["spec"]["replicas"] == 3 and undone["spec"]["replicas"] == 0

        await kubectl.run("delete", "deployment", "x")
        async with aiohttp.ClientSession(base_url=server.url) as api:

            async def gone() -> bool:
                return not await items(api, RSS) and not await items(api, PODS, labelSelector="app=x")

            await eventually(server, gone)
