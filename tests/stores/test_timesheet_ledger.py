"""The timesheet export ledger on both state-store backends: locks, exported entries, adjustments."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from ps_integrations.domain.timesheets import Entry, adjustments
from ps_integrations.exports import Column, csv_file, json_file
from ps_integrations.stores.timesheets import ExportLedger

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
WEEK = "2026-W46"


def secs(hours) -> int:
    """Hours (as the hand computation writes them) -> the seconds GitLab logs."""
    return int(Decimal(str(hours)) * 3600)


@pytest.fixture(autouse=True)
def _schema(store):
    store.apply_schema()


def entry(timelog_id, hours, day=date(2026, 11, 9)):
    return Entry(timelog_id, "amara.ps1", day, "https://x/1", "Project Work", secs(hours))


def test_lock_is_idempotent_and_keeps_what_was_exported(store):
    ledger = ExportLedger(store)
    exported = [entry("1", "2"), entry("2", "3.25")]
    ledger.lock(WEEK, "amara.ps1", 2, exported, "run-1", NOW)
    ledger.lock(WEEK, "amara.ps1", 3, [entry("1", "9")], "run-2", NOW)  # a re-run changes nothing

    assert ledger.locked_engineers(WEEK) == {"amara.ps1"}
    assert ledger.exported_entries(WEEK) == exported


def test_a_change_to_a_locked_period_is_one_adjustment_reported_in_the_next_export(store):
    ledger = ExportLedger(store)
    ledger.lock(WEEK, "amara.ps1", 2, [entry("1", "2"), entry("2", "3")], "run-1", NOW)
    current = [entry("1", "2.5"), entry("3", "1", date(2026, 11, 10))]
    changes = adjustments(ledger.exported_entries(WEEK), current)

    ledger.record_adjustments(WEEK, changes, NOW)
    ledger.record_adjustments(WEEK, changes, NOW)  # seen again by the next run: still once
    assert ledger.pending_adjustment_count() == 3
    reported = ledger.attach_pending("timesheets/2026-W47")

    assert [(row.timelog_id, row.change, row.original_hours, row.new_hours) for row in reported] == [
        ("1", "edited", "2.00", "2.50"),
        ("2", "removed", "3.00", ""),
        ("3", "added", "", "1.00"),
    ]
    ledger.record_adjustments(WEEK, changes, NOW)
    assert ledger.pending_adjustment_count() == 0
    assert ledger.attach_pending("timesheets/2026-W48") == []
    assert ledger.reported_in("timesheets/2026-W47") == reported


def test_exported_timelogs_keep_their_seconds_and_hours_to_date_are_rounded_per_line(store):
    ledger = ExportLedger(store)
    six_minutes = [entry(str(n), "0.1") for n in range(10)]  # ten 6-minute entries on one day
    ledger.lock(WEEK, "amara.ps1", 2, six_minutes, "run-1", NOW)

    assert [e.seconds for e in ledger.exported_entries(WEEK)] == [360] * 10
    assert ledger.billable_before(date(2026, 12, 1), "Project Work", "per_day") == {"https://x/1": Decimal("1.00")}
    assert ledger.billable_before(date(2026, 12, 1), "Project Work", "per_entry") == {"https://x/1": Decimal("0.00")}


def test_rows_exported_before_seconds_were_kept_are_read_from_their_hours(store):
    store.execute(
        "timesheets/record_entry",
        {
            "period": WEEK,
            "engineer": "amara.ps1",
            "timelog_id": "9",
            "day": "2026-11-17",
            "engagement": "https://x/1",
            "category": "Project Work",
            "hours": "1.25",
            "seconds": None,
        },
    )
    assert [e.seconds for e in ExportLedger(store).exported_entries(WEEK)] == [4500]


def test_timelogs_exported_before_seconds_were_kept_are_not_adjustments_when_they_still_round_the_same(store):
    from ps_integrations.domain.timesheet_export import as_exported_before_seconds

    for timelog_id, hours in (("1", "0.00"), ("2", "0.25")):  # a 6-minute and an 8-minute entry, rounded as of #8
        store.execute(
            "timesheets/record_entry",
            {
                "period": WEEK,
                "engineer": "amara.ps1",
                "timelog_id": timelog_id,
                "day": "2026-11-09",
                "engagement": "https://x/1",
                "category": "Project Work",
                "hours": hours,
                "seconds": None,
            },
        )
    ledger = ExportLedger(store)
    legacy = ledger.legacy_rounded_hours(WEEK)
    now = [
        Entry("1", "amara.ps1", date(2026, 11, 9), "https://x/1", "Project Work", 360),
        Entry("2", "amara.ps1", date(2026, 11, 9), "https://x/1", "Project Work", 1800),  # edited to 30 minutes
    ]
    changes = adjustments(ledger.exported_entries(WEEK), [as_exported_before_seconds(e, legacy) for e in now])
    assert [(c.timelog_id, c.change, c.original_hours, c.new_hours) for c in changes] == [
        ("2", "edited", Decimal("0.25"), Decimal("0.50"))
    ]


def test_stored_export_files_come_back_byte_for_byte_in_order(store):
    ledger = ExportLedger(store)
    files = [
        csv_file("b.csv", "second name, first file", (Column("x", "a column"),), [{"x": 'é,"quoted"'}]),
        json_file("a.json", "first name, second file", {"rows": 1}),
    ]
    ledger.store_files("timesheets/2026-W46", files)
    ledger.store_files("timesheets/2026-W46", files)  # replaced, not duplicated

    assert ledger.stored_files("timesheets/2026-W46") == files
    assert ledger.stored_files("timesheets/2026-W47") == []
