"""The batch controllers of kube-controller-manager: Job and CronJob, with the cron schedule parser they need.

The Job controller runs a Job's pods to completion the way the real one shows it to clients:

* pods are created from `spec.template` with `generateName: <job>-` (Indexed: `<job>-<index>-`, the completion
  index as annotation, label, `JOB_COMPLETION_INDEX` env var and hostname), a controller ownerReference and the
  `batch.kubernetes.io/job-tracking` finalizer; up to `parallelism` pods are active until `completions` succeeded;
* a pod's outcome is its `status.phase` (a pod being deleted before it succeeded counts as failed). Finished pods
  are counted with the real two-step protocol: their uids go to `status.uncountedTerminatedPods`, the tracking
  finalizer is removed, then the counters `succeeded`/`failed` (Indexed: `completedIndexes`) take them over.
  Finished pods themselves are kept, as the real controller keeps them;
* conditions: `SuccessCriteriaMet` then `Complete` (with `completionTime`), or `FailureTarget` then `Failed` once
  the failures exceed `backoffLimit` or the Job ran longer than `activeDeadlineSeconds`; the terminal condition
  waits until no pod of the Job is still terminating. `suspend` deletes the active pods (uncounted) and records
  the `Suspended` condition; resuming resets `startTime`.

Not modelled: pod failure policies, `backoffLimitPerIndex`, success policies, `podReplacementPolicy: Failed`, the
exponential delay before replacing failed pods, restart counting for `restartPolicy: OnFailure`, adoption of
matching pods without an ownerReference, events.

The CronJob controller creates `<cronjob>-<scheduled minutes since the epoch>` Jobs from `spec.jobTemplate` at the
times of the 5-field cron `spec.schedule` in `spec.timeZone` (UTC by default), applying `concurrencyPolicy`,
`suspend`, `startingDeadlineSeconds` and the two history limits, and keeps `status.active`,
`lastScheduleTime` and `lastSuccessfulTime`. Time is `registry.clock()`; the next run is a `Requeue`.

Both controllers index what they own from the store's changes (pods by their Job's uid, Jobs by their CronJob's
uid), so a reconcile looks only at one owner's objects and never lists the cluster.
"""

from __future__ import annotations

import calendar
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import structlog

from nodemeta.sim.controllers.base import Controller, Factory, Requeue
from nodemeta.sim.errors import APIError
from nodemeta.sim.registry import DeleteOptions, Registry, rfc3339
from nodemeta.sim.resources import JSON, ResourceType, lookup
from nodemeta.sim.settings import SimSettings
from nodemeta.sim.store import DELETED, Change, Stored

log = structlog.get_logger("nodemeta.sim.controllers.batch")


def _resource(group: str, plural: str) -> ResourceType:
    found = lookup(group, "v1", plural)
    if found is None:
        raise LookupError(f"{plural}.{group}/v1 is not served")
    return found


PODS = _resource("", "pods")
JOBS = _resource("batch", "jobs")
CRONJOBS = _resource("batch", "cronjobs")

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
# kube-controller-manager's MaxPodCreateDeletePerSync and MaxUncountedPods: bounds on the work of one sync.
MAX_POD_CHANGES_PER_SYNC = 500
MAX_UNCOUNTED_PODS = 500
# apiserver's names.MaxGeneratedNameLength: a generateName prefix is cut to this before the random suffix.
MAX_GENERATED_NAME_LENGTH = 58
# The CronJob controller wakes this long after a schedule time (nextScheduleDelta), so the time has surely passed.
NEXT_SCHEDULE_DELTA = 0.1
# More missed schedule times than this since the last run are reported as a problem, and only the latest runs.
TOO_MANY_MISSED = 100

SYNC = "sync"
RELEASE = "release"

_JOB_OWNED_MARK = b'"kind":"Job"'
_CRONJOB_OWNED_MARK = b'"kind":"CronJob"'
_TRACKING_MARK = TRACKING_FINALIZER.encode()
_TERMINAL = frozenset({"Succeeded", "Failed"})


# -- shared helpers ----------------------------------------------------------------------------------------------


def parse_time(value: Any) -> float | None:
    """An RFC 3339 timestamp as seconds since the epoch (None when absent or malformed)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def controller_uid(meta: JSON, kind: str) -> str | None:
    """The uid of the batch/v1 `kind` that controls the object, from its ownerReferences."""
    for ref in meta.get("ownerReferences") or ():
        if (
            isinstance(ref, dict)
            and ref.get("controller") is True
            and ref.get("kind") == kind
            and str(ref.get("apiVersion") or "").startswith("batch/")
        ):
            return str(ref.get("uid") or "") or None
    return None


def controller_ref(owner: Stored, kind: str) -> JSON:
    return {
        "apiVersion": "batch/v1",
        "kind": kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def condition_true(status: JSON, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in status.get("conditions") or ())


def job_finished(status: JSON) -> str | None:
    """ "Complete" or "Failed" once the Job has that terminal condition, as `IsJobFinished` decides."""
    for type_ in ("Complete", "Failed"):
        if condition_true(status, type_):
            return type_
    return None


def _fresh(value: Any) -> Any:
    """A deep copy, so that a body handed to the registry shares nothing with what this controller keeps."""
    return orjson.loads(orjson.dumps(value))


def _set_count(status: JSON, field: str, value: int) -> None:
    """Counters the API omits when zero (`omitempty` on a plain int32)."""
    if value:
        status[field] = value
    else:
        status.pop(field, None)


# -- the cron schedule ---------------------------------------------------------------------------------------------

_MONTH_NAMES = {name: i for i, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {name: (i + 1) % 7 for i, name in enumerate(calendar.day_abbr)}
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# A schedule with no time in this many years never fires (robfig/cron's search limit).
_SEARCH_YEARS = 5


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day of month", 1, 31, {}),
    _Field("month", 1, 12, {k.lower(): v for k, v in _MONTH_NAMES.items()}),
    # 7 is accepted for Sunday too, as most crons do.
    _Field("day of week", 0, 7, {k.lower(): v for k, v in _DAY_NAMES.items()}),
)


def _field_value(text: str, field: _Field) -> int:
    named = field.names.get(text.lower())
    if named is not None:
        return named
    if not text.isdigit():
        raise ValueError(f"failed to parse {field.name} value {text!r}")
    return int(text)


def _parse_field(text: str, field: _Field) -> tuple[frozenset[int], bool]:
    """The values a field allows, and whether it is unrestricted (`*` or `?` without a step)."""
    values: set[int] = set()
    star = False
    for part in text.split(","):
        range_text, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"invalid step {step_text!r} in {field.name} {part!r}")
            step = int(step_text)
        if range_text in ("*", "?"):
            low, high = field.low, field.high
            star = star or step == 1
        else:
            first, dash, last = range_text.partition("-")
            low = _field_value(first, field)
            # "N/step" means from N to the field's maximum, as robfig/cron reads it.
            high = _field_value(last, field) if dash else (field.high if step_text else low)
        if low < field.low or high > field.high:
            raise ValueError(f"{field.name} {part!r} is outside {field.low}-{field.high}")
        if low > high:
            raise ValueError(f"{field.name} range {part!r} starts after it ends")
        values.update(range(low, high + 1, step))
    if field.name == "day of week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values), star


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed standard cron schedule, evaluated in wall-clock time of a time zone (as robfig/cron does)."""

    minutes: tuple[int, ...]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    def day_matches(self, moment: datetime) -> bool:
        """Day of month and day of week: both must match when either is `*`, otherwise either may."""
        day_ok = moment.day in self.days
        weekday_ok = (moment.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def next_after(self, ts: float, zone: tzinfo = UTC) -> float | None:
        """The first schedule time strictly after `ts` (None if there is none within five years)."""
        moment = _wall(ts, zone) + timedelta(minutes=1)
        limit = moment.year + _SEARCH_YEARS
        while moment.year <= limit:
            if moment.month not in self.months:
                moment = _month_start(moment.year, moment.month + 1)
            elif not self.day_matches(moment):
                moment = moment.replace(hour=0, minute=0) + timedelta(days=1)
            elif moment.hour not in self.hours:
                moment = moment.replace(minute=0) + timedelta(hours=1)
            else:
                minute = next((m for m in self.minutes if m >= moment.minute), None)
                if minute is None:
                    moment = moment.replace(minute=0) + timedelta(hours=1)
                    continue
                moment = moment.replace(minute=minute)
                found = moment.replace(tzinfo=zone).timestamp()
                if found > ts:
                    return found
                moment += timedelta(minutes=1)
        return None

    def latest_at_or_before(self, ts: float, zone: tzinfo = UTC) -> float | None:
        """The last schedule time at or before `ts` (None if there is none within five years)."""
        moment = _wall(ts, zone)
        limit = moment.year - _SEARCH_YEARS
        while moment.year >= limit:
            if moment.month not in self.months:
                moment = _month_start(moment.year, moment.month) - timedelta(minutes=1)
            elif not self.day_matches(moment):
                moment = moment.replace(hour=0, minute=0) - timedelta(minutes=1)
            elif moment.hour not in self.hours:
                moment = moment.replace(minute=0) - timedelta(minutes=1)
            else:
                minute = next((m for m in reversed(self.minutes) if m <= moment.minute), None)
                if minute is None:
                    moment = moment.replace(minute=0) - timedelta(minutes=1)
                    continue
                moment = moment.replace(minute=minute)
                found = moment.replace(tzinfo=zone).timestamp()
                if found <= ts:
                    return found
                moment -= timedelta(minutes=1)
        return None

    def times(self, after: float, until: float, zone: tzinfo = UTC) -> Iterator[float]:
        """Schedule times in (after, until], oldest first."""
        current = self.next_after(after, zone)
        while current is not None and current <= until:
            yield current
            current = self.next_after(current, zone)


def _wall(ts: float, zone: tzinfo) -> datetime:
    """The wall-clock minute containing `ts` in `zone`, as a naive datetime."""
    return datetime.fromtimestamp(ts, zone).replace(tzinfo=None, second=0, microsecond=0)


def _month_start(year: int, month: int) -> datetime:
    if month > 12:
        year, month = year + 1, 1
    return datetime(year, month, 1)


def parse_schedule(text: str) -> CronSchedule:
    """Parse `minute hour day-of-month month day-of-week` (or an @descriptor); ValueError says what is wrong."""
    spec = _DESCRIPTORS.get(text.strip().lower(), text)
    parts = spec.split()
    if len(parts) != len(_FIELDS):
        raise ValueError(f"expected exactly 5 fields, found {len(parts)}: {text!r}")
    (minutes, _), (hours, _), (days, any_day), (months, _), (weekdays, any_weekday) = (
        _parse_field(part, field) for part, field in zip(parts, _FIELDS, strict=True)
    )
    return CronSchedule(tuple(sorted(minutes)), hours, days, months, weekdays, any_day, any_weekday)


def time_zone(name: str | None) -> tzinfo:
    """The IANA zone named (UTC when unset); ValueError for an unknown name."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown time zone {name!r}") from err


def rfc3339_in(ts: float, zone: tzinfo) -> str:
    """Go's time.RFC3339 rendering in `zone`: `Z` for UTC, a numeric offset otherwise."""
    text = datetime.fromtimestamp(int(ts), zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# -- Job: what the controller knows of each pod ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodView:
    """What the Job controller needs of one pod, taken once per change of the pod (a sync reads every pod of its
    Job several times, so the derived states are plain fields)."""

    key: str
    name: str
    namespace: str
    uid: str
    job_uid: str | None
    phase: str
    deleting: bool
    tracking: bool
    ready: bool
    scheduled: bool
    index: int | None
    created: str
    # Neither finished nor being deleted.
    active: bool
    # Being deleted and not finished yet.
    terminating: bool
    # Failed, or deleted before succeeding (an orphan may never reach the Failed phase).
    failed: bool


def pod_view(stored: Stored) -> PodView:
    pod = stored.decode()
    meta = pod["metadata"]
    status = pod.get("status") or {}
    phase = str(status.get("phase") or "")
    deleting = bool(meta.get("deletionTimestamp"))
    terminal = phase in _TERMINAL
    return PodView(
        key=stored.key,
        name=stored.name,
        namespace=stored.namespace,
        uid=stored.uid,
        job_uid=controller_uid(meta, "Job"),
        phase=phase,
        deleting=deleting,
        tracking=TRACKING_FINALIZER in (meta.get("finalizers") or ()),
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()),
        scheduled=bool((pod.get("spec") or {}).get("nodeName")),
        index=completion_index(meta),
        created=str(meta.get("creationTimestamp") or ""),
        active=not terminal and not deleting,
        terminating=deleting and not terminal,
        failed=phase == "Failed" or (deleting and phase != "Succeeded"),
    )


def completion_index(meta: JSON) -> int | None:
    value = (meta.get("annotations") or {}).get(COMPLETION_INDEX)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def format_indexes(indexes: Iterable[int]) -> str:
    """A set of completion indexes as the API writes `completedIndexes`: "0,2-4,7"."""
    ordered = sorted(set(indexes))
    runs: list[str] = []
    start = 0
    while start < len(ordered):
        end = start
        while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
            end += 1
        first, last = ordered[start], ordered[end]
        runs.append(str(first) if first == last else f"{first}-{last}")
        start = end + 1
    return ",".join(runs)


def parse_indexes(text: Any, limit: int) -> set[int]:
    """`completedIndexes` read back, keeping only indexes below `limit` (the current completions)."""
    out: set[int] = set()
    if not isinstance(text, str):
        return out
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            continue
        out.update(i for i in range(int(first), int(last if dash else first) + 1) if i < limit)
    return out


def _removal_order(pods: list[PodView]) -> list[PodView]:
    """Pods in the order the real controller gives them up: unscheduled, pending, not ready, newest first."""
    newest_first = sorted(pods, key=lambda p: (p.created, p.name), reverse=True)
    return sorted(newest_first, key=lambda p: (p.scheduled, p.phase == "Running", p.ready))


@dataclass(frozen=True, slots=True)
class JobSpec:
    """The parts of a Job's spec that drive its pods."""

    parallelism: int
    completions: int | None
    backoff_limit: int
    indexed: bool
    suspend: bool
    deadline: int | None

    @classmethod
    def of(cls, job: JSON) -> JobSpec:
        spec = job.get("spec") or {}
        return cls(
            parallelism=_int_or(spec.get("parallelism"), 1) or 0,
            completions=_int_or(spec.get("completions"), None),
            backoff_limit=_int_or(spec.get("backoffLimit"), 6) or 0,
            indexed=spec.get("completionMode") == "Indexed",
            suspend=spec.get("suspend") is True,
            deadline=_int_or(spec.get("activeDeadlineSeconds"), None),
        )


def _int_or(value: Any, default: int | None) -> int | None:
    return int(value) if isinstance(value, int | float | str) and str(value).lstrip("-").isdigit() else default


@dataclass(frozen=True, slots=True)
class Finish:
    """How a Job ends: the interim condition written first and the terminal one written once pods are gone."""

    interim: str
    final: str
    reason: str
    message: str


SUCCESS = Finish("SuccessCriteriaMet", "Complete", "CompletionsReached", "Reached expected number of succeeded pods")
BACKOFF_LIMIT = Finish("FailureTarget", "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE = Finish("FailureTarget", "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")


def _existing_finish(status: JSON) -> Finish | None:
    """The finish already decided in an earlier sync (its interim condition is recorded)."""
    if condition_true(status, SUCCESS.interim):
        return SUCCESS
    for condition in status.get("conditions") or ():
        if condition.get("type") == "FailureTarget" and condition.get("status") == "True":
            return Finish(
                "FailureTarget", "Failed", str(condition.get("reason") or ""), str(condition.get("message") or "")
            )
    return None


def ensure_condition(status: JSON, type_: str, value: str, reason: str, message: str, now: str) -> bool:
    """Set or add a Job condition as `ensureJobConditionStatus` does (never adds one that is False)."""
    conditions: list[JSON] = status.setdefault("conditions", [])
    wanted = {"type": type_, "status": value, "lastProbeTime": now, "lastTransitionTime": now,
              "reason": reason, "message": message}  # fmt: skip
    for i, condition in enumerate(conditions):
        if condition.get("type") == type_:
            if (condition.get("status"), condition.get("reason"), condition.get("message")) == (value, reason, message):
                return False
            conditions[i] = wanted
            return True
    if value == "False":
        if not conditions:
            status.pop("conditions")
        return False
    conditions.append(wanted)
    return True


# -- Job controller --------------------------------------------------------------------------------------------------


class JobController(Controller):
    name = "job"
    watches = (JOBS.storage_name, PODS.storage_name)

    def __init__(self, registry: Registry, settings: SimSettings) -> None:
        super().__init__(registry, settings)
        # Job uid -> key of every Job that exists.
        self._job_keys: dict[str, str] = {}
        # Job uid -> pod key -> what is known of that pod; and pod key -> the Job uid it is filed under.
        self._pods: dict[str, dict[str, PodView]] = {}
        self._pod_job: dict[str, str] = {}

    # -- observing ------------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[Hashable]:
        keys: list[Hashable] = []
        for job in self.registry.iter_objects(JOBS):
            self._job_keys[job.uid] = job.key
            keys.append((SYNC, job.key))
        for stored in self.registry.iter_objects(PODS):
            keys.extend(self._pod_changed(stored.key, stored))
        return keys

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == JOBS.storage_name:
            return self._job_changed(change)
        return self._pod_changed(change.key, None if change.type == DELETED else change.obj)

    def _job_changed(self, change: Change) -> list[Hashable]:
        uid = change.obj.uid
        if change.type != DELETED:
            self._job_keys[uid] = change.key
            return [(SYNC, change.key)]
        self._job_keys.pop(uid, None)
        # Pods the Job still tracked lose their owner: their finalizers must go or they would never be removed.
        return [(RELEASE, pod.key) for pod in self._pods.get(uid, {}).values() if pod.tracking]

    def _pod_changed(self, key: str, stored: Stored | None) -> list[Hashable]:
        previous = self._forget_pod(key)
        keys: list[Hashable] = []
        if previous is not None and previous in self._job_keys:
            keys.append((SYNC, self._job_keys[previous]))
        if stored is None or (_JOB_OWNED_MARK not in stored.body and _TRACKING_MARK not in stored.body):
            return keys
        view = pod_view(stored)
        if view.job_uid is not None:
            self._pods.setdefault(view.job_uid, {})[key] = view
            self._pod_job[key] = view.job_uid
            job_key = self._job_keys.get(view.job_uid)
            if job_key is not None and view.job_uid != previous:
                keys.append((SYNC, job_key))
        if view.tracking and (view.job_uid is None or view.job_uid not in self._job_keys):
            keys.append((RELEASE, key))
        return keys

    def _forget_pod(self, key: str) -> str | None:
        job_uid = self._pod_job.pop(key, None)
        if job_uid is not None:
            pods = self._pods[job_uid]
            pods.pop(key, None)
            if not pods:
                del self._pods[job_uid]
        return job_uid

    def pods_of(self, job_uid: str) -> list[PodView]:
        return list(self._pods.get(job_uid, {}).values())

    # -- reconcile ------------------------------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> Requeue | None:
        assert isinstance(key, tuple)
        work, target = key
        if work == RELEASE:
            self._release_orphan(target)
            return None
        stored = self.registry.bucket(JOBS).get(target)
        if stored is None:
            return None
        return JobSync(self, stored).run()

    def _release_orphan(self, pod_key: str) -> None:
        """Remove the tracking finalizer of a pod whose Job is gone (deleted, or the pod was orphaned)."""
        stored = self.registry.bucket(PODS).get(pod_key)
        if stored is None:
            return
        view = pod_view(stored)
        if view.tracking and (view.job_uid is None or view.job_uid not in self._job_keys):
            self.remove_finalizer(view)

    # -- writes ---------------------------------------------------------------------------------------------

    def remove_finalizer(self, pod: PodView) -> None:
        """Drop the tracking finalizer: a PUT of the pod as read, conditional on its revision. (The real controller
        sends a patch; the result and its watch event are the same, and a PUT spares the patch machinery, which
        matters when a large Job finishes.)"""
        current = self.registry.bucket(PODS).get(pod.key)
        if current is None or current.uid != pod.uid:
            return
        obj = current.decode()
        meta = obj["metadata"]
        finalizers = meta.get("finalizers") or []
        kept = [f for f in finalizers if f != TRACKING_FINALIZER]
        if len(kept) == len(finalizers):
            return
        if kept:
            meta["finalizers"] = kept
        else:
            meta.pop("finalizers", None)
        meta["resourceVersion"] = str(current.rv)
        self.registry.update(PODS, pod.namespace, pod.name, obj)

    def delete_pod(self, pod: PodView) -> None:
        try:
            self.registry.delete(PODS, pod.namespace, pod.name, DeleteOptions(uid=pod.uid))
        except APIError as err:
            if err.code not in (404, 409):
                raise


class JobSync:
    """One sync of one Job (`syncJob`): count finished pods, decide the outcome, keep the right pods running."""

    def __init__(self, controller: JobController, stored: Stored) -> None:
        self.ctl = controller
        self.registry = controller.registry
        self.stored = stored
        self.job = stored.decode()
        self.spec = JobSpec.of(self.job)
        self.status: JSON = self.job.setdefault("status", {})
        self.deleting = bool(self.job["metadata"].get("deletionTimestamp"))
        self.clock = self.registry.clock()
        self.now = rfc3339(self.clock)
        uncounted = self.status.get("uncountedTerminatedPods") or {}
        self.uncounted_succeeded: list[str] = list(uncounted.get("succeeded") or [])
        self.uncounted_failed: list[str] = list(uncounted.get("failed") or [])
        self.completed: set[int] = set()

    def run(self) -> Requeue | None:
        if job_finished(self.status):
            return None
        pods = self.ctl.pods_of(self.stored.uid)
        requeue: Requeue | None = None
        if not self.status.get("startTime") and not self.spec.suspend:
            self.status["startTime"] = self.now
        finish = _existing_finish(self.status)
        if finish is None:
            finish, requeue = self._failure(pods)
        if self.spec.indexed:
            self.completed = self._succeeded_indexes(pods)
        if finish is not None:
            active = [p for p in pods if p.active]
            for pod in active:
                self.ctl.delete_pod(pod)
        elif not self.deleting:
            self._manage(pods)
            pods = self.ctl.pods_of(self.stored.uid)
            if self._complete(pods):
                finish = SUCCESS
            else:
                self._suspension()
        self._track(self.ctl.pods_of(self.stored.uid), finish)
        return requeue

    # -- deciding ---------------------------------------------------------------------------------------------

    def _failure(self, pods: list[PodView]) -> tuple[Finish | None, Requeue | None]:
        """Whether the Job has failed (backoff limit, deadline); else when to look at the deadline again."""
        counted = {*self.uncounted_succeeded, *self.uncounted_failed}
        new_failed = sum(1 for p in pods if p.tracking and p.uid not in counted and p.failed and self._valid(p))
        failed = int(self.status.get("failed") or 0) + len(self.uncounted_failed) + new_failed
        if failed > self.spec.backoff_limit:
            return BACKOFF_LIMIT, None
        started = parse_time(self.status.get("startTime"))
        if self.spec.deadline is None or started is None or self.spec.suspend:
            return None, None
        remaining = self.spec.deadline - (self.clock - started)
        if remaining <= 0:
            return DEADLINE, None
        return None, Requeue(after=remaining)

    def _valid(self, pod: PodView) -> bool:
        """An Indexed Job counts only pods with an index below `completions`."""
        if not self.spec.indexed:
            return True
        return pod.index is not None and pod.index < (self.spec.completions or 0)

    def _succeeded_indexes(self, pods: list[PodView]) -> set[int]:
        completions = self.spec.completions or 0
        done = parse_indexes(self.status.get("completedIndexes"), completions)
        done.update(
            p.index for p in pods if p.phase == "Succeeded" and p.tracking and self._valid(p) and p.index is not None
        )
        return done

    def _succeeded(self, pods: list[PodView]) -> int:
        if self.spec.indexed:
            return len(self.completed)
        counted = {*self.uncounted_succeeded, *self.uncounted_failed}
        new = sum(1 for p in pods if p.tracking and p.uid not in counted and p.phase == "Succeeded")
        return int(self.status.get("succeeded") or 0) + len(self.uncounted_succeeded) + new

    def _complete(self, pods: list[PodView]) -> bool:
        if any(p.active for p in pods):
            return False
        succeeded = self._succeeded(pods)
        if self.spec.completions is None:
            return succeeded > 0
        return succeeded >= self.spec.completions

    def _suspension(self) -> None:
        if self.spec.suspend:
            ensure_condition(self.status, "Suspended", "True", "JobSuspended", "Job suspended", self.now)
        elif ensure_condition(self.status, "Suspended", "False", "JobResumed", "Job resumed", self.now):
            # activeDeadlineSeconds counts time continuously active, so it starts over on resume.
            self.status["startTime"] = self.now

    # -- pods -------------------------------------------------------------------------------------------------

    def _manage(self, pods: list[PodView]) -> None:
        """`manageJob`: delete surplus pods (all of them while suspended) or create the missing ones."""
        active = [p for p in pods if p.active]
        if self.spec.suspend:
            self._delete_uncounted(active)
            return
        want = self._want_active(pods, len(active))
        surplus = self._surplus(active, max(0, len(active) - want))
        if surplus:
            self._delete_uncounted(surplus[:MAX_POD_CHANGES_PER_SYNC])
            return
        missing = min(want - len(active), MAX_POD_CHANGES_PER_SYNC)
        if missing <= 0:
            return
        if self.spec.indexed:
            for index in self._pending_indexes(active, missing):
                self._create_pod(index)
        else:
            for _ in range(missing):
                self._create_pod(None)

    def _want_active(self, pods: list[PodView], active: int) -> int:
        succeeded = self._succeeded(pods)
        if self.spec.completions is None:
            # A work-queue Job: once one pod succeeded, the running ones finish and nothing new starts.
            return active if succeeded > 0 else self.spec.parallelism
        return max(0, min(self.spec.completions - succeeded, self.spec.parallelism))

    def _surplus(self, active: list[PodView], at_least: int) -> list[PodView]:
        """Pods to remove: for Indexed Jobs those with a duplicate or invalid index, then the surplus."""
        remove: list[PodView] = []
        keep = active
        if self.spec.indexed:
            seen: set[int] = set()
            keep = []
            for pod in sorted(active, key=lambda p: (not p.ready, p.created, p.name)):
                if pod.index is None or not self._valid(pod) or pod.index in seen:
                    remove.append(pod)
                else:
                    seen.add(pod.index)
                    keep.append(pod)
        if len(remove) < at_least:
            remove.extend(_removal_order(keep)[: at_least - len(remove)])
        return remove

    def _pending_indexes(self, active: list[PodView], count: int) -> list[int]:
        held = {p.index for p in active}
        out: list[int] = []
        for index in range(self.spec.completions or 0):
            if len(out) == count:
                break
            if index not in held and index not in self.completed:
                out.append(index)
        return out

    def _delete_uncounted(self, pods: list[PodView]) -> None:
        """`deleteJobPods`: pods removed by scaling down or suspension are not failures, so the finalizer goes
        first and the pod is never counted."""
        for pod in pods:
            if pod.tracking:
                self.ctl.remove_finalizer(pod)
            self.ctl.delete_pod(pod)

    def _create_pod(self, index: int | None) -> None:
        name = self.stored.name
        template = _fresh((self.job.get("spec") or {}).get("template") or {})
        meta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        labels = dict(meta.get("labels") or {})
        annotations = dict(meta.get("annotations") or {})
        generate_name = f"{name}-"
        if index is not None:
            annotations[COMPLETION_INDEX] = str(index)
            labels[COMPLETION_INDEX] = str(index)
            spec["hostname"] = f"{name}-{index}"
            _add_index_env(spec)
            suffix = f"-{index}-"
            generate_name = name[: MAX_GENERATED_NAME_LENGTH - len(suffix)] + suffix
        finalizers = [f for f in meta.get("finalizers") or () if f != TRACKING_FINALIZER]
        pod_meta: JSON = {"generateName": generate_name, "namespace": self.stored.namespace}
        if labels:
            pod_meta["labels"] = labels
        if annotations:
            pod_meta["annotations"] = annotations
        pod_meta["finalizers"] = [*finalizers, TRACKING_FINALIZER]
        pod_meta["ownerReferences"] = [controller_ref(self.stored, "Job")]
        try:
            self.registry.create(PODS, self.stored.namespace, {"metadata": pod_meta, "spec": spec})
        except APIError as err:
            if err.code == 403 and "being terminated" in err.message:
                return
            raise

    # -- counting and status ----------------------------------------------------------------------------------

    def _track(self, pods: list[PodView], finish: Finish | None) -> None:
        """`trackJobStatusAndRemoveFinalizers`: record finished pods as uncounted, release them, count them, and
        write the terminal condition once nothing is left running."""
        flush = False
        with_finalizer = {p.uid for p in pods if p.tracking}
        flush |= self._count_released(with_finalizer)
        release: list[PodView] = []
        full = False
        releasable = [
            p for p in pods
            if p.tracking and (self.deleting or finish is not None or p.phase == "Succeeded" or p.failed)
        ]  # fmt: skip
        for pod in sorted(releasable, key=lambda p: (p.index if p.index is not None else -1, p.created, p.name)):
            release.append(pod)
            flush |= self._record(pod, failing=finish is not None and finish is not SUCCESS)
            if len(self.uncounted_succeeded) + len(self.uncounted_failed) >= MAX_UNCOUNTED_PODS:
                full = True
                break
        if self.spec.indexed:
            flush |= self._set_indexes()
        if finish is not None:
            flush |= ensure_condition(self.status, finish.interim, "True", finish.reason, finish.message, self.now)
        self._set_pod_counts(pods)
        if flush and release:
            self._write()
        for pod in release:
            self.ctl.remove_finalizer(pod)
            with_finalizer.discard(pod.uid)
        self._count_released(with_finalizer)
        self._set_pod_counts(self.ctl.pods_of(self.stored.uid))
        if finish is not None and not full:
            self._enact(finish)
        self._write()

    def _record(self, pod: PodView, *, failing: bool) -> bool:
        """Add a finished pod to the uncounted lists (Indexed successes go straight to their index)."""
        if pod.phase == "Succeeded" and pod.uid not in self.uncounted_failed:
            if self.spec.indexed:
                if pod.index is not None and self._valid(pod) and pod.index not in self.completed:
                    self.completed.add(pod.index)
                    return True
            elif pod.uid not in self.uncounted_succeeded:
                self.uncounted_succeeded.append(pod.uid)
                return True
        elif (pod.failed or failing) and pod.uid not in self.uncounted_failed and self._valid(pod):
            # Once the Job has failed, every pod that did not succeed counts as failed.
            self.uncounted_failed.append(pod.uid)
            return True
        return False

    def _count_released(self, with_finalizer: set[str]) -> bool:
        """Move uncounted pods whose finalizer is gone into the counters (`cleanUncountedPodsWithoutFinalizers`)."""
        changed = False
        for field, uncounted in (("succeeded", self.uncounted_succeeded), ("failed", self.uncounted_failed)):
            kept = [uid for uid in uncounted if uid in with_finalizer]
            if len(kept) != len(uncounted):
                _set_count(self.status, field, int(self.status.get(field) or 0) + len(uncounted) - len(kept))
                uncounted[:] = kept
                changed = True
        return changed

    def _set_indexes(self) -> bool:
        text = format_indexes(self.completed)
        changed = text != (self.status.get("completedIndexes") or "")
        if text:
            self.status["completedIndexes"] = text
        else:
            self.status.pop("completedIndexes", None)
        _set_count(self.status, "succeeded", len(self.completed))
        return changed

    def _set_pod_counts(self, pods: list[PodView]) -> None:
        active = [p for p in pods if p.active]
        _set_count(self.status, "active", len(active))
        self.status["ready"] = sum(1 for p in active if p.ready)
        self.status["terminating"] = sum(1 for p in pods if p.terminating)
        uncounted: JSON = {}
        if self.uncounted_succeeded:
            uncounted["succeeded"] = list(self.uncounted_succeeded)
        if self.uncounted_failed:
            uncounted["failed"] = list(self.uncounted_failed)
        self.status["uncountedTerminatedPods"] = uncounted

    def _enact(self, finish: Finish) -> None:
        """`enactJobFinished`: the terminal condition, once every pod is counted and none is terminating."""
        if self.uncounted_succeeded or self.uncounted_failed or self.status.get("terminating"):
            return
        ensure_condition(self.status, finish.final, "True", finish.reason, finish.message, self.now)
        if finish.final == "Complete":
            self.status["completionTime"] = self.now

    def _write(self) -> None:
        """PUT jobs/<name>/status when it changed, conditional on the revision this sync read."""
        if self.status == (self.stored.decode().get("status") or {}):
            return
        body = {
            "metadata": {"name": self.stored.name, "resourceVersion": str(self.stored.rv)},
            "status": _fresh(self.status),
        }
        self.stored = self.registry.update(
            JOBS, self.stored.namespace, self.stored.name, body, subresource="status"
        ).stored


def _add_index_env(spec: JSON) -> None:
    """Every container learns its completion index from the pod's label, as `addCompletionIndexEnvVariables`."""
    field_path = f"metadata.labels['{COMPLETION_INDEX}']"
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or ():
            env = container.setdefault("env", [])
            if not any(v.get("name") == COMPLETION_INDEX_ENV for v in env):
                env.append(
                    {
                        "name": COMPLETION_INDEX_ENV,
                        "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}},
                    }
                )


# -- CronJob controller ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChildJob:
    """What the CronJob controller needs of one Job it owns."""

    key: str
    name: str
    namespace: str
    uid: str
    rv: int
    finished: str | None
    completion_time: str | None
    start_time: str | None

    def reference(self) -> JSON:
        """The ObjectReference `status.active` lists."""
        return {"kind": "Job", "namespace": self.namespace, "name": self.name, "uid": self.uid,
                "apiVersion": "batch/v1", "resourceVersion": str(self.rv)}  # fmt: skip


def child_job(stored: Stored) -> tuple[str | None, ChildJob]:
    """The owning CronJob's uid (None if not owned by one) and the Job's summary."""
    job = stored.decode()
    status = job.get("status") or {}
    completion = status.get("completionTime")
    start = status.get("startTime")
    child = ChildJob(
        key=stored.key,
        name=stored.name,
        namespace=stored.namespace,
        uid=stored.uid,
        rv=stored.rv,
        finished=job_finished(status),
        completion_time=completion if isinstance(completion, str) else None,
        start_time=start if isinstance(start, str) else None,
    )
    return controller_uid(job["metadata"], "CronJob"), child


@dataclass(frozen=True, slots=True)
class Due:
    """The outcome of looking at the schedule: the time to run now (if any) and the next time to look."""

    run_at: float | None
    next_at: float | None
    missed: int = 0


def due(schedule: CronSchedule, zone: tzinfo, earliest: float, now: float, deadline: int | None) -> Due:
    """The most recent unrun schedule time in (earliest, now], as `mostRecentScheduleTime` finds it; with a
    starting deadline, times older than the deadline do not count."""
    if deadline is not None:
        earliest = max(earliest, now - deadline)
    next_at = schedule.next_after(now, zone)
    latest = schedule.latest_at_or_before(now, zone)
    if latest is None or latest <= earliest:
        return Due(None, next_at)
    missed = 0
    for _ in schedule.times(earliest, now, zone):
        missed += 1
        if missed > TOO_MANY_MISSED:
            break
    return Due(latest, next_at, missed)


class CronJobController(Controller):
    name = "cronjob"
    watches = (CRONJOBS.storage_name, JOBS.storage_name)

    def __init__(self, registry: Registry, settings: SimSettings) -> None:
        super().__init__(registry, settings)
        # CronJob uid -> key; CronJob uid -> job key -> summary; job key -> owning CronJob uid.
        self._cronjob_keys: dict[str, str] = {}
        self._children: dict[str, dict[str, ChildJob]] = {}
        self._child_owner: dict[str, str] = {}

    # -- observing ------------------------------------------------------------------------------------------

    def initial_keys(self) -> Iterable[Hashable]:
        keys: list[Hashable] = []
        for cronjob in self.registry.iter_objects(CRONJOBS):
            self._cronjob_keys[cronjob.uid] = cronjob.key
            keys.append(cronjob.key)
        for job in self.registry.iter_objects(JOBS):
            self._job_changed(job.key, job)
        return keys

    def keys_for(self, storage: str, change: Change) -> Iterable[Hashable]:
        if storage == CRONJOBS.storage_name:
            if change.type == DELETED:
                self._cronjob_keys.pop(change.obj.uid, None)
                return ()
            self._cronjob_keys[change.obj.uid] = change.key
            return (change.key,)
        owners = self._job_changed(change.key, None if change.type == DELETED else change.obj)
        return [self._cronjob_keys[uid] for uid in owners if uid in self._cronjob_keys]

    def _job_changed(self, key: str, stored: Stored | None) -> set[str]:
        """Re-file one Job; the uids of the CronJobs it belonged to before and after."""
        owners: set[str] = set()
        previous = self._child_owner.pop(key, None)
        if previous is not None:
            owners.add(previous)
            children = self._children[previous]
            children.pop(key, None)
            if not children:
                del self._children[previous]
        if stored is None or _CRONJOB_OWNED_MARK not in stored.body:
            return owners
        owner, child = child_job(stored)
        if owner is not None:
            self._children.setdefault(owner, {})[key] = child
            self._child_owner[key] = owner
            owners.add(owner)
        return owners

    def children_of(self, uid: str) -> list[ChildJob]:
        return list(self._children.get(uid, {}).values())

    # -- reconcile ------------------------------------------------------------------------------------------

    def reconcile(self, key: Hashable) -> Requeue | None:
        stored = self.registry.bucket(CRONJOBS).get(str(key))
        if stored is None:
            return None
        cronjob = stored.decode()
        if cronjob["metadata"].get("deletionTimestamp"):
            return None
        spec = cronjob.get("spec") or {}
        status: JSON = _fresh(cronjob.get("status") or {})
        children = {child.uid: child for child in self.children_of(stored.uid)}
        self._track_children(status, children)
        self._clean_history(stored, spec, status, children)
        requeue = None
        if not spec.get("suspend"):
            requeue = self._schedule(stored, cronjob, status, children)
        self._write_status(stored, cronjob, status)
        return requeue

    def _track_children(self, status: JSON, children: dict[str, ChildJob]) -> None:
        """Drop finished or vanished Jobs from `status.active`; remember the latest successful completion."""
        active = [
            ref for ref in status.get("active") or ()
            if (child := children.get(str(ref.get("uid")))) is not None and child.finished is None
        ]  # fmt: skip
        _set_list(status, "active", active)
        latest = parse_time(status.get("lastSuccessfulTime"))
        for child in children.values():
            finished_at = parse_time(child.completion_time)
            if child.finished == "Complete" and finished_at is not None and (latest is None or finished_at > latest):
                latest = finished_at
                status["lastSuccessfulTime"] = child.completion_time

    def _clean_history(self, stored: Stored, spec: JSON, status: JSON, children: dict[str, ChildJob]) -> None:
        """Delete the oldest finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`."""
        for outcome, field in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
            limit = spec.get(field)
            if not isinstance(limit, int):
                continue
            finished = sorted(
                (child for child in children.values() if child.finished == outcome),
                key=lambda c: (c.start_time is None, c.start_time or "", c.name),
            )
            for child in finished[: max(0, len(finished) - limit)]:
                self._delete_job(child)
                children.pop(child.uid, None)
        _set_list(status, "active", [ref for ref in status.get("active") or () if ref.get("uid") in children])

    def _schedule(self, stored: Stored, cronjob: JSON, status: JSON, children: dict[str, ChildJob]) -> Requeue | None:
        """Run the Job that is due now, if any, and say when the next one is."""
        spec = cronjob.get("spec") or {}
        try:
            zone = time_zone(spec.get("timeZone"))
            schedule = parse_schedule(str(spec.get("schedule") or ""))
        except ValueError as err:
            log.warning("cronjob not scheduled", cronjob=stored.key, error=str(err))
            return None
        now = self.registry.clock()
        earliest = parse_time(status.get("lastScheduleTime")) or parse_time(
            cronjob["metadata"].get("creationTimestamp")
        )
        deadline = spec.get("startingDeadlineSeconds")
        found = due(schedule, zone, earliest or now, now, deadline if isinstance(deadline, int) else None)
        later = None if found.next_at is None else Requeue(after=found.next_at - now + NEXT_SCHEDULE_DELTA)
        if found.run_at is None:
            return later
        if found.missed > TOO_MANY_MISSED:
            log.warning(
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                cronjob=stored.key, missed=f">{TOO_MANY_MISSED}",
            )  # fmt: skip
        policy = spec.get("concurrencyPolicy") or "Allow"
        if policy == "Forbid" and status.get("active"):
            # Not recorded as run: if it is still within its deadline when the active Job ends, it runs late.
            return later
        if policy == "Replace":
            for ref in status.get("active") or ():
                child = children.get(str(ref.get("uid")))
                if child is not None:
                    self._delete_job(child)
            status.pop("active", None)
        child = self._create_job(stored, cronjob, found.run_at, zone)
        if child is not None:
            if child.finished is None and all(ref.get("uid") != child.uid for ref in status.get("active") or ()):
                status.setdefault("active", []).append(child.reference())
            status["lastScheduleTime"] = rfc3339(found.run_at)
        return later

    # -- writes ---------------------------------------------------------------------------------------------

    def _create_job(self, stored: Stored, cronjob: JSON, scheduled: float, zone: tzinfo) -> ChildJob | None:
        """Create the Job for `scheduled` (`getJobFromTemplate2`); an existing one of ours counts as created."""
        template = _fresh((cronjob.get("spec") or {}).get("jobTemplate") or {})
        meta = template.get("metadata") or {}
        annotations = dict(meta.get("annotations") or {})
        annotations[SCHEDULED_TIMESTAMP] = rfc3339_in(scheduled, zone)
        job_meta: JSON = {"name": f"{stored.name}-{int(scheduled) // 60}", "namespace": stored.namespace}
        if meta.get("labels"):
            job_meta["labels"] = dict(meta["labels"])
        job_meta["annotations"] = annotations
        job_meta["ownerReferences"] = [controller_ref(stored, "CronJob")]
        body = {"metadata": job_meta, "spec": template.get("spec") or {}}
        try:
            created = self.registry.create(JOBS, stored.namespace, body).stored
        except APIError as err:
            if err.code == 403 and "being terminated" in err.message:
                return None
            if err.code != 409:
                raise
            existing = self.registry.bucket(JOBS).get(f"{stored.namespace}/{job_meta['name']}")
            if existing is None:
                raise
            owner, child = child_job(existing)
            if owner != stored.uid:
                log.warning("job exists and is not ours", cronjob=stored.key, job=existing.key)
                return None
            return child
        return child_job(created)[1]

    def _delete_job(self, child: ChildJob) -> None:
        options = DeleteOptions(propagation="Background", uid=child.uid)
        try:
            self.registry.delete(JOBS, child.namespace, child.name, options)
        except APIError as err:
            if err.code not in (404, 409):
                raise

    def _write_status(self, stored: Stored, cronjob: JSON, status: JSON) -> None:
        """PUT cronjobs/<name>/status when it changed, conditional on the revision read."""
        if status == (cronjob.get("status") or {}):
            return
        body = {"metadata": {"name": stored.name, "resourceVersion": str(stored.rv)}, "status": status}
        self.registry.update(CRONJOBS, stored.namespace, stored.name, body, subresource="status")


def _set_list(status: JSON, field: str, items: list[JSON]) -> None:
    if items:
        status[field] = items
    else:
        status.pop(field, None)


CONTROLLERS: dict[str, Factory] = {"job": JobController, "cronjob": CronJobController}
