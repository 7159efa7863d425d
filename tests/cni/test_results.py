"""The libcni result cache reader on files written the way libcni writes them: Go's encoding/json of its cache
struct (fields in declaration order, compact, the config bytes as standard base64), mode 0600, named
`<network>-<containerID>-<ifname>` in the results directory. Ground truth is what each test wrote."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from nodemeta.cni.results import (
    ResultCacheSettings,
    chain_types,
    entries_for,
    plugin_at_add,
    read_entry,
    scan,
)

SANDBOX = "4f6c1a0e2b3d4c5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6"
OTHER = "9" * 64

CALICO_LINKERD = {
    "name": "k8s-pod-network",
    "cniVersion": "0.3.1",
    "plugins": [
        {"type": "calico", "datastore_type": "kubernetes", "ipam": {"type": "calico-ipam"}},
        {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}},
        {"name": "linkerd-cni", "type": "linkerd-cni", "log_level": "info", "linkerd": {"incoming-proxy-port": 4143}},
    ],
}
CALICO_ONLY = {**CALICO_LINKERD, "plugins": CALICO_LINKERD["plugins"][:2]}  # type: ignore[index]


def write_cache(
    results: Path,
    network: str,
    container_id: str,
    config: dict[str, object] | bytes,
    *,
    if_name: str = "eth0",
    netns: str | None = "/var/run/netns/cni-6a1f",
) -> Path:
    """One cache file as libcni's `cacheAdd` writes it (netns omitted as libcni < 1.2 did when None)."""
    raw = config if isinstance(config, bytes) else json.dumps(config, indent=2).encode()
    doc: dict[str, object] = {
        "kind": "cniCacheV1",
        "containerId": container_id,
        "config": base64.b64encode(raw).decode(),
        "ifName": if_name,
        "networkName": network,
    }
    if netns is not None:
        doc["netns"] = netns
    doc["cniArgs"] = [["K8S_POD_NAMESPACE", "shop"], ["K8S_POD_NAME", "web-0"]]
    doc["capabilityArgs"] = {"portMappings": []}
    doc["result"] = {"cniVersion": "0.3.1", "ips": [{"address": "10.244.1.7/24", "interface": 0}]}
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{network}-{container_id}-{if_name}"
    path.write_bytes(json.dumps(doc, separators=(",", ":")).encode())
    path.chmod(0o600)
    return path


@pytest.fixture
def cache(tmp_path: Path) -> tuple[ResultCacheSettings, Path]:
    """Settings reading a host root under tmp_path, and the results directory inside it."""
    settings = ResultCacheSettings(host_root=str(tmp_path / "host"))
    return settings, Path(settings.path)


def test_the_host_root_prefix_is_applied() -> None:
    assert ResultCacheSettings().path == "/var/lib/cni/results"
    assert ResultCacheSettings(host_root="/host").path == "/host/var/lib/cni/results"
    assert ResultCacheSettings(host_root="/host", directory="/run/cni/results").path == "/host/run/cni/results"


def test_an_entry_tells_which_chain_the_sandbox_was_added_with(cache: tuple[ResultCacheSettings, Path]) -> None:
    settings, results = cache
    path = write_cache(results, "k8s-pod-network", SANDBOX, CALICO_LINKERD)
    entry = read_entry(str(path))
    assert entry.container_id == SANDBOX
    assert entry.network_name == "k8s-pod-network"
    assert entry.if_name == "eth0"
    assert entry.netns == "/var/run/netns/cni-6a1f"
    assert entry.plugin_types == ("calico", "portmap", "linkerd-cni")
    assert json.loads(entry.config) == CALICO_LINKERD
    assert entry.result is not None and entry.result["ips"][0]["address"] == "10.244.1.7/24"

    found = entries_for(SANDBOX, settings)
    assert found.errors == ()
    assert [e.path for e in found.entries] == [str(path)]
    assert plugin_at_add(found.entries, "linkerd-cni") is True
    assert plugin_at_add(found.entries, "istio-cni") is False


def test_a_pod_added_without_the_mesh_plugin_and_an_unknown_pod(cache: tuple[ResultCacheSettings, Path]) -> None:
    settings, results = cache
    write_cache(results, "k8s-pod-network", SANDBOX, CALICO_ONLY, netns=None)
    write_cache(results, "k8s-pod-network", OTHER, CALICO_LINKERD)
    entries = entries_for(SANDBOX, settings).entries
    assert [e.netns for e in entries] == [""]
    assert plugin_at_add(entries, "linkerd-cni") is False
    assert plugin_at_add(entries_for(OTHER, settings).entries, "linkerd-cni") is True
    assert plugin_at_add(entries_for("f" * 64, settings).entries, "linkerd-cni") is None


def test_networks_and_interfaces_with_dashes_and_multus_extras(cache: tuple[ResultCacheSettings, Path]) -> None:
    settings, results = cache
    write_cache(results, "multus-cni-network", SANDBOX, {"cniVersion": "0.3.1", "name": "m", "type": "multus"})
    write_cache(results, "macvlan-conf-a", SANDBOX, {"cniVersion": "0.3.1", "name": "a", "type": "macvlan"},
                if_name="net-1")  # fmt: skip
    write_cache(results, "macvlan-conf-a", OTHER, CALICO_ONLY, if_name="net-1")
    entries = entries_for(SANDBOX, settings).entries
    assert sorted((e.network_name, e.if_name, e.plugin_types) for e in entries) == [
        ("macvlan-conf-a", "net-1", ("macvlan",)),
        ("multus-cni-network", "eth0", ("multus",)),
    ]
    # Only the primary interface decides; a secondary network's chain is not the pod's capture chain.
    assert plugin_at_add(entries, "macvlan") is False
    assert plugin_at_add(entries, "macvlan", if_name=None) is True


def test_malformed_files_are_reported_one_by_one(cache: tuple[ResultCacheSettings, Path]) -> None:
    settings, results = cache
    good = write_cache(results, "k8s-pod-network", SANDBOX, CALICO_LINKERD)
    bad: dict[str, str] = {}

    def junk(name: str, data: bytes, reason: str) -> None:
        (results / name).write_bytes(data)
        bad[str(results / name)] = reason

    junk(f"net-{SANDBOX}-eth1", b"{not json", "not JSON")
    junk(f"net-{SANDBOX}-eth2", b"[1, 2]", "not a JSON object")
    junk(f"net-{SANDBOX}-eth3", b'{"kind": "cniCacheV2"}', "kind is 'cniCacheV2'")
    broken = json.loads(good.read_bytes())
    junk(f"net-{SANDBOX}-eth4", json.dumps({**broken, "config": "%%%"}).encode(), "config is not base64")
    not_json = base64.b64encode(b"\xff\xfe").decode()
    junk(f"net-{SANDBOX}-eth5", json.dumps({**broken, "config": not_json}).encode(), "config is not JSON")
    no_type = base64.b64encode(b'{"name": "x", "plugins": [{"ipam": {}}]}').decode()
    junk(f"net-{SANDBOX}-eth6", json.dumps({**broken, "config": no_type}).encode(), "config plugin 0 has no type")
    junk(f"net-{SANDBOX}-eth7", json.dumps({**broken, "ifName": 7}).encode(), "ifName is missing or not a string")
    junk(f"net-{SANDBOX}-eth8", b"\x00\xff" * 10, "not JSON")
    (results / f"net-{SANDBOX}-eth9").mkdir()
    bad[str(results / f"net-{SANDBOX}-eth9")] = "not a regular file"
    junk(f"net-{SANDBOX}-eth10", b" " * (settings.max_file_size + 1), "larger than")

    found = entries_for(SANDBOX, settings)
    assert [e.path for e in found.entries] == [str(good)]
    reasons = {e.path: e.reason for e in found.errors}
    assert set(reasons) == set(bad)
    for path, reason in bad.items():
        assert reasons[path].startswith(reason), (path, reasons[path])
    assert len(scan(settings).errors) == len(bad)


def test_a_missing_or_unreadable_directory(tmp_path: Path) -> None:
    assert scan(ResultCacheSettings(directory=str(tmp_path / "absent"))) == scan(
        ResultCacheSettings(directory=str(tmp_path / "absent-too"))
    )
    assert scan(ResultCacheSettings(directory=str(tmp_path / "absent"))).entries == ()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    listed = scan(ResultCacheSettings(directory=str(not_a_dir)))
    assert [e.path for e in listed.errors] == [str(not_a_dir)]


def test_a_symlink_to_a_device_is_refused_without_reading_it(cache: tuple[ResultCacheSettings, Path]) -> None:
    settings, results = cache
    results.mkdir(parents=True)
    os.symlink("/dev/zero", results / f"net-{SANDBOX}-eth0")
    (error,) = entries_for(SANDBOX, settings).errors
    assert error.reason == "not a regular file"


def test_chain_types_of_single_plugin_configs_and_lists() -> None:
    assert chain_types(b'{"cniVersion":"0.3.1","name":"n","type":"bridge"}') == ("bridge",)
    assert chain_types(json.dumps(CALICO_LINKERD).encode()) == ("calico", "portmap", "linkerd-cni")
    for bad in (b'{"plugins": {}}', b'{"name": "n"}', b'"x"', b'{"plugins": [{"type": ""}]}'):
        with pytest.raises(ValueError):
            chain_types(bad)
