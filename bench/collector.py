"""Benchmark of `nodemeta collector run` against the simulator, every piece in its own process, loopback only.

    .venv/bin/python bench/collector.py run --sizes 200x30x200,1000x30x1000 --json /tmp/collector.json

For each size NODESxPODSxSUBSCRIBERS:
 1. `nodemeta sim serve` builds a generated cluster (no component events, no kubelet heartbeats, one-step start);
 2. a counting TCP proxy (its own process) sits between the collector and the simulator, so the API load the
    collector causes (requests, watch requests, open watches, bytes both ways) is counted without touching it;
 3. `nodemeta collector run` starts; time to /readyz 200, RSS and CPU are read from /proc;
 4. S subscribers (nodemeta.v1 batched stream, grpc.aio, one channel each, spread over client processes), one per
    node, connect; time until all of them got `initial_sync_complete`;
 5. the collector is restarted (SIGTERM, then a new process on the same ports); the subscribers reconnect with
    jittered exponential backoff and resume; time until every one has completed its initial sync again;
 6. latency under churn: the bench merge-patches a label `bench-ts` (send time, ns) onto pods of subscribed nodes
    at R changes/s, straight to the simulator; subscribers read it back from the event's meta JSON;
 7. API load comparison in the same run: N simulated direct agents (list+watch pods by spec.nodeName plus the
    cluster-wide small kinds) and M full-cluster agents (list+watch everything cluster-wide), counted client-side.

Processes: `run` (this orchestrator), `proxy`, `subs` (subscriber clients) and `agents` (simulated agents).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
PY = sys.executable
NODEMETA = [str(Path(PY).parent / "nodemeta")]

sys.path.insert(0, str(HERE.parent))
from measure import Contention, Profiler, cpu_pressure_us, proc_cpu_seconds, raise_nofile_limit  # noqa: E402
from sim_scale import machine_facts, proc_memory_kib  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


# -- counting proxy ------------------------------------------------------------------------------------------------

REQ_RE = re.compile(rb"(?:GET|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.1\r\n")


async def proxy_main(args: argparse.Namespace) -> None:
    stats = {"connections": 0, "open_connections": 0, "requests": 0, "watch_requests": 0, "list_requests": 0,
             "open_watches": 0, "peak_open_watches": 0, "bytes_down": 0, "bytes_up": 0}  # fmt: skip

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        stats["connections"] += 1
        stats["open_connections"] += 1
        in_watch = [False]
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", args.upstream)
        except OSError:
            cw.close()
            return

        def set_watch(on: bool) -> None:
            if on != in_watch[0]:
                stats["open_watches"] += 1 if on else -1
                in_watch[0] = on
                stats["peak_open_watches"] = max(stats["peak_open_watches"], stats["open_watches"])

        async def up() -> None:
            while data := await cr.read(65536):
                stats["bytes_up"] += len(data)
                for m in REQ_RE.finditer(data):
                    stats["requests"] += 1
                    watch = b"watch=true" in m.group(1) or b"watch=1" in m.group(1)
                    stats["watch_requests" if watch else "list_requests"] += 1
                    set_watch(watch)
                uw.write(data)
                await uw.drain()
            uw.close()

        async def down() -> None:
            while data := await ur.read(262144):
                stats["bytes_down"] += len(data)
                cw.write(data)
                await cw.drain()
            cw.close()

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        set_watch(False)
        stats["open_connections"] -= 1
        for w in (cw, uw):
            with contextlib.suppress(Exception):
                w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", args.port)
    out = Path(args.stats)
    while True:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        os.replace(tmp, out)
        await asyncio.sleep(0.5)
    del server


# -- subscribers ---------------------------------------------------------------------------------------------------


async def subs_main(args: argparse.Namespace) -> None:
    import grpc

    from nodemeta.api.nodemeta.v1 import stream_pb2, stream_pb2_grpc

    nodes = args.nodes.split(",")
    state = {"syncs": [0] * len(nodes), "synced": [False] * len(nodes), "errors": 0, "events": 0, "lat": []}
    marker = '"bench-ts":"'

    async def one(i: int, node: str) -> None:
        session, revision, failures = "", 0, 0
        # A connection of its own, as every node agent has: without a local subchannel pool, grpc shares one
        # connection among the channels of a process that have the same target and options.
        # grpc's own reconnect backoff (1 s growing to 120 s) sits under the bench's: cap it at the bench's 2 s, so
        # a channel that failed while the collector restarted does not sleep long after it is ready again.
        options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.use_local_subchannel_pool", 1),
                   ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 2000)]  # fmt: skip
        channel = grpc.aio.insecure_channel(args.target, options=options)
        stub = stream_pb2_grpc.NodeMetadataStub(channel)
        while True:
            try:
                call = stub.Watch(stream_pb2.WatchRequest(node_name=node, session_id=session, resume_revision=revision))
                async for batch in call:
                    now = time.time_ns()
                    if batch.session_id:
                        session = batch.session_id
                    revision = batch.revision or revision
                    state["events"] += len(batch.events)
                    for ev in batch.events:
                        meta = ev.meta
                        k = meta.find(marker)
                        if k >= 0:
                            sent = int(meta[k + len(marker) : meta.index('"', k + len(marker))])
                            if sent > 0:
                                state["lat"].append((sent / 1e9, (now - sent) / 1e6))
                    if batch.initial_sync_complete:
                        state["syncs"][i] += 1
                        state["synced"][i] = True
                        failures = 0
            except grpc.aio.AioRpcError:
                pass
            state["errors"] += 1
            state["synced"][i] = False
            failures += 1
            delay = min(0.1 * 2 ** min(failures, 5), 2.0)
            await asyncio.sleep(delay * (0.5 + random.random()))

    tasks = []
    for i, node in enumerate(nodes):
        tasks.append(asyncio.create_task(one(i, node)))
        if i % 50 == 49:
            await asyncio.sleep(0)
    while True:
        syncs = state["syncs"]
        line = {"t": time.time(), "pid": os.getpid(), "n": len(nodes), "synced": sum(state["synced"]),
                "ge1": sum(1 for s in syncs if s >= 1), "ge2": sum(1 for s in syncs if s >= 2),
                "errors": state["errors"], "events": state["events"], "lat": state["lat"]}  # fmt: skip
        state["lat"] = []
        print(json.dumps(line), flush=True)
        await asyncio.sleep(0.25)


class SubsGroup:
    """Several `subs` processes; aggregates their status lines."""

    def __init__(self, target: str, nodes: list[str], procs: int, nice: int = 0) -> None:
        self.nice = nice
        self.status: dict[int, dict[str, Any]] = {}
        # (send time, latency ms, client process) of every delivery: how slow, when and where.
        self.timed: list[tuple[float, float, int]] = []
        self.procs: list[asyncio.subprocess.Process] = []
        self.readers: list[asyncio.Task[None]] = []
        self.target, self.nodes, self.n = target, nodes, procs

    async def start(self) -> None:
        chunk = (len(self.nodes) + self.n - 1) // self.n
        for k in range(self.n):
            part = self.nodes[k * chunk : (k + 1) * chunk]
            p = await asyncio.create_subprocess_exec(
                PY, str(HERE), "subs", "--target", self.target, "--nodes", ",".join(part),
                stdout=subprocess.PIPE, limit=1 << 26, preexec_fn=partial(os.nice, self.nice) if self.nice else None,
            )  # fmt: skip
            self.procs.append(p)
            self.readers.append(asyncio.create_task(self._read(k, p)))

    async def _read(self, k: int, p: asyncio.subprocess.Process) -> None:
        assert p.stdout
        while line := await p.stdout.readline():
            d = json.loads(line)
            self.timed.extend((t, ms, k) for t, ms in d.pop("lat"))
            self.status[k] = d

    def total(self, key: str) -> int:
        return sum(s[key] for s in self.status.values()) if len(self.status) == self.n else 0

    async def wait(self, key: str, want: int, timeout: float) -> float | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.total(key) >= want:
                return time.monotonic() - t0
            await asyncio.sleep(0.05)
        return None

    def cpu(self) -> float:
        return sum(proc_cpu_seconds(p.pid) for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()


# -- simulated agents (API load) -----------------------------------------------------------------------------------

SMALL_KINDS = ["/api/v1/namespaces", "/api/v1/services", "/apis/apps/v1/replicasets", "/apis/apps/v1/deployments",
               "/apis/apps/v1/daemonsets", "/api/v1/replicationcontrollers"]  # fmt: skip


async def agents_main(args: argparse.Namespace) -> None:
    import aiohttp

    base = f"http://127.0.0.1:{args.port}"
    nodes = args.nodes.split(",") if args.nodes else []
    n = len(nodes) if args.mode == "direct" else args.count
    st = {"requests": 0, "watch_requests": 0, "bytes": 0, "open_watches": 0, "agents_listed": 0, "errors": 0}
    sem = asyncio.Semaphore(args.concurrency)
    conn = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None, sock_read=None))

    async def watch(path: str, params: dict[str, str], rv: str) -> None:
        st["requests"] += 1
        st["watch_requests"] += 1
        try:
            async with session.get(base + path, params={**params, "watch": "true", "resourceVersion": rv,
                                                         "allowWatchBookmarks": "true"}) as r:  # fmt: skip
                st["open_watches"] += 1
                try:
                    async for chunk in r.content.iter_any():
                        st["bytes"] += len(chunk)
                finally:
                    st["open_watches"] -= 1
        except (TimeoutError, aiohttp.ClientError):
            st["errors"] += 1

    async def agent(i: int) -> None:
        paths: list[tuple[str, dict[str, str]]] = []
        if args.mode == "direct":
            paths.append(("/api/v1/pods", {"fieldSelector": f"spec.nodeName={nodes[i]}"}))
        else:
            paths.append(("/api/v1/pods", {}))
        paths += [(p, {}) for p in SMALL_KINDS]
        rvs = []
        async with sem:
            for path, params in paths:
                try:
                    async with session.get(base + path, params=params) as r:
                        body = await r.read()
                    st["requests"] += 1
                    st["bytes"] += len(body)
                    rvs.append(json.loads(body).get("metadata", {}).get("resourceVersion", "0"))
                except (aiohttp.ClientError, ValueError):
                    st["errors"] += 1
                    rvs.append("0")
        st["agents_listed"] += 1
        await asyncio.gather(*(watch(p, q, rv) for (p, q), rv in zip(paths, rvs, strict=True)))

    tasks = [asyncio.create_task(agent(i)) for i in range(n)]
    t0 = time.monotonic()
    while True:
        print(json.dumps({"t": time.monotonic() - t0, **st}), flush=True)
        await asyncio.sleep(0.5)
    del tasks


async def run_agents(port: int, mode: str, nodes: list[str], count: int, window: float, budget: float,
                     sim_pid: int, churn: Any = None) -> dict[str, Any]:  # fmt: skip
    cpu0, c0, t0 = proc_cpu_seconds(sim_pid), Contention(), time.monotonic()
    p = await asyncio.create_subprocess_exec(
        PY, str(HERE), "agents", "--port", str(port), "--mode", mode, "--nodes", ",".join(nodes),
        "--count", str(count), "--concurrency", "50", stdout=subprocess.PIPE, limit=1 << 24,
    )  # fmt: skip
    want = len(nodes) if mode == "direct" else count
    last: dict[str, Any] = {}
    listed_at = None
    assert p.stdout
    try:
        while time.monotonic() - t0 < budget:
            line = await asyncio.wait_for(p.stdout.readline(), timeout=budget)
            if not line:
                break
            last = json.loads(line)
            if listed_at is None and last["agents_listed"] >= want and last["open_watches"] >= want * 7:
                listed_at = time.monotonic() - t0
                b_listed = last["bytes"]
                if churn is not None:
                    churn_task = asyncio.create_task(churn())
            if listed_at is not None and time.monotonic() - t0 >= listed_at + window:
                break
    except TimeoutError:
        pass
    out = {"mode": mode, "agents": want, "completed_agents": last.get("agents_listed", 0), **last,
           "seconds_to_list_and_watch": listed_at, "sim_cpu_s": proc_cpu_seconds(sim_pid) - cpu0,
           "wall_s": time.monotonic() - t0, "contention": c0.result(),
           "agents_rss_kib": proc_memory_kib(p.pid).get("VmRSS")}  # fmt: skip
    if listed_at is not None:
        out["watch_bytes_in_window"] = last["bytes"] - b_listed
        if churn is not None:
            out["churn_in_window"] = await churn_task
    p.kill()
    await p.wait()
    return out


# -- plain grpc baseline -------------------------------------------------------------------------------------------


async def echo_server_main(args: argparse.Namespace) -> None:
    """A plain grpc.aio server: each call gets one message of --payload bytes, then waits; SIGTERM ends every call
    with UNAVAILABLE (as the collector does) and stops the server with a 5 s grace."""
    import grpc

    stop = asyncio.Event()
    body = b"x" * args.payload

    async def watch(_request: bytes, context: Any) -> None:
        await context.write(body)
        await stop.wait()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "shutting down")

    server = grpc.aio.server()
    handler = grpc.unary_stream_rpc_method_handler(watch)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", {"Watch": handler}),))
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    done = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, done.set)
    print("ready", flush=True)
    await done.wait()
    stop.set()
    await server.stop(5)


async def echo_clients_main(args: argparse.Namespace) -> None:
    import grpc

    got = [0]
    options = [("grpc.use_local_subchannel_pool", 1)] if args.own_connections else []

    async def one() -> None:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{args.port}", options=options)
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for _ in channel.unary_stream("/bench.Echo/Watch")(b""):
                got[0] += 1

    tasks = [asyncio.create_task(one()) for _ in range(args.count)]
    while True:
        print(got[0], flush=True)
        await asyncio.sleep(0.5)
    del tasks


def grpc_baseline_main(args: argparse.Namespace) -> None:
    """RSS per stream of a plain grpc.aio server with N streams (clients in 4 other processes), and its SIGTERM
    time: what gRPC itself costs, without the collector."""
    port = free_port()
    server = subprocess.Popen([PY, str(HERE), "echo-server", "--port", str(port), "--payload", str(args.payload)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert server.stdout
    server.stdout.readline()
    base = proc_memory_kib(server.pid)["VmRSS"]
    per = args.streams // 4
    argv = [PY, str(HERE), "echo-clients", "--port", str(port), "--count", str(per)]
    clients = [subprocess.Popen(argv + (["--own-connections"] if args.own_connections else []), stdout=subprocess.PIPE)
               for _ in range(4)]  # fmt: skip
    t0 = time.monotonic()
    counts = [0] * 4
    while sum(counts) < per * 4 and time.monotonic() - t0 < args.timeout:
        for k, c in enumerate(clients):
            assert c.stdout
            counts[k] = int(c.stdout.readline())
    connected = time.monotonic() - t0
    time.sleep(2)
    rss = proc_memory_kib(server.pid)["VmRSS"]
    t1 = time.monotonic()
    server.send_signal(signal.SIGTERM)
    server.wait(60)
    stop = time.monotonic() - t1
    for c in clients:
        c.kill()
    out = {"streams": sum(counts), "payload_bytes": args.payload, "own_connections": args.own_connections,
           "seconds_to_connect": round(connected, 2), "rss_mib_idle": round(base / 1024, 1),
           "rss_mib_with_streams": round(rss / 1024, 1), "kib_per_stream": round((rss - base) / max(1, sum(counts)), 1),
           "sigterm_to_exit_s": round(stop, 2)}  # fmt: skip
    print(json.dumps(out), flush=True)


# -- orchestrator --------------------------------------------------------------------------------------------------


class Proc:
    def __init__(self, argv: list[str], name: str, workdir: Path) -> None:
        self.name = name
        self.err = open(workdir / f"{name}.stderr", "ab")  # noqa: SIM115
        self.p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.err, cwd=ROOT)
        self.path = workdir / f"{name}.stderr"

    @property
    def pid(self) -> int:
        return self.p.pid

    def stop(self, timeout: float = 20) -> float:
        t0 = time.monotonic()
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return time.monotonic() - t0


def pressure() -> int | None:
    return cpu_pressure_us()


def listen_overflows() -> int | None:
    """The machine's count of connections dropped because a listener's accept queue was full (TcpExtListenOverflows):
    each is a client whose SYN goes unanswered and is retried after 1, 3, 7, 15 s. Machine-wide."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table["ListenOverflows"]) if "ListenOverflows" in table else None
    return None


async def http_get(url: str) -> tuple[int, bytes]:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.read()


async def wait_ready(url: str, proc: Proc, timeout: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.p.poll() is not None:
            raise RuntimeError(f"{proc.name} exited {proc.p.returncode}; see {proc.path}")
        with contextlib.suppress(Exception):
            status, _ = await http_get(url)
            if status == 200:
                return time.monotonic() - t0
        await asyncio.sleep(0.05)
    return None


class Sampler:
    """Peak RSS and CPU of some pids, sampled every 0.25 s."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.cpu0, self.t0 = pid, 0, proc_cpu_seconds(pid), time.monotonic()
        self.psi0 = pressure()
        self.overflows0 = listen_overflows()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, proc_memory_kib(self.pid).get("VmRSS", 0))
            await asyncio.sleep(0.25)

    def finish(self) -> dict[str, Any]:
        self.task.cancel()
        wall = time.monotonic() - self.t0
        cpu = proc_cpu_seconds(self.pid) - self.cpu0
        psi = pressure()
        overflows = listen_overflows()
        mem = proc_memory_kib(self.pid)
        return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cpu_cores": round(cpu / wall, 2) if wall else None,
                "rss_mib": round(mem.get("VmRSS", 0) / 1024, 1), "peak_rss_mib": round(self.peak / 1024, 1),
                "hwm_mib": round(mem.get("VmHWM", 0) / 1024, 1),
                "listen_overflows": overflows - self.overflows0
                if overflows is not None and self.overflows0 is not None else None,
                "cpu_pressure_some_pct": round((psi - self.psi0) / 1e4 / wall, 1)
                if psi and self.psi0 and wall else None}  # fmt: skip


def profile(args: argparse.Namespace, pid: int, workdir: Path, phase: str) -> Profiler:
    """py-spy on the collector for one phase when --profile is given (a no-op otherwise)."""
    path = str(workdir / f"profile-{phase}.txt") if args.profile else ""
    prof = Profiler(pid, path, rate=100, nonblocking=True, wait=15, top=25)
    prof.start()
    return prof


def others_running() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,pcpu,args"], capture_output=True, text=True).stdout
    return [line.strip()[:150] for line in out.splitlines() if re.search(r"sim_scale|sim_cluster", line)
            and "grep" not in line]  # fmt: skip


async def run_size(nodes: int, ppn: int, subs: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import aiohttp

    r: dict[str, Any] = {"size": f"{nodes}x{ppn}x{subs}", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "others_running_at_start": others_running(), "client_nice": args.client_nice}  # fmt: skip
    sim_port, proxy_port, grpc_port, probe_port = free_port(), free_port(), free_port(), free_port()
    kube = workdir / "sim.kubeconfig"
    sim_cmd = [*NODEMETA, "sim", "serve", "--port", str(sim_port), "--kubeconfig", str(kube), "--nodes", str(nodes),
               "--pods-per-node", str(ppn), "--seed", "1", "--component-events", "off", "--no-kubelet-heartbeats",
               "--kubelet-one-step-start", "--history-limit", "200000"]  # fmt: skip
    r["sim_cmd"] = " ".join(sim_cmd[1:])
    log(f"{r['size']}: starting simulator")
    t0 = time.monotonic()
    sim = Proc(sim_cmd, "sim", workdir)
    procs: list[Proc] = [sim]
    group: SubsGroup | None = None
    try:
        while "cluster ready:" not in sim.path.read_text(errors="replace"):
            if sim.p.poll() is not None or time.monotonic() - t0 > args.build_timeout:
                raise RuntimeError(f"simulator did not get ready; see {sim.path}")
            await asyncio.sleep(0.5)
        r["sim_build_s"] = round(time.monotonic() - t0, 1)
        r["sim_rss_mib_after_build"] = round(proc_memory_kib(sim.pid)["VmRSS"] / 1024, 1)
        log(f"cluster ready in {r['sim_build_s']} s")
        # pods and their nodes, straight from the simulator
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{sim_port}/api/v1/pods") as resp:
            pods = (await resp.json())["items"]
        by_node: dict[str, list[tuple[str, str]]] = {}
        for p in pods:
            by_node.setdefault(p["spec"].get("nodeName", ""), []).append(
                (p["metadata"]["namespace"], p["metadata"]["name"])
            )
        node_names = sorted(n for n in by_node if n)
        r["pods"] = len(pods)
        del pods
        # One subscriber per node; with more subscribers than nodes, the nodes take turns (2 streams on a node
        # are two agents there, each with its own session and connection).
        sub_nodes = [node_names[i % len(node_names)] for i in range(subs)]
        r["subscribers_per_node_max"] = (subs + len(node_names) - 1) // len(node_names)
        # proxy and collector
        pstats = workdir / "proxy.json"
        proxy = Proc([PY, str(HERE), "proxy", "--port", str(proxy_port), "--upstream", str(sim_port),
                      "--stats", str(pstats)], "proxy", workdir)  # fmt: skip
        procs.append(proxy)
        ckube = workdir / "collector.kubeconfig"
        ckube.write_text(kube.read_text().replace(f":{sim_port}", f":{proxy_port}"))
        await asyncio.sleep(0.5)
        launcher = [PY, str(HERE), "collector-gc"] if args.gc_log else NODEMETA
        col_cmd = [*launcher, "--log-level", args.collector_log_level, "collector", "run", "--kubeconfig", str(ckube),
                   "--broker-bind-address", f"127.0.0.1:{grpc_port}", "--metrics-bind-address", "0",
                   "--health-probe-bind-address", f"127.0.0.1:{probe_port}"]  # fmt: skip
        r["collector_cmd"] = " ".join(col_cmd[1:])
        readyz = f"http://127.0.0.1:{probe_port}/readyz"
        col = Proc(col_cmd, "collector", workdir)
        procs.append(col)
        smp = Sampler(col.pid)
        ready = await wait_ready(readyz, col, args.ready_timeout)
        r["ready"] = {"seconds": round(ready, 2) if ready else None, **smp.finish()}
        with contextlib.suppress(Exception):
            r["ready"]["api_load"] = json.loads(pstats.read_text())
        log(f"collector ready: {r['ready']}")
        if ready is None:
            return r
        # subscribers: initial sync
        nproc = max(1, (len(sub_nodes) + 1249) // 1250) if len(sub_nodes) > 300 else 1
        nproc = max(nproc, 2) if len(sub_nodes) >= 1000 else nproc
        group = SubsGroup(f"127.0.0.1:{grpc_port}", sub_nodes, nproc, args.client_nice)
        smp = Sampler(col.pid)
        prof = profile(args, col.pid, workdir, "initial")
        await group.start()
        t = await group.wait("ge1", len(sub_nodes), args.phase_timeout)
        r["initial_sync"] = {"subscribers": len(sub_nodes), "client_procs": nproc,
                             "seconds": round(t, 2) if t else None,
                             "got": group.total("ge1"), "events": group.total("events"), **smp.finish(),
                             "client_cpu_s": round(group.cpu(), 1), "profile": await prof.stop()}  # fmt: skip
        log(f"initial sync: {r['initial_sync']}")
        await asyncio.sleep(2)
        r["idle_after_sync"] = {"rss_mib": round(proc_memory_kib(col.pid)["VmRSS"] / 1024, 1)}
        # restart and resync
        prof = profile(args, col.pid, workdir, "shutdown")
        if args.profile:
            await asyncio.sleep(1.0)  # py-spy attaches before the signal
        t0 = time.monotonic()
        psi0 = pressure()
        cpu_before_stop = proc_cpu_seconds(col.pid)
        overflows_before_stop = listen_overflows()
        stop_task = asyncio.create_task(asyncio.to_thread(col.stop))
        cpu_stop = cpu_before_stop
        while not stop_task.done():  # the collector's CPU until it exits (read while /proc still has it)
            with contextlib.suppress(OSError):
                cpu_stop = proc_cpu_seconds(col.pid)
            await asyncio.sleep(0.05)
        overflows_after_stop = listen_overflows()
        r["restart"] = {"stop_s": round(await stop_task, 2), "stop_cpu_s": round(cpu_stop - cpu_before_stop, 2),
                        "stop_listen_overflows": overflows_after_stop - overflows_before_stop
                        if overflows_after_stop is not None and overflows_before_stop is not None else None,
                        "stop_profile": await prof.stop()}  # fmt: skip
        col = Proc(col_cmd, "collector", workdir)
        procs.append(col)
        smp = Sampler(col.pid)
        ready = await wait_ready(readyz, col, args.ready_timeout)
        r["restart"]["ready_s_after_start"] = round(ready, 2) if ready else None
        prof = profile(args, col.pid, workdir, "resync")
        rest = args.phase_timeout - (time.monotonic() - t0)
        t = await group.wait("ge2", len(sub_nodes), max(rest, 1))
        r["restart"]["profile"] = await prof.stop()
        total = time.monotonic() - t0
        r["restart"].update({"resync_s_from_sigterm": round(total, 2) if t is not None else None,
                             "resync_s_after_ready": round(total - (ready or 0) - r["restart"]["stop_s"], 2)
                             if t is not None else None,
                             "resynced": group.total("ge2"), "subscribers": len(sub_nodes),
                             **smp.finish()})  # fmt: skip
        psi = pressure()
        if psi and psi0:
            r["restart"]["cpu_pressure_some_pct_whole"] = round((psi - psi0) / 1e4 / total, 1)
        log(f"restart: {r['restart']}")
        # latency under churn
        if group.total("synced") >= len(sub_nodes) * 0.99:
            r["churn"] = await churn_phase(sim_port, by_node, sub_nodes, group, col.pid, col.path, sim.pid, args)
            log(f"churn: {r['churn']}")
        r["collector_rss_mib_end"] = round(proc_memory_kib(col.pid)["VmRSS"] / 1024, 1)
        with contextlib.suppress(Exception):
            r["collector_api_load_total"] = json.loads(pstats.read_text())
        r["subscriber_client_cpu_s"] = round(group.cpu(), 1)
        group.stop()
        group = None
        await asyncio.sleep(5)
        r["collector_rss_mib_5s_after_subscribers_left"] = round(proc_memory_kib(col.pid)["VmRSS"] / 1024, 1)
        # API load comparison (collector keeps running, its watches are counted by the proxy)
        if args.no_agents:
            return r
        targets = [p for n in dict.fromkeys(sub_nodes) for p in by_node[n]]
        win = args.agent_window

        def churn_for(name: str) -> Any:
            async def go() -> dict[str, Any]:
                before = json.loads(pstats.read_text())
                out = await drive_patches(sim_port, targets, args.rate, win - 1)
                await asyncio.sleep(0.6)
                after = json.loads(pstats.read_text())
                out["collector_watch_bytes"] = after["bytes_down"] - before["bytes_down"]
                out["collector_open_watches"] = after["open_watches"]
                return out

            return go

        agent_nodes = list(dict.fromkeys(sub_nodes))[: args.direct_agents]
        r["agents_direct"] = await run_agents(sim_port, "direct", agent_nodes, 0, win,
                                              args.agent_budget, sim.pid,
                                              churn_for("direct"))  # fmt: skip
        log(f"direct agents: {r['agents_direct']}")
        r["agents_full"] = await run_agents(sim_port, "full", [], args.full_agents, win, args.agent_budget, sim.pid,
                                            churn_for("full"))  # fmt: skip
        log(f"full agents: {r['agents_full']}")
        return r
    finally:
        if group:
            group.stop()
        for p in reversed(procs):
            p.stop(10)


async def drive_patches(sim_port: int, targets: list[tuple[str, str]], rate: float, seconds: float,
                        copies: dict[tuple[str, str], int] | None = None) -> dict[str, Any]:  # fmt: skip
    """Merge-patch label bench-ts (send time, ns) onto random target pods at `rate`/s for `seconds`; `copies`
    says how many subscribers each patch reaches (1 when not given)."""
    import aiohttp

    rng = random.Random(7)
    sent = failed = reached = 0
    base = f"http://127.0.0.1:{sim_port}"
    hdr = {"Content-Type": "application/merge-patch+json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:

        async def patch(ns: str, name: str) -> None:
            nonlocal sent, failed, reached
            body = json.dumps({"metadata": {"labels": {"bench-ts": str(time.time_ns())}}})
            try:
                async with s.patch(f"{base}/api/v1/namespaces/{ns}/pods/{name}", data=body, headers=hdr) as resp:
                    await resp.read()
                    if resp.status != 200:
                        failed += 1
                    else:
                        sent += 1
                        reached += copies.get((ns, name), 1) if copies else 1
            except aiohttp.ClientError:
                failed += 1

        t0 = time.monotonic()
        pending: set[asyncio.Task[None]] = set()
        i = 0
        while (now := time.monotonic() - t0) < seconds:
            due = int(now * rate)
            while i < due:
                ns, name = rng.choice(targets)
                task = asyncio.create_task(patch(ns, name))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            await asyncio.sleep(0.002)
        await asyncio.gather(*pending)
        elapsed = time.monotonic() - t0
    return {"patches_ok": sent, "patches_failed": failed, "rate_achieved": round(sent / elapsed, 1),
            "deliveries_due": reached}  # fmt: skip


async def churn_phase(sim_port: int, by_node: dict[str, list[tuple[str, str]]], sub_nodes: list[str],
                      group: SubsGroup, col_pid: int, col_path: Path, sim_pid: int,
                      args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip

    streams = Counter(sub_nodes)  # subscribers per node: each gets every patch of its node's pods
    targets = [p for n in streams for p in by_node[n]]
    copies = {p: streams[n] for n in streams for p in by_node[n]}
    rate, seconds = args.rate, args.churn_seconds
    group.timed.clear()
    wall0 = time.time()
    smp = Sampler(col_pid)
    sim_cpu0 = proc_cpu_seconds(sim_pid)
    drove = await drive_patches(sim_port, targets, rate, seconds, copies)
    sent = drove.pop("deliveries_due")
    await asyncio.sleep(3)  # let the last ones arrive
    lat = [ms for _, ms, _ in group.timed]
    res = smp.finish()
    if args.gc_log:
        res["gc"] = gc_pauses(col_path, wall0, time.time())
    return {"rate_target": rate, "seconds": seconds, **drove, "deliveries": len(lat), "expected_deliveries": sent,
            "lat_ms": {"p50": pct(lat, 0.5), "p90": pct(lat, 0.9), "p99": pct(lat, 0.99),
                       "max": max(lat) if lat else None},
            "slow": slow_deliveries(group.timed, wall0), "collector": res,
            "sim_cpu_s": round(proc_cpu_seconds(sim_pid) - sim_cpu0, 1),
            "subscriber_errors": group.total("errors")}  # fmt: skip


def slow_deliveries(timed: list[tuple[float, float, int]], start: float, over_ms: float = 100.0) -> dict[str, Any]:
    """Deliveries slower than `over_ms`, by second of the churn (send time) and by client process: a pause in the
    collector shows as one or two seconds with slow deliveries in every process, a lagging client as one process."""
    slow = [(t, ms, k) for t, ms, k in timed if ms > over_ms]
    by_second = Counter(int(t - start) for t, _, _ in slow)
    by_process = Counter(k for _, _, k in slow)
    return {"over_ms": over_ms, "count": len(slow), "by_second": dict(sorted(by_second.items())),
            "by_process": dict(sorted(by_process.items()))}  # fmt: skip


async def run_main(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine_facts(), "argv": sys.argv, "sizes": []}
    out = Path(args.json)
    for size in args.sizes.split(","):
        n, p, s = (int(x) for x in size.split("x"))
        d = workdir / size
        # A previous run's logs would be read as this run's (its "cluster ready:" line among them).
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        try:
            res = await run_size(n, p, s, args, d)
        except Exception as e:  # keep the sizes that worked
            res = {"size": size, "error": f"{type(e).__name__}: {e}"}
            log(f"{size} failed: {res['error']}")
        results["sizes"].append(res)
        out.write_text(json.dumps(results, indent=1, default=str))
    log(f"results in {out}")


def collector_gc_main(argv: list[str]) -> int:
    """`nodemeta` with a gc callback that logs every collection pause >= 5 ms to stderr (wall time, not CPU)."""
    import gc

    from nodemeta.cli import main as nodemeta_main

    started: list[float] = [0.0]

    def cb(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            ms = (time.perf_counter() - started[0]) * 1000
            if ms >= 5:
                print(f"gc-pause {time.time():.3f} gen={info['generation']} ms={ms:.1f} collected={info['collected']}",
                      file=sys.stderr, flush=True)  # fmt: skip

    gc.callbacks.append(cb)
    return nodemeta_main(argv)


def gc_pauses(path: Path, since: float, until: float) -> dict[str, Any]:
    pauses = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("gc-pause "):
            parts = line.split()
            t = float(parts[1])
            if since <= t <= until:
                pauses.append((int(parts[2][4:]), float(parts[3][3:])))
    ms = [m for _, m in pauses]
    return {"pauses_ge_5ms": len(ms), "gen2": sum(1 for g, _ in pauses if g == 2), "max_ms": max(ms) if ms else None,
            "total_ms": round(sum(ms), 1)}  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "collector-gc":
        raise SystemExit(collector_gc_main(sys.argv[2:]))
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--sizes", default="200x30x200")
    run.add_argument("--json", default="/tmp/collector-bench.json")
    run.add_argument("--workdir", default="/tmp/collector-bench")
    run.add_argument("--rate", type=float, default=200.0)
    run.add_argument("--churn-seconds", type=float, default=20.0)
    run.add_argument("--full-agents", type=int, default=10)
    run.add_argument("--no-agents", action="store_true", help="skip the API load comparison")
    run.add_argument("--gc-log", action="store_true", help="run the collector under a gc-pause logger")
    run.add_argument(
        "--collector-log-level",
        default="warning",
        help="info logs every stream and the shutdown's steps (in collector.stderr), at some CPU cost",
    )
    run.add_argument("--profile", action="store_true", help="py-spy the collector during sync, resync and churn")
    run.add_argument("--direct-agents", type=int, default=200, help="direct agents measured (extrapolate to N)")
    run.add_argument("--agent-window", type=float, default=10.0)
    run.add_argument("--agent-budget", type=float, default=120.0)
    run.add_argument("--build-timeout", type=float, default=600.0)
    run.add_argument("--ready-timeout", type=float, default=300.0)
    run.add_argument("--phase-timeout", type=float, default=180.0)
    run.add_argument(
        "--client-nice", type=int, default=0,
        help="run the subscriber processes at this niceness: they stand in for agents on other hosts, and at 0 "
        "they take most of the CPU the collector would have on its own host",
    )  # fmt: skip
    px = sub.add_parser("proxy")
    px.add_argument("--port", type=int, required=True)
    px.add_argument("--upstream", type=int, required=True)
    px.add_argument("--stats", required=True)
    sb = sub.add_parser("subs")
    sb.add_argument("--target", required=True)
    sb.add_argument("--nodes", required=True)
    ag = sub.add_parser("agents")
    ag.add_argument("--port", type=int, required=True)
    ag.add_argument("--mode", choices=("direct", "full"), required=True)
    ag.add_argument("--nodes", default="")
    ag.add_argument("--count", type=int, default=0)
    ag.add_argument("--concurrency", type=int, default=50)
    gb = sub.add_parser("grpc-baseline", help="RSS per stream and SIGTERM time of a plain grpc.aio server")
    gb.add_argument("--streams", type=int, default=2000)
    gb.add_argument("--payload", type=int, default=27_000, help="bytes of the one message each stream gets")
    gb.add_argument("--own-connections", action="store_true", help="one connection per stream, not per process")
    gb.add_argument("--timeout", type=float, default=120.0)
    es = sub.add_parser("echo-server")
    es.add_argument("--port", type=int, required=True)
    es.add_argument("--payload", type=int, required=True)
    ec = sub.add_parser("echo-clients")
    ec.add_argument("--port", type=int, required=True)
    ec.add_argument("--count", type=int, required=True)
    ec.add_argument("--own-connections", action="store_true")
    args = ap.parse_args()
    raise_nofile_limit()
    if args.cmd == "grpc-baseline":
        grpc_baseline_main(args)
        return
    main_fn = {"run": run_main, "proxy": proxy_main, "subs": subs_main, "agents": agents_main,
               "echo-server": echo_server_main, "echo-clients": echo_clients_main}[args.cmd]  # fmt: skip
    asyncio.run(main_fn(args))


if __name__ == "__main__":
    main()
