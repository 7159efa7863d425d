"""Reading a pod's network namespace: its iptables rules (both backends, IPv4 and IPv6) and its policy routing.

This is the adapter under `nodemeta.cni.capture`: it produces a `NetnsView` and nothing else, and it is the one
place where subprocess, netlink and OS errors become the `NetnsError` tree:

    NetnsError
    ├── NetnsGone          the path does not exist (any more) or is no longer a mounted network namespace
    ├── NetnsPermission    not allowed to open or enter it (the agent needs CAP_SYS_ADMIN and CAP_NET_ADMIN)
    ├── ToolMissing        nsenter, or every iptables-save binary of a family, is not installed
    ├── ToolTimeout        a dump took longer than its deadline (the process is killed)
    └── ToolFailed         a dump exited with an error, or printed more than the output bound

How it enters the namespace: the namespace file (`/var/run/netns/cni-<uuid>` or `/proc/<pid>/ns/net`) is opened
once, checked to be a network namespace (`NS_GET_NSTYPE`), and held open for the whole read, so a pod deleted
meanwhile cannot make the dumps read some other namespace. Each `*-save` binary runs under
`nsenter --net=/proc/self/fd/<fd>` with that descriptor passed down; only the network namespace changes, so the
binaries are the host's. The netlink socket for `ip rule` and the routes is created by a short-lived thread that
switches its own namespace (setns is per thread) and then ends; the socket stays bound to the pod's namespace.

The dumps run without `-t`: asking a legacy backend for a named table would load and create that table.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pyroute2 import AsyncIPRoute
from pyroute2 import netns as pyroute2_netns
from pyroute2.netlink import NETLINK_ROUTE
from pyroute2.netlink.exceptions import NetlinkError

from nodemeta.cni.capture import Dump, Family, IpRule, NetnsView, Route, parse_save

__all__ = [
    "NetnsError",
    "NetnsGone",
    "NetnsPermission",
    "NetnsSettings",
    "SystemNetnsReader",
    "ToolFailed",
    "ToolMissing",
    "ToolTimeout",
    "ViewSource",
    "netns_path_for_pid",
    "open_netns",
]


class NetnsError(Exception):
    """Base of every error raised while reading a network namespace."""


class NetnsGone(NetnsError):
    """The namespace does not exist (any more): the pod or process is gone, or the bind mount was removed."""


class NetnsPermission(NetnsError):
    """Opening or entering the namespace was not allowed."""


class ToolMissing(NetnsError):
    """A binary the read needs is not installed."""


class ToolTimeout(NetnsError):
    """A dump did not finish within its deadline."""


class ToolFailed(NetnsError):
    """A dump failed or printed more than the output bound."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NetnsSettings:
    """How namespaces are read. Each number bounds time or memory per pod."""

    # Resolved on the host's PATH (or `path`); nsenter only switches the network namespace.
    nsenter: str = "nsenter"
    # (backend, IPv4 dump binary, IPv6 dump binary). Both backends by default: a mesh may install its rules with
    # either, and the wrong one would report rules missing. A backend whose binary is not installed is skipped.
    backends: tuple[tuple[str, str, str], ...] = (
        ("nft", "iptables-nft-save", "ip6tables-nft-save"),
        ("legacy", "iptables-legacy-save", "ip6tables-legacy-save"),
    )
    # A pod's dump is a few dozen rules and takes ~10 ms; 5 s means the machine is stuck, not busy.
    timeout: float = 5.0
    # A pod namespace holds kilobytes of rules; 8 MiB allows a host-network pod (kube-proxy's rules for tens of
    # thousands of services) while bounding memory.
    max_output: int = 8 << 20
    # Where binaries are looked up; None means the agent's PATH.
    path: str | None = None


class ViewSource(Protocol):
    """What the capture audit needs from a namespace."""

    async def read(self, path: str, families: Sequence[Family] = (Family.V4, Family.V6)) -> NetnsView: ...


def netns_path_for_pid(pid: int, *, proc: str = "/proc") -> str:
    """The namespace file of a process (the pod's sandbox process) under `proc` (a host /proc mounted elsewhere)."""
    return f"{proc}/{pid}/ns/net"


_NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3), Linux >= 4.11
_CLONE_NEWNET = 0x40000000


def open_netns(path: str) -> int:
    """Open `path` and check it is a network namespace; the caller closes the descriptor."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as err:
        raise NetnsGone(f"{path}: no such network namespace") from err
    except PermissionError as err:
        raise NetnsPermission(f"{path}: {err.strerror}") from err
    except OSError as err:
        if err.errno == errno.ESRCH:
            raise NetnsGone(f"{path}: the process is gone") from err
        raise NetnsError(f"{path}: {err.strerror or err}") from err
    try:
        kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as err:
        os.close(fd)
        # A plain file where a namespace was bind-mounted: the mount was removed (the pod's sandbox is gone).
        raise NetnsGone(f"{path}: not a namespace (the namespace mount is gone)") from err
    if kind != _CLONE_NEWNET:
        os.close(fd)
        raise NetnsGone(f"{path}: a namespace, but not a network namespace")
    return fd


class SystemNetnsReader:
    """Reads namespaces with the node's iptables-save binaries and netlink. One instance serves all pods."""

    def __init__(self, settings: NetnsSettings | None = None) -> None:
        self.settings = settings or NetnsSettings()

    def _which(self, name: str) -> str | None:
        return shutil.which(name, path=self.settings.path)

    def available_backends(self) -> dict[str, dict[Family, str]]:
        """The installed dump binaries: backend -> family -> absolute path."""
        found: dict[str, dict[Family, str]] = {}
        for backend, v4, v6 in self.settings.backends:
            for family, name in ((Family.V4, v4), (Family.V6, v6)):
                resolved = self._which(name)
                if resolved is not None:
                    found.setdefault(backend, {})[family] = resolved
        return found

    async def read(self, path: str, families: Sequence[Family] = (Family.V4, Family.V6)) -> NetnsView:
        """Dump every backend of every family in `families`, and the ip rules and routes, of namespace `path`."""
        nsenter = self._which(self.settings.nsenter)
        if nsenter is None:
            raise ToolMissing(f"{self.settings.nsenter} is not installed")
        backends = self.available_backends()
        jobs: list[tuple[Family, str, str]] = []
        for family in dict.fromkeys(families):
            per_family = [(family, b, bins[family]) for b, bins in backends.items() if family in bins]
            if not per_family:
                names = ", ".join(v6 if family == Family.V6 else v4 for _, v4, v6 in self.settings.backends)
                raise ToolMissing(f"no {family} rule dump binary is installed (looked for {names})")
            jobs.extend(per_family)
        # An open and an ioctl on nsfs or procfs: no disk, nothing to wait for, so no thread (which could leak the
        # descriptor if the caller were cancelled meanwhile).
        fd = open_netns(path)
        try:
            async with asyncio.TaskGroup() as group:
                dump_tasks = [
                    (family, backend, group.create_task(self._dump(nsenter, fd, binary, path)))
                    for family, backend, binary in jobs
                ]
                routing = group.create_task(_read_routing(fd, path, families))
        except* NetnsError as errors:
            raise errors.exceptions[0] from None
        finally:
            os.close(fd)
        dumps = tuple(Dump(family, backend, parse_save(task.result())) for family, backend, task in dump_tasks)
        ip_rules, routes = routing.result()
        return NetnsView(dumps=dumps, ip_rules=ip_rules, routes=routes)

    async def _dump(self, nsenter: str, fd: int, binary: str, path: str) -> str:
        argv = [nsenter, f"--net=/proc/self/fd/{fd}", "--", binary]
        name = os.path.basename(binary)
        try:
            async with asyncio.timeout(self.settings.timeout):
                code, out, err = await run_bounded(argv, pass_fds=(fd,), max_output=self.settings.max_output, what=name)
        except TimeoutError as exc:
            raise ToolTimeout(f"{name} in {path} did not finish within {self.settings.timeout:g} s") from exc
        if code != 0:
            message = err.decode("utf-8", "replace").strip()[:500]
            if code in (126, 127):
                raise ToolMissing(f"{name}: could not be executed: {message}")
            if "Permission denied" in message or "Operation not permitted" in message:
                raise NetnsPermission(f"{name} in {path}: {message}")
            raise ToolFailed(f"{name} in {path} exited with {code}: {message}")
        return out.decode("utf-8", "replace")


async def run_bounded(
    argv: Sequence[str], *, pass_fds: Sequence[int] = (), max_output: int, what: str
) -> tuple[int, bytes, bytes]:
    """Run `argv` and collect at most `max_output` bytes of its stdout (and 64 KiB of its stderr).

    The caller bounds the time (`asyncio.timeout`). On overflow the process is killed at once and ToolFailed
    raised; on timeout and cancellation it is killed too. Either way it is reaped before this returns: its pipes
    are drained to their end, because asyncio only reports a process finished once its pipes are closed.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError as exc:
        raise ToolMissing(f"{argv[0]} is not installed") from exc
    except PermissionError as exc:
        raise NetnsPermission(f"{argv[0]}: {exc.strerror}") from exc
    except OSError as exc:
        raise ToolFailed(f"{what}: could not start: {exc.strerror or exc}") from exc
    assert proc.stdout is not None and proc.stderr is not None

    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()

    try:
        (out, overflow), (err, _) = await asyncio.gather(
            _read_bounded(proc.stdout, max_output, kill), _read_bounded(proc.stderr, 64 << 10, None)
        )
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            kill()
            await asyncio.shield(_reap(proc))
    if overflow:
        raise ToolFailed(f"{what} printed more than {max_output} bytes")
    return code, out, err


# How long a killed process's pipes may take to reach their end. A killed process closes them at once; only a
# grandchild that inherited them could hold them longer, and it is not waited for.
_REAP_GRACE = 2.0


async def _reap(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_REAP_GRACE):
            await asyncio.gather(_read_bounded(proc.stdout, 0, None), _read_bounded(proc.stderr, 0, None))
            await proc.wait()


async def _read_bounded(
    stream: asyncio.StreamReader, limit: int, on_overflow: Callable[[], None] | None
) -> tuple[bytes, bool]:
    """Read to the end, keeping the first `limit` bytes; the flag tells whether more came.

    Reading goes on after the limit (discarding), so the pipe never stalls the process or its reaping.
    """
    chunks: list[bytes] = []
    size = 0
    overflow = False
    while chunk := await stream.read(64 << 10):
        if size + len(chunk) > limit:
            if not overflow and on_overflow is not None:
                on_overflow()
            overflow = True
            continue
        size += len(chunk)
        chunks.append(chunk)
    return b"".join(chunks), overflow


# --- netlink ------------------------------------------------------------------------------------------------------

_RTN_TYPES = {
    0: "unspec",
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
    10: "nat",
}
_FR_ACTIONS = {1: "lookup", 2: "goto", 3: "nop", 6: "blackhole", 7: "unreachable", 8: "prohibit"}
_AF = {Family.V4: socket.AF_INET, Family.V6: socket.AF_INET6}


async def _netlink_socket_in(fd: int, path: str) -> socket.socket:
    """A NETLINK_ROUTE socket bound to the namespace `fd`, created by a thread that enters it and then ends.

    A thread of its own, not a pooled one: it ends inside the pod's namespace, so no reused thread is ever left
    there. It works on its own copy of the descriptor, so a cancelled caller closing `fd` cannot pull it away, and
    a socket it makes for a caller that is gone is closed.
    """
    own = os.dup(fd)
    loop = asyncio.get_running_loop()
    settled: asyncio.Future[socket.socket | BaseException] = loop.create_future()

    def settle(result: socket.socket | BaseException) -> None:
        if settled.cancelled():
            if isinstance(result, socket.socket):
                result.close()
            return
        settled.set_result(result)

    def enter_and_open() -> None:
        result: socket.socket | BaseException
        try:
            pyroute2_netns.setns(own, flags=0, fork=False)
            result = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        except BaseException as err:  # handed to the caller
            result = err
        finally:
            os.close(own)
        try:
            loop.call_soon_threadsafe(settle, result)
        except RuntimeError:  # the loop is closed: nobody waits any more
            if isinstance(result, socket.socket):
                result.close()

    threading.Thread(target=enter_and_open, name="netns-enter", daemon=True).start()
    result = await settled
    if isinstance(result, socket.socket):
        return result
    if isinstance(result, PermissionError):
        raise NetnsPermission(f"{path}: entering the namespace: {result.strerror}") from result
    if isinstance(result, OSError):
        raise NetnsError(f"{path}: entering the namespace: {result.strerror or result}") from result
    raise NetnsError(f"{path}: entering the namespace: {result}") from result


async def _read_routing(fd: int, path: str, families: Sequence[Family]) -> tuple[tuple[IpRule, ...], tuple[Route, ...]]:
    sock = await _netlink_socket_in(fd, path)
    rules: list[IpRule] = []
    routes: list[Route] = []
    try:
        async with AsyncIPRoute(use_socket=sock) as ipr:
            links = {link["index"]: link.get_attr("IFLA_IFNAME") or "" async for link in await ipr.get_links()}
            for family in dict.fromkeys(families):
                rules.extend(_ip_rules(family, [m async for m in await ipr.get_rules(family=_AF[family])]))
                routes.extend(_routes(family, [m async for m in await ipr.get_routes(family=_AF[family])], links))
    except NetlinkError as err:
        raise NetnsError(f"{path}: netlink: {err}") from err
    except OSError as err:
        raise NetnsError(f"{path}: netlink: {err.strerror or err}") from err
    finally:
        sock.close()
    return tuple(rules), tuple(routes)


def _ip_rules(family: Family, messages: list[Any]) -> Iterator[IpRule]:
    for msg in messages:
        fwmark = msg.get_attr("FRA_FWMARK")
        mask = msg.get_attr("FRA_FWMASK")
        yield IpRule(
            family=family,
            priority=msg.get_attr("FRA_PRIORITY") or 0,
            table=msg.get_attr("FRA_TABLE") or msg["table"],
            fwmark=fwmark,
            fwmask=0xFFFFFFFF if mask is None else mask,
            action=_FR_ACTIONS.get(msg["action"], str(msg["action"])),
        )


def _routes(family: Family, messages: list[Any], links: dict[int, str]) -> Iterator[Route]:
    for msg in messages:
        oif = msg.get_attr("RTA_OIF")
        yield Route(
            family=family,
            table=msg.get_attr("RTA_TABLE") or msg["table"],
            type=_RTN_TYPES.get(msg["type"], str(msg["type"])),
            dst=msg.get_attr("RTA_DST") or "",
            dst_len=msg["dst_len"],
            dev=links.get(oif, "") if oif is not None else "",
        )
