"""The store as a pure state machine: diffs on replace, upserts and deletes, listener order and isolation.

Includes a stateful property test against a naive model: whatever sequence of watch events and relists happens,
the notifications replayed onto an empty dict rebuild exactly the store's contents.
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from nodemeta.kube import BaseListener, ObjectMeta, PartialObjectMetadata, Store, object_key


def obj(name: str, rv: int, uid: str = "", ns: str = "default") -> PartialObjectMetadata:
    return PartialObjectMetadata(
        metadata=ObjectMeta(name=name, namespace=ns, uid=uid or f"uid-{name}", resource_version=str(rv))
    )


class Log(BaseListener[PartialObjectMetadata]):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def on_add(self, o: PartialObjectMetadata) -> None:
        self.events.append(("add", object_key(o), o.metadata.resource_version))

    def on_update(self, old: PartialObjectMetadata, new: PartialObjectMetadata) -> None:
        self.events.append(("update", object_key(new), new.metadata.resource_version))

    def on_delete(self, o: PartialObjectMetadata, tombstone: bool) -> None:
        self.events.append(("tombstone" if tombstone else "delete", object_key(o), o.metadata.resource_version))

    def on_synced(self) -> None:
        self.events.append(("synced", "", ""))


def test_replace_emits_tombstones_adds_and_updates() -> None:
    store: Store[PartialObjectMetadata] = Store()
    log = Log()
    store.add_listener(log)
    store.replace([obj("a", 1), obj("b", 2), obj("c", 3)], "3")
    assert store.has_synced
    log.events.clear()
    store.replace([obj("a", 1), obj("b", 5), obj("d", 6)], "6")
    assert log.events == [
        ("tombstone", "default/c", "3"),
        ("add", "default/d", "6"),
        ("update", "default/b", "5"),
    ]
    assert sorted(store.keys()) == ["default/a", "default/b", "default/d"]


def test_a_reused_name_with_a_new_uid_is_delete_then_add() -> None:
    store: Store[PartialObjectMetadata] = Store()
    store.replace([obj("web-0", 1, uid="old")], "1")
    log = Log()
    store.add_listener(log)
    store.replace([obj("web-0", 4, uid="new")], "4")
    store.add(obj("web-0", 6, uid="newer"))
    assert log.events == [
        ("tombstone", "default/web-0", "1"),
        ("add", "default/web-0", "4"),
        ("tombstone", "default/web-0", "4"),
        ("add", "default/web-0", "6"),
    ]


def test_watch_events_upsert_and_delete() -> None:
    store: Store[PartialObjectMetadata] = Store()
    log = Log()
    store.add_listener(log)
    store.replace([], "1")
    store.add(obj("a", 2))
    store.update(obj("a", 3))
    store.update(obj("b", 4))  # an update for an unknown key is an add
    store.delete(obj("a", 5))
    store.delete(obj("zzz", 6))  # unknown: nothing to tell
    assert log.events == [
        ("synced", "", ""),
        ("add", "default/a", "2"),
        ("update", "default/a", "3"),
        ("add", "default/b", "4"),
        ("delete", "default/a", "5"),
    ]
    assert store.get_by_name("default", "b") == obj("b", 4)
    assert len(store) == 1


def test_synced_is_told_once() -> None:
    store: Store[PartialObjectMetadata] = Store()
    log = Log()
    store.add_listener(log)
    store.replace([obj("a", 1)], "1")
    store.replace([obj("a", 1)], "2")
    assert [e for e in log.events if e[0] == "synced"] == [("synced", "", "")]
    assert log.events.index(("synced", "", "")) == 1  # after the initial adds


def test_a_failing_listener_does_not_stop_the_others() -> None:
    class Broken(BaseListener[PartialObjectMetadata]):
        def on_add(self, o: PartialObjectMetadata) -> None:
            raise RuntimeError("bug")

    store: Store[PartialObjectMetadata] = Store()
    log = Log()
    store.add_listener(Broken())
    store.add_listener(log)
    store.add(obj("a", 1))
    assert store.listener_errors == 1
    assert log.events == [("add", "default/a", "1")]
    assert "default/a" in store


def test_cluster_scoped_keys() -> None:
    assert object_key(obj("node-1", 1, ns="")) == "node-1"
    assert object_key(obj("p", 1, ns="kube-system")) == "kube-system/p"


class StoreMatchesItsNotifications(RuleBasedStateMachine):
    """Replaying the notifications onto a plain dict always rebuilds the store's contents."""

    def __init__(self) -> None:
        super().__init__()
        self.store: Store[PartialObjectMetadata] = Store()
        self.replayed: dict[str, PartialObjectMetadata] = {}
        self.rv = 0
        replayed = self.replayed

        class Replay(BaseListener[PartialObjectMetadata]):
            def on_add(self, o: PartialObjectMetadata) -> None:
                assert object_key(o) not in replayed
                replayed[object_key(o)] = o

            def on_update(self, old: PartialObjectMetadata, new: PartialObjectMetadata) -> None:
                assert replayed[object_key(new)] == old
                replayed[object_key(new)] = new

            def on_delete(self, o: PartialObjectMetadata, tombstone: bool) -> None:
                del replayed[object_key(o)]

        self.store.add_listener(Replay())

    def _next(self) -> int:
        self.rv += 1
        return self.rv

    @rule(name=st.sampled_from("abcde"), uid=st.sampled_from(["1", "2"]))
    def upsert(self, name: str, uid: str) -> None:
        self.store.update(obj(name, self._next(), uid=name + uid))

    @rule(name=st.sampled_from("abcde"))
    def delete(self, name: str) -> None:
        self.store.delete(obj(name, self._next()))

    @rule(names=st.sets(st.sampled_from("abcde")), uid=st.sampled_from(["1", "2"]), bump=st.booleans())
    def relist(self, names: set[str], uid: str, bump: bool) -> None:
        objects = []
        for name in sorted(names):
            current = self.store.get(f"default/{name}")
            if current is not None and not bump:
                objects.append(current)
            else:
                objects.append(obj(name, self._next(), uid=name + uid))
        self.store.replace(objects, str(self._next()))

    @invariant()
    def same_contents(self) -> None:
        assert self.replayed == {object_key(o): o for o in self.store.list()}


StoreMatchesItsNotifications.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestStoreStateMachine = StoreMatchesItsNotifications.TestCase
