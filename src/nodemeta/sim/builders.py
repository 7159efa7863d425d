"""Objects as the cluster's own components would create them (a registered, Ready node)."""

from __future__ import annotations

import hashlib

from nodemeta.sim.registry import rfc3339
from nodemeta.sim.resources import JSON


def pod_cidr(index: int) -> str:
    """Node N's pod CIDR: 10.244.N.0/24 like a kind cluster for the first 1,024 nodes (10.244.0.0/14), then
    10.128.0.0/10 for up to 16,384 more, clear of the service range 10.96.0.0/12."""
    if index < 1024:
        return f"10.{244 + index // 256}.{index % 256}.0/24"
    rest = index - 1024
    if rest >= 64 * 256:
        raise ValueError(f"no pod CIDR for node index {index}: at most {1024 + 64 * 256} nodes")
    return f"10.{128 + rest // 256}.{rest % 256}.0/24"


def node_object(name: str, index: int, now: float) -> JSON:
    """A Ready node as a kubelet registers it: a /24 pod CIDR of its own and an address 172.18.x.y."""
    stamp = rfc3339(now)
    host_ip = f"172.18.{(index + 2) // 250}.{(index + 2) % 250 + 2}"
    cidr = pod_cidr(index)
    ident = hashlib.sha256(name.encode()).hexdigest()
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
    }
    allocatable = {"cpu": "8", "memory": "16318404Ki", "pods": "110", "ephemeral-storage": "102626232Ki"}

    def condition(kind: str, status: str, reason: str, message: str) -> JSON:
        return {"type": kind, "status": status, "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
                "reason": reason, "message": message}  # fmt: skip

    return {
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "providerID": f"nodemeta://sim/{name}"},
        "status": {
            "capacity": dict(allocatable),
            "allocatable": allocatable,
            "conditions": [
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": host_ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": ident[:32],
                "systemUUID": f"{ident[:8]}-{ident[8:12]}-{ident[12:16]}-{ident[16:20]}-{ident[20:32]}",
                "bootID": ident[32:64],
                "kernelVersion": "6.8.0",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.24",
                "kubeletVersion": "v1.32.0",
                "kubeProxyVersion": "v1.32.0",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }
