"""Required node affinity, as both the scheduler and the DaemonSet controller evaluate it against a node."""

from __future__ import annotations

from collections.abc import Mapping

from nodemeta.sim.resources import JSON


def required_terms(spec: JSON) -> list[JSON] | None:
    """The pod spec's required node selector terms, or None when it has no required node affinity."""
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return None
    return list(required.get("nodeSelectorTerms") or [])


def requirement_matches(requirement: JSON, values: Mapping[str, str]) -> bool:
    """One node selector requirement (In, NotIn, Exists, DoesNotExist, Gt, Lt) against labels or fields."""
    key = str(requirement.get("key") or "")
    operator = requirement.get("operator") or ""
    wanted = [str(v) for v in requirement.get("values") or ()]
    present = key in values
    if operator == "In":
        return present and values[key] in wanted
    if operator == "NotIn":
        return not present or values[key] not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(wanted) == 1:
        try:
            actual, bound = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return actual > bound if operator == "Gt" else actual < bound
    return False


def term_matches(term: JSON, node_name: str, node_labels: Mapping[str, str]) -> bool:
    """A node selector term ANDs its requirements; a term with none matches no node."""
    expressions = term.get("matchExpressions") or ()
    fields = term.get("matchFields") or ()
    if not expressions and not fields:
        return False
    names = {"metadata.name": node_name}
    return all(requirement_matches(e, node_labels) for e in expressions) and all(
        requirement_matches(f, names) for f in fields
    )
