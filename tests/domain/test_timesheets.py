"""Timesheet roll-up rules against hand-computed cases."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

import pytest

from ps_integrations.domain.timesheet_approvals import ApprovalIssue, ApprovalLabels, approved_periods, read_approval
from ps_integrations.domain.timesheet_certification import (
    certification_description,
    certification_digest,
    certification_marker,
    certification_rows,
    find_certification,
)
from ps_integrations.domain.timesheet_entries import local_date
from ps_integrations.domain.timesheets import (
    CategoryRules,
    Entry,
    RollupRules,
    adjustments,
    category_of,
    line_hours,
    parse_period_key,
    period_of,
    progress,
    round_hours,
    totals,
    utilization,
    working_days,
)

LABELS = ApprovalLabels()
ENGINEERS = {"amara.ps1", "bjorn.ps2"}


def secs(hours) -> int:
    """Hours (as the hand computation writes them) -> the seconds GitLab logs."""
    return int(Decimal(str(hours)) * 3600)


@pytest.mark.parametrize(
    ("seconds", "hours"),
    [
        (900, "0.25"),
        (360, "0"),
        (450, "0.25"),
        (449, "0"),
        (5400, "1.5"),
        (-900, "-0.25"),
        (-450, "-0.25"),
        (3600 * 8, "8"),
    ],
)
def test_quarter_hour_rounding_half_up(seconds, hours):
    assert round_hours(seconds) == Decimal(hours)


def test_periods():
    assert period_of(date(2026, 11, 15)).key == "2026-W46"  # a Sunday belongs to the week that began Monday the 9th
    assert period_of(date(2026, 11, 16)).start == date(2026, 11, 16)
    assert period_of(date(2026, 11, 15), "month").key == "2026-11"
    assert period_of(date(2026, 12, 31), "month").end == date(2027, 1, 1)
    assert parse_period_key("2026-W46") == period_of(date(2026, 11, 9))
    assert parse_period_key("2027-01") == period_of(date(2027, 1, 31), "month")
    assert period_of(date(2026, 12, 31)).key == "2026-W53"


@pytest.mark.parametrize(
    ("utc", "zone", "expected"),
    [
        ("2026-11-15T23:30:00+00:00", "Europe/Berlin", date(2026, 11, 16)),  # Sunday night UTC is Monday in Berlin
        ("2026-11-16T04:30:00+00:00", "America/Los_Angeles", date(2026, 11, 15)),
        ("2026-03-29T00:30:00+00:00", "Europe/Berlin", date(2026, 3, 29)),  # the night the clocks go forward
        ("2026-10-25T22:59:00+00:00", "Europe/Berlin", date(2026, 10, 25)),  # first hour after DST ends: UTC+1
        ("2026-10-25T23:00:00+00:00", "Europe/Berlin", date(2026, 10, 26)),
    ],
)
def test_business_dates_across_midnight_and_dst(utc, zone, expected):
    assert local_date(datetime.fromisoformat(utc), zone) == expected


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="time zone"):
        local_date(datetime(2026, 1, 1), "UTC")


@pytest.mark.parametrize(
    ("labels", "assignees", "level", "trusted", "problem"),
    [
        (("timesheet::2026-W46", "ManagerCertifiedTimesheet"), ("amara.ps1",), 1, True, ""),
        (("timesheet::2026-W46", "ManagerCertifiedTimesheet", "HeadOfPSApproved"), ("amara.ps1",), 2, True, ""),
        (("timesheet::2026-W46",), ("amara.ps1",), 0, True, ""),
        (("timesheet::2026-W46", "HeadOfPSApproved"), ("amara.ps1",), 1, False, "out of order"),
        (("timesheet::2026-W46", "ManagerCertifiedTimesheet"), (), 1, False, "no engineer"),
        (("ManagerCertifiedTimesheet",), ("amara.ps1",), 1, False, "no period"),
        (("timesheet::2026-W46", "ManagerCertifiedTimesheet"), ("finance-ops",), 1, False, "not a PS engineer"),
    ],
)
def test_approvals_and_when_they_are_not_trusted(labels, assignees, level, trusted, problem):
    approval = read_approval(ApprovalIssue(7, labels, assignees), LABELS, ENGINEERS)
    assert (approval.level, approval.trusted) == (level, trusted)
    assert problem in approval.problem


def test_only_trusted_approvals_at_the_release_level_release_hours():
    approvals = [
        read_approval(
            ApprovalIssue(1, ("timesheet::2026-W45", "ManagerCertifiedTimesheet", "HeadOfPSApproved"), ("amara.ps1",)),
            LABELS,
            ENGINEERS,
        ),
        read_approval(
            ApprovalIssue(2, ("timesheet::2026-W46", "ManagerCertifiedTimesheet"), ("amara.ps1",)), LABELS, ENGINEERS
        ),
        read_approval(ApprovalIssue(3, ("timesheet::2026-W45", "HeadOfPSApproved"), ("bjorn.ps2",)), LABELS, ENGINEERS),
    ]
    assert set(approved_periods(approvals, release_level=2)) == {("amara.ps1", "2026-W45")}
    assert set(approved_periods(approvals, release_level=1)) == {("amara.ps1", "2026-W45"), ("amara.ps1", "2026-W46")}


def test_categories():
    assert category_of(None, is_engagement=True) == "Project Work"
    assert category_of("PTO/Holidays", is_engagement=False) == "PTO/Holidays"
    assert category_of("Something else", is_engagement=False) == "Uncategorised"


def test_utilization_hand_computed():
    week = period_of(date(2026, 11, 9))
    assert working_days(week) == 5
    # 5 days x 8 h = 40 h, minus 8 h PTO = 32 h available; 24 billable -> 75%, target 70% -> +5 points
    result = utilization("amara.ps1", "engineer", Decimal(24), Decimal(8), week)
    assert (result.available_hours, result.utilization, result.target, result.gap) == (
        Decimal(32),
        Decimal("0.75"),
        Decimal("0.70"),
        Decimal("0.05"),
    )
    trainer = utilization("bjorn.ps2", "trainer", Decimal(11), Decimal(0), week, holidays=[date(2026, 11, 11)])
    assert (trainer.available_hours, trainer.utilization, trainer.gap) == (
        Decimal(32),
        Decimal("0.3438"),
        Decimal("-0.2062"),
    )
    away = utilization("bjorn.ps2", "trainer", Decimal(0), Decimal(40), week)
    assert (away.available_hours, away.utilization, away.gap) == (Decimal(0), None, None)


def test_progress_is_capped_and_flagged():
    assert progress("e", Decimal(40), Decimal(10)).percent_complete == Decimal("25.0")
    over = progress("e", Decimal(40), Decimal(50))
    assert (over.percent_complete, over.over_budget) == (Decimal("100.0"), True)
    assert progress("e", None, Decimal(5)).percent_complete is None


def test_totals_net_negative_corrections_and_list_them():
    entries = [
        Entry("1", "amara.ps1", date(2026, 11, 9), "https://x/1", "Project Work", secs("2.5")),
        Entry("2", "amara.ps1", date(2026, 11, 9), "https://x/1", "Project Work", secs("-0.25")),
        Entry("3", "amara.ps1", date(2026, 11, 10), "", "PTO/Holidays", secs(8)),
    ]
    result = totals(entries)
    assert result.billable["amara.ps1"] == Decimal("2.25")
    assert result.pto["amara.ps1"] == Decimal(8)
    assert [entry.timelog_id for entry in result.corrections] == ["2"]


def test_adjustments_to_a_locked_period():
    exported = [
        Entry("1", "amara.ps1", date(2026, 11, 9), "e1", "Project Work", secs(2)),
        Entry("2", "amara.ps1", date(2026, 11, 10), "e1", "Project Work", secs(3)),
    ]
    current = [
        Entry("1", "amara.ps1", date(2026, 11, 9), "e1", "Project Work", secs("2.5")),
        Entry("3", "amara.ps1", date(2026, 11, 11), "e1", "Project Work", secs(1)),
    ]
    assert [(a.timelog_id, a.change, a.original_hours, a.new_hours) for a in adjustments(exported, current)] == [
        ("1", "edited", Decimal(2), Decimal("2.5")),
        ("2", "removed", Decimal(3), None),
        ("3", "added", None, Decimal(1)),
    ]


# --- issue #20 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "seconds", "hours"),
    [
        ("per_day", [360] * 10, "1.00"),
        ("per_day", [480] * 10, "1.25"),
        ("per_entry", [360] * 10, "0.00"),
        ("per_entry", [480] * 10, "2.50"),
        ("none", [480] * 10, "1.33"),
        ("per_day", [3600, -900], "0.75"),
    ],
)
def test_line_hours_under_each_policy(policy, seconds, hours):
    assert line_hours(policy, seconds) == Decimal(hours)


def test_an_unknown_rounding_policy_is_refused():
    with pytest.raises(ValueError, match="rounding must be one of per_day, per_entry, none"):
        RollupRules.from_mapping({"rounding": "per_week"})
    assert RollupRules.from_mapping({}).rounding == "per_day"


@pytest.mark.parametrize(
    ("engagement", "parent", "labels", "url", "expected"),
    [
        (True, None, (), "", "Project Work"),
        (False, "PS Internal", (), "", "PS Internal"),  # the epic, where the instance has epics
        (False, None, ("time-category", "timesheet-category::PTO/Holidays"), "", "PTO/Holidays"),  # Free: a label
        (False, None, ("Global Company Meetings",), "", "Global Company Meetings"),
        (False, None, (), "https://x/issues/7", "Internal Assisted"),  # configured mapping
        (False, "PS Internal", (), "https://x/issues/7", "Internal Assisted"),  # the mapping is explicit: it wins
        (False, None, ("bug",), "", "Uncategorised"),
    ],
)
def test_categories_on_any_gitlab(engagement, parent, labels, url, expected):
    rules = CategoryRules(by_issue={"https://x/issues/7": "Internal Assisted"})
    assert rules.category(engagement, parent, labels, url) == expected


def test_a_certification_issue_names_its_engineer_in_the_marker_and_is_assigned_to_the_manager():
    marker = certification_marker("amara.ps1", "2026-W47", "0a1b")
    issue = ApprovalIssue(
        9,
        ("timesheet::2026-W47", "ManagerCertifiedTimesheet"),
        ("delivery-manager-1",),
        certified_engineer="amara.ps1",
        description=f"table\n{marker}",
    )
    approval = read_approval(issue, LABELS, ENGINEERS)
    assert (approval.engineer, approval.period, approval.level, approval.trusted) == ("amara.ps1", "2026-W47", 1, True)
    assert find_certification(issue.description) == ("amara.ps1", "2026-W47", "0a1b")
    stranger = read_approval(replace(issue, certified_engineer="finance-ops"), LABELS, ENGINEERS)
    assert not stranger.trusted and "finance-ops is not a PS engineer" in stranger.problem


def test_the_certification_table_adds_up_to_the_export():
    week = period_of(date(2026, 11, 16))
    entries = [Entry(str(n), "amara.ps1", date(2026, 11, 17), "https://x/ps", "PS Internal", 360) for n in range(10)]
    entries.append(Entry("20", "amara.ps1", date(2026, 11, 18), "https://x/ps", "PS Internal", 480))
    entries.append(Entry("21", "amara.ps1", date(2026, 11, 18), "https://x/e1", "Project Work", 7200))
    rows = certification_rows(entries, "per_day")
    assert [(r.category, r.timelogs, r.seconds, r.hours) for r in rows] == [
        ("PS Internal", 11, 4080, Decimal("1.25")),  # 1.00 on the 17th + 0.25 (8 minutes) on the 18th
        ("Project Work", 1, 7200, Decimal("2.00")),
    ]
    text = certification_description(
        "amara.ps1", "delivery-manager-1", week, rows, "[s.xlsx](/uploads/x/s.xlsx)", LABELS, "per_day"
    )
    assert "| PS Internal | https://x/ps | 11 | 1:08 | 1.25 |" in text
    assert "| **Total** | | 12 | 3:08 | **3.25** |" in text
    assert "add the label `ManagerCertifiedTimesheet`" in text
    assert find_certification(text) == ("amara.ps1", "2026-W47", certification_digest(rows))
    assert certification_digest(rows) != certification_digest(rows[:1])
    empty = certification_description("dara.ps4", "delivery-manager-1", week, [], "-", LABELS, "per_day")
    assert "No time was logged in this period." in empty


def test_a_tiny_correction_is_written_as_zero_not_minus_zero():
    assert [format(value, "f") for value in (round_hours(-100), line_hours("none", [-10]))] == ["0.00", "0.00"]


def test_local_date_is_the_roll_ups_fast_reader_at_every_minute_of_both_dst_nights():
    """One implementation (#16): ``local_date`` is the hour-cached reader the roll-up dates timelogs with;
    pinned here against zoneinfo's own conversion, minute by minute around both changes."""
    from datetime import UTC, timedelta
    from zoneinfo import ZoneInfo

    from ps_integrations.domain.timesheet_entries import local_day_reader

    for zone in ("Europe/Berlin", "America/New_York", "Pacific/Auckland", "Asia/Kolkata"):
        read = local_day_reader(zone)
        for night in (datetime(2026, 3, 28, 20, tzinfo=UTC), datetime(2026, 10, 24, 20, tzinfo=UTC)):
            for minute in range(0, 36 * 60, 7):
                moment = night + timedelta(minutes=minute, seconds=31)
                expected = moment.astimezone(ZoneInfo(zone)).date()
                assert read(moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")) == expected, (zone, moment)
                assert local_date(moment, zone) == expected


def test_a_date_only_entry_keeps_the_servers_day_also_on_half_hour_servers_and_other_moments_the_business_day():
    """GitLab stores ``/spend 1h 2026-10-05`` at midnight of the *server's* zone: that moment keeps the
    server's date (also where midnight is half past a UTC hour: Asia/Kolkata, America/St_Johns); a
    minute or a second later it is an ordinary moment, dated in the business zone."""
    from datetime import UTC, date, timedelta
    from zoneinfo import ZoneInfo

    from ps_integrations.domain.timesheet_entries import local_day_reader

    servers = ("UTC", "Pacific/Auckland", "Asia/Kolkata", "America/St_Johns", "Asia/Kathmandu")
    for server in servers:
        for business in ("UTC", "Europe/Berlin", "America/Los_Angeles"):
            read = local_day_reader(business, server)
            for day in (date(2026, 3, 27) + timedelta(days=n) for n in range(4)):
                midnight = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(server)).astimezone(UTC)
                for text in (
                    midnight.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    midnight.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                    midnight.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                ):
                    assert read(text) == day, (server, business, text)
                for later in (timedelta(minutes=1), timedelta(seconds=1), timedelta(hours=5, minutes=59)):
                    moment = midnight + later
                    expected = moment.astimezone(ZoneInfo(business)).date()
                    assert read(moment.strftime("%Y-%m-%dT%H:%M:%SZ")) == expected, (server, business, moment)


def test_percent_complete_of_a_tiny_negative_correction_is_zero_not_minus_zero():
    from ps_integrations.domain.timesheets import progress

    assert format(progress("e", Decimal(400), Decimal("-0.01")).percent_complete, "f") == "0.0"
    assert format(progress("e", Decimal(400), Decimal("-2.00")).percent_complete, "f") == "-0.5"
    assert format(progress("e", Decimal(400), Decimal(500)).percent_complete, "f") == "100.0"
