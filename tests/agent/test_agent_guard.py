"""The CNI chain guard inside the agent: parsed from `nodemeta agent run`'s own options, built on the agent's runtime
and metrics registry, run in its task group. The simulator over HTTP is the API server; a real conf dir is watched.
The lab end-to-end test (tests/cni/test_lab_guard_e2e.py) runs the same as a process on a real containerd."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from nodemeta.agent.app import Agent
from nodemeta.agent.cni_guard import guard_config, open_agent_guard
from nodemeta.agent.metrics import AgentMetrics
from nodemeta.cli import build_parser
from nodemeta.cni.conf import RuntimeKind
from nodemeta.cni.options import OptionError
from nodemeta.kube import ApiClient, load_config
from nodemeta.sim import SimServer, SimSettings
from tests.agent.fake_runtime import FakeRuntime
from tests.agent.helpers import agent_settings, eventually, running_agent

TAINT = "nodemeta.io/cni-not-ready"
PRIMARY = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [{"type": "calico"}]}


class IdleSource:
    def __init__(self, sink: Any) -> None:
        self.sink = sink

    async def run(self) -> None:
        self.sink.synced()
        await asyncio.Event().wait()


def _run_args(*flags: str) -> Any:
    return build_parser().parse_args(["agent", "run", "--node-name", "node-1", "--direct", *flags])


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(SimSettings(nodes=1, seed=3, controllers=())) as server:
        yield server


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with session.get(url) as response:
        return response.status, await response.read()


async def test_the_guard_runs_in_the_agents_task_group_and_registry(sim: SimServer, tmp_path: Path) -> None:
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    node = "node-1"
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-calico.conflist").write_text(json.dumps(PRIMARY))  # no linkerd-cni: broken for linkerd
    args = _run_args("--kubeconfig", str(kubeconfig), "--cni-guard", "--cni-conf-dir", str(conf_dir),
                     "--cni-preset", "linkerd", "--cni-audit-interval", "0.1")  # fmt: skip
    config = guard_config(args, "")
    assert config is not None and config.required == ("linkerd-cni",)
    cluster = await load_config(str(kubeconfig))
    metrics = AgentMetrics()
    runtime = FakeRuntime()
    settings = agent_settings(tmp_path, node)
    async with (
        ApiClient(cluster) as client,
        open_agent_guard(config, node_name=node, runtime=runtime, cluster=cluster, registry=metrics.registry) as guard,
    ):
        assert guard is not None
        agent = Agent(settings, runtime, IdleSource, metrics=metrics, cni_guard=guard)
        task = asyncio.create_task(agent.run(), name="agent")
        try:
            async with asyncio.timeout(15):
                await agent.wait_serving()

            async def tainted() -> bool:
                obj = orjson.loads(await client.send("GET", f"/api/v1/nodes/{node}"))
                return TAINT in [t["key"] for t in obj.get("spec", {}).get("taints") or ()]

            async with asyncio.timeout(20):
                while not await tainted():  # noqa: ASYNC110 - the API server's state, polled
                    await asyncio.sleep(0.05)
            async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=settings.api.socket)) as http:
                status, body = await _get(http, "http://agent/v1/cni")
            assert status == 200
            state = orjson.loads(body)
            assert state["node"] == node and state["configValid"] is False and state["taint"] is True
            assert state["winner"] == "10-calico.conflist" and state["chain"] == ["calico"]
            assert "CNIPluginMissing" in {f["code"] for f in state["findings"]}
            assert state["ticks"] >= 1 and state["pods"] == []
            # One registry: the agent's series and the guard's side by side on the agent's metrics port.
            async with aiohttp.ClientSession() as web:
                status, body = await _get(web, f"http://127.0.0.1:{agent.metrics_port}/metrics")
            text = body.decode()
            assert "nodemeta_cni_config_valid 0.0" in text and "nodemeta_cni_taint_set 1.0" in text
            assert "nodemeta_agent_ready" in text
            # The guard does not gate readiness: the agent is ready with the chain broken.
            await eventually(lambda: agent.readiness().ready, what="agent ready")
        finally:
            agent.stop()
            async with asyncio.timeout(15):
                await task
    assert task.done() and task.exception() is None


async def test_v1_cni_answers_404_without_the_guard(tmp_path: Path) -> None:
    settings = agent_settings(tmp_path, "node-1")
    async with (
        running_agent(settings, FakeRuntime(), IdleSource),
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=settings.api.socket)) as http,
    ):
        status, body = await _get(http, "http://agent/v1/cni")
    assert status == 404 and "--cni-guard" in orjson.loads(body)["error"]


def test_the_guard_is_off_by_default_and_its_options_parse() -> None:
    assert guard_config(_run_args(), "/host") is None
    config = guard_config(
        _run_args("--cni-guard", "--cni-runtime", "crio", "--cni-preset", "istio", "--cni-require", "my-mesh",
                  "--cni-require", "istio-cni", "--cni-selector", "linkerd:mesh=on", "--cni-audit-interval", "2",
                  "--no-cni-taint", "--no-cni-label", "--cni-delete-pods", "--cni-taint-clear-after", "3",
                  "--cni-delete-after", "0"),
        "/host",
    )  # fmt: skip
    assert config is not None
    # Defaults go under the host root; given paths are taken as given.
    assert config.conf_dir == "/host/etc/cni/net.d"
    assert config.audit.results.directory == "/host/var/lib/cni/results" and config.audit.proc == "/host/proc"
    assert config.model.kind is RuntimeKind.CRIO and config.required == ("istio-cni", "my-mesh")
    assert config.audit.required_plugins == config.required
    assert [(s.profile, dict(s.labels)) for s in config.audit.policy.selectors] == [("linkerd", {"mesh": "on"})]
    assert config.guard.audit_interval == 2
    a = config.actions
    assert (a.taint, a.events, a.label, a.delete) == (False, True, False, True)
    assert (a.taint_clear_after, a.delete_after) == (3, 0)
    given = guard_config(_run_args("--cni-guard", "--cni-conf-dir", "/etc/x", "--cni-results-dir", "/r"), "/host")
    assert given is not None and given.conf_dir == "/etc/x" and given.audit.results.directory == "/r"
    defaults = guard_config(_run_args("--cni-guard"), "")
    assert defaults is not None and defaults.conf_dir == "/etc/cni/net.d" and not defaults.actions.delete
    assert defaults.actions.taint and defaults.actions.events and defaults.actions.label


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--cni-audit-interval", "0"), "--cni-audit-interval must be positive"),
        (("--cni-taint-clear-after", "-1"), "--cni-taint-clear-after must be positive"),
        (("--cni-delete-after", "-1"), "--cni-delete-after must be 0 or more"),
        (("--cni-require", "a/b"), "--cni-require takes a plugin type"),
        (("--cni-selector", "nomesh:x=y"), "--cni-selector"),
    ],
)
def test_unusable_guard_options_name_the_flag(flags: tuple[str, ...], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        guard_config(_run_args("--cni-guard", *flags), "")


def test_guard_options_without_the_guard_are_refused() -> None:
    with pytest.raises(OptionError, match="--cni-delete-pods, --cni-preset: guard options need --cni-guard"):
        guard_config(_run_args("--cni-delete-pods", "--cni-preset", "linkerd"), "")
