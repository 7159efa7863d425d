"""The three PATCH flavours of kube-apiserver 1.32, applied to plain JSON values.

* `merge_patch`: RFC 7386 JSON merge patch (``application/merge-patch+json``).
* `json_patch`: RFC 6902 JSON patch (``application/json-patch+json``), delegated to the `jsonpatch` library.
* `strategic_merge_patch`: Kubernetes strategic merge patch (``application/strategic-merge-patch+json``).

Every function returns a new structure and never mutates its arguments, because the server's stored objects
are shared between readers.

The strategic merge patch follows ``k8s.io/apimachinery/pkg/util/strategicpatch`` as shipped with 1.32 (its
ordering rules and error texts were checked against ``kubectl patch --local`` 1.32). The one place where the
server's outcome cannot be copied is a value that has nothing to merge with (a new field, a list entry that is
appended, a list that is replaced): apimachinery stores such values verbatim, directives and nulls included,
and relies on decoding into the typed Go struct to drop them. This simulator stores JSON, so `_fresh` drops
them here, with the same net effect.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import jsonpatch

__all__ = ["PatchError", "json_patch", "merge_patch", "strategic_merge_patch"]


class PatchError(ValueError):
    """A patch that cannot be applied.

    `invalid` is True when the patch was well-formed but failed against the object (a JSON-patch ``test`` op
    that fails, a path that does not exist): kube-apiserver answers 422 for those, 400 for malformed patches.
    """

    def __init__(self, message: str, *, invalid: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.invalid = invalid


# --- RFC 7386 JSON merge patch ------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch: objects merge recursively, ``null`` deletes a key, the rest replaces.

    Keys keep the target's order and new keys follow in the patch's order, so results read like the target.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    base = target if isinstance(target, dict) else {}
    result: dict[str, Any] = {}
    for key, value in base.items():
        if key not in patch:
            result[key] = copy.deepcopy(value)
        elif patch[key] is not None:
            result[key] = merge_patch(value, patch[key])
    for key, value in patch.items():
        if key not in base and value is not None:
            result[key] = merge_patch(None, value)
    return result


# --- RFC 6902 JSON patch ------------------------------------------------------------------------------------

_JSON_TYPE_NAMES: Final = {dict: "object", str: "string", bool: "bool", int: "number", float: "number"}


def json_patch(target: Any, ops: Any) -> Any:
    """Apply an RFC 6902 operation list with the `jsonpatch` library, mapping its errors onto `PatchError`.

    A malformed operation list (not a list, unknown op, missing member, bad pointer syntax) is a 400; an
    operation that fails against the document (failed ``test``, missing path, conflict) is a 422, hence
    ``invalid=True``.
    """
    if not isinstance(ops, list):
        kind = "null" if ops is None else _JSON_TYPE_NAMES.get(type(ops), "value")
        raise PatchError(f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch")
    try:
        # Copied so that values the ops insert never alias the caller's request body.
        patch = jsonpatch.JsonPatch(copy.deepcopy(ops))
    except (jsonpatch.InvalidJsonPatch, jsonpatch.JsonPointerException) as exc:
        raise PatchError(f"invalid JSON patch: {exc}") from exc
    try:
        return patch.apply(target, in_place=False)
    except jsonpatch.InvalidJsonPatch as exc:
        raise PatchError(f"invalid JSON patch: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise PatchError(f"the JSON patch could not be applied: {exc}", invalid=True) from exc


# --- strategic merge patch: the per-kind schema -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    """Patch metadata of one field, i.e. its ``patchStrategy``/``patchMergeKey`` struct tags.

    `merge` marks lists with ``patchStrategy:"merge"``: lists of objects are merged by `key`, lists of
    primitives (no `key`) as sets. Without it maps merge and lists are replaced. `fields` is the schema of the
    field's object, or of each element of a list. ``retainKeys`` needs no entry: the apply side honours a
    ``$retainKeys`` directive wherever it appears (volumes entries, Deployment ``spec.strategy``).
    """

    merge: bool = False
    key: str = ""
    fields: Mapping[str, _Field] = field(default_factory=dict)

    def child(self, name: str) -> _Field:
        return self.fields.get(name, _ANY)


_ANY: Final = _Field()


def _obj(**fields: _Field) -> _Field:
    return _Field(fields=fields)


def _merged(key: str = "", **fields: _Field) -> _Field:
    return _Field(merge=True, key=key, fields=fields)


# Struct tags of k8s.io/api v0.32, confirmed with kubectl 1.32. Fields not listed: maps merge, lists replace.
_METADATA: Final = _obj(ownerReferences=_merged("uid"), finalizers=_merged())
_CONDITIONS: Final = _obj(conditions=_merged("type"))
_CONTAINER: Final = {
    "env": _merged("name"),
    "ports": _merged("containerPort"),
    "volumeMounts": _merged("mountPath"),
    "volumeDevices": _merged("devicePath"),
}
_POD_SPEC: Final = _obj(
    containers=_merged("name", **_CONTAINER),
    initContainers=_merged("name", **_CONTAINER),
    ephemeralContainers=_merged("name", **_CONTAINER),
    volumes=_merged("name"),
    imagePullSecrets=_merged("name"),
    hostAliases=_merged("ip"),
    topologySpreadConstraints=_merged("topologyKey"),
    schedulingGates=_merged("name"),
    resourceClaims=_merged("name"),
)
_POD_STATUS: Final = _obj(
    conditions=_merged("type"),
    podIPs=_merged("ip"),
    hostIPs=_merged("ip"),
    resourceClaimStatuses=_merged("name"),
)
_POD_TEMPLATE: Final = _obj(metadata=_METADATA, spec=_POD_SPEC)


def _kind(**fields: _Field) -> _Field:
    return _obj(metadata=_METADATA, **fields)


def _workload() -> _Field:
    return _kind(spec=_obj(template=_POD_TEMPLATE), status=_CONDITIONS)


_KINDS: Final[Mapping[str, _Field]] = {
    "Pod": _kind(spec=_POD_SPEC, status=_POD_STATUS),
    "PodTemplate": _kind(template=_POD_TEMPLATE),
    "ReplicationController": _workload(),
    "ReplicaSet": _workload(),
    "Deployment": _workload(),
    "DaemonSet": _workload(),
    "StatefulSet": _workload(),
    "Job": _workload(),
    "CronJob": _kind(spec=_obj(jobTemplate=_obj(metadata=_METADATA, spec=_obj(template=_POD_TEMPLATE)))),
    "Node": _kind(spec=_obj(podCIDRs=_merged()), status=_obj(conditions=_merged("type"), addresses=_merged("type"))),
    "Service": _kind(spec=_obj(ports=_merged("port")), status=_CONDITIONS),
    "Namespace": _kind(status=_CONDITIONS),
    "ServiceAccount": _kind(secrets=_merged("name")),
    **{
        name: _kind()
        for name in (
            "ConfigMap",
            "Secret",
            "Endpoints",
            "EndpointSlice",
            "Event",
            "Lease",
            "ControllerRevision",
        )
    },
}

# --- strategic merge patch: the algorithm -------------------------------------------------------------------

_PATCH: Final = "$patch"
_RETAIN_KEYS: Final = "$retainKeys"
_DELETE_FROM: Final = "$deleteFromPrimitiveList"
_ORDER: Final = "$setElementOrder"
_MISSING: Final[Any] = object()
_DROP: Final[Any] = object()  # `_fresh`'s answer for a value that a `$patch: delete` removes


def strategic_merge_patch(target: dict[str, Any], patch: Any, kind: str) -> dict[str, Any]:
    """Apply a strategic merge patch to an object of the given built-in `kind`.

    Unknown kinds have no merge keys: they behave like a JSON merge patch that still understands directives.
    """
    if not isinstance(patch, dict):
        raise PatchError("invalid JSON document")
    original = copy.deepcopy(target) if isinstance(target, dict) else {}
    return _merge_map(original, patch, _KINDS.get(kind, _ANY))


def _merge_map(original: dict[str, Any], patch: Mapping[str, Any], schema: _Field) -> dict[str, Any]:
    """Merge `patch` into `original`, a private copy updated in place (apimachinery's mergeMap)."""
    directive = patch.get(_PATCH, _MISSING)
    if directive == "replace":
        return _fresh_map(patch, schema)  # drops the directive along with every other `$` key
    if directive == "delete":
        return {}  # apimachinery empties the map rather than removing the field.
    # apimachinery 1.32 accepts only replace and delete on a map; even an explicit "merge" is rejected.
    if directive is not _MISSING:
        raise PatchError(f"unknown patch type: {_go(directive)} in map: {_go(patch)}")

    _apply_retain_keys(original, patch)
    ordered = _apply_element_orders(original, patch, schema)
    for key, value in patch.items():
        if key in ordered or key.startswith("$"):
            continue
        if value is None:
            original.pop(key, None)
            continue
        current, child = original.get(key), schema.child(key)
        if isinstance(current, dict) and isinstance(value, dict):
            original[key] = _merge_map(current, value, child)
        elif isinstance(current, list) and isinstance(value, list) and child.merge:
            original[key] = _merge_list(current, value, child)[0]
        elif (fresh := _fresh(value, child)) is _DROP:
            original.pop(key, None)
        else:
            original[key] = fresh
    # Deletions run last so that a patch which also adds to the same list sees the same outcome in every run
    # (apimachinery walks the patch in Go's random map order).
    for key, value in patch.items():
        if key.startswith(_DELETE_FROM):
            name = _directive_target(key, _DELETE_FROM, "invalid patch format of primitive list")
            current = original.get(name)
            if isinstance(current, list) and isinstance(value, list):
                doomed = {_identity(v) for v in value}
                original[name] = [item for item in current if _identity(item) not in doomed]
    return original


def _apply_retain_keys(original: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """``$retainKeys``: keep only the listed keys; each non-null key the patch sets must be listed too."""
    if _RETAIN_KEYS not in patch:
        return
    retained = patch[_RETAIN_KEYS]
    if not isinstance(retained, list):
        raise PatchError("invalid patch format of retainKeys")
    names = {name for name in retained if isinstance(name, str)}
    for key, value in patch.items():
        if value is not None and not key.startswith("$") and key not in names:
            raise PatchError("invalid patch format of retainKeys")
    for key in [key for key in original if key not in names]:
        del original[key]


def _apply_element_orders(original: dict[str, Any], patch: Mapping[str, Any], schema: _Field) -> set[str]:
    """Merge each list named by a ``$setElementOrder/<field>`` directive and put it in that order.

    Returns the fields handled here, so the main loop leaves them alone. Fields without a merge strategy are
    replaced by the main loop anyway, so their order directive is ignored.
    """
    handled: set[str] = set()
    for key, order in patch.items():
        if not key.startswith(_ORDER):
            continue
        name = _directive_target(key, _ORDER, "invalid patch format of setElementOrder list")
        spec = schema.child(name)
        current, value = original.get(name), patch.get(name, _MISSING)
        if not spec.merge or value is None:
            continue
        for candidate in (order, current if current is not None else [], value):
            if candidate is not _MISSING and not isinstance(candidate, list):
                raise PatchError(f"expected a []interface {{}}, but received a {_go_type(candidate)}")
        handled.add(name)
        _check_patch_order(value if value is not _MISSING else [], order, spec.key)
        if value is _MISSING:
            if current is None:
                continue
            merged, server = current, current
        elif current is None:
            merged, server = _fresh(value, spec), []
        else:
            merged, server = _merge_list(current, value, spec)
        if not _element_type(server, value if value is not _MISSING else []):
            raise PatchError("no elements in any of the given slices")
        original[name] = _normalize_order(merged, order, server, spec.key)
    return handled


def _check_patch_order(patch_list: Sequence[Any], order: Sequence[Any], key: str) -> None:
    """The patch's own entries must appear in the ``$setElementOrder`` list, in the same relative order."""
    if not patch_list or not order:
        return
    if key:
        for item in patch_list:
            _require_map(item)

    def ident(item: Any) -> Any:
        return _identity(_merge_value(item, key)) if key else _identity(item)

    entries = [item for item in patch_list if not (key and item.get(_PATCH) == "delete")]
    at = seen = 0
    while at < len(entries) and seen < len(order):
        if isinstance(entries[at], dict) and _PATCH in entries[at]:
            at += 1
            continue
        if ident(entries[at]) == ident(order[seen]):
            at += 1
        seen += 1
    if at < len(entries):
        raise PatchError(f"The order in patch list:\n{_go(patch_list)}\n doesn't match {_ORDER} list:\n{_go(order)}\n")


def _merge_list(original: list[Any], patch: Sequence[Any], spec: _Field) -> tuple[list[Any], list[Any]]:
    """Merge a ``patchStrategy:"merge"`` list (apimachinery's mergeSlice); `original` is a private copy.

    Returns the merged list and the server order that a ``$setElementOrder`` pass compares against next. In
    apimachinery that is the live list's backing array, which its deletions shift in place and its appends
    then fill, so it reads: surviving entries, then as many appended entries as were deleted. Reproducing it
    keeps the order after a patch that deletes and adds entries (as ``kubectl apply`` sends) the server's.
    """
    if not original and not patch:
        return original, original
    if _element_type(original, patch) != "map":
        merged = _unique([*original, *patch])
        return _normalize_order(merged, patch, original, ""), original
    key = spec.key
    if not key:
        raise PatchError("cannot merge lists without merge key for type map")
    entries, replace, kept = [], False, original
    for item in patch:
        directive = item.get(_PATCH, _MISSING)
        if directive is _MISSING:
            entries.append(item)
        elif directive == "delete":
            doomed = _merge_value(item, key)
            kept = [old for old in kept if not (key in old and _same(old[key], doomed))]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise PatchError(f"unknown patch type: {_go(directive)} in map: {_go(item)}")
    if replace:
        base, entries = [_fresh(item, spec) for item in entries], []
    else:
        base = kept
    merged = list(base)
    for item in entries:
        wanted = _merge_value(item, key)
        at = next((i for i, old in enumerate(merged) if key in old and _same(old[key], wanted)), None)
        if at is None:
            merged.append(_fresh(item, spec))
        else:
            merged[at] = _merge_map(merged[at], item, spec)
    appended = merged[len(base) :] if not replace else []
    server_view = kept + appended[: len(original) - len(kept)]
    return _normalize_order(merged, entries, base, key), server_view


def _normalize_order(merged: list[Any], wanted: Sequence[Any], server: Sequence[Any], key: str) -> list[Any]:
    """Order a merged list the way apimachinery does (normalizeElementOrder + mergeSortedSlice).

    Entries named in `wanted` (the patch list or a ``$setElementOrder`` list) come in that order; entries only
    on the server keep their server order. The two runs are interleaved: a server-only entry goes before a
    wanted one when both were on the server and it came first there. Wanted entries that are new to the
    server win every tie, which is why a patch that adds a container or a finalizer without
    ``$setElementOrder`` puts it first, exactly as kube-apiserver does.
    """
    ident: Callable[[Any], Any] = (lambda item: _identity(_merge_value(item, key))) if key else _identity
    if key:
        for index, item in enumerate(wanted):
            if not isinstance(item, dict):
                raise PatchError(f"value for key {index} is not a map")
    wanted_at = _first_positions(ident(item) for item in wanted)
    server_at = _first_positions(ident(item) for item in server)
    ours = _go_sort([item for item in merged if ident(item) in wanted_at], wanted_at, ident)
    theirs = _go_sort([item for item in merged if ident(item) not in wanted_at], server_at, ident)
    result: list[Any] = []
    while ours or theirs:
        if ours and theirs:
            left, right = server_at.get(ident(theirs[0])), server_at.get(ident(ours[0]))
            take_theirs = left is not None and right is not None and left < right
        else:
            take_theirs = bool(theirs)
        result.append((theirs if take_theirs else ours).pop(0))
    return result


def _go_sort(items: list[Any], positions: Mapping[Any, int], ident: Callable[[Any], Any]) -> list[Any]:
    """Stable-sort by position with apimachinery's comparator, which calls an unplaced item smaller than any.

    That comparator is inconsistent, so the algorithm matters: Go's stable sort is an insertion sort on lists
    of up to 20 entries, as here. Unplaced items only occur after an empty ``$setElementOrder`` list.
    """
    result = list(items)
    for index in range(1, len(result)):
        at = index
        while at > 0:
            mine, theirs = positions.get(ident(result[at])), positions.get(ident(result[at - 1]))
            if mine is not None and theirs is not None and mine >= theirs:
                break
            result[at - 1], result[at] = result[at], result[at - 1]
            at -= 1
    return result


def _fresh(value: Any, spec: _Field) -> Any:
    """A deep copy of a patch value that merges with nothing, as the typed decode would store it.

    Nulls and directive keys are dropped, a map marked ``$patch: delete`` disappears (`_DROP`) and list
    entries carrying ``$patch`` (deletions, the replace marker) have nothing to act on, so they go too.
    """
    if isinstance(value, dict):
        directive = value.get(_PATCH, _MISSING)
        if directive == "delete":
            return _DROP
        if directive not in (_MISSING, "replace", "merge"):
            raise PatchError(f"unknown patch type: {_go(directive)} in map: {_go(value)}")
        return _fresh_map(value, spec)
    if isinstance(value, list):
        items = (_fresh(item, spec) for item in value if not (isinstance(item, dict) and _PATCH in item))
        return [item for item in items if item is not _DROP]
    return value


def _fresh_map(value: Mapping[str, Any], spec: _Field) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, item in value.items():
        if item is not None and not key.startswith("$"):
            fresh = _fresh(item, spec.child(key))
            if fresh is not _DROP:
                result[key] = fresh
    return result


# --- strategic merge patch: helpers -------------------------------------------------------------------------


def _directive_target(key: str, prefix: str, error: str) -> str:
    """The field a ``<prefix>/<field>`` directive key refers to."""
    head, slash, name = key.partition("/")
    if head != prefix or not slash:
        raise PatchError(error)
    return name


def _require_map(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise PatchError(f"expected a map[string]interface {{}}, but received a {_go_type(item)}")
    return item


def _merge_value(item: Any, key: str) -> Any:
    """The merge-key value of a list entry; an entry without one is malformed."""
    if key not in _require_map(item):
        raise PatchError(f"map: {_go(item)} does not contain declared merge key: {key}")
    return item[key]


def _element_type(*lists: Sequence[Any]) -> str:
    """The one Go type shared by the elements of the lists, which apimachinery insists on."""
    kinds = [_go_kind(item) for items in lists for item in items]
    if kinds and kinds[0] == "slice":
        raise PatchError("lists of lists are not supported", invalid=True)
    if any(kind != kinds[0] for kind in kinds):
        raise PatchError(f"list element types are not identical: {_go(list(lists))}")
    return kinds[0] if kinds else ""


def _identity(value: Any) -> Any:
    """A hashable stand-in with Go's interface equality: ``1``, ``1.0`` and ``True`` are all different."""
    if isinstance(value, (dict, list)):
        return ("json", json.dumps(value, sort_keys=True))
    return (type(value).__name__, value)


def _same(left: Any, right: Any) -> bool:
    return bool(_identity(left) == _identity(right))


def _first_positions(identities: Iterable[Any]) -> dict[Any, int]:
    positions: dict[Any, int] = {}
    for index, identity in enumerate(identities):
        positions.setdefault(identity, index)
    return positions


def _unique(items: Sequence[Any]) -> list[Any]:
    seen: set[Any] = set()
    result = []
    for item in items:
        if (identity := _identity(item)) not in seen:
            seen.add(identity)
            result.append(item)
    return result


def _go_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "slice"
    return _go_type(value)


def _go_type(value: Any) -> str:
    """Go's name for the type a JSON value decodes to, as apimachinery's messages print it."""
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    if value is None:
        return "<nil>"
    names = {bool: "bool", int: "int64", float: "float64", str: "string"}
    return names.get(type(value), type(value).__name__)


def _go(value: Any) -> str:
    """Render a JSON value like Go's ``%v``, so error messages match apimachinery's (``map[name:web]``)."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{_go(item)}" for key, item in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go(item) for item in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text.removesuffix(".0")
    return str(value)
