"""The namespace controller: empties a terminating namespace, reports progress in its conditions, finalizes it.

A DELETE of a namespace only marks it (deletionTimestamp, phase Terminating). This controller then deletes every
object in it with propagationPolicy=Background, as kube-controller-manager's namespace deleter does with
deletecollection per resource, keeps the five deletion conditions of `status.conditions` current, and once
nothing is left calls the `finalize` subresource without the `kubernetes` finalizer, which removes the namespace.

What a namespace holds is counted from the store's changes (objects per storage, finalizers per name), so
checking progress never lists the namespace; only the deletion pass itself walks the content, in batches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from itertools import islice

from nodemeta.sim.controllers.base import Controller, Factory, Requeue
from nodemeta.sim.errors import APIError
from nodemeta.sim.registry import DeleteOptions, Registry, rfc3339
from nodemeta.sim.resources import JSON, ResourceType, lookup, stored_resources
from nodemeta.sim.settings import SimSettings
from nodemeta.sim.store import ADDED, DELETED, Change, Stored

NAMESPACES = "namespaces"
KUBERNETES_FINALIZER = "kubernetes"
# Deletions per reconcile, so a namespace of thousands of objects does not stall API clients meanwhile.
BATCH = 500
# Progress is noticed from changes; this periodic look is a safety net while content remains.
RECHECK_SECONDS = 2.0
# After a failed deletion pass, try again after this long.
RETRY_SECONDS = 1.0

CONTENT_FAILURE = "NamespaceDeletionContentFailure"
CONTENT_REMAINING = "NamespaceContentRemaining"
FINALIZERS_REMAINING = "NamespaceFinalizersRemaining"
# Each condition type with the reason and message it carries while nothing is wrong (status False).
CONDITIONS_OK: dict[str, tuple[str, str]] = {
    "NamespaceDeletionDiscoveryFailure": ("ResourcesDiscovered", "All resources successfully discovered"),
    "NamespaceDeletionGroupVersionParsingFailure": ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
    CONTENT_FAILURE: ("ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
    CONTENT_REMAINING: ("ContentRemoved", "All content successfully removed"),
    FINALIZERS_REMAINING: ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
}

_DELETION_MARK = b'"deletionTimestamp"'
_FINALIZERS_MARK = b'"finalizers"'

Condition = tuple[str, str, str]  # status, reason, message


@dataclass(slots=True)
class Content:
    """What one namespace holds: objects per storage and finalizers by name."""

    objects: Counter[str] = field(default_factory=Counter)
    finalizers: Counter[str] = field(default_factory=Counter)

    def empty(self) -> bool:
        return not self.objects and not self.finalizers


@dataclass(slots=True)
class Sweep:
    """How far the deletion pass through one namespace has got: a storage and the last key handled in it."""

    storage: int = 0
    after: str = ""
    done: bool = False
    # Deletion errors of this pass, by resource.
    failures: dict[str, str] = field(default_factory=dict)


def deleting(stored: Stored) -> bool:
    return _DELETION_MARK in stored.body and bool(stored.decode()["metadata"].get("deletionTimestamp"))


def finalizers_of(stored: Stored) -> list[str]:
    if _FINALIZERS_MARK not in stored.body:
        return []
    return list(stored.decode()["metadata"].get("finalizers") or [])


def _adjust(counter: Counter[str], key: str, delta: int) -> None:
    """Add `delta`, keeping no zero entries (so an empty counter means nothing is left)."""
    value = counter[key] + delta
    if value > 0:
        counter[key] = value
    else:
        del counter[key]


class NamespaceController(Controller):
    name = "namespace"
    watches = (NAMESPACES, *(r.storage_name for r in stored_resources() if r.namespaced))

    def __init__(self, registry: Registry, settings: SimSettings) -> None:
        super().__init__(registry, settings)
        ns_res = lookup("", "v1", NAMESPACES)
        assert ns_res is not None
        self._ns_res = ns_res
        self._namespaced = [r for r in stored_resources() if r.namespaced]
        self._by_storage = {r.storage_name: r for r in self._namespaced}
        self._content: dict[str, Content] = {}
        self._terminating: set[str] = set()
        self._sweeps: dict[str, Sweep] = {}

    # -- observing ------------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[Hashable]:
        for res in self._namespaced:
            for stored in self.registry.iter_objects(res):
                content = self._content_of(stored.namespace)
                _adjust(content.objects, res.storage_name, 1)
                for finalizer in finalizers_of(stored):
                    _adjust(content.finalizers, finalizer, 1)
        for ns in self.registry.iter_objects(self._ns_res):
            if deleting(ns):
                self._terminating.add(ns.name)
        return sorted(self._terminating)

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == NAMESPACES:
            return self._namespace_changed(change)
        self._count(storage, change)
        namespace = change.obj.namespace
        return (namespace,) if namespace in self._terminating else ()

    def _namespace_changed(self, change: Change) -> Iterable[Hashable]:
        name = change.obj.name
        if change.type != DELETED and deleting(change.obj):
            self._terminating.add(name)
            return (name,)
        self._terminating.discard(name)
        self._sweeps.pop(name, None)
        return ()

    def _count(self, storage: str, change: Change) -> None:
        delta = 1 if change.type == ADDED else -1 if change.type == DELETED else 0
        released = finalizers_of(change.prev) if change.prev is not None else []
        held = finalizers_of(change.obj) if change.type != DELETED else []
        if not delta and released == held:
            return
        namespace = change.obj.namespace
        content = self._content_of(namespace)
        if delta:
            _adjust(content.objects, storage, delta)
        for finalizer in released:
            _adjust(content.finalizers, finalizer, -1)
        for finalizer in held:
            _adjust(content.finalizers, finalizer, 1)
        if content.empty():
            del self._content[namespace]

    def _content_of(self, namespace: str) -> Content:
        content = self._content.get(namespace)
        if content is None:
            content = self._content[namespace] = Content()
        return content

    # -- reconcile ------------------------------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> Requeue | None:
        name = str(key)
        current = self.registry.bucket(self._ns_res).get(name)
        if current is None:
            return None
        obj = current.decode()
        spec_finalizers: list[str] = (obj.get("spec") or {}).get("finalizers") or []
        if not obj["metadata"].get("deletionTimestamp") or not spec_finalizers:
            # Not terminating, or already finalized (then only metadata finalizers can still hold it).
            return None
        sweep = self._sweeps.setdefault(name, Sweep())
        more = not sweep.done and self._sweep(name, sweep)
        self._report(current, obj, sweep.failures)
        if more:
            return Requeue(after=0)
        if sweep.failures:
            self._sweeps[name] = Sweep()
            return Requeue(after=RETRY_SECONDS)
        if name in self._content:
            return Requeue(after=RECHECK_SECONDS)
        kept = [f for f in spec_finalizers if f != KUBERNETES_FINALIZER]
        self.registry.finalize_namespace(name, {"spec": {"finalizers": kept}})
        return None

    def _sweep(self, namespace: str, sweep: Sweep) -> bool:
        """Delete the next batch of the namespace's content; True while the pass has more to go."""
        budget = BATCH
        while sweep.storage < len(self._namespaced):
            res = self._namespaced[sweep.storage]
            rv = self.registry.store.rv
            # A list from where the pass stopped, as a client continues a paginated list.
            scan = self.registry.bucket(res).scan(rv, rv, start=sweep.after, prefix=f"{namespace}/")
            # Taken before deleting: the scan walks the live index that each deletion changes.
            batch = list(islice(scan, budget))
            for stored in batch:
                if not deleting(stored):
                    self._delete(res, stored, sweep)
            if len(batch) == budget:
                sweep.after = batch[-1].key
                return True
            budget -= len(batch)
            sweep.storage += 1
            sweep.after = ""
        sweep.done = True
        return False

    def _delete(self, res: ResourceType, stored: Stored, sweep: Sweep) -> None:
        try:
            self.registry.delete(res, stored.namespace, stored.name, DeleteOptions(propagation="Background"))
        except APIError as err:
            if err.code != 404:
                sweep.failures[res.qualified] = err.message

    # -- status ---------------------------------------------------------------------------------------------

    def _report(self, current: Stored, obj: JSON, failures: dict[str, str]) -> None:
        """Write the deletion conditions (and phase) to the namespace's status when they changed."""
        status = obj.setdefault("status", {})
        conditions = status.setdefault("conditions", [])
        changed = status.get("phase") != "Terminating"
        status["phase"] = "Terminating"
        now = rfc3339(self.registry.clock())
        for type_, wanted in self._conditions(current.name, failures).items():
            changed |= _set_condition(conditions, type_, wanted, now)
        if changed:
            self._write_status(current, obj)

    def _write_status(self, current: Stored, obj: JSON) -> None:
        """PUT namespaces/<name>/status, conditional on the revision the conditions were computed from."""
        obj["metadata"]["resourceVersion"] = str(current.rv)
        self.registry.update(self._ns_res, "", current.name, obj, subresource="status")

    def _conditions(self, name: str, failures: dict[str, str]) -> dict[str, Condition]:
        wanted: dict[str, Condition] = {t: ("False", *ok) for t, ok in CONDITIONS_OK.items()}
        if failures:
            listed = ", ".join(sorted(failures.values()))
            message = f"Failed to delete all resource types, {len(failures)} remaining: {listed}"
            wanted[CONTENT_FAILURE] = ("True", "ContentDeletionFailed", message)
        content = self._content.get(name) or Content()
        if content.objects:
            remaining = sorted(
                f"{res.plural}.{res.group} has {count} resource instances"
                for res, count in ((self._by_storage[s], n) for s, n in content.objects.items())
            )
            message = f"Some resources are remaining: {', '.join(remaining)}"
            wanted[CONTENT_REMAINING] = ("True", "SomeResourcesRemain", message)
        if content.finalizers:
            held = sorted(f"{f} in {count} resource instances" for f, count in content.finalizers.items())
            message = f"Some content in the namespace has finalizers remaining: {', '.join(held)}"
            wanted[FINALIZERS_REMAINING] = ("True", "SomeFinalizersRemain", message)
        return wanted


def _set_condition(conditions: list[JSON], type_: str, wanted: Condition, now: str) -> bool:
    """Bring one condition to `wanted`; its transition time moves only when its status does. True if changed."""
    status, reason, message = wanted
    for condition in conditions:
        if condition.get("type") != type_:
            continue
        if (condition.get("status"), condition.get("reason"), condition.get("message")) == wanted:
            return False
        if condition.get("status") != status:
            condition["lastTransitionTime"] = now
        condition.update(status=status, reason=reason, message=message)
        return True
    conditions.append(
        {"type": type_, "status": status, "lastTransitionTime": now, "reason": reason, "message": message}
    )
    return True


CONTROLLERS: dict[str, Factory] = {"namespace": NamespaceController}
