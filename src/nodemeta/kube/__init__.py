"""The Kubernetes API client layer: configuration, an HTTP adapter, typed models and an asyncio informer.

Layout, one role per module (import-linter keeps the simulator out of here):

* `config`: where the cluster is and how to authenticate (kubeconfig, in-cluster, exec plugins);
* `client`: the HTTP adapter (the only module that touches aiohttp) - LIST pages and WATCH line streams;
* `errors`: the one exception tree; `settings`: every timeout and limit with its reason;
* `models` + `codec`: msgspec Structs with only the fields we use, and their decoding;
* `resources`: what to list and watch; `backoff`: jittered exponential backoff;
* `reflector`: the list -> watch loop; `store`: the cache and its listeners; `informer`: the two wired together;
* `writer`: object writes (create, patch, delete with preconditions, read-modify-write on 409);
* `correlator`: client-go's event aggregation and spam filter, pure; `events`: the background Event recorder.

The public names are re-exported here; submodules are the implementation.
"""

from __future__ import annotations

from nodemeta.kube.backoff import Backoff
from nodemeta.kube.client import ApiClient
from nodemeta.kube.codec import Bookmark, Change, Codec, Event, Failure
from nodemeta.kube.config import BearerToken, ClusterConfig, Credentials, load_config
from nodemeta.kube.correlator import (
    AGGREGATE_PREFIX,
    Correlator,
    CorrelatorSettings,
    ObjectReference,
    Occurrence,
    TokenBucket,
    Write,
)
from nodemeta.kube.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    ConfigError,
    Conflict,
    ConnectionLost,
    DecodeError,
    Expired,
    Forbidden,
    Invalid,
    KubeError,
    NotFound,
    RequestTimeout,
    ServerError,
    Throttled,
    TransportError,
    Unauthorized,
    WatchStalled,
)
from nodemeta.kube.events import NORMAL, WARNING, Recorder, RecorderSettings, RecorderStats
from nodemeta.kube.informer import Informer
from nodemeta.kube.models import (
    KubeObject,
    ListMeta,
    Namespace,
    Node,
    ObjectList,
    ObjectMeta,
    OwnerReference,
    PartialObjectMetadata,
    Pod,
    PodIP,
    PodSpec,
    PodStatus,
    Service,
    ServiceSpec,
    Status,
)
from nodemeta.kube.reflector import Reflector, ReflectorStats, Sink, Transport, relist_resource_version
from nodemeta.kube.resources import (
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTS,
    JOBS,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    SERVICES,
    STATEFULSETS,
    Resource,
    pods_on_node,
)
from nodemeta.kube.settings import BackoffSettings, ClientSettings, ReflectorSettings
from nodemeta.kube.store import BaseListener, Listener, Store, object_key
from nodemeta.kube.writer import (
    JSONObject,
    Modified,
    ObjectPath,
    PatchType,
    Sender,
    Writer,
    WriterSettings,
    event_path,
    node_path,
    pod_path,
)

__all__ = [
    "AGGREGATE_PREFIX",
    "CRONJOBS",
    "DAEMONSETS",
    "DEPLOYMENTS",
    "JOBS",
    "NAMESPACES",
    "NODES",
    "NORMAL",
    "PODS",
    "REPLICASETS",
    "REPLICATIONCONTROLLERS",
    "SERVICES",
    "STATEFULSETS",
    "WARNING",
    "AlreadyExists",
    "ApiClient",
    "ApiError",
    "Backoff",
    "BackoffSettings",
    "BadRequest",
    "BaseListener",
    "BearerToken",
    "Bookmark",
    "Change",
    "ClientSettings",
    "ClusterConfig",
    "Codec",
    "ConfigError",
    "Conflict",
    "ConnectionLost",
    "Correlator",
    "CorrelatorSettings",
    "Credentials",
    "DecodeError",
    "Event",
    "Expired",
    "Failure",
    "Forbidden",
    "Informer",
    "Invalid",
    "JSONObject",
    "KubeError",
    "KubeObject",
    "ListMeta",
    "Listener",
    "Modified",
    "Namespace",
    "Node",
    "NotFound",
    "ObjectList",
    "ObjectMeta",
    "ObjectPath",
    "ObjectReference",
    "Occurrence",
    "OwnerReference",
    "PartialObjectMetadata",
    "PatchType",
    "Pod",
    "PodIP",
    "PodSpec",
    "PodStatus",
    "Recorder",
    "RecorderSettings",
    "RecorderStats",
    "Reflector",
    "ReflectorSettings",
    "ReflectorStats",
    "RequestTimeout",
    "Resource",
    "Sender",
    "ServerError",
    "Service",
    "ServiceSpec",
    "Sink",
    "Status",
    "Store",
    "Throttled",
    "TokenBucket",
    "Transport",
    "TransportError",
    "Unauthorized",
    "WatchStalled",
    "Write",
    "Writer",
    "WriterSettings",
    "event_path",
    "load_config",
    "node_path",
    "object_key",
    "pod_path",
    "pods_on_node",
    "relist_resource_version",
]
