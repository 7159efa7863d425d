"""The HTTP adapter against the simulator: pages, watch lines, metadata-only negotiation and error translation."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodemeta.kube import (
    PODS,
    REPLICASETS,
    ApiClient,
    BearerToken,
    ClientSettings,
    ClusterConfig,
    Codec,
    ConnectionLost,
    Failure,
    NotFound,
    Pod,
    RequestTimeout,
    ServerError,
    Throttled,
    Unauthorized,
    WatchStalled,
)
from nodemeta.kube.client import _lines
from nodemeta.kube.resources import METADATA_LIST_ACCEPT, METADATA_WATCH_ACCEPT
from nodemeta.sim import SimServer, SimSettings
from tests.kube.cluster import POD_RES, Cluster


def raw(body: bytes) -> bytes:
    return body


async def first_lines(lines: AsyncIterator[bytes], count: int) -> list[bytes]:
    out = []
    async with asyncio.timeout(5):
        async for line in lines:
            out.append(line)
            if len(out) == count:
                break
    return out


async def test_list_pages_follow_continue_tokens(client: ApiClient, cluster: Cluster) -> None:
    for i in range(5):
        cluster.pod(f"p{i}")
    codec = Codec(Pod)
    page = await client.list_page(PODS.path, {"limit": "2"}, codec.decode_list)
    assert [p.metadata.name for p in page.items] == ["p0", "p1"]
    assert page.metadata.continue_
    assert page.metadata.remaining_item_count == 3
    rest = await client.list_page(PODS.path, {"limit": "10", "continue": page.metadata.continue_}, codec.decode_list)
    assert [p.metadata.name for p in rest.items] == ["p2", "p3", "p4"]
    assert rest.metadata.continue_ == ""
    assert rest.metadata.resource_version == page.metadata.resource_version


async def test_metadata_only_accept_headers_get_partial_object_metadata(client: ApiClient, cluster: Cluster) -> None:
    cluster.replicaset("web")
    body = await client.list_page(REPLICASETS.path, {}, raw, accept=METADATA_LIST_ACCEPT)
    listed = msgspec.json.decode(body)
    assert listed["kind"] == "PartialObjectMetadataList"
    assert "spec" not in listed["items"][0]
    params = {"watch": "true", "resourceVersion": "0"}
    async with client.watch(REPLICASETS.path, params, accept=METADATA_WATCH_ACCEPT, inactivity_timeout=5) as lines:
        [line] = await first_lines(lines, 1)
    event = msgspec.json.decode(line)
    assert event["object"]["kind"] == "PartialObjectMetadata"
    assert event["object"]["metadata"]["name"] == "web"


async def test_watch_lines_longer_than_aiohttp_buffers(client: ApiClient, kube_sim: SimServer) -> None:
    big = "x" * (300 * 1024)  # far beyond aiohttp's 64 KiB readline limit
    body = {
        "metadata": {"name": "big", "annotations": {"blob": big}},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }
    start = str(kube_sim.store.rv)
    kube_sim.registry.create(POD_RES, "default", body)
    kube_sim.registry.create(POD_RES, "default", {**body, "metadata": {"name": "small"}})
    params = {"watch": "true", "resourceVersion": start}
    async with client.watch(PODS.path, params, inactivity_timeout=5) as lines:
        got = await first_lines(lines, 2)
    assert len(got[0]) > len(big)
    assert msgspec.json.decode(got[0])["object"]["metadata"]["annotations"]["blob"] == big
    codec = Codec(Pod)
    events = [codec.decode_event(line) for line in got]
    assert [e.object.metadata.name for e in events if not isinstance(e, Failure)] == ["big", "small"]  # type: ignore[union-attr]


async def test_expired_watch_yields_an_error_event(client: ApiClient, cluster: Cluster, kube_sim: SimServer) -> None:
    cluster.pod("a")
    kube_sim.faults.compact()
    async with client.watch(PODS.path, {"watch": "true", "resourceVersion": "1"}, inactivity_timeout=5) as lines:
        got = [line async for line in lines]
    [event] = [Codec(Pod).decode_event(line) for line in got]
    assert isinstance(event, Failure)
    assert event.status.code == 410
    assert event.status.reason == "Expired"


async def test_not_found_is_translated_from_the_status(client: ApiClient) -> None:
    with pytest.raises(NotFound) as caught:
        await client.list_page("/api/v1/namespaces/default/pods/missing", {}, raw)
    assert caught.value.status == 404
    assert caught.value.reason == "NotFound"
    assert '"missing" not found' in caught.value.message


async def test_plain_text_429_is_throttled_with_retry_after(client: ApiClient, kube_sim: SimServer) -> None:
    kube_sim.faults.throttle(1.0, retry_after=7)
    with pytest.raises(Throttled) as caught:
        await client.list_page(PODS.path, {}, raw)
    assert caught.value.retry_after == 7
    assert "Too many requests" in caught.value.message
    with pytest.raises(Throttled):
        async with client.watch(PODS.path, {"watch": "true"}, inactivity_timeout=5):
            pass


async def test_5xx_is_a_server_error(client: ApiClient, kube_sim: SimServer) -> None:
    kube_sim.faults.burst(2, 503)
    with pytest.raises(ServerError) as caught:
        await client.list_page(PODS.path, {}, raw)
    assert (caught.value.status, caught.value.reason) == (503, "ServiceUnavailable")
    with pytest.raises(ServerError):
        async with client.watch(PODS.path, {"watch": "true"}, inactivity_timeout=5):
            pass


async def test_slow_list_hits_the_request_deadline(config: ClusterConfig, kube_sim: SimServer) -> None:
    kube_sim.faults.slow(2.0)
    async with ApiClient(config, settings=ClientSettings(request_timeout=0.2)) as client:
        with pytest.raises(RequestTimeout):
            await client.list_page(PODS.path, {}, raw)


async def test_hung_watch_stalls(client: ApiClient, kube_sim: SimServer) -> None:
    async with client.watch(PODS.path, {"watch": "true"}, inactivity_timeout=0.3) as lines:
        await asyncio.sleep(0.05)
        kube_sim.faults.hang_watches()
        with pytest.raises(WatchStalled):
            async for _ in lines:
                pass


async def test_dropped_watch_is_connection_lost(client: ApiClient, kube_sim: SimServer, cluster: Cluster) -> None:
    params = {"watch": "true", "resourceVersion": str(kube_sim.store.rv)}
    async with client.watch(PODS.path, params, inactivity_timeout=5) as lines:
        cluster.pod("a")
        await first_lines(lines, 1)
        kube_sim.faults.drop_watches()
        with pytest.raises(ConnectionLost):
            async for _ in lines:
                pass


async def test_refused_connection_is_connection_lost() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with ApiClient(ClusterConfig(server=f"http://127.0.0.1:{port}")) as client:
        with pytest.raises(ConnectionLost):
            await client.list_page(PODS.path, {}, raw)
        with pytest.raises(ConnectionLost):
            async with client.watch(PODS.path, {"watch": "true"}, inactivity_timeout=1):
                pass


async def test_rejected_token_is_unauthorized() -> None:
    async with SimServer(SimSettings(controllers=(), auth=True)) as sim:
        async with ApiClient(ClusterConfig(server=sim.url, credentials=BearerToken("wrong"))) as client:
            with pytest.raises(Unauthorized) as caught:
                await client.list_page(PODS.path, {}, raw)
            assert caught.value.status == 401
        async with ApiClient(
            ClusterConfig(server=sim.url, credentials=BearerToken(sim.authenticator.admin_token))
        ) as ok:
            await ok.list_page(PODS.path, {}, raw)


class _Chunks:
    """A stand-in for aiohttp's StreamReader: hands out pre-cut chunks, then b"" (end of stream)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def readany(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


@given(
    lines=st.lists(st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\n", b"_")), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=10),
)
def test_line_splitting_does_not_depend_on_chunk_boundaries(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    points = sorted({c for c in cuts if 0 < c < len(stream)})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True) if stream[a:b]]

    async def collect() -> list[bytes]:
        reader: Any = _Chunks(chunks)
        return [line async for line in _lines(reader, "/x", 5.0)]

    assert asyncio.run(collect()) == lines


def test_a_last_line_without_newline_is_still_delivered() -> None:
    async def collect() -> list[bytes]:
        reader: Any = _Chunks([b'{"a":1}\n{"b"', b":2}"])
        return [line async for line in _lines(reader, "/x", 5.0)]

    assert asyncio.run(collect()) == [b'{"a":1}', b'{"b":2}']


async def test_closing_the_client_closes_its_session(config: ClusterConfig) -> None:
    client = ApiClient(config)
    async with client:
        await client.list_page(PODS.path, {}, raw)
        assert not client.closed
    assert client.closed
    await client.close()  # a second close is harmless
