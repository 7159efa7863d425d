"""Fault injection: the API-server failures clients must survive, on demand (tests) or at random (CLI flags).

Instantaneous faults act on the open watches: drop the connections, make them go silent, or end them with an
in-stream 410 after a forced compaction. Rate faults are consulted for every API request: throttling (429 with
Retry-After, in API Priority and Fairness's plain-text form), server errors (5xx Status) and added latency. A
restart stops the listener and starts it again on the same port, with the store intact (an API server in front of
etcd) or with the watch history lost (every watch from an older resourceVersion then gets 410).

Every fault is appended to `Faults.log` and logged, so a test can tell exactly what happened.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from aiohttp import web

from nodemeta.sim import errors
from nodemeta.sim.watch import WatchStream

if TYPE_CHECKING:
    from nodemeta.sim.server import SimServer

log = structlog.get_logger("nodemeta.sim.faults")

RequestFilter = Callable[[web.Request], bool]
_THROTTLED = "Too many requests, please try again later.\n"


@dataclass(frozen=True, slots=True)
class FaultRecord:
    at: float
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultPlan:
    """Random faults for `nodemeta sim serve` (every interval 0 = off)."""

    # Seconds between drops of a fraction of the open watches.
    drop_watches_every: float = 0.0
    drop_fraction: float = 1.0
    # Seconds between forced compactions (watchers get 410 and must relist).
    compact_every: float = 0.0
    # Fractions of API requests answered 429 (with Retry-After) or 500.
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    retry_after: int = 1
    # Seconds added to every API request.
    latency: float = 0.0
    seed: int | None = None


@dataclass(slots=True)
class _Rate:
    """One kind of request fault: how often (or how many more), the answer, and which requests it hits."""

    rate: float = 0.0
    remaining: int = 0
    code: int = 500
    retry_after: int = 1
    applies: RequestFilter | None = None

    def hits(self, request: web.Request) -> bool:
        return self.applies is None or self.applies(request)


@dataclass(slots=True)
class Faults:
    server: SimServer
    seed: int | None = None
    log: list[FaultRecord] = field(default_factory=list)
    _throttle: _Rate = field(default_factory=_Rate)
    _errors: _Rate = field(default_factory=_Rate)
    _burst: _Rate = field(default_factory=_Rate)
    _latency: _Rate = field(default_factory=_Rate)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _record(self, kind: str, **detail: Any) -> None:
        self.log.append(FaultRecord(time.time(), kind, detail))
        log.info("fault injected", fault=kind, **detail)

    def kinds(self) -> list[str]:
        return [r.kind for r in self.log]

    # -- faults on open watches ---------------------------------------------------------------------------

    def _pick(self, fraction: float, match: Callable[[WatchStream], bool] | None) -> list[WatchStream]:
        streams = [s for s in self.server.open_watches if not s.interrupted and (match is None or match(s))]
        if fraction >= 1.0:
            return streams
        return [s for s in streams if self._rng.random() < fraction]

    def drop_watches(self, fraction: float = 1.0, match: Callable[[WatchStream], bool] | None = None) -> int:
        """Abort the connections of a fraction of the open watches; returns how many."""
        chosen = self._pick(fraction, match)
        for stream in chosen:
            stream.abort()
        self._record("drop-watches", count=len(chosen), fraction=fraction)
        return len(chosen)

    def hang_watches(self, fraction: float = 1.0, match: Callable[[WatchStream], bool] | None = None) -> int:
        """Make a fraction of the open watches go silent (no events, no bookmarks) with the connection open."""
        chosen = self._pick(fraction, match)
        for stream in chosen:
            stream.hang()
        self._record("hang-watches", count=len(chosen), fraction=fraction)
        return len(chosen)

    def compact(self) -> int:
        """Compact all history now: open watches end with an in-stream 410, older resourceVersions expire."""
        floor = self.server.store.compact()
        streams = self._pick(1.0, None)
        for stream in streams:
            stream.expire(floor)
        self._record("compact", revision=floor, watches=len(streams))
        return floor

    # -- request faults -------------------------------------------------------------------------------------

    def throttle(self, rate: float, retry_after: int = 1, applies: RequestFilter | None = None) -> None:
        """Answer a fraction of API requests with 429 Too Many Requests and Retry-After."""
        self._throttle = _Rate(rate=rate, code=429, retry_after=retry_after, applies=applies)
        self._record("throttle", rate=rate, retry_after=retry_after)

    def fail(self, rate: float, code: int = 500, applies: RequestFilter | None = None) -> None:
        """Answer a fraction of API requests with a 5xx Status."""
        self._errors = _Rate(rate=rate, code=code, applies=applies)
        self._record("errors", rate=rate, code=code)

    def burst(self, count: int, code: int = 503, applies: RequestFilter | None = None) -> None:
        """Answer the next `count` API requests with a 5xx Status."""
        self._burst = _Rate(remaining=count, code=code, applies=applies)
        self._record("error-burst", count=count, code=code)

    def slow(self, seconds: float, applies: RequestFilter | None = None) -> None:
        """Delay API requests (all, or those `applies` selects) by `seconds` (0 to stop)."""
        self._latency = _Rate(rate=seconds, applies=applies)
        self._record("latency", seconds=seconds)

    def clear(self) -> None:
        """Stop every rate fault."""
        self._throttle, self._errors, self._burst, self._latency = _Rate(), _Rate(), _Rate(), _Rate()
        self._record("clear")

    async def before_request(self, request: web.Request) -> web.Response | None:
        """Called by the server for every API request: a fault answer, or None to serve normally."""
        if self._latency.rate and self._latency.hits(request):
            await asyncio.sleep(self._latency.rate)
        if self._burst.remaining > 0 and self._burst.hits(request):
            self._burst.remaining -= 1
            return _status(self._burst.code)
        throttle = self._throttle
        if throttle.rate and throttle.hits(request) and self._rng.random() < throttle.rate:
            return web.Response(
                status=429,
                text=_THROTTLED,
                headers={"Retry-After": str(throttle.retry_after)},
                content_type="text/plain",
            )
        if self._errors.rate and self._errors.hits(request) and self._rng.random() < self._errors.rate:
            return _status(self._errors.code)
        return None

    # -- restarts -------------------------------------------------------------------------------------------

    async def restart(self, *, keep_watch_cache: bool = True, downtime: float = 0.0) -> None:
        """Stop and start the API server on the same port; the store (and its resourceVersions) survives."""
        watches = len(self.server.open_watches)
        await self.server.stop()
        if downtime:
            await asyncio.sleep(downtime)
        if not keep_watch_cache:
            # The new instance builds its watch cache from the current state: nothing older can be replayed.
            self.server.store.compact()
        await self.server.start()
        self._record("restart", keep_watch_cache=keep_watch_cache, dropped_watches=watches, downtime=downtime)

    # -- random driver --------------------------------------------------------------------------------------

    async def run(self, plan: FaultPlan) -> None:
        """Apply `plan` until cancelled."""
        if plan.throttle_rate:
            self.throttle(plan.throttle_rate, plan.retry_after)
        if plan.error_rate:
            self.fail(plan.error_rate)
        if plan.latency:
            self.slow(plan.latency)
        async with asyncio.TaskGroup() as group:
            if plan.drop_watches_every > 0:
                group.create_task(self._every(plan.drop_watches_every, lambda: self.drop_watches(plan.drop_fraction)))
            if plan.compact_every > 0:
                group.create_task(self._every(plan.compact_every, self.compact))

    async def _every(self, interval: float, action: Callable[[], object]) -> None:
        while True:
            # Random times around the interval, so faults do not line up with clients' own timers.
            await asyncio.sleep(interval * (0.5 + self._rng.random()))
            action()


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            500: "InternalError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "Timeout"}  # fmt: skip


def _status(code: int) -> web.Response:
    reason = _REASONS.get(code, "InternalError")
    if code == 503:
        err = errors.APIError(503, reason, "the server is currently unable to handle the request")
    elif code == 504:
        err = errors.APIError(504, reason, "the server was unable to return a response in the time allotted")
    elif code == 500:
        err = errors.internal("injected fault")
    else:
        err = errors.APIError(code, reason, f"injected fault ({code})")
    return web.Response(status=err.code, body=orjson.dumps(err.status()), headers={"Content-Type": "application/json"})
