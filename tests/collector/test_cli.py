"""`nodemeta collector run` and `nodemeta watch` on the command line: flags and defaults (the Go collector's), start-up
errors as exit status 1 with a clear message, and the debugging client printing a node's stream over TLS."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from nodemeta.addresses import AddressError, BindAddress
from nodemeta.cli import _collector_settings, build_parser
from nodemeta.collector.settings import SettingsError, TLSFiles
from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.auth import make_tls
from nodemeta.sim.truth import node_view
from tests.collector.test_app import res, running_collector

NODEMETA = [sys.executable, "-m", "nodemeta.cli"]


def test_collector_run_flags_default_to_the_go_collectors() -> None:
    args = build_parser().parse_args(["collector", "run"])
    assert (args.broker_bind_address, args.metrics_bind_address, args.health_probe_bind_address) == (
        ":45000", ":8080", ":8081",
    )  # fmt: skip
    assert (args.broker_server_cert, args.broker_server_key, args.kubeconfig, args.log_level) == ("", "", "", "info")
    settings = _collector_settings(args)
    assert settings.broker_address == BindAddress("0.0.0.0", 45000, ":45000")
    assert settings.metrics_address == BindAddress("0.0.0.0", 8080, ":8080")
    assert settings.probe_address == BindAddress("0.0.0.0", 8081, ":8081")
    assert settings.tls is None


def test_collector_run_flags() -> None:
    args = build_parser().parse_args([
        "collector", "run", "--broker-bind-address=127.0.0.1:45001", "--metrics-bind-address", "0",
        "--health-probe-bind-address", "[::1]:8090", "--broker-server-cert", "c.pem", "--broker-server-key", "k.pem",
        "--kubeconfig", "kc", "--log-level", "debug",
    ])  # fmt: skip
    assert args.log_level == "debug" and args.kubeconfig == "kc"
    settings = _collector_settings(args)
    assert settings.broker_address.target == "127.0.0.1:45001"
    assert settings.metrics_address is None  # "0" disables metrics, as in Go
    assert settings.probe_address.target == "[::1]:8090"
    assert settings.tls == TLSFiles(Path("c.pem"), Path("k.pem"))
    # The top-level --log-level still works, and the zap flag name is accepted.
    assert build_parser().parse_args(["--log-level", "error", "collector", "run"]).log_level == "error"
    assert build_parser().parse_args(["collector", "run", "--zap-log-level", "debug"]).log_level == "debug"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--broker-server-cert", "c.pem"], "--broker-server-cert and --broker-server-key must be given together"),
        (["--broker-server-key", "k.pem"], "--broker-server-cert and --broker-server-key must be given together"),
        (["--broker-bind-address", "45000"], "--broker-bind-address: bind address '45000' must be :PORT"),
        (["--metrics-bind-address", ":x"], "--metrics-bind-address: bind address ':x': port 'x' is not a number"),
    ],
)
def test_bad_flag_values(flags: list[str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        _collector_settings(build_parser().parse_args(["collector", "run", *flags]))
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [(":45000", "0.0.0.0", 45000), ("127.0.0.1:0", "127.0.0.1", 0), ("[::]:8080", "::", 8080), ("node:1", "node", 1)],
)
def test_bind_addresses(text: str, host: str, port: int) -> None:
    address = BindAddress.parse(text)
    assert (address.host, address.port, str(address)) == (host, port, text)


@pytest.mark.parametrize("text", ["45000", ":http", ":70000", "::1:80", "[nothost]:80", ""])
def test_bad_bind_addresses(text: str) -> None:
    with pytest.raises(AddressError):
        BindAddress.parse(text)


def test_watch_flags() -> None:
    args = build_parser().parse_args(["watch", "--node", "node-1"])
    assert (args.node, args.kinds, args.falco, args.address, args.ca_cert) == (
        "node-1",
        "",
        False,
        "localhost:45000",
        "",
    )
    args = build_parser().parse_args(["watch", "--node", "n", "--falco", "--kinds", "Pod,Service", "--address", "h:1"])
    assert (args.falco, args.kinds, args.address) == (True, "Pod,Service", "h:1")


def test_sim_serve_flags_are_unchanged() -> None:
    args = build_parser().parse_args(
        ["--log-level", "debug", "sim", "serve", "--port", "0", "--nodes", "3", "--fault-drop-watches-every", "2"]
    )
    assert (args.command, args.sim_command, args.port, args.nodes) == ("sim", "serve", 0, 3)
    assert (args.fault_drop_watches_every, args.log_level, args.host) == (2.0, "debug", "127.0.0.1")


async def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 20) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *NODEMETA, *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_start_up_errors_exit_1_with_a_clear_message(tmp_path: Path) -> None:
    async with SimServer(SimSettings(nodes=1, controllers=())) as sim:
        kubeconfig = str(sim.write_kubeconfig(tmp_path / "kubeconfig"))
        loopback = ["--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "127.0.0.1:0"]
        run = ["collector", "run", "--kubeconfig", kubeconfig, "--broker-bind-address", "127.0.0.1:0", *loopback]
        no_config_env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
        no_config_env["HOME"] = str(tmp_path)
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = f"127.0.0.1:{taken.getsockname()[1]}"
            cases: list[tuple[list[str], dict[str, str] | None, str]] = [
                (
                    [*run, "--broker-server-cert", str(tmp_path / "missing.crt"), "--broker-server-key", kubeconfig],
                    None,
                    f"cannot read the TLS certificate {tmp_path / 'missing.crt'}: No such file or directory",
                ),
                (["collector", "run", *loopback], no_config_env, "cannot load the Kubernetes configuration"),
                (
                    [*run, "--health-probe-bind-address", busy],
                    None,
                    f"cannot listen on {busy} for the health probe server: address already in use",
                ),
                ([*run, "--broker-bind-address", busy], None, f"cannot listen on {busy}"),
            ]
            results = await asyncio.gather(*(run_cli(*args, env=env) for args, env, _ in cases))
        for (args, _, message), (code, err) in zip(cases, results, strict=True):
            assert code == 1, (args, err)
            # (gRPC's C core may print its own line about a failed bind first.)
            ours = [line for line in err.splitlines() if line.startswith("nodemeta collector run: ")]
            assert len(ours) == 1 and message in ours[0], (args, err)
            assert "Traceback" not in err


async def read_json_lines(stream: asyncio.StreamReader, count: int, timeout: float = 15) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            line = await stream.readline()
            assert line, "the client exited"
            out.append(json.loads(line))
    return out


async def test_watch_prints_a_nodes_stream_over_tls(tmp_path: Path) -> None:
    material = make_tls(["127.0.0.1", "localhost"])
    (tmp_path / "tls.crt").write_bytes(material.cert + material.ca_cert)
    (tmp_path / "tls.key").write_bytes(material.key)
    (tmp_path / "ca.crt").write_bytes(material.ca_cert)
    tls = TLSFiles(tmp_path / "tls.crt", tmp_path / "tls.key")
    async with SimServer(SimSettings(nodes=1, seed=4, controllers=())) as sim:
        sim.registry.create(res("", "namespaces"), "", {"metadata": {"name": "web", "labels": {"team": "web"}}})
        body = {
            "metadata": {"name": "p", "labels": {"app": "x"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx"}]},
        }
        sim.registry.create(res("", "pods"), "web", body)
        truth = node_view(sim.store, "node-1")
        async with running_collector(sim, tmp_path, tls=tls) as collector:
            address = ["--address", f"localhost:{collector.grpc_port}", "--ca-cert", str(tmp_path / "ca.crt")]
            falco = await asyncio.create_subprocess_exec(
                *NODEMETA, "watch", "--falco", "--node", "node-1", "--kinds", "Pod,Namespace", *address,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stream = await asyncio.create_subprocess_exec(
                *NODEMETA, "watch", "--node", "node-1", *address,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            empty = await asyncio.create_subprocess_exec(
                *NODEMETA, "watch", "--falco", "--node", "", *address,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert falco.stdout is not None and stream.stdout is not None
            falco_lines = await read_json_lines(falco.stdout, 2)
            stream_lines = await read_json_lines(stream.stdout, 3)
            # An empty node name is refused with a hint, and the client says so.
            _, err = await asyncio.wait_for(empty.communicate(), 15)
            assert empty.returncode == 1
            assert "stream ended: FAILED_PRECONDITION" in err.decode() and "Downward API" in err.decode()
            # SIGTERM stops the stream client quietly.
            stream.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(stream.wait(), 15) == 0
        # The collector stopped: its streams end with UNAVAILABLE, which the client reports (exit 1).
        _, err = await asyncio.wait_for(falco.communicate(), 15)
        assert falco.returncode == 1
        assert "stream ended: UNAVAILABLE" in err.decode()

    expected = {(key[0], key[1]): payload for key, payload in truth.items()}
    for line in falco_lines:
        payload = expected[(line["kind"], line["uid"])]
        assert line["reason"] == "Create"
        assert line["meta"] == json.loads(payload.meta)
        if line["kind"] == "Pod":
            assert line["status"] == {}
            assert line["refs"] == {kind: list(uids) for kind, uids in (payload.refs or {}).items()}
    assert {line["kind"] for line in falco_lines} == {"Pod", "Namespace"}
    # nodemeta.v1: events carry their batch's revision; a marker line closes the initial sync.
    events, marker = stream_lines[:2], stream_lines[2]
    assert {(e["kind"], e["uid"]) for e in events} == set(expected)
    assert all(e["reason"] == "Create" and e["revision"] == marker["revision"] for e in events)
    assert marker["initialSyncComplete"] is True and marker["session"]
