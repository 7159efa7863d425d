"""An agent in-process on the containerd lab through the real CRI client, and what the lab says independently of it.

The metadata side is a source that is synced at once and delivers nothing (`IdleSource`): these tests are about
the runtime mirror; the end-to-end tests add the simulator and the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from nodemeta.agent.app import Agent
from nodemeta.agent.metastore import MetadataSink
from nodemeta.agent.settings import AgentSettings, MirrorSettings
from nodemeta.cri.client import CriClient
from nodemeta.kube import BackoffSettings
from tests.agent.helpers import agent_settings, running_agent
from tests.lab.harness import ContainerdLab

# A real runtime answers a relist in milliseconds; 0.2 s keeps the tests quick without spinning the shared CPUs.
LAB_MIRROR = MirrorSettings(relist_period=0.2, not_found_delay=0.01, backoff=BackoffSettings(initial=0.05, maximum=0.3))


class IdleSource:
    """A metadata source with nothing to say: synced at once, then idle until cancelled."""

    def __init__(self, sink: MetadataSink) -> None:
        self.sink = sink

    async def run(self) -> None:
        self.sink.synced()
        await asyncio.Event().wait()


def lab_settings(tmp_path: Path, node: str = "lab-node", **overrides: Any) -> AgentSettings:
    return agent_settings(tmp_path, node, mirror=LAB_MIRROR, **overrides)


@contextlib.asynccontextmanager
async def lab_agent(lab: ContainerdLab, settings: AgentSettings) -> AsyncIterator[Agent]:
    """An Agent on `lab` through `CriClient`, serving its unix socket; stopped (and awaited) on exit."""
    async with CriClient(str(lab.socket)) as runtime, running_agent(settings, runtime, IdleSource, timeout=15) as agent:
        yield agent


def pod_addresses(lab: ContainerdLab, sandbox_id: str) -> set[str]:
    """The global addresses of the pod's eth0, read with `ip` inside its network namespace."""
    out = lab.in_pod_netns(sandbox_id, ["ip", "-o", "addr", "show", "dev", "eth0", "scope", "global"]).stdout
    found = set()
    for line in out.splitlines():
        words = line.split()
        for family in ("inet", "inet6"):
            if family in words:
                found.add(str(ipaddress.ip_interface(words[words.index(family) + 1]).ip))
    return found
