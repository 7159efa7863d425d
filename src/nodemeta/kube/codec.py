"""Decoding of list pages, watch lines and Status errors: bytes in, typed values out, no I/O.

A watch line is decoded in two steps: first the envelope (`type` plus the object left as raw bytes), then the object
with the Struct its type calls for. Changes decode into the resource's model, BOOKMARK into a tiny Struct that keeps
only the resourceVersion and annotations (a bookmark is an almost empty object whose null fields the model would
reject), and ERROR into a Status. msgspec's errors become `DecodeError` here, so callers see only this layer's tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

import msgspec

from nodemeta.kube.errors import ApiError, DecodeError, api_error
from nodemeta.kube.models import BookmarkObject, KubeObject, ObjectList, Status, WatchEvent

__all__ = [
    "ADDED",
    "BOOKMARK",
    "DELETED",
    "ERROR",
    "MODIFIED",
    "Bookmark",
    "Change",
    "Codec",
    "Event",
    "Failure",
    "decode_status",
    "status_error",
]

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"
BOOKMARK = "BOOKMARK"
ERROR = "ERROR"

T = TypeVar("T", bound=KubeObject)


@dataclass(frozen=True, slots=True)
class Change(Generic[T]):
    """ADDED, MODIFIED or DELETED, with the object (for DELETED: its last state)."""

    type: str
    object: T

    @property
    def resource_version(self) -> str:
        return self.object.metadata.resource_version


@dataclass(frozen=True, slots=True)
class Bookmark:
    """The server has sent everything up to `resource_version`."""

    resource_version: str
    annotations: dict[str, str]


@dataclass(frozen=True, slots=True)
class Failure:
    """An in-stream ERROR event; the watch ends after it."""

    status: Status


Event: TypeAlias = Change[T] | Bookmark | Failure

_envelope = msgspec.json.Decoder(WatchEvent)
_bookmark = msgspec.json.Decoder(BookmarkObject)
_status = msgspec.json.Decoder(Status)


class Codec(Generic[T]):
    """Decoders for one model, built once per resource (building a msgspec decoder is the costly part)."""

    def __init__(self, model: type[T]) -> None:
        self.model = model
        self._object: msgspec.json.Decoder[T] = msgspec.json.Decoder(model)
        list_type = ObjectList[model]  # type: ignore[valid-type]
        self._list: msgspec.json.Decoder[ObjectList[T]] = msgspec.json.Decoder(list_type)

    def decode_list(self, body: bytes) -> ObjectList[T]:
        """One LIST page, its items sharing their repeated strings (`KubeObject.shared`)."""
        try:
            page = self._list.decode(body)
        except msgspec.DecodeError as err:
            raise DecodeError(f"list of {self.model.__name__}: {err}") from err
        return msgspec.structs.replace(page, items=tuple([item.shared() for item in page.items]))

    def decode_event(self, line: bytes) -> Event[T]:
        """One watch line. Unknown event types are a DecodeError, like malformed JSON."""
        try:
            event = _envelope.decode(line)
            if event.type in (ADDED, MODIFIED, DELETED):
                return Change(event.type, self._object.decode(event.object).shared())
            if event.type == BOOKMARK:
                meta = _bookmark.decode(event.object).metadata
                return Bookmark(meta.resource_version, meta.annotations)
            if event.type == ERROR:
                return Failure(_status.decode(event.object))
        except msgspec.DecodeError as err:
            raise DecodeError(f"watch event of {self.model.__name__}: {err}") from err
        raise DecodeError(f"watch event of {self.model.__name__}: unknown type {event.type!r}")


def decode_status(body: bytes) -> Status | None:
    """The Status in an error body, or None when the body is something else (e.g. APF's plain-text 429)."""
    try:
        status = _status.decode(body)
    except msgspec.DecodeError:
        return None
    return status if status.code or status.reason or status.message else None


def status_error(status: Status, *, http_status: int = 0, retry_after: float | None = None) -> ApiError:
    """The ApiError for a Status; `http_status` is used when the Status carries no code."""
    code = status.code or http_status
    if retry_after is None and status.details.retry_after_seconds > 0:
        retry_after = float(status.details.retry_after_seconds)
    causes = tuple(c.reason for c in status.details.causes if c.reason)
    return api_error(code, status.reason, status.message, retry_after=retry_after, causes=causes)
