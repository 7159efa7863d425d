"""The guard's pod source: the capture audit's verdicts as the actions take them.

The audit knows a pod from its sandbox (namespace, name, uid); an action on a pod also needs what only the API
server has: the resourceVersion its preconditions pin, the pod's current labels, its controller, whether it is
already terminating. Reading every audited pod each tick would cost the API server a GET per meshed pod per node
per tick, so the pod is read only where an action may follow: while its capture is bad, and once more after it
recovers (to remove the label). A captured pod that never was bad is passed on without an API identity: nothing
is done to it, and it still counts in the metrics.

A pod the API no longer has, or has under another uid (replaced under the same name), is left out: the actions
must never touch the replacement on the old one's account.
"""

from __future__ import annotations

from collections.abc import Sequence

from nodemeta.cni.actions import CaptureState, PodFinding
from nodemeta.cni.audit import PodAuditor
from nodemeta.cni.verdict import PodAudit, PodState
from nodemeta.kube.errors import NotFound
from nodemeta.kube.writer import Writer, pod_path

__all__ = ["AuditedPods", "capture_state"]

_STATE = {
    PodState.CAPTURED: CaptureState.CAPTURED,
    PodState.RULES_PARTIAL: CaptureState.PARTIAL,
    PodState.RULES_MISSING: CaptureState.MISSING,
    PodState.PLUGIN_MISSING_AT_ADD: CaptureState.MISSING,
    PodState.UNREADABLE: CaptureState.UNKNOWN,
}


def capture_state(audit: PodAudit) -> CaptureState | None:
    """The actions' state for an audited pod; None for a pod that went away while it was audited."""
    return _STATE.get(audit.state)


def _message(audit: PodAudit) -> str:
    parts = [f"{audit.state.value} ({audit.profile}: {audit.reason})"]
    if audit.missing:
        parts.append("missing " + ", ".join(str(gap) for gap in audit.missing))
    if audit.plugin_at_add is False:
        parts.append(
            "the mesh plugin was not in the chain when the pod was created: " + " -> ".join(audit.chain_at_add)
        )
    if audit.error:
        parts.append(audit.error)
    return "; ".join(parts)


class AuditedPods:
    """`PodSource` for `nodemeta.cni.guard.Guard`: audits the node, then completes the pods an action may touch."""

    def __init__(self, auditor: PodAuditor, writer: Writer) -> None:
        self._auditor = auditor
        self._writer = writer
        # Pods reported bad, until they are captured again and carry no label of ours.
        self._watched: set[str] = set()

    async def pod_findings(self) -> Sequence[PodFinding]:
        node = await self._auditor.audit_node()
        findings: list[PodFinding] = []
        audited: set[str] = set()
        for audit in node.pods:
            state = capture_state(audit)
            if state is None:
                continue
            pod = audit.pod
            audited.add(pod.uid)
            bad = state in (CaptureState.MISSING, CaptureState.PARTIAL)
            if not bad and pod.uid not in self._watched:
                findings.append(PodFinding(namespace=pod.namespace, name=pod.name, uid=pod.uid, resource_version="",
                                           state=state, message=_message(audit)))  # fmt: skip
                continue
            finding = await self._from_api(audit, state)
            if finding is None:
                self._watched.discard(pod.uid)
                continue
            findings.append(finding)
            if bad:
                self._watched.add(pod.uid)
            elif state is CaptureState.CAPTURED and not finding.labels:
                self._watched.discard(pod.uid)
        self._watched &= audited
        return findings

    async def _from_api(self, audit: PodAudit, state: CaptureState) -> PodFinding | None:
        pod = audit.pod
        try:
            obj = await self._writer.get(pod_path(pod.namespace, pod.name))
        except NotFound:
            return None
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or meta.get("uid") != pod.uid or not meta.get("resourceVersion"):
            return None  # replaced under the same name: not the pod that was audited
        labels = meta.get("labels")
        owners = meta.get("ownerReferences")
        controller = next((o for o in owners if isinstance(o, dict) and o.get("controller")), None) if isinstance(
            owners, list) else None  # fmt: skip
        return PodFinding(
            namespace=pod.namespace,
            name=pod.name,
            uid=pod.uid,
            resource_version=str(meta["resourceVersion"]),
            state=state,
            message=_message(audit),
            labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
            owner_kind=str(controller.get("kind", "")) if controller else "",
            terminating=bool(meta.get("deletionTimestamp")),
        )
