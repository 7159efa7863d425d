"""Pre-encoded protobuf bytes for the metadata streams, so each event is serialised once for every subscriber.

An event is two byte strings put side by side: a reason prefix (field 1; three constants per protocol) and a body
(fields 2 uid, 3 kind, 4 meta, 6 status, 7 refs), encoded once per rendered payload. The body is the same for the
Falco contract (`metadata.Event`) and for `nodemeta.v1.Event`, whose fields 2 to 7 share numbers and wire types.

* Falco: one `metadata.Event` per message = `FALCO_REASON[reason] + body`.
* nodemeta.v1: an `EventBatch` = the concatenation of `batch_entry(...)` for each event, then `batch_trailer(...)`.
  That is exactly what the generated EventBatch would serialise, without building any message object.

Fields are written in ascending order and refs sorted by kind, so the bytes equal protobuf's deterministic
serialisation of the same message (the tests check this against the generated classes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Wire tags: (field number << 3) | wire type (0 varint, 2 length-delimited).
_TAG_1_LEN = b"\x0a"
_TAG_2_LEN = b"\x12"
_TAG_3_LEN = b"\x1a"
_TAG_4_LEN = b"\x22"
_TAG_6_LEN = b"\x32"
_TAG_7_LEN = b"\x3a"


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, data: bytes) -> bytes:
    return tag + _varint(len(data)) + data


def _string(tag: bytes, text: str) -> bytes:
    return _field(tag, text.encode())


FALCO_REASON = {reason: _string(_TAG_1_LEN, reason) for reason in ("Create", "Update", "Delete")}
# nodemeta.v1.Reason values as field 1 (varint).
V1_REASON = {"Create": b"\x08\x01", "Update": b"\x08\x02", "Delete": b"\x08\x03"}


def encode_refs(refs: Iterable[tuple[str, Sequence[str]]]) -> bytes:
    """A References message: one map entry per kind (key 1, value 2 = a list message whose field 1 repeats).

    The value is written even for an empty list, as Go and C++ do for the always-present `Service` key.
    """
    out = bytearray()
    for kind, uids in sorted(refs, key=lambda item: item[0]):
        values = b"".join(_string(_TAG_1_LEN, uid) for uid in uids)
        entry = _string(_TAG_1_LEN, kind) + _field(_TAG_2_LEN, values)
        out += _field(_TAG_1_LEN, entry)
    return bytes(out)


def encode_body(
    kind: str,
    uid: str,
    meta: str | None = None,
    status: str | None = None,
    refs: Iterable[tuple[str, Sequence[str]]] | None = None,
) -> bytes:
    """Fields 2 to 7 of an Event (a Delete passes only kind and uid)."""
    out = _string(_TAG_2_LEN, uid) + _string(_TAG_3_LEN, kind)
    if meta is not None:
        out += _string(_TAG_4_LEN, meta)
    if status is not None:
        out += _string(_TAG_6_LEN, status)
    if refs is not None:
        out += _field(_TAG_7_LEN, encode_refs(refs))
    return out


def falco_event(reason: str, body: bytes) -> bytes:
    """A serialised `metadata.Event`."""
    return FALCO_REASON[reason] + body


def v1_event(reason: str, body: bytes) -> bytes:
    """A serialised `nodemeta.v1.Event`."""
    return V1_REASON[reason] + body


def batch_entry(reason: str, body: bytes) -> bytes:
    """One element of `EventBatch.events` (field 1), ready to concatenate."""
    return _field(_TAG_1_LEN, V1_REASON[reason] + body)


def batch_trailer(
    revision: int, *, initial_sync_complete: bool = False, session_id: str = "", reset: bool = False
) -> bytes:
    """The scalar fields of an EventBatch (2 revision, 3 initial_sync_complete, 4 session_id, 5 reset)."""
    out = b""
    if revision:
        out += b"\x10" + _varint(revision)
    if initial_sync_complete:
        out += b"\x18\x01"
    if session_id:
        out += _string(b"\x22", session_id)
    if reset:
        out += b"\x28\x01"
    return out


def encode_batch(
    entries: Iterable[bytes],
    revision: int,
    *,
    initial_sync_complete: bool = False,
    session_id: str = "",
    reset: bool = False,
) -> bytes:
    """A serialised EventBatch from pre-encoded entries."""
    trailer = batch_trailer(revision, initial_sync_complete=initial_sync_complete, session_id=session_id, reset=reset)
    return b"".join(entries) + trailer
