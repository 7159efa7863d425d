"""The node agent's settings: every period, retry and limit with the reason for its number. Pure data.

Settings are frozen and keyword-only, built once by the command line (or a test) and passed down explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodemeta.addresses import BindAddress
from nodemeta.kube.settings import BackoffSettings

__all__ = [
    "DEFAULT_SOCKET",
    "AgentSettings",
    "ApiSettings",
    "BindAddress",
    "MirrorSettings",
    "SettingsError",
    "StreamSettings",
    "TruncateSettings",
]

# Where the agent serves its lookup API; under /run so it is gone after a reboot, like the runtimes' sockets.
DEFAULT_SOCKET = "/run/nodemeta/agent.sock"


class SettingsError(ValueError):
    """A setting is unusable; the message says which and why, for the operator."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TruncateSettings:
    """Container and sandbox label/annotation values longer than `max_value` characters are cut to that length and
    end with `marker`. Falco drops values over 100 characters, silently; here nothing is dropped. 1024 keeps every
    label Kubernetes allows (63 characters) and the first kilobyte of long annotations (e.g.
    kubectl.kubernetes.io/last-applied-configuration, which can reach hundreds of kilobytes per container)."""

    max_value: int = 1024
    marker: str = "...[truncated]"

    def __post_init__(self) -> None:
        if self.max_value <= len(self.marker):
            raise SettingsError("max_value must leave room for the truncation marker")


@dataclass(frozen=True, slots=True, kw_only=True)
class MirrorSettings:
    """How the runtime mirror stays current."""

    # Relist period without a container event stream (containerd 1.6): a new container is known at most this
    # long after it starts. Two ListPodSandbox + ListContainers per 2 s is negligible for the runtime (the kubelet's
    # PLEG relists every second).
    relist_period: float = 2.0
    # With GetContainerEvents the relist is only a safety net against lost events (the kubelet's evented PLEG
    # relists every 300 s); 60 s bounds how long a missed deletion can linger.
    relist_period_with_events: float = 60.0
    # A brand-new container or sandbox can be unknown to ContainerStatus/PodSandboxStatus for a moment after it is
    # listed or announced (Falco's CRI engine retries for the same reason). Retry this many times, the delay
    # doubling from `not_found_delay`: 0.05 + 0.1 + 0.2 + 0.4 s = 0.75 s in all, then wait for the next relist.
    not_found_retries: int = 4
    not_found_delay: float = 0.05
    # Runtime unreachable (restarting, socket missing): keep the cache, retry with jittered backoff from 0.5 s up
    # to 10 s (a containerd restart takes a few seconds; the kubelet itself retries every few seconds).
    backoff: BackoffSettings = field(
        default_factory=lambda: BackoffSettings(initial=0.5, maximum=10.0, factor=2.0, jitter=0.5, reset_after=60.0)
    )
    truncate: TruncateSettings = field(default_factory=TruncateSettings)

    def __post_init__(self) -> None:
        if self.relist_period <= 0 or self.relist_period_with_events <= 0:
            raise SettingsError("relist periods must be positive")
        if self.not_found_retries < 0 or self.not_found_delay < 0:
            raise SettingsError("not_found_retries and not_found_delay must not be negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSettings:
    """The collector stream client."""

    # Reconnect with jittered exponential backoff: 0.5 s first (a collector rollout drops every stream at once,
    # jitter spreads the nodes' returns), capped at 30 s (client-go's cap), reset after a minute of health.
    backoff: BackoffSettings = field(
        default_factory=lambda: BackoffSettings(initial=0.5, maximum=30.0, factor=2.0, jitter=0.5, reset_after=60.0)
    )
    # gRPC keepalive pings on the client side, so a half-open connection (collector node gone) is noticed within
    # about 30 + 10 s instead of the kernel's TCP timeout (hours).
    keepalive_time: float = 30.0
    keepalive_timeout: float = 10.0
    # Largest batch accepted; the collector bounds its batches well below gRPC's default 4 MiB.
    max_message_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiSettings:
    """The local lookup API."""

    socket: str = DEFAULT_SOCKET
    # Changes a /v1/changes client may have queued before it counts as too slow and is disconnected (it reconnects
    # and reads current state with lookups). 1024 events is a node's whole churn for minutes.
    change_queue: int = 1024
    # File mode of the socket: owner and group may connect (node agents in the same pod run as the same user).
    socket_mode: int = 0o660


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSettings:
    """Everything `nodemeta agent run` configures."""

    node_name: str
    # Prefix under which the host's /proc and runtime sockets are found when the agent runs in a container with
    # the host's root mounted (e.g. /host); "" when it runs on the host.
    host_root: str = ""
    api: ApiSettings = field(default_factory=ApiSettings)
    mirror: MirrorSettings = field(default_factory=MirrorSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    # Prometheus /metrics and /healthz + /readyz listeners (None disables metrics). The collector's ports plus
    # one, so an agent and a collector on one host for a test do not collide.
    metrics_address: BindAddress | None = field(default_factory=lambda: BindAddress.parse(":8082"))
    probe_address: BindAddress | None = field(default_factory=lambda: BindAddress.parse(":8083"))
    # How long a graceful stop waits for the API's open streams before closing them.
    shutdown_grace: float = 2.0
    # Once the runtime is mirrored and the metadata synced (and after every later full metadata resync), move the
    # objects alive then out of the cyclic garbage collector's reach (`gc.freeze()`). A full collection of a
    # 110-pod agent's heap (~60-100k objects) otherwise stops the event loop for 25-70 ms on a busy 2-core node,
    # and the lookups queued behind it see that as their tail latency. Frozen objects are still freed by reference
    # counting when dropped; only cycles among them would outlive a collection (the mirror and store hold none).
    freeze_heap: bool = True

    def __post_init__(self) -> None:
        if not self.node_name:
            raise SettingsError("the node name is empty")
