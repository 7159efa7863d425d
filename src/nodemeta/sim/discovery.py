"""Legacy discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`) built from the resource table.

kubectl 1.32 asks for aggregated discovery first but decides only from the response's Content-Type, so answering
with the legacy documents and a plain `application/json` type is what a server without aggregated discovery does,
and kubectl then fetches every group-version listed here.
"""

from __future__ import annotations

from typing import Any

from nodemeta.sim.resources import RESOURCES, ResourceType, group_versions

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_SUBRESOURCE_VERBS = {
    "status": ["get", "patch", "update"],
    "binding": ["create"],
    "finalize": ["update"],
    "token": ["create"],
    "scale": ["get", "patch", "update"],
}
_SUBRESOURCE_KIND = {"binding": "Binding", "token": "TokenRequest", "scale": "Scale"}
# Subresources served in another group-version than their parent.
_SUBRESOURCE_GROUP = {"scale": ("autoscaling", "v1"), "token": ("authentication.k8s.io", "v1")}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group_list() -> dict[str, Any]:
    groups = []
    for group, version in group_versions():
        if not group:
            continue
        gv = {"groupVersion": f"{group}/{version}", "version": version}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> dict[str, Any] | None:
    for g in api_group_list()["groups"]:
        if g["name"] == group:
            return {"kind": "APIGroup", "apiVersion": "v1", **g}
    return None


def _entry(res: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": res.plural,
        "singularName": res.singular,
        "namespaced": res.namespaced,
        "kind": res.kind,
        "verbs": list(res.verbs),
    }
    if res.short_names:
        entry["shortNames"] = list(res.short_names)
    if res.categories:
        entry["categories"] = list(res.categories)
    return entry


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    resources: list[dict[str, Any]] = []
    for res in RESOURCES:
        if (res.group, res.version) != (group, version):
            continue
        resources.append(_entry(res))
        for sub in res.subresources:
            entry: dict[str, Any] = {
                "name": f"{res.plural}/{sub}",
                "singularName": "",
                "namespaced": res.namespaced,
                "kind": _SUBRESOURCE_KIND.get(sub, res.kind),
                "verbs": _SUBRESOURCE_VERBS.get(sub, ["get"]),
            }
            if sub in _SUBRESOURCE_GROUP:
                entry["group"], entry["version"] = _SUBRESOURCE_GROUP[sub]
            resources.append(entry)
    if not resources:
        return None
    out: dict[str, Any] = {
        "kind": "APIResourceList",
        "groupVersion": f"{group}/{version}" if group else version,
    }
    if group:
        out["apiVersion"] = "v1"
    out["resources"] = resources
    return out
