"""Which CRI socket to use: the first candidate that exists and answers Version.

The agent runs in a pod with the host's filesystem (or just /run) mounted somewhere, e.g. under /host; the
candidates are host paths, so `host_root` is prefixed to each. A configured list replaces the defaults. When
nothing answers, `NoRuntimeFound` lists every path tried and why each was passed over.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from nodemeta.cri.client import CriClient
from nodemeta.cri.model import CriError, CriUnavailable, RuntimeVersion
from nodemeta.cri.settings import DEFAULT_SOCKETS, CriSettings

__all__ = ["DiscoveredRuntime", "NoRuntimeFound", "candidate_paths", "discover_runtime"]


class NoRuntimeFound(CriUnavailable):
    """No candidate socket answered; `tried` holds (path, reason) for each."""

    def __init__(self, tried: Sequence[tuple[str, str]]) -> None:
        self.tried = tuple(tried)
        lines = "; ".join(f"{path}: {reason}" for path, reason in self.tried) or "no candidate sockets given"
        super().__init__(f"no CRI runtime socket answered ({lines})")


@dataclass(frozen=True, slots=True)
class DiscoveredRuntime:
    # The socket's path as this process sees it (host_root included).
    path: str
    version: RuntimeVersion


def candidate_paths(candidates: Sequence[str] | None = None, *, host_root: str = "") -> list[str]:
    """The socket paths to probe, in order: the configured ones or the defaults, under `host_root`."""
    paths = list(candidates) if candidates else list(DEFAULT_SOCKETS)
    root = host_root.rstrip("/")
    seen: dict[str, None] = {}
    for path in paths:
        bare = path.removeprefix("unix://")
        seen.setdefault(f"{root}/{bare.lstrip('/')}" if root else bare, None)
    return list(seen)


def _not_a_socket(path: str) -> str:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"
    return "" if stat.S_ISSOCK(mode) else "is not a socket"


async def discover_runtime(
    candidates: Sequence[str] | None = None,
    *,
    host_root: str = "",
    settings: CriSettings | None = None,
) -> DiscoveredRuntime:
    """Probe the candidates in order; return the first that answers Version, else raise `NoRuntimeFound`."""
    tried: list[tuple[str, str]] = []
    for path in candidate_paths(candidates, host_root=host_root):
        reason = _not_a_socket(path)
        if not reason:
            async with CriClient(path, settings=settings) as client:
                try:
                    return DiscoveredRuntime(path, await client.version())
                except CriError as error:
                    reason = str(error)
        tried.append((path, reason))
    raise NoRuntimeFound(tried)
