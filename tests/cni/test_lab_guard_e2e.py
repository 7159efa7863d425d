"""End to end: `nodemeta agent run --cni-guard --cni-delete-pods` as a process, against the simulator's API
(`--direct`) and the containerd lab (its socket, its conf dir, the real result cache and the pods' real network
namespaces), through the third chain-order scenario of the mesh CNI race: the primary plugin rewrites the mesh's
patched conflist in place without the mesh plugin.

node-1's pods in the simulator are real lab pods (same name, namespace and uid, the Deployment's labels on the
sandbox), owned by ReplicaSets, so the guard may delete them. Which pods must be captured is said with a label
selector (`mesh=lab` -> the Linkerd profile, whose rules the test mesh plugin installs); the mesh plugin is
required by its real type. Ground truth is what the test did to the lab and the simulator; every effect is read
back from the simulator's API over HTTP (one check with kubectl), and the guard's own view from the agent's
`GET /v1/cni`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from nodemeta.kube import ApiClient, NotFound, load_config
from nodemeta.sim import SimServer, SimSettings
from tests.cni.conf_writers import truncate_write
from tests.cni.lab_chain import BRIDGE_CHAIN, MESH, MESH_CHAIN, RESULTS_DIR, SELECTED, encode, wait_loaded, with_mesh
from tests.collector.test_app import DEPLOY_RES, NS_RES, settled_view
from tests.lab.harness import CONFLIST_NAME, ContainerdLab
from tests.processes import nodemeta_process

NODE = "node-1"
NS = "shop"
TAINT = "nodemeta.io/cni-not-ready"
LABEL = "nodemeta.io/cni-uncaptured"


def _workloads(sim: SimServer) -> None:
    """Two one-replica Deployments pinned to node-1 whose pods must be captured: `web` (started while the chain is
    right) and `late` (started after the primary dropped the mesh plugin)."""
    sim.registry.create(NS_RES, "", {"metadata": {"name": NS}})
    for name in ("web", "late"):
        labels = {"app": name, **SELECTED}
        sim.registry.create(DEPLOY_RES, NS, {
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": labels}, "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": NODE},
                    "containers": [{"name": "app", "image": "busybox"}],
                }},
            },
        })  # fmt: skip


def _pod_of(sim: SimServer, app: str) -> tuple[str, str, dict[str, str]]:
    """(name, uid, labels) of the Deployment's pod on node-1, from the simulator's store."""
    found = [
        s for s in sim.store.buckets["pods"].items.values()
        if s.field("spec.nodeName") == NODE and s.key.startswith(f"{NS}/{app}-")
    ]  # fmt: skip
    assert len(found) == 1, [s.key for s in found]
    return found[0].key.split("/")[1], found[0].uid, dict(found[0].labels)


def _agent(args: list[str]) -> contextlib.AbstractAsyncContextManager[asyncio.subprocess.Process]:
    return nodemeta_process("agent", "run", "--node-name", NODE,
                            "--metrics-bind-address", "0", "--health-probe-bind-address", "0", *args)  # fmt: skip


async def _until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30.0) -> Any:
    """The first truthy value of `check`, polled; fails naming `what`."""
    try:
        async with asyncio.timeout(timeout):
            while not (value := await check()):  # noqa: ASYNC110 - polling another process through its API
                await asyncio.sleep(0.1)
            return value
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Api:
    """The simulator's API as read by the test."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def get(self, path: str) -> Any:
        return orjson.loads(await self.client.send("GET", path))

    async def taints(self) -> list[str]:
        node = await self.get(f"/api/v1/nodes/{NODE}")
        return [t["key"] + ":" + t["effect"] for t in node.get("spec", {}).get("taints") or ()]

    async def pod(self, name: str) -> Any | None:
        try:
            return await self.get(f"/api/v1/namespaces/{NS}/pods/{name}")
        except NotFound:
            return None

    async def events(self, kind: str, name: str, namespace: str) -> list[Any]:
        items = (await self.get(f"/api/v1/namespaces/{namespace}/events"))["items"]
        return [e for e in items if e["involvedObject"]["kind"] == kind and e["involvedObject"]["name"] == name]


async def test_the_agents_guard_taints_warns_holds_then_deletes_and_untaints(
    clean_lab: ContainerdLab, tmp_path: Path
) -> None:
    lab = clean_lab
    truncate_write(lab.conf_dir, CONFLIST_NAME, encode(with_mesh(lab)))
    await asyncio.to_thread(wait_loaded, lab, MESH_CHAIN)

    async with SimServer(SimSettings(nodes=2, seed=7, kubelet_stop_seconds=0.05)) as sim:
        _workloads(sim)
        await settled_view(sim, NODE)
        web, web_uid, web_labels = _pod_of(sim, "web")
        late, late_uid, late_labels = _pod_of(sim, "late")
        web_sandbox = await asyncio.to_thread(lab.run_pod, web, NS, web_uid, labels=web_labels)
        await asyncio.to_thread(lab.start_container, web_sandbox, "app")

        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        host = tmp_path / "host"  # node-1's / as the agent's container sees it: the runtime socket and /proc
        (host / "run" / "containerd").mkdir(parents=True)
        os.symlink(lab.socket, host / "run" / "containerd" / "containerd.sock")
        os.symlink("/proc", host / "proc")
        sock = tmp_path / "agent.sock"
        args = [
            "--direct", "--kubeconfig", str(kubeconfig), "--host-root", str(host), "--socket", str(sock),
            "--cni-guard", "--cni-delete-pods", "--cni-conf-dir", str(lab.conf_dir), "--cni-require", MESH,
            "--cni-selector", "linkerd:mesh=lab", "--cni-results-dir", RESULTS_DIR, "--cni-audit-interval", "0.5",
            "--cni-rescan-interval", "1", "--cni-taint-clear-after", "1", "--cni-delete-after", "0.5",
        ]  # fmt: skip
        async with (
            ApiClient(await load_config(str(kubeconfig))) as client,
            _agent(args),
            aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as http,
        ):
            api = Api(client)

            async def guard() -> Any:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get("http://agent/v1/cni") as response:
                        if response.status == 200:
                            return await response.json()
                return None

            async def guard_says(predicate: Callable[[Any], bool]) -> Any:
                state = await guard()
                return state if state is not None and predicate(state) else None

            # (1) The chain is right and the web pod is captured: nothing to do.
            state = await _until(
                lambda: guard_says(lambda s: s["configValid"] and {p["uid"]: p["state"] for p in s["pods"]} == {
                    web_uid: "captured"}), "the guard to see the web pod captured")  # fmt: skip
            assert state["chain"] == MESH_CHAIN and state["winner"] == CONFLIST_NAME and state["findings"] == []
            assert await api.taints() == []
            web_pod = await api.pod(web)
            assert web_pod is not None and LABEL not in web_pod["metadata"].get("labels", {})

            # (2) The primary rewrites its conflist in place without the mesh plugin: the node is tainted.
            truncate_write(lab.conf_dir, CONFLIST_NAME, encode(lab.default_conflist()))
            await _until(lambda: _has(api.taints(), f"{TAINT}:NoSchedule"), "the taint")
            kubectl = shutil.which("kubectl")
            assert kubectl is not None, "kubectl is not installed"
            done = await asyncio.to_thread(
                subprocess.run,
                [kubectl, "--kubeconfig", str(kubeconfig), "get", "node", NODE, "-o", "jsonpath={.spec.taints}"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert orjson.loads(done.stdout) == [{"key": TAINT, "effect": "NoSchedule"}]
            node_events = await _until(
                lambda: _reasons(api.events("Node", NODE, "default"), {"CNIRewriteDroppedPlugin"}),
                "the Node Event naming the finding",
            )
            dropped = node_events["CNIRewriteDroppedPlugin"]
            assert dropped["source"] == {"component": "nodemeta-agent", "host": NODE}
            assert dropped["type"] == "Warning" and MESH in dropped["message"] and CONFLIST_NAME in dropped["message"]

            # (3) A pod started now gets the bridge chain only: uncaptured. A Warning Event on the Pod and the
            # label; its deletion is due but held while the configuration is broken.
            await asyncio.to_thread(wait_loaded, lab, BRIDGE_CHAIN)
            late_sandbox = await asyncio.to_thread(lab.run_pod, late, NS, late_uid, labels=late_labels)
            await asyncio.to_thread(lab.start_container, late_sandbox, "app")
            pod_events = await _until(
                lambda: _reasons(api.events("Pod", late, NS), {"PodNotCaptured"}), "the Pod's Warning Event"
            )
            warning = pod_events["PodNotCaptured"]
            assert warning["type"] == "Warning" and warning["involvedObject"]["uid"] == late_uid
            assert "plugin-missing-at-add" in warning["message"]
            await _until(lambda: _labeled(api, late), "the uncaptured label")
            state = await _until(
                lambda: guard_says(lambda s: f"{NS}/{late}" in ((s["lastReport"] or {}).get("held") or {})),
                "the deletion to be held",
            )
            assert "broken" in state["lastReport"]["held"][f"{NS}/{late}"]
            assert {p["uid"]: p["state"] for p in state["pods"]} == {web_uid: "captured", late_uid: "missing"}
            ticks = state["ticks"]
            await _until(lambda: guard_says(lambda s: s["ticks"] >= ticks + 2), "two more ticks")
            held = await api.pod(late)
            assert held is not None and held["metadata"]["uid"] == late_uid
            assert not held["metadata"].get("deletionTimestamp")

            # (4) The mesh installer patches the chain back: the uncaptured pod is deleted (its replacement will
            # be networked through the mesh plugin), then the taint goes after the hold time.
            truncate_write(lab.conf_dir, CONFLIST_NAME, encode(with_mesh(lab)))
            await _until(lambda: _deleted(api, late, late_uid), "the uncaptured pod's deletion")
            deleted = await _until(
                lambda: _reasons(api.events("Pod", late, NS), {"PodDeletedForRepair"}), "the deletion Event"
            )
            assert deleted["PodDeletedForRepair"]["involvedObject"]["uid"] == late_uid
            await _until(lambda: _empty(api.taints()), "the taint to be removed")
            node_events = await _until(
                lambda: _reasons(
                    api.events("Node", NODE, "default"),
                    {"CNINotReadyTaintAdded", "CNINotReadyTaintRemoved", "CNIChainHealthy"},
                ),
                "the Node's recovery Events",
            )
            assert node_events["CNIChainHealthy"]["type"] == "Normal"

            # The captured pod was never touched.
            web_pod = await api.pod(web)
            assert web_pod is not None and web_pod["metadata"]["uid"] == web_uid
            assert LABEL not in web_pod["metadata"].get("labels", {})
            assert not web_pod["metadata"].get("deletionTimestamp")
            assert not [
                e for e in await api.events("Pod", web, NS) if e.get("source", {}).get("component") == "nodemeta-agent"
            ]
            state = await guard()
            assert state is not None and state["configValid"] and state["taint"] is False


async def _has(values: Awaitable[list[str]], wanted: str) -> bool:
    return wanted in await values


async def _empty(values: Awaitable[list[str]]) -> bool:
    return not await values


async def _reasons(events: Awaitable[list[Any]], wanted: set[str]) -> dict[str, Any] | None:
    """The events by reason once every wanted reason is there."""
    by_reason = {e["reason"]: e for e in await events}
    return by_reason if wanted <= by_reason.keys() else None


async def _labeled(api: Api, name: str) -> bool:
    pod = await api.pod(name)
    return pod is not None and pod["metadata"].get("labels", {}).get(LABEL) == "true"


async def _deleted(api: Api, name: str, uid: str) -> bool:
    pod = await api.pod(name)
    return pod is None or pod["metadata"]["uid"] != uid or bool(pod["metadata"].get("deletionTimestamp"))


pytestmark = pytest.mark.lab
