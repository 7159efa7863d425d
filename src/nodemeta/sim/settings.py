"""Settings of the simulated API server, each default with the reason for its number."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class SimSettings:
    host: str = "127.0.0.1"
    # 0 picks any free port; the chosen one is in `SimServer.url` once started.
    port: int = 0
    # HTTPS with a CA generated at start-up; the kubeconfig carries the CA.
    tls: bool = False
    # Require a bearer token the server issued (the kubeconfig carries an admin token).
    auth: bool = False
    # Ready nodes created at start-up (node-1 ... node-N).
    nodes: int = 0
    # Changes kept per resource for watches and paginated lists (continue tokens expire once the revision they
    # were issued at falls out). kube-apiserver's watch cache keeps up to 100k events for a busy resource and etcd
    # keeps ~5 min. 100k lets a 150,000-pod list finish under 1,300 pod changes/s (20k expired it mid-list in the
    # generated-cluster benchmark); the cost is the superseded revisions it keeps alive, ~3 KB each for pods.
    history_limit: int = 100_000
    # The cacher sends a bookmark to each watcher about once a minute.
    bookmark_interval: float = 60.0
    # kube-apiserver --min-request-timeout: a watch without timeoutSeconds lasts a random 1-2x this.
    min_request_timeout: float = 1800.0
    # Events buffered for one watcher before it is ended as too slow; enough to absorb a 10k-object burst.
    watch_queue_limit: int = 10_000
    # kube-apiserver's MaxRequestBodyBytes (3 MiB); larger bodies get 413.
    max_body_bytes: int = 3 * 1024 * 1024
    # The watch cache waits up to 3 s for a resourceVersion it has not reached before answering 504.
    future_rv_wait: float = 3.0
    # The WatchList feature gate (sendInitialEvents), on by default in 1.32.
    watch_list: bool = True
    # Seed for generated names and cluster IPs (None = random).
    seed: int | None = None
    # Controllers to run, by name (see nodemeta.sim.controllers.catalog); None runs them all, () none, which gives
    # raw API-server behaviour: nothing schedules, starts or garbage-collects anything.
    controllers: tuple[str, ...] | None = None
    # How long the kubelet stand-in takes to stop a pod's containers once it is deleted: the grace period, but at
    # most this long, since real containers usually exit on SIGTERM well before their grace period runs out.
    kubelet_stop_seconds: float = 1.0
    # Kubelets renew their node Lease every 10 s (a quarter of its 40 s duration). At 5,000 nodes that is 500
    # writes a second, so very large generated clusters may turn heartbeats off (Leases are still created once).
    kubelet_heartbeats: bool = True
    kubelet_lease_renew_seconds: float = 10.0
    # A real kubelet writes a pod's status twice on start (ContainerCreating, then Running); one write is cheaper.
    kubelet_two_step_start: bool = True
    # The pod garbage collector waits this long before force-deleting pods of a node that is gone
    # (kube-controller-manager's podgc quarantine), so a quickly re-registered node keeps its pods.
    pod_gc_quarantine_seconds: float = 40.0
    # Whether the scheduler and kubelets record Events (Scheduled, Pulled, Started...). Off for very large
    # generated clusters, where they would outnumber every other object.
    component_events: bool = True
    # Give pods an IPv6 address beside the IPv4 one (podIPs with two entries), as a dual-stack cluster does.
    dual_stack: bool = False
