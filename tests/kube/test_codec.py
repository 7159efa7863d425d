"""The codec: only the declared fields, and the strings many cached objects repeat shared between them."""

from __future__ import annotations

import json

import pytest

from nodemeta.kube.codec import Change, Codec
from nodemeta.kube.errors import DecodeError
from nodemeta.kube.models import Pod, Service


def _pod(name: str, **labels: str) -> dict[str, object]:
    # Built per call from fresh strings (json round trip), as two separate API objects would be.
    body = {
        "metadata": {
            "name": name,
            "namespace": "shop-" + "frontend",
            "uid": f"uid-{name}",
            "resourceVersion": "7",
            "generateName": "web-5d8f-",
            "labels": labels,
            "annotations": {"huge": "x" * 10_000},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f", "uid": "rs-1", "controller": True}
            ],
        },
        "spec": {"nodeName": "node-" + "0042", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"podIPs": [{"ip": "10.0.0.9"}], "phase": "Running"},
    }
    return json.loads(json.dumps(body))


def _list(*items: dict[str, object]) -> bytes:
    return json.dumps({"kind": "PodList", "metadata": {"resourceVersion": "9"}, "items": list(items)}).encode()


def test_list_items_share_repeated_strings_and_keep_unique_ones() -> None:
    a, b = Codec(Pod).decode_list(_list(_pod("a", app="web", tier="front"), _pod("b", app="web", tier="front"))).items
    assert a.metadata.labels == b.metadata.labels == {"app": "web", "tier": "front"}
    for key_a, key_b in zip(a.metadata.labels, b.metadata.labels, strict=True):
        assert key_a is key_b
        assert a.metadata.labels[key_a] is b.metadata.labels[key_b]
    assert a.metadata.namespace is b.metadata.namespace
    assert a.metadata.generate_name is b.metadata.generate_name
    assert a.spec.node_name is b.spec.node_name == "node-0042"
    assert a.metadata.owner_references[0].kind is b.metadata.owner_references[0].kind
    ref = a.metadata.controller_ref()
    assert ref is not None and (ref.kind, ref.uid) == ("ReplicaSet", "rs-1")
    assert (a.metadata.name, a.metadata.uid, a.metadata.resource_version) == ("a", "uid-a", "7")
    assert a.status.pod_ips[0].ip == "10.0.0.9"


def test_watch_objects_share_strings_with_listed_ones() -> None:
    codec = Codec(Pod)
    (listed,) = codec.decode_list(_list(_pod("a", app="web"))).items
    line = json.dumps({"type": "MODIFIED", "object": _pod("b", app="web")}).encode()
    change = codec.decode_event(line)
    assert isinstance(change, Change)
    watched = change.object
    assert next(iter(watched.metadata.labels)) is next(iter(listed.metadata.labels))
    assert watched.metadata.namespace is listed.metadata.namespace
    assert watched.spec.node_name is listed.spec.node_name


def test_service_selectors_are_shared() -> None:
    body = {"metadata": {"name": "s", "namespace": "ns"}, "spec": {"selector": {"app": "w" + "eb"}}}
    codec = Codec(Service)
    one = codec.decode_list(json.dumps({"items": [body]}).encode()).items[0]
    two = codec.decode_list(json.dumps({"items": [json.loads(json.dumps(body))]}).encode()).items[0]
    assert one.spec.selector == {"app": "web"}
    assert one.spec.selector["app"] is two.spec.selector["app"]


def test_a_malformed_page_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="list of Pod"):
        Codec(Pod).decode_list(b'{"items": [{"metadata": {"labels": ["not", "a", "map"]}}]}')
