"""The simulator's storage: objects, one global resourceVersion, bounded history and watcher fan-out.

This plays the part etcd and the watch cache play behind kube-apiserver, without any I/O:

* every write bumps one cluster-wide counter, like an etcd revision;
* each stored revision is encoded to JSON once (`Stored.body`) and those bytes are shared by every list page,
  GET and watch event that serves it, so 150,000 pods cost one encoding each rather than one per reader;
* each storage keeps a bounded history of changes; a watch or a paginated list that needs an older state than
  the history holds gets 410 Expired, as with etcd compaction;
* watchers are notified synchronously inside the write, so a watcher never misses or reorders a change. Watchers
  that filter pods by `spec.nodeName=X` are indexed by X (kube-apiserver's cacher does the same), so a write
  reaches only the few watchers that can care about it;
* pods are also indexed by `spec.nodeName` (kube-apiserver's watch cache keeps the same index), so a list for one
  node reads that node's few pods instead of testing all 150,000;
* a read at an older revision sees the current objects overlaid with their states at that revision (a
  `Snapshot`); snapshots are kept for the last few revisions read and brought up to date with later writes
  incrementally, so each page of a paginated list costs what it returns rather than a pass over the history.
"""

from __future__ import annotations

import base64
import bisect
import heapq
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from sortedcontainers import SortedDict, SortedList

from nodemeta.sim.resources import JSON, ResourceType

ADDED = "ADDED"
MODIFIED = "MODIFIED"
DELETED = "DELETED"


class Stored:
    """One revision of one object. Immutable once made; readers share it."""

    __slots__ = ("body", "fields", "key", "labels", "meta_body", "name", "namespace", "rv", "uid")

    def __init__(self, key: str, obj: JSON, rv: int, extract: Callable[[JSON], dict[str, str]] | None) -> None:
        meta = obj["metadata"]
        self.key = key
        self.name: str = meta["name"]
        self.namespace: str = meta.get("namespace") or ""
        self.uid: str = meta.get("uid") or ""
        self.rv = rv
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.fields: dict[str, str] | None = extract(obj) if extract is not None else None
        # The list-item form: no kind/apiVersion (a typed list's items carry none); views splice them in. orjson's
        # result keeps spare capacity (about a page); an exact-size copy holds 150,000 pods in ~30% less memory.
        self.body: bytes = memoryview(orjson.dumps(_without_type(obj))).tobytes()
        # The PartialObjectMetadata form, encoded on first use and then shared like `body`.
        self.meta_body: bytes | None = None

    def decode(self) -> JSON:
        """A private, mutable copy of the object (without kind/apiVersion)."""
        result: JSON = orjson.loads(self.body)
        return result

    def field(self, name: str) -> str:
        if name == "metadata.name":
            return self.name
        if name == "metadata.namespace":
            return self.namespace
        return (self.fields or {}).get(name, "")

    def field_map(self) -> dict[str, str]:
        """Every selectable field of this object, for field selectors."""
        out = {"metadata.name": self.name, "metadata.namespace": self.namespace}
        if self.fields:
            out.update(self.fields)
        return out


def _without_type(obj: JSON) -> JSON:
    if "kind" in obj or "apiVersion" in obj:
        return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
    return obj


class Change:
    """One entry of a storage's history, as a watcher sees it.

    `obj` is what the event carries (for DELETED: the last state, stamped with the delete's resourceVersion);
    `prev` is the state before the change (None for ADDED). Encoded watch lines are cached on the change, so
    every watcher of the same form shares one encoding.
    """

    __slots__ = ("key", "lines", "obj", "prev", "rv", "type")

    def __init__(self, type_: str, rv: int, key: str, obj: Stored, prev: Stored | None) -> None:
        self.type = type_
        self.rv = rv
        self.key = key
        self.obj = obj
        self.prev = prev
        self.lines: dict[Any, bytes] = {}


class WatchSink(Protocol):
    """Receives the changes of one storage, synchronously, in resourceVersion order."""

    def offer(self, change: Change) -> None: ...


class Expired(Exception):
    """The requested resourceVersion is older than the retained history."""

    def __init__(self, requested: int, floor: int) -> None:
        super().__init__(f"too old resource version: {requested} ({floor})")
        self.requested = requested
        self.floor = floor


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Stored]
    rv: int
    continue_token: str
    remaining: int | None


# Snapshots kept per bucket: a paginated list reads at its first page's revision until it ends, and a handful of
# lists walk at once (a relisting informer, kubectl, a benchmark); each snapshot holds at most one entry per change
# in the history, so a few cost little next to the history itself.
SNAPSHOT_LIMIT = 4
_NO_KEYS: SortedList = SortedList()


class Snapshot:
    """A bucket as of an older revision `rv`, kept as the difference from the current objects.

    `overrides` maps every key written after `rv` to its state at `rv` (None: it did not exist then). The sorted
    key sets let a read at `rv` walk only what it returns: `ghosts` existed at `rv` but are gone now, `unborn` are
    live now but did not exist at `rv`, and `moved[v]` existed at `rv` with index value v but are not under v in
    the live index now. `upto` is the revision the snapshot has caught up with.
    """

    __slots__ = ("ghosts", "moved", "overrides", "rv", "unborn", "upto")

    def __init__(self, rv: int) -> None:
        self.rv = rv
        self.upto = rv
        self.overrides: dict[str, Stored | None] = {}
        self.ghosts: SortedList = SortedList()
        self.unborn: SortedList = SortedList()
        self.moved: dict[str, SortedList] = {}

    def catch_up(self, bucket: Bucket, current_rv: int) -> None:
        """Take in the changes after `upto` (the newest history entries, so this walks only those)."""
        if self.upto >= current_rv:
            return
        fresh: list[Change] = []
        for change in reversed(bucket.history):
            if change.rv <= self.upto:
                break
            fresh.append(change)
        touched: set[str] = set()
        for change in reversed(fresh):
            self.overrides.setdefault(change.key, change.prev if change.type != ADDED else None)
            touched.add(change.key)
        for key in touched:
            self._refresh(bucket, key)
        self.upto = current_rv

    def _refresh(self, bucket: Bucket, key: str) -> None:
        then = self.overrides[key]
        now = bucket.items.get(key)
        self.ghosts.discard(key)
        self.unborn.discard(key)
        if then is not None and now is None:
            self.ghosts.add(key)
        elif then is None and now is not None:
            self.unborn.add(key)
        field = bucket.index_field
        if not field or then is None:
            return
        value = then.field(field)
        if now is not None and now.field(field) == value:
            keys = self.moved.get(value)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.moved[value]
        else:
            keys = self.moved.setdefault(value, SortedList())
            if key not in keys:
                keys.add(key)


class Bucket:
    """All objects of one storage (e.g. `pods`), their history and their watchers."""

    def __init__(self, res: ResourceType, history_limit: int, start_rv: int) -> None:
        self.res = res
        self.items: SortedDict = SortedDict()
        self.history: deque[Change] = deque()
        self.history_limit = history_limit
        # A watch from a resourceVersion below the floor cannot be served from history.
        self.floor = start_rv
        self.watchers: set[WatchSink] = set()
        self.indexed: dict[str, set[WatchSink]] = {}
        self.index_field = "spec.nodeName" if res.plural == "pods" else ""
        # Keys of the live objects by their `index_field` value (pods by node; "" holds the unscheduled ones).
        self.by_value: dict[str, SortedList] = {}
        self._snapshots: OrderedDict[int, Snapshot] = OrderedDict()

    def get(self, key: str) -> Stored | None:
        found: Stored | None = self.items.get(key)
        return found

    def __len__(self) -> int:
        return len(self.items)

    # -- watchers -------------------------------------------------------------------------------------------

    def subscribe(self, sink: WatchSink, index_value: str | None = None) -> None:
        if index_value is not None and self.index_field:
            self.indexed.setdefault(index_value, set()).add(sink)
        else:
            self.watchers.add(sink)

    def unsubscribe(self, sink: WatchSink) -> None:
        self.watchers.discard(sink)
        for value, sinks in list(self.indexed.items()):
            sinks.discard(sink)
            if not sinks:
                del self.indexed[value]

    def watcher_count(self) -> int:
        return len(self.watchers) + sum(len(s) for s in self.indexed.values())

    def _dispatch(self, change: Change) -> None:
        targets: list[WatchSink] = list(self.watchers)
        if self.indexed:
            values = {change.obj.field(self.index_field)}
            if change.prev is not None:
                values.add(change.prev.field(self.index_field))
            for value in values:
                targets.extend(self.indexed.get(value, ()))
        for sink in targets:
            sink.offer(change)

    # -- history --------------------------------------------------------------------------------------------

    def record(self, change: Change) -> None:
        """Take in a change already applied to `items`: index it, keep it in history, tell the watchers."""
        if self.index_field:
            self._reindex(change)
        self.history.append(change)
        while len(self.history) > self.history_limit:
            self.floor = self.history.popleft().rv
        self._dispatch(change)

    def _reindex(self, change: Change) -> None:
        field = self.index_field
        old = change.prev.field(field) if change.prev is not None else None
        new = change.obj.field(field) if change.type != DELETED else None
        if old == new:
            return
        if old is not None:
            keys = self.by_value[old]
            keys.remove(change.key)
            if not keys:
                del self.by_value[old]
        if new is not None:
            self.by_value.setdefault(new, SortedList()).add(change.key)

    def compact(self, rv: int) -> None:
        """Forget history up to and including `rv` (etcd compaction)."""
        while self.history and self.history[0].rv <= rv:
            self.history.popleft()
        self.floor = max(self.floor, rv)

    def changes_since(self, rv: int) -> list[Change]:
        """Every change with a resourceVersion above `rv`, oldest first."""
        if rv < self.floor:
            raise Expired(rv, self.floor)
        start = bisect.bisect_right(self.history, rv, key=lambda c: c.rv)
        return list(self.history)[start:] if start < len(self.history) else []

    # -- reads at a revision --------------------------------------------------------------------------------

    def snapshot(self, rv: int, current_rv: int) -> Snapshot | None:
        """The state at `rv` as a difference from now (None: `rv` is now). Raises Expired past the history."""
        if rv >= current_rv:
            return None
        if rv < self.floor:
            raise Expired(rv, self.floor)
        snap = self._snapshots.get(rv)
        if snap is None:
            snap = self._snapshots[rv] = Snapshot(rv)
            while len(self._snapshots) > SNAPSHOT_LIMIT:
                self._snapshots.popitem(last=False)
        else:
            self._snapshots.move_to_end(rv)
        snap.catch_up(self, current_rv)
        return snap

    def scan(
        self, rv: int, current_rv: int, start: str = "", prefix: str = "", index_value: str | None = None
    ) -> Iterator[Stored]:
        """Objects as of revision `rv`, in key order, from keys > `start` (or all), restricted to `prefix`.

        With `index_value`, only the objects whose `index_field` had that value at `rv`, found through the index.
        """
        if index_value is not None and not self.index_field:
            raise ValueError(f"{self.res.plural} have no index")
        snap = self.snapshot(rv, current_rv)
        low: str | None = prefix or None
        low_inclusive = True
        if start and start >= prefix:
            low, low_inclusive = start, False
        high = prefix + "\U0010ffff" if prefix else None
        inclusive = (low_inclusive, True)
        if index_value is None:
            live: Iterator[str] = self.items.irange(low, high, inclusive=inclusive)
            extra = snap.ghosts if snap is not None else _NO_KEYS
        else:
            live = self.by_value.get(index_value, _NO_KEYS).irange(low, high, inclusive=inclusive)
            extra = snap.moved.get(index_value, _NO_KEYS) if snap is not None else _NO_KEYS
        # Both key sets are sorted and disjoint (`ghosts` are not live, `moved` are not under this value live).
        keys = heapq.merge(live, extra.irange(low, high, inclusive=inclusive)) if extra else live
        overrides = snap.overrides if snap is not None else {}
        field = self.index_field
        for key in keys:
            state = overrides[key] if key in overrides else self.items[key]
            if state is None or (index_value is not None and state.field(field) != index_value):
                continue
            yield state

    def count_after(self, rv: int, current_rv: int, last: str, prefix: str) -> int:
        """How many objects existed at `rv` with keys above `last` (under `prefix`), without walking them."""
        high = prefix + "\U0010ffff" if prefix else None

        def between(keys: SortedList | SortedDict) -> int:
            end: int = keys.bisect_right(high) if high else len(keys)
            begin: int = keys.bisect_right(last)
            return max(0, end - begin)

        count = between(self.items)
        snap = self.snapshot(rv, current_rv)
        if snap is not None:
            count += between(snap.ghosts) - between(snap.unborn)
        return count


def object_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def encode_continue(rv: int, last_key: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": last_key + "\x00"})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_continue(token: str) -> tuple[int, str]:
    """(resourceVersion, key to start after); raises ValueError for anything that is not a token of ours."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        rv = int(data["rv"])
        start = str(data["start"])
    except Exception as err:
        raise ValueError(str(err) or "malformed token") from err
    if not isinstance(data, dict) or data.get("v") != "meta.k8s.io/v1" or not start.endswith("\x00"):
        raise ValueError("continue key is not valid")
    return rv, start[:-1]


class Store:
    """Every bucket plus the global resourceVersion. Single-threaded: callers run on one event loop."""

    def __init__(self, resources: list[ResourceType], history_limit: int, start_rv: int = 1) -> None:
        self.rv = start_rv
        self.buckets: dict[str, Bucket] = {r.storage_name: Bucket(r, history_limit, start_rv) for r in resources}
        self.observers: list[Callable[[Bucket, Change], None]] = []

    def bucket(self, res: ResourceType) -> Bucket:
        return self.buckets[res.storage_name]

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, bucket: Bucket, obj: JSON) -> Stored:
        """Write `obj` (create or replace) at a new revision. Callers have checked preconditions."""
        meta = obj["metadata"]
        key = object_key(meta.get("namespace") or "", meta["name"])
        rv = self.next_rv()
        meta["resourceVersion"] = str(rv)
        stored = Stored(key, obj, rv, bucket.res.extract_fields)
        prev = bucket.items.get(key)
        bucket.items[key] = stored
        self._record(bucket, Change(MODIFIED if prev is not None else ADDED, rv, key, stored, prev))
        return stored

    def remove(self, bucket: Bucket, key: str) -> Stored:
        """Delete `key`; returns its last state stamped with the delete's revision (what DELETED carries)."""
        prev: Stored = bucket.items.pop(key)
        rv = self.next_rv()
        obj = prev.decode()
        obj["metadata"]["resourceVersion"] = str(rv)
        final = Stored(key, obj, rv, bucket.res.extract_fields)
        self._record(bucket, Change(DELETED, rv, key, final, prev))
        return final

    def _record(self, bucket: Bucket, change: Change) -> None:
        bucket.record(change)
        for observe in self.observers:
            observe(bucket, change)

    def compact(self, rv: int | None = None) -> int:
        """Compact every bucket's history up to `rv` (default: now). Returns the compaction revision."""
        target = self.rv if rv is None else rv
        for bucket in self.buckets.values():
            bucket.compact(target)
        return target

    def page(
        self,
        bucket: Bucket,
        *,
        rv: int,
        start: str = "",
        prefix: str = "",
        limit: int = 0,
        accept: Callable[[Stored], bool] | None = None,
        count_remaining: bool = True,
        index_value: str | None = None,
    ) -> Page:
        """One list page at revision `rv`. limit 0 = everything.

        `index_value` reads only the objects whose indexed field (pods: `spec.nodeName`) had that value, through
        the index; `accept` still decides. The page is the one a full scan with the same `accept` gives.
        """
        items: list[Stored] = []
        scan = bucket.scan(rv, self.rv, start, prefix, index_value)
        for stored in scan:
            if accept is not None and not accept(stored):
                continue
            if limit and len(items) == limit:
                token = encode_continue(rv, items[-1].key)
                remaining = None
                if count_remaining and index_value is None:
                    remaining = bucket.count_after(rv, self.rv, items[-1].key, prefix)
                return Page(items, rv, token, remaining)
            items.append(stored)
        return Page(items, rv, "", None)
