"""Every node's kubelet, as one controller: pod start-up and status, graceful stop, pod IPs, node Leases and
static pods with their mirror pods.

What a kubelet shows the API, per pod bound to an existing node:

* start-up, as two writes through pods/<name>/status: Pending with containers `ContainerCreating` (hostIP,
  startTime), then Running with the pod IP(s), all five conditions True and running container statuses (containerd
  IDs, normalised image names, image digests). `two_step_start=False` makes it one write, for very large clusters.
  Events Pulled/Created/Started (core/v1, source kubelet/<node>) when `settings.component_events`;
* pod IPs: IPv4 from the node's `spec.podCIDR` (from .2, .1 being the CNI gateway), and with `settings.dual_stack`
  the same host part in the node's `fd00:10:244:<node index>::/64`; hostNetwork pods get the node's InternalIP;
* graceful deletion: once a pod has a deletionTimestamp its containers stop after min(grace period,
  `settings.kubelet_stop_seconds`); the kubelet then writes them terminated (Ready/ContainersReady False, phase
  Succeeded or Failed) and deletes the pod with gracePeriodSeconds=0 and a UID precondition, which removes it;
* a node whose Ready condition is Unknown (see `nodes.set_node_ready`) has no working kubelet: its pods neither
  start nor finish terminating and its Lease is not renewed until it is Ready or NotReady again. Pods bound to a node
  that does not exist stay Pending;
* heartbeats: a coordination.k8s.io/v1 Lease per node in kube-node-lease, renewed every
  `SimSettings.kubelet_lease_renew_seconds` while `heartbeats` is on. At 5,000 nodes that is 500 writes/s, so a
  cluster generator may turn renewals off (`SimSettings.kubelet_heartbeats`, constructor argument, or
  `Kubelet.set_heartbeats`); Leases are still created once;
* static pods: manifests declared with `static_pods(registry).add(node, manifest)` (or `Kubelet.add_static_pod`)
  get a mirror pod `<name>-<node>`, recreated when deleted and replaced when the manifest changes.

Not modelled: probes, restarts, image pulls that fail, resource accounting, node status heartbeats (the Ready
condition's lastHeartbeatTime is left as it is), volumes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import weakref
import zlib
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import orjson
import structlog

from nodemeta.sim.controllers.base import Controller, Factory, Requeue
from nodemeta.sim.controllers.nodes import (
    NODES,
    PODS,
    TERMINAL_PHASES,
    condition_status,
    object_reference,
    ready_status,
    record_event,
    resource,
    write_pod_status,
)
from nodemeta.sim.errors import APIError
from nodemeta.sim.registry import DeleteOptions, Registry, rfc3339, rfc3339_micro
from nodemeta.sim.resources import JSON
from nodemeta.sim.settings import SimSettings
from nodemeta.sim.store import DELETED, Change, Stored, object_key

log = structlog.get_logger("nodemeta.sim.controllers.kubelet")

LEASES = resource("coordination.k8s.io", "v1", "leases")
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
HASH_ANNOTATION = "kubernetes.io/config.hash"
SEEN_ANNOTATION = "kubernetes.io/config.seen"
SOURCE_ANNOTATION = "kubernetes.io/config.source"
# What the Priority admission plugin resolves the built-in classes to.
_BUILTIN_PRIORITIES = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
_OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
_STATUS_ORDER = ("phase", "conditions", "hostIP", "hostIPs", "podIP", "podIPs", "startTime",
                 "initContainerStatuses", "containerStatuses", "qosClass")  # fmt: skip
_POD_NETWORK_BASE = int(ipaddress.IPv4Address("10.244.0.0"))
# Cheap pre-checks on the stored bytes (our own writes serialise conditions type-first) that let the common
# "nothing to do for this running pod" case skip decoding the pod.
_READY_TRUE = b'{"type":"Ready","status":"True"'
_DELETING = b'"deletionTimestamp"'
_MIRROR = f'"{MIRROR_ANNOTATION}"'.encode()


# -- images, containers and QoS ------------------------------------------------------------------------------


def normalize_image(image: str) -> str:
    """The fully qualified reference containerd reports: nginx:1.27 -> docker.io/library/nginx:1.27."""
    name, at, digest = image.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", name
    if domain == "docker.io" and "/" not in path:
        path = "library/" + path
    if at:
        return f"{domain}/{path}@{digest}"
    if ":" not in path.rsplit("/", 1)[-1]:
        path += ":latest"
    return f"{domain}/{path}"


def image_id(normalized: str) -> str:
    """`<repository>@sha256:<digest>`; a stable digest per image name when the reference carries none."""
    if "@" in normalized:
        return normalized
    last_colon = normalized.rfind(":")
    repository = normalized[:last_colon] if last_colon > normalized.rfind("/") else normalized
    return f"{repository}@sha256:{hashlib.sha256(normalized.encode()).hexdigest()}"


def container_id(pod_uid: str, name: str) -> str:
    return "containerd://" + hashlib.sha256(f"{pod_uid}/{name}".encode()).hexdigest()


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_DECIMAL_SUFFIXES = {"": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_SUFFIXES: dict[str, Decimal] = {
    "m": Decimal("0.001"),
    **{k: Decimal(10) ** e for k, e in _DECIMAL_SUFFIXES.items()},
    **{k: Decimal(2) ** e for k, e in _BINARY_SUFFIXES.items()},
}


def _quantity(value: object) -> Decimal | None:
    match = _QUANTITY.match(str(value).strip())
    if match is None or match.group(2) not in _SUFFIXES:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        return None


def qos_class(spec: JSON) -> str:
    """Guaranteed when every container limits cpu and memory with equal requests, BestEffort with no requests or
    limits at all, Burstable otherwise (only cpu and memory count, as in the real QoS rules)."""
    anything = False
    guaranteed = True
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        resources = container.get("resources") or {}
        requests = {k: v for k, v in (resources.get("requests") or {}).items() if k in ("cpu", "memory")}
        limits = {k: v for k, v in (resources.get("limits") or {}).items() if k in ("cpu", "memory")}
        anything = anything or bool(requests or limits)
        equal = all(_quantity(v) == _quantity(limits.get(k)) for k, v in requests.items())
        guaranteed = guaranteed and set(limits) == {"cpu", "memory"} and equal
    if not anything:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# -- pod networks --------------------------------------------------------------------------------------------


def parse_pod_cidr(text: str) -> ipaddress.IPv4Network | None:
    """The node's IPv4 pod CIDR, or None when it has none that can hold pods (the node's pods then stay Pending)."""
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return network if isinstance(network, ipaddress.IPv4Network) and network.prefixlen <= 30 else None


def ipv6_block(v4: ipaddress.IPv4Network) -> ipaddress.IPv6Network:
    """fd00:10:244:<node index>::/64, the index being the /24's position from 10.244.0.0 (node N's 10.244.N.0/24
    gives index N); blocks outside that range use their own third and fourth octet bits."""
    offset = (int(v4.network_address) - _POD_NETWORK_BASE) >> 8
    index = offset if 0 <= offset <= 0xFFFF else (int(v4.network_address) >> 8) & 0xFFFF
    return ipaddress.IPv6Network(f"fd00:10:244:{index:x}::/64")


class PodNetwork:
    """One node's pod addresses. Hands out host offsets round-robin (fresh addresses first, then the longest
    released), like the host-local IPAM plugin, so a released IP is not reused at once."""

    def __init__(self, cidr: str, v4: ipaddress.IPv4Network) -> None:
        self.cidr = cidr
        self.v4 = v4
        self.v6 = ipv6_block(v4)
        self._last = v4.num_addresses - 2
        self._next = 2
        self._released: deque[int] = deque()
        self._used: set[int] = set()

    def allocate(self) -> int | None:
        while self._next <= self._last:
            offset = self._next
            self._next += 1
            if offset not in self._used:
                self._used.add(offset)
                return offset
        while self._released:
            offset = self._released.popleft()
            if offset not in self._used:
                self._used.add(offset)
                return offset
        return None

    def reserve(self, offset: int) -> None:
        self._used.add(offset)

    def release(self, offset: int) -> None:
        if offset in self._used:
            self._used.discard(offset)
            self._released.append(offset)

    def offset_of(self, ip: str) -> int | None:
        try:
            address = ipaddress.IPv4Address(ip)
        except ValueError:
            return None
        return int(address) - int(self.v4.network_address) if address in self.v4 else None

    def addresses(self, offset: int, dual_stack: bool) -> list[str]:
        ips = [str(self.v4.network_address + offset)]
        if dual_stack:
            ips.append(str(self.v6.network_address + offset))
        return ips


@dataclass(frozen=True, slots=True)
class _NodeInfo:
    """What a kubelet knows about its own node."""

    name: str
    uid: str
    host_ip: str
    cidr: str
    # False when the Ready condition is Unknown: the kubelet is not running there.
    up: bool


def _node_info(obj: JSON) -> _NodeInfo:
    meta = obj.get("metadata") or {}
    addresses = (obj.get("status") or {}).get("addresses") or []
    host_ip = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), "") or ""
    cidr = (obj.get("spec") or {}).get("podCIDR") or ""
    return _NodeInfo(str(meta.get("name")), meta.get("uid") or "", host_ip, cidr, ready_status(obj) != "Unknown")


# -- static pods ----------------------------------------------------------------------------------------------

StaticPodId = tuple[str, str, str]  # (node, namespace, manifest name)


class StaticPods:
    """Static pod manifests per node, standing in for the files in each kubelet's --pod-manifest-path.

    Declare one with `add(node, manifest)` (a Pod object: metadata.name, optional namespace (default "default"),
    labels, annotations; spec, optionally with priorityClassName/priority). The kubelet of `node` then keeps a
    mirror pod `<name>-<node>` in the API with annotations kubernetes.io/config.hash, config.mirror (= the hash),
    config.seen and config.source=file, an ownerReference to the Node (controller: true) and spec.nodeName set.
    It recreates the mirror pod if it is deleted while the node exists and replaces it when the manifest changes.
    Manifests may be declared before or after the controllers start; they belong to the registry, like files on
    disk outlive a kubelet restart.
    """

    def __init__(self, registry: Registry) -> None:
        self._clock = registry.clock
        self._manifests: dict[StaticPodId, JSON] = {}
        self._seen: dict[StaticPodId, str] = {}
        self._by_node: dict[str, set[StaticPodId]] = {}
        self._by_mirror_key: dict[str, StaticPodId] = {}
        self._kubelets: weakref.WeakSet[Kubelet] = weakref.WeakSet()

    def add(self, node: str, manifest: JSON) -> str:
        """Declare (or replace) a static pod on `node`; returns the mirror pod's name."""
        copy: JSON = orjson.loads(orjson.dumps(manifest))
        meta = copy.get("metadata") or {}
        name = meta.get("name")
        if not name or not isinstance(copy.get("spec"), dict):
            raise ValueError("a static pod manifest needs metadata.name and a spec")
        ident = (node, meta.get("namespace") or "default", str(name))
        self._manifests[ident] = copy
        self._seen[ident] = _rfc3339_nano(self._clock())
        self._by_node.setdefault(node, set()).add(ident)
        self._by_mirror_key[object_key(ident[1], mirror_name(ident))] = ident
        self._notify(ident)
        return mirror_name(ident)

    def remove(self, node: str, name: str, namespace: str = "default") -> bool:
        """Forget a manifest; its mirror pod is deleted. False if there was none."""
        ident = (node, namespace, name)
        if self._manifests.pop(ident, None) is None:
            return False
        self._seen.pop(ident, None)
        self._by_node.get(node, set()).discard(ident)
        self._notify(ident)
        return True

    def get(self, ident: StaticPodId) -> JSON | None:
        return self._manifests.get(ident)

    def seen(self, ident: StaticPodId) -> str:
        return self._seen.get(ident) or _rfc3339_nano(self._clock())

    def on_node(self, node: str) -> list[StaticPodId]:
        return sorted(self._by_node.get(node, ()))

    def all(self) -> list[StaticPodId]:
        return sorted(self._manifests)

    def owner_of(self, pod_key: str) -> StaticPodId | None:
        """The static pod whose mirror pod has this key, if any."""
        return self._by_mirror_key.get(pod_key)

    def attach(self, kubelet: Kubelet) -> None:
        self._kubelets.add(kubelet)

    def _notify(self, ident: StaticPodId) -> None:
        for kubelet in list(self._kubelets):
            kubelet.queue.add(("mirror", *ident))


_STATIC_PODS: weakref.WeakKeyDictionary[Registry, StaticPods] = weakref.WeakKeyDictionary()


def static_pods(registry: Registry) -> StaticPods:
    """The static pod manifests of the cluster behind `registry` (created on first use)."""
    found = _STATIC_PODS.get(registry)
    if found is None:
        found = _STATIC_PODS[registry] = StaticPods(registry)
    return found


def mirror_name(ident: StaticPodId) -> str:
    return f"{ident[2]}-{ident[0]}"


def config_hash(node: str, manifest: JSON) -> str:
    """kubernetes.io/config.hash: a digest of the manifest as this node's kubelet read it (32 hex, like md5)."""
    return hashlib.md5(orjson.dumps([node, manifest], option=orjson.OPT_SORT_KEYS)).hexdigest()


def _rfc3339_nano(ts: float) -> str:
    return rfc3339_micro(ts)[:-1] + "000Z"


def _is_mirror(pod: JSON) -> bool:
    return MIRROR_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


# -- pod status -----------------------------------------------------------------------------------------------


def _condition(previous: JSON | None, kind: str, stamp: str, status: str, reason: str, message: str) -> JSON:
    since = stamp
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        since = previous["lastTransitionTime"]
    condition: JSON = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def _conditions(existing: list[JSON], stamp: str, wanted: dict[str, tuple[str, str, str]]) -> list[JSON]:
    """The kubelet's five conditions in its order (status, reason, message per type), then any others kept."""
    by_type = {c.get("type"): c for c in existing}
    out = []
    for kind in _OWN_CONDITIONS:
        if kind in wanted:
            out.append(_condition(by_type.get(kind), kind, stamp, *wanted[kind]))
        elif kind in by_type:
            out.append(by_type[kind])
    return out + [c for c in existing if c.get("type") not in _OWN_CONDITIONS]


def _ordered(existing: JSON, updates: JSON) -> JSON:
    """`existing` with `updates` applied, keys in the order the API serialises PodStatus."""
    merged = {**existing, **updates}
    out = {k: merged[k] for k in _STATUS_ORDER if k in merged}
    out.update((k, v) for k, v in merged.items() if k not in out)
    return out


def _names(containers: list[JSON]) -> str:
    return " ".join(str(c.get("name")) for c in containers)


def _creating_status(pod: JSON, node: _NodeInfo, stamp: str) -> JSON:
    """What the kubelet reports while the sandbox and containers are being created."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    containers = spec.get("containers") or []
    init = spec.get("initContainers") or []
    unready = ("False", "ContainersNotReady", f"containers with unready status: [{_names(containers)}]")
    initialized = ("False", "ContainersNotInitialized", f"containers with incomplete status: [{_names(init)}]")
    wanted = {
        "PodReadyToStartContainers": ("False", "", ""),
        "Initialized": initialized if init else ("True", "", ""),
        "Ready": unready,
        "ContainersReady": unready,
        "PodScheduled": ("True", "", ""),
    }
    updates: JSON = {
        "phase": "Pending",
        "conditions": _conditions(list(status.get("conditions") or []), stamp, wanted),
        "hostIP": node.host_ip,
        "hostIPs": [{"ip": node.host_ip}],
        "startTime": stamp,
        "containerStatuses": [_waiting(c, "ContainerCreating") for c in containers],
        "qosClass": qos_class(spec),
    }
    if init:
        updates["initContainerStatuses"] = [_waiting(c, "PodInitializing") for c in init]
    return _ordered(status, updates)


def _waiting(container: JSON, reason: str) -> JSON:
    return {"name": container.get("name"), "state": {"waiting": {"reason": reason}}, "lastState": {},
            "ready": False, "restartCount": 0, "image": normalize_image(str(container.get("image") or "")),
            "imageID": "", "started": False}  # fmt: skip


def _running(container: JSON, uid: str, stamp: str) -> JSON:
    image = normalize_image(str(container.get("image") or ""))
    return {"name": container.get("name"), "state": {"running": {"startedAt": stamp}}, "lastState": {},
            "ready": True, "restartCount": 0, "image": image, "imageID": image_id(image),
            "containerID": container_id(uid, str(container.get("name"))), "started": True}  # fmt: skip


def _initialized(container: JSON, uid: str, stamp: str) -> JSON:
    """An init container that ran to completion (a restartable sidecar keeps running instead)."""
    if container.get("restartPolicy") == "Always":
        return _running(container, uid, stamp)
    done = _running(container, uid, stamp)
    done["state"] = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": stamp, "finishedAt": stamp,
                                    "containerID": done["containerID"]}}  # fmt: skip
    done["started"] = False
    return done


def _running_status(pod: JSON, node: _NodeInfo, ips: list[str], stamp: str) -> JSON:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    uid = pod["metadata"].get("uid") or ""
    ready = ("True", "", "")
    wanted = {kind: ready for kind in _OWN_CONDITIONS}
    updates: JSON = {
        "phase": "Running",
        "conditions": _conditions(list(status.get("conditions") or []), stamp, wanted),
        "hostIP": node.host_ip,
        "hostIPs": [{"ip": node.host_ip}],
        "podIP": ips[0],
        "podIPs": [{"ip": ip} for ip in ips],
        "startTime": status.get("startTime") or stamp,
        "containerStatuses": [_running(c, uid, stamp) for c in spec.get("containers") or []],
        "qosClass": qos_class(spec),
    }
    if spec.get("initContainers"):
        updates["initContainerStatuses"] = [_initialized(c, uid, stamp) for c in spec["initContainers"]]
    return _ordered(status, updates)


def _stopped_status(pod: JSON, stamp: str, exit_code: int) -> JSON:
    """Containers terminated after deletion; the pod reaches a terminal phase before it is removed."""
    status = pod.get("status") or {}
    reason = "Completed" if exit_code == 0 else "Error"
    statuses = []
    for previous in status.get("containerStatuses") or []:
        started = ((previous.get("state") or {}).get("running") or {}).get("startedAt") or stamp
        terminated: JSON = {"exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": stamp}
        if previous.get("containerID"):
            terminated["containerID"] = previous["containerID"]
        statuses.append({**previous, "state": {"terminated": terminated}, "ready": False, "started": False})
    wanted = {
        "PodReadyToStartContainers": ("False", "", ""),
        "Ready": ("False", "PodCompleted", ""),
        "ContainersReady": ("False", "PodCompleted", ""),
    }
    updates = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "conditions": _conditions(list(status.get("conditions") or []), stamp, wanted),
        "containerStatuses": statuses,
    }
    return _ordered(status, updates)


def _stopped(status: JSON) -> bool:
    return all("terminated" in (s.get("state") or {}) for s in status.get("containerStatuses") or [])


# -- the controller -------------------------------------------------------------------------------------------


class Kubelet(Controller):
    """Keys: ("pod", key) for a pod bound to a node, ("lease", node) for a node's heartbeat, ("mirror", node,
    namespace, name) for a static pod's mirror pod."""

    name = "kubelet"
    watches = ("pods", "nodes")

    def __init__(
        self,
        registry: Registry,
        settings: SimSettings,
        *,
        heartbeats: bool | None = None,
        two_step_start: bool | None = None,
    ) -> None:
        super().__init__(registry, settings)
        self.heartbeats = settings.kubelet_heartbeats if heartbeats is None else heartbeats
        self.two_step_start = settings.kubelet_two_step_start if two_step_start is None else two_step_start
        self.lease_renew_seconds = settings.kubelet_lease_renew_seconds
        self.static_pods = static_pods(registry)
        self.static_pods.attach(self)
        self._nodes: dict[str, _NodeInfo] = {}
        self._networks: dict[str, PodNetwork] = {}
        self._pods_on: dict[str, set[str]] = {}
        # Pod key -> the network and host offset its IP came from, released when the pod ends.
        self._ips: dict[str, tuple[PodNetwork, int]] = {}
        # Pod key -> (uid, when its containers have stopped) for pods being deleted.
        self._stopping: dict[str, tuple[str, float]] = {}
        # Node -> when its pending Lease renewal is due (a timer is armed for it).
        self._lease_due: dict[str, float] = {}

    # -- public API ---------------------------------------------------------------------------------------------

    def add_static_pod(self, node: str, manifest: JSON) -> str:
        """Declare a static pod on `node` (see `StaticPods.add`); returns the mirror pod's name."""
        return self.static_pods.add(node, manifest)

    def set_heartbeats(self, enabled: bool) -> None:
        """Turn Lease renewals on or off at run time."""
        self.heartbeats = enabled
        if enabled:
            for node in self._nodes:
                self.queue.add(("lease", node))

    # -- indexes ------------------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[Hashable]:
        for state in (self._nodes, self._networks, self._pods_on, self._ips, self._stopping, self._lease_due):
            state.clear()
        keys: list[Hashable] = []
        for stored in self.registry.iter_objects(NODES):
            info = _node_info(stored.decode())
            self._nodes[info.name] = info
            self._network_for(info)
            keys.append(("lease", info.name))
        for pod in self.registry.iter_objects(PODS):
            node = pod.field("spec.nodeName")
            if not node:
                continue
            self._pods_on.setdefault(node, set()).add(pod.key)
            if pod.field("status.phase") not in TERMINAL_PHASES:
                self._reserve_existing(pod, node)
                keys.append(("pod", pod.key))
        keys += [("mirror", *ident) for ident in self.static_pods.all()]
        return keys

    def _reserve_existing(self, pod: Stored, node: str) -> None:
        """Keep the IP a running pod already has, so a restarted kubelet never hands it out again."""
        network = self._networks.get(node)
        ip = pod.field("status.podIP")
        if network is None or not ip:
            return
        offset = network.offset_of(ip)
        if offset is not None:
            network.reserve(offset)
            self._ips[pod.key] = (network, offset)

    def _network_for(self, info: _NodeInfo) -> PodNetwork | None:
        network = self._networks.get(info.name)
        if network is not None and network.cidr == info.cidr:
            return network
        parsed = parse_pod_cidr(info.cidr)
        if parsed is None:
            self._networks.pop(info.name, None)
            return None
        network = self._networks[info.name] = PodNetwork(info.cidr, parsed)
        return network

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == "nodes":
            return self._node_changed(change)
        return self._pod_changed(change)

    def _node_changed(self, change: Change) -> list[Hashable]:
        name = change.key
        old = self._nodes.get(name)
        if change.type == DELETED:
            self._nodes.pop(name, None)
            return [("lease", name)]
        info = _node_info(change.obj.decode())
        if info == old:
            return []
        self._nodes[name] = info
        self._network_for(info)
        keys: list[Hashable] = [("pod", key) for key in self._pods_on.get(name, ())]
        if old is None or old.up != info.up:
            keys.append(("lease", name))
            keys += [("mirror", *ident) for ident in self.static_pods.on_node(name)]
        return keys

    def _pod_changed(self, change: Change) -> list[Hashable]:
        key = change.key
        old_node = change.prev.field("spec.nodeName") if change.prev is not None else ""
        new_node = change.obj.field("spec.nodeName") if change.type != DELETED else ""
        if old_node != new_node:
            if old_node:
                self._unindex(old_node, key)
            if new_node:
                self._pods_on.setdefault(new_node, set()).add(key)
        if change.type == DELETED:
            self._release(key)
            self._stopping.pop(key, None)
            owner = self.static_pods.owner_of(key)
            return [("mirror", *owner)] if owner is not None else []
        if change.obj.field("status.phase") in TERMINAL_PHASES:
            # The sandbox is gone once every container has exited: its IP goes back to the pool.
            self._release(key)
        return [("pod", key)] if new_node else []

    def _unindex(self, node: str, key: str) -> None:
        keys = self._pods_on.get(node)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._pods_on[node]

    def _release(self, key: str) -> None:
        assigned = self._ips.pop(key, None)
        if assigned is not None:
            assigned[0].release(assigned[1])

    # -- reconcile ----------------------------------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> Requeue | None:
        assert isinstance(key, tuple)
        if key[0] == "pod":
            return self._sync_pod(key[1])
        if key[0] == "lease":
            return self._sync_lease(key[1])
        self._sync_mirror((key[1], key[2], key[3]))
        return None

    def _sync_pod(self, key: str) -> Requeue | None:
        stored = self.registry.bucket(PODS).get(key)
        if stored is None:
            return None
        node = self._nodes.get(stored.field("spec.nodeName"))
        if node is None or not node.up:
            return None
        phase = stored.field("status.phase")
        settled = phase == "Running" and bool(stored.field("status.podIP")) and _READY_TRUE in stored.body
        if _DELETING not in stored.body and (settled or phase in TERMINAL_PHASES):
            return None
        pod = stored.decode()
        if pod["metadata"].get("deletionTimestamp"):
            return self._stop(stored, pod, node)
        if phase in TERMINAL_PHASES:
            return None
        if phase != "Running" or not stored.field("status.podIP"):
            self._start(stored, pod, node)
            return None
        self._restore_readiness(stored, pod)
        return None

    def _start(self, stored: Stored, pod: JSON, node: _NodeInfo) -> None:
        stamp = rfc3339(self.registry.clock())
        if self.two_step_start and not (pod.get("status") or {}).get("startTime"):
            # The write re-queues this pod (its own watch change), which then takes the second step.
            write_pod_status(self.registry, stored, _creating_status(pod, node, stamp))
            return
        ips = self._pod_ips(stored, pod, node)
        if ips is None:
            log.warning("no pod IP available; pod stays Pending", pod=stored.key, node=node.name, cidr=node.cidr)
            return
        written = write_pod_status(self.registry, stored, _running_status(pod, node, ips, stamp))
        if self.settings.component_events:
            self._container_events(written, pod, node)

    def _pod_ips(self, stored: Stored, pod: JSON, node: _NodeInfo) -> list[str] | None:
        if (pod.get("spec") or {}).get("hostNetwork"):
            return [node.host_ip] if node.host_ip else None
        assigned = self._ips.get(stored.key)
        if assigned is None:
            network = self._networks.get(node.name)
            offset = network.allocate() if network is not None else None
            if network is None or offset is None:
                return None
            assigned = self._ips[stored.key] = (network, offset)
        return assigned[0].addresses(assigned[1], self.settings.dual_stack)

    def _container_events(self, stored: Stored, pod: JSON, node: _NodeInfo) -> None:
        spec = pod.get("spec") or {}
        for field in ("initContainers", "containers"):
            for container in spec.get(field) or []:
                ref = object_reference("Pod", stored, field_path=f"spec.{field}{{{container.get('name')}}}")
                image = str(container.get("image") or "")
                if container.get("imagePullPolicy") == "Always":
                    self._event(ref, node, "Pulling", f'Pulling image "{image}"')
                    size = int(hashlib.sha256(image.encode()).hexdigest()[:6], 16) * 16
                    self._event(ref, node, "Pulled", f'Successfully pulled image "{image}" in 812ms '
                                f"(812ms including waiting). Image size: {size} bytes.")  # fmt: skip
                else:
                    self._event(ref, node, "Pulled", f'Container image "{image}" already present on machine')
                self._event(ref, node, "Created", f"Created container: {container.get('name')}")
                self._event(ref, node, "Started", f"Started container {container.get('name')}")

    def _event(self, ref: JSON, node: _NodeInfo, reason: str, message: str) -> None:
        record_event(self.registry, ref, reason=reason, message=message, component="kubelet", host=node.name)

    def _restore_readiness(self, stored: Stored, pod: JSON) -> None:
        """A running pod marked not Ready by someone else (the node controller while the node was unreachable)
        is reported Ready again, as the kubelet's status sync does."""
        if condition_status(pod, "Ready") == "True":
            return
        status = pod.get("status") or {}
        stamp = rfc3339(self.registry.clock())
        ready = {"Ready": ("True", "", ""), "ContainersReady": ("True", "", "")}
        conditions = _conditions(list(status.get("conditions") or []), stamp, ready)
        write_pod_status(self.registry, stored, _ordered(status, {"conditions": conditions}))

    def _stop(self, stored: Stored, pod: JSON, node: _NodeInfo) -> Requeue | None:
        meta = pod["metadata"]
        status = pod.get("status") or {}
        if _is_mirror(pod) or status.get("phase") != "Running":
            # Deleting a mirror pod does not stop its static pod; a pod that never ran has nothing to stop.
            self._remove(stored, meta)
            return None
        now = self.registry.clock()
        grace = float(meta.get("deletionGracePeriodSeconds") or 0)
        uid, due = self._stopping.get(stored.key, ("", 0.0))
        if uid != stored.uid:
            due = now + min(grace, self.settings.kubelet_stop_seconds)
            self._stopping[stored.key] = (stored.uid, due)
            if self.settings.component_events:
                for container in (pod.get("spec") or {}).get("containers") or []:
                    ref = object_reference("Pod", stored, field_path=f"spec.containers{{{container.get('name')}}}")
                    self._event(ref, node, "Killing", f"Stopping container {container.get('name')}")
        if now < due:
            return Requeue(after=due - now)
        if not _stopped(status):
            # Containers that outlive the grace period are killed (137); the usual ones exit on SIGTERM.
            exit_code = 137 if grace < self.settings.kubelet_stop_seconds else 0
            stored = write_pod_status(self.registry, stored, _stopped_status(pod, rfc3339(now), exit_code))
        self._remove(stored, meta)
        return None

    def _remove(self, stored: Stored, meta: JSON) -> None:
        if meta.get("finalizers"):
            # Someone else still holds the pod; its removal follows once the finalizers are gone.
            return
        self.registry.delete(PODS, stored.namespace, stored.name, DeleteOptions(grace_period=0, uid=stored.uid))
        self._stopping.pop(stored.key, None)

    # -- leases -------------------------------------------------------------------------------------------------

    def _sync_lease(self, node_name: str) -> Requeue | None:
        node = self._nodes.get(node_name)
        lease = self.registry.bucket(LEASES).get(object_key(LEASE_NAMESPACE, node_name))
        if node is None or not node.up:
            self._lease_due.pop(node_name, None)
            if node is None and lease is not None:
                self._delete_lease(lease)
            return None
        now = self.registry.clock()
        due = self._lease_due.get(node_name)
        if lease is None:
            self._create_lease(node, now)
        if due is not None and now < due:
            return None  # a renewal timer is already armed
        if not self.heartbeats:
            return None
        if lease is not None:
            self._renew_lease(lease, now)
        # The first renewal of each node is spread over half an interval so thousands of nodes do not renew in
        # lockstep.
        spread = 1.0 if due is not None else 0.5 + (zlib.crc32(node_name.encode()) % 1000) / 2000
        after = self.lease_renew_seconds * spread
        self._lease_due[node_name] = now + after
        return Requeue(after=after)

    def _create_lease(self, node: _NodeInfo, now: float) -> None:
        body = {
            "metadata": {
                "name": node.name,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node.uid}],
            },
            "spec": {
                "holderIdentity": node.name,
                "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                "renewTime": rfc3339_micro(now),
            },
        }
        self.registry.create(LEASES, LEASE_NAMESPACE, body, field_validation="Ignore")

    def _renew_lease(self, lease: Stored, now: float) -> None:
        obj = lease.decode()
        obj.setdefault("spec", {})["renewTime"] = rfc3339_micro(now)
        self.registry.update(LEASES, LEASE_NAMESPACE, lease.name, obj, field_validation="Ignore")

    def _delete_lease(self, lease: Stored) -> None:
        try:
            self.registry.delete(LEASES, LEASE_NAMESPACE, lease.name, DeleteOptions(uid=lease.uid))
        except APIError as err:
            if err.code != 404:
                raise

    # -- mirror pods --------------------------------------------------------------------------------------------

    def _sync_mirror(self, ident: StaticPodId) -> None:
        node_name, namespace, _ = ident
        manifest = self.static_pods.get(ident)
        existing = self.registry.bucket(PODS).get(object_key(namespace, mirror_name(ident)))
        node = self._nodes.get(node_name)
        if manifest is None:
            if existing is not None and existing.field("spec.nodeName") == node_name and _MIRROR in existing.body:
                self._delete_mirror(existing)
            return
        if node is None or not node.up:
            return
        wanted_hash = config_hash(node_name, manifest)
        if existing is not None:
            current = existing.decode()
            if current["metadata"].get("deletionTimestamp"):
                return  # its DELETED change brings us back here to recreate it
            if ((current["metadata"].get("annotations") or {}).get(MIRROR_ANNOTATION)) != wanted_hash:
                self._delete_mirror(existing)
            return
        self.registry.create(PODS, namespace, self._mirror_pod(ident, manifest, node, wanted_hash),
                             field_validation="Ignore")  # fmt: skip

    def _delete_mirror(self, pod: Stored) -> None:
        try:
            self.registry.delete(PODS, pod.namespace, pod.name, DeleteOptions(grace_period=0, uid=pod.uid))
        except APIError as err:
            if err.code != 404:
                raise

    def _mirror_pod(self, ident: StaticPodId, manifest: JSON, node: _NodeInfo, digest: str) -> JSON:
        source: JSON = orjson.loads(orjson.dumps(manifest))
        meta = source.get("metadata") or {}
        annotations = dict(meta.get("annotations") or {})
        annotations.update({HASH_ANNOTATION: digest, MIRROR_ANNOTATION: digest,
                            SEEN_ANNOTATION: self.static_pods.seen(ident), SOURCE_ANNOTATION: "file"})  # fmt: skip
        spec: JSON = source["spec"]
        spec["nodeName"] = node.name
        tolerations = spec.setdefault("tolerations", [])
        everything = {"operator": "Exists", "effect": "NoExecute"}
        if everything not in tolerations:
            # The kubelet lets every static pod tolerate NoExecute taints: it must not be evicted from its node.
            tolerations.append(everything)
        priority = _BUILTIN_PRIORITIES.get(str(spec.get("priorityClassName") or ""))
        if priority is not None:
            spec.setdefault("priority", priority)
        metadata: JSON = {
            "name": mirror_name(ident),
            "namespace": ident[1],
            "labels": dict(meta.get("labels") or {}),
            "annotations": annotations,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node.uid, "controller": True}
            ],
        }
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _kubelet(registry: Registry, settings: SimSettings) -> Controller:
    return Kubelet(registry, settings)


CONTROLLERS: dict[str, Factory] = {"kubelet": _kubelet}
