"""The node audit's orchestration on the containerd lab: a pod vanishing mid-read, the per-pod deadline, bounded
concurrency, cancellation, the active probe (agreeing with the rules, and catching rules that look complete but
are bypassed), and one sandbox audited on its own. The namespace reader is always the real one; where a test
needs to step in at the moment of the read, it wraps the real reader."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from nodemeta.cni.audit import PodAuditor
from nodemeta.cni.capture import Family, NetnsView
from nodemeta.cni.netns import SystemNetnsReader
from nodemeta.cni.verdict import PodAudit, PodState
from nodemeta.cri.client import CriClient
from tests.cni.lab_chain import MESH_CHAIN, SELECTED, audit, audit_settings, wait_loaded, with_mesh
from tests.lab.harness import ContainerdLab


class SteppingReader:
    """The real reader, with a hook run (in the event loop) just before each read."""

    def __init__(self, before: object = None) -> None:
        self.real = SystemNetnsReader()
        self.before = before
        self.in_flight = 0
        self.most = 0
        self.reads = 0

    async def read(self, path: str, families: Sequence[Family] = (Family.V4, Family.V6)) -> NetnsView:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.reads += 1
        try:
            if callable(self.before):
                await self.before(path)
            return await self.real.read(path, families)
        finally:
            self.in_flight -= 1


async def _captured_pods(lab: ContainerdLab, count: int) -> list[str]:
    lab.write_conflist(with_mesh(lab))
    wait_loaded(lab, MESH_CHAIN)
    return [await asyncio.to_thread(lab.run_pod, f"pod-{i}", labels=SELECTED) for i in range(count)]


async def test_a_pod_removed_during_its_read_is_reported_gone_and_the_rest_is_audited(clean_lab: ContainerdLab) -> None:
    lab = clean_lab
    doomed, kept = await _captured_pods(lab, 2)
    doomed_pid = lab.sandbox_pid(doomed)

    async def remove_doomed(path: str) -> None:
        if path == f"/proc/{doomed_pid}/ns/net":
            await asyncio.to_thread(lab.remove_pod, doomed)

    async with CriClient(str(lab.socket)) as runtime:
        node = await PodAuditor(runtime, settings=audit_settings(), reader=SteppingReader(remove_doomed)).audit_node()
    states = {p.pod.sandbox_id: p for p in node.pods}
    assert states[kept].state is PodState.CAPTURED
    gone = states[doomed]
    assert gone.state is PodState.GONE and gone.pod.name == "pod-0" and str(doomed_pid) in gone.error
    assert gone.exit_class == 0 and node.exit_class == 0


async def test_the_per_pod_deadline_makes_a_stuck_read_unreadable(clean_lab: ContainerdLab) -> None:
    lab = clean_lab
    (sandbox,) = await _captured_pods(lab, 1)

    async def stuck(path: str) -> None:
        await asyncio.Event().wait()

    async with CriClient(str(lab.socket)) as runtime:
        auditor = PodAuditor(runtime, settings=audit_settings(pod_timeout=1.0), reader=SteppingReader(stuck))
        node = await auditor.audit_node()
    (pod,) = node.pods
    assert pod.state is PodState.UNREADABLE and pod.pod.sandbox_id == sandbox and pod.profile == "linkerd"
    assert "did not finish within 1 s" in pod.error and pod.exit_class == 7 and pod.code == "CNIPodUnreadable"


async def test_no_more_pods_are_read_at_once_than_the_concurrency(clean_lab: ContainerdLab) -> None:
    lab = clean_lab
    await _captured_pods(lab, 5)

    async def linger(path: str) -> None:
        await asyncio.sleep(0.2)

    reader = SteppingReader(linger)
    async with CriClient(str(lab.socket)) as runtime:
        node = await PodAuditor(runtime, settings=audit_settings(concurrency=2), reader=reader).audit_node()
    assert [p.state for p in node.pods] == [PodState.CAPTURED] * 5
    assert reader.reads == 5 and 1 <= reader.most <= 2


async def test_cancelling_the_audit_mid_read_ends_it_cleanly(clean_lab: ContainerdLab) -> None:
    lab = clean_lab
    await _captured_pods(lab, 3)
    entered = asyncio.Event()

    async def hold(path: str) -> None:
        entered.set()
        await asyncio.sleep(0.05)

    async with CriClient(str(lab.socket)) as runtime:
        task = asyncio.create_task(
            PodAuditor(runtime, settings=audit_settings(), reader=SteppingReader(hold)).audit_node()
        )
        await entered.wait()
        await asyncio.sleep(0.06)  # inside the real reads (dump processes running)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The runtime connection is still usable, and a new audit completes.
        node = await PodAuditor(runtime, settings=audit_settings()).audit_node()
    assert [p.state for p in node.pods] == [PodState.CAPTURED] * 3


async def test_the_probe_confirms_capture_and_catches_rules_that_are_bypassed(clean_lab: ContainerdLab) -> None:
    """The probe proves the redirect in both families. Then a `RETURN` for all TCP is put first in the nat OUTPUT
    chain: the rules still look complete (the audit does not evaluate match conditions), but the probe's IPv4
    connection is no longer redirected, so the pod is rules-partial with a `probe` gap in IPv4 only."""
    lab = clean_lab
    (sandbox,) = await _captured_pods(lab, 1)
    node = await audit(lab, probe=True)
    (pod,) = node.pods
    assert pod.state is PodState.CAPTURED, pod
    assert [(p.family, p.outcome, p.method) for p in pod.probes] == [
        ("v4", "captured", "token"),
        ("v6", "captured", "token"),
    ]

    await asyncio.to_thread(
        lab.in_pod_netns, sandbox, ["iptables", "-t", "nat", "-I", "OUTPUT", "1", "-p", "tcp", "-j", "RETURN"]
    )
    without_probe = await audit(lab)
    assert without_probe.pods[0].state is PodState.CAPTURED
    (bypassed,) = (await audit(lab, probe=True)).pods
    assert bypassed.state is PodState.RULES_PARTIAL, bypassed
    assert [(g.family, g.check) for g in bypassed.missing] == [("v4", "probe")]
    assert {p.family: p.outcome for p in bypassed.probes} == {"v4": "not-captured", "v6": "captured"}


async def test_one_sandbox_audited_alone(clean_lab: ContainerdLab) -> None:
    """`audit_sandbox` lists the pod's containers and reads its cache entries itself (the path a caller takes for a
    pod that just started)."""
    lab = clean_lab
    lab.write_conflist(with_mesh(lab))
    wait_loaded(lab, MESH_CHAIN)
    sandbox = await asyncio.to_thread(lab.run_pod, "meshed")
    await asyncio.to_thread(lab.create_container, sandbox, "linkerd-proxy")
    async with CriClient(str(lab.socket)) as runtime:
        auditor = PodAuditor(runtime, settings=audit_settings())
        pod = await auditor.audit_sandbox(sandbox)
        missing = await auditor.audit_sandbox("0" * 64)
    assert isinstance(pod, PodAudit) and pod.state is PodState.CAPTURED and pod.chain_at_add == tuple(MESH_CHAIN)
    assert isinstance(missing, PodAudit) and missing.state is PodState.GONE and missing.pod.sandbox_id == "0" * 64
