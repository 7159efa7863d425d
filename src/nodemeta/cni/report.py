"""The `nodemeta cni check` report: one evaluated configuration state, its findings and (later) its pods, rendered
as text for a person or as JSON for a program, with the exit code they imply. Pure, no I/O.

The pod traffic-capture audit (`nodemeta.cni.audit`) fills `CheckReport.pods`: None when no pod was audited (the
configuration check alone, or no runtime to ask: `pod_notes` says why), else one `PodSection` per pod, rendered in
its own section and counted in the exit code (classes 7-9, `nodemeta.cni.verdict.PodClass`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nodemeta.cni.conf import ConfFile, ConfigState, FileStatus, RuntimeKind
from nodemeta.cni.loaded import LoadedView
from nodemeta.cni.patterns import Finding, ProblemClass, Severity, problem_class

__all__ = ["POD_STATUS_WORDS", "STATUS_WORDS", "CheckReport", "PodSection", "render_text", "to_json"]

STATUS_WORDS = {
    ProblemClass.HEALTHY: "healthy",
    ProblemClass.WARNINGS: "warnings",
    ProblemClass.RUNTIME: "runtime out of date",
    ProblemClass.CHAIN: "chain broken: pods start without the required plugin",
    ProblemClass.NO_NETWORK: "no pod network: new pods cannot start",
}
# The pod audit's classes (their meaning is `nodemeta.cni.verdict.PodClass`; the report only words them).
POD_STATUS_WORDS = {
    7: "pods could not be audited",
    8: "pods partially captured",
    9: "pods not captured",
}


@dataclass(frozen=True, slots=True)
class PodSection:
    """One pod's part of the report, as the capture audit concludes it."""

    namespace: str
    name: str
    uid: str
    # The audit's verdict in a word or two ("captured", "rules-missing", "plugin-missing-at-add", ...).
    verdict: str
    severity: Severity
    # The exit code this pod implies (0 when fine); the audit documents its own classes.
    exit_class: int = 0
    # A stable code for the pod's problem ("" when fine), and lines explaining the verdict.
    code: str = ""
    details: tuple[str, ...] = ()
    # Structured for programs (JSON): the sandbox, the capture profile, each failed check as "<family> <check id>"
    # (e.g. "v4 local-route"), and whether the mesh plugin was in the chain at ADD (None: unknown).
    sandbox_id: str = ""
    profile: str = ""
    missing: tuple[str, ...] = ()
    plugin_at_add: bool | None = None


@dataclass(frozen=True, slots=True)
class CheckReport:
    state: ConfigState
    findings: tuple[Finding, ...]
    loaded: LoadedView | None = None
    # None: pods were not audited. A tuple (maybe empty): the audit ran.
    pods: tuple[PodSection, ...] | None = None
    # Lines about the pod audit as a whole: why it did not run, or what it skipped.
    pod_notes: tuple[str, ...] = ()
    # The class of the audit as a whole when it could not run although asked to (an unreachable --cri-socket: 7).
    pod_class: int = 0

    @property
    def exit_code(self) -> int:
        codes = [int(problem_class(f)) for f in self.findings]
        codes.extend(p.exit_class for p in self.pods or ())
        codes.append(self.pod_class)
        return max(codes, default=0)

    @property
    def status(self) -> str:
        code = self.exit_code
        try:
            return STATUS_WORDS[ProblemClass(code)]
        except ValueError:
            return POD_STATUS_WORDS.get(code, "pods not captured")


def _chain(f: ConfFile) -> str:
    return " -> ".join(f.network.types) if f.network is not None else ""


def _runtime_line(state: ConfigState) -> str:
    model = state.selection.model
    if model.kind is RuntimeKind.CONTAINERD:
        count = "all files" if model.max_conf_num <= 0 else f"max_conf_num {model.max_conf_num}"
        return f"containerd ({count})"
    pinned = f"cni_default_network {model.default_network!r}" if model.default_network else "first valid file"
    return f"CRI-O ({pinned})"


def render_text(report: CheckReport) -> str:
    state = report.state
    lines = [f"CNI configuration: {state.conf_dir}", f"Runtime model: {_runtime_line(state)}"]
    required = ", ".join(state.chain.required) if state.chain.required else "none (use --preset or --require)"
    lines.append(f"Required plugins: {required}")
    if state.binaries is None:
        lines.append("Plugin binaries: not checked (no --bin-dir)")
    lines.append("")
    winner = state.winner
    if winner is None or winner.network is None:
        lines.append(f"Pod network: none ({state.selection.why})")
    else:
        net = winner.network
        lines.append(f"Pod network: {winner.name}")
        lines.append(f"  why:     {state.selection.why}")
        lines.append(f"  network: {net.name or '(no name)'} (cniVersion {net.cni_version or 'unset'})")
        lines.append(f"  chain:   {_chain(winner)}")
        for p in net.plugins:
            if p.delegated:
                lines.append(f"  {p.type} delegates: {' -> '.join(p.delegated)}")
        if net.subdir_files:
            lines.append(f"  from {net.name}/: {', '.join(net.subdir_files)}")
        chain = state.chain
        if chain.required:
            lines.append(f"  missing: {', '.join(chain.missing) or 'nothing'}")
        if chain.misplaced:
            lines.append(f"  misplaced (first in the chain): {', '.join(chain.misplaced)}")
        if chain.missing_binaries:
            lines.append(f"  binaries not found: {', '.join(chain.missing_binaries)}")
    lines.append("")
    if state.selection.verdicts:
        lines.append("Files, in the runtime's order:")
        width = max(len(v.file.name) for v in state.selection.verdicts)
        for v in state.selection.verdicts:
            chain_text = f" [{_chain(v.file)}]" if v.file.network is not None else ""
            lines.append(f"  {v.file.name:<{width}}  {v.status.value:<8}  {v.why}{chain_text}")
    else:
        lines.append("Files: none")
    if state.others:
        lines.append(f"Other entries (not read by the runtime): {', '.join(state.others)}")
    if report.loaded is not None:
        lines.append("")
        lines.extend(_loaded_lines(report.loaded))
    lines.append("")
    if report.findings:
        lines.append("Findings:")
        for f in report.findings:
            where = f" {f.file}" if f.file else ""
            lines.append(f"  {f.severity.value.upper():<8} {f.code.value}{where}: {f.message}")
    else:
        lines.append("Findings: none")
    lines.append("")
    lines.extend(_pod_lines(report.pods, report.pod_notes))
    lines.append("")
    lines.append(f"Result: {report.status} (exit {report.exit_code})")
    return "\n".join(lines) + "\n"


def _loaded_lines(loaded: LoadedView) -> list[str]:
    lines = ["Runtime's loaded configuration:"]
    if loaded.error:
        lines.append(f"  unreadable: {loaded.error}")
        return lines
    if loaded.last_load_status:
        lines.append(f"  last load: {loaded.last_load_status}")
    for n in loaded.networks:
        lines.append(f"  network {n.name} (cniVersion {n.cni_version or 'unset'}): {' -> '.join(n.types)}")
    if not loaded.networks:
        lines.append("  no network loaded")
    return lines


def _pod_lines(pods: Sequence[PodSection] | None, notes: Sequence[str]) -> list[str]:
    if pods is None:
        return [f"Pods: not audited ({'; '.join(notes) or 'configuration check only'})"]
    lines = ["Pods: none to audit" if not pods else "Pods:"]
    lines.extend(f"  ({note})" for note in notes)
    for p in pods:
        code = f" {p.code}" if p.code else ""
        lines.append(f"  {p.namespace}/{p.name}: {p.verdict} ({p.severity.value}{code})")
        lines.extend(f"    {d}" for d in p.details)
    return lines


def _file_json(f: ConfFile, status: FileStatus, why: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": f.name,
        "status": status.value,
        "why": why,
        "kind": f.kind.value,
        "sha256": f.digest,
        "valid": f.valid,
    }
    if f.network is not None:
        out["network"] = f.network.name
        out["cniVersion"] = f.network.cni_version
        out["plugins"] = list(f.network.types)
        delegated = {p.type: list(p.delegated) for p in f.network.plugins if p.delegated}
        if delegated:
            out["delegates"] = delegated
        if f.network.subdir_files:
            out["subdirFiles"] = list(f.network.subdir_files)
    else:
        out["problem"] = f.problem.value if f.problem is not None else ""
        out["detail"] = f.detail
    return out


def to_json(report: CheckReport) -> dict[str, Any]:
    state = report.state
    model = state.selection.model
    winner = state.winner
    out: dict[str, Any] = {
        "confDir": state.conf_dir,
        "exists": state.exists,
        "error": state.error,
        "runtime": {
            "kind": model.kind.value,
            "maxConfNum": model.max_conf_num,
            "defaultNetwork": model.default_network,
        },
        "required": list(state.chain.required),
        "binariesChecked": state.binaries is not None,
        "winner": None,
        "why": state.selection.why,
        "files": [_file_json(v.file, v.status, v.why) for v in state.selection.verdicts],
        "others": list(state.others),
        "findings": [
            {
                "code": f.code.value,
                "severity": f.severity.value,
                "file": f.file,
                "message": f.message,
                "class": int(problem_class(f)),
            }
            for f in report.findings
        ],
        "loaded": None,
        "pods": None,
        "podNotes": list(report.pod_notes),
        "status": report.status,
        "exitCode": report.exit_code,
    }
    if winner is not None and winner.network is not None:
        chain = state.chain
        out["winner"] = {
            "file": winner.name,
            "network": winner.network.name,
            "cniVersion": winner.network.cni_version,
            "chain": list(chain.chain),
            "missing": list(chain.missing),
            "misplaced": list(chain.misplaced),
            "missingBinaries": list(chain.missing_binaries),
        }
    if report.loaded is not None:
        loaded = report.loaded
        out["loaded"] = {
            "error": loaded.error,
            "lastLoadStatus": loaded.last_load_status,
            "networks": [
                {"name": n.name, "cniVersion": n.cni_version, "plugins": list(n.types)} for n in loaded.networks
            ],
        }
    if report.pods is not None:
        out["pods"] = [
            {
                "namespace": p.namespace,
                "name": p.name,
                "uid": p.uid,
                "verdict": p.verdict,
                "severity": p.severity.value,
                "code": p.code,
                "class": p.exit_class,
                "details": list(p.details),
                "sandboxId": p.sandbox_id,
                "profile": p.profile,
                "missing": list(p.missing),
                "pluginAtAdd": p.plugin_at_add,
            }
            for p in report.pods
        ]
    return out
