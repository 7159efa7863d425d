"""The watcher on real directories with real inotify: it publishes each new evaluation, follows a directory that is
removed and recreated or replaced, rescans periodically, never buffers for a slow subscriber, and stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from nodemeta.cni.conf import RuntimeModel
from nodemeta.cni.loaded import LoadedNetwork, LoadedView
from nodemeta.cni.patterns import Code
from nodemeta.cni.watch import ConfWatcher, Evaluation, Subscription, WatchSettings
from tests.cni.conf_writers import (
    LINKERD,
    atomic_write,
    calico,
    cilium,
    cilium_exclusive,
    multus,
    rename_in,
    truncate_write,
)

# Rescans come from inotify only (the periodic one is an hour away), unless a test says otherwise.
EVENTS_ONLY = WatchSettings(debounce=0.05, max_delay=0.5, rescan_interval=3600.0)


@contextlib.asynccontextmanager
async def watching(
    directory: Path, settings: WatchSettings = EVENTS_ONLY, **kwargs: object
) -> AsyncIterator[ConfWatcher]:
    watcher = ConfWatcher(directory, model=RuntimeModel(), required=("linkerd-cni",), settings=settings, **kwargs)  # type: ignore[arg-type]
    task = asyncio.create_task(watcher.run())
    try:
        yield watcher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(sub: Subscription, predicate: Callable[[Evaluation], bool], timeout: float = 10.0) -> Evaluation:
    async with asyncio.timeout(timeout):
        async for evaluation in sub:
            if predicate(evaluation):
                return evaluation
    raise AssertionError("the watcher stopped")


def winner(name: str | None) -> Callable[[Evaluation], bool]:
    return lambda e: (e.state.winner.name if e.state.winner else None) == name


def codes(evaluation: Evaluation) -> set[Code]:
    return {f.code for f in evaluation.findings}


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    directory = tmp_path / "net.d"
    directory.mkdir()
    return directory


async def test_publishes_the_first_state_and_every_change(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    async with watching(conf) as watcher:
        sub = watcher.subscribe()
        first = await until(sub, lambda e: True)
        assert winner("10-calico.conflist")(first) and first.findings == () and first.sequence == 0
        atomic_write(conf, "00-multus.conf", multus("calico"))
        taken = await until(sub, winner("00-multus.conf"))
        assert codes(taken) == {Code.NEW_WINNER, Code.PLUGIN_MISSING}
        (conf / "00-multus.conf").unlink()
        truncate_write(conf, "10-calico.conflist", calico())
        rewritten = await until(sub, lambda e: winner("10-calico.conflist")(e) and not e.state.chain.ok)
        assert Code.PLUGIN_MISSING in codes(rewritten)
        assert rewritten.sequence > taken.sequence > first.sequence


async def test_follows_the_directory_when_it_is_removed_and_recreated(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    async with watching(conf) as watcher:
        sub = watcher.subscribe()
        await until(sub, winner("10-calico.conflist"))
        shutil.rmtree(conf)
        gone = await until(sub, lambda e: not e.state.exists)
        assert codes(gone) == {Code.NO_CONFIG}
        os.mkdir(conf)
        rename_in(conf, "10-calico.conflist", calico(linkerd=True))
        back = await until(sub, winner("10-calico.conflist"))
        assert back.findings == ()
        # Only inotify can report this (no periodic rescan): the new directory is watched.
        truncate_write(conf, "10-calico.conflist", calico())
        broken = await until(sub, lambda e: not e.state.chain.ok)
        assert Code.PLUGIN_MISSING in codes(broken)


async def test_follows_a_directory_replaced_by_rename(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    async with watching(conf) as watcher:
        sub = watcher.subscribe()
        await until(sub, winner("10-calico.conflist"))
        staging = conf.parent / "staging"
        staging.mkdir()
        truncate_write(staging, "20-cilium.conflist", cilium(linkerd=True))
        os.rename(conf, conf.parent / "old")
        os.rename(staging, conf)
        await until(sub, winner("20-cilium.conflist"))
        atomic_write(conf, "20-cilium.conflist", cilium())
        replaced = await until(sub, lambda e: not e.state.chain.ok)
        assert Code.PLUGIN_MISSING in codes(replaced)


async def test_the_periodic_rescan_sees_what_inotify_cannot(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico())
    (conf / "k8s-pod-network").mkdir()
    settings = WatchSettings(debounce=0.05, max_delay=0.5, rescan_interval=0.2)
    async with watching(conf, settings) as watcher:
        sub = watcher.subscribe()
        first = await until(sub, lambda e: True)
        assert not first.state.chain.ok
        # A file inside a subdirectory: the directory's own watch does not report it.
        (conf / "k8s-pod-network" / "90-linkerd.conf").write_text(json.dumps(LINKERD))
        fixed = await until(sub, lambda e: e.state.chain.ok)
        assert fixed.state.winner is not None and fixed.state.winner.network is not None
        assert fixed.state.winner.network.subdir_files == ("90-linkerd.conf",)


async def test_a_slow_subscriber_gets_the_newest_evaluation_not_a_backlog(conf: Path) -> None:
    async with watching(conf) as watcher:
        slow = watcher.subscribe()
        fast = watcher.subscribe()
        await until(fast, lambda e: True)
        for version in range(5):
            truncate_write(
                conf,
                "10-x.conflist",
                json.dumps({"name": "x", "cniVersion": f"0.{version}.0", "plugins": [{"type": "bridge"}]}).encode(),
            )
            await until(
                fast,
                lambda e, v=version: (
                    e.state.winner is not None
                    and e.state.winner.network is not None
                    and e.state.winner.network.cni_version == f"0.{v}.0"
                ),
            )
        newest = await until(slow, lambda e: True)
        assert newest is watcher.latest
        assert newest.state.winner is not None and newest.state.winner.network is not None
        assert newest.state.winner.network.cni_version == "0.4.0"


async def test_a_fight_over_one_file_is_reported_as_flapping(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    async with watching(conf) as watcher:
        sub = watcher.subscribe()
        await until(sub, winner("10-calico.conflist"))
        evaluation = None
        for _ in range(3):
            atomic_write(conf, "05-cilium.conflist", cilium())
            cilium_exclusive(conf)
            await until(sub, lambda e: winner("05-cilium.conflist")(e) and not e.state.chain.ok)
            atomic_write(conf, "05-cilium.conflist", cilium(linkerd=True))
            evaluation = await until(sub, lambda e: e.state.chain.ok)
        assert evaluation is not None and Code.FLAPPING in codes(evaluation)
        assert "exclusive" in next(f.message for f in evaluation.findings if f.code is Code.FLAPPING)


async def test_the_runtime_view_is_compared_on_each_rescan(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    view = LoadedView((LoadedNetwork("k8s-pod-network", "0.3.1", ("calico", "bandwidth", "portmap")),), "OK")

    async def loaded() -> LoadedView:
        return view

    async with watching(conf, loaded=loaded) as watcher:
        evaluation = await until(watcher.subscribe(), lambda e: True)
        assert codes(evaluation) == {Code.RUNTIME_STALE} and evaluation.loaded is view


async def test_a_failing_runtime_view_is_a_finding_not_a_crash(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))

    async def loaded() -> LoadedView:
        raise ConnectionError("containerd.sock: connection refused")

    async with watching(conf, loaded=loaded) as watcher:
        evaluation = await until(watcher.subscribe(), lambda e: True)
        assert codes(evaluation) == {Code.RUNTIME_VIEW_INVALID}
        assert "connection refused" in evaluation.findings[0].message


def inotify_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += "inotify" in os.readlink(f"/proc/self/fd/{fd}")
    return count


async def test_cancelling_the_watcher_ends_its_subscriptions_and_closes_inotify(conf: Path) -> None:
    before = inotify_fds()
    watcher = ConfWatcher(conf, model=RuntimeModel(), settings=EVENTS_ONLY)
    seen: list[Evaluation] = []
    first = asyncio.Event()

    async def consume() -> None:
        async for evaluation in watcher.subscribe():
            seen.append(evaluation)
            first.set()

    async with asyncio.TaskGroup() as tasks:
        consumer = tasks.create_task(consume())
        runner = tasks.create_task(watcher.run())
        async with asyncio.timeout(10):
            await first.wait()
        assert inotify_fds() == before + 1
        runner.cancel()
        async with asyncio.timeout(10):
            await consumer  # the subscription ends instead of waiting forever
    assert runner.cancelled() and consumer.done() and not consumer.cancelled()
    assert inotify_fds() == before
    assert [e.sequence for e in seen] == [0]
    assert [e async for e in watcher.subscribe()] == [seen[0]]  # a late subscriber gets the last state, then the end


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="debounce"):
        WatchSettings(debounce=1.0, max_delay=0.5)
