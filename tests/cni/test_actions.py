"""The chain guard's actions against the simulator over HTTP: the Node's taints, Events, pod labels and pod
deletions are read back from the server (its registry, the API, or kubectl), metrics from the registry passed in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from nodemeta.cni.actions import (
    REASON_CAPTURE_RESTORED,
    REASON_CHAIN_HEALTHY,
    REASON_NOT_CAPTURED,
    REASON_POD_DELETED,
    REASON_REPAIR_LIMIT,
    REASON_TAINT_ADDED,
    REASON_TAINT_REMOVED,
    ActionSettings,
    CaptureState,
    ChainActions,
    NodeFinding,
    PodFinding,
    Severity,
)
from nodemeta.cni.metrics import CniMetrics
from nodemeta.kube import (
    ApiClient,
    JSONObject,
    ObjectPath,
    PatchType,
    Recorder,
    RecorderSettings,
    Writer,
    load_config,
)
from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.registry import DeleteOptions
from nodemeta.sim.resources import ResourceType, lookup

TAINT = {"key": "nodemeta.io/cni-not-ready", "effect": "NoSchedule"}
OTHER_TAINT = {"key": "dedicated", "value": "mesh", "effect": "NoExecute", "timeAdded": "2025-01-10T09:00:00Z"}
LABEL = "nodemeta.io/cni-uncaptured"
BROKEN = [NodeFinding("CNIPluginMissing", "linkerd-cni is not in 05-cilium.conflist (the file the runtime uses)")]


def res(group: str, plural: str) -> ResourceType:
    found = lookup(group, "v1", plural)
    assert found is not None
    return found


NODES, PODS, EVENTS, JOBS = res("", "nodes"), res("", "pods"), res("", "events"), res("batch", "jobs")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Guard:
    """Actions, recorder and metrics wired to one simulator, with a hand-driven clock."""

    def __init__(self, sim: SimServer, client: ApiClient, settings: ActionSettings, writer: Writer | None = None):
        self.sim = sim
        self.client = client
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.writer = writer or Writer(client)
        self.recorder = Recorder(self.writer, host="node-1", settings=RecorderSettings(retry_interval=0.01))
        self.metrics = CniMetrics(self.registry, self.recorder.stats)
        self.actions = ChainActions(
            self.writer, self.recorder, self.metrics, node_name="node-1", settings=settings, clock=self.clock
        )

    async def tick(self, nodes: Sequence[NodeFinding] = (), pods: Sequence[PodFinding] = ()) -> Any:
        report = await self.actions.reconcile(nodes, pods)
        await self.recorder.flush()
        return report

    def node(self) -> JSONObject:
        obj: JSONObject = self.sim.registry.get(NODES, "", "node-1").decode()
        return obj

    def taints(self) -> list[dict[str, Any]]:
        return list(self.node().get("spec", {}).get("taints") or [])

    def pod(self, name: str, ns: str = "default") -> JSONObject | None:
        found = self.sim.registry.find("pods", ns, name)
        return found.decode() if found is not None else None

    def finding(self, name: str, state: CaptureState, ns: str = "default", **extra: Any) -> PodFinding:
        pod = self.pod(name, ns)
        assert pod is not None
        meta = pod["metadata"]
        owners = meta.get("ownerReferences") or []
        return PodFinding(
            namespace=ns, name=name, uid=meta["uid"], resource_version=meta["resourceVersion"], state=state,
            message=f"capture {state.value}", labels=meta.get("labels") or {},
            owner_kind=owners[0]["kind"] if owners else "", terminating="deletionTimestamp" in meta, **extra,
        )  # fmt: skip

    async def events(self, ns: str = "default") -> list[dict[str, Any]]:
        body = orjson.loads(await self.client.send("GET", f"/api/v1/namespaces/{ns}/events"))
        return [e for e in body["items"] if (e.get("source") or {}).get("component") == "nodemeta-agent"]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@contextlib.asynccontextmanager
async def guard_on(sim: SimServer, tmp_path: Path, settings: ActionSettings, **kw: Any) -> AsyncIterator[Guard]:
    config = await load_config(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
    async with ApiClient(config) as client:
        guard = Guard(sim, client, settings, **kw)
        task = asyncio.create_task(guard.recorder.run())
        try:
            yield guard
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def raw_sim() -> AsyncIterator[SimServer]:
    async with SimServer(SimSettings(controllers=(), nodes=2, seed=11)) as server:
        yield server


def make_pod(sim: SimServer, name: str, ns: str = "default", owner: dict[str, Any] | None = None) -> None:
    meta: dict[str, Any] = {"name": name, "labels": {"app": name}}
    if owner:
        meta["ownerReferences"] = [owner]
    spec = {"nodeName": "node-1", "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}
    sim.registry.create(PODS, ns, {"metadata": meta, "spec": spec})


RS_OWNER = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-uid", "controller": True}


# -- taint --------------------------------------------------------------------------------------------------------


async def test_taint_follows_the_chain_and_leaves_other_taints_alone(raw_sim: SimServer, tmp_path: Path) -> None:
    raw_sim.registry.patch(NODES, "", "node-1", "merge", {"spec": {"taints": [OTHER_TAINT]}})
    async with guard_on(raw_sim, tmp_path, ActionSettings(taint_clear_after=30)) as g:
        report = await g.tick(BROKEN)
        assert report.taint == "added"
        assert g.taints() == [OTHER_TAINT, TAINT]
        assert g.sample("nodemeta_cni_taint_set") == 1 and g.sample("nodemeta_cni_config_valid") == 0
        assert g.sample("nodemeta_cni_findings", code="CNIPluginMissing") == 1
        rv = g.node()["metadata"]["resourceVersion"]
        # Still broken: nothing to write, the node is untouched.
        g.clock.now += 5
        assert (await g.tick(BROKEN)).taint == ""
        assert g.node()["metadata"]["resourceVersion"] == rv
        # Healthy, but not for long enough: the taint stays (hysteresis).
        g.clock.now += 5
        assert (await g.tick([])).taint == ""
        assert TAINT in g.taints()
        g.clock.now += 29
        assert (await g.tick([])).taint == ""
        g.clock.now += 2
        assert (await g.tick([])).taint == "removed"
        assert g.taints() == [OTHER_TAINT]
        assert g.sample("nodemeta_cni_taint_set") == 0 and g.sample("nodemeta_cni_config_valid") == 1
        assert g.sample("nodemeta_cni_findings", code="CNIPluginMissing") == 0
        reasons = [e["reason"] for e in await g.events()]
        assert reasons.count(REASON_TAINT_ADDED) == 1 and reasons.count(REASON_TAINT_REMOVED) == 1
        assert REASON_CHAIN_HEALTHY in reasons


async def test_taint_is_never_duplicated_and_is_put_back_after_removal(raw_sim: SimServer, tmp_path: Path) -> None:
    # A duplicate of ours, left by someone: the resync collapses it to one.
    raw_sim.registry.patch(NODES, "", "node-1", "merge", {"spec": {"taints": [TAINT, OTHER_TAINT, TAINT]}})
    async with guard_on(raw_sim, tmp_path, ActionSettings(taint_resync=60)) as g:
        await g.tick(BROKEN)
        assert g.taints() == [OTHER_TAINT, TAINT]
        # An operator removes our taint while the chain is still broken: put back at the next resync.
        raw_sim.registry.patch(NODES, "", "node-1", "merge", {"spec": {"taints": [OTHER_TAINT]}})
        g.clock.now += 61
        assert (await g.tick(BROKEN)).taint == "added"
        assert g.taints() == [OTHER_TAINT, TAINT]


class RacingWriter(Writer):
    """The real writer, but another party changes the node's taints right before our first node PATCH."""

    raced = 0

    async def patch(
        self,
        ref: ObjectPath,
        patch: JSONObject | list[JSONObject],
        patch_type: PatchType = PatchType.MERGE,
        *,
        subresource: str = "",
    ) -> JSONObject:
        if ref.plural == "nodes" and not self.raced:
            self.raced += 1
            self.sim.registry.patch(NODES, "", ref.name, "merge", {"spec": {"taints": [OTHER_TAINT]}})
        return await super().patch(ref, patch, patch_type, subresource=subresource)

    sim: SimServer


async def test_a_concurrent_node_writer_causes_a_conflict_and_a_retry(raw_sim: SimServer, tmp_path: Path) -> None:
    config = await load_config(str(raw_sim.write_kubeconfig(tmp_path / "kc-race")))
    async with ApiClient(config) as client:
        racing = RacingWriter(client)
        racing.sim = raw_sim
        async with guard_on(raw_sim, tmp_path, ActionSettings(), writer=racing) as g:
            report = await g.tick(BROKEN)
    assert racing.raced == 1 and report.taint == "added"
    # Our write was refused (409) and redone on the fresh node: the other writer's taint survived.
    assert g.taints() == [OTHER_TAINT, TAINT]


async def test_taint_switch_off(raw_sim: SimServer, tmp_path: Path) -> None:
    async with guard_on(raw_sim, tmp_path, ActionSettings(taint=False)) as g:
        await g.tick(BROKEN)
        assert g.taints() == []


# -- events -------------------------------------------------------------------------------------------------------


async def test_node_findings_become_events_repeated_as_counts(raw_sim: SimServer, tmp_path: Path) -> None:
    async with guard_on(raw_sim, tmp_path, ActionSettings(taint=False, event_repeat_interval=600)) as g:
        findings = [*BROKEN, NodeFinding("CNIRuntimeStale", "the runtime has not reloaded", Severity.WARNING)]
        for _ in range(5):  # five ticks within the repeat interval: one occurrence each
            await g.tick(findings)
            g.clock.now += 10
        g.clock.now += 600
        await g.tick(findings)
        stored = {e["reason"]: e for e in await g.events()}
        assert set(stored) == {"CNIPluginMissing", "CNIRuntimeStale"}
        assert stored["CNIPluginMissing"]["count"] == 2 and stored["CNIPluginMissing"]["type"] == "Warning"
        assert stored["CNIPluginMissing"]["involvedObject"]["kind"] == "Node"
        assert stored["CNIRuntimeStale"]["count"] == 2


async def test_pod_events_and_labels_follow_the_capture_state(raw_sim: SimServer, tmp_path: Path) -> None:
    raw_sim.registry.create(res("", "namespaces"), "", {"metadata": {"name": "shop"}})
    make_pod(raw_sim, "web", "shop", RS_OWNER)
    make_pod(raw_sim, "db", "shop", RS_OWNER)
    async with guard_on(raw_sim, tmp_path, ActionSettings(taint=False)) as g:
        report_rv = g.finding("web", CaptureState.MISSING, "shop").resource_version
        report = await g.tick(
            [], [g.finding("web", CaptureState.MISSING, "shop"), g.finding("db", CaptureState.CAPTURED, "shop")]
        )
        assert report.labeled == ["shop/web"]
        assert (g.pod("web", "shop") or {})["metadata"]["labels"] == {"app": "web", LABEL: "true"}
        assert LABEL not in (g.pod("db", "shop") or {})["metadata"]["labels"]
        assert g.sample("nodemeta_cni_pods", state="missing") == 1
        assert g.sample("nodemeta_cni_pods", state="captured") == 1
        assert g.sample("nodemeta_cni_repair_pods_total", type="label", result="success") == 1
        # A finding read before our own write (an informer that lags): our write already did it, no second one.
        stale = g.finding("web", CaptureState.MISSING, "shop")
        assert (await g.tick([], [replace(stale, resource_version=report_rv, labels={"app": "web"})])).labeled == []
        # Same state again, with the label now present: no write, no new Event.
        rv = (g.pod("web", "shop") or {})["metadata"]["resourceVersion"]
        assert (await g.tick([], [g.finding("web", CaptureState.MISSING, "shop")])).labeled == []
        assert (g.pod("web", "shop") or {})["metadata"]["resourceVersion"] == rv
        # Captured again: label removed, a Normal Event says so.
        report = await g.tick([], [g.finding("web", CaptureState.CAPTURED, "shop")])
        assert report.unlabeled == ["shop/web"]
        assert (g.pod("web", "shop") or {})["metadata"]["labels"] == {"app": "web"}
        stored = await g.events("shop")
        assert [(e["reason"], e["count"], e["involvedObject"]["name"]) for e in stored] == [
            (REASON_NOT_CAPTURED, 1, "web"),
            (REASON_CAPTURE_RESTORED, 1, "web"),
        ]
        assert g.sample("nodemeta_cni_repair_pods_total", type="label", result="success") == 2
        assert g.sample("nodemeta_cni_events_total", result="created") == 2
        assert g.sample("nodemeta_cni_events_total", result="failed") == 0


# -- deletion -----------------------------------------------------------------------------------------------------

DELETE = ActionSettings(taint=False, delete=True, delete_after=0)


async def test_a_replaced_pod_is_never_deleted(raw_sim: SimServer, tmp_path: Path) -> None:
    make_pod(raw_sim, "job-a", owner=RS_OWNER)
    async with guard_on(raw_sim, tmp_path, replace(DELETE, label=False)) as g:
        judged = g.finding("job-a", CaptureState.MISSING)
        # The pod is replaced under the same name before the action runs.
        raw_sim.registry.delete(PODS, "default", "job-a", DeleteOptions(grace_period=0))
        make_pod(raw_sim, "job-a", owner=RS_OWNER)
        new_uid = (g.pod("job-a") or {})["metadata"]["uid"]
        assert new_uid != judged.uid
        report = await g.tick([], [judged])
        assert report.deleted == [] and report.held == {"default/job-a": "delete: precondition_failed"}
        pod = g.pod("job-a")
        assert pod is not None and pod["metadata"]["uid"] == new_uid and "deletionTimestamp" not in pod["metadata"]
        assert g.sample("nodemeta_cni_repair_pods_total", type="delete", result="precondition_failed") == 1


async def test_delete_uses_the_resource_version_of_its_own_label_write(raw_sim: SimServer, tmp_path: Path) -> None:
    """Labelled on one tick, deleted on a later one from a finding read before the label: still the same pod."""
    make_pod(raw_sim, "web", owner=RS_OWNER)
    async with guard_on(raw_sim, tmp_path, replace(DELETE, delete_after=10)) as g:
        judged = g.finding("web", CaptureState.PARTIAL)
        assert (await g.tick([], [judged])).labeled == ["default/web"]
        g.clock.now += 11
        report = await g.tick([], [judged])
        assert report.deleted == ["default/web"]
        assert "deletionTimestamp" in (g.pod("web") or {"metadata": {"deletionTimestamp": "gone"}})["metadata"]


async def test_deletions_are_held_while_broken_for_bare_pods_and_by_rate_and_cap(
    raw_sim: SimServer, tmp_path: Path
) -> None:
    for name in ("a", "b", "c", "d"):
        make_pod(raw_sim, name, owner=RS_OWNER)
    make_pod(raw_sim, "bare")
    settings = replace(DELETE, label=False, delete_burst=1, delete_interval=30, delete_cap=2, delete_cap_window=3600)
    async with guard_on(raw_sim, tmp_path, settings) as g:

        def findings() -> list[PodFinding]:
            return [g.finding(n, CaptureState.MISSING) for n in ("a", "b", "c", "d", "bare") if g.pod(n)]

        report = await g.tick(BROKEN, findings())
        assert report.deleted == [] and set(report.held.values()) == {"the node's CNI configuration is broken"}
        report = await g.tick([], findings())
        assert report.deleted == ["default/a"]
        assert report.held == {
            "default/b": "rate limited", "default/c": "rate limited", "default/d": "rate limited",
            "default/bare": "bare pod (no controller would recreate it)",
        }  # fmt: skip
        g.clock.now += 30
        assert (await g.tick([], findings())).deleted == ["default/b"]
        g.clock.now += 30
        report = await g.tick([], findings())
        assert report.deleted == [] and report.held["default/c"].startswith("cap of 2")
        assert [e["reason"] for e in await g.events() if e["reason"] == REASON_REPAIR_LIMIT] == [REASON_REPAIR_LIMIT]
        assert g.sample("nodemeta_cni_repair_pods_total", type="delete", result="success") == 2
        # The window slides: deletions resume.
        g.clock.now += 3600
        assert (await g.tick([], findings())).deleted == ["default/c"]


async def test_a_job_pod_that_never_restarts_is_deleted_and_replaced(tmp_path: Path) -> None:
    sim_settings = SimSettings(nodes=1, seed=5, controllers=("job", "scheduler", "kubelet"), kubelet_stop_seconds=0.05)
    async with SimServer(sim_settings) as sim:
        template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox:1.36"}]}}
        sim.registry.create(JOBS, "default", {"metadata": {"name": "once"}, "spec": {"template": template}})
        async with asyncio.timeout(10):
            await sim.settle()
        [first] = [s.decode() for s in sim.registry.iter_objects(PODS, "default")]
        assert first["spec"]["restartPolicy"] == "Never" and first["spec"]["nodeName"] == "node-1"
        async with guard_on(sim, tmp_path, DELETE) as g:
            report = await g.tick([], [g.finding(first["metadata"]["name"], CaptureState.MISSING)])
            assert report.deleted == [f"default/{first['metadata']['name']}"]
            # The kubelet stand-in stops the containers and removes the pod; the Job controller replaces it.
            async with asyncio.timeout(10):
                while sim.registry.find("pods", "default", first["metadata"]["name"]) is not None:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                await sim.settle()
            pods = [s.decode() for s in sim.registry.iter_objects(PODS, "default")]
            assert len(pods) == 1 and pods[0]["metadata"]["ownerReferences"][0]["name"] == "once"
            deleted = [e for e in await g.events() if e["reason"] == REASON_POD_DELETED]
            assert [e["involvedObject"]["uid"] for e in deleted] == [first["metadata"]["uid"]]


# -- kubectl ------------------------------------------------------------------------------------------------------


@pytest.mark.kubectl
async def test_kubectl_describe_node_shows_the_taint_and_the_events(raw_sim: SimServer, tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed")
    async with guard_on(raw_sim, tmp_path, ActionSettings()) as g:
        await g.tick(BROKEN)
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig"), "HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        kubectl, "describe", "node", "node-1", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    taint_line = next(ln for ln in text.splitlines() if ln.startswith("Taints:"))
    assert "nodemeta.io/cni-not-ready:NoSchedule" in taint_line
    assert "CNIPluginMissing" in text and REASON_TAINT_ADDED in text
