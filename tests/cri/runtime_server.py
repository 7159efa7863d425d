"""A scripted `runtime.v1` server on a real unix socket, for the client behaviours a real runtime cannot be made to
show on demand (a container unknown for exactly N calls, an event stream, an unexpected error code)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio

from nodemeta.api.cri.runtime.v1 import api_pb2 as cri
from nodemeta.api.cri.runtime.v1 import api_pb2_grpc as cri_grpc


class ScriptedRuntime(cri_grpc.RuntimeServiceServicer):
    def __init__(self) -> None:
        self.version_calls = 0
        self.status_calls = 0
        self.not_found_before_answer = 0
        self.status_error: grpc.StatusCode | None = None
        self.events: asyncio.Queue[cri.ContainerEventResponse] = asyncio.Queue()
        self.events_open = asyncio.Event()
        self.events_closed = asyncio.Event()

    async def Version(self, request: cri.VersionRequest, context: grpc.aio.ServicerContext) -> cri.VersionResponse:  # type: ignore[override]
        self.version_calls += 1
        return cri.VersionResponse(version="0.1.0", runtime_name="scripted", runtime_version="0.0.1",
                                   runtime_api_version="v1")  # fmt: skip

    async def ContainerStatus(  # type: ignore[override]
        self, request: cri.ContainerStatusRequest, context: grpc.aio.ServicerContext
    ) -> cri.ContainerStatusResponse:
        self.status_calls += 1
        if self.status_error is not None:
            await context.abort(self.status_error, "scripted failure")
        if self.status_calls <= self.not_found_before_answer:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"container {request.container_id!r} not found")
        return cri.ContainerStatusResponse(
            status=cri.ContainerStatus(id=request.container_id, metadata=cri.ContainerMetadata(name="app")),
            info={"info": '{"sandboxID": "s1", "pid": 7}'},
        )

    async def GetContainerEvents(  # type: ignore[override]
        self, request: cri.GetEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cri.ContainerEventResponse]:
        self.events_open.set()
        try:
            while True:
                yield await self.events.get()
        finally:
            self.events_closed.set()


class RuntimeServer:
    """`async with RuntimeServer(path) as server:` serves `server.runtime` on the unix socket at `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.runtime = ScriptedRuntime()
        self._server: grpc.aio.Server | None = None

    async def __aenter__(self) -> RuntimeServer:
        self._server = grpc.aio.server()
        cri_grpc.add_RuntimeServiceServicer_to_server(self.runtime, self._server)
        self._server.add_insecure_port(f"unix://{self.path}")
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
