"""The EndpointSlice controller: keeps discovery.k8s.io/v1 EndpointSlices for every Service with a selector.

Per Service (not ExternalName) with a non-empty selector, as kube-controller-manager's controller does:

* slices named `<service>-<5 random>`, labelled with the Service's labels plus `kubernetes.io/service-name` and
  `endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io` (and `service.kubernetes.io/headless`
  for headless Services), owned by the Service (controller, blockOwnerDeletion);
* one endpoint per selected pod that has an IP and is not Succeeded/Failed: `ready` (pod Ready and not
  terminating, or the Service publishes not-ready addresses), `serving` (pod Ready), `terminating`
  (deletionTimestamp set), `nodeName`, `zone` from the node's topology.kubernetes.io/zone label, `hostname` when
  the pod's subdomain names the Service, and `targetRef`;
* ports: each Service port's name and protocol with its targetPort resolved for that pod (a named targetPort
  through the pod's container port names; a pod without that port name is left out of that port); pods whose
  ports resolve differently go to different slices, as in the real controller;
* at most 100 endpoints per slice; endpoints stay in the slice they are in, new ones fill free room first, and a
  slice no longer needed is reused for other content before any is deleted; an IPv4 slice always exists (empty
  when nothing is selected) and IPv6 slices appear when selected pods have IPv6 addresses;
* unchanged slices are not written; slices of a Service that is deleted or loses its selector are deleted.

The real controller derives the address types from the Service's ipFamilies; the simulator allocates only IPv4
cluster IPs, so IPv6 slices follow the pods' addresses instead. Topology hints, the legacy core/v1 Endpoints object
and the mirroring of custom Endpoints are not modelled.

Costs: Services are indexed by (namespace, one of their selector's label pairs), so a pod change looks up only the
Services its old or new labels could match; each Service keeps its set of selected pods, so a reconcile reads only
those pods, and their endpoint data is cached per pod revision.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

import orjson

from nodemeta.sim.controllers.base import Controller, Factory, Requeue
from nodemeta.sim.controllers.nodes import NODES, PODS, TERMINAL_PHASES, condition_status, resource
from nodemeta.sim.errors import APIError
from nodemeta.sim.registry import DeleteOptions, Registry, rfc3339
from nodemeta.sim.resources import JSON
from nodemeta.sim.settings import SimSettings
from nodemeta.sim.store import DELETED, Change, Stored, object_key

SERVICES = resource("", "v1", "services")
ENDPOINT_SLICES = resource("discovery.k8s.io", "v1", "endpointslices")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
ZONE_LABEL = "topology.kubernetes.io/zone"
# The controller's --max-endpoints-per-slice default.
MAX_ENDPOINTS_PER_SLICE = 100


@dataclass(frozen=True, slots=True)
class _Selector:
    """A Service's selector, indexed under one of its pairs: every selected pod carries all of them."""

    labels: Mapping[str, str]

    @property
    def anchor(self) -> tuple[str, str]:
        return min(self.labels.items())

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.labels.items())


@dataclass(frozen=True, slots=True)
class _PodEndpoint:
    """What a pod contributes to its Services' slices, read once per pod revision."""

    name: str
    uid: str
    ipv4: str
    ipv6: str
    node: str
    ready: bool
    terminating: bool
    hostname: str
    subdomain: str
    # (container port name, protocol, port number), for named targetPorts; a tuple, as it is kept per pod.
    named_ports: tuple[tuple[str, str, int], ...]

    def port_named(self, name: str, protocol: str) -> int | None:
        return next((number for n, p, number in self.named_ports if n == name and p == protocol), None)


def _selector_of(service: JSON) -> _Selector | None:
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    if spec.get("type") == "ExternalName" or not selector:
        return None
    return _Selector({str(k): str(v) for k, v in selector.items()})


def _pod_endpoint(stored: Stored) -> _PodEndpoint | None:
    """None for pods that get no endpoint: no IP yet, or finished."""
    if stored.field("status.phase") in TERMINAL_PHASES or not stored.field("status.podIP"):
        return None
    pod = stored.decode()
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    ips = [str(entry.get("ip")) for entry in status.get("podIPs") or [] if entry.get("ip")] or [status["podIP"]]
    named = tuple(
        (str(port["name"]), str(port.get("protocol") or "TCP"), int(port.get("containerPort") or 0))
        for container in spec.get("containers") or []
        for port in container.get("ports") or []
        if port.get("name")
    )
    return _PodEndpoint(
        name=stored.name,
        uid=stored.uid,
        ipv4=next((ip for ip in ips if ":" not in ip), ""),
        ipv6=next((ip for ip in ips if ":" in ip), ""),
        node=str(spec.get("nodeName") or ""),
        ready=condition_status(pod, "Ready") == "True",
        terminating=bool(pod["metadata"].get("deletionTimestamp")),
        hostname=str(spec.get("hostname") or ""),
        subdomain=str(spec.get("subdomain") or ""),
        named_ports=named,
    )


def _endpoint_ports(service_ports: list[JSON], pod: _PodEndpoint) -> list[JSON]:
    ports = []
    for port in service_ports:
        protocol = str(port.get("protocol") or "TCP")
        target = port.get("targetPort") or port.get("port") or 0
        if isinstance(target, str) and not target.isdigit():
            number = pod.port_named(target, protocol)
            if number is None:
                continue
        else:
            number = int(target)
        entry: JSON = {"name": str(port.get("name") or ""), "port": number, "protocol": protocol}
        if port.get("appProtocol"):
            entry["appProtocol"] = port["appProtocol"]
        ports.append(entry)
    return ports


# Slice groups: endpoints sharing an address type and a resolved port list share slices.
GroupKey = tuple[str, bytes]


@dataclass(slots=True)
class _SliceContent:
    """One slice as it should be: the existing object it updates (None: create one) and what it holds."""

    existing: Stored | None
    address_type: str
    ports: list[JSON]
    endpoints: list[JSON]


@dataclass(slots=True)
class _SlicePlan:
    writes: list[_SliceContent]
    deletes: list[Stored]


def _endpoint_name(endpoint: JSON) -> str:
    return str((endpoint.get("targetRef") or {}).get("name") or "")


class EndpointSliceController(Controller):
    """Keys are Service keys ("namespace/name")."""

    name = "endpointslice"
    watches = ("services", "pods", "nodes", "endpointslices.discovery.k8s.io")

    def __init__(self, registry: Registry, settings: SimSettings) -> None:
        super().__init__(registry, settings)
        self._selectors: dict[str, _Selector] = {}
        # (namespace, label key, label value) -> names of Services whose selector is anchored on that pair.
        self._by_anchor: dict[tuple[str, str, str], set[str]] = {}
        # Service key -> keys of the pods its selector matches (absent: to be recomputed on reconcile).
        self._members: dict[str, set[str]] = {}
        self._slices: dict[str, set[str]] = {}
        self._zones: dict[str, str] = {}
        self._endpoints: dict[str, tuple[int, _PodEndpoint | None]] = {}
        # Set while this controller writes slices, so its own writes do not queue their Service again.
        self._writing = False

    # -- indexes ------------------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[Hashable]:
        for state in (self._selectors, self._by_anchor, self._members, self._slices, self._zones, self._endpoints):
            state.clear()
        for node in self.registry.iter_objects(NODES):
            if node.labels.get(ZONE_LABEL):
                self._zones[node.name] = node.labels[ZONE_LABEL]
        for item in self.registry.iter_objects(ENDPOINT_SLICES):
            owner = self._owning_service(item)
            if owner is not None:
                self._slices.setdefault(owner, set()).add(item.key)
        keys: set[Hashable] = set(self._slices)
        for service in self.registry.iter_objects(SERVICES):
            selector = _selector_of(service.decode())
            if selector is not None:
                self._index(service.key, service.namespace, selector)
                keys.add(service.key)
        return sorted(keys, key=str)

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == "pods":
            return self._pod_changed(change)
        if storage == "services":
            return self._service_changed(change)
        if storage == "nodes":
            return self._node_changed(change)
        return self._slice_changed(change)

    def _index(self, key: str, namespace: str, selector: _Selector) -> None:
        self._selectors[key] = selector
        self._by_anchor.setdefault((namespace, *selector.anchor), set()).add(key.partition("/")[2])

    def _unindex(self, key: str, namespace: str) -> None:
        selector = self._selectors.pop(key, None)
        self._members.pop(key, None)
        if selector is None:
            return
        anchor = (namespace, *selector.anchor)
        names = self._by_anchor.get(anchor)
        if names is not None:
            names.discard(key.partition("/")[2])
            if not names:
                del self._by_anchor[anchor]

    def _service_changed(self, change: Change) -> list[Hashable]:
        key = change.key
        selector = _selector_of(change.obj.decode()) if change.type != DELETED else None
        if selector != self._selectors.get(key):
            self._unindex(key, change.obj.namespace)
            if selector is not None:
                self._index(key, change.obj.namespace, selector)
        return [key]

    def _pod_changed(self, change: Change) -> list[Hashable]:
        self._endpoints.pop(change.key, None)
        namespace = change.obj.namespace
        old = change.prev.labels if change.prev is not None else None
        new = change.obj.labels if change.type != DELETED else None
        keys: list[Hashable] = []
        for name in self._candidate_services(namespace, old, new):
            service_key = object_key(namespace, name)
            selector = self._selectors[service_key]
            selected = new is not None and selector.matches(new)
            if not selected and not (old is not None and selector.matches(old)):
                continue
            members = self._members.get(service_key)
            if members is not None:
                if selected:
                    members.add(change.key)
                else:
                    members.discard(change.key)
            keys.append(service_key)
        return keys

    def _candidate_services(self, namespace: str, *label_sets: Mapping[str, str] | None) -> set[str]:
        names: set[str] = set()
        for labels in label_sets:
            for pair in (labels or {}).items():
                names.update(self._by_anchor.get((namespace, *pair), ()))
        return names

    def _node_changed(self, change: Change) -> list[Hashable]:
        zone = change.obj.labels.get(ZONE_LABEL, "") if change.type != DELETED else ""
        previous = self._zones.get(change.key, "")
        if zone:
            self._zones[change.key] = zone
        else:
            self._zones.pop(change.key, None)
        if change.type == "MODIFIED" and zone != previous:
            # Rare (zones are set when a node registers): re-check every Service rather than index pods by node.
            return list(self._selectors)
        return []

    def _slice_changed(self, change: Change) -> list[Hashable]:
        keys: list[Hashable] = []
        if change.prev is not None:
            owner = self._owning_service(change.prev)
            if owner is not None:
                self._slices.get(owner, set()).discard(change.key)
                keys.append(owner)
        owner = self._owning_service(change.obj) if change.type != DELETED else None
        if owner is not None:
            self._slices.setdefault(owner, set()).add(change.key)
            keys.append(owner)
        # Someone else edited or deleted one of our slices: its Service is reconciled to repair it.
        return [] if self._writing else keys

    def _owning_service(self, item: Stored) -> str | None:
        if item.labels.get(MANAGED_BY_LABEL) != MANAGED_BY or not item.labels.get(SERVICE_NAME_LABEL):
            return None
        return object_key(item.namespace, item.labels[SERVICE_NAME_LABEL])

    # -- reconcile ----------------------------------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> Requeue | None:
        assert isinstance(key, str)
        stored = self.registry.bucket(SERVICES).get(key)
        service = stored.decode() if stored is not None else None
        selector = _selector_of(service) if service is not None else None
        existing = [s for s in map(self.registry.bucket(ENDPOINT_SLICES).get, sorted(self._slices.get(key, ()))) if s]
        self._writing = True
        try:
            if stored is None or service is None or selector is None:
                for item in existing:
                    self._delete(item)
                return None
            plan = self._plan(self._desired(key, stored.namespace, selector, service), existing)
            self._apply(stored, service, plan)
        finally:
            self._writing = False
        return None

    def _selected_pods(self, key: str, namespace: str, selector: _Selector) -> set[str]:
        members = self._members.get(key)
        if members is None:
            members = {p.key for p in self.registry.iter_objects(PODS, namespace) if selector.matches(p.labels)}
            self._members[key] = members
        return members

    def _pod_data(self, key: str) -> _PodEndpoint | None:
        stored = self.registry.bucket(PODS).get(key)
        if stored is None:
            return None
        cached = self._endpoints.get(key)
        if cached is not None and cached[0] == stored.rv:
            return cached[1]
        data = _pod_endpoint(stored)
        self._endpoints[key] = (stored.rv, data)
        return data

    def _desired(self, key: str, namespace: str, selector: _Selector, service: JSON) -> dict[GroupKey, dict[str, JSON]]:
        """Endpoints by (address type, encoded ports), each keyed by pod name."""
        spec = service.get("spec") or {}
        service_ports = list(spec.get("ports") or [])
        publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
        groups: dict[GroupKey, dict[str, JSON]] = {}
        for pod_key in self._selected_pods(key, namespace, selector):
            pod = self._pod_data(pod_key)
            if pod is None:
                continue
            ports = orjson.dumps(_endpoint_ports(service_ports, pod))
            for address_type, ip in (("IPv4", pod.ipv4), ("IPv6", pod.ipv6)):
                if ip:
                    endpoint = self._endpoint(pod, ip, namespace, service, publish_not_ready)
                    groups.setdefault((address_type, ports), {})[pod.name] = endpoint
        if not any(address_type == "IPv4" for address_type, _ in groups):
            # The controller keeps one empty slice for a Service that selects nothing.
            groups[("IPv4", b"[]")] = {}
        return groups

    def _endpoint(self, pod: _PodEndpoint, ip: str, namespace: str, service: JSON, publish: bool) -> JSON:
        endpoint: JSON = {
            "addresses": [ip],
            "conditions": {
                "ready": publish or (pod.ready and not pod.terminating),
                "serving": pod.ready,
                "terminating": pod.terminating,
            },
        }
        if pod.hostname and pod.subdomain == service["metadata"]["name"]:
            endpoint["hostname"] = pod.hostname
        endpoint["targetRef"] = {"kind": "Pod", "namespace": namespace, "name": pod.name, "uid": pod.uid}
        if pod.node:
            endpoint["nodeName"] = pod.node
            if pod.node in self._zones:
                endpoint["zone"] = self._zones[pod.node]
        return endpoint

    def _plan(self, groups: dict[GroupKey, dict[str, JSON]], existing: list[Stored]) -> _SlicePlan:
        """Lay endpoints out over slices with as few writes as possible (see the module docstring)."""
        by_group: dict[GroupKey, list[tuple[Stored, JSON]]] = {}
        spare: list[tuple[Stored, JSON]] = []
        for item in existing:
            obj = item.decode()
            group = (str(obj.get("addressType")), orjson.dumps(obj.get("ports") or []))
            (by_group.setdefault(group, []) if group in groups else spare).append((item, obj))
        plan = _SlicePlan([], [])
        for group, endpoints in sorted(groups.items()):
            self._lay_out(group, endpoints, by_group.get(group, []), spare, plan)
        plan.deletes += [item for item, _ in spare]
        return plan

    def _lay_out(
        self,
        group: GroupKey,
        endpoints: dict[str, JSON],
        slices: list[tuple[Stored, JSON]],
        spare: list[tuple[Stored, JSON]],
        plan: _SlicePlan,
    ) -> None:
        """One group's slices: endpoints stay where they are, newcomers fill free room, then new slices (reusing
        spare ones of the same address type) take the rest. A group without endpoints keeps one empty slice."""
        address_type, encoded_ports = group
        placed: set[str] = set()
        contents: list[_SliceContent] = []
        for item, obj in slices:
            kept = []
            for old in obj.get("endpoints") or []:
                name = _endpoint_name(old)
                if name in endpoints and name not in placed:
                    kept.append(endpoints[name])
                    placed.add(name)
            contents.append(_SliceContent(item, address_type, orjson.loads(encoded_ports), kept))
        waiting = [endpoints[name] for name in sorted(endpoints) if name not in placed]
        for content in contents:
            room = max(0, MAX_ENDPOINTS_PER_SLICE - len(content.endpoints))
            content.endpoints += waiting[:room]
            waiting = waiting[room:]
        while waiting or not contents:
            chunk, waiting = waiting[:MAX_ENDPOINTS_PER_SLICE], waiting[MAX_ENDPOINTS_PER_SLICE:]
            reuse = next((s for s in spare if s[1].get("addressType") == address_type), None)
            if reuse is not None:
                spare.remove(reuse)
            recycled = reuse[0] if reuse is not None else None
            contents.append(_SliceContent(recycled, address_type, orjson.loads(encoded_ports), chunk))
        for index, content in enumerate(contents):
            if content.endpoints or (not endpoints and index == 0):
                plan.writes.append(content)
            elif content.existing is not None:
                plan.deletes.append(content.existing)

    def _apply(self, stored: Stored, service: JSON, plan: _SlicePlan) -> None:
        labels = self._slice_labels(service)
        owner = {
            "apiVersion": "v1",
            "kind": "Service",
            "name": stored.name,
            "uid": stored.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
        for content in plan.writes:
            body: JSON = {"addressType": content.address_type, "endpoints": content.endpoints, "ports": content.ports}
            if content.existing is None:
                self._create(stored, labels, owner, body)
            else:
                self._update(content.existing, labels, owner, body)
        for item in plan.deletes:
            self._delete(item)

    def _slice_labels(self, service: JSON) -> dict[str, str]:
        meta = service["metadata"]
        labels = {
            k: v for k, v in (meta.get("labels") or {}).items() if k not in (MANAGED_BY_LABEL, SERVICE_NAME_LABEL)
        }
        labels[SERVICE_NAME_LABEL] = meta["name"]
        labels[MANAGED_BY_LABEL] = MANAGED_BY
        if (service.get("spec") or {}).get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        return labels

    def _create(self, service: Stored, labels: dict[str, str], owner: JSON, body: JSON) -> None:
        obj: JSON = {
            "metadata": {
                "generateName": f"{service.name}-",
                "namespace": service.namespace,
                "labels": labels,
                "annotations": {TRIGGER_TIME_ANNOTATION: rfc3339(self.registry.clock())},
                "ownerReferences": [owner],
            },
            **body,
        }
        try:
            self.registry.create(ENDPOINT_SLICES, service.namespace, obj, field_validation="Ignore")
        except APIError as err:
            # 403: the namespace is terminating; its Services go next, and with them this reconcile's reason.
            if err.code != 403:
                raise

    def _update(self, item: Stored, labels: dict[str, str], owner: JSON, body: JSON) -> None:
        obj = item.decode()
        meta = obj["metadata"]
        unchanged = (
            all(obj.get(k) == v for k, v in body.items())
            and meta.get("labels") == labels
            and meta.get("ownerReferences") == [owner]
        )
        if unchanged:
            return
        obj.update(body)
        meta["labels"] = labels
        meta["ownerReferences"] = [owner]
        meta.setdefault("annotations", {})[TRIGGER_TIME_ANNOTATION] = rfc3339(self.registry.clock())
        self.registry.update(ENDPOINT_SLICES, item.namespace, item.name, obj, field_validation="Ignore")

    def _delete(self, item: Stored) -> None:
        try:
            self.registry.delete(ENDPOINT_SLICES, item.namespace, item.name, DeleteOptions(uid=item.uid))
        except APIError as err:
            if err.code not in (404, 409):
                raise


def _endpointslice(registry: Registry, settings: SimSettings) -> Controller:
    return EndpointSliceController(registry, settings)


CONTROLLERS: dict[str, Factory] = {"endpointslice": _endpointslice}
