"""Scale benchmark of the simulated API server: 150k pods, paginated lists and a 1,000-watcher fan-out.

Two commands:

* ``serve`` builds a `SimServer` in this process, fills it through the registry (nodes, namespaces, Deployment-owned
  pods with a realistic spec and status), writes ``{"port": ..., "build_s": ...}`` to ``--port-file`` and serves
  until SIGTERM. On SIGUSR1 it writes a snapshot of its own counters (open watches, store revision, GC pauses,
  CPU) to ``--stats-file``; the load side uses it to check the server saw what the client did.
* ``run`` (the default) starts ``serve`` as a child process, so the server's RSS and CPU are measured apart from the
  load, then measures from this process with aiohttp over loopback: RSS after the build, a full paginated list,
  an unpaginated ``resourceVersion=0`` list, the paginated list as PartialObjectMetadataList, and a watch fan-out
  (cluster-wide and ``spec.nodeName``-filtered watchers) under a steady stream of label patches, with per-event
  delivery latency and delivered-versus-expected counts. Expected results come from the generator (ground truth),
  never from the server.

    .venv/bin/python bench/sim_scale.py run --pods 150000 --nodes 5000 --watchers 1000 --churn 2000 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from measure import BenchError, Contention, Profiler, open_stream, proc_cpu_seconds, raise_nofile_limit, read_lines

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
REPLICAS = 10  # pods per Deployment
SENT_LABEL = "bench.nodemeta.io/sent"
SEQ_LABEL = "bench.nodemeta.io/seq"
META_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
APPS = ("checkout", "payments", "catalog", "search", "ledger", "gateway", "profile", "orders", "billing", "ingest")
LOOPBACK = "127.0.0.1"
# The load side reads events with these; see _event.
_TYPE = re.compile(rb'\{"type":"([A-Z]+)"')
_SEQ = re.compile(rb'"bench\.nodemeta\.io/seq":"(\d+)"')
_SENT = re.compile(rb'"bench\.nodemeta\.io/sent":"([0-9.]+)"')
FULL_PARSE_EVERY = 64
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


# -- the population (shared by both processes: the ground truth) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodPlan:
    index: int
    namespace: str
    name: str
    node_index: int  # 1-based: node-<node_index>
    deployment: int

    @property
    def node(self) -> str:
        return f"node-{self.node_index}"


def _base27(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, len(NAME_ALPHABET))
        out.append(NAME_ALPHABET[digit])
    return "".join(reversed(out))


def _template_hash(deployment: int) -> str:
    digest = int.from_bytes(hashlib.blake2b(deployment.to_bytes(8, "big"), digest_size=8).digest(), "big")
    return _base27(digest, 10)


def plan_pod(index: int, nodes: int, namespaces: int) -> PodPlan:
    """Pod `index`: Deployment index // REPLICAS, in namespace team-NN, on node-(index mod nodes + 1)."""
    deployment = index // REPLICAS
    app = f"{APPS[deployment % len(APPS)]}-{deployment:05d}"
    name = f"{app}-{_template_hash(deployment)}-{_base27(index, 5)}"
    return PodPlan(index, f"team-{deployment % namespaces:02d}", name, index % nodes + 1, deployment)


def plan_pods(pods: int, nodes: int, namespaces: int) -> list[PodPlan]:
    return [plan_pod(i, nodes, namespaces) for i in range(pods)]


def _host_ip(node_index: int) -> str:
    # The address nodemeta.sim.builders.node_object gives node N.
    return f"172.18.{(node_index + 2) // 250}.{(node_index + 2) % 250 + 2}"


def _pod_ip(plan: PodPlan, nodes: int) -> str:
    slot = (plan.index // nodes) % 250 + 2
    return f"10.{244 + plan.node_index // 256}.{plan.node_index % 256}.{slot}"


def pod_manifest(plan: PodPlan) -> dict[str, Any]:
    """A pod as a ReplicaSet controller creates it (already bound, as after scheduling)."""
    app = plan.name.rsplit("-", 2)[0]
    template_hash = _template_hash(plan.deployment)
    labels = {
        "app": app,
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/part-of": "shop",
        "app.kubernetes.io/version": f"1.{plan.deployment % 17}.{plan.deployment % 5}",
        "pod-template-hash": template_hash,
        "tier": "backend" if plan.deployment % 3 else "frontend",
    }
    containers: list[dict[str, Any]] = [
        {
            "name": "app",
            "image": f"registry.example.com/shop/{app}:1.{plan.deployment % 17}.{plan.deployment % 5}",
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                {"name": "LOG_LEVEL", "value": "info"},
                {"name": "DB_HOST", "value": f"{app}-db.{plan.namespace}.svc.cluster.local"},
            ],
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "512Mi"},
            },
            "readinessProbe": {
                "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                "periodSeconds": 10,
                "timeoutSeconds": 1,
                "successThreshold": 1,
                "failureThreshold": 3,
            },
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/app", "readOnly": True},
                {"name": "kube-api-access", "mountPath": SA_MOUNT, "readOnly": True},
            ],
        }
    ]
    if plan.deployment % 2 == 0:
        containers.append(
            {
                "name": "proxy",
                "image": "registry.example.com/mesh/proxy:1.24.2",
                "args": ["proxy", "sidecar", "--log-level=warning"],
                "ports": [{"name": "http-envoy-prom", "containerPort": 15090}],
                "resources": {"requests": {"cpu": "10m", "memory": "40Mi"}, "limits": {"memory": "256Mi"}},
                "volumeMounts": [{"name": "kube-api-access", "mountPath": SA_MOUNT, "readOnly": True}],
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": plan.name,
            "namespace": plan.namespace,
            "generateName": plan.name[:-5],
            "labels": labels,
            "annotations": {"kubectl.kubernetes.io/default-container": "app"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": f"{app}-{template_hash}",
                    "uid": f"00000000-0000-4000-8000-{plan.deployment:012d}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "nodeName": plan.node,
            "serviceAccountName": "default",
            "containers": containers,
            "volumes": [
                {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
                {
                    "name": "kube-api-access",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        ],
                    },
                },
            ],
        },
    }


def pod_status(plan: PodPlan, nodes: int, containers: list[tuple[str, str]], now: float) -> dict[str, Any]:
    """The status a kubelet reports for a running, ready pod."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    pod_ip = _pod_ip(plan, nodes)
    host_ip = _host_ip(plan.node_index)
    conditions = [
        {"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp}
        for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    statuses = [
        {
            "name": name,
            "state": {"running": {"startedAt": stamp}},
            "lastState": {},
            "ready": True,
            "restartCount": 0,
            "image": image,
            "imageID": image.rsplit(":", 1)[0] + "@sha256:" + hashlib.sha256(image.encode()).hexdigest(),
            "containerID": "containerd://" + hashlib.sha256(f"{plan.name}/{name}".encode()).hexdigest(),
            "started": True,
        }
        for name, image in containers
    ]
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": stamp,
        "containerStatuses": statuses,
        "qosClass": "Burstable",
    }


# -- /proc readings -----------------------------------------------------------------------------------------------


def proc_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of `pid`, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _git_commit() -> str:
    """The commit under test, with "+dirty" when src/ has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "src"], capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_facts() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "nodemeta_commit": _git_commit(),
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# -- serve: the server process --------------------------------------------------------------------------------------


@dataclass(slots=True)
class GcTimer:
    """GC pauses of this process, from gc.callbacks."""

    started: float = 0.0
    started_cpu: float = 0.0
    pauses: list[int] = field(default_factory=lambda: [0, 0, 0])
    seconds: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # wall time, what clients wait
    cpu_seconds: float = 0.0  # on-CPU time; below `seconds` when the machine is contended
    longest: float = 0.0
    full_pauses: list[float] = field(default_factory=list)  # every generation-2 pass, in order

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            self.started_cpu = time.thread_time()
            return
        took = time.perf_counter() - self.started
        self.cpu_seconds += time.thread_time() - self.started_cpu
        generation = info["generation"]
        self.pauses[generation] += 1
        self.seconds[generation] += took
        self.longest = max(self.longest, took)
        if generation == 2:
            self.full_pauses.append(took)

    def snapshot(self) -> dict[str, Any]:
        return {"count": list(self.pauses), "seconds": [round(s, 4) for s in self.seconds],
                "cpu_s": round(self.cpu_seconds, 4), "longest_s": round(self.longest, 4),
                "full_pauses_s": [round(s, 4) for s in self.full_pauses]}  # fmt: skip


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(data))
    tmp.replace(path)


def populate(server: Any, pods: int, nodes: int, namespaces: int) -> dict[str, Any]:
    """Nodes, namespaces and pods (created, then given a status through pods/status), straight into the registry."""
    from nodemeta.sim.resources import lookup

    pod_res = lookup("", "v1", "pods")
    ns_res = lookup("", "v1", "namespaces")
    assert pod_res is not None and ns_res is not None
    registry = server.registry
    t0 = time.perf_counter()
    server.add_nodes(nodes)
    t_nodes = time.perf_counter() - t0
    for n in range(namespaces):
        registry.create(ns_res, "", {"metadata": {"name": f"team-{n:02d}"}})
    t1 = time.perf_counter()
    body_bytes = 0
    for i in range(pods):
        plan = plan_pod(i, nodes, namespaces)
        manifest = pod_manifest(plan)
        created = registry.create(pod_res, plan.namespace, manifest)
        names = [(c["name"], c["image"]) for c in manifest["spec"]["containers"]]
        status = {"metadata": {"name": plan.name}, "status": pod_status(plan, nodes, names, registry.clock())}
        result = registry.update(pod_res, plan.namespace, plan.name, status, subresource="status")
        if i == 0 and (created.warnings or result.warnings):
            unknown = created.warnings + result.warnings
            raise SystemExit(f"the generated pod has fields the server does not know: {unknown}")
        body_bytes += len(result.stored.body)
    t_pods = time.perf_counter() - t1
    return {
        "nodes_s": round(t_nodes, 3),
        "pods_s": round(t_pods, 3),
        "pod_writes_per_s": round(2 * pods / t_pods, 1) if t_pods else 0.0,
        "mean_pod_json_bytes": round(body_bytes / pods) if pods else 0,
    }


async def serve(args: argparse.Namespace) -> int:
    from nodemeta.sim import SimServer, SimSettings
    from nodemeta.sim.resources import lookup

    raise_nofile_limit()
    gc_timer = GcTimer()
    gc.callbacks.append(gc_timer)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    # No controllers: this measures the API server (store, lists, watches), and the pods written here straight into
    # the registry name owners that do not exist, which the garbage collector would delete.
    server = SimServer(SimSettings(host=LOOPBACK, port=0, seed=args.seed, controllers=()))
    built = populate(server, args.pods, args.nodes, args.namespaces)
    build_s = time.perf_counter() - t0
    if args.gc_freeze:
        # Experiment, not what `nodemeta sim serve` does: keep the loaded heap out of every later GC pass.
        gc.collect()
        gc.freeze()
    await server.start()
    port = urlsplit(server.url).port
    pod_res = lookup("", "v1", "pods")
    assert pod_res is not None
    bucket = server.registry.bucket(pod_res)
    stats_path = Path(args.stats_file) if args.stats_file else None
    snapshots = 0

    def write_stats() -> None:
        nonlocal snapshots
        snapshots += 1
        if stats_path is None:
            return
        _write_atomically(stats_path, {
            "seq": snapshots,
            "open_watches": len(server.open_watches),
            "pod_watchers": bucket.watcher_count(),
            "pod_watchers_indexed": sum(len(s) for s in bucket.indexed.values()),
            "pods": len(bucket),
            "store_rv": server.store.rv,
            "pod_history": len(bucket.history),
            "gc": gc_timer.snapshot(),
            "cpu_s": round(time.process_time(), 3),
        })  # fmt: skip

    _write_atomically(Path(args.port_file), {
        "port": port, "pid": os.getpid(), "build_s": round(build_s, 3),
        "build_cpu_s": round(time.process_time() - cpu0, 3), "store_rv": server.store.rv,
        "pods": len(bucket), **built, "gc_build": gc_timer.snapshot(),
    })  # fmt: skip
    print(f"sim_scale serve: {len(bucket)} pods built in {build_s:.1f}s, listening on {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, write_stats)
    try:
        await stop.wait()
    finally:
        await server.stop()
    write_stats()
    return 0


# -- run: the load side ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port_file: Path
    stats_file: Path
    log_file: Path
    info: dict[str, Any] = field(default_factory=dict)
    stats_seq: int = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.info['port']}"

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def wait_ready(self, limit_s: float) -> None:
        deadline = time.perf_counter() + limit_s
        while not self.port_file.exists():
            if self.proc.poll() is not None:
                raise BenchError(f"server exited with {self.proc.returncode} while building:\n{self.log_tail()}")
            if time.perf_counter() > deadline:
                raise BenchError(f"server not ready after {limit_s:.0f}s")
            await asyncio.sleep(0.2)
        self.info = orjson.loads(self.port_file.read_bytes())

    async def stats(self, limit_s: float = 10.0) -> dict[str, Any]:
        """Ask the server for its counters (SIGUSR1) and wait for the answer."""
        self.stats_seq += 1
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.perf_counter() + limit_s
        while time.perf_counter() < deadline:
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                data: dict[str, Any] = orjson.loads(self.stats_file.read_bytes())
                if data.get("seq") == self.stats_seq:
                    return data
            await asyncio.sleep(0.05)
        raise BenchError("server did not answer a stats request")

    def memory_mib(self) -> dict[str, float]:
        mem = proc_memory_kib(self.pid)
        return {"rss_mib": round(mem["VmRSS"] / 1024, 1), "peak_rss_mib": round(mem["VmHWM"] / 1024, 1)}

    def cpu(self) -> float:
        return proc_cpu_seconds(self.pid)

    async def stop(self, limit_s: float = 30.0) -> int | None:
        """SIGTERM and wait; returns the exit code, or None when the server had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.proc.wait, limit_s)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
            return None
        return self.proc.returncode


def start_server(args: argparse.Namespace, workdir: Path) -> ServerProcess:
    port_file = workdir / "port.json"
    stats_file = workdir / "stats.json"
    log_file = workdir / "server.log"
    command = [
        sys.executable, str(Path(__file__).resolve()), "serve",
        "--pods", str(args.pods), "--nodes", str(args.nodes), "--namespaces", str(args.namespaces),
        "--seed", str(args.seed), "--port-file", str(port_file), "--stats-file", str(stats_file),
    ] + (["--gc-freeze"] if args.gc_freeze else [])  # fmt: skip
    with log_file.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return ServerProcess(proc, port_file, stats_file, log_file)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def latency_summary(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "samples": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else float("nan"),
    }


async def list_all(session: aiohttp.ClientSession, base: str, limit: int, accept: str | None = None) -> dict[str, Any]:
    """Every pod, `limit` per page (0 = one request): timings, bytes and the names seen."""
    headers = {"Accept": accept} if accept else {}
    names: list[tuple[str, str]] = []
    pages = 0
    total_bytes = 0
    fetch_s = 0.0
    parse_s = 0.0
    rv = ""
    token = ""
    kinds: set[str] = set()
    t0 = time.perf_counter()
    while True:
        if limit:
            url = f"{base}/api/v1/pods?limit={limit}" + (f"&continue={quote(token)}" if token else "")
        else:
            url = f"{base}/api/v1/pods?resourceVersion=0"
        f0 = time.perf_counter()
        async with session.get(url, headers=headers) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise BenchError(f"GET {url}: {resp.status} {body[:300]!r}")
        f1 = time.perf_counter()
        page = orjson.loads(body)
        names.extend((item["metadata"]["namespace"], item["metadata"]["name"]) for item in page["items"])
        kinds.add(page["kind"])
        parse_s += time.perf_counter() - f1
        fetch_s += f1 - f0
        pages += 1
        total_bytes += len(body)
        rv = rv or page["metadata"]["resourceVersion"]
        token = page["metadata"].get("continue") or ""
        del body, page
        if not token:
            break
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall, "fetch_s": fetch_s, "parse_s": parse_s, "pages": pages, "bytes": total_bytes,
        "items": len(names), "rv": rv, "names": names, "kinds": sorted(kinds),
    }  # fmt: skip


def check_names(listed: list[tuple[str, str]], truth: set[tuple[str, str]]) -> dict[str, Any]:
    seen = set(listed)
    return {
        "items_ok": len(listed) == len(truth),
        "unique": len(seen) == len(listed),
        "match_ground_truth": seen == truth,
        "missing": len(truth - seen),
        "unexpected": len(seen - truth),
    }


@dataclass(slots=True)
class Watcher:
    """One open watch and everything it received."""

    ident: int
    node: str  # "" = cluster-wide
    url: str
    response: aiohttp.ClientResponse | None = None
    seqs: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    bookmarks: int = 0
    other_events: int = 0
    wrong_node: int = 0
    errors: list[str] = field(default_factory=list)
    bytes: int = 0
    lines: int = 0
    ended: bool = False

    def received(self, count: int) -> None:
        self.bytes += count


async def open_watch(session: aiohttp.ClientSession, watcher: Watcher) -> None:
    watcher.response = await open_stream(session, watcher.url)


async def read_watch(watcher: Watcher) -> None:
    """Read newline-delimited events; latency is taken when the chunk carrying the line arrives."""
    assert watcher.response is not None
    try:
        error = await read_lines(watcher.response, partial(_event, watcher), watcher.received)
        if error is not None:
            watcher.errors.append(error)
    finally:
        watcher.ended = True


def _event(watcher: Watcher, line: bytes, now: float) -> None:
    """Record one event line. Most cluster-wide events take the byte-search path (orjson would cost the load side
    as much CPU as the server spends sending); node-filtered events and every FULL_PARSE_EVERY-th one are parsed
    in full, and the two readings must agree."""
    if not line:
        return
    watcher.lines += 1
    kind = _TYPE.match(line)
    seq = _SEQ.search(line)
    sent = _SENT.search(line)
    fast = kind is not None and kind.group(1) == b"MODIFIED" and seq is not None and sent is not None
    if fast and not watcher.node and watcher.lines % FULL_PARSE_EVERY:
        assert seq is not None and sent is not None
        watcher.seqs.append(int(seq.group(1)))
        watcher.latencies.append(now - float(sent.group(1)))
        return
    event = orjson.loads(line)
    event_type = event.get("type")
    if event_type == "BOOKMARK":
        watcher.bookmarks += 1
        return
    if event_type == "ERROR" or not isinstance(event.get("object"), dict):
        watcher.errors.append(line[:300].decode(errors="replace"))
        return
    obj = event["object"]
    labels = obj["metadata"].get("labels") or {}
    if event_type != "MODIFIED" or SEQ_LABEL not in labels:
        watcher.other_events += 1
        return
    watcher.seqs.append(int(labels[SEQ_LABEL]))
    watcher.latencies.append(now - float(labels[SENT_LABEL]))
    if watcher.node and obj["spec"].get("nodeName") != watcher.node:
        watcher.wrong_node += 1
    if (
        not fast
        or seq is None
        or sent is None
        or (seq.group(1).decode(), sent.group(1).decode()) != (labels[SEQ_LABEL], labels[SENT_LABEL])
    ):
        watcher.errors.append(f"byte search and JSON parse disagree on {line[:200]!r}")


@dataclass(slots=True)
class Churn:
    targets: list[PodPlan]
    ok: list[bool]
    patch_latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    wall_s: float = 0.0


def choose_targets(plans: list[PodPlan], nodes: int, watched: list[int], count: int, seed: int) -> list[PodPlan]:
    """Every other patch hits a pod on a watched node (cycling through them), the rest a pod chosen at random."""
    rng = random.Random(seed)
    out: list[PodPlan] = []
    for i in range(count):
        if i % 2 == 0 and watched:
            node_index = watched[(i // 2) % len(watched)]
            on_node = range(node_index - 1, len(plans), nodes)  # plan_pod puts pod i on node i mod nodes + 1
            out.append(plans[rng.choice(on_node)] if on_node else rng.choice(plans))
        else:
            out.append(rng.choice(plans))
    return out


async def drive_churn(
    session: aiohttp.ClientSession, base: str, churn: Churn, rate: float, inflight: int, seq0: int
) -> None:
    """One merge patch per target at a steady `rate`, at most `inflight` outstanding."""
    gate = asyncio.Semaphore(inflight)
    tasks: list[asyncio.Task[None]] = []

    async def one(seq: int, plan: PodPlan) -> None:
        try:
            url = f"{base}/api/v1/namespaces/{plan.namespace}/pods/{plan.name}"
            sent = time.perf_counter()
            body = {"metadata": {"labels": {SENT_LABEL: f"{sent:.6f}", SEQ_LABEL: str(seq0 + seq)}}}
            async with session.patch(
                url, data=orjson.dumps(body), headers={"Content-Type": "application/merge-patch+json"}
            ) as resp:
                await resp.read()
                if resp.status != 200:
                    churn.failures.append(f"{seq}: {resp.status}")
                    return
            churn.patch_latencies.append(time.perf_counter() - sent)
            churn.ok[seq] = True
        except (aiohttp.ClientError, ConnectionError) as err:
            churn.failures.append(f"{seq}: {err!r}")
        finally:
            gate.release()

    t0 = time.perf_counter()
    for seq, plan in enumerate(churn.targets):
        delay = t0 + seq / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await gate.acquire()
        tasks.append(asyncio.create_task(one(seq, plan)))
    await asyncio.gather(*tasks)
    churn.wall_s = time.perf_counter() - t0


def expected_seqs(watcher: Watcher, churn: Churn, seq0: int) -> set[int]:
    return {
        seq0 + i for i, plan in enumerate(churn.targets)
        if churn.ok[i] and (not watcher.node or plan.node == watcher.node)
    }  # fmt: skip


async def watch_fanout(
    session: aiohttp.ClientSession,
    server: ServerProcess,
    args: argparse.Namespace,
    plans: list[PodPlan],
    list_rv: str,
) -> dict[str, Any]:
    """Open the watches once, then one churn phase per rate in --rate."""
    base = server.base
    cluster_count = args.watchers // 2
    node_count = min(args.watchers - cluster_count, args.nodes)
    watched = sorted({1 + j * args.nodes // node_count for j in range(node_count)}) if node_count else []
    common = f"watch=1&resourceVersion={list_rv}&allowWatchBookmarks=true"
    watchers = [Watcher(i, "", f"{base}/api/v1/pods?{common}") for i in range(cluster_count)]
    watchers += [
        Watcher(cluster_count + j, f"node-{k}", f"{base}/api/v1/pods?{common}&fieldSelector=spec.nodeName%3Dnode-{k}")
        for j, k in enumerate(watched)
    ]
    result: dict[str, Any] = {"cluster_watchers": cluster_count, "node_watchers": len(watched)}

    cpu0 = server.cpu()
    t0 = time.perf_counter()
    gate = asyncio.Semaphore(64)

    async def opened(w: Watcher) -> None:
        async with gate:
            await open_watch(session, w)

    readers: list[asyncio.Task[None]] = []
    try:
        await asyncio.gather(*(opened(w) for w in watchers))
        readers = [asyncio.create_task(read_watch(w)) for w in watchers]
        result["open_s"] = round(time.perf_counter() - t0, 3)
        result["open_server_cpu_s"] = round(server.cpu() - cpu0, 3)
        await asyncio.sleep(1.0)  # let every watch settle before reading the server's counters
        stats = await server.stats()
        result["server_open_watches"] = stats["open_watches"]
        result["server_pod_watchers"] = stats["pod_watchers"]
        result["server_pod_watchers_indexed"] = stats["pod_watchers_indexed"]
        result["memory_watches_open"] = server.memory_mib()
        result["phases"] = []
        for number, rate in enumerate(args.rate):
            seq0 = number * args.churn
            profile = f"{args.profile}.{number}" if args.profile and len(args.rate) > 1 else args.profile
            log(f"churn phase {number + 1}: {args.churn} patches at {rate}/s")
            phase = await churn_phase(session, server, args, plans, watchers, watched, rate, seq0, profile)
            result["phases"].append(phase)
        result["server_open_watches_at_end"] = (await server.stats())["open_watches"]
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        closed = time.perf_counter()
        for w in watchers:
            if w.response is not None:
                w.response.close()
    # The server must notice the disconnects and drop every watch (no leaked streams or subscriptions).
    while True:
        stats = await server.stats()
        if stats["open_watches"] == 0 and stats["pod_watchers"] == 0:
            break
        if time.perf_counter() - closed > 15:
            break
        await asyncio.sleep(0.1)
    result["released_s"] = round(time.perf_counter() - closed, 3)
    result["server_open_watches_after_close"] = stats["open_watches"]
    result["server_pod_watchers_after_close"] = stats["pod_watchers"]
    return result


async def churn_phase(
    session: aiohttp.ClientSession,
    server: ServerProcess,
    args: argparse.Namespace,
    plans: list[PodPlan],
    watchers: list[Watcher],
    watched: list[int],
    rate: float,
    seq0: int,
    profile_path: str,
) -> dict[str, Any]:
    """`args.churn` label patches at `rate`; what every watcher received, against what it should have."""
    for w in watchers:
        w.seqs, w.latencies, w.wrong_node = [], [], 0
    churn = Churn(choose_targets(plans, args.nodes, watched, args.churn, args.seed + seq0 + 1), [False] * args.churn)
    stats = await server.stats()
    gc_before = stats["gc"]
    bytes0 = sum(w.bytes for w in watchers)
    profiler = Profiler(server.pid, profile_path, rate=250, nonblocking=False, wait=30, top=15)
    profiler.start()
    contention = Contention()
    cpu0 = server.cpu()
    client_cpu0 = time.process_time()
    t0 = time.perf_counter()
    await drive_churn(session, server.base, churn, rate, args.inflight, seq0)
    churn_end = time.perf_counter()
    expected = {w.ident: expected_seqs(w, churn, seq0) for w in watchers}
    total_expected = sum(len(s) for s in expected.values())
    drain_deadline = churn_end + args.drain_timeout
    while time.perf_counter() < drain_deadline:
        if sum(len(w.seqs) for w in watchers) >= total_expected or all(w.ended for w in watchers):
            break
        await asyncio.sleep(0.02)
    drained = time.perf_counter()
    busy = contention.result()
    server_cpu = server.cpu() - cpu0
    client_cpu = time.process_time() - client_cpu0
    profile = await profiler.stop()
    stats = await server.stats()

    received_total = sum(len(w.seqs) for w in watchers)
    by_shape: dict[str, dict[str, Any]] = {}
    for shape, members in (("cluster", [w for w in watchers if not w.node]), ("node", [w for w in watchers if w.node])):
        exp = sum(len(expected[w.ident]) for w in members)
        got_expected = sum(len(expected[w.ident] & set(w.seqs)) for w in members)
        by_shape[shape] = {
            "watchers": len(members),
            "expected": exp,
            "delivered": sum(len(w.seqs) for w in members),
            "delivered_expected": got_expected,
            "missing": exp - got_expected,
            "unexpected": sum(len(set(w.seqs) - expected[w.ident]) for w in members),
            "duplicates": sum(len(w.seqs) - len(set(w.seqs)) for w in members),
            "wrong_node": sum(w.wrong_node for w in members),
            "latency": latency_summary([x for w in members for x in w.latencies]),
        }
    ok = sum(churn.ok)
    return {
        "churn": args.churn,
        "patches_ok": ok,
        "patch_failures": churn.failures[:10],
        "target_rate_per_s": rate,
        "achieved_rate_per_s": round(args.churn / churn.wall_s, 1) if churn.wall_s else 0.0,
        "patch_latency": latency_summary(churn.patch_latencies),
        "churn_s": round(churn_end - t0, 3),
        "drain_s": round(drained - churn_end, 3),
        "expected": total_expected,
        "delivered": received_total,
        "latency": latency_summary([x for w in watchers for x in w.latencies]),
        "by_shape": by_shape,
        "deliveries_per_s": round(received_total / (drained - t0), 1),
        "watch_mib": round((sum(w.bytes for w in watchers) - bytes0) / 2**20, 1),
        "bookmarks": sum(w.bookmarks for w in watchers),
        "other_events": sum(w.other_events for w in watchers),
        "watch_errors": [e for w in watchers for e in w.errors][:10],
        "watchers_ended": sum(w.ended for w in watchers),
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_share": round(server_cpu / (drained - t0), 3),
        "server_cpu_per_patch_ms": round(server_cpu / max(1, ok) * 1000, 3),
        "server_cpu_per_delivery_us": round(server_cpu / max(1, received_total) * 1e6, 1),
        "client_cpu_s": round(client_cpu, 3),
        "server_gc_s": round(sum(stats["gc"]["seconds"]) - sum(gc_before["seconds"]), 3),
        "server_gc_cpu_s": round(stats["gc"]["cpu_s"] - gc_before["cpu_s"], 3),
        "contention": busy,
        "server_gc_longest_s": stats["gc"]["longest_s"],
        "memory_after": server.memory_mib(),
        "profiled": bool(profile_path),
        "profile": profile,
    }


async def run(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Fill `results` as the steps complete, so a failed run still reports what it measured."""
    raise_nofile_limit()
    results |= {
        "machine": machine_facts(),
        "params": {k: getattr(args, k) for k in ("pods", "nodes", "namespaces", "watchers", "churn", "rate",
                                                 "inflight", "page_limit", "seed", "gc_freeze")},
    }  # fmt: skip
    t_plan = time.perf_counter()
    plans = plan_pods(args.pods, args.nodes, args.namespaces)
    truth = {(p.namespace, p.name) for p in plans}
    if len(truth) != args.pods:
        results["error"] = "the generator made duplicate pod names"
        return
    print(f"planned {len(plans)} pods in {time.perf_counter() - t_plan:.1f}s; starting the server", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="sim-scale-") as tmp:
        server = start_server(args, Path(tmp))
        try:
            async with asyncio.timeout(args.timeout):
                await measure(args, server, plans, truth, results)
        except (BenchError, TimeoutError) as err:
            results["error"] = f"{type(err).__name__}: {err}"
            print(f"sim_scale: {results['error']}", file=sys.stderr)
        finally:
            code = await server.stop()
            results["server_exit_code"] = code
            if code != 0:
                print(f"server exit code {code}; log tail:\n{server.log_tail()}", file=sys.stderr)
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                final = orjson.loads(server.stats_file.read_bytes())
                results["server_final"] = {"gc": final["gc"], "cpu_s": final["cpu_s"],
                                           "open_watches": final["open_watches"]}  # fmt: skip


async def measure(
    args: argparse.Namespace,
    server: ServerProcess,
    plans: list[PodPlan],
    truth: set[tuple[str, str]],
    results: dict[str, Any],
) -> None:
    await server.wait_ready(args.timeout)
    info = server.info
    results["build"] = {k: info[k] for k in ("build_s", "build_cpu_s", "pods_s", "nodes_s", "pod_writes_per_s",
                                            "mean_pod_json_bytes", "store_rv", "pods", "gc_build")}  # fmt: skip
    results["build"]["memory"] = server.memory_mib()
    log(f"server built {info['pods']} pods in {info['build_s']}s, RSS {results['build']['memory']['rss_mib']} MiB")
    if info["pods"] != args.pods:
        raise BenchError(f"server holds {info['pods']} pods, expected {args.pods}")

    # The load side's own GC would walk its large heap (plans, parsed pages) again and again; it makes no cycles
    # worth collecting mid-run, so it runs with GC off and collects between steps.
    gc.disable()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, read_bufsize=1 << 20) as session:
        steps: list[tuple[str, int, str | None]] = [
            ("paginated_list", args.page_limit, None),
            ("unpaginated_list_rv0", 0, None),
            ("metadata_paginated_list", args.page_limit, META_ACCEPT),
        ]
        list_rv = ""
        for name, limit, accept in steps:
            contention = Contention()
            cpu0 = server.cpu()
            listed = await list_all(session, server.base, limit, accept)
            cpu = server.cpu() - cpu0
            names = listed.pop("names")
            step = {
                "wall_s": round(listed["wall_s"], 3),
                "fetch_s": round(listed["fetch_s"], 3),
                "client_parse_s": round(listed["parse_s"], 3),
                "pages": listed["pages"],
                "mib": round(listed["bytes"] / 2**20, 1),
                "bytes_per_item": round(listed["bytes"] / max(1, listed["items"])),
                "items": listed["items"],
                "items_per_s": round(listed["items"] / listed["wall_s"]),
                "fetch_items_per_s": round(listed["items"] / listed["fetch_s"]),
                "server_cpu_s": round(cpu, 3),
                "kinds": listed["kinds"],
                **check_names(names, truth),
                "memory": server.memory_mib(),
                "contention": contention.result(),
            }
            results[name] = step
            list_rv = list_rv or listed["rv"]
            del names, listed
            gc.collect()
            log(f"{name}: {step['items']} items in {step['wall_s']}s ({step['mib']} MiB, {step['pages']} pages)")
            if not (step["items_ok"] and step["unique"] and step["match_ground_truth"]):
                raise BenchError(f"{name} does not match the ground truth: {step}")
        results["list_rv"] = list_rv
        log(f"opening {args.watchers} watches")
        results["watch_fanout"] = await watch_fanout(session, server, args, plans, list_rv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- output ---------------------------------------------------------------------------------------------------------


def _lat(lat: dict[str, Any]) -> str:
    return f"p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms"


def _contention(c: dict[str, Any]) -> str:
    return f"CPU pressure {c['cpu_pressure_pct']}%, load {c['loadavg_1m'][0]}..{c['loadavg_1m'][1]}"


def _mib(value: float) -> str:
    return f"{value:,.0f} MiB"


def table_rows(r: dict[str, Any]) -> Iterator[tuple[str, str]]:
    p = r["params"]
    freeze = " (server GC frozen after the build: experiment)" if p.get("gc_freeze") else ""
    scale = f"{p['pods']:,} pods, {p['nodes']:,} nodes, {p['watchers']:,} watchers, {p['churn']:,} patches"
    yield "scale", scale + freeze
    b = r.get("build")
    if b:
        rate = f"{b['pod_writes_per_s']:,.0f} pod writes/s"
        yield "build", f"{b['build_s']:.1f} s ({rate}), {b['mean_pod_json_bytes']:,} B/pod JSON"
        yield "server RSS after build", _mib(b["memory"]["rss_mib"])
    lists = (
        ("paginated_list", "list limit=500"),
        ("unpaginated_list_rv0", "list rv=0 (whole)"),
        ("metadata_paginated_list", "list limit=500, metadata"),
    )
    for key, label in lists:
        s = r.get(key)
        if not s:
            continue
        ok = "ok" if s["match_ground_truth"] and s["unique"] else "MISMATCH"
        size = f"{s['pages']} pages, {s['mib']:,.1f} MiB"
        speed = f"fetch {s['fetch_s']:.2f} s ({s['fetch_items_per_s']:,} items/s), wall {s['wall_s']:.2f} s"
        server = f"server CPU {s['server_cpu_s']:.2f} s, peak RSS {_mib(s['memory']['peak_rss_mib'])}"
        yield label, f"{size}; {speed}; {server}; {ok}; {_contention(s['contention'])}"
    w = r.get("watch_fanout")
    if w:
        shapes = f"{w['cluster_watchers']} cluster-wide + {w['node_watchers']} node-filtered"
        yield "watches open", f"{shapes} in {w['open_s']:.2f} s; server counts {w.get('server_open_watches')}"
        if "memory_watches_open" in w:
            yield "server RSS, watches open", _mib(w["memory_watches_open"]["rss_mib"])
        for number, ph in enumerate(w.get("phases", []), 1):
            yield from _phase_rows(number, ph)
        if "released_s" in w:
            left = f"{w['server_open_watches_after_close']} open, {w['server_pod_watchers_after_close']} subscribed"
            yield "watches after client close", f"{left} on the server after {w['released_s']:.2f} s"
    if "server_exit_code" in r:
        yield "server exit code", str(r["server_exit_code"])
    if "error" in r:
        yield "ERROR", r["error"]


def _phase_rows(number: int, ph: dict[str, Any]) -> Iterator[tuple[str, str]]:
    tag = f"[{number}] "
    rate = f"{ph['achieved_rate_per_s']}/s (target {ph['target_rate_per_s']:g}/s)"
    profiled = ", PROFILED" if ph["profiled"] else ""
    patches = f"{ph['patches_ok']}/{ph['churn']} patches at {rate}{profiled}"
    yield tag + "churn", f"{patches}; patch {_lat(ph['patch_latency'])}"
    drain = f"drain {ph['drain_s']:.2f} s, {ph['deliveries_per_s']:,.0f} deliveries/s, {ph['watch_mib']:,.0f} MiB"
    yield tag + "delivered/expected", f"{ph['delivered']:,}/{ph['expected']:,} ({drain})"
    for shape, s in ph["by_shape"].items():
        counts = f"{s['delivered_expected']:,}/{s['expected']:,}, {s['missing']} missing"
        yield tag + f"latency {shape}", f"{_lat(s['latency'])}; {counts}, {s['unexpected']} unexpected"
    yield tag + "latency all", _lat(ph["latency"])
    per = f"{ph['server_cpu_per_patch_ms']} ms/patch, {ph['server_cpu_per_delivery_us']} us/delivery"
    share = f"{100 * ph['server_cpu_share']:.0f}% of a core"
    gc_time = f"GC {ph['server_gc_cpu_s']} s CPU / {ph['server_gc_s']} s wall"
    yield tag + "server CPU", f"{ph['server_cpu_s']:.2f} s ({share}; {per}), {gc_time}"
    yield tag + "machine contention", _contention(ph["contention"])
    yield tag + "client CPU", f"{ph['client_cpu_s']:.2f} s"
    mem = ph["memory_after"]
    yield tag + "server RSS after", f"{_mib(mem['rss_mib'])} (peak {_mib(mem['peak_rss_mib'])})"


def print_table(results: dict[str, Any]) -> None:
    rows = list(table_rows(results))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")


# -- entry point ----------------------------------------------------------------------------------------------------


def _rates(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command")
    serve_p = commands.add_parser("serve", help="build and serve the simulated cluster (the server process)")
    run_p = commands.add_parser("run", help="start the server process and measure it (default)")
    for p in (serve_p, run_p):
        p.add_argument("--pods", type=int, default=150_000)
        p.add_argument("--nodes", type=int, default=5_000)
        p.add_argument("--namespaces", type=int, default=50)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument(
            "--gc-freeze",
            action="store_true",
            help="experiment: gc.freeze() in the server after the build (not what the server does)",
        )
    serve_p.add_argument("--port-file", required=True, help="written as JSON (port, build time) once serving")
    serve_p.add_argument("--stats-file", default="", help="written as JSON on SIGUSR1 and at exit")
    run_p.add_argument("--watchers", type=int, default=1_000, help="half cluster-wide, half filtered by node")
    run_p.add_argument("--churn", type=int, default=2_000, help="label patches during the fan-out")
    run_p.add_argument(
        "--rate",
        type=_rates,
        default=[10.0, 100.0],
        help="patches per second; a comma-separated list runs one churn phase per rate (10,100)",
    )
    run_p.add_argument("--inflight", type=int, default=16, help="patches outstanding at most")
    run_p.add_argument("--page-limit", type=int, default=500)
    run_p.add_argument("--drain-timeout", type=float, default=180.0, help="seconds to wait for events after churn")
    run_p.add_argument("--timeout", type=float, default=1800.0, help="overall limit in seconds")
    run_p.add_argument("--json", default="", help="also write the results here")
    run_p.add_argument("--profile", default="", help="py-spy the server during the churn; collapsed stacks here")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("serve", "run", "-h", "--help"):
        argv.insert(0, "run")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return asyncio.run(serve(args))
    if args.pods < 1 or args.nodes < 1 or min(args.rate) <= 0:
        parser.error("--pods, --nodes and --rate must be positive")
    results: dict[str, Any] = {}
    asyncio.run(run(args, results))
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results.get("server_exit_code") == 0 and "error" not in results else 1


if __name__ == "__main__":
    sys.exit(main())
