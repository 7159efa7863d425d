"""runtime.v1 messages -> model: hand-built messages shaped like containerd's and CRI-O's answers, and fuzzed info."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nodemeta.api.cri.runtime.v1 import api_pb2 as cri
from nodemeta.cri import convert
from nodemeta.cri.model import ContainerEventType, ContainerState, SandboxState

SANDBOX_ID = "a" * 64
CONTAINER_ID = "b" * 64
NETNS = "/var/run/netns/cni-0b4c2a1e-1111-2222-3333-444455556666"


def containerd_sandbox_info(**overrides: Any) -> dict[str, Any]:
    """The parts of containerd 1.6's verbose sandbox info the agent reads (as seen from the lab)."""
    info: dict[str, Any] = {
        "pid": 4242,
        "processStatus": "running",
        "netNamespaceClosed": False,
        "image": "docker.io/nodemeta/lab-busybox:1",
        "runtimeSpec": {
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network", "path": NETNS}]
            }
        },
        "cniResult": {
            "Interfaces": {
                "eth0": {
                    "IPConfigs": [
                        {"IP": "10.88.0.2", "Gateway": "10.88.0.1"},
                        {"IP": "fd00:88::2", "Gateway": "fd00:88::1"},
                    ],
                    "Mac": "f6:a0:5c:39:43:65",
                    "Sandbox": NETNS,
                },
                "lo": {"IPConfigs": [{"IP": "127.0.0.1", "Gateway": ""}], "Mac": "00:00:00:00:00:00", "Sandbox": NETNS},
                "cni0": {"IPConfigs": None, "Mac": "66:22:53:79:8e:c6", "Sandbox": ""},
                "vetheeef91a4": {"IPConfigs": None, "Mac": "36:d2:17:59:a7:a0", "Sandbox": ""},
            },
            "DNS": [{}, {}],
            "Routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    info.update(overrides)
    return info


def sandbox_response(info: dict[str, Any] | str | None, *, host_network: bool = False) -> cri.PodSandboxStatusResponse:
    node, pod = cri.NamespaceMode.NODE, cri.NamespaceMode.POD
    status = cri.PodSandboxStatus(
        id=SANDBOX_ID,
        metadata=cri.PodSandboxMetadata(name="web-0", uid="uid-1", namespace="shop", attempt=2),
        state=cri.PodSandboxState.SANDBOX_READY,
        created_at=123,
        network=cri.PodSandboxNetworkStatus(
            ip="" if host_network else "10.88.0.2",
            additional_ips=[] if host_network else [cri.PodIP(ip="fd00:88::2"), cri.PodIP(ip="10.88.0.2")],
        ),
        linux=cri.LinuxPodSandboxStatus(
            namespaces=cri.Namespace(
                options=cri.NamespaceOption(network=node if host_network else pod, pid=node, ipc=pod)
            )
        ),
        labels={"app": "web", "io.kubernetes.pod.name": "web-0"},
        annotations={"note": "x"},
        runtime_handler="runc",
    )
    raw = info if isinstance(info, str) else json.dumps(info) if info is not None else None
    return cri.PodSandboxStatusResponse(status=status, info={} if raw is None else {"info": raw})


def container_response(info: dict[str, Any] | str | None, state: int = 1) -> cri.ContainerStatusResponse:
    status = cri.ContainerStatus(
        id=CONTAINER_ID,
        metadata=cri.ContainerMetadata(name="web", attempt=1),
        state=state,  # type: ignore[arg-type]
        created_at=10,
        started_at=11,
        finished_at=0,
        exit_code=0,
        image=cri.ImageSpec(image="docker.io/library/nginx:1.27"),
        image_ref="sha256:" + "c" * 64,
        labels={"io.kubernetes.container.name": "web"},
        annotations={"io.kubernetes.container.hash": "1234"},
        mounts=[cri.Mount(container_path="/data", host_path="/var/lib/data", readonly=True, propagation=1)],
    )
    raw = info if isinstance(info, str) else json.dumps(info) if info is not None else None
    return cri.ContainerStatusResponse(status=status, info={} if raw is None else {"info": raw})


def test_containerd_sandbox() -> None:
    sandbox = convert.sandbox(sandbox_response(containerd_sandbox_info()))
    assert sandbox.id == SANDBOX_ID
    assert (sandbox.name, sandbox.namespace, sandbox.uid, sandbox.attempt) == ("web-0", "shop", "uid-1", 2)
    assert sandbox.state is SandboxState.READY
    assert sandbox.ips == ("10.88.0.2", "fd00:88::2")  # primary first, IPv6 kept, duplicates dropped
    assert (sandbox.host_network, sandbox.host_pid, sandbox.host_ipc) == (False, True, False)
    assert sandbox.netns_path == NETNS
    assert sandbox.pid == 4242
    assert sandbox.labels == {"app": "web", "io.kubernetes.pod.name": "web-0"}
    assert sandbox.annotations == {"note": "x"}
    assert sandbox.runtime_handler == "runc"
    assert json.loads(sandbox.cni_result) == {
        "Interfaces": {
            "eth0": {
                "IPConfigs": [
                    {"IP": "10.88.0.2", "Gateway": "10.88.0.1"},
                    {"IP": "fd00:88::2", "Gateway": "fd00:88::1"},
                ]
            },
            "cni0": {"IPConfigs": None},
        },
        "DNS": [{}, {}],
        "Routes": [{"dst": "0.0.0.0/0"}],
    }
    assert " " not in sandbox.cni_result


def test_host_network_sandbox_without_info() -> None:
    sandbox = convert.sandbox(sandbox_response(None, host_network=True))
    assert sandbox.host_network
    assert sandbox.ips == ()
    assert (sandbox.netns_path, sandbox.pid, sandbox.cni_result) == ("", 0, "")


def test_crio_sandbox_cni_result_annotation() -> None:
    cni = {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "aa"},
            {"name": "veth1", "mac": "bb"},
            {"name": "eth0", "mac": "cc", "sandbox": NETNS},
            {"name": "lo", "mac": "00"},
        ],
        "ips": [
            {"address": "10.85.0.7/16", "gateway": "10.85.0.1", "interface": 2},
            {"address": "1100:200::7/24", "interface": 2},
            {"address": "127.0.0.1/8", "interface": 3},
            {"address": "192.0.2.1/32"},
        ],
    }
    info = {
        "pid": 77,
        "runtimeSpec": {
            "annotations": {"io.kubernetes.cri-o.CNIResult": json.dumps(cni)},
            "linux": {"namespaces": [{"type": "network", "path": "/var/run/netns/abc"}]},
        },
    }
    sandbox = convert.sandbox(sandbox_response(info))
    assert sandbox.pid == 77
    assert sandbox.netns_path == "/var/run/netns/abc"
    assert json.loads(sandbox.cni_result) == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0"}, {"name": "eth0"}],
        "ips": [
            {"address": "10.85.0.7/16", "gateway": "10.85.0.1", "interface": 1},
            {"address": "1100:200::7/24", "interface": 1},
            {"address": "192.0.2.1/32"},
        ],
    }


def test_cni_result_cut_to_the_limit_stays_valid_json() -> None:
    interfaces = {
        f"net{i}": {"IPConfigs": [{"IP": f"10.{i}.0.{j}", "Gateway": f"10.{i}.0.1"} for j in range(8)]}
        for i in range(60)
    }
    result = {"Interfaces": interfaces, "DNS": [{}], "Routes": [{"dst": "0.0.0.0/0"}]}
    assert len(json.dumps(result)) > 4096
    text = convert.trim_cni_result(result)
    assert 0 < len(text.encode()) <= convert.CNI_RESULT_LIMIT
    kept = json.loads(text)
    # What is kept is a part of the original: every kept interface and address is a real one.
    for name, value in kept.get("Interfaces", {}).items():
        assert all(ip in interfaces[name]["IPConfigs"] for ip in value["IPConfigs"])


def test_empty_cni_results() -> None:
    assert convert.trim_cni_result(None) == ""
    assert convert.trim_cni_result({}) == ""
    assert convert.trim_cni_result("") == ""
    assert convert.trim_cni_result("not json") == ""
    assert convert.trim_cni_result([1, 2]) == ""
    assert json.loads(convert.trim_cni_result({"Interfaces": {}})) == {"Interfaces": {}}


def test_containerd_container() -> None:
    info = {
        "sandboxID": SANDBOX_ID,
        "pid": 5150,
        "config": {"linux": {"security_context": {"privileged": True}}},
        "runtimeSpec": {"process": {"user": {"uid": 1000, "gid": 0}}},
    }
    container = convert.container(container_response(info))
    assert container.id == CONTAINER_ID
    assert container.sandbox_id == SANDBOX_ID
    assert (container.name, container.attempt) == ("web", 1)
    assert container.image == "docker.io/library/nginx:1.27"
    assert container.image_ref == "sha256:" + "c" * 64
    assert container.state is ContainerState.RUNNING
    assert (container.created_at, container.started_at) == (10, 11)
    assert container.labels == {"io.kubernetes.container.name": "web"}
    assert container.mounts[0].container_path == "/data" and container.mounts[0].readonly
    assert container.mounts[0].propagation == 1
    assert container.privileged
    assert container.user == 1000
    assert container.pid == 5150


def test_container_sandbox_id_from_the_caller_wins() -> None:
    container = convert.container(container_response({"sandboxID": "other"}), sandbox_id=SANDBOX_ID)
    assert container.sandbox_id == SANDBOX_ID


def test_crio_container_and_exited_pid() -> None:
    info = {"sandboxID": SANDBOX_ID, "pid": 9, "privileged": True, "runtimeSpec": {"process": {"user": {"uid": 0}}}}
    running = convert.container(container_response(info))
    assert (running.privileged, running.user, running.pid) == (True, 0, 9)
    exited = convert.container(container_response(info, state=cri.ContainerState.CONTAINER_EXITED))
    assert exited.state is ContainerState.EXITED
    assert exited.pid == 0


def test_container_without_info() -> None:
    container = convert.container(container_response(None))
    assert (container.sandbox_id, container.privileged, container.user, container.pid) == ("", False, -1, 0)


def test_wrong_types_in_info_fall_back() -> None:
    info = {
        "sandboxID": 5,
        "pid": True,
        "privileged": "yes",
        "config": {"linux": {"security_context": {"privileged": 1}}},
        "runtimeSpec": {"process": {"user": {"uid": "1000"}}, "linux": {"namespaces": {"type": "network"}}},
        "cniResult": "[",
    }
    container = convert.container(container_response(info))
    assert (container.sandbox_id, container.privileged, container.user, container.pid) == ("", False, -1, 0)
    sandbox = convert.sandbox(sandbox_response(info))
    assert (sandbox.pid, sandbox.netns_path, sandbox.cni_result) == (0, "", "")


def test_listed_rows_version_status_and_event() -> None:
    row = convert.listed_container(
        cri.Container(id="c1", pod_sandbox_id="s1", state=cri.ContainerState.CONTAINER_RUNNING, created_at=5)
    )
    assert (row.id, row.sandbox_id, row.state, row.created_at) == ("c1", "s1", ContainerState.RUNNING, 5)
    sandbox_row = convert.listed_sandbox(cri.PodSandbox(id="s1", state=cri.PodSandboxState.SANDBOX_NOTREADY))
    assert (sandbox_row.id, sandbox_row.state, sandbox_row.sandbox_id) == ("s1", SandboxState.NOTREADY, "")
    version = convert.runtime_version(
        cri.VersionResponse(runtime_name="containerd", runtime_version="1.6.20", runtime_api_version="v1")
    )
    assert (version.runtime_name, version.runtime_version, version.runtime_api_version) == (
        "containerd",
        "1.6.20",
        "v1",
    )
    status = convert.runtime_status(
        cri.StatusResponse(
            status=cri.RuntimeStatus(
                conditions=[cri.RuntimeCondition(type="NetworkReady", status=False, reason="NoCNI", message="none")]
            ),
            info={"lastCNILoadStatus": "OK"},
        )
    )
    assert status.conditions[0].type == "NetworkReady" and not status.conditions[0].status
    assert status.conditions[0].reason == "NoCNI"
    assert status.info == {"lastCNILoadStatus": "OK"}
    event = convert.container_event(
        cri.ContainerEventResponse(
            container_id="c1",
            container_event_type=cri.ContainerEventType.CONTAINER_STOPPED_EVENT,
            created_at=99,
            pod_sandbox_status=sandbox_response(None).status,
            containers_statuses=[container_response(None).status],
        )
    )
    assert (event.type, event.container_id, event.created_at) == (ContainerEventType.STOPPED, "c1", 99)
    assert event.sandbox is not None and event.sandbox.id == SANDBOX_ID
    assert event.containers[0].sandbox_id == SANDBOX_ID
    bare = convert.container_event(cri.ContainerEventResponse(container_id="c2"))
    assert bare.sandbox is None and bare.containers == ()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=40,
)
info_keys = st.sampled_from(
    ["pid", "sandboxID", "privileged", "config", "runtimeSpec", "cniResult", "linux", "namespaces", "process",
     "user", "uid", "Interfaces", "IPConfigs", "interfaces", "ips", "interface", "annotations", "type", "path",
     "io.kubernetes.cri-o.CNIResult", "security_context", "network", "lo", "veth0", "eth0"]
)  # fmt: skip
shaped_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(info_keys, children, max_size=6),
    max_leaves=60,
)


def check_never_raises(raw: str) -> None:
    sandbox = convert.sandbox(sandbox_response(raw))
    assert sandbox.pid >= 0
    if sandbox.cni_result:
        assert len(sandbox.cni_result.encode()) <= convert.CNI_RESULT_LIMIT
        json.loads(sandbox.cni_result)
    container = convert.container(container_response(raw))
    assert container.pid >= 0 and container.user >= -1


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_as_info(raw: str) -> None:
    check_never_raises(raw)


@settings(max_examples=300, deadline=None)
@given(shaped_values | json_values)
def test_any_json_as_info(value: Any) -> None:
    check_never_raises(json.dumps(value))


@settings(max_examples=200, deadline=None)
@given(shaped_values, st.integers(min_value=2, max_value=400))
def test_trimmed_results_fit_any_limit(value: Any, limit: int) -> None:
    text = convert.trim_cni_result(value, limit=limit)
    if text:
        assert len(text.encode()) <= limit
        json.loads(text)
