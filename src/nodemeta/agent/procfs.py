"""The thin reader of `/proc/<pid>/cgroup`, under a configurable host root (the host's / mounted in the agent's
container, e.g. at /host). The parsing is `nodemeta.agent.cgroup`'s.

A read is one small file from procfs (a few microseconds): no runtime or API call. A process that is gone, a pid
that is not a number or an unreadable file all mean "unknown", never an exception.
"""

from __future__ import annotations

import os

from nodemeta.agent.cgroup import CgroupRef, parse_cgroup

__all__ = ["ProcReader"]

# Larger than any real cgroup file (one line per hierarchy, paths of a few hundred bytes).
_MAX_BYTES = 64 * 1024


class ProcReader:
    def __init__(self, host_root: str = "") -> None:
        self.proc = os.path.join(host_root or "/", "proc")

    def cgroup(self, pid: int) -> CgroupRef | None:
        """The container and pod of process `pid`; None when the process does not exist or cannot be read."""
        if pid <= 0:
            return None
        try:
            fd = os.open(f"{self.proc}/{pid}/cgroup", os.O_RDONLY)
        except OSError:
            return None
        try:
            data = os.read(fd, _MAX_BYTES)
        except OSError:
            return None
        finally:
            os.close(fd)
        return parse_cgroup(data.decode("utf-8", "replace"))
