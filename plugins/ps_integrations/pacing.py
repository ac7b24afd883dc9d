"""Evenly spaced calls below a requests-per-minute limit (a leaky bucket with no burst).

GitLab counts requests in a sliding window. Bursting up to the limit and then waiting lines our
window up against GitLab's, and any clock skew at the edge earns a 429 whose ``Retry-After`` costs
up to a minute. Spacing calls evenly at a little under the limit never crosses it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """Thread-safe: each ``wait()`` returns at the caller's slot, ``60 / per_minute`` s apart."""

    def __init__(
        self,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.interval = 60.0 / per_minute
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until this call's slot; return how long it waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return delay
