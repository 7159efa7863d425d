"""A realistic cluster, planned from a seed and built through the registry.

Two steps, so the shape of a cluster can be reasoned about (and compared across processes) without running it:

* `plan_cluster` is pure: from (nodes, pods per node, seed) it draws namespaces, workloads, services, jobs, bare
  and static pods as frozen dataclasses. One `random.Random(seed)` drives every choice, always in list order, so
  the same arguments give an equal plan in any process (`ClusterPlan.digest` proves it cheaply).
* `build_cluster` writes a plan through the registry, as kubectl and kubelets would, and lets the controllers do
  the rest: ReplicaSets and pods, scheduling, container start, EndpointSlices.

What a plan holds, per node and in total (about `nodes * pods_per_node` pods):

* infrastructure on every node: up to three DaemonSets (calico-node, node-exporter, fluent-bit), and a static
  kube-proxy pod per node, as GKE runs it, so every node has a mirror pod (owned by its Node) to exercise; the
  first three nodes are control-plane nodes with the kubeadm static pods (etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler);
* system Deployments (coredns, metrics-server, kube-state-metrics);
* team namespaces (`<team>-<env>`) of very different sizes holding Deployments with heavy-tailed replica counts and
  a history of past rollouts (each one a ReplicaSet scaled to 0), Services selecting them (plus headless, stale,
  selector-less and app-wide ones), StatefulSets with their headless Services, legacy ReplicationControllers,
  Jobs (finished and running, some owned by CronJobs), suspended or yearly CronJobs and bare debugging pods.

How the build gets there quickly and the same way every time:

* past rollouts are not replayed: each Deployment is written together with the ReplicaSets of its earlier templates
  (scaled to 0, named and labelled with the template hash, revisions 1..n, owned by the Deployment), so its
  controller creates only the current ReplicaSet, as revision n+1. Replaying them would create, schedule, start
  and delete every pod of a Deployment once per rollout;
* finished Jobs are finished by reporting their pods' containers as exited 0 (what a kubelet reports when a batch
  container ends); the Job controller then completes them;
* the builder gives the event loop a turn after every `YIELD_EVERY` writes, a count rather than a time, so the
  controllers interleave with it identically from run to run: the same seed gives the same objects, owners,
  labels and pod placement (only uids, times and generated name suffixes differ).

For very large clusters, run the server with `component_events=False` (Events would outnumber every other object)
and the kubelet without Lease renewals and with one-write pod start-up (`SimSettings.kubelet_heartbeats`,
`SimSettings.kubelet_two_step_start`): at 5,000 nodes, renewals alone are 500 writes a second.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from nodemeta.sim import defaults
from nodemeta.sim.controllers.hashing import compute_hash
from nodemeta.sim.controllers.kubelet import static_pods
from nodemeta.sim.errors import APIError
from nodemeta.sim.registry import Registry, rfc3339
from nodemeta.sim.resources import JSON, ResourceType, lookup
from nodemeta.sim.store import DELETED, Bucket, Change, Stored

if TYPE_CHECKING:
    from nodemeta.sim.server import SimServer

Labels = tuple[tuple[str, str], ...]

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
VERSION = "app.kubernetes.io/version"
MANAGED_BY = "app.kubernetes.io/managed-by"
TEAM = "team"

SYSTEM_NAMESPACE = "kube-system"
MONITORING = "monitoring"
LOGGING = "logging"
KUBE_VERSION = "v1.32.0"

TEAMS = (
    "payments", "checkout", "search", "catalog", "identity", "billing", "shipping", "inventory", "ads", "growth",
    "notifications", "analytics", "media", "messaging", "platform", "fraud", "ledger", "pricing", "support", "maps",
)  # fmt: skip
ENVIRONMENTS = ("prod", "staging", "dev", "qa", "canary")
APPS = (
    "cart", "orders", "users", "auth", "profile", "feed", "images", "video", "email", "sms", "push", "reports",
    "events", "metrics", "tax", "refunds", "invoices", "coupons", "reviews", "ratings", "wishlist", "stock",
    "warehouse", "tracking", "routing", "quotes", "sessions", "tokens", "audit", "exports",
)  # fmt: skip
# Component name, container port (0: none, so no Service) and the public image family it runs, if any.
COMPONENTS: tuple[tuple[str, int, str], ...] = (
    ("api", 8080, ""), ("web", 80, "nginx"), ("worker", 0, ""), ("grpc", 9090, ""), ("consumer", 0, ""),
    ("scheduler", 0, ""), ("gateway", 8443, "envoy"), ("cache", 6379, "redis"), ("sync", 0, ""),
    ("indexer", 0, ""), ("admin", 8080, ""), ("webhook", 8443, ""),
)  # fmt: skip
SIDECARS = (
    ("istio-proxy", "docker.io/istio/proxyv2:1.23.2"),
    ("log-shipper", "cr.fluentbit.io/fluent/fluent-bit:3.1.9"),
    ("cloud-sql-proxy", "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.13.0"),
)
DATABASES = (
    ("postgres", "postgres", 5432), ("redis", "redis", 6379), ("kafka", "bitnami/kafka", 9092),
    ("zookeeper", "zookeeper", 2181), ("rabbitmq", "rabbitmq", 5672), ("mongodb", "mongo", 27017),
    ("elasticsearch", "docker.elastic.co/elasticsearch/elasticsearch", 9200),
)  # fmt: skip
TASKS = ("migrate", "backfill", "report", "export", "reindex", "cleanup", "compact", "rotate-keys")
DEBUG_IMAGES = (
    ("netshoot", "nicolaka/netshoot:v0.13"), ("toolbox", "busybox:1.36.1"), ("psql", "postgres:16.4"),
    ("curl", "curlimages/curl:8.10.1"), ("debug", "ubuntu:24.04"),
)  # fmt: skip
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
# Replica counts of Deployments and how common each is: most are small, a few are very large (mean about 8).
REPLICAS = (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 100, 200)
REPLICA_WEIGHTS = (10, 20, 22, 15, 10, 8, 5, 5, 2.5, 1.5, 0.8, 0.2)
# Past rollouts of a Deployment (each leaves a ReplicaSet scaled to 0 behind), mean about 1.4.
ROLLOUTS = (0, 1, 2, 3, 5, 10)
ROLLOUT_WEIGHTS = (40, 28, 15, 9, 5, 3)
# Shares of the workload pods (those not on every node) by kind; Deployments take the rest.
STATEFUL_SHARE = 0.02
JOB_SHARE = 0.03
BARE_SHARE = 0.01
LEGACY_SHARE = 0.005
DEPLOYMENTS_PER_NAMESPACE = 40
MAX_TEAM_NAMESPACES = 500
CONTROL_PLANE_NODES = 3
CPU_REQUESTS = (5, 10, 25, 50, 100)  # millicores
MEMORY_REQUESTS = (16, 32, 64, 128, 256)  # MiB
# Requests stay within these millicores and MiB per node (of 8 CPUs and 16 GiB), so a scheduler that counted
# requests would still fit every pod.
NODE_CPU_BUDGET = 6000
NODE_MEMORY_BUDGET = 12000


# -- the plan -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerPlan:
    name: str
    image: str
    port: int = 0
    cpu_millis: int = 10
    memory_mib: int = 32
    env: Labels = ()
    command: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TemplatePlan:
    """A pod template: what the workload's pods (or a bare or static pod) look like."""

    labels: Labels
    containers: tuple[ContainerPlan, ...]
    annotations: Labels = ()
    restart_policy: str = "Always"
    host_network: bool = False
    priority_class: str = ""
    tolerate_everything: bool = False


@dataclass(frozen=True, slots=True)
class NamespacePlan:
    name: str
    labels: Labels = ()
    # Team namespaces the churn driver may delete; system ones (and those holding DaemonSets) never.
    churnable: bool = False


@dataclass(frozen=True, slots=True)
class DeploymentPlan:
    namespace: str
    name: str
    labels: Labels
    selector: Labels
    replicas: int
    # Every template the Deployment has had, oldest first; the last is the current one, each earlier one is a
    # past rollout whose ReplicaSet is kept at 0 replicas.
    history: tuple[TemplatePlan, ...]

    @property
    def template(self) -> TemplatePlan:
        return self.history[-1]

    @property
    def rollouts(self) -> int:
        return len(self.history) - 1


@dataclass(frozen=True, slots=True)
class DaemonSetPlan:
    namespace: str
    name: str
    labels: Labels
    selector: Labels
    template: TemplatePlan


@dataclass(frozen=True, slots=True)
class StatefulSetPlan:
    namespace: str
    name: str
    labels: Labels
    selector: Labels
    replicas: int
    service: str
    template: TemplatePlan


@dataclass(frozen=True, slots=True)
class ReplicationControllerPlan:
    namespace: str
    name: str
    replicas: int
    template: TemplatePlan


@dataclass(frozen=True, slots=True)
class ServicePort:
    name: str
    port: int
    target_port: int


@dataclass(frozen=True, slots=True)
class ServicePlan:
    namespace: str
    name: str
    labels: Labels
    # () is a Service without a selector (its endpoints are managed by hand): it matches no pod.
    selector: Labels
    ports: tuple[ServicePort, ...]
    headless: bool = False


@dataclass(frozen=True, slots=True)
class CronJobPlan:
    namespace: str
    name: str
    labels: Labels
    schedule: str
    suspend: bool
    template: TemplatePlan


@dataclass(frozen=True, slots=True)
class JobPlan:
    namespace: str
    name: str
    labels: Labels
    template: TemplatePlan
    # A finished Job's pod has Succeeded; an unfinished one runs for as long as the cluster does.
    finished: bool
    # The CronJob that made it ("" for a Job created by hand).
    cronjob: str = ""


@dataclass(frozen=True, slots=True)
class PodPlan:
    """A bare pod: created by a person, owned by nothing, scheduled like any other."""

    namespace: str
    name: str
    template: TemplatePlan


@dataclass(frozen=True, slots=True)
class StaticPodPlan:
    """A manifest in a node's kubelet directory; the API shows it as the mirror pod `<name>-<node>`."""

    node: str
    namespace: str
    name: str
    template: TemplatePlan

    @property
    def mirror_name(self) -> str:
        return f"{self.name}-{self.node}"


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    seed: int
    nodes: int
    pods_per_node: int
    control_planes: tuple[str, ...]
    namespaces: tuple[NamespacePlan, ...]
    daemonsets: tuple[DaemonSetPlan, ...]
    deployments: tuple[DeploymentPlan, ...]
    statefulsets: tuple[StatefulSetPlan, ...]
    replication_controllers: tuple[ReplicationControllerPlan, ...]
    services: tuple[ServicePlan, ...]
    cronjobs: tuple[CronJobPlan, ...]
    jobs: tuple[JobPlan, ...]
    bare_pods: tuple[PodPlan, ...]
    static_pods: tuple[StaticPodPlan, ...]

    def node_names(self) -> list[str]:
        return [node_name(i) for i in range(1, self.nodes + 1)]

    def expected_pods(self) -> int:
        """Pods the built cluster holds once every controller has caught up."""
        return (
            sum(d.replicas for d in self.deployments)
            + len(self.daemonsets) * self.nodes
            + sum(s.replicas for s in self.statefulsets)
            + sum(r.replicas for r in self.replication_controllers)
            + len(self.jobs)
            + len(self.bare_pods)
            + len(self.static_pods)
        )

    def composition(self) -> dict[str, int]:
        """Object and pod counts by kind, for reports and progress displays."""
        return {
            "nodes": self.nodes,
            "namespaces": len(self.namespaces),
            "deployments": len(self.deployments),
            "deployment_pods": sum(d.replicas for d in self.deployments),
            "old_replicasets": sum(d.rollouts for d in self.deployments),
            "daemonsets": len(self.daemonsets),
            "daemonset_pods": len(self.daemonsets) * self.nodes,
            "statefulsets": len(self.statefulsets),
            "statefulset_pods": sum(s.replicas for s in self.statefulsets),
            "replication_controllers": len(self.replication_controllers),
            "replication_controller_pods": sum(r.replicas for r in self.replication_controllers),
            "services": len(self.services),
            "services_without_selector": sum(1 for s in self.services if not s.selector),
            "cronjobs": len(self.cronjobs),
            "jobs": len(self.jobs),
            "jobs_finished": sum(1 for j in self.jobs if j.finished),
            "bare_pods": len(self.bare_pods),
            "static_pods": len(self.static_pods),
            "pods": self.expected_pods(),
        }

    def digest(self) -> str:
        """A stable fingerprint of the whole plan: equal plans give equal digests in any process."""
        return hashlib.sha256(orjson.dumps(self, option=orjson.OPT_SORT_KEYS)).hexdigest()


def node_name(index: int) -> str:
    """The name `SimServer.add_nodes` gives node number `index` (1-based)."""
    return f"node-{index}"


def as_dict(labels: Labels) -> dict[str, str]:
    return dict(labels)


# -- planning -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Budget:
    """How many pods of each kind a plan holds, derived from its size alone."""

    agents: int  # DaemonSets, each with a pod on every node
    static_per_node: bool
    control_planes: int
    stateful: int
    jobs: int
    bare: int
    legacy: int
    deployments: int


def _budget(nodes: int, pods_per_node: int) -> _Budget:
    agents = min(len(NODE_AGENTS), pods_per_node // 3)
    static_per_node = pods_per_node >= 2
    control_planes = min(CONTROL_PLANE_NODES, nodes) if pods_per_node >= 8 else 0
    infra = nodes * (agents + int(static_per_node)) + control_planes * len(CONTROL_PLANE)
    workload = max(0, nodes * pods_per_node - infra)
    # Small clusters still get one of each kind, so tests see every kind.
    enough = workload >= 40
    stateful = max(3 if enough else 0, round(workload * STATEFUL_SHARE))
    jobs = max(3 if enough else 0, round(workload * JOB_SHARE))
    bare = max(1 if enough else 0, round(workload * BARE_SHARE))
    legacy = max(2 if enough else 0, round(workload * LEGACY_SHARE))
    deployments = max(0, workload - stateful - jobs - bare - legacy)
    return _Budget(agents, static_per_node, control_planes, stateful, jobs, bare, legacy, deployments)


class _Planner:
    """Draws a plan; every random choice goes through `self.rng`, in a fixed order."""

    def __init__(self, nodes: int, pods_per_node: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.nodes = nodes
        self.pods_per_node = pods_per_node
        self.seed = seed
        self.budget = _budget(nodes, pods_per_node)
        self.cpu = [c for c in CPU_REQUESTS if c * pods_per_node <= NODE_CPU_BUDGET] or [CPU_REQUESTS[0]]
        self.memory = [m for m in MEMORY_REQUESTS if m * pods_per_node <= NODE_MEMORY_BUDGET] or [MEMORY_REQUESTS[0]]
        self.namespaces: list[NamespacePlan] = []
        self.deployments: list[DeploymentPlan] = []
        self.daemonsets: list[DaemonSetPlan] = []
        self.statefulsets: list[StatefulSetPlan] = []
        self.legacy: list[ReplicationControllerPlan] = []
        self.services: list[ServicePlan] = []
        self.cronjobs: list[CronJobPlan] = []
        self.jobs: list[JobPlan] = []
        self.bare: list[PodPlan] = []
        self.static: list[StaticPodPlan] = []
        # Names taken per (namespace, kind), so generated names never collide.
        self._taken: dict[tuple[str, str], set[str]] = {}

    def plan(self) -> ClusterPlan:
        control_planes = tuple(node_name(i) for i in range(1, self.budget.control_planes + 1))
        self._system()
        self._static_pods(control_planes)
        teams = self._team_namespaces()
        remaining = self.budget.deployments - sum(d.replicas for d in self.deployments)
        self._team_deployments(teams, remaining)
        by_namespace: dict[str, list[DeploymentPlan]] = {}
        for deployment in self.deployments:
            by_namespace.setdefault(deployment.namespace, []).append(deployment)
        for i, namespace in enumerate(teams):
            self.team_services(namespace, by_namespace.get(namespace, []), first=i == 0)
        self._statefulsets(teams)
        self._legacy(teams)
        self._jobs(teams)
        self._bare_pods(teams)
        return ClusterPlan(
            seed=self.seed,
            nodes=self.nodes,
            pods_per_node=self.pods_per_node,
            control_planes=control_planes,
            namespaces=tuple(self.namespaces),
            daemonsets=tuple(self.daemonsets),
            deployments=tuple(self.deployments),
            statefulsets=tuple(self.statefulsets),
            replication_controllers=tuple(self.legacy),
            services=tuple(self.services),
            cronjobs=tuple(self.cronjobs),
            jobs=tuple(self.jobs),
            bare_pods=tuple(self.bare),
            static_pods=tuple(self.static),
        )

    # -- helpers ------------------------------------------------------------------------------------------------

    def unique(self, namespace: str, kind: str, wanted: str) -> str:
        taken = self._taken.setdefault((namespace, kind), set())
        name, n = wanted, 1
        while name in taken:
            n += 1
            name = f"{wanted}-{n}"
        taken.add(name)
        return name

    def requests(self) -> tuple[int, int]:
        return self.rng.choice(self.cpu), self.rng.choice(self.memory)

    def version(self) -> tuple[int, int, int]:
        return self.rng.randint(1, 3), self.rng.randint(0, 30), self.rng.randint(0, 9)

    def bump(self, version: tuple[int, int, int]) -> tuple[int, int, int]:
        """The next release: mostly a patch, sometimes a minor, rarely a major."""
        major, minor, patch = version
        roll = self.rng.random()
        if roll < 0.7:
            return major, minor, patch + 1
        if roll < 0.95:
            return major, minor + 1, 0
        return major + 1, 0, 0

    # -- infrastructure -----------------------------------------------------------------------------------------

    def _system(self) -> None:
        self.namespaces += [
            NamespacePlan(MONITORING, (("purpose", "observability"),)),
            NamespacePlan(LOGGING, (("purpose", "observability"),)),
        ]
        for agent in NODE_AGENTS[: self.budget.agents]:
            self.daemonsets.append(agent)
        if self.budget.deployments >= 8:
            for deployment, service in SYSTEM_DEPLOYMENTS:
                self.deployments.append(deployment)
                if service is not None:
                    self.services.append(service)
                self.unique(deployment.namespace, "deployment", deployment.name)

    def _static_pods(self, control_planes: Sequence[str]) -> None:
        for node in control_planes:
            for name, template in CONTROL_PLANE:
                self.static.append(StaticPodPlan(node, SYSTEM_NAMESPACE, name, template))
        if self.budget.static_per_node:
            self.static += [kube_proxy(node_name(i)) for i in range(1, self.nodes + 1)]

    # -- teams --------------------------------------------------------------------------------------------------

    def _team_namespaces(self) -> list[str]:
        wanted = round(self.budget.deployments / 8 / DEPLOYMENTS_PER_NAMESPACE)
        count = max(2, min(MAX_TEAM_NAMESPACES, wanted))
        return [self.team_namespace().name for _ in range(count)]

    def team_namespace(self, suffix: str = "") -> NamespacePlan:
        """A team namespace `<team>-<env>[-<suffix>]`, labelled with its team (what makes it churnable)."""
        team, env = self.rng.choice(TEAMS), self.rng.choice(ENVIRONMENTS)
        name = self.unique("", "namespace", f"{team}-{env}-{suffix}" if suffix else f"{team}-{env}")
        labels = ((TEAM, team), ("environment", env), ("istio-injection", self.rng.choice(("enabled", "disabled"))))
        plan = NamespacePlan(name, labels, churnable=True)
        self.namespaces.append(plan)
        return plan

    def _team_deployments(self, namespaces: Sequence[str], pods: int) -> None:
        # Namespace sizes follow a power law: a few teams run most of the cluster.
        weights = [1 / (i + 1) ** 0.6 for i in range(len(namespaces))]
        while pods > 0:
            namespace = self.rng.choices(namespaces, weights)[0]
            pods -= self.add_team_deployment(namespace, pods).replicas

    def add_team_deployment(self, namespace: str, budget: int) -> DeploymentPlan:
        replicas = min(budget, self.rng.choices(REPLICAS, REPLICA_WEIGHTS)[0])
        deployment = self.team_deployment(namespace, replicas)
        self.deployments.append(deployment)
        return deployment

    def team_deployment(self, namespace: str, replicas: int) -> DeploymentPlan:
        """A team's Deployment (also what the churn driver adds to the namespaces it creates)."""
        app = self.rng.choice(APPS)
        component, port, family = self.rng.choice(COMPONENTS)
        name = self.unique(namespace, "deployment", f"{app}-{component}")
        team = namespace.split("-")[0]
        selector = ((NAME, name), (INSTANCE, app))
        labels = (*selector, (PART_OF, app), (COMPONENT, component), (MANAGED_BY, "Helm"), (TEAM, team))
        cpu, memory = self.requests()
        sidecar = self.rng.choice(SIDECARS) if self.rng.random() < 0.25 else None
        scraped = port > 0 and self.rng.random() < 0.5
        version = self.version()
        history = []
        for i in range(self.rng.choices(ROLLOUTS, ROLLOUT_WEIGHTS)[0] + 1):
            if i:
                version = self.bump(version)
            tag = ".".join(str(v) for v in version)
            image = _image(family, team, name, version) if family else f"registry.acme.internal/{team}/{name}:{tag}"
            env = (("LOG_LEVEL", "info"), ("APP_ENV", namespace.rpartition("-")[2]), ("PORT", str(port or 8080)))
            containers = [ContainerPlan(component, image, port, cpu, memory, env)]
            if sidecar is not None:
                containers.append(ContainerPlan(sidecar[0], sidecar[1], 0, 10, 32))
            annotations = (("prometheus.io/scrape", "true"), ("prometheus.io/port", str(port))) if scraped else ()
            template_labels = (*labels[:4], (VERSION, tag))
            history.append(TemplatePlan(template_labels, tuple(containers), annotations))
        return DeploymentPlan(namespace, name, labels, selector, replicas, tuple(history))

    def team_services(self, namespace: str, deployments: Sequence[DeploymentPlan], *, first: bool) -> None:
        """Services of one team namespace; the first one always has a stale and a selector-less Service."""
        served = [d for d in deployments if d.template.containers[0].port]
        for deployment in served:
            if self.rng.random() < 0.8:
                self.services.append(self.service_for(deployment))
        apps: dict[str, list[DeploymentPlan]] = {}
        for deployment in served:
            apps.setdefault(as_dict(deployment.selector)[INSTANCE], []).append(deployment)
        for app, members in apps.items():
            if len(members) > 1 and self.rng.random() < 0.3:
                name = self.unique(namespace, "service", app)
                port = ServicePort("http", 80, members[0].template.containers[0].port)
                self.services.append(ServicePlan(namespace, name, ((PART_OF, app),), ((INSTANCE, app),), (port,)))
        if self.rng.random() < 0.1 or first:
            retired = self.rng.choice(APPS)
            name = self.unique(namespace, "service", f"{retired}-legacy")
            selector = ((NAME, f"{retired}-retired"), (INSTANCE, retired))
            self.services.append(ServicePlan(namespace, name, (), selector, (ServicePort("http", 80, 8080),)))
        if self.rng.random() < 0.1 or first:
            name = self.unique(namespace, "service", self.rng.choice(("external-db", "partner-api", "mainframe")))
            self.services.append(ServicePlan(namespace, name, (), (), (ServicePort("tcp", 5432, 5432),)))

    def service_for(self, deployment: DeploymentPlan) -> ServicePlan:
        """The Service in front of a Deployment, named after it."""
        container = deployment.template.containers[0]
        name = self.unique(deployment.namespace, "service", deployment.name)
        kind = "grpc" if container.port == 9090 else "http"
        port = ServicePort(kind, 9090 if kind == "grpc" else 80, container.port)
        labels = tuple(kv for kv in deployment.labels if kv[0] != MANAGED_BY)
        return ServicePlan(deployment.namespace, name, labels, deployment.selector, (port,))

    def _statefulsets(self, namespaces: Sequence[str]) -> None:
        pods = self.budget.stateful
        while pods > 0:
            namespace = self.rng.choice(namespaces)
            kind, image, port = self.rng.choice(DATABASES)
            replicas = min(pods, self.rng.choice((1, 3, 3, 3, 5)))
            name = self.unique(namespace, "statefulset", kind)
            service = self.unique(namespace, "service", f"{name}-headless")
            selector = ((NAME, kind), (INSTANCE, name))
            labels = (*selector, (COMPONENT, "database"))
            cpu, memory = self.requests()
            tag = f"{self.rng.randint(3, 16)}.{self.rng.randint(0, 9)}"
            template = TemplatePlan(labels, (ContainerPlan(kind, f"{image}:{tag}", port, cpu, memory),))
            self.statefulsets.append(StatefulSetPlan(namespace, name, labels, selector, replicas, service, template))
            ports = (ServicePort(kind, port, port),)
            self.services.append(ServicePlan(namespace, service, labels, selector, ports, headless=True))
            pods -= replicas

    def _legacy(self, namespaces: Sequence[str]) -> None:
        pods = self.budget.legacy
        while pods > 0:
            namespace = self.rng.choice(namespaces)
            app = self.rng.choice(APPS)
            name = self.unique(namespace, "replicationcontroller", f"legacy-{app}")
            replicas = min(pods, 2)
            labels = (("app", name), ("tier", "legacy"))
            template = TemplatePlan(labels, (ContainerPlan("app", "nginx:1.14.2", 80, 10, 32),))
            self.legacy.append(ReplicationControllerPlan(namespace, name, replicas, template))
            pods -= replicas

    def _jobs(self, namespaces: Sequence[str]) -> None:
        """CronJobs with a few finished Jobs each, then Jobs created by hand, finished or still running."""
        pods = self.budget.jobs
        # At least one Job created by hand still runs, so even a small cluster has both kinds.
        history = pods - 1
        for namespace in namespaces:
            if history <= 0 or self.rng.random() >= 0.3:
                continue
            cronjob = self._cronjob(namespace)
            minute = 28_900_000 + self.rng.randrange(100_000)
            for i in range(min(history, self.rng.randint(1, 3))):
                name = self.unique(namespace, "job", f"{cronjob.name}-{minute + 60 * i}")
                self.jobs.append(JobPlan(namespace, name, cronjob.labels, cronjob.template, True, cronjob.name))
                pods -= 1
                history -= 1
        first = True
        while pods > 0:
            namespace = self.rng.choice(namespaces)
            app, task = self.rng.choice(APPS), self.rng.choice(TASKS)
            name = self.unique(namespace, "job", f"{app}-{task}-{self.rng.randrange(1, 1000)}")
            labels = ((NAME, f"{app}-{task}"), (INSTANCE, app), (COMPONENT, "batch"))
            finished = self.rng.random() < 0.7 and not first
            self.jobs.append(JobPlan(namespace, name, labels, self._batch_template(app, task), finished))
            pods -= 1
            first = False

    def _cronjob(self, namespace: str) -> CronJobPlan:
        app, task = self.rng.choice(APPS), self.rng.choice(TASKS)
        name = self.unique(namespace, "cronjob", f"{app}-{task}")
        labels = ((NAME, name), (INSTANCE, app), (COMPONENT, "batch"))
        # Suspended, or due once a year: a generated CronJob never fires while a test or benchmark runs.
        suspend = self.rng.random() < 0.6
        plan = CronJobPlan(namespace, name, labels, "0 0 1 1 *", suspend, self._batch_template(app, task))
        self.cronjobs.append(plan)
        return plan

    def _batch_template(self, app: str, task: str) -> TemplatePlan:
        image = f"registry.acme.internal/batch/{app}-{task}:{self.rng.randint(1, 40)}.0.0"
        container = ContainerPlan(task, image, 0, *self.requests(), command=("/bin/run", task))
        return TemplatePlan(((NAME, f"{app}-{task}"), (INSTANCE, app)), (container,), restart_policy="Never")

    def _bare_pods(self, namespaces: Sequence[str]) -> None:
        for _ in range(self.budget.bare):
            namespace = self.rng.choice((*namespaces, "default"))
            tool, image = self.rng.choice(DEBUG_IMAGES)
            name = self.unique(namespace, "pod", f"{tool}-{self.rng.choice(USERS)}")
            labels = (("run", name), ("purpose", "debug"))
            container = ContainerPlan(tool, image, 0, 10, 32, command=("sleep", "infinity"))
            self.bare.append(PodPlan(namespace, name, TemplatePlan(labels, (container,))))


@dataclass(frozen=True, slots=True)
class TeamPlan:
    """One more team namespace with its Deployments and Services (what the churn driver creates)."""

    namespace: NamespacePlan
    deployments: tuple[DeploymentPlan, ...]
    services: tuple[ServicePlan, ...]


def plan_team_namespace(seed: int, pods: int, suffix: str = "", pods_per_node: int = 30) -> TeamPlan:
    """A team namespace named `<team>-<env>-<suffix>` holding about `pods` Deployment pods, drawn from `seed`."""
    planner = _Planner(1, pods_per_node, seed)
    namespace = planner.team_namespace(suffix)
    remaining = pods
    while remaining > 0:
        remaining -= planner.add_team_deployment(namespace.name, remaining).replicas
    planner.team_services(namespace.name, planner.deployments, first=False)
    return TeamPlan(namespace, tuple(planner.deployments), tuple(planner.services))


def kube_proxy(node: str) -> StaticPodPlan:
    """The static kube-proxy pod every node of a generated cluster runs."""
    return StaticPodPlan(node, SYSTEM_NAMESPACE, "kube-proxy", KUBE_PROXY)


def plan_cluster(nodes: int, pods_per_node: int, seed: int) -> ClusterPlan:
    """The cluster `nodes` x `pods_per_node` pods look like for `seed`; equal arguments give an equal plan."""
    if nodes < 1 or pods_per_node < 1:
        raise ValueError("a cluster needs at least one node and one pod per node")
    return _Planner(nodes, pods_per_node, seed).plan()


def _image(family: str, team: str, name: str, version: tuple[int, int, int]) -> str:
    """A public image for well-known components, with a version line of its own derived from the release."""
    major, minor, patch = version
    if family == "nginx":
        return f"nginx:1.{25 + minor % 3}.{patch}"
    if family == "envoy":
        return f"envoyproxy/envoy:v1.{28 + minor % 4}.{patch}"
    if family == "redis":
        return f"redis:7.{minor % 5}.{patch}"
    return f"registry.acme.internal/{team}/{name}:{major}.{minor}.{patch}"


def _agent(namespace: str, name: str, image: str, labels: Labels, *, host_network: bool, port: int) -> DaemonSetPlan:
    selector = labels[:1]
    template = TemplatePlan(
        labels,
        (ContainerPlan(name, image, port, 25, 64),),
        host_network=host_network,
        priority_class="system-node-critical",
        tolerate_everything=True,
    )
    return DaemonSetPlan(namespace, name, labels, selector, template)


def _system_deployment(
    namespace: str, name: str, image: str, replicas: int, labels: Labels, port: int, service: str
) -> tuple[DeploymentPlan, ServicePlan | None]:
    selector = labels[:1]
    container = ContainerPlan(name, image, port, 100, 128)
    template = TemplatePlan(labels, (container,), priority_class="system-cluster-critical")
    deployment = DeploymentPlan(namespace, name, labels, selector, replicas, (template,))
    if not service:
        return deployment, None
    return deployment, ServicePlan(namespace, service, labels, selector, (ServicePort("http", port, port),))


# The per-node agents: together they give every node three DaemonSet pods.
NODE_AGENTS = (
    _agent(SYSTEM_NAMESPACE, "calico-node", "docker.io/calico/node:v3.29.1", (("k8s-app", "calico-node"),),
           host_network=True, port=9091),
    _agent(MONITORING, "node-exporter", "quay.io/prometheus/node-exporter:v1.8.2",
           ((NAME, "node-exporter"), (PART_OF, "kube-prometheus")), host_network=True, port=9100),
    _agent(LOGGING, "fluent-bit", "cr.fluentbit.io/fluent/fluent-bit:3.2.2",
           ((NAME, "fluent-bit"), (INSTANCE, "fluent-bit")), host_network=False, port=2020),
)  # fmt: skip
SYSTEM_DEPLOYMENTS = (
    _system_deployment(SYSTEM_NAMESPACE, "coredns", "registry.k8s.io/coredns/coredns:v1.11.3", 2,
                       (("k8s-app", "kube-dns"),), 53, "kube-dns"),
    _system_deployment(SYSTEM_NAMESPACE, "metrics-server", "registry.k8s.io/metrics-server/metrics-server:v0.7.2", 1,
                       (("k8s-app", "metrics-server"),), 10250, "metrics-server"),
    _system_deployment(MONITORING, "kube-state-metrics",
                       "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.13.0", 1,
                       ((NAME, "kube-state-metrics"), (PART_OF, "kube-prometheus")), 8080, "kube-state-metrics"),
)  # fmt: skip


def _control_plane(name: str, image: str, port: int) -> tuple[str, TemplatePlan]:
    labels = (("component", name), ("tier", "control-plane"))
    container = ContainerPlan(name, f"registry.k8s.io/{image}", port, 100, 256)
    return name, TemplatePlan(labels, (container,), host_network=True, priority_class="system-node-critical")


CONTROL_PLANE = (
    _control_plane("etcd", "etcd:3.5.16-0", 2381),
    _control_plane("kube-apiserver", f"kube-apiserver:{KUBE_VERSION}", 6443),
    _control_plane("kube-controller-manager", f"kube-controller-manager:{KUBE_VERSION}", 10257),
    _control_plane("kube-scheduler", f"kube-scheduler:{KUBE_VERSION}", 10259),
)
KUBE_PROXY = TemplatePlan(
    (("component", "kube-proxy"), ("tier", "node")),
    (ContainerPlan("kube-proxy", f"registry.k8s.io/kube-proxy:{KUBE_VERSION}", 10249, 100, 64),),
    host_network=True,
    priority_class="system-node-critical",
)


# -- objects --------------------------------------------------------------------------------------------------------

TEMPLATE_HASH = "pod-template-hash"
JOB_NAME = "batch.kubernetes.io/job-name"
# The built-in PriorityClasses' values, which the Priority admission plugin copies into pods.
PRIORITIES = {"system-node-critical": 2_000_001_000, "system-cluster-critical": 2_000_000_000}
CONTROL_PLANE_ROLE = "node-role.kubernetes.io/control-plane"


def container_object(container: ContainerPlan) -> JSON:
    obj: JSON = {
        "name": container.name,
        "image": container.image,
        "resources": {
            "requests": {"cpu": f"{container.cpu_millis}m", "memory": f"{container.memory_mib}Mi"},
            "limits": {"memory": f"{container.memory_mib * 2}Mi"},
        },
    }
    if container.command:
        obj["command"] = list(container.command)
    if container.port:
        obj["ports"] = [{"name": "http" if container.port != 9090 else "grpc", "containerPort": container.port}]
    if container.env:
        obj["env"] = [{"name": k, "value": v} for k, v in container.env]
    return obj


def template_object(template: TemplatePlan) -> JSON:
    """A pod template as a person (or Helm) writes it; the server adds the defaults."""
    spec: JSON = {
        "containers": [container_object(c) for c in template.containers],
        "restartPolicy": template.restart_policy,
    }
    if template.host_network:
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    if template.priority_class:
        spec["priorityClassName"] = template.priority_class
        spec["priority"] = PRIORITIES[template.priority_class]
    if template.tolerate_everything:
        spec["tolerations"] = [{"operator": "Exists"}]
    meta: JSON = {"labels": as_dict(template.labels)}
    if template.annotations:
        meta["annotations"] = as_dict(template.annotations)
    return {"metadata": meta, "spec": spec}


def namespace_object(plan: NamespacePlan) -> JSON:
    return {"metadata": {"name": plan.name, "labels": as_dict(plan.labels)}}


def deployment_object(plan: DeploymentPlan) -> JSON:
    instance = as_dict(plan.labels).get(INSTANCE, plan.name)
    return {
        "metadata": {
            "name": plan.name,
            "labels": as_dict(plan.labels),
            "annotations": {"meta.helm.sh/release-name": instance, "meta.helm.sh/release-namespace": plan.namespace},
        },
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": as_dict(plan.selector)},
            "template": template_object(plan.template),
        },
    }


def daemonset_object(plan: DaemonSetPlan) -> JSON:
    return {
        "metadata": {"name": plan.name, "labels": as_dict(plan.labels)},
        "spec": {"selector": {"matchLabels": as_dict(plan.selector)}, "template": template_object(plan.template)},
    }


def statefulset_object(plan: StatefulSetPlan) -> JSON:
    return {
        "metadata": {"name": plan.name, "labels": as_dict(plan.labels)},
        "spec": {
            "replicas": plan.replicas,
            "serviceName": plan.service,
            "selector": {"matchLabels": as_dict(plan.selector)},
            "template": template_object(plan.template),
        },
    }


def replication_controller_object(plan: ReplicationControllerPlan) -> JSON:
    return {
        "metadata": {"name": plan.name},
        "spec": {"replicas": plan.replicas, "template": template_object(plan.template)},
    }


def service_object(plan: ServicePlan) -> JSON:
    spec: JSON = {
        "ports": [{"name": p.name, "port": p.port, "targetPort": p.target_port} for p in plan.ports],
    }
    if plan.selector:
        spec["selector"] = as_dict(plan.selector)
    if plan.headless:
        spec["clusterIP"] = "None"
    return {"metadata": {"name": plan.name, "labels": as_dict(plan.labels)}, "spec": spec}


def cronjob_object(plan: CronJobPlan) -> JSON:
    return {
        "metadata": {"name": plan.name, "labels": as_dict(plan.labels)},
        "spec": {
            "schedule": plan.schedule,
            "suspend": plan.suspend,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {"backoffLimit": 2, "template": template_object(plan.template)}},
        },
    }


def job_object(plan: JobPlan, owner: JSON | None) -> JSON:
    meta: JSON = {"name": plan.name, "labels": as_dict(plan.labels)}
    if owner is not None:
        meta["ownerReferences"] = [owner]
    template = template_object(plan.template)
    if not plan.finished:
        # A batch run that outlives the cluster: its container never exits.
        for container in template["spec"]["containers"]:
            container["command"] = ["sleep", "infinity"]
    return {"metadata": meta, "spec": {"backoffLimit": 2, "template": template}}


def static_pod_manifest(plan: StaticPodPlan) -> JSON:
    """The manifest file a node's kubelet reads; it shows in the API as the mirror pod `<name>-<node>`."""
    body = template_object(plan.template)
    body["metadata"] |= {"name": plan.name, "namespace": plan.namespace}
    return body


def add_static_pod(server: SimServer, plan: StaticPodPlan) -> str:
    """Put a static pod manifest on its node; the kubelet creates (and keeps) its mirror pod."""
    return static_pods(server.registry).add(plan.node, static_pod_manifest(plan))


def pod_object(plan: PodPlan) -> JSON:
    body = template_object(plan.template)
    body["metadata"]["name"] = plan.name
    return body


def owner_reference(kind: str, api_version: str, stored: Stored) -> JSON:
    return {"apiVersion": api_version, "kind": kind, "name": stored.name, "uid": stored.uid,
            "controller": True, "blockOwnerDeletion": True}  # fmt: skip


def old_replicaset_object(plan: DeploymentPlan, revision: int, deployment: Stored) -> JSON:
    """The ReplicaSet a past rollout left behind: revision `revision` (1-based) of the Deployment, scaled to 0.

    It is what the Deployment controller would have made for that template (name `<deployment>-<hash>`, the
    `pod-template-hash` label on itself, its selector and its template, the revision annotations, a controller
    reference to the Deployment), written directly because replaying rollouts on a large cluster would cost
    every pod several times over.
    """
    template = template_object(plan.history[revision - 1])
    # Hashed as stored, defaults included, which is what the Deployment controller hashes.
    defaults.pod_spec(template["spec"])
    template_hash = compute_hash(template)
    template["metadata"]["labels"][TEMPLATE_HASH] = template_hash
    labels = as_dict(plan.history[revision - 1].labels) | {TEMPLATE_HASH: template_hash}
    return {
        "metadata": {
            "name": f"{plan.name}-{template_hash}",
            "labels": labels,
            "annotations": {
                "deployment.kubernetes.io/revision": str(revision),
                "deployment.kubernetes.io/desired-replicas": str(plan.replicas),
                "deployment.kubernetes.io/max-replicas": str(plan.replicas + max(1, -(-plan.replicas // 4))),
            },
            "ownerReferences": [owner_reference("Deployment", "apps/v1", deployment)],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": as_dict(plan.selector) | {TEMPLATE_HASH: template_hash}},
            "template": template,
        },
    }


# -- building -------------------------------------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]

# The builder gives the event loop a turn after this many writes, so API clients and controllers run during a
# build. A count rather than a time: the controllers then see the same writes between turns in every run, which
# keeps a seed's cluster (pod placement included) the same from run to run.
YIELD_EVERY = 32
# How often the wait for pods reports progress, and how long it waits for progress once the controllers are idle.
READY_POLL_SECONDS = 1.0
READY_STALL_SECONDS = 30.0
READY_PHASES = ("Running", "Succeeded")


@dataclass(frozen=True, slots=True)
class BuildReport:
    seconds: float
    # Seconds spent in each phase, in order.
    phases: tuple[tuple[str, float], ...]
    # Objects the builder wrote itself (the controllers wrote the rest).
    written: int
    pods_expected: int
    # Pods Running (or Succeeded, for finished Jobs) when the build returned.
    pods_ready: int
    # Objects per storage once built.
    objects: dict[str, int]

    @property
    def ready(self) -> bool:
        return self.pods_ready >= self.pods_expected


def _resource(group: str, plural: str) -> ResourceType:
    found = lookup(group, "v1", plural)
    if found is None:
        raise LookupError(f"{plural} is not served")
    return found


NODES = _resource("", "nodes")
NAMESPACES = _resource("", "namespaces")
PODS = _resource("", "pods")
SERVICES = _resource("", "services")
RCS = _resource("", "replicationcontrollers")
DEPLOYMENTS = _resource("apps", "deployments")
REPLICASETS = _resource("apps", "replicasets")
DAEMONSETS = _resource("apps", "daemonsets")
STATEFULSETS = _resource("apps", "statefulsets")
JOBS = _resource("batch", "jobs")
CRONJOBS = _resource("batch", "cronjobs")


def exit_successfully(registry: Registry, pod: Stored) -> Stored:
    """Report a running pod's containers as exited 0 (phase Succeeded), as its kubelet would once they finish."""
    obj = pod.decode()
    status = obj.get("status") or {}
    stamp = rfc3339(registry.clock())
    statuses = []
    for previous in status.get("containerStatuses") or []:
        started = ((previous.get("state") or {}).get("running") or {}).get("startedAt") or stamp
        terminated: JSON = {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": stamp}
        if previous.get("containerID"):
            terminated["containerID"] = previous["containerID"]
        statuses.append({**previous, "state": {"terminated": terminated}, "ready": False, "started": False})
    completed = {"Ready": "PodCompleted", "ContainersReady": "PodCompleted", "PodReadyToStartContainers": ""}
    conditions = []
    for condition in status.get("conditions") or []:
        reason = completed.get(condition.get("type"))
        if reason is not None:
            condition = {**condition, "status": "False", "lastTransitionTime": stamp}
            if reason:
                condition["reason"] = reason
        conditions.append(condition)
    status = {**status, "phase": "Succeeded", "conditions": conditions, "containerStatuses": statuses}
    body = {"metadata": {"resourceVersion": str(pod.rv)}, "status": status}
    return registry.update(PODS, pod.namespace, pod.name, body, subresource="status").stored


def ready_pods(registry: Registry) -> int:
    """Pods whose containers run (or, for a finished Job, have run to completion)."""
    return sum(1 for pod in registry.bucket(PODS).items.values() if pod.field("status.phase") in READY_PHASES)


class _ReadyCount:
    """`ready_pods`, kept current from the store's changes, so waiting on 150,000 pods never rescans them."""

    def __init__(self, registry: Registry) -> None:
        self.store = registry.store
        self.value = ready_pods(registry)

    def __enter__(self) -> _ReadyCount:
        self.store.observers.append(self._observe)
        return self

    def __exit__(self, *_: object) -> None:
        self.store.observers.remove(self._observe)

    def _observe(self, bucket: Bucket, change: Change) -> None:
        if bucket.res.storage_name != PODS.storage_name:
            return
        was = change.prev is not None and change.prev.field("status.phase") in READY_PHASES
        now = change.type != DELETED and change.obj.field("status.phase") in READY_PHASES
        self.value += int(now) - int(was)


class _Builder:
    """Writes a plan phase by phase, yielding to the event loop between slices of work."""

    def __init__(self, server: SimServer, plan: ClusterPlan, progress: Progress | None) -> None:
        self.server = server
        self.registry = server.registry
        self.plan = plan
        self.progress = progress
        self.written = 0
        self.phases: list[tuple[str, float]] = []
        self.ready = _ReadyCount(self.registry)

    async def build(self) -> BuildReport:
        started = time.perf_counter()
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("nodes", self._nodes),
            ("namespaces", self._namespaces),
            ("static pods", self._static_pods),
            ("daemonsets", self._daemonsets),
            ("deployments", self._deployments),
            ("statefulsets", self._statefulsets),
            ("replicationcontrollers", self._replication_controllers),
            ("services", self._services),
            ("jobs", self._jobs),
            ("bare pods", self._bare_pods),
            ("ready", self._wait_ready),
            ("finished jobs", self._finish_jobs),
        ]
        with self.ready:
            for phase, step in steps:
                phase_start = time.perf_counter()
                await step()
                self.phases.append((phase, time.perf_counter() - phase_start))
        return BuildReport(
            seconds=time.perf_counter() - started,
            phases=tuple(self.phases),
            written=self.written,
            pods_expected=self.plan.expected_pods(),
            pods_ready=self.ready.value,
            objects={name: len(bucket) for name, bucket in self.registry.store.buckets.items() if len(bucket)},
        )

    # -- pacing -------------------------------------------------------------------------------------------------

    async def _wrote(self, phase: str, done: int, total: int) -> None:
        self.written += 1
        if done % YIELD_EVERY == 0 or done == total:
            self._report(phase, done, total)
            await asyncio.sleep(0)

    def _report(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)

    def _create(self, res: ResourceType, namespace: str, body: JSON) -> Stored:
        """Create `body`, or take the object already there (building twice onto one server adds nothing)."""
        try:
            return self.registry.create(res, namespace, body).stored
        except APIError as err:
            if err.code != 409:
                raise
            return self.registry.get(res, namespace, body["metadata"]["name"])

    # -- phases -------------------------------------------------------------------------------------------------

    async def _nodes(self) -> None:
        total = self.plan.nodes
        for i in range(1, total + 1):
            self.server.add_nodes(1, start=i)
            await self._wrote("nodes", i, total)
        for name in self.plan.control_planes:
            patch = {"metadata": {"labels": {CONTROL_PLANE_ROLE: ""}}}
            self.registry.patch(NODES, "", name, "merge", patch)

    async def _namespaces(self) -> None:
        total = len(self.plan.namespaces)
        for i, namespace in enumerate(self.plan.namespaces, 1):
            self._create(NAMESPACES, "", namespace_object(namespace))
            await self._wrote("namespaces", i, total)

    async def _static_pods(self) -> None:
        total = len(self.plan.static_pods)
        for i, static in enumerate(self.plan.static_pods, 1):
            add_static_pod(self.server, static)
            await self._wrote("static pods", i, total)

    async def _daemonsets(self) -> None:
        total = len(self.plan.daemonsets)
        for i, daemonset in enumerate(self.plan.daemonsets, 1):
            self._create(DAEMONSETS, daemonset.namespace, daemonset_object(daemonset))
            await self._wrote("daemonsets", i, total)

    async def _deployments(self) -> None:
        total = len(self.plan.deployments)
        for i, deployment in enumerate(self.plan.deployments, 1):
            # The Deployment and its past ReplicaSets are written with no yield between them, so its controller
            # first sees it with its whole history and numbers the current ReplicaSet after the past ones.
            stored = self._create(DEPLOYMENTS, deployment.namespace, deployment_object(deployment))
            for revision in range(1, deployment.rollouts + 1):
                self._create(REPLICASETS, deployment.namespace, old_replicaset_object(deployment, revision, stored))
            await self._wrote("deployments", i, total)

    async def _statefulsets(self) -> None:
        total = len(self.plan.statefulsets)
        for i, statefulset in enumerate(self.plan.statefulsets, 1):
            self._create(STATEFULSETS, statefulset.namespace, statefulset_object(statefulset))
            await self._wrote("statefulsets", i, total)

    async def _replication_controllers(self) -> None:
        total = len(self.plan.replication_controllers)
        for i, rc in enumerate(self.plan.replication_controllers, 1):
            self._create(RCS, rc.namespace, replication_controller_object(rc))
            await self._wrote("replicationcontrollers", i, total)

    async def _services(self) -> None:
        total = len(self.plan.services)
        for i, service in enumerate(self.plan.services, 1):
            self._create(SERVICES, service.namespace, service_object(service))
            await self._wrote("services", i, total)

    async def _jobs(self) -> None:
        cronjobs: dict[tuple[str, str], Stored] = {}
        total = len(self.plan.cronjobs) + len(self.plan.jobs)
        done = 0
        for cronjob in self.plan.cronjobs:
            cronjobs[(cronjob.namespace, cronjob.name)] = self._create(
                CRONJOBS, cronjob.namespace, cronjob_object(cronjob)
            )
            done += 1
            await self._wrote("jobs", done, total)
        for job in self.plan.jobs:
            owner = None
            if job.cronjob:
                owner = owner_reference("CronJob", "batch/v1", cronjobs[(job.namespace, job.cronjob)])
            self._create(JOBS, job.namespace, job_object(job, owner))
            done += 1
            await self._wrote("jobs", done, total)

    async def _bare_pods(self) -> None:
        total = len(self.plan.bare_pods)
        for i, pod in enumerate(self.plan.bare_pods, 1):
            self._create(PODS, pod.namespace, pod_object(pod))
            await self._wrote("bare pods", i, total)

    async def _finish_jobs(self) -> None:
        """Let the containers of finished Jobs exit 0, as their batch work would have; the Job controller then
        counts the success and completes the Job. The pods stay, Succeeded, as a real Job's pods do."""
        finished = [job for job in self.plan.jobs if job.finished]
        for i, job in enumerate(finished, 1):
            for pod in self.registry.iter_objects(PODS, job.namespace):
                if pod.labels.get(JOB_NAME) == job.name and pod.field("status.phase") == "Running":
                    exit_successfully(self.registry, pod)
            await self._wrote("finished jobs", i, len(finished))
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        """Let the controllers run until every planned pod runs, or until they are idle and nothing moves."""
        if self.server.manager is None:
            return
        total = self.plan.expected_pods()
        loop = asyncio.get_running_loop()
        best, best_at = -1, loop.time()
        while True:
            try:
                async with asyncio.timeout(READY_POLL_SECONDS):
                    await self.server.settle()
                idle = True
            except TimeoutError:
                idle = False
            ready = self.ready.value
            self._report("ready", ready, total)
            if ready > best:
                best, best_at = ready, loop.time()
            if idle and ready >= total:
                return
            if idle and loop.time() - best_at > READY_STALL_SECONDS:
                return
            if idle:
                # Idle but not done: what remains waits on timers (grace periods, ordered StatefulSet starts).
                await asyncio.sleep(READY_POLL_SECONDS / 10)


async def build_cluster(server: SimServer, plan: ClusterPlan, progress: Progress | None = None) -> BuildReport:
    """Write `plan` into `server` and wait for its controllers to make it run.

    Nodes, namespaces, static pods, workloads, Services, Jobs and bare pods are written through the registry
    (the same validation and watch events as API clients get); the controllers then create ReplicaSets and pods,
    schedule and start them and fill EndpointSlices. The build yields to the event loop every few milliseconds,
    so the server keeps answering while it builds; `progress(phase, done, total)` is called as it goes.
    """
    report = await _Builder(server, plan, progress).build()
    # Everything built so far lives as long as the cluster: keep it out of the cyclic GC's generations, whose full
    # collections otherwise walk the whole heap and pause the server for up to a second at 150,000 pods (unless
    # the server was told to leave the garbage collector alone, `HeapSettings.refreeze_writes` 0).
    if server.heap.settings.refreeze_writes > 0:
        gc.collect()
        gc.freeze()
    return report
