"""Fidelity: the official `kubernetes` Python client against the simulator.

The client is synchronous (urllib3), so each call runs in a worker thread while the server runs on the test's loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from nodemeta.sim import SimServer, SimSettings

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.fixture(params=["http", "https+token"])
async def k8s(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[SimServer, client.ApiClient]]:
    secure = request.param == "https+token"
    async with SimServer(
        SimSettings(nodes=1, tls=secure, auth=secure, bookmark_interval=0.3, controllers=())
    ) as server:
        path = server.write_kubeconfig(tmp_path / "kubeconfig")
        api_client = config.new_client_from_config(config_file=str(path))
        try:
            yield server, api_client
        finally:
            await in_thread(api_client.close)


def pod_body(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
    }  # fmt: skip


async def test_paginated_list(k8s: tuple[SimServer, client.ApiClient]) -> None:
    _, api_client = k8s
    core = client.CoreV1Api(api_client)
    for i in range(5):
        await in_thread(core.create_namespaced_pod, "default", pod_body(f"p{i}"))
    names: list[str] = []
    token = None
    pages = 0
    while True:
        page = await in_thread(core.list_namespaced_pod, "default", limit=2, _continue=token)
        pages += 1
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"p{i}" for i in range(5)] and pages == 3


async def test_watch_from_resource_version_with_bookmarks(k8s: tuple[SimServer, client.ApiClient]) -> None:
    _, api_client = k8s
    core = client.CoreV1Api(api_client)
    listed = await in_thread(core.list_namespaced_pod, "default")
    rv = listed.metadata.resource_version
    await in_thread(core.create_namespaced_pod, "default", pod_body("w1"))
    await in_thread(core.patch_namespaced_pod, "w1", "default", {"metadata": {"labels": {"x": "1"}}})
    await in_thread(core.delete_namespaced_pod, "w1", "default")

    def collect() -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        w = watch.Watch()
        for event in w.stream(
            core.list_namespaced_pod,
            "default",
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=2,
        ):
            raw = event["raw_object"]
            seen.append((event["type"], raw["metadata"].get("name", "")))
            if event["type"] == "BOOKMARK":
                w.stop()
        return seen

    seen = await in_thread(collect)
    assert seen[:3] == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]
    assert seen[-1][0] == "BOOKMARK"


async def test_watch_from_compacted_version_raises_410(k8s: tuple[SimServer, client.ApiClient]) -> None:
    server, api_client = k8s
    core = client.CoreV1Api(api_client)
    created = await in_thread(core.create_namespaced_pod, "default", pod_body("old"))
    await in_thread(core.create_namespaced_pod, "default", pod_body("newer"))
    server.store.compact()

    def watch_old() -> None:
        for _ in watch.Watch().stream(
            core.list_namespaced_pod, "default", resource_version=created.metadata.resource_version
        ):
            pass

    with pytest.raises(ApiException) as info:
        await in_thread(watch_old)
    assert info.value.status == 410


async def test_create_patch_delete_typed(k8s: tuple[SimServer, client.ApiClient]) -> None:
    _, api_client = k8s
    apps = client.AppsV1Api(api_client)
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
    }  # fmt: skip
    created = await in_thread(apps.create_namespaced_deployment, "default", body)
    assert created.metadata.uid and created.spec.replicas == 1
    patched = await in_thread(apps.patch_namespaced_deployment, "web", "default", {"spec": {"replicas": 3}})
    assert patched.spec.replicas == 3 and patched.metadata.generation == 2
    # A list body goes out as a JSON patch.
    patched = await in_thread(
        apps.patch_namespaced_deployment,
        "web",
        "default",
        [{"op": "replace", "path": "/spec/replicas", "value": 4}],
    )
    assert patched.spec.replicas == 4
    status = await in_thread(apps.delete_namespaced_deployment, "web", "default")
    # The generated client returns the Status as a model or as a plain dict depending on its version.
    body = status if isinstance(status, dict) else api_client.sanitize_for_serialization(status)
    assert body["kind"] == "Status" and body["status"] == "Success"
    with pytest.raises(ApiException) as info:
        await in_thread(apps.read_namespaced_deployment, "web", "default")
    assert info.value.status == 404
    assert json.loads(info.value.body)["message"] == 'deployments.apps "web" not found'


async def test_conflict_and_not_found_exceptions(k8s: tuple[SimServer, client.ApiClient]) -> None:
    _, api_client = k8s
    core = client.CoreV1Api(api_client)
    await in_thread(core.create_namespaced_pod, "default", pod_body("a"))
    with pytest.raises(ApiException) as info:
        await in_thread(core.create_namespaced_pod, "default", pod_body("a"))
    assert info.value.status == 409 and json.loads(info.value.body)["reason"] == "AlreadyExists"


async def test_partial_object_metadata_via_raw_api(k8s: tuple[SimServer, client.ApiClient]) -> None:
    _, api_client = k8s
    core = client.CoreV1Api(api_client)
    await in_thread(core.create_namespaced_pod, "default", pod_body("m", {"app": "m"}))
    accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"

    def fetch() -> tuple[Any, str]:
        response = api_client.call_api(
            "GET", api_client.configuration.host + "/api/v1/namespaces/default/pods",
            header_params={"Accept": accept, **_auth(api_client)},
        )  # fmt: skip
        response.read()
        return json.loads(response.data), response.getheader("Content-Type")

    body, ctype = await in_thread(fetch)
    assert "as=PartialObjectMetadataList" in ctype
    assert body["kind"] == "PartialObjectMetadataList"
    assert body["items"][0]["metadata"]["labels"] == {"app": "m"} and "spec" not in body["items"][0]


def _auth(api_client: client.ApiClient) -> dict[str, str]:
    key = api_client.configuration.api_key.get("authorization") or api_client.configuration.api_key.get("BearerToken")
    if not key:
        return {}
    prefix = api_client.configuration.api_key_prefix.get("authorization", "")
    return {"Authorization": f"{prefix} {key}".strip() if not str(key).startswith("Bearer") else key}
