"""The three chain-order scenarios of the mesh CNI race, on a real containerd with the mesh plugin chained (or not)
after the bridge plugin. Ground truth is what each test did: which conflist containerd had loaded when it ran
each pod, and which pods it labelled or gave a linkerd-proxy container."""

from __future__ import annotations

import asyncio

from nodemeta.cni.patterns import Code
from nodemeta.cni.verdict import PodState, SkipReason
from tests.cni.conf_writers import truncate_write
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
    loaded_types,
    pod_verdicts,
    until,
    wait_loaded,
    watching,
    with_mesh,
)
from tests.lab.harness import CONFLIST_NAME, ContainerdLab


async def test_correct_order_pods_are_captured(clean_lab: ContainerdLab) -> None:
    """(1) The mesh plugin chained after the bridge: a pod selected by label and a pod selected by the Linkerd rule
    (a linkerd-proxy container, no linkerd-init) are captured; a pod neither selects and a host-network pod are
    skipped, each with its reason; the check exits 0."""
    lab = clean_lab
    lab.write_conflist(with_mesh(lab))
    wait_loaded(lab, MESH_CHAIN)
    by_label = await asyncio.to_thread(lab.run_pod, "web-0", "shop", labels=SELECTED)
    by_rule = await asyncio.to_thread(lab.run_pod, "cart-0", "shop")
    await asyncio.to_thread(lab.start_container, by_rule, "linkerd-proxy")
    await asyncio.to_thread(lab.start_container, by_rule, "cart")
    await asyncio.to_thread(lab.run_pod, "plain-0", "shop")
    await asyncio.to_thread(lab.run_pod, "node-agent", "kube-system", host_network=True)

    node = await audit(lab)

    assert {p.pod.name: p.state for p in node.pods} == {"web-0": PodState.CAPTURED, "cart-0": PodState.CAPTURED}
    web, cart = node.pod("web-0", "shop"), node.pod("cart-0", "shop")
    assert web is not None and cart is not None
    assert web.pod.sandbox_id == by_label and cart.pod.sandbox_id == by_rule
    assert "selector" in web.reason and "linkerd-proxy" in cart.reason
    for pod in (web, cart):
        assert pod.profile == "linkerd" and pod.missing == ()
        assert pod.families == ("v4", "v6")
        assert pod.plugin_at_add is True and pod.chain_at_add == tuple(MESH_CHAIN)
    assert {(s.pod.name, s.reason) for s in node.skipped} == {
        ("plain-0", SkipReason.NOT_SELECTED),
        ("node-agent", SkipReason.HOST_NETWORK),
    }

    code, report = await asyncio.to_thread(check, lab)
    assert code == 0, report
    assert report["winner"]["chain"] == MESH_CHAIN and report["findings"] == []
    assert pod_verdicts(report) == {
        "web-0": "captured",
        "cart-0": "captured",
        "node-agent": "not audited: host-network",
    }
    assert report["loaded"]["networks"][0]["plugins"] == MESH_CHAIN


async def test_primary_file_sorting_first_without_the_mesh_leaves_new_pods_uncaptured(clean_lab: ContainerdLab) -> None:
    """(2) The mesh wrote its standalone conflist (bridge + mesh) first; then the primary's own conflist, without
    the mesh, appears under a name that sorts first. The watcher reports the new winner and the missing plugin,
    containerd's loaded view agrees, and a pod started afterwards is uncaptured because the cached chain it was
    added with lacks the mesh plugin (plugin-missing-at-add); the pod started before is still captured."""
    lab = clean_lab
    for path in lab.conf_dir.iterdir():
        path.unlink()
    lab.write_conflist(with_mesh(lab), name="20-mesh-standalone.conflist")
    wait_loaded(lab, MESH_CHAIN)
    before = await asyncio.to_thread(lab.run_pod, "before", labels=SELECTED)

    async with watching(lab) as evaluations:
        await until(evaluations, lambda e: e.state.winner is not None and e.state.winner.name.startswith("20-"), "20-")
        lab.write_conflist(lab.default_conflist(), name=CONFLIST_NAME)
        seen = await until(evaluations, has(Code.NEW_WINNER), "CNINewWinner")
        assert seen.state.winner is not None and seen.state.winner.name == CONFLIST_NAME
        assert {Code.NEW_WINNER, Code.PLUGIN_MISSING} <= {f.code for f in seen.findings}
        missing = next(f for f in seen.findings if f.code is Code.PLUGIN_MISSING)
        assert "20-mesh-standalone.conflist" in missing.message  # the file that does have the plugin
        wait_loaded(lab, BRIDGE_CHAIN)
        agreed = await until(
            evaluations,
            lambda e: e.loaded is not None and [n.types for n in e.loaded.networks] == [tuple(BRIDGE_CHAIN)],
            "containerd's loaded bridge chain",
            current=seen,
        )
        assert Code.RUNTIME_STALE not in codes(agreed.findings)

    after = await asyncio.to_thread(lab.run_pod, "after", labels=SELECTED)
    node = await audit(lab)
    assert {p.pod.sandbox_id: p.state for p in node.pods} == {
        before: PodState.CAPTURED,
        after: PodState.PLUGIN_MISSING_AT_ADD,
    }
    late = node.pod("after")
    assert late is not None and late.plugin_at_add is False and late.chain_at_add == tuple(BRIDGE_CHAIN)
    assert {g.check for g in late.missing} >= {"inbound-jump", "outbound-redirect"}

    code, report = await asyncio.to_thread(check, lab)
    assert code == 9, report
    assert report["winner"]["file"] == CONFLIST_NAME and report["winner"]["missing"] == [MESH]
    assert "CNIPluginMissing" in codes(report["findings"])
    assert pod_verdicts(report) == {"before": "captured", "after": "plugin-missing-at-add"}
    late_json = next(p for p in report["pods"] if p["name"] == "after")
    assert late_json["sandboxId"] == after and late_json["pluginAtAdd"] is False and late_json["class"] == 9
    assert late_json["code"] == "CNIPodPluginMissingAtAdd" and "v6 outbound-redirect" in late_json["missing"]
    assert report["loaded"]["networks"][0]["plugins"] == BRIDGE_CHAIN


async def test_primary_rewriting_its_patched_file_drops_the_mesh_for_later_pods(clean_lab: ContainerdLab) -> None:
    """(3) The mesh patched the primary's conflist; the primary then rewrites it in place without the mesh
    (truncate and write, as Calico's installer does). The watcher reports CNIRewriteDroppedPlugin; a pod started
    before the rewrite is still captured, a pod started after it is not."""
    lab = clean_lab
    truncate_write(lab.conf_dir, CONFLIST_NAME, encode(with_mesh(lab)))
    wait_loaded(lab, MESH_CHAIN)
    before = await asyncio.to_thread(lab.run_pod, "before", labels=SELECTED)

    async with watching(lab) as evaluations:
        await until(evaluations, lambda e: e.state.chain.ok, "the patched chain")
        truncate_write(lab.conf_dir, CONFLIST_NAME, encode(lab.default_conflist()))
        seen = await until(evaluations, has(Code.REWRITE_DROPPED_PLUGIN), "CNIRewriteDroppedPlugin")
        dropped = next(f for f in seen.findings if f.code is Code.REWRITE_DROPPED_PLUGIN)
        assert "same inode" in dropped.message and MESH in dropped.message
    wait_loaded(lab, BRIDGE_CHAIN)
    after = await asyncio.to_thread(lab.run_pod, "after", labels=SELECTED)

    node = await audit(lab)
    assert {p.pod.sandbox_id: p.state for p in node.pods} == {
        before: PodState.CAPTURED,
        after: PodState.PLUGIN_MISSING_AT_ADD,
    }
    assert loaded_types(lab) == [BRIDGE_CHAIN]
