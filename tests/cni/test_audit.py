"""The pure half of the pod audit (verdicts, families, the cached chain, report sections) on literal values, and
`nodemeta cni check`'s pod options as a user meets them (a subprocess): an unreachable socket, `--no-pods`, bad
selectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from nodemeta.cni.capture import LINKERD, Dump, Family, NetnsView, evaluate, parse_save
from nodemeta.cni.command import parse_selector
from nodemeta.cni.patterns import Severity
from nodemeta.cni.policy import Expectation, PolicySettings, expected_capture
from nodemeta.cni.results import parse_entry
from nodemeta.cni.verdict import (
    NodeAudit,
    PodIdentity,
    PodState,
    ProbeFinding,
    Skipped,
    SkipReason,
    address_families,
    chain_at_add,
    conclude,
    describe,
    failed,
    pod_sections,
    summary_lines,
)
from nodemeta.cri.model import Sandbox, SandboxState
from tests.cni.conf_writers import calico, truncate_write
from tests.cni.test_check_cli import check

POD = PodIdentity("shop", "cart-0", "uid-1", "sb-1")
EXPECT = Expectation("linkerd", "runs linkerd-proxy")
LINKERD_NAT = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:PROXY_INIT_REDIRECT - [0:0]
:PROXY_INIT_OUTPUT - [0:0]
-A PREROUTING -j PROXY_INIT_REDIRECT
-A OUTPUT -j PROXY_INIT_OUTPUT
-A PROXY_INIT_REDIRECT -p tcp -j REDIRECT --to-ports 4143
-A PROXY_INIT_OUTPUT -m owner --uid-owner 2102 -j RETURN
-A PROXY_INIT_OUTPUT -o lo -j RETURN
-A PROXY_INIT_OUTPUT -p tcp -j REDIRECT --to-ports 4140
COMMIT
"""


def view(v4: str, v6: str = "") -> NetnsView:
    return NetnsView(dumps=(Dump(Family.V4, "nft", parse_save(v4)), Dump(Family.V6, "nft", parse_save(v6))))


def sandbox(**changes: object) -> Sandbox:
    values: dict[str, object] = {
        "id": "sb-1",
        "name": "cart-0",
        "namespace": "shop",
        "uid": "uid-1",
        "attempt": 0,
        "state": SandboxState.READY,
        "created_at": 0,
        "labels": {"app": "cart"},
        "annotations": {},
    }
    values.update(changes)
    return Sandbox(**values)  # type: ignore[arg-type]


def cache_entry(types: list[str], if_name: str = "eth0") -> bytes:
    config = json.dumps({"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": t} for t in types]}).encode()
    return json.dumps(
        {
            "kind": "cniCacheV1",
            "containerId": "sb-1",
            "config": base64.b64encode(config).decode(),
            "ifName": if_name,
            "networkName": "net",
        }
    ).encode()


def test_families_follow_the_pod_addresses() -> None:
    assert address_families(["10.88.0.5", "fd00:88::5"]) == ((Family.V4, Family.V6), "")
    assert address_families(["fd00:88::5", "fe80::1%eth0"]) == ((Family.V6,), "")
    assert address_families(["10.88.0.5", "not-an-ip"]) == ((Family.V4,), "")
    families, note = address_families([])
    assert families == (Family.V4,) and "no pod address" in note


def test_the_policy_sees_the_runtime_containers_and_linkerd_init_opts_out() -> None:
    with_proxy = describe(sandbox(), ["cart", "linkerd-proxy"])
    assert expected_capture(with_proxy, PolicySettings()) is not None
    # linkerd-init means the rules come from the init container: not the CNI plugin's pod.
    assert expected_capture(describe(sandbox(), ["linkerd-init", "linkerd-proxy"]), PolicySettings()) is None
    assert describe(sandbox(), ["a", "a", "b"]).containers == ("a", "b")


def test_the_cached_chain_answers_for_eth0_only() -> None:
    meshed = parse_entry(cache_entry(["bridge", "nodemeta-test-mesh"]), "p1")
    plain = parse_entry(cache_entry(["bridge"]), "p2")
    secondary = parse_entry(cache_entry(["macvlan"], if_name="net1"), "p3")
    assert chain_at_add([meshed, secondary], ["nodemeta-test-mesh"]) == (True, ("bridge", "nodemeta-test-mesh"))
    assert chain_at_add([plain], ["nodemeta-test-mesh"]) == (False, ("bridge",))
    assert chain_at_add([secondary], ["nodemeta-test-mesh"]) == (None, ())
    assert chain_at_add([meshed], []) == (None, ("bridge", "nodemeta-test-mesh"))
    assert chain_at_add([meshed], ["nodemeta-test-mesh", "other"]) == (False, ("bridge", "nodemeta-test-mesh"))


def test_verdicts_carry_the_capture_audit_and_the_cache() -> None:
    families = (Family.V4, Family.V6)
    captured = conclude(POD, EXPECT, evaluate(view(LINKERD_NAT, LINKERD_NAT), LINKERD, families=families))
    assert captured.state is PodState.CAPTURED and captured.missing == () and captured.exit_class == 0
    half = conclude(POD, EXPECT, evaluate(view(LINKERD_NAT, ""), LINKERD, families=families))
    assert half.state is PodState.RULES_PARTIAL and {g.family for g in half.missing} == {Family.V6}
    assert half.exit_class == 8 and half.code == "CNIPodCapturePartial"
    empty = evaluate(view("", ""), LINKERD, families=families, plugin_at_add=False)
    at_add = conclude(POD, EXPECT, empty, chain=("bridge",))
    assert at_add.state is PodState.PLUGIN_MISSING_AT_ADD and at_add.exit_class == 9
    assert at_add.plugin_at_add is False and at_add.chain_at_add == ("bridge",)
    unknown = conclude(POD, EXPECT, evaluate(view("", ""), LINKERD, families=families))
    assert unknown.state is PodState.RULES_MISSING and unknown.code == "CNIPodNotCaptured"


def test_a_probe_that_was_not_redirected_overrides_complete_rules() -> None:
    audit = evaluate(view(LINKERD_NAT), LINKERD, families=(Family.V4,))
    probes = (ProbeFinding(Family.V4, "not-captured", "token", "timed out"),)
    verdict = conclude(POD, EXPECT, audit, probes=probes)
    assert verdict.state is PodState.RULES_PARTIAL
    assert [(g.family, g.check) for g in verdict.missing] == [(Family.V4, "probe")]
    agreeing = conclude(POD, EXPECT, audit, probes=(ProbeFinding(Family.V4, "captured", "token", "ok"),))
    assert agreeing.state is PodState.CAPTURED


def test_every_capture_state_is_a_pod_state() -> None:
    from nodemeta.cni.capture import CaptureState

    assert {s.value for s in CaptureState} <= {s.value for s in PodState}


def test_report_sections_and_exit_codes() -> None:
    gone = failed(POD, EXPECT, "no such namespace", gone=True)
    unreadable = failed(PodIdentity("shop", "db-0", "u2", "sb-2"), EXPECT, "permission denied", gone=False)
    node = NodeAudit(
        pods=(gone, unreadable),
        skipped=(
            Skipped(PodIdentity("kube-system", "agent", "u3", "sb-3"), SkipReason.HOST_NETWORK, "node network"),
            Skipped(PodIdentity("shop", "plain", "u4", "sb-4"), SkipReason.NOT_SELECTED),
        ),
        cache_errors=("/var/lib/cni/results/x: not JSON",),
    )
    sections = pod_sections(node)
    assert [(s.name, s.verdict, s.exit_class) for s in sections] == [
        ("cart-0", "gone", 0),
        ("db-0", "unreadable", 7),
        ("agent", "not audited: host-network", 0),
    ]
    assert sections[1].severity is Severity.WARNING and "error: permission denied" in sections[1].details
    assert node.exit_class == 7
    lines = summary_lines(node)
    assert "2 pod(s) audited" in lines and any("1 pod(s) need no capture" in line for line in lines)
    assert any("not JSON" in line for line in lines)


def test_parse_selector() -> None:
    selector = parse_selector("linkerd:mesh=lab,team")
    assert selector.profile == "linkerd" and selector.labels == {"mesh": "lab", "team": None}
    assert parse_selector("istio:inject=true", annotations=True).annotations == {"inject": "true"}
    for bad in ("mesh=lab", "nosuch:mesh=lab", "linkerd:", "linkerd:a,,b"):
        with pytest.raises(ValueError):
            parse_selector(bad)


def test_an_unreachable_socket_leaves_pods_unaudited_with_exit_7(tmp_path: Path) -> None:
    truncate_write(tmp_path, "10-calico.conflist", calico(linkerd=True))
    missing = tmp_path / "no.sock"
    done = check("--conf-dir", str(tmp_path), "--preset", "linkerd", "--cri-socket", str(missing))
    assert done.returncode == 7, done.stdout + done.stderr
    assert f"Pods: not audited (the runtime at {missing} did not answer" in done.stdout
    assert "Result: pods could not be audited (exit 7)" in done.stdout
    quiet = check("--conf-dir", str(tmp_path), "--preset", "linkerd", "--no-pods", "--json")
    report = json.loads(quiet.stdout)
    assert quiet.returncode == 0 and report["pods"] is None and report["podNotes"] == ["--no-pods"]


@pytest.mark.parametrize("flag", ["--selector", "--annotation-selector"])
def test_bad_selectors_are_usage_errors(tmp_path: Path, flag: str) -> None:
    done = check("--conf-dir", str(tmp_path), flag, "nosuch:app=x")
    assert done.returncode == 64 and "PROFILE one of linkerd" in done.stderr
