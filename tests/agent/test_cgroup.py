"""Process cgroup paths to container id and pod uid, for every runtime layout, and the /proc reader."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from nodemeta.agent.cgroup import LAYOUTS, CgroupRef, parse_cgroup, parse_cgroup_path
from nodemeta.agent.procfs import ProcReader

CID = "3f" * 32
UID = "1b2c3d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"
HASH = "6c0b5a0c8c2a4f8e9d3b1e2f4a5b6c7d"

# Real paths as each runtime and cgroup driver writes them.
SAMPLES = {
    "containerd cgroupfs v1": (f"11:memory:/kubepods/besteffort/pod{UID}/{CID}", CID, UID),
    "containerd systemd v2": (
        f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID.replace('-', '_')}.slice/"
        f"cri-containerd-{CID}.scope", CID, UID,
    ),
    "crio cgroupfs": (f"4:cpu,cpuacct:/kubepods/burstable/pod{UID}/crio-{CID}", CID, UID),
    "crio systemd": (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
        f"crio-{CID}.scope", CID, UID,
    ),
    "containerd systemd-style without systemd": (
        f"0::/system.slice/containerd.service/kubepods-besteffort-pod{UID.replace('-', '_')}.slice:cri-containerd:"
        f"{CID}", CID, UID,
    ),
    "cri-dockerd": (
        f"0::/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/docker-{CID}.scope", CID, UID,
    ),
    "static pod (config hash)": (f"0::/kubepods/pod{HASH}/{CID}", CID, HASH),
    "lab without a parent": (f"5:pids:/k8s.io/{CID}", CID, ""),
    "pod cgroup only (pause-less process)": (f"0::/kubepods/besteffort/pod{UID}", "", UID),
    "host process": ("0::/system.slice/sshd.service", "", ""),
}  # fmt: skip


def test_every_layout() -> None:
    for name, (line, cid, uid) in SAMPLES.items():
        assert parse_cgroup(line) == CgroupRef(cid, uid), name


def test_not_a_container_id() -> None:
    for path in (
        f"/kubepods/pod{UID}/{CID[:-1]}",  # 63 characters
        f"/kubepods/pod{UID}/{CID}x",
        f"/kubepods/pod{UID}/{CID.upper()}",
        f"/kubepods/cri-containerd-{CID}.scope/extra",
        f"/kubepods/docker-{CID}",  # docker layout needs .scope
    ):
        assert parse_cgroup_path(path).container_id == "", path


def test_v1_and_v2_lines_together_and_garbage() -> None:
    text = "\n".join(["garbage", "12:freezer:/", f"11:memory:/kubepods/pod{UID}/{CID}", "0::/"]) + "\n"
    assert parse_cgroup(text) == CgroupRef(CID, UID)
    assert parse_cgroup("") == CgroupRef()
    assert parse_cgroup("\x00\xff:::") == CgroupRef()


hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
uids = st.uuids().map(str)
parents = st.lists(st.from_regex(r"[a-z][a-z0-9.-]{0,12}", fullmatch=True), max_size=3)


@given(cid=hex64, uid=uids, layout=st.sampled_from(LAYOUTS), parent=parents, systemd=st.booleans())
def test_property_any_layout_round_trips(
    cid: str, uid: str, layout: tuple[str, str], parent: list[str], systemd: bool
) -> None:
    prefix, suffix = layout
    pod = f"kubepods-pod{uid.replace('-', '_')}.slice" if systemd else f"pod{uid}"
    path = "/" + "/".join([*parent, pod]) + f"{prefix}{cid}{suffix}"
    assert parse_cgroup_path(path) == CgroupRef(cid, uid)
    assert parse_cgroup(f"0::{path}\n") == CgroupRef(cid, uid)


@given(st.text(max_size=300))
def test_property_never_raises(text: str) -> None:
    ref = parse_cgroup(text)
    assert ref.container_id == "" or len(ref.container_id) == 64


def test_reader_under_a_host_root(tmp_path: Path) -> None:
    (tmp_path / "proc" / "42").mkdir(parents=True)
    (tmp_path / "proc" / "42" / "cgroup").write_text(SAMPLES["containerd systemd v2"][0] + "\n")
    reader = ProcReader(str(tmp_path))
    assert reader.cgroup(42) == CgroupRef(CID, UID)
    assert reader.cgroup(43) is None
    assert reader.cgroup(0) is None and reader.cgroup(-1) is None
    # The real /proc: this process is not in a container.
    assert ProcReader().cgroup(1 << 30) is None
