"""`runtime.v1` messages -> the CRI model: pure functions, no I/O, never raising on what a runtime sends.

The verbose `info["info"]` document is runtime-specific JSON, not part of the contract; it is read defensively:
any field that is missing, of the wrong type or unparseable falls back to its empty value (0, "", -1 for the
user), so a runtime version with a different layout degrades the metadata instead of breaking the agent.

Where the fields come from:
- containerd sandbox: `pid`, `runtimeSpec.linux.namespaces[type=network].path`, `cniResult`.
- containerd container: `sandboxID`, `pid`, `config.linux.security_context.privileged`,
  `runtimeSpec.process.user.uid`.
- CRI-O: the same `pid`, `sandboxID` and `runtimeSpec`; `privileged` at the top level; the CNI result as a JSON
  string in `runtimeSpec.annotations["io.kubernetes.cri-o.CNIResult"]` (CNI's own result format).

The CNI result is trimmed the way Falco's CRI engine does it (interfaces named `lo` or `veth*` dropped, their `Mac`
and `Sandbox` removed), written as compact JSON, and cut to at most `CNI_RESULT_LIMIT` bytes by dropping whole
entries, largest first, so what is kept is always valid JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from nodemeta.api.cri.runtime.v1 import api_pb2 as cri
from nodemeta.cri.model import (
    Container,
    ContainerEvent,
    ContainerEventType,
    ContainerState,
    Listed,
    Mount,
    RuntimeCondition,
    RuntimeStatus,
    RuntimeVersion,
    Sandbox,
    SandboxState,
)

__all__ = [
    "CNI_RESULT_LIMIT",
    "container",
    "container_event",
    "listed_container",
    "listed_sandbox",
    "parse_info",
    "runtime_status",
    "runtime_version",
    "sandbox",
    "trim_cni_result",
]

# Falco's k8s.pod.cni.json is capped at 4096 bytes; the same cap keeps one pod's record bounded.
CNI_RESULT_LIMIT = 4096
# A CNI result beyond this is not trimmed at all (reported as ""): trimming costs a re-encode per dropped entry.
_CNI_RESULT_MAX_INPUT = 1 << 20
_CRIO_CNI_ANNOTATION = "io.kubernetes.cri-o.CNIResult"
_NODE = cri.NamespaceMode.NODE


def _dig(value: Any, *keys: str) -> Any:
    """value[k1][k2]... through dicts only; None when any step is missing or not a dict."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def parse_info(info: Mapping[str, str]) -> dict[str, Any]:
    """The verbose `info["info"]` JSON object, or {} when absent, unparseable or not an object."""
    raw = info.get("info", "")
    if not raw:
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def runtime_version(response: cri.VersionResponse) -> RuntimeVersion:
    return RuntimeVersion(
        runtime_name=response.runtime_name,
        runtime_version=response.runtime_version,
        runtime_api_version=response.runtime_api_version,
    )


def runtime_status(response: cri.StatusResponse) -> RuntimeStatus:
    conditions = tuple(
        RuntimeCondition(type=c.type, status=c.status, reason=c.reason, message=c.message)
        for c in response.status.conditions
    )
    return RuntimeStatus(conditions=conditions, info=dict(response.info))


def listed_sandbox(item: cri.PodSandbox) -> Listed:
    return Listed(id=item.id, state=int(item.state), created_at=item.created_at)


def listed_container(item: cri.Container) -> Listed:
    return Listed(id=item.id, state=int(item.state), created_at=item.created_at, sandbox_id=item.pod_sandbox_id)


def _ips(network: cri.PodSandboxNetworkStatus) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for ip in (network.ip, *(extra.ip for extra in network.additional_ips)):
        if ip:
            seen.setdefault(ip, None)
    return tuple(seen)


def _netns_path(info: dict[str, Any]) -> str:
    namespaces = _dig(info, "runtimeSpec", "linux", "namespaces")
    if not isinstance(namespaces, list):
        return ""
    for namespace in namespaces:
        if isinstance(namespace, dict) and namespace.get("type") == "network":
            path = namespace.get("path")
            return path if isinstance(path, str) else ""
    return ""


def _without(value: Any, keys: tuple[str, ...]) -> Any:
    return {k: v for k, v in value.items() if k not in keys} if isinstance(value, dict) else value


def _kept_interface(name: object) -> bool:
    return isinstance(name, str) and name != "lo" and not name.startswith("veth")


def _trim_containerd(result: dict[str, Any]) -> dict[str, Any]:
    trimmed = dict(result)
    interfaces = result.get("Interfaces")
    if isinstance(interfaces, dict):
        trimmed["Interfaces"] = {
            name: _without(value, ("Mac", "Sandbox")) for name, value in interfaces.items() if _kept_interface(name)
        }
    return trimmed


def _trim_cni_spec(result: dict[str, Any]) -> dict[str, Any]:
    """CNI's own result format (CRI-O): interfaces is a list, ips refer to it by index."""
    trimmed = dict(result)
    interfaces = result.get("interfaces")
    if not isinstance(interfaces, list):
        return trimmed
    kept: list[Any] = []
    renumber: dict[int, int] = {}
    for index, value in enumerate(interfaces):
        if isinstance(value, dict) and not _kept_interface(value.get("name")):
            continue
        renumber[index] = len(kept)
        kept.append(_without(value, ("mac", "sandbox")))
    trimmed["interfaces"] = kept
    ips = result.get("ips")
    if isinstance(ips, list):
        new_ips: list[Any] = []
        for ip in ips:
            if isinstance(ip, dict) and _int(ip.get("interface"), -1) >= 0:
                old = _int(ip.get("interface"))
                if old not in renumber:
                    continue
                ip = {**ip, "interface": renumber[old]}
            new_ips.append(ip)
        trimmed["ips"] = new_ips
    return trimmed


def _drop_largest(value: dict[str, Any] | list[Any]) -> bool:
    """Remove one entry from `value`: the largest child, or (if that child has several entries) one inside it."""
    if not value:
        return False
    keys: Iterable[Any] = value.keys() if isinstance(value, dict) else range(len(value))
    sizes = [(len(_dumps(value[k])), i, k) for i, k in enumerate(keys)]
    _, _, largest = max(sizes)
    child = value[largest]
    if isinstance(child, dict | list) and len(child) > 1 and _drop_largest(child):
        return True
    del value[largest]
    return True


def trim_cni_result(result: Any, limit: int = CNI_RESULT_LIMIT) -> str:
    """Falco-style trimmed CNI result as compact JSON of at most `limit` bytes; "" when there is none."""
    if isinstance(result, str):
        if not result or len(result) > _CNI_RESULT_MAX_INPUT:
            return ""
        try:
            result = orjson.loads(result)
        except orjson.JSONDecodeError:
            return ""
    if not isinstance(result, dict) or not result:
        return ""
    trimmed = _trim_cni_spec(result) if "interfaces" in result else _trim_containerd(result)
    try:
        text = _dumps(trimmed)
    except (TypeError, orjson.JSONEncodeError):
        return ""
    if len(text) > _CNI_RESULT_MAX_INPUT:
        return ""
    while len(text) > limit:
        if not _drop_largest(trimmed):
            return ""
        text = _dumps(trimmed)
    return text.decode()


def _cni_result(info: dict[str, Any]) -> str:
    containerd = info.get("cniResult")
    if containerd is not None:
        return trim_cni_result(containerd)
    return trim_cni_result(_dig(info, "runtimeSpec", "annotations", _CRIO_CNI_ANNOTATION))


def _sandbox_from_status(status: cri.PodSandboxStatus, info: dict[str, Any]) -> Sandbox:
    options = status.linux.namespaces.options
    try:
        state = SandboxState(status.state)
    except ValueError:
        state = SandboxState.NOTREADY
    return Sandbox(
        id=status.id,
        name=status.metadata.name,
        namespace=status.metadata.namespace,
        uid=status.metadata.uid,
        attempt=status.metadata.attempt,
        state=state,
        created_at=status.created_at,
        labels=dict(status.labels),
        annotations=dict(status.annotations),
        runtime_handler=status.runtime_handler,
        ips=_ips(status.network),
        host_network=options.network == _NODE,
        host_pid=options.pid == _NODE,
        host_ipc=options.ipc == _NODE,
        netns_path=_netns_path(info),
        pid=max(_int(info.get("pid")), 0),
        cni_result=_cni_result(info),
    )


def sandbox(response: cri.PodSandboxStatusResponse) -> Sandbox:
    """A verbose PodSandboxStatus answer as a `Sandbox`."""
    return _sandbox_from_status(response.status, parse_info(response.info))


def _privileged(info: dict[str, Any]) -> bool:
    containerd = _dig(info, "config", "linux", "security_context", "privileged")
    if isinstance(containerd, bool):
        return containerd
    crio = info.get("privileged")
    return crio if isinstance(crio, bool) else False


def _container_from_status(status: cri.ContainerStatus, info: dict[str, Any], sandbox_id: str) -> Container:
    try:
        state = ContainerState(status.state)
    except ValueError:
        state = ContainerState.UNKNOWN
    from_info = info.get("sandboxID")
    uid = _int(_dig(info, "runtimeSpec", "process", "user", "uid"), -1)
    return Container(
        id=status.id,
        sandbox_id=sandbox_id or (from_info if isinstance(from_info, str) else ""),
        name=status.metadata.name,
        attempt=status.metadata.attempt,
        image=status.image.image,
        image_ref=status.image_ref,
        state=state,
        created_at=status.created_at,
        started_at=status.started_at,
        finished_at=status.finished_at,
        exit_code=status.exit_code,
        labels=dict(status.labels),
        annotations=dict(status.annotations),
        mounts=tuple(
            Mount(
                container_path=m.container_path, host_path=m.host_path, readonly=m.readonly, propagation=m.propagation
            )
            for m in status.mounts
        ),
        privileged=_privileged(info),
        user=uid if uid >= 0 else -1,
        pid=max(_int(info.get("pid")), 0) if state == ContainerState.RUNNING else 0,
    )


def container(response: cri.ContainerStatusResponse, sandbox_id: str = "") -> Container:
    """A verbose ContainerStatus answer as a `Container`.

    ContainerStatus itself does not name the sandbox; pass `sandbox_id` when known (from ListContainers), else it
    comes from the verbose info's `sandboxID` ("" when the runtime does not say).
    """
    return _container_from_status(response.status, parse_info(response.info), sandbox_id)


def container_event(response: cri.ContainerEventResponse) -> ContainerEvent:
    try:
        kind = ContainerEventType(response.container_event_type)
    except ValueError:
        kind = ContainerEventType.CREATED
    sandbox_status = (
        _sandbox_from_status(response.pod_sandbox_status, {}) if response.HasField("pod_sandbox_status") else None
    )
    sandbox_id = sandbox_status.id if sandbox_status is not None else ""
    return ContainerEvent(
        type=kind,
        container_id=response.container_id,
        created_at=response.created_at,
        sandbox=sandbox_status,
        containers=tuple(_container_from_status(s, {}, sandbox_id) for s in response.containers_statuses),
    )
