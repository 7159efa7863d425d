"""Byte-exact payloads: hand-written expectations, and agreement with the simulator's ground-truth renderer."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from nodemeta.collector.model import NamespaceInfo, ObjectRef, OwnerInfo, PodInfo, ServiceInfo
from nodemeta.collector.render import (
    Payload,
    go_escape,
    object_payload,
    pod_refs,
    render_meta,
    render_pod_status,
    unchanged,
)
from nodemeta.sim import truth

UID = "6f0e3b8c-1d2a-4c5e-9f70-8a1b2c3d4e5f"


def test_pod_meta_keeps_five_keys_sorted_and_compact() -> None:
    pod = PodInfo(
        UID, "nginx-deployment-7c79c4bf97-x2x9z", "nginx-test", "nginx-deployment-7c79c4bf97-",
        {"pod-template-hash": "7c79c4bf97", "app": "nginx"}, node_name="n1", pod_ip="10.244.0.7",
        controller_owner=ObjectRef("ReplicaSet", "rs"),
    )  # fmt: skip
    assert render_meta(pod) == (
        '{"generateName":"nginx-deployment-7c79c4bf97-","labels":{"app":"nginx","pod-template-hash":"7c79c4bf97"},'
        f'"name":"nginx-deployment-7c79c4bf97-x2x9z","namespace":"nginx-test","uid":"{UID}"}}'
    )


def test_empty_fields_are_left_out() -> None:
    assert render_meta(PodInfo(UID, "bare", "default")) == f'{{"name":"bare","namespace":"default","uid":"{UID}"}}'
    assert render_meta(OwnerInfo("ReplicaSet", "", "", "", "", {})) == "{}"


def test_namespaces_and_cluster_scoped_owners_have_no_namespace_key() -> None:
    ns = NamespaceInfo(UID, "kube-system", labels={"kubernetes.io/metadata.name": "kube-system"})
    assert (
        render_meta(ns)
        == f'{{"labels":{{"kubernetes.io/metadata.name":"kube-system"}},"name":"kube-system","uid":"{UID}"}}'
    )
    node = OwnerInfo("Node", UID, "kind-control-plane")
    assert render_meta(node) == f'{{"name":"kind-control-plane","uid":"{UID}"}}'


def test_service_meta_ignores_the_selector() -> None:
    svc = ServiceInfo(UID, "web", "shop", labels={"tier": "front"}, selector={"app": "web"})
    assert render_meta(svc) == f'{{"labels":{{"tier":"front"}},"name":"web","namespace":"shop","uid":"{UID}"}}'


def test_go_escaping() -> None:
    labels = {
        "html": "<a href='x'>&amp;</a>",
        "seps": "line\u2028para\u2029end",
        "utf8": "caf\u00e9 \u65e5\u672c \U0001f600",
        "quote": 'say "hi" \\ back',
        "ctrl": "a\nb\tc\rd\x01e\x1ff\x7fg\x08h\x0ci",
    }
    expected = (
        '{"labels":{'
        '"ctrl":"a\\nb\\tc\\rd\\u0001e\\u001ff\x7fg\\bh\\fi",'
        '"html":"\\u003ca href=\'x\'\\u003e\\u0026amp;\\u003c/a\\u003e",'
        '"quote":"say \\"hi\\" \\\\ back",'
        '"seps":"line\\u2028para\\u2029end",'
        '"utf8":"caf\u00e9 \u65e5\u672c \U0001f600"'
        '},"name":"n","uid":"u"}'
    )
    assert render_meta(NamespaceInfo("u", "n", labels=labels)) == expected
    assert go_escape("plain") == "plain"
    assert go_escape('"<&>"') == '"\\u003c\\u0026\\u003e"'


def test_label_keys_sort_by_code_point() -> None:
    labels = {"b": "1", "B": "2", "a.b": "3", "a-b": "4", "a/b": "5", "\u00e9": "6", "\U0001f600": "7", "\uffff": "8"}
    meta = render_meta(NamespaceInfo("u", "n", labels=labels))
    assert meta == (
        '{"labels":{"B":"2","a-b":"4","a.b":"3","a/b":"5","b":"1","\u00e9":"6","\uffff":"8","\U0001f600":"7"},'
        '"name":"n","uid":"u"}'
    )


def test_pod_status() -> None:
    assert render_pod_status("10.244.0.7") == '{"podIP":"10.244.0.7"}'
    assert render_pod_status("fd00::1") == '{"podIP":"fd00::1"}'
    assert render_pod_status("") == "{}"


def test_pod_refs() -> None:
    rs, dep = ObjectRef("ReplicaSet", "rs-1"), ObjectRef("Deployment", "dep-1")
    assert pod_refs("ns-1", rs, dep, ["svc-b", "svc-a"]) == (
        ("Namespace", ("ns-1",)),
        ("ReplicaSet", ("rs-1",)),
        ("Deployment", ("dep-1",)),
        ("Service", ("svc-a", "svc-b")),
    )
    assert pod_refs("ns-1", None, None, []) == (("Namespace", ("ns-1",)), ("Service", ()))
    assert pod_refs(None, ObjectRef("Node", "node-uid"), None, ()) == (("Node", ("node-uid",)), ("Service", ()))
    assert pod_refs(None, None, None, ()) == (("Service", ()),)


def test_payload_equality_and_hash() -> None:
    a = Payload("Pod", "u", "{}", "{}", (("Service", ()),))
    b = Payload("Pod", "u", "{}", "{}", (("Service", ()),))
    c = Payload("Pod", "u", "{}", '{"podIP":"1.2.3.4"}', (("Service", ()),))
    assert a == b and hash(a) == hash(b) and unchanged(a, b) and unchanged(a, a)
    assert a != c and not unchanged(a, c) and not unchanged(None, a) and unchanged(None, None)
    assert a.refs_map() == {"Service": ()}
    assert a.ref == ObjectRef("Pod", "u")
    ns = object_payload(NamespaceInfo("u", "n"))
    assert (ns.kind, ns.status, ns.refs, ns.refs_map()) == ("Namespace", None, None, None)
    assert object_payload(ServiceInfo("s", "n", "ns")).kind == "Service"
    assert object_payload(OwnerInfo("DaemonSet", "d", "n", "ns")).kind == "DaemonSet"


text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@given(
    name=text,
    namespace=text,
    generate_name=text,
    labels=st.dictionaries(text, text, max_size=4),
    cluster_scoped=st.booleans(),
)
def test_meta_agrees_with_the_ground_truth(
    name: str, namespace: str, generate_name: str, labels: dict[str, str], cluster_scoped: bool
) -> None:
    meta: dict[str, Any] = {"name": name, "uid": UID, "generateName": generate_name, "labels": labels}
    if cluster_scoped:
        info: NamespaceInfo | PodInfo = NamespaceInfo(UID, name, generate_name, labels)
    else:
        meta["namespace"] = namespace
        info = PodInfo(UID, name, namespace, generate_name, labels)
    assert render_meta(info) == truth.render_meta({"metadata": meta})


def test_kind_vocabulary() -> None:
    from nodemeta.collector.model import EXTRA_KINDS, FALCO_KINDS, KIND_ALIASES, ref_of

    assert KIND_ALIASES["ReplicaController"] in FALCO_KINDS and not FALCO_KINDS & EXTRA_KINDS
    assert ref_of(PodInfo("p", "n", "ns")) == ObjectRef("Pod", "p")
    assert ref_of(NamespaceInfo("u", "n")) == ObjectRef("Namespace", "u")
    assert ref_of(ServiceInfo("s", "n", "ns")) == ObjectRef("Service", "s")
    assert ref_of(OwnerInfo("Job", "j", "n", "ns")) == ObjectRef("Job", "j")
