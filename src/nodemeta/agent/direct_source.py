"""Metadata straight from the Kubernetes API, for clusters without a collector ("direct mode").

The agent runs the project's informers itself: this node's pods only (`fieldSelector=spec.nodeName=<node>`, which
the API server indexes), and the objects pods relate to, cluster-wide since they cannot be filtered by node:
Namespaces, Services (for their selectors), and owners as metadata only (Deployments, ReplicaSets, DaemonSets,
ReplicationControllers, StatefulSets, Jobs, CronJobs; PartialObjectMetadata, about a quarter of the bytes) and this
node's Node object (the controller of its mirror pods). Lists are paginated by the informers.

Every change goes through the collector's own pure relation index, subscribed for this one node, and its renderer:
the deltas it returns are exactly what a collector would stream to this node, so both metadata sources fill the
store with identical payloads. Direct mode adds one thing the stream lacks: each owner's controlling owner (so a
Job's CronJob is known), taken from the owners' ownerReferences.

Ready once the informers of the kinds a pod's record needs have their first full list (pods, namespaces,
services, and the Falco set's owners); StatefulSets, Jobs, CronJobs and the Node join when they can be listed,
as in the collector (RBAC may not grant them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog

from nodemeta.agent.metastore import ControllerRef, MetadataSink
from nodemeta.collector.adapters import namespace_info, node_info, owner_info, pod_info, service_info
from nodemeta.collector.model import ObjectInfo, OwnerInfo
from nodemeta.collector.relations import Delta, RelationIndex
from nodemeta.kube import (
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTS,
    JOBS,
    NAMESPACES,
    NODES,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    SERVICES,
    STATEFULSETS,
    ApiClient,
    BaseListener,
    ClientSettings,
    ClusterConfig,
    Informer,
    ReflectorSettings,
    Resource,
    Transport,
    pods_on_node,
)

__all__ = ["DirectMode", "DirectSource"]

log = structlog.get_logger("agent.metadata")

Adapter = Callable[[Any], ObjectInfo]
_OPTIONAL = frozenset({"StatefulSet", "Job", "CronJob", "Node"})


class _Feed(BaseListener[Any]):
    def __init__(self, adapt: Adapter, source: DirectSource) -> None:
        self._adapt = adapt
        self._source = source

    def on_add(self, obj: Any) -> None:
        self._source.changed(self._adapt(obj))

    def on_update(self, old: Any, new: Any) -> None:
        self._source.changed(self._adapt(new))

    def on_delete(self, obj: Any, tombstone: bool) -> None:
        self._source.deleted(self._adapt(obj))


class DirectSource:
    def __init__(
        self, client: Transport, node: str, sink: MetadataSink, *, settings: ReflectorSettings | None = None
    ) -> None:
        self.node = node
        self._sink = sink
        self.index = RelationIndex()
        self.index.subscribe(node)
        self._controllers: dict[str, ControllerRef] = {}
        feeds: list[tuple[Resource[Any], Adapter]] = [
            (pods_on_node(node), pod_info),
            (NAMESPACES, namespace_info),
            (SERVICES, service_info),
            *((r, partial(owner_info, r.kind)) for r in (
                DEPLOYMENTS, REPLICASETS, DAEMONSETS, REPLICATIONCONTROLLERS, STATEFULSETS, JOBS, CRONJOBS,
            )),
            (NODES.selecting(fields=f"metadata.name={node}"), node_info),
        ]  # fmt: skip
        self.informers: dict[str, Informer[Any]] = {}
        for resource, adapt in feeds:
            informer: Informer[Any] = Informer(client, resource, settings=settings)
            informer.add_listener(_Feed(adapt, self))
            self.informers[resource.kind] = informer

    @property
    def synced(self) -> bool:
        return all(i.has_synced for kind, i in self.informers.items() if kind not in _OPTIONAL)

    def changed(self, info: ObjectInfo) -> None:
        if not isinstance(info, OwnerInfo):
            self._deliver(self.index.apply(info))
            return
        parent = info.controller_owner
        old = self._controllers.get(info.uid)
        new = ControllerRef(parent.kind, parent.uid) if parent is not None else None
        if new is not None:
            self._controllers[info.uid] = new
        else:
            self._controllers.pop(info.uid, None)
        deltas = self.index.apply(info)
        self._deliver(deltas)
        if old != new and not any(d.uid == info.uid for d in deltas):
            # Adopted or orphaned with an unchanged payload: the stored object's controller still changes.
            held = self.index.view(self.node).get(info.ref)
            if held is not None:
                self._sink.apply("Update", held.kind, held.uid, held.meta, held.status, held.refs_map(), new)

    def deleted(self, info: ObjectInfo) -> None:
        self._deliver(self.index.delete(info))
        if isinstance(info, OwnerInfo):
            self._controllers.pop(info.uid, None)

    def _deliver(self, deltas: list[Delta]) -> None:
        for delta in deltas:
            payload = delta.payload
            if payload is None:
                self._sink.apply(delta.reason.value, delta.kind, delta.uid)
                continue
            self._sink.apply(
                delta.reason.value,
                delta.kind,
                delta.uid,
                payload.meta,
                payload.status,
                payload.refs_map(),
                self._controllers.get(delta.uid),
            )

    async def run(self) -> None:
        """Run the informers until cancelled; tells the sink once the required ones have synced."""
        async with asyncio.TaskGroup() as tasks:
            for kind, informer in self.informers.items():
                tasks.create_task(informer.run(), name=f"agent-informer-{kind}")
            await asyncio.gather(*(i.wait_synced() for k, i in self.informers.items() if k not in _OPTIONAL))
            log.info("metadata synced from the API", node=self.node, objects=len(self.index.view(self.node)))
            self._sink.synced()


class DirectMode:
    """A `DirectSource` with its own API connection pool, opened by `run()` and closed when it ends."""

    def __init__(
        self,
        config: ClusterConfig,
        node: str,
        sink: MetadataSink,
        *,
        client: ClientSettings | None = None,
        reflector: ReflectorSettings | None = None,
    ) -> None:
        self._config = config
        self._node = node
        self._sink = sink
        self._client_settings = client
        self._reflector = reflector
        self.source: DirectSource | None = None

    async def run(self) -> None:
        async with ApiClient(self._config, settings=self._client_settings) as client:
            self.source = DirectSource(client, self._node, self._sink, settings=self._reflector)
            await self.source.run()
