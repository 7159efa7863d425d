"""The informer cache: key -> latest object, written by one reflector, read by anyone. Pure: no I/O, no asyncio.

The store is the reflector's sink. Every write updates the cache first and only then tells the listeners, so a
listener that looks something up in the store sees the state the notification describes.

`replace` (after every LIST) diffs the new list against the cache and emits what changed: DELETE for keys that
vanished (tombstones: the deletion happened while nobody was watching, and the object passed is the last state this
cache knew), ADD for new keys, UPDATE where the resourceVersion changed. Nothing downstream has to infer a deletion
from absence. A key whose uid changed is a different object that reuses a name (a StatefulSet pod recreated during
the gap), so it is reported as DELETE of the old object and ADD of the new one, never as an update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Generic, Protocol, TypeVar

import structlog

from nodemeta.kube.models import KubeObject

__all__ = ["BaseListener", "Listener", "Store", "object_key"]

log = structlog.get_logger("nodemeta.kube.store")

T = TypeVar("T", bound=KubeObject)
T_contra = TypeVar("T_contra", bound=KubeObject, contravariant=True)


def object_key(obj: KubeObject) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects (client-go's MetaNamespaceKeyFunc)."""
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name


class Listener(Protocol[T_contra]):
    """Told about every change, synchronously, after the cache holds it. Must not block or await."""

    def on_add(self, obj: T_contra) -> None: ...

    def on_update(self, old: T_contra, new: T_contra) -> None: ...

    def on_delete(self, obj: T_contra, tombstone: bool) -> None:
        """`tombstone` is True when the deletion was inferred by a relist: `obj` is the last state known here."""
        ...

    def on_synced(self) -> None:
        """The first full list is in the cache; later relists do not call this again."""
        ...


class BaseListener(Generic[T]):
    """A listener that ignores everything; subclass it and override what you need."""

    def on_add(self, obj: T) -> None:
        pass

    def on_update(self, old: T, new: T) -> None:
        pass

    def on_delete(self, obj: T, tombstone: bool) -> None:
        pass

    def on_synced(self) -> None:
        pass


class Store(Generic[T]):
    """Objects of one resource by key. Returned objects are shared and must be treated as read-only."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._items: dict[str, T] = {}
        self._listeners: list[Listener[T]] = []
        self._synced = False
        # Exceptions raised by listeners (each is logged); a failing listener never stops the reflector.
        self.listener_errors = 0

    # -- reading ----------------------------------------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        """True once the first full list has been stored."""
        return self._synced

    def get(self, key: str) -> T | None:
        return self._items.get(key)

    def get_by_name(self, namespace: str, name: str) -> T | None:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def keys(self) -> list[str]:
        return list(self._items)

    def list(self) -> list[T]:
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items.values()))

    # -- listeners --------------------------------------------------------------------------------------------------

    def add_listener(self, listener: Listener[T]) -> None:
        """Register `listener`. It hears about changes from now on; read the store for what is already there."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener[T]) -> None:
        self._listeners.remove(listener)

    # -- the sink: written by the reflector -------------------------------------------------------------------------

    def replace(self, objects: Iterable[T], resource_version: str) -> None:
        """Make the cache exactly `objects` (a full list at `resource_version`) and emit the differences."""
        new: dict[str, T] = {object_key(obj): obj for obj in objects}
        old = self._items
        vanished: list[T] = [obj for key, obj in old.items() if key not in new]
        added: list[T] = []
        updated: list[tuple[T, T]] = []
        for key, obj in new.items():
            prev = old.get(key)
            if prev is None:
                added.append(obj)
            elif prev.metadata.uid != obj.metadata.uid:
                vanished.append(prev)
                added.append(obj)
            elif prev.metadata.resource_version != obj.metadata.resource_version:
                updated.append((prev, obj))
        self._items = new
        first = not self._synced
        self._synced = True
        log.debug(
            "store replaced",
            store=self.name,
            resource_version=resource_version,
            objects=len(new),
            deleted=len(vanished),
            added=len(added),
            updated=len(updated),
        )
        for listener in list(self._listeners):
            for gone in vanished:
                self._safely(listener, partial(listener.on_delete, gone, True))
            for obj in added:
                self._safely(listener, partial(listener.on_add, obj))
            for prev, obj in updated:
                self._safely(listener, partial(listener.on_update, prev, obj))
            if first:
                self._safely(listener, listener.on_synced)

    def add(self, obj: T) -> None:
        """A watch ADDED event."""
        self._upsert(obj)

    def update(self, obj: T) -> None:
        """A watch MODIFIED event."""
        self._upsert(obj)

    def delete(self, obj: T) -> None:
        """A watch DELETED event; `obj` is the object's final state. Unknown keys are ignored."""
        prev = self._items.pop(object_key(obj), None)
        if prev is None:
            return
        for listener in list(self._listeners):
            self._safely(listener, partial(listener.on_delete, obj, False))

    def _upsert(self, obj: T) -> None:
        key = object_key(obj)
        prev = self._items.get(key)
        self._items[key] = obj
        for listener in list(self._listeners):
            if prev is None:
                self._safely(listener, partial(listener.on_add, obj))
            elif prev.metadata.uid != obj.metadata.uid:
                self._safely(listener, partial(listener.on_delete, prev, True))
                self._safely(listener, partial(listener.on_add, obj))
            else:
                self._safely(listener, partial(listener.on_update, prev, obj))

    def _safely(self, listener: Listener[T], call: Callable[[], None]) -> None:
        try:
            call()
        except Exception:
            self.listener_errors += 1
            log.exception("listener failed", store=self.name, listener=type(listener).__name__)
