"""The business-day reader attacked against zoneinfo itself (issue #20): every DST change of a year in
Berlin, New York, Auckland, half-hour and 45-minute zones, Lord Howe's half-hour DST, Chatham; spentAt
as GitLab writes it (Z, +00:00, milliseconds, a server's offset); the server's midnight (a date-only
``/spend``) on every day of the year. The reader converts once per UTC hour: it must still agree."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ps_integrations.domain.timesheet_entries import local_day_reader

ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Pacific/Auckland",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
)
SERVERS = ("UTC", "Pacific/Auckland", "Asia/Kolkata", "America/New_York")


def renderings(moment: datetime, server: ZoneInfo) -> list[str]:
    return [
        moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        moment.isoformat(),
        moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        moment.astimezone(server).isoformat(timespec="seconds"),
    ]


@pytest.mark.parametrize("server_name", SERVERS)
@pytest.mark.parametrize("zone_name", ZONES)
def test_every_instant_is_on_its_business_day_and_a_server_midnight_on_the_servers_day(zone_name, server_name):
    zone, server = ZoneInfo(zone_name), ZoneInfo(server_name)
    reader = local_day_reader(zone_name, server_name)
    draw = random.Random(f"{zone_name}/{server_name}")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    moments = [start + timedelta(seconds=draw.randrange(366 * 86400)) for _ in range(1500)]
    moments += [m + timedelta(minutes=delta) for m in moments[:200] for delta in (-1, 1)]
    for moment in moments:
        expected = moment.astimezone(server).date() if moment.astimezone(server).time() == datetime.min.time() else None
        for text in renderings(moment, server):
            assert reader(text) == (expected or moment.astimezone(zone).date()), (text, zone_name, server_name)
    day = date(2026, 1, 1)
    while day < date(2027, 1, 1):
        midnight = datetime(day.year, day.month, day.day, tzinfo=server)
        if midnight.astimezone(UTC).astimezone(server) == midnight:  # a midnight that exists (not skipped by DST)
            for text in renderings(midnight.astimezone(UTC), server):
                assert reader(text) == day, (text, zone_name, server_name)
        day += timedelta(days=1)
