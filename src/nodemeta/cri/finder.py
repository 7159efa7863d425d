"""The runtime to talk to when a process starts without knowing which one answers: `discover_runtime`, retried.

    async with RuntimeFinder(candidates, host_root="/host") as runtime:
        agent = Agent(settings, runtime, source)       # or the CNI guard
The first call probes the candidate sockets (the configured ones, else the usual containerd / CRI-O / k3s paths,
each under the host root) with `nodemeta.cri.discovery.discover_runtime` and keeps a `CriClient` on the first that
answers Version. Until one does, every call raises `NoRuntimeFound` (a `CriUnavailable` listing each path and why it
was passed over), so the caller's loop backs off and calls again: a runtime that comes up later is found then. The
probes themselves are spaced (`retry_min` doubling to `retry_max`), so callers that retry fast do not turn into a
stream of socket probes. Once found, the path is kept; a runtime restart is the client's to ride out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import structlog

from nodemeta.cri.client import CriClient
from nodemeta.cri.discovery import NoRuntimeFound, discover_runtime
from nodemeta.cri.model import Container, ContainerEvent, Listed, RuntimeStatus, RuntimeVersion, Sandbox
from nodemeta.cri.settings import CriSettings

__all__ = ["RuntimeFinder"]

log = structlog.get_logger("nodemeta.cri")


class RuntimeFinder:
    """A `Runtime` that discovers its socket on first use (see the module docstring)."""

    def __init__(
        self,
        candidates: Sequence[str] = (),
        *,
        host_root: str = "",
        settings: CriSettings | None = None,
        retry_min: float = 0.5,
        retry_max: float = 5.0,
    ) -> None:
        self.candidates = tuple(candidates)
        self.host_root = host_root
        self.settings = settings
        self.path = ""
        self._client: CriClient | None = None
        self._retry_min = retry_min
        self._retry_max = retry_max
        self._delay = 0.0
        self._next_probe = 0.0
        self._last_failure: NoRuntimeFound | None = None

    async def __aenter__(self) -> RuntimeFinder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def client(self) -> CriClient:
        if self._client is None:
            now = asyncio.get_running_loop().time()
            if self._last_failure is not None and now < self._next_probe:
                raise self._last_failure
            try:
                found = await discover_runtime(
                    self.candidates or None, host_root=self.host_root, settings=self.settings
                )
            except NoRuntimeFound as err:
                self._delay = min(self._retry_max, max(self._retry_min, self._delay * 2))
                self._next_probe = now + self._delay
                self._last_failure = err
                raise
            self._last_failure = None
            v = found.version
            log.info("container runtime found", socket=found.path, runtime=v.runtime_name, version=v.runtime_version,
                     api=v.runtime_api_version)  # fmt: skip
            self.path = found.path
            self._client = CriClient(found.path, settings=self.settings)
        return self._client

    async def version(self) -> RuntimeVersion:
        return await (await self.client()).version()

    async def status(self) -> RuntimeStatus:
        return await (await self.client()).status()

    async def list_sandboxes(self) -> Sequence[Listed]:
        return await (await self.client()).list_sandboxes()

    async def list_containers(self) -> Sequence[Listed]:
        return await (await self.client()).list_containers()

    async def sandbox(self, sandbox_id: str) -> Sandbox:
        return await (await self.client()).sandbox(sandbox_id)

    async def container(self, container_id: str) -> Container:
        return await (await self.client()).container(container_id)

    async def events(self) -> AsyncIterator[ContainerEvent]:
        client = await self.client()
        async for event in client.events():
            yield event
