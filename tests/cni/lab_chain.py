"""Shared steps of the CNI chain scenarios on the containerd lab: conflists with and without the mesh plugin, waiting
for containerd to load a chain, the node audit through the real CRI client, `nodemeta cni check` as a subprocess,
and a real `ConfWatcher` on the lab's conf dir.

Which pods must be captured is said with a label selector (`mesh=lab` -> the Linkerd profile, whose rule layout is
what the mesh plugin installs in "redirect" mode), or with the Linkerd rule itself (a `linkerd-proxy` container):
the selector keeps a scenario to one sandbox call, the Linkerd rule shows the policy reading the runtime's
containers. The mesh plugin is required as `nodemeta-test-mesh`, its real type, so the result cache is searched
for the plugin that actually ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from nodemeta.cni.audit import AuditSettings, PodAuditor
from nodemeta.cni.conf import RuntimeModel
from nodemeta.cni.loaded import LoadedView, from_status_info
from nodemeta.cni.patterns import Code
from nodemeta.cni.policy import PolicySettings, Selector
from nodemeta.cni.results import ResultCacheSettings
from nodemeta.cni.verdict import NodeAudit
from nodemeta.cni.watch import ConfWatcher, Evaluation, Subscription, WatchSettings
from nodemeta.cri.client import CriClient
from tests.lab.harness import MESH_PLUGIN_TYPE, ContainerdLab

MESH = MESH_PLUGIN_TYPE
# The chains containerd loads: the lab's default network, and the same with the mesh plugin after it.
BRIDGE_CHAIN = ["bridge", "portmap"]
MESH_CHAIN = ["bridge", "portmap", MESH]
SELECTED = {"mesh": "lab"}
# containerd 1.6 runs libcni with its default cache dir on the host's file system (the lab shares it: only the
# mount propagation is private); entries are named by sandbox id, so labs of other runs never collide.
RESULTS_DIR = "/var/lib/cni/results"
NODEMETA = [sys.executable, "-m", "nodemeta.cli"]


def with_mesh(lab: ContainerdLab, **mesh: Any) -> dict[str, Any]:
    """The lab's bridge conflist with the mesh plugin chained after it (IPv6 rules too: lab pods have both)."""
    conflist: dict[str, Any] = lab.default_conflist()
    conflist["plugins"].append({"type": MESH, "ipv6": True, **mesh})
    return conflist


def encode(conflist: dict[str, Any]) -> bytes:
    return json.dumps(conflist, indent=2).encode()


def loaded_types(lab: ContainerdLab) -> list[list[str]]:
    networks = json.loads(lab.cni_config()).get("Networks") or []
    return [
        [p["Network"]["type"] for p in n["Config"]["Plugins"]]
        for n in networks
        if n["Config"]["Name"] != "cni-loopback"
    ]


def wait_loaded(lab: ContainerdLab, types: list[str]) -> None:
    """Until containerd's loaded pod network is exactly `types` (it reloads asynchronously after a change)."""
    deadline = time.monotonic() + 20
    while loaded_types(lab) != [types]:
        assert time.monotonic() < deadline, f"containerd did not load {types}: {loaded_types(lab)}"
        time.sleep(0.05)


def audit_settings(**overrides: Any) -> AuditSettings:
    values: dict[str, Any] = {
        "policy": PolicySettings(selectors=(Selector(profile="linkerd", labels=dict(SELECTED)),)),
        "required_plugins": (MESH,),
        "results": ResultCacheSettings(directory=RESULTS_DIR),
    }
    values.update(overrides)
    return AuditSettings(**values)


async def audit(lab: ContainerdLab, **overrides: Any) -> NodeAudit:
    async with CriClient(str(lab.socket)) as runtime:
        return await PodAuditor(runtime, settings=audit_settings(**overrides)).audit_node()


def check(lab: ContainerdLab, *flags: str) -> tuple[int, dict[str, Any]]:
    """`nodemeta cni check --json` against the lab's socket and conf dir, as a user runs it."""
    done = subprocess.run(
        [*NODEMETA, "cni", "check", "--conf-dir", str(lab.conf_dir), "--cri-socket", str(lab.socket),
         "--require", MESH, "--selector", "linkerd:mesh=lab", "--results-dir", RESULTS_DIR, "--json", *flags],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def pod_verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["verdict"] for p in report["pods"] or ()}


def codes(findings: Any) -> set[str]:
    return {f.code.value if hasattr(f, "code") else f["code"] for f in findings}


@contextlib.asynccontextmanager
async def watching(lab: ContainerdLab) -> AsyncIterator[Subscription]:
    """A real ConfWatcher on the lab's conf dir, with containerd's loaded view from CRI Status."""

    async def loaded() -> LoadedView:
        async with CriClient(str(lab.socket)) as runtime:
            return from_status_info((await runtime.status()).info)

    watcher = ConfWatcher(
        lab.conf_dir,
        model=RuntimeModel(),
        required=(MESH,),
        loaded=loaded,
        settings=WatchSettings(debounce=0.05, max_delay=0.5, rescan_interval=1.0),
    )
    task = asyncio.create_task(watcher.run())
    try:
        yield watcher.subscribe()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(
    subscription: Subscription, predicate: Callable[[Evaluation], bool], what: str, current: Evaluation | None = None
) -> Evaluation:
    """`current` if it satisfies `predicate`, else the first later evaluation that does (the watcher rescans at
    least every second, and publishes only what changed)."""
    if current is not None and predicate(current):
        return current
    seen: list[set[str]] = []
    try:
        async with asyncio.timeout(30):
            async for evaluation in subscription:
                if predicate(evaluation):
                    return evaluation
                seen.append(codes(evaluation.findings))
    except TimeoutError:
        pass
    raise AssertionError(f"the watcher never reported {what}; findings seen: {seen[-5:]}")


def has(code: Code) -> Callable[[Evaluation], bool]:
    return lambda e: code in {f.code for f in e.findings}
