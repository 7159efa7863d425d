"""Fidelity: the real kubectl binary against the simulator, through a kubeconfig the simulator wrote.

These tests fail (never skip) when kubectl is missing: CI must have it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nodemeta.sim import SimServer, SimSettings

pytestmark = pytest.mark.kubectl

# The README's example manifest: Namespace, Deployment, DaemonSet, two Services, Pod, ReplicaSet and RC.
MANIFEST = (Path(__file__).parents[2] / "docs" / "examples" / "shop.yaml").read_text()


def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not installed: the kubectl fidelity tests need it on PATH")
    return found


class Kubectl:
    def __init__(self, kubeconfig: Path, home: Path) -> None:
        self.binary = kubectl_binary()
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}
        self.cache = str(home / "cache")

    async def run(
        self, *args: str, stdin: str | None = None, timeout: float = 30, check: bool = True
    ) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            self.binary, f"--cache-dir={self.cache}", *args, env=self.env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), timeout)
        code = proc.returncode or 0
        if check and code != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {code}: {err.decode()}")
        return code, out.decode(), err.decode()

    async def json(self, *args: str) -> Any:
        _, out, _ = await self.run(*args, "-o", "json")
        return json.loads(out)


@pytest.fixture(params=["http", "https+token"])
async def kubectl(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Kubectl]:
    secure = request.param == "https+token"
    async with SimServer(SimSettings(nodes=2, tls=secure, auth=secure, bookmark_interval=1, controllers=())) as server:
        path = server.write_kubeconfig(tmp_path / "kubeconfig")
        yield Kubectl(path, tmp_path)


async def test_apply_get_and_reapply(kubectl: Kubectl) -> None:
    _, out, _ = await kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    for line in ("namespace/shop created", "deployment.apps/web created", "daemonset.apps/agent created",
                 "service/web created", "service/headless created", "pod/debug created",
                 "replicaset.apps/legacy created", "replicationcontroller/older created"):  # fmt: skip
        assert line in out
    _, out, _ = await kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    assert "deployment.apps/web unchanged" in out and "pod/debug unchanged" in out
    changed = MANIFEST.replace("nginx:1.27", "nginx:1.28")
    _, out, _ = await kubectl.run("apply", "-f", "-", stdin=changed)
    assert "deployment.apps/web configured" in out
    listing = await kubectl.json("get", "deployments,daemonsets,services,pods,replicasets,replicationcontrollers", "-A")
    kinds = {(i["kind"], i["metadata"]["name"]) for i in listing["items"]}
    expected = {
        ("Deployment", "web"), ("DaemonSet", "agent"), ("Service", "web"), ("Service", "headless"), ("Pod", "debug"),
        ("ReplicaSet", "legacy"), ("ReplicationController", "older"), ("Service", "kubernetes"),
    }  # fmt: skip
    assert expected <= kinds
    deploy = await kubectl.json("get", "deployment", "web", "-n", "shop")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert deploy["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert deploy["metadata"]["generation"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in deploy["metadata"]["annotations"]


async def test_human_output_and_raw(kubectl: Kubectl) -> None:
    await kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    _, out, _ = await kubectl.run("get", "pods", "-n", "shop")
    assert out.splitlines()[0].split()[:3] == ["NAME", "READY", "STATUS"]
    assert "debug" in out
    _, out, _ = await kubectl.run("get", "nodes")
    assert "node-1" in out and "Ready" in out
    _, out, _ = await kubectl.run("get", "--raw", "/api/v1/namespaces/shop/pods/debug")
    assert json.loads(out)["metadata"]["name"] == "debug"
    _, out, _ = await kubectl.run("get", "--raw", "/version")
    assert json.loads(out)["gitVersion"] == "v1.32.0"
    _, out, _ = await kubectl.run("get", "po,svc", "-n", "shop", "-l", "role=debug", "-o", "name")
    assert out.split() == ["pod/debug"]


async def test_label_annotate_and_patch(kubectl: Kubectl) -> None:
    await kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    await kubectl.run("label", "pod", "debug", "-n", "shop", "tier=backend")
    await kubectl.run("annotate", "pod", "debug", "-n", "shop", "owner=team-a")
    pod = await kubectl.json("get", "pod", "debug", "-n", "shop")
    assert pod["metadata"]["labels"] == {"role": "debug", "tier": "backend"}
    assert pod["metadata"]["annotations"]["owner"] == "team-a"
    code, _, err = await kubectl.run("label", "pod", "debug", "-n", "shop", "tier=frontend", check=False)
    assert code != 0 and "already has a value" in err
    await kubectl.run("label", "pod", "debug", "-n", "shop", "tier-")
    await kubectl.run("patch", "deployment", "web", "-n", "shop", "--type=merge", "-p", '{"spec":{"replicas":5}}')
    image = '{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.29"}]}}}}'
    await kubectl.run("patch", "deployment", "web", "-n", "shop", "-p", image)
    await kubectl.run("patch", "deployment", "web", "-n", "shop", "--type=json", "-p",
                      '[{"op":"add","path":"/metadata/labels/patched","value":"yes"}]')  # fmt: skip
    deploy = await kubectl.json("get", "deployment", "web", "-n", "shop")
    assert deploy["spec"]["replicas"] == 5
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.29" and container["ports"][0]["containerPort"] == 80
    assert deploy["metadata"]["labels"]["patched"] == "yes"
    pod = await kubectl.json("get", "pod", "debug", "-n", "shop")
    assert pod["metadata"]["labels"] == {"role": "debug"}


async def test_watch_shows_added_modified_deleted(kubectl: Kubectl) -> None:
    await kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    proc = await asyncio.create_subprocess_exec(
        kubectl.binary, f"--cache-dir={kubectl.cache}", "get", "pods", "-n", "shop", "-w", "--output-watch-events",
        "-o", "custom-columns=EVENT:.type,NAME:.object.metadata.name,TIER:.object.metadata.labels.tier",
        env=kubectl.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        lines: list[list[str]] = []

        async def read_until(expected: list[str]) -> None:
            while expected not in lines:
                raw = await asyncio.wait_for(proc.stdout.readline(), 15)  # type: ignore[union-attr]
                assert raw, f"kubectl get -w ended early; saw {lines}"
                lines.append(raw.decode().split())

        await read_until(["ADDED", "debug", "<none>"])
        await kubectl.run("label", "pod", "debug", "-n", "shop", "tier=x")
        await read_until(["MODIFIED", "debug", "x"])
        await kubectl.run("delete", "pod", "debug", "-n", "shop", timeout=20)
        await read_until(["DELETED", "debug", "x"])
    finally:
        proc.kill()
        await proc.wait()


async def test_delete_returns_promptly(kubectl: Kubectl) -> None:
    await kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    loop = asyncio.get_running_loop()
    started = loop.time()
    _, out, _ = await kubectl.run("delete", "deployment", "web", "-n", "shop", timeout=20)
    assert 'deployment.apps "web" deleted' in out
    _, out, _ = await kubectl.run("delete", "pod", "debug", "-n", "shop", timeout=20)
    assert 'pod "debug" deleted' in out
    assert loop.time() - started < 15
    code, _, err = await kubectl.run("get", "deployment", "web", "-n", "shop", check=False)
    assert code != 0 and 'deployments.apps "web" not found' in err


async def test_errors_are_reported_like_kube_apiserver(kubectl: Kubectl) -> None:
    code, _, err = await kubectl.run("get", "pod", "nope", check=False)
    assert code != 0 and 'pods "nope" not found' in err
    bad = MANIFEST.split("---\n")[1].replace("replicas: 2", "replicas: 2\n  replica: 3")
    code, _, err = await kubectl.run(
        "apply",
        "-f",
        "-",
        stdin="apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n" + bad,
        check=False,
    )
    assert code != 0 and 'unknown field "spec.replica"' in err
    code, _, err = await kubectl.run("get", "widgets", check=False)
    assert code != 0 and "doesn't have a resource type" in err


async def test_scale_subresource(kubectl: Kubectl) -> None:
    await kubectl.run("apply", "-f", "-", stdin=MANIFEST)
    for kind in ("deployment/web", "replicaset/legacy", "replicationcontroller/older"):
        _, out, _ = await kubectl.run("scale", kind, "-n", "shop", "--replicas=4")
        assert "scaled" in out
        obj = await kubectl.json("get", kind, "-n", "shop")
        assert obj["spec"]["replicas"] == 4
    _, out, _ = await kubectl.run("get", "--raw", "/apis/apps/v1/namespaces/shop/deployments/web/scale")
    scale = json.loads(out)
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 4} and scale["status"]["selector"] == "app=web"
    code, _, err = await kubectl.run(
        "scale", "deployment/web", "-n", "shop", "--replicas=2", "--resource-version=1", check=False
    )
    assert code != 0 and "Expected resource version to be 1" in err
