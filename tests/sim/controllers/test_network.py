"""The EndpointSlice controller over HTTP: what a Service's slices hold as pods come, change and go.

Most tests run the endpointslice controller alone and write pod statuses themselves (as a kubelet would), so IPs,
readiness and termination are exactly what each test says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.builders import node_object
from nodemeta.sim.registry import DeleteOptions
from nodemeta.sim.resources import lookup
from tests.sim.wire import WatchReader, call, create, pod

SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
SERVICES = "/api/v1/namespaces/default/services"
PODS = "/api/v1/namespaces/default/pods"


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    async with SimServer(SimSettings(nodes=2, seed=3, controllers=("endpointslice",))) as sim:
        yield sim


@pytest.fixture
async def api(server: SimServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


async def settled(server: SimServer) -> None:
    async with asyncio.timeout(5):
        await server.settle()


def service(name: str = "web", selector: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    ports = spec.pop("ports", [{"name": "http", "port": 80, "targetPort": "http"}])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"team": "shop"}},
        "spec": {"selector": {"app": "web"} if selector is None else selector, "ports": ports, **spec},
    }


def web_pod(name: str, port: int = 8080, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    node = spec.pop("nodeName", "node-1")
    if node:
        spec["nodeName"] = node
    body = pod(name, labels={"app": "web"} if labels is None else labels, **spec)
    body["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": port}]
    return body


async def run(api: aiohttp.ClientSession, name: str, *ips: str, ready: bool = True) -> None:
    """Report the pod Running with `ips`, Ready or not, through pods/<name>/status (the kubelet's write)."""
    status = {
        "phase": "Running",
        "podIP": ips[0],
        "podIPs": [{"ip": ip} for ip in ips],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "status": status}
    code, answer, _ = await call(api, "PUT", f"{PODS}/{name}/status", body)
    assert code == 200, answer


async def slices(api: aiohttp.ClientSession, svc: str = "web") -> list[dict[str, Any]]:
    code, body, _ = await call(api, "GET", SLICES, labelSelector=f"kubernetes.io/service-name={svc}")
    assert code == 200, body
    return sorted(body["items"], key=lambda s: (s["addressType"], s["metadata"]["name"]))


def endpoints(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["targetRef"]["name"]: e for s in items for e in s["endpoints"]}


async def test_slice_shape_labels_owner_and_ports(server: SimServer, api: aiohttp.ClientSession) -> None:
    created = await create(api, SERVICES, service())
    await create(api, PODS, web_pod("web-1"))
    await run(api, "web-1", "10.244.1.7")
    await settled(server)
    [only] = await slices(api)
    meta = only["metadata"]
    assert meta["generateName"] == "web-" and meta["name"].startswith("web-")
    assert meta["labels"] == {"team": "shop", "kubernetes.io/service-name": "web",
                              "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}  # fmt: skip
    assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                        "uid": created["metadata"]["uid"], "controller": True,
                                        "blockOwnerDeletion": True}]  # fmt: skip
    assert "endpoints.kubernetes.io/last-change-trigger-time" in meta["annotations"]
    assert only["addressType"] == "IPv4"
    assert only["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    [endpoint] = only["endpoints"]
    assert endpoint["addresses"] == ["10.244.1.7"] and endpoint["nodeName"] == "node-1"
    assert endpoint["conditions"] == {"ready": True, "serving": True, "terminating": False}


async def test_endpoints_follow_labels_ips_readiness_and_phase(server: SimServer, api: aiohttp.ClientSession) -> None:
    await create(api, SERVICES, service())
    await create(api, PODS, web_pod("a"))
    await create(api, PODS, web_pod("b"))
    await create(api, PODS, web_pod("c"))
    await run(api, "a", "10.244.1.2")
    await run(api, "b", "10.244.1.3", ready=False)
    await settled(server)
    found = endpoints(await slices(api))
    assert set(found) == {"a", "b"}  # c has no IP yet
    assert found["b"]["conditions"] == {"ready": False, "serving": False, "terminating": False}

    relabel = {"metadata": {"labels": {"app": "other"}}}
    await call(api, "PATCH", f"{PODS}/a", relabel, ctype="application/merge-patch+json")
    status = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "b"},
        "status": {"phase": "Failed", "podIP": "10.244.1.3"},
    }
    await call(api, "PUT", f"{PODS}/b/status", status)
    await settled(server)
    assert endpoints(await slices(api)) == {}

    await call(
        api, "PATCH", f"{PODS}/a", {"metadata": {"labels": {"app": "web"}}}, ctype="application/merge-patch+json"
    )
    await settled(server)
    assert set(endpoints(await slices(api))) == {"a"}


async def test_terminating_pod_stays_listed_not_ready_until_it_is_gone(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, SERVICES, service())
    await create(api, PODS, web_pod("a"))
    await run(api, "a", "10.244.1.2")
    await settled(server)
    code, _, _ = await call(api, "DELETE", f"{PODS}/a")  # graceful: nobody stops it in this test
    assert code == 200
    await settled(server)
    [endpoint] = (await slices(api))[0]["endpoints"]
    assert endpoint["conditions"] == {"ready": False, "serving": True, "terminating": True}
    await call(api, "DELETE", f"{PODS}/a", gracePeriodSeconds=0)
    await settled(server)
    assert [s["endpoints"] for s in await slices(api)] == [[]]


async def test_named_target_ports_resolve_per_pod_into_separate_slices(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    ports = [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "metrics", "port": 9100, "targetPort": 9100}]
    await create(api, SERVICES, service(ports=ports))
    await create(api, PODS, web_pod("old", port=8080))
    await create(api, PODS, web_pod("new", port=9090))
    await run(api, "old", "10.244.1.2")
    await run(api, "new", "10.244.1.3")
    await settled(server)
    by_port = {s["ports"][0]["port"]: [e["targetRef"]["name"] for e in s["endpoints"]] for s in await slices(api)}
    assert by_port == {8080: ["old"], 9090: ["new"]}
    assert all(s["ports"][1] == {"name": "metrics", "port": 9100, "protocol": "TCP"} for s in await slices(api))


async def test_large_services_are_split_and_endpoints_stay_in_place(server: SimServer) -> None:
    registry = server.registry
    pods = lookup("", "v1", "pods")
    assert pods is not None
    registry.create(lookup("", "v1", "services"), "default", service())  # type: ignore[arg-type]

    def start(i: int) -> None:
        registry.create(pods, "default", web_pod(f"p{i:03d}"))
        status = {"phase": "Running", "podIP": f"10.244.{i // 200}.{i % 200 + 2}",
                  "conditions": [{"type": "Ready", "status": "True"}]}  # fmt: skip
        registry.update(pods, "default", f"p{i:03d}", {"status": status}, subresource="status")

    for i in range(250):
        start(i)
    await settled(server)
    async with aiohttp.ClientSession(base_url=server.url) as api:
        first = await slices(api)
        assert sorted(len(s["endpoints"]) for s in first) == [50, 100, 100]
        where = {e["targetRef"]["name"]: s["metadata"]["name"] for s in first for e in s["endpoints"]}
        assert len(where) == 250

        for i in range(0, 250, 5):
            registry.delete(pods, "default", f"p{i:03d}", DeleteOptions(grace_period=0))
        await settled(server)
        after = await slices(api)
        moved = {e["targetRef"]["name"]: s["metadata"]["name"] for s in after for e in s["endpoints"]}
        assert len(moved) == 200 and all(where[name] == slice_name for name, slice_name in moved.items())

        for i in range(250, 290):
            start(i)
        await settled(server)
        final = await slices(api)
        assert len(final) == 3 and all(len(s["endpoints"]) <= 100 for s in final)
        assert len(endpoints(final)) == 240


async def test_unrelated_changes_write_nothing(server: SimServer, api: aiohttp.ClientSession) -> None:
    await create(api, SERVICES, service())
    await create(api, PODS, web_pod("a"))
    await run(api, "a", "10.244.1.2")
    await settled(server)
    before = [s["metadata"]["resourceVersion"] for s in await slices(api)]
    note = {"metadata": {"annotations": {"note": "hello"}}}
    await call(api, "PATCH", f"{PODS}/a", note, ctype="application/merge-patch+json")
    await call(api, "PATCH", f"{SERVICES}/web", note, ctype="application/merge-patch+json")
    await settled(server)
    assert [s["metadata"]["resourceVersion"] for s in await slices(api)] == before


async def test_slices_go_when_the_selector_or_service_goes(server: SimServer, api: aiohttp.ClientSession) -> None:
    await create(api, SERVICES, service())
    await create(api, PODS, web_pod("a"))
    await run(api, "a", "10.244.1.2")
    await settled(server)
    assert len(await slices(api)) == 1
    await call(api, "PATCH", f"{SERVICES}/web", {"spec": {"selector": None}}, ctype="application/merge-patch+json")
    await settled(server)
    assert await slices(api) == []
    await call(
        api, "PATCH", f"{SERVICES}/web", {"spec": {"selector": {"app": "web"}}}, ctype="application/merge-patch+json"
    )
    await settled(server)
    assert set(endpoints(await slices(api))) == {"a"}
    await call(api, "DELETE", f"{SERVICES}/web")
    await settled(server)
    assert await slices(api) == []


async def test_a_slice_removed_by_someone_else_is_recreated(server: SimServer, api: aiohttp.ClientSession) -> None:
    await create(api, SERVICES, service())
    await create(api, PODS, web_pod("a"))
    await run(api, "a", "10.244.1.2")
    await settled(server)
    [gone] = await slices(api)
    await call(api, "DELETE", f"{SLICES}/{gone['metadata']['name']}")
    await settled(server)
    [again] = await slices(api)
    assert again["metadata"]["name"] != gone["metadata"]["name"] and set(endpoints([again])) == {"a"}


async def test_empty_service_headless_labels_zone_hostname_and_publish_not_ready(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, SERVICES, service("empty", selector={"app": "nothing"}))
    node = node_object("zoned", 5, time.time())
    node["metadata"]["labels"]["topology.kubernetes.io/zone"] = "eu-west-1a"
    await create(api, "/api/v1/nodes", node)
    await create(api, SERVICES, service("db", selector={"app": "db"}, clusterIP="None", publishNotReadyAddresses=True))
    await create(api, PODS, web_pod("db-0", labels={"app": "db"}, nodeName="zoned", hostname="db-0", subdomain="db"))
    await run(api, "db-0", "10.244.5.2", ready=False)
    await settled(server)

    [placeholder] = await slices(api, "empty")
    assert (placeholder["addressType"], placeholder["endpoints"], placeholder["ports"]) == ("IPv4", [], [])
    [headless] = await slices(api, "db")
    assert headless["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    [endpoint] = headless["endpoints"]
    assert endpoint["zone"] == "eu-west-1a" and endpoint["hostname"] == "db-0"
    assert endpoint["conditions"] == {"ready": True, "serving": False, "terminating": False}


async def test_ipv6_addresses_get_their_own_slice_and_other_namespaces_are_ignored(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, "/api/v1/namespaces", {"metadata": {"name": "other"}})
    await create(api, SERVICES, service())
    await create(api, PODS, web_pod("a"))
    await run(api, "a", "10.244.1.2", "fd00:10:244:1::2")
    await create(api, "/api/v1/namespaces/other/pods", {**web_pod("stranger"), "metadata": {"name": "stranger",
                 "namespace": "other", "labels": {"app": "web"}}})  # fmt: skip
    await settled(server)
    by_type = {s["addressType"]: [e["addresses"] for e in s["endpoints"]] for s in await slices(api)}
    assert by_type == {"IPv4": [["10.244.1.2"]], "IPv6": [["fd00:10:244:1::2"]]}


async def test_watchers_see_the_endpoint_appear_after_the_pod_starts() -> None:
    settings = SimSettings(nodes=1, seed=5, controllers=("scheduler", "kubelet", "endpointslice"))
    async with SimServer(settings) as server, aiohttp.ClientSession(base_url=server.url) as api:
        await create(api, SERVICES, service())
        async with api.get(SLICES, params={"watch": "1"}) as response:
            watch = WatchReader(response)
            await create(api, PODS, web_pod("live", nodeName=None))
            seen = await watch.until(lambda e: bool(e["object"]["endpoints"]))
        [endpoint] = seen[-1]["object"]["endpoints"]
        assert endpoint["conditions"]["ready"] is True and endpoint["targetRef"]["name"] == "live"
        assert endpoint["addresses"][0].startswith("10.244.1.")


async def test_a_port_change_rewrites_the_slice_in_place(server: SimServer, api: aiohttp.ClientSession) -> None:
    await create(api, SERVICES, service())
    await create(api, PODS, web_pod("a"))
    await run(api, "a", "10.244.1.2")
    await settled(server)
    [before] = await slices(api)
    ports = {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 9000}]}}
    await call(api, "PATCH", f"{SERVICES}/web", ports, ctype="application/merge-patch+json")
    await settled(server)
    [after] = await slices(api)
    assert after["metadata"]["name"] == before["metadata"]["name"]
    assert after["ports"] == [{"name": "http", "port": 9000, "protocol": "TCP"}]
    assert set(endpoints([after])) == {"a"}
