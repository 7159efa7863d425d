"""The churn driver: every kind of change happens, a seed's sequence is reproducible, and the cluster converges."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.churn import (
    ACTIONS,
    DEFAULT_MIX,
    EDITED_LABEL,
    NAMESPACE_CREATE,
    NAMESPACE_DELETE,
    NODE_ADD,
    NODE_DRAIN,
    NODE_REMOVE,
    POD_DEATH,
    POD_LABEL,
    ROLLOUT,
    SCALE_DOWN,
    SCALE_UP,
    SERVICE_SELECTOR,
    ChurnDriver,
    ChurnRecord,
    next_release,
    normalise_mix,
    parse_mix,
)
from nodemeta.sim.controllers.network import ENDPOINT_SLICES
from nodemeta.sim.generator import (
    DEPLOYMENTS,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    SERVICES,
    ClusterPlan,
    build_cluster,
    plan_cluster,
)
from nodemeta.sim.registry import DeleteOptions
from nodemeta.sim.store import Stored
from nodemeta.sim.truth import node_view

SEED = 5

TIMEOUT = 60


def small_plan() -> ClusterPlan:
    return plan_cluster(10, 10, SEED)


async def start_cluster(plan: ClusterPlan) -> SimServer:
    """A built cluster whose pods stop quickly and whose pod GC has no quarantine, so churn settles fast."""
    settings = SimSettings(
        seed=plan.seed, component_events=False, kubelet_stop_seconds=0.05, pod_gc_quarantine_seconds=0.0
    )
    server = SimServer(settings)
    await server.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            report = await build_cluster(server, plan)
            await server.settle()
    except BaseException:
        await server.stop()
        raise
    assert report.ready, report
    return server


@pytest.fixture
async def cluster() -> AsyncIterator[SimServer]:
    server = await start_cluster(small_plan())
    try:
        yield server
    finally:
        await server.stop()


async def eventually(server: SimServer, check: Callable[[], bool], timeout: float = 20) -> None:
    """Wait until `check()` holds with the controllers idle (grace periods run on timers, so poll)."""
    async with asyncio.timeout(timeout):
        while True:
            await server.settle()
            if check():
                return
            await asyncio.sleep(0.05)


def deployment(server: SimServer, target: str) -> dict[str, Any]:
    namespace, name = target.split("/")
    return server.registry.get(DEPLOYMENTS, namespace, name).decode()


def pods_on(server: SimServer, node: str) -> list[Stored]:
    return [p for p in server.registry.bucket(PODS).items.values() if p.field("spec.nodeName") == node]


def owner_kind(pod: Stored) -> str:
    refs = pod.decode()["metadata"].get("ownerReferences") or []
    return str(refs[0]["kind"]) if refs else ""


def running_replicas(server: SimServer, namespace: str, selector: dict[str, str]) -> int:
    return sum(
        1
        for pod in server.registry.iter_objects(PODS, namespace)
        if all(pod.labels.get(k) == v for k, v in selector.items())
        and pod.field("status.phase") == "Running"
        and b'"deletionTimestamp"' not in pod.body
    )


def deployments_converged(server: SimServer) -> bool:
    """Every Deployment runs exactly its replicas from its current template, and no older pod is left."""
    for stored in server.registry.iter_objects(DEPLOYMENTS):
        spec = stored.decode()["spec"]
        selector = spec["selector"]["matchLabels"]
        version = spec["template"]["metadata"]["labels"]
        pods = [
            p for p in server.registry.iter_objects(PODS, stored.namespace)
            if all(p.labels.get(k) == v for k, v in selector.items())
        ]  # fmt: skip
        current = [p for p in pods if all(p.labels.get(k) == v for k, v in version.items())]
        running = [p for p in current if p.field("status.phase") == "Running"]
        if len(pods) != spec["replicas"] or len(running) != spec["replicas"]:
            return False
    return True


# -- the mix and helpers ------------------------------------------------------------------------------------------


def test_mix_is_checked_and_normalised() -> None:
    mix = normalise_mix({ROLLOUT: 2, POD_DEATH: 6})
    assert mix[ROLLOUT] == pytest.approx(0.25) and mix[POD_DEATH] == pytest.approx(0.75)
    assert set(mix) == set(ACTIONS)
    assert sum(normalise_mix(DEFAULT_MIX).values()) == pytest.approx(1.0)
    assert parse_mix("rollout=1, pod-death=3")[POD_DEATH] == pytest.approx(0.75)
    for bad in ({"explode": 1.0}, {ROLLOUT: 0.0}, {ROLLOUT: -1.0}):
        with pytest.raises(ValueError):
            normalise_mix(bad)
    with pytest.raises(ValueError):
        parse_mix("rollout")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("registry.acme.internal/ads/cart-api:1.4.9", "registry.acme.internal/ads/cart-api:1.4.10"),
        ("envoyproxy/envoy:v1.31.2", "envoyproxy/envoy:v1.31.3"),
        ("registry.k8s.io/etcd:3.5.16-0", "registry.k8s.io/etcd:3.5.16-1"),
        ("ubuntu:noble", "ubuntu:noble-1"),
        ("localhost:5000/app", "localhost:5000/app:v2"),
        ("busybox", "busybox:v2"),
    ],
)
def test_next_release(image: str, expected: str) -> None:
    assert next_release(image) == expected


def test_driver_rejects_a_rate_of_zero() -> None:
    with pytest.raises(ValueError):
        ChurnDriver(SimServer(SimSettings(controllers=())), SEED, 0)


# -- each action ----------------------------------------------------------------------------------------------------


def check_rollout(server: SimServer, record: ChurnRecord) -> None:
    obj = deployment(server, record.target)
    assert obj["metadata"]["generation"] >= 2
    namespace = record.target.split("/")[0]
    image = obj["spec"]["template"]["spec"]["containers"][0]["image"]
    owned = [
        rs.decode() for rs in server.registry.iter_objects(REPLICASETS, namespace)
        if rs.name.startswith(obj["metadata"]["name"] + "-")
    ]  # fmt: skip
    current = [rs for rs in owned if rs["spec"]["template"]["spec"]["containers"][0]["image"] == image]
    assert len(current) == 1 and current[0]["spec"]["replicas"] == obj["spec"]["replicas"]
    assert all(rs["spec"]["replicas"] == 0 for rs in owned if rs is not current[0])
    revisions = [int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for rs in owned]
    assert int(current[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) == max(revisions)


def check_scale(server: SimServer, record: ChurnRecord) -> None:
    before, after = (int(n) for n in record.detail.split(" -> "))
    obj = deployment(server, record.target)
    assert obj["spec"]["replicas"] == after != before
    namespace = record.target.split("/")[0]
    assert running_replicas(server, namespace, obj["spec"]["selector"]["matchLabels"]) == after


def check_pod_death(server: SimServer, record: ChurnRecord) -> None:
    namespace = record.target.split("/")[0]
    assert server.registry.find("pods", namespace, record.detail) is None
    # Its controller replaced it.
    assert len(server.registry.bucket(PODS)) == small_plan().expected_pods()


def check_pod_label(server: SimServer, record: ChurnRecord) -> None:
    name, _, label = record.detail.partition(" ")
    pod = server.registry.find("pods", record.target.split("/")[0], name)
    assert pod is not None
    key, _, value = label.partition("=")
    assert key == EDITED_LABEL and pod.labels[key] == value


def check_service_selector(server: SimServer, record: ChurnRecord) -> None:
    namespace, name = record.target.split("/")
    service = server.registry.get(SERVICES, namespace, name).decode()
    selector = service["spec"]["selector"]
    selected = {
        pod.decode()["status"]["podIP"] for pod in server.registry.iter_objects(PODS, namespace)
        if all(pod.labels.get(k) == v for k, v in selector.items()) and pod.field("status.phase") == "Running"
    }  # fmt: skip
    listed = {
        address
        for s in server.registry.iter_objects(ENDPOINT_SLICES, namespace)
        if s.labels.get("kubernetes.io/service-name") == name
        for endpoint in s.decode().get("endpoints") or []
        for address in endpoint["addresses"]
    }
    assert listed == selected
    if not record.detail.endswith("(nothing)"):
        assert selected


def check_node_drain(server: SimServer, record: ChurnRecord) -> None:
    node = server.registry.get(NODES, "", record.target).decode()
    assert node["spec"]["unschedulable"] is True
    left = {owner_kind(p) for p in pods_on(server, record.target)}
    assert left <= {"DaemonSet", "Node"}


def check_node_remove(server: SimServer, record: ChurnRecord) -> None:
    assert server.registry.find("nodes", "", record.target) is None
    assert not pods_on(server, record.target)


def check_node_add(server: SimServer, record: ChurnRecord) -> None:
    assert server.registry.find("nodes", "", record.target) is not None
    kinds = Counter(owner_kind(p) for p in pods_on(server, record.target))
    assert kinds["DaemonSet"] == 3 and kinds["Node"] == 1


def check_namespace_delete(server: SimServer, record: ChurnRecord) -> None:
    assert server.registry.find("namespaces", "", record.target) is None
    assert not list(server.registry.iter_objects(PODS, record.target))


def check_namespace_create(server: SimServer, record: ChurnRecord) -> None:
    assert server.registry.find("namespaces", "", record.target) is not None
    deployments = list(server.registry.iter_objects(DEPLOYMENTS, record.target))
    assert deployments
    for stored in deployments:
        spec = stored.decode()["spec"]
        assert running_replicas(server, record.target, spec["selector"]["matchLabels"]) == spec["replicas"]


CHECKS: dict[str, Callable[[SimServer, ChurnRecord], None]] = {
    ROLLOUT: check_rollout,
    SCALE_UP: check_scale,
    SCALE_DOWN: check_scale,
    POD_DEATH: check_pod_death,
    POD_LABEL: check_pod_label,
    SERVICE_SELECTOR: check_service_selector,
    NODE_DRAIN: check_node_drain,
    NODE_REMOVE: check_node_remove,
    NODE_ADD: check_node_add,
    NAMESPACE_DELETE: check_namespace_delete,
    NAMESPACE_CREATE: check_namespace_create,
}


@pytest.mark.parametrize("action", ACTIONS)
async def test_each_action_changes_the_cluster_as_a_real_one(cluster: SimServer, action: str) -> None:
    mix = {action: 1.0} if action != NODE_REMOVE else {NODE_DRAIN: 1.0, NODE_REMOVE: 1.0}
    driver = ChurnDriver(cluster, SEED, rate_per_second=100, mix=mix)
    done: list[ChurnRecord] = []
    async with asyncio.timeout(TIMEOUT):
        for _ in range(20):
            record = driver.step()
            if record.action == action and not record.skipped:
                # Each action is checked alone, once the controllers have done what it asked of them.
                await eventually(cluster, functools.partial(_holds, CHECKS[action], cluster, record))
                done.append(record)
            await asyncio.sleep(0)
            if len(done) == 2:
                break
    # A small cluster allows one namespace deletion only: the driver always keeps a team namespace.
    assert len(done) == driver.counts[action] >= (1 if action == NAMESPACE_DELETE else 2)
    assert {r.action for r in driver.log} <= set(mix)


def _holds(check: Callable[[SimServer, ChurnRecord], None], server: SimServer, record: ChurnRecord) -> bool:
    try:
        check(server, record)
    except (AssertionError, KeyError):
        return False
    return True


# -- reproducibility, pacing, convergence ---------------------------------------------------------------------------


async def churned_sequence(seed: int, actions: int) -> list[tuple[str, str]]:
    server = await start_cluster(small_plan())
    try:
        driver = ChurnDriver(server, seed, rate_per_second=500)
        async with asyncio.timeout(TIMEOUT):
            await driver.run(actions=actions)
        assert len(driver.log) == actions
        return [(r.action, r.target) for r in driver.log]
    finally:
        await server.stop()


async def test_a_seed_gives_the_same_sequence_on_the_same_cluster() -> None:
    first = await churned_sequence(SEED, 60)
    second = await churned_sequence(SEED, 60)
    assert first == second
    assert len({action for action, _ in first}) >= 5
    assert await churned_sequence(SEED + 1, 60) != first


async def test_run_keeps_to_the_rate(cluster: SimServer) -> None:
    driver = ChurnDriver(cluster, SEED, rate_per_second=40, mix={POD_LABEL: 1.0})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await driver.run(duration=0.5)
    elapsed = loop.time() - started
    assert 0.45 <= elapsed < 1.0
    # Action N is due at N / rate: 20 in half a second (fewer only if this machine is very slow).
    assert 10 <= len(driver.log) <= 21
    # Never ahead of schedule (catching up after a late one is allowed: that is what the bucket is for).
    assert all(record.at >= i / 40 - 0.002 for i, record in enumerate(driver.log))


async def test_run_until_cancelled(cluster: SimServer) -> None:
    driver = ChurnDriver(cluster, SEED, rate_per_second=200)
    task = asyncio.create_task(driver.run())
    await asyncio.sleep(0.1)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert driver.log and sum(driver.counts.values()) + sum(driver.skipped.values()) == len(driver.log)


async def test_vanished_targets_are_skipped(cluster: SimServer) -> None:
    driver = ChurnDriver(cluster, SEED, rate_per_second=100, mix={ROLLOUT: 1.0, SCALE_UP: 1.0})
    assert driver.catalogue.deployments
    # Someone else deletes every Deployment behind the driver's back.
    for stored in list(cluster.registry.iter_objects(DEPLOYMENTS)):
        cluster.registry.delete(DEPLOYMENTS, stored.namespace, stored.name, DeleteOptions())
    records = [driver.step() for _ in range(5)]
    assert all(r.skipped and r.detail.startswith("404") for r in records)
    assert not driver.counts and sum(driver.skipped.values()) == 5
    assert NODE_REMOVE not in driver.skipped
    removal = ChurnDriver(cluster, SEED, rate_per_second=100, mix={NODE_REMOVE: 1.0}).step()
    assert removal.skipped and removal.detail == "no drained node"


async def test_cluster_converges_after_churn(cluster: SimServer) -> None:
    heavy = {**DEFAULT_MIX, NODE_DRAIN: 0.1, NODE_REMOVE: 0.1, NODE_ADD: 0.1, NAMESPACE_CREATE: 0.1}
    driver = ChurnDriver(cluster, SEED, rate_per_second=100, mix=heavy)
    async with asyncio.timeout(TIMEOUT):
        await driver.run(actions=120)
    assert set(driver.counts) >= {ROLLOUT, POD_DEATH, POD_LABEL, NODE_DRAIN, NODE_ADD, NAMESPACE_CREATE}
    await eventually(cluster, lambda: converged(cluster), timeout=TIMEOUT)
    nodes = sorted(n.name for n in cluster.registry.iter_objects(NODES))
    async with aiohttp.ClientSession(base_url=cluster.url) as api:
        for node in nodes:
            params = {"fieldSelector": f"spec.nodeName={node}"}
            async with api.get("/api/v1/pods", params=params) as response:
                listed = {item["metadata"]["uid"] for item in (await response.json())["items"]}
            truth = {uid for (kind, uid) in node_view(cluster.store, node) if kind == "Pod"}
            assert listed == truth, node


def converged(server: SimServer) -> bool:
    nodes = {n.name for n in server.registry.iter_objects(NODES)}
    pods = list(server.registry.bucket(PODS).items.values())
    if any(p.field("spec.nodeName") not in nodes for p in pods):
        return False
    if any(ns.field("status.phase") == "Terminating" for ns in server.registry.iter_objects(NAMESPACES)):
        return False
    daemon_pods = Counter(p.field("spec.nodeName") for p in pods if owner_kind(p) == "DaemonSet")
    if daemon_pods != {node: 3 for node in nodes}:
        return False
    return deployments_converged(server)


async def test_only_team_namespaces_are_deleted(cluster: SimServer) -> None:
    team = {ns.name for ns in cluster.registry.iter_objects(NAMESPACES) if "team" in ns.labels}
    driver = ChurnDriver(cluster, SEED, rate_per_second=100, mix={NAMESPACE_DELETE: 1.0})
    records = [driver.step() for _ in range(10)]
    deleted = {r.target for r in records if not r.skipped}
    assert deleted and deleted < team  # one team namespace is always kept
    assert all(r.detail.startswith("only 1 team namespaces left") for r in records if r.skipped)
    for name in ("default", "kube-system", "kube-public", "kube-node-lease", "monitoring", "logging"):
        namespace = cluster.registry.find("namespaces", "", name)
        assert namespace is not None and namespace.field("status.phase") == "Active", name
