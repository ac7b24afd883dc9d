"""The engagement close-out's state: one record per close (engagement issue, close time) with the
remote ids of what was filed, plus read-only views of the timesheet roll-up's exported hours and
adjustments. Typed records in and out; the SQL is in ``include/sql/engagement_closeout/``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from ps_integrations import clock
from ps_integrations.domain.engagement_closeout import Adjustment, adjustment_delta
from ps_integrations.stores.base import SqlStore, record_audit

JOB = "ps_engagement_closeout"


@dataclass(frozen=True)
class CloseoutRecord:
    """How far the filing of one close got. ``status``: failed, attaching, attached, posting, posted or
    superseded (reopened or deleted since)."""

    engagement_url: str
    closed_at: str
    issue_iid: int
    opportunity_id: str = ""
    status: str = "failed"
    reason: str = ""
    tag: str = ""
    export_folder: str = ""
    content_document_id: str = ""
    content_version_id: str = ""
    feed_element_id: str = ""
    margin_pct: str = ""  # Decimal text, "" when there is none
    percent_complete: str = ""


@dataclass(frozen=True)
class ExportedEntry:
    """Approved hours of one timelog, as the timesheet roll-up exported them."""

    period: str
    engineer: str
    timelog_id: str
    category: str
    hours: Decimal


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _record(row: dict[str, Any]) -> CloseoutRecord:
    return CloseoutRecord(
        engagement_url=str(row["engagement_url"]),
        closed_at=str(row["closed_at"]),
        issue_iid=int(row.get("issue_iid") or 0),
        opportunity_id=_text(row.get("opportunity_id")),
        status=_text(row.get("status")),
        reason=_text(row.get("reason")),
        tag=_text(row.get("tag")),
        export_folder=_text(row.get("export_folder")),
        content_document_id=_text(row.get("content_document_id")),
        content_version_id=_text(row.get("content_version_id")),
        feed_element_id=_text(row.get("feed_element_id")),
        margin_pct=_text(row.get("margin_pct")),
        percent_complete=_text(row.get("percent_complete")),
    )


class CloseoutLedger:
    """The close-out's repository over the state store."""

    def __init__(self, store: SqlStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    # --- closes ----------------------------------------------------------------------------------
    def _one(self, name: str, engagement_url: str, closed_at: str) -> CloseoutRecord | None:
        rows = self.store.fetch_all(name, {"engagement_url": engagement_url, "closed_at": closed_at})
        return _record({"issue_iid": 0, **rows[0]}) if rows else None

    def closeout_of(self, engagement_url: str, closed_at: str) -> CloseoutRecord | None:
        """The record of this close, if any."""
        return self._one("engagement_closeout/closeout_of", engagement_url, closed_at)

    def previous_filed(self, engagement_url: str, closed_at: str) -> CloseoutRecord | None:
        """The latest earlier close of the engagement that was filed (posted), if any."""
        return self._one("engagement_closeout/previous_filed", engagement_url, closed_at)

    def unfinished(self) -> list[CloseoutRecord]:
        """Closes neither posted nor superseded: retried by every run."""
        return [_record(row) for row in self.store.fetch_all("engagement_closeout/unfinished")]

    def save(self, record: CloseoutRecord) -> None:
        self.store.execute(
            "engagement_closeout/save", {**asdict(record), "run_id": self.run_id, "updated_at": clock.now_iso()}
        )

    def set_status(self, engagement_url: str, closed_at: str, status: str, reason: str) -> None:
        """Only the status and reason of a close (its remote ids stay)."""
        self.store.execute(
            "engagement_closeout/set_status",
            {
                "engagement_url": engagement_url,
                "closed_at": closed_at,
                "status": status,
                "reason": reason,
                "run_id": self.run_id,
                "updated_at": clock.now_iso(),
            },
        )

    # --- the roll-up's exported time (read only) -----------------------------------------------------
    def approved_entries(self, engagement_url: str) -> list[ExportedEntry]:
        rows = self.store.fetch_all("engagement_closeout/approved_entries", {"engagement": engagement_url})
        return [
            ExportedEntry(
                str(row["period"]),
                str(row["engineer"]),
                str(row["timelog_id"]),
                str(row["category"]),
                Decimal(str(row["hours"])),
            )
            for row in rows
        ]

    def approved_totals(self) -> dict[str, Decimal]:
        """Engagement issue URL -> approved hours exported."""
        rows = self.store.fetch_all("engagement_closeout/approved_totals")
        return {str(row["engagement"]): Decimal(str(row["hours"])) for row in rows}

    def adjustments(self, engagement_url: str | None = None) -> list[Adjustment]:
        """The roll-up's adjustments of exported timelogs (of one engagement, or all), oldest first."""
        rows = self.store.fetch_all("engagement_closeout/adjustments", {"engagement": engagement_url or ""})
        return [
            Adjustment(
                str(row["period"]),
                str(row["timelog_id"]),
                str(row["engineer"]),
                str(row["change"]),
                adjustment_delta(
                    str(row["change"]), Decimal(row["original_hours"] or 0), Decimal(row["new_hours"] or 0)
                ),
                str(row["engagement"]),
            )
            for row in rows
        ]

    # --- audit ------------------------------------------------------------------------------------
    def audit(self, record_id: str, action: str, detail: str) -> None:
        record_audit(self.store, JOB, self.run_id, record_id, action, detail)
