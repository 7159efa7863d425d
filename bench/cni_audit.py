"""Pod capture audit cost on a real containerd: wall time and CPU of a node audit with N captured pods.

    .venv/bin/python bench/cni_audit.py --pods 20 --rounds 3 --json out.json

Starts the containerd lab (tests/lab: needs root and the lab's Debian packages), chains the test mesh plugin after
the bridge plugin, runs N pods selected for capture, and audits the node `--rounds` times at each concurrency in
`--concurrency`, then once more with the active probe. CPU is this process plus its reaped children (the
nsenter / iptables-save processes and the probe's child): getrusage(SELF) + getrusage(CHILDREN). Every round must
find every pod captured, or the run fails.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nodemeta.cni.audit import AuditSettings, PodAuditor
from nodemeta.cni.policy import PolicySettings, Selector
from nodemeta.cni.verdict import PodState
from nodemeta.cri.client import CriClient

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE.parent))
from tests.lab.harness import MESH_PLUGIN_TYPE, ContainerdLab, missing_prerequisites  # noqa: E402

from measure import Contention  # noqa: E402


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def measure(lab: ContainerdLab, pods: int, settings: AuditSettings) -> dict[str, Any]:
    contention = Contention()
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    async with CriClient(str(lab.socket)) as runtime:
        node = await PodAuditor(runtime, settings=settings).audit_node()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    states = [p.state for p in node.pods]
    if states != [PodState.CAPTURED] * pods:
        raise SystemExit(f"expected {pods} captured pods, got {states}")
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "wall_per_pod_ms": round(1000 * wall / pods, 1),
        "cpu_per_pod_ms": round(1000 * cpu / pods, 1),
        **contention.result(),
    }


BASE = AuditSettings(
    policy=PolicySettings(selectors=(Selector(profile="linkerd", labels={"mesh": "bench"}),)),
    required_plugins=(MESH_PLUGIN_TYPE,),
)


def start_pods(lab: ContainerdLab, pods: int) -> float:
    """Chain the mesh plugin, wait until containerd loaded it, run `pods` selected pods; returns their start time."""
    conflist: dict[str, Any] = lab.default_conflist()
    conflist["plugins"].append({"type": MESH_PLUGIN_TYPE, "ipv6": True})
    lab.write_conflist(conflist)
    deadline = time.monotonic() + 30
    while MESH_PLUGIN_TYPE not in lab.cni_config():
        if time.monotonic() > deadline:
            raise SystemExit("containerd did not load the mesh plugin")
        time.sleep(0.05)
    t0 = time.perf_counter()
    for i in range(pods):
        lab.run_pod(f"bench-{i}", labels={"mesh": "bench"})
    return time.perf_counter() - t0


async def rounds(lab: ContainerdLab, args: argparse.Namespace) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    plan = [(c, r, False) for c in args.concurrency for r in range(args.rounds)] + [(4, 0, True)]
    for concurrency, round_, with_probe in plan:
        settings = dataclasses.replace(BASE, concurrency=concurrency, probe=with_probe)
        result = await measure(lab, args.pods, settings)
        out.append({"concurrency": concurrency, "round": round_, "probe": with_probe, **result})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--json", default="", metavar="FILE")
    args = parser.parse_args()
    missing = missing_prerequisites()
    if missing:
        print(f"the containerd lab cannot run here: missing {', '.join(missing)}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="cni-audit-bench-") as tmp, ContainerdLab(Path(tmp)) as lab:
        out: dict[str, Any] = {"pods": args.pods, "pod_start_s": round(start_pods(lab, args.pods), 2)}
        out["rounds"] = asyncio.run(rounds(lab, args))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
