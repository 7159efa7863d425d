"""An in-memory container runtime behind the `nodemeta.cri.model.Runtime` protocol, with a call counter.

The real runtime (containerd over CRI) cannot run in these unit tests; this fake keeps the state a runtime keeps
(sandboxes, containers, their states), can be told to forget brand-new ids for a few calls (as a runtime briefly
does), to go away (a restart), and to stream container events or not (containerd 1.6 has none).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence

from nodemeta.cri.model import (
    Container,
    ContainerEvent,
    ContainerEventType,
    ContainerState,
    CriNotFound,
    CriUnavailable,
    CriUnsupported,
    Listed,
    RuntimeStatus,
    RuntimeVersion,
    Sandbox,
    SandboxState,
)


class FakeRuntime:
    def __init__(self, *, events: bool = False) -> None:
        self.sandboxes: dict[str, Sandbox] = {}
        self.containers: dict[str, Container] = {}
        self.calls: Counter[str] = Counter()
        # Per-id status calls (the "CRI calls per container lifetime" measure).
        self.status_calls: Counter[str] = Counter()
        self.down = False
        self.has_events = events
        # id -> how many more status calls answer NotFound (a brand-new object).
        self.hidden: dict[str, int] = {}
        self._subscribers: list[asyncio.Queue[ContainerEvent | None]] = []
        self.clock = 1_000

    # -- test controls ------------------------------------------------------------------------------------------

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def add_sandbox(self, sandbox: Sandbox) -> Sandbox:
        sandbox = dataclasses.replace(sandbox, created_at=self._tick())
        self.sandboxes[sandbox.id] = sandbox
        self._emit(ContainerEventType.CREATED, sandbox.id, sandbox=sandbox)
        return sandbox

    def add_container(self, container: Container, *, running: bool = True) -> Container:
        container = dataclasses.replace(container, created_at=self._tick(), state=ContainerState.CREATED, pid=0)
        self.containers[container.id] = container
        self._emit(ContainerEventType.CREATED, container.id, container=container)
        if running:
            self.start(container.id)
        return self.containers[container.id]

    def start(self, container_id: str, pid: int = 0) -> None:
        c = self.containers[container_id]
        self.containers[container_id] = dataclasses.replace(
            c, state=ContainerState.RUNNING, started_at=self._tick(), pid=pid or 4000 + len(self.containers)
        )
        self._emit(ContainerEventType.STARTED, container_id, container=self.containers[container_id])

    def stop(self, container_id: str, exit_code: int = 0) -> None:
        c = self.containers[container_id]
        self.containers[container_id] = dataclasses.replace(
            c, state=ContainerState.EXITED, finished_at=self._tick(), exit_code=exit_code, pid=0
        )
        self._emit(ContainerEventType.STOPPED, container_id, container=self.containers[container_id])

    def remove(self, object_id: str) -> None:
        if object_id in self.containers:
            del self.containers[object_id]
        else:
            del self.sandboxes[object_id]
        self._emit(ContainerEventType.DELETED, object_id)

    def stop_sandbox(self, sandbox_id: str) -> None:
        self.sandboxes[sandbox_id] = dataclasses.replace(self.sandboxes[sandbox_id], state=SandboxState.NOTREADY)
        self._emit(ContainerEventType.STOPPED, sandbox_id, sandbox=self.sandboxes[sandbox_id])

    def crash(self) -> None:
        """The runtime goes away: calls fail with CriUnavailable, event streams break."""
        self.down = True
        for queue in self._subscribers:
            queue.put_nowait(None)

    def restart(self) -> None:
        self.down = False

    def _emit(
        self,
        kind: ContainerEventType,
        object_id: str,
        *,
        sandbox: Sandbox | None = None,
        container: Container | None = None,
    ) -> None:
        # Event payloads are not verbose: no pid, CNI result or privileged flag.
        if container is not None:
            container = dataclasses.replace(container, pid=0, privileged=False)
        if sandbox is not None:
            sandbox = dataclasses.replace(sandbox, cni_result="", pid=0)
        event = ContainerEvent(kind, object_id, self._tick(), sandbox, (container,) if container else ())
        for queue in self._subscribers:
            queue.put_nowait(event)

    # -- the Runtime protocol -----------------------------------------------------------------------------------

    async def _check(self, method: str) -> None:
        self.calls[method] += 1
        await asyncio.sleep(0)  # a real call suspends: other tasks run meanwhile
        if self.down:
            raise CriUnavailable(f"{method}: connection refused")

    async def version(self) -> RuntimeVersion:
        await self._check("Version")
        return RuntimeVersion("fake", "1.0", "v1")

    async def status(self) -> RuntimeStatus:
        await self._check("Status")
        return RuntimeStatus(())

    async def list_sandboxes(self) -> Sequence[Listed]:
        await self._check("ListPodSandbox")
        return [Listed(s.id, s.state, s.created_at) for s in self.sandboxes.values()]

    async def list_containers(self) -> Sequence[Listed]:
        await self._check("ListContainers")
        return [Listed(c.id, c.state, c.created_at, c.sandbox_id) for c in self.containers.values()]

    def _hidden(self, object_id: str) -> bool:
        left = self.hidden.get(object_id, 0)
        if left:
            self.hidden[object_id] = left - 1
            return True
        return False

    async def sandbox(self, sandbox_id: str) -> Sandbox:
        await self._check("PodSandboxStatus")
        self.status_calls[sandbox_id] += 1
        found = self.sandboxes.get(sandbox_id)
        if found is None or self._hidden(sandbox_id):
            raise CriNotFound(f"PodSandboxStatus: sandbox {sandbox_id} not found")
        return found

    async def container(self, container_id: str) -> Container:
        await self._check("ContainerStatus")
        self.status_calls[container_id] += 1
        found = self.containers.get(container_id)
        if found is None or self._hidden(container_id):
            raise CriNotFound(f"ContainerStatus: container {container_id} not found")
        return found

    async def events(self) -> AsyncIterator[ContainerEvent]:
        await self._check("GetContainerEvents")
        if not self.has_events:
            raise CriUnsupported("GetContainerEvents: unimplemented")
        queue: asyncio.Queue[ContainerEvent | None] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
            raise CriUnavailable("GetContainerEvents: stream broken")
        finally:
            self._subscribers.remove(queue)


def hex_id(n: int, prefix: str = "") -> str:
    """A 64-hex id starting with `prefix`, otherwise as random-looking as a runtime's."""
    return (prefix + hashlib.sha256(f"{prefix}{n}".encode()).hexdigest())[:64]


def sandbox(n: int, *, uid: str = "", name: str = "", namespace: str = "default", **fields: object) -> Sandbox:
    return Sandbox(
        id=hex_id(n, "5a"),
        name=name or f"pod-{n}",
        namespace=namespace,
        uid=uid or f"00000000-0000-0000-0000-{n:012x}",
        attempt=0,
        state=SandboxState.READY,
        created_at=0,
        labels={"app": f"a{n}", "io.kubernetes.pod.uid": uid or f"00000000-0000-0000-0000-{n:012x}"},
        annotations={},
        ips=(f"10.0.{n // 250}.{n % 250 + 1}", f"fd00::{n:x}"),
        cni_result='{"eth0":{"IPConfigs":[{"IP":"10.0.0.1"}]}}',
        pid=3000 + n,
        **fields,  # type: ignore[arg-type]
    )


def container(n: int, sandbox_obj: Sandbox, *, name: str = "", **fields: object) -> Container:
    return Container(
        id=hex_id(n, "c0"),
        sandbox_id=sandbox_obj.id,
        name=name or f"c{n}",
        attempt=0,
        image="busybox:1.36",
        image_ref="sha256:" + "ab" * 32,
        state=ContainerState.CREATED,
        created_at=0,
        labels={
            "io.kubernetes.pod.uid": sandbox_obj.uid,
            "io.kubernetes.pod.name": sandbox_obj.name,
            "io.kubernetes.pod.namespace": sandbox_obj.namespace,
            "io.kubernetes.container.name": name or f"c{n}",
        },
        privileged=n % 2 == 0,
        **fields,  # type: ignore[arg-type]
    )
