"""The token-echo probe in real namespaces: a redirect to the probed port proves capture, no redirect (with or
without a route out) does not, the proxy's own uid is exempt, and a port already taken falls back to judging the
connection alone."""

from __future__ import annotations

import asyncio
import sys

import pytest

from nodemeta.cni.capture import Family
from nodemeta.cni.netns import NetnsGone
from nodemeta.cni.probe import ProbeMethod, ProbeOutcome, ProbeSettings, probe
from tests.cni.test_capture_kernel import install_linkerd
from tests.cni.test_netns_lab import LabNetns, backend_params, lab_netns, requires_netns
from tests.cni.test_netns_lab import netns as netns  # the fixture

pytestmark = requires_netns

# A non-capture connect waits this long; short, as the lab's uplink drops everything.
FAST = ProbeSettings(connect_timeout=1.0)


@pytest.mark.parametrize(("backend", "family"), backend_params())
async def test_linkerd_capture_is_proven_and_its_absence_too(netns: LabNetns, backend: str, family: Family) -> None:
    netns.uplink()
    before = await probe(netns.path, family, FAST)
    assert (before.outcome, before.method) == (ProbeOutcome.NOT_CAPTURED, ProbeMethod.TOKEN)
    install_linkerd(netns, backend, family)
    after = await probe(netns.path, family, FAST)
    assert (after.outcome, after.method) == (ProbeOutcome.CAPTURED, ProbeMethod.TOKEN), after.detail
    # The other family has no rules.
    other = Family.V6 if family == Family.V4 else Family.V4
    assert (await probe(netns.path, other, FAST)).outcome == ProbeOutcome.NOT_CAPTURED


async def test_no_route_out_is_not_captured(netns: LabNetns) -> None:
    result = await probe(netns.path, Family.V4, FAST)
    assert result.outcome == ProbeOutcome.NOT_CAPTURED
    assert "unreachable" in result.detail


async def test_the_proxy_uid_is_exempt_from_capture(netns: LabNetns) -> None:
    netns.uplink()
    install_linkerd(netns, "nft", Family.V4)
    as_proxy = ProbeSettings(connect_timeout=1.0, uid=2102, gid=2102)
    assert (await probe(netns.path, Family.V4, as_proxy)).outcome == ProbeOutcome.NOT_CAPTURED
    assert (await probe(netns.path, Family.V4, FAST)).outcome == ProbeOutcome.CAPTURED


async def test_a_redirect_to_another_port_is_not_the_proxy(netns: LabNetns) -> None:
    netns.uplink()
    netns.ipt("nft", Family.V4, "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-j", "REDIRECT", "--to-ports", "4999")
    result = await probe(netns.path, Family.V4, FAST)
    assert result.outcome == ProbeOutcome.NOT_CAPTURED
    assert "refused" in result.detail


async def test_a_taken_port_is_judged_by_the_connection(netns: LabNetns) -> None:
    """A stand-in proxy owns port 4140 in the namespace, so the probe cannot listen there."""
    netns.uplink()
    proxy = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", netns.name, sys.executable, "-c",
        "import socket, sys\n"
        "s = socket.create_server(('0.0.0.0', 4140))\n"
        "print('ready', flush=True)\n"
        "while True:\n    c, _ = s.accept(); c.close()\n",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proxy.stdout is not None
        assert await proxy.stdout.readline() == b"ready\n"
        without_rules = await probe(netns.path, Family.V4, FAST)
        assert (without_rules.outcome, without_rules.method) == (ProbeOutcome.NOT_CAPTURED, ProbeMethod.CONNECT)
        install_linkerd(netns, "nft", Family.V4)
        with_rules = await probe(netns.path, Family.V4, FAST)
        assert (with_rules.outcome, with_rules.method) == (ProbeOutcome.CAPTURED, ProbeMethod.CONNECT)
    finally:
        proxy.kill()
        await proxy.wait()


async def test_a_gone_namespace() -> None:
    with lab_netns() as ns:
        path = ns.path
    with pytest.raises(NetnsGone):
        await probe(path)
