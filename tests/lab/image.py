"""A tiny OCI image built from the host's static busybox, for a lab with no registry to pull from.

One uncompressed layer holds /bin/busybox and a few applet symlinks; the entrypoint sleeps for decades, so the same
image serves as the pod sandbox ("pause") image and as the workload image. The archive is an OCI image layout
tarball that `ctr images import` understands; it is byte-for-byte reproducible (fixed mtimes, sorted entries).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

__all__ = ["APPLETS", "IMAGE_NAME", "build_busybox_image"]

IMAGE_NAME = "docker.io/nodemeta/lab-busybox:1"
APPLETS = ("sh", "sleep", "cat", "ls", "id", "ip", "ps", "true", "false", "env", "hostname", "nc", "wget", "echo")
# `sleep` as PID 1 ignores SIGTERM; the runtime kills it with SIGKILL on stop, which is all a pause process needs.
ENTRYPOINT = ("/bin/sleep", "2000000000")


def _add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, mode: int = 0o755, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.mode = mode
    info.uid = info.gid = 0
    if link:
        info.type = tarfile.SYMTYPE
        info.linkname = link
        tar.addfile(info)
    elif data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _layer(busybox: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("bin", "dev", "etc", "proc", "sys", "tmp"):
            _add(tar, directory, mode=0o1777 if directory == "tmp" else 0o755)
        _add(tar, "bin/busybox", data=busybox)
        for applet in sorted(APPLETS):
            _add(tar, f"bin/{applet}", link="busybox")
        _add(
            tar, "etc/passwd", data=b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", mode=0o644
        )
        _add(tar, "etc/group", data=b"root:x:0:\nnobody:x:65534:\n", mode=0o644)
    return buffer.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _add(tar, "blobs/sha256/" + digest.removeprefix("sha256:"), data=data, mode=0o644)
    return digest, len(data)


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def build_busybox_image(busybox: Path, out: Path, *, name: str = IMAGE_NAME) -> Path:
    """Write the image as an OCI layout tarball at `out` and return it."""
    layer = _layer(busybox.read_bytes())
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = _json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": list(ENTRYPOINT), "Env": ["PATH=/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    )
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "blobs", mode=0o755)
        _add(tar, "blobs/sha256", mode=0o755)
        _blob(tar, layer)
        config_digest, config_size = _blob(tar, config)
        manifest = _json(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": config_size,
                },
                "layers": [
                    {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}
                ],
            }
        )
        manifest_digest, manifest_size = _blob(tar, manifest)
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "1"},
                }
            ],
        }
        _add(tar, "index.json", data=_json(index), mode=0o644)
        _add(tar, "oci-layout", data=_json({"imageLayoutVersion": "1.0.0"}), mode=0o644)
    return out
