"""The cluster generator: a seed's plan is the same everywhere, and building it gives a running, realistic cluster."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.controllers.network import ENDPOINT_SLICES
from nodemeta.sim.generator import (
    CONTROL_PLANE_ROLE,
    DAEMONSETS,
    DEPLOYMENTS,
    JOBS,
    NODES,
    PODS,
    REPLICASETS,
    TEMPLATE_HASH,
    BuildReport,
    ClusterPlan,
    build_cluster,
    plan_cluster,
)
from nodemeta.sim.validation import check_labels, check_name

NODE_COUNT = 20
PODS_PER_NODE = 10
SEED = 11

# Builds of 200 pods take a few seconds with every controller; generous bounds keep slow CI machines green.
BUILD_TIMEOUT = 60
# Job pods carry their Job's uid in labels; uids are random by design.
REVISION = "deployment.kubernetes.io/revision"
UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def small_plan(seed: int = SEED) -> ClusterPlan:
    return plan_cluster(NODE_COUNT, PODS_PER_NODE, seed)


async def built(plan: ClusterPlan, **settings: Any) -> tuple[SimServer, BuildReport]:
    server = SimServer(SimSettings(seed=plan.seed, component_events=False, **settings))
    await server.start()
    try:
        async with asyncio.timeout(BUILD_TIMEOUT):
            report = await build_cluster(server, plan)
            await server.settle()
    except BaseException:
        await server.stop()
        raise
    return server, report


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[SimServer, ClusterPlan, BuildReport]]:
    plan = small_plan()
    server, report = await built(plan)
    try:
        yield server, plan, report
    finally:
        await server.stop()


# -- the plan ------------------------------------------------------------------------------------------------------


def test_plan_is_a_function_of_its_arguments() -> None:
    assert small_plan() == small_plan()
    assert small_plan().digest() == small_plan().digest()
    assert small_plan(SEED + 1).digest() != small_plan().digest()
    assert plan_cluster(NODE_COUNT + 1, PODS_PER_NODE, SEED).digest() != small_plan().digest()


def test_plan_is_the_same_in_another_process() -> None:
    """Hash randomisation differs per process; nothing in a plan may depend on it (set order, hash())."""
    code = f"from nodemeta.sim.generator import plan_cluster; print(plan_cluster(300, 30, {SEED}).digest())"
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == plan_cluster(300, 30, SEED).digest()


@pytest.mark.parametrize(("nodes", "pods_per_node"), [(20, 10), (100, 30), (7, 3), (1000, 30)])
def test_plan_holds_about_nodes_times_pods_per_node(nodes: int, pods_per_node: int) -> None:
    plan = plan_cluster(nodes, pods_per_node, SEED)
    assert plan.expected_pods() == nodes * pods_per_node
    assert plan.composition()["pods"] == plan.expected_pods()
    assert len(plan.node_names()) == nodes


def test_small_plan_has_every_kind() -> None:
    composition = small_plan().composition()
    for kind in ("deployments", "old_replicasets", "daemonsets", "statefulsets", "replication_controllers",
                 "services", "services_without_selector", "cronjobs", "jobs", "bare_pods", "static_pods"):  # fmt: skip
        assert composition[kind] > 0, kind
    assert 0 < composition["jobs_finished"] < composition["jobs"]


def test_large_plan_is_shaped_like_a_real_cluster() -> None:
    plan = plan_cluster(1000, 30, SEED)
    composition = plan.composition()
    assert composition["daemonset_pods"] == 3 * 1000
    # Every node has a static kube-proxy; the three control-plane nodes also run the kubeadm static pods.
    assert composition["static_pods"] == 1000 + 3 * 4
    assert composition["deployment_pods"] > 0.75 * composition["pods"]
    replicas = sorted(d.replicas for d in plan.deployments)
    assert replicas[len(replicas) // 2] <= 5 and replicas[-1] >= 50  # small median, long tail
    assert composition["old_replicasets"] > composition["deployments"]
    sizes = Counter(d.namespace for d in plan.deployments)
    assert max(sizes.values()) > 5 * min(sizes.values())  # a few big teams, many small ones
    assert len({s.namespace for s in plan.services if not s.selector}) >= 1


def test_plan_names_and_labels_are_valid() -> None:
    plan = plan_cluster(300, 30, SEED)
    seen: set[tuple[str, str, str]] = set()
    kinds = (("Deployment", plan.deployments), ("StatefulSet", plan.statefulsets), ("Service", plan.services),
             ("Job", plan.jobs), ("Pod", plan.bare_pods), ("CronJob", plan.cronjobs),
             ("ReplicationController", plan.replication_controllers))  # fmt: skip
    for kind, items in kinds:
        for item in items:
            assert (kind, item.namespace, item.name) not in seen
            seen.add((kind, item.namespace, item.name))
            assert not check_name(kind, item.name), (kind, item.name)
    for namespace in plan.namespaces:
        assert not check_name("Namespace", namespace.name)
        assert not check_labels(dict(namespace.labels), "metadata.labels")
    for deployment in plan.deployments:
        # A ReplicaSet's pods are named <deployment>-<10-char hash>-<5 random>: a valid DNS label.
        assert len(deployment.name) + 17 <= 63
        for template in deployment.history:
            assert not check_labels(dict(template.labels), "labels")
            assert set(deployment.selector) <= set(template.labels)


def test_plan_rejects_an_empty_cluster() -> None:
    with pytest.raises(ValueError):
        plan_cluster(0, 30, SEED)
    with pytest.raises(ValueError):
        plan_cluster(3, 0, SEED)


# -- the built cluster ----------------------------------------------------------------------------------------------


def owner_of(obj: dict[str, Any]) -> tuple[str, str]:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref["kind"]), str(ref["name"])
    return "", ""


def decoded(server: SimServer, res: Any, namespace: str = "") -> list[dict[str, Any]]:
    return [stored.decode() for stored in server.registry.iter_objects(res, namespace)]


async def test_build_reaches_every_planned_pod(cluster: tuple[SimServer, ClusterPlan, BuildReport]) -> None:
    server, plan, report = cluster
    assert report.ready and report.pods_ready == report.pods_expected == plan.expected_pods()
    pods = decoded(server, PODS)
    assert len(pods) == NODE_COUNT * PODS_PER_NODE
    phases = Counter(pod["status"]["phase"] for pod in pods)
    assert phases == {"Running": len(pods) - phases["Succeeded"], "Succeeded": sum(j.finished for j in plan.jobs)}
    per_node = Counter(pod["spec"]["nodeName"] for pod in pods)
    assert set(per_node) == set(plan.node_names())
    assert [name for name, _ in report.phases][:2] == ["nodes", "namespaces"]
    assert report.written >= len(plan.deployments) + len(plan.services)


async def test_deployments_have_their_current_and_past_replicasets(
    cluster: tuple[SimServer, ClusterPlan, BuildReport],
) -> None:
    server, plan, _ = cluster
    for deployment in plan.deployments:
        replica_sets = [
            rs for rs in decoded(server, REPLICASETS, deployment.namespace)
            if owner_of(rs) == ("Deployment", deployment.name)
        ]  # fmt: skip
        assert len(replica_sets) == deployment.rollouts + 1, deployment.name
        by_revision = {int(rs["metadata"]["annotations"][REVISION]): rs for rs in replica_sets}
        assert sorted(by_revision) == list(range(1, deployment.rollouts + 2))
        current = by_revision[deployment.rollouts + 1]
        assert current["spec"]["replicas"] == deployment.replicas
        assert current["status"]["readyReplicas"] == deployment.replicas
        image = deployment.template.containers[0].image
        assert current["spec"]["template"]["spec"]["containers"][0]["image"] == image
        for revision in range(1, deployment.rollouts + 1):
            old = by_revision[revision]
            assert old["spec"]["replicas"] == 0 and old["status"].get("replicas", 0) == 0
            assert old["metadata"]["name"] == f"{deployment.name}-{old['metadata']['labels'][TEMPLATE_HASH]}"
            past = deployment.history[revision - 1].containers[0].image
            assert old["spec"]["template"]["spec"]["containers"][0]["image"] == past
        stored = server.registry.get(DEPLOYMENTS, deployment.namespace, deployment.name).decode()
        assert stored["metadata"]["annotations"][REVISION] == str(deployment.rollouts + 1)
        assert stored["status"]["availableReplicas"] == deployment.replicas


async def test_daemonsets_run_on_every_node(cluster: tuple[SimServer, ClusterPlan, BuildReport]) -> None:
    server, plan, _ = cluster
    for daemonset in plan.daemonsets:
        nodes = [
            pod["spec"]["nodeName"] for pod in decoded(server, PODS, daemonset.namespace)
            if owner_of(pod) == ("DaemonSet", daemonset.name)
        ]  # fmt: skip
        assert sorted(nodes) == sorted(plan.node_names()), daemonset.name
        status = server.registry.get(DAEMONSETS, daemonset.namespace, daemonset.name).decode()["status"]
        assert status["numberReady"] == NODE_COUNT


async def test_static_pods_are_mirrored_on_their_nodes(cluster: tuple[SimServer, ClusterPlan, BuildReport]) -> None:
    server, plan, _ = cluster
    for static in plan.static_pods:
        mirror = server.registry.get(PODS, static.namespace, static.mirror_name).decode()
        assert mirror["spec"]["nodeName"] == static.node
        assert owner_of(mirror) == ("Node", static.node)
        assert "kubernetes.io/config.mirror" in mirror["metadata"]["annotations"]
        assert mirror["status"]["phase"] == "Running"
    control_plane = server.registry.get(NODES, "", plan.control_planes[0]).decode()
    assert CONTROL_PLANE_ROLE in control_plane["metadata"]["labels"]


async def test_services_list_their_ready_pods(cluster: tuple[SimServer, ClusterPlan, BuildReport]) -> None:
    server, plan, _ = cluster
    for service in plan.services:
        selector = dict(service.selector)
        selected = {
            pod["status"]["podIP"] for pod in decoded(server, PODS, service.namespace)
            if selector and all(pod["metadata"]["labels"].get(k) == v for k, v in selector.items())
        }  # fmt: skip
        slices = [
            s for s in decoded(server, ENDPOINT_SLICES, service.namespace)
            if s["metadata"]["labels"].get("kubernetes.io/service-name") == service.name
        ]  # fmt: skip
        listed = {
            a for s in slices for e in s.get("endpoints") or [] if e["conditions"]["ready"] for a in e["addresses"]
        }
        assert listed == selected, service.name
        assert bool(slices) == bool(selector), service.name
    served = [s for s in plan.services if s.selector and not s.name.endswith("-legacy")]
    assert served and all(
        any(s["endpoints"] for s in decoded(server, ENDPOINT_SLICES, svc.namespace)
            if s["metadata"]["labels"].get("kubernetes.io/service-name") == svc.name)
        for svc in served
    )  # fmt: skip


async def test_jobs_bare_pods_and_legacy_workloads(cluster: tuple[SimServer, ClusterPlan, BuildReport]) -> None:
    server, plan, _ = cluster
    for job in plan.jobs:
        stored = server.registry.get(JOBS, job.namespace, job.name).decode()
        conditions = {c["type"]: c["status"] for c in stored["status"].get("conditions") or []}
        pods = [p for p in decoded(server, PODS, job.namespace) if owner_of(p) == ("Job", job.name)]
        assert len(pods) == 1
        if job.finished:
            assert conditions.get("Complete") == "True" and stored["status"]["succeeded"] == 1
            assert pods[0]["status"]["phase"] == "Succeeded"
        else:
            assert "Complete" not in conditions and stored["status"]["active"] == 1
        if job.cronjob:
            assert owner_of(stored) == ("CronJob", job.cronjob)
    for pod in plan.bare_pods:
        stored = server.registry.get(PODS, pod.namespace, pod.name).decode()
        assert owner_of(stored) == ("", "") and stored["status"]["phase"] == "Running"
    for statefulset in plan.statefulsets:
        names = sorted(p["metadata"]["name"] for p in decoded(server, PODS, statefulset.namespace)
                       if owner_of(p) == ("StatefulSet", statefulset.name))  # fmt: skip
        assert names == sorted(f"{statefulset.name}-{i}" for i in range(statefulset.replicas))
    for rc in plan.replication_controllers:
        pods = [p for p in decoded(server, PODS, rc.namespace) if owner_of(p) == ("ReplicationController", rc.name)]
        assert len(pods) == rc.replicas


def structure(server: SimServer) -> list[tuple[str, ...]]:
    """The cluster as a seed determines it: every object's kind, namespace, name (a generated name cut to its
    prefix), controlling owner, labels and node. Only uids, times and generated suffixes are left out."""
    rows: list[tuple[str, ...]] = []
    for name, bucket in sorted(server.registry.store.buckets.items()):
        if name in ("events", "leases.coordination.k8s.io"):
            continue
        for stored in bucket.items.values():
            obj = stored.decode()
            meta = obj["metadata"]
            shown = meta.get("generateName", "") + "*" if meta.get("generateName") else stored.name
            kind, owner = owner_of(obj)
            owner = re.sub(r"-[bcdfghjklmnpqrstvwxz2456789]{5}$", "-*", owner) if kind == "Service" else owner
            labels = json.dumps({k: UID.sub("<uid>", v) for k, v in stored.labels.items()}, sort_keys=True)
            node = (obj.get("spec") or {}).get("nodeName", "") if name == "pods" else ""
            rows.append((name, stored.namespace, shown, kind, owner, labels, str(node)))
    return sorted(rows)


async def test_a_seed_builds_the_same_cluster_every_time() -> None:
    plan = small_plan()
    first, _ = await built(plan)
    try:
        one = structure(first)
    finally:
        await first.stop()
    second, _ = await built(plan)
    try:
        two = structure(second)
    finally:
        await second.stop()
    assert one == two
    pods = [row for row in one if row[0] == "pods"]
    assert len(pods) == plan.expected_pods()


async def test_the_server_answers_while_it_builds() -> None:
    plan = plan_cluster(60, 20, SEED)
    async with SimServer(SimSettings(seed=SEED, component_events=False)) as server:
        seen: list[tuple[str, int, int]] = []
        deploying = asyncio.Event()

        def progress(phase: str, done: int, total: int) -> None:
            seen.append((phase, done, total))
            if phase == "deployments":
                deploying.set()

        build = asyncio.create_task(build_cluster(server, plan, progress))
        try:
            async with aiohttp.ClientSession(base_url=server.url) as api:
                await deploying.wait()
                async with api.get("/api/v1/nodes", params={"limit": "1"}) as response:
                    assert response.status == 200
                assert not build.done()
            async with asyncio.timeout(BUILD_TIMEOUT):
                report = await build
        finally:
            build.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await build
    assert report.ready
    phases = [phase for phase, _, _ in seen]
    assert phases.index("nodes") < phases.index("deployments") < phases.index("ready")
    assert seen[-1][0] == "ready" and seen[-1][1] == seen[-1][2] == plan.expected_pods()


@pytest.mark.kubectl
async def test_kubectl_sees_a_node_as_the_registry_holds_it(
    cluster: tuple[SimServer, ClusterPlan, BuildReport], tmp_path: Path
) -> None:
    server, _, _ = cluster
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        "kubectl", f"--cache-dir={tmp_path / 'cache'}", "get", "pods", "-A",
        "--field-selector", "spec.nodeName=node-3", "-o", "json",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    listed = {
        (p["metadata"]["namespace"], p["metadata"]["name"], p["metadata"]["uid"], p["metadata"]["resourceVersion"])
        for p in json.loads(out)["items"]
    }
    held = {
        (s.namespace, s.name, s.uid, str(s.rv))
        for s in server.registry.bucket(PODS).items.values()
        if s.field("spec.nodeName") == "node-3"
    }
    assert listed == held and len(held) >= 4
