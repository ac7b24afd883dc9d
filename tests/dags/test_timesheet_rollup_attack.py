"""The timesheet roll-up attacked as a stranger would (issue #20): odd timelog sizes under every
rounding policy, the business day near midnight, and the files' figures checked against each other.
Real DAG runs against the sandbox, as tests/dags/test_timesheet_rollup.py."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ps_integrations import clock
from ps_integrations.exports import ExportStore
from ps_integrations.state_store import StateStore
from tests.dags.test_timesheet_rollup import (
    add_timelog,
    dag,  # noqa: F401 - the fixture
    finance_mails,
    last_summary,
    read,
    released_in,
    run,
    run_refused,
)

pytestmark = [pytest.mark.airflow, pytest.mark.calendar]

NUMERIC = {
    "approved_hours.csv": ("timelogs", "logged_minutes", "hours"),
    "utilization.csv": (
        "billable_hours",
        "logged_hours",
        "available_hours",
        "utilization_pct",
        "target_pct",
        "gap_pct",
    ),
    "engagement_progress.csv": (
        "budgeted_hours",
        "period_hours",
        "approved_hours_to_date",
        "percent_complete",
        "hourly_rate",
        "revenue_to_release",
    ),
}


def with_rounding(monkeypatch, policy: str) -> None:
    """The rules file as reviewed, with another rounding policy (the DAG imports load_rules at run time)."""
    import ps_integrations.jobs.timesheets as package

    real = package.load_rules
    monkeypatch.setattr(package, "load_rules", lambda *args: replace(real(*args), rounding=policy))


def assert_the_files_add_up(period: str) -> dict:
    """approved_hours.csv = utilization.csv = manifest.json per engineer; one format per column; no
    NaN/None/negative zero anywhere; every rounding within its bound."""
    folder = f"timesheets/{period}"
    exports = ExportStore.from_variables()
    manifest = json.loads(exports.read_bytes(folder, "manifest.json"))
    hours = read(folder, "approved_hours.csv")
    utilization = {row["engineer"]: row for row in read(folder, "utilization.csv")}
    checks = {check["engineer"]: check for check in manifest["rounding"]["engineers"]}
    assert set(checks) == set(utilization) >= {row["engineer"] for row in hours}
    for engineer, check in checks.items():
        theirs = [row for row in hours if row["engineer"] == engineer]
        rounded = sum((Decimal(row["hours"]) for row in theirs), Decimal(0))
        minutes = sum((Decimal(row["logged_minutes"]) for row in theirs), Decimal(0))
        assert Decimal(check["rounded_hours"]) == rounded == Decimal(utilization[engineer]["logged_hours"]), engineer
        assert Decimal(check["logged_minutes"]) == minutes, engineer
        assert check["timelogs"] == sum(int(row["timelogs"]) for row in theirs)
        assert abs(Decimal(check["difference_hours"])) <= Decimal(check["bound_hours"]), check
    assert manifest["rounding"]["within_bounds"] is True
    for name in ("approved_hours.csv", "utilization.csv", "engagement_progress.csv", "findings.csv"):
        text = exports.read_bytes(folder, name).decode("utf-8")
        for bad in ("nan", "None", "NaN", "inf"):
            assert f",{bad}," not in text and f",{bad}\r" not in text and f",{bad}\n" not in text, (name, bad)
        for column in NUMERIC.get(name, ()):
            cells = [row[column] for row in read(folder, name) if row[column] != ""]
            places = {len(cell.partition(".")[2]) for cell in cells}
            assert len(places) <= 1, (name, column, cells)
            assert not [cell for cell in cells if Decimal(cell) == 0 and cell.startswith("-")], (name, column)
    return manifest


ODD_SIZES = [  # (seconds, UTC moment) on days the seed leaves empty (a Saturday and a Sunday of W41)
    (0, datetime(2026, 10, 10, 8, 0, tzinfo=UTC)),
    (1, datetime(2026, 10, 10, 8, 1, tzinfo=UTC)),
    (450, datetime(2026, 10, 10, 8, 2, tzinfo=UTC)),  # 7:30 = 0.125 h: half a quarter
    (-900, datetime(2026, 10, 10, 8, 3, tzinfo=UTC)),  # a correction
    *[(360, datetime(2026, 10, 11, 8, minute, tzinfo=UTC)) for minute in range(10)],  # ten 6-minute entries
    (1350, datetime(2026, 10, 11, 9, 0, tzinfo=UTC)),  # 22:30 = 0.375 h
]


@pytest.mark.parametrize("policy", ["per_day", "per_entry", "none"])
def test_odd_sizes_add_up_in_every_file_under_every_policy(dag, product_env, monkeypatch, policy):  # noqa: F811
    with_rounding(monkeypatch, policy)
    engineer = released_in("2026-W41")[0]
    for seconds, moment in ODD_SIZES:
        add_timelog(product_env, engineer, seconds, moment)

    run(dag, period="2026-W41")

    manifest = assert_the_files_add_up("2026-W41")
    assert manifest["rounding"]["policy"] == policy
    rows = read("timesheets/2026-W41", "approved_hours.csv")
    saturday = next(r for r in rows if r["engineer"] == engineer and r["date"] == "2026-10-10")
    sunday = next(r for r in rows if r["engineer"] == engineer and r["date"] == "2026-10-11")
    assert (saturday["timelogs"], saturday["logged_minutes"]) == ("4", "-7.48")  # 0 + 1 s + 7:30 - 15:00
    expected = {"per_day": ("0.00", "1.50"), "per_entry": ("0.00", "0.50"), "none": ("-0.12", "1.38")}
    saturday_hours, sunday_hours = expected[policy]
    # per_day: -449 s is -0.1247 h, nearer 0 than -0.25; per_entry: 0 + 0 + 0.25 - 0.25; none: to the hundredth
    assert Decimal(saturday["hours"]) == Decimal(saturday_hours) and not saturday["hours"].startswith("-0.00")
    assert (sunday["timelogs"], sunday["logged_minutes"], sunday["hours"]) == ("11", "82.50", sunday_hours)


def pin_clock(monkeypatch, moment: datetime) -> None:
    monkeypatch.setenv(clock.PIN_VARIABLE, clock.pin_value(moment))


def test_the_week_ends_at_midnight_in_the_business_zone_not_in_utc(product_env, monkeypatch):
    from tests.dags.test_timesheet_rollup import approve, parse_dag

    monkeypatch.setenv("PS_BUSINESS_TIMEZONE", "Pacific/Auckland")  # NZDT, UTC+13
    auckland = parse_dag()
    engineer = released_in("2026-W41")[0]
    add_timelog(product_env, engineer, 2 * 3600, datetime(2026, 11, 29, 10, 45, tzinfo=UTC))  # Sun 23:45 NZ: W48
    add_timelog(product_env, engineer, 3 * 3600, datetime(2026, 11, 29, 11, 15, tzinfo=UTC))  # Mon 00:15 NZ: W49
    approve(engineer, "2026-W48", "ManagerCertifiedTimesheet", "HeadOfPSApproved")

    pin_clock(monkeypatch, datetime(2026, 11, 29, 10, 50, tzinfo=UTC))  # Sunday 23:50 in Auckland
    run_refused(auckland, period="2026-W48")
    run_refused(auckland, period_start="2026-11-23", period_end="2026-11-29")
    run(auckland)  # the schedule's path: W48 is not over in Auckland
    assert "2026-W48" not in ExportStore.from_variables().list_folder("timesheets")
    assert all("2026-W48" not in mail["subject"] for mail in finance_mails(product_env))
    assert not [row for row in StateStore().fetch_all("timesheets/all_locks") if row["period"] == "2026-W48"]

    pin_clock(monkeypatch, datetime(2026, 11, 29, 11, 20, tzinfo=UTC))  # Monday 00:20 in Auckland, Sunday in UTC
    run(auckland, period="2026-W48")
    mine = [r for r in read("timesheets/2026-W48", "approved_hours.csv") if r["engineer"] == engineer]
    sunday = [r for r in mine if r["date"] == "2026-11-29"]
    assert [r["logged_minutes"] for r in sunday if r["category"] == "PS Internal"] == ["120.00"]
    assert "2026-11-30" not in {r["date"] for r in mine}  # Monday in Auckland: W49, not exported
    assert_the_files_add_up("2026-W48")
    assert "2026-W48" in last_summary()
