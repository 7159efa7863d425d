"""Writes to the Kubernetes API: create, get, patch (merge, strategic merge, JSON patch) and delete with preconditions.

Objects are handled as decoded JSON (`dict`), not as the informer's Structs: a write must send back fields this
project does not model (a taint's `timeAdded`, a label it does not own) exactly as the server returned them.

Optimistic concurrency is the server's: `modify` reads the object, asks a function for a merge patch, and sends it
with the `metadata.resourceVersion` it read, so a concurrent writer makes the server answer 409 Conflict instead of
one write silently replacing the other's list; the loop then reads again and recomputes (kubectl apply does the same,
5 times). Deletes carry `preconditions: {uid, resourceVersion}` in their DeleteOptions body, so an object that was
replaced (same name, new uid) or changed since it was judged is never deleted by mistake: the server answers 409
with "Precondition failed" (`Conflict.precondition_failed`).

Errors are the `nodemeta.kube.errors` tree, raised by the HTTP adapter (`ApiClient.send`, behind the `Sender`
protocol, so this module and everything above it stays free of the HTTP library).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import orjson

from nodemeta.kube.errors import Conflict, DecodeError

__all__ = [
    "JSONObject",
    "Modified",
    "ObjectPath",
    "PatchType",
    "Sender",
    "Writer",
    "WriterSettings",
    "event_path",
    "node_path",
    "pod_path",
]

JSONObject = dict[str, Any]
_JSON = "application/json"


class Sender(Protocol):
    """One bounded HTTP request; `ApiClient` is the implementation. Raises the `errors` tree, returns a 2xx body."""

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = _JSON,
        accept: str = _JSON,
    ) -> bytes: ...


class PatchType(StrEnum):
    """The PATCH content types the API server accepts (server-side apply is not used here)."""

    # RFC 7386: maps merge, `null` removes a key, lists are replaced whole.
    MERGE = "application/merge-patch+json"
    # Built-in kinds only: lists with a merge key (containers by name, conditions by type...) are merged.
    STRATEGIC = "application/strategic-merge-patch+json"
    # RFC 6902 operations; a failed `test` operation is a 422 (`Invalid`).
    JSON = "application/json-patch+json"


@dataclass(frozen=True, slots=True)
class ObjectPath:
    """Where an object (or, with an empty name, its collection) lives in the REST tree."""

    api: str  # "/api/v1" or "/apis/<group>/<version>"
    plural: str
    name: str = ""
    namespace: str = ""

    @property
    def collection(self) -> str:
        if self.namespace:
            return f"{self.api}/namespaces/{self.namespace}/{self.plural}"
        return f"{self.api}/{self.plural}"

    @property
    def path(self) -> str:
        if not self.name:
            raise ValueError(f"{self.collection}: an object path needs a name")
        return f"{self.collection}/{self.name}"

    def __str__(self) -> str:
        return f"{self.plural}/{self.namespace}/{self.name}" if self.namespace else f"{self.plural}/{self.name}"


def node_path(name: str) -> ObjectPath:
    return ObjectPath("/api/v1", "nodes", name)


def pod_path(namespace: str, name: str) -> ObjectPath:
    return ObjectPath("/api/v1", "pods", name, namespace)


def event_path(namespace: str, name: str = "") -> ObjectPath:
    """A core/v1 Event (or, without a name, the namespace's events collection)."""
    return ObjectPath("/api/v1", "events", name, namespace)


@dataclass(frozen=True, slots=True, kw_only=True)
class WriterSettings:
    # Read-modify-write attempts before a Conflict reaches the caller. kubectl apply retries 5 times; a node's
    # spec is written by few parties (the node lifecycle controller, an operator), so 5 fresh reads in a row that
    # all lose the race mean something is rewriting the object in a loop, and the caller should hear about it.
    conflict_attempts: int = 5

    def __post_init__(self) -> None:
        if self.conflict_attempts < 1:
            raise ValueError("conflict_attempts must be at least 1")


@dataclass(frozen=True, slots=True)
class Modified:
    """The outcome of `Writer.modify`: the object as stored now, whether we wrote it, and how many reads it took."""

    object: JSONObject
    written: bool
    attempts: int


class Writer:
    """Object writes through one `ApiClient` (any `Sender`). Stateless; safe to share between tasks."""

    def __init__(self, client: Sender, *, settings: WriterSettings | None = None) -> None:
        self.client = client
        self.settings = settings or WriterSettings()

    async def get(self, ref: ObjectPath) -> JSONObject:
        return _object(await self.client.send("GET", ref.path), f"GET {ref}")

    async def create(self, ref: ObjectPath, body: JSONObject) -> JSONObject:
        """POST `body` to the collection of `ref` (its name is ignored; the body names the object)."""
        answer = await self.client.send("POST", ref.collection, body=orjson.dumps(body))
        return _object(answer, f"POST {ref.collection}")

    async def patch(
        self,
        ref: ObjectPath,
        patch: JSONObject | list[JSONObject],
        patch_type: PatchType = PatchType.MERGE,
        *,
        subresource: str = "",
    ) -> JSONObject:
        """PATCH the object (or its `subresource`, e.g. "status"); returns the object as stored afterwards."""
        if patch_type is PatchType.JSON and not isinstance(patch, list):
            raise ValueError("a JSON patch is a list of operations")
        if patch_type is not PatchType.JSON and not isinstance(patch, dict):
            raise ValueError(f"a {patch_type.name.lower()} patch is a JSON object")
        path = f"{ref.path}/{subresource}" if subresource else ref.path
        answer = await self.client.send("PATCH", path, body=orjson.dumps(patch), content_type=patch_type.value)
        return _object(answer, f"PATCH {ref}")

    async def delete(
        self,
        ref: ObjectPath,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
        grace_period_seconds: int | None = None,
        propagation: str = "Background",
    ) -> JSONObject:
        """DELETE with a DeleteOptions body; `uid`/`resource_version` become preconditions the server checks.

        Returns what the server returns: the object (pods: with its deletionTimestamp while it terminates) or a
        success Status. A failed precondition raises `Conflict` with `precondition_failed` true.
        """
        options: JSONObject = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if preconditions:
            options["preconditions"] = preconditions
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        return _object(await self.client.send("DELETE", ref.path, body=orjson.dumps(options)), f"DELETE {ref}")

    async def modify(self, ref: ObjectPath, change: Callable[[JSONObject], JSONObject | None]) -> Modified:
        """Read-modify-write with optimistic concurrency.

        `change(current)` returns a merge patch to apply, or None when the object is already as wanted (then nothing
        is written). The patch is sent with the resourceVersion that was read; on 409 the object is read again and
        `change` asked again, up to `conflict_attempts` times, after which the last Conflict is raised.
        """
        last: Conflict | None = None
        for attempt in range(1, self.settings.conflict_attempts + 1):
            current = await self.get(ref)
            patch = change(current)
            if patch is None:
                return Modified(current, False, attempt)
            meta = dict(patch.get("metadata") or {})
            meta["resourceVersion"] = _resource_version(current, ref)
            try:
                stored = await self.patch(ref, {**patch, "metadata": meta}, PatchType.MERGE)
            except Conflict as err:
                last = err
                continue
            return Modified(stored, True, attempt)
        assert last is not None
        raise last


def _resource_version(obj: JSONObject, ref: ObjectPath) -> str:
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    if not isinstance(rv, str) or not rv:
        raise DecodeError(f"{ref}: the object has no metadata.resourceVersion")
    return rv


def _object(body: bytes, what: str) -> JSONObject:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise DecodeError(f"{what}: the answer is not JSON: {err}") from err
    if not isinstance(value, dict):
        raise DecodeError(f"{what}: the answer is not a JSON object")
    return value
