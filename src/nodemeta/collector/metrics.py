"""Prometheus metrics: the Go k8s-metacollector's exact series, plus nodemeta's own.

Go's series (shared spec section 5), so its dashboards and alerts keep working:

* `meta_collector_server_subscribers` (gauge): open Watch streams;
* `meta_collector_broker_queue_adds{name,type}`: events queued for subscribers, by reason;
* `meta_collector_broker_queue_duration_seconds{name}` (histogram): how long an event waited in a queue;
* `meta_collector_broker_dispatched_events{kind,type}`: events handed to subscribers' streams;
* `meta_collector_collector_event_api_server_received{name,source,type}`: informer events per kind;
* the process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...).

The Go exposition writes its counters without the `_total` suffix, and `prometheus_client` cannot: it appends
`_total` to every counter family it renders, in the TYPE line too. So the Go series are kept here as small
in-process families and rendered by `exposition()` exactly as client_golang writes them (`# TYPE <name> counter`,
integer values, `le` after the other labels and no `_created` series), which is valid in the text format 0.0.4 that
Prometheus negotiates with controller-runtime too. There is deliberately no `<name>_total` twin: scrapers that
normalise the suffix away (OpenMetrics parsers, the OpenTelemetry receiver) would see each counter twice. Label
values differ from Go's where Go's were bugs or described its design: api-server `type` is not swapped between
update and delete, and the queue series count one per subscriber queue (nodemeta has no global queue, hence
`name="subscriber-queue"`).

Hot paths (one call per event and subscriber) touch pre-bound children: a counter increment is an attribute add on
a slotted object, with no lock (everything runs on the event loop thread) and no label lookup.

nodemeta's own series are read at scrape time from the informers' counters (`ReflectorStats`, plain attributes, so
the informer layer knows nothing of Prometheus) and from callables the app registers (subscriber count, index size).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector as RegistryCollector

from nodemeta.collector.model import FALCO_KINDS, Reason
from nodemeta.kube.informer import Informer

__all__ = [
    "CONTENT_TYPE",
    "CollectorMetrics",
    "Counter",
    "CounterFamily",
    "EventCounters",
    "GaugeFunction",
    "HistogramFamily",
    "collector_name",
]

# What `exposition()` renders: the classic text format, where counters may lack `_total`.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

QUEUE = "subscriber-queue"
REASONS = (Reason.CREATE.value, Reason.UPDATE.value, Reason.DELETE.value)
# Go's broker histogram buckets: 1e-8 s to 10 s, one per decade.
QUEUE_BUCKETS = tuple(10.0**exp for exp in range(-8, 2))


def collector_name(kind: str) -> str:
    """The Go collector's controller name for a kind (`pod-collector`, `replicationcontroller-collector`, ...)."""
    return f"{kind.lower()}-collector"


class Counter:
    """One labelled counter value. `inc` is the hot path: an add on a slot, nothing else."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class CounterFamily:
    """A counter family rendered under its exact name (no `_total`), as Go's client_golang does."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self._children: dict[tuple[str, ...], Counter] = {}

    def child(self, *values: str) -> Counter:
        """The counter for these label values, created at 0 on first use; bind it once, then `inc()` it."""
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {values}")
        found = self._children.get(values)
        if found is None:
            found = self._children[values] = Counter()
        return found

    def samples(self) -> list[tuple[dict[str, str], int]]:
        return [(dict(zip(self.labels, key, strict=True)), c.value) for key, c in sorted(self._children.items())]

    def render(self) -> str:
        lines = [_help(self.name, self.documentation), f"# TYPE {self.name} counter"]
        lines.extend(_sample(self.name, labels, value) for labels, value in self.samples())
        return "\n".join(lines) + "\n"

    def total(self) -> CounterMetricFamily:
        """The family for the registry (rendered as `<name>_total`): for nodemeta's own counters."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in self.samples():
            family.add_metric([labels[k] for k in self.labels], value)
        return family


class Histogram:
    """One labelled histogram: a count per bucket (not cumulative until rendered), the sum and the count."""

    __slots__ = ("_bounds", "buckets", "count", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(self._bounds, value)] += 1
        self.sum += value
        self.count += 1


class HistogramFamily:
    """A histogram family rendered as client_golang does (no `_created`, `le` last)."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)
        self.bounds = tuple(sorted(buckets))
        self._children: dict[tuple[str, ...], Histogram] = {}

    def child(self, *values: str) -> Histogram:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {values}")
        found = self._children.get(values)
        if found is None:
            found = self._children[values] = Histogram(self.bounds)
        return found

    def render(self) -> str:
        lines = [_help(self.name, self.documentation), f"# TYPE {self.name} histogram"]
        for key, child in sorted(self._children.items()):
            labels = dict(zip(self.labels, key, strict=True))
            cumulative = 0
            for bound, count in zip((*self.bounds, math.inf), child.buckets, strict=True):
                cumulative += count
                lines.append(_sample(f"{self.name}_bucket", {**labels, "le": _go_float(bound)}, cumulative))
            lines.append(_sample(f"{self.name}_sum", labels, child.sum))
            lines.append(_sample(f"{self.name}_count", labels, child.count))
        return "\n".join(lines) + "\n"


class GaugeFunction:
    """An unlabelled gauge whose value is read at render time."""

    def __init__(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        self.name = name
        self.documentation = documentation
        self.read = read

    def render(self) -> str:
        return (
            f"{_help(self.name, self.documentation)}\n# TYPE {self.name} gauge\n{_sample(self.name, {}, self.read())}\n"
        )


class EventCounters:
    """The api-server event counters of one kind's informer, pre-bound (create, update, delete)."""

    __slots__ = ("create", "delete", "update")

    def __init__(self, family: CounterFamily, kind: str) -> None:
        name = collector_name(kind)
        self.create = family.child(name, "api-server", "create")
        self.update = family.child(name, "api-server", "update")
        self.delete = family.child(name, "api-server", "delete")


class CollectorMetrics:
    """Every metric of one collector, in its own registry (so tests can run several collectors in a process).

    Implements the broker's `BrokerObserver` protocol (`queue_add`, `dispatched`, `subscriber_ended`, and
    `queue_wait` for the queue-duration histogram).
    """

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.queue_adds = CounterFamily(
            "meta_collector_broker_queue_adds", "Events queued for subscribers, by reason.", ("name", "type")
        )
        self.dispatched_events = CounterFamily(
            "meta_collector_broker_dispatched_events",
            "Events handed to subscribers' streams, by kind and reason.",
            ("kind", "type"),
        )
        self.api_server_received = CounterFamily(
            "meta_collector_collector_event_api_server_received",
            "Informer events received from the API server, by collector and event type.",
            ("name", "source", "type"),
        )
        self.subscribers_ended = CounterFamily(
            "nodemeta_subscribers_ended",
            "Subscriptions the broker ended, by why (overflow: the subscriber could not keep up and must resync).",
            ("reason",),
        )
        self.queue_duration = HistogramFamily(
            "meta_collector_broker_queue_duration_seconds",
            "How long events waited in subscribers' queues before being sent.",
            ("name",),
            QUEUE_BUCKETS,
        )
        self.subscribers = GaugeFunction("meta_collector_server_subscribers", "Open Watch streams.", lambda: 0)
        self._go_families = (
            self.subscribers,
            self.queue_adds,
            self.queue_duration,
            self.dispatched_events,
            self.api_server_received,
        )
        self._own_counters = (self.subscribers_ended,)
        # Pre-created at 0, as the Go collector does, so dashboards show every series from the start.
        self._queue_adds = {reason: self.queue_adds.child(QUEUE, reason) for reason in REASONS}
        self._dispatched = {
            (kind, reason): self.dispatched_events.child(kind, reason) for kind in FALCO_KINDS for reason in REASONS
        }
        self._ended: dict[str, Counter] = {}
        self._queue_wait = self.queue_duration.child(QUEUE)
        self._informers: Mapping[str, Informer[Any]] = {}
        self._index_objects: Callable[[], int] = lambda: 0
        self.registry.register(_Snapshot(self))
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    # -- wiring (the app calls these once) ----------------------------------------------------------------------

    def watch_informers(self, informers: Mapping[str, Informer[Any]]) -> None:
        """Report these informers (kind -> informer) at every scrape."""
        self._informers = informers

    def watch_state(self, *, subscribers: Callable[[], int], index_objects: Callable[[], int]) -> None:
        self.subscribers.read = subscribers
        self._index_objects = index_objects

    def api_server_events(self, kind: str) -> EventCounters:
        return EventCounters(self.api_server_received, kind)

    # -- BrokerObserver -----------------------------------------------------------------------------------------

    def queue_add(self, node: str, reason: str, kind: str) -> None:
        self._queue_adds[reason].inc()

    def dispatched(self, kind: str, reason: str, count: int) -> None:
        found = self._dispatched.get((kind, reason))
        if found is None:  # a kind beyond the Falco seven (StatefulSet, Job, ...), bound on first use
            found = self._dispatched[(kind, reason)] = self.dispatched_events.child(kind, reason)
        found.inc(count)

    def subscriber_ended(self, node: str, why: str) -> None:
        # The node name is left out on purpose: labels must stay bounded, and nodes come and go.
        found = self._ended.get(why)
        if found is None:
            found = self._ended[why] = self.subscribers_ended.child(why)
        found.inc()

    def queue_wait(self, seconds: float) -> None:
        self._queue_wait.observe(seconds)

    # -- exposition ---------------------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The /metrics body (text format 0.0.4, `CONTENT_TYPE`)."""
        go = "".join(family.render() for family in self._go_families)
        return go.encode() + generate_latest(self.registry)


class _Snapshot(RegistryCollector):
    """nodemeta's own series for the registry: its counters, and informer and index state read at scrape time."""

    def __init__(self, metrics: CollectorMetrics) -> None:
        self._m = metrics

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        m = self._m
        for family in m._own_counters:
            yield family.total()
        yield GaugeMetricFamily(
            "nodemeta_index_objects", "Objects known to the relation index.", value=m._index_objects()
        )
        yield from _informer_families(m._informers)


def _informer_families(informers: Mapping[str, Informer[Any]]) -> Iterable[Metric]:
    synced = GaugeMetricFamily("nodemeta_informer_synced", "1 once the kind's first list is cached.", labels=["kind"])
    objects = GaugeMetricFamily("nodemeta_informer_objects", "Objects in the kind's cache.", labels=["kind"])
    lists = CounterMetricFamily("nodemeta_informer_lists", "Complete LISTs stored.", labels=["kind"])
    relists = CounterMetricFamily(
        "nodemeta_informer_relists", "LISTs after the first (410 Expired, API errors).", labels=["kind"]
    )
    list_failures = CounterMetricFamily("nodemeta_informer_list_failures", "Failed LIST attempts.", labels=["kind"])
    watches = CounterMetricFamily("nodemeta_informer_watches", "Watch streams opened.", labels=["kind"])
    restarts = CounterMetricFamily(
        "nodemeta_informer_watch_restarts", "Watch streams ended, by why.", labels=["kind", "reason"]
    )
    events = CounterMetricFamily("nodemeta_informer_watch_events", "Watch events, by type.", labels=["kind", "type"])
    decode_errors = CounterMetricFamily(
        "nodemeta_informer_decode_errors", "Watch events skipped as undecodable.", labels=["kind"]
    )
    listener_errors = CounterMetricFamily(
        "nodemeta_informer_listener_errors", "Exceptions raised while applying an event.", labels=["kind"]
    )
    for kind, informer in sorted(informers.items()):
        stats = informer.stats
        synced.add_metric([kind], 1.0 if informer.has_synced else 0.0)
        objects.add_metric([kind], len(informer.store))
        lists.add_metric([kind], stats.lists)
        relists.add_metric([kind], stats.relists)
        list_failures.add_metric([kind], stats.list_failures)
        watches.add_metric([kind], stats.watches)
        for reason, count in sorted(stats.watch_restarts.items()):
            restarts.add_metric([kind, reason], count)
        for event_type, count in sorted(stats.events.items()):
            events.add_metric([kind, event_type], count)
        decode_errors.add_metric([kind], stats.decode_errors)
        listener_errors.add_metric([kind], informer.store.listener_errors)
    yield from (synced, objects, lists, relists, list_failures, watches, restarts, events, decode_errors)
    yield listener_errors


def _help(name: str, text: str) -> str:
    return f"# HELP {name} " + text.replace("\\", "\\\\").replace("\n", "\\n")


def _sample(name: str, labels: Mapping[str, str], value: float) -> str:
    if not labels:
        return f"{name} {_go_float(value)}"
    text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
    return f"{name}{{{text}}} {_go_float(value)}"


def _go_float(value: float) -> str:
    """A number as client_golang writes it (strconv.FormatFloat(v, 'g', -1, 64)): the shortest digits that
    round-trip, in exponent form below 1e-4 and from 1e6 up: 3, 0.25, 123456, 1.234567e+06, 1e-08, +Inf."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == 0:
        return "0"
    # repr() gives the shortest round-tripping digits, as Go's shortest formatting does.
    sign, digit_tuple, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # digits before the decimal point
    exp = point - 1
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        text = f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    elif point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    return "-" + text if sign else text


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
