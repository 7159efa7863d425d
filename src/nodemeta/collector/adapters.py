"""Adapters: decoded Kubernetes objects (`nodemeta.kube` models) to the collector's records. Pure functions.

This is the one place that knows both the API's shapes and the collector's model, so the relation index never
sees an API object and the informer layer never sees a collector record. Each function reads only what the
metadata stream needs; the records share the decoded objects' label and selector dicts, which are read-only by
both layers' contracts, so adapting costs no copies.
"""

from __future__ import annotations

from nodemeta.collector.model import NamespaceInfo, ObjectRef, OwnerInfo, PodInfo, ServiceInfo
from nodemeta.kube.models import Namespace, Node, ObjectMeta, PartialObjectMetadata, Pod, Service

__all__ = ["controller_owner", "namespace_info", "node_info", "owner_info", "pod_info", "service_info"]


def controller_owner(meta: ObjectMeta) -> ObjectRef | None:
    """The first ownerReference with `controller: true`, as a (kind, uid) reference; None when there is none."""
    ref = meta.controller_ref()
    return ObjectRef(ref.kind, ref.uid) if ref is not None else None


def pod_info(pod: Pod) -> PodInfo:
    """A Pod's record: its node, its primary IP (`status.podIP`, else the first of `status.podIPs`) and its
    controlling owner."""
    meta = pod.metadata
    status = pod.status
    pod_ip = status.pod_ip
    if not pod_ip and status.pod_ips:
        pod_ip = status.pod_ips[0].ip
    return PodInfo(
        meta.uid,
        meta.name,
        meta.namespace,
        meta.generate_name,
        meta.labels,
        node_name=pod.spec.node_name,
        pod_ip=pod_ip,
        controller_owner=controller_owner(meta),
    )


def namespace_info(namespace: Namespace) -> NamespaceInfo:
    meta = namespace.metadata
    return NamespaceInfo(meta.uid, meta.name, meta.generate_name, meta.labels)


def service_info(service: Service) -> ServiceInfo:
    """A Service's record; its `spec.selector` decides which pods refer to it (an empty one selects none)."""
    meta = service.metadata
    return ServiceInfo(meta.uid, meta.name, meta.namespace, meta.generate_name, meta.labels, service.spec.selector)


def owner_info(kind: str, obj: PartialObjectMetadata) -> OwnerInfo:
    """An owner read as metadata only (Deployment, ReplicaSet, DaemonSet, ...). `kind` comes from the watched
    resource: a PartialObjectMetadata's own `kind` field says PartialObjectMetadata, not what the object is."""
    meta = obj.metadata
    return OwnerInfo(kind, meta.uid, meta.name, meta.namespace, meta.generate_name, meta.labels, controller_owner(meta))


def node_info(node: Node) -> OwnerInfo:
    """A Node, which owns its mirror pods (static pods report the Node as their controller)."""
    meta = node.metadata
    return OwnerInfo("Node", meta.uid, meta.name, "", meta.generate_name, meta.labels, controller_owner(meta))
