"""The collector application in-process against the real simulator over HTTP, with real gRPC clients over sockets.

* the Go collector's public e2e scenario (shared spec section 6): what a new subscriber of the node receives,
  byte-exact against the simulator's ground truth, and nothing else; an unknown node receives nothing;
* readiness: /readyz is 503 until the informers of the Go collector's kinds have synced, and the gRPC port serves
  nothing before that; kinds the Go collector's RBAC does not grant never hold it back;
* resilience: workload churn plus API-server faults (dropped watches, compaction, throttling, error bursts, a
  restart that loses the watch cache); afterwards every subscriber holds exactly the ground truth.

The helpers here (subscribers, a running collector, the scenario) are shared with test_operations and test_cli.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, Self

import aiohttp
import grpc
import pytest

from nodemeta.addresses import BindAddress
from nodemeta.api.falco import metadata_pb2, metadata_pb2_grpc
from nodemeta.api.nodemeta.v1 import stream_pb2, stream_pb2_grpc
from nodemeta.collector.app import Collector
from nodemeta.collector.broker import BrokerSettings
from nodemeta.collector.model import FALCO_KINDS, KIND_ALIASES
from nodemeta.collector.settings import CollectorSettings
from nodemeta.kube import BackoffSettings, BaseListener, Pod, ReflectorSettings, load_config, object_key
from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.registry import DeleteOptions
from nodemeta.sim.resources import ResourceType, lookup
from nodemeta.sim.truth import kinds_in, node_view
from tests.collector.holder import Comparable, comparable

# Small numbers so every recovery path of the informers runs in well under a second.
FAST = ReflectorSettings(
    inactivity_timeout=2.0,
    min_watch_duration=0.2,
    backoff=BackoffSettings(initial=0.05, maximum=0.4, reset_after=5.0),
)
LOCAL = BindAddress.parse("127.0.0.1:0")
# What the Falco k8smeta plugin asks for, typo included (it means ReplicationController).
PLUGIN_KINDS = ("Pod", "Namespace", "Deployment", "Service", "ReplicaSet", "ReplicaController")
ALL_V1_KINDS = (*sorted(FALCO_KINDS), "StatefulSet", "Job", "CronJob", "Node")


def settings(**overrides: Any) -> CollectorSettings:
    values: dict[str, Any] = {
        "broker_address": LOCAL,
        "metrics_address": LOCAL,
        "probe_address": LOCAL,
        "reflector": FAST,
        "shutdown_grace": 2.0,
        # The test process's own garbage collection stays as it is (test_heap_is_frozen_only_when_asked).
        "freeze_heap": False,
        **overrides,
    }
    return CollectorSettings(**values)


def res(group: str, plural: str) -> ResourceType:
    found = lookup(group, "v1", plural)
    assert found is not None
    return found


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what or check}")
        await asyncio.sleep(0.05)


DEPLOY_RES = res("apps", "deployments")
POD_RES = res("", "pods")
SVC_RES = res("", "services")
NS_RES = res("", "namespaces")


# -- the collector ---------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_collector(
    sim: SimServer, tmp_path: Path, *, wait: bool = True, broker: BrokerSettings | None = None, **overrides: Any
) -> AsyncIterator[Collector]:
    """A Collector on free loopback ports against `sim`; stopped gracefully (and checked to stop) on exit."""
    config = await load_config(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
    collector = Collector(config, settings(**overrides), broker_settings=broker)
    task = asyncio.create_task(collector.run(), name="collector")
    try:
        if wait:
            serving = asyncio.ensure_future(collector.wait_serving())
            try:
                async with asyncio.timeout(10):
                    await asyncio.wait({task, serving}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving
            if task.done():
                task.result()
                raise AssertionError("the collector stopped before serving")
        yield collector
    finally:
        collector.stop()
        async with asyncio.timeout(10):
            await task


# -- subscribers -----------------------------------------------------------------------------------------------------


class Subscriber:
    """A model client: holds what its stream told it, the way the Falco plugin does (Create and Update store the
    whole object, Delete forgets it), and records anything a correct stream never sends."""

    def __init__(self, node: str, kinds: Iterable[str]) -> None:
        self.node = node
        self.kinds = frozenset(KIND_ALIASES.get(k, k) for k in kinds)
        self.objects: Comparable = {}
        self.events: list[tuple[str, str, str]] = []
        self.errors: list[str] = []
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.task: asyncio.Task[None] | None = None

    def apply(self, reason: str, kind: str, uid: str, value: tuple[str, str | None, Any] | None) -> None:
        key = (kind, uid)
        self.events.append((reason, kind, uid))
        if kind not in self.kinds:
            self.errors.append(f"{reason} of kind {kind}, not asked for")
        if reason == "Delete":
            if value is not None:
                self.errors.append(f"Delete with a payload: {key}")
            if self.objects.pop(key, None) is None:
                self.errors.append(f"Delete of an object not held: {key}")
            return
        assert value is not None
        if reason == "Create" and key in self.objects:
            self.errors.append(f"Create of an object already held: {key}")
        if reason == "Update":
            if key not in self.objects:
                self.errors.append(f"Update of an object not held: {key}")
            elif self.objects[key] == value:
                self.errors.append(f"Update with an unchanged payload: {key}")
        self.objects[key] = value

    def expected(self, sim: SimServer) -> Comparable:
        return comparable(kinds_in(node_view(sim.store, self.node), self.kinds).values())

    def matches(self, sim: SimServer) -> bool:
        return self.objects == self.expected(sim)

    async def _read(self, call: Any, handle: Callable[[Any], None]) -> None:
        try:
            async for message in call:
                handle(message)
        except grpc.aio.AioRpcError as err:
            self.code, self.details = err.code(), err.details() or ""
        else:
            self.code = grpc.StatusCode.OK

    def start(self, channel: grpc.aio.Channel) -> Self:
        self.task = asyncio.create_task(self.run(channel), name=f"subscriber-{self.node}")
        return self

    async def run(self, channel: grpc.aio.Channel) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


def _value(event: Any, refs: dict[str, tuple[str, ...]] | None) -> tuple[str, str | None, Any]:
    return (event.meta, event.status if event.HasField("status") else None, refs)


class FalcoSubscriber(Subscriber):
    """A `metadata.Metadata/Watch` client, as the k8smeta plugin subscribes."""

    def __init__(self, node: str, kinds: Iterable[str] = PLUGIN_KINDS) -> None:
        self.requested = tuple(kinds)
        super().__init__(node, self.requested)

    def handle(self, event: metadata_pb2.Event) -> None:
        if event.reason == "Delete":
            if event.HasField("meta") or event.HasField("status") or event.HasField("refs"):
                self.errors.append(f"Delete with fields: {event}")
            self.apply("Delete", event.kind, event.uid, None)
            return
        refs = None
        if event.HasField("refs"):
            refs = {kind: tuple(uids.list) for kind, uids in event.refs.resources.items()}
        if event.HasField("spec"):
            self.errors.append(f"spec is never sent: {event}")
        self.apply(event.reason, event.kind, event.uid, _value(event, refs))

    async def run(self, channel: grpc.aio.Channel) -> None:
        selector = metadata_pb2.Selector(nodeName=self.node, resourceKinds=dict.fromkeys(self.requested, "true"))
        await self._read(metadata_pb2_grpc.MetadataStub(channel).Watch(selector), self.handle)


class StreamSubscriber(Subscriber):
    """A `nodemeta.v1.NodeMetadata/Watch` client."""

    REASONS = {1: "Create", 2: "Update", 3: "Delete"}

    def __init__(self, node: str, kinds: Iterable[str] = ALL_V1_KINDS) -> None:
        super().__init__(node, kinds)
        self.synced = asyncio.Event()
        self.batches = 0
        self.revision = 0

    def handle(self, batch: stream_pb2.EventBatch) -> None:
        self.batches += 1
        if batch.revision <= self.revision:
            self.errors.append(f"revision went from {self.revision} to {batch.revision}")
        self.revision = batch.revision
        for event in batch.events:
            reason = self.REASONS[event.reason]
            if reason == "Delete":
                self.apply(reason, event.kind, event.uid, None)
                continue
            refs = None
            if event.HasField("refs"):
                refs = {kind: tuple(uids.uids) for kind, uids in event.refs.resources.items()}
            self.apply(reason, event.kind, event.uid, _value(event, refs))
        if batch.initial_sync_complete:
            if self.synced.is_set():
                self.errors.append("a second initial_sync_complete")
            self.synced.set()

    async def run(self, channel: grpc.aio.Channel) -> None:
        request = stream_pb2.WatchRequest(node_name=self.node, kinds=sorted(self.kinds))
        await self._read(stream_pb2_grpc.NodeMetadataStub(channel).Watch(request), self.handle)


@contextlib.asynccontextmanager
async def channel_to(collector: Collector) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
        yield channel


# -- the Go collector's e2e scenario ------------------------------------------------------------------------------


def _containers() -> list[dict[str, Any]]:
    return [{"name": "nginx", "image": "nginx:1.14.2", "ports": [{"containerPort": 80}]}]


def e2e_resources(sim: SimServer, ns: str = "nginx-test") -> None:
    """The Go collector's test/e2e/resources, created through the registry (the controllers do the rest)."""
    reg = sim.registry
    reg.create(res("", "namespaces"), "", {"metadata": {"name": ns}})
    toleration = {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}
    reg.create(res("apps", "daemonsets"), ns, {
        "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
        "spec": {
            "selector": {"matchLabels": {"name": "nginx"}},
            "template": {
                "metadata": {"labels": {"name": "nginx", "app": "nginx"}},
                "spec": {"tolerations": [toleration], "containers": _containers()},
            },
        },
    })  # fmt: skip
    template = {"app": "nginx", "custom": "label", "app.kubernetes.io/name": "testing"}
    reg.create(res("apps", "deployments"), ns, {
        "metadata": {"name": "nginx-deployment", "labels": {"app": "nginx", "custom": "label"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": template}, "spec": {"containers": _containers()}},
        },
    })  # fmt: skip
    for name in ("nginx-service", "nginx-service-second-service"):
        reg.create(res("", "services"), ns, {
            "metadata": {"name": name},
            "spec": {"selector": {"app": "nginx"}, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        })  # fmt: skip
    reg.create(res("", "pods"), ns, {
        "metadata": {"name": "nginx", "labels": {"name": "nginx", "app": "nginx"}},
        "spec": {"containers": _containers()},
    })  # fmt: skip
    reg.create(res("apps", "replicasets"), ns, {
        "metadata": {"name": "frontend", "labels": {"app": "nginx", "tier": "frontend"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"tier": "frontend"}},
            "template": {"metadata": {"labels": {"tier": "frontend"}}, "spec": {"containers": _containers()}},
        },
    })  # fmt: skip
    reg.create(res("", "replicationcontrollers"), ns, {
        "metadata": {"name": "nginx"},
        "spec": {
            "replicas": 3,
            "selector": {"app": "nginx"},
            "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": _containers()}},
        },
    })  # fmt: skip


async def settled_view(sim: SimServer, node: str, timeout: float = 10.0) -> dict[Any, Any]:
    """The node's ground truth once the controllers are idle and it stopped changing (pods have their IPs)."""
    previous = None
    async with asyncio.timeout(timeout):
        while True:
            await sim.settle()
            view = node_view(sim.store, node)
            if view == previous:
                return view
            previous = view
            await asyncio.sleep(0.2)


# -- tests -----------------------------------------------------------------------------------------------------------


async def test_e2e_scenario_new_subscriber_gets_exactly_the_node_view(tmp_path: Path) -> None:
    sim_settings = SimSettings(nodes=1, seed=5, kubelet_stop_seconds=0.05)
    async with (
        SimServer(sim_settings) as sim,
        running_collector(sim, tmp_path) as collector,
        channel_to(collector) as channel,
    ):
        e2e_resources(sim)
        view = await settled_view(sim, "node-1")
        kinds = {key[0] for key in view}
        assert kinds == set(FALCO_KINDS), kinds
        # 6 or 7: the bare pod is adopted by the ReplicationController or the DaemonSet, whichever comes first.
        assert sum(1 for key in view if key[0] == "Pod") in (6, 7)
        # A first subscriber shows when the collector has caught up with the API; the ones after it must then
        # receive the node's view as Creates only.
        warmup = FalcoSubscriber("node-1", sorted(FALCO_KINDS)).start(channel)
        await eventually(lambda: warmup.matches(sim), what="collector caught up")
        await warmup.close()
        everything = FalcoSubscriber("node-1", sorted(FALCO_KINDS)).start(channel)  # the Go e2e client's kinds
        plugin = FalcoSubscriber("node-1").start(channel)
        stream = StreamSubscriber("node-1").start(channel)
        nobody = FalcoSubscriber("no-node-exists", sorted(FALCO_KINDS)).start(channel)
        try:
            for sub in (everything, plugin, stream):
                await eventually(lambda sub=sub: sub.matches(sim), what=f"{type(sub).__name__} synced")  # type: ignore[misc]
            await asyncio.wait_for(stream.synced.wait(), 5)
            await asyncio.sleep(0.5)  # nothing more arrives
            for sub in (everything, plugin, stream):
                expected = sub.expected(sim)
                assert sub.objects == expected
                assert sub.errors == []
                assert sorted(sub.events) == sorted(("Create", kind, uid) for kind, uid in expected), "only Creates"
            assert len(everything.events) == len(view)
            # The plugin's "ReplicaController" is ReplicationController; it did not ask for DaemonSets.
            plugin_kinds = {kind for _, kind, _ in plugin.events}
            assert plugin_kinds == {
                "Pod",
                "Namespace",
                "Deployment",
                "Service",
                "ReplicaSet",
                "ReplicationController",
            }
            # Pod payloads byte for byte (meta, status, refs), e.g. the deployment's pods.
            pods = [key for key in view if key[0] == "Pod" and "nginx-deployment-" in view[key].meta]
            assert len(pods) == 2
            for key in pods:
                truth = view[key]
                assert everything.objects[key] == (truth.meta, truth.status, dict(truth.refs or {}))
                assert truth.status is not None and truth.status.startswith('{"podIP":"10.')
            # A subscriber for a node that does not exist receives nothing, and its stream stays open.
            assert nobody.events == [] and nobody.code is None
            assert collector.broker.subscriber_count == 4
            assert warmup.errors == []
        finally:
            for sub in (everything, plugin, stream, nobody):
                await sub.close()
        await eventually(lambda: collector.broker.subscriber_count == 0, what="streams closed")


def forbidden(*plurals: str) -> Callable[[Any], bool]:
    return lambda request: any(f"/{plural}" in request.path for plural in plurals)


async def test_ready_only_after_every_informer_synced(tmp_path: Path) -> None:
    async with SimServer(SimSettings(nodes=1, seed=3, controllers=())) as sim:
        # Listing ReplicationControllers fails until the fault is cleared: that informer cannot sync.
        sim.faults.fail(1.0, code=500, applies=forbidden("replicationcontrollers"))
        async with running_collector(sim, tmp_path, wait=False) as collector, aiohttp.ClientSession() as http:
            await eventually(lambda: collector.probe_port != 0 and collector.grpc_port != 0)
            probe = f"http://127.0.0.1:{collector.probe_port}"
            await eventually(lambda: collector.unsynced() == ["ReplicationController"], what="others synced")
            async with http.get(f"{probe}/healthz") as response:
                assert response.status == 200 and await response.text() == "ok"
            async with http.get(f"{probe}/readyz") as response:
                assert response.status == 503
                assert "ReplicationController" in await response.text()
            # Not serving either: a call waits (its port is bound, not started) instead of getting a half sync.
            async with grpc.aio.insecure_channel(f"127.0.0.1:{collector.grpc_port}") as channel:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    call = metadata_pb2_grpc.MetadataStub(channel).Watch(
                        metadata_pb2.Selector(nodeName="node-1"), timeout=0.3
                    )
                    await call.read()
                assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            sim.faults.clear()
            async with asyncio.timeout(5):
                await collector.wait_serving()
            async with http.get(f"{probe}/readyz") as response:
                assert response.status == 200 and await response.text() == "ok"
            async with http.get(f"http://127.0.0.1:{collector.metrics_port}/metrics") as response:
                body = await response.text()
            assert 'nodemeta_informer_synced{kind="ReplicationController"} 1.0' in body
            assert 'nodemeta_informer_list_failures_total{kind="ReplicationController"}' in body


async def test_a_call_made_before_sync_waits_at_the_gate_and_then_gets_the_whole_view(tmp_path: Path) -> None:
    """Agents reconnecting to a restarted collector connect at once and wait (no listen-queue overflow, no retry
    backoff), and receive nothing until the caches synced: then exactly the node's view."""
    async with SimServer(SimSettings(nodes=1, seed=3, controllers=())) as sim:
        uid = one_pod(sim)
        sim.faults.fail(1.0, code=500, applies=forbidden("replicationcontrollers"))
        async with running_collector(sim, tmp_path, wait=False) as collector:
            await eventually(lambda: collector.grpc_port != 0 and collector.unsynced() == ["ReplicationController"])
            async with channel_to(collector) as channel:
                sub = FalcoSubscriber("node-1").start(channel)
                try:
                    # The connection is up (before the gate existed, the port was bound but not started: no
                    # connection could complete until the caches synced).
                    await eventually(lambda: channel.get_state() == grpc.ChannelConnectivity.READY, what="connected")
                    await asyncio.sleep(0.3)
                    assert sub.objects == {} and collector.broker.subscriber_count == 0
                    sim.faults.clear()
                    await eventually(lambda: sub.matches(sim), what="the whole view after sync")
                    assert ("Pod", uid) in sub.objects
                finally:
                    await sub.close()


async def test_kinds_beyond_the_go_collectors_rbac_do_not_hold_readiness(tmp_path: Path) -> None:
    """With the Go collector's ClusterRole (no nodes, statefulsets, jobs, cronjobs) the collector still serves."""
    async with SimServer(SimSettings(nodes=1, seed=3, controllers=())) as sim:
        sim.faults.fail(1.0, code=403, applies=forbidden("nodes", "statefulsets", "jobs", "cronjobs"))
        uid = one_pod(sim)
        async with running_collector(sim, tmp_path) as collector, channel_to(collector) as channel:
            assert sorted(collector.unsynced()) == ["CronJob", "Job", "Node", "StatefulSet"]
            assert collector.readiness().ready
            sub = FalcoSubscriber("node-1").start(channel)
            try:
                await eventually(lambda: sub.matches(sim), what="falco view without the optional kinds")
                assert ("Pod", uid) in sub.objects
                # Once the RBAC allows it (here: the fault clears), the optional kinds join.
                sim.faults.clear()
                await eventually(lambda: collector.unsynced() == [], timeout=5)
            finally:
                await sub.close()


def one_pod(sim: SimServer) -> str:
    sim.registry.create(NS_RES, "", {"metadata": {"name": "web"}})
    body = {"metadata": {"name": "p"}, "spec": {"nodeName": "node-1", "containers": _containers()}}
    return str(sim.registry.create(POD_RES, "web", body).stored.uid)


async def test_stop_before_sync_returns_cleanly(tmp_path: Path) -> None:
    async with SimServer(SimSettings(nodes=1, seed=3, controllers=())) as sim:
        sim.faults.fail(1.0, code=500, applies=lambda request: "/pods" in request.path)
        async with running_collector(sim, tmp_path, wait=False) as collector:
            await eventually(lambda: collector.informers["Pod"].stats.list_failures > 0)
        assert not collector.synced and collector.readiness().detail == "shutting down"


# -- resilience ------------------------------------------------------------------------------------------------------


def workload(sim: SimServer, ns: str, name: str, replicas: int, labels: dict[str, str]) -> None:
    sim.registry.create(DEPLOY_RES, ns, {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name, **labels}}, "spec": {"containers": _containers()}},
        },
    })  # fmt: skip


def service(sim: SimServer, ns: str, name: str, selector: dict[str, str]) -> None:
    sim.registry.create(
        SVC_RES, ns, {"metadata": {"name": name}, "spec": {"selector": selector, "ports": [{"port": 80}]}}
    )


class Tombstones(BaseListener[Any]):
    """Records the deletions an informer only inferred from a relist."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []

    def on_delete(self, obj: Any, tombstone: bool) -> None:
        if tombstone:
            kind = "Pod" if isinstance(obj, Pod) else "Service"
            self.keys.append((kind, object_key(obj)))


def some_pods(sim: SimServer, ns: str, count: int) -> list[str]:
    names = sorted(s.name for s in sim.registry.iter_objects(POD_RES, ns))
    return names[:count]


@pytest.mark.parametrize("freeze", [False, True])
async def test_heap_is_frozen_only_when_asked(tmp_path: Path, freeze: bool) -> None:
    """`freeze_heap` decides whether the collector touches the process's garbage collector at all: the command
    line freezes, an embedding program (this test process) can keep its own collections as they are."""
    gc.unfreeze()
    thresholds = gc.get_threshold()
    try:
        async with (
            SimServer(SimSettings(nodes=1, seed=3, controllers=())) as sim,
            running_collector(sim, tmp_path, freeze_heap=freeze, heap_freeze_interval=30.0),
        ):
            refreezers = [t for t in asyncio.all_tasks() if t.get_name() == "heap-freeze"]
            if freeze:
                assert gc.get_freeze_count() > 0
                assert gc.get_threshold()[2] > thresholds[2]  # full collections left to the refreezer
                assert len(refreezers) == 1
            else:
                assert gc.get_freeze_count() == 0
                assert gc.get_threshold() == thresholds
                assert refreezers == []
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def test_subscribers_converge_to_the_truth_through_churn_and_api_faults(tmp_path: Path) -> None:
    sim_settings = SimSettings(nodes=3, seed=9, kubelet_stop_seconds=0.05, bookmark_interval=0.5)
    async with SimServer(sim_settings) as sim:
        reg = sim.registry
        for ns in ("shop", "tools", "doomed"):
            reg.create(NS_RES, "", {"metadata": {"name": ns, "labels": {"team": ns}}})
        workload(sim, "shop", "web", 4, {"tier": "front"})
        workload(sim, "shop", "api", 3, {"tier": "back"})
        workload(sim, "tools", "cache", 2, {"tier": "back"})
        workload(sim, "doomed", "old", 3, {"tier": "front"})
        service(sim, "shop", "front", {"tier": "front"})
        service(sim, "shop", "back", {"tier": "back"})
        service(sim, "tools", "cache", {"app": "cache"})
        service(sim, "doomed", "old", {"app": "old"})
        await sim.settle()
        async with running_collector(sim, tmp_path) as collector, channel_to(collector) as channel:
            subs: list[Subscriber] = [FalcoSubscriber(f"node-{i}") for i in (1, 2, 3)]
            subs.append(FalcoSubscriber("node-2", sorted(FALCO_KINDS)))
            subs.append(StreamSubscriber("node-1"))
            subs.append(StreamSubscriber("node-3", ["Pod", "Service"]))
            for sub in subs:
                sub.start(channel)
            try:
                await eventually(lambda: all(s.matches(sim) for s in subs), what="initial sync")
                stats = {kind: i.stats for kind, i in collector.informers.items()}
                tombstones = Tombstones()
                collector.informers["Service"].add_listener(tombstones)
                collector.informers["Pod"].add_listener(tombstones)

                # Churn and faults, interleaved, with time in between for the collector to see partial states.
                reg.patch(DEPLOY_RES, "shop", "web", "merge", {"spec": {"replicas": 7}})
                sim.faults.drop_watches()
                await asyncio.sleep(0.2)
                for name in some_pods(sim, "shop", 3):
                    reg.delete(POD_RES, "shop", name, DeleteOptions(grace_period=0))
                reg.patch(DEPLOY_RES, "shop", "web", "merge", {"metadata": {"labels": {"tier": "front", "v": "2"}}})
                sim.faults.compact()
                await asyncio.sleep(0.3)
                for name in some_pods(sim, "tools", 2):
                    reg.patch(POD_RES, "tools", name, "merge", {"metadata": {"labels": {"app": "cache", "extra": "x"}}})
                reg.patch(SVC_RES, "shop", "back", "merge", {"spec": {"selector": {"app": "api"}}})
                sim.faults.throttle(0.5, retry_after=1)
                sim.faults.drop_watches()  # re-watches meet the throttling
                await asyncio.sleep(0.5)
                reg.patch(DEPLOY_RES, "shop", "api", "merge", {"spec": {"replicas": 1}})
                reg.delete(NS_RES, "", "doomed", DeleteOptions())
                sim.faults.clear()
                sim.faults.burst(6, code=503)
                sim.faults.drop_watches()
                await asyncio.sleep(0.3)
                # An API-server restart that loses the watch history, with changes made while it is down: the
                # collector only learns of these deletions from its relist (tombstones).
                restart = asyncio.create_task(sim.faults.restart(keep_watch_cache=False, downtime=0.4))
                await asyncio.sleep(0.15)
                reg.delete(SVC_RES, "shop", "front", DeleteOptions())
                for name in some_pods(sim, "shop", 2):
                    reg.delete(POD_RES, "shop", name, DeleteOptions(grace_period=0))
                await restart
                reg.patch(DEPLOY_RES, "tools", "cache", "merge", {"spec": {"replicas": 5}})
                reg.patch(SVC_RES, "tools", "cache", "merge", {"spec": {"selector": {"extra": "x"}}})
                await asyncio.sleep(0.3)
                sim.faults.compact()
                sim.faults.drop_watches()

                sim.faults.clear()
                await settled_view(sim, "node-1", timeout=20)
                assert reg.find("namespaces", "", "doomed") is None, "the namespace deletion finished"
                for sub in subs:
                    await eventually(lambda sub=sub: sub.matches(sim), timeout=15, what=f"{sub.node} converged")  # type: ignore[misc]
                for sub in subs:
                    assert sub.errors == [], (sub.node, sub.errors[:5])
                    assert sub.code is None, (sub.node, sub.code, sub.details)  # no stream was ended
                    assert any(reason == "Delete" for reason, _, _ in sub.events), "churn reached every node"
                # The faults really hit the informers: relists after the compactions and the restart.
                assert stats["Pod"].relists >= 1
                assert stats["Pod"].watch_restarts["expired"] >= 1
                assert sum(s.watch_restarts["throttled"] for s in stats.values()) >= 1
                assert sum(s.watch_restarts["server-error"] + s.list_failures for s in stats.values()) >= 1
                assert all(i.store.listener_errors == 0 for i in collector.informers.values())
                assert ("Service", "shop/front") in tombstones.keys
            finally:
                for sub in subs:
                    await sub.close()
