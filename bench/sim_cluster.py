"""Generated-cluster benchmark: build time and memory at 1k and 5k nodes, list and watch throughput under churn.

Two commands:

* ``serve`` builds a realistic cluster in this process (`plan_cluster` + `build_cluster`, with the controllers
  running) on a `SimServer` set up for large clusters (no component Events, one-write pod start, kubelet Lease
  renewals on or off), writes the build report to ``--port-file`` and serves until SIGTERM. Beside the API server
  it serves a small control API on another loopback port: start and stop a `ChurnDriver`, wait for the controllers
  to settle, read the server's own counters, and read the *change log*, every pod change the store committed with
  its resourceVersion, type, key, node (before and after) and commit time. The log is recorded by a store
  observer, called synchronously inside each write, so it is the ground truth the load side checks against.
* ``run`` (the default) starts ``serve`` as a child process, once per cluster size (and kubelet heartbeat
  setting), so the server's RSS and CPU (from ``/proc/<pid>``) are measured apart from the load, then measures from
  this process with aiohttp over loopback:

  1. idle: a full paginated list of pods (limit=500), which also gives the starting state the change log is
     applied to, and node-filtered lists (``fieldSelector=spec.nodeName=node-K``, as a node agent lists its pods);
  2. it opens W watches from the list's resourceVersion with bookmarks: one per node for up to
     ``--node-watchers`` nodes, plus ``--cluster-watchers`` watches of every pod;
  3. per churn rate: the driver runs at that rate; for ``--watch-seconds`` only the watches read; then, churn
     still running, repeated full paginated lists and node-filtered lists; then the churn stops, the controllers
     settle and every watcher must have received exactly the changes the log says it should (a cluster-wide
     watcher every pod change, a node watcher every change to a pod on its node, typed as the server's filter
     types it). Each list must equal the state the log gives at the list's resourceVersion (same pods, same
     resourceVersions).

Delivery latency of an event = the time the load side read it minus the time the server committed it. Both are
`time.perf_counter()`, which on Linux is CLOCK_MONOTONIC and so shared by the two processes (checked at start-up).

    .venv/bin/python bench/sim_cluster.py run --sizes 1000x30,5000x30 --rates 20,100 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import gc
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from measure import BenchError, Contention, Profiler, open_stream, proc_cpu_seconds, raise_nofile_limit, read_lines

LOOPBACK = "127.0.0.1"
# The load side reads most cluster-wide events by byte search (see WatchLog.feed); every FULL_PARSE_EVERY-th line
# is parsed in full as well and the two readings must agree.
_TYPE = re.compile(rb'\{"type":"([A-Z]+)"')
_RV = re.compile(rb'"resourceVersion":"(\d+)"')
FULL_PARSE_EVERY = 64
TYPE_CODE = {"ADDED": "A", "MODIFIED": "M", "DELETED": "D"}
# A change as the serve process logs it: resourceVersion, commit time (perf_counter), type code, key
# ("namespace/name"), node before the change ("" for none or unscheduled) and node after it.
Change = tuple[int, float, str, str, str, str]


# -- /proc readings and machine facts (the same readings as bench/sim_scale.py) ----------------------------------


def proc_memory_mib(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of `pid`, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss_mib" if key == "VmRSS" else "peak_rss_mib"] = round(int(value.split()[0]) / 1024, 1)
    return out


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


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
    head = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "src")
    return {
        "nodemeta_commit": head + ("+dirty" if dirty else ""),
        "src_changes": _git("diff", "--stat", "HEAD", "--", "src").splitlines()[-1:],
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "mem_total_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))]


def latency_summary(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "samples": len(ordered),
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else float("nan"),
        "min_ms": round(ordered[0] * 1000, 2) if ordered else float("nan"),
    }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- serve: the server process --------------------------------------------------------------------------------------


@dataclass(slots=True)
class GcTimer:
    """GC pauses of this process, from gc.callbacks."""

    started: float = 0.0
    started_cpu: float = 0.0
    count: list[int] = field(default_factory=lambda: [0, 0, 0])
    seconds: float = 0.0  # wall time, what clients wait
    cpu_seconds: float = 0.0
    longest: float = 0.0
    # The longest pause since the last `snapshot(reset=True)`: per measured window, not over the build.
    window_longest: float = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            self.started_cpu = time.thread_time()
            return
        took = time.perf_counter() - self.started
        self.cpu_seconds += time.thread_time() - self.started_cpu
        self.count[info["generation"]] += 1
        self.seconds += took
        self.longest = max(self.longest, took)
        self.window_longest = max(self.window_longest, took)

    def snapshot(self, reset: bool = False) -> dict[str, Any]:
        out = {"count": list(self.count), "seconds": round(self.seconds, 4), "cpu_s": round(self.cpu_seconds, 4),
               "longest_s": round(self.longest, 4), "window_longest_s": round(self.window_longest, 4)}  # fmt: skip
        if reset:
            self.window_longest = 0.0
        return out


class ChangeLog:
    """Every pod change the store commits, with its commit time: the ground truth of the load side.

    A store observer, called synchronously inside each write, so nothing can be missed or reordered. Entries are
    dropped once the load side has read them (`take(after)`), so the log stays small.
    """

    def __init__(self, pods_storage: str) -> None:
        self.pods_storage = pods_storage
        self.entries: list[Change] = []
        self.total = 0

    def observe(self, bucket: Any, change: Any) -> None:
        if bucket.res.storage_name != self.pods_storage:
            return
        prev = change.prev.field("spec.nodeName") if change.prev is not None else ""
        node = change.obj.field("spec.nodeName")
        self.entries.append((change.rv, time.perf_counter(), TYPE_CODE[change.type], change.key, prev, node))
        self.total += 1

    def take(self, after: int) -> list[Change]:
        """Forget entries at or below `after` (the reader has them) and return the rest."""
        cut = bisect.bisect_right(self.entries, after, key=lambda c: c[0])
        if cut:
            del self.entries[:cut]
        return list(self.entries)


class Controller:
    """The serve process's control API (loopback only): churn, settle, stats and the change log."""

    def __init__(self, server: Any, changes: ChangeLog, gc_timer: GcTimer) -> None:
        self.server = server
        self.changes = changes
        self.gc_timer = gc_timer
        self.driver: Any = None
        self.churn_task: asyncio.Task[None] | None = None
        self.churn_started = 0.0

    def app(self) -> Any:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/changes", self.get_changes)
        app.router.add_get("/stats", self.get_stats)
        app.router.add_post("/churn", self.start_churn)
        app.router.add_post("/churn/stop", self.stop_churn)
        app.router.add_post("/settle", self.settle)
        return app

    def _json(self, data: Any) -> Any:
        from aiohttp import web

        return web.Response(body=orjson.dumps(data), content_type="application/json")

    async def get_changes(self, request: Any) -> Any:
        after = int(request.query.get("after", "0"))
        # No await between reading the entries and the store's revision: every pod change up to `rv` is included.
        entries = self.changes.take(after)
        return self._json({"rv": self.server.store.rv, "changes": entries, "total": self.changes.total})

    async def get_stats(self, request: Any) -> Any:
        from nodemeta.sim.generator import PODS

        bucket = self.server.registry.bucket(PODS)
        return self._json({
            "cpu_s": round(time.process_time(), 3),
            "gc": self.gc_timer.snapshot(reset=request.query.get("reset") == "1"),
            "open_watches": len(self.server.open_watches),
            "pod_watchers": bucket.watcher_count(),
            "pods": len(bucket),
            "pod_history": len(bucket.history),
            "store_rv": self.server.store.rv,
            "objects": sum(len(b) for b in self.server.store.buckets.values()),
            "change_log_pending": len(self.changes.entries),
            "churning": self.churn_task is not None and not self.churn_task.done(),
            **({"history": self.history()} if request.query.get("history") == "1" else {}),
        })  # fmt: skip

    def history(self, top: int = 6) -> dict[str, dict[str, float]]:
        """What each storage's change history holds: changes, and the revisions it keeps alive that are no longer
        current (an entry holds the object after the change and before it), with their JSON bytes."""
        out: dict[str, dict[str, float]] = {}
        for name, bucket in self.server.store.buckets.items():
            if not bucket.history:
                continue
            live = {id(s) for s in bucket.items.values()}
            pinned: dict[int, int] = {}
            for change in bucket.history:
                for stored in (change.obj, change.prev):
                    if stored is not None and id(stored) not in live:
                        pinned[id(stored)] = len(stored.body)
            out[name] = {"changes": len(bucket.history), "old_revisions": len(pinned),
                         "old_revision_mib": round(sum(pinned.values()) / 2**20, 1)}  # fmt: skip
        ranked = sorted(out.items(), key=lambda kv: -kv[1]["old_revision_mib"])
        return dict(ranked[:top])

    async def start_churn(self, request: Any) -> Any:
        from nodemeta.sim.churn import ChurnDriver

        if self.churn_task is not None and not self.churn_task.done():
            return self._json({"error": "churn already running"})
        rate = float(request.query["rate"])
        seed = int(request.query.get("seed", "1"))
        limit = float(request.query.get("limit", "600"))
        self.driver = ChurnDriver(self.server, seed, rate)
        t0 = time.perf_counter()
        _ = self.driver.catalogue  # read once, before the clock starts (a scan of every pod)
        catalogue_s = time.perf_counter() - t0
        self.churn_started = time.perf_counter()
        self.churn_task = asyncio.create_task(self.driver.run(limit), name="bench-churn")
        return self._json({"rv": self.server.store.rv, "catalogue_s": round(catalogue_s, 3),
                           "started": self.churn_started})  # fmt: skip

    async def stop_churn(self, _request: Any) -> Any:
        task, self.churn_task = self.churn_task, None
        ran = time.perf_counter() - self.churn_started
        failed = ""
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as err:  # the driver's error is a result to report, not a reason to stop serving
                failed = repr(err)
        driver = self.driver
        return self._json({
            "seconds": round(ran, 3),
            "done": dict(driver.counts) if driver else {},
            "skipped": dict(driver.skipped) if driver else {},
            "error": failed,
            "stopped": time.perf_counter(),
            "rv": self.server.store.rv,
        })  # fmt: skip

    async def settle(self, request: Any) -> Any:
        limit = float(request.query.get("limit", "30"))
        t0 = time.perf_counter()
        idle = True
        try:
            async with asyncio.timeout(limit):
                await self.server.settle()
        except TimeoutError:
            idle = False
        return self._json({"idle": idle, "seconds": round(time.perf_counter() - t0, 3), "rv": self.server.store.rv})


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(data))
    tmp.replace(path)


async def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from nodemeta import logs
    from nodemeta.sim import SimServer, SimSettings
    from nodemeta.sim.generator import PODS, build_cluster, plan_cluster

    logs.configure("warning", json=False)
    raise_nofile_limit()
    gc_timer = GcTimer()
    gc.callbacks.append(gc_timer)
    rss_start = proc_memory_mib()
    t0 = time.perf_counter()
    plan = plan_cluster(args.nodes, args.pods_per_node, args.seed)
    plan_s = time.perf_counter() - t0
    settings = SimSettings(
        host=LOOPBACK, port=0, seed=args.seed, component_events=False,
        kubelet_heartbeats=args.heartbeats, kubelet_two_step_start=False,
    )  # fmt: skip
    server = SimServer(settings)
    await server.start()
    shown = {"phase": "", "at": 0.0}

    def progress(phase: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if phase != shown["phase"] or now - shown["at"] >= 5.0 or done == total:
            shown.update(phase=phase, at=now)
            print(f"[{now - t0:7.1f}s] build {phase}: {done:,}/{total:,}", file=sys.stderr, flush=True)

    cpu0 = time.process_time()
    gc_before = gc_timer.snapshot()
    t1 = time.perf_counter()
    report = await build_cluster(server, plan, progress)
    build_s = time.perf_counter() - t1
    build_cpu_s = time.process_time() - cpu0
    gc_build = gc_timer.snapshot()
    rss_built = proc_memory_mib()

    changes = ChangeLog(PODS.storage_name)
    server.store.observers.append(changes.observe)
    control = Controller(server, changes, gc_timer)
    runner = web.AppRunner(control.app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, 0)
    await site.start()
    control_port = runner.addresses[0][1]
    api_port = int(server.url.rsplit(":", 1)[1])
    _write_atomically(Path(args.port_file), {
        "port": api_port, "control_port": control_port, "pid": os.getpid(),
        "perf_counter": time.perf_counter(), "plan_s": round(plan_s, 3), "plan_digest": plan.digest(),
        "composition": plan.composition(), "build_s": round(build_s, 3), "build_cpu_s": round(build_cpu_s, 3),
        "report_s": round(report.seconds, 3), "phases": [[p, round(s, 3)] for p, s in report.phases],
        "written": report.written, "pods_expected": report.pods_expected, "pods_ready": report.pods_ready,
        "ready": report.ready, "objects": report.objects, "objects_total": sum(report.objects.values()),
        "store_rv": server.store.rv, "rss_start": rss_start, "rss_built": rss_built,
        "gc_build": {"before": gc_before, "after": gc_build}, "gc_frozen": gc.get_freeze_count(),
        "heartbeats": args.heartbeats, "settings": dataclasses.asdict(settings),
    })  # fmt: skip
    print(f"sim_cluster serve: built {report.pods_ready:,}/{report.pods_expected:,} pods in {build_s:.1f}s, "
          f"RSS {rss_built['rss_mib']:,.0f} MiB, listening on {server.url}", file=sys.stderr, flush=True)  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        await stop.wait()
    finally:
        if control.churn_task is not None:
            control.churn_task.cancel()
            with contextlib.suppress(BaseException):
                await control.churn_task
        await runner.cleanup()
        await server.stop()
    return 0


# -- run: the load side ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port_file: Path
    log_file: Path
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.info['port']}"

    @property
    def control(self) -> str:
        return f"http://{LOOPBACK}:{self.info['control_port']}"

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
                raise BenchError(f"server not ready after {limit_s:.0f}s:\n{self.log_tail(5)}")
            await asyncio.sleep(0.5)
        self.info = orjson.loads(self.port_file.read_bytes())

    def memory(self) -> dict[str, float]:
        return proc_memory_mib(self.pid)

    def cpu(self) -> float:
        return proc_cpu_seconds(self.pid)

    async def stop(self, limit_s: float = 60.0) -> int | None:
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


def start_server(nodes: int, pods_per_node: int, heartbeats: bool, seed: int, workdir: Path) -> ServerProcess:
    port_file = workdir / "port.json"
    log_file = workdir / "server.log"
    command = [
        sys.executable, str(Path(__file__).resolve()), "serve", "--nodes", str(nodes),
        "--pods-per-node", str(pods_per_node), "--seed", str(seed), "--port-file", str(port_file),
        "--heartbeats" if heartbeats else "--no-heartbeats",
    ]  # fmt: skip
    with log_file.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return ServerProcess(proc, port_file, log_file)


class Truth:
    """The pods as the change log says they are: a starting list's state, moved forward change by change.

    `state` maps key -> (node, resourceVersion); `by_node` indexes it by node, so a node-filtered list is checked
    without a scan. `changes` holds the fetched changes not yet folded into the state (and the current phase's,
    for the watch checks), in resourceVersion order.
    """

    def __init__(self, session: aiohttp.ClientSession, control: str) -> None:
        self.session = session
        self.control = control
        self.state: dict[str, tuple[str, int]] = {}
        self.by_node: dict[str, dict[str, int]] = {}
        self.cursor = 0  # the state is the cluster as of this resourceVersion
        self.known = 0  # every pod change up to here has been fetched
        self.changes: list[Change] = []
        self.applied = 0  # changes[:applied] are in the state
        self.fetch_s = 0.0

    def reset(self, items: dict[str, tuple[str, int]], rv: int) -> None:
        self.state = dict(items)
        self.by_node = {}
        for key, (node, item_rv) in items.items():
            self.by_node.setdefault(node, {})[key] = item_rv
        self.cursor = self.known = rv
        self.changes, self.applied = [], 0

    async def fetch(self) -> int:
        t0 = time.perf_counter()
        async with self.session.get(f"{self.control}/changes?after={self.known}") as resp:
            body = await resp.read()
        data = orjson.loads(body)
        fresh = [tuple(c) for c in data["changes"] if c[0] > self.known]
        self.changes.extend(fresh)  # type: ignore[arg-type]
        self.known = max(self.known, int(data["rv"]))
        self.fetch_s += time.perf_counter() - t0
        return len(fresh)

    async def advance_to(self, rv: int) -> None:
        """Fold every change up to `rv` into the state (fetching them first when needed)."""
        if rv < self.cursor:
            raise BenchError(f"truth cannot go back from {self.cursor} to {rv}")
        if self.known < rv:
            await self.fetch()
        while self.applied < len(self.changes) and self.changes[self.applied][0] <= rv:
            change_rv, _t, kind, key, _prev, node = self.changes[self.applied]
            old = self.state.pop(key, None)
            if old is not None:
                self.by_node[old[0]].pop(key, None)
            if kind != "D":
                self.state[key] = (node, change_rv)
                self.by_node.setdefault(node, {})[key] = change_rv
            self.applied += 1
        self.cursor = rv

    def drop_until(self, rv: int) -> None:
        """Forget changes up to `rv` that are already folded into the state."""
        cut = min(self.applied, bisect.bisect_right(self.changes, rv, key=lambda c: c[0]))
        del self.changes[:cut]
        self.applied -= cut

    def between(self, low: int, high: int) -> list[Change]:
        """Fetched changes with low < rv <= high."""
        lo = bisect.bisect_right(self.changes, low, key=lambda c: c[0])
        hi = bisect.bisect_right(self.changes, high, key=lambda c: c[0])
        return self.changes[lo:hi]


def compare(listed: dict[str, int], truth: dict[str, int]) -> dict[str, int]:
    """A list against the truth at its resourceVersion: pods missing, unexpected, or at another revision."""
    missing = sum(1 for k in truth if k not in listed)
    unexpected = sum(1 for k in listed if k not in truth)
    stale = sum(1 for k, rv in listed.items() if k in truth and truth[k] != rv)
    return {"missing": missing, "unexpected": unexpected, "wrong_rv": stale}


async def list_pods(
    session: aiohttp.ClientSession, base: str, limit: int, selector: str = "", give_up_at: float = 0.0
) -> dict[str, Any]:
    """One complete paginated list; a 410 on a continue token restarts it, as a reflector does, until
    `give_up_at` (perf_counter; 0 = never give up). Pages, bytes and times count every attempt; `items` is the
    last attempt's, and `complete` says whether it reached the end."""
    restarts = pages = total_bytes = fetched = 0
    attempts: list[int] = []  # items each attempt reached
    fetch_s = parse_s = 0.0
    t0 = time.perf_counter()
    while True:
        items: dict[str, tuple[str, int]] = {}
        rv = 0
        token = ""
        expired = False
        while True:
            url = f"{base}/api/v1/pods?limit={limit}"
            if selector:
                url += f"&fieldSelector={quote(selector)}"
            if token:
                url += f"&continue={quote(token)}"
            f0 = time.perf_counter()
            async with session.get(url) as resp:
                body = await resp.read()
                status = resp.status
            f1 = time.perf_counter()
            fetch_s += f1 - f0
            if status == 410 and token:
                expired = True
                break
            if status != 200:
                raise BenchError(f"GET {url}: {status} {body[:300]!r}")
            page = orjson.loads(body)
            for item in page["items"]:
                meta = item["metadata"]
                key = f"{meta['namespace']}/{meta['name']}"
                items[key] = ((item.get("spec") or {}).get("nodeName") or "", int(meta["resourceVersion"]))
            fetched += len(page["items"])
            parse_s += time.perf_counter() - f1
            pages += 1
            total_bytes += len(body)
            rv = rv or int(page["metadata"]["resourceVersion"])
            token = page["metadata"].get("continue") or ""
            del body, page
            if not token:
                break
        restarts += expired
        attempts.append(len(items))
        if not expired or (give_up_at and time.perf_counter() >= give_up_at):
            break
    return {
        "items": items, "rv": rv, "pages": pages, "bytes": total_bytes, "items_fetched": fetched,
        "fetch_s": fetch_s, "parse_s": parse_s, "wall_s": time.perf_counter() - t0, "restarts": restarts,
        "complete": not expired, "attempt_items": attempts,
    }  # fmt: skip


async def full_lists(
    session: aiohttp.ClientSession, base: str, truth: Truth, limit: int, seconds: float, max_lists: int
) -> dict[str, Any]:
    """Full paginated lists back to back for `seconds` (at least one), each checked against the truth. A list
    whose continue token keeps expiring (410) is retried until the step has taken `seconds` twice over; the pages
    it fetched count towards throughput, and it is reported as incomplete."""
    deadline = time.perf_counter() + seconds
    runs: list[dict[str, Any]] = []
    bad: Counter[str] = Counter()
    contention = Contention()
    while True:
        listed = await list_pods(session, base, limit, give_up_at=deadline + seconds)
        items = listed.pop("items")
        if listed["complete"]:
            await truth.advance_to(listed["rv"])
            diff = compare({k: v[1] for k, v in items.items()}, {k: v[1] for k, v in truth.state.items()})
            bad.update(diff)
        listed["count"] = len(items)
        runs.append(listed)
        del items
        if time.perf_counter() >= deadline or len(runs) >= max_lists:
            break
    fetch = sum(r["fetch_s"] for r in runs)
    wall = sum(r["wall_s"] for r in runs)
    count = sum(r["items_fetched"] for r in runs)  # attempts a 410 cut short included
    return {
        "lists": len(runs),
        "complete_lists": sum(r["complete"] for r in runs),
        "items_per_list": runs[-1]["count"],
        "pages": sum(r["pages"] for r in runs),
        "mib": round(sum(r["bytes"] for r in runs) / 2**20, 1),
        "fetch_s": round(fetch, 3),
        "wall_s": round(wall, 3),
        "items_per_s": round(count / fetch),
        "pages_per_s": round(sum(r["pages"] for r in runs) / fetch, 1),
        "mib_per_s": round(sum(r["bytes"] for r in runs) / 2**20 / fetch, 1),
        "items_per_s_wall": round(count / wall),
        "list_s": [round(r["fetch_s"], 3) for r in runs],
        "attempt_items": [r["attempt_items"] for r in runs],
        "restarts_410": sum(r["restarts"] for r in runs),
        "mismatch": dict(bad),
        "consistent": not any(bad.values()),
        "contention": contention.result(),
    }


async def node_lists(
    session: aiohttp.ClientSession, base: str, truth: Truth, nodes: list[str], limit: int, seconds: float
) -> dict[str, Any]:
    """One node-filtered list per node in `nodes`, one at a time, for at most `seconds`; each checked."""
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    bad: Counter[str] = Counter()
    pods = 0
    contention = Contention()
    for node in nodes:
        listed = await list_pods(session, base, limit, selector=f"spec.nodeName={node}")
        latencies.append(listed["fetch_s"])
        items = listed["items"]
        pods += len(items)
        wrong = sum(1 for n, _ in items.values() if n != node)
        await truth.advance_to(listed["rv"])
        bad.update(compare({k: v[1] for k, v in items.items()}, truth.by_node.get(node, {})))
        bad["wrong_node"] += wrong
        if time.perf_counter() >= deadline:
            break
    return {
        "requests": len(latencies),
        "mean_pods": round(pods / max(1, len(latencies)), 1),
        "latency": latency_summary(latencies),
        "requests_per_s": round(len(latencies) / sum(latencies), 1) if latencies else 0.0,
        "mismatch": dict(bad),
        "consistent": not any(bad.values()),
        "contention": contention.result(),
    }


@dataclass(slots=True)
class WatchLog:
    """One open watch and every event it received: resourceVersions and arrival times (and types for node
    watchers), in arrival order, which for one watch is resourceVersion order."""

    ident: int
    node: str  # "" = every pod
    url: str
    response: aiohttp.ClientResponse | None = None
    rvs: array[int] = field(default_factory=lambda: array("q"))
    times: array[float] = field(default_factory=lambda: array("d"))
    types: list[str] = field(default_factory=list)
    bookmarks: int = 0
    last_rv: int = 0
    lines: int = 0
    bytes: int = 0
    wrong_node: int = 0
    disagree: int = 0
    errors: list[str] = field(default_factory=list)
    ended_at: float = 0.0

    def feed(self, line: bytes, now: float) -> None:
        """Record one event line. Cluster-wide watchers read type and resourceVersion by byte search (the JSON of
        every pod event would cost the load side as much CPU as the server spends); node watchers and every
        FULL_PARSE_EVERY-th line are parsed in full, and the two readings must agree."""
        if not line:
            return
        self.lines += 1
        kind = _TYPE.match(line)
        rv = _RV.search(line)
        if kind is not None and rv is not None and not self.node and self.lines % FULL_PARSE_EVERY:
            if kind.group(1) == b"BOOKMARK":
                self.bookmarks += 1
            else:
                self.rvs.append(int(rv.group(1)))
                self.times.append(now)
            self.last_rv = int(rv.group(1))
            return
        event = orjson.loads(line)
        event_type = event.get("type")
        obj = event.get("object")
        if event_type == "ERROR" or not isinstance(obj, dict):
            self.errors.append(line[:300].decode(errors="replace"))
            return
        full_rv = int(obj["metadata"]["resourceVersion"])
        if kind is None or rv is None or kind.group(1).decode() != event_type or int(rv.group(1)) != full_rv:
            self.disagree += 1
        self.last_rv = full_rv
        if event_type == "BOOKMARK":
            self.bookmarks += 1
            return
        self.rvs.append(full_rv)
        self.times.append(now)
        if self.node:
            self.types.append(TYPE_CODE.get(event_type, "?"))
            if (obj.get("spec") or {}).get("nodeName") != self.node:
                self.wrong_node += 1

    def received(self, count: int) -> None:
        self.bytes += count

    def window(self, low: int, high: int) -> tuple[int, int]:
        """Indexes of the events with low < rv <= high."""
        return bisect.bisect_right(self.rvs, low), bisect.bisect_right(self.rvs, high)


async def open_watch(session: aiohttp.ClientSession, watch: WatchLog) -> None:
    watch.response = await open_stream(session, watch.url)


async def read_watch(watch: WatchLog) -> None:
    """Read newline-delimited events; an event's arrival time is when the chunk carrying its line was read."""
    assert watch.response is not None
    try:
        error = await read_lines(watch.response, watch.feed, watch.received)
        if error is not None:
            watch.errors.append(error)
    finally:
        watch.ended_at = time.perf_counter()


def node_event(change: Change, node: str) -> str | None:
    """How a watcher of `spec.nodeName=node` sees a change (the server's WatchFilter.event_type), or None."""
    _rv, _t, kind, _key, prev, now_node = change
    was = prev == node and kind != "A"
    if kind == "D":
        return "D" if was else None
    if now_node == node:
        return "M" if was else "A"
    return "D" if was else None


async def control(session: aiohttp.ClientSession, server: ServerProcess, method: str, path: str) -> dict[str, Any]:
    async with session.request(method, f"{server.control}{path}") as resp:
        body = await resp.read()
        if resp.status != 200:
            raise BenchError(f"{method} {path}: {resp.status} {body[:300]!r}")
    data: dict[str, Any] = orjson.loads(body)
    if data.get("error") and path == "/churn":
        raise BenchError(f"churn: {data['error']}")
    return data


@dataclass(slots=True)
class Bench:
    """One server process under measurement, with its watches and the truth they are checked against."""

    args: argparse.Namespace
    server: ServerProcess
    session: aiohttp.ClientSession
    truth: Truth
    nodes: int
    watches: list[WatchLog] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    watch_rv: int = 0

    def node_sample(self, count: int, offset: int = 0) -> list[str]:
        """`count` distinct nodes spread evenly over node-1..node-N."""
        count = min(count, self.nodes)
        return [f"node-{1 + (offset + j * self.nodes // count) % self.nodes}" for j in range(count)] if count else []

    async def open_watches(self, rv: int) -> dict[str, Any]:
        args = self.args
        self.watch_rv = rv
        common = f"watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds={int(args.timeout) + 600}"
        base = f"{self.server.base}/api/v1/pods?{common}"
        self.watches = [WatchLog(i, "", base) for i in range(args.cluster_watchers)]
        for node in self.node_sample(args.node_watchers):
            selector = quote(f"spec.nodeName={node}")
            self.watches.append(WatchLog(len(self.watches), node, f"{base}&fieldSelector={selector}"))
        gate = asyncio.Semaphore(64)

        async def opened(w: WatchLog) -> None:
            async with gate:
                await open_watch(self.session, w)

        cpu0 = self.server.cpu()
        t0 = time.perf_counter()
        await asyncio.gather(*(opened(w) for w in self.watches))
        self.readers = [asyncio.create_task(read_watch(w)) for w in self.watches]
        open_s = time.perf_counter() - t0
        await asyncio.sleep(1.0)
        stats = await control(self.session, self.server, "GET", "/stats")
        return {
            "cluster_watchers": args.cluster_watchers,
            "node_watchers": len(self.watches) - args.cluster_watchers,
            "open_s": round(open_s, 3),
            "open_server_cpu_s": round(self.server.cpu() - cpu0, 3),
            "server_open_watches": stats["open_watches"],
            "server_pod_watchers": stats["pod_watchers"],
            "memory": self.server.memory(),
        }

    async def close_watches(self) -> dict[str, Any]:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        closed = time.perf_counter()
        for w in self.watches:
            if w.response is not None:
                w.response.close()
        while True:
            stats = await control(self.session, self.server, "GET", "/stats")
            if (stats["open_watches"] == 0 and stats["pod_watchers"] == 0) or time.perf_counter() - closed > 15:
                break
            await asyncio.sleep(0.1)
        return {"released_s": round(time.perf_counter() - closed, 3), "open_watches_left": stats["open_watches"],
                "pod_watchers_left": stats["pod_watchers"]}  # fmt: skip

    async def phase(self, number: int, rate: float, low: int) -> tuple[dict[str, Any], int]:
        """One churn phase at `rate`; the watch check covers pod changes with low < rv <= the returned high."""
        args = self.args
        server = self.server
        stats0 = await control(self.session, server, "GET", "/stats?reset=1")
        profiler = Profiler(
            server.pid,
            f"{args.profile}/{args.label}-{rate:g}.txt" if args.profile else "",
            rate=100,
            nonblocking=True,
            wait=60,
            top=20,
        )
        profiler.start()
        contention = Contention()
        cpu0 = server.cpu()
        client_cpu0 = time.process_time()
        started = await control(
            self.session,
            server,
            "POST",
            f"/churn?rate={rate}&seed={args.seed + number}"
            f"&limit={args.watch_seconds + args.list_seconds + args.node_list_seconds + 300}",
        )
        t_churn = time.perf_counter()
        result: dict[str, Any] = {"target_rate_per_s": rate, "catalogue_s": started["catalogue_s"]}
        # Segment 1: the watches alone (the change log is read as it grows, so the server never holds much).
        while time.perf_counter() - t_churn < args.watch_seconds:
            await asyncio.sleep(min(2.0, max(0.0, args.watch_seconds - (time.perf_counter() - t_churn))))
            await self.truth.fetch()
        t_lists = time.perf_counter()
        cpu_watch = server.cpu() - cpu0
        memory_watch = server.memory()
        # Segment 2: lists while the churn goes on.
        result["full_list"] = await full_lists(
            self.session, server.base, self.truth, args.page_limit, args.list_seconds, args.max_lists
        )
        result["node_list"] = await node_lists(
            self.session, server.base, self.truth, self.node_sample(args.node_lists, offset=number + 1),
            args.page_limit, args.node_list_seconds,
        )  # fmt: skip
        stopped = await control(self.session, server, "POST", "/churn/stop")
        t_stop = time.perf_counter()
        cpu_churn = server.cpu() - cpu0
        memory_churn = server.memory()
        settled = await control(self.session, server, "POST", f"/settle?limit={args.settle_seconds}")
        await self.truth.fetch()
        high = self.truth.known
        changes = self.truth.between(low, high)
        expected = self._expected(changes)
        await self._drain(changes, expected, high)
        t_drained = time.perf_counter()
        busy = contention.result()
        server_cpu = server.cpu() - cpu0
        client_cpu = time.process_time() - client_cpu0
        profile = await profiler.stop()
        stats1 = await control(self.session, server, "GET", "/stats?history=1")
        actions = sum(stopped["done"].values()) + sum(stopped["skipped"].values())
        churn_s = t_stop - t_churn
        during = [c for c in changes if c[1] <= t_stop]
        result |= {
            "churn_s": round(churn_s, 2),
            "watch_only_s": round(t_lists - t_churn, 2),
            "lists_s": round(t_stop - t_lists, 2),
            "actions": stopped["done"],
            "skipped": stopped["skipped"],
            "churn_error": stopped["error"],
            "achieved_rate_per_s": round(actions / stopped["seconds"], 1) if stopped["seconds"] else 0.0,
            "pod_changes": len(changes),
            "pod_changes_per_s": round(len(during) / churn_s, 1),
            "settle": settled,
            "drain_s": round(t_drained - t_stop, 2),
            "watch": self._check(changes, expected, low, high, (t_churn, t_lists, t_stop), t_drained),
            "server_cpu_share_watch_only": round(cpu_watch / (t_lists - t_churn), 3),
            "server_cpu_share_churn": round(cpu_churn / churn_s, 3),
            "server_cpu_s": round(server_cpu, 2),
            "client_cpu_share": round(client_cpu / (t_drained - t_churn), 3),
            "server_gc_s": round(stats1["gc"]["seconds"] - stats0["gc"]["seconds"], 3),
            "server_gc_cpu_s": round(stats1["gc"]["cpu_s"] - stats0["gc"]["cpu_s"], 3),
            "server_gc_longest_s": stats1["gc"]["window_longest_s"],
            "server_gc_collections": [
                n1 - n0 for n0, n1 in zip(stats0["gc"]["count"], stats1["gc"]["count"], strict=True)
            ],
            "memory_watch_only": memory_watch,
            "memory_churn": memory_churn,
            "memory_after": server.memory(),
            "server_objects": stats1["objects"],
            "server_history": stats1.get("history", {}),
            "server_pods": stats1["pods"],
            "contention": busy,
            "truth_fetch_s": round(self.truth.fetch_s, 2),
            "profile": profile,
        }
        self.truth.fetch_s = 0.0
        return result, high

    def _expected(self, changes: list[Change]) -> dict[str, dict[int, str]]:
        """For each watched node, the resourceVersions (and event types) its watcher must receive."""
        watched = {w.node for w in self.watches if w.node}
        out: dict[str, dict[int, str]] = {node: {} for node in watched}
        for change in changes:
            for node in {change[4], change[5]} & watched:
                seen = node_event(change, node)
                if seen is not None:
                    out[node][change[0]] = seen
        return out

    async def _drain(self, changes: list[Change], expected: dict[str, dict[int, str]], high: int) -> None:
        """Wait until every watcher has everything up to `high` (or --drain-seconds pass)."""
        last = changes[-1][0] if changes else 0
        deadline = time.perf_counter() + self.args.drain_seconds
        while time.perf_counter() < deadline:
            behind = 0
            for w in self.watches:
                if w.ended_at:
                    continue
                if not w.node:
                    behind += w.last_rv < last
                else:
                    lo, hi = w.window(self.watch_rv, high)
                    behind += (w.rvs[hi - 1] if hi > lo else 0) < max(expected[w.node], default=0)
            if not behind:
                return
            await asyncio.sleep(0.1)

    def _check(
        self,
        changes: list[Change],
        expected: dict[str, dict[int, str]],
        low: int,
        high: int,
        marks: tuple[float, float, float],
        t_drained: float,
    ) -> dict[str, Any]:
        committed = {c[0]: c[1] for c in changes}
        every = set(committed)
        segments = ("watch_only", "during_lists", "after_churn")
        shapes: dict[str, dict[str, Any]] = {}
        by_segment: dict[str, list[float]] = {s: [] for s in segments}
        deliveries = during_churn = 0
        for shape in ("cluster", "node"):
            members = [w for w in self.watches if bool(w.node) == (shape == "node")]
            counts: Counter[str] = Counter()
            latencies: list[float] = []
            for w in members:
                lo, hi = w.window(low, high)
                got = w.rvs[lo:hi]
                times = w.times[lo:hi]
                want: set[int] | dict[int, str] = expected[w.node] if w.node else every
                received = set(got)
                counts["expected"] += len(want)
                counts["delivered"] += len(got)
                counts["missing"] += sum(1 for rv in want if rv not in received)
                counts["unexpected"] += sum(1 for rv in received if rv not in want)
                counts["duplicates"] += len(got) - len(received)
                if w.node:
                    assert isinstance(want, dict)
                    counts["wrong_type"] += sum(1 for rv, t in zip(got, w.types[lo:hi], strict=True)
                                                if rv in want and want[rv] != t)  # fmt: skip
                counts["ended_early"] += bool(w.ended_at and w.ended_at < t_drained)
                during_churn += bisect.bisect_right(times, marks[2])
                for rv, arrived in zip(got, times, strict=True):
                    at = committed.get(rv)
                    if at is None:
                        continue
                    latency = arrived - at
                    latencies.append(latency)
                    by_segment[segments[0 if at < marks[1] else 1 if at < marks[2] else 2]].append(latency)
            deliveries += counts["delivered"]
            shapes[shape] = {"watchers": len(members), **counts, "latency": latency_summary(latencies)}
        window = max(1e-9, t_drained - marks[0])
        return {
            "expected": sum(s["expected"] for s in shapes.values()),
            "delivered": deliveries,
            "deliveries_per_s": round(deliveries / window, 1),
            "deliveries_per_s_churn": round(during_churn / (marks[2] - marks[0]), 1),
            "per_cluster_watcher_per_s": round(len(every) / window, 1),
            "by_shape": shapes,
            "latency_by_segment": {s: latency_summary(v) for s, v in by_segment.items()},
            "bookmarks": sum(w.bookmarks for w in self.watches),
            "wrong_node": sum(w.wrong_node for w in self.watches),
            "byte_search_disagreements": sum(w.disagree for w in self.watches),
            "errors": [e for w in self.watches for e in w.errors][:10],
            "watch_mib": round(sum(w.bytes for w in self.watches) / 2**20, 1),
        }

    def forget_until(self, high: int) -> None:
        """Drop the events and changes of a finished phase (the client's memory stays bounded)."""
        for w in self.watches:
            _lo, hi = w.window(0, high)
            del w.rvs[:hi], w.times[:hi]
            if w.node:
                del w.types[:hi]
            w.bytes = 0


async def measure(args: argparse.Namespace, server: ServerProcess, result: dict[str, Any]) -> None:
    await server.wait_ready(args.build_timeout)
    info = server.info
    skew = time.perf_counter() - info["perf_counter"]
    result["build"] = {k: info[k] for k in (
        "plan_s", "build_s", "build_cpu_s", "phases", "written", "pods_expected", "pods_ready", "ready", "objects",
        "objects_total", "store_rv", "rss_start", "rss_built", "gc_build", "gc_frozen", "composition", "plan_digest",
    ) if k in info}  # fmt: skip
    result["settings"] = info.get("settings", {})
    result["build"]["memory_parent_view"] = server.memory()
    result["clock_check_s"] = round(skew, 3)
    if not 0 <= skew < 60:
        raise BenchError(f"the two processes' perf_counter clocks differ ({skew:.3f}s): latencies would be wrong")
    log(f"built {info['pods_ready']:,}/{info['pods_expected']:,} pods in {info['build_s']:.1f}s "
        f"(CPU {info['build_cpu_s']:.1f}s), RSS {info['rss_built']['rss_mib']:,.0f} MiB")  # fmt: skip
    if not info["ready"]:
        log("WARNING: not every planned pod was running when the build returned")

    gc.disable()  # the load side's own collections would walk its big heap again and again; collected by hand
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, read_bufsize=1 << 20) as session:
        truth = Truth(session, server.control)
        bench = Bench(args, server, session, truth, args.nodes)
        # Idle: what the server costs doing nothing (kubelet heartbeats), then the starting list.
        cpu0, t0 = server.cpu(), time.perf_counter()
        await asyncio.sleep(args.idle_seconds)
        result["idle_cpu_share"] = round((server.cpu() - cpu0) / (time.perf_counter() - t0), 3)
        listed = await list_pods(session, server.base, args.page_limit)
        items = listed.pop("items")
        truth.reset(items, listed["rv"])
        result["idle_list"] = {
            "items": len(items), "pages": listed["pages"], "mib": round(listed["bytes"] / 2**20, 1),
            "fetch_s": round(listed["fetch_s"], 3), "wall_s": round(listed["wall_s"], 3),
            "items_per_s": round(len(items) / listed["fetch_s"]),
            "pages_per_s": round(listed["pages"] / listed["fetch_s"], 1),
            "mib_per_s": round(listed["bytes"] / 2**20 / listed["fetch_s"], 1),
            "bytes_per_pod": round(listed["bytes"] / max(1, len(items))),
            "unscheduled": sum(1 for node, _ in items.values() if not node),
        }  # fmt: skip
        del items
        result["idle_node_list"] = await node_lists(
            session, server.base, truth, bench.node_sample(args.node_lists), args.page_limit, args.node_list_seconds
        )
        gc.collect()
        log(f"idle list: {result['idle_list']['items']:,} pods in {result['idle_list']['fetch_s']:.2f}s; "
            f"node list p50 {result['idle_node_list']['latency']['p50_ms']} ms")  # fmt: skip
        result["watches"] = await bench.open_watches(truth.cursor)
        log(f"opened {len(bench.watches)} watches in {result['watches']['open_s']:.2f}s")
        result["phases"] = []
        low = bench.watch_rv
        try:
            for number, rate in enumerate(args.rates):
                log(f"churn at {rate:g}/s: {args.watch_seconds:g}s watches only, then lists")
                phase, low = await bench.phase(number, rate, low)
                result["phases"].append(phase)
                await truth.advance_to(low)
                truth.drop_until(low)
                bench.forget_until(low)
                gc.collect()
                w = phase["watch"]
                p99 = [w["by_shape"][shape]["latency"]["p99_ms"] for shape in ("cluster", "node")]
                log(
                    f"  {phase['achieved_rate_per_s']}/s actions, {phase['pod_changes_per_s']}/s pod changes; "
                    f"{w['delivered']:,}/{w['expected']:,} delivered, p99 {p99[0]} ms (cluster), {p99[1]} ms (node)"
                )
        finally:
            result["close"] = await bench.close_watches()
        gc.enable()


async def run(args: argparse.Namespace, results: dict[str, Any]) -> None:
    raise_nofile_limit()
    results["machine"] = machine_facts()
    results["params"] = {k: v for k, v in vars(args).items() if k not in ("command",)}
    results["runs"] = []
    for nodes, pods_per_node in args.sizes:
        for heartbeats in args.heartbeats:
            label = f"{nodes}x{pods_per_node}-hb{'on' if heartbeats else 'off'}"
            result: dict[str, Any] = {
                "label": label,
                "nodes": nodes,
                "pods_per_node": pods_per_node,
                "heartbeats": heartbeats,
                "started_utc": time.strftime("%H:%M:%S", time.gmtime()),
            }
            results["runs"].append(result)
            log(f"=== {label}: starting the server (build)")
            args.nodes, args.label = nodes, label
            contention = Contention()
            with tempfile.TemporaryDirectory(prefix="sim-cluster-") as tmp:
                server = start_server(nodes, pods_per_node, heartbeats, args.seed, Path(tmp))
                try:
                    async with asyncio.timeout(args.timeout):
                        await measure(args, server, result)
                except (BenchError, TimeoutError, aiohttp.ClientError) as err:
                    result["error"] = f"{type(err).__name__}: {err}"
                    log(f"sim_cluster: {result['error']}")
                finally:
                    result["contention"] = contention.result()
                    result["server_exit_code"] = await server.stop()
                    if result["server_exit_code"] != 0:
                        log(f"server exit code {result['server_exit_code']}; log tail:\n{server.log_tail()}")
            if args.json:
                await asyncio.to_thread(write_json, args.json, results)


# -- output ---------------------------------------------------------------------------------------------------------


def _lat(lat: dict[str, Any]) -> str:
    return f"p50 {lat['p50_ms']} / p99 {lat['p99_ms']} / max {lat['max_ms']} ms"


def _mem(m: dict[str, float]) -> str:
    return f"{m['rss_mib']:,.0f} MiB (peak {m['peak_rss_mib']:,.0f})"


def _bad(mismatch: dict[str, int]) -> str:
    wrong = {k: v for k, v in mismatch.items() if v}
    return f" {wrong}" if wrong else ""


def _busy(c: dict[str, Any]) -> str:
    return f"CPU pressure {c['cpu_pressure_pct']}%, load {c['loadavg_1m'][0]}..{c['loadavg_1m'][1]}"


def table_rows(r: dict[str, Any]) -> Iterator[tuple[str, str]]:
    yield "run", f"{r['label']} ({r['nodes']:,} nodes x {r['pods_per_node']} pods/node), from {r['started_utc']} UTC"
    if r.get("settings"):
        keys = ("history_limit", "kubelet_heartbeats", "kubelet_two_step_start", "component_events")
        yield "server settings", ", ".join(f"{k}={r['settings'].get(k)}" for k in keys)
    b = r.get("build")
    if b:
        yield "build", (f"{b['build_s']:.1f} s wall, {b['build_cpu_s']:.1f} s CPU; {b['pods_ready']:,}/"
                        f"{b['pods_expected']:,} pods ready; {b['objects_total']:,} objects, {b['written']:,} "
                        f"written by the builder; plan {b['plan_s']:.1f} s")  # fmt: skip
        slow = sorted(b["phases"], key=lambda p: -p[1])[:4]
        yield "build phases (slowest)", ", ".join(f"{p} {s:.1f} s" for p, s in slow)
        yield "server RSS after build", f"{_mem(b['rss_built'])}; {b['rss_start']['rss_mib']:,.0f} MiB at start"
    if "idle_cpu_share" in r:
        yield "server CPU when idle", f"{100 * r['idle_cpu_share']:.1f}% of a core"
    il = r.get("idle_list")
    if il:
        yield "idle list limit=500", (f"{il['items']:,} pods, {il['pages']} pages, {il['mib']} MiB in "
                                      f"{il['fetch_s']:.2f} s: {il['items_per_s']:,} items/s, {il['pages_per_s']} "
                                      f"pages/s, {il['mib_per_s']} MiB/s")  # fmt: skip
    nl = r.get("idle_node_list")
    if nl:
        yield "idle node-filtered list", f"{nl['requests']} nodes, {_lat(nl['latency'])}; consistent {nl['consistent']}"
    w = r.get("watches")
    if w:
        yield "watches", (f"{w['cluster_watchers']} cluster-wide + {w['node_watchers']} node-filtered opened in "
                          f"{w['open_s']:.2f} s; server RSS {_mem(w['memory'])}")  # fmt: skip
    for ph in r.get("phases", []):
        tag = f"[{ph['target_rate_per_s']:g}/s] "
        cpu = f"{100 * ph['server_cpu_share_watch_only']:.0f}% / {100 * ph['server_cpu_share_churn']:.0f}%"
        yield tag + "churn", (f"{ph['achieved_rate_per_s']}/s actions over {ph['churn_s']:.0f} s, "
                              f"{ph['pod_changes_per_s']:,}/s pod changes; server CPU {cpu} of a core "
                              "(watches only / whole churn)")  # fmt: skip
        wt = ph["watch"]
        yield tag + "watch", (f"{wt['delivered']:,}/{wt['expected']:,} delivered; {wt['deliveries_per_s_churn']:,} "
                              f"events/s during churn, {wt['deliveries_per_s']:,}/s to drained "
                              f"({wt['per_cluster_watcher_per_s']:,}/s per cluster watcher); "
                              f"drain {ph['drain_s']} s")  # fmt: skip
        for shape, s in wt["by_shape"].items():
            checks = ", ".join(f"{k} {s[k]}" for k in ("missing", "unexpected", "duplicates", "wrong_type",
                                                         "ended_early") if k in s)  # fmt: skip
            yield tag + f"latency {shape}", f"{_lat(s['latency'])}; {checks}"
        for seg, lat in wt["latency_by_segment"].items():
            if lat["samples"]:
                yield tag + f"latency {seg}", _lat(lat)
        fl = ph["full_list"]
        complete = f"{fl['complete_lists']}/{fl['lists']} lists complete"
        yield tag + "full list limit=500", (f"{complete}, {fl['items_per_s']:,} items/s, {fl['pages_per_s']} "
                                            f"pages/s, {fl['mib_per_s']} MiB/s; 410 restarts {fl['restarts_410']}; "
                                            f"consistent {fl['consistent']}{_bad(fl['mismatch'])}")  # fmt: skip
        nl = ph["node_list"]
        yield tag + "node-filtered list", (f"{nl['requests']} nodes, {_lat(nl['latency'])}; consistent "
                                           f"{nl['consistent']}{_bad(nl['mismatch'])}")  # fmt: skip
        runs = f", collections by generation {ph['server_gc_collections']}" if "server_gc_collections" in ph else ""
        yield tag + "server GC", f"{ph['server_gc_s']} s wall, longest {ph['server_gc_longest_s']} s{runs}"
        yield tag + "server RSS", f"{_mem(ph['memory_churn'])} end of churn; {ph['server_pods']:,} pods after"
        if ph.get("server_history"):
            kept = ", ".join(
                f"{k} {v['changes']:,} ({v['old_revision_mib']:,.0f} MiB)" for k, v in ph["server_history"].items()
            )
            yield tag + "history held", f"changes (old revisions' JSON): {kept}"
        yield tag + "machine", f"{_busy(ph['contention'])}; client CPU {100 * ph['client_cpu_share']:.0f}%"
    if "close" in r:
        yield "watches after close", f"{r['close']['open_watches_left']} left after {r['close']['released_s']} s"
    if "server_exit_code" in r:
        yield "server exit code", str(r["server_exit_code"])
    if "error" in r:
        yield "ERROR", r["error"]


def write_json(path: str, results: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(results, indent=2) + "\n")


def print_table(results: dict[str, Any]) -> None:
    for r in results.get("runs", []):
        rows = list(table_rows(r))
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"{key.ljust(width)}  {value}")
        print()


# -- entry point ----------------------------------------------------------------------------------------------------


def _sizes(text: str) -> list[tuple[int, int]]:
    try:
        return [(int(n), int(p)) for n, _, p in (part.partition("x") for part in text.split(",") if part.strip())]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NODESxPODS_PER_NODE,...: {text!r}") from None


def _rates(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None


def _heartbeats(text: str) -> list[bool]:
    choices = {"off": [False], "on": [True], "both": [False, True]}
    if text not in choices:
        raise argparse.ArgumentTypeError("expected off, on or both")
    return choices[text]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command")
    serve_p = commands.add_parser("serve", help="build and serve a generated cluster (the server process)")
    serve_p.add_argument("--nodes", type=int, required=True)
    serve_p.add_argument("--pods-per-node", type=int, default=30)
    serve_p.add_argument("--seed", type=int, default=1)
    serve_p.add_argument("--heartbeats", action=argparse.BooleanOptionalAction, default=False)
    serve_p.add_argument("--port-file", required=True, help="written as JSON (ports, build report) once serving")
    run_p = commands.add_parser("run", help="start the server process per size and measure it (default)")
    run_p.add_argument("--sizes", type=_sizes, default=[(1000, 30), (5000, 30)], help="NODESxPODS,... (default both)")
    run_p.add_argument("--heartbeats", type=_heartbeats, default=[False], help="kubelet Lease renewals: off, on, both")
    run_p.add_argument("--rates", type=_rates, default=[20.0, 100.0], help="churn actions per second, one phase each")
    run_p.add_argument("--seed", type=int, default=1)
    run_p.add_argument("--node-watchers", type=int, default=1000, help="watches of one node's pods (distinct nodes)")
    run_p.add_argument("--cluster-watchers", type=int, default=3, help="watches of every pod")
    run_p.add_argument("--watch-seconds", type=float, default=40.0, help="churn with only the watches reading")
    run_p.add_argument("--list-seconds", type=float, default=30.0, help="full paginated lists under churn (>= 1)")
    run_p.add_argument("--max-lists", type=int, default=10)
    run_p.add_argument("--node-lists", type=int, default=200, help="node-filtered lists per step (distinct nodes)")
    run_p.add_argument("--node-list-seconds", type=float, default=30.0, help="at most this long for them")
    run_p.add_argument("--page-limit", type=int, default=500)
    run_p.add_argument("--idle-seconds", type=float, default=10.0, help="server CPU measured idle before anything")
    run_p.add_argument("--settle-seconds", type=float, default=30.0, help="wait for the controllers after churn")
    run_p.add_argument("--drain-seconds", type=float, default=60.0, help="wait for watch events after settling")
    run_p.add_argument("--build-timeout", type=float, default=1500.0)
    run_p.add_argument("--timeout", type=float, default=2400.0, help="limit per run (size), in seconds")
    run_p.add_argument("--json", default="", help="also write the results here (after each run)")
    run_p.add_argument("--profile", default="", help="directory: py-spy record of the server during each phase")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("serve", "run", "-h", "--help"):
        argv.insert(0, "run")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return asyncio.run(serve(args))
    if not args.sizes or any(n < 1 or p < 1 for n, p in args.sizes) or not args.rates or min(args.rates) <= 0:
        parser.error("--sizes and --rates must be positive")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    asyncio.run(run(args, results))
    print_table(results)
    if args.json:
        write_json(args.json, results)
    ok = all(r.get("server_exit_code") == 0 and "error" not in r for r in results.get("runs", []))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
