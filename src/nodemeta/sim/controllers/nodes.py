"""Node lifecycle: condition taints, taint-based eviction and the orphan sweep of the pod garbage collector.

Plays three parts of kube-controller-manager:

* the node-lifecycle controller: a node whose Ready condition is False gets `node.kubernetes.io/not-ready`
  taints, one whose Ready is Unknown (its kubelet stopped posting status) gets `node.kubernetes.io/unreachable`
  taints, both as NoSchedule and NoExecute with `timeAdded`; a cordoned node (`spec.unschedulable`) gets
  `node.kubernetes.io/unschedulable:NoSchedule`. Pods on an unreachable node are marked not Ready;
* the taint-eviction controller: pods that do not tolerate a NoExecute taint of their node are deleted, at once
  or after the shortest `tolerationSeconds` of the tolerations that matched;
* the pod GC's orphan sweep: pods bound to a node that does not exist are marked Failed and force-deleted once the
  node has been missing for a quarantine period.

The module also holds what the scheduler and kubelet share about nodes (readiness, taints, tolerations, pod
conditions, core/v1 Events) and `set_node_ready`, the way tests and churn drivers make a node NotReady.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import structlog

from nodemeta.sim.controllers.base import Controller, Factory, Requeue
from nodemeta.sim.errors import APIError
from nodemeta.sim.registry import DeleteOptions, Registry, rfc3339
from nodemeta.sim.resources import JSON, ResourceType, lookup
from nodemeta.sim.settings import SimSettings
from nodemeta.sim.store import DELETED, Change, Stored

log = structlog.get_logger("nodemeta.sim.controllers.nodes")

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
# The taint keys this controller owns: it adds and removes them, and leaves every other taint alone.
_CONDITION_TAINT_KEYS = frozenset({NOT_READY, UNREACHABLE, UNSCHEDULABLE})
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def resource(group: str, version: str, plural: str) -> ResourceType:
    found = lookup(group, version, plural)
    if found is None:
        raise LookupError(f"{plural}.{group}/{version} is not served")
    return found


PODS = resource("", "v1", "pods")
NODES = resource("", "v1", "nodes")
EVENTS = resource("", "v1", "events")


# -- shared node and pod helpers -------------------------------------------------------------------------------


def ready_status(node: JSON) -> str:
    """The node's Ready condition status; a node that never posted one counts as Unknown, as the real
    controller marks it once the grace period for a first heartbeat has passed."""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status") or "Unknown")
    return "Unknown"


def toleration_matches(toleration: JSON, taint: JSON) -> bool:
    """v1.Toleration.ToleratesTaint: an empty effect or key is a wildcard (the key one only with Exists)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key and key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    if not key:
        return False
    return (toleration.get("value") or "") == (taint.get("value") or "")


def tolerates(tolerations: Iterable[JSON], taint: JSON) -> bool:
    return any(toleration_matches(t, taint) for t in tolerations)


def with_condition(
    conditions: list[JSON], kind: str, status: str, now: float, reason: str = "", message: str = ""
) -> list[JSON]:
    """`conditions` with condition `kind` set; lastTransitionTime moves only when the status does."""
    previous = next((c for c in conditions if c.get("type") == kind), None)
    since = rfc3339(now)
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        since = previous["lastTransitionTime"]
    condition: JSON = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    if previous is None:
        return [*conditions, condition]
    return [condition if c is previous else c for c in conditions]


def condition_status(obj: JSON, kind: str) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status") or "")
    return ""


def write_pod_status(registry: Registry, stored: Stored, status: JSON) -> Stored:
    """PUT pods/<name>/status against the revision that was read, so a concurrent writer gets a 409."""
    body = {"metadata": {"resourceVersion": str(stored.rv)}, "status": status}
    result = registry.update(PODS, stored.namespace, stored.name, body, subresource="status", field_validation="Ignore")
    return result.stored


def object_reference(kind: str, stored: Stored, api_version: str = "v1", field_path: str = "") -> JSON:
    """An ObjectReference as client-go's `GetReference` builds it for an event's subject."""
    ref: JSON = {"kind": kind, "namespace": stored.namespace, "name": stored.name, "uid": stored.uid,
                 "apiVersion": api_version, "resourceVersion": str(stored.rv)}  # fmt: skip
    if not stored.namespace:
        del ref["namespace"]
    if field_path:
        ref["fieldPath"] = field_path
    return ref


class _EventNames:
    """Event names are `<subject>.<hex unix nanos>` (client-go's recorders); nanos are kept strictly increasing
    within the process so two events in the same clock tick never collide."""

    def __init__(self) -> None:
        self.last = 0

    def next(self, subject: str, now: float) -> str:
        self.last = max(int(now * 1_000_000_000), self.last + 1)
        return f"{subject}.{self.last:x}"


EVENT_NAMES = _EventNames()


def record_event(
    registry: Registry,
    regarding: JSON,
    *,
    reason: str,
    message: str,
    component: str,
    host: str = "",
    kind: str = "Normal",
) -> None:
    """A core/v1 Event as client-go's legacy recorder writes it (kubelet, node controllers).

    Events are best effort: a namespace being deleted refuses new objects, and the real recorder drops events on a
    4xx answer rather than retrying, so errors are logged and swallowed here too.
    """
    now = registry.clock()
    stamp = rfc3339(now)
    namespace = regarding.get("namespace") or "default"
    source: JSON = {"component": component}
    if host:
        source["host"] = host
    body: JSON = {
        "metadata": {"name": EVENT_NAMES.next(str(regarding.get("name")), now), "namespace": namespace},
        "involvedObject": regarding,
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "type": kind,
        "eventTime": None,
        "reportingComponent": component,
        "reportingInstance": host,
    }
    try:
        registry.create(EVENTS, namespace, body, field_validation="Ignore")
    except APIError as err:
        log.debug("event dropped", reason=reason, code=err.code, error=err.message)


# -- making nodes NotReady and Ready again ---------------------------------------------------------------------

_KUBELET_CONDITIONS = {
    "MemoryPressure": ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    "DiskPressure": ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    "PIDPressure": ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
}
_READY_REASONS = {
    "True": ("KubeletReady", "kubelet is posting ready status"),
    "False": ("KubeletNotReady", "container runtime network not ready: NetworkReady=false"),
    "Unknown": ("NodeStatusUnknown", "Kubelet stopped posting node status."),
}


def set_node_ready(registry: Registry, name: str, status: str = "True") -> Stored:
    """Set node `name`'s Ready condition to True, False or Unknown through nodes/<name>/status.

    "False" is what a running kubelet reports when the node is unhealthy; "Unknown" is what the node-lifecycle
    controller writes when a kubelet stops heartbeating, and it turns the pressure conditions Unknown as well.
    The simulated kubelet treats an Unknown node as gone: it starts, stops and heartbeats nothing there until
    the node is Ready again.
    """
    if status not in _READY_REASONS:
        raise ValueError(f"Ready status must be True, False or Unknown, not {status!r}")
    stored = registry.get(NODES, "", name)
    node = stored.decode()
    now = registry.clock()
    stamp = rfc3339(now)
    conditions: list[JSON] = list((node.get("status") or {}).get("conditions") or [])
    for kind, (reason, message) in _KUBELET_CONDITIONS.items():
        if status == "Unknown":
            reason, message = _READY_REASONS["Unknown"]
        conditions = _node_condition(conditions, kind, "Unknown" if status == "Unknown" else "False", reason, message,
                                     stamp)  # fmt: skip
    reason, message = _READY_REASONS[status]
    conditions = _node_condition(conditions, "Ready", status, reason, message, stamp)
    node_status = dict(node.get("status") or {})
    node_status["conditions"] = conditions
    body = {"metadata": {"resourceVersion": str(stored.rv)}, "status": node_status}
    return registry.update(NODES, "", name, body, subresource="status", field_validation="Ignore").stored


def _node_condition(
    conditions: list[JSON], kind: str, status: str, reason: str, message: str, stamp: str
) -> list[JSON]:
    previous = next((c for c in conditions if c.get("type") == kind), None)
    since = stamp
    if previous is not None and previous.get("status") == status:
        since = previous.get("lastTransitionTime") or stamp
    condition = {"type": kind, "status": status, "lastHeartbeatTime": stamp, "lastTransitionTime": since,
                 "reason": reason, "message": message}  # fmt: skip
    if previous is None:
        return [*conditions, condition]
    return [condition if c is previous else c for c in conditions]


# -- the controller --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _NodeView:
    """What pod eviction needs to know about a node, kept in memory so pod changes need no node reads."""

    ready: str
    no_execute: tuple[JSON, ...]

    @property
    def evicting(self) -> bool:
        return bool(self.no_execute) or self.ready == "Unknown"


def _view(node: JSON) -> _NodeView:
    taints = (node.get("spec") or {}).get("taints") or []
    return _NodeView(ready_status(node), tuple(t for t in taints if t.get("effect") == "NoExecute"))


def desired_taints(node: JSON, now: float) -> list[JSON]:
    """The node's taints with the condition taints made to match its Ready condition and `spec.unschedulable`.

    Taints this controller does not own are kept in place; owned taints that are still wanted keep their
    `timeAdded`, so eviction deadlines do not move when the node is reconciled again.
    """
    spec = node.get("spec") or {}
    current: list[JSON] = list(spec.get("taints") or [])
    wanted: list[tuple[str, str]] = []
    ready = ready_status(node)
    if ready != "True":
        key = NOT_READY if ready == "False" else UNREACHABLE
        wanted += [(key, "NoSchedule"), (key, "NoExecute")]
    if spec.get("unschedulable"):
        wanted.append((UNSCHEDULABLE, "NoSchedule"))
    kept = [t for t in current if t.get("key") not in _CONDITION_TAINT_KEYS or (t["key"], t.get("effect")) in wanted]
    have = {(t.get("key"), t.get("effect")) for t in kept}
    for key, effect in wanted:
        if (key, effect) not in have:
            taint: JSON = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = rfc3339(now)
            kept.append(taint)
    return kept


def eviction_time(tolerations: list[JSON], taints: Iterable[JSON], since: float) -> float | None:
    """When a pod must leave a node with these NoExecute taints, tainted since `since`: None if never.

    As the taint-eviction controller: every taint must be matched by some toleration or the pod goes now; the
    pod may otherwise stay for the shortest `tolerationSeconds` among the tolerations used (the first matching
    one per taint); tolerations without seconds tolerate forever. Like the real controller, the clock starts
    when the pod is first seen on the tainted node, not at the taint's `timeAdded`.
    """
    shortest: float | None = None
    for taint in taints:
        used = next((t for t in tolerations if toleration_matches(t, taint)), None)
        if used is None:
            return since
        seconds = used.get("tolerationSeconds")
        if seconds is not None:
            shortest = float(seconds) if shortest is None else min(shortest, float(seconds))
    if shortest is None:
        return None
    return since + max(0.0, shortest)


class NodeLifecycle(Controller):
    """Keys: ("node", name) reconciles a node's taints; ("pod", key) evicts or collects one pod."""

    name = "nodelifecycle"
    watches = ("nodes", "pods")

    def __init__(self, registry: Registry, settings: SimSettings, *, quarantine: float | None = None) -> None:
        super().__init__(registry, settings)
        self.quarantine = settings.pod_gc_quarantine_seconds if quarantine is None else quarantine
        self._nodes: dict[str, _NodeView] = {}
        self._pods_on: dict[str, set[str]] = {}
        # When each missing node name was first seen missing: the start of its pods' quarantine.
        self._missing_since: dict[str, float] = {}
        # When each pod was first seen on a node with NoExecute taints: the start of its toleration period.
        self._first_seen: dict[str, float] = {}

    # -- indexes ------------------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[Hashable]:
        self._nodes.clear()
        self._pods_on.clear()
        keys: list[Hashable] = []
        for node in self.registry.iter_objects(NODES):
            self._nodes[node.name] = _view(node.decode())
            keys.append(("node", node.name))
        for pod in self.registry.iter_objects(PODS):
            node_name = pod.field("spec.nodeName")
            if node_name:
                self._pods_on.setdefault(node_name, set()).add(pod.key)
                view = self._nodes.get(node_name)
                if view is None or view.evicting:
                    keys.append(("pod", pod.key))
        return keys

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == "nodes":
            return self._node_changed(change)
        return self._pod_changed(change)

    def _node_changed(self, change: Change) -> list[Hashable]:
        name = change.key
        if change.type == DELETED:
            self._nodes.pop(name, None)
            self._missing_since[name] = self.registry.clock()
            return [("pod", key) for key in self._pods_on.get(name, ())]
        view = _view(change.obj.decode())
        old = self._nodes.get(name)
        self._nodes[name] = view
        self._missing_since.pop(name, None)
        keys: list[Hashable] = [("node", name)]
        if old is None or old != view:
            keys += [("pod", key) for key in self._pods_on.get(name, ())]
        return keys

    def _pod_changed(self, change: Change) -> list[Hashable]:
        old_node = change.prev.field("spec.nodeName") if change.prev is not None else ""
        new_node = change.obj.field("spec.nodeName") if change.type != DELETED else ""
        if old_node != new_node:
            self._unindex(old_node, change.key)
            if new_node:
                self._pods_on.setdefault(new_node, set()).add(change.key)
        if change.type == DELETED:
            self._first_seen.pop(change.key, None)
            return []
        view = self._nodes.get(new_node)
        if new_node and (view is None or view.evicting):
            return [("pod", change.key)]
        return []

    def _unindex(self, node: str, key: str) -> None:
        keys = self._pods_on.get(node)
        if keys is None:
            return
        keys.discard(key)
        if not keys:
            del self._pods_on[node]
            if node not in self._nodes:
                self._missing_since.pop(node, None)

    # -- reconcile ----------------------------------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> Requeue | None:
        assert isinstance(key, tuple)
        kind, name = key
        if kind == "node":
            self._reconcile_node(name)
            return None
        return self._reconcile_pod(name)

    def _reconcile_node(self, name: str) -> None:
        stored = self.registry.find("nodes", "", name)
        if stored is None:
            return
        node = stored.decode()
        spec = node.setdefault("spec", {})
        taints = desired_taints(node, self.registry.clock())
        if taints == (spec.get("taints") or []):
            return
        if taints:
            spec["taints"] = taints
        else:
            spec.pop("taints", None)
        self.registry.update(NODES, "", name, node, field_validation="Ignore")

    def _reconcile_pod(self, key: str) -> Requeue | None:
        stored = self.registry.bucket(PODS).get(key)
        if stored is None:
            return None
        node_name = stored.field("spec.nodeName")
        if not node_name:
            return None
        view = self._nodes.get(node_name)
        if view is None:
            return self._collect_orphan(stored, node_name)
        pod = stored.decode()
        if pod["metadata"].get("deletionTimestamp"):
            return None
        now = self.registry.clock()
        if view.ready == "Unknown":
            stored = self._mark_not_ready(stored, pod, now)
        if not view.no_execute:
            self._first_seen.pop(key, None)
            return None
        first_seen = self._first_seen.setdefault(key, now)
        due = eviction_time((pod.get("spec") or {}).get("tolerations") or [], view.no_execute, first_seen)
        if due is None:
            return None
        if due > now:
            return Requeue(after=due - now)
        self._evict(stored, pod, now)
        return None

    def _mark_not_ready(self, stored: Stored, pod: JSON, now: float) -> Stored:
        """What `MarkPodsNotReady` does for pods on an unreachable node, so Services stop sending them traffic."""
        status = dict(pod.get("status") or {})
        if status.get("phase") in TERMINAL_PHASES or condition_status(pod, "Ready") != "True":
            return stored
        status["conditions"] = with_condition(list(status.get("conditions") or []), "Ready", "False", now)
        return write_pod_status(self.registry, stored, status)

    def _evict(self, stored: Stored, pod: JSON, now: float) -> None:
        status = dict(pod.get("status") or {})
        if stored.field("status.phase") not in TERMINAL_PHASES:
            status["conditions"] = with_condition(
                list(status.get("conditions") or []), "DisruptionTarget", "True", now,
                "DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint",
            )  # fmt: skip
            stored = write_pod_status(self.registry, stored, status)
        if self.settings.component_events:
            record_event(
                self.registry, object_reference("Pod", stored), reason="TaintManagerEviction",
                message=f"Marking for deletion Pod {stored.namespace}/{stored.name}",
                component="taint-eviction-controller",
            )  # fmt: skip
        self.registry.delete(PODS, stored.namespace, stored.name, DeleteOptions(uid=stored.uid))

    def _collect_orphan(self, stored: Stored, node_name: str) -> Requeue | None:
        now = self.registry.clock()
        since = self._missing_since.setdefault(node_name, now)
        remaining = since + self.quarantine - now
        if remaining > 0:
            return Requeue(after=remaining)
        if stored.field("status.phase") not in TERMINAL_PHASES:
            pod = stored.decode()
            status = dict(pod.get("status") or {})
            status["phase"] = "Failed"
            status["conditions"] = with_condition(
                list(status.get("conditions") or []), "DisruptionTarget", "True", now,
                "DeletionByPodGC", "PodGC: node no longer exists",
            )  # fmt: skip
            stored = write_pod_status(self.registry, stored, status)
        self.registry.delete(PODS, stored.namespace, stored.name, DeleteOptions(grace_period=0, uid=stored.uid))
        return None


def _node_lifecycle(registry: Registry, settings: SimSettings) -> Controller:
    return NodeLifecycle(registry, settings)


CONTROLLERS: dict[str, Factory] = {"nodelifecycle": _node_lifecycle}
