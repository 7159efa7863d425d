"""Ground truth for a node's subscriber, checked on the collector's public e2e scenario built by hand."""

from __future__ import annotations

from typing import Any

from nodemeta.sim.registry import Registry
from nodemeta.sim.resources import lookup, stored_resources
from nodemeta.sim.store import Store
from nodemeta.sim.truth import go_json, kinds_in, node_view


def res(group: str, plural: str) -> Any:
    found = lookup(group, "v1", plural)
    assert found is not None
    return found


def owner(kind: str, api_version: str, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"apiVersion": api_version, "kind": kind, "name": meta["name"], "uid": meta["uid"], "controller": True}


def make_pod(
    reg: Registry, name: str, node: str, labels: dict[str, str], owner_ref: dict[str, Any] | None = None, ip: str = ""
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if owner_ref:
        meta["ownerReferences"] = [owner_ref]
        meta["generateName"] = owner_ref["name"] + "-"
    pods = res("", "pods")
    body = {"metadata": meta, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]}}
    created = reg.create(pods, "nginx-test", body).stored.decode()
    if ip:
        created["status"]["podIP"] = ip
        created["status"]["podIPs"] = [{"ip": ip}]
        created = reg.update(pods, "nginx-test", name, created, subresource="status").stored.decode()
    return created


def scenario() -> tuple[Registry, dict[str, dict[str, Any]]]:
    reg = Registry(Store(stored_resources(), 1000), seed=1)
    reg.bootstrap()

    def make(group: str, plural: str, name: str, spec: dict[str, Any], owned_by: dict[str, Any] | None = None) -> Any:
        meta: dict[str, Any] = {"name": name}
        if owned_by is not None:
            meta["ownerReferences"] = [owned_by]
        return reg.create(res(group, plural), "nginx-test", {"metadata": meta, "spec": spec}).stored.decode()

    objs: dict[str, dict[str, Any]] = {}
    objs["ns"] = reg.create(res("", "namespaces"), "", {"metadata": {"name": "nginx-test"}}).stored.decode()
    template = {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    workload = {"selector": {"matchLabels": {"app": "nginx"}}, "template": template}
    objs["deploy"] = make("apps", "deployments", "web", workload)
    objs["rs"] = make("apps", "replicasets", "web-5c87856789", workload, owner("Deployment", "apps/v1", objs["deploy"]))
    objs["ds"] = make("apps", "daemonsets", "agent", workload)
    objs["bare_rs"] = make("apps", "replicasets", "bare", workload)
    objs["rc"] = make("", "replicationcontrollers", "rc", {"selector": {"app": "nginx"}, "template": template})
    ports = [{"port": 80}]
    objs["svc1"] = make("", "services", "svc1", {"selector": {"app": "nginx"}, "ports": ports})
    objs["svc2"] = make("", "services", "svc2", {"selector": {"app": "nginx"}, "ports": ports})
    objs["svc_none"] = make("", "services", "noselector", {"ports": ports})
    objs["svc_other"] = make("", "services", "other", {"selector": {"app": "db"}, "ports": ports})
    nginx = {"app": "nginx"}
    rs_ref = owner("ReplicaSet", "apps/v1", objs["rs"])
    objs["p_deploy"] = make_pod(reg, "web-5c87856789-abcde", "node-1", nginx, rs_ref, ip="10.244.1.5")
    objs["p_ds"] = make_pod(reg, "agent-xyz12", "node-1", nginx, owner("DaemonSet", "apps/v1", objs["ds"]))
    objs["p_bare_rs"] = make_pod(reg, "bare-q2w4e", "node-1", nginx, owner("ReplicaSet", "apps/v1", objs["bare_rs"]))
    objs["p_rc"] = make_pod(reg, "rc-zzzzz", "node-1", nginx, owner("ReplicationController", "v1", objs["rc"]))
    objs["p_bare"] = make_pod(reg, "bare-pod", "node-1", nginx)
    objs["p_elsewhere"] = make_pod(reg, "web-5c87856789-other", "node-2", {"app": "db"}, rs_ref)
    return reg, objs


def test_e2e_scenario_node_view() -> None:
    reg, o = scenario()
    view = node_view(reg.store, "node-1")
    uid = {k: v["metadata"]["uid"] for k, v in o.items()}
    expected_keys = {
        ("Namespace", uid["ns"]), ("Deployment", uid["deploy"]), ("ReplicaSet", uid["rs"]), ("DaemonSet", uid["ds"]),
        ("ReplicaSet", uid["bare_rs"]), ("ReplicationController", uid["rc"]), ("Service", uid["svc1"]),
        ("Service", uid["svc2"]),
        *[("Pod", uid[p]) for p in ("p_deploy", "p_ds", "p_bare_rs", "p_rc", "p_bare")],
    }  # fmt: skip
    assert set(view) == expected_keys
    pod = view[("Pod", uid["p_deploy"])]
    assert pod.meta == (
        '{"generateName":"web-5c87856789-","labels":{"app":"nginx"},"name":"web-5c87856789-abcde",'
        f'"namespace":"nginx-test","uid":"{uid["p_deploy"]}"}}'
    )
    assert pod.status == '{"podIP":"10.244.1.5"}'
    assert pod.refs == {
        "Namespace": (uid["ns"],), "ReplicaSet": (uid["rs"],), "Deployment": (uid["deploy"],),
        "Service": tuple(sorted([uid["svc1"], uid["svc2"]])),
    }  # fmt: skip
    assert view[("Pod", uid["p_ds"])].status == "{}"
    assert view[("Pod", uid["p_rc"])].refs["ReplicationController"] == (uid["rc"],)  # type: ignore[index]
    assert "Deployment" not in view[("Pod", uid["p_bare_rs"])].refs  # type: ignore[operator]
    ns = view[("Namespace", uid["ns"])]
    assert (
        ns.meta
        == f'{{"labels":{{"kubernetes.io/metadata.name":"nginx-test"}},"name":"nginx-test","uid":"{uid["ns"]}"}}'
    )
    assert ns.status is None and ns.refs is None


def test_node_without_pods_sees_nothing_and_kind_filter() -> None:
    reg, o = scenario()
    assert node_view(reg.store, "node-404") == {}
    view = node_view(reg.store, "node-2")
    assert {k[0] for k in view} == {"Pod", "Namespace", "ReplicaSet", "Deployment", "Service"}
    only = kinds_in(view, ["Pod", "Namespace"])
    assert {k[0] for k in only} == {"Pod", "Namespace"}
    refs = view[("Pod", o["p_elsewhere"]["metadata"]["uid"])].refs
    assert refs is not None and refs["Service"] == (o["svc_other"]["metadata"]["uid"],)
    # A pod whose labels match no selector still carries the Service key, empty.
    reg.patch(res("", "pods"), "nginx-test", "web-5c87856789-other", "merge", {"metadata": {"labels": {"app": "x"}}})
    refs = node_view(reg.store, "node-2")[("Pod", o["p_elsewhere"]["metadata"]["uid"])].refs
    assert refs is not None and refs["Service"] == ()


def test_go_escaping_and_sorted_compact_json() -> None:
    assert go_json({"b": "<a&b>", "a": "\u2028é"}) == '{"a":"\\u2028é","b":"\\u003ca\\u0026b\\u003e"}'
