"""The writer against the simulator over HTTP: gets, creates, the three patch types, read-modify-write on 409, and
deletes with uid/resourceVersion preconditions. Ground truth is read from the simulator's registry."""

from __future__ import annotations

from typing import Any

import pytest

from nodemeta.kube import (
    AlreadyExists,
    ApiClient,
    Conflict,
    Invalid,
    NotFound,
    ObjectPath,
    PatchType,
    Writer,
    WriterSettings,
    node_path,
    pod_path,
)
from nodemeta.sim import SimServer
from tests.kube.cluster import POD_RES, Cluster, resource

NODE_RES = resource("", "nodes")


@pytest.fixture
def writer(client: ApiClient) -> Writer:
    return Writer(client)


def stored(sim: SimServer, res: Any, name: str, ns: str = "") -> dict[str, Any]:
    obj: dict[str, Any] = sim.registry.get(res, ns, name).decode()
    return obj


async def test_get_create_and_not_found(writer: Writer, kube_sim: SimServer) -> None:
    node = await writer.get(node_path("node-1"))
    assert node["metadata"]["name"] == "node-1"
    assert node["metadata"]["uid"] == stored(kube_sim, NODE_RES, "node-1")["metadata"]["uid"]
    body = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    created = await writer.create(pod_path("default", "p"), body)
    assert created["metadata"]["uid"] == stored(kube_sim, POD_RES, "p", "default")["metadata"]["uid"]
    with pytest.raises(AlreadyExists) as exists:
        await writer.create(pod_path("default", ""), body)
    assert exists.value.status == 409 and exists.value.reason == "AlreadyExists"
    with pytest.raises(NotFound):
        await writer.get(pod_path("default", "missing"))
    with pytest.raises(ValueError):
        _ = ObjectPath("/api/v1", "pods", namespace="default").path


async def test_three_patch_types(writer: Writer, kube_sim: SimServer, cluster: Cluster) -> None:
    cluster.pod("web", labels={"app": "web", "tier": "front"})
    ref = pod_path("default", "web")
    await writer.patch(ref, {"metadata": {"labels": {"tier": None, "new": "1"}}}, PatchType.MERGE)
    assert stored(kube_sim, POD_RES, "web", "default")["metadata"]["labels"] == {"app": "web", "new": "1"}
    await writer.patch(ref, {"metadata": {"labels": {"smp": "yes"}}}, PatchType.STRATEGIC)
    assert stored(kube_sim, POD_RES, "web", "default")["metadata"]["labels"]["smp"] == "yes"
    rv = stored(kube_sim, POD_RES, "web", "default")["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/metadata/labels/json", "value": "patch"},
    ]
    await writer.patch(ref, ops, PatchType.JSON)
    assert stored(kube_sim, POD_RES, "web", "default")["metadata"]["labels"]["json"] == "patch"
    # The same test operation is stale now: the server refuses the whole patch.
    with pytest.raises(Invalid):
        await writer.patch(ref, ops, PatchType.JSON)
    with pytest.raises(ValueError):
        await writer.patch(ref, {"op": "add"}, PatchType.JSON)


async def test_merge_patch_with_stale_resource_version_is_a_conflict(writer: Writer, cluster: Cluster) -> None:
    first = cluster.pod("web")
    cluster.relabel("web", {"x": "1"})
    with pytest.raises(Conflict) as err:
        await writer.patch(pod_path("default", "web"), {"metadata": {"resourceVersion": first, "labels": {"y": "2"}}})
    assert not err.value.precondition_failed
    assert "the object has been modified" in err.value.message


async def test_modify_retries_on_conflict_and_keeps_the_other_writers_change(
    writer: Writer, kube_sim: SimServer
) -> None:
    """Another writer changes the node between our read and our write: 409, read again, both changes survive."""
    calls = 0

    def add_taint(node: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal calls
        calls += 1
        taints = list((node.get("spec") or {}).get("taints") or [])
        if any(t["key"] == "ours" for t in taints):
            return None
        if calls == 1:
            # The concurrent writer: straight into the registry, after our GET, before our PATCH.
            kube_sim.registry.patch(
                NODE_RES, "", "node-1", "merge", {"spec": {"taints": [{"key": "theirs", "effect": "NoExecute"}]}}
            )
        return {"spec": {"taints": [*taints, {"key": "ours", "effect": "NoSchedule"}]}}

    result = await writer.modify(node_path("node-1"), add_taint)
    assert result.written and result.attempts == 2 and calls == 2
    taints = stored(kube_sim, NODE_RES, "node-1")["spec"]["taints"]
    assert sorted(t["key"] for t in taints) == ["ours", "theirs"]
    again = await writer.modify(node_path("node-1"), add_taint)
    assert not again.written and again.attempts == 1


async def test_modify_gives_up_after_its_attempts(client: ApiClient, kube_sim: SimServer) -> None:
    writer = Writer(client, settings=WriterSettings(conflict_attempts=3))
    seen = 0

    def always_raced(node: dict[str, Any]) -> dict[str, Any]:
        nonlocal seen
        seen += 1
        kube_sim.registry.patch(NODE_RES, "", "node-1", "merge", {"metadata": {"labels": {"race": str(seen)}}})
        return {"metadata": {"labels": {"mine": "1"}}}

    with pytest.raises(Conflict):
        await writer.modify(node_path("node-1"), always_raced)
    assert seen == 3
    assert "mine" not in stored(kube_sim, NODE_RES, "node-1")["metadata"]["labels"]


async def test_delete_preconditions_protect_a_replaced_pod(
    writer: Writer, kube_sim: SimServer, cluster: Cluster
) -> None:
    cluster.pod("job-x")
    old = stored(kube_sim, POD_RES, "job-x", "default")["metadata"]
    cluster.delete("job-x")
    cluster.pod("job-x")  # same name, new uid
    new = stored(kube_sim, POD_RES, "job-x", "default")["metadata"]
    assert new["uid"] != old["uid"]
    with pytest.raises(Conflict) as err:
        await writer.delete(pod_path("default", "job-x"), uid=old["uid"], resource_version=old["resourceVersion"])
    assert err.value.precondition_failed and err.value.reason == "Conflict"
    assert "UID in precondition" in err.value.message
    assert kube_sim.registry.find("pods", "default", "job-x") is not None
    # Right uid, stale resourceVersion: also refused.
    cluster.relabel("job-x", {"changed": "yes"})
    with pytest.raises(Conflict) as err:
        await writer.delete(pod_path("default", "job-x"), uid=new["uid"], resource_version=new["resourceVersion"])
    assert err.value.precondition_failed and "ResourceVersion in precondition" in err.value.message
    # Current identity: deleted (an unscheduled pod goes at once).
    current = stored(kube_sim, POD_RES, "job-x", "default")["metadata"]
    await writer.delete(pod_path("default", "job-x"), uid=current["uid"], resource_version=current["resourceVersion"])
    assert kube_sim.registry.find("pods", "default", "job-x") is None
    with pytest.raises(NotFound):
        await writer.delete(pod_path("default", "job-x"))


async def test_an_event_outside_its_objects_namespace_is_invalid(writer: Writer, cluster: Cluster) -> None:
    """As kube-apiserver: a Pod's Event lives in the Pod's namespace, a Node's in "default"."""
    cluster.namespace("shop")

    def event(name: str, involved: dict[str, str]) -> dict[str, Any]:
        return {"metadata": {"name": name}, "involvedObject": involved, "reason": "R", "message": "m"}

    pod = {"kind": "Pod", "name": "web", "namespace": "shop"}
    node = {"kind": "Node", "name": "node-1", "uid": "node-1"}
    with pytest.raises(Invalid, match=r"does not match event\.namespace"):
        await writer.create(ObjectPath("/api/v1", "events", namespace="default"), event("a", pod))
    with pytest.raises(Invalid, match=r"does not match event\.namespace"):
        await writer.create(ObjectPath("/api/v1", "events", namespace="shop"), event("b", node))
    await writer.create(ObjectPath("/api/v1", "events", namespace="shop"), event("c", pod))
    await writer.create(ObjectPath("/api/v1", "events", namespace="default"), event("d", node))
