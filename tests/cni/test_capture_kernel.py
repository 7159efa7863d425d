"""The capture audit against real namespaces: the rule sets are installed with the real iptables binaries of one
backend and family, read back by the namespace reader, and the verdict must name exactly what was installed.

Ground truth is each scenario's own declaration (what it installed, hence which checks must be missing); the
rule sets follow the meshes' own installers (linkerd2-proxy-init, istio-iptables) in table, chain and order.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from nodemeta.cni.capture import ISTIO, ISTIO_TPROXY, LINKERD, CaptureState, Family, Profile, evaluate
from nodemeta.cni.netns import SystemNetnsReader
from tests.cni.test_netns_lab import LabNetns, backend_params, backend_problem, requires_netns
from tests.cni.test_netns_lab import netns as netns  # the fixture

Installer = Callable[[LabNetns, str, Family], None]


def install_linkerd(ns: LabNetns, backend: str, family: Family, *, output_jump: bool = True) -> None:
    def nat(rule: str) -> None:
        ns.ipt(backend, family, "-t", "nat", *shlex.split(rule))

    nat("-N PROXY_INIT_REDIRECT")
    nat(
        "-A PROXY_INIT_REDIRECT -p tcp -m multiport --dports 4190,4191,4567,4568"
        " -m comment --comment proxy-init/ignore-port-4190,4191,4567,4568 -j RETURN"
    )
    nat(
        "-A PROXY_INIT_REDIRECT -p tcp -m comment --comment proxy-init/redirect-all-incoming-to-proxy-port"
        " -j REDIRECT --to-port 4143"
    )
    nat("-A PREROUTING -m comment --comment proxy-init/install-proxy-init-prerouting -j PROXY_INIT_REDIRECT")
    nat("-N PROXY_INIT_OUTPUT")
    nat("-A PROXY_INIT_OUTPUT -m owner --uid-owner 2102 -m comment --comment proxy-init/ignore-proxy-user-id -j RETURN")
    # A comment with spaces and a quote: the dump quotes it, and the parser must keep the rule whole.
    nat("""-A PROXY_INIT_OUTPUT -o lo -m comment --comment 'proxy-init/ignore loopback "lo" -j DROP' -j RETURN""")
    nat(
        "-A PROXY_INIT_OUTPUT -p tcp -m comment --comment proxy-init/redirect-all-outgoing-to-proxy-port"
        " -j REDIRECT --to-port 4140"
    )
    if output_jump:
        nat("-A OUTPUT -m comment --comment proxy-init/install-proxy-init-output -j PROXY_INIT_OUTPUT")


def _istio_nat(ns: LabNetns, backend: str, family: Family, *, inbound: bool) -> None:
    def nat(rule: str) -> None:
        ns.ipt(backend, family, "-t", "nat", *rule.split())

    loopback = "::1/128" if family == Family.V6 else "127.0.0.1/32"
    inbound_source = "::6/128" if family == Family.V6 else "127.0.0.6/32"
    for chain in ("ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT"):
        nat(f"-N {chain}")
    if inbound:
        nat("-A PREROUTING -p tcp -j ISTIO_INBOUND")
        for port in ("15008", "15090", "15021", "15020"):
            nat(f"-A ISTIO_INBOUND -p tcp --dport {port} -j RETURN")
        nat("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT")
    nat("-A OUTPUT -j ISTIO_OUTPUT")
    nat("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001")
    nat("-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006")
    nat(f"-A ISTIO_OUTPUT -s {inbound_source} -o lo -j RETURN")
    nat(f"-A ISTIO_OUTPUT ! -d {loopback} -o lo -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT")
    nat("-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN")
    nat("-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN")
    nat("-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN")
    nat(f"-A ISTIO_OUTPUT -d {loopback} -j RETURN")
    nat("-A ISTIO_OUTPUT -j ISTIO_REDIRECT")


def install_istio(ns: LabNetns, backend: str, family: Family) -> None:
    _istio_nat(ns, backend, family, inbound=True)


def install_istio_tproxy(ns: LabNetns, backend: str, family: Family, *, local_route: bool = True) -> None:
    _istio_nat(ns, backend, family, inbound=False)

    def mangle(rule: str) -> None:
        ns.ipt(backend, family, "-t", "mangle", *rule.split())

    loopback = "::1/128" if family == Family.V6 else "127.0.0.1/32"
    for chain in ("ISTIO_DIVERT", "ISTIO_TPROXY", "ISTIO_INBOUND"):
        mangle(f"-N {chain}")
    mangle("-A ISTIO_DIVERT -j MARK --set-mark 1337")
    mangle("-A ISTIO_DIVERT -j ACCEPT")
    mangle(f"-A ISTIO_TPROXY ! -d {loopback} -p tcp -j TPROXY --tproxy-mark 1337/0xffffffff --on-port 15006")
    mangle("-A PREROUTING -p tcp -j ISTIO_INBOUND")
    mangle("-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN")
    mangle("-A ISTIO_INBOUND -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j ISTIO_DIVERT")
    mangle("-A ISTIO_INBOUND -p tcp -j ISTIO_TPROXY")
    ns.ip(family, "rule", "add", "fwmark", "1337", "lookup", "133")
    if local_route:
        ns.ip(family, "route", "add", "local", "default", "dev", "lo", "table", "133")


def install_nothing(ns: LabNetns, backend: str, family: Family) -> None:
    pass


@dataclass(frozen=True)
class Scenario:
    install: Installer
    profile: Profile
    state: CaptureState
    # The checks that must be missing in the installed family (ground truth: what the installer left out).
    missing: frozenset[str]


_ALL_LINKERD = frozenset(
    {"inbound-jump", "inbound-redirect", "outbound-jump", "outbound-redirect", "owner-return", "loopback-return"}
)
SCENARIOS = {
    "linkerd-complete": Scenario(install_linkerd, LINKERD, CaptureState.CAPTURED, frozenset()),
    "linkerd-without-output-jump": Scenario(
        lambda ns, b, f: install_linkerd(ns, b, f, output_jump=False),
        LINKERD,
        CaptureState.RULES_PARTIAL,
        frozenset({"outbound-jump"}),
    ),
    "nothing-for-linkerd": Scenario(install_nothing, LINKERD, CaptureState.RULES_MISSING, _ALL_LINKERD),
    "istio-redirect": Scenario(install_istio, ISTIO, CaptureState.CAPTURED, frozenset()),
    # A REDIRECT-mode Istio pod judged as if it were Linkerd: nothing of Linkerd's is there.
    "istio-rules-are-not-linkerd": Scenario(install_istio, LINKERD, CaptureState.RULES_MISSING, _ALL_LINKERD),
    "istio-tproxy-complete": Scenario(install_istio_tproxy, ISTIO_TPROXY, CaptureState.CAPTURED, frozenset()),
    "istio-tproxy-without-local-route": Scenario(
        lambda ns, b, f: install_istio_tproxy(ns, b, f, local_route=False),
        ISTIO_TPROXY,
        CaptureState.RULES_PARTIAL,
        frozenset({"local-route"}),
    ),
}


def _other(family: Family) -> Family:
    return Family.V6 if family == Family.V4 else Family.V4


@requires_netns
@pytest.mark.parametrize(("backend", "family"), backend_params())
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_the_audit_reports_exactly_what_was_installed(
    netns: LabNetns, backend: str, family: Family, scenario: str
) -> None:
    case = SCENARIOS[scenario]
    case.install(netns, backend, family)

    view = await SystemNetnsReader().read(netns.path)
    audit = evaluate(view, case.profile, families=[family])

    result = audit.family(family)
    assert result is not None
    assert {m.check for m in result.missing} == case.missing, audit.missing
    assert result.state == case.state
    assert audit.state == case.state
    if case.state != CaptureState.RULES_MISSING:
        # The verdict names the backend the rules were installed with.
        assert result.backend == backend
    # The other family got nothing, and so does the other backend of this family.
    other = evaluate(view, case.profile, families=[_other(family)]).family(_other(family))
    assert other is not None and other.state == CaptureState.RULES_MISSING
    other_backend = next(b for b in result.backends if b.backend != backend)
    assert other_backend.state == CaptureState.RULES_MISSING


@requires_netns
@pytest.mark.parametrize(("backend", "family"), backend_params())
async def test_capture_in_one_family_only_is_partial_overall(netns: LabNetns, backend: str, family: Family) -> None:
    install_linkerd(netns, backend, family)
    view = await SystemNetnsReader().read(netns.path)
    audit = evaluate(view, LINKERD)
    assert audit.state == CaptureState.RULES_PARTIAL
    assert {f.family: f.state for f in audit.families} == {
        family: CaptureState.CAPTURED,
        _other(family): CaptureState.RULES_MISSING,
    }
    assert all(line.startswith(f"{_other(family)}: ") for line in audit.missing)


@requires_netns
async def test_rules_split_across_backends_are_not_capture(netns: LabNetns) -> None:
    """The jump in the legacy tables cannot reach a chain that lives in nf_tables: neither backend is complete."""
    if backend_problem("nft", Family.V4) or backend_problem("legacy", Family.V4):
        pytest.skip("needs both IPv4 backends")
    install_linkerd(netns, "nft", Family.V4, output_jump=False)
    netns.ipt("legacy", Family.V4, "-t", "nat", "-N", "PROXY_INIT_OUTPUT")
    netns.ipt("legacy", Family.V4, "-t", "nat", "-A", "OUTPUT", "-j", "PROXY_INIT_OUTPUT")
    view = await SystemNetnsReader().read(netns.path, [Family.V4])
    result = evaluate(view, LINKERD, families=[Family.V4]).family(Family.V4)
    assert result is not None
    assert result.state == CaptureState.RULES_PARTIAL
    assert result.backend == "nft"
    assert {m.check for m in result.missing} == {"outbound-jump"}
    legacy = next(b for b in result.backends if b.backend == "legacy")
    assert set(legacy.passed) == {"outbound-jump"}
