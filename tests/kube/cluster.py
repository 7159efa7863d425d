"""Test helpers: writes through the simulator's registry (synchronous, so no await can slip between them), the
server's ground truth, a recording listener, and a runner that keeps informers going for the length of a block."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from nodemeta.kube import BaseListener, Informer, KubeObject, Store, object_key
from nodemeta.sim import SimServer
from nodemeta.sim.registry import DeleteOptions
from nodemeta.sim.resources import ResourceType, lookup


def resource(group: str, plural: str) -> ResourceType:
    found = lookup(group, "v1", plural)
    assert found is not None
    return found


POD_RES = resource("", "pods")
RS_RES = resource("apps", "replicasets")
NS_RES = resource("", "namespaces")


class Cluster:
    """Writes objects straight into a simulator's registry, as controllers would."""

    def __init__(self, sim: SimServer) -> None:
        self.sim = sim
        self.registry = sim.registry

    def namespace(self, name: str) -> None:
        self.registry.create(NS_RES, "", {"metadata": {"name": name}})

    def pod(self, name: str, ns: str = "default", *, node: str = "", labels: dict[str, str] | None = None) -> str:
        spec: dict[str, Any] = {
            "containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 80}]}]
        }
        if node:
            spec["nodeName"] = node
        body = {"metadata": {"name": name, "labels": labels or {}}, "spec": spec}
        return str(self.registry.create(POD_RES, ns, body).stored.rv)

    def relabel(self, name: str, labels: dict[str, str], ns: str = "default") -> str:
        return str(self.registry.patch(POD_RES, ns, name, "merge", {"metadata": {"labels": labels}}).stored.rv)

    def bind(self, name: str, node: str, ns: str = "default") -> None:
        self.registry.bind(POD_RES, ns, name, {"target": {"name": node}})

    def delete(self, name: str, ns: str = "default", res: ResourceType = POD_RES) -> None:
        self.registry.delete(res, ns, name, DeleteOptions(grace_period=0))

    def replicaset(self, name: str, ns: str = "default", *, owner_uid: str = "") -> None:
        meta: dict[str, Any] = {"name": name, "labels": {"app": name}}
        if owner_uid:
            meta["ownerReferences"] = [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": owner_uid, "controller": True}
            ]
        body = {
            "metadata": meta,
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
                },
            },
        }
        self.registry.create(RS_RES, ns, body)

    def truth(
        self, res: ResourceType = POD_RES, keep: Callable[[dict[str, Any]], bool] | None = None
    ) -> dict[str, str]:
        """key -> resourceVersion of every object the server holds now (optionally filtered)."""
        out = {}
        for stored in self.registry.iter_objects(res):
            if keep is None or keep(stored.decode()):
                out[stored.key] = str(stored.rv)
        return out


def cached(store: Store[Any]) -> dict[str, str]:
    """key -> resourceVersion of what an informer's store holds."""
    return {object_key(obj): obj.metadata.resource_version for obj in store.list()}


class Recorder(BaseListener[KubeObject]):
    """Records every notification, and checks the store already holds the change when it is told about it."""

    def __init__(self, store: Store[Any]) -> None:
        self.store = store
        self.events: list[tuple[str, str]] = []
        self.tombstones: list[str] = []
        self.synced = 0

    def on_add(self, obj: KubeObject) -> None:
        assert self.store.get(object_key(obj)) is obj
        self.events.append(("add", object_key(obj)))

    def on_update(self, old: KubeObject, new: KubeObject) -> None:
        assert self.store.get(object_key(new)) is new
        assert old.metadata.resource_version != new.metadata.resource_version
        self.events.append(("update", object_key(new)))

    def on_delete(self, obj: KubeObject, tombstone: bool) -> None:
        assert object_key(obj) not in self.store or self.store.get(object_key(obj)) is not obj
        self.events.append(("delete", object_key(obj)))
        if tombstone:
            self.tombstones.append(object_key(obj))

    def on_synced(self) -> None:
        self.synced += 1

    def of(self, kind: str) -> list[str]:
        return [key for k, key in self.events if k == kind]


async def eventually(check: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll `check` until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what or check}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(*informers: Informer[Any], sync_timeout: float = 5.0) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run the informers for the block (after their first sync); cancel and reap them on exit."""
    tasks = [asyncio.create_task(i.run(), name=f"informer-{i.resource.describe()}") for i in informers]
    try:
        async with asyncio.timeout(sync_timeout):
            for informer in informers:
                await informer.wait_synced()
        yield tasks
        for task in tasks:
            assert not task.done(), f"informer ended: {task}"
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def is_watch(request: Any) -> bool:
    """A fault filter selecting watch requests."""
    return bool(request.query.get("watch") == "true")
