"""Server-side defaulting, as kube-apiserver's defaulting functions and admission plugins apply it on writes.

Only what clients can observe and what tooling above depends on: pod and container defaults, the namespace name
label, workload spec defaults and the labels the Job strategy adds. Each function mutates the object in place and
is idempotent, so it can run on every create and update.
"""

from __future__ import annotations

from collections.abc import Callable

from nodemeta.sim.resources import JSON

_NOT_READY_TOLERATIONS = [
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
]


def _container(c: JSON) -> None:
    image = str(c.get("image") or "")
    tag = image.rsplit("/", 1)[-1]
    untagged = ":" not in tag and "@" not in image
    c.setdefault("imagePullPolicy", "Always" if untagged or tag.endswith(":latest") else "IfNotPresent")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def pod_spec(spec: JSON) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                _container(c)


def _pod(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    pod_spec(spec)
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    tolerations = spec.setdefault("tolerations", [])
    present = {t.get("key") for t in tolerations if isinstance(t, dict)}
    for toleration in _NOT_READY_TOLERATIONS:
        if toleration["key"] not in present:
            tolerations.append(dict(toleration))
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", "BestEffort")


def _template(obj: JSON) -> None:
    template = obj.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("metadata", {})
    pod_spec(template.setdefault("spec", {}))


def _deployment(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    _template(obj)


def _replicas(obj: JSON) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)
    _template(obj)


def _daemonset(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("revisionHistoryLimit", 10)
    strategy = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if strategy.get("type") == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {"maxUnavailable": 1, "maxSurge": 0})
    _template(obj)


def _statefulset(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    _template(obj)


def _job(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    # Only a Job that sets neither is a single-pod Job; parallelism alone makes a work-queue Job.
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {})
    pod_spec(template.setdefault("spec", {}))
    uid = obj["metadata"].get("uid", "")
    name = obj["metadata"].get("name", "")
    if not spec.get("manualSelector"):
        labels = template["metadata"].setdefault("labels", {})
        labels.setdefault("batch.kubernetes.io/controller-uid", uid)
        labels.setdefault("batch.kubernetes.io/job-name", name)
        labels.setdefault("controller-uid", uid)
        labels.setdefault("job-name", name)
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})


def _cronjob(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job_template = spec.setdefault("jobTemplate", {})
    template = job_template.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("metadata", {})
    pod_spec(template.setdefault("spec", {}))


def _service(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def _namespace(obj: JSON) -> None:
    name = obj["metadata"].get("name", "")
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def _node(obj: JSON) -> None:
    obj.setdefault("spec", {})
    obj.setdefault("status", {})


def _rc(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    template = spec.get("template")
    if isinstance(template, dict):
        labels = (template.get("metadata") or {}).get("labels") or {}
        spec.setdefault("selector", dict(labels))
        obj["metadata"].setdefault("labels", dict(labels))
        pod_spec(template.setdefault("spec", {}))


def _event(obj: JSON) -> None:
    if obj.get("eventTime") is None:
        obj.setdefault("count", 1)
    obj.setdefault("eventTime", None)
    obj.setdefault("reportingComponent", (obj.get("source") or {}).get("component", ""))
    obj.setdefault("reportingInstance", (obj.get("source") or {}).get("host", ""))


DEFAULTERS: dict[str, Callable[[JSON], None]] = {
    "Pod": _pod,
    "Deployment": _deployment,
    "ReplicaSet": _replicas,
    "DaemonSet": _daemonset,
    "StatefulSet": _statefulset,
    "Job": _job,
    "CronJob": _cronjob,
    "Service": _service,
    "Namespace": _namespace,
    "Node": _node,
    "ReplicationController": _rc,
    "Event": _event,
}


def apply(kind: str, obj: JSON) -> None:
    """Default `obj` (a `kind`) in place; objects of kinds without defaults are left as they are."""
    defaulter = DEFAULTERS.get(kind)
    if defaulter is not None:
        defaulter(obj)
