"""How the real installers write the CNI configuration directory, reproduced on a temporary directory.

Each writer uses the same system calls as the program it is named after, so inotify sees the same events:
Calico truncates and writes in place, AWS VPC CNI and the meshes rename a finished file in, Cilium renames rivals
to `*.cilium_bak`, some installers delete and create again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LINKERD = {"type": "linkerd-cni", "linkerd": {"incoming-proxy-port": 4143, "outgoing-proxy-port": 4140}}
ISTIO = {"type": "istio-cni", "kubernetes": {"kubeconfig": "/etc/cni/net.d/ZZZ-istio-cni-kubeconfig"}}


def conflist(name: str, *types: str, version: str = "0.3.1", extra: tuple[dict[str, Any], ...] = ()) -> bytes:
    plugins: list[dict[str, Any]] = [{"type": t} for t in types]
    plugins.extend(extra)
    return json.dumps({"cniVersion": version, "name": name, "plugins": plugins}, indent=2).encode()


def calico(*, linkerd: bool = False) -> bytes:
    return conflist("k8s-pod-network", "calico", "bandwidth", "portmap", extra=(LINKERD,) if linkerd else ())


def cilium(*, linkerd: bool = False) -> bytes:
    return conflist("cilium", "cilium-cni", extra=(LINKERD,) if linkerd else ())


def aws(*, linkerd: bool = False) -> bytes:
    return conflist("aws-cni", "aws-cni", "egress-cni", "portmap", extra=(LINKERD,) if linkerd else ())


def multus(*delegate_types: str) -> bytes:
    delegate = {"cniVersion": "0.3.1", "name": "k8s-pod-network", "plugins": [{"type": t} for t in delegate_types]}
    doc = {"cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus", "delegates": [delegate]}
    return json.dumps(doc).encode()


def truncate_write(directory: Path, name: str, data: bytes, mode: int = 0o600) -> None:
    """Calico's install-cni: os.WriteFile, so the same inode is truncated and written (MODIFY, CLOSE_WRITE)."""
    fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def rename_in(directory: Path, name: str, data: bytes) -> None:
    """AWS VPC CNI: a finished file renamed in from outside the directory (MOVED_TO, a new inode)."""
    staging = directory.parent / f".staging-{name}"
    staging.write_bytes(data)
    os.rename(staging, directory / name)


def atomic_write(directory: Path, name: str, data: bytes) -> None:
    """Cilium (renameio) and the mesh installers: a temporary file in the directory, then rename over the target."""
    temporary = directory / f".{name}.tmp"
    temporary.write_bytes(data)
    os.rename(temporary, directory / name)


def delete_create(directory: Path, name: str, data: bytes) -> None:
    """Remove the file, then create it again (DELETE then CREATE, a new inode)."""
    (directory / name).unlink()
    truncate_write(directory, name, data, 0o644)


def cilium_exclusive(directory: Path) -> list[str]:
    """Cilium's exclusive mode: every other configuration renamed to `*.cilium_bak`."""
    moved = []
    for path in sorted(directory.iterdir()):
        if path.suffix in (".conf", ".conflist", ".json") and "cilium" not in path.name:
            os.rename(path, path.with_name(path.name + ".cilium_bak"))
            moved.append(path.name)
    return moved
