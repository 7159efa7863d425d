"""The CRI subset keeps the upstream package, method paths and field numbers, so real runtimes understand it."""

from __future__ import annotations

from typing import Any

from nodemeta.api.cri.runtime.v1 import api_pb2, api_pb2_grpc


def numbers(message: Any) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}


class RecordingChannel:
    """Just enough of a grpc.Channel to see which method paths the generated stub binds."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def _record(self, path: str, *args: Any, **kwargs: Any) -> object:
        self.paths.append(path)
        return object()

    unary_unary = _record
    unary_stream = _record


def test_package_and_method_paths() -> None:
    assert api_pb2.DESCRIPTOR.package == "runtime.v1"
    channel = RecordingChannel()
    api_pb2_grpc.RuntimeServiceStub(channel)
    prefix = "/runtime.v1.RuntimeService/"
    assert sorted(channel.paths) == sorted(
        prefix + name
        for name in (
            "Version", "Status", "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus",
            "ListPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer",
            "ListContainers", "ContainerStatus", "GetContainerEvents",
        )
    )  # fmt: skip


def test_field_numbers_match_the_upstream_contract() -> None:
    assert numbers(api_pb2.VersionResponse) == {
        "version": 1, "runtime_name": 2, "runtime_version": 3, "runtime_api_version": 4,
    }  # fmt: skip
    assert numbers(api_pb2.StatusResponse) == {"status": 1, "info": 2}
    assert numbers(api_pb2.PodSandboxStatus) == {
        "id": 1, "metadata": 2, "state": 3, "created_at": 4, "network": 5, "linux": 6, "labels": 7,
        "annotations": 8, "runtime_handler": 9,
    }  # fmt: skip
    assert numbers(api_pb2.PodSandboxStatusResponse) == {
        "status": 1, "info": 2, "containers_statuses": 3, "timestamp": 4,
    }  # fmt: skip
    assert numbers(api_pb2.PodSandboxMetadata) == {"name": 1, "uid": 2, "namespace": 3, "attempt": 4}
    assert numbers(api_pb2.Namespace) == {"options": 2}
    assert numbers(api_pb2.NamespaceOption) == {"network": 1, "pid": 2, "ipc": 3, "target_id": 4}
    assert numbers(api_pb2.ContainerStatus) == {
        "id": 1, "metadata": 2, "state": 3, "created_at": 4, "started_at": 5, "finished_at": 6, "exit_code": 7,
        "image": 8, "image_ref": 9, "reason": 10, "message": 11, "labels": 12, "annotations": 13, "mounts": 14,
        "log_path": 15,
    }  # fmt: skip
    assert numbers(api_pb2.Container) == {
        "id": 1, "pod_sandbox_id": 2, "metadata": 3, "image": 4, "image_ref": 5, "state": 6, "created_at": 7,
        "labels": 8, "annotations": 9,
    }  # fmt: skip
    assert numbers(api_pb2.ContainerEventResponse) == {
        "container_id": 1, "container_event_type": 2, "created_at": 3, "pod_sandbox_status": 4,
        "containers_statuses": 5,
    }  # fmt: skip
    assert numbers(api_pb2.PodSandboxConfig) == {
        "metadata": 1, "hostname": 2, "log_directory": 3, "labels": 6, "annotations": 7, "linux": 8,
    }  # fmt: skip
    assert numbers(api_pb2.LinuxSandboxSecurityContext) == {"namespace_options": 1, "privileged": 6}
    assert numbers(api_pb2.LinuxContainerSecurityContext) == {
        "privileged": 2, "namespace_options": 3, "run_as_user": 5,
    }  # fmt: skip
    assert numbers(api_pb2.ContainerConfig)["linux"] == 15
    assert numbers(api_pb2.ContainerConfig)["labels"] == 9
    assert api_pb2.NamespaceMode.Value("NODE") == 2
    assert api_pb2.ContainerState.Value("CONTAINER_EXITED") == 2
    assert api_pb2.ContainerEventType.Value("CONTAINER_DELETED_EVENT") == 3
