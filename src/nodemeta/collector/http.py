"""The collector's plain-HTTP side: health probes on one listener, Prometheus metrics on another.

Two listeners, as controller-runtime serves the Go collector (`--health-probe-bind-address` and
`--metrics-bind-address`), so existing probes, NetworkPolicies and ServiceMonitors keep pointing at the right port:

* `/healthz`: 200 while the process runs (liveness: a stuck informer is not fixed by a restart loop);
* `/readyz`: 200 only once the informers of the Go collector's kinds have their first full list cached and the
  gRPC server serves, and 503 again while shutting down (the body says what it waits for). The Go collector answers
  200 at once, so a subscriber routed to it early gets a partial initial sync; here a Service sends no traffic to a
  collector that could not yet answer correctly;
* `/metrics`: the Prometheus text exposition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from nodemeta.collector.settings import BindAddress

__all__ = ["HttpServer", "Readiness", "metrics_app", "probe_app"]

log = structlog.get_logger("collector.http")


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    # Why not, for the probe's body and for people running curl.
    detail: str = ""


def probe_app(readiness: Callable[[], Readiness]) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_request: web.Request) -> web.Response:
        state = readiness()
        if state.ready:
            return web.Response(text="ok")
        return web.Response(status=503, text=f"not ready: {state.detail}\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def metrics_app(render: Callable[[], bytes], content_type: str) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        # Rendering reads in-memory counters only (a few ms for hundreds of series): no need for a thread.
        return web.Response(body=render(), headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


class HttpServer:
    """One aiohttp application on one address. `start()` binds (port 0 picks a free one), `stop()` closes."""

    def __init__(self, name: str, app: web.Application, address: BindAddress) -> None:
        self.name = name
        self.address = address
        self.port = 0
        self._app = app
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        runner = web.AppRunner(self._app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.address.host, self.address.port)
            await site.start()
        except OSError as err:
            await runner.cleanup()
            # asyncio's text for this names neither the server nor the flag; say which listener it was.
            reason = (err.strerror or str(err)).rsplit(": ", 1)[-1]
            raise OSError(err.errno, f"cannot listen on {self.address} for the {self.name} server: {reason}") from err
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # aiohttp exposes the bound port only through the asyncio server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.address.port
        log.info(f"starting {self.name} server", addr=str(self.address), port=self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
