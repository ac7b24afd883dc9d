"""The timesheet roll-up's ledger in the state store: what was exported per (period, engineer), the
files of each export, adjustments to locked periods and GitLab's figures per period (issue #8, #16).

Typed records in and out; the SQL lives in ``include/sql/timesheets/`` and is loaded by name here only.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ps_integrations.domain.timesheet_export import hours_per_engagement
from ps_integrations.domain.timesheets import Adjustment, Entry, exact_hours
from ps_integrations.exports import Column, ExportFile

if TYPE_CHECKING:
    from ps_integrations.state_store import StateStore


@dataclass(frozen=True)
class ReportedAdjustment:
    """A change to a locked timelog as stored and reported in an export's adjustments.csv."""

    period: str
    timelog_id: str
    engineer: str
    change: str  # added, removed, edited
    original_hours: str  # as exported ("" when added)
    new_hours: str  # now ("" when removed)
    original_day: str
    new_day: str
    detected_at: str  # ISO 8601 UTC

    def to_row(self) -> dict[str, str]:
        return {
            "period": self.period,
            "timelog_id": self.timelog_id,
            "engineer": self.engineer,
            "change": self.change,
            "original_hours": self.original_hours,
            "new_hours": self.new_hours,
            "original_day": self.original_day,
            "new_day": self.new_day,
            "detected_at": self.detected_at,
        }


def _stored_seconds(row: dict[str, Any]) -> int:
    """Seconds of an exported timelog; rows from before schema 008 have only their rounded hours."""
    if row.get("seconds") is not None:
        return int(row["seconds"])
    return int(Decimal(str(row["hours"])) * 3600)


class ExportLedger:
    """What was exported per (period, engineer), in the state store.

    Exported (period, engineer) pairs are locked: their timelogs are never re-exported. A later
    change to one of them is recorded once as an adjustment and reported in the next export.
    The files of each export are kept too, so a re-run with nothing new writes the same bytes.
    """

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def locks(self) -> dict[str, dict[str, int]]:
        """period -> engineer -> approval level it was exported at."""
        locks: dict[str, dict[str, int]] = defaultdict(dict)
        for row in self.store.fetch_all("timesheets/all_locks"):
            locks[row["period"]][row["engineer"]] = int(row["approval_level"])
        return locks

    def locked_engineers(self, period: str) -> set[str]:
        return {row["engineer"] for row in self.store.fetch_all("timesheets/locked_engineers", {"period": period})}

    def exported_entries(self, period: str) -> list[Entry]:
        return [
            Entry(
                row["timelog_id"],
                row["engineer"],
                date.fromisoformat(row["day"]),
                row["engagement"],
                row["category"],
                _stored_seconds(row),
            )
            for row in self.store.fetch_all("timesheets/exported_entries", {"period": period})
        ]

    def legacy_rounded_hours(self, period: str) -> dict[str, Decimal]:
        """timelog id -> the per-timelog rounded hours of rows exported before schema 008 kept seconds."""
        return {
            row["timelog_id"]: Decimal(str(row["hours"]))
            for row in self.store.fetch_all("timesheets/exported_entries", {"period": period})
            if row.get("seconds") is None
        }

    def exported_before(self, day: date, category: str) -> list[Entry]:
        """Exported entries of the category dated before ``day`` (timelog ids left empty)."""
        return [
            Entry(
                "", row["engineer"], date.fromisoformat(row["day"]), row["engagement"], category, _stored_seconds(row)
            )
            for row in self.store.fetch_all(
                "timesheets/billable_before", {"category": category, "before": day.isoformat()}
            )
        ]

    def billable_before(self, day: date, category: str, policy: str = "per_day") -> dict[str, Decimal]:
        """Exported hours per engagement of the category dated before ``day``, rounded per export
        line (engineer, day, engagement) under ``policy`` as the exports were."""
        return hours_per_engagement(self.exported_before(day, category), policy)

    def lock(
        self, period: str, engineer: str, approval_level: int, entries: list[Entry], run_id: str, now: datetime
    ) -> None:
        """Record an engineer's exported entries of a period and lock the pair (idempotent)."""
        with self.store.transaction() as connection:
            if entries:
                self.store.execute(
                    "timesheets/record_entry",
                    [
                        {
                            "period": period,
                            "engineer": entry.engineer,
                            "timelog_id": entry.timelog_id,
                            "day": entry.day.isoformat(),
                            "engagement": entry.engagement,
                            "category": entry.category,
                            "hours": str(exact_hours(entry.seconds)),
                            "seconds": entry.seconds,
                        }
                        for entry in entries
                    ],
                    connection,
                )
            self.store.execute(
                "timesheets/lock",
                {
                    "period": period,
                    "engineer": engineer,
                    "approval_level": approval_level,
                    "run_id": run_id,
                    "exported_at": now.isoformat(timespec="seconds"),
                },
                connection,
            )

    def record_adjustments(
        self, period: str, changes: Sequence[Adjustment], now: datetime, reported_in: str = ""
    ) -> list[ReportedAdjustment]:
        """Store adjustments not seen before (pending unless ``reported_in``); return every one reported there."""
        for change in changes:
            self.store.execute(
                "timesheets/record_adjustment",
                {
                    "period": period,
                    "timelog_id": change.timelog_id,
                    "engineer": change.engineer,
                    "change": change.change,
                    "original_hours": "" if change.original_hours is None else str(change.original_hours),
                    "new_hours": "" if change.new_hours is None else str(change.new_hours),
                    "original_day": change.original_day.isoformat() if change.original_day else "",
                    "new_day": change.new_day.isoformat() if change.new_day else "",
                    "detected_at": now.isoformat(timespec="seconds"),
                    "reported_in": reported_in,
                },
            )
        return self.reported_in(reported_in) if reported_in else []

    def period_figures(self) -> dict[str, tuple[int, int]]:
        """period -> (timelog count, total seconds) GitLab reported when the period was last checked."""
        return {
            row["period"]: (int(row["timelog_count"]), int(row["total_seconds"]))
            for row in self.store.fetch_all("timesheets/period_figures")
        }

    def record_period_figures(self, figures: dict[str, tuple[int, int]], now: datetime) -> None:
        if figures:
            self.store.execute(
                "timesheets/record_period_figures",
                [
                    {"period": key, "timelog_count": count, "total_seconds": seconds, "checked_at": now.isoformat()}
                    for key, (count, seconds) in sorted(figures.items())
                ],
            )

    def pending_adjustment_count(self) -> int:
        """Adjustments found but not reported in an export yet."""
        return len(self.store.fetch_all("timesheets/pending_adjustments"))

    def attach_pending(self, folder: str) -> list[ReportedAdjustment]:
        """Report every pending adjustment in ``folder``; return all adjustments reported there."""
        self.store.execute("timesheets/attach_pending_adjustments", {"reported_in": folder})
        return self.reported_in(folder)

    def reported_in(self, folder: str) -> list[ReportedAdjustment]:
        return [
            ReportedAdjustment(
                str(row["period"]),
                str(row["timelog_id"]),
                str(row["engineer"]),
                str(row["change"]),
                str(row["original_hours"] or ""),
                str(row["new_hours"] or ""),
                str(row["original_day"] or ""),
                str(row["new_day"] or ""),
                str(row["detected_at"]),
            )
            for row in self.store.fetch_all("timesheets/adjustments_reported_in", {"reported_in": folder})
        ]

    def stored_files(self, folder: str) -> list[ExportFile]:
        files = []
        for row in self.store.fetch_all("timesheets/stored_files", {"folder": folder}):
            content = zlib.decompress(base64.b64decode(row["content"]))
            columns = tuple(Column(name, text) for name, text in json.loads(row["columns"]))
            files.append(ExportFile(row["name"], content, row["description"], columns))
        return files

    def store_files(self, folder: str, files: list[ExportFile]) -> None:
        with self.store.transaction() as connection:
            self.store.execute("timesheets/forget_files", {"folder": folder}, connection)
            self.store.execute(
                "timesheets/store_file",
                [
                    {
                        "folder": folder,
                        "name": export.name,
                        "position": position,
                        "description": export.description,
                        "columns": json.dumps([[column.name, column.description] for column in export.columns]),
                        "sha256": export.sha256,
                        "content": base64.b64encode(zlib.compress(export.content, 6)).decode("ascii"),
                    }
                    for position, export in enumerate(files)
                ],
                connection,
            )
