"""The guard as a running service: a real watcher on a real directory, real actions against the simulator over
HTTP. Files change under it the way installers change them; the Node's taint and Events are read back from the API."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from nodemeta.cni import patterns
from nodemeta.cni.actions import ActionSettings, CaptureState, ChainActions, PodFinding, Severity
from nodemeta.cni.conf import RuntimeModel
from nodemeta.cni.guard import Guard, GuardSettings, PodSource, node_findings
from nodemeta.cni.metrics import CniMetrics
from nodemeta.cni.watch import ConfWatcher, WatchSettings
from nodemeta.kube import ApiClient, Recorder, RecorderSettings, Writer, load_config
from nodemeta.sim import SimServer, SimSettings

TAINT_KEY = "nodemeta.io/cni-not-ready"
PRIMARY = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [{"type": "calico"}]}
CHAINED = {**PRIMARY, "plugins": [{"type": "calico"}, {"type": "linkerd-cni"}]}


class PodList:
    """The pod source: what a capture audit would say, set by the test."""

    def __init__(self) -> None:
        self.findings: list[PodFinding] = []
        self.calls = 0

    async def pod_findings(self) -> Sequence[PodFinding]:
        self.calls += 1
        return list(self.findings)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[SimServer, ApiClient]]:
    async with SimServer(SimSettings(nodes=1, seed=3, controllers=())) as sim:
        config = await load_config(str(sim.write_kubeconfig(tmp_path / "kubeconfig")))
        async with ApiClient(config) as client:
            yield sim, client


async def _node(client: ApiClient, name: str) -> Any:
    return orjson.loads(await client.send("GET", f"/api/v1/nodes/{name}"))


async def _taints(client: ApiClient, name: str) -> list[str]:
    return [t["key"] for t in (await _node(client, name)).get("spec", {}).get("taints", [])]


async def _event_reasons(client: ApiClient) -> dict[str, int]:
    events = orjson.loads(await client.send("GET", "/api/v1/namespaces/default/events"))["items"]
    return {e["reason"]: e.get("count", 1) for e in events}


async def _until(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _write(path: Path, conflist: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(conflist))
    tmp.rename(path)


@contextlib.asynccontextmanager
async def _running_guard(
    client: ApiClient,
    node: str,
    conf_dir: Path,
    pods: PodSource,
    *,
    audit_interval: float,
    actions: ActionSettings | None = None,
    watch: WatchSettings | None = None,
) -> AsyncIterator[tuple[Guard, Recorder]]:
    """The guard wired as the agent wires it (watcher, recorder, actions against `client`), running for the block."""
    writer = Writer(client)
    recorder = Recorder(writer, host=node, settings=RecorderSettings(retry_interval=0.01))
    chain = ChainActions(writer, recorder, CniMetrics(CollectorRegistry(), recorder.stats), node_name=node,
                         settings=actions)  # fmt: skip
    watcher = ConfWatcher(conf_dir, model=RuntimeModel(), required=["linkerd-cni"], settings=watch)
    guard = Guard(watcher, chain, recorder, pods=pods, settings=GuardSettings(audit_interval=audit_interval))
    task = asyncio.create_task(guard.run())
    try:
        yield guard, recorder
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_guard_taints_the_node_while_the_chain_is_broken_and_clears_it_when_fixed(
    cluster: tuple[SimServer, ApiClient], tmp_path: Path
) -> None:
    _sim, client = cluster
    node = orjson.loads(await client.send("GET", "/api/v1/nodes"))["items"][0]["metadata"]["name"]
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    _write(conf_dir / "10-calico.conflist", CHAINED)

    pods = PodList()
    settings = WatchSettings(debounce=0.05, max_delay=0.2, rescan_interval=5)
    async with _running_guard(client, node, conf_dir, pods, audit_interval=0.2, watch=settings,
                              actions=ActionSettings(taint_clear_after=0.2)) as (guard, recorder):  # fmt: skip
        await guard.wait_ticks(1)
        assert await _taints(client, node) == []

        # The primary plugin rewrites its file in place without the mesh entry (Calico's truncate + write).
        with (conf_dir / "10-calico.conflist").open("w") as f:
            f.write(json.dumps(PRIMARY))
        await _until(lambda: _has_taint(client, node), "the taint")
        await recorder.flush()
        reasons = await _event_reasons(client)
        assert "CNIPluginMissing" in reasons or "CNIRewriteDroppedPlugin" in reasons, reasons

        # The mesh installer patches it back: the taint goes after the hold time.
        _write(conf_dir / "10-calico.conflist", CHAINED)
        await _until(lambda: _no_taint(client, node), "the taint to be removed")
        assert pods.calls >= 2


async def _has_taint(client: ApiClient, node: str) -> bool:
    return TAINT_KEY in await _taints(client, node)


async def _no_taint(client: ApiClient, node: str) -> bool:
    return TAINT_KEY not in await _taints(client, node)


async def test_a_failing_pod_source_does_not_stop_the_guard(
    cluster: tuple[SimServer, ApiClient], tmp_path: Path
) -> None:
    _sim, client = cluster
    node = orjson.loads(await client.send("GET", "/api/v1/nodes"))["items"][0]["metadata"]["name"]
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    _write(conf_dir / "10-calico.conflist", PRIMARY)

    class Failing:
        calls = 0

        async def pod_findings(self) -> Sequence[PodFinding]:
            Failing.calls += 1
            if Failing.calls == 1:
                raise OSError("netns vanished")
            return [PodFinding(namespace="default", name="p", uid="u-1", resource_version="1",
                               state=CaptureState.UNKNOWN)]  # fmt: skip

    async with _running_guard(client, node, conf_dir, Failing(), audit_interval=0.05) as (guard, _recorder):
        await guard.wait_ticks(3)
        assert guard.failed_ticks == 1
        # The broken chain (no linkerd-cni in the only file) was acted on by the ticks that did run.
        await _until(lambda: _has_taint(client, node), "the taint")


def test_config_findings_map_onto_node_findings() -> None:
    findings = [
        patterns.Finding(patterns.Code.PLUGIN_MISSING, patterns.Severity.CRITICAL, "10-a.conflist", "gone"),
        patterns.Finding(patterns.Code.JSON_SHADOW, patterns.Severity.WARNING, "", "shadow"),
    ]
    mapped = node_findings(findings)
    assert [(f.code, f.severity, f.message) for f in mapped] == [
        ("CNIPluginMissing", Severity.ERROR, "gone (10-a.conflist)"),
        ("CNIJsonShadow", Severity.WARNING, "shadow"),
    ]


async def test_while_the_pod_source_fails_known_pods_turn_unknown_and_the_node_is_still_gated(
    cluster: tuple[SimServer, ApiClient], tmp_path: Path
) -> None:
    _sim, client = cluster
    node = orjson.loads(await client.send("GET", "/api/v1/nodes"))["items"][0]["metadata"]["name"]
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    _write(conf_dir / "10-calico.conflist", PRIMARY)  # broken for linkerd-cni from the start

    class Flaky:
        fail = False

        async def pod_findings(self) -> Sequence[PodFinding]:
            if Flaky.fail:
                raise OSError("runtime gone")
            return [PodFinding(namespace="default", name="p", uid="u-1", resource_version="",
                               state=CaptureState.CAPTURED)]  # fmt: skip

    async with _running_guard(client, node, conf_dir, Flaky(), audit_interval=0.05) as (guard, _recorder):
        await guard.wait_ticks(1)
        assert guard.status()["pods"][0]["state"] == "captured" and guard.failed_ticks == 0
        Flaky.fail = True
        await guard.wait_ticks(guard.ticks + 2)
        state = guard.status()
        assert state["failedTicks"] >= 2 and "runtime gone" in state["lastError"]
        assert [(p["uid"], p["state"]) for p in state["pods"]] == [("u-1", "unknown")]
        assert "runtime gone" in state["pods"][0]["message"]
        # The reconcile still ran on the configuration: the taint is there (checked on the API server).
        await _until(lambda: _has_taint(client, node), "the taint")
        assert state["configValid"] is False and "CNIPluginMissing" in {f["code"] for f in state["findings"]}
