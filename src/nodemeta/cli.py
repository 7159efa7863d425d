"""The `nodemeta` command line: `sim serve`, `collector run`, `watch`, `demo`, `agent run|lookup` and `cni check`.

Subcommands import what they need when they run, so `nodemeta sim serve` does not pay for gRPC and the collector.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import nodemeta.demo as demo_command
from nodemeta import __version__, logs
from nodemeta.cni import command as cni_command
from nodemeta.sim import command as sim_command

if TYPE_CHECKING:
    from nodemeta.collector.settings import CollectorSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nodemeta", description="Kubernetes pod metadata for node agents.")
    parser.add_argument("--version", action="version", version=f"nodemeta {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("sim", help="the simulated Kubernetes API server")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_commands.add_parser("serve", help="serve the Kubernetes API on this machine")
    sim_command.add_serve_arguments(serve)
    _add_collector(commands)
    _add_watch(commands)
    demo = commands.add_parser(
        "demo", help="a simulated cluster, the collector and node subscribers, live (the project in one command)"
    )
    demo_command.add_arguments(demo)
    cni = commands.add_parser("cni", help="the node's CNI chain: `cni check` reads the configuration the runtime uses")
    cni_command.add_arguments(cni)
    _add_agent(commands)
    return parser


def _add_agent(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from nodemeta.agent import command as agent_command

    agent = commands.add_parser("agent", help="the node agent: containers and processes joined with pod metadata")
    agent_commands = agent.add_subparsers(dest="agent_command", required=True)
    run = agent_commands.add_parser("run", help="mirror the container runtime and serve lookups on a unix socket")
    agent_command.add_run_arguments(run)
    _log_level(run)
    lookup = agent_commands.add_parser("lookup", help="ask the local agent about a container, sandbox, pid or pod")
    agent_command.add_lookup_arguments(lookup)
    _log_level(lookup)


def _log_level(parser: argparse.ArgumentParser) -> None:
    """`--log-level` after a subcommand too (SUPPRESS keeps the top-level value when it is not given here)."""
    parser.add_argument(
        "--log-level", "--zap-log-level", default=argparse.SUPPRESS, choices=["debug", "info", "warning", "error"],
        help="log level (default info)",
    )  # fmt: skip


def _add_collector(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    collector = commands.add_parser("collector", help="the metadata collector (a k8s-metacollector replacement)")
    collector_commands = collector.add_subparsers(dest="collector_command", required=True)
    run = collector_commands.add_parser(
        "run",
        help="watch the Kubernetes API and serve per-node metadata streams",
        description="Watch the Kubernetes API and serve per-node metadata streams over gRPC (the Falco k8smeta "
        "contract and nodemeta.v1). Addresses are :PORT (every interface), HOST:PORT or [IPv6]:PORT.",
    )
    run.add_argument("--broker-bind-address", default=":45000", metavar="ADDR",
                     help="gRPC listen address (default :45000)")  # fmt: skip
    run.add_argument("--metrics-bind-address", default=":8080", metavar="ADDR",
                     help="Prometheus /metrics listen address; 0 disables it (default :8080)")  # fmt: skip
    run.add_argument("--health-probe-bind-address", default=":8081", metavar="ADDR",
                     help="/healthz and /readyz listen address (default :8081)")  # fmt: skip
    run.add_argument("--broker-server-cert", default="", metavar="FILE",
                     help="PEM certificate chain for gRPC TLS (with --broker-server-key)")  # fmt: skip
    run.add_argument("--broker-server-key", default="", metavar="FILE",
                     help="PEM private key for gRPC TLS (with --broker-server-cert)")  # fmt: skip
    run.add_argument("--kubeconfig", default="", metavar="FILE",
                     help="kubeconfig (else $KUBECONFIG, then in-cluster, then ~/.kube/config)")  # fmt: skip
    _log_level(run)


def _add_watch(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    watch = commands.add_parser(
        "watch",
        help="print a node's metadata stream as JSON lines (a debugging client)",
        description="Subscribe to a collector for one node and print every event as a JSON line on stdout.",
    )
    watch.add_argument("--node", required=True, help="the node name (spec.nodeName of its pods)")
    watch.add_argument("--kinds", default="", metavar="KIND,...",
                       help="kinds to receive, comma-separated (default: the seven Falco kinds)")  # fmt: skip
    watch.add_argument("--falco", action="store_true",
                       help="use the Falco contract (metadata.Metadata/Watch) instead of nodemeta.v1")  # fmt: skip
    watch.add_argument("--address", default="localhost:45000", metavar="HOST:PORT",
                       help="the collector's gRPC address (default localhost:45000)")  # fmt: skip
    watch.add_argument("--ca-cert", default="", metavar="FILE",
                       help="connect with TLS, trusting this PEM CA (default: plaintext)")  # fmt: skip
    _log_level(watch)


# -- nodemeta collector run ---------------------------------------------------------------------------------------


def _fail(command: str, message: str) -> int:
    print(f"nodemeta {command}: {message}", file=sys.stderr, flush=True)
    return 1


def _collector_settings(args: argparse.Namespace) -> CollectorSettings:
    """The settings the flags describe; raises SettingsError with a message naming the flag."""
    from nodemeta.addresses import AddressError, BindAddress
    from nodemeta.collector.settings import CollectorSettings, SettingsError, TLSFiles

    def address(flag: str, text: str) -> BindAddress:
        try:
            return BindAddress.parse(text)
        except AddressError as err:
            raise SettingsError(f"{flag}: {err}") from None

    tls = None
    if args.broker_server_cert or args.broker_server_key:
        if not (args.broker_server_cert and args.broker_server_key):
            raise SettingsError("--broker-server-cert and --broker-server-key must be given together")
        tls = TLSFiles(Path(args.broker_server_cert), Path(args.broker_server_key))
    metrics = args.metrics_bind_address.strip()
    return CollectorSettings(
        broker_address=address("--broker-bind-address", args.broker_bind_address),
        metrics_address=None if metrics == "0" else address("--metrics-bind-address", metrics),
        probe_address=address("--health-probe-bind-address", args.health_probe_bind_address),
        tls=tls,
    )


async def _collector_run(args: argparse.Namespace) -> int:
    from nodemeta.collector.settings import SettingsError

    command = "collector run"
    try:
        settings = _collector_settings(args)
    except SettingsError as err:
        return _fail(command, str(err))
    from nodemeta.collector.app import Collector
    from nodemeta.collector.server import ServerConfigError
    from nodemeta.kube import ConfigError, load_config

    try:
        config = await load_config(args.kubeconfig or None)
    except ConfigError as err:
        return _fail(command, f"cannot load the Kubernetes configuration: {err}")
    collector = Collector(config, settings)
    _on_signals(collector.stop)
    try:
        await collector.run()
    except ServerConfigError as err:  # gRPC port in use, TLS files unreadable
        return _fail(command, str(err))
    except OSError as err:  # an HTTP listener could not bind; the Go collector exits 1 as well
        return _fail(command, err.strerror or str(err))
    _exit_after_graceful_stop()
    return 0  # not reached


def _exit_after_graceful_stop() -> NoReturn:
    """Exit 0 at once once the collector has closed every stream and listener: what is left is its heap, and
    freeing that object by object (caches of 150,000 pods, the state of 5,000 subscribers) takes seconds of the
    shutdown grace for nothing."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM/SIGINT: the first asks for a graceful stop; a second one cancels it (exit status 1, as Go's
    controller-runtime does)."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    received = 0

    def handle() -> None:
        nonlocal received
        received += 1
        if received == 1:
            stop()
        elif main is not None:
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle)


def _run_until_signal(main: Coroutine[Any, Any, int]) -> int:
    try:
        return asyncio.run(main)
    except (asyncio.CancelledError, KeyboardInterrupt):
        return 1


# -- nodemeta watch -------------------------------------------------------------------------------------------------


async def _watch(args: argparse.Namespace) -> int:
    import grpc

    from nodemeta.collector.model import FALCO_KINDS

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if args.ca_cert:
        try:
            root = await asyncio.to_thread(Path(args.ca_cert).read_bytes)
        except OSError as err:
            return _fail("watch", f"cannot read --ca-cert {args.ca_cert}: {err.strerror or err}")
        channel = grpc.aio.secure_channel(args.address, grpc.ssl_channel_credentials(root))
    else:
        channel = grpc.aio.insecure_channel(args.address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    printer: Callable[[Any], list[dict[str, Any]]]
    async with channel:
        if args.falco:
            call: Any = _falco_call(channel, args.node, kinds or sorted(FALCO_KINDS))
            printer = _print_falco
        else:
            call = _nodemeta_call(channel, args.node, kinds)
            printer = _print_batch
        reader = asyncio.ensure_future(_print_stream(call, printer))
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({reader, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (reader, stopped):
            if not task.done():
                call.cancel()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                    await task
        if reader.cancelled():
            return 0  # stopped by a signal
        error = reader.exception()
        if isinstance(error, grpc.aio.AioRpcError):
            return _fail("watch", f"stream ended: {error.code().name}: {error.details()}")
        if error is not None:
            raise error
        if reader.result():
            return 0  # whoever read stdout went away (`| head`)
        return _fail("watch", "stream ended with OK (a correct server never does that)")


def _falco_call(channel: Any, node: str, kinds: list[str]) -> Any:
    from nodemeta.api.falco import metadata_pb2, metadata_pb2_grpc

    selector = metadata_pb2.Selector(nodeName=node, resourceKinds=dict.fromkeys(kinds, "true"))
    return metadata_pb2_grpc.MetadataStub(channel).Watch(selector)


def _nodemeta_call(channel: Any, node: str, kinds: list[str]) -> Any:
    from nodemeta.api.nodemeta.v1 import stream_pb2, stream_pb2_grpc

    return stream_pb2_grpc.NodeMetadataStub(channel).Watch(stream_pb2.WatchRequest(node_name=node, kinds=kinds))


async def _print_stream(call: Any, printer: Callable[[Any], list[dict[str, Any]]]) -> bool:
    """Print every message as JSON lines; True when stdout was closed (the reader went away)."""
    import orjson

    async for message in call:
        lines = b"".join(orjson.dumps(line) + b"\n" for line in printer(message))
        try:
            sys.stdout.buffer.write(lines)
            sys.stdout.flush()
        except BrokenPipeError:
            # Nothing to write to any more; keep the interpreter's final flush from failing again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            call.cancel()
            return True
    return False


def _json_field(text: str) -> Any:
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _event_line(reason: str, event: Any, refs: dict[str, list[str]] | None) -> dict[str, Any]:
    line: dict[str, Any] = {"reason": reason, "kind": event.kind, "uid": event.uid}
    if event.HasField("meta"):
        line["meta"] = _json_field(event.meta)
    if event.HasField("status"):
        line["status"] = _json_field(event.status)
    if refs is not None:
        line["refs"] = refs
    return line


def _print_falco(event: Any) -> list[dict[str, Any]]:
    refs = None
    if event.HasField("refs"):
        refs = {kind: list(uids.list) for kind, uids in sorted(event.refs.resources.items())}
    return [_event_line(event.reason, event, refs)]


_V1_REASONS = {1: "Create", 2: "Update", 3: "Delete"}


def _print_batch(batch: Any) -> list[dict[str, Any]]:
    out = []
    for event in batch.events:
        refs = None
        if event.HasField("refs"):
            refs = {kind: list(uids.uids) for kind, uids in sorted(event.refs.resources.items())}
        line = _event_line(_V1_REASONS.get(event.reason, str(event.reason)), event, refs)
        line["revision"] = batch.revision
        out.append(line)
    if batch.session_id or batch.reset or batch.initial_sync_complete:
        marker: dict[str, Any] = {"revision": batch.revision}
        if batch.session_id:
            marker["session"] = batch.session_id
        if batch.reset:
            marker["reset"] = True
        if batch.initial_sync_complete:
            marker["initialSyncComplete"] = True
        out.append(marker)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    if args.command == "sim" and args.sim_command == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(sim_command.serve(args))
        return 0
    if args.command == "collector" and args.collector_command == "run":
        return _run_until_signal(_collector_run(args))
    if args.command == "watch":
        return _run_until_signal(_watch(args))
    if args.command == "agent":
        from nodemeta.agent import command as agent_command

        entry = agent_command.run if args.agent_command == "run" else agent_command.lookup
        return asyncio.run(entry(args))
    if args.command == "demo":
        problem = demo_command.problem(args)
        if problem:
            parser.error(problem)
        # The demo handles SIGINT/SIGTERM itself: the first one stops it with a summary.
        return asyncio.run(demo_command.run(args))
    if args.command == "cni":
        return cni_command.run(args)
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    sys.exit(main())
