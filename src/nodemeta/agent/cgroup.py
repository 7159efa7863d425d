"""From a process's cgroup paths (`/proc/<pid>/cgroup`) to its container id and pod uid. Pure: text in, ids out.

Runtimes name a container's cgroup after its 64-hex id in one of these (prefix, suffix) layouts, matched against
the end of the path (the layouts Falco's CRI engine recognises):

=====================  ==========  =====================================================================
prefix                 suffix      seen with
=====================  ==========  =====================================================================
``/``                  (none)      containerd or CRI-O with cgroupfs: ``.../pod<uid>/<id>``
``/crio-``             (none)      CRI-O, cgroupfs, older releases
``/cri-containerd-``   ``.scope``  containerd with the systemd cgroup driver
``/crio-``             ``.scope``  CRI-O with the systemd cgroup driver
``:cri-containerd:``   (none)      containerd's systemd-style path without systemd (``slice:prefix:id``)
``/docker-``           ``.scope``  cri-dockerd with systemd
=====================  ==========  =====================================================================

The pod uid comes from the ``pod<uid>`` path element; the systemd driver writes it with ``_`` for ``-``
(``kubepods-besteffort-pod1b2c_..._.slice``). For a static pod the kubelet's uid is the manifest's config hash (32
hex characters, no dashes), not the API uid of its mirror pod: callers map it through the sandbox the runtime
reports for that uid (see `nodemeta.agent.join`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["LAYOUTS", "CgroupRef", "parse_cgroup", "parse_cgroup_path"]

LAYOUTS: tuple[tuple[str, str], ...] = (
    ("/", ""),
    ("/crio-", ""),
    ("/cri-containerd-", ".scope"),
    ("/crio-", ".scope"),
    (":cri-containerd:", ""),
    ("/docker-", ".scope"),
)
_ID = re.compile(r"[0-9a-f]{64}")
_POD = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32})(?:\.slice)?(?=[/:]|$)"
)


@dataclass(frozen=True, slots=True)
class CgroupRef:
    """What a process's cgroups say: its container's full id and its pod's uid, each "" when not found."""

    container_id: str = ""
    # Lower-case and dashed for API pods; 32 hex without dashes for static pods (the config hash).
    pod_uid: str = ""


def _container_id(path: str) -> str:
    for prefix, suffix in LAYOUTS:
        if suffix and not path.endswith(suffix):
            continue
        body = path[: len(path) - len(suffix)] if suffix else path
        start = body.rfind(prefix)
        if start < 0:
            continue
        candidate = body[start + len(prefix) :]
        if len(candidate) == 64 and _ID.fullmatch(candidate):
            return candidate
    return ""


def _pod_uid(path: str) -> str:
    matches = _POD.findall(path)
    return matches[-1].replace("_", "-") if matches else ""


def parse_cgroup_path(path: str) -> CgroupRef:
    """One cgroup path (the third field of a /proc/<pid>/cgroup line)."""
    return CgroupRef(_container_id(path), _pod_uid(path))


def parse_cgroup(text: str) -> CgroupRef:
    """The whole /proc/<pid>/cgroup text (cgroup v1 and v2 lines alike). The first line naming a container wins;
    its pod uid, else the first pod uid on any line. Malformed lines are skipped."""
    pod_uid = ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        ref = parse_cgroup_path(parts[2])
        if ref.container_id:
            return CgroupRef(ref.container_id, ref.pod_uid or pod_uid)
        pod_uid = pod_uid or ref.pod_uid
    return CgroupRef("", pod_uid)
