"""The OpenAPI v3 documents: what kubectl's field-validation probe looks for, for every kind served."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import orjson
import pytest

from nodemeta.sim import openapi
from nodemeta.sim.resources import RESOURCES, ResourceType, group_versions

ACTIONS = {"get", "list", "post", "put", "patch", "delete", "deletecollection"}
METHODS = {"get", "put", "post", "delete", "patch"}


def _gvk(res: ResourceType) -> dict[str, str]:
    return {"group": res.group, "version": res.version, "kind": res.kind}


def _doc(res: ResourceType) -> dict[str, Any]:
    doc = openapi.group_version_document(res.group, res.version)
    assert doc is not None
    return doc


def kubectl_supports_field_validation(doc: dict[str, Any], gvk: dict[str, str]) -> bool | str:
    """kubectl 1.32's supportsQueryParamV3, transcribed: the first PATCH operation for the GVK decides."""
    for item in doc["paths"].values():
        op = item.get("patch")
        if op is None:
            continue
        ext = op.get("x-kubernetes-group-version-kind")
        if not isinstance(ext, dict) or any(ext.get(k) != v for k, v in gvk.items()):
            continue
        return any(p.get("name") == "fieldValidation" and p.get("in") == "query" for p in op.get("parameters", []))
    return "Path not found for GVK"


def test_root_lists_every_group_version_with_its_hash() -> None:
    root = openapi.root_document()
    assert set(root) == {"paths"}
    expected = {f"apis/{g}/{v}" if g else f"api/{v}" for g, v in group_versions()}
    assert set(root["paths"]) == expected
    for group, version in group_versions():
        key = openapi.gv_path(group, version)
        digest = openapi.document_hash(group, version)
        assert re.fullmatch(r"[0-9A-F]{128}", digest)
        assert root["paths"][key] == {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}


def test_hashes_are_stable_distinct_and_digest_the_served_bytes() -> None:
    hashes = {gv: openapi.document_hash(*gv) for gv in group_versions()}
    assert len(set(hashes.values())) == len(hashes)
    assert openapi.root_document() == openapi.root_document()
    for (group, version), digest in hashes.items():
        doc = openapi.group_version_document(group, version)
        assert hashlib.sha512(orjson.dumps(doc)).hexdigest().upper() == digest
        assert openapi.document_hash(group, version) == digest


def test_base_hash_overrides_the_advertised_hash() -> None:
    seen: list[str] = []

    def fake(key: str) -> str:
        seen.append(key)
        return "ABC"

    root = openapi.root_document(fake)
    assert seen == [openapi.gv_path(g, v) for g, v in group_versions()]
    assert root["paths"]["apis/apps/v1"]["serverRelativeURL"] == "/openapi/v3/apis/apps/v1?hash=ABC"


@pytest.mark.parametrize(("group", "version"), [("apps", "v2"), ("nope.example.com", "v1"), ("", "v2")])
def test_unserved_group_versions_have_no_document(group: str, version: str) -> None:
    assert openapi.group_version_document(group, version) is None
    assert openapi.document_hash(group, version) == ""


@pytest.mark.parametrize(("group", "version"), group_versions())
def test_documents_are_openapi_3_and_round_trip_through_json(group: str, version: str) -> None:
    doc = openapi.group_version_document(group, version)
    assert doc is not None
    assert doc["openapi"] == "3.0.0"
    assert doc["info"] == {"title": "Kubernetes", "version": "v1.32.0"}
    assert doc["components"] == {"schemas": {}}
    assert json.loads(json.dumps(doc)) == doc
    assert orjson.loads(orjson.dumps(doc)) == doc
    prefix = f"/apis/{group}/{version}/" if group else f"/api/{version}/"
    for path, item in doc["paths"].items():
        assert path.startswith(prefix)
        for name in re.findall(r"\{(\w+)\}", path):
            assert {"name": name, "in": "path"}.items() <= _param(item["parameters"], name).items()
        for method, op in item.items():
            if method == "parameters":
                continue
            assert method in METHODS
            assert op["x-kubernetes-action"] in ACTIONS
            assert set(op["x-kubernetes-group-version-kind"]) == {"group", "version", "kind"}
            assert "requestBody" not in op
            assert op["responses"]
            assert op["operationId"]


def _param(params: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(p for p in params if p.get("name") == name)


@pytest.mark.parametrize("res", [r for r in RESOURCES if "patch" in r.verbs], ids=lambda r: r.qualified)
def test_every_patchable_kind_passes_kubectls_field_validation_probe(res: ResourceType) -> None:
    doc = _doc(res)
    patches = [
        (path, item["patch"])
        for path, item in doc["paths"].items()
        if "patch" in item and item["patch"]["x-kubernetes-group-version-kind"] == _gvk(res)
    ]
    assert patches
    # kubectl stops at whichever matching PATCH it meets first (Go map order): every one must qualify.
    for _, op in patches:
        assert {"name": "fieldValidation", "in": "query"}.items() <= _param(op["parameters"], "fieldValidation").items()
        assert op["x-kubernetes-action"] == "patch"
    assert kubectl_supports_field_validation(doc, _gvk(res)) is True
    item_path = f"{_prefix(res)}/{res.plural}/{{name}}"
    assert item_path in dict(patches)


def _prefix(res: ResourceType) -> str:
    base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    return f"{base}/namespaces/{{namespace}}" if res.namespaced else base


def test_item_paths_look_like_kube_apiservers() -> None:
    apps = openapi.group_version_document("apps", "v1")
    core = openapi.group_version_document("", "v1")
    assert apps is not None and core is not None
    deployment = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    assert set(deployment) == {"get", "put", "patch", "delete", "parameters"}
    assert deployment["patch"]["operationId"] == "patchAppsV1NamespacedDeployment"
    assert deployment["patch"]["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "kind": "Deployment",
        "version": "v1",
    }
    assert "/api/v1/nodes/{name}" in core["paths"]
    assert "/api/v1/namespaces/{namespace}/nodes/{name}" not in core["paths"]
    assert core["paths"]["/api/v1/pods"]["get"]["operationId"] == "listCoreV1PodForAllNamespaces"
    pods = core["paths"]["/api/v1/namespaces/{namespace}/pods"]
    assert pods["delete"]["operationId"] == "deleteCoreV1CollectionNamespacedPod"
    assert pods["post"]["x-kubernetes-action"] == "post"
    status = core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/status"]
    assert status["patch"]["operationId"] == "patchCoreV1NamespacedPodStatus"
    binding = core["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"]
    assert binding["x-kubernetes-group-version-kind"] == {"group": "", "kind": "Binding", "version": "v1"}
    # Namespaces have no deletecollection verb, so the collection path has no DELETE.
    assert "delete" not in core["paths"]["/api/v1/namespaces"]


def test_create_only_kinds_get_a_post_and_no_patch() -> None:
    review = next(r for r in RESOURCES if r.kind == "TokenReview")
    doc = _doc(review)
    assert doc["paths"] == {
        "/apis/authentication.k8s.io/v1/tokenreviews": {
            "post": doc["paths"]["/apis/authentication.k8s.io/v1/tokenreviews"]["post"],
            "parameters": doc["paths"]["/apis/authentication.k8s.io/v1/tokenreviews"]["parameters"],
        }
    }
    post = doc["paths"]["/apis/authentication.k8s.io/v1/tokenreviews"]["post"]
    assert post["x-kubernetes-group-version-kind"] == _gvk(review)
    assert post["x-kubernetes-action"] == "post"
    assert kubectl_supports_field_validation(doc, _gvk(review)) == "Path not found for GVK"


@pytest.mark.parametrize("res", RESOURCES, ids=lambda r: f"{r.group_version}/{r.kind}")
def test_operations_follow_the_verbs(res: ResourceType) -> None:
    doc = _doc(res)
    actions = {
        op["x-kubernetes-action"]
        for item in doc["paths"].values()
        for method, op in item.items()
        if method != "parameters" and op["x-kubernetes-group-version-kind"] == _gvk(res)
    }
    wanted = {{"create": "post", "update": "put"}.get(v, v) for v in res.verbs if v != "watch"}
    assert actions == wanted


def test_events_share_a_kind_name_but_not_a_document() -> None:
    core = openapi.group_version_document("", "v1")
    events = openapi.group_version_document("events.k8s.io", "v1")
    assert core is not None and events is not None
    assert "/apis/events.k8s.io/v1/namespaces/{namespace}/events/{name}" in events["paths"]
    assert kubectl_supports_field_validation(events, {"group": "events.k8s.io", "version": "v1", "kind": "Event"})
    assert kubectl_supports_field_validation(core, {"group": "", "version": "v1", "kind": "Event"}) is True
    assert kubectl_supports_field_validation(core, {"group": "events.k8s.io", "version": "v1", "kind": "Event"}) == (
        "Path not found for GVK"
    )


def test_documents_are_fresh_copies() -> None:
    first = openapi.group_version_document("apps", "v1")
    assert first is not None
    first["paths"].clear()
    second = openapi.group_version_document("apps", "v1")
    assert second is not None and second["paths"]
