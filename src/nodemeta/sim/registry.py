"""Write and read semantics of kube-apiserver's generic registry, over the store.

This is where a request becomes a stored revision: name generation, uid and timestamps, defaulting, validation,
optimistic concurrency (409 on a stale resourceVersion), the status subresource split, generation bumps, no-op
detection, graceful deletion, finalizers and propagation policies. No I/O and no asyncio: the HTTP layer calls
it and the store notifies watchers.
"""

from __future__ import annotations

import ipaddress
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from nodemeta.sim import defaults, errors, events_view, patch, schema, validation
from nodemeta.sim.resources import JSON, ResourceType, lookup
from nodemeta.sim.store import Bucket, Store, Stored, object_key

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
JOB_ORPHAN_WARNING = (
    '299 - "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to '
    'remove them or set propagationPolicy=Orphan to suppress this warning"'
)
# Kinds whose create resets a client-sent status, as their registry strategies do.
_KEEP_STATUS_ON_CREATE = {"Node", "Namespace", "Service", "Event"}
_SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def rfc3339_micro(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1e6) % 1_000_000:06d}Z"


@dataclass(frozen=True, slots=True)
class DeleteOptions:
    grace_period: int | None = None
    propagation: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class WriteResult:
    stored: Stored
    created: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """`stored` is the final state (deleted now) or the updated object (deletion pending)."""

    stored: Stored
    deleted: bool
    warnings: tuple[str, ...] = ()


class Registry:
    """Every verb the API server offers, for every resource, as synchronous calls."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time, seed: int | None = None) -> None:
        self.store = store
        self.clock = clock
        self._rng = random.Random(seed)
        self._cluster_ips: set[str] = set()
        self.root_ca = "-----BEGIN CERTIFICATE-----\n(simulated cluster)\n-----END CERTIFICATE-----\n"

    # -- reads ----------------------------------------------------------------------------------------------

    def bucket(self, res: ResourceType) -> Bucket:
        return self.store.bucket(res)

    def get(self, res: ResourceType, namespace: str, name: str) -> Stored:
        found = self.bucket(res).get(object_key(namespace, name))
        if found is None:
            raise errors.not_found(res, name)
        return found

    def find(self, plural: str, namespace: str, name: str) -> Stored | None:
        res = lookup("", "v1", plural)
        if res is None:
            return None
        return self.bucket(res).get(object_key(namespace, name))

    def uid_of(self, plural: str, namespace: str, name: str) -> str | None:
        found = self.find(plural, namespace, name)
        return found.uid if found is not None else None

    def iter_objects(self, res: ResourceType, namespace: str = "") -> Iterator[Stored]:
        return self.bucket(res).scan(self.store.rv, self.store.rv, prefix=f"{namespace}/" if namespace else "")

    # -- create ---------------------------------------------------------------------------------------------

    def create(
        self,
        res: ResourceType,
        namespace: str,
        body: Any,
        *,
        field_validation: str = "Warn",
        dry_run: bool = False,
    ) -> WriteResult:
        obj = self._decode_body(res, body, namespace)
        warnings = self._check_unknown_fields(res, obj, field_validation)
        obj = self._to_storage(res, obj)
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise errors.internal("resourceVersion should not be set on objects to be created")
        if res.namespaced:
            self._check_namespace_accepts(res, namespace, meta.get("name") or meta.get("generateName") or "")
        for key in _SERVER_META:
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(self.clock())
        if res.has_generation:
            meta["generation"] = 1
        if res.has_status and res.kind not in _KEEP_STATUS_ON_CREATE:
            obj.pop("status", None)
        bucket = self.bucket(res)
        generated = not meta.get("name")
        if generated:
            prefix = meta.get("generateName") or ""
            if not prefix:
                raise errors.invalid(
                    res.kind, "", res.group,
                    [("metadata.name", "FieldValueRequired", "Required value: name or generateName is required")],
                )  # fmt: skip
            meta["name"] = self._generate_name(bucket, namespace, prefix)
        defaults.apply(res.kind, obj)
        self._validate(res, obj)
        if bucket.get(object_key(namespace, meta["name"])) is not None:
            if generated:
                raise errors.generate_name_exhausted(res, meta["name"])
            raise errors.already_exists(res, meta["name"])
        if res.kind == "Service":
            self._allocate_cluster_ip(obj)
        if dry_run:
            return WriteResult(Stored(object_key(namespace, meta["name"]), obj, self.store.rv, None), True, warnings)
        stored = self.store.put(bucket, obj)
        if res.kind == "Namespace":
            self._populate_namespace(meta["name"])
        return WriteResult(stored, True, warnings)

    def _generate_name(self, bucket: Bucket, namespace: str, prefix: str) -> str:
        name = ""
        for _ in range(8):
            name = prefix[:58] + "".join(self._rng.choice(NAME_ALPHABET) for _ in range(5))
            if bucket.get(object_key(namespace, name)) is None:
                break
        return name

    def _decode_body(self, res: ResourceType, body: Any, namespace: str) -> JSON:
        if not isinstance(body, dict):
            raise errors.bad_request(
                f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: '
                "json: cannot unmarshal non-object into Go value"
            )
        kind = body.get("kind")
        api_version = body.get("apiVersion")
        if kind not in (None, "", res.kind) or api_version not in (None, "", res.api_version):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({res.api_version})" if kind in (None, "", res.kind)
                else f"{res.kind} in version \"{res.version}\" cannot be handled as a {res.kind}: "
                f"the object provided is unrecognized (kind {kind!r}, expected {res.kind!r})"
            )  # fmt: skip
        meta = body.get("metadata")
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise errors.bad_request(
                f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: '
                "json: cannot unmarshal into Go struct field .metadata of type v1.ObjectMeta"
            )
        obj = {"kind": res.kind, "apiVersion": res.api_version} | {
            k: v for k, v in body.items() if k not in ("kind", "apiVersion")
        }
        obj["metadata"] = dict(meta)
        if res.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            obj["metadata"]["namespace"] = namespace
        else:
            obj["metadata"].pop("namespace", None)
        return obj

    def _to_storage(self, res: ResourceType, obj: JSON) -> JSON:
        obj = events_view.to_core(obj) if res.storage else obj
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            # ObjectMeta's lists and maps are omitempty: an emptied one is not stored, as in the Go types.
            for key in ("finalizers", "ownerReferences", "labels", "annotations"):
                if key in meta and not meta[key]:
                    del meta[key]
        return obj

    def _view(self, res: ResourceType, stored: Stored) -> JSON:
        obj = stored.decode()
        if res.storage:
            obj = events_view.to_events_v1(obj)
        return {"kind": res.kind, "apiVersion": res.api_version} | obj

    def _check_unknown_fields(self, res: ResourceType, obj: JSON, mode: str) -> tuple[str, ...]:
        if mode == "Ignore":
            return ()
        unknown = schema.unknown_fields(res.kind, obj, api_version=res.api_version)
        if not unknown:
            return ()
        if mode == "Strict":
            listed = ", ".join(f'unknown field "{f}"' for f in unknown)
            raise errors.bad_request(
                f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: '
                f"strict decoding error: {listed}"
            )
        return tuple(f'299 - "unknown field \\"{f}\\""' for f in unknown)

    def _check_namespace_accepts(self, res: ResourceType, namespace: str, name: str) -> None:
        ns = self.find("namespaces", "", namespace)
        if ns is None:
            raise errors.namespace_not_found(namespace)
        if ns.fields and ns.fields.get("status.phase") == "Terminating":
            why = f"unable to create new content in namespace {namespace} because it is being terminated"
            raise errors.forbidden(res, name, why, cause="NamespaceTerminating")

    def _validate(self, res: ResourceType, obj: JSON) -> None:
        meta = obj["metadata"]
        causes = validation.check_name(res.kind, meta["name"]) if res.kind not in ("Event",) else []
        causes += validation.check_object(res.kind, obj)
        if causes:
            raise errors.invalid(res.kind, meta["name"], res.group, causes)

    def _allocate_cluster_ip(self, obj: JSON) -> None:
        spec = obj["spec"]
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") == "None":
            if spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
            return
        wanted = spec.get("clusterIP")
        if wanted:
            if wanted in self._cluster_ips:
                raise errors.invalid(
                    "Service", obj["metadata"]["name"], "",
                    [("spec.clusterIPs", "FieldValueInvalid",
                      f'Invalid value: ["{wanted}"]: failed to allocate IP {wanted}: '
                      "provided IP is already allocated")],
                )  # fmt: skip
            address = wanted
        else:
            size = SERVICE_CIDR.num_addresses
            while True:
                candidate = str(SERVICE_CIDR.network_address + self._rng.randrange(2, size - 1))
                if candidate not in self._cluster_ips:
                    address = candidate
                    break
        self._cluster_ips.add(address)
        spec["clusterIP"] = address
        spec["clusterIPs"] = [address]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")

    # -- update and patch -----------------------------------------------------------------------------------

    def update(
        self,
        res: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        field_validation: str = "Warn",
        dry_run: bool = False,
    ) -> WriteResult:
        current = self.get(res, namespace, name)
        obj = self._decode_body(res, body, namespace)
        body_name = obj["metadata"].get("name")
        if body_name and body_name != name:
            raise errors.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        obj["metadata"]["name"] = name
        return self._write_over(res, current, obj, subresource, field_validation, dry_run)

    def patch(
        self,
        res: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        body: Any,
        *,
        subresource: str = "",
        field_validation: str = "Warn",
        dry_run: bool = False,
    ) -> WriteResult:
        current = self.get(res, namespace, name)
        original = self._view(res, current)
        try:
            if patch_type == "json":
                patched = patch.json_patch(original, body)
            elif patch_type == "merge":
                patched = patch.merge_patch(original, body)
            else:
                if not isinstance(body, dict):
                    raise patch.PatchError("strategic merge patch must be a JSON object")
                patched = patch.strategic_merge_patch(original, body, res.kind)
        except patch.PatchError as err:
            if err.invalid:
                raise errors.invalid(res.kind, name, res.group, [("", "FieldValueInvalid", str(err))]) from err
            raise errors.bad_request(str(err)) from err
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch did not produce an object")
        obj = self._decode_body(res, patched, namespace)
        if obj["metadata"].get("name", name) != name:
            raise errors.invalid(
                res.kind,
                name,
                res.group,
                [("metadata.name", "FieldValueInvalid", "Invalid value: field is immutable")],
            )
        return self._write_over(res, current, obj, subresource, field_validation, dry_run)

    def apply(
        self,
        res: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        field_manager: str,
        dry_run: bool = False,
    ) -> WriteResult:
        """Server-side apply, simplified: create when missing, otherwise a strategic merge of the applied config."""
        if not field_manager:
            raise errors.bad_request("PATCH requests must contain a fieldManager query parameter")
        if self.bucket(res).get(object_key(namespace, name)) is None:
            if isinstance(body, dict):
                body.setdefault("metadata", {}).setdefault("name", name)
            return self.create(res, namespace, body, field_validation="Strict", dry_run=dry_run)
        return self.patch(res, namespace, name, "strategic", body, field_validation="Strict", dry_run=dry_run)

    def _write_over(
        self, res: ResourceType, current: Stored, obj: JSON, subresource: str, field_validation: str, dry_run: bool
    ) -> WriteResult:
        """The common end of update and patch: unknown fields, the resourceVersion precondition, the write."""
        warnings = self._check_unknown_fields(res, obj, field_validation)
        wanted_rv = obj["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != str(current.rv):
            raise errors.conflict(res, current.name, errors.STALE)
        return self._replace(res, current, self._to_storage(res, obj), subresource, warnings, dry_run)

    def _replace(
        self,
        res: ResourceType,
        current: Stored,
        obj: JSON,
        subresource: str,
        warnings: tuple[str, ...],
        dry_run: bool,
    ) -> WriteResult:
        old = current.decode()
        old_meta = old["metadata"]
        if subresource == "status":
            new = dict(old)
            new["status"] = obj.get("status")
            if new["status"] is None:
                new.pop("status")
            new["metadata"] = dict(old_meta)
            # Status strategies keep the old spec but let annotations change (pods: labels too). A body that
            # leaves the key out keeps the stored value, so partial status writes cannot erase them.
            for key in ("annotations", "labels") if res.kind == "Pod" else ("annotations",):
                if key in obj["metadata"]:
                    new["metadata"][key] = obj["metadata"][key]
        else:
            new = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
            meta = new["metadata"]
            for key in (*_SERVER_META, "namespace", "name"):
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            if res.has_status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            defaults.apply(res.kind, new)
            self._validate(res, {"kind": res.kind, "apiVersion": res.api_version, **new})
            if res.kind == "Pod":
                causes = validation.check_pod_update(old.get("spec"), new.get("spec"))
                if causes:
                    raise errors.invalid(res.kind, current.name, res.group, causes)
            if res.has_generation and new.get("spec") != old.get("spec"):
                meta["generation"] = int(old_meta.get("generation") or 1) + 1
            if res.kind == "Service":
                self._keep_cluster_ip(old, new)
        new["metadata"]["resourceVersion"] = old_meta.get("resourceVersion")
        if new == old:
            return WriteResult(current, False, warnings)
        bucket = self.bucket(res)
        if dry_run:
            return WriteResult(Stored(current.key, new, current.rv, None), False, warnings)
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not self._held(res, new):
            final = self.store.remove(bucket, current.key)
            self._released(res, final)
            return WriteResult(final, False, warnings)
        return WriteResult(self.store.put(bucket, new), False, warnings)

    def _keep_cluster_ip(self, old: JSON, new: JSON) -> None:
        old_spec = old.get("spec") or {}
        spec = new.setdefault("spec", {})
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if key in old_spec and not spec.get(key):
                spec[key] = old_spec[key]

    def _held(self, res: ResourceType, obj: JSON) -> bool:
        """Whether a deleted object without metadata finalizers must still stay: a pod in its grace period, or a
        namespace whose spec.finalizers are not done (only the finalize subresource clears those)."""
        if res.kind == "Namespace":
            return bool((obj.get("spec") or {}).get("finalizers"))
        return res.graceful_delete and bool(obj["metadata"].get("deletionGracePeriodSeconds"))

    # -- delete ---------------------------------------------------------------------------------------------

    def delete(self, res: ResourceType, namespace: str, name: str, options: DeleteOptions) -> DeleteResult:
        current = self.get(res, namespace, name)
        if options.uid is not None and options.uid != current.uid:
            raise errors.conflict(
                res, name,
                f"Precondition failed: UID in precondition: {options.uid}, UID in object meta: {current.uid}",
            )  # fmt: skip
        if options.resource_version is not None and options.resource_version != str(current.rv):
            raise errors.conflict(
                res, name,
                f"Precondition failed: ResourceVersion in precondition: {options.resource_version}, "
                f"ResourceVersion in object meta: {current.rv}",
            )  # fmt: skip
        obj = current.decode()
        meta = obj["metadata"]
        warnings: tuple[str, ...] = ()
        propagation = options.propagation or res.default_propagation
        if res.kind == "Job" and options.propagation is None:
            warnings = (JOB_ORPHAN_WARNING,)
        if res.kind == "Namespace":
            return DeleteResult(self._terminate_namespace(res, current, obj, options.dry_run), False, warnings)

        finalizers: list[str] = list(meta.get("finalizers") or [])
        pending = bool(meta.get("deletionTimestamp"))
        if not pending:
            if propagation == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            elif propagation == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
        grace = self._grace_seconds(res, obj, options) if res.graceful_delete else 0
        if not finalizers and grace == 0:
            if options.dry_run:
                return DeleteResult(current, True, warnings)
            final = self.store.remove(self.bucket(res), current.key)
            self._released(res, final)
            return DeleteResult(final, True, warnings)
        now = self.clock()
        if not pending or grace < int(meta.get("deletionGracePeriodSeconds") or 0):
            meta["deletionTimestamp"] = rfc3339(now + grace)
            meta["deletionGracePeriodSeconds"] = grace
        if finalizers:
            meta["finalizers"] = finalizers
        if res.has_generation and not pending:
            meta["generation"] = int(meta.get("generation") or 1) + 1
        if options.dry_run or obj == current.decode():
            # A repeated delete that changes nothing (same deadline, no new finalizer) writes nothing.
            return DeleteResult(current, False, warnings)
        return DeleteResult(self.store.put(self.bucket(res), obj), False, warnings)

    def _grace_seconds(self, res: ResourceType, obj: JSON, options: DeleteOptions) -> int:
        spec = obj.get("spec") or {}
        phase = (obj.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0
        grace = options.grace_period
        if grace is None:
            grace = int(spec.get("terminationGracePeriodSeconds") or 30)
        return 1 if grace < 0 else grace

    def _terminate_namespace(self, res: ResourceType, current: Stored, obj: JSON, dry_run: bool) -> Stored:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            raise errors.conflict(
                res, meta["name"],
                "The system is ensuring all content is removed from this namespace.  Upon completion, "
                "this namespace will automatically be purged by the system.",
            )  # fmt: skip
        meta["deletionTimestamp"] = rfc3339(self.clock())
        meta["deletionGracePeriodSeconds"] = 0
        obj.setdefault("status", {})["phase"] = "Terminating"
        if dry_run:
            return current
        return self.store.put(self.bucket(res), obj)

    def finalize_namespace(self, name: str, body: Any) -> Stored:
        """PUT namespaces/<name>/finalize: replace spec.finalizers; a terminating namespace without any is removed."""
        res = lookup("", "v1", "namespaces")
        assert res is not None
        current = self.get(res, "", name)
        obj = current.decode()
        finalizers = ((body or {}).get("spec") or {}).get("finalizers") if isinstance(body, dict) else None
        obj.setdefault("spec", {})["finalizers"] = list(finalizers or [])
        if obj["metadata"].get("deletionTimestamp") and not finalizers and not obj["metadata"].get("finalizers"):
            return self.store.remove(self.bucket(res), current.key)
        if obj == current.decode():
            return current
        return self.store.put(self.bucket(res), obj)

    def _released(self, res: ResourceType, final: Stored) -> None:
        if res.kind == "Service":
            spec = final.decode().get("spec") or {}
            for address in spec.get("clusterIPs") or [spec.get("clusterIP")]:
                self._cluster_ips.discard(address)

    # -- scale --------------------------------------------------------------------------------------------------

    def scale(self, res: ResourceType, namespace: str, name: str) -> JSON:
        """The autoscaling/v1 Scale view of a workload."""
        stored = self.get(res, namespace, name)
        obj = stored.decode()
        meta = obj["metadata"]
        selector = (obj.get("spec") or {}).get("selector") or {}
        labels = selector.get("matchLabels", selector) if res.group else selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": int((obj.get("spec") or {}).get("replicas") or 0)},
            "status": {"replicas": int((obj.get("status") or {}).get("replicas") or 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))},
        }  # fmt: skip

    def set_scale(self, res: ResourceType, namespace: str, name: str, scale: Any) -> JSON:
        """Write a Scale back: only spec.replicas changes, conditional on its resourceVersion when given."""
        spec = scale.get("spec") if isinstance(scale, dict) else None
        replicas = spec.get("replicas") if isinstance(spec, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            causes = [
                ("spec.replicas", "FieldValueInvalid", f"Invalid value: {replicas}: must be greater than or equal to 0")
            ]
            raise errors.invalid("Scale", name, "autoscaling", causes)
        current = self.get(res, namespace, name)
        wanted_rv = ((scale.get("metadata") or {}).get("resourceVersion")) if isinstance(scale, dict) else None
        if wanted_rv and wanted_rv != str(current.rv):
            raise errors.conflict(res, name, errors.STALE)
        obj = current.decode()
        obj.setdefault("spec", {})["replicas"] = replicas
        self._write_over(res, current, obj, "", "Ignore", False)
        return self.scale(res, namespace, name)

    # -- pods/binding ---------------------------------------------------------------------------------------

    def bind(self, res: ResourceType, namespace: str, name: str, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("target"), dict) or not body["target"].get("name"):
            raise errors.invalid("Binding", name, "", [("target.name", "FieldValueRequired", "Required value")])
        current = self.get(res, namespace, name)
        pod = current.decode()
        node = body["target"]["name"]
        spec = pod.setdefault("spec", {})
        binding_res = lookup("", "v1", "pods")
        assert binding_res is not None
        if pod["metadata"].get("deletionTimestamp"):
            raise errors.conflict(binding_res, name, "pod is being deleted, cannot be assigned to a host")
        if spec.get("nodeName"):
            raise errors.conflict(binding_res, name, f'pod {name} is already assigned to node "{spec["nodeName"]}"')
        spec["nodeName"] = node
        conditions = pod.setdefault("status", {}).setdefault("conditions", [])
        conditions[:] = [c for c in conditions if c.get("type") != "PodScheduled"]
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": rfc3339(self.clock()),
            }
        )
        self.store.put(self.bucket(res), pod)

    # -- bootstrap ------------------------------------------------------------------------------------------

    def _populate_namespace(self, namespace: str) -> None:
        """What the service-account and root-CA-publisher controllers do for every new namespace."""
        sa = lookup("", "v1", "serviceaccounts")
        cm = lookup("", "v1", "configmaps")
        assert sa is not None and cm is not None
        if self.bucket(sa).get(object_key(namespace, "default")) is None:
            self.create(sa, namespace, {"metadata": {"name": "default"}})
        if self.bucket(cm).get(object_key(namespace, "kube-root-ca.crt")) is None:
            self.create(cm, namespace, {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": self.root_ca}})

    def bootstrap(self) -> None:
        """The objects every cluster starts with: the four namespaces and the `kubernetes` Service."""
        ns = lookup("", "v1", "namespaces")
        svc = lookup("", "v1", "services")
        assert ns is not None and svc is not None
        for name in BUILTIN_NAMESPACES:
            if self.bucket(ns).get(name) is None:
                self.create(ns, "", {"metadata": {"name": name}})
        if self.bucket(svc).get(object_key("default", "kubernetes")) is None:
            self.create(
                svc, "default",
                {
                    "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                    "spec": {"clusterIP": "10.96.0.1",
                             "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
                },
            )  # fmt: skip
