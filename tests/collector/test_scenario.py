"""k8s-metacollector's public e2e scenario (built by the simulator's ground-truth tests), through the index."""

from __future__ import annotations

from nodemeta.collector.relations import RelationIndex
from nodemeta.sim.store import Store
from nodemeta.sim.truth import kinds_in, node_view
from tests.collector.adapt import FED_KINDS, info_from
from tests.collector.holder import Holder, comparable
from tests.sim.test_truth import scenario


def index_of(store: Store) -> RelationIndex:
    index = RelationIndex()
    for bucket in store.buckets.values():
        if bucket.res.kind in FED_KINDS:
            for stored in bucket.items.values():
                index.apply(info_from(bucket.res.kind, stored.decode()))
    return index


def test_e2e_scenario_matches_the_ground_truth() -> None:
    reg, objs = scenario()
    index = index_of(reg.store)
    for node in ("node-1", "node-2", "no-node-exists"):
        holder = Holder(node)
        holder.apply(index.subscribe(node))
        assert holder.comparable() == comparable(node_view(reg.store, node).values())
    assert index.view("no-node-exists") == {}
    kinds = {key[0] for key in index.view("node-1")}
    assert kinds == {"Pod", "Namespace", "Deployment", "ReplicaSet", "DaemonSet", "ReplicationController", "Service"}
    # The selector-less and non-matching services are sent nowhere.
    for name in ("svc_none", "svc_other"):
        assert ("Service", objs[name]["metadata"]["uid"]) not in index.view("node-1")


def test_falco_kind_subset() -> None:
    reg, _ = scenario()
    index = index_of(reg.store)
    index.subscribe("node-1")
    falco = ["Pod", "Namespace", "Deployment", "Service", "ReplicaSet", "ReplicationController"]
    wanted = {key for key in index.view("node-1") if key[0] in falco}
    assert wanted == set(kinds_in(node_view(reg.store, "node-1"), falco))
