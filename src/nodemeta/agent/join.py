"""The join: container id, sandbox id, pid or pod uid -> one enriched record. Pure, from memory only.

A lookup reads the runtime mirror (container, sandbox: image, IPs, CNI result, privileged, ...) and the metadata
store (pod labels, namespace labels, owners, services) and nothing else: no runtime call, no API call. A pid lookup
also reads the process's cgroup file through the injected `cgroup_of` (a local procfs read).

Pods are found by the sandbox's pod uid. A static pod's sandbox carries the kubelet's uid (the manifest's config
hash), not the API uid of its mirror pod; the kubelet names the mirror pod like the sandbox, and the mirror pod is
controlled by its Node, so such a sandbox is joined with the Node-controlled pod of the same namespace and name.

Owners are read up the chain: the pod's controlling owner, then its controller (a ReplicaSet's Deployment from the
pod's refs; further links, such as a Job's CronJob, where the metadata source knows them), at most `_MAX_CHAIN`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nodemeta.agent.cgroup import CgroupRef
from nodemeta.agent.metastore import NAMESPACE, NODE, SERVICE, MetadataStore, MetaObject
from nodemeta.agent.mirror import SHORT_ID, RuntimeMirror
from nodemeta.cri.model import Container, Sandbox

__all__ = ["Joiner", "Record", "container_view", "sandbox_view"]

Record = dict[str, Any]
_MAX_CHAIN = 5
# Labels the kubelet adds to sandboxes for itself; not the pod's own labels.
_KUBELET_PREFIX = "io.kubernetes."
_MAX_PID = 1 << 22  # the kernel's pid_max limit


def container_view(c: Container) -> Record:
    return {
        "id": c.id,
        "shortId": c.id[:SHORT_ID],
        "name": c.name,
        "attempt": c.attempt,
        "sandboxId": c.sandbox_id,
        "image": c.image,
        "imageRef": c.image_ref,
        "state": c.state.name.lower(),
        "createdAt": c.created_at,
        "startedAt": c.started_at,
        "finishedAt": c.finished_at,
        "exitCode": c.exit_code,
        "pid": c.pid,
        "privileged": c.privileged,
        "user": c.user,
        "labels": dict(c.labels),
        "annotations": dict(c.annotations),
        "mounts": [
            {"containerPath": m.container_path, "hostPath": m.host_path, "readonly": m.readonly,
             "propagation": m.propagation}
            for m in c.mounts
        ],
    }  # fmt: skip


def sandbox_view(s: Sandbox) -> Record:
    return {
        "id": s.id,
        "shortId": s.id[:SHORT_ID],
        "name": s.name,
        "namespace": s.namespace,
        "uid": s.uid,
        "attempt": s.attempt,
        "state": s.state.name.lower(),
        "createdAt": s.created_at,
        "ips": list(s.ips),
        "hostNetwork": s.host_network,
        "hostPid": s.host_pid,
        "hostIpc": s.host_ipc,
        "netnsPath": s.netns_path,
        "pid": s.pid,
        "cniResult": s.cni_result,
        "runtimeHandler": s.runtime_handler,
        "labels": dict(s.labels),
        "annotations": dict(s.annotations),
    }


class Joiner:
    def __init__(
        self, mirror: RuntimeMirror, store: MetadataStore, cgroup_of: Callable[[int], CgroupRef | None]
    ) -> None:
        self.mirror = mirror
        self.store = store
        self._cgroup_of = cgroup_of

    # -- entry points -------------------------------------------------------------------------------------------

    def lookup(self, key: str) -> Record | None:
        """A pid (decimal), a container or sandbox id (full, or a unique prefix of 12+), or a pod uid."""
        if key.isdigit() and len(key) <= 7:
            return self.by_pid(int(key))
        return self.by_id(key) or self.by_pod(key)

    def by_id(self, key: str) -> Record | None:
        found = self.mirror.resolve(key.lower())
        if found is None:
            return None
        if isinstance(found, Sandbox):
            return self._sandbox_record(found)
        return self._container_record(found)

    def by_pid(self, pid: int) -> Record | None:
        if not 0 < pid < _MAX_PID:
            return None
        ref = self._cgroup_of(pid)
        if ref is None:
            return None
        record: Record | None = None
        if ref.container_id:
            record = self.by_id(ref.container_id)
        if record is None and ref.pod_uid:
            record = self.by_pod(ref.pod_uid)
            if record is not None and ref.container_id:
                record["containerId"] = ref.container_id
        if record is not None:
            record["pid"] = pid
        return record

    def by_pod(self, uid: str) -> Record | None:
        sandboxes = self.mirror.sandboxes_of_pod(uid)
        pod = self.store.pod(uid)
        if pod is not None and not sandboxes:
            # The API uid of a mirror pod: its sandboxes carry the config hash and are found by name.
            sandboxes = [s for s in self.mirror.sandboxes.values() if (s.namespace, s.name) == (pod.namespace,
                         pod.name) and self._pod_of(s) is pod]  # fmt: skip
        if pod is None and not sandboxes:
            return None
        current = sandboxes[0] if sandboxes else None
        if pod is None and current is not None:
            pod = self._pod_of(current)
        return {
            "kind": "pod",
            "pod": self._pod_view(pod, current),
            "sandboxes": [sandbox_view(s) for s in sandboxes],
            "containers": [container_view(c) for s in sandboxes for c in self.mirror.containers_of(s.id)],
        }

    # -- records ------------------------------------------------------------------------------------------------

    def _container_record(self, c: Container) -> Record:
        sandbox = self.mirror.sandboxes.get(c.sandbox_id)
        pod = self._pod_of(sandbox) if sandbox is not None else self._pod_of_container(c)
        return {
            "kind": "container",
            "container": container_view(c),
            "sandbox": sandbox_view(sandbox) if sandbox is not None else None,
            "pod": self._pod_view(pod, sandbox, c),
        }

    def _sandbox_record(self, s: Sandbox) -> Record:
        return {
            "kind": "sandbox",
            "sandbox": sandbox_view(s),
            "pod": self._pod_view(self._pod_of(s), s),
            "containers": [container_view(c) for c in self.mirror.containers_of(s.id)],
        }

    def _pod_of(self, sandbox: Sandbox) -> MetaObject | None:
        pod = self.store.pod(sandbox.uid)
        if pod is not None:
            return pod
        named = self.store.pod_named(sandbox.namespace, sandbox.name)
        if named is not None and named.refs is not None and NODE in named.refs:
            return named  # the mirror pod of this static pod
        return None

    def _pod_of_container(self, c: Container) -> MetaObject | None:
        uid = c.labels.get("io.kubernetes.pod.uid", "")
        return self.store.pod(uid) if uid else None

    def _pod_view(self, pod: MetaObject | None, sandbox: Sandbox | None, container: Container | None = None) -> Record:
        if pod is None:
            # Not (yet) in the metadata: what the runtime knows (the kubelet copies the pod's labels to the sandbox).
            if sandbox is not None:
                uid, name, namespace = sandbox.uid, sandbox.name, sandbox.namespace
                labels = {k: v for k, v in sandbox.labels.items() if not k.startswith(_KUBELET_PREFIX)}
            elif container is not None:
                labels = {}
                uid = container.labels.get("io.kubernetes.pod.uid", "")
                name = container.labels.get("io.kubernetes.pod.name", "")
                namespace = container.labels.get("io.kubernetes.pod.namespace", "")
            else:
                return {"metadata": False}
            return {
                "metadata": False,
                "uid": uid,
                "name": name,
                "namespace": namespace,
                "labels": labels,
                "ips": list(sandbox.ips) if sandbox is not None else [],
            }
        refs = pod.refs or {}
        namespace_obj = self._first(refs.get(NAMESPACE)) or self.store.namespace_named(pod.namespace)
        return {
            "metadata": True,
            "uid": pod.uid,
            "name": pod.name,
            "namespace": pod.namespace,
            "generateName": pod.generate_name,
            "labels": dict(pod.labels),
            "ip": pod.pod_ip,
            "ips": list(sandbox.ips) if sandbox is not None and sandbox.ips else ([pod.pod_ip] if pod.pod_ip else []),
            "namespaceUid": namespace_obj.uid if namespace_obj is not None else "",
            "namespaceLabels": dict(namespace_obj.labels) if namespace_obj is not None else {},
            "owners": self._owners(refs),
            "services": [
                {"uid": uid, "name": svc.name if (svc := self.store.get(uid)) is not None else ""}
                for uid in refs.get(SERVICE, ())
            ],
        }

    def _first(self, uids: tuple[str, ...] | None) -> MetaObject | None:
        return self.store.get(uids[0]) if uids else None

    def _owners(self, refs: Mapping[str, tuple[str, ...]]) -> list[Record]:
        candidates = [(kind, uid) for kind, uids in refs.items() if kind not in (NAMESPACE, SERVICE) for uid in uids]
        if not candidates:
            return []
        # The refs name the controlling owner and, for a ReplicaSet, the ReplicaSet's controller.
        direct = next((c for c in candidates if c[0] == "ReplicaSet"), candidates[0])
        chain = [direct]
        rest = [c for c in candidates if c != direct]
        while len(chain) < _MAX_CHAIN:
            if rest:
                chain.append(rest.pop(0))
                continue
            obj = self.store.get(chain[-1][1])
            parent = obj.controller if obj is not None else None
            if parent is None or (parent.kind, parent.uid) in chain:
                break
            chain.append((parent.kind, parent.uid))
        out = []
        for kind, uid in chain:
            obj = self.store.get(uid)
            out.append({"kind": kind, "uid": uid, "name": obj.name if obj is not None else ""})
        return out
