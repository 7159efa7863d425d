"""Loading cluster configuration through the official loader, proven by real requests to the simulator."""

from __future__ import annotations

import base64
import datetime as dt
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodemeta.kube import PODS, ApiClient, ClusterConfig, ConfigError, ConnectionLost, Unauthorized, load_config
from nodemeta.kube import config as config_module
from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.auth import make_tls


@pytest.fixture
async def secure_sim() -> AsyncIterator[SimServer]:
    """HTTPS with a generated CA, and bearer tokens required."""
    async with SimServer(SimSettings(controllers=(), tls=True, auth=True)) as server:
        yield server


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the developer's own $KUBECONFIG, ~/.kube/config and service account out of every test."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


async def can_list(config: ClusterConfig) -> bool:
    async with ApiClient(config) as client:
        await client.list_page(PODS.path, {}, lambda body: body)
    return True


def write_yaml(path: Path, document: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(document))
    return str(path)


async def test_kubeconfig_with_token(tmp_path: Path) -> None:
    async with SimServer(SimSettings(controllers=(), auth=True)) as sim:
        config = await load_config(str(sim.write_kubeconfig(tmp_path / "kc")))
        assert config.server == sim.url
        assert config.ssl_context is None
        assert await config.authorization() == f"Bearer {sim.authenticator.admin_token}"
        assert await can_list(config)


async def test_kubeconfig_with_tls_ca(secure_sim: SimServer, tmp_path: Path) -> None:
    config = await load_config(str(secure_sim.write_kubeconfig(tmp_path / "kc")))
    assert config.server.startswith("https://")
    assert config.ssl_context is not None
    assert await can_list(config)


async def test_server_certificate_from_an_unknown_ca_is_refused(secure_sim: SimServer, tmp_path: Path) -> None:
    document = secure_sim.kubeconfig()
    del document["clusters"][0]["cluster"]["certificate-authority-data"]
    config = await load_config(write_yaml(tmp_path / "kc", document))
    with pytest.raises(ConnectionLost, match="certificate"):
        await can_list(config)


async def test_missing_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kubeconfig not found"):
        await load_config(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    "text",
    [
        "{not yaml: [",
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n",
        "- just\n- a list\n",
        "",
    ],
)
async def test_invalid_kubeconfig_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "kc"
    path.write_text(text)
    with pytest.raises(ConfigError, match=str(path)):
        await load_config(str(path))


async def test_unknown_context_is_a_config_error(secure_sim: SimServer, tmp_path: Path) -> None:
    path = secure_sim.write_kubeconfig(tmp_path / "kc")
    with pytest.raises(ConfigError, match="no-such-context"):
        await load_config(str(path), context="no-such-context")


async def test_lookup_order(secure_sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = str(secure_sim.write_kubeconfig(tmp_path / "good"))
    with pytest.raises(ConfigError, match="no Kubernetes configuration found"):
        await load_config()
    home_config = Path(os.environ["HOME"]) / ".kube" / "config"
    secure_sim.write_kubeconfig(home_config)
    assert (await load_config()).source == f"kubeconfig {home_config}"
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}{os.pathsep}{good}")
    assert (await load_config()).source == f"kubeconfig {good}"
    with pytest.raises(ConfigError, match="kubeconfig not found"):
        await load_config(str(tmp_path / "explicit-wins"))


async def test_in_cluster_service_account(
    secure_sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(secure_sim.authenticator.admin_token)
    assert secure_sim.tls is not None
    (account / "ca.crt").write_bytes(secure_sim.tls.ca_cert)
    monkeypatch.setattr(config_module, "SERVICE_ACCOUNT_DIR", account)
    host, port = secure_sim.url.removeprefix("https://").split(":")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    config = await load_config()
    assert config.source.startswith("in-cluster")
    assert config.server == secure_sim.url
    assert await can_list(config)


async def test_in_cluster_without_a_token_falls_back_to_home_config(
    secure_sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_module, "SERVICE_ACCOUNT_DIR", tmp_path / "absent")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "1")
    with pytest.raises(ConfigError, match="token file does not exist"):
        await load_config()
    home_config = Path(os.environ["HOME"]) / ".kube" / "config"
    home_config.parent.mkdir()
    secure_sim.write_kubeconfig(home_config)
    assert await can_list(await load_config())


def exec_kubeconfig(sim: SimServer, tmp_path: Path, *, expires_in: dt.timedelta | None, fail: bool = False) -> str:
    """A kubeconfig whose user runs a plugin that prints the token in `token` and counts its runs in `runs`."""
    expiry = ""
    if expires_in is not None:
        when = (dt.datetime.now(dt.UTC) + expires_in).strftime("%Y-%m-%dT%H:%M:%SZ")
        expiry = f',"expirationTimestamp":"{when}"'
    plugin = tmp_path / "plugin.sh"
    plugin.write_text(
        "#!/bin/sh\n"
        f"echo run >> '{tmp_path / 'runs'}'\n"
        + ("echo 'plugin broke' >&2\nexit 3\n" if fail else "")
        + f"token=$(cat '{tmp_path / 'token'}')\n"
        + 'printf \'%s\' \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",\'\n'
        + f'printf \'"status":{{"token":"%s"{expiry}}}}}\' "$token"\n'
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    document = sim.kubeconfig()
    document["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(plugin),
            "interactiveMode": "Never",
        }
    }
    return write_yaml(tmp_path / "kc", document)


def runs(tmp_path: Path) -> int:
    path = tmp_path / "runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_exec_plugin_credentials_are_refreshed_when_they_expire(secure_sim: SimServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(secure_sim.authenticator.admin_token)
    # Within the loader's 5-minute expiry margin: the plugin runs again before every request.
    config = await load_config(exec_kubeconfig(secure_sim, tmp_path, expires_in=dt.timedelta(minutes=2)))
    assert await can_list(config)
    token.write_text("rotated-away")
    with pytest.raises(Unauthorized):
        await can_list(config)
    token.write_text(secure_sim.authenticator.admin_token)
    assert await can_list(config)
    assert runs(tmp_path) >= 4  # the load, then once per request


async def test_exec_plugin_without_expiry_runs_again_only_after_a_401(secure_sim: SimServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("not-yet-valid")
    config = await load_config(exec_kubeconfig(secure_sim, tmp_path, expires_in=None))
    assert runs(tmp_path) == 1
    token.write_text(secure_sim.authenticator.admin_token)
    with pytest.raises(Unauthorized):  # the cached credential is used, and rejected
        await can_list(config)
    assert await can_list(config)  # the 401 made the plugin run again
    assert await can_list(config)
    assert runs(tmp_path) == 2


async def test_failing_exec_plugin_is_a_config_error(secure_sim: SimServer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="plugin broke"):
        await load_config(exec_kubeconfig(secure_sim, tmp_path, expires_in=None, fail=True))


async def test_client_certificate_and_key_from_the_kubeconfig(secure_sim: SimServer, tmp_path: Path) -> None:
    material = make_tls(["nodemeta-client"])
    document = secure_sim.kubeconfig()
    document["users"][0]["user"]["client-certificate-data"] = base64.b64encode(material.cert).decode()
    document["users"][0]["user"]["client-key-data"] = base64.b64encode(material.key).decode()
    config = await load_config(write_yaml(tmp_path / "kc", document))
    assert await can_list(config)  # the simulator does not ask for client certificates, but they must load
    document["users"][0]["user"]["client-key-data"] = base64.b64encode(b"not a key").decode()
    with pytest.raises(ConfigError, match="unusable TLS material"):
        await load_config(write_yaml(tmp_path / "kc", document))
