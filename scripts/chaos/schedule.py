"""Fault schedules drawn from a seeded generator: what goes wrong in each attempt of a sequence.

Pure: no sandbox, no Airflow. A schedule is a function of (sequence seed, the DAG's reference call
counts), so printing the seed is enough to replay it (``make chaos SEED=... DAG=...``).

Fault kinds (the names the report counts):
- ``rate_limited``: the next 1-3 calls of an endpoint answer 429 with ``Retry-After``;
- ``server_error``: the next 1-2 calls of an endpoint answer 500/502/503;
- ``latency_spike``: one call of an endpoint is answered 0.3-1.5 s late (its effect happens first);
- ``session_expired``: Salesforce/Zuora sessions are dropped and the next call of an endpoint
  answers as for an expired session (the client logs in again);
- ``smtp_delay``: the SMTP sink keeps each message, then waits 0.2-1 s before its 250;
- ``answer_lost``: one call of a write endpoint takes effect, then answers 500/502/503/504 (a proxy
  giving up on an upstream that wrote): a client that re-sends it writes twice;
- ``kill``: SIGKILL of the process running the tasks, either ``held`` - while a write endpoint holds
  its answer (the remote write is done, the client has not learned it: the crash between a remote
  write and its local record) - or ``timed`` - at a moment drawn from the reference run's duration.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

FAULT_KINDS = ("rate_limited", "server_error", "latency_spike", "session_expired", "smtp_delay", "answer_lost")
# Endpoints whose call changes the remote system: a held answer on one of these is a write done but
# not yet known to the client.
WRITE_OPERATIONS: Mapping[str, frozenset[str]] = {
    "gitlab": frozenset({"create_issue", "update_issue", "create_note", "issue_links", "epics"}),
    "salesforce": frozenset({"create_sobject", "update_sobject", "update_collection", "post_feed_element"}),
    "zuora": frozenset({"create", "update"}),
}
SESSION_SYSTEMS = frozenset({"salesforce", "zuora"})
# Faulted attempts per step: the first run and Airflow's two retries (``retries=2`` on every DAG).
MAX_ATTEMPTS = 3
# A held answer is held far longer than any run takes: only the kill ends it.
HOLD_MS = 120_000


@dataclass(frozen=True)
class Fault:
    """One fault of an attempt. ``system``/``endpoint`` are empty for SMTP."""

    kind: str
    system: str = ""
    endpoint: str = ""
    count: int = 1
    after: int = 0
    status: int | None = None
    delay_ms: int = 0

    def describe(self) -> str:
        where = f"{self.system}.{self.endpoint}" if self.endpoint else self.system or "smtp"
        extra = [f"count={self.count}" if self.count != 1 else "", f"after={self.after}" if self.after else ""]
        extra += [f"status={self.status}" if self.status else "", f"delay={self.delay_ms}ms" if self.delay_ms else ""]
        return f"{self.kind}@{where}" + (f"({', '.join(item for item in extra if item)})" if any(extra) else "")


@dataclass(frozen=True)
class Kill:
    """SIGKILL of the task process: ``held`` on the ``after``-th call of a write endpoint (0-based),
    or ``timed`` ``at_seconds`` after the attempt started."""

    mode: str
    system: str = ""
    endpoint: str = ""
    after: int = 0
    at_seconds: float = 0.0

    def describe(self) -> str:
        if self.mode == "held":
            return f"kill@{self.system}.{self.endpoint}#{self.after + 1}(held answer)"
        return f"kill@{self.at_seconds:.2f}s"


@dataclass(frozen=True)
class Attempt:
    faults: tuple[Fault, ...] = ()
    kill: Kill | None = None

    def describe(self) -> str:
        parts = [fault.describe() for fault in self.faults] + ([self.kill.describe()] if self.kill else [])
        return ", ".join(parts) or "no faults"


@dataclass(frozen=True)
class StepSchedule:
    """The faulted attempts of one step; the harness stops early when one succeeds, then runs clean."""

    attempts: tuple[Attempt, ...]


@dataclass(frozen=True)
class Schedule:
    seed: int
    steps: tuple[StepSchedule, ...] = field(default_factory=tuple)

    def describe(self) -> list[str]:
        lines = []
        for step_number, step in enumerate(self.steps, 1):
            for attempt_number, attempt in enumerate(step.attempts, 1):
                lines.append(f"step {step_number} attempt {attempt_number}: {attempt.describe()}")
        return lines


@dataclass(frozen=True)
class StepProfile:
    """What the reference run of one step did: calls per system and endpoint, and how long it took."""

    calls: Mapping[str, Mapping[str, int]]
    seconds: float
    mails: int


def draw_schedule(seed: int, profiles: list[StepProfile], kill_share: float = 0.8) -> Schedule:
    """The schedule of one sequence: per step up to ``MAX_ATTEMPTS`` faulted attempts.

    :param seed: the sequence seed; the same seed and profiles give the same schedule.
    :param profiles: the reference run's profile of each step (faults only hit endpoints it called).
    :param kill_share: the chance that an attempt ends in a SIGKILL.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible schedules, not secrets
    return Schedule(seed, tuple(_draw_step(rng, profile, kill_share) for profile in profiles))


def _draw_step(rng: random.Random, profile: StepProfile, kill_share: float) -> StepSchedule:
    attempts = []
    for number in range(MAX_ATTEMPTS):
        kill = _draw_kill(rng, profile) if rng.random() < kill_share / (number + 1) else None
        faults = tuple(_draw_fault(rng, profile) for _ in range(rng.randint(1, 4)))
        attempts.append(Attempt(tuple(fault for fault in faults if fault is not None), kill))
    return StepSchedule(tuple(attempts))


def _endpoints(profile: StepProfile, systems: frozenset[str] | None = None) -> list[tuple[str, str, int]]:
    return sorted(
        (system, endpoint, count)
        for system, calls in profile.calls.items()
        if systems is None or system in systems
        for endpoint, count in calls.items()
        if count > 0
    )


def _draw_fault(rng: random.Random, profile: StepProfile) -> Fault | None:
    kinds = [kind for kind in FAULT_KINDS if _possible(kind, profile)]
    if not kinds:
        return None
    kind = rng.choice(kinds)
    if kind == "smtp_delay":
        return Fault(kind, delay_ms=rng.randrange(200, 1000, 100))
    candidates = (
        _writes(profile)
        if kind == "answer_lost"
        else _endpoints(profile, SESSION_SYSTEMS if kind == "session_expired" else None)
    )
    system, endpoint, count = rng.choice(candidates)
    after = rng.randrange(count)
    if kind == "rate_limited":
        return Fault(kind, system, endpoint, count=rng.randint(1, 3), after=after, status=429)
    if kind == "server_error":
        return Fault(kind, system, endpoint, count=rng.randint(1, 2), after=after, status=rng.choice((500, 502, 503)))
    if kind == "latency_spike":
        return Fault(kind, system, endpoint, after=after, delay_ms=rng.randrange(300, 1500, 100))
    if kind == "answer_lost":
        return Fault(kind, system, endpoint, after=after, status=rng.choice((500, 502, 503, 504)))
    return Fault(kind, system, endpoint, after=after)


def _possible(kind: str, profile: StepProfile) -> bool:
    if kind == "smtp_delay":
        return profile.mails > 0
    if kind == "session_expired":
        return bool(_endpoints(profile, SESSION_SYSTEMS))
    if kind == "answer_lost":
        return bool(_writes(profile))
    return bool(_endpoints(profile))


def _writes(profile: StepProfile) -> list[tuple[str, str, int]]:
    return [
        (system, endpoint, count)
        for system, endpoint, count in _endpoints(profile)
        if endpoint in WRITE_OPERATIONS.get(system, frozenset())
    ]


def _draw_kill(rng: random.Random, profile: StepProfile) -> Kill:
    writes = _writes(profile)
    if (writes or profile.mails) and rng.random() < 0.7:
        targets = writes + ([("smtp", "data", profile.mails)] if profile.mails else [])
        system, endpoint, count = rng.choice(targets)
        # early calls rather than late ones: faults before them can cut an attempt short
        return Kill("held", system, endpoint, after=rng.randrange(max(count // 2, 1)))
    return Kill("timed", at_seconds=round(rng.uniform(0.05, 0.7) * profile.seconds, 2))
