"""Stateful property test: the relation index against the simulator's independent ground truth.

Random sequences of writes go into a simulator store: namespaces, owners of every kind, pods on random nodes with
random labels and controllers, services with random selectors; relabelling, rescheduling, adoption and orphaning,
recreation under the same name, deletion in any order. Owner references may name an object that does not exist yet
(its uid is reserved before it is created), so pods and ReplicaSets routinely arrive before their owners, as they
can through separate informers. The index is fed only from the store's change notifications, as an informer would
feed it. After every step, each subscribed node's accumulated state (built from the deltas alone) must equal
`nodemeta.sim.truth.node_view`, and every delta must be legal (no Create for a held object, no Update that changes
nothing, no Delete for an object not held).
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from nodemeta.collector.relations import RelationIndex
from nodemeta.sim.resources import stored_resources
from nodemeta.sim.store import Bucket, Change, Store, object_key
from nodemeta.sim.truth import node_view
from tests.collector.adapt import FED_KINDS, OWNER_STORAGE, info_from
from tests.collector.holder import Holder, comparable

NODES = ("n1", "n2", "n3")
NAMESPACES = ("a", "b")
NAMES = ("x", "y")
OWNER_KINDS = tuple(OWNER_STORAGE)

labels_st = st.dictionaries(st.sampled_from(("app", "tier")), st.sampled_from(("1", "2")), max_size=2)
selector_st = labels_st
some_labels_st = st.dictionaries(st.sampled_from(("app", "tier")), st.sampled_from(("1", "2")), min_size=1, max_size=2)
names_st = st.sampled_from(NAMES)
namespaces_st = st.sampled_from(NAMESPACES)


class IndexVersusTruth(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = Store(stored_resources(), 50)
        self.index = RelationIndex()
        self.subscriptions: dict[str, int] = {}
        self.holders: dict[str, Holder] = {}
        self.serial = itertools.count(1)
        # The uid the next object created in each owner slot (kind, namespace, name) will get.
        self.reserved: dict[tuple[str, str, str], str] = {}
        self.store.observers.append(self._observe)

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _observe(self, bucket: Bucket, change: Change) -> None:
        kind = bucket.res.kind
        if kind not in FED_KINDS:
            return
        info = info_from(kind, change.obj.decode())
        deltas = self.index.delete(info) if change.type == "DELETED" else self.index.apply(info)
        for delta in deltas:
            assert delta.node in self.holders, f"delta for an unsubscribed node: {delta}"
            self.holders[delta.node].apply([delta])

    def _new_uid(self) -> str:
        n = (next(self.serial) * 2654435761) % 2**32
        return f"{n:08x}-0000-4000-8000-{n:012x}"

    def _bucket(self, storage: str) -> Bucket:
        return self.store.buckets[storage]

    def _put(self, storage: str, namespace: str, name: str, body: dict[str, Any], recreate: bool = False) -> None:
        """Create or replace the object at (namespace, name), keeping its uid unless `recreate`."""
        bucket = self._bucket(storage)
        key = object_key(namespace, name)
        current = bucket.get(key)
        if current is not None and recreate:
            self.store.remove(bucket, key)
            current = None
        meta = body.setdefault("metadata", {})
        meta["name"] = name
        if namespace:
            meta["namespace"] = namespace
        if current is not None:
            meta["uid"] = current.uid
        else:
            slot = (bucket.res.kind, namespace, name)
            meta["uid"] = self.reserved.pop(slot, None) or self._new_uid()
        self.store.put(bucket, body)

    def _delete(self, storage: str, namespace: str, name: str) -> None:
        bucket = self._bucket(storage)
        key = object_key(namespace, name)
        if bucket.get(key) is not None:
            self.store.remove(bucket, key)

    def _pick(self, data: st.DataObject, *storages: str) -> tuple[str, dict[str, Any]] | None:
        """One live object of these storages (with a private copy of its body), or None when there is none."""
        live = [(storage, key) for storage in storages for key in self._bucket(storage).items]
        if not live:
            return None
        storage, key = data.draw(st.sampled_from(live), label="object")
        return storage, self._bucket(storage).items[key].decode()

    def _rewrite(self, storage: str, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        self._put(storage, meta.get("namespace") or "", meta["name"], body)

    def _owner_choices(self) -> list[tuple[str, str]]:
        """Live owners, plus the reserved uids of owners not created yet."""
        choices = [
            (kind, stored.uid)
            for kind, storage in OWNER_STORAGE.items()
            for stored in self._bucket(storage).items.values()
        ]
        for kind in ("Deployment", "ReplicaSet", "CronJob", "Job"):
            for name in NAMES:
                slot = (kind, "a", name)
                if self._bucket(OWNER_STORAGE[kind]).get(object_key("a", name)) is None:
                    choices.append((kind, self.reserved.setdefault(slot, self._new_uid())))
        return choices

    def _draw_controller(self, data: st.DataObject) -> dict[str, Any] | None:
        if not data.draw(st.booleans(), label="owned"):
            return None
        kind, uid = data.draw(st.sampled_from(self._owner_choices()), label="controller")
        return {"apiVersion": "v1", "kind": kind, "name": "owner", "uid": uid, "controller": True}

    @staticmethod
    def _owner_refs(controller: dict[str, Any] | None) -> list[dict[str, Any]]:
        # A non-controlling reference first: only the controller counts.
        if controller is None:
            return []
        return [{**controller, "uid": "not-the-controller", "controller": False}, controller]

    @staticmethod
    def _meta(labels: dict[str, str], controller: dict[str, Any] | None, generate_name: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {"labels": labels}
        if controller is not None:
            meta["ownerReferences"] = IndexVersusTruth._owner_refs(controller)
        if generate_name:
            meta["generateName"] = "gen-"
        return meta

    # -- setup --------------------------------------------------------------------------------------------------

    @initialize(data=st.data())
    def seed(self, data: st.DataObject) -> None:
        """A populated start (otherwise most short runs never relate anything): both namespaces, a Deployment
        controlling a ReplicaSet and a CronJob controlling a Job, pods they own on n1, a bare pod on n2, a Service
        and a subscriber on n1 (maybe n2). Some of it is left out, or arrives after what names it. The rules then
        change all of it."""
        for ns in NAMESPACES:
            if data.draw(st.integers(0, 3)):
                self.put_namespace(ns, data.draw(labels_st), False)
        late = []
        for parent, child in (("Deployment", "ReplicaSet"), ("CronJob", "Job")):
            uid = self.reserved.setdefault((parent, "a", "x"), self._new_uid())
            controller = {"apiVersion": "v1", "kind": parent, "name": "x", "uid": uid, "controller": True}
            if data.draw(st.integers(0, 3)):
                self._put(OWNER_STORAGE[child], "a", "x", {"metadata": self._meta({}, controller, True)})
            when = data.draw(st.sampled_from(("first", "last", "never")), label=f"{parent} arrives")
            body = {"metadata": {"labels": data.draw(labels_st)}}
            if when == "first":
                self._put(OWNER_STORAGE[parent], "a", "x", body)
            elif when == "last":
                late.append((OWNER_STORAGE[parent], body))
        for name, child in (("x", "ReplicaSet"), ("y", "Job")):
            existing = self._bucket(OWNER_STORAGE[child]).get("a/x")
            uid = existing.uid if existing is not None else self.reserved.setdefault((child, "a", "x"), self._new_uid())
            controller = {"apiVersion": "v1", "kind": child, "name": "x", "uid": uid, "controller": True}
            self.put_pod(name, "a", "n1", data.draw(some_labels_st), "10.0.0.1", False, True, data, controller)
        self.put_pod("x", "b", "n2", data.draw(some_labels_st), "", False, False, data, None)
        self.put_service("x", "a", {}, {"app": data.draw(st.sampled_from(("1", "2")))}, False)
        self.subscribe("n1")
        if data.draw(st.booleans(), label="n2 subscribed"):
            self.subscribe("n2")
        for storage, body in late:  # owners arriving after everything that names them
            self._put(storage, "a", "x", body)

    # -- namespaces -------------------------------------------------------------------------------------------

    @rule(name=namespaces_st, labels=labels_st, recreate=st.booleans())
    def put_namespace(self, name: str, labels: dict[str, str], recreate: bool) -> None:
        self._put("namespaces", "", name, {"metadata": {"labels": labels}}, recreate)

    @rule(name=namespaces_st)
    def delete_namespace(self, name: str) -> None:
        self._delete("namespaces", "", name)

    # -- owners -----------------------------------------------------------------------------------------------

    @rule(
        kind=st.sampled_from(OWNER_KINDS),
        name=names_st,
        namespace=namespaces_st,
        labels=labels_st,
        recreate=st.booleans(),
        generate_name=st.booleans(),
        data=st.data(),
    )
    def put_owner(
        self, kind: str, name: str, namespace: str, labels: dict[str, str], recreate: bool, generate_name: bool,
        data: st.DataObject,
    ) -> None:  # fmt: skip
        namespace = "" if kind == "Node" else namespace
        body = {"metadata": self._meta(labels, self._draw_controller(data), generate_name)}
        self._put(OWNER_STORAGE[kind], namespace, name, body, recreate)

    @precondition(lambda self: bool(self.reserved))
    @rule(data=st.data(), labels=labels_st)
    def create_awaited_owner(self, data: st.DataObject, labels: dict[str, str]) -> None:
        """Create an owner that pods or other owners already name (it arrives after its dependents)."""
        kind, namespace, name = data.draw(st.sampled_from(sorted(self.reserved)), label="slot")
        body = {"metadata": self._meta(labels, self._draw_controller(data), False)}
        self._put(OWNER_STORAGE[kind], namespace, name, body)

    @rule(data=st.data())
    def adopt_or_orphan_owner(self, data: st.DataObject) -> None:
        """Change only an owner's controller (a ReplicaSet adopted by or released from a Deployment, ...)."""
        picked = self._pick(data, *OWNER_STORAGE.values())
        if picked is not None:
            storage, current = picked
            current["metadata"]["ownerReferences"] = self._owner_refs(self._draw_controller(data))
            self._rewrite(storage, current)

    @rule(data=st.data(), labels=labels_st)
    def relabel_owner(self, data: st.DataObject, labels: dict[str, str]) -> None:
        picked = self._pick(data, *OWNER_STORAGE.values())
        if picked is not None:
            storage, current = picked
            current["metadata"]["labels"] = labels
            self._rewrite(storage, current)

    @rule(data=st.data())
    def delete_owner(self, data: st.DataObject) -> None:
        picked = self._pick(data, *OWNER_STORAGE.values())
        if picked is not None:
            storage, current = picked
            self._delete(storage, current["metadata"].get("namespace") or "", current["metadata"]["name"])

    # -- pods -------------------------------------------------------------------------------------------------

    @rule(
        name=names_st,
        namespace=namespaces_st,
        node=st.sampled_from(("", *NODES)),
        labels=labels_st,
        ip=st.sampled_from(("", "10.0.0.1", "10.0.0.2")),
        recreate=st.booleans(),
        generate_name=st.booleans(),
        data=st.data(),
    )
    def put_pod(
        self, name: str, namespace: str, node: str, labels: dict[str, str], ip: str, recreate: bool,
        generate_name: bool, data: st.DataObject, controller: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        if controller is None:
            controller = self._draw_controller(data)
        body = {
            "metadata": self._meta(labels, controller, generate_name),
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}]} if ip else {},
        }
        self._put("pods", namespace, name, body, recreate)

    @rule(data=st.data(), labels=labels_st)
    def relabel_pod(self, data: st.DataObject, labels: dict[str, str]) -> None:
        picked = self._pick(data, "pods")
        if picked is not None:
            picked[1]["metadata"]["labels"] = labels
            self._rewrite(*picked)

    @rule(data=st.data(), node=st.sampled_from(NODES))
    def move_pod(self, data: st.DataObject, node: str) -> None:
        picked = self._pick(data, "pods")
        if picked is not None:
            picked[1]["spec"]["nodeName"] = node
            self._rewrite(*picked)

    @rule(data=st.data())
    def adopt_or_orphan_pod(self, data: st.DataObject) -> None:
        picked = self._pick(data, "pods")
        if picked is not None:
            picked[1]["metadata"]["ownerReferences"] = self._owner_refs(self._draw_controller(data))
            self._rewrite(*picked)

    @rule(data=st.data(), ip=st.sampled_from(("", "10.0.0.1", "10.0.0.2")))
    def set_pod_ip(self, data: st.DataObject, ip: str) -> None:
        picked = self._pick(data, "pods")
        if picked is not None:
            picked[1]["status"] = {"podIP": ip, "podIPs": [{"ip": ip}]} if ip else {}
            self._rewrite(*picked)

    @rule(data=st.data())
    def delete_pod(self, data: st.DataObject) -> None:
        picked = self._pick(data, "pods")
        if picked is not None:
            meta = picked[1]["metadata"]
            self._delete("pods", meta["namespace"], meta["name"])

    # -- services ---------------------------------------------------------------------------------------------

    @rule(name=names_st, namespace=namespaces_st, labels=labels_st, selector=selector_st, recreate=st.booleans())
    def put_service(
        self, name: str, namespace: str, labels: dict[str, str], selector: dict[str, str], recreate: bool
    ) -> None:
        body = {"metadata": {"labels": labels}, "spec": {"selector": selector, "ports": [{"port": 80}]}}
        self._put("services", namespace, name, body, recreate)

    @rule(data=st.data(), labels=labels_st)
    def relabel_service(self, data: st.DataObject, labels: dict[str, str]) -> None:
        picked = self._pick(data, "services")
        if picked is not None:
            picked[1]["metadata"]["labels"] = labels
            self._rewrite(*picked)

    @rule(data=st.data(), selector=selector_st)
    def reselect_service(self, data: st.DataObject, selector: dict[str, str]) -> None:
        picked = self._pick(data, "services")
        if picked is not None:
            picked[1]["spec"]["selector"] = selector
            self._rewrite(*picked)

    @rule(data=st.data())
    def delete_service(self, data: st.DataObject) -> None:
        picked = self._pick(data, "services")
        if picked is not None:
            meta = picked[1]["metadata"]
            self._delete("services", meta["namespace"], meta["name"])

    # -- subscribers ------------------------------------------------------------------------------------------

    @rule(node=st.sampled_from(NODES))
    def subscribe(self, node: str) -> None:
        snapshot = self.index.subscribe(node)
        fresh = Holder(node)
        fresh.apply(snapshot)
        if node in self.holders:
            # A further subscriber of the node gets exactly what the first one holds.
            assert fresh.objects == self.holders[node].objects
        else:
            self.holders[node] = fresh
        self.subscriptions[node] = self.subscriptions.get(node, 0) + 1

    # Keep a subscriber somewhere: a run where nobody listens checks nothing.
    @precondition(lambda self: sum(self.subscriptions.values()) > 1)
    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        node = data.draw(st.sampled_from(sorted(self.subscriptions)))
        self.index.unsubscribe(node)
        self.subscriptions[node] -= 1
        if not self.subscriptions[node]:
            del self.subscriptions[node]
            del self.holders[node]

    # -- the property -----------------------------------------------------------------------------------------

    @invariant()
    def subscribers_hold_the_truth(self) -> None:
        for node in NODES:
            assert self.index.is_subscribed(node) == (node in self.subscriptions)
            if node not in self.holders:
                assert not self.index.view(node)
                continue
            held = self.holders[node].comparable()
            assert held == comparable(node_view(self.store, node).values()), node
            assert held == comparable(self.index.view(node).values())


IndexVersusTruth.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestIndexVersusTruth = IndexVersusTruth.TestCase
