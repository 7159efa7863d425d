"""The runtime mirror: the runtime's pod sandboxes and containers, cached, and what to ask the runtime next. Pure.

The I/O loop (`nodemeta.agent.runtime_sync`) lists, feeds the rows to `relist`, asks the runtime for the statuses
`relist` says it needs, and feeds them back with `put_sandbox` / `put_container`; events go through `on_event` the
same way. Every method returns the changes it made (created, updated, deleted), which the agent fans out.

Status calls are spent only where a listing cannot tell what changed (a runtime's list rows carry id, state and
sandbox id, not labels, IPs or pids):

* a new id: one status call (verbose: labels, annotations, image, IPs, CNI result, privileged);
* a container seen CREATED and now RUNNING: one more, for its pid and start time;
* any other state change (RUNNING -> EXITED, sandbox READY -> NOTREADY): applied from the row, no call;
* an id that vanished from a listing: deleted (a tombstone change), no call.

So a container costs at most two status calls in its lifetime beyond the shared list calls, one when it is first
listed already running. A relist only deletes ids that were known before the listing began (`mark`), so an object
an event added while the list call was in flight is not taken for a deleted one.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nodemeta.agent.settings import TruncateSettings
from nodemeta.agent.truncate import truncate_map
from nodemeta.cri.model import (
    Container,
    ContainerEvent,
    ContainerEventType,
    ContainerState,
    Listed,
    Sandbox,
    SandboxState,
)

__all__ = ["SHORT_ID", "Action", "Fetches", "MirrorChange", "RuntimeMirror"]

# Container ids are also looked up by their first 12 characters (what `docker ps`, crictl and Falco show).
SHORT_ID = 12


class Action(enum.StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class MirrorChange:
    action: Action
    # The object after the change; for a deletion, the last state known.
    obj: Sandbox | Container

    @property
    def is_sandbox(self) -> bool:
        return isinstance(self.obj, Sandbox)


@dataclass(frozen=True, slots=True)
class Fetches:
    """Status calls to make: verbose PodSandboxStatus and ContainerStatus by id."""

    sandboxes: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.sandboxes or self.containers)


class RuntimeMirror:
    """The sandboxes and containers the runtime reported, indexed for lookups by id, 12-char prefix and pod uid."""

    def __init__(self, truncate: TruncateSettings | None = None) -> None:
        self._truncate = truncate or TruncateSettings()
        self.sandboxes: dict[str, Sandbox] = {}
        self.containers: dict[str, Container] = {}
        self._by_short: dict[str, set[str]] = {}
        self._by_sandbox: dict[str, set[str]] = {}
        self._sandboxes_by_uid: dict[str, set[str]] = {}
        # When each id was added, in `mark()` units.
        self._added: dict[str, int] = {}
        self._seq = 0
        self._relisted = False

    # -- reading ------------------------------------------------------------------------------------------------

    @property
    def relisted(self) -> bool:
        """At least one full listing has been applied."""
        return self._relisted

    def resolve(self, key: str) -> Sandbox | Container | None:
        """A container or sandbox by full id or unambiguous prefix of at least 12 characters."""
        found = self.containers.get(key) or self.sandboxes.get(key)
        if found is not None or len(key) < SHORT_ID or len(key) >= 64:
            return found
        ids = [i for i in self._by_short.get(key[:SHORT_ID], ()) if i.startswith(key)]
        if len(ids) != 1:
            return None
        return self.containers.get(ids[0]) or self.sandboxes.get(ids[0])

    def containers_of(self, sandbox_id: str) -> list[Container]:
        return sorted(
            (self.containers[i] for i in self._by_sandbox.get(sandbox_id, ()) if i in self.containers),
            key=lambda c: (c.name, c.id),
        )

    def sandboxes_of_pod(self, pod_uid: str) -> list[Sandbox]:
        """The pod's sandboxes, newest first (a restarted pod has a new sandbox; the old one lingers a while)."""
        found = (self.sandboxes[i] for i in self._sandboxes_by_uid.get(pod_uid, ()) if i in self.sandboxes)
        return sorted(found, key=lambda s: (s.state != SandboxState.READY, -s.created_at, s.id))

    # -- listing ------------------------------------------------------------------------------------------------

    def mark(self) -> int:
        """Call before listing; pass the result to `relist`."""
        self._seq += 1
        return self._seq

    def relist(
        self, sandboxes: Sequence[Listed], containers: Sequence[Listed], mark: int
    ) -> tuple[list[MirrorChange], Fetches]:
        """Apply a full listing: delete what vanished, apply state changes, and say which statuses to fetch."""
        changes: list[MirrorChange] = []
        listed_sandboxes = {row.id: row for row in sandboxes}
        listed_containers = {row.id: row for row in containers}
        for cid in [c for c in self.containers if c not in listed_containers and self._added[c] < mark]:
            changes.extend(self.remove(cid))
        for sid in [s for s in self.sandboxes if s not in listed_sandboxes and self._added[s] < mark]:
            changes.extend(self.remove(sid))
        fetch_sandboxes: list[str] = []
        fetch_containers: list[str] = []
        for row in listed_sandboxes.values():
            known = self.sandboxes.get(row.id)
            if known is None:
                fetch_sandboxes.append(row.id)
            elif known.state != row.state:
                changes.extend(self._store(dataclasses.replace(known, state=SandboxState(_sandbox_state(row.state)))))
        for row in listed_containers.values():
            known_c = self.containers.get(row.id)
            if known_c is None:
                fetch_containers.append(row.id)
            elif known_c.state != row.state:
                state = ContainerState(_container_state(row.state))
                if state == ContainerState.RUNNING and known_c.state == ContainerState.CREATED:
                    fetch_containers.append(row.id)  # its pid and start time
                else:
                    changes.extend(self._store(_with_state(known_c, state)))
            if row.sandbox_id and row.sandbox_id not in self.sandboxes and row.sandbox_id not in listed_sandboxes:
                fetch_sandboxes.append(row.sandbox_id)
        self._relisted = True
        return changes, Fetches(tuple(dict.fromkeys(fetch_sandboxes)), tuple(fetch_containers))

    # -- statuses and events ------------------------------------------------------------------------------------

    def put_sandbox(self, sandbox: Sandbox) -> list[MirrorChange]:
        return self._store(sandbox)

    def put_container(self, container: Container) -> list[MirrorChange]:
        return self._store(container)

    def remove(self, object_id: str) -> list[MirrorChange]:
        """Forget a sandbox or container (deleted, or the runtime says it does not exist)."""
        old: Sandbox | Container | None = self.containers.pop(object_id, None)
        if old is None:
            old = self.sandboxes.pop(object_id, None)
        if old is None:
            return []
        self._added.pop(object_id, None)
        _unlink(self._by_short, object_id[:SHORT_ID], object_id)
        if isinstance(old, Container):
            _unlink(self._by_sandbox, old.sandbox_id, object_id)
        else:
            _unlink(self._sandboxes_by_uid, old.uid, object_id)
        return [MirrorChange(Action.DELETED, old)]

    def on_event(self, event: ContainerEvent) -> tuple[list[MirrorChange], Fetches]:
        """Apply one GetContainerEvents message. Sandboxes announce themselves as containers whose id is the
        sandbox's own; a CREATED or STARTED event asks for the verbose status (event payloads are not verbose:
        no pid, CNI result or privileged flag), STOPPED is applied from the event, DELETED removes."""
        cid = event.container_id
        kind = event.type
        if cid in self.sandboxes or (event.sandbox is not None and event.sandbox.id == cid):
            if kind == ContainerEventType.DELETED:
                return self.remove(cid), Fetches()
            known = self.sandboxes.get(cid)
            if known is None:
                return [], Fetches(sandboxes=(cid,))
            if kind == ContainerEventType.STOPPED and known.state != SandboxState.NOTREADY:
                return self._store(dataclasses.replace(known, state=SandboxState.NOTREADY)), Fetches()
            return [], Fetches()
        fetch_sandbox: tuple[str, ...] = ()
        if event.sandbox is not None and event.sandbox.id and event.sandbox.id not in self.sandboxes:
            fetch_sandbox = (event.sandbox.id,)
        if kind == ContainerEventType.DELETED:
            return self.remove(cid), Fetches(sandboxes=fetch_sandbox)
        known_c = self.containers.get(cid)
        if kind == ContainerEventType.STOPPED and known_c is not None:
            reported = next((c for c in event.containers if c.id == cid), None)
            stopped = _with_state(known_c, ContainerState.EXITED)
            if reported is not None:
                stopped = dataclasses.replace(stopped, finished_at=reported.finished_at, exit_code=reported.exit_code)
            return self._store(stopped), Fetches(sandboxes=fetch_sandbox)
        if kind == ContainerEventType.CREATED and known_c is not None:
            return [], Fetches(sandboxes=fetch_sandbox)
        if kind == ContainerEventType.STARTED and known_c is not None and known_c.state == ContainerState.RUNNING:
            return [], Fetches(sandboxes=fetch_sandbox)  # a relist already saw it running and fetched its pid
        return [], Fetches(sandboxes=fetch_sandbox, containers=(cid,))

    # -- internals ----------------------------------------------------------------------------------------------

    def _store(self, obj: Sandbox | Container) -> list[MirrorChange]:
        obj = self._bounded(obj)
        table: Mapping[str, Sandbox | Container]
        table = self.sandboxes if isinstance(obj, Sandbox) else self.containers
        old = table.get(obj.id)
        if old == obj:
            return []
        if isinstance(obj, Sandbox):
            self.sandboxes[obj.id] = obj
            if isinstance(old, Sandbox) and old.uid != obj.uid:
                _unlink(self._sandboxes_by_uid, old.uid, obj.id)
            self._sandboxes_by_uid.setdefault(obj.uid, set()).add(obj.id)
        else:
            self.containers[obj.id] = obj
            if isinstance(old, Container) and old.sandbox_id != obj.sandbox_id:
                _unlink(self._by_sandbox, old.sandbox_id, obj.id)
            self._by_sandbox.setdefault(obj.sandbox_id, set()).add(obj.id)
        if old is None:
            self._added[obj.id] = self._seq
            self._by_short.setdefault(obj.id[:SHORT_ID], set()).add(obj.id)
            return [MirrorChange(Action.CREATED, obj)]
        return [MirrorChange(Action.UPDATED, obj)]

    def _bounded(self, obj: Sandbox | Container) -> Sandbox | Container:
        labels = truncate_map(obj.labels, self._truncate)
        annotations = truncate_map(obj.annotations, self._truncate)
        if labels is obj.labels and annotations is obj.annotations:
            return obj
        return dataclasses.replace(obj, labels=labels, annotations=annotations)


def _with_state(container: Container, state: ContainerState) -> Container:
    """A container in a new state known from a listing; a container that is not running has no process."""
    pid = container.pid if state == ContainerState.RUNNING else 0
    return dataclasses.replace(container, state=state, pid=pid)


def _sandbox_state(value: int) -> int:
    return value if value in (SandboxState.READY, SandboxState.NOTREADY) else SandboxState.NOTREADY


def _container_state(value: int) -> int:
    return value if 0 <= value <= ContainerState.UNKNOWN else ContainerState.UNKNOWN


def _unlink(index: dict[str, set[str]], key: str, member: str) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(member)
        if not group:
            del index[key]
