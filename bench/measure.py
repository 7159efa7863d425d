"""Measuring helpers shared by the benchmarks: a process's CPU, the machine's CPU pressure, file limits, watch
streams read line by line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid`, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_pressure_us() -> int | None:
    """Microseconds in which some task on this machine waited for a CPU (PSI), or None without PSI."""
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some "):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class Contention:
    """How busy the rest of the machine was during a step: CPU pressure (PSI) and the load average."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.psi0 = cpu_pressure_us()
        self.load0 = os.getloadavg()[0]

    def result(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.t0
        psi = cpu_pressure_us()
        stalled = None
        if psi is not None and self.psi0 is not None and wall > 0:
            stalled = round(100 * (psi - self.psi0) / 1e6 / wall, 1)
        return {"cpu_pressure_pct": stalled, "loadavg_1m": [round(self.load0, 2), round(os.getloadavg()[0], 2)]}


def raise_nofile_limit(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class BenchError(RuntimeError):
    """A benchmark cannot run or measure as asked; the message says why."""


class Profiler:
    """py-spy recording a server process (raw collapsed stacks), from start() until stop()."""

    def __init__(self, pid: int, path: str, *, rate: int, nonblocking: bool, wait: float, top: int) -> None:
        self.pid = pid
        self.path = path
        self.rate = rate
        self.nonblocking = nonblocking
        self.wait = wait
        self.top = top
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not self.path:
            return
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            raise BenchError("--profile needs py-spy (.venv/bin/pip install py-spy)")
        command = [exe, "record", "--pid", str(self.pid), "--format", "raw", "--rate", str(self.rate)]
        if self.nonblocking:
            command.append("--nonblocking")
        command += ["-o", self.path]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    async def stop(self) -> dict[str, Any]:
        if self.proc is None:
            return {}
        self.proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.proc.wait, self.wait)
        if self.proc.poll() is None:
            self.proc.kill()
        return summarize_profile(Path(self.path), self.top)


def summarize_profile(path: Path, top: int) -> dict[str, Any]:
    """Top frames by self and by inclusive samples, from py-spy's collapsed-stack output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [f.split(" (")[0] + " (" + f.rsplit("/", 1)[-1] if "/" in f else f for f in stack.split(";")]
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(frame, round(100 * n / total, 1)) for frame, n in counter.most_common(top)] if total else []

    return {"samples": total, "self_pct": share(own), "inclusive_pct": share(inclusive)}


async def open_stream(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    """GET a streaming URL (a watch); anything but 200 is a BenchError with the start of the body."""
    resp = await session.get(url)
    if resp.status != 200:
        text = await resp.text()
        resp.close()
        raise BenchError(f"watch {url}: {resp.status} {text[:300]}")
    return resp


async def read_lines(
    resp: aiohttp.ClientResponse, feed: Callable[[bytes, float], None], received: Callable[[int], None]
) -> str | None:
    """Feed every newline-delimited line of `resp` with the time the chunk carrying it arrived (perf_counter), and
    count the bytes as they come; returns the connection error that ended the stream, or None at a clean end."""
    pending = b""
    try:
        async for chunk in resp.content.iter_any():
            now = time.perf_counter()
            received(len(chunk))
            data = pending + chunk if pending else chunk
            *lines, pending = data.split(b"\n")
            for line in lines:
                feed(line, now)
    except (aiohttp.ClientError, ConnectionError) as err:
        return repr(err)
    return None
