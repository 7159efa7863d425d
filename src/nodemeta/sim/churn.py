"""Steady, reproducible change to a running simulated cluster: what a real cluster goes through all day.

`ChurnDriver` performs actions at a fixed rate, each a real API operation through the registry (so every client
sees the same watch events a real cluster would send), and leaves the consequences to the controllers:

* rollout: a Deployment's image and version label move to the next release (a new ReplicaSet rolls out);
* scale-up / scale-down: a Deployment gains or loses a few replicas;
* pod-death: a controller-owned pod is deleted (its controller replaces it);
* pod-label: a label of a running pod is edited, as `kubectl label` does;
* service-selector: a Service is pointed at another Deployment of its namespace (a blue/green switch);
* node-drain: a worker node is cordoned and its pods other than DaemonSet and mirror pods are evicted, as
  `kubectl drain --ignore-daemonsets` does;
* node-remove: the node drained longest ago is deleted, as the cluster autoscaler removes a node once drained
  (its static pods are taken off it; the pod GC removes its DaemonSet pods once its quarantine has passed);
* node-add: a new Ready node joins (with a static kube-proxy pod when the cluster's nodes have one);
* namespace-delete / namespace-create: a team namespace is deleted with everything in it, or a new one is created
  with a few Deployments and their Services.

Reproducibility: every choice comes from `random.Random(seed)`, each step draws the same number of values whatever
the cluster looks like, and targets are picked from the driver's own catalogue of stable names (Deployments,
Services, nodes, namespaces), read once from the cluster and updated only by the driver's own actions. So the
sequence of (action, target) for a seed depends only on the starting cluster. Pods have generated names, so a pod
action's target is its owner; the pod actually chosen is in the record's `detail`.

Actions that meet a 404, 409 or 403 (a race with a controller, a namespace being deleted) are recorded as skipped.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from nodemeta.sim import generator
from nodemeta.sim.builders import node_object
from nodemeta.sim.controllers.kubelet import static_pods
from nodemeta.sim.errors import APIError
from nodemeta.sim.generator import (
    DAEMONSETS,
    DEPLOYMENTS,
    INSTANCE,
    NAMESPACES,
    NODES,
    PODS,
    RCS,
    SERVICES,
    STATEFULSETS,
    TEAM,
    VERSION,
)
from nodemeta.sim.registry import BUILTIN_NAMESPACES, DeleteOptions
from nodemeta.sim.resources import JSON, ResourceType
from nodemeta.sim.store import Stored

if TYPE_CHECKING:
    from nodemeta.sim.server import SimServer

log = structlog.get_logger("nodemeta.sim.churn")

ROLLOUT = "rollout"
SCALE_UP = "scale-up"
SCALE_DOWN = "scale-down"
POD_DEATH = "pod-death"
POD_LABEL = "pod-label"
SERVICE_SELECTOR = "service-selector"
NODE_DRAIN = "node-drain"
NODE_REMOVE = "node-remove"
NODE_ADD = "node-add"
NAMESPACE_DELETE = "namespace-delete"
NAMESPACE_CREATE = "namespace-create"
ACTIONS = (
    ROLLOUT, SCALE_UP, SCALE_DOWN, POD_DEATH, POD_LABEL, SERVICE_SELECTOR,
    NODE_DRAIN, NODE_REMOVE, NODE_ADD, NAMESPACE_DELETE, NAMESPACE_CREATE,
)  # fmt: skip
# Relative frequencies by default: pods come and go all the time, rollouts and label edits are common, nodes and
# namespaces change rarely (each of those touches many objects at once).
DEFAULT_MIX: Mapping[str, float] = {
    ROLLOUT: 0.15, SCALE_UP: 0.1, SCALE_DOWN: 0.1, POD_DEATH: 0.3, POD_LABEL: 0.16, SERVICE_SELECTOR: 0.07,
    NODE_DRAIN: 0.02, NODE_REMOVE: 0.02, NODE_ADD: 0.02, NAMESPACE_DELETE: 0.03, NAMESPACE_CREATE: 0.03,
}  # fmt: skip
# Random values each step draws, used or not, so the stream of choices never depends on the cluster's state.
DRAWS_PER_STEP = 4
# At most this many actions are done back to back to catch up after the loop was busy; older debt is forgiven.
BURST = 10
# Scaling moves a Deployment by 1-3 replicas, and never above this multiple of its size when the driver started.
SCALE_STEP = 3
SCALE_CEILING = 3
# Nodes and team namespaces the driver always leaves in place.
MIN_NODES = 2
MIN_TEAM_NAMESPACES = 1
EDITED_LABEL = "churn.nodemeta.io/track"
TRACKS = ("stable", "canary", "debug")
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# Records kept in `ChurnDriver.log`: hours of churn at 100 actions/s must not grow without bound.
LOG_LIMIT = 100_000
_SKIPPED_CODES = (403, 404, 409)
_NODE_INDEX = re.compile(r"^node-(\d+)$")


@dataclass(frozen=True, slots=True)
class ChurnRecord:
    # Seconds since the driver's first action.
    at: float
    action: str
    # What the action was aimed at, by a stable name: "namespace/name", a node or a namespace.
    target: str
    # The object actually changed when it has a generated name (a pod), or why the action was skipped.
    detail: str = ""
    skipped: bool = False


@dataclass(slots=True)
class _Workload:
    """A pod owner the driver may aim at: kind, namespace, name and the labels its pods carry."""

    kind: str
    namespace: str
    name: str
    selector: dict[str, str]
    replicas: int = 0

    @property
    def target(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(slots=True)
class _Catalogue:
    """The stable names the driver chooses from, kept in sorted order."""

    namespaces: list[str] = field(default_factory=list)
    deployments: list[_Workload] = field(default_factory=list)
    workloads: list[_Workload] = field(default_factory=list)
    services: list[tuple[str, str]] = field(default_factory=list)
    # Worker nodes that may be drained, and drained ones waiting to be removed (oldest first).
    nodes: list[str] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)
    initial_replicas: dict[str, int] = field(default_factory=dict)
    next_node: int = 1
    static_proxy: bool = False
    pods_per_namespace: int = 10

    def forget_namespace(self, namespace: str) -> None:
        self.namespaces.remove(namespace)
        self.deployments = [w for w in self.deployments if w.namespace != namespace]
        self.workloads = [w for w in self.workloads if w.namespace != namespace]
        self.services = [s for s in self.services if s[0] != namespace]


class _Skip(Exception):
    """The action cannot be done on the cluster as it is; recorded as skipped."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(reason)
        self.target = target
        self.reason = reason


class ChurnDriver:
    """Performs churn actions on `server` at `rate_per_second`, chosen by `mix` (default `DEFAULT_MIX`)."""

    def __init__(
        self,
        server: SimServer,
        seed: int,
        rate_per_second: float,
        mix: Mapping[str, float] | None = None,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError("the churn rate must be positive")
        self.server = server
        self.registry = server.registry
        self.rate = rate_per_second
        self.mix = normalise_mix(DEFAULT_MIX if mix is None else mix)
        self.rng = random.Random(seed)
        # The latest actions (all of them in any test-sized run); `counts` and `skipped` cover every action.
        self.log: deque[ChurnRecord] = deque(maxlen=LOG_LIMIT)
        self.counts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self._catalogue: _Catalogue | None = None
        self._started: float | None = None
        self._created_namespaces = 0
        self._handlers: dict[str, Callable[[list[float]], tuple[str, str]]] = {
            ROLLOUT: self._rollout,
            SCALE_UP: self._scale_up,
            SCALE_DOWN: self._scale_down,
            POD_DEATH: self._pod_death,
            POD_LABEL: self._pod_label,
            SERVICE_SELECTOR: self._service_selector,
            NODE_DRAIN: self._node_drain,
            NODE_REMOVE: self._node_remove,
            NODE_ADD: self._node_add,
            NAMESPACE_DELETE: self._namespace_delete,
            NAMESPACE_CREATE: self._namespace_create,
        }

    # -- running ------------------------------------------------------------------------------------------------

    async def run(self, duration: float | None = None, *, actions: int | None = None) -> None:
        """Act at the configured rate for `duration` seconds, or `actions` times, or until cancelled.

        Pacing is a token bucket: action N is due at start + N / rate; when the loop falls behind, up to `BURST`
        due actions are done back to back (each still yielding to the loop), and older debt is dropped.
        """
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate
        start = loop.time()
        end = None if duration is None else start + duration
        due = start
        done = 0
        while actions is None or done < actions:
            now = loop.time()
            if end is not None and now >= end:
                return
            wake = due if end is None else min(due, end)
            await asyncio.sleep(max(0.0, wake - now))
            if end is not None and loop.time() >= end and due > end:
                return
            self.step()
            done += 1
            due = max(due + interval, loop.time() - BURST * interval)

    def step(self) -> ChurnRecord:
        """Perform one action now and record it."""
        now = time.monotonic()
        if self._started is None:
            self._started = now
        action = self.rng.choices(ACTIONS, [self.mix.get(a, 0.0) for a in ACTIONS])[0]
        draws = [self.rng.random() for _ in range(DRAWS_PER_STEP)]
        handler = self._handlers[action]
        try:
            target, detail = handler(draws)
            skipped = False
        except _Skip as skip:
            target, detail, skipped = skip.target, skip.reason, True
        record = ChurnRecord(now - self._started, action, target, detail, skipped)
        self.log.append(record)
        (self.skipped if skipped else self.counts)[action] += 1
        log.debug("churn", action=action, target=target, detail=detail, skipped=skipped)
        return record

    # -- the catalogue ------------------------------------------------------------------------------------------

    @property
    def catalogue(self) -> _Catalogue:
        if self._catalogue is None:
            self._catalogue = self._read_catalogue()
        return self._catalogue

    def _read_catalogue(self) -> _Catalogue:
        cat = _Catalogue()
        cat.namespaces = sorted(
            ns.name for ns in self.registry.iter_objects(NAMESPACES) if churnable(ns) and not _terminating(ns)
        )
        team = set(cat.namespaces)
        for res, kind in ((DEPLOYMENTS, "Deployment"), (STATEFULSETS, "StatefulSet"), (RCS, "ReplicationController")):
            for stored in self.registry.iter_objects(res):
                if stored.namespace in team:
                    cat.workloads.append(_workload(kind, stored))
        cat.workloads += [_workload("DaemonSet", s) for s in self.registry.iter_objects(DAEMONSETS)]
        cat.workloads.sort(key=lambda w: (w.kind, w.namespace, w.name))
        cat.deployments = [w for w in cat.workloads if w.kind == "Deployment"]
        cat.initial_replicas = {w.target: w.replicas for w in cat.deployments}
        cat.services = sorted(
            (s.namespace, s.name)
            for s in self.registry.iter_objects(SERVICES)
            if s.namespace in team and (s.decode().get("spec") or {}).get("selector")
        )
        nodes = list(self.registry.iter_objects(NODES))
        cat.nodes = sorted((n.name for n in nodes if _worker(n)), key=_node_order)
        indexes = [int(m.group(1)) for n in nodes if (m := _NODE_INDEX.match(n.name))]
        cat.next_node = max(indexes, default=0) + 1
        # Nodes get a static kube-proxy when the cluster's workers have one (a generated cluster's do).
        manifests = static_pods(self.registry).on_node(cat.nodes[0]) if cat.nodes else []
        cat.static_proxy = any(name == "kube-proxy" for _, _, name in manifests)
        team_pods = sum(1 for p in self.registry.bucket(PODS).items.values() if p.namespace in team)
        cat.pods_per_namespace = max(3, team_pods // max(1, len(cat.namespaces)))
        return cat

    # -- helpers ------------------------------------------------------------------------------------------------

    def _pick(self, items: list[_Workload], draw: float, action: str) -> _Workload:
        if not items:
            raise _Skip("", f"no {action} target left")
        return items[int(draw * len(items))]

    def _guard(self, target: str, call: Callable[[], object]) -> None:
        """Run an API call; a 403/404/409 turns the action into a skipped one."""
        try:
            call()
        except APIError as err:
            if err.code not in _SKIPPED_CODES:
                raise
            raise _Skip(target, f"{err.code} {err.reason}: {err.message}") from err

    def _pods_of(self, workload: _Workload) -> list[Stored]:
        """The live (not terminating, not finished) pods a workload's selector matches, in name order."""
        pods = [
            pod for pod in self.registry.iter_objects(PODS, workload.namespace)
            if all(pod.labels.get(k) == v for k, v in workload.selector.items())
            and pod.field("status.phase") not in ("Succeeded", "Failed")
            and b'"deletionTimestamp"' not in pod.body
        ]  # fmt: skip
        return pods

    def _pick_pod(self, draws: list[float], action: str) -> tuple[_Workload, Stored]:
        workload = self._pick(self.catalogue.workloads, draws[0], action)
        pods = self._pods_of(workload)
        if not pods:
            raise _Skip(workload.target, "no live pod")
        return workload, pods[int(draws[1] * len(pods))]

    # -- actions --------------------------------------------------------------------------------------------------

    def _rollout(self, draws: list[float]) -> tuple[str, str]:
        deployment = self._pick(self.catalogue.deployments, draws[0], ROLLOUT)
        target = deployment.target

        def roll() -> None:
            stored = self.registry.get(DEPLOYMENTS, deployment.namespace, deployment.name)
            template = stored.decode()["spec"]["template"]
            container = template["spec"]["containers"][0]
            image = next_release(container["image"])
            patch: JSON = {
                "spec": {"template": {"spec": {"containers": [{"name": container["name"], "image": image}]}}}
            }
            if VERSION in (template["metadata"].get("labels") or {}):
                patch["spec"]["template"]["metadata"] = {"labels": {VERSION: image.rpartition(":")[2]}}
            self.registry.patch(DEPLOYMENTS, deployment.namespace, deployment.name, "strategic", patch)

        self._guard(target, roll)
        return target, ""

    def _scale(self, draws: list[float], action: str, direction: int) -> tuple[str, str]:
        deployment = self._pick(self.catalogue.deployments, draws[0], action)
        target = deployment.target
        step = 1 + int(draws[1] * SCALE_STEP)
        ceiling = max(SCALE_STEP, SCALE_CEILING * self.catalogue.initial_replicas.get(target, 1))
        detail = ""

        def scale() -> None:
            nonlocal detail
            stored = self.registry.get(DEPLOYMENTS, deployment.namespace, deployment.name)
            current = int(stored.decode()["spec"].get("replicas", 1))
            wanted = min(ceiling, max(0, current + direction * step))
            if wanted == current:
                raise _Skip(target, f"already at {current} replicas")
            patch = {"spec": {"replicas": wanted}}
            self.registry.patch(DEPLOYMENTS, deployment.namespace, deployment.name, "merge", patch)
            detail = f"{current} -> {wanted}"

        self._guard(target, scale)
        return target, detail

    def _scale_up(self, draws: list[float]) -> tuple[str, str]:
        return self._scale(draws, SCALE_UP, 1)

    def _scale_down(self, draws: list[float]) -> tuple[str, str]:
        return self._scale(draws, SCALE_DOWN, -1)

    def _pod_death(self, draws: list[float]) -> tuple[str, str]:
        workload, pod = self._pick_pod(draws, POD_DEATH)
        options = DeleteOptions(uid=pod.uid)
        self._guard(workload.target, lambda: self.registry.delete(PODS, pod.namespace, pod.name, options))
        return workload.target, pod.name

    def _pod_label(self, draws: list[float]) -> tuple[str, str]:
        workload, pod = self._pick_pod(draws, POD_LABEL)
        track = TRACKS[int(draws[2] * len(TRACKS))]
        patch = {"metadata": {"labels": {EDITED_LABEL: track}}}
        self._guard(workload.target, lambda: self.registry.patch(PODS, pod.namespace, pod.name, "merge", patch))
        return workload.target, f"{pod.name} {EDITED_LABEL}={track}"

    def _service_selector(self, draws: list[float]) -> tuple[str, str]:
        services = self.catalogue.services
        if not services:
            raise _Skip("", "no Service with a selector")
        namespace, name = services[int(draws[0] * len(services))]
        target = f"{namespace}/{name}"
        candidates = [d for d in self.catalogue.deployments if d.namespace == namespace]
        if candidates:
            chosen = candidates[int(draws[1] * len(candidates))]
            selector, detail = dict(chosen.selector), chosen.name
        else:
            selector, detail = {INSTANCE: f"{name}-retired"}, "(nothing)"
        patch = [{"op": "replace", "path": "/spec/selector", "value": selector}]
        self._guard(target, lambda: self.registry.patch(SERVICES, namespace, name, "json", patch))
        return target, f"-> {detail}"

    def _node_drain(self, draws: list[float]) -> tuple[str, str]:
        cat = self.catalogue
        if len(cat.nodes) <= MIN_NODES:
            raise _Skip("", f"only {len(cat.nodes)} nodes left")
        node = cat.nodes[int(draws[0] * len(cat.nodes))]
        cat.nodes.remove(node)
        cat.drained.append(node)
        self._guard(node, lambda: self.registry.patch(NODES, "", node, "merge", {"spec": {"unschedulable": True}}))
        evicted = 0
        pods = self.registry.bucket(PODS)
        # The store indexes pods by spec.nodeName: a drain costs the node's pods, not the cluster's.
        for pod in [pods.items[key] for key in list(pods.by_value.get(node, ()))]:
            if _stays_on_node(pod):
                continue
            try:
                self.registry.delete(PODS, pod.namespace, pod.name, DeleteOptions(uid=pod.uid))
                evicted += 1
            except APIError as err:
                if err.code not in _SKIPPED_CODES:
                    raise
        return node, f"evicted {evicted} pods"

    def _node_remove(self, draws: list[float]) -> tuple[str, str]:
        cat = self.catalogue
        if not cat.drained:
            raise _Skip("", "no drained node")
        node = cat.drained.pop(0)
        manifests = static_pods(self.registry)
        for _, namespace, name in manifests.on_node(node):
            manifests.remove(node, name, namespace)
        self._guard(node, lambda: self.registry.delete(NODES, "", node, DeleteOptions()))
        return node, ""

    def _node_add(self, draws: list[float]) -> tuple[str, str]:
        cat = self.catalogue
        index = cat.next_node
        cat.next_node += 1
        name = generator.node_name(index)
        self._guard(name, lambda: self.registry.create(NODES, "", node_object(name, index, self.registry.clock())))
        cat.nodes.append(name)
        if cat.static_proxy:
            generator.add_static_pod(self.server, generator.kube_proxy(name))
        return name, ""

    def _namespace_delete(self, draws: list[float]) -> tuple[str, str]:
        cat = self.catalogue
        if len(cat.namespaces) <= MIN_TEAM_NAMESPACES:
            raise _Skip("", f"only {len(cat.namespaces)} team namespaces left")
        namespace = cat.namespaces[int(draws[0] * len(cat.namespaces))]
        cat.forget_namespace(namespace)
        self._guard(namespace, lambda: self.registry.delete(NAMESPACES, "", namespace, DeleteOptions()))
        return namespace, ""

    def _namespace_create(self, draws: list[float]) -> tuple[str, str]:
        cat = self.catalogue
        self._created_namespaces += 1
        team = generator.plan_team_namespace(
            seed=int(draws[0] * 2**32), pods=cat.pods_per_namespace, suffix=str(self._created_namespaces)
        )
        name = team.namespace.name
        self._guard(name, lambda: self.registry.create(NAMESPACES, "", generator.namespace_object(team.namespace)))
        created: list[tuple[ResourceType, JSON]] = [
            *((DEPLOYMENTS, generator.deployment_object(d)) for d in team.deployments),
            *((SERVICES, generator.service_object(s)) for s in team.services),
        ]
        for res, body in created:
            self._guard(name, functools.partial(self.registry.create, res, name, body))
        cat.namespaces.append(name)
        cat.namespaces.sort()
        for plan in team.deployments:
            workload = _Workload("Deployment", name, plan.name, generator.as_dict(plan.selector), plan.replicas)
            cat.deployments.append(workload)
            cat.workloads.append(workload)
            cat.initial_replicas[workload.target] = plan.replicas
        cat.deployments.sort(key=lambda w: (w.namespace, w.name))
        cat.workloads.sort(key=lambda w: (w.kind, w.namespace, w.name))
        cat.services += [(name, s.name) for s in team.services if s.selector]
        cat.services.sort()
        return name, f"{len(team.deployments)} deployments, {sum(d.replicas for d in team.deployments)} pods"


def normalise_mix(mix: Mapping[str, float]) -> dict[str, float]:
    """Check a mix (action -> relative weight) and scale it to sum to 1."""
    unknown = sorted(set(mix) - set(ACTIONS))
    if unknown:
        raise ValueError(f"unknown churn actions: {', '.join(unknown)}; known: {', '.join(ACTIONS)}")
    if any(w < 0 for w in mix.values()):
        raise ValueError("churn weights must not be negative")
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("the churn mix needs at least one action with a positive weight")
    return {action: mix.get(action, 0.0) / total for action in ACTIONS}


def parse_mix(text: str) -> dict[str, float]:
    """`rollout=2,pod-death=5` -> weights; actions left out get 0 (the CLI's --churn-mix)."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        action, sep, weight = part.partition("=")
        if not sep:
            raise ValueError(f"expected action=weight, got {part!r}")
        mix[action.strip()] = float(weight)
    return normalise_mix(mix)


def churnable(namespace: Stored) -> bool:
    """Team namespaces (those the generator or the driver made, labelled with a team) and no built-in one."""
    return namespace.name not in BUILTIN_NAMESPACES and TEAM in namespace.labels


def next_release(image: str) -> str:
    """The image of the next release: the last number of the tag goes up by one (a tag without one gets `-1`)."""
    repository, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return f"{image}:v2"
    match = re.search(r"(\d+)(\D*)$", tag)
    if match is None:
        return f"{repository}:{tag}-1"
    bumped = f"{tag[: match.start(1)]}{int(match.group(1)) + 1}{match.group(2)}"
    return f"{repository}:{bumped}"


def _workload(kind: str, stored: Stored) -> _Workload:
    spec = stored.decode().get("spec") or {}
    selector = spec.get("selector") or {}
    labels = selector if kind == "ReplicationController" else selector.get("matchLabels") or {}
    return _Workload(kind, stored.namespace, stored.name, dict(labels), int(spec.get("replicas", 1)))


def _terminating(namespace: Stored) -> bool:
    return namespace.field("status.phase") == "Terminating"


def _stays_on_node(pod: Stored) -> bool:
    """What `kubectl drain --ignore-daemonsets` leaves in place: DaemonSet pods and mirror pods."""
    meta = pod.decode()["metadata"]
    if MIRROR_ANNOTATION in (meta.get("annotations") or {}):
        return True
    return any(ref.get("kind") == "DaemonSet" and ref.get("controller") for ref in meta.get("ownerReferences") or [])


def _worker(node: Stored) -> bool:
    """Nodes the driver may drain: not control-plane nodes, not already cordoned."""
    return generator.CONTROL_PLANE_ROLE not in node.labels and node.field("spec.unschedulable") != "true"


def _node_order(name: str) -> tuple[int, str]:
    match = _NODE_INDEX.match(name)
    return (int(match.group(1)), name) if match else (1 << 62, name)
