"""The `nodemeta` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from nodemeta import __version__, logs


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nodemeta", description="Kubernetes pod metadata for node agents.")
    parser.add_argument("--version", action="version", version=f"nodemeta {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("sim", help="the simulated Kubernetes API server")
    sim_commands = sim.add_subparsers(dest="sim_command", required=True)
    serve = sim_commands.add_parser("serve", help="serve the Kubernetes API on this machine")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=0, help="port to listen on; 0 picks a free one (default 0)")
    serve.add_argument("--kubeconfig", help="write a kubeconfig for this server here once it answers")
    serve.add_argument("--nodes", type=_count, default=0, help="create N Ready nodes (default 0)")
    serve.add_argument("--tls", action="store_true", help="serve HTTPS with a CA generated at start-up")
    serve.add_argument("--auth", action="store_true", help="require a bearer token (written to the kubeconfig)")
    serve.add_argument("--history-limit", type=_count, default=20_000, help="changes kept per resource for watches")
    serve.add_argument("--seed", type=int, default=None, help="seed for generated names and IPs")
    faults = serve.add_argument_group("fault injection (all off by default)")
    faults.add_argument(
        "--fault-drop-watches-every",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="drop open watch connections at random times around this interval",
    )
    faults.add_argument(
        "--fault-drop-fraction",
        type=_fraction,
        default=1.0,
        metavar="F",
        help="fraction of open watches each drop affects (default 1)",
    )
    faults.add_argument(
        "--fault-compact-every",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="force a compaction at random times around this interval (watchers get 410)",
    )
    faults.add_argument(
        "--fault-throttle-rate",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="answer this fraction of API requests with 429 and Retry-After",
    )
    faults.add_argument(
        "--fault-error-rate",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="answer this fraction of API requests with 500",
    )
    faults.add_argument("--fault-latency", type=_seconds, default=0.0, metavar="SECONDS",
                        help="add this delay to every API request")  # fmt: skip
    return parser


async def _serve(args: argparse.Namespace) -> int:
    from nodemeta.sim import SimServer, SimSettings
    from nodemeta.sim.faults import FaultPlan

    settings = SimSettings(
        host=args.host, port=args.port, tls=args.tls, auth=args.auth, nodes=args.nodes,
        history_limit=max(args.history_limit, 1), seed=args.seed,
    )  # fmt: skip
    server = SimServer(settings)
    try:
        await server.start()
    except OSError as err:
        print(
            f"nodemeta sim serve: cannot listen on {args.host}:{args.port}: {err.strerror or err}",
            file=sys.stderr,
        )
        return 1
    if args.kubeconfig:
        path = server.write_kubeconfig(args.kubeconfig)
        print(f"kubeconfig written to {path}", file=sys.stderr)
    print(f"serving the Kubernetes API at {server.url}", file=sys.stderr, flush=True)
    plan = FaultPlan(
        drop_watches_every=args.fault_drop_watches_every, drop_fraction=args.fault_drop_fraction,
        compact_every=args.fault_compact_every, throttle_rate=args.fault_throttle_rate,
        error_rate=args.fault_error_rate, latency=args.fault_latency, seed=args.seed,
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    faults = asyncio.create_task(server.faults.run(plan), name="sim-faults")
    try:
        await stop.wait()
    finally:
        faults.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await faults
        await server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    if args.command == "sim" and args.sim_command == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(_serve(args))
        return 0
    parser.error("unknown command")
    return 2


if __name__ == "__main__":
    sys.exit(main())
