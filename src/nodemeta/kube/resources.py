"""What to list and watch: one `Resource` descriptor per kind, the ListerWatcher half that is pure data.

A descriptor names the collection URL, the Struct its objects decode into, whether to ask for metadata only
(PartialObjectMetadata, about a quarter of the bytes) and optional selectors. The reflector turns it into LIST and
WATCH requests; nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Generic, TypeVar

from nodemeta.kube.models import KubeObject, Namespace, Node, PartialObjectMetadata, Pod, Service

__all__ = [
    "CRONJOBS",
    "DAEMONSETS",
    "DEPLOYMENTS",
    "JOBS",
    "JSON",
    "METADATA_LIST_ACCEPT",
    "METADATA_WATCH_ACCEPT",
    "NAMESPACES",
    "NODES",
    "PODS",
    "REPLICASETS",
    "REPLICATIONCONTROLLERS",
    "SERVICES",
    "STATEFULSETS",
    "Resource",
    "pods_on_node",
]

JSON = "application/json"
# Ask for metadata only, and accept full JSON as a fallback: the first clause the server supports wins, and a
# server that answers with full objects still decodes (PartialObjectMetadata declares only `metadata`).
METADATA_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
METADATA_WATCH_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"

T = TypeVar("T", bound=KubeObject)


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource(Generic[T]):
    """One resource type to mirror, e.g. all pods, or the pods bound to one node."""

    kind: str
    # Group-version prefix, "/api/v1" for the core group or "/apis/<group>/<version>".
    api: str
    plural: str
    model: type[T]
    metadata_only: bool = False
    # Empty = every namespace (or a cluster-scoped kind).
    namespace: str = ""
    field_selector: str = ""
    label_selector: str = ""

    @property
    def path(self) -> str:
        """The collection URL path that LIST and WATCH use."""
        if self.namespace:
            return f"{self.api}/namespaces/{self.namespace}/{self.plural}"
        return f"{self.api}/{self.plural}"

    @property
    def list_accept(self) -> str:
        return METADATA_LIST_ACCEPT if self.metadata_only else JSON

    @property
    def watch_accept(self) -> str:
        return METADATA_WATCH_ACCEPT if self.metadata_only else JSON

    def selector_params(self) -> dict[str, str]:
        """The selector query parameters shared by LIST and WATCH."""
        params: dict[str, str] = {}
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        return params

    def selecting(self, *, fields: str = "", labels: str = "") -> Resource[T]:
        """The same resource restricted by a field and/or label selector (Kubernetes selector syntax)."""
        return dataclasses.replace(self, field_selector=fields, label_selector=labels)

    def in_namespace(self, namespace: str) -> Resource[T]:
        """The same resource restricted to one namespace."""
        return dataclasses.replace(self, namespace=namespace)

    def describe(self) -> str:
        """A short name for logs: the kind plus any restriction."""
        parts = [self.kind]
        if self.namespace:
            parts.append(f"ns={self.namespace}")
        if self.field_selector:
            parts.append(f"fields={self.field_selector}")
        if self.label_selector:
            parts.append(f"labels={self.label_selector}")
        return " ".join(parts)


PODS = Resource(kind="Pod", api="/api/v1", plural="pods", model=Pod)
SERVICES = Resource(kind="Service", api="/api/v1", plural="services", model=Service)
NAMESPACES = Resource(kind="Namespace", api="/api/v1", plural="namespaces", model=Namespace)
NODES = Resource(kind="Node", api="/api/v1", plural="nodes", model=Node)
# Owners of pods: only their names, labels and ownerReferences matter, so they are read as metadata.
REPLICATIONCONTROLLERS = Resource(
    kind="ReplicationController",
    api="/api/v1",
    plural="replicationcontrollers",
    model=PartialObjectMetadata,
    metadata_only=True,
)
DEPLOYMENTS = Resource(
    kind="Deployment", api="/apis/apps/v1", plural="deployments", model=PartialObjectMetadata, metadata_only=True
)
REPLICASETS = Resource(
    kind="ReplicaSet", api="/apis/apps/v1", plural="replicasets", model=PartialObjectMetadata, metadata_only=True
)
DAEMONSETS = Resource(
    kind="DaemonSet", api="/apis/apps/v1", plural="daemonsets", model=PartialObjectMetadata, metadata_only=True
)
STATEFULSETS = Resource(
    kind="StatefulSet", api="/apis/apps/v1", plural="statefulsets", model=PartialObjectMetadata, metadata_only=True
)
JOBS = Resource(kind="Job", api="/apis/batch/v1", plural="jobs", model=PartialObjectMetadata, metadata_only=True)
CRONJOBS = Resource(
    kind="CronJob", api="/apis/batch/v1", plural="cronjobs", model=PartialObjectMetadata, metadata_only=True
)


def pods_on_node(node: str) -> Resource[Pod]:
    """The pods bound to `node`, as a node agent watching the API directly sees them.

    The server turns binding into ADDED and a pod leaving the selection into DELETED, so the cache holds exactly
    the node's pods.
    """
    return PODS.selecting(fields=f"spec.nodeName={node}")
