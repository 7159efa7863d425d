"""`metadata.Metadata/Watch` over real grpc.aio servers and clients on loopback, and the server's set-up."""

from __future__ import annotations

import asyncio
import datetime
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from structlog.testing import capture_logs

from nodemeta.api.falco import metadata_pb2
from nodemeta.collector.broker import Broker
from nodemeta.collector.grpc_falco import NODE_NAME_HINT, falco_kinds
from nodemeta.collector.model import FALCO_KINDS, ObjectRef, OwnerInfo, ServiceInfo
from nodemeta.collector.server import (
    ABORT_EACH_LIMIT,
    ServerConfigError,
    bound_port,
    build_server,
    server_options,
    stop,
)
from nodemeta.collector.server import ServerSettings as Settings
from tests.collector.grpc_clients import (
    BARE_RS,
    DEP,
    NODE,
    RC,
    RS,
    SVC_A,
    falco_call,
    falco_event,
    falco_watch,
    new_broker,
    pod,
    quiesce,
    scenario,
    serving,
    v1_watch,
)

PLUGIN_KINDS = ("Pod", "Namespace", "Deployment", "Service", "ReplicaSet", "ReplicaController")


@pytest.fixture
async def broker() -> Broker:
    return new_broker(scenario(), grace_period=60)


@pytest.fixture
async def channel(broker: Broker) -> AsyncIterator[grpc.aio.Channel]:
    async with serving(broker) as target, grpc.aio.insecure_channel(target) as chan:
        yield chan


async def wait_until(condition: object, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(condition) or not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def parse(raw: list[bytes]) -> list[tuple[str, str, str]]:
    return [(e.reason, e.kind, e.uid) for e in map(metadata_pb2.Event.FromString, raw)]


async def test_initial_creates_are_byte_exact_then_updates_and_deletes(
    broker: Broker, channel: grpc.aio.Channel
) -> None:
    watcher = falco_watch(channel, NODE, PLUGIN_KINDS)
    await wait_until(lambda: broker.subscriber_count == 1)
    expected = [
        falco_event("Create", d.payload) for d in broker.index.snapshot(NODE) if d.kind != "DaemonSet"
    ]  # the plugin does not ask for DaemonSets
    assert len(expected) == 13
    assert await watcher.take(len(expected)) == expected
    # A pod gets an IP; the bare ReplicaSet goes (its pod stays, its refs name the owner by uid); a Service is edited.
    broker.apply(pod("web-1", owner=RS.ref, ip="10.0.0.200"))
    broker.delete(BARE_RS)
    broker.apply(
        ServiceInfo(SVC_A.uid, SVC_A.name, SVC_A.namespace, labels={"tier": "<front>"}, selector=SVC_A.selector)
    )
    view = broker.index.view(NODE)
    assert await watcher.take(3) == [
        falco_event("Update", view[ObjectRef("Pod", "web-1")]),
        falco_event("Delete", None, "ReplicaSet", "bare-rs-uid"),
        falco_event("Update", view[ObjectRef("Service", SVC_A.uid)]),
    ]
    assert (
        '"tier":"\\u003cfront\\u003e"'
        in metadata_pb2.Event.FromString(falco_event("Update", view[ObjectRef("Service", SVC_A.uid)])).meta
    )
    await watcher.close()


async def test_an_empty_node_name_is_a_failed_precondition_that_says_how_to_fix_it(channel: grpc.aio.Channel) -> None:
    watcher = falco_watch(channel, "", PLUGIN_KINDS)
    error = await watcher.status()
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == NODE_NAME_HINT
    assert "spec.nodeName" in NODE_NAME_HINT and "Downward API" in NODE_NAME_HINT


async def test_kinds_come_from_the_selector_keys(broker: Broker, channel: grpc.aio.Channel) -> None:
    assert falco_kinds(["ReplicaController"]) == {"ReplicationController"}
    assert falco_kinds([]) == FALCO_KINDS
    assert falco_kinds(["Pod", "StatefulSet", "Bogus"]) == {"Pod"}
    rc_only = falco_watch(channel, NODE, ["ReplicaController"])
    assert parse(await rc_only.take(1)) == [("Create", "ReplicationController", RC.uid)]
    pods_only = falco_watch(channel, NODE, ["Pod", "Bogus"])
    assert {kind for _, kind, _ in parse(await pods_only.take(6))} == {"Pod"}
    everything = falco_watch(channel, NODE)  # no kinds: every Falco kind, DaemonSets included
    assert len(await everything.take(14)) == 14
    broker.apply(OwnerInfo("ReplicationController", RC.uid, RC.name, RC.namespace, labels={"v": "2"}))
    assert parse(await rc_only.take(1)) == [("Update", "ReplicationController", RC.uid)]
    assert parse(await everything.take(1)) == [("Update", "ReplicationController", RC.uid)]
    await asyncio.sleep(0.05)
    assert pods_only.items.empty()
    for watcher in (rc_only, pods_only, everything):
        await watcher.close()


async def test_an_unknown_node_receives_nothing_until_it_has_pods(broker: Broker, channel: grpc.aio.Channel) -> None:
    watcher = falco_watch(channel, "node-that-does-not-exist")
    await wait_until(lambda: broker.subscriber_count == 1)
    await asyncio.sleep(0.05)
    assert watcher.items.empty() and not watcher.done.is_set()
    broker.apply(pod("late", node="node-that-does-not-exist", labels={}))
    assert sorted(parse(await watcher.take(2))) == [("Create", "Namespace", "ns-uid"), ("Create", "Pod", "late")]
    await watcher.close()


async def test_a_client_that_goes_away_is_unsubscribed_at_once() -> None:
    broker = new_broker(scenario())
    with capture_logs() as logs:
        async with serving(broker) as target, grpc.aio.insecure_channel(target) as channel:
            for _ in range(5):
                watcher = falco_watch(channel, NODE)
                await watcher.take(14)
                assert broker.subscriber_count == 1 and broker.index.is_subscribed(NODE)
                await watcher.close()
                await wait_until(lambda: broker.subscriber_count == 0, timeout=1.0)
                assert not broker.index.is_subscribed(NODE)
    received = [e for e in logs if e["event"] == "received watch request"]
    deleted = [e for e in logs if e["event"] == "stream deleted"]
    assert len(received) == len(deleted) == 5
    # `node` is the first key after the message (the Go collector's log lines are matched as substrings).
    assert next(key for key in received[0] if key not in ("event", "log_level")) == "node"
    assert received[0]["node"] == NODE
    assert deleted[0]["subscriber"] == NODE


async def test_shutdown_ends_every_stream_with_unavailable() -> None:
    before = asyncio.all_tasks()
    broker = new_broker(scenario())
    server = build_server(broker, address="127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{bound_port(server)}") as channel:
        watchers = [falco_watch(channel, node) for node in (NODE, NODE, "n2", "empty-node")]
        await watchers[0].take(14)
        await wait_until(lambda: broker.subscriber_count == 4)
        started = time.monotonic()
        await stop(server, broker, grace=5)
        assert time.monotonic() - started < 1.0
        for watcher in watchers:
            error = await watcher.status()
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            assert "shutting down" in (error.details() or "")
    await quiesce(before)


@pytest.mark.parametrize("abort_each_limit", [ABORT_EACH_LIMIT, 0], ids=["each-stream-ends-itself", "grpc-cancels-all"])
async def test_shutdown_with_a_connection_per_stream_closes_them_with_every_status_delivered(
    abort_each_limit: int,
) -> None:
    """With streams on connections of their own, the server closes the connections once every handler has ended, without
    waiting for the clients to close them: every client still gets UNAVAILABLE, with the collector's details when
    there are few streams (each handler ends its own), with gRPC's when there are many (cancelled all at once)."""
    before = asyncio.all_tasks()
    broker = new_broker(scenario())
    server = build_server(broker, address="127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{bound_port(server)}"
    own = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=own) for _ in range(24)]
    try:
        falco = [falco_watch(channel, NODE) for channel in channels[:12]]
        v1 = [v1_watch(channel, NODE) for channel in channels[12:]]
        for watcher in falco:
            await watcher.take(14)
        for watcher in v1:
            await watcher.take(1)
        assert broker.subscriber_count == 24
        await stop(server, broker, grace=30, abort_each_limit=abort_each_limit)
        for watcher in [*falco, *v1]:
            error = await watcher.status()
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            if abort_each_limit:
                assert "shutting down" in (error.details() or ""), error
        assert broker.subscriber_count == 0 and broker.closed and broker.session_count == 0
        assert not broker.index.is_subscribed(NODE)
        # The listener is gone: a new call fails instead of reaching a handler.
        late = await falco_watch(channels[0], NODE).status()
        assert late.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" not in (late.details() or "")
    finally:
        for channel in channels:
            await channel.close()
    await quiesce(before)


async def test_a_watch_arriving_after_the_broker_closed_is_unavailable(
    broker: Broker, channel: grpc.aio.Channel
) -> None:
    broker.close()
    error = await falco_watch(channel, NODE).status()
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_stuck_subscriber_is_ended_while_another_on_the_node_keeps_up() -> None:
    broker = new_broker(scenario(), queue_limit=40)
    async with serving(broker) as target:
        # The stuck client: no BDP probing, so its stream window stays small and the server's writes block soon.
        stuck_channel = grpc.aio.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)])
        healthy_channel = grpc.aio.insecure_channel(target)
        stuck = falco_call(stuck_channel, NODE)
        for _ in range(14):
            await stuck.read()
        healthy = falco_watch(healthy_channel, NODE)
        await healthy.take(14)
        big = "x" * 20_000
        worst = 0.0
        for i in range(120):
            started = time.monotonic()
            broker.apply(pod("web-1", owner=RS.ref, labels={"app": "nginx", "big": f"{i}{big}"}))
            (raw,) = await healthy.take(1, timeout=2)
            worst = max(worst, time.monotonic() - started)
            assert metadata_pb2.Event.FromString(raw).reason == "Update"
        assert broker.subscriber_count == 1, "the stuck subscriber was not ended"
        assert worst < 0.5
        # Once it reads again, the stuck client sees what was in flight, then UNAVAILABLE.
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async with asyncio.timeout(5):
                while True:
                    message = await stuck.read()
                    assert message is not grpc.aio.EOF
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "too far behind" in (raised.value.details() or "")
        await healthy.close()
        await stuck_channel.close()
        await healthy_channel.close()


@pytest.mark.parametrize("abort_each_limit", [ABORT_EACH_LIMIT, 0], ids=["each-stream-ends-itself", "grpc-cancels-all"])
async def test_shutdown_is_bounded_by_the_grace_even_with_a_client_that_stopped_reading(abort_each_limit: int) -> None:
    before = asyncio.all_tasks()
    broker = new_broker(scenario())
    server = build_server(broker, address="127.0.0.1:0")
    await server.start()
    target = f"127.0.0.1:{bound_port(server)}"
    async with (
        grpc.aio.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)]) as stuck_channel,
        grpc.aio.insecure_channel(target) as channel,
    ):
        stuck = falco_call(stuck_channel, NODE)
        await stuck.read()
        healthy = falco_watch(channel, NODE)
        await healthy.take(14)
        for i in range(20):  # enough to block the server's writes to the stuck client
            broker.apply(pod("web-1", owner=RS.ref, labels={"app": "nginx", "big": f"{i}" + "x" * 20_000}))
        await healthy.take(20)
        started = time.monotonic()
        await stop(server, broker, grace=0.3, abort_each_limit=abort_each_limit)
        assert time.monotonic() - started < 2.0
        assert (await healthy.status()).code() == grpc.StatusCode.UNAVAILABLE
        assert broker.subscriber_count == 0
        stuck.cancel()
    await quiesce(before)


async def test_a_resubscribe_within_the_grace_period_gets_deletes_for_what_vanished(
    broker: Broker, channel: grpc.aio.Channel
) -> None:
    first = falco_watch(channel, NODE, PLUGIN_KINDS)
    await first.take(13)
    await first.close()
    await wait_until(lambda: broker.subscriber_count == 0)
    # Meanwhile: the bare pod and the Deployment's ReplicaSet go (taking the Deployment's relevance with it).
    broker.delete(pod("bare-pod"))
    broker.delete(RS)
    broker.delete(DEP)
    second = falco_watch(channel, NODE, PLUGIN_KINDS)
    await wait_until(lambda: broker.subscriber_count == 1)
    current = [falco_event("Create", d.payload) for d in broker.index.snapshot(NODE) if d.kind != "DaemonSet"]
    got = await second.take(len(current) + 3)
    assert got[: len(current)] == current
    assert sorted(parse(got[len(current) :])) == [
        ("Delete", "Deployment", DEP.uid),
        ("Delete", "Pod", "bare-pod"),
        ("Delete", "ReplicaSet", RS.uid),
    ]
    await second.close()


async def test_a_hundred_streams_on_one_channel(broker: Broker, channel: grpc.aio.Channel) -> None:
    watchers = [falco_watch(channel, NODE if i % 2 else "n2") for i in range(100)]
    await wait_until(lambda: broker.subscriber_count == 100, timeout=10)
    for i, watcher in enumerate(watchers):
        await watcher.take(14 if i % 2 else 6, timeout=10)
    broker.apply(ServiceInfo(SVC_A.uid, SVC_A.name, SVC_A.namespace, labels={"v": "2"}, selector=SVC_A.selector))
    for watcher in watchers:
        assert parse(await watcher.take(1, timeout=10)) == [("Update", "Service", SVC_A.uid)]
    broker.close()
    for watcher in watchers:
        assert (await watcher.status()).code() == grpc.StatusCode.UNAVAILABLE


# -- the server's set-up ------------------------------------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_tls_from_pem_files(tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    cert, key = self_signed(tmp_path)
    broker = new_broker(scenario())
    server = build_server(broker, address="127.0.0.1:0", tls_cert=str(cert), tls_key=str(key))
    await server.start()
    credentials = grpc.ssl_channel_credentials(cert.read_bytes())
    target = f"127.0.0.1:{bound_port(server)}"
    options = [("grpc.ssl_target_name_override", "localhost")]
    async with grpc.aio.secure_channel(target, credentials, options=options) as channel:
        watcher = falco_watch(channel, NODE)
        assert len(await watcher.take(14)) == 14
        await stop(server, broker, grace=1)
        assert (await watcher.status()).code() == grpc.StatusCode.UNAVAILABLE
    await quiesce(before)


async def test_unusable_tls_files_and_ports_are_clear_errors(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    broker = new_broker()
    with pytest.raises(ServerConfigError, match=r"cannot read the TLS certificate .*missing\.crt: No such file"):
        build_server(broker, address="127.0.0.1:0", tls_cert=str(tmp_path / "missing.crt"), tls_key=str(key))
    with pytest.raises(ServerConfigError, match=r"cannot read the TLS key .*: Is a directory"):
        build_server(broker, address="127.0.0.1:0", tls_cert=str(cert), tls_key=str(tmp_path))
    (tmp_path / "empty.key").write_bytes(b"")
    with pytest.raises(ServerConfigError, match="not PEM"):
        build_server(broker, address="127.0.0.1:0", tls_cert=str(cert), tls_key=str(tmp_path / "empty.key"))
    with pytest.raises(ServerConfigError, match="both"):
        build_server(broker, address="127.0.0.1:0", tls_cert=str(cert))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerConfigError, match="cannot listen"):
            build_server(broker, address=f"127.0.0.1:{port}")


def test_server_options_keepalive_and_limits() -> None:
    options = dict(server_options(Settings()))
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.keepalive_timeout_ms"] == 10_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.max_send_message_length"] == 4 << 20
    assert options["grpc.so_reuseport"] == 0
    assert "grpc.max_connection_idle_ms" not in options
