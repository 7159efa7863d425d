"""The namespace controller over real HTTP and through kubectl: content removal, conditions, finalization."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.registry import DeleteOptions, Registry
from nodemeta.sim.resources import lookup, stored_resources
from nodemeta.sim.store import Store
from tests.sim.wire import WatchReader, call, create, pod

NS = "team"
SETTINGS = SimSettings(seed=7, controllers=("garbagecollector", "namespace"))
CONTENT = """\
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: team, labels: {app: api}}
spec:
  containers: [{name: api, image: nginx:1.27}]
---
apiVersion: v1
kind: Pod
metadata: {name: worker, namespace: team}
spec:
  containers: [{name: worker, image: busybox:1.36}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: team}
data: {mode: fast}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: team}
spec:
  selector: {app: api}
  ports: [{port: 80}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: team}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: busybox:1.36}]
"""


@pytest.fixture
async def server() -> AsyncIterator[SimServer]:
    async with SimServer(SETTINGS) as sim:
        yield sim


@pytest.fixture
async def api(server: SimServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


async def kubectl(server: SimServer, home: Path, *args: str, stdin: str | None = None) -> str:
    """Run the real kubectl against `server` with its own kubeconfig and HOME; fail on a non-zero exit."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail("kubectl is not installed: the kubectl tests need it on PATH")
    env = {**os.environ, "KUBECONFIG": str(server.write_kubeconfig(home / "kc")), "HOME": str(home)}
    proc = await asyncio.create_subprocess_exec(
        binary, *args, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 20)
    assert proc.returncode == 0, f"kubectl {' '.join(args)} exited {proc.returncode}: {err.decode()}"
    return out.decode()


async def settle(server: SimServer) -> None:
    async with asyncio.timeout(10):
        await server.settle()
    assert server.manager is not None and server.manager.errors == 0, "a reconcile raised"


async def get(api: aiohttp.ClientSession, path: str) -> dict[str, Any] | None:
    status, body, _ = await call(api, "GET", path)
    if status == 404:
        return None
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def delete(api: aiohttp.ClientSession, path: str, **params: Any) -> None:
    status, body, _ = await call(api, "DELETE", path, **params)
    assert status in (200, 202), body


def conditions(namespace: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    found = namespace["status"].get("conditions") or []
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in found}


async def names(api: aiohttp.ClientSession, path: str) -> list[str]:
    body = await get(api, path)
    assert body is not None
    return [item["metadata"]["name"] for item in body["items"]]


@pytest.mark.kubectl
async def test_kubectl_delete_namespace_removes_it_and_everything_in_it(
    server: SimServer, api: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await kubectl(server, tmp_path, "apply", "-f", "-", stdin=CONTENT)
    job = await get(api, f"/apis/batch/v1/namespaces/{NS}/jobs/migrate")
    assert job is not None
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "migrate", "uid": job["metadata"]["uid"]}
    job_pod = pod("migrate-x2b4k", NS, restartPolicy="Never")
    job_pod["metadata"]["ownerReferences"] = [owner]
    await create(api, f"/api/v1/namespaces/{NS}/pods", job_pod)

    params = {"watch": "1", "fieldSelector": f"metadata.name={NS}"}
    async with api.get("/api/v1/namespaces", params=params) as response:
        reader = WatchReader(response)
        out = await kubectl(server, tmp_path, "delete", "namespace", NS)
        assert f'namespace "{NS}" deleted' in out
        events = await reader.until(lambda e: e["type"] == "DELETED")
    terminating = [e["object"] for e in events if e["type"] == "MODIFIED"]
    assert terminating and terminating[-1]["status"]["phase"] == "Terminating"
    assert set(conditions(terminating[-1])) == {
        "NamespaceDeletionDiscoveryFailure", "NamespaceDeletionGroupVersionParsingFailure",
        "NamespaceDeletionContentFailure", "NamespaceContentRemaining", "NamespaceFinalizersRemaining",
    }  # fmt: skip
    assert await get(api, f"/api/v1/namespaces/{NS}") is None
    for path in ("pods", "configmaps", "services", "serviceaccounts"):
        assert await names(api, f"/api/v1/namespaces/{NS}/{path}") == []
    assert await names(api, f"/apis/batch/v1/namespaces/{NS}/jobs") == []


async def test_foreign_finalizer_keeps_the_namespace_terminating(server: SimServer, api: aiohttp.ClientSession) -> None:
    await create(api, "/api/v1/namespaces", {"metadata": {"name": NS}})
    held = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    await create(api, f"/api/v1/namespaces/{NS}/configmaps", held)
    await create(api, f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "plain"}})
    await delete(api, f"/api/v1/namespaces/{NS}")
    await settle(server)

    namespace = await get(api, f"/api/v1/namespaces/{NS}")
    assert namespace is not None and namespace["status"]["phase"] == "Terminating"
    assert namespace["spec"]["finalizers"] == ["kubernetes"]
    assert conditions(namespace) == {
        "NamespaceDeletionDiscoveryFailure": ("False", "ResourcesDiscovered", "All resources successfully discovered"),
        "NamespaceDeletionGroupVersionParsingFailure":
            ("False", "ParsedGroupVersions", "All legacy kube types successfully parsed"),
        "NamespaceDeletionContentFailure":
            ("False", "ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
        "NamespaceContentRemaining":
            ("True", "SomeResourcesRemain", "Some resources are remaining: configmaps. has 1 resource instances"),
        "NamespaceFinalizersRemaining": (
            "True", "SomeFinalizersRemain",
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances",
        ),
    }  # fmt: skip
    assert await names(api, f"/api/v1/namespaces/{NS}/configmaps") == ["held"]
    status, body, _ = await call(api, "POST", f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "new"}})
    assert status == 403, body

    patch = {"metadata": {"finalizers": None}}
    path = f"/api/v1/namespaces/{NS}/configmaps/held"
    status, body, _ = await call(api, "PATCH", path, patch, ctype="application/merge-patch+json")
    assert status == 200, body
    await settle(server)
    assert await get(api, f"/api/v1/namespaces/{NS}") is None


async def test_terminating_pods_hold_the_namespace_until_their_kubelet_lets_go(
    server: SimServer, api: aiohttp.ClientSession
) -> None:
    await create(api, "/api/v1/namespaces", {"metadata": {"name": NS}})
    for name in ("bound-a", "bound-b"):
        await create(api, f"/api/v1/namespaces/{NS}/pods", pod(name, NS, nodeName="node-1"))
    await delete(api, f"/api/v1/namespaces/{NS}")
    await settle(server)
    namespace = await get(api, f"/api/v1/namespaces/{NS}")
    assert namespace is not None
    remaining = conditions(namespace)["NamespaceContentRemaining"]
    assert remaining == ("True", "SomeResourcesRemain", "Some resources are remaining: pods. has 2 resource instances")
    assert conditions(namespace)["NamespaceFinalizersRemaining"][0] == "False"
    bound = await get(api, f"/api/v1/namespaces/{NS}/pods/bound-a")
    assert bound is not None and bound["metadata"]["deletionGracePeriodSeconds"] == 30

    # What the kubelet does once the containers have stopped.
    await delete(api, f"/api/v1/namespaces/{NS}/pods/bound-a", gracePeriodSeconds=0)
    await settle(server)
    namespace = await get(api, f"/api/v1/namespaces/{NS}")
    assert namespace is not None
    assert conditions(namespace)["NamespaceContentRemaining"][2].endswith("pods. has 1 resource instances")
    await delete(api, f"/api/v1/namespaces/{NS}/pods/bound-b", gracePeriodSeconds=0)
    await settle(server)
    assert await get(api, f"/api/v1/namespaces/{NS}") is None


async def test_a_large_namespace_is_emptied_in_batches(server: SimServer, api: aiohttp.ClientSession) -> None:
    res = lookup("", "v1", "configmaps")
    assert res is not None
    await create(api, "/api/v1/namespaces", {"metadata": {"name": NS}})
    for i in range(1_200):
        server.registry.create(res, NS, {"metadata": {"name": f"cm-{i:04d}"}})
    await delete(api, f"/api/v1/namespaces/{NS}")
    await settle(server)
    assert await get(api, f"/api/v1/namespaces/{NS}") is None
    assert server.registry.find("configmaps", NS, "cm-0000") is None
    assert not list(server.registry.iter_objects(res, NS))


async def test_controller_started_late_finishes_a_pending_namespace_deletion() -> None:
    registry = Registry(Store(stored_resources(), history_limit=1000), seed=7)
    registry.bootstrap()
    ns_res, cm_res = lookup("", "v1", "namespaces"), lookup("", "v1", "configmaps")
    assert ns_res is not None and cm_res is not None
    registry.create(ns_res, "", {"metadata": {"name": NS}})
    registry.create(cm_res, NS, {"metadata": {"name": "leftover"}})
    registry.delete(ns_res, "", NS, DeleteOptions())
    async with SimServer(SETTINGS, registry=registry) as server:
        # The manager queues its initial keys once its task first runs; settle() alone could return before that.
        await asyncio.sleep(0)
        await settle(server)
    assert registry.find("namespaces", "", NS) is None
    assert registry.find("configmaps", NS, "leftover") is None
    assert registry.find("namespaces", "", "default") is not None
