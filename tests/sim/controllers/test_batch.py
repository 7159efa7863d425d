"""The Job and CronJob controllers over real HTTP and through kubectl, and the cron schedule parser.

Pods never finish on their own in the simulator (the kubelet stand-in runs them forever), so tests finish a pod
the way a kubelet would report it: by writing its phase and terminated container states to pods/<name>/status.
CronJob tests run the registry on a controllable clock and nudge the controller by touching the CronJob.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from structlog.testing import capture_logs

from nodemeta.sim import SimServer, SimSettings
from nodemeta.sim.controllers.batch import (
    COMPLETION_INDEX,
    SCHEDULED_TIMESTAMP,
    TRACKING_FINALIZER,
    format_indexes,
    parse_indexes,
    parse_schedule,
)
from nodemeta.sim.registry import Registry
from nodemeta.sim.resources import stored_resources
from nodemeta.sim.store import Store
from tests.sim.wire import call, create

NS = "default"
PODS = f"/api/v1/namespaces/{NS}/pods"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
CRONJOBS = f"/apis/batch/v1/namespaces/{NS}/cronjobs"


def settings(*controllers: str) -> SimSettings:
    return SimSettings(seed=7, nodes=3, kubelet_stop_seconds=0.05, controllers=controllers)


async def settle(server: SimServer) -> None:
    async with asyncio.timeout(10):
        await server.settle()
    assert server.manager is not None and server.manager.errors == 0, "a reconcile raised"


async def get(api: aiohttp.ClientSession, path: str) -> dict[str, Any] | None:
    status, body, _ = await call(api, "GET", path)
    if status == 404:
        return None
    assert status == 200, body
    return body  # type: ignore[no-any-return]


async def must_get(api: aiohttp.ClientSession, path: str) -> dict[str, Any]:
    found = await get(api, path)
    assert found is not None, f"{path} not found"
    return found


async def items(api: aiohttp.ClientSession, path: str, **params: Any) -> list[dict[str, Any]]:
    status, body, _ = await call(api, "GET", path, **params)
    assert status == 200, body
    return body["items"]  # type: ignore[no-any-return]


async def eventually(check: Any, timeout: float = 10.0) -> Any:
    """Poll an async predicate until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.02)


def job(name: str, **spec: Any) -> dict[str, Any]:
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox:1.36"}]}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {"template": template, **spec}}


async def job_pods(api: aiohttp.ClientSession, name: str) -> list[dict[str, Any]]:
    return await items(api, PODS, labelSelector=f"batch.kubernetes.io/job-name={name}")


def phase(pod: dict[str, Any]) -> str:
    return str(pod["status"].get("phase"))


def active(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if phase(p) not in ("Succeeded", "Failed") and not p["metadata"].get("deletionTimestamp")]


async def finish_pod(api: aiohttp.ClientSession, pod: dict[str, Any], outcome: str = "Succeeded") -> None:
    """Report the pod's containers as exited, as its kubelet would: phase and terminated container states."""
    name = pod["metadata"]["name"]
    current = await must_get(api, f"{PODS}/{name}")
    exit_code = 0 if outcome == "Succeeded" else 1
    reason = "Completed" if outcome == "Succeeded" else "Error"
    status = current["status"]
    status["phase"] = outcome
    status["containerStatuses"] = [
        {
            "name": c["name"],
            "image": c["image"],
            "imageID": "",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {"terminated": {"exitCode": exit_code, "reason": reason}},
        }
        for c in current["spec"]["containers"]
    ]
    code, body, _ = await call(api, "PUT", f"{PODS}/{name}/status", current)
    assert code == 200, body


def conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions") or ()}


def kubectl_env(server: SimServer, home: Path) -> tuple[str, dict[str, str]]:
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.fail("kubectl is not installed: the kubectl tests need it on PATH")
    kubeconfig = server.write_kubeconfig(home / "kc")
    return binary, {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(home)}


async def kubectl(server: SimServer, home: Path, *args: str, timeout: float = 30) -> str:
    binary, env = kubectl_env(server, home)
    proc = await asyncio.create_subprocess_exec(
        binary, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, f"kubectl {' '.join(args)} exited {proc.returncode}: {err.decode()}"
    return out.decode()


# -- Job -------------------------------------------------------------------------------------------------------------


@pytest.fixture
async def running() -> AsyncIterator[SimServer]:
    """Jobs whose pods get scheduled and started."""
    async with SimServer(settings("job", "scheduler", "kubelet")) as sim:
        yield sim


@pytest.fixture
async def pending() -> AsyncIterator[SimServer]:
    """The Job controller alone: its pods stay Pending and unscheduled."""
    async with SimServer(settings("job", "garbagecollector")) as sim:
        yield sim


async def session(server: SimServer) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=server.url)


async def test_job_runs_parallelism_pods_until_completions_succeed(running: SimServer, tmp_path: Path) -> None:
    async with await session(running) as api:
        created = await create(api, JOBS, job("x", completions=3, parallelism=2))
        uid = created["metadata"]["uid"]

        async def two_ready() -> bool:
            pods = await job_pods(api, "x")
            return len(pods) == 2 and all(phase(p) == "Running" for p in pods)

        await eventually(two_ready)
        await settle(running)
        pods = await job_pods(api, "x")
        for pod in pods:
            meta = pod["metadata"]
            assert meta["generateName"] == "x-" and meta["name"].startswith("x-")
            assert meta["finalizers"] == [TRACKING_FINALIZER]
            assert meta["ownerReferences"] == [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "x", "uid": uid,
                 "controller": True, "blockOwnerDeletion": True}
            ]  # fmt: skip
            assert meta["labels"]["batch.kubernetes.io/controller-uid"] == uid
            assert meta["labels"]["job-name"] == "x"
            assert pod["spec"]["nodeName"]
        status = (await must_get(api, f"{JOBS}/x"))["status"]
        assert status["active"] == 2 and status["ready"] == 2 and status["terminating"] == 0
        assert status["startTime"] and status["uncountedTerminatedPods"] == {}
        assert "succeeded" not in status and "conditions" not in status

        wait = asyncio.create_task(
            kubectl(running, tmp_path, "wait", "--for=condition=complete", "job/x", "--timeout=20s")
        )
        await finish_pod(api, pods[0])
        await settle(running)
        pods = await job_pods(api, "x")
        assert len(pods) == 3 and len(active(pods)) == 2
        done = next(p for p in pods if phase(p) == "Succeeded")
        assert "finalizers" not in done["metadata"]
        status = (await must_get(api, f"{JOBS}/x"))["status"]
        assert status["succeeded"] == 1 and status["active"] == 2

        for pod in active(pods):
            await eventually(lambda name=pod["metadata"]["name"]: running_pod(api, name))
            await finish_pod(api, pod)
        out = await wait
        assert "job.batch/x condition met" in out
        await settle(running)
        finished = await must_get(api, f"{JOBS}/x")
        status = finished["status"]
        assert status["succeeded"] == 3 and "active" not in status and status["ready"] == 0
        assert status["completionTime"] and status["uncountedTerminatedPods"] == {}
        types = [c["type"] for c in status["conditions"]]
        assert types == ["SuccessCriteriaMet", "Complete"]
        complete = conditions(finished)["Complete"]
        assert complete["status"] == "True" and complete["reason"] == "CompletionsReached"
        assert complete["message"] == "Reached expected number of succeeded pods"
        pods = await job_pods(api, "x")
        assert len(pods) == 3 and all(phase(p) == "Succeeded" and "finalizers" not in p["metadata"] for p in pods)
        listing = await kubectl(running, tmp_path, "get", "job", "x")
        assert "Complete" in listing and "3/3" in listing


async def running_pod(api: aiohttp.ClientSession, name: str) -> bool:
    pod = await get(api, f"{PODS}/{name}")
    return pod is not None and phase(pod) == "Running"


async def test_job_fails_once_failures_exceed_the_backoff_limit(pending: SimServer) -> None:
    async with await session(pending) as api:
        await create(api, JOBS, job("fails", backoffLimit=1))
        await settle(pending)
        [first] = await job_pods(api, "fails")
        await finish_pod(api, first, "Failed")
        await settle(pending)
        pods = await job_pods(api, "fails")
        assert len(pods) == 2, "the failed pod is replaced"
        status = (await must_get(api, f"{JOBS}/fails"))["status"]
        assert status["failed"] == 1 and status["active"] == 1 and "conditions" not in status
        await finish_pod(api, active(pods)[0], "Failed")
        await settle(pending)
        failed = await must_get(api, f"{JOBS}/fails")
        status = failed["status"]
        assert [c["type"] for c in status["conditions"]] == ["FailureTarget", "Failed"]
        for type_ in ("FailureTarget", "Failed"):
            condition = conditions(failed)[type_]
            assert condition["status"] == "True" and condition["reason"] == "BackoffLimitExceeded"
            assert condition["message"] == "Job has reached the specified backoff limit"
        assert status["failed"] == 2 and "active" not in status and "completionTime" not in status
        pods = await job_pods(api, "fails")
        assert len(pods) == 2 and all(phase(p) == "Failed" and "finalizers" not in p["metadata"] for p in pods)


async def test_deleted_pods_count_as_failed_and_are_replaced(pending: SimServer) -> None:
    async with await session(pending) as api:
        await create(api, JOBS, job("replaced", backoffLimit=3))
        await settle(pending)
        [first] = await job_pods(api, "replaced")
        code, body, _ = await call(api, "DELETE", f"{PODS}/{first['metadata']['name']}")
        assert code == 200, body
        await settle(pending)
        pods = await job_pods(api, "replaced")
        assert [p["metadata"]["name"] for p in pods] != [first["metadata"]["name"]] and len(pods) == 1
        status = (await must_get(api, f"{JOBS}/replaced"))["status"]
        assert status["failed"] == 1 and status["active"] == 1


async def test_indexed_job_names_and_indexes(pending: SimServer) -> None:
    async with await session(pending) as api:
        await create(api, JOBS, job("ix", completions=3, parallelism=3, completionMode="Indexed"))
        await settle(pending)
        pods = await job_pods(api, "ix")
        by_index = {int(p["metadata"]["annotations"][COMPLETION_INDEX]): p for p in pods}
        assert sorted(by_index) == [0, 1, 2]
        for index, pod in by_index.items():
            meta = pod["metadata"]
            assert meta["generateName"] == f"ix-{index}-" and meta["name"].startswith(f"ix-{index}-")
            assert meta["labels"][COMPLETION_INDEX] == str(index)
            assert pod["spec"]["hostname"] == f"ix-{index}"
            [env] = pod["spec"]["containers"][0]["env"]
            assert env["name"] == "JOB_COMPLETION_INDEX"
            assert env["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.labels['{COMPLETION_INDEX}']"

        await finish_pod(api, by_index[1])
        await finish_pod(api, by_index[2], "Failed")
        await settle(pending)
        status = (await must_get(api, f"{JOBS}/ix"))["status"]
        assert status["completedIndexes"] == "1" and status["succeeded"] == 1 and status["failed"] == 1
        pods = await job_pods(api, "ix")
        assert sorted(p["metadata"]["annotations"][COMPLETION_INDEX] for p in active(pods)) == ["0", "2"]

        for pod in active(pods):
            await finish_pod(api, pod)
        await settle(pending)
        finished = await must_get(api, f"{JOBS}/ix")
        assert finished["status"]["completedIndexes"] == "0-2" and finished["status"]["succeeded"] == 3
        assert conditions(finished)["Complete"]["status"] == "True"


async def test_suspended_job_keeps_no_active_pods(pending: SimServer) -> None:
    async with await session(pending) as api:
        await create(api, JOBS, job("paused", completions=4, parallelism=2, suspend=True))
        await settle(pending)
        assert await job_pods(api, "paused") == []
        suspended = await must_get(api, f"{JOBS}/paused")
        assert "startTime" not in suspended["status"]
        condition = conditions(suspended)["Suspended"]
        assert (condition["status"], condition["reason"], condition["message"]) == (
            "True",
            "JobSuspended",
            "Job suspended",
        )

        await call(api, "PATCH", f"{JOBS}/paused", {"spec": {"suspend": False}}, ctype="application/merge-patch+json")
        await settle(pending)
        assert len(await job_pods(api, "paused")) == 2
        resumed = await must_get(api, f"{JOBS}/paused")
        assert resumed["status"]["startTime"] and resumed["status"]["active"] == 2
        assert (conditions(resumed)["Suspended"]["status"], conditions(resumed)["Suspended"]["reason"]) == (
            "False",
            "JobResumed",
        )

        await call(api, "PATCH", f"{JOBS}/paused", {"spec": {"suspend": True}}, ctype="application/merge-patch+json")
        await settle(pending)
        assert await job_pods(api, "paused") == []
        status = (await must_get(api, f"{JOBS}/paused"))["status"]
        assert "active" not in status and "failed" not in status, "pods removed by suspension are not failures"
        assert conditions({"status": status})["Suspended"]["status"] == "True"


async def test_active_deadline_fails_the_job(pending: SimServer) -> None:
    async with await session(pending) as api:
        await create(api, JOBS, job("slow", parallelism=2, completions=2, activeDeadlineSeconds=1))
        await settle(pending)
        assert len(await job_pods(api, "slow")) == 2

        async def failed() -> dict[str, Any] | None:
            found = await must_get(api, f"{JOBS}/slow")
            return found if "Failed" in conditions(found) else None

        finished = await eventually(failed, timeout=5)
        await settle(pending)
        assert conditions(finished)["Failed"]["reason"] == "DeadlineExceeded"
        assert conditions(finished)["FailureTarget"]["message"] == "Job was active longer than specified deadline"
        # The unscheduled pods were deleted (counted as failed) and, released by the controller, are gone.
        assert await job_pods(api, "slow") == []
        assert finished["status"]["failed"] == 2


async def test_pods_of_a_deleted_job_lose_their_tracking_finalizer(pending: SimServer) -> None:
    async with await session(pending) as api:
        await create(api, JOBS, job("orphaned", parallelism=2, completions=2))
        await create(api, JOBS, job("cascaded", parallelism=2, completions=2))
        await settle(pending)
        code, _, _ = await call(api, "DELETE", f"{JOBS}/orphaned")  # batch/v1 Jobs orphan their pods by default
        assert code == 200
        code, _, _ = await call(api, "DELETE", f"{JOBS}/cascaded", propagationPolicy="Background")
        assert code == 200
        await settle(pending)
        orphans = await job_pods(api, "orphaned")
        assert len(orphans) == 2
        for pod in orphans:
            assert "finalizers" not in pod["metadata"] and "ownerReferences" not in pod["metadata"]
        assert await job_pods(api, "cascaded") == []


async def test_failed_job_stops_its_running_pods_before_it_is_failed(running: SimServer) -> None:
    async with await session(running) as api:
        await create(api, JOBS, job("stop", completions=4, parallelism=2, backoffLimit=0))

        async def two_running() -> list[dict[str, Any]] | None:
            pods = await job_pods(api, "stop")
            return pods if len(pods) == 2 and all(phase(p) == "Running" for p in pods) else None

        pods = await eventually(two_running)
        await finish_pod(api, pods[0], "Failed")

        async def failed() -> dict[str, Any] | None:
            found = await must_get(api, f"{JOBS}/stop")
            return found if "Failed" in conditions(found) else None

        finished = await eventually(failed)
        await settle(running)
        status = finished["status"]
        assert [c["type"] for c in status["conditions"]] == ["FailureTarget", "Failed"]
        assert status["terminating"] == 0 and status["failed"] == 2 and "active" not in status
        # The running pod was stopped by its kubelet and, released by the controller, removed.
        assert [p["metadata"]["name"] for p in await job_pods(api, "stop")] == [pods[0]["metadata"]["name"]]


# -- CronJob ---------------------------------------------------------------------------------------------------------


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def minutes(text: str) -> int:
    return int(ts(text)) // 60


class FakeClock:
    """The registry's clock, moved by hand."""

    def __init__(self, start: str) -> None:
        self.now = ts(start)

    def __call__(self) -> float:
        return self.now

    def set(self, text: str) -> None:
        self.now = ts(text)


def cron_registry(clock: FakeClock) -> Registry:
    registry = Registry(Store(stored_resources(), SimSettings().history_limit), clock=clock, seed=7)
    registry.bootstrap()
    return registry


def cronjob(name: str, schedule: str, **spec: Any) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": name}, "annotations": {"team": "batch"}},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {"schedule": schedule, "jobTemplate": template, **spec},
    }


class Cron:
    """A simulator with only the CronJob controller, on a fake clock, and an HTTP session to it."""

    def __init__(self, server: SimServer, api: aiohttp.ClientSession, clock: FakeClock) -> None:
        self.server = server
        self.api = api
        self.clock = clock
        self._touches = 0

    async def at(self, when: str, name: str) -> None:
        """Move the clock and make the controller look at CronJob `name` (as a periodic resync would)."""
        self.clock.set(when)
        self._touches += 1
        body = {"metadata": {"annotations": {"test/touch": str(self._touches)}}}
        code, result, _ = await call(
            self.api, "PATCH", f"{CRONJOBS}/{name}", body, ctype="application/merge-patch+json"
        )
        assert code == 200, result
        await settle(self.server)

    async def jobs(self, app: str) -> list[str]:
        return sorted(j["metadata"]["name"] for j in await items(self.api, JOBS, labelSelector=f"app={app}"))

    async def cronjob(self, name: str) -> dict[str, Any]:
        return await must_get(self.api, f"{CRONJOBS}/{name}")

    async def finish_job(self, name: str, outcome: str, started: str, finished: str) -> None:
        """Write a Job's terminal status, as its Job controller would."""
        current = await must_get(self.api, f"{JOBS}/{name}")
        condition = {"type": outcome, "status": "True", "lastProbeTime": finished, "lastTransitionTime": finished}
        status: dict[str, Any] = {"startTime": started, "conditions": [condition]}
        if outcome == "Complete":
            status.update(succeeded=1, completionTime=finished)
        else:
            status["failed"] = 1
        current["status"] = status
        code, body, _ = await call(self.api, "PUT", f"{JOBS}/{name}/status", current)
        assert code == 200, body
        await settle(self.server)


async def cron(start: str, registry: Registry | None = None) -> tuple[SimServer, FakeClock, Registry]:
    clock = FakeClock(start)
    registry = registry or cron_registry(clock)
    return SimServer(SimSettings(seed=7, controllers=("cronjob",)), registry=registry), clock, registry


@pytest.fixture
async def clocked() -> AsyncIterator[Cron]:
    server, clock, _ = await cron("2025-01-10T09:00:10Z")
    async with server, aiohttp.ClientSession(base_url=server.url) as api:
        yield Cron(server, api, clock)


async def test_cronjob_creates_jobs_at_schedule_times(clocked: Cron, tmp_path: Path) -> None:
    created = await create(clocked.api, CRONJOBS, cronjob("every5", "*/5 * * * *"))
    await settle(clocked.server)
    assert await clocked.jobs("every5") == []
    await clocked.at("2025-01-10T09:04:59Z", "every5")
    assert await clocked.jobs("every5") == []

    await clocked.at("2025-01-10T09:05:10Z", "every5")
    first = f"every5-{minutes('2025-01-10T09:05:00Z')}"
    assert await clocked.jobs("every5") == [first]
    made = await must_get(clocked.api, f"{JOBS}/{first}")
    meta = made["metadata"]
    assert meta["annotations"] == {"team": "batch", SCHEDULED_TIMESTAMP: "2025-01-10T09:05:00Z"}
    assert meta["labels"] == {"app": "every5"}
    assert meta["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "CronJob", "name": "every5", "uid": created["metadata"]["uid"],
         "controller": True, "blockOwnerDeletion": True}
    ]  # fmt: skip
    assert made["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.36"
    status = (await clocked.cronjob("every5"))["status"]
    assert status["lastScheduleTime"] == "2025-01-10T09:05:00Z"
    assert status["active"] == [
        {"kind": "Job", "namespace": NS, "name": first, "uid": meta["uid"], "apiVersion": "batch/v1",
         "resourceVersion": meta["resourceVersion"]}
    ]  # fmt: skip

    await clocked.at("2025-01-10T09:12:00Z", "every5")
    second = f"every5-{minutes('2025-01-10T09:10:00Z')}"
    assert await clocked.jobs("every5") == [first, second]
    # Many missed runs: only the most recent one starts.
    await clocked.at("2025-01-10T10:31:00Z", "every5")
    latest = f"every5-{minutes('2025-01-10T10:30:00Z')}"
    assert await clocked.jobs("every5") == [first, second, latest]
    status = (await clocked.cronjob("every5"))["status"]
    assert status["lastScheduleTime"] == "2025-01-10T10:30:00Z" and len(status["active"]) == 3

    listing = await kubectl(clocked.server, tmp_path, "get", "cronjob", "every5", "--no-headers")
    # NAME, the five schedule fields, TIMEZONE, SUSPEND, ACTIVE, ...
    assert listing.split()[:9] == ["every5", "*/5", "*", "*", "*", "*", "<none>", "False", "3"]
    jobs = await kubectl(clocked.server, tmp_path, "get", "jobs", "-l", "app=every5", "-o", "name")
    assert sorted(jobs.split()) == [f"job.batch/{n}" for n in (first, second, latest)]


async def test_cronjob_runs_nothing_at_or_before_creation_and_catches_up_at_start() -> None:
    server, clock, registry = await cron("2025-01-10T09:00:00Z")
    res = next(r for r in stored_resources() if r.kind == "CronJob")
    registry.create(res, NS, cronjob("minutely", "* * * * *"))
    # The controller starts (as after a restart) once a schedule time has passed since the CronJob was created.
    clock.set("2025-01-10T09:01:20Z")
    async with server, aiohttp.ClientSession(base_url=server.url) as api:
        await settle(server)
        names = [j["metadata"]["name"] for j in await items(api, JOBS)]
        assert names == [f"minutely-{minutes('2025-01-10T09:01:00Z')}"]


async def test_cronjob_with_too_many_missed_runs_starts_only_the_latest(clocked: Cron) -> None:
    await create(clocked.api, CRONJOBS, cronjob("behind", "* * * * *"))
    with capture_logs() as logs:
        await clocked.at("2025-01-10T12:00:30Z", "behind")
    assert await clocked.jobs("behind") == [f"behind-{minutes('2025-01-10T12:00:00Z')}"]
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert any("too many missed start times" in entry["event"] for entry in warnings), logs


async def test_cronjob_requeues_itself_for_the_next_schedule_time(clocked: Cron) -> None:
    clocked.clock.set("2025-01-10T09:00:59.9Z")
    await create(clocked.api, CRONJOBS, cronjob("timer", "* * * * *"))
    await settle(clocked.server)
    assert await clocked.jobs("timer") == []
    # The controller asked to be woken ~0.2 s (real time) from now; by then the fake minute has turned.
    clocked.clock.set("2025-01-10T09:01:00.5Z")
    await eventually(lambda: clocked.jobs("timer"), timeout=3)
    assert await clocked.jobs("timer") == [f"timer-{minutes('2025-01-10T09:01:00Z')}"]


async def test_cronjob_starting_deadline_skips_late_runs(clocked: Cron) -> None:
    await create(clocked.api, CRONJOBS, cronjob("strict", "* * * * *", startingDeadlineSeconds=30))
    await clocked.at("2025-01-10T09:03:45Z", "strict")
    assert await clocked.jobs("strict") == [], "09:03 is 45 s late, past the 30 s deadline"
    await clocked.at("2025-01-10T09:04:10Z", "strict")
    assert await clocked.jobs("strict") == [f"strict-{minutes('2025-01-10T09:04:00Z')}"]


async def test_cronjob_forbid_skips_while_a_job_is_active(clocked: Cron) -> None:
    await create(clocked.api, CRONJOBS, cronjob("single", "* * * * *", concurrencyPolicy="Forbid"))
    await clocked.at("2025-01-10T09:01:05Z", "single")
    first = f"single-{minutes('2025-01-10T09:01:00Z')}"
    assert await clocked.jobs("single") == [first]
    await clocked.at("2025-01-10T09:02:05Z", "single")
    await clocked.at("2025-01-10T09:02:20Z", "single")
    assert await clocked.jobs("single") == [first]
    status = (await clocked.cronjob("single"))["status"]
    assert status["lastScheduleTime"] == "2025-01-10T09:01:00Z" and len(status["active"]) == 1

    # Once the active Job completes, the skipped 09:02 run (still unrun, no deadline) starts, as in kube.
    await clocked.finish_job(first, "Complete", "2025-01-10T09:01:05Z", "2025-01-10T09:02:30Z")
    second = f"single-{minutes('2025-01-10T09:02:00Z')}"
    assert await clocked.jobs("single") == [first, second]
    status = (await clocked.cronjob("single"))["status"]
    assert status["lastSuccessfulTime"] == "2025-01-10T09:02:30Z"
    assert [ref["name"] for ref in status["active"]] == [second]


async def test_cronjob_replace_deletes_the_active_job(clocked: Cron) -> None:
    await create(clocked.api, CRONJOBS, cronjob("latest", "* * * * *", concurrencyPolicy="Replace"))
    await clocked.at("2025-01-10T09:01:05Z", "latest")
    first = f"latest-{minutes('2025-01-10T09:01:00Z')}"
    assert await clocked.jobs("latest") == [first]
    await clocked.at("2025-01-10T09:02:05Z", "latest")
    second = f"latest-{minutes('2025-01-10T09:02:00Z')}"
    assert await clocked.jobs("latest") == [second]
    status = (await clocked.cronjob("latest"))["status"]
    assert [ref["name"] for ref in status["active"]] == [second]


async def test_cronjob_history_limits_delete_the_oldest_finished_jobs(clocked: Cron) -> None:
    spec = {"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1}
    await create(clocked.api, CRONJOBS, cronjob("hist", "* * * * *", **spec))
    names = []
    for minute, outcome in ((1, "Complete"), (2, "Complete"), (3, "Failed"), (4, "Failed")):
        scheduled = f"2025-01-10T09:{minute:02d}:00Z"
        await clocked.at(f"2025-01-10T09:{minute:02d}:05Z", "hist")
        name = f"hist-{minutes(scheduled)}"
        names.append(name)
        await clocked.finish_job(name, outcome, f"2025-01-10T09:{minute:02d}:05Z", f"2025-01-10T09:{minute:02d}:30Z")
    assert await clocked.jobs("hist") == [names[1], names[3]]
    status = (await clocked.cronjob("hist"))["status"]
    assert "active" not in status
    assert status["lastSuccessfulTime"] == "2025-01-10T09:02:30Z"
    assert status["lastScheduleTime"] == "2025-01-10T09:04:00Z"


async def test_suspended_cronjob_creates_nothing(clocked: Cron) -> None:
    await create(clocked.api, CRONJOBS, cronjob("held", "* * * * *", suspend=True))
    await clocked.at("2025-01-10T09:03:10Z", "held")
    await clocked.at("2025-01-10T09:05:10Z", "held")
    assert await clocked.jobs("held") == []
    assert "lastScheduleTime" not in (await clocked.cronjob("held")).get("status", {})
    code, body, _ = await call(
        clocked.api, "PATCH", f"{CRONJOBS}/held", {"spec": {"suspend": False}}, ctype="application/merge-patch+json"
    )
    assert code == 200, body
    await settle(clocked.server)
    assert await clocked.jobs("held") == [f"held-{minutes('2025-01-10T09:05:00Z')}"]


async def test_cronjob_time_zone(clocked: Cron) -> None:
    clocked.clock.set("2025-01-10T07:00:00Z")
    await create(clocked.api, CRONJOBS, cronjob("berlin", "30 9 * * *", timeZone="Europe/Berlin"))
    await clocked.at("2025-01-10T08:29:50Z", "berlin")
    assert await clocked.jobs("berlin") == []
    await clocked.at("2025-01-10T08:30:10Z", "berlin")
    [name] = await clocked.jobs("berlin")
    assert name == f"berlin-{minutes('2025-01-10T08:30:00Z')}"
    made = await must_get(clocked.api, f"{JOBS}/{name}")
    assert made["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2025-01-10T09:30:00+01:00"
    assert (await clocked.cronjob("berlin"))["status"]["lastScheduleTime"] == "2025-01-10T08:30:00Z"


# -- the cron parser -------------------------------------------------------------------------------------------------


def next_time(expr: str, after: str, zone: str = "UTC") -> str | None:
    found = parse_schedule(expr).next_after(ts(after), ZoneInfo(zone))
    return None if found is None else datetime.fromtimestamp(found, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def latest_time(expr: str, at: str) -> str | None:
    found = parse_schedule(expr).latest_at_or_before(ts(at))
    return None if found is None else datetime.fromtimestamp(found, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("* * * * *", "2025-01-10T09:00:00Z", "2025-01-10T09:01:00Z"),
        ("* * * * *", "2025-01-10T09:00:59Z", "2025-01-10T09:01:00Z"),
        ("*/15 * * * *", "2025-01-10T09:07:00Z", "2025-01-10T09:15:00Z"),
        ("*/15 * * * *", "2025-01-10T09:45:00Z", "2025-01-10T10:00:00Z"),
        ("0 9-17/2 * * *", "2025-01-10T09:00:00Z", "2025-01-10T11:00:00Z"),
        ("0 9-17/2 * * *", "2025-01-10T17:00:00Z", "2025-01-11T09:00:00Z"),
        ("5,10,50 1 * * *", "2025-01-10T01:10:00Z", "2025-01-10T01:50:00Z"),
        ("5/20 * * * *", "2025-01-10T09:26:00Z", "2025-01-10T09:45:00Z"),
        ("10-20 3 * * *", "2025-01-10T03:20:00Z", "2025-01-11T03:10:00Z"),
        # Day of week (2025-01-10 is a Friday): numbers, names, 7 as Sunday.
        ("0 0 * * 1", "2025-01-10T12:00:00Z", "2025-01-13T00:00:00Z"),
        ("0 0 * * sun", "2025-01-10T12:00:00Z", "2025-01-12T00:00:00Z"),
        ("0 0 * * 7", "2025-01-10T12:00:00Z", "2025-01-12T00:00:00Z"),
        ("0 8 * * mon-fri", "2025-01-10T09:00:00Z", "2025-01-13T08:00:00Z"),
        # Day of month and day of week both restricted: either matches.
        ("0 0 13 * 5", "2025-01-10T12:00:00Z", "2025-01-13T00:00:00Z"),
        ("0 0 20 * 5", "2025-01-10T12:00:00Z", "2025-01-17T00:00:00Z"),
        # Month boundaries and lengths.
        ("0 0 31 * *", "2025-01-31T12:00:00Z", "2025-03-31T00:00:00Z"),
        ("0 0 1 * *", "2025-12-15T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("59 23 28-31 2 *", "2025-02-28T23:59:00Z", "2026-02-28T23:59:00Z"),
        ("0 0 29 2 *", "2025-01-01T00:00:00Z", "2028-02-29T00:00:00Z"),
        ("0 0 1 jan-jun/2 *", "2025-01-01T00:00:00Z", "2025-03-01T00:00:00Z"),
        ("0 0 1 JAN,Oct *", "2025-02-01T00:00:00Z", "2025-10-01T00:00:00Z"),
        ("@hourly", "2025-01-10T09:30:00Z", "2025-01-10T10:00:00Z"),
        ("@daily", "2025-01-10T09:30:00Z", "2025-01-11T00:00:00Z"),
        ("@weekly", "2025-01-10T09:30:00Z", "2025-01-12T00:00:00Z"),
        ("@yearly", "2025-01-10T09:30:00Z", "2026-01-01T00:00:00Z"),
        ("0 0 30 2 *", "2025-01-01T00:00:00Z", None),
    ],
)
def test_cron_next_time(expr: str, after: str, expected: str | None) -> None:
    assert next_time(expr, after) == expected


def test_cron_in_a_time_zone_follows_daylight_saving() -> None:
    assert next_time("0 9 * * *", "2025-01-10T12:00:00Z", "Europe/Berlin") == "2025-01-11T08:00:00Z"
    assert next_time("0 9 * * *", "2025-07-10T12:00:00Z", "Europe/Berlin") == "2025-07-11T07:00:00Z"
    # 2025-03-30 02:30 does not exist in Berlin; the run after it is still the next day's.
    assert next_time("30 2 * * *", "2025-03-30T03:00:00Z", "Europe/Berlin") == "2025-03-31T00:30:00Z"


@pytest.mark.parametrize(
    ("expr", "at", "expected"),
    [
        ("*/15 * * * *", "2025-01-10T09:14:59Z", "2025-01-10T09:00:00Z"),
        ("*/15 * * * *", "2025-01-10T09:15:00Z", "2025-01-10T09:15:00Z"),
        ("0 0 31 * *", "2025-03-15T00:00:00Z", "2025-01-31T00:00:00Z"),
        ("0 12 * * 1", "2025-01-10T00:00:00Z", "2025-01-06T12:00:00Z"),
        ("30 23 * * *", "2025-01-01T00:00:00Z", "2024-12-31T23:30:00Z"),
    ],
)
def test_cron_latest_time(expr: str, at: str, expected: str) -> None:
    assert latest_time(expr, at) == expected


@pytest.mark.parametrize(
    "expr",
    ["* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "*/0 * * * *",
     "5-1 * * * *", "abc * * * *", "* * * * funday", "1-/2 * * * *", ""],
)  # fmt: skip
def test_cron_rejects_invalid_schedules(expr: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(expr)


def test_completed_indexes_round_trip() -> None:
    assert format_indexes([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert format_indexes([]) == ""
    assert parse_indexes("0-2,5,7-8", 8) == {0, 1, 2, 5, 7}
