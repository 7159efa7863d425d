"""The CNI chain guard as one running service: watch the configuration, audit the pods, act on both.

    guard = Guard(watcher, actions, recorder, pods=audited_pods)
    await guard.run()          # until cancelled

Three loops under one TaskGroup:

* the configuration watcher (`ConfWatcher.run`), which publishes an `Evaluation` after every settled change of the
  conf dir and on its periodic rescan;
* the event recorder's sender (`Recorder.run`), so recording an Event never waits on the API server;
* the reconcile loop: on every new evaluation, and every `audit_interval` without one, it asks the pod source for
  the current picture of the node's pods (the capture audit), maps the configuration findings onto
  `NodeFinding`s and hands both to `ChainActions.reconcile`, which changes only what differs (taint, Events,
  labels, deletions). Level-triggered: each tick sees the whole picture, so a missed tick loses nothing.

A failing tick (an API outage) is logged and counted; the next tick tries again. A failing pod source (the runtime
down, the audit failing) is counted as a failed tick too, but the configuration is still acted on: the pods known
from the last audit are passed on as UNKNOWN (no action on them either way), so a node whose runtime does not
answer is still tainted while its chain is broken. The pod source is optional: without one the guard watches the
configuration only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from nodemeta.cni import patterns
from nodemeta.cni.actions import CaptureState, ChainActions, NodeFinding, PodFinding, Report, Severity
from nodemeta.cni.watch import ConfWatcher, Evaluation
from nodemeta.kube.events import Recorder

__all__ = ["Guard", "GuardSettings", "PodSource", "node_findings"]

log = structlog.get_logger("nodemeta.cni.guard")

_SEVERITY = {
    patterns.Severity.CRITICAL: Severity.ERROR,
    patterns.Severity.WARNING: Severity.WARNING,
    patterns.Severity.INFO: Severity.INFO,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardSettings:
    # Pods are audited after every configuration change and at least this often: a pod's rules can be removed
    # without any file changing (a crashed init, someone flushing iptables), and 30 s bounds how long that goes
    # unnoticed while keeping the netns reads (a fraction of a second per pod) a small share of one core.
    audit_interval: float = 30.0

    def __post_init__(self) -> None:
        if self.audit_interval <= 0:
            raise ValueError("audit_interval must be positive")


class PodSource(Protocol):
    """The node's pods that should be captured, each with its current capture state."""

    async def pod_findings(self) -> Sequence[PodFinding]: ...


def node_findings(findings: Sequence[patterns.Finding]) -> list[NodeFinding]:
    """The configuration findings as the actions take them (the code becomes the Event reason)."""
    out: list[NodeFinding] = []
    for finding in findings:
        where = f" ({finding.file})" if finding.file else ""
        out.append(NodeFinding(code=finding.code.value, message=finding.message + where,
                               severity=_SEVERITY[finding.severity]))  # fmt: skip
    return out


class Guard:
    def __init__(
        self,
        watcher: ConfWatcher,
        actions: ChainActions,
        recorder: Recorder,
        *,
        pods: PodSource | None = None,
        settings: GuardSettings | None = None,
    ) -> None:
        self._watcher = watcher
        self._actions = actions
        self._recorder = recorder
        self._pods = pods
        self._settings = settings or GuardSettings()
        self._changed = asyncio.Event()
        self._evaluation: Evaluation | None = None
        self.ticks = 0
        self.failed_ticks = 0
        self.last_report: Report | None = None
        self.last_pods: tuple[PodFinding, ...] = ()
        self.last_error = ""
        self._reported = asyncio.Condition()

    @property
    def evaluation(self) -> Evaluation | None:
        """The newest configuration evaluation the guard acted on."""
        return self._evaluation

    def status(self) -> dict[str, Any]:
        """The guard's current picture as JSON-ready data (the agent's `/v1/cni`, `nodemeta cni guard`'s too)."""
        evaluation = self._evaluation
        report = self.last_report
        winner = evaluation.state.winner if evaluation is not None else None
        pods: dict[str, int] = {}
        for pod in self.last_pods:
            pods[pod.state.value] = pods.get(pod.state.value, 0) + 1
        return {
            "node": self._actions.node_name,
            "evaluated": evaluation is not None,
            "configValid": evaluation is not None
            and not any(f.severity is Severity.ERROR for f in node_findings(evaluation.findings)),
            "winner": winner.name if winner is not None else None,
            "chain": list(evaluation.state.chain.chain) if evaluation is not None else [],
            "findings": [
                {"code": f.code, "severity": f.severity.value, "message": f.message}
                for f in (node_findings(evaluation.findings) if evaluation is not None else ())
            ],
            "taint": self._actions.taint_present,
            "ticks": self.ticks,
            "failedTicks": self.failed_ticks,
            "lastError": self.last_error,
            "podsByState": pods,
            "pods": [
                {"namespace": p.namespace, "name": p.name, "uid": p.uid, "state": p.state.value, "message": p.message}
                for p in self.last_pods
            ],
            "lastReport": None if report is None else {
                "taint": report.taint, "labeled": report.labeled, "unlabeled": report.unlabeled,
                "deleted": report.deleted, "held": report.held, "errors": report.errors,
            },
        }  # fmt: skip

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._recorder.run(), name="cni-guard-recorder")
            tasks.create_task(self._watcher.run(), name="cni-guard-watcher")
            tasks.create_task(self._follow(), name="cni-guard-follow")
            tasks.create_task(self._reconcile_loop(), name="cni-guard-reconcile")

    async def wait_ticks(self, count: int) -> Report | None:
        """Wait until `count` reconcile ticks have run in total (for callers that need a settled picture)."""
        async with self._reported:
            await self._reported.wait_for(lambda: self.ticks >= count)
            return self.last_report

    async def _follow(self) -> None:
        async for evaluation in self._watcher.subscribe():
            self._evaluation = evaluation
            self._changed.set()

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=self._settings.audit_interval)
            self._changed.clear()
            evaluation = self._evaluation
            if evaluation is None:
                continue  # nothing evaluated yet: the first scan is a moment away
            await self._tick(evaluation)

    async def _tick(self, evaluation: Evaluation) -> None:
        report: Report | None = None
        failed = False
        try:
            pods, failed = await self._current_pods()
            report = await self._actions.reconcile(node_findings(evaluation.findings), pods)
        except Exception as err:  # one bad tick must not stop the guard: the next one sees the whole picture again
            failed = True
            self.last_error = f"{type(err).__name__}: {err}"
            log.warning("CNI guard tick failed", error=str(err), error_type=type(err).__name__)
        self.failed_ticks += failed
        async with self._reported:
            self.ticks += 1
            self.last_report = report
            self._reported.notify_all()

    async def _current_pods(self) -> tuple[tuple[PodFinding, ...], bool]:
        """The pod source's picture, and whether it failed. When it fails (runtime down, audit error): the pods known
        before as UNKNOWN, so the configuration is still acted on (taint, Node Events) and nothing is done to a pod
        on old news."""
        if self._pods is None:
            self.last_error = ""
            return (), False
        try:
            self.last_pods = tuple(await self._pods.pod_findings())
            self.last_error = ""
        except Exception as err:
            self.last_error = f"{type(err).__name__}: {err}"
            log.warning("CNI guard pod audit failed", error=str(err), error_type=type(err).__name__)
            note = f"not audited: {self.last_error}"
            self.last_pods = tuple(dataclasses.replace(p, state=CaptureState.UNKNOWN, message=note)
                                   for p in self.last_pods)  # fmt: skip
            return self.last_pods, True
        return self.last_pods, False
