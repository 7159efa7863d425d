"""End to end: the simulator, a real collector serving gRPC, and one agent per simulated node, where node-1's pods
are real containerd pods (the lab) with the same name, namespace and uid as the simulator's pods on node-1.

* node-1's agent is `nodemeta agent run` as a subprocess, found its runtime itself: no `--cri-socket`, a
  `--host-root` whose `run/containerd/containerd.sock` is the lab's socket (and whose `proc` is the host's), so the
  default candidates and `discover_runtime` are what picks it. `nodemeta agent lookup <container id>` (the CLI, over
  the agent's unix socket) must return the simulator's metadata for the pod (`nodemeta.sim.truth`: labels,
  namespace labels, owners ReplicaSet -> Deployment, services) joined with what the runtime reports (container,
  sandbox, the pod's IPv4 and IPv6 addresses as its own network namespace shows them; `pod.ip` stays the API's
  status.podIP, which the simulated kubelet chose). A label edit and a Service selector change in the simulator
  then reach the record.
* node-2 and node-3 have no containers anywhere: the simulator runs no runtime for them. Their agents run
  in-process with a runtime socket nobody serves (so the runtime side is unreachable, as on a node whose runtime is
  down) and answer from metadata alone: their own pods by uid, and 404 for node-1's containers and pods.
* The same with `--direct` (API watches instead of the collector) for every agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nodemeta.agent.app import Agent
from nodemeta.agent.metastore import MetadataSink
from nodemeta.cri.finder import RuntimeFinder
from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.truth import node_view
from tests.agent.helpers import agent_settings, collector, direct, eventually, running_agent
from tests.agent.lab_agent import pod_addresses
from tests.collector.test_app import DEPLOY_RES, NS_RES, POD_RES, SVC_RES, running_collector, settled_view
from tests.lab.harness import ContainerdLab
from tests.processes import nodemeta_process

LAB_NODE = "node-1"
OTHER_NODES = ("node-2", "node-3")
NS = "shop"
Source = Callable[[MetadataSink], Any]


def _workloads(sim: SimServer) -> None:
    """A namespace with labels; a Deployment pinned to node-1 and one spread over the cluster; a bare pod on
    node-1; a Service selecting the pinned pods, one selecting nothing yet."""
    reg = sim.registry
    reg.create(NS_RES, "", {"metadata": {"name": NS, "labels": {"team": "checkout", "env": "test"}}})
    containers = [{"name": "app", "image": "busybox"}]
    for name, replicas, pinned in (("web", 2, True), ("spread", 3, False)):
        template_spec: dict[str, Any] = {"containers": containers}
        if pinned:
            template_spec["nodeSelector"] = {"kubernetes.io/hostname": LAB_NODE}
        reg.create(DEPLOY_RES, NS, {
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name, "version": "v1"}}, "spec": template_spec},
            },
        })  # fmt: skip
    reg.create(POD_RES, NS, {
        "metadata": {"name": "debug", "labels": {"app": "debug"}},
        "spec": {"nodeName": LAB_NODE, "containers": containers},
    })  # fmt: skip
    reg.create(
        SVC_RES, NS, {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    )
    reg.create(
        SVC_RES, NS, {"metadata": {"name": "edge"}, "spec": {"selector": {"tier": "edge"}, "ports": [{"port": 80}]}}
    )


def _pods_on(sim: SimServer, node: str) -> list[Any]:
    return sorted(
        (s for s in sim.store.buckets["pods"].items.values() if s.field("spec.nodeName") == node), key=lambda s: s.key
    )


def _expected_pod(sim: SimServer, node: str, uid: str) -> dict[str, Any]:
    """What the record's `pod` must say, from the simulator's ground truth alone."""
    view = node_view(sim.store, node)
    truth = view[("Pod", uid)]
    meta = json.loads(truth.meta)
    refs = dict(truth.refs or {})
    ns_meta = json.loads(view[("Namespace", refs["Namespace"][0])].meta)
    owners = []
    for kind in ("ReplicaSet", "Deployment"):
        for owner_uid in refs.get(kind, ()):
            owners.append({"kind": kind, "uid": owner_uid, "name": json.loads(view[(kind, owner_uid)].meta)["name"]})
    services = [{"uid": s, "name": json.loads(view[("Service", s)].meta)["name"]} for s in refs.get("Service", ())]
    return {
        "uid": uid,
        "name": meta["name"],
        "namespace": meta["namespace"],
        "labels": meta.get("labels", {}),
        "namespaceUid": refs["Namespace"][0],
        "namespaceLabels": ns_meta.get("labels", {}),
        "owners": owners,
        "services": services,
        "ip": json.loads(truth.status or "{}").get("podIP", ""),
    }


def _pod_part(record: dict[str, Any]) -> dict[str, Any]:
    pod = record["pod"]
    return {k: pod.get(k) for k in ("uid", "name", "namespace", "labels", "namespaceUid", "namespaceLabels", "owners",
                                    "services", "ip")}  # fmt: skip


async def _cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodemeta.cli", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(timeout):
        out, err = await process.communicate()
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())


def _agent_process(args: list[str], sock: Path) -> contextlib.AbstractAsyncContextManager[asyncio.subprocess.Process]:
    return nodemeta_process("agent", "run", "--node-name", LAB_NODE, "--socket", str(sock),
                            "--metrics-bind-address", "0", "--health-probe-bind-address", "0", *args)  # fmt: skip


@contextlib.asynccontextmanager
async def _other_agent(tmp_path: Path, node: str, source: Source) -> AsyncIterator[Agent]:
    settings = agent_settings(tmp_path / node, node)
    (tmp_path / node).mkdir()
    async with (
        RuntimeFinder([str(tmp_path / node / "no-runtime.sock")]) as runtime,
        running_agent(settings, runtime, source, timeout=15) as agent,
    ):
        yield agent


async def _lookup(http: aiohttp.ClientSession, key: str) -> tuple[int, Any]:
    async with http.get(f"http://agent/v1/lookup/{key}") as response:
        return response.status, await response.json()


@pytest.mark.parametrize("mode", ["collector", "direct"])
async def test_a_real_container_answers_with_the_simulators_metadata(
    mode: str, clean_lab: ContainerdLab, tmp_path: Path
) -> None:
    lab = clean_lab
    async with SimServer(SimSettings(nodes=3, seed=11, kubelet_stop_seconds=0.05)) as sim:
        _workloads(sim)
        for node in (LAB_NODE, *OTHER_NODES):
            await settled_view(sim, node)
        lab_pods = _pods_on(sim, LAB_NODE)
        assert {p.key.split("/")[1].split("-")[0] for p in lab_pods} >= {"web", "debug"}
        # node-1's pods, for real: same name, namespace, uid and labels; one container each.
        containers: dict[str, tuple[str, str]] = {}  # pod uid -> (sandbox id, container id)
        for stored in lab_pods:
            ns, name = stored.key.split("/")
            sandbox_id = await asyncio.to_thread(lab.run_pod, name, ns, stored.uid, labels=dict(stored.labels))
            containers[stored.uid] = (sandbox_id, await asyncio.to_thread(lab.start_container, sandbox_id, "app"))
        addresses = {uid: await asyncio.to_thread(pod_addresses, lab, sb) for uid, (sb, _) in containers.items()}

        # node-1's host, as the agent's container would see it: the runtime socket and /proc.
        host = tmp_path / "host"
        (host / "run" / "containerd").mkdir(parents=True)
        os.symlink(lab.socket, host / "run" / "containerd" / "containerd.sock")
        os.symlink("/proc", host / "proc")
        sock = tmp_path / "lab-agent.sock"

        async with contextlib.AsyncExitStack() as stack:
            if mode == "collector":
                port = (await stack.enter_async_context(running_collector(sim, tmp_path))).grpc_port
                source_args = ["--collector", f"127.0.0.1:{port}"]
                sources = {node: collector(port, node) for node in OTHER_NODES}
            else:
                kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
                source_args = ["--direct", "--kubeconfig", str(kubeconfig)]
                sources = {node: await direct(sim, tmp_path, node) for node in OTHER_NODES}
            others = {node: await stack.enter_async_context(_other_agent(tmp_path, node, sources[node]))
                      for node in OTHER_NODES}  # fmt: skip
            await stack.enter_async_context(_agent_process([*source_args, "--host-root", str(host)], sock))
            http = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock)))
            )

            def joined(uid: str, record: dict[str, Any]) -> bool:
                return record.get("pod", {}).get("metadata") is True and _pod_part(record) == _expected_pod(
                    sim, LAB_NODE, uid
                )

            async def converged() -> None:
                async with asyncio.timeout(30):
                    for uid, (_, cid) in containers.items():
                        while True:
                            with contextlib.suppress(aiohttp.ClientError, OSError):
                                status, record = await _lookup(http, cid)
                                if status == 200 and joined(uid, record):
                                    break
                            await asyncio.sleep(0.1)

            await converged()
            # The CLI, as a person runs it, for every real container.
            for uid, (sandbox_id, cid) in containers.items():
                done = await _cli("agent", "lookup", "--socket", str(sock), cid)
                assert done.returncode == 0, done.stderr
                record = json.loads(done.stdout)
                assert record["kind"] == "container" and record["container"]["id"] == cid
                assert record["container"]["name"] == "app" and record["sandbox"]["id"] == sandbox_id
                assert _pod_part(record) == _expected_pod(sim, LAB_NODE, uid)
                assert set(record["pod"]["ips"]) == addresses[uid] and "." in record["pod"]["ips"][0]
                assert record["sandbox"]["ips"] == record["pod"]["ips"]
                if record["pod"]["name"].startswith("web-"):
                    assert [o["kind"] for o in record["pod"]["owners"]] == ["ReplicaSet", "Deployment"]
                    assert [s["name"] for s in record["pod"]["services"]] == ["web"]

            # Changes in the simulator reach the records: a label edit that makes a pod match the "edge"
            # Service, and the "web" Service's selector moved off the web pods.
            edited = next(p for p in lab_pods if p.key.split("/")[1].startswith("web-"))
            pod = sim.registry.get(POD_RES, NS, edited.key.split("/")[1]).decode()
            pod["metadata"]["labels"] = {**pod["metadata"]["labels"], "tier": "edge"}
            sim.registry.update(POD_RES, NS, pod["metadata"]["name"], pod)
            svc = sim.registry.get(SVC_RES, NS, "web").decode()
            svc["spec"]["selector"] = {"app": "debug"}
            sim.registry.update(SVC_RES, NS, "web", svc)
            await settled_view(sim, LAB_NODE)
            await converged()
            done = await _cli("agent", "lookup", "--socket", str(sock), containers[edited.uid][1][:12])
            assert done.returncode == 0, done.stderr
            record = json.loads(done.stdout)
            assert record["pod"]["labels"]["tier"] == "edge"
            assert [s["name"] for s in record["pod"]["services"]] == ["edge"]
            debug_uid = next(p.uid for p in lab_pods if p.key == f"{NS}/debug")
            status, record = await _lookup(http, containers[debug_uid][1])
            assert status == 200 and [s["name"] for s in record["pod"]["services"]] == ["web"]

            # The other nodes' agents answer for their own node only.
            for node, agent in others.items():
                own = _pods_on(sim, node)
                assert own, f"the spread Deployment put nothing on {node}"
                await eventually(lambda a=agent: a.metadata_synced, what=f"{node} synced")  # type: ignore[misc]
                assert not agent.runtime_sync.available
                for stored in own:
                    record = agent.joiner.lookup(stored.uid)
                    assert record is not None and record["kind"] == "pod", (node, stored.key)
                    assert _pod_part(record) == _expected_pod(sim, node, stored.uid)
                    assert record["containers"] == [] and record["sandboxes"] == []
                async with aiohttp.ClientSession(
                    connector=aiohttp.UnixConnector(path=agent.settings.api.socket)
                ) as other_http:
                    for uid, (sandbox_id, cid) in containers.items():
                        assert (await _lookup(other_http, cid))[0] == 404
                        assert (await _lookup(other_http, sandbox_id))[0] == 404
                        assert (await _lookup(other_http, uid))[0] == 404
