"""Bad input gets the API server's answers, and never corrupts the store or stops the server."""

from __future__ import annotations

import aiohttp
import pytest

from nodemeta.sim import SimServer
from tests.sim.wire import call, create, pod

PODS = "/api/v1/namespaces/default/pods"


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b"[1,2]", b'"a string"', b"\xff\xfe", b'{"metadata": 5}', b"null"],
)
async def test_malformed_bodies_are_400(sim: SimServer, api: aiohttp.ClientSession, raw: bytes) -> None:
    before = sim.store.rv
    status, body, _ = await call(api, "POST", PODS, raw)
    assert status == 400, body
    assert body["kind"] == "Status" and body["reason"] == "BadRequest"
    assert sim.store.rv == before


async def test_wrong_content_type_is_415(api: aiohttp.ClientSession) -> None:
    status, body, _ = await call(api, "POST", PODS, pod("a"), ctype="text/plain")
    assert status == 415 and body["reason"] == "UnsupportedMediaType"


async def test_yaml_bodies_are_accepted(api: aiohttp.ClientSession) -> None:
    doc = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: y\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
    status, body, _ = await call(api, "POST", PODS, doc, ctype="application/yaml")
    assert status == 201 and body["metadata"]["name"] == "y"


async def test_oversized_body_is_413(sim: SimServer, api: aiohttp.ClientSession) -> None:
    big = pod("a")
    big["metadata"]["annotations"] = {"x": "y" * (4 * 1024 * 1024)}  # type: ignore[index]
    status, body, _ = await call(api, "POST", PODS, big)
    assert status == 413 and body["reason"] == "RequestEntityTooLarge"
    assert (await call(api, "GET", "/version"))[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", "/api/v1/widgets", 404),
        ("GET", "/apis/nope.example.com/v1/things", 404),
        ("GET", "/api/v1/namespaces/default/nodes", 404),
        ("GET", "/api/v1/namespaces/default/pods/a/exec", 404),
        ("PUT", "/api/v1/namespaces/default/pods", 405),
        ("GET", "/apis/authentication.k8s.io/v1/tokenreviews", 405),
        ("DELETE", "/api/v1/namespaces", 405),
        ("POST", "/api/v1/pods", 405),
    ],
)
async def test_unknown_resources_and_verbs(api: aiohttp.ClientSession, method: str, path: str, code: int) -> None:
    status, body, _ = await call(api, method, path, {} if method in ("PUT", "POST") else None)
    assert status == code, body
    assert body["kind"] == "Status" and body["code"] == code


async def test_wrong_kind_or_version_in_body(api: aiohttp.ClientSession) -> None:
    status, _, _ = await call(api, "POST", PODS, {**pod("a"), "apiVersion": "v2"})
    assert status == 400
    status, _, _ = await call(api, "POST", PODS, {**pod("a"), "kind": "Service"})
    assert status == 400


async def test_bad_patches(api: aiohttp.ClientSession) -> None:
    await create(api, PODS, pod("a"))
    cases = [
        (b"{", "application/merge-patch+json", 400),
        (b'{"op": "add"}', "application/json-patch+json", 400),
        (b"[1]", "application/strategic-merge-patch+json", 400),
        (b'{"metadata": {"name": "other"}}', "application/merge-patch+json", 422),
    ]
    for raw, ctype, code in cases:
        status, body, _ = await call(api, "PATCH", f"{PODS}/a", raw, ctype=ctype)
        assert status == code, (raw, body)
    _, still, _ = await call(api, "GET", f"{PODS}/a")
    assert still["metadata"]["name"] == "a"


async def test_bad_query_flags(api: aiohttp.ClientSession) -> None:
    status, body, _ = await call(api, "GET", PODS, watch="yes")
    assert status == 400 and "ParseBool" in body["message"]
    status, body, _ = await call(api, "POST", PODS, pod("a"), fieldValidation="Loud")
    assert status == 400
    status, body, _ = await call(api, "DELETE", f"{PODS}/a", {"propagationPolicy": "Sideways"})
    assert status in (404, 422)


async def test_server_survives_random_junk(sim: SimServer, api: aiohttp.ClientSession) -> None:
    import random

    rng = random.Random(3)
    before = sim.store.rv
    for _ in range(200):
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
        method = rng.choice(["POST", "PUT", "PATCH"])
        ctype = rng.choice(
            [
                "application/json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/json-patch+json",
                "application/yaml",
            ]
        )
        status, _, _ = await call(api, method, PODS + ("/x" if method != "POST" else ""), junk, ctype=ctype)
        assert 400 <= status < 500
    assert sim.store.rv == before
    assert (await call(api, "GET", "/api/v1/pods"))[0] == 200
