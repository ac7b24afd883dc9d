"""One answer to "which stretch of time does this run cover?" (issue #16)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ps_integrations.exceptions import ConfigurationError
from ps_integrations.run_window import data_interval, interval_end, parse_moment, run_window

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
START, END = datetime(2026, 11, 23, 8, tzinfo=UTC), datetime(2026, 11, 23, 9, tzinfo=UTC)
SCHEDULED = {"data_interval_start": START, "data_interval_end": END}


def test_scheduled_runs_cover_their_interval_widened_by_the_overlap():
    window = run_window(SCHEDULED, overlap=timedelta(minutes=10), now=NOW)
    assert (window.start, window.end, window.source) == (START - timedelta(minutes=10), END, "data interval")


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"data_interval_start": None, "data_interval_end": None},
        {"data_interval_start": END, "data_interval_end": END},
    ],
)
def test_manual_runs_without_a_real_interval_take_the_default_stretch(context):
    window = run_window(context, default=timedelta(hours=1), now=NOW)
    assert (window.start, window.end, window.source) == (NOW - timedelta(hours=1), NOW, "default")
    assert data_interval(context) is None and interval_end(context) is None


def test_params_win_over_the_interval():
    window = run_window(SCHEDULED, since="2026-11-01", until="2026-11-02T12:00:00+01:00", now=NOW)
    assert (window.start, window.end, window.source) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 2, 11, tzinfo=UTC),
        "params",
    )
    assert run_window({}, since="2026-11-01T00:00:00Z", now=NOW).end == NOW
    assert run_window({}, until="2026-11-01T00:00:00Z", now=NOW).start.year == 2000


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        ("2026-11-02", "2026-11-01", "must be before"),
        ("2026-11-01", "2026-11-01", "must be before"),
        ("yesterday", None, "param since: 'yesterday' is not an ISO 8601"),
        (None, "2026-13-01", "param until"),
    ],
)
def test_bad_params_are_configuration_errors_naming_the_param(since, until, message):
    with pytest.raises(ConfigurationError, match=message):
        run_window({}, since=since, until=until, now=NOW)


def test_naive_moments_are_utc():
    assert parse_moment("2026-11-01T05:00", "since") == datetime(2026, 11, 1, 5, tzinfo=UTC)
