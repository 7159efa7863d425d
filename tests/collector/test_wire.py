"""The pre-encoded event bytes equal what the generated message classes serialise, for both protocols."""

from __future__ import annotations

from nodemeta.api import wire
from nodemeta.api.falco import metadata_pb2
from nodemeta.api.nodemeta.v1 import stream_pb2

POD_META = '{"labels":{"app":"n\\u003c1"},"name":"p","namespace":"ns","uid":"u-1"}'
REFS = (("Namespace", ("ns-uid",)), ("ReplicaSet", ("rs-uid",)), ("Service", ()), ("Deployment", ("d-uid",)))


def falco_message(reason: str, with_payload: bool) -> metadata_pb2.Event:
    event = metadata_pb2.Event(reason=reason, uid="u-1", kind="Pod")
    if with_payload:
        event.meta = POD_META
        event.status = '{"podIP":"10.0.0.1"}'
        for kind, uids in REFS:
            event.refs.resources[kind].list.extend(uids)
    return event


def v1_message(reason: stream_pb2.Reason.ValueType, with_payload: bool) -> stream_pb2.Event:
    event = stream_pb2.Event(reason=reason, uid="u-1", kind="Pod")
    if with_payload:
        event.meta = POD_META
        event.status = '{"podIP":"10.0.0.1"}'
        for kind, uids in REFS:
            event.refs.resources[kind].uids.extend(uids)
    return event


def test_falco_event_bytes_match_the_generated_class() -> None:
    body = wire.encode_body("Pod", "u-1", POD_META, '{"podIP":"10.0.0.1"}', REFS)
    for reason in ("Create", "Update"):
        expected = falco_message(reason, True).SerializeToString(deterministic=True)
        assert wire.falco_event(reason, body) == expected
    delete = wire.falco_event("Delete", wire.encode_body("Pod", "u-1"))
    assert delete == falco_message("Delete", False).SerializeToString(deterministic=True)
    parsed = metadata_pb2.Event.FromString(wire.falco_event("Create", body))
    assert parsed.HasField("refs") and list(parsed.refs.resources["Service"].list) == []
    assert "Service" in parsed.refs.resources
    assert not parsed.HasField("spec")


def test_v1_event_and_batch_bytes_match_the_generated_classes() -> None:
    body = wire.encode_body("Pod", "u-1", POD_META, '{"podIP":"10.0.0.1"}', REFS)
    ns_body = wire.encode_body("Namespace", "ns-uid", '{"name":"ns","uid":"ns-uid"}')
    assert wire.v1_event("Update", body) == v1_message(stream_pb2.REASON_UPDATE, True).SerializeToString(
        deterministic=True
    )
    entries = [
        wire.batch_entry("Create", ns_body),
        wire.batch_entry("Create", body),
        wire.batch_entry("Delete", wire.encode_body("Pod", "u-1")),
    ]
    batch_bytes = wire.encode_batch(entries, 300, initial_sync_complete=True, session_id="s-1", reset=True)
    expected = stream_pb2.EventBatch(revision=300, initial_sync_complete=True, session_id="s-1", reset=True)
    ns_event = expected.events.add(reason=stream_pb2.REASON_CREATE, uid="ns-uid", kind="Namespace")
    ns_event.meta = '{"name":"ns","uid":"ns-uid"}'
    expected.events.append(v1_message(stream_pb2.REASON_CREATE, True))
    expected.events.append(v1_message(stream_pb2.REASON_DELETE, False))
    assert batch_bytes == expected.SerializeToString(deterministic=True)
    assert stream_pb2.EventBatch.FromString(batch_bytes) == expected
    assert wire.encode_batch([], 0) == b""


def test_the_body_is_shared_by_both_protocols() -> None:
    body = wire.encode_body("Pod", "u-1", POD_META, "{}", REFS)
    falco = metadata_pb2.Event.FromString(wire.falco_event("Create", body))
    v1 = stream_pb2.Event.FromString(wire.v1_event("Create", body))
    assert (falco.uid, falco.kind, falco.meta, falco.status) == (v1.uid, v1.kind, v1.meta, v1.status)
    assert {k: list(v.list) for k, v in falco.refs.resources.items()} == {
        k: list(v.uids) for k, v in v1.refs.resources.items()
    }


def test_large_varints() -> None:
    meta = "x" * 70_000
    body = wire.encode_body("Namespace", "u", meta)
    assert stream_pb2.Event.FromString(wire.v1_event("Create", body)).meta == meta
    batch = stream_pb2.EventBatch.FromString(wire.encode_batch([wire.batch_entry("Create", body)], 2**40 + 5))
    assert batch.revision == 2**40 + 5 and batch.events[0].meta == meta


def test_method_paths() -> None:
    assert metadata_pb2.DESCRIPTOR.services_by_name["Metadata"].methods_by_name["Watch"].full_name == (
        "metadata.Metadata.Watch"
    )
    method = stream_pb2.DESCRIPTOR.services_by_name["NodeMetadata"].methods_by_name["Watch"]
    assert method.full_name == "nodemeta.v1.NodeMetadata.Watch"
    assert method.server_streaming and not method.client_streaming
