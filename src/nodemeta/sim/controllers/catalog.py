"""Every controller of the simulated cluster, by name."""

from __future__ import annotations

from nodemeta.sim.controllers import batch, daemons, gc, kubelet, namespaces, network, nodes, replicas, scheduler
from nodemeta.sim.controllers.base import Controller, Factory
from nodemeta.sim.registry import Registry
from nodemeta.sim.settings import SimSettings

CONTROLLERS: dict[str, Factory] = {
    **replicas.CONTROLLERS,
    **daemons.CONTROLLERS,
    **batch.CONTROLLERS,
    **scheduler.CONTROLLERS,
    **kubelet.CONTROLLERS,
    **network.CONTROLLERS,
    **gc.CONTROLLERS,
    **namespaces.CONTROLLERS,
    **nodes.CONTROLLERS,
}


def build(registry: Registry, settings: SimSettings) -> list[Controller]:
    """The controllers `settings.controllers` names (all when None); unknown names are an error."""
    names = list(CONTROLLERS) if settings.controllers is None else list(settings.controllers)
    unknown = [n for n in names if n not in CONTROLLERS]
    if unknown:
        raise ValueError(f"unknown controllers: {', '.join(unknown)}; known: {', '.join(sorted(CONTROLLERS))}")
    return [CONTROLLERS[n](registry, settings) for n in names]
