"""The lab's mesh plugin, chained after the bridge plugin by a real containerd, installs capture rules in new pods."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.lab.harness import MESH_PLUGIN_TYPE, ContainerdLab


def _loaded_types(lab: ContainerdLab) -> list[str]:
    networks = json.loads(lab.cni_config())["Networks"] or []
    return [p["Network"]["type"] for n in networks for p in n["Config"]["Plugins"]]


def _wait_loaded(lab: ContainerdLab, plugin_type: str) -> None:
    deadline = time.monotonic() + 20
    while plugin_type not in _loaded_types(lab):
        assert time.monotonic() < deadline, f"containerd did not load {plugin_type}: {_loaded_types(lab)}"
        time.sleep(0.1)


def test_chained_mesh_plugin_captures_new_pods_and_passes_the_result_through(clean_lab: ContainerdLab) -> None:
    conflist: dict[str, Any] = clean_lab.default_conflist()
    conflist["plugins"].append({"type": MESH_PLUGIN_TYPE, "ipv6": True})
    clean_lab.write_conflist(conflist)
    _wait_loaded(clean_lab, MESH_PLUGIN_TYPE)

    sandbox = clean_lab.run_pod("captured")
    nat4 = clean_lab.in_pod_netns(sandbox, ["iptables-save", "-t", "nat"]).stdout
    nat6 = clean_lab.in_pod_netns(sandbox, ["ip6tables-save", "-t", "nat"]).stdout
    for rules in (nat4, nat6):
        assert "-A PREROUTING -j PROXY_INIT_REDIRECT" in rules
        assert "-A PROXY_INIT_OUTPUT -m owner --uid-owner 2102 -j RETURN" in rules
        assert "--to-ports 4140" in rules
    # The bridge plugin's result reached the runtime through the chain: the pod has its IPs.
    info = clean_lab.sandbox_info(sandbox)
    assert info["cniResult"]["Interfaces"]["eth0"]["IPConfigs"]


def test_pods_started_without_the_mesh_plugin_have_no_capture_rules(clean_lab: ContainerdLab) -> None:
    sandbox = clean_lab.run_pod("plain")
    assert "PROXY_INIT" not in clean_lab.in_pod_netns(sandbox, ["iptables-save", "-t", "nat"]).stdout
