"""What the node agent knows about the runtime's pod sandboxes and containers: pure data, no I/O.

The CRI client (`nodemeta.cri.client`) translates `runtime.v1` messages into these types at one boundary, so the
rest of the agent never sees protobuf classes or gRPC errors. `Runtime` is the small protocol the agent's runtime
mirror is written against; the real implementation is the gRPC client, and unit tests may use an in-memory one.

Times are nanoseconds since the epoch, as the CRI reports them.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Container",
    "ContainerEvent",
    "ContainerEventType",
    "ContainerState",
    "CriError",
    "CriNotFound",
    "CriUnavailable",
    "CriUnsupported",
    "Listed",
    "Mount",
    "Runtime",
    "RuntimeCondition",
    "RuntimeStatus",
    "RuntimeVersion",
    "Sandbox",
    "SandboxState",
]


class ContainerState(enum.IntEnum):
    CREATED = 0
    RUNNING = 1
    EXITED = 2
    UNKNOWN = 3


class SandboxState(enum.IntEnum):
    READY = 0
    NOTREADY = 1


class ContainerEventType(enum.IntEnum):
    CREATED = 0
    STARTED = 1
    STOPPED = 2
    DELETED = 3


@dataclass(frozen=True, slots=True)
class RuntimeVersion:
    runtime_name: str
    runtime_version: str
    runtime_api_version: str


@dataclass(frozen=True, slots=True)
class RuntimeCondition:
    type: str
    status: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    conditions: tuple[RuntimeCondition, ...]
    # Verbose runtime information, runtime-specific. containerd: "cniconfig" (JSON of the loaded CNI networks),
    # "lastCNILoadStatus" ("OK" or the load error), "config".
    info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Listed:
    """One row of ListPodSandbox / ListContainers: enough to diff two listings without a status call."""

    id: str
    # The row's state: a SandboxState for sandboxes, a ContainerState for containers.
    state: int
    created_at: int
    # Containers: their sandbox's id; sandboxes: "".
    sandbox_id: str = ""


@dataclass(frozen=True, slots=True)
class Sandbox:
    """A pod sandbox, from a verbose PodSandboxStatus."""

    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    state: SandboxState
    created_at: int
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    runtime_handler: str = ""
    # Primary IP first, then the additional ones (IPv4 and IPv6 alike), as the runtime reports them.
    ips: tuple[str, ...] = ()
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    # The pod's network namespace: a bind-mount path (e.g. /var/run/netns/cni-<uuid>) when the runtime reports
    # one, else "". `pid` is the sandbox (pause) process, 0 when unknown: /proc/<pid>/ns/net reaches the same netns.
    netns_path: str = ""
    pid: int = 0
    # The CNI result, trimmed like Falco's (interfaces minus lo and veth*, no Mac/Sandbox), compact JSON,
    # at most 4096 bytes; "" when the runtime reports none.
    cni_result: str = ""


@dataclass(frozen=True, slots=True)
class Mount:
    container_path: str
    host_path: str
    readonly: bool = False
    propagation: int = 0


@dataclass(frozen=True, slots=True)
class Container:
    """A container, from a verbose ContainerStatus."""

    id: str
    sandbox_id: str
    name: str
    attempt: int
    # The image as asked for (e.g. "busybox:1.36") and the resolved reference (digest or image id).
    image: str
    image_ref: str
    state: ContainerState
    created_at: int
    started_at: int = 0
    finished_at: int = 0
    exit_code: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    privileged: bool = False
    # The process user id from the OCI spec, -1 when unknown.
    user: int = -1
    # The container's init process on the host, 0 when not running or unknown.
    pid: int = 0


@dataclass(frozen=True, slots=True)
class ContainerEvent:
    """One GetContainerEvents message."""

    type: ContainerEventType
    container_id: str
    created_at: int
    sandbox: Sandbox | None = None
    containers: tuple[Container, ...] = ()


class CriError(Exception):
    """A CRI call failed; the message says which call and why."""


class CriUnavailable(CriError):
    """The runtime cannot be reached (socket missing, connection refused, runtime restarting)."""


class CriNotFound(CriError):
    """The runtime does not know the sandbox or container (it may be brand new, or gone)."""


class CriUnsupported(CriError):
    """The runtime does not implement the call (e.g. GetContainerEvents on containerd 1.6)."""


class Runtime(Protocol):
    """The runtime calls the agent makes. Every method raises only `CriError` subclasses."""

    async def version(self) -> RuntimeVersion: ...

    async def status(self) -> RuntimeStatus: ...

    async def list_sandboxes(self) -> Sequence[Listed]: ...

    async def list_containers(self) -> Sequence[Listed]: ...

    async def sandbox(self, sandbox_id: str) -> Sandbox: ...

    async def container(self, container_id: str) -> Container: ...

    def events(self) -> AsyncIterator[ContainerEvent]:
        """Container events as they happen; raises `CriUnsupported` (on first iteration) when the runtime has none."""
        ...
