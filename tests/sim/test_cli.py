"""`nodemeta sim serve` as a user runs it: a real process, its kubeconfig, kubectl, signals and bad arguments."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

import pytest

NODEMETA = [sys.executable, "-m", "nodemeta.cli"]


async def wait_for_file(path: Path, proc: asyncio.subprocess.Process, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(path.exists):
            assert proc.returncode is None, "the server exited before writing its kubeconfig"
            await asyncio.sleep(0.05)


async def test_serve_writes_kubeconfig_answers_kubectl_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed")
    kubeconfig = tmp_path / "kc.yaml"
    proc = await asyncio.create_subprocess_exec(
        *NODEMETA, "sim", "serve", "--port", "0", "--nodes", "3", "--kubeconfig", str(kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_for_file(kubeconfig, proc)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
        get = await asyncio.create_subprocess_exec(
            kubectl,
            "get",
            "nodes",
            "-o",
            "json",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(get.communicate(), 30)
        assert get.returncode == 0, err.decode()
        names = sorted(n["metadata"]["name"] for n in json.loads(out)["items"])
        assert names == ["node-1", "node-2", "node-3"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, stderr.decode()
    assert "serving the Kubernetes API at http://127.0.0.1:" in stderr.decode()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--port", "70000"], 2, "port must be 0-65535"),
        (["--nodes", "-1"], 2, "must be >= 0"),
        (["--nodes", "many"], 2, "invalid"),
        (["--heap-refreeze-writes", "-5"], 2, "must be >= 0"),
    ],
)
async def test_bad_arguments_are_usage_errors(args: list[str], code: int, message: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *NODEMETA, "sim", "serve", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == code
    assert message in err.decode()


async def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            *NODEMETA,
            "sim",
            "serve",
            "--port",
            str(port),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err.decode()


async def test_generated_cluster_with_churn(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed")
    kubeconfig = tmp_path / "kc.yaml"
    proc = await asyncio.create_subprocess_exec(
        *NODEMETA, "sim", "serve", "--nodes", "4", "--pods-per-node", "6", "--seed", "3", "--churn-rate", "5",
        "--heap-refreeze-writes", "50", "--kubeconfig", str(kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(90):
            # The build writes far more than 50 changes: the flag's threshold makes the server refreeze.
            while not (any(line.startswith("churning at") for line in lines) and any("heap refrozen" in line
                                                                                      for line in lines)):  # fmt: skip
                raw = await proc.stderr.readline()
                assert raw, f"the server ended early: {lines}"
                lines.append(raw.decode().strip())
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
        get = await asyncio.create_subprocess_exec(
            kubectl, "get", "pods", "-A", "--field-selector", "status.phase=Running", "-o", "json",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(get.communicate(), 30)
        assert get.returncode == 0, err.decode()
        running = json.loads(out)["items"]
        assert {p["spec"]["nodeName"] for p in running} == {"node-1", "node-2", "node-3", "node-4"}
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    assert any(line.startswith("cluster ready:") for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--churn-rate", "5"], "--churn-rate needs a generated cluster"),
        (["--pods-per-node", "5"], "--pods-per-node needs --nodes"),
        (["--nodes", "2", "--churn-mix", "teleport=1"], "teleport"),
        (["--controllers", "sheduler"], "unknown controllers: sheduler"),
    ],
)
async def test_generator_flag_errors(args: list[str], message: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *NODEMETA, "sim", "serve", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert message in err.decode()
