"""Prometheus metrics of the CNI chain guard's actions, on a registry the caller passes in.

* `nodemeta_cni_config_valid` (gauge 0/1): the node's CNI configuration has no error-level finding;
* `nodemeta_cni_findings{code}` (gauge): current node findings by code (codes seen before and gone read 0);
* `nodemeta_cni_pods{state}` (gauge): the node's pods by capture state (every state always present);
* `nodemeta_cni_repair_pods_total{type,result}` (counter): pod repairs (`type` delete or label), by result, after
  istio-cni's `istio_cni_repair_pods_repaired_total`;
* `nodemeta_cni_taint_set` (gauge 0/1): the node carries the not-ready taint (as last read or written);
* `nodemeta_cni_events_total{result}` (counter, read from the recorder's stats at scrape time): Events created,
  patched, filtered by the spam filter, dropped on a full queue, or failed.

A registry is passed in rather than using prometheus_client's global one, so every agent (and every test) owns its
series.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from nodemeta.kube.events import RecorderStats

__all__ = ["CAPTURE_STATES", "CniMetrics"]

# The capture states of `nodemeta.cni.actions.CaptureState`, as label values (kept here so metrics import nothing
# from the actions).
CAPTURE_STATES = ("captured", "partial", "missing", "unknown")


class CniMetrics:
    """The chain guard's series, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry, recorder_stats: RecorderStats | None = None) -> None:
        self.config_valid = Gauge(
            "nodemeta_cni_config_valid",
            "1 when the node's CNI configuration has no error-level finding, else 0.",
            registry=registry,
        )
        self.findings = Gauge(
            "nodemeta_cni_findings", "Current CNI configuration findings on this node, by code.", ["code"],
            registry=registry,
        )  # fmt: skip
        self.pods = Gauge(
            "nodemeta_cni_pods", "Pods on this node by traffic capture state.", ["state"], registry=registry
        )
        self.repair_pods = Counter(
            "nodemeta_cni_repair_pods",
            "Repairs of pods whose traffic is not captured, by type (delete, label) and result.",
            ["type", "result"],
            registry=registry,
        )
        self.taint_set = Gauge(
            "nodemeta_cni_taint_set", "1 when the node carries the CNI not-ready taint, else 0.", registry=registry
        )
        for state in CAPTURE_STATES:
            self.pods.labels(state=state).set(0)
        self._codes: set[str] = set()
        if recorder_stats is not None:
            registry.register(_EventCounters(recorder_stats))

    def set_findings(self, counts: Mapping[str, int]) -> None:
        """Current findings by code; codes seen before and absent now read 0."""
        self._codes.update(counts)
        for code in self._codes:
            self.findings.labels(code=code).set(counts.get(code, 0))

    def set_pods(self, counts: Mapping[str, int]) -> None:
        for state in CAPTURE_STATES:
            self.pods.labels(state=state).set(counts.get(state, 0))


class _EventCounters(Collector):
    """`nodemeta_cni_events_total{result}` from the recorder's plain counters, read at scrape time."""

    def __init__(self, stats: RecorderStats) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "nodemeta_cni_events", "Kubernetes Events of the chain guard, by what became of them.", labels=["result"]
        )
        s = self._stats
        for result, value in (
            ("created", s.created),
            ("patched", s.patched),
            ("filtered", s.filtered),
            ("dropped", s.dropped),
            ("failed", s.failed),
        ):
            family.add_metric([result], value)
        yield family
