"""The store against a naive model that keeps a full copy of every revision."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nodemeta.sim.resources import lookup
from nodemeta.sim.store import (
    ADDED,
    DELETED,
    MODIFIED,
    Change,
    Expired,
    Store,
    decode_continue,
    encode_continue,
)

PODS = lookup("", "v1", "pods")
assert PODS is not None

NAMES = st.sampled_from([f"p{i}" for i in range(8)])
NAMESPACES = st.sampled_from(["a", "b"])


def pod(ns: str, name: str, node: str, gen: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "labels": {"gen": str(gen)}},
        "spec": {"nodeName": node},
    }


class Recorder:
    def __init__(self) -> None:
        self.changes: list[Change] = []

    def offer(self, change: Change) -> None:
        self.changes.append(change)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = Store([PODS], history_limit=12)
        self.bucket = self.store.bucket(PODS)
        self.model: dict[str, dict[str, Any]] = {}
        self.snapshots: dict[int, dict[str, dict[str, Any]]] = {self.store.rv: {}}
        self.gen = 0
        self.everyone = Recorder()
        self.on_node = Recorder()
        self.bucket.subscribe(self.everyone)
        self.bucket.subscribe(self.on_node, "n1")

    def _snap(self) -> None:
        self.snapshots[self.store.rv] = {k: dict(v) for k, v in self.model.items()}

    @rule(ns=NAMESPACES, name=NAMES, node=st.sampled_from(["n1", "n2", ""]))
    def put(self, ns: str, name: str, node: str) -> None:
        self.gen += 1
        obj = pod(ns, name, node, self.gen)
        stored = self.store.put(self.bucket, obj)
        self.model[f"{ns}/{name}"] = stored.decode()
        self._snap()

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.model)))
        final = self.store.remove(self.bucket, key)
        assert final.rv == self.store.rv
        assert final.decode()["metadata"]["resourceVersion"] == str(final.rv)
        del self.model[key]
        self._snap()

    @rule(data=st.data(), limit=st.integers(1, 4), ns=st.sampled_from(["", "a"]))
    def paginate_at_old_revision(self, data: st.DataObject, limit: int, ns: str) -> None:
        rv = data.draw(st.sampled_from(sorted(self.snapshots)))
        expected = sorted((k, v) for k, v in self.snapshots[rv].items() if not ns or k.startswith(ns + "/"))
        prefix = f"{ns}/" if ns else ""
        got: list[tuple[str, dict[str, Any]]] = []
        start = ""
        try:
            while True:
                page = self.store.page(self.bucket, rv=rv, start=start, prefix=prefix, limit=limit)
                got += [(s.key, s.decode()) for s in page.items]
                if not page.continue_token:
                    break
                assert page.remaining == len(expected) - len(got)
                token_rv, start = decode_continue(page.continue_token)
                assert token_rv == rv
        except Expired:
            assert rv < self.bucket.floor
            return
        assert rv >= self.bucket.floor
        assert got == expected

    @invariant()
    def live_state_matches(self) -> None:
        assert {s.key: s.decode() for s in self.bucket.items.values()} == self.model

    @invariant()
    def fan_out_is_complete_and_indexed(self) -> None:
        assert [c.rv for c in self.everyone.changes] == sorted(c.rv for c in self.everyone.changes)
        relevant = [
            c
            for c in self.everyone.changes
            if c.obj.field("spec.nodeName") == "n1" or (c.prev is not None and c.prev.field("spec.nodeName") == "n1")
        ]
        assert self.on_node.changes == relevant

    @invariant()
    def history_replay(self) -> None:
        for rv in (self.bucket.floor, self.store.rv):
            replay = self.bucket.changes_since(rv)
            assert [c.rv for c in replay] == [c.rv for c in self.everyone.changes if c.rv > rv]


StoreMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_store_machine = StoreMachine.TestCase


def test_change_types_and_delete_carries_last_state() -> None:
    store = Store([PODS], history_limit=10)
    bucket = store.bucket(PODS)
    store.put(bucket, pod("a", "x", "n1", 1))
    store.put(bucket, pod("a", "x", "n2", 2))
    final = store.remove(bucket, "a/x")
    kinds = [c.type for c in bucket.changes_since(1)]
    assert kinds == [ADDED, MODIFIED, DELETED]
    assert final.decode()["spec"]["nodeName"] == "n2"
    assert final.labels == {"gen": "2"}


def test_compaction_makes_old_revisions_expire() -> None:
    store = Store([PODS], history_limit=10)
    bucket = store.bucket(PODS)
    for i in range(5):
        store.put(bucket, pod("a", f"x{i}", "", i))
    store.compact()
    with pytest.raises(Expired) as info:
        bucket.changes_since(3)
    assert str(info.value) == f"too old resource version: 3 ({store.rv})"
    assert bucket.changes_since(store.rv) == []


@pytest.mark.parametrize("token", ["", "!!", "e30", encode_continue(5, "a/b")[:-3] + "xyz"])
def test_bad_continue_tokens_are_rejected(token: str) -> None:
    with pytest.raises(ValueError):
        decode_continue(token)


def test_continue_token_round_trip() -> None:
    assert decode_continue(encode_continue(42, "ns/name")) == (42, "ns/name")
