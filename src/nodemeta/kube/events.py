"""The Event recorder: core/v1 Events written in the background with client-go's aggregation and spam filter.

Why core/v1 and not events.k8s.io/v1: the semantics wanted here are those of client-go's `tools/record` recorder,
which the kubelet and most controllers still use, and which writes core/v1 Events: repeats PATCH `count` and
`lastTimestamp`, similar messages are combined, and a per-object token bucket caps the writes. Only core/v1 carries
`source{component, host}` (events.k8s.io/v1 forbids setting `deprecatedSource` on create), and both APIs serve
the same stored objects, so `kubectl get events`, `kubectl describe` and events.k8s.io readers all see them.

`record()` never blocks and never raises on API trouble: it validates, stamps the time and puts the occurrence on a
bounded queue (when full, the newest is dropped and counted, as client-go's broadcaster does). `run()` is the one
sender task: it passes each occurrence through the `Correlator` and writes the result, retrying transport errors,
5xx and 429 (honouring Retry-After) with client-go's schedule (12 tries, 10 s apart, the first sleep randomised so
many agents cut off together do not return in step); other 4xx answers are final. A PATCH that finds the Event
gone (the server's event TTL) creates it again. Events are best-effort by design: nothing in the agent may depend on
one being written.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from nodemeta.kube.correlator import Correlator, CorrelatorSettings, ObjectReference, Occurrence, Write
from nodemeta.kube.errors import ApiError, KubeError, NotFound, ServerError, Throttled, TransportError
from nodemeta.kube.writer import PatchType, Writer, event_path

__all__ = ["NORMAL", "WARNING", "Recorder", "RecorderSettings", "RecorderStats"]

log = structlog.get_logger("nodemeta.kube.events")

NORMAL = "Normal"
WARNING = "Warning"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecorderSettings:
    # `source.component` and `reportingComponent` of every Event.
    component: str = "nodemeta-agent"
    # Occurrences waiting for the sender. client-go's broadcaster holds 1000 and drops when full: at the spam
    # filter's pace a healthy sender never gets near it, so a full queue means the API server is unreachable.
    queue_size: int = 1000
    # Tries per write and the pause between them (client-go: 12 tries, 10 s): about two minutes of an
    # unreachable API server before an Event is given up.
    attempts: int = 12
    retry_interval: float = 10.0
    correlator: CorrelatorSettings = field(default_factory=CorrelatorSettings)

    def __post_init__(self) -> None:
        if self.queue_size < 1 or self.attempts < 1 or self.retry_interval < 0:
            raise ValueError("queue_size and attempts must be >= 1, retry_interval >= 0")


@dataclass(slots=True)
class RecorderStats:
    """Counters of what happened to recorded occurrences (plain attributes; metrics read them)."""

    recorded: int = 0
    created: int = 0
    patched: int = 0
    filtered: int = 0  # held back by the spam filter
    dropped: int = 0  # the queue was full
    retries: int = 0
    failed: int = 0  # given up: a final 4xx, or out of tries


class Recorder:
    """Records Events about objects, as `component` on `host` (the node name for an agent).

    Run `run()` in a task group for as long as Events should be sent; `record()` may be called before or after.
    """

    def __init__(
        self,
        writer: Writer,
        *,
        host: str,
        settings: RecorderSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.writer = writer
        self.settings = settings or RecorderSettings()
        self.host = host
        self.stats = RecorderStats()
        self._clock = clock
        self._correlator = Correlator(self.settings.component, host, self.settings.correlator)
        self._queue: asyncio.Queue[Occurrence] = asyncio.Queue(self.settings.queue_size)
        self._rng = random.Random()

    def record(self, ref: ObjectReference, type: str, reason: str, message: str) -> bool:
        """Queue one occurrence; False when the queue is full (it is dropped). Raises ValueError on a bad type,
        an empty or over-long reason, or a reference without kind or name: those are programming errors."""
        occurrence = Occurrence(ref, type, reason, message, self._clock())
        try:
            self._queue.put_nowait(occurrence)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            return False
        self.stats.recorded += 1
        return True

    @property
    def pending(self) -> int:
        """Occurrences queued and not yet handled."""
        return self._queue.qsize()

    async def flush(self) -> None:
        """Wait until every occurrence queued so far has been written, filtered or given up."""
        await self._queue.join()

    async def run(self) -> None:
        """The sender: correlate and write, one occurrence at a time, until cancelled."""
        while True:
            occurrence = await self._queue.get()
            try:
                write = self._correlator.observe(occurrence)
                if write is None:
                    self.stats.filtered += 1
                else:
                    await self._deliver(write)
            finally:
                self._queue.task_done()

    async def _deliver(self, write: Write) -> None:
        for attempt in range(1, self.settings.attempts + 1):
            try:
                await self._write(write)
                return
            except (TransportError, ServerError, Throttled) as err:
                if attempt == self.settings.attempts:
                    self._give_up(write, err, "out of tries")
                    return
                self.stats.retries += 1
                await asyncio.sleep(self._pause(attempt, err))
            except ApiError as err:
                self._give_up(write, err, "rejected")
                return
            except KubeError as err:  # a 2xx answer that did not decode: the write itself happened
                log.debug("event written, answer not decoded", name=write.name, error=str(err))
                return

    async def _write(self, write: Write) -> None:
        if write.update:
            try:
                await self.writer.patch(event_path(write.namespace, write.name), write.patch, PatchType.STRATEGIC)
                self.stats.patched += 1
                return
            except NotFound:
                pass  # expired (event TTL) or never created: create it with the count so far
        await self.writer.create(event_path(write.namespace), write.event)
        self.stats.created += 1

    def _pause(self, attempt: int, err: KubeError) -> float:
        interval = self.settings.retry_interval
        if isinstance(err, ApiError) and err.retry_after is not None:
            return max(err.retry_after, 0.0)
        # client-go randomises only the first pause; later ones are the plain interval.
        return interval * self._rng.random() if attempt == 1 else interval

    def _give_up(self, write: Write, err: KubeError, why: str) -> None:
        self.stats.failed += 1
        log.warning(
            "event not written",
            why=why,
            namespace=write.namespace,
            name=write.name,
            reason=write.event["reason"],
            error=str(err),
        )
