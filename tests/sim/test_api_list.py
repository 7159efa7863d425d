"""List semantics over HTTP: paging, resourceVersion rules, selectors and metadata-only responses."""

from __future__ import annotations

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from tests.sim.wire import call, create, pod

META_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
PROTOBUF_FIRST = (
    "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
    + META_LIST
    + ",application/json"
)


async def make_pods(api: aiohttp.ClientSession, count: int, ns: str = "default") -> list[str]:
    names = []
    for i in range(count):
        body = await create(
            api,
            f"/api/v1/namespaces/{ns}/pods",
            pod(f"p{i:02d}", ns, {"i": str(i), "parity": "even" if i % 2 == 0 else "odd"}),
        )
        names.append(body["metadata"]["name"])
    return names


async def test_pages_share_one_snapshot_while_the_store_changes(api: aiohttp.ClientSession) -> None:
    names = await make_pods(api, 7)
    status, first, _ = await call(api, "GET", "/api/v1/namespaces/default/pods", limit=3)
    assert status == 200
    assert first["kind"] == "PodList" and first["apiVersion"] == "v1"
    assert [p["metadata"]["name"] for p in first["items"]] == names[:3]
    assert first["metadata"]["remainingItemCount"] == 4
    assert all("kind" not in item for item in first["items"])
    # Changes after the first page must not show in later pages.
    await call(api, "DELETE", "/api/v1/namespaces/default/pods/p05")
    await create(api, "/api/v1/namespaces/default/pods", pod("p99"))
    seen = [p["metadata"]["name"] for p in first["items"]]
    token = first["metadata"]["continue"]
    while token:
        status, page, _ = await call(api, "GET", "/api/v1/namespaces/default/pods", limit=3, **{"continue": token})
        assert status == 200, page
        assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
        seen += [p["metadata"]["name"] for p in page["items"]]
        token = page["metadata"].get("continue")
    assert seen == names


async def test_list_rv_is_global_and_items_sorted_across_namespaces(api: aiohttp.ClientSession) -> None:
    await create(api, "/api/v1/namespaces", {"metadata": {"name": "zeta"}})
    await create(api, "/api/v1/namespaces/zeta/pods", pod("a", "zeta"))
    await create(api, "/api/v1/namespaces/default/pods", pod("b"))
    _, body, _ = await call(api, "GET", "/api/v1/pods")
    keys = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in body["items"]]
    assert keys == sorted(keys)
    rvs = [int(p["metadata"]["resourceVersion"]) for p in body["items"]]
    assert int(body["metadata"]["resourceVersion"]) >= max(rvs)


async def test_rv_zero_ignores_limit_and_exact_serves_history(api: aiohttp.ClientSession) -> None:
    await make_pods(api, 4)
    _, whole, _ = await call(api, "GET", "/api/v1/pods", limit=2, resourceVersion="0")
    assert len(whole["items"]) == 4 and "continue" not in whole["metadata"]
    rv_before = whole["metadata"]["resourceVersion"]
    await call(api, "DELETE", "/api/v1/namespaces/default/pods/p00")
    _, exact, _ = await call(api, "GET", "/api/v1/pods", resourceVersion=rv_before, resourceVersionMatch="Exact")
    assert len(exact["items"]) == 4
    assert exact["metadata"]["resourceVersion"] == rv_before
    _, newer, _ = await call(api, "GET", "/api/v1/pods", resourceVersion=rv_before, resourceVersionMatch="NotOlderThan")
    assert len(newer["items"]) == 3


@pytest.mark.parametrize(
    ("params", "code", "fragment"),
    [
        (
            {"resourceVersionMatch": "Exact"},
            422,
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ),
        (
            {"resourceVersionMatch": "Exact", "resourceVersion": "0"},
            422,
            'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
        ),
        ({"resourceVersionMatch": "Sometime", "resourceVersion": "1"}, 422, 'Unsupported value: "Sometime"'),
        ({"continue": "garbage!", "limit": "1"}, 400, "invalid continue token"),
        ({"sendInitialEvents": "true"}, 422, "sendInitialEvents is forbidden for list"),
        ({"limit": "x"}, 400, "invalid syntax"),
        ({"resourceVersion": "abc"}, 400, 'invalid resource version "abc"'),
    ],
)
async def test_list_option_errors(api: aiohttp.ClientSession, params: dict[str, str], code: int, fragment: str) -> None:
    status, body, _ = await call(api, "GET", "/api/v1/pods", **params)
    assert status == code, body
    assert body["kind"] == "Status" and body["code"] == code
    assert fragment in body["message"]


async def test_continue_with_resource_version_is_rejected(api: aiohttp.ClientSession) -> None:
    await make_pods(api, 3)
    _, first, _ = await call(api, "GET", "/api/v1/pods", limit=1)
    status, body, _ = await call(
        api,
        "GET",
        "/api/v1/pods",
        limit=1,
        resourceVersion="5",
        **{"continue": first["metadata"]["continue"]},
    )
    assert status == 400
    assert body["message"] == "specifying resource version is not allowed when using continue"


async def test_expired_continue_token_gives_410_with_a_fresh_token(sim: SimServer, api: aiohttp.ClientSession) -> None:
    await make_pods(api, 3)
    _, first, _ = await call(api, "GET", "/api/v1/pods", limit=1)
    await call(api, "DELETE", "/api/v1/namespaces/default/pods/p02")
    sim.store.compact()
    status, body, _ = await call(api, "GET", "/api/v1/pods", limit=1, **{"continue": first["metadata"]["continue"]})
    assert status == 410 and body["reason"] == "Expired"
    assert body["message"].startswith("The provided continue parameter is too old")
    fresh = body["metadata"]["continue"]
    status, rest, _ = await call(api, "GET", "/api/v1/pods", limit=5, **{"continue": fresh})
    assert status == 200
    assert [p["metadata"]["name"] for p in rest["items"]] == ["p01"]


async def test_future_resource_version_times_out_with_504() -> None:
    async with (
        SimServer(SimSettings(future_rv_wait=0.2, controllers=())) as sim,
        aiohttp.ClientSession(base_url=sim.url) as api,
    ):
        status, body, resp = await call(api, "GET", "/api/v1/pods", resourceVersion=str(sim.store.rv + 100), limit=5)
    assert status == 504
    assert body["message"] == f"Timeout: Too large resource version: {sim.store.rv + 100}, current: {sim.store.rv}"
    assert body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
    assert resp.headers["Retry-After"] == "1"


async def test_label_and_field_selectors(api: aiohttp.ClientSession) -> None:
    await make_pods(api, 6)
    _, body, _ = await call(api, "GET", "/api/v1/pods", labelSelector="parity=even,i notin (4)")
    assert [p["metadata"]["name"] for p in body["items"]] == ["p00", "p02"]
    _, body, _ = await call(api, "GET", "/api/v1/pods", labelSelector="parity!=odd", limit=2)
    assert "remainingItemCount" not in body["metadata"] and body["metadata"]["continue"]
    _, body, _ = await call(api, "GET", "/api/v1/pods", fieldSelector="spec.nodeName=")
    assert len(body["items"]) == 6
    _, body, _ = await call(api, "GET", "/api/v1/pods", fieldSelector="metadata.name=p03")
    assert [p["metadata"]["name"] for p in body["items"]] == ["p03"]


@pytest.mark.parametrize(
    ("path", "selector", "message"),
    [
        ("/api/v1/pods", "spec.nodeNam=x", "field label not supported: spec.nodeNam"),
        (
            "/apis/apps/v1/deployments",
            "spec.replicas=1",
            '"spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
    ],
)
async def test_unsupported_field_selector_texts(
    api: aiohttp.ClientSession, path: str, selector: str, message: str
) -> None:
    status, body, _ = await call(api, "GET", path, fieldSelector=selector)
    assert status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == message


async def test_bad_label_selector_is_400(api: aiohttp.ClientSession) -> None:
    status, body, _ = await call(api, "GET", "/api/v1/pods", labelSelector="a in (b")
    assert status == 400 and body["reason"] == "BadRequest"


async def test_partial_object_metadata_first_json_clause_wins(api: aiohttp.ClientSession) -> None:
    await make_pods(api, 2)
    status, body, resp = await call(api, "GET", "/api/v1/pods", headers={"Accept": PROTOBUF_FIRST})
    assert status == 200
    assert resp.headers["Content-Type"].startswith("application/json;g=meta.k8s.io;v=v1;as=PartialObjectMetadataList")
    assert body["kind"] == "PartialObjectMetadataList" and body["apiVersion"] == "meta.k8s.io/v1"
    item = body["items"][0]
    assert item["kind"] == "PartialObjectMetadata" and set(item) == {"kind", "apiVersion", "metadata"}
    assert item["metadata"]["labels"]["i"] == "0"
    status, one, _ = await call(
        api,
        "GET",
        "/api/v1/namespaces/default/pods/p00",
        headers={"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"},
    )
    assert status == 200 and one["kind"] == "PartialObjectMetadata" and "spec" not in one


@pytest.mark.parametrize(
    ("path", "accept"),
    [
        ("/api/v1/pods", "application/vnd.kubernetes.protobuf"),
        ("/api/v1/pods", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"),
        (
            "/api/v1/namespaces/default/pods/x",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        ),
        ("/api/v1/pods", "text/html"),
    ],
)
async def test_unacceptable_media_types_get_406(api: aiohttp.ClientSession, path: str, accept: str) -> None:
    await create(api, "/api/v1/namespaces/default/pods", pod("x"))
    status, body, _ = await call(api, "GET", path, headers={"Accept": accept})
    assert status == 406 and body["reason"] == "NotAcceptable"


async def test_table_for_kubectl(api: aiohttp.ClientSession) -> None:
    await make_pods(api, 2)
    accept = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,"
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    )
    status, body, _ = await call(api, "GET", "/api/v1/namespaces/default/pods", headers={"Accept": accept})
    assert status == 200 and body["kind"] == "Table"
    names = [c["name"] for c in body["columnDefinitions"]]
    assert names[0] == "Name"
    assert [r["cells"][0] for r in body["rows"]] == ["p00", "p01"]
    assert all(len(r["cells"]) == len(names) for r in body["rows"])
