"""The agent's Prometheus metrics (`nodemeta_agent_*`), on a registry of its own so tests can run several agents.

Counters are exposed with the `_total` suffix (prometheus_client's convention); gauges read the live state when
scraped. The registry also carries prometheus_client's process and Python GC collectors (`process_*`,
`python_gc_*`): memory and collection counts of the agent process.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "AgentMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        self.containers = Gauge("nodemeta_agent_containers", "Containers in the runtime mirror", registry=r)
        self.sandboxes = Gauge("nodemeta_agent_sandboxes", "Pod sandboxes in the runtime mirror", registry=r)
        self.metadata_objects = Gauge(
            "nodemeta_agent_metadata_objects", "Objects in the metadata store (pods, namespaces, owners, services)",
            registry=r,
        )  # fmt: skip
        self.ready = Gauge("nodemeta_agent_ready", "1 once the runtime is mirrored and metadata synced", registry=r)
        self.runtime_available = Gauge(
            "nodemeta_agent_runtime_available",
            "1 while the last runtime relist succeeded; 0 while the runtime is unreachable (lookups use the cache)",
            registry=r,
        )  # fmt: skip
        self.lookups = Counter(
            "nodemeta_agent_lookups", "Lookups served, by what was asked and the result", ["by", "result"],
            registry=r,
        )  # fmt: skip
        self.cri_calls = Counter(
            "nodemeta_agent_cri_calls", "CRI calls made, by method and outcome", ["method", "outcome"], registry=r
        )
        self.metadata_events = Counter(
            "nodemeta_agent_metadata_events", "Metadata events applied, by reason", ["reason"], registry=r
        )
        self.metadata_errors = Counter(
            "nodemeta_agent_metadata_errors", "Metadata events refused (undecodable payloads)", registry=r
        )
        self.stream_reconnects = Counter(
            "nodemeta_agent_stream_reconnects", "Metadata stream (or API watch) reconnections", registry=r
        )
        self.runtime_relists = Counter("nodemeta_agent_runtime_relists", "Runtime relists completed", registry=r)
        self.runtime_events = Counter(
            "nodemeta_agent_runtime_events", "Container events received from the runtime", registry=r
        )
        self.change_subscribers = Gauge("nodemeta_agent_change_subscribers", "Open /v1/changes streams", registry=r)
        self.change_disconnects = Counter(
            "nodemeta_agent_change_disconnects", "Change streams ended because the reader was too slow", registry=r
        )

    def watch_state(
        self,
        *,
        containers: Callable[[], int],
        sandboxes: Callable[[], int],
        metadata_objects: Callable[[], int],
        ready: Callable[[], bool],
        runtime_available: Callable[[], bool],
        change_subscribers: Callable[[], int],
    ) -> None:
        self.containers.set_function(lambda: float(containers()))
        self.sandboxes.set_function(lambda: float(sandboxes()))
        self.metadata_objects.set_function(lambda: float(metadata_objects()))
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)
        self.runtime_available.set_function(lambda: 1.0 if runtime_available() else 0.0)
        self.change_subscribers.set_function(lambda: float(change_subscribers()))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
