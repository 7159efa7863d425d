"""Test-side adapter: decoded Kubernetes JSON objects (as the simulator stores them) to the collector's records.

The production adapters belong to the informer layer; this one exists so tests can feed the relation index from
the simulator's store.
"""

from __future__ import annotations

from typing import Any

from nodemeta.collector.model import NamespaceInfo, ObjectInfo, ObjectRef, OwnerInfo, PodInfo, ServiceInfo

# The kinds the relation index is fed (everything an ownerReference may usefully point at, plus pods etc.).
OWNER_STORAGE = {
    "Deployment": "deployments.apps",
    "ReplicaSet": "replicasets.apps",
    "DaemonSet": "daemonsets.apps",
    "StatefulSet": "statefulsets.apps",
    "ReplicationController": "replicationcontrollers",
    "Job": "jobs.batch",
    "CronJob": "cronjobs.batch",
    "Node": "nodes",
}
FED_KINDS = frozenset({"Pod", "Namespace", "Service", *OWNER_STORAGE})


def controller_of(meta: dict[str, Any]) -> ObjectRef | None:
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return ObjectRef(str(ref.get("kind", "")), str(ref.get("uid", "")))
    return None


def info_from(kind: str, obj: dict[str, Any]) -> ObjectInfo:
    meta = obj.get("metadata") or {}
    uid = meta.get("uid") or ""
    name = meta.get("name") or ""
    generate_name = meta.get("generateName") or ""
    labels = dict(meta.get("labels") or {})
    namespace = meta.get("namespace") or ""
    if kind == "Pod":
        status = obj.get("status") or {}
        ips = status.get("podIPs") or []
        ip = status.get("podIP") or (ips[0].get("ip") if ips and isinstance(ips[0], dict) else "") or ""
        return PodInfo(
            uid, name, namespace, generate_name, labels,
            node_name=(obj.get("spec") or {}).get("nodeName") or "",
            pod_ip=ip,
            controller_owner=controller_of(meta),
        )  # fmt: skip
    if kind == "Namespace":
        return NamespaceInfo(uid, name, generate_name, labels)
    if kind == "Service":
        selector = dict((obj.get("spec") or {}).get("selector") or {})
        return ServiceInfo(uid, name, namespace, generate_name, labels, selector)
    return OwnerInfo(kind, uid, name, namespace, generate_name, labels, controller_of(meta))
