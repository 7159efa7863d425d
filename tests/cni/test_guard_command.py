"""`nodemeta cni guard` as a person runs it: a process against the simulator's API and a real conf dir, its probe
and metrics listeners, SIGTERM, and unusable options. No runtime answers here (the socket does not exist): the
configuration side works alone, and each pod audit fails and is counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from nodemeta.kube import ApiClient, load_config
from nodemeta.sim import SimServer, SimSettings
from tests.processes import nodemeta_process

TAINT = "nodemeta.io/cni-not-ready"
PRIMARY = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [{"type": "calico"}]}
CHAINED = {**PRIMARY, "plugins": [{"type": "calico"}, {"type": "linkerd-cni"}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _guard(*args: str) -> contextlib.AbstractAsyncContextManager[asyncio.subprocess.Process]:
    return nodemeta_process("cni", "guard", *args)


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    with contextlib.suppress(aiohttp.ClientError, OSError):
        async with session.get(url) as response:
            return response.status, await response.read()
    return 0, b""


async def test_the_guard_alone_taints_serves_its_state_and_stops_on_sigterm(tmp_path: Path) -> None:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    (conf_dir / "10-calico.conflist").write_text(json.dumps(CHAINED))
    probe, metrics = _free_port(), _free_port()
    async with SimServer(SimSettings(nodes=1, seed=3, controllers=())) as sim:
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        node = "node-1"
        async with (
            ApiClient(await load_config(str(kubeconfig))) as client,
            _guard(
                "--node-name",
                node,
                "--kubeconfig",
                str(kubeconfig),
                "--cri-socket",
                str(tmp_path / "none.sock"),
                "--conf-dir",
                str(conf_dir),
                "--preset",
                "linkerd",
                "--audit-interval",
                "0.2",
                "--taint-clear-after",
                "0.5",
                "--metrics-bind-address",
                f"127.0.0.1:{metrics}",
                "--health-probe-bind-address",
                f"127.0.0.1:{probe}",
            ),  # fmt: skip
            aiohttp.ClientSession() as http,
        ):

            async def taints() -> list[str]:
                obj = orjson.loads(await client.send("GET", f"/api/v1/nodes/{node}"))
                return [t["key"] for t in obj.get("spec", {}).get("taints") or ()]

            async def state() -> Any:
                status, body = await _get(http, f"http://127.0.0.1:{probe}/v1/cni")
                return orjson.loads(body) if status == 200 else None

            async with asyncio.timeout(30):
                while (await _get(http, f"http://127.0.0.1:{probe}/readyz"))[0] != 200:  # noqa: ASYNC110 - polled
                    await asyncio.sleep(0.1)
                healthy = await state()
                assert healthy["configValid"] is True and healthy["chain"] == ["calico", "linkerd-cni"]
                assert await taints() == []
                # Without a runtime each tick's pod audit fails; the configuration side goes on.
                while not (await state())["failedTicks"]:  # noqa: ASYNC110 - another process, polled
                    await asyncio.sleep(0.1)
                assert "NoRuntimeFound" in (await state())["lastError"]

                (conf_dir / "10-calico.conflist").write_text(json.dumps(PRIMARY))  # in place, without the mesh
                while TAINT not in await taints():  # noqa: ASYNC110 - the API server's state, polled
                    await asyncio.sleep(0.1)
                broken = await state()
                assert broken["configValid"] is False and broken["taint"] is True
                status, body = await _get(http, f"http://127.0.0.1:{metrics}/metrics")
                assert status == 200 and b"nodemeta_cni_taint_set 1.0" in body
                assert b"nodemeta_cni_config_valid 0.0" in body

                (conf_dir / "10-calico.conflist").write_text(json.dumps(CHAINED))
                while TAINT in await taints():  # noqa: ASYNC110 - the API server's state, polled
                    await asyncio.sleep(0.1)


async def test_unusable_options_exit_64_with_the_reason(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NODE_NAME"}
    for args, message in (
        ((), "no node name"),
        (("--node-name", "n", "--audit-interval", "-1"), "--audit-interval must be positive"),
        (("--node-name", "n", "--metrics-bind-address", "nowhere"), "--metrics-bind-address"),
    ):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nodemeta.cli", "cni", "guard", *args,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        async with asyncio.timeout(30):
            _, err = await process.communicate()
        assert process.returncode == 64, err
        assert message in err.decode()
