"""(being written)"""

from __future__ import annotations

from nodemeta.sim.controllers.base import Controller
from nodemeta.sim.registry import Registry
from nodemeta.sim.settings import SimSettings

CONTROLLERS: dict[str, type[Controller] | object] = {}
