"""The garbage collector: cascading deletion through metadata.ownerReferences, as kube-controller-manager's.

The collector keeps a graph of every stored object that matters to it (keyed by uid) and, for each owner uid,
the dependents that name it. The graph is maintained synchronously from every change of every storage, so it is
never behind the store; decisions are still taken on objects read back through the registry at reconcile time,
as the real collector re-reads an item before acting on it.

Two kinds of work, as the real collector's two queues:

* (DELETE, uid) is `attemptToDeleteItem`: an object whose owners may be gone (delete it when every owner is
  absent, or drop the dangling references when a live owner remains), or an owner deleting its dependents in the
  foreground (delete the blocking dependents, then release the `foregroundDeletion` finalizer);
* (ORPHAN_WORK, uid) is `attemptToOrphan`: an owner deleted with propagationPolicy=Orphan (strip the reference from
  every dependent, then release the `orphan` finalizer).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from nodemeta.sim.controllers.base import Controller, Factory, Requeue
from nodemeta.sim.errors import APIError
from nodemeta.sim.registry import DeleteOptions, Registry
from nodemeta.sim.resources import JSON, ResourceType, by_kind, stored_resources
from nodemeta.sim.settings import SimSettings
from nodemeta.sim.store import DELETED, Change, Stored, object_key

log = structlog.get_logger("nodemeta.sim.controllers.gc")

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
# The two kinds of work, queued as (kind, uid).
DELETE = "attempt-to-delete"
ORPHAN_WORK = "attempt-to-orphan"

# Most writes (pod status, leases, events) carry neither; checking the encoded bytes spares decoding them.
_OWNER_REFS_MARK = b'"ownerReferences"'
_DELETION_MARK = b'"deletionTimestamp"'


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """One metadata.ownerReferences entry, as the collector compares them."""

    uid: str
    api_version: str
    kind: str
    name: str
    block: bool

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]


@dataclass(frozen=True, slots=True)
class Node:
    """What the graph knows of one stored object."""

    storage: str
    namespace: str
    name: str
    refs: tuple[OwnerRef, ...] = ()
    # deletionTimestamp plus the finalizer of a foreground deletion: its dependents go first.
    deleting_dependents: bool = False
    # deletionTimestamp plus the `orphan` finalizer: its dependents lose their reference to it.
    orphaning: bool = False

    @property
    def key(self) -> str:
        return object_key(self.namespace, self.name)


class Unresolvable(Exception):
    """An owner reference the collector cannot check (unknown kind, or a namespaced owner of a cluster object)."""


def parse_refs(meta: JSON) -> tuple[OwnerRef, ...]:
    refs = []
    for entry in meta.get("ownerReferences") or ():
        if isinstance(entry, dict) and entry.get("uid"):
            refs.append(
                OwnerRef(
                    uid=str(entry["uid"]),
                    api_version=str(entry.get("apiVersion") or ""),
                    kind=str(entry.get("kind") or ""),
                    name=str(entry.get("name") or ""),
                    block=entry.get("blockOwnerDeletion") is True,
                )
            )
    return tuple(refs)


def node_of(storage: str, stored: Stored) -> Node:
    """The graph's view of `stored`, decoding it only when it can carry references or a pending deletion."""
    body = stored.body
    if _OWNER_REFS_MARK not in body and _DELETION_MARK not in body:
        return Node(storage, stored.namespace, stored.name)
    meta = stored.decode()["metadata"]
    deleting = bool(meta.get("deletionTimestamp"))
    finalizers = meta.get("finalizers") or ()
    return Node(
        storage,
        stored.namespace,
        stored.name,
        parse_refs(meta),
        deleting_dependents=deleting and FOREGROUND in finalizers,
        orphaning=deleting and ORPHAN in finalizers,
    )


class GarbageCollector(Controller):
    name = "garbagecollector"
    watches = tuple(r.storage_name for r in stored_resources())

    def __init__(self, registry: Registry, settings: SimSettings) -> None:
        super().__init__(registry, settings)
        self._resources: dict[str, ResourceType] = {r.storage_name: r for r in stored_resources()}
        self._nodes: dict[str, Node] = {}
        # owner uid -> uids of the objects whose ownerReferences name it (the owner may not exist).
        self._dependents: dict[str, set[str]] = {}

    # -- the graph ------------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[Hashable]:
        """Build the graph from everything stored, then queue what needs attention now."""
        for storage, res in self._resources.items():
            for stored in self.registry.iter_objects(res):
                if stored.uid:
                    node = node_of(storage, stored)
                    self._nodes[stored.uid] = node
                    self._link(stored.uid, node.refs)
        keys: list[Hashable] = []
        for uid, node in self._nodes.items():
            if any(not self._owner_present(ref, node) for ref in node.refs):
                keys.append((DELETE, uid))
            keys.extend(self._owner_work(uid, node, None))
        return keys

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        uid = change.obj.uid
        if not uid:
            return ()
        if change.type == DELETED:
            return self._forget(uid)
        return self._observe(uid, node_of(storage, change.obj))

    def _observe(self, uid: str, node: Node) -> list[Hashable]:
        old = self._nodes.get(uid)
        self._nodes[uid] = node
        keys: list[Hashable] = []
        old_refs = old.refs if old is not None else ()
        if old_refs != node.refs:
            self._unlink(uid, old_refs, node.refs)
            self._link(uid, node.refs)
            # A dependent that dropped or unblocked its reference may be what a foreground owner waits for.
            keys.extend((DELETE, ref.uid) for ref in old_refs if ref not in node.refs and self._waits(ref.uid))
            # A new reference to an absent owner (or to an object that is not the one named) needs verifying.
            fresh = (ref for ref in node.refs if ref not in old_refs)
            if any(not self._owner_present(ref, node) for ref in fresh):
                keys.append((DELETE, uid))
        keys.extend(self._owner_work(uid, node, old))
        return keys

    def _owner_work(self, uid: str, node: Node, old: Node | None) -> Iterator[Hashable]:
        if node.deleting_dependents:
            yield (DELETE, uid)
            if old is None or not old.deleting_dependents:
                # Entering a foreground deletion: every dependent is looked at once, blocking or not.
                yield from ((DELETE, dependent) for dependent in self._dependents.get(uid, ()))
        if node.orphaning:
            yield (ORPHAN_WORK, uid)

    def _forget(self, uid: str) -> list[Hashable]:
        node = self._nodes.pop(uid, None)
        if node is None:
            return []
        self._unlink(uid, node.refs, ())
        # The owner is gone: each dependent now has (at least) one absent owner.
        keys: list[Hashable] = [(DELETE, dependent) for dependent in self._dependents.get(uid, ())]
        keys.extend((DELETE, ref.uid) for ref in node.refs if self._waits(ref.uid))
        return keys

    def _link(self, uid: str, refs: tuple[OwnerRef, ...]) -> None:
        for ref in refs:
            self._dependents.setdefault(ref.uid, set()).add(uid)

    def _unlink(self, uid: str, old: tuple[OwnerRef, ...], new: tuple[OwnerRef, ...]) -> None:
        if not old:
            return
        for owner in {ref.uid for ref in old} - {ref.uid for ref in new}:
            dependents = self._dependents.get(owner)
            if dependents is not None:
                dependents.discard(uid)
                if not dependents:
                    del self._dependents[owner]

    def _waits(self, owner_uid: str) -> bool:
        owner = self._nodes.get(owner_uid)
        return owner is not None and owner.deleting_dependents

    def _owner_present(self, ref: OwnerRef, dependent: Node) -> bool:
        """Whether the graph holds an object with the reference's uid that is the object the reference names."""
        owner = self._nodes.get(ref.uid)
        if owner is None:
            return False
        res = self._resources[owner.storage]
        return (
            owner.name == ref.name
            and res.kind == ref.kind
            and res.group == ref.group
            and owner.namespace in ("", dependent.namespace)
        )

    # -- reconcile ------------------------------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> Requeue | None:
        assert isinstance(key, tuple)
        work, uid = key
        found = self._current(uid)
        if found is None:
            return None
        res, current = found
        meta: JSON = current.decode()["metadata"]
        if work == ORPHAN_WORK:
            self._orphan_dependents(res, current, meta)
        else:
            self._attempt_to_delete(res, current, meta)
        return None

    def _current(self, uid: str) -> tuple[ResourceType, Stored] | None:
        """The live object with `uid`, read through the registry (None once it is gone or replaced)."""
        node = self._nodes.get(uid)
        if node is None:
            return None
        res = self._resources[node.storage]
        current = self.registry.bucket(res).get(node.key)
        if current is None or current.uid != uid:
            return None
        return res, current

    def _attempt_to_delete(self, res: ResourceType, current: Stored, meta: JSON) -> None:
        finalizers = meta.get("finalizers") or ()
        if meta.get("deletionTimestamp"):
            if FOREGROUND in finalizers:
                self._delete_dependents_first(res, current, meta)
            # Otherwise the deletion is already under way: its dependents are dealt with once it is gone.
            return
        refs = parse_refs(meta)
        if not refs:
            return
        try:
            solid, dangling, waiting = self._classify(current, refs)
        except Unresolvable as err:
            log.info("owner reference not checked", object=current.key, kind=res.kind, reason=str(err))
            return
        if solid:
            if dangling or waiting:
                # Keep the object for its live owners; a reference to a foreground owner is dropped too, or
                # that owner would wait on this object forever.
                self._drop_refs(res, current, meta, {ref.uid for ref in (*dangling, *waiting)})
            return
        if waiting and self._dependents.get(current.uid):
            # Deleting for an owner in the foreground while having dependents of its own: foreground too, so
            # the cascade stays ordered all the way down.
            if any(self._waits(dependent) for dependent in self._dependents[current.uid]):
                # A dependent that is itself waiting could wait on us forever (a cycle): stop blocking owners.
                current = self._unblock_owners(res, current, meta)
            self._delete(res, current, "Foreground")
            return
        if ORPHAN in finalizers:
            policy = "Orphan"
        elif FOREGROUND in finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        self._delete(res, current, policy)

    def _classify(
        self, dependent: Stored, refs: tuple[OwnerRef, ...]
    ) -> tuple[list[OwnerRef], list[OwnerRef], list[OwnerRef]]:
        """Split references into live owners, absent owners and owners deleting their dependents first."""
        solid: list[OwnerRef] = []
        dangling: list[OwnerRef] = []
        waiting: list[OwnerRef] = []
        for ref in refs:
            owner = self._lookup_owner(ref, dependent.namespace)
            if owner is None or owner.uid != ref.uid:
                dangling.append(ref)
            elif self._waits(owner.uid):
                waiting.append(ref)
            else:
                solid.append(ref)
        return solid, dangling, waiting

    def _lookup_owner(self, ref: OwnerRef, namespace: str) -> Stored | None:
        """GET the owner the reference names: by kind and name, in the dependent's namespace when namespaced."""
        res = by_kind(ref.api_version, ref.kind)
        if res is None or res.virtual:
            raise Unresolvable(f"no resource for {ref.api_version} {ref.kind}")
        if res.namespaced and not namespace:
            raise Unresolvable(f"cluster-scoped object owned by namespaced {ref.kind} {ref.name}")
        return self.registry.bucket(res).get(object_key(namespace if res.namespaced else "", ref.name))

    def _delete_dependents_first(self, res: ResourceType, owner: Stored, meta: JSON) -> None:
        """Foreground deletion: release the owner once no dependent blocks it, else push the blockers along."""
        blocking = [dependent for dependent in self._dependents.get(owner.uid, ()) if self._blocks(dependent, owner)]
        if not blocking:
            self._remove_finalizer(res, owner, meta, FOREGROUND)
            return
        for dependent in blocking:
            if not self._waits(dependent):
                self.queue.add((DELETE, dependent))

    def _blocks(self, dependent: str, owner: Stored) -> bool:
        node = self._nodes.get(dependent)
        return node is not None and any(ref.uid == owner.uid and ref.block for ref in node.refs)

    def _orphan_dependents(self, res: ResourceType, owner: Stored, meta: JSON) -> None:
        """Orphan deletion: strip the owner from every dependent, then release the owner."""
        if not meta.get("deletionTimestamp") or ORPHAN not in (meta.get("finalizers") or ()):
            return
        # Each patch changes the dependent index, hence the copy.
        for dependent in list(self._dependents.get(owner.uid, ())):
            found = self._current(dependent)
            if found is not None:
                dep_res, dep = found
                self._drop_refs(dep_res, dep, dep.decode()["metadata"], {owner.uid})
        self._remove_finalizer(res, owner, meta, ORPHAN)

    # -- writes ---------------------------------------------------------------------------------------------

    def _delete(self, res: ResourceType, current: Stored, policy: str) -> None:
        options = DeleteOptions(propagation=policy, uid=current.uid, resource_version=str(current.rv))
        try:
            self.registry.delete(res, current.namespace, current.name, options)
        except APIError as err:
            if err.code != 404:
                raise

    def _drop_refs(self, res: ResourceType, current: Stored, meta: JSON, owners: set[str]) -> None:
        refs = meta.get("ownerReferences") or []
        kept = [ref for ref in refs if not (isinstance(ref, dict) and ref.get("uid") in owners)]
        if len(kept) != len(refs):
            self._patch_meta(res, current, {"ownerReferences": kept or None})

    def _unblock_owners(self, res: ResourceType, current: Stored, meta: JSON) -> Stored:
        refs = [
            {**ref, "blockOwnerDeletion": False} if isinstance(ref, dict) and ref.get("blockOwnerDeletion") else ref
            for ref in meta.get("ownerReferences") or []
        ]
        return self._patch_meta(res, current, {"ownerReferences": refs})

    def _remove_finalizer(self, res: ResourceType, current: Stored, meta: JSON, finalizer: str) -> None:
        kept = [f for f in meta.get("finalizers") or () if f != finalizer]
        # Removing the last finalizer of an object with a deletionTimestamp lets the registry remove it.
        self._patch_meta(res, current, {"finalizers": kept or None})

    def _patch_meta(self, res: ResourceType, current: Stored, changes: dict[str, Any]) -> Stored:
        """A merge patch of metadata, conditional on the revision read (409 and a retry if it moved on)."""
        body = {"metadata": {**changes, "resourceVersion": str(current.rv)}}
        return self.registry.patch(res, current.namespace, current.name, "merge", body).stored


CONTROLLERS: dict[str, Factory] = {"garbagecollector": GarbageCollector}
