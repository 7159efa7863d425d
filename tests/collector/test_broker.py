"""The broker on its own: queues, fan-out, overflow, grace memory, sessions and resume, shutdown."""

from __future__ import annotations

import asyncio
import random

import pytest

from nodemeta.api import wire
from nodemeta.collector.broker import Broker, BrokerSettings, EventBodies, Subscription, SubscriptionEnded
from nodemeta.collector.model import FALCO_KINDS, NamespaceInfo, ObjectRef, OwnerInfo, Reason, ServiceInfo
from nodemeta.collector.relations import Delta, RelationIndex
from nodemeta.collector.render import Payload
from tests.collector.grpc_clients import BARE_RS, NODE, RS, SVC_A, new_broker, pod, scenario
from tests.collector.holder import Holder

ALL = FALCO_KINDS
Event = tuple[str, str, str]  # reason, kind, uid


def events(deltas: list[Delta]) -> list[Event]:
    return [(d.reason.value, d.kind, d.uid) for d in deltas]


def drain(sub: Subscription) -> list[Delta]:
    """Everything queued, recorded as sent (what a servicer does)."""
    deltas = sub.take(1_000_000)
    sub.sending(deltas)
    return deltas


class Recorder:
    """A BrokerObserver that keeps every call."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, str, str]] = []
        self.sent: dict[tuple[str, str], int] = {}
        self.ended: list[tuple[str, str]] = []
        self.waits: list[float] = []

    def queue_add(self, node: str, reason: str, kind: str) -> None:
        self.queued.append((node, reason, kind))

    def dispatched(self, kind: str, reason: str, count: int) -> None:
        key = (kind, reason)
        self.sent[key] = self.sent.get(key, 0) + count

    def queue_wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def subscriber_ended(self, node: str, why: str) -> None:
        self.ended.append((node, why))


async def test_snapshot_then_live_deltas_without_gap_or_duplicate() -> None:
    broker = new_broker(scenario())
    sub = broker.subscribe(NODE, ALL)
    assert broker.subscriber_count == 1 and broker.index.is_subscribed(NODE)
    holder = Holder(NODE)
    snapshot = drain(sub)
    assert events(snapshot) == events(broker.index.snapshot(NODE))
    assert sub.initial_size == len(snapshot) == 14
    holder.apply(snapshot)
    # Changes after the subscription arrive as deltas; a second subscriber of the node gets the same.
    other = broker.subscribe(NODE, ALL)
    broker.apply(pod("web-3", owner=RS.ref))
    broker.delete(pod("bare-pod"))
    broker.apply(pod("elsewhere-2", node="n2"))
    live = drain(sub)
    assert events(live) == [("Create", "Pod", "web-3"), ("Delete", "Pod", "bare-pod")]
    holder.apply(live)
    assert holder.objects == dict(broker.index.view(NODE))
    other_holder = Holder(NODE)
    other_holder.apply(drain(other))
    assert other_holder.objects == holder.objects


async def test_kinds_filter_and_only_the_node_subscribers_receive() -> None:
    broker = new_broker(scenario())
    pods = broker.subscribe(NODE, frozenset({"Pod"}))
    services = broker.subscribe(NODE, frozenset({"Service", "ReplicationController"}))
    n2 = broker.subscribe("n2", ALL)
    assert {kind for _, kind, _ in events(drain(pods))} == {"Pod"}
    assert sorted(events(drain(services))) == [
        ("Create", "ReplicationController", "rc-uid"),
        ("Create", "Service", "svc-a-uid"),
        ("Create", "Service", "svc-b-uid"),
    ]
    drain(n2)
    broker.apply(ServiceInfo(SVC_A.uid, SVC_A.name, SVC_A.namespace, labels={"v": "2"}, selector=SVC_A.selector))
    assert events(drain(services)) == [("Update", "Service", "svc-a-uid")]
    assert events(drain(pods)) == []
    assert events(drain(n2)) == [("Update", "Service", "svc-a-uid")]
    broker.apply(pod("n3-pod", node="n3"))
    assert pods.pending == services.pending == n2.pending == 0


async def test_next_events_waits_for_a_delta_and_returns_at_most_the_maximum() -> None:
    broker = new_broker(scenario())
    sub = broker.subscribe("n9", ALL)
    waiter = asyncio.create_task(sub.next_events(2))
    await asyncio.sleep(0)
    assert not waiter.done()
    broker.apply(pod("a", node="n9", namespace="x", labels={}))
    broker.apply(pod("b", node="n9", namespace="x", labels={}))
    broker.apply(pod("c", node="n9", namespace="x", labels={}))
    assert [d.uid for d in await waiter] == ["a", "b"]
    assert [d.uid for d in await sub.next_events(5)] == ["c"]
    broker.unsubscribe(sub)
    with pytest.raises(SubscriptionEnded, match="unsubscribed"):
        await sub.next_events(1)


async def test_a_subscriber_that_falls_behind_is_ended_and_nobody_else_waits() -> None:
    recorder = Recorder()
    broker = Broker(RelationIndex(), BrokerSettings(queue_limit=5), observer=recorder)
    for info in scenario():
        broker.apply(info)
    # The snapshot (14 objects) does not count against the limit.
    slow = broker.subscribe(NODE, ALL)
    fast = broker.subscribe(NODE, ALL)
    assert slow.pending == fast.pending == 14
    waiting = asyncio.create_task(slow.next_events(1000))
    await asyncio.sleep(0)
    slow_first = await waiting  # the slow one took its snapshot, then stops reading
    assert len(slow_first) == 14
    drain(fast)
    for i in range(8):
        broker.apply(pod(f"extra-{i}"))
        got = drain(fast)
        assert events(got) == [("Create", "Pod", f"extra-{i}")]
        if i < 5:
            assert slow.end_reason is None and slow.pending == i + 1
    assert slow.end_reason == "overflow" and slow.pending == 0
    with pytest.raises(SubscriptionEnded, match="overflow"):
        await slow.next_events(1)
    assert broker.subscriber_count == 1 and fast.end_reason is None
    assert recorder.ended == [(NODE, "overflow")]
    broker.unsubscribe(slow)  # the servicer's cleanup: harmless
    broker.unsubscribe(fast)
    assert broker.subscriber_count == 0 and not broker.index.is_subscribed(NODE)
    assert recorder.ended == [(NODE, "overflow"), (NODE, "unsubscribed")]
    assert recorder.queued[:2] == [(NODE, "Create", "Pod"), (NODE, "Create", "Pod")]
    assert sum(recorder.sent.values()) == 14 + 8 and recorder.sent[("Pod", "Create")] == 6 + 8
    assert recorder.waits and all(w >= 0 for w in recorder.waits)


async def test_ending_a_subscription_interrupts_its_attached_task_unless_it_waits_for_deltas() -> None:
    broker = new_broker(scenario(), queue_limit=1)
    sub = broker.subscribe(NODE, ALL)
    drain(sub)

    async def stuck_writer() -> None:
        await asyncio.sleep(60)  # a write to a client that stopped reading

    task = asyncio.create_task(stuck_writer())
    sub.attach(task)
    await asyncio.sleep(0)
    broker.apply(pod("x1"))
    broker.apply(pod("x2"))
    assert sub.end_reason == "overflow"
    with pytest.raises(asyncio.CancelledError):
        await task
    # A subscription whose task waits in next_events gets SubscriptionEnded instead.
    other = broker.subscribe(NODE, ALL)
    drain(other)
    reader = asyncio.create_task(other.next_events(1))
    other.attach(reader)
    await asyncio.sleep(0)
    broker.close()
    with pytest.raises(SubscriptionEnded, match="shutdown"):
        await reader


async def test_resubscribe_within_the_grace_period_deletes_what_vanished() -> None:
    broker = new_broker(scenario(), grace_period=60)
    first = broker.subscribe(NODE, ALL)
    drain(first)
    broker.unsubscribe(first)
    assert not broker.index.is_subscribed(NODE)
    assert len(broker.remembered(NODE, ALL)) == 14
    # While nobody watches n1: a pod and the bare ReplicaSet (with its pod) go away, one pod arrives.
    broker.delete(pod("bare-pod"))
    broker.delete(pod("bare-rs-pod", owner=BARE_RS.ref))
    broker.delete(BARE_RS)
    broker.apply(pod("new-pod", owner=RS.ref))
    again = broker.subscribe(NODE, ALL)
    assert broker.remembered(NODE, ALL) == frozenset()
    deltas = drain(again)
    creates = [e for e in events(deltas) if e[0] == "Create"]
    assert creates == events(broker.index.snapshot(NODE))
    assert events(deltas)[len(creates) :] == [
        ("Delete", "ReplicaSet", "bare-rs-uid"),
        ("Delete", "Pod", "bare-pod"),
        ("Delete", "Pod", "bare-rs-pod"),
    ]
    # Another kinds selection is another memory.
    broker.unsubscribe(again)
    assert broker.subscribe(NODE, frozenset({"Pod"})).initial_size == 5
    broker.close()
    assert broker.remembered(NODE, ALL) == frozenset()


async def test_a_delete_not_yet_confirmed_stays_remembered() -> None:
    broker = new_broker(scenario(), grace_period=60)
    sub = broker.subscribe(NODE, ALL)
    drain(sub)
    broker.delete(pod("bare-pod"))
    assert events(drain(sub)) == [("Delete", "Pod", "bare-pod")]  # being written when the stream dies
    broker.unsubscribe(sub)
    assert ObjectRef("Pod", "bare-pod") in broker.remembered(NODE, ALL)
    again = broker.subscribe(NODE, ALL)
    assert events(drain(again))[-1] == ("Delete", "Pod", "bare-pod")
    # Once a later message is sent, the Delete counts as delivered.
    drain(again)
    broker.unsubscribe(again)
    assert ObjectRef("Pod", "bare-pod") not in broker.remembered(NODE, ALL)


async def test_the_grace_memory_expires() -> None:
    broker = new_broker(scenario(), grace_period=0.05)
    sub = broker.subscribe(NODE, ALL)
    drain(sub)
    broker.unsubscribe(sub)
    broker.delete(pod("bare-pod"))
    assert broker.remembered(NODE, ALL)
    await asyncio.sleep(0.1)
    assert broker.remembered(NODE, ALL) == frozenset()
    again = broker.subscribe(NODE, ALL)
    assert all(reason == "Create" for reason, _, _ in events(drain(again)))
    broker.close()


async def test_a_new_session_then_resume_sends_only_the_difference() -> None:
    broker = new_broker(scenario())
    sub = broker.subscribe(NODE, ALL, resumable=True)
    assert sub.session_id and not sub.reset and sub.initial_size == 14
    holder = Holder(NODE)
    revisions = []
    while sub.pending:
        batch = sub.take(4)
        revisions.append(sub.sending(batch))
        holder.apply(batch)
    assert revisions == [1, 2, 3, 4]
    broker.unsubscribe(sub)
    assert broker.session_count == 1
    broker.delete(pod("bare-pod"))
    broker.apply(pod("new-pod", owner=RS.ref, ip="10.0.0.9"))
    broker.apply(pod("web-1", owner=RS.ref, ip="10.0.0.22"))
    resumed = broker.subscribe(NODE, ALL, session_id=sub.session_id, resume_revision=4, resumable=True)
    assert resumed.session_id == sub.session_id and not resumed.reset
    catch_up = resumed.take(100)
    assert sorted(events(catch_up)) == [
        ("Create", "Pod", "new-pod"),
        ("Delete", "Pod", "bare-pod"),
        ("Update", "Pod", "web-1"),
    ]
    assert resumed.initial_size == 3
    assert resumed.sending(catch_up) == 5
    holder.apply(catch_up)
    assert holder.objects == dict(broker.index.view(NODE))


async def test_resume_from_an_earlier_revision_rewinds_what_the_client_never_applied() -> None:
    broker = new_broker(scenario())
    sub = broker.subscribe(NODE, ALL, resumable=True)
    holder = Holder(NODE)
    snapshot = sub.take(100)
    assert sub.sending(snapshot) == 1
    holder.apply(snapshot)
    broker.delete(pod("bare-pod"))
    broker.apply(pod("web-9", owner=RS.ref))
    lost = sub.take(100)
    assert sub.sending(lost) == 2  # written, but the client never applied it
    broker.unsubscribe(sub)
    broker.apply(pod("web-9", owner=RS.ref, ip="10.0.0.99"))
    resumed = broker.subscribe(NODE, ALL, session_id=sub.session_id, resume_revision=1, resumable=True)
    catch_up = resumed.take(100)
    assert sorted(events(catch_up)) == [("Create", "Pod", "web-9"), ("Delete", "Pod", "bare-pod")]
    assert resumed.sending(catch_up) == 3  # revisions never repeat
    holder.apply(catch_up)
    assert holder.objects == dict(broker.index.view(NODE))
    # Revision 2 is no longer on the session's history: resuming from it resets.
    broker.unsubscribe(resumed)
    reset = broker.subscribe(NODE, ALL, session_id=sub.session_id, resume_revision=2, resumable=True)
    assert reset.reset and reset.session_id != sub.session_id
    assert events(reset.take(100)) == events(broker.index.snapshot(NODE))


@pytest.mark.parametrize(
    ("session_id", "node", "kinds", "revision"),
    [("no-such-session", NODE, ALL, 1), ("", NODE, ALL, 0), ("*", "n2", ALL, 1), ("*", NODE, frozenset({"Pod"}), 1),
     ("*", NODE, ALL, 7)],
)  # fmt: skip
async def test_a_session_that_cannot_resume_starts_afresh(
    session_id: str, node: str, kinds: frozenset[str], revision: int
) -> None:
    broker = new_broker(scenario())
    sub = broker.subscribe(NODE, ALL, resumable=True)
    sub.sending(sub.take(100))
    broker.unsubscribe(sub)
    name = sub.session_id if session_id == "*" else session_id
    fresh = broker.subscribe(node, kinds, session_id=name, resume_revision=revision, resumable=True)
    assert fresh.session_id != sub.session_id
    assert fresh.reset == bool(name)
    assert events(fresh.take(100)) == [e for e in events(broker.index.snapshot(node)) if e[1] in kinds]


async def test_a_newer_stream_of_a_session_supersedes_the_older() -> None:
    recorder = Recorder()
    broker = Broker(RelationIndex(), observer=recorder)
    for info in scenario():
        broker.apply(info)
    old = broker.subscribe(NODE, ALL, resumable=True)
    old.sending(old.take(100))
    new = broker.subscribe(NODE, ALL, session_id=old.session_id, resume_revision=1, resumable=True)
    assert old.end_reason == "superseded" and recorder.ended == [(NODE, "superseded")]
    assert new.session_id == old.session_id and new.initial_size == 0
    assert old.sending([]) == 0  # a late write of the old stream is not recorded
    broker.apply(pod("x", owner=RS.ref))
    assert new.sending(new.take(10)) == 2
    assert broker.subscriber_count == 1


async def test_sessions_expire_after_the_grace_period_and_are_capped() -> None:
    broker = new_broker(scenario(), grace_period=0.05, max_detached_sessions=2)
    subs = [broker.subscribe(NODE, ALL, resumable=True) for _ in range(3)]
    for sub in subs:
        broker.unsubscribe(sub)
    assert broker.session_count == 2  # the oldest detached one was forgotten
    await asyncio.sleep(0.1)
    assert broker.session_count == 0
    late = broker.subscribe(NODE, ALL, session_id=subs[2].session_id, resume_revision=0, resumable=True)
    assert late.reset


async def test_session_history_is_bounded() -> None:
    broker = new_broker(scenario(), session_history=20)
    sub = broker.subscribe(NODE, ALL, resumable=True)
    sub.sending(sub.take(100))  # revision 1: 14 events
    for i in range(10):
        broker.apply(pod(f"p{i}"))
        sub.sending(sub.take(100))  # revisions 2..11
    broker.unsubscribe(sub)
    # The first record (14 undo entries) was dropped: revision 1 is still reachable, revision 0 is not.
    near = broker.subscribe(NODE, ALL, session_id=sub.session_id, resume_revision=1, resumable=True)
    assert not near.reset and sorted(d.uid for d in near.take(100)) == [f"p{i}" for i in range(10)]
    broker.unsubscribe(near)
    far = broker.subscribe(NODE, ALL, session_id=sub.session_id, resume_revision=0, resumable=True)
    assert far.reset and far.initial_size == 24


async def test_resume_keeps_a_client_exact_through_random_disconnects() -> None:
    """Random churn, batches sent in random sizes, random disconnects where the client lost the last batches:
    after each resume the client model (which rejects an illegal Create/Update/Delete) equals the node's view."""
    rng = random.Random(5)
    broker = new_broker(scenario())
    nodes = [NODE, "n2"]
    holder = Holder(NODE)
    applied: list[tuple[int, dict[ObjectRef, Payload]]] = [(0, {})]  # client states by revision
    sub = broker.subscribe(NODE, ALL, resumable=True)
    session = sub.session_id
    for step in range(300):
        roll = rng.random()
        uid = f"p{rng.randrange(20)}"
        if roll < 0.5:
            broker.apply(pod(uid, node=rng.choice(nodes), owner=rng.choice([RS.ref, None]), ip=f"10.1.0.{step % 9}"))
        elif roll < 0.7:
            broker.delete(pod(uid))
        elif roll < 0.8:
            selector = {"app": rng.choice(["nginx", "db"])}
            broker.apply(ServiceInfo("svc-r", "r", "nginx-test", labels={"s": str(step)}, selector=selector))
        elif roll < 0.85:
            broker.apply(NamespaceInfo("ns-uid", "nginx-test", labels={"step": str(step)}))
        elif roll < 0.9:
            broker.apply(OwnerInfo("ReplicaSet", RS.uid, RS.name, RS.namespace, labels={"s": str(step)},
                                   controller_owner=RS.controller_owner))  # fmt: skip
        else:
            # Disconnect: the client lost its last 0-2 batches; it resumes from the last one it applied.
            lost = rng.randrange(min(3, len(applied)))
            if lost:
                del applied[-lost:]
            revision, state = applied[-1]
            holder.objects = dict(state)
            broker.unsubscribe(sub)
            sub = broker.subscribe(NODE, ALL, session_id=session, resume_revision=revision, resumable=True)
            assert not sub.reset and sub.session_id == session
        while sub.pending:
            batch = sub.take(rng.randrange(1, 6))
            revision = sub.sending(batch)
            holder.apply(batch)
            applied.append((revision, dict(holder.objects)))
        assert holder.objects == dict(broker.index.view(NODE))
    broker.close()


async def test_close_ends_every_subscription_and_refuses_new_ones() -> None:
    recorder = Recorder()
    broker = Broker(RelationIndex(), BrokerSettings(grace_period=60), observer=recorder)
    for info in scenario():
        broker.apply(info)
    plain = broker.subscribe(NODE, ALL)
    drain(plain)
    resumable = broker.subscribe("n2", ALL, resumable=True)
    other = broker.subscribe(NODE, ALL)
    broker.unsubscribe(other)  # leaves a grace memory with a timer
    broker.close()
    assert plain.end_reason == resumable.end_reason == "shutdown"
    assert broker.subscriber_count == 0 and broker.session_count == 0
    assert broker.remembered(NODE, ALL) == frozenset()
    assert sorted(recorder.ended) == [(NODE, "shutdown"), (NODE, "unsubscribed"), ("n2", "shutdown")]
    with pytest.raises(SubscriptionEnded, match="shutdown"):
        broker.subscribe(NODE, ALL)
    broker.apply(pod("after"))  # the index still follows the cluster
    broker.close()


async def test_empty_node_name_is_refused() -> None:
    with pytest.raises(ValueError, match="node name"):
        new_broker().subscribe("", ALL)


def test_bodies_are_encoded_once_per_payload() -> None:
    bodies = EventBodies()
    payloads = [Payload("Namespace", f"u{i}", f'{{"name":"n{i}","uid":"u{i}"}}') for i in range(4)]
    deltas = [Delta(NODE, Reason.CREATE, p.kind, p.uid, p) for p in payloads]
    first = bodies.body(deltas[0])
    assert first == wire.encode_body("Namespace", "u0", payloads[0].meta)
    assert bodies.body(deltas[0]) is first
    assert bodies.body(Delta("n2", Reason.UPDATE, "Namespace", "u0", payloads[0])) is first  # any node, reason
    # The body is kept on the payload (it goes with it) and is no part of its value.
    assert payloads[0].encoded is first
    twin = Payload("Namespace", "u0", payloads[0].meta)
    assert twin == payloads[0] and hash(twin) == hash(payloads[0]) and twin.encoded is None
    assert bodies.body(Delta(NODE, Reason.CREATE, "Namespace", "u0", twin)) == first
    for delta in deltas[1:]:
        assert bodies.body(delta) == wire.encode_body("Namespace", delta.uid, delta.payload.meta)  # type: ignore[union-attr]
    assert bodies.body(Delta(NODE, Reason.DELETE, "Pod", "p", None)) == wire.encode_body("Pod", "p")
    pod_payload = Payload("Pod", "p", "{}", "{}", (("Namespace", ("ns",)), ("Service", ())))
    assert bodies.body(Delta(NODE, Reason.CREATE, "Pod", "p", pod_payload)) == wire.encode_body(
        "Pod", "p", "{}", "{}", pod_payload.refs
    )
    assert pod_payload.encoded is None  # a pod's body is not kept: only its own node sends it
