"""`nodemeta sim serve`: the simulated cluster as a command, with its generator, churn and fault flags."""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time

from nodemeta.sim.churn import ACTIONS, ChurnDriver, parse_mix
from nodemeta.sim.faults import FaultPlan
from nodemeta.sim.generator import build_cluster, plan_cluster
from nodemeta.sim.heap import HeapSettings
from nodemeta.sim.server import SimServer
from nodemeta.sim.settings import SimSettings

# Above this many pods, scheduler and kubelet Events would outnumber every other object: off unless asked for.
_EVENTS_POD_LIMIT = 20_000
# Seconds between progress lines while a generated cluster builds.
_PROGRESS_EVERY = 2.0


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, got {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _mix(text: str) -> dict[str, float]:
    try:
        return parse_mix(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _controllers(text: str) -> tuple[str, ...] | None:
    if text == "all":
        return None
    if text == "none":
        return ()
    return tuple(name.strip() for name in text.split(",") if name.strip())


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=0, help="port to listen on; 0 picks a free one (default 0)")
    serve.add_argument("--kubeconfig", help="write a kubeconfig for this server here once it answers")
    serve.add_argument("--nodes", type=_count, default=0, help="create N Ready nodes (default 0)")
    serve.add_argument("--tls", action="store_true", help="serve HTTPS with a CA generated at start-up")
    serve.add_argument("--auth", action="store_true", help="require a bearer token (written to the kubeconfig)")
    serve.add_argument("--history-limit", type=_count, default=100_000,
                       help="changes kept per resource for watches and paginated lists (default 100000)")  # fmt: skip
    serve.add_argument("--heap-refreeze-writes", type=_count, default=HeapSettings().refreeze_writes, metavar="N",
                       help="move the store out of the cyclic GC's reach (gc.freeze) after a generated build and "
                       "every N writes, so full collections stay short; 0 never freezes (default 20000)")  # fmt: skip
    serve.add_argument("--seed", type=int, default=None, help="seed for generated clusters, names and IPs")
    serve.add_argument("--controllers", type=_controllers, default=None, metavar="LIST",
                       help="controllers to run: all (default), none (raw API server), or a comma list")  # fmt: skip

    cluster = serve.add_argument_group("generated cluster and churn")
    cluster.add_argument("--pods-per-node", type=_count, default=0, metavar="N",
                         help="generate a realistic cluster of --nodes nodes with about N pods each (namespaces, "
                              "Deployments with rollout history, DaemonSets, StatefulSets, Services, Jobs, bare and "
                              "static pods); 0 = bare nodes only")  # fmt: skip
    cluster.add_argument("--churn-rate", type=_seconds, default=0.0, metavar="R",
                         help="churn actions per second once the cluster is built (default 0 = off)")  # fmt: skip
    cluster.add_argument("--churn-mix", type=_mix, default=None, metavar="SPEC",
                         help="comma-separated action=weight; actions: " + ", ".join(ACTIONS))  # fmt: skip
    cluster.add_argument("--churn-seed", type=int, default=None, metavar="N", help="seed of the churn sequence")
    cluster.add_argument("--component-events", choices=("auto", "on", "off"), default="auto",
                         help="scheduler and kubelet Events (auto: off above 20,000 pods)")  # fmt: skip
    cluster.add_argument("--no-kubelet-heartbeats", action="store_true",
                         help="kubelets do not renew node Leases (500 writes/s at 5,000 nodes)")  # fmt: skip
    cluster.add_argument("--kubelet-one-step-start", action="store_true",
                         help="one status write per pod start instead of two")  # fmt: skip

    faults = serve.add_argument_group("fault injection (all off by default)")
    faults.add_argument("--fault-drop-watches-every", type=_seconds, default=0.0, metavar="SECONDS",
                        help="drop open watch connections at random times around this interval")  # fmt: skip
    faults.add_argument("--fault-drop-fraction", type=_fraction, default=1.0, metavar="F",
                        help="fraction of open watches each drop affects (default 1)")  # fmt: skip
    faults.add_argument("--fault-compact-every", type=_seconds, default=0.0, metavar="SECONDS",
                        help="force a compaction at random times around this interval (watchers get 410)")  # fmt: skip
    faults.add_argument("--fault-throttle-rate", type=_fraction, default=0.0, metavar="F",
                        help="answer this fraction of API requests with 429 and Retry-After")  # fmt: skip
    faults.add_argument("--fault-error-rate", type=_fraction, default=0.0, metavar="F",
                        help="answer this fraction of API requests with 500")  # fmt: skip
    faults.add_argument("--fault-latency", type=_seconds, default=0.0, metavar="SECONDS",
                        help="add this delay to every API request")  # fmt: skip


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def settings_from(args: argparse.Namespace) -> SimSettings:
    generated = args.pods_per_node > 0
    pods = args.nodes * args.pods_per_node
    events = args.component_events == "on" or (args.component_events == "auto" and pods <= _EVENTS_POD_LIMIT)
    return SimSettings(
        host=args.host, port=args.port, tls=args.tls, auth=args.auth,
        # A generated cluster registers its own nodes.
        nodes=0 if generated else args.nodes,
        history_limit=max(args.history_limit, 1), seed=args.seed, controllers=args.controllers,
        component_events=events, kubelet_heartbeats=not args.no_kubelet_heartbeats,
        kubelet_two_step_start=not args.kubelet_one_step_start,
    )  # fmt: skip


async def _build_then_churn(server: SimServer, args: argparse.Namespace, seed: int) -> None:
    plan = plan_cluster(args.nodes, args.pods_per_node, seed)
    _say(f"building a cluster of {args.nodes} nodes and about {plan.expected_pods()} pods (seed {seed})")
    last = 0.0

    def progress(phase: str, done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= _PROGRESS_EVERY or done == total:
            last = now
            _say(f"  {phase}: {done}/{total}")

    report = await build_cluster(server, plan, progress)
    _say(f"cluster ready: {report.pods_ready} pods in {report.seconds:.1f} s")
    if args.churn_rate > 0:
        churn_seed = seed if args.churn_seed is None else args.churn_seed
        _say(f"churning at {args.churn_rate:g} actions/s (seed {churn_seed})")
        await ChurnDriver(server, churn_seed, args.churn_rate, args.churn_mix).run()


async def serve(args: argparse.Namespace) -> int:
    if args.churn_rate > 0 and args.pods_per_node == 0:
        _say("nodemeta sim serve: --churn-rate needs a generated cluster (--pods-per-node N with --nodes M)")
        return 2
    if args.pods_per_node > 0 and args.nodes == 0:
        _say("nodemeta sim serve: --pods-per-node needs --nodes")
        return 2
    try:
        server = SimServer(settings_from(args), heap=HeapSettings(refreeze_writes=args.heap_refreeze_writes))
    except ValueError as err:
        _say(f"nodemeta sim serve: {err}")
        return 2
    try:
        await server.start()
    except OSError as err:
        _say(f"nodemeta sim serve: cannot listen on {args.host}:{args.port}: {err.strerror or err}")
        return 1
    except ValueError as err:
        await server.stop()
        _say(f"nodemeta sim serve: {err}")
        return 2
    if args.kubeconfig:
        _say(f"kubeconfig written to {server.write_kubeconfig(args.kubeconfig)}")
    _say(f"serving the Kubernetes API at {server.url}")
    plan = FaultPlan(
        drop_watches_every=args.fault_drop_watches_every, drop_fraction=args.fault_drop_fraction,
        compact_every=args.fault_compact_every, throttle_rate=args.fault_throttle_rate,
        error_rate=args.fault_error_rate, latency=args.fault_latency, seed=args.seed,
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(server.faults.run(plan), name="sim-faults")]
    if args.pods_per_node > 0:
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
        tasks.append(asyncio.create_task(_build_then_churn(server, args, seed), name="sim-cluster"))
    for task in tasks:
        # A background job that fails ends the command instead of failing unseen.
        task.add_done_callback(lambda t: stop.set() if not t.cancelled() and t.exception() else None)
    failed: list[BaseException] = []
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as error:  # reported below, after the server stopped cleanly
                failed.append(error)
        await server.stop()
    for problem in failed:
        _say(f"nodemeta sim serve: {type(problem).__name__}: {problem}")
    return 1 if failed else 0
