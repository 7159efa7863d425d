"""The agent's HTTP surfaces: the lookup API on a unix socket, health probes and Prometheus metrics on TCP.

Lookup API (JSON; every answer is computed from memory, no runtime or API call):

* `GET /v1/containers/{id}`: a container by full id or unique 12+ character prefix; a sandbox id answers with the
  sandbox's record (`kind: sandbox`), since a pause container is what a process in it reports;
* `GET /v1/sandboxes/{id}`, `GET /v1/pids/{pid}`, `GET /v1/pods/{uid}`;
* `GET /v1/lookup/{key}`: a pid, a container or sandbox id, or a pod uid;
* `GET /v1/changes`: newline-delimited CloudEvents (JSON format), one per change, until the client goes away or
  falls more than `change_queue` events behind (then the connection is closed);
* `GET /healthz`, `GET /readyz` (also served here, so a client on the socket can check them).

Unknown keys answer 404, malformed ones 400, both with `{"error": ...}`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from nodemeta.agent.changes import ChangeHub
from nodemeta.agent.join import Joiner, Record
from nodemeta.agent.metrics import AgentMetrics
from nodemeta.serving import Readiness, TcpServer, add_probes, metrics_app, probe_app

__all__ = ["ApiServer", "Readiness", "TcpServer", "api_app", "metrics_app", "probe_app"]

log = structlog.get_logger("agent.http")


def _json(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def api_app(
    joiner: Joiner, hub: ChangeHub, metrics: AgentMetrics, readiness: Callable[[], Readiness]
) -> web.Application:
    lookups = metrics.lookups

    def answer(by: str, key: str, record: Record | None, want: str = "") -> web.Response:
        if record is None or (want and record.get("kind") != want):
            lookups.labels(by, "not_found").inc()
            return _json(404, {"error": f"no {want or by} {key!r} on this node", "key": key})
        lookups.labels(by, "found").inc()
        return _json(200, record)

    async def container(request: web.Request) -> web.Response:
        key = request.match_info["id"]
        return answer("container", key, joiner.by_id(key))

    async def sandbox(request: web.Request) -> web.Response:
        key = request.match_info["id"]
        return answer("sandbox", key, joiner.by_id(key), "sandbox")

    async def pod(request: web.Request) -> web.Response:
        key = request.match_info["uid"]
        return answer("pod", key, joiner.by_pod(key))

    async def pid(request: web.Request) -> web.Response:
        key = request.match_info["pid"]
        if not key.isdigit() or len(key) > 7:
            lookups.labels("pid", "bad_request").inc()
            return _json(400, {"error": f"not a process id: {key!r}", "key": key})
        return answer("pid", key, joiner.by_pid(int(key)))

    async def lookup(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        return answer("lookup", key, joiner.lookup(key))

    async def changes(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        transport = request.transport

        def drop() -> None:
            if transport is not None:
                transport.close()

        sub = hub.subscribe(on_overflow=drop)
        try:
            while (line := await sub.next()) is not None:
                await response.write(line)
        except (ConnectionError, RuntimeError):
            pass  # the reader went away, or was dropped for being too slow
        finally:
            hub.unsubscribe(sub)
        return response

    app = web.Application()
    app.router.add_get("/v1/containers/{id}", container)
    app.router.add_get("/v1/sandboxes/{id}", sandbox)
    app.router.add_get("/v1/pods/{uid}", pod)
    app.router.add_get("/v1/pids/{pid}", pid)
    app.router.add_get("/v1/lookup/{key}", lookup)
    app.router.add_get("/v1/changes", changes)
    add_probes(app, readiness)
    return app


class ApiServer:
    """The lookup API on a unix socket. A stale socket file from a previous run is replaced."""

    def __init__(self, app: web.Application, path: str, mode: int, shutdown_timeout: float) -> None:
        self.path = path
        self._mode = mode
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout)

    def _prepare(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if not os.path.isdir(self.path):
                os.unlink(self.path)

    async def start(self) -> None:
        self._prepare()
        await self._runner.setup()
        try:
            await web.UnixSite(self._runner, self.path).start()
            os.chmod(self.path, self._mode)
        except BaseException:
            await self._runner.cleanup()
            raise
        log.info("serving the lookup API", socket=self.path)

    async def stop(self) -> None:
        await self._runner.cleanup()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
