"""Every timeout and limit of the Kubernetes client layer, with the reason for its number.

Settings are frozen, keyword-only and checked on construction; they are passed explicitly (`settings=`), never read
from globals and never changed after start-up. Tests pass small values through the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BackoffSettings", "ClientSettings", "ReflectorSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """HTTP behaviour of one `ApiClient`."""

    # TCP + TLS handshake to the API server. An API server that takes longer than 10 s to accept a connection is
    # down or overloaded; failing the attempt lets the reflector back off instead of waiting on a dead address.
    connect_timeout: float = 10.0
    # A whole non-streaming request (one LIST page). A 500-pod page is a few MB and takes well under a second;
    # 60 s leaves room for a loaded server and a slow link while still ending a request that hangs.
    request_timeout: float = 60.0
    # Sent with every request so API server audit logs and APF flow schemas can tell this client apart.
    user_agent: str = "nodemeta/0.1"

    def __post_init__(self) -> None:
        _positive(connect_timeout=self.connect_timeout, request_timeout=self.request_timeout)


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffSettings:
    """Jittered exponential backoff between failed attempts (the numbers are client-go's reflector backoff)."""

    # First delay. client-go starts at 800 ms: long enough not to hammer a restarting server, short enough that a
    # single dropped connection costs under a second.
    initial: float = 0.8
    # Cap. client-go caps at 30 s, which it works out as about 0.22 QPS per reflector against an unhealthy server.
    maximum: float = 30.0
    # Doubling reaches the cap after six failures (0.8 -> 25.6 s).
    factor: float = 2.0
    # Each delay is drawn from [(1 - jitter) * d, d], so thousands of clients cut off together do not return in
    # lockstep. 0.5 keeps at least half the nominal delay.
    jitter: float = 0.5
    # After this long without a failure the next delay starts again from `initial` (client-go: 2 minutes).
    reset_after: float = 120.0

    def __post_init__(self) -> None:
        _positive(initial=self.initial, maximum=self.maximum, reset_after=self.reset_after)
        if self.maximum < self.initial:
            raise ValueError("backoff maximum must be at least the initial delay")
        if self.factor < 1.0:
            raise ValueError("backoff factor must be >= 1")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("backoff jitter must be in [0, 1)")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReflectorSettings:
    """The list/watch loop of one resource."""

    # LIST page size. client-go and kube-apiserver use 500: pages of a few MB keep the server's and our memory
    # bounded while 150k pods still list in 300 requests.
    page_size: int = 500
    # Each watch asks the server to end it after a random time in [min, max) seconds (client-go: 5-10 minutes), so
    # watches of many clients do not all reconnect at the same moment after a server restart.
    watch_timeout_min: float = 300.0
    watch_timeout_max: float = 600.0
    # No bytes at all for this long ends the watch and re-watches. The server sends a bookmark about every 60 s
    # when asked (allowWatchBookmarks), so 75 s of silence means the connection is dead, not idle.
    inactivity_timeout: float = 75.0
    # A watch that ends cleanly sooner than this without delivering anything is treated as a failure and backed
    # off (client-go's "very short watch"), so a server that closes every watch at once cannot cause a hot loop.
    min_watch_duration: float = 1.0
    # How many times one LIST is restarted from scratch when its continue token expires (the list was slower than
    # the server's history). Beyond that the attempt fails and is retried after a backoff.
    list_restarts: int = 3
    backoff: BackoffSettings = field(default_factory=BackoffSettings)

    def __post_init__(self) -> None:
        _positive(
            page_size=self.page_size,
            watch_timeout_min=self.watch_timeout_min,
            inactivity_timeout=self.inactivity_timeout,
        )
        if self.watch_timeout_max < self.watch_timeout_min:
            raise ValueError("watch_timeout_max must be at least watch_timeout_min")
        if self.min_watch_duration < 0 or self.list_restarts < 0:
            raise ValueError("min_watch_duration and list_restarts must not be negative")


def _positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
