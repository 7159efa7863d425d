"""The cost without nodemeta: a node agent that watches the Kubernetes API itself, measured with a real client.

An agent that needs the metadata of its node's pods (their namespaces, owners and Services) and has no collector
must list and watch, from the API server: every Pod, Namespace and Service in the cluster, and the owners
(Deployments, ReplicaSets, DaemonSets, ReplicationControllers). `DirectWatch` does exactly that, as client-go's
reflector does (LIST, then WATCH from the list's resourceVersion with bookmarks; a 410 means list again), with
plain aiohttp, and counts what arrives. Its choices are the cheap ones, so the comparison is fair to the direct
approach: owners are fetched as metadata only (PartialObjectMetadata, about a quarter of the bytes), and the
node-filtered variant asks for only its node's pods (`fieldSelector=spec.nodeName=...`, which the API server
indexes); it must still watch every Namespace, Service and owner, since those cannot be filtered by node.

Events: each listed object counts as a Create, then ADDED / MODIFIED / DELETED as Create / Update / Delete
(bookmarks are bytes but not events). Bytes are HTTP response bodies as received (headers not included).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from nodemeta.demo.meter import CREATE, DELETE, UPDATE, Meter

__all__ = ["FULL_CLUSTER", "DirectWatch", "Target", "node_pods"]

_JSON = "application/json"
_META_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
_META_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
_TYPES = {"ADDED": CREATE, "MODIFIED": UPDATE, "DELETED": DELETE}
# Wait before listing or watching again after a connection failed.
_RETRY_DELAY = 0.5


@dataclass(frozen=True, slots=True)
class Target:
    """One collection to list and watch."""

    kind: str
    path: str
    metadata_only: bool = False
    field_selector: str = ""


# What a node agent without a collector watches: the Falco contract's seven kinds, whole cluster.
FULL_CLUSTER = (
    Target("Pod", "/api/v1/pods"),
    Target("Namespace", "/api/v1/namespaces"),
    Target("Service", "/api/v1/services"),
    Target("Deployment", "/apis/apps/v1/deployments", metadata_only=True),
    Target("ReplicaSet", "/apis/apps/v1/replicasets", metadata_only=True),
    Target("DaemonSet", "/apis/apps/v1/daemonsets", metadata_only=True),
    Target("ReplicationController", "/api/v1/replicationcontrollers", metadata_only=True),
)


def node_pods(node: str) -> Target:
    """The pods of one node only, as a node-filtered agent watches them."""
    return Target("Pod", "/api/v1/pods", field_selector=f"spec.nodeName={node}")


class _Expired(Exception):
    """410: the resourceVersion is older than the server keeps; list again."""


@dataclass(slots=True)
class TargetStats:
    meter: Meter = field(default_factory=Meter)
    # Keys of the objects currently held (namespace/name), as an informer's cache would hold them.
    held: set[str] = field(default_factory=set)
    lists: int = 0
    watches: int = 0
    bookmarks: int = 0
    synced: bool = False


class DirectWatch:
    """One API client listing and watching `targets`; `follow(target)` runs one of them until cancelled."""

    def __init__(self, name: str, targets: tuple[Target, ...]) -> None:
        self.name = name
        self.targets = targets
        self.stats = {t: TargetStats() for t in targets}
        # Everything this client received, over all its targets.
        self.total = Meter()
        self.errors: Counter[str] = Counter()
        self.last_error = ""
        # Set once every target has its first list.
        self.ready = asyncio.Event()

    @property
    def synced(self) -> bool:
        return all(s.synced for s in self.stats.values())

    def meter(self, kind: str) -> Meter:
        """What the target of `kind` received."""
        for target, stats in self.stats.items():
            if target.kind == kind:
                return stats.meter
        raise KeyError(kind)

    def sample(self, now: float) -> None:
        self.total.sample(now)
        for stats in self.stats.values():
            stats.meter.sample(now)

    def _bytes(self, stats: TargetStats, n: int) -> None:
        stats.meter.bytes += n
        self.total.bytes += n

    def _count(self, stats: TargetStats, reason: str, n: int = 1) -> None:
        stats.meter.count(reason, n)
        self.total.count(reason, n)

    def held_by_kind(self) -> Counter[str]:
        return Counter({t.kind: len(s.held) for t, s in self.stats.items()})

    async def follow(self, session: aiohttp.ClientSession, target: Target) -> None:
        stats = self.stats[target]
        rv = ""
        while True:
            try:
                if not rv:
                    rv = await self._list(session, target, stats)
                rv = await self._watch(session, target, stats, rv)
            except _Expired:
                rv = ""
            except (aiohttp.ClientError, OSError, ValueError) as err:
                self.errors[target.kind] += 1
                self.last_error = f"{target.kind}: {type(err).__name__}: {err}"
                await asyncio.sleep(_RETRY_DELAY)

    def _params(self, target: Target, **extra: str) -> dict[str, str]:
        params = dict(extra)
        if target.field_selector:
            params["fieldSelector"] = target.field_selector
        return params

    async def _list(self, session: aiohttp.ClientSession, target: Target, stats: TargetStats) -> str:
        accept = _META_LIST if target.metadata_only else _JSON
        async with session.get(target.path, params=self._params(target), headers={"Accept": accept}) as response:
            body = await response.read()
            if response.status != 200:
                raise ValueError(f"LIST {target.path}: HTTP {response.status}")
        self._bytes(stats, len(body))
        doc = orjson.loads(body)
        items = doc.get("items") or []
        stats.held = {_key(item) for item in items}
        self._count(stats, CREATE, len(items))
        stats.lists += 1
        stats.synced = True
        if self.synced:
            self.ready.set()
        return str(doc["metadata"]["resourceVersion"])

    async def _watch(self, session: aiohttp.ClientSession, target: Target, stats: TargetStats, rv: str) -> str:
        """Watch from `rv` until the server ends the stream; returns the last resourceVersion seen."""
        accept = _META_WATCH if target.metadata_only else _JSON
        params = self._params(target, watch="true", resourceVersion=rv, allowWatchBookmarks="true")
        async with session.get(target.path, params=params, headers={"Accept": accept}) as response:
            if response.status == 410:
                raise _Expired
            if response.status != 200:
                await response.read()
                raise ValueError(f"WATCH {target.path}: HTTP {response.status}")
            stats.watches += 1
            pending = b""
            while chunk := await response.content.readany():
                self._bytes(stats, len(chunk))
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if line:
                        rv = self._event(line, stats) or rv
        return rv

    def _event(self, line: bytes, stats: TargetStats) -> str:
        """Count one watch event; returns its resourceVersion."""
        event = orjson.loads(line)
        kind = event.get("type")
        obj: dict[str, Any] = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Expired
            raise ValueError(f"watch error: {obj.get('message')}")
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            stats.bookmarks += 1
            return rv
        reason = _TYPES.get(kind or "")
        if reason is None:
            raise ValueError(f"unknown watch event type {kind!r}")
        self._count(stats, reason)
        if reason == DELETE:
            stats.held.discard(_key(obj))
        else:
            stats.held.add(_key(obj))
        return rv


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"
