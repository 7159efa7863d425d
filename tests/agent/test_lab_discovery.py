"""Runtime discovery on the containerd lab: the agent finds the first candidate socket that answers, under a host
root, and keeps looking (not ready, saying which paths it tried) until one does."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

from nodemeta.agent.app import Agent
from nodemeta.cri.finder import RuntimeFinder
from tests.agent.helpers import eventually
from tests.agent.lab_agent import IdleSource, lab_settings
from tests.lab.harness import ContainerdLab


async def test_the_agent_finds_a_runtime_that_appears_after_it_started(
    clean_lab: ContainerdLab, tmp_path: Path
) -> None:
    lab = clean_lab
    sandbox_id = await asyncio.to_thread(lab.run_pod, "late-runtime-0", "default")
    host = tmp_path / "host"
    (host / "run" / "containerd").mkdir(parents=True)
    (host / "run" / "crio").mkdir(parents=True)
    (host / "run" / "crio" / "crio.sock").write_text("not a socket")
    settings = lab_settings(tmp_path, host_root=str(host))
    async with RuntimeFinder(host_root=str(host)) as runtime:  # the default candidates, under the host root
        agent = Agent(settings, runtime, IdleSource)
        task = asyncio.create_task(agent.run(), name="agent")
        try:
            await eventually(lambda: "does not exist" in agent.readiness().detail, what="looking")
            detail = agent.readiness().detail
            assert f"{host}/run/containerd/containerd.sock: does not exist" in detail
            assert f"{host}/run/crio/crio.sock: is not a socket" in detail
            # containerd's socket appears where the defaults look for it.
            os.symlink(lab.socket, host / "run" / "containerd" / "containerd.sock")
            await eventually(lambda: sandbox_id in agent.mirror.sandboxes and agent.readiness().ready, what="found")
            assert runtime.path == f"{host}/run/containerd/containerd.sock"
        finally:
            agent.stop()
            async with asyncio.timeout(15):
                await task


async def test_the_heap_is_frozen_once_the_agent_is_ready(clean_lab: ContainerdLab, tmp_path: Path) -> None:
    """Long-lived objects leave the cyclic collector's generations once the agent is ready (see
    `AgentSettings.freeze_heap`); the test process's own collector is restored afterwards."""
    lab = clean_lab
    await asyncio.to_thread(lab.run_pod, "frozen-0", "default")
    gc.unfreeze()
    settings = lab_settings(tmp_path, freeze_heap=True)
    try:
        async with RuntimeFinder([str(lab.socket)]) as runtime:
            agent = Agent(settings, runtime, IdleSource)
            task = asyncio.create_task(agent.run(), name="agent")
            try:
                await eventually(lambda: agent.heap_frozen == 1, what="frozen")
                assert agent.readiness().ready and gc.get_freeze_count() > 0
                assert len(agent.mirror.sandboxes) == 1
            finally:
                agent.stop()
                async with asyncio.timeout(15):
                    await task
    finally:
        gc.unfreeze()
