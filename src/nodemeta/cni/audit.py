"""The pod capture audit of a node: for every pod that must be captured, are its mesh's capture rules in place?

    async with CriClient(socket) as runtime:
        node = await PodAuditor(runtime, settings=AuditSettings(required_plugins=("linkerd-cni",))).audit_node()
        for pod in node.pods:
            print(pod.pod.name, pod.state, [str(g) for g in pod.missing])

For each sandbox the runtime lists: its verbose status (identity, labels, annotations, IPs, sandbox pid), the
names of its containers, the policy (`nodemeta.cni.policy`: Linkerd, Istio, configured selectors) -> for a pod
that must be captured: its network namespace (`/proc/<sandbox pid>/ns/net`, which reaches the namespace from the
host's mount namespace even where the runtime's `/var/run/netns` bind mounts are private to it) read by
`nodemeta.cni.netns` -> the libcni result cache entry of its eth0 (was the mesh plugin in the chain at ADD?) ->
`nodemeta.cni.capture.evaluate` on the families the pod has addresses in -> optionally the active probe
(`nodemeta.cni.probe`, only for pods whose rules look complete: it proves their effect, and on an uncaptured pod
it would only wait for its connect timeout). The verdicts are `nodemeta.cni.verdict` values; this module is the
I/O around them.

Host-network pods share the node's namespace and are not audited; not-ready sandboxes have no network left to
audit; both are listed as skipped. Pods run concurrently up to `concurrency`, each under its own deadline, and
every failure of one pod (its sandbox or namespace gone mid-read, a tool missing, a timeout) is that pod's value,
never the node's: only the two list calls can fail the whole audit (with `CriError`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from nodemeta.cni import results
from nodemeta.cni.capture import PROFILES, Family, Profile, evaluate
from nodemeta.cni.netns import NetnsError, NetnsGone, SystemNetnsReader, ViewSource, netns_path_for_pid
from nodemeta.cni.policy import Expectation, PolicySettings, expected_capture
from nodemeta.cni.probe import ProbeResult, ProbeSettings, probe
from nodemeta.cni.verdict import (
    MESH_PLUGINS,
    NodeAudit,
    PodAudit,
    PodIdentity,
    ProbeFinding,
    Skipped,
    SkipReason,
    address_families,
    chain_at_add,
    conclude,
    describe,
    failed,
)
from nodemeta.cri.model import CriError, CriNotFound, Listed, Runtime, Sandbox, SandboxState

__all__ = ["AuditSettings", "PodAuditor", "Prober"]


class Prober(Protocol):
    """The active probe's signature (`nodemeta.cni.probe.probe`)."""

    async def __call__(self, path: str, family: Family, settings: ProbeSettings) -> ProbeResult: ...


async def _system_probe(path: str, family: Family, settings: ProbeSettings) -> ProbeResult:
    return await probe(path, family, settings)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditSettings:
    """What the audit looks for and how hard it may work."""

    policy: PolicySettings = field(default_factory=PolicySettings)
    # Profile names the policy may return -> how that capture looks.
    profiles: Mapping[str, Profile] = field(default_factory=lambda: dict(PROFILES))
    # The chained plugin types the pod's cached ADD chain must contain. Empty: the profile's own mesh plugin
    # (`verdict.MESH_PLUGINS`), and for a profile without one the cache is not consulted.
    required_plugins: tuple[str, ...] = ()
    # Where libcni's result cache is (containerd and CRI-O keep libcni's default /var/lib/cni/results).
    results: results.ResultCacheSettings = field(default_factory=results.ResultCacheSettings)
    # The host's /proc as this process sees it (e.g. /host/proc in an agent pod without the host's PID namespace).
    proc: str = "/proc"
    # Pods audited at once. A pod costs 2-4 short dump processes (families x backends) and a netlink read; on a
    # 2-core node 4 pods keep both cores busy without queueing dozens of processes.
    concurrency: int = 4
    # One pod's whole audit: a few status calls (1 s deadline each), dumps bounded at 5 s each, and the probe's
    # 10 s; 30 s means something is stuck, and that pod is reported unreadable instead of holding the audit.
    pod_timeout: float = 30.0
    # Run the active probe on pods whose rules look complete (it listens on the profile's outbound port).
    probe: bool = False
    probe_settings: ProbeSettings = field(default_factory=ProbeSettings)

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.pod_timeout <= 0:
            raise ValueError("AuditSettings: concurrency >= 1 and pod_timeout > 0 are required")


class PodAuditor:
    """Audits the pods of the node `runtime` runs. One instance may audit many times; it keeps no state."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        settings: AuditSettings | None = None,
        reader: ViewSource | None = None,
        prober: Prober | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings or AuditSettings()
        self.reader: ViewSource = reader or SystemNetnsReader()
        self.prober: Prober = prober or _system_probe

    async def audit_node(self) -> NodeAudit:
        """Every sandbox the runtime lists, audited or skipped. Raises `CriError` only when the lists fail."""
        sandboxes = await self.runtime.list_sandboxes()
        containers = await self.runtime.list_containers()
        cache = await asyncio.to_thread(results.scan, self.settings.results)
        entries: dict[str, list[results.CacheEntry]] = {}
        for entry in cache.entries:
            entries.setdefault(entry.container_id, []).append(entry)
        limit = asyncio.Semaphore(self.settings.concurrency)

        async def one(row: Listed) -> PodAudit | Skipped:
            async with limit:
                ids = [c.id for c in containers if c.sandbox_id == row.id]
                return await self.audit_sandbox(row.id, container_ids=ids, cache_entries=entries.get(row.id, ()))

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(row)) for row in sandboxes]
        outcomes = [t.result() for t in tasks]
        return NodeAudit(
            pods=tuple(o for o in outcomes if isinstance(o, PodAudit)),
            skipped=tuple(o for o in outcomes if isinstance(o, Skipped)),
            cache_errors=tuple(str(e) for e in cache.errors),
        )

    async def audit_sandbox(
        self,
        sandbox_id: str,
        *,
        container_ids: Sequence[str] | None = None,
        cache_entries: Sequence[results.CacheEntry] | None = None,
    ) -> PodAudit | Skipped:
        """One sandbox, under the per-pod deadline. Never raises for the pod's own failures.

        `container_ids` and `cache_entries` save the calls when the caller has them (a node audit lists once);
        without them, this sandbox's containers are listed and its cache entries read.
        """
        progress = _Progress(PodIdentity("", "", "", sandbox_id))
        try:
            async with asyncio.timeout(self.settings.pod_timeout):
                return await self._audit(progress, container_ids, cache_entries)
        except TimeoutError:
            return failed(
                progress.pod,
                progress.expectation,
                f"the audit did not finish within {self.settings.pod_timeout:g} s",
                gone=False,
                netns=progress.netns,
            )
        except CriNotFound as err:
            return failed(progress.pod, progress.expectation, str(err), gone=True, netns=progress.netns)
        except NetnsGone as err:
            gone = await self._sandbox_gone(sandbox_id)
            return failed(progress.pod, progress.expectation, str(err), gone=gone, netns=progress.netns)
        except (CriError, NetnsError, OSError) as err:
            return failed(progress.pod, progress.expectation, str(err), gone=False, netns=progress.netns)

    async def _audit(
        self,
        progress: _Progress,
        container_ids: Sequence[str] | None,
        cache_entries: Sequence[results.CacheEntry] | None,
    ) -> PodAudit | Skipped:
        sandbox = await self.runtime.sandbox(progress.pod.sandbox_id)
        progress.pod = pod = PodIdentity.of(sandbox)
        if sandbox.host_network:
            return Skipped(pod, SkipReason.HOST_NETWORK, "the pod uses the node's network namespace")
        if sandbox.state is not SandboxState.READY:
            return Skipped(pod, SkipReason.NOT_READY, "the sandbox is not ready")
        names = await self._container_names(sandbox.id, container_ids)
        expectation = expected_capture(describe(sandbox, names), self.settings.policy)
        if expectation is None:
            return Skipped(pod, SkipReason.NOT_SELECTED)
        progress.expectation = expectation
        profile = self.settings.profiles.get(expectation.profile)
        if profile is None:
            return failed(pod, expectation, f"no capture profile named {expectation.profile!r}", gone=False)
        progress.netns = path = self._netns_path(sandbox)
        if not path:
            return failed(pod, expectation, "the runtime reported no network namespace for the sandbox", gone=False)
        families, note = address_families(sandbox.ips)
        view = await self.reader.read(path, families)
        if cache_entries is None:
            found = await asyncio.to_thread(results.entries_for, sandbox.id, self.settings.results)
            cache_entries = found.entries
        plugin_at_add, chain = chain_at_add(cache_entries, self._plugins_for(expectation))
        audit = evaluate(view, profile, families=families, plugin_at_add=plugin_at_add)
        probes: tuple[ProbeFinding, ...] = ()
        if self.settings.probe and audit.state.value == "captured" and profile.outbound is not None:
            probes = await self._probe(path, families, profile)
        return conclude(pod, expectation, audit, chain=chain, netns=path, probes=probes, notes=(note,) if note else ())

    async def _container_names(self, sandbox_id: str, container_ids: Sequence[str] | None) -> list[str]:
        if container_ids is None:
            container_ids = [c.id for c in await self.runtime.list_containers() if c.sandbox_id == sandbox_id]
        names: list[str] = []
        for container_id in container_ids:
            try:
                names.append((await self.runtime.container(container_id)).name)
            except CriNotFound:
                continue  # removed since the list: it no longer belongs to the pod
        return names

    def _netns_path(self, sandbox: Sandbox) -> str:
        if sandbox.pid > 0:
            return netns_path_for_pid(sandbox.pid, proc=self.settings.proc)
        return sandbox.netns_path

    def _plugins_for(self, expectation: Expectation) -> tuple[str, ...]:
        if self.settings.required_plugins:
            return self.settings.required_plugins
        own = MESH_PLUGINS.get(expectation.profile)
        return (own,) if own else ()

    async def _probe(self, path: str, families: Sequence[Family], profile: Profile) -> tuple[ProbeFinding, ...]:
        assert profile.outbound is not None
        settings = dataclasses.replace(self.settings.probe_settings, port=profile.outbound.port)
        findings: list[ProbeFinding] = []
        for family in families:
            try:
                r = await self.prober(path, family, settings)
                findings.append(ProbeFinding(family, r.outcome.value, r.method.value, r.detail))
            except NetnsError as err:
                findings.append(ProbeFinding(family, "error", "", str(err)))
        return tuple(findings)

    async def _sandbox_gone(self, sandbox_id: str) -> bool:
        """After the namespace vanished: is the sandbox gone (or stopped) too? Then the pod went away meanwhile."""
        try:
            return (await self.runtime.sandbox(sandbox_id)).state is not SandboxState.READY
        except CriNotFound:
            return True
        except CriError:
            return False


@dataclass(slots=True)
class _Progress:
    """What is known of a pod so far, so that a failure at any step still names it."""

    pod: PodIdentity
    expectation: Expectation | None = None
    netns: str = ""
