"""The later failure patterns of the mesh CNI race on a real containerd: a file deleted and created again, a `.json`
file shadowing the patched conflist, an invalid first file, two writers fighting over the winner, and a TPROXY
capture losing its local route. Ground truth is what each test wrote and which pods it ran under which file."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from typing import Any

import grpc
import pytest

from nodemeta.cni.capture import PROFILES, Profile, Tproxy
from nodemeta.cni.patterns import Code
from nodemeta.cni.policy import PolicySettings, Selector
from nodemeta.cni.verdict import PodState
from tests.cni.conf_writers import atomic_write, truncate_write
from tests.cni.lab_chain import (
    BRIDGE_CHAIN,
    MESH,
    MESH_CHAIN,
    SELECTED,
    audit,
    check,
    codes,
    encode,
    has,
    pod_verdicts,
    until,
    wait_loaded,
    watching,
    with_mesh,
)
from tests.lab.harness import CONFLIST_NAME, NETWORK_NAME, ContainerdLab


async def test_delete_then_create_without_the_plugin(clean_lab: ContainerdLab) -> None:
    """The patched file is deleted, then created again without the mesh (the sequence an event-driven installer
    misses). The watcher, having seen the directory empty, reports CNIRecreatedWithoutPlugin; a pod started under
    the recreated file is not captured, the one started before still is."""
    lab = clean_lab
    truncate_write(lab.conf_dir, CONFLIST_NAME, encode(with_mesh(lab)))
    wait_loaded(lab, MESH_CHAIN)
    before = await asyncio.to_thread(lab.run_pod, "before", labels=SELECTED)
    async with watching(lab) as evaluations:
        await until(evaluations, lambda e: e.state.chain.ok, "the patched chain")
        (lab.conf_dir / CONFLIST_NAME).unlink()
        await until(evaluations, has(Code.NO_CONFIG), "CNINoConfig")
        truncate_write(lab.conf_dir, CONFLIST_NAME, encode(lab.default_conflist()), 0o644)
        seen = await until(evaluations, has(Code.RECREATED_WITHOUT_PLUGIN), "CNIRecreatedWithoutPlugin")
        assert seen.state.winner is not None and seen.state.winner.name == CONFLIST_NAME
    wait_loaded(lab, BRIDGE_CHAIN)
    after = await asyncio.to_thread(lab.run_pod, "after", labels=SELECTED)
    node = await audit(lab)
    assert {p.pod.sandbox_id: p.state for p in node.pods} == {
        before: PodState.CAPTURED,
        after: PodState.PLUGIN_MISSING_AT_ADD,
    }


def _json_shadow(lab: ContainerdLab) -> dict[str, Any]:
    """The bridge plugin alone as a single-plugin `.json` config, same network name (so the same IPAM store)."""
    bridge: dict[str, Any] = dict(lab.default_conflist()["plugins"][0])  # type: ignore[index]
    return {"cniVersion": "1.0.0", "name": NETWORK_NAME, **bridge}


async def test_json_shadow_sorts_first_and_is_used_without_the_mesh(clean_lab: ContainerdLab) -> None:
    """A `.json` file sorting before the patched conflist: containerd uses it (the mesh installers never patch
    `.json`), the check reports CNIJsonShadow, and a pod started afterwards is added without the mesh plugin."""
    lab = clean_lab
    lab.write_conflist(with_mesh(lab))
    wait_loaded(lab, MESH_CHAIN)
    lab.write_conflist(_json_shadow(lab), name="05-primary.json")
    wait_loaded(lab, ["bridge"])
    pod = await asyncio.to_thread(lab.run_pod, "shadowed", labels=SELECTED)

    code, report = await asyncio.to_thread(check, lab)
    assert code == 9, report["pods"]
    assert report["winner"]["file"] == "05-primary.json" and report["winner"]["missing"] == [MESH]
    assert {"CNIJsonShadow", "CNIPluginMissing"} <= codes(report["findings"])
    assert pod_verdicts(report) == {"shadowed": "plugin-missing-at-add"}
    node = await audit(lab)
    shadowed = node.pod("shadowed")
    assert shadowed is not None and shadowed.pod.sandbox_id == pod and shadowed.chain_at_add == ("bridge",)


async def test_invalid_first_file_stops_all_pod_networking(clean_lab: ContainerdLab) -> None:
    """An unparsable file sorting first: containerd's whole load fails, RunPodSandbox really fails, and the check
    reports CNIInvalidFirstFile (exit 6 with the running pods still captured)."""
    lab = clean_lab
    lab.write_conflist(with_mesh(lab))
    wait_loaded(lab, MESH_CHAIN)
    await asyncio.to_thread(lab.run_pod, "running", labels=SELECTED)
    broken = lab.conf_dir / "00-broken.conflist"
    truncate_write(lab.conf_dir, broken.name, b'{"cniVersion": "1.0.0", "name": ')
    try:
        for _ in range(400):
            if lab.status_info().get("lastCNILoadStatus", "OK") != "OK":
                break
            await asyncio.sleep(0.05)
        assert lab.status_info().get("lastCNILoadStatus", "OK") != "OK"

        with pytest.raises(grpc.RpcError) as refused:
            await asyncio.to_thread(lab.run_pod, "refused", labels=SELECTED)
        assert "cni" in str(refused.value.details()).lower()  # type: ignore[attr-defined]

        code, report = await asyncio.to_thread(check, lab)
        assert code == 6, report
        assert {"CNIInvalidFirstFile", "CNIRuntimeLoadFailed"} <= codes(report["findings"])
        # containerd 1.6 keeps the sandbox whose network setup failed, not ready: listed, not audited.
        assert pod_verdicts(report) == {"running": "captured", "refused": "not audited: not-ready"}
    finally:
        # Tearing down the refused sandbox needs a loadable configuration (its DEL goes through the CNI plugins).
        broken.unlink()
        wait_loaded(lab, MESH_CHAIN)


async def test_two_writers_alternating_on_the_winner_are_flapping(clean_lab: ContainerdLab) -> None:
    """The primary (truncate and write, without the mesh) and the mesh (rename over, with it) alternate on one
    file: after four changes back and forth the watcher reports CNIFlapping as critical, naming the plugin that
    comes and goes; the pod started while the primary's version was loaded is not captured."""
    lab = clean_lab
    patched, plain = encode(with_mesh(lab)), encode(lab.default_conflist())
    truncate_write(lab.conf_dir, CONFLIST_NAME, plain)
    async with watching(lab) as evaluations:
        seen = None
        writes = [(truncate_write, plain), (atomic_write, patched), (truncate_write, plain)]
        for step, (writer, data) in enumerate([*writes, *writes[1:]]):
            # Step 0 rewrites the primary's version the directory already holds: it only waits for the first scan.
            writer(lab.conf_dir, CONFLIST_NAME, data)
            digest = hashlib.sha256(data).hexdigest()
            seen = await until(
                evaluations,
                lambda e, d=digest: e.state.winner is not None and e.state.winner.digest == d,  # type: ignore[misc]
                f"write {step}",
            )
        assert seen is not None
        flapping = await until(evaluations, has(Code.FLAPPING), "CNIFlapping", current=seen)
        finding = next(f for f in flapping.findings if f.code is Code.FLAPPING)
        assert finding.severity.value == "critical" and MESH in finding.message
    wait_loaded(lab, BRIDGE_CHAIN)
    await asyncio.to_thread(lab.run_pod, "during-the-fight", labels=SELECTED)
    node = await audit(lab)
    assert [(p.pod.name, p.state) for p in node.pods] == [("during-the-fight", PodState.PLUGIN_MISSING_AT_ADD)]


# What the mesh plugin installs in "tproxy" mode: mangle PREROUTING -> PROXY_TPROXY -> TPROXY to 15001 with mark
# 0x539, `ip rule fwmark 0x539 lookup 133`, `local default dev lo table 133`; no outbound redirect.
LAB_TPROXY = Profile(
    name="lab-tproxy", inbound=Tproxy(chain="PROXY_TPROXY", port=15001, mark=0x539, route_table=133), outbound=None
)


async def test_tproxy_pod_captured_then_missing_its_local_route(clean_lab: ContainerdLab) -> None:
    """A pod captured in TPROXY mode (mangle TPROXY, fwmark rule, local route: the egress-capture recipe) is found
    captured; after its IPv4 local route is deleted in its namespace it is rules-partial, and the one gap named is
    the IPv4 local-route check. A selector names the test's own profile, since no built-in mesh uses this layout."""
    lab = clean_lab
    lab.write_conflist(with_mesh(lab, mode="tproxy"))
    wait_loaded(lab, MESH_CHAIN)
    sandbox = await asyncio.to_thread(lab.run_pod, "tproxy-0", labels={"capture": "tproxy"})
    settings: dict[str, Any] = {
        "policy": PolicySettings(selectors=(Selector(profile="lab-tproxy", labels={"capture": "tproxy"}),)),
        "profiles": {**PROFILES, "lab-tproxy": LAB_TPROXY},
    }

    first = await audit(lab, **settings)
    pod = first.pod("tproxy-0")
    assert pod is not None and pod.state is PodState.CAPTURED and pod.profile == "lab-tproxy", pod
    assert pod.families == ("v4", "v6") and pod.plugin_at_add is True

    await asyncio.to_thread(
        lab.in_pod_netns, sandbox, ["ip", "-4", "route", "del", "local", "default", "dev", "lo", "table", "133"]
    )
    second = await audit(lab, **settings)
    pod = second.pod("tproxy-0")
    assert pod is not None and pod.state is PodState.RULES_PARTIAL, pod
    assert [(g.family, g.check) for g in pod.missing] == [("v4", "local-route")]
    assert "table 133" in pod.missing[0].detail

    # The same pod under the Istio TPROXY profile (other chain, port and mark): nothing of it is there.
    istio = await audit(
        lab, **{**settings, "profiles": {**PROFILES, "lab-tproxy": dataclasses.replace(PROFILES["istio-tproxy"])}}
    )
    other = istio.pod("tproxy-0")
    assert other is not None and other.state is PodState.RULES_MISSING
