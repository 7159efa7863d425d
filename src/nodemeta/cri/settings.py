"""The CRI client's settings: deadlines, retries and channel limits, each default with its reason.

Frozen and keyword-only, built once by the agent's command line (or a test) and passed to `CriClient`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_SOCKETS", "CriSettings"]

# Probed in this order when no socket is configured: containerd, CRI-O, k3s's embedded containerd, and the path
# Bottlerocket-style hosts expose the host's containerd under.
DEFAULT_SOCKETS = (
    "/run/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/run/k3s/containerd/containerd.sock",
    "/run/host-containerd/containerd.sock",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CriSettings:
    # Per-call deadline. Falco's CRI engine uses 1 s: a healthy runtime answers status calls in milliseconds, and a
    # runtime that takes longer is better skipped and asked again than waited on while events pile up.
    call_timeout: float = 1.0
    # Deadline for ListPodSandbox / ListContainers, which grow with the node (a few hundred containers, each row
    # with labels and annotations) and are only made on a relist.
    list_timeout: float = 5.0
    # A container or sandbox the agent hears about can be briefly unknown to the status calls (it is being
    # created); NotFound is retried this many times, after `not_found_backoff` seconds doubled each time and
    # jittered by +-50% (0.05 + 0.1 + 0.2 = 0.35 s at most, well under the next relist), then reported.
    not_found_retries: int = 3
    not_found_backoff: float = 0.05
    # gRPC's own reconnect backoff starts at 1 s and grows to 120 s; a runtime restart (seconds) should be noticed
    # within a couple of seconds of the socket answering again, so the channel retries between these bounds.
    reconnect_backoff_min: float = 0.1
    reconnect_backoff_max: float = 2.0
    # How long one connection attempt may take to complete the HTTP/2 handshake with the runtime (gRPC's minimum
    # connect timeout, 20 s by default). A containerd starved of CPU on a loaded node can take seconds to answer;
    # giving up sooner only makes every call fail UNAVAILABLE until the load passes.
    connect_timeout: float = 10.0
    # The largest response accepted. gRPC's default is 4 MiB, which a ListContainers on a busy node can exceed
    # (the kubelet raises its own limit to 16 MiB for the same reason).
    max_message_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in (
            "call_timeout",
            "list_timeout",
            "reconnect_backoff_min",
            "reconnect_backoff_max",
            "connect_timeout",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"CriSettings.{name} must be positive")
        if self.not_found_retries < 0 or self.not_found_backoff < 0:
            raise ValueError("CriSettings.not_found_retries and not_found_backoff must not be negative")
        if self.reconnect_backoff_max < self.reconnect_backoff_min:
            raise ValueError("CriSettings.reconnect_backoff_max must be at least reconnect_backoff_min")
        if self.max_message_bytes < 1024:
            raise ValueError("CriSettings.max_message_bytes must be at least 1024")
