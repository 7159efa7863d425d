"""Table rendering: kube-apiserver's printers, cell for cell, and never an exception on odd objects."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client import ApiClient

from nodemeta.sim import table
from nodemeta.sim.resources import RESOURCES, ResourceType, lookup

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC).timestamp()
REF = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "x"}}


def ago(seconds: float, micro: bool = False) -> str:
    when = dt.datetime.fromtimestamp(NOW - seconds, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def res(group: str, plural: str) -> ResourceType:
    found = lookup(group, "v1", plural)
    assert found is not None
    return found


def cells(group: str, plural: str, obj: dict[str, Any]) -> list[Any]:
    row = table.row(res(group, plural), obj, NOW, REF)
    return list(row["cells"])


def named(group: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The cells keyed by column name."""
    resource = res(group, plural)
    return dict(zip([c["name"] for c in table.columns(resource)], cells(group, plural, obj), strict=True))


def meta(name: str = "x", created: float = 60, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "creationTimestamp": ago(created), **extra}


# --- HumanDuration -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1.5, "0s"),
        (0, "0s"),
        (0.9, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 20 * 60, "3h20m"),
        (8 * 3600 + 20 * 60, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (2 * 86400 + 5 * 3600, "2d5h"),
        (7 * 86400 + 23 * 3600, "7d23h"),
        (8 * 86400 + 5 * 3600, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (3 * 365 * 86400 + 10 * 86400, "3y10d"),
        (8 * 365 * 86400 + 10 * 86400, "8y"),
        (20 * 365 * 86400, "20y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert table.human_duration(seconds) == text


def test_age() -> None:
    assert table.age(ago(5), NOW) == "5s"
    assert table.age(ago(3 * 3600 + 20 * 60), NOW) == "3h20m"
    assert table.age(ago(90, micro=True), NOW) == "90s"
    assert table.age("2024-05-31T23:59:00+00:00", NOW) == "60s"
    assert table.age(None, NOW) == "<unknown>"
    assert table.age("", NOW) == "<unknown>"
    assert table.age("yesterday", NOW) == "<unknown>"
    assert table.age("0001-01-01T00:00:00Z", NOW) == "<unknown>"
    assert table.age(ago(-60), NOW) == "<invalid>"


# --- shape ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: f"{r.group_version}/{r.kind}")
def test_columns_match_cells_for_every_kind(resource: ResourceType) -> None:
    cols = table.columns(resource)
    assert cols
    for col in cols:
        assert list(col) == ["name", "type", "format", "description", "priority"]
        assert col["type"] in {"string", "integer", "boolean", "date", "number"}
        assert col["priority"] in (0, 1)
    names = [c for c in cols if c["name"] == "Name"]
    assert len(names) == 1 and names[0]["format"] == "name"
    assert all(c["format"] == "" for c in cols if c["name"] != "Name")
    for obj in ({}, {"metadata": meta()}, SAMPLES.get(resource.kind, {})):
        row = table.row(resource, obj, NOW, REF)
        assert len(row["cells"]) == len(cols)
        assert all(isinstance(c, str | int) and not isinstance(c, bool) for c in row["cells"])
        assert row["object"] is REF


def test_kinds_without_a_printer_get_the_default_table() -> None:
    review = next(r for r in RESOURCES if r.kind == "TokenReview")
    cols = table.columns(review)
    assert [(c["name"], c["type"], c["format"]) for c in cols] == [
        ("Name", "string", "name"),
        ("Created At", "date", ""),
    ]
    obj = {"metadata": {"name": "r", "creationTimestamp": "2024-05-01T10:00:00.5+02:00"}}
    assert table.row(review, obj, NOW, REF)["cells"] == ["r", "2024-05-01T08:00:00Z"]
    assert table.row(review, {}, NOW, REF)["cells"] == ["", "0001-01-01T00:00:00Z"]


def test_table_envelope() -> None:
    pods = res("", "pods")
    rows = [table.row(pods, {"metadata": meta("a")}, NOW, REF)]
    full = table.table(pods, rows, "42", "tok", 7)
    assert list(full) == ["kind", "apiVersion", "metadata", "columnDefinitions", "rows"]
    assert full["kind"] == "Table" and full["apiVersion"] == "meta.k8s.io/v1"
    assert full["metadata"] == {"resourceVersion": "42", "continue": "tok", "remainingItemCount": 7}
    assert full["columnDefinitions"] == table.columns(pods)
    assert full["rows"] == rows
    later = table.table(pods, rows, "43", include_columns=False)
    assert later["columnDefinitions"] == []
    assert later["metadata"] == {"resourceVersion": "43"}
    assert orjson.loads(orjson.dumps(full)) == full
    # The official Python client passes the dict through untouched.
    assert ApiClient().sanitize_for_serialization(full) == full  # type: ignore[no-untyped-call]


def test_columns_are_fresh_copies() -> None:
    pods = res("", "pods")
    table.columns(pods)[0]["name"] = "changed"
    assert table.columns(pods)[0]["name"] == "Name"


def test_column_names_like_kubectl_shows_them() -> None:
    def shown(group: str, plural: str) -> list[str]:
        return [c["name"] for c in table.columns(res(group, plural)) if c["priority"] == 0]

    assert shown("", "pods") == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert shown("", "nodes") == ["Name", "Status", "Roles", "Age", "Version"]
    assert shown("", "namespaces") == ["Name", "Status", "Age"]
    assert shown("", "services") == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]
    assert shown("apps", "deployments") == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert shown("apps", "replicasets") == ["Name", "Desired", "Current", "Ready", "Age"]
    assert shown("apps", "daemonsets") == [
        "Name",
        "Desired",
        "Current",
        "Ready",
        "Up-to-date",
        "Available",
        "Node Selector",
        "Age",
    ]
    assert shown("apps", "statefulsets") == ["Name", "Ready", "Age"]
    assert shown("", "replicationcontrollers") == ["Name", "Desired", "Current", "Ready", "Age"]
    assert shown("batch", "jobs") == ["Name", "Status", "Completions", "Duration", "Age"]
    assert shown("batch", "cronjobs") == [
        "Name",
        "Schedule",
        "Timezone",
        "Suspend",
        "Active",
        "Last Schedule",
        "Age",
    ]
    assert shown("discovery.k8s.io", "endpointslices") == ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    assert shown("", "events") == ["Last Seen", "Type", "Reason", "Object", "Message"]
    assert shown("events.k8s.io", "events") == ["Last Seen", "Type", "Reason", "Object", "Message"]
    assert shown("coordination.k8s.io", "leases") == ["Name", "Holder", "Age"]
    wide = [c["name"] for c in table.columns(res("", "pods")) if c["priority"] == 1]
    assert wide == ["IP", "Node", "Nominated Node", "Readiness Gates"]


# --- pods ----------------------------------------------------------------------------------------------------
def pod(**status: Any) -> dict[str, Any]:
    return {
        "metadata": meta("web", 3600),
        "spec": {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "busybox"}]},
        "status": status,
    }


RUNNING = {"running": {"startedAt": ago(100)}}


def test_running_pod() -> None:
    obj = pod(
        phase="Running",
        podIP="10.0.0.9",
        podIPs=[{"ip": "10.0.0.7"}],
        containerStatuses=[
            {"name": "a", "ready": True, "restartCount": 0, "state": RUNNING},
            {"name": "b", "ready": False, "restartCount": 0, "state": RUNNING},
        ],
    )
    obj["spec"]["nodeName"] = "node-1"
    assert cells("", "pods", obj) == ["web", "1/2", "Running", "0", "60m", "10.0.0.7", "node-1", "<none>", "<none>"]
    assert "conditions" not in table.row(res("", "pods"), obj, NOW, REF)


def test_restarts_show_when_the_last_one_was() -> None:
    obj = pod(
        phase="Running",
        containerStatuses=[
            {
                "name": "a",
                "ready": True,
                "restartCount": 3,
                "state": RUNNING,
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}},
            },
            {"name": "b", "ready": True, "restartCount": 1, "state": RUNNING},
        ],
    )
    assert named("", "pods", obj)["Restarts"] == "4 (5m ago)"
    del obj["status"]["containerStatuses"][0]["lastState"]
    assert named("", "pods", obj)["Restarts"] == "4"


def test_terminating_pod() -> None:
    obj = pod(phase="Running", containerStatuses=[{"name": "a", "ready": True, "state": RUNNING}])
    obj["metadata"]["deletionTimestamp"] = ago(1)
    assert named("", "pods", obj)["Status"] == "Terminating"
    obj["status"]["reason"] = "NodeLost"
    assert named("", "pods", obj)["Status"] == "Unknown"
    finished = pod(
        phase="Succeeded", containerStatuses=[{"name": "a", "state": {"terminated": {"reason": "Completed"}}}]
    )
    finished["metadata"]["deletionTimestamp"] = ago(1)
    assert named("", "pods", finished)["Status"] == "Completed"


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([{"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}], "CrashLoopBackOff"),
        ([{"name": "a", "state": {"waiting": {"reason": "ContainerCreating"}}}], "ContainerCreating"),
        ([{"name": "a", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}], "OOMKilled"),
        ([{"name": "a", "state": {"terminated": {"exitCode": 2}}}], "ExitCode:2"),
        ([{"name": "a", "state": {"terminated": {"exitCode": 0, "signal": 9}}}], "Signal:9"),
        ([{"name": "a", "state": {"waiting": {}}}], "Running"),
    ],
)
def test_container_reasons(statuses: list[dict[str, Any]], expected: str) -> None:
    assert named("", "pods", pod(phase="Running", containerStatuses=statuses))["Status"] == expected


def test_completed_with_a_container_still_running() -> None:
    statuses = [
        {"name": "a", "ready": True, "state": RUNNING},
        {"name": "b", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
    ]
    obj = pod(phase="Running", containerStatuses=statuses)
    assert named("", "pods", obj)["Status"] == "NotReady"
    obj["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert named("", "pods", obj)["Status"] == "Running"


def test_init_containers() -> None:
    obj = pod(
        phase="Pending", initContainerStatuses=[{"name": "init", "state": {"waiting": {"reason": "PodInitializing"}}}]
    )
    obj["spec"]["initContainers"] = [{"name": "init", "image": "busybox"}, {"name": "two", "image": "busybox"}]
    assert named("", "pods", obj)["Status"] == "Init:0/2"
    obj["status"]["initContainerStatuses"] = [
        {"name": "init", "state": {"terminated": {"exitCode": 0}}},
        {"name": "two", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}, "restartCount": 2},
    ]
    assert named("", "pods", obj)["Status"] == "Init:Error"
    assert named("", "pods", obj)["Restarts"] == "2"
    obj["status"]["initContainerStatuses"][1]["state"] = {"terminated": {"exitCode": 3}}
    assert named("", "pods", obj)["Status"] == "Init:ExitCode:3"
    obj["status"]["initContainerStatuses"][1]["state"] = {"waiting": {"reason": "ImagePullBackOff"}}
    assert named("", "pods", obj)["Status"] == "Init:ImagePullBackOff"


def test_sidecar_init_containers_count_as_containers() -> None:
    obj = pod(
        phase="Running",
        conditions=[{"type": "Initialized", "status": "True"}],
        initContainerStatuses=[{"name": "proxy", "started": True, "ready": True, "restartCount": 1, "state": RUNNING}],
        containerStatuses=[
            {"name": "a", "ready": True, "state": RUNNING},
            {"name": "b", "ready": True, "state": RUNNING},
        ],
    )
    obj["spec"]["initContainers"] = [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}]
    row = named("", "pods", obj)
    assert (row["Ready"], row["Status"], row["Restarts"]) == ("3/3", "Running", "1")


def test_scheduling_gated_and_readiness_gates() -> None:
    obj = pod(
        phase="Pending",
        conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
            {"type": "example.com/one", "status": "True"},
        ],
    )
    obj["spec"]["readinessGates"] = [{"conditionType": "example.com/one"}, {"conditionType": "example.com/two"}]
    row = named("", "pods", obj)
    assert (row["Status"], row["Readiness Gates"]) == ("SchedulingGated", "1/2")


def test_finished_pods_carry_a_completed_row_condition() -> None:
    pods = res("", "pods")
    done = table.row(pods, pod(phase="Succeeded"), NOW, REF)
    assert done["conditions"] == [
        {"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}
    ]
    assert list(done) == ["cells", "conditions", "object"]
    failed = table.row(pods, pod(phase="Failed"), NOW, REF)
    assert failed["conditions"][0]["reason"] == "Failed"


# --- other kinds ---------------------------------------------------------------------------------------------
def test_nodes() -> None:
    node = {
        "metadata": meta(
            "node-1", 86400 * 3, labels={"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "gpu"}
        ),
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.1.0.1"}],
            "nodeInfo": {
                "kubeletVersion": "v1.32.0",
                "osImage": "Debian",
                "kernelVersion": "6.1",
                "containerRuntimeVersion": "containerd://1.7",
            },
        },
    }
    assert cells("", "nodes", node) == [
        "node-1",
        "Ready,SchedulingDisabled",
        "control-plane,gpu",
        "3d",
        "v1.32.0",
        "10.1.0.1",
        "<none>",
        "Debian",
        "6.1",
        "containerd://1.7",
    ]
    node["status"]["conditions"][1]["status"] = "Unknown"
    node["spec"] = {}
    assert named("", "nodes", node)["Status"] == "NotReady"
    assert named("", "nodes", {"metadata": meta()})["Status"] == "Unknown"


def test_services() -> None:
    svc: dict[str, Any] = {
        "metadata": meta("web"),
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.5",
            "clusterIPs": ["10.96.0.5"],
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
            "selector": {"tier": "web", "app": "shop"},
        },
    }
    assert cells("", "services", svc) == [
        "web",
        "NodePort",
        "10.96.0.5",
        "<none>",
        "80:30080/TCP,53/UDP",
        "60s",
        "app=shop,tier=web",
    ]
    lb = copy.deepcopy(svc)
    lb["spec"]["type"] = "LoadBalancer"
    assert named("", "services", lb)["External-IP"] == "<pending>"
    lb["status"] = {"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}, {"ip": "5.6.7.8"}]}}
    assert named("", "services", lb)["External-IP"] == "5.6.7.8,lb.example.com"
    lb["spec"]["externalIPs"] = ["1.2.3.4"]
    assert named("", "services", lb)["External-IP"] == "5.6.7.8,lb.example.com,1.2.3.4"
    name = {"metadata": meta("ext"), "spec": {"type": "ExternalName", "externalName": "db.example.com"}}
    row = named("", "services", name)
    assert (row["Cluster-IP"], row["External-IP"], row["Port(s)"], row["Selector"]) == (
        "<none>",
        "db.example.com",
        "<none>",
        "<none>",
    )
    headless = {"metadata": meta("h"), "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}
    row = named("", "services", headless)
    assert (row["Type"], row["Cluster-IP"], row["Port(s)"]) == ("ClusterIP", "None", "5432/TCP")


TEMPLATE = {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "fluentbit"}]}}


def test_workloads() -> None:
    deploy = {
        "metadata": meta("web"),
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["b", "a"]}],
            },
            "template": TEMPLATE,
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert cells("apps", "deployments", deploy) == [
        "web",
        "2/3",
        3,
        2,
        "60s",
        "web,log",
        "nginx:1.27,fluentbit",
        "app=web,tier notin (a,b)",
    ]
    deploy["spec"]["selector"] = {"matchExpressions": [{"key": "x", "operator": "Bogus"}]}
    assert named("apps", "deployments", deploy)["Selector"] == "<invalid>"
    assert named("apps", "deployments", {"metadata": meta()})["Ready"] == "0/1"

    rs = {
        "metadata": meta("web-1"),
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
        "status": {"replicas": 2, "readyReplicas": 1},
    }
    assert cells("apps", "replicasets", rs) == ["web-1", 2, 2, 1, "60s", "web,log", "nginx:1.27,fluentbit", "app=web"]

    rc = {
        "metadata": meta("old"),
        "spec": {"replicas": 1, "selector": {"app": "old"}, "template": TEMPLATE},
        "status": {"replicas": 1},
    }
    assert cells("", "replicationcontrollers", rc) == [
        "old",
        1,
        1,
        0,
        "60s",
        "web,log",
        "nginx:1.27,fluentbit",
        "app=old",
    ]

    ds = {
        "metadata": meta("agent"),
        "spec": {
            "selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
            "template": {**TEMPLATE, "spec": {**TEMPLATE["spec"], "nodeSelector": {"kubernetes.io/os": "linux"}}},
        },
        "status": {
            "desiredNumberScheduled": 3,
            "currentNumberScheduled": 3,
            "numberReady": 2,
            "updatedNumberScheduled": 3,
            "numberAvailable": 2,
        },
    }
    assert cells("apps", "daemonsets", ds) == [
        "agent",
        3,
        3,
        2,
        3,
        2,
        "kubernetes.io/os=linux",
        "60s",
        "web,log",
        "nginx:1.27,fluentbit",
        "app",
    ]

    sts = {"metadata": meta("db"), "spec": {"replicas": 3, "template": TEMPLATE}, "status": {"readyReplicas": 3}}
    assert cells("apps", "statefulsets", sts) == ["db", "3/3", "60s", "web,log", "nginx:1.27,fluentbit"]


def test_jobs() -> None:
    job: dict[str, Any] = {
        "metadata": meta("pi", 600),
        "spec": {
            "completions": 3,
            "parallelism": 2,
            "selector": {"matchLabels": {"job-name": "pi"}},
            "template": TEMPLATE,
        },
        "status": {"succeeded": 1, "startTime": ago(300)},
    }
    assert cells("batch", "jobs", job) == [
        "pi",
        "Running",
        "1/3",
        "5m",
        "10m",
        "web,log",
        "nginx:1.27,fluentbit",
        "job-name=pi",
    ]
    job["status"].update(succeeded=3, completionTime=ago(100), conditions=[{"type": "Complete", "status": "True"}])
    row = named("batch", "jobs", job)
    assert (row["Status"], row["Completions"], row["Duration"]) == ("Complete", "3/3", "3m20s")
    job["status"]["conditions"] = [{"type": "Failed", "status": "True"}]
    assert named("batch", "jobs", job)["Status"] == "Failed"
    job["status"]["conditions"] = [{"type": "Suspended", "status": "True"}]
    assert named("batch", "jobs", job)["Status"] == "Suspended"
    job["metadata"]["deletionTimestamp"] = ago(1)
    assert named("batch", "jobs", job)["Status"] == "Terminating"
    job["status"]["conditions"] = [{"type": "Complete", "status": "False"}, {"type": "FailureTarget", "status": "True"}]
    del job["metadata"]["deletionTimestamp"]
    assert named("batch", "jobs", job)["Status"] == "FailureTarget"
    assert named("batch", "jobs", {"spec": {"parallelism": 4}})["Completions"] == "0/1 of 4"
    assert named("batch", "jobs", {})["Completions"] == "0/1"
    assert named("batch", "jobs", {})["Duration"] == ""


def test_cron_jobs() -> None:
    cj: dict[str, Any] = {
        "metadata": meta("hello"),
        "spec": {"schedule": "*/5 * * * *", "suspend": False, "jobTemplate": {"spec": {"template": TEMPLATE}}},
        "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(30)},
    }
    assert cells("batch", "cronjobs", cj) == [
        "hello",
        "*/5 * * * *",
        "<none>",
        "False",
        1,
        "30s",
        "60s",
        "web,log",
        "nginx:1.27,fluentbit",
        "<none>",
    ]
    cj["spec"].update(timeZone="Europe/Paris", suspend=True)
    del cj["status"]
    row = named("batch", "cronjobs", cj)
    assert (row["Timezone"], row["Suspend"], row["Active"], row["Last Schedule"]) == (
        "Europe/Paris",
        "True",
        0,
        "<none>",
    )
    assert named("batch", "cronjobs", {})["Suspend"] == "<unset>"


def test_endpoint_slices() -> None:
    es = {
        "metadata": meta("web-abc"),
        "addressType": "IPv4",
        "ports": [{"port": 80}, {"name": "metrics"}, {}, {"port": 9}],
        "endpoints": [{"addresses": ["10.0.0.1", "10.0.0.2"]}, {"addresses": ["10.0.0.3", "10.0.0.4", "10.0.0.5"]}],
    }
    assert cells("discovery.k8s.io", "endpointslices", es) == [
        "web-abc",
        "IPv4",
        "80,metrics,* + 1 more...",
        "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...",
        "60s",
    ]
    row = named("discovery.k8s.io", "endpointslices", {"metadata": meta(), "addressType": "FQDN"})
    assert (row["Ports"], row["Endpoints"]) == ("<unset>", "<unset>")


def test_core_and_events_v1_events() -> None:
    core = {
        "metadata": meta("web.17a"),
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{web}"},
        "reason": "Pulled",
        "message": "  Container image pulled \n",
        "type": "Normal",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(600),
        "lastTimestamp": ago(30),
        "count": 4,
    }
    assert cells("", "events", core) == [
        "30s",
        "Normal",
        "Pulled",
        "pod/web",
        "spec.containers{web}",
        "kubelet, node-1",
        "Container image pulled",
        "10m",
        4,
        "web.17a",
    ]
    new = {
        "metadata": meta("web.17b"),
        "regarding": {"kind": "Node", "name": "node-1"},
        "reason": "Rebooted",
        "note": "rebooted",
        "type": "Warning",
        "reportingController": "kubelet",
        "eventTime": ago(120, micro=True),
    }
    assert cells("events.k8s.io", "events", new) == [
        "2m",
        "Warning",
        "Rebooted",
        "node/node-1",
        "",
        "kubelet",
        "rebooted",
        "2m",
        1,
        "web.17b",
    ]
    new["series"] = {"count": 7, "lastObservedTime": ago(5, micro=True)}
    new["reportingInstance"] = "node-1"
    row = named("events.k8s.io", "events", new)
    assert (row["Last Seen"], row["Count"], row["Source"]) == ("5s", 7, "kubelet, node-1")
    assert named("", "events", {"involvedObject": {"kind": "Cluster"}})["Object"] == "cluster"


def test_small_printers() -> None:
    assert cells("", "namespaces", {"metadata": meta("shop"), "status": {"phase": "Terminating"}}) == [
        "shop",
        "Terminating",
        "60s",
    ]
    assert cells(
        "", "configmaps", {"metadata": meta("c"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    ) == ["c", 3, "60s"]
    assert cells("", "serviceaccounts", {"metadata": meta("sa"), "secrets": [{"name": "t"}]}) == ["sa", 1, "60s"]
    assert cells("coordination.k8s.io", "leases", {"metadata": meta("l"), "spec": {"holderIdentity": "me"}}) == [
        "l",
        "me",
        "60s",
    ]
    owners = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "c"},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": True},
    ]
    revision = {"metadata": meta("agent-5d", ownerReferences=owners), "revision": 2}
    assert cells("apps", "controllerrevisions", revision) == ["agent-5d", "daemonset.apps/agent", 2, "60s"]
    core_owner = {
        "metadata": meta("r", ownerReferences=[{"apiVersion": "v1", "kind": "Pod", "name": "p", "controller": True}])
    }
    assert named("apps", "controllerrevisions", core_owner)["Controller"] == "pod/p"


def test_selector_formatting() -> None:
    assert table.format_labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert table.format_labels({}) == "<none>"
    assert table.format_label_selector(None) == "<none>"
    assert table.format_label_selector({}) == "<none>"
    selector = {
        "matchLabels": {"z": "1"},
        "matchExpressions": [
            {"key": "a", "operator": "In", "values": ["y", "x"]},
            {"key": "m", "operator": "DoesNotExist"},
        ],
    }
    assert table.format_label_selector(selector) == "a in (x,y),!m,z=1"
    assert table.format_label_selector({"matchExpressions": [{"key": "a", "operator": "In"}]}) == "<error>"


# --- robustness --------------------------------------------------------------------------------------------------
SAMPLES: dict[str, dict[str, Any]] = {
    "Pod": pod(phase="Running", containerStatuses=[{"name": "a", "ready": True, "state": RUNNING}]),
    "Service": {"metadata": meta(), "spec": {"ports": [{"port": 1}]}},
    "Deployment": {"metadata": meta(), "spec": {"template": TEMPLATE}},
}

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
FIELD_NAMES = st.sampled_from(
    [
        "metadata",
        "spec",
        "status",
        "name",
        "creationTimestamp",
        "deletionTimestamp",
        "labels",
        "ownerReferences",
        "containers",
        "initContainers",
        "containerStatuses",
        "initContainerStatuses",
        "state",
        "lastState",
        "terminated",
        "waiting",
        "running",
        "finishedAt",
        "restartCount",
        "ready",
        "started",
        "conditions",
        "type",
        "ports",
        "port",
        "nodePort",
        "selector",
        "matchLabels",
        "matchExpressions",
        "values",
        "operator",
        "template",
        "replicas",
        "completions",
        "parallelism",
        "startTime",
        "series",
        "involvedObject",
        "regarding",
        "source",
        "endpoints",
        "addresses",
        "podIPs",
        "readinessGates",
        "nodeInfo",
        "addresses",
        "ingress",
        "loadBalancer",
        "jobTemplate",
        "active",
        "suspend",
        "timeZone",
        "eventTime",
        "count",
        "data",
        "secrets",
        "revision",
    ]
)
SHAPED = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=25) | st.just("2024-05-31T00:00:00Z"),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(FIELD_NAMES, children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(resource=st.sampled_from(RESOURCES), obj=st.dictionaries(FIELD_NAMES, SHAPED | JSONISH, max_size=6))
def test_arbitrary_objects_never_raise(resource: ResourceType, obj: dict[str, Any]) -> None:
    row = table.row(resource, obj, NOW, REF)
    assert len(row["cells"]) == len(table.columns(resource))
    assert all(isinstance(c, str | int) and not isinstance(c, bool) for c in row["cells"])
    orjson.dumps(table.table(resource, [row], "1"))
