"""How a stored object is shown to a client: full object, PartialObjectMetadata or Table, in JSON.

The full form never re-encodes: a stored revision's bytes lack `kind`/`apiVersion` (the form of a typed list's
items) and a single object or a watch event splices them in front. Watch lines are cached on the change, so a
thousand watchers of the same form share one encoding. Negotiation follows the `Accept` rules of kube-apiserver:
the first acceptable clause wins, otherwise 406.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from nodemeta.sim import errors, events_view, table
from nodemeta.sim.resources import JSON, ResourceType
from nodemeta.sim.store import DELETED, Change, Page, Stored

FULL = "full"
META = "meta"
TABLE = "table"

JSON_TYPE = "application/json"
META_GVK = "g=meta.k8s.io;v=v1"


@dataclass(frozen=True, slots=True)
class Negotiated:
    form: str
    content_type: str


def _params(clause: str) -> tuple[str, dict[str, str]]:
    parts = [p.strip() for p in clause.split(";")]
    media = parts[0].lower()
    params: dict[str, str] = {}
    for p in parts[1:]:
        key, _, value = p.partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    return media, params


def negotiate(accept: str, *, is_list: bool, allow_table: bool = True) -> Negotiated:
    """Pick the response form from an Accept header; raises 406 when no clause is acceptable."""
    if not accept.strip():
        return Negotiated(FULL, JSON_TYPE)
    clauses = []
    for index, clause in enumerate(accept.split(",")):
        media, params = _params(clause)
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 1.0
        clauses.append((-q, index, media, params))
    for _q, _i, media, params in sorted(clauses):
        if _q == 0:
            continue
        if media not in ("application/json", "application/*", "*/*", "application/json;stream=watch"):
            continue
        target = params.get("as")
        if not target:
            return Negotiated(FULL, JSON_TYPE)
        group, version = params.get("g"), params.get("v")
        if group != "meta.k8s.io" or version not in ("v1", "v1beta1"):
            continue
        if target == "PartialObjectMetadataList" and is_list and version == "v1":
            return Negotiated(META, f"{JSON_TYPE};{META_GVK};as=PartialObjectMetadataList")
        if target == "PartialObjectMetadata" and not is_list and version == "v1":
            return Negotiated(META, f"{JSON_TYPE};{META_GVK};as=PartialObjectMetadata")
        if target == "Table" and allow_table:
            return Negotiated(TABLE, f"{JSON_TYPE};g=meta.k8s.io;v={version};as=Table")
    raise errors.not_acceptable()


class View:
    """Renders objects of one resource in one form."""

    def __init__(self, res: ResourceType, form: str, clock: Any = time.time) -> None:
        self.res = res
        self.form = form
        self.clock = clock
        self.converted = bool(res.storage)  # events.k8s.io: a conversion of the stored core/v1 object
        self._prefix = orjson.dumps({"kind": res.kind, "apiVersion": res.api_version})[:-1] + b","
        self._cache_key = (res.api_version, res.kind, form)

    # -- single objects -------------------------------------------------------------------------------------

    def full(self, stored: Stored) -> bytes:
        if self.converted:
            return orjson.dumps(self._typed(events_view.to_events_v1(stored.decode())))
        return self._prefix + stored.body[1:]

    def _typed(self, obj: JSON) -> JSON:
        return {"kind": self.res.kind, "apiVersion": self.res.api_version} | obj

    def meta_obj(self, stored: Stored) -> JSON:
        meta = stored.decode()["metadata"]
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}

    def meta_bytes(self, stored: Stored) -> bytes:
        """The PartialObjectMetadata encoding of a revision, made once per revision and shared."""
        if stored.meta_body is None:
            stored.meta_body = memoryview(orjson.dumps(self.meta_obj(stored))).tobytes()
        return stored.meta_body

    def object(self, stored: Stored) -> bytes:
        if self.form == META:
            return self.meta_bytes(stored)
        if self.form == TABLE:
            return orjson.dumps(self.table([stored], str(stored.rv)))
        return self.full(stored)

    def decoded(self, stored: Stored) -> JSON:
        return orjson.loads(self.object(stored))  # type: ignore[no-any-return]

    # -- lists ----------------------------------------------------------------------------------------------

    def list_body(self, page: Page) -> bytes:
        meta: JSON = {"resourceVersion": str(page.rv)}
        if page.continue_token:
            meta["continue"] = page.continue_token
            if page.remaining is not None:
                meta["remainingItemCount"] = page.remaining
        if self.form == TABLE:
            return orjson.dumps(self.table(page.items, str(page.rv), page.continue_token, page.remaining))
        if self.form == META:
            head = {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
            items = [self.meta_bytes(s) for s in page.items]
        else:
            head = {"kind": self.res.list_kind, "apiVersion": self.res.api_version, "metadata": meta}
            if self.converted:
                items = [orjson.dumps(events_view.to_events_v1(s.decode())) for s in page.items]
            else:
                items = [s.body for s in page.items]
        # One join for the whole body: a 150,000-pod list is ~600 MB, and every extra concatenation copies it.
        parts = [orjson.dumps(head)[:-1], b',"items":[']
        for index, item in enumerate(items):
            if index:
                parts.append(b",")
            parts.append(item)
        parts.append(b"]}")
        return b"".join(parts)

    def table(self, items: list[Stored], rv: str, token: str = "", remaining: int | None = None) -> JSON:
        now = self.clock()
        rows = []
        for stored in items:
            obj = stored.decode()
            if self.converted:
                obj = events_view.to_events_v1(obj)
            ref = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
            rows.append(table.row(self.res, obj, now, ref))
        return table.table(self.res, rows, rv, token, remaining)

    # -- watch ----------------------------------------------------------------------------------------------

    def line(self, change: Change, event_type: str, first: bool = False) -> bytes:
        """The watch line for `change` delivered as `event_type` (which differs for selector transitions)."""
        cacheable = self.form != TABLE
        key = (self._cache_key, event_type)
        if cacheable:
            cached = change.lines.get(key)
            if cached is not None:
                return cached
        if event_type == DELETED and change.type != DELETED:
            # Leaving the watcher's selection: the previous content, at the new revision.
            assert change.prev is not None
            obj = change.prev.decode()
            obj["metadata"]["resourceVersion"] = str(change.rv)
            body = self._render(obj, first)
        elif self.form == FULL and not self.converted:
            body = self._prefix + change.obj.body[1:]
        else:
            body = self._render(change.obj.decode(), first)
        line = b'{"type":"' + event_type.encode() + b'","object":' + body + b"}\n"
        if cacheable:
            change.lines[key] = line
        return line

    def _render(self, obj: JSON, first: bool) -> bytes:
        if self.converted:
            obj = events_view.to_events_v1(obj)
        if self.form == META:
            return orjson.dumps(
                {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
            )
        if self.form == TABLE:
            ref = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
            row = table.row(self.res, obj, self.clock(), ref)
            rv = obj["metadata"].get("resourceVersion", "")
            return orjson.dumps(table.table(self.res, [row], rv, include_columns=first))
        return orjson.dumps(self._typed(obj))

    def snapshot_line(self, stored: Stored, first: bool = False) -> bytes:
        """A synthetic ADDED for an object that existed when the watch started."""
        if self.form == FULL and not self.converted:
            body = self._prefix + stored.body[1:]
        else:
            body = self._render(stored.decode(), first)
        return b'{"type":"ADDED","object":' + body + b"}\n"

    def bookmark_line(self, rv: int, annotations: dict[str, str] | None = None) -> bytes:
        meta: JSON = {"resourceVersion": str(rv), "creationTimestamp": None}
        if annotations:
            meta["annotations"] = annotations
        if self.form == META:
            obj: JSON = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
        elif self.form == TABLE:
            obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(rv)},
                   "columnDefinitions": None, "rows": None}  # fmt: skip
        else:
            obj = {"kind": self.res.kind, "apiVersion": self.res.api_version, "metadata": meta}
        return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"


def error_line(status: JSON) -> bytes:
    return orjson.dumps({"type": "ERROR", "object": status}) + b"\n"
