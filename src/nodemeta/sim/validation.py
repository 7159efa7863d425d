"""Object validation: the checks of kube-apiserver's strategies that clients rely on seeing as 422 Invalid.

Not every rule of the real server; the ones a tool meets when it sends a bad object: names, required fields,
selectors that do not match their template, label syntax. Each check returns causes as (field, reason, message)
so the caller can build one Status listing all of them, as the real server does.
"""

from __future__ import annotations

import re
from typing import Any

from nodemeta.sim.resources import JSON

Cause = tuple[str, str, str]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and "
    "end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
    "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
    "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)

_WORKLOADS_WITH_SELECTOR = {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"}


def _required(field: str) -> Cause:
    return (field, "FieldValueRequired", "Required value")


def _invalid(field: str, value: Any, why: str) -> Cause:
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    return (field, "FieldValueInvalid", f"Invalid value: {shown}: {why}")


def check_name(kind: str, name: str) -> list[Cause]:
    """The name rules of `kind`; empty when valid."""
    if kind in ("Namespace",):
        pattern, why, limit = _DNS1123_LABEL, _LABEL_MSG, 63
    elif kind == "Service":
        pattern, why, limit = _DNS1035_LABEL, _DNS1035_MSG, 63
    else:
        pattern, why, limit = _DNS1123_SUBDOMAIN, _SUBDOMAIN_MSG, 253
    if len(name) > limit:
        return [_invalid("metadata.name", name, f"must be no more than {limit} characters")]
    if not pattern.match(name):
        return [_invalid("metadata.name", name, why)]
    return []


def _label_key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def check_labels(labels: Any, field: str) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [_invalid(field, labels, "must be a map of string keys to string values")]
    causes: list[Cause] = []
    for key, value in labels.items():
        if not _label_key_ok(key):
            causes.append(
                _invalid(
                    field,
                    key,
                    "name part must consist of alphanumeric characters, '-', '_' or "
                    "'.', and must start and end with an alphanumeric character",
                )
            )
        elif not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                _invalid(
                    f"{field}",
                    value,
                    "a valid label must be an empty string or consist of "
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character",
                )
            )
    return causes  # fmt: skip


def _pod_spec(spec: Any, path: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [_required(path)]
    containers = spec.get("containers")
    if not containers:
        return [_required(f"{path}.containers")]
    causes: list[Cause] = []
    if not isinstance(containers, list):
        return [_invalid(f"{path}.containers", "", "must be a list")]
    for i, c in enumerate(containers):
        where = f"{path}.containers[{i}]"
        if not isinstance(c, dict):
            causes.append(_invalid(where, "", "must be an object"))
            continue
        if not c.get("name"):
            causes.append(_required(f"{where}.name"))
        if not c.get("image"):
            causes.append(_required(f"{where}.image"))
    return causes


def _selector_matches_template(obj: JSON) -> list[Cause]:
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    if not selector:
        return [_required("spec.selector")]
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    match = selector.get("matchLabels") or {} if isinstance(selector, dict) else {}
    if not isinstance(match, dict) or any(labels.get(k) != v for k, v in match.items()):
        return [
            (
                "spec.template.metadata.labels",
                "FieldValueInvalid",
                f"Invalid value: {labels}: `selector` does not match template `labels`",
            )
        ]
    return []  # fmt: skip


_POD_UPDATE_MESSAGE = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
    "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _mutable_part_removed(spec: Any) -> Any:
    """A pod spec without the fields an update may change, for comparing old and new."""
    if not isinstance(spec, dict):
        return spec
    out = {k: v for k, v in spec.items() if k not in ("activeDeadlineSeconds", "tolerations", "schedulingGates",
                                                       "terminationGracePeriodSeconds")}  # fmt: skip
    for key in ("containers", "initContainers"):
        if isinstance(out.get(key), list):
            out[key] = [{k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c for c in out[key]]
    return out


def check_pod_update(old_spec: Any, new_spec: Any) -> list[Cause]:
    """Pods are immutable but for images, deadlines, added tolerations and scheduling gates."""
    if _mutable_part_removed(old_spec) == _mutable_part_removed(new_spec):
        return []
    return [("spec", "FieldValueForbidden", _POD_UPDATE_MESSAGE)]


def _event_namespace(obj: JSON) -> list[Cause]:
    """An Event lives in its object's namespace; one about a cluster-scoped object (a Node) in "default" (core/v1
    Events without eventTime may also use ""), or "kube-system" for events.k8s.io ones. kube-apiserver checks this
    on every create, whichever API the Event came through."""
    involved = obj.get("involvedObject")
    involved_ns = involved.get("namespace") or "" if isinstance(involved, dict) else ""
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    if involved_ns:
        ok = namespace == involved_ns if not obj.get("eventTime") else True
    elif obj.get("eventTime"):
        ok = namespace in ("default", "kube-system")
    else:
        ok = namespace in ("", "default")
    return [] if ok else [_invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")]


def check_object(kind: str, obj: JSON) -> list[Cause]:
    """Every violation found in `obj`, in the order the real validators report them."""
    meta = obj.get("metadata") or {}
    causes = check_labels(meta.get("labels"), "metadata.labels")
    spec = obj.get("spec")
    if kind == "Pod":
        causes += _pod_spec(spec, "spec")
    elif kind in _WORKLOADS_WITH_SELECTOR:
        causes += _selector_matches_template(obj)
        causes += _pod_spec(((spec or {}).get("template") or {}).get("spec"), "spec.template.spec")
    elif kind in ("Job", "ReplicationController"):
        causes += _pod_spec(((spec or {}).get("template") or {}).get("spec"), "spec.template.spec")
        if kind == "Job":
            policy = ((((spec or {}).get("template") or {}).get("spec")) or {}).get("restartPolicy")
            if policy not in ("Never", "OnFailure"):
                causes.append(
                    (
                        "spec.template.spec.restartPolicy",
                        "FieldValueNotSupported",
                        f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                    )
                )
    elif kind == "Service":
        s = spec or {}
        if s.get("type") != "ExternalName" and s.get("clusterIP") != "None" and not s.get("ports"):
            causes.append(_required("spec.ports"))
    elif kind == "CronJob" and not (spec or {}).get("schedule"):
        causes.append(_required("spec.schedule"))
    elif kind == "Event":
        causes += _event_namespace(obj)
    return causes  # fmt: skip
