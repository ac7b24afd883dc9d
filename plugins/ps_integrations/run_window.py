"""Which stretch of time a run covers: the one answer every DAG uses.

Scheduled runs cover their data interval (``CronDataIntervalTimetable``); manual runs may have none
(``logical_date=None``) or a zero-width one, and then take ``since``/``until`` params or a default
stretch ending now. Backfills are scheduled runs of past intervals, so they decide like the original.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ps_integrations import clock
from ps_integrations.exceptions import ConfigurationError

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RunWindow:
    start: datetime
    end: datetime
    source: str  # "params", "data interval" or "default"

    def describe(self) -> str:
        return f"window {self.start.isoformat()} to {self.end.isoformat()} ({self.source})"


def data_interval(context: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    """The run's data interval when it has a real one (not a manual run's missing or zero-width one)."""
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None or end <= start:
        return None
    return start, end


def interval_end(context: Mapping[str, Any]) -> datetime | None:
    """The end of the run's real data interval, or None (a manual run)."""
    interval = data_interval(context)
    return interval[1] if interval else None


def parse_moment(text: str, name: str) -> datetime:
    """An ISO 8601 param as an aware moment (UTC when it names no offset); ConfigurationError otherwise."""
    try:
        moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(f"param {name}: {text!r} is not an ISO 8601 date or moment") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_window(
    context: Mapping[str, Any],
    *,
    since: str | None = None,
    until: str | None = None,
    default: timedelta = timedelta(days=1),
    overlap: timedelta = timedelta(0),
    now: datetime | None = None,
) -> RunWindow:
    """The window of a run.

    :param since: ``since`` param (ISO 8601); with ``until``, or alone (then up to now), it wins.
    :param until: ``until`` param; alone, the window starts at :data:`EARLIEST`.
    :param default: the stretch ending now for a manual run without params or interval.
    :param overlap: how far a scheduled window reaches back before its interval (late-arriving records).
    :param now: the moment "now" (default: the product clock).
    """
    moment = now or clock.now()
    if since or until:
        start = parse_moment(since, "since") if since else EARLIEST
        end = parse_moment(until, "until") if until else moment
        if start >= end:
            raise ConfigurationError(f"params: since ({start.isoformat()}) must be before until ({end.isoformat()})")
        return RunWindow(start, end, "params")
    interval = data_interval(context)
    if interval is not None:
        return RunWindow(interval[0] - overlap, interval[1], "data interval")
    return RunWindow(moment - default, moment, "default")
