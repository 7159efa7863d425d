"""The namespace reader on real namespaces: what it reads matches what `ip` and the save binaries print, and every
way a read can go wrong (namespace gone, not a namespace, binary missing, hanging, failing, flooding, garbage,
no permission, cancelled) ends in the project's own error or a clean result, with no process left behind."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from nodemeta.cni.capture import Family, IpRule
from nodemeta.cni.netns import (
    NetnsGone,
    NetnsPermission,
    NetnsSettings,
    SystemNetnsReader,
    ToolFailed,
    ToolMissing,
    ToolTimeout,
    netns_path_for_pid,
    open_netns,
)
from tests.cni.test_capture_kernel import install_linkerd
from tests.cni.test_netns_lab import LabNetns, backend_problem, lab_netns, requires_netns
from tests.cni.test_netns_lab import netns as netns  # the fixture

pytestmark = requires_netns


def fake_backend(tmp_path: Path, script: str) -> NetnsSettings:
    """Settings whose only backend is `script` (a shell script body), found first on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for name in ("iptables-fake-save", "ip6tables-fake-save"):
        path = bindir / name
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return NetnsSettings(
        backends=(("fake", "iptables-fake-save", "ip6tables-fake-save"),),
        path=f"{bindir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}",
        timeout=2.0,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_every_installed_backend_and_family_is_dumped(netns: LabNetns) -> None:
    reader = SystemNetnsReader()
    expected = {
        (family, backend)
        for backend, v4, v6 in reader.settings.backends
        for family, name in ((Family.V4, v4), (Family.V6, v6))
        if shutil.which(name)
    }
    view = await reader.read(netns.path)
    assert {(d.family, d.backend) for d in view.dumps} == expected
    only_v4 = await reader.read(netns.path, [Family.V4])
    assert {(d.family, d.backend) for d in only_v4.dumps} == {e for e in expected if e[0] == Family.V4}


async def test_the_dump_is_what_the_save_binary_prints_inside_the_namespace(netns: LabNetns) -> None:
    if backend_problem("nft", Family.V4):
        pytest.skip(str(backend_problem("nft", Family.V4)))
    install_linkerd(netns, "nft", Family.V4)
    truth = netns.run("iptables-nft-save")
    expected_rules = sum(1 for line in truth.splitlines() if line.startswith("-A "))
    view = await SystemNetnsReader().read(netns.path, [Family.V4])
    dump = next(d for d in view.dumps if d.backend == "nft")
    assert dump.ruleset.rule_count == expected_rules == 7
    assert dump.ruleset.problems == ()


async def test_ip_rules_and_routes_match_what_ip_prints(netns: LabNetns) -> None:
    for family in (Family.V4, Family.V6):
        netns.ip(family, "rule", "add", "fwmark", "0x539/0xffff", "lookup", "133")
        netns.ip(family, "route", "add", "local", "default", "dev", "lo", "table", "133")
    view = await SystemNetnsReader().read(netns.path)
    for family, flag in ((Family.V4, "-4"), (Family.V6, "-6")):
        truth = json.loads(netns.run("ip", flag, "-j", "rule", "show"))
        got = [r for r in view.ip_rules if r.family == family]
        assert sorted(r.priority for r in got) == sorted(r["priority"] for r in truth)
        assert IpRule(family, 32765, 133, fwmark=0x539, fwmask=0xFFFF) in got
        truth_routes = json.loads(netns.run("ip", flag, "-j", "route", "show", "table", "all"))
        local_133 = [r for r in view.routes if r.family == family and r.table == 133]
        assert [(r.type, r.dst_len, r.dev) for r in local_133] == [("local", 0, "lo")]
        assert sum(1 for r in view.routes if r.family == family) == len(truth_routes)


async def test_proc_pid_paths_reach_the_same_namespace(netns: LabNetns) -> None:
    netns.ip(Family.V4, "rule", "add", "fwmark", "7", "lookup", "77")
    sleeper = await asyncio.create_subprocess_exec("ip", "netns", "exec", netns.name, "sleep", "60")
    try:
        # `ip netns exec` execs sleep, so the child's pid is the process inside the namespace once it has switched.
        for _ in range(200):
            if os.readlink(f"/proc/{sleeper.pid}/ns/net") == os.readlink(f"/proc/{os.getpid()}/ns/net"):
                await asyncio.sleep(0.01)
                continue
            break
        view = await SystemNetnsReader().read(netns_path_for_pid(sleeper.pid), [Family.V4])
    finally:
        sleeper.kill()
        await sleeper.wait()
    assert any(r.fwmark == 7 and r.table == 77 for r in view.ip_rules)
    with pytest.raises(NetnsGone):
        await SystemNetnsReader().read(netns_path_for_pid(sleeper.pid))


async def test_a_namespace_that_is_gone_or_never_was_is_netns_gone(tmp_path: Path) -> None:
    reader = SystemNetnsReader()
    with lab_netns() as ns:
        path = ns.path
    with pytest.raises(NetnsGone, match="no such"):
        await reader.read(path)
    plain = tmp_path / "cni-0000"
    plain.write_text("")
    with pytest.raises(NetnsGone, match="not a namespace"):
        await reader.read(str(plain))
    with pytest.raises(NetnsGone, match="not a network namespace"):
        await reader.read("/proc/self/ns/uts")


async def test_missing_binaries_are_tool_missing(netns: LabNetns, tmp_path: Path) -> None:
    with pytest.raises(ToolMissing, match="nsenter-nowhere"):
        await SystemNetnsReader(NetnsSettings(nsenter="nsenter-nowhere")).read(netns.path)
    nothing = NetnsSettings(backends=(("none", "iptables-none-save", "ip6tables-none-save"),))
    with pytest.raises(ToolMissing, match="iptables-none-save"):
        await SystemNetnsReader(nothing).read(netns.path)
    only_v4 = NetnsSettings(backends=(("nft", "iptables-nft-save", "ip6tables-none-save"),))
    if shutil.which("iptables-nft-save"):
        view = await SystemNetnsReader(only_v4).read(netns.path, [Family.V4])
        assert [d.backend for d in view.dumps] == ["nft"]
        with pytest.raises(ToolMissing, match="ip6tables-none-save"):
            await SystemNetnsReader(only_v4).read(netns.path)


async def test_a_hanging_dump_times_out_and_is_killed(netns: LabNetns, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    settings = fake_backend(tmp_path, f"echo $$ > {pidfile}\nexec sleep 60\n")
    settings = NetnsSettings(backends=settings.backends, path=settings.path, timeout=0.5)
    with pytest.raises(ToolTimeout):
        await SystemNetnsReader(settings).read(netns.path, [Family.V4])
    assert not alive(int(pidfile.read_text()))


async def test_a_cancelled_read_leaves_no_process(netns: LabNetns, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    settings = fake_backend(tmp_path, f"echo $$ > {pidfile}\nexec sleep 60\n")
    settings = NetnsSettings(backends=settings.backends, path=settings.path, timeout=30)
    task = asyncio.create_task(SystemNetnsReader(settings).read(netns.path, [Family.V4]))
    # The pid file is written by another process: nothing to await but the file system.
    while not pidfile.exists() or not pidfile.read_text().strip():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not alive(int(pidfile.read_text()))


async def test_failing_flooding_and_garbage_dumps(netns: LabNetns, tmp_path: Path) -> None:
    failing = fake_backend(tmp_path / "a", "echo 'iptables: table gone bad' >&2\nexit 3\n")
    with pytest.raises(ToolFailed, match="exited with 3: iptables: table gone bad"):
        await SystemNetnsReader(failing).read(netns.path, [Family.V4])

    denied = fake_backend(tmp_path / "b", "echo 'could not open: Permission denied (you must be root)' >&2\nexit 4\n")
    with pytest.raises(NetnsPermission):
        await SystemNetnsReader(denied).read(netns.path, [Family.V4])

    flood = fake_backend(tmp_path / "c", "exec head -c 1000000 /dev/zero\n")
    flood = NetnsSettings(backends=flood.backends, path=flood.path, max_output=64 << 10)
    with pytest.raises(ToolFailed, match="more than 65536 bytes"):
        await SystemNetnsReader(flood).read(netns.path, [Family.V4])

    garbage = fake_backend(tmp_path / "d", "head -c 20000 /dev/urandom\nprintf '\\n*nat\\n-A OUTPUT -j RETURN\\n'\n")
    view = await SystemNetnsReader(garbage).read(netns.path, [Family.V4])
    (dump,) = view.dumps
    assert [r.target for r in dump.ruleset.table("nat").chain_rules("OUTPUT")] == ["RETURN"]


def test_an_unprivileged_caller_gets_netns_permission() -> None:
    """A forked child drops to nobody (no exec: the interpreter is already loaded) and opens init's namespace."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running any of pytest's cleanup
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                open_netns("/proc/1/ns/net")
                verdict = "opened"
            except NetnsPermission as err:
                verdict = f"permission: {err}"
            except Exception as err:
                verdict = f"other: {type(err).__name__}: {err}"
            os.write(write_end, verdict.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        verdict = pipe.read().decode()
    os.waitpid(pid, 0)
    assert verdict.startswith("permission: /proc/1/ns/net"), verdict


def test_open_netns_returns_a_network_namespace_descriptor() -> None:
    fd = open_netns("/proc/self/ns/net")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == os.readlink("/proc/self/ns/net")
    finally:
        os.close(fd)
