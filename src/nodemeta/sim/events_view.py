"""The events.k8s.io/v1 view of core/v1 Events.

Both APIs serve the same stored objects (kube-apiserver converts between them); the simulator stores the core/v1
shape and converts on the way in and out, so an Event written through one API is read back through the other.
"""

from __future__ import annotations

from nodemeta.sim.resources import JSON

# (core/v1 field, events.k8s.io/v1 field), in the order the v1 API serialises them.
_FIELDS = (
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("reason", "reason"),
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("type", "type"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
)


def to_events_v1(core: JSON) -> JSON:
    """A core/v1 Event (without kind/apiVersion) as events.k8s.io/v1 shows it."""
    out: JSON = {"metadata": core.get("metadata", {}), "eventTime": core.get("eventTime")}
    for old, new in _FIELDS[1:]:
        value = core.get(old)
        if value not in (None, "", {}, 0):
            out[new] = value
    return out


def to_core(v1: JSON) -> JSON:
    """An events.k8s.io/v1 Event as the core/v1 object that is stored."""
    out: JSON = {"kind": "Event", "apiVersion": "v1", "metadata": v1.get("metadata", {})}
    for old, new in _FIELDS:
        if new in v1:
            out[old] = v1[new]
    out.setdefault("involvedObject", {})
    out.setdefault("eventTime", None)
    return out
