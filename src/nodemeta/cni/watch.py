"""Watching the CNI configuration directory: inotify, a short debounce, a periodic rescan, and a stream of
evaluated states for whoever subscribes.

Level-triggered: an inotify event only says "look again". After a burst of events settles (`debounce`, at most
`max_delay` after the first), the whole directory is re-listed and re-parsed, evaluated, and the findings computed
from the new state and the bounded history before it. A periodic rescan catches what inotify cannot see (a plugin
file in a subdirectory, a lost event, a queue overflow).

The directory may disappear and come back (a node image reset, an installer that recreates it): the parent is
watched too, and the directory's watch is re-added on every rescan, so the new directory is followed.

Memory is bounded: no event queue is kept (one "dirty" flag), the history holds `PatternSettings.history` states
without file content, and subscribers hold no buffer: each receives the newest evaluation when it asks, skipping
the ones it was too slow to see (every evaluation is complete, so nothing is lost by skipping).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asyncinotify import Event, Inotify, Mask, Watch

from nodemeta.cni.conf import ConfigState, RuntimeModel, evaluate
from nodemeta.cni.loaded import LoadedView
from nodemeta.cni.patterns import Finding, History, PatternSettings, find
from nodemeta.cni.scan import ScanLimits, list_binaries, scan

__all__ = ["ConfWatcher", "Evaluation", "Subscription", "WatchSettings"]

# Everything that changes the directory's entries or a file's content.
_DIR_MASK = (
    Mask.CREATE | Mask.MODIFY | Mask.CLOSE_WRITE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.DELETE | Mask.ATTRIB
    | Mask.DELETE_SELF | Mask.MOVE_SELF | Mask.ONLYDIR
)  # fmt: skip
# The parent: only the directory itself appearing or going away matters (events are filtered by name).
_PARENT_MASK = Mask.CREATE | Mask.MOVED_TO | Mask.MOVED_FROM | Mask.DELETE | Mask.ONLYDIR


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchSettings:
    # Installers write in bursts (truncate then write; write a temporary file then rename): 200 ms of quiet merges a
    # burst into one rescan and still reports a broken chain well before a pod scheduled meanwhile gets networked.
    debounce: float = 0.2
    # A writer touching the directory without pause still gets it rescanned this often.
    max_delay: float = 2.0
    # Catches what inotify cannot report: plugin files in a subdirectory, a queue overflow, a lost watch.
    rescan_interval: float = 30.0
    patterns: PatternSettings = field(default_factory=PatternSettings)
    limits: ScanLimits = field(default_factory=ScanLimits)

    def __post_init__(self) -> None:
        if not (0 < self.debounce <= self.max_delay) or self.rescan_interval <= 0:
            raise ValueError("0 < debounce <= max_delay and rescan_interval > 0 are required")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One published evaluation: the directory's state and what it means."""

    state: ConfigState
    findings: tuple[Finding, ...]
    loaded: LoadedView | None = None

    @property
    def sequence(self) -> int:
        return self.state.sequence


class ConfWatcher:
    """Watches one configuration directory; `run()` until cancelled, `subscribe()` from any task."""

    def __init__(
        self,
        conf_dir: str | Path,
        *,
        model: RuntimeModel,
        required: Sequence[str] = (),
        bin_dirs: Sequence[str | Path] = (),
        loaded: Callable[[], Awaitable[LoadedView | None]] | None = None,
        settings: WatchSettings | None = None,
    ) -> None:
        self.conf_dir = Path(conf_dir)
        self.model = model
        self.required = tuple(required)
        self.bin_dirs = tuple(bin_dirs)
        self.settings = settings or WatchSettings()
        self._loaded = loaded
        self._history = History(self.settings.patterns)
        self._latest: Evaluation | None = None
        self._changed = asyncio.Event()
        self._closed = False
        self._dirty = asyncio.Event()
        self._dir_watch: Watch | None = None
        self._parent_watch: Watch | None = None
        self._published = 0

    @property
    def latest(self) -> Evaluation | None:
        return self._latest

    def subscribe(self) -> Subscription:
        """The evaluations from now on: the current one first (if any), then each newer one."""
        return Subscription(self)

    async def run(self) -> None:
        """Watch until cancelled. Subscribers' iterations end when this returns or is cancelled."""
        try:
            with Inotify() as inotify:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._read_events(inotify))
                    tasks.create_task(self._reconcile(inotify))
        finally:
            self._closed = True
            self._changed.set()

    # -- inotify -------------------------------------------------------------------------------------------------

    async def _read_events(self, inotify: Inotify) -> None:
        while True:
            event = await inotify.get()
            if self._relevant(event):
                self._dirty.set()

    def _relevant(self, event: Event) -> bool:
        if event.mask & Mask.Q_OVERFLOW:
            return True
        if event.watch is not None and event.watch is self._parent_watch:
            return event.name is not None and event.name.name == self.conf_dir.name
        return True

    def _arm(self, inotify: Inotify) -> None:
        """(Re-)add the watches: the parent's, then the directory's (a recreated directory gets a new watch)."""
        if self._parent_watch is None or self._parent_watch not in inotify.watches:
            self._parent_watch = _add(inotify, self.conf_dir.parent, _PARENT_MASK)
        current = _add(inotify, self.conf_dir, _DIR_MASK)
        old = self._dir_watch
        if old is not None and old is not current and old is not self._parent_watch and old in inotify.watches:
            # The directory was replaced: stop following the old one.
            with contextlib.suppress(OSError):
                inotify.rm_watch(old)
        self._dir_watch = current

    # -- the reconcile loop --------------------------------------------------------------------------------------

    async def _reconcile(self, inotify: Inotify) -> None:
        while True:
            self._dirty.clear()
            self._arm(inotify)
            await self._rescan()
            try:
                async with asyncio.timeout(self.settings.rescan_interval):
                    await self._dirty.wait()
            except TimeoutError:
                continue  # the periodic rescan
            await self._settle()

    async def _settle(self) -> None:
        """Wait until no event came for `debounce` seconds, or `max_delay` passed since the first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.max_delay
        while True:
            self._dirty.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(min(self.settings.debounce, remaining)):
                    await self._dirty.wait()
            except TimeoutError:
                return

    async def _rescan(self) -> None:
        listing = await asyncio.to_thread(scan, self.conf_dir, self.settings.limits)
        binaries = await asyncio.to_thread(list_binaries, self.bin_dirs) if self.bin_dirs else None
        loaded = await self._runtime_view()
        state = evaluate(
            listing,
            conf_dir=str(self.conf_dir),
            model=self.model,
            required=self.required,
            binaries=binaries,
            observed_at=asyncio.get_running_loop().time(),
        )
        changed = self._history.add(state)
        findings = find(self._history.states, loaded, self.settings.patterns)
        latest = self._latest
        if latest is not None and not changed and (findings, loaded) == (latest.findings, latest.loaded):
            return
        current = self._history.states[-1]
        self._publish(Evaluation(dataclasses.replace(current, sequence=self._published), findings, loaded))

    async def _runtime_view(self) -> LoadedView | None:
        if self._loaded is None:
            return None
        try:
            return await self._loaded()
        except Exception as err:  # the provider's own failure must not stop the guard: report it as a finding
            return LoadedView(error=f"cannot read the runtime's loaded configuration: {err!r}")

    def _publish(self, evaluation: Evaluation) -> None:
        self._published += 1
        self._latest = evaluation
        wake, self._changed = self._changed, asyncio.Event()
        wake.set()


def _add(inotify: Inotify, path: Path, mask: Mask) -> Watch | None:
    try:
        return inotify.add_watch(path, mask)
    except OSError:  # missing (it will be re-added on a later rescan) or not a directory
        return None


class Subscription:
    """An async iterator over a watcher's evaluations; holds only the sequence number it saw last."""

    def __init__(self, watcher: ConfWatcher) -> None:
        self._watcher = watcher
        self._seen = -1

    def __aiter__(self) -> AsyncIterator[Evaluation]:
        return self

    async def __anext__(self) -> Evaluation:
        watcher = self._watcher
        while True:
            latest = watcher._latest
            if latest is not None and latest.sequence > self._seen:
                self._seen = latest.sequence
                return latest
            if watcher._closed:
                raise StopAsyncIteration
            await watcher._changed.wait()
