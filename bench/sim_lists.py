"""Node-filtered lists and old-revision list pages on the simulated API server at 150k pods.

Node agents in direct mode each list `pods?fieldSelector=spec.nodeName=<node>`; a paginated list that outlives
many writes reads every later page at its first page's (older) resourceVersion. This measures, over HTTP against a
`sim_scale.py serve` child process (same population: 150k pods on 5k nodes):

1. node-filtered lists: the first page (`limit=10`) and the whole list, for random nodes, each checked against
   the generator's ground truth (which pods `plan_pod` put on the node, in key order);
2. a paginated list (`limit=500`) whose first page was taken before `--writes` label patches: the latency of each
   later page (read at the old revision) against pages of a list at the current revision, and every page's names
   checked against the sorted ground truth;
3. watch-event delivery (node-filtered watches, patches to pods on their nodes) while nothing else runs, then
   while `--listers` clients list random nodes back to back: p50/p99 of both;
4. the server's full (generation-2) GC passes while `--gc-writes` label patches run as fast as the server takes
   them, and over the whole run (the server reports each pass's duration).

    .venv/bin/python bench/sim_lists.py --json out.json

Run the baseline by pointing PYTHONPATH at another checkout's `src` (the server child inherits it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from measure import BenchError, Contention
from sim_scale import (
    SENT_LABEL,
    SEQ_LABEL,
    Churn,
    PodPlan,
    ServerProcess,
    Watcher,
    choose_targets,
    drive_churn,
    expected_seqs,
    latency_summary,
    machine_facts,
    open_watch,
    plan_pods,
    read_watch,
    start_server,
)


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    async with session.get(url) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise BenchError(f"GET {url}: {resp.status} {body[:300]!r}")
    took = time.perf_counter() - t0
    page: dict[str, Any] = orjson.loads(body)
    return page, took


def _names(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in page["items"]]


def _by_node(plans: list[PodPlan]) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for plan in plans:
        out.setdefault(plan.node, []).append((plan.namespace, plan.name))
    for names in out.values():
        names.sort()
    return out


async def node_lists(
    session: aiohttp.ClientSession, base: str, truth: dict[str, list[tuple[str, str]]], samples: int, rng: random.Random
) -> dict[str, Any]:
    """First page (limit=10) and whole list for `samples` random nodes, each checked against the ground truth."""
    first: list[float] = []
    whole: list[float] = []
    mismatches = 0
    for _ in range(samples):
        node = rng.choice(sorted(truth))
        url = f"{base}/api/v1/pods?fieldSelector=spec.nodeName%3D{node}"
        page, took = await _get(session, url + "&limit=10")
        first.append(took)
        mismatches += _names(page) != truth[node][:10]
        page, took = await _get(session, url)
        whole.append(took)
        mismatches += _names(page) != truth[node]
    return {"first_page": latency_summary(first), "whole": latency_summary(whole), "mismatches": mismatches}


async def old_revision_pages(
    session: aiohttp.ClientSession, base: str, plans: list[PodPlan], writes: int, pages: int, limit: int
) -> dict[str, Any]:
    """Pages of a list whose first page predates `writes` patches, against pages of a list at the current revision."""
    keys = sorted((p.namespace, p.name) for p in plans)
    url = f"{base}/api/v1/pods?limit={limit}"
    first, _ = await _get(session, url)
    old_token = first["metadata"]["continue"]
    churn = Churn(choose_targets(plans, 1, [], writes, seed=7), [False] * writes)
    await drive_churn(session, base, churn, rate=1e9, inflight=16, seq0=10_000_000)
    if churn.failures:
        raise BenchError(f"{len(churn.failures)} patches failed: {churn.failures[:3]}")
    mismatches = 0

    async def walk(token: str, offset: int) -> list[float]:
        nonlocal mismatches
        took_all = []
        for n in range(pages):
            page, took = await _get(session, f"{url}&continue={quote(token)}")
            took_all.append(took)
            start = offset + n * limit
            mismatches += _names(page) != keys[start : start + limit]
            token = page["metadata"]["continue"]
        return took_all

    old = await walk(old_token, limit)
    current_first, _ = await _get(session, url)
    current = await walk(current_first["metadata"]["continue"], limit)
    return {
        "writes_since_first_page": writes,
        "old_rv_page": latency_summary(old),
        "current_rv_page": latency_summary(current),
        "mismatches": mismatches,
    }


async def drive_for(
    session: aiohttp.ClientSession, base: str, churn: Churn, rate: float, seq0: int, deadline: float
) -> int:
    """`churn`'s patches at `rate` (8 outstanding at most) until `deadline`; returns how many were sent."""
    gate = asyncio.Semaphore(8)

    async def one(seq: int, plan: PodPlan) -> None:
        try:
            url = f"{base}/api/v1/namespaces/{plan.namespace}/pods/{plan.name}"
            stamp = f"{time.perf_counter():.6f}"
            body = {"metadata": {"labels": {SENT_LABEL: stamp, SEQ_LABEL: str(seq0 + seq)}}}
            headers = {"Content-Type": "application/merge-patch+json"}
            async with session.patch(url, data=orjson.dumps(body), headers=headers) as resp:
                await resp.read()
                churn.ok[seq] = resp.status == 200
        except (aiohttp.ClientError, ConnectionError) as err:
            churn.failures.append(f"{seq}: {err!r}")
        finally:
            gate.release()

    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter()
    for seq, plan in enumerate(churn.targets):
        delay = t0 + seq / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await gate.acquire()
        if time.perf_counter() >= deadline:
            gate.release()
            break
        tasks.append(asyncio.create_task(one(seq, plan)))
    await asyncio.gather(*tasks)
    return len(tasks)


async def watch_under_lists(
    session: aiohttp.ClientSession,
    base: str,
    plans: list[PodPlan],
    truth: dict[str, list[tuple[str, str]]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Event delivery to node-filtered watchers, quiet and then while `listers` clients list random nodes."""
    rng = random.Random(args.seed)
    watched = rng.sample(range(1, args.nodes + 1), args.watchers)
    watchers = [
        Watcher(i, f"node-{n}", f"{base}/api/v1/pods?watch=1&fieldSelector=spec.nodeName%3Dnode-{n}")
        for i, n in enumerate(watched)
    ]
    t_open = time.perf_counter()
    await asyncio.gather(*(open_watch(session, w) for w in watchers))
    opened_s = time.perf_counter() - t_open
    readers = [asyncio.create_task(read_watch(w)) for w in watchers]
    results: dict[str, Any] = {"watches_opened_s": round(opened_s, 2)}
    lists_done = 0
    try:
        seq0 = 0
        for phase in ("quiet", "lists"):
            for w in watchers:
                w.latencies.clear()
                w.seqs.clear()
            stop = asyncio.Event()

            async def lister(stop: asyncio.Event) -> None:
                nonlocal lists_done
                nodes = sorted(truth)
                while not stop.is_set():
                    node = rng.choice(nodes)
                    async with session.get(f"{base}/api/v1/pods?fieldSelector=spec.nodeName%3D{node}") as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise BenchError(f"node list: {resp.status}")
                    lists_done += 1

            listers = [asyncio.create_task(lister(stop)) for _ in range(args.listers if phase == "lists" else 0)]
            contention = Contention()
            count = int(args.rate * args.phase_seconds)
            churn = Churn(choose_targets(plans, args.nodes, watched, count, seed=seq0 + 1), [False] * count)
            done_before = lists_done
            t0 = time.perf_counter()
            sent = await drive_for(session, base, churn, args.rate, seq0, t0 + args.phase_seconds)
            deadline = time.perf_counter() + 60
            while time.perf_counter() < deadline:
                if all(set(w.seqs) >= expected_seqs(w, churn, seq0) for w in watchers):
                    break
                await asyncio.sleep(0.1)
            wall = time.perf_counter() - t0
            stop.set()
            for task in listers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            missing = sum(len(expected_seqs(w, churn, seq0) - set(w.seqs)) for w in watchers)
            latencies = [lat for w in watchers for lat in w.latencies]
            results[phase] = {
                "patches_sent": sent, "events": len(latencies), "missing": missing, "lists": lists_done - done_before,
                "lists_per_s": round((lists_done - done_before) / wall, 1), "latency": latency_summary(latencies),
                "contention": contention.result(),
            }  # fmt: skip
            seq0 += 1_000_000
    finally:
        for w in watchers:
            if w.response is not None:
                w.response.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return results


def _full_pauses(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    pauses = after["full_pauses_s"][len(before["full_pauses_s"]) :]
    return {"count": len(pauses), "max_s": max(pauses, default=0.0), "total_s": round(sum(pauses), 3)}


async def gc_under_churn(
    session: aiohttp.ClientSession, server: ServerProcess, plans: list[PodPlan], writes: int
) -> dict[str, Any]:
    before = (await server.stats())["gc"]
    churn = Churn(choose_targets(plans, 1, [], writes, seed=11), [False] * writes)
    await drive_churn(session, server.base, churn, rate=1e9, inflight=16, seq0=20_000_000)
    after = (await server.stats())["gc"]
    return {
        "writes": writes, "failures": len(churn.failures), "writes_per_s": round(writes / churn.wall_s, 1),
        "patch_latency": latency_summary(churn.patch_latencies), "full_gc": _full_pauses(before, after),
    }  # fmt: skip


async def run(args: argparse.Namespace, results: dict[str, Any]) -> None:
    plans = plan_pods(args.pods, args.nodes, args.namespaces)
    truth = _by_node(plans)
    results["machine"] = machine_facts()
    results["params"] = {k: v for k, v in vars(args).items() if k != "json"}
    with tempfile.TemporaryDirectory(prefix="sim-lists-") as tmp:
        args.gc_freeze = False
        server = start_server(args, Path(tmp))
        try:
            await server.wait_ready(900)
            results["build"] = {k: server.info[k] for k in ("build_s", "pods", "store_rv")}
            base = server.base
            timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                rng = random.Random(args.seed)
                gc0 = (await server.stats())["gc"]
                results["node_lists"] = await node_lists(session, base, truth, args.samples, rng)
                results["old_revision"] = await old_revision_pages(
                    session, base, plans, args.writes, args.pages, args.page_limit
                )
                results["watch"] = await watch_under_lists(session, base, plans, truth, args)
                results["gc_churn"] = await gc_under_churn(session, server, plans, args.gc_writes)
                results["full_gc_whole_run"] = _full_pauses(gc0, (await server.stats())["gc"])
        finally:
            results["server_exit_code"] = await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=150_000)
    parser.add_argument("--nodes", type=int, default=5_000)
    parser.add_argument("--namespaces", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--samples", type=int, default=40, help="nodes listed in step 1")
    parser.add_argument("--writes", type=int, default=5_000, help="patches between the first and later pages")
    parser.add_argument("--pages", type=int, default=40, help="pages timed in step 2")
    parser.add_argument("--page-limit", type=int, default=500)
    parser.add_argument("--watchers", type=int, default=100, help="node-filtered watches in step 3")
    parser.add_argument("--listers", type=int, default=50, help="concurrent node-list clients in step 3")
    parser.add_argument("--phase-seconds", type=float, default=45.0, help="patching time per phase of step 3")
    parser.add_argument("--rate", type=float, default=20.0, help="patches per second in step 3 (half to watched nodes)")
    parser.add_argument("--gc-writes", type=int, default=60_000, help="patches in step 4")
    parser.add_argument("--json", default="", help="write the results here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    asyncio.run(run(args, results))
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if results.get("server_exit_code") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
