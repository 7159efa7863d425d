"""Ground truth: what a metadata subscriber for a node must hold, computed from the simulator's store.

For node N the relevant objects are: the pods with `spec.nodeName == N`; the namespaces holding them; each pod's
controlling owner and, when that owner has a controlling owner itself (a ReplicaSet's Deployment, a Job's
CronJob), that one too; and the Services in a pod's namespace whose non-empty selector matches the pod's labels.
Relevance follows ownerReferences by uid. Each object is rendered as the metadata stream carries it:

* `meta`: compact JSON, sorted keys, Go's escaping of `<`, `>`, `&`, U+2028 and U+2029, with only `generateName`,
  `labels`, `name`, `namespace` and `uid`, each left out when empty;
* pods also carry `status` (`{"podIP": ...}` or `{}`) and `refs`: the namespace uid, the controlling owner by its
  kind, a ReplicaSet's controlling owner, and the sorted uids of matching Services (the key always present);
* a StatefulSet, Job, CronJob or Node (the kinds beyond the Falco contract) with a controlling owner carries `refs`
  naming it (a Job's CronJob); other objects carry no refs.

This module is deliberately independent of the collector: tests compare what subscribers receive against it, so
the two must not share code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nodemeta.sim.resources import JSON
from nodemeta.sim.selectors import selector_from_map
from nodemeta.sim.store import Store, Stored

_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_META_KEYS = ("generateName", "labels", "name", "namespace", "uid")
# Storage of each kind an owner reference can point at.
_OWNER_STORAGE = {
    "ReplicaSet": "replicasets.apps",
    "Deployment": "deployments.apps",
    "DaemonSet": "daemonsets.apps",
    "StatefulSet": "statefulsets.apps",
    "ReplicationController": "replicationcontrollers",
    "Job": "jobs.batch",
    "CronJob": "cronjobs.batch",
    "Node": "nodes",
}


def go_json(value: Any) -> str:
    """Compact JSON with sorted keys and Go's HTML-safe escaping (encoding/json's default)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for raw, escaped in _GO_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


@dataclass(frozen=True, slots=True)
class Payload:
    kind: str
    uid: str
    meta: str
    status: str | None = None
    refs: Mapping[str, tuple[str, ...]] | None = None


def render_meta(obj: JSON) -> str:
    meta = obj.get("metadata") or {}
    kept = {k: meta[k] for k in _META_KEYS if meta.get(k)}
    return go_json(kept)


def _controller_ref(obj: JSON) -> dict[str, Any] | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return ref
    return None


class _Index:
    """The store's objects read once, by uid and by what relevance needs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_uid: dict[str, dict[str, tuple[Stored, JSON]]] = {}

    def _bucket_items(self, storage: str) -> Iterable[Stored]:
        bucket = self.store.buckets.get(storage)
        return bucket.items.values() if bucket is not None else ()

    def by_uid(self, kind: str, uid: str) -> tuple[Stored, JSON] | None:
        storage = _OWNER_STORAGE.get(kind)
        if storage is None:
            return None
        table = self._by_uid.get(storage)
        if table is None:
            table = {s.uid: (s, s.decode()) for s in self._bucket_items(storage)}
            self._by_uid[storage] = table
        return table.get(uid)

    def namespace(self, name: str) -> tuple[Stored, JSON] | None:
        found = self.store.buckets["namespaces"].get(name)
        return (found, found.decode()) if found is not None else None

    def services(self, namespace: str) -> list[tuple[Stored, JSON]]:
        bucket = self.store.buckets["services"]
        prefix = namespace + "/"
        return [(s, s.decode()) for s in bucket.items.values() if s.key.startswith(prefix)]


def node_view(store: Store, node: str) -> dict[tuple[str, str], Payload]:
    """Everything a subscriber for `node` must hold, keyed by (kind, uid)."""
    index = _Index(store)
    out: dict[tuple[str, str], Payload] = {}
    pods = [s for s in store.buckets["pods"].items.values() if s.field("spec.nodeName") == node]
    services_by_ns: dict[str, list[tuple[Stored, JSON]]] = {}
    for stored in pods:
        pod = stored.decode()
        ns_name = stored.namespace
        refs: dict[str, list[str]] = {}
        namespace = index.namespace(ns_name)
        if namespace is not None:
            ns_stored, ns_obj = namespace
            refs["Namespace"] = [ns_stored.uid]
            out[("Namespace", ns_stored.uid)] = Payload("Namespace", ns_stored.uid, render_meta(ns_obj))
        owner_ref = _controller_ref(pod)
        if owner_ref is not None:
            kind, uid = str(owner_ref.get("kind", "")), str(owner_ref.get("uid", ""))
            refs.setdefault(kind, []).append(uid)
            owner = index.by_uid(kind, uid)
            if owner is not None:
                out[(kind, uid)] = _owner_payload(kind, uid, owner[1])
                grand_ref = _controller_ref(owner[1])
                if grand_ref is not None:
                    gkind, guid = str(grand_ref.get("kind", "")), str(grand_ref.get("uid", ""))
                    if kind == "ReplicaSet":
                        refs.setdefault(gkind, []).append(guid)
                    grand = index.by_uid(gkind, guid)
                    if grand is not None:
                        out[(gkind, guid)] = _owner_payload(gkind, guid, grand[1])
        matching = []
        if ns_name not in services_by_ns:
            services_by_ns[ns_name] = index.services(ns_name)
        for svc_stored, svc in services_by_ns[ns_name]:
            selector = (svc.get("spec") or {}).get("selector") or {}
            if selector and selector_from_map(selector).matches(stored.labels):
                matching.append(svc_stored.uid)
                out[("Service", svc_stored.uid)] = Payload("Service", svc_stored.uid, render_meta(svc))
        refs["Service"] = sorted(matching)
        out[("Pod", stored.uid)] = Payload(
            "Pod", stored.uid, render_meta(pod), go_json(_pod_status(pod)), {k: tuple(v) for k, v in refs.items()}
        )
    return out


# Kinds whose payload names their controlling owner (nodemeta.v1 only; the Falco contract has refs for pods only).
_OWNER_REFS_KINDS = frozenset({"StatefulSet", "Job", "CronJob", "Node"})


def _owner_payload(kind: str, uid: str, obj: JSON) -> Payload:
    controller = _controller_ref(obj)
    if kind not in _OWNER_REFS_KINDS or controller is None:
        return Payload(kind, uid, render_meta(obj))
    owner = {str(controller.get("kind", "")): (str(controller.get("uid", "")),)}
    return Payload(kind, uid, render_meta(obj), None, owner)


def _pod_status(pod: JSON) -> dict[str, str]:
    status = pod.get("status") or {}
    ips = status.get("podIPs") or []
    ip = status.get("podIP") or (ips[0].get("ip") if ips and isinstance(ips[0], dict) else "")
    return {"podIP": ip} if ip else {}


def kinds_in(view: Mapping[tuple[str, str], Payload], kinds: Iterable[str]) -> dict[tuple[str, str], Payload]:
    """The part of a node view a subscriber asking for `kinds` receives."""
    wanted = set(kinds)
    return {key: payload for key, payload in view.items() if key[0] in wanted}
