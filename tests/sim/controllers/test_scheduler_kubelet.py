"""The scheduler and kubelet stand-ins, seen the way clients see them: over HTTP, through watches and kubectl."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.builders import node_object
from nodemeta.sim.controllers.kubelet import Kubelet, image_id, normalize_image, qos_class, static_pods
from nodemeta.sim.controllers.nodes import set_node_ready
from tests.sim.wire import WatchReader, call, create, pod

T = TypeVar("T")
PODS = "/api/v1/namespaces/default/pods"
FAST = {"seed": 7, "kubelet_stop_seconds": 0.3}


def settings(nodes: int = 2, *controllers: str, **extra: Any) -> SimSettings:
    return SimSettings(nodes=nodes, controllers=controllers or ("scheduler", "kubelet"), **{**FAST, **extra})


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    async with SimServer(settings(2)) as sim:
        yield sim


@pytest.fixture
async def api(server: SimServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


async def settled(server: SimServer) -> None:
    async with asyncio.timeout(5):
        await server.settle()


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 5.0) -> T:
    """Poll `check` until it returns something truthy (timers such as grace periods are not `settle`d)."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.02)


async def get(api: aiohttp.ClientSession, path: str) -> Any:
    status, body, _ = await call(api, "GET", path)
    assert status == 200, body
    return body


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"].get("conditions", []) if c["type"] == kind)


def in_network(ip: str, cidr: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)


class Kubectl:
    """The real kubectl binary against a server, with its own kubeconfig and HOME."""

    def __init__(self, server: SimServer, home: Path) -> None:
        binary = shutil.which("kubectl")
        if binary is None:
            pytest.fail("kubectl is not installed: the kubectl tests need it on PATH")
        self.binary = binary
        self.env = {**os.environ, "KUBECONFIG": str(server.write_kubeconfig(home / "kc")), "HOME": str(home)}

    async def run(self, *args: str, stdin: str = "", timeout: float = 20) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.binary, *args, env=self.env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
        assert proc.returncode == 0, f"kubectl {' '.join(args)} exited {proc.returncode}: {err.decode()}"
        return out.decode()


WEB = """
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: nginx
    image: nginx:1.27
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


@pytest.mark.kubectl
async def test_kubectl_apply_runs_the_pod_publishes_it_and_delete_completes(tmp_path: Path) -> None:
    import json

    async with SimServer(settings(2, "scheduler", "kubelet", "endpointslice")) as server:
        kubectl = Kubectl(server, tmp_path)
        await kubectl.run("apply", "-f", "-", stdin=WEB)
        await kubectl.run("wait", "--for=condition=Ready", "pod/web", "--timeout=10s")
        running = json.loads(await kubectl.run("get", "pod", "web", "-o", "json"))
        node = json.loads(await kubectl.run("get", "node", running["spec"]["nodeName"], "-o", "json"))
        status = running["status"]
        assert status["phase"] == "Running"
        assert in_network(status["podIP"], node["spec"]["podCIDR"])
        assert status["hostIP"] == node["status"]["addresses"][0]["address"]
        assert status["containerStatuses"][0]["image"] == "docker.io/library/nginx:1.27"
        assert status["containerStatuses"][0]["containerID"].startswith("containerd://")

        await settled(server)
        slices = json.loads(
            await kubectl.run("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json")
        )
        [only] = slices["items"]
        [endpoint] = only["endpoints"]
        assert endpoint["addresses"] == [status["podIP"]]
        assert endpoint["conditions"] == {"ready": True, "serving": True, "terminating": False}
        assert endpoint["targetRef"] == {"kind": "Pod", "namespace": "default", "name": "web",
                                         "uid": running["metadata"]["uid"]}  # fmt: skip
        assert only["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]

        events = json.loads(
            await kubectl.run("get", "events", "--field-selector", "involvedObject.name=web", "-o", "json")
        )
        assert {"Scheduled", "Pulled", "Created", "Started"} <= {e["reason"] for e in events["items"]}

        started = time.monotonic()
        await kubectl.run("delete", "pod", "web")  # waits until the pod is gone
        assert time.monotonic() - started < 5
        await settled(server)
        slices = json.loads(
            await kubectl.run("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json")
        )
        assert [s["endpoints"] for s in slices["items"]] == [[]]


async def test_unschedulable_pod_waits_with_a_reason_and_binds_when_a_node_fits(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, PODS, pod("fast", nodeSelector={"disk": "ssd"}))
    await settled(server)
    waiting = await get(api, f"{PODS}/fast")
    scheduled = condition(waiting, "PodScheduled")
    assert waiting["status"]["phase"] == "Pending" and "nodeName" not in waiting["spec"]
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
    assert scheduled["message"].startswith(
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    )
    events = await get(api, "/apis/events.k8s.io/v1/namespaces/default/events?fieldSelector=regarding.name=fast")
    [failed] = events["items"]
    assert (failed["type"], failed["reason"], failed["reportingController"]) == (
        "Warning",
        "FailedScheduling",
        "default-scheduler",
    )

    node = node_object("node-3", 3, time.time())
    node["metadata"]["labels"]["disk"] = "ssd"
    await create(api, "/api/v1/nodes", node)
    await settled(server)
    bound = await get(api, f"{PODS}/fast")
    assert bound["spec"]["nodeName"] == "node-3"
    assert condition(bound, "PodScheduled")["status"] == "True"
    assert bound["status"]["phase"] == "Running"


async def test_taints_keep_out_pods_that_do_not_tolerate_them(server: SimServer, api: aiohttp.ClientSession) -> None:
    taint = {"spec": {"taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]}}
    for node in ("node-1", "node-2"):
        status, body, _ = await call(api, "PATCH", f"/api/v1/nodes/{node}", taint, ctype="application/merge-patch+json")
        assert status == 200, body
    await create(api, PODS, pod("plain"))
    toleration = {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}
    await create(api, PODS, pod("tolerant", tolerations=[toleration]))
    await settled(server)
    plain = await get(api, f"{PODS}/plain")
    assert "2 node(s) had untolerated taint {dedicated: infra}" in condition(plain, "PodScheduled")["message"]
    assert (await get(api, f"{PODS}/tolerant"))["spec"]["nodeName"] in ("node-1", "node-2")


async def test_cordoned_and_not_ready_nodes_are_avoided() -> None:
    async with SimServer(settings(3)) as server, aiohttp.ClientSession(base_url=server.url) as api:
        cordon = {"spec": {"unschedulable": True}}
        await call(api, "PATCH", "/api/v1/nodes/node-1", cordon, ctype="application/merge-patch+json")
        set_node_ready(server.registry, "node-2", "False")
        await create(api, PODS, pod("a"))
        await create(api, PODS, pod("b"))
        await create(api, PODS, pod("anywhere", tolerations=[{"operator": "Exists"}]))
        await settled(server)
        assert (await get(api, f"{PODS}/a"))["spec"]["nodeName"] == "node-3"
        assert (await get(api, f"{PODS}/b"))["spec"]["nodeName"] == "node-3"
        # Tolerating every taint passes the cordon and NotReady too (as DaemonSet pods do): node-1 wins the tie.
        assert (await get(api, f"{PODS}/anywhere"))["spec"]["nodeName"] == "node-1"

        await create(api, PODS, pod("stuck", nodeSelector={"kubernetes.io/hostname": "node-1"}))
        await settled(server)
        message = condition(await get(api, f"{PODS}/stuck"), "PodScheduled")["message"]
        assert "1 node(s) were unschedulable" in message
        assert "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }" in message


async def test_pods_spread_over_nodes_least_loaded_first() -> None:
    async with SimServer(settings(3)) as server, aiohttp.ClientSession(base_url=server.url) as api:
        for i in range(9):
            await create(api, PODS, pod(f"p{i}"))
            await settled(server)
        placed = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in (await get(api, PODS))["items"]}
        assert [placed[f"p{i}"] for i in range(3)] == ["node-1", "node-2", "node-3"]
        assert sorted(placed.values()).count("node-1") == 3
        assert sorted(placed.values()).count("node-3") == 3


async def test_daemonset_style_pin_and_node_capacity(server: SimServer, api: aiohttp.ClientSession) -> None:
    pinned = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-2"]}]}]}}}  # fmt: skip
    await create(api, PODS, pod("agent", affinity=pinned))
    small = node_object("tiny", 9, time.time())
    small["status"]["allocatable"]["pods"] = "1"
    small["metadata"]["labels"]["size"] = "tiny"
    await create(api, "/api/v1/nodes", small)
    await create(api, PODS, pod("first", nodeSelector={"size": "tiny"}))
    await settled(server)
    await create(api, PODS, pod("second", nodeSelector={"size": "tiny"}))
    await settled(server)
    assert (await get(api, f"{PODS}/agent"))["spec"]["nodeName"] == "node-2"
    assert (await get(api, f"{PODS}/first"))["spec"]["nodeName"] == "tiny"
    assert "1 Too many pods" in condition(await get(api, f"{PODS}/second"), "PodScheduled")["message"]

    await call(api, "DELETE", f"{PODS}/first", gracePeriodSeconds=0)
    await settled(server)
    assert (await get(api, f"{PODS}/second"))["spec"]["nodeName"] == "tiny"


async def test_node_agent_watch_sees_its_pod_added_when_bound_then_started(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    params = {"watch": "1", "fieldSelector": "spec.nodeName=node-1"}
    async with api.get("/api/v1/pods", params=params) as response:
        watch = WatchReader(response)
        await create(api, PODS, pod("mine", nodeSelector={"kubernetes.io/hostname": "node-1"}))
        await create(api, PODS, pod("other", nodeSelector={"kubernetes.io/hostname": "node-2"}))
        seen = await watch.until(lambda e: e["object"]["status"].get("phase") == "Running")
    assert [e["type"] for e in seen] == ["ADDED", "MODIFIED", "MODIFIED"]
    assert {e["object"]["metadata"]["name"] for e in seen} == {"mine"}
    added, creating, running = (e["object"] for e in seen)
    assert added["spec"]["nodeName"] == "node-1" and condition(added, "PodScheduled")["status"] == "True"
    assert creating["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert running["status"]["podIP"].startswith("10.244.1.")


async def test_graceful_delete_stops_containers_then_removes_the_pod(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, PODS, pod("web"))
    await settled(server)
    rv = (await get(api, f"{PODS}/web"))["metadata"]["resourceVersion"]
    async with api.get(PODS, params={"watch": "1", "resourceVersion": rv}) as response:
        watch = WatchReader(response)
        started = time.monotonic()
        status, body, _ = await call(api, "DELETE", f"{PODS}/web")
        assert status == 200 and body["metadata"]["deletionGracePeriodSeconds"] == 30
        seen = await watch.until(lambda e: e["type"] == "DELETED")
        elapsed = time.monotonic() - started
    assert [e["type"] for e in seen] == ["MODIFIED", "MODIFIED", "DELETED"]
    assert 0.25 <= elapsed < 3
    stopped = seen[1]["object"]["status"]
    terminated = stopped["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert condition(seen[1]["object"], "Ready")["status"] == "False"
    events = await get(api, "/api/v1/namespaces/default/events?fieldSelector=reason=Killing")
    assert [e["message"] for e in events["items"]] == ["Stopping container c"]


async def test_pod_bound_to_a_missing_node_stays_pending_until_the_node_exists(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, PODS, pod("early", nodeName="node-7"))
    await settled(server)
    await asyncio.sleep(0.1)
    assert (await get(api, f"{PODS}/early"))["status"]["phase"] == "Pending"
    server.add_nodes(1, start=7)
    await settled(server)
    running = await get(api, f"{PODS}/early")
    assert running["status"]["phase"] == "Running"
    assert running["status"]["podIP"].startswith("10.244.7.")


async def test_dual_stack_and_host_network_addresses() -> None:
    async with SimServer(settings(2, dual_stack=True)) as server, aiohttp.ClientSession(base_url=server.url) as api:
        await create(api, PODS, pod("dual", nodeSelector={"kubernetes.io/hostname": "node-2"}))
        await create(api, PODS, pod("host", hostNetwork=True, nodeSelector={"kubernetes.io/hostname": "node-2"}))
        await settled(server)
        node = await get(api, "/api/v1/nodes/node-2")
        dual = (await get(api, f"{PODS}/dual"))["status"]
        v4, v6 = (entry["ip"] for entry in dual["podIPs"])
        assert dual["podIP"] == v4 and in_network(v4, node["spec"]["podCIDR"])
        assert in_network(v6, "fd00:10:244:2::/64")
        host = (await get(api, f"{PODS}/host"))["status"]
        assert host["podIPs"] == [{"ip": node["status"]["addresses"][0]["address"]}] == host["hostIPs"]


async def test_ips_are_unique_per_node_and_survive_a_kubelet_restart(server: SimServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as api:
        for i in range(4):
            await create(api, PODS, pod(f"p{i}", nodeName="node-1"))
        await settled(server)
        await server.stop_controllers()
        server.start_controllers()  # a new kubelet must learn which IPs are taken
        for i in range(4, 6):
            await create(api, PODS, pod(f"p{i}", nodeName="node-1"))
        await settled(server)
        ips = [p["status"]["podIP"] for p in (await get(api, PODS))["items"]]
    assert len(ips) == 6 and len(set(ips)) == 6


async def test_static_pod_gets_a_mirror_pod_that_comes_back_when_deleted(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    manifest = {
        "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": {"k8s-app": "kube-proxy"}},
        "spec": {"hostNetwork": True, "priorityClassName": "system-node-critical",
                 "containers": [{"name": "kube-proxy", "image": "registry.k8s.io/kube-proxy:v1.32.0"}]},
    }  # fmt: skip
    assert static_pods(server.registry).add("node-1", manifest) == "kube-proxy-node-1"
    await settled(server)
    path = "/api/v1/namespaces/kube-system/pods/kube-proxy-node-1"
    mirror = await get(api, path)
    node = await get(api, "/api/v1/nodes/node-1")
    annotations = mirror["metadata"]["annotations"]
    assert annotations["kubernetes.io/config.source"] == "file"
    assert annotations["kubernetes.io/config.mirror"] == annotations["kubernetes.io/config.hash"]
    assert len(annotations["kubernetes.io/config.hash"]) == 32 and "kubernetes.io/config.seen" in annotations
    assert mirror["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": node["metadata"]["uid"], "controller": True}
    ]
    assert mirror["spec"]["nodeName"] == "node-1" and mirror["spec"]["priority"] == 2000001000
    assert mirror["status"]["phase"] == "Running"
    assert mirror["status"]["containerStatuses"][0]["image"] == "registry.k8s.io/kube-proxy:v1.32.0"

    status, _, _ = await call(api, "DELETE", path)
    assert status == 200
    await settled(server)
    again = await get(api, path)
    assert again["metadata"]["uid"] != mirror["metadata"]["uid"]
    assert again["metadata"]["annotations"]["kubernetes.io/config.seen"] == annotations["kubernetes.io/config.seen"]

    manifest["spec"]["containers"][0]["image"] = "registry.k8s.io/kube-proxy:v1.32.1"
    next(c for c in server.manager.controllers if isinstance(c, Kubelet)).add_static_pod("node-1", manifest)  # type: ignore[union-attr]
    await settled(server)
    updated = await get(api, path)
    assert updated["metadata"]["annotations"]["kubernetes.io/config.hash"] != annotations["kubernetes.io/config.hash"]
    assert updated["spec"]["containers"][0]["image"].endswith("v1.32.1")

    assert static_pods(server.registry).remove("node-1", "kube-proxy", "kube-system")
    await settled(server)
    status, _, _ = await call(api, "GET", path)
    assert status == 404


async def test_node_leases_are_created_and_renewed() -> None:
    quick = dataclasses.replace(settings(2), kubelet_lease_renew_seconds=0.1)
    async with SimServer(quick) as server, aiohttp.ClientSession(base_url=server.url) as api:
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1"
        first = await eventually(lambda: get(api, path))
        assert first["spec"]["holderIdentity"] == "node-1" and first["spec"]["leaseDurationSeconds"] == 40
        assert first["metadata"]["ownerReferences"][0]["kind"] == "Node"

        async def renewed() -> Any:
            lease = await get(api, path)
            return lease if lease["spec"]["renewTime"] != first["spec"]["renewTime"] else None

        await eventually(renewed, timeout=3)
        set_node_ready(server.registry, "node-1", "Unknown")
        await asyncio.sleep(0.15)
        stale = (await get(api, path))["spec"]["renewTime"]
        await asyncio.sleep(0.3)
        assert (await get(api, path))["spec"]["renewTime"] == stale  # a dead kubelet does not heartbeat

        status, _, _ = await call(api, "DELETE", "/api/v1/nodes/node-2")
        assert status == 200
        await settled(server)
        missing, _, _ = await call(api, "GET", path.replace("node-1", "node-2"))
        assert missing == 404


async def test_heartbeats_can_be_turned_off() -> None:
    quick = dataclasses.replace(settings(1), kubelet_lease_renew_seconds=0.05, kubelet_heartbeats=False)
    async with SimServer(quick) as server, aiohttp.ClientSession(base_url=server.url) as api:
        await settled(server)
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1"
        created = await get(api, path)
        await asyncio.sleep(0.2)
        assert (await get(api, path))["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_image_names_are_normalised_like_containerd_reports_them() -> None:
    assert normalize_image("nginx:1.27") == "docker.io/library/nginx:1.27"
    assert normalize_image("nginx") == "docker.io/library/nginx:latest"
    assert normalize_image("grafana/agent:v0.40") == "docker.io/grafana/agent:v0.40"
    assert normalize_image("registry.k8s.io/pause:3.10") == "registry.k8s.io/pause:3.10"
    assert normalize_image("localhost:5000/app") == "localhost:5000/app:latest"
    digest = "sha256:" + "a" * 64
    assert normalize_image(f"nginx@{digest}") == f"docker.io/library/nginx@{digest}"
    assert image_id("docker.io/library/nginx:1.27").startswith("docker.io/library/nginx@sha256:")
    assert len(image_id("docker.io/library/nginx:1.27").split("sha256:")[1]) == 64


def test_qos_class_follows_requests_and_limits() -> None:
    def spec(**resources: Any) -> dict[str, Any]:
        return {"containers": [{"name": "c", "image": "x", "resources": resources}]}

    assert qos_class(spec()) == "BestEffort"
    assert qos_class(spec(requests={"cpu": "100m"})) == "Burstable"
    both = {"cpu": "1", "memory": "1Gi"}
    assert qos_class(spec(limits=both)) == "Guaranteed"
    assert qos_class(spec(limits=both, requests={"cpu": "1000m", "memory": "1024Mi"})) == "Guaranteed"
    assert qos_class(spec(limits=both, requests={"cpu": "500m"})) == "Burstable"


async def test_containers_outliving_a_short_grace_period_are_killed() -> None:
    async with SimServer(settings(1, kubelet_stop_seconds=2.0)) as server, aiohttp.ClientSession(server.url) as api:
        await create(api, PODS, pod("stubborn"))
        await settled(server)
        rv = (await get(api, f"{PODS}/stubborn"))["metadata"]["resourceVersion"]
        async with api.get(PODS, params={"watch": "1", "resourceVersion": rv}) as response:
            watch = WatchReader(response)
            started = time.monotonic()
            await call(api, "DELETE", f"{PODS}/stubborn", gracePeriodSeconds=1)
            seen = await watch.until(lambda e: e["type"] == "DELETED")
        assert 0.9 <= time.monotonic() - started < 1.9  # the grace period, not kubelet_stop_seconds
        stopped = seen[-2]["object"]["status"]
        assert stopped["phase"] == "Failed"
        assert stopped["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137


def test_pod_cidrs_the_kubelet_accepts() -> None:
    from nodemeta.sim.controllers.kubelet import parse_pod_cidr

    assert str(parse_pod_cidr("10.244.3.0/24")) == "10.244.3.0/24"
    assert parse_pod_cidr("10.256.0.0/24") is None
    assert parse_pod_cidr("fd00::/64") is None
    assert parse_pod_cidr("") is None
