"""The CNI chain guard assembled from its configuration, for a process that already has a runtime and a registry.

    async with open_guard(config, node_name=node, runtime=runtime, cluster=cluster, registry=registry) as guard:
        await guard.run()        # until cancelled

One place builds what `nodemeta agent run --cni-guard` and `nodemeta cni guard` both run: an API client on the
cluster configuration (the guard writes taints, labels, Events and deletions, so it needs credentials even where
the agent itself follows a collector), the writer and the event recorder on it, the actions with their metrics on
the caller's registry, the configuration watcher (with the runtime's loaded CNI view from CRI `Status`), and the
capture audit on the same runtime client as the guard's pod source. Closing the context closes the API client.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry

from nodemeta.cni.actions import ChainActions
from nodemeta.cni.audit import PodAuditor
from nodemeta.cni.conf import RuntimeKind
from nodemeta.cni.guard import Guard
from nodemeta.cni.loaded import LoadedView, from_status_info
from nodemeta.cni.metrics import CniMetrics
from nodemeta.cni.options import GuardConfig
from nodemeta.cni.podsource import AuditedPods
from nodemeta.cni.watch import ConfWatcher
from nodemeta.cri.model import Runtime
from nodemeta.kube import ApiClient, ClusterConfig, Recorder, Writer

__all__ = ["open_guard"]


@contextlib.asynccontextmanager
async def open_guard(
    config: GuardConfig,
    *,
    node_name: str,
    runtime: Runtime,
    cluster: ClusterConfig,
    registry: CollectorRegistry,
) -> AsyncIterator[Guard]:
    """The guard of node `node_name`, ready to `run()`; its API client is closed when the context exits."""

    async def loaded() -> LoadedView:
        return from_status_info((await runtime.status()).info)

    async with ApiClient(cluster) as client:
        writer = Writer(client)
        recorder = Recorder(writer, host=node_name)
        actions = ChainActions(
            writer, recorder, CniMetrics(registry, recorder.stats), node_name=node_name, settings=config.actions
        )
        # Only containerd reports its loaded CNI networks in the CRI Status info.
        view = loaded if config.model.kind is RuntimeKind.CONTAINERD else None
        watcher = ConfWatcher(
            config.conf_dir, model=config.model, required=config.required, loaded=view, settings=config.watch
        )
        pods = AuditedPods(PodAuditor(runtime, settings=config.audit), writer)
        yield Guard(watcher, actions, recorder, pods=pods, settings=config.guard)
