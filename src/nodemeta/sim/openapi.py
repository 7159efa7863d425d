"""The OpenAPI v3 discovery documents kubectl reads before `apply`, `create`, `replace` and `edit`.

What kubectl 1.32 does with them, and therefore what they must contain:

- `GET /openapi/v3` answers `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=<HASH>"},
  "apis/apps/v1": {...}}}`; kubectl then fetches the group-version document at that URL. The hash is the
  uppercase hex SHA-512 of the document, so clients may cache by URL.
- With the default `--validate=strict`, kubectl looks in the group-version document for a `patch` operation
  whose `x-kubernetes-group-version-kind` (an object: group, version, kind) equals the object's GVK. If that
  operation lists a parameter `{"name": "fieldValidation", "in": "query"}`, kubectl skips client-side schema
  validation and sends `fieldValidation=Strict`, leaving unknown fields to the server. The first matching
  operation decides, so every PATCH of a kind here (status included) carries the parameter. A GVK with no
  PATCH operation at all makes kubectl fail with "Path not found for GVK"; a group-version missing from the
  root falls back to OpenAPI v2.
- Client-side apply only computes a strategic merge patch from OpenAPI v3 when the PATCH operation has a
  `requestBody` listing `application/strategic-merge-patch+json`. None of the operations here has a
  `requestBody`, so kubectl uses its compiled-in types for the patch (after trying `/openapi/v2`, whose
  failure it ignores), and `components.schemas` can stay empty.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, Final

import orjson

from nodemeta.sim.resources import RESOURCES, ResourceType, group_versions

JSON = dict[str, Any]

OPENAPI_VERSION: Final = "3.0.0"
INFO: Final = {"title": "Kubernetes", "version": "v1.32.0"}

_STRING = {"type": "string", "uniqueItems": True}


def _query(name: str, kind: str = "string", description: str = "") -> JSON:
    param: JSON = {"name": name, "in": "query"}
    if description:
        param["description"] = description
    param["schema"] = _STRING if kind == "string" else {"type": kind, "uniqueItems": True}
    return param


_DRY_RUN = _query("dryRun", description="When present, modifications are not persisted.")
_FIELD_MANAGER = _query("fieldManager", description="The name of the actor or entity making the changes.")
_FIELD_VALIDATION = _query(
    "fieldValidation",
    description=(
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) "
        "containing unknown or duplicate fields. Valid values are: Ignore, Warn (the default) and Strict."
    ),
)
_WRITE_PARAMS = (_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION)
_PATCH_PARAMS = (*_WRITE_PARAMS, _query("force", "boolean"))
_LIST_PARAMS = tuple(
    _query(name, kind)
    for name, kind in (
        ("allowWatchBookmarks", "boolean"),
        ("continue", "string"),
        ("fieldSelector", "string"),
        ("labelSelector", "string"),
        ("limit", "integer"),
        ("resourceVersion", "string"),
        ("resourceVersionMatch", "string"),
        ("sendInitialEvents", "boolean"),
        ("timeoutSeconds", "integer"),
        ("watch", "boolean"),
    )
)
_DELETE_PARAMS = (
    _DRY_RUN,
    _query("gracePeriodSeconds", "integer"),
    _query("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean"),
    _query("orphanDependents", "boolean"),
    _query("propagationPolicy"),
)
_DELETE_COLLECTION_PARAMS = (*_DELETE_PARAMS, *_LIST_PARAMS)
_PRETTY = _query("pretty", description="If 'true', then the output is pretty printed.")

_RESPONSES: Final[dict[str, tuple[str, ...]]] = {
    "get": ("200",),
    "list": ("200",),
    "post": ("200", "201", "202"),
    "put": ("200", "201"),
    "patch": ("200", "201"),
    "delete": ("200", "202"),
    "deletecollection": ("200",),
}
_REASONS = {"200": "OK", "201": "Created", "202": "Accepted", "401": "Unauthorized"}


def _path_param(name: str, description: str) -> JSON:
    return {"name": name, "in": "path", "description": description, "required": True, "schema": _STRING}


def _camel_group(group: str) -> str:
    """`""` -> Core, `apps` -> Apps, `discovery.k8s.io` -> Discovery, `a.b.k8s.io` -> AB, as operationIds."""
    if not group:
        return "Core"
    base = group.removesuffix(".k8s.io")
    return "".join(part[:1].upper() + part[1:] for part in base.split("."))


def _op(
    res: ResourceType,
    action: str,
    verb: str,
    gvk: tuple[str, str, str],
    params: tuple[JSON, ...],
    suffix: str = "",
    infix: str = "",
) -> JSON:
    group, version, kind = gvk
    camel = _camel_group(res.group)
    scope = "Namespaced" if res.namespaced and suffix != "ForAllNamespaces" else ""
    op: JSON = {
        "tags": [f"{camel[:1].lower()}{camel[1:]}_{res.version}"],
        "description": f"{action} {res.kind}{' ' + suffix if suffix else ''}",
        "operationId": f"{verb}{camel}{res.version.capitalize()}{infix}{scope}{res.kind}{suffix}",
    }
    if params:
        op["parameters"] = list(params)
    codes = (*_RESPONSES[action], "401")
    op["responses"] = {code: {"description": _REASONS[code]} for code in codes}
    op["x-kubernetes-action"] = action
    op["x-kubernetes-group-version-kind"] = {"group": group, "kind": kind, "version": version}
    return op


def _resource_paths(res: ResourceType) -> dict[str, JSON]:
    prefix = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
    ns_params: list[JSON] = []
    collection = f"{prefix}/{res.plural}"
    if res.namespaced:
        collection = f"{prefix}/namespaces/{{namespace}}/{res.plural}"
        ns_params.append(_path_param("namespace", "object name and auth scope"))
    item = collection + "/{name}"
    name_param = _path_param("name", f"name of the {res.kind}")
    gvk = (res.group, res.version, res.kind)
    verbs = set(res.verbs)
    paths: dict[str, JSON] = {}

    coll: JSON = {}
    if "list" in verbs:
        coll["get"] = _op(res, "list", "list", gvk, _LIST_PARAMS)
    if "create" in verbs:
        coll["post"] = _op(res, "post", "create", gvk, _WRITE_PARAMS)
    if "deletecollection" in verbs:
        wipe = _op(res, "deletecollection", "delete", gvk, _DELETE_COLLECTION_PARAMS, infix="Collection")
        coll["delete"] = wipe
    if coll:
        coll["parameters"] = [*ns_params, _PRETTY]
        paths[collection] = coll

    single: JSON = {}
    # (RBAC verb, HTTP method, x-kubernetes-action, operationId verb, query parameters)
    for needed, method, action, verb, params in (
        ("get", "get", "get", "read", ()),
        ("update", "put", "put", "replace", _WRITE_PARAMS),
        ("delete", "delete", "delete", "delete", _DELETE_PARAMS),
        ("patch", "patch", "patch", "patch", _PATCH_PARAMS),
    ):
        if needed in verbs:
            single[method] = _op(res, action, verb, gvk, params)
    if single:
        single["parameters"] = [name_param, *ns_params, _PRETTY]
        paths[item] = single

    if res.namespaced and "list" in verbs:
        every = _op(res, "list", "list", gvk, _LIST_PARAMS, "ForAllNamespaces")
        paths[f"{prefix}/{res.plural}"] = {"get": every, "parameters": [_PRETTY]}

    for sub in res.subresources:
        ops = _subresource_ops(res, sub, gvk)
        if ops:
            ops["parameters"] = [name_param, *ns_params, _PRETTY]
            paths[f"{item}/{sub}"] = ops
    return paths


def _subresource_ops(res: ResourceType, sub: str, gvk: tuple[str, str, str]) -> JSON:
    if sub == "status":
        return {
            "get": _op(res, "get", "read", gvk, (), "Status"),
            "put": _op(res, "put", "replace", gvk, _WRITE_PARAMS, "Status"),
            "patch": _op(res, "patch", "patch", gvk, _PATCH_PARAMS, "Status"),
        }
    if sub == "binding":
        return {"post": _op(res, "post", "create", ("", "v1", "Binding"), _WRITE_PARAMS, "Binding")}
    if sub == "finalize":
        return {"put": _op(res, "put", "replace", gvk, _WRITE_PARAMS, "Finalize")}
    if sub == "token":
        request = ("authentication.k8s.io", "v1", "TokenRequest")
        return {"post": _op(res, "post", "create", request, _WRITE_PARAMS, "Token")}
    return {}


def gv_path(group: str, version: str) -> str:
    """The key of a group-version in the root document: `api/v1` or `apis/<group>/<version>`."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


@functools.cache
def _serialized(group: str, version: str) -> bytes | None:
    """The document as canonical JSON (sorted keys), built once: the resource table is fixed at runtime."""
    served = [r for r in RESOURCES if r.group == group and r.version == version]
    if not served:
        return None
    paths: dict[str, JSON] = {}
    for res in served:
        paths.update(_resource_paths(res))
    doc = {"openapi": OPENAPI_VERSION, "info": INFO, "paths": paths, "components": {"schemas": {}}}
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def group_version_document(group: str, version: str) -> JSON | None:
    """The OpenAPI 3.0 document of one group-version (`/openapi/v3/api/v1`, `/openapi/v3/apis/<g>/<v>`), or
    None when the group-version is not served. Each call returns a fresh copy with its keys in sorted order,
    so `orjson.dumps` of it gives exactly the bytes `document_hash` digests."""
    body = _serialized(group, version)
    if body is None:
        return None
    doc: JSON = orjson.loads(body)
    return doc


def document_hash(group: str, version: str) -> str:
    """Uppercase hex SHA-512 of the group-version document's JSON, as kube-apiserver ("" if not served)."""
    body = _serialized(group, version)
    return "" if body is None else hashlib.sha512(body).hexdigest().upper()


def root_document(base_hash: Callable[[str], str] | None = None) -> JSON:
    """`GET /openapi/v3`: every served group-version with the URL of its document.

    `base_hash`, when given, maps a path key (`api/v1`, `apis/apps/v1`) to the hash to advertise; by default
    the hash is `document_hash` of that group-version.
    """
    paths: dict[str, JSON] = {}
    for group, version in group_versions():
        key = gv_path(group, version)
        digest = base_hash(key) if base_hash is not None else document_hash(group, version)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}
