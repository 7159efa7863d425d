"""HTTPS with the generated CA, bearer-token authentication, TokenRequest and TokenReview."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from tests.sim.wire import call, create, pod

REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"


@pytest.fixture
async def secure() -> AsyncIterator[tuple[SimServer, aiohttp.ClientSession, aiohttp.ClientSession]]:
    """The server, an admin session and an anonymous session, both verifying the server's CA."""
    async with SimServer(SimSettings(nodes=1, tls=True, auth=True, controllers=())) as server:
        assert server.tls is not None
        context = ssl.create_default_context(cadata=server.tls.ca_cert.decode())
        admin_headers = {"Authorization": f"Bearer {server.authenticator.admin_token}"}
        async with (
            aiohttp.ClientSession(
                base_url=server.url, headers=admin_headers, connector=aiohttp.TCPConnector(ssl=context)
            ) as admin,
            aiohttp.ClientSession(base_url=server.url, connector=aiohttp.TCPConnector(ssl=context)) as anonymous,
        ):
            yield server, admin, anonymous


async def test_tls_verifies_against_the_generated_ca(secure: tuple[SimServer, Any, Any]) -> None:
    server, _, _ = secure
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await plain.get(server.url + "/version")
    config = server.kubeconfig()
    assert config["clusters"][0]["cluster"]["certificate-authority-data"]
    assert config["users"][0]["user"]["token"] == server.authenticator.admin_token


async def test_requests_without_a_valid_token_get_401(
    secure: tuple[SimServer, aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    _, _, anonymous = secure
    status, body, _ = await call(anonymous, "GET", "/api/v1/pods")
    assert status == 401 and body["reason"] == "Unauthorized" and body["message"] == "Unauthorized"
    status, body, _ = await call(
        anonymous, "GET", "/api/v1/pods", headers={"Authorization": "Bearer forged.token.here"}
    )
    assert status == 401
    status, _, _ = await call(anonymous, "GET", "/version")
    assert status == 200


async def token_for(admin: aiohttp.ClientSession, pod_name: str = "", audiences: list[str] | None = None) -> str:
    spec: dict[str, Any] = {"expirationSeconds": 600}
    if audiences:
        spec["audiences"] = audiences
    if pod_name:
        _, live, _ = await call(admin, "GET", f"/api/v1/namespaces/default/pods/{pod_name}")
        spec["boundObjectRef"] = {
            "kind": "Pod",
            "apiVersion": "v1",
            "name": pod_name,
            "uid": live["metadata"]["uid"],
        }
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    status, body, _ = await call(admin, "POST", "/api/v1/namespaces/default/serviceaccounts/default/token", request)
    assert status == 201, body
    assert body["status"]["expirationTimestamp"].endswith("Z")
    return str(body["status"]["token"])


async def review(admin: aiohttp.ClientSession, token: str, audiences: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"token": token}
    if audiences:
        spec["audiences"] = audiences
    status, body, _ = await call(
        admin,
        "POST",
        REVIEWS,
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
    )
    assert status == 201, body
    return body  # type: ignore[no-any-return]


async def test_token_bound_to_a_pod_names_pod_and_node_until_the_pod_is_gone(
    secure: tuple[SimServer, aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    _, admin, anonymous = secure
    await create(admin, "/api/v1/namespaces/default/pods", pod("agent", nodeName="node-1"))
    token = await token_for(admin, "agent")
    body = await review(admin, token)
    status = body["status"]
    assert status["authenticated"] is True
    user = status["user"]
    assert user["username"] == "system:serviceaccount:default:default"
    assert user["groups"] == [
        "system:serviceaccounts",
        "system:serviceaccounts:default",
        "system:authenticated",
    ]
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["agent"]
    assert user["extra"]["authentication.kubernetes.io/node-name"] == ["node-1"]
    assert user["extra"]["authentication.kubernetes.io/credential-id"][0].startswith("JTI=")
    # The token also authenticates API requests.
    assert (await call(anonymous, "GET", "/api/v1/nodes", headers={"Authorization": f"Bearer {token}"}))[0] == 200
    await call(admin, "DELETE", "/api/v1/namespaces/default/pods/agent", {"gracePeriodSeconds": 0})
    gone = (await review(admin, token))["status"]
    assert "authenticated" not in gone and gone["user"] == {} and "has been deleted" in gone["error"]


async def test_token_review_audiences_and_garbage(
    secure: tuple[SimServer, aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    _, admin, _ = secure
    token = await token_for(admin, audiences=["nodemeta-collector"])
    assert (await review(admin, token, ["nodemeta-collector"]))["status"]["audiences"] == ["nodemeta-collector"]
    wrong = (await review(admin, token, ["someone-else"]))["status"]
    assert "authenticated" not in wrong and "audiences" in wrong["error"]
    garbage = (await review(admin, "not-a-token"))["status"]
    assert garbage["user"] == {} and garbage["error"]
    status, body, _ = await call(admin, "POST", REVIEWS, {"spec": {}})
    assert status == 400 and body["message"] == "token is required for TokenReview in authentication"


async def test_token_for_missing_service_account_is_404(
    secure: tuple[SimServer, aiohttp.ClientSession, aiohttp.ClientSession],
) -> None:
    _, admin, _ = secure
    status, body, _ = await call(admin, "POST", "/api/v1/namespaces/default/serviceaccounts/ghost/token", {"spec": {}})
    assert status == 404 and body["message"] == 'serviceaccounts "ghost" not found'
