"""The configuration model on real directories: which files count, how each parses, who wins per runtime."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodemeta.cni.conf import (
    ConfigState,
    FileStatus,
    ProblemKind,
    RuntimeKind,
    RuntimeModel,
    evaluate,
    required_types,
)
from nodemeta.cni.scan import ScanLimits, list_binaries, scan
from tests.cni.conf_writers import LINKERD, calico, conflist, multus, truncate_write

CONTAINERD = RuntimeModel()
CRIO = RuntimeModel(RuntimeKind.CRIO)


def state_of(
    directory: Path,
    model: RuntimeModel = CONTAINERD,
    required: tuple[str, ...] = (),
    binaries: frozenset[str] | None = None,
    limits: ScanLimits | None = None,
) -> ConfigState:
    return evaluate(scan(directory, limits), conf_dir=str(directory), model=model, required=required, binaries=binaries)


def write(directory: Path, name: str, data: bytes | str) -> None:
    (directory / name).write_bytes(data.encode() if isinstance(data, str) else data)


def statuses(state: ConfigState) -> list[tuple[str, FileStatus]]:
    return [(v.file.name, v.status) for v in state.selection.verdicts]


def test_candidates_are_non_directories_with_an_exact_extension_in_byte_order(tmp_path: Path) -> None:
    plugin = '{"cniVersion": "0.3.1", "name": "n", "type": "bridge"}'
    for name in ("10-a.conf", "1-b.conf", "A.conf", "a.conf", "_x.conf", "Z.json", ".conf", "b.conflist"):
        write(tmp_path, name, plugin if not name.endswith(".conflist") else conflist("b", "bridge"))
    for name in ("x.CONF", "x.conf.bak", "10-calico.conflist.cilium_bak", "noext", "y.yaml"):
        write(tmp_path, name, plugin)
    (tmp_path / "dir.conf").mkdir()
    os.symlink(tmp_path / "a.conf", tmp_path / "link.conf")

    state = state_of(tmp_path)

    # Byte order: '.' < '1' < 'A' < 'Z' < '_' < 'a' < 'b' < 'l', and '-' (0x2d) < '0' (0x30) puts 1-b before 10-a.
    expected = [".conf", "1-b.conf", "10-a.conf", "A.conf", "Z.json", "_x.conf", "a.conf", "b.conflist", "link.conf"]
    assert [f.name for f in state.files] == expected
    assert state.winner is not None and state.winner.name == ".conf"
    assert set(state.others) == {"x.CONF", "x.conf.bak", "10-calico.conflist.cilium_bak", "noext", "y.yaml", "dir.conf"}
    link = state.file("link.conf")
    assert link is not None and link.valid and link.digest == state.file("a.conf").digest  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("10-x.conflist", "{", ProblemKind.INVALID_JSON),
        ("10-x.conflist", "\ufeff" + conflist("n", "bridge").decode(), ProblemKind.INVALID_JSON),
        ("10-x.conflist", '{"name": "n", "plugins": [{"type": "bridge", "mtu": NaN}]}', ProblemKind.INVALID_JSON),
        ("10-x.conflist", '{"name": "n", "plugins": []}', ProblemKind.NO_PLUGINS),
        ("10-x.conflist", '{"name": "n"}', ProblemKind.NO_PLUGINS),
        ("10-x.conflist", '{"name": "n", "loadOnlyInlinedPlugins": true}', ProblemKind.NO_PLUGINS),
        ("10-x.conflist", '{"plugins": [{"type": "bridge"}]}', ProblemKind.MISSING_NAME),
        ("10-x.conflist", "null", ProblemKind.MISSING_NAME),
        ("10-x.conflist", '{"name": 7, "plugins": [{"type": "bridge"}]}', ProblemKind.BAD_FIELD),
        ("10-x.conflist", '{"name": "n", "plugins": {"type": "bridge"}}', ProblemKind.BAD_FIELD),
        ("10-x.conflist", '{"name": "n", "plugins": [{"type": "bridge"}, {"mtu": 1}]}', ProblemKind.MISSING_TYPE),
        ("10-x.conflist", '{"name": "n", "plugins": [{"type": 5}]}', ProblemKind.BAD_FIELD),
        ("10-x.conflist", '{"name": "n", "plugins": [7]}', ProblemKind.NOT_AN_OBJECT),
        ("10-x.conflist", '{"name": "n", "disableCheck": "maybe", "plugins": [{"type": "b"}]}', ProblemKind.BAD_FIELD),
        ("10-x.conflist", "[]", ProblemKind.NOT_AN_OBJECT),
        ("10-x.conf", '{"cniVersion": "0.3.1", "name": "n"}', ProblemKind.MISSING_TYPE),
        # A conflist saved as .conf: the runtimes read it as one plugin without a type.
        ("10-x.conf", conflist("n", "calico").decode(), ProblemKind.MISSING_TYPE),
        ("10-x.json", "", ProblemKind.INVALID_JSON),
        ("10-x.json", '"bridge"', ProblemKind.NOT_AN_OBJECT),
    ],
)
def test_each_invalid_file_says_why(tmp_path: Path, name: str, content: str, problem: ProblemKind) -> None:
    write(tmp_path, name, content)
    [parsed] = state_of(tmp_path).files
    assert not parsed.valid
    assert parsed.problem is problem
    assert parsed.detail


def test_a_single_plugin_is_up_converted_and_type_matches_case_insensitively(tmp_path: Path) -> None:
    write(tmp_path, "10-bridge.conf", '{"cniVersion": "0.4.0", "name": "mynet", "Type": "bridge"}')
    [parsed] = state_of(tmp_path).files
    assert parsed.network is not None
    assert (parsed.network.name, parsed.network.cni_version, parsed.network.types) == ("mynet", "0.4.0", ("bridge",))
    assert parsed.network.single


def test_a_conflist_takes_plugins_from_its_network_subdirectory(tmp_path: Path) -> None:
    write(tmp_path, "10-calico.conflist", calico())
    (tmp_path / "k8s-pod-network").mkdir()
    write(tmp_path / "k8s-pod-network", "50-linkerd.conf", json.dumps(LINKERD))
    write(tmp_path / "k8s-pod-network", "ignored.json", '{"type": "nope"}')
    write(tmp_path, "20-bare.conflist", '{"cniVersion": "1.0.0", "name": "bare"}')
    (tmp_path / "bare").mkdir()
    write(tmp_path / "bare", "a.conf", '{"type": "bridge"}')
    write(
        tmp_path, "30-inlined.conflist", '{"name": "inl", "loadOnlyInlinedPlugins": true, "plugins": [{"type": "x"}]}'
    )
    (tmp_path / "inl").mkdir()
    write(tmp_path / "inl", "a.conf", '{"type": "extra"}')

    state = state_of(tmp_path, required=("linkerd-cni",))

    assert state.file("10-calico.conflist").network.types == ("calico", "bandwidth", "portmap", "linkerd-cni")  # type: ignore[union-attr]
    assert state.file("20-bare.conflist").network.types == ("bridge",)  # type: ignore[union-attr]
    assert state.file("30-inlined.conflist").network.types == ("x",)  # type: ignore[union-attr]
    assert state.chain.ok


def test_unreadable_entries_are_invalid_files_not_errors(tmp_path: Path) -> None:
    os.symlink(tmp_path / "missing", tmp_path / "00-dangling.conf")
    os.mkfifo(tmp_path / "01-fifo.conf")
    (tmp_path / "target").mkdir()
    os.symlink(tmp_path / "target", tmp_path / "02-dirlink.conf")
    write(tmp_path, "03-big.conflist", calico())
    state = state_of(tmp_path, model=CRIO, limits=ScanLimits(max_file_bytes=50))
    problems = {f.name: (f.problem, f.detail) for f in state.files}
    assert {name: p for name, (p, _) in problems.items()} == dict.fromkeys(
        ["00-dangling.conf", "01-fifo.conf", "02-dirlink.conf", "03-big.conflist"], ProblemKind.UNREADABLE
    )
    assert "directory" in problems["02-dirlink.conf"][1]
    assert "larger than 50 bytes" in problems["03-big.conflist"][1]
    assert state.winner is None and state.selection.fatal


def test_a_missing_directory_has_no_files(tmp_path: Path) -> None:
    state = state_of(tmp_path / "absent")
    assert not state.exists and state.files == () and state.selection.fatal and state.winner is None


# -- containerd ----------------------------------------------------------------------------------------------------


def test_containerd_uses_the_first_file_even_when_a_later_one_has_the_plugin(tmp_path: Path) -> None:
    write(tmp_path, "10-calico.conflist", calico())
    write(tmp_path, "20-other.conflist", conflist("other", "bridge", "linkerd-cni"))
    state = state_of(tmp_path, required=("linkerd-cni",))
    assert state.winner is not None and state.winner.name == "10-calico.conflist"
    assert statuses(state) == [("10-calico.conflist", FileStatus.WINNER), ("20-other.conflist", FileStatus.SHADOWED)]
    assert state.chain.missing == ("linkerd-cni",)


def test_containerd_fails_the_whole_load_on_an_invalid_first_file(tmp_path: Path) -> None:
    write(tmp_path, "05-broken.conf", '{"cniVersion": "0.3.1", "name": "x"}')
    write(tmp_path, "10-calico.conflist", calico(linkerd=True))
    state = state_of(tmp_path, required=("linkerd-cni",))
    assert state.winner is None and state.selection.fatal
    assert statuses(state) == [("05-broken.conf", FileStatus.FATAL), ("10-calico.conflist", FileStatus.SHADOWED)]


def test_containerd_max_conf_num(tmp_path: Path) -> None:
    write(tmp_path, "10-a.conflist", conflist("a", "bridge"))
    write(tmp_path, "20-b.conflist", conflist("b", "bridge"))
    write(tmp_path, "30-c.conflist", "{")
    two = state_of(tmp_path, RuntimeModel(max_conf_num=2))
    assert statuses(two) == [
        ("10-a.conflist", FileStatus.WINNER),
        ("20-b.conflist", FileStatus.LOADED),
        ("30-c.conflist", FileStatus.INVALID),
    ]
    assert not two.selection.fatal
    everything = state_of(tmp_path, RuntimeModel(max_conf_num=0))
    assert everything.selection.fatal and statuses(everything)[2] == ("30-c.conflist", FileStatus.FATAL)


# -- CRI-O -----------------------------------------------------------------------------------------------------


def test_crio_skips_invalid_files_missing_binaries_and_repeated_names(tmp_path: Path) -> None:
    write(tmp_path, "00-broken.conf", "{")
    write(tmp_path, "01-mesh.conflist", conflist("mesh", "calico", "linkerd-cni"))
    write(tmp_path, "10-calico.conflist", calico())
    write(tmp_path, "20-dup.conflist", conflist("k8s-pod-network", "bridge"))
    bins = tmp_path / "bin"
    bins.mkdir()
    for binary in ("calico", "bandwidth", "portmap", "bridge"):
        (bins / binary).write_bytes(b"#!/bin/sh\n")
        (bins / binary).chmod(0o755)
    (bins / "not-executable").write_bytes(b"")
    binaries = list_binaries([bins, tmp_path / "no-such-dir"])
    assert binaries == {"calico", "bandwidth", "portmap", "bridge"}
    (conf := tmp_path / "conf").mkdir()
    for f in ("00-broken.conf", "01-mesh.conflist", "10-calico.conflist", "20-dup.conflist"):
        os.rename(tmp_path / f, conf / f)

    state = state_of(conf, CRIO, ("linkerd-cni",), binaries)

    assert statuses(state) == [
        ("00-broken.conf", FileStatus.INVALID),
        ("01-mesh.conflist", FileStatus.SKIPPED),
        ("10-calico.conflist", FileStatus.WINNER),
        ("20-dup.conflist", FileStatus.SKIPPED),
    ]
    assert "linkerd-cni" in state.selection.verdicts[1].why
    assert "already defined by 10-calico.conflist" in state.selection.verdicts[3].why
    assert state.chain.missing == ("linkerd-cni",)
    # Without knowing the binaries, the mesh file is the first valid one.
    assert state_of(conf, CRIO, ("linkerd-cni",)).winner.name == "01-mesh.conflist"  # type: ignore[union-attr]


def test_crio_default_network_pins_a_name(tmp_path: Path) -> None:
    write(tmp_path, "10-a.conflist", conflist("a", "bridge"))
    write(tmp_path, "20-b.conflist", conflist("b", "bridge", "istio-cni"))
    pinned = state_of(tmp_path, RuntimeModel(RuntimeKind.CRIO, default_network="b"), ("istio-cni",))
    assert pinned.winner is not None and pinned.winner.name == "20-b.conflist" and pinned.chain.ok
    absent = state_of(tmp_path, RuntimeModel(RuntimeKind.CRIO, default_network="c"))
    assert absent.winner is None and absent.selection.fatal and "'c'" in absent.selection.why


# -- required plugins ---------------------------------------------------------------------------------------------


def test_presets_and_required_types() -> None:
    assert required_types(["linkerd"], ["istio-cni", "linkerd-cni", "x"]) == ("linkerd-cni", "istio-cni", "x")
    with pytest.raises(KeyError):
        required_types(["cilium"])


def test_a_required_plugin_must_follow_the_primary(tmp_path: Path) -> None:
    write(tmp_path, "10-mesh-first.conflist", conflist("n", "linkerd-cni", "calico"))
    state = state_of(tmp_path, required=("linkerd-cni",))
    assert state.chain.misplaced == ("linkerd-cni",) and state.chain.missing == () and not state.chain.ok


def test_multus_delegates_count_as_the_chain(tmp_path: Path) -> None:
    truncate_write(tmp_path, "00-multus.conf", multus("calico", "linkerd-cni"))
    state = state_of(tmp_path, required=("linkerd-cni",))
    assert state.winner is not None and state.winner.network is not None
    assert state.winner.network.types == ("multus",)
    assert state.chain.ok
    assert not state_of(tmp_path, required=("istio-cni",)).chain.ok
