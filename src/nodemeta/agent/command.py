"""`nodemeta agent run` and `nodemeta agent lookup`: argument definitions and entry functions.

The CRI client (`nodemeta.cri.client`, through `nodemeta.agent.runtime_finder`) is imported only when `agent run`
starts, so `agent lookup` stays quick to start. A runtime that does not answer yet counts as unreachable (not ready,
health 200) and is looked for again with backoff.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence

from nodemeta.addresses import AddressError
from nodemeta.agent.settings import (
    DEFAULT_SOCKET,
    AgentSettings,
    ApiSettings,
    BindAddress,
    SettingsError,
)
from nodemeta.cri.model import Runtime
from nodemeta.cri.settings import DEFAULT_SOCKETS

__all__ = ["add_lookup_arguments", "add_run_arguments", "lookup", "run"]

# Exit statuses of `agent lookup`.
NOT_FOUND = 1
UNREACHABLE = 3


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--node-name", default=os.environ.get("NODE_NAME", ""), metavar="NAME",
                        help="this node's name (spec.nodeName of its pods); default $NODE_NAME, set it from the "
                        "Downward API")  # fmt: skip
    parser.add_argument("--cri-socket", action="append", default=[], metavar="PATH",
                        help="CRI runtime socket; repeatable, the first that answers is used (default: "
                        + ", ".join(DEFAULT_SOCKETS) + ")")  # fmt: skip
    parser.add_argument("--host-root", default="", metavar="DIR",
                        help="where the host's / is mounted (for /proc and the runtime socket); default /")  # fmt: skip
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--collector", metavar="HOST:PORT", help="follow a collector's nodemeta.v1 stream")
    source.add_argument("--direct", action="store_true",
                        help="watch the Kubernetes API directly (clusters without a collector)")  # fmt: skip
    parser.add_argument("--kubeconfig", default="", metavar="FILE",
                        help="with --direct or --cni-guard: kubeconfig (else $KUBECONFIG, in-cluster, "
                        "~/.kube/config)")  # fmt: skip
    parser.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                        help=f"unix socket of the lookup API (default {DEFAULT_SOCKET})")  # fmt: skip
    parser.add_argument("--metrics-bind-address", default=":8082", metavar="ADDR",
                        help="Prometheus /metrics listen address; 0 disables it (default :8082)")  # fmt: skip
    parser.add_argument("--health-probe-bind-address", default=":8083", metavar="ADDR",
                        help="/healthz and /readyz listen address; 0 disables it (default :8083)")  # fmt: skip
    from nodemeta.agent.cni_guard import add_guard_arguments

    add_guard_arguments(parser)


def add_lookup_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", default=DEFAULT_SOCKET, metavar="PATH",
                        help=f"the agent's unix socket (default {DEFAULT_SOCKET})")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS", help="give up after (default 5)")
    parser.add_argument("key", help="a container id (full or 12+ characters), sandbox id, pid or pod uid")


def _fail(command: str, message: str, status: int = 1) -> int:
    print(f"nodemeta agent {command}: {message}", file=sys.stderr, flush=True)
    return status


def settings_from(args: argparse.Namespace) -> AgentSettings:
    """The settings the flags describe; SettingsError names the flag at fault."""
    node = args.node_name.strip()
    if not node:
        raise SettingsError(
            "no node name: pass --node-name or set NODE_NAME (in a DaemonSet, from the Downward API: an env var "
            "with valueFrom.fieldRef.fieldPath: spec.nodeName)"
        )

    def address(flag: str, text: str) -> BindAddress | None:
        if text.strip() == "0":
            return None
        try:
            return BindAddress.parse(text)
        except AddressError as err:
            raise SettingsError(f"{flag}: {err}") from None

    return AgentSettings(
        node_name=node,
        host_root=args.host_root,
        api=ApiSettings(socket=args.socket),
        metrics_address=address("--metrics-bind-address", args.metrics_bind_address),
        probe_address=address("--health-probe-bind-address", args.health_probe_bind_address),
    )


@contextlib.asynccontextmanager
async def open_runtime(candidates: Sequence[str], host_root: str) -> AsyncIterator[Runtime]:
    """The runtime behind the first candidate socket (default: the usual ones) that answers, found on first use
    and looked for again with backoff until one does (`nodemeta.agent.runtime_finder`)."""
    from nodemeta.cri.finder import RuntimeFinder

    async with RuntimeFinder(candidates, host_root=host_root) as runtime:
        yield runtime


async def run(args: argparse.Namespace) -> int:
    """`nodemeta agent run`: 0 after SIGTERM/SIGINT, 2 for unusable flags, 1 when it cannot start."""
    try:
        settings = settings_from(args)
    except SettingsError as err:
        return _fail("run", str(err), 2)
    from nodemeta.agent.app import Agent, MetadataSource
    from nodemeta.agent.cni_guard import guard_config, open_agent_guard
    from nodemeta.agent.metastore import MetadataSink
    from nodemeta.agent.metrics import AgentMetrics
    from nodemeta.cni.options import OptionError
    from nodemeta.kube import ClusterConfig, ConfigError, load_config

    try:
        guard = guard_config(args, settings.host_root)
    except OptionError as err:
        return _fail("run", str(err), 2)
    cluster: ClusterConfig | None = None
    if args.direct or guard is not None:
        # The guard writes to the API server even when the metadata comes from a collector.
        try:
            cluster = await load_config(args.kubeconfig or None)
        except ConfigError as err:
            return _fail("run", f"cannot load the Kubernetes configuration: {err}")
    make_source: Callable[[MetadataSink], MetadataSource]
    if args.direct:
        from nodemeta.agent.direct_source import DirectMode

        assert cluster is not None
        config = cluster
        make_source = lambda sink: DirectMode(config, settings.node_name, sink)  # noqa: E731
    else:
        from nodemeta.agent.stream_source import CollectorSource

        make_source = lambda sink: CollectorSource(args.collector, settings.node_name, sink)  # noqa: E731
    metrics = AgentMetrics()
    async with (
        open_runtime(args.cri_socket, settings.host_root) as runtime,
        open_agent_guard(
            guard, node_name=settings.node_name, runtime=runtime, cluster=cluster, registry=metrics.registry
        ) as cni_guard,
    ):
        agent = Agent(settings, runtime, make_source, metrics=metrics, cni_guard=cni_guard)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, agent.stop)
        try:
            await agent.run()
        except OSError as err:
            return _fail("run", err.strerror or str(err))
    return 0


async def lookup(args: argparse.Namespace) -> int:
    """`nodemeta agent lookup KEY`: the record as JSON on stdout; 1 when unknown, 3 when the agent is unreachable."""
    import aiohttp
    import orjson

    key = args.key.strip()
    if not key or "/" in key:
        return _fail("lookup", f"not a container id, sandbox id, pid or pod uid: {args.key!r}", 2)
    try:
        async with (
            aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=args.socket), timeout=aiohttp.ClientTimeout(total=args.timeout)
            ) as session,
            session.get(f"http://agent/v1/lookup/{key}") as response,
        ):
            body = await response.read()
            status = response.status
    except (aiohttp.ClientError, OSError, TimeoutError) as err:
        return _fail("lookup", f"cannot reach the agent at {args.socket}: {err or type(err).__name__}", UNREACHABLE)
    if status == 404:
        return _fail("lookup", f"no container, sandbox, process or pod {key!r} on this node", NOT_FOUND)
    try:
        record = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _fail("lookup", f"the agent answered {status} with a body that is not JSON", UNREACHABLE)
    if status != 200:
        return _fail("lookup", str(record.get("error", status)) if isinstance(record, dict) else str(status))
    sys.stdout.buffer.write(orjson.dumps(record, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    sys.stdout.flush()
    return 0
