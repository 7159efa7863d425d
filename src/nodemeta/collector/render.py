"""Byte-exact rendering of what the metadata stream carries for an object.

Consumers compare these strings byte for byte with what Go's `encoding/json` makes of the same object
(k8s-metacollector's e2e tests do, and the Falco plugin stores them verbatim), so the format is fixed:

* compact JSON with keys sorted by code point (the same order as Go's byte-wise sort of UTF-8 keys);
* Go's HTML-safe escaping: `<`, `>`, `&` become `\\u003c`, `\\u003e`, `\\u0026`, and U+2028/U+2029 are escaped;
  other non-ASCII characters are written raw; control characters as Python's `json` writes them;
* `meta` keeps only generateName, labels, name, namespace and uid, each left out when empty;
* a Pod's `status` is `{"podIP":"<ip>"}`, or `{}` before it has an IP.

The JSON is written by msgspec from a Struct whose fields are declared in sorted order (measured at about 1.4 us per
meta, against 1.7 us for orjson or msgspec on a dict, 3.2 us for a hand-rolled writer and 6-7 us for `json.dumps`);
the escaping rules above were checked to match `json.dumps(..., ensure_ascii=False)` for every character below
U+3000.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from nodemeta.collector.model import (
    EXTRA_KINDS,
    NAMESPACE,
    SERVICE,
    NamespaceInfo,
    ObjectRef,
    OwnerInfo,
    PodInfo,
    ServiceInfo,
)

# A Pod's refs: (kind, uids) pairs in a fixed order (Namespace, controlling owner, the owner's owner, Service).
Refs = tuple[tuple[str, tuple[str, ...]], ...]

EMPTY_STATUS = "{}"
_HTML_UNSAFE = ("<", ">", "&", "\u2028", "\u2029")
_GO_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


class _Meta(msgspec.Struct, omit_defaults=True, rename={"generate_name": "generateName"}):
    """The reduced `metadata`; fields in sorted key order, empty ones omitted."""

    generate_name: str = ""
    labels: Mapping[str, str] = {}
    name: str = ""
    namespace: str = ""
    uid: str = ""


class _PodStatus(msgspec.Struct, rename={"pod_ip": "podIP"}):
    pod_ip: str


_ENCODER = msgspec.json.Encoder(order="sorted")


def go_escape(text: str) -> str:
    """Apply Go's HTML-safe escapes to JSON text (the characters can only occur inside strings)."""
    for raw in _HTML_UNSAFE:
        if raw in text:
            for bad, escaped in _GO_ESCAPES:
                text = text.replace(bad, escaped)
            return text
    return text


def _encode(value: object) -> str:
    return go_escape(_ENCODER.encode(value).decode())


def render_meta(info: PodInfo | NamespaceInfo | OwnerInfo | ServiceInfo) -> str:
    """The `meta` JSON of any object; Namespaces (and cluster-scoped owners) have no `namespace` key."""
    namespace = "" if isinstance(info, NamespaceInfo) else info.namespace
    labels = info.labels if type(info.labels) is dict else dict(info.labels)
    return _encode(_Meta(info.generate_name, labels, info.name, namespace, info.uid))


def render_pod_status(pod_ip: str) -> str:
    return _encode(_PodStatus(pod_ip)) if pod_ip else EMPTY_STATUS


def pod_refs(
    namespace_uid: str | None,
    owner: ObjectRef | None,
    owners_owner: ObjectRef | None,
    service_uids: Iterable[str],
) -> Refs:
    """A Pod's refs: its namespace (when known), its controlling owner by kind, the controlling owner of that
    owner (callers pass it only for a ReplicaSet), and the matching Services, sorted (the key always present).

    Two entries of the same kind share one list, in that order.
    """
    if owner is None and owners_owner is None:
        services = (SERVICE, tuple(sorted(service_uids)))
        return ((NAMESPACE, (namespace_uid,)), services) if namespace_uid is not None else (services,)
    refs: dict[str, list[str]] = {}
    if namespace_uid is not None:
        refs[NAMESPACE] = [namespace_uid]
    for ref in (owner, owners_owner):
        if ref is not None:
            refs.setdefault(ref.kind, []).append(ref.uid)
    refs[SERVICE] = sorted(service_uids)
    return tuple((kind, tuple(uids)) for kind, uids in refs.items())


@dataclass(frozen=True, slots=True)
class Payload:
    """Everything a Create or Update carries for one object, rendered. Equal payloads render identical bytes,
    so comparing them tells whether an Update is due; they are hashable, so encoders can memoise on them."""

    kind: str
    uid: str
    meta: str
    # Pods only.
    status: str | None = None
    # Pods, and the controlling owner of a StatefulSet, Job, CronJob or Node.
    refs: Refs | None = None
    # The object's identity, made once: every session and view keyed by it shares this one tuple.
    ref: ObjectRef = field(init=False, compare=False, repr=False)
    # The encoded event body, filled in by the first encoder (the broker's `EventBodies`) and not part of the
    # payload's value. Kept here rather than in a cache beside it, the body lives exactly as long as the payload.
    encoded: bytes | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ref", ObjectRef(self.kind, self.uid))

    def refs_map(self) -> dict[str, tuple[str, ...]] | None:
        return dict(self.refs) if self.refs is not None else None


def unchanged(old: Payload | None, new: Payload | None) -> bool:
    """True when sending `new` to a holder of `old` would change nothing."""
    return old is new or old == new


def object_payload(info: NamespaceInfo | OwnerInfo | ServiceInfo) -> Payload:
    """The payload of a non-pod object: `meta`, and for the kinds only nodemeta.v1 carries (StatefulSet, Job,
    CronJob, Node) refs naming the controlling owner, if any: how an agent learns a Job's CronJob. The Falco kinds
    carry no refs (the contract's refs are for pods; a ReplicaSet's Deployment is in its pods' refs)."""
    if isinstance(info, NamespaceInfo):
        return Payload(NAMESPACE, info.uid, render_meta(info))
    if isinstance(info, ServiceInfo):
        return Payload(SERVICE, info.uid, render_meta(info))
    owner = info.controller_owner
    if owner is None or info.kind not in EXTRA_KINDS:
        return Payload(info.kind, info.uid, render_meta(info))
    return Payload(info.kind, info.uid, render_meta(info), refs=((owner.kind, (owner.uid,)),))
