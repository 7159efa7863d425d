"""The CRI `runtime.v1` client over gRPC on the runtime's unix socket: the real `Runtime`.

    async with CriClient("/run/containerd/containerd.sock") as runtime:
        version = await runtime.version()
        for row in await runtime.list_containers():
            container = await runtime.container(row.id)

This is the one place gRPC errors are seen: every call translates them into the model's `CriError` tree
(UNAVAILABLE, a refused or missing socket and a missed deadline -> `CriUnavailable`; NOT_FOUND -> `CriNotFound`;
UNIMPLEMENTED -> `CriUnsupported`; anything else -> `CriError`), so nothing above this module imports grpc.

One channel serves the client's whole life. gRPC re-establishes the connection by itself when the runtime
restarts (the channel's reconnect backoff is bounded by the settings); calls made while it is down fail with
`CriUnavailable` at once instead of waiting, and the next call after it is back succeeds on the same object.

Status calls on a just-created container or sandbox can briefly answer NOT_FOUND; `sandbox()` and `container()`
retry that a bounded number of times with a short jittered backoff before reporting `CriNotFound`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import grpc
import grpc.aio

from nodemeta.api.cri.runtime.v1 import api_pb2 as cri
from nodemeta.api.cri.runtime.v1 import api_pb2_grpc as cri_grpc
from nodemeta.cri import convert
from nodemeta.cri.model import (
    Container,
    ContainerEvent,
    CriError,
    CriNotFound,
    CriUnavailable,
    CriUnsupported,
    Listed,
    RuntimeStatus,
    RuntimeVersion,
    Sandbox,
)
from nodemeta.cri.settings import CriSettings

if TYPE_CHECKING:
    from nodemeta.api.cri.runtime.v1.api_pb2_grpc import RuntimeServiceAsyncStub

__all__ = ["CriClient", "socket_target"]

Request = TypeVar("Request")
Response = TypeVar("Response")

_UNAVAILABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def socket_target(endpoint: str) -> str:
    """A gRPC target for a socket path or an endpoint already written as `unix://...`."""
    if endpoint.startswith("unix:"):
        return endpoint
    return f"unix://{endpoint}" if endpoint.startswith("/") else f"unix:{endpoint}"


def translate(call: str, error: grpc.aio.AioRpcError) -> CriError:
    """The project's error for a failed call, its message naming the call, the status and the runtime's words."""
    code = error.code()
    message = f"CRI {call}: {code.name if code else 'UNKNOWN'}: {error.details() or ''}".rstrip(": ")
    if code in _UNAVAILABLE:
        return CriUnavailable(message)
    if code == grpc.StatusCode.NOT_FOUND:
        return CriNotFound(message)
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return CriUnsupported(message)
    return CriError(message)


class CriClient:
    """`Runtime` over `grpc.aio` on a unix socket; also an async context manager that closes the channel."""

    def __init__(self, endpoint: str, *, settings: CriSettings | None = None) -> None:
        self.endpoint = endpoint
        self.settings = settings or CriSettings()
        self._channel: grpc.aio.Channel | None = None
        self._stub: RuntimeServiceAsyncStub | None = None

    async def __aenter__(self) -> CriClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    @property
    def stub(self) -> RuntimeServiceAsyncStub:
        """The generated stub on this client's channel (created on first use, inside the running event loop)."""
        if self._stub is None:
            s = self.settings
            options = [
                # A proxy variable in the environment must never apply to the runtime's socket.
                ("grpc.enable_http_proxy", 0),
                ("grpc.max_receive_message_length", s.max_message_bytes),
                ("grpc.initial_reconnect_backoff_ms", int(s.reconnect_backoff_min * 1000)),
                # Not "grpc.min_reconnect_backoff_ms": gRPC uses it as the connection attempt's own timeout, and at
                # 100 ms a runtime slow to answer on a loaded node would never finish its HTTP/2 handshake.
                ("grpc.min_reconnect_backoff_ms", int(s.connect_timeout * 1000)),
                ("grpc.max_reconnect_backoff_ms", int(s.reconnect_backoff_max * 1000)),
            ]
            self._channel = grpc.aio.insecure_channel(socket_target(self.endpoint), options=options)
            self._stub = cri_grpc.RuntimeServiceStub(self._channel)
        return self._stub

    async def _call(
        self,
        name: str,
        method: Callable[..., Awaitable[Response]],
        request: Request,
        *,
        deadline: float | None = None,
        retry_not_found: bool = False,
    ) -> Response:
        retries = self.settings.not_found_retries if retry_not_found else 0
        delay = self.settings.not_found_backoff
        for attempt in range(retries + 1):
            try:
                return await method(request, timeout=deadline or self.settings.call_timeout)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND or attempt == retries:
                    raise translate(name, error) from error
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- Runtime

    async def version(self) -> RuntimeVersion:
        response = await self._call("Version", self.stub.Version, cri.VersionRequest(version="v1"))
        return convert.runtime_version(response)

    async def status(self) -> RuntimeStatus:
        response = await self._call("Status", self.stub.Status, cri.StatusRequest(verbose=True))
        return convert.runtime_status(response)

    async def list_sandboxes(self) -> Sequence[Listed]:
        response = await self._call(
            "ListPodSandbox", self.stub.ListPodSandbox, cri.ListPodSandboxRequest(), deadline=self.settings.list_timeout
        )
        return [convert.listed_sandbox(item) for item in response.items]

    async def list_containers(self) -> Sequence[Listed]:
        response = await self._call(
            "ListContainers", self.stub.ListContainers, cri.ListContainersRequest(), deadline=self.settings.list_timeout
        )
        return [convert.listed_container(item) for item in response.containers]

    async def sandbox(self, sandbox_id: str) -> Sandbox:
        request = cri.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True)
        response = await self._call("PodSandboxStatus", self.stub.PodSandboxStatus, request, retry_not_found=True)
        return convert.sandbox(response)

    async def container(self, container_id: str) -> Container:
        request = cri.ContainerStatusRequest(container_id=container_id, verbose=True)
        response = await self._call("ContainerStatus", self.stub.ContainerStatus, request, retry_not_found=True)
        found = convert.container(response)
        if found.sandbox_id:
            return found
        # The verbose info did not name the sandbox (a runtime without it): the container's list row does.
        listed = await self._call(
            "ListContainers",
            self.stub.ListContainers,
            cri.ListContainersRequest(filter=cri.ContainerFilter(id=container_id)),
        )
        sandbox_id = next((c.pod_sandbox_id for c in listed.containers if c.id == container_id), "")
        return convert.container(response, sandbox_id=sandbox_id)

    async def events(self) -> AsyncIterator[ContainerEvent]:
        """GetContainerEvents as it happens; `CriUnsupported` on a runtime without it (containerd 1.6).

        The stream has no deadline. It ends (returns) only if the runtime ends it; the caller relists then.
        """
        call = self.stub.GetContainerEvents(cri.GetEventsRequest())
        try:
            async for response in call:
                yield convert.container_event(response)
        except grpc.aio.AioRpcError as error:
            raise translate("GetContainerEvents", error) from error
        finally:
            call.cancel()
