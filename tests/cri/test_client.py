"""CRI client behaviour over a real gRPC unix socket: retries, error translation, the event stream's cancellation,
socket discovery. The real runtime's answers are covered in test_client_lab.py."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from nodemeta.api.cri.runtime.v1 import api_pb2 as cri
from nodemeta.cri.client import CriClient, socket_target
from nodemeta.cri.discovery import NoRuntimeFound, candidate_paths, discover_runtime
from nodemeta.cri.model import ContainerEvent, ContainerEventType, CriError, CriNotFound, CriUnavailable, CriUnsupported
from nodemeta.cri.settings import DEFAULT_SOCKETS, CriSettings
from tests.cri.runtime_server import RuntimeServer
from tests.lab.harness import ContainerdLab

FAST = CriSettings(not_found_retries=3, not_found_backoff=0.01)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RuntimeServer]:
    async with RuntimeServer(tmp_path / "runtime.sock") as running:
        yield running


@pytest.fixture
async def client(server: RuntimeServer) -> AsyncIterator[CriClient]:
    async with CriClient(str(server.path), settings=FAST) as running:
        yield running


async def test_brand_new_container_is_retried(server: RuntimeServer, client: CriClient) -> None:
    server.runtime.not_found_before_answer = 3
    container = await client.container("c1")
    assert (container.id, container.sandbox_id, container.pid) == ("c1", "s1", 0)  # state CREATED: no pid
    assert server.runtime.status_calls == 4


async def test_not_found_is_reported_after_bounded_retries(server: RuntimeServer, client: CriClient) -> None:
    server.runtime.not_found_before_answer = 100
    with pytest.raises(CriNotFound, match="ContainerStatus: NOT_FOUND: container 'c1' not found"):
        await client.container("c1")
    assert server.runtime.status_calls == FAST.not_found_retries + 1


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.UNAVAILABLE, CriUnavailable),
        (grpc.StatusCode.UNIMPLEMENTED, CriUnsupported),
        (grpc.StatusCode.INTERNAL, CriError),
        (grpc.StatusCode.PERMISSION_DENIED, CriError),
    ],
)
async def test_error_codes_are_translated_once(
    server: RuntimeServer, client: CriClient, code: grpc.StatusCode, error: type[CriError]
) -> None:
    server.runtime.status_error = code
    with pytest.raises(error) as raised:
        await client.container("c1")
    assert type(raised.value) is error
    assert isinstance(raised.value.__cause__, grpc.aio.AioRpcError)
    assert server.runtime.status_calls == 1  # only NOT_FOUND is retried


async def test_unimplemented_call(client: CriClient) -> None:
    with pytest.raises(CriUnsupported, match="ListPodSandbox"):
        await client.list_sandboxes()


async def test_missing_socket_is_unavailable(tmp_path: Path) -> None:
    async with CriClient(str(tmp_path / "absent.sock")) as client:
        with pytest.raises(CriUnavailable, match="Version: UNAVAILABLE"):
            await client.version()


async def test_events_stream_and_cancellation(server: RuntimeServer, client: CriClient) -> None:
    received: asyncio.Queue[ContainerEvent] = asyncio.Queue()

    async def consume() -> None:
        async for event in client.events():
            await received.put(event)

    task = asyncio.create_task(consume())
    async with asyncio.timeout(10):
        await server.runtime.events_open.wait()
        await server.runtime.events.put(
            cri.ContainerEventResponse(
                container_id="c9", container_event_type=cri.ContainerEventType.CONTAINER_STARTED_EVENT, created_at=5
            )
        )
        event = await received.get()
    assert (event.type, event.container_id, event.created_at) == (ContainerEventType.STARTED, "c9", 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Cancelling the consumer cancels the RPC: the server sees its stream end.
    async with asyncio.timeout(10):
        await server.runtime.events_closed.wait()


async def test_events_stream_broken_by_the_runtime(tmp_path: Path) -> None:
    async with RuntimeServer(tmp_path / "r.sock") as server, CriClient(str(server.path)) as client:
        stream = client.events()
        first = asyncio.ensure_future(anext(stream))
        async with asyncio.timeout(10):
            await server.runtime.events_open.wait()
        await server.__aexit__(None, None, None)
        with pytest.raises(CriUnavailable, match="GetContainerEvents"):
            await first
        await stream.aclose()


def test_socket_targets() -> None:
    assert socket_target("/run/containerd/containerd.sock") == "unix:///run/containerd/containerd.sock"
    assert socket_target("unix:///run/crio/crio.sock") == "unix:///run/crio/crio.sock"
    assert socket_target("relative.sock") == "unix:relative.sock"


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="call_timeout"):
        CriSettings(call_timeout=0)
    with pytest.raises(ValueError, match="reconnect_backoff_max"):
        CriSettings(reconnect_backoff_min=3, reconnect_backoff_max=1)
    assert CriSettings().call_timeout == 1.0


# ---- discovery


def test_candidate_paths() -> None:
    assert candidate_paths() == list(DEFAULT_SOCKETS)
    assert candidate_paths(host_root="/host/")[0] == "/host/run/containerd/containerd.sock"
    assert candidate_paths(["unix:///a.sock", "/b.sock", "/a.sock"], host_root="/h") == ["/h/a.sock", "/h/b.sock"]


async def test_discovery_takes_the_first_that_answers(tmp_path: Path) -> None:
    root = tmp_path / "host"
    (root / "run" / "containerd").mkdir(parents=True)
    (root / "run" / "containerd" / "containerd.sock").write_text("a regular file")
    # A socket that accepts connections but speaks no gRPC.
    (root / "run" / "crio").mkdir(parents=True)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(root / "run" / "crio" / "crio.sock"))
    silent.listen()
    (root / "run" / "k3s" / "containerd").mkdir(parents=True)
    try:
        async with RuntimeServer(root / "run" / "k3s" / "containerd" / "containerd.sock") as server:
            quick = CriSettings(call_timeout=0.5)
            found = await discover_runtime(host_root=str(root), settings=quick)
            assert found.path == str(server.path)
            assert found.version.runtime_name == "scripted"
            # A configured list replaces the defaults.
            with pytest.raises(NoRuntimeFound) as raised:
                await discover_runtime(["/run/crio/crio.sock"], host_root=str(root), settings=quick)
            assert [path for path, _ in raised.value.tried] == [str(root / "run" / "crio" / "crio.sock")]
    finally:
        silent.close()


async def test_nothing_answers(tmp_path: Path) -> None:
    (tmp_path / "run" / "containerd").mkdir(parents=True)
    (tmp_path / "run" / "containerd" / "containerd.sock").write_text("")
    with pytest.raises(NoRuntimeFound) as raised:
        await discover_runtime(host_root=str(tmp_path))
    tried = dict(raised.value.tried)
    assert list(tried) == [str(tmp_path) + path for path in DEFAULT_SOCKETS]
    assert tried[str(tmp_path / "run/containerd/containerd.sock")] == "is not a socket"
    assert tried[str(tmp_path / "run/crio/crio.sock")] == "does not exist"
    assert "run/crio/crio.sock: does not exist" in str(raised.value)
    assert isinstance(raised.value, CriUnavailable)


async def test_discovery_finds_the_lab(lab: ContainerdLab, tmp_path: Path) -> None:
    found = await discover_runtime([str(tmp_path / "none.sock"), str(lab.socket)])
    assert found.path == str(lab.socket)
    assert found.version.runtime_name == "containerd"
