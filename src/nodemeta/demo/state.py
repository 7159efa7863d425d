"""Everything the demo's screen shows, in one place: the runner fills it in, the view reads it.

Also the numbers the demo exists to show (`Comparison`): what a subscribed node received from nodemeta against what
the same node's agent receives when it watches the API server itself, whole cluster or node-filtered.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nodemeta.demo.direct import DirectWatch
from nodemeta.demo.meter import Meter, RateMeter
from nodemeta.demo.subscribers import Subscriber
from nodemeta.demo.verify import Verdict

if TYPE_CHECKING:
    from nodemeta.collector.app import Collector
    from nodemeta.sim.churn import ChurnDriver
    from nodemeta.sim.generator import BuildReport, ClusterPlan
    from nodemeta.sim.server import SimServer

__all__ = ["BUILDING", "CHECKING", "LIVE", "STARTING", "STOPPING", "SYNCING", "Comparison", "DemoState"]

# Stages, in order.
BUILDING = "building the cluster"
STARTING = "starting the collector"
SYNCING = "subscribing"
LIVE = "live"
CHECKING = "checking every subscriber against the cluster"
STOPPING = "stopping"

OWNER_KINDS = ("Deployment", "ReplicaSet", "DaemonSet", "ReplicationController")


@dataclass(slots=True)
class Note:
    """A milestone, as the plain output prints it and the screen lists it."""

    at: float
    text: str


@dataclass(slots=True)
class DemoState:
    nodes: int
    pods_per_node: int
    seed: int
    churn_rate: float
    duration: float
    started: float = field(default_factory=time.monotonic)
    stage: str = BUILDING
    # The stage before the current one (what a stop interrupted, once the stage is STOPPING).
    previous_stage: str = ""
    stage_since: float = field(default_factory=time.monotonic)
    # Build progress: the generator's phase and how far it is.
    build_phase: str = ""
    build_done: int = 0
    build_total: int = 0
    plan: ClusterPlan | None = None
    build: BuildReport | None = None
    sim: SimServer | None = None
    collector: Collector | None = None
    churn: ChurnDriver | None = None
    subscribers: list[Subscriber] = field(default_factory=list)
    full: DirectWatch | None = None
    # Per subscribed node: the same agent with a node-filtered pod watch (its other watches equal `full`'s).
    filtered: dict[str, DirectWatch] = field(default_factory=dict)
    writes: int = 0
    write_rate: RateMeter = field(default_factory=RateMeter)
    live_since: float | None = None
    live_until: float | None = None
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)

    # -- updates ------------------------------------------------------------------------------------------------

    def enter(self, stage: str) -> None:
        self.previous_stage = self.stage
        self.stage = stage
        self.stage_since = time.monotonic()

    def note(self, text: str) -> None:
        self.notes.append(Note(time.monotonic(), text))

    def count_write(self, *_: object) -> None:
        """A store observer: one API write (any object, any verb)."""
        self.writes += 1

    def tick(self, now: float) -> None:
        """Sample every meter (the view calls it a few times a second)."""
        self.write_rate.sample(now, self.writes)
        for sub in self.subscribers:
            sub.meter.sample(now)
        for watch in self.direct_watches():
            watch.sample(now)

    # -- reading ------------------------------------------------------------------------------------------------

    def direct_watches(self) -> list[DirectWatch]:
        return ([self.full] if self.full is not None else []) + list(self.filtered.values())

    def live_seconds(self, now: float) -> float:
        if self.live_since is None:
            return 0.0
        return (self.live_until or now) - self.live_since

    def pods(self) -> int:
        return len(self.sim.store.buckets["pods"]) if self.sim is not None else 0

    def cluster_nodes(self) -> int:
        return len(self.sim.store.buckets["nodes"]) if self.sim is not None else 0

    def churn_actions(self) -> tuple[int, int]:
        """(done, skipped) churn actions."""
        if self.churn is None:
            return 0, 0
        return sum(self.churn.counts.values()), sum(self.churn.skipped.values())

    def collector_api_events(self) -> int:
        """Events the collector received from the API server (list items are not counted: they are not events)."""
        if self.collector is None:
            return 0
        return sum(
            n
            for informer in self.collector.informers.values()
            for kind, n in informer.stats.events.items()
            if kind != "BOOKMARK"
        )

    def v1_subscribers(self) -> list[Subscriber]:
        return [s for s in self.subscribers if s.protocol == "v1"]

    def synced_subscribers(self) -> int:
        return sum(1 for s in self.subscribers if s.synced.is_set())

    def comparison(self) -> Comparison | None:
        subs = self.v1_subscribers()
        if self.full is None or not subs or not self.full.synced:
            return None
        node = Meter()
        for sub in subs:
            node.add(sub.meter)
        filtered = Meter()
        rest = Meter()
        rest.add(self.full.total)
        pods = self.full.meter("Pod")
        rest.create -= pods.create
        rest.update -= pods.update
        rest.delete -= pods.delete
        rest.bytes -= pods.bytes
        for watch in self.filtered.values():
            filtered.add(watch.total)
            filtered.add(rest)
        n = len(subs)
        nf = max(1, len(self.filtered))
        return Comparison(
            nodes=self.cluster_nodes(),
            node_events=node.events / n,
            node_bytes=node.bytes / n,
            full_events=self.full.total.events,
            full_bytes=self.full.total.bytes,
            filtered_events=filtered.events / nf if self.filtered else None,
            filtered_bytes=filtered.bytes / nf if self.filtered else None,
        )


@dataclass(frozen=True, slots=True)
class Comparison:
    """Per node, on average over the subscribed nodes: what nodemeta sent against what a direct watch costs."""

    nodes: int
    node_events: float
    node_bytes: float
    full_events: int
    full_bytes: int
    filtered_events: float | None
    filtered_bytes: float | None

    @property
    def byte_ratio(self) -> float | None:
        return self.full_bytes / self.node_bytes if self.node_bytes else None

    @property
    def event_ratio(self) -> float | None:
        return self.full_events / self.node_events if self.node_events else None

    @property
    def filtered_byte_ratio(self) -> float | None:
        if self.filtered_bytes is None or not self.node_bytes:
            return None
        return self.filtered_bytes / self.node_bytes


def owners(counts: Counter[str]) -> int:
    return sum(counts[k] for k in OWNER_KINDS)
