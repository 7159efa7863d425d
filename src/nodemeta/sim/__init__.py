"""A Kubernetes-API-compatible server for tests, demos and scale benchmarks.

The public names are loaded on first use, so importing one of the pure modules (the store, selectors, patches)
does not pull in the HTTP server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nodemeta.sim.server import SimServer
    from nodemeta.sim.settings import SimSettings

__all__ = ["SimServer", "SimSettings"]


def __getattr__(name: str) -> Any:
    if name == "SimServer":
        from nodemeta.sim.server import SimServer

        return SimServer
    if name == "SimSettings":
        from nodemeta.sim.settings import SimSettings

        return SimSettings
    raise AttributeError(f"module 'nodemeta.sim' has no attribute {name!r}")
