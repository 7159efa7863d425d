"""Writes over HTTP: create, update, the three patch types, delete flows and the Status errors they produce."""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.sim.wire import call, create, pod

PODS = "/api/v1/namespaces/default/pods"
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


def deployment(name: str = "web", image: str = "nginx:1.27") -> dict[str, object]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}},
        },
    }  # fmt: skip


async def test_create_sets_server_fields_and_defaults(api: aiohttp.ClientSession) -> None:
    body = await create(api, PODS, pod("a"))
    meta = body["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert int(meta["resourceVersion"]) > 0
    assert body["spec"]["restartPolicy"] == "Always" and body["spec"]["terminationGracePeriodSeconds"] == 30
    assert body["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert body["status"]["phase"] == "Pending"
    assert "generation" not in meta
    dep = await create(api, DEPLOYS, deployment())
    assert dep["metadata"]["generation"] == 1
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": "25%", "maxSurge": "25%"}


async def test_generate_name(api: aiohttp.ClientSession) -> None:
    body = await create(api, PODS, {**pod(""), "metadata": {"generateName": "web-"}})
    assert re.fullmatch(r"web-[bcdfghjklmnpqrstvwxz2456789]{5}", body["metadata"]["name"])


async def test_name_required_and_already_exists(api: aiohttp.ClientSession) -> None:
    status, body, _ = await call(api, "POST", PODS, {**pod(""), "metadata": {}})
    assert status == 422
    assert body["message"] == 'Pod "" is invalid: metadata.name: Required value: name or generateName is required'
    await create(api, PODS, pod("a"))
    status, body, _ = await call(api, "POST", PODS, pod("a"))
    assert status == 409 and body["reason"] == "AlreadyExists"
    assert body["message"] == 'pods "a" already exists'
    assert body["details"] == {"name": "a", "kind": "pods"}


async def test_validation_errors_are_422_with_causes(api: aiohttp.ClientSession) -> None:
    bad = pod("a")
    bad["spec"]["containers"][0].pop("image")  # type: ignore[index]
    status, body, _ = await call(api, "POST", PODS, bad)
    assert status == 422 and body["reason"] == "Invalid"
    assert body["message"] == 'Pod "a" is invalid: spec.containers[0].image: Required value'
    assert body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].image"}
    ]
    status, body, _ = await call(api, "POST", "/api/v1/namespaces", {"metadata": {"name": "Bad_Name"}})
    assert status == 422 and "a lowercase RFC 1123 label must consist of" in body["message"]


async def test_namespace_must_exist_and_match(api: aiohttp.ClientSession) -> None:
    status, body, _ = await call(api, "POST", "/api/v1/namespaces/nope/pods", pod("a", "nope"))
    assert status == 404 and body["message"] == 'namespaces "nope" not found'
    status, body, _ = await call(api, "POST", PODS, pod("a", "kube-system"))
    assert status == 400
    assert body["message"] == "the namespace of the provided object does not match the namespace sent on the request"


async def test_update_conflict_on_stale_resource_version(api: aiohttp.ClientSession) -> None:
    created = await create(api, DEPLOYS, deployment())
    stale = dict(created)
    created["spec"]["replicas"] = 3
    status, updated, _ = await call(api, "PUT", f"{DEPLOYS}/web", created)
    assert status == 200 and updated["metadata"]["generation"] == 2
    stale["spec"] = {**stale["spec"], "replicas": 5}
    status, body, _ = await call(api, "PUT", f"{DEPLOYS}/web", stale)
    assert status == 409 and body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert body["details"] == {"name": "web", "group": "apps", "kind": "deployments"}


async def test_status_subresource_split(api: aiohttp.ClientSession) -> None:
    created = await create(api, DEPLOYS, deployment())
    created["status"] = {"replicas": 9}
    created["spec"]["replicas"] = 4
    _, via_main, _ = await call(api, "PUT", f"{DEPLOYS}/web", created)
    assert via_main["spec"]["replicas"] == 4 and "replicas" not in (via_main.get("status") or {})
    via_main["status"] = {"replicas": 9}
    via_main["spec"]["replicas"] = 1
    _, via_status, _ = await call(api, "PUT", f"{DEPLOYS}/web/status", via_main)
    assert via_status["status"] == {"replicas": 9} and via_status["spec"]["replicas"] == 4
    assert via_status["metadata"]["generation"] == via_main["metadata"]["generation"]


async def test_strategic_merge_patch_merges_containers_by_name(api: aiohttp.ClientSession) -> None:
    await create(api, DEPLOYS, deployment())
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "web"}],
                    "containers": [{"name": "web", "image": "nginx:1.28"}],
                }
            }
        }
    }
    status, body, _ = await call(api, "PATCH", f"{DEPLOYS}/web", patch, ctype="application/strategic-merge-patch+json")
    assert status == 200, body
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.28" and container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


async def test_merge_and_json_patch(api: aiohttp.ClientSession) -> None:
    await create(api, DEPLOYS, deployment())
    status, body, _ = await call(
        api,
        "PATCH",
        f"{DEPLOYS}/web",
        {"spec": {"template": {"spec": {"containers": [{"name": "x", "image": "y"}]}}}},
        ctype="application/merge-patch+json",
    )
    assert status == 200 and [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["x"]
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 7},
        {"op": "test", "path": "/spec/replicas", "value": 7},
    ]
    status, body, _ = await call(api, "PATCH", f"{DEPLOYS}/web", ops, ctype="application/json-patch+json")
    assert status == 200 and body["spec"]["replicas"] == 7
    status, body, _ = await call(
        api,
        "PATCH",
        f"{DEPLOYS}/web",
        [{"op": "test", "path": "/spec/replicas", "value": 1}],
        ctype="application/json-patch+json",
    )
    assert status == 422
    status, body, _ = await call(api, "PATCH", f"{DEPLOYS}/web", {"spec": {}}, ctype="text/plain")
    assert status == 415 and body["reason"] == "UnsupportedMediaType"


async def test_patch_with_stale_resource_version_conflicts(api: aiohttp.ClientSession) -> None:
    created = await create(api, PODS, pod("a"))
    await call(api, "PATCH", f"{PODS}/a", {"metadata": {"labels": {"x": "1"}}}, ctype="application/merge-patch+json")
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"], "labels": {"x": "2"}}}
    status, body, _ = await call(api, "PATCH", f"{PODS}/a", stale, ctype="application/merge-patch+json")
    assert status == 409 and body["reason"] == "Conflict"


async def test_delete_unscheduled_pod_is_immediate_and_returns_the_object(api: aiohttp.ClientSession) -> None:
    await create(api, PODS, pod("a"))
    status, body, _ = await call(api, "DELETE", f"{PODS}/a")
    assert status == 200 and body["kind"] == "Pod" and body["metadata"]["name"] == "a"
    status, body, _ = await call(api, "GET", f"{PODS}/a")
    assert status == 404 and body["message"] == 'pods "a" not found'


async def test_delete_scheduled_pod_is_graceful(api: aiohttp.ClientSession) -> None:
    await create(api, PODS, pod("a", nodeName="node-1"))
    status, body, _ = await call(
        api, "DELETE", f"{PODS}/a", {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 10}
    )
    assert status == 200 and body["metadata"]["deletionGracePeriodSeconds"] == 10
    assert body["metadata"]["deletionTimestamp"]
    # The kubelet's final delete with grace 0 removes it.
    status, body, _ = await call(api, "DELETE", f"{PODS}/a", {"gracePeriodSeconds": 0})
    assert status == 200
    assert (await call(api, "GET", f"{PODS}/a"))[0] == 404


async def test_delete_preconditions(api: aiohttp.ClientSession) -> None:
    created = await create(api, PODS, pod("a"))
    status, body, _ = await call(api, "DELETE", f"{PODS}/a", {"preconditions": {"uid": "not-it"}})
    assert status == 409 and "Precondition failed: UID in precondition: not-it" in body["message"]
    status, _, _ = await call(
        api,
        "DELETE",
        f"{PODS}/a",
        {
            "preconditions": {
                "uid": created["metadata"]["uid"],
                "resourceVersion": created["metadata"]["resourceVersion"],
            }
        },
    )
    assert status == 200


async def test_finalizers_hold_deletion_until_removed(api: aiohttp.ClientSession) -> None:
    await create(
        api,
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "c", "finalizers": ["example.com/keep"]}},
    )
    status, body, _ = await call(api, "DELETE", "/api/v1/namespaces/default/configmaps/c")
    assert status == 200 and body["kind"] == "ConfigMap" and body["metadata"]["deletionTimestamp"]
    status, body, _ = await call(
        api,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        {"metadata": {"finalizers": None}},
        ctype="application/merge-patch+json",
    )
    assert status == 200
    assert (await call(api, "GET", "/api/v1/namespaces/default/configmaps/c"))[0] == 404


async def test_delete_status_and_propagation_defaults(api: aiohttp.ClientSession) -> None:
    await create(api, DEPLOYS, deployment())
    status, body, _ = await call(api, "DELETE", f"{DEPLOYS}/web")
    assert status == 200 and body["kind"] == "Status" and body["status"] == "Success"
    assert body["details"]["kind"] == "deployments" and body["details"]["group"] == "apps"
    job = {
        "metadata": {"name": "j"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
    }
    created = await create(api, "/apis/batch/v1/namespaces/default/jobs", job)
    assert created["spec"]["selector"] == {
        "matchLabels": {"batch.kubernetes.io/controller-uid": created["metadata"]["uid"]}
    }
    status, body, resp = await call(api, "DELETE", "/apis/batch/v1/namespaces/default/jobs/j")
    assert status == 200 and "orphan" in body["metadata"]["finalizers"]
    assert "child pods are preserved by default" in resp.headers["Warning"]


async def test_namespace_delete_terminates_and_blocks_new_content(api: aiohttp.ClientSession) -> None:
    await create(api, "/api/v1/namespaces", {"metadata": {"name": "team"}})
    status, body, _ = await call(api, "DELETE", "/api/v1/namespaces/team")
    assert status == 200 and body["status"]["phase"] == "Terminating"
    status, body, _ = await call(api, "POST", "/api/v1/namespaces/team/pods", pod("a", "team"))
    assert status == 403
    assert "unable to create new content in namespace team because it is being terminated" in body["message"]
    status, body, _ = await call(api, "DELETE", "/api/v1/namespaces/team")
    assert status == 409 and "The system is ensuring all content is removed from this namespace" in body["message"]
    status, body, _ = await call(
        api,
        "PUT",
        "/api/v1/namespaces/team/finalize",
        {"metadata": {"name": "team"}, "spec": {"finalizers": []}},
    )
    assert status == 200
    assert (await call(api, "GET", "/api/v1/namespaces/team"))[0] == 404


async def test_new_namespace_gets_label_service_account_and_root_ca(api: aiohttp.ClientSession) -> None:
    body = await create(api, "/api/v1/namespaces", {"metadata": {"name": "team"}})
    assert body["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team"}
    assert (await call(api, "GET", "/api/v1/namespaces/team/serviceaccounts/default"))[0] == 200
    assert (await call(api, "GET", "/api/v1/namespaces/team/configmaps/kube-root-ca.crt"))[0] == 200


async def test_binding(api: aiohttp.ClientSession) -> None:
    await create(api, PODS, pod("a"))
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "a"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"},
    }
    status, body, _ = await call(api, "POST", f"{PODS}/a/binding", binding)
    assert status == 201 and body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }
    _, pod_now, _ = await call(api, "GET", f"{PODS}/a")
    assert pod_now["spec"]["nodeName"] == "node-1"
    assert [c["type"] for c in pod_now["status"]["conditions"]] == ["PodScheduled"]
    status, body, _ = await call(api, "POST", f"{PODS}/a/binding", binding)
    assert status == 409


async def test_services_get_cluster_ips(api: aiohttp.ClientSession) -> None:
    svc = {
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    body = await create(api, "/api/v1/namespaces/default/services", svc)
    ip = body["spec"]["clusterIP"]
    assert ip.startswith("10.") and body["spec"]["clusterIPs"] == [ip]
    assert body["spec"]["ports"][0]["protocol"] == "TCP"
    _, kube, _ = await call(api, "GET", "/api/v1/namespaces/default/services/kubernetes")
    assert kube["spec"]["clusterIP"] == "10.96.0.1"


async def test_events_are_one_store_seen_through_two_apis(api: aiohttp.ClientSession) -> None:
    event = {
        "metadata": {"name": "a.1"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "a"},
        "reason": "Pulled",
        "message": "done",
        "type": "Normal",
        "source": {"component": "kubelet", "host": "node-1"},
    }
    await create(api, "/api/v1/namespaces/default/events", event)
    status, body, _ = await call(api, "GET", "/apis/events.k8s.io/v1/namespaces/default/events/a.1")
    assert status == 200 and body["apiVersion"] == "events.k8s.io/v1"
    assert body["regarding"]["name"] == "a" and body["note"] == "done" and body["eventTime"] is None
    assert body["deprecatedSource"] == {"component": "kubelet", "host": "node-1"}
    _, listed, _ = await call(api, "GET", "/apis/events.k8s.io/v1/events", fieldSelector="regarding.name=a")
    assert [e["metadata"]["name"] for e in listed["items"]] == ["a.1"]
    _, core, _ = await call(api, "GET", "/api/v1/events", fieldSelector="involvedObject.name=a,reason=Pulled")
    assert len(core["items"]) == 1


@pytest.mark.parametrize("validation", ["Strict", "Warn", "Ignore"])
async def test_unknown_fields(api: aiohttp.ClientSession, validation: str) -> None:
    dep = deployment()
    dep["spec"]["replica"] = 3  # type: ignore[index]
    status, body, resp = await call(api, "POST", DEPLOYS, dep, fieldValidation=validation)
    if validation == "Strict":
        assert status == 400
        assert (
            body["message"] == 'Deployment in version "v1" cannot be handled as a Deployment: '
            'strict decoding error: unknown field "spec.replica"'
        )
    elif validation == "Warn":
        assert status == 201 and resp.headers["Warning"] == '299 - "unknown field \\"spec.replica\\""'
    else:
        assert status == 201 and "Warning" not in resp.headers


async def test_dry_run_persists_nothing(api: aiohttp.ClientSession) -> None:
    status, body, _ = await call(api, "POST", PODS, pod("a"), dryRun="All")
    assert status == 201 and body["metadata"]["name"] == "a"
    assert (await call(api, "GET", f"{PODS}/a"))[0] == 404


async def test_delete_collection_by_label(api: aiohttp.ClientSession) -> None:
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        await create(api, PODS, pod(name, labels={"tier": tier}))
    status, body, _ = await call(api, "DELETE", PODS, labelSelector="tier=web")
    assert status == 200 and body["kind"] == "PodList"
    assert sorted(p["metadata"]["name"] for p in body["items"]) == ["a", "b"]
    _, left, _ = await call(api, "GET", PODS)
    assert [p["metadata"]["name"] for p in left["items"]] == ["c"]


async def test_pod_spec_is_immutable_but_for_images(api: aiohttp.ClientSession) -> None:
    await create(api, PODS, pod("a", nodeName="node-1"))
    status, body, _ = await call(
        api, "PATCH", f"{PODS}/a", {"spec": {"nodeName": "node-2"}}, ctype="application/merge-patch+json"
    )
    assert status == 422 and "pod updates may not change fields other than" in body["message"]
    patch = {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}
    status, body, _ = await call(api, "PATCH", f"{PODS}/a", patch, ctype="application/strategic-merge-patch+json")
    assert status == 200 and body["spec"]["containers"][0]["image"] == "busybox:1.37"


async def test_repeated_delete_of_a_pending_object_writes_nothing(api: aiohttp.ClientSession) -> None:
    await create(api, "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c", "finalizers": ["x/y"]}})
    _, first, _ = await call(api, "DELETE", "/api/v1/namespaces/default/configmaps/c")
    _, again, _ = await call(api, "DELETE", "/api/v1/namespaces/default/configmaps/c")
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_pod_cidrs_are_unique_and_valid_for_thousands_of_nodes() -> None:
    import ipaddress

    from nodemeta.sim.builders import pod_cidr

    networks = [ipaddress.ip_network(pod_cidr(i)) for i in range(6000)]
    assert len(set(networks)) == 6000
    service_range = ipaddress.ip_network("10.96.0.0/12")
    assert not any(n.overlaps(service_range) for n in networks)
    assert pod_cidr(1) == "10.244.1.0/24"


async def test_status_update_keeps_spec_but_takes_annotations(api: aiohttp.ClientSession) -> None:
    created = await create(api, DEPLOYS, deployment())
    created["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    created["metadata"]["labels"] = {"changed": "no"}
    created["spec"]["replicas"] = 9
    created["status"] = {"replicas": 2}
    status, body, _ = await call(api, "PUT", f"{DEPLOYS}/web/status", created)
    assert status == 200
    assert body["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "1"}
    assert "labels" not in body["metadata"] and body["spec"]["replicas"] == 2 and body["status"] == {"replicas": 2}
