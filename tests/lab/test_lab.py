"""The lab harness itself: pods get real network namespaces that host tools can work in, the conf dir is live,
and closing a lab leaves nothing behind on the host."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.lab.harness import ContainerdLab, kubelet_cgroup_parent
from tests.lab.plugin import LabFactory


def test_iptables_in_a_pod_netns_stays_in_that_pod(clean_lab: ContainerdLab) -> None:
    first = clean_lab.run_pod("mesh-0")
    second = clean_lab.run_pod("mesh-1")
    rule = ["-t", "nat", "-A", "OUTPUT", "-p", "tcp", "--dport", "80", "-j", "REDIRECT", "--to-ports", "15001"]
    clean_lab.in_pod_netns(first, ["iptables", *rule])
    listed = clean_lab.in_pod_netns(first, ["iptables", "-t", "nat", "-S", "OUTPUT"]).stdout
    assert "--to-ports 15001" in listed
    assert "15001" not in clean_lab.in_pod_netns(second, ["iptables", "-t", "nat", "-S", "OUTPUT"]).stdout
    assert "15001" not in clean_lab.in_lab(["iptables", "-t", "nat", "-S", "OUTPUT"]).stdout


def test_conf_dir_changes_reach_containerd(clean_lab: ContainerdLab) -> None:
    conflist = clean_lab.default_conflist()
    conflist["name"] = "swapped"
    for path in clean_lab.conf_dir.iterdir():
        path.unlink()
    clean_lab.write_conflist(conflist, "05-swapped.conflist")
    deadline = time.monotonic() + 20
    while True:
        names = [n["Config"]["Name"] for n in json.loads(clean_lab.cni_config())["Networks"]]
        if "swapped" in names or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "swapped" in names
    sandbox_id = clean_lab.run_pod("after-swap")
    assert clean_lab.sandbox_info(sandbox_id)["cniResult"]


def namespace_members(mnt_ns: str) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") == mnt_ns:
                    members.append(int(entry))
            except OSError:
                pass
    return members


def test_close_leaves_nothing_behind(lab_factory: LabFactory) -> None:
    uid = "0f4a6c1e-1d2b-4c3d-8e9f-00000000c105"
    unified_mounted = os.path.ismount("/sys/fs/cgroup/unified")
    with lab_factory(ipv6=False) as own:
        mnt_ns = os.readlink(f"/proc/{own.holder_pid}/ns/mnt")
        holder, containerd = own.holder_pid, own.containerd_pid
        sandbox_id = own.run_pod("leftover-0", uid=uid)
        app = own.container_pid(own.start_container(sandbox_id, "app"))
        pause = own.sandbox_pid(sandbox_id)
        netns = Path(own.sandbox_netns_path(sandbox_id))
        assert netns.exists()
        assert len(namespace_members(mnt_ns)) >= 3  # holder, containerd, shim (containers have their own)
        # The host still has its cgroup v2 mount; only the lab's private namespace lost it.
        assert os.path.ismount("/sys/fs/cgroup/unified") == unified_mounted
        # Leave the pod running: close() must clean up after it.
    assert namespace_members(mnt_ns) == []
    for pid in (holder, containerd, pause, app):
        assert not Path(f"/proc/{pid}").exists()
    assert not netns.exists()
    assert os.path.ismount("/sys/fs/cgroup/unified") == unified_mounted
    assert not Path("/sys/fs/cgroup/memory", kubelet_cgroup_parent(uid).lstrip("/")).exists()
