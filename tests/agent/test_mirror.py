"""The runtime mirror and its sync loops against the in-memory runtime: relist diffing, brand-new ids, a runtime
restart, objects that live and die between two relists, the event path, and the status-call budget."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable

from nodemeta.agent.metrics import AgentMetrics
from nodemeta.agent.mirror import Action, MirrorChange, RuntimeMirror
from nodemeta.agent.runtime_sync import RuntimeSync
from nodemeta.agent.settings import MirrorSettings, TruncateSettings
from nodemeta.cri.model import ContainerState, SandboxState
from nodemeta.kube.settings import BackoffSettings
from tests.agent.fake_runtime import FakeRuntime, container, sandbox

FAST = MirrorSettings(
    relist_period=0.05,
    relist_period_with_events=0.5,
    not_found_retries=3,
    not_found_delay=0.01,
    backoff=BackoffSettings(initial=0.02, maximum=0.1, reset_after=5.0),
)


def make_sync(runtime: FakeRuntime, settings: MirrorSettings = FAST) -> tuple[RuntimeSync, list[MirrorChange]]:
    seen: list[MirrorChange] = []
    sync = RuntimeSync(runtime, RuntimeMirror(settings.truncate), seen.extend, settings=settings,
                       metrics=AgentMetrics())  # fmt: skip
    return sync, seen


def truth(runtime: FakeRuntime, mirror: RuntimeMirror) -> None:
    """The mirror holds exactly what the runtime holds, field for field."""
    assert mirror.sandboxes == runtime.sandboxes
    assert mirror.containers == runtime.containers


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - polling state another task or process changes
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(sync: RuntimeSync) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(sync.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_relist_mirrors_and_diffs_by_state() -> None:
    rt = FakeRuntime()
    s1 = rt.add_sandbox(sandbox(1))
    c1 = rt.add_container(container(1, s1))
    c2 = rt.add_container(container(2, s1), running=False)
    sync, seen = make_sync(rt)
    await sync.relist()
    truth(rt, sync.mirror)
    assert {(c.action, c.obj.id) for c in seen} == {(Action.CREATED, i) for i in (s1.id, c1.id, c2.id)}
    # Nothing changed: the next relist makes no status call and reports nothing.
    before = sum(rt.status_calls.values())
    seen.clear()
    await sync.relist()
    assert seen == [] and sum(rt.status_calls.values()) == before
    # c2 starts (a status call for its pid), c1 exits (from the listing alone), the sandbox stops.
    rt.start(c2.id, pid=777)
    rt.stop(c1.id, exit_code=3)
    rt.stop_sandbox(s1.id)
    await sync.relist()
    assert sync.mirror.containers[c2.id].pid == 777
    assert sync.mirror.containers[c1.id].state == ContainerState.EXITED and sync.mirror.containers[c1.id].pid == 0
    assert sync.mirror.sandboxes[s1.id].state == SandboxState.NOTREADY
    assert rt.status_calls[c1.id] == 1 and rt.status_calls[c2.id] == 2 and rt.status_calls[s1.id] == 1
    # Removed: tombstones, no call.
    rt.remove(c1.id)
    rt.remove(c2.id)
    rt.remove(s1.id)
    seen.clear()
    await sync.relist()
    assert sorted((c.action, c.obj.id) for c in seen) == sorted((Action.DELETED, i) for i in (s1.id, c1.id, c2.id))
    truth(rt, sync.mirror)


async def test_brand_new_id_retried_then_left_for_the_next_relist() -> None:
    rt = FakeRuntime()
    s1 = rt.add_sandbox(sandbox(1))
    c1 = rt.add_container(container(1, s1))
    rt.hidden[c1.id] = 2  # unknown to ContainerStatus twice, then found: the bounded retry covers it
    sync, _ = make_sync(rt)
    await sync.relist()
    truth(rt, sync.mirror)
    assert rt.status_calls[c1.id] == 3
    c2 = rt.add_container(container(2, s1))
    rt.hidden[c2.id] = 10  # longer than the retries: not mirrored yet, not an error, asked again next relist
    await sync.relist()
    assert c2.id not in sync.mirror.containers
    assert rt.status_calls[c2.id] == FAST.not_found_retries + 1
    rt.hidden[c2.id] = 0
    await sync.relist()
    truth(rt, sync.mirror)


async def test_created_and_deleted_between_relists_leaves_no_trace() -> None:
    rt = FakeRuntime()
    s1 = rt.add_sandbox(sandbox(1))
    sync, seen = make_sync(rt)
    await sync.relist()
    c9 = rt.add_container(container(9, s1))
    rt.remove(c9.id)
    seen.clear()
    await sync.relist()
    assert seen == [] and rt.status_calls[c9.id] == 0
    truth(rt, sync.mirror)


async def test_listed_then_gone_before_its_status() -> None:
    """Listed, but deleted before ContainerStatus: NotFound after the retries, nothing mirrored."""
    rt = FakeRuntime()
    s1 = rt.add_sandbox(sandbox(1))
    c1 = rt.add_container(container(1, s1))
    sync, _ = make_sync(rt)
    original = rt.list_containers

    async def list_then_delete() -> list[object]:
        rows = list(await original())
        rt.remove(c1.id)
        return rows

    rt.list_containers = list_then_delete  # type: ignore[method-assign]
    await sync.relist()
    truth(rt, sync.mirror)


async def test_runtime_restart_keeps_the_cache_and_catches_up() -> None:
    rt = FakeRuntime()
    s1 = rt.add_sandbox(sandbox(1))
    c1 = rt.add_container(container(1, s1))
    sync, _ = make_sync(rt)
    async with running(sync):
        await eventually(lambda: sync.available and c1.id in sync.mirror.containers)
        rt.crash()
        await eventually(lambda: not sync.available)
        assert c1.id in sync.mirror.containers  # kept while the runtime is away
        assert "connection refused" in sync.last_error
        # Changes while it is down (its state survives a restart; the kubelet acts meanwhile).
        rt.down = False
        rt.remove(c1.id)
        c2 = rt.add_container(container(2, s1))
        rt.down = True
        await asyncio.sleep(0.1)
        rt.restart()
        await eventually(lambda: sync.available and c2.id in sync.mirror.containers and c1.id not in
                         sync.mirror.containers)  # fmt: skip
        truth(rt, sync.mirror)
    assert sync.metrics.cri_calls.labels("ListPodSandbox", "CriUnavailable")._value.get() >= 1


async def test_event_path_two_status_calls_per_container_lifetime() -> None:
    rt = FakeRuntime(events=True)
    settings = MirrorSettings(
        relist_period=0.05, relist_period_with_events=60.0, not_found_retries=3, not_found_delay=0.01,
        backoff=BackoffSettings(initial=0.02, maximum=0.1, reset_after=5.0),
    )  # fmt: skip
    sync, seen = make_sync(rt, settings)
    async with running(sync):
        await eventually(lambda: sync.events_active and sync.synced)
        lists = rt.calls["ListContainers"]
        s1 = rt.add_sandbox(sandbox(1))
        c1 = rt.add_container(container(1, s1))  # CREATED then STARTED events
        await eventually(lambda: sync.mirror.containers.get(c1.id) == rt.containers[c1.id])
        rt.stop(c1.id, exit_code=2)
        await eventually(lambda: sync.mirror.containers[c1.id].state == ContainerState.EXITED)
        assert sync.mirror.containers[c1.id].exit_code == 2
        rt.remove(c1.id)
        await eventually(lambda: c1.id not in sync.mirror.containers)
        truth(rt, sync.mirror)
        assert rt.calls["ListContainers"] == lists, "events alone kept it current: no relist"
    assert rt.status_calls[c1.id] <= 2
    assert rt.status_calls[s1.id] == 1
    assert [c.action for c in seen if c.obj.id == c1.id][-1] == Action.DELETED


async def test_event_stream_broken_relists_and_resumes() -> None:
    rt = FakeRuntime(events=True)
    s1 = rt.add_sandbox(sandbox(1))
    sync, _ = make_sync(rt, MirrorSettings(relist_period_with_events=60.0, not_found_delay=0.01,
                                           backoff=BackoffSettings(initial=0.02, maximum=0.1)))  # fmt: skip
    async with running(sync):
        await eventually(lambda: sync.events_active and s1.id in sync.mirror.sandboxes)
        relists = sync.metrics.runtime_relists._value.get()
        rt.crash()
        rt.remove(s1.id)  # lost while the stream is down
        rt.restart()
        await eventually(lambda: s1.id not in sync.mirror.sandboxes)
        assert sync.metrics.runtime_relists._value.get() > relists
        await eventually(lambda: sync.events_active)


async def test_no_events_means_relist_only() -> None:
    rt = FakeRuntime(events=False)
    sync, _ = make_sync(rt)
    async with running(sync):
        await eventually(lambda: rt.calls["GetContainerEvents"] == 1 and sync.synced)
        s1 = rt.add_sandbox(sandbox(1))
        await eventually(lambda: s1.id in sync.mirror.sandboxes)
    assert rt.calls["GetContainerEvents"] == 1 and not sync.events_active


def test_lookups_by_prefix_and_truncation() -> None:
    mirror = RuntimeMirror(TruncateSettings(max_value=40, marker="~"))
    s1 = sandbox(1)
    mirror.put_sandbox(s1)
    a = container(1, s1, annotations={"long": "v" * 100})
    b = container(256, s1)
    mirror.put_container(a)
    mirror.put_container(b)
    assert mirror.resolve(a.id[:12]) == mirror.containers[a.id] == mirror.resolve(a.id[:40])
    twin = dataclasses.replace(b, id=a.id[:12] + "f" * 52)
    mirror.put_container(twin)
    assert mirror.resolve(a.id[:12]) is None  # two ids share these 12 characters: ambiguous
    assert mirror.resolve(a.id[:13]) == mirror.containers[a.id]
    mirror.remove(twin.id)
    assert mirror.resolve(s1.id[:12]) == s1
    assert mirror.resolve("c0") is None
    assert mirror.containers[a.id].annotations["long"] == "v" * 39 + "~"
    assert [c.id for c in mirror.containers_of(s1.id)] == [a.id, b.id]
    assert mirror.sandboxes_of_pod(s1.uid) == [s1]
