"""The active capture probe: prove, from inside a pod's network namespace, that outbound traffic is redirected.

The static audit (`nodemeta.cni.capture`) reads rules; this probe tests their effect, the way the meshes'
validators do. A child process enters the pod's namespace, drops to an ordinary uid (not the proxy's, which is
exempt from capture), listens on the proxy's outbound port, and connects to an address no packet can reach
(TEST-NET-1 192.0.2.1, or 2001:db8::1 from the IPv6 documentation prefix). Only a redirect can deliver that
connection to the local listener, which writes a random token; reading the token back proves capture. Refused,
unreachable or timed out means not captured.

When the port is already taken (the proxy itself is running in that pod), the child cannot listen; it still
connects, and a connection the TEST-NET address accepts can only have been redirected to something local: that
counts as captured by the `connect` method, a weaker proof than the token.

The child is `python -I -c <script>` with the namespace descriptor passed down; it calls setns(2) itself, so the
agent's own threads never change namespace. It prints one JSON line; anything else is a `ToolFailed`.
"""

from __future__ import annotations

import asyncio
import enum
import os
import sys
from dataclasses import dataclass

import orjson

from nodemeta.cni.capture import Family
from nodemeta.cni.netns import NetnsError, NetnsGone, NetnsPermission, ToolFailed, ToolTimeout, open_netns, run_bounded

__all__ = ["ProbeMethod", "ProbeOutcome", "ProbeResult", "ProbeSettings", "probe"]


class ProbeOutcome(enum.StrEnum):
    CAPTURED = "captured"
    NOT_CAPTURED = "not-captured"
    # A connection was accepted but did not answer with the token: redirected somewhere, not to the expected port.
    INCONCLUSIVE = "inconclusive"


class ProbeMethod(enum.StrEnum):
    # The probe listened on the port itself and read its token back.
    TOKEN = "token"
    # The port was taken; only the connection's success was judged.
    CONNECT = "connect"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeSettings:
    """What the probe connects to, as whom, and for how long."""

    # The proxy's outbound port (Linkerd 4140, Istio 15001).
    port: int = 4140
    # nobody: an ordinary uid, never a proxy's (Linkerd 2102, Istio 1337 are exempt from capture).
    uid: int = 65534
    gid: int = 65534
    # Addresses reserved for documentation (RFC 5737, RFC 3849): nothing answers there.
    target_v4: str = "192.0.2.1"
    target_v6: str = "2001:db8::1"
    target_port: int = 80
    # A redirected connect completes in well under a millisecond; an unredirected one to TEST-NET waits for SYN
    # retransmits. 2 s tells them apart even on a loaded node.
    connect_timeout: float = 2.0
    # The whole child process: interpreter start (~50 ms) plus the connect timeout, with a wide margin.
    timeout: float = 10.0
    python: str = sys.executable


@dataclass(frozen=True, slots=True)
class ProbeResult:
    family: Family
    outcome: ProbeOutcome
    method: ProbeMethod
    detail: str


# The child. argv: fd uid gid family port target target_port connect_timeout. Prints one JSON object.
_CHILD = r"""
import ctypes, errno, json, os, secrets, socket, sys, threading
fd, uid, gid, port, tport = (int(a) for a in (sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5], sys.argv[7]))
family, target, ctimeout = sys.argv[4], sys.argv[6], float(sys.argv[8])
def done(outcome, method, detail, **extra):
    print(json.dumps(dict(outcome=outcome, method=method, detail=detail, **extra)), flush=True)
    sys.exit(0)
libc = ctypes.CDLL(None, use_errno=True)
if libc.setns(fd, 0x40000000) != 0:
    e = ctypes.get_errno()
    done("error", "", "setns: " + os.strerror(e), errno=e)
os.close(fd)
try:
    os.setgroups([]); os.setgid(gid); os.setuid(uid)
except OSError as e:
    done("error", "", "switching to uid %d: %s" % (uid, e.strerror), errno=e.errno)
af = socket.AF_INET6 if family == "v6" else socket.AF_INET
token = secrets.token_hex(16).encode()
method = "token"
listener = socket.socket(af, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if af == socket.AF_INET6:
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
try:
    listener.bind(("::" if af == socket.AF_INET6 else "0.0.0.0", port))
    listener.listen(8)
except OSError as e:
    if e.errno != errno.EADDRINUSE:
        done("error", "", "listening on port %d: %s" % (port, e.strerror), errno=e.errno)
    method = "connect"
    listener.close()
def serve():
    while True:
        try:
            conn, _ = listener.accept()
            conn.sendall(token)
            conn.close()
        except OSError:
            return
if method == "token":
    threading.Thread(target=serve, daemon=True).start()
client = socket.socket(af, socket.SOCK_STREAM)
client.settimeout(ctimeout)
try:
    client.connect((target, tport))
except socket.timeout:
    done("not-captured", method, "connecting to %s port %d timed out" % (target, tport))
except OSError as e:
    done("not-captured", method, "connecting to %s port %d: %s" % (target, tport, e.strerror), errno=e.errno)
if method == "connect":
    done("captured", method, "port %d is taken; the connection to %s was accepted locally" % (port, target))
got = b""
try:
    while len(got) < len(token):
        chunk = client.recv(len(token) - len(got))
        if not chunk:
            break
        got += chunk
except OSError:
    pass
if got == token:
    done("captured", method, "the connection to %s port %d reached the listener on port %d" % (target, tport, port))
done("inconclusive", method, "the connection to %s was accepted but did not answer with the token" % target)
"""


async def probe(path: str, family: Family = Family.V4, settings: ProbeSettings | None = None) -> ProbeResult:
    """Run the token-echo probe in the network namespace `path` for one address family."""
    settings = settings or ProbeSettings()
    fd = open_netns(path)
    target = settings.target_v6 if family == Family.V6 else settings.target_v4
    argv = [
        settings.python,
        "-I",
        "-c",
        _CHILD,
        *map(str, (fd, settings.uid, settings.gid, family.value, settings.port, target, settings.target_port)),
        repr(settings.connect_timeout),
    ]
    try:
        async with asyncio.timeout(settings.timeout):
            code, out, err = await run_bounded(argv, pass_fds=(fd,), max_output=64 << 10, what="capture probe")
    except TimeoutError as exc:
        raise ToolTimeout(f"capture probe in {path} did not finish within {settings.timeout:g} s") from exc
    finally:
        os.close(fd)
    return _result(family, path, code, out, err)


def _result(family: Family, path: str, code: int, out: bytes, err: bytes) -> ProbeResult:
    try:
        report = orjson.loads(out.strip().splitlines()[-1]) if out.strip() else None
    except orjson.JSONDecodeError:
        report = None
    if not isinstance(report, dict) or code != 0:
        stderr = err.decode("utf-8", "replace").strip()[-500:]
        raise ToolFailed(f"capture probe in {path} exited with {code} and no report: {stderr}")
    outcome, method, detail = str(report.get("outcome")), str(report.get("method")), str(report.get("detail", ""))
    if outcome == "error":
        number = report.get("errno")
        if number in (1, 13):  # EPERM, EACCES
            raise NetnsPermission(f"capture probe in {path}: {detail}")
        if number == 22:  # EINVAL from setns: the descriptor is no longer a namespace
            raise NetnsGone(f"capture probe in {path}: {detail}")
        raise NetnsError(f"capture probe in {path}: {detail}")
    try:
        return ProbeResult(family, ProbeOutcome(outcome), ProbeMethod(method), detail)
    except ValueError as exc:
        raise ToolFailed(f"capture probe in {path}: unexpected report {report!r}") from exc
