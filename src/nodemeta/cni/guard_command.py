"""`nodemeta cni guard`: the CNI chain guard as a process of its own, for nodes that want only the guard.

The same guard as `nodemeta agent run --cni-guard` (`nodemeta.cni.service.open_guard`), with the guard options
without their `--cni-` prefix, plus what the agent would otherwise supply: the node name (`--node-name` or
`$NODE_NAME`), API credentials (`--kubeconfig`, else `$KUBECONFIG`, in-cluster, `~/.kube/config`), the runtime
(`--cri-socket`, repeatable, else the usual sockets under `--host-root`; looked for again with backoff until one
answers, the configuration side running meanwhile), and two listeners: Prometheus `/metrics` and `/healthz`,
`/readyz` (ready after the first reconcile tick) and `/v1/cni` (the guard's state as JSON).

Exit codes: 0 after SIGTERM/SIGINT, 1 when it cannot start (credentials, a port), 64 for unusable options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable

import orjson
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from nodemeta.addresses import AddressError, BindAddress
from nodemeta.cni.guard import Guard
from nodemeta.cni.options import OptionError, add_guard_options, config_from
from nodemeta.cni.service import open_guard
from nodemeta.cri.finder import RuntimeFinder
from nodemeta.kube import ConfigError, load_config
from nodemeta.serving import Readiness, TcpServer, metrics_app, probe_app

__all__ = ["EXIT_USAGE", "add_arguments", "run"]

log = structlog.get_logger("nodemeta.cni.guard_command")

EXIT_USAGE = 64


def add_arguments(guard: argparse.ArgumentParser) -> None:
    guard.add_argument("--node-name", default=os.environ.get("NODE_NAME", ""), metavar="NAME",
                       help="this node's name; default $NODE_NAME (from the Downward API: spec.nodeName)")  # fmt: skip
    guard.add_argument("--kubeconfig", default="", metavar="FILE",
                       help="kubeconfig (else $KUBECONFIG, in-cluster, ~/.kube/config)")  # fmt: skip
    guard.add_argument("--cri-socket", action="append", default=[], metavar="PATH",
                       help="CRI runtime socket; repeatable, the first that answers is used (default: the usual "
                       "containerd and CRI-O sockets under --host-root)")  # fmt: skip
    guard.add_argument("--host-root", default="", metavar="DIR",
                       help="where the host's / is mounted (the default conf dir, result cache, /proc and runtime "
                       "sockets are read under it); default /")  # fmt: skip
    guard.add_argument("--metrics-bind-address", default=":8084", metavar="ADDR",
                       help="Prometheus /metrics listen address; 0 disables it (default :8084, beside the agent's "
                       ":8082)")  # fmt: skip
    guard.add_argument("--health-probe-bind-address", default=":8085", metavar="ADDR",
                       help="/healthz, /readyz and /v1/cni listen address; 0 disables it (default :8085)")  # fmt: skip
    add_guard_options(guard)


def _address(flag: str, text: str) -> BindAddress | None:
    if text.strip() == "0":
        return None
    try:
        return BindAddress.parse(text)
    except AddressError as err:
        raise OptionError(f"{flag}: {err} (0 disables it)") from None


@contextlib.asynccontextmanager
async def _serving(name: str, app: web.Application, address: BindAddress | None) -> AsyncIterator[None]:
    if address is None:
        yield
        return
    async with TcpServer(name, app, address):
        yield


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _probe_app(guard: Callable[[], Guard]) -> web.Application:
    def readiness() -> Readiness:
        if guard().ticks > 0:
            return Readiness(True)
        return Readiness(False, "waiting for the first check of the CNI chain")

    async def cni(_request: web.Request) -> web.Response:
        return _json(200, guard().status())

    app = probe_app(readiness)
    app.router.add_get("/v1/cni", cni)
    return app


def _fail(message: str, status: int) -> int:
    print(f"nodemeta cni guard: {message}", file=sys.stderr, flush=True)
    return status


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    node = args.node_name.strip()
    if not node:
        return _fail("no node name: pass --node-name or set NODE_NAME", EXIT_USAGE)
    try:
        config = config_from(args, host_root=args.host_root)
        metrics_at = _address("--metrics-bind-address", args.metrics_bind_address)
        probe_at = _address("--health-probe-bind-address", args.health_probe_bind_address)
    except (OptionError, ValueError) as err:
        return _fail(str(err), EXIT_USAGE)
    try:
        cluster = await load_config(args.kubeconfig or None)
    except ConfigError as err:
        return _fail(f"cannot load the Kubernetes configuration: {err}", 1)
    registry = CollectorRegistry()
    runtime = RuntimeFinder(args.cri_socket, host_root=args.host_root, retry_max=10.0)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with (
            open_guard(config, node_name=node, runtime=runtime, cluster=cluster, registry=registry) as guard,
            _serving("metrics", metrics_app(lambda: generate_latest(registry), CONTENT_TYPE_LATEST), metrics_at),
            _serving("health probes", _probe_app(lambda: guard), probe_at),
        ):
            log.info("CNI chain guard started", node=node, conf_dir=config.conf_dir, required=config.required)
            async with asyncio.TaskGroup() as tasks:
                task = tasks.create_task(guard.run(), name="cni-guard")
                await stop.wait()
                task.cancel()
    except OSError as err:
        return _fail(err.strerror or str(err), 1)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runtime.close()
    log.info("CNI chain guard stopped")
    return 0
