"""The simulated Kubernetes API server: an aiohttp application over the registry and store.

`SimServer` is both the in-process server used by tests (`async with SimServer(...) as sim`) and what
`nodemeta sim serve` runs. The store outlives the HTTP listener, so the server can be stopped and started again
on the same state, as an API server restarts in front of etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import structlog
from aiohttp import web

from nodemeta.sim import discovery, errors, openapi
from nodemeta.sim.auth import Authenticator, TLSMaterial, TokenError, make_tls
from nodemeta.sim.builders import node_object
from nodemeta.sim.controllers import catalog
from nodemeta.sim.controllers.base import ControllerManager
from nodemeta.sim.errors import APIError
from nodemeta.sim.faults import Faults
from nodemeta.sim.handlers import ResourceHandler
from nodemeta.sim.heap import HeapKeeper, HeapSettings
from nodemeta.sim.kubeconfig import kubeconfig, write_kubeconfig
from nodemeta.sim.registry import Registry
from nodemeta.sim.resources import lookup, stored_resources
from nodemeta.sim.settings import SimSettings
from nodemeta.sim.store import Store
from nodemeta.sim.watch import WatchStream

log = structlog.get_logger("nodemeta.sim")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Paths anyone may read, like the system:public-info-viewer role grants.
_PUBLIC = ("/healthz", "/livez", "/readyz", "/version")


class SimServer:
    """A Kubernetes-API-compatible server with its own store."""

    def __init__(
        self, settings: SimSettings | None = None, *, registry: Registry | None = None, heap: HeapSettings | None = None
    ) -> None:
        self.settings = settings or SimSettings()
        if registry is None:
            store = Store(stored_resources(), self.settings.history_limit)
            registry = Registry(store, time.time, self.settings.seed)
            registry.bootstrap()
        self.registry = registry
        self.store = registry.store
        self.authenticator = Authenticator(time.time)
        self.tls: TLSMaterial | None = None
        self.open_watches: set[WatchStream] = set()
        self.faults = Faults(self, seed=self.settings.seed)
        # Set while stop() runs: new watches are refused instead of streaming from a server going away.
        self.stopping = False
        self._runner: web.AppRunner | None = None
        self._controllers: asyncio.Task[None] | None = None
        # Keeps full GC passes off the store (see heap.py); it needs to know when only watches are open.
        self.heap = HeapKeeper(heap or HeapSettings())
        self._heap_task: asyncio.Task[None] | None = None
        self.requests_in_flight = 0
        self.manager: ControllerManager | None = None
        self._port = self.settings.port
        self._tls_dir: tempfile.TemporaryDirectory[str] | None = None
        if self.settings.nodes:
            self.add_nodes(self.settings.nodes)

    # -- state helpers --------------------------------------------------------------------------------------

    def add_nodes(self, count: int, start: int = 1) -> list[str]:
        res = lookup("", "v1", "nodes")
        assert res is not None
        names = []
        for i in range(start, start + count):
            name = f"node-{i}"
            if self.registry.find("nodes", "", name) is None:
                self.registry.create(res, "", node_object(name, i, self.registry.clock()))
            names.append(name)
        return names

    # -- lifecycle ------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.tls else "http"
        return f"{scheme}://{self.settings.host}:{self._port}"

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = self.make_app()
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        context = None
        if self.settings.tls:
            context = self._ssl_context()
        site = web.TCPSite(runner, self.settings.host, self._port, ssl_context=context)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only through the asyncio server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1]
        self._runner = runner
        self.start_controllers()
        self._heap_task = asyncio.create_task(self._keep_heap(), name="sim-heap")
        log.info("simulator listening", url=self.url, tls=self.settings.tls, auth=self.settings.auth)

    def _ssl_context(self) -> ssl.SSLContext:
        if self.tls is None:
            hosts = sorted({self.settings.host, "127.0.0.1", "localhost"})
            self.tls = make_tls(hosts)
            self.registry.root_ca = self.tls.ca_cert.decode()
        self._tls_dir = self._tls_dir or tempfile.TemporaryDirectory(prefix="nodemeta-sim-tls-")
        cert = Path(self._tls_dir.name, "tls.crt")
        key = Path(self._tls_dir.name, "tls.key")
        cert.write_bytes(self.tls.cert + self.tls.ca_cert)
        key.write_bytes(self.tls.key)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    def start_controllers(self) -> None:
        if self._controllers is not None:
            return
        controllers = catalog.build(self.registry, self.settings)
        if controllers:
            self.manager = ControllerManager(self.registry, controllers)
            self.manager.prime()
            self._controllers = asyncio.create_task(self.manager.run(), name="sim-controllers")

    async def stop_controllers(self) -> None:
        task, self._controllers = self._controllers, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def settle(self) -> None:
        """Wait until the controllers have nothing queued (callers bound it with asyncio.timeout)."""
        if self.manager is not None:
            await self.manager.wait_idle()

    async def stop(self) -> None:
        """Stop listening; open watches end cleanly first. The store is kept for a later start()."""
        self.stopping = True
        await self.stop_controllers()
        heap_task, self._heap_task = self._heap_task, None
        if heap_task is not None:
            heap_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heap_task
        for stream in list(self.open_watches):
            stream.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._tls_dir is not None and self._runner is None:
            with contextlib.suppress(OSError):
                self._tls_dir.cleanup()
            self._tls_dir = None
        self.stopping = False

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _keep_heap(self) -> None:
        while True:
            await asyncio.sleep(self.heap.settings.interval)
            busy = self.requests_in_flight > len(self.open_watches)
            if self.heap.due(self.store.rv, busy):
                pause = self.heap.refreeze(self.store.rv)
                log.info("heap refrozen", revision=self.store.rv, pause_s=round(pause, 4), busy=busy)

    def kubeconfig(self) -> dict[str, Any]:
        token = self.authenticator.admin_token if self.settings.auth else None
        ca = self.tls.ca_cert if (self.settings.tls and self.tls is not None) else None
        return kubeconfig(self.url, ca_pem=ca, token=token)

    def write_kubeconfig(self, path: str | Path) -> Path:
        return write_kubeconfig(path, self.kubeconfig())

    # -- HTTP -----------------------------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._count, self._errors, self._authenticate, self._inject_faults],
            client_max_size=self.settings.max_body_bytes * 2,
        )
        resources = ResourceHandler(self)
        app.router.add_get("/version", self._json(lambda _r: discovery.VERSION_INFO))
        app.router.add_get("/api", self._json(lambda r: discovery.api_versions(r.host)))
        app.router.add_get("/apis", self._json(lambda _r: discovery.api_group_list()))
        app.router.add_get("/openapi/v3", self._json(lambda _r: openapi.root_document()))
        app.router.add_get("/openapi/v3/{path:.*}", self._openapi)
        for probe in ("/healthz", "/livez", "/readyz"):
            app.router.add_get(probe, self._ok)
        app.router.add_route("*", "/api/{tail:.*}", self._api_or_resource(resources))
        app.router.add_route("*", "/apis/{tail:.*}", self._api_or_resource(resources))
        return app

    def _json(self, make: Callable[[web.Request], Any]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=orjson.dumps(make(request)), headers={"Content-Type": "application/json"})

        return handler

    async def _ok(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def _openapi(self, request: web.Request) -> web.StreamResponse:
        parts = request.match_info["path"].strip("/").split("/")
        doc = None
        if parts[:1] == ["api"] and len(parts) == 2:
            doc = openapi.group_version_document("", parts[1])
        elif parts[:1] == ["apis"] and len(parts) == 3:
            doc = openapi.group_version_document(parts[1], parts[2])
        if doc is None:
            raise errors.unknown_path()
        return web.Response(body=orjson.dumps(doc), headers={"Content-Type": "application/json"})

    def _api_or_resource(self, resources: ResourceHandler) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            parts = [p for p in request.path.split("/") if p]
            if request.method == "GET":
                if parts[0] == "api" and len(parts) == 2:
                    found = discovery.resource_list("", parts[1])
                    if found is None:
                        raise errors.unknown_path()
                    return web.Response(body=orjson.dumps(found), headers={"Content-Type": "application/json"})
                if parts[0] == "apis" and len(parts) in (2, 3):
                    doc = (
                        discovery.api_group(parts[1])
                        if len(parts) == 2
                        else discovery.resource_list(parts[1], parts[2])
                    )
                    if doc is None:
                        raise errors.unknown_path()
                    return web.Response(body=orjson.dumps(doc), headers={"Content-Type": "application/json"})
            if parts[0] == "apis" and len(parts) == 4 and parts[1:3] == ["authentication.k8s.io", "v1"]:
                pass
            return await resources.handle(request)

        return handler

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests_in_flight += 1
        try:
            return await handler(request)
        finally:
            self.requests_in_flight -= 1

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except APIError as err:
            return _status_response(err)
        except web.HTTPRequestEntityTooLarge:
            return _status_response(errors.request_too_large(self.settings.max_body_bytes))
        except web.HTTPException as exc:
            if exc.status == 404:
                return _status_response(errors.unknown_path())
            if exc.status == 405:
                return _status_response(APIError(405, "MethodNotAllowed", f"method {request.method} is not allowed"))
            raise
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as exc:  # a bug must cost one request, never the server
            log.exception("request failed", method=request.method, path=request.path)
            return _status_response(errors.internal(repr(exc)))

    @web.middleware
    async def _inject_faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(("/api/", "/apis/")) or request.path in ("/api", "/apis"):
            answer = await self.faults.before_request(request)
            if answer is not None:
                return answer
        return await handler(request)

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.settings.auth and request.path not in _PUBLIC:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise errors.unauthorized()
            try:
                self.authenticator.authenticate(token.strip(), self.registry.uid_of)
            except TokenError:
                raise errors.unauthorized() from None
        return await handler(request)


def _status_response(err: APIError) -> web.Response:
    response = web.Response(
        status=err.code, body=orjson.dumps(err.status()), headers={"Content-Type": "application/json"}
    )
    for key, value in err.headers.items():
        response.headers[key] = value
    return response
