"""The DaemonSet and StatefulSet controllers, as kube-controller-manager's daemon and statefulset controllers.

Both keep a ControllerRevision per pod template and label their pods with it, create pods WITHOUT a node (the
scheduler binds them), own them with a controller reference, and report progress in the status subresource the
way `kubectl rollout status` reads it.

DaemonSet: one pod per eligible node. A node is eligible when its labels pass the template's nodeSelector and
required node affinity and every NoSchedule/NoExecute taint is tolerated by the pod's tolerations plus the ones the
DaemonSet adds (not-ready, unreachable, pressure, unschedulable, network-unavailable for hostNetwork). A node whose
Ready condition is not True counts as carrying the not-ready/unreachable NoSchedule taint, as the scheduler treats
it. Pods are pinned with `matchFields metadata.name In [node]` and replaced node by node on a template change,
within maxUnavailable. Everything is tracked per (DaemonSet, node) "slot" whose contribution to the status counters
is kept current from watch changes, so a node or pod change costs work for that node only and the status is
written without listing anything.

StatefulSet: ordinal pods `<sts>-0..N-1` with stable names, hostname and subdomain, created in order under
OrderedReady (each waits for its predecessor to be Running and Ready) or all at once under Parallel; scale-down
removes the highest ordinals first; RollingUpdate replaces pods from the highest ordinal down to the partition, one
at a time. A StatefulSet's reconcile walks only its own pods, held in memory by owner uid.

Not modelled: adoption and release of pods by label selector (only pods created with a controller reference are
considered), maxSurge for DaemonSets (updates never surge), PersistentVolumeClaims (StatefulSet pods get the claim
volumes but no claim objects exist), StatefulSet maxUnavailable and `persistentVolumeClaimRetentionPolicy`, and the
controllers' Events.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

import orjson
import structlog

from nodemeta.sim.controllers import affinity, hashing
from nodemeta.sim.controllers.base import Controller, Factory, Requeue
from nodemeta.sim.controllers.nodes import (
    NODES,
    NOT_READY,
    PODS,
    TERMINAL_PHASES,
    UNREACHABLE,
    UNSCHEDULABLE,
    ready_status,
    resource,
    tolerates,
)
from nodemeta.sim.errors import APIError
from nodemeta.sim.registry import DeleteOptions, Registry
from nodemeta.sim.resources import JSON, ResourceType
from nodemeta.sim.settings import SimSettings
from nodemeta.sim.store import DELETED, Change, Stored, object_key

log = structlog.get_logger("nodemeta.sim.controllers.daemons")

DAEMONSETS = resource("apps", "v1", "daemonsets")
STATEFULSETS = resource("apps", "v1", "statefulsets")
REVISIONS = resource("apps", "v1", "controllerrevisions")

# Pod and revision labels (apps/v1 constants).
REVISION_HASH = "controller-revision-hash"
TEMPLATE_GENERATION = "pod-template-generation"
REVISION_NAME_HASH = "controller.kubernetes.io/hash"
POD_NAME = "statefulset.kubernetes.io/pod-name"
POD_INDEX = "apps.kubernetes.io/pod-index"

NO_SCHEDULE = "NoSchedule"
NO_EXECUTE = "NoExecute"
DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
PID_PRESSURE = "node.kubernetes.io/pid-pressure"
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
DEFAULT_HISTORY_LIMIT = 10

# Most pods belong to neither kind; checking the encoded bytes spares decoding them.
_DAEMONSET_MARK = b'"kind":"DaemonSet"'
_STATEFULSET_MARK = b'"kind":"StatefulSet"'


# -- shared helpers --------------------------------------------------------------------------------------------


def owner_reference(kind: str, name: str, uid: str) -> JSON:
    """metav1.NewControllerRef: the reference a controller puts on what it creates."""
    return {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": True,
            "blockOwnerDeletion": True}  # fmt: skip


def controller_ref(meta: JSON, kind: str) -> JSON | None:
    """The apps/v1 controller reference of `kind` in an object's metadata, if any."""
    for ref in meta.get("ownerReferences") or ():
        if (
            isinstance(ref, dict)
            and ref.get("controller") is True
            and ref.get("kind") == kind
            and str(ref.get("apiVersion") or "").startswith("apps/")
            and ref.get("uid")
        ):
            return ref
    return None


def parse_time(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def ready_since(status: JSON) -> float | None:
    """When the pod became Ready (0 when it does not say), or None while it is not Ready."""
    for condition in status.get("conditions") or ():
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            if condition.get("status") != "True":
                return None
            return parse_time(condition.get("lastTransitionTime")) or 0.0
    return None


def available_in(since: float | None, min_ready: int, now: float) -> float | None:
    """Seconds until a pod Ready since `since` counts as available: 0 if it does, None if it is not Ready."""
    if since is None:
        return None
    return max(0.0, since + min_ready - now) if min_ready > 0 else 0.0


def template_copy(raw: bytes) -> JSON:
    """A fresh, private pod template: every pod body gets its own dicts."""
    template: JSON = orjson.loads(raw)
    return template


def delete_pod(registry: Registry, namespace: str, name: str, uid: str, *, force: bool = False) -> None:
    """DELETE a pod with a UID precondition (a pod recreated under the same name is left alone)."""
    options = DeleteOptions(uid=uid, grace_period=0 if force else None)
    try:
        registry.delete(PODS, namespace, name, options)
    except APIError as err:
        if err.code not in (404, 409):
            raise


def write_status(registry: Registry, res: ResourceType, stored: Stored, status: JSON) -> None:
    """PUT <workload>/status against the revision read, so a concurrent writer gets a 409 and a retry."""
    body = {"metadata": {"name": stored.name, "resourceVersion": str(stored.rv)}, "status": status}
    registry.update(res, stored.namespace, stored.name, body, subresource="status", field_validation="Ignore")


# -- ControllerRevisions ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Revision:
    """What the controllers need of one ControllerRevision."""

    name: str
    number: int
    hash: str


class RevisionIndex:
    """ControllerRevisions by the uid of the workload controlling them, kept from watch changes."""

    def __init__(self, kind: str, hash_label: str) -> None:
        self.kind = kind
        self.hash_label = hash_label
        self.by_owner: dict[str, dict[str, Revision]] = {}
        self._owner_of: dict[str, str] = {}

    def clear(self) -> None:
        self.by_owner.clear()
        self._owner_of.clear()

    def observe(self, change: Change) -> set[str]:
        """Apply a change; returns the owner uids whose revisions changed."""
        owners: set[str] = set()
        old = self._owner_of.pop(change.key, None)
        if old is not None:
            owners.add(old)
            revisions = self.by_owner.get(old)
            if revisions is not None:
                revisions.pop(change.obj.name, None)
                if not revisions:
                    del self.by_owner[old]
        if change.type != DELETED:
            owner = self.add(change.obj)
            if owner is not None:
                owners.add(owner)
        return owners

    def add(self, stored: Stored) -> str | None:
        obj = stored.decode()
        ref = controller_ref(obj["metadata"], self.kind)
        if ref is None:
            return None
        owner = str(ref["uid"])
        try:
            number = int(obj.get("revision") or 0)
        except (TypeError, ValueError):
            number = 0
        revision = Revision(stored.name, number, stored.labels.get(self.hash_label, ""))
        self.by_owner.setdefault(owner, {})[stored.name] = revision
        self._owner_of[stored.key] = owner
        return owner

    def of(self, owner: str) -> dict[str, Revision]:
        return self.by_owner.get(owner, {})


def ensure_revision(
    registry: Registry, index: RevisionIndex, owner: Stored, kind: str, name: str, labels: JSON, data: JSON,
    annotations: JSON | None = None,
) -> Revision | None:  # fmt: skip
    """The revision named `name` holding `data`, created (or renumbered as the newest) as needed.

    None means a revision of that name holds other data: a hash collision, which the caller resolves by bumping
    status.collisionCount, as `history.CreateControllerRevision` callers do.
    """
    revisions = index.of(owner.uid)
    latest = max((r.number for r in revisions.values()), default=0)
    existing = registry.bucket(REVISIONS).get(object_key(owner.namespace, name))
    if existing is not None:
        obj = existing.decode()
        if obj.get("data") != data:
            return None
        number = int(obj.get("revision") or 0)
        if number < latest:
            # Rolling back to an older template makes its revision the newest again.
            body = {"metadata": {"resourceVersion": str(existing.rv)}, "revision": latest + 1}
            registry.patch(REVISIONS, owner.namespace, name, "merge", body)
            number = latest + 1
        return Revision(name, number, existing.labels.get(index.hash_label, ""))
    meta: JSON = {"name": name, "namespace": owner.namespace, "labels": labels,
                  "ownerReferences": [owner_reference(kind, owner.name, owner.uid)]}  # fmt: skip
    if annotations:
        meta["annotations"] = annotations
    body = {"metadata": meta, "data": data, "revision": latest + 1}
    stored = registry.create(REVISIONS, owner.namespace, body, field_validation="Ignore").stored
    return Revision(stored.name, latest + 1, labels.get(index.hash_label, ""))


def prune_history(
    registry: Registry, namespace: str, candidates: list[Revision], live: Callable[[Revision], bool], excess: int
) -> None:
    """Delete up to `excess` revisions that no live pod uses, oldest first."""
    for revision in sorted(candidates, key=lambda r: r.number):
        if excess <= 0:
            return
        if live(revision):
            continue
        try:
            registry.delete(REVISIONS, namespace, revision.name, DeleteOptions())
        except APIError as err:
            if err.code != 404:
                raise
        excess -= 1


# -- node placement ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node as DaemonSet placement sees it: labels and the taints that keep pods off it."""

    name: str
    labels: Mapping[str, str]
    taints: tuple[JSON, ...]


def node_view(stored: Stored) -> NodeView:
    node = stored.decode()
    spec = node.get("spec") or {}
    taints = [
        t for t in spec.get("taints") or () if isinstance(t, dict) and t.get("effect") in (NO_SCHEDULE, NO_EXECUTE)
    ]
    ready = ready_status(node)
    if ready != "True":
        implied = NOT_READY if ready == "False" else UNREACHABLE
        if not any(t.get("key") == implied and t.get("effect") == NO_SCHEDULE for t in taints):
            taints.append({"key": implied, "effect": NO_SCHEDULE})
    return NodeView(stored.name, dict(stored.labels), tuple(taints))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a DaemonSet's pods may run: nodeSelector, required node affinity and the pods' tolerations."""

    node_selector: Mapping[str, str]
    terms: tuple[JSON, ...] | None
    tolerations: tuple[JSON, ...]

    def decide(self, node: NodeView) -> tuple[bool, bool]:
        """(should run, may keep running): NodeShouldRunDaemonPod. An untolerated NoSchedule taint stops new pods
        but leaves a running one; an untolerated NoExecute taint or an affinity mismatch removes it."""
        if not self.selects(node):
            return False, False
        should_run = True
        for taint in node.taints:
            if not tolerates(self.tolerations, taint):
                if taint.get("effect") == NO_EXECUTE:
                    return False, False
                should_run = False
        return should_run, True

    def selects(self, node: NodeView) -> bool:
        if any(node.labels.get(key) != value for key, value in self.node_selector.items()):
            return False
        return self.terms is None or any(affinity.term_matches(term, node.name, node.labels) for term in self.terms)


def _daemon_tolerations(tolerations: Iterable[Any], host_network: bool) -> tuple[JSON, ...]:
    """The template's tolerations plus the ones the DaemonSet controller adds (AddOrUpdateDaemonPodTolerations):
    an existing toleration with the same key, operator, value and effect is replaced."""
    added = [
        {"key": NOT_READY, "operator": "Exists", "effect": NO_EXECUTE},
        {"key": UNREACHABLE, "operator": "Exists", "effect": NO_EXECUTE},
        {"key": DISK_PRESSURE, "operator": "Exists", "effect": NO_SCHEDULE},
        {"key": MEMORY_PRESSURE, "operator": "Exists", "effect": NO_SCHEDULE},
        {"key": PID_PRESSURE, "operator": "Exists", "effect": NO_SCHEDULE},
        {"key": UNSCHEDULABLE, "operator": "Exists", "effect": NO_SCHEDULE},
    ]
    if host_network:
        added.append({"key": NETWORK_UNAVAILABLE, "operator": "Exists", "effect": NO_SCHEDULE})
    result = [dict(t) for t in tolerations if isinstance(t, dict)]
    for toleration in added:
        for i, existing in enumerate(result):
            if _toleration_identity(existing) == _toleration_identity(toleration):
                result[i] = toleration
                break
        else:
            result.append(toleration)
    return tuple(result)


def _toleration_identity(toleration: JSON) -> tuple[str, str, str, str]:
    """v1.Toleration.MatchToleration: the fields that make two tolerations the same one."""
    return (
        str(toleration.get("key") or ""),
        str(toleration.get("operator") or "Equal"),
        str(toleration.get("value") or ""),
        str(toleration.get("effect") or ""),
    )


def pin_to_node(affinity: Any, node: str) -> JSON:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: every required term names the node by metadata.name."""
    requirement = {"key": "metadata.name", "operator": "In", "values": [node]}
    result = dict(affinity) if isinstance(affinity, dict) else {}
    node_affinity = dict(result.get("nodeAffinity") or {})
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = [t for t in required.get("nodeSelectorTerms") or () if isinstance(t, dict)]
    if terms:
        terms = [{**term, "matchFields": [dict(requirement)]} for term in terms]
    else:
        terms = [{"matchFields": [requirement]}]
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": terms}
    result["nodeAffinity"] = node_affinity
    return result


def target_node(spec: JSON) -> str:
    """util.GetTargetNodeName: the bound node, else the node the pod's affinity pins it to."""
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    for term in affinity.required_terms(spec) or ():
        for requirement in (term or {}).get("matchFields") or ():
            values = requirement.get("values") or []
            if requirement.get("key") == "metadata.name" and requirement.get("operator") == "In" and len(values) == 1:
                return str(values[0])
    return ""


def scaled(value: Any, total: int, default: int) -> int:
    """An IntOrString of `total`, percentages rounded up (GetScaledValueFromIntOrPercent with roundUp)."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            return math.ceil(int(value[:-1]) * total / 100)
        except ValueError:
            return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# -- DaemonSet ---------------------------------------------------------------------------------------------------

# Status counters, as contributions of one node.
DESIRED = "desired"
CURRENT = "current"
READY = "ready"
AVAILABLE = "available"
UPDATED = "updated"
MISSCHEDULED = "misscheduled"
UNAVAILABLE = "unavailable"
# A node's state in a rolling update: its old pod may go now (unavailable anyway) or within the budget.
REPLACE = "replace"
CANDIDATE = "candidate"


@dataclass(frozen=True, slots=True)
class DaemonSetView:
    """What the controller keeps of a DaemonSet between changes."""

    key: str
    uid: str
    namespace: str
    name: str
    generation: int
    hash: str
    template: bytes
    placement: Placement
    rolling: bool
    max_unavailable: Any
    min_ready: int
    history_limit: int
    deleting: bool


def daemonset_view(stored: Stored) -> DaemonSetView:
    ds = stored.decode()
    meta = ds["metadata"]
    spec = ds.get("spec") or {}
    status = ds.get("status") or {}
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    required = affinity.required_terms(pod_spec)
    terms = None if required is None else tuple(t for t in required if t)
    strategy = spec.get("updateStrategy") or {}
    collision = status.get("collisionCount")
    return DaemonSetView(
        key=stored.key,
        uid=stored.uid,
        namespace=stored.namespace,
        name=stored.name,
        generation=int(meta.get("generation") or 1),
        hash=hashing.compute_hash(template, collision if isinstance(collision, int) else None),
        template=orjson.dumps(template),
        placement=Placement(
            dict(pod_spec.get("nodeSelector") or {}),
            terms,
            _daemon_tolerations(pod_spec.get("tolerations") or (), bool(pod_spec.get("hostNetwork"))),
        ),
        rolling=(strategy.get("type") or "RollingUpdate") == "RollingUpdate",
        max_unavailable=(strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1),
        min_ready=int(spec.get("minReadySeconds") or 0),
        history_limit=int(spec.get("revisionHistoryLimit", DEFAULT_HISTORY_LIMIT) or 0),
        deleting=bool(meta.get("deletionTimestamp")),
    )


@dataclass(frozen=True, slots=True)
class DaemonPod:
    key: str
    name: str
    uid: str
    hash: str
    created: str
    ready_since: float | None
    terminating: bool
    phase: str

    @property
    def namespace(self) -> str:
        return self.key.partition("/")[0]

    @property
    def counted(self) -> bool:
        """Whether the pod occupies its node for the controller (a finished pod being deleted does not)."""
        return not (self.terminating and self.phase in TERMINAL_PHASES)


def daemon_pod(stored: Stored) -> tuple[str, str, DaemonPod] | None:
    """(DaemonSet uid, node, pod) for a pod a DaemonSet controls and has placed; None for any other pod."""
    if _DAEMONSET_MARK not in stored.body:
        return None
    pod = stored.decode()
    meta = pod["metadata"]
    ref = controller_ref(meta, "DaemonSet")
    if ref is None:
        return None
    node = target_node(pod.get("spec") or {})
    if not node:
        return None
    status = pod.get("status") or {}
    view = DaemonPod(
        key=stored.key,
        name=stored.name,
        uid=stored.uid,
        hash=stored.labels.get(REVISION_HASH, ""),
        created=str(meta.get("creationTimestamp") or ""),
        ready_since=ready_since(status),
        terminating=bool(meta.get("deletionTimestamp")),
        phase=str(status.get("phase") or ""),
    )
    return str(ref["uid"]), node, view


@dataclass(frozen=True, slots=True)
class Slot:
    """One DaemonSet on one node: what it adds to the status counters, its rolling-update state, whether pods must
    be created or deleted there, and when a Ready pod becomes available (minReadySeconds)."""

    counts: tuple[str, ...]
    rollout: str
    work: bool
    wake_in: float | None


def _oldest_first(pods: Iterable[DaemonPod]) -> list[DaemonPod]:
    return sorted(pods, key=lambda p: (p.created, p.name))


def _rollout_state(view: DaemonSetView, live: list[DaemonPod], now: float) -> str:
    """findUpdatedPodsOnNode and the cases of the rolling update's budget."""
    new = [p for p in live if p.hash == view.hash]
    old = [p for p in live if p.hash != view.hash]
    if len(new) > 1 or len(old) > 1 or bool(new) == bool(old):
        return UNAVAILABLE
    if new:
        return "" if available_in(new[0].ready_since, view.min_ready, now) == 0 else UNAVAILABLE
    return CANDIDATE if available_in(old[0].ready_since, view.min_ready, now) == 0 else REPLACE


def _needs_work(should_run: bool, may_continue: bool, occupied: bool, live: list[DaemonPod]) -> bool:
    """podsShouldBeOnNode: whether pods must be created or deleted on an existing node."""
    if should_run and not occupied:
        return True
    if not may_continue:
        return bool(live)
    return len(live) > 1 or any(p.phase == "Failed" for p in live)


def compute_slot(view: DaemonSetView, node: NodeView | None, pods: list[DaemonPod], now: float) -> Slot | None:
    if node is None and not pods:
        return None
    should_run, may_continue = view.placement.decide(node) if node is not None else (False, False)
    counted = _oldest_first(p for p in pods if p.counted)
    live = [p for p in pods if not p.terminating]
    counts: list[str] = []
    wake_in: float | None = None
    if node is not None and should_run:
        counts.append(DESIRED)
        if counted:
            primary = counted[0]
            counts.append(CURRENT)
            wait = available_in(primary.ready_since, view.min_ready, now)
            if wait is not None:
                counts.append(READY)
                if wait == 0:
                    counts.append(AVAILABLE)
                else:
                    wake_in = wait
            if primary.hash == view.hash:
                counts.append(UPDATED)
    elif node is not None and counted:
        counts.append(MISSCHEDULED)
    rollout = _rollout_state(view, live, now) if counted or (node is not None and should_run) else ""
    work = node is None or _needs_work(should_run, may_continue, bool(counted), live)
    if not counts and not rollout and not work:
        return None
    return Slot(tuple(counts), rollout, work, wake_in)


@dataclass(slots=True)
class Daemon:
    """One DaemonSet's pods by node, the slots they make and the running totals of those slots."""

    view: DaemonSetView | None = None
    pods: dict[str, dict[str, DaemonPod]] = field(default_factory=dict)
    slots: dict[str, Slot] = field(default_factory=dict)
    totals: Counter[str] = field(default_factory=Counter)
    replace: set[str] = field(default_factory=set)
    candidates: set[str] = field(default_factory=set)
    # Pods per revision hash, so history pruning keeps every revision a pod still runs.
    hashes: Counter[str] = field(default_factory=Counter)

    def set_slot(self, node: str, slot: Slot | None) -> None:
        old = self.slots.pop(node, None)
        if old is not None:
            self.totals.subtract(old.counts)
            if old.rollout == UNAVAILABLE:
                self.totals[UNAVAILABLE] -= 1
        self.replace.discard(node)
        self.candidates.discard(node)
        if slot is None:
            return
        self.slots[node] = slot
        self.totals.update(slot.counts)
        if slot.rollout == UNAVAILABLE:
            self.totals[UNAVAILABLE] += 1
        elif slot.rollout == REPLACE:
            self.replace.add(node)
        elif slot.rollout == CANDIDATE:
            self.candidates.add(node)

    def reset(self) -> None:
        self.slots.clear()
        self.totals.clear()
        self.replace.clear()
        self.candidates.clear()


def _ds_key(key: str) -> tuple[str, str]:
    return ("ds", key)


def _node_key(key: str, node: str) -> tuple[str, str, str]:
    return ("node", key, node)


class DaemonSetController(Controller):
    """Keys: ("ds", key) for revisions, rolling updates and status; ("node", key, node) for one node's pods."""

    name = "daemonset"
    watches = (DAEMONSETS.storage_name, "nodes", "pods", REVISIONS.storage_name)

    def __init__(self, registry: Registry, settings: SimSettings) -> None:
        super().__init__(registry, settings)
        self._nodes: dict[str, NodeView] = {}
        self._daemons: dict[str, Daemon] = {}
        self._uid_by_key: dict[str, str] = {}
        self._pod_place: dict[str, tuple[str, str]] = {}
        self._revisions = RevisionIndex("DaemonSet", REVISION_HASH)

    # -- indexes ------------------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[Hashable]:
        self._nodes.clear()
        self._daemons.clear()
        self._uid_by_key.clear()
        self._pod_place.clear()
        self._revisions.clear()
        for stored in self.registry.iter_objects(NODES):
            self._nodes[stored.name] = node_view(stored)
        for stored in self.registry.iter_objects(DAEMONSETS):
            self._daemons[stored.uid] = Daemon(view=daemonset_view(stored))
            self._uid_by_key[stored.key] = stored.uid
        for stored in self.registry.iter_objects(REVISIONS):
            self._revisions.add(stored)
        for stored in self.registry.iter_objects(PODS):
            found = daemon_pod(stored)
            if found is not None:
                self._add_pod(*found)
        keys: list[Hashable] = []
        for daemon in self._daemons.values():
            if daemon.view is not None:
                keys.append(_ds_key(daemon.view.key))
                keys.extend(self._refresh_all(daemon))
        return keys

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == "pods":
            return self._pod_changed(change)
        if storage == "nodes":
            return self._node_changed(change)
        if storage == DAEMONSETS.storage_name:
            return self._daemonset_changed(change)
        return [
            _ds_key(daemon.view.key)
            for uid in self._revisions.observe(change)
            if (daemon := self._daemons.get(uid)) is not None and daemon.view is not None
        ]

    def _daemonset_changed(self, change: Change) -> list[Hashable]:
        uid = change.obj.uid
        if change.type == DELETED:
            if self._uid_by_key.get(change.key) == uid:
                del self._uid_by_key[change.key]
            daemon = self._daemons.get(uid)
            if daemon is not None:
                daemon.view = None
                daemon.reset()
                self._forget_if_empty(uid)
            return []
        try:
            view = daemonset_view(change.obj)
        except (TypeError, ValueError, AttributeError) as err:
            log.warning("daemonset not understood", daemonset=change.key, error=str(err))
            return []
        daemon = self._daemons.setdefault(uid, Daemon())
        old, daemon.view = daemon.view, view
        self._uid_by_key[change.key] = uid
        if old == view:
            return []
        keys: list[Hashable] = [_ds_key(view.key)]
        if old is None or (old.placement, old.hash, old.min_ready) != (view.placement, view.hash, view.min_ready):
            keys.extend(self._refresh_all(daemon))
        return keys

    def _node_changed(self, change: Change) -> list[Hashable]:
        name = change.obj.name
        if change.type == DELETED:
            if self._nodes.pop(name, None) is None:
                return []
        else:
            view = node_view(change.obj)
            if self._nodes.get(name) == view:
                return []
            self._nodes[name] = view
        keys: list[Hashable] = []
        for daemon in self._daemons.values():
            keys.extend(self._refresh(daemon, name))
        return keys

    def _pod_changed(self, change: Change) -> list[Hashable]:
        old = self._pod_place.pop(change.key, None)
        new = daemon_pod(change.obj) if change.type != DELETED else None
        if old is None and new is None:
            return []
        if new is not None and old == new[:2] and self._tracked(change.key, *old) == new[2]:
            # Nothing the controller looks at changed (a binding, a status write on the way to Running).
            self._pod_place[change.key] = old
            return []
        touched: set[tuple[str, str]] = set()
        if old is not None:
            self._remove_pod(change.key, *old)
            touched.add(old)
        if new is not None:
            self._add_pod(*new)
            touched.add((new[0], new[1]))
        keys: list[Hashable] = []
        for uid, node in touched:
            daemon = self._daemons.get(uid)
            if daemon is not None:
                keys.extend(self._refresh(daemon, node))
                self._forget_if_empty(uid)
        return keys

    def _tracked(self, key: str, uid: str, node: str) -> DaemonPod | None:
        daemon = self._daemons.get(uid)
        return daemon.pods.get(node, {}).get(key) if daemon is not None else None

    def _add_pod(self, uid: str, node: str, pod: DaemonPod) -> None:
        daemon = self._daemons.setdefault(uid, Daemon())
        daemon.pods.setdefault(node, {})[pod.key] = pod
        daemon.hashes[pod.hash] += 1
        self._pod_place[pod.key] = (uid, node)

    def _remove_pod(self, key: str, uid: str, node: str) -> None:
        daemon = self._daemons.get(uid)
        if daemon is None:
            return
        on_node = daemon.pods.get(node, {})
        pod = on_node.pop(key, None)
        if not on_node:
            daemon.pods.pop(node, None)
        if pod is not None:
            daemon.hashes[pod.hash] -= 1
            if daemon.hashes[pod.hash] <= 0:
                del daemon.hashes[pod.hash]

    def _forget_if_empty(self, uid: str) -> None:
        daemon = self._daemons.get(uid)
        if daemon is not None and daemon.view is None and not daemon.pods:
            del self._daemons[uid]

    def _refresh(self, daemon: Daemon, node: str) -> list[Hashable]:
        """Recompute one node's slot; the keys its change makes due."""
        view = daemon.view
        if view is None:
            return []
        old = daemon.slots.get(node)
        pods = list(daemon.pods.get(node, {}).values())
        new = compute_slot(view, self._nodes.get(node), pods, self.registry.clock())
        if new == old:
            return []
        daemon.set_slot(node, new)
        keys: list[Hashable] = []
        before = (old.counts, old.rollout) if old is not None else ((), "")
        after = (new.counts, new.rollout) if new is not None else ((), "")
        if before != after:
            keys.append(_ds_key(view.key))
        if new is not None and (new.work or new.wake_in is not None):
            keys.append(_node_key(view.key, node))
        return keys

    def _refresh_all(self, daemon: Daemon) -> list[Hashable]:
        """Every node's slot, after a change of the DaemonSet itself (placement, template or minReadySeconds)."""
        keys: list[Hashable] = []
        for node in set(self._nodes) | set(daemon.pods) | set(daemon.slots):
            keys.extend(self._refresh(daemon, node))
        return keys

    # -- reconcile ----------------------------------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> Requeue | None:
        assert isinstance(key, tuple)
        found = self._current(key[1])
        if found is None:
            return None
        daemon, stored = found
        assert daemon.view is not None
        if daemon.view.deleting:
            # The garbage collector removes the pods; the real controller does nothing more either.
            return None
        if key[0] == "node":
            return self._sync_node(daemon, daemon.view, key)
        self._sync_daemonset(daemon, daemon.view, stored)
        return None

    def _current(self, key: str) -> tuple[Daemon, Stored] | None:
        """The DaemonSet as stored now, with its in-memory state (None once it is gone)."""
        stored = self.registry.bucket(DAEMONSETS).get(key)
        uid = self._uid_by_key.get(key)
        if stored is None or uid != stored.uid:
            return None
        daemon = self._daemons.get(uid)
        if daemon is None or daemon.view is None:
            return None
        return daemon, stored

    def _sync_node(self, daemon: Daemon, view: DaemonSetView, key: tuple[Any, ...]) -> Requeue | None:
        node_name = str(key[2])
        for due in self._refresh(daemon, node_name):
            if due != key:
                self.queue.add(due)
        slot = daemon.slots.get(node_name)
        if slot is None:
            return None
        pods = list(daemon.pods.get(node_name, {}).values())
        node = self._nodes.get(node_name)
        if node is None:
            # No node and no kubelet to finish a graceful stop: the pods go at once, as the pod GC forces them.
            for pod in pods:
                delete_pod(self.registry, pod.namespace, pod.name, pod.uid, force=True)
            return None
        should_run, may_continue = view.placement.decide(node)
        live = [p for p in pods if not p.terminating]
        if should_run and not any(p.counted for p in pods):
            self._create_pod(view, node_name)
        elif not may_continue:
            for pod in live:
                delete_pod(self.registry, pod.namespace, pod.name, pod.uid)
        else:
            self._prune_node(live)
        return Requeue(after=slot.wake_in) if slot.wake_in is not None else None

    def _prune_node(self, live: list[DaemonPod]) -> None:
        """Delete failed pods, and all but the oldest when a node runs more than one."""
        failed = [p for p in live if p.phase == "Failed"]
        running = _oldest_first(p for p in live if p.phase != "Failed")
        for pod in failed + running[1:]:
            delete_pod(self.registry, pod.namespace, pod.name, pod.uid)

    def _create_pod(self, view: DaemonSetView, node: str) -> None:
        template = template_copy(view.template)
        meta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        labels = {**(meta.get("labels") or {}), REVISION_HASH: view.hash, TEMPLATE_GENERATION: str(view.generation)}
        pod_meta: JSON = {
            "generateName": f"{view.name}-",
            "namespace": view.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference("DaemonSet", view.name, view.uid)],
        }
        for extra in ("annotations", "finalizers"):
            if meta.get(extra):
                pod_meta[extra] = meta[extra]
        spec.pop("nodeName", None)
        spec["tolerations"] = [dict(t) for t in view.placement.tolerations]
        spec["affinity"] = pin_to_node(spec.get("affinity"), node)
        self.registry.create(PODS, view.namespace, {"metadata": pod_meta, "spec": spec}, field_validation="Ignore")

    def _sync_daemonset(self, daemon: Daemon, view: DaemonSetView, stored: Stored) -> None:
        ds = stored.decode()
        template = ds.get("spec", {}).get("template") or {}
        labels = {**((template.get("metadata") or {}).get("labels") or {}), REVISION_HASH: view.hash}
        name = hashing.controller_revision_name(view.name, view.hash)
        data = hashing.revision_patch(template)
        annotations = ds["metadata"].get("annotations")
        current = ensure_revision(self.registry, self._revisions, stored, "DaemonSet", name, labels, data, annotations)
        status = dict(ds.get("status") or {})
        if current is None:
            status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
            write_status(self.registry, DAEMONSETS, stored, status)
            return
        self._prune_history(daemon, view, current)
        if view.rolling:
            self._roll(daemon, view)
        wanted = {**status, **self._status(daemon, view)}
        for omitted in ("observedGeneration", "updatedNumberScheduled", "numberAvailable", "numberUnavailable"):
            if not wanted.get(omitted):
                wanted.pop(omitted, None)
        if wanted != ds.get("status"):
            write_status(self.registry, DAEMONSETS, stored, wanted)

    def _status(self, daemon: Daemon, view: DaemonSetView) -> JSON:
        totals = daemon.totals
        return {
            "currentNumberScheduled": totals[CURRENT],
            "numberMisscheduled": totals[MISSCHEDULED],
            "desiredNumberScheduled": totals[DESIRED],
            "numberReady": totals[READY],
            "observedGeneration": view.generation,
            "updatedNumberScheduled": totals[UPDATED],
            "numberAvailable": totals[AVAILABLE],
            "numberUnavailable": max(0, totals[DESIRED] - totals[AVAILABLE]),
        }

    def _roll(self, daemon: Daemon, view: DaemonSetView) -> None:
        """Delete old pods: those not available anyway, plus available ones within maxUnavailable. The node's new
        pod is created once the old one is gone."""
        budget = scaled(view.max_unavailable, daemon.totals[DESIRED], 1) or 1
        allowed = budget - daemon.totals[UNAVAILABLE] - len(daemon.replace)
        nodes = list(daemon.replace) + list(islice(daemon.candidates, max(0, allowed)))
        for node in nodes:
            for pod in list(daemon.pods.get(node, {}).values()):
                if not pod.terminating and pod.hash != view.hash:
                    delete_pod(self.registry, pod.namespace, pod.name, pod.uid)

    def _prune_history(self, daemon: Daemon, view: DaemonSetView, current: Revision) -> None:
        old = [r for r in self._revisions.of(view.uid).values() if r.name != current.name]
        excess = len(old) - view.history_limit
        if excess > 0:
            prune_history(self.registry, view.namespace, old, lambda r: daemon.hashes.get(r.hash, 0) > 0, excess)


# -- StatefulSet -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetPod:
    """What the StatefulSet controller keeps of one of its pods."""

    name: str
    uid: str
    ordinal: int
    revision: str
    phase: str
    ready_since: float | None
    terminating: bool

    @property
    def running_ready(self) -> bool:
        return self.phase == "Running" and self.ready_since is not None

    @property
    def healthy(self) -> bool:
        return self.running_ready and not self.terminating

    @property
    def finished(self) -> bool:
        return self.phase in TERMINAL_PHASES


def ordinal_of(name: str, owner: str) -> int:
    """getOrdinal: the number after `<owner>-`, or -1 for a name that is not a member's."""
    prefix, _, suffix = name.rpartition("-")
    if prefix != owner or not suffix.isdigit() or str(int(suffix)) != suffix:
        return -1
    return int(suffix)


def set_pod(stored: Stored) -> tuple[str, str, SetPod] | None:
    """(StatefulSet uid, StatefulSet key, pod) for a pod a StatefulSet controls; None for any other pod."""
    if _STATEFULSET_MARK not in stored.body:
        return None
    pod = stored.decode()
    meta = pod["metadata"]
    ref = controller_ref(meta, "StatefulSet")
    if ref is None:
        return None
    owner = str(ref.get("name") or "")
    status = pod.get("status") or {}
    view = SetPod(
        name=stored.name,
        uid=stored.uid,
        ordinal=ordinal_of(stored.name, owner),
        revision=stored.labels.get(REVISION_HASH, ""),
        phase=str(status.get("phase") or ""),
        ready_since=ready_since(status),
        terminating=bool(meta.get("deletionTimestamp")),
    )
    return str(ref["uid"]), object_key(stored.namespace, owner), view


@dataclass(frozen=True, slots=True)
class SetPlan:
    """One reconcile's view of a StatefulSet: its spec and the revisions pods should carry."""

    stored: Stored
    spec: JSON
    replicas: int
    ordered: bool
    rolling: bool
    partition: int
    current: str
    update: str
    update_template: JSON
    min_ready: int


class StatefulSetController(Controller):
    """Keys are StatefulSet keys ("namespace/name"); pod and revision changes map to their owner's key."""

    name = "statefulset"
    watches = (STATEFULSETS.storage_name, "pods", REVISIONS.storage_name)

    def __init__(self, registry: Registry, settings: SimSettings) -> None:
        super().__init__(registry, settings)
        # StatefulSet uid -> pod name -> pod.
        self._pods: dict[str, dict[str, SetPod]] = {}
        self._pod_owner: dict[str, str] = {}
        self._key_by_uid: dict[str, str] = {}
        self._revisions = RevisionIndex("StatefulSet", REVISION_NAME_HASH)

    # -- indexes ------------------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[Hashable]:
        self._pods.clear()
        self._pod_owner.clear()
        self._key_by_uid.clear()
        self._revisions.clear()
        for stored in self.registry.iter_objects(STATEFULSETS):
            self._key_by_uid[stored.uid] = stored.key
        for stored in self.registry.iter_objects(REVISIONS):
            self._revisions.add(stored)
        for stored in self.registry.iter_objects(PODS):
            found = set_pod(stored)
            if found is not None:
                uid, _, pod = found
                self._add_pod(stored.key, uid, pod)
        return list(self._key_by_uid.values())

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == STATEFULSETS.storage_name:
            if change.type == DELETED:
                self._key_by_uid.pop(change.obj.uid, None)
                return []
            self._key_by_uid[change.obj.uid] = change.key
            return [change.key]
        if storage == "pods":
            return self._pod_changed(change)
        return [self._key_by_uid[uid] for uid in self._revisions.observe(change) if uid in self._key_by_uid]

    def _pod_changed(self, change: Change) -> list[Hashable]:
        old = self._pod_owner.pop(change.key, None)
        if old is not None:
            pods = self._pods.get(old, {})
            pods.pop(change.obj.name, None)
            if not pods:
                self._pods.pop(old, None)
        found = set_pod(change.obj) if change.type != DELETED else None
        owners = {old} if old is not None else set()
        key: str | None = None
        if found is not None:
            uid, key, pod = found
            self._add_pod(change.key, uid, pod)
            owners.add(uid)
        keys: list[Hashable] = [self._key_by_uid[uid] for uid in owners if uid in self._key_by_uid]
        if key is not None and not keys:
            # A pod seen before its owner (or after it was replaced): its owner's key checks which it is.
            keys.append(key)
        return keys

    def _add_pod(self, key: str, uid: str, pod: SetPod) -> None:
        self._pods.setdefault(uid, {})[pod.name] = pod
        self._pod_owner[key] = uid

    # -- reconcile ----------------------------------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> Requeue | None:
        assert isinstance(key, str)
        stored = self.registry.bucket(STATEFULSETS).get(key)
        if stored is None:
            return None
        sts = stored.decode()
        if sts["metadata"].get("deletionTimestamp"):
            return None
        status = dict(sts.get("status") or {})
        plan = self._plan(stored, sts, status)
        if plan is None:
            status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
            write_status(self.registry, STATEFULSETS, stored, status)
            return None
        self._manage(plan)
        wake_in = self._write_status(plan, sts, status)
        self._prune_history(plan)
        return Requeue(after=wake_in) if wake_in is not None else None

    def _plan(self, stored: Stored, sts: JSON, status: JSON) -> SetPlan | None:
        """Make sure the update revision exists; None on a hash collision."""
        spec = sts.get("spec") or {}
        template = spec.get("template") or {}
        data = hashing.revision_patch(template)
        collision = int(status.get("collisionCount") or 0)
        hash_ = hashing.hash_controller_revision(hashing.canonical_json(data), collision)
        name = hashing.controller_revision_name(stored.name, hash_)
        labels = {**((template.get("metadata") or {}).get("labels") or {}), REVISION_NAME_HASH: hash_}
        update = ensure_revision(self.registry, self._revisions, stored, "StatefulSet", name, labels, data)
        if update is None:
            return None
        current = str(status.get("currentRevision") or "")
        if current not in self._revisions.of(stored.uid):
            current = update.name
        strategy = spec.get("updateStrategy") or {}
        rolling = (strategy.get("type") or "RollingUpdate") == "RollingUpdate"
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0) if rolling else 0
        return SetPlan(
            stored=stored,
            spec=spec,
            replicas=int(spec.get("replicas", 1) or 0),
            ordered=(spec.get("podManagementPolicy") or "OrderedReady") != "Parallel",
            rolling=rolling,
            partition=partition,
            current=current,
            update=update.name,
            update_template=template,
            min_ready=int(spec.get("minReadySeconds") or 0),
        )

    def _members(self, uid: str) -> dict[int, SetPod]:
        return {p.ordinal: p for p in self._pods.get(uid, {}).values() if p.ordinal >= 0}

    def _manage(self, plan: SetPlan) -> None:
        """One pass of the real control loop: replicas in order, then condemned pods, then the rolling update."""
        uid = plan.stored.uid
        members = self._members(uid)
        for ordinal in range(plan.replicas):
            pod = members.get(ordinal)
            if pod is not None and pod.finished and not pod.terminating:
                # A failed or completed member is deleted and created again under the same name.
                self._delete(plan, pod)
                pod = self._members(uid).get(ordinal)
            if pod is None:
                self._create(plan, ordinal)
                if plan.ordered:
                    return
                continue
            if plan.ordered and not pod.healthy:
                return
        condemned = sorted((p for o, p in members.items() if o >= plan.replicas), key=lambda p: -p.ordinal)
        for pod in condemned:
            if pod.terminating:
                if plan.ordered:
                    return
                continue
            self._delete(plan, pod)
            if plan.ordered:
                return
        if plan.rolling:
            self._roll(plan)

    def _roll(self, plan: SetPlan) -> None:
        """Replace pods of other revisions from the highest ordinal down to the partition, one at a time."""
        members = self._members(plan.stored.uid)
        for ordinal in range(plan.replicas - 1, plan.partition - 1, -1):
            pod = members.get(ordinal)
            if pod is None:
                return
            if pod.revision != plan.update and not pod.terminating:
                self._delete(plan, pod)
                return
            if not pod.healthy:
                return

    def _create(self, plan: SetPlan, ordinal: int) -> None:
        stored = plan.stored
        revision, template = plan.update, plan.update_template
        if plan.rolling and ordinal < plan.partition and plan.current != plan.update:
            old = self._revision_template(stored.namespace, plan.current)
            if old is not None:
                revision, template = plan.current, old
        pod = self._pod_body(plan, template, revision, ordinal)
        self.registry.create(PODS, stored.namespace, pod, field_validation="Ignore")

    def _pod_body(self, plan: SetPlan, template: JSON, revision: str, ordinal: int) -> JSON:
        stored = plan.stored
        template = template_copy(orjson.dumps(template))
        meta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        name = f"{stored.name}-{ordinal}"
        labels = {**(meta.get("labels") or {}), REVISION_HASH: revision, POD_NAME: name, POD_INDEX: str(ordinal)}
        pod_meta: JSON = {
            "name": name,
            "namespace": stored.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference("StatefulSet", stored.name, stored.uid)],
        }
        for extra in ("annotations", "finalizers"):
            if meta.get(extra):
                pod_meta[extra] = meta[extra]
        spec["hostname"] = name
        if plan.spec.get("serviceName"):
            spec["subdomain"] = plan.spec["serviceName"]
        spec.pop("nodeName", None)
        self._claim_volumes(plan, spec, name)
        return {"metadata": pod_meta, "spec": spec}

    def _claim_volumes(self, plan: SetPlan, spec: JSON, pod_name: str) -> None:
        """updateStorage: each volumeClaimTemplate becomes a volume on the claim `<template>-<pod>`."""
        claims = [c for c in plan.spec.get("volumeClaimTemplates") or () if isinstance(c, dict)]
        if not claims:
            return
        volumes = [v for v in spec.get("volumes") or () if isinstance(v, dict)]
        for claim in claims:
            claim_name = str((claim.get("metadata") or {}).get("name") or "")
            if not claim_name:
                continue
            volumes = [v for v in volumes if v.get("name") != claim_name]
            volumes.append({"name": claim_name, "persistentVolumeClaim": {"claimName": f"{claim_name}-{pod_name}"}})
        spec["volumes"] = volumes

    def _revision_template(self, namespace: str, name: str) -> JSON | None:
        """The pod template a revision recorded (its patch data without the `$patch` directive)."""
        stored = self.registry.bucket(REVISIONS).get(object_key(namespace, name))
        if stored is None:
            return None
        template = ((stored.decode().get("data") or {}).get("spec") or {}).get("template")
        if not isinstance(template, dict):
            return None
        template.pop("$patch", None)
        return template

    def _delete(self, plan: SetPlan, pod: SetPod) -> None:
        delete_pod(self.registry, plan.stored.namespace, pod.name, pod.uid)

    def _write_status(self, plan: SetPlan, sts: JSON, status: JSON) -> float | None:
        """Write the replica counts and revisions; returns when a Ready pod becomes available, if one will."""
        now = self.registry.clock()
        pods = list(self._pods.get(plan.stored.uid, {}).values())
        counts: Counter[str] = Counter()
        wake_in: float | None = None
        for pod in pods:
            counts["replicas"] += 1
            if pod.running_ready:
                counts["readyReplicas"] += 1
                wait = available_in(pod.ready_since, plan.min_ready, now)
                if wait == 0:
                    counts["availableReplicas"] += 1
                elif wait is not None:
                    wake_in = wait if wake_in is None else min(wake_in, wait)
            if not pod.terminating:
                counts["currentReplicas"] += pod.revision == plan.current
                counts["updatedReplicas"] += pod.revision == plan.update
        current = plan.current
        if plan.rolling and counts["updatedReplicas"] == counts["replicas"] == counts["readyReplicas"]:
            # completeRollingUpdate: every pod runs the update revision, which becomes the current one.
            current = plan.update
            counts["currentReplicas"] = counts["updatedReplicas"]
        wanted: JSON = {
            **status,
            "observedGeneration": int(sts["metadata"].get("generation") or 1),
            "replicas": counts["replicas"],
            "readyReplicas": counts["readyReplicas"],
            "currentReplicas": counts["currentReplicas"],
            "updatedReplicas": counts["updatedReplicas"],
            "currentRevision": current,
            "updateRevision": plan.update,
            "collisionCount": int(status.get("collisionCount") or 0),
            "availableReplicas": counts["availableReplicas"],
        }
        for omitted in ("readyReplicas", "currentReplicas", "updatedReplicas"):
            if not wanted[omitted]:
                del wanted[omitted]
        if wanted != sts.get("status"):
            write_status(self.registry, STATEFULSETS, plan.stored, wanted)
        return wake_in

    def _prune_history(self, plan: SetPlan) -> None:
        revisions = list(self._revisions.of(plan.stored.uid).values())
        live = {plan.current, plan.update} | {p.revision for p in self._pods.get(plan.stored.uid, {}).values()}
        history = [r for r in revisions if r.name not in live]
        limit = int(plan.spec.get("revisionHistoryLimit", DEFAULT_HISTORY_LIMIT) or 0)
        excess = len(history) - limit
        if excess > 0:
            prune_history(self.registry, plan.stored.namespace, history, lambda r: r.name in live, excess)


CONTROLLERS: dict[str, Factory] = {"daemonset": DaemonSetController, "statefulset": StatefulSetController}
