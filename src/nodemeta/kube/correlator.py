"""What to write for each Event occurrence: client-go's event correlator (`tools/record`), pure and without I/O.

Three stages, in client-go's order, each keyed as client-go keys it:

* aggregator: occurrences that differ only in their message (same source, object, type and reason) are counted per
  key in a window; from the `aggregate_messages`-th distinct message on, they become one Event whose message is
  "(combined from similar events): <latest>", so a fault that names a new file or pod every time still makes one
  Event rather than hundreds;
* logger: a repeat of an Event already written (same source, object, type, reason and message) becomes a patch of
  its `count`, `lastTimestamp` and `message` instead of a new Event;
* spam filter: a token bucket per source and object (and type) limits how many writes one object gets; an occurrence
  without a token is not written, but it is still counted, so the next write carries the true count.

The output is a `Write`: the full core/v1 Event (to POST, or to POST again when a PATCH finds it expired) and whether
it is a repeat (PATCH). Caches are LRUs bounded by `cache_size`. Time is passed in (wall-clock seconds), so the whole
thing is tested without an event loop or sleeps.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = [
    "AGGREGATE_PREFIX",
    "Correlator",
    "CorrelatorSettings",
    "ObjectReference",
    "Occurrence",
    "TokenBucket",
    "Write",
]

AGGREGATE_PREFIX = "(combined from similar events): "
EVENT_TYPES = ("Normal", "Warning")


@dataclass(frozen=True, slots=True, kw_only=True)
class CorrelatorSettings:
    """client-go's numbers (`tools/record/events_cache.go`), which every kubelet and controller applies."""

    # Distinct messages for one (object, reason) within the window before they are combined into one Event.
    aggregate_messages: int = 10
    # Seconds since the key's last occurrence after which its distinct-message count starts again.
    aggregate_window: float = 600.0
    # Writes one object may get in a burst, then one more per `spam_interval` seconds: 25 and 300 s, so a
    # crash-looping condition costs an object at most 25 writes plus 12 an hour.
    spam_burst: int = 25
    spam_interval: float = 300.0
    # Keys remembered per cache (aggregator, logger, spam filter); the least recently used is forgotten first.
    cache_size: int = 4096
    # Longer messages are cut (with "..."): events.k8s.io validates notes at 1 KiB and readers show one line.
    message_limit: int = 1024

    def __post_init__(self) -> None:
        if self.aggregate_messages < 1 or self.spam_burst < 1 or self.cache_size < 1 or self.message_limit < 16:
            raise ValueError("aggregate_messages, spam_burst, cache_size must be >= 1 and message_limit >= 16")
        if self.aggregate_window <= 0 or self.spam_interval <= 0:
            raise ValueError("aggregate_window and spam_interval must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectReference:
    """The object an Event is about (core/v1 `involvedObject`).

    For a Node, use `ObjectReference.node(name)`: the kubelet sets the uid to the node's name, and
    `kubectl describe node` looks Events up by that uid.
    """

    kind: str
    name: str
    namespace: str = ""
    uid: str = ""
    api_version: str = "v1"
    resource_version: str = ""
    field_path: str = ""

    @classmethod
    def node(cls, name: str) -> ObjectReference:
        return cls(kind="Node", name=name, uid=name)

    @classmethod
    def pod(cls, namespace: str, name: str, uid: str = "") -> ObjectReference:
        return cls(kind="Pod", name=name, namespace=namespace, uid=uid)

    def to_json(self) -> dict[str, str]:
        out = {"kind": self.kind, "name": self.name, "apiVersion": self.api_version}
        for key, value in (
            ("namespace", self.namespace),
            ("uid", self.uid),
            ("resourceVersion", self.resource_version),
            ("fieldPath", self.field_path),
        ):
            if value:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One call to record an Event; `at` is wall-clock seconds."""

    ref: ObjectReference
    type: str
    reason: str
    message: str
    at: float

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"event type must be Normal or Warning, not {self.type!r}")
        if not self.reason or len(self.reason) > 128:
            raise ValueError(f"event reason must be 1-128 characters, got {self.reason!r}")
        if not self.ref.kind or not self.ref.name:
            raise ValueError("the involved object needs a kind and a name")


@dataclass(frozen=True, slots=True)
class Write:
    """What to send: `event` is the whole core/v1 Event; `update` asks for a PATCH of `patch` on it (and a POST of
    `event` if the PATCH finds it gone, as after the server's event TTL)."""

    event: dict[str, Any]
    update: bool

    @property
    def namespace(self) -> str:
        return str(self.event["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.event["metadata"]["name"])

    @property
    def patch(self) -> dict[str, Any]:
        return {k: self.event[k] for k in ("count", "lastTimestamp", "message")}


class TokenBucket:
    """`burst` tokens, refilled at `rate` per second; `try_take` never waits (a passive limiter)."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now

    def try_take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def available(self, now: float) -> float:
        self._refill(now)
        return self._tokens


K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(slots=True)
class _Aggregate:
    messages: set[str] = field(default_factory=set)
    last: float = 0.0


@dataclass(frozen=True, slots=True)
class _Logged:
    name: str
    namespace: str
    count: int
    first: str


class Correlator:
    """Turns occurrences into writes for one event source (`component` on `host`)."""

    def __init__(self, component: str, host: str, settings: CorrelatorSettings | None = None) -> None:
        if not component:
            raise ValueError("an event source needs a component name")
        self.component = component
        self.host = host
        self.settings = settings or CorrelatorSettings()
        size = self.settings.cache_size
        self._aggregates: _Lru[tuple[Any, ...], _Aggregate] = _Lru(size)
        self._logged: _Lru[tuple[Any, ...], _Logged] = _Lru(size)
        self._buckets: _Lru[tuple[Any, ...], TokenBucket] = _Lru(size)
        self._last_name_ns = 0

    def observe(self, occurrence: Occurrence) -> Write | None:
        """The write for this occurrence, or None when the spam filter holds it back."""
        message = _cut(occurrence.message, self.settings.message_limit)
        ref = occurrence.ref
        object_key = (ref.kind, ref.namespace, ref.name, ref.uid, ref.api_version)
        base_key = (*object_key, ref.field_path, occurrence.type, occurrence.reason)

        # Aggregator: count distinct messages per (object, type, reason) within the window.
        record = self._aggregates.get(base_key)
        if record is None or occurrence.at - record.last > self.settings.aggregate_window:
            record = _Aggregate()
        record.messages.add(message)
        record.last = occurrence.at
        self._aggregates.put(base_key, record)
        if len(record.messages) >= self.settings.aggregate_messages:
            message = _cut(AGGREGATE_PREFIX + message, self.settings.message_limit)
            log_key: tuple[Any, ...] = base_key
        else:
            log_key = (*base_key, message)

        # Logger: a repeat patches the Event already written. The cache counts every occurrence, written or not.
        stamp = _rfc3339(occurrence.at)
        previous = self._logged.get(log_key)
        if previous is None:
            logged = _Logged(self._event_name(ref.name, occurrence.at), ref.namespace or "default", 1, stamp)
        else:
            logged = _Logged(previous.name, previous.namespace, previous.count + 1, previous.first)
        self._logged.put(log_key, logged)

        # Spam filter: one bucket per source and object (and type).
        spam_key = (*object_key, occurrence.type)
        bucket = self._buckets.get(spam_key)
        if bucket is None:
            bucket = TokenBucket(1.0 / self.settings.spam_interval, self.settings.spam_burst, occurrence.at)
            self._buckets.put(spam_key, bucket)
        if not bucket.try_take(occurrence.at):
            return None

        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": logged.name, "namespace": logged.namespace},
            "involvedObject": ref.to_json(),
            "reason": occurrence.reason,
            "message": message,
            "source": {"component": self.component, "host": self.host} if self.host else {"component": self.component},
            "firstTimestamp": logged.first,
            "lastTimestamp": stamp,
            "count": logged.count,
            "type": occurrence.type,
            "eventTime": None,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        return Write(event, previous is not None)

    def _event_name(self, object_name: str, at: float) -> str:
        """`<object>.<hex nanoseconds>` as client-go names them; strictly increasing, so never two alike."""
        nanos = max(int(at * 1e9), self._last_name_ns + 1)
        self._last_name_ns = nanos
        return f"{object_name}.{nanos:x}"


def _cut(message: str, limit: int) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _rfc3339(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
