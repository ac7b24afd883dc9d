"""Fault injection shared by every stand-in.

A ``FaultInjector`` decides, before a request is handled, whether it fails and how. The stand-in
renders the decision in its own system's error shape (``StandIn.render_fault``), so the product's
error handling is tested against what the real system would send.

Modes (all configurable at run time through the admin API):
- ``latency_ms``: added to every call;
- ``rate_limit_per_minute``: a sliding-window request limit; over it, a ``rate_limited`` fault
  carrying the real ``Retry-After`` (seconds until a slot frees), scaled by ``retry_after_scale``;
- ``error_rate``: the share of calls answered with a 5xx (``error_status``), from a seeded RNG;
- scripted failures: the next N calls of one endpoint fail with a given kind;
- session expiry: the stand-in's session registry (``sessions.py``) expires sessions on demand or
  after ``session_ttl_seconds``.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ps_integrations import clock

# slow_response: the call is handled (its effects happen) but the answer is held back for
# delay_ms - a client that gives up or dies meanwhile never learns the outcome.
# answer_lost: the call is handled (its effects happen) and the client gets a 5xx (``status``,
# default 502) - a proxy that gave up on the upstream after it wrote, as nginx's 502/504 do.
FAULT_KINDS = (
    "server_error",
    "rate_limited",
    "session_expired",
    "not_found",
    "bad_request",
    "slow_response",
    "answer_lost",
)


@dataclass
class FaultConfig:
    latency_ms: int = 0
    rate_limit_per_minute: int | None = None
    rate_limit_window_seconds: float = 60.0
    retry_after_scale: float = 1.0
    error_rate: float = 0.0
    error_status: int = 503
    session_ttl_seconds: float | None = None
    random_seed: int = 7

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultConfig:
        known = {item.name for item in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)} (known: {sorted(known)})")
        config = cls(**data)
        if not 0.0 <= config.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        return config


@dataclass
class ScriptedFault:
    endpoint: str
    kind: str
    remaining: int
    status: int | None = None
    delay_ms: int = 0
    after: int = 0  # matching calls to let through first (a failure in the middle of paging)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fault:
    """A decision that one call fails: how, and the rate-limit figures to report."""

    kind: str
    status: int | None = None
    delay_ms: int = 0
    retry_after: int = 0
    limit: int = 0
    remaining: int = 0
    reset_at: int = 0
    observed: int = 0


@dataclass
class RateLimitInfo:
    limit: int
    remaining: int
    reset_at: int
    observed: int


@dataclass
class FaultInjector:
    config: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._scripted: list[ScriptedFault] = []
        self._window: deque[float] = deque()
        self._random = random.Random(self.config.random_seed)
        self.injected: Counter[str] = Counter()  # faults answered, by kind
        # answers held back by slow_response right now; reset() lets them go at once
        self.holding = 0
        self._release = threading.Event()

    def configure(self, config: FaultConfig) -> None:
        with self._lock:
            self.config = config
            self._random = random.Random(config.random_seed)
            self._window.clear()

    def reset(self) -> None:
        with self._lock:
            self._scripted.clear()
            self.injected.clear()
            self._release.set()  # held answers end now: their clients are gone or no longer care
            self._release = threading.Event()
        self.configure(FaultConfig())

    def hold(self, delay_ms: int) -> None:
        """Hold one answer ``delay_ms`` (a slow_response), counted in ``holding`` meanwhile.

        A chaos harness watches ``holding`` to kill the client while the call's effect is done but
        its answer not yet sent (the crash between a remote write and its local record).
        """
        with self._lock:
            self.holding += 1
            release = self._release
        try:
            release.wait(delay_ms / 1000.0)
        finally:
            with self._lock:
                self.holding -= 1

    def script(
        self, endpoint: str, kind: str, count: int = 1, status: int | None = None, delay_ms: int = 0, after: int = 0
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._scripted.append(ScriptedFault(endpoint, kind, count, status, delay_ms, max(after, 0)))

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "config": asdict(self.config),
                "scripted": [item.to_dict() for item in self._scripted if item.remaining > 0],
                "injected": dict(self.injected),
                "holding": self.holding,
            }

    def rate_limit_info(self) -> RateLimitInfo | None:
        """Current figures for ``RateLimit-*`` headers, or None when no limit is set."""
        limit = self.config.rate_limit_per_minute
        if not limit:
            return None
        with self._lock:
            now = time.monotonic()
            self._expire_window(now)
            return self._info(now, limit)

    def before_call(self, endpoint: str, default_retry_after: float = 1.0) -> Fault | None:
        """Decide the fate of one call of ``endpoint`` (sleeps for the injected latency).

        :param default_retry_after: the system's own ``Retry-After`` for a scripted rate limit.
        """
        if self.config.latency_ms:
            time.sleep(self.config.latency_ms / 1000.0)
        with self._lock:
            fault = self._take_scripted(endpoint, default_retry_after) or self._check_rate_limit()
            if fault is None and self.config.error_rate and self._random.random() < self.config.error_rate:
                fault = Fault("server_error", status=self.config.error_status)
            if fault is not None:
                self.injected[fault.kind] += 1
            return fault

    # --- internals (called with the lock held) ---------------------------------------------
    def _take_scripted(self, endpoint: str, default_retry_after: float) -> Fault | None:
        for item in self._scripted:
            if item.remaining > 0 and item.endpoint in (endpoint, "*"):
                if item.after > 0:
                    item.after -= 1
                    continue
                item.remaining -= 1
                retry_after = self._scaled(default_retry_after) if item.kind == "rate_limited" else 0
                return Fault(item.kind, status=item.status, retry_after=retry_after, delay_ms=item.delay_ms)
        return None

    def _expire_window(self, now: float) -> None:
        horizon = now - self.config.rate_limit_window_seconds
        while self._window and self._window[0] <= horizon:
            self._window.popleft()

    def _info(self, now: float, limit: int) -> RateLimitInfo:
        used = len(self._window)
        frees_in = (
            self._window[0] + self.config.rate_limit_window_seconds - now
            if used
            else self.config.rate_limit_window_seconds
        )
        return RateLimitInfo(
            limit=limit,
            remaining=max(limit - used, 0),
            reset_at=int(clock.now().timestamp() + max(frees_in, 0)),
            observed=used,
        )

    def _check_rate_limit(self) -> Fault | None:
        limit = self.config.rate_limit_per_minute
        if not limit:
            return None
        now = time.monotonic()
        self._expire_window(now)
        if len(self._window) >= limit:
            info = self._info(now, limit)
            frees_in = self._window[0] + self.config.rate_limit_window_seconds - now
            return Fault(
                "rate_limited",
                status=429,
                retry_after=self._scaled(frees_in),
                limit=limit,
                remaining=0,
                reset_at=info.reset_at,
                observed=info.observed + 1,
            )
        self._window.append(now)
        return None

    def _scaled(self, seconds: float) -> int:
        return max(0, math.ceil(seconds * self.config.retry_after_scale))
