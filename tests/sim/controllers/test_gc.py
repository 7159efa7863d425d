"""The garbage collector over real HTTP and through kubectl: background, foreground and orphan cascades."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.controllers.gc import parse_refs
from nodemeta.sim.registry import Registry
from nodemeta.sim.resources import lookup, stored_resources
from nodemeta.sim.store import Store
from tests.sim.wire import WatchReader, call, create, pod

NS = "default"
CM = f"/api/v1/namespaces/{NS}/configmaps"
PODS = f"/api/v1/namespaces/{NS}/pods"
SETTINGS = SimSettings(seed=7, controllers=("garbagecollector", "namespace"))


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    async with SimServer(SETTINGS) as sim:
        yield sim


@pytest.fixture
async def api(server: SimServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


class Kubectl:
    """The real kubectl binary against `server`, with its own kubeconfig and HOME."""

    def __init__(self, server: SimServer, home: Path) -> None:
        binary = shutil.which("kubectl")
        if binary is None:
            pytest.fail("kubectl is not installed: the kubectl tests need it on PATH")
        self.binary = binary
        kubeconfig = server.write_kubeconfig(home / "kc")
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}

    async def run(self, *args: str, timeout: float = 20) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.binary, *args, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode == 0, f"kubectl {' '.join(args)} exited {proc.returncode}: {err.decode()}"
        return out.decode()


@pytest.fixture
def kubectl(server: SimServer, tmp_path: Path) -> Kubectl:
    return Kubectl(server, tmp_path)


def ref(owner: dict[str, Any], *, block: bool | None = None) -> dict[str, Any]:
    """An ownerReference to `owner` (an object as the API returned it)."""
    out = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    if block is not None:
        out["blockOwnerDeletion"] = block
    return out


def configmap(name: str, *owners: dict[str, Any], finalizers: tuple[str, ...] = ()) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owners:
        meta["ownerReferences"] = list(owners)
    if finalizers:
        meta["finalizers"] = list(finalizers)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": name}}


def owned_pod(name: str, *owners: dict[str, Any], **spec: Any) -> dict[str, Any]:
    obj = pod(name, NS, **spec)
    obj["metadata"]["ownerReferences"] = list(owners)
    return obj


async def settle(server: SimServer) -> None:
    async with asyncio.timeout(10):
        await server.settle()
    assert server.manager is not None and server.manager.errors == 0, "a reconcile raised"


async def get(api: aiohttp.ClientSession, path: str) -> dict[str, Any] | None:
    status, body, _ = await call(api, "GET", path)
    if status == 404:
        return None
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def delete(api: aiohttp.ClientSession, path: str, **params: Any) -> aiohttp.ClientResponse:
    status, body, response = await call(api, "DELETE", path, **params)
    assert status in (200, 202), body
    return response


async def test_background_deletion_cascades_through_every_level(server: SimServer, api: aiohttp.ClientSession) -> None:
    labels = {"app": "web"}
    template = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}
    spec = {"selector": {"matchLabels": labels}, "template": template}
    deploy = await create(
        api, f"/apis/apps/v1/namespaces/{NS}/deployments", {"metadata": {"name": "web"}, "spec": spec}
    )
    rs_body = {"metadata": {"name": "web-5c8", "ownerReferences": [ref(deploy, block=True)]}, "spec": spec}
    rs = await create(api, f"/apis/apps/v1/namespaces/{NS}/replicasets", rs_body)
    for i in range(3):
        await create(api, PODS, owned_pod(f"web-5c8-{i}", ref(rs, block=True)))
    first_pod = await get(api, f"{PODS}/web-5c8-0")
    assert first_pod is not None
    # A ConfigMap owned by a pod: a third level, across kinds.
    await create(api, CM, configmap("web-5c8-0-env", ref(first_pod)))
    await settle(server)
    assert await get(api, f"{PODS}/web-5c8-0") is not None, "owners that exist keep their dependents"

    await delete(api, f"/apis/apps/v1/namespaces/{NS}/deployments/web")
    await settle(server)
    assert await get(api, f"/apis/apps/v1/namespaces/{NS}/replicasets/web-5c8") is None
    for i in range(3):
        assert await get(api, f"{PODS}/web-5c8-{i}") is None
    assert await get(api, f"{CM}/web-5c8-0-env") is None


async def test_scheduled_dependent_pod_honours_its_grace_period(server: SimServer, api: aiohttp.ClientSession) -> None:
    owner = await create(api, CM, configmap("owner"))
    await create(api, PODS, owned_pod("bound", ref(owner), nodeName="node-1"))
    await delete(api, f"{CM}/owner")
    await settle(server)
    bound = await get(api, f"{PODS}/bound")
    assert bound is not None, "a scheduled pod waits for its kubelet"
    assert bound["metadata"]["deletionTimestamp"] and bound["metadata"]["deletionGracePeriodSeconds"] == 30


@pytest.mark.kubectl
async def test_kubectl_foreground_deletes_dependents_before_the_owner(
    server: SimServer, api: aiohttp.ClientSession, kubectl: Kubectl
) -> None:
    parent = await create(api, CM, configmap("parent"))
    blocking = await create(api, CM, configmap("blocking", ref(parent, block=True)))
    await create(api, CM, configmap("loose", ref(parent)))
    await create(api, CM, configmap("grandchild", ref(blocking, block=True)))
    _, listing, _ = await call(api, "GET", CM)
    async with api.get(CM, params={"watch": "1", "resourceVersion": listing["metadata"]["resourceVersion"]}) as resp:
        reader = WatchReader(resp)
        out = await kubectl.run("delete", "configmap", "parent", "-n", NS, "--cascade=foreground")
        assert 'configmap "parent" deleted' in out
        events = await reader.until(lambda e: e["type"] == "DELETED" and e["object"]["metadata"]["name"] == "parent")
    deleted = [e["object"]["metadata"]["name"] for e in events if e["type"] == "DELETED"]
    assert set(deleted) == {"parent", "blocking", "loose", "grandchild"}
    # The cascade is ordered down the blocking chain: the grandchild goes before its owner, which goes before its own.
    assert deleted.index("grandchild") < deleted.index("blocking") < deleted.index("parent")
    marked = [e for e in events if e["type"] == "MODIFIED" and e["object"]["metadata"]["name"] == "parent"]
    assert marked and "foregroundDeletion" in marked[0]["object"]["metadata"]["finalizers"]


async def test_foreground_owner_is_held_by_a_blocking_dependent_with_a_finalizer(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    parent = await create(api, CM, configmap("parent"))
    await create(api, CM, configmap("held", ref(parent, block=True), finalizers=("example.com/hold",)))
    await delete(api, f"{CM}/parent", propagationPolicy="Foreground")
    await settle(server)
    held_parent = await get(api, f"{CM}/parent")
    assert held_parent is not None and held_parent["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert held_parent["metadata"]["deletionTimestamp"]
    held = await get(api, f"{CM}/held")
    assert held is not None and held["metadata"]["deletionTimestamp"], "the dependent is being deleted, not gone"

    patch = {"metadata": {"finalizers": None}}
    status, body, _ = await call(api, "PATCH", f"{CM}/held", patch, ctype="application/merge-patch+json")
    assert status == 200, body
    await settle(server)
    assert await get(api, f"{CM}/held") is None
    assert await get(api, f"{CM}/parent") is None


@pytest.mark.kubectl
async def test_kubectl_orphan_keeps_dependents_without_the_reference(
    server: SimServer, api: aiohttp.ClientSession, kubectl: Kubectl
) -> None:
    parent = await create(api, CM, configmap("parent"))
    other = await create(api, CM, configmap("other"))
    await create(api, CM, configmap("only-child", ref(parent, block=True)))
    await create(api, CM, configmap("shared-child", ref(parent), ref(other)))
    out = await kubectl.run("delete", "configmap", "parent", "-n", NS, "--cascade=orphan")
    assert 'configmap "parent" deleted' in out
    await settle(server)
    assert await get(api, f"{CM}/parent") is None
    only = await get(api, f"{CM}/only-child")
    assert only is not None and "ownerReferences" not in only["metadata"]
    shared = await get(api, f"{CM}/shared-child")
    assert shared is not None and shared["metadata"]["ownerReferences"] == [ref(other)]


async def test_dependent_with_a_live_owner_only_loses_the_dangling_reference(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    first = await create(api, CM, configmap("first"))
    second = await create(api, CM, configmap("second"))
    await create(api, CM, configmap("child", ref(first), ref(second, block=True)))
    await delete(api, f"{CM}/first")
    await settle(server)
    child = await get(api, f"{CM}/child")
    assert child is not None and child["metadata"]["ownerReferences"] == [ref(second, block=True)]

    await delete(api, f"{CM}/second")
    await settle(server)
    assert await get(api, f"{CM}/child") is None


async def test_references_to_owners_that_never_existed_are_collected(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    real = await create(api, CM, configmap("real"))
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": str(uuid.uuid4())}
    await create(api, CM, configmap("haunted", ghost))
    # Right name, wrong uid: a different object than the one referenced, so the owner is absent all the same.
    impostor = {**ref(real), "uid": str(uuid.uuid4())}
    await create(api, CM, configmap("misled", impostor))
    # A kind the server does not serve cannot be checked, so the dependent is left alone.
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": str(uuid.uuid4())}
    await create(api, CM, configmap("widget-part", unknown))
    await settle(server)
    assert await get(api, f"{CM}/haunted") is None
    assert await get(api, f"{CM}/misled") is None
    assert await get(api, f"{CM}/real") is not None
    assert await get(api, f"{CM}/widget-part") is not None


async def test_adding_a_reference_to_an_absent_owner_later_is_noticed(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, CM, configmap("late"))
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": str(uuid.uuid4())}
    patch = {"metadata": {"ownerReferences": [ghost]}}
    status, body, _ = await call(api, "PATCH", f"{CM}/late", patch, ctype="application/merge-patch+json")
    assert status == 200, body
    await settle(server)
    assert await get(api, f"{CM}/late") is None


async def test_jobs_and_replication_controllers_orphan_their_pods_by_default(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}
    job = await create(
        api, f"/apis/batch/v1/namespaces/{NS}/jobs", {"metadata": {"name": "once"}, "spec": {"template": template}}
    )
    await create(api, PODS, owned_pod("once-abcde", ref(job, block=True), restartPolicy="Never"))
    rc_spec = {"selector": {"app": "old"}, "template": {**template, "metadata": {"labels": {"app": "old"}}}}
    rc = await create(
        api, f"/api/v1/namespaces/{NS}/replicationcontrollers", {"metadata": {"name": "old"}, "spec": rc_spec}
    )
    await create(api, PODS, owned_pod("old-abcde", ref(rc, block=True)))

    response = await delete(api, f"/apis/batch/v1/namespaces/{NS}/jobs/once")
    assert "child pods are preserved by default" in response.headers.get("Warning", "")
    await delete(api, f"/api/v1/namespaces/{NS}/replicationcontrollers/old")
    await settle(server)
    assert await get(api, f"/apis/batch/v1/namespaces/{NS}/jobs/once") is None
    assert await get(api, f"/api/v1/namespaces/{NS}/replicationcontrollers/old") is None
    for name in ("once-abcde", "old-abcde"):
        orphan = await get(api, f"{PODS}/{name}")
        assert orphan is not None and "ownerReferences" not in orphan["metadata"]

    again = await create(
        api, f"/apis/batch/v1/namespaces/{NS}/jobs", {"metadata": {"name": "twice"}, "spec": {"template": template}}
    )
    await create(api, PODS, owned_pod("twice-abcde", ref(again, block=True), restartPolicy="Never"))
    await delete(api, f"/apis/batch/v1/namespaces/{NS}/jobs/twice", propagationPolicy="Background")
    await settle(server)
    assert await get(api, f"{PODS}/twice-abcde") is None


async def test_collector_started_late_builds_its_graph_from_the_store() -> None:
    store = Store(stored_resources(), history_limit=1000)
    registry = Registry(store, seed=7)
    registry.bootstrap()
    cm = lookup("", "v1", "configmaps")
    assert cm is not None
    owner = registry.create(cm, NS, configmap("owner")).stored.decode()
    owner_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    registry.create(cm, NS, configmap("kept", owner_ref))
    ghost = {**owner_ref, "name": "gone", "uid": str(uuid.uuid4())}
    registry.create(cm, NS, configmap("stale", ghost))
    async with SimServer(SETTINGS, registry=registry) as server:
        # The manager queues its initial keys once its task first runs; settle() alone could return before that.
        await asyncio.sleep(0)
        await settle(server)
        assert registry.find("configmaps", NS, "stale") is None
        assert registry.find("configmaps", NS, "kept") is not None
        async with aiohttp.ClientSession(base_url=server.url) as api:
            await delete(api, f"{CM}/owner")
            await settle(server)
        assert registry.find("configmaps", NS, "kept") is None


def test_owner_references_are_parsed_leniently() -> None:
    """Entries without a uid cannot name an owner and are skipped; blockOwnerDeletion must be literally true."""
    meta = {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "uid": "u1",
                                 "blockOwnerDeletion": True}, {"kind": "X"}]}  # fmt: skip
    (only,) = parse_refs(meta)
    assert (only.uid, only.group, only.kind, only.block) == ("u1", "apps", "ReplicaSet", True)
    assert parse_refs({}) == ()
