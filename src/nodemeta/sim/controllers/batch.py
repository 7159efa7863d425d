"""(being written)"""

from __future__ import annotations

from nodemeta.sim.controllers.base import Factory

CONTROLLERS: dict[str, Factory] = {}
