"""Certification issues (issue #20): when a period ends, one issue per PS engineer for the manager to
certify (the handbook's ManagerCertifiedTimesheet), opened once, kept current until certified.
Approval stays a human act: the job never adds an approval label."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from ps_integrations.domain.timesheet_approvals import ApprovalIssue
from ps_integrations.domain.timesheet_certification import (
    UPDATE_NOTE_MARKER,
    CertificationRow,
    NotCounted,
    certification_description,
    certification_digest,
    certification_rows,
    find_certification,
    not_counted_by_engineer,
)
from ps_integrations.domain.timesheet_entries import TimelogFinding
from ps_integrations.domain.timesheets import (
    Entry,
    Period,
    RollupRules,
    line_hours,
    logged_minutes,
    parse_period_key,
    period_key_problem,
)
from ps_integrations.exceptions import GitLabApiError
from ps_integrations.hooks.gitlab import GitLabEpic
from ps_integrations.jobs.timesheets.config import RollupConfig
from ps_integrations.jobs.timesheets.ports import CertificationTracker
from ps_integrations.jobs.timesheets.reads import People
from ps_integrations.run_summary import RecordFailure, RunSummary


def periods_to_certify(config: RollupConfig, issues: Iterable[ApprovalIssue], last_ended: Period) -> list[Period]:
    """The latest period that has ended (a month is certified on the first run after it), and periods
    of certification issues the job opened that a manager has not certified yet (late changes still
    update their tables)."""
    if not config.certification_issues:
        return []
    periods = {last_ended}
    for issue in issues:
        marker = find_certification(issue.description)
        certified = config.labels.levels[0] in issue.labels
        # a marker edited by hand into no period is skipped, not a crash
        if (
            marker
            and issue.state == "opened"
            and not certified
            and not period_key_problem(marker[1], config.period_length)
        ):
            periods.add(parse_period_key(marker[1]))
    return sorted(periods)


@dataclass(frozen=True)
class Timesheet:
    """One engineer's period as the certification issue shows it."""

    engineer: str
    period: Period
    rows: list[CertificationRow]
    entries: list[Entry]
    not_counted: list[NotCounted]


class Certifier:
    def __init__(
        self,
        gitlab: CertificationTracker,
        config: RollupConfig,
        rules: RollupRules,
        summary: RunSummary,
        has_epics: bool,
    ) -> None:
        self.gitlab, self.config, self.rules, self.summary, self.has_epics = gitlab, config, rules, summary, has_epics
        self._epic: list[GitLabEpic | None] = []  # looked up once a run: the same epic for every issue

    def certify(
        self,
        period: Period,
        entries: list[Entry],
        people: People,
        issues: list[ApprovalIssue],
        findings: Sequence[TimelogFinding] = (),
    ) -> None:
        """Open once, per PS engineer, the issue the manager certifies; keep it current until certified.

        :param findings: the period's findings; the not-payable ones are listed under the table.
        """
        period_label = self.config.labels.period_prefix + period.key
        ours: dict[str, ApprovalIssue] = {}
        by_hand: dict[str, ApprovalIssue] = {}
        for issue in issues:
            marker = find_certification(issue.description)
            if marker is not None and marker[1] == period.key:
                ours.setdefault(marker[0], issue)
            elif marker is None and period_label in issue.labels and len(issue.assignees) == 1:
                by_hand[issue.assignees[0]] = issue
        per_engineer: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            per_engineer[entry.engineer].append(entry)
        excluded = not_counted_by_engineer(findings)
        for engineer in sorted(people.roles):
            mine = per_engineer.get(engineer, [])
            rows = certification_rows(mine, self.rules.rounding)
            sheet = Timesheet(engineer, period, rows, mine, excluded.get(engineer, []))
            try:
                if engineer in ours:
                    self._refresh(ours[engineer], sheet)
                elif engineer in by_hand:
                    self.summary.add("certification issues already there")
                else:
                    self._open(sheet, people, issues)
            except GitLabApiError as error:
                self.summary.fail(RecordFailure("GitLab", f"certification issue {period.key} {engineer}", str(error)))

    def manager_of(self, engineer: str, people: People, issues: list[ApprovalIssue]) -> str | None:
        """The engineer's manager: configured (``managers``), else the group's only member with a
        manager job title, else the manager who wrote the engineer's latest approval issue."""
        configured = self.config.managers.get(engineer)
        if configured:
            return configured if configured in people.members else None
        titles = set(self.config.manager_job_titles)
        managers = {name for name, member in people.members.items() if member.job_title in titles}
        if len(managers) == 1:
            return next(iter(managers))
        written = [
            issue
            for issue in issues
            if issue.certified_engineer is None and issue.assignees == (engineer,) and issue.author in managers
        ]
        return max(written, key=lambda issue: issue.iid).author if written else None

    def _spreadsheet(self, sheet: Timesheet) -> tuple[str, bytes]:
        from ps_integrations.xlsx import Sheet, workbook_bytes

        engineer, period = sheet.engineer, sheet.period
        lines: dict[tuple[date, str, str], list[int]] = defaultdict(list)
        for entry in sheet.entries:
            lines[(entry.day, entry.engagement, entry.category)].append(entry.seconds)
        rows = [
            [
                day.isoformat(),
                engagement,
                category,
                len(seconds),
                float(logged_minutes(sum(seconds))),
                float(line_hours(self.rules.rounding, seconds)),
            ]
            for (day, engagement, category), seconds in sorted(lines.items())
        ]
        header = ["date", "engagement", "category", "timelogs", "logged_minutes", "hours"]
        moment = datetime.combine(period.end, datetime.min.time())
        content = workbook_bytes([Sheet(period.key, header, rows)], moment, f"Timesheet {period.key} {engineer}")
        return f"timesheet-{period.key}-{engineer.replace('/', '-')}.xlsx", content

    def _description(self, sheet: Timesheet, manager: str) -> str:
        """The issue body with a freshly uploaded spreadsheet of the engineer's period."""
        name, content = self._spreadsheet(sheet)
        spreadsheet = self.gitlab.upload_file(self.config.time_tracking_project, name, content)
        return certification_description(
            sheet.engineer,
            manager,
            sheet.period,
            sheet.rows,
            spreadsheet,
            self.config.labels,
            self.rules.rounding,
            sheet.not_counted,
        )

    def _open(self, sheet: Timesheet, people: People, issues: list[ApprovalIssue]) -> None:
        engineer, period = sheet.engineer, sheet.period
        manager = self.manager_of(engineer, people, issues)
        if manager is None:
            configured = self.config.managers.get(engineer)
            reason = (
                f"ps_timesheet_rollup_config.managers names {configured}, who is not a member of "
                f"{self.config.group}: fix the name or the membership"
                if configured
                else "no manager known: set ps_timesheet_rollup_config.managers for this engineer "
                "(or give exactly one group member a manager job title)"
            )
            self.summary.fail(
                RecordFailure("GitLab", f"certification issue {period.key} {engineer}", reason, field="managers")
            )
            return
        description = self._description(sheet, manager)
        created = self.gitlab.create_issue(
            self.config.time_tracking_project,
            f"Timesheet {period.key} - {engineer}",
            description,
            labels=(self.config.labels.period_prefix + period.key,),
            assignee_ids=(people.members[manager].user.id,),
        )
        self.summary.add("certification issues opened")
        if self.has_epics:
            self._link_to_epic(created.id)

    def _link_to_epic(self, issue_id: int) -> None:
        """Under the time-tracking epic, where the instance has epics and the epic exists."""
        if not self._epic:
            self._epic.append(self.gitlab.find_epic(self.config.group, self.config.time_tracking_epic))
            if self._epic[0] is None:
                self.summary.note(f"no epic titled {self.config.time_tracking_epic!r}: certification issues not linked")
        epic = self._epic[0]
        if epic is None:
            return
        self.gitlab.add_issue_to_epic(self.config.group, epic.iid, issue_id)

    def _refresh(self, issue: ApprovalIssue, sheet: Timesheet) -> None:
        """Before the manager certifies: a changed table is rewritten and a note says so (the note
        first, found again by its marker, so a crash in between never loses or repeats it)."""
        if self.has_epics and not issue.in_epic:
            self._link_to_epic(issue.issue_id)  # a run killed after the create
        if self.config.labels.levels[0] in issue.labels or issue.state != "opened":
            return
        marker = find_certification(issue.description)
        digest = certification_digest(sheet.rows, sheet.not_counted)
        if marker is None or marker[2] == digest:
            self.summary.add("certification issues current")
            return
        project = self.config.time_tracking_project
        note_marker = UPDATE_NOTE_MARKER.format(digest=digest)
        if not any(note_marker in note.body for note in self.gitlab.list_notes(project, issue.iid)):
            total = sum((row.hours for row in sheet.rows), Decimal("0.00"))
            self.gitlab.create_note(
                project,
                issue.iid,
                f"Time logged for {sheet.period.key} changed after this issue was opened: the table and the "
                f"spreadsheet are updated ({total} h now). Please review them before certifying.\n\n{note_marker}",
            )
        manager = issue.assignees[0] if issue.assignees else "the manager"
        description = self._description(sheet, manager)
        self.gitlab.update_issue(project, issue.iid, description=description)
        self.summary.add("certification issues updated")
