"""A model subscriber: applies the index's deltas the way the Falco plugin does, and checks each one is legal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nodemeta.collector.model import Reason
from nodemeta.collector.relations import Delta
from nodemeta.collector.render import Payload

Comparable = dict[tuple[str, str], tuple[str, str | None, dict[str, tuple[str, ...]] | None]]


class Holder:
    """Create/Update overwrite (an Update only for a held object whose payload changed), Delete removes."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.objects: dict[tuple[str, str], Payload] = {}

    def apply(self, deltas: Iterable[Delta]) -> None:
        for delta in deltas:
            if delta.node != self.node:
                continue
            key = (delta.kind, delta.uid)
            if delta.reason is Reason.DELETE:
                assert delta.payload is None, delta
                assert key in self.objects, f"Delete for an object not held: {delta}"
                del self.objects[key]
                continue
            assert delta.payload is not None and (delta.payload.kind, delta.payload.uid) == key, delta
            if delta.reason is Reason.CREATE:
                assert key not in self.objects, f"Create for an object already held: {delta}"
            else:
                assert key in self.objects, f"Update for an object not held: {delta}"
                assert self.objects[key] != delta.payload, f"Update with an unchanged payload: {delta}"
            self.objects[key] = delta.payload

    def comparable(self) -> Comparable:
        return comparable(self.objects.values())


def comparable(payloads: Iterable[Any]) -> Comparable:
    """Payloads (the collector's or the ground truth's) as plain values: (kind, uid) -> (meta, status, refs)."""
    out: Comparable = {}
    for p in payloads:
        refs: Mapping[str, Any] | None = p.refs
        if refs is not None and not isinstance(refs, Mapping):
            refs = dict(refs)
        out[(p.kind, p.uid)] = (p.meta, p.status, {k: tuple(v) for k, v in refs.items()} if refs is not None else None)
    return out
