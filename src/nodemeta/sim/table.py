"""`meta.k8s.io/v1` Table rendering: kube-apiserver's answer to `Accept: application/json;as=Table;...`, which
is what `kubectl get` prints.

Columns and cells follow kube-apiserver 1.32's printers (pkg/printers/internalversion). The server always
renders the wide form, so rows carry the priority-1 columns too and kubectl hides them unless `-o wide`.
Integer cells are ints (Desired, Current, Up-to-date, Count, ...), everything else strings; CronJob's Suspend
is the string "True"/"False" although its column says boolean, as upstream. Kinds without a printer get the
default table: Name plus `Created At` (a date). Objects come from users, so a missing or ill-typed field never
raises: it reads as empty, zero or `<none>` the way the Go printers see a zero value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from nodemeta.sim.resources import ResourceType

JSON = dict[str, Any]
Cell = str | int
CellsFn = Callable[[Mapping[str, Any], float], list[Cell]]

_NAME_DOC: Final = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_CREATED_DOC: Final = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this "
    "value. It is represented in RFC3339 form and is in UTC.  Populated by the system. Read-only. Null for "
    "lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
    "#metadata"
)


# --- time ---------------------------------------------------------------------------------------------------
def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: two or three significant figures (5s, 3m20s, 3h20m, 2d, 5y)."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        return f"{minutes}m{secs % 60}s" if secs % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


_ZERO_TIME: Final = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 timestamp (Time or MicroTime) as an aware datetime; None if absent, zero or unparseable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return None if parsed == _ZERO_TIME else parsed


def _since(value: Any, now: float) -> str:
    """translateTimestampSince: `<unknown>` for a zero timestamp."""
    parsed = parse_time(value)
    return "<unknown>" if parsed is None else human_duration(now - parsed.timestamp())


def age(created: str | None, now: float) -> str:
    """The Age cell: how long before `now` (epoch seconds) `created` (RFC 3339) was, in HumanDuration form."""
    return _since(created, now)


# --- tolerant field access ----------------------------------------------------------------------------------
def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _str(obj: Any, *keys: str) -> str:
    value = _get(obj, *keys)
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, Mapping | list | bool):
        return ""
    return str(value)


def _int(obj: Any, *keys: str, default: int = 0) -> int:
    value = _get(obj, *keys)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _list(obj: Any, *keys: str) -> list[Any]:
    value = _get(obj, *keys)
    return value if isinstance(value, list) else []


def _maps(obj: Any, *keys: str) -> list[Mapping[str, Any]]:
    return [item for item in _list(obj, *keys) if isinstance(item, Mapping)]


def _map(obj: Any, *keys: str) -> Mapping[str, Any]:
    value = _get(obj, *keys)
    return value if isinstance(value, Mapping) else {}


def _has(obj: Any, *keys: str) -> bool:
    return _get(obj, *keys) is not None


def _name(obj: Mapping[str, Any]) -> str:
    return _str(obj, "metadata", "name")


def _created(obj: Mapping[str, Any], now: float) -> str:
    return _since(_get(obj, "metadata", "creationTimestamp"), now)


# --- formatting helpers shared by printers ------------------------------------------------------------------
def format_labels(labels: Any) -> str:
    """labels.FormatLabels: `k=v` pairs sorted by key, or `<none>`."""
    if not isinstance(labels, Mapping) or not labels:
        return "<none>"
    return ",".join(f"{k}={'' if v is None else v}" for k, v in sorted(labels.items()))


def selector_string(selector: Any) -> str | None:
    """metav1.LabelSelectorAsSelector(...).String(); None when the selector is invalid."""
    if not isinstance(selector, Mapping):
        return ""
    labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not isinstance(labels, Mapping) or not isinstance(expressions, list):
        return None
    reqs: list[tuple[str, str]] = [(str(k), f"{k}={'' if v is None else v}") for k, v in labels.items()]
    for expr in expressions:
        key, op = _str(expr, "key"), _str(expr, "operator")
        values = sorted({str(v) for v in _list(expr, "values")})
        if op in ("In", "NotIn"):
            if not values:
                return None
            word = "in" if op == "In" else "notin"
            reqs.append((key, f"{key} {word} ({','.join(values)})"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                return None
            reqs.append((key, key if op == "Exists" else f"!{key}"))
        else:
            return None
    reqs.sort(key=lambda r: r[0])
    return ",".join(text for _, text in reqs)


def format_label_selector(selector: Any) -> str:
    """metav1.FormatLabelSelector: `<error>` when invalid, `<none>` when it selects by nothing."""
    text = selector_string(selector)
    if text is None:
        return "<error>"
    return text or "<none>"


def _containers(containers: Sequence[Any]) -> list[Cell]:
    """layoutContainerCells: the names and the images, each comma-joined."""
    items = [c for c in containers if isinstance(c, Mapping)]
    return [",".join(_str(c, "name") for c in items), ",".join(_str(c, "image") for c in items)]


def _more(items: list[str], count: int, limit: int = 3) -> str:
    """listWithMoreString: at most `limit` items, then `+ N more...`; `<unset>` when empty."""
    text = ",".join(items[:limit])
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or "<unset>"


def _condition(conditions: list[Mapping[str, Any]], kind: str) -> str | None:
    """The status of the first condition of type `kind`, or None when there is none."""
    for cond in conditions:
        if _str(cond, "type") == kind:
            return _str(cond, "status")
    return None


# --- columns ------------------------------------------------------------------------------------------------
def _col(name: str, description: str, kind: str = "string", priority: int = 0, fmt: str = "") -> JSON:
    return {"name": name, "type": kind, "format": fmt, "description": description, "priority": priority}


NAME: Final = _col("Name", _NAME_DOC, fmt="name")
AGE: Final = _col("Age", _CREATED_DOC)
_CONTAINERS = _col("Containers", "Names of each container in the template.", priority=1)
_IMAGES = _col("Images", "Images referenced by each container in the template.", priority=1)


def _selector_col(description: str) -> JSON:
    return _col("Selector", description, priority=1)


# --- printers: cells for one object -------------------------------------------------------------------------
def _pod_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    spec, status = _map(obj, "spec"), _map(obj, "status")
    phase = _str(status, "phase")
    reason = _str(status, "reason") or phase
    conditions = _maps(status, "conditions")
    for cond in conditions:
        if _str(cond, "type") == "PodScheduled" and _str(cond, "reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_specs = _maps(spec, "initContainers")
    sidecars = {_str(c, "name") for c in init_specs if _str(c, "restartPolicy") == "Always"}
    total = len(_list(spec, "containers")) + len(sidecars)
    ready = restarts = sidecar_restarts = 0
    last_restart = last_sidecar_restart = 0.0

    initializing = False
    for i, cs in enumerate(_maps(status, "initContainerStatuses")):
        count = _int(cs, "restartCount")
        restarts += count
        finished = parse_time(_get(cs, "lastState", "terminated", "finishedAt"))
        if finished is not None:
            last_restart = max(last_restart, finished.timestamp())
        sidecar = _str(cs, "name") in sidecars
        if sidecar:
            sidecar_restarts += count
            if finished is not None:
                last_sidecar_restart = max(last_sidecar_restart, finished.timestamp())
        terminated, waiting = _get(cs, "state", "terminated"), _get(cs, "state", "waiting")
        if isinstance(terminated, Mapping) and _int(terminated, "exitCode") == 0:
            continue
        if sidecar and _get(cs, "started") is True:
            if _get(cs, "ready") is True:
                ready += 1
            continue
        if isinstance(terminated, Mapping):
            if _str(terminated, "reason"):
                reason = "Init:" + _str(terminated, "reason")
            elif _int(terminated, "signal"):
                reason = f"Init:Signal:{_int(terminated, 'signal')}"
            else:
                reason = f"Init:ExitCode:{_int(terminated, 'exitCode')}"
        elif isinstance(waiting, Mapping) and _str(waiting, "reason") not in ("", "PodInitializing"):
            reason = "Init:" + _str(waiting, "reason")
        else:
            reason = f"Init:{i}/{len(_list(spec, 'initContainers'))}"
        initializing = True
        break

    if not initializing or _condition(conditions, "Initialized") == "True":
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(_maps(status, "containerStatuses")):
            restarts += _int(cs, "restartCount")
            finished = parse_time(_get(cs, "lastState", "terminated", "finishedAt"))
            if finished is not None:
                last_restart = max(last_restart, finished.timestamp())
            terminated, waiting = _get(cs, "state", "terminated"), _get(cs, "state", "waiting")
            if isinstance(waiting, Mapping) and _str(waiting, "reason"):
                reason = _str(waiting, "reason")
            elif isinstance(terminated, Mapping) and _str(terminated, "reason"):
                reason = _str(terminated, "reason")
            elif isinstance(terminated, Mapping):
                signal = _int(terminated, "signal")
                reason = f"Signal:{signal}" if signal else f"ExitCode:{_int(terminated, 'exitCode')}"
            elif _get(cs, "ready") is True and isinstance(_get(cs, "state", "running"), Mapping):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _condition_true(conditions, "Ready") else "NotReady"

    if _has(obj, "metadata", "deletionTimestamp"):
        if _str(status, "reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"

    restarts_cell = str(restarts)
    if restarts and last_restart:
        restarts_cell = f"{restarts} ({human_duration(now - last_restart)} ago)"

    pod_ips = _maps(status, "podIPs")
    pod_ip = _str(pod_ips[0], "ip") if pod_ips else _str(status, "podIP")
    gates = _maps(spec, "readinessGates")
    readiness = "<none>"
    if gates:
        passed = sum(1 for g in gates if _condition(conditions, _str(g, "conditionType")) == "True")
        readiness = f"{passed}/{len(gates)}"
    return [
        _name(obj),
        f"{ready}/{total}",
        reason,
        restarts_cell,
        _created(obj, now),
        pod_ip or "<none>",
        _str(spec, "nodeName") or "<none>",
        _str(status, "nominatedNodeName") or "<none>",
        readiness,
    ]


def _condition_true(conditions: list[Mapping[str, Any]], kind: str) -> bool:
    return any(_str(c, "type") == kind and _str(c, "status") == "True" for c in conditions)


def _node_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    ready = None
    for cond in _maps(obj, "status", "conditions"):
        if _str(cond, "type") == "Ready":
            ready = _str(cond, "status")  # the last one wins, as in the printer's map
    status = ["Unknown"] if ready is None else ["Ready" if ready == "True" else "NotReady"]
    if _get(obj, "spec", "unschedulable") is True:
        status.append("SchedulingDisabled")
    roles: set[str] = set()
    for key, value in _map(obj, "metadata", "labels").items():
        if key.startswith("node-role.kubernetes.io/") and key != "node-role.kubernetes.io/":
            roles.add(key.removeprefix("node-role.kubernetes.io/"))
        elif key == "kubernetes.io/role" and isinstance(value, str) and value:
            roles.add(value)
    info = _map(obj, "status", "nodeInfo")
    addresses = _maps(obj, "status", "addresses")

    def address(kind: str) -> str:
        return next((_str(a, "address") for a in addresses if _str(a, "type") == kind), "<none>")

    return [
        _name(obj),
        ",".join(status),
        ",".join(sorted(roles)) or "<none>",
        _created(obj, now),
        _str(info, "kubeletVersion"),
        address("InternalIP"),
        address("ExternalIP"),
        _str(info, "osImage") or "<unknown>",
        _str(info, "kernelVersion") or "<unknown>",
        _str(info, "containerRuntimeVersion") or "<unknown>",
    ]


def _namespace_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    return [_name(obj), _str(obj, "status", "phase"), _created(obj, now)]


def _service_external_ip(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    external = [ip for ip in _list(spec, "externalIPs") if isinstance(ip, str)]
    kind = _str(spec, "type") or "ClusterIP"
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        found = {_str(i, "ip") or _str(i, "hostname") for i in _maps(status, "loadBalancer", "ingress")}
        balancer = sorted(found - {""})
        if external:
            return ",".join(balancer + external)
        return ",".join(balancer) or "<pending>"
    if kind == "ExternalName":
        return _str(spec, "externalName")
    return "<unknown>"


def _service_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    spec = _map(obj, "spec")
    ips = [ip for ip in _list(spec, "clusterIPs") if isinstance(ip, str)]
    cluster_ip = ips[0] if ips else _str(spec, "clusterIP") or "<none>"
    ports = []
    for port in _maps(spec, "ports"):
        protocol = _str(port, "protocol") or "TCP"
        node_port = _int(port, "nodePort")
        middle = f":{node_port}" if node_port > 0 else ""
        ports.append(f"{_int(port, 'port')}{middle}/{protocol}")
    return [
        _name(obj),
        _str(spec, "type") or "ClusterIP",
        cluster_ip,
        _service_external_ip(spec, _map(obj, "status")),
        ",".join(ports) or "<none>",
        _created(obj, now),
        format_labels(_get(spec, "selector")),
    ]


def _template_containers(obj: Mapping[str, Any], *template: str) -> list[Cell]:
    return _containers(_list(obj, *template, "spec", "containers"))


def _deployment_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    desired = _int(obj, "spec", "replicas", default=1)
    selector = selector_string(_get(obj, "spec", "selector"))
    return [
        _name(obj),
        f"{_int(obj, 'status', 'readyReplicas')}/{desired}",
        _int(obj, "status", "updatedReplicas"),
        _int(obj, "status", "availableReplicas"),
        _created(obj, now),
        *_template_containers(obj, "spec", "template"),
        "<invalid>" if selector is None else selector,
    ]


def _replica_set_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    return [
        _name(obj),
        _int(obj, "spec", "replicas", default=1),
        _int(obj, "status", "replicas"),
        _int(obj, "status", "readyReplicas"),
        _created(obj, now),
        *_template_containers(obj, "spec", "template"),
        format_label_selector(_get(obj, "spec", "selector")),
    ]


def _replication_controller_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    return [
        _name(obj),
        _int(obj, "spec", "replicas", default=1),
        _int(obj, "status", "replicas"),
        _int(obj, "status", "readyReplicas"),
        _created(obj, now),
        *_template_containers(obj, "spec", "template"),
        format_labels(_get(obj, "spec", "selector")),
    ]


def _daemon_set_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    status = _map(obj, "status")
    return [
        _name(obj),
        _int(status, "desiredNumberScheduled"),
        _int(status, "currentNumberScheduled"),
        _int(status, "numberReady"),
        _int(status, "updatedNumberScheduled"),
        _int(status, "numberAvailable"),
        format_labels(_get(obj, "spec", "template", "spec", "nodeSelector")),
        _created(obj, now),
        *_template_containers(obj, "spec", "template"),
        format_label_selector(_get(obj, "spec", "selector")),
    ]


def _stateful_set_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    desired = _int(obj, "spec", "replicas", default=1)
    return [
        _name(obj),
        f"{_int(obj, 'status', 'readyReplicas')}/{desired}",
        _created(obj, now),
        *_template_containers(obj, "spec", "template"),
    ]


def _job_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    spec, status = _map(obj, "spec"), _map(obj, "status")
    succeeded = _int(status, "succeeded")
    completions = _get(spec, "completions")
    parallelism = _int(spec, "parallelism")
    if isinstance(completions, int) and not isinstance(completions, bool):
        done = f"{succeeded}/{completions}"
    elif parallelism > 1:
        done = f"{succeeded}/1 of {parallelism}"
    else:
        done = f"{succeeded}/1"
    started, finished = parse_time(_get(status, "startTime")), parse_time(_get(status, "completionTime"))
    took = ""
    if started is not None:
        end = now if finished is None else finished.timestamp()
        took = human_duration(end - started.timestamp())
    conditions = _maps(status, "conditions")
    state = "Running"
    if _condition(conditions, "Complete") == "True":
        state = "Complete"
    elif _condition(conditions, "Failed") == "True":
        state = "Failed"
    elif _has(obj, "metadata", "deletionTimestamp"):
        state = "Terminating"
    elif _condition(conditions, "Suspended") == "True":
        state = "Suspended"
    elif _condition(conditions, "FailureTarget") == "True":
        state = "FailureTarget"
    return [
        _name(obj),
        state,
        done,
        took,
        _created(obj, now),
        *_template_containers(obj, "spec", "template"),
        format_label_selector(_get(spec, "selector")),
    ]


def _cron_job_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    spec = _map(obj, "spec")
    zone = _get(spec, "timeZone")
    suspend = _get(spec, "suspend")
    last = _get(obj, "status", "lastScheduleTime")
    return [
        _name(obj),
        _str(spec, "schedule"),
        zone if isinstance(zone, str) else "<none>",
        ("True" if suspend else "False") if isinstance(suspend, bool) else "<unset>",
        len(_list(obj, "status", "active")),
        "<none>" if last is None else _since(last, now),
        _created(obj, now),
        *_template_containers(obj, "spec", "jobTemplate", "spec", "template"),
        format_label_selector(_get(spec, "jobTemplate", "spec", "selector")),
    ]


def _endpoint_slice_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    ports = []
    for port in _maps(obj, "ports"):
        number, name = _get(port, "port"), _get(port, "name")
        if isinstance(number, int) and not isinstance(number, bool):
            ports.append(str(number))
        else:
            ports.append(name if isinstance(name, str) else "*")
    addresses = [str(a) for ep in _maps(obj, "endpoints") for a in _list(ep, "addresses")]
    return [
        _name(obj),
        _str(obj, "addressType"),
        _more(ports, len(ports)),
        _more(addresses, len(addresses)),
        _created(obj, now),
    ]


def _first(obj: Mapping[str, Any], *keys: str) -> Any:
    """The first of several spellings that is set (core/v1 and events.k8s.io/v1 name Event fields apart)."""
    for key in keys:
        value = obj.get(key)
        if value is not None and value != "":
            return value
    return None


def _event_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    first_seen = _first(obj, "firstTimestamp", "deprecatedFirstTimestamp")
    first = _since(first_seen, now) if parse_time(first_seen) else _since(_get(obj, "eventTime"), now)
    last_seen = _first(obj, "lastTimestamp", "deprecatedLastTimestamp")
    last = _since(last_seen, now) if parse_time(last_seen) else first
    count = _int(obj, "count") or _int(obj, "deprecatedCount")
    series = _get(obj, "series")
    if isinstance(series, Mapping):
        last = _since(_get(series, "lastObservedTime"), now)
        count = _int(series, "count")
    elif count == 0:
        count = 1  # singleton events carry no count in the new API
    involved = _first(obj, "involvedObject", "regarding")
    kind, name = _str(involved, "kind").lower(), _str(involved, "name")
    source = _first(obj, "source", "deprecatedSource")
    component = _str(source, "component") or _str(_first(obj, "reportingComponent", "reportingController"))
    instance = _str(source, "host") or _str(obj, "reportingInstance")
    return [
        last,
        _str(obj, "type"),
        _str(obj, "reason"),
        f"{kind}/{name}" if name else kind,
        _str(involved, "fieldPath"),
        f"{component}, {instance}" if instance else component,
        _str(_first(obj, "message", "note")).strip(),
        first,
        count,
        _name(obj),
    ]


def _config_map_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    return [_name(obj), len(_map(obj, "data")) + len(_map(obj, "binaryData")), _created(obj, now)]


def _service_account_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    return [_name(obj), len(_list(obj, "secrets")), _created(obj, now)]


def _controller_revision_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    controller = "<none>"
    for ref in _maps(obj, "metadata", "ownerReferences"):
        if _get(ref, "controller") is True:
            group = _str(ref, "apiVersion").rpartition("/")[0]
            kind = _str(ref, "kind")
            group_kind = f"{kind}.{group}" if group else kind
            controller = f"{group_kind.lower()}/{_str(ref, 'name')}" if group_kind else _str(ref, "name")
            break
    return [_name(obj), controller, _int(obj, "revision"), _created(obj, now)]


def _lease_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    return [_name(obj), _str(obj, "spec", "holderIdentity"), _created(obj, now)]


def _default_cells(obj: Mapping[str, Any], now: float) -> list[Cell]:
    raw = _get(obj, "metadata", "creationTimestamp")
    parsed = parse_time(raw)
    if parsed is not None:
        created = parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        created = raw if isinstance(raw, str) and raw and not raw.startswith("0001-") else "0001-01-01T00:00:00Z"
    return [_name(obj), created]


_EVENT_COLUMNS = (
    _col("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    _col("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
    _col("Reason", "This should be a short, machine understandable string that gives the reason for the "
         "transition into the object's current status."),
    _col("Object", "The object that this event is about."),
    _col("Subobject", "The field of the involved object the event is about, e.g. spec.containers[0].",
         priority=1),
    _col("Source", "The component reporting this event. Should be a short machine understandable string.",
         priority=1),
    _col("Message", "A human-readable description of the status of this operation."),
    _col("First Seen", "The time at which the event was first recorded. (Time of server receipt is in "
         "TypeMeta.)", priority=1),
    _col("Count", "The number of times this event has occurred.", priority=1),
    {**NAME, "priority": 1},
)  # fmt: skip

_PRINTERS: Final[dict[tuple[str, str], tuple[tuple[JSON, ...], CellsFn]]] = {
    ("", "Pod"): (
        (
            NAME,
            _col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            _col("Status", "The aggregate status of the containers in this pod."),
            _col("Restarts", "The number of times the containers in this pod have been restarted and when "
                 "the last container in this pod has restarted."),
            AGE,
            _col("IP", "podIP address allocated to the pod. Routable at least within the cluster.",
                 priority=1),
            _col("Node", "NodeName indicates in which node this pod is scheduled.", priority=1),
            _col("Nominated Node", "nominatedNodeName is set only when this pod preempts other pods on the "
                 "node.", priority=1),
            _col("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.",
                 priority=1),
        ),
        _pod_cells,
    ),
    ("", "Node"): (
        (
            NAME,
            _col("Status", "The status of the node"),
            _col("Roles", "The roles of the node"),
            AGE,
            _col("Version", "Kubelet Version reported by the node."),
            _col("Internal-IP", "List of addresses reachable to the node.", priority=1),
            _col("External-IP", "List of addresses reachable to the node.", priority=1),
            _col("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 "
                 "(wheezy)).", priority=1),
            _col("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. "
                 "3.16.0-0.bpo.4-amd64).", priority=1),
            _col("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote "
                 "API (e.g. containerd://1.4.2).", priority=1),
        ),
        _node_cells,
    ),
    ("", "Namespace"): ((NAME, _col("Status", "The status of the namespace"), AGE), _namespace_cells),
    ("", "Service"): (
        (
            NAME,
            _col("Type", "type determines how the Service is exposed."),
            _col("Cluster-IP", "clusterIP is the IP address of the service, usually assigned randomly."),
            _col("External-IP", "externalIPs is a list of IP addresses for which nodes in the cluster will "
                 "also accept traffic for this service."),
            _col("Port(s)", "The list of ports that are exposed by this service."),
            AGE,
            _selector_col("Route service traffic to pods with label keys and values matching this selector."),
        ),
        _service_cells,
    ),
    ("", "ReplicationController"): (
        (
            NAME,
            _col("Desired", "Replicas is the number of desired replicas.", "integer"),
            _col("Current", "Replicas is the most recently observed number of replicas.", "integer"),
            _col("Ready", "The number of ready replicas for this replication controller.", "integer"),
            AGE,
            _CONTAINERS,
            _IMAGES,
            _selector_col("Selector is a label query over pods that should match the Replicas count."),
        ),
        _replication_controller_cells,
    ),
    ("", "Event"): (_EVENT_COLUMNS, _event_cells),
    ("events.k8s.io", "Event"): (_EVENT_COLUMNS, _event_cells),
    ("", "ConfigMap"): (
        (NAME, _col("Data", "Data contains the configuration data."), AGE),
        _config_map_cells,
    ),
    ("", "ServiceAccount"): (
        (NAME, _col("Secrets", "Secrets is a list of the secrets in the same namespace."), AGE),
        _service_account_cells,
    ),
    ("apps", "Deployment"): (
        (
            NAME,
            _col("Ready", "Number of the pod with ready state"),
            _col("Up-to-date", "Total number of non-terminated pods targeted by this deployment that have "
                 "the desired template spec."),
            _col("Available", "Total number of available pods (ready for at least minReadySeconds) targeted "
                 "by this deployment."),
            AGE,
            _CONTAINERS,
            _IMAGES,
            _selector_col("Label selector for pods."),
        ),
        _deployment_cells,
    ),
    ("apps", "ReplicaSet"): (
        (
            NAME,
            _col("Desired", "Replicas is the number of desired replicas.", "integer"),
            _col("Current", "Replicas is the most recently observed number of replicas.", "integer"),
            _col("Ready", "The number of ready replicas for this replica set.", "integer"),
            AGE,
            _CONTAINERS,
            _IMAGES,
            _selector_col("Selector is a label query over pods that should match the replica count."),
        ),
        _replica_set_cells,
    ),
    ("apps", "DaemonSet"): (
        (
            NAME,
            _col("Desired", "The total number of nodes that should be running the daemon pod.", "integer"),
            _col("Current", "The number of nodes that are running at least 1 daemon pod and are supposed "
                 "to run the daemon pod.", "integer"),
            _col("Ready", "The number of nodes that should be running the daemon pod and have one or more "
                 "of the daemon pod running and ready.", "integer"),
            _col("Up-to-date", "The total number of nodes that are running updated daemon pod", "integer"),
            _col("Available", "The number of nodes that should be running the daemon pod and have one or "
                 "more of the daemon pod running and available.", "integer"),
            _col("Node Selector", "NodeSelector is a selector which must be true for the pod to fit on a "
                 "node."),
            AGE,
            _CONTAINERS,
            _IMAGES,
            _selector_col("A label query over pods that are managed by the daemon set."),
        ),
        _daemon_set_cells,
    ),
    ("apps", "StatefulSet"): (
        (NAME, _col("Ready", "Number of the pod with ready state"), AGE, _CONTAINERS, _IMAGES),
        _stateful_set_cells,
    ),
    ("apps", "ControllerRevision"): (
        (
            NAME,
            _col("Controller", "Controller of the object"),
            _col("Revision", "Revision indicates the revision of the state represented by Data."),
            AGE,
        ),
        _controller_revision_cells,
    ),
    ("batch", "Job"): (
        (
            NAME,
            _col("Status", "Status of the job."),
            _col("Completions", "The number of pods which reached phase Succeeded."),
            _col("Duration", "Time required to complete the job."),
            AGE,
            _CONTAINERS,
            _IMAGES,
            _selector_col("A label query over pods that should match the pod count."),
        ),
        _job_cells,
    ),
    ("batch", "CronJob"): (
        (
            NAME,
            _col("Schedule", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
            _col("Timezone", "The time zone name for the given schedule."),
            _col("Suspend", "This flag tells the controller to suspend subsequent executions.", "boolean"),
            _col("Active", "A list of pointers to currently running jobs.", "integer"),
            _col("Last Schedule", "Information when was the last time the job was successfully scheduled."),
            AGE,
            _CONTAINERS,
            _IMAGES,
            _selector_col("A label query over pods that should match the pod count."),
        ),
        _cron_job_cells,
    ),
    ("discovery.k8s.io", "EndpointSlice"): (
        (
            NAME,
            _col("AddressType", "addressType specifies the type of address carried by this EndpointSlice."),
            _col("Ports", "ports specifies the list of network ports exposed by each endpoint."),
            _col("Endpoints", "endpoints is a list of unique endpoints in this slice."),
            AGE,
        ),
        _endpoint_slice_cells,
    ),
    ("coordination.k8s.io", "Lease"): (
        (NAME, _col("Holder", "holderIdentity contains the identity of the holder of a current lease."), AGE),
        _lease_cells,
    ),
}  # fmt: skip
_DEFAULT: Final[tuple[tuple[JSON, ...], CellsFn]] = (
    (NAME, _col("Created At", _CREATED_DOC, "date")),
    _default_cells,
)

_POD_SUCCEEDED: Final = {
    "type": "Completed",
    "status": "True",
    "reason": "Succeeded",
    "message": "The pod has completed successfully.",
}
_POD_FAILED: Final = {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}


def _printer(res: ResourceType) -> tuple[tuple[JSON, ...], CellsFn]:
    return _PRINTERS.get((res.group, res.kind), _DEFAULT)


def columns(res: ResourceType) -> list[JSON]:
    """The columnDefinitions for a resource (fresh dicts: callers may change them)."""
    return [dict(col) for col in _printer(res)[0]]


def row(res: ResourceType, obj: Mapping[str, Any], now: float, object_ref: JSON) -> JSON:
    """One TableRow: the cells for `obj` at `now` (epoch seconds), and `object_ref` as its `object`."""
    out: JSON = {"cells": _printer(res)[1](obj, now)}
    if res.group == "" and res.kind == "Pod":
        phase = _str(obj, "status", "phase")
        if phase in ("Succeeded", "Failed"):
            out["conditions"] = [dict(_POD_SUCCEEDED if phase == "Succeeded" else _POD_FAILED)]
    out["object"] = object_ref
    return out


def table(
    res: ResourceType,
    rows: list[JSON],
    resource_version: str,
    continue_token: str = "",
    remaining: int | None = None,
    include_columns: bool = True,
) -> JSON:
    """A Table of `rows`; `include_columns=False` for the watch events after the first, which carry none."""
    meta: JSON = {}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if continue_token:
        meta["continue"] = continue_token
    if remaining is not None:
        meta["remainingItemCount"] = remaining
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns(res) if include_columns else [],
        "rows": rows,
    }
