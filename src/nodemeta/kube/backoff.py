"""Jittered exponential backoff that starts over after a healthy period. Pure: it computes delays, never sleeps.

The reflector asks for the next delay after each failure. Delays grow by `factor` up to `maximum`, each drawn from
`[(1 - jitter) * d, d]` so that many clients cut off at once spread their retries. When the previous failure is more
than `reset_after` seconds old, the connection is taken to have been healthy in between and the delay starts again
from `initial` (client-go's backoff manager behaves the same way).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from nodemeta.kube.settings import BackoffSettings

__all__ = ["Backoff"]


class Backoff:
    def __init__(
        self,
        settings: BackoffSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._failures = 0
        self._last_failure: float | None = None

    @property
    def failures(self) -> int:
        """Consecutive failures counted towards the current delay."""
        return self._failures

    def next_delay(self) -> float:
        """Record a failure now and return how long to wait before the next attempt."""
        s = self.settings
        now = self._clock()
        if self._last_failure is not None and now - self._last_failure >= s.reset_after:
            self._failures = 0
        self._last_failure = now
        nominal = min(s.maximum, s.initial * s.factor**self._failures)
        if nominal < s.maximum:  # stop counting at the cap, so the power cannot overflow
            self._failures += 1
        return nominal * (1.0 - s.jitter * self._rng.random())

    def reset(self) -> None:
        """Forget past failures (after an attempt that proved the server healthy)."""
        self._failures = 0
        self._last_failure = None
