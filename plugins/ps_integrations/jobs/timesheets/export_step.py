"""Exporting one released period: its files built by the domain, the manifest, the folder written,
the files kept and the fresh (period, engineer) pairs locked - or, when something the files need is
missing (a failed budget lookup), nothing written and the records named (issue #23)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from ps_integrations.domain.timesheet_approvals import Approval
from ps_integrations.domain.timesheet_entries import TimelogFinding
from ps_integrations.domain.timesheet_export import (
    ADJUSTMENT_COLUMNS,
    EngagementInfo,
    engagements_without_budget,
    hours_per_engagement,
    period_export,
    row_count,
)
from ps_integrations.domain.timesheets import BILLABLE_CATEGORY, Entry, Period, RollupRules
from ps_integrations.exports import ExportFile, csv_file, json_file
from ps_integrations.jobs.timesheets.config import RollupConfig
from ps_integrations.jobs.timesheets.finance_mail import Landed
from ps_integrations.jobs.timesheets.ports import ExportWriter
from ps_integrations.run_summary import RecordFailure, RunSummary
from ps_integrations.stores.timesheets import ExportLedger, ReportedAdjustment


@dataclass(frozen=True)
class PeriodInput:
    """What one period's export is built from."""

    period: Period
    locked: Mapping[str, int]  # engineer -> approval level exported at, before this run
    fresh_engineers: frozenset[str]  # released, not exported yet
    entries: Sequence[Entry]  # this run's entries of the period (all engineers)
    findings: Sequence[TimelogFinding]
    untrusted: Sequence[Approval]
    released: Mapping[tuple[str, str], Approval]
    roles: Mapping[str, str]  # PS engineers: username -> role


@dataclass(frozen=True)
class Exported:
    period: Period
    landed: Landed
    locks: list[tuple[str, int, list[Entry]]]  # (engineer, approval level, entries) to lock


def title_of(period: Period) -> str:
    last_day = period.end - timedelta(days=1)
    return f"Approved PS hours, {period.key} ({period.start.isoformat()} to {last_day.isoformat()})"


class PeriodExporter:
    def __init__(
        self,
        ledger: ExportLedger,
        exports: ExportWriter,
        config: RollupConfig,
        rules: RollupRules,
        summary: RunSummary,
        run_id: str,
    ) -> None:
        self.ledger, self.exports, self.config, self.rules = ledger, exports, config, rules
        self.summary, self.run_id = summary, run_id
        self.unlocked: list[Entry] = []  # exported this run, locked after the finance mail

    def rewrite_unchanged(self, period: Period) -> bool:
        """A period with nothing new is written again exactly as exported (True), if it was exported."""
        folder = f"timesheets/{period.key}"
        stored = self.ledger.stored_files(folder)
        if not stored:
            return False
        self.exports.write_folder(folder, title_of(period), stored)
        self.summary.add("periods unchanged")
        self.summary.note(f"{folder}: nothing new, rewritten as exported")
        return True

    def export(self, given: PeriodInput, directory: Mapping[str, EngagementInfo]) -> Exported | None:
        """Build, write and keep one period; None when it must wait (named in the summary). The
        caller locks it (``lock``) once finance was mailed: a run killed before that exports the same
        bytes again, so the mail ledger recognises the version it may already have sent."""
        period, folder = given.period, f"timesheets/{given.period.key}"
        fresh = [e for e in given.entries if e.engineer in given.fresh_engineers]
        entries = [e for e in self.ledger.exported_entries(period.key) if e.engineer in given.locked] + fresh
        if not self._budgets_known(period, entries, directory):
            return None
        findings = [
            (f.engineer, f.kind, f.problem)
            for f in given.findings
            if f.engineer in given.fresh_engineers or f.engineer in given.locked or not f.engineer
        ]
        findings += [
            (a.engineer or "", "untrusted_approval", f"issue #{a.issue_iid}: {a.problem}")
            for a in given.untrusted
            if a.period == period.key
        ]
        built = period_export(
            period,
            entries,
            dict(given.roles),
            dict(directory),
            self.hours_before(period),
            findings,
            self.rules,
            Decimal(self.config.weekly_minimum_hours),
            approved_engineers=[*given.locked, *given.fresh_engineers],
        )
        files = built.files
        for check in built.rounding:
            if not check.within_bound:
                self.summary.fail(
                    RecordFailure(
                        "timesheet export",
                        f"{period.key} {check.engineer}",
                        f"rounded {check.rounded_hours} h against {check.logged_hours} h logged: "
                        f"off by more than the {built.policy} bound {check.bound} h",
                    )
                )
        reported = self.ledger.attach_pending(folder) if given.fresh_engineers else self.ledger.reported_in(folder)
        if reported:
            files.append(adjustments_file(reported))
            self.summary.add("adjustments", len(reported))
            self.summary.note(f"{len(reported)} adjustment(s) to locked timelogs reported in {folder}/adjustments.csv")
        rows = {f.name: row_count(f) for f in files}
        manifest = json_file(
            "manifest.json",
            "Row counts, sha256 of each data file, and the approval state the export was built from.",
            {
                "period": period.key,
                "period_start": period.start,
                "period_end_exclusive": period.end,
                "business_timezone": self.config.business_timezone,
                "files": {f.name: {"sha256": f.sha256, "bytes": len(f.content), "rows": rows[f.name]} for f in files},
                "approvals": self._approval_state(given),
                "rounding": built.rounding_manifest(),
                "release_level": self.config.release_level,
                "release_label": self.config.approval_labels[self.config.release_level - 1],
            },
        )
        paths = self.exports.write_folder(folder, title_of(period), [*files, manifest])
        self.ledger.store_files(folder, [*files, manifest])
        self.unlocked.extend(fresh)
        self.summary.add("periods exported")
        self.summary.add("entries", len(entries))
        locks = [
            (engineer, given.released[(engineer, period.key)].level, [e for e in fresh if e.engineer == engineer])
            for engineer in sorted(given.fresh_engineers)
        ]
        return Exported(period, Landed(folder, paths, manifest.sha256, rows, len(reported)), locks)

    def lock(self, exported: Exported, now: datetime) -> None:
        """Lock the fresh (period, engineer) pairs of an export with the entries it showed."""
        for engineer, level, entries in exported.locks:
            self.ledger.lock(exported.period.key, engineer, level, entries, self.run_id, now)
            self.summary.add("engineer-periods locked")

    def hours_before(self, period: Period) -> dict[str, Decimal]:
        """Billable hours per engagement exported for earlier periods - also by this run, not locked yet."""
        earlier = [e for e in self.unlocked if e.day < period.start and e.category == BILLABLE_CATEGORY]
        locked = self.ledger.exported_before(period.start, BILLABLE_CATEGORY)
        return hours_per_engagement([*locked, *earlier], self.rules.rounding)

    def _budgets_known(self, period: Period, entries: Sequence[Entry], directory: Mapping[str, EngagementInfo]) -> bool:
        """A failed budget lookup must not export (and lock) a period showing no budget: its
        engagements fail by name, the period waits for the next run (nothing of it is locked)."""
        missing = engagements_without_budget(entries, directory)
        for info in missing:
            self.summary.fail(
                RecordFailure(
                    "Salesforce",
                    f"opportunity {info.opportunity_id} (engagement {info.url}, period {period.key})",
                    f"budget could not be read, the period is not exported or locked: {info.budget_unavailable}",
                    field=self.config.budget_field,
                )
            )
        if missing:
            self.summary.note(f"{period.key}: not exported, budgets of {len(missing)} engagement(s) unavailable")
        return not missing

    def _approval_state(self, given: PeriodInput) -> list[dict[str, object]]:
        def issue_of(engineer: str) -> int | None:
            approval = given.released.get((engineer, given.period.key))
            return approval.issue_iid if approval is not None else None

        state: list[dict[str, object]] = [
            {"engineer": e, "level": level, "issue": issue_of(e), "exported_before": True}
            for e, level in given.locked.items()
        ]
        state += [
            {
                "engineer": e,
                "level": given.released[(e, given.period.key)].level,
                "issue": issue_of(e),
                "exported_before": False,
            }
            for e in given.fresh_engineers
        ]
        return sorted(state, key=lambda row: str(row["engineer"]))


def adjustments_file(reported: Sequence[ReportedAdjustment]) -> ExportFile:
    return csv_file(
        "adjustments.csv",
        "Changes to timelogs of locked periods, found since the previous export.",
        ADJUSTMENT_COLUMNS,
        [adjustment.to_row() for adjustment in reported],
    )
