"""The per-pod capture verdict: what the audit concludes about one pod sandbox, and how the check report shows it.
Pure: runtime records, a capture `Audit`, cache entries and probe outcomes in; `PodAudit` values and report
sections out. The I/O (runtime calls, namespace reads, the cache, the probe) is `nodemeta.cni.audit`.

States of an audited pod (exit class of `nodemeta cni check` in brackets):

- `captured` (0): every address family of the pod has the profile's complete capture (and the probe agrees).
- `rules-partial` (8): some of the capture is there, some not (`missing` names each check), or the rules are there
  and the probe's connection was not redirected.
- `rules-missing` (9): none of the capture's packet rules are there.
- `plugin-missing-at-add` (9): not captured, and the libcni result cache shows the mesh plugin was not in the chain
  when the pod was added.
- `unreadable` (7): the namespace or the runtime could not be read (permission, tool missing, timeout).
- `gone` (0): the pod went away during the audit (its sandbox or namespace vanished): nothing to judge.

The runtime does not say which of a pod's containers were init containers; a container named like the mesh's init
container (`linkerd-init`) is one by construction, so every container name is offered to the policy both as a
container and as an init container.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nodemeta.cni.capture import Audit, Family
from nodemeta.cni.patterns import Severity
from nodemeta.cni.policy import Expectation, PodDescription
from nodemeta.cni.report import PodSection
from nodemeta.cni.results import CacheEntry
from nodemeta.cri.model import Sandbox

__all__ = [
    "MESH_PLUGINS",
    "Gap",
    "NodeAudit",
    "PodAudit",
    "PodClass",
    "PodCode",
    "PodIdentity",
    "PodState",
    "ProbeFinding",
    "SkipReason",
    "Skipped",
    "address_families",
    "chain_at_add",
    "conclude",
    "describe",
    "failed",
    "pod_sections",
    "summary_lines",
]

# The chained plugin that installs each built-in profile's rules; what the result cache is searched for.
MESH_PLUGINS = {"linkerd": "linkerd-cni", "istio": "istio-cni", "istio-tproxy": "istio-cni"}


class PodState(enum.StrEnum):
    CAPTURED = "captured"
    RULES_PARTIAL = "rules-partial"
    RULES_MISSING = "rules-missing"
    PLUGIN_MISSING_AT_ADD = "plugin-missing-at-add"
    UNREADABLE = "unreadable"
    GONE = "gone"


class PodClass(enum.IntEnum):
    """`nodemeta cni check` exit codes of the pod audit (above the configuration's 3-6: a pod already running
    uncaptured is worse than a configuration that will break the next one)."""

    HEALTHY = 0
    UNREADABLE = 7  # a pod that must be captured could not be audited
    PARTIAL = 8  # a pod's capture is incomplete
    NOT_CAPTURED = 9  # a pod that must be captured has none of it


class PodCode(enum.StrEnum):
    """Stable codes (Kubernetes Event reasons, metrics labels) of a pod's problem."""

    NOT_CAPTURED = "CNIPodNotCaptured"
    PLUGIN_MISSING_AT_ADD = "CNIPodPluginMissingAtAdd"
    CAPTURE_PARTIAL = "CNIPodCapturePartial"
    UNREADABLE = "CNIPodUnreadable"


_CLASS = {
    PodState.CAPTURED: PodClass.HEALTHY,
    PodState.GONE: PodClass.HEALTHY,
    PodState.UNREADABLE: PodClass.UNREADABLE,
    PodState.RULES_PARTIAL: PodClass.PARTIAL,
    PodState.RULES_MISSING: PodClass.NOT_CAPTURED,
    PodState.PLUGIN_MISSING_AT_ADD: PodClass.NOT_CAPTURED,
}
_CODE = {
    PodState.RULES_PARTIAL: PodCode.CAPTURE_PARTIAL,
    PodState.RULES_MISSING: PodCode.NOT_CAPTURED,
    PodState.PLUGIN_MISSING_AT_ADD: PodCode.PLUGIN_MISSING_AT_ADD,
    PodState.UNREADABLE: PodCode.UNREADABLE,
}


@dataclass(frozen=True, slots=True)
class PodIdentity:
    namespace: str
    name: str
    uid: str
    sandbox_id: str

    @classmethod
    def of(cls, sandbox: Sandbox) -> PodIdentity:
        return cls(sandbox.namespace, sandbox.name, sandbox.uid, sandbox.id)


@dataclass(frozen=True, slots=True)
class Gap:
    """One capture check that failed, in one address family (`probe` for an active probe that was not redirected)."""

    family: Family
    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.family} {self.check}: {self.detail}"


@dataclass(frozen=True, slots=True)
class ProbeFinding:
    """The active probe's outcome in one family: "captured", "not-captured", "inconclusive" or "error"."""

    family: Family
    outcome: str
    method: str
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PodAudit:
    """The audit of one pod that must be captured."""

    pod: PodIdentity
    profile: str
    # Why the policy says the pod must be captured.
    reason: str
    state: PodState
    families: tuple[Family, ...] = ()
    missing: tuple[Gap, ...] = ()
    # From the result cache: whether the mesh plugin was in the chain at ADD (None: no cache entry, or no plugin
    # to look for), and the chain the runtime ran for the pod's eth0.
    plugin_at_add: bool | None = None
    chain_at_add: tuple[str, ...] = ()
    netns: str = ""
    probes: tuple[ProbeFinding, ...] = ()
    # Why the pod could not be judged (state unreadable or gone).
    error: str = ""
    notes: tuple[str, ...] = ()

    @property
    def exit_class(self) -> PodClass:
        return _CLASS[self.state]

    @property
    def code(self) -> str:
        code = _CODE.get(self.state)
        return code.value if code is not None else ""


class SkipReason(enum.StrEnum):
    HOST_NETWORK = "host-network"
    NOT_READY = "not-ready"
    NOT_SELECTED = "not-selected"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A pod that was not audited, and why."""

    pod: PodIdentity
    reason: SkipReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class NodeAudit:
    pods: tuple[PodAudit, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    # Files of the result cache that could not be read (each names the file and the reason).
    cache_errors: tuple[str, ...] = ()

    @property
    def exit_class(self) -> int:
        return max((int(p.exit_class) for p in self.pods), default=0)

    def pod(self, name: str, namespace: str = "default") -> PodAudit | None:
        return next((p for p in self.pods if p.pod.name == name and p.pod.namespace == namespace), None)


def describe(sandbox: Sandbox, container_names: Iterable[str]) -> PodDescription:
    """What the policy reads, from the runtime's sandbox and the names of its containers."""
    names = tuple(dict.fromkeys(container_names))
    return PodDescription(
        name=sandbox.name,
        namespace=sandbox.namespace,
        uid=sandbox.uid,
        labels=sandbox.labels,
        annotations=sandbox.annotations,
        containers=names,
        init_containers=names,
    )


def address_families(ips: Sequence[str]) -> tuple[tuple[Family, ...], str]:
    """The families the pod has addresses in (capture is only checked where traffic can flow), and a note when
    the runtime reported none (IPv4 is checked then)."""
    found: dict[Family, None] = {}
    for text in ips:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            continue
        found[Family.V6 if address.version == 6 else Family.V4] = None
    if not found:
        return (Family.V4,), "the runtime reported no pod address; IPv4 was checked"
    return tuple(sorted(found, key=list(Family).index)), ""


def chain_at_add(entries: Sequence[CacheEntry], plugin_types: Sequence[str]) -> tuple[bool | None, tuple[str, ...]]:
    """From a sandbox's result-cache entries: were all `plugin_types` in the chain its eth0 was added with, and
    that chain. (None, ()) when there is no eth0 entry; (None, chain) when there is nothing to look for."""
    eth0 = [e for e in entries if e.if_name == "eth0"]
    if not eth0:
        return None, ()
    chain = eth0[0].plugin_types
    if not plugin_types:
        return None, chain
    return all(t in chain for t in plugin_types), chain


def conclude(
    pod: PodIdentity,
    expectation: Expectation,
    audit: Audit,
    *,
    chain: tuple[str, ...] = (),
    netns: str = "",
    probes: Sequence[ProbeFinding] = (),
    notes: Sequence[str] = (),
) -> PodAudit:
    """The verdict from the static audit (which already weighed the result cache) and the probe's outcomes.

    A probe that was not redirected while the rules look complete makes the pod `rules-partial` with a `probe` gap:
    the rules are there, their effect is not.
    """
    missing = [Gap(f.family, m.check, m.detail) for f in audit.families for m in f.missing]
    state = PodState(audit.state.value)
    for p in probes:
        if p.outcome == "not-captured":
            missing.append(Gap(p.family, "probe", f"the probe's connection was not redirected: {p.detail}"))
            if state is PodState.CAPTURED:
                state = PodState.RULES_PARTIAL
    return PodAudit(
        pod=pod,
        profile=expectation.profile,
        reason=expectation.reason,
        state=state,
        families=tuple(f.family for f in audit.families),
        missing=tuple(missing),
        plugin_at_add=audit.plugin_at_add,
        chain_at_add=chain,
        netns=netns,
        probes=tuple(probes),
        notes=tuple(notes),
    )


def failed(pod: PodIdentity, expectation: Expectation | None, error: str, *, gone: bool, netns: str = "") -> PodAudit:
    """A pod whose audit could not finish: `gone` when the pod itself vanished, else unreadable."""
    return PodAudit(
        pod=pod,
        profile=expectation.profile if expectation else "",
        reason=expectation.reason if expectation else "",
        state=PodState.GONE if gone else PodState.UNREADABLE,
        netns=netns,
        error=error,
    )


def _severity(state: PodState) -> Severity:
    if state in (PodState.CAPTURED, PodState.GONE):
        return Severity.INFO
    if state is PodState.UNREADABLE:
        return Severity.WARNING
    return Severity.CRITICAL


def _details(p: PodAudit) -> tuple[str, ...]:
    lines = [f"profile {p.profile}: {p.reason}"]
    if p.families:
        lines.append(f"families: {', '.join(p.families)}; netns {p.netns}")
    if p.plugin_at_add is not None or p.chain_at_add:
        at_add = {True: "in the chain", False: "NOT in the chain", None: "not looked for"}[p.plugin_at_add]
        lines.append(f"at ADD: mesh plugin {at_add} ({' -> '.join(p.chain_at_add) or 'no cache entry'})")
    elif p.state not in (PodState.GONE, PodState.UNREADABLE):
        lines.append("at ADD: no result cache entry")
    lines.extend(f"missing {gap}" for gap in p.missing)
    lines.extend(f"probe {x.family}: {x.outcome} ({x.method or 'no method'}): {x.detail}" for x in p.probes)
    if p.error:
        lines.append(f"error: {p.error}")
    lines.extend(p.notes)
    return tuple(lines)


def pod_sections(node: NodeAudit) -> tuple[PodSection, ...]:
    """The report's pod sections: every audited pod, then the host-network and not-ready pods that were skipped
    (pods the policy does not select are only counted, in `summary_lines`)."""
    sections = [
        PodSection(
            namespace=p.pod.namespace,
            name=p.pod.name,
            uid=p.pod.uid,
            verdict=p.state.value,
            severity=_severity(p.state),
            exit_class=int(p.exit_class),
            code=p.code,
            details=_details(p),
            sandbox_id=p.pod.sandbox_id,
            profile=p.profile,
            missing=tuple(f"{g.family} {g.check}" for g in p.missing),
            plugin_at_add=p.plugin_at_add,
        )
        for p in node.pods
    ]
    for s in node.skipped:
        if s.reason is SkipReason.NOT_SELECTED:
            continue
        sections.append(
            PodSection(
                namespace=s.pod.namespace,
                name=s.pod.name,
                uid=s.pod.uid,
                verdict=f"not audited: {s.reason.value}",
                severity=Severity.INFO,
                details=(s.detail,) if s.detail else (),
                sandbox_id=s.pod.sandbox_id,
            )
        )
    return tuple(sections)


def summary_lines(node: NodeAudit) -> tuple[str, ...]:
    """One line per kind of skipped pod and per unreadable cache file."""
    counts: dict[SkipReason, int] = {}
    for s in node.skipped:
        counts[s.reason] = counts.get(s.reason, 0) + 1
    words = {
        SkipReason.NOT_SELECTED: "need no capture (no mesh rule or selector matches)",
        SkipReason.HOST_NETWORK: "use the host's network and are not audited",
        SkipReason.NOT_READY: "are not ready (no network to audit)",
    }
    lines = [f"{len(node.pods)} pod(s) audited"]
    lines.extend(f"{n} pod(s) {words[reason]}" for reason, n in counts.items())
    lines.extend(f"result cache: {e}" for e in node.cache_errors)
    return tuple(lines)
