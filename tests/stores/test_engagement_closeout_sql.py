"""The close-out's SQL on both state-store backends: its own table, and the roll-up's tables read only."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from ps_integrations.domain.timesheets import Adjustment, Entry
from ps_integrations.jobs.timesheets import ExportLedger

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
URL = "https://gitlab.example.com/e/-/issues/1"


@pytest.fixture(autouse=True)
def _schema(store):
    store.apply_schema()


def record(closed_at: str, status: str, **values) -> dict:
    return {
        "engagement_url": URL,
        "closed_at": closed_at,
        "issue_iid": 1,
        "opportunity_id": "0065g0000000007AAA",
        "status": status,
        "reason": "",
        "tag": f"[tag {closed_at}]",
        "export_folder": "",
        "content_document_id": "",
        "content_version_id": "",
        "feed_element_id": "",
        "margin_pct": "",
        "percent_complete": "",
        "run_id": "run",
        "updated_at": NOW.isoformat(),
        **values,
    }


def test_one_row_per_close_upserted_and_the_previous_filed_close(store):
    store.execute("engagement_closeout/save", record("2026-11-20T09:00:00Z", "posting"))
    store.execute("engagement_closeout/save", record("2026-11-20T09:00:00Z", "posted", content_document_id="069A"))
    store.execute("engagement_closeout/save", record("2026-11-23T09:00:00Z", "attaching", margin_pct="28.5"))
    key = {"engagement_url": URL, "closed_at": "2026-11-23T09:00:00Z"}
    assert store.fetch_one("engagement_closeout/closeout_of", key)["status"] == "attaching"
    previous = store.fetch_one("engagement_closeout/previous_filed", key)
    assert (previous["closed_at"], previous["content_document_id"]) == ("2026-11-20T09:00:00Z", "069A")
    assert [row["closed_at"] for row in store.fetch_all("engagement_closeout/unfinished")] == ["2026-11-23T09:00:00Z"]
    store.execute(
        "engagement_closeout/set_status",
        {**key, "status": "superseded", "reason": "reopened", "run_id": "r", "updated_at": "x"},
    )
    assert store.fetch_all("engagement_closeout/unfinished") == []


def test_approved_hours_and_adjustments_read_from_the_rollups_tables(store):
    ledger = ExportLedger(store)
    day = date(2026, 11, 9)
    entries = [
        Entry("1", "ada", day, URL, "Project Work", 8100),
        Entry("2", "ada", day, URL, "Project Work", 1800),
    ]
    ledger.lock("2026-W46", "ada", 3, entries, "run", NOW)
    ledger.lock("2026-W46", "bob", 3, [Entry("3", "bob", day, "https://other", "Project Work", 28800)], "run", NOW)
    ledger.record_adjustments(
        "2026-W46", [Adjustment("1", "ada", "edited", Decimal("2.25"), Decimal("3"), day, day)], NOW
    )
    totals = {
        row["engagement"]: Decimal(str(row["hours"])) for row in store.fetch_all("engagement_closeout/approved_totals")
    }
    assert totals == {URL: Decimal("2.75"), "https://other": Decimal(8)}
    assert [
        row["timelog_id"] for row in store.fetch_all("engagement_closeout/approved_entries", {"engagement": URL})
    ] == ["1", "2"]
    [adjustment] = store.fetch_all("engagement_closeout/adjustments", {"engagement": URL})
    assert (adjustment["engagement"], adjustment["change"], adjustment["new_hours"]) == (URL, "edited", "3")
    assert len(store.fetch_all("engagement_closeout/adjustments", {"engagement": ""})) == 1
    assert store.fetch_all("engagement_closeout/adjustments", {"engagement": "https://other"}) == []
