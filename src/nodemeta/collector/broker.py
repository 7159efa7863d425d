"""The broker: per-subscriber bounded queues between the relation index and the metadata streams.

The application feeds every informer event to `Broker.apply` / `Broker.delete`, synchronously and in event order.
The index turns it into per-node deltas, and the broker appends each delta to the queue of every subscription of
that node that asked for its kind: work per change is proportional to the subscribers of the nodes it touches, never
to all subscribers. Servicers drain their subscription with `Subscription.next_events`.

Back-pressure: a queue holds at most `queue_limit` live deltas (the initial snapshot does not count). A subscriber
that falls that far behind is ended at once (`SubscriptionEnded("overflow")`, which the servicers turn into
UNAVAILABLE) and resyncs on reconnect; nobody else waits for it.

Subscribing is synchronous: the snapshot is taken from the index and the subscription registered without an await
in between, so the snapshot and the live deltas after it join without a gap or a duplicate.

Two kinds of subscription, one per protocol:

* Plain (the Falco contract). The k8smeta plugin never clears its tables on reconnect, so the broker remembers, per
  (node, kinds), which objects an ended stream may have left at its client, for `grace_period`. A resubscribe within
  that time gets the full snapshot as Creates (Create and Update both overwrite at that client) followed by a Delete
  for each remembered object that is no longer relevant.
* Resumable (nodemeta.v1). Each stream belongs to a session. Every message the servicer sends is recorded as one
  revision, with what it changed (an undo record), so after a reconnect naming the last revision the client applied
  completely, the broker rewinds the session to that revision and sends only the difference to the current view.
  An unknown, expired or unreachable session gets a new session and a full snapshot flagged `reset`.

Encoded event bodies are shared: `Broker.bodies` encodes each rendered payload once, for every subscriber and both
protocols.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from nodemeta.api.wire import encode_body
from nodemeta.collector.model import POD, ObjectInfo, ObjectRef, Reason
from nodemeta.collector.relations import Delta, RelationIndex, view_changes
from nodemeta.collector.render import Payload, Refs

__all__ = [
    "Broker",
    "BrokerObserver",
    "BrokerSettings",
    "EventBodies",
    "Subscription",
    "SubscriptionEnded",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerSettings:
    """Limits of the broker. Every number bounds memory or latency per subscriber."""

    # Live deltas buffered per subscriber before it is ended (UNAVAILABLE) and must resync. A node holds a few
    # hundred objects; 10k pending changes means the client is minutes behind or gone, and a resync is cheaper.
    queue_limit: int = 10_000
    # nodemeta stream: events per EventBatch at most. grpc.aio costs 25-60 us of CPU per message, a batched event a
    # few us: 256 amortises the message cost to nothing while keeping each write short.
    batch_max_events: int = 256
    # ... and bytes per batch (the Falco plugin's receive limit is 4 MiB; stay far below for any client).
    batch_max_bytes: int = 1 << 20
    # How long a live batch waits to fill after its first event: a rollout touches many objects within
    # milliseconds, and one message for all of them beats one per change.
    batch_delay: float = 0.005
    # How long the broker remembers what a plain stream may have left at its client (Deletes on a quick
    # resubscribe), and how long a detached nodemeta session can be resumed. The Falco plugin's reconnect backoff
    # reaches 120 s; 300 s covers it with margin.
    grace_period: float = 300.0
    # Undo records kept per session (one per event sent): how far back a resume can reach. Older resumes get a
    # full snapshot with `reset`.
    session_history: int = 10_000
    # Detached sessions kept at most (the oldest is forgotten first); each holds a copy of its node's view.
    max_detached_sessions: int = 8_192


class BrokerObserver(Protocol):
    """What the broker reports, for metrics."""

    def queue_add(self, node: str, reason: str, kind: str) -> None:
        """A delta was queued for one subscriber of `node`."""

    def dispatched(self, kind: str, reason: str, count: int) -> None:
        """`count` events of this kind and reason are being written to one stream."""

    def queue_wait(self, seconds: float) -> None:
        """How long the oldest of the deltas just taken from a queue waited there (one observation per take, not
        per delta: a histogram observation costs about as much as queueing the delta)."""

    def subscriber_ended(self, node: str, why: str) -> None:
        """A subscription ended: "unsubscribed" (the stream went away), "overflow", "shutdown" or "superseded"
        (a newer stream resumed the same session)."""


class SubscriptionEnded(Exception):
    """The broker ended the subscription; `reason` is "overflow", "shutdown", "superseded" or "unsubscribed"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- encoded bodies ----------------------------------------------------------------------------------------------


class EventBodies:
    """Event bodies (protobuf fields 2 to 7, shared by both protocols), encoded once per rendered payload of the
    objects many nodes share.

    The index hands the same Payload object to every node and subscriber holding an object. The body of a
    Namespace, owner or Service (held by many nodes) is encoded on first use and kept on the payload itself
    (`Payload.encoded`): a lookup is an attribute read, and the body goes when the last holder of the payload lets
    it go. A Pod is held by its own node only, so its body (about 15 us to encode) is encoded for each stream that
    sends it and not kept: keeping it would cost about 430 bytes per pod of every subscribed node, for a second
    stream on the same node that rarely exists (after a restart every body is new anyway).
    """

    __slots__ = ("_refs",)

    def __init__(self) -> None:
        # The encoded refs field (7, the last of a body) of each refs tuple: the index shares one tuple among the
        # pods of a ReplicaSet, and the refs are most of the work of encoding a pod.
        self._refs: dict[Refs, bytes] = {}

    def body(self, delta: Delta) -> bytes:
        payload = delta.payload
        if payload is None:
            return encode_body(delta.kind, delta.uid)
        body = payload.encoded
        if body is not None:
            return body
        refs = payload.refs
        if refs is None:
            body = encode_body(payload.kind, payload.uid, payload.meta, payload.status)
        else:
            tail = self._refs.get(refs)
            if tail is None:
                # Fields are written in ascending order, so the refs field is what the full body adds at its end.
                tail = encode_body(payload.kind, payload.uid, refs=refs)[len(encode_body(payload.kind, payload.uid)) :]
                if len(self._refs) >= _REFS_CACHE_LIMIT:
                    self._refs.clear()
                self._refs[refs] = tail
            body = encode_body(payload.kind, payload.uid, payload.meta, payload.status) + tail
        if payload.kind != POD:
            # Payload is frozen; `encoded` is a memo outside its value (compare=False), written once.
            object.__setattr__(payload, "encoded", body)
        return body


# Encoded refs fields kept at most (a few per ReplicaSet); the cache is emptied when full.
_REFS_CACHE_LIMIT = 1 << 16


# -- sessions (nodemeta.v1) -----------------------------------------------------------------------------------------

# One sent message: (its revision, the revision before it, [(ref, what the client held before)], events). The undo
# list is None when the client held nothing before (a session's first message, the whole snapshot): rewinding it
# empties `held`, and the largest record costs no memory.
_Undo = list[tuple[ObjectRef, Payload | None]]
_Record = tuple[int, int, _Undo | None, int]


class _Session:
    """What a nodemeta.v1 client holds after each message sent to it, as a chain of undo records."""

    __slots__ = ("expiry", "head", "held", "history", "id", "journal", "kinds", "last", "node", "stream", "undo_size")

    def __init__(self, session_id: str, node: str, kinds: frozenset[str], history: int) -> None:
        self.id = session_id
        self.node = node
        self.kinds = kinds
        self.history = history
        # The client's objects after the message with revision `head`.
        self.held: dict[ObjectRef, Payload] = {}
        self.head = 0
        # The highest revision ever handed out: revisions never repeat within a session, even after a rewind.
        self.last = 0
        self.journal: deque[_Record] = deque()
        self.undo_size = 0
        self.stream: Subscription | None = None
        self.expiry: asyncio.TimerHandle | None = None

    def record(self, deltas: list[Delta]) -> int:
        held = self.held
        undo: _Undo | None
        if held:
            undo = []
            for delta in deltas:
                payload = delta.payload
                ref = payload.ref if payload is not None else ObjectRef(delta.kind, delta.uid)
                undo.append((ref, held.get(ref)))
                if payload is None:
                    held.pop(ref, None)
                else:
                    held[ref] = payload
        else:
            undo = None
            for delta in deltas:
                payload = delta.payload
                if payload is not None:
                    held[payload.ref] = payload
                else:
                    held.pop(ObjectRef(delta.kind, delta.uid), None)
        self.last += 1
        self.journal.append((self.last, self.head, undo, len(deltas)))
        self.head = self.last
        self.undo_size += len(deltas)
        while self.undo_size > self.history and len(self.journal) > 1:
            self.undo_size -= self.journal.popleft()[3]
        return self.last

    def rewind(self, revision: int) -> bool:
        """Make `held` what the client held after message `revision`; False when that state is out of reach."""
        steps = 0
        at = self.head
        for rev, before, _undo, _size in reversed(self.journal):
            if at == revision or rev != at:
                break
            at = before
            steps += 1
        if at != revision:
            return False
        for _ in range(steps):
            _rev, before, undo, size = self.journal.pop()
            self.undo_size -= size
            if undo is None:
                self.held.clear()
            else:
                for ref, payload in reversed(undo):
                    if payload is None:
                        self.held.pop(ref, None)
                    else:
                        self.held[ref] = payload
            self.head = before
        return True


class _Memory:
    """Objects a plain stream of (node, kinds) may have left at its client, forgotten after the grace period."""

    __slots__ = ("refs", "timer")

    def __init__(self) -> None:
        self.refs: dict[ObjectRef, None] = {}
        self.timer: asyncio.TimerHandle | None = None


# -- subscriptions --------------------------------------------------------------------------------------------------


class Subscription:
    """One stream's view of the broker: the deltas for its node and kinds, in order, in a bounded queue.

    A servicer loops: `deltas = await next_events(n)`, `revision = sending(deltas)`, write them. `take` returns
    what is queued without waiting (to fill a batch). The first `initial_size` deltas are the initial sync (the
    snapshot, or the catch-up after a resume); `reset` says the client must drop what it holds first.
    """

    __slots__ = (
        "_broker",
        "_deleting",
        "_ended",
        "_held",
        "_queue",
        "_session",
        "_snapshot_left",
        "_stamps",
        "_task",
        "_waiting",
        "_wakeup",
        "initial_size",
        "kinds",
        "node",
        "reset",
        "resume_revision",
        "session_id",
    )

    def __init__(self, broker: Broker, node: str, kinds: frozenset[str]) -> None:
        self._broker = broker
        self.node = node
        self.kinds = kinds
        self.session_id = ""
        self.reset = False
        # The revision the session resumed from (0 for a new session or a plain stream).
        self.resume_revision = 0
        self.initial_size = 0
        self._queue: deque[Delta] = deque()
        # When each queued delta was queued (time.monotonic), for the queue-wait metric.
        self._stamps: deque[float] = deque()
        self._snapshot_left = 0
        self._wakeup = asyncio.Event()
        self._waiting = False
        self._ended: str | None = None
        self._task: asyncio.Task[object] | None = None
        self._session: _Session | None = None
        # Plain streams: objects the client may hold; Deletes being sent leave it at the next `sending`.
        self._held: dict[ObjectRef, None] = {}
        self._deleting: dict[ObjectRef, None] = {}

    # -- for servicers ------------------------------------------------------------------------------------------

    @property
    def end_reason(self) -> str | None:
        """Why the broker ended this subscription, or None while it is live."""
        return self._ended

    @property
    def pending(self) -> int:
        """Deltas queued and not yet taken."""
        return len(self._queue)

    def attach(self, task: asyncio.Task[object] | None) -> None:
        """Cancel `task` if the subscription ends while the task is not waiting in `next_events` (blocked writing to
        a client that stopped reading, say), so the servicer can end the stream at once."""
        self._task = task

    async def next_events(self, max_events: int) -> list[Delta]:
        """Wait for at least one delta and return up to `max_events`; raises SubscriptionEnded once ended."""
        while not self._queue:
            if self._ended is not None:
                raise SubscriptionEnded(self._ended)
            self._wakeup.clear()
            self._waiting = True
            try:
                await self._wakeup.wait()
            finally:
                self._waiting = False
        return self.take(max_events)

    def take(self, max_events: int) -> list[Delta]:
        """Up to `max_events` queued deltas, without waiting (possibly none)."""
        if self._ended is not None:
            raise SubscriptionEnded(self._ended)
        queue = self._queue
        count = min(max_events, len(queue))
        if not count:
            return []
        stamps = self._stamps
        oldest = stamps[0]
        if count == len(queue):
            out = list(queue)
            queue.clear()
            stamps.clear()
        else:
            out = [queue.popleft() for _ in range(count)]
            for _ in range(count):
                stamps.popleft()
        observer = self._broker.observer
        if observer is not None:
            observer.queue_wait(time.monotonic() - oldest)
        if self._snapshot_left:
            self._snapshot_left = max(0, self._snapshot_left - count)
        return out

    def sending(self, deltas: Iterable[Delta]) -> int:
        """Record that these deltas are about to be written to the client, in one message for a resumable stream;
        returns that message's revision (0 for a plain stream). Call it only once the previous message was
        written: that is what tells the broker the client got the previous Deletes."""
        session = self._session
        batch = list(deltas)
        if session is None:
            held = self._held
            for ref in self._deleting:
                held.pop(ref, None)
            deleting: dict[ObjectRef, None] = {}
            for delta in batch:
                payload = delta.payload
                if payload is None:
                    deleting[ObjectRef(delta.kind, delta.uid)] = None
                else:
                    held[payload.ref] = None
                    deleting.pop(payload.ref, None)
            self._deleting = deleting
        observer = self._broker.observer
        if observer is not None:
            counts: dict[tuple[str, str], int] = {}
            for delta in batch:
                key = (delta.kind, delta.reason)
                counts[key] = counts.get(key, 0) + 1
            for (kind, reason), count in counts.items():
                observer.dispatched(kind, reason, count)
        if session is not None and session.stream is self:
            return session.record(batch)
        return 0

    # -- for the broker -----------------------------------------------------------------------------------------

    def _start(self, initial: list[Delta]) -> None:
        self._queue.extend(initial)
        self._stamps.extend(itertools.repeat(time.monotonic(), len(initial)))
        self._snapshot_left = self.initial_size = len(initial)

    def _push(self, delta: Delta) -> bool:
        """Queue a live delta; True when the queue has overflowed."""
        queue = self._queue
        queue.append(delta)
        self._stamps.append(time.monotonic())
        if len(queue) - self._snapshot_left > self._broker.settings.queue_limit:
            return True
        if self._waiting:
            self._wakeup.set()
        return False

    def _end(self, reason: str) -> None:
        self._ended = reason
        self._queue.clear()
        self._stamps.clear()
        self._snapshot_left = 0
        self._wakeup.set()
        task = self._task
        self._task = None
        if task is not None and not self._waiting and not task.done():
            task.cancel()

    def __repr__(self) -> str:
        state = self._ended or f"{len(self._queue)} queued"
        return f"<Subscription {self.node} {sorted(self.kinds)} {state}>"


# -- the broker -----------------------------------------------------------------------------------------------------


class Broker:
    """Subscribers by node, their queues, the grace memory of plain streams and the sessions of resumable ones.

    Runs on the event loop's thread; timers (grace expiry) use the running loop.
    """

    def __init__(
        self,
        index: RelationIndex,
        settings: BrokerSettings = BrokerSettings(),
        *,
        observer: BrokerObserver | None = None,
    ) -> None:
        self.index = index
        self.settings = settings
        self.observer = observer
        self.bodies = EventBodies()
        self._by_node: dict[str, dict[Subscription, None]] = {}
        self._count = 0
        self._closed = False
        self._memory: dict[tuple[str, frozenset[str]], _Memory] = {}
        self._sessions: dict[str, _Session] = {}
        self._detached: OrderedDict[str, None] = OrderedDict()

    # -- changes ------------------------------------------------------------------------------------------------

    def apply(self, info: ObjectInfo) -> None:
        """An object was added or updated: update the index and queue the deltas for their subscribers."""
        self._fan_out(self.index.apply(info))

    def delete(self, info: ObjectInfo) -> None:
        """An object was deleted: update the index and queue the deltas for their subscribers."""
        self._fan_out(self.index.delete(info))

    def _fan_out(self, deltas: list[Delta]) -> None:
        by_node = self._by_node
        observer = self.observer
        overflowed: list[Subscription] = []
        for delta in deltas:
            subs = by_node.get(delta.node)
            if not subs:
                continue
            for sub in subs:
                if delta.kind not in sub.kinds or sub._ended is not None:
                    continue
                if sub._push(delta):
                    sub._end("overflow")  # at once: it takes nothing more; it leaves the node's set below
                    overflowed.append(sub)
                elif observer is not None:
                    observer.queue_add(delta.node, delta.reason, delta.kind)
        for sub in overflowed:
            self._drop(sub, "overflow")

    # -- subscriptions ------------------------------------------------------------------------------------------

    @property
    def subscriber_count(self) -> int:
        return self._count

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(
        self,
        node: str,
        kinds: frozenset[str],
        *,
        session_id: str = "",
        resume_revision: int = 0,
        resumable: bool = False,
    ) -> Subscription:
        """A new stream for `node` receiving `kinds`: queued with the initial sync, then live deltas.

        A plain stream (`resumable=False`) starts with the snapshot, plus Deletes for what a stream of the same node
        and kinds ended within the grace period may have left at its client. A resumable stream resumes
        `session_id` from `resume_revision` when it can, and otherwise starts a new session (with `reset` when a
        session was named). Raises ValueError for an empty node, SubscriptionEnded("shutdown") once closed.
        """
        if not node:
            raise ValueError("a subscription needs a node name")
        if self._closed:
            raise SubscriptionEnded("shutdown")
        sub = Subscription(self, node, kinds)
        snapshot = [delta for delta in self.index.subscribe(node) if delta.kind in kinds]
        if resumable:
            initial = self._attach_session(sub, session_id, resume_revision, snapshot)
        else:
            initial = self._recall(sub, snapshot)
        sub._start(initial)
        self._by_node.setdefault(node, {})[sub] = None
        self._count += 1
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """The stream is gone (or done): forget the subscription. Harmless for one the broker already ended."""
        sub._task = None
        self._drop(sub, "unsubscribed")

    def close(self, *, end_streams: bool = True) -> None:
        """Shutdown: end every subscription ("shutdown") and forget every memory and session.

        `end_streams=False` forgets the subscriptions without ending them: their servicers stay asleep until
        something else ends their calls (the gRPC server cancelling every call at once), and receive nothing more.
        """
        if self._closed:
            return
        self._closed = True
        observer = self.observer
        for subs in self._by_node.values():
            for sub in subs:
                if sub._ended is None and end_streams:
                    sub._end("shutdown")
                if observer is not None:
                    observer.subscriber_ended(sub.node, "shutdown")
        # All at once: unsubscribing node by node took a quarter of a shutdown with thousands of streams.
        self._by_node.clear()
        self._count = 0
        self.index.unsubscribe_all()
        for memory in self._memory.values():
            if memory.timer is not None:
                memory.timer.cancel()
        self._memory.clear()
        for session in self._sessions.values():
            if session.expiry is not None:
                session.expiry.cancel()
        self._sessions.clear()
        self._detached.clear()

    def _drop(self, sub: Subscription, why: str) -> None:
        """Remove a subscription from the broker (once), ending it with `why` unless it has ended already."""
        subs = self._by_node.get(sub.node)
        if subs is None or sub not in subs:
            return
        del subs[sub]
        if not subs:
            del self._by_node[sub.node]
        self._count -= 1
        if sub._ended is None:
            sub._end(why)
        self.index.unsubscribe(sub.node)
        if not self._closed:
            session = sub._session
            if session is None:
                self._remember(sub)
            elif session.stream is sub:
                self._detach(session)
        if self.observer is not None:
            self.observer.subscriber_ended(sub.node, why)

    # -- grace memory (plain streams) ---------------------------------------------------------------------------

    def _recall(self, sub: Subscription, snapshot: list[Delta]) -> list[Delta]:
        memory = self._memory.pop((sub.node, sub.kinds), None)
        if memory is None:
            return snapshot
        if memory.timer is not None:
            memory.timer.cancel()
        current = {ObjectRef(delta.kind, delta.uid) for delta in snapshot}
        gone = [Delta(sub.node, Reason.DELETE, ref.kind, ref.uid, None) for ref in memory.refs if ref not in current]
        # Until those Deletes are sent, the client may still hold the objects.
        sub._held = memory.refs
        return snapshot + gone

    def _remember(self, sub: Subscription) -> None:
        if not sub._held:
            return
        key = (sub.node, sub.kinds)
        memory = self._memory.get(key)
        if memory is None:
            memory = self._memory[key] = _Memory()
        memory.refs.update(sub._held)
        if memory.timer is not None:
            memory.timer.cancel()
        memory.timer = asyncio.get_running_loop().call_later(self.settings.grace_period, self._forget, key)

    def _forget(self, key: tuple[str, frozenset[str]]) -> None:
        self._memory.pop(key, None)

    # -- sessions (resumable streams) ---------------------------------------------------------------------------

    def _attach_session(self, sub: Subscription, session_id: str, revision: int, snapshot: list[Delta]) -> list[Delta]:
        session = self._sessions.get(session_id) if session_id else None
        if session is not None and (session.node != sub.node or session.kinds != sub.kinds):
            session = None
        if session is not None:
            if session.stream is not None:  # the client reconnected before its old stream was noticed gone
                old, session.stream = session.stream, None
                self._drop(old, "superseded")
            if session.expiry is not None:
                session.expiry.cancel()
                session.expiry = None
            self._detached.pop(session.id, None)
            if session.rewind(revision):
                session.stream = sub
                sub._session = session
                sub.session_id = session.id
                sub.resume_revision = revision
                return view_changes(sub.node, session.held, _as_view(snapshot))
            del self._sessions[session.id]
        session = _Session(secrets.token_urlsafe(12), sub.node, sub.kinds, self.settings.session_history)
        self._sessions[session.id] = session
        session.stream = sub
        sub._session = session
        sub.session_id = session.id
        sub.reset = bool(session_id)
        return snapshot

    def _detach(self, session: _Session) -> None:
        session.stream = None
        self._detached[session.id] = None
        session.expiry = asyncio.get_running_loop().call_later(self.settings.grace_period, self._expire, session.id)
        while len(self._detached) > self.settings.max_detached_sessions:
            oldest, _ = self._detached.popitem(last=False)
            self._expire(oldest)

    def _expire(self, session_id: str) -> None:
        session = self._sessions.get(session_id)
        if session is None or session.stream is not None:
            return
        del self._sessions[session_id]
        self._detached.pop(session_id, None)
        if session.expiry is not None:
            session.expiry.cancel()

    # -- introspection (tests, debugging) -------------------------------------------------------------------------

    def remembered(self, node: str, kinds: frozenset[str]) -> frozenset[ObjectRef]:
        """What the grace memory holds for plain streams of (node, kinds)."""
        memory = self._memory.get((node, kinds))
        return frozenset(memory.refs) if memory is not None else frozenset()

    @property
    def session_count(self) -> int:
        return len(self._sessions)


def _as_view(snapshot: Iterable[Delta]) -> Mapping[ObjectRef, Payload]:
    return {delta.payload.ref: delta.payload for delta in snapshot if delta.payload is not None}
