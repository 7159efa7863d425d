"""The agent end to end in-process: in-memory runtime + direct metadata from the simulator, the lookup API over a
real unix socket, the lookup command as a subprocess, the change stream with a slow reader, and
`nodemeta agent run` as a subprocess against `nodemeta sim serve` (SIGTERM -> exit 0)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.truth import node_view
from tests.agent.fake_runtime import FakeRuntime, container, sandbox
from tests.agent.helpers import agent_settings, direct, eventually, running_agent
from tests.collector.test_app import e2e_resources, settled_view

NODE = "node-1"


def _mirror_pods(sim: SimServer, runtime: FakeRuntime) -> list[tuple[str, Any]]:
    """Give every pod on the node a sandbox and two containers in the runtime, named as the kubelet names them."""
    out = []
    for n, stored in enumerate(sorted(sim.store.buckets["pods"].items.values(), key=lambda s: s.key), start=1):
        if stored.field("spec.nodeName") != NODE:
            continue
        ns, name = stored.key.split("/")
        sb = runtime.add_sandbox(sandbox(n, uid=stored.uid, name=name, namespace=ns))
        runtime.add_container(container(2 * n, sb, name="main"))
        runtime.add_container(container(2 * n + 1, sb, name="sidecar"))
        out.append((stored.uid, sb))
    return out


async def _get(session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with session.get(f"http://agent{path}") as response:
        return response.status, await response.json()


async def test_lookups_over_the_unix_socket_and_the_lookup_command(tmp_path: Path) -> None:
    async with SimServer(SimSettings(nodes=2, seed=5, kubelet_stop_seconds=0.05)) as sim:
        e2e_resources(sim)
        await settled_view(sim, NODE)
        runtime = FakeRuntime()
        pods = _mirror_pods(sim, runtime)
        settings = agent_settings(tmp_path, NODE)
        async with running_agent(settings, runtime, await direct(sim, tmp_path, NODE)) as agent:
            await eventually(lambda: agent.readiness().ready, what="ready")
            view = node_view(sim.store, NODE)
            connector = aiohttp.UnixConnector(path=settings.api.socket)
            async with aiohttp.ClientSession(connector=connector) as http:
                for uid, sb in pods:
                    truth = view[("Pod", uid)]
                    expected_meta = json.loads(truth.meta)
                    cid = next(c.id for c in runtime.containers.values() if c.sandbox_id == sb.id and c.name == "main")
                    for path in (f"/v1/containers/{cid}", f"/v1/containers/{cid[:12]}", f"/v1/lookup/{cid}"):
                        status, record = await _get(http, path)
                        assert status == 200, path
                        assert record["kind"] == "container" and record["container"]["id"] == cid
                        pod = record["pod"]
                        assert pod["metadata"] is True and pod["uid"] == uid
                        assert pod["name"] == expected_meta["name"] and pod["labels"] == expected_meta.get("labels", {})
                        assert pod["ips"] == list(sb.ips)  # IPv4 and IPv6 from the runtime
                        assert record["sandbox"]["cniResult"] == sb.cni_result
                        refs = dict(truth.refs or {})
                        assert [s["uid"] for s in pod["services"]] == list(refs["Service"])
                        assert pod["namespaceUid"] == refs["Namespace"][0]
                        ns_meta = json.loads(view[("Namespace", refs["Namespace"][0])].meta)
                        assert pod["namespaceLabels"] == ns_meta.get("labels", {})
                        owners = [(o["kind"], o["uid"]) for o in pod["owners"]]
                        expected_owners = [(k, u) for k, us in refs.items() if k not in ("Namespace", "Service")
                                           for u in us]  # fmt: skip
                        assert sorted(owners) == sorted(expected_owners)
                        if any(k == "ReplicaSet" for k, _ in owners):
                            assert [k for k, _ in owners] == ["ReplicaSet", "Deployment"]
                    status, record = await _get(http, f"/v1/sandboxes/{sb.id}")
                    assert status == 200 and record["kind"] == "sandbox" and len(record["containers"]) == 2
                    status, record = await _get(http, f"/v1/containers/{sb.id}")  # a pause container's id
                    assert status == 200 and record["kind"] == "sandbox"
                    status, record = await _get(http, f"/v1/pods/{uid}")
                    assert status == 200 and {c["name"] for c in record["containers"]} == {"main", "sidecar"}
                assert (await _get(http, "/v1/containers/" + "0" * 64))[0] == 404
                assert (await _get(http, "/v1/pids/abc"))[0] == 400
                assert (await _get(http, "/v1/pids/999999"))[0] == 404
                async with http.get("http://agent/healthz") as response:
                    assert response.status == 200
                async with http.get("http://agent/readyz") as response:
                    assert response.status == 200
            # The lookup command, as a person runs it.
            some = next(iter(runtime.containers))
            done = await _cli("agent", "lookup", "--socket", settings.api.socket, some[:12])
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["container"]["id"] == some
            done = await _cli("agent", "lookup", "--socket", settings.api.socket, "f" * 64)
            assert done.returncode == 1 and "no container, sandbox, process or pod" in done.stderr
            metrics = f"http://127.0.0.1:{agent.metrics_port}/metrics"
            async with aiohttp.ClientSession() as http, http.get(metrics) as response:
                body = await response.text()
            assert f"nodemeta_agent_containers {float(2 * len(pods))}" in body
            assert 'nodemeta_agent_lookups_total{by="container",result="found"}' in body
            assert 'nodemeta_agent_cri_calls_total{method="ListContainers",outcome="ok"}' in body
    done = await _cli("agent", "lookup", "--socket", str(tmp_path / "nobody.sock"), "1")
    assert done.returncode == 3 and "cannot reach the agent" in done.stderr


async def test_pid_lookup_through_a_host_root(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    sb = runtime.add_sandbox(sandbox(1))
    c = runtime.add_container(container(2, sb))
    proc = tmp_path / "host" / "proc" / "4242"
    proc.mkdir(parents=True)
    proc.joinpath("cgroup").write_text(
        f"0::/kubepods.slice/kubepods-pod{sb.uid.replace('-', '_')}.slice/cri-containerd-{c.id}.scope\n"
    )
    async with SimServer(SimSettings(nodes=1, seed=1, controllers=())) as sim:
        settings = agent_settings(tmp_path, NODE, host_root=str(tmp_path / "host"))
        async with running_agent(settings, runtime, await direct(sim, tmp_path, NODE)) as agent:
            await eventually(lambda: c.id in agent.mirror.containers)
            record = agent.joiner.lookup("4242")
            assert record is not None and record["container"]["id"] == c.id and record["pid"] == 4242
            assert record["pod"]["metadata"] is False and record["pod"]["uid"] == sb.uid  # not in the API
            assert agent.joiner.lookup("4243") is None


async def test_changes_stream_and_a_slow_reader(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    async with SimServer(SimSettings(nodes=1, seed=1, controllers=())) as sim:
        settings = agent_settings(tmp_path, NODE)
        async with running_agent(settings, runtime, await direct(sim, tmp_path, NODE)) as agent:
            await eventually(lambda: agent.readiness().ready)
            # A reader that reads, and one that connects and never reads (a tiny receive buffer).
            connector = aiohttp.UnixConnector(path=settings.api.socket)
            async with (
                aiohttp.ClientSession(connector=connector) as http,
                http.get("http://agent/v1/changes") as response,
            ):
                await eventually(lambda: len(agent.hub.subscribers) == 1)
                slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
                slow.connect(settings.api.socket)
                slow.sendall(b"GET /v1/changes HTTP/1.1\r\nHost: agent\r\n\r\n")
                await eventually(lambda: len(agent.hub.subscribers) == 2)
                sb = runtime.add_sandbox(sandbox(1))
                made = [runtime.add_container(container(n, sb)) for n in range(2, 400)]
                seen: list[dict[str, Any]] = []
                async with asyncio.timeout(15):
                    while not any(e["type"].endswith("container.created") and e["subject"] == made[-1].id
                                      for e in seen[-5:]):  # fmt: skip
                        line = await response.content.readline()
                        seen.append(json.loads(line))
                assert seen[0]["specversion"] == "1.0" and seen[0]["source"] == f"nodemeta-agent/{NODE}"
                created = {e["subject"] for e in seen if e["type"] == "io.nodemeta.agent.container.created"}
                assert {c.id for c in made} <= created
                assert agent.metrics.change_disconnects._value.get() >= 1, "the slow reader was dropped"
                assert len(agent.hub.subscribers) == 1
                slow.close()


async def _cli(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodemeta.cli", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(timeout):
        out, err = await process.communicate()
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_agent_run_subprocess_not_ready_without_runtime_then_sigterm(tmp_path: Path) -> None:
    sim_port = _free_port()
    kubeconfig = tmp_path / "kubeconfig"
    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodemeta.cli", "sim", "serve", "--port", str(sim_port), "--nodes", "1",
        "--kubeconfig", str(kubeconfig), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    probe_port = _free_port()
    try:
        await eventually(kubeconfig.exists, 20, "the simulator wrote its kubeconfig")
        sock = tmp_path / "agent.sock"
        agent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nodemeta.cli", "agent", "run", "--node-name", "node-1", "--direct",
            "--kubeconfig", str(kubeconfig), "--cri-socket", str(tmp_path / "nothing-listens.sock"),
            "--socket", str(sock), "--metrics-bind-address", "0",
            "--health-probe-bind-address", f"127.0.0.1:{probe_port}",
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as http:

                async def status(path: str) -> tuple[int, str]:
                    try:
                        async with http.get(f"http://127.0.0.1:{probe_port}{path}") as response:
                            return response.status, await response.text()
                    except aiohttp.ClientError:
                        return 0, ""

                async with asyncio.timeout(20):
                    while (await status("/healthz"))[0] != 200:  # noqa: ASYNC110 - another process
                        await asyncio.sleep(0.1)
                    # The metadata syncs, the runtime never answers: not ready, and /readyz says why.
                    while "metadata" in (ready := await status("/readyz"))[1]:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                assert ready[0] == 503 and "container runtime" in ready[1], ready
            agent.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                _, err = await agent.communicate()
            assert agent.returncode == 0, err.decode()[-2000:]
            assert b'"msg":"agent stopped"' in err
            assert not sock.exists()
        finally:
            if agent.returncode is None:
                agent.kill()
                await agent.wait()
    finally:
        sim.send_signal(signal.SIGTERM)
        await sim.wait()


async def test_missing_node_name_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodemeta.cli", "agent", "run", "--direct", "--socket", str(tmp_path / "s"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    _, err = await process.communicate()
    assert process.returncode == 2
    assert b"--node-name" in err and b"NODE_NAME" in err and b"spec.nodeName" in err
