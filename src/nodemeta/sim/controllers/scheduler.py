"""The default scheduler: binds pending pods to nodes through the pods/binding subresource.

Filtering follows kube-scheduler's default plugins in their order, and an unschedulable pod is told why the way
kube-scheduler tells it (PodScheduled=False, reason Unschedulable, "0/N nodes are available: ..."):

* NodeUnschedulable: a cordoned node (`spec.unschedulable`) only takes pods tolerating
  `node.kubernetes.io/unschedulable:NoSchedule`;
* TaintToleration: every NoSchedule and NoExecute taint must be tolerated. A node whose Ready condition is not
  True counts as carrying the `not-ready`/`unreachable` NoSchedule taint the node-lifecycle controller would
  give it, so NotReady nodes are avoided even when that controller is not running;
* NodeAffinity: `nodeSelector` and required node affinity, including `matchFields` on `metadata.name`, which is
  how DaemonSet pods are pinned to their node;
* the node's pod capacity (`status.allocatable.pods`).

Scoring is reduced to spreading: the feasible node with the fewest pods wins, ties broken by node name in natural
order (node-2 before node-10). Resource requests, inter-pod affinity, topology spread constraints, preferred
affinity and preemption are not modelled.

Pod counts per node and the nodes ordered by count are kept in memory from watch changes, so placing a pod costs
O(log nodes) when the least-loaded node fits and a pod pinned to a few nodes is placed without walking the rest.
Only a pod that fits nowhere costs a pass over every node, to explain why.
"""

from __future__ import annotations

import contextlib
import re
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

from sortedcontainers import SortedList

from nodemeta.sim.controllers import affinity
from nodemeta.sim.controllers.base import Controller, Factory, Requeue
from nodemeta.sim.controllers.nodes import (
    EVENT_NAMES,
    NODES,
    NOT_READY,
    PODS,
    TERMINAL_PHASES,
    UNREACHABLE,
    UNSCHEDULABLE,
    object_reference,
    ready_status,
    resource,
    tolerates,
    with_condition,
    write_pod_status,
)
from nodemeta.sim.errors import APIError
from nodemeta.sim.registry import Registry, rfc3339_micro
from nodemeta.sim.resources import JSON
from nodemeta.sim.settings import SimSettings
from nodemeta.sim.store import DELETED, Change, Stored

SCHEDULER_NAME = "default-scheduler"
REPORTING_INSTANCE = "default-scheduler-control-plane"
EVENTS_V1 = resource("events.k8s.io", "v1", "events")
# kubelet's default --max-pods, for nodes that do not state `status.allocatable.pods`.
DEFAULT_POD_CAPACITY = 110
# A nodeSelector or pinned-name set this small (or under a quarter of the nodes) is scanned directly instead of
# walking the nodes in load order past the ones it excludes.
_SMALL_CANDIDATE_SET = 64
_UNSCHEDULABLE_TAINT = {"key": UNSCHEDULABLE, "effect": "NoSchedule"}


@dataclass(frozen=True, slots=True)
class _Node:
    """A node as the scheduler's cache sees it: only what filtering reads."""

    name: str
    rank: tuple[str | int, ...]
    labels: Mapping[str, str]
    taints: tuple[JSON, ...]
    unschedulable: bool
    capacity: int


@dataclass(frozen=True, slots=True)
class _Attempt:
    """The last failed attempt for a pod: retrying is pointless until the pod or some node changes."""

    pod_rv: int
    node_epoch: int
    message: str


def _natural(name: str) -> tuple[str | int, ...]:
    """Sort key putting node-2 before node-10: digit runs compare as numbers (always at odd positions)."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", name)))


def _node_from(obj: JSON) -> _Node:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    taints = [t for t in spec.get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")]
    ready = ready_status(obj)
    if ready != "True":
        implied = NOT_READY if ready == "False" else UNREACHABLE
        if not any(t.get("key") == implied and t.get("effect") == "NoSchedule" for t in taints):
            taints.append({"key": implied, "effect": "NoSchedule"})
    try:
        capacity = int(((obj.get("status") or {}).get("allocatable") or {}).get("pods") or DEFAULT_POD_CAPACITY)
    except (TypeError, ValueError):
        capacity = DEFAULT_POD_CAPACITY
    name = str(meta.get("name"))
    return _Node(name, _natural(name), dict(meta.get("labels") or {}), tuple(taints),
                 bool(spec.get("unschedulable")), capacity)  # fmt: skip


def _pending(pod: Stored) -> bool:
    """Unbound, not finished, and ours to schedule (a pod naming another scheduler is left to it)."""
    return (
        not pod.field("spec.nodeName")
        and pod.field("status.phase") not in TERMINAL_PHASES
        and pod.field("spec.schedulerName") in (SCHEDULER_NAME, "")
    )


def _counted_node(pod: Stored | None) -> str:
    """The node a pod occupies: its node while it is not terminal (the scheduler's cache drops finished pods)."""
    if pod is None or pod.field("status.phase") in TERMINAL_PHASES:
        return ""
    return pod.field("spec.nodeName")


def _affinity_matches(spec: JSON, node: _Node) -> bool:
    """nodeSelector AND required node affinity (whose terms are ORed)."""
    for key, value in (spec.get("nodeSelector") or {}).items():
        if node.labels.get(key) != value:
            return False
    terms = affinity.required_terms(spec)
    return terms is None or any(affinity.term_matches(term, node.name, node.labels) for term in terms)


def _pinned_names(spec: JSON) -> set[str] | None:
    """The only node names required affinity allows, when every term names them (`metadata.name In [...]`)."""
    terms = affinity.required_terms(spec)
    if not terms:
        return None
    names: set[str] = set()
    for term in terms:
        fields = term.get("matchFields") or []
        pins = [f for f in fields if f.get("key") == "metadata.name" and f.get("operator") == "In"]
        if not pins:
            return None
        names.update(str(v) for v in pins[0].get("values") or [])
    return names


class Scheduler(Controller):
    """Keys are pod keys ("namespace/name"); node changes requeue the pods that did not fit anywhere."""

    name = "scheduler"
    watches = ("pods", "nodes")

    def __init__(self, registry: Registry, settings: SimSettings) -> None:
        super().__init__(registry, settings)
        self._nodes: dict[str, _Node] = {}
        # Non-terminal pods bound to each node name, including names with no Node (yet).
        self._load: dict[str, int] = {}
        # (load, rank, name) of every node: the least-loaded candidates come first.
        self._order: SortedList = SortedList()
        self._by_label: dict[tuple[str, str], set[str]] = {}
        self._unschedulable: dict[str, _Attempt] = {}
        # Bumped on every node change that may let a waiting pod fit.
        self._epoch = 0

    # -- cache --------------------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[Hashable]:
        self._nodes.clear()
        self._load.clear()
        self._order.clear()
        self._by_label.clear()
        self._unschedulable.clear()
        pending: list[Hashable] = []
        for pod in self.registry.iter_objects(PODS):
            node = _counted_node(pod)
            if node:
                self._load[node] = self._load.get(node, 0) + 1
            elif _pending(pod):
                pending.append(pod.key)
        for stored in self.registry.iter_objects(NODES):
            self._insert(_node_from(stored.decode()))
        return pending

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == "nodes":
            return self._node_changed(change)
        return self._pod_changed(change)

    def _node_changed(self, change: Change) -> list[Hashable]:
        old = self._nodes.get(change.key)
        if change.type == DELETED:
            if old is not None:
                self._remove(old)
            return []
        new = _node_from(change.obj.decode())
        if new == old:
            return []
        if old is not None:
            self._remove(old)
        self._insert(new)
        self._epoch += 1
        return list(self._unschedulable)

    def _pod_changed(self, change: Change) -> list[Hashable]:
        retry: list[Hashable] = []
        before = _counted_node(change.prev)
        after = _counted_node(change.obj) if change.type != DELETED else ""
        if before != after:
            if self._add_load(before, -1) and self._unschedulable:
                # A full node has room again: pods that found every node full may fit now.
                self._epoch += 1
                retry = list(self._unschedulable)
            self._add_load(after, 1)
        if change.type != DELETED and _pending(change.obj):
            return [change.key, *retry]
        self._unschedulable.pop(change.key, None)
        return retry

    def _insert(self, node: _Node) -> None:
        self._nodes[node.name] = node
        self._order.add((self._load.get(node.name, 0), node.rank, node.name))
        for pair in node.labels.items():
            self._by_label.setdefault(pair, set()).add(node.name)

    def _remove(self, node: _Node) -> None:
        del self._nodes[node.name]
        self._order.remove((self._load.get(node.name, 0), node.rank, node.name))
        for pair in node.labels.items():
            names = self._by_label.get(pair)
            if names is not None:
                names.discard(node.name)
                if not names:
                    del self._by_label[pair]

    def _add_load(self, name: str, delta: int) -> bool:
        """Adjust a node's pod count; True when this frees room on a node that was full."""
        if not name:
            return False
        old = self._load.get(name, 0)
        new = max(0, old + delta)
        if new:
            self._load[name] = new
        else:
            self._load.pop(name, None)
        node = self._nodes.get(name)
        if node is None:
            return False
        self._order.remove((old, node.rank, name))
        self._order.add((new, node.rank, name))
        return delta < 0 and old >= node.capacity

    # -- scheduling ---------------------------------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> Requeue | None:
        assert isinstance(key, str)
        stored = self.registry.bucket(PODS).get(key)
        if stored is None or not _pending(stored):
            self._unschedulable.pop(key, None)
            return None
        attempt = self._unschedulable.get(key)
        if attempt is not None and attempt.pod_rv == stored.rv and attempt.node_epoch == self._epoch:
            return None
        pod = stored.decode()
        if pod["metadata"].get("deletionTimestamp"):
            return None
        spec = pod.get("spec") or {}
        node = self._select(spec)
        if node is None:
            self._report_unschedulable(stored, pod, spec, attempt)
            return None
        self._bind(stored, node)
        self._unschedulable.pop(key, None)
        return None

    def _select(self, spec: JSON) -> str | None:
        candidates = self._candidates(spec)
        if candidates is not None:
            best: tuple[tuple[int, tuple[str | int, ...]], str] | None = None
            for name in candidates:
                node = self._nodes.get(name)
                if node is None or self._misfit(spec, node) is not None:
                    continue
                rank = (self._load.get(name, 0), node.rank)
                if best is None or rank < best[0]:
                    best = (rank, name)
            return best[1] if best is not None else None
        for _load, _rank, name in self._order:
            if self._misfit(spec, self._nodes[name]) is None:
                return str(name)
        return None

    def _candidates(self, spec: JSON) -> set[str] | None:
        """A small superset of the nodes the pod's affinity allows, or None to walk every node in load order."""
        sets: list[set[str]] = []
        pinned = _pinned_names(spec)
        if pinned is not None:
            sets.append(pinned)
        for pair in (spec.get("nodeSelector") or {}).items():
            sets.append(self._by_label.get(pair, set()))
        if not sets:
            return None
        smallest = min(sets, key=len)
        if len(smallest) > max(_SMALL_CANDIDATE_SET, len(self._nodes) // 4):
            return None
        return smallest

    def _misfit(self, spec: JSON, node: _Node) -> str | None:
        """Why the pod cannot go to `node` (the first failing filter's reason), or None if it fits."""
        tolerations = spec.get("tolerations") or []
        if node.unschedulable and not tolerates(tolerations, _UNSCHEDULABLE_TAINT):
            return "node(s) were unschedulable"
        for taint in node.taints:
            if not tolerates(tolerations, taint):
                return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"
        if not _affinity_matches(spec, node):
            return "node(s) didn't match Pod's node affinity/selector"
        if self._load.get(node.name, 0) >= node.capacity:
            return "Too many pods"
        return None

    def _diagnosis(self, spec: JSON) -> str:
        total = len(self._nodes)
        if not total:
            return "no nodes available to schedule pods"
        reasons = Counter(self._misfit(spec, node) for node in self._nodes.values())
        parts = sorted(f"{count} {reason}" for reason, count in reasons.items() if reason)
        return (
            f"0/{total} nodes are available: {', '.join(parts)}. "
            f"preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
        )

    def _bind(self, stored: Stored, node: str) -> None:
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": stored.name, "namespace": stored.namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        self.registry.bind(PODS, stored.namespace, stored.name, binding)
        if self.settings.component_events:
            note = f"Successfully assigned {stored.namespace}/{stored.name} to {node}"
            self._event(stored, "Normal", "Scheduled", "Binding", note)

    def _report_unschedulable(self, stored: Stored, pod: JSON, spec: JSON, attempt: _Attempt | None) -> None:
        message = self._diagnosis(spec)
        status = dict(pod.get("status") or {})
        status["conditions"] = with_condition(
            list(status.get("conditions") or []), "PodScheduled", "False", self.registry.clock(),
            "Unschedulable", message,
        )  # fmt: skip
        written = write_pod_status(self.registry, stored, status)
        if self.settings.component_events and (attempt is None or attempt.message != message):
            self._event(written, "Warning", "FailedScheduling", "Scheduling", message)
        self._unschedulable[stored.key] = _Attempt(written.rv, self._epoch, message)

    def _event(self, pod: Stored, kind: str, reason: str, action: str, note: str) -> None:
        """An events.k8s.io/v1 Event, as kube-scheduler's new-style recorder writes it (best effort)."""
        now = self.registry.clock()
        body = {
            "metadata": {"name": EVENT_NAMES.next(pod.name, now), "namespace": pod.namespace},
            "eventTime": rfc3339_micro(now),
            "reportingController": SCHEDULER_NAME,
            "reportingInstance": REPORTING_INSTANCE,
            "action": action,
            "reason": reason,
            "regarding": object_reference("Pod", pod),
            "note": note,
            "type": kind,
        }
        # Dropped when refused (e.g. its namespace is terminating), as the real recorder drops 4xx answers.
        with contextlib.suppress(APIError):
            self.registry.create(EVENTS_V1, pod.namespace, body, field_validation="Ignore")


def _scheduler(registry: Registry, settings: SimSettings) -> Controller:
    return Scheduler(registry, settings)


CONTROLLERS: dict[str, Factory] = {"scheduler": _scheduler}
