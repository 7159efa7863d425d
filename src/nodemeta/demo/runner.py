"""The demo, start to finish, in one process and one TaskGroup.

1. An embedded simulated API server on a free loopback port; a generated cluster is built into it (progress shown).
2. The collector, in-process, against the simulator's kubeconfig, serving gRPC on a free loopback port.
3. Beside it, what nodemeta replaces: a real API client listing and watching the whole cluster as a node agent
   without a collector must, and per subscribed node the node-filtered variant of that agent.
4. Subscribers on a few nodes spread across the cluster (nodemeta.v1, and the Falco contract on some of them).
5. Once everyone has synced: churn, until --duration runs out or Ctrl-C / SIGTERM.
6. Then churn stops, the controllers settle, and each subscriber's table is compared with the simulator's ground
   truth for its node; everything stops in order (subscribers, direct watches, collector, simulator) and the
   summary is printed.

A first Ctrl-C or SIGTERM ends the run gracefully (with the check and the summary); a second one ends it at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from nodemeta import logs
from nodemeta.addresses import BindAddress
from nodemeta.collector.app import Collector
from nodemeta.collector.settings import CollectorSettings
from nodemeta.demo import options
from nodemeta.demo.direct import FULL_CLUSTER, DirectWatch, node_pods
from nodemeta.demo.state import CHECKING, LIVE, STARTING, STOPPING, SYNCING, DemoState
from nodemeta.demo.subscribers import FalcoSubscriber, Subscriber, V1Subscriber
from nodemeta.demo.verify import differences, expected
from nodemeta.demo.view import Plain, Screen, human_bytes
from nodemeta.kube import load_config
from nodemeta.sim.churn import ChurnDriver
from nodemeta.sim.generator import build_cluster, plan_cluster
from nodemeta.sim.server import SimServer
from nodemeta.sim.settings import SimSettings

__all__ = ["Demo", "pick_nodes", "run"]

T = TypeVar("T")

# The screen is redrawn (and every rate sampled) this often.
REFRESH = 0.5
# Bounds of the stages that wait on others, so a stuck part fails the demo visibly instead of hanging it.
COLLECTOR_START_TIMEOUT = 120.0
SYNC_TIMEOUT = 120.0
SETTLE_TIMEOUT = 5.0
CONVERGE_TIMEOUT = 10.0
LOCAL = BindAddress.parse("127.0.0.1:0")


class DemoError(Exception):
    """A part of the demo failed to start or got stuck; the message says which."""


def pick_nodes(nodes: int, count: int) -> list[str]:
    """`count` node names spread evenly over node-1 .. node-`nodes` (node-1 is a control-plane node)."""
    return [f"node-{1 + (i * nodes) // count}" for i in range(count)]


async def run(args: argparse.Namespace) -> int:
    """Run the demo as the flags of `options.add_arguments` describe; the exit status (0 when every subscriber
    matched the cluster, also after Ctrl-C; 1 when one did not or a part failed; 2 for bad flags; 130 when a
    second Ctrl-C cut the run short)."""
    problem = options.problem(args)
    if problem is not None:
        print(f"nodemeta demo: {problem}", file=sys.stderr)
        return 2
    logs.configure(args.demo_log_level)
    plain = args.plain or not sys.stdout.isatty()
    output: Screen | Plain = Plain() if plain else Screen()
    demo = Demo(args, output)
    try:
        return await demo.main()
    finally:
        output.restore()


class Demo:
    def __init__(self, args: argparse.Namespace, output: Screen | Plain) -> None:
        self.args = args
        self.output = output
        self.state = DemoState(
            nodes=args.nodes,
            pods_per_node=args.pods_per_node,
            seed=args.seed,
            churn_rate=args.churn_rate,
            duration=args.duration,
        )
        self.stop = asyncio.Event()
        self._signals = 0
        self._main: asyncio.Task[Any] | None = None
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}

    # -- signals ----------------------------------------------------------------------------------------------

    def _on_signal(self) -> None:
        self._signals += 1
        if self._signals == 1:
            self.state.note("stopping (again to stop at once)")
            self.stop.set()
        elif self._main is not None:
            self._main.cancel()

    def _install_signals(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal)
                installed.append(sig)
        return installed

    # -- the whole run ----------------------------------------------------------------------------------------

    async def main(self) -> int:
        self._main = asyncio.current_task()
        installed = self._install_signals()
        loop = asyncio.get_running_loop()
        failures: list[BaseException] = []
        try:
            try:
                await self._run()
            except* Exception as group:
                failures.extend(group.exceptions)
        except asyncio.CancelledError:
            if self._signals < 2:
                raise
            self.output.restore()
            print("\nnodemeta demo: stopped at once (second signal)", flush=True)
            return 130
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
        with contextlib.suppress(BrokenPipeError):
            self.output.finish(self.state, time.monotonic())
        for error in failures:
            if isinstance(error, DemoError):
                print(f"nodemeta demo: {error}", file=sys.stderr, flush=True)
            else:
                print("nodemeta demo: a part of the demo failed:", file=sys.stderr)
                traceback.print_exception(error, file=sys.stderr)
        verdicts = self.state.verdicts.values()
        clean = all(v.matches for v in verdicts) and not any(s.problem_count for s in self.state.subscribers)
        return 0 if clean and not failures else 1

    async def _run(self) -> None:
        state = self.state
        args = self.args
        sim_settings = SimSettings(seed=args.seed, component_events=False)
        async with contextlib.AsyncExitStack() as stack:
            sim = SimServer(sim_settings)
            await sim.start()
            stack.push_async_callback(sim.stop)
            state.sim = sim
            sim.store.observers.append(state.count_write)
            stack.callback(sim.store.observers.remove, state.count_write)
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nodemeta-demo-")))
            session = await stack.enter_async_context(
                aiohttp.ClientSession(
                    base_url=sim.url,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None),
                )
            )
            async with asyncio.TaskGroup() as tg:
                view = tg.create_task(self._view(), name="demo-view")
                try:
                    if await self._stages(tg, sim, workdir, session):
                        await self._check()
                finally:
                    # The screen keeps its last picture of the running demo; the summary follows it.
                    view.cancel()
                    state.enter(STOPPING)
                    await self._shutdown()

    # -- stages -----------------------------------------------------------------------------------------------

    async def _stages(
        self, tg: asyncio.TaskGroup, sim: SimServer, workdir: Path, session: aiohttp.ClientSession
    ) -> bool:
        """Run the stages until live ends; False when stopped before any subscriber started."""
        state = self.state
        args = self.args
        plan = plan_cluster(args.nodes, args.pods_per_node, args.seed)
        state.plan = plan
        state.note(f"building a cluster of {args.nodes} nodes and about {plan.expected_pods():,} pods")

        def progress(phase: str, done: int, total: int) -> None:
            state.build_phase, state.build_done, state.build_total = phase, done, total

        report = await self._until_stop(build_cluster(sim, plan, progress))
        if report is None:
            return False
        state.build = report
        state.note(f"cluster built: {report.pods_ready:,} pods running in {report.seconds:.1f} s")

        # The collector, and the direct watches it is compared with.
        state.enter(STARTING)
        config = await load_config(str(sim.write_kubeconfig(workdir / "kubeconfig")))
        settings = CollectorSettings(broker_address=LOCAL, metrics_address=None, probe_address=LOCAL)
        collector = Collector(config, settings)
        state.collector = collector
        collector_task = tg.create_task(collector.run(), name="collector")
        self._tasks["collector"] = [collector_task]
        nodes = pick_nodes(args.nodes, args.subscribers)
        state.full = DirectWatch("whole cluster", FULL_CLUSTER)
        direct = [tg.create_task(state.full.follow(session, t), name=f"direct-{t.kind}") for t in FULL_CLUSTER]
        for node in nodes:
            watch = DirectWatch(node, (node_pods(node),))
            state.filtered[node] = watch
            direct.append(tg.create_task(watch.follow(session, watch.targets[0]), name=f"direct-pods-{node}"))
        self._tasks["direct"] = direct
        started = time.monotonic()
        serving = await self._until_stop(self._serving(collector, collector_task), COLLECTOR_START_TIMEOUT,
                                         "the collector did not start serving")  # fmt: skip
        if serving is None:
            return False
        state.note(
            f"collector serving on 127.0.0.1:{collector.grpc_port}; its caches synced "
            f"{len(collector.index):,} objects in {time.monotonic() - started:.1f} s"
        )

        # Subscribers.
        state.enter(SYNCING)
        target = f"127.0.0.1:{collector.grpc_port}"
        subs: list[Subscriber] = [V1Subscriber(node, target) for node in nodes]
        subs += [FalcoSubscriber(node, target) for node in nodes[: args.falco_subscribers]]
        subs.sort(key=lambda s: (nodes.index(s.node), s.protocol != "v1"))
        state.subscribers = subs
        self._tasks["subscribers"] = [tg.create_task(s.run(), name=f"subscriber-{s.label}") for s in subs]
        started = time.monotonic()
        synced = await self._until_stop(self._all_synced(), SYNC_TIMEOUT, "the subscribers did not sync")
        if synced is None:
            return True
        full = state.full.total
        state.note(
            f"{len(subs)} subscribers streaming (initial sync in {time.monotonic() - started:.1f} s); the "
            f"full-cluster watch listed {full.events:,} objects ({human_bytes(full.bytes)})"
        )

        # Live.
        if args.churn_rate > 0:
            state.churn = ChurnDriver(sim, args.seed, args.churn_rate)
            self._tasks["churn"] = [tg.create_task(state.churn.run(), name="churn")]
        state.enter(LIVE)
        state.live_since = time.monotonic()
        state.note("live: churn " + (f"at {args.churn_rate:g} actions/s" if args.churn_rate else "off"))
        wait: Awaitable[object] = asyncio.sleep(args.duration) if args.duration else self.stop.wait()
        await self._until_stop(wait)
        state.live_until = time.monotonic()
        return True

    async def _serving(self, collector: Collector, task: asyncio.Task[None]) -> bool:
        waiter = asyncio.ensure_future(collector.wait_serving())
        try:
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not collector.readiness().ready:
            raise DemoError("the collector stopped before serving")
        return True

    async def _all_synced(self) -> bool:
        # nodemeta.v1 marks the end of its initial sync; the Falco contract has no such marker (a node without
        # pods sends nothing at all), so its subscribers are not waited for.
        for sub in self.state.v1_subscribers():
            await sub.synced.wait()
        for watch in self.state.direct_watches():
            await watch.ready.wait()
        return True

    async def _until_stop(self, work: Awaitable[T], limit: float | None = None, what: str = "") -> T | None:
        """`work`'s result, or None when a stop was asked for first (`work` is then cancelled)."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            done, _ = await asyncio.wait({task, stopper}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (task, stopper):
                if not future.done():
                    future.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await future
        if task in done:
            return task.result()
        if stopper in done:
            return None
        raise DemoError(f"{what} within {limit:g} s")

    # -- the end ----------------------------------------------------------------------------------------------

    async def _cancel(self, name: str) -> None:
        tasks = self._tasks.pop(name, [])
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _check(self) -> None:
        """Stop the churn, let the cluster settle, then compare every subscriber with the ground truth."""
        state = self.state
        await self._cancel("churn")
        if not state.subscribers or state.sim is None:
            return
        state.enter(CHECKING)
        sim = state.sim
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SETTLE_TIMEOUT):
                await sim.settle()
        # The collector follows the API within milliseconds; give the last changes time to arrive, and compare
        # again until every subscriber matches (or the time is up and the differences are the answer).
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        while True:
            state.verdicts = {
                s.label: differences(s.held, expected(sim.store, s.node, s.kinds)) for s in state.subscribers
            }
            if all(v.matches for v in state.verdicts.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        matching = sum(1 for v in state.verdicts.values() if v.matches)
        state.note(f"checked: {matching} of {len(state.verdicts)} subscribers match the cluster")
        now = time.monotonic()
        state.tick(now)
        self.output.update(state, now)

    async def _shutdown(self) -> None:
        """Stop everything in order: churn, subscribers, direct watches, then the collector (gracefully)."""
        await self._cancel("churn")
        await self._cancel("subscribers")
        await self._cancel("direct")
        collector = self.state.collector
        tasks = self._tasks.pop("collector", [])
        if collector is not None and tasks:
            collector.stop()
            _, pending = await asyncio.wait(tasks, timeout=10.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    # -- the screen -------------------------------------------------------------------------------------------

    async def _view(self) -> None:
        try:
            while True:
                now = time.monotonic()
                self.state.tick(now)
                self.output.update(self.state, now)
                await asyncio.sleep(REFRESH)
        except BrokenPipeError:
            # Whoever read stdout went away: nothing to show any more, so stop.
            self.stop.set()
