"""The product's one clock: every "now" and every business "today" comes from here.

Production reads the system clock. Tests (and a demo of a chosen moment) pin it with the
environment variable ``PS_PINNED_NOW``: ``<ISO 8601 moment>@<epoch seconds>`` means "at that
epoch second of the real clock it was that moment". The pinned clock then advances with real time,
the same in every process that inherits the variable (Airflow's task subprocesses, the sandbox), so
waits still end, timestamps still order, and nothing depends on the date the machine thinks it is.
Domain code never calls this: it takes ``now``/``today`` as arguments.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

PIN_VARIABLE = "PS_PINNED_NOW"


def pin_value(moment: datetime, anchor: float | None = None) -> str:
    """The ``PS_PINNED_NOW`` value that makes the clock read ``moment`` now (or at ``anchor``)."""
    if moment.tzinfo is None:
        raise ValueError(f"{PIN_VARIABLE}: the pinned moment needs a time zone, got {moment.isoformat()}")
    return f"{moment.isoformat()}@{time.time() if anchor is None else anchor:.6f}"


def _offset_seconds(value: str) -> float:
    moment_text, separator, anchor_text = value.rpartition("@")
    if not separator:
        raise ValueError(f"{PIN_VARIABLE} must be '<ISO 8601 moment>@<epoch seconds>', got {value!r}")
    try:
        moment = datetime.fromisoformat(moment_text)
        anchor = float(anchor_text)
    except ValueError as error:
        raise ValueError(f"{PIN_VARIABLE} must be '<ISO 8601 moment>@<epoch seconds>', got {value!r}") from error
    if moment.tzinfo is None:
        raise ValueError(f"{PIN_VARIABLE}: the pinned moment needs a time zone, got {moment_text!r}")
    return moment.timestamp() - anchor


def now() -> datetime:
    """The current moment, time-zone aware, in UTC."""
    pinned = os.environ.get(PIN_VARIABLE)
    seconds = time.time() + (_offset_seconds(pinned) if pinned else 0.0)
    return datetime.fromtimestamp(seconds, UTC)


def now_iso() -> str:
    """``now()`` as stored in the state database (ISO 8601, seconds)."""
    return now().isoformat(timespec="seconds")


def today(timezone: str) -> date:
    """The current date in ``timezone`` (the business time zone, for business dates)."""
    return now().astimezone(ZoneInfo(timezone)).date()
