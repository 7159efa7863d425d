"""The agent on the containerd lab, through the real CRI client: the records it serves for real sandboxes and
containers equal what the test asked the runtime for, and what the pod's own network namespace and /proc say.

Ground truth is independent of the agent: the names, labels and settings the test passed to the runtime, the
addresses `ip addr` shows inside the pod's netns, and containerd's own verbose answers (pids, netns path) read
through the lab harness's separate gRPC channel.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from nodemeta.agent.settings import TruncateSettings
from tests.agent.helpers import eventually
from tests.agent.lab_agent import lab_agent, lab_settings, pod_addresses
from tests.lab.harness import IMAGE_NAME, ContainerdLab

UID = "3f0c5a1e-7b2d-4e8f-9a10-1b2c3d4e5f60"
HOST_UID = "3f0c5a1e-7b2d-4e8f-9a10-1b2c3d4e5f61"
LIMIT = TruncateSettings()


async def _get(http: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with http.get(f"http://agent{path}") as response:
        return response.status, await response.json()


async def test_real_sandboxes_and_containers_are_mirrored_as_created(clean_lab: ContainerdLab, tmp_path: Path) -> None:
    lab = clean_lab
    long_value = "v" * (LIMIT.max_value + 500)
    pod_labels = {"app": "web", "tier": "front"}
    pod_annotations = {"example.com/note": "hello", "example.com/long": long_value}
    sandbox_id = await asyncio.to_thread(
        lab.run_pod, "web-0", "shop", UID, labels=pod_labels, annotations=pod_annotations, privileged=True
    )
    app_labels = {"example.com/role": "main", "example.com/long": long_value}
    app_annotations = {"example.com/build": "42"}
    app = await asyncio.to_thread(
        lab.start_container, sandbox_id, "app", labels=app_labels, annotations=app_annotations, run_as_user=1234
    )
    side = await asyncio.to_thread(lab.start_container, sandbox_id, "sidecar", privileged=True)
    host_sandbox = await asyncio.to_thread(lab.run_pod, "node-exporter", "monitoring", HOST_UID, host_network=True)
    exporter = await asyncio.to_thread(lab.start_container, host_sandbox, "exporter")
    # What the lab (not the agent) says about them.
    addresses = await asyncio.to_thread(pod_addresses, lab, sandbox_id)
    pause_pid = await asyncio.to_thread(lab.sandbox_pid, sandbox_id)
    netns = await asyncio.to_thread(lab.sandbox_netns_path, sandbox_id)
    app_pid = await asyncio.to_thread(lab.container_pid, app)
    assert any(":" in a for a in addresses) and any("." in a for a in addresses), addresses

    settings = lab_settings(tmp_path)
    async with lab_agent(lab, settings) as agent:
        await eventually(lambda: {app, side, exporter} <= set(agent.mirror.containers), what="mirrored")
        await eventually(lambda: agent.readiness().ready, what="ready")
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=settings.api.socket)) as http:
            status, record = await _get(http, f"/v1/containers/{app}")
            assert status == 200 and record["kind"] == "container"
            c, sb, pod = record["container"], record["sandbox"], record["pod"]
            assert (c["id"], c["name"], c["sandboxId"], c["state"]) == (app, "app", sandbox_id, "running")
            assert c["image"] == IMAGE_NAME and c["imageRef"].startswith("sha256:")
            assert c["pid"] == app_pid and c["user"] == 1234 and c["privileged"] is False
            assert c["mounts"] == []  # none were asked for
            truncated = long_value[: LIMIT.max_value - len(LIMIT.marker)] + LIMIT.marker
            assert len(truncated) == LIMIT.max_value
            assert c["labels"] == {
                "example.com/role": "main",
                "example.com/long": truncated,
                "io.kubernetes.pod.name": "web-0",
                "io.kubernetes.pod.namespace": "shop",
                "io.kubernetes.pod.uid": UID,
                "io.kubernetes.container.name": "app",
            }
            assert c["annotations"] == app_annotations
            assert (sb["id"], sb["name"], sb["namespace"], sb["uid"], sb["state"]) == (
                sandbox_id, "web-0", "shop", UID, "ready",
            )  # fmt: skip
            assert sb["labels"] == {
                **pod_labels,
                "io.kubernetes.pod.name": "web-0",
                "io.kubernetes.pod.namespace": "shop",
                "io.kubernetes.pod.uid": UID,
            }
            assert sb["annotations"] == {"example.com/note": "hello", "example.com/long": truncated}
            assert set(sb["ips"]) == addresses and len(sb["ips"]) == len(addresses)
            assert "." in sb["ips"][0], "the primary address is the IPv4 one"
            assert sb["hostNetwork"] is False and sb["netnsPath"] == netns and sb["pid"] == pause_pid
            assert set(addresses) <= set(_cni_ips(sb["cniResult"]))
            # Not in the metadata (no source here): the pod as the runtime knows it.
            assert pod == {"metadata": False, "uid": UID, "name": "web-0", "namespace": "shop", "labels": pod_labels,
                           "ips": sb["ips"]}  # fmt: skip

            status, record = await _get(http, f"/v1/containers/{side[:12]}")
            assert status == 200 and record["container"]["id"] == side and record["container"]["privileged"] is True
            assert record["container"]["user"] == 0

            # A sandbox id, looked up as such and as a container id (the pause container).
            for path in (f"/v1/sandboxes/{sandbox_id}", f"/v1/containers/{sandbox_id}", f"/v1/lookup/{sandbox_id}"):
                status, record = await _get(http, path)
                assert status == 200 and record["kind"] == "sandbox", path
                assert record["sandbox"]["id"] == sandbox_id
                assert sorted(x["id"] for x in record["containers"]) == sorted([app, side])
            assert (await _get(http, f"/v1/sandboxes/{app}"))[0] == 404
            status, record = await _get(http, f"/v1/pods/{UID}")
            assert status == 200 and [s["id"] for s in record["sandboxes"]] == [sandbox_id]

            # The host-network sandbox: no pod addresses, no netns of its own.
            status, record = await _get(http, f"/v1/containers/{exporter}")
            assert status == 200
            hsb = record["sandbox"]
            assert hsb["id"] == host_sandbox and hsb["hostNetwork"] is True
            assert hsb["ips"] == [] and hsb["netnsPath"] == "" and hsb["cniResult"] == ""
            assert record["pod"]["ips"] == [] and record["pod"]["uid"] == HOST_UID


def _cni_ips(cni_result: str) -> list[str]:
    doc = json.loads(cni_result)
    return [c["IP"] for iface in doc["Interfaces"].values() for c in iface.get("IPConfigs") or ()]
