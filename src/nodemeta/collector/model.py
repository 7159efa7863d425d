"""The few facts about Kubernetes objects that the relation index and the renderer consume.

These records are independent of any client library: the informer layer's adapters build them from decoded API
objects, tests build them by hand. They are immutable; a change in the cluster arrives as a new record. Label and
selector mappings are never mutated after construction (the index keeps references to them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

POD = "Pod"
NAMESPACE = "Namespace"
SERVICE = "Service"
REPLICA_SET = "ReplicaSet"
DEPLOYMENT = "Deployment"
DAEMON_SET = "DaemonSet"
REPLICATION_CONTROLLER = "ReplicationController"
STATEFUL_SET = "StatefulSet"
JOB = "Job"
CRON_JOB = "CronJob"
NODE = "Node"

# What the Falco contract carries (k8s-metacollector's seven kinds), and what nodemeta adds on request.
FALCO_KINDS = frozenset({POD, NAMESPACE, DEPLOYMENT, REPLICA_SET, DAEMON_SET, REPLICATION_CONTROLLER, SERVICE})
EXTRA_KINDS = frozenset({STATEFUL_SET, JOB, CRON_JOB, NODE})
# The Falco plugin asks for "ReplicaController"; it means ReplicationController.
KIND_ALIASES = {"ReplicaController": REPLICATION_CONTROLLER}

_NO_LABELS: Mapping[str, str] = {}


class Reason(StrEnum):
    """What a subscriber does with an event; the values are the Falco contract's exact strings."""

    CREATE = "Create"
    UPDATE = "Update"
    DELETE = "Delete"


class ObjectRef(NamedTuple):
    """An object's identity on the stream: its kind and `metadata.uid`. Also what an ownerReference names."""

    kind: str
    uid: str


@dataclass(frozen=True, slots=True)
class PodInfo:
    uid: str
    name: str
    namespace: str
    generate_name: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS)
    # `spec.nodeName`; empty while unscheduled (such a pod is relevant to no node).
    node_name: str = ""
    # The primary `status.podIP`; empty before the pod has one.
    pod_ip: str = ""
    # The first ownerReference with `controller: true`, if any.
    controller_owner: ObjectRef | None = None


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    uid: str
    name: str
    generate_name: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS)


@dataclass(frozen=True, slots=True)
class OwnerInfo:
    """An object that can control pods or other owners: ReplicaSet, Deployment, DaemonSet, Job, Node, ..."""

    kind: str
    uid: str
    name: str
    # Empty for cluster-scoped kinds (Node).
    namespace: str = ""
    generate_name: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS)
    controller_owner: ObjectRef | None = None

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.kind, self.uid)


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    uid: str
    name: str
    namespace: str
    generate_name: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS)
    # `spec.selector`: plain label equality. Empty selects nothing (for relevance and for pod refs).
    selector: Mapping[str, str] = field(default_factory=lambda: _NO_LABELS)


ObjectInfo = PodInfo | NamespaceInfo | OwnerInfo | ServiceInfo


def ref_of(info: ObjectInfo) -> ObjectRef:
    """The stream identity of any record."""
    if isinstance(info, PodInfo):
        return ObjectRef(POD, info.uid)
    if isinstance(info, NamespaceInfo):
        return ObjectRef(NAMESPACE, info.uid)
    if isinstance(info, ServiceInfo):
        return ObjectRef(SERVICE, info.uid)
    return ObjectRef(info.kind, info.uid)
