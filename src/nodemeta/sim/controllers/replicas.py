"""Replica workloads: the ReplicaSet / ReplicationController manager and the Deployment controller.

Both work as kube-controller-manager's do, through the registry only:

* the replica manager (one implementation, run once for ReplicaSets and once for ReplicationControllers) keeps
  `spec.replicas` active pods for each owner: it creates pods from the template with `generateName: <owner>-`
  and a controller reference, deletes the surplus (unscheduled first, then not ready, then newest), adopts
  orphan pods its selector matches, releases owned pods that stopped matching, and reports counts through the
  status subresource;
* the Deployment controller keeps one ReplicaSet per pod template, named `<deployment>-<pod-template-hash>`,
  rolls from old to new ones within maxSurge/maxUnavailable (or all at once for Recreate), numbers revisions,
  prunes history beyond `revisionHistoryLimit`, and reports status and the Available/Progressing conditions
  that `kubectl rollout status` reads.

Each controller keeps its dependents (pods, or ReplicaSets) indexed by the uid of their controlling owner and,
for adoption, its orphans by namespace, updated synchronously from every change. A change therefore wakes only
the owner it concerns (or, for an orphan, the owners in its namespace whose selector matches), and a reconcile
costs the owner's own dependents, never a pass over the cluster. Because the indexes never lag the store, the
real controllers' expectations (which cover informer lag) are not needed.

Simplified or left out, compared with kube-controller-manager:

* deletion ranking among surplus pods is unscheduled, then Pending/Unknown/Running, then not ready, then newest
  (no co-location rank, restart counts or time ready); creation has no slow-start batches, only the burst cap;
* the progress deadline (Progressing=False, ProgressDeadlineExceeded), ReplicaFailure conditions, proportional
  scaling of several active ReplicaSets when a Deployment is scaled mid-rollout (the rollout still ends with the
  new ReplicaSet at spec.replicas and the old ones at 0), the revision-history annotation and spec.rollbackTo;
* Recreate waits until the old ReplicaSets report no active pods, not until their terminating pods are gone;
* a paused Deployment only scales a ReplicaSet that runs alone;
* the Deployment's revision annotation is set with a metadata patch: the real controller sends it with its
  status update, which the Deployment status strategy lets through but this registry's status subresource drops.
"""

from __future__ import annotations

import calendar
import functools
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import orjson

from nodemeta.sim.controllers.base import Controller, Factory, Requeue
from nodemeta.sim.controllers.hashing import canonical_json, compute_hash
from nodemeta.sim.errors import APIError
from nodemeta.sim.registry import DeleteOptions, Registry, rfc3339
from nodemeta.sim.resources import JSON, ResourceType, lookup
from nodemeta.sim.selectors import LabelSelector, SelectorError, selector_from_map
from nodemeta.sim.settings import SimSettings
from nodemeta.sim.store import DELETED, Change, Stored


def _resource(group: str, plural: str) -> ResourceType:
    found = lookup(group, "v1", plural)
    if found is None:
        raise LookupError(f"{plural}.{group} is not served")
    return found


PODS = _resource("", "pods")
REPLICATION_CONTROLLERS = _resource("", "replicationcontrollers")
REPLICA_SETS = _resource("apps", "replicasets")
DEPLOYMENTS = _resource("apps", "deployments")

TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# Deployment annotations the controller does not copy onto its ReplicaSets (copyDeploymentAnnotationsToReplicaSet).
_NOT_COPIED = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
# The replica manager's burstReplicas: pods created or deleted per sync, so one huge owner cannot stall the rest.
BURST_REPLICAS = 500

# Cheap looks at a pod's encoded body, so pods that cannot concern a controller are not decoded.
_OWNER_REFS_MARK = b'"ownerReferences"'
_DELETION_MARK = b'"deletionTimestamp"'
_CONTROLLER_MARK = b'"controller":true'
_REFS_KEY = b'"ownerReferences":['
_READY_KEY = b'"type":"Ready"'
_DELETING_KEY = b'"deletionTimestamp":"'
_CREATED_KEY = b'"creationTimestamp":"'

# (reason, message) of the Deployment conditions the controller sets without naming a ReplicaSet.
AVAILABLE = ("MinimumReplicasAvailable", "Deployment has minimum availability.")
UNAVAILABLE = ("MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
PAUSED = ("DeploymentPaused", "Deployment is paused")
RESUMED = ("DeploymentResumed", "Deployment is resumed")

# The deletion preference among phases (controller.ActivePods): Pending before Unknown before Running.
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


# -- shared helpers ----------------------------------------------------------------------------------------------


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def controller_ref(meta: JSON) -> JSON | None:
    """The ownerReference marked `controller: true`, if any (metav1.GetControllerOf)."""
    for ref in meta.get("ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("controller") is True:
            return ref
    return None


def owner_reference(res: ResourceType, owner: Stored) -> JSON:
    """A controlling reference to `owner`, as controllers put on what they create or adopt."""
    return {
        "apiVersion": res.api_version,
        "kind": res.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def replicas_of(spec: JSON) -> int:
    """spec.replicas, which the API defaults to 1."""
    value = spec.get("replicas")
    return 1 if value is None else int(value)


def parse_time(text: str) -> float:
    """An RFC 3339 timestamp (seconds precision, UTC) as seconds since the epoch."""
    return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))


def selector_of(res: ResourceType, obj: JSON) -> LabelSelector:
    """The owner's pod selector; a ReplicationController's is a plain map. An unusable one selects nothing."""
    raw = (obj.get("spec") or {}).get("selector")
    return _parse_selector(res is REPLICATION_CONTROLLERS, orjson.dumps(raw, option=orjson.OPT_SORT_KEYS))


@functools.lru_cache(maxsize=65536)
def _parse_selector(plain_map: bool, raw: bytes) -> LabelSelector:
    """Parsed once per distinct selector: owners are looked at on every status write, and parsing validates."""
    value = orjson.loads(raw)
    try:
        if plain_map:
            return selector_from_map(value) if value else LabelSelector((), matches_nothing=True)
        return LabelSelector.from_object(value)
    except (SelectorError, AttributeError, TypeError):
        return LabelSelector((), matches_nothing=True)


def release_patch(owner_uid: str, dependent_uid: str) -> JSON:
    """The strategic merge patch that drops one owner reference (ControllerRefManager's release)."""
    return {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": dependent_uid}}


def adopt_patch(ref: JSON, dependent_uid: str) -> JSON:
    """The strategic merge patch that adds a controlling owner reference (ControllerRefManager's adopt)."""
    return {"metadata": {"ownerReferences": [ref], "uid": dependent_uid}}


def _patch_ignoring_absent(registry: Registry, res: ResourceType, target: Stored, body: JSON) -> None:
    """Adopt/release: a dependent deleted meanwhile needs nothing more."""
    try:
        registry.patch(res, target.namespace, target.name, "strategic", body, field_validation="Ignore")
    except APIError as err:
        if err.code != 404:
            raise


class OwnWrites:
    """Writes a controller makes to the very objects it reconciles (their status, the Deployment's revision).

    The change such a write causes need not queue the object again: the reconcile making it already worked from
    everything known. Skipping it halves the reconciles of busy owners, whose status moves with every pod.
    """

    def __init__(self) -> None:
        self._key: str | None = None

    def caused(self, change: Change) -> bool:
        return change.key == self._key

    def status(self, registry: Registry, res: ResourceType, current: Stored, status: JSON) -> Stored:
        """PUT <object>/status against the revision the status was computed from."""
        body = {"metadata": {"name": current.name, "resourceVersion": str(current.rv)}, "status": status}
        return self.write(
            current,
            lambda: (
                registry.update(
                    res, current.namespace, current.name, body, subresource="status", field_validation="Ignore"
                ).stored
            ),
        )

    def write(self, current: Stored, action: Callable[[], Stored]) -> Stored:
        self._key = current.key
        try:
            return action()
        finally:
            self._key = None


# -- indexes ------------------------------------------------------------------------------------------------------


class Dependent(Protocol):
    """What claiming needs of a dependent: its labels, and whether it is active (only active ones are released)."""

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def active(self) -> bool: ...


InfoT = TypeVar("InfoT", bound=Dependent)


@dataclass(frozen=True, slots=True)
class Owner:
    """What a controller remembers of an owner between changes: where to queue it and what it selects."""

    key: str
    namespace: str
    selector: LabelSelector


class Owners:
    """Owners by uid and by namespace, so an orphan's change wakes only the owners that could adopt it."""

    def __init__(self) -> None:
        self._by_uid: dict[str, Owner] = {}
        self._by_namespace: dict[str, set[str]] = {}

    def put(self, uid: str, owner: Owner) -> None:
        self._by_uid[uid] = owner
        self._by_namespace.setdefault(owner.namespace, set()).add(uid)

    def drop(self, uid: str) -> None:
        owner = self._by_uid.pop(uid, None)
        if owner is None:
            return
        uids = self._by_namespace.get(owner.namespace)
        if uids is not None:
            uids.discard(uid)
            if not uids:
                del self._by_namespace[owner.namespace]

    def key_of(self, uid: str) -> str | None:
        owner = self._by_uid.get(uid)
        return owner.key if owner is not None else None

    def matching(self, namespace: str, labels: Mapping[str, str]) -> list[str]:
        """The keys of the owners in `namespace` whose selector matches `labels`."""
        keys = []
        for uid in self._by_namespace.get(namespace, ()):
            owner = self._by_uid[uid]
            if owner.selector.matches(labels):
                keys.append(owner.key)
        return keys


class Dependents(Generic[InfoT]):
    """Dependents by the uid of their controlling owner, and adoptable orphans by namespace.

    Each dependent (by store key) is in at most one place; `forget` says where it was, so the owner that lost it
    can be told.
    """

    def __init__(self) -> None:
        self.owned: dict[str, dict[str, InfoT]] = {}
        self.orphans: dict[str, dict[str, InfoT]] = {}
        # dependent key -> (owner uid, "") when owned, ("", namespace) when an orphan.
        self._where: dict[str, tuple[str, str]] = {}
        # Bumped whenever a namespace's orphans change, so an owner can skip looking at orphans it has seen.
        self.orphan_epochs: dict[str, int] = {}

    def own(self, key: str, owner_uid: str, info: InfoT) -> None:
        self.owned.setdefault(owner_uid, {})[key] = info
        self._where[key] = (owner_uid, "")

    def orphan(self, key: str, namespace: str, info: InfoT) -> None:
        self.orphans.setdefault(namespace, {})[key] = info
        self._where[key] = ("", namespace)
        self._bump(namespace)

    def _bump(self, namespace: str) -> None:
        self.orphan_epochs[namespace] = self.orphan_epochs.get(namespace, 0) + 1

    def forget(self, key: str) -> str:
        """Remove `key`; the uid of the owner it had ("" when it was an orphan or unknown)."""
        where = self._where.pop(key, None)
        if where is None:
            return ""
        owner_uid, namespace = where
        if not owner_uid:
            self._bump(namespace)
        table, slot = (self.owned, owner_uid) if owner_uid else (self.orphans, namespace)
        entries = table.get(slot)
        if entries is not None:
            entries.pop(key, None)
            if not entries:
                del table[slot]
        return owner_uid

    def of(self, owner_uid: str) -> dict[str, InfoT]:
        return self.owned.get(owner_uid, {})

    def adoptable(
        self, owner_uid: str, namespace: str, selector: LabelSelector, seen: dict[str, tuple[int, LabelSelector]]
    ) -> list[tuple[str, InfoT]]:
        """The orphans in `namespace` that `selector` matches, unless neither the orphans nor the selector changed
        since the owner last looked (`seen` remembers, per owner uid, what it looked at)."""
        epoch = self.orphan_epochs.get(namespace, 0)
        if seen.get(owner_uid) == (epoch, selector):
            return []
        seen[owner_uid] = (epoch, selector)
        return [(key, info) for key, info in self.orphans.get(namespace, {}).items() if selector.matches(info.labels)]


def claim(
    registry: Registry,
    res: ResourceType,
    owner: Stored,
    ref: JSON,
    selector: LabelSelector,
    dependents: Dependents[InfoT],
    seen: dict[str, tuple[int, LabelSelector]],
) -> None:
    """ControllerRefManager.Claim: release owned dependents the selector no longer matches, adopt the orphans it
    matches (only active ones are indexed: a pod being deleted or finished is neither adopted nor released)."""
    owner_uid = owner.uid
    bucket = registry.bucket(res)
    for key, info in list(dependents.of(owner_uid).items()):
        dependent = bucket.get(key)
        if dependent is not None and info.active and not selector.matches(info.labels):
            _patch_ignoring_absent(registry, res, dependent, release_patch(owner_uid, dependent.uid))
    try:
        for key, _ in dependents.adoptable(owner_uid, owner.namespace, selector, seen):
            dependent = bucket.get(key)
            if dependent is not None:
                _patch_ignoring_absent(registry, res, dependent, adopt_patch(ref, dependent.uid))
    except APIError:
        seen.pop(owner_uid, None)
        raise


# -- ReplicaSet / ReplicationController ------------------------------------------------------------------------


class PodInfo(NamedTuple):
    """What the replica manager needs of one pod, taken from it once per change (a tuple: made for every pod
    write, so it must be cheap to build)."""

    labels: Mapping[str, str]
    active: bool
    bound: bool = False
    phase: str = ""
    ready: bool = False
    # lastTransitionTime of the Ready condition, for minReadySeconds.
    ready_since: str = ""
    created: str = ""

    def available(self, min_ready_seconds: int, now: float) -> bool:
        if not self.ready:
            return False
        if min_ready_seconds <= 0 or not self.ready_since:
            return True
        return parse_time(self.ready_since) + min_ready_seconds <= now


def _ready_condition(status: JSON) -> JSON | None:
    for condition in status.get("conditions") or ():
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return condition
    return None


def _info(meta: JSON, status: JSON, bound: bool) -> PodInfo:
    phase = str(status.get("phase") or "")
    ready = _ready_condition(status)
    return PodInfo(
        labels=meta.get("labels") or {},
        active=not meta.get("deletionTimestamp") and phase not in TERMINAL_PHASES,
        bound=bound,
        phase=phase,
        ready=ready is not None and ready.get("status") == "True",
        ready_since=str((ready or {}).get("lastTransitionTime") or ""),
        created=str(meta.get("creationTimestamp") or ""),
    )


def pod_info(obj: JSON) -> PodInfo:
    return _info(obj["metadata"], obj.get("status") or {}, bool((obj.get("spec") or {}).get("nodeName")))


class _Unscannable(Exception):
    """A pod body the byte scan cannot read with certainty; it is decoded in full instead."""


def _fragment(body: bytes, start: int, end: int) -> Any:
    try:
        return orjson.loads(body[start : end + 1])
    except orjson.JSONDecodeError as err:
        raise _Unscannable from err


def _scan(pod: Stored) -> tuple[list[Any], PodInfo]:
    """The pod's owner references and PodInfo read from a few slices of its encoded body, not the whole object.

    Every pod write reaches this controller, and most pods are large once running; the slices are the
    ownerReferences list (no nested brackets in it) and the Ready condition (a flat object). A slice that does not
    decode to what it should means the body is laid out otherwise, and `_Unscannable` sends it to a full decode.
    """
    body = pod.body
    refs: list[Any] = []
    at = body.find(_REFS_KEY)
    if at >= 0:
        start = at + len(_REFS_KEY) - 1
        refs = _fragment(body, start, body.find(b"]", start))
        if not isinstance(refs, list):
            raise _Unscannable
    conditions: list[JSON] = []
    at = body.find(_READY_KEY)
    if at >= 0:
        ready = _fragment(body, body.rfind(b"{", 0, at), body.find(b"}", at))
        if not isinstance(ready, dict) or ready.get("type") != "Ready":
            raise _Unscannable
        conditions.append(ready)
    meta: JSON = {"labels": pod.labels}
    if _DELETING_KEY in body:
        meta["deletionTimestamp"] = True
    at = body.find(_CREATED_KEY)
    if at >= 0:
        start = at + len(_CREATED_KEY)
        meta["creationTimestamp"] = body[start : body.find(b'"', start)].decode()
    status = {"phase": pod.field("status.phase"), "conditions": conditions}
    return refs, _info(meta, status, bool(pod.field("spec.nodeName")))


def read_pod(pod: Stored) -> tuple[JSON | None, PodInfo]:
    """(controller reference, PodInfo) of a stored pod."""
    try:
        refs, info = _scan(pod)
        return controller_ref({"ownerReferences": refs}), info
    except _Unscannable:
        obj = pod.decode()
        return controller_ref(obj["metadata"]), pod_info(obj)


def deletion_order(pods: Iterable[tuple[str, PodInfo]]) -> list[str]:
    """Pod keys, the ones to delete first first: unscheduled, then pending, then not ready, then newest."""
    newest_first = sorted(pods, key=lambda item: (item[1].created, item[0]), reverse=True)
    ranked = sorted(newest_first, key=lambda item: (item[1].bound, _PHASE_RANK.get(item[1].phase, 1), item[1].ready))
    return [key for key, _ in ranked]


class ReplicaManager(Controller):
    """kube-controller-manager's ReplicaSet controller, which also runs ReplicationControllers."""

    def __init__(self, registry: Registry, settings: SimSettings, res: ResourceType) -> None:
        super().__init__(registry, settings)
        self.res = res
        self.name = res.singular
        self.watches = (res.storage_name, PODS.storage_name)
        self.owners = Owners()
        self.pods: Dependents[PodInfo] = Dependents()
        self._seen_orphans: dict[str, tuple[int, LabelSelector]] = {}
        self.own_writes = OwnWrites()
        self._kind_mark = f'"kind":"{res.kind}"'.encode()

    # -- observing ------------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[Hashable]:
        keys: list[Hashable] = []
        for stored in self.registry.iter_objects(self.res):
            self._observe_owner(stored)
            keys.append(stored.key)
        for pod in self.registry.iter_objects(PODS):
            self._observe_pod(pod)
        return keys

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == self.res.storage_name:
            if change.type == DELETED:
                self.owners.drop(change.obj.uid)
                self._seen_orphans.pop(change.obj.uid, None)
                return ()
            self._observe_owner(change.obj)
            return () if self.own_writes.caused(change) else (change.key,)
        keys: set[str] = set()
        previous = self.pods.forget(change.key)
        if previous:
            self._add_owner_key(keys, previous)
        if change.type != DELETED:
            owner_uid = self._observe_pod(change.obj)
            if owner_uid:
                self._add_owner_key(keys, owner_uid)
            elif owner_uid == "" and change.key in self.pods.orphans.get(change.obj.namespace, {}):
                keys.update(self.owners.matching(change.obj.namespace, change.obj.labels))
        return keys

    def _add_owner_key(self, keys: set[str], owner_uid: str) -> None:
        key = self.owners.key_of(owner_uid)
        if key is not None:
            keys.add(key)

    def _observe_owner(self, stored: Stored) -> None:
        obj = stored.decode()
        self.owners.put(stored.uid, Owner(stored.key, stored.namespace, selector_of(self.res, obj)))

    def _observe_pod(self, pod: Stored) -> str | None:
        """Index `pod`: the uid of its owner when it is ours, "" for an orphan, None when another kind controls it."""
        body = pod.body
        has_refs = _OWNER_REFS_MARK in body
        if has_refs and self._kind_mark not in body and _CONTROLLER_MARK in body:
            return None
        if not has_refs and _DELETION_MARK not in body:
            if pod.field("status.phase") not in TERMINAL_PHASES:
                self.pods.orphan(pod.key, pod.namespace, PodInfo(labels=pod.labels, active=True))
            return ""
        ref, info = read_pod(pod)
        if ref is None:
            if info.active:
                self.pods.orphan(pod.key, pod.namespace, info)
            return ""
        if ref.get("kind") != self.res.kind or group_of(str(ref.get("apiVersion") or "")) != self.res.group:
            return None
        owner_uid = str(ref.get("uid") or "")
        self.pods.own(pod.key, owner_uid, info)
        return owner_uid

    # -- reconcile ------------------------------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> Requeue | None:
        current = self.registry.bucket(self.res).get(str(key))
        if current is None:
            return None
        obj = current.decode()
        spec = obj.get("spec") or {}
        deleting = bool(obj["metadata"].get("deletionTimestamp"))
        more = False
        if not deleting:
            ref = owner_reference(self.res, current)
            claim(self.registry, PODS, current, ref, selector_of(self.res, obj), self.pods, self._seen_orphans)
            more = self._manage(current, spec)
        wait = self._report(current, obj)
        if more:
            return Requeue(after=0)
        return Requeue(after=wait) if wait is not None else None

    def _manage(self, owner: Stored, spec: JSON) -> bool:
        """Create or delete pods towards spec.replicas, at most a burst at a time; True when more remain."""
        wanted = replicas_of(spec)
        active = [(key, info) for key, info in self.pods.of(owner.uid).items() if info.active]
        diff = wanted - len(active)
        if diff > 0:
            self._create_pods(owner, spec, min(diff, BURST_REPLICAS))
        elif diff < 0:
            for key in deletion_order(active)[: min(-diff, BURST_REPLICAS)]:
                self._delete_pod(key)
        return abs(diff) > BURST_REPLICAS

    def _create_pods(self, owner: Stored, spec: JSON, count: int) -> None:
        template = spec.get("template") or {}
        meta = template.get("metadata") or {}
        pod_meta: JSON = {"generateName": f"{owner.name}-"}
        for name in ("labels", "annotations", "finalizers"):
            if meta.get(name):
                pod_meta[name] = meta[name]
        pod_meta["ownerReferences"] = [owner_reference(self.res, owner)]
        # Encoded once, decoded per pod: the registry defaults each body in place.
        raw = orjson.dumps({"metadata": pod_meta, "spec": template.get("spec") or {}})
        for _ in range(count):
            self.registry.create(PODS, owner.namespace, orjson.loads(raw), field_validation="Ignore")

    def _delete_pod(self, key: str) -> None:
        pod = self.registry.bucket(PODS).get(key)
        if pod is None:
            return
        try:
            self.registry.delete(PODS, pod.namespace, pod.name, DeleteOptions())
        except APIError as err:
            if err.code != 404:
                raise

    def _report(self, current: Stored, obj: JSON) -> float | None:
        """Write status when it changed; seconds until a ready pod becomes available, when one is waiting."""
        spec = obj.get("spec") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        template_labels: Mapping[str, str] = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        now = self.registry.clock()
        replicas = fully_labeled = ready = available = 0
        wait: float | None = None
        for info in self.pods.of(current.uid).values():
            if not info.active:
                continue
            replicas += 1
            fully_labeled += all(info.labels.get(k) == v for k, v in template_labels.items())
            if info.ready:
                ready += 1
                if info.available(min_ready, now):
                    available += 1
                else:
                    remaining = parse_time(info.ready_since) + min_ready - now
                    wait = remaining if wait is None else min(wait, remaining)
        old: JSON = obj.get("status") or {}
        status: JSON = {"replicas": replicas}
        for name, value in (
            ("fullyLabeledReplicas", fully_labeled),
            ("readyReplicas", ready),
            ("availableReplicas", available),
            ("observedGeneration", int(obj["metadata"].get("generation") or 0)),
        ):
            if value:
                status[name] = value
        if old.get("conditions"):
            status["conditions"] = old["conditions"]
        if status != old:
            self.own_writes.status(self.registry, self.res, current, status)
        return None if wait is None else max(wait, 0.05)


def replica_sets(registry: Registry, settings: SimSettings) -> Controller:
    return ReplicaManager(registry, settings, REPLICA_SETS)


def replication_controllers(registry: Registry, settings: SimSettings) -> Controller:
    return ReplicaManager(registry, settings, REPLICATION_CONTROLLERS)


# -- Deployment ---------------------------------------------------------------------------------------------------


def _scaled(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int, or a percentage of `total` rounded up or down."""
    if isinstance(value, str) and value.endswith("%"):
        try:
            percent = int(value[:-1])
        except ValueError:
            return 0
        scaled = percent * total
        return -(-scaled // 100) if round_up else scaled // 100
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _int_annotation(meta: JSON, name: str) -> int:
    try:
        return int((meta.get("annotations") or {}).get(name) or 0)
    except ValueError:
        return 0


def without_nulls(value: Any) -> Any:
    """`value` with every null member dropped: a typed Go object cannot tell a null field from an absent one
    (clients such as `kubectl rollout undo` send `creationTimestamp: null` in templates), so neither may we."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


class TemplateKeys:
    """Comparable forms of pod templates (EqualIgnoreHash), computed once per object generation: a template
    only changes with the spec, and a Deployment compares its own with each of its ReplicaSets' on every sync."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[int, bytes]] = {}

    def of(self, uid: str, obj: JSON) -> bytes:
        generation = int(obj["metadata"].get("generation") or 0)
        cached = self._keys.get(uid)
        if cached is not None and cached[0] == generation:
            return cached[1]
        key = canonical_json(template_without_hash((obj.get("spec") or {}).get("template") or {}))
        self._keys[uid] = (generation, key)
        return key

    def forget(self, uid: str) -> None:
        self._keys.pop(uid, None)


def template_without_hash(template: JSON) -> JSON:
    """A pod template as EqualIgnoreHash compares it: without the pod-template-hash label, nulls dropped."""
    plain: JSON = without_nulls(template)
    meta = dict(plain.get("metadata") or {})
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != TEMPLATE_HASH}
    if labels:
        meta["labels"] = labels
    else:
        meta.pop("labels", None)
    return {**plain, "metadata": meta}


@dataclass(slots=True)
class ReplicaSetView:
    """One ReplicaSet of a Deployment as read at the start of a reconcile, replaced by what each write returns."""

    stored: Stored
    obj: JSON

    @property
    def name(self) -> str:
        return self.stored.name

    @property
    def meta(self) -> JSON:
        meta: JSON = self.obj["metadata"]
        return meta

    @property
    def replicas(self) -> int:
        return replicas_of(self.obj.get("spec") or {})

    def status(self, name: str) -> int:
        return int((self.obj.get("status") or {}).get(name) or 0)

    @property
    def revision(self) -> int:
        return _int_annotation(self.meta, REVISION)

    @property
    def created(self) -> tuple[str, str]:
        return (str(self.meta.get("creationTimestamp") or ""), self.name)

    @property
    def settled(self) -> bool:
        """Scaled to zero, with no pods left, and its status current: safe to delete as history."""
        return (
            self.replicas == 0
            and self.status("replicas") == 0
            and self.status("observedGeneration") >= int(self.meta.get("generation") or 0)
            and not self.meta.get("deletionTimestamp")
        )


@dataclass(slots=True)
class Rollout:
    """The state of one Deployment reconcile: the Deployment, its ReplicaSets and the conditions being built."""

    deployment: Stored
    obj: JSON
    new: ReplicaSetView | None
    old: list[ReplicaSetView]
    conditions: list[JSON] = field(default_factory=list)

    @property
    def spec(self) -> JSON:
        return self.obj.get("spec") or {}

    @property
    def replicas(self) -> int:
        return replicas_of(self.spec)

    @property
    def rolling(self) -> bool:
        return bool((self.spec.get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate")

    def fenceposts(self) -> tuple[int, int]:
        """(maxSurge, maxUnavailable) resolved against spec.replicas; both zero means one unavailable."""
        rolling = (self.spec.get("strategy") or {}).get("rollingUpdate") or {}
        surge = _scaled(rolling.get("maxSurge", 0), self.replicas, True)
        unavailable = _scaled(rolling.get("maxUnavailable", 0), self.replicas, False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, unavailable

    def max_surge(self) -> int:
        return self.fenceposts()[0] if self.rolling else 0

    def max_unavailable(self) -> int:
        if not self.rolling or self.replicas == 0:
            return 0
        return min(self.fenceposts()[1], self.replicas)

    @property
    def replica_sets(self) -> list[ReplicaSetView]:
        return [*self.old, self.new] if self.new is not None else list(self.old)


def _set_condition(conditions: list[JSON], type_: str, status: str, reason: str, message: str, now: str) -> None:
    """deploymentutil.SetDeploymentCondition: no change for the same status and reason; the transition time
    moves only when the status does; the condition goes to the end."""
    current = next((c for c in conditions if c.get("type") == type_), None)
    if current is not None and current.get("status") == status and current.get("reason") == reason:
        return
    condition = {
        "type": type_,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }
    if current is not None and current.get("status") == status:
        condition["lastTransitionTime"] = current.get("lastTransitionTime") or now
    conditions[:] = [c for c in conditions if c.get("type") != type_]
    conditions.append(condition)


def _progressing(conditions: list[JSON]) -> JSON | None:
    return next((c for c in conditions if c.get("type") == "Progressing"), None)


class RSInfo(NamedTuple):
    """What the Deployment controller needs of a ReplicaSet to decide on adopting or releasing it."""

    labels: Mapping[str, str]
    active: bool = True


class DeploymentController(Controller):
    name = "deployment"
    watches = (DEPLOYMENTS.storage_name, REPLICA_SETS.storage_name)

    def __init__(self, registry: Registry, settings: SimSettings) -> None:
        super().__init__(registry, settings)
        self.owners = Owners()
        self.replica_sets: Dependents[RSInfo] = Dependents()
        self._seen_orphans: dict[str, tuple[int, LabelSelector]] = {}
        self.own_writes = OwnWrites()
        self.templates = TemplateKeys()

    # -- observing ------------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[Hashable]:
        keys: list[Hashable] = []
        for stored in self.registry.iter_objects(DEPLOYMENTS):
            self._observe_deployment(stored)
            keys.append(stored.key)
        for rs in self.registry.iter_objects(REPLICA_SETS):
            self._observe_replica_set(rs)
        return keys

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == DEPLOYMENTS.storage_name:
            if change.type == DELETED:
                self.owners.drop(change.obj.uid)
                self._seen_orphans.pop(change.obj.uid, None)
                self.templates.forget(change.obj.uid)
                return ()
            self._observe_deployment(change.obj)
            return () if self.own_writes.caused(change) else (change.key,)
        keys: set[str] = set()
        previous = self.replica_sets.forget(change.key)
        if previous and (key := self.owners.key_of(previous)) is not None:
            keys.add(key)
        if change.type == DELETED:
            self.templates.forget(change.obj.uid)
        else:
            owner_uid = self._observe_replica_set(change.obj)
            if owner_uid and (key := self.owners.key_of(owner_uid)) is not None:
                keys.add(key)
            elif owner_uid == "" and change.key in self.replica_sets.orphans.get(change.obj.namespace, {}):
                keys.update(self.owners.matching(change.obj.namespace, change.obj.labels))
        return keys

    def _observe_deployment(self, stored: Stored) -> None:
        obj = stored.decode()
        self.owners.put(stored.uid, Owner(stored.key, stored.namespace, selector_of(DEPLOYMENTS, obj)))

    def _observe_replica_set(self, rs: Stored) -> str | None:
        """Index `rs`: its Deployment's uid, "" for an orphan, None when something else controls it."""
        meta = rs.decode()["metadata"]
        ref = controller_ref(meta)
        if ref is None:
            if not meta.get("deletionTimestamp"):
                self.replica_sets.orphan(rs.key, rs.namespace, RSInfo(rs.labels))
            return ""
        if ref.get("kind") != DEPLOYMENTS.kind or group_of(str(ref.get("apiVersion") or "")) != DEPLOYMENTS.group:
            return None
        owner_uid = str(ref.get("uid") or "")
        self.replica_sets.own(rs.key, owner_uid, RSInfo(rs.labels))
        return owner_uid

    # -- reconcile ------------------------------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> Requeue | None:
        current = self.registry.bucket(DEPLOYMENTS).get(str(key))
        if current is None:
            return None
        obj = current.decode()
        selector = selector_of(DEPLOYMENTS, obj)
        deleting = bool(obj["metadata"].get("deletionTimestamp"))
        if not deleting and not selector.empty:
            ref = owner_reference(DEPLOYMENTS, current)
            claim(self.registry, REPLICA_SETS, current, ref, selector, self.replica_sets, self._seen_orphans)
        rollout = self._rollout_of(current, obj)
        if deleting or selector.empty:
            self._write_status(rollout, progress=False)
            return None
        if rollout.spec.get("paused") is True:
            self._paused(rollout)
        elif rollout.rolling:
            self._rolling_update(rollout)
        else:
            self._recreate(rollout)
        return None

    def _rollout_of(self, deployment: Stored, obj: JSON) -> Rollout:
        """Split the Deployment's ReplicaSets into the one running its current template (the oldest such) and
        the old ones."""
        bucket = self.registry.bucket(REPLICA_SETS)
        views = []
        for key in self.replica_sets.of(deployment.uid):
            rs = bucket.get(key)
            if rs is not None:
                views.append(ReplicaSetView(rs, rs.decode()))
        views.sort(key=lambda view: view.created)
        wanted = self.templates.of(deployment.uid, obj)
        new = next((v for v in views if self.templates.of(v.stored.uid, v.obj) == wanted), None)
        old = [v for v in views if v is not new]
        conditions = list((obj.get("status") or {}).get("conditions") or [])
        return Rollout(deployment, obj, new, old, conditions)

    # -- strategies -----------------------------------------------------------------------------------------

    def _rolling_update(self, rollout: Rollout) -> None:
        """rolloutRolling: surge the new ReplicaSet up, then drain the old ones, one step per reconcile."""
        self._sync_new_replica_set(rollout, create=True)
        if not self._scale_new_up(rollout):
            self._scale_old_down(rollout)
        self._write_status(rollout, progress=True, cleanup=True)

    def _recreate(self, rollout: Rollout) -> None:
        """rolloutRecreate: every old ReplicaSet to zero, and only once their pods are gone the new one up."""
        self._sync_new_replica_set(rollout, create=False)
        scaled = False
        for view in rollout.old:
            if view.replicas != 0:
                self._scale(rollout, view, 0)
                scaled = True
        if not scaled and not any(view.status("replicas") for view in rollout.old):
            if rollout.new is None:
                self._sync_new_replica_set(rollout, create=True)
            if rollout.new is not None:
                self._scale(rollout, rollout.new, rollout.replicas)
        self._write_status(rollout, progress=True, cleanup=True)

    def _paused(self, rollout: Rollout) -> None:
        """A paused Deployment starts no rollout; a scale change still reaches a ReplicaSet that runs alone."""
        self._sync_new_replica_set(rollout, create=False)
        if rollout.new is not None and not any(view.replicas for view in rollout.old):
            self._scale(rollout, rollout.new, rollout.replicas)
        self._write_status(rollout, progress=False, cleanup=True)

    def _scale_new_up(self, rollout: Rollout) -> bool:
        """reconcileNewReplicaSet: True when the new ReplicaSet was scaled."""
        new = rollout.new
        if new is None or new.replicas == rollout.replicas:
            return False
        if new.replicas > rollout.replicas:
            return self._scale(rollout, new, rollout.replicas)
        return self._scale(rollout, new, self._new_replicas(rollout, new.replicas))

    def _new_replicas(self, rollout: Rollout, current: int) -> int:
        """NewRSNewReplicas: how far the new ReplicaSet may grow without exceeding replicas + maxSurge."""
        if not rollout.rolling:
            return rollout.replicas
        others = sum(view.replicas for view in rollout.replica_sets if view is not rollout.new)
        room = rollout.replicas + rollout.max_surge() - (others + current)
        if room <= 0:
            return current
        return current + min(room, rollout.replicas - current)

    def _scale_old_down(self, rollout: Rollout) -> bool:
        """reconcileOldReplicaSets: drain old ReplicaSets while keeping replicas - maxUnavailable available."""
        new = rollout.new
        old_active = sorted((v for v in rollout.old if v.replicas > 0), key=lambda v: v.created)
        if new is None or not old_active:
            return False
        min_available = rollout.replicas - rollout.max_unavailable()
        all_pods = sum(view.replicas for view in rollout.replica_sets)
        new_unavailable = new.replicas - new.status("availableReplicas")
        budget = all_pods - min_available - new_unavailable
        if budget <= 0:
            return False
        scaled = 0
        # Unhealthy replicas go first: removing them costs no availability.
        for view in old_active:
            if scaled >= budget:
                break
            unhealthy = view.replicas - view.status("availableReplicas")
            if unhealthy <= 0:
                continue
            step = min(budget - scaled, unhealthy)
            self._scale(rollout, view, view.replicas - step)
            scaled += step
        available = sum(view.status("availableReplicas") for view in rollout.replica_sets)
        surplus = available - min_available
        drained = 0
        for view in old_active:
            if drained >= surplus:
                break
            if view.replicas == 0:
                continue
            step = min(view.replicas, surplus - drained)
            self._scale(rollout, view, view.replicas - step)
            drained += step
        return scaled + drained > 0

    # -- ReplicaSet writes ----------------------------------------------------------------------------------

    def _sync_new_replica_set(self, rollout: Rollout, create: bool) -> None:
        """getNewReplicaSet: give the current template's ReplicaSet the next revision (creating it when asked),
        and carry that revision to the Deployment."""
        revision = max((view.revision for view in rollout.old), default=0) + 1
        now = rfc3339(self.registry.clock())
        if rollout.new is None:
            if not create:
                return
            rollout.new = self._create_replica_set(rollout, revision)
            if rollout.new is None:
                return
            message = f'Created new replica set "{rollout.new.name}"'
            _set_condition(rollout.conditions, "Progressing", "True", "NewReplicaSetCreated", message, now)
        else:
            self._annotate_new(rollout, rollout.new, revision)
            if _progressing(rollout.conditions) is None:
                message = f'Found new replica set "{rollout.new.name}"'
                _set_condition(rollout.conditions, "Progressing", "True", "FoundNewReplicaSet", message, now)
        wanted = rollout.new.meta.get("annotations", {}).get(REVISION)
        if wanted is not None and (rollout.obj["metadata"].get("annotations") or {}).get(REVISION) != wanted:
            d = rollout.deployment
            patch = {"metadata": {"annotations": {REVISION: wanted}}}
            rollout.deployment = self.own_writes.write(
                d, lambda: self.registry.patch(DEPLOYMENTS, d.namespace, d.name, "merge", patch).stored
            )
            rollout.obj["metadata"] = rollout.deployment.decode()["metadata"]

    def _copied_annotations(self, rollout: Rollout) -> dict[str, str]:
        annotations = rollout.obj["metadata"].get("annotations") or {}
        return {k: v for k, v in annotations.items() if k not in _NOT_COPIED}

    def _annotate_new(self, rollout: Rollout, view: ReplicaSetView, revision: int) -> None:
        """SetNewReplicaSetAnnotations on an existing new ReplicaSet: Deployment annotations copied, the revision
        raised when it is behind (a rollback to an old template), minReadySeconds carried over."""
        obj = orjson.loads(orjson.dumps(view.obj))
        meta = obj["metadata"]
        annotations = meta.setdefault("annotations", {})
        annotations.update(self._copied_annotations(rollout))
        if _int_annotation(meta, REVISION) < revision:
            annotations[REVISION] = str(revision)
        min_ready = int(rollout.spec.get("minReadySeconds") or 0)
        spec = obj.setdefault("spec", {})
        if int(spec.get("minReadySeconds") or 0) != min_ready:
            spec["minReadySeconds"] = min_ready
        if obj != view.obj:
            self._update_replica_set(rollout, view, obj)

    def _create_replica_set(self, rollout: Rollout, revision: int) -> ReplicaSetView | None:
        """Create `<deployment>-<hash>`. A name taken by a ReplicaSet with another template is a hash collision:
        status.collisionCount goes up and the next reconcile hashes again."""
        deployment = rollout.deployment
        status = rollout.obj.get("status") or {}
        collisions = status.get("collisionCount")
        template = orjson.loads(orjson.dumps(rollout.spec.get("template") or {}))
        template_hash = compute_hash(without_nulls(template), collisions)
        template.setdefault("metadata", {}).setdefault("labels", {})[TEMPLATE_HASH] = template_hash
        selector = orjson.loads(orjson.dumps(rollout.spec.get("selector") or {}))
        selector.setdefault("matchLabels", {})[TEMPLATE_HASH] = template_hash
        annotations = self._copied_annotations(rollout)
        annotations[REVISION] = str(revision)
        annotations[DESIRED_REPLICAS] = str(rollout.replicas)
        annotations[MAX_REPLICAS] = str(rollout.replicas + rollout.max_surge())
        spec: JSON = {"replicas": self._new_replicas(rollout, 0), "selector": selector, "template": template}
        if rollout.spec.get("minReadySeconds"):
            spec["minReadySeconds"] = rollout.spec["minReadySeconds"]
        name = f"{deployment.name}-{template_hash}"
        body = {
            "metadata": {
                "name": name,
                "labels": dict(template["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [owner_reference(DEPLOYMENTS, deployment)],
            },
            "spec": spec,
        }
        try:
            created = self.registry.create(REPLICA_SETS, deployment.namespace, body, field_validation="Ignore")
        except APIError as err:
            if err.code != 409:
                raise
            return self._existing_or_collision(rollout, name, collisions)
        return ReplicaSetView(created.stored, created.stored.decode())

    def _existing_or_collision(self, rollout: Rollout, name: str, collisions: int | None) -> ReplicaSetView | None:
        existing = self.registry.bucket(REPLICA_SETS).get(f"{rollout.deployment.namespace}/{name}")
        if existing is not None:
            obj = existing.decode()
            ref = controller_ref(obj["metadata"]) or {}
            same = self.templates.of(existing.uid, obj) == self.templates.of(rollout.deployment.uid, rollout.obj)
            if ref.get("uid") == rollout.deployment.uid and same:
                return ReplicaSetView(existing, obj)
        status = dict(rollout.obj.get("status") or {})
        status["collisionCount"] = (collisions or 0) + 1
        d = rollout.deployment
        body = {"metadata": {"resourceVersion": str(d.rv)}, "status": status}
        result = self.registry.update(
            DEPLOYMENTS, d.namespace, d.name, body, subresource="status", field_validation="Ignore"
        )
        # The Deployment's own change queues it again, to hash with the new count.
        rollout.deployment = result.stored
        rollout.obj["status"] = status
        return None

    def _scale(self, rollout: Rollout, view: ReplicaSetView, replicas: int) -> bool:
        """scaleReplicaSet: set spec.replicas and the desired/max annotations; True when the size changed."""
        desired = str(rollout.replicas)
        maximum = str(rollout.replicas + rollout.max_surge())
        annotations = view.meta.get("annotations") or {}
        resize = view.replicas != replicas
        if not resize and annotations.get(DESIRED_REPLICAS) == desired and annotations.get(MAX_REPLICAS) == maximum:
            return False
        obj = orjson.loads(orjson.dumps(view.obj))
        obj.setdefault("spec", {})["replicas"] = replicas
        meta_annotations = obj["metadata"].setdefault("annotations", {})
        meta_annotations[DESIRED_REPLICAS] = desired
        meta_annotations[MAX_REPLICAS] = maximum
        self._update_replica_set(rollout, view, obj)
        return resize

    def _update_replica_set(self, rollout: Rollout, view: ReplicaSetView, obj: JSON) -> None:
        """PUT the ReplicaSet against the revision read; the view then holds what the server stored."""
        obj["metadata"]["resourceVersion"] = str(view.stored.rv)
        result = self.registry.update(REPLICA_SETS, view.stored.namespace, view.name, obj, field_validation="Ignore")
        view.stored = result.stored
        view.obj = result.stored.decode()

    def _cleanup(self, rollout: Rollout) -> None:
        """cleanupDeployment: delete the oldest settled old ReplicaSets beyond revisionHistoryLimit."""
        limit = rollout.spec.get("revisionHistoryLimit")
        if limit is None:
            return
        candidates = [view for view in rollout.old if not view.meta.get("deletionTimestamp")]
        surplus = len(candidates) - int(limit)
        if surplus <= 0:
            return
        candidates.sort(key=lambda view: (view.revision, view.created))
        for view in candidates[:surplus]:
            if not view.settled:
                continue
            try:
                self.registry.delete(REPLICA_SETS, view.stored.namespace, view.name, DeleteOptions(uid=view.stored.uid))
            except APIError as err:
                if err.code != 404:
                    raise

    # -- status ---------------------------------------------------------------------------------------------

    def _write_status(self, rollout: Rollout, progress: bool, cleanup: bool = False) -> None:
        """calculateStatus + syncRolloutStatus: counts from the ReplicaSets, the Available condition, and (while
        rolling out) the Progressing one; written through /status when anything changed."""
        old: JSON = rollout.obj.get("status") or {}
        status = self._counts(rollout)
        now = rfc3339(self.registry.clock())
        conditions = rollout.conditions
        if int(status.get("availableReplicas", 0)) >= rollout.replicas - rollout.max_unavailable():
            _set_condition(conditions, "Available", "True", *AVAILABLE, now)
        else:
            _set_condition(conditions, "Available", "False", *UNAVAILABLE, now)
        complete = self._complete(rollout, status)
        current = _progressing(conditions)
        paused_reason = current.get("reason") if current is not None else None
        if rollout.spec.get("paused") is True:
            if paused_reason != PAUSED[0]:
                _set_condition(conditions, "Progressing", "Unknown", *PAUSED, now)
        else:
            if paused_reason == PAUSED[0]:
                _set_condition(conditions, "Progressing", "Unknown", *RESUMED, now)
            if progress:
                self._progress_condition(rollout, old, status, complete, now)
        if conditions:
            status["conditions"] = conditions
        if old.get("collisionCount") is not None:
            status["collisionCount"] = old["collisionCount"]
        if cleanup and complete:
            self._cleanup(rollout)
        if status != old:
            self.own_writes.status(self.registry, DEPLOYMENTS, rollout.deployment, status)

    def _counts(self, rollout: Rollout) -> JSON:
        views = rollout.replica_sets
        total = sum(view.replicas for view in views)
        available = sum(view.status("availableReplicas") for view in views)
        counts = {
            "replicas": sum(view.status("replicas") for view in views),
            "updatedReplicas": rollout.new.status("replicas") if rollout.new is not None else 0,
            "readyReplicas": sum(view.status("readyReplicas") for view in views),
            "availableReplicas": available,
            "unavailableReplicas": max(0, total - available),
        }
        status: JSON = {"observedGeneration": int(rollout.obj["metadata"].get("generation") or 0)}
        status.update({name: value for name, value in counts.items() if value})
        return status

    def _complete(self, rollout: Rollout, status: JSON) -> bool:
        """DeploymentComplete: every replica updated and available, and the spec observed."""
        wanted = rollout.replicas
        return (
            int(status.get("updatedReplicas", 0)) == wanted
            and int(status.get("replicas", 0)) == wanted
            and int(status.get("availableReplicas", 0)) == wanted
            and int(status["observedGeneration"]) >= int(rollout.obj["metadata"].get("generation") or 0)
        )

    def _progress_condition(self, rollout: Rollout, old: JSON, status: JSON, complete: bool, now: str) -> None:
        """The Progressing condition: NewReplicaSetAvailable once complete, ReplicaSetUpdated on any progress."""
        conditions = rollout.conditions
        current = _progressing(conditions)
        if (
            current is not None
            and current.get("reason") == "NewReplicaSetAvailable"
            and status.get("replicas", 0) == status.get("updatedReplicas", 0)
        ):
            return
        new_name = rollout.new.name if rollout.new is not None else None
        if complete:
            message = (
                f'ReplicaSet "{new_name}" has successfully progressed.'
                if new_name is not None
                else f'Deployment "{rollout.deployment.name}" has successfully progressed.'
            )
            _set_condition(conditions, "Progressing", "True", "NewReplicaSetAvailable", message, now)
            return
        if not _made_progress(old, status):
            return
        message = (
            f'ReplicaSet "{new_name}" is progressing.'
            if new_name is not None
            else f'Deployment "{rollout.deployment.name}" is progressing.'
        )
        condition = {
            "type": "Progressing",
            "status": "True",
            "lastUpdateTime": now,
            "lastTransitionTime": now,
            "reason": "ReplicaSetUpdated",
            "message": message,
        }
        if current is not None and current.get("status") == "True":
            condition["lastTransitionTime"] = current.get("lastTransitionTime") or now
        conditions[:] = [c for c in conditions if c.get("type") != "Progressing"]
        conditions.append(condition)


def _made_progress(old: JSON, new: JSON) -> bool:
    """deploymentutil.DeploymentProgressing: more updated, ready or available replicas, or fewer old ones."""

    def count(status: JSON, name: str) -> int:
        return int(status.get(name) or 0)

    old_old = count(old, "replicas") - count(old, "updatedReplicas")
    new_old = count(new, "replicas") - count(new, "updatedReplicas")
    return (
        count(new, "updatedReplicas") > count(old, "updatedReplicas")
        or new_old < old_old
        or count(new, "readyReplicas") > count(old, "readyReplicas")
        or count(new, "availableReplicas") > count(old, "availableReplicas")
    )


CONTROLLERS: dict[str, Factory] = {
    "replicaset": replica_sets,
    "replicationcontroller": replication_controllers,
    "deployment": DeploymentController,
}
