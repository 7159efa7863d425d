"""The relation index: which objects each subscribed node must hold, kept up to date change by change.

Pure: records in, deltas out; no I/O, no asyncio, no gRPC. The informer layer feeds it every add/update/delete of
Pods, Namespaces, owners (ReplicaSet, Deployment, DaemonSet, ReplicationController, StatefulSet, Job, CronJob, Node,
...) and Services; the broker subscribes nodes and fans the returned deltas out to their streams.

For node N the relevant objects are (shared spec, section 3), following ownerReferences by uid:

* the pods with `spec.nodeName == N`;
* the namespaces holding them (when the Namespace object is known);
* each such pod's controlling owner and, when that owner has a controlling owner itself (a ReplicaSet's Deployment,
  a Job's CronJob), that one too, each when the object is known;
* the Services in a pod's namespace whose non-empty selector matches the pod's labels.

Every change returns, per subscribed node, what that node's subscribers must apply: a Create when an object becomes
relevant, an Update when a held object's rendered payload changed (never for an unchanged re-render; it carries the
full payload), and a Delete when it stops being relevant, whether or not any other node still cares.

Work per change is proportional to what it changes, not to the cluster: pods are indexed by node, namespace,
controlling owner and label; owners by their own controlling owner; services by namespace; and each object held
anywhere knows the nodes holding it. Derived state (rendered pod payloads, which Services match a pod, per-node
reference counts) exists only for pods on subscribed nodes, so unsubscribed nodes cost nothing but the indexes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple, TypeVar

from nodemeta.collector.model import (
    NAMESPACE,
    POD,
    REPLICA_SET,
    SERVICE,
    NamespaceInfo,
    ObjectInfo,
    ObjectRef,
    OwnerInfo,
    PodInfo,
    Reason,
    ServiceInfo,
)
from nodemeta.collector.render import Payload, object_payload, pod_refs, render_meta, render_pod_status

_K = TypeVar("_K")
_S = TypeVar("_S")
# Entries of the index's pool of shared values: a few per ReplicaSet with pods on subscribed nodes.
_SHARED_LIMIT = 1 << 16
_V = TypeVar("_V")

# Kinds the index renders itself; an owner record may not claim them.
_RESERVED_KINDS = frozenset({POD, NAMESPACE, SERVICE})


class Delta(NamedTuple):
    """One event for the subscribers of `node`. `payload` is None exactly for a Delete."""

    node: str
    reason: Reason
    kind: str
    uid: str
    payload: Payload | None


class _PodState:
    """What a pod on a subscribed node contributes: its rendered payload and the objects it makes relevant."""

    __slots__ = ("deps", "meta", "node", "payload", "services", "status")

    def __init__(
        self, node: str, meta: str, status: str, services: frozenset[str], payload: Payload, deps: tuple[ObjectRef, ...]
    ) -> None:
        self.node = node
        self.meta = meta
        self.status = status
        # Uids of the Services whose selector matches the pod.
        self.services = services
        self.payload = payload
        # The known objects this pod makes relevant to its node (namespace, owners, services), without repeats.
        self.deps = deps


# node -> refs to settle, in first-touched order (a dict used as an ordered set).
_Touched = dict[str, dict[ObjectRef, None]]


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A Service selector: label equality on every key; an empty selector selects nothing."""
    if not selector:
        return False
    return all(labels.get(key) == value for key, value in selector.items())


class RelationIndex:
    """The cluster's relations and, for every subscribed node, the exact set of (kind, uid) -> Payload it holds."""

    def __init__(self) -> None:
        # The cluster as last seen.
        self._pods: dict[str, PodInfo] = {}
        self._namespaces: dict[str, NamespaceInfo] = {}  # by name: pods name their namespace
        self._owners: dict[ObjectRef, OwnerInfo] = {}
        self._services: dict[str, ServiceInfo] = {}
        # Rendered payloads of every known non-pod object, shared by every node holding it.
        self._objects: dict[ObjectRef, Payload] = {}
        # Indexes.
        self._pods_by_node: dict[str, set[str]] = {}
        self._pods_by_namespace: dict[str, set[str]] = {}
        self._pods_by_owner: dict[ObjectRef, set[str]] = {}
        self._pods_by_label: dict[tuple[str, str, str], set[str]] = {}  # (namespace, key, value)
        self._owners_by_owner: dict[ObjectRef, set[ObjectRef]] = {}
        self._services_by_namespace: dict[str, dict[str, ServiceInfo]] = {}
        # Services by one pair of their selector (namespace, key, value): the smallest pair, so a pod can only be
        # selected by services filed under one of its own labels. Matching a pod then costs a few lookups, not a
        # scan of every service in its namespace (hundreds in a large namespace, per pod, on every subscribe).
        self._services_by_selector: dict[tuple[str, str, str], set[str]] = {}
        # Subscribed nodes.
        self._subscriptions: dict[str, int] = {}
        self._pod_state: dict[str, _PodState] = {}
        self._counts: dict[str, dict[ObjectRef, int]] = {}  # node -> object -> pods on the node relating to it
        self._held: dict[str, dict[ObjectRef, Payload]] = {}
        self._holders: dict[ObjectRef, set[str]] = {}  # non-pod object -> subscribed nodes holding it
        # One copy of each equal refs tuple, service set and dependency tuple: the pods of one ReplicaSet share
        # all three, which saves about 25 KiB per subscribed node of 30 pods (they are most of a pod's state).
        self._shared: dict[object, object] = {}

    # -- reading ----------------------------------------------------------------------------------------------

    def is_subscribed(self, node: str) -> bool:
        return node in self._subscriptions

    def view(self, node: str) -> Mapping[ObjectRef, Payload]:
        """What a subscriber of `node` holds right now (read-only, live); empty for an unsubscribed node."""
        return MappingProxyType(self._held.get(node, {}))

    def snapshot(self, node: str) -> list[Delta]:
        """The node's current view as Creates, related objects before the pods that refer to them."""
        held = self._held.get(node, {})
        others = [_create(node, p) for ref, p in held.items() if ref.kind != POD]
        return others + [_create(node, p) for ref, p in held.items() if ref.kind == POD]

    def pods_on(self, node: str) -> int:
        return len(self._pods_by_node.get(node, ()))

    def __len__(self) -> int:
        """Objects known to the index."""
        return len(self._pods) + len(self._objects)

    # -- subscriptions ------------------------------------------------------------------------------------------

    def subscribe(self, node: str) -> list[Delta]:
        """Count one more subscriber for `node`; returns everything it must hold now, as Creates.

        The first subscription of a node builds its view from the pods-by-node index (work proportional to the
        node's pods); later ones copy the view.
        """
        if not node:
            raise ValueError("a subscription needs a node name")
        count = self._subscriptions.get(node, 0)
        self._subscriptions[node] = count + 1
        if count:
            return self.snapshot(node)
        self._counts[node] = {}
        self._held[node] = {}
        touched: _Touched = {}
        for uid in sorted(self._pods_by_node.get(node, ())):
            state = self._derive(self._pods[uid], None, None)
            self._pod_state[uid] = state
            self._place(uid, None, state, touched)
        return self._settle(touched)

    def unsubscribe(self, node: str) -> None:
        """Count one subscriber less; the node's derived state goes with its last subscriber."""
        count = self._subscriptions.get(node, 0)
        if count > 1:
            self._subscriptions[node] = count - 1
            return
        if count == 0:
            return
        del self._subscriptions[node]
        for uid in self._pods_by_node.get(node, ()):
            self._pod_state.pop(uid, None)
        for ref in self._counts.pop(node):
            holders = self._holders[ref]
            holders.discard(node)
            if not holders:
                del self._holders[ref]
        del self._held[node]

    def unsubscribe_all(self) -> None:
        """Forget every subscription and all derived state at once (shutdown); the index keeps following the
        cluster."""
        self._subscriptions.clear()
        self._pod_state.clear()
        self._counts.clear()
        self._held.clear()
        self._holders.clear()
        self._shared.clear()

    # -- changes ------------------------------------------------------------------------------------------------

    def apply(self, info: ObjectInfo) -> list[Delta]:
        """An object was added or updated (informer ADDED/MODIFIED, or a relist's current state)."""
        if isinstance(info, PodInfo):
            return self._apply_pod(info)
        if isinstance(info, NamespaceInfo):
            return self._apply_namespace(info)
        if isinstance(info, ServiceInfo):
            return self._apply_service(info)
        return self._apply_owner(info)

    def delete(self, info: ObjectInfo) -> list[Delta]:
        """An object was deleted; `info` is its last known state (only its identity is used). Deleting what the
        index does not hold (or a namespace name now held by another uid) changes nothing."""
        if isinstance(info, PodInfo):
            return self._delete_pod(info.uid)
        if isinstance(info, NamespaceInfo):
            return self._delete_namespace(info)
        if isinstance(info, ServiceInfo):
            return self._delete_service(info.uid)
        return self._delete_owner(info.ref)

    # -- pods ---------------------------------------------------------------------------------------------------

    def _apply_pod(self, pod: PodInfo) -> list[Delta]:
        old = self._pods.get(pod.uid)
        if old == pod:
            return []
        self._pods[pod.uid] = pod
        self._reindex_pod(old, pod)
        old_state = self._pod_state.pop(pod.uid, None)
        new_state = None
        if pod.node_name in self._subscriptions:
            new_state = self._derive(pod, old, old_state)
            self._pod_state[pod.uid] = new_state
        touched: _Touched = {}
        self._place(pod.uid, old_state, new_state, touched)
        return self._settle(touched)

    def _delete_pod(self, uid: str) -> list[Delta]:
        old = self._pods.pop(uid, None)
        if old is None:
            return []
        self._reindex_pod(old, None)
        touched: _Touched = {}
        self._place(uid, self._pod_state.pop(uid, None), None, touched)
        return self._settle(touched)

    def _reindex_pod(self, old: PodInfo | None, new: PodInfo | None) -> None:
        uid = new.uid if new is not None else old.uid if old is not None else ""
        old_node = old.node_name if old is not None else ""
        new_node = new.node_name if new is not None else ""
        if old_node != new_node:
            if old_node:
                _unlink(self._pods_by_node, old_node, uid)
            if new_node:
                self._pods_by_node.setdefault(new_node, set()).add(uid)
        old_ns = old.namespace if old is not None else None
        new_ns = new.namespace if new is not None else None
        if old_ns != new_ns:
            if old_ns is not None:
                _unlink(self._pods_by_namespace, old_ns, uid)
            if new_ns is not None:
                self._pods_by_namespace.setdefault(new_ns, set()).add(uid)
        old_owner = old.controller_owner if old is not None else None
        new_owner = new.controller_owner if new is not None else None
        if old_owner != new_owner:
            if old_owner is not None:
                _unlink(self._pods_by_owner, old_owner, uid)
            if new_owner is not None:
                self._pods_by_owner.setdefault(new_owner, set()).add(uid)
        old_labels = _label_keys(old)
        new_labels = _label_keys(new)
        if old_labels != new_labels:
            for key in old_labels - new_labels:
                _unlink(self._pods_by_label, key, uid)
            for key in new_labels - old_labels:
                self._pods_by_label.setdefault(key, set()).add(uid)

    # -- namespaces ---------------------------------------------------------------------------------------------

    def _apply_namespace(self, ns: NamespaceInfo) -> list[Delta]:
        old = self._namespaces.get(ns.name)
        if old == ns:
            return []
        self._namespaces[ns.name] = ns
        ref = ObjectRef(NAMESPACE, ns.uid)
        payload = object_payload(ns)
        touched: _Touched = {}
        if old is not None and old.uid == ns.uid:
            if self._objects[ref] != payload:
                self._objects[ref] = payload
                self._touch_holders(ref, touched)
            return self._settle(touched)
        if old is not None:  # the name now belongs to another object
            del self._objects[ObjectRef(NAMESPACE, old.uid)]
        self._objects[ref] = payload
        self._refresh(self._pods_by_namespace.get(ns.name, ()), touched)
        return self._settle(touched)

    def _delete_namespace(self, ns: NamespaceInfo) -> list[Delta]:
        current = self._namespaces.get(ns.name)
        if current is None or current.uid != ns.uid:
            return []
        del self._namespaces[ns.name]
        del self._objects[ObjectRef(NAMESPACE, ns.uid)]
        touched: _Touched = {}
        self._refresh(self._pods_by_namespace.get(ns.name, ()), touched)
        return self._settle(touched)

    # -- owners -------------------------------------------------------------------------------------------------

    def _apply_owner(self, owner: OwnerInfo) -> list[Delta]:
        if owner.kind in _RESERVED_KINDS:
            raise ValueError(f"{owner.kind} is not an owner kind")
        ref = owner.ref
        old = self._owners.get(ref)
        if old == owner:
            return []
        self._owners[ref] = owner
        old_parent = old.controller_owner if old is not None else None
        if old_parent != owner.controller_owner:
            if old_parent is not None:
                _unlink(self._owners_by_owner, old_parent, ref)
            if owner.controller_owner is not None:
                self._owners_by_owner.setdefault(owner.controller_owner, set()).add(ref)
        payload = object_payload(owner)
        old_payload = self._objects.get(ref)
        self._objects[ref] = payload
        touched: _Touched = {}
        if old is None:
            # Pods owned by it, and pods owned by owners it controls, now relate to a known object.
            self._refresh(self._owner_dependents(ref), touched)
        else:
            if old_parent != owner.controller_owner:  # adopted or orphaned: its pods' chains change
                self._refresh(self._pods_by_owner.get(ref, ()), touched)
            if old_payload != payload:
                self._touch_holders(ref, touched)
        return self._settle(touched)

    def _delete_owner(self, ref: ObjectRef) -> list[Delta]:
        old = self._owners.pop(ref, None)
        if old is None:
            return []
        if old.controller_owner is not None:
            _unlink(self._owners_by_owner, old.controller_owner, ref)
        del self._objects[ref]
        touched: _Touched = {}
        self._refresh(self._owner_dependents(ref), touched)
        return self._settle(touched)

    def _owner_dependents(self, ref: ObjectRef) -> set[str]:
        """Pods whose relations depend on whether `ref` exists: its own pods and its controlled owners' pods."""
        pods = set(self._pods_by_owner.get(ref, ()))
        for child in self._owners_by_owner.get(ref, ()):
            pods.update(self._pods_by_owner.get(child, ()))
        return pods

    # -- services -----------------------------------------------------------------------------------------------

    def _apply_service(self, svc: ServiceInfo) -> list[Delta]:
        old = self._services.get(svc.uid)
        if old == svc:
            return []
        touched: _Touched = {}
        if old is not None and old.namespace != svc.namespace:
            self._remove_service(old, touched)
            old = None
        self._services[svc.uid] = svc
        self._services_by_namespace.setdefault(svc.namespace, {})[svc.uid] = svc
        old_key = _selector_key(old) if old is not None else None
        new_key = _selector_key(svc)
        if old_key != new_key:
            if old_key is not None:
                _unlink(self._services_by_selector, old_key, svc.uid)
            if new_key is not None:
                self._services_by_selector.setdefault(new_key, set()).add(svc.uid)
        ref = ObjectRef(SERVICE, svc.uid)
        payload = object_payload(svc)
        old_payload = self._objects.get(ref)
        self._objects[ref] = payload
        old_selector = old.selector if old is not None else {}
        if old is None or old_selector != svc.selector:
            self._rematch(svc.namespace, svc.uid, old_selector, svc.selector, touched)
        if old is not None and old_payload != payload:
            self._touch_holders(ref, touched)
        return self._settle(touched)

    def _delete_service(self, uid: str) -> list[Delta]:
        old = self._services.get(uid)
        if old is None:
            return []
        touched: _Touched = {}
        self._remove_service(old, touched)
        return self._settle(touched)

    def _remove_service(self, svc: ServiceInfo, touched: _Touched) -> None:
        del self._services[svc.uid]
        in_namespace = self._services_by_namespace[svc.namespace]
        del in_namespace[svc.uid]
        if not in_namespace:
            del self._services_by_namespace[svc.namespace]
        key = _selector_key(svc)
        if key is not None:
            _unlink(self._services_by_selector, key, svc.uid)
        del self._objects[ObjectRef(SERVICE, svc.uid)]
        self._rematch(svc.namespace, svc.uid, svc.selector, {}, touched)

    def _rematch(
        self, namespace: str, uid: str, old: Mapping[str, str], new: Mapping[str, str], touched: _Touched
    ) -> None:
        """Service `uid` now selects `new` (empty once deleted): update the pods it selected or selects."""
        candidates = self._selected(namespace, old) | self._selected(namespace, new)
        for pod_uid in sorted(candidates):
            state = self._pod_state.get(pod_uid)
            if state is None:
                continue
            member = selects(new, self._pods[pod_uid].labels)
            if member == (uid in state.services):
                continue
            services = state.services | {uid} if member else state.services - {uid}
            new_state = self._resolve(self._pods[pod_uid], state.node, state.meta, state.status, services)
            self._pod_state[pod_uid] = new_state
            self._place(pod_uid, state, new_state, touched)

    def _selected(self, namespace: str, selector: Mapping[str, str]) -> set[str]:
        """Uids of the pods in `namespace` that `selector` selects, through the label index."""
        if not selector:
            return set()
        groups = []
        for key, value in selector.items():
            group = self._pods_by_label.get((namespace, key, value))
            if not group:
                return set()
            groups.append(group)
        groups.sort(key=len)
        return groups[0].intersection(*groups[1:])

    def _matching_services(self, pod: PodInfo) -> frozenset[str]:
        if pod.namespace not in self._services_by_namespace:
            return frozenset()
        by_selector = self._services_by_selector
        services = self._services
        namespace = pod.namespace
        labels = pod.labels
        found: list[str] = []
        for key, value in labels.items():
            candidates = by_selector.get((namespace, key, value))
            if candidates:
                found.extend(uid for uid in candidates if selects(services[uid].selector, labels))
        return frozenset(found)

    # -- derived pod state --------------------------------------------------------------------------------------

    def _derive(self, pod: PodInfo, old: PodInfo | None, state: _PodState | None) -> _PodState:
        """The state of a pod on a subscribed node, reusing what its previous state already rendered."""
        if state is not None and old is not None:
            same_meta = (old.name, old.generate_name, old.namespace, old.labels) == (
                pod.name, pod.generate_name, pod.namespace, pod.labels
            )  # fmt: skip
            meta = state.meta if same_meta else render_meta(pod)
            status = state.status if old.pod_ip == pod.pod_ip else render_pod_status(pod.pod_ip)
            same_match = old.namespace == pod.namespace and old.labels == pod.labels
            services = state.services if same_match else self._matching_services(pod)
        else:
            meta = render_meta(pod)
            status = render_pod_status(pod.pod_ip)
            services = self._matching_services(pod)
        return self._resolve(pod, pod.node_name, meta, status, services)

    def _resolve(self, pod: PodInfo, node: str, meta: str, status: str, services: frozenset[str]) -> _PodState:
        """Follow the pod's relations (namespace, owner chain, services) to its refs and dependencies."""
        deps: list[ObjectRef] = []
        namespace = self._namespaces.get(pod.namespace)
        namespace_uid = None
        if namespace is not None:
            namespace_uid = namespace.uid
            deps.append(ObjectRef(NAMESPACE, namespace.uid))
        owner_ref = pod.controller_owner
        chained = None
        if owner_ref is not None:
            owner = self._owners.get(owner_ref)
            if owner is not None:
                deps.append(owner_ref)
                parent = owner.controller_owner
                if parent is not None:
                    # Only a ReplicaSet's owner appears in refs; any owner's known owner is relevant.
                    if owner_ref.kind == REPLICA_SET:
                        chained = parent
                    if parent in self._owners and parent != owner_ref:
                        deps.append(parent)
        ordered = sorted(services)
        deps.extend(ObjectRef(SERVICE, uid) for uid in ordered)
        refs = self._share(pod_refs(namespace_uid, owner_ref, chained, ordered))
        payload = Payload(POD, pod.uid, meta, status, refs)
        return _PodState(node, meta, status, self._share(services), payload, self._share(tuple(deps)))

    def _share(self, value: _S) -> _S:
        """The index's copy of a value equal to `value` (hashable, immutable). The pool is emptied when it reaches
        `_SHARED_LIMIT` entries, so values no pod uses any more do not pile up; that only costs some sharing."""
        shared = self._shared
        found = shared.get(value)
        if found is not None:
            return found  # type: ignore[return-value]
        if len(shared) >= _SHARED_LIMIT:
            shared.clear()
        shared[value] = value
        return value

    def _refresh(self, pod_uids: Iterable[str], touched: _Touched) -> None:
        """Re-resolve the relations of these pods (those on subscribed nodes) after a related object changed."""
        for uid in sorted(pod_uids):
            state = self._pod_state.get(uid)
            if state is None:
                continue
            new_state = self._resolve(self._pods[uid], state.node, state.meta, state.status, state.services)
            self._pod_state[uid] = new_state
            self._place(uid, state, new_state, touched)

    # -- per-node bookkeeping -----------------------------------------------------------------------------------

    def _place(self, uid: str, old: _PodState | None, new: _PodState | None, touched: _Touched) -> None:
        """Move a pod's contributions from its old state to its new one and mark what may have changed."""
        state = new if new is not None else old
        pod_ref = state.payload.ref if state is not None else ObjectRef(POD, uid)
        if old is not None and new is not None and old.node == new.node:
            node = new.node
            if old.deps != new.deps:
                for ref in old.deps:
                    if ref not in new.deps:
                        self._release(node, ref, touched)
                for ref in new.deps:
                    if ref not in old.deps:
                        self._acquire(node, ref, touched)
            if old.payload != new.payload:
                touched.setdefault(node, {})[pod_ref] = None
            return
        if old is not None:
            for ref in old.deps:
                self._release(old.node, ref, touched)
            touched.setdefault(old.node, {})[pod_ref] = None
        if new is not None:
            for ref in new.deps:
                self._acquire(new.node, ref, touched)
            touched.setdefault(new.node, {})[pod_ref] = None

    def _acquire(self, node: str, ref: ObjectRef, touched: _Touched) -> None:
        counts = self._counts[node]
        count = counts.get(ref, 0)
        counts[ref] = count + 1
        if count == 0:
            self._holders.setdefault(ref, set()).add(node)
            touched.setdefault(node, {})[ref] = None

    def _release(self, node: str, ref: ObjectRef, touched: _Touched) -> None:
        counts = self._counts[node]
        count = counts[ref]
        if count > 1:
            counts[ref] = count - 1
            return
        del counts[ref]
        _unlink(self._holders, ref, node)
        touched.setdefault(node, {})[ref] = None

    def _touch_holders(self, ref: ObjectRef, touched: _Touched) -> None:
        for node in self._holders.get(ref, ()):
            touched.setdefault(node, {})[ref] = None

    def _wanted(self, node: str, ref: ObjectRef) -> Payload | None:
        if ref.kind == POD:
            state = self._pod_state.get(ref.uid)
            return state.payload if state is not None and state.node == node else None
        return self._objects.get(ref) if ref in self._counts[node] else None

    def _settle(self, touched: _Touched) -> list[Delta]:
        """Bring each touched node's view in line with what it should hold, returning the differences.

        Per node: Creates and Updates of related objects first, then pod events, then Deletes of related objects,
        so a pod's references resolve when it arrives.
        """
        out: list[Delta] = []
        for node, refs in touched.items():
            held = self._held.get(node)
            if held is None:
                continue
            pods: list[Delta] = []
            gone: list[Delta] = []
            for ref in refs:
                want = self._wanted(node, ref)
                have = held.get(ref)
                if want is None:
                    if have is not None:
                        del held[ref]
                        (pods if ref.kind == POD else gone).append(Delta(node, Reason.DELETE, ref.kind, ref.uid, None))
                    continue
                if have is None:
                    delta = Delta(node, Reason.CREATE, ref.kind, ref.uid, want)
                elif have is not want and have != want:
                    delta = Delta(node, Reason.UPDATE, ref.kind, ref.uid, want)
                else:
                    continue
                held[ref] = want
                (pods if ref.kind == POD else out).append(delta)
            out.extend(pods)
            out.extend(gone)
        return out


def view_changes(node: str, before: Mapping[ObjectRef, Payload], after: Mapping[ObjectRef, Payload]) -> list[Delta]:
    """The deltas that turn a subscriber holding `before` into one holding `after` (e.g. on a resubscribe within
    the grace period: Deletes for what vanished meanwhile, Creates and Updates for the rest)."""
    out = [
        Delta(node, Reason.CREATE if ref not in before else Reason.UPDATE, ref.kind, ref.uid, payload)
        for ref, payload in after.items()
        if before.get(ref) != payload
    ]
    out.extend(Delta(node, Reason.DELETE, ref.kind, ref.uid, None) for ref in before if ref not in after)
    return out


def _create(node: str, payload: Payload) -> Delta:
    return Delta(node, Reason.CREATE, payload.kind, payload.uid, payload)


def _selector_key(svc: ServiceInfo) -> tuple[str, str, str] | None:
    """Where a service is filed in the selector index: its namespace and smallest selector pair (None when the
    selector is empty and selects nothing)."""
    if not svc.selector:
        return None
    key, value = min(svc.selector.items())
    return (svc.namespace, key, value)


def _label_keys(pod: PodInfo | None) -> set[tuple[str, str, str]]:
    return {(pod.namespace, k, v) for k, v in pod.labels.items()} if pod is not None else set()


def _unlink(index: dict[_K, set[_V]], key: _K, member: _V) -> None:
    """Remove `member` from `index[key]`, dropping the entry when it empties."""
    group = index.get(key)
    if group is not None:
        group.discard(member)
        if not group:
            del index[key]
