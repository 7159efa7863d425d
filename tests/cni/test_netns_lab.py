"""A small lab of real network namespaces for the capture tests, and the tests that keep the lab itself honest.

Each namespace is created with `ip netns add` under a random name, gets its loopback up, and is deleted when the
test ends, whatever happened. Rule sets are installed with the explicit backend binaries (`iptables-nft`,
`ip6tables-legacy`, ...), never through `iptables` and its alternatives link, so both backends are exercised on a
machine that has both. A backend the machine cannot use (binary absent, kernel without its tables) is reported by
`backend_binaries()` with the reason, and the tests skip exactly that backend.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from nodemeta.cni.capture import Family

HAS_NETNS = os.geteuid() == 0 and shutil.which("ip") is not None
requires_netns = pytest.mark.skipif(not HAS_NETNS, reason="creating network namespaces needs root and iproute2")

BACKENDS = ("nft", "legacy")
FAMILIES = (Family.V4, Family.V6)


def binary(backend: str, family: Family) -> str:
    return f"{'ip6tables' if family == Family.V6 else 'iptables'}-{backend}"


@dataclass(frozen=True)
class LabNetns:
    name: str

    @property
    def path(self) -> str:
        return f"/var/run/netns/{self.name}"

    def run(self, *argv: str) -> str:
        """Run a command inside the namespace; a failure fails the test with the command's stderr."""
        done = subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} in {self.name} failed: {done.stderr.strip()}")
        return done.stdout

    def ipt(self, backend: str, family: Family, *args: str) -> None:
        self.run(binary(backend, family), *args)

    def ip(self, family: Family, *args: str) -> None:
        self.run("ip", "-6" if family == Family.V6 else "-4", *args)

    def uplink(self) -> None:
        """A veth with an address and a default route per family: connections to TEST-NET leave (and time out)
        instead of failing at the routing lookup."""
        self.run("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        self.run("ip", "addr", "add", "10.99.0.2/24", "dev", "v0")
        self.run("ip", "-6", "addr", "add", "2001:db8:99::2/64", "dev", "v0", "nodad")
        self.run("ip", "link", "set", "v0", "up")
        self.run("ip", "link", "set", "v1", "up")
        self.run("ip", "route", "add", "default", "via", "10.99.0.1")
        self.run("ip", "-6", "route", "add", "default", "via", "2001:db8:99::1")


@contextmanager
def lab_netns() -> Iterator[LabNetns]:
    name = f"nmcap-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        ns = LabNetns(name)
        ns.run("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


@pytest.fixture
def netns() -> Iterator[LabNetns]:
    if not HAS_NETNS:
        pytest.skip("creating network namespaces needs root and iproute2")
    with lab_netns() as ns:
        yield ns


@functools.cache
def backend_problem(backend: str, family: Family) -> str | None:
    """Why this backend cannot be used on this machine, or None when it can (tried in a scratch namespace)."""
    if not HAS_NETNS:
        return "creating network namespaces needs root and iproute2"
    for name in (binary(backend, family), f"{binary(backend, family)}-save"):
        if shutil.which(name) is None:
            return f"{name} is not installed"
    with lab_netns() as ns:
        try:
            ns.ipt(backend, family, "-t", "nat", "-N", "NMLAB")
            ns.ipt(backend, family, "-t", "mangle", "-N", "NMLAB")
        except AssertionError as err:
            return f"{binary(backend, family)} cannot create tables here: {err}"
    return None


def backend_params() -> list[object]:
    """(backend, family) pairs, each skipped with its reason when this machine cannot run it."""
    params: list[object] = []
    for backend in BACKENDS:
        for family in FAMILIES:
            problem = backend_problem(backend, family)
            marks = [pytest.mark.skip(reason=problem)] if problem else []
            params.append(pytest.param(backend, family, id=f"{backend}-{family}", marks=marks))
    return params


# --- The lab's own tests ------------------------------------------------------------------------------------------


@requires_netns
def test_a_lab_namespace_exists_while_used_and_is_gone_afterwards() -> None:
    with lab_netns() as ns:
        assert os.path.exists(ns.path)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert ns.name in listed
        assert "lo" in ns.run("ip", "-o", "link", "show", "up")
    assert not os.path.exists(ns.path)


@requires_netns
@pytest.mark.parametrize(("backend", "family"), backend_params())
def test_rules_installed_in_a_lab_namespace_stay_in_it(netns: LabNetns, backend: str, family: Family) -> None:
    netns.ipt(backend, family, "-t", "nat", "-N", "NMLAB_MARKER")
    inside = netns.run(f"{binary(backend, family)}-save")
    assert ":NMLAB_MARKER" in inside
    host = subprocess.run([f"{binary(backend, family)}-save"], capture_output=True, text=True, check=False).stdout
    assert "NMLAB_MARKER" not in host
