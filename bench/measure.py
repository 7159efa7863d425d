"""Measuring helpers shared by the benchmarks: a process's CPU, the machine's CPU pressure, file limits."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any


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
