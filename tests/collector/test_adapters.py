"""The adapters from decoded API objects to the collector's records, checked against the simulator's JSON too."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from nodemeta.collector.adapters import (
    controller_owner,
    namespace_info,
    node_info,
    owner_info,
    pod_info,
    service_info,
)
from nodemeta.collector.model import NamespaceInfo, ObjectRef, OwnerInfo, PodInfo, ServiceInfo
from nodemeta.collector.render import render_meta, render_pod_status
from nodemeta.kube.models import Namespace, Node, ObjectMeta, OwnerReference, PartialObjectMetadata, Pod, Service
from nodemeta.sim.truth import render_meta as truth_meta
from tests.collector.adapt import info_from


def decode(model: type[Any], obj: dict[str, Any]) -> Any:
    return msgspec.json.decode(msgspec.json.encode(obj), type=model)


POD = {
    "metadata": {
        "name": "web-5c8-abcde",
        "generateName": "web-5c8-",
        "namespace": "shop",
        "uid": "11111111-0000-0000-0000-000000000001",
        "resourceVersion": "42",
        "labels": {"app": "web", "pod-template-hash": "5c8"},
        "annotations": {"ignored": "yes"},
        "ownerReferences": [
            {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "node-uid"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5c8", "uid": "rs-uid", "controller": True},
        ],
    },
    "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx"}]},
    "status": {"phase": "Running", "podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}]},
}


def test_pod() -> None:
    info = pod_info(decode(Pod, POD))
    assert info == PodInfo(
        "11111111-0000-0000-0000-000000000001", "web-5c8-abcde", "shop", "web-5c8-",
        {"app": "web", "pod-template-hash": "5c8"},
        node_name="node-1", pod_ip="10.0.0.7", controller_owner=ObjectRef("ReplicaSet", "rs-uid"),
    )  # fmt: skip
    # Same record as the test-side adapter builds from the raw JSON, and the same bytes as the ground truth.
    assert info == info_from("Pod", POD)
    assert render_meta(info) == truth_meta(POD)
    assert render_pod_status(info.pod_ip) == '{"podIP":"10.0.0.7"}'


@pytest.mark.parametrize(
    ("status", "ip"),
    [
        ({}, ""),
        ({"podIP": "", "podIPs": [{"ip": "10.1.1.1"}, {"ip": "fd00::1"}]}, "10.1.1.1"),
        ({"podIPs": [{"ip": "fd00::2"}]}, "fd00::2"),
        ({"podIP": "10.2.2.2"}, "10.2.2.2"),
        ({"podIPs": []}, ""),
    ],
)
def test_pod_ip_falls_back_to_the_first_pod_ips_entry(status: dict[str, Any], ip: str) -> None:
    pod = {"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "status": status}
    assert pod_info(decode(Pod, pod)).pod_ip == ip


def test_unscheduled_pod_without_owner() -> None:
    info = pod_info(decode(Pod, {"metadata": {"name": "p", "namespace": "d", "uid": "u"}}))
    assert info == PodInfo("u", "p", "d")
    assert info.node_name == "" and info.controller_owner is None and info.labels == {}


@pytest.mark.parametrize(
    ("refs", "expected"),
    [
        ([], None),
        ([OwnerReference(kind="ReplicaSet", uid="a", controller=True)], ObjectRef("ReplicaSet", "a")),
        ([OwnerReference(kind="ReplicaSet", uid="a", controller=False)], None),
        ([OwnerReference(kind="ReplicaSet", uid="a")], None),  # controller unset (Go's nil case)
        (
            [OwnerReference(kind="Job", uid="j"), OwnerReference(kind="CronJob", uid="c", controller=True),
             OwnerReference(kind="X", uid="x", controller=True)],
            ObjectRef("CronJob", "c"),
        ),
    ],
)  # fmt: skip
def test_controller_owner_is_the_first_controller_ref(refs: list[OwnerReference], expected: ObjectRef | None) -> None:
    assert controller_owner(ObjectMeta(owner_references=tuple(refs))) == expected


def test_namespace() -> None:
    ns = {
        "metadata": {"name": "shop", "uid": "ns-uid", "labels": {"kubernetes.io/metadata.name": "shop"}},
        "status": {"phase": "Active"},
    }
    info = namespace_info(decode(Namespace, ns))
    assert info == NamespaceInfo("ns-uid", "shop", "", {"kubernetes.io/metadata.name": "shop"})
    assert info == info_from("Namespace", ns)
    assert render_meta(info) == truth_meta(ns)


def test_service_keeps_its_selector() -> None:
    svc = {
        "metadata": {"name": "web", "namespace": "shop", "uid": "svc-uid", "labels": {"tier": "<front>&"}},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10", "ports": [{"port": 80}]},
    }
    info = service_info(decode(Service, svc))
    assert info == ServiceInfo("svc-uid", "web", "shop", "", {"tier": "<front>&"}, {"app": "web"})
    assert info == info_from("Service", svc)
    assert render_meta(info) == truth_meta(svc)
    no_selector = service_info(decode(Service, {"metadata": {"name": "k", "namespace": "d", "uid": "k"}}))
    assert no_selector.selector == {}


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "CronJob"])
def test_metadata_only_owners_take_the_watched_kind(kind: str) -> None:
    obj = {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {
            "name": "web-5c8",
            "namespace": "shop",
            "uid": "rs-uid",
            "labels": {"app": "web"},
            "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d-uid", "controller": True}],
        },
    }
    info = owner_info(kind, decode(PartialObjectMetadata, obj))
    assert info == OwnerInfo(kind, "rs-uid", "web-5c8", "shop", "", {"app": "web"}, ObjectRef("Deployment", "d-uid"))
    assert info == info_from(kind, obj)
    assert render_meta(info) == truth_meta(obj)


def test_replication_controller_as_metadata() -> None:
    rc = {"metadata": {"name": "nginx", "namespace": "t", "uid": "rc", "generateName": "ng-"}, "spec": {"replicas": 3}}
    info = owner_info("ReplicationController", decode(PartialObjectMetadata, rc))
    assert info.generate_name == "ng-" and info.controller_owner is None
    assert render_meta(info) == truth_meta(rc)


def test_node_is_a_cluster_scoped_owner() -> None:
    node = {
        "metadata": {"name": "node-1", "uid": "n-uid", "labels": {"kubernetes.io/hostname": "node-1"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]},
    }
    info = node_info(decode(Node, node))
    assert info == OwnerInfo("Node", "n-uid", "node-1", "", "", {"kubernetes.io/hostname": "node-1"})
    assert info == info_from("Node", node)
    assert render_meta(info) == truth_meta(node)


def test_records_share_the_decoded_dicts() -> None:
    pod = decode(Pod, POD)
    assert pod_info(pod).labels is pod.metadata.labels
    svc = decode(Service, {"metadata": {"name": "s", "uid": "u"}, "spec": {"selector": {"a": "b"}}})
    assert service_info(svc).selector is svc.spec.selector
