"""The relation index, rule by rule (shared spec section 3), fed with hand-made records."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from nodemeta.collector.model import NamespaceInfo, ObjectRef, OwnerInfo, PodInfo, Reason, ServiceInfo
from nodemeta.collector.relations import Delta, RelationIndex, selects, view_changes
from nodemeta.collector.render import Payload
from tests.collector.holder import Holder

Event = tuple[str, str, str, str]  # node, reason, kind, uid

NS = NamespaceInfo("ns-1", "shop", labels={"team": "a"})
DEP = OwnerInfo("Deployment", "dep-1", "web", "shop")
RS = OwnerInfo("ReplicaSet", "rs-1", "web-5c8", "shop", controller_owner=ObjectRef("Deployment", "dep-1"))
SVC = ServiceInfo("svc-1", "web", "shop", selector={"app": "web"})
RS_REF = ObjectRef("ReplicaSet", "rs-1")


def pod(
    uid: str = "pod-1",
    node: str = "n1",
    labels: dict[str, str] | None = None,
    owner: ObjectRef | None = RS_REF,
    ip: str = "",
    namespace: str = "shop",
) -> PodInfo:
    labels = {"app": "web"} if labels is None else labels
    return PodInfo(uid, uid, namespace, "", labels, node_name=node, pod_ip=ip, controller_owner=owner)


def events(deltas: Iterable[Delta]) -> list[Event]:
    return [(d.node, d.reason.value, d.kind, d.uid) for d in deltas]


def refs_of(index: RelationIndex, node: str, uid: str) -> dict[str, tuple[str, ...]] | None:
    return index.view(node)[ObjectRef("Pod", uid)].refs_map()


@pytest.fixture
def index() -> RelationIndex:
    """A Deployment's ReplicaSet with one pod on n1, its namespace and a Service selecting it; n1 subscribed."""
    idx = RelationIndex()
    for info in (NS, DEP, RS, SVC, pod()):
        idx.apply(info)
    idx.subscribe("n1")
    return idx


def test_subscribe_sends_every_relevant_object_as_create(index: RelationIndex) -> None:
    index.apply(pod("pod-2", node="n2"))
    index.apply(OwnerInfo("DaemonSet", "ds-1", "agent", "shop"))
    index.apply(ServiceInfo("svc-2", "other", "shop", selector={"app": "db"}))
    snapshot = index.subscribe("n2")
    assert events(snapshot) == [
        ("n2", "Create", "Namespace", "ns-1"),
        ("n2", "Create", "ReplicaSet", "rs-1"),
        ("n2", "Create", "Deployment", "dep-1"),
        ("n2", "Create", "Service", "svc-1"),
        ("n2", "Create", "Pod", "pod-2"),
    ]
    payload = snapshot[-1].payload
    assert payload is not None
    assert payload.meta == '{"labels":{"app":"web"},"name":"pod-2","namespace":"shop","uid":"pod-2"}'
    assert payload.status == "{}"
    assert payload.refs_map() == {
        "Namespace": ("ns-1",), "ReplicaSet": ("rs-1",), "Deployment": ("dep-1",), "Service": ("svc-1",),
    }  # fmt: skip
    # A second subscriber of the same node gets the same view; the unknown node gets nothing.
    assert events(index.subscribe("n2")) == events(snapshot)
    assert index.subscribe("node-that-does-not-exist") == []


def test_empty_node_name_is_refused() -> None:
    with pytest.raises(ValueError, match="node name"):
        RelationIndex().subscribe("")


def test_unsubscribed_nodes_get_no_deltas_and_state_is_dropped(index: RelationIndex) -> None:
    assert index.apply(pod("pod-2", node="n2")) == []
    index.subscribe("n1")
    index.unsubscribe("n1")
    assert index.is_subscribed("n1")  # one subscriber left
    index.unsubscribe("n1")
    assert not index.is_subscribed("n1") and not index.view("n1")
    assert index.apply(pod(ip="10.0.0.9")) == []
    index.unsubscribe("n1")  # unknown: harmless
    assert [d.reason for d in index.subscribe("n1")] == [Reason.CREATE] * 5
    assert index.view("n1")[ObjectRef("Pod", "pod-1")].status == '{"podIP":"10.0.0.9"}'


def test_unsubscribe_all_drops_every_view_and_the_index_keeps_following(index: RelationIndex) -> None:
    index.subscribe("n1")
    index.subscribe("n1")
    index.subscribe("n2")
    index.unsubscribe_all()
    assert not index.is_subscribed("n1") and not index.is_subscribed("n2") and not index.view("n1")
    assert index.apply(pod(ip="10.0.0.7")) == []
    assert [d.reason for d in index.subscribe("n1")] == [Reason.CREATE] * 5
    assert index.view("n1")[ObjectRef("Pod", "pod-1")].status == '{"podIP":"10.0.0.7"}'


def test_pod_ip_change_is_an_update_with_the_full_payload(index: RelationIndex) -> None:
    deltas = index.apply(pod(ip="10.244.1.5"))
    assert events(deltas) == [("n1", "Update", "Pod", "pod-1")]
    payload = deltas[0].payload
    assert payload is not None and payload.status == '{"podIP":"10.244.1.5"}'
    assert payload.meta.startswith('{"labels"') and payload.refs_map() is not None


def test_an_unchanged_render_sends_nothing(index: RelationIndex) -> None:
    assert index.apply(pod()) == []
    assert index.apply(NamespaceInfo("ns-1", "shop", labels={"team": "a"})) == []
    # A change the payloads do not carry (here: a pod's node-less twin elsewhere) sends nothing either.
    assert (
        index.apply(OwnerInfo("ReplicaSet", "rs-1", "web-5c8", "shop", "", {}, ObjectRef("Deployment", "dep-1"))) == []
    )


def test_scale_to_zero_deletes_everything_the_pod_made_relevant(index: RelationIndex) -> None:
    deltas = index.delete(pod())
    assert events(deltas) == [
        ("n1", "Delete", "Pod", "pod-1"),
        ("n1", "Delete", "Namespace", "ns-1"),
        ("n1", "Delete", "ReplicaSet", "rs-1"),
        ("n1", "Delete", "Deployment", "dep-1"),
        ("n1", "Delete", "Service", "svc-1"),
    ]
    assert not index.view("n1")
    assert index.delete(pod()) == []


def test_objects_stay_while_another_pod_on_the_node_needs_them(index: RelationIndex) -> None:
    index.apply(pod("pod-2"))
    assert events(index.delete(pod())) == [("n1", "Delete", "Pod", "pod-1")]


def test_a_pod_moving_node(index: RelationIndex) -> None:
    index.subscribe("n2")
    deltas = index.apply(pod(node="n2"))
    assert sorted(events(deltas)) == sorted(
        [("n1", "Delete", kind, uid) for kind, uid in
         [("Pod", "pod-1"), ("Namespace", "ns-1"), ("ReplicaSet", "rs-1"), ("Deployment", "dep-1"),
          ("Service", "svc-1")]]
        + [("n2", "Create", kind, uid) for kind, uid in
           [("Pod", "pod-1"), ("Namespace", "ns-1"), ("ReplicaSet", "rs-1"), ("Deployment", "dep-1"),
            ("Service", "svc-1")]]
    )  # fmt: skip
    # And one being unscheduled (node name cleared) leaves every node.
    assert {e[1] for e in events(index.apply(pod(node="")))} == {"Delete"}
    assert not index.view("n2")


def test_a_shared_object_is_deleted_only_where_it_stopped_mattering(index: RelationIndex) -> None:
    index.apply(pod("pod-2", node="n2"))
    index.subscribe("n2")
    assert ("n2", "Delete", "Deployment", "dep-1") not in events(index.delete(pod()))
    assert ObjectRef("Deployment", "dep-1") in index.view("n2")
    assert events(index.apply(OwnerInfo("Deployment", "dep-1", "web", "shop", labels={"v": "2"}))) == [
        ("n2", "Update", "Deployment", "dep-1")
    ]


def test_service_selector_changes(index: RelationIndex) -> None:
    moved = ServiceInfo("svc-1", "web", "shop", selector={"app": "db"})
    assert events(index.apply(moved)) == [("n1", "Update", "Pod", "pod-1"), ("n1", "Delete", "Service", "svc-1")]
    assert refs_of(index, "n1", "pod-1")["Service"] == ()  # type: ignore[index]
    assert events(index.apply(SVC)) == [("n1", "Create", "Service", "svc-1"), ("n1", "Update", "Pod", "pod-1")]
    # Emptied: an empty selector selects nothing.
    emptied = ServiceInfo("svc-1", "web", "shop", selector={})
    assert events(index.apply(emptied)) == [("n1", "Update", "Pod", "pod-1"), ("n1", "Delete", "Service", "svc-1")]
    # A selector-less service is never sent, whatever its labels.
    assert index.apply(ServiceInfo("svc-1", "web", "shop", labels={"x": "y"})) == []


def test_service_label_change_updates_its_holders(index: RelationIndex) -> None:
    relabelled = ServiceInfo("svc-1", "web", "shop", labels={"tier": "front"}, selector={"app": "web"})
    deltas = index.apply(relabelled)
    assert events(deltas) == [("n1", "Update", "Service", "svc-1")]
    assert deltas[0].payload is not None and '"tier":"front"' in deltas[0].payload.meta


def test_service_deleted(index: RelationIndex) -> None:
    index.apply(ServiceInfo("svc-0", "api", "shop", selector={"app": "web"}))
    assert refs_of(index, "n1", "pod-1")["Service"] == ("svc-0", "svc-1")  # type: ignore[index]
    assert events(index.delete(SVC)) == [("n1", "Update", "Pod", "pod-1"), ("n1", "Delete", "Service", "svc-1")]
    assert refs_of(index, "n1", "pod-1")["Service"] == ("svc-0",)  # type: ignore[index]


def test_services_only_match_pods_of_their_namespace(index: RelationIndex) -> None:
    assert index.apply(ServiceInfo("svc-9", "web", "elsewhere", selector={"app": "web"})) == []


def test_pod_label_change_reevaluates_services(index: RelationIndex) -> None:
    assert events(index.apply(pod(labels={"app": "db"}))) == [
        ("n1", "Update", "Pod", "pod-1"),
        ("n1", "Delete", "Service", "svc-1"),
    ]
    assert events(index.apply(pod())) == [("n1", "Create", "Service", "svc-1"), ("n1", "Update", "Pod", "pod-1")]


def test_namespace_label_change_updates_only_the_nodes_holding_it(index: RelationIndex) -> None:
    index.subscribe("n2")  # no pods there
    deltas = index.apply(NamespaceInfo("ns-1", "shop", labels={"team": "b"}))
    assert events(deltas) == [("n1", "Update", "Namespace", "ns-1")]
    assert deltas[0].payload is not None and deltas[0].payload.meta == (
        '{"labels":{"team":"b"},"name":"shop","uid":"ns-1"}'
    )


def test_namespace_deletion_and_recreation(index: RelationIndex) -> None:
    assert events(index.delete(NS)) == [("n1", "Update", "Pod", "pod-1"), ("n1", "Delete", "Namespace", "ns-1")]
    assert "Namespace" not in refs_of(index, "n1", "pod-1")  # type: ignore[operator]
    # A stale delete (another uid under the name) changes nothing.
    assert index.delete(NamespaceInfo("ns-old", "shop")) == []
    recreated = NamespaceInfo("ns-2", "shop")
    assert events(index.apply(recreated)) == [("n1", "Create", "Namespace", "ns-2"), ("n1", "Update", "Pod", "pod-1")]
    assert refs_of(index, "n1", "pod-1")["Namespace"] == ("ns-2",)  # type: ignore[index]
    # Replaced in place by a new uid under the same name.
    assert sorted(events(index.apply(NamespaceInfo("ns-3", "shop")))) == [
        ("n1", "Create", "Namespace", "ns-3"),
        ("n1", "Delete", "Namespace", "ns-2"),
        ("n1", "Update", "Pod", "pod-1"),
    ]


def test_pod_adopted_and_orphaned(index: RelationIndex) -> None:
    bare = pod("pod-2", owner=None)
    created = index.apply(bare)
    assert events(created) == [("n1", "Create", "Pod", "pod-2")]
    assert refs_of(index, "n1", "pod-2") == {"Namespace": ("ns-1",), "Service": ("svc-1",)}
    index.apply(OwnerInfo("ReplicationController", "rc-1", "web", "shop"))
    adopted = pod("pod-2", owner=ObjectRef("ReplicationController", "rc-1"))
    assert events(index.apply(adopted)) == [
        ("n1", "Create", "ReplicationController", "rc-1"),
        ("n1", "Update", "Pod", "pod-2"),
    ]
    assert refs_of(index, "n1", "pod-2")["ReplicationController"] == ("rc-1",)  # type: ignore[index]
    assert events(index.apply(bare)) == [
        ("n1", "Update", "Pod", "pod-2"),
        ("n1", "Delete", "ReplicationController", "rc-1"),
    ]


def test_relevance_follows_uids_not_name_prefixes(index: RelationIndex) -> None:
    # Same name and generateName as the ReplicaSet's pods, but another owner: the RS does not gain a pod.
    lookalike = PodInfo("pod-3", "web-5c8-abcde", "shop", "web-5c8-", {}, node_name="n2")
    index.apply(lookalike)
    assert events(index.subscribe("n2")) == [("n2", "Create", "Namespace", "ns-1"), ("n2", "Create", "Pod", "pod-3")]


def test_replicaset_adopted_and_released_by_a_deployment(index: RelationIndex) -> None:
    orphan_rs = OwnerInfo("ReplicaSet", "rs-1", "web-5c8", "shop")
    assert events(index.apply(orphan_rs)) == [
        ("n1", "Update", "Pod", "pod-1"),
        ("n1", "Delete", "Deployment", "dep-1"),
    ]
    assert "Deployment" not in refs_of(index, "n1", "pod-1")  # type: ignore[operator]
    assert events(index.apply(RS)) == [("n1", "Create", "Deployment", "dep-1"), ("n1", "Update", "Pod", "pod-1")]
    assert refs_of(index, "n1", "pod-1")["Deployment"] == ("dep-1",)  # type: ignore[index]


def test_owner_deleted_before_its_pods(index: RelationIndex) -> None:
    assert events(index.delete(RS)) == [
        ("n1", "Update", "Pod", "pod-1"),  # the Deployment ref came from the ReplicaSet
        ("n1", "Delete", "ReplicaSet", "rs-1"),
        ("n1", "Delete", "Deployment", "dep-1"),
    ]
    assert refs_of(index, "n1", "pod-1") == {"Namespace": ("ns-1",), "ReplicaSet": ("rs-1",), "Service": ("svc-1",)}
    assert events(index.delete(DEP)) == []
    # The deployment deleted while its ReplicaSet stays: only the Deployment goes (refs keep its uid).
    index.apply(RS)
    index.apply(DEP)
    assert events(index.delete(DEP)) == [("n1", "Delete", "Deployment", "dep-1")]
    assert refs_of(index, "n1", "pod-1")["Deployment"] == ("dep-1",)  # type: ignore[index]


def test_pod_before_its_namespace_and_owners() -> None:
    index = RelationIndex()
    holder = Holder("n1")
    holder.apply(index.subscribe("n1"))
    holder.apply(created := index.apply(pod()))
    assert events(created) == [("n1", "Create", "Pod", "pod-1")]
    assert refs_of(index, "n1", "pod-1") == {"ReplicaSet": ("rs-1",), "Service": ()}
    holder.apply(deltas := index.apply(NS))
    assert events(deltas) == [("n1", "Create", "Namespace", "ns-1"), ("n1", "Update", "Pod", "pod-1")]
    holder.apply(deltas := index.apply(DEP))
    assert deltas == []  # nothing on the node relates to it yet
    holder.apply(deltas := index.apply(RS))
    assert events(deltas) == [
        ("n1", "Create", "ReplicaSet", "rs-1"),
        ("n1", "Create", "Deployment", "dep-1"),
        ("n1", "Update", "Pod", "pod-1"),
    ]
    holder.apply(deltas := index.apply(SVC))
    assert events(deltas) == [("n1", "Create", "Service", "svc-1"), ("n1", "Update", "Pod", "pod-1")]
    assert set(holder.objects) == {
        ("Pod", "pod-1"), ("Namespace", "ns-1"), ("ReplicaSet", "rs-1"), ("Deployment", "dep-1"), ("Service", "svc-1"),
    }  # fmt: skip


def test_bare_replicaset_arriving_late_sends_no_pod_update() -> None:
    index = RelationIndex()
    index.subscribe("n1")
    index.apply(NS)
    index.apply(pod(owner=ObjectRef("ReplicaSet", "rs-9")))
    assert events(index.apply(OwnerInfo("ReplicaSet", "rs-9", "bare", "shop"))) == [
        ("n1", "Create", "ReplicaSet", "rs-9")
    ]


def test_job_and_cronjob_chain() -> None:
    index = RelationIndex()
    index.apply(NS)
    index.apply(OwnerInfo("CronJob", "cj-1", "nightly", "shop"))
    index.apply(OwnerInfo("Job", "job-1", "nightly-1", "shop", controller_owner=ObjectRef("CronJob", "cj-1")))
    index.apply(pod(owner=ObjectRef("Job", "job-1")))
    assert {(e[2], e[3]) for e in events(index.subscribe("n1"))} == {
        ("Namespace", "ns-1"), ("Job", "job-1"), ("CronJob", "cj-1"), ("Pod", "pod-1"),
    }  # fmt: skip
    # Only a ReplicaSet's owner is named in a pod's refs (as the Falco contract does); the Job (a kind beyond the
    # Falco contract) names its CronJob in its own refs.
    assert refs_of(index, "n1", "pod-1") == {"Namespace": ("ns-1",), "Job": ("job-1",), "Service": ()}
    assert index.view("n1")[ObjectRef("Job", "job-1")].refs_map() == {"CronJob": ("cj-1",)}
    assert index.view("n1")[ObjectRef("CronJob", "cj-1")].refs is None
    # Orphaned: the Job's payload changes (an Update without refs); the CronJob is no longer relevant.
    orphaned = index.apply(OwnerInfo("Job", "job-1", "nightly-1", "shop"))
    assert sorted(events(orphaned)) == [("n1", "Delete", "CronJob", "cj-1"), ("n1", "Update", "Job", "job-1")]
    assert index.view("n1")[ObjectRef("Job", "job-1")].refs is None


def test_falco_kinds_carry_no_owner_refs(index: RelationIndex) -> None:
    """A ReplicaSet's Deployment is named in its pods' refs, never in the ReplicaSet's own payload."""
    view = index.view("n1")
    assert view[ObjectRef("ReplicaSet", "rs-1")].refs is None
    assert view[ObjectRef("Deployment", "dep-1")].refs is None


def test_mirror_pod_owned_by_its_node() -> None:
    index = RelationIndex()
    index.apply(NamespaceInfo("ns-k", "kube-system"))
    index.apply(OwnerInfo("Node", "node-uid", "n1", labels={"kubernetes.io/hostname": "n1"}))
    index.apply(pod("etcd-n1", labels={}, owner=ObjectRef("Node", "node-uid"), namespace="kube-system"))
    deltas = index.subscribe("n1")
    node = [d.payload for d in deltas if d.kind == "Node"]
    assert (
        node
        and node[0] is not None
        and node[0].meta == ('{"labels":{"kubernetes.io/hostname":"n1"},"name":"n1","uid":"node-uid"}')
    )
    assert refs_of(index, "n1", "etcd-n1") == {"Namespace": ("ns-k",), "Node": ("node-uid",), "Service": ()}


def test_reserved_kinds_are_not_owners() -> None:
    with pytest.raises(ValueError, match="not an owner kind"):
        RelationIndex().apply(OwnerInfo("Service", "x", "x", "ns"))


def test_view_changes_for_a_resubscribe() -> None:
    a = Payload("Namespace", "a", "{}")
    b1, b2 = Payload("Namespace", "b", '{"name":"b"}'), Payload("Namespace", "b", '{"name":"b2"}')
    c = Payload("Pod", "c", "{}", "{}", (("Service", ()),))
    before = {a.ref: a, b1.ref: b1}
    after = {b2.ref: b2, c.ref: c}
    assert events(view_changes("n1", before, after)) == [
        ("n1", "Update", "Namespace", "b"),
        ("n1", "Create", "Pod", "c"),
        ("n1", "Delete", "Namespace", "a"),
    ]
    assert view_changes("n1", after, after) == []


def test_selects() -> None:
    assert selects({"a": "1"}, {"a": "1", "b": "2"})
    assert not selects({"a": "1", "b": "3"}, {"a": "1", "b": "2"})
    assert not selects({}, {"a": "1"})
    assert selects({"a": ""}, {"a": ""}) and not selects({"a": ""}, {})


def test_work_is_proportional_to_the_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Service selector change resolves only the pods it selected or selects; a namespace label change and
    a pod label change resolve nothing beyond the object itself."""
    index = RelationIndex()
    index.apply(NS)
    index.apply(SVC)
    for i in range(2000):
        index.apply(pod(f"p{i}", node=f"n{i % 50}", labels={"app": "web" if i < 3 else "other", "i": str(i)}))
    for n in range(50):
        index.subscribe(f"n{n}")
    resolved: list[str] = []
    original = index._resolve

    def counting(p: PodInfo, *args: object) -> object:
        resolved.append(p.uid)
        return original(p, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(index, "_resolve", counting)
    deltas = index.apply(ServiceInfo("svc-1", "web", "shop", selector={"app": "other", "i": "7"}))
    assert sorted(resolved) == ["p0", "p1", "p2", "p7"]
    assert len(deltas) == 4 + 3 + 1  # four pod Updates, the Service deleted on n0..n2, created on n7
    resolved.clear()
    assert len(index.apply(NamespaceInfo("ns-1", "shop", labels={"team": "z"}))) == 50
    assert resolved == []
    assert events(index.apply(pod("p9", node="n9", labels={"app": "other", "i": "7"}))) == [
        ("n9", "Create", "Service", "svc-1"),
        ("n9", "Update", "Pod", "p9"),
    ]
    assert resolved == ["p9"]
