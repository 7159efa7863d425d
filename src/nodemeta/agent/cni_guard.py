"""The CNI chain guard inside the agent: its options (`--cni-guard` and the `--cni-*` guard options), the guard
built on the agent's runtime client and metrics registry, and its state on the lookup API's `GET /v1/cni`.

The guard is off by default: it writes to the API server (Node taints, Pod labels and deletions, Events), which
needs RBAC rules a metadata-only agent does not have, and a DaemonSet should grant them knowingly.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry

from nodemeta.cni.guard import Guard
from nodemeta.cni.options import GuardConfig, OptionError, add_guard_options, config_from
from nodemeta.cni.service import open_guard
from nodemeta.cri.model import Runtime
from nodemeta.kube import ClusterConfig

__all__ = ["PREFIX", "add_cni_route", "add_guard_arguments", "guard_config", "open_agent_guard"]

PREFIX = "cni-"


def add_guard_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "CNI chain guard", "watch the node's CNI chain and its pods' traffic capture, and act on what is broken"
    )
    group.add_argument("--cni-guard", action=argparse.BooleanOptionalAction, default=False,
                       help="run the CNI chain guard (default off: it needs RBAC to patch nodes, patch and delete "
                       "pods and write events; credentials come from --kubeconfig or in-cluster)")  # fmt: skip
    add_guard_options(group, PREFIX)


def guard_config(args: argparse.Namespace, host_root: str) -> GuardConfig | None:
    """The guard's settings when `--cni-guard` is given, else None. Raises OptionError, also for guard options
    given without `--cni-guard` (a `--cni-delete-pods` that silently did nothing would mislead)."""
    if not args.cni_guard:
        unused = argparse.ArgumentParser(add_help=False)
        add_guard_options(unused, PREFIX)
        given = sorted(
            "--" + dest.replace("_", "-") for dest, default in vars(unused.parse_args([])).items()
            if getattr(args, dest, default) != default
        )  # fmt: skip
        if given:
            raise OptionError(f"{', '.join(given)}: guard options need --cni-guard")
        return None
    return config_from(args, PREFIX, host_root=host_root)


@contextlib.asynccontextmanager
async def open_agent_guard(
    config: GuardConfig | None,
    *,
    node_name: str,
    runtime: Runtime,
    cluster: ClusterConfig | None,
    registry: CollectorRegistry,
) -> AsyncIterator[Guard | None]:
    """The guard for the agent (None when it is off)."""
    if config is None or cluster is None:
        yield None
        return
    async with open_guard(config, node_name=node_name, runtime=runtime, cluster=cluster, registry=registry) as guard:
        yield guard


def add_cni_route(app: web.Application, status: Callable[[], dict[str, Any] | None]) -> None:
    """`GET /v1/cni`: the guard's state as JSON; 404 when the guard is off."""

    async def cni(_request: web.Request) -> web.Response:
        state = status()
        if state is None:
            body = {"error": "the CNI chain guard is not enabled (agent run --cni-guard)"}
            return web.Response(status=404, body=orjson.dumps(body), content_type="application/json")
        return web.Response(body=orjson.dumps(state), content_type="application/json")

    app.router.add_get("/v1/cni", cni)
