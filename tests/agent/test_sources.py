"""Metadata from a real collector (in-process, real gRPC) and from direct API watches, both against the simulator
over HTTP: the agent's store equals the simulator's ground truth for the node (`nodemeta.sim.truth`), after the
initial sync and after churn (a pod deleted, labels changed, a Service selector changed, a pod moved to another
node); the collector source also resumes after the collector restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodemeta.agent.app import Agent
from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.registry import DeleteOptions
from tests.agent.fake_runtime import FakeRuntime
from tests.agent.helpers import agent_settings, collector, direct, eventually, running_agent, truth_payloads
from tests.collector.test_app import POD_RES, SVC_RES, e2e_resources, res, running_collector, settled_view

NODE = "node-1"
NS = "nginx-test"


def _bare_pod(name: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    }


async def churn(sim: SimServer) -> None:
    reg = sim.registry
    reg.create(POD_RES, NS, _bare_pod("mover", NODE, {"role": "mover"}))
    await settled_view(sim, NODE)
    # A deployment pod deleted (its ReplicaSet makes another).
    victim = next(s for s in reg.iter_objects(POD_RES, NS) if s.key.split("/")[1].startswith("nginx-deployment-"))
    reg.delete(POD_RES, NS, victim.key.split("/")[1], DeleteOptions(grace_period=0))
    # Labels changed on the bare pod.
    pod = reg.get(POD_RES, NS, "nginx").decode()
    pod["metadata"]["labels"] = {**pod["metadata"]["labels"], "tier": "edge"}
    reg.update(POD_RES, NS, "nginx", pod)
    # A Service's selector changed.
    svc = reg.get(SVC_RES, NS, "nginx-service-second-service").decode()
    svc["spec"]["selector"] = {"tier": "edge"}
    reg.update(SVC_RES, NS, "nginx-service-second-service", svc)
    # A pod moved: gone from this node, recreated on the other.
    reg.delete(POD_RES, NS, "mover", DeleteOptions(grace_period=0))
    await sim.settle()
    reg.create(POD_RES, NS, _bare_pod("mover", "node-2", {"role": "mover"}))


async def _check(sim: SimServer, agent: Agent) -> None:
    await settled_view(sim, NODE)
    await eventually(lambda: agent.store.payloads() == truth_payloads(sim, NODE), what="store equals the truth")
    assert agent.metadata_synced


async def test_collector_source_equals_the_truth_with_churn_and_a_collector_restart(tmp_path: Path) -> None:
    async with SimServer(SimSettings(nodes=2, seed=5, kubelet_stop_seconds=0.05)) as sim:
        e2e_resources(sim, NS)
        await settled_view(sim, NODE)
        first = running_collector(sim, tmp_path)
        port = (await first.__aenter__()).grpc_port
        try:
            async with running_agent(agent_settings(tmp_path, NODE), FakeRuntime(), collector(port, NODE)) as agent:
                await _check(sim, agent)
                kinds = {kind for kind, _ in agent.store.payloads()}
                assert {"Pod", "Namespace", "Deployment", "ReplicaSet", "Service"} <= kinds
                await churn(sim)
                await _check(sim, agent)
                # The collector goes away; the agent keeps what it has, and changes happen meanwhile.
                await first.__aexit__(None, None, None)
                await eventually(lambda: agent.metrics.stream_reconnects._value.get() >= 1, what="reconnecting")
                held = agent.store.payloads()
                assert held and agent.readiness().ready
                sim.registry.delete(POD_RES, NS, "nginx", DeleteOptions(grace_period=0))
                async with running_collector(sim, tmp_path, broker_address=_port(port)):
                    await _check(sim, agent)
                assert agent.metrics.stream_reconnects._value.get() >= 1
        finally:
            await first.__aexit__(None, None, None)


def _port(port: int) -> Any:
    from nodemeta.addresses import BindAddress

    return BindAddress.parse(f"127.0.0.1:{port}")


async def test_direct_source_equals_the_truth_with_churn(tmp_path: Path) -> None:
    async with SimServer(SimSettings(nodes=2, seed=5, kubelet_stop_seconds=0.05)) as sim:
        e2e_resources(sim, NS)
        await settled_view(sim, NODE)
        source = await direct(sim, tmp_path, NODE)
        async with running_agent(agent_settings(tmp_path, NODE), FakeRuntime(), source) as agent:
            await _check(sim, agent)
            await churn(sim)
            await _check(sim, agent)


async def test_a_jobs_cronjob_reaches_the_agent_from_both_sources(tmp_path: Path) -> None:
    """The stream names a Job's CronJob in the Job's refs, so the owner chain is the same from the collector as
    from direct watches: pod -> Job -> CronJob."""
    async with SimServer(SimSettings(nodes=1, seed=5, kubelet_stop_seconds=0.05)) as sim:
        reg = sim.registry
        reg.create(res("", "namespaces"), "", {"metadata": {"name": NS}})
        cronjob = reg.create(res("batch", "cronjobs"), NS, {
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}},
        }).stored  # fmt: skip
        owner = {"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": cronjob.uid, "controller": True}
        template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
        job = reg.create(res("batch", "jobs"), NS, {
            "metadata": {"name": "nightly-1", "ownerReferences": [owner]}, "spec": {"template": template},
        }).stored  # fmt: skip
        await settled_view(sim, NODE)
        pod_uid = next(s.uid for s in reg.iter_objects(POD_RES, NS) if s.key.split("/")[1].startswith("nightly-1-"))
        want = [("Job", job.uid, "nightly-1"), ("CronJob", cronjob.uid, "nightly")]

        def owners(agent: Agent) -> list[tuple[str, str, str]]:
            record = agent.joiner.by_pod(pod_uid)
            found = record["pod"]["owners"] if record is not None else []
            return [(o["kind"], o["uid"], o["name"]) for o in found]

        async with (
            running_collector(sim, tmp_path) as running,
            running_agent(agent_settings(tmp_path, NODE), FakeRuntime(), collector(running.grpc_port, NODE)) as agent,
        ):
            await _check(sim, agent)
            assert owners(agent) == want
        async with running_agent(
            agent_settings(tmp_path, NODE), FakeRuntime(), await direct(sim, tmp_path, NODE)
        ) as agent:
            await _check(sim, agent)
            assert owners(agent) == want
