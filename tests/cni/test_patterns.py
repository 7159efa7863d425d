"""Every known failure pattern as a scenario: the directory written the way the real installers write it, looked at
after each step (as a watcher's rescan would), and the findings compared with what each step must produce."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodemeta.cni.conf import RuntimeKind, RuntimeModel, evaluate
from nodemeta.cni.loaded import LoadedView, from_crictl_info, from_status_info
from nodemeta.cni.patterns import (
    Code,
    Finding,
    History,
    PatternSettings,
    ProblemClass,
    Severity,
    find,
    problem_class,
)
from nodemeta.cni.scan import scan
from tests.cni.conf_writers import (
    atomic_write,
    aws,
    calico,
    cilium,
    cilium_exclusive,
    conflist,
    delete_create,
    multus,
    rename_in,
    truncate_write,
)

LINKERD = ("linkerd-cni",)


class Observer:
    """Looks at the directory after each step, keeping the history a watcher would keep."""

    def __init__(
        self,
        directory: Path,
        model: RuntimeModel | None = None,
        required: tuple[str, ...] = LINKERD,
        settings: PatternSettings | None = None,
    ) -> None:
        self.directory = directory
        self.model = model or RuntimeModel()
        self.required = required
        self.settings = settings or PatternSettings()
        self.history = History(self.settings)
        self.now = 0.0

    def look(self, after: float = 1.0, loaded: LoadedView | None = None) -> dict[Code, Finding]:
        self.now += after
        state = evaluate(
            scan(self.directory),
            conf_dir=str(self.directory),
            model=self.model,
            required=self.required,
            observed_at=self.now,
        )
        self.history.add(state)
        found = find(self.history.states, loaded, self.settings)
        assert len({f.code for f in found}) == len(found), found
        return {f.code: f for f in found}


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    directory = tmp_path / "net.d"
    directory.mkdir()
    return directory


def worst(findings: dict[Code, Finding]) -> ProblemClass:
    return max((problem_class(f) for f in findings.values()), default=ProblemClass.HEALTHY)


def test_a_healthy_patched_chain_has_no_findings(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    assert Observer(conf).look() == {}


def test_primary_written_after_the_mesh_patched_another_file(conf: Path) -> None:
    # The mesh patched flannel's file; then Calico's install-cni wrote its own, which sorts first.
    atomic_write(conf, "20-flannel.conflist", conflist("cbr0", "flannel", "portmap", "linkerd-cni"))
    watcher = Observer(conf)
    assert watcher.look() == {}
    truncate_write(conf, "10-calico.conflist", calico())
    found = watcher.look()
    assert set(found) == {Code.PLUGIN_MISSING, Code.NEW_WINNER}
    missing = found[Code.PLUGIN_MISSING]
    assert missing.file == "10-calico.conflist" and missing.severity is Severity.CRITICAL
    assert "linkerd-cni" in missing.message and "20-flannel.conflist has it" in missing.message
    assert worst(found) is ProblemClass.CHAIN


def test_a_lower_sorting_newcomer_wins(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    watcher = Observer(conf)
    assert watcher.look() == {}
    atomic_write(conf, "00-multus.conf", multus("calico", "bandwidth", "portmap"))
    found = watcher.look()
    assert set(found) == {Code.NEW_WINNER, Code.PLUGIN_MISSING}
    newcomer = found[Code.NEW_WINNER]
    assert newcomer.file == "00-multus.conf" and newcomer.severity is Severity.CRITICAL
    assert "10-calico.conflist" in newcomer.message and "Multus" in newcomer.message
    # Level-triggered: an unrelated change later does not make the cause disappear.
    truncate_write(conf, "99-unrelated.conf", b'{"type": "bridge", "name": "x"}')
    assert set(watcher.look()) == {Code.NEW_WINNER, Code.PLUGIN_MISSING}


def test_a_newcomer_that_carries_the_plugin_is_only_information(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    watcher = Observer(conf)
    watcher.look()
    atomic_write(conf, "05-cilium.conflist", cilium(linkerd=True))
    found = watcher.look()
    assert set(found) == {Code.NEW_WINNER}
    assert found[Code.NEW_WINNER].severity is Severity.INFO and worst(found) is ProblemClass.HEALTHY


def test_a_json_file_sorting_first_shadows_the_patched_file(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    watcher = Observer(conf)
    watcher.look()
    rename_in(conf, "05-custom.json", b'{"cniVersion": "0.3.1", "name": "custom", "type": "bridge"}')
    found = watcher.look()
    assert set(found) == {Code.JSON_SHADOW, Code.NEW_WINNER, Code.PLUGIN_MISSING}
    assert found[Code.JSON_SHADOW].file == "05-custom.json" and found[Code.JSON_SHADOW].severity is Severity.CRITICAL
    # A .json that carries the plugin (here through Multus delegates) is still a warning: no installer patches it.
    rename_in(conf, "05-custom.json", multus("calico", "linkerd-cni"))
    found = watcher.look()
    assert found[Code.JSON_SHADOW].severity is Severity.WARNING and worst(found) is ProblemClass.WARNINGS


def test_calico_rewrites_in_place_and_drops_the_entry(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True), 0o644)
    watcher = Observer(conf)
    assert watcher.look() == {}
    truncate_write(conf, "10-calico.conflist", calico())  # calico-node restarts: install-cni rewrites its template
    found = watcher.look()
    assert set(found) == {Code.REWRITE_DROPPED_PLUGIN, Code.PLUGIN_MISSING}
    rewrite = found[Code.REWRITE_DROPPED_PLUGIN]
    assert "in place" in rewrite.message and "Calico" in rewrite.message and "linkerd-cni" in rewrite.message
    # The mesh re-patches: everything is fine again.
    atomic_write(conf, "10-calico.conflist", calico(linkerd=True))
    assert watcher.look() == {}


def test_aws_renames_its_file_in_and_drops_the_entry(conf: Path) -> None:
    rename_in(conf, "10-aws.conflist", aws(linkerd=True))
    watcher = Observer(conf)
    assert watcher.look() == {}
    rename_in(conf, "10-aws.conflist", aws())
    found = watcher.look()
    assert set(found) == {Code.REWRITE_DROPPED_PLUGIN, Code.PLUGIN_MISSING}
    assert "new inode" in found[Code.REWRITE_DROPPED_PLUGIN].message
    assert "AWS VPC CNI" in found[Code.REWRITE_DROPPED_PLUGIN].message


def test_delete_then_create_without_the_plugin(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    watcher = Observer(conf)
    watcher.look()
    (conf / "10-calico.conflist").unlink()
    assert set(watcher.look()) == {Code.NO_CONFIG}
    truncate_write(conf, "10-calico.conflist", calico())
    found = watcher.look()
    assert set(found) == {Code.RECREATED_WITHOUT_PLUGIN, Code.PLUGIN_MISSING}
    assert found[Code.RECREATED_WITHOUT_PLUGIN].file == "10-calico.conflist"
    assert "deleted and created again" in found[Code.RECREATED_WITHOUT_PLUGIN].message


def test_delete_then_create_seen_as_one_change_is_a_replacement(conf: Path) -> None:
    # Both events fell into one debounce window: the file changed and lost the plugin (the file system may hand
    # the freed inode number straight back, so the inode cannot tell this from a rewrite in place).
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    watcher = Observer(conf)
    watcher.look()
    delete_create(conf, "10-calico.conflist", calico())
    found = watcher.look()
    assert set(found) == {Code.REWRITE_DROPPED_PLUGIN, Code.PLUGIN_MISSING}
    assert "inode" in found[Code.REWRITE_DROPPED_PLUGIN].message


def fight(conf: Path, watcher: Observer, rounds: int, gap: float) -> dict[Code, Finding]:
    """Cilium (exclusive mode) rewrites its file and renames the others away; the linkerd installer patches it back."""
    found: dict[Code, Finding] = {}
    for _ in range(rounds):
        atomic_write(conf, "05-cilium.conflist", cilium())
        cilium_exclusive(conf)
        found = watcher.look(gap)
        atomic_write(conf, "05-cilium.conflist", cilium(linkerd=True))
        found = watcher.look(gap)
    return found


def test_cilium_exclusive_mode_and_the_mesh_fight_over_one_file(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    watcher = Observer(conf)
    watcher.look()
    found = fight(conf, watcher, rounds=3, gap=2.0)
    assert set(found) == {Code.FLAPPING, Code.NEW_WINNER}
    flap = found[Code.FLAPPING]
    assert flap.severity is Severity.CRITICAL and flap.file == "05-cilium.conflist"
    assert "exclusive" in flap.message and "cilium_bak" in flap.message and "linkerd-cni" in flap.message
    assert (conf / "10-calico.conflist.cilium_bak").exists()


def test_changes_spread_beyond_the_window_are_not_a_fight(conf: Path) -> None:
    truncate_write(conf, "05-cilium.conflist", cilium(linkerd=True))
    watcher = Observer(conf, settings=PatternSettings(flap_window=60.0))
    watcher.look()
    found = fight(conf, watcher, rounds=3, gap=61.0)
    assert Code.FLAPPING not in found
    found = fight(conf, watcher, rounds=3, gap=1.0)
    assert Code.FLAPPING in found


def test_an_invalid_first_file_breaks_containerd_but_not_crio(conf: Path) -> None:
    truncate_write(conf, "10-calico.conflist", calico(linkerd=True))
    truncate_write(conf, "05-half-written.conflist", calico(linkerd=True)[:40])
    on_containerd = Observer(conf).look()
    assert set(on_containerd) == {Code.INVALID_FIRST_FILE}
    assert on_containerd[Code.INVALID_FIRST_FILE].file == "05-half-written.conflist"
    assert worst(on_containerd) is ProblemClass.NO_NETWORK
    on_crio = Observer(conf, RuntimeModel(RuntimeKind.CRIO)).look()
    assert set(on_crio) == {Code.INVALID_FILE}
    assert worst(on_crio) is ProblemClass.WARNINGS


def test_no_configuration_at_all(conf: Path) -> None:
    assert set(Observer(conf).look()) == {Code.NO_CONFIG}
    assert set(Observer(conf / "missing").look()) == {Code.NO_CONFIG}
    assert set(Observer(conf, RuntimeModel(RuntimeKind.CRIO)).look()) == {Code.NO_CONFIG}
    truncate_write(conf, "10-x.conf", b"{}")
    assert set(Observer(conf, RuntimeModel(RuntimeKind.CRIO)).look()) == {Code.NO_VALID_NETWORK, Code.INVALID_FILE}


def containerd_info(*networks: tuple[str, str, tuple[str, ...]], status: str = "OK") -> dict[str, str]:
    """CRI Status(verbose) info as containerd fills it: JSON text of go-cni's config, loopback network first."""

    def network(name: str, version: str, types: tuple[str, ...]) -> dict[str, object]:
        plugins = [{"Network": {"type": t}, "Source": json.dumps({"type": t})} for t in types]
        return {"Config": {"Name": name, "CNIVersion": version, "Plugins": plugins, "Source": "{}"}, "IFName": "eth0"}

    loaded = [network("cni-loopback", "1.0.0", ("loopback",)), *(network(*n) for n in networks)]
    config = {
        "PluginDirs": ["/opt/cni/bin"],
        "PluginConfDir": "/etc/cni/net.d",
        "PluginMaxConfNum": 1,
        "Prefix": "eth",
        "Networks": loaded,
    }
    return {"cniconfig": json.dumps(config), "lastCNILoadStatus": status}


def test_the_runtime_did_not_reload_what_is_on_disk(conf: Path) -> None:
    rename_in(conf, "10-calico.conflist", calico(linkerd=True))
    watcher = Observer(conf)
    patched = ("calico", "bandwidth", "portmap", "linkerd-cni")
    same = from_status_info(containerd_info(("k8s-pod-network", "0.3.1", patched)))
    assert same.networks[0].types == patched and same.conf_dir == "/etc/cni/net.d"
    assert watcher.look(loaded=same) == {}
    stale = from_status_info(containerd_info(("k8s-pod-network", "0.3.1", ("calico", "bandwidth", "portmap"))))
    found = watcher.look(loaded=stale)
    assert set(found) == {Code.RUNTIME_STALE} and worst(found) is ProblemClass.RUNTIME
    assert "calico -> bandwidth -> portmap" in found[Code.RUNTIME_STALE].message
    failed = from_status_info(containerd_info(status='"cni config load failed: no network config found"'))
    found = watcher.look(loaded=failed)
    assert set(found) == {Code.RUNTIME_LOAD_FAILED} and worst(found) is ProblemClass.NO_NETWORK
    assert "no network config found" in found[Code.RUNTIME_LOAD_FAILED].message


def test_crictl_info_output_is_understood() -> None:
    info = containerd_info(("k8s-pod-network", "0.3.1", ("calico",)))
    doc = {"status": {"conditions": []}, "cniconfig": json.loads(info["cniconfig"]), "lastCNILoadStatus": "OK"}
    view = from_crictl_info(json.dumps(doc).encode())
    assert view.error == "" and not view.load_failed and view.networks[0].types == ("calico",)
    nested = from_crictl_info(json.dumps({"info": doc}).encode())
    assert nested == view
    assert from_crictl_info(b"not json").error
    assert from_crictl_info(b'{"cniconfig": {"Networks": 3}}').error


def test_the_history_is_bounded_and_keeps_only_changes(conf: Path) -> None:
    settings = PatternSettings(history=4)
    watcher = Observer(conf, settings=settings)
    for i in range(10):
        truncate_write(conf, "10-x.conflist", conflist("x", "bridge", version=f"0.{i}.0"))
        watcher.look()
        watcher.look()  # no change: not recorded
    assert len(watcher.history) == 4


def test_the_exit_class_follows_severity() -> None:
    assert problem_class(Finding(Code.PLUGIN_MISSING, Severity.CRITICAL, "f", "m")) is ProblemClass.CHAIN
    assert problem_class(Finding(Code.JSON_SHADOW, Severity.WARNING, "f", "m")) is ProblemClass.WARNINGS
    assert problem_class(Finding(Code.NEW_WINNER, Severity.INFO, "f", "m")) is ProblemClass.HEALTHY
    assert os.EX_USAGE == 64
