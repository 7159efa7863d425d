"""The agent's metadata store: the node's pods and their related objects by uid, as the metadata stream carries
them. Pure: events in, records and changes out.

Both metadata sources feed it the same events (reason, kind, uid, meta JSON, status JSON, refs): the collector's
nodemeta.v1 stream verbatim, and direct mode through the collector's own relation index and renderer, so the two
sources hold byte-identical payloads. Create and Update replace the stored object wholesale; Delete forgets it.

Each object keeps its raw payload (what the stream said, for comparison and debugging) and the decoded fields the
join reads. A payload that does not decode is refused with `MetadataError` and changes nothing.

`controller` is the object's controlling owner where the source knows it: direct mode reads it from each owner's
ownerReferences; both sources carry it in the refs of a StatefulSet, Job, CronJob or Node (a Job's CronJob), from
which the store takes it when the event names none; a ReplicaSet's Deployment is in its pods' refs, which the join
reads directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import msgspec

__all__ = ["ControllerRef", "MetaChange", "MetaObject", "MetadataError", "MetadataSink", "MetadataStore", "Refs"]

POD = "Pod"
NAMESPACE = "Namespace"
SERVICE = "Service"
NODE = "Node"

Refs = Mapping[str, tuple[str, ...]]
_NO_LABELS: Mapping[str, str] = {}


class MetadataError(ValueError):
    """An event the store cannot apply (bad reason, missing fields, undecodable JSON); the message says which."""


class _Meta(msgspec.Struct, rename={"generate_name": "generateName"}):
    generate_name: str = ""
    labels: dict[str, str] = {}
    name: str = ""
    namespace: str = ""
    uid: str = ""


class _Status(msgspec.Struct, rename={"pod_ip": "podIP"}):
    pod_ip: str = ""


_META = msgspec.json.Decoder(_Meta)
_STATUS = msgspec.json.Decoder(_Status)


@dataclass(frozen=True, slots=True)
class ControllerRef:
    kind: str
    uid: str


@dataclass(frozen=True, slots=True)
class MetaObject:
    kind: str
    uid: str
    name: str
    namespace: str
    generate_name: str
    labels: Mapping[str, str]
    # The payload as received.
    meta: str
    status: str | None = None
    refs: Refs | None = None
    # Pods: the primary IP from `status`.
    pod_ip: str = ""
    controller: ControllerRef | None = None


@dataclass(frozen=True, slots=True)
class MetaChange:
    """What one event did: `new` is None for a deletion, `old` None for a creation."""

    kind: str
    uid: str
    old: MetaObject | None
    new: MetaObject | None


class MetadataStore:
    def __init__(self) -> None:
        self.objects: dict[str, MetaObject] = {}
        self._pods_by_name: dict[tuple[str, str], str] = {}
        self._namespaces_by_name: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.objects)

    # -- reading ------------------------------------------------------------------------------------------------

    def get(self, uid: str) -> MetaObject | None:
        return self.objects.get(uid)

    def pod(self, uid: str) -> MetaObject | None:
        obj = self.objects.get(uid)
        return obj if obj is not None and obj.kind == POD else None

    def pod_named(self, namespace: str, name: str) -> MetaObject | None:
        uid = self._pods_by_name.get((namespace, name))
        return self.objects.get(uid) if uid is not None else None

    def namespace_named(self, name: str) -> MetaObject | None:
        uid = self._namespaces_by_name.get(name)
        return self.objects.get(uid) if uid is not None else None

    def payloads(self) -> dict[tuple[str, str], tuple[str, str | None, dict[str, tuple[str, ...]] | None]]:
        """Every object as (kind, uid) -> (meta, status, refs): the form the stream's ground truth takes."""
        return {
            (o.kind, o.uid): (o.meta, o.status, dict(o.refs) if o.refs is not None else None)
            for o in self.objects.values()
        }

    # -- writing ------------------------------------------------------------------------------------------------

    def apply(
        self,
        reason: str,
        kind: str,
        uid: str,
        meta: str | None = None,
        status: str | None = None,
        refs: Refs | None = None,
        controller: ControllerRef | None = None,
    ) -> MetaChange | None:
        """Apply one event (reason Create, Update or Delete); None when it changed nothing."""
        if not kind or not uid:
            raise MetadataError(f"event without kind or uid: kind={kind!r} uid={uid!r}")
        if reason == "Delete":
            return self.delete(uid)
        if reason not in ("Create", "Update"):
            raise MetadataError(f"unknown reason {reason!r} for {kind} {uid}")
        if meta is None:
            raise MetadataError(f"{reason} of {kind} {uid} without meta")
        try:
            decoded = _META.decode(meta)
            pod_ip = _STATUS.decode(status).pod_ip if status is not None else ""
        except msgspec.DecodeError as err:
            raise MetadataError(f"{reason} of {kind} {uid}: bad payload: {err}") from None
        if controller is None and kind != POD and refs is not None and len(refs) == 1:
            ((owner_kind, owner_uids),) = refs.items()
            if len(owner_uids) == 1:
                controller = ControllerRef(owner_kind, owner_uids[0])
        new = MetaObject(
            kind,
            uid,
            decoded.name,
            decoded.namespace,
            decoded.generate_name,
            decoded.labels or _NO_LABELS,
            meta,
            status,
            {k: tuple(v) for k, v in refs.items()} if refs is not None else None,
            pod_ip,
            controller,
        )
        old = self.objects.get(uid)
        if old == new:
            return None
        if old is not None:
            self._unindex(old)
        self.objects[uid] = new
        if kind == POD:
            self._pods_by_name[(new.namespace, new.name)] = uid
        elif kind == NAMESPACE:
            self._namespaces_by_name[new.name] = uid
        return MetaChange(kind, uid, old, new)

    def delete(self, uid: str) -> MetaChange | None:
        old = self.objects.pop(uid, None)
        if old is None:
            return None
        self._unindex(old)
        return MetaChange(old.kind, uid, old, None)

    def reset(self) -> list[MetaChange]:
        """Forget everything (a stream that could not resume starts a full snapshot); returns the deletions."""
        gone = [MetaChange(o.kind, o.uid, o, None) for o in self.objects.values()]
        self.objects.clear()
        self._pods_by_name.clear()
        self._namespaces_by_name.clear()
        return gone

    def _unindex(self, old: MetaObject) -> None:
        if old.kind == POD and self._pods_by_name.get((old.namespace, old.name)) == old.uid:
            del self._pods_by_name[(old.namespace, old.name)]
        elif old.kind == NAMESPACE and self._namespaces_by_name.get(old.name) == old.uid:
            del self._namespaces_by_name[old.name]


class MetadataSink(Protocol):
    """Where a metadata source delivers events: the agent, which applies them to its store and tells readers."""

    def apply(
        self,
        reason: str,
        kind: str,
        uid: str,
        meta: str | None = None,
        status: str | None = None,
        refs: Refs | None = None,
        controller: ControllerRef | None = None,
    ) -> None: ...

    def reset(self) -> None:
        """Drop everything held: a full snapshot follows."""
        ...

    def synced(self) -> None:
        """The initial snapshot (or a resume's catch-up) is complete."""
        ...

    def reconnected(self) -> None:
        """The source lost its connection and is reconnecting."""
        ...
