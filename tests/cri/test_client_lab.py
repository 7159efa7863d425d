"""The CRI client against a real containerd (the lab): every answer checked against what the kernel says."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from collections.abc import AsyncIterator

import pytest

from nodemeta.cri.client import CriClient
from nodemeta.cri.model import ContainerState, CriNotFound, CriUnavailable, CriUnsupported, SandboxState
from tests.lab.harness import IPV4_SUBNET, NETWORK_NAME, ContainerdLab

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
async def runtime(clean_lab: ContainerdLab) -> AsyncIterator[CriClient]:
    async with CriClient(str(clean_lab.socket)) as client:
        yield client


def netns_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def pod_addresses(lab: ContainerdLab, sandbox_id: str) -> list[str]:
    """eth0's global addresses as `ip` sees them inside the pod's network namespace."""
    out = lab.in_pod_netns(sandbox_id, ["ip", "-o", "addr", "show", "dev", "eth0", "scope", "global"]).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


def installed_containerd() -> str:
    return subprocess.run(["containerd", "--version"], capture_output=True, text=True, check=True).stdout


def uid_of(pid: int) -> str:
    with open(f"/proc/{pid}/status") as status:
        return next(line for line in status if line.startswith("Uid:")).split()[1]


async def test_version(runtime: CriClient) -> None:
    version = await runtime.version()
    installed = installed_containerd()
    assert version.runtime_name == "containerd"
    assert version.runtime_version in installed
    assert version.runtime_api_version == "v1"


async def test_status_reports_conditions_and_cni_config(runtime: CriClient, clean_lab: ContainerdLab) -> None:
    status = await runtime.status()
    conditions = {c.type: c.status for c in status.conditions}
    assert conditions == {"RuntimeReady": True, "NetworkReady": True}
    assert status.info["lastCNILoadStatus"] == "OK"
    cni = json.loads(status.info["cniconfig"])
    assert cni["PluginConfDir"] == str(clean_lab.conf_dir)
    assert cni["PluginDirs"] == [str(clean_lab.bin_dir)]
    names = [network["Config"]["Name"] for network in cni["Networks"]]
    assert NETWORK_NAME in names
    ours = next(n for n in cni["Networks"] if n["Config"]["Name"] == NETWORK_NAME)
    assert [p["Network"]["type"] for p in ours["Config"]["Plugins"]] == ["bridge", "portmap"]


async def test_status_shows_a_broken_cni_config(runtime: CriClient, clean_lab: ContainerdLab) -> None:
    for path in clean_lab.conf_dir.iterdir():
        path.unlink()
    (clean_lab.conf_dir / "10-broken.conflist").write_text("{ not json")
    async with asyncio.timeout(20):
        status = await runtime.status()
        while status.info.get("lastCNILoadStatus") == "OK":
            await asyncio.sleep(0.1)
            status = await runtime.status()
    assert status.info["lastCNILoadStatus"] != "OK"
    assert {c.type: c.status for c in status.conditions}["NetworkReady"] is False


async def test_pod_sandbox_and_container(runtime: CriClient, clean_lab: ContainerdLab) -> None:
    lab = clean_lab
    sandbox_id = lab.run_pod("web-0", "shop", "0f4a6c1e-1d2b-4c3d-8e9f-000000000001", labels={"app": "web"})
    container_id = lab.start_container(sandbox_id, "web", run_as_user=1000, labels={"tier": "front"})

    listed_sandboxes = {row.id: row for row in await runtime.list_sandboxes()}
    assert listed_sandboxes[sandbox_id].state == SandboxState.READY
    listed_containers = {row.id: row for row in await runtime.list_containers()}
    assert listed_containers[container_id].sandbox_id == sandbox_id
    assert listed_containers[container_id].state == ContainerState.RUNNING

    sandbox = await runtime.sandbox(sandbox_id)
    assert (sandbox.name, sandbox.namespace, sandbox.uid) == ("web-0", "shop", "0f4a6c1e-1d2b-4c3d-8e9f-000000000001")
    assert sandbox.labels["app"] == "web"
    assert not (sandbox.host_network or sandbox.host_pid or sandbox.host_ipc)
    # The IPs, v4 first then v6, are those the kernel shows on the pod's eth0.
    addresses = pod_addresses(lab, sandbox_id)
    assert sandbox.ips == tuple(addresses)
    assert sandbox.ips[0].startswith(IPV4_SUBNET.split(".0.0/")[0] + ".")
    assert ":" in sandbox.ips[1]
    assert sandbox.netns_path.startswith("/var/run/netns/cni-")
    assert sandbox.pid > 0
    assert netns_of(sandbox.pid) != netns_of(lab.holder_pid)
    cni = json.loads(sandbox.cni_result)
    assert "eth0" in cni["Interfaces"]
    assert not [name for name in cni["Interfaces"] if name == "lo" or name.startswith("veth")]
    assert all("Mac" not in v and "Sandbox" not in v for v in cni["Interfaces"].values())
    assert [c["IP"] for c in cni["Interfaces"]["eth0"]["IPConfigs"]] == addresses

    container = await runtime.container(container_id)
    assert container.sandbox_id == sandbox_id
    assert (container.name, container.state) == ("web", ContainerState.RUNNING)
    assert container.image == lab.image
    assert container.labels["tier"] == "front"
    assert container.labels["io.kubernetes.pod.uid"] == sandbox.uid
    assert container.user == 1000
    assert container.pid > 0 and container.pid != sandbox.pid
    assert uid_of(container.pid) == "1000"
    assert netns_of(container.pid) == netns_of(sandbox.pid)
    assert not container.privileged


async def test_privileged_container(runtime: CriClient, clean_lab: ContainerdLab) -> None:
    sandbox_id = clean_lab.run_pod("priv-0", privileged=True)
    container_id = clean_lab.start_container(sandbox_id, "root", privileged=True)
    container = await runtime.container(container_id)
    assert container.privileged
    assert container.user == 0


async def test_exited_container(runtime: CriClient, clean_lab: ContainerdLab) -> None:
    sandbox_id = clean_lab.run_pod("job-0")
    container_id = clean_lab.start_container(sandbox_id, "job")
    clean_lab.stop_container(container_id)
    container = await runtime.container(container_id)
    assert container.state == ContainerState.EXITED
    assert container.pid == 0
    assert container.finished_at >= container.started_at > 0


async def test_host_network_sandbox(runtime: CriClient, clean_lab: ContainerdLab) -> None:
    sandbox_id = clean_lab.run_pod("node-agent-0", "kube-system", host_network=True, host_pid=True)
    sandbox = await runtime.sandbox(sandbox_id)
    assert sandbox.host_network and sandbox.host_pid and not sandbox.host_ipc
    assert sandbox.ips == ()
    assert (sandbox.netns_path, sandbox.cni_result) == ("", "")
    # The pause process shares the lab's ("the node's") network namespace.
    assert netns_of(sandbox.pid) == netns_of(clean_lab.holder_pid)


async def test_unknown_ids(runtime: CriClient, clean_lab: ContainerdLab) -> None:
    sandbox_id = clean_lab.run_pod("web-1")
    # A sandbox id asked as a container is unknown to ContainerStatus (Falco meets pause containers this way).
    with pytest.raises(CriNotFound, match="ContainerStatus"):
        await runtime.container(sandbox_id)
    with pytest.raises(CriNotFound, match="PodSandboxStatus"):
        await runtime.sandbox("f" * 64)
    assert (await runtime.sandbox(sandbox_id)).id == sandbox_id


async def test_events_unsupported_on_containerd_1_6(runtime: CriClient) -> None:
    version = await runtime.version()
    if not version.runtime_version.startswith("1.6"):
        pytest.skip(f"containerd {version.runtime_version} may implement GetContainerEvents")
    with pytest.raises(CriUnsupported, match="GetContainerEvents"):
        async for _ in runtime.events():
            pass


async def test_same_client_recovers_after_a_runtime_restart(runtime: CriClient, clean_lab: ContainerdLab) -> None:
    sandbox_id = clean_lab.run_pod("survivor-0")
    container_id = clean_lab.start_container(sandbox_id, "app")
    assert {row.id for row in await runtime.list_containers()} == {container_id}
    clean_lab.stop_containerd()
    with pytest.raises(CriUnavailable):
        await runtime.version()
    with pytest.raises(CriUnavailable):
        await runtime.list_sandboxes()
    clean_lab.start_containerd()
    async with asyncio.timeout(30):
        while True:
            try:
                await runtime.version()
                break
            except CriUnavailable:
                await asyncio.sleep(0.1)
    assert {row.id for row in await runtime.list_sandboxes()} == {sandbox_id}
    container = await runtime.container(container_id)
    assert container.state == ContainerState.RUNNING and container.pid > 0


def cgroup_lines(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cgroup") as cgroup:
        return cgroup.read().splitlines()


async def test_container_cgroup_paths_carry_the_container_id(runtime: CriClient, clean_lab: ContainerdLab) -> None:
    uid = "0f4a6c1e-1d2b-4c3d-8e9f-000000000002"
    kubelet_like = clean_lab.run_pod("cg-0", uid=uid)
    plain = clean_lab.run_pod("cg-1", cgroup_parent="")
    with_parent = await runtime.container(clean_lab.start_container(kubelet_like, "app"))
    without_parent = await runtime.container(clean_lab.start_container(plain, "app"))
    assert HEX64.match(with_parent.id) and HEX64.match(without_parent.id)

    # cgroup v1 lines are "<hierarchy>:<controllers>:<path>"; the lab hides the v2 mount, leaving "0::/".
    lines = [line for line in cgroup_lines(with_parent.pid) if not line.startswith("0::")]
    assert lines
    for line in lines:
        assert line.split(":", 2)[2] == f"/kubepods/besteffort/pod{uid}/{with_parent.id}", line
    lines = [line for line in cgroup_lines(without_parent.pid) if not line.startswith("0::")]
    assert lines
    for line in lines:
        assert line.split(":", 2)[2] == f"/k8s.io/{without_parent.id}", line
    # The sandbox's own (pause) process sits beside its containers, under its own id.
    sandbox = await runtime.sandbox(kubelet_like)
    assert all(line.endswith(f"/pod{uid}/{kubelet_like}") for line in cgroup_lines(sandbox.pid) if line[0] != "0")
