"""The resource types the simulated API server serves, as data.

One `ResourceType` describes everything the generic machinery needs to know about a resource: where it lives in
the URL space, how discovery presents it, which field selectors it accepts, how deletion behaves and whether it
has a status subresource. Nothing here does I/O; the server, the store and discovery all read this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
FieldExtractor = Callable[[JSON], dict[str, str]]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NO_COLLECTION_DELETE = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Subresources served besides the object itself, e.g. ("status", "binding").
    subresources: tuple[str, ...] = ()
    # Extra field-selector labels beyond metadata.name/metadata.namespace. None means the kind uses the default
    # field-label conversion, whose error text differs from kinds with their own table (see selectors).
    selectable_fields: frozenset[str] | None = None
    field_aliases: Mapping[str, str] = field(default_factory=dict)
    extract_fields: FieldExtractor | None = None
    # kube-apiserver returns the deleted object for a handful of stores and a Status for the rest.
    delete_returns_object: bool = False
    # core/v1 ReplicationController and batch/v1 Job orphan their dependents unless told otherwise.
    default_propagation: str = "Background"
    graceful_delete: bool = False
    has_generation: bool = False
    # The events.k8s.io view shares its storage with core/v1 events.
    storage: str = ""
    # Not stored at all (TokenReview): create answers and forgets.
    virtual: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def storage_name(self) -> str:
        """The key of the storage this resource reads and writes."""
        return self.storage or self.qualified

    @property
    def qualified(self) -> str:
        """`pods`, `deployments.apps`: the resource string used in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def _pod_fields(obj: JSON) -> dict[str, str]:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    security = spec.get("securityContext")
    host_network = bool(spec.get("hostNetwork")) if security is not None or "hostNetwork" in spec else False
    pod_ips = status.get("podIPs") or []
    return {
        "spec.nodeName": spec.get("nodeName") or "",
        "spec.restartPolicy": spec.get("restartPolicy") or "",
        "spec.schedulerName": spec.get("schedulerName") or "",
        "spec.serviceAccountName": spec.get("serviceAccountName") or "",
        "spec.hostNetwork": "true" if host_network else "false",
        "status.phase": status.get("phase") or "",
        "status.podIP": (pod_ips[0].get("ip") or "") if pod_ips else (status.get("podIP") or ""),
        "status.nominatedNodeName": status.get("nominatedNodeName") or "",
    }


def _event_fields(obj: JSON) -> dict[str, str]:
    involved = obj.get("involvedObject") or {}
    source = obj.get("source") or {}
    reporting = obj.get("reportingComponent") or ""
    fields = {f"involvedObject.{k}": str(involved.get(k) or "") for k in _INVOLVED_KEYS}
    fields.update(
        {
            "reason": obj.get("reason") or "",
            "reportingComponent": reporting,
            "source": source.get("component") or reporting,
            "type": obj.get("type") or "",
        }
    )
    return fields


_INVOLVED_KEYS = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")


def _single(path: str, *keys: str) -> FieldExtractor:
    def extract(obj: JSON) -> dict[str, str]:
        value: Any = obj
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = "false" if path == "spec.unschedulable" else ""
        else:
            text = str(value)
        return {path: text}

    return extract


def _merge(*extractors: FieldExtractor) -> FieldExtractor:
    def extract(obj: JSON) -> dict[str, str]:
        out: dict[str, str] = {}
        for ex in extractors:
            out.update(ex(obj))
        return out

    return extract


_POD_FIELDS = frozenset(
    {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    }
)
_EVENT_FIELDS = frozenset(
    {f"involvedObject.{k}" for k in _INVOLVED_KEYS} | {"reason", "reportingComponent", "source", "type"}
)
# events.k8s.io/v1 accepts its own spellings and maps them onto the stored (core) names.
_EVENTS_V1_ALIASES = {f"regarding.{k}": f"involvedObject.{k}" for k in _INVOLVED_KEYS} | {
    "reportingController": "reportingComponent"
}

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType(
        "", "v1", "namespaces", "namespace", "Namespace", False,
        verbs=NO_COLLECTION_DELETE, short_names=("ns",), subresources=("status", "finalize"),
        selectable_fields=frozenset({"status.phase"}), extract_fields=_single("status.phase", "status", "phase"),
        delete_returns_object=True,
    ),
    ResourceType(
        "", "v1", "nodes", "node", "Node", False, short_names=("no",), subresources=("status",),
        selectable_fields=frozenset({"spec.unschedulable"}),
        extract_fields=_single("spec.unschedulable", "spec", "unschedulable"),
    ),
    ResourceType(
        "", "v1", "pods", "pod", "Pod", True, short_names=("po",), categories=("all",),
        subresources=("status", "binding"), selectable_fields=_POD_FIELDS,
        field_aliases={"spec.host": "spec.nodeName"}, extract_fields=_pod_fields,
        delete_returns_object=True, graceful_delete=True,
    ),
    ResourceType(
        "", "v1", "services", "service", "Service", True, short_names=("svc",), categories=("all",),
        subresources=("status",), selectable_fields=frozenset({"spec.clusterIP", "spec.type"}),
        extract_fields=_merge(_single("spec.clusterIP", "spec", "clusterIP"), _single("spec.type", "spec", "type")),
        delete_returns_object=True,
    ),
    ResourceType(
        "", "v1", "replicationcontrollers", "replicationcontroller", "ReplicationController", True,
        short_names=("rc",), categories=("all",), subresources=("status", "scale"),
        selectable_fields=frozenset({"status.replicas"}),
        extract_fields=_single("status.replicas", "status", "replicas"),
        default_propagation="Orphan", has_generation=True,
    ),
    ResourceType(
        "", "v1", "events", "event", "Event", True, short_names=("ev",),
        selectable_fields=_EVENT_FIELDS, extract_fields=_event_fields,
    ),
    ResourceType("", "v1", "configmaps", "configmap", "ConfigMap", True, short_names=("cm",)),
    ResourceType(
        "", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True, short_names=("sa",),
        subresources=("token",), delete_returns_object=True,
    ),
    ResourceType(
        "apps", "v1", "deployments", "deployment", "Deployment", True, short_names=("deploy",),
        categories=("all",), subresources=("status", "scale"), has_generation=True,
    ),
    ResourceType(
        "apps", "v1", "replicasets", "replicaset", "ReplicaSet", True, short_names=("rs",),
        categories=("all",), subresources=("status", "scale"), has_generation=True,
    ),
    ResourceType(
        "apps", "v1", "daemonsets", "daemonset", "DaemonSet", True, short_names=("ds",),
        categories=("all",), subresources=("status",), has_generation=True,
    ),
    ResourceType(
        "apps", "v1", "statefulsets", "statefulset", "StatefulSet", True, short_names=("sts",),
        categories=("all",), subresources=("status", "scale"), has_generation=True,
    ),
    ResourceType("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", True),
    ResourceType(
        "batch", "v1", "jobs", "job", "Job", True, categories=("all",), subresources=("status",),
        default_propagation="Orphan", has_generation=True,
    ),
    ResourceType(
        "batch", "v1", "cronjobs", "cronjob", "CronJob", True, short_names=("cj",), categories=("all",),
        subresources=("status",), has_generation=True,
    ),
    ResourceType("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", True),
    ResourceType(
        "events.k8s.io", "v1", "events", "event", "Event", True, short_names=("ev",),
        selectable_fields=_EVENT_FIELDS, field_aliases=_EVENTS_V1_ALIASES, extract_fields=_event_fields,
        storage="events",
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
    ResourceType(
        "authentication.k8s.io", "v1", "tokenreviews", "tokenreview", "TokenReview", False,
        verbs=("create",), virtual=True,
    ),
)  # fmt: skip

_BY_PATH: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND: dict[tuple[str, str], ResourceType] = {(r.api_version, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> ResourceType | None:
    return _BY_KIND.get((api_version, kind))


def group_versions() -> list[tuple[str, str]]:
    """Every (group, version) served, core first, in a stable order."""
    seen: dict[tuple[str, str], None] = {}
    for r in RESOURCES:
        seen.setdefault((r.group, r.version), None)
    return list(seen)


def stored_resources() -> list[ResourceType]:
    """One entry per distinct storage (the events.k8s.io view and virtual kinds excluded)."""
    return [r for r in RESOURCES if not r.storage and not r.virtual]
