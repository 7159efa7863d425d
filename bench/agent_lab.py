"""Node agent benchmark on a real containerd (the test suite's lab): lookup latency, CRI calls, memory.

A private containerd lab runs `--pods` pods (default 110, the kubelet's default maximum) with one container each,
named and uid'd like the pods of a Deployment in the in-process simulator, so the agent joins every container with
its metadata. The agent runs as `nodemeta agent run --direct` in its own process, finding containerd itself under
a `--host-root`. Measured:

* RSS of the agent process once it holds every pod;
* `GET /v1/containers/{id}` over the unix socket, three ways: one keep-alive connection with a minimal HTTP/1.1
  client (the agent's cost plus the kernel's), one keep-alive aiohttp session, a new connection per lookup;
  a control of the same length on the client side (a fixed CPU loop) gives the machine's scheduling noise;
* in-process lookups (`Joiner.by_id` by 12-char prefix, `Joiner.by_pid` of a real container process) with an agent
  in this process on the same lab, and the length of a full garbage collection of its heap before and after
  `gc.freeze()`;
* CRI status calls the agent made for the initial listing, per container and per sandbox, and for a few complete
  container lifetimes (created, started, stopped, removed), from the agent's /metrics.

Run as root on a machine that can run the lab: `.venv/bin/python -m bench.agent_lab [--pods N] [--lookups N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from bench.measure import Contention
from tests.collector.test_app import DEPLOY_RES, settled_view
from tests.lab.harness import ContainerdLab

from nodemeta.agent.app import Agent
from nodemeta.agent.direct_source import DirectMode
from nodemeta.agent.settings import AgentSettings, ApiSettings
from nodemeta.cri.client import CriClient
from nodemeta.kube import load_config
from nodemeta.sim import SimServer, SimSettings

NODE = "node-1"
NS = "default"


def percentiles(samples: list[float], over: float = 1.0) -> dict[str, float]:
    """p50/p99/max, and how many samples exceeded `over` (1 ms for the millisecond series)."""
    ordered = sorted(samples)
    n = len(ordered)
    return {
        "n": n,
        "p50": round(ordered[n // 2], 3),
        "p99": round(ordered[min(n - 1, int(n * 0.99))], 3),
        "max": round(ordered[-1], 3),
        f"over_{over:g}": sum(1 for s in ordered if s > over),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RawClient:
    """HTTP/1.1 GETs on one keep-alive unix-socket connection: as little client code as a lookup can take."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buffer = b""

    def get(self, target: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: agent\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buffer = rest[length:]
        return int(lines[0].split()[1]), rest[:length]

    def close(self) -> None:
        self.sock.close()


def timed(samples: list[float], call: Callable[[], Any]) -> Any:
    t = time.perf_counter()
    out = call()
    samples.append((time.perf_counter() - t) * 1e3)
    return out


def socket_lookups(path: str, ids: list[str], count: int) -> dict[str, Any]:
    """Raw keep-alive, new connection per lookup, and the CPU-loop control; in a thread (blocking sockets)."""
    raw: list[float] = []
    client = RawClient(path)
    for i in range(count):
        status, _ = timed(raw, lambda i=i: client.get(f"/v1/containers/{ids[i % len(ids)]}"))
        assert status == 200
    client.close()
    fresh: list[float] = []
    for i in range(count // 5):

        def once(i: int = i) -> None:
            c = RawClient(path)
            try:
                assert c.get(f"/v1/containers/{ids[i % len(ids)]}")[0] == 200
            finally:
                c.close()

        timed(fresh, once)
    # The control: a CPU loop as long as a typical raw lookup, timed the same way.
    target = statistics.median(raw) / 1e3
    spins = 1000
    t = time.perf_counter()
    for _ in range(spins):
        pass
    per_spin = (time.perf_counter() - t) / spins
    loop_n = max(1, int(target / per_spin))
    control: list[float] = []

    def spin() -> None:
        for _ in range(loop_n):
            pass

    for _ in range(count):
        timed(control, spin)
    return {"raw_keepalive_ms": percentiles(raw), "new_connection_ms": percentiles(fresh),
            "control_cpu_loop_ms": percentiles(control)}  # fmt: skip


async def aiohttp_lookups(path: str, ids: list[str], count: int) -> dict[str, Any]:
    samples: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path)) as http:
        for i in range(count):
            t = time.perf_counter()
            async with http.get(f"http://agent/v1/containers/{ids[i % len(ids)]}") as response:
                await response.read()
            samples.append((time.perf_counter() - t) * 1e3)
    return percentiles(samples)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def metric_values(text: str, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def status_calls(metrics_text: str, method: str) -> int:
    return int(sum(v for k, v in metric_values(metrics_text, "nodemeta_agent_cri_calls_total").items()
                   if f'method="{method}"' in k))  # fmt: skip


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    try:
        async with http.get(url) as response:
            return response.status, await response.text()
    except aiohttp.ClientError:
        return 0, ""


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - another process's state
            await asyncio.sleep(0.1)


async def in_process(lab: ContainerdLab, sim: SimServer, tmp: Path, ids: list[str], pids: list[int],
                     count: int) -> dict[str, Any]:  # fmt: skip
    """An agent in this process on the same lab and simulator: lookups without any transport, and GC pauses."""
    config = await load_config(str(sim.write_kubeconfig(tmp / "kubeconfig-inproc")))
    settings = AgentSettings(node_name=NODE, api=ApiSettings(socket=str(tmp / "inproc.sock")), metrics_address=None,
                             probe_address=None)  # fmt: skip
    async with CriClient(str(lab.socket)) as runtime:
        agent = Agent(settings, runtime, lambda sink: DirectMode(config, NODE, sink))
        task = asyncio.create_task(agent.run())
        try:
            async with asyncio.timeout(120):
                while not (agent.readiness().ready and len(agent.mirror.containers) >= len(ids)):  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            joiner = agent.joiner
            by_id: list[float] = []
            for i in range(count):
                key = ids[i % len(ids)][:12]
                t = time.perf_counter()
                joiner.by_id(key)
                by_id.append((time.perf_counter() - t) * 1e6)
            by_pid: list[float] = []
            for i in range(count):
                t = time.perf_counter()
                record = joiner.by_pid(pids[i % len(pids)])
                by_pid.append((time.perf_counter() - t) * 1e6)
            assert record is not None and record["pod"]["metadata"] is True
            frozen = gc.get_freeze_count()
            gc.unfreeze()
            pauses = []
            for _ in range(3):
                t = time.perf_counter()
                gc.collect()
                pauses.append((time.perf_counter() - t) * 1e3)
            gc.freeze()
            t = time.perf_counter()
            gc.collect()
            after = (time.perf_counter() - t) * 1e3
            return {
                "by_id_12char_us": percentiles(by_id, 50.0),
                "by_pid_us": percentiles(by_pid, 50.0),
                "gc_objects": len(gc.get_objects()) + gc.get_freeze_count(),
                "agent_froze_objects": frozen,
                "full_gc_ms_unfrozen": [round(p, 2) for p in pauses],
                "full_gc_ms_frozen": round(after, 3),
            }
        finally:
            agent.stop()
            await task


async def main(pods: int, lookups: int, lifetimes: int) -> dict[str, Any]:
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
                              "cpus": os.cpu_count(), "python": platform.python_version(), "pods": pods}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        lab_dir = tmp / "lab"
        lab_dir.mkdir()
        async with SimServer(SimSettings(nodes=1, seed=3, kubelet_stop_seconds=0.05)) as sim:
            sim.registry.create(DEPLOY_RES, NS, {
                "metadata": {"name": "bench", "labels": {"app": "bench"}},
                "spec": {"replicas": pods, "selector": {"matchLabels": {"app": "bench"}},
                         "template": {"metadata": {"labels": {"app": "bench"}},
                                      "spec": {"containers": [{"name": "app", "image": "busybox"}]}}},
            })  # fmt: skip
            await settled_view(sim, NODE, timeout=120)
            stored = sorted((s for s in sim.store.buckets["pods"].items.values()), key=lambda s: s.key)
            lab = ContainerdLab(lab_dir)
            await asyncio.to_thread(lab.start)
            try:
                t0 = time.perf_counter()
                ids: list[str] = []
                for s in stored:
                    sandbox_id = await asyncio.to_thread(lab.run_pod, s.key.split("/")[1], NS, s.uid,
                                                         labels=dict(s.labels))  # fmt: skip
                    ids.append(await asyncio.to_thread(lab.start_container, sandbox_id, "app"))
                report["lab_pods_started_s"] = round(time.perf_counter() - t0, 1)
                pids = [await asyncio.to_thread(lab.container_pid, cid) for cid in ids]
                report["subprocess"] = await subprocess_agent(lab, sim, tmp, ids, lookups, lifetimes)
                report["in_process"] = await in_process(lab, sim, tmp, ids, pids, lookups * 4)
            finally:
                await asyncio.to_thread(lab.close)
    return report


async def subprocess_agent(lab: ContainerdLab, sim: SimServer, tmp: Path, ids: list[str], lookups: int,
                           lifetimes: int) -> dict[str, Any]:  # fmt: skip
    host = tmp / "host"
    (host / "run" / "containerd").mkdir(parents=True)
    os.symlink(lab.socket, host / "run" / "containerd" / "containerd.sock")
    os.symlink("/proc", host / "proc")
    kubeconfig = sim.write_kubeconfig(tmp / "kubeconfig")
    sock = str(tmp / "agent.sock")
    probe, metrics_port = free_port(), free_port()
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodemeta.cli", "agent", "run", "--node-name", NODE, "--direct",
        "--kubeconfig", str(kubeconfig), "--host-root", str(host), "--socket", sock,
        "--health-probe-bind-address", f"127.0.0.1:{probe}", "--metrics-bind-address", f"127.0.0.1:{metrics_port}",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as http:
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"

            async def ready() -> bool:
                status, _ = await fetch(http, f"http://127.0.0.1:{probe}/readyz")
                _, text = await fetch(http, metrics_url)
                held = metric_values(text, "nodemeta_agent_containers").get("nodemeta_agent_containers", 0)
                return status == 200 and held >= len(ids)

            await wait_for(ready, 120)
            out["ready_after_s"] = round(time.perf_counter() - started, 1)
            _, text = await fetch(http, metrics_url)
            out["initial_container_status_calls_per_container"] = status_calls(text, "ContainerStatus") / len(ids)
            out["initial_sandbox_status_calls_per_sandbox"] = status_calls(text, "PodSandboxStatus") / len(ids)
            out["list_calls"] = status_calls(text, "ListContainers")
            await aiohttp_lookups(sock, ids, 500)  # warm-up
            out["rss_mib"] = round(rss_mib(process.pid), 1)
            contention = Contention()
            _, text = await fetch(http, metrics_url)
            gc_before = metric_values(text, "python_gc_collections_total")
            out.update(await asyncio.to_thread(socket_lookups, sock, ids, lookups))
            out["aiohttp_keepalive_ms"] = await aiohttp_lookups(sock, ids, lookups)
            out["contention"] = contention.result()
            _, text = await fetch(http, metrics_url)
            out["agent_gc_collections_during_lookups"] = {
                k.split('"')[1]: v - gc_before.get(k, 0.0)
                for k, v in metric_values(text, "python_gc_collections_total").items()
            }
            out["rss_mib_after_lookups"] = round(rss_mib(process.pid), 1)
            # Whole container lifetimes at the agent's default relist pace, counted from its /metrics.
            sandbox_id = next(iter(lab.pods))
            per: list[int] = []
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock)) as api:

                async def state_of(cid: str) -> str:
                    status, text = await fetch(api, f"http://agent/v1/containers/{cid}")
                    return str(json.loads(text)["container"]["state"]) if status == 200 else "absent"

                for n in range(lifetimes):
                    _, text = await fetch(http, metrics_url)
                    before = status_calls(text, "ContainerStatus")
                    cid = await asyncio.to_thread(lab.create_container, sandbox_id, f"life-{n}")
                    await wait_for(lambda c=cid: _is(state_of(c), "created"), 30)  # type: ignore[misc]
                    await asyncio.to_thread(_start, lab, cid)
                    await wait_for(lambda c=cid: _is(state_of(c), "running"), 30)  # type: ignore[misc]
                    await asyncio.to_thread(lab.remove_container, cid)
                    await wait_for(lambda c=cid: _is(state_of(c), "absent"), 30)  # type: ignore[misc]
                    _, text = await fetch(http, metrics_url)
                    per.append(status_calls(text, "ContainerStatus") - before)
            out["lifetime_container_status_calls"] = per
    finally:
        process.terminate()
        await process.wait()
    return out


async def _is(state: Any, wanted: str) -> bool:
    return bool(await state == wanted)


def _start(lab: ContainerdLab, cid: str) -> None:
    from nodemeta.api.cri.runtime.v1 import api_pb2 as cri

    lab.stub.StartContainer(cri.StartContainerRequest(container_id=cid), timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=110)
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument("--lifetimes", type=int, default=3)
    parser.add_argument("--json", default="", help="also write the report here")
    a = parser.parse_args()
    result = asyncio.run(main(a.pods, a.lookups, a.lifetimes))
    text = json.dumps(result, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text)
