"""`nodemeta cni check` as a user runs it: a subprocess on a real directory, its report (text and JSON) and its
documented exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cni.conf_writers import calico, conflist, multus, rename_in, truncate_write

NODEMETA = [sys.executable, "-m", "nodemeta.cli"]


def check(*flags: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NODEMETA, "cni", "check", *flags],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_json(*flags: str) -> tuple[int, dict[str, Any]]:
    done = check(*flags, "--json")
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    directory = tmp_path / "net.d"
    directory.mkdir()
    return directory


def test_healthy_chain_exits_0(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    done = check("--conf-dir", str(conf), "--preset", "linkerd")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Pod network: 10-calico.conflist" in done.stdout
    assert "chain:   calico -> bandwidth -> portmap -> linkerd-cni" in done.stdout
    assert "missing: nothing" in done.stdout
    assert "Result: healthy (exit 0)" in done.stdout
    assert "Pods: not audited" in done.stdout


def test_missing_plugin_names_the_winner_and_the_plugin_and_exits_5(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico())
    truncate_write(conf, "20-patched.conflist", conflist("other", "bridge", "linkerd-cni"))
    truncate_write(conf, "30-broken.conf", b"{")
    (conf / "10-calico.conflist.cilium_bak").write_bytes(b"")
    done = check("--conf-dir", str(conf), "--preset", "linkerd")
    assert done.returncode == 5, done.stdout + done.stderr
    out = done.stdout
    assert "Pod network: 10-calico.conflist" in out and "missing: linkerd-cni" in out
    assert "first file in byte order" in out
    for line in ("10-calico.conflist   winner", "20-patched.conflist  shadowed", "30-broken.conf       invalid"):
        assert line in out
    assert "Other entries (not read by the runtime): 10-calico.conflist.cilium_bak" in out
    assert "CRITICAL CNIPluginMissing 10-calico.conflist" in out and "WARNING  CNIInvalidFile 30-broken.conf" in out

    code, doc = check_json("--conf-dir", str(conf), "--preset", "linkerd")
    assert code == 5 and doc["exitCode"] == 5
    assert doc["winner"] == {
        "file": "10-calico.conflist",
        "network": "k8s-pod-network",
        "cniVersion": "0.3.1",
        "chain": ["calico", "bandwidth", "portmap"],
        "missing": ["linkerd-cni"],
        "misplaced": [],
        "missingBinaries": [],
    }
    assert [(f["name"], f["status"]) for f in doc["files"]] == [
        ("10-calico.conflist", "winner"),
        ("20-patched.conflist", "shadowed"),
        ("30-broken.conf", "invalid"),
    ]
    assert doc["files"][2]["problem"] == "invalid-json"
    assert {(f["code"], f["class"]) for f in doc["findings"]} == {("CNIPluginMissing", 5), ("CNIInvalidFile", 3)}
    assert doc["pods"] is None and doc["required"] == ["linkerd-cni"]


def test_invalid_first_file_exits_6_on_containerd_and_3_on_crio(conf: Path) -> None:
    truncate_write(conf, "05-half.conflist", calico(linkerd=True)[:30])
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    code, doc = check_json("--conf-dir", str(conf), "--preset", "linkerd")
    assert code == 6 and doc["winner"] is None
    assert [f["code"] for f in doc["findings"]] == ["CNIInvalidFirstFile"]
    code, doc = check_json("--conf-dir", str(conf), "--preset", "linkerd", "--runtime", "crio")
    assert code == 3 and doc["winner"]["file"] == "10-calico.conflist"


def test_crio_binary_check_and_default_network(conf: Path, tmp_path: Path) -> None:
    truncate_write(conf, "10-mesh.conflist", conflist("mesh", "bridge", "istio-cni"))
    truncate_write(conf, "20-plain.conflist", conflist("plain", "bridge"))
    bins = tmp_path / "bin"
    bins.mkdir()
    (bins / "bridge").write_bytes(b"")
    (bins / "bridge").chmod(0o755)
    code, doc = check_json("--conf-dir", str(conf), "--runtime", "crio", "--preset", "istio", "--bin-dir", str(bins))
    assert code == 5 and doc["winner"]["file"] == "20-plain.conflist"
    assert doc["files"][0]["status"] == "skipped" and "istio-cni" in doc["files"][0]["why"]
    code, doc = check_json("--conf-dir", str(conf), "--runtime", "crio", "--default-network", "nope")
    assert code == 6 and [f["code"] for f in doc["findings"]] == ["CNINoValidNetwork"]


def test_containerd_missing_binary_exits_6(conf: Path, tmp_path: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    empty = tmp_path / "bin"
    empty.mkdir()
    code, doc = check_json("--conf-dir", str(conf), "--require", "linkerd-cni", "--bin-dir", str(empty))
    assert code == 6 and doc["winner"]["missingBinaries"] == ["calico", "bandwidth", "portmap", "linkerd-cni"]


def test_json_shadow_warning_exits_3(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    rename_in(conf, "05-multus.json", multus("calico", "linkerd-cni"))
    done = check("--conf-dir", str(conf), "--preset", "linkerd")
    assert done.returncode == 3 and "CNIJsonShadow 05-multus.json" in done.stdout
    assert "multus delegates: calico -> linkerd-cni" in done.stdout


def test_no_directory_exits_6(tmp_path: Path) -> None:
    done = check("--conf-dir", str(tmp_path / "absent"))
    assert done.returncode == 6 and "does not exist" in done.stdout


def crictl_info(*types: str, status: str = "OK") -> bytes:
    plugins = [{"Network": {"type": t}, "Source": "{}"} for t in types]
    networks = [
        {"Config": {"Name": "cni-loopback", "CNIVersion": "1.0.0", "Plugins": [{"Network": {"type": "loopback"}}]}},
        {"Config": {"Name": "k8s-pod-network", "CNIVersion": "0.3.1", "Plugins": plugins}},
    ]
    return json.dumps(
        {"cniconfig": {"PluginConfDir": "/etc/cni/net.d", "Networks": networks}, "lastCNILoadStatus": status}
    ).encode()


def test_runtime_view_from_crictl_info(conf: Path, tmp_path: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    info = tmp_path / "info.json"
    info.write_bytes(crictl_info("calico", "bandwidth", "portmap", "linkerd-cni"))
    assert check("--conf-dir", str(conf), "--preset", "linkerd", "--crictl-info", str(info)).returncode == 0
    stale = check(
        "--conf-dir",
        str(conf),
        "--preset",
        "linkerd",
        "--crictl-info",
        "-",
        stdin=crictl_info("calico", "bandwidth", "portmap"),
    )
    assert stale.returncode == 4 and "CNIRuntimeStale" in stale.stdout
    assert "network k8s-pod-network (cniVersion 0.3.1): calico -> bandwidth -> portmap" in stale.stdout
    failed = check("--conf-dir", str(conf), "--crictl-info", "-", stdin=crictl_info(status="no network config"))
    assert failed.returncode == 6 and "CNIRuntimeLoadFailed" in failed.stdout


@pytest.mark.parametrize(
    "flags",
    [["--runtime", "docker"], ["--preset", "cilium"], ["--max-conf-num", "-1"], ["--require", "a/b"], ["--nope"]],
)
def test_usage_errors_exit_64(flags: list[str]) -> None:
    done = check(*flags)
    assert done.returncode == 64 and "usage: nodemeta cni check" in done.stderr and done.stdout == ""


def test_unreadable_input_exits_66(tmp_path: Path) -> None:
    done = check("--conf-dir", str(tmp_path), "--crictl-info", str(tmp_path / "missing.json"))
    assert done.returncode == 66 and "cannot read --crictl-info" in done.stderr


def test_the_report_has_a_seam_for_pod_sections(conf: Path) -> None:
    from nodemeta.cni.command import build_report
    from nodemeta.cni.conf import RuntimeModel
    from nodemeta.cni.patterns import Severity
    from nodemeta.cni.report import PodSection, render_text, to_json

    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    pod = PodSection(
        "shop",
        "cart-0",
        "uid-1",
        "rules-missing",
        Severity.CRITICAL,
        7,
        "PodNotCaptured",
        ("no PROXY_INIT_OUTPUT jump in the nat table",),
    )
    report = build_report(str(conf), RuntimeModel(), ("linkerd-cni",), [], pods=(pod,))
    assert report.exit_code == 7
    text = render_text(report)
    assert "shop/cart-0: rules-missing (critical PodNotCaptured)" in text
    assert "    no PROXY_INIT_OUTPUT jump in the nat table" in text
    assert to_json(report)["pods"][0]["class"] == 7
    assert "Pods: none to audit" in render_text(build_report(str(conf), RuntimeModel(), (), [], pods=()))
