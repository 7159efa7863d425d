"""The agent's runtime mirror against the containerd lab through the real CRI client, over time: a containerd
restart, objects that come and go between two relists (or between a listing and the status call), PID lookups of
real container processes under both cgroup layouts the runtime produces, and the status calls a container costs in
its lifetime, counted by the agent's own metrics.

containerd 1.6 has no GetContainerEvents, so every change here reaches the agent by relisting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from nodemeta.agent.metrics import AgentMetrics
from nodemeta.agent.mirror import MirrorChange, RuntimeMirror
from nodemeta.agent.runtime_sync import RuntimeSync
from nodemeta.cri.client import CriClient
from nodemeta.cri.model import ContainerState, Listed
from tests.agent.helpers import eventually
from tests.agent.lab_agent import LAB_MIRROR, lab_agent, lab_settings
from tests.lab.harness import ContainerdLab

UID = "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"
FLAT_UID = "7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d7"


def cri_calls(metrics: AgentMetrics, method: str) -> int:
    """Calls of `method` the agent counted, every outcome included."""
    total = 0.0
    for family in metrics.cri_calls.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("method") == method:
                total += sample.value
    return int(total)


def _sample(gauge: Any) -> float:
    return float(next(s.value for family in gauge.collect() for s in family.samples))


async def test_containerd_restart_keeps_the_cache_and_catches_up(clean_lab: ContainerdLab, tmp_path: Path) -> None:
    lab = clean_lab
    sandbox_id = await asyncio.to_thread(lab.run_pod, "db-0", "data", UID)
    kept = await asyncio.to_thread(lab.start_container, sandbox_id, "db")
    doomed = await asyncio.to_thread(lab.start_container, sandbox_id, "doomed")
    settings = lab_settings(tmp_path)
    async with (
        lab_agent(lab, settings) as agent,
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=settings.api.socket)) as http,
    ):
        await eventually(lambda: agent.readiness().ready and doomed in agent.mirror.containers, what="ready")
        before = dict(agent.mirror.containers)

        await asyncio.to_thread(lab.stop_containerd)
        await eventually(lambda: not agent.runtime_sync.available, what="the agent noticed")
        # Still up and ready (it was mirrored once), answering from its cache; the gauge says the runtime is away.
        assert agent.readiness().ready and _sample(agent.metrics.runtime_available) == 0
        assert agent.mirror.containers == before
        async with http.get(f"http://agent/v1/containers/{kept}") as response:
            assert response.status == 200 and (await response.json())["container"]["id"] == kept
        async with http.get("http://agent/healthz") as response:
            assert response.status == 200
        relists = agent.metrics.runtime_relists._value.get()

        await asyncio.to_thread(lab.start_containerd)
        await eventually(lambda: agent.runtime_sync.available and agent.readiness().ready, what="caught up")
        await eventually(lambda: agent.metrics.runtime_relists._value.get() > relists, what="relisted")
        assert _sample(agent.metrics.runtime_available) == 1
        assert agent.mirror.containers == before, "nothing changed while containerd was down"
        # And it follows the runtime again: one container gone, one new.
        await asyncio.to_thread(lab.remove_container, doomed)
        fresh = await asyncio.to_thread(lab.start_container, sandbox_id, "fresh")
        await eventually(lambda: fresh in agent.mirror.containers and doomed not in agent.mirror.containers)
        assert agent.mirror.containers[kept] == before[kept]


class _RemovingAfterListing:
    """The real client, except that right after listing, the named ids are removed from the runtime: the race
    between a listing and the status call for a row in it, made certain."""

    def __init__(self, inner: CriClient, lab: ContainerdLab, containers: Sequence[str], sandboxes: Sequence[str]):
        self.inner = inner
        self.lab = lab
        self.containers = list(containers)
        self.sandboxes = list(sandboxes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def list_containers(self) -> Sequence[Listed]:
        rows = await self.inner.list_containers()
        for cid in self.containers:
            await asyncio.to_thread(self.lab.remove_container, cid)
        for sid in self.sandboxes:
            await asyncio.to_thread(self.lab.remove_pod, sid)
        self.containers, self.sandboxes = [], []
        return rows


async def test_objects_gone_between_relists_or_before_their_status_call_leave_no_trace(
    clean_lab: ContainerdLab,
) -> None:
    lab = clean_lab
    sandbox_id = await asyncio.to_thread(lab.run_pod, "api-0", "web", UID)
    steady = await asyncio.to_thread(lab.start_container, sandbox_id, "api")
    changes: list[MirrorChange] = []
    metrics = AgentMetrics()
    mirror = RuntimeMirror()
    async with CriClient(str(lab.socket)) as client:
        sync = RuntimeSync(client, mirror, changes.extend, settings=LAB_MIRROR, metrics=metrics)
        await sync.relist()
        assert set(mirror.containers) == {steady} and set(mirror.sandboxes) == {sandbox_id}
        statuses = cri_calls(metrics, "ContainerStatus")
        changes.clear()

        # Created, started and deleted between two relists: the second sees nothing of it.
        brief = await asyncio.to_thread(lab.start_container, sandbox_id, "brief")
        await asyncio.to_thread(lab.remove_container, brief)
        brief_pod = await asyncio.to_thread(lab.run_pod, "brief-0", "web")
        await asyncio.to_thread(lab.remove_pod, brief_pod)
        await sync.relist()
        assert set(mirror.containers) == {steady} and set(mirror.sandboxes) == {sandbox_id}
        assert changes == [] and cri_calls(metrics, "ContainerStatus") == statuses

        # Listed, then gone before the status call: the runtime answers NOT_FOUND, the retries run out, and the
        # mirror stays as it was.
        late = await asyncio.to_thread(lab.start_container, sandbox_id, "late")
        late_pod = await asyncio.to_thread(lab.run_pod, "late-0", "web")
        racing = _RemovingAfterListing(client, lab, [late], [late_pod])
        sync = RuntimeSync(racing, mirror, changes.extend, settings=LAB_MIRROR, metrics=metrics)  # type: ignore[arg-type]
        await sync.relist()
        assert set(mirror.containers) == {steady} and set(mirror.sandboxes) == {sandbox_id}
        assert all(c.obj.id not in (late, late_pod) for c in changes), changes
        assert cri_calls(metrics, "ContainerStatus") > statuses, "the status call was made and failed"
        # And the next relist is clean.
        await sync.relist()
        assert set(mirror.containers) == {steady} and set(mirror.sandboxes) == {sandbox_id}


def _cgroup_text(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


async def test_pid_lookup_of_real_container_processes_under_both_cgroup_layouts(
    clean_lab: ContainerdLab, tmp_path: Path
) -> None:
    lab = clean_lab
    kubelet_pod = await asyncio.to_thread(lab.run_pod, "worker-0", "jobs", UID)  # /kubepods/besteffort/pod<uid>
    flat_pod = await asyncio.to_thread(lab.run_pod, "worker-1", "jobs", FLAT_UID, cgroup_parent="")  # /k8s.io/<id>
    nested = await asyncio.to_thread(lab.start_container, kubelet_pod, "work")
    flat = await asyncio.to_thread(lab.start_container, flat_pod, "work")
    cases = []
    for sandbox_id, cid, uid in ((kubelet_pod, nested, UID), (flat_pod, flat, FLAT_UID)):
        cases.append((sandbox_id, cid, uid, await asyncio.to_thread(lab.container_pid, cid),
                      await asyncio.to_thread(lab.sandbox_pid, sandbox_id)))  # fmt: skip
    # The two layouts really are what the processes show.
    assert f"/kubepods/besteffort/pod{UID}/{nested}" in _cgroup_text(cases[0][3])
    assert f"/k8s.io/{flat}" in _cgroup_text(cases[1][3]) and FLAT_UID not in _cgroup_text(cases[1][3])

    settings = lab_settings(tmp_path)
    async with (
        lab_agent(lab, settings) as agent,
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=settings.api.socket)) as http,
    ):
        await eventually(lambda: {nested, flat} <= set(agent.mirror.containers), what="mirrored")
        for sandbox_id, cid, uid, pid, pause in cases:
            for path in (f"/v1/pids/{pid}", f"/v1/lookup/{pid}"):
                async with http.get(f"http://agent{path}") as response:
                    assert response.status == 200, path
                    record = await response.json()
                assert record["kind"] == "container" and record["pid"] == pid
                assert record["container"]["id"] == cid and record["container"]["pid"] == pid
                assert record["sandbox"]["id"] == sandbox_id and record["pod"]["uid"] == uid
            # The pause process belongs to the sandbox itself.
            async with http.get(f"http://agent/v1/pids/{pause}") as response:
                record = await response.json()
            assert record["kind"] == "sandbox" and record["sandbox"]["id"] == sandbox_id and record["pid"] == pause
        # A host process in no container.
        async with http.get(f"http://agent/v1/pids/{lab.holder_pid}") as response:
            assert response.status == 404


async def test_status_calls_per_container_lifetime_on_the_real_runtime(
    clean_lab: ContainerdLab, tmp_path: Path
) -> None:
    """At most two status calls per container in its whole life (created, started, stopped, removed), counted by
    the agent's own CRI call metrics: one when first seen, one more when seen CREATED and then RUNNING."""
    lab = clean_lab
    async with lab_agent(lab, lab_settings(tmp_path)) as agent:
        metrics, mirror = agent.metrics, agent.mirror
        sandbox_before = cri_calls(metrics, "PodSandboxStatus")
        sandbox_id = await asyncio.to_thread(lab.run_pod, "batch-0", "jobs", UID)
        await eventually(lambda: sandbox_id in mirror.sandboxes, what="sandbox mirrored")

        async def lifetime(name: str) -> int:
            """Create, see CREATED, start, see RUNNING with its pid, stop, see EXITED, remove, see it gone."""
            before = cri_calls(metrics, "ContainerStatus")
            cid = await asyncio.to_thread(lab.create_container, sandbox_id, name)
            await eventually(lambda: cid in mirror.containers, what="created")
            assert mirror.containers[cid].state == ContainerState.CREATED
            await asyncio.to_thread(lab.stub.StartContainer, _start(cid))
            await eventually(lambda: mirror.containers[cid].state == ContainerState.RUNNING, what="running")
            assert mirror.containers[cid].pid > 0
            await asyncio.to_thread(lab.stop_container, cid)
            await eventually(lambda: mirror.containers[cid].state == ContainerState.EXITED, what="exited")
            await asyncio.to_thread(lab.remove_container, cid)
            await eventually(lambda: cid not in mirror.containers, what="removed")
            return cri_calls(metrics, "ContainerStatus") - before

        per_container = [await lifetime(f"step-{n}") for n in range(3)]
        # Started before the agent first saw it: one call.
        before = cri_calls(metrics, "ContainerStatus")
        quick = await asyncio.to_thread(lab.start_container, sandbox_id, "quick")
        await eventually(lambda: quick in mirror.containers and mirror.containers[quick].pid > 0, what="quick")
        await asyncio.to_thread(lab.remove_container, quick)
        await eventually(lambda: quick not in mirror.containers, what="quick removed")
        per_container.append(cri_calls(metrics, "ContainerStatus") - before)
        await asyncio.to_thread(lab.remove_pod, sandbox_id)
        await eventually(lambda: sandbox_id not in mirror.sandboxes, what="sandbox removed")
        assert all(calls <= 2 for calls in per_container), per_container
        assert per_container == [2, 2, 2, 1], per_container
        assert cri_calls(metrics, "PodSandboxStatus") - sandbox_before == 1


def _start(cid: str) -> Any:
    from nodemeta.api.cri.runtime.v1 import api_pb2 as cri

    return cri.StartContainerRequest(container_id=cid)
