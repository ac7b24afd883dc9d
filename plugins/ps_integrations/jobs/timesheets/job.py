"""Timesheet roll-up (issue #8): approved PS hours from GitLab to finance.

Inputs: timelogs through GitLab GraphQL, approval and engagement issues through REST, budgets and
SKUs of the engagements' opportunities through Salesforce. Output: one folder per period in the
exports store, locked once exported; later changes become adjustments. ``run`` tells the story.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ps_integrations.domain.timesheet_approvals import Approval, ApprovalIssue, approved_periods, read_approval
from ps_integrations.domain.timesheet_certification import changed_since_certified, not_counted_by_engineer
from ps_integrations.domain.timesheet_entries import NOT_PAYABLE, TimelogFinding
from ps_integrations.domain.timesheet_export import (
    EngagementInfo,
    approved_hours_sums,
    as_exported_before_seconds,
    with_budgets,
    without_budgets,
)
from ps_integrations.domain.timesheets import (
    Entry,
    Period,
    RollupRules,
    adjustments,
    parse_period_key,
    period_of,
    totals,
)
from ps_integrations.exceptions import SalesforceApiError
from ps_integrations.jobs.timesheets.certification import Certifier, periods_to_certify
from ps_integrations.jobs.timesheets.config import RollupConfig, refuse_unfinished
from ps_integrations.jobs.timesheets.export_step import Exported, PeriodExporter, PeriodInput
from ps_integrations.jobs.timesheets.finance_mail import mail_finance
from ps_integrations.jobs.timesheets.ports import BudgetSource, ExportWriter, MailOnce, MailSender, TimesheetGitLab
from ps_integrations.jobs.timesheets.reads import (
    GitLabCapabilities,
    People,
    TimeRead,
    engagement_directory,
    gitlab_capabilities,
    period_figures,
    read_approval_issues,
    read_budgets,
    read_people,
    read_time,
)
from ps_integrations.run_summary import RecordFailure, RunSummary
from ps_integrations.stores.timesheets import ExportLedger

log = logging.getLogger(__name__)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: the roll-up allocates millions of small, acyclic
    objects (timelogs, entries, rows), and each automatic collection would scan them all again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True)
class Approvals:
    issues: list[ApprovalIssue]
    released: dict[tuple[str, str], Approval]  # (engineer, period key) -> approval at the release level
    untrusted: list[Approval]


@dataclass(frozen=True)
class Plan:
    targets: list[Period]  # to export
    checked: list[Period]  # locked periods read in full for adjustments
    figures: dict[str, tuple[int, int]]  # GitLab's count and seconds per locked or targeted period
    just_ended: Period  # the period the run's end falls in (its unapproved hours are reported)
    certify: list[Period]

    @property
    def to_read(self) -> list[Period]:
        return sorted({*self.targets, *self.checked, self.just_ended, *self.certify})


class TimesheetRollup:
    def __init__(
        self,
        gitlab: TimesheetGitLab,
        salesforce: BudgetSource | None,
        ledger: ExportLedger,
        mails: MailOnce,
        send_mail: MailSender,
        exports: ExportWriter,
        config: RollupConfig,
        rules: RollupRules,
        run_id: str,
    ) -> None:
        self.gitlab, self.salesforce, self.ledger, self.mails = gitlab, salesforce, ledger, mails
        self.send_mail, self.config, self.rules = send_mail, config, rules
        self.summary = RunSummary(
            counts={
                "periods exported": 0,
                "periods unchanged": 0,
                "engineer-periods locked": 0,
                "entries": 0,
                "adjustments": 0,
                "mails sent": 0,
            }
        )
        self.exporter = PeriodExporter(ledger, exports, config, rules, self.summary, run_id)

    def run(
        self, until: date, selection: list[Period] | None, today: date, now: datetime, preview: bool = False
    ) -> RunSummary:
        """Export every released period not exported yet that ended by ``until`` (or the selection).

        ``preview``: read and compute, write nothing (no export, lock, mail or issue); the only way
        to look at a period that has not ended.
        """
        if selection is not None and not preview:
            refuse_unfinished(selection, today, self.config.business_timezone)
        until = min(until, today)
        with collector_paused():
            capabilities = gitlab_capabilities(self.gitlab)
            self.summary.note(capabilities.describe())
            people = read_people(self.gitlab, self.config.group, self.rules)
            approvals = self.read_approvals(people, capabilities)
            locks = self.ledger.locks()
            plan = self.plan(until, selection, approvals, locks, preview)
            time = self.read_time(plan, today, capabilities)
            if preview:
                for period in plan.targets or [plan.just_ended]:
                    self.preview(period, time, today)
                return self.summary
            self.record_adjustments(plan, locks, time, now)
            for period in sorted({*plan.targets, plan.just_ended}):
                self.report_unapproved(period, time.entries[period.key], approvals.released, locks.get(period.key, {}))
            exported = self.export(plan.targets, locks, approvals, people, time)
            self.report_pending()
            if exported:
                landed = [item.landed for item in exported]
                self.summary.note(f"exports: {', '.join(item.location for item in landed)}")
                mail_finance(landed, self.config.finance_recipients, self.mails, self.send_mail, self.summary)
            for item in exported:  # after the mail: a run killed before this exports and mails the same version
                self.exporter.lock(item, now)
            self.report_interrupted_mails()
            certifier = Certifier(self.gitlab, self.config, self.rules, self.summary, capabilities.issue_epic)
            for period in plan.certify:
                certifier.certify(period, time.entries[period.key], people, approvals.issues, time.findings[period.key])
        return self.summary

    # --- the steps ------------------------------------------------------------------------------------
    def read_approvals(self, people: People, capabilities: GitLabCapabilities) -> Approvals:
        labels = self.config.labels
        in_epic: set[int] = set()
        if capabilities.issue_epic and self.config.certification_issues:
            epic = self.gitlab.find_epic(self.config.group, self.config.time_tracking_epic)
            in_epic = self.gitlab.epic_issue_ids(self.config.group, epic.iid) if epic else set()
        issues = read_approval_issues(self.gitlab, self.config.time_tracking_project, labels, in_epic)
        length = self.config.period_length
        approvals = [read_approval(issue, labels, people.engineers, length) for issue in issues]
        untrusted = [a for a in approvals if not a.trusted]
        for approval in untrusted:
            self.summary.note(f"untrusted approval issue #{approval.issue_iid}: {approval.problem}")
        return Approvals(issues, approved_periods(approvals, self.config.release_level), untrusted)

    def plan(
        self,
        until: date,
        selection: list[Period] | None,
        approvals: Approvals,
        locks: dict[str, dict[str, int]],
        preview: bool,
    ) -> Plan:
        """Which periods to export, to check for adjustments and to certify."""
        length = self.config.period_length
        if selection is not None:
            targets = sorted(set(selection))
        else:
            open_keys = {key for (engineer, key) in approvals.released if engineer not in locks.get(key, {})}
            targets = sorted(period for period in map(parse_period_key, open_keys) if period.end <= until)
        if not targets:
            self.summary.note(f"no newly approved period ended by {until.isoformat()}: nothing to export")
        just_ended = period_of(until - timedelta(days=1), length)
        last_ended = just_ended if just_ended.end <= until else period_of(just_ended.start - timedelta(days=1), length)
        checked, figures = self.locked_periods_to_check(locks, targets, until)
        certify = [] if preview else periods_to_certify(self.config, approvals.issues, last_ended)
        return Plan(targets, checked, figures, just_ended, certify)

    def locked_periods_to_check(
        self, locks: dict[str, dict[str, int]], targets: list[Period], until: date
    ) -> tuple[list[Period], dict[str, tuple[int, int]]]:
        """Locked periods to read in full for changes: every one inside the look-back window, and
        older ones whose timelog count or total in GitLab moved since they were last checked (or
        that were never checked), so no edit to a locked period is lost, however old.

        :return: those periods, and GitLab's figures of every locked or targeted period to record.
        """
        weeks = self.config.adjustment_lookback_weeks
        lookback = until - timedelta(weeks=weeks)
        locked = [parse_period_key(key) for key in sorted(locks)]
        figures = period_figures(self.gitlab, self.config.group, sorted({*locked, *targets}))
        known = self.ledger.period_figures()
        recent = [period for period in locked if period.end > lookback]
        moved = [p for p in locked if p.end <= lookback and known.get(p.key) != figures[p.key]]
        if moved:
            self.summary.note(
                f"{len(moved)} locked period(s) before the {weeks}-week look-back re-read, their GitLab "
                f"totals moved or were never checked: {', '.join(p.key for p in moved)}"
            )
        return [*recent, *moved], figures

    def read_time(self, plan: Plan, today: date, capabilities: GitLabCapabilities) -> TimeRead:
        time = read_time(self.gitlab, self.config, plan.to_read, today, capabilities)
        self.summary.note(f"GitLab GraphQL pages read: {time.pages}")
        if time.duplicates:
            self.summary.note(f"{time.duplicates} timelog(s) GitLab returned on two pages counted once")
        for timelog in time.undated:
            self.summary.fail(
                RecordFailure(
                    "GitLab",
                    f"timelog {timelog.id} by {timelog.username} on {timelog.issue_url or 'no issue'}",
                    f"no date ({timelog.seconds / 3600:g} h): counted in no period until it has one in GitLab",
                    "spentAt",
                )
            )
        return time

    def preview(self, period: Period, time: TimeRead, today: date) -> None:
        """A dry look at a period (ended or not): hours per engineer under the rounding policy."""
        sums = approved_hours_sums(period, time.entries[period.key], self.rules.rounding)
        state = "ended" if period.end <= today else f"not ended (ends {period.end.isoformat()})"
        figures = ", ".join(f"{engineer} {sums[engineer].rounded} h" for engineer in sorted(sums)) or "no time logged"
        self.summary.note(f"preview {period.key}, {state}, nothing written: {figures}")
        excluded = [f for f in time.findings[period.key] if f.kind in NOT_PAYABLE]
        if excluded:
            self.summary.note(f"preview {period.key}: {len(excluded)} timelog(s) not payable (future-dated/no issue)")

    def record_adjustments(self, plan: Plan, locks: dict[str, dict[str, int]], time: TimeRead, now: datetime) -> None:
        """Changes to the timelogs of locked periods, recorded once to report in the next export."""
        for period in plan.checked:
            locked = set(locks[period.key])
            legacy = self.ledger.legacy_rounded_hours(period.key)
            changes = adjustments(
                [e for e in self.ledger.exported_entries(period.key) if e.engineer in locked],
                [as_exported_before_seconds(e, legacy) for e in time.entries[period.key] if e.engineer in locked],
            )
            if changes:
                self.ledger.record_adjustments(period.key, changes, now)
        self.ledger.record_period_figures(plan.figures, now)

    def report_unapproved(
        self,
        period: Period,
        entries: list[Entry],
        released: dict[tuple[str, str], Approval],
        locked: dict[str, int],
    ) -> None:
        unapproved = totals(
            entry for entry in entries if (entry.engineer, period.key) not in released and entry.engineer not in locked
        ).by_engineer
        for engineer, hours in sorted(unapproved.items()):
            log.info("Unapproved, not exported: %s %s %s h", engineer, period.key, hours)
        if unapproved:
            total = sum(unapproved.values())
            self.summary.note(f"unapproved {period.key}: {len(unapproved)} engineer(s), {total} h not exported")

    def export(
        self,
        targets: list[Period],
        locks: dict[str, dict[str, int]],
        approvals: Approvals,
        people: People,
        time: TimeRead,
    ) -> list[Exported]:
        directory: dict[str, EngagementInfo] | None = None
        landed = []
        for period in targets:
            locked = dict(locks.get(period.key, {}))
            fresh = frozenset({e for (e, key) in approvals.released if key == period.key} - set(locked))
            if not fresh:
                if self.exporter.rewrite_unchanged(period):
                    continue
                if not locked:
                    self.summary.note(f"{period.key}: nobody's hours reached the release level, nothing exported")
                    continue
            if directory is None:
                directory = self.engagements()
            given = PeriodInput(
                period,
                locked,
                fresh,
                time.entries[period.key],
                [*time.findings[period.key], *self.uncertified_changes(period, fresh, approvals, time)],
                approvals.untrusted,
                approvals.released,
                people.roles,
            )
            exported = self.exporter.export(given, directory)
            if exported is not None:
                landed.append(exported)
        return landed

    def uncertified_changes(
        self, period: Period, fresh: frozenset[str], approvals: Approvals, time: TimeRead
    ) -> list[TimelogFinding]:
        """Findings for fresh engineers released through the job's certification issue whose time
        changed after the manager certified it: exported as logged, named as not certified."""
        issues = {issue.iid: issue for issue in approvals.issues}
        not_counted = not_counted_by_engineer(time.findings[period.key])
        found = []
        for engineer in sorted(fresh):
            issue = issues.get(approvals.released[(engineer, period.key)].issue_iid or 0)
            if issue is None or issue.certified_engineer != engineer:
                continue
            mine = [entry for entry in time.entries[period.key] if entry.engineer == engineer]
            detail = changed_since_certified(
                issue.description,
                issue.iid,
                engineer,
                period.key,
                mine,
                self.rules.rounding,
                not_counted.get(engineer, []),
            )
            if detail:
                found.append(TimelogFinding("", engineer, "changed_after_certification", detail, period.start))
        return found

    def engagements(self) -> dict[str, EngagementInfo]:
        """The engagements project's issues with their opportunities' budgets. A failed Salesforce
        lookup marks every engagement with an opportunity: no period showing one is exported."""
        directory = engagement_directory(self.gitlab, self.config.engagements_project, self.rules)
        if self.salesforce is None:
            return directory
        try:
            budgets = read_budgets(self.salesforce, directory, self.config.budget_field, self.rules)
        except SalesforceApiError as error:
            self.summary.note(f"Salesforce budget lookup failed ({error}): periods needing a budget wait")
            return without_budgets(directory, str(error))
        return with_budgets(directory, budgets)

    def report_interrupted_mails(self) -> None:
        """Every run names finance mails whose send was interrupted (maybe delivered, never resent)."""
        reported = set(self.summary.notes)
        for key in self.mails.interrupted("mail:"):
            note = (
                f"finance mail about {key.removeprefix('mail:')} interrupted during an earlier send (maybe "
                "delivered, not resent): check the finance mailbox"
            )
            if note not in reported:
                self.summary.note(note)

    def report_pending(self) -> None:
        pending = self.ledger.pending_adjustment_count()
        if pending:
            self.summary.note(f"{pending} adjustment(s) to locked periods wait for the next export")
