"""Evenly spaced calls below a requests-per-minute limit (GCRA: a leaky bucket).

GitLab counts requests in a sliding window. Bursting up to the limit and then waiting lines our
window up against GitLab's, and any clock skew at the edge earns a 429 whose ``Retry-After`` costs
up to a minute. Spacing calls evenly at a little under the limit never crosses it; a small burst
tolerance lets callers that fell behind (a slow response, a busy CPU) catch up without ever
exceeding ``per_minute * window + burst`` calls in any window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Pacer:
    """Thread-safe: ``wait()`` returns when the caller may make its call."""

    def __init__(
        self,
        per_minute: float,
        burst: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.interval = 60.0 / per_minute
        self.tolerance = burst * self.interval
        self._clock = clock
        self._sleep = sleep
        self._theoretical_arrival = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Block until this call's slot; return how long it waited."""
        with self._lock:
            now = self._clock()
            arrival = max(self._theoretical_arrival, now)
            delay = max(0.0, arrival - self.tolerance - now)
            self._theoretical_arrival = arrival + self.interval
        if delay > 0:
            self._sleep(delay)
        return delay
