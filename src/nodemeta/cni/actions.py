"""What the agent does about CNI chain findings: taint the node, record Events, label and delete uncaptured pods.

Input is the whole current picture, every tick (level-triggered, never a sequence of edges to interpret): the
node's configuration findings (`NodeFinding`) and one `PodFinding` per pod on the node that should be captured,
captured ones included, so that labels can be removed again. `ChainActions.reconcile` compares that picture with
what it wrote before and with the objects' current state, and changes only what differs:

* taint `nodemeta.io/cni-not-ready:NoSchedule`: added as soon as the configuration has an error-level finding, so
  no new pod is scheduled onto a node that would start it without its traffic capture; removed once the
  configuration has been healthy for `taint_clear_after` seconds (hysteresis against flapping files). The Node is
  changed by a read-modify-write with the read resourceVersion, retried on 409, touching no other taint;
* Events (through the `Recorder`, so repeats become count updates): one per node finding (its code is the reason)
  on the Node, one per uncaptured pod on the Pod, each again every `event_repeat_interval` while it lasts, and
  Normal Events when things recover or an action is taken;
* pod label `nodemeta.io/cni-uncaptured=true` while a pod's capture is missing or partial, removed once captured;
* pod deletion (off by default): an uncaptured pod owned by a controller is deleted with `uid` and
  `resourceVersion` preconditions, so a pod replaced under the same name, or changed since it was judged, is never
  deleted by mistake; this also repairs pods that never restart (Jobs with restartPolicy Never), which validators
  that wait for a crash loop never see. Deletions wait while the node's configuration is broken (a replacement
  could come up broken too), pace themselves with a token bucket and stop at a cap per window.

Every action has its switch and its limit in `ActionSettings`. API failures of one action are logged and counted
and never stop the others; the next tick tries again.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import structlog

from nodemeta.cni.metrics import CniMetrics
from nodemeta.kube.correlator import ObjectReference, TokenBucket
from nodemeta.kube.errors import Conflict, KubeError, NotFound
from nodemeta.kube.events import NORMAL, WARNING, Recorder
from nodemeta.kube.writer import JSONObject, PatchType, Writer, node_path, pod_path

__all__ = [
    "BAD_STATES",
    "REASON_CAPTURE_PARTIAL",
    "REASON_CAPTURE_RESTORED",
    "REASON_CHAIN_HEALTHY",
    "REASON_NOT_CAPTURED",
    "REASON_POD_DELETED",
    "REASON_REPAIR_LIMIT",
    "REASON_TAINT_ADDED",
    "REASON_TAINT_REMOVED",
    "ActionSettings",
    "CaptureState",
    "ChainActions",
    "NodeFinding",
    "PodFinding",
    "Report",
    "Severity",
]

log = structlog.get_logger("nodemeta.cni.actions")

REASON_CHAIN_HEALTHY = "CNIChainHealthy"
REASON_TAINT_ADDED = "CNINotReadyTaintAdded"
REASON_TAINT_REMOVED = "CNINotReadyTaintRemoved"
REASON_REPAIR_LIMIT = "PodRepairLimitReached"
REASON_NOT_CAPTURED = "PodNotCaptured"
REASON_CAPTURE_PARTIAL = "PodCapturePartial"
REASON_CAPTURE_RESTORED = "PodCaptureRestored"
REASON_POD_DELETED = "PodDeletedForRepair"

_REASON = re.compile(r"^[A-Z][A-Za-z0-9]{0,127}$")


class Severity(StrEnum):
    ERROR = "error"  # the chain is broken: new pods would start without capture (taints the node)
    WARNING = "warning"  # worth an Event, not a gate (e.g. the runtime has not reloaded yet)
    INFO = "info"


class CaptureState(StrEnum):
    CAPTURED = "captured"
    PARTIAL = "partial"  # some rules present, some missing (e.g. a chain without its jump): traffic leaks
    MISSING = "missing"  # no capture rules at all
    UNKNOWN = "unknown"  # could not be checked (netns gone, audit failed): no action either way


BAD_STATES = frozenset({CaptureState.MISSING, CaptureState.PARTIAL})


@dataclass(frozen=True, slots=True)
class NodeFinding:
    """A problem in the node's CNI configuration. `code` is CamelCase and becomes the Event reason."""

    code: str
    message: str
    severity: Severity = Severity.ERROR

    def __post_init__(self) -> None:
        if not _REASON.match(self.code):
            raise ValueError(f"finding code must be CamelCase, at most 128 characters: {self.code!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PodFinding:
    """One pod's capture state, with the identity it was judged under (uid and resourceVersion).

    A captured pod that no action will touch may come without a resourceVersion (and without labels): it is only
    counted."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    state: CaptureState
    message: str = ""
    # The pod's current labels, to tell whether the uncaptured label is there.
    labels: Mapping[str, str] = field(default_factory=dict)
    # Kind of the pod's controller ("" for a bare pod, which nothing would recreate after a deletion).
    owner_kind: str = ""
    # The pod already has a deletionTimestamp.
    terminating: bool = False

    def __post_init__(self) -> None:
        if not (self.namespace and self.name and self.uid):
            raise ValueError("a pod finding needs namespace, name and uid")
        if not self.resource_version and (self.state in BAD_STATES or self.labels):
            # Labels and deletions pin the resourceVersion the pod was judged under.
            raise ValueError("a pod finding with a bad state or labels needs its resourceVersion")

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionSettings:
    # -- taint
    # On by default: keeping new pods off a node whose chain is broken is the cheapest fix there is.
    taint: bool = True
    taint_key: str = "nodemeta.io/cni-not-ready"
    taint_effect: str = "NoSchedule"
    # Healthy this long before the taint goes: installers rewrite files in bursts (delete then create, two
    # writers alternating), and a taint that follows each flap would make the scheduler flap with it.
    taint_clear_after: float = 30.0
    # Without a change to make, the Node is read again this often, to put back a taint someone removed (and to
    # notice one left from an earlier run). 300 s keeps 5,000 nodes under 17 reads a second.
    taint_resync: float = 300.0
    # Taint writes: 4 at once, then one every 30 s; hysteresis already makes more than one a minute unlikely.
    taint_burst: int = 4
    taint_interval: float = 30.0
    # -- events
    events: bool = True
    # A finding that persists is recorded again this often (the recorder turns it into a count update), so it
    # stays visible past the API server's 1 h event TTL.
    event_repeat_interval: float = 600.0
    # -- labels
    label: bool = True
    label_key: str = "nodemeta.io/cni-uncaptured"
    # Label writes: 20 at once, then 5 a second: a node's worth of pods in a few seconds, never a write storm.
    label_burst: int = 20
    label_rate: float = 5.0
    # -- deletion
    # Off by default: deleting pods is the one destructive action, as in Linkerd's and Istio's repair controllers.
    delete: bool = False
    delete_states: frozenset[CaptureState] = BAD_STATES
    # Uncaptured this long (as seen by this agent) before deletion: a pod's rules may still be on their way when
    # it is first audited.
    delete_after: float = 60.0
    # Bare pods come back after a deletion only if someone recreates them by hand.
    delete_unowned: bool = False
    # Pacing: 2 at once, then one every 30 s, so replacements start one after another.
    delete_burst: int = 2
    delete_interval: float = 30.0
    # At most this many deletions per window; reaching it means something is systematically wrong (an audit
    # false positive on every pod), and deleting more would only do harm. A Warning Event says so.
    delete_cap: int = 10
    delete_cap_window: float = 3600.0
    # DeleteOptions gracePeriodSeconds (None: the pod's own terminationGracePeriodSeconds).
    delete_grace_seconds: int | None = None

    def __post_init__(self) -> None:
        for name in ("taint_clear_after", "taint_resync", "taint_interval", "event_repeat_interval", "label_rate",
                     "delete_interval", "delete_cap_window"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if min(self.taint_burst, self.label_burst, self.delete_burst) < 1 or self.delete_cap < 0:
            raise ValueError("bursts must be >= 1 and delete_cap >= 0")
        if self.delete_after < 0:
            raise ValueError("delete_after must not be negative")
        if self.taint_effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise ValueError(f"unknown taint effect {self.taint_effect!r}")


@dataclass(slots=True)
class Report:
    """What one `reconcile` did (for logs and tests)."""

    taint: str = ""  # "added", "removed" or "" (no change)
    labeled: list[str] = field(default_factory=list)
    unlabeled: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    # Pods whose deletion was due but did not happen, with why.
    held: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _PodMemory:
    state: CaptureState
    bad_since: float | None = None
    event_at: float | None = None
    # Our own last label write to the pod: (resourceVersion it was made on, resourceVersion it produced), and
    # whether it set the label (True) or removed it (False).
    wrote: tuple[str, str] | None = None
    labeled: bool | None = None


class ChainActions:
    """The actions of one node's chain guard. Call `reconcile` on every audit tick, from one task."""

    def __init__(
        self,
        writer: Writer,
        recorder: Recorder,
        metrics: CniMetrics,
        *,
        node_name: str,
        settings: ActionSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.recorder = recorder
        self.metrics = metrics
        self.node_name = node_name
        self.settings = s = settings or ActionSettings()
        self._clock = clock
        now = clock()
        self._node_ref = ObjectReference.node(node_name)
        self._taint_writes = TokenBucket(1.0 / s.taint_interval, s.taint_burst, now)
        self._label_writes = TokenBucket(s.label_rate, s.label_burst, now)
        self._deletions = TokenBucket(1.0 / s.delete_interval, s.delete_burst, now)
        self._deleted_at: deque[float] = deque()
        self._cap_reported_at: float | None = None
        self._taint_present: bool | None = None  # as last read or written; None = not known yet
        self._taint_checked_at: float | None = None
        self._healthy_since: float | None = None
        self._was_broken: bool | None = None
        self._node_events: dict[str, float] = {}
        self._pods: dict[str, _PodMemory] = {}

    @property
    def taint_present(self) -> bool | None:
        """Whether the node carries the taint, as last read or written (None before the first taint reconcile)."""
        return self._taint_present

    async def reconcile(self, node_findings: Sequence[NodeFinding], pod_findings: Sequence[PodFinding]) -> Report:
        now = self._clock()
        report = Report()
        broken = any(f.severity is Severity.ERROR for f in node_findings)
        self._update_metrics(node_findings, pod_findings, broken)
        self._node_events_for(node_findings, broken, now)
        if self.settings.taint:
            await self._reconcile_taint(broken, now, report)
        seen: set[str] = set()
        for finding in pod_findings:
            seen.add(finding.uid)
            await self._reconcile_pod(finding, broken, now, report)
        for uid in self._pods.keys() - seen:  # pods gone from the node
            del self._pods[uid]
        return report

    # -- metrics and node events ------------------------------------------------------------------------------

    def _update_metrics(self, nodes: Sequence[NodeFinding], pods: Sequence[PodFinding], broken: bool) -> None:
        self.metrics.config_valid.set(0 if broken else 1)
        codes: dict[str, int] = {}
        for f in nodes:
            codes[f.code] = codes.get(f.code, 0) + 1
        self.metrics.set_findings(codes)
        states: dict[str, int] = {}
        for p in pods:
            states[p.state.value] = states.get(p.state.value, 0) + 1
        self.metrics.set_pods(states)

    def _event(self, ref: ObjectReference, type: str, reason: str, message: str) -> None:
        if self.settings.events:
            self.recorder.record(ref, type, reason, message)

    def _node_events_for(self, findings: Sequence[NodeFinding], broken: bool, now: float) -> None:
        current = {f.code for f in findings}
        for code in self._node_events.keys() - current:
            del self._node_events[code]
        for f in findings:
            last = self._node_events.get(f.code)
            if last is None or now - last >= self.settings.event_repeat_interval:
                self._node_events[f.code] = now
                self._event(self._node_ref, NORMAL if f.severity is Severity.INFO else WARNING, f.code, f.message)
        if self._was_broken and not broken:
            self._event(self._node_ref, NORMAL, REASON_CHAIN_HEALTHY, "the CNI configuration has no errors any more")
        self._was_broken = broken

    # -- taint ----------------------------------------------------------------------------------------------

    def _taint_wanted(self, broken: bool, now: float) -> bool | None:
        """True: set it; False: remove it; None: leave it as it is (healthy, but not for long enough)."""
        if broken:
            self._healthy_since = None
            return True
        if self._healthy_since is None:
            self._healthy_since = now
        return False if now - self._healthy_since >= self.settings.taint_clear_after else None

    async def _reconcile_taint(self, broken: bool, now: float, report: Report) -> None:
        want = self._taint_wanted(broken, now)
        if want is None:
            return
        stale = self._taint_checked_at is None or now - self._taint_checked_at >= self.settings.taint_resync
        if want == self._taint_present and not stale:
            return
        if not self._taint_writes.try_take(now):
            report.errors.append("taint: rate limited")
            return
        key, effect = self.settings.taint_key, self.settings.taint_effect

        def change(node: JSONObject) -> JSONObject | None:
            spec = node.get("spec")
            taints = spec.get("taints") if isinstance(spec, dict) else None
            taints = [t for t in taints if isinstance(t, dict)] if isinstance(taints, list) else []
            ours = [t for t in taints if t.get("key") == key and t.get("effect") == effect]
            others = [t for t in taints if not (t.get("key") == key and t.get("effect") == effect)]
            if want and len(ours) == 1:
                return None
            if not want and not ours:
                return None
            wanted = [*others, {"key": key, "effect": effect}] if want else others
            return {"spec": {"taints": wanted or None}}

        try:
            result = await self.writer.modify(node_path(self.node_name), change)
        except KubeError as err:
            report.errors.append(f"taint: {err}")
            log.warning("node taint not reconciled", node=self.node_name, error=str(err))
            return
        self._taint_present = want
        self._taint_checked_at = now
        self.metrics.taint_set.set(1 if want else 0)
        if result.written:
            report.taint = "added" if want else "removed"
            self._event(
                self._node_ref,
                NORMAL,
                REASON_TAINT_ADDED if want else REASON_TAINT_REMOVED,
                f"{'added' if want else 'removed'} taint {key}:{effect}: the CNI chain is "
                + ("broken" if want else "healthy"),
            )

    # -- pods -----------------------------------------------------------------------------------------------

    async def _reconcile_pod(self, finding: PodFinding, broken: bool, now: float, report: Report) -> None:
        memory = self._pods.get(finding.uid)
        previous = memory.state if memory is not None else None
        if memory is None:
            memory = self._pods[finding.uid] = _PodMemory(finding.state)
        memory.state = finding.state
        bad = finding.state in BAD_STATES
        if bad:
            if memory.bad_since is None or previous not in BAD_STATES:
                memory.bad_since = now
        elif finding.state is CaptureState.CAPTURED:
            memory.bad_since = None
        ref = ObjectReference.pod(finding.namespace, finding.name, finding.uid)

        if bad and (
            previous != finding.state
            or memory.event_at is None
            or now - memory.event_at >= self.settings.event_repeat_interval
        ):
            memory.event_at = now
            reason = REASON_NOT_CAPTURED if finding.state is CaptureState.MISSING else REASON_CAPTURE_PARTIAL
            self._event(ref, WARNING, reason, finding.message or f"traffic capture {finding.state.value}")
        if finding.state is CaptureState.CAPTURED and previous in BAD_STATES:
            memory.event_at = None
            self._event(ref, NORMAL, REASON_CAPTURE_RESTORED, "traffic capture rules are in place again")

        deleting = bad and self.settings.delete and finding.state in self.settings.delete_states
        if deleting and await self._maybe_delete(finding, memory, broken, now, report):
            return
        if self.settings.label and finding.state is not CaptureState.UNKNOWN:
            await self._reconcile_label(finding, memory, bad, now, report)

    def _resource_version(self, finding: PodFinding, memory: _PodMemory) -> str:
        """The finding's resourceVersion, or the one our own label write turned it into (same judged state)."""
        if memory.wrote is not None and memory.wrote[0] == finding.resource_version:
            return memory.wrote[1]
        return finding.resource_version

    async def _reconcile_label(
        self, finding: PodFinding, memory: _PodMemory, bad: bool, now: float, report: Report
    ) -> None:
        key = self.settings.label_key
        has = finding.labels.get(key) == "true"
        if has == bad:
            return
        if memory.wrote is not None and memory.wrote[0] == finding.resource_version and memory.labeled == bad:
            return  # the finding predates our own write, which already did this
        if not self._label_writes.try_take(now):
            report.errors.append(f"label {finding}: rate limited")
            return
        rv = self._resource_version(finding, memory)
        patch = {"metadata": {"resourceVersion": rv, "labels": {key: "true" if bad else None}}}
        try:
            stored = await self.writer.patch(pod_path(finding.namespace, finding.name), patch, PatchType.MERGE)
        except KubeError as err:
            result = _result(err)
            self.metrics.repair_pods.labels(type="label", result=result).inc()
            if result == "error":
                report.errors.append(f"label {finding}: {err}")
            return
        new_rv = (stored.get("metadata") or {}).get("resourceVersion")
        if isinstance(new_rv, str):
            memory.wrote = (finding.resource_version, new_rv)
            memory.labeled = bad
        self.metrics.repair_pods.labels(type="label", result="success").inc()
        (report.labeled if bad else report.unlabeled).append(str(finding))

    async def _maybe_delete(
        self, finding: PodFinding, memory: _PodMemory, broken: bool, now: float, report: Report
    ) -> bool:
        """Delete the pod if it is due and allowed; True when it was deleted (or is already going)."""
        if finding.terminating:
            return True
        since = memory.bad_since if memory.bad_since is not None else now
        if now - since < self.settings.delete_after:
            return False
        hold = ""
        if broken:
            hold = "the node's CNI configuration is broken"
        elif not finding.owner_kind and not self.settings.delete_unowned:
            hold = "bare pod (no controller would recreate it)"
        elif self._capped(now):
            hold = f"cap of {self.settings.delete_cap} deletions per {self.settings.delete_cap_window:g} s reached"
        elif not self._deletions.try_take(now):
            hold = "rate limited"
        if hold:
            report.held[str(finding)] = hold
            return False
        rv = self._resource_version(finding, memory)
        try:
            await self.writer.delete(
                pod_path(finding.namespace, finding.name),
                uid=finding.uid,
                resource_version=rv,
                grace_period_seconds=self.settings.delete_grace_seconds,
            )
        except KubeError as err:
            result = _result(err)
            self.metrics.repair_pods.labels(type="delete", result=result).inc()
            report.held[str(finding)] = f"delete: {result}"
            if result == "error":
                report.errors.append(f"delete {finding}: {err}")
            return False
        self._deleted_at.append(now)
        self.metrics.repair_pods.labels(type="delete", result="success").inc()
        report.deleted.append(str(finding))
        self._event(
            ObjectReference.pod(finding.namespace, finding.name, finding.uid),
            WARNING,
            REASON_POD_DELETED,
            f"deleted so that it is recreated with its traffic captured (capture {finding.state.value})",
        )
        return True

    def _capped(self, now: float) -> bool:
        window = self.settings.delete_cap_window
        while self._deleted_at and now - self._deleted_at[0] >= window:
            self._deleted_at.popleft()
        if len(self._deleted_at) < self.settings.delete_cap:
            return False
        if self._cap_reported_at is None or now - self._cap_reported_at >= window:
            self._cap_reported_at = now
            self._event(
                self._node_ref,
                WARNING,
                REASON_REPAIR_LIMIT,
                f"{len(self._deleted_at)} pods deleted for repair within {window:g} s: further deletions wait",
            )
        return True


def _result(err: KubeError) -> str:
    """The `result` label of a failed pod write."""
    if isinstance(err, Conflict):
        return "precondition_failed" if err.precondition_failed else "conflict"
    if isinstance(err, NotFound):
        return "not_found"
    return "error"
