"""Plain-HTTP serving shared by the collector, the agent and the CNI guard: health probes, the Prometheus endpoint,
and one aiohttp application on one TCP address (`nodemeta.addresses.BindAddress`).

* `/healthz`: 200 while the process runs (liveness: a stuck watch is not fixed by a restart loop);
* `/readyz`: 200 when the caller's readiness says so, else 503 with what it waits for (for people running curl);
* `/metrics`: the Prometheus text exposition, rendered from in-memory counters (a few ms: no thread needed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from nodemeta.addresses import AddressError, BindAddress

__all__ = ["AddressError", "BindAddress", "Readiness", "TcpServer", "add_probes", "metrics_app", "probe_app"]

log = structlog.get_logger("nodemeta.serving")


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    # Why not, for the probe's body.
    detail: str = ""


def add_probes(app: web.Application, readiness: Callable[[], Readiness]) -> None:
    """`/healthz` and `/readyz` on `app`."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_request: web.Request) -> web.Response:
        state = readiness()
        if state.ready:
            return web.Response(text="ok")
        return web.Response(status=503, text=f"not ready: {state.detail}\n")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


def probe_app(readiness: Callable[[], Readiness]) -> web.Application:
    app = web.Application()
    add_probes(app, readiness)
    return app


def metrics_app(render: Callable[[], bytes], content_type: str) -> web.Application:
    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=render(), headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


class TcpServer:
    """One aiohttp application on one TCP address. `start()` binds (port 0 picks a free one; `port` is the bound
    port afterwards), `stop()` closes."""

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

    async def __aenter__(self) -> TcpServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
