"""Correctness shown, not asserted: what each subscriber holds against the simulator's own ground truth.

`nodemeta.sim.truth.node_view` computes, from the simulator's store and independently of the collector, every
object a subscriber of a node must hold and its exact payload. `differences` compares a subscriber's table with it
and says what is missing, extra or different, in words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nodemeta.demo.subscribers import Held, Value
from nodemeta.sim.store import Store
from nodemeta.sim.truth import Payload, kinds_in, node_view

__all__ = ["Verdict", "differences", "expected"]

# Differences listed per subscriber (the counts cover all of them).
_LISTED = 5


def expected(store: Store, node: str, kinds: Iterable[str]) -> Held:
    """What a subscriber of `node` asking for `kinds` must hold now."""
    return {key: _value(p) for key, p in kinds_in(node_view(store, node), kinds).items()}


def _value(payload: Payload) -> Value:
    refs = None if payload.refs is None else {kind: tuple(uids) for kind, uids in payload.refs.items()}
    return (payload.meta, payload.status, refs)


@dataclass(frozen=True, slots=True)
class Verdict:
    objects: int
    missing: int = 0
    extra: int = 0
    different: int = 0
    details: tuple[str, ...] = ()

    @property
    def matches(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def describe(self) -> str:
        if self.matches:
            return f"matches the cluster ({self.objects} objects)"
        parts = [f"{n} {what}" for n, what in ((self.missing, "missing"), (self.extra, "extra"),
                                                (self.different, "different")) if n]  # fmt: skip
        return "DIFFERS from the cluster: " + ", ".join(parts)


def differences(held: Mapping[tuple[str, str], Value], truth: Mapping[tuple[str, str], Value]) -> Verdict:
    missing = sorted(truth.keys() - held.keys())
    extra = sorted(held.keys() - truth.keys())
    different = sorted(k for k in truth.keys() & held.keys() if truth[k] != held[k])
    details = [
        *(f"missing {kind} {uid}: {_name(truth[(kind, uid)])}" for kind, uid in missing),
        *(f"extra {kind} {uid}: {_name(held[(kind, uid)])}" for kind, uid in extra),
        *(f"different {kind} {uid}: holds {held[(kind, uid)]!r}, cluster has {truth[(kind, uid)]!r}"
          for kind, uid in different),
    ]  # fmt: skip
    return Verdict(len(truth), len(missing), len(extra), len(different), tuple(details[:_LISTED]))


def _name(value: Value) -> str:
    return value[0][:120]
