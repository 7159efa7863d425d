"""The committed generated code is what scripts/gen-proto produces now, and it serves the contract's paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "src" / "nodemeta" / "api"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generated_files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name.endswith(GENERATED_SUFFIXES)
    }


def test_committed_code_is_current(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run([str(ROOT / "scripts" / "gen-proto"), str(tmp_path)], check=True, env=env, capture_output=True)
    fresh = generated_files(tmp_path / "nodemeta" / "api")
    committed = generated_files(API)
    assert len(fresh) == 12
    assert sorted(fresh) == sorted(committed), "generated files differ: run scripts/gen-proto"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code (run scripts/gen-proto): {stale}"
    for package in ("", "falco", "nodemeta", "nodemeta/v1", "cri", "cri/runtime", "cri/runtime/v1"):
        assert (tmp_path / "nodemeta" / "api" / package / "__init__.py").exists()
        assert (API / package / "__init__.py").exists()


class RecordingChannel:
    """Just enough of a grpc.Channel to see which method paths a generated stub binds."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def unary_stream(self, path: str, *args: Any, **kwargs: Any) -> object:
        self.paths.append(path)
        return object()


@pytest.mark.parametrize(
    ("module", "stub", "path"),
    [
        ("nodemeta.api.falco.metadata_pb2_grpc", "MetadataStub", "/metadata.Metadata/Watch"),
        ("nodemeta.api.nodemeta.v1.stream_pb2_grpc", "NodeMetadataStub", "/nodemeta.v1.NodeMetadata/Watch"),
    ],
)
def test_stub_method_paths(module: str, stub: str, path: str) -> None:
    imported = __import__(module, fromlist=[stub])
    channel = RecordingChannel()
    getattr(imported, stub)(channel)
    assert channel.paths == [path]


def test_field_numbers_of_the_falco_contract() -> None:
    from nodemeta.api.falco import metadata_pb2

    def numbers(message: Any) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}

    assert metadata_pb2.DESCRIPTOR.package == "metadata"
    assert numbers(metadata_pb2.Selector) == {"nodeName": 1, "resourceKinds": 2}
    assert numbers(metadata_pb2.References) == {"resources": 1}
    assert numbers(metadata_pb2.ListOfStrings) == {"list": 1}
    assert numbers(metadata_pb2.SpecFields) == {"fields": 1}
    assert numbers(metadata_pb2.StatusFields) == {"fields": 1}
    assert numbers(metadata_pb2.Event) == {
        "reason": 1, "uid": 2, "kind": 3, "meta": 4, "spec": 5, "status": 6, "refs": 7,
    }  # fmt: skip
    event = metadata_pb2.Event.DESCRIPTOR
    assert all(event.fields_by_name[name].has_presence for name in ("meta", "spec", "status", "refs"))
    assert not event.fields_by_name["reason"].has_presence
