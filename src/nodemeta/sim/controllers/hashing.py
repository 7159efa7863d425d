"""The hashes and names workload controllers derive from pod templates, as kube-controller-manager computes them.

Two families, both rendered through apimachinery's `SafeEncodeString` so values look like a real cluster's (up to
ten characters from `4-9bcdf`, since only decimal digits are encoded):

* `compute_hash` is `controller.ComputeHash`: FNV-1a 32 over the pod template, plus the collision count as eight
  little-endian bytes. Deployments name ReplicaSets `<deploy>-<hash>` with it and DaemonSets label pods and name
  ControllerRevisions with it. The real input is Go's spew dump of the typed template, which Python cannot
  reproduce; canonical JSON (sorted keys, compact) stands in for it, so values differ from a real cluster's for
  the same template but are stable and change exactly when the template does.
* `hash_controller_revision` is `history.HashControllerRevision`: FNV-1 (not 1a) 32 over the revision's patch
  data, plus the collision count as decimal text. StatefulSets name their ControllerRevisions with it.
"""

from __future__ import annotations

from typing import Any

import orjson

SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_FNV32_OFFSET = 0x811C9DC5
_FNV32_PRIME = 0x01000193
_MASK32 = 0xFFFFFFFF
# ControllerRevisionName cuts the owner's name so that name + "-" + hash stays a valid object name.
_REVISION_PREFIX_LIMIT = 223
# Go's encoding/json escapes these inside strings; matching it keeps revision data byte-identical in form.
_GO_JSON_ESCAPES = ((b"<", b"\\u003c"), (b">", b"\\u003e"), (b"&", b"\\u0026"))


def fnv1a_32(data: bytes, state: int = _FNV32_OFFSET) -> int:
    """FNV-1a 32 (Go's hash/fnv New32a): xor the byte in, then multiply."""
    h = state
    for byte in data:
        h = ((h ^ byte) * _FNV32_PRIME) & _MASK32
    return h


def fnv1_32(data: bytes, state: int = _FNV32_OFFSET) -> int:
    """FNV-1 32 (Go's hash/fnv New32): multiply, then xor the byte in."""
    h = state
    for byte in data:
        h = ((h * _FNV32_PRIME) & _MASK32) ^ byte
    return h


def safe_encode_string(text: str) -> str:
    """apimachinery's rand.SafeEncodeString: each character picks from an alphabet without vowels or 0/1/3."""
    return "".join(SAFE_ALPHABET[ord(ch) % len(SAFE_ALPHABET)] for ch in text)


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys, as Go's json.Marshal renders a map."""
    raw = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    for plain, escaped in _GO_JSON_ESCAPES:
        raw = raw.replace(plain, escaped)
    return raw


def compute_hash(template: Any, collision_count: int | None = None) -> str:
    """The `pod-template-hash` / DaemonSet `controller-revision-hash` of a pod template."""
    h = fnv1a_32(canonical_json(template))
    if collision_count is not None:
        h = fnv1a_32((collision_count & _MASK32).to_bytes(8, "little"), h)
    return safe_encode_string(str(h))


def revision_patch(template: Any) -> dict[str, Any]:
    """The data of a DaemonSet's or StatefulSet's ControllerRevision: a patch replacing the whole pod template."""
    return {"spec": {"template": {**template, "$patch": "replace"}}}


def hash_controller_revision(data: bytes, collision_count: int | None = None) -> str:
    """The hash of a ControllerRevision's raw data (StatefulSet revision names and `controller.kubernetes.io/hash`)."""
    h = fnv1_32(data)
    if collision_count is not None:
        h = fnv1_32(str(collision_count).encode(), h)
    return safe_encode_string(str(h))


def controller_revision_name(prefix: str, hash_: str) -> str:
    """history.ControllerRevisionName: `<owner>-<hash>` with the owner's name cut to keep the result valid."""
    return f"{prefix[:_REVISION_PREFIX_LIMIT]}-{hash_}"
